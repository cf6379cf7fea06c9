--- tide.sampler: sampling chains, configured in Lua and run in C.
-- A spec is model-agnostic; `spec:build(n_vocab, seed)` makes the C chain.
--   tide.sampler "greedy"
--   tide.sampler{ top_k = 40, top_p = 0.95, temperature = 0.8 }   -- llama.cpp's order
--   tide.sampler{ {"min_p", 0.05}, {"temperature", 0.7} }          -- your order
local core = require "tide.core"

local M = {}
local Spec = {}
Spec.__index = Spec
Spec.__name = "tide.SamplerSpec"

-- Named-key form: applied in llama.cpp's default order.
local ORDER = { "penalties", "logit_bias", "top_k", "typical", "top_p", "min_p", "temperature" }
local KEYS = {
  top_k = true, top_p = true, min_p = true, typical = true, temperature = true,
  repeat_penalty = true, frequency_penalty = true, presence_penalty = true,
  penalty_last_n = true, logit_bias = true, min_keep = true, seed = true,
}

local function check_number(name, v)
  if type(v) ~= "number" then
    error(string.format("sampler option '%s': number expected, got %s", name, type(v)), 3)
  end
  return v
end

local function from_keys(t)
  for k in pairs(t) do
    if not KEYS[k] then error(string.format("sampler: unknown option '%s'", tostring(k)), 3) end
  end
  local keep = t.min_keep or 1
  local stages = {}
  for _, kind in ipairs(ORDER) do
    if kind == "penalties" then
      if t.repeat_penalty or t.frequency_penalty or t.presence_penalty then
        stages[#stages + 1] = { "penalties", t.repeat_penalty or 1.0, t.frequency_penalty or 0.0,
                                t.presence_penalty or 0.0, t.penalty_last_n or 64 }
      end
    elseif kind == "logit_bias" then
      if t.logit_bias then stages[#stages + 1] = { "logit_bias" } end
    elseif kind == "top_k" then
      if t.top_k then stages[#stages + 1] = { "top_k", check_number("top_k", t.top_k) } end
    elseif t[kind] ~= nil then
      stages[#stages + 1] = { kind, check_number(kind, t[kind]), keep }
    end
  end
  return stages
end

--- Makes a sampler spec from "greedy", a table of named options, or an
-- ordered list of stages ({ "top_k", 40 }, ...).
function M.new(t)
  local self = setmetatable({ seed = nil, bias = nil }, Spec)
  if t == "greedy" or t == nil then
    self.stages = { { "temperature", 0 } }
  elseif type(t) == "table" and t[1] ~= nil then
    self.stages = {}
    for i, st in ipairs(t) do
      if type(st) ~= "table" or type(st[1]) ~= "string" then
        error(string.format("sampler stage %d: { kind, params... } expected", i), 2)
      end
      self.stages[i] = st
      if st[1] == "logit_bias" then self.bias = st[2] end
    end
  elseif type(t) == "table" then
    self.stages = from_keys(t)
    self.seed = t.seed
    self.bias = t.logit_bias
  else
    error("sampler: 'greedy' or a table expected, got " .. type(t), 2)
  end
  return self
end

--- True if the chain picks the argmax.
function Spec:is_greedy()
  for _, st in ipairs(self.stages) do
    if st[1] == "temperature" and st[2] <= 0 then return true end
  end
  return false
end

--- Builds the C chain for a vocabulary; seed defaults to the spec's own.
function Spec:build(n_vocab, seed)
  local s = core.sampler(n_vocab, self.seed or seed or 0, self.stages)
  if self.bias then s:set_bias(self.bias) end
  return s
end

function M.is_spec(v) return getmetatable(v) == Spec end

return M
