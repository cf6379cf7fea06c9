-- vocab_spec.lua -- vocabulary-only loading and the tokenizer vectors.
local tide = require "tide"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending

local SEP = "\n__ggml_vocab_test__\n"

local function split(s, sep)
  local out, i = {}, 1
  while true do
    local a, b = s:find(sep, i, true)
    if not a then out[#out + 1] = s:sub(i); break end
    out[#out + 1] = s:sub(i, a - 1)
    i = b + 1
  end
  return out
end

describe_fix("vocab_only models", function()
  for _, name in ipairs { "ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf" } do
    it("tokenize every vector of " .. name, function()
      local path = FIX .. "/vocab/" .. name
      local m <close> = tide.load(path, { vocab_only = true })
      local inputs = split(H.read(path .. ".inp"), SEP)
      local lines = {}
      for line in (H.read(path .. ".out") .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
      local bad = 0
      for i, text in ipairs(inputs) do
        local want = {}
        for n in (lines[i] or ""):gmatch("%d+") do want[#want + 1] = math.tointeger(tonumber(n)) end
        local got = m:tokenize(text, { bos = false })
        local same = #got == #want
        for j = 1, #want do same = same and got[j] == want[j] end
        if not same then bad = bad + 1 end
        if name:find("gpt%-2") then assert.are.equal(text, m:detokenize(got)) end
      end
      assert.are.equal(0, bad)
    end)
  end

  it("refuses to run a vocab-only model", function()
    local m <close> = tide.load(FIX .. "/vocab/ggml-vocab-gpt-2.gguf", { vocab_only = true })
    assert.has_error(function() m:session() end)
  end)
end)
