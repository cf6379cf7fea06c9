/*
** tide.c -- the `tide` executable: a Lua 5.4 interpreter with tide preloaded.
** Layer: binding (program). Usage:
**   tide script.lua [args...]   run a script (args in the global `arg`)
**   tide -e 'chunk'             run a chunk
**   tide                        the REPL (expressions print their values)
** package.path gets the tide Lua package: $TIDE_LUA_PATH if set, else
** lua/ beside the build tree this binary was built in, and ./lua.
*/
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "tide.h"

int luaopen_tide_core(lua_State *L);

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  int st = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return st;
}

static int report(lua_State *L, int st) {
  if (st != LUA_OK) {
    fprintf(stderr, "tide: %s\n", lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
  return st;
}

/* Prepends the tide package directories to package.path and preloads
** tide.core. */
static void setpath(lua_State *L) {
  char exe[PATH_MAX], dir[2 * PATH_MAX + 64] = "";
  const char *env = getenv("TIDE_LUA_PATH");
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    /* build/<config>/tide -> <top>/lua */
    snprintf(dir, sizeof dir, "%s/../../lua/?.lua;%s/../../lua/?/init.lua;", exe, exe);
  }
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s%s%s./lua/?.lua;./lua/?/init.lua;%s", env ? env : "", env ? ";" : "",
                  dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_tide_core);
  lua_setfield(L, -2, "tide.core");
  lua_pop(L, 2);
}

static void createargtable(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script - 1, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int runscript(lua_State *L, char **argv, int argc, int script) {
  createargtable(L, argv, argc, script);
  int st = luaL_loadfile(L, strcmp(argv[script], "-") ? argv[script] : NULL);
  if (st == LUA_OK) {
    int n = argc - script - 1;
    luaL_checkstack(L, n, "too many arguments");
    for (int i = 1; i <= n; i++) lua_pushstring(L, argv[script + i]);
    st = docall(L, n, LUA_MULTRET);
  }
  return report(L, st);
}

/* ---- REPL */

static int incomplete(lua_State *L, int st) {
  if (st == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    if (lmsg >= 5 && strcmp(msg + lmsg - 5, "<eof>") == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* Compiles buf as "return buf" first (so expressions print), then as is. */
static int loadline(lua_State *L, const char *buf) {
  const char *ret = lua_pushfstring(L, "return %s;", buf);
  int st = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
  lua_remove(L, -2);
  if (st == LUA_OK) return st;
  lua_pop(L, 1);
  return luaL_loadbuffer(L, buf, strlen(buf), "=stdin");
}

static void printresults(lua_State *L) {
  int n = lua_gettop(L);
  if (n == 0) return;
  lua_getglobal(L, "print");
  lua_insert(L, 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK) report(L, LUA_ERRRUN);
}

static void repl(lua_State *L) {
  char line[4096];
  printf("tide %d.%d.%d (%s) -- the tide package is loaded as `tide`; Ctrl-D quits\n",
         TIDE_VERSION_MAJOR, TIDE_VERSION_MINOR, TIDE_VERSION_PATCH, LUA_RELEASE);
  for (;;) {
    lua_settop(L, 0);
    fputs("> ", stdout);
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) break;
    lua_pushstring(L, line);
    int st;
    while ((st = loadline(L, lua_tostring(L, 1))) != LUA_OK && incomplete(L, st)) {
      fputs(">> ", stdout);
      fflush(stdout);
      if (!fgets(line, sizeof line, stdin)) break;
      lua_pushfstring(L, "%s%s", lua_tostring(L, 1), line);
      lua_replace(L, 1);
    }
    lua_remove(L, 1);
    if (st == LUA_OK) st = docall(L, 0, LUA_MULTRET);
    if (st == LUA_OK) printresults(L);
    else report(L, st);
  }
  fputs("\n", stdout);
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  luaL_openlibs(L);
  setpath(L);
  if (argc >= 3 && strcmp(argv[1], "-e") == 0) {
    createargtable(L, argv, argc, 0);
    int st = luaL_loadbuffer(L, argv[2], strlen(argv[2]), "=(command line)");
    if (st == LUA_OK) st = docall(L, 0, 0);
    lua_pushboolean(L, report(L, st) == LUA_OK);
    return 1;
  }
  if (argc >= 2) {
    lua_pushboolean(L, runscript(L, argv, argc, 1) == LUA_OK);
    return 1;
  }
  /* REPL: tide is loaded into a global for convenience */
  lua_getglobal(L, "require");
  lua_pushstring(L, "tide");
  if (docall(L, 1, 1) == LUA_OK) lua_setglobal(L, "tide");
  else report(L, LUA_ERRRUN);
  repl(L);
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "tide: cannot create Lua state: not enough memory\n");
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int st = lua_pcall(L, 2, 1, 0);
  int ok = st == LUA_OK && lua_toboolean(L, -1);
  if (st != LUA_OK) report(L, st);
  lua_close(L);
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
