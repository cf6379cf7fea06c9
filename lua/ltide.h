/*
** ltide.h -- shared helpers of the Lua binding (module tide.core).
** Layer: binding. Includes only tide.h and Lua's headers.
**
** Every handle is a userdata holding a pointer box; the box is created
** closed (NULL) before the core constructor runs, so an error never leaks.
** One idempotent close serves __gc, __close and :close(). A child userdata
** keeps its parent userdata alive in user value 1.
*/
#ifndef LTIDE_H
#define LTIDE_H

#include <lauxlib.h>
#include <lua.h>

#include "tide.h"

#define LT_ENV "tide.Env"
#define LT_MODEL "tide.Model"
#define LT_CTX "tide.Context"
#define LT_LOGITS "tide.Logits"
#define LT_SAMPLER "tide.Sampler"

typedef struct { tide_model *m; } lt_model;
typedef struct { tide_ctx *ctx; lua_Integer gen; int32_t n_vocab; } lt_ctx;
typedef struct {
  const float *p;   /* into the context's logits buffer, or own copy */
  int32_t n;
  lua_Integer gen;  /* the context's decode generation it belongs to */
  int owned;        /* p points at the userdata's own floats (after it) */
} lt_logits;
typedef struct { tide_sampler *s; int32_t n_vocab; } lt_sampler;

/* The binding's env (one per lua_State, in the registry). */
tide_env *lt_env(lua_State *L);
/* Raises a Lua error with the env's message for status st (never returns). */
int lt_fail(lua_State *L, int st);
/* Registers a metatable named tname with methods (in __index) and
** metamethods; reuses it if it exists. Leaves nothing on the stack. */
void lt_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                 const luaL_Reg *meta);
/* Checks that every key of the table at idx is in allowed (NULL-ended). */
void lt_checkopts(lua_State *L, int idx, const char *const *allowed);
/* Reads an integer/number/boolean field of an options table with a default. */
lua_Integer lt_optint(lua_State *L, int idx, const char *key, lua_Integer def);
lua_Number lt_optnum(lua_State *L, int idx, const char *key, lua_Number def);
int lt_optbool(lua_State *L, int idx, const char *key, int def);

tide_model *lt_checkmodel(lua_State *L, int idx);
tide_ctx *lt_checkctx(lua_State *L, int idx, lt_ctx **box);
/* Pushes a logits view of row i of ctx's last decode; the view keeps the
** context userdata (at ctx_idx) alive. */
void lt_pushlogits(lua_State *L, int ctx_idx, int32_t i);
lt_logits *lt_checklogits(lua_State *L, int idx);
/* The floats of a logits view, raising if it is stale. */
const float *lt_logits_data(lua_State *L, int idx, int32_t *n);

/* Each registers its classes and adds its functions to the module table on
** the top of the stack. */
void lt_open_model(lua_State *L);
void lt_open_ctx(lua_State *L);
void lt_open_sampler(lua_State *L);
void lt_open_yaml(lua_State *L);
void lt_open_pcre(lua_State *L);
void lt_open_constrain(lua_State *L);
void lt_open_train(lua_State *L);
void lt_open_steer(lua_State *L);

#endif
