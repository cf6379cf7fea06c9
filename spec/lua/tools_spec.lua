-- tools_spec.lua -- build/release/quantize against llama.cpp's own quantizer.
local tide = require "tide"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending

describe_fix("build/release/quantize", function()
  it("requantizes the F32 fixture to Q8_0 that generates as llama.cpp's Q8_0 file", function()
    local out = os.tmpname()
    local p = io.popen(string.format("build/release/quantize %q %q q8_0 2>&1",
                                     FIX .. "/models/llama-spm-tiny.gguf", out))
    local msg = p:read("a")
    assert.is_true(p:close(), msg)
    local m <close> = tide.load(out, { n_ctx = 64 })
    local s <close> = m:session()
    s:feed(H.ints(FIX .. "/models/llama-spm-tiny.tokens.txt"))
    local _, info = s:generate { max_tokens = 24, ignore_eog = true }
    assert.are.same(H.ints(FIX .. "/models/llama-spm-tiny-q8_0.greedy.txt"), info.tokens)
    os.remove(out)
  end)

  it("refuses an unknown type and a missing file", function()
    local p = io.popen("build/release/quantize a.gguf b.gguf q3_z 2>&1")
    assert.is_truthy(p:read("a"):find("unknown type", 1, true))
    assert.is_falsy(p:close())
    p = io.popen("build/release/quantize /nonexistent.gguf /tmp/x.gguf f16 2>&1")
    assert.is_truthy(p:read("a"):find("nonexistent", 1, true))
    assert.is_falsy(p:close())
  end)
end)
