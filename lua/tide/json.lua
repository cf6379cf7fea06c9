--- tide.json: JSON text to Lua values and back (recipes' --json output,
-- tests). Layer: Lua package (pure Lua; strict RFC 8259).
--   local json = require "tide.json"
--   json.encode { answer = "42", votes = { 3, 1 } }  --> {"answer":"42","votes":[3,1]}
--   json.decode '[1, "a", null]'                      --> { 1, "a", json.null }
-- Encoding: tables whose keys are exactly 1..n (n >= 1) are arrays, other
-- tables objects with sorted keys (so output is reproducible); an empty
-- table is `{}` unless it is json.empty_array. Numbers that are not finite
-- (-math.huge scores, NaN) become null, integers print without a fraction,
-- other numbers with 17 significant digits (they read back exactly).
-- Strings must be UTF-8. Raises on cycles, functions, userdata and
-- non-string/number keys.
-- Decoding: null is json.null (so arrays keep their length), integers
-- that fit are Lua integers. Errors name the byte offset:
-- "json: offset 7: expected ',' or ']'".
local M = {}

--- The value JSON null decodes to (and encodes from).
M.null = setmetatable({}, { __name = "json.null", __tostring = function() return "null" end })
--- An empty table that encodes as [] instead of {}.
M.empty_array = setmetatable({}, { __name = "json.empty_array", __newindex = function()
  error("json.empty_array is read-only", 2)
end })

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
              ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  if not utf8.len(s) then error("json.encode: string is not valid UTF-8", 0) end
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESC[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode_number(x)
  if math.type(x) == "integer" then return tostring(x) end
  if x ~= x or x == math.huge or x == -math.huge then return "null" end
  if x == math.floor(x) and math.abs(x) < 2 ^ 53 then return string.format("%.1f", x) end
  local s = string.format("%.17g", x)
  -- the shortest of %.15g/%.16g/%.17g that reads back exactly
  for _, f in ipairs { "%.15g", "%.16g" } do
    local t = string.format(f, x)
    if tonumber(t) == x then s = t; break end
  end
  return s
end

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  for i = 1, n do if t[i] == nil then return false end end
  return n > 0, n
end

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta == "number" end
  return a < b
end

local encode_value

local function encode_table(t, out, seen, indent, depth)
  if seen[t] then error("json.encode: cycle in the value", 0) end
  seen[t] = true
  local nl, pad, pad_in = "", "", ""
  if indent then
    nl = "\n"
    pad = string.rep(indent, depth)
    pad_in = pad .. indent
  end
  local arr, n = is_array(t)
  if arr then
    out[#out + 1] = "["
    for i = 1, n do
      out[#out + 1] = (i > 1 and "," or "") .. nl .. pad_in
      encode_value(t[i], out, seen, indent, depth + 1)
    end
    out[#out + 1] = nl .. pad .. "]"
  elseif next(t) == nil then
    out[#out + 1] = t == M.empty_array and "[]" or "{}"
  else
    local keys = {}
    for k in pairs(t) do
      local tk = type(k)
      if tk ~= "string" and tk ~= "number" then
        error("json.encode: object keys must be strings or numbers, got " .. tk, 0)
      end
      keys[#keys + 1] = k
    end
    table.sort(keys, key_less)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      local ks = type(k) == "string" and k or encode_number(k)
      out[#out + 1] = (i > 1 and "," or "") .. nl .. pad_in .. encode_string(ks) .. (indent and ": " or ":")
      encode_value(t[k], out, seen, indent, depth + 1)
    end
    out[#out + 1] = nl .. pad .. "}"
  end
  seen[t] = nil
end

function encode_value(v, out, seen, indent, depth)
  local tv = type(v)
  if v == nil or v == M.null then out[#out + 1] = "null"
  elseif tv == "boolean" then out[#out + 1] = tostring(v)
  elseif tv == "number" then out[#out + 1] = encode_number(v)
  elseif tv == "string" then out[#out + 1] = encode_string(v)
  elseif tv == "table" then encode_table(v, out, seen, indent, depth)
  else error("json.encode: cannot encode a " .. tv, 0) end
end

--- encode(value [, { indent = "  " }]) -> JSON text (one line unless
-- indent is given).
function M.encode(v, opts)
  local out = {}
  encode_value(v, out, {}, opts and opts.indent, 0)
  return table.concat(out)
end

-- ---------------------------------------------------------------- decode

local function fail(pos, msg) error(string.format("json: offset %d: %s", pos - 1, msg), 0) end

local function skip(s, pos)
  return s:find("[^ \t\r\n]", pos) or #s + 1
end

local decode_value

local function decode_string(s, pos)
  local out, i = {}, pos + 1
  while true do
    local j = s:find('["\\%c]', i)
    if not j then fail(pos, "unterminated string") end
    out[#out + 1] = s:sub(i, j - 1)
    local c = s:sub(j, j)
    if c == '"' then
      local str = table.concat(out)
      if not utf8.len(str) then fail(pos, "string is not valid UTF-8") end
      return str, j + 1
    elseif c ~= "\\" then
      fail(j, "control character in string")
    end
    local e = s:sub(j + 1, j + 1)
    local simple = ({ ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" })[e]
    if simple then
      out[#out + 1] = simple
      i = j + 2
    elseif e == "u" then
      local hex = s:match("^%x%x%x%x", j + 2)
      if not hex then fail(j, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = s:match("^\\u(%x%x%x%x)", i)
        lo = lo and tonumber(lo, 16)
        if not lo or lo < 0xDC00 or lo > 0xDFFF then fail(j, "unpaired surrogate in \\u escape") end
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
        i = i + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        fail(j, "unpaired surrogate in \\u escape")
      end
      out[#out + 1] = utf8.char(cp)
    else
      fail(j, "bad escape '\\" .. e .. "'")
    end
  end
end

-- -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][-+]?[0-9]+)?
local function decode_number(s, pos)
  local i = pos
  if s:sub(i, i) == "-" then i = i + 1 end
  local int = s:match("^%d+", i)
  if not int or (#int > 1 and int:sub(1, 1) == "0") then fail(pos, "bad number") end
  i = i + #int
  local is_float = false
  if s:sub(i, i) == "." then
    local frac = s:match("^%d+", i + 1)
    if not frac then fail(pos, "bad number: digits expected after '.'") end
    i, is_float = i + 1 + #frac, true
  end
  if s:match("^[eE]", i) then
    local exp = s:match("^[eE][-+]?%d+", i)
    if not exp then fail(pos, "bad number: digits expected in the exponent") end
    i, is_float = i + #exp, true
  end
  local text = s:sub(pos, i - 1)
  local v = not is_float and math.tointeger(tonumber(text)) or tonumber(text) + 0.0
  return v, i
end

local function decode_array(s, pos, depth)
  local t, n = {}, 0
  pos = skip(s, pos + 1)
  if s:sub(pos, pos) == "]" then return t, pos + 1 end
  while true do
    local v
    v, pos = decode_value(s, pos, depth + 1)
    n = n + 1
    t[n] = v
    pos = skip(s, pos)
    local c = s:sub(pos, pos)
    if c == "]" then return t, pos + 1 end
    if c ~= "," then fail(pos, "expected ',' or ']'") end
    pos = skip(s, pos + 1)
  end
end

local function decode_object(s, pos, depth)
  local t = {}
  pos = skip(s, pos + 1)
  if s:sub(pos, pos) == "}" then return t, pos + 1 end
  while true do
    if s:sub(pos, pos) ~= '"' then fail(pos, "expected a string key") end
    local k
    k, pos = decode_string(s, pos)
    pos = skip(s, pos)
    if s:sub(pos, pos) ~= ":" then fail(pos, "expected ':'") end
    local v
    v, pos = decode_value(s, skip(s, pos + 1), depth + 1)
    t[k] = v
    pos = skip(s, pos)
    local c = s:sub(pos, pos)
    if c == "}" then return t, pos + 1 end
    if c ~= "," then fail(pos, "expected ',' or '}'") end
    pos = skip(s, pos + 1)
  end
end

local LITERALS = { ["true"] = true, ["false"] = false }

function decode_value(s, pos, depth)
  if depth > 512 then fail(pos, "nested too deeply") end
  local c = s:sub(pos, pos)
  if c == "{" then return decode_object(s, pos, depth)
  elseif c == "[" then return decode_array(s, pos, depth)
  elseif c == '"' then return decode_string(s, pos)
  elseif c == "-" or c:match("%d") then return decode_number(s, pos)
  end
  for word, v in pairs(LITERALS) do
    if s:sub(pos, pos + #word - 1) == word then return v, pos + #word end
  end
  if s:sub(pos, pos + 3) == "null" then return M.null, pos + 4 end
  if c == "" then fail(pos, "unexpected end of text") end
  fail(pos, "unexpected character '" .. c .. "'")
end

--- decode(text) -> value. Raises "json: offset N: problem".
function M.decode(s)
  if type(s) ~= "string" then error("json.decode: string expected, got " .. type(s), 2) end
  local v, pos = decode_value(s, skip(s, 1), 0)
  pos = skip(s, pos)
  if pos <= #s then fail(pos, "trailing characters after the value") end
  return v
end

return M
