--- tide: scripted generation over tide's C core.
-- `local tide = require "tide"`; see docs/lua-api.md for every name.
-- Layer: Lua package (policy lives here; per-vocabulary loops live in C).
local core = require "tide.core"
local Model = require "tide.model"
local sampler = require "tide.sampler"

local tide = {
  core = core,
  version = string.format("%d.%d.%d", core.version_num // 10000,
                          core.version_num // 100 % 100, core.version_num % 100),
  sampler = sampler.new,
}

--- Loads a GGUF model. Raises on failure with the core's message.
-- opts: threads, n_ctx (positions per sequence), n_cells (KV cache budget in
-- positions, shared by all sessions), n_seq_max, n_batch, n_outputs (rows
-- of one decode that may want logits: the logits buffer's height; scoring
-- and all-logits feeds need up to 256, m:step one per session), kv_type
-- ("f16" or "f32"), vocab_only (tokenizer only).
function tide.load(path, opts)
  return Model.load(path, opts)
end

--- Sets the number of kernel threads for every model of this Lua state.
function tide.set_threads(n) core.set_threads(n) end

tide.yaml = require "tide.yaml"
local constraint = require "tide.constraint"
tide.regex = constraint.regex
tide.grammar = constraint.grammar
tide.choice = constraint.choice
tide.json_schema = constraint.json_schema
tide.greedy = require "tide.greedy"
tide.beam = require "tide.beam"
tide.best_of_n = require "tide.best_of_n"
tide.self_consistency = require "tide.self_consistency"
tide.re = require "tide.re"
tide.json = require "tide.json"
tide.chat = require "tide.chat"
-- steering and introspection (docs/steering.md)
tide.steer = require "tide.steer"
tide.lens = tide.steer.lens
tide.selfie = require "tide.selfie"
tide.vector = core.vector
tide.prefix = require "tide.prefix" -- prefix tuning (docs/steering.md)

return tide
