--- best_of_n.lua -- N candidates decoded together, scored, ranked.
-- The prompt is prefilled once; N forks sample their continuations in
-- lockstep (one batched forward per token for all N, see tide.best_of_n).
-- Scorers:
--   logprob  the mean log-probability of the candidate's tokens
--   regex    a verifier: candidates in which the PCRE2 --pattern matches
--            pass and are ranked by mean log-probability; the rest get -inf
--   arith    a verifier: every "a op b = c" in the text must be right (and
--            there must be one); passing candidates ranked by log-probability
--   judge    the expected 1-10 rating of recipes/judge.lua (pointwise)
-- Usage: tide recipes/best_of_n.lua [--n 8] [--scorer logprob|regex|arith|judge] ... (--help)
local recipe = require "tide.recipe"
local re = require "tide.re"

local R = {}

R.spec = {
  name = "best_of_n",
  summary = "Best-of-N: N candidates sampled in parallel forks of one prefilled prompt, scored by mean " ..
            "log-probability, a Lua verifier (regex, arithmetic) or the judge, printed best first.",
  options = {
    { "prompt", "string", "Write one true equation, such as 3 + 4 = 7.", "the prompt" },
    { "system", "string", nil, "a system message (chat layouts)" },
    { "n", "int", 8, "candidates" },
    { "max_tokens", "int", 24, "tokens per candidate at most" },
    { "scorer", "string", "logprob", "logprob, regex, arith or judge" },
    { "pattern", "string", [[\d+\s*[-+*/]\s*\d+\s*=\s*\d+]], "regex scorer: PCRE2 pattern a candidate must contain" },
    { "question", "string", nil, "judge scorer: the question the candidates answer (default: the prompt)" },
    { "criteria", "string", "correctness and helpfulness", "judge scorer: what the judge weighs" },
    { "stop", "list", { "\n" }, "stop strings (comma-separated)" },
    { "temperature", "number", 0.8, "sampling temperature" },
    { "top_k", "int", 40, "top-k" },
    { "top_p", "number", 0.95, "top-p" },
    { "min_p", "number", 0, "min-p" },
  },
}

local OPS = {
  ["+"] = function(a, b) return a + b end,
  ["-"] = function(a, b) return a - b end,
  ["*"] = function(a, b) return a * b end,
  ["x"] = function(a, b) return a * b end,
  ["/"] = function(a, b) return b ~= 0 and a / b or nil end,
}

--- arith(text) -> true if text has at least one "a op b = c" and all are
-- right; and the list of { expr, ok } checks.
function R.arith(text)
  local checks, all = {}, true
  for a, op, b, c in re.gmatch(text, [[(-?\d+)\s*([-+*/x])\s*(-?\d+)\s*=\s*(-?\d+(?:\.\d+)?)]]) do
    local v = OPS[op](tonumber(a), tonumber(b))
    local ok = v ~= nil and math.abs(v - tonumber(c)) < 1e-9
    checks[#checks + 1] = { expr = string.format("%s %s %s = %s", a, op, b, c), ok = ok }
    all = all and ok
  end
  return #checks > 0 and all, checks
end

--- The scorer function for opts.scorer.
function R.make_scorer(model, opts)
  local kind = opts.scorer
  if kind == "logprob" then return function(c) return c.mean_logprob end end
  if kind == "regex" then
    re.check(opts.pattern)
    return function(c)
      c.passed = re.find(c.text, opts.pattern) ~= nil
      return c.passed and c.mean_logprob or -math.huge
    end
  end
  if kind == "arith" then
    return function(c)
      c.passed, c.checks = R.arith(c.text)
      return c.passed and c.mean_logprob or -math.huge
    end
  end
  if kind == "judge" then
    local judge = recipe.load("judge")
    return judge.scorer(model, { question = opts.question or opts.prompt, criteria = opts.criteria,
                                 chat = opts.chat, seed = opts.seed, system = "You are a strict, fair judge." })
  end
  error(string.format("unknown scorer '%s' (expected logprob, regex, arith or judge)", tostring(kind)), 0)
end

function R.check(opts)
  if opts.scorer == "regex" then re.check(opts.pattern) end
  if math.type(opts.n) ~= "integer" or opts.n < 1 then error("--n must be a positive integer", 0) end
end

function R.run(model, opts)
  R.check(opts)
  local scorer = R.make_scorer(model, opts)
  local s <close> = model:session { seed = opts.seed }
  local msgs = {}
  if opts.system then msgs[1] = { role = "system", content = opts.system } end
  msgs[#msgs + 1] = { role = "user", content = opts.prompt }
  local prompt, layout = recipe.prompt(model, opts, msgs, opts.prompt)
  local before = model:stats()
  recipe.feed(s, prompt, opts.max_tokens)
  local work
  -- the first scorer call marks the end of decoding: the work so far is
  -- the prompt's one prefill plus the batched candidate steps
  local function scored(c)
    if not work then
      local now = model:stats()
      work = { rows = now.rows - before.rows, decodes = now.decodes - before.decodes }
    end
    return scorer(c)
  end
  local _, info = s:best_of_n { n = opts.n, max_tokens = opts.max_tokens, sampler = recipe.sampler(opts),
                                seed = opts.seed, stop = opts.stop, scorer = scored }
  local decoded = 0
  local cands = {}
  for rank, c in ipairs(info.candidates) do
    decoded = decoded + #c.tokens
    cands[rank] = { rank = rank, index = c.index, text = c.text, score = c.score, mean_logprob = c.mean_logprob,
                    tokens = #c.tokens, stop_reason = c.stop_reason, passed = c.passed, checks = c.checks,
                    judge = c.judge }
  end
  work.prompt_tokens = s.pos
  work.decoded_tokens = decoded
  return { recipe = "best_of_n", prompt = prompt, layout = layout, scorer = opts.scorer, n = opts.n,
           best = cands[1], candidates = cands, work = work }
end

function R.show(res)
  recipe.fields {
    { "prompt", recipe.clip(res.prompt, 100) },
    { "scorer", res.scorer },
    { "work", string.format("one prefill of %d tokens, then %d batched steps for %d candidates (%d rows in all)",
                            res.work.prompt_tokens, res.work.decodes - 1, res.n, res.work.rows) },
  }
  print()
  local rows = {}
  for _, c in ipairs(res.candidates) do
    local note = c.passed == nil and "" or (c.passed and "pass" or "fail")
    if c.judge then note = "most likely " .. c.judge.best end
    rows[#rows + 1] = { c.rank, c.index, recipe.num(c.score), recipe.num(c.mean_logprob), note,
                        recipe.clip(c.text, 60) }
  end
  recipe.table({ "rank", "cand", "score", "mean lp", "check", "text" }, rows)
  print()
  recipe.fields { { "best", recipe.clip(res.best.text, 100) } }
end

return recipe.main(R, ...)
