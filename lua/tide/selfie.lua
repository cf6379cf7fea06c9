--- tide.selfie: hidden-state injection from Lua, and SelfIE on top of it
-- (Chen et al., "SelfIE: Self-Interpretation of Large Language Model
-- Embeddings", 2024): a hidden state captured from one forward pass is
-- written over placeholder positions of an interpretation prompt, and the
-- model describes it. docs/steering.md ("Injection and SelfIE").
local M = {}

local MAX_ROWS = 256 -- one decode of ctx:feed

local function check_layer(model, layer, name)
  local nl = model.info.n_layer
  if math.type(layer) ~= "integer" or layer < 0 or layer > nl then
    error(string.format("%s: layer must be an integer in 0..%d, got %s", name, nl, tostring(layer)), 3)
  end
end

--- tide.selfie.capture(model, text_or_ids, layer [, position]) -> the hidden
-- state (a tide.Vector) at layer (0 = embeddings, l = after block l-1) of
-- the token at position (1-based, default the last) of the text.
function M.capture(model, text, layer, position)
  check_layer(model, layer, "capture")
  local ids = type(text) == "string" and model:tokenize(text) or text
  if type(ids) ~= "table" or #ids == 0 then error("capture: empty text", 2) end
  position = position or #ids
  if math.type(position) ~= "integer" or position < 1 or position > #ids then
    error(string.format("capture: position %s out of range 1..%d", tostring(position), #ids), 2)
  end
  local s <close> = model:session()
  local ctx = s.ctx
  if position > 1 then s:feed(table.move(ids, 1, position - 1, 1, {})) end
  ctx:capture({ layer })
  local ok, err = pcall(s.feed, s, { ids[position] }) -- its own decode: row 1
  local v = ok and ctx:hidden(layer, 1) or nil
  ctx:capture(nil)
  if not ok then error(err, 2) end
  return v
end

--- tide.selfie.feed(session, ids, injections) feeds ids (at most 256) in one
-- decode with { { layer = l, at = i, vector = v [, add = true] }, ... }
-- applied to the i-th of these ids (1-based): at layer l its vector is
-- replaced by v (or v is added). Later tokens see the changed K/V.
function M.feed(session, ids, injections)
  local seq = session:_live()
  local model, ctx = session.model, session.ctx
  if type(ids) ~= "table" or #ids == 0 or #ids > MAX_ROWS then
    error(string.format("feed: 1..%d token ids expected", MAX_ROWS), 2)
  end
  for k, inj in ipairs(injections or {}) do
    if type(inj) ~= "table" then error(string.format("feed: injection %d is not a table", k), 2) end
    check_layer(model, inj.layer, "feed")
    if math.type(inj.at) ~= "integer" or inj.at < 1 or inj.at > #ids then
      ctx:inject(nil)
      error(string.format("feed: injection %d: at = %s out of range 1..%d", k, tostring(inj.at), #ids), 2)
    end
    local ok, err = pcall(ctx.inject, ctx, inj.layer, inj.at, inj.vector, inj.add and "add" or "replace")
    if not ok then ctx:inject(nil); error(string.format("feed: injection %d: %s", k, err), 2) end
  end
  local ok, err = pcall(ctx.feed, ctx, seq, ids, true)
  ctx:inject(nil)
  if not ok then error(err, 2) end
  model.gen = model.gen + 1
  session.gen, session.row = model.gen, #ids
  local t = session.tokens
  for i = 1, #ids do t[#t + 1] = ids[i] end
  return session
end

--- The interpretation prompt's ids and the placeholder positions in them.
local function build_prompt(model, prompt, n_place, placeholder)
  local before, after = prompt:match("^(.-){}(.*)$")
  if not before then error("selfie: the prompt needs a {} where the placeholders go", 3) end
  local pid = model:tokenize(placeholder, { bos = false })
  if #pid ~= 1 then
    error(string.format("selfie: placeholder %q is %d tokens, expected one", placeholder, #pid), 3)
  end
  local ids = model:tokenize(before)
  local places = {}
  for _ = 1, n_place do
    ids[#ids + 1] = pid[1]
    places[#places + 1] = #ids
  end
  if after ~= "" then
    for _, id in ipairs(model:tokenize(after, { bos = false })) do ids[#ids + 1] = id end
  end
  return ids, places
end

local SELFIE_OPTS = { prompt = true, placeholder = true, repeats = true, layer = true, max_tokens = true,
                      sampler = true, seed = true, stop = true }

M.default_prompt = 'The word "{}" means that'

--- tide.selfie.interpret(model, h, opts) -> { text, tokens, pieces,
-- relevancy }: injects h (a tide.Vector of n_embd) over the placeholder
-- tokens of the interpretation prompt at opts.layer and generates. For
-- each generated token, relevancy = P(token | injected) - P(token | the
-- same prompt without the injection), both teacher-forced on the same ids.
-- opts: layer (required), prompt (default M.default_prompt; "{}" marks where
-- the placeholders go), placeholder (a one-token text, default "_"),
-- repeats (placeholders, default 1), max_tokens (24), sampler (greedy),
-- seed, stop.
function M.interpret(model, h, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not SELFIE_OPTS[k] then error(string.format("selfie: unknown option '%s'", tostring(k)), 2) end
  end
  check_layer(model, opts.layer, "selfie")
  local ids, places = build_prompt(model, opts.prompt or M.default_prompt, opts.repeats or 1,
                                   opts.placeholder or "_")
  local inj = {}
  for i, at in ipairs(places) do inj[i] = { layer = opts.layer, at = at, vector = h } end
  local gen_ids
  local text
  do
    local s <close> = model:session { seed = opts.seed }
    M.feed(s, ids, inj)
    text = s:generate { max_tokens = opts.max_tokens or 24, sampler = opts.sampler, stop = opts.stop }
    gen_ids = table.move(s.tokens, #ids + 1, #s.tokens, 1, {})
  end
  -- teacher-forced probabilities of the generated ids, with and without
  local function probs(with)
    if #gen_ids == 0 then return {} end
    local all = table.move(ids, 1, #ids, 1, {})
    for i = 1, #gen_ids - 1 do all[#all + 1] = gen_ids[i] end
    if #all > MAX_ROWS then error("selfie: prompt and answer exceed 256 tokens", 3) end
    local s <close> = model:session()
    M.feed(s, all, with and inj or nil)
    local p = {}
    for i, id in ipairs(gen_ids) do p[i] = math.exp(s.ctx:logits(#ids + i - 1):logprob(id)) end
    return p
  end
  local pw, pn = probs(true), probs(false)
  local out = { text = text, tokens = gen_ids, pieces = {}, relevancy = {}, p_with = pw, p_without = pn }
  for i, id in ipairs(gen_ids) do
    out.pieces[i] = model:piece(id)
    out.relevancy[i] = pw[i] - pn[i]
  end
  return out
end

return M
