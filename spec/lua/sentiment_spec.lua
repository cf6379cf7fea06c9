-- spec/lua/sentiment_spec.lua -- tide.sentiment, the AFINN-165 lexicon scorer
-- (hand-computed scores; values from recipes/data/afinn-165.tsv).
local sentiment = require "tide.sentiment"

local function tmpfile(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

describe("tide.sentiment", function()
  local afinn = sentiment.afinn()

  it("loads the bundled AFINN-165 list: 3382 entries, phrases of up to 3 words", function()
    assert.equal(3382, afinn.n)
    assert.equal(3, afinn.max_words)
    assert.equal(3, afinn.entries.good)
    assert.equal(-2, afinn.entries["not good"])
  end)

  it("sums the values of the words (AFINN's README examples)", function()
    -- excellent +3; "this", "is", "utterly" are not in the list
    local s, n = afinn:score("This is utterly excellent!")
    assert.same({ 3, 4 }, { s, n })
    -- rainy -1, good +3
    s, n = afinn:score("Rainy day but still in a good mood")
    assert.same({ 2, 8 }, { s, n })
  end)

  it("matches multi-word entries first and does not score their words again", function()
    local s, n, hits = afinn:score("The food was not good.")
    assert.equal(-2, s) -- "not good" -2, not good's +3
    assert.equal(5, n)
    assert.same({ { "not good", -2 } }, hits)
    -- "can't stand" -3, "no fun" -3 (fun alone would be +4)
    assert.equal(-6, (afinn:score("I can't stand it, no fun at all")))
  end)

  it("keeps hyphenated entries whole and splits other hyphenated words", function()
    -- ill-fated -2; good-natured -> good +3, natured 0
    local s, n, hits = afinn:score("an ill-fated, good-natured man")
    assert.equal(1, s)
    assert.equal(5, n)
    assert.same({ { "ill-fated", -2 }, { "good", 3 } }, hits)
  end)

  it("ignores case and punctuation, trims quotes, keeps non-ASCII letters", function()
    assert.same({ "good", "bad", "happy" }, sentiment.words("GOOD!!! Bad... 'happy'"))
    assert.equal(3, (afinn:score("GOOD!!! Bad... 'happy'"))) -- 3 - 3 + 3
    assert.equal(-2, (afinn:score("a naïve plan")))
    local s, n, hits = afinn:score("")
    assert.same({ 0, 0, {} }, { s, n, hits })
  end)

  it("gives comparative = score / words, 0 without words", function()
    assert.equal(1.5, afinn:comparative("good day"))
    assert.equal(0, afinn:comparative("... !"))
  end)

  it("takes the longest phrase first in a lexicon of its own", function()
    local lex = sentiment.new { ["a b"] = 1, a = 10, b = 100, c = -1, ["x y z"] = 7 }
    local s, n, hits = lex:score("a b a c x y z b")
    assert.equal(1 + 10 - 1 + 7 + 100, s)
    assert.equal(8, n)
    assert.same({ { "a b", 1 }, { "a", 10 }, { "c", -1 }, { "x y z", 7 }, { "b", 100 } }, hits)
    assert.has_error(function() sentiment.new { [1] = 2 } end, "sentiment.new: entries must map strings to numbers")
  end)

  it("reads WORD<TAB>SCORE files, skipping comments, and reports a bad line", function()
    local good = tmpfile("# a comment\n\nnice\t2\r\nawful\t-3\n")
    local lex = assert(sentiment.load(good))
    assert.equal(2, lex.n)
    assert.equal(-1, (lex:score("Nice and awful")))
    os.remove(good)
    local bad = tmpfile("# header\nnice\t2\nawful -3\n")
    local none, msg = sentiment.load(bad)
    assert.is_nil(none)
    assert.equal(bad .. ":3: expected WORD<TAB>SCORE", msg)
    os.remove(bad)
    local missing, err = sentiment.load("/nonexistent/lexicon.tsv")
    assert.is_nil(missing)
    assert.truthy(err:find("/nonexistent/lexicon.tsv", 1, true))
  end)
end)

-- The recipes around the scorer: mechanics on the bundled model, not quality.
describe("the sentiment recipes", function()
  local tide = require "tide"
  local recipe = require "tide.recipe"
  local H = require "helper"
  local TIDE = (rawget(_G, "arg") and arg[-1] and arg[-1]:match("tide$")) and arg[-1] or "build/release/tide"

  it("sentiment_data writes clean positive and negative sentences", function()
    local dir = os.tmpname()
    os.remove(dir)
    local corpus = tmpfile("A good and happy day. The cat sat on the mat today. " ..
                           "It was a good and great day but a sad one.\n" ..
                           "Evil and wicked men did this thing. Short.<|endoftext|>I love the happy children " ..
                           "here.<|endoftext|>")
    local p = assert(io.popen(string.format("%s recipes/sentiment_data.lua --corpus %s --out %s", TIDE, corpus, dir)))
    local out = p:read("a")
    assert.is_true(p:close())
    -- +6 (good 3, happy 3); +4 (good 3, great 3, sad -2) but mixed signs; -5 (evil -3, wicked -2); +6 (love 3, happy 3)
    assert.equal("A good and happy day.\nI love the happy children here.\n", H.read(dir .. "/positive.txt"))
    assert.equal("Evil and wicked men did this thing.\n", H.read(dir .. "/negative.txt"))
    assert.truthy(out:find("labelled sentences in the corpus: 3", 1, true))
    os.remove(corpus)
    os.execute("rm -r '" .. dir .. "'")
  end)

  it("sentiment_sweep reports every eps, and its eps = 0 row does not depend on the steer", function()
    local m <close> = tide.load("models/tide-small.gguf")
    local sweep = recipe.load("sentiment_sweep")
    local function run(seed, svg)
      math.randomseed(seed)
      local p1, p2 = {}, {}
      for i = 1, m.n_embd * 2 do p1[i], p2[i] = math.random() - 0.5, math.random() - 0.5 end
      local w <close> = tide.steer.new(m, 2, p1, p2, { eps0 = 1e-3 })
      local path = os.tmpname()
      w:save(path, "test")
      local o = recipe.parse(sweep.spec, { "--steer", path, "--n-prompts", "2", "--seeds", "2", "--max-tokens", "4",
                                           "--multiples", "-1,0,1", "--quiet" })
      o.svg = svg
      local res = sweep.run(m, o)
      os.remove(path)
      return res
    end
    local svg = os.tmpname()
    local a, b = run(1, svg), run(2)
    assert.equal(3, #a.rows)
    for i, r in ipairs(a.rows) do
      assert.equal(4, r.n) -- 2 prompts x 2 seeds
      assert.is_near(({ -1, 0, 1 })[i] * 2.5e-3, r.eps, 1e-9) -- eps0 is stored as a float
      assert.is_true(r.ppl > 1 and r.ppl < math.huge)
    end
    assert.same({ a.rows[2].score, a.rows[2].ppl }, { b.rows[2].score, b.rows[2].ppl })
    assert.are_not.equal(a.rows[2].ppl, a.rows[3].ppl) -- a steered row is sampled under the steer
    local text = H.read(svg)
    assert.truthy(text:find("<svg", 1, true) and select(2, text:gsub("<polyline", "")) == 2)
    os.remove(svg)
  end)
end)
