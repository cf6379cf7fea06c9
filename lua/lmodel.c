/*
** lmodel.c -- tide.Model: loading, hyper-parameters and the tokenizer.
** Layer: binding.
*/
#include <stdlib.h>
#include <string.h>

#include "ltide.h"

tide_model *lt_checkmodel(lua_State *L, int idx) {
  lt_model *b = luaL_checkudata(L, idx, LT_MODEL);
  if (!b->m) luaL_error(L, "attempt to use a closed model");
  return b->m;
}

static const tide_tokenizer *checktok(lua_State *L, int idx) {
  return tide_model_tokenizer(lt_checkmodel(L, idx));
}

/* core.load(path [, {vocab_only=bool}]) -> model | nil, message */
static int l_load(lua_State *L) {
  static const char *const opts[] = { "vocab_only", NULL };
  const char *path = luaL_checkstring(L, 1);
  lt_checkopts(L, 2, opts);
  tide_model_params p = tide_model_default_params();
  p.vocab_only = lt_optbool(L, 2, "vocab_only", 0);
  lt_model *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->m = NULL;
  luaL_setmetatable(L, LT_MODEL);
  int st = tide_model_load(lt_env(L), path, &p, &b->m);
  if (st) {
    luaL_pushfail(L);
    lua_pushstring(L, tide_env_errmsg(lt_env(L)));
    lua_pushstring(L, tide_status_name(st));
    return 3;
  }
  return 1;
}

static int m_close(lua_State *L) {
  lt_model *b = luaL_checkudata(L, 1, LT_MODEL);
  tide_model_free(b->m);
  b->m = NULL;
  return 0;
}

static int m_info(lua_State *L) {
  tide_model_info i;
  tide_model_get_info(lt_checkmodel(L, 1), &i);
  lua_createtable(L, 0, 14);
#define SETI(f) (lua_pushinteger(L, i.f), lua_setfield(L, -2, #f))
#define SETN(f) (lua_pushnumber(L, i.f), lua_setfield(L, -2, #f))
  lua_pushstring(L, i.arch ? i.arch : "");
  lua_setfield(L, -2, "arch");
  lua_pushstring(L, i.name ? i.name : "");
  lua_setfield(L, -2, "name");
  SETI(n_vocab); SETI(n_embd); SETI(n_layer); SETI(n_head); SETI(n_kv_head);
  SETI(head_dim); SETI(n_ff); SETI(n_ctx_train); SETI(file_type);
  SETN(rope_base); SETN(norm_eps);
  lua_pushinteger(L, (lua_Integer)i.weight_bytes);
  lua_setfield(L, -2, "weight_bytes");
#undef SETI
#undef SETN
  return 1;
}

/* model:tokenize(text, add_bos, parse_special) -> { ids... } */
static int m_tokenize(lua_State *L) {
  const tide_tokenizer *tok = checktok(L, 1);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len);
  int bos = lua_toboolean(L, 3), special = lua_toboolean(L, 4);
  int32_t stackbuf[256], *ids = stackbuf;
  int64_t cap = 256, n = 0;
  int st = tide_tokenize(tok, text, len, bos, special, ids, cap, &n);
  if (st == TIDE_ERR_FULL) {
    cap = n;
    ids = lua_newuserdatauv(L, sizeof(int32_t) * (size_t)cap, 0);
    st = tide_tokenize(tok, text, len, bos, special, ids, cap, &n);
  }
  if (st) return lt_fail(L, st);
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 0; i < n; i++) {
    lua_pushinteger(L, ids[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* Reads a Lua array of token ids into a scratch userdata. */
static int32_t *checkids(lua_State *L, int idx, int32_t n_vocab, int64_t *n) {
  luaL_checktype(L, idx, LUA_TTABLE);
  *n = (int64_t)luaL_len(L, idx);
  int32_t *ids = lua_newuserdatauv(L, sizeof(int32_t) * (size_t)(*n ? *n : 1), 0);
  for (int64_t i = 0; i < *n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < 0 || v >= n_vocab)
      luaL_error(L, "token %d: %s is not a token id (0..%d)", (int)i + 1,
                 luaL_tolstring(L, -1, NULL), (int)n_vocab - 1);
    ids[i] = (int32_t)v;
    lua_pop(L, 1);
  }
  return ids;
}

static int m_detokenize(lua_State *L) {
  const tide_tokenizer *tok = checktok(L, 1);
  int64_t n;
  int32_t *ids = checkids(L, 2, tide_tokenizer_n_vocab(tok), &n);
  size_t need = 0;
  char small[512];
  int st = tide_detokenize(tok, ids, n, small, sizeof small, &need);
  if (st == TIDE_ERR_FULL) {
    char *big = lua_newuserdatauv(L, need, 0);
    st = tide_detokenize(tok, ids, n, big, need, &need);
    if (st) return lt_fail(L, st);
    lua_pushlstring(L, big, need);
    return 1;
  }
  if (st) return lt_fail(L, st);
  lua_pushlstring(L, small, need);
  return 1;
}

static int32_t checkid(lua_State *L, int idx, const tide_tokenizer *tok) {
  lua_Integer id = luaL_checkinteger(L, idx);
  int32_t n = tide_tokenizer_n_vocab(tok);
  if (id < 0 || id >= n) luaL_error(L, "token id %d out of range 0..%d", (int)id, (int)n - 1);
  return (int32_t)id;
}

static int m_piece(lua_State *L) {
  const tide_tokenizer *tok = checktok(L, 1);
  size_t len;
  const char *s = tide_token_piece(tok, checkid(L, 2, tok), &len);
  lua_pushlstring(L, s ? s : "", s ? len : 0);
  return 1;
}

static int m_is_eog(lua_State *L) {
  const tide_tokenizer *tok = checktok(L, 1);
  lua_pushboolean(L, tide_tokenizer_is_eog(tok, checkid(L, 2, tok)));
  return 1;
}

static int m_attr(lua_State *L) {
  static const char *const names[] = { "undefined", "normal", "unknown", "control",
                                       "user_defined", "unused", "byte" };
  const tide_tokenizer *tok = checktok(L, 1);
  int a = tide_tokenizer_attr(tok, checkid(L, 2, tok));
  lua_pushstring(L, a >= 0 && a <= 6 ? names[a] : "undefined");
  return 1;
}

static int m_special(lua_State *L) {
  const tide_tokenizer *tok = checktok(L, 1);
  lua_createtable(L, 0, 4);
  int32_t bos = tide_tokenizer_bos(tok), eos = tide_tokenizer_eos(tok);
  if (bos >= 0) { lua_pushinteger(L, bos); lua_setfield(L, -2, "bos"); }
  if (eos >= 0) { lua_pushinteger(L, eos); lua_setfield(L, -2, "eos"); }
  lua_pushboolean(L, tide_tokenizer_add_bos(tok));
  lua_setfield(L, -2, "add_bos");
  return 1;
}

/* model:detok_stream([at_start]) -> function(id) -> complete UTF-8 text so
** far; calling it with nil flushes. The state lives in the closure's
** userdata. A stream continues a text by default (a SentencePiece token's
** leading space is kept); with at_start true it starts one, and the first
** token's leading space is dropped as detokenize does. */
static int detok_step(lua_State *L) {
  const tide_tokenizer *tok = checktok(L, lua_upvalueindex(1));
  tide_detok *st = lua_touserdata(L, lua_upvalueindex(2));
  char buf[1024];
  size_t n = 0;
  int rc = lua_isnoneornil(L, 1) ? tide_detok_flush(tok, st, buf, sizeof buf, &n)
                                 : tide_detok_push(tok, st, checkid(L, 1, tok), buf, sizeof buf, &n);
  if (rc) return lt_fail(L, rc);
  lua_pushlstring(L, buf, n);
  return 1;
}

static int m_detok_stream(lua_State *L) {
  lt_checkmodel(L, 1);
  int at_start = lua_toboolean(L, 2);
  lua_settop(L, 1);
  tide_detok *st = lua_newuserdatauv(L, sizeof *st, 0);
  memset(st, 0, sizeof *st);
  st->n_tokens = at_start ? 0 : 1; /* counts tokens seen: 0 = start of text */
  lua_pushcclosure(L, detok_step, 2);
  return 1;
}

/* model:meta(key) -> the GGUF metadata value (string, integer, number,
** boolean, or an array as a Lua table), or nil when the key is absent.
** Arrays longer than 1,000,000 elements raise (ask for what you need). */
static int m_meta(lua_State *L) {
  const tide_gguf *g = tide_model_gguf(lt_checkmodel(L, 1));
  const char *key = luaL_checkstring(L, 2);
  int64_t i = tide_gguf_find(g, key);
  if (i < 0) { lua_pushnil(L); return 1; }
  int t = tide_gguf_kv_type(g, i);
  int64_t iv;
  double fv;
  int bv;
  const char *sv;
  size_t len;
  switch (t) {
  case TIDE_GGUF_STRING:
    tide_gguf_get_str(g, key, &sv, &len);
    lua_pushlstring(L, sv, len);
    return 1;
  case TIDE_GGUF_FLOAT32: case TIDE_GGUF_FLOAT64:
    tide_gguf_get_float(g, key, &fv);
    lua_pushnumber(L, fv);
    return 1;
  case TIDE_GGUF_BOOL:
    tide_gguf_get_bool(g, key, &bv);
    lua_pushboolean(L, bv);
    return 1;
  case TIDE_GGUF_ARRAY: {
    tide_gguf_arr a;
    tide_gguf_get_arr(g, key, &a);
    if (a.n > 1000000) return luaL_error(L, "meta '%s': array of %d elements is too long", key, (int)a.n);
    lua_createtable(L, (int)a.n, 0);
    for (int64_t k = 0; k < a.n; k++) {
      if (a.type == TIDE_GGUF_STRING) {
        sv = tide_gguf_arr_str(&a, k, &len);
        lua_pushlstring(L, sv, len);
      } else if (a.type == TIDE_GGUF_FLOAT32 || a.type == TIDE_GGUF_FLOAT64) {
        lua_pushnumber(L, tide_gguf_arr_float(&a, k));
      } else if (a.type == TIDE_GGUF_BOOL) {
        lua_pushboolean(L, tide_gguf_arr_int(&a, k) != 0);
      } else {
        lua_pushinteger(L, (lua_Integer)tide_gguf_arr_int(&a, k));
      }
      lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    return 1;
  }
  default:
    if (tide_gguf_get_int(g, key, &iv) == TIDE_OK) lua_pushinteger(L, (lua_Integer)iv);
    else lua_pushnil(L); /* a uint64 beyond int64: not representable */
    return 1;
  }
}

static int m_tostring(lua_State *L) {
  lt_model *b = luaL_checkudata(L, 1, LT_MODEL);
  if (!b->m) { lua_pushstring(L, "tide.Model (closed)"); return 1; }
  tide_model_info i;
  tide_model_get_info(b->m, &i);
  lua_pushfstring(L, "tide.Model (%s, %d layers, n_embd %d, n_vocab %d)", i.arch ? i.arch : "vocab",
                  (int)i.n_layer, (int)i.n_embd, (int)i.n_vocab);
  return 1;
}

static const luaL_Reg methods[] = {
  { "info", m_info }, { "tokenize", m_tokenize }, { "detokenize", m_detokenize },
  { "piece", m_piece }, { "is_eog", m_is_eog }, { "attr", m_attr },
  { "special", m_special }, { "detok_stream", m_detok_stream }, { "meta", m_meta },
  { "close", m_close },
  { NULL, NULL }
};

static const luaL_Reg meta[] = {
  { "__gc", m_close }, { "__close", m_close }, { "__tostring", m_tostring }, { NULL, NULL }
};

void lt_open_model(lua_State *L) {
  lt_newclass(L, LT_MODEL, methods, meta);
  lua_pushcfunction(L, l_load);
  lua_setfield(L, -2, "load");
}
