--- tide.best_of_n: N candidates decoded together, scored, best first.
-- best_of_n(session, { n, max_tokens, sampler, seed, stop, scorer })
--   -> best text, { candidates = ranked list, best = candidate }
-- scorer(candidate) -> number (higher is better); the default is the mean
-- log-probability of the candidate's tokens. A verifier can return -math.huge
-- to reject. Ties keep fork order.
local parallel = require "tide.parallel"

local OPTS = { n = true, max_tokens = true, sampler = true, seed = true, stop = true, constraint = true, scorer = true }

return function(session, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTS[k] then error(string.format("best_of_n: unknown option '%s'", tostring(k)), 2) end
  end
  local cands = parallel.sample_n(session, opts)
  local scorer = opts.scorer or function(c) return c.mean_logprob end
  for i, c in ipairs(cands) do
    c.index = i
    c.score = scorer(c)
    if type(c.score) ~= "number" then error("best_of_n: scorer must return a number", 2) end
  end
  table.sort(cands, function(a, b)
    if a.score ~= b.score then return a.score > b.score end
    return a.index < b.index
  end)
  return cands[1].text, { candidates = cands, best = cands[1] }
end
