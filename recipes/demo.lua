--- demo.lua -- the scripted half of `make demo`: one prompt, five ways to
-- continue it (greedy, sampled, beam search, regex-constrained, best-of-N),
-- each timed, on the bundled model (or the random one when it is absent).
-- Usage: tide recipes/demo.lua [model.gguf] [--help]
-- With a random-weight model the text is noise; the mechanics and the speed
-- are what show.
local tide = require "tide"

if arg[1] == "--help" or arg[1] == "-h" then
  print("usage: tide recipes/demo.lua [model.gguf]\n" ..
        "Continues one prompt greedily, by sampling, by beam search and by best-of-N.")
  return
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end
local path = arg[1] or (exists("models/tide-small.gguf") and "models/tide-small.gguf"
                        or "build/demo/random-llama.gguf")
tide.set_threads(2)
local m <close> = tide.load(path, { n_ctx = 256 })
local clock = tide.core.clock
local prompt = "The tide comes in"
if path:find("tide%-small") then prompt = "And the king said unto his servants" end

local s <close> = m:session { seed = 42 }
s:feed(prompt)

local function show(label, text, n, dt)
  io.write(string.format("%-12s %4d tokens %8.1f tok/s  %s%s\n", label, n, n / dt, prompt,
                         text:gsub("[%c]", " ")))
end

local function timed(label, f)
  local t0 = clock()
  local text, n = f()
  show(label, text, n, clock() - t0)
end

timed("greedy", function()
  local kid <close> = s:fork()
  local text, info = kid:generate { max_tokens = 32, ignore_eog = true }
  return text, info.n_tokens
end)

timed("sampled", function()
  local kid <close> = s:fork()
  local text, info = kid:generate { max_tokens = 32, ignore_eog = true,
                                    sampler = tide.sampler { top_k = 40, top_p = 0.95, temperature = 0.8 } }
  return text, info.n_tokens
end)

timed("beam x4", function()
  local text, info = s:beam { width = 4, max_tokens = 16 }
  local n = 0
  for _, b in ipairs(info.beams) do n = n + #b.tokens end
  return text, n
end)

timed("constrained", function()
  local kid <close> = s:fork()
  local text, info = kid:generate { max_tokens = 24, sampler = tide.sampler { top_k = 40, temperature = 0.8 },
                                    constraint = tide.regex " (and|but|so) [a-z]+( [a-z]+){1,4}[.!]" }
  return text, info.n_tokens
end)

timed("best-of-8", function()
  local text, info = s:best_of_n { n = 8, max_tokens = 16 }
  local n = 0
  for _, c in ipairs(info.candidates) do n = n + #c.tokens end
  return text, n
end)

print(string.format("(%s, %d layers, n_embd %d; %s kernels; one prefill of %d tokens shared by every fork)",
                    m.arch, m.n_layer, m.n_embd, tide.core.isa(), s.pos))
