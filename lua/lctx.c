/*
** lctx.c -- tide.Context (the KV cache, its sequences, decode) and
** tide.Logits (a view of one row of logits, indexed by 0-based token id).
** Layer: binding.
*/
#include <math.h>
#include <string.h>

#include "ltide.h"

tide_ctx *lt_checkctx(lua_State *L, int idx, lt_ctx **box) {
  lt_ctx *b = luaL_checkudata(L, idx, LT_CTX);
  if (!b->ctx) luaL_error(L, "attempt to use a closed context");
  if (box) *box = b;
  return b->ctx;
}

/* model:context([{n_ctx, n_cells, n_seq_max, n_batch, n_outputs, kv_type}]) */
static int l_context(lua_State *L) {
  static const char *const opts[] = { "n_ctx", "n_cells", "n_seq_max", "n_batch", "n_outputs", "kv_type", NULL };
  tide_model *m = lt_checkmodel(L, 1);
  lt_checkopts(L, 2, opts);
  tide_ctx_params p = tide_ctx_default_params();
  p.n_ctx = (int32_t)lt_optint(L, 2, "n_ctx", p.n_ctx);
  p.n_cells = (int32_t)lt_optint(L, 2, "n_cells", p.n_cells);
  p.n_seq_max = (int32_t)lt_optint(L, 2, "n_seq_max", p.n_seq_max);
  p.n_batch = (int32_t)lt_optint(L, 2, "n_batch", p.n_batch);
  p.n_outputs = (int32_t)lt_optint(L, 2, "n_outputs", p.n_outputs);
  if (!lua_isnoneornil(L, 2) && lua_getfield(L, 2, "kv_type") != LUA_TNIL) {
    const char *t = luaL_checkstring(L, -1);
    if (!strcmp(t, "f16")) p.kv_type = TIDE_F16;
    else if (!strcmp(t, "f32")) p.kv_type = TIDE_F32;
    else luaL_error(L, "option 'kv_type': expected 'f16' or 'f32', got '%s'", t);
  }
  lt_ctx *b = lua_newuserdatauv(L, sizeof *b, 1);
  b->ctx = NULL;
  b->gen = 0;
  luaL_setmetatable(L, LT_CTX);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* the model outlives its contexts */
  tide_model_info info;
  tide_model_get_info(m, &info);
  b->n_vocab = info.n_vocab;
  int st = tide_ctx_new(m, &p, &b->ctx);
  if (st) return lt_fail(L, st);
  return 1;
}

static int c_close(lua_State *L) {
  lt_ctx *b = luaL_checkudata(L, 1, LT_CTX);
  tide_ctx_free(b->ctx);
  b->ctx = NULL;
  return 0;
}

static int32_t checkseq(lua_State *L, int idx) {
  lua_Integer s = luaL_checkinteger(L, idx);
  luaL_argcheck(L, s >= 0 && s <= INT32_MAX, idx, "sequence id out of range");
  return (int32_t)s;
}

static int c_seq_new(lua_State *L) {
  int32_t s;
  int st = tide_seq_new(lt_checkctx(L, 1, NULL), &s);
  if (st) return lt_fail(L, st);
  lua_pushinteger(L, s);
  return 1;
}

static int c_fork(lua_State *L) {
  int32_t s;
  int st = tide_seq_fork(lt_checkctx(L, 1, NULL), checkseq(L, 2), &s);
  if (st) return lt_fail(L, st);
  lua_pushinteger(L, s);
  return 1;
}

static int c_truncate(lua_State *L) {
  lua_Integer pos = luaL_checkinteger(L, 3);
  luaL_argcheck(L, pos >= 0 && pos <= INT32_MAX, 3, "position out of range");
  int st = tide_seq_truncate(lt_checkctx(L, 1, NULL), checkseq(L, 2), (int32_t)pos);
  if (st) return lt_fail(L, st);
  return 0;
}

static int c_seq_free(lua_State *L) {
  int st = tide_seq_free(lt_checkctx(L, 1, NULL), checkseq(L, 2));
  if (st) return lt_fail(L, st);
  return 0;
}

static int c_seq_len(lua_State *L) {
  lua_pushinteger(L, tide_seq_len(lt_checkctx(L, 1, NULL), checkseq(L, 2)));
  return 1;
}

static int c_free_cells(lua_State *L) {
  lua_pushinteger(L, tide_ctx_free_cells(lt_checkctx(L, 1, NULL)));
  return 1;
}

static int32_t tokenat(lua_State *L, int idx, lua_Integer i, int32_t n_vocab) {
  lua_rawgeti(L, idx, i);
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint || v < 0 || v >= n_vocab)
    luaL_error(L, "token %d: %s is not a token id (0..%d)", (int)i,
               luaL_tolstring(L, -1, NULL), (int)n_vocab - 1);
  lua_pop(L, 1);
  return (int32_t)v;
}

/* ctx:feed(seq, ids [, all_logits]) -> number of logits rows (1 or #ids).
** Feeds the ids at the sequence's next positions, in chunks of n_batch;
** logits are kept for the last id (or every id of the last chunk when
** all_logits; then #ids must fit in one chunk). */
static int c_feed(lua_State *L) {
  lt_ctx *b;
  tide_ctx *ctx = lt_checkctx(L, 1, &b);
  int32_t seq = checkseq(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  int all = lua_toboolean(L, 4);
  lua_Integer n = luaL_len(L, 3);
  if (n == 0) return luaL_error(L, "feed: no tokens");
  int32_t pos = tide_seq_len(ctx, seq);
  if (pos < 0) return luaL_error(L, "feed: sequence %d is not live", (int)seq);
  enum { CHUNK = 256 };
  tide_batch_row rows[CHUNK];
  if (all && n > CHUNK) return luaL_error(L, "feed: all_logits needs at most %d tokens", CHUNK);
  for (lua_Integer i = 0; i < n; i += CHUNK) {
    int32_t k = (int32_t)(n - i < CHUNK ? n - i : CHUNK);
    for (int32_t j = 0; j < k; j++) {
      lua_Integer at = i + j;
      rows[j] = (tide_batch_row){ seq, pos + (int32_t)at, tokenat(L, 3, at + 1, b->n_vocab),
                                  all || at == n - 1 };
    }
    b->gen++;
    int st = tide_decode(ctx, rows, k);
    if (st) return lt_fail(L, st);
  }
  lua_pushinteger(L, all ? n : 1);
  return 1;
}

/* ctx:step(seqs, tokens) -> decodes one token for each sequence, all in one
** batch, with logits for every row (row i belongs to seqs[i]). */
static int c_step(lua_State *L) {
  lt_ctx *b;
  tide_ctx *ctx = lt_checkctx(L, 1, &b);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  if (n != luaL_len(L, 3)) return luaL_error(L, "step: %d sequences but %d tokens", (int)n, (int)luaL_len(L, 3));
  if (n == 0) return 0;
  tide_batch_row *rows = lua_newuserdatauv(L, sizeof *rows * (size_t)n, 0);
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, 2, i + 1);
    int isint;
    lua_Integer s = lua_tointegerx(L, -1, &isint);
    lua_pop(L, 1);
    if (!isint) return luaL_error(L, "step: sequence %d is not an integer", (int)i + 1);
    int32_t pos = tide_seq_len(ctx, (int32_t)s);
    if (pos < 0) return luaL_error(L, "step: sequence %d is not live", (int)s);
    rows[i] = (tide_batch_row){ (int32_t)s, pos, tokenat(L, 3, i + 1, b->n_vocab), 1 };
    for (lua_Integer j = 0; j < i; j++)
      if (rows[j].seq == rows[i].seq) return luaL_error(L, "step: sequence %d appears twice", (int)s);
  }
  b->gen++;
  int st = tide_decode(ctx, rows, (int32_t)n);
  if (st) return lt_fail(L, st);
  return 0;
}

/* ctx:logits([row]) -> tide.Logits view of the row-th logits row (1-based,
** default the last) of the last decode. */
static int c_logits(lua_State *L) {
  tide_ctx *ctx = lt_checkctx(L, 1, NULL);
  int32_t n = tide_ctx_n_logits(ctx);
  lua_Integer row = luaL_optinteger(L, 2, n);
  if (row < 1 || row > n) return luaL_error(L, "logits row %d out of range 1..%d", (int)row, (int)n);
  lt_pushlogits(L, 1, (int32_t)row - 1);
  return 1;
}

/* ctx:stats() -> { decodes =, rows =, logit_rows = } */
static int c_stats(lua_State *L) {
  tide_ctx_stats st;
  tide_ctx_get_stats(lt_checkctx(L, 1, NULL), &st);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, st.n_decodes);
  lua_setfield(L, -2, "decodes");
  lua_pushinteger(L, st.n_rows);
  lua_setfield(L, -2, "rows");
  lua_pushinteger(L, st.n_logit_rows);
  lua_setfield(L, -2, "logit_rows");
  return 1;
}

/* ctx:greedy(seq, n) -> array of n ids: the greedy loop entirely in C (argmax
** of the last logits, decode, repeat), for embedders' fast path and as the
** baseline the Lua generate loop is benchmarked against. Stops early at an
** end-of-generation token only if stop_eog is true. */
static int c_greedy(lua_State *L) {
  lt_ctx *b;
  tide_ctx *ctx = lt_checkctx(L, 1, &b);
  int32_t seq = checkseq(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  luaL_argcheck(L, n >= 0 && n <= INT32_MAX, 3, "token count out of range");
  if (tide_ctx_n_logits(ctx) < 1) return luaL_error(L, "greedy: the last decode kept no logits");
  lua_createtable(L, (int)n, 0);
  const float *lg = tide_ctx_logits(ctx, tide_ctx_n_logits(ctx) - 1);
  for (lua_Integer i = 0; i < n; i++) {
    int32_t id = tide_argmax(lg, b->n_vocab);
    tide_batch_row r = { seq, tide_seq_len(ctx, seq), id, 1 };
    b->gen++;
    int st = tide_decode(ctx, &r, 1);
    if (st) return lt_fail(L, st);
    lua_pushinteger(L, id);
    lua_rawseti(L, -2, i + 1);
    lg = tide_ctx_logits(ctx, 0);
  }
  return 1;
}

static const luaL_Reg ctx_methods[] = {
  { "stats", c_stats }, { "greedy", c_greedy },
  { "seq_new", c_seq_new }, { "fork", c_fork }, { "truncate", c_truncate },
  { "seq_free", c_seq_free }, { "seq_len", c_seq_len }, { "free_cells", c_free_cells },
  { "feed", c_feed }, { "step", c_step }, { "logits", c_logits }, { "close", c_close },
  { NULL, NULL }
};
static const luaL_Reg ctx_meta[] = { { "__gc", c_close }, { "__close", c_close }, { NULL, NULL } };

/* ---- tide.Logits */

void lt_pushlogits(lua_State *L, int ctx_idx, int32_t i) {
  lt_ctx *b;
  tide_ctx *ctx = lt_checkctx(L, ctx_idx, &b);
  lt_logits *v = lua_newuserdatauv(L, sizeof *v, 1);
  v->p = tide_ctx_logits(ctx, i);
  v->n = b->n_vocab;
  v->gen = b->gen;
  v->owned = 0;
  luaL_setmetatable(L, LT_LOGITS);
  lua_pushvalue(L, ctx_idx);
  lua_setiuservalue(L, -2, 1);
}

/* A view owning a copy of n floats (for :copy() and :softmax()). */
static lt_logits *newowned(lua_State *L, int32_t n) {
  lt_logits *v = lua_newuserdatauv(L, sizeof *v + sizeof(float) * (size_t)n, 1);
  v->p = (const float *)(v + 1);
  v->n = n;
  v->gen = 0;
  v->owned = 1;
  luaL_setmetatable(L, LT_LOGITS);
  return v;
}

lt_logits *lt_checklogits(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, LT_LOGITS);
}

const float *lt_logits_data(lua_State *L, int idx, int32_t *n) {
  lt_logits *v = lt_checklogits(L, idx);
  if (!v->owned) {
    lua_getiuservalue(L, idx, 1);
    lt_ctx *b = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!b || !b->ctx) luaL_error(L, "attempt to use logits of a closed context");
    if (b->gen != v->gen) luaL_error(L, "stale logits view (a later decode replaced it; use :copy() to keep one)");
  }
  *n = v->n;
  return v->p;
}

static int32_t checktokid(lua_State *L, int idx, int32_t n) {
  lua_Integer id = luaL_checkinteger(L, idx);
  if (id < 0 || id >= n) luaL_error(L, "token id %d out of range 0..%d", (int)id, (int)n - 1);
  return (int32_t)id;
}

static int v_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER) {
    int32_t n;
    const float *p = lt_logits_data(L, 1, &n);
    lua_pushnumber(L, p[checktokid(L, 2, n)]);
    return 1;
  }
  luaL_getmetafield(L, 1, "methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

/* Only owned views (copies) are writable: custom logits processors. */
static int v_newindex(lua_State *L) {
  lt_logits *v = lt_checklogits(L, 1);
  if (!v->owned) return luaL_error(L, "attempt to modify a logits view of the cache (use :copy())");
  lua_Number x = luaL_checknumber(L, 3);
  ((float *)v->p)[checktokid(L, 2, v->n)] = (float)x;
  return 0;
}

static int v_len(lua_State *L) {
  lua_pushinteger(L, lt_checklogits(L, 1)->n);
  return 1;
}

static int v_argmax(lua_State *L) {
  int32_t n;
  const float *p = lt_logits_data(L, 1, &n);
  lua_pushinteger(L, tide_argmax(p, n));
  return 1;
}

static int v_logprob(lua_State *L) {
  int32_t n;
  const float *p = lt_logits_data(L, 1, &n);
  lua_pushnumber(L, tide_logprob(p, n, checktokid(L, 2, n)));
  return 1;
}

/* v:topk(k) -> ids, values (two arrays, best first; ids are token ids) */
static int v_topk(lua_State *L) {
  int32_t n;
  const float *p = lt_logits_data(L, 1, &n);
  lua_Integer k = luaL_checkinteger(L, 2);
  luaL_argcheck(L, k >= 1 && k <= n && k <= 100000, 2, "k out of range");
  int32_t *ids = lua_newuserdatauv(L, (sizeof(int32_t) + sizeof(float)) * (size_t)k, 0);
  float *vals = (float *)(ids + k);
  tide_topk(p, n, (int32_t)k, ids, vals);
  lua_createtable(L, (int)k, 0);
  lua_createtable(L, (int)k, 0);
  for (lua_Integer i = 0; i < k; i++) {
    lua_pushinteger(L, ids[i]);
    lua_rawseti(L, -3, i + 1);
    lua_pushnumber(L, vals[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 2;
}

/* v:copy() -> a view that owns its floats (survives later decodes) */
static int v_copy(lua_State *L) {
  int32_t n;
  const float *p = lt_logits_data(L, 1, &n);
  lt_logits *c = newowned(L, n);
  memcpy((float *)c->p, p, sizeof(float) * (size_t)n);
  return 1;
}

/* v:softmax([temperature]) -> an owned view of probabilities */
static int v_softmax(lua_State *L) {
  int32_t n;
  const float *p = lt_logits_data(L, 1, &n);
  lua_Number t = luaL_optnumber(L, 2, 1.0);
  luaL_argcheck(L, t > 0, 2, "temperature must be positive");
  lt_logits *c = newowned(L, n);
  float *q = (float *)c->p, mx = p[tide_argmax(p, n)];
  double sum = 0;
  for (int32_t i = 0; i < n; i++) sum += (q[i] = (float)exp((p[i] - mx) / t));
  for (int32_t i = 0; i < n; i++) q[i] = (float)(q[i] / sum);
  return 1;
}

static int v_tostring(lua_State *L) {
  lt_logits *v = lt_checklogits(L, 1);
  lua_pushfstring(L, "tide.Logits (%d entries%s)", (int)v->n, v->owned ? ", owned" : "");
  return 1;
}

static const luaL_Reg v_methods[] = {
  { "argmax", v_argmax }, { "logprob", v_logprob }, { "topk", v_topk },
  { "copy", v_copy }, { "softmax", v_softmax }, { NULL, NULL }
};
static const luaL_Reg v_meta[] = {
  { "__index", v_index }, { "__newindex", v_newindex }, { "__len", v_len }, { "__tostring", v_tostring }, { NULL, NULL }
};

void lt_open_ctx(lua_State *L) {
  lt_newclass(L, LT_CTX, ctx_methods, ctx_meta);
  if (luaL_newmetatable(L, LT_LOGITS)) {
    luaL_setfuncs(L, v_meta, 0);
    luaL_newlib(L, v_methods);
    lua_setfield(L, -2, "methods");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_context);
  lua_setfield(L, -2, "context");
}
