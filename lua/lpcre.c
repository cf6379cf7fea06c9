/*
** lpcre.c -- PCRE2 for Lua: core.pcre_find and core.pcre_info.
** Layer: binding (a thin wrapper over libpcre2-8; the policy -- find, match,
** gmatch -- lives in lua/tide/re.lua).
**
** Patterns compile in UTF mode with Unicode properties (PCRE2_UTF |
** PCRE2_UCP), so \w, \d and [[:alpha:]] follow Unicode; subjects that are
** not valid UTF-8 still match (PCRE2_MATCH_INVALID_UTF: invalid bytes never
** match a character). Compiled patterns are cached per lua_State in a
** registry table keyed by the pattern text, each with its own match data,
** so a loop calling pcre_find with one pattern compiles it once and
** allocates nothing per call. The cache holds at most CACHE_MAX patterns;
** past that it is emptied and refilled.
*/
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#include "ltide.h"

#define LT_PCRE "tide.Pcre"
#define CACHE_MAX 256

typedef struct {
  pcre2_code *code;
  pcre2_match_data *md;
} lt_pcre;

static const char CACHE_KEY = 'p'; /* registry key: { [pattern] = lt_pcre } */

static int pcre_gc(lua_State *L) {
  lt_pcre *p = luaL_checkudata(L, 1, LT_PCRE);
  pcre2_match_data_free(p->md);
  pcre2_code_free(p->code);
  p->md = NULL;
  p->code = NULL;
  return 0;
}

/* Pushes the cache table (made on first use). Keys are pattern strings;
** the integer key 1 holds the number of entries. */
static void push_cache(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &CACHE_KEY) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &CACHE_KEY);
}

/* The compiled form of the pattern at idx, compiling (and caching) it if
** needed. Raises "pattern error at offset N: message" on a bad pattern. */
static lt_pcre *check_pattern(lua_State *L, int idx) {
  size_t plen;
  const char *pat = luaL_checklstring(L, idx, &plen);
  push_cache(L);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {
    lt_pcre *p = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return p;
  }
  lua_pop(L, 1);
  /* the box exists (closed) before anything is allocated: an error in
  ** between leaves only a box for the collector */
  lt_pcre *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->code = NULL;
  p->md = NULL;
  if (luaL_newmetatable(L, LT_PCRE)) {
    lua_pushcfunction(L, pcre_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  int err;
  PCRE2_SIZE off;
  p->code = pcre2_compile((PCRE2_SPTR)pat, plen,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, NULL);
  if (!p->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    luaL_error(L, "pattern error at offset %d: %s", (int)off, (const char *)msg);
  }
  p->md = pcre2_match_data_create_from_pattern(p->code, NULL);
  if (!p->md) luaL_error(L, "pattern: out of memory");
  /* count entries; empty the cache when it is full */
  lua_rawgeti(L, -2, 1);
  lua_Integer n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n >= CACHE_MAX) {
    lua_newtable(L);        /* stack: old cache, box, new cache */
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CACHE_KEY);
    lua_replace(L, -3);     /* stack: new cache, box */
    n = 0;
  }
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);        /* cache[pattern] = box */
  lua_pushinteger(L, n + 1);
  lua_rawseti(L, -3, 1);
  lua_pop(L, 2);            /* box is kept alive by the cache */
  return p;
}

/* core.pcre_find(pattern, subject [, init]) -> start, end, captures...
** or nil. start/end are 1-based and inclusive like string.find (an empty
** match has end = start - 1); init is 1-based, negative counts from the
** end. Unset capture groups come back as false. */
static int l_pcre_find(lua_State *L) {
  lt_pcre *p = check_pattern(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  lua_Integer init = luaL_optinteger(L, 3, 1);
  if (init < 0) init = (lua_Integer)len + init + 1;
  if (init < 1) init = 1;
  if ((size_t)init > len + 1) { lua_pushnil(L); return 1; }
  int rc = pcre2_match(p->code, (PCRE2_SPTR)s, len, (PCRE2_SIZE)(init - 1), 0, p->md, NULL);
  if (rc == PCRE2_ERROR_NOMATCH) { lua_pushnil(L); return 1; }
  if (rc < 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return luaL_error(L, "pattern match failed: %s", (const char *)msg);
  }
  uint32_t ncap;
  pcre2_pattern_info(p->code, PCRE2_INFO_CAPTURECOUNT, &ncap);
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
  luaL_checkstack(L, (int)ncap + 2, "too many captures");
  lua_pushinteger(L, (lua_Integer)ov[0] + 1);
  lua_pushinteger(L, (lua_Integer)ov[1]);
  for (uint32_t i = 1; i <= ncap; i++) {
    /* groups past rc did not take part in the match */
    if ((int)i >= rc || ov[2 * i] == PCRE2_UNSET) lua_pushboolean(L, 0);
    else lua_pushlstring(L, s + ov[2 * i], ov[2 * i + 1] - ov[2 * i]);
  }
  return 2 + (int)ncap;
}

/* core.pcre_info(pattern) -> number of capture groups, { [name] = index }.
** Raises on a bad pattern, like pcre_find: a cheap way to validate one. */
static int l_pcre_info(lua_State *L) {
  lt_pcre *p = check_pattern(L, 1);
  uint32_t ncap, nname, esize;
  PCRE2_SPTR table;
  pcre2_pattern_info(p->code, PCRE2_INFO_CAPTURECOUNT, &ncap);
  pcre2_pattern_info(p->code, PCRE2_INFO_NAMECOUNT, &nname);
  pcre2_pattern_info(p->code, PCRE2_INFO_NAMEENTRYSIZE, &esize);
  pcre2_pattern_info(p->code, PCRE2_INFO_NAMETABLE, &table);
  lua_pushinteger(L, ncap);
  lua_createtable(L, 0, (int)nname);
  for (uint32_t i = 0; i < nname; i++) {
    PCRE2_SPTR e = table + (size_t)i * esize;
    lua_pushinteger(L, (e[0] << 8) | e[1]); /* group number, big-endian */
    lua_setfield(L, -2, (const char *)(e + 2));
  }
  return 2;
}

static const luaL_Reg funcs[] = {
  { "pcre_find", l_pcre_find },
  { "pcre_info", l_pcre_info },
  { NULL, NULL }
};

void lt_open_pcre(lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
}
