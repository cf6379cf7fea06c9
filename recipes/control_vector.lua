--- control_vector.lua -- `tide recipes/control_vector.lua --model M --positive P.txt
-- --negative N.txt --out cv.gguf`: computes a control vector from contrastive
-- prompt pairs (line i of P.txt with line i of N.txt, as llama.cpp's
-- cvector-generator reads them) and writes llama.cpp's control-vector GGUF.
--
-- For every pair, the hidden states of the last token at every layer are
-- captured in one prefill each (tide.steer.hidden_all). direction.N is added
-- after block N (llama.cpp's numbering), which is capture layer N + 1, so
-- direction.N is computed from the differences at layer N + 1:
--   --method mean: the mean difference positive - negative (raw magnitude,
--                  scale 1 = one average difference);
--   --method pca:  the first principal component of the differences (power
--                  iteration on sum d d^T, uncentred as llama.cpp's), unit
--                  length, its sign chosen to agree with the mean difference.
-- --test PROMPT then generates a few tokens with the vector at --scale and
-- without it, side by side.
--
-- Options: --model M, --positive P, --negative N, --out PATH (required),
--   --method mean|pca (mean), --iters N (100), --scale S (1.0), --test T,
--   --tokens N (24), --help.
local tide = require "tide"

local function usage()
  print("usage: tide recipes/control_vector.lua --model M --positive P.txt --negative N.txt --out cv.gguf\n" ..
        "       [--method mean|pca] [--iters N] [--scale S] [--test PROMPT] [--tokens N]")
end

local opt = { method = "mean", iters = 100, scale = 1.0, tokens = 24 }
do
  local strs = { model = true, positive = true, negative = true, out = true, method = true, test = true }
  local i = 1
  while arg[i] do
    local key = arg[i]:match("^%-%-(.+)$")
    if arg[i] == "--help" or arg[i] == "-h" then usage() return
    elseif key and strs[key] then i = i + 1; opt[key] = arg[i]
    elseif key == "iters" or key == "scale" or key == "tokens" then i = i + 1; opt[key] = tonumber(arg[i])
    else io.stderr:write("control_vector: unknown argument " .. arg[i] .. "\n") os.exit(2) end
    i = i + 1
  end
end
if not (opt.model and opt.positive and opt.negative and opt.out) then usage() os.exit(2) end
if opt.method ~= "mean" and opt.method ~= "pca" then error("--method must be mean or pca", 0) end

local function lines(path)
  local t = {}
  for l in io.lines(path) do
    l = l:gsub("\\n", "\n")
    if l:find("%S") then t[#t + 1] = l end
  end
  return t
end
local pos, neg = lines(opt.positive), lines(opt.negative)
if #pos == 0 or #pos ~= #neg then
  error(string.format("%d positive and %d negative prompts: need the same number, at least 1", #pos, #neg), 0)
end

local m <close> = tide.load(opt.model)
local nl, d = m.n_layer, m.n_embd

-- 1. differences at every layer: diffs[l][i] = h_pos - h_neg at capture layer l
local diffs = {}
for l = 1, nl do diffs[l] = {} end
for i = 1, #pos do
  local hp, hn = tide.steer.hidden_all(m, pos[i]), tide.steer.hidden_all(m, neg[i])
  for l = 1, nl do diffs[l][i] = hp[l] - hn[l] end
  io.stderr:write(string.format("\rpair %d/%d", i, #pos))
end
io.stderr:write("\n")

local function mean(list)
  local acc = tide.vector(d)
  for _, v in ipairs(list) do acc = acc + v end
  return acc / #list
end

-- power iteration on C = sum_i d_i d_i^T, started from the mean difference
local function pca(list, start)
  local v = start / math.max(start:norm(), 1e-30)
  for _ = 1, math.tointeger(opt.iters) or 100 do
    local nv = tide.vector(d)
    for _, x in ipairs(list) do nv = nv + x * x:dot(v) end
    local n = nv:norm()
    if n == 0 then break end
    v = nv / n
  end
  if v:dot(start) < 0 then v = -v end
  return v
end

-- 2. direction.N (N = 1..n_layer-1) from capture layer N + 1
local dirs = tide.vector(nl * d)
for n = 1, nl - 1 do
  local mu = mean(diffs[n + 1])
  local dir = opt.method == "pca" and pca(diffs[n + 1], mu) or mu
  dirs:set(n * d + 1, dir)
  print(string.format("direction.%d  |mean diff| %.4g", n, mu:norm()))
end
tide.steer.cvec_save(opt.out, dirs, m)
print(string.format("wrote %s (%s, %d pairs, directions 1..%d)", opt.out, opt.method, #pos, nl - 1))

-- 3. a look at what it does
if opt.test then
  local n = math.tointeger(opt.tokens) or 24
  local function gen()
    local s <close> = m:session()
    s:feed(opt.test)
    return (s:generate { max_tokens = n, ignore_eog = true })
  end
  print("without: " .. opt.test .. gen())
  m:control_vector(opt.out, { scale = opt.scale })
  print(string.format("with %g: %s%s", opt.scale, opt.test, gen()))
  m:control_vector(nil)
end
