-- model_spec.lua -- tide.load, tokenizer, sessions, logits views, generate.
local tide = require "tide"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending

describe_fix("tide.load on the fixture models", function()
  local dir = (FIX or "") .. "/models/"
  local m

  setup(function() m = tide.load(dir .. "llama-spm-tiny.gguf", { n_ctx = 256, kv_type = "f32" }) end)
  teardown(function() m:close() end)

  it("exposes the hyper-parameters as fields", function()
    assert.are.equal("llama", m.arch)
    assert.are.equal(32000, m.n_vocab)
    assert.are.equal(64, m.n_embd)
    assert.are.equal(2, m.n_layer)
    assert.are.equal(256, m.n_ctx)
  end)

  it("tokenizes the prompt as llama.cpp does, with 0-based ids", function()
    local prompt = H.read(dir .. "llama-spm-tiny.prompt.txt")
    assert.are.same(H.ints(dir .. "llama-spm-tiny.tokens.txt"), m:tokenize(prompt))
    local ids = m:tokenize(prompt)
    assert.is_truthy(m:detokenize(ids):find("quick brown fox jumps", 1, true))
    local pieces = {}
    for i = 2, #ids do pieces[#pieces + 1] = m:piece(ids[i]) end
    assert.are.equal(" " .. prompt, table.concat(pieces))
  end)

  it("reproduces llama.cpp's greedy continuation through generate", function()
    local s <close> = m:session()
    s:feed(H.ints(dir .. "llama-spm-tiny.tokens.txt"))
    local _, info = s:generate { max_tokens = 24, ignore_eog = true }
    assert.are.same(H.ints(dir .. "llama-spm-tiny.greedy.txt"), info.tokens)
  end)

  it("indexes logits by token id and has n_vocab entries", function()
    local s <close> = m:session()
    s:feed(H.ints(dir .. "llama-spm-tiny.tokens.txt"))
    local lg = s:logits()
    assert.are.equal(32000, #lg)
    local best = lg:argmax()
    assert.are.equal(H.ints(dir .. "llama-spm-tiny.greedy.txt")[1], best)
    local ids, vals = lg:topk(5)
    assert.are.equal(best, ids[1])
    assert.are.equal(lg[best], vals[1])
    assert.is_true(lg:logprob(best) < 0)
    local p = lg:softmax()
    local sum = 0
    for i = 0, #p - 1 do sum = sum + p[i] end
    assert.is_true(math.abs(sum - 1) < 1e-4)
    assert.has_error(function() return lg[32000] end)
    assert.has_error(function() lg[0] = 1 end)
  end)

  it("marks a logits view stale after another decode", function()
    local a <close> = m:session()
    local b <close> = m:session()
    a:feed({ 1, 450 })
    local lg = a:logits()
    b:feed({ 1, 4996 })
    assert.has_error(function() return lg[0] end)
    local again = a:logits() -- recomputed for a
    assert.is_true(again[0] == again[0])
  end)

  it("forks continue exactly as the parent would", function()
    local s <close> = m:session()
    s:feed(H.ints(dir .. "llama-spm-tiny.tokens.txt"))
    local kid <close> = s:fork()
    local _, i1 = s:generate { max_tokens = 8, ignore_eog = true }
    local _, i2 = kid:generate { max_tokens = 8, ignore_eog = true }
    assert.are.same(i1.tokens, i2.tokens)
  end)

  it("rewinds to a position and regenerates the same tokens", function()
    local s <close> = m:session()
    s:feed(H.ints(dir .. "llama-spm-tiny.tokens.txt"))
    local n = s.pos
    local _, a = s:generate { max_tokens = 6, ignore_eog = true }
    s:rewind(n)
    assert.are.equal(n, s.pos)
    local _, b = s:generate { max_tokens = 6, ignore_eog = true }
    assert.are.same(a.tokens, b.tokens)
  end)

  it("streams the same text generate returns", function()
    local s <close> = m:session()
    s:feed("Once upon a time")
    local kid <close> = s:fork()
    local text = s:generate { max_tokens = 12, ignore_eog = true }
    local parts = {}
    for piece in kid:stream { max_tokens = 12, ignore_eog = true } do parts[#parts + 1] = piece end
    assert.are.equal(text, table.concat(parts))
  end)

  it("cuts a stop string from the output, across token boundaries", function()
    local s <close> = m:session()
    s:feed("Once upon a time")
    local kid <close> = s:fork()
    local full = s:generate { max_tokens = 16, ignore_eog = true }
    local stop = full:sub(6, 9)
    local at = full:find(stop, 1, true)
    local out, info = kid:generate { max_tokens = 16, ignore_eog = true, stop = stop }
    assert.are.equal(full:sub(1, at - 1), out)
    assert.are.equal("stop", info.stop_reason)
  end)

  it("selects a choice by log-probability and reports each", function()
    local s <close> = m:session()
    s:feed("The quick brown fox")
    local best, scores = s:select { " jumps over", " sleeps", " is" }
    local top = -math.huge
    for _, lp in pairs(scores) do top = math.max(top, lp) end
    assert.are.equal(top, scores[best])
    local ids = m:tokenize(" jumps over", { bos = false })
    local lp = s:score(ids)
    assert.is_true(math.abs(lp - scores[" jumps over"]) < 1e-4)
  end)

  it("returns per-token log-probabilities and alternatives when asked", function()
    local s <close> = m:session()
    s:feed("Hello")
    local _, info = s:generate { max_tokens = 4, logprobs = true, top = 3, ignore_eog = true }
    assert.are.equal(4, #info.logprobs)
    assert.are.equal(3, #info.top[1].ids)
    assert.are.equal(info.tokens[1], info.top[1].ids[1])
  end)

  it("rejects unknown options and closed sessions", function()
    assert.has_error(function() m:session { sede = 1 } end)
    local s = m:session()
    s:feed({ 1 })
    assert.has_error(function() s:generate { max_tokem = 3 } end)
    s:close()
    assert.has_error(function() s:feed({ 2 }) end)
  end)

  it("fails to load a missing file with a message", function()
    local ok, err = pcall(tide.load, "no/such/model.gguf")
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("no/such/model.gguf", 1, true))
  end)
end)

describe("tide.load's n_outputs", function()
  it("bounds the rows of one forward that want logits", function()
    local m <close> = tide.load("models/tide-small.gguf", { n_outputs = 2 })
    local s <close> = m:session()
    s:feed("In the beginning")
    local kids = s:fork(3)
    local t = s:logits():argmax()
    m:step({ kids[1], kids[2] }, { t, t })
    assert.are.equal(kids[1]:logits():argmax(), kids[2]:logits():argmax())
    local ok, err = pcall(m.step, m, kids, { t, t, t })
    assert.is_false(ok)
    assert.matches("n_outputs", tostring(err))
    for _, k in ipairs(kids) do k:close() end
  end)
end)

describe_fix("model:meta", function()
  it("returns GGUF metadata by key, arrays as tables, nil when absent", function()
    local m <close> = tide.load((FIX or "") .. "/models/qwen2-tiny.gguf")
    assert.are.equal("qwen2", m:meta "general.architecture")
    assert.are.equal(2, m:meta "qwen2.block_count")
    assert.are.equal(1000000.0, m:meta "qwen2.rope.freq_base")
    local toks = m:meta "tokenizer.ggml.tokens"
    assert.are.equal(50257, #toks)
    assert.are.equal(m:piece(0), toks[1])
    assert.is_nil(m:meta "no.such.key")
  end)
end)
