--- tide.manifest: the optional YAML file that describes a model.
-- Layer: Lua package. The format and its rules are in docs/manifest.md.
--   local manifest = require "tide.manifest"
--   local mf = manifest.for_model("models/tiny.gguf")   -- reads models/tiny.yaml
--   if mf then print(mf.name, mf.files.adapter) end
-- Data errors (a malformed file, an unknown key, a wrong type) raise with the
-- manifest's path and, where known, its line; a missing file is not an error.
local yaml = require "tide.yaml"

local NULL = yaml.null

local M = {}

-- Top-level keys and the kind each expects.
local TOP = { name = "string", description = "string", chat_template = "string",
              sampler = "mapping", files = "mapping", extra = "any" }

--- The named options of tide.sampler a manifest may set, and their kinds.
-- (logit_bias is left out: token ids are the model's, not the manifest's.)
M.SAMPLER_KEYS = {
  top_k = "integer", top_p = "number", min_p = "number", typical = "number",
  temperature = "number", repeat_penalty = "number", frequency_penalty = "number",
  presence_penalty = "number", penalty_last_n = "integer", min_keep = "integer",
  seed = "integer",
}

-- Ranges the sampler needs; other values are checked by tide.sampler.
local RANGES = { top_k = { 0 }, top_p = { 0, 1 }, min_p = { 0, 1 }, typical = { 0, 1 },
                 temperature = { 0 }, min_keep = { 0 }, penalty_last_n = { -1 } }

local function sorted_names(set)
  local t = {}
  for k in pairs(set) do t[#t + 1] = k end
  table.sort(t)
  return table.concat(t, ", ")
end

--- A YAML-ish name for the kind of a loaded value (for messages).
local function kind(v)
  if v == NULL then return "null" end
  if type(v) == "table" then return (#v > 0) and "sequence" or "mapping" end
  if type(v) == "number" then return math.type(v) end
  return type(v)
end

-- Raises "<path> line N: 'key' <msg>" (or "<path>: ..." without a line).
local function fail(path, line, key, fmt, ...)
  local where = line and string.format("%s line %d", path, line) or path
  error(string.format("%s: '%s' " .. fmt, where, key, ...), 0)
end

local function check_kind(path, line, key, v, want)
  local got = kind(v)
  local ok = want == "any" or got == want or (want == "number" and type(v) == "number")
             or (want == "integer" and math.tointeger(v) ~= nil)
  if not ok then fail(path, line, key, "%s expected, got %s", want, got) end
end

--- The manifest path for a model: the model path with a final ".gguf"
-- (any case) replaced by ".yaml", or ".yaml" appended when it has none.
function M.path_for(model_path)
  if type(model_path) ~= "string" then
    error("manifest.path_for: path (string) expected, got " .. type(model_path), 2)
  end
  local base = model_path:match("^(.*)%.[gG][gG][uU][fF]$") or model_path
  return base .. ".yaml"
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function check_sampler(path, t, lines)
  local out = {}
  for k, v in pairs(t) do
    local line = lines[k]
    local name = "sampler." .. tostring(k)
    local want = M.SAMPLER_KEYS[k]
    if not want then
      fail(path, line, name, "is not a sampler option (expected one of: %s)",
           sorted_names(M.SAMPLER_KEYS))
    end
    if v ~= NULL then
      check_kind(path, line, name, v, want)
      if want == "integer" then v = math.tointeger(v) end
      local r = RANGES[k]
      if r and (v < r[1] or (r[2] and v > r[2])) then
        fail(path, line, name, "%s out of range %s..%s", tostring(v), tostring(r[1]),
             r[2] and tostring(r[2]) or "")
      end
      out[k] = v
    end
  end
  return out
end

local function check_files(path, t, lines)
  local dir, out = dirname(path), {}
  for k, v in pairs(t) do
    local line = lines[k]
    if type(k) ~= "string" then
      fail(path, line, "files", "names must be strings, got %s %s", kind(k), tostring(k))
    end
    local name = "files." .. k
    check_kind(path, line, name, v, "string")
    if v == "" then fail(path, line, name, "is an empty path") end
    out[k] = v:sub(1, 1) == "/" and v or (dir .. "/" .. v)
  end
  return out
end

--- Checks a loaded manifest document (doc, lines from tide.yaml.load with
-- lines = true) read from path, and returns the manifest table.
function M.validate(doc, lines, path)
  path = path or "manifest"
  lines = lines or {}
  if doc == nil or doc == NULL then doc = {} end
  if type(doc) ~= "table" or #doc > 0 then
    error(string.format("%s: mapping expected at the top level, got %s", path, kind(doc)), 0)
  end
  local top = lines[doc] or {}
  local unknown = {}
  for k in pairs(doc) do
    if not TOP[k] then unknown[#unknown + 1] = k end
  end
  if #unknown > 0 then
    table.sort(unknown, function(a, b) return tostring(a) < tostring(b) end)
    for i, k in ipairs(unknown) do
      unknown[i] = string.format("'%s'%s", tostring(k), top[k] and " (line " .. top[k] .. ")" or "")
    end
    error(string.format("%s: unknown key%s %s (expected one of: %s)", path,
                        #unknown > 1 and "s" or "", table.concat(unknown, ", "),
                        sorted_names(TOP)), 0)
  end
  local mf = { path = path }
  for k, want in pairs(TOP) do
    local v = doc[k]
    if v ~= nil and v ~= NULL then
      check_kind(path, top[k], k, v, want)
      if k == "sampler" then v = check_sampler(path, v, lines[v] or {})
      elseif k == "files" then v = check_files(path, v, lines[v] or {}) end
      mf[k] = v
    end
  end
  return mf
end

--- Reads and validates the manifest at yaml_path (raises when it is missing).
function M.load(yaml_path)
  local doc, lines = yaml.load_file(yaml_path, { lines = true })
  return M.validate(doc, lines, yaml_path)
end

--- The manifest beside a model (see path_for), or nil when there is none.
function M.for_model(model_path)
  local path = M.path_for(model_path)
  local f, msg, code = io.open(path, "rb")
  if not f then
    if code == 2 then return nil end -- ENOENT: no manifest
    error("manifest: " .. msg, 0)
  end
  f:close()
  return M.load(path)
end

return M
