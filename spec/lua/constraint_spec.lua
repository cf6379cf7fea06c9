-- constraint_spec.lua -- regex, choice and grammar constraints from Lua.
local tide = require "tide"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending

describe("tide.regex / tide.grammar compile errors", function()
  it("name the offset, the construct, or the line and column", function()
    local ok, err = pcall(tide.regex, "(ab")
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("offset", 1, true))
    ok, err = pcall(tide.regex, "(a)\\1")
    assert.is_false(ok)
    assert.is_truthy(tostring(err):lower():find("backreference", 1, true))
    ok, err = pcall(tide.grammar, 'root ::= valu\nvalue ::= "x"')
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("line 1", 1, true))
    assert.is_truthy(tostring(err):find("valu", 1, true))
    ok, err = pcall(tide.grammar.file, "grammars/no-such.gbnf")
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("no-such", 1, true))
    -- and compiling still works afterwards
    assert.is_truthy(tide.regex "[a-z]+")
  end)

  it("compiles every shipped grammar", function()
    for _, name in ipairs { "json", "json_arr", "arithmetic", "list", "chess", "c_expr" } do
      assert.is_truthy(tide.grammar.file("grammars/" .. name .. ".gbnf"))
    end
  end)
end)

describe_fix("constrained generation", function()
  local m
  setup(function() m = tide.load(FIX .. "/models/gpt2-tiny.gguf", { n_ctx = 128 }) end)
  teardown(function() m:close() end)

  local function prompt()
    local s = m:session { seed = 5 }
    s:feed("Answer:")
    return s
  end

  it("generates text the regex matches in full (checked by PCRE2)", function()
    for seed = 1, 4 do
      local s <close> = prompt()
      local pat = "[0-9]{3}-[a-z]{2,4}"
      local text, info = s:generate { constraint = tide.regex(pat), max_tokens = 20, seed = seed,
                                      sampler = { temperature = 1.5 } }
      assert.is_true(info.accepted)
      assert.is_truthy(tide.re.find(text, "^" .. pat .. "$"))
    end
  end)

  it("picks exactly one of the choices", function()
    local s <close> = prompt()
    local text, info = s:generate { constraint = tide.choice { " red", " green", " blue" },
                                    sampler = { temperature = 1.0 } }
    assert.is_true(text == " red" or text == " green" or text == " blue")
    assert.are.equal("constraint", info.stop_reason)
  end)

  it("follows a grammar and ends when it is complete", function()
    local s <close> = prompt()
    local g = tide.grammar 'root ::= "(" [a-z]{1,6} ("," [a-z]{1,6})? ")"'
    local text, info = s:generate { constraint = g, max_tokens = 30, sampler = { temperature = 1.0 } }
    assert.is_true(info.accepted)
    assert.is_truthy(text:match("^%([a-z]+,?[a-z]*%)$"))
  end)

  it("gives every best-of-N candidate its own matcher", function()
    local s <close> = prompt()
    local _, info = s:best_of_n { n = 4, max_tokens = 12, constraint = tide.regex "[A-Z][a-z]{1,8}!" }
    for _, c in ipairs(info.candidates) do
      assert.is_true(c.accepted)
      assert.is_truthy(c.text:match("^[A-Z][a-z]+!$"))
    end
  end)
end)

describe_fix("JSON Schema constraints", function()
  it("generates compact instances valid under the schema", function()
    local m <close> = tide.load(FIX .. "/models/gpt2-tiny.gguf", { n_ctx = 128 })
    local schema = { type = "object",
                     properties = { name = { type = "string", maxLength = 6 },
                                    age = { type = "integer", minimum = 0, maximum = 120 } },
                     required = { "name", "age" }, additionalProperties = false }
    local c = tide.json_schema(schema)
    for seed = 1, 3 do
      local s <close> = m:session { seed = seed }
      s:feed("JSON:")
      local text, info = s:generate { constraint = c, max_tokens = 40, sampler = { temperature = 1.0 } }
      assert.is_true(info.accepted)
      local v = tide.json.decode(text)
      assert.is_string(v.name)
      assert.is_true(utf8.len(v.name) <= 6)
      assert.is_true(math.type(v.age) == "integer" and v.age >= 0 and v.age <= 120)
    end
    local ok, err = pcall(tide.json_schema, { type = "string", ["not"] = { const = "x" } })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("not", 1, true))
  end)
end)

describe_fix("unsatisfiable constraints", function()
  it("stop with stop_reason 'dead_end' instead of failing in the sampler", function()
    local m <close> = tide.load(FIX .. "/models/gpt2-tiny.gguf", { n_ctx = 64 })
    local s <close> = m:session { seed = 1 }
    s:feed("N:")
    local c = tide.json_schema { type = "integer", minimum = 5, maximum = 4 }
    local text, info = s:generate { constraint = c, max_tokens = 8 }
    assert.are.equal("dead_end", info.stop_reason)
    assert.is_false(info.accepted)
    assert.are.equal("", text)
    local _, bo = s:best_of_n { n = 2, max_tokens = 4, constraint = c }
    for _, cand in ipairs(bo.candidates) do assert.are.equal("dead_end", cand.stop_reason) end
  end)
end)
