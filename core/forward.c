/*
** forward.c -- contexts and the forward pass (tide_decode) of llama, qwen2
** and gpt2 over a batch of rows of any sequences. Layer: core.
**
** One decode is one pass over the weights: every matmul takes all rows at
** once. Per layer, as llama2.c reads: norm, qkv, (bias), rope, store K/V,
** attend, out-proj, residual, ffn norm, ffn, residual. The roundings follow
** llama.cpp's CPU backend (see fixtures/models/README.md, "Numerics"): F16
** K/V, Q and probabilities rounded to F16 around the K.Q and P.V products,
** RMSNorm/LayerNorm sums in double, RoPE angles by repeated float products,
** gpt2's GELU through an F16 table. No allocation after tide_ctx_new.
*/
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "model.h"
#include "steer.h"

/* ---------------------------------------------------------------- context */

tide_ctx_params tide_ctx_default_params(void) {
  tide_ctx_params p;
  memset(&p, 0, sizeof p);
  p.n_seq_max = 64;
  p.n_batch = 512;
  p.kv_type = TIDE_F16;
  return p;
}

/* Floats of attention scratch per thread (a multiple of 16): scores of
** each position (n_ctx rounded up to a block), the query (head_dim), the 16
** P.V accumulator rows (16, head_dim). */
static size_t att_floats(const tide_model *m, int32_t n_ctx) {
  size_t nc = ((size_t)n_ctx + 15) / 16 * 16, hd = ((size_t)m->head_dim + 15) / 16 * 16;
  return nc + hd + 16 * hd;
}

/* The scratch blocks of a context: address of the pointer and byte size. */
typedef struct { void **p; size_t size; } scratch_spec;

static int scratch_specs(tide_ctx *c, scratch_spec *s) {
  const tide_model *m = c->m;
  size_t nb = (size_t)c->n_batch, f = sizeof(float);
  size_t qd = (size_t)m->n_head * m->head_dim, kvd = (size_t)m->n_kv_head * m->head_dim;
  size_t ff = (size_t)m->n_ff, e = (size_t)m->n_embd;
  size_t qw = m->arch == TIDEI_ARCH_GPT2 ? 3 * e : qd;
  size_t hbw = ff > e ? ff : e;
  size_t nt = TIDEI_MAX_THREADS;
  int n = 0;
  s[n++] = (scratch_spec){ (void **)&c->x, nb * e * f };
  s[n++] = (scratch_spec){ (void **)&c->xb, nb * e * f };
  s[n++] = (scratch_spec){ (void **)&c->q, nb * qw * f };
  s[n++] = (scratch_spec){ (void **)&c->k, nb * kvd * f };
  s[n++] = (scratch_spec){ (void **)&c->v, nb * kvd * f };
  s[n++] = (scratch_spec){ (void **)&c->att, nb * qd * f };
  s[n++] = (scratch_spec){ (void **)&c->hb, nb * hbw * f };
  s[n++] = (scratch_spec){ (void **)&c->hb2, nb * ff * f };
  s[n++] = (scratch_spec){ (void **)&c->rope_cs, ((size_t)m->n_rot + 2) * f };
  s[n++] = (scratch_spec){ (void **)&c->mm_scratch, c->mm_scratch_size };
  s[n++] = (scratch_spec){ (void **)&c->att_scores, nt * att_floats(m, c->n_ctx) * f };
  s[n++] = (scratch_spec){ (void **)&c->row_ids, nb * sizeof(int32_t) };
  s[n++] = (scratch_spec){ (void **)&c->out_rows, nb * sizeof(int32_t) };
  s[n++] = (scratch_spec){ (void **)&c->logits, (size_t)c->n_outputs * (size_t)m->n_vocab * f };
  return n;
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* Bytes tidei_matmul needs for n_batch rows of any of the model's matrices. */
static size_t matmul_scratch(const tide_model *m, int64_t n_batch) {
  size_t z = tidei_matmul_scratch(&m->output, n_batch);
  for (int il = 0; il < m->n_layer; il++) {
    const tidei_layer *l = &m->layers[il];
    const tidei_mat *ws[] = { &l->wq, &l->wk, &l->wv, &l->wqkv, &l->wo,
                              &l->w_gate, &l->w_up, &l->w_down };
    for (int i = 0; i < 8; i++)
      if (ws[i]->data) z = max_size(z, tidei_matmul_scratch(ws[i], n_batch));
  }
  return z;
}

static void ctx_destroy(tide_ctx *c) {
  tidei_steer_release(c);
  tidei_inject_release(c);
  scratch_spec s[16];
  int n = scratch_specs(c, s);
  for (int i = 0; i < n; i++)
    if (*s[i].p) tidei_free(c->env, *s[i].p, s[i].size);
  tidei_kv_release(&c->kv);
  tide_model *m = c->m;
  tidei_free(c->env, c, sizeof *c);
  tidei_model_unref(m);
}

/* Checks the params against the model and fills in the defaults. */
static int ctx_params(tide_model *m, const tide_ctx_params *in, tide_ctx_params *p) {
  tide_env *env = m->env;
  *p = in ? *in : tide_ctx_default_params();
  if (m->arch == TIDEI_ARCH_NONE)
    return tidei_error(env, TIDE_ERR_STATE, "ctx_new: the model was loaded vocab_only");
  if (p->n_ctx == 0) p->n_ctx = m->n_ctx_train;
  if (p->n_cells == 0) p->n_cells = p->n_ctx;
  if (p->n_seq_max == 0) p->n_seq_max = 64;
  if (p->n_batch == 0) p->n_batch = 512;
  if (p->n_ctx < 1 || p->n_ctx > (1 << 24))
    return tidei_error(env, TIDE_ERR_ARG, "ctx_new: n_ctx %d out of range", (int)p->n_ctx);
  if (m->arch == TIDEI_ARCH_GPT2 && p->n_ctx > m->pos_embd.n_out)
    return tidei_error(env, TIDE_ERR_ARG, "ctx_new: n_ctx %d past the %lld learned positions",
                       (int)p->n_ctx, (long long)m->pos_embd.n_out);
  if (p->n_cells < 1 || p->n_seq_max < 1 || p->n_seq_max > (1 << 20) || p->n_batch < 1
      || p->n_batch > (1 << 20))
    return tidei_error(env, TIDE_ERR_ARG, "ctx_new: bad n_cells %d, n_seq_max %d or n_batch %d",
                       (int)p->n_cells, (int)p->n_seq_max, (int)p->n_batch);
  if (p->kv_type != TIDE_F16 && p->kv_type != TIDE_F32)
    return tidei_error(env, TIDE_ERR_ARG, "ctx_new: kv_type %d, expected f16 or f32",
                       p->kv_type);
  if (p->n_outputs == 0) p->n_outputs = p->n_batch;
  if (p->n_outputs < 1 || p->n_outputs > p->n_batch)
    return tidei_error(env, TIDE_ERR_ARG, "ctx_new: n_outputs %d out of range 1..%d (n_batch)",
                       (int)p->n_outputs, (int)p->n_batch);
  return TIDE_OK;
}

int tide_ctx_new(tide_model *m, const tide_ctx_params *params, tide_ctx **out) {
  if (out) *out = NULL;
  if (!m) return TIDE_ERR_ARG;
  tide_env *env = m->env;
  if (!out) return tidei_error(env, TIDE_ERR_ARG, "ctx_new: out is NULL");
  tide_ctx_params p;
  int st = ctx_params(m, params, &p);
  if (st) return st;
  tide_ctx *c = tidei_calloc(env, 1, sizeof *c);
  if (!c) return TIDE_ERR_NOMEM;
  tidei_model_ref(m);
  c->env = env;
  c->m = m;
  c->n_ctx = p.n_ctx;
  c->n_batch = p.n_batch;
  c->n_outputs = p.n_outputs;
  c->mm_scratch_size = max_size(matmul_scratch(m, p.n_batch), 64);
  /* every scratch size below is bounded: n_batch, n_ctx <= 2^24 and the model's
  ** dimensions are backed by tensors in the file */
  st = tidei_kv_init(&c->kv, env, m->n_layer, m->n_kv_head * m->head_dim, p.n_ctx,
                     p.n_cells, p.n_seq_max, p.kv_type);
  if (st) goto fail;
  scratch_spec s[16];
  int n = scratch_specs(c, s);
  for (int i = 0; i < n; i++) {
    if (s[i].size == 0) continue;
    if (!(*s[i].p = tidei_alloc(env, s[i].size))) { st = TIDE_ERR_NOMEM; goto fail; }
  }
  for (int32_t i = 0; i < c->n_batch; i++) c->row_ids[i] = i;
  *out = c;
  return TIDE_OK;
fail:
  ctx_destroy(c);
  return st;
}

void tide_ctx_free(tide_ctx *ctx) {
  if (ctx) ctx_destroy(ctx);
}

const float *tide_ctx_logits(const tide_ctx *ctx, int32_t i) {
  if (i < 0 || i >= ctx->n_logits) return NULL;
  return ctx->logits + (size_t)i * ctx->m->n_vocab;
}

int32_t tide_ctx_n_logits(const tide_ctx *ctx) { return ctx->n_logits; }

/* ---------------------------------------------------------------- row ops */

/* RMSNorm: x (n) -> y = x / sqrt(mean(x^2) + eps) * w, sums in double. */
static void rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
  double sum = 0;
  for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
  float mean = (float)(sum / n);
  float scale = 1.0f / sqrtf(mean + eps);
  for (int i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

/* LayerNorm: x (n) -> y = (x - mean) / sqrt(var + eps) * w + b. */
static void layernorm(float *y, const float *x, const float *w, const float *b, int n,
                      float eps) {
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; i++) sum += (double)x[i];
  float mean = (float)(sum / n);
  for (int i = 0; i < n; i++) {
    float v = x[i] - mean;
    y[i] = v;
    sum2 += (double)(v * v);
  }
  float scale = 1.0f / sqrtf((float)(sum2 / n) + eps);
  for (int i = 0; i < n; i++) y[i] = (y[i] * scale) * w[i] + b[i];
}

/* The layer's norm of rows [0, n) of x (n, n_embd) into y. */
static void norm_rows(const tide_model *m, float *y, const float *x, int32_t n,
                      const float *w, const float *b) {
  int e = m->n_embd;
  for (int32_t i = 0; i < n; i++) {
    if (m->arch == TIDEI_ARCH_GPT2) layernorm(y + (size_t)i * e, x + (size_t)i * e, w, b, e, m->norm_eps);
    else rmsnorm(y + (size_t)i * e, x + (size_t)i * e, w, e, m->norm_eps);
  }
}

/* y (n, d) with row stride ys += b (d) per row. */
static void add_bias(float *y, int64_t ys, const float *b, int32_t n, int64_t d) {
  if (!b) return;
  for (int32_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++) y[i * ys + j] += b[j];
}

/* x (n*d) += y (n*d) */
static void add_rows(float *x, const float *y, int64_t nd) {
  for (int64_t i = 0; i < nd; i++) x[i] += y[i];
}

/* cos/sin of every rotated pair at position pos, as ggml's rope cache:
** theta starts at pos and is multiplied by base^(-2/n_rot) per pair. */
static void rope_angles(const tide_model *m, float *cs, int32_t pos) {
  float theta_scale = powf(m->rope_base, -2.0f / (float)m->n_rot);
  float theta = (float)pos;
  for (int i0 = 0; i0 < m->n_rot; i0 += 2) {
    float ff = m->rope_freqs ? m->rope_freqs[i0 / 2] : 1.0f;
    float th = m->rope_freq_scale * (theta / ff);
    cs[i0] = cosf(th);
    cs[i0 + 1] = sinf(th);
    theta *= theta_scale;
  }
}

/* Rotates one head vector v (head_dim): llama pairs (2i, 2i+1) ("normal"),
** qwen2 pairs (i, i + n_rot/2) ("neox"). Dimensions past n_rot stay. */
static void rope_head(const tide_model *m, float *v, const float *cs) {
  int neox = m->arch == TIDEI_ARCH_QWEN2, half = m->n_rot / 2;
  for (int i0 = 0; i0 < m->n_rot; i0 += 2) {
    int a = neox ? i0 / 2 : i0, b = neox ? i0 / 2 + half : i0 + 1;
    float c = cs[i0], s = cs[i0 + 1], x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
  }
}

/* llama.cpp's GELU: tanh form looked up through an F16 table. */
static void gelu_rows(const tide_model *m, float *x, int64_t nd) {
  for (int64_t i = 0; i < nd; i++) {
    float v = x[i];
    if (v <= -10.0f) x[i] = 0.0f;
    else if (v < 10.0f) x[i] = m->f16_to_f32[m->gelu_f16[tidei_f32_to_f16(v)]];
  }
}

/* h = silu(h) * u, (nd) */
static void swiglu_rows(float *h, const float *u, int64_t nd) {
  for (int64_t i = 0; i < nd; i++) h[i] = h[i] / (1.0f + expf(-h[i])) * u[i];
}

/* ---------------------------------------------------------------- attention */

/* Stores row i's K and V (kv_dim each, after RoPE) at its position. */
static void kv_store(tide_ctx *c, int32_t il, const tide_batch_row *r, const float *k,
                     const float *v) {
  tidei_kv *kv = &c->kv;
  void *kd = tidei_kv_row(kv, r->seq, 0, il, r->pos);
  void *vd = tidei_kv_row(kv, r->seq, 1, il, r->pos);
  if (kv->kv_type == TIDE_F32) {
    memcpy(kd, k, kv->row_bytes);
    memcpy(vd, v, kv->row_bytes);
    return;
  }
  uint16_t *k16 = kd, *v16 = vd;
  for (int32_t j = 0; j < kv->kv_dim; j++) {
    k16[j] = tidei_f32_to_f16(k[j]);
    v16[j] = tidei_f32_to_f16(v[j]);
  }
}

/* Per-thread attention scratch (att_floats): sc (n_ctx rounded up to 16),
** qf (head_dim), acc (16, head_dim). */
typedef struct { float *sc, *qf, *acc; } att_scratch;

/* Attention of one (row, head): out (head_dim) = softmax(K q * scale) V over
** positions 0..pos of the row's sequence, a cache block (16 positions) at a
** time. K.Q and P.V run in llama.cpp's order (tensor.h: kq, pv): each is a
** 16-lane fma dot summed as a tree, the P.V lanes being positions mod 16. */
static void attend_head(tide_ctx *c, int32_t ai, int h, const att_scratch *w) {
  const tide_model *m = c->m;
  const tidei_kv *kv = &c->kv;
  const struct tidei_kernels *k = c->env->k;
  const tide_batch_row *r = &c->rows[c->att_rows[ai]];
  int hd = m->head_dim, g = h / (m->n_head / m->n_kv_head), kvt = kv->kv_type;
  int32_t n_pos = r->pos + 1, il = c->il;
  const float *q = c->cq + (int64_t)ai * c->q_stride + (int64_t)h * hd;
  float *out = c->att + (int64_t)ai * m->n_head * hd + (int64_t)h * hd;
  float scale = 1.0f / sqrtf((float)hd), mx = -INFINITY;
  float *sc = w->sc, *qf = w->qf, *acc = w->acc;
  size_t koff = (size_t)g * hd * kv->elt;
  /* Q rounded to F16 for the K.Q product when K is F16 */
  if (kvt == TIDE_F16) k->round_f16(q, qf, hd);
  else memcpy(qf, q, (size_t)hd * sizeof(float));
  for (int32_t t = 0; t < n_pos; t += TIDEI_KV_BLOCK) {
    int nb = n_pos - t < TIDEI_KV_BLOCK ? (int)(n_pos - t) : TIDEI_KV_BLOCK;
    k->kq[kvt](hd, (const char *)tidei_kv_row(kv, r->seq, 0, il, t) + koff, kv->row_bytes, nb,
               qf, sc + t);
  }
  for (int32_t t = 0; t < n_pos; t++) {
    sc[t] *= scale;
    if (sc[t] > mx) mx = sc[t];
  }
  double sum = 0;
  for (int32_t t = 0; t < n_pos; t++) {
    sc[t] = expf(sc[t] - mx);
    sum += (double)sc[t];
  }
  float inv = (float)(1.0 / sum);
  for (int32_t t = 0; t < n_pos; t++) sc[t] *= inv;
  /* probabilities rounded to F16 for the P.V product when V is F16 */
  if (kvt == TIDE_F16) k->round_f16(sc, sc, n_pos);
  memset(acc, 0, (size_t)TIDEI_KV_BLOCK * hd * sizeof(float));
  for (int32_t t = 0; t < n_pos; t += TIDEI_KV_BLOCK) {
    int nb = n_pos - t < TIDEI_KV_BLOCK ? (int)(n_pos - t) : TIDEI_KV_BLOCK;
    k->pv[kvt](hd, (const char *)tidei_kv_row(kv, r->seq, 1, il, t) + koff, kv->row_bytes, nb,
               sc + t, acc, hd);
  }
  /* the 16 lanes (rows of acc) as the tree (j, j+8), (j, j+4), (j, j+2), (j, j+1) */
  for (int half = 8; half > 1; half /= 2)
    for (int j = 0; j < half; j++)
      for (int d = 0; d < hd; d++) acc[j * hd + d] += acc[(j + half) * hd + d];
  for (int d = 0; d < hd; d++) out[d] = acc[d] + acc[hd + d];
}

/* Pool task: (row, head) pairs taken one at a time from a shared counter,
** so rows of unequal length (prefill) and a late thread even out. */
typedef struct {
  tide_ctx *c;
  atomic_int next;
} att_task;

static void attend_task(void *arg, int ith, int nth) {
  att_task *at = arg;
  tide_ctx *c = at->c;
  (void)nth;
  int n_head = c->m->n_head;
  size_t nc = ((size_t)c->n_ctx + 15) / 16 * 16, hd = ((size_t)c->m->head_dim + 15) / 16 * 16;
  float *base = c->att_scores + (size_t)ith * att_floats(c->m, c->n_ctx);
  att_scratch w = { base, base + nc, base + nc + hd };
  int n = c->n_att * n_head;
  for (int i; (i = atomic_fetch_add_explicit(&at->next, 1, memory_order_relaxed)) < n;)
    attend_head(c, i / n_head, i % n_head, &w);
}

/* ---------------------------------------------------------------- layers */

/* Token embeddings (dequantized rows) -> x. */
static void embed(tide_ctx *c, const tide_batch_row *rows, int32_t n) {
  const tide_model *m = c->m;
  int64_t e = m->n_embd;
  const tidei_dtype_traits *tt = tidei_dtype(m->tok_embd.dtype);
  size_t rs = tide_dtype_row_size(m->tok_embd.dtype, e);
  for (int32_t i = 0; i < n; i++)
    tt->to_float((const char *)m->tok_embd.data + (size_t)rows[i].token * rs, c->x + i * e, e);
}

/* gpt2's learned positions added to x. */
static void add_positions(tide_ctx *c, const tide_batch_row *rows, int32_t n) {
  const tide_model *m = c->m;
  if (m->arch != TIDEI_ARCH_GPT2) return;
  int64_t e = m->n_embd;
  const tidei_dtype_traits *pt = tidei_dtype(m->pos_embd.dtype);
  size_t ps = tide_dtype_row_size(m->pos_embd.dtype, e);
  for (int32_t i = 0; i < n; i++) {
    pt->to_float((const char *)m->pos_embd.data + (size_t)rows[i].pos * ps, c->xb, e);
    add_rows(c->x + i * e, c->xb, e);
  }
}

/* With every row kept through the last block (capture), moves the rows that
** want logits to the front of x, as the dropping last block would have. */
static void gather_out_rows(tide_ctx *c, int32_t n_out) {
  int64_t e = c->m->n_embd;
  for (int32_t j = 0; j < n_out; j++)
    if (c->out_rows[j] != j)
      memcpy(c->x + j * e, c->x + (int64_t)c->out_rows[j] * e, (size_t)e * sizeof(float));
}

/* q (n, qs) and k (n, ks) rotated in place, each row at its position. */
static void rope_rows(tide_ctx *c, const tide_batch_row *rows, int32_t n, float *q,
                      int64_t qs, float *k, int64_t ks) {
  const tide_model *m = c->m;
  int64_t hd = m->head_dim;
  for (int32_t i = 0; i < n; i++) {
    rope_angles(m, c->rope_cs, rows[i].pos);
    for (int h = 0; h < m->n_head; h++) rope_head(m, q + i * qs + h * hd, c->rope_cs);
    for (int h = 0; h < m->n_kv_head; h++) rope_head(m, k + i * ks + h * hd, c->rope_cs);
  }
}

/* Block il over n rows. The last block drops, after storing K/V, the rows
** whose logits nobody asked for (as llama.cpp's inp_out_ids), so that its
** rows i < n_out then hold the batch rows out_rows[i]. Returns the rows of
** x it computed (n, or n_out when it dropped). */
static int32_t layer(tide_ctx *c, const tide_batch_row *rows, int32_t il, int32_t n,
                  int32_t n_out, int last) {
  const tide_model *m = c->m;
  const tidei_layer *l = &m->layers[il];
  tide_env *env = c->env;
  void *mm = c->mm_scratch;
  int64_t e = m->n_embd, hd = m->head_dim, qd = m->n_head * hd, kvd = m->n_kv_head * hd;
  int64_t ff = m->n_ff;
  int gpt2 = m->arch == TIDEI_ARCH_GPT2;
  float *q, *k, *v;
  int64_t qs, ks;

  /* attention norm */
  norm_rows(m, c->xb, c->x, n, l->attn_norm, l->attn_norm_b);
  /* qkv (+ bias) */
  if (gpt2) {
    tidei_matmul(env, &l->wqkv, c->xb, n, c->q, mm);
    add_bias(c->q, 3 * e, l->bqkv, n, 3 * e);
    q = c->q, k = c->q + e, v = c->q + 2 * e, qs = ks = 3 * e;
  } else {
    tidei_matmul(env, &l->wq, c->xb, n, c->q, mm);
    tidei_matmul(env, &l->wk, c->xb, n, c->k, mm);
    tidei_matmul(env, &l->wv, c->xb, n, c->v, mm);
    add_bias(c->q, qd, l->bq, n, qd);
    add_bias(c->k, kvd, l->bk, n, kvd);
    add_bias(c->v, kvd, l->bv, n, kvd);
    q = c->q, k = c->k, v = c->v, qs = qd, ks = kvd;
    /* rope */
    rope_rows(c, rows, n, q, qs, k, ks);
  }
  /* store K/V in the cache */
  for (int32_t i = 0; i < n; i++) kv_store(c, il, &rows[i], k + i * ks, v + i * ks);
  const int32_t *ids = c->row_ids;
  int32_t na = n;
  if (last && n_out < n) {
    for (int32_t j = 0; j < n_out; j++) {
      int32_t r = c->out_rows[j];
      if (r == j) continue;
      memcpy(q + j * qs, q + r * qs, (size_t)qd * sizeof(float));
      memcpy(c->x + j * e, c->x + r * e, (size_t)e * sizeof(float));
    }
    ids = c->out_rows, na = n_out;
  }
  if (na == 0) return 0;
  /* attend */
  c->rows = rows, c->att_rows = ids, c->n_att = na, c->il = il, c->q_stride = qs, c->cq = q;
  att_task at = { c, 0 };
  tidei_pool_run(env, attend_task, &at);
  /* out-proj, residual */
  tidei_matmul(env, &l->wo, c->att, na, c->hb, mm);
  add_bias(c->hb, e, l->bo, na, e);
  add_rows(c->x, c->hb, na * e);
  /* ffn norm */
  norm_rows(m, c->xb, c->x, na, l->ffn_norm, l->ffn_norm_b);
  /* ffn: gpt2 down(gelu(up(x))), else down(silu(gate(x)) * up(x)) */
  if (gpt2) {
    tidei_matmul(env, &l->w_up, c->xb, na, c->hb, mm);
    add_bias(c->hb, ff, l->b_up, na, ff);
    gelu_rows(m, c->hb, na * ff);
  } else {
    tidei_matmul(env, &l->w_gate, c->xb, na, c->hb, mm);
    tidei_matmul(env, &l->w_up, c->xb, na, c->hb2, mm);
    add_bias(c->hb2, ff, l->b_up, na, ff);
    swiglu_rows(c->hb, c->hb2, na * ff);
  }
  tidei_matmul(env, &l->w_down, c->hb, na, c->xb, mm);
  add_bias(c->xb, e, l->b_down, na, e);
  /* residual */
  add_rows(c->x, c->xb, na * e);
  return na;
}

static int decode(tide_ctx *ctx, const tide_batch_row *rows, int32_t n);

/* Every return empties the injection queue: injections are for one decode. */
int tide_decode(tide_ctx *ctx, const tide_batch_row *rows, int32_t n) {
  if (!ctx) return TIDE_ERR_ARG;
  int st = decode(ctx, rows, n);
  tidei_inject_clear(ctx);
  return st;
}

static int decode(tide_ctx *ctx, const tide_batch_row *rows, int32_t n) {
  const tide_model *m = ctx->m;
  tide_env *env = ctx->env;
  ctx->n_logits = 0;
  if (!rows || n < 1 || n > ctx->n_batch)
    return tidei_error(env, TIDE_ERR_ARG, "decode: %d rows, expected 1..%d (n_batch)",
                       (int)n, (int)ctx->n_batch);
  for (int32_t i = 0; i < n; i++)
    if (rows[i].token < 0 || rows[i].token >= m->n_vocab)
      return tidei_error(env, TIDE_ERR_ARG, "row %d: token %d out of range [0, %d)",
                         (int)i, (int)rows[i].token, (int)m->n_vocab);
  int32_t n_want = 0;
  for (int32_t i = 0; i < n; i++) n_want += rows[i].logits != 0;
  if (n_want > ctx->n_outputs)
    return tidei_error(env, TIDE_ERR_ARG, "decode: %d rows want logits, the context has room "
                       "for %d (n_outputs)", (int)n_want, (int)ctx->n_outputs);
  int st = tidei_inject_check(ctx, n);
  if (st) return st;
  st = tidei_kv_begin(&ctx->kv, rows, n);
  if (st) return st;
  int32_t n_out = 0;
  for (int32_t i = 0; i < n; i++)
    if (rows[i].logits) ctx->out_rows[n_out++] = i;

  /* steer and capture hooks (steer.c) return at once when nothing is set */
  int keep_all = tidei_capture_keep_all(ctx) || tidei_inject_keep_all(ctx);
  int32_t n_live = n;  /* rows of x the blocks computed */
  embed(ctx, rows, n);
  tidei_steer_apply(ctx, TIDE_STEER_INPUT, rows, n);
  add_positions(ctx, rows, n);
  tidei_inject_rows(ctx, 0, n);
  tidei_capture_rows(ctx, 0, n);
  for (int32_t il = 0; il < m->n_layer; il++) {
    if (tidei_cancelled(env)) {
      tidei_kv_rollback(&ctx->kv, rows, n);
      return tidei_error(env, TIDE_ERR_CANCELLED, "decode cancelled at layer %d", (int)il);
    }
    n_live = layer(ctx, rows, il, n, n_out, il == m->n_layer - 1 && !keep_all);
    tidei_cvec_add(ctx, il, n_live);
    tidei_inject_rows(ctx, il + 1, n_live);
    tidei_capture_rows(ctx, il + 1, n_live);
  }
  /* final norm, output steers and output projection of the rows that want logits */
  if (n_out > 0) {
    if (n_live != n_out) gather_out_rows(ctx, n_out);
    norm_rows(m, ctx->xb, ctx->x, n_out, m->out_norm, m->out_norm_b);
    tidei_steer_apply(ctx, TIDE_STEER_OUTPUT, rows, n_out);
    tidei_matmul(env, &m->output, ctx->xb, n_out, ctx->logits, ctx->mm_scratch);
  }
  ctx->n_logits = n_out;
  ctx->stats.n_decodes++;
  ctx->stats.n_rows += n;
  ctx->stats.n_logit_rows += n_out;
  return TIDE_OK;
}

void tide_ctx_get_stats(const tide_ctx *ctx, tide_ctx_stats *out) { *out = ctx->stats; }

int tide_ctx_project(tide_ctx *ctx, const float *h, int32_t n, int norm, float *out) {
  if (!ctx) return TIDE_ERR_ARG;
  const tide_model *m = ctx->m;
  if (!h || !out || n < 1 || n > ctx->n_batch)
    return tidei_error(ctx->env, TIDE_ERR_ARG, "project: %d rows, expected 1..%d (n_batch)",
                       (int)n, (int)ctx->n_batch);
  if (norm) norm_rows(m, ctx->xb, h, n, m->out_norm, m->out_norm_b);
  else memcpy(ctx->xb, h, (size_t)n * m->n_embd * sizeof(float));
  tidei_matmul(ctx->env, &m->output, ctx->xb, n, out, ctx->mm_scratch);
  return TIDE_OK;
}

int tide_ctx_final_norm(tide_ctx *ctx, const float *h, int32_t n, float *out) {
  if (!ctx) return TIDE_ERR_ARG;
  if (!h || !out || n < 1)
    return tidei_error(ctx->env, TIDE_ERR_ARG, "final_norm: %d rows or a NULL pointer", (int)n);
  norm_rows(ctx->m, out, h, n, ctx->m->out_norm, ctx->m->out_norm_b);
  return TIDE_OK;
}
