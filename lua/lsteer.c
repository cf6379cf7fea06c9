/*
** lsteer.c -- tide.Steer (LM-Steer objects), tide.Vector (a float vector
** for hidden states and directions), and the steering / introspection
** methods of tide.Context: set_steers, reset_steers, set_cvec, capture,
** hidden, project, lens, inject. Layer: binding.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ltide.h"

#define LT_STEER "tide.Steer"
#define LT_VECTOR "tide.Vector"

typedef struct { tide_steer *s; } lt_steer;
typedef struct { int64_t n; float v[]; } lt_vector;

/* ---------------------------------------------------------------- tide.Vector */

static lt_vector *newvector(lua_State *L, int64_t n) {
  lt_vector *v = lua_newuserdatauv(L, sizeof *v + sizeof(float) * (size_t)n, 0);
  v->n = n;
  memset(v->v, 0, sizeof(float) * (size_t)n);
  luaL_setmetatable(L, LT_VECTOR);
  return v;
}

static lt_vector *checkvector(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, LT_VECTOR);
}

/* core.vector(n | { numbers }) -> a zero vector of n floats, or a copy */
static int l_vector(lua_State *L) {
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_Integer n = luaL_len(L, 1);
    lt_vector *v = newvector(L, n);
    for (lua_Integer i = 0; i < n; i++) {
      lua_rawgeti(L, 1, i + 1);
      int ok;
      lua_Number x = lua_tonumberx(L, -1, &ok);
      if (!ok) return luaL_error(L, "vector: element %d is not a number", (int)i + 1);
      v->v[i] = (float)x;
      lua_pop(L, 1);
    }
    return 1;
  }
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= (1 << 28), 1, "size out of range");
  newvector(L, n);
  return 1;
}

static int64_t checkindex(lua_State *L, int idx, int64_t n) {
  lua_Integer i = luaL_checkinteger(L, idx);
  if (i < 1 || i > n) luaL_error(L, "vector index %d out of range 1..%d", (int)i, (int)n);
  return i - 1;
}

static int vec_index(lua_State *L) {
  lt_vector *v = checkvector(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_pushnumber(L, v->v[checkindex(L, 2, v->n)]);
    return 1;
  }
  luaL_getmetafield(L, 1, "methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int vec_newindex(lua_State *L) {
  lt_vector *v = checkvector(L, 1);
  v->v[checkindex(L, 2, v->n)] = (float)luaL_checknumber(L, 3);
  return 0;
}

static int vec_len(lua_State *L) {
  lua_pushinteger(L, checkvector(L, 1)->n);
  return 1;
}

static int vec_totable(lua_State *L) {
  lt_vector *v = checkvector(L, 1);
  lua_createtable(L, (int)v->n, 0);
  for (int64_t i = 0; i < v->n; i++) {
    lua_pushnumber(L, v->v[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static lt_vector *samesize(lua_State *L, int a, int b) {
  lt_vector *x = checkvector(L, a), *y = checkvector(L, b);
  if (x->n != y->n) luaL_error(L, "vector sizes differ (%d and %d)", (int)x->n, (int)y->n);
  return y;
}

static int vec_dot(lua_State *L) {
  lt_vector *x = checkvector(L, 1), *y = samesize(L, 1, 2);
  double s = 0;
  for (int64_t i = 0; i < x->n; i++) s += (double)x->v[i] * y->v[i];
  lua_pushnumber(L, s);
  return 1;
}

static int vec_norm(lua_State *L) {
  lt_vector *x = checkvector(L, 1);
  double s = 0;
  for (int64_t i = 0; i < x->n; i++) s += (double)x->v[i] * x->v[i];
  lua_pushnumber(L, sqrt(s));
  return 1;
}

/* a x + b y -> new vector (y may be absent: b = 0) */
static int lincomb(lua_State *L, int xi, double a, int yi, double b) {
  lt_vector *x = checkvector(L, xi), *y = yi ? samesize(L, xi, yi) : NULL;
  lt_vector *z = newvector(L, x->n);
  for (int64_t i = 0; i < x->n; i++) z->v[i] = (float)(a * x->v[i] + (y ? b * y->v[i] : 0));
  return 1;
}

static int vec_add(lua_State *L) { return lincomb(L, 1, 1, 2, 1); }
static int vec_sub(lua_State *L) { return lincomb(L, 1, 1, 2, -1); }
static int vec_unm(lua_State *L) { return lincomb(L, 1, -1, 0, 0); }
static int vec_copy(lua_State *L) { return lincomb(L, 1, 1, 0, 0); }
static int vec_mul(lua_State *L) {
  if (lua_isnumber(L, 1)) return lincomb(L, 2, lua_tonumber(L, 1), 0, 0);
  return lincomb(L, 1, luaL_checknumber(L, 2), 0, 0);
}
static int vec_div(lua_State *L) { return lincomb(L, 1, 1 / luaL_checknumber(L, 2), 0, 0); }

/* v:slice(i, j) -> elements i..j (1-based, inclusive) as a new vector */
static int vec_slice(lua_State *L) {
  lt_vector *x = checkvector(L, 1);
  lua_Integer i = luaL_checkinteger(L, 2), j = luaL_checkinteger(L, 3);
  if (i < 1 || j > x->n || j < i - 1) return luaL_error(L, "slice %d..%d out of range 1..%d", (int)i, (int)j, (int)x->n);
  lt_vector *z = newvector(L, j - i + 1);
  memcpy(z->v, x->v + i - 1, sizeof(float) * (size_t)z->n);
  return 1;
}

/* v:set(i, w) -> copies vector w into v starting at element i (1-based) */
static int vec_set(lua_State *L) {
  lt_vector *x = checkvector(L, 1), *w = checkvector(L, 3);
  lua_Integer i = luaL_checkinteger(L, 2);
  if (i < 1 || i - 1 + w->n > x->n) return luaL_error(L, "set: %d elements at %d past the size %d", (int)w->n, (int)i, (int)x->n);
  memcpy(x->v + i - 1, w->v, sizeof(float) * (size_t)w->n);
  lua_settop(L, 1);
  return 1;
}

static int vec_tostring(lua_State *L) {
  lt_vector *x = checkvector(L, 1);
  lua_pushfstring(L, "tide.Vector(%d)", (int)x->n);
  return 1;
}

static const luaL_Reg vec_methods[] = {
  { "totable", vec_totable }, { "dot", vec_dot }, { "norm", vec_norm }, { "copy", vec_copy },
  { "slice", vec_slice }, { "set", vec_set }, { NULL, NULL }
};
static const luaL_Reg vec_meta[] = {
  { "__index", vec_index }, { "__newindex", vec_newindex }, { "__len", vec_len },
  { "__add", vec_add }, { "__sub", vec_sub }, { "__unm", vec_unm }, { "__mul", vec_mul },
  { "__div", vec_div }, { "__tostring", vec_tostring }, { NULL, NULL }
};

/* ---------------------------------------------------------------- tide.Steer */

static tide_steer *checksteer(lua_State *L, int idx) {
  lt_steer *b = luaL_checkudata(L, idx, LT_STEER);
  if (!b->s) luaL_error(L, "attempt to use a closed steer");
  return b->s;
}

static lt_steer *newsteer(lua_State *L) {
  lt_steer *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->s = NULL;
  luaL_setmetatable(L, LT_STEER);
  return b;
}

/* core.steer_new(n_embd, rank, p1, p2 [, eps0]): p1, p2 are vectors or
** arrays of n_embd*rank numbers, row-major (n_embd, rank) */
static const float *floats_arg(lua_State *L, int idx, int64_t n) {
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_pushcfunction(L, l_vector);
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    lua_replace(L, idx);
  }
  lt_vector *v = checkvector(L, idx);
  if (v->n != n) luaL_error(L, "steer_new: argument %d has %d numbers, expected %d", idx, (int)v->n, (int)n);
  return v->v;
}

static int l_steer_new(lua_State *L) {
  lua_Integer d = luaL_checkinteger(L, 1), r = luaL_checkinteger(L, 2);
  luaL_argcheck(L, d >= 1 && d <= (1 << 20) && r >= 1 && r <= d, 2, "bad n_embd or rank");
  const float *p1 = floats_arg(L, 3, d * r), *p2 = floats_arg(L, 4, d * r);
  float eps0 = (float)luaL_optnumber(L, 5, 0);
  lt_steer *b = newsteer(L);
  int st = tide_steer_new(lt_env(L), (int32_t)d, (int32_t)r, p1, p2, eps0, &b->s);
  if (st) return lt_fail(L, st);
  return 1;
}

/* core.steer_load(path) -> steer | nil, message */
static int l_steer_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lt_steer *b = newsteer(L);
  int st = tide_steer_load(lt_env(L), path, &b->s);
  if (st) {
    luaL_pushfail(L);
    lua_pushstring(L, tide_env_errmsg(lt_env(L)));
    return 2;
  }
  return 1;
}

static int s_close(lua_State *L) {
  lt_steer *b = luaL_checkudata(L, 1, LT_STEER);
  tide_steer_free(b->s); /* contexts using it keep their own reference */
  b->s = NULL;
  return 0;
}

/* [transfer] the source record into the table on top: base_name,
** base_hash (16 hex digits), data; absent fields stay nil */
static void push_source(lua_State *L, const tide_steer *s) {
  tide_steer_source src;
  tide_steer_get_source(s, &src);
  if (src.base_name) {
    lua_pushstring(L, src.base_name);
    lua_setfield(L, -2, "base_name");
  }
  if (src.has_base_hash) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)src.base_hash);
    lua_pushstring(L, hex);
    lua_setfield(L, -2, "base_hash");
  }
  if (src.data) {
    lua_pushstring(L, src.data);
    lua_setfield(L, -2, "data");
  }
}

/* core.model_hash(model) -> tide_model_hash as 16 hex digits */
static int l_model_hash(lua_State *L) {
  uint64_t h;
  int st = tide_model_hash(lt_checkmodel(L, 1), &h);
  if (st) return lt_fail(L, st);
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  lua_pushstring(L, hex);
  return 1;
}

/* core.steer_transfer(steer, model_a, model_b [, lambda [, "fit2" | "htwh"]])
** -> new steer, { n_shared, d_a, d_b, underdetermined, ridge_a, ridge_b,
** residual_ab, residual_ba } */
static int l_steer_transfer(lua_State *L) {
  static const char *const methods[] = { "fit2", "htwh", NULL };
  tide_steer *w = checksteer(L, 1);
  tide_model *a = lt_checkmodel(L, 2), *b = lt_checkmodel(L, 3);
  tide_steer_transfer_params p = tide_steer_transfer_default_params();
  p.lambda = luaL_optnumber(L, 4, p.lambda);
  p.method = luaL_checkoption(L, 5, "fit2", methods);
  lt_steer *o = newsteer(L);
  tide_steer_transfer_info in;
  int st = tide_steer_transfer(a, b, w, &p, &o->s, &in);
  if (st) return lt_fail(L, st);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, in.n_shared);
  lua_setfield(L, -2, "n_shared");
  lua_pushinteger(L, in.d_a);
  lua_setfield(L, -2, "d_a");
  lua_pushinteger(L, in.d_b);
  lua_setfield(L, -2, "d_b");
  lua_pushboolean(L, in.underdetermined);
  lua_setfield(L, -2, "underdetermined");
  lua_pushnumber(L, in.ridge_a);
  lua_setfield(L, -2, "ridge_a");
  lua_pushnumber(L, in.ridge_b);
  lua_setfield(L, -2, "ridge_b");
  lua_pushnumber(L, in.residual_ab);
  lua_setfield(L, -2, "residual_ab");
  lua_pushnumber(L, in.residual_ba);
  lua_setfield(L, -2, "residual_ba");
  return 2;
}
/* [/transfer] */

static int s_info(lua_State *L) {
  tide_steer_info in;
  tide_steer_get_info(checksteer(L, 1), &in);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, in.n_embd);
  lua_setfield(L, -2, "n_embd");
  lua_pushinteger(L, in.rank);
  lua_setfield(L, -2, "rank");
  lua_pushnumber(L, in.eps0);
  lua_setfield(L, -2, "eps0");
  push_source(L, checksteer(L, 1));
  return 1;
}

/* s:p1() / s:p2() -> vector of n_embd*rank floats, row-major (n_embd, rank) */
static int s_p(lua_State *L, int which) {
  tide_steer_info in;
  tide_steer_get_info(checksteer(L, 1), &in);
  int64_t n = (int64_t)in.n_embd * in.rank;
  lt_vector *v = newvector(L, n);
  memcpy(v->v, which ? in.p2 : in.p1, sizeof(float) * (size_t)n);
  return 1;
}
static int s_p1(lua_State *L) { return s_p(L, 0); }
static int s_p2(lua_State *L) { return s_p(L, 1); }

static int s_save(lua_State *L) {
  int st = tide_steer_save(checksteer(L, 1), luaL_checkstring(L, 2), luaL_optstring(L, 3, NULL));
  if (st) return lt_fail(L, st);
  return 0;
}

/* s:svd(k) -> sigma { numbers }, u { vectors }, v { vectors } */
static int s_svd(lua_State *L) {
  tide_steer *s = checksteer(L, 1);
  tide_steer_info in;
  tide_steer_get_info(s, &in);
  lua_Integer k = luaL_optinteger(L, 2, in.rank);
  luaL_argcheck(L, k >= 1 && k <= in.rank, 2, "k out of range 1..rank");
  size_t d = (size_t)in.n_embd;
  float *buf = lua_newuserdatauv(L, sizeof(float) * (size_t)k * (2 * d + 1), 0);
  float *sig = buf, *u = buf + k, *v = u + (size_t)k * d;
  int st = tide_steer_svd(s, (int32_t)k, sig, u, v);
  if (st) return lt_fail(L, st);
  lua_createtable(L, (int)k, 0);
  lua_createtable(L, (int)k, 0);
  lua_createtable(L, (int)k, 0);
  for (lua_Integer i = 0; i < k; i++) {
    lua_pushnumber(L, sig[i]);
    lua_rawseti(L, -4, i + 1);
    memcpy(newvector(L, (int64_t)d)->v, u + i * d, sizeof(float) * d);
    lua_rawseti(L, -3, i + 1);
    memcpy(newvector(L, (int64_t)d)->v, v + i * d, sizeof(float) * d);
    lua_rawseti(L, -2, i + 1);
  }
  return 3;
}

static int s_tostring(lua_State *L) {
  lt_steer *b = luaL_checkudata(L, 1, LT_STEER);
  if (!b->s) {
    lua_pushstring(L, "tide.Steer (closed)");
    return 1;
  }
  tide_steer_info in;
  tide_steer_get_info(b->s, &in);
  lua_pushfstring(L, "tide.Steer(n_embd %d, rank %d)", (int)in.n_embd, (int)in.rank);
  return 1;
}

static const luaL_Reg steer_methods[] = {
  { "info", s_info }, { "p1", s_p1 }, { "p2", s_p2 }, { "save", s_save }, { "svd", s_svd },
  { "close", s_close }, { NULL, NULL }
};
static const luaL_Reg steer_meta[] = {
  { "__gc", s_close }, { "__close", s_close }, { "__tostring", s_tostring }, { NULL, NULL }
};

/* ---------------------------------------------------------------- context methods */

static int32_t checkseqarg(lua_State *L, int idx) {
  lua_Integer s = luaL_checkinteger(L, idx);
  luaL_argcheck(L, s >= -1 && s <= INT32_MAX, idx, "sequence id out of range");
  return (int32_t)s;
}

/* ctx:set_steers(seq, { { steer, eps [, "output" | "input"] }, ... });
** seq -1 is the context default */
static int c_set_steers(lua_State *L) {
  tide_ctx *ctx = lt_checkctx(L, 1, NULL);
  int32_t seq = checkseqarg(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 3);
  if (n > TIDE_STEER_MAX) return luaL_error(L, "set_steers: %d entries, at most %d", (int)n, TIDE_STEER_MAX);
  tide_steer_entry e[TIDE_STEER_MAX];
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, 3, i + 1);
    int t = lua_gettop(L);
    luaL_checktype(L, t, LUA_TTABLE);
    lua_rawgeti(L, t, 1);
    e[i].steer = checksteer(L, -1);
    lua_rawgeti(L, t, 2);
    e[i].eps = (float)luaL_checknumber(L, -1);
    lua_rawgeti(L, t, 3);
    const char *w = luaL_optstring(L, -1, "output");
    if (!strcmp(w, "output")) e[i].where = TIDE_STEER_OUTPUT;
    else if (!strcmp(w, "input")) e[i].where = TIDE_STEER_INPUT;
    else return luaL_error(L, "set_steers: entry %d: where '%s', expected 'output' or 'input'", (int)i + 1, w);
    lua_settop(L, t - 1);
  }
  int st = tide_ctx_set_steers(ctx, seq, e, (int32_t)n);
  if (st) return lt_fail(L, st);
  return 0;
}

static int c_reset_steers(lua_State *L) {
  int st = tide_ctx_reset_steers(lt_checkctx(L, 1, NULL), checkseqarg(L, 2));
  if (st) return lt_fail(L, st);
  return 0;
}

/* ctx:n_steers(seq) -> entries of the set seq uses */
static int c_n_steers(lua_State *L) {
  int32_t n = tide_ctx_get_steers(lt_checkctx(L, 1, NULL), checkseqarg(L, 2), NULL, 0);
  if (n < 0) return luaL_error(L, "n_steers: sequence %d is not live", (int)lua_tointeger(L, 2));
  lua_pushinteger(L, n);
  return 1;
}

/* ctx:set_cvec(vector | nil [, il_start, il_end]) -- vector (n_layer*n_embd) */
static int c_set_cvec(lua_State *L) {
  tide_ctx *ctx = lt_checkctx(L, 1, NULL);
  if (lua_isnoneornil(L, 2)) {
    tide_ctx_set_cvec(ctx, NULL, 0, 0, 0, 0);
    return 0;
  }
  lt_vector *v = checkvector(L, 2);
  lua_Integer a = luaL_checkinteger(L, 3), b = luaL_checkinteger(L, 4);
  lua_Integer nl = luaL_checkinteger(L, 5);
  luaL_argcheck(L, nl >= 1 && v->n % nl == 0, 5, "n_layer does not divide the vector");
  int st = tide_ctx_set_cvec(ctx, v->v, (int32_t)nl, (int32_t)(v->n / nl), (int32_t)a, (int32_t)b);
  if (st) return lt_fail(L, st);
  return 0;
}

/* ctx:capture({ layers } | nil) */
static int c_capture(lua_State *L) {
  tide_ctx *ctx = lt_checkctx(L, 1, NULL);
  int32_t layers[1024];
  lua_Integer n = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    n = luaL_len(L, 2);
    if (n > 1024) return luaL_error(L, "capture: too many layers");
    for (lua_Integer i = 0; i < n; i++) {
      lua_rawgeti(L, 2, i + 1);
      int ok;
      lua_Integer l = lua_tointegerx(L, -1, &ok);
      if (!ok || l < 0 || l > INT32_MAX) return luaL_error(L, "capture: layer %d is not a layer number", (int)i + 1);
      layers[i] = (int32_t)l;
      lua_pop(L, 1);
    }
  }
  int st = tide_ctx_capture(ctx, layers, (int32_t)n);
  if (st) return lt_fail(L, st);
  return 0;
}

static int32_t model_dim(lua_State *L, int ctx_idx, int vocab) {
  lua_getiuservalue(L, ctx_idx, 1); /* the model userdata */
  tide_model_info in;
  tide_model_get_info(lt_checkmodel(L, -1), &in);
  lua_pop(L, 1);
  return vocab ? in.n_vocab : in.n_embd;
}

/* ctx:hidden(layer, row) -> vector copy of batch row `row` (1-based) of the
** last decode at layer, or nil if it was not captured */
static int c_hidden(lua_State *L) {
  tide_ctx *ctx = lt_checkctx(L, 1, NULL);
  lua_Integer layer = luaL_checkinteger(L, 2), row = luaL_checkinteger(L, 3);
  if (layer < 0 || layer > INT32_MAX || row < 1 || row > INT32_MAX) return luaL_error(L, "hidden: layer or row out of range");
  const float *h = tide_ctx_hidden(ctx, (int32_t)layer, (int32_t)row - 1);
  if (!h) {
    luaL_pushfail(L);
    return 1;
  }
  int32_t e = model_dim(L, 1, 0);
  memcpy(newvector(L, e)->v, h, sizeof(float) * (size_t)e);
  return 1;
}

/* ctx:project(vector [, norm]) -> an owned tide.Logits of n_vocab entries:
** the output projection of the vector (after the final norm if norm) */
static int c_project(lua_State *L) {
  tide_ctx *ctx = lt_checkctx(L, 1, NULL);
  lt_vector *v = checkvector(L, 2);
  int norm = lua_toboolean(L, 3);
  int32_t e = model_dim(L, 1, 0), nv = model_dim(L, 1, 1);
  if (v->n != e) return luaL_error(L, "project: vector of %d, the model's n_embd is %d", (int)v->n, (int)e);
  lt_logits *lg = lua_newuserdatauv(L, sizeof *lg + sizeof(float) * (size_t)nv, 1);
  lg->p = (const float *)(lg + 1);
  lg->n = nv;
  lg->gen = 0;
  lg->owned = 1;
  luaL_setmetatable(L, LT_LOGITS);
  int st = tide_ctx_project(ctx, v->v, 1, norm, (float *)(lg + 1));
  if (st) return lt_fail(L, st);
  return 1;
}

/* ctx:inject(layer, row, vector [, "replace" | "add"]) queues, for the next
** decode, a change of batch row `row` (1-based) at layer; ctx:inject(nil)
** drops the queue */
static int c_inject(lua_State *L) {
  tide_ctx *ctx = lt_checkctx(L, 1, NULL);
  if (lua_isnoneornil(L, 2)) {
    tide_ctx_clear_injections(ctx);
    return 0;
  }
  lua_Integer layer = luaL_checkinteger(L, 2), row = luaL_checkinteger(L, 3);
  lt_vector *v = checkvector(L, 4);
  static const char *const modes[] = { "replace", "add", NULL };
  int mode = luaL_checkoption(L, 5, "replace", modes);
  int32_t e = model_dim(L, 1, 0);
  if (v->n != e) return luaL_error(L, "inject: vector of %d, the model's n_embd is %d", (int)v->n, (int)e);
  if (layer < 0 || layer > INT32_MAX || row < 1 || row > INT32_MAX)
    return luaL_error(L, "inject: layer %d or row %d out of range", (int)layer, (int)row);
  int st = tide_ctx_inject(ctx, (int32_t)layer, (int32_t)row - 1, v->v,
                           mode ? TIDE_INJECT_ADD : TIDE_INJECT_REPLACE);
  if (st) return lt_fail(L, st);
  return 0;
}

/* ctx:final_norm(vector) -> the vector after the model's final norm */
static int c_final_norm(lua_State *L) {
  tide_ctx *ctx = lt_checkctx(L, 1, NULL);
  lt_vector *v = checkvector(L, 2);
  int32_t e = model_dim(L, 1, 0);
  if (v->n != e) return luaL_error(L, "final_norm: vector of %d, the model's n_embd is %d", (int)v->n, (int)e);
  int st = tide_ctx_final_norm(ctx, v->v, 1, newvector(L, e)->v);
  if (st) return lt_fail(L, st);
  return 1;
}

/* ctx:lens(layer, n_rows [, k]) -> for rows 1..n_rows of the last decode,
** the logit lens at layer: { { ids = {k ids}, logprobs = {k} }, ... } */
static int c_lens(lua_State *L) {
  tide_ctx *ctx = lt_checkctx(L, 1, NULL);
  lua_Integer layer = luaL_checkinteger(L, 2), n = luaL_checkinteger(L, 3), k = luaL_optinteger(L, 4, 1);
  int32_t e = model_dim(L, 1, 0), nv = model_dim(L, 1, 1);
  luaL_argcheck(L, k >= 1 && k <= 100 && k <= nv, 4, "k out of range 1..100");
  luaL_argcheck(L, n >= 0 && n <= 65536, 3, "row count out of range");
  float *h = lua_newuserdatauv(L, sizeof(float) * ((size_t)e + (size_t)nv + 2 * (size_t)k), 0);
  float *out = h + e, *vals = out + nv;
  int32_t *ids = (int32_t *)(vals + k);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer r = 0; r < n; r++) {
    const float *x = layer >= 0 && layer <= INT32_MAX ? tide_ctx_hidden(ctx, (int32_t)layer, (int32_t)r) : NULL;
    if (!x) return luaL_error(L, "lens: layer %d row %d was not captured", (int)layer, (int)r + 1);
    memcpy(h, x, sizeof(float) * (size_t)e);
    int st = tide_ctx_project(ctx, h, 1, 1, out);
    if (st) return lt_fail(L, st);
    tide_topk(out, nv, (int32_t)k, ids, vals);
    lua_createtable(L, 0, 2);
    lua_createtable(L, (int)k, 0);
    lua_createtable(L, (int)k, 0);
    for (lua_Integer i = 0; i < k; i++) {
      lua_pushinteger(L, ids[i]);
      lua_rawseti(L, -3, i + 1);
      lua_pushnumber(L, tide_logprob(out, nv, ids[i]));
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -3, "logprobs");
    lua_setfield(L, -2, "ids");
    lua_rawseti(L, -2, r + 1);
  }
  return 1;
}

static const luaL_Reg ctx_methods[] = {
  { "set_steers", c_set_steers }, { "reset_steers", c_reset_steers }, { "n_steers", c_n_steers },
  { "set_cvec", c_set_cvec }, { "capture", c_capture }, { "hidden", c_hidden },
  { "project", c_project }, { "final_norm", c_final_norm }, { "lens", c_lens },
  { "inject", c_inject }, { NULL, NULL }
};

/* ---------------------------------------------------------------- control vector files */

/* core.cvec_load(path, scale, n_layer, n_embd [, into]) -> vector
** (n_layer*n_embd; into, when given, is added to in place) | nil, message */
static int l_cvec_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  float scale = (float)luaL_checknumber(L, 2);
  lua_Integer nl = luaL_checkinteger(L, 3), e = luaL_checkinteger(L, 4);
  luaL_argcheck(L, nl >= 1 && nl <= 4096 && e >= 1 && e <= (1 << 20), 3, "bad n_layer or n_embd");
  lt_vector *v;
  if (lua_isnoneornil(L, 5)) v = newvector(L, nl * e);
  else {
    v = checkvector(L, 5);
    if (v->n != nl * e) return luaL_error(L, "cvec_load: the vector has %d floats, expected %d", (int)v->n, (int)(nl * e));
    lua_pushvalue(L, 5);
  }
  int st = tide_cvec_load(lt_env(L), path, scale, (int32_t)nl, (int32_t)e, v->v);
  if (st) {
    luaL_pushfail(L);
    lua_pushstring(L, tide_env_errmsg(lt_env(L)));
    return 2;
  }
  return 1;
}

/* core.cvec_save(path, vector, n_layer [, model_hint]) */
static int l_cvec_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lt_vector *v = checkvector(L, 2);
  lua_Integer nl = luaL_checkinteger(L, 3);
  luaL_argcheck(L, nl >= 2 && v->n % nl == 0, 3, "n_layer does not divide the vector");
  int st = tide_cvec_save(lt_env(L), path, v->v, (int32_t)nl, (int32_t)(v->n / nl), luaL_optstring(L, 4, NULL));
  if (st) return lt_fail(L, st);
  return 0;
}

/* core.cvec_info(path) -> { architecture, layer_count, model_hint,
** directions = { N, ... } (sorted) } | nil, message: a control-vector
** file's metadata, to check what a writer produced */
static int l_cvec_info(lua_State *L) {
  tide_gguf *g = NULL;
  int st = tide_gguf_open(lt_env(L), luaL_checkstring(L, 1), &g);
  if (st) {
    luaL_pushfail(L);
    lua_pushstring(L, tide_env_errmsg(lt_env(L)));
    return 2;
  }
  lua_createtable(L, 0, 4);
  const char *s;
  size_t len;
  int64_t v;
  if (!tide_gguf_get_str(g, "general.architecture", &s, &len)) {
    lua_pushlstring(L, s, len);
    lua_setfield(L, -2, "architecture");
  }
  if (!tide_gguf_get_str(g, "controlvector.model_hint", &s, &len)) {
    lua_pushlstring(L, s, len);
    lua_setfield(L, -2, "model_hint");
  }
  if (!tide_gguf_get_int(g, "controlvector.layer_count", &v)) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, "layer_count");
  }
  lua_newtable(L);
  int n = 0;
  for (int64_t i = 0; i < tide_gguf_n_tensors(g); i++) {
    tide_tensor_info ti;
    if (tide_gguf_tensor(g, i, &ti) || strncmp(ti.name, "direction.", 10)) continue;
    lua_pushstring(L, ti.name);
    lua_rawseti(L, -2, ++n);
  }
  lua_setfield(L, -2, "tensors");
  tide_gguf_free(g);
  return 1;
}

static const luaL_Reg funcs[] = {
  { "cvec_info", l_cvec_info },
  { "vector", l_vector }, { "steer_new", l_steer_new }, { "steer_load", l_steer_load },
  { "cvec_load", l_cvec_load }, { "cvec_save", l_cvec_save },
  { "model_hash", l_model_hash }, { "steer_transfer", l_steer_transfer }, { NULL, NULL }
};

void lt_open_steer(lua_State *L) {
  lt_newclass(L, LT_STEER, steer_methods, steer_meta);
  if (luaL_newmetatable(L, LT_VECTOR)) {
    luaL_setfuncs(L, vec_meta, 0);
    luaL_newlib(L, vec_methods);
    lua_setfield(L, -2, "methods");
  }
  lua_pop(L, 1);
  /* the context's introspection methods join its class */
  luaL_getmetatable(L, LT_CTX);
  lua_getfield(L, -1, "__index");
  luaL_setfuncs(L, ctx_methods, 0);
  lua_pop(L, 2);
  luaL_setfuncs(L, funcs, 0);
}
