--- tide.generate: generate, stream and select for sessions.
-- Stopping: max_tokens, end-of-generation tokens, stop strings (matched
-- across token boundaries and cut from the output) and a Lua predicate.
local core = require "tide.core"
local sampler = require "tide.sampler"

local M = {}

local GEN_OPTS = {
  max_tokens = true, sampler = true, seed = true, stop = true, until_fn = true, constraint = true,
  ignore_eog = true, logprobs = true, top = true, processor = true, on_token = true,
  steer = true, -- [steer] a set for this call only
}

local function check_opts(session, opts, name)
  opts = opts or {}
  if type(opts) ~= "table" then error(string.format("%s: options table expected, got %s", name, type(opts)), 3) end
  for k in pairs(opts) do
    if not GEN_OPTS[k] then error(string.format("%s: unknown option '%s'", name, tostring(k)), 3) end
  end
  local mt = opts.max_tokens
  if mt ~= nil then
    local room = session.model.n_ctx - session.n_pre - session.pos
    if math.type(mt) ~= "integer" or mt < 0 then
      error(string.format("%s: max_tokens must be a non-negative integer, got %s", name, tostring(mt)), 3)
    elseif mt > room then
      error(string.format("%s: max_tokens %d exceeds the room left in the context (%d of n_ctx %d)",
                          name, mt, room, session.model.n_ctx), 3)
    end
  end
  if opts.stop ~= nil and type(opts.stop) ~= "string" and type(opts.stop) ~= "table" then
    error(string.format("%s: stop must be a string or a list of strings", name), 3)
  end
  return opts
end

local now = core.clock

-- Length of the longest suffix of s that is a proper prefix of some stop
-- string (those bytes must wait: the next token may complete a stop string).
local function held_back(s, stops)
  local keep = 0
  for _, st in ipairs(stops) do
    for n = math.min(#st - 1, #s), 1, -1 do
      if n > keep and s:sub(-n) == st:sub(1, n) then keep = n; break end
    end
  end
  return keep
end

--- A stepper: returns a function that produces the next piece of text (or
-- nil when done) and an info table it fills as it goes.
function M.stepper(session, opts)
  local model = session.model
  local n_vocab = model.info.n_vocab
  local spec = opts.sampler
  if spec == nil and model.manifest and model.manifest.sampler then spec = model.manifest.sampler end
  if spec == nil or type(spec) == "string" or (type(spec) == "table" and not sampler.is_spec(spec)) then
    spec = sampler.new(spec)
  end
  local chain = spec:build(n_vocab, opts.seed or session.seed)
  local stops = opts.stop
  if type(stops) == "string" then stops = { stops } end
  stops = stops or {}
  local matcher = opts.constraint and opts.constraint:matcher(model)
  local max_tokens = opts.max_tokens or math.min(128, session.model.n_ctx - session.n_pre - session.pos)
  local detok = model.h:detok_stream()
  local info = { tokens = {}, logprobs = opts.logprobs and {} or nil, top = opts.top and {} or nil,
                 n_tokens = 0, stop_reason = nil, text = "" }
  local pending, done = "", false
  -- [steer] generate{ steer = set }: set for this call, the old one put back at the end
  local unsteer = opts.steer ~= nil and require("tide.steer").push(session, opts.steer) or nil
  local t0 = now()

  local function finish(reason, tail)
    done = true
    if unsteer then unsteer() end -- [steer]
    info.stop_reason = info.stop_reason or reason
    info.elapsed = now() - t0
    info.tokens_per_s = info.n_tokens / math.max(info.elapsed, 1e-9)
    chain:close()
    if matcher then
      info.accepted = matcher:accepting()
      matcher:close()
    end
    local out = tail or pending
    pending = ""
    info.text = info.text .. out
    return out ~= "" and out or nil
  end

  local function next_piece()
    while not done do
      if info.n_tokens >= max_tokens then return finish("max_tokens", pending .. detok()) end
      local logits = session:logits()
      local pick = logits
      if opts.processor then
        pick = logits:copy()
        opts.processor(pick, session)
      end
      if matcher then
        local n_ok
        pick, n_ok = matcher:apply(pick)
        -- an unsatisfiable constraint (nothing allowed, not complete): stop
        if n_ok == 0 then return finish("dead_end", pending .. detok()) end
      end
      local id = chain:sample(pick)
      if info.logprobs then info.logprobs[#info.logprobs + 1] = logits:logprob(id) end
      if info.top then
        local ids, vals = logits:topk(opts.top)
        info.top[#info.top + 1] = { ids = ids, logits = vals }
      end
      if model.h:is_eog(id) and (not opts.ignore_eog or matcher) then
        info.eog_token = id
        return finish("eog", pending .. detok())
      end
      if matcher then matcher:advance(id) end
      chain:accept(id)
      info.tokens[#info.tokens + 1] = id
      info.n_tokens = info.n_tokens + 1
      session:feed({ id })
      if opts.on_token then opts.on_token(id, session) end
      pending = pending .. detok(id)
      for _, st in ipairs(stops) do
        local at = pending:find(st, 1, true)
        if at then
          info.stop_reason = "stop"
          info.stop_string = st
          return finish("stop", pending:sub(1, at - 1))
        end
      end
      if opts.until_fn and opts.until_fn(info.text .. pending, id) then
        return finish("predicate", pending)
      end
      if matcher and matcher:finished() then
        return finish("constraint", pending .. detok())
      end
      local keep = held_back(pending, stops)
      if #pending > keep then
        local out = pending:sub(1, #pending - keep)
        pending = pending:sub(#pending - keep + 1)
        info.text = info.text .. out
        return out
      end
    end
    return nil
  end
  local function close()
    if not done then finish("closed") end
  end
  return next_piece, info, close
end

--- session:generate{ max_tokens, sampler, seed, stop, until_fn, ignore_eog,
-- logprobs, top, processor, on_token } -> text, info
function M.generate(session, opts)
  opts = check_opts(session, opts, "generate")
  local step, info = M.stepper(session, opts)
  local parts = {}
  for piece in step do parts[#parts + 1] = piece end
  return table.concat(parts), info
end

--- session:stream{...} -> iterator over text pieces (same options), for a
-- generic for: `for piece in s:stream{...} do ... end`. The iterator runs in
-- a coroutine, so a host can call it a few times per frame; breaking out of
-- the loop (or closing the fourth value, a to-be-closed handle) ends the
-- generation and frees the sampler. The info table is the iterator's
-- field: `local it = s:stream{...}` then `it.info` (also returned second
-- when called as a function: it() returns piece, info).
local Stream = {}
Stream.__index = Stream
Stream.__name = "tide.Stream"
function Stream.__call(self)
  if self.done then return nil end
  local ok, piece = coroutine.resume(self.co)
  if not ok then
    self:close()
    error(piece, 2)
  end
  if piece == nil then self.done = true end
  return piece, self.info
end
function Stream.close(self)
  if not self.done then
    self.done = true
    if coroutine.status(self.co) == "suspended" then coroutine.close(self.co) end
    self.stop()
  end
end
Stream.__close = Stream.close

function M.stream(session, opts)
  opts = check_opts(session, opts, "stream")
  local step, info, stop = M.stepper(session, opts)
  local self = setmetatable({ info = info, stop = stop, done = false }, Stream)
  self.co = coroutine.create(function()
    for piece in step do coroutine.yield(piece) end
    return nil
  end)
  return self, nil, nil, self
end

--- session:select{ "yes", "no", ... } -> best choice, { [choice] = logprob }
-- Scores each continuation by the sum of its tokens' log-probabilities
-- (each choice in its own fork, so the session itself is unchanged).
function M.select(session, choices)
  if type(choices) ~= "table" or #choices == 0 then error("select: a non-empty list of strings expected", 2) end
  local model = session.model
  local scores, best, best_lp = {}, nil, -math.huge
  for _, choice in ipairs(choices) do
    local ids = model:tokenize(choice, { bos = false })
    local lp = #ids > 0 and session:score(ids) or 0.0
    scores[choice] = lp
    if lp > best_lp then best, best_lp = choice, lp end
  end
  return best, scores
end

return M
