/*
** tide.c -- the `tide` executable: a Lua 5.4 interpreter with tide preloaded.
** Layer: binding (program). Usage (`tide -h`):
**   tide [-m model.gguf] [-e chunk]... [script [args...] | -]
**   -m model.gguf  loads the model with tide.load into the global `model`
**   -e chunk       runs a chunk (may repeat; then no REPL)
**   script args    runs a script (args in the global `arg`, as stock lua);
**                  `-` runs stdin as a script
**   (nothing)      the REPL: results are printed by tide.repl's formatter,
**                  lines are edited by lineedit.c when stdin is a terminal
** The global `tide` is set for -e chunks and the REPL. Errors print
** "tide: message" on stderr and exit with status 1.
** package.path gets the tide Lua package: $TIDE_LUA_PATH if set, else
** lua/ beside the build tree this binary was built in, and ./lua.
*/
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lineedit.h"
#include "tide.h"

#define HISTORY_MAX 1000
#define HISTORY_FILE ".tide_history"

static const char usage_text[] =
    "usage: tide [options] [script [args...]]\n"
    "  -m model.gguf  load a model into the global `model` (tide.load)\n"
    "  -e chunk       run a chunk of Lua (may repeat; no REPL follows)\n"
    "  -h             show this help\n"
    "  --             stop handling options\n"
    "  -              run stdin as a script\n"
    "With neither a script nor -e, tide starts the REPL.\n";

int luaopen_tide_core(lua_State *L);

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* ---- Ctrl-C while Lua runs: as stock lua, a hook raises "interrupted!"
** at the next Lua instruction; a second Ctrl-C kills the process. The
** state is global because a signal handler can reach nothing else. */

static lua_State *running_L;

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void on_sigint(int sig) {
  signal(sig, SIG_DFL);
  lua_sethook(running_L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  running_L = L;
  signal(SIGINT, on_sigint);
  int st = lua_pcall(L, narg, nres, base);
  signal(SIGINT, SIG_DFL);
  lua_remove(L, base);
  return st;
}

static int report(lua_State *L, int st) {
  if (st != LUA_OK) {
    fflush(stdout);
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

/* arg[0] is the script (or the program when there is none), arg[1..] its
** arguments, arg[-1..] the program and its options, as in stock lua. */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script - 1, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int runscript(lua_State *L, char **argv, int argc, int script) {
  int st = luaL_loadfile(L, strcmp(argv[script], "-") ? argv[script] : NULL);
  if (st == LUA_OK) {
    int n = argc - script - 1;
    luaL_checkstack(L, n, "too many arguments");
    for (int i = 1; i <= n; i++) lua_pushstring(L, argv[script + i]);
    st = docall(L, n, LUA_MULTRET);
  }
  return report(L, st);
}

/* require(name), leaving the module on the stack; nil after a report. */
static int requiremod(lua_State *L, const char *name) {
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  int st = report(L, docall(L, 1, 1));
  if (st != LUA_OK) lua_pushnil(L);
  return st;
}

/* model = tide.load(path): no traceback, the core's message is enough. */
static int loadmodel(lua_State *L, const char *path) {
  if (requiremod(L, "tide") != LUA_OK) return LUA_ERRRUN;
  lua_getfield(L, -1, "load");
  lua_pushstring(L, path);
  int st = lua_pcall(L, 1, 1, 0);
  if (st == LUA_OK) lua_setglobal(L, "model");
  lua_remove(L, -1 - (st != LUA_OK));
  return report(L, st);
}

/* ---- REPL */

/* A syntax error that only wants more input ends in "<eof>". */
static int incomplete(lua_State *L, int st) {
  size_t lmsg;
  const char *msg = lua_tolstring(L, -1, &lmsg);
  return st == LUA_ERRSYNTAX && lmsg >= 5 && strcmp(msg + lmsg - 5, "<eof>") == 0;
}

/* Compiles the chunk at the top as "return chunk" first (so expressions
** print), then as is; pushes the function or the statement form's error.
** *more: the chunk may yet compile with more lines (either form ended at
** <eof>, so a table or call can span lines). */
static int loadchunk(lua_State *L, int *more) {
  size_t n;
  lua_pushliteral(L, "return ");
  lua_pushvalue(L, -2);
  lua_pushliteral(L, "\n");
  lua_concat(L, 3);
  const char *ret = lua_tolstring(L, -1, &n);
  int st = luaL_loadbuffer(L, ret, n, "=stdin");
  lua_remove(L, -2);
  if (st == LUA_OK) return st;
  *more = incomplete(L, st);
  lua_pop(L, 1);
  const char *chunk = lua_tolstring(L, -1, &n);
  st = luaL_loadbuffer(L, chunk, n, "=stdin");
  if (st != LUA_OK) *more = *more || incomplete(L, st);
  return st;
}

typedef struct { le_editor *e; } lt_editor;

static int editor_gc(lua_State *L) {
  lt_editor *box = luaL_checkudata(L, 1, "tide.LineEditor");
  le_free(box->e);
  box->e = NULL;
  return 0;
}

/* The line editor in a userdata, so an error unwinding the REPL frees it. */
static le_editor *neweditor(lua_State *L) {
  lt_editor *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->e = NULL;
  if (luaL_newmetatable(L, "tide.LineEditor")) {
    lua_pushcfunction(L, editor_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  box->e = le_new(STDIN_FILENO, STDOUT_FILENO, HISTORY_MAX);
  if (!box->e) luaL_error(L, "not enough memory");
  return box->e;
}

static void addhistory(le_editor *e, const char *path, const char *line) {
  if (path && le_history_add(e, line) == 1) le_history_append(path, line);
}

/* Reads lines until they compile or fail for a reason other than wanting
** more; pushes the function, or reports and pushes nothing. Returns an
** le_read status (LE_LINE after a chunk, compiled or not). */
static int readchunk(lua_State *L, le_editor *e, const char *hist) {
  const char *line;
  size_t len;
  int rd = le_read(e, "> ", &line, &len);
  if (rd != LE_LINE) return rd;
  addhistory(e, hist, line);
  lua_pushlstring(L, line, len);
  int st, more = 0;
  while ((st = loadchunk(L, &more)) != LUA_OK && more) {
    rd = le_read(e, ">> ", &line, &len);
    if (rd != LE_LINE) break;
    lua_pop(L, 1);
    addhistory(e, hist, line);
    lua_pushliteral(L, "\n");
    lua_pushlstring(L, line, len);
    lua_concat(L, 3);
  }
  lua_remove(L, -2); /* the chunk's text */
  if (st == LUA_OK) return LE_LINE;
  if (rd == LE_LINE || rd == LE_EOF) report(L, st); /* at EOF: incomplete */
  else lua_pop(L, 1);
  return rd;
}

/* Prints the results above base with tide.repl's format_results (the
** function at fmt), or with print if that fails. */
static void printresults(lua_State *L, int base, int fmt) {
  int n = lua_gettop(L) - base;
  if (n == 0) return;
  if (lua_isfunction(L, fmt)) {
    lua_pushvalue(L, fmt);
    lua_createtable(L, n, 1);
    for (int i = 1; i <= n; i++) {
      lua_pushvalue(L, base + i);
      lua_rawseti(L, -2, i);
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    lua_createtable(L, 0, 1);
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "scope");
    if (report(L, docall(L, 2, 1)) == LUA_OK) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      if (s) {
        fwrite(s, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        return;
      }
    }
    lua_settop(L, base + n);
  }
  lua_getglobal(L, "print");
  lua_insert(L, base + 1);
  report(L, docall(L, n, 0));
}

static void banner(lua_State *L) {
  int top = lua_gettop(L);
  printf("tide %d.%d.%d (%s) -- `tide` is loaded; Ctrl-D quits\n", TIDE_VERSION_MAJOR,
         TIDE_VERSION_MINOR, TIDE_VERSION_PATCH, LUA_RELEASE);
  if (lua_getglobal(L, "model") != LUA_TNIL) printf("model = %s\n", luaL_tolstring(L, -1, NULL));
  fflush(stdout);
  lua_settop(L, top);
}

/* The history file: $HOME/.tide_history, or NULL without $HOME. */
static const char *historypath(lua_State *L) {
  const char *home = getenv("HOME");
  if (!home || !*home) return NULL;
  return lua_pushfstring(L, "%s/%s", home, HISTORY_FILE);
}

/* Plain lines and no prompts when stdin is not a terminal, so piped input
** prints only the results; history only when editing. Returns 0 if input
** could not be read. */
static int repl(lua_State *L) {
  lua_settop(L, 0);
  int ok = 1;
  if (isatty(STDIN_FILENO)) banner(L);
  le_editor *e = neweditor(L);                  /* 1 */
  const char *hist = le_editing(e) ? historypath(L) : NULL;
  if (!hist) lua_pushnil(L);                    /* 2 */
  if (hist) le_history_load(e, hist);
  if (requiremod(L, "tide.repl") == LUA_OK) {    /* 3: the formatter */
    lua_getfield(L, -1, "format_results");
    lua_remove(L, -2);
  }
  for (;;) {
    lua_settop(L, 3);
    fflush(stdout);
    int rd = readchunk(L, e, hist);
    if (rd == LE_EOF) break;
    if (rd == LE_ERROR) {
      fprintf(stderr, "tide: cannot read input: %s\n", strerror(errno));
      ok = 0;
      break;
    }
    if (rd != LE_LINE || lua_gettop(L) == 3) continue;
    int st = docall(L, 0, LUA_MULTRET);
    if (st == LUA_OK) printresults(L, 3, 3);
    else report(L, st);
  }
  if (hist) le_history_save(e, hist);
  return ok;
}

/* ---- command line */

typedef struct {
  const char *model; /* -m */
  int n_chunks;      /* -e count */
  int script;        /* argv index of the script, or 0 */
} cmdline;

/* Parses argv; returns 0, 1 for -h, or -1 after printing the error. */
static int parseargs(int argc, char **argv, cmdline *c) {
  memset(c, 0, sizeof *c);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      c->script = i + 1 < argc ? i + 1 : 0;
      return 0;
    }
    if (a[0] != '-' || a[1] == 0) {
      c->script = i;
      return 0;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return 1;
    if (strcmp(a, "-m") && strcmp(a, "-e")) {
      fprintf(stderr, "tide: unrecognized option '%s'\n%s", a, usage_text);
      return -1;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "tide: '%s' needs an argument\n%s", a, usage_text);
      return -1;
    }
    if (a[1] == 'e') c->n_chunks++;
    else if (c->model) {
      fprintf(stderr, "tide: '-m' given twice (one model is loaded; load more with tide.load)\n");
      return -1;
    } else c->model = argv[i + 1];
    i++;
  }
  return 0;
}

/* Runs every -e chunk in order. */
static int runchunks(lua_State *L, char **argv, int end) {
  for (int i = 1; i < end; i++) {
    if (strcmp(argv[i], "-m") == 0) i++;
    else if (strcmp(argv[i], "-e") == 0) {
      const char *chunk = argv[++i];
      int st = luaL_loadbuffer(L, chunk, strlen(chunk), "=(command line)");
      if (st == LUA_OK) st = docall(L, 0, 0);
      if (report(L, st) != LUA_OK) return st;
    }
  }
  return LUA_OK;
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  cmdline c;
  int p = parseargs(argc, argv, &c);
  if (p != 0) {
    if (p > 0) fputs(usage_text, stdout);
    lua_pushboolean(L, p > 0);
    return 1;
  }
  luaL_openlibs(L);
  setpath(L);
  createargtable(L, argv, argc, c.script);
  int ok = 1;
  if (c.n_chunks > 0 || !c.script) { /* -e chunks and the REPL get `tide` */
    ok = requiremod(L, "tide") == LUA_OK;
    lua_setglobal(L, "tide");
  }
  if (ok && c.model) ok = loadmodel(L, c.model) == LUA_OK;
  if (ok && c.n_chunks > 0) ok = runchunks(L, argv, c.script ? c.script : argc) == LUA_OK;
  if (ok && c.script) ok = runscript(L, argv, argc, c.script) == LUA_OK;
  else if (ok && c.n_chunks == 0) ok = repl(L);
  lua_pushboolean(L, ok);
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
