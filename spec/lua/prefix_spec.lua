-- prefix_spec.lua -- prefix tuning from Lua: a frozen trainer with
-- n_kv_prefix, tide.prefix.load, sessions that start with a prefix, and
-- recipes/prefix_train.lua end to end.
local tide = require "tide"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending

describe_fix("tide.prefix", function()
  local model_path = FIX and FIX .. "/models/llama-spm-tiny.gguf"
  local path = os.tmpname()
  local K = 5
  local m, ids

  setup(function()
    m = tide.load(model_path, { kv_type = "f32", n_ctx = 64 })
    ids = m:tokenize("The quick brown fox jumps over the lazy dog", { bos = true })
    local tr <close> = tide.core.trainer_frozen(m.h, { n_ctx = #ids, n_batch = 2, lr = 1e-2 },
                                                { n_kv_prefix = K })
    tr:init_kv_prefix(table.move(ids, 1, K, 1, {}))
    local batch = table.move(ids, 1, #ids, #ids + 1, table.move(ids, 1, #ids, 1, {}))
    for _ = 1, 3 do tr:step(batch, 2, #ids) end
    tr:save(path, { name = "spec prefix" })
    -- the trainer's loss with the prefix, to compare with the runtime's
    m.trainer_loss = tr:eval(ids, 1, #ids)
  end)
  teardown(function()
    os.remove(path)
    m:close()
  end)

  it("loads a prefix file and reports its shape", function()
    local p <close> = tide.prefix.load(path, m)
    assert.are.equal(K, p.n_tokens)
    assert.are.equal(m.n_layer, p.n_layer)
    assert.are.equal(m.n_kv_head * m.head_dim, p.kv_dim)
    assert.matches("tide.Prefix%(5 positions", tostring(p))
  end)

  it("starts a session with the prefix: positions and scores follow it", function()
    local p <close> = tide.prefix.load(path, m)
    local s <close> = m:session{ prefix = p }
    assert.are.equal(0, s.pos)
    assert.are.equal(K, m.ctx:seq_len(s.seq))
    s:feed({ ids[1] })
    local total = s:score(table.move(ids, 2, #ids, 1, {}))
    -- the runtime (F32 cache) computes the trainer's loss
    assert.is_true(math.abs(-total / (#ids - 1) - m.trainer_loss) < 1e-4)
    assert.are.equal(K + 1, m.ctx:seq_len(s.seq))
    -- logits() after another session decoded recomputes the right position
    local before = s:logits():logprob(ids[2])
    local other <close> = m:session()
    other:feed({ ids[1], ids[2] })
    assert.is_true(math.abs(s:logits():logprob(ids[2]) - before) < 1e-5)
    -- rewind counts tokens, the prefix stays
    s:feed({ ids[2], ids[3] })
    s:rewind(1)
    assert.are.equal(1, s.pos)
    assert.are.equal(K + 1, m.ctx:seq_len(s.seq))
    assert.is_true(math.abs(s:logits():logprob(ids[2]) - before) < 1e-5)
  end)

  it("generates after the prefix, and forks share it", function()
    local p <close> = tide.prefix.load(path, m)
    local s <close> = m:session{ prefix = p }
    s:feed("The quick")
    local kid <close> = s:fork()
    local a, info = s:generate{ max_tokens = 6 }
    local b = kid:generate{ max_tokens = 6 }
    assert.are.equal(a, b)
    assert.is_true(info.n_tokens > 0)
    assert.are.equal(K + s.pos, m.ctx:seq_len(s.seq))
    -- set_prefix on an empty session works like the option
    local s2 <close> = m:session()
    s2:set_prefix(p)
    s2:feed("The quick")
    assert.are.equal(a, (s2:generate{ max_tokens = 6 }))
  end)

  it("refuses a non-empty session, a wrong value, a wrong file and a wrong model", function()
    local p <close> = tide.prefix.load(path, m)
    local s <close> = m:session()
    s:feed("The")
    assert.has_error(function() s:set_prefix(p) end,
                     "set_prefix: the session is not empty (set the prefix before the first feed)")
    assert.has_error(function() m:session{ prefix = "x" } end)
    assert.has_error(function() tide.prefix.load(model_path) end)
    assert.has_error(function() tide.prefix.load("/nonexistent/prefix.gguf") end)
    local g <close> = tide.load(FIX .. "/models/gpt2-tiny.gguf")
    assert.has_error(function() tide.prefix.load(path, g) end)
    -- the core's check when the Lua one is skipped
    local gs <close> = g:session()
    assert.has_error(function() p:apply(g:context(), gs.seq) end)
  end)
end)

describe("recipes/prefix_train.lua", function()
  it("lowers the held-out task loss on the bundled model and writes a loadable prefix", function()
    local out = os.tmpname()
    local cmd = string.format("build/release/tide recipes/prefix_train.lua --out %s --steps 12 --k 4 "
                              .. "--batch 4 --seq 24 --quiet 2>&1", out)
    local f = assert(io.popen(cmd))
    local text = f:read("a")
    f:close()
    local none = tonumber(text:match("no prefix%s+([%d.]+)"))
    local trained, runtime = text:match("trained prefix%s+([%d.]+)%s+%(runtime with the saved file: ([%d.]+)")
    assert.is_truthy(none, text)
    assert.is_true(tonumber(trained) < none, text)
    assert.is_true(math.abs(tonumber(trained) - tonumber(runtime)) < 1e-2, text)
    local m <close> = tide.load("models/tide-small.gguf")
    local p <close> = tide.prefix.load(out, m)
    assert.are.equal(4, p.n_tokens)
    os.remove(out)
  end)
end)
