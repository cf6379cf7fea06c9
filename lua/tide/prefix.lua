--- tide.prefix: prefix tuning at run time. A prefix is k learned key and
-- value rows per layer (what `core.trainer_frozen` with `n_kv_prefix` and
-- recipes/prefix_train.lua save); a session that starts with it has them at
-- positions 0..k-1 and its tokens from position k on. See docs/steering.md,
-- "Prefix tuning".
local core = require "tide.core"

local M = {}

local Prefix = {}
Prefix.__index = Prefix
Prefix.__name = "tide.PrefixObject"
M.Prefix = Prefix

--- Loads a prefix file; with model, checks that it fits (n_layer, K/V width,
-- n_embd). Raises on failure.
function M.load(path, model)
  if type(path) ~= "string" then error("prefix.load: path (string) expected, got " .. type(path), 2) end
  local h, msg = core.prefix_load(path)
  if not h then error(msg, 2) end
  local info = h:info()
  if model then
    local mi = model.info
    local kvd = mi.n_kv_head * mi.head_dim
    if info.n_layer ~= mi.n_layer or info.kv_dim ~= kvd or (info.n_embd ~= 0 and info.n_embd ~= mi.n_embd) then
      h:close()
      error(string.format("prefix.load: '%s' is for n_layer %d, kv_dim %d, n_embd %d; the model has %d, %d, %d",
                          path, info.n_layer, info.kv_dim, info.n_embd, mi.n_layer, kvd, mi.n_embd), 2)
    end
  end
  return setmetatable({ h = h, n_tokens = info.n_tokens, n_layer = info.n_layer,
                        kv_dim = info.kv_dim, path = path }, Prefix)
end

function Prefix:close() if self.h then self.h:close(); self.h = nil end end
Prefix.__close = Prefix.close

function Prefix:__tostring()
  return string.format("tide.Prefix(%d positions, %d layers)", self.n_tokens, self.n_layer)
end

--- Writes the prefix into an empty sequence seq of a core context.
function Prefix:apply(ctx, seq)
  if not self.h then error("attempt to use a closed prefix", 3) end
  self.h:apply(ctx, seq)
end

return M
