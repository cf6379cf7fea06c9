/*
** test_prefix.c -- prefix tuning (per-layer learned K/V rows): the
** attention kernel with prefix keys against finite differences, the frozen
** trainer's gradients with a KV prefix (alone and beside an embedding
** prefix and a steer), a prefix that lowers a tiny task's held-out loss,
** save -> tide_prefix_load bit for bit, the runtime (tide_seq_set_prefix +
** tide_decode) against the trainer's own forward, forks sharing the
** prefix, and clean errors. Layer: tests (C unit tests of core/).
**
** Finite differences as in test_train.c: central, in float through the
** real kernels, loss summed in double; an entry passes when
** |analytic - numeric| <= RTOL * max(|a|, |n|) + ATOL.
*/
#include <stdint.h>
#include <unistd.h>

#include "test.h"
#include "train.h"

#define RTOL 1e-2
#define ATOL 1e-4

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 4242;
static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static float urand(void) { return (float)(rnd() >> 40) * (2.0f / 16777216.0f) - 1.0f; }
static void fill(float *x, int64_t n, float a) {
  for (int64_t i = 0; i < n; i++) x[i] = a * urand();
}
static double dotd(const float *a, const float *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

typedef double (*loss_fn)(void *ctx);
static void fd_check(const char *what, float *x, int64_t n, const float *grad, loss_fn loss,
                     void *ctx, int n_pick, float h) {
  double worst = 0;
  int bad = 0;
  for (int k = 0; k < (n_pick < n ? n_pick : n); k++) {
    int64_t i = n_pick >= n ? k : (int64_t)(rnd() % (uint64_t)n);
    float x0 = x[i];
    x[i] = x0 + h;
    double lp = loss(ctx);
    x[i] = x0 - h;
    double lm = loss(ctx);
    x[i] = x0;
    double num = (lp - lm) / (2.0 * (double)h), a = grad[i];
    double tol = RTOL * fmax(fabs(a), fabs(num)) + ATOL, err = fabs(a - num);
    if (err / tol > worst) worst = err / tol;
    if (err > tol && bad++ < 3)
      fprintf(stderr, "    %s[%lld]: analytic %.7g numeric %.7g\n", what, (long long)i, a, num);
  }
  CHECKF(bad == 0, "%s: %d entries off (worst error/tolerance %.3g)", what, bad, worst);
  if (getenv("TIDE_TEST_VERBOSE")) printf("  %-28s worst err/tol %.3f\n", what, worst);
}

/* ---------------------------------------------------------------- kernel */

typedef struct {
  tidei_attn_shape a;
  tidei_attn_prefix pre;
  int64_t B;
  float *q, *k, *v, *p, *o, *r;
} attn_ctx;
static double attn_loss(void *pc) {
  attn_ctx *c = pc;
  for (int64_t b = 0; b < c->B; b++)
    for (int g = 0; g < c->a.n_kv_head; g++)
      tidei_train_attn_prefix_fwd(&c->a, &c->pre, b, g, c->q, c->k, c->v, c->p, c->o);
  return dotd(c->o, c->r, c->B * c->a.S * c->a.n_head * c->a.head_dim);
}

static void test_op_attention_prefix(void) {
  enum { B = 2, S = 5, P = 3, H = 4, KV = 2, HD = 4, N = B * S, C = P + S, KD = KV * HD };
  float q[N * H * HD], k[N * KD], v[N * KD], kp[P * KD], vp[P * KD], p[B * H * S * C];
  float o[N * H * HD], r[N * H * HD], dq[N * H * HD], dk[N * KD], dv[N * KD], dp[B * H * S * C];
  float dkp[B * P * KD], dvp[B * P * KD], gkp[P * KD], gvp[P * KD];
  fill(q, N * H * HD, 1), fill(k, N * KD, 1), fill(v, N * KD, 1), fill(r, N * H * HD, 1);
  fill(kp, P * KD, 1), fill(vp, P * KD, 1);
  attn_ctx c = { { H, KV, HD, S }, { P, kp, vp, dkp, dvp }, B, q, k, v, p, o, r };
  attn_loss(&c);
  /* row 0 sees the P prefix keys and itself; its probabilities sum to 1 */
  double sum = 0;
  for (int j = 0; j < C; j++) sum += p[j];
  CHECK_NEAR(sum, 1.0, 1e-6);
  CHECK(p[P] > 0 && p[P + 1] == 0.0f);
  /* the last row of a block sees every column */
  for (int j = 0; j < C; j++) CHECK(p[(S - 1) * C + j] > 0);
  for (int64_t b = 0; b < B; b++)
    for (int g = 0; g < KV; g++)
      tidei_train_attn_prefix_bwd(&c.a, &c.pre, b, g, q, k, v, p, r, dp, dq, dk, dv);
  for (int i = 0; i < P * KD; i++) /* the prefix is shared: sum the sequences */
    gkp[i] = dkp[i] + dkp[P * KD + i], gvp[i] = dvp[i] + dvp[P * KD + i];
  fd_check("attention dq", q, N * H * HD, dq, attn_loss, &c, 1000, 1e-2f);
  fd_check("attention dk", k, N * KD, dk, attn_loss, &c, 1000, 1e-2f);
  fd_check("attention dv", v, N * KD, dv, attn_loss, &c, 1000, 1e-2f);
  fd_check("attention dkp", kp, P * KD, gkp, attn_loss, &c, 1000, 1e-2f);
  fd_check("attention dvp", vp, P * KD, gvp, attn_loss, &c, 1000, 1e-2f);
}

/* ---------------------------------------------------------------- tiny model */

enum { TV = 40, TT = 8, TB = 3 };

static tide_trainer_params tiny_params(int tied) {
  tide_trainer_params p = tide_trainer_default_params();
  p.n_vocab = TV, p.n_embd = 16, p.n_layer = 2, p.n_head = 4, p.n_kv_head = 2, p.n_ff = 32;
  p.n_ctx = TT, p.n_batch = 4, p.tied = tied, p.seed = 7;
  return p;
}

static char vocab_text[TV][8];
static const char *vocab_ptr[TV];
static int32_t vocab_types[TV];
static tide_trainer_vocab tiny_vocab(void) {
  tide_trainer_vocab v;
  memset(&v, 0, sizeof v);
  for (int i = 0; i < TV; i++) {
    if (i == 0) strcpy(vocab_text[i], "<unk>");
    else if (i == 1) strcpy(vocab_text[i], "<s>");
    else if (i == 2) strcpy(vocab_text[i], "</s>");
    else snprintf(vocab_text[i], 8, "%c%s", 'a' + (i - 3) % 26, i >= 29 ? "x" : "");
    vocab_ptr[i] = vocab_text[i];
    vocab_types[i] = i == 0 ? TIDE_TOKEN_UNKNOWN : i < 3 ? TIDE_TOKEN_CONTROL : TIDE_TOKEN_NORMAL;
  }
  v.model = "llama";
  v.tokens = vocab_ptr;
  v.types = vocab_types;
  v.bos = 1, v.eos = 2, v.add_bos = 1;
  return v;
}

static const char *tmp_path(const char *name) {
  static char buf[4][256];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "/tmp/tide_test_prefix_%d_%s", (int)getpid(), name);
  return buf[k];
}

/* A tiny llama model file with weights scaled up so that every op is
** non-linear (p's shape), loaded back. */
static tide_model *tiny_model(tide_env *env, const char *name, tide_trainer_params p) {
  tide_trainer *tr = NULL;
  if (tide_trainer_new(env, &p, &tr)) return NULL;
  for (int i = 0; i < tr->n_tensors; i++) {
    const tidei_tparam *t = &tr->tensors[i];
    float *w = tr->w + t->off;
    for (int64_t j = 0; j < t->n; j++) w[j] = t->n_dims == 1 ? 1.0f + 0.3f * urand() : w[j] * 15;
  }
  tide_trainer_vocab v = tiny_vocab();
  tide_trainer_save_params sp = { .name = "base", .vocab = &v };
  tide_model *m = NULL;
  if (tide_trainer_save(tr, tmp_path(name), &sp) == TIDE_OK)
    tide_model_load(env, tmp_path(name), NULL, &m);
  tide_trainer_free(tr);
  remove(tmp_path(name));
  return m;
}

typedef struct { tide_trainer *tr; const int32_t *tok; int B, T; } model_ctx;
static double model_loss(void *p) {
  model_ctx *c = p;
  double l;
  int64_t nt;
  tidei_train_loss(c->tr, c->tok, c->B, c->T, &l, &nt);
  return l;
}

static void grad_check_trainer(tide_trainer *tr, const int32_t *tok, int B, int T, int n_pick) {
  double loss;
  int64_t nt;
  tidei_train_grad(tr, tok, B, T, 1, 1.0f, &loss, &nt);
  float *g = malloc(sizeof(float) * (size_t)tr->n_params);
  memcpy(g, tr->g, sizeof(float) * (size_t)tr->n_params);
  model_ctx c = { tr, tok, B, T };
  for (int i = 0; i < tr->n_tensors; i++) {
    const tidei_tparam *t = &tr->tensors[i];
    fd_check(t->name, tr->w + t->off, t->n, g + t->off, model_loss, &c, n_pick, 1e-2f);
  }
  free(g);
}

static void random_tokens(int32_t *t, int n, int lo, int span) {
  for (int i = 0; i < n; i++) t[i] = (int32_t)(lo + (int)(rnd() % (uint64_t)span));
}

/* ---------------------------------------------------------------- trainer */

static void test_trainer_grad(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  tide_model *m = tiny_model(env, "grad.gguf", tiny_params(0));
  CHECK(m != NULL);
  if (!m) { tide_env_free(env); return; }
  int32_t tok[TB * TT];
  random_tokens(tok, TB * TT, 0, TV);
  for (int combo = 0; combo < 2; combo++) {
    tide_trainer_params p = tiny_params(0);
    tide_trainer_frozen_params fp = tide_trainer_frozen_default_params();
    fp.n_kv_prefix = 3;
    if (combo) fp.n_prefix = 2, fp.steer_rank = 2, fp.steer_eps = 0.3f;
    tide_trainer *tr = NULL;
    CHECK(tide_trainer_new_frozen(m, &p, &fp, &tr) == TIDE_OK);
    if (!tr) continue;
    CHECK(tr->n_tensors == 2 * 2 + (combo ? 3 : 0));
    CHECK(tr->base_copy == NULL);
    CHECK(strcmp(tr->tensors[combo ? 3 : 0].name, "prefix.k.0") == 0);
    CHECK(strcmp(tr->tensors[tr->n_tensors - 1].name, "prefix.v.1") == 0);
    CHECK(tr->tensors[tr->n_tensors - 1].ne[0] == 2 * 4 && tr->tensors[tr->n_tensors - 1].ne[1] == 3);
    /* non-trivial values: keys and values of the size of the model's own */
    fill(tr->kvp, 2 * 2 * 3 * 8, 3);
    if (combo) fill(tr->p2, 16 * 2, 1), fill(tr->prefix, 16 * 2, 1);
    grad_check_trainer(tr, tok, TB, TT, 24);
    tide_trainer_free(tr);
  }
  tide_model_free(m);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- runtime */

/* Mean next-token cross-entropy of T logits rows (V each) of tok. */
static double logits_loss(const float *const *rows, const int32_t *tok, int T) {
  double sum = 0;
  for (int t = 0; t + 1 < T; t++) {
    double mx = -1e30, s = 0;
    for (int v = 0; v < TV; v++) mx = fmax(mx, rows[t][v]);
    for (int v = 0; v < TV; v++) s += exp(rows[t][v] - mx);
    sum += mx + log(s) - rows[t][tok[t + 1]];
  }
  return sum / (T - 1);
}

/* Decodes tok after p on a fresh sequence of a context with kv_type; the
** logits of every row into out (T, TV). */
static int runtime_logits(tide_model *m, const tide_prefix *p, int kv_type, const int32_t *tok,
                          int T, float *out) {
  tide_ctx_params cp = tide_ctx_default_params();
  cp.n_ctx = 32, cp.kv_type = kv_type, cp.n_seq_max = 4;
  tide_ctx *ctx = NULL;
  int32_t seq = -1, k = 0;
  int st = tide_ctx_new(m, &cp, &ctx);
  if (!st) st = tide_seq_new(ctx, &seq);
  if (!st && p) {
    tide_prefix_info info;
    tide_prefix_get_info(p, &info);
    k = info.n_tokens;
    st = tide_seq_set_prefix(ctx, seq, p);
    CHECK(st || tide_seq_len(ctx, seq) == k);
  }
  tide_batch_row rows[TT];
  for (int t = 0; !st && t < T; t++) rows[t] = (tide_batch_row){ seq, k + t, tok[t], 1 };
  if (!st) st = tide_decode(ctx, rows, T);
  for (int t = 0; !st && t < T; t++) memcpy(out + t * TV, tide_ctx_logits(ctx, t), TV * sizeof(float));
  tide_ctx_free(ctx);
  return st;
}

/* The trainer's logits of one sequence (B = 1), recomputed in double from
** its final normed hidden states and the output matrix. */
static void trainer_logits(tide_trainer *tr, const int32_t *tok, int T, double *loss, float *out) {
  int64_t nt;
  tidei_train_loss(tr, tok, 1, T, loss, &nt);
  for (int t = 0; t < T; t++)
    for (int v = 0; v < TV; v++)
      out[t * TV + v] = (float)dotd(tr->xnf + (int64_t)t * 16, tr->output + (int64_t)v * 16, 16);
}

static double max_rel(const float *a, const float *b, int64_t n) {
  double d = 0, mx = 0;
  for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i])), mx = fmax(mx, fabs(b[i]));
  return d / mx;
}

/* Sequences of the tiny task: tokens drawn from 5 of the 40 ids only. */
static void task_batch(int32_t *tok, int n) { random_tokens(tok, n, 3, 5); }

static void test_train_save_run(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  tide_model *m = tiny_model(env, "task.gguf", tiny_params(1));
  CHECK(m != NULL);
  if (!m) { tide_env_free(env); return; }
  tide_trainer_params p = tiny_params(1);
  p.lr = 3e-2f, p.weight_decay = 0;
  tide_trainer_frozen_params fp = tide_trainer_frozen_default_params();
  fp.n_kv_prefix = 4;
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new_frozen(m, &p, &fp, &tr) == TIDE_OK);
  if (!tr) { tide_model_free(m); tide_env_free(env); return; }
  /* held-out task loss without a prefix (the runtime) and with the trained one */
  enum { NH = 16 };
  int32_t held[NH * TT], tok[4 * TT];
  task_batch(held, NH * TT);
  static float lg[TT * TV], lt[TT * TV];
  const float *rows[TT];
  for (int t = 0; t < TT; t++) rows[t] = lg + t * TV;
  double base = 0;
  for (int s = 0; s < NH; s++) {
    CHECK(runtime_logits(m, NULL, TIDE_F32, held + s * TT, TT, lg) == TIDE_OK);
    base += logits_loss(rows, held + s * TT, TT) / NH;
  }
  for (int s = 0; s < 150; s++) {
    task_batch(tok, 4 * TT);
    CHECK(tide_trainer_step(tr, tok, 4, TT, NULL) == TIDE_OK);
  }
  double tuned;
  CHECK(tide_trainer_eval(tr, held, NH, TT, &tuned) == TIDE_OK);
  printf("  tiny task held-out loss: no prefix %.4f, trained 4-row KV prefix %.4f\n", base, tuned);
  CHECKF(tuned < base - 0.5, "prefix tuning: held-out loss %g -> %g", base, tuned);
  /* save -> load: the very same floats */
  tide_trainer_save_params sp = { .name = "prefix" };
  const char *path = tmp_path("kvp.gguf");
  CHECK(tide_trainer_save(tr, path, &sp) == TIDE_OK);
  tide_prefix *px = NULL;
  int st = tide_prefix_load(env, path, &px);
  CHECKF(st == TIDE_OK, "prefix_load: %s", tide_env_errmsg(env));
  if (!px) { tide_trainer_free(tr); tide_model_free(m); tide_env_free(env); return; }
  tide_prefix_info info;
  tide_prefix_get_info(px, &info);
  CHECK(info.n_tokens == 4 && info.n_layer == 2 && info.kv_dim == 8 && info.n_embd == 16
        && info.n_vocab == TV);
  for (int il = 0; il < 2; il++)
    for (int w = 0; w < 2; w++)
      CHECK(memcmp(tide_prefix_data(px, il, w), tr->kvp + (2 * il + w) * 4 * 8,
                   4 * 8 * sizeof(float)) == 0);
  CHECK(tide_prefix_data(px, 2, 0) == NULL && tide_prefix_data(px, 0, 2) == NULL);
  /* the runtime with the prefix == the trainer's forward with it */
  double worst = 0, worst16 = 0, dl = 0;
  for (int s = 0; s < 4; s++) {
    double tl;
    trainer_logits(tr, held + s * TT, TT, &tl, lt);
    CHECK(runtime_logits(m, px, TIDE_F32, held + s * TT, TT, lg) == TIDE_OK);
    worst = fmax(worst, max_rel(lg, lt, TT * TV));
    dl = fmax(dl, fabs(logits_loss(rows, held + s * TT, TT) - tl));
    CHECK(runtime_logits(m, px, TIDE_F16, held + s * TT, TT, lg) == TIDE_OK);
    worst16 = fmax(worst16, max_rel(lg, lt, TT * TV));
  }
  printf("  runtime vs trainer logits: max rel diff %.2e (f32 cache), %.2e (f16 cache); "
         "loss diff %.2e\n", worst, worst16, dl);
  CHECK(worst < 1e-4);
  CHECK(dl < 1e-5);
  CHECK(worst16 < 2e-2);
  /* resume of a KV prefix checkpoint keeps working */
  tide_trainer_save_params so = { .name = "prefix", .optimizer = 1 };
  CHECK(tide_trainer_save(tr, tmp_path("kvp_opt.gguf"), &so) == TIDE_OK);
  tide_trainer *t2 = NULL;
  CHECK(tide_trainer_new_frozen(m, &p, &fp, &t2) == TIDE_OK);
  CHECK(tide_trainer_resume(t2, tmp_path("kvp_opt.gguf")) == TIDE_OK);
  CHECK(t2 && memcmp(t2->w, tr->w, sizeof(float) * (size_t)tr->n_params) == 0);
  tide_trainer_free(t2);
  remove(tmp_path("kvp_opt.gguf"));
  remove(path);
  tide_prefix_free(px);
  tide_trainer_free(tr);
  tide_model_free(m);
  tide_env_free(env);
}

/* A prefix initialized from tokens X is the cache state of prompt X: the
** trainer with it predicts Y as the runtime does after decoding X then Y. */
static void test_init_from_tokens(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  tide_model *m = tiny_model(env, "init.gguf", tiny_params(0));
  CHECK(m != NULL);
  if (!m) { tide_env_free(env); return; }
  tide_trainer_params p = tiny_params(0);
  tide_trainer_frozen_params fp = tide_trainer_frozen_default_params();
  fp.n_kv_prefix = 5;
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new_frozen(m, &p, &fp, &tr) == TIDE_OK);
  if (!tr) { tide_model_free(m); tide_env_free(env); return; }
  int32_t x[5 + TT], y[TT];
  random_tokens(x, 5, 0, TV);
  random_tokens(y, TT, 0, TV);
  CHECK(tide_trainer_init_kv_prefix(tr, x, 4) == TIDE_ERR_ARG);
  CHECK(tide_trainer_init_kv_prefix(tr, x, 5) == TIDE_OK);
  static float lt[TT * TV], lr[(5 + TT) * TV];
  double tl;
  trainer_logits(tr, y, TT, &tl, lt);
  /* the runtime: X then Y on a plain sequence, F32 cache */
  memcpy(x + 5, y, sizeof y);
  tide_ctx_params cp = tide_ctx_default_params();
  cp.n_ctx = 32, cp.kv_type = TIDE_F32;
  tide_ctx *ctx = NULL;
  int32_t seq;
  tide_batch_row rows[5 + TT];
  CHECK(tide_ctx_new(m, &cp, &ctx) == TIDE_OK && tide_seq_new(ctx, &seq) == TIDE_OK);
  for (int t = 0; t < 5 + TT; t++) rows[t] = (tide_batch_row){ seq, t, x[t], 1 };
  CHECK(tide_decode(ctx, rows, 5 + TT) == TIDE_OK);
  for (int t = 0; t < 5 + TT; t++) memcpy(lr + t * TV, tide_ctx_logits(ctx, t), sizeof(float) * TV);
  double d = max_rel(lr + 5 * TV, lt, TT * TV);
  CHECKF(d < 1e-4, "init from tokens: max rel diff %g", d);
  tide_ctx_free(ctx);
  /* errors */
  x[0] = TV;
  CHECK(tide_trainer_init_kv_prefix(tr, x, 5) == TIDE_ERR_ARG);
  tide_trainer_free(tr);
  fp.n_kv_prefix = 0, fp.n_prefix = 2;
  CHECK(tide_trainer_new_frozen(m, &p, &fp, &tr) == TIDE_OK);
  CHECK(tide_trainer_init_kv_prefix(tr, y, 2) == TIDE_ERR_STATE);
  tide_trainer_free(tr);
  tide_model_free(m);
  tide_env_free(env);
}

/* tide_prefix_load under a failing allocator: clean failures, no leaks. */
static void test_oom(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  tide_model *m = tiny_model(env, "oom.gguf", tiny_params(1));
  tide_trainer_params p = tiny_params(1);
  tide_trainer_frozen_params fp = tide_trainer_frozen_default_params();
  fp.n_kv_prefix = 3;
  tide_trainer *tr = NULL;
  CHECK(m && tide_trainer_new_frozen(m, &p, &fp, &tr) == TIDE_OK);
  tide_trainer_save_params sp = { .name = "prefix" };
  const char *path = tmp_path("oom_kvp.gguf");
  CHECK(tr && tide_trainer_save(tr, path, &sp) == TIDE_OK);
  tide_trainer_free(tr);
  tide_model_free(m);
  tide_env_free(env);
  int ok = 0;
  for (long n = 1; n < 200 && !ok; n++) {
    test_allocator c = { .fail_at = n };
    tide_env *e = NULL;
    if (tide_env_new(&e, test_alloc_fn, &c) != TIDE_OK) continue;
    tide_prefix *px = NULL;
    int st = tide_prefix_load(e, path, &px);
    CHECK(st == TIDE_OK || (st == TIDE_ERR_NOMEM && px == NULL));
    ok = st == TIDE_OK;
    tide_prefix_free(px);
    tide_env_free(e);
    CHECKF(c.live == 0, "fail at %ld: %lld bytes leaked", n, c.live);
  }
  CHECK(ok);
  remove(path);
}

/* A prefix set on a parent is shared by its forks; errors leave things as
** they were. */
static void test_forks_and_errors(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  tide_model *m = tiny_model(env, "fork.gguf", tiny_params(1));
  tide_trainer_params p3 = tiny_params(1);
  p3.n_layer = 3;
  tide_model *m3 = tiny_model(env, "three.gguf", p3);
  CHECK(m && m3);
  if (!m || !m3) { tide_model_free(m); tide_model_free(m3); tide_env_free(env); return; }
  tide_trainer_params p = tiny_params(1);
  tide_trainer_frozen_params fp = tide_trainer_frozen_default_params();
  fp.n_kv_prefix = 20; /* more than one cache block */
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new_frozen(m, &p, &fp, &tr) == TIDE_OK);
  fill(tr->kvp, 2 * 2 * 20 * 8, 3);
  tide_trainer_save_params sp = { .name = "prefix" };
  const char *path = tmp_path("fork_kvp.gguf");
  CHECK(tide_trainer_save(tr, path, &sp) == TIDE_OK);
  tide_prefix *px = NULL;
  CHECK(tide_prefix_load(env, path, &px) == TIDE_OK);
  remove(path);
  if (!px) { tide_trainer_free(tr); tide_model_free(m); tide_model_free(m3); tide_env_free(env); return; }
  tide_ctx_params cp = tide_ctx_default_params();
  cp.n_ctx = 40, cp.n_cells = 160, cp.kv_type = TIDE_F32;
  tide_ctx *ctx = NULL;
  CHECK(tide_ctx_new(m, &cp, &ctx) == TIDE_OK);
  int32_t a, b, kid;
  CHECK(tide_seq_new(ctx, &a) == TIDE_OK && tide_seq_new(ctx, &b) == TIDE_OK);
  CHECK(tide_seq_set_prefix(ctx, a, px) == TIDE_OK && tide_seq_len(ctx, a) == 20);
  /* not empty, not live */
  CHECK(tide_seq_set_prefix(ctx, a, px) == TIDE_ERR_STATE && tide_seq_len(ctx, a) == 20);
  CHECK(strstr(tide_env_errmsg(env), "not empty") != NULL);
  CHECK(tide_seq_set_prefix(ctx, 55, px) == TIDE_ERR_NOTFOUND);
  CHECK(tide_seq_set_prefix(ctx, b, NULL) == TIDE_ERR_ARG);
  /* the fork decodes like its parent would */
  CHECK(tide_seq_fork(ctx, a, &kid) == TIDE_OK && tide_seq_len(ctx, kid) == 20);
  int32_t tok[3] = { 5, 9, 4 };
  static float la[3 * TV], lk[3 * TV];
  tide_batch_row rows[3];
  for (int t = 0; t < 3; t++) rows[t] = (tide_batch_row){ kid, 20 + t, tok[t], 1 };
  CHECK(tide_decode(ctx, rows, 3) == TIDE_OK);
  for (int t = 0; t < 3; t++) memcpy(lk + t * TV, tide_ctx_logits(ctx, t), sizeof(float) * TV);
  for (int t = 0; t < 3; t++) rows[t].seq = a;
  CHECK(tide_decode(ctx, rows, 3) == TIDE_OK);
  for (int t = 0; t < 3; t++) memcpy(la + t * TV, tide_ctx_logits(ctx, t), sizeof(float) * TV);
  CHECK(memcmp(la, lk, sizeof la) == 0);
  /* a fresh sequence with the same prefix agrees too */
  CHECK(tide_seq_set_prefix(ctx, b, px) == TIDE_OK);
  for (int t = 0; t < 3; t++) rows[t].seq = b;
  CHECK(tide_decode(ctx, rows, 3) == TIDE_OK);
  for (int t = 0; t < 3; t++) CHECK(memcmp(la + t * TV, tide_ctx_logits(ctx, t), sizeof(float) * TV) == 0);
  /* n_ctx too small for the prefix */
  cp.n_ctx = 20;
  tide_ctx *small = NULL;
  int32_t s2;
  CHECK(tide_ctx_new(m, &cp, &small) == TIDE_OK && tide_seq_new(small, &s2) == TIDE_OK);
  CHECK(tide_seq_set_prefix(small, s2, px) == TIDE_ERR_ARG && tide_seq_len(small, s2) == 0);
  tide_ctx_free(small);
  /* a cache without room: nothing changes */
  cp.n_ctx = 40, cp.n_cells = 16;
  CHECK(tide_ctx_new(m, &cp, &small) == TIDE_OK && tide_seq_new(small, &s2) == TIDE_OK);
  CHECK(tide_seq_set_prefix(small, s2, px) == TIDE_ERR_FULL && tide_seq_len(small, s2) == 0);
  CHECK(tide_ctx_free_cells(small) == 16);
  tide_ctx_free(small);
  /* a model of another shape */
  cp.n_cells = 0;
  CHECK(tide_ctx_new(m3, &cp, &small) == TIDE_OK && tide_seq_new(small, &s2) == TIDE_OK);
  CHECK(tide_seq_set_prefix(small, s2, px) == TIDE_ERR_ARG && tide_seq_len(small, s2) == 0);
  CHECK(strstr(tide_env_errmsg(env), "n_layer 2") != NULL);
  tide_ctx_free(small);
  /* gpt2 has no RoPE KV prefix */
  tide_model *g = NULL;
  if (tide_model_load(env, "../shared/fixtures/models/gpt2-tiny.gguf", NULL, &g) == TIDE_OK) {
    CHECK(tide_ctx_new(g, NULL, &small) == TIDE_OK && tide_seq_new(small, &s2) == TIDE_OK);
    CHECK(tide_seq_set_prefix(small, s2, px) == TIDE_ERR_UNSUPPORTED);
    tide_ctx_free(small);
    tide_model_free(g);
  }
  /* files that are not KV prefixes */
  tide_prefix *bad = NULL;
  CHECK(tide_prefix_load(env, "../shared/fixtures/models/llama-spm-tiny.gguf", &bad)
        == TIDE_ERR_FORMAT && bad == NULL);
  CHECK(strstr(tide_env_errmsg(env), "tide-extras") != NULL);
  tide_trainer_frozen_params fs = tide_trainer_frozen_default_params();
  fs.steer_rank = 2;
  tide_trainer *ts = NULL;
  CHECK(tide_trainer_new_frozen(m, &p, &fs, &ts) == TIDE_OK);
  CHECK(tide_trainer_save(ts, tmp_path("steer.gguf"), &sp) == TIDE_OK);
  CHECK(tide_prefix_load(env, tmp_path("steer.gguf"), &bad) == TIDE_ERR_FORMAT && bad == NULL);
  CHECK(strstr(tide_env_errmsg(env), "n_kv_prefix") != NULL);
  tide_trainer_free(ts);
  fs.steer_rank = 0, fs.n_prefix = 2, fs.n_kv_prefix = 2;
  CHECK(tide_trainer_new_frozen(m, &p, &fs, &ts) == TIDE_OK);
  CHECK(tide_trainer_save(ts, tmp_path("both.gguf"), &sp) == TIDE_OK);
  CHECK(tide_prefix_load(env, tmp_path("both.gguf"), &bad) == TIDE_ERR_FORMAT && bad == NULL);
  tide_trainer_free(ts);
  CHECK(tide_prefix_load(env, tmp_path("missing.gguf"), &bad) != TIDE_OK && bad == NULL);
  remove(tmp_path("steer.gguf"));
  remove(tmp_path("both.gguf"));
  tide_prefix_free(NULL);
  tide_ctx_free(ctx);
  tide_prefix_free(px);
  remove(path);
  tide_trainer_free(tr);
  tide_model_free(m);
  tide_model_free(m3);
  tide_env_free(env);
}

TEST_MAIN(test_op_attention_prefix, test_trainer_grad, test_train_save_run, test_init_from_tokens,
          test_forks_and_errors, test_oom)
