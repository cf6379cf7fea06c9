-- train_spec.lua -- the C trainer from Lua and recipes/train.lua end to end.
local tide = require "tide"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending

describe("tide.core.trainer", function()
  it("lowers the loss on a repeating sequence and rejects bad batches", function()
    local tr <close> = tide.core.trainer { n_vocab = 40, n_embd = 16, n_layer = 2, n_head = 4, n_kv_head = 2,
                                          n_ff = 32, n_ctx = 16, seed = 3, lr = 1e-2 }
    local toks = {}
    for i = 1, 4 * 8 do toks[i] = (i * 7) % 40 end
    local first = tr:step(toks, 4, 8).loss
    local last
    for _ = 1, 60 do last = tr:step(toks, 4, 8).loss end
    assert.is_true(last < first / 2)
    assert.are.equal(61, tr:steps())
    assert.has_error(function() tr:step({ 1, 2, 3 }, 4, 8) end)
    toks[5] = 40
    assert.has_error(function() tr:step(toks, 4, 8) end)
    assert.has_error(function() tide.core.trainer { n_vocab = 40, n_embd = 15, n_head = 4 } end)
    assert.has_error(function() tide.core.trainer { n_vocab = 40, bogus = 1 } end)
  end)
end)

describe_fix("recipes/train.lua", function()
  it("trains, evaluates, writes a loadable model, a curve and a resumable checkpoint", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local text = string.rep("the cat sat on the mat. the dog sat on the log. ", 200)
    for _, name in ipairs { "train.txt", "heldout.txt" } do
      local f = assert(io.open(dir .. "/" .. name, "w"))
      f:write(text)
      f:close()
    end
    local cfg = string.format([[
tokenizer: %s/vocab/ggml-vocab-gpt-2.gguf
train: %s/train.txt
heldout: %s/heldout.txt
out: %s/tiny.gguf
name: tiny
curve: %s/curve.svg
model: { n_embd: 32, n_layer: 1, n_head: 4, n_kv_head: 2, n_ff: 64, n_ctx: 32 }
train_params: { batch: 4, seq: 32, steps: 30, lr: 0.01, warmup: 5, seed: 7 }
eval_every: 10
ckpt_every: 10
]], FIX, dir, dir, dir, dir)
    local f = assert(io.open(dir .. "/cfg.yaml", "w"))
    f:write(cfg)
    f:close()
    local exe = "build/release/tide"
    local p = io.popen(exe .. " recipes/train.lua " .. dir .. "/cfg.yaml --quiet 2>&1")
    local outp = p:read("a")
    assert.is_true(p:close(), outp)
    assert.is_truthy(outp:find("trained 30 steps", 1, true), outp)
    -- the loss went down (CSV log)
    local losses = {}
    for line in io.lines(dir .. "/tiny.gguf.csv") do
      local l = line:match("^%d+,%d+,([^,]+),")
      if l then losses[#losses + 1] = tonumber(l) end
    end
    assert.are.equal(30, #losses)
    assert.is_true(losses[30] < losses[1])
    assert.is_truthy(H.read(dir .. "/curve.svg"):find("<polyline", 1, true))
    -- the model loads and runs, with the tokenizer it was trained with
    local m <close> = tide.load(dir .. "/tiny.gguf")
    assert.are.equal("llama", m.arch)
    local s <close> = m:session()
    s:feed("the cat")
    assert.is_string(s:generate { max_tokens = 5, ignore_eog = true })
    -- resume continues to a later step
    p = io.popen(exe .. " recipes/train.lua " .. dir .. "/cfg.yaml --resume --steps 35 --quiet 2>&1")
    outp = p:read("a")
    assert.is_true(p:close(), outp)
    assert.is_truthy(outp:find("trained 5 steps", 1, true), outp)
    os.execute("rm -rf " .. dir)
  end)
end)
