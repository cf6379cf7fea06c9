-- constraint_accept_spec.lua -- issue 4's acceptance checks for constrained
-- generation, judged by oracles that share no code with the engine:
--  * sampled outputs (>= 200 seeds per constraint, temperature 1.5, no
--    top-k, over both fixture vocabularies) satisfy their regex (PCRE2), GBNF
--    grammar (spec/lua/support/backtrack.lua) or JSON Schema
--    (spec/lua/support/jsonschema_validate.lua); unfinished outputs are
--    prefixes; generation never dead-ends;
--  * grammar verdicts (whole string, and "can still be completed") agree
--    with the backtracking recognizer on hand-labelled, generated and mutated
--    strings over ~50 small grammars;
--  * malformed grammars are rejected with the right line and column.
-- TIDE_ACCEPT_SCALE=k multiplies the sample counts; TIDE_SPEC_VERBOSE=1
-- prints per-constraint statistics.
local tide = require "tide"
local H = require "helper"
local B = require "lua.support.backtrack"
local V = require "lua.support.jsonschema_validate"

local FIX = H.fixtures()
local MODELS = { "gpt2-tiny.gguf", "llama-spm-tiny.gguf" }
local function have_models()
  if not FIX then return false end
  for _, name in ipairs(MODELS) do
    local f = io.open(FIX .. "/models/" .. name, "rb")
    if not f then return false end
    f:close()
  end
  return true
end
local describe_fix = have_models() and describe or pending
local VERBOSE = os.getenv("TIDE_SPEC_VERBOSE")
local SCALE = tonumber(os.getenv("TIDE_ACCEPT_SCALE") or "1") or 1

local function say(fmt, ...)
  if VERBOSE then io.stderr:write(string.format(fmt, ...), "\n") end
end

local function fmt_failures(list)
  local out = {}
  for i = 1, math.min(#list, tonumber(os.getenv("TIDE_SPEC_SHOW") or 8)) do out[i] = list[i] end
  if #list > #out then out[#out + 1] = string.format("... and %d more", #list - #out) end
  return table.concat(out, "\n")
end

-- ------------------------------------------------------------------ sampling

local BATCH = 16                                -- candidates per best_of_n call
local BATCHES = math.max(1, math.floor(13 * SCALE)) -- 13 * 16 = 208 seeds

-- Ids of tokens whose piece is one of `pieces` (scanned once per model).
local function token_ids(m, pieces)
  local want, ids = {}, {}
  for _, p in ipairs(pieces) do want[p] = true end
  for id = 0, m.n_vocab - 1 do
    if want[m:piece(id)] then ids[#ids + 1] = id end
  end
  return ids
end

-- A logit bias that makes outputs end sooner: end-of-generation (legal only
-- where the text is a complete match) and closing punctuation. The mask
-- still decides what is legal; the bias only reweighs legal tokens.
local CLOSERS = { '"', '",', '"}', '"]', "}", "]", "}]", "]}", ",", "\n", ")", " ", "-", ":" }
local function ending_bias(m)
  local bias = {}
  for _, id in ipairs(token_ids(m, CLOSERS)) do bias[id] = 12 end
  local sp = m:special()
  if sp.eos then bias[sp.eos] = 15 end
  return bias
end

local function regex_check(pat)
  local full = "^(?:" .. pat .. ")\\z"
  return function(text) return tide.re.find(text, full) ~= nil end
end

describe_fix("sampled outputs under a constraint", function()
  local models = {}
  setup(function()
    for i, name in ipairs(MODELS) do
      local m = tide.load(FIX .. "/models/" .. name, { n_ctx = 128, n_cells = 4096 })
      models[i] = { m = m, name = name, bias = ending_bias(m) }
    end
  end)
  teardown(function()
    for _, mm in ipairs(models) do mm.m:close() end
  end)

  -- Samples BATCHES x 16 seeds (batches alternate between the two models;
  -- two thirds of them with the ending bias) and checks every candidate.
  -- opts: max_tokens, check(text) for accepted outputs, prefix(text, model)
  -- for unfinished ones (optional), min_accepted (fraction).
  local function sample_and_check(c, opts)
    local st = { n = 0, accepted = 0, dead = 0, differ = 0, fail = {}, ends = {} }
    local t0 = os.clock()
    for b = 1, BATCHES do
      local mm = models[(b - 1) % #models + 1]
      local m = mm.m
      local s <close> = m:session { seed = b }
      s:feed "Output:"
      local sampler = { temperature = 1.5 }
      if b % 3 ~= 0 then sampler.logit_bias = mm.bias end
      local ok, res, info = pcall(s.best_of_n, s, { n = BATCH, max_tokens = opts.max_tokens, constraint = c,
                                                   seed = 1000 + BATCH * b, sampler = sampler })
      if not ok then
        st.dead = st.dead + BATCH
        st.fail[#st.fail + 1] = string.format("%s seeds %d..%d: generation raised: %s", mm.name,
                                              1001 + BATCH * b, 1000 + BATCH * (b + 1), tostring(res))
      else
        for _, cand in ipairs(info.candidates) do
          st.n = st.n + 1
          local text, seed = cand.text, 1000 + BATCH * b + cand.index
          local where = string.format("%s seed %d: %q", mm.name, seed, text)
          st.ends[cand.stop_reason] = (st.ends[cand.stop_reason] or 0) + 1
          local bytes = {}
          for i, id in ipairs(cand.tokens) do bytes[i] = m:piece(id) end
          bytes = table.concat(bytes) -- what the matcher consumed
          if bytes ~= text then st.differ = st.differ + 1 end
          if cand.accepted then
            st.accepted = st.accepted + 1
            local good, why = opts.check(bytes)
            if good and bytes ~= text then good, why = opts.check(text) end
            if not good then
              st.fail[#st.fail + 1] = string.format("%s: accepted but invalid%s", where, why and (": " .. why) or "")
            end
          elseif cand.stop_reason ~= "max_tokens" then
            -- the matcher stopped (or EOG was sampled) short of a match
            st.dead = st.dead + 1
            st.fail[#st.fail + 1] = string.format("%s: ended (%s) without a complete match", where,
                                                  tostring(cand.stop_reason))
          elseif opts.prefix and not opts.prefix(bytes, m) then
            st.fail[#st.fail + 1] = string.format("%s: unfinished output is not a prefix", where)
          end
        end
      end
    end
    local ends = {}
    for k, v in pairs(st.ends) do ends[#ends + 1] = k .. "=" .. v end
    table.sort(ends)
    say("  %-26s %4d samples, %4d accepted, %d dead ends, %d failures, %d text/bytes differ, %.1f s (%s)",
        opts.name, st.n, st.accepted, st.dead, #st.fail, st.differ, os.clock() - t0, table.concat(ends, " "))
    assert(#st.fail == 0, opts.name .. ":\n" .. fmt_failures(st.fail))
    assert.are.equal(BATCH * BATCHES, st.n)
    assert.are.equal(0, st.dead)
    assert(st.accepted >= (opts.min_accepted or 0.25) * st.n,
           string.format("%s: only %d of %d outputs were complete matches", opts.name, st.accepted, st.n))
  end

  local REGEXES = {
    { "a date", [[[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])]] },
    { "an email address", [[[a-z0-9._%+-]{1,12}@[a-z0-9-]{1,10}(\.[a-z]{2,4}){1,2}]] },
    { "a phone number", [[(\+1 )?\(?[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}]] },
    { "a JSON string", [["([^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4}){0,12}"]] },
    { "a UUID", [[[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}]] },
    { "Unicode letters and digits", [[[\p{L}\p{N}]{1,8}( [\p{L}\p{N}]{1,8}){0,2}]] },
  }
  for _, r in ipairs(REGEXES) do
    it("keeps every output inside the regex for " .. r[1] .. " (checked by PCRE2)", function()
      local c = tide.regex(r[2])
      sample_and_check(c, {
        name = "regex " .. r[1], max_tokens = 40, check = regex_check(r[2]),
        prefix = function(bytes, m)
          local mt <close> = c:matcher(m)
          return (pcall(mt.advance_text, mt, bytes))
        end,
      })
    end)
  end

  local GRAMMARS = {
    { "grammars/json.gbnf", max_tokens = 32, min_accepted = 0.15 },
    { "grammars/arithmetic.gbnf", max_tokens = 12 },
    { "grammars/list.gbnf", max_tokens = 20, min_accepted = 0.05 },
    { "an s-expression grammar", max_tokens = 32, text = [[
# s-expressions: nested bounded repetition inside recursion
root ::= expr
expr ::= "(" op ( " " expr ){1,3} ")" | num | sym
op   ::= "+" | "*" | "max"
num  ::= "-"? [0-9]{1,3}
sym  ::= [a-z] [a-z0-9]{0,4}
]] },
  }
  for _, gspec in ipairs(GRAMMARS) do
    it("keeps every output inside " .. gspec[1] .. " (checked by a backtracking recognizer)", function()
      local src = gspec.text or H.read(gspec[1])
      local c, g = tide.grammar(src), B.parse(src)
      sample_and_check(c, {
        name = gspec[1]:match("[^/]*$"), max_tokens = gspec.max_tokens, min_accepted = gspec.min_accepted,
        check = function(text) return B.accepts(g, text) end,
        prefix = function(bytes) return B.prefix(g, bytes) end,
      })
    end)
  end

  -- SentencePiece vocabularies drop the space of a text's first token when
  -- detokenizing; a continuation is not a text's start, and the matcher has
  -- consumed that space, so the output must keep it.
  it("returns exactly the text the matcher consumed, leading space included", function()
    local pat = " [a-z]{2,5}"
    local c = tide.regex(pat)
    local bad = {}
    for _, mm in ipairs(models) do
      for seed = 1, 4 do
        local s <close> = mm.m:session { seed = seed }
        s:feed "Output:"
        local text, info = s:generate { constraint = c, max_tokens = 8, seed = seed, sampler = { temperature = 1.0 } }
        assert.is_true(info.accepted)
        if not tide.re.find(text, "^" .. pat .. "\\z") then
          bad[#bad + 1] = string.format("%s seed %d: %q does not match %q", mm.name, seed, text, pat)
        end
        local _, binfo = s:best_of_n { n = 2, max_tokens = 8, seed = seed, constraint = c,
                                       sampler = { temperature = 1.0 } }
        for _, cand in ipairs(binfo.candidates) do
          if not tide.re.find(cand.text, "^" .. pat .. "\\z") then
            bad[#bad + 1] = string.format("%s best_of_n seed %d: %q does not match %q", mm.name, seed + cand.index,
                                          cand.text, pat)
          end
        end
      end
    end
    assert(#bad == 0, fmt_failures(bad))
  end)

  local SCHEMAS = { "BFCL_simple_71.json", "Github_easy---o37615.json", "BFCL_parallel_multiple_132.json" }
  it("keeps every output valid under three fixture JSON Schemas (checked by a validator)", function()
    local path = FIX .. "/jsonschema/schemas.jsonl"
    local f = io.open(path, "rb")
    if not f then pending("jsonschema/schemas.jsonl absent"); return end
    local found = {}
    for line in f:lines() do
      local rec = tide.json.decode(line)
      for _, name in ipairs(SCHEMAS) do
        if rec.name == name then found[name] = { line = line, rec = V.decode(line) } end
      end
    end
    f:close()
    for _, name in ipairs(SCHEMAS) do
      local entry = assert(found[name], "fixture schema missing: " .. name)
      local schema = entry.rec.schema
      -- the validator agrees with the fixture's own labels first
      for i = 1, entry.rec.tests.n do
        local t = entry.rec.tests[i]
        assert.are.equal(t.valid, (V.validate(schema, t.data)), name .. ": " .. t.description)
      end
      local text = assert(entry.line:match('"schema": (.*), "tests": %['))
      local c = tide.json_schema(text)
      sample_and_check(c, {
        name = name, max_tokens = 40, min_accepted = 0.1,
        check = function(out)
          local ok, v = pcall(V.decode, out)
          if not ok then return false, v end
          if not pcall(tide.json.decode, out) then return false, "tide.json.decode failed" end
          return V.validate(schema, v)
        end,
      })
    end
  end)
end)

-- ------------------------------------------------------------------ verdicts

-- Each grammar comes with hand-labelled strings: "+s" must be accepted,
-- "-s" rejected, "~s" rejected but completable (a proper prefix). The
-- recognizer must agree with the labels and the engine with the recognizer.
local CASES = {
  -- repetition and nesting
  { 'root ::= "a"*', "+", "+a", "+aaaa", "-b", "-ab" },
  { 'root ::= ( "a" "b"* )*', "+", "+a", "+abb", "+aba", "+aabbbab", "-b", "-ba" },
  { 'root ::= ( "a"* "b" )+', "+b", "+ab", "+aabab", "+bb", "~", "~aa", "~ba", "-c" },
  { 'root ::= ( "a" ( "b" ( "c" "d"* )* )* )*', "+", "+abcd", "+abcdcdd", "+aabbc", "-b", "-ac", "+abcbcdd" },
  { 'root ::= ( "a"* )*', "+", "+aaa", "-b" },
  { 'root ::= ( "a"? ){2,3}', "+", "+a", "+aa", "+aaa", "-aaaa" },
  { 'root ::= ( "a"? "b"? )* "c"', "+c", "+abc", "+bac", "+babac", "~ab", "-ca" },
  -- bounded repetition edge cases
  { 'root ::= "x"{0}', "+", "-x" },
  { 'root ::= "x"{0,0} "y"', "+y", "-xy", "~" },
  { 'root ::= "x"{1,1}', "+x", "~", "-xx" },
  { 'root ::= "x"{2,}', "~", "~x", "+xx", "+xxxxxxx", "-y" },
  { 'root ::= "a"{3,5}', "~aa", "+aaa", "+aaaaa", "-aaaaaa" },
  { 'root ::= [a-c]{ 1 , 2 }', "+a", "+cb", "-abc", "-d", "~" },
  { 'root ::= ( "a"{1,2} "b" ){0,3}', "+", "+ab", "+aabab", "+abaabaab", "-abababab", "-aaab", "~aa" },
  { 'root ::= ( "a"{2,3} )*', "+", "~a", "+aa", "+aaaa", "+aaaaa", "+aaaaaaa", "-b" },
  { 'root ::= ( "ab"{0,2} "c" )*', "+", "+c", "+abc", "+ababcc", "-abababc", "~aba" },
  { 'root ::= "a"+ "a"{2}', "~aa", "+aaa", "+aaaaaa", "~a", "-aab" },
  { 'root ::= ( "a" | "b" ){2,4} "a"', "+aba", "+bbbba", "~ba", "-aaaaaa", "+aaa", "-bbbbb" },
  { 'root ::= "a"{2}{3}', "+aaaaaa", "~aaaaa", "-aaaaaaa" },
  { 'root ::= [a-z]{0}', "+", "-a" },
  { 'root ::= x{2}\nx ::= "a" | "bb"', "+aa", "+abb", "+bbbb", "~ab", "-aaa", "-ba" },
  { 'root ::= [0-9]{4} "-" [0-9]{2}', "+2024-05", "~2024-5", "-24-05", "~2024-0", "-2024-123" },
  -- alternation with empty branches, ambiguity
  { 'root ::= ( "" | "a" ){0,4} "b"', "+b", "+aaaab", "-aaaaab", "~aa" },
  { 'root ::= "a" ( | "b" | "c" )', "+a", "+ab", "+ac", "-abc", "-b" },
  { 'root ::= ( "a" | "ab" ) ( "c" | "bc" )', "+ac", "+abc", "+abbc", "~ab", "~a", "-abcc" },
  { 'root ::= "ab" | "a" "b" | [a] [b]', "+ab", "~a", "-abb" },
  { 'root ::= "" "a" ""', "+a", "~", "-aa" },
  -- recursion: left, right, hidden left, mutual, indirect
  { 'root ::= root "a" | "b"', "+b", "+baaa", "-a", "-bab" },
  { 'root ::= "a" root | "a"', "+a", "+aaaa", "~", "-ab" },
  { 'root ::= x "c" | "d"\nx ::= root "e"', "+d", "+dec", "+decec", "~de", "-dc" },
  { 'root ::= n root "a" | "b"\nn ::= "c"?', "+b", "+ba", "+cba", "+ccbaa", "~cb", "-ab" },
  { 'root ::= e\ne ::= e "+" t | t\nt ::= t "*" f | f\nf ::= "(" e ")" | [0-9]',
    "+1", "+1+2*3", "+(1+2)*3", "+((4))", "~1+", "-()", "-1++2", "~((1+2)" },
  { 'root ::= a\na ::= "(" b ")" | "x"\nb ::= a ( "," a )*', "+x", "+(x)", "+(x,(x,x))", "-(x,)", "-()" },
  { 'root ::= x\nx ::= "a" x "b" | ""', "+", "+ab", "+aabb", "~aab", "-abab", "~aaab" },
  { 'root ::= "[" root* "]"', "+[]", "+[[][[]]]", "-[][]", "~[[", "-]" },
  { 'root ::= a b c\na ::= "x"?\nb ::= "y"*\nc ::= a b', "+", "+x", "+xyyxy", "+yx", "-xxx", "+xx" },
  -- Unicode classes, negation, escapes, any
  { 'root ::= [α-ω]+', "+αβγ", "+ω", "-a", "-Α", "~" },
  { 'root ::= [^a-z]+', "+ABC", "+1 é", "-abc", "-Ab", "+\u{1F600}" },
  { 'root ::= [^\\u0000-\\u007f]{1,3}', "+é", "+中文字", "-a", "-é中文字", "+\u{10FFFF}" },
  { 'root ::= [\\u00e0-\\u00ff\\U0001F600-\\U0001F64F]+', "+àÿ", "+\u{1F600}\u{1F64F}", "-\u{1F650}", "-ß" },
  { 'root ::= .{2}', "+ab", "+é\u{1F600}", "+\n\t", "~a", "-abc" },
  { 'root ::= "é" [^é]', "+éa", "+éè", "-éé", "~é" },
  { 'root ::= [\\x41-\\x43\\x61]+', "+ABCa", "-D", "-b" },
  { 'root ::= "\\x41\\u00e9\\n\\t\\\\\\""', '+Aé\n\t\\"', '-Ae\n\t\\"' },
  { 'root ::= [\\]\\[]+', "+[]][", "-a" },
  { 'root ::= [a-]+', "+a-a", "-b" },
  { 'root ::= [^"\\\\\\x00-\\x1f]*', "+abc é", '-a"b', "-a\\b", "-a\nb" },
  { 'root ::= ws "x" ws\nws ::= [ \\t\\n]*', "+x", "+ \t x\n", "-x x", "~  " },
  { 'root ::= []', "-a", "-\u{1F600}" },
  { 'root ::= [^]', "+a", "+\u{1F600}", "-ab" },
  -- layout: comments, continuation lines, rule names with dashes
  { '# leading comment\nroot ::= item-one # trailing\n  | item_2\n\nitem-one ::= "1"\nitem_2 ::=\n  "2" |\n  "22"',
    "+1", "+2", "+22", "-12", "-222" },
}

describe_fix("grammar verdicts", function()
  local m
  setup(function() m = tide.load(FIX .. "/models/gpt2-tiny.gguf", { vocab_only = true }) end)
  teardown(function() m:close() end)

  -- The engine's verdict: (the whole string can be consumed, it is a match).
  local function engine(c, s)
    local mt <close> = c:matcher(m)
    local ok = pcall(mt.advance_text, mt, s)
    return ok, ok and mt:accepting()
  end

  local function mutate(s, rnd)
    local cps = {}
    for _, cp in utf8.codes(s) do cps[#cps + 1] = utf8.char(cp) end
    local k = rnd(4)
    local i = rnd(#cps + 1)
    if k == 1 and #cps > 0 then table.remove(cps, math.min(i, #cps))
    elseif k == 2 and #cps > 0 then table.insert(cps, i, cps[math.min(i, #cps)])
    elseif k == 3 then table.insert(cps, i, ({ "a", "b", "(", ")", "é", "x", "0", " " })[rnd(8)])
    elseif #cps > 1 then
      local j = rnd(#cps)
      cps[math.min(i, #cps)], cps[j] = cps[j], cps[math.min(i, #cps)]
    end
    return table.concat(cps)
  end

  it("agree with the labels and with a backtracking recognizer on >= 300 strings over >= 40 grammars", function()
    local rng_state = 12345
    local function rnd(n) -- a small LCG: reproducible whatever math.random does elsewhere
      rng_state = (rng_state * 1103515245 + 12345) % 2147483648
      return rng_state % n + 1
    end
    local n_grammars, n_labelled, n_strings, fails = 0, 0, 0, {}
    local n_yes = 0
    for _, case in ipairs(CASES) do
      local src = case[1]
      local c = tide.grammar(src)
      local g = B.parse(src)
      n_grammars = n_grammars + 1
      local strings, seen = {}, {}
      local function add(s, label)
        if seen[s] then return end
        seen[s] = true
        strings[#strings + 1] = { s, label }
      end
      for i = 2, #case do add(case[i]:sub(2), case[i]:sub(1, 1)) end
      local base = #strings
      for _ = 1, 6 do
        local s = B.generate(g, rnd, 6, 3)
        if s then add(s, "+") end
      end
      for i = 1, base + 6 do
        local from = strings[(i - 1) % #strings + 1][1]
        add(mutate(from, rnd), nil)
      end
      for _, e in ipairs(strings) do
        local s, label = e[1], e[2]
        local want, want_prefix = B.accepts(g, s), B.prefix(g, s)
        if label then
          n_labelled = n_labelled + 1
          local lw = label == "+"
          local lp = label ~= "-"
          if want ~= lw or (want_prefix ~= lp and label ~= "+") then
            fails[#fails + 1] = string.format("recognizer disagrees with label %s on %q for %q", label, s, src)
          end
        end
        local got_prefix, got = engine(c, s)
        n_strings = n_strings + 1
        if want then n_yes = n_yes + 1 end
        if got ~= want or got_prefix ~= want_prefix then
          fails[#fails + 1] = string.format(
            "grammar %q on %q: engine (prefix %s, match %s), recognizer (prefix %s, match %s)",
            src, s, got_prefix, got, want_prefix, want)
        end
      end
    end
    say("  grammar verdicts: %d grammars, %d strings (%d labelled, %d in the language), %d failures", n_grammars,
        n_strings, n_labelled, n_yes, #fails)
    assert(#fails == 0, fmt_failures(fails))
    assert.is_true(n_grammars >= 40)
    assert.is_true(n_strings >= 300)
  end)

  it("agree with the recognizer on the shipped grammars' generated and mutated strings", function()
    local rng_state = 777
    local function rnd(n)
      rng_state = (rng_state * 1103515245 + 12345) % 2147483648
      return rng_state % n + 1
    end
    local fails, n = {}, 0
    for _, name in ipairs { "json", "json_arr", "arithmetic", "list", "chess", "c_expr" } do
      local src = H.read("grammars/" .. name .. ".gbnf")
      local c, g = tide.grammar(src), B.parse(src)
      for _ = 1, 12 do
        local s = B.generate(g, rnd, 5, 2)
        if s then
          for k = 0, 2 do
            local t = s
            for _ = 1, k do t = mutate(t, rnd) end
            local want, want_prefix = B.accepts(g, t), B.prefix(g, t)
            local got_prefix, got = engine(c, t)
            n = n + 1
            if k == 0 and not want then fails[#fails + 1] = string.format("%s: generated %q not accepted", name, t) end
            if got ~= want or got_prefix ~= want_prefix then
              fails[#fails + 1] = string.format(
                "%s on %q: engine (prefix %s, match %s), recognizer (prefix %s, match %s)",
                name, t, got_prefix, got, want_prefix, want)
            end
          end
        end
      end
    end
    say("  shipped grammars: %d strings, %d failures", n, #fails)
    assert(#fails == 0, fmt_failures(fails))
    assert.is_true(n >= 150)
  end)
end)

-- ------------------------------------------------------------------ malformed

describe("malformed grammars", function()
  -- { source, line, column, words the message must contain }
  local BAD = {
    { 'root ::= "a', 1, 10, "unterminated string" },
    { 'root ::= [a-z', 1, 10, "unterminated character class" },
    { 'root ::= ("a"', 1, 14, "expecting ')'" },
    { 'root ::= "a")', 1, 13, "unmatched ')'" },
    { 'root ::= *"a"', 1, 10, "'*'" },
    { 'root ::= "a"{2,1}', 1, 13, "max below min" },
    { 'root ::= "a"{x}', 1, 14, "expecting a number" },
    { 'root ::= "a"{1', 1, 15, "expecting ',' or '}'" },
    { 'root ::= "a"{1,2', 1, 17, "expecting '}'" },
    { 'root "a"', 1, 6, "'::='" },
    { 'root ::= "a"\nroot ::= "b"', 2, 1, "defined twice" },
    { 'root ::= x', 1, 10, "undefined rule 'x'" },
    { 'root ::= "\\q"', 1, 11, "unknown escape" },
    { 'root ::= "\\x4"', 1, 14, "hex digits" },
    { 'root ::= [z-a]', 1, 11, "out of order" },
    { 'root ::= "\\uD800"', 1, 11, "surrogate" },
    { 'root ::= "\\U00110000"', 1, 11, "out of range" },
    { '::= "a"', 1, 1, "rule name" },
    { 'root ::= "a" @', 1, 14, "unexpected '@'" },
    { 'root ::= "a"\n\n  x ::= y', 3, 9, "undefined rule 'y'" },
    { 'root ::= "\255"', 1, 11, "invalid UTF-8" },
    { 'root ::= "a"\n "b"', 2, 2, "rule name" },
    { 'root ::= item\n# comment line\nitem ::= [a-z]{2,1}', 3, 15, "max below min" },
    { 'root ::= (\n  "a" |\n  "b" ]\n)', 3, 7, "expecting ')'" },
    { 'root ::= x\nx ::= "a" +\ny ::= ?', 3, 7, "'?'" },
    { "root ::= " .. ("("):rep(5000), 1, nil, "nested deeper" },
    { 'root ::= [\\u00e9-\\u00e0]', 1, 11, "out of order" },
  }
  it("are rejected with messages naming the line and column", function()
    local n = 0
    for _, b in ipairs(BAD) do
      local ok, err = pcall(tide.grammar, b[1])
      assert(not ok, "compiled: " .. b[1])
      err = tostring(err)
      local line, col = err:match("line (%d+), column (%d+)")
      assert(line, "no line and column in: " .. err)
      assert.are.equal(b[2], tonumber(line), err)
      if b[3] then assert.are.equal(b[3], tonumber(col), err) end
      assert(err:find(b[4], 1, true), string.format("%q lacks %q", err, b[4]))
      n = n + 1
    end
    assert.is_true(n >= 20)
    -- a missing root has no position, but says so
    local ok, err = pcall(tide.grammar, 'item ::= "a"')
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("root", 1, true))
  end)
end)
