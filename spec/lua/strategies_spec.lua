-- strategies_spec.lua -- samplers, beam search, best-of-N, self-consistency.
local tide = require "tide"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending

describe("tide.sampler", function()
  it("accepts named options, ordered stages and 'greedy'", function()
    assert.is_true(tide.sampler("greedy"):is_greedy())
    assert.is_false(tide.sampler { top_k = 40, temperature = 0.8 }:is_greedy())
    assert.are.equal("min_p", tide.sampler { { "min_p", 0.1 }, { "temperature", 0.7 } }.stages[1][1])
  end)

  it("rejects unknown options", function()
    assert.has_error(function() tide.sampler { top_kk = 4 } end)
  end)
end)

describe_fix("decoding strategies", function()
  local m
  setup(function() m = tide.load(FIX .. "/models/llama-spm-tiny.gguf", { n_ctx = 256 }) end)
  teardown(function() m:close() end)

  local function prompt()
    local s = m:session { seed = 7 }
    s:feed("Once upon a time")
    return s
  end

  it("samples the same text from the same seed", function()
    local a <close> = prompt()
    local b <close> = prompt()
    local spec = tide.sampler { top_k = 40, top_p = 0.95, temperature = 0.9 }
    local ta = a:generate { sampler = spec, max_tokens = 16, seed = 3, ignore_eog = true }
    local tb = b:generate { sampler = spec, max_tokens = 16, seed = 3, ignore_eog = true }
    assert.are.equal(ta, tb)
  end)

  it("beam search of width 1 is greedy", function()
    local s <close> = prompt()
    local kid <close> = s:fork()
    local _, g = s:generate { max_tokens = 8, ignore_eog = true }
    local _, info = tide.beam(kid, { width = 1, max_tokens = 8 })
    assert.are.same(g.tokens, info.beams[1].tokens)
  end)

  it("beam search ranks its beams by score, best first", function()
    local s <close> = prompt()
    local text, info = s:beam { width = 4, max_tokens = 6 }
    assert.is_true(#info.beams >= 4)
    for i = 2, #info.beams do assert.is_true(info.beams[i - 1].score >= info.beams[i].score) end
    assert.are.equal(info.beams[1].text, text)
    -- the best beam's log-probability is what the model assigns to it
    local lp = s:score(info.beams[1].tokens)
    assert.is_true(math.abs(lp - info.beams[1].logprob) < 1e-3)
  end)

  it("best-of-N returns the top-scored candidate", function()
    local s <close> = prompt()
    local text, info = s:best_of_n { n = 4, max_tokens = 8, seed = 11,
                                     scorer = function(c) return #c.text end }
    assert.are.equal(4, #info.candidates)
    for _, c in ipairs(info.candidates) do assert.is_true(#text >= #c.text) end
    assert.are.equal(info.best.text, text)
  end)

  it("best-of-N candidates equal separate sampled runs with the same seeds", function()
    local s <close> = prompt()
    local spec = tide.sampler { top_k = 20, temperature = 1.0 }
    local _, info = s:best_of_n { n = 3, max_tokens = 6, seed = 5, sampler = spec }
    for _, c in ipairs(info.candidates) do
      local kid <close> = s:fork()
      local _, solo = kid:generate { sampler = spec, seed = 5 + c.index, max_tokens = 6 }
      assert.are.same(solo.tokens, c.tokens)
    end
  end)

  it("self-consistency's vote equals a recount of the extracted answers", function()
    local s <close> = prompt()
    local answer, info = s:self_consistency { n = 6, max_tokens = 8, seed = 2, extract = "(%a+)" }
    local recount = {}
    for _, c in ipairs(info.candidates) do
      if c.answer then recount[c.answer] = (recount[c.answer] or 0) + 1 end
    end
    assert.are.same(recount, info.votes)
    if answer then
      for _, n in pairs(recount) do assert.is_true(recount[answer] >= n) end
      assert.are.equal(recount[answer] / 6, info.agreement)
    end
  end)
end)
