/*
** test_constrain_fuzz.c -- mutation fuzzing of the constraint compilers.
** Layer: tests (core). Valid regexes, the grammars in grammars/ (read from
** disk) and the JSON Schemas of the fixture (skipped when absent) are
** mutated (byte flips, inserted metacharacters, deletions, truncations,
** duplicated and repeated chunks) with a fixed seed and compiled through the
** public API. Every compile must return TIDE_OK or an error status with a
** non-empty message -- never crash or hang (a SIGALRM watchdog prints the
** input that hung). What compiles gets a matcher over a tiny byte-level BPE
** vocabulary (256 byte tokens, a few merges, <|endoftext|>) built in memory
** with tide_gguf_writer, and a few steps that check mask/advance agreement:
** an allowed token advances, a forbidden one fails and changes nothing, EOG
** is allowed exactly when the matcher accepts. Prints the counts (compiled /
** rejected) and the slowest compile. Smaller counts under ASan; TIDE_FUZZ_N
** sets the mutations per kind.
*/
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "test.h"
#include "tide.h"

#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif
#ifndef FUZZ_ASAN
#define FUZZ_ASAN 0
#endif

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return n ? (uint32_t)((rng >> 11) % n) : 0;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- watchdog */

/* The input being compiled, for the watchdog to print if it hangs. */
static char cur_kind[16];
static const char *cur_src;
static size_t cur_len;

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "\nFAIL watchdog: a compile or matcher step hung; input follows\n";
  if (write(2, msg, sizeof msg - 1) < 0) _exit(2);
  if (write(2, cur_kind, strlen(cur_kind)) < 0) _exit(2);
  if (write(2, ": ", 2) < 0) _exit(2);
  if (cur_src && write(2, cur_src, cur_len > 4000 ? 4000 : cur_len) < 0) _exit(2);
  if (write(2, "\n", 1) < 0) _exit(2);
  _exit(2);
}

/* ---------------------------------------------------------------- vocabulary */

/* GPT-2's bytes_to_unicode for byte b, as UTF-8 into out; returns its length. */
static int byte_char(int b, char *out) {
  int cp = b, n = 0;
  if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
    for (int c = 0; c < b; c++)
      if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) n++;
    cp = 256 + n;
  }
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  out[0] = (char)(0xC0 | (cp >> 6));
  out[1] = (char)(0x80 | (cp & 0x3F));
  return 2;
}

/* byte string -> its GPT-2 alphabet spelling */
static void spell(const char *s, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) o += (size_t)byte_char((unsigned char)s[i], out + o);
  out[o] = 0;
}

enum { MAX_TOK = 512 };
static char *tok_str[MAX_TOK], *merge_str[MAX_TOK];
static int n_tok, n_merge;

static int has_token(const char *sp) {
  for (int i = 0; i < n_tok; i++)
    if (!strcmp(tok_str[i], sp)) return 1;
  return 0;
}

/* Adds the multi-byte token s (and every prefix of it as an intermediate
** token) with its merges "prefix lastbyte". */
static void add_word(const char *s) {
  size_t n = strlen(s);
  for (size_t k = 2; k <= n && n_tok < MAX_TOK - 2; k++) {
    char whole[64], left[64], right[8], m[80];
    spell(s, k, whole);
    if (has_token(whole)) continue;
    spell(s, k - 1, left);
    spell(s + k - 1, 1, right);
    snprintf(m, sizeof m, "%s %s", left, right);
    tok_str[n_tok++] = strdup(whole);
    merge_str[n_merge++] = strdup(m);
  }
}

static tide_env *env;
static tide_tokenizer *tok;
static tide_vocab_index *vi;
static int32_t n_vocab, eog;
static void *gguf_bytes;

/* Writes the vocabulary with tide_gguf_writer, reads the file back into
** memory and opens it from there. */
static int vocab_setup(void) {
  char s[3] = {0};
  for (int b = 0; b < 256; b++) {
    memset(s, 0, sizeof s);
    byte_char(b, s);
    tok_str[n_tok++] = strdup(s);
  }
  static const char *const words[] = {
    "ab", "abc", "ing", "the", " the", "{\"", "\":", "\",", "\"}", "[]", "[\"", "\"]", "},", "12",
    "2024-", "00", "true", "false", "null", "::=", "\\\"", "\\u", "\xc3\xa9", "\xe2\x82\xac",
    "\xf0\x9f\x98\x80", " -", "- ", "\n", "ab\n", "0x", ".5", "e+", NULL,
  };
  for (int i = 0; words[i]; i++) add_word(words[i]);
  tok_str[n_tok++] = strdup("<|endoftext|>");
  n_vocab = n_tok;
  eog = n_tok - 1;

  char path[] = "/tmp/tide_fuzz_vocab_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  close(fd);
  tide_gguf_writer *w;
  int st = tide_gguf_writer_new(env, &w);
  if (!st) st = tide_gguf_writer_set_str(w, "general.architecture", "llama", 5);
  if (!st) st = tide_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", 4);
  if (!st) st = tide_gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2", 5);
  if (!st) st = tide_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok_str, NULL, n_tok);
  if (!st) st = tide_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merge_str, NULL, n_merge);
  int32_t tt[MAX_TOK];
  for (int i = 0; i < n_tok; i++) tt[i] = i == eog ? TIDE_TOKEN_CONTROL : TIDE_TOKEN_NORMAL;
  if (!st) st = tide_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", TIDE_GGUF_INT32, tt, n_tok);
  if (!st) st = tide_gguf_writer_set_int(w, "tokenizer.ggml.eos_token_id", TIDE_GGUF_UINT32, eog);
  if (!st) st = tide_gguf_writer_set_int(w, "tokenizer.ggml.bos_token_id", TIDE_GGUF_UINT32, eog);
  if (!st) st = tide_gguf_writer_write(w, path, 3);
  tide_gguf_writer_free(w);
  CHECKF(st == TIDE_OK, "writing the vocabulary: %s", tide_env_errmsg(env));
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  gguf_bytes = malloc((size_t)size);
  size_t got = fread(gguf_bytes, 1, (size_t)size, f);
  fclose(f);
  unlink(path);
  if (st || got != (size_t)size) return 0;
  tide_gguf *g;
  st = tide_gguf_open_memory(env, gguf_bytes, (size_t)size, &g);
  CHECKF(st == TIDE_OK, "opening the vocabulary: %s", tide_env_errmsg(env));
  if (st) return 0;
  st = tide_tokenizer_new(env, g, &tok);
  tide_gguf_free(g);
  CHECKF(st == TIDE_OK, "tokenizer: %s", tide_env_errmsg(env));
  if (st) return 0;
  CHECK(tide_tokenizer_n_vocab(tok) == n_vocab);
  st = tide_vocab_index_new(tok, &vi);
  CHECKF(st == TIDE_OK, "vocab index: %s", tide_env_errmsg(env));
  return st == TIDE_OK;
}

static void vocab_teardown(void) {
  tide_vocab_index_free(vi);
  tide_tokenizer_free(tok);
  free(gguf_bytes);
  for (int i = 0; i < n_tok; i++) free(tok_str[i]);
  for (int i = 0; i < n_merge; i++) free(merge_str[i]);
  vi = NULL; tok = NULL; gguf_bytes = NULL; n_tok = n_merge = 0;
}

/* ---------------------------------------------------------------- mutation */

typedef struct { char *p; size_t n, cap; } buf;

static void buf_reserve(buf *b, size_t n) {
  if (n + 1 <= b->cap) return;
  b->cap = (n + 1) * 2;
  b->p = realloc(b->p, b->cap);
}

static const char SPECIAL[] = "()[]{}*+?|\\\"^$.-,:#=~<>!0123456789\n \t";

enum { MAX_MUT_LEN = 1 << 16 };

static void mutate_once(buf *b) {
  size_t i = rnd((uint32_t)b->n + 1);
  switch (rnd(10)) {
  case 0: /* flip a bit */
    if (b->n) b->p[i % b->n] ^= (char)(1u << rnd(8));
    break;
  case 1: case 2: { /* insert 1-3 special characters */
    int k = 1 + (int)rnd(3);
    buf_reserve(b, b->n + (size_t)k);
    memmove(b->p + i + k, b->p + i, b->n - i);
    for (int j = 0; j < k; j++) b->p[i + (size_t)j] = SPECIAL[rnd(sizeof SPECIAL - 1)];
    b->n += (size_t)k;
    break;
  }
  case 3: { /* insert a random byte (incl. NUL and non-UTF-8) */
    buf_reserve(b, b->n + 1);
    memmove(b->p + i + 1, b->p + i, b->n - i);
    b->p[i] = (char)rnd(256);
    b->n++;
    break;
  }
  case 4: { /* delete a range */
    if (!b->n) break;
    size_t at = i % b->n, k = 1 + rnd(8);
    if (at + k > b->n) k = b->n - at;
    memmove(b->p + at, b->p + at + k, b->n - at - k);
    b->n -= k;
    break;
  }
  case 5: /* truncate */
    b->n = i;
    break;
  case 6: case 7: { /* duplicate a chunk elsewhere, up to 4 times in a row */
    if (!b->n) break;
    size_t at = rnd((uint32_t)b->n), k = 1 + rnd(24), times = 1 + rnd(4);
    if (at + k > b->n) k = b->n - at;
    if (b->n + k * times > MAX_MUT_LEN) break;
    char tmp[32];
    memcpy(tmp, b->p + at, k);
    buf_reserve(b, b->n + k * times);
    memmove(b->p + i + k * times, b->p + i, b->n - i);
    for (size_t t = 0; t < times; t++) memcpy(b->p + i + t * k, tmp, k);
    b->n += k * times;
    break;
  }
  case 8: case 9: { /* a quantifier after a closing quote, bracket or paren */
    static const char *const q[] = { "*", "+", "?", "{0}", "{0,0}", "{1,1}", "{2,}", "{1,3}", "{0,2}*", "{3}" };
    size_t at = i;
    while (at < b->n && !strchr("\"])}", b->p[at])) at++;
    if (at >= b->n) break;
    const char *ins = q[rnd(sizeof q / sizeof q[0])];
    size_t k = strlen(ins);
    buf_reserve(b, b->n + k);
    memmove(b->p + at + 1 + k, b->p + at + 1, b->n - at - 1);
    memcpy(b->p + at + 1, ins, k);
    b->n += k;
    break;
  }
  }
}

/* ---------------------------------------------------------------- one case */

enum { KIND_REGEX, KIND_GRAMMAR, KIND_SCHEMA, N_KINDS };
static const char *const KIND_NAME[N_KINDS] = { "regex", "grammar", "json schema" };

typedef struct {
  int compiled, rejected, by_status[16], dead_start, dead_later, steps;
  double slowest, slowest_step, total;
  char *slowest_src;
  size_t slowest_len;
} stats;

/* Prints s as C-escaped text, at most max bytes. */
static void print_escaped(const char *s, size_t n, size_t max) {
  for (size_t i = 0; i < n && i < max; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '\n') printf("\\n");
    else if (ch == '"' || ch == '\\') printf("\\%c", ch);
    else if (ch < 0x20 || ch >= 0x7f) printf("\\x%02x", ch);
    else putchar(ch);
  }
  if (n > max) printf("... (%zu bytes)", n);
}

static int bit(const uint32_t *bits, int32_t id) { return bits[id >> 5] >> (id & 31) & 1; }

/* A few mask/advance steps from the start of c. */
static void walk(tide_constraint *c, stats *s, int kind, const char *src, size_t len) {
  tide_matcher *m;
  int st = tide_matcher_new(c, vi, &m);
  CHECKF(st == TIDE_OK, "matcher_new: %s", tide_env_errmsg(env));
  if (st) return;
  size_t words = ((size_t)n_vocab + 31) / 32;
  uint32_t bits[MAX_TOK / 32 + 1], again[MAX_TOK / 32 + 1];
  for (int step = 0; step < 6; step++) {
    double t0 = now_s();
    tide_matcher_mask(m, bits);
    double dt = now_s() - t0;
    if (dt > s->slowest_step) s->slowest_step = dt;
    s->steps++;
    int acc = tide_matcher_accepting(m);
    CHECKF(bit(bits, eog) == (acc != 0), "%s: EOG allowed %d but accepting %d: %.*s", KIND_NAME[kind],
           bit(bits, eog), acc, (int)(len > 200 ? 200 : len), src);
    int32_t allowed[MAX_TOK], forbidden[MAX_TOK], na = 0, nf = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
      if (id == eog) continue;
      if (bit(bits, id)) allowed[na++] = id; else forbidden[nf++] = id;
    }
    if (!na) {
      if (!acc) {
        if (step == 0) {
          if (!s->dead_start++) {
            printf("  %s: first input whose language is empty (nothing allowed at the start): \"", KIND_NAME[kind]);
            print_escaped(src, len, 160);
            printf("\"\n");
          }
        } else s->dead_later++;
      }
      break;
    }
    if (nf) { /* a forbidden token fails and leaves the state as it was */
      int32_t id = forbidden[rnd((uint32_t)nf)];
      CHECKF(tide_matcher_advance(m, id) != TIDE_OK, "%s: forbidden token %d advanced", KIND_NAME[kind], id);
      tide_matcher_mask(m, again);
      CHECKF(!memcmp(bits, again, words * 4), "%s: a failed advance changed the mask", KIND_NAME[kind]);
    }
    if (step == 2) { /* a clone continues on its own */
      tide_matcher *k;
      CHECK(tide_matcher_clone(m, &k) == TIDE_OK);
      if (k) {
        tide_matcher_mask(k, again);
        CHECKF(!memcmp(bits, again, words * 4), "%s: a clone has another mask", KIND_NAME[kind]);
        tide_matcher_advance(k, allowed[rnd((uint32_t)na)]);
        tide_matcher_free(k);
      }
    }
    int32_t id = allowed[rnd((uint32_t)na)];
    st = tide_matcher_advance(m, id);
    CHECKF(st == TIDE_OK, "%s: allowed token %d did not advance: %s", KIND_NAME[kind], id, tide_env_errmsg(env));
    if (st) break;
  }
  tide_matcher_free(m);
}

static int compile(int kind, const char *src, size_t len, tide_constraint **c) {
  switch (kind) {
  case KIND_REGEX: return tide_regex_compile(env, src, len, c);
  case KIND_GRAMMAR: return tide_grammar_compile(env, src, len, NULL, c);
  default: return tide_json_schema_compile(env, src, len, c);
  }
}

static void one_case(int kind, const char *src, size_t len, stats *s) {
  snprintf(cur_kind, sizeof cur_kind, "%s", KIND_NAME[kind]);
  cur_src = src;
  cur_len = len;
  alarm(FUZZ_ASAN ? 120 : 30);
  tide_constraint *c = (tide_constraint *)1;
  double t0 = now_s();
  int st = compile(kind, src, len, &c);
  double dt = now_s() - t0;
  s->total += dt;
  if (dt > s->slowest) {
    s->slowest = dt;
    free(s->slowest_src);
    s->slowest_src = malloc(len + 1);
    memcpy(s->slowest_src, src, len);
    s->slowest_len = len;
  }
  if (st == TIDE_OK) {
    s->compiled++;
    CHECK(c != NULL && c != (tide_constraint *)1);
    if (c && c != (tide_constraint *)1) {
      walk(c, s, kind, src, len);
      tide_constraint_free(c);
    }
  } else {
    s->rejected++;
    s->by_status[st & 15]++;
    const char *msg = tide_env_errmsg(env);
    CHECKF(c == NULL, "%s: failed compile left a handle", KIND_NAME[kind]);
    CHECKF(msg && msg[0], "%s: status %d with an empty message: %.*s", KIND_NAME[kind], st,
           (int)(len > 200 ? 200 : len), src);
  }
  alarm(0);
  cur_src = NULL;
}

static int n_mutations(void) {
  const char *e = getenv("TIDE_FUZZ_N");
  if (e && atoi(e) > 0) return atoi(e);
  return FUZZ_ASAN ? 700 : 3000;
}

/* Seeds -> n mutated cases (1-4 mutations each), plus the seeds themselves. */
static void fuzz(int kind, char **seeds, size_t *lens, int n_seeds) {
  stats s = { 0 };
  buf b = { 0 };
  for (int i = 0; i < n_seeds; i++) {
    int before = s.compiled;
    one_case(kind, seeds[i], lens[i], &s);
    CHECKF(s.compiled == before + 1, "%s seed %d does not compile: %s", KIND_NAME[kind], i, tide_env_errmsg(env));
  }
  int seed_compiled = s.compiled;
  int n = n_mutations();
  for (int i = 0; i < n; i++) {
    int k = (int)rnd((uint32_t)n_seeds);
    b.n = 0;
    buf_reserve(&b, lens[k]);
    memcpy(b.p, seeds[k], lens[k]);
    b.n = lens[k];
    int muts = 1 + (int)rnd(4);
    for (int j = 0; j < muts; j++) mutate_once(&b);
    one_case(kind, b.p, b.n, &s);
  }
  printf("%s fuzz: %d seeds (%d compiled), %d mutants: compiled %d / rejected %d "
         "(format %d, unsupported %d, arg %d, other %d); %d matcher steps, dead at start %d, "
         "dead after progress %d; compile total %.2f s, slowest %.1f ms, slowest mask %.1f ms\n",
         KIND_NAME[kind], n_seeds, seed_compiled, n, s.compiled - seed_compiled,
         s.rejected, s.by_status[TIDE_ERR_FORMAT], s.by_status[TIDE_ERR_UNSUPPORTED],
         s.by_status[TIDE_ERR_ARG],
         s.rejected - s.by_status[TIDE_ERR_FORMAT] - s.by_status[TIDE_ERR_UNSUPPORTED] - s.by_status[TIDE_ERR_ARG],
         s.steps, s.dead_start, s.dead_later, s.total, s.slowest * 1e3, s.slowest_step * 1e3);
  printf("  slowest %s input: \"", KIND_NAME[kind]);
  print_escaped(s.slowest_src, s.slowest_len, 160);
  printf("\"\n");
  double limit = FUZZ_ASAN ? 10.0 : 1.0;
  CHECKF(s.slowest <= limit, "%s: a compile took %.2f s (limit %.0f s)", KIND_NAME[kind], s.slowest, limit);
  /* A regex DFA keeps only states that can still reach a match. */
  if (kind == KIND_REGEX) CHECKF(s.dead_later == 0, "regex: %d matchers dead-ended after progress", s.dead_later);
  free(s.slowest_src);
  free(b.p);
}

/* ---------------------------------------------------------------- seeds */

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

static void test_regex_fuzz(void) {
  static const char *const seeds[] = {
    "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])",
    "[a-z0-9._%+-]{1,12}@[a-z0-9-]{1,10}(\\.[a-z]{2,4}){1,2}",
    "(\\+1 )?\\(?[0-9]{3}\\)?[ .-]?[0-9]{3}[ .-][0-9]{4}",
    "\"([^\"\\\\\\x00-\\x1f]|\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4})*\"",
    "[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
    "[\\p{L}\\p{N}]{1,3}( \\p{Lu}+)?",
    "(?:yes|no|maybe)",
    "^a(b|c)*d?$",
    "(a|ab)(c|bcd)(d*)",
    "[^\\s\\d]+\\w*\\S",
    "(\\d+(\\.\\d*)?|\\.\\d+)([eE][-+]?\\d+)?",
    "hello|w.rld|(?:x|y)+?",
    "(x{2,3}){1,4}y{0}z{1,}",
    "\\x41\\u00e9\\t[\\x{1F600}-\\x{1F64F}]",
    "[[:alpha:]]+",
    "(a*)*b",
  };
  int n = (int)(sizeof seeds / sizeof seeds[0]);
  char *s[32];
  size_t l[32];
  for (int i = 0; i < n; i++) { s[i] = (char *)seeds[i]; l[i] = strlen(seeds[i]); }
  fuzz(KIND_REGEX, s, l, n);
}

static void test_grammar_fuzz(void) {
  char *s[32];
  size_t l[32];
  int n = 0;
  DIR *d = opendir("grammars");
  CHECKF(d != NULL, "cannot open grammars/");
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) && n < 24) {
    size_t k = strlen(e->d_name);
    if (k < 6 || strcmp(e->d_name + k - 5, ".gbnf")) continue;
    char path[300];
    snprintf(path, sizeof path, "grammars/%s", e->d_name);
    if ((s[n] = slurp(path, &l[n]))) n++;
  }
  closedir(d);
  CHECKF(n >= 6, "only %d grammars in grammars/", n);
  static const char *const extra[] = {
    "root ::= ( \"a\" ( \"b\" | [c-e]{1,3} )* )+ \"!\"",
    "root ::= expr\nexpr ::= \"(\" op ( \" \" expr ){1,3} \")\" | [0-9]+\nop ::= \"+\" | \"*\"",
    "root ::= x{2,5} | [^\\u0000-\\u007f]*\nx ::= x \"y\" | \"z\"",
  };
  for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
    l[n] = strlen(extra[i]);
    s[n] = malloc(l[n] + 1);
    memcpy(s[n], extra[i], l[n] + 1);
    n++;
  }
  fuzz(KIND_GRAMMAR, s, l, n);
  for (int i = 0; i < n; i++) free(s[i]);
}

/* The "schema" member of each fixture line, as text: between `"schema": `
** and `, "tests": [`. */
static void test_schema_fuzz(void) {
  const char *fx = test_fixtures();
  if (!fx) SKIP("no fixtures folder");
  char path[600];
  snprintf(path, sizeof path, "%s/jsonschema/schemas.jsonl", fx);
  size_t len;
  char *all = slurp(path, &len);
  if (!all) SKIP("jsonschema/schemas.jsonl absent");
  enum { MAX_SEEDS = 400 };
  char **s = malloc(MAX_SEEDS * sizeof *s);
  size_t *l = malloc(MAX_SEEDS * sizeof *l);
  int n = 0;
  for (char *line = all; line && *line && n < MAX_SEEDS;) {
    char *end = strchr(line, '\n');
    if (end) *end = 0;
    char *a = strstr(line, "\"schema\": "), *b = strstr(line, ", \"tests\": [");
    if (a && b && b > a) {
      a += 10;
      tide_constraint *c;
      /* seeds are the schemas that compile, so mutants start from valid ones */
      if (tide_json_schema_compile(env, a, (size_t)(b - a), &c) == TIDE_OK) {
        tide_constraint_free(c);
        s[n] = a;
        l[n] = (size_t)(b - a);
        n++;
      }
    }
    line = end ? end + 1 : NULL;
  }
  CHECKF(n > 100, "only %d fixture schemas compile", n);
  fuzz(KIND_SCHEMA, s, l, n);
  free(s);
  free(l);
  free(all);
}

static void test_setup(void) {
  signal(SIGALRM, on_alarm);
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  CHECK(vocab_setup());
  printf("fuzz vocabulary: %d tokens (%d merges)%s\n", n_vocab, n_merge, FUZZ_ASAN ? ", ASan counts" : "");
}

static void test_teardown(void) {
  vocab_teardown();
  tide_env_free(env);
  env = NULL;
}

TEST_MAIN(test_setup, test_regex_fuzz, test_grammar_fuzz, test_schema_fuzz, test_teardown)
