/*
** demo.c -- `make demo`: a timed greedy generation on tide's bundled model
** (models/tide-small.gguf). Layer: tools. Given a path that does not exist
** (or without the bundled model), it writes a small llama-architecture model
** with random weights through tide's GGUF writer, loads it back like any GGUF
** file, and generates from it: noise by construction, real path and speed.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "randmodel.h"
#include "tide.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(tide_env *env, const char *what, int st) {
  fprintf(stderr, "demo: %s: %s (%s)\n", what, tide_env_errmsg(env), tide_status_name(st));
  return 1;
}

static int32_t argmax(const float *x, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; i++) if (x[i] > x[best]) best = i;
  return best;
}

int main(int argc, char **argv) {
  /* the bundled model when it is there, else a random-weight one */
  struct stat sb0;
  const char *path = argc > 1 ? argv[1]
                     : stat("models/tide-small.gguf", &sb0) == 0 ? "models/tide-small.gguf"
                                                                 : "build/demo/random-llama.gguf";
  const char *prompt = "The tide comes in";
  int n_gen = 64;
  tide_env *env = NULL;
  tide_model *m = NULL;
  tide_ctx *ctx = NULL;
  int st, rc = 1;
  if (tide_env_new(&env, NULL, NULL)) return 1;
  tide_env_set_threads(env, 2);
  struct stat sb;
  if (stat(path, &sb) != 0) {
    randmodel_params p = { "tide-demo-random", 4096, 256, 4, 8, 4, 768, 512, TIDE_Q8_0, 1, 42 };
    mkdir("build", 0755);
    mkdir("build/demo", 0755);
    printf("writing a random-weight model (llama, n_embd %d, %d layers, Q8_0) to %s\n",
           p.n_embd, p.n_layer, path);
    if ((st = randmodel_write(env, path, &p, NULL))) { rc = fail(env, "write", st); goto done; }
  }
  double t0 = now();
  if ((st = tide_model_load(env, path, NULL, &m))) { rc = fail(env, path, st); goto done; }
  tide_model_info info;
  tide_model_get_info(m, &info);
  printf("loaded %s: %s, %d layers, n_embd %d, n_vocab %d, %.1f MB of weights, %.1f ms\n",
         info.name, info.arch, info.n_layer, info.n_embd, info.n_vocab,
         (double)info.weight_bytes / 1e6, 1e3 * (now() - t0));
  tide_ctx_params cp = tide_ctx_default_params();
  cp.n_ctx = 512;
  if ((st = tide_ctx_new(m, &cp, &ctx))) { rc = fail(env, "context", st); goto done; }
  const tide_tokenizer *tok = tide_model_tokenizer(m);
  int32_t ids[512];
  int64_t n;
  if ((st = tide_tokenize(tok, prompt, strlen(prompt), 0, 0, ids, 512, &n))) { rc = fail(env, "tokenize", st); goto done; }
  int32_t seq;
  if ((st = tide_seq_new(ctx, &seq))) { rc = fail(env, "sequence", st); goto done; }
  tide_batch_row rows[512];
  for (int64_t i = 0; i < n; i++) rows[i] = (tide_batch_row){ seq, (int32_t)i, ids[i], i == n - 1 };
  t0 = now();
  if ((st = tide_decode(ctx, rows, (int32_t)n))) { rc = fail(env, "prefill", st); goto done; }
  double t_prefill = now() - t0;
  printf("prompt (%lld tokens, %.2f ms): %s", (long long)n, 1e3 * t_prefill, prompt);
  fflush(stdout);
  tide_detok dt = { 0 };
  char buf[256];
  size_t nb;
  t0 = now();
  for (int k = 0; k < n_gen; k++) {
    int32_t id = argmax(tide_ctx_logits(ctx, 0), info.n_vocab);
    if (tide_detok_push(tok, &dt, id, buf, sizeof buf, &nb) == TIDE_OK) fwrite(buf, 1, nb, stdout);
    tide_batch_row r = { seq, (int32_t)(n + k), id, 1 };
    if ((st = tide_decode(ctx, &r, 1))) { rc = fail(env, "decode", st); goto done; }
  }
  double t_gen = now() - t0;
  if (tide_detok_flush(tok, &dt, buf, sizeof buf, &nb) == TIDE_OK) fwrite(buf, 1, nb, stdout);
  printf("\n\ngreedy: %d tokens in %.3f s = %.1f tokens/s (2 threads, %s kernels)\n",
         n_gen, t_gen, n_gen / t_gen, tide_env_isa(env));
  if (strstr(path, "random")) printf("(random weights: the text is noise)\n");
  rc = 0;
done:
  tide_ctx_free(ctx);
  tide_model_free(m);
  tide_env_free(env);
  return rc;
}
