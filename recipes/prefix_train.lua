--- prefix_train.lua -- `tide recipes/prefix_train.lua [task.txt] --out prefix.gguf`:
-- prefix tuning (Li & Liang 2021) with the model frozen: learns k key and
-- value rows per layer that every token attends to before its own, so that
-- a session started with them (`m:session{ prefix = tide.prefix.load(...) }`)
-- does the task of the training lines. Prints the held-out task loss with
-- no prefix, with the starting prefix (the cache rows of a prompt of
-- training lines) and with the trained one, then a few greedy answers.
--
-- task.txt: one example per line (default: a built-in task, "Q: <word> A:
-- <WORD>", the word in capitals). Every 5th line is held out. A training
-- sequence is T tokens of random training lines, one after another; the
-- held-out sequences are the same over the held-out lines.
--
-- Options: --model M (models/tide-small.gguf), --out PATH (required),
--   --k K prefix positions (16), --steps N (150), --batch B (8), --seq T (32),
--   --lr L (3e-2), --seed S (1), --threads N (2), --quiet, --help.
local tide = require "tide"
local core = tide.core

local function usage()
  print([==[usage: tide recipes/prefix_train.lua [task.txt] --out prefix.gguf [--model M] [--k K]
  [--steps N] [--batch B] [--seq T] [--lr L] [--seed S] [--threads N] [--quiet]]==])
end

local files, opt = {}, { model = "models/tide-small.gguf", k = 16, steps = 150, batch = 8, seq = 32,
                         lr = 3e-2, seed = 1, threads = 2 }
do
  local num = { k = true, steps = true, batch = true, seq = true, lr = true, seed = true, threads = true }
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
      if not opt[key] then io.stderr:write("prefix_train: --" .. key .. " needs a number\n") os.exit(2) end
    elseif key then io.stderr:write("prefix_train: unknown option --" .. key .. "\n") os.exit(2)
    else files[#files + 1] = a end
    i = i + 1
  end
end
if #files > 1 or not opt.out then usage() os.exit(2) end
tide.set_threads(math.tointeger(opt.threads) or 2)
local K, B, T = math.tointeger(opt.k), math.tointeger(opt.batch), math.tointeger(opt.seq)
local steps = math.tointeger(opt.steps)

-- 1. the task's lines: a file, or the built-in one
local lines = {}
if files[1] then
  for l in io.lines(files[1]) do if l:find("%S") then lines[#lines + 1] = l end end
else
  local words = [[apple house river stone light water bread music night table green dream
    horse field paper money glass heart sugar spring queen tiger smile ocean chair cloud plant
    train bird honey story market winter summer garden mother father silver golden window
    doctor friend letter forest island mountain flower valley castle bridge candle butter]]
  for w in words:gmatch("%a+") do lines[#lines + 1] = string.format("Q: %s A: %s", w, w:upper()) end
end
local m <close> = tide.load(opt.model, { kv_type = "f32" })
local train, held = {}, {}
for i, l in ipairs(lines) do
  local ids = m:tokenize(l .. "\n", { bos = false })
  table.insert(i % 5 == 0 and held or train, { text = l, ids = ids })
end
if #train == 0 or #held == 0 then error("prefix_train: need at least 5 task lines", 0) end

-- 2. sequences: T tokens of random lines of a split, starting at a line
local bos = m:special().add_bos and m:special().bos or nil
local function sequence(split, out)
  local s = { bos }
  while #s < T do
    local ids = split[math.random(#split)].ids
    table.move(ids, 1, math.min(#ids, T - #s), #s + 1, s)
  end
  table.move(s, 1, T, #out + 1, out)
  return out
end
local function batch(split, n)
  local t = {}
  for _ = 1, n do sequence(split, t) end
  return t
end
math.randomseed(math.tointeger(opt.seed) + 1000)
local NH = 24
local held_tok = batch(held, NH) -- fixed held-out sequences

-- 3. the trainer: only the prefix trains (no weight decay on it)
local tr <close> = core.trainer_frozen(m.h, {
  n_ctx = T, n_batch = B, lr = opt.lr, lr_min = opt.lr / 10, warmup_steps = 10, total_steps = steps,
  weight_decay = 0, seed = math.tointeger(opt.seed),
}, { n_kv_prefix = K })
-- start from the cache rows of a prompt of training lines (a hard prompt)
math.randomseed(math.tointeger(opt.seed))
local start = {}
while #start < K do table.move(train[math.random(#train)].ids, 1, K, #start + 1, start) end
tr:init_kv_prefix(table.move(start, 1, K, 1, {}))

-- 4. held-out loss without a prefix: the runtime scores each sequence
local function runtime_loss(prefix)
  local sum = 0
  for b = 0, NH - 1 do
    local ids = table.move(held_tok, b * T + 1, b * T + T, 1, {})
    local s <close> = m:session{ prefix = prefix }
    s:feed({ ids[1] })
    sum = sum - s:score(table.move(ids, 2, T, 1, {}))
  end
  return sum / (NH * (T - 1))
end
local loss_none = runtime_loss(nil)
local loss_start = tr:eval(held_tok, NH, T)

-- 5. train
local clock = core.clock
local t0, ema = clock(), nil
for step = 1, steps do
  local st = tr:step(batch(train, B), B, T)
  ema = ema and 0.9 * ema + 0.1 * st.loss or st.loss
  if not opt.quiet then
    local dt = clock() - t0
    io.stderr:write(string.format("\rstep %d/%d  loss %.4f  lr %.2g  %.0f tok/s  ETA %.0fs   ", step, steps,
      ema, st.lr, step * B * T / math.max(dt, 1e-9), dt / step * (steps - step)))
  end
end
if not opt.quiet then io.stderr:write("\n") end
local loss_trained = tr:eval(held_tok, NH, T)

-- 6. save, load back, and check the runtime with it against the trainer
tr:save(opt.out, { name = "prefix " .. (files[1] or "Q/A capitals") })
local p <close> = tide.prefix.load(opt.out, m)
local loss_runtime = runtime_loss(p)
print(string.format("held-out task loss (%d sequences of %d tokens):", NH, T))
print(string.format("  no prefix            %.4f", loss_none))
print(string.format("  starting prefix      %.4f  (cache rows of %d prompt tokens)", loss_start, K))
print(string.format("  trained prefix       %.4f  (runtime with the saved file: %.4f)", loss_trained, loss_runtime))

-- 7. a few answers, greedy, from sessions that start with the prefix
for i = 1, math.min(3, #held) do
  local q = held[i].text:match("^(.-A:)") or held[i].text
  local s <close> = m:session{ prefix = p }
  s:feed(q)
  print(string.format("  %s%s", q, s:generate{ max_tokens = 12, stop = "\n" }))
end
print(string.format("wrote %s (%d positions x %d layers, %d steps)", opt.out, K, m.n_layer, steps))
