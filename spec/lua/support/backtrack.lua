--- spec/lua/support/backtrack.lua: an independent GBNF recognizer for the specs.
-- Layer: tests. It shares nothing with core/grammar*.c: it parses the GBNF
-- text itself (llama.cpp's dialect as tide reads it: rules `name ::= ...`,
-- alternation, groups, literals and classes over code points with \x \u \U
-- escapes, `.`, `* + ? {m} {m,} {m,n}`, `#` comments, continuation lines that
-- start with `|`) and decides membership by exhaustive backtracking: every
-- node maps a start position to the set of positions where it can end. Rule
-- calls are memoised per (rule, position) and the whole computation is
-- repeated until no set grows (the least fixpoint), which makes left
-- recursion and nullable cycles terminate with the right answer.
--   local B = require "lua.support.backtrack"
--   local g = B.parse(gbnf_text)          -- raises on text it cannot read
--   B.accepts(g, "1+2")                   -- the whole string is in the language
--   B.prefix(g, "1+")                     -- some extension of it is
-- Input is UTF-8; a string that is not valid UTF-8 (overlong forms,
-- surrogates, stray continuation bytes) is never accepted, as classes and
-- `.` match code points. `prefix` lets the input end inside a character.
local M = {}

local INF = math.huge -- a repetition without an upper bound
local PFX = -1        -- "the input ran out here" (prefix mode)

-- ------------------------------------------------------------------ UTF-8

--- Code points of s; the second value is true when s ends inside a character
-- (the cut-off tail is dropped). nil when s is not valid UTF-8.
local function decode(s)
  local cps, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    local len, cp, lo
    if c < 0x80 then len, cp, lo = 1, c, 0
    elseif c >= 0xC2 and c < 0xE0 then len, cp, lo = 2, c & 0x1F, 0x80
    elseif c >= 0xE0 and c < 0xF0 then len, cp, lo = 3, c & 0x0F, 0x800
    elseif c >= 0xF0 and c < 0xF5 then len, cp, lo = 4, c & 0x07, 0x10000
    else return nil end
    for k = 1, len - 1 do
      local d = s:byte(i + k)
      if not d then return cps, true end
      if d & 0xC0 ~= 0x80 then return nil end
      cp = cp << 6 | (d & 0x3F)
      -- the first continuation byte rules out overlong forms, surrogates
      -- and code points past U+10FFFF even when the character is cut off
      if k == 1 and ((c == 0xE0 and d < 0xA0) or (c == 0xED and d >= 0xA0)
                     or (c == 0xF0 and d < 0x90) or (c == 0xF4 and d >= 0x90)) then
        return nil
      end
    end
    if cp < lo or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil end
    cps[#cps + 1] = cp
    i = i + len
  end
  return cps, false
end
M.decode = decode

-- ------------------------------------------------------------------ parser

local function perr(p, msg) error(string.format("backtrack: offset %d: %s", p.i - 1, msg), 0) end

local function skip(p, newlines)
  local s = p.s
  while true do
    local c = s:sub(p.i, p.i)
    if c == " " or c == "\t" or ((c == "\n" or c == "\r") and newlines) then
      p.i = p.i + 1
    elseif c == "#" then
      local e = s:find("[\r\n]", p.i) or #s + 1
      p.i = e
    else
      return c
    end
  end
end

local ESC = { n = 10, r = 13, t = 9, ["\\"] = 92, ['"'] = 34, ["["] = 91, ["]"] = 93 }
local NHEX = { x = 2, u = 4, U = 8 }

--- One code point of a literal or class (an escape or a UTF-8 character).
local function char(p)
  local s = p.s
  local c = s:sub(p.i, p.i)
  if c == "" then perr(p, "unexpected end") end
  if c == "\\" then
    local e = s:sub(p.i + 1, p.i + 1)
    if ESC[e] then p.i = p.i + 2; return ESC[e] end
    local nh = NHEX[e]
    if not nh then perr(p, "unknown escape") end
    local hex = s:sub(p.i + 2, p.i + 1 + nh)
    if #hex ~= nh or not hex:match("^%x+$") then perr(p, "bad hex escape") end
    p.i = p.i + 2 + nh
    return tonumber(hex, 16)
  end
  local b = c:byte()
  local len = b < 0x80 and 1 or b < 0xE0 and 2 or b < 0xF0 and 3 or 4
  local cps = decode(s:sub(p.i, p.i + len - 1))
  if not cps or #cps ~= 1 then perr(p, "bad UTF-8") end
  p.i = p.i + len
  return cps[1]
end

local parse_alts

local function parse_int(p)
  local d = p.s:match("^%d+", p.i)
  if not d then perr(p, "number expected") end
  p.i = p.i + #d
  return math.tointeger(tonumber(d))
end

local function parse_seq(p, nested)
  local items = {}
  while true do
    local c = p.s:sub(p.i, p.i)
    if c == '"' then
      p.i = p.i + 1
      local cps = {}
      while p.s:sub(p.i, p.i) ~= '"' do cps[#cps + 1] = char(p) end
      p.i = p.i + 1
      items[#items + 1] = { t = "lit", cps = cps }
    elseif c == "[" then
      p.i = p.i + 1
      local node = { t = "cls", ranges = {}, neg = false }
      if p.s:sub(p.i, p.i) == "^" then node.neg = true; p.i = p.i + 1 end
      while p.s:sub(p.i, p.i) ~= "]" do
        local lo = char(p)
        local hi = lo
        if p.s:sub(p.i, p.i) == "-" and p.s:sub(p.i + 1, p.i + 1) ~= "]" then
          p.i = p.i + 1
          hi = char(p)
        end
        node.ranges[#node.ranges + 1] = { lo, hi }
      end
      p.i = p.i + 1
      items[#items + 1] = node
    elseif c:match("^[%w_%-]$") then
      local name = p.s:match("^[%w_%-]+", p.i)
      p.i = p.i + #name
      items[#items + 1] = { t = "ref", name = name }
      p.refs[#p.refs + 1] = name
    elseif c == "(" then
      p.i = p.i + 1
      skip(p, true)
      local node = parse_alts(p, true)
      if p.s:sub(p.i, p.i) ~= ")" then perr(p, "')' expected") end
      p.i = p.i + 1
      items[#items + 1] = node
    elseif c == "." then
      p.i = p.i + 1
      items[#items + 1] = { t = "any" }
    elseif c == "*" or c == "+" or c == "?" or c == "{" then
      if #items == 0 then perr(p, "nothing to repeat") end
      p.i = p.i + 1
      local lo, hi = 0, INF
      if c == "+" then lo = 1
      elseif c == "?" then hi = 1
      elseif c == "{" then
        skip(p, nested)
        lo = parse_int(p)
        skip(p, nested)
        if p.s:sub(p.i, p.i) == "}" then hi = lo
        else
          if p.s:sub(p.i, p.i) ~= "," then perr(p, "',' expected") end
          p.i = p.i + 1
          skip(p, nested)
          if p.s:sub(p.i, p.i):match("%d") then hi = parse_int(p) end
          skip(p, nested)
          if p.s:sub(p.i, p.i) ~= "}" then perr(p, "'}' expected") end
        end
        p.i = p.i + 1
      end
      items[#items] = { t = "rep", item = items[#items], lo = lo, hi = hi }
    else
      break
    end
    skip(p, nested)
  end
  return { t = "seq", items = items }
end

function parse_alts(p, nested)
  local alts = {}
  while true do
    alts[#alts + 1] = parse_seq(p, nested)
    if not nested and p.s:sub(p.i, p.i) ~= "|" then
      local save = p.i
      if skip(p, true) ~= "|" then p.i = save; break end
    end
    if p.s:sub(p.i, p.i) ~= "|" then break end
    p.i = p.i + 1
    skip(p, true)
  end
  return { t = "alt", alts = alts }
end

--- Parses GBNF text into { rules = { name = node }, root = name }.
function M.parse(text, root)
  local p = { s = text, i = 1, refs = {} }
  local rules = {}
  skip(p, true)
  while p.i <= #text do
    local name = text:match("^[%w_%-]+", p.i)
    if not name then perr(p, "rule name expected") end
    p.i = p.i + #name
    skip(p, false)
    if text:sub(p.i, p.i + 2) ~= "::=" then perr(p, "'::=' expected") end
    p.i = p.i + 3
    skip(p, true)
    if rules[name] then perr(p, "rule defined twice: " .. name) end
    rules[name] = parse_alts(p, false)
    local c = text:sub(p.i, p.i)
    if c ~= "" and c ~= "\n" and c ~= "\r" then perr(p, "line break expected") end
    skip(p, true)
  end
  for _, r in ipairs(p.refs) do
    if not rules[r] then error("backtrack: undefined rule " .. r, 0) end
  end
  root = root or "root"
  if not rules[root] then error("backtrack: no rule " .. root, 0) end
  return { rules = rules, root = root }
end

-- ------------------------------------------------------------------ matcher

local function in_class(node, cp)
  local hit = false
  for _, r in ipairs(node.ranges) do
    if cp >= r[1] and cp <= r[2] then hit = true; break end
  end
  return hit ~= node.neg
end

-- ends(node, i) -> set { [j] = true } of positions where node can end when
-- it starts at i (1-based code point positions, n + 1 = the end; PFX: ran
-- out of input in prefix mode, after which anything may follow).
local function run(g, cps, prefix)
  local n = #cps
  local memo = {} -- memo[rule][i] = { set = {}, pass = k }
  for name in pairs(g.rules) do memo[name] = {} end
  local pass = 0
  local changed
  local ends

  local function term(ok_fn, i)
    if i == PFX then return { [PFX] = true } end
    if i > n then
      if prefix then return { [PFX] = true } end
      return {}
    end
    if ok_fn(cps[i]) then return { [i + 1] = true } end
    return {}
  end

  local function union_from(set, node)
    local out = {}
    for j in pairs(set) do
      for k in pairs(ends(node, j)) do out[k] = true end
    end
    return out
  end

  function ends(node, i)
    if i == PFX then return { [PFX] = true } end
    local t = node.t
    if t == "lit" then
      local j = i
      for _, cp in ipairs(node.cps) do
        if j > n then return prefix and { [PFX] = true } or {} end
        if cps[j] ~= cp then return {} end
        j = j + 1
      end
      return { [j] = true }
    elseif t == "cls" then
      return term(function(cp) return in_class(node, cp) end, i)
    elseif t == "any" then
      return term(function() return true end, i)
    elseif t == "seq" then
      local cur = { [i] = true }
      for _, it in ipairs(node.items) do
        cur = union_from(cur, it)
        if next(cur) == nil then break end
      end
      return cur
    elseif t == "alt" then
      local out = {}
      for _, a in ipairs(node.alts) do
        for k in pairs(ends(a, i)) do out[k] = true end
      end
      return out
    elseif t == "rep" then
      local out = {}
      local cur = { [i] = true }
      local seen = {} -- positions reached with at least lo copies
      if node.lo == 0 then out[i] = true; seen[i] = true end
      local k = 0
      while k < node.hi do
        k = k + 1
        local nxt = union_from(cur, node.item)
        if k >= node.lo then
          local fresh = {}
          for j in pairs(nxt) do
            if not seen[j] then seen[j] = true; out[j] = true; fresh[j] = true end
          end
          nxt = fresh
        end
        if next(nxt) == nil then break end
        cur = nxt
      end
      return out
    elseif t == "ref" then
      local e = memo[node.name][i]
      if not e then e = { set = {}, pass = 0 }; memo[node.name][i] = e end
      if e.pass ~= pass then
        e.pass = pass
        for k in pairs(ends(g.rules[node.name], i)) do
          if not e.set[k] then e.set[k] = true; changed = true end
        end
      end
      local copy = {} -- callers iterate while the memo may still grow
      for k in pairs(e.set) do copy[k] = true end
      return copy
    end
    error("backtrack: bad node " .. tostring(t))
  end

  local root = { t = "ref", name = g.root }
  local final
  repeat
    pass = pass + 1
    changed = false
    final = ends(root, 1)
  until not changed
  if prefix then return final[n + 1] or final[PFX] or false end
  return final[n + 1] or false
end

--- True when the whole of s is in the grammar's language.
function M.accepts(g, s)
  local cps, partial = decode(s)
  if not cps or partial then return false end
  return run(g, cps, false) and true or false
end

--- True when s can be extended to a string of the language (s may end
-- inside a UTF-8 character; every rule is assumed to derive some string).
function M.prefix(g, s)
  local cps = decode(s)
  if not cps then return false end
  -- a character cut off at the end is dropped: the input "ran out" before it
  local ok = run(g, cps, true)
  return ok and true or false
end

-- ------------------------------------------------------------------ generator

-- Height of each node: the fewest nested rule calls needed to finish it
-- (a fixpoint, so recursive rules get the depth of their base case).
local function heights(g)
  local h = {}
  for name in pairs(g.rules) do h[name] = INF end
  local function of(node)
    local t = node.t
    if t == "lit" or t == "cls" or t == "any" then return 0
    elseif t == "ref" then return h[node.name] + 1
    elseif t == "seq" then
      local m = 0
      for _, it in ipairs(node.items) do m = math.max(m, of(it)) end
      return m
    elseif t == "alt" then
      local m = INF
      for _, a in ipairs(node.alts) do m = math.min(m, of(a)) end
      return m
    elseif t == "rep" then return node.lo == 0 and 0 or of(node.item) end
  end
  local changed = true
  while changed do
    changed = false
    for name, body in pairs(g.rules) do
      local v = of(body)
      if v < h[name] then h[name] = v; changed = true end
    end
  end
  return h, of
end

local SAMPLE_CPS = { 0x41, 0x7A, 0x30, 0x20, 0x0A, 0xE9, 0x3B1, 0x4E2D, 0x1F600, 0x22, 0x5C }

--- A random string of the language (rnd(n) -> 1..n, e.g. math.random):
-- repetitions take at most `extra` copies past their minimum, and past
-- depth `max_depth` every choice goes to the alternative that ends soonest.
-- nil when the root derives nothing.
function M.generate(g, rnd, max_depth, extra)
  max_depth, extra = max_depth or 8, extra or 3
  local _, height = heights(g)
  local out = {}
  local function pick_cp(node)
    if node.t == "any" then return SAMPLE_CPS[rnd(#SAMPLE_CPS)] end
    if not node.neg then
      if #node.ranges == 0 then return nil end
      local r = node.ranges[rnd(#node.ranges)]
      local cp = r[1] + rnd(r[2] - r[1] + 1) - 1
      if cp >= 0xD800 and cp <= 0xDFFF then return nil end
      return cp
    end
    for _ = 1, 20 do
      local cp = SAMPLE_CPS[rnd(#SAMPLE_CPS)]
      if rnd(2) == 1 then cp = rnd(0x2FF) end
      if in_class(node, cp) then return cp end
    end
    return nil
  end
  local function gen(node, depth)
    local t = node.t
    if t == "lit" then
      for _, cp in ipairs(node.cps) do out[#out + 1] = utf8.char(cp) end
      return true
    elseif t == "cls" or t == "any" then
      local cp = pick_cp(node)
      if not cp then return false end
      out[#out + 1] = utf8.char(cp)
      return true
    elseif t == "seq" then
      for _, it in ipairs(node.items) do
        if not gen(it, depth) then return false end
      end
      return true
    elseif t == "alt" then
      local alts = node.alts
      if depth >= max_depth then
        local best, bh = nil, INF
        for _, a in ipairs(alts) do
          local v = height(a)
          if v < bh then best, bh = a, v end
        end
        if not best then return false end
        return gen(best, depth)
      end
      local live = {}
      for _, a in ipairs(alts) do if height(a) < INF then live[#live + 1] = a end end
      if #live == 0 then return false end
      return gen(live[rnd(#live)], depth)
    elseif t == "rep" then
      local hi = math.min(node.hi, node.lo + extra)
      local k = node.lo
      if depth < max_depth and hi > node.lo then k = node.lo + rnd(hi - node.lo + 1) - 1 end
      for _ = 1, k do
        if not gen(node.item, depth) then return false end
      end
      return true
    elseif t == "ref" then
      return gen(g.rules[node.name], depth + 1)
    end
  end
  if not gen({ t = "ref", name = g.root }, 0) then return nil end
  return table.concat(out)
end

return M
