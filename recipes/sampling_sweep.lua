--- sampling_sweep.lua -- one prompt under many decoding settings, compared.
-- Greedy, beam search and sampled settings (temperature, top-k, top-p,
-- min-p) continue the same prefilled prompt; each sampled setting draws
-- --samples continuations together in forks (one batched forward per
-- token). The table gives, per setting, the mean over its samples of the
-- per-sample mean log-probability (under the model, before any
-- temperature) and distinct-1 / distinct-2 (unique n-grams / all n-grams
-- over the setting's samples: 1.0 = no repetition at all). Settings come
-- from `settings:` in a --config file (recipes/examples/sweep.yaml).
-- Usage: tide recipes/sampling_sweep.lua [--prompt TEXT] [--samples 4] ... (--help)
local recipe = require "tide.recipe"
local parallel = require "tide.parallel"
local tide = require "tide"

local R = {}

R.DEFAULT_SETTINGS = {
  { label = "greedy", greedy = true },
  { label = "beam-4", beam = 4 },
  { label = "t=0.7", temperature = 0.7 },
  { label = "t=1.0", temperature = 1.0 },
  { label = "t=1.5", temperature = 1.5 },
  { label = "top-k 10", temperature = 1.0, top_k = 10 },
  { label = "top-p 0.9", temperature = 1.0, top_p = 0.9 },
  { label = "min-p 0.1", temperature = 1.0, min_p = 0.1 },
}

R.spec = {
  name = "sampling_sweep",
  summary = "The same prompt under greedy, beam and temperature/top-k/top-p/min-p settings, as a table " ..
            "with per-sample mean log-probability and distinct-n.",
  options = {
    { "prompt", "string", "The old lighthouse keeper said", "the prompt" },
    { "system", "string", nil, "a system message (chat layouts)" },
    { "samples", "int", 4, "samples per sampled setting (and beams kept per beam setting)" },
    { "max_tokens", "int", 16, "tokens per sample at most" },
    { "settings", "table", nil, "list of { label, greedy = true | beam = WIDTH | temperature, top_k, top_p, " ..
                                "min_p } (config file only; default: greedy, beam-4, three temperatures, top-k, " ..
                                "top-p, min-p)" },
  },
}

local SAMPLER_KEYS = { temperature = true, top_k = true, top_p = true, min_p = true }

local function check_setting(i, st)
  if type(st) ~= "table" then error(string.format("settings[%d]: a table expected", i), 0) end
  for k in pairs(st) do
    if k ~= "label" and k ~= "greedy" and k ~= "beam" and not SAMPLER_KEYS[k] then
      error(string.format("settings[%d]: unknown key '%s' (expected label, greedy, beam, temperature, top_k, " ..
                          "top_p, min_p)", i, tostring(k)), 0)
    end
  end
end

-- The samples of one setting: { text, tokens, mean_logprob }.
local function run_setting(s, st, opts)
  if st.greedy then
    local kid <close> = s:fork()
    local text, info = kid:generate { max_tokens = opts.max_tokens, logprobs = true }
    local sum = 0
    for _, lp in ipairs(info.logprobs) do sum = sum + lp end
    return { { text = text, tokens = info.tokens, mean_logprob = sum / math.max(#info.logprobs, 1) } }
  end
  if st.beam then
    local _, info = s:beam { width = st.beam, max_tokens = opts.max_tokens }
    local out = {}
    for i = 1, math.min(opts.samples, #info.beams) do
      local b = info.beams[i]
      out[i] = { text = b.text, tokens = b.tokens, mean_logprob = b.logprob / math.max(#b.tokens, 1) }
    end
    return out
  end
  local spec = {}
  for k in pairs(SAMPLER_KEYS) do spec[k] = st[k] end
  if not spec.temperature then spec.temperature = 1.0 end
  local cands = parallel.sample_n(s, { n = opts.samples, max_tokens = opts.max_tokens, sampler = tide.sampler(spec),
                                       seed = opts.seed })
  local out = {}
  for i, c in ipairs(cands) do out[i] = { text = c.text, tokens = c.tokens, mean_logprob = c.mean_logprob } end
  return out
end

function R.run(model, opts)
  local settings = opts.settings or R.DEFAULT_SETTINGS
  for i, st in ipairs(settings) do check_setting(i, st) end
  local s <close> = model:session { seed = opts.seed }
  local msgs = {}
  if opts.system then msgs[1] = { role = "system", content = opts.system } end
  msgs[#msgs + 1] = { role = "user", content = opts.prompt }
  local prompt, layout = recipe.prompt(model, opts, msgs, opts.prompt)
  recipe.feed(s, prompt, opts.max_tokens)
  local rows = {}
  for i, st in ipairs(settings) do
    local samples = run_setting(s, st, opts)
    local seqs, mean = {}, 0
    for j, smp in ipairs(samples) do seqs[j] = smp.tokens; mean = mean + smp.mean_logprob end
    rows[i] = { label = st.label or ("setting " .. i), samples = samples, mean_logprob = mean / #samples,
                distinct_1 = recipe.distinct_n(seqs, 1), distinct_2 = recipe.distinct_n(seqs, 2) }
    for _, smp in ipairs(samples) do smp.tokens = #smp.tokens end
  end
  return { recipe = "sampling_sweep", prompt = prompt, layout = layout, settings = rows }
end

function R.show(res)
  recipe.fields { { "prompt", recipe.clip(res.prompt, 100) } }
  print()
  local rows = {}
  for _, r in ipairs(res.settings) do
    rows[#rows + 1] = { r.label, #r.samples, recipe.num(r.mean_logprob), recipe.num(r.distinct_1, 2),
                        recipe.num(r.distinct_2, 2), recipe.clip(r.samples[1].text, 50) }
  end
  recipe.table({ "setting", "samples", "mean lp", "dist-1", "dist-2", "first sample" }, rows)
end

return recipe.main(R, ...)
