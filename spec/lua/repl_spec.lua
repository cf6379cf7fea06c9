-- repl_spec.lua -- tide.repl's pretty printer and the `tide` executable run
-- without a terminal (the line editor itself is checked by hand: docs/repl.md).
local repl = require "tide.repl"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending
local MODEL = (FIX or "") .. "/models/llama-spm-tiny.gguf"

-- busted runs inside the tide executable: arg[-1] is its path.
local TIDE = (rawget(_G, "arg") and arg[-1] and arg[-1]:match("tide$")) and arg[-1]
             or "build/release/tide"

local function shquote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

--- Runs tide with args (strings) and stdin text; returns stdout+stderr and
-- the exit status.
local function run(args, input)
  local cmd = { shquote(TIDE) }
  for i, a in ipairs(args) do cmd[i + 1] = shquote(a) end
  local tmp
  if input then
    tmp = os.tmpname()
    local f = assert(io.open(tmp, "wb"))
    f:write(input)
    f:close()
    cmd[#cmd + 1] = "<" .. shquote(tmp)
  else
    cmd[#cmd + 1] = "</dev/null"
  end
  local p = assert(io.popen(table.concat(cmd, " ") .. " 2>&1", "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  if tmp then os.remove(tmp) end
  return out, code
end

describe("repl.format", function()
  it("prints numbers, booleans and nil as Lua's tostring does", function()
    assert.are.equal("42", repl.format(42))
    assert.are.equal("1.5", repl.format(1.5))
    assert.are.equal("1.0", repl.format(1.0))
    assert.are.equal("true", repl.format(true))
    assert.are.equal("nil", repl.format(nil))
  end)

  it("quotes strings with Lua escapes and keeps valid UTF-8 as is", function()
    assert.are.equal('"hi"', repl.format("hi"))
    assert.are.equal('"a\\nb\\t\\"q\\"\\\\"', repl.format('a\nb\t"q"\\'))
    assert.are.equal('"\\x00\\x1B\\x7F"', repl.format("\0\27\127"))
    assert.are.equal('"▁the café"', repl.format("▁the café"))
    assert.are.equal('"\\xFF\\xC3("', repl.format("\255\195("))
    -- the result is a Lua literal of the same bytes
    local s = "x\0\n\255▁"
    assert.are.equal(s, load("return " .. repl.format(s))())
  end)

  it("prints a short table on one line, sequence first, other keys sorted", function()
    assert.are.equal("{}", repl.format({}))
    assert.are.equal('{ 1, 2, "three" }', repl.format({ 1, 2, "three" }))
    assert.are.equal('{ 10, [5] = true, [7.5] = 0, a = 1, b = { c = "d" }, ["end"] = 3, ["not id"] = 2 }',
                     repl.format({ 10, a = 1, b = { c = "d" }, ["not id"] = 2, ["end"] = 3,
                                   [5] = true, [7.5] = 0 }, { width = 100 }))
  end)

  it("breaks a table that does not fit the width into indented lines", function()
    local t = { name = "a fairly long string value", list = { 1, 2, 3 },
                nested = { deeper = { text = string.rep("x", 70) } } }
    assert.are.equal(table.concat({
      "{",
      "  list = { 1, 2, 3 },",
      '  name = "a fairly long string value",',
      "  nested = {",
      "    deeper = {",
      '      text = "' .. string.rep("x", 70) .. '"',
      "    }",
      "  }",
      "}" }, "\n"), repl.format(t))
    assert.are.equal("{\n  1,\n  2\n}", repl.format({ 1, 2 }, { width = 5 }))
  end)

  it("marks a cycle and labels the table it leads back to", function()
    local t = { name = "root" }
    t.self = t
    assert.are.equal('<1>{ name = "root", self = <cycle 1> }', repl.format(t))
    local a, b = {}, {}
    a.b, b.a = b, a
    assert.are.equal("{ x = <1>{ b = { a = <cycle 1> } } }", repl.format({ x = a }))
  end)

  it("prints a table shared by two keys twice, without marking a cycle", function()
    local shared = { 1 }
    assert.are.equal("{ a = { 1 }, b = { 1 } }", repl.format({ a = shared, b = shared }))
  end)

  it("cuts tables deeper than depth and entries past items", function()
    local deep = { a = { b = { c = { d = { e = 1 } } } } }
    assert.are.equal("{ a = { b = { c = { d = {...} } } } }", repl.format(deep))
    assert.are.equal("{ a = { b = {...} } }", repl.format(deep, { depth = 2 }))
    local long = {}
    for i = 1, 60 do long[i] = i end
    local out = repl.format(long)
    assert.are.equal("  50,\n  ...(+10 more)\n}", out:sub(-23))
    assert.are.equal("{ 1, 2, ...(+58 more) }", repl.format(long, { items = 2 }))
  end)

  it("cuts long strings inside tables but not at the top level", function()
    local s = string.rep("ab", 100)
    assert.are.equal('{ "' .. string.rep("ab", 5) .. '"...(+190 bytes) }',
                     repl.format({ s }, { string = 10 }))
    assert.are.equal('"' .. s .. '"', repl.format(s, { string = 10 }))
  end)

  it("uses __tostring for objects and tostring for functions", function()
    local obj = setmetatable({ hidden = 1 }, { __tostring = function() return "Obj<1>" end })
    assert.are.equal("{ o = Obj<1> }", repl.format({ o = obj }))
    assert.is_truthy(repl.format(print):match("^builtin: ") or repl.format(print):match("^function: "))
  end)

  it("rejects unknown options", function()
    assert.has_error(function() repl.format(1, { dpeth = 3 }) end, "repl.format: unknown option 'dpeth'")
  end)
end)

describe("repl.format_results", function()
  it("joins one-line results with tabs and multi-line ones with newlines", function()
    assert.are.equal('1\t"two"\t{ 3 }\tnil', repl.format_results(table.pack(1, "two", { 3 }, nil)))
    assert.are.equal("1\n{\n  1,\n  2\n}", repl.format_results(table.pack(1, { 1, 2 }), { width = 5 }))
  end)

  it("prints the two arrays of topk as one ranked table", function()
    local out = repl.format_results(table.pack({ 7, 3 }, { 2.5, -1.25 }))
    assert.are.equal(table.concat({
      "topk: 2 ids and logits",
      "#  id    logit",
      "1   7   2.5000",
      "2   3  -1.2500" }, "\n"), out)
  end)

  it("leaves other pairs of arrays alone", function()
    assert.are.equal("{ 1, 2 }\t{ 3, 4 }", repl.format_results(table.pack({ 1, 2 }, { 3, 4 })))
  end)
end)

describe("repl.bar", function()
  it("draws eighths of a block, width columns at p = 1", function()
    assert.are.equal("████", repl.bar(1, 4))
    assert.are.equal("██▌", repl.bar(0.625, 4))
    assert.are.equal("", repl.bar(0, 4))
  end)
end)

describe_fix("repl.format of a logits view", function()
  local tide = require "tide"
  local m, s

  setup(function()
    m = tide.load(MODEL, { n_ctx = 64 })
    s = m:session()
    s:feed("Hello world")
  end)
  teardown(function() s:close(); m:close() end)

  -- rows of the formatted view: { line, prefix columns before the bar, fields }
  local function rows(out)
    local t = {}
    for line in out:gmatch("[^\n]+") do
      local pre, b = line:match("^(%s*%d+%s+%d+%s+\".-\"%s+%-?%d+%.%d+%s+[%d.e%-]+)  ([█▏▎▍▌▋▊▉]*)$")
      if pre then t[#t + 1] = { line = line, cols = utf8.len(pre), bar = utf8.len(b), fields = pre } end
    end
    return t
  end

  it("shows the top 10 tokens in aligned rows with pieces, logits, probabilities and bars", function()
    local lg = s:logits()
    local out = repl.format(lg, { model = m })
    assert.is_truthy(out:match("^tide%.Logits %(32000 entries%): top 10 by logit\n"))
    assert.is_truthy(out:find("\n #     id  piece%s+logit    prob\n"))
    local r = rows(out)
    assert.are.equal(10, #r)
    local ids = lg:topk(10)
    for i, row in ipairs(r) do
      assert.are.equal(r[1].cols, row.cols) -- every row ends its numbers in one column
      local rank, id, piece = row.fields:match("^%s*(%d+)%s+(%d+)%s+(\".-\")")
      assert.are.equal(i, tonumber(rank))
      assert.are.equal(ids[i], tonumber(id))
      assert.are.equal(repl.quote(m:piece(ids[i]), 24), piece)
      if i > 1 then assert.is_true(row.bar <= r[i - 1].bar) end
    end
    assert.is_true(r[1].bar >= 1)
    local p1 = tonumber(r[1].fields:match("(%S+)$"))
    assert.is_true(math.abs(p1 - math.exp(lg:logprob(ids[1]))) < 1e-4)
  end)

  it("finds the model through the sessions and models in a scope", function()
    local out = repl.format(s:logits(), { scope = { sess = s } })
    assert.are.equal(10, #rows(out))
    assert.is_truthy(repl.format(s:logits()):find("no model in scope", 1, true))
  end)

  it("shows a softmax view as probabilities without a logit column", function()
    local out = repl.format(s:logits():softmax(), { model = m })
    assert.is_truthy(out:find("top 10 probabilities", 1, true))
    assert.is_falsy(out:find("logit", 1, true))
  end)

  it("says when a view is stale instead of raising", function()
    local lg = s:logits()
    local s2 <close> = m:session()
    s2:feed("Other")
    assert.is_truthy(repl.format(lg, { model = m }):find("stale logits view", 1, true))
  end)
end)

describe("the tide executable", function()
  it("prints the value of an expression read from a pipe", function()
    local out, code = run({}, "return 1+1\n")
    assert.are.equal("2\n", out)
    assert.are.equal(0, code)
  end)

  it("reads a chunk over several lines and prints tables readably", function()
    local out = run({}, "t = {\n  b = 2,\n  a = 'x',\n}\nt\nfor i = 1, 2 do\n  print(i)\nend\n")
    assert.are.equal('{ a = "x", b = 2 }\n1\n2\n', out)
  end)

  it("reports an error and goes on with the next line", function()
    local out, code = run({}, "error('boom')\nreturn 3\n")
    assert.is_truthy(out:find("^tide: stdin:1: boom\n"))
    assert.is_truthy(out:find("\n3\n$"))
    assert.are.equal(0, code)
  end)

  it("runs -e chunks in order", function()
    local out, code = run({ "-e", "x = 20", "-e", "print(x + 1, tide.version)" })
    assert.is_truthy(out:match("^21\t%d+%.%d+%.%d+\n$"))
    assert.are.equal(0, code)
  end)

  it("passes script arguments in arg as stock lua does", function()
    local out = run({ "-", "a", "b" }, "print(arg[0], arg[1], arg[2], select('#', ...))\n")
    assert.are.equal("-\ta\tb\t2\n", out)
  end)

  it("prints 'tide: message' and exits 1 on errors", function()
    local out, code = run({ "-e", "error('bad', 0)" })
    assert.is_truthy(out:find("^tide: bad\n"))
    assert.are.equal(1, code)
    out, code = run({ "-x" })
    assert.is_truthy(out:find("^tide: unrecognized option '%-x'\nusage: tide"))
    assert.are.equal(1, code)
    out, code = run({ "-m", "no/such.gguf" })
    assert.are.equal("tide: cannot open 'no/such.gguf': No such file or directory\n", out)
    assert.are.equal(1, code)
  end)

  it("prints the usage for -h", function()
    local out, code = run({ "-h" })
    assert.is_truthy(out:find("^usage: tide %[options%]"))
    assert.are.equal(0, code)
  end)
end)

describe_fix("the tide executable with -m", function()
  it("loads the model into the global `model` before -e", function()
    local out, code = run({ "-m", MODEL, "-e", "print(model.arch, model.n_vocab)" })
    assert.are.equal("llama\t32000\n", out)
    assert.are.equal(0, code)
  end)

  it("prints a logits view in the REPL with the model's pieces", function()
    local out = run({ "-m", MODEL }, 's = model:session()\ns:feed("Hello world")\ns:logits()\n')
    assert.is_truthy(out:find("tide.Logits (32000 entries): top 10 by logit\n", 1, true))
    assert.is_truthy(out:find('\n 1%s+%d+%s+"'))
  end)
end)
