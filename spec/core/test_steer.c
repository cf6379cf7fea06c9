/*
** test_steer.c -- steering and introspection: LM-Steer against the formula
** (I + eps W) on the output embeddings, eps = 0 bit for bit, composition,
** per-sequence sets in one batch, forks, files, the SVD, input steers,
** control vectors (llama.cpp's layout) and hidden-state capture / the logit
** lens. Layer: tests (C unit tests of core/).
*/
#include <stdint.h>
#include <unistd.h>

#include "model.h"
#include "steer.h"
#include "test.h"

/* ---------------------------------------------------------------- helpers */


static tide_env *new_env(void) {
  tide_env *env = NULL;
  tide_env_new(&env, test_count_alloc, NULL);
  return env;
}

static tide_model *load(tide_env *env, const char *name) {
  char p[512];
  snprintf(p, sizeof p, "%s/models/%s.gguf", test_fixtures(), name);
  tide_model *m = NULL;
  int st = tide_model_load(env, p, NULL, &m);
  CHECKF(st == TIDE_OK, "load %s: %s", name, tide_env_errmsg(env));
  return m;
}

static tide_ctx *new_ctx(tide_model *m) {
  tide_ctx_params cp = tide_ctx_default_params();
  cp.kv_type = TIDE_F32;
  cp.n_batch = 32;
  cp.n_ctx = 64;
  tide_ctx *c = NULL;
  int st = tide_ctx_new(m, &cp, &c);
  CHECKF(st == TIDE_OK, "ctx_new: %s", tide_env_errmsg(m->env));
  return c;
}

static const int32_t PROMPT[] = { 1, 450, 4996, 17354, 1701, 29916, 432, 17204 };
#define N_PROMPT 8

/* Feeds PROMPT to a new sequence (logits of the last row); returns the seq. */
static int32_t feed_prompt(tide_ctx *c) {
  int32_t seq = -1;
  CHECK(tide_seq_new(c, &seq) == TIDE_OK);
  tide_batch_row rows[N_PROMPT];
  for (int i = 0; i < N_PROMPT; i++) rows[i] = (tide_batch_row){ seq, i, PROMPT[i], i == N_PROMPT - 1 };
  int st = tide_decode(c, rows, N_PROMPT);
  CHECKF(st == TIDE_OK, "decode: %s", tide_env_errmsg(c->env));
  return seq;
}

static uint64_t rng = 88172645463325252ULL;
static float frand(void) { /* uniform in [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

/* A steer of random P1, P2 (n_embd, rank), entries in [-s, s). */
static tide_steer *rand_steer(tide_env *env, int32_t d, int32_t r, float s) {
  float *p1 = malloc(sizeof(float) * (size_t)(d * r)), *p2 = malloc(sizeof(float) * (size_t)(d * r));
  for (int i = 0; i < d * r; i++) p1[i] = s * frand(), p2[i] = s * frand();
  tide_steer *st = NULL;
  CHECK(tide_steer_new(env, d, r, p1, p2, 1e-3f, &st) == TIDE_OK);
  free(p1);
  free(p2);
  return st;
}

static double max_diff(const float *a, const float *b, long n) {
  double mx = 0;
  for (long i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (!(d <= mx)) mx = d;
  }
  return mx;
}

static float *copy_logits(tide_ctx *c, int32_t i) {
  int32_t n = c->m->n_vocab;
  float *x = malloc(sizeof(float) * (size_t)n);
  memcpy(x, tide_ctx_logits(c, i), sizeof(float) * (size_t)n);
  return x;
}

/* ---------------------------------------------------------------- LM-Steer */

/* eps = 0 (and an empty set) leave the logits identical, bit for bit. */
static void test_eps_zero_bitwise(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  const char *models[] = { "llama-spm-tiny", "gpt2-tiny", "llama-spm-tiny-q8_0" };
  for (int mi = 0; mi < 3; mi++) {
    tide_env *env = new_env();
    tide_model *m = load(env, models[mi]);
    if (!m) { tide_env_free(env); continue; }
    tide_ctx *c = new_ctx(m);
    int32_t seq = feed_prompt(c);
    float *ref = copy_logits(c, 0);
    tide_steer *s = rand_steer(env, m->n_embd, 4, 0.5f);
    tide_steer_entry e[2] = { { s, 0.0f, TIDE_STEER_OUTPUT }, { s, 0.0f, TIDE_STEER_INPUT } };
    CHECK(tide_ctx_set_steers(c, -1, e, 2) == TIDE_OK);
    tide_seq_free(c, seq);
    feed_prompt(c);
    CHECKF(memcmp(ref, tide_ctx_logits(c, 0), sizeof(float) * (size_t)m->n_vocab) == 0,
           "%s: eps 0 changed the logits", models[mi]);
    free(ref);
    tide_steer_free(s);
    tide_ctx_free(c);
    tide_model_free(m);
    tide_env_free(env);
    CHECK(test_live_bytes == 0);
  }
}

/* RMSNorm of the final layer, as forward.c (sums in double). */
static void final_norm(const tide_model *m, const float *h, float *c) {
  double sum = 0;
  for (int i = 0; i < m->n_embd; i++) sum += (double)(h[i] * h[i]);
  float scale = 1.0f / sqrtf((float)(sum / m->n_embd) + m->norm_eps);
  for (int i = 0; i < m->n_embd; i++) c[i] = (h[i] * scale) * m->out_norm[i];
}

/* logits'_v = c . (I + eps W) e_v with W = P1 P2^T, computed in double from
** the (F32, tied) embedding rows, against the steered decode. */
static void test_formula(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *m = load(env, "llama-spm-tiny");
  if (!m) { tide_env_free(env); return; }
  int32_t d = m->n_embd, r = 5, V = m->n_vocab, nl = m->n_layer;
  tide_ctx *c = new_ctx(m);
  int32_t layer = nl;
  CHECK(tide_ctx_capture(c, &layer, 1) == TIDE_OK);
  feed_prompt(c);
  float *base = copy_logits(c, 0);
  float h[64], cn[64];
  const float *hp = tide_ctx_hidden(c, nl, N_PROMPT - 1);
  CHECK(hp != NULL);
  if (!hp) goto done;
  memcpy(h, hp, sizeof h);
  final_norm(m, h, cn);
  /* the logit lens at the last layer is the model's logits */
  float *lens = malloc(sizeof(float) * (size_t)V);
  CHECK(tide_ctx_project(c, h, 1, 1, lens) == TIDE_OK);
  CHECKF(max_diff(lens, base, V) <= 1e-5, "lens vs logits: %g", max_diff(lens, base, V));
  free(lens);
  tide_steer *s = rand_steer(env, d, r, 0.3f);
  const float eps = 0.7f;
  tide_steer_entry e = { s, eps, TIDE_STEER_OUTPUT };
  CHECK(tide_ctx_set_steers(c, -1, &e, 1) == TIDE_OK);
  tide_ctx_capture(c, NULL, 0);
  tide_seq_free(c, 0);
  feed_prompt(c);
  const float *st = tide_ctx_logits(c, 0);
  const float *E = m->tok_embd.data; /* (n_vocab, n_embd) F32, tied */
  double worst = 0, moved = 0;
  for (int32_t v = 0; v < V; v += 97) {
    /* (I + eps W) e_v, W = P1 P2^T */
    double ev[64], acc = 0;
    for (int i = 0; i < d; i++) {
      double w = 0;
      for (int j = 0; j < d; j++) {
        double wij = 0;
        for (int k = 0; k < r; k++) wij += (double)s->p1[i * r + k] * s->p2[j * r + k];
        w += wij * E[(int64_t)v * d + j];
      }
      ev[i] = E[(int64_t)v * d + i] + eps * w;
    }
    for (int i = 0; i < d; i++) acc += cn[i] * ev[i];
    double diff = fabs(acc - st[v]);
    if (diff > worst) worst = diff;
    moved += fabs(st[v] - base[v]);
  }
  CHECKF(worst <= 1e-4, "steered logits vs c.(I + eps W)e_v: %g", worst);
  CHECKF(moved > 1e-2, "the steer moved the logits by only %g", moved);
  tide_steer_free(s);
done:
  free(base);
  tide_ctx_free(c);
  tide_model_free(m);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* Two steers (eps a, b) equal one steer of rank ra + rb holding [a P1A, b P1B]
** and [P2A, P2B] at eps 1: W = a WA + b WB. */
static void test_compose(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *m = load(env, "qwen2-tiny");
  if (!m) { tide_env_free(env); return; }
  int32_t d = m->n_embd, V = m->n_vocab;
  tide_ctx *c = new_ctx(m);
  tide_steer *a = rand_steer(env, d, 3, 0.4f), *b = rand_steer(env, d, 2, 0.4f);
  float fa = 1.5f, fb = -2.0f;
  float *p1 = malloc(sizeof(float) * (size_t)d * 5), *p2 = malloc(sizeof(float) * (size_t)d * 5);
  for (int i = 0; i < d; i++) {
    for (int k = 0; k < 3; k++) p1[i * 5 + k] = fa * a->p1[i * 3 + k], p2[i * 5 + k] = a->p2[i * 3 + k];
    for (int k = 0; k < 2; k++) p1[i * 5 + 3 + k] = fb * b->p1[i * 2 + k], p2[i * 5 + 3 + k] = b->p2[i * 2 + k];
  }
  tide_steer *ab = NULL;
  CHECK(tide_steer_new(env, d, 5, p1, p2, 0, &ab) == TIDE_OK);
  tide_steer_entry two[2] = { { a, fa, TIDE_STEER_OUTPUT }, { b, fb, TIDE_STEER_OUTPUT } };
  tide_steer_entry one = { ab, 1.0f, TIDE_STEER_OUTPUT };
  CHECK(tide_ctx_set_steers(c, -1, two, 2) == TIDE_OK);
  int32_t seq = feed_prompt(c);
  float *x2 = copy_logits(c, 0);
  tide_seq_free(c, seq);
  CHECK(tide_ctx_set_steers(c, -1, &one, 1) == TIDE_OK);
  feed_prompt(c);
  CHECKF(max_diff(x2, tide_ctx_logits(c, 0), V) <= 1e-4, "composed vs summed: %g",
         max_diff(x2, tide_ctx_logits(c, 0), V));
  /* get_steers reports the default to a sequence without its own set */
  tide_steer_entry got[4];
  CHECK(tide_ctx_get_steers(c, 0, got, 4) == 1 && got[0].steer == ab);
  free(x2);
  free(p1);
  free(p2);
  tide_steer_free(a);
  tide_steer_free(b);
  tide_steer_free(ab);
  tide_ctx_free(c);
  tide_model_free(m);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* Forks inherit the parent's set; two forks steered differently in one batch
** give the logits of separate runs; a fork's own set leaves its sibling. */
static void test_forks_batch(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *m = load(env, "llama-spm-tiny");
  if (!m) { tide_env_free(env); return; }
  int32_t d = m->n_embd, V = m->n_vocab;
  tide_ctx *c = new_ctx(m);
  tide_steer *s = rand_steer(env, d, 4, 0.5f);
  int32_t p = feed_prompt(c);
  tide_steer_entry e = { s, 2.0f, TIDE_STEER_OUTPUT };
  CHECK(tide_ctx_set_steers(c, p, &e, 1) == TIDE_OK);
  int32_t k1, k2;
  CHECK(tide_seq_fork(c, p, &k1) == TIDE_OK && tide_seq_fork(c, p, &k2) == TIDE_OK);
  tide_steer_entry got;
  CHECK(tide_ctx_get_steers(c, k1, &got, 1) == 1 && got.eps == 2.0f); /* inherited */
  e.eps = -3.0f;
  CHECK(tide_ctx_set_steers(c, k2, &e, 1) == TIDE_OK);
  CHECK(tide_ctx_get_steers(c, k1, &got, 1) == 1 && got.eps == 2.0f);
  /* one batch: k1 and k2 each take token 29889 */
  tide_batch_row rows[2] = { { k1, N_PROMPT, 29889, 1 }, { k2, N_PROMPT, 29889, 1 } };
  CHECK(tide_decode(c, rows, 2) == TIDE_OK);
  float *b1 = copy_logits(c, 0), *b2 = copy_logits(c, 1);
  CHECK(max_diff(b1, b2, V) > 1e-3);
  /* separate runs */
  tide_seq_truncate(c, k1, N_PROMPT);
  tide_seq_truncate(c, k2, N_PROMPT);
  CHECK(tide_decode(c, &rows[0], 1) == TIDE_OK);
  CHECKF(memcmp(b1, tide_ctx_logits(c, 0), sizeof(float) * (size_t)V) == 0, "fork 1: %g",
         max_diff(b1, tide_ctx_logits(c, 0), V));
  CHECK(tide_decode(c, &rows[1], 1) == TIDE_OK);
  CHECKF(memcmp(b2, tide_ctx_logits(c, 0), sizeof(float) * (size_t)V) == 0, "fork 2: %g",
         max_diff(b2, tide_ctx_logits(c, 0), V));
  /* a freed slot comes back following the (empty) default */
  tide_seq_free(c, k2);
  int32_t k3;
  CHECK(tide_seq_new(c, &k3) == TIDE_OK);
  CHECK(tide_ctx_get_steers(c, k3, &got, 1) == 0);
  /* reset: back to the default */
  CHECK(tide_ctx_reset_steers(c, k1) == TIDE_OK);
  CHECK(tide_ctx_get_steers(c, k1, &got, 1) == 0);
  /* errors */
  tide_steer *wrong = rand_steer(env, d / 2, 2, 0.1f);
  tide_steer_entry bad = { wrong, 1.0f, TIDE_STEER_OUTPUT };
  CHECK(tide_ctx_set_steers(c, p, &bad, 1) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "n_embd") != NULL);
  bad.steer = s, bad.eps = NAN;
  CHECK(tide_ctx_set_steers(c, p, &bad, 1) == TIDE_ERR_ARG);
  bad.eps = 1, bad.where = 7;
  CHECK(tide_ctx_set_steers(c, p, &bad, 1) == TIDE_ERR_ARG);
  CHECK(tide_ctx_set_steers(c, 55, &e, 1) == TIDE_ERR_ARG);
  free(b1);
  free(b2);
  tide_steer_free(wrong);
  tide_steer_free(s); /* the context still holds it */
  tide_ctx_free(c);
  tide_model_free(m);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* The input-embedding steer: layer 0's capture is e + eps (e . P2) P1^T. */
static void test_input_steer(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *m = load(env, "llama-spm-tiny");
  if (!m) { tide_env_free(env); return; }
  int32_t d = m->n_embd, r = 3;
  tide_ctx *c = new_ctx(m);
  tide_steer *s = rand_steer(env, d, r, 0.5f);
  tide_steer_entry e = { s, 0.8f, TIDE_STEER_INPUT };
  CHECK(tide_ctx_set_steers(c, -1, &e, 1) == TIDE_OK);
  int32_t layer = 0;
  CHECK(tide_ctx_capture(c, &layer, 1) == TIDE_OK);
  feed_prompt(c);
  const float *E = m->tok_embd.data;
  double worst = 0;
  for (int row = 0; row < N_PROMPT; row++) {
    const float *h = tide_ctx_hidden(c, 0, row), *ev = E + (int64_t)PROMPT[row] * d;
    if (!h) { CHECK(h != NULL); break; }
    for (int i = 0; i < d; i++) {
      double w = 0;
      for (int k = 0; k < r; k++) {
        double u = 0;
        for (int j = 0; j < d; j++) u += (double)ev[j] * s->p2[j * r + k];
        w += u * s->p1[i * r + k];
      }
      double diff = fabs(ev[i] + 0.8 * w - h[i]);
      if (diff > worst) worst = diff;
    }
  }
  CHECKF(worst <= 1e-5, "input steer vs e + eps W e: %g", worst);
  CHECK(tide_ctx_hidden(c, 1, 0) == NULL);      /* not captured */
  CHECK(tide_ctx_hidden(c, 0, N_PROMPT) == NULL); /* past the rows */
  tide_steer_free(s);
  tide_ctx_free(c);
  tide_model_free(m);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* ---------------------------------------------------------------- files, SVD */

static const char *tmp(const char *name) {
  static char buf[256];
  snprintf(buf, sizeof buf, "/tmp/tide_test_steer_%d_%s", (int)getpid(), name);
  return buf;
}

static void test_steer_files(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *m = load(env, "llama-spm-tiny");
  if (!m) { tide_env_free(env); return; }
  /* the trainer's file loads as a steer */
  tide_trainer_params p = tide_trainer_default_params();
  p.n_ctx = 16, p.n_batch = 2;
  tide_trainer_frozen_params fp = tide_trainer_frozen_default_params();
  fp.steer_rank = 4, fp.steer_eps = 2e-3f;
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new_frozen(m, &p, &fp, &tr) == TIDE_OK);
  if (!tr) goto out;
  tide_trainer_tensor t1, t2;
  tide_trainer_get_tensor(tr, 0, &t1);
  tide_trainer_get_tensor(tr, 1, &t2);
  for (int64_t i = 0; i < t2.ne[0] * t2.ne[1]; i++) t2.data[i] = 0.01f * frand();
  CHECK(tide_trainer_set_steer_eps(tr, -2e-3f) == TIDE_OK);
  CHECK(tide_trainer_set_steer_eps(tr, INFINITY) == TIDE_ERR_ARG);
  CHECK(tide_trainer_set_steer_eps(tr, 2e-3f) == TIDE_OK);
  tide_trainer_save_params sp = { "unit", NULL, NULL, 0, NULL };
  CHECK(tide_trainer_save(tr, tmp("tr.gguf"), &sp) == TIDE_OK);
  tide_steer *s = NULL;
  CHECK(tide_steer_load(env, tmp("tr.gguf"), &s) == TIDE_OK);
  if (s) {
    tide_steer_info in;
    tide_steer_get_info(s, &in);
    CHECK(in.n_embd == m->n_embd && in.rank == 4 && in.eps0 == 2e-3f);
    CHECK(memcmp(in.p1, t1.data, sizeof(float) * 4 * 64) == 0);
    CHECK(memcmp(in.p2, t2.data, sizeof(float) * 4 * 64) == 0);
    /* save and load again */
    CHECK(tide_steer_save(s, tmp("s.gguf"), "again") == TIDE_OK);
    tide_steer *s2 = NULL;
    CHECK(tide_steer_load(env, tmp("s.gguf"), &s2) == TIDE_OK);
    if (s2) CHECK(memcmp(s2->p2, s->p2, sizeof(float) * 4 * 64) == 0 && s2->eps0 == s->eps0);
    tide_steer_free(s2);
    /* and a trainer resumes from it (same keys as the trainer's) */
  }
  tide_steer_free(s);
  /* a model file is not a steer file */
  char mp[512];
  snprintf(mp, sizeof mp, "%s/models/llama-spm-tiny.gguf", test_fixtures());
  CHECK(tide_steer_load(env, mp, &s) == TIDE_ERR_FORMAT && s == NULL);
  CHECK(strstr(tide_env_errmsg(env), "tide-extras") != NULL);
  tide_trainer_free(tr);
  remove(tmp("tr.gguf"));
  remove(tmp("s.gguf"));
out:
  tide_model_free(m);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* The SVD rebuilds W = P1 P2^T; sigma descends; rows are unit; a rank-1
** steer has one singular value. */
static void test_svd(void) {
  tide_env *env = new_env();
  int32_t d = 24, r = 5;
  tide_steer *s = rand_steer(env, d, r, 1.0f);
  float sigma[5], u[5 * 24], v[5 * 24];
  CHECK(tide_steer_svd(s, r, sigma, u, v) == TIDE_OK);
  double worst = 0;
  for (int i = 0; i < d; i++)
    for (int j = 0; j < d; j++) {
      double w = 0, x = 0;
      for (int k = 0; k < r; k++) w += (double)s->p1[i * r + k] * s->p2[j * r + k];
      for (int k = 0; k < r; k++) x += (double)sigma[k] * u[k * d + i] * v[k * d + j];
      if (fabs(w - x) > worst) worst = fabs(w - x);
    }
  CHECKF(worst <= 1e-4, "svd rebuild: %g", worst);
  for (int k = 0; k + 1 < r; k++) CHECK(sigma[k] >= sigma[k + 1]);
  for (int k = 0; k < r; k++) {
    double nu = 0, nv = 0, big = 0;
    for (int i = 0; i < d; i++) {
      nu += u[k * d + i] * u[k * d + i], nv += v[k * d + i] * v[k * d + i];
      if (fabs(v[k * d + i]) > fabs(big)) big = v[k * d + i];
    }
    CHECKF(fabs(nu - 1) < 1e-4 && fabs(nv - 1) < 1e-4 && big > 0, "%d: |u|^2 %g |v|^2 %g", k, nu, nv);
  }
  CHECK(tide_steer_svd(s, 6, sigma, u, v) == TIDE_ERR_ARG);
  tide_steer_free(s);
  /* rank 1 inside rank 3: P1's columns all equal, P2's too */
  float p1[24 * 3], p2[24 * 3];
  for (int i = 0; i < d; i++)
    for (int k = 0; k < 3; k++) p1[i * 3 + k] = (float)(i + 1) / 10, p2[i * 3 + k] = (float)(d - i) / 10;
  CHECK(tide_steer_new(env, d, 3, p1, p2, 0, &s) == TIDE_OK);
  CHECK(tide_steer_svd(s, 3, sigma, u, v) == TIDE_OK);
  CHECK(sigma[0] > 1 && sigma[1] < 1e-4 * sigma[0] && sigma[2] < 1e-4 * sigma[0]);
  tide_steer_free(s);
  /* bad input */
  p1[3] = NAN;
  CHECK(tide_steer_new(env, d, 3, p1, p2, 0, &s) == TIDE_ERR_ARG && s == NULL);
  CHECK(tide_steer_new(env, d, d + 1, p1, p2, 0, &s) == TIDE_ERR_ARG);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* ---------------------------------------------------------------- control vectors */

static void test_cvec(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *m = load(env, "llama-spm-tiny");
  if (!m) { tide_env_free(env); return; }
  int32_t d = m->n_embd, nl = m->n_layer, V = m->n_vocab;
  tide_ctx *c = new_ctx(m);
  int32_t layers[3] = { 0, 1, 2 };
  CHECK(tide_ctx_capture(c, layers, 3) == TIDE_OK);
  int32_t seq = feed_prompt(c);
  float *base = copy_logits(c, 0);
  float h2[64];
  memcpy(h2, tide_ctx_hidden(c, 2, 3), sizeof h2);
  /* zero directions change nothing */
  float *dirs = calloc((size_t)(nl * d), sizeof(float));
  CHECK(tide_ctx_set_cvec(c, dirs, nl, d, 1, nl - 1) == TIDE_OK);
  tide_seq_free(c, seq);
  seq = feed_prompt(c);
  CHECK(memcmp(base, tide_ctx_logits(c, 0), sizeof(float) * (size_t)V) == 0);
  /* direction 1 lands after block 1: layer 2 = the old layer 2 + dirs[1] */
  for (int i = 0; i < d; i++) dirs[d + i] = 0.5f * frand(), dirs[i] = 100.0f; /* row 0 out of range */
  CHECK(tide_ctx_set_cvec(c, dirs, nl, d, 1, nl - 1) == TIDE_OK);
  tide_seq_free(c, seq);
  seq = feed_prompt(c);
  const float *g2 = tide_ctx_hidden(c, 2, 3);
  int same = 1;
  for (int i = 0; i < d; i++) same &= g2[i] == h2[i] + dirs[d + i];
  CHECK(same);
  CHECK(max_diff(base, tide_ctx_logits(c, 0), V) > 1e-4);
  /* the file round-trips with llama.cpp's names, keys and numbering */
  CHECK(tide_cvec_save(env, tmp("cv.gguf"), dirs, nl, d, "llama") == TIDE_OK);
  tide_gguf *g = NULL;
  CHECK(tide_gguf_open(env, tmp("cv.gguf"), &g) == TIDE_OK);
  if (g) {
    const char *s;
    size_t len;
    int64_t lc;
    CHECK(tide_gguf_get_str(g, "general.architecture", &s, &len) == TIDE_OK && len == 13
          && !memcmp(s, "controlvector", 13));
    CHECK(tide_gguf_get_int(g, "controlvector.layer_count", &lc) == TIDE_OK && lc == nl - 1);
    CHECK(tide_gguf_kv_type(g, tide_gguf_find(g, "controlvector.layer_count")) == TIDE_GGUF_INT32);
    CHECK(tide_gguf_get_str(g, "controlvector.model_hint", &s, &len) == TIDE_OK);
    CHECK(tide_gguf_n_tensors(g) == nl - 1);
    CHECK(tide_gguf_find_tensor(g, "direction.1") >= 0 && tide_gguf_find_tensor(g, "direction.0") < 0);
    tide_gguf_free(g);
  }
  float *back = calloc((size_t)(nl * d), sizeof(float));
  CHECK(tide_cvec_load(env, tmp("cv.gguf"), 2.0f, nl, d, back) == TIDE_OK);
  CHECK(back[0] == 0 && back[d + 5] == 2.0f * dirs[d + 5]);
  CHECK(tide_cvec_load(env, tmp("cv.gguf"), -1.0f, nl, d, back) == TIDE_OK); /* sums */
  CHECK(back[d + 5] == dirs[d + 5]);
  CHECK(tide_cvec_load(env, tmp("cv.gguf"), 1.0f, 1, d, back) == TIDE_ERR_FORMAT); /* past layers */
  CHECK(tide_cvec_load(env, tmp("cv.gguf"), 1.0f, nl, d + 1, back) == TIDE_ERR_FORMAT);
  CHECK(tide_ctx_set_cvec(c, dirs, nl, d + 1, 1, 1) == TIDE_ERR_ARG);
  /* applying what was read back gives the same logits */
  float *l1 = copy_logits(c, 0);
  CHECK(tide_ctx_set_cvec(c, back, nl, d, 1, nl - 1) == TIDE_OK);
  tide_seq_free(c, seq);
  seq = feed_prompt(c);
  CHECK(memcmp(l1, tide_ctx_logits(c, 0), sizeof(float) * (size_t)V) == 0);
  /* off again */
  CHECK(tide_ctx_set_cvec(c, NULL, 0, 0, 0, 0) == TIDE_OK);
  CHECK(tide_ctx_capture(c, NULL, 0) == TIDE_OK);
  tide_seq_free(c, seq);
  feed_prompt(c);
  /* (capturing the last layer ran it over 8 rows through sgemm, now over 1) */
  CHECK(max_diff(base, tide_ctx_logits(c, 0), V) <= 1e-4);
  /* capture errors */
  int32_t bad[2] = { 1, 1 };
  CHECK(tide_ctx_capture(c, bad, 2) == TIDE_ERR_ARG);
  bad[0] = nl + 1;
  CHECK(tide_ctx_capture(c, bad, 1) == TIDE_ERR_ARG);
  remove(tmp("cv.gguf"));
  free(l1);
  free(back);
  free(dirs);
  free(base);
  tide_ctx_free(c);
  tide_model_free(m);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* Capture with the last layer keeps every row; the rows that want logits
** get the same logits as without capture. */
static void test_capture_keep_all(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *m = load(env, "gpt2-tiny");
  if (!m) { tide_env_free(env); return; }
  int32_t V = m->n_vocab, nl = m->n_layer;
  tide_ctx *c = new_ctx(m);
  int32_t seq = feed_prompt(c);
  float *base = copy_logits(c, 0);
  int32_t layers[2] = { nl, 1 };
  CHECK(tide_ctx_capture(c, layers, 2) == TIDE_OK);
  tide_seq_free(c, seq);
  feed_prompt(c);
  CHECK(max_diff(base, tide_ctx_logits(c, 0), V) <= 1e-5);
  for (int row = 0; row < N_PROMPT; row++) CHECK(tide_ctx_hidden(c, nl, row) != NULL);
  /* lens of every row at once */
  float *out = malloc(sizeof(float) * (size_t)V * N_PROMPT), h[N_PROMPT * 64];
  for (int row = 0; row < N_PROMPT; row++) memcpy(h + row * 64, tide_ctx_hidden(c, nl, row), 64 * sizeof(float));
  CHECK(tide_ctx_project(c, h, N_PROMPT, 1, out) == TIDE_OK);
  CHECK(max_diff(base, out + (size_t)(N_PROMPT - 1) * V, V) <= 1e-4);
  CHECK(tide_ctx_project(c, h, 0, 1, out) == TIDE_ERR_ARG);
  free(out);
  free(base);
  tide_ctx_free(c);
  tide_model_free(m);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

TEST_MAIN(test_eps_zero_bitwise, test_formula, test_compose, test_forks_batch, test_input_steer,
          test_steer_files, test_svd, test_cvec, test_capture_keep_all)
