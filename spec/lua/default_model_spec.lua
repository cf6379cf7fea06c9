-- default_model_spec.lua -- the bundled model: models/tide-small.gguf.
local tide = require "tide"

local PATH = "models/tide-small.gguf"
local f = io.open(PATH, "rb")
local size = f and f:seek("end")
if f then f:close() end
local describe_model = f and describe or pending

describe_model("the bundled model " .. PATH, function()
  it("is at most 25 MB and carries its manifest", function()
    assert.is_true(size <= 25 * 1024 * 1024)
    local m <close> = tide.load(PATH)
    assert.are.equal("llama", m.arch)
    assert.are.equal("tide-small", m.manifest.name)
    local extra = m.manifest.extra
    for _, k in ipairs { "data", "tokenizer", "hyper_parameters", "training", "heldout", "reproduce" } do
      assert.is_not_nil(extra[k], "manifest extra." .. k)
    end
    assert.is_true(extra.heldout.perplexity > 1)
  end)

  it("tokenizes English with its own BPE and generates words deterministically", function()
    local m <close> = tide.load(PATH, { n_ctx = 256 })
    local text = "And the king said unto his servants"
    local ids = m:tokenize(text)
    assert.are.equal(text, m:detokenize(ids))
    assert.is_true(#ids < #text / 2) -- a trained vocabulary merges common words
    local a <close> = m:session()
    a:feed(ids)
    local b <close> = a:fork()
    local ta = a:generate { max_tokens = 16, ignore_eog = true, sampler = "greedy" }
    local tb = b:generate { max_tokens = 16, ignore_eog = true, sampler = "greedy" }
    assert.are.equal(ta, tb)
    assert.is_truthy(ta:find("%a%a+"))
  end)
end)
