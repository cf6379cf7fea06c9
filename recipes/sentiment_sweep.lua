--- sentiment_sweep.lua -- does a sentiment steer move the sentiment of what
-- the model writes, step by step with its coefficient, and what does it
-- cost in fluency? Issue 6's acceptance experiment.
-- For every prompt (50+ neutral sentence openings) and seed, continuations
-- are sampled at each coefficient eps = k * eps0 (k in --multiples, default
-- -2 -1 0 1 2; eps0 = --value * the eps the steer was trained with). All
-- k x seeds continuations of a prompt are forks of one prefill, decoded in
-- one batched forward per token, each fork with its own steer set; the same
-- seed draws the same random numbers at every eps (paired samples). Each
-- continuation gets its AFINN-165 score (tide.sentiment: the sum of the
-- lexicon values of its words) and its log-probability under the UNSTEERED
-- model (session:score on the prompt). Reported per eps: the mean score
-- with its standard error (sd / sqrt(n) over the n = prompts x seeds
-- continuations), the mean comparative (score / words) and the perplexity
-- exp(-sum log p / tokens), pooled over all of that eps's tokens, and the
-- lexicon words that carried the score most often (what the steer found).
-- --svg PATH writes the two-panel plot (score and perplexity against eps).
-- Usage: tide recipes/sentiment_sweep.lua [--steer models/sentiment.steer.gguf] [--value 2.5] [--seeds 3]
--          [--max-tokens 30] [--svg docs/sentiment-sweep.svg] (--help)
local recipe = require "tide.recipe"
local tide = require "tide"
local sentiment = require "tide.sentiment"

local R = {}

-- Neutral sentence openings in the registers of tide-small's corpus (the
-- King James Bible, 1961 American prose): no AFINN word in any of them.
R.PROMPTS = {
  "The man said that", "In the morning the", "She looked at the", "The house was",
  "When they came to the city,", "He wrote a letter to", "The people of the town", "After the meeting, the",
  "The old woman", "At the end of the day,", "The children went to", "The king sent",
  "His father told him that", "The report says that", "On the next day", "The weather was",
  "They sat down and", "The doctor said", "It was the first time that", "The committee decided to",
  "In the evening he", "The soldiers", "My brother", "The book is about",
  "The city council", "When the woman saw", "The students", "The president said that",
  "The ship", "Her mother", "The news from the", "And the people",
  "The teacher told the class", "At the door stood", "The second part of the", "He went into the house and",
  "The water in the river", "Every year the", "The family", "The man who came",
  "This is the story of", "The road to the", "In the spring the", "The game",
  "The young man", "The letter said", "The church", "Then he said unto them,",
  "The farmer", "The officer", "The market", "We went to the",
  "The music", "The voice of the", "The land", "Her friend",
  "The police", "The new school", "The words of the", "The work",
}

R.spec = {
  name = "sentiment_sweep",
  summary = "Samples continuations of neutral prompts under a sentiment steer at eps = k * eps0 and reports " ..
            "the AFINN-165 lexicon score (mean +- standard error) and the perplexity under the unsteered model.",
  options = {
    { "steer", "string", "models/sentiment.steer.gguf", "the steer file (recipes/steer_train.lua)" },
    { "value", "number", 2.5, "eps0 in steer values: eps0 = VALUE * the eps the steer was trained with" },
    { "multiples", "list", { "-2", "-1", "0", "1", "2" }, "the k of eps = k * eps0" },
    { "seeds", "int", 3, "continuations per prompt and eps (the same seeds at every eps: paired)" },
    { "prompts", "table", nil, "list of prompt strings (config file only; default: 60 built-in openings)" },
    { "n_prompts", "int", nil, "use only the first N prompts" },
    { "max_tokens", "int", 30, "tokens per continuation (fewer when the model ends the text)" },
    { "temperature", "number", 1.0, "sampling temperature" },
    { "top_p", "number", 0.9, "nucleus sampling threshold (1 = off)" },
    { "lexicon", "string", nil, "WORD<TAB>SCORE lexicon file (default: recipes/data/afinn-165.tsv)" },
    { "ignore", "list", nil, "lexicon entries not counted (a robustness check, e.g. --ignore like)" },
    { "samples", "int", 2, "sample continuations shown per end of the sweep" },
    { "svg", "string", nil, "write the plot to this SVG file" },
    { "quiet", "bool", false, "no progress line on stderr" },
  },
}

local function mean_se(xs)
  local n, s = #xs, 0
  for _, x in ipairs(xs) do s = s + x end
  local m = s / n
  local v = 0
  for _, x in ipairs(xs) do v = v + (x - m) ^ 2 end
  return m, n > 1 and math.sqrt(v / (n - 1) / n) or 0
end

-- All continuations of one prompt: forks x (eps, seed), decoded in lockstep.
local function sample_prompt(model, w, prompt, cells, spec, opts, pi)
  local s <close> = model:session { seed = opts.seed }
  s:feed(prompt)
  s:logits()
  local kids = s:fork(#cells)
  local n_vocab = model.info.n_vocab
  local cands, live = {}, {}
  for i, cell in ipairs(cells) do
    kids[i]:steer(cell.eps ~= 0 and { [w] = cell.eps } or {})
    -- the same seed at every eps: paired samples
    cands[i] = { tokens = {}, chain = spec:build(n_vocab, opts.seed * 1000003 + pi * 1009 + cell.seed) }
    live[i] = i
  end
  for _ = 1, opts.max_tokens do
    local step_s, step_t, still = {}, {}, {}
    for _, i in ipairs(live) do
      local c = cands[i]
      local id = c.chain:sample(kids[i]:logits())
      if not model:is_eog(id) then
        c.chain:accept(id)
        c.tokens[#c.tokens + 1] = id
        step_s[#step_s + 1], step_t[#step_t + 1], still[#still + 1] = kids[i], id, i
      end
    end
    live = still
    if #live == 0 or #cands[live[1]].tokens >= opts.max_tokens then break end
    model:step(step_s, step_t)
  end
  for i, kid in ipairs(kids) do
    cands[i].chain:close()
    cands[i].chain = nil
    kid:close()
  end
  -- log-probabilities under the unsteered model (s has no steer set)
  for _, c in ipairs(cands) do
    c.logprob = #c.tokens > 0 and s:score(c.tokens) or 0
    c.text = model:detokenize(c.tokens)
  end
  return cands
end

function R.run(model, opts)
  local w <close> = tide.steer.load(opts.steer, model)
  local lex = opts.lexicon and assert(sentiment.load(opts.lexicon)) or sentiment.afinn()
  if opts.ignore then
    local keep = {}
    for word, v in pairs(lex.entries) do keep[word] = v end
    for _, word in ipairs(opts.ignore) do keep[word] = nil end
    lex = sentiment.new(keep)
  end
  local prompts = opts.prompts or R.PROMPTS
  if opts.n_prompts then prompts = table.move(prompts, 1, math.min(opts.n_prompts, #prompts), 1, {}) end
  local eps0 = opts.value * w.eps0
  local ks, cells = {}, {}
  for i, k in ipairs(opts.multiples) do
    ks[i] = assert(tonumber(k), "multiples: numbers expected")
    for sd = 1, opts.seeds do cells[#cells + 1] = { k = i, eps = ks[i] * eps0, seed = sd } end
  end
  local spec = recipe.sampler { temperature = opts.temperature, top_p = opts.top_p }
  local per = {}
  for i = 1, #ks do per[i] = { scores = {}, comps = {}, lp = 0, tokens = 0, samples = {}, words = {} } end
  local t0 = tide.core.clock()
  for pi, prompt in ipairs(prompts) do
    local cands = sample_prompt(model, w, prompt, cells, spec, opts, pi)
    for ci, c in ipairs(cands) do
      local p = per[cells[ci].k]
      local sc, nw, hits = lex:score(c.text)
      for _, h in ipairs(hits) do p.words[h[1]] = (p.words[h[1]] or 0) + 1 end
      p.scores[#p.scores + 1] = sc
      p.comps[#p.comps + 1] = nw > 0 and sc / nw or 0
      p.lp, p.tokens = p.lp + c.logprob, p.tokens + #c.tokens
      if cells[ci].seed == 1 and #p.samples < opts.samples then
        p.samples[#p.samples + 1] = { prompt = prompt, text = c.text, score = sc }
      end
    end
    if not opts.quiet then
      io.stderr:write(string.format("\rprompt %d/%d  %.0fs", pi, #prompts, tide.core.clock() - t0))
    end
  end
  if not opts.quiet then io.stderr:write("\n") end
  local rows = {}
  for i, k in ipairs(ks) do
    local p = per[i]
    local m, se = mean_se(p.scores)
    local cm = mean_se(p.comps)
    local words = {}
    for word, count in pairs(p.words) do words[#words + 1] = { word, count, lex.entries[word] } end
    table.sort(words, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
    for j = #words, 9, -1 do words[j] = nil end
    rows[i] = { k = k, eps = k * eps0, n = #p.scores, score = m, se = se, comparative = cm,
                ppl = math.exp(-p.lp / math.max(p.tokens, 1)), tokens = p.tokens, samples = p.samples,
                words = words }
  end
  local mono_up, mono_down = true, true
  for i = 2, #rows do
    if rows[i].score <= rows[i - 1].score then mono_up = false end
    if rows[i].score >= rows[i - 1].score then mono_down = false end
  end
  local res = { recipe = "sentiment_sweep", steer = opts.steer, rank = w.rank, trained_eps = w.eps0, value = opts.value,
                eps0 = eps0, prompts = #prompts, seeds = opts.seeds, max_tokens = opts.max_tokens,
                temperature = opts.temperature, top_p = opts.top_p, rows = rows, lexicon_n = lex.n,
                ignore = opts.ignore,
                monotonic = mono_up and "increasing" or mono_down and "decreasing" or "no",
                seconds = tide.core.clock() - t0 }
  if opts.svg then R.svg(opts.svg, res) end
  return res
end

-- A bar from the middle of width 2*half: left for negative, right for positive.
local function bar(x, scale, half)
  local n = math.floor(math.abs(x) / scale * half + 0.5)
  if x < 0 then return string.rep(" ", half - n) .. string.rep("#", n) .. "|" end
  return string.rep(" ", half) .. "|" .. string.rep("#", n)
end

function R.show(res)
  recipe.fields {
    { "steer", string.format("%s (rank %d, trained at eps %g)", res.steer, res.rank, res.trained_eps) },
    { "eps0", string.format("%g (%g x %g)", res.eps0, res.value, res.trained_eps) },
    { "lexicon", string.format("%d entries%s", res.lexicon_n, res.ignore and " (not counted: " ..
                               table.concat(res.ignore, ", ") .. ")" or "") },
    { "samples", string.format("%d prompts x %d seeds per eps, %d tokens, temperature %g, top-p %g", res.prompts,
                               res.seeds, res.max_tokens, res.temperature, res.top_p) },
  }
  print()
  local big = 1e-9
  for _, r in ipairs(res.rows) do big = math.max(big, math.abs(r.score)) end
  local rows = {}
  for _, r in ipairs(res.rows) do
    rows[#rows + 1] = { string.format("%+g eps0", r.k), string.format("%.4g", r.eps), r.n,
                        string.format("%+.3f", r.score), string.format("%.3f", r.se),
                        string.format("%+.4f", r.comparative), string.format("%.2f", r.ppl), bar(r.score, big, 12) }
  end
  recipe.table({ "k", "eps", "n", "score", "se", "per word", "ppl", "mean AFINN score" }, rows)
  print()
  recipe.fields { { "monotonic", res.monotonic }, { "time", string.format("%.0f s", res.seconds) } }
  print()
  print("lexicon words found most often (count, value):")
  for _, r in ipairs(res.rows) do
    local parts = {}
    for j, wd in ipairs(r.words) do parts[j] = string.format("%s %d (%+d)", wd[1], wd[2], wd[3]) end
    print(string.format("  %+g eps0: %s", r.k, table.concat(parts, ", ")))
  end
  for _, i in ipairs { 1, #res.rows } do
    local r = res.rows[i]
    print()
    print(string.format("samples at %+g eps0:", r.k))
    for _, smp in ipairs(r.samples) do
      print(string.format("  [%+d] %s|%s", smp.score, smp.prompt, recipe.clip(smp.text, 100)))
    end
  end
end

-- ---------------------------------------------------------------- the plot

local function esc(s) return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;")) end

-- One panel: points (x = k, y) with optional error bars, axes and ticks.
local function panel(out, x0, y0, w, h, title, rows, get, err, color)
  local lo, hi = math.huge, -math.huge
  for _, r in ipairs(rows) do
    local y, e = get(r), err and err(r) or 0
    lo, hi = math.min(lo, y - e), math.max(hi, y + e)
  end
  local pad = (hi - lo) * 0.1 + 1e-9
  lo, hi = lo - pad, hi + pad
  local kmin, kmax = rows[1].k, rows[#rows].k
  local function X(k) return x0 + 16 + (k - kmin) / (kmax - kmin) * (w - 32) end
  local function Y(y) return y0 + h - (y - lo) / (hi - lo) * h end
  out[#out + 1] = string.format('<text x="%d" y="%d">%s</text>', x0, y0 - 10, esc(title))
  out[#out + 1] = string.format('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>', x0, y0 + h, x0 + w,
                                y0 + h)
  out[#out + 1] = string.format('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>', x0, y0, x0, y0 + h)
  for i = 0, 4 do
    local y = lo + (hi - lo) * i / 4
    out[#out + 1] = string.format('<text x="%d" y="%.1f" text-anchor="end">%.2f</text>', x0 - 4, Y(y) + 4, y)
    out[#out + 1] = string.format('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>', x0, Y(y), x0 + w, Y(y))
  end
  if lo < 0 and hi > 0 then
    out[#out + 1] = string.format('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#888" stroke-dasharray="4,3"/>',
                                  x0, Y(0), x0 + w, Y(0))
  end
  local pts = {}
  for _, r in ipairs(rows) do
    local x, y = X(r.k), Y(get(r))
    pts[#pts + 1] = string.format("%.1f,%.1f", x, y)
    out[#out + 1] = string.format('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', x, y0 + h + 16,
                                  r.k == 0 and "0" or string.format("%+gε₀", r.k))
    if err then
      local e = err(r)
      out[#out + 1] = string.format('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>', x, Y(get(r) - e), x,
                                    Y(get(r) + e), color)
      for _, yy in ipairs { get(r) - e, get(r) + e } do
        out[#out + 1] = string.format('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>', x - 4, Y(yy),
                                      x + 4, Y(yy), color)
      end
    end
    out[#out + 1] = string.format('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>', x, y, color)
  end
  out[#out + 1] = string.format('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>', color,
                                table.concat(pts, " "))
end

--- Writes the two-panel SVG of a run's result.
function R.svg(path, res)
  local out = {
    '<svg xmlns="http://www.w3.org/2000/svg" width="720" height="340" font-family="sans-serif" font-size="12">',
    '<rect width="100%" height="100%" fill="white"/>',
    string.format('<text x="20" y="20" font-size="13">sentiment steer on tide-small: %d prompts x %d seeds ' ..
                  'per point, %d tokens, t=%g top-p %g; ε₀ = %g</text>', res.prompts, res.seeds, res.max_tokens,
                  res.temperature, res.top_p, res.eps0),
  }
  panel(out, 70, 60, 260, 230, "AFINN-165 score per continuation (mean ± se)", res.rows,
        function(r) return r.score end, function(r) return r.se end, "#1f77b4")
  panel(out, 430, 60, 260, 230, "perplexity under the unsteered model", res.rows,
        function(r) return r.ppl end, nil, "#d62728")
  out[#out + 1] = '<text x="200" y="330" text-anchor="middle">steer coefficient ε</text>'
  out[#out + 1] = '<text x="560" y="330" text-anchor="middle">steer coefficient ε</text>'
  out[#out + 1] = "</svg>"
  local f = assert(io.open(path, "wb"))
  f:write(table.concat(out, "\n"), "\n")
  f:close()
end

return recipe.main(R, ...)
