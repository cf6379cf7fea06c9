--- judge.lua -- LLM-as-judge: pointwise scores and pairwise preferences.
-- Pointwise: the judge prompt ends in "Rating:" and session:select scores
-- the ten continuations "1/10" .. "10/10" (a closed set: the choices are
-- the only outputs, as a constrained decode would allow, and select gives
-- their log-probabilities directly). Their probabilities, renormalised over
-- the ten, are the score distribution; the score is its expectation.
-- Pairwise: "Verdict:" with the choices A / B / tie, asked twice with the
-- two responses in both orders; the two distributions are averaged with
-- the labels mapped back, which cancels a preference for a position.
-- Optional length-bias correction reweights P(a) by (len_b/len_a)^beta.
-- As a module (recipe.load "judge"): R.pointwise, R.pairwise, and
-- R.scorer(model, opts) -> function(candidate) -> expected score, which
-- best_of_n.lua uses with --scorer judge.
-- Usage: tide recipes/judge.lua --question Q --answer A   (pointwise)
--        tide recipes/judge.lua --mode pairwise --question Q --answer-a A --answer-b B
local recipe = require "tide.recipe"

local R = {}

R.spec = {
  name = "judge",
  summary = "LLM-as-judge: pointwise score 1-10 with its probability distribution, or pairwise A / B / tie in " ..
            "both orders (position bias cancelled), with optional length-bias correction.",
  options = {
    { "mode", "string", "pointwise", "pointwise or pairwise" },
    { "question", "string", "What is 12 + 30?", "the question (or instruction) the responses answer" },
    { "answer", "string", "12 + 30 = 42.", "the response to rate (pointwise)" },
    { "answer_a", "string", "42", "first response (pairwise)" },
    { "answer_b", "string", "12 + 30 is 42, because 12 + 30 = 42.", "second response (pairwise)" },
    { "criteria", "string", "correctness and helpfulness", "what the judge weighs" },
    { "system", "string", "You are a strict, fair judge.", "system message (chat layouts)" },
    { "length_correction", "number", 0, "pairwise: beta of the length-bias correction (0 = off)" },
  },
}

local SCALE = 10

-- Feeds a judge prompt (user message + assistant prefix) into a new
-- session. Returns the session and the prompt text.
local function judge_session(model, opts, user, prefix)
  local msgs = {}
  if opts.system and opts.system ~= "" then msgs[1] = { role = "system", content = opts.system } end
  msgs[#msgs + 1] = { role = "user", content = user }
  local raw = (opts.system and opts.system ~= "" and opts.system .. "\n\n" or "") .. user .. "\n"
  local text = recipe.prompt(model, opts, msgs, raw)
  text = text .. (text:match("[%s]$") and "" or " ") .. prefix
  local s = model:session { seed = opts.seed or 0 }
  local ok, err = pcall(recipe.feed, s, text, 8)
  if not ok then s:close(); error(err, 0) end
  return s, text
end

-- Probabilities of a select result, renormalised over the choices; and the
-- raw probability mass the choices had together.
local function normalise(choices, lps)
  local max = -math.huge
  for _, c in ipairs(choices) do max = math.max(max, lps[c]) end
  local p, z = {}, 0
  for _, c in ipairs(choices) do p[c] = math.exp(lps[c] - max); z = z + p[c] end
  for _, c in ipairs(choices) do p[c] = p[c] / z end
  return p, math.exp(max) * z
end

--- pointwise(model, { question, answer, criteria, system, chat, seed })
-- -> { score = expected rating, best = most likely rating, dist = { [1..10]
-- = probability }, mass = probability of the ten together, prompt }.
function R.pointwise(model, opts)
  local user = string.format("Rate the response to the question on a scale of 1 to %d for %s.\n\n" ..
                             "Question: %s\n\nResponse: %s\n\nReply with the rating only.",
                             SCALE, opts.criteria or "correctness and helpfulness", opts.question, opts.answer)
  local s <close>, prompt = judge_session(model, opts, user, "Rating:")
  local lead = recipe.lead(model)
  local choices = {}
  for k = 1, SCALE do choices[k] = lead .. k .. "/" .. SCALE end -- "k/10": none is a prefix of another
  local _, lps = s:select(choices)
  local p, mass = normalise(choices, lps)
  local dist, score, best, best_p = {}, 0, 1, -1
  for k, c in ipairs(choices) do
    dist[k] = p[c]
    score = score + k * p[c]
    if p[c] > best_p then best, best_p = k, p[c] end
  end
  return { score = score, best = best, dist = dist, mass = mass, prompt = prompt, answer = opts.answer }
end

-- One pairwise call: first and second fill the A and B slots.
local function compare(model, opts, first, second)
  local user = string.format("Which response answers the question better, judged on %s?\n\nQuestion: %s\n\n" ..
                             "Response A: %s\n\nResponse B: %s\n\nAnswer A, B, or tie.",
                             opts.criteria or "correctness and helpfulness", opts.question, first, second)
  local s <close>, prompt = judge_session(model, opts, user, "Verdict:")
  local lead = recipe.lead(model)
  local choices = { lead .. "A", lead .. "B", lead .. "tie" }
  local _, lps = s:select(choices)
  local p = normalise(choices, lps)
  return { prompt = prompt, p = { A = p[choices[1]], B = p[choices[2]], tie = p[choices[3]] } }
end

--- pairwise(model, { question, a, b, criteria, length_correction, ... })
-- -> { verdict = "a"|"b"|"tie", p = { a, b, tie } (averaged over both
-- orders, then length-corrected), raw = { a, b, tie } (before the
-- correction), position_bias = mean P(slot A) - mean P(slot B), calls =
-- { { order = "ab"|"ba", prompt, p = { A, B, tie } }, ... } }.
function R.pairwise(model, opts)
  local ab = compare(model, opts, opts.a, opts.b)
  local ba = compare(model, opts, opts.b, opts.a)
  ab.order, ba.order = "ab", "ba"
  local raw = { a = (ab.p.A + ba.p.B) / 2, b = (ab.p.B + ba.p.A) / 2, tie = (ab.p.tie + ba.p.tie) / 2 }
  local p = { a = raw.a, b = raw.b, tie = raw.tie }
  local beta = opts.length_correction or 0
  local len_a, len_b = #model:tokenize(opts.a, { bos = false }), #model:tokenize(opts.b, { bos = false })
  if beta ~= 0 and len_a > 0 and len_b > 0 then
    -- a judge that likes length is discounted by the length ratio
    p.a = p.a * (len_b / len_a) ^ beta
    p.b = p.b * (len_a / len_b) ^ beta
    local z = p.a + p.b + p.tie
    p.a, p.b, p.tie = p.a / z, p.b / z, p.tie / z
  end
  local verdict = "tie"
  if p.a > p.b and p.a > p.tie then verdict = "a" elseif p.b > p.a and p.b > p.tie then verdict = "b" end
  return { verdict = verdict, p = p, raw = raw, length_correction = beta, lengths = { a = len_a, b = len_b },
           position_bias = (ab.p.A + ba.p.A) / 2 - (ab.p.B + ba.p.B) / 2, calls = { ab, ba } }
end

--- scorer(model, opts) -> function(candidate) -> the pointwise expected
-- score of candidate.text as an answer to opts.question.
function R.scorer(model, opts)
  return function(c)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.answer = c.text
    local r = R.pointwise(model, o)
    c.judge = { score = r.score, best = r.best, dist = r.dist }
    return r.score
  end
end

function R.check(opts)
  if opts.mode ~= "pointwise" and opts.mode ~= "pairwise" then
    error(string.format("unknown mode '%s' (expected pointwise or pairwise)", tostring(opts.mode)), 0)
  end
end

function R.run(model, opts)
  R.check(opts)
  if opts.mode == "pointwise" then
    local r = R.pointwise(model, opts)
    r.recipe, r.mode, r.question = "judge", "pointwise", opts.question
    return r
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.a, o.b = opts.answer_a, opts.answer_b
  local r = R.pairwise(model, o)
  r.recipe, r.mode, r.question, r.answer_a, r.answer_b = "judge", "pairwise", opts.question, o.a, o.b
  return r
end

local function bar(p) return string.rep("#", math.floor(p * 40 + 0.5)) end

function R.show(res)
  recipe.fields { { "question", res.question } }
  if res.mode == "pointwise" then
    recipe.fields { { "response", recipe.clip(res.answer, 100) } }
    print()
    local rows = {}
    for k, p in ipairs(res.dist) do rows[k] = { k, string.format("%.3f", p), bar(p) } end
    recipe.table({ "rating", "p", "" }, rows)
    print()
    recipe.fields {
      { "score", string.format("%.2f (expected rating); most likely %d", res.score, res.best) },
      { "mass", string.format("%.3g of the next-token probability went to the ten ratings", res.mass) },
    }
    return
  end
  recipe.fields { { "a", recipe.clip(res.answer_a, 100) }, { "b", recipe.clip(res.answer_b, 100) } }
  print()
  local rows = {}
  for _, c in ipairs(res.calls) do
    rows[#rows + 1] = { c.order == "ab" and "A=a, B=b" or "A=b, B=a", string.format("%.3f", c.p.A),
                        string.format("%.3f", c.p.B), string.format("%.3f", c.p.tie) }
  end
  recipe.table({ "order", "P(A)", "P(B)", "P(tie)" }, rows)
  print()
  recipe.fields {
    { "averaged", string.format("a %.3f  b %.3f  tie %.3f", res.raw.a, res.raw.b, res.raw.tie) },
    { "position bias", string.format("%+.3f (P of slot A minus slot B, whatever is in it)", res.position_bias) },
    { "length corr.", res.length_correction == 0 and "off" or string.format(
        "beta %.2f, lengths a %d b %d tokens -> a %.3f  b %.3f  tie %.3f", res.length_correction,
        res.lengths.a, res.lengths.b, res.p.a, res.p.b, res.p.tie) },
    { "verdict", res.verdict },
  }
end

return recipe.main(R, ...)
