/*
** test_constrain.c -- the vocabulary index and regex matchers on GPT-2's vocabulary.
** Layer: tests. The mask must equal brute force (advance a clone by each
** token) at several states, for the regex engine's DFA walk and for the
** generic push/pop walk (the same DFA behind a copy of the engine table);
** advance, EOG, UTF-8 split across tokens, clones, allocation-free hot
** paths; and a micro-benchmark of the mask (printed, not asserted).
*/
#include <time.h>

#include "constrain.h"
#include "grammar.h"
#include "json.h"
#include "regex.h"
#include "test.h"
#include "tide.h"

typedef struct { long n_alloc, fail_at; size_t live; } counter;

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counter *c = ud;
  if (nsize == 0) {
    if (ptr) c->live -= osize;
    free(ptr);
    return NULL;
  }
  c->n_alloc++;
  if (c->fail_at > 0 && c->n_alloc >= c->fail_at) return NULL;
  void *p = realloc(ptr, nsize);
  if (p) c->live += nsize - (ptr ? osize : 0);
  return p;
}

static counter cnt;
static tide_env *env;
static tide_tokenizer *tok;
static tide_vocab_index *vi;
static int32_t n_vocab, n_words;

static int setup(void) {
  if (vi) return 1;
  const char *fx = test_fixtures();
  if (!fx) return 0;
  char path[600];
  snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", fx);
  FILE *fp = fopen(path, "rb");
  if (!fp) return 0;
  fclose(fp);
  tide_env_new(&env, count_alloc, &cnt);
  tide_gguf *g;
  if (tide_gguf_open(env, path, &g)) return 0;
  int st = tide_tokenizer_new(env, g, &tok);
  tide_gguf_free(g);
  if (st) return 0;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  st = tide_vocab_index_new(tok, &vi);
  clock_gettime(CLOCK_MONOTONIC, &b);
  if (st) return 0;
  printf("vocab index: %.1f ms\n",
         (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) * 1e-6);
  n_vocab = tide_tokenizer_n_vocab(tok);
  n_words = (n_vocab + 31) / 32;
  return 1;
}

static int bit(const uint32_t *bits, int32_t id) { return bits[id >> 5] >> (id & 31) & 1; }

/* The token whose piece is exactly s, or -1. */
static int32_t find_token(const char *s) {
  size_t n = strlen(s);
  for (int32_t id = 0; id < n_vocab; id++) {
    size_t k;
    const char *p = tide_token_piece(tok, id, &k);
    if (k == n && !memcmp(p, s, n)) return id;
  }
  return -1;
}

/* Brute force: token allowed iff advancing a clone by it succeeds. */
static void brute_mask(const tide_matcher *m, uint32_t *bits) {
  memset(bits, 0, (size_t)n_words * 4);
  tide_matcher *c;
  tide_matcher_clone(m, &c);
  for (int32_t id = 0; id < n_vocab; id++) {
    if (tide_matcher_advance(c, id) != TIDE_OK) continue;
    bits[id >> 5] |= 1u << (id & 31);
    tide_matcher_free(c);
    tide_matcher_clone(m, &c);
  }
  tide_matcher_free(c);
}

static int masks_equal(const uint32_t *a, const uint32_t *b, const char *what) {
  int diff = 0;
  for (int32_t id = 0; id < n_vocab; id++) {
    if (bit(a, id) == bit(b, id)) continue;
    if (diff++ < 5) {
      size_t k;
      const char *p = tide_token_piece(tok, id, &k);
      fprintf(stderr, "    %s: token %d '%.*s': mask %d, brute %d\n", what, id, (int)k, p,
              bit(a, id), bit(b, id));
    }
  }
  return diff == 0;
}

static int count_bits(const uint32_t *b) {
  int n = 0;
  for (int32_t w = 0; w < n_words; w++) n += __builtin_popcount(b[w]);
  return n;
}

/* A constraint on the DFA of pat whose engine table is a copy: the mask
** then takes the generic push/pop walk. */
static tidei_engine generic_engine;
static tide_constraint *compile_generic(const char *pat) {
  tidei_dfa *f;
  if (tidei_regex_build(env, pat, strlen(pat), &f)) return NULL;
  generic_engine = tidei_regex_engine;
  tide_constraint *c;
  return tidei_constraint_new(env, &generic_engine, f, &c) ? NULL : c;
}

static const struct {
  const char *re;
  const char *steps[4];
} walks[] = {
    {"\"([^\"\\\\\\x00-\\x1f]|\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4})*\"",
     {"\"", "hello wor", "ld\\u00", NULL}},
    {"[A-Z][a-z]+( [A-Z][a-z]+)*", {"Ab", "c De", NULL}},
    {"-?(0|[1-9]\\d*)(\\.\\d+)?([eE][+-]?\\d+)?", {"-1", "2.5", "e", NULL}},
    {"\\p{L}+( \\p{L}+){0,3}", {"\xc3", "\xa9t\xc3\xa9", " ", NULL}},
    {"(true|false|null)", {"t", "ru", NULL}},
    {"\xc3\xa9+", {"\xc3", "\xa9\xc3", NULL}},
    {"\\d{3}-\\d{4}", {"12", "3-", NULL}},
    {".*", {"anything", NULL}},
};

static void test_mask_vs_brute(void) {
  if (!setup()) SKIP("fixture vocab absent");
  uint32_t *m1 = malloc((size_t)n_words * 4), *m2 = malloc((size_t)n_words * 4),
           *m3 = malloc((size_t)n_words * 4);
  for (size_t k = 0; k < sizeof walks / sizeof walks[0]; k++) {
    tide_constraint *c, *cg = compile_generic(walks[k].re);
    CHECKF(tide_regex_compile(env, walks[k].re, strlen(walks[k].re), &c) == TIDE_OK, "%s",
           tide_env_errmsg(env));
    CHECK(cg != NULL);
    tide_matcher *m, *mg;
    CHECK(tide_matcher_new(c, vi, &m) == TIDE_OK);
    CHECK(tide_matcher_new(cg, vi, &mg) == TIDE_OK);
    for (int s = 0;; s++) {
      tide_matcher_mask(m, m1);
      tide_matcher_mask(mg, m2);
      brute_mask(m, m3);
      char what[160];
      snprintf(what, sizeof what, "'%s' step %d", walks[k].re, s);
      CHECK(masks_equal(m1, m3, what));
      CHECK(masks_equal(m2, m3, what));
      CHECKF(count_bits(m1) > 0, "%s: empty mask", what);
      const char *step = walks[k].steps[s];
      if (!step) break;
      CHECKF(tide_matcher_advance_bytes(m, step, strlen(step)) == TIDE_OK, "%s: %s", what,
             tide_env_errmsg(env));
      CHECK(tide_matcher_advance_bytes(mg, step, strlen(step)) == TIDE_OK);
    }
    tide_matcher_free(m);
    tide_matcher_free(mg);
    tide_constraint_free(c);
    tide_constraint_free(cg);
  }
  free(m1); free(m2); free(m3);
}

/* Grammar matchers: the mask (lexeme DFA walk with pushes where a lexeme
** may end) must equal brute force and the generic push/pop walk (the same
** grammar behind a copy of the engine table), at several states. */
static char *slurp_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *p = malloc((size_t)n + 1);
  if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
  fclose(f);
  if (p) { p[n] = 0; *len = (size_t)n; }
  return p;
}

static tidei_engine generic_grammar;

static void check_grammar_walk(tidei_grammar *g, tidei_grammar *gg, const char *name,
                               const char *const *steps) {
  tide_constraint *c, *cg;
  generic_grammar = tidei_grammar_engine;
  CHECK(tidei_constraint_new(env, &tidei_grammar_engine, g, &c) == TIDE_OK);
  CHECK(tidei_constraint_new(env, &generic_grammar, gg, &cg) == TIDE_OK);
  tide_matcher *m, *mg;
  CHECK(tide_matcher_new(c, vi, &m) == TIDE_OK && tide_matcher_new(cg, vi, &mg) == TIDE_OK);
  uint32_t *m1 = malloc((size_t)n_words * 4), *m2 = malloc((size_t)n_words * 4),
           *m3 = malloc((size_t)n_words * 4);
  for (int k = 0;; k++) {
    tide_matcher_mask(m, m1);
    tide_matcher_mask(mg, m2);
    brute_mask(m, m3);
    char what[200];
    snprintf(what, sizeof what, "%s step %d", name, k);
    CHECK(masks_equal(m1, m3, what));
    CHECK(masks_equal(m2, m3, what));
    CHECKF(count_bits(m1) > 0, "%s: empty mask", what);
    if (!steps[k]) break;
    CHECKF(tide_matcher_advance_bytes(m, steps[k], strlen(steps[k])) == TIDE_OK, "%s: %s", what,
           tide_env_errmsg(env));
    CHECK(tide_matcher_advance_bytes(mg, steps[k], strlen(steps[k])) == TIDE_OK);
  }
  free(m1); free(m2); free(m3);
  tide_matcher_free(m);
  tide_matcher_free(mg);
  tide_constraint_free(c);
  tide_constraint_free(cg);
}

static void test_grammar_masks(void) {
  if (!setup()) SKIP("fixture vocab absent");
  size_t len;
  char *src = slurp_file("grammars/json.gbnf", &len);
  CHECKF(src != NULL, "grammars/json.gbnf not found (run from the project root)");
  if (!src) return;
  static const char *const json_steps[] = {
    "", " {", "\"na", "me\"", ": ", "\"caf\xc3", "\xa9 \\u00", "e9\", \"n\": -1", ".5e",
    "3, \"l\": [tr",
    "ue, nul", "l, {}], \"s\": \"x\"", "}", " ", NULL
  };
  tidei_grammar *g, *gg;
  CHECK(tidei_grammar_parse(env, src, len, NULL, &g) == TIDE_OK);
  CHECK(tidei_grammar_parse(env, src, len, NULL, &gg) == TIDE_OK);
  CHECK(g->n_lexemes > 0);
  check_grammar_walk(g, gg, "json.gbnf", json_steps);
  free(src);
  /* the same grammar without its lexemes (pure Earley) */
  src = slurp_file("grammars/json.gbnf", &len);
  CHECK(tidei_grammar_parse(env, src, len, NULL, &g) == TIDE_OK);
  CHECK(tidei_grammar_parse(env, src, len, NULL, &gg) == TIDE_OK);
  tidei_grammar_lex_free(env, g);
  static const char *const short_steps[] = { "[\"ab", "c\", 1", NULL };
  check_grammar_walk(g, gg, "json.gbnf without lexemes", short_steps);
  free(src);
  /* C expressions: identifiers and numbers are lexemes that may end
  ** anywhere, followed by blanks and operators */
  src = slurp_file("grammars/c_expr.gbnf", &len);
  CHECK(src != NULL);
  if (src) {
    static const char *const c_steps[] = { "(a", "lph", "a + 12", "3 ", "* foo_b", "ar[i", NULL };
    CHECK(tidei_grammar_parse(env, src, len, NULL, &g) == TIDE_OK);
    CHECK(tidei_grammar_parse(env, src, len, NULL, &gg) == TIDE_OK);
    check_grammar_walk(g, gg, "c_expr.gbnf", c_steps);
    free(src);
  }
  /* a JSON-schema grammar: bounded strings, enums, integers with bounds */
  static const char schema[] =
      "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},"
      "\"kind\":{\"enum\":[\"alpha\",\"beta\"]},\"n\":{\"type\":\"integer\",\"minimum\":-5,"
      "\"maximum\":300},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
      "\"required\":[\"name\"]}";
  char *gb;
  size_t gl;
  CHECKF(tidei_json_schema_gbnf(env, schema, strlen(schema), &gb, &gl) == TIDE_OK, "%s",
         tide_env_errmsg(env));
  CHECK(tidei_grammar_parse(env, gb, gl, NULL, &g) == TIDE_OK);
  CHECK(tidei_grammar_parse(env, gb, gl, NULL, &gg) == TIDE_OK);
  tidei_free(env, gb, gl + 1);
  static const char *const schema_steps[] = {
    "{\"name\":\"Jo", "hn Smith", "\",\"kind\":\"al", "pha\",\"n\":2", "9", ",\"tags\":[\"x",
    "\"]", NULL
  };
  check_grammar_walk(g, gg, "schema", schema_steps);
  /* counted lexemes (maxLength strings) and key lexemes (declared keys and
  ** undeclared ones side by side), against brute force */
  static const char schema2[] =
      "{\"type\":\"object\",\"properties\":{\"title\":{\"type\":\"string\",\"maxLength\":300},"
      "\"type\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":4},\"tag\":{\"type\":"
      "\"string\"},\"doi\":{\"type\":\"integer\"}}}";
  CHECKF(tidei_json_schema_gbnf(env, schema2, strlen(schema2), &gb, &gl) == TIDE_OK, "%s",
         tide_env_errmsg(env));
  CHECK(tidei_grammar_parse(env, gb, gl, NULL, &g) == TIDE_OK);
  CHECK(tidei_grammar_parse(env, gb, gl, NULL, &gg) == TIDE_OK);
  tidei_free(env, gb, gl + 1);
  CHECKF(g->lex.n_counts >= 1, "%d counted lexemes", g->lex.n_counts);
  static const char *const schema2_steps[] = {
    "{\"", "ti", "tle\":\"The", " quick \\u00e9 caf\xc3\xa9", "\",\"t", "ype\":\"ab", "c",
    "\",\"titles", "\":1,\"", "do", "i\":", "7", NULL
  };
  check_grammar_walk(g, gg, "schema (counted, keys)", schema2_steps);
  /* lexeme ends that are not greedy, and a lexeme at the root */
  static const char *const inline_grammars[][2] = {
    { "root ::= w (\" \" w)* | \"(\" root \")\"\nw ::= [a-z]+ [0-9]*\n", "(hello wor" },
    { "root ::= [a-zA-Z ]+ (\".\" [0-9]{1,3})?\n", "Hello world.1" },
  };
  for (size_t k = 0; k < sizeof inline_grammars / sizeof inline_grammars[0]; k++) {
    const char *gs = inline_grammars[k][0];
    CHECK(tidei_grammar_parse(env, gs, strlen(gs), NULL, &g) == TIDE_OK);
    CHECK(tidei_grammar_parse(env, gs, strlen(gs), NULL, &gg) == TIDE_OK);
    const char *const st[] = { inline_grammars[k][1], NULL };
    check_grammar_walk(g, gg, gs, st);
  }
}

static void test_advance(void) {
  if (!setup()) SKIP("fixture vocab absent");
  tide_constraint *c;
  const char *re = "[a-z]+ [0-9]+";
  CHECK(tide_regex_compile(env, re, strlen(re), &c) == TIDE_OK);
  tide_matcher *m;
  CHECK(tide_matcher_new(c, vi, &m) == TIDE_OK);
  tide_constraint_free(c); /* the matcher keeps it alive */
  int32_t hello = find_token("hello"), sp1 = find_token(" 1"), a1 = -1,
          eos = tide_tokenizer_eos(tok);
  for (int32_t id = 0; id < n_vocab && a1 < 0; id++) { /* a letter then something illegal */
    size_t k;
    const char *p = tide_token_piece(tok, id, &k);
    if (k >= 2 && p[0] >= 'a' && p[0] <= 'z' && p[1] >= 'A' && p[1] <= 'Z') a1 = id;
  }
  CHECK(hello >= 0 && sp1 >= 0 && a1 >= 0 && eos >= 0);
  uint32_t *before = malloc((size_t)n_words * 4), *after = malloc((size_t)n_words * 4);
  tide_matcher_mask(m, before);
  CHECK(bit(before, hello) && !bit(before, sp1) && !bit(before, eos));
  /* an illegal token fails, names the token and changes nothing */
  CHECK(tide_matcher_advance(m, sp1) == TIDE_ERR_ARG);
  CHECKF(strstr(tide_env_errmsg(env), "' 1'") != NULL, "%s", tide_env_errmsg(env));
  CHECK(tide_matcher_advance(m, a1) == TIDE_ERR_ARG); /* first byte fine, second not */
  CHECK(tide_matcher_advance(m, eos) == TIDE_ERR_ARG);
  CHECK(tide_matcher_advance(m, -1) == TIDE_ERR_ARG &&
        tide_matcher_advance(m, n_vocab) == TIDE_ERR_ARG);
  tide_matcher_mask(m, after);
  CHECK(!memcmp(before, after, (size_t)n_words * 4));
  /* a token spanning two regex elements: "hello" then " 1" */
  CHECK(tide_matcher_advance(m, hello) == TIDE_OK);
  CHECK(!tide_matcher_accepting(m));
  CHECK(tide_matcher_advance(m, sp1) == TIDE_OK);
  CHECK(tide_matcher_accepting(m) && !tide_matcher_finished(m));
  tide_matcher_mask(m, after);
  CHECK(bit(after, eos) && !bit(after, hello) && bit(after, find_token("23")));
  /* EOG when accepting is legal and changes nothing */
  CHECK(tide_matcher_advance(m, eos) == TIDE_OK && tide_matcher_accepting(m));
  /* the empty-piece or unknown bytes are never allowed: advance_bytes all or nothing */
  CHECK(tide_matcher_advance_bytes(m, "2x", 2) == TIDE_ERR_ARG);
  tide_matcher_mask(m, before);
  CHECK(!memcmp(before, after, (size_t)n_words * 4));
  tide_matcher_free(m);
  /* finished: a fixed string */
  CHECK(tide_regex_compile(env, "ab", 2, &c) == TIDE_OK);
  CHECK(tide_matcher_new(c, vi, &m) == TIDE_OK);
  CHECK(tide_matcher_advance_bytes(m, "ab", 2) == TIDE_OK && tide_matcher_finished(m));
  tide_matcher_mask(m, after);
  CHECK(count_bits(after) == 1 && bit(after, eos));
  tide_matcher_free(m);
  tide_constraint_free(c);
  free(before); free(after);
}

/* "é+" with the two bytes of é in separate byte tokens. */
static void test_utf8_split(void) {
  if (!setup()) SKIP("fixture vocab absent");
  tide_constraint *c;
  CHECK(tide_regex_compile(env, "\xc3\xa9+", 2 + 1, &c) == TIDE_OK);
  tide_matcher *m;
  CHECK(tide_matcher_new(c, vi, &m) == TIDE_OK);
  int32_t lead = find_token("\xc3"), cont = find_token("\xa9"), whole = find_token("\xc3\xa9");
  CHECK(lead >= 0 && cont >= 0);
  uint32_t *b = malloc((size_t)n_words * 4);
  tide_matcher_mask(m, b);
  CHECK(bit(b, lead) && !bit(b, cont));
  if (whole >= 0) CHECK(bit(b, whole));
  CHECK(tide_matcher_advance(m, lead) == TIDE_OK && !tide_matcher_accepting(m));
  tide_matcher_mask(m, b);
  CHECK(bit(b, cont) && !bit(b, lead) && count_bits(b) >= 1);
  CHECK(tide_matcher_advance(m, cont) == TIDE_OK && tide_matcher_accepting(m));
  tide_matcher_mask(m, b);
  CHECK(bit(b, lead) && bit(b, tide_tokenizer_eos(tok)));
  free(b);
  tide_matcher_free(m);
  tide_constraint_free(c);
}

static void test_clone(void) {
  if (!setup()) SKIP("fixture vocab absent");
  tide_constraint *c;
  CHECK(tide_regex_compile(env, "(ab|cd)+", 8, &c) == TIDE_OK);
  tide_matcher *m, *k;
  CHECK(tide_matcher_new(c, vi, &m) == TIDE_OK);
  CHECK(tide_matcher_advance_bytes(m, "a", 1) == TIDE_OK);
  CHECK(tide_matcher_clone(m, &k) == TIDE_OK);
  CHECK(tide_matcher_advance_bytes(k, "b", 1) == TIDE_OK && tide_matcher_accepting(k));
  CHECK(!tide_matcher_accepting(m));
  CHECK(tide_matcher_advance_bytes(m, "bcd", 3) == TIDE_OK && tide_matcher_accepting(m));
  CHECK(tide_matcher_advance_bytes(k, "x", 1) == TIDE_ERR_ARG && tide_matcher_accepting(k));
  /* free order does not matter */
  tide_constraint_free(c);
  tide_matcher_free(m);
  CHECK(tide_matcher_advance_bytes(k, "cd", 2) == TIDE_OK);
  tide_matcher_free(k);
  tide_matcher_free(NULL);
  tide_vocab_index_free(NULL);
  CHECK(tide_matcher_new(NULL, vi, &m) == TIDE_ERR_ARG && m == NULL);
}

static void test_no_alloc(void) {
  if (!setup()) SKIP("fixture vocab absent");
  tide_constraint *c;
  const char *re = "\"([^\"\\\\]|\\\\.)*\"";
  CHECK(tide_regex_compile(env, re, strlen(re), &c) == TIDE_OK);
  tide_constraint *cg = compile_generic(re);
  tide_matcher *m, *mg;
  CHECK(tide_matcher_new(c, vi, &m) == TIDE_OK && tide_matcher_new(cg, vi, &mg) == TIDE_OK);
  uint32_t *b = malloc((size_t)n_words * 4);
  int32_t q = find_token("\""), w = find_token("hello");
  long before = cnt.n_alloc;
  tide_matcher_mask(m, b);
  tide_matcher_mask(mg, b);
  CHECK(tide_matcher_advance(m, q) == TIDE_OK && tide_matcher_advance(mg, q) == TIDE_OK);
  tide_matcher_mask(m, b);
  CHECK(tide_matcher_advance(m, w) == TIDE_OK &&
        tide_matcher_advance(m, 0x7fffffff) == TIDE_ERR_ARG);
  CHECK(tide_matcher_advance_bytes(m, "x\\\"y", 4) == TIDE_OK);
  tide_mask_apply(b, (float[1]){ 0 }, 1);
  CHECKF(cnt.n_alloc == before, "%ld allocations in mask/advance", cnt.n_alloc - before);
  free(b);
  tide_matcher_free(m);
  tide_matcher_free(mg);
  tide_constraint_free(c);
  tide_constraint_free(cg);
}

static void test_mask_apply(void) {
  uint32_t bits[2] = { 0x5u, 0x1u };
  float l[40];
  for (int i = 0; i < 40; i++) l[i] = (float)i;
  tide_mask_apply(bits, l, 33);
  CHECK(l[0] == 0 && l[2] == 2 && isinf(l[1]) && isinf(l[31]) && l[32] == 32 && l[33] == 33);
}

/* Out of memory in index and matcher creation: clean errors, no leaks. */
static void test_oom(void) {
  if (!setup()) SKIP("fixture vocab absent");
  int ok = 0, bad = 0;
  for (long fail_at = 1; fail_at < 200 && !ok; fail_at++) {
    cnt.n_alloc = 0;
    cnt.fail_at = fail_at;
    size_t live = cnt.live;
    tide_vocab_index *v2 = NULL;
    tide_constraint *c = NULL;
    tide_matcher *m = NULL, *k = NULL;
    int st = tide_vocab_index_new(tok, &v2);
    if (!st) st = tide_regex_compile(env, "[a-z]+", 6, &c);
    if (!st) st = tide_matcher_new(c, v2, &m);
    if (!st) st = tide_matcher_clone(m, &k);
    if (!st) ok = 1;
    else if (st != TIDE_ERR_NOMEM) bad++;
    cnt.fail_at = 0;
    tide_matcher_free(k);
    tide_matcher_free(m);
    tide_constraint_free(c);
    tide_vocab_index_free(v2);
    if (cnt.live != live) bad++;
  }
  cnt.fail_at = 0;
  CHECKF(ok && !bad, "ok %d bad %d", ok, bad);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void bench_one(tide_matcher *m, uint32_t *b, const char *what) {
  enum { N = 2000 };
  static double t[N];
  for (int i = 0; i < N; i++) {
    struct timespec a, z;
    clock_gettime(CLOCK_MONOTONIC, &a);
    tide_matcher_mask(m, b);
    clock_gettime(CLOCK_MONOTONIC, &z);
    t[i] = (double)(z.tv_sec - a.tv_sec) * 1e6 + (double)(z.tv_nsec - a.tv_nsec) * 1e-3;
  }
  qsort(t, N, sizeof t[0], cmp_d);
  printf("bench mask %-28s median %7.1f us  p99 %7.1f us  (%d tokens allowed)\n", what, t[N / 2],
         t[N * 99 / 100], count_bits(b));
}

static void test_bench(void) {
  if (!setup()) SKIP("fixture vocab absent");
  const char *re = "\"([^\"\\\\\\x00-\\x1f]|\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4})*\"";
  tide_constraint *c, *cg = compile_generic(re);
  CHECK(tide_regex_compile(env, re, strlen(re), &c) == TIDE_OK);
  tide_matcher *m, *mg;
  CHECK(tide_matcher_new(c, vi, &m) == TIDE_OK && tide_matcher_new(cg, vi, &mg) == TIDE_OK);
  uint32_t *b = malloc((size_t)n_words * 4);
  bench_one(m, b, "json string, start");
  tide_matcher_advance_bytes(m, "\"ab", 3);
  tide_matcher_advance_bytes(mg, "\"ab", 3);
  bench_one(m, b, "json string, inside");
  bench_one(mg, b, "json string, inside (generic)");
  tide_matcher_advance_bytes(m, "\\u0", 3);
  bench_one(m, b, "json string, in \\u escape");
  free(b);
  tide_matcher_free(m);
  tide_matcher_free(mg);
  tide_constraint_free(c);
  tide_constraint_free(cg);
}

/* SentencePiece vocabulary: byte tokens, U+2581 as space, control tokens
** with empty pieces (never allowed). Same brute-force comparison. */
static void test_spm(void) {
  if (!setup()) SKIP("fixture vocab absent");
  char path[600];
  snprintf(path, sizeof path, "%s/vocab/ggml-vocab-llama-spm.gguf", test_fixtures());
  tide_gguf *g;
  if (tide_gguf_open(env, path, &g)) SKIP("llama-spm vocab absent");
  tide_tokenizer *t2;
  tide_vocab_index *v2;
  CHECK(tide_tokenizer_new(env, g, &t2) == TIDE_OK);
  tide_gguf_free(g);
  CHECK(tide_vocab_index_new(t2, &v2) == TIDE_OK);
  tide_tokenizer_free(t2); /* the index copied what it needs */
  tide_tokenizer *save_tok = tok;
  tide_vocab_index *save_vi = vi;
  int32_t save_n = n_vocab;
  tide_gguf_open(env, path, &g);
  tide_tokenizer_new(env, g, &tok);
  tide_gguf_free(g);
  vi = v2;
  n_vocab = tide_tokenizer_n_vocab(tok);
  n_words = (n_vocab + 31) / 32;
  const char *re = " ?[A-Z][a-z]+( [\\p{L}\\d]+){0,3}\\.";
  tide_constraint *c;
  tide_matcher *m;
  CHECK(tide_regex_compile(env, re, strlen(re), &c) == TIDE_OK);
  CHECK(tide_matcher_new(c, vi, &m) == TIDE_OK);
  uint32_t *m1 = malloc((size_t)n_words * 4), *m2 = malloc((size_t)n_words * 4);
  const char *steps[] = { " Hel", "lo w\xc3", "\xa9", "rld 42.", NULL };
  for (int k = 0;; k++) {
    tide_matcher_mask(m, m1);
    brute_mask(m, m2);
    char what[64];
    snprintf(what, sizeof what, "spm step %d", k);
    CHECK(masks_equal(m1, m2, what));
    for (int32_t id = 0; id < n_vocab; id++) {
      size_t len;
      tide_token_piece(tok, id, &len);
      if (!len && !tide_tokenizer_is_eog(tok, id) && bit(m1, id)) {
        CHECKF(0, "empty token %d allowed", id);
        break;
      }
    }
    if (!steps[k]) break;
    const char *st = steps[k];
    CHECKF(tide_matcher_advance_bytes(m, st, strlen(st)) == TIDE_OK, "%s", tide_env_errmsg(env));
  }
  CHECK(tide_matcher_accepting(m) && tide_matcher_finished(m));
  free(m1); free(m2);
  tide_matcher_free(m);
  tide_constraint_free(c);
  tide_tokenizer_free(tok);
  tide_vocab_index_free(v2);
  tok = save_tok;
  vi = save_vi;
  n_vocab = save_n;
  n_words = (n_vocab + 31) / 32;
}

static void test_teardown(void) {
  if (!vi) return;
  tide_vocab_index_free(vi);
  tide_tokenizer_free(tok);
  tide_env_free(env);
  CHECKF(cnt.live == 0, "%zu bytes leaked", cnt.live);
}

TEST_MAIN(test_mask_vs_brute, test_grammar_masks, test_advance, test_utf8_split, test_clone,
          test_no_alloc,
          test_mask_apply, test_oom, test_spm, test_bench, test_teardown)
