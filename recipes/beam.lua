--- beam.lua -- beam search, beams ranked, next to the greedy decode.
-- Every beam is a fork of the one prefilled prompt; each step decodes all
-- live beams in one batched forward (tide.beam). A beam's score is its
-- log-probability / n_tokens ^ length_penalty.
-- Usage: tide recipes/beam.lua [--prompt TEXT] [--width 4] [--max-tokens 16] ... (--help)
local recipe = require "tide.recipe"

local R = {}

R.spec = {
  name = "beam",
  summary = "Beam search over forked sequences (one batched forward per step), with every final beam's " ..
            "log-probability and score, and the greedy decode for comparison.",
  options = {
    { "prompt", "string", "The old lighthouse keeper said", "the prompt" },
    { "system", "string", nil, "a system message (chat layouts)" },
    { "width", "int", 4, "beam width" },
    { "max_tokens", "int", 16, "tokens per beam at most" },
    { "length_penalty", "number", 1.0, "score = logprob / n_tokens ^ length_penalty (0: raw sum, 1: mean)" },
  },
}

--- The prompt of a prompt-taking recipe, through the chat layout.
function R.prompt(model, opts)
  local msgs = {}
  if opts.system then msgs[1] = { role = "system", content = opts.system } end
  msgs[#msgs + 1] = { role = "user", content = opts.prompt }
  return recipe.prompt(model, opts, msgs, opts.prompt)
end

function R.run(model, opts)
  if math.type(opts.width) ~= "integer" or opts.width < 1 then error("--width must be a positive integer", 0) end
  local s <close> = model:session { seed = opts.seed }
  local prompt, layout = R.prompt(model, opts)
  recipe.feed(s, prompt, opts.max_tokens)
  local greedy
  do
    local kid <close> = s:fork()
    local text, info = kid:generate { max_tokens = opts.max_tokens, logprobs = true }
    local sum = 0
    for _, lp in ipairs(info.logprobs) do sum = sum + lp end
    greedy = { text = text, tokens = info.n_tokens, logprob = sum }
  end
  local _, info = s:beam { width = opts.width, max_tokens = opts.max_tokens, length_penalty = opts.length_penalty }
  local beams = {}
  for i, b in ipairs(info.beams) do
    beams[i] = { rank = i, text = b.text, tokens = #b.tokens, logprob = b.logprob, score = b.score,
                 ended_by = b.ended_by }
  end
  return { recipe = "beam", prompt = prompt, layout = layout, width = opts.width,
           length_penalty = opts.length_penalty, greedy = greedy, beams = beams }
end

function R.show(res)
  recipe.fields { { "prompt", recipe.clip(res.prompt, 100) },
                  { "search", string.format("width %d, length penalty %g", res.width, res.length_penalty) } }
  print()
  local g = res.greedy
  local rows = { { "greedy", g.tokens, recipe.num(g.logprob), recipe.num(g.logprob / math.max(g.tokens, 1)), "",
                   recipe.clip(g.text, 60) } }
  for _, b in ipairs(res.beams) do
    rows[#rows + 1] = { "beam " .. b.rank, b.tokens, recipe.num(b.logprob), recipe.num(b.score), b.ended_by,
                        recipe.clip(b.text, 60) }
  end
  recipe.table({ "", "tokens", "logprob", "score", "ended by", "text" }, rows)
end

return recipe.main(R, ...)
