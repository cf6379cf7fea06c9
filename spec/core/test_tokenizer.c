/*
** test_tokenizer.c -- tokenizers: llama.cpp's conformance vectors for the
** SentencePiece and GPT-2 vocabularies, detokenization (whole and
** streaming), special tokens, the sizing protocol, bad metadata and
** allocation failures.
** Layer: tests (C unit tests of core/).
*/
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "tide.h"

/* ---------------------------------------------------------------- helpers */

static char *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)sz + 1);
  if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
  fclose(f);
  if (b) { b[sz] = 0; *n = (size_t)sz; }
  return b;
}

static tide_tokenizer *open_vocab(tide_env *env, const char *name) {
  const char *fx = test_fixtures();
  if (!fx) return NULL;
  char path[600];
  snprintf(path, sizeof path, "%s/vocab/%s", fx, name);
  tide_gguf *g = NULL;
  tide_tokenizer *tok = NULL;
  if (tide_gguf_open(env, path, &g)) return NULL;
  int st = tide_tokenizer_new(env, g, &tok);
  CHECKF(st == TIDE_OK, "tokenizer_new(%s): %s", name, tide_env_errmsg(env));
  tide_gguf_free(g); /* the tokenizer keeps it alive */
  return tok;
}

static int64_t tokenize(const tide_tokenizer *tok, const char *s, size_t n, int bos,
                        int special, int32_t *ids, int64_t cap) {
  int64_t got = -1;
  int st = tide_tokenize(tok, s, n, bos, special, ids, cap, &got);
  return st == TIDE_OK ? got : -1;
}

static int valid_utf8(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i], need, lo = 0x80, hi = 0xBF;
    if (c < 0x80) { i++; continue; }
    if (c < 0xC2) return 0;
    if (c < 0xE0) need = 2;
    else if (c < 0xF0) { need = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c < 0xF5) { need = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if (i + need > n) return 0;
    for (unsigned k = 1; k < need; k++) {
      unsigned x = s[i + k];
      if (x < (k == 1 ? lo : 0x80) || x > (k == 1 ? hi : 0xBF)) return 0;
    }
    i += need;
  }
  return 1;
}

/* ---------------------------------------------------------------- vectors */

#define SEP "\n__ggml_vocab_test__\n"

static void run_vectors(const char *name, int roundtrip) {
  const char *fx = test_fixtures();
  if (!fx) SKIP("fixtures absent");
  char p_inp[600], p_out[600];
  snprintf(p_inp, sizeof p_inp, "%s/vocab/%s.inp", fx, name);
  snprintf(p_out, sizeof p_out, "%s/vocab/%s.out", fx, name);
  size_t n_inp, n_out;
  char *inp = read_file(p_inp, &n_inp), *out = read_file(p_out, &n_out);
  if (!inp || !out) { free(inp); free(out); SKIP("vocab vectors absent"); }
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tide_tokenizer *tok = open_vocab(env, name);
  CHECK(tok != NULL);
  int n_vec = 0, n_ok = 0, n_rt = 0;
  char *s = inp, *line = out;
  int32_t *ids = malloc(4096 * sizeof *ids);
  char *text = malloc(65536);
  while (tok && *line) {
    char *eol = strchr(line, '\n');
    if (eol) *eol = 0;
    char *sep = strstr(s, SEP);
    size_t len = sep ? (size_t)(sep - s) : strlen(s);
    /* expected ids */
    int32_t want[4096];
    int n_want = 0;
    for (char *q = line; *q;) {
      char *e;
      long v = strtol(q, &e, 10);
      if (e == q) break;
      want[n_want++] = (int32_t)v;
      q = e;
    }
    int64_t got = tokenize(tok, s, len, 0, 0, ids, 4096);
    int same = got == n_want;
    for (int i = 0; same && i < n_want; i++) same = ids[i] == want[i];
    n_vec++;
    n_ok += same;
    CHECKF(same, "%s vector %d (%zu bytes): %lld ids, want %d", name, n_vec, len,
           (long long)got, n_want);
    if (roundtrip && got >= 0) {
      size_t nt = 0;
      int st = tide_detokenize(tok, ids, got, text, 65536, &nt);
      int ok = st == TIDE_OK && nt == len && memcmp(text, s, len) == 0;
      n_rt += ok;
      CHECKF(ok, "%s vector %d: detokenize does not give the input back", name, n_vec);
    }
    if (!sep || !eol) break;
    s = sep + strlen(SEP);
    line = eol + 1;
  }
  CHECKF(n_vec == 46, "%s: %d vectors read", name, n_vec);
  printf("%s: %d/%d vectors match%s", name, n_ok, n_vec, roundtrip ? "" : "\n");
  if (roundtrip) printf(", %d/%d round-trip\n", n_rt, n_vec);
  free(ids);
  free(text);
  free(inp);
  free(out);
  tide_tokenizer_free(tok);
  tide_env_free(env);
}

static void test_vectors_spm(void) { run_vectors("ggml-vocab-llama-spm.gguf", 0); }
static void test_vectors_gpt2(void) { run_vectors("ggml-vocab-gpt-2.gguf", 1); }

/* ---------------------------------------------------------------- fixtures */

static const char *multibyte[] = {
  "\xf0\x9f\x9a\x80 (normal) \xf0\x9f\x98\xb6\xe2\x80\x8d\xf0\x9f\x8c\xab\xef\xb8\x8f ok",
  "\xe1\x9e\x80\xe1\x9e\xb6\xe1\x9e\x93\xe1\x9f\x8b\xe1\x9e\x8f\xe1\x9f\x82 \xe6\x88\x91\xe6\x83\xb3",
  "Hello, y'all! How are you \xf0\x9f\x98\x81 ?\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8\x61pple",
  " \xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe \xd0\xbd\xd0\xb0 \xd0\x91\xd1\x8a\xd0\xbb\xd0\xb3",
};

static void check_stream(const tide_tokenizer *tok, const char *s, int bos) {
  int32_t ids[512];
  int64_t n = tokenize(tok, s, strlen(s), bos, 0, ids, 512);
  CHECK(n > 0);
  if (n <= 0) return;
  char whole[4096], streamed[4096];
  size_t nw = 0, ns = 0;
  CHECK(tide_detokenize(tok, ids, n, whole, sizeof whole, &nw) == TIDE_OK);
  tide_detok st;
  memset(&st, 0, sizeof st);
  int partial = 0, held = 0;
  for (int64_t i = 0; i < n; i++) {
    char chunk[256];
    size_t m = 0;
    CHECK(tide_detok_push(tok, &st, ids[i], chunk, sizeof chunk, &m) == TIDE_OK);
    partial += !valid_utf8((const unsigned char *)chunk, m);
    held += st.n_pending > 0;
    memcpy(streamed + ns, chunk, m);
    ns += m;
  }
  size_t m = 0;
  CHECK(tide_detok_flush(tok, &st, streamed + ns, sizeof streamed - ns, &m) == TIDE_OK);
  CHECK(m == 0);
  ns += m;
  CHECK(partial == 0);
  CHECKF(ns == nw && memcmp(whole, streamed, nw) == 0, "stream differs for '%s'", s);
  (void)held;
}

static void test_stream(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tide_tokenizer *spm = open_vocab(env, "ggml-vocab-llama-spm.gguf");
  tide_tokenizer *gpt = open_vocab(env, "ggml-vocab-gpt-2.gguf");
  if (!spm || !gpt) {
    tide_tokenizer_free(spm);
    tide_tokenizer_free(gpt);
    tide_env_free(env);
    SKIP("fixtures absent");
  }
  for (size_t i = 0; i < sizeof multibyte / sizeof multibyte[0]; i++) {
    check_stream(spm, multibyte[i], 1);
    check_stream(spm, multibyte[i], 0);
    check_stream(gpt, multibyte[i], 0);
  }
  /* a character split across byte tokens waits in the state */
  int32_t ids[16];
  int64_t n = tokenize(gpt, "\xf0\x9f\xa6\x99", 4, 0, 0, ids, 16);
  CHECK(n >= 2);
  tide_detok st;
  memset(&st, 0, sizeof st);
  char out[64];
  size_t m, total = 0;
  for (int64_t i = 0; i + 1 < n; i++) {
    CHECK(tide_detok_push(gpt, &st, ids[i], out, sizeof out, &m) == TIDE_OK);
    total += m;
  }
  CHECK(total == 0 && st.n_pending > 0);
  CHECK(tide_detok_push(gpt, &st, ids[n - 1], out, sizeof out, &m) == TIDE_OK);
  CHECK(m == 4 && memcmp(out, "\xf0\x9f\xa6\x99", 4) == 0 && st.n_pending == 0);
  /* invalid sequences come out as U+FFFD: <0xE2> then '(' */
  memset(&st, 0, sizeof st);
  int32_t e2 = 3 + 0xE2, lp = 3 + '(';
  CHECK(tide_detok_push(spm, &st, e2, out, sizeof out, &m) == TIDE_OK && m == 0);
  CHECK(tide_detok_push(spm, &st, lp, out, sizeof out, &m) == TIDE_OK);
  CHECK(m == 4 && memcmp(out, "\xef\xbf\xbd(", 4) == 0);
  /* an incomplete character at the end is flushed as U+FFFD */
  memset(&st, 0, sizeof st);
  CHECK(tide_detok_push(spm, &st, e2, out, sizeof out, &m) == TIDE_OK && m == 0);
  CHECK(tide_detok_push(spm, &st, 3 + 0x82, out, sizeof out, &m) == TIDE_OK && m == 0);
  CHECK(tide_detok_flush(spm, &st, out, sizeof out, &m) == TIDE_OK);
  CHECK(m == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0 && st.n_pending == 0);
  /* no room: TIDE_ERR_FULL, the state is unchanged */
  memset(&st, 0, sizeof st);
  int32_t hello = -1;
  CHECK(tokenize(gpt, "Hello", 5, 0, 0, &hello, 1) == 1);
  CHECK(tide_detok_push(gpt, &st, hello, out, 2, &m) == TIDE_ERR_FULL && m == 5);
  CHECK(st.n_tokens == 0 && st.n_pending == 0);
  CHECK(tide_detok_push(gpt, &st, hello, out, 5, &m) == TIDE_OK && m == 5);
  CHECK(tide_detok_push(gpt, &st, -1, out, sizeof out, &m) == TIDE_ERR_ARG);
  tide_tokenizer_free(spm);
  tide_tokenizer_free(gpt);
  tide_env_free(env);
}

static void test_special(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tide_tokenizer *spm = open_vocab(env, "ggml-vocab-llama-spm.gguf");
  tide_tokenizer *gpt = open_vocab(env, "ggml-vocab-gpt-2.gguf");
  if (!spm || !gpt) {
    tide_tokenizer_free(spm);
    tide_tokenizer_free(gpt);
    tide_env_free(env);
    SKIP("fixtures absent");
  }
  /* ids and defaults */
  CHECK(tide_tokenizer_n_vocab(spm) == 32000);
  CHECK(tide_tokenizer_bos(spm) == 1 && tide_tokenizer_eos(spm) == 2);
  CHECK(tide_tokenizer_add_bos(spm) == 1);
  CHECK(tide_tokenizer_is_eog(spm, 2) && !tide_tokenizer_is_eog(spm, 1));
  CHECK(tide_tokenizer_attr(spm, 0) == TIDE_TOKEN_UNKNOWN);
  CHECK(tide_tokenizer_attr(spm, 1) == TIDE_TOKEN_CONTROL);
  CHECK(tide_tokenizer_attr(spm, 3) == TIDE_TOKEN_BYTE);
  CHECK(tide_tokenizer_attr(spm, 32000) == 0);
  CHECK(tide_tokenizer_n_vocab(gpt) == 50257);
  CHECK(tide_tokenizer_bos(gpt) == 50256 && tide_tokenizer_eos(gpt) == 50256);
  CHECK(tide_tokenizer_add_bos(gpt) == 0);
  CHECK(tide_tokenizer_is_eog(gpt, 50256) && !tide_tokenizer_is_eog(gpt, 0));
  /* pieces */
  size_t n;
  const char *p = tide_token_piece(spm, 3 + 0x0A, &n);
  CHECK(n == 1 && p[0] == '\n');
  p = tide_token_piece(spm, 1, &n);
  CHECK(n == 3 && memcmp(p, "<s>", 3) == 0);
  p = tide_token_piece(gpt, 50256, &n);
  CHECK(n == 13 && memcmp(p, "<|endoftext|>", 13) == 0);
  CHECK(tide_token_piece(gpt, 50257, &n) == NULL && n == 0);
  int32_t ids[64];
  CHECK(tokenize(gpt, " Hello", 6, 0, 0, ids, 64) == 1);
  p = tide_token_piece(gpt, ids[0], &n);
  CHECK(n == 6 && memcmp(p, " Hello", 6) == 0);
  /* parse_special */
  const char *s = "<s>Hello world</s>";
  int64_t k = tokenize(spm, s, strlen(s), 0, 1, ids, 64);
  CHECK(k >= 3 && ids[0] == 1 && ids[k - 1] == 2);
  k = tokenize(spm, s, strlen(s), 0, 0, ids, 64);
  int seen = 0;
  for (int64_t i = 0; i < k; i++) seen += ids[i] == 1 || ids[i] == 2;
  CHECK(k > 3 && seen == 0);
  /* SPM: the text after a special token gets its own space prefix */
  int32_t a[64], b[64];
  int64_t na = tokenize(spm, "<s>Hello", 8, 0, 1, a, 64);
  int64_t nb = tokenize(spm, "Hello", 5, 1, 0, b, 64);
  CHECK(na == nb && na > 0 && memcmp(a, b, (size_t)na * sizeof *a) == 0);
  s = "Hello<|endoftext|> world";
  k = tokenize(gpt, s, strlen(s), 0, 1, ids, 64);
  CHECK(k == 3 && ids[0] == 15496 && ids[1] == 50256 && ids[2] == 995);
  k = tokenize(gpt, s, strlen(s), 0, 0, ids, 64);
  seen = 0;
  for (int64_t i = 0; i < k; i++) seen += ids[i] == 50256;
  CHECK(k > 3 && seen == 0);
  /* detokenize drops control tokens; SPM drops the first piece's space */
  char text[128];
  size_t nt;
  int32_t d[] = {1, 15043, 3186, 2};  /* <s> ▁Hello ▁world </s> */
  CHECK(tide_detokenize(spm, d, 4, text, sizeof text, &nt) == TIDE_OK);
  CHECK(nt == 12 && memcmp(text, " Hello world", 12) == 0);
  CHECK(tide_detokenize(spm, d + 1, 3, text, sizeof text, &nt) == TIDE_OK);
  CHECK(nt == 11 && memcmp(text, "Hello world", 11) == 0);
  CHECK(tide_detokenize(gpt, ids, k, text, sizeof text, &nt) == TIDE_OK);
  CHECK(nt == strlen(s) && memcmp(text, s, nt) == 0);
  d[0] = 50256;
  CHECK(tide_detokenize(gpt, d, 1, text, sizeof text, &nt) == TIDE_OK && nt == 0);
  d[0] = 32000;
  CHECK(tide_detokenize(spm, d, 1, text, sizeof text, &nt) == TIDE_ERR_ARG);
  /* add_bos */
  CHECK(tokenize(gpt, "Hello", 5, 1, 0, ids, 64) == 2 && ids[0] == 50256 && ids[1] == 15496);
  CHECK(tokenize(spm, "", 0, 1, 0, ids, 64) == 1 && ids[0] == 1);
  CHECK(tokenize(spm, "", 0, 0, 0, ids, 64) == 0);
  tide_tokenizer_free(spm);
  tide_tokenizer_free(gpt);
  tide_env_free(env);
}

static void test_full_protocol(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tide_tokenizer *tok = open_vocab(env, "ggml-vocab-gpt-2.gguf");
  if (!tok) { tide_env_free(env); SKIP("fixtures absent"); }
  const char *s = "Hello world, this is a longer sentence.";
  int32_t ids[64];
  int64_t need = -1;
  CHECK(tide_tokenize(tok, s, strlen(s), 0, 0, NULL, 0, &need) == TIDE_ERR_FULL);
  CHECK(need == 9);
  int64_t got = -1;
  CHECK(tide_tokenize(tok, s, strlen(s), 1, 0, ids, 3, &got) == TIDE_ERR_FULL);
  CHECK(got == need + 1 && ids[0] == 50256);
  CHECK(tide_tokenize(tok, s, strlen(s), 0, 0, ids, need, &got) == TIDE_OK && got == need);
  size_t n = 0;
  char text[64];
  CHECK(tide_detokenize(tok, ids, got, NULL, 0, &n) == TIDE_ERR_FULL && n == strlen(s));
  CHECK(tide_detokenize(tok, ids, got, text, n - 1, &n) == TIDE_ERR_FULL && n == strlen(s));
  CHECK(tide_detokenize(tok, ids, got, text, n, &n) == TIDE_OK && memcmp(text, s, n) == 0);
  CHECK(tide_tokenize(tok, s, strlen(s), 0, 0, ids, -1, &got) == TIDE_ERR_ARG);
  CHECK(tide_tokenize(tok, NULL, 3, 0, 0, ids, 64, &got) == TIDE_ERR_ARG);
  tide_tokenizer_free(tok);
  tide_env_free(env);
}

static void test_invalid_utf8(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tide_tokenizer *spm = open_vocab(env, "ggml-vocab-llama-spm.gguf");
  tide_tokenizer *gpt = open_vocab(env, "ggml-vocab-gpt-2.gguf");
  if (!spm || !gpt) {
    tide_tokenizer_free(spm);
    tide_tokenizer_free(gpt);
    tide_env_free(env);
    SKIP("fixtures absent");
  }
  static const char *bad[] = {"\xff", "a\xc3(b", "\xe2\x82", "x \x80\x80 y\xf4\x90\x80\x80",
                              "\xed\xa0\x80 \xc0\xaf"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int32_t ids[64];
    char text[64];
    size_t len = strlen(bad[i]), nt;
    int64_t n = tokenize(gpt, bad[i], len, 0, 0, ids, 64);
    CHECK(n > 0);
    CHECK(tide_detokenize(gpt, ids, n, text, sizeof text, &nt) == TIDE_OK);
    CHECKF(nt == len && memcmp(text, bad[i], len) == 0, "gpt-2 round trip of bad utf-8 %zu", i);
    n = tokenize(spm, bad[i], len, 0, 0, ids, 64);
    CHECK(n > 0);
    CHECK(tide_detokenize(spm, ids, n, text, sizeof text, &nt) == TIDE_OK);
    CHECKF(nt == len && memcmp(text, bad[i], len) == 0, "spm round trip of bad utf-8 %zu", i);
  }
  int32_t ids[8];
  CHECK(tokenize(spm, "\xff", 1, 0, 0, ids, 8) == 2 && ids[0] == 29871 && ids[1] == 3 + 0xFF);
  tide_tokenizer_free(spm);
  tide_tokenizer_free(gpt);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- small vocabs */

/* A small byte-level BPE vocabulary: the 256 byte characters, a few merges
** and special tokens; or a small SentencePiece one. Options break it. */
typedef struct {
  int spm;
  const char *model, *pre;
  int64_t n_types, n_scores;     /* array lengths (-1: as many as tokens, -2: absent) */
  int64_t bos;                   /* -1: absent */
  int types_as_float, tokens_as_int, no_tokens, empty_tokens, no_merges;
  int dup_token, bad_byte_token, add_bos_str;
} vocab_opts;

static const char *bpe_extra[] = {"\xc4\xa0t", "he", "\xc4\xa0the", "ll", "llo", "<|endoftext|>",
                                  "<|im_end|>", "<tool>"};
static const char *bpe_merges[] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he", "l l", "ll o"};
static const char *spm_extra[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "ab",
                                  "\xe2\x96\x81\x61\x62", "<user>"};

static unsigned cp_of_byte(unsigned b) {
  if (b <= 32) return 256 + b;
  if (b >= 127 && b <= 160) return 256 + 33 + (b - 127);
  if (b == 173) return 256 + 67;
  return b;
}

static tide_gguf *build_vocab(tide_env *env, const vocab_opts *o, char *path) {
  tide_gguf_writer *w = NULL;
  if (tide_gguf_writer_new(env, &w)) return NULL;
  const char *toks[400];
  char bytes[256][8];
  int32_t types[400];
  float scores[400];
  int n = 0;
  if (o->spm) {
    for (size_t i = 0; i < 3; i++) { toks[n] = spm_extra[i]; types[n++] = i ? 3 : 2; }
    for (int b = 0; b < 256; b++) {
      snprintf(bytes[b], 8, "<0x%02X>", b);
      toks[n] = bytes[b];
      types[n++] = 6;
    }
    if (o->bad_byte_token) toks[3 + 65] = "<0xZZ>";
    for (size_t i = 3; i < sizeof spm_extra / sizeof spm_extra[0]; i++) {
      toks[n] = spm_extra[i];
      types[n++] = i + 1 == sizeof spm_extra / sizeof spm_extra[0] ? 4 : 1;
    }
  } else {
    for (int b = 0; b < 256; b++) {
      unsigned cp = cp_of_byte((unsigned)b);
      if (cp < 0x80) { bytes[b][0] = (char)cp; bytes[b][1] = 0; }
      else { bytes[b][0] = (char)(0xC0 | (cp >> 6)); bytes[b][1] = (char)(0x80 | (cp & 0x3F)); bytes[b][2] = 0; }
      toks[n] = bytes[b];
      types[n++] = 1;
    }
    for (size_t i = 0; i < sizeof bpe_extra / sizeof bpe_extra[0]; i++) {
      toks[n] = bpe_extra[i];
      types[n++] = bpe_extra[i][0] == '<' ? (bpe_extra[i][1] == 't' ? 4 : 3) : 1;
    }
  }
  for (int i = 0; i < n; i++) scores[i] = -(float)i;
  if (o->dup_token) toks[n - 1] = toks[n - 2];
  if (o->empty_tokens) n = 0;
  int st = 0;
  if (o->model) st |= tide_gguf_writer_set_str(w, "tokenizer.ggml.model", o->model, strlen(o->model));
  if (o->pre) st |= tide_gguf_writer_set_str(w, "tokenizer.ggml.pre", o->pre, strlen(o->pre));
  if (o->tokens_as_int) st |= tide_gguf_writer_set_arr(w, "tokenizer.ggml.tokens", TIDE_GGUF_INT32, types, n);
  else if (!o->no_tokens) st |= tide_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, n);
  int64_t nty = o->n_types == -1 ? n : o->n_types, nsc = o->n_scores == -1 ? n : o->n_scores;
  if (o->n_types != -2) {
    if (o->types_as_float) st |= tide_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", TIDE_GGUF_FLOAT32, scores, nty);
    else st |= tide_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", TIDE_GGUF_INT32, types, nty);
  }
  if (o->n_scores != -2) st |= tide_gguf_writer_set_arr(w, "tokenizer.ggml.scores", TIDE_GGUF_FLOAT32, scores, nsc);
  if (!o->spm && !o->no_merges)
    st |= tide_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", bpe_merges, NULL,
                                       (int64_t)(sizeof bpe_merges / sizeof bpe_merges[0]));
  if (o->bos >= 0) st |= tide_gguf_writer_set_int(w, "tokenizer.ggml.bos_token_id", TIDE_GGUF_UINT32, o->bos);
  if (o->add_bos_str) st |= tide_gguf_writer_set_str(w, "tokenizer.ggml.add_bos_token", "yes", 3);
  st |= tide_gguf_writer_write(w, path, 3);
  tide_gguf_writer_free(w);
  tide_gguf *g = NULL;
  if (st || tide_gguf_open(env, path, &g)) return NULL;
  return g;
}

static vocab_opts good_bpe(void) {
  return (vocab_opts){0, "gpt2", "gpt-2", -1, -2, -1, 0, 0, 0, 0, 0, 0, 0, 0};
}

static vocab_opts good_spm(void) {
  return (vocab_opts){1, "llama", NULL, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
}

static int try_vocab(const vocab_opts *o, const char *needle, int want) {
  char path[] = "/tmp/tide_tok_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  close(fd);
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tide_gguf *g = build_vocab(env, o, path);
  int ok = 0;
  if (!g) {
    fprintf(stderr, "    building the vocab failed: %s\n", tide_env_errmsg(env));
  } else {
    tide_tokenizer *tok = (tide_tokenizer *)1;
    int st = tide_tokenizer_new(env, g, &tok);
    ok = st == want && (want == TIDE_OK ? tok != NULL : tok == NULL) &&
         (!needle || strstr(tide_env_errmsg(env), needle));
    if (!ok)
      fprintf(stderr, "    status %d (want %d): %s\n", st, want, tide_env_errmsg(env));
    if (st == TIDE_OK) tide_tokenizer_free(tok);
    tide_gguf_free(g);
  }
  tide_env_free(env);
  remove(path);
  return ok;
}

static void test_bad_metadata(void) {
  vocab_opts o;
  CHECK(try_vocab((o = good_bpe(), &o), NULL, TIDE_OK));
  CHECK(try_vocab((o = good_spm(), &o), NULL, TIDE_OK));
  CHECK(try_vocab((o = good_bpe(), o.model = NULL, &o), "tokenizer.ggml.model", TIDE_ERR_FORMAT));
  CHECK(try_vocab((o = good_bpe(), o.model = "bert", &o), "bert", TIDE_ERR_UNSUPPORTED));
  CHECK(try_vocab((o = good_bpe(), o.pre = "chameleon", &o), "chameleon", TIDE_ERR_UNSUPPORTED));
  CHECK(try_vocab((o = good_bpe(), o.no_tokens = 1, &o), "tokenizer.ggml.tokens", TIDE_ERR_FORMAT));
  CHECK(try_vocab((o = good_bpe(), o.tokens_as_int = 1, &o), "tokenizer.ggml.tokens", TIDE_ERR_FORMAT));
  CHECK(try_vocab((o = good_bpe(), o.empty_tokens = 1, o.n_types = -2, &o), "tokenizer.ggml.tokens",
                  TIDE_ERR_FORMAT));
  CHECK(try_vocab((o = good_bpe(), o.dup_token = 1, &o), "duplicate", TIDE_ERR_FORMAT));
  CHECK(try_vocab((o = good_bpe(), o.n_types = 10, &o), "tokenizer.ggml.token_type", TIDE_ERR_FORMAT));
  CHECK(try_vocab((o = good_bpe(), o.types_as_float = 1, &o), "tokenizer.ggml.token_type",
                  TIDE_ERR_FORMAT));
  CHECK(try_vocab((o = good_spm(), o.n_scores = 5, &o), "tokenizer.ggml.scores", TIDE_ERR_FORMAT));
  CHECK(try_vocab((o = good_bpe(), o.no_merges = 1, &o), "tokenizer.ggml.merges", TIDE_ERR_FORMAT));
  CHECK(try_vocab((o = good_bpe(), o.bos = 100000, &o), "tokenizer.ggml.bos_token_id", TIDE_ERR_FORMAT));
  CHECK(try_vocab((o = good_spm(), o.bos = 1, &o), NULL, TIDE_OK));
  CHECK(try_vocab((o = good_spm(), o.add_bos_str = 1, &o), "tokenizer.ggml.add_bos_token",
                  TIDE_ERR_FORMAT));
  CHECK(try_vocab((o = good_spm(), o.bad_byte_token = 1, &o), "<0xZZ>", TIDE_ERR_FORMAT));
  /* pre-tokenizers by name, never by file */
  static const char *pres[] = {"default", "gpt-2", "llama3", "llama-bpe", "qwen2",
                               "starcoder", "falcon", "dbrx"};
  for (size_t i = 0; i < sizeof pres / sizeof pres[0]; i++)
    CHECKF(try_vocab((o = good_bpe(), o.pre = pres[i], &o), NULL, TIDE_OK), "pre %s", pres[i]);
  CHECK(try_vocab((o = good_bpe(), o.pre = NULL, &o), NULL, TIDE_OK));
}

static void test_small_vocabs(void) {
  char path[] = "/tmp/tide_tok_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) SKIP("mkstemp failed");
  close(fd);
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  vocab_opts o = good_bpe();
  o.pre = "llama-bpe";
  tide_gguf *g = build_vocab(env, &o, path);
  tide_tokenizer *tok = NULL;
  CHECK(g && tide_tokenizer_new(env, g, &tok) == TIDE_OK);
  tide_gguf_free(g);
  if (tok) {
    int32_t ids[64];
    char text[64];
    size_t nt;
    /* llama3: add_bos defaults on, but no bos id is set -> 11 (in range) */
    CHECK(tide_tokenizer_add_bos(tok) == 1 && tide_tokenizer_bos(tok) == 11);
    /* " the hello": merges make " the", "he" "llo" */
    int64_t n = tokenize(tok, " the hello", 10, 0, 0, ids, 64);
    CHECK(n == 4 && ids[0] == 258 && ids[1] == 32);
    CHECK(n == 4 && ids[2] == 257 && ids[3] == 260);
    /* user-defined tokens split even without parse_special; control ones do not */
    n = tokenize(tok, "a<tool>b<|im_end|>", 18, 0, 0, ids, 64);
    CHECK(n > 3 && ids[0] == 'a' && ids[1] == 263 && ids[2] == 'b');
    n = tokenize(tok, "a<tool>b<|im_end|>", 18, 0, 1, ids, 64);
    CHECK(n == 4 && ids[3] == 262);
    CHECK(tide_tokenizer_is_eog(tok, 261) && tide_tokenizer_is_eog(tok, 262));
    CHECK(tide_detokenize(tok, ids, n, text, sizeof text, &nt) == TIDE_OK);
    CHECK(nt == 8 && memcmp(text, "a<tool>b", 8) == 0);
    tide_tokenizer_free(tok);
  }
  /* a small SentencePiece vocabulary: merges by score, byte fallback */
  o = good_spm();
  g = build_vocab(env, &o, path);
  tok = NULL;
  CHECK(g && tide_tokenizer_new(env, g, &tok) == TIDE_OK);
  tide_gguf_free(g);
  if (tok) {
    int32_t ids[64];
    int64_t n = tokenize(tok, "ab c", 4, 0, 0, ids, 64);
    /* ▁ab (263), ▁ (259), then 'c' as byte <0x63> */
    CHECK(n == 3 && ids[0] == 263 && ids[1] == 259 && ids[2] == 3 + 'c');
    n = tokenize(tok, "ab<user>", 8, 0, 0, ids, 64);
    CHECK(n == 2 && ids[0] == 263 && ids[1] == 264);
    tide_tokenizer_free(tok);
  }
  tide_env_free(env);
  remove(path);
}

/* Every allocation of tokenizer_new and tokenize failing in turn: an error,
** nothing leaked, and success once there is memory. */
static void test_oom(void) {
  char path[] = "/tmp/tide_tok_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) SKIP("mkstemp failed");
  close(fd);
  for (int spm = 0; spm < 2; spm++) {
    test_allocator c = { 0 };
    tide_env *env;
    CHECK(tide_env_new(&env, test_alloc_fn, &c) == TIDE_OK);
    vocab_opts o = spm ? good_spm() : good_bpe();
    tide_gguf *g = build_vocab(env, &o, path);
    CHECK(g != NULL);
    if (!g) { tide_env_free(env); continue; }
    long long base = c.live;
    int fails = 0, leaks = 0, done = 0;
    for (long k = 1; k < 100000 && !done; k++) {
      c.n_alloc = 0;
      c.fail_at = k;
      tide_tokenizer *tok = (tide_tokenizer *)1;
      int st = tide_tokenizer_new(env, g, &tok), bad = st != TIDE_OK && tok != NULL;
      if (st == TIDE_OK) {
        int32_t ids[64];
        int64_t n = 0;
        const char *s = spm ? "ab ab <user> c" : "the hello <tool> x\xff";
        st = tide_tokenize(tok, s, strlen(s), 1, 1, ids, 64, &n);
        done = st == TIDE_OK;
        tide_tokenizer_free(tok);
      }
      if (bad || (st != TIDE_OK && st != TIDE_ERR_NOMEM)) {
        fails++;
        fprintf(stderr, "    %s, allocation %ld failing: status %d: %s\n", spm ? "spm" : "bpe",
                k, st, tide_env_errmsg(env));
      }
      leaks += c.live != base;
    }
    c.fail_at = 0;
    CHECK(done);
    CHECK(fails == 0);
    CHECK(leaks == 0);
    CHECK(c.bad_size == 0);
    tide_gguf_free(g);
    tide_env_free(env);
    CHECK(c.live == 0);
  }
  remove(path);
}

/* The tokenizer keeps its gguf (and env) alive: free order does not matter. */
static void test_lifetime(void) {
  test_allocator c = { 0 };
  tide_env *env;
  tide_env_new(&env, test_alloc_fn, &c);
  tide_tokenizer *tok = open_vocab(env, "ggml-vocab-gpt-2.gguf");
  if (!tok) { tide_env_free(env); SKIP("fixtures absent"); }
  tide_env_free(env);
  int32_t ids[8];
  CHECK(tokenize(tok, "Hello world", 11, 0, 0, ids, 8) == 2);
  long long live = c.live;
  CHECK(tokenize(tok, "Hello world", 11, 0, 0, ids, 8) == 2);
  CHECK(c.live == live); /* tokenize frees all it takes */
  tide_tokenizer_free(tok);
  CHECK(c.live == 0 && c.bad_size == 0);
}

TEST_MAIN(test_vectors_spm, test_vectors_gpt2, test_stream, test_special, test_full_protocol,
          test_invalid_utf8, test_bad_metadata, test_small_vocabs, test_oom, test_lifetime)
