/*
** test_bpe_train.c -- byte-level BPE training: merges of hand-traced toy
** corpora, the written vocabulary loading in the core tokenizer and
** round-tripping any bytes, order independence, special texts, argument
** and state errors, cancellation, allocation failures, and a throughput
** number.
** Layer: tests (C unit tests of core/).
*/
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "tide.h"

/* ---------------------------------------------------------------- helpers */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char tmp_path[256];

static const char *tmp_gguf(void) {
  if (!tmp_path[0])
    snprintf(tmp_path, sizeof tmp_path, "/tmp/tide_test_bpe_%ld.gguf", (long)getpid());
  return tmp_path;
}

/* Trains on the texts (one add_text each) with p (NULL: defaults). */
static tide_bpe_trainer *train(tide_env *env, const tide_bpe_trainer_params *p,
                               const char *const *texts, int n, int32_t vocab_size) {
  tide_bpe_trainer *tr = NULL;
  int st = tide_bpe_trainer_new(env, p, &tr);
  CHECKF(st == TIDE_OK, "trainer_new: %s", tide_env_errmsg(env));
  for (int i = 0; !st && i < n; i++) st = tide_bpe_trainer_add_text(tr, texts[i], strlen(texts[i]));
  if (!st) st = tide_bpe_trainer_train(tr, vocab_size, NULL, NULL);
  CHECKF(st == TIDE_OK, "train: %s", tide_env_errmsg(env));
  if (st) { tide_bpe_trainer_free(tr); return NULL; }
  return tr;
}

/* Checks that the merges are exactly want[0..n). */
static void check_merges(const tide_bpe_trainer *tr, const char *const *want, int n) {
  tide_bpe_trainer_stats s;
  tide_bpe_trainer_get_stats(tr, &s);
  CHECKF(s.n_merges == n, "%lld merges, want %d", (long long)s.n_merges, n);
  for (int i = 0; i < n && i < s.n_merges; i++) {
    size_t len;
    const char *m = tide_bpe_trainer_merge(tr, i, &len);
    CHECKF(m && len == strlen(want[i]) && strcmp(m, want[i]) == 0, "merge %d is '%s', want '%s'",
           i, m ? m : "(null)", want[i]);
  }
}

/* Writes tr's vocabulary to a temporary GGUF and loads it as a tokenizer. */
static tide_tokenizer *load_written(tide_env *env, const tide_bpe_trainer *tr) {
  tide_gguf_writer *w = NULL;
  tide_gguf *g = NULL;
  tide_tokenizer *tok = NULL;
  int st = tide_gguf_writer_new(env, &w);
  if (!st) st = tide_bpe_trainer_write(tr, w);
  if (!st) st = tide_gguf_writer_write(w, tmp_gguf(), 3);
  tide_gguf_writer_free(w);
  CHECKF(st == TIDE_OK, "write: %s", tide_env_errmsg(env));
  if (!st) st = tide_gguf_open(env, tmp_gguf(), &g);
  if (!st) st = tide_tokenizer_new(env, g, &tok);
  CHECKF(st == TIDE_OK, "load: %s", tide_env_errmsg(env));
  tide_gguf_free(g);
  unlink(tmp_gguf());
  return tok;
}

static int64_t tokenize(const tide_tokenizer *tok, const char *s, size_t n, int special,
                        int32_t *ids, int64_t cap) {
  int64_t got = -1;
  int st = tide_tokenize(tok, s, n, 0, special, ids, cap, &got);
  return st == TIDE_OK ? got : -1;
}

static void check_ids(const tide_tokenizer *tok, const char *s, const int32_t *want, int n) {
  int32_t ids[64];
  int64_t got = tokenize(tok, s, strlen(s), 0, ids, 64);
  int same = got == n;
  for (int i = 0; same && i < n; i++) same = ids[i] == want[i];
  CHECKF(same, "tokenize '%s': %lld ids (first %d), want %d (first %d)", s, (long long)got,
         got > 0 ? ids[0] : -1, n, want[0]);
}

/* Detokenize(tokenize(s)) == s. */
static int roundtrip(const tide_tokenizer *tok, const char *s, size_t n) {
  int64_t cap = (int64_t)n + 8;
  int32_t *ids = malloc((size_t)cap * sizeof *ids);
  char *back = malloc(n + 64);
  size_t nb = 0;
  int64_t got = ids ? tokenize(tok, s, n, 0, ids, cap) : -1;
  int ok = got >= 0 && tide_detokenize(tok, ids, got, back, n + 64, &nb) == TIDE_OK &&
           nb == n && memcmp(back, s, n) == 0;
  free(ids);
  free(back);
  return ok;
}

/* A small English text: public-domain sentences (Genesis 1, KJV). */
static const char *const genesis[] = {
  "In the beginning God created the heaven and the earth.\n",
  "And the earth was without form, and void; and darkness was upon the face of the deep. "
  "And the Spirit of God moved upon the face of the waters.\n",
  "And God said, Let there be light: and there was light.\n",
  "And God saw the light, that it was good: and God divided the light from the darkness.\n",
  "And God called the light Day, and the darkness he called Night. And the evening and the "
  "morning were the first day.\n",
  "And God said, Let there be a firmament in the midst of the waters, and let it divide the "
  "waters from the waters.\n",
  "And God made the firmament, and divided the waters which were under the firmament from "
  "the waters which were above the firmament: and it was so.\n",
  "And God called the firmament Heaven. And the evening and the morning were the second day.\n",
};
#define N_GENESIS ((int)(sizeof genesis / sizeof genesis[0]))

/* ---------------------------------------------------------------- hand traces */

/* Wikipedia's example: one word "aaabdaaabac". Pairs aa:4 ab:2 (others 1)
** -> "a a" (Z); Z a b d Z a b a c: Za:2 ab:2, tie to the smaller left id
** ('a' < Z) -> "a b" (Y); Z Y d Z Y a c: ZY:2 -> "aa ab"; then all 1. */
static void test_trace_wikipedia(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  const char *text[] = {"aaabdaaabac"};
  tide_bpe_trainer *tr = train(env, NULL, text, 1, 1000);
  const char *want[] = {"a a", "a b", "aa ab"};
  if (tr) check_merges(tr, want, 3);
  tide_bpe_trainer_stats s;
  tide_bpe_trainer_get_stats(tr, &s);
  CHECK(s.n_vocab == 256 + 3 + 1);
  CHECK(s.n_words == 1 && s.n_pretokens == 1 && s.n_bytes == 11);
  size_t len;
  const char *t = tide_bpe_trainer_token(tr, 258, &len);
  CHECK(t && len == 4 && strcmp(t, "aaab") == 0);
  t = tide_bpe_trainer_token(tr, 259, &len);
  CHECK(t && strcmp(t, "<|endoftext|>") == 0);
  CHECK(tide_bpe_trainer_token(tr, 260, &len) == NULL);
  t = tide_bpe_trainer_token(tr, ' ', &len); /* bytes in GPT-2's alphabet */
  CHECK(t && len == 2 && memcmp(t, "\xc4\xa0", 2) == 0);
  t = tide_bpe_trainer_token(tr, 0xAD, &len);
  CHECK(t && len == 2 && memcmp(t, "\xc5\x83", 2) == 0); /* U+0143 */
  tide_tokenizer *tok = tr ? load_written(env, tr) : NULL;
  if (tok) {
    int32_t w1[] = {258, 'd', 258, 'a', 'c'};
    check_ids(tok, "aaabdaaabac", w1, 5);
    int32_t w2[] = {256, 256, 'b'}; /* "a a" first (leftmost), then none fits */
    check_ids(tok, "aaaab", w2, 3);
  }
  tide_tokenizer_free(tok);
  tide_bpe_trainer_free(tr);
  tide_env_free(env);
}

/* "the cat the hat the": words the, Ġcat, Ġthe x2, Ġhat. t-h:3 h-e:3 ->
** "h e" (h < t); t-he:3 -> "t he"; Ġ-the:2 a-t:2 -> "Ġ the" (Ġ = byte 32);
** a-t:2 -> "a t"; then all 1. */
static void test_trace_spaces(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  const char *text[] = {"the cat the hat the"};
  tide_bpe_trainer *tr = train(env, NULL, text, 1, 1000);
  const char *want[] = {"h e", "t he", "\xc4\xa0 the", "a t"};
  if (tr) check_merges(tr, want, 4);
  tide_bpe_trainer_stats s;
  tide_bpe_trainer_get_stats(tr, &s);
  CHECK(s.n_pretokens == 5 && s.n_words == 4 && s.n_vocab == 261);
  tide_tokenizer *tok = tr ? load_written(env, tr) : NULL;
  if (tok) {
    int32_t w1[] = {257, 32, 'c', 259};
    check_ids(tok, "the cat", w1, 4);
    int32_t w2[] = {258, 32, 'h', 259, 258};
    check_ids(tok, " the hat the", w2, 5);
    CHECK(tide_tokenizer_n_vocab(tok) == 261);
    CHECK(tide_tokenizer_bos(tok) == 260 && tide_tokenizer_eos(tok) == 260);
    CHECK(tide_tokenizer_is_eog(tok, 260));
    CHECK(tide_tokenizer_attr(tok, 260) == TIDE_TOKEN_CONTROL);
    CHECK(tide_tokenizer_attr(tok, 257) == TIDE_TOKEN_NORMAL);
    int32_t ids[8];
    CHECK(tokenize(tok, "<|endoftext|>", 13, 1, ids, 8) == 1 && ids[0] == 260);
  }
  tide_tokenizer_free(tok);
  tide_bpe_trainer_free(tr);
  tide_env_free(env);
}

/* Overlapping pairs: "aaaaa" has a-a 4 times; "a a" leaves aa aa a, then
** (with min_count 1) aa-aa:1 and aa-a:1 tie on the left id, the smaller
** right id wins: "aa a" -> aa aaa -> "aa aaa". */
static void test_trace_overlap(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tide_bpe_trainer_params p = tide_bpe_trainer_default_params();
  p.min_count = 1;
  const char *text[] = {"aaaaa"};
  tide_bpe_trainer *tr = train(env, &p, text, 1, 1000);
  const char *want[] = {"a a", "aa a", "aa aaa"};
  if (tr) check_merges(tr, want, 3);
  tide_bpe_trainer_free(tr);
  /* min_count 2 (default) stops after the first */
  tr = train(env, NULL, text, 1, 1000);
  if (tr) check_merges(tr, want, 1);
  /* vocab_size stops it too: 256 bytes + 2 merges + <|endoftext|> */
  tr = (tide_bpe_trainer_free(tr), train(env, &p, text, 1, 259));
  if (tr) check_merges(tr, want, 2);
  tide_bpe_trainer_free(tr);
  tide_env_free(env);
}

/* Special texts are cut out: no word spans them, nothing learns from them. */
static void test_specials_cut(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  const char *text[] = {"ab<|endoftext|>ab<|endoftext|><|endoftext|>"};
  tide_bpe_trainer *tr = train(env, NULL, text, 1, 1000);
  const char *want[] = {"a b"};
  if (tr) check_merges(tr, want, 1);
  tide_bpe_trainer_stats s;
  tide_bpe_trainer_get_stats(tr, &s);
  CHECK(s.n_pretokens == 2 && s.n_words == 1);
  tide_bpe_trainer_free(tr);
  /* several specials, longest first at one position; bos/eos indices */
  tide_bpe_trainer_params p = tide_bpe_trainer_default_params();
  const char *sp[] = {"<s>", "</s>", "<s>x"};
  p.special = sp;
  p.n_special = 3;
  p.bos = 0;
  p.eos = 1;
  const char *t2[] = {"yy<s>xyy</s>yy"};
  tr = train(env, &p, t2, 1, 1000);
  tide_bpe_trainer_get_stats(tr, &s);
  CHECK(s.n_pretokens == 3 && s.n_words == 1 && s.n_merges == 1 && s.n_vocab == 257 + 3);
  tide_tokenizer *tok = tr ? load_written(env, tr) : NULL;
  CHECK(tok && tide_tokenizer_bos(tok) == 257 && tide_tokenizer_eos(tok) == 258);
  tide_tokenizer_free(tok);
  tide_bpe_trainer_free(tr);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- reference */

/* A naive trainer for text of lowercase words and single spaces (where the
** pre-tokenizer's words are " word" and the first "word"): recounts every
** pair before each merge. Returns the merges as "left right" in GPT-2's
** alphabet, one NUL-terminated string each in out (n_merges of them). */
#define REF_MAX_TOK 1024
static int ref_train(const char *text, int vocab_size, char out[][64]) {
  static char tok[REF_MAX_TOK][64];
  static int64_t cnt[REF_MAX_TOK][REF_MAX_TOK];
  int ntok = 256, nm = 0, nw = 0;
  for (int b = 0; b < 256; b++) { tok[b][0] = (char)b; tok[b][1] = 0; }
  int (*sym)[24] = calloc(20000, sizeof *sym);
  int *len = calloc(20000, sizeof *len);
  int64_t *wc = calloc(20000, sizeof *wc);
  for (const char *p = text; *p;) { /* distinct words with counts */
    const char *e = p + 1;
    while (*e && *e != ' ') e++;
    int n = (int)(e - p), w;
    for (w = 0; w < nw; w++) {
      int same = len[w] == n;
      for (int i = 0; same && i < n; i++) same = sym[w][i] == (unsigned char)p[i];
      if (same) break;
    }
    if (w == nw) {
      for (int i = 0; i < n; i++) sym[w][i] = (unsigned char)p[i];
      len[nw++] = n;
    }
    wc[w]++;
    p = e;
  }
  while (ntok < vocab_size - 1 && ntok < REF_MAX_TOK) {
    memset(cnt, 0, sizeof cnt);
    for (int w = 0; w < nw; w++)
      for (int i = 0; i + 1 < len[w]; i++) cnt[sym[w][i]][sym[w][i + 1]] += wc[w];
    int ba = -1, bb = -1;
    for (int a = 0; a < ntok; a++)
      for (int b = 0; b < ntok; b++)
        if (cnt[a][b] >= 2 && (ba < 0 || cnt[a][b] > cnt[ba][bb])) { ba = a; bb = b; }
    if (ba < 0) break;
    char cat[64];
    if (strlen(tok[ba]) + strlen(tok[bb]) >= sizeof cat) break; /* not with this text */
    memcpy(cat, tok[ba], strlen(tok[ba]));
    memcpy(cat + strlen(tok[ba]), tok[bb], strlen(tok[bb]) + 1);
    int id = 0;
    while (id < ntok && strcmp(tok[id], cat) != 0) id++;
    if (id == ntok) memcpy(tok[ntok++], cat, strlen(cat) + 1);
    char *m = out[nm++];
    for (const char *q = tok[ba]; *q; q++) m += *q == ' ' ? sprintf(m, "\xc4\xa0") : sprintf(m, "%c", *q);
    *m++ = ' ';
    for (const char *q = tok[bb]; *q; q++) m += *q == ' ' ? sprintf(m, "\xc4\xa0") : sprintf(m, "%c", *q);
    *m = 0;
    for (int w = 0; w < nw; w++) {
      int o = 0;
      for (int i = 0; i < len[w]; o++) {
        if (i + 1 < len[w] && sym[w][i] == ba && sym[w][i + 1] == bb) { sym[w][o] = id; i += 2; }
        else sym[w][o] = sym[w][i++];
      }
      len[w] = o;
    }
  }
  free(sym);
  free(len);
  free(wc);
  return nm;
}

/* The incremental trainer learns exactly the naive trainer's merges. */
static void test_matches_reference(void) {
  static const char *const syl[] = {"th", "e", "an", "in", "er", "o", "re", "a", "s", "t",
                                    "on", "ing", "ed", "st", "ou", "i", "l", "ch", "m", "y"};
  size_t n = 0, cap = 60000;
  char *text = malloc(cap + 64);
  uint64_t seed = 99;
  while (n < cap) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t v = seed >> 20;
    if (n) text[n++] = ' ';
    for (int k = 1 + (int)(v % 4), j = 0; j < k; j++, v /= 20) {
      const char *x = syl[(v / 7) % (1 + v % 20)];
      memcpy(text + n, x, strlen(x));
      n += strlen(x);
    }
  }
  text[n] = 0;
  char (*want)[64] = calloc(REF_MAX_TOK, sizeof *want);
  int nm = ref_train(text, 700, want);
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  const char *texts[] = {text};
  tide_bpe_trainer *tr = train(env, NULL, texts, 1, 700);
  tide_bpe_trainer_stats s;
  tide_bpe_trainer_get_stats(tr, &s);
  int same = tr && s.n_merges == nm, first_diff = -1;
  for (int i = 0; tr && i < nm && i < s.n_merges; i++)
    if (strcmp(tide_bpe_trainer_merge(tr, i, NULL), want[i]) != 0) { same = 0; first_diff = i; break; }
  CHECKF(same, "%lld merges vs %d of the reference; first difference at %d: '%s' vs '%s'",
         (long long)s.n_merges, nm, first_diff,
         first_diff >= 0 ? tide_bpe_trainer_merge(tr, first_diff, NULL) : "", first_diff >= 0 ? want[first_diff] : "");
  CHECK(nm > 300);
  printf("reference: %d merges identical to the naive trainer's\n", same ? nm : 0);
  tide_bpe_trainer_free(tr);
  tide_env_free(env);
  free(want);
  free(text);
}

/* ---------------------------------------------------------------- round trips */

static void test_roundtrip_any_bytes(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tide_bpe_trainer *tr = train(env, NULL, genesis, N_GENESIS, 400);
  tide_bpe_trainer_stats s;
  tide_bpe_trainer_get_stats(tr, &s);
  CHECKF(s.n_merges > 50 && s.n_vocab <= 400, "%lld merges, %d tokens", (long long)s.n_merges,
         (int)s.n_vocab);
  tide_tokenizer *tok = tr ? load_written(env, tr) : NULL;
  CHECK(tok != NULL);
  if (!tok) { tide_bpe_trainer_free(tr); tide_env_free(env); return; }
  static const char *const fixed[] = {
    "In the beginning God created the heaven and the earth.",
    "And the evening and the morning were the second day.\n\n  indented\ttab\r\n",
    "h\xc3\xa9llo w\xc3\xb6rld \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x8e\x89",
    "\xff\xfe\x80 invalid \xc0\xaf bytes \xed\xa0\x80 and a cut \xe2\x82",
    "it's 1,234.56 -- don't!!  ??? <|endoftext|> {json: [1, 2]}",
    "",
    " ",
    "\x00\x01\x02 nul",
  };
  size_t lens[] = {0, 0, 0, 0, 0, 0, 0, 7};
  int ok = 0, n = (int)(sizeof fixed / sizeof fixed[0]);
  for (int i = 0; i < n; i++) {
    size_t len = lens[i] ? lens[i] : strlen(fixed[i]);
    int r = roundtrip(tok, fixed[i], len);
    ok += r;
    CHECKF(r, "round trip of fixed text %d", i);
  }
  /* the training text compresses: fewer tokens than bytes */
  int32_t ids[512];
  int64_t got = tokenize(tok, genesis[1], strlen(genesis[1]), 0, ids, 512);
  CHECKF(got > 0 && got * 2 < (int64_t)strlen(genesis[1]), "%lld tokens for %zu bytes",
         (long long)got, strlen(genesis[1]));
  /* random byte strings, and random strings of valid code points */
  uint64_t seed = 12345;
  int rnd_ok = 0;
  for (int k = 0; k < 500; k++) {
    char buf[256];
    size_t len = 0, want = (size_t)(k % 200);
    while (len < want) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      unsigned v = (unsigned)(seed >> 33);
      if (k & 1) buf[len++] = (char)(v & 0xFF);
      else { /* a code point of 1..4 bytes */
        unsigned cp = v % 4 == 0 ? 0x20 + v % 95 : v % 4 == 1 ? 0x80 + v % 0x780
                    : v % 4 == 2 ? 0xE000 + v % 0x1000 : 0x10000 + v % 0xFFFF;
        if (cp < 0x80) buf[len++] = (char)cp;
        else if (cp < 0x800) { buf[len++] = (char)(0xC0 | cp >> 6); buf[len++] = (char)(0x80 | (cp & 63)); }
        else if (cp < 0x10000) {
          buf[len++] = (char)(0xE0 | cp >> 12);
          buf[len++] = (char)(0x80 | (cp >> 6 & 63));
          buf[len++] = (char)(0x80 | (cp & 63));
        } else {
          buf[len++] = (char)(0xF0 | cp >> 18);
          buf[len++] = (char)(0x80 | (cp >> 12 & 63));
          buf[len++] = (char)(0x80 | (cp >> 6 & 63));
          buf[len++] = (char)(0x80 | (cp & 63));
        }
      }
    }
    rnd_ok += roundtrip(tok, buf, len);
  }
  CHECKF(rnd_ok == 500, "%d/500 random strings round-trip", rnd_ok);
  printf("round trip: %d/%d fixed, %d/500 random (vocab %d, %lld merges)\n", ok, n, rnd_ok,
         (int)s.n_vocab, (long long)s.n_merges);
  tide_tokenizer_free(tok);
  tide_bpe_trainer_free(tr);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- determinism */

static int same_result(const tide_bpe_trainer *a, const tide_bpe_trainer *b) {
  tide_bpe_trainer_stats sa, sb;
  tide_bpe_trainer_get_stats(a, &sa);
  tide_bpe_trainer_get_stats(b, &sb);
  if (sa.n_vocab != sb.n_vocab || sa.n_merges != sb.n_merges) return 0;
  for (int32_t i = 0; i < sa.n_vocab; i++)
    if (strcmp(tide_bpe_trainer_token(a, i, NULL), tide_bpe_trainer_token(b, i, NULL))) return 0;
  for (int64_t i = 0; i < sa.n_merges; i++)
    if (strcmp(tide_bpe_trainer_merge(a, i, NULL), tide_bpe_trainer_merge(b, i, NULL))) return 0;
  return 1;
}

static void test_deterministic(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  const char *rev[N_GENESIS];
  for (int i = 0; i < N_GENESIS; i++) rev[i] = genesis[N_GENESIS - 1 - i];
  tide_bpe_trainer *a = train(env, NULL, genesis, N_GENESIS, 350);
  tide_bpe_trainer *b = train(env, NULL, genesis, N_GENESIS, 350);
  tide_bpe_trainer *c = train(env, NULL, rev, N_GENESIS, 350);
  CHECK(a && b && c && same_result(a, b));
  CHECK(a && c && same_result(a, c)); /* the order of texts does not matter */
  /* training again on the same trainer gives the same result */
  CHECK(a && tide_bpe_trainer_train(a, 350, NULL, NULL) == TIDE_OK && same_result(a, b));
  tide_bpe_trainer_free(a);
  tide_bpe_trainer_free(b);
  tide_bpe_trainer_free(c);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- errors */

static int cancel_yes(void *ud) { (void)ud; return 1; }

static void count_progress(void *ud, int32_t n_vocab, int32_t vocab_size) {
  int *calls = ud;
  calls[0]++;
  if (n_vocab < calls[1] || n_vocab > vocab_size) calls[2]++; /* not monotonic / past target */
  calls[1] = n_vocab;
}

static void test_errors(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tide_bpe_trainer *tr = NULL;
  tide_bpe_trainer_params p = tide_bpe_trainer_default_params();
  CHECK(p.min_count == 2 && p.special == NULL && p.bos == 0 && p.eos == 0);
  p.min_count = 0;
  CHECK(tide_bpe_trainer_new(env, &p, &tr) == TIDE_ERR_ARG && tr == NULL);
  CHECK(strstr(tide_env_errmsg(env), "min_count") != NULL);
  p = tide_bpe_trainer_default_params();
  const char *sp[] = {"<a>", ""};
  p.special = sp;
  p.n_special = 2;
  CHECK(tide_bpe_trainer_new(env, &p, &tr) == TIDE_ERR_ARG && tr == NULL);
  sp[1] = "<a>";
  CHECK(tide_bpe_trainer_new(env, &p, &tr) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "repeated") != NULL);
  p.n_special = 1;
  p.eos = 1;
  CHECK(tide_bpe_trainer_new(env, &p, &tr) == TIDE_ERR_ARG);
  CHECK(tide_bpe_trainer_new(env, NULL, NULL) == TIDE_ERR_ARG);
  /* a special text equal to a learned token's text: " b" is learned as
  ** "\xc4\xa0b" (GPT-2's alphabet), which is also the special's text */
  const char *sp2[] = {"\xc4\xa0" "b"};
  p = tide_bpe_trainer_default_params();
  p.special = sp2;
  p.n_special = 1;
  CHECK(tide_bpe_trainer_new(env, &p, &tr) == TIDE_OK);
  CHECK(tide_bpe_trainer_add_text(tr, "a b b b", 7) == TIDE_OK);
  CHECK(tide_bpe_trainer_train(tr, 300, NULL, NULL) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "also learned token 256") != NULL);
  tide_bpe_trainer_free(tr);
  CHECK(tide_bpe_trainer_new(env, NULL, &tr) == TIDE_OK);
  CHECK(tide_bpe_trainer_train(tr, 256, NULL, NULL) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "vocab_size 256") != NULL);
  tide_gguf_writer *w = NULL;
  tide_gguf_writer_new(env, &w);
  CHECK(tide_bpe_trainer_write(tr, w) == TIDE_ERR_STATE);
  CHECK(tide_bpe_trainer_add_text(tr, NULL, 3) == TIDE_ERR_ARG);
  CHECK(tide_bpe_trainer_add_text(tr, NULL, 0) == TIDE_OK);
  /* an empty corpus trains to the bytes and the specials */
  CHECK(tide_bpe_trainer_train(tr, 4096, NULL, NULL) == TIDE_OK);
  CHECK(tide_bpe_trainer_write(tr, w) == TIDE_OK);
  tide_bpe_trainer_stats s;
  tide_bpe_trainer_get_stats(tr, &s);
  CHECK(s.n_vocab == 257 && s.n_merges == 0);
  /* add_text discards the result */
  CHECK(tide_bpe_trainer_add_text(tr, genesis[0], strlen(genesis[0])) == TIDE_OK);
  CHECK(tide_bpe_trainer_write(tr, w) == TIDE_ERR_STATE);
  CHECK(tide_bpe_trainer_token(tr, 0, NULL) == NULL);
  /* progress is monotonic and ends at the vocabulary size */
  for (int i = 1; i < N_GENESIS; i++) tide_bpe_trainer_add_text(tr, genesis[i], strlen(genesis[i]));
  int calls[3] = {0, 0, 0};
  CHECK(tide_bpe_trainer_train(tr, 400, count_progress, calls) == TIDE_OK);
  tide_bpe_trainer_get_stats(tr, &s);
  CHECKF(calls[0] >= 2 && calls[2] == 0 && calls[1] == s.n_vocab, "%d calls, last %d, %d bad",
         calls[0], calls[1], calls[2]);
  /* cancellation keeps no result */
  tide_env_set_cancel(env, cancel_yes, NULL);
  CHECK(tide_bpe_trainer_train(tr, 400, NULL, NULL) == TIDE_ERR_CANCELLED);
  CHECK(tide_bpe_trainer_write(tr, w) == TIDE_ERR_STATE);
  tide_env_set_cancel(env, NULL, NULL);
  tide_gguf_writer_free(w);
  tide_bpe_trainer_free(tr);
  tide_bpe_trainer_free(NULL);
  tide_env_free(env);
}

/* Every allocation failing in turn: a clean error, nothing leaked. */
static void test_alloc_failures(void) {
  int done = 0, fails = 0, bad = 0;
  for (long k = 1; !done && k < 100000; k++) {
    test_allocator c = { .fail_at = k };
    tide_env *env = NULL;
    if (tide_env_new(&env, test_alloc_fn, &c) != TIDE_OK) { fails++; continue; }
    tide_bpe_trainer *tr = NULL;
    tide_gguf_writer *w = NULL;
    int st = tide_bpe_trainer_new(env, NULL, &tr);
    for (int i = 0; !st && i < N_GENESIS; i++)
      st = tide_bpe_trainer_add_text(tr, genesis[i], strlen(genesis[i]));
    if (!st) st = tide_bpe_trainer_train(tr, 320, NULL, NULL);
    if (!st) st = tide_gguf_writer_new(env, &w);
    if (!st) st = tide_bpe_trainer_write(tr, w);
    if (st) {
      fails++;
      bad += st != TIDE_ERR_NOMEM;
      if (st != TIDE_ERR_NOMEM)
        fprintf(stderr, "    alloc %ld: status %d (%s)\n", k, st, tide_env_errmsg(env));
    } else {
      done = 1;
    }
    tide_gguf_writer_free(w);
    tide_bpe_trainer_free(tr);
    tide_env_free(env);
    CHECKF(c.live == 0 && c.bad_size == 0, "alloc %ld: %lld bytes live, %ld bad sizes", k, c.live,
           c.bad_size);
    if (c.live || c.bad_size) break;
  }
  CHECK(done);
  CHECKF(bad == 0, "%d failures were not TIDE_ERR_NOMEM", bad);
  printf("allocation failures: %d injected, all clean\n", fails);
}

/* ---------------------------------------------------------------- throughput */

static void test_throughput(void) {
  /* pseudo-English: words of 1-3 syllables, the frequent ones favoured */
  static const char *const syl[] = {
    "the", "an", "in", "er", "on", "re", "at", "en", "ed", "is", "or", "ti", "es", "ar",
    "te", "ng", "al", "it", "as", "ha", "ve", "st", "ou", "le", "co", "me", "de", "hi",
    "ri", "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll", "be", "ma", "si", "om"};
  size_t nsyl = sizeof syl / sizeof syl[0], cap = 2u << 20, n = 0;
  char *text = malloc(cap + 64);
  uint64_t seed = 7;
  while (n < cap) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t v = seed >> 16;
    int k = 1 + (int)(v % 3);
    for (int j = 0; j < k; j++, v /= 64) {
      size_t r = (size_t)(v % 64) % (1 + (size_t)(v / 64) % nsyl); /* skewed to the front */
      const char *x = syl[r % nsyl];
      memcpy(text + n, x, strlen(x));
      n += strlen(x);
    }
    text[n++] = v % 17 == 0 ? '.' : v % 11 == 0 ? ',' : ' ';
    if (v % 97 == 0) text[n++] = '\n';
  }
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tide_bpe_trainer *tr = NULL;
  double t0 = now();
  int st = tide_bpe_trainer_new(env, NULL, &tr);
  for (size_t p = 0; !st && p < n;) { /* lines as texts */
    const char *e = memchr(text + p, '\n', n - p);
    size_t len = e ? (size_t)(e - (text + p)) + 1 : n - p;
    st = tide_bpe_trainer_add_text(tr, text + p, len);
    p += len;
  }
  double t1 = now();
  if (!st) st = tide_bpe_trainer_train(tr, 1024, NULL, NULL);
  double t2 = now();
  CHECK(st == TIDE_OK);
  tide_bpe_trainer_stats s;
  tide_bpe_trainer_get_stats(tr, &s);
  printf("throughput: counting %.1f MB/s (%lld words, %lld distinct), "
         "training %.0f merges/s (%lld merges, vocab %d)\n",
         (double)n / 1e6 / (t1 - t0), (long long)s.n_pretokens, (long long)s.n_words,
         (double)s.n_merges / (t2 - t1 + 1e-9), (long long)s.n_merges, (int)s.n_vocab);
  tide_bpe_trainer_free(tr);
  tide_env_free(env);
  free(text);
}

TEST_MAIN(test_trace_wikipedia, test_trace_spaces, test_trace_overlap, test_specials_cut,
          test_matches_reference, test_roundtrip_any_bytes, test_deterministic, test_errors,
          test_alloc_failures, test_throughput)
