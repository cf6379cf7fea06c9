--- tide.repl: how the tide REPL shows values (a pretty printer).
-- `repl.format(value [, opts])` returns a string; `repl.show(value [, opts])`
-- prints one; `repl.format_results(t [, opts])` formats the packed results
-- of one REPL line (`t.n` values), which is what the REPL calls.
-- Tables are printed nested with sorted keys, cycles marked and limits on
-- depth and width; tide.Logits views as a ranked table of their best
-- tokens; the two arrays of `logits:topk(k)` as one table. See docs/repl.md.
-- Layer: Lua package (display only; the numbers come from tide.core).
local repl = {}

local DEFAULTS = {
  depth = 4,     -- nesting shown before a table prints as {...}
  items = 50,    -- entries shown per table (and rows of a topk pair)
  budget = 1000, -- entries shown in all, so shared subtables cannot explode
  width = 80,    -- a table goes on one line if it fits in this many columns
  string = 120,  -- bytes of a string shown inside a table
  rows = 10,     -- rows shown of a logits view
  bar = 24,      -- columns of a probability bar at p = 1
  model = false, -- the model whose pieces label token ids
  scope = false, -- a table (the REPL passes _G) searched for models and sessions
}

local function options(opts, level)
  local st = {}
  for k, v in pairs(DEFAULTS) do st[k] = v end
  for k, v in pairs(opts or {}) do
    if DEFAULTS[k] == nil then
      error(string.format("repl.format: unknown option '%s'", tostring(k)), level + 1)
    end
    st[k] = v
  end
  return st
end

-- ---------------------------------------------------------------- strings

local ESCAPES = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n", ["\t"] = "\\t",
                  ["\r"] = "\\r", ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\v"] = "\\v" }

--- A Lua string literal for s: printable ASCII and valid UTF-8 as is,
-- the usual escapes, other bytes as \xHH. At most max bytes of s are shown
-- (cut on a character boundary), followed by a count of the rest.
local function quote(s, max)
  local out, i, n = {}, 1, #s
  local stop = max and math.min(n, max) or n
  while i <= stop do
    local b = s:byte(i)
    local len = b < 0x80 and 1 or b >= 0xF0 and 4 or b >= 0xE0 and 3 or b >= 0xC2 and 2 or 0
    local ch = s:sub(i, i + math.max(len, 1) - 1)
    if len == 1 then
      out[#out + 1] = ESCAPES[ch] or ((b < 32 or b == 127) and string.format("\\x%02X", b) or ch)
    elseif len > 1 and i + len - 1 <= stop and utf8.len(ch) == 1 then
      out[#out + 1] = ch
    else
      len = 1
      out[#out + 1] = string.format("\\x%02X", b)
    end
    i = i + len
  end
  local q = '"' .. table.concat(out) .. '"'
  if i <= n then q = q .. string.format("...(+%d bytes)", n - i + 1) end
  return q
end
repl.quote = quote

--- Display columns of s: one per UTF-8 character.
local function columns(s)
  return utf8.len(s) or #s
end

local function pad(s, w, right)
  local gap = string.rep(" ", w - columns(s))
  return right and gap .. s or s .. gap
end

-- ---------------------------------------------------------------- tables

local RESERVED = {}
for w in ([[and break do else elseif end false for function goto if in local nil not
            or repeat return then true until while]]):gmatch("%a+") do RESERVED[w] = true end

local function format_key(k)
  if type(k) == "string" then
    if k:match("^[%a_][%w_]*$") and not RESERVED[k] then return k end
    return "[" .. quote(k, 40) .. "]"
  end
  if type(k) == "number" then return "[" .. tostring(k) .. "]" end
  return "[" .. tostring(k) .. "]"
end

local RANK = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    local ra, rb = RANK[ta] or 4, RANK[tb] or 4
    if ra ~= rb then return ra < rb end
    return ta < tb
  end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return not a and b end
  return tostring(a) < tostring(b)
end

--- Keys of t in display order: the sequence 1..n first, then the rest
-- sorted (numbers, strings, booleans, others by tostring). Cached per call.
local function ordered(t, st)
  local keys = st.keys[t]
  if keys then return keys, st.nseq[t] end
  keys = {}
  local n = 0
  while rawget(t, n + 1) ~= nil do
    n = n + 1
    keys[n] = n
  end
  local rest = {}
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then rest[#rest + 1] = k end
  end
  table.sort(rest, key_less)
  table.move(rest, 1, #rest, n + 1, keys)
  st.keys[t], st.nseq[t] = keys, n
  return keys, n
end

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  return ok and tostring(s) or "<__tostring failed: " .. tostring(s) .. ">"
end

local function plain_table(v)
  return type(v) == "table" and not has_tostring(v)
end

--- First pass: labels the tables that a shown entry leads back to.
local function find_cycles(t, st, depth, path)
  if path[t] then
    if not st.label[t] then
      st.nlabel = st.nlabel + 1
      st.label[t] = st.nlabel
    end
    return
  end
  if depth > st.depth then return end
  path[t] = true
  local keys = ordered(t, st)
  for i = 1, math.min(#keys, st.items) do
    local v = rawget(t, keys[i])
    if plain_table(v) then find_cycles(v, st, depth + 1, path) end
  end
  path[t] = nil
end

local format_value

--- A table at nesting depth, starting at column lead of a line indented
-- by indent: on one line if it fits in st.width, else one entry a line.
local function format_table(t, st, indent, depth, lead)
  if st.path[t] then return "<cycle " .. (st.label[t] or "?") .. ">" end
  local keys, nseq = ordered(t, st)
  local label = st.label[t] and ("<" .. st.label[t] .. ">") or ""
  if #keys == 0 then return label .. "{}" end
  if depth > st.depth or st.budget <= 0 then return label .. "{...}" end
  st.path[t] = true
  local parts, inner = {}, indent .. "  "
  local shown = math.min(#keys, st.items, st.budget)
  st.budget = st.budget - shown
  for i = 1, shown do
    local k = keys[i]
    local prefix = i <= nseq and "" or format_key(k) .. " = "
    parts[i] = prefix .. format_value(rawget(t, k), st, inner, depth + 1, #inner + columns(prefix))
  end
  if #keys > shown then parts[#parts + 1] = string.format("...(+%d more)", #keys - shown) end
  st.path[t] = nil
  local line = label .. "{ " .. table.concat(parts, ", ") .. " }"
  if not line:find("\n", 1, true) and lead + columns(line) <= st.width then return line end
  return label .. "{\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" .. indent .. "}"
end

local function is_logits(v)
  if type(v) ~= "userdata" then return false end
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__name") == "tide.Logits"
end

function format_value(v, st, indent, depth, lead)
  local tv = type(v)
  if tv == "string" then return quote(v, depth > 1 and st.string or nil) end
  if tv == "table" and not has_tostring(v) then return format_table(v, st, indent, depth, lead) end
  if depth == 1 and is_logits(v) then return repl.format_logits(v, st) end
  return safe_tostring(v)
end

local function state(opts, level)
  local st = options(opts, level + 1)
  st.keys, st.nseq, st.label, st.path, st.nlabel = {}, {}, {}, {}, 0
  return st
end

local function format_with(v, st)
  if plain_table(v) then find_cycles(v, st, 1, {}) end
  return format_value(v, st, "", 1, 0)
end

-- ---------------------------------------------------------------- models

local function class(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__name") or nil
end

--- The open models that label token ids: opts.model, then the models and
-- sessions' models in opts.scope (`model` first, then by name).
local function candidates(st)
  local list, seen = {}, {}
  local function add(m)
    if m and not seen[m] and class(m) == "tide.ModelObject" and rawget(m, "h") then
      seen[m] = true
      list[#list + 1] = m
    end
  end
  if st.model then add(st.model) end
  if type(st.scope) == "table" then
    local names = {}
    for k, v in next, st.scope do
      local c = type(k) == "string" and class(v)
      if c == "tide.ModelObject" or c == "tide.Session" then names[#names + 1] = k end
    end
    table.sort(names, function(a, b)
      if (a == "model") ~= (b == "model") then return a == "model" end
      return a < b
    end)
    for _, k in ipairs(names) do
      local v = rawget(st.scope, k)
      add(class(v) == "tide.Session" and rawget(v, "model") or v)
    end
  end
  return list
end

--- The model a logits view came from: the one owning the view's context,
-- else (an owned copy) the first candidate with the same vocabulary size.
local function model_of_view(v, st)
  local ctx = debug.getuservalue(v, 1)
  local list = candidates(st)
  for _, m in ipairs(list) do
    if ctx ~= nil and rawget(m, "ctx") == ctx then return m end
  end
  if st.model and ctx == nil then return st.model end
  for _, m in ipairs(list) do
    if ctx == nil and m.n_vocab == #v then return m end
  end
  return nil
end

local function piece_of(m, id)
  local ok, p = pcall(m.piece, m, id)
  return ok and quote(p, 24) or "?"
end

-- ---------------------------------------------------------------- grids

--- Lines of rows (arrays of cells) under a header; align[j] is "r" for
-- right-aligned columns. Columns are separated by two spaces.
local function grid(header, rows, align)
  local w = {}
  for _, r in ipairs({ header, table.unpack(rows) }) do
    for j, cell in ipairs(r) do w[j] = math.max(w[j] or 0, columns(cell)) end
  end
  local lines = {}
  for i, r in ipairs({ header, table.unpack(rows) }) do
    local cells = {}
    for j, cell in ipairs(r) do
      local last = j == #r and align[j] ~= "r"
      cells[j] = last and cell or pad(cell, w[j], align[j] == "r")
    end
    lines[i] = (table.concat(cells, "  "):gsub("%s+$", ""))
  end
  return lines
end

local EIGHTHS = { "▏", "▎", "▍", "▌", "▋", "▊", "▉" }

--- A bar of block characters, width columns at p = 1, in eighths.
local function bar(p, width)
  local e = math.floor(math.max(0, math.min(1, p)) * width * 8 + 0.5)
  return string.rep("█", e // 8) .. (EIGHTHS[e % 8] or "")
end
repl.bar = bar

local function fmt_prob(p)
  if p >= 0.001 or p == 0 then return string.format("%.4f", p) end
  return string.format("%.2e", p)
end

--- Is an owned view a probability distribution (from :softmax())? Its
-- values are in [0, 1] and sum to 1. Only checked when the top values
-- allow it; then it reads the whole view once.
local function is_distribution(v, vals)
  if debug.getuservalue(v, 1) ~= nil then return false end
  if vals[1] > 1 or vals[#vals] < 0 then return false end
  local sum = 0
  for id = 0, #v - 1 do
    local x = v[id]
    if x < 0 then return false end
    sum = sum + x
  end
  return math.abs(sum - 1) < 1e-3
end

--- A logits view as its st.rows best tokens: rank, token id, piece,
-- logit, probability (softmax over the whole view) and a bar.
function repl.format_logits(v, st)
  local k = math.min(st.rows, #v)
  local ok, ids, vals = pcall(v.topk, v, k)
  if not ok then return safe_tostring(v) .. ": " .. tostring(ids) end
  local m = model_of_view(v, st)
  local probs_only = is_distribution(v, vals)
  local rows = {}
  for i = 1, #ids do
    local p = probs_only and vals[i] or math.exp(v:logprob(ids[i]))
    local r = { tostring(i), tostring(ids[i]) }
    if m then r[#r + 1] = piece_of(m, ids[i]) end
    if not probs_only then r[#r + 1] = string.format("%.4f", vals[i]) end
    r[#r + 1] = fmt_prob(p)
    r[#r + 1] = bar(p, st.bar)
    rows[i] = r
  end
  local header, align = { "#", "id" }, { "r", "r" }
  if m then header[#header + 1], align[#align + 1] = "piece", "l" end
  if not probs_only then header[#header + 1], align[#align + 1] = "logit", "r" end
  header[#header + 1], align[#align + 1] = "prob", "r"
  header[#header + 1], align[#align + 1] = "", "l"
  local title = string.format("%s: top %d %s%s", safe_tostring(v), #ids,
                              probs_only and "probabilities" or "by logit",
                              m and "" or " (no model in scope to show pieces)")
  return title .. "\n" .. table.concat(grid(header, rows, align), "\n")
end

--- Are a and b the two arrays of logits:topk(k)?
local function is_topk_pair(a, b)
  if type(a) ~= "table" or type(b) ~= "table" or getmetatable(a) or getmetatable(b) then
    return false
  end
  local n = #a
  if n == 0 or #b ~= n then return false end
  for i = 1, n do
    if math.type(a[i]) ~= "integer" or a[i] < 0 or math.type(b[i]) ~= "float" then return false end
    if i > 1 and b[i] > b[i - 1] then return false end
  end
  local count = 0
  for _ in next, a do count = count + 1 end
  for _ in next, b do count = count + 1 end
  return count == 2 * n
end

local function format_topk(ids, vals, st)
  local max_id = 0
  for _, id in ipairs(ids) do max_id = math.max(max_id, id) end
  local m
  for _, c in ipairs(candidates(st)) do
    if c.n_vocab > max_id then m = c; break end
  end
  local rows, n = {}, math.min(#ids, st.items)
  for i = 1, n do
    local r = { tostring(i), tostring(ids[i]) }
    if m then r[#r + 1] = piece_of(m, ids[i]) end
    r[#r + 1] = string.format("%.4f", vals[i])
    rows[i] = r
  end
  local header = m and { "#", "id", "piece", "logit" } or { "#", "id", "logit" }
  local align = m and { "r", "r", "l", "r" } or { "r", "r", "r" }
  local lines = grid(header, rows, align)
  table.insert(lines, 1, string.format("topk: %d ids and logits", #ids))
  if #ids > n then lines[#lines + 1] = string.format("...(+%d more)", #ids - n) end
  return table.concat(lines, "\n")
end

-- ---------------------------------------------------------------- API

--- The value as text: strings quoted, tables pretty-printed, logits views
-- as a ranked table. opts: depth, items, budget, width, string, rows, bar,
-- model, scope (see DEFAULTS above).
function repl.format(value, opts)
  return format_with(value, state(opts, 2))
end

--- The values t[1..t.n] (one REPL line's results) as text: the pair
-- returned by logits:topk(k) as one table, others formatted one by one,
-- on one line separated by tabs when each fits on a line, else one below
-- the other.
function repl.format_results(t, opts)
  local n = t.n or #t
  if n == 2 and is_topk_pair(t[1], t[2]) then return format_topk(t[1], t[2], state(opts, 2)) end
  local out, multi = {}, false
  for i = 1, n do
    out[i] = format_with(t[i], state(opts, 2))
    multi = multi or out[i]:find("\n", 1, true) ~= nil
  end
  return table.concat(out, multi and "\n" or "\t")
end

--- Prints repl.format(value, opts).
function repl.show(value, opts)
  io.write(format_with(value, state(opts, 2)), "\n")
end

return repl
