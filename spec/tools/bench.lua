--- bench.lua -- the Lua side of `make bench`, run by the tide binary after the
-- C bench has written its models into build/bench/.
-- 1. The greedy loop driven from Lua (session:generate) against the same loop
--    in C (ctx:greedy), same model, same prompt, same token count.
-- 2. best-of-8 (8 forks of one prefilled prompt, decoded together) against one
--    sampled continuation of the same length, on the 1.1B-shape model.
-- Usage: tide spec/tools/bench.lua [small.gguf [big.gguf]]
local tide = require "tide"
local clock = tide.core.clock

local small = arg[1] or "build/bench/bench-125m-q8_0.gguf"
local big = arg[2] or "build/bench/bench-1.1b-q8_0.gguf"
tide.set_threads(2)

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

local function best_of(reps, f)
  local best = math.huge
  for _ = 1, reps do best = math.min(best, f()) end
  return best
end

local PROMPT = "The tide comes in and the tide goes out, and the boats"

-- 1. Lua loop vs C loop
do
  local m <close> = tide.load(small, { n_ctx = 512 })
  local s <close> = m:session()
  s:feed(PROMPT)
  local n = 64
  local t_c = best_of(5, function()
    local kid <close> = s:fork()
    kid:logits()
    local t0 = clock()
    m:context():greedy(kid.seq, n)
    return clock() - t0
  end)
  local t_lua = best_of(5, function()
    local kid <close> = s:fork()
    kid:logits()
    local t0 = clock()
    kid:generate { max_tokens = n, ignore_eog = true }
    return clock() - t0
  end)
  print(string.format("greedy loop, %d tokens on %s: C %.1f tok/s, Lua generate %.1f tok/s: Lua time / C time = %.3f",
                      n, small:match("[^/]+$"), n / t_c, n / t_lua, t_lua / t_c))
end

-- 2. best-of-8 vs one sample
if exists(big) then
  local m <close> = tide.load(big, { n_ctx = 512 })
  local s <close> = m:session { seed = 1 }
  s:feed(PROMPT)
  local n = 32
  local spec = tide.sampler { top_k = 40, temperature = 0.8 }
  local t1 = best_of(2, function()
    local kid <close> = s:fork()
    kid:logits()
    local t0 = clock()
    kid:generate { sampler = spec, max_tokens = n, ignore_eog = true }
    return clock() - t0
  end)
  local t8 = best_of(2, function()
    local t0 = clock()
    s:best_of_n { n = 8, max_tokens = n, sampler = spec }
    return clock() - t0
  end)
  print(string.format("best-of-8 on %s, %d tokens each: %.2f s vs one sample %.2f s = %.2fx",
                      big:match("[^/]+$"), n, t8, t1, t8 / t1))
else
  print("best-of-8: " .. big .. " not found (run the C bench first)")
end
