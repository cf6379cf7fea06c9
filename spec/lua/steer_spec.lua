-- steer_spec.lua -- tide.steer: LM-Steer sets on models, sessions, forks and
-- generate calls; the formula against a Lua reference; files; explain;
-- control vectors; hidden states and the logit lens.
local tide = require "tide"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending

-- A seeded steer of rank r with entries uniform in [-s, s).
local function rand_steer(m, r, s, seed)
  math.randomseed(seed or 1)
  local p1, p2 = {}, {}
  for i = 1, m.n_embd * r do
    p1[i] = s * (2 * math.random() - 1)
    p2[i] = s * (2 * math.random() - 1)
  end
  return tide.steer.new(m, r, p1, p2), p1, p2
end

local same_bits = H.same_bits

local function max_diff(a, b)
  local mx = 0
  for i = 0, #a - 1 do mx = math.max(mx, math.abs(a[i] - b[i])) end
  return mx
end

describe_fix("tide.steer (LM-Steer)", function()
  local dir = (FIX or "") .. "/models/"
  local m, w

  setup(function()
    m = tide.load(dir .. "llama-spm-tiny.gguf", { n_ctx = 128, kv_type = "f32" })
    w = rand_steer(m, 4, 0.5, 7)
  end)
  teardown(function() w:close(); m:close() end)

  it("gives the unsteered logits bit for bit when eps is 0", function()
    local s <close> = m:session()
    s:feed("The quick brown fox")
    s:steer { [w] = 3.0 }
    s:steer(false)
    local plain = s:logits():copy() -- both recomputed the last position the same way
    s:steer { [w] = 0.0 }
    assert.is_true(same_bits(plain, s:logits()))
    s:steer { [w] = { eps = 0.0, input = true } }
    assert.is_true(same_bits(plain, s:logits()))
  end)

  it("moves the logits by eps E (W^T c) with W = P1 P2^T, c the normed final state", function()
    local r, eps = 3, 1.7
    local w3, p1, p2 = rand_steer(m, r, 0.4, 11)
    local s <close> = m:session()
    s:feed("Once upon a time")
    local base = s:logits():copy()
    local h = s:hidden(m.n_layer)
    local c = m:context():final_norm(h)
    -- reference: d = eps P2 (P1^T c), logits' = logits + E d
    local d, u = tide.vector(m.n_embd), {}
    for k = 1, r do
      local acc = 0
      for i = 1, m.n_embd do acc = acc + c[i] * p1[(i - 1) * r + k] end
      u[k] = acc
    end
    for j = 1, m.n_embd do
      local acc = 0
      for k = 1, r do acc = acc + u[k] * p2[(j - 1) * r + k] end
      d[j] = eps * acc
    end
    local shift = m:project(d, { norm = false })
    s:steer { [w3] = eps }
    local got = s:logits()
    local worst, moved = 0, 0
    for v = 0, m.n_vocab - 1, 37 do
      worst = math.max(worst, math.abs(got[v] - (base[v] + shift[v])))
      moved = moved + math.abs(got[v] - base[v])
    end
    assert.is_true(worst < 1e-3, "worst " .. worst)
    assert.is_true(moved > 1e-2)
    w3:close()
  end)

  it("steers two forks differently in one batch, equal to separate runs", function()
    local s <close> = m:session()
    s:feed("It was a dark and stormy")
    local kids = s:fork(2)
    kids[1]:steer { [w] = 2.0 }
    kids[2]:steer { [w] = -3.0 }
    local tok = m:tokenize(" night", { bos = false })[1]
    m:step(kids, { tok, tok })
    local l1, l2 = kids[1]:logits():copy(), kids[2]:logits():copy()
    assert.is_true(max_diff(l1, l2) > 1e-3)
    for i, eps in ipairs { 2.0, -3.0 } do
      local one <close> = s:fork()
      one:steer { [w] = eps }
      one:feed({ tok })
      assert.is_true(same_bits(i == 1 and l1 or l2, one:logits()))
    end
    for _, k in ipairs(kids) do k:close() end
  end)

  it("lets forks inherit the parent's set and keeps siblings apart", function()
    local s <close> = m:session()
    s:feed("Hello")
    s:steer { [w] = 1.5 }
    local a <close> = s:fork()
    assert.are.equal(1, m:context():n_steers(a.seq))
    a:steer {}
    assert.are.equal(0, m:context():n_steers(a.seq))
    assert.are.equal(1, m:context():n_steers(s.seq))
  end)

  it("applies the model's default to sessions without a set of their own", function()
    local s <close> = m:session()
    local own <close> = m:session()
    own:steer {}
    m:steer { [w] = 2.0 }
    assert.are.equal(1, m:context():n_steers(s.seq))
    assert.are.equal(0, m:context():n_steers(own.seq))
    m:steer(nil)
    assert.are.equal(0, m:context():n_steers(s.seq))
  end)

  it("sets generate{ steer } for the call only, and changes mid-stream", function()
    local s <close> = m:session()
    s:feed("The weather today")
    local plain = s:fork()
    local steered = s:fork()
    local a = plain:generate { max_tokens = 6, ignore_eog = true }
    local b = steered:generate { max_tokens = 6, ignore_eog = true, steer = { [w] = 6.0 } }
    assert.are_not.equal(a, b)
    assert.are.equal(0, m:context():n_steers(steered.seq))
    assert.is_nil(steered._steer)
    -- switching between tokens takes effect at the next token
    local switched = s:fork()
    local _, info = switched:generate { max_tokens = 6, ignore_eog = true,
      on_token = function(_, sess) if sess.pos == s.pos + 3 then sess:steer { [w] = 6.0 } end end }
    assert.are.equal(6, info.n_tokens)
    assert.are.equal(1, m:context():n_steers(switched.seq))
    plain:close(); steered:close(); switched:close()
  end)

  it("rejects bad sets with a clear message", function()
    local s <close> = m:session()
    assert.has_error(function() s:steer { [1] = 2 } end)
    assert.has_error(function() s:steer { [w] = 0 / 0 } end)
    assert.has_error(function() s:steer { [w] = { eps = 1, typo = true } } end,
                     "session:steer: unknown option 'typo' of a steer")
    assert.has_error(function() tide.steer.new(m, 2, { 1, 2 }, { 3, 4 }) end)
    local ok, err = pcall(s.generate, s, { max_tokens = 1, steer = { [w] = "x" } })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("finite number", 1, true))
  end)

  it("loads the frozen trainer's steer file and saves its own", function()
    local tr <close> = tide.core.trainer_frozen(m.h, { n_ctx = 16, n_batch = 2 }, { steer_rank = 3, steer_eps = 2e-3 })
    local path = os.tmpname()
    tr:save(path, { name = "spec" })
    local s = tide.steer.load(path, m)
    assert.are.equal(3, s.rank)
    assert.is_true(math.abs(s.eps0 - 2e-3) < 1e-9)
    s:save(path, "again")
    local s2 = tide.steer.load(path, m)
    assert.are.same(s.h:p1():totable(), s2.h:p1():totable())
    assert.are.same(s.h:p2():totable(), s2.h:p2():totable())
    s:close(); s2:close()
    os.remove(path)
    assert.has_error(function() tide.steer.load(dir .. "llama-spm-tiny.gguf", m) end)
  end)

  it("explains the leading directions with promoted and suppressed tokens", function()
    local ex = w:explain(2, { top = 5 })
    assert.are.equal(2, #ex)
    assert.is_true(ex[1].sigma >= ex[2].sigma)
    assert.are.equal(5, #ex[1].promoted)
    assert.is_true(ex[1].promoted[1].score >= ex[1].promoted[5].score)
    assert.is_true(ex[1].suppressed[1].score <= ex[1].suppressed[5].score)
    local lines = {}
    tide.steer.print_explain(ex, function(x) lines[#lines + 1] = x end)
    assert.is_truthy(table.concat(lines):find("direction 2", 1, true))
  end)

  it("reports per-token log-probability shifts of a steer", function()
    local shift = tide.steer.token_shift(m, w, 4.0, "The cat sat on the mat")
    assert.are.equal(#m:tokenize("The cat sat on the mat") - 1, #shift)
    assert.is_true(math.abs(shift[1].delta - (shift[1].steered - shift[1].base)) < 1e-12)
  end)

  it("highlights a text for the terminal and as HTML", function()
    local text = "The cat <sat> & the mat"
    local plain, shift = w:highlight(text, { eps = 4.0, color = false })
    assert.are.same(tide.steer.token_shift(m, w, 4.0, text), shift)
    local want = {}
    for i, t in ipairs(shift) do want[i] = string.format("%s[%+.2f]", t.piece, t.delta) end
    assert.are.equal(table.concat(want), plain)
    local ansi = w:highlight(text, { eps = 4.0 })
    local n = 0
    for _ in ansi:gmatch("\27%[48;2;%d+;%d+;0m") do n = n + 1 end
    assert.are.equal(#shift, n)
    local html = w:highlight(text, { eps = 4.0, html = true })
    assert.matches("^<pre", html)
    assert.is_nil(html:find("<sat>", 1, true))
    local spans = 0
    for _ in html:gmatch("<span title='[-+]%d") do spans = spans + 1 end
    assert.are.equal(#shift, spans)
  end)
end)

describe_fix("tide.steer control vectors and introspection", function()
  local dir = (FIX or "") .. "/models/"
  local m

  setup(function() m = tide.load(dir .. "qwen2-tiny.gguf", { n_ctx = 128, kv_type = "f32" }) end)
  teardown(function() m:close() end)

  it("writes llama.cpp's control-vector GGUF and reads it back", function()
    local nl, d = m.n_layer, m.n_embd
    local dirs = tide.vector(nl * d)
    for i = d + 1, nl * d do dirs[i] = math.sin(i) end
    local path = os.tmpname()
    tide.steer.cvec_save(path, dirs, m)
    local info = tide.core.cvec_info(path)
    assert.are.equal("controlvector", info.architecture)
    assert.are.equal(nl - 1, info.layer_count)
    assert.are.equal("qwen2", info.model_hint)
    local want = {}
    for n = 1, nl - 1 do want[n] = "direction." .. n end
    assert.are.same(want, info.tensors)
    local back = tide.steer.cvec_load(path, m)
    assert.are.same(dirs:totable(), back:totable())
    local doubled = tide.steer.cvec_load({ { path, 1.0 }, { path, 1.0 } }, m)
    assert.are.equal(2 * back[d + 3], doubled[d + 3])
    os.remove(path)
  end)

  it("adds the control vector after each block in range and turns it off", function()
    local s <close> = m:session()
    s:feed("A control vector")
    local plain = s:logits():copy()
    local h1 = s:hidden(2)
    local dirs = tide.vector(m.n_layer * m.n_embd)
    for i = 1, m.n_embd do dirs[m.n_embd + i] = 0.25 end
    m:control_vector(dirs, { layers = { 1, 1 } })
    local h2 = s:hidden(2)
    assert.are.equal(h1[5] + 0.25, h2[5])
    m:control_vector(nil)
    assert.is_true(max_diff(plain, s:logits()) < 1e-4)
  end)

  it("shows the logit lens; at the last layer its top token is the model's", function()
    local s <close> = m:session()
    s:feed("The lens")
    local pos = s.pos
    local lines = {}
    local out = tide.lens(s, " looks at layers", { write = function(x) lines[#lines + 1] = x end })
    assert.are.equal(pos, s.pos)
    assert.are.equal(m.n_layer + 2, #lines)
    local last = out.layers[m.n_layer + 1]
    local kid <close> = s:fork()
    kid:feed(out.tokens)
    assert.are.equal(kid:logits():argmax(), last[#out.tokens].ids[1])
    -- the heat map: one 24-bit background per cell, the same tokens
    local heat = {}
    tide.lens(s, " looks at layers", { color = true, write = function(x) heat[#heat + 1] = x end })
    assert.are.equal(#lines, #heat)
    local n = 0
    for _ in heat[2]:gmatch("\27%[48;2;%d+;%d+;%d+m") do n = n + 1 end
    assert.are.equal(#out.tokens, n)
    assert.are.equal(lines[2], (heat[2]:gsub("\27%[[%d;]*m", "")))
  end)

  it("returns hidden states as vectors and projects them", function()
    local s <close> = m:session()
    s:feed("Vectors")
    local h = s:hidden(m.n_layer)
    assert.are.equal(m.n_embd, #h)
    local lg = m:project(h)
    assert.is_true(max_diff(lg, s:logits()) < 1e-4)
    assert.has_error(function() s:hidden(m.n_layer + 1) end)
  end)
end)

-- busted runs inside the tide executable: arg[-1] is its path.
local TIDE = (rawget(_G, "arg") and arg[-1] and arg[-1]:match("tide$")) and arg[-1] or "build/release/tide"
local function shquote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function run(name, args)
  local cmd = { shquote(TIDE), "recipes/" .. name .. ".lua" }
  for _, a in ipairs(args) do cmd[#cmd + 1] = shquote(a) end
  local p = assert(io.popen(table.concat(cmd, " ") .. " </dev/null 2>/dev/null", "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end
local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

describe_fix("the steering recipes", function()
  local MODEL = (FIX or "") .. "/models/llama-spm-tiny.gguf"
  local A, B, out, html = os.tmpname(), os.tmpname(), os.tmpname(), os.tmpname()
  teardown(function() for _, p in ipairs { A, B, out, html } do os.remove(p) end end)

  it("steer_train trains a steer that separates the two styles, and steer_explain reads it", function()
    write(A, "I love this. It is wonderful, great and happy. What a lovely day, I am so glad.\n")
    write(B, "I hate this. It is awful, terrible and sad. What a miserable day, I am so angry.\n")
    local text, code = run("steer_train", { A, B, "--model", MODEL, "--out", out, "--steps", "20", "--batch", "2",
                                            "--seq", "12", "--rank", "4", "--eps0", "0.5", "--quiet" })
    assert.are.equal(0, code)
    local ap, am = text:match("style A: loss ([%d.]+) at %+eps0, ([%d.]+) at %-eps0")
    local bp, bm = text:match("style B: loss ([%d.]+) at %+eps0, ([%d.]+) at %-eps0")
    assert.is_true(tonumber(ap) < tonumber(am) and tonumber(bm) < tonumber(bp))
    local m <close> = tide.load(MODEL)
    local w <close> = tide.steer.load(out, m)
    assert.are.equal(4, w.rank)
    assert.are.equal(0.5, w.eps0)
    text, code = run("steer_explain", { out, "--model", MODEL, "--k", "2", "--top", "3", "--text",
                                        "What a lovely day", "--html", html, "--no-color" })
    assert.are.equal(0, code)
    assert.is_truthy(text:find("direction 2", 1, true))
    assert.is_truthy(H.read(html):find("<span title=", 1, true))
  end)

  it("control_vector writes a llama.cpp control vector from prompt pairs", function()
    write(A, "I am happy\nWhat a joy\n")
    write(B, "I am sad\nWhat a pain\n")
    for _, method in ipairs { "mean", "pca" } do
      local text, code = run("control_vector", { "--model", MODEL, "--positive", A, "--negative", B, "--out", out,
                                                 "--method", method, "--test", "Today", "--tokens", "3" })
      assert.are.equal(0, code)
      assert.is_truthy(text:find("direction.1", 1, true))
      local info = tide.core.cvec_info(out)
      assert.are.same({ "direction.1" }, info.tensors)
    end
  end)
end)
