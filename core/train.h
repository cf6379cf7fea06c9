/*
** train.h -- the struct behind tide_trainer and the training kernels
** (forward and backward of every op), shared by train.c (the trainer:
** creation, forward/backward over a batch, AdamW, checkpoints) and
** train_ops.c (the row kernels). Layer: core (internal); spec/core/test_train.c
** calls the kernels directly for its finite-difference checks.
**
** Shapes: B sequences of S = n_prefix + T rows each, N = B * S rows in all,
** row r = b * S + s is position n_kv_prefix + s of sequence b (a KV prefix
** occupies positions 0..n_kv_prefix-1 as cache rows, not as rows here). Matrices are row-major
** (n_out, n_in) as in GGUF, so a linear layer is y = x W^T.
*/
#ifndef TIDE_TRAIN_H
#define TIDE_TRAIN_H

#include <stdint.h>

#include "model.h"
#include "tidei.h"

/* ---------------------------------------------------------------- kernels */

/* Linear layers through cblas_sgemm (OpenBLAS threads its own work).
** fwd:  Y (n, o) = X (n, i) W (o, i)^T, plus the old Y when acc.
** bx:   dX (n, i) = dY (n, o) W (o, i), plus the old dX when acc.
** bw:   dW (o, i) += dY (n, o)^T X (n, i). */
void tidei_train_mm_fwd(float *y, const float *x, const float *w, int64_t n, int64_t o,
                        int64_t i, int acc);
void tidei_train_mm_bx(float *dx, const float *dy, const float *w, int64_t n, int64_t o,
                       int64_t i, int acc);
void tidei_train_mm_bw(float *dw, const float *dy, const float *x, int64_t n, int64_t o,
                       int64_t i);

/* RMSNorm of rows [r0, r1) of x (n, d): y = x * rstd * w, rstd (n) =
** 1 / sqrt(mean(x^2) + eps) (sum in double, as forward.c). */
void tidei_train_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w,
                             int64_t r0, int64_t r1, int d, float eps);
/* dx (+)= rstd * (dy*w) - x * rstd^3 / d * sum(dy*w*x) for rows [r0, r1);
** dw (d) += sum over those rows of dy * x * rstd (dw may be NULL). dx is
** accumulated (the residual stream's gradient already sits there). */
void tidei_train_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x,
                             const float *rstd, const float *w, int64_t r0, int64_t r1,
                             int d);

/* cos, sin of every pair (2i, 2i+1) at positions 0..n_pos-1 -> cs
** (n_pos, n_rot): theta = pos * base^(-2i/n_rot) by repeated float products,
** exactly as forward.c's rope_angles. */
void tidei_train_rope_table(float *cs, int n_pos, int n_rot, float base);
/* Rotates n_head heads of head_dim at row position pos in place (llama
** "normal" pairs); bwd applies the inverse rotation (the transpose). */
void tidei_train_rope_fwd(float *v, int n_head, int head_dim, const float *cs_pos);
void tidei_train_rope_bwd(float *dv, int n_head, int head_dim, const float *cs_pos);

/* Causal attention of sequence b and KV group g (heads g*gs .. g*gs+gs-1,
** gs = n_head / n_kv_head), S rows starting at row b*S:
** q (N, n_head*hd), k, v (N, n_kv*hd) -> p (B, n_head, S, S) probabilities
** (zero above the diagonal), o (N, n_head*hd) = softmax(q k^T / sqrt(hd)) v. */
typedef struct {
  int n_head, n_kv_head, head_dim;
  int64_t S;            /* rows per sequence */
} tidei_attn_shape;
void tidei_train_attn_fwd(const tidei_attn_shape *a, int64_t b, int g, const float *q,
                          const float *k, const float *v, float *p, float *o);
/* Its backward: do (N, n_head*hd) -> dq (written), dk, dv (written: this
** (b, g) owns those rows and columns, so tasks over (b, g) never race);
** dp (B, n_head, S, S) is scratch. Both run on sgemm blocks per head. */
void tidei_train_attn_bwd(const tidei_attn_shape *a, int64_t b, int g, const float *q,
                          const float *k, const float *v, const float *p, const float *dout,
                          float *dp, float *dq, float *dk, float *dv);

/* The same with n learned prefix keys and values (KV prefix tuning) before
** the S rows: p becomes (B, n_head, S, C), C = n + S, columns 0..n-1 the
** prefix (every row sees them), then the rows' keys, causal (row i sees
** columns 0..n+i); o = softmax(q [kp; k]^T / sqrt(hd)) [vp; v]. The bwd
** also writes sequence b's rows of dk, dv of the prefix (this (b, g) owns
** their columns); the caller sums them over b. pre NULL or n 0: the plain
** kernels above, bit for bit. */
typedef struct {
  int64_t n;            /* prefix keys */
  const float *k, *v;   /* (n, n_kv*hd): K as attended (no RoPE), V */
  float *dk, *dv;       /* bwd: (B, n, n_kv*hd) per-sequence gradients */
} tidei_attn_prefix;
void tidei_train_attn_prefix_fwd(const tidei_attn_shape *a, const tidei_attn_prefix *pre,
                                 int64_t b, int g, const float *q, const float *k,
                                 const float *v, float *p, float *o);
void tidei_train_attn_prefix_bwd(const tidei_attn_shape *a, const tidei_attn_prefix *pre,
                                 int64_t b, int g, const float *q, const float *k,
                                 const float *v, const float *p, const float *dout, float *dp,
                                 float *dq, float *dk, float *dv);

/* h = silu(a) * u over n elements; bwd: da = dh * u * silu'(a), du = dh * silu(a). */
void tidei_train_swiglu_fwd(float *h, const float *a, const float *u, int64_t n);
void tidei_train_swiglu_bwd(float *da, float *du, const float *dh, const float *a,
                            const float *u, int64_t n);

/* Cross-entropy of one row of logits z (V) against target: returns
** logsumexp(z) - z[target] (double) and overwrites z with the gradient
** (softmax(z) - onehot(target)) * scale. */
double tidei_train_xent_row(float *z, int32_t V, int32_t target, float scale);

/* LM-Steer on rows of c (n, d): u (n, r) = c P1, y = c + eps u P2^T, with
** P1, P2 (d, r). bwd from dy: dP1 += c^T du, dP2 += eps dy^T u (each may be
** NULL), du = eps dy P2 (scratch, written), dc = dy + du P1^T (written). */
void tidei_train_steer_fwd(float *y, float *u, const float *c, const float *p1,
                           const float *p2, float eps, int64_t n, int64_t d, int64_t r);
void tidei_train_steer_bwd(float *dc, float *dp1, float *dp2, float *du, const float *dy,
                           const float *c, const float *u, const float *p1, const float *p2,
                           float eps, int64_t n, int64_t d, int64_t r);

/* ---------------------------------------------------------------- trainer */

/* One trainable tensor: a slice of the parameter buffers. */
typedef struct {
  char name[48];
  int n_dims;
  int64_t ne[2];        /* GGUF order: ne[0] contiguous */
  int64_t off, n;       /* floats into w / g / adam_m / adam_v */
  int decay;            /* AdamW weight decay applies (matrices, not norms) */
} tidei_tparam;

/* Weights of one block as the training pass reads them: into the trainer's
** own buffer, or into a frozen model (its mapping or an F32 copy). */
typedef struct {
  const float *attn_norm;   /* (n_embd) */
  const float *wq;          /* (n_head*hd, n_embd) */
  const float *wk, *wv;     /* (n_kv_head*hd, n_embd) */
  const float *wo;          /* (n_embd, n_head*hd) */
  const float *ffn_norm;    /* (n_embd) */
  const float *w_gate, *w_up; /* (n_ff, n_embd) */
  const float *w_down;      /* (n_embd, n_ff) */
} tidei_tlayer;

/* The same block's gradients (all NULL when the base is frozen). */
typedef struct {
  float *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *w_gate, *w_up, *w_down;
} tidei_tlayer_grad;

struct tide_trainer {
  tide_env *env;
  tide_model *model;        /* referenced: frozen base or tokenizer source, or NULL */
  tide_trainer_params p;
  int frozen;               /* base weights read-only, only the extras train */

  /* shape */
  int32_t n_vocab, n_embd, n_layer, n_head, n_kv_head, head_dim, n_ff, n_ctx;
  int32_t n_ctx_train;      /* llama.context_length written: n_ctx, or the model's */
  int32_t n_prefix, steer_rank;
  int32_t n_kv_prefix;      /* learned K/V rows per layer at positions 0..n_kv_prefix-1 */
  float steer_eps, norm_eps, rope_base;
  int tied;
  int64_t n_rows;           /* n_batch * (n_prefix + n_ctx): rows of the buffers */
  int save_layers;          /* per-layer activations kept (1) or one reused set (0) */

  /* trainable parameters: one slab each for weights, grads, moments */
  tidei_tparam *tensors;    /* (n_tensors) */
  int n_tensors;
  int64_t n_params;
  float *w, *g;             /* (n_params) weights and gradients */
  float *adam_m, *adam_v;   /* (n_params) AdamW moments */
  float *base_copy;         /* F32 copy of a quantized frozen model, or NULL */
  size_t base_copy_size;
  int64_t step;             /* optimizer updates done */

  /* views: weights (own or frozen) and gradients (NULL if frozen) */
  const float *tok_embd;    /* (n_vocab, n_embd) */
  const float *out_norm;    /* (n_embd) */
  const float *output;      /* (n_vocab, n_embd); tok_embd when tied */
  tidei_tlayer *lw;         /* (n_layer) */
  tidei_tlayer_grad *lg;    /* (n_layer) */
  float *g_tok_embd, *g_out_norm, *g_output;
  float *p1, *p2, *prefix;  /* extras: (n_embd, r) x 2, (n_prefix, n_embd) */
  float *g_p1, *g_p2, *g_prefix;
  float *kvp, *g_kvp;       /* KV prefix: (n_layer, 2 (K, V), n_kv_prefix, n_kv_head*hd),
                               tensors prefix.k.<il>, prefix.v.<il> in that order */

  /* activations of the last forward, sized for n_rows (Nm) rows; the
  ** per-layer ones hold n_layer copies when save_layers, else one */
  float *rope_cs;           /* (n_kv_prefix + n_prefix + n_ctx, head_dim) */
  int32_t *target;          /* (Nm) next token of each row, -1: no loss */
  int32_t *tok;             /* (Nm) token of each row, -1: a prefix row */
  float *xs;                /* (n_layer + 1, Nm, n_embd) residual at each block input */
  float *xn1, *xn2;         /* (L, Nm, n_embd) normed inputs of attention and ffn */
  float *rstd1, *rstd2;     /* (L, Nm) */
  float *q;                 /* (L, Nm, n_head*hd) after RoPE */
  float *k, *v;             /* (L, Nm, n_kv_head*hd), k after RoPE */
  float *att;               /* (L, n_batch, n_head, S, n_kv_prefix + S) probabilities */
  float *datt;              /* (n_batch, n_head, S, n_kv_prefix + S) their gradient */
  float *ao;                /* (L, Nm, n_head*hd) attention output */
  float *xm;                /* (L, Nm, n_embd) residual after attention */
  float *fa, *fu;           /* (L, Nm, n_ff) gate and up pre-activations */
  float *xnf, *rstdf;       /* (Nm, n_embd), (Nm) final norm */
  float *su;                /* (Nm, r) steer's c P1 */
  float *cf;                /* (Nm, n_embd) input of the output projection */
  float *logits;            /* (Nm, n_vocab); gradient after the loss */

  /* gradient scratch */
  float *dx, *dxb;          /* (Nm, n_embd) */
  float *dq, *dao;          /* (Nm, n_head*hd) */
  float *dk, *dv;           /* (Nm, n_kv_head*hd) */
  float *hb, *dh, *da, *du; /* (Nm, n_ff) */
  float *dsu;               /* (Nm, r) */
  float *dkp, *dvp;         /* (n_batch, n_kv_prefix, n_kv_head*hd) per sequence */
  double *part;             /* (TIDEI_MAX_THREADS) per-thread loss sums */

  /* what the pool tasks read (set per call) */
  int64_t cur_B, cur_S, cur_N;
  int cur_l;
  float cur_scale;
};

/* Zeroes the gradients, runs forward and backward over one micro-batch of
** B sequences of T tokens (tokens (B, T)) and adds d(mean loss)*scale into
** the gradients. *loss is the mean loss, *n_targets how many targets it
** averaged. The tests' gradient checks call it; tide_trainer_step is this
** over the micro-batches, then clipping and AdamW. */
int tidei_train_grad(tide_trainer *tr, const int32_t *tokens, int32_t B, int32_t T,
                     int zero, float scale, double *loss, int64_t *n_targets);

/* Mean loss of one micro-batch, forward only. */
int tidei_train_loss(tide_trainer *tr, const int32_t *tokens, int32_t B, int32_t T,
                     double *loss, int64_t *n_targets);

/* Global gradient norm, clipping, the schedule's lr and one AdamW update
** of the trainable parameters from the gradients in g; fills lr,
** grad_norm, clipped and step of st (may be NULL). */
void tidei_train_update(tide_trainer *tr, tide_trainer_stats *st);

/* train_io.c: checkpoints. */
int tidei_train_save(tide_trainer *tr, const char *path, const tide_trainer_save_params *sp);
int tidei_train_resume(tide_trainer *tr, const char *path);

#endif
