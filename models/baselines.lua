--- baselines.lua -- held-out perplexity of a model beside unigram and bigram
-- baselines on the same split and the same targets (docs/default-model.md).
-- Usage: tide models/baselines.lua MODEL.gguf TRAIN.txt HELDOUT.txt [OUT.yaml]
-- The held-out tokens are cut into windows of 128; in each window tokens
-- 2..128 are predicted from what precedes them in the window (the model), or
-- from the previous token (bigram) or nothing (unigram). Baselines are
-- estimated on the training text: unigram with add-one smoothing, bigram with
-- interpolated absolute discounting (D = 0.75) onto that unigram.
local tide = require "tide"

local model_path, train_path, held_path, out = arg[1], arg[2], arg[3], arg[4]
if not (model_path and train_path and held_path) then
  io.stderr:write("usage: tide models/baselines.lua MODEL.gguf TRAIN.txt HELDOUT.txt [OUT.yaml]\n")
  os.exit(2)
end
tide.set_threads(2)
local W = 128

local function read(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local m <close> = tide.load(model_path, { n_ctx = 256, manifest = false })
local V = m.n_vocab
local train = m:tokenize(read(train_path), { bos = false, special = true })
local held = m:tokenize(read(held_path), { bos = false, special = true })

-- counts on the training text
local uni, big, follow = {}, {}, {}
for i = 1, #train do
  local t = train[i]
  uni[t] = (uni[t] or 0) + 1
  if i > 1 then
    local key = train[i - 1] * V + t
    if not big[key] then follow[train[i - 1]] = (follow[train[i - 1]] or 0) + 1 end
    big[key] = (big[key] or 0) + 1
  end
end
local N = #train
local function p_uni(t) return ((uni[t] or 0) + 1) / (N + V) end
local D = 0.75
local function p_big(v, t)
  local cv = uni[v] or 0
  if cv == 0 then return p_uni(t) end
  local c = big[v * V + t] or 0
  return math.max(c - D, 0) / cv + D * (follow[v] or 0) / cv * p_uni(t)
end

-- the same targets for all three
local nll_m, nll_u, nll_b, n = 0, 0, 0, 0
local s <close> = m:session()
local ctx = m:context()
local t0 = tide.core.clock()
for at = 1, #held - W + 1, W do
  local win = table.move(held, at, at + W - 1, 1, {})
  s:rewind(0)
  ctx:feed(s.seq, win, true)
  m.gen = m.gen + 1
  for j = 1, W - 1 do
    local target = win[j + 1]
    nll_m = nll_m - ctx:logits(j):logprob(target)
    nll_u = nll_u - math.log(p_uni(target))
    nll_b = nll_b - math.log(p_big(win[j], target))
    n = n + 1
  end
end
local rows = {
  { "tide-small (this model)", nll_m / n },
  { "bigram (abs. discounting)", nll_b / n },
  { "unigram (add-one)", nll_u / n },
}
print(string.format("held-out: %d targets in %d windows of %d tokens (%.1f s)", n, n // (W - 1), W,
                    tide.core.clock() - t0))
print("| model | loss (nats/token) | perplexity |")
print("|---|---|---|")
for _, r in ipairs(rows) do print(string.format("| %s | %.4f | %.2f |", r[1], r[2], math.exp(r[2]))) end
if out then
  local f = assert(io.open(out, "w"))
  f:write(tide.yaml.dump {
    targets = n, window = W,
    model = { loss = nll_m / n, perplexity = math.exp(nll_m / n) },
    bigram = { loss = nll_b / n, perplexity = math.exp(nll_b / n) },
    unigram = { loss = nll_u / n, perplexity = math.exp(nll_u / n) },
  })
  f:close()
end
