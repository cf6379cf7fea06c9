--- tide.model: Model and Session objects over tide.core handles.
-- A Model owns one KV cache (context) that all its sessions share; a Session
-- is one sequence in it. Token ids are the model's own 0-based ids.
local core = require "tide.core"
local generate = require "tide.generate"
local manifest = require "tide.manifest"

local Model = {}
local Session = {}

local FIELDS = { arch = true, n_vocab = true, n_embd = true, n_layer = true, n_head = true,
                 n_kv_head = true, head_dim = true, n_ff = true, name = true }

Model.__name = "tide.ModelObject"
function Model.__index(self, k)
  local m = Model[k]
  if m ~= nil then return m end
  if FIELDS[k] then return self.info[k] end
  if k == "n_ctx" then return self.ctx_opts.n_ctx end
end
function Model.__close(self) self:close() end
function Model.__gc(self) self:close() end
function Model.__tostring(self)
  return string.format("tide.Model(%s, %d layers, n_embd %d, n_vocab %d)",
                       self.info.arch ~= "" and self.info.arch or "vocab-only",
                       self.info.n_layer, self.info.n_embd, self.info.n_vocab)
end

local LOAD_OPTS = { threads = true, n_ctx = true, n_cells = true, n_seq_max = true,
                    n_batch = true, n_outputs = true, kv_type = true, vocab_only = true, manifest = true }

function Model.load(path, opts)
  if type(path) ~= "string" then error("tide.load: path (string) expected, got " .. type(path), 3) end
  opts = opts or {}
  for k in pairs(opts) do
    if not LOAD_OPTS[k] then error(string.format("tide.load: unknown option '%s'", tostring(k)), 3) end
  end
  if opts.threads then core.set_threads(opts.threads) end
  -- the manifest first: a bad one raises before the model is opened
  local mf = opts.manifest ~= false and manifest.for_model(path) or nil
  local h, msg = core.load(path, { vocab_only = opts.vocab_only or false })
  if not h then error(msg, 3) end
  local info = h:info()
  local n_ctx = opts.n_ctx or math.min(info.n_ctx_train > 0 and info.n_ctx_train or 2048, 4096)
  local self = setmetatable({
    h = h, info = info, ctx = nil, gen = 0, manifest = mf,
    ctx_opts = { n_ctx = n_ctx, n_cells = opts.n_cells or 4 * n_ctx, n_seq_max = opts.n_seq_max, n_batch = opts.n_batch,
                 n_outputs = opts.n_outputs, kv_type = opts.kv_type },
  }, Model)
  return self
end

--- The shared KV cache, made on first use.
function Model:context()
  if not self.ctx then
    if self.info.arch == "" or self.info.n_layer == 0 then
      error("model was loaded with vocab_only: it has no weights to run", 2)
    end
    self.ctx = core.context(self.h, self.ctx_opts)
    require("tide.steer").on_context(self, self.ctx) -- [steer] default steers, control vector
  end
  return self.ctx
end

function Model:close()
  if self.vindex then self.vindex:close(); self.vindex = nil end
  if self.ctx then self.ctx:close(); self.ctx = nil end
  if self.h then self.h:close(); self.h = nil end
end

local TOK_OPTS = { bos = true, special = true }

--- Text -> array of token ids. opts.bos (default: the model's add_bos),
-- opts.special (parse special-token texts, default false).
function Model:tokenize(text, opts)
  if type(text) ~= "string" then error("tokenize: string expected, got " .. type(text), 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if not TOK_OPTS[k] then error(string.format("tokenize: unknown option '%s'", tostring(k)), 2) end
  end
  local bos = opts.bos
  if bos == nil then bos = self.h:special().add_bos end
  return self.h:tokenize(text, bos, opts.special or false)
end

function Model:detokenize(ids) return self.h:detokenize(ids) end
function Model:piece(id) return self.h:piece(id) end
function Model:is_eog(id) return self.h:is_eog(id) end
function Model:special() return self.h:special() end
--- The vocabulary index constraints walk (built once, on first use).
function Model:vocab_index()
  if not self.vindex then self.vindex = core.vocab_index(self.h) end
  return self.vindex
end

--- A GGUF metadata value by key (nil if absent); arrays come as tables.
function Model:meta(key) return self.h:meta(key) end

local SESSION_OPTS = { seed = true, prefix = true }

--- A new session (an empty sequence in the model's cache). opts.seed;
-- opts.prefix: a tide.prefix object the session starts with (set_prefix).
function Model:session(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not SESSION_OPTS[k] then error(string.format("session: unknown option '%s'", tostring(k)), 2) end
  end
  local ctx = self:context()
  local s = setmetatable({ model = self, ctx = ctx, seq = ctx:seq_new(), tokens = {},
                           seed = opts.seed or 0, forks = 0, n_pre = 0 }, Session)
  if opts.prefix then
    local ok, err = pcall(s.set_prefix, s, opts.prefix)
    if not ok then s:close(); error(err, 2) end
  end
  return s
end

--- Work counters of the model's context: { decodes, rows, logit_rows }.
-- rows counts every token run through the model, prompts included.
function Model:stats()
  if not self.ctx then return { decodes = 0, rows = 0, logit_rows = 0 } end
  return self.ctx:stats()
end

--- Decodes one token for each session in one batched forward pass.
function Model:step(sessions, tokens)
  local seqs = {}
  for i, s in ipairs(sessions) do seqs[i] = s:_live() end
  self.ctx:step(seqs, tokens)
  self.gen = self.gen + 1
  for i, s in ipairs(sessions) do
    local t = s.tokens
    t[#t + 1] = tokens[i]
    s.gen, s.row = self.gen, i
  end
end

-- ---------------------------------------------------------------- Session

Session.__name = "tide.Session"
function Session.__index(self, k)
  if k == "pos" then return #rawget(self, "tokens") end
  return Session[k]
end
function Session.__close(self) self:close() end
function Session.__gc(self) self:close() end
function Session.__tostring(self)
  return string.format("tide.Session(seq %s, pos %d)", tostring(rawget(self, "seq")), #self.tokens)
end

Session.n_pre = 0 -- cache positions before the tokens (a prefix's), for sessions made anywhere

function Session:_live()
  if not self.seq then error("attempt to use a closed session", 3) end
  return self.seq
end

--- Appends token ids (a prefill: one forward over all of them).
function Session:feed(ids)
  local seq = self:_live()
  if type(ids) == "string" then
    -- text: the model's BOS rule applies to a session's first feed only
    local opts = {}
    if #self.tokens > 0 then opts.bos = false end
    ids = self.model:tokenize(ids, opts)
  end
  if #ids == 0 then return self end
  self.ctx:feed(seq, ids)
  local m = self.model
  m.gen = m.gen + 1
  self.gen, self.row = m.gen, 1
  local t = self.tokens
  for i = 1, #ids do t[#t + 1] = ids[i] end
  return self
end

--- The logits after the last token (a tide.Logits view, indexed by 0-based
-- token id; #view == n_vocab). Valid until the next decode of any session.
function Session:logits()
  self:_live()
  if #self.tokens == 0 then error("session has no tokens yet: feed it first", 2) end
  if self.gen ~= self.model.gen then
    -- another session decoded since: recompute the last position (one token)
    local last = self.tokens[#self.tokens]
    self.ctx:truncate(self.seq, self.n_pre + #self.tokens - 1)
    self.tokens[#self.tokens] = nil
    self:feed({ last })
  end
  return self.ctx:logits(self.row)
end

--- Forks: one child (no argument) or an array of n children, sharing the
-- prefix (no re-prefill, no copy of KV rows). Children get distinct seeds.
function Session:fork(n)
  local seq = self:_live()
  local function one()
    self.forks = self.forks + 1
    local child = setmetatable({ model = self.model, ctx = self.ctx, seq = self.ctx:fork(seq),
                                 tokens = table.move(self.tokens, 1, #self.tokens, 1, {}),
                                 seed = self.seed * 1000003 + self.forks, forks = 0,
                                 gen = self.gen, row = self.row, n_pre = self.n_pre,
                                 _steer = self._steer }, Session) -- [steer] the core copies the set too
    return child
  end
  if n == nil then return one() end
  if math.type(n) ~= "integer" or n < 1 then error("fork: n must be a positive integer", 2) end
  local kids = {}
  for i = 1, n do
    local ok, kid = pcall(one)
    if not ok then -- all or nothing: free the children made so far
      for _, k in ipairs(kids) do k:close() end
      error(string.format("fork: child %d of %d: %s", i, n, tostring(kid)), 2)
    end
    kids[i] = kid
  end
  return kids
end

--- Sum of the log-probabilities of ids as this session's continuation, and
-- the per-token values. The session is unchanged (the work runs in a fork,
-- one forward over all of ids).
function Session:score(ids)
  local first = self:logits():logprob(ids[1])
  local per = { first }
  if #ids == 1 then return first, per end
  local kid = self:fork()
  local prefix = table.move(ids, 1, #ids - 1, 1, {})
  self.ctx:feed(kid.seq, prefix, true)
  local m = self.model
  m.gen = m.gen + 1
  local total = first
  for i = 1, #prefix do
    per[i + 1] = self.ctx:logits(i):logprob(ids[i + 1])
    total = total + per[i + 1]
  end
  kid:close()
  return total, per
end

--- Forgets positions pos.. (keeps tokens 1..pos).
function Session:rewind(pos)
  local seq = self:_live()
  if math.type(pos) ~= "integer" or pos < 0 or pos > #self.tokens then
    error(string.format("rewind: position %s out of range 0..%d", tostring(pos), #self.tokens), 2)
  end
  self.ctx:truncate(seq, self.n_pre + pos)
  for i = #self.tokens, pos + 1, -1 do self.tokens[i] = nil end
  self.gen = nil
  return self
end

--- Starts an empty session with a prefix (tide.prefix.load): its k learned
-- K/V rows take cache positions 0..k-1 and the tokens follow at k.. (the
-- session's pos still counts tokens only). Forks share the prefix.
function Session:set_prefix(p)
  local seq = self:_live()
  if getmetatable(p) ~= require("tide.prefix").Prefix then
    error("set_prefix: a tide.prefix object expected, got " .. type(p), 2)
  end
  if #self.tokens > 0 or self.n_pre > 0 then
    error("set_prefix: the session is not empty (set the prefix before the first feed)", 2)
  end
  p:apply(self.ctx, seq)
  self.n_pre = p.n_tokens
  self.prefix = p -- kept alive beside the session
  return self
end

function Session:close()
  local seq = rawget(self, "seq")
  if seq and self.ctx then pcall(self.ctx.seq_free, self.ctx, seq) end
  self.seq = nil
end

--- The text of tokens i..j (default: all).
function Session:text(i, j)
  return self.model:detokenize(table.move(self.tokens, i or 1, j or #self.tokens, 1, {}))
end

Session.generate = generate.generate
Session.stream = generate.stream
Session.select = generate.select

function Session:beam(opts) return require("tide.beam")(self, opts) end
function Session:best_of_n(opts) return require("tide.best_of_n")(self, opts) end
function Session:self_consistency(opts) return require("tide.self_consistency")(self, opts) end

-- [steer] steering and introspection (tide.steer, docs/steering.md)
function Model:steer(set) return require("tide.steer").model_steer(self, set) end
function Model:control_vector(cv, opts) return require("tide.steer").model_cvec(self, cv, opts) end
function Model:project(vec, opts) return require("tide.steer").project(self, vec, opts) end
function Session:steer(set) return require("tide.steer").session_steer(self, set) end
function Session:hidden(layer) return require("tide.steer").hidden(self, layer) end
--- The model's hash (tide_model_hash, 16 hex digits): what steer files
-- record as their base. Reads every weight once; then cached.
function Model:hash()
  if not self._hash then self._hash = core.model_hash(self.h) end
  return self._hash
end
-- [/steer]

Model.Session = Session
return Model
