/*
** train_tokenizer.c -- trains tide's byte-level BPE tokenizer on the corpus.
** Layer: tools. Reads build/corpus/train.txt (build/release/tide models/corpus.lua makes it;
** documents end with "<|endoftext|>"), learns a vocabulary with
** tide_bpe_trainer, writes build/corpus/tokenizer.gguf (tokenizer.ggml.*
** only), then loads it back with tide_tokenizer_new and reports bytes per
** token on build/corpus/heldout.txt and that every document round-trips.
**
**   train_tokenizer [train.txt [tokenizer.gguf [vocab_size [heldout.txt]]]]
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tide.h"

#define CHUNK (1u << 20) /* bytes per add_text call, cut after a special */
#define EOT "<|endoftext|>"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1u << 20, len = 0, got;
  char *b = malloc(cap);
  while (b && (got = fread(b + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap) {
      char *nb = realloc(b, cap *= 2);
      if (!nb) { free(b); b = NULL; }
      else b = nb;
    }
  }
  fclose(f);
  *n = len;
  return b;
}

/* The end of the chunk starting at p: just after the last "<|endoftext|>"
** within CHUNK bytes (the trainer cuts there anyway, so the counts are
** exactly those of the whole file), else after the last newline. */
static size_t chunk_end(const char *s, size_t n, size_t p) {
  if (n - p <= CHUNK) return n;
  size_t lim = p + CHUNK, best = 0;
  for (const char *q = s + p; (q = memmem(q, (size_t)(s + lim - q), EOT, strlen(EOT)));
       q += strlen(EOT))
    best = (size_t)(q - s) + strlen(EOT);
  if (best) return best;
  for (size_t i = lim; i > p; i--)
    if (s[i - 1] == '\n') return i;
  return lim;
}

static void progress(void *ud, int32_t n_vocab, int32_t vocab_size) {
  double t0 = *(double *)ud;
  fprintf(stderr, "\rtraining: %5d/%d tokens  %5.1f s", (int)n_vocab, (int)vocab_size,
          now() - t0);
  if (n_vocab == vocab_size) fputc('\n', stderr);
}

static int fail(tide_env *env, const char *what, int st) {
  fprintf(stderr, "\ntrain_tokenizer: %s: %s (%s)\n", what, tide_env_errmsg(env),
          tide_status_name(st));
  return 1;
}

/* Bytes per token on the held-out text and whether every document
** (the text between "<|endoftext|>") detokenizes to itself. */
static int evaluate(tide_env *env, const char *gguf, const char *path) {
  size_t n;
  char *text = read_all(path, &n);
  if (!text) { printf("held-out: %s not found, skipped\n", path); return 0; }
  tide_gguf *g = NULL;
  tide_tokenizer *tok = NULL;
  int st = tide_gguf_open(env, gguf, &g);
  if (!st) st = tide_tokenizer_new(env, g, &tok);
  tide_gguf_free(g);
  if (st) { free(text); return fail(env, "loading the written tokenizer", st); }
  int64_t n_tok = 0, n_doc = 0, n_bad = 0, cap = 1 << 16;
  int32_t *ids = malloc((size_t)cap * sizeof *ids);
  char *back = NULL;
  size_t back_cap = 0;
  for (size_t p = 0; ids && p < n;) {
    const char *e = memmem(text + p, n - p, EOT, strlen(EOT));
    size_t len = e ? (size_t)(e - (text + p)) : n - p, got_b = 0;
    int64_t got = 0;
    while ((st = tide_tokenize(tok, text + p, len, 0, 0, ids, cap, &got)) == TIDE_ERR_FULL) {
      int32_t *ni = realloc(ids, (size_t)got * sizeof *ids);
      if (!ni) break;
      ids = ni;
      cap = got;
    }
    if (len + 1 > back_cap) {
      free(back);
      back = malloc(back_cap = 2 * len + 1);
    }
    if (st || !back || tide_detokenize(tok, ids, got, back, back_cap, &got_b) ||
        got_b != len || memcmp(back, text + p, len) != 0)
      n_bad++;
    n_tok += got + 1; /* the document's <|endoftext|> */
    n_doc++;
    p += len + (e ? strlen(EOT) : 0);
  }
  printf("held-out: %s, %.2f MB, %lld documents, %lld tokens (with <|endoftext|>), "
         "%.2f bytes/token, %lld documents fail to round-trip\n",
         path, (double)n / 1e6, (long long)n_doc, (long long)n_tok,
         (double)n / (double)(n_tok ? n_tok : 1), (long long)n_bad);
  free(back);
  free(ids);
  free(text);
  tide_tokenizer_free(tok);
  return n_bad != 0;
}

int main(int argc, char **argv) {
  const char *in = argc > 1 ? argv[1] : "build/corpus/train.txt";
  const char *out = argc > 2 ? argv[2] : "build/corpus/tokenizer.gguf";
  int32_t vocab = argc > 3 ? (int32_t)atoi(argv[3]) : 4096;
  const char *heldout = argc > 4 ? argv[4] : "build/corpus/heldout.txt";
  tide_env *env = NULL;
  tide_bpe_trainer *tr = NULL;
  tide_gguf_writer *w = NULL;
  int st, rc = 1;
  size_t n;
  char *text = read_all(in, &n);
  if (!text) {
    fprintf(stderr, "train_tokenizer: cannot read %s (run build/release/tide models/corpus.lua first)\n", in);
    return 1;
  }
  if (tide_env_new(&env, NULL, NULL)) return 1;
  double t0 = now();
  if ((st = tide_bpe_trainer_new(env, NULL, &tr))) { rc = fail(env, "new", st); goto done; }
  for (size_t p = 0; p < n;) {
    size_t e = chunk_end(text, n, p);
    if ((st = tide_bpe_trainer_add_text(tr, text + p, e - p))) {
      rc = fail(env, "counting words", st);
      goto done;
    }
    p = e;
    fprintf(stderr, "\rcounting: %5.1f%% of %.1f MB  %5.1f s", 100.0 * (double)p / (double)n,
            (double)n / 1e6, now() - t0);
  }
  fputc('\n', stderr);
  double t1 = now();
  if ((st = tide_bpe_trainer_train(tr, vocab, progress, &t1))) {
    rc = fail(env, "training", st);
    goto done;
  }
  double t2 = now();
  tide_bpe_trainer_stats s;
  tide_bpe_trainer_get_stats(tr, &s);
  if (s.n_vocab != vocab) fputc('\n', stderr);
  char name[64];
  snprintf(name, sizeof name, "tide-bpe-%d", (int)s.n_vocab);
  if ((st = tide_gguf_writer_new(env, &w)) ||
      (st = tide_gguf_writer_set_str(w, "general.name", name, strlen(name))) ||
      (st = tide_bpe_trainer_write(tr, w)) || (st = tide_gguf_writer_write(w, out, 3))) {
    rc = fail(env, out, st);
    goto done;
  }
  printf("corpus: %s, %.2f MB, %lld words (%lld distinct)\n", in, (double)s.n_bytes / 1e6,
         (long long)s.n_pretokens, (long long)s.n_words);
  printf("vocabulary: %d tokens (256 bytes, %lld merges, 1 special) in %.1f s "
         "(counting %.1f s, merging %.1f s) -> %s\n",
         (int)s.n_vocab, (long long)s.n_merges, t2 - t0, t1 - t0, t2 - t1, out);
  printf("last merges:");
  for (int64_t i = s.n_merges > 8 ? s.n_merges - 8 : 0; i < s.n_merges; i++)
    printf(" [%s]", tide_bpe_trainer_merge(tr, i, NULL));
  printf("\n");
  rc = evaluate(env, out, heldout);
done:
  tide_gguf_writer_free(w);
  tide_bpe_trainer_free(tr);
  tide_env_free(env);
  free(text);
  return rc;
}
