--- train.lua -- `tide recipes/train.lua CONFIG.yaml`: trains a llama-shaped
-- model from scratch with tide's C trainer, showing a live progress line
-- (step, tokens/s, loss, learning rate, ETA), evaluating on held-out text,
-- writing resumable checkpoints, the final model (GGUF) and a loss curve
-- (SVG) with its CSV log.
--
-- The config (YAML) names everything; see models/tide-small.train.yaml:
--   tokenizer: build/corpus/tokenizer.gguf   # a vocab-only GGUF
--   train: build/corpus/train.txt             # plain text
--   heldout: build/corpus/heldout.txt
--   out: models/tide-small.gguf
--   name: tide-small
--   model: { n_embd, n_layer, n_head, n_kv_head, n_ff, n_ctx, tied }
--   train_params: { batch, seq, steps, lr, lr_min, warmup, weight_decay, grad_clip, seed }
--   eval_every, eval_batches, ckpt_every, curve (svg path), log (csv path)
-- Options: --resume (continue from <out>.ckpt), --steps N (override),
--          --quiet (no progress line), --help.
local tide = require "tide"
local core = tide.core

local function usage()
  print((([[
usage: tide recipes/train.lua CONFIG.yaml [--resume] [--steps N] [--quiet]
Trains a model from scratch as CONFIG.yaml says; see the top of this file.]]):gsub("^\n", "")))
end

local args, opts = {}, { resume = false, quiet = false }
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--help" or a == "-h" then usage() return
    elseif a == "--resume" then opts.resume = true
    elseif a == "--quiet" then opts.quiet = true
    elseif a == "--steps" then i = i + 1; opts.steps = math.tointeger(tonumber(arg[i]))
    else args[#args + 1] = a end
    i = i + 1
  end
end
if not args[1] then usage() os.exit(2) end

local cfg = tide.yaml.load_file(args[1])
local function need(t, k, what)
  if t[k] == nil then error(string.format("%s: missing '%s'", what or args[1], k), 0) end
  return t[k]
end
local mp, tp = need(cfg, "model"), need(cfg, "train_params")
local B, T = need(tp, "batch", "train_params"), need(tp, "seq", "train_params")
local steps = opts.steps or need(tp, "steps", "train_params")
local out = need(cfg, "out")
local clock = core.clock
tide.set_threads(cfg.threads or 2)

-- 1. data: tokenize the corpus once (BPE runs in C)
local tok <close> = tide.load(need(cfg, "tokenizer"), { vocab_only = true })
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function tokens_of(path)
  local t0 = clock()
  io.stderr:write(string.format("tokenizing %s ... ", path))
  -- documents end with <|endoftext|> (models/corpus.lua): parse it as the token
  local ids = tok:tokenize(read(path), { bos = false, special = true })
  io.stderr:write(string.format("%d tokens in %.1f s\n", #ids, clock() - t0))
  return ids
end
local train_ids = tokens_of(need(cfg, "train"))
local held_ids = cfg.heldout and tokens_of(cfg.heldout) or nil
if #train_ids < T + 1 then error("train text is shorter than one sequence", 0) end

-- 2. the trainer
local params = {
  n_vocab = tok.n_vocab, n_embd = mp.n_embd, n_layer = mp.n_layer, n_head = mp.n_head,
  n_kv_head = mp.n_kv_head or mp.n_head, n_ff = mp.n_ff, n_ctx = mp.n_ctx or T,
  tied = mp.tied ~= false, seed = tp.seed or 1, n_batch = B,
  lr = tp.lr or 1e-3, lr_min = tp.lr_min, warmup_steps = tp.warmup or 0, total_steps = steps,
  weight_decay = tp.weight_decay, grad_clip = tp.grad_clip,
}
local tr <close> = core.trainer(params)
local ckpt = out .. ".ckpt"
local start = 0
if opts.resume then
  start = tr:resume(ckpt)
  io.stderr:write(string.format("resumed %s at step %d\n", ckpt, start))
end

-- batches: seeded windows, reproducible for a given (seed, step)
local function batch(ids, step)
  math.randomseed(params.seed * 1000003 + step)
  local b, n = {}, #ids - T
  for s = 0, B - 1 do
    local at = math.random(1, n)
    for j = 0, T - 1 do b[s * T + j + 1] = ids[at + j] end
  end
  return b
end
local eval_set
if held_ids and #held_ids > T then
  local nb = math.min(cfg.eval_batches or 8, (#held_ids - 1) // T)
  eval_set = {}
  for i = 0, nb * T - 1 do eval_set[i + 1] = held_ids[i + 1] end
  eval_set.n = nb
end

-- 3. the loop, with a live progress line
local log = {}  -- this run's rows (the curve is drawn from the CSV)
local log_path = cfg.log or (out .. ".csv")
local lf = assert(io.open(log_path, opts.resume and "a" or "w"))
if not opts.resume then lf:write("step,tokens,loss,lr,grad_norm,heldout_loss,seconds\n") end
local t_start, tokens = clock(), 0
local last_eval
for step = start + 1, steps do
  local st = tr:step(batch(train_ids, step), B, T)
  tokens = tokens + st.n_tokens
  local el = clock() - t_start
  local eval_loss = ""
  if eval_set and (step % (cfg.eval_every or 100) == 0 or step == steps) then
    last_eval = tr:eval(eval_set, eval_set.n, T)
    eval_loss = string.format("%.4f", last_eval)
  end
  lf:write(string.format("%d,%d,%.5f,%.6g,%.4f,%s,%.1f\n", step, st.n_tokens, st.loss, st.lr,
                         st.grad_norm, eval_loss, el))
  log[#log + 1] = { step = step, loss = st.loss, eval = last_eval and eval_loss ~= "" and last_eval or nil }
  if not opts.quiet then
    local eta = (steps - step) * el / (step - start)
    io.stderr:write(string.format("\rstep %d/%d  %6.0f tok/s  loss %.4f  held-out %s  lr %.2e  ETA %dm%02ds ",
                                  step, steps, tokens / el, st.loss,
                                  last_eval and string.format("%.4f", last_eval) or "-", st.lr,
                                  math.floor(eta / 60), math.floor(eta % 60)))
  end
  if cfg.ckpt_every and step % cfg.ckpt_every == 0 then
    tr:save(ckpt, { name = cfg.name, vocab_from = tok.h, optimizer = true })
  end
end
lf:close()
if not opts.quiet then io.stderr:write("\n") end
tr:save(ckpt, { name = cfg.name, vocab_from = tok.h, optimizer = true })
tr:save(out, { name = cfg.name, vocab_from = tok.h })

-- 4. the loss curve as SVG (train loss, and held-out points)
local function svg(path, rows)
  local W, H, P = 640, 360, 48
  local lo, hi, n = math.huge, -math.huge, #rows
  for _, r in ipairs(rows) do
    lo = math.min(lo, r.loss, r.eval or math.huge)
    hi = math.max(hi, r.loss, r.eval or -math.huge)
  end
  if n < 2 or hi <= lo then return end
  local s0, s1 = rows[1].step, rows[n].step
  local function x(s) return P + (W - 2 * P) * (s - s0) / math.max(1, s1 - s0) end
  local function y(v) return H - P - (H - 2 * P) * (v - lo) / (hi - lo) end
  local pts, evs = {}, {}
  for _, r in ipairs(rows) do
    pts[#pts + 1] = string.format("%.1f,%.1f", x(r.step), y(r.loss))
    if r.eval then
      evs[#evs + 1] = string.format('<circle cx="%.1f" cy="%.1f" r="3" fill="#d62728"/>', x(r.step), y(r.eval))
    end
  end
  local f = assert(io.open(path, "w"))
  f:write(string.format([[
<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">
<rect width="100%%" height="100%%" fill="white"/>
<text x="%d" y="20">%s: training loss (line) and held-out loss (dots), nats per token</text>
<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>
<text x="4" y="%d">%.2f</text><text x="4" y="%d">%.2f</text>
<text x="%d" y="%d">step %d</text><text x="%d" y="%d" text-anchor="end">step %d</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="1.2" points="%s"/>
%s
</svg>
]], W, H, P, cfg.name or out, P, H - P, W - P, H - P, P, P, P, H - P, P + 4, hi, H - P, lo,
     P, H - P + 16, s0, W - P, H - P + 16, s1, table.concat(pts, " "), table.concat(evs, "\n")))
  f:close()
end
-- the whole run's curve, resumed parts included, from the CSV log
if cfg.curve then
  local rows = {}
  for line in io.lines(log_path) do
    local st, _, loss, _, _, ev = line:match("^(%d+),(%d+),([^,]+),([^,]+),([^,]+),([^,]*),")
    if st then rows[#rows + 1] = { step = tonumber(st), loss = tonumber(loss), eval = tonumber(ev) } end
  end
  svg(cfg.curve, rows)
end

local el = clock() - t_start
print(string.format("trained %d steps (%d tokens) in %.1f s = %.0f tok/s; final loss %.4f%s; wrote %s",
                    steps - start, tokens, el, tokens / el, log[#log] and log[#log].loss or 0,
                    last_eval and string.format(", held-out %.4f (perplexity %.2f)", last_eval,
                                                math.exp(last_eval)) or "",
                    out))
