-- robust_spec.lua -- seeds, work counters, UTF-8 streaming, bad arguments.
local tide = require "tide"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending

describe_fix("tide runtime guarantees", function()
  local llama, gpt2
  setup(function()
    llama = tide.load(FIX .. "/models/llama-spm-tiny.gguf", { n_ctx = 128, n_cells = 1024, n_seq_max = 12 })
    gpt2 = tide.load(FIX .. "/models/gpt2-tiny.gguf", { n_ctx = 128 })
  end)
  teardown(function()
    llama:close()
    gpt2:close()
  end)

  it("gives different text for different seeds", function()
    local spec = tide.sampler { temperature = 1.5 }
    local texts = {}
    for seed = 1, 3 do
      local s <close> = llama:session()
      s:feed("Once upon a time")
      texts[seed] = s:generate { sampler = spec, seed = seed, max_tokens = 12, ignore_eog = true }
    end
    assert.is_true(texts[1] ~= texts[2] or texts[2] ~= texts[3])
  end)

  it("prefills once for best-of-N: forks process no prompt rows", function()
    local s <close> = llama:session()
    local before = llama:stats().rows
    s:feed("The quick brown fox jumps over the lazy dog")
    local prompt_rows = llama:stats().rows - before
    assert.are.equal(s.pos, prompt_rows)
    local _, info = s:best_of_n { n = 4, max_tokens = 5, seed = 1 }
    local generated = 0
    for _, c in ipairs(info.candidates) do generated = generated + #c.tokens end
    local rows = llama:stats().rows - before - prompt_rows
    -- every row after the prompt is one sampled token of one candidate
    -- (a candidate that stopped at EOG decodes nothing more)
    assert.is_true(rows <= generated and rows >= generated - 4)
  end)

  it("runs the greedy loop in C with the same tokens as generate", function()
    local a <close> = llama:session()
    a:feed("Once upon a time")
    local b <close> = a:fork()
    local _, info = a:generate { max_tokens = 10, ignore_eog = true }
    b:logits()
    local ids = llama:context():greedy(b.seq, 10)
    assert.are.same(info.tokens, ids)
  end)

  it("never streams a piece that ends inside a UTF-8 character", function()
    for _, m in ipairs { gpt2, llama } do
      local s <close> = m:session { seed = 3 }
      s:feed("Größe: 東京タワー — ✓ naïve café")
      local n = 0
      for piece in s:stream { max_tokens = 40, sampler = { temperature = 2.0 }, ignore_eog = true } do
        assert.is_truthy(utf8.len(piece), "piece is not valid UTF-8: " .. piece:gsub("[\128-\255]", "?"))
        n = n + 1
      end
      assert.is_true(n > 0)
    end
  end)

  it("frees a stream's sampler when the loop breaks", function()
    local s <close> = llama:session()
    s:feed("Hello")
    local it, a, b, closer = s:stream { max_tokens = 20, ignore_eog = true }
    for _ in it, a, b, closer do break end -- luacheck: ignore 512
    assert.is_true(it.done)
    assert.are.equal("closed", it.info.stop_reason)
    -- the session continues normally afterwards
    local text = s:generate { max_tokens = 3, ignore_eog = true }
    assert.is_string(text)
  end)

  it("raises clear errors for bad arguments and keeps working", function()
    local s <close> = llama:session()
    s:feed("Hello")
    local function err(f)
      local ok, e = pcall(f)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.is_truthy(err(function() s:generate { max_tokens = -1 } end):find("max_tokens", 1, true))
    assert.is_truthy(err(function() s:generate { max_tokens = 1e9 } end):find("max_tokens", 1, true))
    assert.is_truthy(err(function() s:generate { max_tokens = 1000000000 } end):find("exceeds", 1, true))
    assert.is_truthy(err(function() s:generate { sampler = { top_kk = 3 } } end):find("top_kk", 1, true))
    assert.is_truthy(err(function() s:generate { sampler = { top_p = 2 } } end):find("top_p", 1, true))
    assert.is_truthy(err(function() s:generate "fast" end):find("options table", 1, true))
    assert.is_truthy(err(function() s:feed({ 1, -5 }) end):find("-5", 1, true))
    assert.is_truthy(err(function() s:feed({ 1, 32000 }) end):find("32000", 1, true))
    assert.is_truthy(err(function() s:logits()[32000] = 1 end))
    assert.is_truthy(err(function() llama:tokenize(42) end):find("string expected", 1, true))
    assert.is_truthy(err(function() s:rewind(999) end):find("out of range", 1, true))
    -- forking past the cache budget (n_seq_max = 12)
    assert.is_truthy(err(function() s:fork(40) end))
    local closed = llama:session()
    closed:close()
    assert.is_truthy(err(function() closed:feed({ 1 }) end):find("closed", 1, true))
    -- missing and corrupt files
    assert.is_truthy(err(function() tide.load("/nonexistent/x.gguf") end):find("x.gguf", 1, true))
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "wb"))
    f:write("GGUF\3\0\0\0" .. string.rep("\255", 16))
    f:close()
    assert.is_truthy(err(function() tide.load(tmp) end):find("gguf", 1, true))
    os.remove(tmp)
    -- and everything still works
    collectgarbage()
    local t <close> = llama:session()
    t:feed("Once upon a time")
    local text, info = t:generate { max_tokens = 4, ignore_eog = true }
    assert.are.equal(4, info.n_tokens)
    assert.is_string(text)
  end)
end)
