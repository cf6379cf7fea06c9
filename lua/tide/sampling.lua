--- tide.sampling: one sampled continuation. sampling(session, opts) -> text, info
-- opts as session:generate; opts.sampler defaults to
-- { top_k = 40, top_p = 0.95, temperature = 0.8 }.
return function(session, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.sampler = o.sampler or { top_k = 40, top_p = 0.95, temperature = 0.8 }
  return session:generate(o)
end
