--- steer_explain.lua -- `tide recipes/steer_explain.lua STEER.gguf --model M [--text T]`:
-- explains an LM-Steer. First the leading directions of W = P1 P2^T (its
-- SVD through the small rank x rank problem, core/steer.c) with the tokens
-- each one promotes and suppresses (output embeddings projected on the
-- direction). Then, given --text, which tokens of the text the steer moves
-- most: each token's log-probability under the model steered with
-- --eps (default 5 * eps0) minus unsteered, shown with terminal colours
-- (green: the steer makes the token likelier, red: less likely) and, with
-- --html PATH, as an HTML page with the same highlighting.
--
-- Options: --model M (required), --k N (3 directions), --top N (10 tokens),
--   --text T, --eps E, --html PATH, --no-color, --force (a steer recorded for
--   another base model), --help.
local tide = require "tide"

local function usage()
  print("usage: tide recipes/steer_explain.lua STEER.gguf --model M [--k N] [--top N] [--text T] [--eps E]\n" ..
        "       [--html PATH] [--no-color] [--force]")
end

local opt, files = { k = 3, top = 10, color = true }, {}
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    local key = a:match("^%-%-(.+)$")
    if a == "--help" or a == "-h" then usage() return
    elseif a == "--no-color" then opt.color = false
    elseif a == "--force" then opt.force = true
    elseif key == "model" or key == "text" or key == "html" then i = i + 1; opt[key] = arg[i]
    elseif key == "k" or key == "top" or key == "eps" then i = i + 1; opt[key] = tonumber(arg[i])
    elseif key then io.stderr:write("steer_explain: unknown option --" .. key .. "\n") os.exit(2)
    else files[#files + 1] = a end
    i = i + 1
  end
end
if #files ~= 1 or not opt.model then usage() os.exit(2) end

local m <close> = tide.load(opt.model)
local w <close> = tide.steer.load(files[1], m, { force = opt.force })
print(string.format("%s: rank %d, eps0 %g", files[1], w.rank, w.eps0))

-- 1. directions and their tokens
tide.steer.print_explain(w:explain(math.min(math.tointeger(opt.k) or 3, w.rank), { top = math.tointeger(opt.top) }))

-- 2. per-token highlighting of a text
if not opt.text then return end
local eps = opt.eps or 5 * (w.eps0 ~= 0 and w.eps0 or 1)
local line, shift = w:highlight(opt.text, { eps = eps, color = opt.color })
print(string.format("\ntoken log-probability shift at eps %g (steered - unsteered):", eps))
print(line)
local order = table.move(shift, 1, #shift, 1, {})
table.sort(order, function(a, b) return math.abs(a.delta) > math.abs(b.delta) end)
for i = 1, math.min(5, #order) do
  print(string.format("  %-16s %+.3f  (%.3f -> %.3f)", string.format("%q", order[i].piece), order[i].delta,
                      order[i].base, order[i].steered))
end

if opt.html then
  local ents = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }
  local f = assert(io.open(opt.html, "wb"))
  f:write("<!doctype html><meta charset=utf-8><title>steer explain</title>\n",
          "<p>", (files[1]:gsub("[&<>\"]", ents)), " at eps ", tostring(eps),
          ": green = likelier under the steer, red = less likely</p>\n",
          (w:highlight(opt.text, { eps = eps, html = true })), "\n")
  f:close()
  print("wrote " .. opt.html)
end
