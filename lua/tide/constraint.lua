--- tide.constraint: regex and grammar constraints for generation.
--   tide.regex "[0-9]{3}-[0-9]{4}"            -- PCRE2 syntax, regular subset
--   tide.grammar(gbnf_text [, root])          -- llama.cpp's GBNF dialect
--   tide.grammar.file "grammars/json.gbnf"
--   tide.choice { "yes", "no", "maybe" }      -- exactly one of the strings
--   tide.json_schema { type = "object", ... }  -- JSON text or a Lua table
-- Compile errors raise with the core's message (offset, or line and column).
-- Pass one as `constraint =` to generate, stream, best_of_n or
-- self_consistency: every sampled token is then legal, end-of-generation is
-- allowed exactly when the text so far is a complete match, and generation
-- stops by itself when nothing more can follow.
local core = require "tide.core"

local M = {}

local Constraint = {}
Constraint.__index = Constraint
Constraint.__name = "tide.ConstraintObject"
function Constraint.__tostring(self) return string.format("tide.%s(%q)", self.kind, self.source:sub(1, 60)) end

local function wrap(h, kind, source)
  return setmetatable({ h = h, kind = kind, source = source }, Constraint)
end

function M.is_constraint(v) return getmetatable(v) == Constraint end

--- A matcher at the start of the constraint for a model's vocabulary.
function Constraint:matcher(model)
  return core.matcher(self.h, model:vocab_index())
end

function M.regex(pattern)
  if type(pattern) ~= "string" then error("regex: pattern (string) expected, got " .. type(pattern), 2) end
  local h, msg = core.regex_compile(pattern)
  if not h then error(msg, 2) end
  return wrap(h, "regex", pattern)
end

local grammar = {}
setmetatable(grammar, {
  __call = function(_, src, root)
    if type(src) ~= "string" then error("grammar: GBNF text (string) expected, got " .. type(src), 2) end
    local h, msg = core.grammar_compile(src, root)
    if not h then error(msg, 2) end
    return wrap(h, "grammar", src)
  end,
})

--- Compiles a GBNF file; errors name the file.
function grammar.file(path, root)
  local f, err = io.open(path, "rb")
  if not f then error("grammar: " .. err, 2) end
  local src = f:read("a")
  f:close()
  local h, msg = core.grammar_compile(src, root)
  if not h then error(string.format("%s: %s", path, msg), 2) end
  return wrap(h, "grammar", src)
end
M.grammar = grammar

--- A JSON Schema, as JSON text or as a Lua table (encoded with tide.json):
-- the output is a compact JSON instance valid under it (docs/json-schema.md).
-- Keywords the converter cannot honour exactly raise, listing them.
function M.json_schema(schema)
  if type(schema) == "table" then schema = require("tide.json").encode(schema) end
  if type(schema) ~= "string" then error("json_schema: JSON text or a table expected, got " .. type(schema), 2) end
  local h, msg = core.json_schema_compile(schema)
  if not h then error(msg, 2) end
  return wrap(h, "json_schema", schema)
end

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?%{%}|\\/]", "\\%0")) end

--- Exactly one of the given strings (a regex alternation of literals).
function M.choice(list)
  if type(list) ~= "table" or #list == 0 then error("choice: a non-empty list of strings expected", 2) end
  local alts = {}
  for i, s in ipairs(list) do
    if type(s) ~= "string" then error(string.format("choice: item %d is not a string", i), 2) end
    alts[i] = escape(s)
  end
  local h, msg = core.regex_compile("(?:" .. table.concat(alts, "|") .. ")")
  if not h then error(msg, 2) end
  return wrap(h, "choice", table.concat(list, " | "))
end

return M
