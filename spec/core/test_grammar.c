/*
** test_grammar.c -- the GBNF compiler and the Earley engine behind it,
** driven through tidei_grammar_engine on byte strings: accept/reject tables
** for every grammar in grammars/, left recursion, nullable rules, bounded
** repetition, Unicode classes, error messages with line and column, deep
** input and deep grammars, pop/commit consistency, limits and allocation
** failures.
** Layer: tests (core).
*/
#include <time.h>

#include "test.h"
#include "tidei.h"
#include "grammar.h"

/* ---------------------------------------------------------------- fixtures */

typedef struct { long live_bytes, live_blocks, calls, fail_at; } counting;

static void *count_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  counting *c = ud;
  if (nsize == 0) {
    if (p) { c->live_bytes -= (long)osize; c->live_blocks--; }
    free(p);
    return NULL;
  }
  if (++c->calls == c->fail_at) return NULL;
  void *q = realloc(p, nsize);
  if (!q) return NULL;
  if (p) c->live_bytes -= (long)osize; else c->live_blocks++;
  c->live_bytes += (long)nsize;
  return q;
}

static const tidei_engine *E = &tidei_grammar_engine;
static tide_env *env;

static void env_open(void) { CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK); }
static void env_close(void) { tide_env_free(env); env = NULL; }

static tidei_grammar *compile(const char *src) {
  tidei_grammar *g = NULL;
  int st = tidei_grammar_parse(env, src, strlen(src), NULL, &g);
  CHECKF(st == TIDE_OK, "compile failed: %s\n    grammar: %s", tide_env_errmsg(env), src);
  return g;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); fclose(f); return NULL; }
  s[n] = 0;
  fclose(f);
  *len = (size_t)n;
  return s;
}

static tidei_grammar *compile_file(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "grammars/%s", name);
  size_t len;
  char *src = slurp(path, &len);
  CHECKF(src != NULL, "cannot read %s", path);
  if (!src) return NULL;
  tidei_grammar *g = NULL;
  int st = tidei_grammar_parse(env, src, len, NULL, &g);
  CHECKF(st == TIDE_OK, "%s: %s", path, tide_env_errmsg(env));
  free(src);
  return g;
}

/* A matcher state on g. */
typedef struct { const tidei_grammar *g; void *st; size_t size; } gm;

static gm gm_new(const tidei_grammar *g, int32_t max_push) {
  gm m = { g, NULL, E->state_size(g, max_push) };
  m.st = malloc(m.size);
  E->init(g, m.st, max_push);
  return m;
}

static void gm_free(gm *m) { free(m->st); m->st = NULL; }

/* Pushes s[0..n), committing every `every` bytes (0: never). Returns the
** number of bytes accepted (stops at the first rejected one). */
static size_t gm_feed(gm *m, const char *s, size_t n, size_t every) {
  for (size_t i = 0; i < n; i++) {
    if (!E->push(m->g, m->st, (uint8_t)s[i])) return i;
    if (every && (i + 1) % every == 0) E->commit(m->g, m->st);
  }
  return n;
}

/* 1 if g accepts s exactly. Runs three ways (commit per byte, per 7 bytes
** after a pop/re-push, never) and checks they agree. */
static int accepts(const tidei_grammar *g, const char *s, size_t n) {
  gm a = gm_new(g, 8), b = gm_new(g, 16), c = gm_new(g, (int32_t)n + 1);
  size_t na = gm_feed(&a, s, n, 1);
  int ra = na == n && E->accepting(g, a.st);
  /* b: per chunk of 7, push the chunk, pop 3, re-push the 3, commit */
  size_t nb = 0;
  int ok = 1;
  for (size_t i = 0; i < n && ok; i += 7) {
    size_t k = n - i < 7 ? n - i : 7;
    size_t got = gm_feed(&b, s + i, k, 0);
    if (got < k) { nb += got; ok = 0; break; }
    int32_t back = k >= 3 ? 3 : (int32_t)k;
    E->pop(g, b.st, back);
    if (gm_feed(&b, s + i + k - (size_t)back, (size_t)back, 0) != (size_t)back) { ok = 0; break; }
    E->commit(g, b.st);
    nb += k;
  }
  int rb = ok && nb == n && E->accepting(g, b.st);
  size_t nc = gm_feed(&c, s, n, 0);
  int rc = nc == n && E->accepting(g, c.st);
  CHECKF(ra == rb && rb == rc && na == nc, "modes disagree on '%.*s': %d %d %d (%zu vs %zu)",
         (int)n, s, ra, rb, rc, na, nc);
  gm_free(&a);
  gm_free(&b);
  gm_free(&c);
  return ra;
}

static void check_lists(const tidei_grammar *g, const char *what, const char *const *yes,
                        const char *const *no) {
  if (!g) return;
  for (int i = 0; yes[i]; i++)
    CHECKF(accepts(g, yes[i], strlen(yes[i])), "%s should accept: '%s'", what, yes[i]);
  for (int i = 0; no[i]; i++)
    CHECKF(!accepts(g, no[i], strlen(no[i])), "%s should reject: '%s'", what, no[i]);
}

static void check_src(const char *src, const char *const *yes, const char *const *no) {
  tidei_grammar *g = compile(src);
  check_lists(g, src, yes, no);
  E->destroy(env, g);
}

/* ---------------------------------------------------------------- grammars/ */

static void test_json(void) {
  env_open();
  static const char *const yes[] = {
    "{}", "[]", "0", "-0", "1", "-12.5e+3", "1E9", "0.5", "3.25e-10", "true", "false", "null",
    "\"\"", "\"abc\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"\\u00e9\\uD83D\\ude00\"",
    "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"", "  {\"a\" : 1 }  ", "\n\t{\"a\":[1,2,{\"b\":null}]}\r\n",
    "{\"a\":{\"b\":{\"c\":[[[]]]}},\"d\":[true,false,null,\"x\",-1.5e2]}",
    "[1, 2 , 3 ,4]", "{ \"k\" : \"v\" , \"k2\" : [ ] }", "\"\x7f\"", NULL,
  };
  static const char *const no[] = {
    "", " ", "{", "[1,2,]", "{\"a\":1,}", "{'a':1}", "'x'", "01", "-", "1.", ".5", "1e", "+1",
    "0x10", "tru", "nul", "True", "\"abc", "\"a\nb\"", "\"\\x41\"", "\"\\u12G4\"", "{\"a\" 1}",
    "{1:2}", "[1 2]", "{}{}", "\"\xc3\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xff\"", "NaN",
    "[,]", "{,}", "1 2", NULL,
  };
  tidei_grammar *g = compile_file("json.gbnf");
  check_lists(g, "json", yes, no);
  E->destroy(env, g);
  env_close();
}

static void test_json_arr(void) {
  env_open();
  static const char *const yes[] = {
    "[]", "[1]", " [ \"a\" , {\"b\": [1, 2.5]} , null ] ", "[[],[[]],{}]", NULL,
  };
  static const char *const no[] = { "{}", "1", "[1,]", "[", "[]]", "\"[]\"", NULL };
  tidei_grammar *g = compile_file("json_arr.gbnf");
  check_lists(g, "json_arr", yes, no);
  E->destroy(env, g);
  env_close();
}

static void test_arithmetic(void) {
  env_open();
  static const char *const yes[] = {
    "1", "1+2", "1 + 2 * 3", "(1+2)*3", "-x", "- -x", "2^3^4", "a1_b / (c - 4.5) % 7",
    " ( ( (1) ) ) ", "x*-y", "10-2-3", NULL,
  };
  static const char *const no[] = {
    "", "+", "1+", "(1", "1)", "()", "1 2", "1..2", "X", "1+*2", "2^", "1.", NULL,
  };
  tidei_grammar *g = compile_file("arithmetic.gbnf");
  check_lists(g, "arithmetic", yes, no);
  E->destroy(env, g);
  env_close();
}

static void test_list(void) {
  env_open();
  static const char *const yes[] = {
    "- a\n", "- milk\n- eggs\n* bread and butter\n", "- caf\xc3\xa9 \xe2\x98\x95\n", NULL,
  };
  static const char *const no[] = {
    "", "- a", "-a\n", "- \n", "- a\n\n", "+ a\n", "- a\r\n", "- a\xe2\x80\xa8\n", NULL,
  };
  tidei_grammar *g = compile_file("list.gbnf");
  check_lists(g, "list", yes, no);
  E->destroy(env, g);
  env_close();
}

static void test_chess(void) {
  env_open();
  static const char *const yes[] = {
    "1. e4", "1. e4 e5", "1. e4 e5 2. Nf3 Nc6 3. Bb5 a6", "1. d4 d5 2. c4 dxc4 3. e4 b5 4. a4 c6",
    "12. O-O O-O-O", "40. Qxf7# 1-0", "5. exd8=Q+ Kxd8 1/2-1/2", "1. Nbd2 R1e1", NULL,
  };
  static const char *const no[] = {
    "", "e4", "1.e4", "1. e9", "1. i4", "0. e4", "1. e4  e5", "1. O-O-O-O", "1. e8=K", "1. Px4",
    "1. e4 e5 f4", NULL,
  };
  tidei_grammar *g = compile_file("chess.gbnf");
  check_lists(g, "chess", yes, no);
  E->destroy(env, g);
  env_close();
}

static void test_c_expr(void) {
  env_open();
  static const char *const yes[] = {
    "a", "a = b + c * d", "x ? y : z ? 1 : 2", "p->next->val[i++]", "f(a, b, g(1))",
    "*p++ = ~mask & 0xFFu", "a << 2 | b >> 3 ^ c", "i = 0, j = 10", "s.len >= 4 && !done",
    "'a' + '\\n' - '\\x41'", "\"hello\\tworld\"", "1.5e-3f * .5 + 2.", "(a + b) * (c - d) / 077L",
    "x += y -= 3", "--n", "arr[0][1] != -1", "f()", NULL,
  };
  static const char *const no[] = {
    "", "a +", "a = ", "(a", "a)", "f(a,)", "x ? y", "1 = = 2", "a[1", "'ab'", "\"abc",
    "09", "1e", "a b", "->x", "a.", "0x", NULL,
  };
  tidei_grammar *g = compile_file("c_expr.gbnf");
  check_lists(g, "c_expr", yes, no);
  E->destroy(env, g);
  env_close();
}

/* ---------------------------------------------------------------- features */

static void test_left_recursion(void) {
  env_open();
  static const char *const y1[] = { "1", "1+2", "1+2+3+4+5", "1*2+3", "1+2*3*4", NULL };
  static const char *const n1[] = { "", "+", "1+", "+1", "1++2", "1*", NULL };
  check_src("root ::= expr\n"
            "expr ::= expr \"+\" term | term\n"
            "term ::= term \"*\" num | num\n"
            "num ::= [0-9]\n", y1, n1);
  /* indirect left recursion and a long input */
  static const char *const y2[] = { "x", "xaaa", "xbaba", NULL };
  static const char *const n2[] = { "", "a", "xc", "xbab", "xb", NULL };
  check_src("root ::= a\na ::= b \"a\" | \"x\"\nb ::= a | a \"b\"\n", y2, n2);
  tidei_grammar *g = compile("root ::= root \"a\" | \"a\"");
  if (g) {
    static char buf[20001];
    memset(buf, 'a', 20000);
    gm m = gm_new(g, 8);
    CHECK(gm_feed(&m, buf, 20000, 1) == 20000);
    CHECK(E->accepting(g, m.st));
    int64_t sets, items;
    tidei_grammar_state_stats(m.st, &sets, &items);
    CHECKF(sets <= 2 && items <= 8, "left recursion keeps %lld sets, %lld items",
           (long long)sets, (long long)items);
    gm_free(&m);
    E->destroy(env, g);
  }
  env_close();
}

static void test_nullable(void) {
  env_open();
  /* The Aycock-Horspool case: a nullable rule completed in the set that
  ** predicted it, needed again later in the same set. */
  static const char *const y1[] = { "x", "ax", "aax", "aaax", "aaaax", NULL };
  static const char *const n1[] = { "", "a", "aaaaax", "xa", NULL };
  check_src("root ::= A A A A \"x\"\nA ::= E | \"a\"\nE ::= F\nF ::= \"\"\n", y1, n1);
  static const char *const y2[] = { "", "b", "ab", "abab", "bb", NULL };
  static const char *const n2[] = { "c", "ba ", NULL };
  check_src("root ::= S\nS ::= S T | \"\"\nT ::= \"a\"? \"b\"\n", y2, n2);
  static const char *const y3[] = { "", "q", "qq", NULL };
  static const char *const n3[] = { "x", NULL };
  check_src("root ::= (a b)*\na ::= \"q\"?\nb ::= (\"\")*\n", y3, n3);
  static const char *const y4[] = { "", "()", "(())", "()()", "(()(()))", NULL };
  static const char *const n4[] = { "(", ")", "(()", "())", NULL };
  check_src("root ::= \"\" | root \"(\" root \")\"\n", y4, n4);
  env_close();
}

static void test_repetition(void) {
  env_open();
  static const char *const y1[] = { "aaa", NULL };
  static const char *const n1[] = { "", "aa", "aaaa", NULL };
  check_src("root ::= \"a\"{3}", y1, n1);
  static const char *const y2[] = { "aa", "aaa", "aaaa", NULL };
  static const char *const n2[] = { "a", "aaaaa", NULL };
  check_src("root ::= \"a\"{2,4}", y2, n2);
  static const char *const y3[] = { "aa", "aaaaaaaaaaaa", NULL };
  static const char *const n3[] = { "", "a", "aab", NULL };
  check_src("root ::= \"a\"{2,}", y3, n3);
  static const char *const y4[] = { "", "ab", "abab", NULL };
  static const char *const n4[] = { "a", "ababab", "aba", NULL };
  check_src("root ::= \"ab\"{0,2}", y4, n4);
  static const char *const y5[] = { "xy", "yxy", "xyx", NULL };
  static const char *const n5[] = { "x", "xyxy", "xz", NULL };
  check_src("root ::= ( \"x\" | \"y\" ){2,3}", y5, n5);
  static const char *const y6[] = { "", "z", NULL };
  static const char *const n6[] = { "zz", NULL };
  check_src("root ::= \"z\"?  # optional\n", y6, n6);
  static const char *const y7[] = { "1", "1,2", "1,22,333", NULL };
  static const char *const n7[] = { "", ",", "1,", "1,2222", NULL };
  check_src("root ::= d ( \",\" d )*\nd ::= [0-9]{1,3}\n", y7, n7);
  static const char *const y8[] = { "", NULL };
  static const char *const n8[] = { "a", NULL };
  check_src("root ::= \"a\"{0}", y8, n8);
  /* a long bounded repetition stays O(1) items per set */
  tidei_grammar *g = compile("root ::= [a-z]{0,5000} \"!\"");
  if (g) {
    static char buf[5002];
    memset(buf, 'q', 5000);
    buf[5000] = '!';
    gm m = gm_new(g, 8);
    CHECK(gm_feed(&m, buf, 5001, 1) == 5001 && E->accepting(g, m.st));
    CHECK(E->finished(g, m.st));
    gm_free(&m);
    m = gm_new(g, 8);
    CHECK(gm_feed(&m, buf, 5000, 1) == 5000 && !E->accepting(g, m.st));
    CHECK(!E->push(g, m.st, 'q'));
    gm_free(&m);
    E->destroy(env, g);
  }
  env_close();
}

static void test_unicode(void) {
  env_open();
  static const char *const y1[] = { "\xce\xb1", "\xcf\x89", "\xce\xbb\xce\xbb", NULL };
  static const char *const n1[] = { "a", "\xce\x91", "\xce", "\xce\xb1\xce", NULL };
  check_src("root ::= [\xce\xb1-\xcf\x89]+", y1, n1);
  static const char *const y2[] = { "a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x7f", NULL };
  static const char *const n2[] = { "", "b", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                    "\xff", "\x80", "\xe2\x82", NULL };
  check_src("root ::= [^b]", y2, n2);
  static const char *const y3[] = { "x", "x\n", "\xf4\x8f\xbf\xbf", "\xee\x80\x80", NULL };
  static const char *const n3[] = { "xy", "", "\xed\xbf\xbf", NULL };
  check_src("root ::= . \"\\n\"? ", y3, n3);
  static const char *const y4[] = { "\xc3\xa9t\xc3\xa9\xf0\x9f\x98\x80", NULL };
  static const char *const n4[] = { "ete\xf0\x9f\x98\x80", NULL };
  check_src("root ::= \"\\u00e9t\\xe9\\U0001F600\"", y4, n4);
  static const char *const y5[] = { "\xe4\xb8\x80", "\xe9\xbe\xa5", "\xe5\xa5\xbd", NULL };
  static const char *const n5[] = { "\xe4\xb7\xbf", "\xe9\xbe\xa6", "a", NULL };
  check_src("root ::= [\\u4e00-\\u9fa5]", y5, n5);
  static const char *const y6[] = { "]", "[", "-", "\\", "^", "a", NULL };
  static const char *const n6[] = { "b", NULL };
  check_src("root ::= [\\]\\[\\-\\\\^a]", y6, n6);
  static const char *const y7[] = { "-", "a", "z", NULL };
  static const char *const n7[] = { "b", NULL };
  check_src("root ::= [a-] | [-z]", y7, n7);
  static const char *const y8[] = { "\xf0\x90\x80\x80", "\xf3\xbf\xbf\xbf", "\xf4\x8f\xbf\xbf", NULL };
  static const char *const n8[] = { "\xef\xbf\xbf", "\xc2\x80", NULL };
  check_src("root ::= [\\U00010000-\\U0010FFFF]", y8, n8);
  /* every code point range split into UTF-8 is checked against encoding */
  tidei_grammar *g = compile("root ::= [\\u0080-\\u07ff\\u0800-\\ud7ff\\ue000-\\uffff]");
  if (g) {
    int bad = 0;
    for (uint32_t cp = 0x70; cp < 0x10000 && bad < 5; cp += 7) {
      unsigned char b[4];
      int n = cp < 0x80 ? (b[0] = (unsigned char)cp, 1)
            : cp < 0x800 ? (b[0] = (unsigned char)(0xc0 | cp >> 6), b[1] = (unsigned char)(0x80 | (cp & 63)), 2)
            : (b[0] = (unsigned char)(0xe0 | cp >> 12), b[1] = (unsigned char)(0x80 | ((cp >> 6) & 63)),
               b[2] = (unsigned char)(0x80 | (cp & 63)), 3);
      int want = cp >= 0x80 && !(cp >= 0xd800 && cp <= 0xdfff);
      gm m = gm_new(g, 8);
      int got = gm_feed(&m, (const char *)b, (size_t)n, 1) == (size_t)n && E->accepting(g, m.st);
      if (got != want) { bad++; CHECKF(0, "U+%04X: got %d want %d", cp, got, want); }
      gm_free(&m);
    }
    CHECK(bad == 0);
    E->destroy(env, g);
  }
  env_close();
}

static void test_syntax(void) {
  env_open();
  /* comments, dashes in names, multi-line alternatives, CRLF */
  static const char *const y1[] = { "ab", "c", "d", "e", NULL };
  static const char *const n1[] = { "", "abc", NULL };
  check_src("# top comment\n\nroot ::= my-rule # trailing\n"
            "my-rule ::= \"a\" \"b\" |\n   \"c\"\n  | \"d\" # ext: line starts with |\n"
            "  | (\n  \"e\"\n  )\r\n", y1, n1);
  static const char *const y2[] = { "x", NULL };
  static const char *const n2[] = { "y", NULL };
  check_src("root::=\"x\"", y2, n2);
  /* a custom root */
  tidei_grammar *g = NULL;
  const char *src = "a ::= \"1\"\nb ::= \"2\"\n";
  CHECK(tidei_grammar_parse(env, src, strlen(src), "b", &g) == TIDE_OK);
  if (g) {
    gm m = gm_new(g, 4);
    CHECK(gm_feed(&m, "2", 1, 1) == 1 && E->accepting(g, m.st) && E->finished(g, m.st));
    gm_free(&m);
    E->destroy(env, g);
  }
  env_close();
}

static void expect_error(const char *src, int status, const char *msg) {
  tidei_grammar *g = (tidei_grammar *)&g;
  int st = tidei_grammar_parse(env, src, strlen(src), NULL, &g);
  CHECKF(st == status && (st == TIDE_OK || g == NULL), "'%s': status %d, want %d", src, st, status);
  if (st == TIDE_OK && status == TIDE_OK) { E->destroy(env, g); return; }
  CHECKF(strstr(tide_env_errmsg(env), msg) != NULL, "'%s': message '%s', want '%s'", src,
         tide_env_errmsg(env), msg);
  if (st == TIDE_OK) E->destroy(env, g);
}

static void test_errors(void) {
  env_open();
  expect_error("root ::= value\n\nvalue ::= \"a\" | b\nb ::=  \"x\" valu\n", TIDE_ERR_FORMAT,
               "grammar line 4, column 12: undefined rule 'valu'");
  expect_error("root ::= \"a\"\nother ::= \"b\"\n", TIDE_OK, "");
  expect_error("start ::= \"a\"\n", TIDE_ERR_FORMAT, "grammar has no rule 'root'");
  expect_error("", TIDE_ERR_FORMAT, "grammar has no rule 'root'");
  expect_error("root ::= \"a\"\nroot ::= \"b\"\n", TIDE_ERR_FORMAT,
               "line 2, column 1: rule 'root' defined twice");
  expect_error("root = \"a\"\n", TIDE_ERR_FORMAT, "line 1, column 6: expecting '::='");
  expect_error("root ::= \"abc\n", TIDE_ERR_FORMAT, "line 1, column 10: unterminated string");
  expect_error("root ::= [a-z\n", TIDE_ERR_FORMAT, "unterminated character class");
  expect_error("root ::= [z-a]\n", TIDE_ERR_FORMAT, "line 1, column 11: character range out of order");
  expect_error("root ::= \"\\q\"\n", TIDE_ERR_FORMAT, "line 1, column 11: unknown escape '\\q'");
  expect_error("root ::= \"\\x4\"\n", TIDE_ERR_FORMAT, "expecting 2 hex digits");
  expect_error("root ::= \"\\U00110000\"\n", TIDE_ERR_FORMAT, "out of range");
  expect_error("root ::= ( \"a\" \n", TIDE_ERR_FORMAT, "line 2, column 1: expecting ')'");
  expect_error("root ::= \"a\" )\n", TIDE_ERR_FORMAT, "line 1, column 14: unmatched ')'");
  expect_error("root ::= * \"a\"\n", TIDE_ERR_FORMAT, "line 1, column 10: expecting an item before '*'");
  expect_error("root ::= \"a\"{3,2}\n", TIDE_ERR_FORMAT, "has max below min");
  expect_error("root ::= \"a\"{x}\n", TIDE_ERR_FORMAT, "expecting a number");
  expect_error("root ::= \"a\"{2\n", TIDE_ERR_FORMAT, "expecting ',' or '}'");
  expect_error("root ::= \"a\"{1,200000}\n", TIDE_ERR_FORMAT, "repetition bound above 100000");
  expect_error("root ::= \"a\"\n  \"b\"\n", TIDE_ERR_FORMAT, "line 2, column 3: expecting a rule name");
  expect_error("root ::= \"a\" @\n", TIDE_ERR_FORMAT, "line 1, column 14: unexpected '@'");
  expect_error("root ::= \"\xc3\"\n", TIDE_ERR_FORMAT, "invalid UTF-8");
  expect_error("root ::= \"\\ud800\"\n", TIDE_ERR_FORMAT, "surrogate");
  /* symbol budget: 100000 x 100000 copies */
  expect_error("root ::= a b c d e f g\n"
               "a ::= \"abcdefghijklmnopqrstuvwxyz\"{100000}\nb ::= \"abcdefghijklmnopqrstuvwxyz\"{100000}\n"
               "c ::= \"abcdefghijklmnopqrstuvwxyz\"{100000}\nd ::= \"abcdefghijklmnopqrstuvwxyz\"{100000}\n"
               "e ::= \"abcdefghijklmnopqrstuvwxyz\"{100000}\nf ::= \"abcdefghijklmnopqrstuvwxyz\"{100000}\n"
               "g ::= \"abcdefghijklmnopqrstuvwxyz\"{100000}\n", TIDE_ERR_ARG, "grammar too large");
  /* deep grammar nesting: an error, not a stack overflow */
  size_t depth = 100000, n = 0;
  char *src = malloc(2 * depth + 32);
  n += (size_t)sprintf(src, "root ::= ");
  for (size_t i = 0; i < depth; i++) src[n++] = '(';
  src[n++] = '"', src[n++] = 'a', src[n++] = '"';
  for (size_t i = 0; i < depth; i++) src[n++] = ')';
  src[n] = 0;
  expect_error(src, TIDE_ERR_FORMAT, "groups nested deeper than 200");
  /* 150 deep is fine */
  n = (size_t)sprintf(src, "root ::= ");
  for (int i = 0; i < 150; i++) src[n++] = '(';
  src[n++] = '"', src[n++] = 'a', src[n++] = '"';
  for (int i = 0; i < 150; i++) src[n++] = ')';
  src[n] = 0;
  static const char *const y[] = { "a", NULL }, *const no[] = { "", "aa", NULL };
  check_src(src, y, no);
  free(src);
  env_close();
}

/* A JSON array nested 10,000 deep: accepted, or rejected cleanly at a bound
** with the state still usable; never a crash. */
static void test_deep_input(void) {
  env_open();
  tidei_grammar *g = compile_file("json.gbnf");
  if (!g) { env_close(); return; }
  enum { D = 10000 };
  gm m = gm_new(g, 16);
  size_t opened = 0;
  while (opened < D && E->push(g, m.st, '[')) {
    E->commit(g, m.st);
    opened++;
  }
  printf("info deep_input: %zu of %d '[' accepted\n", opened, D);
  CHECK(opened >= 1000);
  CHECK(!E->accepting(g, m.st));
  size_t closed = 0;
  while (closed < opened && E->push(g, m.st, ']')) {
    E->commit(g, m.st);
    closed++;
  }
  CHECK(closed == opened);
  CHECK(E->accepting(g, m.st) == (opened > 0 && closed == opened));
  CHECK(!E->push(g, m.st, ']'));
  gm_free(&m);
  /* the same without commits, bounded by max_push sets */
  m = gm_new(g, 64);
  size_t k = 0;
  while (k < 1000 && E->push(g, m.st, '[')) k++;
  CHECK(k >= 64);
  E->pop(g, m.st, (int32_t)k);
  CHECK(E->push(g, m.st, '1') && E->accepting(g, m.st));
  gm_free(&m);
  E->destroy(env, g);
  /* right recursion through a regular rule is a lexeme (a DFA): constant
  ** space; through a non-regular one it grows a set per level, and the
  ** overflow rejects cleanly */
  g = compile("root ::= r\nr ::= \"a\" r | \"\"\n");
  if (g) {
    m = gm_new(g, 8);
    size_t n = 0;
    while (n < 100000 && E->push(g, m.st, 'a')) {
      E->commit(g, m.st);
      n++;
    }
    CHECK(n == 100000);
    CHECK(E->accepting(g, m.st));
    gm_free(&m);
    E->destroy(env, g);
  }
  g = compile("root ::= r\nr ::= \"a\" r \"b\" | \"\"\n");
  if (g) {
    m = gm_new(g, 8);
    size_t n = 0;
    while (n < 100000 && E->push(g, m.st, 'a')) {
      E->commit(g, m.st);
      n++;
    }
    printf("info deep_input: non-regular right recursion stops after %zu bytes\n", n);
    CHECK(n > 1000 && n < 100000);
    CHECK(!E->accepting(g, m.st));
    gm_free(&m);
    E->destroy(env, g);
  }
  env_close();
}

/* The set of bytes a state would accept next, and whether it accepts. */
static void next_bytes(const tidei_grammar *g, void *st, uint32_t out[9]) {
  memset(out, 0, 9 * sizeof *out);
  for (int b = 0; b < 256; b++)
    if (E->push(g, st, (uint8_t)b)) {
      out[b >> 5] |= 1u << (b & 31);
      E->pop(g, st, 1);
    }
  out[8] = (uint32_t)E->accepting(g, st) | (uint32_t)E->finished(g, st) << 1;
}

static uint64_t rng = 88172645463325252ULL;
static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng % n);
}

/* Push a string, pop part, push another, compare with a fresh state that
** got the final string directly (and with a clone made midway). */
static void test_pop_commit(void) {
  env_open();
  static const char *docs[] = {
    "{\"a\": [1, 2.5e3, {\"b\": null}], \"c\": \"x\\u00e9y\"}",
    "[true, false, [[], {}], \"\xe2\x82\xac\", -0.25]",
    "{\"k\":{\"k\":{\"k\":[0,1,2,3,4,5,6,7,8,9]}}}",
  };
  tidei_grammar *g = compile_file("json.gbnf");
  if (!g) { env_close(); return; }
  int mismatches = 0;
  for (int iter = 0; iter < 300; iter++) {
    const char *doc = docs[iter % 3];
    size_t n = strlen(doc);
    size_t a = rnd((uint32_t)n + 1);          /* committed prefix */
    size_t b = a + rnd((uint32_t)(n - a) + 1); /* pushed, then popped back to c */
    size_t c = a + rnd((uint32_t)(b - a) + 1);
    size_t d = c + rnd((uint32_t)(n - c) + 1); /* final length */
    if (d - c > 40 || b - a > 40) continue;
    gm m = gm_new(g, 40), f = gm_new(g, 40);
    size_t every = 1 + rnd(5);
    int ok = gm_feed(&m, doc, a, every) == a;
    E->commit(g, m.st);
    ok &= gm_feed(&m, doc + a, b - a, 0) == b - a;
    E->pop(g, m.st, (int32_t)(b - c));
    ok &= gm_feed(&m, doc + c, d - c, 0) == d - c;
    ok &= gm_feed(&f, doc, d, 0) == d;
    CHECKF(ok, "iter %d: a=%zu b=%zu c=%zu d=%zu", iter, a, b, c, d);
    uint32_t x[9], y[9];
    next_bytes(g, m.st, x);
    next_bytes(g, f.st, y);
    if (memcmp(x, y, sizeof x)) mismatches++;
    /* a copy behaves as the original */
    gm k = gm_new(g, 40);
    E->copy(g, k.st, m.st, m.size);
    E->commit(g, k.st);
    next_bytes(g, k.st, y);
    if (memcmp(x, y, sizeof x)) mismatches++;
    gm_free(&k);
    gm_free(&m);
    gm_free(&f);
  }
  CHECKF(mismatches == 0, "%d mismatches", mismatches);
  E->destroy(env, g);
  env_close();
}

static void test_finished(void) {
  env_open();
  tidei_grammar *g = compile("root ::= \"ab\" | \"abc\"");
  if (g) {
    gm m = gm_new(g, 4);
    CHECK(!E->accepting(g, m.st) && !E->finished(g, m.st));
    CHECK(gm_feed(&m, "ab", 2, 1) == 2 && E->accepting(g, m.st) && !E->finished(g, m.st));
    CHECK(E->push(g, m.st, 'c') && E->accepting(g, m.st) && E->finished(g, m.st));
    CHECK(!E->push(g, m.st, 'c'));
    gm_free(&m);
    E->destroy(env, g);
  }
  g = compile("root ::= \"a\"+");
  if (g) {
    gm m = gm_new(g, 4);
    CHECK(gm_feed(&m, "aaa", 3, 1) == 3 && E->accepting(g, m.st) && !E->finished(g, m.st));
    gm_free(&m);
    E->destroy(env, g);
  }
  g = compile("root ::= \"\"");
  if (g) {
    gm m = gm_new(g, 4);
    CHECK(E->accepting(g, m.st) && E->finished(g, m.st));
    gm_free(&m);
    E->destroy(env, g);
  }
  g = compile("root ::= [] | \"\"\n"); /* the empty class matches nothing */
  if (g) {
    gm m = gm_new(g, 4);
    CHECK(E->finished(g, m.st));
    for (int b = 0; b < 256; b++) CHECK(!E->push(g, m.st, (uint8_t)b));
    gm_free(&m);
    E->destroy(env, g);
  }
  env_close();
}

/* The lexer layer changes no verdict: each grammar compiled with its
** lexemes and again with them dropped (pure Earley over bytes) gives the
** same next-byte sets, accepting and finished flags along random walks,
** with commits and pops on the way. */
static const char *const LEX_GRAMMARS[] = {
  /* lexeme ends are not greedy: a word may end where it could go on */
  "root ::= w w | \"(\" root \")\"\nw ::= [a-c]+\n",
  "root ::= item (\",\" item)* | \"[\" root \"]\"\nitem ::= [a-z]+ [a-z0-9]* \"x\"? | [0-9]{1,3}\n",
  /* right and left recursion, nullable lexemes, a regular root */
  "root ::= r\nr ::= \"a\" r | \"b\"\n",
  "root ::= l \"!\" | \"{\" root \"}\"\nl ::= l \"ab\" | \"a\" | \"\"\n",
  "root ::= [a-z]+ (\"-\" [0-9]{2,4})?\n",
  /* bounded repetition of a lexeme too big to be one */
  "root ::= \"<\" s \">\" | \"(\" root \")\"\ns ::= c{0,40}\n"
  "c ::= [^<>\\x00-\\x1f] | \"\\\\\" [<>nt]\n",
  /* counted lexemes (x{m,n} too big for one DFA, x prefix-free): bounds
  ** reached within a walk, m = n, m > 0, two in a row, multi-byte x's */
  "root ::= \"<\" s \">\" | \"(\" root \")\"\ns ::= c{0,25}\n"
  "c ::= [^<>\\\\\\x00-\\x1f] | \"\\\\u\" [0-9a-f]{4}\n",
  "root ::= \"<\" c{3,30} \">\" | \"(\" root \")\"\n"
  "c ::= [^<>\\\\\\x00-\\x1f] | \"\\\\u\" [0-9a-f]{4}\n",
  "root ::= \"<\" c{20} \">\" | \"<\" c{1,300} c{2,40} \"!\" | \"(\" root \")\"\n"
  "c ::= [^<>!\\\\\\x00-\\x1f] | \"\\\\u\" [0-9a-f]{4}\n",
  /* x not prefix-free (a word may go on): no counted lexeme, same verdicts */
  "root ::= \"<\" w{0,300} \">\" | \"(\" root \")\"\n"
  "w ::= [a-c] [a-c]? \" \"? | [^<>\\x00-\\x1f]\n",
};

static void walk_compare(const tidei_grammar *g1, const tidei_grammar *g2, const char *what,
                         int steps, int *mismatches) {
  gm a = gm_new(g1, 8), b = gm_new(g2, 8);
  uint32_t na[9], nb[9];
  int pushed = 0;
  for (int k = 0; k < steps; k++) {
    next_bytes(g1, a.st, na);
    next_bytes(g2, b.st, nb);
    if (memcmp(na, nb, sizeof na)) {
      if ((*mismatches)++ < 5) fprintf(stderr, "    %s: step %d differs\n", what, k);
      break;
    }
    int cand[256], n = 0;
    for (int c = 0; c < 256; c++)
      if (na[c >> 5] >> (c & 31) & 1) cand[n++] = c;
    if (!n) break;
    uint8_t c = (uint8_t)cand[rnd((uint32_t)n)];
    if (!E->push(g1, a.st, c) || !E->push(g2, b.st, c)) {
      (*mismatches)++;
      break;
    }
    if (++pushed == 8 || rnd(4) == 0) {
      if (rnd(3) == 0) { /* undo what was pushed since the last commit */
        E->pop(g1, a.st, pushed);
        E->pop(g2, b.st, pushed);
      } else {
        E->commit(g1, a.st);
        E->commit(g2, b.st);
      }
      pushed = 0;
    }
  }
  gm_free(&a);
  gm_free(&b);
}

static void test_lexemes(void) {
  env_open();
  int mismatches = 0, with_lexemes = 0, n = 0;
  const char *files[] = { "json.gbnf", "json_arr.gbnf", "arithmetic.gbnf", "list.gbnf",
                          "chess.gbnf", "c_expr.gbnf" };
  size_t n_files = sizeof files / sizeof files[0];
  for (size_t f = 0; f < n_files + sizeof LEX_GRAMMARS / sizeof LEX_GRAMMARS[0]; f++) {
    const char *what;
    tidei_grammar *g1, *g2;
    if (f < n_files) {
      what = files[f];
      g1 = compile_file(what);
      g2 = compile_file(what);
    } else {
      what = LEX_GRAMMARS[f - n_files];
      g1 = compile(what);
      g2 = compile(what);
    }
    if (!g1 || !g2) {
      if (g1) E->destroy(env, g1);
      if (g2) E->destroy(env, g2);
      continue;
    }
    n++;
    with_lexemes += g1->n_lexemes > 0;
    tidei_grammar_lex_free(env, g2); /* pure Earley from here */
    for (int w = 0; w < 40; w++) walk_compare(g1, g2, what, 60, &mismatches);
    E->destroy(env, g1);
    E->destroy(env, g2);
  }
  CHECKF(mismatches == 0, "%d mismatches", mismatches);
  CHECKF(with_lexemes >= 8, "%d of %d grammars have lexemes", with_lexemes, n);
  /* a bounded repetition too big for one DFA is a counted lexeme */
  for (int k = 7; k <= 8; k++) {
    tidei_grammar *gc = compile(LEX_GRAMMARS[k]);
    if (!gc) continue;
    CHECKF(gc->lex.n_counts >= (k == 8 ? 2 : 1), "grammar %d: %d counted lexemes", k,
           gc->lex.n_counts);
    E->destroy(env, gc);
  }
  /* json.gbnf: strings, numbers and blanks are lexemes */
  tidei_grammar *g = compile_file("json.gbnf");
  if (g) {
    CHECKF(g->n_lexemes >= 3, "json.gbnf: %u lexemes", g->n_lexemes);
    E->destroy(env, g);
  }
  env_close();
}

/* Allocation failures while compiling: error, no leak, then success. */
static void test_alloc_failures(void) {
  size_t len;
  char *src = slurp("grammars/c_expr.gbnf", &len);
  CHECK(src != NULL);
  if (!src) return;
  int ok = 0;
  for (long k = 1; k < 5000 && !ok; k++) {
    counting c = { 0, 0, 0, 0 };
    tide_env *e = NULL;
    if (tide_env_new(&e, count_alloc, &c) != TIDE_OK) continue;
    long base = c.calls;
    c.fail_at = base + k;
    tidei_grammar *g = NULL;
    int st = tidei_grammar_parse(e, src, len, NULL, &g);
    if (st == TIDE_OK) { ok = 1; E->destroy(e, g); }
    else CHECKF(st == TIDE_ERR_NOMEM && g == NULL, "k=%ld status %d (%s)", k, st, tide_env_errmsg(e));
    tide_env_free(e);
    CHECKF(c.live_blocks == 0 && c.live_bytes == 0, "k=%ld leaked %ld blocks %ld bytes", k,
           c.live_blocks, c.live_bytes);
  }
  CHECK(ok);
  free(src);
}

/* The public constructor: a constraint on success, the parser's message
** and a NULL handle on failure. */
static void test_public_api(void) {
  env_open();
  tide_constraint *c = (tide_constraint *)&c;
  const char *bad = "root ::= \"a\" | undefined-thing\n";
  CHECK(tide_grammar_compile(env, bad, strlen(bad), NULL, &c) == TIDE_ERR_FORMAT && c == NULL);
  CHECK(strstr(tide_env_errmsg(env), "undefined rule 'undefined-thing'") != NULL);
  const char *good = "start ::= \"x\"+\n";
  CHECK(tide_grammar_compile(env, good, strlen(good), "start", &c) == TIDE_OK && c != NULL);
  tide_constraint_free(c);
  tide_constraint_free(NULL);
  env_close();
}

/* End to end with a real vocabulary: tokenize a JSON document, and at each
** step the mask must allow the next token; advance must accept it. */
static void test_matcher_vocab(void) {
  const char *fx = test_fixtures();
  if (!fx) SKIP("no fixtures");
  env_open();
  char path[512];
  snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", fx);
  tide_gguf *gg = NULL;
  tide_tokenizer *tok = NULL;
  tide_vocab_index *vi = NULL;
  tide_constraint *c = NULL;
  tide_matcher *m = NULL;
  size_t len;
  char *src = slurp("grammars/json.gbnf", &len);
  if (tide_gguf_open(env, path, &gg) != TIDE_OK || tide_tokenizer_new(env, gg, &tok) != TIDE_OK ||
      tide_vocab_index_new(tok, &vi) != TIDE_OK || !src ||
      tide_grammar_compile(env, src, len, NULL, &c) != TIDE_OK || tide_matcher_new(c, vi, &m) != TIDE_OK) {
    CHECKF(0, "setup: %s", tide_env_errmsg(env));
  } else {
    const char *doc = "{\"name\": \"caf\xc3\xa9\", \"tags\": [\"a\", \"bb\"], \"n\": -1.5e3, \"ok\": true}";
    int32_t ids[256];
    int64_t nt = 0;
    CHECK(tide_tokenize(tok, doc, strlen(doc), 0, 0, ids, 256, &nt) == TIDE_OK);
    int32_t nv = tide_tokenizer_n_vocab(tok);
    uint32_t *bits = calloc(((size_t)nv + 31) / 32, 4);
    int allowed_all = 1;
    for (int64_t i = 0; i < nt; i++) {
      tide_matcher_mask(m, bits);
      allowed_all &= (int)((bits[ids[i] / 32] >> (ids[i] % 32)) & 1);
      CHECK(tide_matcher_advance(m, ids[i]) == TIDE_OK);
    }
    CHECK(allowed_all);
    CHECK(tide_matcher_accepting(m));
    /* a trailing comma is never allowed */
    int32_t comma[8];
    int64_t nc = 0;
    CHECK(tide_tokenize(tok, ",", 1, 0, 0, comma, 8, &nc) == TIDE_OK && nc == 1);
    tide_matcher_mask(m, bits);
    CHECK(((bits[comma[0] / 32] >> (comma[0] % 32)) & 1) == 0);
    free(bits);
  }
  free(src);
  tide_matcher_free(m);
  tide_constraint_free(c);
  tide_vocab_index_free(vi);
  tide_tokenizer_free(tok);
  tide_gguf_free(gg);
  env_close();
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Not a timed test: prints push costs for the record. */
static void test_push_cost(void) {
  env_open();
  static const char *doc =
    "{\"id\": 12345, \"name\": \"caf\xc3\xa9 au lait\", \"tags\": [\"a\", \"bb\", \"ccc\"],"
    " \"nested\": {\"x\": -1.25e-3, \"y\": [true, false, null], \"z\": {\"deep\": [[1], [2, [3]]]}},"
    " \"text\": \"The quick brown fox jumps over the lazy dog \\n\\t\\u00e9\"}";
  const char *files[] = { "json.gbnf", "c_expr.gbnf" };
  const char *inputs[] = { doc, "(a + b) * c->d[i++] - f(x, y ? 1 : 2) << 3 && !done || z" };
  for (int f = 0; f < 2; f++) {
    tidei_grammar *g = compile_file(files[f]);
    if (!g) continue;
    size_t n = strlen(inputs[f]);
    gm m = gm_new(g, 16);
    int reps = 200;
    double t0 = now();
    long pushes = 0;
    for (int r = 0; r < reps; r++) {
      E->init(g, m.st, 16);
      for (size_t i = 0; i < n; i++) {
        if (!E->push(g, m.st, (uint8_t)inputs[f][i])) break;
        E->commit(g, m.st);
        pushes++;
      }
    }
    double t1 = now();
    CHECK(pushes == (long)n * reps);
    /* mask-walk shape: at each position try all 256 bytes */
    E->init(g, m.st, 16);
    long tries = 0;
    double t2 = now();
    for (size_t i = 0; i < n; i++) {
      for (int b = 0; b < 256; b++) {
        tries++;
        if (E->push(g, m.st, (uint8_t)b)) E->pop(g, m.st, 1);
      }
      E->push(g, m.st, (uint8_t)inputs[f][i]);
      E->commit(g, m.st);
    }
    double t3 = now();
    /* the right byte pushed and popped at each position (no commit cost) */
    E->init(g, m.st, 16);
    double t4 = now();
    for (size_t i = 0; i < n; i++) {
      for (int r = 0; r < reps; r++)
        if (E->push(g, m.st, (uint8_t)inputs[f][i])) E->pop(g, m.st, 1);
      E->push(g, m.st, (uint8_t)inputs[f][i]);
      E->commit(g, m.st);
    }
    double t5 = now();
    int64_t ns, ni;
    tidei_grammar_state_stats(m.st, &ns, &ni);
    printf("info push_cost %s: %.0f ns per accepted push alone; final chart %lld sets %lld items\n",
           files[f], 1e9 * (t5 - t4) / ((double)n * reps), (long long)ns, (long long)ni);
    printf("info push_cost %s: %.0f ns per push+commit, %.0f ns per trial push (%zu bytes)\n",
           files[f], 1e9 * (t1 - t0) / (double)pushes, 1e9 * (t3 - t2) / (double)tries, n);
    gm_free(&m);
    E->destroy(env, g);
  }
  env_close();
}

TEST_MAIN(test_json, test_json_arr, test_arithmetic, test_list, test_chess, test_c_expr,
          test_left_recursion, test_nullable, test_repetition, test_unicode, test_syntax,
          test_errors, test_deep_input, test_pop_commit, test_finished, test_lexemes,
          test_alloc_failures,
          test_public_api, test_matcher_vocab, test_push_cost)
