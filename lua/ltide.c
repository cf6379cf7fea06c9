/*
** ltide.c -- luaopen_tide_core: the module table, its env, shared helpers.
** Layer: binding. Translates only: checks arguments, wraps handles as
** userdata, turns status codes into Lua errors carrying the core's message.
*/
#include <string.h>
#include <time.h>

#include "ltide.h"

static const char ENV_KEY = 'e'; /* registry key: the env userdata */

typedef struct { tide_env *env; } lt_envbox;

static int env_gc(lua_State *L) {
  lt_envbox *b = luaL_checkudata(L, 1, LT_ENV);
  tide_env_free(b->env); /* freed for real once the last handle is gone */
  b->env = NULL;
  return 0;
}

tide_env *lt_env(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ENV_KEY);
  lt_envbox *b = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!b || !b->env) luaL_error(L, "tide.core is not open");
  return b->env;
}

/* Creates the env once per lua_State, with the state's own allocator. */
static void open_env(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ENV_KEY);
  int have = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (have) return;
  lt_envbox *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->env = NULL;
  if (luaL_newmetatable(L, LT_ENV)) {
    lua_pushcfunction(L, env_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  if (tide_env_new(&b->env, (tide_alloc_fn)f, ud) != TIDE_OK)
    luaL_error(L, "tide: out of memory");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ENV_KEY);
}

int lt_fail(lua_State *L, int st) {
  const char *msg = tide_env_errmsg(lt_env(L));
  return luaL_error(L, "%s", *msg ? msg : tide_status_name(st));
}

void lt_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                 const luaL_Reg *meta) {
  if (luaL_newmetatable(L, tname)) {
    luaL_setfuncs(L, meta, 0);
    if (methods) {
      lua_newtable(L);
      luaL_setfuncs(L, methods, 0);
      lua_setfield(L, -2, "__index");
    }
  }
  lua_pop(L, 1);
}

void lt_checkopts(lua_State *L, int idx, const char *const *allowed) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int ok = 0;
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (int i = 0; allowed[i]; i++) if (!strcmp(k, allowed[i])) ok = 1;
    }
    if (!ok) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; allowed[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, allowed[i]);
      }
      luaL_pushresult(&b);
      luaL_error(L, "unknown option '%s' (expected one of: %s)",
                 luaL_tolstring(L, -2, NULL), lua_tostring(L, -2));
    }
  }
}

static int getopt(lua_State *L, int idx, const char *key) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_getfield(L, idx, key) == LUA_TNIL) { lua_pop(L, 1); return 0; }
  return 1;
}

lua_Integer lt_optint(lua_State *L, int idx, const char *key, lua_Integer def) {
  if (!getopt(L, idx, key)) return def;
  if (!lua_isinteger(L, -1))
    luaL_error(L, "option '%s': integer expected, got %s", key, luaL_typename(L, -1));
  lua_Integer v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

lua_Number lt_optnum(lua_State *L, int idx, const char *key, lua_Number def) {
  if (!getopt(L, idx, key)) return def;
  if (!lua_isnumber(L, -1))
    luaL_error(L, "option '%s': number expected, got %s", key, luaL_typename(L, -1));
  lua_Number v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

int lt_optbool(lua_State *L, int idx, const char *key, int def) {
  if (!getopt(L, idx, key)) return def;
  if (!lua_isboolean(L, -1))
    luaL_error(L, "option '%s': boolean expected, got %s", key, luaL_typename(L, -1));
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static int l_set_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 64, 1, "thread count out of range 1..64");
  int st = tide_env_set_threads(lt_env(L), (int)n);
  if (st) return lt_fail(L, st);
  return 0;
}

static int l_threads(lua_State *L) {
  lua_pushinteger(L, tide_env_threads(lt_env(L)));
  return 1;
}

static int l_isa(lua_State *L) {
  lua_pushstring(L, tide_env_isa(lt_env(L)));
  return 1;
}

/* core.clock() -> seconds of a monotonic wall clock (for timing). */
static int l_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + 1e-9 * (lua_Number)ts.tv_nsec);
  return 1;
}

static const luaL_Reg funcs[] = {
  { "clock", l_clock },
  { "set_threads", l_set_threads },
  { "threads", l_threads },
  { "isa", l_isa },
  { NULL, NULL }
};

int luaopen_tide_core(lua_State *L);
int luaopen_tide_core(lua_State *L) {
  if (tide_version() != TIDE_VERSION_NUM)
    return luaL_error(L, "tide.core built for libtide %d, linked with %d",
                      TIDE_VERSION_NUM, tide_version());
  open_env(L);
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  lua_pushinteger(L, TIDE_VERSION_NUM);
  lua_setfield(L, -2, "version_num");
  lt_open_model(L);
  lt_open_ctx(L);
  lt_open_sampler(L);
  lt_open_yaml(L);
  lt_open_pcre(L);
  lt_open_constrain(L);
  lt_open_train(L);
  lt_open_steer(L);
  return 1;
}
