-- recipes_spec.lua -- tide.re, tide.json, tide.chat, and the recipes in
-- recipes/ run end to end on the fixture model (mechanics, not quality: the
-- model has random weights).
local tide = require "tide"
local re = require "tide.re"
local json = require "tide.json"
local chat = require "tide.chat"
local recipe = require "tide.recipe"
local H = require "helper"

local FIX = H.fixtures()
local describe_fix = FIX and describe or pending
local MODEL = (FIX or "") .. "/models/llama-spm-tiny.gguf"

-- busted runs inside the tide executable: arg[-1] is its path.
local TIDE = (rawget(_G, "arg") and arg[-1] and arg[-1]:match("tide$")) and arg[-1] or "build/release/tide"

local function shquote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

--- Runs a recipe as a program: stdout, stderr, exit status.
local function run_recipe(name, args)
  local cmd = { shquote(TIDE), "recipes/" .. name .. ".lua" }
  for _, a in ipairs(args) do cmd[#cmd + 1] = shquote(a) end
  local errf = os.tmpname()
  local p = assert(io.popen(table.concat(cmd, " ") .. " </dev/null 2>" .. errf, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  local err = H.read(errf)
  os.remove(errf)
  return out, err, code
end

--- Recipe options: the recipe's defaults (as parsed from no arguments),
-- then the overrides.
local function options(R, over)
  local o = recipe.parse(R.spec, {})
  for k, v in pairs(over or {}) do o[k] = v end
  return o
end

describe("tide.re", function()
  it("finds with 1-based inclusive positions and captures", function()
    assert.are.same({ 5, 6, "42" }, { re.find("x = 42", "(\\d+)") })
    assert.is_nil(re.find("abc", "\\d"))
    assert.are.same({ 3, 3 }, { re.find("aab", "b", -1) })
  end)

  it("matches captures or the whole match, Unicode-aware", function()
    assert.are.equal("12", re.match("The answer is 12.", "(?i)ANSWER IS\\s*(\\d+)"))
    assert.are.equal("héllo", re.match("say héllo!", "\\w+", 5))
    assert.are.same({ "a", false }, { re.match("a", "(a)|(b)") })
  end)

  it("iterates with gmatch, stepping over empty matches", function()
    local t = {}
    for k, v in re.gmatch("a=1, b=22", "(\\w)=(\\d+)") do t[#t + 1] = k .. v end
    assert.are.same({ "a1", "b22" }, t)
    local n = 0
    for _ in re.gmatch("abc", "x*") do n = n + 1 end
    assert.are.equal(4, n) -- as string.gmatch
  end)

  it("substitutes with gsub", function()
    assert.are.same({ "1a 2b", 2 }, { re.gsub("a1 b2", "(\\w)(\\d)", "%2%1") })
    assert.are.equal("-a-b-c-", (re.gsub("abc", "x*", "-")))
  end)

  it("raises compile errors naming the offset, and stays usable", function()
    local ok, err = pcall(re.find, "x", "a(b")
    assert.is_false(ok)
    assert.matches("pattern error at offset 3", err)
    assert.are.equal(1, (re.find("ab", "a")))
  end)
end)

describe("tide.json", function()
  it("round-trips values, with null and reproducible key order", function()
    local v = { answer = "42", votes = { 3, 1 }, f = 0.1, nested = { ok = true, s = "a\"b\n\1é" } }
    local text = json.encode(v)
    assert.are.equal('{"answer":"42","f":0.1,"nested":{"ok":true,"s":"a\\"b\\n\\u0001é"},"votes":[3,1]}', text)
    assert.are.same(v, json.decode(text))
    assert.are.equal(json.null, json.decode("[null]")[1])
    assert.are.equal("null", json.encode(-math.huge))
  end)

  it("rejects bad JSON with the offset", function()
    for _, bad in ipairs { "[1,]", '{"a" 1}', "01", "[1] x", '"\\ud800"', "nul" } do
      local ok, err = pcall(json.decode, bad)
      assert.is_false(ok, bad)
      assert.matches("^json: offset %d+:", err)
    end
  end)
end)

describe("tide.chat", function()
  local MSGS = {
    { role = "system", content = "You are helpful." },
    { role = "user", content = "Hi" },
    { role = "assistant", content = "Hello!" },
    { role = "user", content = "What is 2+2?" },
  }
  -- template snippets carrying each template's distinctive markers
  local TEMPLATES = {
    chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + " ..
             "'<|im_end|>' + '\\n'}}{% endfor %}",
    llama3 = "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + content + '<|eot_id|>' }}",
    gemma = "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}",
    phi3 = "{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n'}}",
    llama2 = "{{ bos_token + '[INST] ' + '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + content + ' [/INST]' }}",
    mistral = "{{ '[INST] ' + message['content'] + '[/INST]' }}",
  }
  local EXPECTED = {
    chatml = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n" ..
             "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n" ..
             "<|im_start|>assistant\n",
    llama3 = "<|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>" ..
             "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" ..
             "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>" ..
             "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>" ..
             "<|start_header_id|>assistant<|end_header_id|>\n\n",
    gemma = "<start_of_turn>user\nYou are helpful.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n" ..
            "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    phi3 = "<|system|>\nYou are helpful.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n" ..
           "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n",
    llama2 = "[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] What is 2+2? [/INST]",
    mistral = "[INST] You are helpful.\n\nHi[/INST] Hello!</s>[INST] What is 2+2?[/INST]",
    plain = "You are helpful.\n\nUser: Hi\nAssistant: Hello!\nUser: What is 2+2?\nAssistant:",
  }

  for name, tmpl in pairs(TEMPLATES) do
    it("detects and renders " .. name .. " for a two-turn conversation with a system message", function()
      assert.are.equal(name, chat.detect(tmpl))
      local text, used = chat.render(tmpl, MSGS)
      assert.are.equal(name, used)
      assert.are.equal(EXPECTED[name], text)
      assert.are.equal(EXPECTED[name], (chat.render(name, MSGS)))
    end)
  end

  it("renders the plain fallback", function()
    assert.are.equal(EXPECTED.plain, (chat.render("plain", MSGS)))
    assert.are.equal("User: Hi\n", (chat.render("plain", { MSGS[2] }, { add_generation_prompt = false })))
  end)

  it("names the markers it looked for when a template is not supported", function()
    local name, err = chat.detect("{{ '### Instruction:\\n' + content }}")
    assert.is_nil(name)
    assert.matches("unsupported chat template", err)
    assert.matches("<|im_start|>", err, 1, true)
    assert.matches("[INST]", err, 1, true)
    assert.has_error(function() chat.render("{{ content }}", MSGS) end)
  end)

  it("takes a model's template from its manifest, and falls back to plain without one", function()
    local with = { manifest = { chat_template = TEMPLATES.chatml }, meta = function() return nil end }
    local without = { meta = function() return nil end }
    assert.are.equal(EXPECTED.chatml, (chat.apply(with, MSGS)))
    assert.are.equal(EXPECTED.plain, (chat.apply(without, MSGS)))
    local ok, err = pcall(chat.apply, without, MSGS, { template = "template" })
    assert.is_false(ok)
    assert.matches("no chat template", err)
  end)

  it("rejects bad messages", function()
    assert.has_error(function() chat.render("chatml", { { role = "robot", content = "x" } }) end)
    assert.has_error(function() chat.render("chatml", {}) end)
  end)
end)

describe("tide.recipe options", function()
  local SPEC = { name = "t", options = { { "n", "int", 4, "" }, { "stop", "list", { "\n" }, "" } } }

  it("merges defaults, a YAML config and the command line, in that order", function()
    local cfg = os.tmpname()
    local f = assert(io.open(cfg, "w"))
    f:write("n: 6\nseed: 3\n")
    f:close()
    local o = recipe.parse(SPEC, { "--config", cfg, "--seed=9", "--json", "--stop", "a,b" })
    os.remove(cfg)
    assert.are.equal(6, o.n)
    assert.are.equal(9, o.seed)
    assert.is_true(o.json)
    assert.are.same({ "a", "b" }, o.stop)
  end)

  it("rejects unknown options, bad values and unknown config keys", function()
    assert.has_error(function() recipe.parse(SPEC, { "--nn", "3" }) end)
    assert.has_error(function() recipe.parse(SPEC, { "--n", "three" }) end)
    assert.has_error(function() recipe.parse(SPEC, { "--n" }) end)
    assert.has_error(function() recipe.parse(SPEC, { "stray" }) end)
    local cfg = os.tmpname()
    local f = assert(io.open(cfg, "w"))
    f:write("nn: 6\n")
    f:close()
    assert.has_error(function() recipe.parse(SPEC, { "--config", cfg }) end)
    os.remove(cfg)
  end)

  it("computes distinct-n", function()
    assert.are.equal(0.5, recipe.distinct_n({ { 1, 2 }, { 1, 2 } }, 1))
    assert.are.equal(1.0, recipe.distinct_n({ { 1, 2, 3 } }, 2))
  end)
end)

describe_fix("recipes on the fixture model", function()
  local m
  setup(function() m = tide.load(MODEL, { n_ctx = 256 }) end)
  teardown(function() m:close() end)

  it("cot runs the two zero-shot stages in one session and extracts the answer", function()
    local cot = recipe.load("cot")
    -- a pattern that always finds something, so extraction is exercised
    local res = cot.run(m, options(cot, { model = MODEL, max_tokens = 12, answer_tokens = 4,
                                          pattern = [[(\S+)]] }))
    assert.are.equal(2, #res.stages)
    assert.matches("Let's think step by step%.$", res.stages[1].prompt)
    assert.are.equal(" Therefore, the answer (arabic numerals) is", res.stages[2].prompt)
    assert.are.equal(re.match(res.stages[2].output, [[(\S+)]]), res.answer)
    assert.are.equal("answer", res.answer_from)
    assert.are.equal("42", cot.extract("so it is 42 apples", cot.NUMBER))
    assert.are.equal("1234", cot.extract("The answer is 1,234.", cot.FEW_SHOT_ANSWER))
  end)

  it("cot few-shot puts the YAML exemplars before the question", function()
    local cot = recipe.load("cot")
    local res = cot.run(m, options(cot, { mode = "few", n_exemplars = 2, max_tokens = 8, answer_tokens = 4 }))
    local p = res.stages[1].prompt
    assert.truthy(p:find("Tom has 3 apples", 1, true))
    assert.truthy(p:find("The answer is 24.", 1, true))
    assert.falsy(p:find("Sara", 1, true))
    assert.truthy(p:find(res.question, 1, true))
  end)

  it("self-consistency's vote equals a recount of the extracted answers", function()
    local sc = recipe.load("self_consistency")
    local res = sc.run(m, options(sc, { n = 6, max_tokens = 6, pattern = [[(\w)]], temperature = 1.5 }))
    assert.are.equal(6, #res.paths)
    local count, best, best_n = {}, nil, 0
    for _, p in ipairs(res.paths) do
      assert.are.equal(re.match(p.text, [[(\w)]]) or nil, p.answer)
      if p.answer then count[p.answer] = (count[p.answer] or 0) + 1 end
    end
    for _, v in ipairs(res.votes) do assert.are.equal(count[v.answer], v.count) end
    for _, p in ipairs(res.paths) do -- the first answer to reach the top count wins
      if p.answer and count[p.answer] > best_n then best, best_n = p.answer, count[p.answer] end
    end
    assert.are.equal(best, res.answer)
    assert.are.equal(best_n / 6, res.agreement)
  end)

  it("best-of-N returns the top-scored candidate after one prefill", function()
    local bon = recipe.load("best_of_n")
    local res = bon.run(m, options(bon, { n = 4, max_tokens = 6, stop = {} }))
    assert.are.equal(4, #res.candidates)
    for _, c in ipairs(res.candidates) do assert.is_true(res.best.score >= c.score) end
    assert.are.equal(res.candidates[1], res.best)
    -- every row the model ran: the prompt once, then one per decoded token
    assert.are.equal(res.work.prompt_tokens + res.work.decoded_tokens, res.work.rows)
  end)

  it("best-of-N verifiers pass or reject candidates", function()
    local bon = recipe.load("best_of_n")
    assert.is_true((bon.arith("3 + 4 = 7 and 2 * 5 = 10")))
    assert.is_false((bon.arith("3 + 4 = 8")))
    assert.is_false((bon.arith("no equation")))
    local res = bon.run(m, options(bon, { n = 3, max_tokens = 4, scorer = "regex", pattern = "\\d{9}" }))
    for _, c in ipairs(res.candidates) do
      assert.are.equal(c.passed and c.mean_logprob or -math.huge, c.score)
    end
  end)

  it("the pairwise judge asks in both orders and averages", function()
    local judge = recipe.load("judge")
    local res = judge.pairwise(m, options(judge, { a = "first answer", b = "second answer" }))
    assert.are.equal(2, #res.calls)
    local ab, ba = res.calls[1].prompt, res.calls[2].prompt
    assert.is_true(ab:find("Response A: first answer", 1, true) ~= nil)
    assert.is_true(ab:find("Response B: second answer", 1, true) ~= nil)
    assert.is_true(ba:find("Response A: second answer", 1, true) ~= nil)
    assert.is_true(ba:find("Response B: first answer", 1, true) ~= nil)
    local c1, c2 = res.calls[1].p, res.calls[2].p
    assert.is_near((c1.A + c2.B) / 2, res.p.a, 1e-12)
    assert.is_near((c1.B + c2.A) / 2, res.p.b, 1e-12)
    assert.is_near(1.0, res.p.a + res.p.b + res.p.tie, 1e-9)
  end)

  it("the pointwise judge gives a distribution over 1..10 and serves as a best-of-N scorer", function()
    local judge = recipe.load("judge")
    local res = judge.pointwise(m, options(judge, {}))
    local sum, mean = 0, 0
    for k, p in ipairs(res.dist) do sum, mean = sum + p, mean + k * p end
    assert.are.equal(10, #res.dist)
    assert.is_near(1.0, sum, 1e-9)
    assert.is_near(mean, res.score, 1e-9)
    local bon = recipe.load("best_of_n")
    local out = bon.run(m, options(bon, { n = 2, max_tokens = 3, scorer = "judge" }))
    for _, c in ipairs(out.candidates) do assert.is_near(c.judge.score, c.score, 1e-12) end
  end)

  it("red_team improves on its start and finds a different prompt each round", function()
    local rt = recipe.load("red_team")
    local res = rt.run(m, options(rt, { rounds = 2, iterations = 6, candidates = 8 }))
    assert.is_true(res.best.logprob >= res.start_logprob)
    assert.is_true(res.rounds[1].logprob >= res.start_logprob)
    assert.are.equal(#res.start_tokens, #res.rounds[2].tokens)
    assert.are_not.same(res.rounds[1].tokens, res.rounds[2].tokens)
    -- the batched score is log P(Y | X) as session:score computes it
    local s <close> = m:session()
    s:feed(m:tokenize("", { special = true }))
    s:feed(res.best.tokens)
    local y = m:tokenize(res.target:gsub("^ ", ""), { bos = false })
    assert.is_near(s:score(y), res.best.logprob, 1e-3)
  end)

  it("beam and sampling_sweep report per-sample log-probabilities and distinct-n", function()
    local beam = recipe.load("beam")
    local b = beam.run(m, options(beam, { width = 3, max_tokens = 5 }))
    assert.is_true(#b.beams >= 3)
    assert.is_true(b.beams[1].score >= b.beams[2].score)
    local sweep = recipe.load("sampling_sweep")
    local r = sweep.run(m, options(sweep, { samples = 3, max_tokens = 5 }))
    assert.are.equal(#sweep.DEFAULT_SETTINGS, #r.settings)
    for _, st in ipairs(r.settings) do
      assert.is_true(st.distinct_1 > 0 and st.distinct_1 <= 1)
      assert.is_true(st.mean_logprob <= 0)
    end
    assert.are.equal(1, #r.settings[1].samples) -- greedy
  end)
end)

describe_fix("recipes as programs", function()
  it("print JSON that parses with --json", function()
    local out, err, code = run_recipe("beam", { "--model", MODEL, "--json", "--max-tokens", "4", "--width", "2" })
    assert.are.equal(0, code, err)
    local v = json.decode(out)
    assert.are.equal("beam", v.recipe)
    assert.are.equal(2, v.width)
  end)

  it("explain themselves with --help", function()
    local out, _, code = run_recipe("red_team", { "--help" })
    assert.are.equal(0, code)
    assert.matches("usage: tide recipes/red_team.lua", out, 1, true)
  end)

  it("fail cleanly on bad options, missing files and a missing chat template", function()
    local _, err, code = run_recipe("cot", { "--model", MODEL, "--max-tokenz", "3" })
    assert.are.equal(2, code)
    assert.matches("cot: unknown option '--max-tokenz'", err, 1, true)
    _, err, code = run_recipe("judge", { "--model", "/nonexistent.gguf" })
    assert.are.equal(1, code)
    assert.matches("cannot open model", err, 1, true)
    _, err, code = run_recipe("cot", { "--model", MODEL, "--config", "/nonexistent.yaml" })
    assert.are.equal(1, code)
    assert.matches("nonexistent.yaml", err, 1, true)
    _, err, code = run_recipe("best_of_n", { "--model", MODEL, "--chat", "template" })
    assert.are.equal(1, code)
    assert.matches("no chat template", err, 1, true)
    assert.is_nil(err:find("traceback", 1, true))
  end)
end)
