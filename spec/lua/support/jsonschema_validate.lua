--- spec/lua/support/jsonschema_validate.lua: a JSON Schema validator for the specs.
-- Layer: tests. Independent of core/json*.c: its own strict JSON reader
-- (arrays and objects stay distinguishable, duplicate keys are reported) and
-- a recursive validator for the keywords tide's converter supports
-- (docs/json-schema.md): type (incl. unions, integer), nullable, enum, const,
-- properties, required, additionalProperties, items (schema or draft-4
-- array) with additionalItems, prefixItems, min/maxItems, uniqueItems,
-- min/maxLength (code points), pattern (PCRE2 through tide.re, search
-- semantics), format (date, time, date-time, uuid, email), minimum, maximum,
-- exclusiveMinimum/Maximum (numbers and draft-4 booleans), multipleOf,
-- min/maxProperties, anyOf, oneOf, allOf, not, $ref into the same document
-- ($defs, definitions, any JSON pointer; siblings of $ref apply too).
-- Formats are checked as assertions. Unknown keywords are ignored.
--   local V = require "lua.support.jsonschema_validate"
--   local schema = V.decode(schema_text)
--   local ok, why = V.validate(schema, V.decode(instance_text))
local re = require "tide.re"

local M = {}

local ARR = { __name = "json array" }
local OBJ = { __name = "json object" }
M.null = setmetatable({}, { __name = "json null" })

function M.is_array(v) return getmetatable(v) == ARR end
function M.is_object(v) return getmetatable(v) == OBJ end

-- ------------------------------------------------------------------ reader

local function fail(_, i, msg) error(string.format("json: offset %d: %s", i - 1, msg), 0) end

local function ws(s, i) return s:find("[^ \t\n\r]", i) or #s + 1 end

local function utf8_char(cp) return utf8.char(cp) end

local function read_string(s, i)
  local out = {}
  i = i + 1
  while true do
    local c = s:sub(i, i)
    if c == "" then fail(s, i, "unterminated string") end
    if c == '"' then return table.concat(out), i + 1 end
    if c == "\\" then
      local e = s:sub(i + 1, i + 1)
      local simple = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
      if simple[e] then
        out[#out + 1] = simple[e]
        i = i + 2
      elseif e == "u" then
        local h = s:sub(i + 2, i + 5)
        if not h:match("^%x%x%x%x$") then fail(s, i, "bad \\u escape") end
        local cp = tonumber(h, 16)
        i = i + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local h2 = s:match("^\\u(%x%x%x%x)", i)
          local lo = h2 and tonumber(h2, 16)
          if not lo or lo < 0xDC00 or lo > 0xDFFF then fail(s, i, "lone surrogate") end
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
          i = i + 6
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          fail(s, i, "lone surrogate")
        end
        out[#out + 1] = utf8_char(cp)
      else
        fail(s, i, "bad escape")
      end
    else
      if c:byte() < 0x20 then fail(s, i, "control character in string") end
      local j = s:find('["\\%z\1-\31]', i) or #s + 1
      out[#out + 1] = s:sub(i, j - 1)
      i = j
    end
  end
end

local read_value

local function read_number(s, i)
  local num = s:match("^%-?0", i) or s:match("^%-?[1-9]%d*", i)
  if not num then fail(s, i, "bad number") end
  local j = i + #num
  local frac = s:match("^%.%d+", j)
  if s:sub(j, j) == "." and not frac then fail(s, j, "bad fraction") end
  if frac then j = j + #frac end
  local exp = s:match("^[eE][%+%-]?%d+", j)
  if s:sub(j, j):match("[eE]") and not exp then fail(s, j, "bad exponent") end
  if exp then j = j + #exp end
  local text = s:sub(i, j - 1)
  local v = (not frac and not exp) and math.tointeger(tonumber(text)) or tonumber(text)
  return v, j
end

function read_value(s, i, depth)
  if depth > 500 then fail(s, i, "too deep") end
  i = ws(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local t = setmetatable({}, OBJ)
    i = ws(s, i + 1)
    if s:sub(i, i) == "}" then return t, i + 1 end
    while true do
      if s:sub(i, i) ~= '"' then fail(s, i, "key expected") end
      local k
      k, i = read_string(s, i)
      i = ws(s, i)
      if s:sub(i, i) ~= ":" then fail(s, i, "':' expected") end
      local v
      v, i = read_value(s, i + 1, depth + 1)
      if rawget(t, k) ~= nil then M.duplicate_keys = (M.duplicate_keys or 0) + 1 end
      rawset(t, k, v)
      i = ws(s, i)
      c = s:sub(i, i)
      if c == "}" then return t, i + 1 end
      if c ~= "," then fail(s, i, "',' or '}' expected") end
      i = ws(s, i + 1)
    end
  elseif c == "[" then
    local t = setmetatable({ n = 0 }, ARR)
    i = ws(s, i + 1)
    if s:sub(i, i) == "]" then return t, i + 1 end
    while true do
      local v
      v, i = read_value(s, i, depth + 1)
      t.n = t.n + 1
      t[t.n] = v
      i = ws(s, i)
      c = s:sub(i, i)
      if c == "]" then return t, i + 1 end
      if c ~= "," then fail(s, i, "',' or ']' expected") end
      i = i + 1
    end
  elseif c == '"' then
    return read_string(s, i)
  elseif c == "-" or c:match("%d") then
    return read_number(s, i)
  elseif s:sub(i, i + 3) == "true" then return true, i + 4
  elseif s:sub(i, i + 4) == "false" then return false, i + 5
  elseif s:sub(i, i + 3) == "null" then return M.null, i + 4
  end
  fail(s, i, "unexpected " .. (c == "" and "end" or "'" .. c .. "'"))
end

--- Strict JSON text -> value (arrays/objects tagged, null = M.null).
-- Raises "json: offset N: ..." on anything RFC 8259 rejects, including
-- invalid UTF-8.
function M.decode(s)
  if not utf8.len(s) then error("json: invalid UTF-8", 0) end
  local v, i = read_value(s, 1, 0)
  i = ws(s, i)
  if i <= #s then fail(s, i, "trailing text") end
  return v
end

-- ------------------------------------------------------------------ helpers

local function jtype(v)
  if v == M.null then return "null" end
  local t = type(v)
  if t == "boolean" then return "boolean" end
  if t == "string" then return "string" end
  if t == "number" then return "number" end
  if M.is_array(v) then return "array" end
  if M.is_object(v) then return "object" end
  error("not a JSON value: " .. tostring(v))
end

local function is_integer(v) return type(v) == "number" and v == math.floor(v) and v == v end

local function equal(a, b)
  local ta, tb = jtype(a), jtype(b)
  if ta ~= tb then return false end
  if ta == "array" then
    if a.n ~= b.n then return false end
    for i = 1, a.n do if not equal(a[i], b[i]) then return false end end
    return true
  elseif ta == "object" then
    for k, v in pairs(a) do if b[k] == nil or not equal(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
  end
  return a == b
end
M.equal = equal

local function leap(y) return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0 end
local MDAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function is_date(s)
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return false end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m < 1 or m > 12 or d < 1 then return false end
  local max = MDAYS[m] + ((m == 2 and leap(y)) and 1 or 0)
  return d <= max
end

local function is_time(s)
  local h, mi, sec, rest = s:match("^(%d%d):(%d%d):(%d%d)(.*)$")
  if not h then return false end
  if tonumber(h) > 23 or tonumber(mi) > 59 or tonumber(sec) > 60 then return false end
  rest = rest:gsub("^%.%d+", "", 1)
  if rest == "Z" or rest == "z" then return true end
  local oh, om = rest:match("^[%+%-](%d%d):(%d%d)$")
  return oh ~= nil and tonumber(oh) <= 23 and tonumber(om) <= 59
end

local FORMATS = {
  date = is_date,
  time = is_time,
  ["date-time"] = function(s)
    local d, t = s:match("^(%d%d%d%d%-%d%d%-%d%d)[Tt](.*)$")
    return d ~= nil and is_date(d) and is_time(t)
  end,
  uuid = function(s) return s:match("^%x+%-%x+%-%x+%-%x+%-%x+$") ~= nil
    and re.find(s, "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\\z") ~= nil end,
  email = function(s)
    local atext = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
    local label = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    return re.find(s, "^" .. atext .. "(?:\\." .. atext .. ")*@" .. label .. "(?:\\." .. label .. ")+\\z") ~= nil
  end,
}

-- JSON pointer "#/a/b~1c" inside root.
local function resolve(root, ref)
  if ref == "#" then return root end
  local path = ref:match("^#(/.*)$")
  if not path then error("validator: unsupported $ref " .. ref) end
  local node = root
  for part in path:sub(2):gmatch("[^/]*") do
    part = part:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
    part = part:gsub("~1", "/"):gsub("~0", "~")
    if M.is_array(node) then node = node[math.tointeger(tonumber(part)) + 1]
    elseif M.is_object(node) then node = node[part]
    else node = nil end
    if node == nil then error("validator: dangling $ref " .. ref) end
  end
  return node
end

-- ------------------------------------------------------------------ validator

local validate

local function check_type(t, v)
  local vt = jtype(v)
  if t == vt then return true end
  if t == "integer" then return vt == "number" and is_integer(v) end
  if t == "number" then return vt == "number" end
  return false
end

local function check_number(s, v, path)
  local function bad(k) return false, path .. ": " .. k end
  if s.minimum ~= nil then
    if s.exclusiveMinimum == true then
      if v <= s.minimum then return bad("exclusive minimum") end
    elseif v < s.minimum then return bad("minimum") end
  end
  if s.maximum ~= nil then
    if s.exclusiveMaximum == true then
      if v >= s.maximum then return bad("exclusive maximum") end
    elseif v > s.maximum then return bad("maximum") end
  end
  if type(s.exclusiveMinimum) == "number" and v <= s.exclusiveMinimum then return bad("exclusiveMinimum") end
  if type(s.exclusiveMaximum) == "number" and v >= s.exclusiveMaximum then return bad("exclusiveMaximum") end
  if s.multipleOf ~= nil then
    local q = v / s.multipleOf
    if math.abs(q - math.floor(q + 0.5)) > 1e-9 then return bad("multipleOf") end
  end
  return true
end

local function check_string(s, v, path)
  local function bad(k) return false, path .. ": " .. k end
  local len = utf8.len(v)
  if s.minLength ~= nil and len < s.minLength then return bad("minLength") end
  if s.maxLength ~= nil and len > s.maxLength then return bad("maxLength") end
  if s.pattern ~= nil and not re.find(v, s.pattern) then return bad("pattern " .. s.pattern) end
  if s.format ~= nil and FORMATS[s.format] and not FORMATS[s.format](v) then return bad("format " .. s.format) end
  return true
end

local function check_array(ctx, s, v, path)
  local function bad(k) return false, path .. ": " .. k end
  if s.minItems ~= nil and v.n < s.minItems then return bad("minItems") end
  if s.maxItems ~= nil and v.n > s.maxItems then return bad("maxItems") end
  if s.uniqueItems == true then
    for i = 1, v.n do for j = i + 1, v.n do
      if equal(v[i], v[j]) then return bad("uniqueItems") end
    end end
  end
  local tuple, rest
  if s.prefixItems ~= nil then tuple, rest = s.prefixItems, s.items
  elseif M.is_array(s.items) then tuple, rest = s.items, s.additionalItems
  else rest = s.items end
  for i = 1, v.n do
    local sub
    if tuple and i <= tuple.n then sub = tuple[i] else sub = rest end
    if sub ~= nil then
      local ok, why = validate(ctx, sub, v[i], path .. "/" .. (i - 1))
      if not ok then return false, why end
    end
  end
  return true
end

local function check_object(ctx, s, v, path)
  local function bad(k) return false, path .. ": " .. k end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  if s.minProperties ~= nil and n < s.minProperties then return bad("minProperties") end
  if s.maxProperties ~= nil and n > s.maxProperties then return bad("maxProperties") end
  if s.required ~= nil then
    for i = 1, s.required.n do
      if v[s.required[i]] == nil then return bad("required " .. s.required[i]) end
    end
  end
  local props = s.properties
  for k, x in pairs(v) do
    local sub
    if props ~= nil and props[k] ~= nil then sub = props[k]
    elseif s.additionalProperties ~= nil then sub = s.additionalProperties end
    if sub ~= nil then
      local ok, why = validate(ctx, sub, x, path .. "/" .. k)
      if not ok then return false, why end
    end
  end
  return true
end

function validate(ctx, s, v, path)
  if s == true then return true end
  if s == false then return false, path .. ": false schema" end
  if not M.is_object(s) then error("validator: schema at " .. path .. " is not an object") end
  ctx.steps = ctx.steps + 1
  if ctx.steps > 1e6 then error("validator: too many steps") end
  local function bad(k) return false, path .. ": " .. k end
  if s["$ref"] ~= nil then
    local ok, why = validate(ctx, resolve(ctx.root, s["$ref"]), v, path)
    if not ok then return false, why end
  end
  local vt = jtype(v)
  local nullable_null = s.nullable == true and vt == "null"
  if s.type ~= nil and not nullable_null then
    local ts = M.is_array(s.type) and s.type or { s.type, n = 1 }
    local any = false
    for i = 1, ts.n do if check_type(ts[i], v) then any = true end end
    if not any then return bad("type") end
  end
  if s.enum ~= nil then
    local any = false
    for i = 1, s.enum.n do if equal(s.enum[i], v) then any = true end end
    if not any then return bad("enum") end
  end
  if s.const ~= nil and not equal(s.const, v) then return bad("const") end
  local ok, why = true, nil
  if vt == "number" then ok, why = check_number(s, v, path)
  elseif vt == "string" then ok, why = check_string(s, v, path)
  elseif vt == "array" then ok, why = check_array(ctx, s, v, path)
  elseif vt == "object" then ok, why = check_object(ctx, s, v, path) end
  if not ok then return false, why end
  if s.allOf ~= nil then
    for i = 1, s.allOf.n do
      ok, why = validate(ctx, s.allOf[i], v, path)
      if not ok then return false, why end
    end
  end
  if s.anyOf ~= nil then
    local any = false
    for i = 1, s.anyOf.n do if validate(ctx, s.anyOf[i], v, path) then any = true; break end end
    if not any then return bad("anyOf") end
  end
  if s.oneOf ~= nil then
    local hits = 0
    for i = 1, s.oneOf.n do if validate(ctx, s.oneOf[i], v, path) then hits = hits + 1 end end
    if hits ~= 1 then return bad("oneOf (" .. hits .. " branches)") end
  end
  if s["not"] ~= nil and validate(ctx, s["not"], v, path) then return bad("not") end
  return true
end

--- validate(schema, value) -> true, or false and "pointer: keyword".
-- schema and value as read by M.decode.
function M.validate(schema, value)
  return validate({ root = schema, steps = 0 }, schema, value, "")
end

return M
