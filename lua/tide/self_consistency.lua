--- tide.self_consistency: N sampled reasoning paths, answers extracted,
-- majority vote. self_consistency(session, { n, max_tokens, sampler, seed,
-- stop, extract }) -> answer, { votes = { [answer] = count }, agreement,
-- candidates }
-- extract is a Lua pattern (first capture, or the whole match) or a function
-- (text) -> answer|nil; the default takes the last number in the text.
-- Ties go to the answer reached first.
local parallel = require "tide.parallel"

local OPTS = { n = true, max_tokens = true, sampler = true, seed = true, stop = true, constraint = true,
               extract = true }

local function extractor(e)
  if type(e) == "function" then return e end
  if e == nil then
    return function(text)
      local last
      for num in text:gmatch("%-?%d+%.?%d*") do last = num end
      return last
    end
  end
  if type(e) ~= "string" then error("self_consistency: extract must be a pattern or a function", 3) end
  return function(text) return (text:match(e)) end
end

return function(session, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTS[k] then error(string.format("self_consistency: unknown option '%s'", tostring(k)), 2) end
  end
  local extract = extractor(opts.extract)
  local cands = parallel.sample_n(session, opts)
  local votes, order, n_answered = {}, {}, 0
  for _, c in ipairs(cands) do
    c.answer = extract(c.text)
    if c.answer ~= nil then
      n_answered = n_answered + 1
      if not votes[c.answer] then order[#order + 1] = c.answer end
      votes[c.answer] = (votes[c.answer] or 0) + 1
    end
  end
  local best, best_n = nil, 0
  for _, a in ipairs(order) do
    if votes[a] > best_n then best, best_n = a, votes[a] end
  end
  return best, { votes = votes, order = order, agreement = best_n / #cands,
                 answered = n_answered, candidates = cands }
end
