--- tide.steer: LM-Steer objects, steering sets for models, sessions and
-- generate calls, control vectors, hidden states and the logit lens.
-- The arithmetic runs in C (core/steer.c); this module turns Lua sets such
-- as `{ [w1] = 3.0, [w2] = { eps = -2.0, input = true } }` into the core's
-- per-sequence entries and keeps the Lua objects beside them.
-- See docs/steering.md.
local core = require "tide.core"

local M = {}

local Steer = {}
Steer.__index = Steer
Steer.__name = "tide.SteerObject"
M.Steer = Steer

local serial = 0 -- creation order: entries are applied in it (reproducible sums)

local function wrap(h, model, where)
  local info = h:info()
  if model and info.n_embd ~= model.info.n_embd then
    h:close()
    error(string.format("%s: the steer's n_embd is %d, the model's is %d", where, info.n_embd,
                        model.info.n_embd), 3)
  end
  serial = serial + 1
  return setmetatable({ h = h, model = model, n_embd = info.n_embd, rank = info.rank,
                        eps0 = info.eps0, id = serial, base_name = info.base_name,
                        base_hash = info.base_hash, data = info.data }, Steer)
end

local function check_opts(opts, allowed, where)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(string.format("%s: options table expected, got %s", where, type(opts)), 3) end
  for k in pairs(opts) do
    if not allowed[k] then error(string.format("%s: unknown option '%s'", where, tostring(k)), 3) end
  end
  return opts
end

--- Loads a steer file (what recipes/steer_train.lua and the frozen trainer
-- write) for model (its n_embd must match). A file that records its base
-- model's hash (w.base_hash) loads only for a model of that hash (m:hash())
-- unless opts.force; files without one load for any model of the same
-- n_embd. Raises on failure.
function M.load(path, model, opts)
  if type(path) ~= "string" then error("steer.load: path (string) expected", 2) end
  opts = check_opts(opts, { force = true }, "steer.load")
  local h, msg = core.steer_load(path)
  if not h then error(msg, 2) end
  local info = h:info()
  if model and info.base_hash and not opts.force and info.base_hash ~= model:hash() then
    h:close()
    error(string.format("steer.load: '%s' was trained on '%s' (hash %s), the model is '%s' (hash %s); "
                        .. "pass { force = true } to load it anyway", path, info.base_name or "?",
                        info.base_hash, model.info.name or "?", model:hash()), 2)
  end
  return wrap(h, model, "steer.load")
end

--- Transfers steer w of model_a to model_b (docs/steering.md, "Transferring
-- a steer"): ridge fits between the two output-embedding matrices on their
-- shared tokens. opts: lambda (relative ridge, 1e-3), method ("fit2", or
-- "htwh" for W' = H^T W H). Returns the new steer (for model_b) and
-- { n_shared, d_a, d_b, underdetermined, ridge_a, ridge_b, residual_ab,
-- residual_ba }. Raises on failure (e.g. no shared tokens).
function M.transfer(w, model_a, model_b, opts)
  opts = check_opts(opts, { lambda = true, method = true }, "steer.transfer")
  if getmetatable(w) ~= Steer then error("steer.transfer: a steer expected, got " .. tostring(w), 2) end
  if not w.h then error("steer.transfer: the steer is closed", 2) end
  local h, info = core.steer_transfer(w.h, model_a.h, model_b.h, opts.lambda, opts.method)
  return wrap(h, model_b, "steer.transfer"), info
end

--- A steer from P1, P2: vectors or arrays of n_embd*rank numbers, row-major
-- (n_embd, rank). opts: eps0 (the eps it was trained with).
function M.new(model, rank, p1, p2, opts)
  local d = model.info.n_embd
  local h = core.steer_new(d, rank, p1, p2, opts and opts.eps0 or 0)
  return wrap(h, model, "steer.new")
end

function Steer:close() if self.h then self.h:close() end end
Steer.__close = Steer.close
function Steer:__tostring()
  return string.format("tide.Steer(n_embd %d, rank %d, eps0 %g)", self.n_embd, self.rank, self.eps0)
end
--- Writes the steer file (general.name = name).
function Steer:save(path, name) self.h:save(path, name) end
--- sigma, u, v of the k leading singular triplets of W = P1 P2^T.
function Steer:svd(k) return self.h:svd(k) end

local function check_k(k, rank, name)
  if math.type(k) ~= "integer" or k < 1 or k > rank then
    error(string.format("%s: k must be an integer in 1..%d (the rank)", name, rank), 3)
  end
end

--- Explains the steer: for each of the k leading directions of W (its SVD),
-- the tokens whose output embeddings lie furthest along v_i (promoted when
-- eps * (u_i . c) > 0) and against it (suppressed then). opts.top (10).
-- Returns { { sigma =, promoted = { {id, piece, score}... }, suppressed = ... }, ... }
function Steer:explain(k, opts)
  opts = opts or {}
  local model = self.model
  if not model then error("explain: the steer was loaded without a model", 2) end
  k = k or math.min(3, self.rank)
  check_k(k, self.rank, "explain")
  local top = opts.top or 10
  local sigma, _, v = self.h:svd(k)
  local ctx = model:context()
  local out = {}
  for i = 1, k do
    local ends = {}
    for side, vec in pairs { promoted = v[i], suppressed = -v[i] } do
      local ids, vals = ctx:project(vec, false):topk(top)
      local list = {}
      for j = 1, #ids do
        list[j] = { id = ids[j], piece = model:piece(ids[j]), score = side == "promoted" and vals[j] or -vals[j] }
      end
      ends[side] = list
    end
    out[i] = { sigma = sigma[i], promoted = ends.promoted, suppressed = ends.suppressed }
  end
  return out
end

--- Per-token highlighting: how much the steer at eps (default 5 * eps0)
-- moves each token of text (log-probability steered - unsteered, from
-- M.token_shift). Returns a string: by default for a terminal (24-bit
-- background, green = likelier under the steer, red = less likely,
-- strength by |delta| / the largest |delta|), with opts.color = false the
-- pieces followed by [+0.12], with opts.html = true an HTML fragment (a
-- <pre> of <span>s, each with its delta as a title). Also returns the
-- shift list (token order).
function Steer:highlight(text, opts)
  opts = opts or {}
  local model = self.model
  if not model then error("highlight: the steer was loaded without a model", 2) end
  local eps = opts.eps or 5 * (self.eps0 ~= 0 and self.eps0 or 1)
  local shift = M.token_shift(model, self, eps, text)
  local big = 1e-9
  for _, t in ipairs(shift) do big = math.max(big, math.abs(t.delta)) end
  local parts = {}
  if opts.html then
    local ents = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }
    parts[1] = "<pre style='font-size:16px;white-space:pre-wrap'>"
    for _, t in ipairs(shift) do
      local rgb = t.delta >= 0 and "0,160,0" or "200,0,0"
      parts[#parts + 1] = string.format("<span title='%+.3f' style='background:rgba(%s,%.2f)'>%s</span>", t.delta,
                                        rgb, math.abs(t.delta) / big, (t.piece:gsub("[&<>\"']", ents)))
    end
    parts[#parts + 1] = "</pre>"
  else
    for _, t in ipairs(shift) do
      if opts.color == false then
        parts[#parts + 1] = string.format("%s[%+.2f]", t.piece, t.delta)
      else
        local a = math.floor(40 + 200 * math.abs(t.delta) / big)
        local bg = t.delta >= 0 and string.format("48;2;0;%d;0", a) or string.format("48;2;%d;0;0", a)
        parts[#parts + 1] = string.format("\27[%sm%s\27[0m", bg, t.piece)
      end
    end
  end
  return table.concat(parts), shift
end

local function show(piece)
  return (piece:gsub("[%c]", function(c) return string.format("\\x%02x", c:byte()) end))
end

--- Prints explain's result as a table.
function M.print_explain(ex, write)
  write = write or io.write
  for i, dir in ipairs(ex) do
    write(string.format("direction %d  sigma %.4g\n", i, dir.sigma))
    local p, s = {}, {}
    for j, t in ipairs(dir.promoted) do p[j] = string.format("%q", show(t.piece)) end
    for j, t in ipairs(dir.suppressed) do s[j] = string.format("%q", show(t.piece)) end
    write("  + " .. table.concat(p, " ") .. "\n")
    write("  - " .. table.concat(s, " ") .. "\n")
  end
end

-- ---------------------------------------------------------------- sets

local WHERE = { output = "output", input = "input" }

--- Lua set -> the core's entry list, in the steers' creation order.
function M.entries(set, name)
  if type(set) ~= "table" then
    error(string.format("%s: a table { [steer] = eps } expected, got %s", name, type(set)), 3)
  end
  local list = {}
  for s, val in pairs(set) do
    if getmetatable(s) ~= Steer then
      error(string.format("%s: keys must be steers (tide.steer.load), got %s", name, tostring(s)), 3)
    end
    local eps, where = val, "output"
    if type(val) == "table" then
      for key in pairs(val) do
        if key ~= "eps" and key ~= "input" then
          error(string.format("%s: unknown option '%s' of a steer", name, tostring(key)), 3)
        end
      end
      eps, where = val.eps, val.input and "input" or "output"
    end
    if type(eps) ~= "number" or eps ~= eps or eps == math.huge or eps == -math.huge then
      error(string.format("%s: the coefficient of %s must be a finite number, got %s", name, tostring(s),
                          tostring(eps)), 3)
    end
    if not s.h then error(string.format("%s: %s is closed", name, tostring(s)), 3) end
    list[#list + 1] = { s.h, eps, WHERE[where], id = s.id }
  end
  table.sort(list, function(a, b) return a.id < b.id or (a.id == b.id and a[3] < b[3]) end)
  return list
end

--- model:steer(set | nil): the default set of every session that has none of
-- its own. nil clears it. Takes effect at each session's next logits.
function M.model_steer(model, set)
  local list = set and M.entries(set, "model:steer") or nil
  model._steer, model._steer_list = set, list
  if model.ctx then model.ctx:set_steers(-1, list or {}) end
  model.gen = model.gen + 1 -- every session recomputes its last logits under the new default
  return model
end

--- session:steer(set | false): the session's own set ({} = no steering even
-- if the model has a default); false or nil: follow the model's default.
-- Takes effect from the next logits on (the last position is recomputed),
-- so it may change between tokens of a stream.
function M.session_steer(session, set)
  local seq = session:_live()
  local ctx = session.ctx
  if set then
    ctx:set_steers(seq, M.entries(set, "session:steer"))
    session._steer = set
  else
    ctx:reset_steers(seq)
    session._steer = nil
  end
  session.gen = nil
  return session
end

--- For generate{ steer = set }: sets it and returns the function that puts
-- the session's previous set back.
function M.push(session, set)
  local saved = session._steer
  M.session_steer(session, set)
  return function()
    if session.seq then M.session_steer(session, saved or false) end
  end
end

--- Model:context() calls this on the fresh context: the model's default
-- steers and control vector.
function M.on_context(model, ctx)
  if model._steer_list then ctx:set_steers(-1, model._steer_list) end
  if model._cvec then ctx:set_cvec(table.unpack(model._cvec)) end
end

-- ---------------------------------------------------------------- control vectors

--- Reads llama.cpp control-vector files into one (n_layer * n_embd) vector:
-- src is a path, or a list of { path, scale } (summed, as llama.cpp does).
function M.cvec_load(src, model, scale)
  local nl, d = model.info.n_layer, model.info.n_embd
  local list = type(src) == "string" and { { src, scale or 1.0 } } or src
  local acc = core.vector(nl * d)
  for _, item in ipairs(list) do
    local ok, msg = core.cvec_load(item[1], item[2] or 1.0, nl, d, acc)
    if not ok then error(msg, 3) end
  end
  return acc
end

--- Writes dirs (n_layer * n_embd; row N is direction.N) as llama.cpp's
-- control-vector GGUF.
function M.cvec_save(path, dirs, model)
  core.cvec_save(path, dirs, model.info.n_layer, model.info.arch)
end

--- model:control_vector(cv | nil, opts): cv is a vector (n_layer * n_embd),
-- a path, or a list of { path, scale }; opts.scale (1.0, for a path),
-- opts.layers = { first, last } blocks (default 1 .. n_layer - 1, as
-- llama.cpp). nil turns it off. Applies to every session of the model.
function M.model_cvec(model, cv, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "scale" and k ~= "layers" then
      error(string.format("control_vector: unknown option '%s'", tostring(k)), 2)
    end
  end
  if cv == nil then
    model._cvec = nil
    if model.ctx then model.ctx:set_cvec(nil) end
  else
    local nl = model.info.n_layer
    if type(cv) ~= "userdata" then cv = M.cvec_load(cv, model, opts.scale) end
    local layers = opts.layers or { 1, nl - 1 }
    model._cvec = { cv, layers[1], layers[2], nl }
    if model.ctx then model.ctx:set_cvec(cv, layers[1], layers[2], nl) end
  end
  model.gen = model.gen + 1
  return model
end

-- ---------------------------------------------------------------- introspection

--- session:hidden(layer) -> the hidden state (a tide.Vector) of the
-- session's last position at layer (0 = embeddings, l = after block l-1).
-- Recomputes that position once with capture on.
function M.hidden(session, layer)
  local seq = session:_live()
  local nl = session.model.info.n_layer
  if math.type(layer) ~= "integer" or layer < 0 or layer > nl then
    error(string.format("hidden: layer must be an integer in 0..%d", nl), 2)
  end
  if #session.tokens == 0 then error("hidden: the session has no tokens yet", 2) end
  local ctx = session.ctx
  ctx:capture({ layer })
  local ok, err = pcall(function()
    local t = session.tokens
    local last = t[#t]
    ctx:truncate(seq, session.n_pre + #t - 1)
    t[#t] = nil
    session:feed({ last })
  end)
  local v = ok and ctx:hidden(layer, 1) or nil
  ctx:capture(nil)
  if not ok then error(err, 2) end
  return v
end

--- model:project(vec [, { norm = true }]) -> owned tide.Logits: vec through
-- the output matrix (after the final norm unless norm = false).
function M.project(model, vec, opts)
  local norm = true
  if opts and opts.norm == false then norm = false end
  return model:context():project(vec, norm)
end

local function cell(s, w)
  s = show(s):gsub("\\x0a", "\\n")
  local n = utf8.len(s) or #s
  if n > w then
    s = (utf8.len(s) and s:sub(1, (utf8.offset(s, w) or w) - 1) or s:sub(1, w - 1)) .. "~"
    n = w
  end
  return s .. string.rep(" ", w - n)
end

--- tide.lens(session, text [, opts]) -> { tokens, layers } and a printed
-- table: the top token of the logit lens for every layer (rows, 0..n_layer)
-- and position of text (columns), text fed after the session's tokens in a
-- fork (the session is unchanged). opts: print (true), width (9), k (1),
-- write (io.write), color (false: true shades each cell by the top token's
-- probability, a heat map for 24-bit terminals).
function M.lens(session, text, opts)
  opts = opts or {}
  local model = session.model
  local ids = text
  if type(text) == "string" then
    ids = model:tokenize(text, #session.tokens > 0 and { bos = false } or nil)
  end
  if #ids == 0 or #ids > 256 then error("lens: 1..256 tokens expected", 2) end
  local nl = model.info.n_layer
  local layers = {}
  for l = 0, nl do layers[#layers + 1] = l end
  local kid = session:fork()
  local ctx = session.ctx
  ctx:capture(layers)
  local ok, res = pcall(function()
    ctx:feed(kid.seq, ids, true)
    model.gen = model.gen + 1
    local rows = {}
    for l = 0, nl do rows[l + 1] = ctx:lens(l, #ids, opts.k or 1) end
    return rows
  end)
  ctx:capture(nil)
  kid:close()
  if not ok then error(res, 2) end
  local out = { tokens = ids, layers = res }
  if opts.print ~= false then
    local write, w = opts.write or io.write, opts.width or 9
    local line = { cell("layer", 6) }
    for i = 1, #ids do line[#line + 1] = cell(model:piece(ids[i]), w) end
    write(table.concat(line, " ") .. "\n")
    for l = nl, 0, -1 do
      line = { cell(tostring(l), 6) }
      for i = 1, #ids do
        local c = cell(model:piece(res[l + 1][i].ids[1]), w)
        if opts.color then -- heat map: background by the top token's probability
          local p = math.exp(res[l + 1][i].logprobs[1])
          c = string.format("\27[48;2;%d;%d;%dm%s\27[0m", math.floor(20 + 60 * p), math.floor(20 + 100 * p),
                            math.floor(40 + 200 * p), c)
        end
        line[#line + 1] = c
      end
      write(table.concat(line, " ") .. "\n")
    end
  end
  return out
end

--- The hidden states of the last token of text at every layer 0..n_layer
-- (a fresh session; one prefill with capture on): { [0] = v0, v1, ... }.
function M.hidden_all(model, text)
  local ids = type(text) == "string" and model:tokenize(text) or text
  if #ids == 0 then error("hidden_all: empty text", 2) end
  local nl = model.info.n_layer
  local layers = {}
  for l = 0, nl do layers[#layers + 1] = l end
  local s <close> = model:session()
  local ctx = model:context()
  ctx:capture(layers)
  local ok, err = pcall(s.feed, s, ids)
  local out = {}
  if ok then
    local row = (#ids - 1) % 256 + 1 -- the last row of feed's last chunk
    for l = 0, nl do out[l] = ctx:hidden(l, row) end
  end
  ctx:capture(nil)
  if not ok then error(err, 2) end
  return out
end

--- Per-token effect of a steer on a text: the log-probability of each token
-- (after the first) under the model with and without { [steer] = eps }.
-- Returns { { id, piece, base, steered, delta }, ... } (delta = steered - base).
function M.token_shift(model, steer, eps, text)
  local ids = model:tokenize(text)
  if #ids < 2 then error("token_shift: the text needs at least two tokens", 2) end
  local rest = table.move(ids, 2, #ids, 1, {})
  local function run(set)
    local s <close> = model:session()
    s:steer(set)
    s:feed({ ids[1] })
    local _, per = s:score(rest)
    return per
  end
  local base, steered = run({}), run({ [steer] = eps })
  local out = {}
  for i, id in ipairs(rest) do
    out[i] = { id = id, piece = model:piece(id), base = base[i], steered = steered[i],
               delta = steered[i] - base[i] }
  end
  return out
end

return M
