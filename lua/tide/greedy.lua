--- tide.greedy: the argmax at every step. greedy(session, opts) -> text, info
-- (opts as session:generate, without a sampler).
return function(session, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.sampler ~= nil then error("greedy: takes no sampler", 2) end
  o.sampler = "greedy"
  return session:generate(o)
end
