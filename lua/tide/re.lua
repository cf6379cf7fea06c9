--- tide.re: PCRE2 regular expressions for Lua (find, match, gmatch, gsub).
-- Layer: Lua package over core.pcre_find (lua/lpcre.c).
--   local re = require "tide.re"
--   re.find("x = 42", "(\\d+)")            --> 5, 6, "42"
--   re.match("x = 42", "(?<n>\\d+)")       --> "42"
--   for w in re.gmatch("a1 b22", "\\d+") do ... end
-- The functions take (subject, pattern) in string.find's order, with
-- string.find's conventions: 1-based inclusive positions, `init` may be
-- negative. Patterns are PCRE2 syntax in UTF mode with Unicode properties;
-- options go inline: (?i) caseless, (?m) multiline, (?s) dot-all, (?x)
-- extended. Compiled patterns are cached per Lua state. A bad pattern raises
-- "pattern error at offset N: message". Unset capture groups are false.
local core = require "tide.core"

local pcre_find, pcre_info = core.pcre_find, core.pcre_info

local M = {}

local function check(s, pattern, fname)
  if type(s) ~= "string" then error(string.format("re.%s: subject (string) expected, got %s", fname, type(s)), 3) end
  if type(pattern) ~= "string" then
    error(string.format("re.%s: pattern (string) expected, got %s", fname, type(pattern)), 3)
  end
end

--- find(s, pattern [, init]) -> start, end, captures... or nil.
function M.find(s, pattern, init)
  check(s, pattern, "find")
  return pcre_find(pattern, s, init)
end

-- The captures of a find result, or the whole match when there are none.
local function captures(s, a, b, ...)
  if a == nil then return nil end
  if select("#", ...) == 0 then return s:sub(a, b) end
  return ...
end

--- match(s, pattern [, init]) -> the captures (or the whole match), or nil.
function M.match(s, pattern, init)
  check(s, pattern, "match")
  return captures(s, pcre_find(pattern, s, init))
end

--- named(s, pattern [, init]) -> { [name] = capture, [0] = whole match } or
-- nil: the named groups of a match, (?<name>...).
function M.named(s, pattern, init)
  check(s, pattern, "named")
  local r = table.pack(pcre_find(pattern, s, init))
  if r[1] == nil then return nil end
  local _, names = pcre_info(pattern)
  local out = { [0] = s:sub(r[1], r[2]) }
  for name, i in pairs(names) do out[name] = r[i + 2] end
  return out
end

-- The byte after the UTF-8 character that starts at i (for stepping past
-- an empty match).
local function next_char(s, i)
  local c = s:byte(i)
  if not c then return i + 1 end
  if c >= 0xF0 then return i + 4 elseif c >= 0xE0 then return i + 3 elseif c >= 0xC0 then return i + 2 end
  return i + 1
end

--- gmatch(s, pattern) -> an iterator over the matches' captures (or whole
-- matches), as string.gmatch. Empty matches advance by one character.
function M.gmatch(s, pattern)
  check(s, pattern, "gmatch")
  local pos, lastmatch = 1, nil
  return function()
    while pos <= #s + 1 do
      local r = table.pack(pcre_find(pattern, s, pos))
      if r[1] == nil then break end
      local e = r[2] + 1 -- exclusive end
      if e == lastmatch then
        pos = next_char(s, r[1]) -- an empty match where the last one ended
      else
        pos, lastmatch = e, e
        return captures(s, table.unpack(r, 1, r.n))
      end
    end
    pos = #s + 2
    return nil
  end
end

--- gsub(s, pattern, repl [, n]) -> new string, count. repl is a string
-- (%0 whole match, %1..%9 captures, %% a percent sign), a table indexed by
-- the first capture (or the match), or a function of the captures; a false
-- or nil result keeps the match, as string.gsub.
function M.gsub(s, pattern, repl, n)
  check(s, pattern, "gsub")
  local out, count, pos = {}, 0, 1
  local tr = type(repl)
  if tr ~= "string" and tr ~= "table" and tr ~= "function" then
    error("re.gsub: repl must be a string, a table or a function, got " .. tr, 2)
  end
  while pos <= #s + 1 and (n == nil or count < n) do
    local r = table.pack(pcre_find(pattern, s, pos))
    if r[1] == nil then break end
    local a, b = r[1], r[2]
    local whole = s:sub(a, b)
    local first = r.n > 2 and r[3] or whole
    local v
    if tr == "string" then
      v = repl:gsub("%%([%d%%])", function(d)
        if d == "%" then return "%" end
        local k = tonumber(d)
        if k == 0 then return whole end
        if k + 2 > r.n then error(string.format("re.gsub: invalid capture index %%%d in replacement", k), 4) end
        return tostring(r[k + 2] or "")
      end)
    elseif tr == "table" then
      v = repl[first]
    else
      if r.n > 2 then v = repl(table.unpack(r, 3, r.n)) else v = repl(whole) end
    end
    if v == nil or v == false then v = whole end
    out[#out + 1] = s:sub(pos, a - 1)
    out[#out + 1] = tostring(v)
    count = count + 1
    if b >= a then
      pos = b + 1
    else -- empty match: copy one character and go on
      local nxt = next_char(s, a)
      out[#out + 1] = s:sub(a, nxt - 1)
      pos = nxt
    end
  end
  if pos <= #s then out[#out + 1] = s:sub(pos) end
  return table.concat(out), count
end

--- check(pattern) -> true, or raises the compile error: validates a pattern.
function M.check(pattern)
  if type(pattern) ~= "string" then error("re.check: pattern (string) expected, got " .. type(pattern), 2) end
  pcre_info(pattern)
  return true
end

--- info(pattern) -> number of capture groups, { [name] = index }.
function M.info(pattern)
  return pcre_info(pattern)
end

return M
