/*
** test_inject.c -- hidden-state injection (tide_ctx_inject): a position's own
** captured vector injected at the same layer reproduces the forward bit for
** bit (logits and the K/V later tokens read), ADD at the last layer equals
** the logit lens of the sum, a foreign vector changes the output, the
** queue lasts one decode, and bad arguments fail cleanly. Runs on the
** bundled model and on every fixture architecture present.
** Layer: tests (C unit tests of core/).
*/
#include <stdint.h>

#include "model.h"
#include "test.h"

static tide_env *env;

static tide_model *load(const char *path) {
  tide_model *m = NULL;
  int st = tide_model_load(env, path, NULL, &m);
  CHECKF(st == TIDE_OK, "load %s: %s", path, tide_env_errmsg(env));
  return st == TIDE_OK ? m : NULL;
}

static tide_ctx *new_ctx(tide_model *m) {
  tide_ctx_params cp = tide_ctx_default_params();
  cp.kv_type = TIDE_F32;
  cp.n_batch = 16;
  cp.n_ctx = 64;
  tide_ctx *c = NULL;
  int st = tide_ctx_new(m, &cp, &c);
  CHECKF(st == TIDE_OK, "ctx_new: %s", tide_env_errmsg(env));
  return c;
}

#define N_PROMPT 7
#define ROW 3 /* the position injected (not the last: its effect reaches the
                 output only through the K/V it stores) */

/* Prompt ids valid in any vocabulary of >= 300 tokens. */
static int32_t prompt_id(int i) { return (int32_t)(257 + 5 * i); }

/* Feeds the prompt to a new sequence, logits of the last row, then one more
** token; copies both logits rows (n_vocab each) to out0 and out1. */
static int run(tide_ctx *c, float *out0, float *out1) {
  int32_t V = c->m->n_vocab, seq = -1;
  CHECK(tide_seq_new(c, &seq) == TIDE_OK);
  tide_batch_row rows[N_PROMPT];
  for (int i = 0; i < N_PROMPT; i++)
    rows[i] = (tide_batch_row){ seq, i, prompt_id(i), i == N_PROMPT - 1 };
  int st = tide_decode(c, rows, N_PROMPT);
  if (st == TIDE_OK && out0) memcpy(out0, tide_ctx_logits(c, 0), sizeof(float) * (size_t)V);
  if (st == TIDE_OK && out1) {
    tide_batch_row r = { seq, N_PROMPT, 300, 1 };
    CHECK(tide_decode(c, &r, 1) == TIDE_OK);
    memcpy(out1, tide_ctx_logits(c, 0), sizeof(float) * (size_t)V);
  }
  tide_seq_free(c, seq);
  return st;
}

static int same(const float *a, const float *b, int32_t n) {
  return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

static double max_diff(const float *a, const float *b, int32_t n) {
  double mx = 0;
  for (int32_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (!(d <= mx)) mx = d;
  }
  return mx;
}

static void check_model(const char *path) {
  tide_env_new(&env, test_count_alloc, NULL);
  tide_model *m = load(path);
  if (!m) { tide_env_free(env); return; }
  tide_ctx *c = new_ctx(m);
  int32_t V = m->n_vocab, e = m->n_embd, nl = m->n_layer;
  size_t vb = sizeof(float) * (size_t)V;
  float *plain0 = malloc(vb), *plain1 = malloc(vb), *keep0 = malloc(vb), *keep1 = malloc(vb);
  float *a0 = malloc(vb), *a1 = malloc(vb);
  float *h = malloc(sizeof(float) * (size_t)(nl + 1) * (size_t)(N_PROMPT * e));

  /* baselines: plain, and with every layer captured (the last block keeps
  ** every row, as it does with an injection at layer n_layer) */
  CHECK(run(c, plain0, plain1) == TIDE_OK);
  int32_t layers[64];
  for (int32_t l = 0; l <= nl; l++) layers[l] = l;
  CHECK(tide_ctx_capture(c, layers, nl + 1) == TIDE_OK);
  CHECK(run(c, keep0, NULL) == TIDE_OK);
  for (int32_t l = 0; l <= nl; l++)
    for (int r = 0; r < N_PROMPT; r++)
      memcpy(h + ((size_t)l * N_PROMPT + r) * e, tide_ctx_hidden(c, l, r), sizeof(float) * (size_t)e);
  CHECK(run(c, NULL, keep1) == TIDE_OK);
  CHECK(tide_ctx_capture(c, NULL, 0) == TIDE_OK);

  /* 1. a position's own vector at the same layer: the same forward, bit for bit */
  for (int32_t l = 0; l <= nl; l++) {
    for (int r = ROW; r < N_PROMPT; r += N_PROMPT - 1 - ROW) {
      const float *hv = h + ((size_t)l * N_PROMPT + r) * e;
      CHECK(tide_ctx_inject(c, l, r, hv, TIDE_INJECT_REPLACE) == TIDE_OK);
      CHECK(run(c, a0, a1) == TIDE_OK);
      const float *b0 = l == nl ? keep0 : plain0;
      CHECKF(same(a0, b0, V), "%s: layer %d row %d: logits differ by %g", path, (int)l, r,
             max_diff(a0, b0, V));
      CHECKF(same(a1, plain1, V), "%s: layer %d row %d: next token differs by %g", path, (int)l, r,
             max_diff(a1, plain1, V));
    }
  }

  /* 2. a foreign vector (another row's) at a middle layer changes the next
  ** tokens through the K/V the row stored */
  int32_t lm = nl / 2;
  CHECK(tide_ctx_inject(c, lm, ROW, h + ((size_t)lm * N_PROMPT + 0) * e, TIDE_INJECT_REPLACE) == TIDE_OK);
  CHECK(run(c, a0, a1) == TIDE_OK);
  CHECK(max_diff(a0, plain0, V) > 1e-4);
  CHECK(max_diff(a1, plain1, V) > 1e-4);
  /* the queue lasted one decode */
  CHECK(run(c, a0, a1) == TIDE_OK);
  CHECK(same(a0, plain0, V) && same(a1, plain1, V));

  /* 3. ADD at layer n_layer on the last row: the logit lens of h + v */
  float *v = malloc(sizeof(float) * (size_t)e), *sum = malloc(sizeof(float) * (size_t)e);
  const float *hl = h + ((size_t)nl * N_PROMPT + N_PROMPT - 1) * e;
  for (int32_t j = 0; j < e; j++) v[j] = (float)((j % 7) - 3) * 0.05f, sum[j] = hl[j] + v[j];
  CHECK(tide_ctx_inject(c, nl, N_PROMPT - 1, v, TIDE_INJECT_ADD) == TIDE_OK);
  CHECK(run(c, a0, NULL) == TIDE_OK);
  CHECK(tide_ctx_project(c, sum, 1, 1, a1) == TIDE_OK);
  CHECKF(max_diff(a0, a1, V) <= 1e-4, "%s: add at n_layer vs lens: %g", path, max_diff(a0, a1, V));
  CHECK(max_diff(a0, keep0, V) > 1e-4);
  /* two ADDs of v/2... in queue order equal one REPLACE by h + v within rounding */
  for (int32_t j = 0; j < e; j++) v[j] *= 0.5f;
  CHECK(tide_ctx_inject(c, nl, N_PROMPT - 1, v, TIDE_INJECT_ADD) == TIDE_OK);
  CHECK(tide_ctx_inject(c, nl, N_PROMPT - 1, v, TIDE_INJECT_ADD) == TIDE_OK);
  CHECK(run(c, a1, NULL) == TIDE_OK);
  CHECK(max_diff(a0, a1, V) <= 1e-4);

  /* 4. errors leave the context usable */
  v[0] = NAN;
  CHECK(tide_ctx_inject(c, 0, 0, v, TIDE_INJECT_ADD) == TIDE_ERR_ARG);
  v[0] = 0;
  CHECK(tide_ctx_inject(c, nl + 1, 0, v, TIDE_INJECT_ADD) == TIDE_ERR_ARG);
  CHECK(tide_ctx_inject(c, -1, 0, v, TIDE_INJECT_ADD) == TIDE_ERR_ARG);
  CHECK(tide_ctx_inject(c, 0, -1, v, TIDE_INJECT_ADD) == TIDE_ERR_ARG);
  CHECK(tide_ctx_inject(c, 0, 16, v, TIDE_INJECT_ADD) == TIDE_ERR_ARG);
  CHECK(tide_ctx_inject(c, 0, 0, v, 2) == TIDE_ERR_ARG);
  CHECK(tide_ctx_inject(c, 0, 0, NULL, TIDE_INJECT_ADD) == TIDE_ERR_ARG);
  CHECK(tide_ctx_inject(c, 0, N_PROMPT, v, TIDE_INJECT_ADD) == TIDE_OK); /* row past the decode */
  CHECK(run(c, a0, NULL) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "row 7") != NULL);
  CHECK(run(c, a0, a1) == TIDE_OK); /* the queue was emptied */
  CHECK(same(a0, plain0, V) && same(a1, plain1, V));
  CHECK(tide_ctx_inject(c, 0, 0, v, TIDE_INJECT_ADD) == TIDE_OK);
  tide_ctx_clear_injections(c);
  CHECK(run(c, a0, NULL) == TIDE_OK && same(a0, plain0, V));
  int n_ok = 0, st = TIDE_OK;
  while ((st = tide_ctx_inject(c, 0, 0, v, TIDE_INJECT_ADD)) == TIDE_OK && n_ok <= TIDE_INJECT_MAX) n_ok++;
  CHECK(n_ok == TIDE_INJECT_MAX && st == TIDE_ERR_ARG);
  tide_ctx_clear_injections(c);

  free(v), free(sum), free(h);
  free(plain0), free(plain1), free(keep0), free(keep1), free(a0), free(a1);
  tide_ctx_free(c);
  tide_model_free(m);
  tide_env_free(env);
  CHECKF(test_live_bytes == 0, "%s: %lld bytes live", path, test_live_bytes);
}

static void test_bundled(void) { check_model("models/tide-small.gguf"); }

static void test_fixture_archs(void) {
  const char *fx = test_fixtures();
  if (!fx) SKIP("no fixtures");
  const char *names[] = { "llama-spm-tiny", "llama-spm-tiny-q8_0", "qwen2-tiny", "gpt2-tiny" };
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char p[512];
    snprintf(p, sizeof p, "%s/models/%s.gguf", fx, names[i]);
    check_model(p);
  }
}

TEST_MAIN(test_bundled, test_fixture_archs)
