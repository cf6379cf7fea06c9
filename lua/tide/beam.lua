--- tide.beam: beam search. Beams are forked sequences; every step decodes
-- all live beams in one batched forward.
-- beam(session, { width, max_tokens, length_penalty })
--   -> best text, { beams = ranked { text, tokens, logprob, score } }
-- score = logprob / n_tokens ^ length_penalty (length_penalty 0 = raw sum,
-- 1 = mean; default 1). A beam ends at an end-of-generation token or at
-- max_tokens; the search stops once `width` beams have ended.
local OPTS = { width = true, max_tokens = true, length_penalty = true }

local function score(lp, n, alpha)
  if n == 0 then return -math.huge end
  return lp / (n ^ alpha)
end

return function(session, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTS[k] then error(string.format("beam: unknown option '%s'", tostring(k)), 2) end
  end
  local model = session.model
  local width = opts.width or 4
  local max_tokens = opts.max_tokens or 32
  local alpha = opts.length_penalty or 1.0
  if math.type(width) ~= "integer" or width < 1 then error("beam: width must be a positive integer", 2) end

  session:logits() -- current logits for the shared prefix
  local beams = { { s = session:fork(), lp = 0.0, tokens = {} } }
  local ended = {}
  for _ = 1, max_tokens do
    local cands = {}
    for bi, b in ipairs(beams) do
      local logits = b.s:logits()
      local ids = logits:topk(math.min(width, model.info.n_vocab))
      for _, id in ipairs(ids) do
        cands[#cands + 1] = { parent = bi, id = id, lp = b.lp + logits:logprob(id) }
      end
    end
    table.sort(cands, function(a, b)
      if a.lp ~= b.lp then return a.lp > b.lp end
      if a.parent ~= b.parent then return a.parent < b.parent end
      return a.id < b.id
    end)
    local keep = {}
    for _, c in ipairs(cands) do
      if #keep + #ended >= width then break end
      local p = beams[c.parent]
      if model:is_eog(c.id) then
        ended[#ended + 1] = { tokens = p.tokens, lp = c.lp, ended_by = "eog" }
      else
        keep[#keep + 1] = c
      end
    end
    local new, sessions, ids = {}, {}, {}
    for i, c in ipairs(keep) do
      local p = beams[c.parent]
      local toks = table.move(p.tokens, 1, #p.tokens, 1, {})
      toks[#toks + 1] = c.id
      new[i] = { s = p.s:fork(), lp = c.lp, tokens = toks }
      sessions[i], ids[i] = new[i].s, c.id
    end
    for _, b in ipairs(beams) do b.s:close() end
    beams = new
    if #beams == 0 then break end
    model:step(sessions, ids)
  end
  for _, b in ipairs(beams) do
    ended[#ended + 1] = { tokens = b.tokens, lp = b.lp, ended_by = "max_tokens" }
    b.s:close()
  end
  for _, e in ipairs(ended) do
    e.logprob = e.lp
    e.lp = nil
    e.score = score(e.logprob, #e.tokens + (e.ended_by == "eog" and 1 or 0), alpha)
    e.text = model:detokenize(e.tokens)
  end
  table.sort(ended, function(a, b) return a.score > b.score end)
  return ended[1] and ended[1].text or "", { beams = ended }
end
