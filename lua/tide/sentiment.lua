--- tide.sentiment: a word-list (lexicon) sentiment score for text, with the
-- AFINN-165 list in recipes/data/afinn-165.tsv (ODbL v1.0; see
-- recipes/data/README.md). Layer: Lua package, plain Lua (no tide.core).
--
-- The score of a text is the sum of the lexicon values of its words
-- (AFINN's own method and the `score` of npm sentiment); `comparative` is
-- score / words, as npm sentiment reports it. Words: the text lower-cased
-- (ASCII), cut into maximal runs of letters, digits, apostrophes, hyphens
-- and non-ASCII bytes, with apostrophes and hyphens trimmed from both ends.
-- A hyphenated word that is not in the lexicon counts as its parts
-- ("ill-fated" is an entry; "good-natured" is "good" + "natured").
-- Multi-word entries ("not good", "does not work") match consecutive
-- words, longest first; their words are then not scored again. Unlike npm
-- sentiment there is no negation rule (it flips a word's sign after
-- "not", "don't", ...): the score is the lexicon's, nothing more.
-- See docs/steering.md ("Worked example: a sentiment steer").
local M = {}

local Lexicon = {}
Lexicon.__index = Lexicon
Lexicon.__name = "tide.Lexicon"
M.Lexicon = Lexicon

-- recipes/data/afinn-165.tsv beside this file's lua/ directory, else
-- relative to the working directory (a repository checkout).
local function default_path()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/lua/tide/[^/]*$")
  local rel = "recipes/data/afinn-165.tsv"
  if dir then
    local path = dir .. "/" .. rel
    local f = io.open(path, "rb")
    if f then f:close() return path end
  end
  return rel
end

--- Words of text as the scorer sees them (an array of strings).
function M.words(text)
  local out = {}
  for w in text:lower():gmatch("[%w'%-\128-\255]+") do
    w = w:gsub("^['%-]+", ""):gsub("['%-]+$", "")
    if w ~= "" then out[#out + 1] = w end
  end
  return out
end

--- Makes a lexicon from a table { [word or phrase] = score }.
function M.new(entries)
  local lex = setmetatable({ entries = {}, max_words = 1, n = 0 }, Lexicon)
  for k, v in pairs(entries) do
    if type(k) ~= "string" or type(v) ~= "number" then
      error("sentiment.new: entries must map strings to numbers", 2)
    end
    lex.entries[k] = v
    lex.n = lex.n + 1
    local nw = select(2, k:gsub(" ", " ")) + 1
    if nw > lex.max_words then lex.max_words = nw end
  end
  return lex
end

--- Reads a lexicon file: WORD<TAB>SCORE lines, # comments and blank lines
-- skipped (default: the bundled AFINN-165). Returns nil, message when the
-- file cannot be read or a line is malformed, as io.open does.
function M.load(path)
  path = path or default_path()
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local entries, ln = {}, 0
  for line in f:lines() do
    ln = ln + 1
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local w, s = line:match("^([^\t]+)\t(%-?%d+%.?%d*)\r?$")
      if not w then
        f:close()
        return nil, string.format("%s:%d: expected WORD<TAB>SCORE", path, ln)
      end
      entries[w] = tonumber(s)
    end
  end
  f:close()
  return M.new(entries)
end

local cached
--- The bundled AFINN-165 lexicon, loaded once (raises if it is missing).
function M.afinn()
  if not cached then cached = assert(M.load()) end
  return cached
end

--- Scores text: returns score, n_words, hits (an array of { word, value }
-- in text order; phrases as one hit).
function Lexicon:score(text)
  local e, maxw = self.entries, self.max_words
  local raw, words = M.words(text), {}
  for _, w in ipairs(raw) do
    if e[w] or not w:find("-", 1, true) then
      words[#words + 1] = w
    else
      for part in w:gmatch("[^%-]+") do
        part = part:gsub("^'+", ""):gsub("'+$", "")
        if part ~= "" then words[#words + 1] = part end
      end
    end
  end
  local score, hits, i, n = 0, {}, 1, #words
  while i <= n do
    local took = 1
    for k = math.min(maxw, n - i + 1), 1, -1 do
      local key = k == 1 and words[i] or table.concat(words, " ", i, i + k - 1)
      local v = e[key]
      if v then
        score = score + v
        hits[#hits + 1] = { key, v }
        took = k
        break
      end
    end
    i = i + took
  end
  return score, n, hits
end

--- score / words (0 for a text without words), npm sentiment's
-- "comparative".
function Lexicon:comparative(text)
  local s, n = self:score(text)
  return n > 0 and s / n or 0
end

return M
