/*
** lyaml.c -- YAML load and dump for tide.core, over libyaml's event API.
** Layer: binding (the one binding file that also includes libyaml's yaml.h).
**
**   core.yaml_load(text [, {max_depth=, max_nodes=, lines=}]) -> value [, lines]
**   core.yaml_dump(value [, {max_depth=, max_nodes=}]) -> text
**   core.yaml_null: the value a YAML null loads as (a NULL light userdata)
**
** Memory: libyaml allocates with its own malloc (it has no allocator hook);
** the binding's scratch (dump output, frames, key arrays) comes from the
** state's lua_Alloc inside userdata. A parser or emitter lives in a userdata
** marked to-be-closed (and __gc as a backstop), so every path -- success, a
** YAML error raised with lua_error, a memory error inside the Lua API --
** deletes it. No Lua error is raised while a libyaml function is on the C
** stack: the output handler given to libyaml never calls Lua.
**
** Loading never recurses in C: each open collection is a frame of 4 Lua
** slots plus one C struct, at most max_depth of them. Dumping recurses, with
** the same cap. An alias is the anchored value itself (the same table); the
** node count with every alias expanded is capped by max_nodes, so a
** "billion laughs" document fails instead of handing a consumer (dump, a
** deep compare) something exponential to walk. Plain-scalar resolution is
** documented in docs/manifest.md; classify() below is its definition.
*/
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include "ltide.h"

#define LT_YAML_PARSER "tide.YamlParser"
#define LT_YAML_EMITTER "tide.YamlEmitter"

#define DEF_DEPTH 200
#define MAX_DEPTH 1000 /* dump recurses in C: keep the C stack bounded */
#define DEF_NODES 1000000

static const char *const LOAD_OPTS[] = {"max_depth", "max_nodes", "lines", NULL};
static const char *const DUMP_OPTS[] = {"max_depth", "max_nodes", NULL};

/* ------------------------------------------------------------ resolution */

enum { R_STR, R_NULL, R_TRUE, R_FALSE, R_INT, R_FLOAT, R_INF, R_NINF, R_NAN };

static int oneof(const char *s, size_t n, const char *const *list) {
  for (int i = 0; list[i]; i++)
    if (strlen(list[i]) == n && !memcmp(s, list[i], n)) return 1;
  return 0;
}

static int isdig(char c) { return c >= '0' && c <= '9'; }

/* [-+]? ( [0-9]+ (\.[0-9]*)? | \.[0-9]+ ) ([eE][-+]?[0-9]+)?, with a dot or
** an exponent (else it is an integer). */
static int isfloat(const char *s, size_t n) {
  size_t i = 0, digits = 0;
  int dot = 0, ex = 0;
  if (i < n && (s[i] == '+' || s[i] == '-')) i++;
  while (i < n && isdig(s[i])) i++, digits++;
  if (i < n && s[i] == '.') {
    dot = 1;
    for (i++; i < n && isdig(s[i]); i++) digits++;
  }
  if (!digits) return 0;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    size_t e = 0;
    ex = 1;
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    while (i < n && isdig(s[i])) i++, e++;
    if (!e) return 0;
  }
  return i == n && (dot || ex);
}

/* Integers: decimal [-+]?[0-9]+ without a leading zero (so "0755" and "007"
** stay strings: YAML 1.1 reads them as octal, 1.2 as decimal), 0x hex, 0o
** octal. *iv gets the value; a decimal too big for 64 bits is a float, a hex
** or octal one stays a string. */
static int classify_int(const char *s, size_t n, lua_Integer *iv) {
  size_t i = 0;
  int neg = 0, base = 10;
  if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    base = s[1] == 'x' ? 16 : 8;
    i = 2;
  } else if (s[0] == '+' || s[0] == '-') {
    neg = s[0] == '-';
    i = 1;
  }
  if (i == n) return R_STR;
  if (base == 10 && s[i] == '0' && n - i > 1) return R_STR;
  uint64_t v = 0;
  int over = 0;
  for (; i < n; i++) {
    char c = s[i];
    unsigned d;
    if (isdig(c))
      d = (unsigned)(c - '0');
    else if (base == 16 && c >= 'a' && c <= 'f')
      d = (unsigned)(c - 'a' + 10);
    else if (base == 16 && c >= 'A' && c <= 'F')
      d = (unsigned)(c - 'A' + 10);
    else
      return R_STR;
    if (d >= (unsigned)base) return R_STR;
    if (v > (UINT64_MAX - d) / (unsigned)base)
      over = 1;
    else
      v = v * (unsigned)base + d;
  }
  if (over || v > (uint64_t)INT64_MAX + (uint64_t)neg) return base == 10 ? R_FLOAT : R_STR;
  *iv = neg ? (lua_Integer)(0 - v) : (lua_Integer)v;
  return R_INT;
}

/* The type a plain scalar resolves to (and its integer value). */
static int classify(const char *s, size_t n, lua_Integer *iv) {
  static const char *const NULLS[] = {"", "~", "null", "Null", "NULL", NULL};
  static const char *const TRUES[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES",  "on",   "On",   "ON",  NULL};
  static const char *const FALSES[] = {"false", "False", "FALSE", "no",  "No",
                                       "NO",    "off",   "Off",   "OFF", NULL};
  static const char *const INFS[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL};
  static const char *const NINFS[] = {"-.inf", "-.Inf", "-.INF", NULL};
  static const char *const NANS[] = {".nan", ".NaN", ".NAN", NULL};
  if (oneof(s, n, NULLS)) return R_NULL;
  if (n > 6) { /* fast path for ordinary text */
    char c = s[0];
    if (!isdig(c) && c != '+' && c != '-' && c != '.') return R_STR;
  }
  if (oneof(s, n, TRUES)) return R_TRUE;
  if (oneof(s, n, FALSES)) return R_FALSE;
  if (oneof(s, n, INFS)) return R_INF;
  if (oneof(s, n, NINFS)) return R_NINF;
  if (oneof(s, n, NANS)) return R_NAN;
  if (isfloat(s, n)) return R_FLOAT;
  return classify_int(s, n, iv);
}

/* Pushes the value of class r for text s (NUL-terminated, n bytes). */
static void push_resolved(lua_State *L, int r, const char *s, size_t n, lua_Integer iv) {
  switch (r) {
  case R_NULL:
    lua_pushlightuserdata(L, NULL);
    break;
  case R_TRUE:
    lua_pushboolean(L, 1);
    break;
  case R_FALSE:
    lua_pushboolean(L, 0);
    break;
  case R_INT:
    lua_pushinteger(L, iv);
    break;
  case R_INF:
    lua_pushnumber(L, (lua_Number)HUGE_VAL);
    break;
  case R_NINF:
    lua_pushnumber(L, -(lua_Number)HUGE_VAL);
    break;
  case R_NAN:
    lua_pushnumber(L, (lua_Number)NAN);
    break;
  case R_FLOAT:
    if (lua_stringtonumber(L, s) != n + 1) {
      lua_pushlstring(L, s, n);        /* not a number to Lua after all: keep the text */
    } else if (lua_isinteger(L, -1)) { /* "!!float 3" */
      lua_Integer i = lua_tointeger(L, -1);
      lua_pop(L, 1);
      lua_pushnumber(L, (lua_Number)i);
    }
    break;
  default:
    lua_pushlstring(L, s, n);
    break;
  }
}

/* ------------------------------------------------------------------ load */

/* Stack of yaml_load: 1 text, 2 opts, 3 loader box (to-be-closed),
** 4 anchors (name -> value), 5 anchor weights (name -> nodes),
** 6 lines (container -> { key -> line }), 7 the document's value,
** then 4 slots per open collection at depth d (0-based): */
#define FRAME(d) (8 + 4 * (d))
enum { F_TABLE, F_LINES, F_ANCHOR, F_KEY }; /* F_LINES/F_ANCHOR false if none */

typedef struct {
  int map;          /* a mapping (else a sequence) */
  int has_key;      /* map: a key waits in F_KEY for its value */
  lua_Integer n;    /* seq: items so far */
  int64_t start;    /* the node count before this collection */
  yaml_mark_t mark; /* where it starts */
  yaml_mark_t key;  /* map: where the waiting key starts */
} lt_frame;

typedef struct {
  yaml_parser_t p;
  yaml_event_t ev;
  int p_live, ev_live;
  int depth, max_depth, lines, ndocs;
  int64_t nodes, max_nodes;
  lt_frame fr[]; /* (max_depth) */
} lt_loader;

static int loader_close(lua_State *L) {
  lt_loader *b = luaL_checkudata(L, 1, LT_YAML_PARSER);
  if (b->ev_live) yaml_event_delete(&b->ev);
  if (b->p_live) yaml_parser_delete(&b->p);
  b->ev_live = b->p_live = 0;
  return 0;
}

/* Raises a data error: the message alone, without the position of the
** Lua caller that luaL_error would add (the box closes on the way out). */
static int data_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/* Raises "yaml line L, column C: <fmt...>" at mark m. */
static int mark_error(lua_State *L, yaml_mark_t m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *msg = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return data_error(L, "yaml line %d, column %d: %s", (int)m.line + 1, (int)m.column + 1, msg);
}

static int parse_error(lua_State *L, lt_loader *b, const char *text, size_t len) {
  yaml_parser_t *p = &b->p;
  if (p->error == YAML_MEMORY_ERROR) return data_error(L, "yaml: not enough memory");
  const char *problem = p->problem ? p->problem : "malformed document";
  yaml_mark_t m = p->problem_mark;
  if (p->error == YAML_READER_ERROR) { /* no mark: count lines up to the byte */
    m.line = m.column = 0;
    for (size_t i = 0; i < p->problem_offset && i < len; i++) {
      if (text[i] == '\n')
        m.line++, m.column = 0;
      else
        m.column++;
    }
  }
  if (p->context)
    return mark_error(L, m, "%s (%s at line %d, column %d)", problem, p->context,
                      (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
  return mark_error(L, m, "%s", problem);
}

/* Adds w nodes to the expanded size of the document. */
static void count_nodes(lua_State *L, lt_loader *b, int64_t w, yaml_mark_t m) {
  if (w > b->max_nodes - b->nodes)
    mark_error(L, m, "document has more than %I nodes with aliases expanded (max_nodes)",
               (lua_Integer)b->max_nodes);
  b->nodes += w;
}

/* Stores the value on the top (a node that started at mark m) into the open
** collection, or as the document's value. Pops it. */
static void add_value(lua_State *L, lt_loader *b, yaml_mark_t m) {
  if (b->depth == 0) {
    lua_replace(L, 7);
    return;
  }
  lt_frame *f = &b->fr[b->depth - 1];
  int t = FRAME(b->depth - 1);
  int line = (int)m.line + 1;
  if (!f->map) {
    lua_rawseti(L, t + F_TABLE, ++f->n);
    if (b->lines) {
      lua_pushinteger(L, line);
      lua_rawseti(L, t + F_LINES, f->n);
    }
  } else if (!f->has_key) {
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))
      mark_error(L, m, "a mapping key cannot be .nan");
    lua_replace(L, t + F_KEY);
    f->has_key = 1;
    f->key = m;
  } else {
    lua_pushvalue(L, t + F_KEY);
    if (lua_rawget(L, t + F_TABLE) != LUA_TNIL) {
      mark_error(L, f->key, "duplicate key '%s'", luaL_tolstring(L, t + F_KEY, NULL));
    }
    lua_pop(L, 1);
    lua_pushvalue(L, t + F_KEY);
    lua_insert(L, -2);
    lua_rawset(L, t + F_TABLE);
    if (b->lines) {
      lua_pushvalue(L, t + F_KEY);
      lua_pushinteger(L, (lua_Integer)f->key.line + 1);
      lua_rawset(L, t + F_LINES);
    }
    lua_pushnil(L);
    lua_replace(L, t + F_KEY);
    f->has_key = 0;
  }
}

static int is_tag(const yaml_char_t *tag, const char *name) {
  return tag && !strcmp((const char *)tag, name);
}

/* A tag as written: "tag:yaml.org,2002:int" -> "!!int". */
static const char *tag_name(lua_State *L, const yaml_char_t *tag) {
  const char *t = (const char *)tag, *std = "tag:yaml.org,2002:";
  if (strncmp(t, std, strlen(std))) return t;
  return lua_pushfstring(L, "!!%s", t + strlen(std));
}

static void on_scalar(lua_State *L, lt_loader *b) {
  yaml_event_t *ev = &b->ev;
  const char *s = (const char *)ev->data.scalar.value;
  size_t n = ev->data.scalar.length;
  const yaml_char_t *tag = ev->data.scalar.tag;
  lua_Integer iv = 0;
  int r = R_STR;
  if (!tag) { /* untagged: plain scalars resolve, quoted ones are strings */
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) r = classify(s, n, &iv);
  } else if (!is_tag(tag, "!") && !is_tag(tag, YAML_STR_TAG)) { /* !!null, !!bool, ... */
    int ok = 0;
    r = classify(s, n, &iv);
    if (is_tag(tag, YAML_FLOAT_TAG) && r == R_INT) r = R_FLOAT;
    if (is_tag(tag, YAML_NULL_TAG))
      ok = r == R_NULL;
    else if (is_tag(tag, YAML_BOOL_TAG))
      ok = r == R_TRUE || r == R_FALSE;
    else if (is_tag(tag, YAML_INT_TAG))
      ok = r == R_INT;
    else if (is_tag(tag, YAML_FLOAT_TAG))
      ok = r >= R_FLOAT;
    else
      mark_error(L, ev->start_mark, "unsupported tag '%s'", tag_name(L, tag));
    if (!ok)
      mark_error(L, ev->start_mark, "'%s' is not a valid value for tag '%s'", s, tag_name(L, tag));
  }
  count_nodes(L, b, 1, ev->start_mark);
  push_resolved(L, r, s, n, iv);
  if (ev->data.scalar.anchor) {
    lua_pushvalue(L, -1);
    lua_setfield(L, 4, (const char *)ev->data.scalar.anchor);
    lua_pushinteger(L, 1);
    lua_setfield(L, 5, (const char *)ev->data.scalar.anchor);
  }
  add_value(L, b, ev->start_mark);
}

static void on_alias(lua_State *L, lt_loader *b) {
  const char *name = (const char *)b->ev.data.alias.anchor;
  yaml_mark_t m = b->ev.start_mark;
  if (lua_getfield(L, 4, name) == LUA_TNIL) {
    for (int d = 0; d < b->depth; d++) {
      const char *open = lua_tostring(L, FRAME(d) + F_ANCHOR);
      if (open && !strcmp(open, name))
        mark_error(L, m, "alias '*%s' is inside its own anchor (recursive data is not supported)",
                   name);
    }
    mark_error(L, m, "undefined alias '*%s'", name);
  }
  lua_getfield(L, 5, name);
  int64_t w = (int64_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  count_nodes(L, b, w, m);
  add_value(L, b, m);
}

static void on_start(lua_State *L, lt_loader *b, int map) {
  yaml_event_t *ev = &b->ev;
  const yaml_char_t *tag = map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
  const yaml_char_t *anchor = map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
  if (tag && !is_tag(tag, "!") && !is_tag(tag, YAML_SEQ_TAG) && !is_tag(tag, YAML_MAP_TAG))
    mark_error(L, ev->start_mark, "unsupported tag '%s'", tag_name(L, tag));
  if (b->depth >= b->max_depth)
    mark_error(L, ev->start_mark, "nesting deeper than %d levels (max_depth)", b->max_depth);
  luaL_checkstack(L, 8, "yaml nesting");
  lt_frame *f = &b->fr[b->depth];
  f->map = map;
  f->has_key = 0;
  f->n = 0;
  f->start = b->nodes;
  f->mark = ev->start_mark;
  count_nodes(L, b, 1, ev->start_mark);
  lua_newtable(L);
  if (b->lines) {
    lua_newtable(L);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 6);
  } else {
    lua_pushboolean(L, 0);
  }
  if (anchor) { /* until it closes, the name means this (open) node */
    lua_pushnil(L);
    lua_setfield(L, 4, (const char *)anchor);
    lua_pushstring(L, (const char *)anchor);
  } else {
    lua_pushboolean(L, 0);
  }
  lua_pushnil(L);
  b->depth++;
}

static void on_end(lua_State *L, lt_loader *b) {
  int t = FRAME(b->depth - 1);
  lt_frame *f = &b->fr[b->depth - 1];
  const char *anchor = lua_tostring(L, t + F_ANCHOR);
  yaml_mark_t m = f->mark;
  if (anchor) {
    lua_pushvalue(L, t + F_TABLE);
    lua_setfield(L, 4, anchor);
    lua_pushinteger(L, (lua_Integer)(b->nodes - f->start));
    lua_setfield(L, 5, anchor);
  }
  lua_settop(L, t + F_TABLE); /* the table stays on the top */
  b->depth--;
  add_value(L, b, m);
}

/* One event: returns 0 at the end of the stream. */
static int on_event(lua_State *L, lt_loader *b) {
  switch (b->ev.type) {
  case YAML_DOCUMENT_START_EVENT:
    if (b->ndocs++)
      mark_error(L, b->ev.start_mark, "a second document in the stream (expected one)");
    break;
  case YAML_SCALAR_EVENT:
    on_scalar(L, b);
    break;
  case YAML_ALIAS_EVENT:
    on_alias(L, b);
    break;
  case YAML_SEQUENCE_START_EVENT:
    on_start(L, b, 0);
    break;
  case YAML_MAPPING_START_EVENT:
    on_start(L, b, 1);
    break;
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT:
    on_end(L, b);
    break;
  case YAML_STREAM_END_EVENT:
    return 0;
  default:
    break;
  }
  return 1;
}

static lua_Integer optrange(lua_State *L, const char *key, lua_Integer def, lua_Integer max) {
  lua_Integer v = lt_optint(L, 2, key, def);
  if (v < 1 || v > max) luaL_error(L, "option '%s': %I out of range 1..%I", key, v, max);
  return v;
}

static int l_yaml_load(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  lt_checkopts(L, 2, LOAD_OPTS);
  int max_depth = (int)optrange(L, "max_depth", DEF_DEPTH, MAX_DEPTH);
  int64_t max_nodes = (int64_t)optrange(L, "max_nodes", DEF_NODES, INT64_MAX / 2);
  int lines = lt_optbool(L, 2, "lines", 0);
  lua_settop(L, 2);
  lt_loader *b = lua_newuserdatauv(L, sizeof *b + (size_t)max_depth * sizeof(lt_frame), 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, LT_YAML_PARSER);
  lua_toclose(L, 3);
  b->max_depth = max_depth;
  b->max_nodes = max_nodes;
  b->lines = lines;
  lua_newtable(L); /* 4 anchors */
  lua_newtable(L); /* 5 weights */
  lua_newtable(L); /* 6 lines */
  lua_pushnil(L);  /* 7 value */
  if (!yaml_parser_initialize(&b->p)) return data_error(L, "yaml: not enough memory");
  b->p_live = 1;
  yaml_parser_set_input_string(&b->p, (const unsigned char *)text, len);
  for (;;) {
    if (!yaml_parser_parse(&b->p, &b->ev)) return parse_error(L, b, text, len);
    b->ev_live = 1;
    int more = on_event(L, b);
    yaml_event_delete(&b->ev);
    b->ev_live = 0;
    if (!more) break;
  }
  lua_pushvalue(L, 7);
  if (!lines) return 1;
  lua_pushvalue(L, 6);
  return 2;
}

/* ------------------------------------------------------------------ dump */

typedef struct {
  yaml_emitter_t em;
  int live, oom;
  char *out; /* (cap) bytes from the state's allocator */
  size_t len, cap;
  lua_Alloc alloc;
  void *ud;
  int max_depth;
  int64_t nodes, max_nodes;
} lt_dumper;

static int dumper_close(lua_State *L) {
  lt_dumper *d = luaL_checkudata(L, 1, LT_YAML_EMITTER);
  if (d->live) yaml_emitter_delete(&d->em);
  d->live = 0;
  if (d->out) d->alloc(d->ud, d->out, d->cap, 0);
  d->out = NULL;
  d->len = d->cap = 0;
  return 0;
}

/* libyaml's output handler: appends to d->out; never calls Lua. */
static int dump_write(void *data, unsigned char *buf, size_t size) {
  lt_dumper *d = data;
  if (size > d->cap - d->len) {
    size_t ncap = d->cap ? d->cap : 256;
    while (ncap - d->len < size) {
      if (ncap > SIZE_MAX / 2) {
        d->oom = 1;
        return 0;
      }
      ncap *= 2;
    }
    char *p = d->alloc(d->ud, d->out, d->cap, ncap);
    if (!p) {
      d->oom = 1;
      return 0;
    }
    d->out = p;
    d->cap = ncap;
  }
  memcpy(d->out + d->len, buf, size);
  d->len += size;
  return 1;
}

/* Emits ev (libyaml takes it, even on failure); raises on failure. */
static void emit(lua_State *L, lt_dumper *d, yaml_event_t *ev, int made) {
  if (!made) data_error(L, "yaml.dump: not enough memory");
  if (yaml_emitter_emit(&d->em, ev)) return;
  if (d->oom || d->em.error == YAML_MEMORY_ERROR) data_error(L, "yaml.dump: not enough memory");
  data_error(L, "yaml.dump: %s", d->em.problem ? d->em.problem : "emitter error");
}

static void emit_scalar(lua_State *L, lt_dumper *d, const char *s, size_t n, int plain_ok,
                        yaml_scalar_style_t style) {
  yaml_event_t ev;
  int made = yaml_scalar_event_initialize(&ev, NULL, NULL, (const yaml_char_t *)s, (int)n, plain_ok,
                                          1, style);
  emit(L, d, &ev, made);
}

static int utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i], cp, min;
    size_t k;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xE0) == 0xC0)
      k = 1, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
      k = 2, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
      k = 3, cp = c & 0x07, min = 0x10000;
    else
      return 0;
    if (n - i <= k) return 0;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (s[i + j] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += k + 1;
  }
  return 1;
}

/* The shortest %.Ng (N = 15..17) that reads back as v, always with a dot
** or an exponent so it loads as a float again. */
static void format_float(lua_State *L, lua_Number v, char *buf, size_t size) {
  if (v != v) {
    snprintf(buf, size, ".nan");
    return;
  }
  if (v == (lua_Number)HUGE_VAL) {
    snprintf(buf, size, ".inf");
    return;
  }
  if (v == -(lua_Number)HUGE_VAL) {
    snprintf(buf, size, "-.inf");
    return;
  }
  char point = lua_getlocaledecpoint();
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, size, "%.*g", prec, (double)v);
    for (char *p = buf; *p; p++)
      if (*p == point) *p = '.';
    int same = 0;
    if (lua_stringtonumber(L, buf)) {
      same = lua_tonumber(L, -1) == v;
      lua_pop(L, 1);
    }
    if (same) break;
  }
  if (!strpbrk(buf, ".e")) strncat(buf, ".0", size - strlen(buf) - 1);
}

static void dump_value(lua_State *L, lt_dumper *d, int idx, int depth);

static void dump_scalar(lua_State *L, lt_dumper *d, int idx) {
  char buf[64];
  lua_Integer iv;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    emit_scalar(L, d, "null", 4, 1, YAML_PLAIN_SCALAR_STYLE);
    break;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      emit_scalar(L, d, "true", 4, 1, YAML_PLAIN_SCALAR_STYLE);
    else
      emit_scalar(L, d, "false", 5, 1, YAML_PLAIN_SCALAR_STYLE);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      snprintf(buf, sizeof buf, LUA_INTEGER_FMT, lua_tointeger(L, idx));
    else
      format_float(L, lua_tonumber(L, idx), buf, sizeof buf);
    emit_scalar(L, d, buf, strlen(buf), 1, YAML_PLAIN_SCALAR_STYLE);
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (n > INT_MAX) data_error(L, "yaml.dump: string of %I bytes is too long", (lua_Integer)n);
    if (!utf8_valid((const unsigned char *)s, n))
      data_error(L, "yaml.dump: string is not valid UTF-8 (YAML text is UTF-8)");
    int plain_ok = classify(s, n, &iv) == R_STR;
    emit_scalar(L, d, s, n, plain_ok,
                memchr(s, '\n', n) ? YAML_LITERAL_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
    break;
  }
  default:
    if (lua_islightuserdata(L, idx) && !lua_touserdata(L, idx)) {
      emit_scalar(L, d, "null", 4, 1, YAML_PLAIN_SCALAR_STYLE);
      break;
    }
    data_error(L, "yaml.dump: cannot dump a %s", luaL_typename(L, idx));
  }
}

/* Keys of a mapping, sorted: numbers, then strings (bytewise), then false,
** true. */
typedef struct {
  int rank;
  int isint;
  lua_Integer i;
  lua_Number x;
  const char *s;
  size_t n;
  lua_Integer pos; /* in the keys array */
} lt_key;

static int key_cmp(const void *pa, const void *pb) {
  const lt_key *a = pa, *b = pb;
  if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
  if (a->rank == 0) {
    if (a->isint && b->isint) return a->i < b->i ? -1 : a->i > b->i;
    return a->x < b->x ? -1 : a->x > b->x;
  }
  if (a->rank == 1) {
    int c = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n);
    return c ? c : a->n < b->n ? -1 : a->n > b->n;
  }
  return (int)a->i - (int)b->i;
}

/* Pushes an array of t's keys and a userdata of lt_key sorted; returns n. */
static lua_Integer sorted_keys(lua_State *L, int t, lua_Integer n) {
  if ((size_t)n > SIZE_MAX / sizeof(lt_key)) data_error(L, "yaml.dump: table too large");
  lua_createtable(L, (int)(n < INT_MAX ? n : INT_MAX), 0);
  int arr = lua_gettop(L);
  lt_key *k = lua_newuserdatauv(L, (size_t)n * sizeof *k, 0);
  lua_Integer i = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    lt_key *e = &k[i];
    memset(e, 0, sizeof *e);
    e->pos = ++i;
    switch (lua_type(L, -1)) {
    case LUA_TNUMBER:
      e->isint = lua_isinteger(L, -1);
      e->i = lua_tointeger(L, -1);
      e->x = lua_tonumber(L, -1);
      break;
    case LUA_TSTRING:
      e->rank = 1;
      e->s = lua_tolstring(L, -1, &e->n);
      break;
    case LUA_TBOOLEAN:
      e->rank = 2;
      e->i = lua_toboolean(L, -1);
      break;
    default:
      data_error(L, "yaml.dump: cannot dump a %s as a mapping key", luaL_typename(L, -1));
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, arr, i); /* keeps e->s alive */
  }
  qsort(k, (size_t)n, sizeof *k, key_cmp);
  return n;
}

static void dump_table(lua_State *L, lt_dumper *d, int t, int depth) {
  yaml_event_t ev;
  lua_Integer n = (lua_Integer)lua_rawlen(L, t), count = 0;
  int seq = n > 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    count++;
    if (seq && (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n))
      seq = 0;
  }
  if (seq && count == n) {
    emit(L, d, &ev,
         yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE));
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, t, i);
      dump_value(L, d, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
    }
    emit(L, d, &ev, yaml_sequence_end_event_initialize(&ev));
    return;
  }
  sorted_keys(L, t, count);
  int arr = lua_gettop(L) - 1;
  lt_key *k = lua_touserdata(L, -1);
  emit(L, d, &ev,
       yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE));
  for (lua_Integer i = 0; i < count; i++) {
    lua_rawgeti(L, arr, k[i].pos);
    dump_value(L, d, lua_gettop(L), depth + 1);
    lua_rawget(L, t);
    dump_value(L, d, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
  }
  emit(L, d, &ev, yaml_mapping_end_event_initialize(&ev));
  lua_pop(L, 2);
}

/* Stack of yaml_dump: 1 value, 2 opts, 3 dumper box (to-be-closed),
** 4 tables being dumped (cycle check). */
static void dump_value(lua_State *L, lt_dumper *d, int idx, int depth) {
  if (d->nodes++ >= d->max_nodes)
    data_error(L, "yaml.dump: more than %I nodes (max_nodes)", (lua_Integer)d->max_nodes);
  if (lua_type(L, idx) != LUA_TTABLE) {
    dump_scalar(L, d, idx);
    return;
  }
  if (depth >= d->max_depth)
    data_error(L, "yaml.dump: nesting deeper than %d levels (max_depth)", d->max_depth);
  luaL_checkstack(L, 8, "yaml.dump nesting");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, 4) != LUA_TNIL) data_error(L, "yaml.dump: a table contains itself (a cycle)");
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, 4);
  dump_table(L, d, idx, depth);
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, 4);
}

static int l_yaml_dump(lua_State *L) {
  yaml_event_t ev;
  luaL_checkany(L, 1);
  lt_checkopts(L, 2, DUMP_OPTS);
  int max_depth = (int)optrange(L, "max_depth", DEF_DEPTH, MAX_DEPTH);
  int64_t max_nodes = (int64_t)optrange(L, "max_nodes", DEF_NODES, INT64_MAX / 2);
  lua_settop(L, 2);
  lt_dumper *d = lua_newuserdatauv(L, sizeof *d, 0);
  memset(d, 0, sizeof *d);
  luaL_setmetatable(L, LT_YAML_EMITTER);
  lua_toclose(L, 3);
  d->alloc = lua_getallocf(L, &d->ud);
  d->max_depth = max_depth;
  d->max_nodes = max_nodes;
  lua_newtable(L); /* 4 */
  if (!yaml_emitter_initialize(&d->em)) return data_error(L, "yaml.dump: not enough memory");
  d->live = 1;
  yaml_emitter_set_output(&d->em, dump_write, d);
  yaml_emitter_set_unicode(&d->em, 1);
  yaml_emitter_set_width(&d->em, -1);
  emit(L, d, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
  emit(L, d, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
  dump_value(L, d, 1, 0);
  emit(L, d, &ev, yaml_document_end_event_initialize(&ev, 1));
  emit(L, d, &ev, yaml_stream_end_event_initialize(&ev));
  if (!yaml_emitter_flush(&d->em)) data_error(L, "yaml.dump: not enough memory");
  lua_pushlstring(L, d->out ? d->out : "", d->len);
  return 1;
}

/* ------------------------------------------------------------------ open */

static const luaL_Reg parser_meta[] = {
    {"__close", loader_close}, {"__gc", loader_close}, {NULL, NULL}};
static const luaL_Reg emitter_meta[] = {
    {"__close", dumper_close}, {"__gc", dumper_close}, {NULL, NULL}};
static const luaL_Reg funcs[] = {
    {"yaml_load", l_yaml_load}, {"yaml_dump", l_yaml_dump}, {NULL, NULL}};

void lt_open_yaml(lua_State *L) {
  lt_newclass(L, LT_YAML_PARSER, NULL, parser_meta);
  lt_newclass(L, LT_YAML_EMITTER, NULL, emitter_meta);
  luaL_setfuncs(L, funcs, 0);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "yaml_null");
}
