--- cot.lua -- chain-of-thought prompting with answer extraction.
-- Zero-shot (Kojima et al. 2022), two stages in one session: the question
-- and "Let's think step by step." -> the model's reasoning; then
-- "Therefore, the answer (arabic numerals) is" appended after the
-- reasoning -> a short answer, from which a PCRE2 pattern (tide.re) pulls
-- the number. The second stage continues the first one's KV cache: no
-- re-prefill. Few-shot (Wei et al. 2022): worked exemplars from a YAML
-- file before the question; the answer is pulled from the reasoning
-- ("The answer is N"), falling back to the extraction stage.
-- Usage: tide recipes/cot.lua [--question TEXT] [--mode zero|few] ... (--help)
local tide = require "tide"
local recipe = require "tide.recipe"
local re = require "tide.re"

local R = {}

local HERE = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "recipes"

R.spec = {
  name = "cot",
  summary = "Chain-of-thought: zero-shot in two stages (reasoning, then answer extraction) or few-shot from " ..
            "YAML exemplars; the answer is extracted by a PCRE2 pattern.",
  options = {
    { "question", "string", "A juggler has 16 balls. Half of them are golf balls, and half of the golf balls " ..
                            "are blue. How many blue golf balls are there?", "the question" },
    { "mode", "string", "zero", "zero (two-stage zero-shot CoT) or few (exemplars from --exemplars)" },
    { "exemplars", "string", HERE .. "/examples/cot_exemplars.yaml", "YAML file of few-shot exemplars" },
    { "n_exemplars", "int", nil, "use only the first N exemplars" },
    { "system", "string", nil, "a system message (chat layouts)" },
    { "trigger", "string", "Let's think step by step.", "reasoning trigger (zero-shot)" },
    { "answer_trigger", "string", "Therefore, the answer (arabic numerals) is", "answer-extraction prompt" },
    { "pattern", "string", nil, "PCRE2 pattern for the answer (first capture, or the match); default: the " ..
                                "first number of the extraction stage, or 'answer is N' in few-shot reasoning" },
    { "max_tokens", "int", 64, "reasoning tokens at most" },
    { "answer_tokens", "int", 8, "answer-stage tokens at most" },
    { "temperature", "number", 0, "0 = greedy" },
    { "top_k", "int", 40, "top-k when sampling" },
    { "top_p", "number", 0.95, "top-p when sampling" },
  },
}

--- Default patterns: a number (with optional sign, thousands commas and
-- decimals); in few-shot reasoning, the number after "answer is".
R.NUMBER = [[-?\d[\d,]*(?:\.\d+)?]]
R.FEW_SHOT_ANSWER = [[(?i)answer is\s*\$?(-?\d[\d,]*(?:\.\d+)?)]]

--- extract(text, pattern) -> the answer (commas dropped from numbers) or nil.
function R.extract(text, pattern)
  local a = re.match(text, pattern)
  if type(a) ~= "string" then return nil end
  if a:match("^%-?[%d,]+%.?%d*$") then a = a:gsub(",", "") end
  return a
end

--- The exemplars of opts.exemplars (a YAML file with an `exemplars` list
-- of { question, reasoning, answer }).
function R.load_exemplars(opts)
  local doc = tide.yaml.load_file(opts.exemplars)
  local list = type(doc) == "table" and doc.exemplars
  if type(list) ~= "table" or #list == 0 then
    error(opts.exemplars .. ": an 'exemplars' list of { question, reasoning, answer } expected", 0)
  end
  for i, e in ipairs(list) do
    if type(e) ~= "table" or type(e.question) ~= "string" or type(e.reasoning) ~= "string" or e.answer == nil then
      error(string.format("%s: exemplar %d: question, reasoning and answer expected", opts.exemplars, i), 0)
    end
  end
  local n = math.min(opts.n_exemplars or #list, #list)
  return table.move(list, 1, n, 1, {})
end

--- The stage-1 prompt text: the question in the chosen layout, followed by
-- the trigger (zero-shot). Returns text, layout.
function R.build_prompt(model, opts)
  local msgs, raw = {}, {}
  if opts.system then msgs[1] = { role = "system", content = opts.system }; raw[1] = opts.system .. "\n\n" end
  if opts.mode == "few" then
    for _, e in ipairs(R.load_exemplars(opts)) do
      local worked = e.reasoning .. " The answer is " .. tostring(e.answer) .. "."
      msgs[#msgs + 1] = { role = "user", content = e.question }
      msgs[#msgs + 1] = { role = "assistant", content = worked }
      raw[#raw + 1] = "Q: " .. e.question .. "\nA: " .. worked .. "\n\n"
    end
  elseif opts.mode ~= "zero" then
    error(string.format("unknown mode '%s' (expected zero or few)", tostring(opts.mode)), 0)
  end
  msgs[#msgs + 1] = { role = "user", content = opts.question }
  raw[#raw + 1] = "Q: " .. opts.question .. "\nA:"
  local text, layout = recipe.prompt(model, opts, msgs, table.concat(raw))
  if opts.mode == "zero" and opts.trigger ~= "" then
    text = text .. (text:match("%s$") and "" or " ") .. opts.trigger
  end
  return text, layout
end

-- Stops for the reasoning stage: the next question of a Q:/A: or a plain
-- User:/Assistant: layout.
local STOPS = { "\nQ:", "\nUser:" }

function R.check(opts)
  if opts.pattern then re.check(opts.pattern) end
  if opts.mode ~= "zero" and opts.mode ~= "few" then
    error(string.format("unknown mode '%s' (expected zero or few)", tostring(opts.mode)), 0)
  end
end

function R.run(model, opts)
  R.check(opts)
  local sampler = recipe.sampler(opts)
  local s <close> = model:session { seed = opts.seed }
  local prompt, layout = R.build_prompt(model, opts)
  recipe.feed(s, prompt, opts.max_tokens + opts.answer_tokens + 16)
  local prompt_tokens = s.pos

  -- stage 1: reasoning
  local reasoning, info1 = s:generate { max_tokens = opts.max_tokens, sampler = sampler, stop = STOPS }
  local stages = { { name = "reasoning", prompt = prompt, output = reasoning, tokens = info1.n_tokens,
                     stop_reason = info1.stop_reason } }
  local answer, source
  if opts.mode == "few" then
    answer = R.extract(reasoning, opts.pattern or R.FEW_SHOT_ANSWER)
    source = answer and "reasoning"
  end

  -- stage 2: answer extraction, continuing the same session
  if not answer then
    local ask = " " .. opts.answer_trigger
    recipe.append(s, ask)
    local out, info2 = s:generate { max_tokens = opts.answer_tokens, sampler = "greedy", stop = STOPS }
    stages[2] = { name = "answer", prompt = ask, output = out, tokens = info2.n_tokens,
                  stop_reason = info2.stop_reason }
    answer = R.extract(out, opts.pattern or R.NUMBER)
    source = answer and "answer"
  end
  return { recipe = "cot", mode = opts.mode, layout = layout, question = opts.question,
           prompt_tokens = prompt_tokens, stages = stages, answer = answer, answer_from = source,
           pattern = opts.pattern or (source == "reasoning" and R.FEW_SHOT_ANSWER or R.NUMBER) }
end

function R.show(res)
  recipe.fields {
    { "question", res.question },
    { "mode", res.mode .. "-shot, layout " .. res.layout .. ", prompt " .. res.prompt_tokens .. " tokens" },
  }
  for i, st in ipairs(res.stages) do
    print(string.format("\n[stage %d: %s]%s", i, st.name, i == 1 and "" or "  (appended: " .. st.prompt .. ")"))
    print(st.output)
    print(string.format("(%d tokens, %s)", st.tokens, st.stop_reason))
  end
  print()
  recipe.fields {
    { "pattern", res.pattern },
    { "answer", res.answer and (res.answer .. "   (from the " .. res.answer_from .. " stage)") or "(none extracted)" },
  }
end

return recipe.main(R, ...)
