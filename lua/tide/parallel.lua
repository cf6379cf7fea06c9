--- tide.parallel: N continuations of one prefilled session, decoded in
-- lockstep. Every step is one batched forward over all live candidates, so
-- N candidates cost about one pass over the weights per token, and the
-- prompt is prefilled once (the forks share its KV cache rows).
local sampler = require "tide.sampler"

local M = {}

--- sample_n(session, { n, max_tokens, sampler, seed, stop, constraint })
-- -> candidates: { text, tokens, logprobs, mean_logprob, stop_reason,
-- accepted (with a constraint) } in fork order. With a constraint each
-- candidate carries its own matcher.
function M.sample_n(session, opts)
  local model = session.model
  local n = opts.n or 4
  if math.type(n) ~= "integer" or n < 1 then error("n must be a positive integer", 3) end
  local spec = opts.sampler or { top_k = 40, top_p = 0.95, temperature = 0.8 }
  if not sampler.is_spec(spec) then spec = sampler.new(spec) end
  local stops = type(opts.stop) == "string" and { opts.stop } or opts.stop or {}
  local max_tokens = opts.max_tokens or 64
  local base_seed = opts.seed or session.seed
  session:logits() -- make sure the shared prefix has current logits
  local kids = session:fork(n)
  local cands, live = {}, {}
  for i = 1, n do
    cands[i] = { text = "", tokens = {}, logprobs = {}, sum = 0.0,
                 chain = spec:build(model.info.n_vocab, base_seed + i), detok = model.h:detok_stream(),
                 matcher = opts.constraint and opts.constraint:matcher(model) }
    live[i] = i
  end
  local function close(c, reason)
    c.stop_reason = c.stop_reason or reason
    c.text = c.text .. c.detok()
    if c.chain then c.chain:close() end
    if c.matcher then
      c.accepted = c.matcher:accepting()
      c.matcher:close()
    end
    c.chain, c.detok, c.matcher = nil, nil, nil
  end
  for _ = 1, max_tokens do
    local step_s, step_t, still = {}, {}, {}
    for _, i in ipairs(live) do
      local c, kid = cands[i], kids[i]
      local logits = kid:logits()
      local pick, n_ok = logits, 1
      if c.matcher then pick, n_ok = c.matcher:apply(logits) end
      local id = n_ok > 0 and c.chain:sample(pick) or nil
      local lp = id and logits:logprob(id)
      if not id then
        close(c, "dead_end")
      elseif model:is_eog(id) then
        close(c, "eog")
      else
        if c.matcher then c.matcher:advance(id) end
        c.chain:accept(id)
        c.tokens[#c.tokens + 1] = id
        c.logprobs[#c.logprobs + 1] = lp
        c.sum = c.sum + lp
        c.text = c.text .. c.detok(id)
        local cut
        for _, st in ipairs(stops) do
          local at = c.text:find(st, 1, true)
          if at and (not cut or at < cut) then cut = at end
        end
        if cut then
          close(c, "stop")
          c.text = c.text:sub(1, cut - 1)
        elseif c.matcher and c.matcher:finished() then
          close(c, "constraint")
        else
          step_s[#step_s + 1], step_t[#step_t + 1], still[#still + 1] = kid, id, i
        end
      end
    end
    live = still
    if #live == 0 then break end
    model:step(step_s, step_t)
  end
  for _, i in ipairs(live) do close(cands[i], "max_tokens") end
  for i, c in ipairs(cands) do
    c.mean_logprob = #c.tokens > 0 and c.sum / #c.tokens or -math.huge
    c.sum = nil
    kids[i]:close()
  end
  return cands
end

return M
