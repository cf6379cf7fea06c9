/*
** lsampler.c -- tide.Sampler: a C sampling chain configured from Lua.
** Layer: binding. core.sampler(n_vocab, seed, stages) where stages is an
** ordered list of tables such as { "top_k", 40 }, { "top_p", 0.95 },
** { "temperature", 0.8 }, { "penalties", repeat, freq, present, last_n }.
*/
#include <string.h>

#include "ltide.h"

static lt_sampler *checkbox(lua_State *L, int idx) {
  lt_sampler *b = luaL_checkudata(L, idx, LT_SAMPLER);
  if (!b->s) luaL_error(L, "attempt to use a closed sampler");
  return b;
}

static const struct { const char *name; int kind; } KINDS[] = {
  { "penalties", TIDE_SAMPLE_PENALTIES }, { "logit_bias", TIDE_SAMPLE_LOGIT_BIAS },
  { "temperature", TIDE_SAMPLE_TEMPERATURE }, { "top_k", TIDE_SAMPLE_TOP_K },
  { "top_p", TIDE_SAMPLE_TOP_P }, { "min_p", TIDE_SAMPLE_MIN_P },
  { "typical", TIDE_SAMPLE_TYPICAL }, { NULL, 0 }
};

static lua_Number numat(lua_State *L, int t, int i, lua_Number def) {
  lua_rawgeti(L, t, i);
  lua_Number v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Reads stage table at idx: { name, a [, b, c, n] } (top_k: { "top_k", n }). */
static tide_sampler_stage readstage(lua_State *L, int idx, int i) {
  tide_sampler_stage st = { 0, 0, 0, 0, 0 };
  if (!lua_istable(L, idx)) luaL_error(L, "sampler stage %d: table expected, got %s", i, luaL_typename(L, idx));
  lua_rawgeti(L, idx, 1);
  const char *name = lua_tostring(L, -1);
  lua_pop(L, 1);
  for (int k = 0; name && KINDS[k].name; k++)
    if (!strcmp(name, KINDS[k].name)) st.kind = KINDS[k].kind;
  if (!st.kind) luaL_error(L, "sampler stage %d: unknown kind '%s'", i, name ? name : "?");
  switch (st.kind) {
  case TIDE_SAMPLE_TOP_K: st.n = (int32_t)numat(L, idx, 2, 0); break;
  case TIDE_SAMPLE_PENALTIES:
    st.a = (float)numat(L, idx, 2, 1.0); st.b = (float)numat(L, idx, 3, 0);
    st.c = (float)numat(L, idx, 4, 0); st.n = (int32_t)numat(L, idx, 5, 64); break;
  case TIDE_SAMPLE_LOGIT_BIAS: break;
  default: st.a = (float)numat(L, idx, 2, 1.0); st.n = (int32_t)numat(L, idx, 3, 1); break;
  }
  return st;
}

static int l_sampler(lua_State *L) {
  lua_Integer n_vocab = luaL_checkinteger(L, 1);
  lua_Integer seed = luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_argcheck(L, n_vocab > 0 && n_vocab <= INT32_MAX, 1, "n_vocab out of range");
  lt_sampler *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->s = NULL;
  b->n_vocab = (int32_t)n_vocab;
  luaL_setmetatable(L, LT_SAMPLER);
  int st = tide_sampler_new(lt_env(L), (int32_t)n_vocab, (uint64_t)seed, &b->s);
  if (st) return lt_fail(L, st);
  lua_Integer n = luaL_len(L, 3);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 3, i);
    tide_sampler_stage stage = readstage(L, lua_gettop(L), (int)i);
    lua_pop(L, 1);
    if ((st = tide_sampler_push(b->s, &stage))) return lt_fail(L, st);
  }
  return 1;
}

static int s_close(lua_State *L) {
  lt_sampler *b = luaL_checkudata(L, 1, LT_SAMPLER);
  tide_sampler_free(b->s);
  b->s = NULL;
  return 0;
}

static int s_sample(lua_State *L) {
  lt_sampler *b = checkbox(L, 1);
  int32_t n, id;
  const float *p = lt_logits_data(L, 2, &n);
  if (n != b->n_vocab) return luaL_error(L, "sampler made for %d tokens, logits have %d", (int)b->n_vocab, (int)n);
  int st = tide_sampler_sample(b->s, p, &id);
  if (st) return lt_fail(L, st);
  lua_pushinteger(L, id);
  return 1;
}

static int s_accept(lua_State *L) {
  lt_sampler *b = checkbox(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  luaL_argcheck(L, id >= 0 && id < b->n_vocab, 2, "token id out of range");
  tide_sampler_accept(b->s, (int32_t)id);
  return 0;
}

static int s_reset(lua_State *L) {
  lt_sampler *b = checkbox(L, 1);
  tide_sampler_reset(b->s, (uint64_t)luaL_checkinteger(L, 2));
  return 0;
}

static int s_clone(lua_State *L) {
  lt_sampler *b = checkbox(L, 1);
  lt_sampler *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->s = NULL;
  c->n_vocab = b->n_vocab;
  luaL_setmetatable(L, LT_SAMPLER);
  int st = tide_sampler_clone(b->s, &c->s);
  if (st) return lt_fail(L, st);
  return 1;
}

/* s:set_bias{ [id] = bias, ... } */
static int s_set_bias(lua_State *L) {
  lt_sampler *b = checkbox(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int32_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) { n++; lua_pop(L, 1); }
  int32_t *ids = lua_newuserdatauv(L, (sizeof(int32_t) + sizeof(float)) * (size_t)(n ? n : 1), 0);
  float *bias = (float *)(ids + (n ? n : 1));
  int32_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    int isint;
    lua_Integer id = lua_tointegerx(L, -2, &isint);
    if (!isint || id < 0 || id >= b->n_vocab) return luaL_error(L, "logit bias: key is not a token id");
    ids[i] = (int32_t)id;
    bias[i++] = (float)luaL_checknumber(L, -1);
    lua_pop(L, 1);
  }
  int st = tide_sampler_set_bias(b->s, ids, bias, n);
  if (st) return lt_fail(L, st);
  return 0;
}

static const luaL_Reg methods[] = {
  { "sample", s_sample }, { "accept", s_accept }, { "reset", s_reset },
  { "clone", s_clone }, { "set_bias", s_set_bias }, { "close", s_close }, { NULL, NULL }
};
static const luaL_Reg meta[] = { { "__gc", s_close }, { "__close", s_close }, { NULL, NULL } };

void lt_open_sampler(lua_State *L) {
  lt_newclass(L, LT_SAMPLER, methods, meta);
  lua_pushcfunction(L, l_sampler);
  lua_setfield(L, -2, "sampler");
}
