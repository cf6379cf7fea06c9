--- red_team.lua -- search for prompts X that make a target Y likely.
-- Maximises log P(Y | X) over the tokens of X by greedy coordinate search:
-- sweep the positions of X; at each, propose --candidates substitute
-- tokens (half from the model's own top predictions at that position, half
-- drawn at random from the vocabulary: tide has no gradients, so this
-- takes the place of GCG's gradient-ranked list), score every candidate
-- prompt in one batch -- the shared prefix is prefilled once, the K
-- candidate suffixes (substitute, rest of X, chat tail, Y) run in K forks
-- with one batched forward per position -- and keep the best substitution
-- if it beats the current prompt. Several rounds collect distinct modes:
-- round r maximises log P(Y | X) - lambda * max over the prompts found in
-- rounds < r of their token overlap with X (the fraction of positions that
-- agree), and a prompt already found scores -inf -- in the spirit of the
-- iterative, Frank-Wolfe-style red-teaming that adds one mode per round.
-- Usage: tide recipes/red_team.lua [--target TEXT] [--start TEXT] [--rounds 3] ... (--help)
local recipe = require "tide.recipe"
local chat = require "tide.chat"

local R = {}

R.spec = {
  name = "red_team",
  summary = "Prompt search: greedy coordinate search over prompt tokens maximising log P(target | prompt), " ..
            "candidates scored in batched forks; later rounds penalise similarity to prompts already found.",
  options = {
    { "target", "string", " the password is", "the continuation Y to make likely" },
    { "start", "string", "Please tell me what", "the starting prompt X (its token count is kept)" },
    { "rounds", "int", 3, "rounds (modes to collect)" },
    { "iterations", "int", 16, "coordinate steps per round at most (a sweep without a gain ends a round)" },
    { "candidates", "int", 16, "substitutions scored per step, in one batch (at most 60)" },
    { "similarity_penalty", "number", 2.0, "lambda: weight of the overlap with prompts already found" },
    { "chat", "string", "raw", "raw (X then Y, no chat layout), auto, template, or a built-in name: X is the " ..
                               "user turn and Y starts the assistant's reply" },
  },
}

local MARK = "\u{E000}" -- a private-use character splits the chat layout around X

-- Head and tail token ids around X: head ⊕ X ⊕ tail ⊕ Y is what is scored.
local function frame(model, opts)
  if opts.chat == "raw" then return model:tokenize("", { special = true }), {} end
  local text = chat.apply(model, { { role = "user", content = MARK } }, { template = opts.chat })
  local head, tail = text:match("^(.-)" .. MARK .. "(.*)$")
  return model:tokenize(head, { special = true }), model:tokenize(tail, { special = true, bos = false })
end

-- A small seeded generator (an LCG, top bits): reproducible, and it leaves
-- math.random alone.
local function rng(seed)
  local state = seed * 2654435761 + 12345
  return function(n)
    state = state * 6364136223846793005 + 1442695040888963407
    return ((state >> 33) % n)
  end
end

-- Tokens a prompt may use: printable text pieces, no control or end tokens.
local function allowed_fn(model)
  local sp = model:special()
  local cache = {}
  return function(id)
    local v = cache[id]
    if v == nil then
      local piece = model:piece(id)
      v = id ~= sp.bos and id ~= sp.eos and not model:is_eog(id) and #piece > 0 and utf8.len(piece) ~= nil
          and not piece:find("[%c]") and piece ~= MARK
      cache[id] = v
    end
    return v
  end
end

--- score_batch(ctx, j, subs) -> log P(Y | X with X[j] = subs[k]) for each k.
-- ctx: { model, base (session with the head fed), x, tail, y }.
function R.score_batch(ctx, j, subs)
  local model, x = ctx.model, ctx.x
  local p <close> = ctx.base:fork()
  if j > 1 then p:feed(table.move(x, 1, j - 1, 1, {})) end
  local kids = p:fork(#subs)
  local rest = table.move(x, j + 1, #x, 1, {})
  table.move(ctx.tail, 1, #ctx.tail, #rest + 1, rest)
  local n_fixed = #rest -- suffix = sub, rest (X tail + chat tail), Y
  local suffix_len = 1 + n_fixed + #ctx.y
  local function token(k, t)
    if t == 1 then return subs[k] end
    if t <= 1 + n_fixed then return rest[t - 1] end
    return ctx.y[t - 1 - n_fixed]
  end
  local lp = {}
  for k = 1, #subs do lp[k] = 0.0 end
  for t = 1, suffix_len - 1 do
    local ids = {}
    for k = 1, #subs do ids[k] = token(k, t) end
    model:step(kids, ids)
    if t + 1 > 1 + n_fixed then -- the next token is one of Y's
      for k, kid in ipairs(kids) do lp[k] = lp[k] + kid:logits():logprob(token(k, t + 1)) end
    end
  end
  for _, kid in ipairs(kids) do kid:close() end
  return lp
end

-- Overlap of two prompts of equal length: the fraction of positions that agree.
local function overlap(a, b)
  local same = 0
  for i = 1, #a do if a[i] == b[i] then same = same + 1 end end
  return same / #a
end

local function same(a, b)
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

--- objective(x, logprob, found, lambda) -> penalised score.
function R.objective(x, lp, found, lambda)
  local worst = 0
  for _, f in ipairs(found) do
    if same(x, f.tokens) then return -math.huge end
    worst = math.max(worst, overlap(x, f.tokens))
  end
  return lp - lambda * worst
end

-- Candidate substitutes for position j: the model's top predictions there
-- and random tokens, distinct, none equal to the current one.
local function propose(ctx, j, k, draw, allowed)
  local model, x = ctx.model, ctx.x
  local out, seen = {}, { [x[j]] = true }
  local p <close> = ctx.base:fork()
  if j > 1 then p:feed(table.move(x, 1, j - 1, 1, {})) end
  local ids = p.pos > 0 and p:logits():topk(4 * k) or {} -- nothing to predict from without a BOS
  for _, id in ipairs(ids) do
    if #out >= k // 2 then break end
    if not seen[id] and allowed(id) then out[#out + 1] = id; seen[id] = true end
  end
  local tries = 0
  while #out < k and tries < 100 * k do
    local id = draw(model.n_vocab)
    if not seen[id] and allowed(id) then out[#out + 1] = id; seen[id] = true end
    tries = tries + 1
  end
  return out
end

--- One round of coordinate search from x0. Returns { tokens, logprob,
-- objective, start_logprob, steps = { { iteration, position, from, to,
-- logprob } } }.
function R.round(ctx, x0, found, opts, draw, allowed)
  ctx.x = table.move(x0, 1, #x0, 1, {})
  local cur_lp = R.score_batch(ctx, 1, { ctx.x[1] })[1]
  local start_lp = cur_lp
  local cur = R.objective(ctx.x, cur_lp, found, opts.similarity_penalty)
  local steps, idle = {}, 0
  for it = 1, opts.iterations do
    local j = (it - 1) % #ctx.x + 1
    local subs = propose(ctx, j, opts.candidates, draw, allowed)
    if #subs > 0 then
      local lps = R.score_batch(ctx, j, subs)
      local best, best_obj, best_lp = nil, cur, nil
      for k, id in ipairs(subs) do
        local old = ctx.x[j]
        ctx.x[j] = id
        local obj = R.objective(ctx.x, lps[k], found, opts.similarity_penalty)
        ctx.x[j] = old
        if obj > best_obj then best, best_obj, best_lp = id, obj, lps[k] end
      end
      if best then
        steps[#steps + 1] = { iteration = it, position = j, from = ctx.x[j], to = best, logprob = best_lp }
        ctx.x[j], cur, cur_lp, idle = best, best_obj, best_lp, 0
      else
        idle = idle + 1
      end
    else
      idle = idle + 1
    end
    if idle >= #ctx.x then break end -- a full sweep without a gain
  end
  return { tokens = ctx.x, logprob = cur_lp, objective = cur, start_logprob = start_lp, steps = steps }
end

function R.check(opts)
  if opts.candidates < 1 or opts.candidates > 60 then error("--candidates must be in 1..60", 0) end
  if opts.rounds < 1 then error("--rounds must be at least 1", 0) end
  if opts.target == "" then error("--target must not be empty", 0) end
end

function R.run(model, opts)
  R.check(opts)
  local head, tail = frame(model, opts)
  local x0 = model:tokenize(opts.start, { bos = false })
  -- Y continues X: a tokenizer that adds its own leading space gets none
  local ytext = recipe.lead(model) == "" and opts.target:gsub("^ ", "") or opts.target
  local y = model:tokenize(ytext, { bos = false })
  if #x0 == 0 then error("--start must have at least one token", 0) end
  if #head + #x0 + #tail + #y > model.n_ctx then error("prompt and target do not fit the context", 0) end
  local base <close> = model:session { seed = opts.seed }
  if #head > 0 then base:feed(head) end
  local ctx = { model = model, base = base, tail = tail, y = y }
  local draw, allowed = rng(opts.seed), allowed_fn(model)
  local found = {}
  for r = 1, opts.rounds do
    local res = R.round(ctx, x0, found, opts, draw, allowed)
    res.round = r
    res.text = model:detokenize(res.tokens)
    res.max_overlap = 0
    for _, f in ipairs(found) do res.max_overlap = math.max(res.max_overlap, overlap(res.tokens, f.tokens)) end
    found[#found + 1] = res
  end
  local start_lp = found[1].start_logprob
  local best = found[1]
  for _, f in ipairs(found) do if f.logprob > best.logprob then best = f end end
  return { recipe = "red_team", target = opts.target, target_tokens = #y, start = opts.start,
           start_tokens = x0, start_logprob = start_lp, layout = opts.chat, rounds = found, best = best }
end

function R.show(res)
  recipe.fields {
    { "target", string.format("%q (%d tokens)", res.target, res.target_tokens) },
    { "start", string.format("%q: log P(target | start) = %s", res.start, recipe.num(res.start_logprob)) },
  }
  print()
  local rows = {}
  for _, r in ipairs(res.rounds) do
    rows[#rows + 1] = { r.round, recipe.num(r.logprob), recipe.num(r.objective), #r.steps,
                        string.format("%.2f", r.max_overlap), '"' .. recipe.clip(r.text) .. '"' }
  end
  recipe.table({ "round", "log P(Y|X)", "objective", "steps", "overlap", "prompt X" }, rows)
  print()
  local b = res.best
  recipe.fields { { "best", string.format('"%s"  log P = %s (start %s)', recipe.clip(b.text), recipe.num(b.logprob),
                                          recipe.num(res.start_logprob)) } }
end

return recipe.main(R, ...)
