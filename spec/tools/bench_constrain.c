/*
** bench_constrain.c -- mask and compile times of constraints on GPT-2's
** 50k-token vocabulary.
** Layer: tools (public API only). For each case a realistic generation is
** replayed: the sample text is tokenized, and at each token the matcher's
** mask is computed (timed) and the token advanced. The run is repeated
** after one untimed warm-up until enough masks are timed; median, p99 and
** max per mask are printed as a table. Cases: (i) a JSON-string regex,
** (ii) grammars/json.gbnf on a sample document, (iii) the JSON schemas of
** the fixture set (../shared/fixtures/jsonschema/schemas.jsonl): compile
** time (median over the compilable schemas) and masks over the first
** valid instance of each compiled schema, serialized compactly.
** Usage: bench_constrain [fixtures_dir]   (default $TIDE_FIXTURES or
** ../shared/fixtures; run from the project root). Skips with a message
** when the vocabulary is absent.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tide.h"

#define MIN_MASKS 3000  /* timed masks per case (whole runs repeated) */
#define MAX_TOKENS 4096 /* tokens of one sample */

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + 1e-3 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct {
  double *t;
  size_t n, cap;
} times;

static void times_add(times *s, double v) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 1024;
    s->t = realloc(s->t, s->cap * sizeof(double));
    if (!s->t) {
      fprintf(stderr, "bench_constrain: out of memory\n");
      exit(1);
    }
  }
  s->t[s->n++] = v;
}

/* Sorts; the q-quantile (0..1). */
static double quantile(times *s, double q) {
  if (!s->n) return 0;
  qsort(s->t, s->n, sizeof(double), cmp_d);
  size_t k = (size_t)(q * (double)(s->n - 1) + 0.5);
  return s->t[k];
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *p = malloc((size_t)n + 1);
  if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
    free(p);
    p = NULL;
  }
  fclose(f);
  if (p) {
    p[n] = 0;
    *len = (size_t)n;
  }
  return p;
}

typedef struct {
  tide_tokenizer *tok;
  tide_vocab_index *vi;
  uint32_t *bits;
} bench;

/* One generation of text under c: mask (timed into s when s) then advance,
** token by token. Returns the number of tokens advanced, -1 if the text is
** not accepted (a token not in the mask, or an advance error). */
static int replay(bench *b, tide_constraint *c, const char *text, size_t n, times *s) {
  static int32_t ids[MAX_TOKENS];
  int64_t nt = 0;
  if (tide_tokenize(b->tok, text, n, 0, 0, ids, MAX_TOKENS, &nt) != TIDE_OK) return -1;
  tide_matcher *m;
  if (tide_matcher_new(c, b->vi, &m) != TIDE_OK) return -1;
  int ok = 1;
  for (int64_t i = 0; i < nt && ok; i++) {
    double t0 = now_us();
    tide_matcher_mask(m, b->bits);
    double t1 = now_us();
    if (s) times_add(s, t1 - t0);
    ok = (b->bits[ids[i] >> 5] >> (ids[i] & 31) & 1) && tide_matcher_advance(m, ids[i]) == TIDE_OK;
  }
  /* the final mask (end of generation allowed) counts too */
  if (ok) {
    double t0 = now_us();
    tide_matcher_mask(m, b->bits);
    if (s) times_add(s, now_us() - t0);
    ok = tide_matcher_accepting(m);
  }
  tide_matcher_free(m);
  return ok ? (int)nt : -1;
}

static void row(const char *what, times *s, double compile_ms) {
  double med = quantile(s, 0.5), p99 = quantile(s, 0.99), mx = s->n ? s->t[s->n - 1] : 0;
  printf("| %-34s | %6zu | %9.1f | %9.1f | %9.1f | ", what, s->n, med, p99, mx);
  if (compile_ms >= 0)
    printf("%9.3f |\n", compile_ms);
  else
    printf("%9s |\n", "-");
}

/* Runs text under c (warm-up, then repeats until MIN_MASKS timed masks). */
static int run_case(bench *b, tide_constraint *c, const char *text, times *s) {
  size_t n = strlen(text);
  if (replay(b, c, text, n, NULL) < 0) return -1;
  while (s->n < MIN_MASKS)
    if (replay(b, c, text, n, s) < 0) return -1;
  return 0;
}

/* ---------------------------------------------------------------- schemas */

/* End of the JSON value starting at p (strings, nesting); NULL if malformed. */
static const char *value_end(const char *p) {
  int depth = 0;
  for (; *p; p++) {
    if (*p == '"') {
      for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1]) p++;
      if (!*p) return NULL;
      if (!depth) return p + 1;
    } else if (*p == '{' || *p == '[')
      depth++;
    else if (*p == '}' || *p == ']') {
      if (--depth == 0) return p + 1;
      if (depth < 0) return NULL;
    } else if (!depth && (*p == ',' || *p == '}' || *p == ']'))
      return p;
    else if (!depth && (p[1] == ',' || p[1] == '}' || p[1] == ']' || !p[1]))
      return p + 1;
  }
  return NULL;
}

/* Copies JSON text dropping insignificant whitespace (compact form). */
static char *compact(const char *a, const char *e) {
  char *out = malloc((size_t)(e - a) + 1), *o = out;
  if (!out) return NULL;
  for (const char *p = a; p < e; p++) {
    if (*p == '"') {
      *o++ = *p++;
      for (; p < e && *p != '"'; p++) {
        if (*p == '\\') *o++ = *p++;
        *o++ = *p;
      }
      *o++ = '"';
    } else if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r')
      *o++ = *p;
  }
  *o = 0;
  return out;
}

/* The value after "key": at or after p (p .. end), as [*a, *e). */
static int find_value(const char *p, const char *key, const char **a, const char **e) {
  const char *k = strstr(p, key);
  if (!k) return 0;
  k += strlen(key);
  while (*k == ' ' || *k == ':') k++;
  *a = k;
  *e = value_end(k);
  return *e != NULL;
}

typedef struct {
  char *schema, *instance;
} sample;

/* Schema text and first valid instance of each fixture line. */
static int load_schemas(const char *path, sample **out) {
  size_t len;
  char *txt = slurp(path, &len);
  if (!txt) return -1;
  int n = 0, cap = 0;
  sample *v = NULL;
  for (char *line = txt; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    const char *a, *e, *ta, *te;
    if (find_value(line, "\"schema\"", &a, &e) && find_value(e, "\"tests\"", &ta, &te)) {
      if (n == cap) {
        cap = cap ? cap * 2 : 512;
        v = realloc(v, (size_t)cap * sizeof *v);
      }
      v[n].schema = compact(a, e);
      v[n].instance = NULL;
      for (const char *t = ta; (t = strstr(t, "\"valid\"")) && t < te;) {
        const char *va, *ve, *da, *de;
        if (!find_value(t, "\"valid\"", &va, &ve)) break;
        if (!strncmp(va, "true", 4) && find_value(ve, "\"data\"", &da, &de)) {
          v[n].instance = compact(da, de);
          break;
        }
        t = ve;
      }
      n++;
    }
    line = nl ? nl + 1 : NULL;
  }
  free(txt);
  *out = v;
  return n;
}

static void bench_schemas(bench *b, tide_env *env, const char *fx) {
  char path[600];
  snprintf(path, sizeof path, "%s/jsonschema/schemas.jsonl", fx);
  sample *v = NULL;
  int n = load_schemas(path, &v);
  if (n < 0) {
    printf("skip json schemas: %s absent\n", path);
    return;
  }
  times ct = {0}, mt = {0};
  int compiled = 0, replayed = 0;
  for (int pass = 0; pass < 2; pass++) /* pass 0: warm-up */
    for (int i = 0; i < n; i++) {
      tide_constraint *c;
      double t0 = now_us();
      int st = tide_json_schema_compile(env, v[i].schema, strlen(v[i].schema), &c);
      double t1 = now_us();
      if (st) continue;
      if (pass) {
        times_add(&ct, (t1 - t0) * 1e-3);
        compiled++;
        if (v[i].instance && replay(b, c, v[i].instance, strlen(v[i].instance), &mt) >= 0)
          replayed++;
      }
      tide_constraint_free(c);
    }
  double cmed = quantile(&ct, 0.5), cp99 = quantile(&ct, 0.99);
  char what[64];
  snprintf(what, sizeof what, "json schema (%d instances)", replayed);
  row(what, &mt, cmed);
  printf("\njson schemas: %d of %d compiled; compile median %.3f ms, p99 %.3f ms, max %.3f ms\n",
         compiled, n, cmed, cp99, ct.n ? ct.t[ct.n - 1] : 0);
  for (int i = 0; i < n; i++) {
    free(v[i].schema);
    free(v[i].instance);
  }
  free(v);
  free(ct.t);
  free(mt.t);
}

/* ---------------------------------------------------------------- main */

static const char JSON_DOC[] =
    "{\"id\": 12345, \"name\": \"caf\xc3\xa9 au lait\", \"tags\": [\"a\", \"bb\", \"ccc\"],\n"
    "  \"nested\": {\"x\": -1.25e-3, \"y\": [true, false, null], \"z\": {\"deep\": [[1], [2, "
    "[3]]]}},\n"
    "  \"text\": \"The quick brown fox jumps over the lazy dog. \\n\\t\\u00e9 Pack my box with "
    "five dozen liquor jugs; how vexingly quick daft zebras jump!\",\n"
    "  \"items\": [{\"sku\": \"A-100\", \"qty\": 2, \"price\": 9.99}, {\"sku\": \"B-7\", \"qty\": "
    "10, "
    "\"price\": 0.5}],\n"
    "  \"empty\": {}, \"none\": [], \"url\": \"https://example.com/path?q=1&r=2\"}";

static const char STRING_RE[] =
    "\"([^\"\\\\\\x00-\\x1f]|\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4})*\"";
static const char STRING_DOC[] =
    "\"The quick brown fox jumps over the lazy dog. Caf\xc3\xa9 \\u00e9\\n -- "
    "She said \\\"hello\\\" twice, then left at 10:45 for the station.\"";

int main(int argc, char **argv) {
  const char *fx = argc > 1 ? argv[1] : getenv("TIDE_FIXTURES");
  if (!fx) fx = "../shared/fixtures";
  char path[600];
  snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", fx);
  FILE *f = fopen(path, "rb");
  if (!f) {
    printf("skip bench_constrain: %s absent\n", path);
    return 0;
  }
  fclose(f);
  tide_env *env;
  tide_gguf *g;
  bench b = {0};
  if (tide_env_new(&env, NULL, NULL) || tide_gguf_open(env, path, &g)) return 1;
  if (tide_tokenizer_new(env, g, &b.tok) || tide_vocab_index_new(b.tok, &b.vi)) {
    fprintf(stderr, "bench_constrain: %s\n", tide_env_errmsg(env));
    return 1;
  }
  tide_gguf_free(g);
  int32_t nv = tide_tokenizer_n_vocab(b.tok);
  b.bits = malloc(((size_t)nv + 31) / 32 * sizeof(uint32_t));
  printf("constraint masks on %s (%d tokens)\n\n", path, (int)nv);
  printf("| %-34s | %6s | %9s | %9s | %9s | %9s |\n", "case", "masks", "median us", "p99 us",
         "max us", "compile ms");
  printf("|%s|%s|%s|%s|%s|%s|\n", "------------------------------------", "--------", "-----------",
         "-----------", "-----------", "-----------");

  tide_constraint *c;
  times s = {0};
  double t0 = now_us();
  if (tide_regex_compile(env, STRING_RE, strlen(STRING_RE), &c) == TIDE_OK) {
    double ms = (now_us() - t0) * 1e-3;
    if (run_case(&b, c, STRING_DOC, &s))
      printf("regex case: sample rejected\n");
    else
      row("regex: JSON string", &s, ms);
    tide_constraint_free(c);
  }
  size_t len;
  char *src = slurp("grammars/json.gbnf", &len);
  if (!src)
    printf("skip json.gbnf: run from the project root\n");
  else {
    double best = 1e30;
    for (int r = 0; r < 20; r++) { /* compile time: best of 20 */
      t0 = now_us();
      if (tide_grammar_compile(env, src, len, NULL, &c) != TIDE_OK) break;
      double ms = (now_us() - t0) * 1e-3;
      if (ms < best) best = ms;
      tide_constraint_free(c);
    }
    if (tide_grammar_compile(env, src, len, NULL, &c) == TIDE_OK) {
      s.n = 0;
      if (run_case(&b, c, JSON_DOC, &s))
        printf("json.gbnf case: sample rejected\n");
      else
        row("grammar: json.gbnf, sample document", &s, best);
      tide_constraint_free(c);
    } else
      printf("json.gbnf: %s\n", tide_env_errmsg(env));
    free(src);
  }
  bench_schemas(&b, env, fx);
  printf("\n(bench_constrain; median/p99/max per mask in microseconds, after a warm-up run)\n");
  free(s.t);
  free(b.bits);
  tide_vocab_index_free(b.vi);
  tide_tokenizer_free(b.tok);
  tide_env_free(env);
  return 0;
}
