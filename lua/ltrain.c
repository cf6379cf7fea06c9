/*
** ltrain.c -- tide.Trainer: the C training facility driven from Lua.
** Layer: binding. Batches arrive as Lua arrays of B*T token ids (row-major);
** a step's statistics come back as a table. The progress line, schedules of
** evaluation and checkpoints are the caller's (recipes/train.lua).
*/
#include <string.h>

#include "ltide.h"

#define LT_TRAINER "tide.Trainer"

typedef struct {
  tide_trainer *tr;
  int32_t n_vocab, n_ctx;
  int32_t *buf;      /* token scratch, grown as needed (cap ids) */
  size_t cap;
} lt_trainer;

static lt_trainer *checktr(lua_State *L, int idx) {
  lt_trainer *b = luaL_checkudata(L, idx, LT_TRAINER);
  if (!b->tr) luaL_error(L, "attempt to use a closed trainer");
  return b;
}

static void freebuf(lua_State *L, lt_trainer *b) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  if (b->buf) f(ud, b->buf, b->cap * sizeof(int32_t), 0);
  b->buf = NULL;
  b->cap = 0;
}

static int tr_close(lua_State *L) {
  lt_trainer *b = luaL_checkudata(L, 1, LT_TRAINER);
  tide_trainer_free(b->tr);
  b->tr = NULL;
  freebuf(L, b);
  return 0;
}

static const char *const PARAM_KEYS[] = {
  "n_vocab", "n_embd", "n_layer", "n_head", "n_kv_head", "n_ff", "n_ctx", "rope_base",
  "norm_eps", "tied", "seed", "init_std", "n_batch", "grad_accum", "lr", "lr_min",
  "warmup_steps", "total_steps", "beta1", "beta2", "adam_eps", "weight_decay", "grad_clip",
  NULL
};

static tide_trainer_params readparams(lua_State *L, int idx) {
  lt_checkopts(L, idx, PARAM_KEYS);
  tide_trainer_params p = tide_trainer_default_params();
#define I(f) p.f = (int32_t)lt_optint(L, idx, #f, p.f)
#define N(f) p.f = (float)lt_optnum(L, idx, #f, p.f)
  I(n_vocab); I(n_embd); I(n_layer); I(n_head); I(n_kv_head); I(n_ff); I(n_ctx);
  N(rope_base); N(norm_eps); I(n_batch); I(grad_accum); N(lr); N(lr_min);
  N(beta1); N(beta2); N(adam_eps); N(weight_decay); N(grad_clip); N(init_std);
#undef I
#undef N
  p.tied = lt_optbool(L, idx, "tied", p.tied);
  p.seed = (uint64_t)lt_optint(L, idx, "seed", (lua_Integer)p.seed);
  p.warmup_steps = lt_optint(L, idx, "warmup_steps", p.warmup_steps);
  p.total_steps = lt_optint(L, idx, "total_steps", p.total_steps);
  return p;
}

static lt_trainer *newtr(lua_State *L) {
  lt_trainer *b = lua_newuserdatauv(L, sizeof *b, 1);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, LT_TRAINER);
  return b;
}

/* core.trainer(params) -> a trainer from scratch (seeded init) */
static int l_trainer(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  tide_trainer_params p = readparams(L, 1);
  lt_trainer *b = newtr(L);
  b->n_vocab = p.n_vocab;
  b->n_ctx = p.n_ctx;
  int st = tide_trainer_new(lt_env(L), &p, &b->tr);
  if (st) return lt_fail(L, st);
  return 1;
}

/* core.trainer_frozen(model, params, { steer_rank, steer_eps, n_prefix, n_kv_prefix }) */
static int l_trainer_frozen(lua_State *L) {
  static const char *const FKEYS[] = { "steer_rank", "steer_eps", "n_prefix", "n_kv_prefix",
                                       NULL };
  tide_model *m = lt_checkmodel(L, 1);
  tide_trainer_params p = readparams(L, 2);
  lt_checkopts(L, 3, FKEYS);
  tide_trainer_frozen_params fp = tide_trainer_frozen_default_params();
  fp.steer_rank = (int32_t)lt_optint(L, 3, "steer_rank", fp.steer_rank);
  fp.steer_eps = (float)lt_optnum(L, 3, "steer_eps", fp.steer_eps);
  fp.n_prefix = (int32_t)lt_optint(L, 3, "n_prefix", fp.n_prefix);
  fp.n_kv_prefix = (int32_t)lt_optint(L, 3, "n_kv_prefix", fp.n_kv_prefix);
  lt_trainer *b = newtr(L);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* the model outlives the trainer */
  tide_model_info info;
  tide_model_get_info(m, &info);
  b->n_vocab = info.n_vocab;
  b->n_ctx = p.n_ctx;
  int st = tide_trainer_new_frozen(m, &p, &fp, &b->tr);
  if (st) return lt_fail(L, st);
  return 1;
}

/* Copies a Lua array of B*T ids into the trainer's scratch. */
static int32_t *readtokens(lua_State *L, lt_trainer *b, int idx, lua_Integer n) {
  luaL_checktype(L, idx, LUA_TTABLE);
  if ((lua_Integer)luaL_len(L, idx) < n)
    luaL_error(L, "tokens: %d ids needed, got %d", (int)n, (int)luaL_len(L, idx));
  if ((size_t)n > b->cap) {
    void *ud;
    lua_Alloc f = lua_getallocf(L, &ud);
    int32_t *nb = f(ud, b->buf, b->cap * sizeof(int32_t), (size_t)n * sizeof(int32_t));
    if (!nb) luaL_error(L, "not enough memory");
    b->buf = nb;
    b->cap = (size_t)n;
  }
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    lua_pop(L, 1);
    if (!isint || v < 0 || v >= b->n_vocab)
      luaL_error(L, "tokens[%d] is not a token id (0..%d)", (int)i + 1, (int)b->n_vocab - 1);
    b->buf[i] = (int32_t)v;
  }
  return b->buf;
}

/* tr:step(tokens, B, T) -> { loss, lr, grad_norm, clipped, step, n_tokens } */
static int tr_step(lua_State *L) {
  lt_trainer *b = checktr(L, 1);
  lua_Integer B = luaL_checkinteger(L, 3), T = luaL_checkinteger(L, 4);
  luaL_argcheck(L, B >= 1 && B <= 65536, 3, "B out of range");
  luaL_argcheck(L, T >= 2 && T <= 1 << 20, 4, "T out of range");
  lua_Integer accum = luaL_optinteger(L, 5, 1);
  int32_t *tok = readtokens(L, b, 2, B * T * accum);
  tide_trainer_stats s;
  int st = tide_trainer_step(b->tr, tok, (int32_t)B, (int32_t)T, &s);
  if (st) return lt_fail(L, st);
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, s.loss); lua_setfield(L, -2, "loss");
  lua_pushnumber(L, s.lr); lua_setfield(L, -2, "lr");
  lua_pushnumber(L, s.grad_norm); lua_setfield(L, -2, "grad_norm");
  lua_pushboolean(L, s.clipped); lua_setfield(L, -2, "clipped");
  lua_pushinteger(L, s.step); lua_setfield(L, -2, "step");
  lua_pushinteger(L, s.n_tokens); lua_setfield(L, -2, "n_tokens");
  return 1;
}

/* tr:eval(tokens, B, T) -> mean loss */
static int tr_eval(lua_State *L) {
  lt_trainer *b = checktr(L, 1);
  lua_Integer B = luaL_checkinteger(L, 3), T = luaL_checkinteger(L, 4);
  luaL_argcheck(L, B >= 1 && B <= 65536, 3, "B out of range");
  luaL_argcheck(L, T >= 2 && T <= 1 << 20, 4, "T out of range");
  int32_t *tok = readtokens(L, b, 2, B * T);
  double loss;
  int st = tide_trainer_eval(b->tr, tok, (int32_t)B, (int32_t)T, &loss);
  if (st) return lt_fail(L, st);
  lua_pushnumber(L, loss);
  return 1;
}

/* tr:save(path, { name, vocab_from = model, optimizer = bool, data = string }) */
static int tr_save(lua_State *L) {
  static const char *const KEYS[] = { "name", "vocab_from", "optimizer", "data", NULL };
  lt_trainer *b = checktr(L, 1);
  const char *path = luaL_checkstring(L, 2);
  lt_checkopts(L, 3, KEYS);
  tide_trainer_save_params sp;
  memset(&sp, 0, sizeof sp);
  if (!lua_isnoneornil(L, 3)) {
    if (lua_getfield(L, 3, "name") != LUA_TNIL) sp.name = luaL_checkstring(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, 3, "data") != LUA_TNIL) sp.data = luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the strings stay alive in the options table */
    if (lua_getfield(L, 3, "vocab_from") != LUA_TNIL) sp.vocab_gguf = tide_model_gguf(lt_checkmodel(L, -1));
    lua_pop(L, 1);
    sp.optimizer = lt_optbool(L, 3, "optimizer", 0);
  }
  int st = tide_trainer_save(b->tr, path, &sp);
  if (st) return lt_fail(L, st);
  return 0;
}

static int tr_resume(lua_State *L) {
  lt_trainer *b = checktr(L, 1);
  int st = tide_trainer_resume(b->tr, luaL_checkstring(L, 2));
  if (st) return lt_fail(L, st);
  lua_pushinteger(L, tide_trainer_steps_done(b->tr));
  return 1;
}

static int tr_steps(lua_State *L) {
  lua_pushinteger(L, tide_trainer_steps_done(checktr(L, 1)->tr));
  return 1;
}

/* tr:tensors() -> { { name =, ne = { ne0, ne1 } }, ... } */
static int tr_tensors(lua_State *L) {
  lt_trainer *b = checktr(L, 1);
  int n = tide_trainer_n_tensors(b->tr);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    tide_trainer_tensor t;
    tide_trainer_get_tensor(b->tr, i, &t);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, t.name);
    lua_setfield(L, -2, "name");
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, t.ne[0]);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, t.n_dims > 1 ? t.ne[1] : 1);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "ne");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* tr:set_steer_eps(eps): the steer's eps from the next step on (issue 6:
** steer training flips its sign between style A and style B batches) */
static int tr_set_steer_eps(lua_State *L) {
  int st = tide_trainer_set_steer_eps(checktr(L, 1)->tr, (float)luaL_checknumber(L, 2));
  if (st) return lt_fail(L, st);
  return 0;
}

/* tr:set_tensor(name, { numbers }): overwrites a trainable tensor (e.g. a
** steer's P2 with the reference's 0.01 randn start) */
static int tr_set_tensor(lua_State *L) {
  lt_trainer *b = checktr(L, 1);
  const char *name = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  int n = tide_trainer_n_tensors(b->tr);
  for (int i = 0; i < n; i++) {
    tide_trainer_tensor t;
    tide_trainer_get_tensor(b->tr, i, &t);
    if (strcmp(t.name, name)) continue;
    lua_Integer size = t.ne[0] * (t.n_dims > 1 ? t.ne[1] : 1);
    if (luaL_len(L, 3) != size)
      return luaL_error(L, "set_tensor: '%s' has %d elements, got %d", name, (int)size, (int)luaL_len(L, 3));
    for (lua_Integer j = 0; j < size; j++) {
      lua_rawgeti(L, 3, j + 1);
      t.data[j] = (float)luaL_checknumber(L, -1);
      lua_pop(L, 1);
    }
    return 0;
  }
  return luaL_error(L, "set_tensor: no trainable tensor '%s'", name);
}

/* tr:init_kv_prefix(ids): the KV prefix := the cache rows of prompt ids
** (#ids == n_kv_prefix) */
static int tr_init_kv_prefix(lua_State *L) {
  lt_trainer *b = checktr(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  luaL_argcheck(L, n >= 1 && n <= 1 << 20, 2, "1 or more token ids expected");
  int32_t *tok = readtokens(L, b, 2, n);
  int st = tide_trainer_init_kv_prefix(b->tr, tok, (int32_t)n);
  if (st) return lt_fail(L, st);
  return 0;
}

static const luaL_Reg methods[] = {
  { "set_steer_eps", tr_set_steer_eps }, { "set_tensor", tr_set_tensor },
  { "init_kv_prefix", tr_init_kv_prefix },
  { "step", tr_step }, { "eval", tr_eval }, { "save", tr_save }, { "resume", tr_resume },
  { "steps", tr_steps }, { "tensors", tr_tensors }, { "close", tr_close }, { NULL, NULL }
};
static const luaL_Reg meta[] = { { "__gc", tr_close }, { "__close", tr_close }, { NULL, NULL } };

/* ---------------------------------------------------------------- tide.Prefix */

/* A KV prefix (prefix tuning) loaded from a frozen trainer's file; set on
** an empty sequence of a context with prefix:apply(ctx, seq). */
#define LT_PREFIX "tide.Prefix"

typedef struct { tide_prefix *p; } lt_prefix;

static tide_prefix *checkprefix(lua_State *L, int idx) {
  lt_prefix *b = luaL_checkudata(L, idx, LT_PREFIX);
  if (!b->p) luaL_error(L, "attempt to use a closed prefix");
  return b->p;
}

/* core.prefix_load(path) -> prefix, or nil, message */
static int l_prefix_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lt_prefix *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->p = NULL;
  luaL_setmetatable(L, LT_PREFIX);
  if (tide_prefix_load(lt_env(L), path, &b->p)) {
    luaL_pushfail(L);
    lua_pushstring(L, tide_env_errmsg(lt_env(L)));
    return 2;
  }
  return 1;
}

static int px_close(lua_State *L) {
  lt_prefix *b = luaL_checkudata(L, 1, LT_PREFIX);
  tide_prefix_free(b->p);
  b->p = NULL;
  return 0;
}

/* prefix:info() -> { n_tokens, n_layer, kv_dim, n_embd, n_vocab } */
static int px_info(lua_State *L) {
  tide_prefix_info in;
  tide_prefix_get_info(checkprefix(L, 1), &in);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, in.n_tokens); lua_setfield(L, -2, "n_tokens");
  lua_pushinteger(L, in.n_layer); lua_setfield(L, -2, "n_layer");
  lua_pushinteger(L, in.kv_dim); lua_setfield(L, -2, "kv_dim");
  lua_pushinteger(L, in.n_embd); lua_setfield(L, -2, "n_embd");
  lua_pushinteger(L, in.n_vocab); lua_setfield(L, -2, "n_vocab");
  return 1;
}

/* prefix:apply(ctx, seq): writes the prefix into the empty sequence seq */
static int px_apply(lua_State *L) {
  tide_prefix *p = checkprefix(L, 1);
  tide_ctx *ctx = lt_checkctx(L, 2, NULL);
  lua_Integer seq = luaL_checkinteger(L, 3);
  luaL_argcheck(L, seq >= 0 && seq <= INT32_MAX, 3, "sequence id out of range");
  int st = tide_seq_set_prefix(ctx, (int32_t)seq, p);
  if (st) return lt_fail(L, st);
  return 0;
}

static const luaL_Reg px_methods[] = {
  { "info", px_info }, { "apply", px_apply }, { "close", px_close }, { NULL, NULL }
};
static const luaL_Reg px_meta[] = { { "__gc", px_close }, { "__close", px_close }, { NULL, NULL } };

/* core.lr_at(params, step) -> the schedule's learning rate */
static int l_lr_at(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  tide_trainer_params p = readparams(L, 1);
  lua_pushnumber(L, tide_trainer_lr_at(&p, luaL_checkinteger(L, 2)));
  return 1;
}

void lt_open_train(lua_State *L) {
  lt_newclass(L, LT_TRAINER, methods, meta);
  lt_newclass(L, LT_PREFIX, px_methods, px_meta);
  lua_pushcfunction(L, l_prefix_load);
  lua_setfield(L, -2, "prefix_load");
  lua_pushcfunction(L, l_trainer);
  lua_setfield(L, -2, "trainer");
  lua_pushcfunction(L, l_trainer_frozen);
  lua_setfield(L, -2, "trainer_frozen");
  lua_pushcfunction(L, l_lr_at);
  lua_setfield(L, -2, "lr_at");
}
