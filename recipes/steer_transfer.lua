--- steer_transfer.lua -- `tide recipes/steer_transfer.lua STEER --from A.gguf --to B.gguf --out OUT.gguf`:
-- moves an LM-Steer trained on model A to model B. The two models' output
-- embeddings are related through the tokens their vocabularies share (equal
-- bytes): a ridge fit E_A H ~ E_B and one back, E_B K ~ E_A, then P1' = H^T P1
-- and P2' = K P2 (docs/steering.md, "Transferring a steer"). Prints the fit
-- (shared tokens, relative residuals), writes the new steer, and shows what
-- it does: the tokens each leading direction promotes and suppresses on A
-- (the original) and on B (the transfer), and how many of them agree.
--
-- Options: --from A (required), --to B (required), --out PATH (required),
--   --lambda L (relative ridge, 1e-3), --method fit2|htwh (fit2),
--   --k N (3 directions), --top N (10 tokens), --force (load STEER even if
--   it records another base model than A), --help.
local tide = require "tide"

local function usage()
  print("usage: tide recipes/steer_transfer.lua STEER.gguf --from A.gguf --to B.gguf --out OUT.gguf\n" ..
        "       [--lambda L] [--method fit2|htwh] [--k N] [--top N] [--force]")
end

local opt, files = { k = 3, top = 10, method = "fit2" }, {}
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    local key = a:match("^%-%-(.+)$")
    if a == "--help" or a == "-h" then usage() return
    elseif a == "--force" then opt.force = true
    elseif key == "from" or key == "to" or key == "out" or key == "method" then i = i + 1; opt[key] = arg[i]
    elseif key == "lambda" or key == "k" or key == "top" then
      i = i + 1
      opt[key] = tonumber(arg[i])
      if not opt[key] then io.stderr:write("steer_transfer: --" .. key .. " needs a number\n") os.exit(2) end
    elseif key then io.stderr:write("steer_transfer: unknown option --" .. key .. "\n") os.exit(2)
    else files[#files + 1] = a end
    i = i + 1
  end
end
if #files ~= 1 or not opt.from or not opt.to or not opt.out then usage() os.exit(2) end

-- 1. both models and the steer (for A)
local a <close> = tide.load(opt.from)
local b <close> = tide.load(opt.to)
local w <close> = tide.steer.load(files[1], a, { force = opt.force })
print(string.format("steer %s: rank %d, eps0 %g, trained on '%s'%s", files[1], w.rank, w.eps0,
                    w.base_name or a.name, w.data and (" from " .. w.data) or ""))
print(string.format("from %s (n_embd %d, n_vocab %d, hash %s)", a.name, a.n_embd, a.n_vocab, a:hash()))
print(string.format("to   %s (n_embd %d, n_vocab %d, hash %s)", b.name, b.n_embd, b.n_vocab, b:hash()))

-- 2. the fit
local t0 = tide.core.clock()
local w2 <close>, fit = tide.steer.transfer(w, a, b, { lambda = opt.lambda, method = opt.method })
print(string.format("shared tokens %d; relative residual A->B %.4f, B->A %.4f; ridge %.3g / %.3g; %.2f s",
                    fit.n_shared, fit.residual_ab, fit.residual_ba, fit.ridge_a, fit.ridge_b,
                    tide.core.clock() - t0))
if fit.underdetermined then
  print(string.format("warning: %d shared tokens for n_embd %d / %d: only the ridge makes the fit unique",
                      fit.n_shared, fit.d_a, fit.d_b))
end
w2:save(opt.out, "transfer of " .. files[1])
print("wrote " .. opt.out)

-- 3. before / after: the tokens of each leading direction, on A and on B
local k = math.min(math.tointeger(opt.k) or 3, w.rank)
local top = math.tointeger(opt.top) or 10
local ea, eb = w:explain(k, { top = top }), w2:explain(k, { top = top })
local function pieces(list)
  local set = {}
  for _, t in ipairs(list) do set[t.piece] = true end
  return set
end
local function common(x, y)
  local n, sy = 0, pieces(y)
  for p in pairs(pieces(x)) do n = n + (sy[p] and 1 or 0) end
  return n
end
local total, agree = 0, 0
for i = 1, k do
  print(string.format("\n-- direction %d on A (sigma %.4g) / on B (sigma %.4g)", i, ea[i].sigma, eb[i].sigma))
  tide.steer.print_explain({ ea[i] }, function(s) io.write((s:gsub("^direction 1  ", "A  "))) end)
  tide.steer.print_explain({ eb[i] }, function(s) io.write((s:gsub("^direction 1  ", "B  "))) end)
  -- a direction's sign is a convention: count the better of the two pairings
  local same = common(ea[i].promoted, eb[i].promoted) + common(ea[i].suppressed, eb[i].suppressed)
  local flip = common(ea[i].promoted, eb[i].suppressed) + common(ea[i].suppressed, eb[i].promoted)
  print(string.format("   tokens in common: %d of %d%s", math.max(same, flip), 2 * top,
                      flip > same and " (sign flipped)" or ""))
  total, agree = total + 2 * top, agree + math.max(same, flip)
end
print(string.format("\noverlap of the explained tokens, A vs B: %d of %d", agree, total))
