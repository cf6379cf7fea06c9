/*
** test_train.c -- the training facility: finite-difference checks of every
** op's backward and of the whole tiny model (full, tied and untied; frozen
** with a steer and a prefix), AdamW against a hand-computed update,
** clipping, the schedule, gradient accumulation, a run whose loss falls,
** bit-for-bit reproducibility, save -> tide_model_load -> tide_decode,
** resume == uninterrupted, and clean out-of-memory failures.
** Layer: tests (C unit tests of core/).
**
** Finite differences are central, in float through the real kernels, with
** the loss summed in double: numeric = (L(x+h) - L(x-h)) / 2h. A gradient
** entry passes when |analytic - numeric| <= RTOL * max(|a|, |n|) + ATOL.
** TIDE_TEST_VERBOSE=1 prints the worst error/tolerance of every check.
*/
#include <stdint.h>
#include <unistd.h>

#include "test.h"
#include "train.h"

#define RTOL 1e-2
#define ATOL 1e-4

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 12345;
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

/* Compares grad[i] with the central difference of loss() in x[i] for n_pick
** random indices (all if n_pick >= n). Returns the worst error ratio. */
typedef double (*loss_fn)(void *ctx);
static double fd_check(const char *what, float *x, int64_t n, const float *grad, loss_fn loss,
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
  if (getenv("TIDE_TEST_VERBOSE")) {
    double gmax = 0;
    for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(grad[i]));
    printf("  %-28s worst err/tol %.3f  max|grad| %.3g\n", what, worst, gmax);
  }
  return worst;
}

/* ---------------------------------------------------------------- ops */

typedef struct { float *x, *w, *r, *y, *t; int64_t n, o, i; } mm_ctx;
static double mm_loss(void *p) {
  mm_ctx *c = p;
  tidei_train_mm_fwd(c->y, c->x, c->w, c->n, c->o, c->i, 0);
  return dotd(c->y, c->r, c->n * c->o);
}

static void test_op_matmul(void) {
  enum { N = 5, O = 7, I = 6 };
  float x[N * I], w[O * I], r[N * O], y[N * O], dx[N * I], dw[O * I];
  fill(x, N * I, 1), fill(w, O * I, 1), fill(r, N * O, 1);
  mm_ctx c = { x, w, r, y, NULL, N, O, I };
  memset(dw, 0, sizeof dw);
  tidei_train_mm_bx(dx, r, w, N, O, I, 0);
  tidei_train_mm_bw(dw, r, x, N, O, I);
  fd_check("matmul dx", x, N * I, dx, mm_loss, &c, 1000, 1e-2f);
  fd_check("matmul dw", w, O * I, dw, mm_loss, &c, 1000, 1e-2f);
  /* acc adds to what is there */
  float y2[N * O];
  for (int i = 0; i < N * O; i++) y2[i] = 1.0f;
  tidei_train_mm_fwd(y2, x, w, N, O, I, 1);
  mm_loss(&c);
  CHECK_NEAR(y2[3], y[3] + 1.0f, 1e-5);
}

typedef struct { float *x, *w, *r, *y, *rstd; int n, d; } norm_ctx;
static double norm_loss(void *p) {
  norm_ctx *c = p;
  tidei_train_rmsnorm_fwd(c->y, c->rstd, c->x, c->w, 0, c->n, c->d, 1e-5f);
  return dotd(c->y, c->r, (int64_t)c->n * c->d);
}

static void test_op_rmsnorm(void) {
  enum { N = 4, D = 12 };
  float x[N * D], w[D], r[N * D], y[N * D], rstd[N], dx[N * D], dw[D];
  fill(x, N * D, 1), fill(w, D, 1), fill(r, N * D, 1);
  norm_ctx c = { x, w, r, y, rstd, N, D };
  norm_loss(&c);
  memset(dx, 0, sizeof dx), memset(dw, 0, sizeof dw);
  tidei_train_rmsnorm_bwd(dx, dw, r, x, rstd, w, 0, N, D);
  fd_check("rmsnorm dx", x, N * D, dx, norm_loss, &c, 1000, 1e-2f);
  fd_check("rmsnorm dw", w, D, dw, norm_loss, &c, 1000, 1e-2f);
}

typedef struct { float *v, *r, *y, *cs; int nh, hd; } rope_ctx;
static double rope_loss(void *p) {
  rope_ctx *c = p;
  memcpy(c->y, c->v, sizeof(float) * (size_t)(c->nh * c->hd));
  tidei_train_rope_fwd(c->y, c->nh, c->hd, c->cs);
  return dotd(c->y, c->r, c->nh * c->hd);
}

static void test_op_rope(void) {
  enum { NH = 3, HD = 8, NP = 10 };
  float v[NH * HD], r[NH * HD], y[NH * HD], cs[NP * HD], dv[NH * HD];
  fill(v, NH * HD, 1), fill(r, NH * HD, 1);
  tidei_train_rope_table(cs, NP, HD, 10000.0f);
  /* the table is forward.c's: theta = pos * base^(-2i/n_rot) */
  CHECK_NEAR(cs[7 * HD + 2], cosf(7.0f * powf(10000.0f, -2.0f / HD)), 1e-6);
  CHECK_NEAR(cs[7 * HD + 1], sinf(7.0f), 1e-6);
  rope_ctx c = { v, r, y, cs + 7 * HD, NH, HD };
  memcpy(dv, r, sizeof dv);
  tidei_train_rope_bwd(dv, NH, HD, c.cs);
  fd_check("rope dv", v, NH * HD, dv, rope_loss, &c, 1000, 1e-2f);
}

typedef struct {
  tidei_attn_shape a;
  int64_t B;
  float *q, *k, *v, *p, *o, *r;
} attn_ctx;
static double attn_loss(void *pc) {
  attn_ctx *c = pc;
  for (int64_t b = 0; b < c->B; b++)
    for (int g = 0; g < c->a.n_kv_head; g++) tidei_train_attn_fwd(&c->a, b, g, c->q, c->k, c->v, c->p, c->o);
  return dotd(c->o, c->r, c->B * c->a.S * c->a.n_head * c->a.head_dim);
}

static void test_op_attention(void) {
  enum { B = 2, S = 5, H = 4, KV = 2, HD = 4, N = B * S };
  float q[N * H * HD], k[N * KV * HD], v[N * KV * HD], p[B * H * S * S], o[N * H * HD];
  float r[N * H * HD], dq[N * H * HD], dk[N * KV * HD], dv[N * KV * HD], dp[B * H * S * S];
  fill(q, N * H * HD, 1), fill(k, N * KV * HD, 1), fill(v, N * KV * HD, 1), fill(r, N * H * HD, 1);
  attn_ctx c = { { H, KV, HD, S }, B, q, k, v, p, o, r };
  attn_loss(&c);
  /* causal: row 0 attends only to itself */
  CHECK_NEAR(p[0], 1.0, 1e-6);
  CHECK(p[1] == 0.0f);
  for (int64_t b = 0; b < B; b++)
    for (int g = 0; g < KV; g++) tidei_train_attn_bwd(&c.a, b, g, q, k, v, p, r, dp, dq, dk, dv);
  fd_check("attention dq", q, N * H * HD, dq, attn_loss, &c, 1000, 1e-2f);
  fd_check("attention dk", k, N * KV * HD, dk, attn_loss, &c, 1000, 1e-2f);
  fd_check("attention dv", v, N * KV * HD, dv, attn_loss, &c, 1000, 1e-2f);
}

typedef struct { float *a, *u, *h, *r; int64_t n; } swiglu_ctx;
static double swiglu_loss(void *p) {
  swiglu_ctx *c = p;
  tidei_train_swiglu_fwd(c->h, c->a, c->u, c->n);
  return dotd(c->h, c->r, c->n);
}

static void test_op_swiglu(void) {
  enum { N = 40 };
  float a[N], u[N], h[N], r[N], da[N], du[N];
  fill(a, N, 4), fill(u, N, 2), fill(r, N, 1);
  swiglu_ctx c = { a, u, h, r, N };
  tidei_train_swiglu_bwd(da, du, r, a, u, N);
  fd_check("swiglu da", a, N, da, swiglu_loss, &c, 1000, 1e-2f);
  fd_check("swiglu du", u, N, du, swiglu_loss, &c, 1000, 1e-2f);
}

typedef struct { float *z, *tmp; int32_t V, target; } xent_ctx;
static double xent_loss(void *p) {
  xent_ctx *c = p;
  memcpy(c->tmp, c->z, sizeof(float) * (size_t)c->V);
  return tidei_train_xent_row(c->tmp, c->V, c->target, 1.0f);
}

static void test_op_xent(void) {
  enum { V = 30 };
  float z[V], tmp[V], dz[V];
  fill(z, V, 3);
  xent_ctx c = { z, tmp, V, 7 };
  memcpy(dz, z, sizeof dz);
  double l = tidei_train_xent_row(dz, V, 7, 1.0f);
  double lse = 0;
  for (int i = 0; i < V; i++) lse += exp((double)z[i]);
  CHECK_NEAR(l, log(lse) - z[7], 1e-6);
  fd_check("xent dz", z, V, dz, xent_loss, &c, 1000, 1e-2f);
}

typedef struct { float *c, *p1, *p2, *y, *u, *r; int64_t n, d, rk; float eps; } steer_ctx;
static double steer_loss(void *p) {
  steer_ctx *s = p;
  tidei_train_steer_fwd(s->y, s->u, s->c, s->p1, s->p2, s->eps, s->n, s->d, s->rk);
  return dotd(s->y, s->r, s->n * s->d);
}

static void test_op_steer(void) {
  enum { N = 5, D = 8, R = 3 };
  float c[N * D], p1[D * R], p2[D * R], y[N * D], u[N * R], r[N * D];
  float dc[N * D], dp1[D * R], dp2[D * R], du[N * R];
  fill(c, N * D, 1), fill(p1, D * R, 1), fill(p2, D * R, 1), fill(r, N * D, 1);
  steer_ctx s = { c, p1, p2, y, u, r, N, D, R, 0.7f };
  steer_loss(&s);
  /* y = c + eps (c . P1) P2^T by hand for one entry */
  double want = c[2 * D + 5];
  for (int j = 0; j < R; j++) {
    double cp = 0;
    for (int i = 0; i < D; i++) cp += (double)c[2 * D + i] * p1[i * R + j];
    want += 0.7 * cp * p2[5 * R + j];
  }
  CHECK_NEAR(y[2 * D + 5], want, 1e-5);
  memset(dp1, 0, sizeof dp1), memset(dp2, 0, sizeof dp2);
  tidei_train_steer_bwd(dc, dp1, dp2, du, r, c, u, p1, p2, 0.7f, N, D, R);
  fd_check("steer dc", c, N * D, dc, steer_loss, &s, 1000, 1e-2f);
  fd_check("steer dp1", p1, D * R, dp1, steer_loss, &s, 1000, 1e-2f);
  fd_check("steer dp2", p2, D * R, dp2, steer_loss, &s, 1000, 1e-2f);
}

/* ---------------------------------------------------------------- model */

enum { TV = 40, TT = 8, TB = 3 };

static tide_trainer_params tiny_params(int tied) {
  tide_trainer_params p = tide_trainer_default_params();
  p.n_vocab = TV, p.n_embd = 16, p.n_layer = 2, p.n_head = 4, p.n_kv_head = 2, p.n_ff = 32;
  p.n_ctx = TT, p.n_batch = 4, p.tied = tied, p.seed = 7;
  return p;
}

static void random_tokens(int32_t *t, int n) {
  for (int i = 0; i < n; i++) t[i] = (int32_t)(rnd() % TV);
}

typedef struct { tide_trainer *tr; const int32_t *tok; int B, T; } model_ctx;
static double model_loss(void *p) {
  model_ctx *c = p;
  double l;
  int64_t nt;
  tidei_train_loss(c->tr, c->tok, c->B, c->T, &l, &nt);
  return l;
}

/* Gradient of every trainable tensor against finite differences at n_pick
** random entries each. */
static void grad_check_trainer(tide_trainer *tr, const int32_t *tok, int B, int T, int n_pick,
                               float h) {
  double loss;
  int64_t nt;
  tidei_train_grad(tr, tok, B, T, 1, 1.0f, &loss, &nt);
  CHECK(nt == (int64_t)B * (T - 1));
  /* the gradient slab is overwritten by nothing but the next grad call */
  float *g = malloc(sizeof(float) * (size_t)tr->n_params);
  memcpy(g, tr->g, sizeof(float) * (size_t)tr->n_params);
  model_ctx c = { tr, tok, B, T };
  for (int i = 0; i < tr->n_tensors; i++) {
    const tidei_tparam *t = &tr->tensors[i];
    fd_check(t->name, tr->w + t->off, t->n, g + t->off, model_loss, &c, n_pick, h);
  }
  free(g);
}

/* Larger weights than the default init so that every op is non-linear. */
static void scale_weights(tide_trainer *tr, float s) {
  for (int i = 0; i < tr->n_tensors; i++) {
    const tidei_tparam *t = &tr->tensors[i];
    float *w = tr->w + t->off;
    for (int64_t j = 0; j < t->n; j++) w[j] = t->n_dims == 1 ? 1.0f + 0.3f * urand() : w[j] * s;
  }
}

static void test_model_grad(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  int32_t tok[TB * TT];
  random_tokens(tok, TB * TT);
  for (int tied = 0; tied < 2; tied++) {
    tide_trainer_params p = tiny_params(tied);
    tide_trainer *tr = NULL;
    CHECK(tide_trainer_new(env, &p, &tr) == TIDE_OK);
    CHECK(tr->n_tensors == 2 + 9 * 2 + !tied);
    scale_weights(tr, 15.0f);
    grad_check_trainer(tr, tok, TB, TT, 6, 1e-2f);
    tide_trainer_free(tr);
  }
  tide_env_free(env);
}

/* ---------------------------------------------------------------- optimizer */

static void test_schedule(void) {
  tide_trainer_params p = tide_trainer_default_params();
  p.lr = 1.0f, p.lr_min = 0.1f, p.warmup_steps = 10, p.total_steps = 110;
  CHECK_NEAR(tide_trainer_lr_at(&p, 0), 0.1, 1e-7);
  CHECK_NEAR(tide_trainer_lr_at(&p, 4), 0.5, 1e-7);
  CHECK_NEAR(tide_trainer_lr_at(&p, 9), 1.0, 1e-7);
  CHECK_NEAR(tide_trainer_lr_at(&p, 10), 1.0, 1e-7);
  CHECK_NEAR(tide_trainer_lr_at(&p, 60), 0.55, 1e-6);  /* half way: (1 + 0.1) / 2 */
  CHECK_NEAR(tide_trainer_lr_at(&p, 35), 0.1 + 0.45 * (1 + cos(M_PI * 0.25)), 1e-6);
  CHECK_NEAR(tide_trainer_lr_at(&p, 110), 0.1, 1e-7);
  CHECK_NEAR(tide_trainer_lr_at(&p, 500), 0.1, 1e-7);
  p.total_steps = 0;
  CHECK_NEAR(tide_trainer_lr_at(&p, 500), 1.0, 1e-7); /* constant after warm-up */
}

/* AdamW of one entry after k steps with gradients gs, in double. */
static double adamw_ref(double w, const double *gs, int k, double lr, double b1, double b2,
                        double eps, double wd, int decay) {
  double m = 0, v = 0;
  for (int t = 1; t <= k; t++) {
    m = b1 * m + (1 - b1) * gs[t - 1];
    v = b2 * v + (1 - b2) * gs[t - 1] * gs[t - 1];
    double mh = m / (1 - pow(b1, t)), vh = v / (1 - pow(b2, t));
    if (decay) w *= 1 - lr * wd;
    w -= lr * mh / (sqrt(vh) + eps);
  }
  return w;
}

static void test_adamw(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  tide_trainer_params p = tiny_params(1);
  p.lr = 0.01f, p.weight_decay = 0.5f, p.grad_clip = 0, p.beta1 = 0.8f, p.beta2 = 0.9f;
  p.adam_eps = 1e-6f;
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new(env, &p, &tr) == TIDE_OK);
  /* entry 3 of token_embd (decayed) and entry 2 of blk.0.attn_norm (not) */
  float *we = tr->w + tr->tensors[0].off + 3, *wn = tr->w + tr->tensors[1].off + 2;
  int64_t ie = tr->tensors[0].off + 3, in = tr->tensors[1].off + 2;
  double we0 = *we, wn0 = *wn;
  double gs[3] = { 0.3, -0.2, 0.05 }, gn[3] = { -1.0, 2.0, 0.5 };
  for (int s = 0; s < 3; s++) {
    memset(tr->g, 0, sizeof(float) * (size_t)tr->n_params);
    tr->g[ie] = (float)gs[s], tr->g[in] = (float)gn[s];
    tidei_train_update(tr, NULL);
  }
  CHECK_NEAR(*we, adamw_ref(we0, gs, 3, 0.01, 0.8, 0.9, 1e-6, 0.5, 1), 1e-6);
  CHECK_NEAR(*wn, adamw_ref(wn0, gn, 3, 0.01, 0.8, 0.9, 1e-6, 0.5, 0), 1e-6);
  CHECK(tide_trainer_steps_done(tr) == 3);
  /* a zero gradient still decays the matrices, never the norms */
  float w_other = tr->w[tr->tensors[2].off], n_other = tr->w[tr->tensors[1].off];
  CHECK(w_other != 0);
  CHECK_NEAR(n_other, 1.0, 0);
  tide_trainer_free(tr);

  /* clipping by the global norm: g scaled by clip / norm before Adam */
  p.grad_clip = 0.5f, p.weight_decay = 0;
  CHECK(tide_trainer_new(env, &p, &tr) == TIDE_OK);
  memset(tr->g, 0, sizeof(float) * (size_t)tr->n_params);
  tr->g[ie] = 3.0f, tr->g[in] = 4.0f; /* norm 5 */
  tide_trainer_stats st;
  double m_before = tr->adam_m[ie];
  tidei_train_update(tr, &st);
  CHECK_NEAR(st.grad_norm, 5.0, 1e-9);
  CHECK(st.clipped == 1);
  CHECK_NEAR(tr->adam_m[ie], m_before * 0.8 + 0.2 * 3.0 * 0.5 / (5.0 + 1e-6), 1e-7);
  CHECK_NEAR(tr->adam_v[in], 0.1 * pow(4.0 * 0.5 / (5.0 + 1e-6), 2), 1e-7);
  memset(tr->g, 0, sizeof(float) * (size_t)tr->n_params);
  tr->g[ie] = 0.3f; /* under the limit: not clipped */
  tidei_train_update(tr, &st);
  CHECK(st.clipped == 0);
  CHECK_NEAR(st.grad_norm, 0.3, 1e-7);
  CHECK_NEAR(st.lr, 0.01, 1e-9);
  tide_trainer_free(tr);
  tide_env_free(env);
}

/* Accumulating two micro-batches of one sequence == one batch of two. */
static void test_grad_accum(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  tide_trainer_params p = tiny_params(0);
  tide_trainer *a = NULL, *b = NULL;
  p.grad_accum = 2;
  CHECK(tide_trainer_new(env, &p, &a) == TIDE_OK);
  p.grad_accum = 1;
  CHECK(tide_trainer_new(env, &p, &b) == TIDE_OK);
  int32_t tok[2 * TT];
  random_tokens(tok, 2 * TT);
  tide_trainer_stats sa, sb;
  CHECK(tide_trainer_step(a, tok, 1, TT, &sa) == TIDE_OK);
  CHECK(tide_trainer_step(b, tok, 2, TT, &sb) == TIDE_OK);
  CHECK_NEAR(sa.loss, sb.loss, 1e-6);
  CHECK_NEAR(sa.grad_norm, sb.grad_norm, 1e-6 * sb.grad_norm);
  CHECK(sa.n_tokens == 2 * TT && sb.n_tokens == 2 * TT);
  double worst = 0;
  for (int64_t i = 0; i < a->n_params; i++) worst = fmax(worst, fabs(a->g[i] - b->g[i]));
  CHECKF(worst < 1e-6, "accumulated gradient differs by %g", worst);
  tide_trainer_free(a);
  tide_trainer_free(b);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- training */

/* The repeating sequence 0 1 2 ... 9 0 1 ... of length TT, at offset b. */
static void cyclic_batch(int32_t *tok, int B, int T, int shift) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) tok[b * T + t] = (int32_t)((b + t + shift) % 10 + 3);
}

static void run_losses(tide_env *env, double *losses, int n) {
  tide_trainer_params p = tiny_params(1);
  p.lr = 1e-2f, p.warmup_steps = 10, p.total_steps = 300;
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new(env, &p, &tr) == TIDE_OK);
  int32_t tok[4 * TT];
  for (int s = 0; s < n; s++) {
    tide_trainer_stats st;
    cyclic_batch(tok, 4, TT, s);
    CHECK(tide_trainer_step(tr, tok, 4, TT, &st) == TIDE_OK);
    losses[s] = st.loss;
  }
  tide_trainer_free(tr);
}

static void test_loss_falls(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  double l[300];
  run_losses(env, l, 300);
  CHECKF(l[299] < l[0] / 20, "loss %g -> %g", l[0], l[299]);
  CHECKF(l[0] > 3.0 && l[0] < 4.5, "first loss %g, expected about log(40) = 3.69", l[0]);
  tide_env_free(env);
}

static void test_reproducible(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  double a[50], b[50];
  run_losses(env, a, 50);
  run_losses(env, b, 50);
  CHECK(memcmp(a, b, sizeof a) == 0);
  /* with two threads too */
  tide_env_set_threads(env, 2);
  run_losses(env, a, 50);
  run_losses(env, b, 50);
  CHECK(memcmp(a, b, sizeof a) == 0);
  tide_env_free(env);
}

static void test_eval(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  tide_trainer_params p = tiny_params(1);
  p.n_batch = 2;
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new(env, &p, &tr) == TIDE_OK);
  int32_t tok[5 * TT];
  random_tokens(tok, 5 * TT);
  float w0 = tr->w[5];
  double l, l1, sum = 0;
  int64_t nt;
  /* 5 sequences in chunks of 2: the mean over all of them */
  CHECK(tide_trainer_eval(tr, tok, 5, TT, &l) == TIDE_OK);
  for (int b = 0; b < 5; b++) {
    tidei_train_loss(tr, tok + b * TT, 1, TT, &l1, &nt);
    sum += l1;
  }
  CHECK_NEAR(l, sum / 5, 1e-6);
  CHECK(tr->w[5] == w0 && tide_trainer_steps_done(tr) == 0);
  /* bad arguments leave a message and change nothing */
  tok[3] = TV;
  CHECK(tide_trainer_eval(tr, tok, 5, TT, &l) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "token 40 at 3") != NULL);
  CHECK(tide_trainer_step(tr, tok, 2, TT, NULL) == TIDE_ERR_ARG);
  tok[3] = 0;
  CHECK(tide_trainer_step(tr, tok, 3, TT, NULL) == TIDE_ERR_ARG); /* B > n_batch */
  CHECK(tide_trainer_step(tr, tok, 1, TT + 1, NULL) == TIDE_ERR_ARG);
  CHECK(tide_trainer_step(tr, tok, 1, 1, NULL) == TIDE_ERR_ARG);
  CHECK(tide_trainer_steps_done(tr) == 0);
  tide_trainer_free(tr);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- files */

/* A 40-token SentencePiece-style vocabulary. */
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
    else snprintf(vocab_text[i], 8, "%c", 'a' + (i - 3) % 26), vocab_text[i][1] = (char)(i >= 29 ? 'x' : 0), vocab_text[i][2] = 0;
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
  snprintf(buf[k], sizeof buf[k], "/tmp/tide_test_train_%d_%s", (int)getpid(), name);
  return buf[k];
}

/* Trains a few steps, saves, loads with tide_model_load and compares
** tide_decode's logits (F32 KV) with the trainer's forward. */
static void check_save_load(tide_env *env, int tied) {
  tide_trainer_params p = tiny_params(tied);
  p.lr = 1e-2f;
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new(env, &p, &tr) == TIDE_OK);
  int32_t tok[4 * TT];
  for (int s = 0; s < 20; s++) {
    cyclic_batch(tok, 4, TT, s);
    CHECK(tide_trainer_step(tr, tok, 4, TT, NULL) == TIDE_OK);
  }
  tide_trainer_vocab v = tiny_vocab();
  tide_trainer_save_params sp = { "tiny", NULL, &v, 0, NULL };
  const char *path = tmp_path(tied ? "tied.gguf" : "untied.gguf");
  int st = tide_trainer_save(tr, path, &sp);
  CHECKF(st == TIDE_OK, "save: %s", tide_env_errmsg(env));
  tide_model *m = NULL;
  st = tide_model_load(env, path, NULL, &m);
  CHECKF(st == TIDE_OK, "load: %s", tide_env_errmsg(env));
  if (st) { tide_trainer_free(tr); return; }
  tide_model_info info;
  tide_model_get_info(m, &info);
  CHECK(info.n_vocab == TV && info.n_layer == 2 && info.n_kv_head == 2 && info.n_ctx_train == TT);
  CHECK(strcmp(info.name, "tiny") == 0);
  CHECK(tide_tokenizer_bos(tide_model_tokenizer(m)) == 1);
  /* the trainer's logits of sequence 0: the output projection of its cf */
  random_tokens(tok, TT);
  double l;
  int64_t nt;
  tidei_train_loss(tr, tok, 1, TT, &l, &nt);
  float *ref = malloc(sizeof(float) * TT * TV);
  tidei_train_mm_fwd(ref, tr->xnf, tr->output, TT, TV, 16, 0);
  tide_ctx_params cp = tide_ctx_default_params();
  cp.kv_type = TIDE_F32;
  tide_ctx *ctx = NULL;
  CHECK(tide_ctx_new(m, &cp, &ctx) == TIDE_OK);
  int32_t seq;
  CHECK(tide_seq_new(ctx, &seq) == TIDE_OK);
  tide_batch_row rows[TT];
  for (int t = 0; t < TT; t++) rows[t] = (tide_batch_row){ seq, t, tok[t], 1 };
  CHECK(tide_decode(ctx, rows, TT) == TIDE_OK);
  double worst = 0, scale = 0;
  for (int t = 0; t < TT; t++) {
    const float *lg = tide_ctx_logits(ctx, t);
    for (int i = 0; i < TV; i++) {
      worst = fmax(worst, fabs(lg[i] - ref[t * TV + i]));
      scale = fmax(scale, fabs(ref[t * TV + i]));
    }
  }
  CHECKF(worst < 1e-4 && scale > 0.5, "tied %d: logits differ by %g (largest %g)", tied, worst,
         scale);
  free(ref);
  tide_ctx_free(ctx);
  /* a trainer made from the loaded model has the same weights */
  tide_trainer *t2 = NULL;
  CHECK(tide_trainer_new_from_model(m, &p, &t2) == TIDE_OK);
  if (t2) {
    CHECK(t2->n_params == tr->n_params && t2->tied == tied);
    CHECK(memcmp(t2->w, tr->w, sizeof(float) * (size_t)tr->n_params) == 0);
    /* and saves with the model's tokenizer by default */
    CHECK(tide_trainer_save(t2, tmp_path("again.gguf"), NULL) == TIDE_OK);
    remove(tmp_path("again.gguf"));
  }
  tide_trainer_free(t2);
  tide_model_free(m);
  tide_trainer_free(tr);
  remove(path);
}

static void test_save_load(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  check_save_load(env, 1);
  check_save_load(env, 0);
  /* no tokenizer: a clear error */
  tide_trainer_params p = tiny_params(1);
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new(env, &p, &tr) == TIDE_OK);
  CHECK(tide_trainer_save(tr, tmp_path("x.gguf"), NULL) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "tokenizer") != NULL);
  tide_trainer_free(tr);
  tide_env_free(env);
}

static void test_resume(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  tide_trainer_params p = tiny_params(0);
  p.lr = 1e-2f, p.warmup_steps = 3, p.total_steps = 20;
  tide_trainer *a = NULL, *b = NULL;
  CHECK(tide_trainer_new(env, &p, &a) == TIDE_OK);
  tide_trainer_vocab v = tiny_vocab();
  tide_trainer_save_params sp = { "ckpt", NULL, &v, 1, NULL };
  const char *path = tmp_path("ckpt.gguf");
  double la[20], lb[20];
  int32_t tok[4 * TT];
  for (int s = 0; s < 20; s++) {
    tide_trainer_stats st;
    if (s == 10) CHECK(tide_trainer_save(a, path, &sp) == TIDE_OK);
    cyclic_batch(tok, 4, TT, s * 3);
    CHECK(tide_trainer_step(a, tok, 4, TT, &st) == TIDE_OK);
    la[s] = st.loss;
  }
  p.seed = 99; /* different init: resume must overwrite everything */
  CHECK(tide_trainer_new(env, &p, &b) == TIDE_OK);
  int st = tide_trainer_resume(b, path);
  CHECKF(st == TIDE_OK, "resume: %s", tide_env_errmsg(env));
  CHECK(tide_trainer_steps_done(b) == 10);
  for (int s = 10; s < 20; s++) {
    tide_trainer_stats ts;
    cyclic_batch(tok, 4, TT, s * 3);
    CHECK(tide_trainer_step(b, tok, 4, TT, &ts) == TIDE_OK);
    lb[s] = ts.loss;
  }
  CHECK(memcmp(la + 10, lb + 10, 10 * sizeof(double)) == 0);
  /* the checkpoint is still a loadable model */
  tide_model *m = NULL;
  CHECK(tide_model_load(env, path, NULL, &m) == TIDE_OK);
  tide_model_free(m);
  /* a trainer of another shape refuses it, unchanged */
  tide_trainer *c = NULL;
  p.n_ff = 48;
  CHECK(tide_trainer_new(env, &p, &c) == TIDE_OK);
  float w0 = c->w[0];
  CHECK(tide_trainer_resume(c, path) == TIDE_ERR_FORMAT);
  CHECK(strstr(tide_env_errmsg(env), "feed_forward_length") != NULL);
  CHECK(c->w[0] == w0 && tide_trainer_steps_done(c) == 0);
  tide_trainer_free(c);
  /* a weights-only file is not a checkpoint */
  sp.optimizer = 0;
  CHECK(tide_trainer_save(a, path, &sp) == TIDE_OK);
  CHECK(tide_trainer_resume(b, path) == TIDE_ERR_FORMAT);
  CHECK(strstr(tide_env_errmsg(env), "optimizer") != NULL);
  tide_trainer_free(a);
  tide_trainer_free(b);
  remove(path);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- frozen */

/* A tiny model file (trained a little) for the frozen tests. */
static tide_model *tiny_model(tide_env *env, const char *name, int tied) {
  tide_trainer_params p = tiny_params(tied);
  tide_trainer *tr = NULL;
  tide_trainer_new(env, &p, &tr);
  scale_weights(tr, 15.0f);
  tide_trainer_vocab v = tiny_vocab();
  tide_trainer_save_params sp = { "base", NULL, &v, 0, NULL };
  tide_model *m = NULL;
  if (tide_trainer_save(tr, tmp_path(name), &sp) == TIDE_OK)
    tide_model_load(env, tmp_path(name), NULL, &m);
  tide_trainer_free(tr);
  remove(tmp_path(name));
  return m;
}

static void test_frozen_steer(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  tide_model *m = tiny_model(env, "base.gguf", 0);
  CHECK(m != NULL);
  if (!m) { tide_env_free(env); return; }
  tide_trainer_params p = tiny_params(0);
  tide_trainer_frozen_params fp = tide_trainer_frozen_default_params();
  fp.steer_rank = 3, fp.steer_eps = 0.5f;
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new_frozen(m, &p, &fp, &tr) == TIDE_OK);
  /* the base is read in place: no copy of the F32 weights */
  CHECK(tr->base_copy == NULL);
  CHECK((const void *)tr->lw[1].wq == m->layers[1].wq.data);
  CHECK((const void *)tr->output == m->output.data);
  CHECK(tr->n_tensors == 2 && tr->n_params == 2 * 16 * 3);
  CHECK(strcmp(tr->tensors[0].name, "steer.p1") == 0);
  fill(tr->p2, 16 * 3, 1); /* P2 starts at zero; make the check non-trivial */
  fill(tr->p1, 16 * 3, 1);
  int32_t tok[TB * TT];
  random_tokens(tok, TB * TT);
  grad_check_trainer(tr, tok, TB, TT, 20, 1e-2f);
  /* steps move only the steer: the model's logits without the steer stay */
  float w0 = ((const float *)m->layers[0].w_up.data)[5];
  float p10 = tr->p1[0];
  double before, after;
  int64_t nt;
  tidei_train_loss(tr, tok, TB, TT, &before, &nt);
  p.lr = 1e-2f;
  tr->p.lr = 5e-2f, tr->p.weight_decay = 0;
  for (int s = 0; s < 30; s++) CHECK(tide_trainer_step(tr, tok, TB, TT, NULL) == TIDE_OK);
  tidei_train_loss(tr, tok, TB, TT, &after, &nt);
  CHECKF(after < before, "steer training: loss %g -> %g", before, after);
  CHECK(tr->p1[0] != p10);
  CHECK(((const float *)m->layers[0].w_up.data)[5] == w0);
  /* the steer file round-trips through resume */
  tide_trainer_save_params sp = { "steer", NULL, NULL, 1, NULL };
  const char *path = tmp_path("steer.gguf");
  CHECK(tide_trainer_save(tr, path, &sp) == TIDE_OK);
  tide_trainer *t2 = NULL;
  CHECK(tide_trainer_new_frozen(m, &p, &fp, &t2) == TIDE_OK);
  CHECK(tide_trainer_resume(t2, path) == TIDE_OK);
  CHECK(memcmp(t2->w, tr->w, sizeof(float) * (size_t)tr->n_params) == 0);
  CHECK(tide_trainer_steps_done(t2) == 30);
  tide_model *bad = NULL;
  CHECK(tide_model_load(env, path, NULL, &bad) != TIDE_OK); /* not a model */
  tide_trainer_free(t2);
  remove(path);
  tide_trainer_free(tr);
  tide_model_free(m);
  tide_env_free(env);
}

static void test_frozen_prefix(void) {
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  tide_model *m = tiny_model(env, "base2.gguf", 1);
  if (!m) { CHECK(0); tide_env_free(env); return; }
  tide_trainer_params p = tiny_params(1);
  tide_trainer_frozen_params fp = tide_trainer_frozen_default_params();
  fp.steer_rank = 2, fp.steer_eps = 0.3f, fp.n_prefix = 3;
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new_frozen(m, &p, &fp, &tr) == TIDE_OK);
  CHECK(tr->n_tensors == 3);
  fill(tr->p2, 16 * 2, 1);
  fill(tr->prefix, 16 * 3, 1);
  int32_t tok[TB * TT];
  random_tokens(tok, TB * TT);
  grad_check_trainer(tr, tok, TB, TT, 20, 1e-2f);
  tide_trainer_free(tr);
  tide_model_free(m);
  tide_env_free(env);
}

/* The fixtures' llama models: F32 copied by new_from_model, Q8_0 frozen
** through an F32 copy. */
static void test_fixture_models(void) {
  const char *fx = test_fixtures();
  if (!fx) SKIP("no fixtures");
  tide_env *env = NULL;
  tide_env_new(&env, NULL, NULL);
  char path[512];
  tide_model *m = NULL;
  tide_trainer_params p = tide_trainer_default_params();
  p.n_batch = 1, p.n_ctx = 8;
  int32_t tok[8] = { 1, 450, 4996, 17354, 1701, 432, 17204, 975 };
  snprintf(path, sizeof path, "%s/models/llama-spm-tiny.gguf", fx);
  CHECK(tide_model_load(env, path, NULL, &m) == TIDE_OK);
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new_from_model(m, &p, &tr) == TIDE_OK);
  if (tr) {
    CHECK(tr->tied && tr->n_vocab == 32000 && tr->n_kv_head == 2 && tr->n_ctx_train == 256);
    CHECK(memcmp(tr->lw[1].w_down, m->layers[1].w_down.data, sizeof(float) * 64 * 192) == 0);
    CHECK(tr->lw[1].w_down != m->layers[1].w_down.data); /* a copy */
    tide_trainer_stats st;
    CHECK(tide_trainer_step(tr, tok, 1, 8, &st) == TIDE_OK);
    CHECK(st.loss > 5 && st.loss < 20);
  }
  tide_trainer_free(tr);
  tide_model_free(m);
  snprintf(path, sizeof path, "%s/models/llama-spm-tiny-q8_0.gguf", fx);
  CHECK(tide_model_load(env, path, NULL, &m) == TIDE_OK);
  tide_trainer_frozen_params fp = tide_trainer_frozen_default_params();
  fp.steer_rank = 4;
  tr = NULL;
  CHECK(tide_trainer_new_frozen(m, &p, &fp, &tr) == TIDE_OK);
  if (tr) {
    CHECK(tr->base_copy != NULL && tr->base_copy_size == sizeof(float) * (32000 * 64 + 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 192)));
    CHECK(tide_trainer_step(tr, tok, 1, 8, NULL) == TIDE_OK);
  }
  tide_trainer_free(tr);
  snprintf(path, sizeof path, "%s/models/gpt2-tiny.gguf", fx);
  tide_model *g = NULL;
  CHECK(tide_model_load(env, path, NULL, &g) == TIDE_OK);
  CHECK(tide_trainer_new_frozen(g, &p, &fp, &tr) == TIDE_ERR_UNSUPPORTED && tr == NULL);
  CHECK(strstr(tide_env_errmsg(env), "gpt2") != NULL);
  tide_model_free(g);
  tide_model_free(m);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- memory */

static void test_oom(void) {
  test_allocator c = { 0 };
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, test_alloc_fn, &c) == TIDE_OK);
  tide_trainer_params p = tiny_params(0);
  long long base = c.live;
  int ok = 0, n;
  for (n = 1; n < 200 && !ok; n++) {
    tide_trainer *tr = NULL;
    c.n_alloc = 0, c.fail_at = n;
    int st = tide_trainer_new(env, &p, &tr);
    c.fail_at = 0;
    if (st == TIDE_OK) {
      ok = 1;
      int32_t tok[2 * TT];
      random_tokens(tok, 2 * TT);
      long long live = c.live;
      CHECK(tide_trainer_step(tr, tok, 2, TT, NULL) == TIDE_OK);
      CHECK(c.live == live); /* a step allocates nothing */
      tide_trainer_free(tr);
    } else {
      CHECK(st == TIDE_ERR_NOMEM && tr == NULL);
    }
    CHECKF(c.live == base, "fail_at %d: %lld bytes leaked", n, c.live - base);
  }
  CHECKF(ok && n > 5, "trainer created after %d allocations", n - 1);
  tide_env_free(env);
  CHECK(c.live == 0);
  /* bad shapes are argument errors */
  tide_env_new(&env, NULL, NULL);
  tide_trainer *tr = NULL;
  p.n_embd = 18;
  CHECK(tide_trainer_new(env, &p, &tr) == TIDE_ERR_ARG && tr == NULL);
  p = tiny_params(0), p.n_kv_head = 3;
  CHECK(tide_trainer_new(env, &p, &tr) == TIDE_ERR_ARG);
  p = tiny_params(0), p.beta2 = 1.0f;
  CHECK(tide_trainer_new(env, &p, &tr) == TIDE_ERR_ARG);
  tide_env_free(env);
}

TEST_MAIN(test_op_matmul, test_op_rmsnorm, test_op_rope, test_op_attention, test_op_swiglu,
          test_op_xent, test_op_steer, test_model_grad, test_schedule, test_adamw,
          test_grad_accum, test_loss_falls, test_reproducible, test_eval, test_save_load,
          test_resume, test_frozen_steer, test_frozen_prefix, test_fixture_models, test_oom)
