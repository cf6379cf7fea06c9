/*
** bench.c -- `make bench`: decode, prefill and batched-decode speed, each
** beside its limit measured in the same run.
** Layer: tools. Models are random-weight GGUF files of real shapes written by
** tide's own writer into build/bench/ (kept between runs). Limits:
**  - decode roofline = measured read bandwidth / bytes of weights per token;
**  - prefill limit = measured OpenBLAS sgemm GFLOP/s / FLOPs per token.
** Usage: bench [threads] [--quick]   (--quick: the 125M shape only)
*/
#include <cblas.h>
#include <pthread.h>
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

/* ---- memory bandwidth: n threads each sum a disjoint slice, best of 5 */

typedef struct { const float *x; size_t n; double sum; } slice;

static void *sum_slice(void *a) {
  slice *s = a;
  float acc[16] = { 0 };
  for (size_t i = 0; i + 16 <= s->n; i += 16)
    for (int j = 0; j < 16; j++) acc[j] += s->x[i + j];
  for (int j = 0; j < 16; j++) s->sum += acc[j];
  return NULL;
}

static double bandwidth(int n_threads) {
  size_t n = (size_t)1 << 28; /* 1 GiB of floats */
  float *x = malloc(n * sizeof *x);
  if (!x) return 0;
  for (size_t i = 0; i < n; i++) x[i] = (float)(i & 7);
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    pthread_t th[64];
    slice s[64];
    double t0 = now();
    for (int t = 0; t < n_threads; t++) {
      s[t] = (slice){ x + n / (size_t)n_threads * (size_t)t, n / (size_t)n_threads, 0 };
      pthread_create(&th[t], NULL, sum_slice, &s[t]);
    }
    for (int t = 0; t < n_threads; t++) pthread_join(th[t], NULL);
    double dt = now() - t0;
    if (dt < best) best = dt;
  }
  free(x);
  return (double)(n * sizeof(float)) / best / 1e9;
}

/* ---- sgemm peak: (512 x 2048) @ (2048 x 2048), best of 3 */

static double sgemm_gflops(void) {
  int M = 512, N = 2048, K = 2048;
  float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)K * N, 4), *c = calloc((size_t)M * N, 4);
  if (!a || !b || !c) return 0;
  for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.01f;
  for (size_t i = 0; i < (size_t)K * N; i++) b[i] = (float)(i % 5) * 0.01f;
  double best = 1e30;
  for (int r = 0; r < 4; r++) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    double dt = now() - t0;
    if (r > 0 && dt < best) best = dt;
  }
  free(a); free(b); free(c);
  return 2.0 * M * N * K / best / 1e9;
}

/* ---- models */

static void progress(int done, int total) {
  fprintf(stderr, "\r  writing tensors %d/%d", done, total);
  if (done == total) fprintf(stderr, "\n");
}

typedef struct {
  const char *label;
  randmodel_params p;
} shape;

static int die(tide_env *env, const char *what, int st) {
  fprintf(stderr, "bench: %s: %s (%s)\n", what, tide_env_errmsg(env), tide_status_name(st));
  return st;
}

/* Feeds n_seq sequences of n_prompt tokens, then times n_steps decode steps of
** all sequences together; returns tokens/s (all sequences counted). */
static double run_decode(tide_env *env, tide_ctx *ctx, int n_seq, int n_prompt, int n_steps,
                         int32_t n_vocab, int *st) {
  int32_t seqs[8];
  tide_batch_row rows[512];
  double t = 0;
  for (int s = 0; s < n_seq; s++) {
    if ((*st = tide_seq_new(ctx, &seqs[s]))) { die(env, "seq", *st); return 0; }
    for (int i = 0; i < n_prompt; i++) rows[i] = (tide_batch_row){ seqs[s], i, (17 * i + s) % n_vocab, i == n_prompt - 1 };
    if ((*st = tide_decode(ctx, rows, n_prompt))) { die(env, "prefill", *st); return 0; }
  }
  for (int k = 0; k < n_steps + 1; k++) {
    for (int s = 0; s < n_seq; s++) rows[s] = (tide_batch_row){ seqs[s], n_prompt + k, (31 * k + s) % n_vocab, 1 };
    double t0 = now();
    if ((*st = tide_decode(ctx, rows, n_seq))) { die(env, "decode", *st); return 0; }
    if (k > 0) t += now() - t0; /* the first step warms caches */
  }
  for (int s = 0; s < n_seq; s++) tide_seq_free(ctx, seqs[s]);
  return n_seq * n_steps / t;
}

static double run_prefill(tide_env *env, tide_ctx *ctx, int n, int32_t n_vocab, int *st) {
  int32_t seq;
  tide_batch_row *rows = malloc(sizeof *rows * (size_t)n);
  if (!rows) { *st = TIDE_ERR_NOMEM; return 0; }
  if ((*st = tide_seq_new(ctx, &seq))) { free(rows); die(env, "seq", *st); return 0; }
  for (int i = 0; i < n; i++) rows[i] = (tide_batch_row){ seq, i, (13 * i) % n_vocab, i == n - 1 };
  double t0 = now();
  *st = tide_decode(ctx, rows, n);
  double dt = now() - t0;
  if (*st) die(env, "prefill", *st);
  tide_seq_free(ctx, seq);
  free(rows);
  return n / dt;
}

int main(int argc, char **argv) {
  int n_threads = 2, quick = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) quick = 1;
    else n_threads = atoi(argv[i]);
  }
  shape shapes[] = {
    { "125M Q8_0", { "bench-125m", 32000, 768, 12, 12, 12, 2048, 2048, TIDE_Q8_0, 0, 1 } },
    { "1.1B F16", { "bench-1.1b", 32000, 2048, 22, 32, 4, 5632, 2048, TIDE_F16, 0, 2 } },
    { "1.1B Q8_0", { "bench-1.1b", 32000, 2048, 22, 32, 4, 5632, 2048, TIDE_Q8_0, 0, 2 } },
    { "1.1B Q4_0", { "bench-1.1b", 32000, 2048, 22, 32, 4, 5632, 2048, TIDE_Q4_0, 0, 2 } },
  };
  int n_shapes = quick ? 1 : 4;
  tide_env *env = NULL;
  if (tide_env_new(&env, NULL, NULL) || tide_env_set_threads(env, n_threads)) return 1;
  mkdir("build", 0755);
  mkdir("build/bench", 0755);

  fprintf(stderr, "measuring memory bandwidth (%d threads) and sgemm...\n", n_threads);
  double bw = bandwidth(n_threads), gf = sgemm_gflops();
  printf("tide bench: %d threads, %s kernels; read bandwidth %.1f GB/s; sgemm %.1f GFLOP/s\n\n",
         n_threads, tide_env_isa(env), bw, gf);
  printf("| model | weights MB | decode tok/s | roofline tok/s | %% | prefill-512 tok/s | sgemm limit tok/s | %% | batch 1 | batch 4 | batch 8 | 8 vs 1 |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < n_shapes; i++) {
    shape *s = &shapes[i];
    char path[256];
    snprintf(path, sizeof path, "build/bench/%s-%s.gguf", s->p.name, tide_dtype_name(s->p.dtype));
    struct stat sb;
    int st;
    if (stat(path, &sb) != 0) {
      fprintf(stderr, "%s: writing %s\n", s->label, path);
      if ((st = randmodel_write(env, path, &s->p, progress))) return die(env, path, st);
    }
    tide_model *m = NULL;
    tide_ctx *ctx = NULL;
    if ((st = tide_model_load(env, path, NULL, &m))) return die(env, path, st);
    tide_model_info info;
    tide_model_get_info(m, &info);
    tide_ctx_params cp = tide_ctx_default_params();
    cp.n_ctx = 1024;
    cp.n_cells = 2048;
    cp.n_batch = 512;
    if ((st = tide_ctx_new(m, &cp, &ctx))) return die(env, "context", st);
    fprintf(stderr, "%s: decode...\n", s->label);
    double dec = run_decode(env, ctx, 1, 16, 32, info.n_vocab, &st);
    double roof = bw * 1e9 / (double)info.weight_bytes;
    fprintf(stderr, "%s: batched decode...\n", s->label);
    double b4 = run_decode(env, ctx, 4, 16, 16, info.n_vocab, &st);
    double b8 = run_decode(env, ctx, 8, 16, 16, info.n_vocab, &st);
    fprintf(stderr, "%s: prefill 512...\n", s->label);
    double pre = run_prefill(env, ctx, 512, info.n_vocab, &st);
    /* FLOPs per prompt token: 2 per weight of the block matrices and output */
    double flops = 2.0 * (double)(info.n_layer) *
                   ((double)info.n_embd * info.head_dim * (info.n_head * 2 + info.n_kv_head * 2) +
                    3.0 * info.n_embd * info.n_ff) + 2.0 * info.n_embd * info.n_vocab / 512.0;
    double pre_lim = gf * 1e9 / flops;
    printf("| %s | %.0f | %.1f | %.1f | %.0f%% | %.1f | %.1f | %.0f%% | %.1f | %.1f | %.1f | %.1fx |\n",
           s->label, (double)info.weight_bytes / 1e6, dec, roof, 100 * dec / roof, pre, pre_lim,
           100 * pre / pre_lim, dec, b4, b8, b8 / dec);
    fflush(stdout);
    tide_ctx_free(ctx);
    tide_model_free(m);
  }
  tide_env_free(env);
  return 0;
}
