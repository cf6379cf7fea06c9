--- tide.recipe: what every recipe in recipes/ shares -- options from the
-- command line and a YAML config, --help, loading the model, building
-- prompts through the chat template, printing tables and --json.
-- Layer: Lua package (used by recipes; see docs/recipes.md).
--
-- A recipe is a file that builds a table R with
--   R.spec  = { name =, summary =, options = { { key, type, default, help }, ... } }
--   R.run(model, opts) -> result table (what --json prints)
--   R.show(result, opts)  prints it for people
-- and ends with `return recipe.main(R, ...)`. Run as a script, main parses
-- the arguments, loads the model, runs and prints, and on an error prints
-- "NAME: message" to stderr and exits with status 1 (2 for bad options).
-- Loaded with recipe.load("NAME"), the file just returns R, so recipes can
-- use each other (best_of_n uses judge) and specs can call R.run.
local tide = require "tide"
local json = require "tide.json"
local chat = require "tide.chat"

local M = {}

--- The marker recipe.load passes to a recipe file to get its table back.
M.MODULE = setmetatable({}, { __name = "tide.recipe.MODULE" })

-- Options every recipe has: { key, type, default, help }.
local COMMON = {
  { "model", "string", nil, "GGUF model file (default: $TIDE_MODEL, else models/tide-small.gguf)" },
  { "config", "string", nil, "YAML file of option values (the option names, with underscores)" },
  { "json", "bool", false, "print the result as one JSON object" },
  { "seed", "int", 7, "random seed (same seed, same output)" },
  { "threads", "int", 2, "kernel threads" },
  { "n_ctx", "int", nil, "positions per session (default: the model's, at most 4096)" },
  { "chat", "string", "auto", "prompt layout: auto (the model's chat template, else plain User:/Assistant:), " ..
                               "template (require the model's), raw (no chat layout), or a built-in name: " ..
                               table.concat(chat.names, ", ") },
  { "help", "bool", false, "show this help" },
}

local TYPES = { string = "string", int = "integer", number = "number", bool = "boolean", table = "table",
                list = "list of strings" }

--- A usage error (exit status 2).
local UsageError = {}
UsageError.__index = UsageError
UsageError.__tostring = function(e) return e.msg end
local function usage_error(fmt, ...)
  error(setmetatable({ msg = string.format(fmt, ...) }, UsageError), 0)
end

local function all_options(spec)
  local list, by = {}, {}
  for _, o in ipairs(spec.options or {}) do list[#list + 1] = o; by[o[1]] = o end
  for _, o in ipairs(COMMON) do
    if not by[o[1]] then list[#list + 1] = o; by[o[1]] = o end
  end
  return list, by
end

--- The --help text of a recipe.
function M.help(spec)
  local lines = { string.format("usage: tide recipes/%s.lua [options]", spec.name), "", spec.summary or "", "",
                  "options (also settable in --config FILE.yaml):" }
  for _, o in ipairs((all_options(spec))) do
    local flag = "--" .. o[1]:gsub("_", "-")
    if o[2] ~= "bool" and o[2] ~= "table" then flag = flag .. " " .. o[2]:upper() end
    if o[2] == "table" then flag = o[1] .. " (config file only)" end
    local def = ""
    if o[3] ~= nil and o[2] ~= "bool" and o[2] ~= "table" then
      def = " [" .. (o[2] == "list" and table.concat(o[3], ",") or tostring(o[3])) .. "]"
    end
    lines[#lines + 1] = string.format("  %-28s %s%s", flag, o[4] or "", def)
  end
  if spec.notes then lines[#lines + 1] = ""; lines[#lines + 1] = spec.notes end
  return table.concat(lines, "\n")
end

-- Converts a command-line string to the option's type.
local function convert(o, v)
  local t = o[2]
  if t == "string" then return v end
  if t == "int" then
    local n = math.tointeger(tonumber(v))
    if not n then usage_error("option --%s: integer expected, got '%s'", o[1]:gsub("_", "-"), v) end
    return n
  end
  if t == "number" then
    local n = tonumber(v)
    if not n then usage_error("option --%s: number expected, got '%s'", o[1]:gsub("_", "-"), v) end
    return n
  end
  if t == "list" then
    local l = {}
    for item in v:gmatch("[^,]+") do l[#l + 1] = item end
    return l
  end
  if t == "bool" then
    if v == "true" or v == "1" or v == "yes" then return true end
    if v == "false" or v == "0" or v == "no" then return false end
    usage_error("option --%s: true or false expected, got '%s'", o[1]:gsub("_", "-"), v)
  end
  usage_error("option --%s can only be set in a config file", o[1]:gsub("_", "-"))
end

-- Checks a config value's type.
local function check_type(o, v, where)
  local t = o[2]
  local ok
  if t == "int" then ok = math.type(v) == "integer"
  elseif t == "number" then ok = type(v) == "number"
  elseif t == "bool" then ok = type(v) == "boolean"
  elseif t == "string" then ok = type(v) == "string"
  elseif t == "list" then
    if type(v) == "string" then return convert(o, v) end
    ok = type(v) == "table"
  else ok = type(v) == "table" end
  if not ok then usage_error("%s: option '%s': %s expected, got %s", where, o[1], TYPES[t], type(v)) end
  return v
end

--- parse(spec, argv) -> opts: defaults, then the config file, then the
-- command line. Raises a usage error on unknown or malformed options.
function M.parse(spec, argv)
  local list, by = all_options(spec)
  local cli, i = {}, 1
  while i <= #argv do
    local a = argv[i]
    local key, val = a:match("^%-%-([%w_-]+)=(.*)$")
    if not key then key = a:match("^%-%-([%w_-]+)$") end
    if a == "-h" then key = "help" end
    if not key then usage_error("unexpected argument '%s' (options start with --; see --help)", a) end
    key = key:gsub("-", "_")
    local o = by[key]
    if not o then usage_error("unknown option '--%s' (see --help)", key:gsub("_", "-")) end
    if val == nil then
      if o[2] == "bool" then
        val = "true"
      else
        i = i + 1
        val = argv[i]
        if val == nil then usage_error("option --%s needs a value", key:gsub("_", "-")) end
      end
    end
    cli[key] = convert(o, val)
    i = i + 1
  end
  local opts = {}
  for _, o in ipairs(list) do
    local d = o[3]
    if type(d) == "table" then d = table.move(d, 1, #d, 1, {}) end
    opts[o[1]] = d
  end
  if cli.config then
    local ok, cfg = pcall(tide.yaml.load_file, cli.config)
    if not ok then error(cfg, 0) end
    if cfg ~= nil and type(cfg) ~= "table" then usage_error("%s: a mapping of option values expected", cli.config) end
    for k, v in pairs(cfg or {}) do
      local o = by[k]
      if not o then usage_error("%s: unknown option '%s' (see --help)", cli.config, tostring(k)) end
      if o[1] == "config" then usage_error("%s: a config file cannot name another config file", cli.config) end
      opts[k] = check_type(o, v, cli.config)
    end
  end
  for k, v in pairs(cli) do opts[k] = v end
  return opts
end

--- The model named by opts (opts.model, $TIDE_MODEL or the bundled model).
function M.load_model(opts)
  local path = opts.model or os.getenv("TIDE_MODEL") or "models/tide-small.gguf"
  local f = io.open(path, "rb")
  if not f then
    error(string.format("cannot open model '%s' (give one with --model PATH)", path), 0)
  end
  f:close()
  return tide.load(path, { threads = opts.threads, n_ctx = opts.n_ctx })
end

--- Loads a recipe of this directory as a module: its table R.
function M.load(name)
  local src = debug.getinfo(2, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or nil
  local path = (dir or "recipes") .. "/" .. name .. ".lua"
  local chunk = loadfile(path)
  if not chunk then
    local err
    chunk, err = loadfile("recipes/" .. name .. ".lua")
    if not chunk then error(err, 2) end
  end
  return chunk(M.MODULE)
end

--- main(R, ...): run as a script, or return R when loaded as a module.
function M.main(R, ...)
  if select(1, ...) == M.MODULE then return R end
  local argv = table.pack(...)
  local name = R.spec.name
  local ok, err = xpcall(function()
    local opts = M.parse(R.spec, argv)
    if opts.help then print(M.help(R.spec)); return end
    if R.check then R.check(opts) end
    local model <close> = M.load_model(opts)
    local result = R.run(model, opts)
    if opts.json then
      print(json.encode(result))
    else
      R.show(result, opts)
    end
  end, function(e)
    if getmetatable(e) == UsageError or type(e) ~= "string" or os.getenv("TIDE_TRACE") == nil then return e end
    return debug.traceback(e, 2)
  end)
  if not ok then
    -- a message for people: no "file.lua:12:" position unless $TIDE_TRACE
    if type(err) == "string" and not os.getenv("TIDE_TRACE") then err = err:gsub("^[^\n]-%.lua:%d+: ", "") end
    io.stdout:flush()
    io.stderr:write(name, ": ", tostring(err), "\n")
    os.exit(getmetatable(err) == UsageError and 2 or 1)
  end
  return nil
end

-- ---------------------------------------------------------------- prompts

--- prompt(model, opts, messages [, raw_text]) -> text to feed, layout name.
-- With opts.chat == "raw" the raw text (default: the contents joined by
-- blank lines) is used as is; otherwise the messages go through the chat
-- template (tide.chat). Feed it with recipe.feed, which parses special
-- tokens.
function M.prompt(model, opts, msgs, raw)
  if opts.chat == "raw" then
    if raw then return raw, "raw" end
    local parts = {}
    for _, m in ipairs(msgs) do parts[#parts + 1] = m.content end
    return table.concat(parts, "\n\n"), "raw"
  end
  return chat.apply(model, msgs, { template = opts.chat })
end

--- Feeds prompt text to a session (special tokens parsed, BOS on the first
-- feed per the model). Raises a clear error when it does not fit n_ctx.
function M.feed(session, text, room)
  local model = session.model
  local tok_opts = { special = true }
  if session.pos > 0 then tok_opts.bos = false end
  local ids = model:tokenize(text, tok_opts)
  local need = session.n_pre + session.pos + #ids + (room or 0)
  if need > model.n_ctx then
    error(string.format("prompt of %d tokens plus %d to generate does not fit the context (n_ctx %d): " ..
                        "shorten it, lower max_tokens or raise --n-ctx", session.pos + #ids, room or 0, model.n_ctx), 0)
  end
  session:feed(ids)
  return ids
end

--- "" when the tokenizer puts a space before text of its own (SentencePiece's
-- dummy prefix: "A" is read as " A"), else " ": prefix choices and appended
-- text with it so "Answer:" + lead .. "A" reads "Answer: A" on every model.
function M.lead(model)
  local ids = model:tokenize("A", { bos = false })
  return (ids[1] and model:piece(ids[1]):sub(1, 1) == " ") and "" or " "
end

--- Text appended to a session (a continuation, not a new prompt): the
-- space before it is left to the tokenizer when it adds one itself.
function M.append(session, text)
  if M.lead(session.model) == "" then text = text:gsub("^ ", "") end
  return M.feed(session, text)
end

--- A sampler spec from opts.temperature/top_k/top_p/min_p (greedy when
-- the temperature is 0).
function M.sampler(opts)
  if (opts.temperature or 0) <= 0 then return tide.sampler "greedy" end
  local t = { temperature = opts.temperature }
  if opts.top_k and opts.top_k > 0 then t.top_k = opts.top_k end
  if opts.top_p and opts.top_p < 1 then t.top_p = opts.top_p end
  if opts.min_p and opts.min_p > 0 then t.min_p = opts.min_p end
  return tide.sampler(t)
end

-- ---------------------------------------------------------------- printing

--- One line of text for a table cell: control characters shown as
-- visible escapes, cut to width (with an ellipsis).
function M.clip(text, width)
  text = tostring(text):gsub("\n", "\\n"):gsub("[%c]", " ")
  if not width then return text end
  local n = utf8.len(text)
  if n and n > width then
    return text:sub(1, utf8.offset(text, width) - 1) .. "…"
  elseif not n and #text > width then -- not UTF-8: cut bytes
    return text:sub(1, width - 1) .. "…"
  end
  return text
end

--- A number for a table: fixed decimals, -inf shown as "-inf".
function M.num(x, decimals)
  if x == nil then return "" end
  if x == -math.huge then return "-inf" end
  if x == math.huge then return "inf" end
  if math.type(x) == "integer" then return tostring(x) end
  return string.format("%." .. (decimals or 3) .. "f", x)
end

--- Prints rows (arrays of cells) under headers, columns aligned; numeric
-- columns right-aligned.
function M.table(headers, rows, out)
  out = out or io.stdout
  local w, right = {}, {}
  local function width(s) return utf8.len(s) or #s end
  for j, h in ipairs(headers) do w[j] = width(h); right[j] = true end
  for _, r in ipairs(rows) do
    for j = 1, #headers do
      local c = tostring(r[j] == nil and "" or r[j])
      r[j] = c
      if width(c) > w[j] then w[j] = width(c) end
      if c ~= "" and not c:match("^[-+]?[%d.]+%%?$") and c ~= "-inf" then right[j] = false end
    end
  end
  local function line(cells)
    local parts = {}
    for j, c in ipairs(cells) do
      local pad = string.rep(" ", w[j] - width(c))
      parts[j] = right[j] and pad .. c or (j < #cells and c .. pad or c)
    end
    out:write(table.concat(parts, "  "), "\n")
  end
  line(headers)
  local rule = {}
  for j = 1, #headers do rule[j] = string.rep("-", w[j]) end
  out:write(table.concat(rule, "  "), "\n")
  for _, r in ipairs(rows) do line(r) end
end

--- Prints "key: value" lines, aligned.
function M.fields(pairs_list, out)
  out = out or io.stdout
  local w = 0
  for _, kv in ipairs(pairs_list) do w = math.max(w, #kv[1]) end
  for _, kv in ipairs(pairs_list) do
    out:write(string.format("%-" .. (w + 1) .. "s %s\n", kv[1] .. ":", tostring(kv[2])))
  end
end

--- Distinct-n: unique n-grams / all n-grams over a list of token arrays
-- (Li et al. 2016); nil when there is no n-gram at all.
function M.distinct_n(seqs, n)
  local seen, uniq, total = {}, 0, 0
  for _, toks in ipairs(seqs) do
    for i = 1, #toks - n + 1 do
      local key = table.concat(toks, ",", i, i + n - 1)
      total = total + 1
      if not seen[key] then seen[key] = true; uniq = uniq + 1 end
    end
  end
  if total == 0 then return nil end
  return uniq / total
end

return M
