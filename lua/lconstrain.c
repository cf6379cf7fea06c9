/*
** lconstrain.c -- tide.Constraint, tide.VocabIndex and tide.Matcher.
** Layer: binding. A constraint is compiled once (regex or GBNF grammar); a
** vocabulary index is built once per model; a matcher is one position in a
** constraint for one sequence (clone it for forks). matcher:apply(logits)
** returns a masked copy, so the sampler never sees a forbidden token.
*/
#include <string.h>

#include "ltide.h"

#define LT_CONSTRAINT "tide.Constraint"
#define LT_VINDEX "tide.VocabIndex"
#define LT_MATCHER "tide.Matcher"

typedef struct { tide_constraint *c; } lt_constraint;
typedef struct { tide_vocab_index *vi; int32_t n_vocab; } lt_vindex;
typedef struct {
  tide_matcher *m;
  int32_t n_vocab;
  uint32_t *bits;   /* (n_vocab+31)/32 words, after the struct */
} lt_matcher;

static int con_close(lua_State *L) {
  lt_constraint *b = luaL_checkudata(L, 1, LT_CONSTRAINT);
  tide_constraint_free(b->c);
  b->c = NULL;
  return 0;
}

static tide_constraint *checkcon(lua_State *L, int idx) {
  lt_constraint *b = luaL_checkudata(L, idx, LT_CONSTRAINT);
  if (!b->c) luaL_error(L, "attempt to use a closed constraint");
  return b->c;
}

/* Shared tail of the compile functions: nil, message on failure (as io.open) */
static int compiled(lua_State *L, int st, lt_constraint *b) {
  (void)b;
  if (st) {
    luaL_pushfail(L);
    lua_pushstring(L, tide_env_errmsg(lt_env(L)));
    lua_pushstring(L, tide_status_name(st));
    return 3;
  }
  return 1;
}

static lt_constraint *newcon(lua_State *L) {
  lt_constraint *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->c = NULL;
  luaL_setmetatable(L, LT_CONSTRAINT);
  return b;
}

/* core.regex_compile(pattern) -> constraint | nil, message, status */
static int l_regex(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  lt_constraint *b = newcon(L);
  return compiled(L, tide_regex_compile(lt_env(L), p, len, &b->c), b);
}

/* core.grammar_compile(gbnf [, root]) -> constraint | nil, message, status */
static int l_grammar(lua_State *L) {
  size_t len;
  const char *src = luaL_checklstring(L, 1, &len);
  const char *root = luaL_optstring(L, 2, NULL);
  lt_constraint *b = newcon(L);
  return compiled(L, tide_grammar_compile(lt_env(L), src, len, root, &b->c), b);
}

/* core.json_schema_compile(json_text) -> constraint | nil, message, status */
static int l_json_schema(lua_State *L) {
  size_t len;
  const char *src = luaL_checklstring(L, 1, &len);
  lt_constraint *b = newcon(L);
  return compiled(L, tide_json_schema_compile(lt_env(L), src, len, &b->c), b);
}

/* core.vocab_index(model) -> index (keeps nothing but the env alive) */
static int l_vindex(lua_State *L) {
  tide_model *m = lt_checkmodel(L, 1);
  lt_vindex *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->vi = NULL;
  b->n_vocab = tide_tokenizer_n_vocab(tide_model_tokenizer(m));
  luaL_setmetatable(L, LT_VINDEX);
  int st = tide_vocab_index_new(tide_model_tokenizer(m), &b->vi);
  if (st) return lt_fail(L, st);
  return 1;
}

static int vi_close(lua_State *L) {
  lt_vindex *b = luaL_checkudata(L, 1, LT_VINDEX);
  tide_vocab_index_free(b->vi);
  b->vi = NULL;
  return 0;
}

static lt_matcher *newmatcher(lua_State *L, int32_t n_vocab) {
  size_t words = ((size_t)n_vocab + 31) / 32;
  lt_matcher *b = lua_newuserdatauv(L, sizeof *b + words * sizeof(uint32_t), 0);
  b->m = NULL;
  b->n_vocab = n_vocab;
  b->bits = (uint32_t *)(b + 1);
  luaL_setmetatable(L, LT_MATCHER);
  return b;
}

/* core.matcher(constraint, index) -> matcher at the start */
static int l_matcher(lua_State *L) {
  tide_constraint *c = checkcon(L, 1);
  lt_vindex *vb = luaL_checkudata(L, 2, LT_VINDEX);
  if (!vb->vi) return luaL_error(L, "attempt to use a closed vocabulary index");
  lt_matcher *b = newmatcher(L, vb->n_vocab);
  int st = tide_matcher_new(c, vb->vi, &b->m);
  if (st) return lt_fail(L, st);
  return 1;
}

static lt_matcher *checkm(lua_State *L, int idx) {
  lt_matcher *b = luaL_checkudata(L, idx, LT_MATCHER);
  if (!b->m) luaL_error(L, "attempt to use a closed matcher");
  return b;
}

static int m_close(lua_State *L) {
  lt_matcher *b = luaL_checkudata(L, 1, LT_MATCHER);
  tide_matcher_free(b->m);
  b->m = NULL;
  return 0;
}

/* m:apply(logits) -> an owned copy of the view with forbidden ids -inf, and
** the number of allowed ids (0: the constraint cannot continue) */
static int m_apply(lua_State *L) {
  lt_matcher *b = checkm(L, 1);
  int32_t n;
  lt_logits_data(L, 2, &n); /* checks the view (and that it is not stale) */
  if (n != b->n_vocab) return luaL_error(L, "matcher made for %d tokens, logits have %d", (int)b->n_vocab, (int)n);
  tide_matcher_mask(b->m, b->bits);
  lua_getfield(L, 2, "copy");
  lua_pushvalue(L, 2);
  lua_call(L, 1, 1);
  int32_t n2;
  float *q = (float *)lt_logits_data(L, -1, &n2);
  tide_mask_apply(b->bits, q, n);
  lua_Integer c = 0;
  for (size_t w = 0; w < ((size_t)n + 31) / 32; w++) c += __builtin_popcount(b->bits[w]);
  lua_pushinteger(L, c);
  return 2;
}

/* m:allowed(id) -> boolean (computes the mask; for tests and tools) */
static int m_allowed(lua_State *L) {
  lt_matcher *b = checkm(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  luaL_argcheck(L, id >= 0 && id < b->n_vocab, 2, "token id out of range");
  tide_matcher_mask(b->m, b->bits);
  lua_pushboolean(L, (b->bits[id / 32] >> (id % 32)) & 1);
  return 1;
}

/* m:count() -> number of allowed tokens now */
static int m_count(lua_State *L) {
  lt_matcher *b = checkm(L, 1);
  tide_matcher_mask(b->m, b->bits);
  lua_Integer c = 0;
  for (size_t w = 0; w < ((size_t)b->n_vocab + 31) / 32; w++) c += __builtin_popcount(b->bits[w]);
  lua_pushinteger(L, c);
  return 1;
}

static int m_advance(lua_State *L) {
  lt_matcher *b = checkm(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  luaL_argcheck(L, id >= 0 && id < b->n_vocab, 2, "token id out of range");
  int st = tide_matcher_advance(b->m, (int32_t)id);
  if (st) return lt_fail(L, st);
  return 0;
}

static int m_advance_text(lua_State *L) {
  lt_matcher *b = checkm(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int st = tide_matcher_advance_bytes(b->m, s, len);
  if (st) return lt_fail(L, st);
  return 0;
}

static int m_accepting(lua_State *L) {
  lua_pushboolean(L, tide_matcher_accepting(checkm(L, 1)->m));
  return 1;
}

static int m_finished(lua_State *L) {
  lua_pushboolean(L, tide_matcher_finished(checkm(L, 1)->m));
  return 1;
}

static int m_clone(lua_State *L) {
  lt_matcher *b = checkm(L, 1);
  lt_matcher *c = newmatcher(L, b->n_vocab);
  int st = tide_matcher_clone(b->m, &c->m);
  if (st) return lt_fail(L, st);
  return 1;
}

static const luaL_Reg con_meta[] = { { "__gc", con_close }, { "__close", con_close }, { NULL, NULL } };
static const luaL_Reg con_methods[] = { { "close", con_close }, { NULL, NULL } };
static const luaL_Reg vi_meta[] = { { "__gc", vi_close }, { "__close", vi_close }, { NULL, NULL } };
static const luaL_Reg vi_methods[] = { { "close", vi_close }, { NULL, NULL } };
static const luaL_Reg m_meta[] = { { "__gc", m_close }, { "__close", m_close }, { NULL, NULL } };
static const luaL_Reg m_methods[] = {
  { "apply", m_apply }, { "allowed", m_allowed }, { "count", m_count },
  { "advance", m_advance }, { "advance_text", m_advance_text },
  { "accepting", m_accepting }, { "finished", m_finished }, { "clone", m_clone },
  { "close", m_close }, { NULL, NULL }
};

void lt_open_constrain(lua_State *L) {
  lt_newclass(L, LT_CONSTRAINT, con_methods, con_meta);
  lt_newclass(L, LT_VINDEX, vi_methods, vi_meta);
  lt_newclass(L, LT_MATCHER, m_methods, m_meta);
  lua_pushcfunction(L, l_regex);
  lua_setfield(L, -2, "regex_compile");
  lua_pushcfunction(L, l_grammar);
  lua_setfield(L, -2, "grammar_compile");
  lua_pushcfunction(L, l_json_schema);
  lua_setfield(L, -2, "json_schema_compile");
  lua_pushcfunction(L, l_vindex);
  lua_setfield(L, -2, "vocab_index");
  lua_pushcfunction(L, l_matcher);
  lua_setfield(L, -2, "matcher");
}
