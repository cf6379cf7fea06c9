/*
** train.c -- the trainer: a llama model in F32 with gradients and AdamW
** moments (or a frozen model with trainable extras: an LM-Steer pair, a
** prefix of embeddings, a per-layer KV prefix), the training forward pass
** that keeps its activations, the backward pass, clipping, the warm-up +
** cosine schedule and AdamW.
** Layer: core. Checkpoints are in train_io.c, the kernels in train_ops.c.
**
** Per block, forward (as forward.c):  xn1 = norm(x); q, k, v = xn1 W^T;
** rope(q, k); ao = attend(q, k, v); xm = x + ao Wo^T; xn2 = norm(xm);
** x' = xm + (silu(xn2 Wg^T) * xn2 Wu^T) Wd^T. Then xnf = norm(x_L),
** cf = xnf (+ steer), logits = cf Wout^T, loss = mean cross-entropy.
** Backward walks the same steps in reverse; dx always holds the gradient of
** the residual stream at the point reached. Nothing is allocated after
** creation.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train.h"

/* ---------------------------------------------------------------- params */

tide_trainer_params tide_trainer_default_params(void) {
  tide_trainer_params p;
  memset(&p, 0, sizeof p);
  p.n_vocab = 256;
  p.n_embd = 64;
  p.n_layer = 2;
  p.n_head = 4;
  p.n_kv_head = 4;
  p.n_ff = 192;
  p.n_ctx = 64;
  p.rope_base = 10000.0f;
  p.norm_eps = 1e-5f;
  p.tied = 1;
  p.seed = 1;
  p.init_std = 0.02f;
  p.n_batch = 8;
  p.grad_accum = 1;
  p.lr = 1e-3f;
  p.lr_min = 1e-4f;
  p.beta1 = 0.9f;
  p.beta2 = 0.95f;
  p.adam_eps = 1e-8f;
  p.weight_decay = 0.1f;
  p.grad_clip = 1.0f;
  return p;
}

tide_trainer_frozen_params tide_trainer_frozen_default_params(void) {
  tide_trainer_frozen_params f;
  memset(&f, 0, sizeof f);
  f.steer_eps = 1e-3f;
  return f;
}

double tide_trainer_lr_at(const tide_trainer_params *p, int64_t step) {
  double lr = p->lr, lo = p->lr_min;
  if (step < 0) step = 0;
  if (p->warmup_steps > 0 && step < p->warmup_steps)
    return lr * (double)(step + 1) / (double)p->warmup_steps;
  if (p->total_steps <= p->warmup_steps) return lr;
  double t = (double)(step - p->warmup_steps) / (double)(p->total_steps - p->warmup_steps);
  if (t > 1) t = 1;
  return lo + 0.5 * (lr - lo) * (1.0 + cos(3.14159265358979323846 * t));
}

/* ---------------------------------------------------------------- buffers */

typedef struct { void **p; size_t size; } tbuf;

/* The activation and scratch buffers: address of the pointer and bytes. */
static int buffer_specs(tide_trainer *tr, tbuf *s) {
  size_t f = sizeof(float), Nm = (size_t)tr->n_rows, e = (size_t)tr->n_embd;
  size_t Sm = (size_t)(tr->n_prefix + tr->n_ctx), hd = (size_t)tr->head_dim;
  size_t Pk = (size_t)tr->n_kv_prefix, Cm = Pk + Sm; /* attention columns */
  size_t qd = (size_t)tr->n_head * hd, kvd = (size_t)tr->n_kv_head * hd;
  size_t ff = (size_t)tr->n_ff, L = tr->save_layers ? (size_t)tr->n_layer : 1;
  size_t nx = tr->save_layers ? (size_t)tr->n_layer + 1 : 2, r = (size_t)tr->steer_rank;
  size_t V = (size_t)tr->n_vocab;
  int n = 0;
#define B_(ptr, bytes) (s[n++] = (tbuf){ (void **)&tr->ptr, (bytes) })
  B_(rope_cs, Cm * hd * f);
  B_(target, Nm * sizeof(int32_t));
  B_(tok, Nm * sizeof(int32_t));
  B_(xs, nx * Nm * e * f);
  B_(xn1, L * Nm * e * f);
  B_(xn2, L * Nm * e * f);
  B_(rstd1, L * Nm * f);
  B_(rstd2, L * Nm * f);
  B_(q, L * Nm * qd * f);
  B_(k, L * Nm * kvd * f);
  B_(v, L * Nm * kvd * f);
  B_(att, L * (size_t)tr->p.n_batch * (size_t)tr->n_head * Sm * Cm * f);
  B_(datt, (size_t)tr->p.n_batch * (size_t)tr->n_head * Sm * Cm * f);
  B_(ao, L * Nm * qd * f);
  B_(xm, L * Nm * e * f);
  B_(fa, L * Nm * ff * f);
  B_(fu, L * Nm * ff * f);
  B_(xnf, Nm * e * f);
  B_(rstdf, Nm * f);
  B_(su, Nm * r * f);
  B_(cf, Nm * e * f);
  B_(logits, Nm * V * f);
  B_(dx, Nm * e * f);
  B_(dxb, Nm * e * f);
  B_(dq, Nm * qd * f);
  B_(dao, Nm * qd * f);
  B_(dk, Nm * kvd * f);
  B_(dv, Nm * kvd * f);
  B_(hb, Nm * ff * f);
  B_(dh, Nm * ff * f);
  B_(da, Nm * ff * f);
  B_(du, Nm * ff * f);
  B_(dsu, Nm * r * f);
  B_(dkp, (size_t)tr->p.n_batch * Pk * kvd * f);
  B_(dvp, (size_t)tr->p.n_batch * Pk * kvd * f);
  B_(part, TIDEI_MAX_THREADS * sizeof(double));
#undef B_
  return n;
}

#define MAX_BUFS 40

static void trainer_destroy(tide_trainer *tr) {
  tide_env *env = tr->env;
  tbuf s[MAX_BUFS];
  int n = buffer_specs(tr, s);
  for (int i = 0; i < n; i++)
    if (*s[i].p) tidei_free(env, *s[i].p, s[i].size);
  size_t np = (size_t)tr->n_params * sizeof(float);
  float *slabs[4] = { tr->w, tr->g, tr->adam_m, tr->adam_v };
  for (int i = 0; i < 4; i++)
    if (slabs[i]) tidei_free(env, slabs[i], np);
  if (tr->base_copy) tidei_free(env, tr->base_copy, tr->base_copy_size);
  if (tr->tensors) tidei_free(env, tr->tensors, (size_t)tr->n_tensors * sizeof(tidei_tparam));
  if (tr->lw) tidei_free(env, tr->lw, (size_t)tr->n_layer * sizeof(tidei_tlayer));
  if (tr->lg) tidei_free(env, tr->lg, (size_t)tr->n_layer * sizeof(tidei_tlayer_grad));
  if (tr->model) tidei_model_unref(tr->model);
  tidei_free(env, tr, sizeof *tr);
  tidei_env_unref(env);
}

void tide_trainer_free(tide_trainer *tr) {
  if (tr) trainer_destroy(tr);
}

/* ---------------------------------------------------------------- creation */

static int check_params(tide_env *env, const tide_trainer_params *p) {
  if (p->n_batch < 1 || p->n_batch > (1 << 16) || p->grad_accum < 1 || p->grad_accum > (1 << 20))
    return tidei_error(env, TIDE_ERR_ARG, "trainer: n_batch %d or grad_accum %d out of range",
                       (int)p->n_batch, (int)p->grad_accum);
  if (p->n_ctx < 2 || p->n_ctx > (1 << 16))
    return tidei_error(env, TIDE_ERR_ARG, "trainer: n_ctx %d out of range 2..65536",
                       (int)p->n_ctx);
  if (!(p->lr >= 0) || !(p->lr_min >= 0) || !(p->beta1 >= 0 && p->beta1 < 1)
      || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->adam_eps > 0) || !(p->weight_decay >= 0)
      || !(p->grad_clip >= 0) || p->warmup_steps < 0 || p->total_steps < 0
      || !(p->init_std >= 0))
    return tidei_error(env, TIDE_ERR_ARG, "trainer: bad optimizer parameters (lr %g, betas %g %g, "
                       "eps %g, weight_decay %g, grad_clip %g)", (double)p->lr,
                       (double)p->beta1, (double)p->beta2, (double)p->adam_eps,
                       (double)p->weight_decay, (double)p->grad_clip);
  return TIDE_OK;
}

static int check_shape(tide_trainer *tr) {
  tide_env *env = tr->env;
  if (tr->n_vocab < 2 || tr->n_vocab > (1 << 24) || tr->n_embd < 2 || tr->n_embd > (1 << 16)
      || tr->n_layer < 1 || tr->n_layer > 4096 || tr->n_ff < 1 || tr->n_ff > (1 << 18)
      || tr->n_head < 1 || tr->n_kv_head < 1 || tr->head_dim < 2)
    return tidei_error(env, TIDE_ERR_ARG, "trainer: bad shape (n_vocab %d, n_embd %d, n_layer %d, "
                       "n_ff %d, n_head %d, n_kv_head %d)", (int)tr->n_vocab, (int)tr->n_embd,
                       (int)tr->n_layer, (int)tr->n_ff, (int)tr->n_head, (int)tr->n_kv_head);
  if (tr->n_head % tr->n_kv_head || tr->head_dim % 2)
    return tidei_error(env, TIDE_ERR_ARG, "trainer: n_head %d is not a multiple of n_kv_head %d "
                       "or head_dim %d is odd", (int)tr->n_head, (int)tr->n_kv_head,
                       (int)tr->head_dim);
  if (tr->n_prefix < 0 || tr->n_prefix > (1 << 12) || tr->steer_rank < 0
      || tr->steer_rank > tr->n_embd || tr->n_kv_prefix < 0 || tr->n_kv_prefix > (1 << 12))
    return tidei_error(env, TIDE_ERR_ARG, "trainer: n_prefix %d, n_kv_prefix %d or steer_rank %d "
                       "out of range", (int)tr->n_prefix, (int)tr->n_kv_prefix,
                       (int)tr->steer_rank);
  tr->n_rows = (int64_t)tr->p.n_batch * (tr->n_prefix + tr->n_ctx);
  if (tr->n_rows > (1 << 24))
    return tidei_error(env, TIDE_ERR_ARG, "trainer: n_batch * n_ctx = %lld rows is too many",
                       (long long)tr->n_rows);
  return TIDE_OK;
}

/* Appends a tensor to the table (vector when n_out == 0). */
static void add_tensor(tide_trainer *tr, const char *name, int64_t n_in, int64_t n_out,
                       int decay) {
  tidei_tparam *t = &tr->tensors[tr->n_tensors++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->n_dims = n_out ? 2 : 1;
  t->ne[0] = n_in;
  t->ne[1] = n_out ? n_out : 1;
  t->n = t->ne[0] * t->ne[1];
  t->off = tr->n_params;
  t->decay = decay;
  tr->n_params += t->n;
}

/* The table of trainable tensors, in GGUF file order. */
static int build_tensors(tide_trainer *tr) {
  int n = tr->frozen ? (tr->steer_rank ? 2 : 0) + (tr->n_prefix ? 1 : 0)
                         + (tr->n_kv_prefix ? 2 * tr->n_layer : 0)
                     : 2 + 9 * tr->n_layer + (tr->tied ? 0 : 1);
  tr->tensors = tidei_calloc(tr->env, (size_t)n, sizeof(tidei_tparam));
  if (!tr->tensors) return TIDE_ERR_NOMEM;
  int64_t e = tr->n_embd, qd = (int64_t)tr->n_head * tr->head_dim;
  int64_t kvd = (int64_t)tr->n_kv_head * tr->head_dim, ff = tr->n_ff;
  if (tr->frozen) {
    if (tr->steer_rank) {
      add_tensor(tr, "steer.p1", tr->steer_rank, e, 1);
      add_tensor(tr, "steer.p2", tr->steer_rank, e, 1);
    }
    if (tr->n_prefix) add_tensor(tr, "prefix.embd", e, tr->n_prefix, 0);
    for (int il = 0; tr->n_kv_prefix && il < tr->n_layer; il++) {
      char b[48];
      snprintf(b, sizeof b, "prefix.k.%d", il);
      add_tensor(tr, b, kvd, tr->n_kv_prefix, 0);
      snprintf(b, sizeof b, "prefix.v.%d", il);
      add_tensor(tr, b, kvd, tr->n_kv_prefix, 0);
    }
    return TIDE_OK;
  }
  add_tensor(tr, "token_embd.weight", e, tr->n_vocab, 1);
  for (int il = 0; il < tr->n_layer; il++) {
    char b[48];
#define T_(sfx, a, o, d) (snprintf(b, sizeof b, "blk.%d.%s", il, sfx), add_tensor(tr, b, a, o, d))
    T_("attn_norm.weight", e, 0, 0);
    T_("attn_q.weight", e, qd, 1);
    T_("attn_k.weight", e, kvd, 1);
    T_("attn_v.weight", e, kvd, 1);
    T_("attn_output.weight", qd, e, 1);
    T_("ffn_norm.weight", e, 0, 0);
    T_("ffn_gate.weight", e, ff, 1);
    T_("ffn_up.weight", e, ff, 1);
    T_("ffn_down.weight", ff, e, 1);
#undef T_
  }
  add_tensor(tr, "output_norm.weight", e, 0, 0);
  if (!tr->tied) add_tensor(tr, "output.weight", e, tr->n_vocab, 1);
  return TIDE_OK;
}

/* Points the weight and gradient views into the slabs (full mode) or the
** extras (frozen mode; the base views are set by the frozen constructor). */
static void set_views(tide_trainer *tr) {
  const tidei_tparam *t = tr->tensors;
  if (tr->frozen) {
    for (int i = 0; i < tr->n_tensors; i++) {
      float *w = tr->w + t[i].off, *g = tr->g + t[i].off;
      if (!strcmp(t[i].name, "steer.p1")) tr->p1 = w, tr->g_p1 = g;
      else if (!strcmp(t[i].name, "steer.p2")) tr->p2 = w, tr->g_p2 = g;
      else if (!strcmp(t[i].name, "prefix.embd")) tr->prefix = w, tr->g_prefix = g;
      else if (!tr->kvp) tr->kvp = w, tr->g_kvp = g; /* prefix.k.0, the first of the KV prefix */
    }
    return;
  }
  int k = 0;
  tr->tok_embd = tr->w + t[k].off, tr->g_tok_embd = tr->g + t[k].off, k++;
  for (int il = 0; il < tr->n_layer; il++) {
    tidei_tlayer *l = &tr->lw[il];
    tidei_tlayer_grad *d = &tr->lg[il];
    const float **wp[9] = { &l->attn_norm, &l->wq, &l->wk, &l->wv, &l->wo, &l->ffn_norm,
                            &l->w_gate, &l->w_up, &l->w_down };
    float **gp[9] = { &d->attn_norm, &d->wq, &d->wk, &d->wv, &d->wo, &d->ffn_norm,
                      &d->w_gate, &d->w_up, &d->w_down };
    for (int j = 0; j < 9; j++, k++) *wp[j] = tr->w + t[k].off, *gp[j] = tr->g + t[k].off;
  }
  tr->out_norm = tr->w + t[k].off, tr->g_out_norm = tr->g + t[k].off, k++;
  if (tr->tied) tr->output = tr->tok_embd, tr->g_output = tr->g_tok_embd;
  else tr->output = tr->w + t[k].off, tr->g_output = tr->g + t[k].off;
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* n normal samples of standard deviation std (Box-Muller in double). */
static void fill_normal(float *x, int64_t n, double std, uint64_t *s) {
  for (int64_t i = 0; i < n; i += 2) {
    double u1 = ((double)(rng_next(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
    double r = sqrt(-2.0 * log(u1)) * std, a = 6.28318530717958647692 * u2;
    x[i] = (float)(r * cos(a));
    if (i + 1 < n) x[i + 1] = (float)(r * sin(a));
  }
}

/* Seeded init: matrices N(0, std), residual outputs std / sqrt(2 n_layer),
** norms 1; frozen extras: steer P1 N(0, std), P2 0, prefixes N(0, std). */
static void init_weights(tide_trainer *tr) {
  uint64_t s = tr->p.seed;
  double std = tr->p.init_std, res = std / sqrt(2.0 * tr->n_layer);
  for (int i = 0; i < tr->n_tensors; i++) {
    const tidei_tparam *t = &tr->tensors[i];
    float *w = tr->w + t->off;
    const char *nm = t->name;
    size_t len = strlen(nm);
    if (t->n_dims == 1) {
      for (int64_t j = 0; j < t->n; j++) w[j] = 1.0f;
    } else if (!strcmp(nm, "steer.p2")) {
      memset(w, 0, (size_t)t->n * sizeof(float));
    } else {
      int resid = (len > 18 && !strcmp(nm + len - 18, "attn_output.weight"))
                  || (len > 15 && !strcmp(nm + len - 15, "ffn_down.weight"));
      fill_normal(w, t->n, resid ? res : std, &s);
    }
  }
}

/* Allocates the slabs, views and activation buffers of a trainer whose
** shape and mode are set. */
static int trainer_alloc(tide_trainer *tr) {
  tide_env *env = tr->env;
  int st = build_tensors(tr);
  if (st) return st;
  size_t np = (size_t)tr->n_params * sizeof(float);
  float **slabs[4] = { &tr->w, &tr->g, &tr->adam_m, &tr->adam_v };
  for (int i = 0; i < 4; i++)
    if (np && !(*slabs[i] = tidei_calloc(env, 1, np))) return TIDE_ERR_NOMEM;
  tr->lw = tidei_calloc(env, (size_t)tr->n_layer, sizeof(tidei_tlayer));
  tr->lg = tidei_calloc(env, (size_t)tr->n_layer, sizeof(tidei_tlayer_grad));
  if (!tr->lw || !tr->lg) return TIDE_ERR_NOMEM;
  set_views(tr);
  tbuf s[MAX_BUFS];
  int n = buffer_specs(tr, s);
  for (int i = 0; i < n; i++)
    if (s[i].size && !(*s[i].p = tidei_alloc(env, s[i].size))) return TIDE_ERR_NOMEM;
  tidei_train_rope_table(tr->rope_cs, tr->n_kv_prefix + tr->n_prefix + tr->n_ctx, tr->head_dim,
                         tr->rope_base);
  return TIDE_OK;
}

static int trainer_begin(tide_env *env, const tide_trainer_params *p, tide_trainer **out) {
  tide_trainer_params pp = p ? *p : tide_trainer_default_params();
  int st = check_params(env, &pp);
  if (st) return st;
  tide_trainer *tr = tidei_calloc(env, 1, sizeof *tr);
  if (!tr) return TIDE_ERR_NOMEM;
  tidei_env_ref(env);
  tr->env = env;
  tr->p = pp;
  tr->n_ctx = tr->n_ctx_train = pp.n_ctx;
  tr->save_layers = 1;
  *out = tr;
  return TIDE_OK;
}

int tide_trainer_new(tide_env *env, const tide_trainer_params *p, tide_trainer **out) {
  if (out) *out = NULL;
  if (!env) return TIDE_ERR_ARG;
  if (!out) return tidei_error(env, TIDE_ERR_ARG, "trainer_new: out is NULL");
  tide_trainer *tr;
  int st = trainer_begin(env, p, &tr);
  if (st) return st;
  p = &tr->p;
  tr->n_vocab = p->n_vocab, tr->n_embd = p->n_embd, tr->n_layer = p->n_layer;
  tr->n_head = p->n_head, tr->n_kv_head = p->n_kv_head, tr->n_ff = p->n_ff;
  tr->norm_eps = p->norm_eps, tr->rope_base = p->rope_base, tr->tied = p->tied != 0;
  tr->head_dim = p->n_head > 0 ? p->n_embd / p->n_head : 0;
  if (p->n_head > 0 && p->n_embd % p->n_head)
    st = tidei_error(env, TIDE_ERR_ARG, "trainer: n_embd %d is not a multiple of n_head %d",
                     (int)p->n_embd, (int)p->n_head);
  if (!st && !(p->rope_base > 0 && p->norm_eps > 0))
    st = tidei_error(env, TIDE_ERR_ARG, "trainer: rope_base %g and norm_eps %g must be > 0",
                     (double)p->rope_base, (double)p->norm_eps);
  if (!st) st = check_shape(tr);
  if (!st) st = trainer_alloc(tr);
  if (st) {
    trainer_destroy(tr);
    return st;
  }
  init_weights(tr);
  *out = tr;
  return TIDE_OK;
}

/* Shape from a loaded model; only plain llama (no biases, no rope scaling). */
static int shape_from_model(tide_trainer *tr, tide_model *m) {
  tide_env *env = tr->env;
  if (m->arch != TIDEI_ARCH_LLAMA)
    return tidei_error(env, TIDE_ERR_UNSUPPORTED, "trainer: architecture '%s' not supported "
                       "(llama)", m->info.arch ? m->info.arch : "");
  if (m->rope_freqs || m->rope_freq_scale != 1.0f || m->n_rot != m->head_dim)
    return tidei_error(env, TIDE_ERR_UNSUPPORTED, "trainer: rope scaling or partial rope not "
                       "supported");
  for (int il = 0; il < m->n_layer; il++) {
    const tidei_layer *l = &m->layers[il];
    if (l->bq || l->bk || l->bv || l->bo || l->b_up || l->b_down)
      return tidei_error(env, TIDE_ERR_UNSUPPORTED, "trainer: block %d has biases", il);
  }
  tr->n_vocab = m->n_vocab, tr->n_embd = m->n_embd, tr->n_layer = m->n_layer;
  tr->n_head = m->n_head, tr->n_kv_head = m->n_kv_head, tr->head_dim = m->head_dim;
  tr->n_ff = m->n_ff, tr->norm_eps = m->norm_eps, tr->rope_base = m->rope_base;
  tr->tied = m->output.data == m->tok_embd.data;
  tr->n_ctx_train = m->n_ctx_train;
  tidei_model_ref(m);
  tr->model = m;
  return TIDE_OK;
}

static void mat_to_f32(const tidei_mat *w, float *dst) {
  tidei_dtype(w->dtype)->to_float(w->data, dst, w->n_in * w->n_out);
}

int tide_trainer_new_from_model(tide_model *m, const tide_trainer_params *p,
                                tide_trainer **out) {
  if (out) *out = NULL;
  if (!m) return TIDE_ERR_ARG;
  tide_env *env = m->env;
  if (!out) return tidei_error(env, TIDE_ERR_ARG, "trainer_new_from_model: out is NULL");
  tide_trainer *tr;
  int st = trainer_begin(env, p, &tr);
  if (st) return st;
  if (!(st = shape_from_model(tr, m)) && !(st = check_shape(tr))) st = trainer_alloc(tr);
  if (st) {
    trainer_destroy(tr);
    return st;
  }
  /* copy (dequantize) every weight into the slab */
  float *w = tr->w;
  const tidei_tparam *t = tr->tensors;
  int k = 0;
  mat_to_f32(&m->tok_embd, w + t[k++].off);
  for (int il = 0; il < m->n_layer; il++) {
    const tidei_layer *l = &m->layers[il];
    int64_t e = m->n_embd;
    memcpy(w + t[k++].off, l->attn_norm, (size_t)e * sizeof(float));
    mat_to_f32(&l->wq, w + t[k++].off);
    mat_to_f32(&l->wk, w + t[k++].off);
    mat_to_f32(&l->wv, w + t[k++].off);
    mat_to_f32(&l->wo, w + t[k++].off);
    memcpy(w + t[k++].off, l->ffn_norm, (size_t)e * sizeof(float));
    mat_to_f32(&l->w_gate, w + t[k++].off);
    mat_to_f32(&l->w_up, w + t[k++].off);
    mat_to_f32(&l->w_down, w + t[k++].off);
  }
  memcpy(w + t[k++].off, m->out_norm, (size_t)m->n_embd * sizeof(float));
  if (!tr->tied) mat_to_f32(&m->output, w + t[k].off);
  *out = tr;
  return TIDE_OK;
}

/* Floats an F32 copy of w needs (0 when it is F32 already). */
static size_t copy_floats(const tidei_mat *w) {
  return w->dtype == TIDE_F32 ? 0 : (size_t)(w->n_in * w->n_out);
}

/* w in place when F32, else dequantized at *cur (which advances). */
static const float *frozen_mat(const tidei_mat *w, float **cur) {
  if (w->dtype == TIDE_F32) return w->data;
  float *d = *cur;
  mat_to_f32(w, d);
  *cur += w->n_in * w->n_out;
  return d;
}

/* Frozen base views: F32 matrices in place, others dequantized into
** base_copy (allocated here, once). Norm weights are always F32. */
static int frozen_views(tide_trainer *tr, tide_model *m) {
  size_t floats = copy_floats(&m->tok_embd) + (tr->tied ? 0 : copy_floats(&m->output));
  for (int il = 0; il < m->n_layer; il++) {
    const tidei_layer *l = &m->layers[il];
    floats += copy_floats(&l->wq) + copy_floats(&l->wk) + copy_floats(&l->wv)
              + copy_floats(&l->wo) + copy_floats(&l->w_gate) + copy_floats(&l->w_up)
              + copy_floats(&l->w_down);
  }
  if (floats) {
    tr->base_copy_size = floats * sizeof(float);
    if (!(tr->base_copy = tidei_alloc(tr->env, tr->base_copy_size))) return TIDE_ERR_NOMEM;
  }
  float *cur = tr->base_copy;
  tr->tok_embd = frozen_mat(&m->tok_embd, &cur);
  for (int il = 0; il < m->n_layer; il++) {
    const tidei_layer *ml = &m->layers[il];
    tidei_tlayer *l = &tr->lw[il];
    l->attn_norm = ml->attn_norm;
    l->ffn_norm = ml->ffn_norm;
    l->wq = frozen_mat(&ml->wq, &cur), l->wk = frozen_mat(&ml->wk, &cur);
    l->wv = frozen_mat(&ml->wv, &cur), l->wo = frozen_mat(&ml->wo, &cur);
    l->w_gate = frozen_mat(&ml->w_gate, &cur), l->w_up = frozen_mat(&ml->w_up, &cur);
    l->w_down = frozen_mat(&ml->w_down, &cur);
  }
  tr->output = tr->tied ? tr->tok_embd : frozen_mat(&m->output, &cur);
  tr->out_norm = m->out_norm;
  return TIDE_OK;
}

int tide_trainer_new_frozen(tide_model *m, const tide_trainer_params *p,
                            const tide_trainer_frozen_params *fp, tide_trainer **out) {
  if (out) *out = NULL;
  if (!m) return TIDE_ERR_ARG;
  tide_env *env = m->env;
  if (!out || !fp) return tidei_error(env, TIDE_ERR_ARG, "trainer_new_frozen: out or fp is NULL");
  if (fp->steer_rank <= 0 && fp->n_prefix <= 0 && fp->n_kv_prefix <= 0)
    return tidei_error(env, TIDE_ERR_ARG, "trainer_new_frozen: nothing to train "
                       "(steer_rank %d, n_prefix %d, n_kv_prefix %d)", (int)fp->steer_rank,
                       (int)fp->n_prefix, (int)fp->n_kv_prefix);
  if (fp->steer_rank > 0 && !isfinite(fp->steer_eps))
    return tidei_error(env, TIDE_ERR_ARG, "trainer_new_frozen: steer_eps is not finite");
  tide_trainer *tr;
  int st = trainer_begin(env, p, &tr);
  if (st) return st;
  tr->frozen = 1;
  tr->steer_rank = fp->steer_rank > 0 ? fp->steer_rank : 0;
  tr->steer_eps = fp->steer_eps;
  tr->n_prefix = fp->n_prefix > 0 ? fp->n_prefix : 0;
  tr->n_kv_prefix = fp->n_kv_prefix > 0 ? fp->n_kv_prefix : 0;
  /* steer alone needs no block activations */
  tr->save_layers = tr->n_prefix > 0 || tr->n_kv_prefix > 0;
  st = shape_from_model(tr, m);
  if (!st && !(st = check_shape(tr)) && !(st = trainer_alloc(tr))) st = frozen_views(tr, m);
  if (st) {
    trainer_destroy(tr);
    return st;
  }
  init_weights(tr);
  *out = tr;
  return TIDE_OK;
}

/* ---------------------------------------------------------------- tasks */

typedef struct {
  tide_trainer *tr;
  int64_t B, S, N;
  const float *q, *k, *v, *dout;
  const float *kp, *vp;       /* attention: the layer's KV prefix, or NULL */
  float *p, *o, *dq, *dk, *dv;
  float scale;                /* loss scale per target */
  int64_t ncomp;              /* xent: rows of logits */
} ttask;

static void attn_fwd_task(void *arg, int ith, int nth) {
  ttask *t = arg;
  tide_trainer *tr = t->tr;
  tidei_attn_shape a = { tr->n_head, tr->n_kv_head, tr->head_dim, t->S };
  tidei_attn_prefix pre = { tr->n_kv_prefix, t->kp, t->vp, tr->dkp, tr->dvp };
  int64_t i0, i1;
  tidei_split(t->B * tr->n_kv_head, ith, nth, 1, &i0, &i1);
  for (int64_t i = i0; i < i1; i++)
    tidei_train_attn_prefix_fwd(&a, &pre, i / tr->n_kv_head, (int)(i % tr->n_kv_head), t->q,
                                t->k, t->v, t->p, t->o);
}

static void attn_bwd_task(void *arg, int ith, int nth) {
  ttask *t = arg;
  tide_trainer *tr = t->tr;
  tidei_attn_shape a = { tr->n_head, tr->n_kv_head, tr->head_dim, t->S };
  tidei_attn_prefix pre = { tr->n_kv_prefix, t->kp, t->vp, tr->dkp, tr->dvp };
  int64_t i0, i1;
  tidei_split(t->B * tr->n_kv_head, ith, nth, 1, &i0, &i1);
  for (int64_t i = i0; i < i1; i++)
    tidei_train_attn_prefix_bwd(&a, &pre, i / tr->n_kv_head, (int)(i % tr->n_kv_head), t->q,
                                t->k, t->v, t->p, t->dout, t->tr->datt, t->dq, t->dk, t->dv);
}

/* Cross-entropy of the rows with a target; gradient rows (zero for rows
** without one) replace the logits. */
static void xent_task(void *arg, int ith, int nth) {
  ttask *t = arg;
  tide_trainer *tr = t->tr;
  int32_t V = tr->n_vocab;
  int64_t r0, r1;
  double sum = 0;
  tidei_split(t->N, ith, nth, 1, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    float *z = tr->logits + r * V;
    if (tr->target[r] < 0) memset(z, 0, (size_t)V * sizeof(float));
    else sum += tidei_train_xent_row(z, V, tr->target[r], t->scale);
  }
  tr->part[ith] = sum;
}

static void swiglu_task(void *arg, int ith, int nth) {
  ttask *t = arg;
  int64_t ff = t->tr->n_ff, r0, r1;
  tidei_split(t->N, ith, nth, 1, &r0, &r1);
  tidei_train_swiglu_fwd(t->o + r0 * ff, t->q + r0 * ff, t->k + r0 * ff, (r1 - r0) * ff);
}

static void swiglu_bwd_task(void *arg, int ith, int nth) {
  ttask *t = arg;
  tide_trainer *tr = t->tr;
  int64_t ff = tr->n_ff, r0, r1;
  tidei_split(t->N, ith, nth, 1, &r0, &r1);
  int64_t o = r0 * ff, n = (r1 - r0) * ff;
  tidei_train_swiglu_bwd(t->dq + o, t->dk + o, t->dout + o, t->q + o, t->k + o, n);
}

/* ---------------------------------------------------------------- forward */

/* Per-layer buffer l of a (L, Nm, w) array. */
static float *lbuf(const tide_trainer *tr, float *base, int l, int64_t width) {
  return base + (tr->save_layers ? (int64_t)l : 0) * tr->n_rows * width;
}

/* Attention probabilities of block l: (n_batch, n_head, Sm, n_kv_prefix + Sm). */
static float *att_at(const tide_trainer *tr, int l) {
  int64_t Sm = tr->n_prefix + tr->n_ctx, Cm = tr->n_kv_prefix + Sm;
  return tr->att + (tr->save_layers ? (int64_t)l : 0) * tr->p.n_batch * tr->n_head * Sm * Cm;
}

/* The KV prefix of block l: K (which 0) or V (1), (n_kv_prefix, n_kv_head*hd);
** in the gradients when grad. NULL without a KV prefix. */
static float *kvp_at(const tide_trainer *tr, int l, int which, int grad) {
  float *base = grad ? tr->g_kvp : tr->kvp;
  if (!tr->n_kv_prefix) return NULL;
  return base + (int64_t)(2 * l + which) * tr->n_kv_prefix * tr->n_kv_head * tr->head_dim;
}

static float *xs_at(const tide_trainer *tr, int l) {
  int i = tr->save_layers ? l : l & 1;
  return tr->xs + (int64_t)i * tr->n_rows * tr->n_embd;
}

static void run_swiglu(tide_trainer *tr, int64_t N, float *h, const float *a, const float *u) {
  ttask t = { .tr = tr, .N = N, .o = h, .q = a, .k = u };
  tidei_pool_run(tr->env, swiglu_task, &t);
}

/* RoPE over rows [0, N) of q and k, row r at position n_kv_prefix + r % S. */
static void rope_rows(tide_trainer *tr, float *q, float *k, int64_t N, int64_t S, int bwd) {
  int hd = tr->head_dim;
  int64_t qd = (int64_t)tr->n_head * hd, kvd = (int64_t)tr->n_kv_head * hd;
  for (int64_t r = 0; r < N; r++) {
    const float *cs = tr->rope_cs + (tr->n_kv_prefix + r % S) * hd;
    if (bwd) {
      tidei_train_rope_bwd(q + r * qd, tr->n_head, hd, cs);
      tidei_train_rope_bwd(k + r * kvd, tr->n_kv_head, hd, cs);
    } else {
      tidei_train_rope_fwd(q + r * qd, tr->n_head, hd, cs);
      tidei_train_rope_fwd(k + r * kvd, tr->n_kv_head, hd, cs);
    }
  }
}

static void layer_fwd(tide_trainer *tr, int l, int64_t B, int64_t S) {
  const tidei_tlayer *w = &tr->lw[l];
  int64_t N = B * S, e = tr->n_embd, hd = tr->head_dim, ff = tr->n_ff;
  int64_t qd = tr->n_head * hd, kvd = tr->n_kv_head * hd;
  float *x = xs_at(tr, l), *xo = xs_at(tr, l + 1);
  float *xn1 = lbuf(tr, tr->xn1, l, e), *xn2 = lbuf(tr, tr->xn2, l, e);
  float *rs1 = lbuf(tr, tr->rstd1, l, 1), *rs2 = lbuf(tr, tr->rstd2, l, 1);
  float *q = lbuf(tr, tr->q, l, qd), *k = lbuf(tr, tr->k, l, kvd), *v = lbuf(tr, tr->v, l, kvd);
  float *ao = lbuf(tr, tr->ao, l, qd), *xm = lbuf(tr, tr->xm, l, e);
  float *fa = lbuf(tr, tr->fa, l, ff), *fu = lbuf(tr, tr->fu, l, ff);
  float *att = att_at(tr, l);
  /* attention norm; q, k, v; rope */
  tidei_train_rmsnorm_fwd(xn1, rs1, x, w->attn_norm, 0, N, (int)e, tr->norm_eps);
  tidei_train_mm_fwd(q, xn1, w->wq, N, qd, e, 0);
  tidei_train_mm_fwd(k, xn1, w->wk, N, kvd, e, 0);
  tidei_train_mm_fwd(v, xn1, w->wv, N, kvd, e, 0);
  rope_rows(tr, q, k, N, S, 0);
  /* attend */
  ttask t = { .tr = tr, .B = B, .S = S, .N = N, .q = q, .k = k, .v = v, .p = att, .o = ao,
              .kp = kvp_at(tr, l, 0, 0), .vp = kvp_at(tr, l, 1, 0) };
  tidei_pool_run(tr->env, attn_fwd_task, &t);
  /* out-proj, residual */
  memcpy(xm, x, (size_t)(N * e) * sizeof(float));
  tidei_train_mm_fwd(xm, ao, w->wo, N, e, qd, 1);
  /* ffn norm; down(silu(gate) * up); residual */
  tidei_train_rmsnorm_fwd(xn2, rs2, xm, w->ffn_norm, 0, N, (int)e, tr->norm_eps);
  tidei_train_mm_fwd(fa, xn2, w->w_gate, N, ff, e, 0);
  tidei_train_mm_fwd(fu, xn2, w->w_up, N, ff, e, 0);
  run_swiglu(tr, N, tr->hb, fa, fu);
  memcpy(xo, xm, (size_t)(N * e) * sizeof(float));
  tidei_train_mm_fwd(xo, tr->hb, w->w_down, N, e, ff, 1);
}

/* Rows, positions and targets of a batch; embeddings into xs[0]. */
static int64_t embed(tide_trainer *tr, const int32_t *tokens, int64_t B, int64_t T) {
  int64_t P = tr->n_prefix, S = P + T, e = tr->n_embd, nt = 0;
  float *x = xs_at(tr, 0);
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++) {
      int64_t r = b * S + s, t = s - P;
      tr->tok[r] = t >= 0 ? tokens[b * T + t] : -1;
      tr->target[r] = t >= 0 && t + 1 < T ? tokens[b * T + t + 1] : -1;
      nt += tr->target[r] >= 0;
      const float *src = t >= 0 ? tr->tok_embd + (int64_t)tr->tok[r] * e : tr->prefix + s * e;
      memcpy(x + r * e, src, (size_t)e * sizeof(float));
    }
  return nt;
}

/* The whole forward and the loss; logits become the loss gradient scaled by
** scale / n_targets. Returns the mean loss. */
static double forward(tide_trainer *tr, const int32_t *tokens, int64_t B, int64_t T,
                      float scale, int64_t *n_targets) {
  int64_t S = tr->n_prefix + T, N = B * S, e = tr->n_embd;
  int64_t nt = embed(tr, tokens, B, T);
  for (int l = 0; l < tr->n_layer; l++) layer_fwd(tr, l, B, S);
  tidei_train_rmsnorm_fwd(tr->xnf, tr->rstdf, xs_at(tr, tr->n_layer), tr->out_norm, 0, N,
                          (int)e, tr->norm_eps);
  const float *cf = tr->xnf;
  if (tr->steer_rank) {
    tidei_train_steer_fwd(tr->cf, tr->su, tr->xnf, tr->p1, tr->p2, tr->steer_eps, N, e,
                          tr->steer_rank);
    cf = tr->cf;
  }
  tidei_train_mm_fwd(tr->logits, cf, tr->output, N, tr->n_vocab, e, 0);
  ttask t = { .tr = tr, .N = N, .scale = nt ? scale / (float)nt : 0 };
  int nth = tide_env_threads(tr->env);
  for (int i = 0; i < nth; i++) tr->part[i] = 0;
  tidei_pool_run(tr->env, xent_task, &t);
  double sum = 0;
  for (int i = 0; i < nth; i++) sum += tr->part[i];
  *n_targets = nt;
  return nt ? sum / (double)nt : 0;
}

/* ---------------------------------------------------------------- backward */

/* Sums the per-sequence KV prefix gradients of block l into its tensors. */
static void kvp_grad(tide_trainer *tr, int l, int64_t B) {
  int64_t n = (int64_t)tr->n_kv_prefix * tr->n_kv_head * tr->head_dim;
  float *gk = kvp_at(tr, l, 0, 1), *gv = kvp_at(tr, l, 1, 1);
  for (int64_t b = 0; b < B; b++) {
    const float *dk = tr->dkp + b * n, *dv = tr->dvp + b * n;
    for (int64_t i = 0; i < n; i++) gk[i] += dk[i], gv[i] += dv[i];
  }
}

static void layer_bwd(tide_trainer *tr, int l, int64_t B, int64_t S) {
  const tidei_tlayer *w = &tr->lw[l];
  const tidei_tlayer_grad *g = &tr->lg[l];
  int full = !tr->frozen;
  int64_t N = B * S, e = tr->n_embd, hd = tr->head_dim, ff = tr->n_ff;
  int64_t qd = tr->n_head * hd, kvd = tr->n_kv_head * hd;
  float *x = xs_at(tr, l);
  float *xn1 = lbuf(tr, tr->xn1, l, e), *xn2 = lbuf(tr, tr->xn2, l, e);
  float *rs1 = lbuf(tr, tr->rstd1, l, 1), *rs2 = lbuf(tr, tr->rstd2, l, 1);
  float *q = lbuf(tr, tr->q, l, qd), *k = lbuf(tr, tr->k, l, kvd), *v = lbuf(tr, tr->v, l, kvd);
  float *ao = lbuf(tr, tr->ao, l, qd), *xm = lbuf(tr, tr->xm, l, e);
  float *fa = lbuf(tr, tr->fa, l, ff), *fu = lbuf(tr, tr->fu, l, ff);
  float *att = att_at(tr, l);
  float *dx = tr->dx, *dxb = tr->dxb;
  /* ffn: x' = xm + h Wd^T, h = silu(fa) * fu recomputed */
  run_swiglu(tr, N, tr->hb, fa, fu);
  if (full) tidei_train_mm_bw(g->w_down, dx, tr->hb, N, e, ff);
  tidei_train_mm_bx(tr->dh, dx, w->w_down, N, e, ff, 0);
  ttask ts = { .tr = tr, .N = N, .dq = tr->da, .dk = tr->du, .dout = tr->dh, .q = fa, .k = fu };
  tidei_pool_run(tr->env, swiglu_bwd_task, &ts);
  if (full) {
    tidei_train_mm_bw(g->w_gate, tr->da, xn2, N, ff, e);
    tidei_train_mm_bw(g->w_up, tr->du, xn2, N, ff, e);
  }
  tidei_train_mm_bx(dxb, tr->da, w->w_gate, N, ff, e, 0);
  tidei_train_mm_bx(dxb, tr->du, w->w_up, N, ff, e, 1);
  tidei_train_rmsnorm_bwd(dx, g->ffn_norm, dxb, xm, rs2, w->ffn_norm, 0, N, (int)e);
  /* attention: xm = x + ao Wo^T */
  if (full) tidei_train_mm_bw(g->wo, dx, ao, N, e, qd);
  tidei_train_mm_bx(tr->dao, dx, w->wo, N, e, qd, 0);
  ttask ta = { .tr = tr, .B = B, .S = S, .N = N, .q = q, .k = k, .v = v, .p = att,
               .dout = tr->dao, .dq = tr->dq, .dk = tr->dk, .dv = tr->dv,
               .kp = kvp_at(tr, l, 0, 0), .vp = kvp_at(tr, l, 1, 0) };
  tidei_pool_run(tr->env, attn_bwd_task, &ta);
  if (tr->n_kv_prefix) kvp_grad(tr, l, B);
  rope_rows(tr, tr->dq, tr->dk, N, S, 1);
  if (full) {
    tidei_train_mm_bw(g->wq, tr->dq, xn1, N, qd, e);
    tidei_train_mm_bw(g->wk, tr->dk, xn1, N, kvd, e);
    tidei_train_mm_bw(g->wv, tr->dv, xn1, N, kvd, e);
  }
  tidei_train_mm_bx(dxb, tr->dq, w->wq, N, qd, e, 0);
  tidei_train_mm_bx(dxb, tr->dk, w->wk, N, kvd, e, 1);
  tidei_train_mm_bx(dxb, tr->dv, w->wv, N, kvd, e, 1);
  tidei_train_rmsnorm_bwd(dx, g->attn_norm, dxb, x, rs1, w->attn_norm, 0, N, (int)e);
}

/* Backward from the loss gradient in logits. */
static void backward(tide_trainer *tr, int64_t B, int64_t T) {
  int64_t S = tr->n_prefix + T, N = B * S, e = tr->n_embd;
  const float *cf = tr->steer_rank ? tr->cf : tr->xnf;
  /* output projection: logits = cf Wout^T */
  if (!tr->frozen) tidei_train_mm_bw(tr->g_output, tr->logits, cf, N, tr->n_vocab, e);
  tidei_train_mm_bx(tr->dxb, tr->logits, tr->output, N, tr->n_vocab, e, 0);
  if (tr->steer_rank)
    tidei_train_steer_bwd(tr->dxb, tr->g_p1, tr->g_p2, tr->dsu, tr->dxb, tr->xnf, tr->su,
                          tr->p1, tr->p2, tr->steer_eps, N, e, tr->steer_rank);
  if (tr->frozen && !tr->n_prefix && !tr->n_kv_prefix) return; /* nothing below the final norm */
  memset(tr->dx, 0, (size_t)(N * e) * sizeof(float));
  tidei_train_rmsnorm_bwd(tr->dx, tr->g_out_norm, tr->dxb, xs_at(tr, tr->n_layer), tr->rstdf,
                          tr->out_norm, 0, N, (int)e);
  for (int l = tr->n_layer - 1; l >= 0; l--) layer_bwd(tr, l, B, S);
  if (tr->frozen && !tr->n_prefix) return;
  /* embeddings: scatter-add the rows' gradients */
  for (int64_t r = 0; r < N; r++) {
    const float *d = tr->dx + r * e;
    float *dst = tr->tok[r] >= 0 ? (tr->frozen ? NULL : tr->g_tok_embd + (int64_t)tr->tok[r] * e)
                                 : tr->g_prefix + (r % S) * e;
    if (dst)
      for (int64_t i = 0; i < e; i++) dst[i] += d[i];
  }
}

/* ---------------------------------------------------------------- steps */

int tidei_train_grad(tide_trainer *tr, const int32_t *tokens, int32_t B, int32_t T,
                     int zero, float scale, double *loss, int64_t *n_targets) {
  if (zero && tr->n_params) memset(tr->g, 0, (size_t)tr->n_params * sizeof(float));
  *loss = forward(tr, tokens, B, T, scale, n_targets);
  backward(tr, B, T);
  return TIDE_OK;
}

int tidei_train_loss(tide_trainer *tr, const int32_t *tokens, int32_t B, int32_t T,
                     double *loss, int64_t *n_targets) {
  *loss = forward(tr, tokens, B, T, 1.0f, n_targets);
  return TIDE_OK;
}

/* Global norm, clipping and AdamW over the gradients in g. */
void tidei_train_update(tide_trainer *tr, tide_trainer_stats *st) {
  const tide_trainer_params *p = &tr->p;
  double ss = 0;
  for (int64_t i = 0; i < tr->n_params; i++) ss += (double)tr->g[i] * tr->g[i];
  double norm = sqrt(ss), gs = 1.0;
  if (p->grad_clip > 0 && norm > p->grad_clip) gs = p->grad_clip / (norm + 1e-6);
  double lr = tide_trainer_lr_at(p, tr->step);
  tr->step++;
  double bc1 = 1.0 - pow(p->beta1, (double)tr->step), bc2 = 1.0 - pow(p->beta2, (double)tr->step);
  float b1 = p->beta1, b2 = p->beta2, eps = p->adam_eps, fgs = (float)gs;
  float a = (float)(lr / bc1), ib2 = (float)(1.0 / bc2);
  for (int i = 0; i < tr->n_tensors; i++) {
    const tidei_tparam *t = &tr->tensors[i];
    float *w = tr->w + t->off, *g = tr->g + t->off;
    float *m = tr->adam_m + t->off, *v = tr->adam_v + t->off;
    float decay = t->decay ? (float)(1.0 - lr * p->weight_decay) : 1.0f;
    /* w <- w (1 - lr wd) - lr mhat / (sqrt(vhat) + eps) */
    for (int64_t j = 0; j < t->n; j++) {
      float gj = g[j] * fgs;
      m[j] = b1 * m[j] + (1.0f - b1) * gj;
      v[j] = b2 * v[j] + (1.0f - b2) * gj * gj;
      w[j] = w[j] * decay - a * m[j] / (sqrtf(v[j] * ib2) + eps);
    }
  }
  if (st) {
    st->lr = lr;
    st->grad_norm = norm;
    st->clipped = gs < 1.0;
    st->step = tr->step;
  }
}

static int check_tokens(tide_trainer *tr, const char *fn, const int32_t *tokens, int64_t n_seq,
                        int32_t T) {
  if (!tokens || n_seq < 1 || T < 2 || T > tr->n_ctx)
    return tidei_error(tr->env, TIDE_ERR_ARG, "%s: %lld sequences of %d tokens, expected T in "
                       "2..%d (n_ctx)", fn, (long long)n_seq, (int)T, (int)tr->n_ctx);
  for (int64_t i = 0; i < n_seq * T; i++)
    if (tokens[i] < 0 || tokens[i] >= tr->n_vocab)
      return tidei_error(tr->env, TIDE_ERR_ARG, "%s: token %d at %lld out of range [0, %d)", fn,
                         (int)tokens[i], (long long)i, (int)tr->n_vocab);
  return TIDE_OK;
}

int tide_trainer_step(tide_trainer *tr, const int32_t *tokens, int32_t B, int32_t T,
                      tide_trainer_stats *stats) {
  if (!tr) return TIDE_ERR_ARG;
  int A = tr->p.grad_accum, st;
  if (B < 1 || B > tr->p.n_batch)
    return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_step: B %d, expected 1..%d (n_batch)",
                       (int)B, (int)tr->p.n_batch);
  if ((st = check_tokens(tr, "trainer_step", tokens, (int64_t)A * B, T))) return st;
  double sum = 0;
  for (int a = 0; a < A; a++) {
    double loss;
    int64_t nt;
    if (tidei_cancelled(tr->env))
      return tidei_error(tr->env, TIDE_ERR_CANCELLED, "trainer_step cancelled at micro-batch %d",
                         a);
    tidei_train_grad(tr, tokens + (int64_t)a * B * T, B, T, a == 0, 1.0f / (float)A, &loss, &nt);
    sum += loss;
  }
  tide_trainer_stats s;
  memset(&s, 0, sizeof s);
  tidei_train_update(tr, &s);
  s.loss = sum / A;
  s.n_tokens = (int64_t)A * B * T;
  if (stats) *stats = s;
  return TIDE_OK;
}

int tide_trainer_eval(tide_trainer *tr, const int32_t *tokens, int32_t B, int32_t T,
                      double *loss) {
  if (!tr) return TIDE_ERR_ARG;
  if (!loss) return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_eval: loss is NULL");
  int st = check_tokens(tr, "trainer_eval", tokens, B, T);
  if (st) return st;
  double sum = 0;
  int64_t total = 0;
  for (int32_t b = 0; b < B; b += tr->p.n_batch) {
    int32_t nb = B - b < tr->p.n_batch ? B - b : tr->p.n_batch;
    double l;
    int64_t nt;
    if (tidei_cancelled(tr->env))
      return tidei_error(tr->env, TIDE_ERR_CANCELLED, "trainer_eval cancelled");
    tidei_train_loss(tr, tokens + (int64_t)b * T, nb, T, &l, &nt);
    sum += l * (double)nt;
    total += nt;
  }
  *loss = total ? sum / (double)total : 0;
  return TIDE_OK;
}

/* The KV prefix set to the K/V rows a forward over tokens leaves at
** positions 0..k-1: the cache state of the prompt `tokens` (a hard prompt
** the training then refines). Runs with the prefixes switched off. */
int tide_trainer_init_kv_prefix(tide_trainer *tr, const int32_t *tokens, int32_t n) {
  if (!tr) return TIDE_ERR_ARG;
  int32_t k = tr->n_kv_prefix, np = tr->n_prefix;
  if (!k)
    return tidei_error(tr->env, TIDE_ERR_STATE, "trainer_init_kv_prefix: the trainer has no KV "
                       "prefix");
  if (n != k || k > tr->n_ctx)
    return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_init_kv_prefix: %d tokens, expected %d "
                       "(n_kv_prefix, at most n_ctx %d)", (int)n, (int)k, (int)tr->n_ctx);
  if (!tokens) return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_init_kv_prefix: tokens is NULL");
  for (int32_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= tr->n_vocab)
      return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_init_kv_prefix: token %d at %d out of "
                         "range [0, %d)", (int)tokens[i], (int)i, (int)tr->n_vocab);
  /* causal: rows 0..n-1 do not depend on a second row, which k = 1 adds */
  int32_t t2[2] = { tokens[0], tokens[0] };
  const int32_t *tok = n < 2 ? t2 : tokens;
  int64_t nt, kvd = (int64_t)tr->n_kv_head * tr->head_dim;
  tr->n_kv_prefix = 0, tr->n_prefix = 0;
  forward(tr, tok, 1, n < 2 ? 2 : n, 1.0f, &nt);
  tr->n_kv_prefix = k, tr->n_prefix = np;
  for (int l = 0; l < tr->n_layer; l++) {
    memcpy(kvp_at(tr, l, 0, 0), lbuf(tr, tr->k, l, kvd), (size_t)(k * kvd) * sizeof(float));
    memcpy(kvp_at(tr, l, 1, 0), lbuf(tr, tr->v, l, kvd), (size_t)(k * kvd) * sizeof(float));
  }
  return TIDE_OK;
}

/* Steer training with a per-batch sign (issue 6): only the eps changes. */
int tide_trainer_set_steer_eps(tide_trainer *tr, float eps) {
  if (!tr) return TIDE_ERR_ARG;
  if (!tr->steer_rank)
    return tidei_error(tr->env, TIDE_ERR_STATE, "trainer_set_steer_eps: the trainer has no steer");
  if (!isfinite(eps))
    return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_set_steer_eps: eps is not finite");
  tr->steer_eps = eps;
  return TIDE_OK;
}

int64_t tide_trainer_steps_done(const tide_trainer *tr) { return tr ? tr->step : 0; }

int tide_trainer_n_tensors(const tide_trainer *tr) { return tr ? tr->n_tensors : 0; }

int tide_trainer_get_tensor(const tide_trainer *tr, int i, tide_trainer_tensor *out) {
  if (!tr || !out) return TIDE_ERR_ARG;
  if (i < 0 || i >= tr->n_tensors)
    return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_get_tensor: index %d out of range "
                       "(%d tensors)", i, tr->n_tensors);
  const tidei_tparam *t = &tr->tensors[i];
  out->name = t->name;
  out->n_dims = t->n_dims;
  out->ne[0] = t->ne[0];
  out->ne[1] = t->ne[1];
  out->data = tr->w + t->off;
  return TIDE_OK;
}

int tide_trainer_save(tide_trainer *tr, const char *path, const tide_trainer_save_params *sp) {
  if (!tr) return TIDE_ERR_ARG;
  if (!path) return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_save: path is NULL");
  return tidei_train_save(tr, path, sp);
}

int tide_trainer_resume(tide_trainer *tr, const char *path) {
  if (!tr) return TIDE_ERR_ARG;
  if (!path) return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_resume: path is NULL");
  return tidei_train_resume(tr, path);
}
