--- self_consistency.lua -- sample N reasoning paths, vote on the answer.
-- Self-consistency (Wang et al. 2022): the chain-of-thought prompt of
-- cot.lua is prefilled once; N forks of it sample reasoning paths together
-- (one batched forward per token for all N); each path's answer is pulled
-- out by a PCRE2 pattern (default: the last number in the path); the
-- majority answer wins. Prints the vote table and the agreement ratio
-- (votes for the winner / N).
-- Usage: tide recipes/self_consistency.lua [--n 8] [--question TEXT] ... (--help)
local recipe = require "tide.recipe"
local re = require "tide.re"

local cot = recipe.load("cot")

local R = {}

-- cot's prompt options, then self-consistency's own.
local options = {}
for _, o in ipairs(cot.spec.options) do
  local k = o[1]
  if k ~= "answer_trigger" and k ~= "answer_tokens" and k ~= "pattern" and k ~= "temperature" then
    options[#options + 1] = o
  end
end
for _, o in ipairs {
  { "n", "int", 8, "reasoning paths" },
  { "pattern", "string", nil, "PCRE2 pattern for a path's answer (first capture, or the match); default: the " ..
                              "number after 'answer is', else the last number of the path" },
  { "temperature", "number", 0.8, "sampling temperature of the paths" },
} do options[#options + 1] = o end

R.spec = {
  name = "self_consistency",
  summary = "Self-consistency: N chain-of-thought paths sampled in parallel forks of one prefilled prompt, " ..
            "answers extracted, majority vote, agreement ratio and vote table.",
  options = options,
}

--- The answer of one path: opts.pattern, else "answer is N", else the
-- last number.
function R.extractor(pattern)
  return function(text)
    if pattern then return cot.extract(text, pattern) end
    local a = cot.extract(text, cot.FEW_SHOT_ANSWER)
    if a then return a end
    local last
    for num in re.gmatch(text, cot.NUMBER) do last = num end
    return last and (last:gsub(",", ""))
  end
end

function R.run(model, opts)
  if opts.pattern then re.check(opts.pattern) end
  if math.type(opts.n) ~= "integer" or opts.n < 1 then error("--n must be a positive integer", 0) end
  local s <close> = model:session { seed = opts.seed }
  local prompt, layout = cot.build_prompt(model, opts)
  recipe.feed(s, prompt, opts.max_tokens)
  local answer, info = s:self_consistency {
    n = opts.n, max_tokens = opts.max_tokens, sampler = recipe.sampler(opts), seed = opts.seed,
    stop = { "\nQ:", "\nUser:" }, extract = R.extractor(opts.pattern),
  }
  local votes = {}
  for i, a in ipairs(info.order) do votes[i] = { answer = a, count = info.votes[a], first = i } end
  table.sort(votes, function(x, y) -- most votes first; ties in the order answers were first seen
    if x.count ~= y.count then return x.count > y.count end
    return x.first < y.first
  end)
  local paths = {}
  for i, c in ipairs(info.candidates) do
    paths[i] = { text = c.text, answer = c.answer, tokens = #c.tokens, mean_logprob = c.mean_logprob,
                 stop_reason = c.stop_reason }
  end
  return { recipe = "self_consistency", question = opts.question, mode = opts.mode, layout = layout,
           prompt_tokens = s.pos, n = opts.n, answer = answer, agreement = info.agreement,
           answered = info.answered, votes = votes, paths = paths }
end

function R.show(res)
  recipe.fields {
    { "question", res.question },
    { "prompt", string.format("%s-shot CoT, layout %s, %d tokens prefilled once", res.mode, res.layout,
                              res.prompt_tokens) },
  }
  print()
  local rows = {}
  for i, p in ipairs(res.paths) do
    rows[i] = { i, p.answer or "-", recipe.num(p.mean_logprob), recipe.clip(p.text, 60) }
  end
  recipe.table({ "path", "answer", "mean lp", "reasoning" }, rows)
  print()
  rows = {}
  for i, v in ipairs(res.votes) do rows[i] = { v.answer, v.count, string.rep("#", v.count) } end
  if #rows > 0 then recipe.table({ "answer", "votes", "" }, rows) print() end
  recipe.fields {
    { "answer", res.answer or "(no path gave an answer)" },
    { "agreement", string.format("%.2f (%d of %d paths; %d answered)", res.agreement,
                                 res.votes[1] and res.votes[1].count or 0, res.n, res.answered) },
  }
end

return recipe.main(R, ...)
