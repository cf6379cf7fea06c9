--- sentiment_data.lua -- positive and negative training text for a sentiment
-- steer, cut from tide-small's own corpus and labelled with the AFINN-165
-- lexicon (tide.sentiment). Layer: recipe (plain Lua; no model needed).
-- Usage (from the repository root, after `build/release/tide models/corpus.lua`):
--   build/release/tide recipes/sentiment_data.lua [--corpus build/corpus/train.txt]
--     [--out build/sentiment] [--min 2] [--bytes 300000] [--kjv-share 0.25]
-- Writes OUT/positive.txt and OUT/negative.txt, one sentence per line, and
-- prints what it kept. Deterministic: the same corpus gives the same files.
--
-- Rules (docs/steering.md, "Worked example: a sentiment steer"):
-- - sentences: each corpus paragraph (a line) is cut after . ! or ? (with
--   closing quotes or brackets) followed by a space; a sentence of 5..60
--   lexicon words is a candidate;
-- - positive: AFINN score >= MIN and no word or phrase with a negative
--   value; negative: score <= -MIN and no positive one ("clean" labels:
--   a sentence that mixes both is left out);
-- - the corpus mixes the King James Bible with the Brown corpus, and a
--   steer would happily learn "Bible vs newspaper" if one side had more
--   Bible. So each file takes the same share of sentences from KJV
--   documents (a document that uses "unto" more than 3 times) and the rest
--   from the others: up to BYTES * KJV_SHARE and BYTES * (1 - KJV_SHARE)
--   bytes, in corpus order (the corpus is already shuffled by document).
local sentiment = require "tide.sentiment"

local opt = { corpus = "build/corpus/train.txt", out = "build/sentiment", min = 2, bytes = 300000,
              kjv_share = 0.25 }
do
  local i = 1
  while arg[i] do
    local k, v = arg[i]:match("^%-%-(.+)$"), arg[i + 1]
    k = k and k:gsub("%-", "_")
    if k == "help" then
      print("usage: tide recipes/sentiment_data.lua [--corpus FILE] [--out DIR] [--min N] [--bytes N] " ..
            "[--kjv-share F]")
      return
    elseif k == "corpus" or k == "out" then opt[k] = v
    elseif (k == "min" or k == "bytes" or k == "kjv_share") and tonumber(v) then opt[k] = tonumber(v)
    else
      io.stderr:write("sentiment_data: bad option '", tostring(arg[i]), "' (--help)\n")
      os.exit(2)
    end
    i = i + 2
  end
end

local f = io.open(opt.corpus, "rb")
if not f then
  io.stderr:write("sentiment_data: cannot open '", opt.corpus, "': build the corpus first with\n",
                  "  build/release/tide models/corpus.lua\n")
  os.exit(1)
end
local text = f:read("a")
f:close()

local lex = sentiment.afinn()
local cap = { kjv = opt.bytes * opt.kjv_share, other = opt.bytes * (1 - opt.kjv_share) }
local side = {}
for _, name in ipairs { "positive", "negative" } do
  side[name] = { lines = {}, bytes = { kjv = 0, other = 0 }, n = { kjv = 0, other = 0 }, sum = 0 }
end

-- The label of a sentence: "positive", "negative" or nil; and its score.
local function label(sent)
  local s, n, hits = lex:score(sent)
  if n < 5 or n > 60 then return nil end
  local pos, neg = false, false
  for _, h in ipairs(hits) do
    if h[2] > 0 then pos = true elseif h[2] < 0 then neg = true end
  end
  if s >= opt.min and not neg then return "positive", s end
  if s <= -opt.min and not pos then return "negative", s end
  return nil
end

local candidates = 0
for doc in text:gmatch("(.-)<|endoftext|>") do
  local src = select(2, doc:gsub("unto ", "")) > 3 and "kjv" or "other"
  for line in doc:gmatch("[^\n]+") do
    for sent in (line .. " "):gmatch("(.-[.!?]+[\"')%]]*)%s+") do
      sent = sent:gsub("^%s+", "")
      local which, s = label(sent)
      if which then
        candidates = candidates + 1
        local sd = side[which]
        if sd.bytes[src] + #sent + 1 <= cap[src] then
          sd.lines[#sd.lines + 1] = sent
          sd.bytes[src] = sd.bytes[src] + #sent + 1
          sd.n[src] = sd.n[src] + 1
          sd.sum = sd.sum + s
        end
      end
    end
  end
end

os.execute("mkdir -p '" .. opt.out:gsub("'", "'\\''") .. "'")
for _, name in ipairs { "positive", "negative" } do
  local sd = side[name]
  local path = opt.out .. "/" .. name .. ".txt"
  local out = assert(io.open(path, "wb"))
  out:write(table.concat(sd.lines, "\n"), "\n")
  out:close()
  local n = sd.n.kjv + sd.n.other
  print(string.format("%-8s %s: %d sentences (%d KJV, %d other), %d bytes, mean AFINN score %+.2f", name, path, n,
                      sd.n.kjv, sd.n.other, sd.bytes.kjv + sd.bytes.other, n > 0 and sd.sum / n or 0))
end
print(string.format("labelled sentences in the corpus: %d (threshold %g, AFINN-165, %d entries)", candidates,
                    opt.min, lex.n))
