-- steer_transfer_spec.lua -- steer provenance (m:hash(), the base model
-- check of tide.steer.load, the trainer's data string) and
-- tide.steer.transfer with recipes/steer_transfer.lua. The C side
-- (spec/core/test_steer_transfer.c) checks the mathematics.
local tide = require "tide"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending
local LLAMA = (FIX or "") .. "/models/llama-spm-tiny.gguf"
local GPT2 = (FIX or "") .. "/models/gpt2-tiny.gguf"

local function rand_steer(m, r, s, seed)
  math.randomseed(seed or 1)
  local p1, p2 = {}, {}
  for i = 1, m.n_embd * r do
    p1[i] = s * (2 * math.random() - 1)
    p2[i] = s * (2 * math.random() - 1)
  end
  return tide.steer.new(m, r, p1, p2, { eps0 = 1e-3 })
end

-- W = P1 P2^T as a flat table (d*d).
local function dense(w)
  local p1, p2, d, r = w.h:p1(), w.h:p2(), w.n_embd, w.rank
  local out = {}
  for i = 0, d - 1 do
    for j = 0, d - 1 do
      local acc = 0
      for k = 1, r do acc = acc + p1[i * r + k] * p2[j * r + k] end
      out[i * d + j + 1] = acc
    end
  end
  return out
end

local function rel_diff(x, y)
  local e, t = 0, 0
  for i = 1, #y do e, t = e + (x[i] - y[i]) ^ 2, t + y[i] ^ 2 end
  return math.sqrt(e / t)
end

local TIDE = (rawget(_G, "arg") and arg[-1] and arg[-1]:match("tide$")) and arg[-1] or "build/release/tide"
local function shquote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function run(name, args)
  local cmd = { shquote(TIDE), "recipes/" .. name .. ".lua" }
  for _, a in ipairs(args) do cmd[#cmd + 1] = shquote(a) end
  local p = assert(io.popen(table.concat(cmd, " ") .. " </dev/null 2>&1", "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

describe_fix("steer provenance", function()
  local path = os.tmpname()
  teardown(function() os.remove(path) end)

  it("m:hash() is 16 hex digits, the same for the same file and different for another", function()
    local a <close> = tide.load(LLAMA)
    local a2 <close> = tide.load(LLAMA)
    local b <close> = tide.load(GPT2)
    assert.is_truthy(a:hash():match("^%x+$"))
    assert.are.equal(16, #a:hash())
    assert.are.equal(a:hash(), a2:hash())
    assert.are_not.equal(a:hash(), b:hash())
  end)

  it("a steer file written by the frozen trainer records the base model and the data", function()
    local m <close> = tide.load(LLAMA)
    local tr <close> = tide.core.trainer_frozen(m.h, { n_ctx = 8, n_batch = 1 }, { steer_rank = 2, steer_eps = 1e-3 })
    tr:save(path, { name = "t", data = "pos.txt vs neg.txt" })
    local w <close> = tide.steer.load(path, m)
    assert.are.equal(m:hash(), w.base_hash)
    assert.are.equal(m.name, w.base_name)
    assert.are.equal("pos.txt vs neg.txt", w.data)
  end)

  it("load refuses a steer of another base model unless forced, and accepts files without a hash", function()
    local a <close> = tide.load(LLAMA)
    local b <close> = tide.load(GPT2)
    local w <close> = rand_steer(a, 2, 0.1)
    w:save(path) -- made in Lua: no base recorded
    local old <close> = tide.steer.load(path, b)
    assert.is_nil(old.base_hash)
    local moved <close> = tide.steer.transfer(w, a, b) -- records b as its base
    moved:save(path)
    local ok <close> = tide.steer.load(path, b)
    assert.are.equal(b:hash(), ok.base_hash)
    local q <close> = tide.load((FIX or "") .. "/models/qwen2-tiny.gguf") -- n_embd 64 too
    local e = select(2, pcall(tide.steer.load, path, q))
    assert.is_truthy(e:find("trained on 'gpt2-tiny' (hash " .. b:hash() .. ")", 1, true))
    assert.is_truthy(e:find("force = true", 1, true))
    local forced <close> = tide.steer.load(path, q, { force = true })
    assert.are.equal(64, forced.n_embd)
    assert.has_error(function() tide.steer.load(path, q, { forse = true }) end, "steer.load: unknown option 'forse'")
  end)
end)

describe_fix("tide.steer.transfer", function()
  it("moves a steer to the same model almost unchanged", function()
    local m <close> = tide.load(LLAMA)
    local w <close> = rand_steer(m, 2, 0.3)
    local w2 <close>, info = tide.steer.transfer(w, m, m, { lambda = 1e-9 })
    assert.are.equal(64, w2.n_embd)
    assert.are.equal(2, w2.rank)
    assert.are.equal(w.eps0, w2.eps0)
    assert.is_true(info.n_shared > 20000 and not info.underdetermined)
    assert.is_true(info.residual_ab < 1e-5 and info.residual_ba < 1e-5)
    assert.is_true(rel_diff(dense(w2), dense(w)) < 1e-5)
    local w3 <close> = tide.steer.transfer(w, m, m) -- default ridge 1e-3: close, not exact
    assert.is_true(rel_diff(dense(w3), dense(w)) < 1e-2)
  end)

  it("moves a steer between vocabularies (SentencePiece to GPT-2) and records where it came from", function()
    local a <close> = tide.load(LLAMA)
    local b <close> = tide.load(GPT2)
    local w <close> = rand_steer(a, 3, 0.3)
    local w2 <close>, info = tide.steer.transfer(w, a, b, { method = "htwh" })
    assert.is_true(info.n_shared > 10000 and info.n_shared < 32000)
    assert.are.equal(64, info.d_a)
    assert.are.equal(64, info.d_b)
    assert.is_true(info.ridge_a > 0 and info.residual_ab > 0)
    assert.are.equal(b:hash(), w2.base_hash)
    assert.are.equal("gpt2-tiny", w2.base_name)
    assert.is_truthy(w2.data:find("transferred from '" .. a.name .. "' (" .. a:hash() .. ")", 1, true))
    -- the transfer steers b
    local s <close> = b:session()
    s:feed "The weather"
    local base = s:logits()[0]
    s:steer { [w2] = 50 }
    assert.are_not.equal(base, s:logits()[0])
  end)

  it("rejects bad arguments with clear messages", function()
    local a <close> = tide.load(LLAMA)
    local w <close> = rand_steer(a, 2, 0.3)
    assert.has_error(function() tide.steer.transfer(w, a, a, { lamda = 1 }) end,
                     "steer.transfer: unknown option 'lamda'")
    local ok, e = pcall(tide.steer.transfer, w, a, a, { lambda = -1 })
    assert.is_false(ok)
    assert.is_truthy(e:find("lambda -1, expected a finite number >= 0", 1, true))
    assert.has_error(function() tide.steer.transfer(w, a, a, { method = "pinv" }) end)
    assert.has_error(function() tide.steer.transfer("w", a, a) end)
  end)
end)

describe_fix("recipes/steer_transfer.lua", function()
  local src, out = os.tmpname(), os.tmpname()
  teardown(function() os.remove(src) os.remove(out) end)

  it("transfers a steer file, prints the fit and the before/after tokens, and writes a steer for B", function()
    local a <close> = tide.load(LLAMA)
    local w <close> = rand_steer(a, 4, 0.3)
    w:save(src)
    local text, code = run("steer_transfer", { src, "--from", LLAMA, "--to", GPT2, "--out", out, "--k", "2",
                                               "--top", "3" })
    assert.are.equal(0, code, text)
    assert.is_truthy(text:match("shared tokens %d+; relative residual A%->B [%d.]+"))
    assert.is_truthy(text:find("direction 2 on A", 1, true))
    assert.is_truthy(text:match("overlap of the explained tokens, A vs B: %d+ of 12"))
    local b <close> = tide.load(GPT2)
    local w2 <close> = tide.steer.load(out, b)
    assert.are.equal(4, w2.rank)
    local _, bad = run("steer_transfer", { src, "--from", LLAMA, "--to", GPT2 })
    assert.are_not.equal(0, bad)
  end)
end)
