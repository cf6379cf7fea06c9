-- selfie_spec.lua -- tide.selfie: capture a position's hidden state, inject
-- it (own state: the same forward bit for bit; another state: a different
-- one), and SelfIE's interpretation with relevancy scores, on the bundled
-- model (always in the repository).
local tide = require "tide"
local H = require "helper"

local MODEL = "models/tide-small.gguf"

local same_bits = H.same_bits

describe("tide.selfie", function()
  local m
  setup(function() m = tide.load(MODEL) end)
  teardown(function() m:close() end)

  local text = "In the beginning God created the heaven and the earth"

  it("injecting a position's own hidden state reproduces the forward at every layer", function()
    local ids = m:tokenize(text)
    local base
    do
      local s <close> = m:session()
      tide.selfie.feed(s, ids)
      base = s:logits():copy()
    end
    local at = 3
    for layer = 0, m.info.n_layer - 1 do
      local h = tide.selfie.capture(m, ids, layer, at)
      assert.equal(m.n_embd, #h)
      local s <close> = m:session()
      tide.selfie.feed(s, ids, { { layer = layer, at = at, vector = h } })
      assert.is_true(same_bits(base, s:logits()), "layer " .. layer)
      -- the K/V the injected row stored: the next token is unchanged as well
      local s2 <close> = m:session()
      s2:feed(ids)
      s:feed({ 42 })
      s2:feed({ 42 })
      assert.is_true(same_bits(s2:logits():copy(), s:logits()), "next token, layer " .. layer)
    end
  end)

  it("another position's state changes the output; add of zero does not", function()
    local ids = m:tokenize(text)
    local base
    do
      local s <close> = m:session()
      tide.selfie.feed(s, ids)
      base = s:logits():copy()
    end
    local h = tide.selfie.capture(m, ids, 2, 1)
    local s <close> = m:session()
    tide.selfie.feed(s, ids, { { layer = 2, at = 4, vector = h } })
    assert.is_false(same_bits(base, s:logits()))
    local z <close> = m:session()
    tide.selfie.feed(z, ids, { { layer = 2, at = 4, vector = tide.vector(m.n_embd), add = true } })
    assert.is_true(same_bits(base, z:logits()))
  end)

  it("interprets a hidden state with relevancy scores", function()
    local h = tide.selfie.capture(m, "The king of Israel", 3)
    local r = tide.selfie.interpret(m, h, { layer = 3, max_tokens = 8, repeats = 2 })
    assert.equal(8, #r.tokens)
    assert.equal(r.text, m:detokenize(r.tokens))
    for i = 1, #r.tokens do
      assert.is_true(r.p_with[i] > 0 and r.p_with[i] <= 1)
      assert.is_true(math.abs(r.relevancy[i] - (r.p_with[i] - r.p_without[i])) < 1e-12)
    end
    -- greedy generation under the injection: each token was the argmax, so
    -- its teacher-forced probability under the injection is the largest
    assert.is_true(r.p_with[1] >= 1 / m.info.n_vocab)
    -- the same call is deterministic
    local r2 = tide.selfie.interpret(m, h, { layer = 3, max_tokens = 8, repeats = 2 })
    assert.same(r.tokens, r2.tokens)
    -- injecting the placeholder's own embedding changes nothing: relevancy 0
    local ph = m:tokenize("_", { bos = false })[1]
    local e0 = tide.selfie.capture(m, { ph }, 0)
    local r3 = tide.selfie.interpret(m, e0, { layer = 0, max_tokens = 4 })
    for i = 1, #r3.tokens do assert.equal(0, r3.relevancy[i]) end
  end)

  it("rejects bad arguments and leaves the model usable", function()
    local ids = m:tokenize(text)
    local h = tide.selfie.capture(m, ids, 1)
    assert.has_error(function() tide.selfie.capture(m, ids, m.info.n_layer + 1) end)
    assert.has_error(function() tide.selfie.capture(m, ids, 1, #ids + 1) end)
    local s <close> = m:session()
    assert.has_error(function() tide.selfie.feed(s, ids, { { layer = 1, at = #ids + 1, vector = h } }) end)
    assert.has_error(function() tide.selfie.feed(s, ids, { { layer = 1, at = 1, vector = tide.vector(3) } }) end)
    assert.has_error(function() tide.selfie.interpret(m, h, { layer = 1, prompt = "no marker" }) end)
    assert.has_error(function() tide.selfie.interpret(m, h, { layer = 1, bogus = 1 }) end)
    assert.has_error(function() m:context():inject(0, 1, h, "sideways") end)
    -- nothing was left queued
    tide.selfie.feed(s, ids)
    local s2 <close> = m:session()
    s2:feed(ids)
    assert.is_true(same_bits(s2:logits():copy(), s:logits()))
  end)
end)

describe("recipes/selfie.lua", function()
  local TIDE = (rawget(_G, "arg") and arg[-1] and arg[-1]:match("tide$")) and arg[-1] or "build/release/tide"
  it("runs on the bundled model and prints JSON with one entry per layer", function()
    local p = assert(io.popen(TIDE .. " recipes/selfie.lua --layers 0,2 --max-tokens 4 --json 2>&1", "r"))
    local out = p:read("a")
    local ok = p:close()
    assert.is_true(ok, out)
    local r = require("tide.json").decode(out)
    assert.equal(2, #r.layers)
    assert.equal(0, r.layers[1].layer)
    assert.equal(4, #r.layers[2].pieces)
  end)
end)
