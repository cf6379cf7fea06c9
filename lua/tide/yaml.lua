--- tide.yaml: YAML text to Lua values and back (libyaml, through tide.core).
-- Layer: Lua package. The rules (type resolution, nulls, anchors, limits)
-- are in docs/manifest.md, "YAML in tide".
--   local yaml = require "tide.yaml"
--   local v = yaml.load("a: [1, 2]")        --> { a = { 1, 2 } }
--   local text = yaml.dump(v)
-- Every function raises on failure; nothing returns nil, msg.
local core = require "tide.core"

local yaml_load, yaml_dump = core.yaml_load, core.yaml_dump

local M = {}

--- The value a YAML null (`~`, `null`, an empty value) loads as, in
-- mappings, sequences and at the top alike: a NULL light userdata, so a
-- `key: ~` stays present and `#seq` counts null items. `yaml.dump` writes it
-- (and nil) as `null`.
M.null = core.yaml_null

--- Parses one YAML document. Returns its value (nil for an empty stream
-- with no document at all). opts: max_depth (nesting, default 200, at most
-- 1000), max_nodes (nodes with every alias expanded, default 1e6), lines
-- (true: also return a table mapping each loaded table to { key -> line },
-- 1-based, for error messages). Raises "yaml line L, column C: problem".
function M.load(text, opts)
  if type(text) ~= "string" then
    error("yaml.load: string expected, got " .. type(text), 2)
  end
  return yaml_load(text, opts)
end

--- Reads and parses a file (opts as for load). Errors name the file:
-- "<path>: yaml line L, column C: problem", or io.open's message.
function M.load_file(path, opts)
  if type(path) ~= "string" then
    error("yaml.load_file: path (string) expected, got " .. type(path), 2)
  end
  local f, err = io.open(path, "rb")
  if not f then error("yaml.load_file: " .. err, 0) end
  local text, rerr = f:read("a")
  f:close()
  if not text then error("yaml.load_file: " .. path .. ": " .. tostring(rerr), 0) end
  local ok, v, lines = pcall(yaml_load, text, opts)
  if not ok then error(path .. ": " .. tostring(v), 0) end
  return v, lines
end

--- A Lua value as a YAML document (block style, UTF-8, ends in a newline).
-- Tables with exactly the keys 1..n (n >= 1) are sequences; other tables are
-- mappings with sorted keys (numbers, then strings bytewise, then booleans);
-- `{}` is written `{}`. Strings that would load as another type are quoted;
-- multi-line strings use literal blocks. opts: max_depth, max_nodes as for
-- load. Raises on cycles, functions/userdata/threads, keys that are not
-- numbers/strings/booleans, and strings that are not UTF-8.
function M.dump(value, opts)
  return yaml_dump(value, opts)
end

return M
