-- yaml_spec.lua -- tide.yaml (load, load_file, dump) and tide.manifest.
local yaml = require "tide.yaml"
local manifest = require "tide.manifest"
local core = require "tide.core"

local NULL = yaml.null

local function err_of(f, ...)
  local ok, msg = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(msg)
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Nested [[[...]]] or a: a: a: ... of depth n.
local function nested_seq(n) return string.rep("[", n) .. string.rep("]", n) end

describe("tide.yaml.load", function()
  it("resolves plain scalars to integers, floats, booleans, null and strings", function()
    local v = yaml.load [[
int: 42
neg: -7
plus: +3
hex: 0x1F
oct: 0o17
float: 1.5
exp: 1e3
dot: .5
inf: .inf
ninf: -.Inf
big: 99999999999999999999
text: hello world
zip: 0755
]]
    assert.are.equal(42, v.int); assert.are.equal("integer", math.type(v.int))
    assert.are.equal(-7, v.neg)
    assert.are.equal(3, v.plus)
    assert.are.equal(31, v.hex)
    assert.are.equal(15, v.oct)
    assert.are.equal(1.5, v.float)
    assert.are.equal("float", math.type(v.exp)); assert.are.equal(1000.0, v.exp)
    assert.are.equal(0.5, v.dot)
    assert.are.equal(math.huge, v.inf)
    assert.are.equal(-math.huge, v.ninf)
    assert.are.equal("float", math.type(v.big))
    assert.are.equal("hello world", v.text)
    assert.are.equal("0755", v.zip)
    local nan = yaml.load(".nan")
    assert.is_true(nan ~= nan)
  end)

  it("reads YAML 1.1 booleans in three cases, but not y and n", function()
    for _, w in ipairs { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON" } do
      assert.are.equal(true, yaml.load(w), w)
    end
    for _, w in ipairs { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF" } do
      assert.are.equal(false, yaml.load(w), w)
    end
    assert.are.equal("y", yaml.load("y"))
    assert.are.equal("n", yaml.load("n"))
    assert.are.equal("tRUE", yaml.load("tRUE"))
  end)

  it("loads ~, null and empty values as tide.yaml.null, keeping keys and positions", function()
    local v = yaml.load("a: ~\nb: null\nc:\nd: [1, ~, 3]\n")
    assert.are.equal(NULL, v.a)
    assert.are.equal(NULL, v.b)
    assert.are.equal(NULL, v.c)
    assert.are.equal(3, #v.d)
    assert.are.equal(NULL, v.d[2])
    assert.are.equal(NULL, yaml.load("~"))
  end)

  it("keeps quoted and block scalars as strings", function()
    local v = yaml.load("a: '1'\nb: \"true\"\nc: ''\nd: |\n  12\ne: \"~\"\n")
    assert.are.same({ a = "1", b = "true", c = "", d = "12\n", e = "~" }, v)
  end)

  it("honours the standard tags", function()
    local v = yaml.load("a: !!str 12\nb: !!float 3\nc: !!int \"7\"\nd: !!bool yes\n")
    assert.are.equal("12", v.a)
    assert.are.equal("float", math.type(v.b))
    assert.are.equal(7, v.c)
    assert.are.equal(true, v.d)
    assert.matches("'1.5' is not a valid value for tag '!!int'", err_of(yaml.load, "!!int 1.5"), 1, true)
    assert.matches("unsupported tag '!thing'", err_of(yaml.load, "a: !thing x"), 1, true)
  end)

  it("builds nested mappings and 1-based sequences", function()
    local v = yaml.load [[
model:
  layers: [1, 2, 3]
  heads:
    - name: q
      dim: 64
    - name: k
      dim: 16
1: one
flow: {x: [a, {y: z}]}
]]
    assert.are.same({ model = { layers = { 1, 2, 3 },
                                heads = { { name = "q", dim = 64 }, { name = "k", dim = 16 } } },
                      [1] = "one", flow = { x = { "a", { y = "z" } } } }, v)
  end)

  it("returns nil for an empty stream and rejects a second document", function()
    assert.is_nil(yaml.load(""))
    assert.is_nil(yaml.load("# only a comment\n"))
    assert.are.equal(5, yaml.load("--- 5\n"))
    assert.are.equal("yaml line 3, column 1: a second document in the stream (expected one)",
                     err_of(yaml.load, "---\na: 1\n---\nb: 2\n"))
  end)

  it("makes an alias the same table as its anchor", function()
    local v = yaml.load [[
base: &b {top_k: 40, temperature: 0.8}
fast: *b
list: [&s seven, *s]
]]
    assert.are.equal(v.base, v.fast)
    assert.are.same({ "seven", "seven" }, v.list)
  end)

  it("rejects undefined and recursive aliases", function()
    assert.are.equal("yaml line 1, column 4: undefined alias '*nope'", err_of(yaml.load, "a: *nope"))
    assert.matches("alias '*x' is inside its own anchor", err_of(yaml.load, "a: &x [1, *x]"), 1, true)
  end)

  it("bounds the expansion of aliases (billion laughs)", function()
    local lines = { "a: &a [x, x, x, x, x, x, x, x, x, x]" }
    for i = 2, 9 do
      local me, prev = string.char(96 + i), string.char(95 + i)
      lines[i] = string.format("%s: &%s [%s]", me, me, string.rep("*" .. prev, 10, ", "))
    end
    local doc = table.concat(lines, "\n")
    assert.matches("yaml line 6, column %d+: document has more than 1000000 nodes with aliases expanded",
                   err_of(yaml.load, doc))
    -- the first five levels are 111111 nodes: fine by default, too many for a small cap
    local small = table.concat(lines, "\n", 1, 5)
    local v = yaml.load(small)
    assert.are.equal(v.d, v.e[1])
    assert.are.equal(v.e[1], v.e[10])
    assert.matches("more than 1000 nodes", err_of(yaml.load, small, { max_nodes = 1000 }), 1, true)
  end)

  it("names the line and column of a malformed document", function()
    assert.are.equal("yaml line 3, column 5: mapping values are not allowed in this context",
                     err_of(yaml.load, "a: 1\nb: 2\nc: d: e\n"))
    assert.matches("^yaml line 2, column 1: did not find expected ',' or ']'",
                   err_of(yaml.load, "[1, 2\n"))
    assert.matches("^yaml line 2, column 1: invalid leading UTF%-8 octet",
                   err_of(yaml.load, "a: 1\n\255\n"))
  end)

  it("rejects duplicate keys, naming the second", function()
    assert.are.equal("yaml line 3, column 1: duplicate key 'a'", err_of(yaml.load, "a: 1\nb: 2\na: 3\n"))
  end)

  it("stops deep nesting with a clear error instead of overflowing", function()
    assert.are.equal("yaml line 1, column 201: nesting deeper than 200 levels (max_depth)",
                     err_of(yaml.load, nested_seq(100000)))
    local deep = "x"
    for _ = 1, 300 do deep = "{a: " .. deep .. "}" end
    assert.matches("nesting deeper than 200 levels", err_of(yaml.load, deep), 1, true)
    local v = yaml.load(deep, { max_depth = 300 })
    for _ = 1, 300 do v = v.a end
    assert.are.equal("x", v)
    assert.are.equal(1, #yaml.load(nested_seq(200)))
  end)

  it("returns the line of every key and item when asked", function()
    local v, lines = yaml.load("a: 1\nb:\n  c: 2\n  d:\n    - x\n    - y\n", { lines = true })
    assert.are.equal(1, lines[v].a)
    assert.are.equal(2, lines[v].b)
    assert.are.equal(3, lines[v.b].c)
    assert.are.equal(6, lines[v.b.d][2])
  end)

  it("checks its arguments and options", function()
    assert.matches("string expected, got nil", err_of(yaml.load))
    assert.matches("unknown option 'depth'", err_of(yaml.load, "a", { depth = 3 }), 1, true)
    assert.matches("option 'max_depth'", err_of(yaml.load, "a", { max_depth = 0 }), 1, true)
  end)
end)

describe("tide.yaml.load_file", function()
  it("reads a file and prefixes errors with its path", function()
    local path = os.tmpname()
    write(path, "name: tiny\nsizes: [1, 2]\n")
    assert.are.same({ name = "tiny", sizes = { 1, 2 } }, yaml.load_file(path))
    write(path, "name: tiny\n  bad: indent\n")
    assert.matches("^" .. path:gsub("%p", "%%%0") .. ": yaml line 2, column %d+: ",
                   err_of(yaml.load_file, path))
    os.remove(path)
    assert.matches("No such file", err_of(yaml.load_file, path), 1, true)
  end)
end)

describe("tide.yaml.dump", function()
  local cases = {
    { a = 1, b = { 1, 2, 3 }, c = { d = { e = "f" } } },
    { "x", 2, 3.5, true, false, { nested = { 1, { 2 } } } },
    { s = { "1", "1.5", "true", "yes", "off", "null", "~", "", " padded ", "0x10", "-.inf",
            "a: b", "- item", "#hash", "multi\nline\n", "no newline\nat end", "tab\there",
            "ünïcødé ✓", "quote's \"both\"", "\0nul" } },
    { ints = { 0, -1, math.maxinteger, math.mininteger },
      floats = { 0.1, 1 / 3, 3.0, -0.5, 1e300, 5e-324, math.huge, -math.huge, 2^53 } },
    { [1] = "one", [3] = "three", [2.5] = "half", [true] = "yes", [false] = "no" },
    { empty = {}, nul = NULL, list = { NULL, 1 } },
    "just a string", 42, 2.0, true, NULL,
  }

  it("round-trips values: load(dump(v)) equals v", function()
    for i, v in ipairs(cases) do
      local text = yaml.dump(v)
      assert.are.same(v, yaml.load(text), "case " .. i .. ":\n" .. text)
    end
  end)

  it("keeps integer and float types apart", function()
    local v = yaml.load(yaml.dump { i = 3, f = 3.0 })
    assert.are.equal("integer", math.type(v.i))
    assert.are.equal("float", math.type(v.f))
  end)

  it("writes block style with sorted keys and quotes what would change type", function()
    assert.are.equal("a: 1\nb:\n- '2'\n- x\nc: 'yes'\n", yaml.dump { c = "yes", a = 1, b = { "2", "x" } })
    assert.are.equal("t: |\n  line 1\n  line 2\n", yaml.dump { t = "line 1\nline 2\n" })
  end)

  it("writes a shared table at each place it is used", function()
    local shared = { k = 1 }
    local v = yaml.load(yaml.dump { a = shared, b = shared })
    assert.are.same({ a = { k = 1 }, b = { k = 1 } }, v)
  end)

  it("rejects cycles, functions, binary strings and bad keys", function()
    local t = { x = {} }
    t.x.back = t
    assert.matches("a table contains itself", err_of(yaml.dump, t), 1, true)
    assert.matches("cannot dump a function", err_of(yaml.dump, { f = print }), 1, true)
    assert.matches("not valid UTF-8", err_of(yaml.dump, "\255\254"), 1, true)
    assert.matches("cannot dump a table as a mapping key", err_of(yaml.dump, { [{}] = 1 }), 1, true)
  end)

  it("stops deep nesting with a clear error", function()
    local deep = {}
    for _ = 1, 500 do deep = { deep } end
    assert.matches("nesting deeper than 200 levels", err_of(yaml.dump, deep), 1, true)
  end)
end)

describe("tide.manifest", function()
  local base, model, ypath

  before_each(function()
    base = os.tmpname()
    model = base .. ".gguf"
    ypath = base .. ".yaml"
  end)
  after_each(function()
    os.remove(ypath)
    os.remove(base)
  end)

  it("finds the manifest by replacing .gguf with .yaml", function()
    assert.are.equal("/m/tiny.yaml", manifest.path_for("/m/tiny.gguf"))
    assert.are.equal("/m/tiny.yaml", manifest.path_for("/m/tiny.GGUF"))
    assert.are.equal("/m/tiny.bin.yaml", manifest.path_for("/m/tiny.bin"))
  end)

  it("returns nil when the model has no manifest", function()
    assert.is_nil(manifest.for_model(model))
  end)

  it("loads and validates a full manifest", function()
    write(ypath, [[
name: tiny-llama
description: A tiny test model.
chat_template: |
  {% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}
sampler:
  top_k: 40
  top_p: 0.95
  temperature: 0.7
  repeat_penalty: 1.1
  penalty_last_n: 64
  seed: 7
files:
  tokenizer: tokenizer.json
  adapter: sub/lora.gguf
  abs: /opt/x.bin
extra:
  license: MIT
  tags: [tiny, test]
]])
    local mf = manifest.for_model(model)
    local dir = ypath:match("^(.*)/")
    assert.are.equal(ypath, mf.path)
    assert.are.equal("tiny-llama", mf.name)
    assert.are.equal("A tiny test model.", mf.description)
    assert.matches("^{%% for m in messages %%}", mf.chat_template)
    assert.are.same({ top_k = 40, top_p = 0.95, temperature = 0.7, repeat_penalty = 1.1,
                      penalty_last_n = 64, seed = 7 }, mf.sampler)
    assert.are.same({ tokenizer = dir .. "/tokenizer.json", adapter = dir .. "/sub/lora.gguf",
                      abs = "/opt/x.bin" }, mf.files)
    assert.are.same({ license = "MIT", tags = { "tiny", "test" } }, mf.extra)
    local spec = require("tide.sampler").new(mf.sampler)
    assert.is_false(spec:is_greedy())
  end)

  it("accepts an empty manifest and treats null values as absent", function()
    write(ypath, "")
    assert.are.same({ path = ypath }, manifest.for_model(model))
    write(ypath, "name: x\ndescription:\nsampler: ~\n")
    assert.are.same({ path = ypath, name = "x" }, manifest.for_model(model))
  end)

  it("names unknown top-level keys with their lines", function()
    write(ypath, "name: x\ntemprature: 0.7\nauthor: me\n")
    local msg = err_of(manifest.for_model, model)
    assert.matches(ypath .. ": unknown keys 'author' (line 3), 'temprature' (line 2)", msg, 1, true)
    assert.matches("expected one of: chat_template, description, extra, files, name, sampler", msg, 1, true)
  end)

  it("names the key and line of a wrong type", function()
    write(ypath, "name: x\ndescription: 12\n")
    assert.are.equal(ypath .. " line 2: 'description' string expected, got integer",
                     err_of(manifest.for_model, model))
    write(ypath, "sampler:\n  top_p: 0.9\n  top_k: 0.5\n")
    assert.are.equal(ypath .. " line 3: 'sampler.top_k' integer expected, got float",
                     err_of(manifest.for_model, model))
    write(ypath, "sampler: [1, 2]\n")
    assert.are.equal(ypath .. " line 1: 'sampler' mapping expected, got sequence",
                     err_of(manifest.for_model, model))
    write(ypath, "files:\n  a: [x]\n")
    assert.are.equal(ypath .. " line 2: 'files.a' string expected, got sequence",
                     err_of(manifest.for_model, model))
    write(ypath, "- a\n- b\n")
    assert.matches("mapping expected at the top level, got sequence", err_of(manifest.for_model, model),
                   1, true)
  end)

  it("rejects unknown sampler options and values out of range", function()
    write(ypath, "sampler:\n  top_k: 40\n  logit_bias: {}\n")
    assert.matches(ypath .. " line 3: 'sampler.logit_bias' is not a sampler option", err_of(manifest.for_model, model),
                   1, true)
    write(ypath, "sampler:\n  top_p: 1.5\n")
    assert.are.equal(ypath .. " line 2: 'sampler.top_p' 1.5 out of range 0..1",
                     err_of(manifest.for_model, model))
  end)

  it("reports a malformed manifest with its path, line and column", function()
    write(ypath, "name: x\nsampler:\n  top_k: 40\n top_p: 0.9\n")
    assert.matches("^" .. ypath:gsub("%p", "%%%0") .. ": yaml line 4, column 2: ",
                   err_of(manifest.for_model, model))
  end)
end)

describe("tide.yaml after errors", function()
  it("leaves the runtime working", function()
    local bad = { "a: b: c", nested_seq(5000), "a: *x", "[1, 2", "\255", "---\n1\n---\n2" }
    for round = 1, 200 do
      local ok = pcall(yaml.load, bad[round % #bad + 1])
      assert.is_false(ok)
      local cyc = {}
      cyc[1] = cyc
      assert.is_false((pcall(yaml.dump, cyc)))
    end
    collectgarbage()
    collectgarbage()
    assert.are.same({ ok = true }, yaml.load("ok: yes"))
    assert.are.equal("ok: true\n", yaml.dump { ok = true })
    assert.is_true(core.threads() >= 1)
    assert.are.same({ 1, 2 }, yaml.load(yaml.dump { 1, 2 }))
  end)
end)

describe("tide.load with a manifest", function()
  local H = require "helper"
  local FIX = H.fixtures()
  local it_fix = FIX and it or pending
  it_fix("reads the YAML beside the model and uses its default sampler", function()
    local tide = require "tide"
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local model = dir .. "/tiny.gguf"
    local abs = FIX:sub(1, 1) == "/" and FIX or (io.popen("pwd"):read("l") .. "/" .. FIX)
    assert(os.execute(string.format("ln -s %q %q", abs .. "/models/llama-spm-tiny.gguf", model)))
    local f = assert(io.open(dir .. "/tiny.yaml", "w"))
    f:write("name: tiny\ndescription: a fixture\nsampler:\n  top_k: 1\n  temperature: 0.7\n")
    f:close()
    local m <close> = tide.load(model, { n_ctx = 64 })
    assert.are.equal("tiny", m.manifest.name)
    local s <close> = m:session { seed = 4 }
    s:feed("Once upon a time")
    local kid <close> = s:fork()
    -- top_k = 1 makes the manifest's sampler greedy in effect
    local _, a = s:generate { max_tokens = 6, ignore_eog = true }
    local _, b = kid:generate { max_tokens = 6, ignore_eog = true, sampler = "greedy" }
    assert.are.same(b.tokens, a.tokens)
    f = assert(io.open(dir .. "/tiny.yaml", "w"))
    f:write("name: tiny\nbogus_key: 1\n")
    f:close()
    local ok, err = pcall(tide.load, model)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("bogus_key", 1, true))
    os.execute("rm -rf " .. dir)
  end)
end)
