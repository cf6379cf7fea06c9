--- steer_train.lua -- `tide recipes/steer_train.lua A.txt B.txt --model M --out steer.gguf`:
-- trains an LM-Steer (W = P1 P2^T on the output embeddings) with the model
-- frozen, so that steer value +1 favours style A and -1 style B, as the
-- LM-Steer reference code does, and writes the steer file that
-- tide.steer.load reads.
--
-- The reference puts both signs in one batch (each sequence carries its own
-- steer value). tide's trainer has one eps per step, so this recipe folds
-- the sign into eps and alternates: odd steps are B windows of style A at
-- eps = +eps0, even steps style B at eps = -eps0 (tr:set_steer_eps). Adam
-- then sees A and B gradients in turn; with beta1 0.9 its momentum mixes
-- them over ~10 steps. The saved file records eps0 (tide.extras.steer_eps),
-- the base model's name and hash, and the two files as its data string.
--
-- Reference hyper-parameters (the defaults): P1, P2 start at 0.01 randn,
-- eps0 = 1e-3, Adam (no weight decay, betas 0.9 / 0.999) at lr 1e-2, rank
-- = n_embd capped at 64 here (the reference: 1000 for d 1280), batch 32
-- windows of 64 tokens, 1000 steps. The reference generates with steer
-- values around +-5, meaning a coefficient of value * eps0: in tide,
-- `{ [w] = 5 * w.eps0 }` (docs/steering.md).
--
-- Options: --model M (required), --out PATH (required), --steps N (1000),
--   --rank R, --batch B (32), --seq T (64), --eps0 E (1e-3), --lr L (1e-2),
--   --seed S (1), --threads N (2), --quiet, --help.
local tide = require "tide"
local core = tide.core

local function usage()
  print([==[usage: tide recipes/steer_train.lua A.txt B.txt --model M --out steer.gguf
  [--steps N] [--rank R] [--batch B] [--seq T] [--eps0 E] [--lr L] [--seed S] [--threads N] [--quiet]]==])
end

local files, opt = {}, { steps = 1000, batch = 32, seq = 64, eps0 = 1e-3, lr = 1e-2, seed = 1, threads = 2 }
do
  local num = { steps = true, rank = true, batch = true, seq = true, eps0 = true, lr = true, seed = true,
                threads = true }
  local i = 1
  while arg[i] do
    local a = arg[i]
    local key = a:match("^%-%-(.+)$")
    if a == "--help" or a == "-h" then usage() return
    elseif a == "--quiet" then opt.quiet = true
    elseif key == "model" or key == "out" then i = i + 1; opt[key] = arg[i]
    elseif key and num[key] then
      i = i + 1
      opt[key] = tonumber(arg[i])
      if not opt[key] then io.stderr:write("steer_train: --" .. key .. " needs a number\n") os.exit(2) end
    elseif key then io.stderr:write("steer_train: unknown option --" .. key .. "\n") os.exit(2)
    else files[#files + 1] = a end
    i = i + 1
  end
end
if #files ~= 2 or not opt.model or not opt.out then usage() os.exit(2) end
tide.set_threads(math.tointeger(opt.threads) or 2)

-- 1. the frozen model and the two styles' tokens
local m <close> = tide.load(opt.model)
local function tokens_of(path)
  local f = assert(io.open(path, "rb"))
  local ids = m:tokenize(f:read("a"), { bos = false })
  f:close()
  return ids
end
local B, T = math.tointeger(opt.batch), math.tointeger(opt.seq)
local side = { { name = "A", ids = tokens_of(files[1]), sign = 1 },
               { name = "B", ids = tokens_of(files[2]), sign = -1 } }
for _, sd in ipairs(side) do
  if #sd.ids < T then error(string.format("%s: %d tokens, fewer than one window of %d", sd.name, #sd.ids, T), 0) end
end

-- 2. the trainer: only P1, P2 train; Adam without weight decay
local rank = math.tointeger(opt.rank) or math.min(m.n_embd, 64)
local tr <close> = core.trainer_frozen(m.h, {
  n_ctx = T, n_batch = B, lr = opt.lr, lr_min = opt.lr, weight_decay = 0, grad_clip = 0,
  beta1 = 0.9, beta2 = 0.999, init_std = 0.01, seed = math.tointeger(opt.seed),
}, { steer_rank = rank, steer_eps = opt.eps0 })
-- the trainer starts P2 at zero; the reference starts it at 0.01 randn too
math.randomseed(math.tointeger(opt.seed))
local p2 = {}
for i = 1, m.n_embd * rank, 2 do
  local r, a = math.sqrt(-2 * math.log(1 - math.random())), 2 * math.pi * math.random()
  p2[i], p2[i + 1] = 0.01 * r * math.cos(a), 0.01 * r * math.sin(a)
end
p2[m.n_embd * rank + 1] = nil
tr:set_tensor("steer.p2", p2)

-- 3. windows: B random windows of T tokens of one side
local function batch(ids)
  local t = {}
  for b = 0, B - 1 do
    local at = math.random(1, #ids - T + 1)
    table.move(ids, at, at + T - 1, b * T + 1, t)
  end
  return t
end

local steps, clock = math.tointeger(opt.steps), core.clock
local t0, ema = clock(), {}
for step = 1, steps do
  local sd = side[(step - 1) % 2 + 1]
  tr:set_steer_eps(sd.sign * opt.eps0)
  local st = tr:step(batch(sd.ids), B, T)
  ema[sd.name] = ema[sd.name] and 0.9 * ema[sd.name] + 0.1 * st.loss or st.loss
  if not opt.quiet then
    local dt = clock() - t0
    io.stderr:write(string.format("\rstep %d/%d  loss A %.4f  B %.4f  %.0f tok/s  ETA %.0fs   ", step, steps,
      ema.A or 0, ema.B or 0, step * B * T / math.max(dt, 1e-9), dt / step * (steps - step)))
  end
end
if not opt.quiet then io.stderr:write("\n") end

-- 4. how much the steer separates the styles: loss of each side at +eps0 and -eps0
local function eval(ids, eps)
  tr:set_steer_eps(eps)
  return tr:eval(batch(ids), B, T)
end
for _, sd in ipairs(side) do
  math.randomseed(7)
  local plus = eval(sd.ids, opt.eps0)
  math.randomseed(7)
  local minus = eval(sd.ids, -opt.eps0)
  print(string.format("style %s: loss %.4f at +eps0, %.4f at -eps0", sd.name, plus, minus))
end

-- 5. the steer file (eps0 recorded as trained)
tr:set_steer_eps(opt.eps0)
tr:save(opt.out, { name = "steer " .. files[1] .. " vs " .. files[2],
                   data = string.format("A: %s (%d tokens, +eps0), B: %s (%d tokens, -eps0); %d steps of %dx%d",
                                        files[1], #side[1].ids, files[2], #side[2].ids, steps, B, T) })
print(string.format("wrote %s (rank %d, eps0 %g, %d steps)", opt.out, rank, opt.eps0, steps))
