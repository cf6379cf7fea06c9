/*
** train_ops.c -- forward and backward kernels of the training pass: linear
** layers (sgemm), RMSNorm, RoPE, causal GQA attention, SwiGLU, cross-entropy
** and LM-Steer. Layer: core. Kernels check nothing and allocate nothing;
** train.c sets them up. The forward math is forward.c's (same roundings
** where it matters: RMSNorm sums in double, RoPE angles by repeated products).
*/
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "train.h"

/* ---------------------------------------------------------------- linear */

void tidei_train_mm_fwd(float *y, const float *x, const float *w, int64_t n, int64_t o,
                        int64_t i, int acc) {
  /* Y (n, o) = X (n, i) W (o, i)^T */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)o, (int)i, 1.0f, x,
              (int)i, w, (int)i, acc ? 1.0f : 0.0f, y, (int)o);
}

void tidei_train_mm_bx(float *dx, const float *dy, const float *w, int64_t n, int64_t o,
                       int64_t i, int acc) {
  /* dX (n, i) = dY (n, o) W (o, i) */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)i, (int)o, 1.0f, dy,
              (int)o, w, (int)i, acc ? 1.0f : 0.0f, dx, (int)i);
}

void tidei_train_mm_bw(float *dw, const float *dy, const float *x, int64_t n, int64_t o,
                       int64_t i) {
  /* dW (o, i) += dY (n, o)^T X (n, i) */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)o, (int)i, (int)n, 1.0f, dy,
              (int)o, x, (int)i, 1.0f, dw, (int)i);
}

/* ---------------------------------------------------------------- RMSNorm */

void tidei_train_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w,
                             int64_t r0, int64_t r1, int d, float eps) {
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = x + r * d;
    float *yr = y + r * d;
    double sum = 0;
    for (int i = 0; i < d; i++) sum += (double)(xr[i] * xr[i]);
    float mean = (float)(sum / d);
    float s = 1.0f / sqrtf(mean + eps);
    rstd[r] = s;
    for (int i = 0; i < d; i++) yr[i] = (xr[i] * s) * w[i];
  }
}

void tidei_train_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x,
                             const float *rstd, const float *w, int64_t r0, int64_t r1,
                             int d) {
  /* y_i = x_i s w_i, s = (mean(x^2) + eps)^-1/2, ds/dx_j = -s^3 x_j / d:
  ** dx_j = s w_j dy_j - x_j s^3 / d * sum_i dy_i w_i x_i */
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = x + r * d, *dyr = dy + r * d;
    float *dxr = dx + r * d;
    float s = rstd[r];
    double dot = 0;
    for (int i = 0; i < d; i++) dot += (double)(dyr[i] * w[i]) * xr[i];
    float c = (float)(dot * s * s * s / d);
    for (int i = 0; i < d; i++) dxr[i] += s * w[i] * dyr[i] - xr[i] * c;
    if (dw)
      for (int i = 0; i < d; i++) dw[i] += dyr[i] * xr[i] * s;
  }
}

/* ---------------------------------------------------------------- RoPE */

void tidei_train_rope_table(float *cs, int n_pos, int n_rot, float base) {
  float theta_scale = powf(base, -2.0f / (float)n_rot);
  for (int p = 0; p < n_pos; p++) {
    float theta = (float)p;
    for (int i0 = 0; i0 < n_rot; i0 += 2) {
      cs[(int64_t)p * n_rot + i0] = cosf(theta);
      cs[(int64_t)p * n_rot + i0 + 1] = sinf(theta);
      theta *= theta_scale;
    }
  }
}

void tidei_train_rope_fwd(float *v, int n_head, int head_dim, const float *cs) {
  /* (x0, x1) -> (x0 c - x1 s, x0 s + x1 c) */
  for (int h = 0; h < n_head; h++) {
    float *x = v + (int64_t)h * head_dim;
    for (int i0 = 0; i0 < head_dim; i0 += 2) {
      float c = cs[i0], s = cs[i0 + 1], x0 = x[i0], x1 = x[i0 + 1];
      x[i0] = x0 * c - x1 * s;
      x[i0 + 1] = x0 * s + x1 * c;
    }
  }
}

void tidei_train_rope_bwd(float *dv, int n_head, int head_dim, const float *cs) {
  /* the transpose of the rotation: (d0, d1) -> (d0 c + d1 s, -d0 s + d1 c) */
  for (int h = 0; h < n_head; h++) {
    float *x = dv + (int64_t)h * head_dim;
    for (int i0 = 0; i0 < head_dim; i0 += 2) {
      float c = cs[i0], s = cs[i0 + 1], d0 = x[i0], d1 = x[i0 + 1];
      x[i0] = d0 * c + d1 * s;
      x[i0 + 1] = -d0 * s + d1 * c;
    }
  }
}

/* ---------------------------------------------------------------- attention */

/* Row-wise causal softmax of a score block sc (S, C), C = P + S, in place:
** row i keeps columns 0..P+i (max-subtracted exp, sum in double), the rest
** become 0. */
static void causal_softmax(float *sc, int64_t S, int64_t P) {
  int64_t C = P + S;
  for (int64_t i = 0; i < S; i++) {
    float *pi = sc + i * C, mx = -INFINITY;
    int64_t n = P + i + 1;
    for (int64_t j = 0; j < n; j++)
      if (pi[j] > mx) mx = pi[j];
    double sum = 0;
    for (int64_t j = 0; j < n; j++) {
      pi[j] = expf(pi[j] - mx);
      sum += (double)pi[j];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n; j++) pi[j] *= inv;
    for (int64_t j = n; j < C; j++) pi[j] = 0;
  }
}

/* C (m, n) = alpha A (m, k) B^T (n, k) (+ C when acc), row-major with strides. */
static void gemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                    const float *B, int64_t ldb, int acc, float *C, int64_t ldc) {
  if (m && n && k)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, alpha, A,
                (int)lda, B, (int)ldb, acc ? 1.0f : 0.0f, C, (int)ldc);
}

/* C (m, n) = A (m, k) B (k, n) (+ C when acc). */
static void gemm_nn(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                    const float *B, int64_t ldb, int acc, float *C, int64_t ldc) {
  if (m && n && k)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, A,
                (int)lda, B, (int)ldb, acc ? 1.0f : 0.0f, C, (int)ldc);
}

/* C (m, n) += A^T B with A (k, m), B (k, n). */
static void gemm_tn_acc(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float *C, int64_t ldc) {
  if (m && n && k)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, A,
                (int)lda, B, (int)ldb, 1.0f, C, (int)ldc);
}

void tidei_train_attn_fwd(const tidei_attn_shape *a, int64_t b, int g, const float *q,
                          const float *k, const float *v, float *p, float *o) {
  tidei_train_attn_prefix_fwd(a, NULL, b, g, q, k, v, p, o);
}

void tidei_train_attn_bwd(const tidei_attn_shape *a, int64_t b, int g, const float *q,
                          const float *k, const float *v, const float *p, const float *dout,
                          float *dp, float *dq, float *dk, float *dv) {
  tidei_train_attn_prefix_bwd(a, NULL, b, g, q, k, v, p, dout, dp, dq, dk, dv);
}

void tidei_train_attn_prefix_fwd(const tidei_attn_shape *a, const tidei_attn_prefix *pre,
                                 int64_t b, int g, const float *q, const float *k,
                                 const float *v, float *p, float *o) {
  int hd = a->head_dim, gs = a->n_head / a->n_kv_head;
  int64_t S = a->S, P = pre ? pre->n : 0, C = P + S;
  int64_t qs = (int64_t)a->n_head * hd, ks = (int64_t)a->n_kv_head * hd;
  float scale = 1.0f / sqrtf((float)hd);
  const float *K = k + b * S * ks + (int64_t)g * hd, *V = v + b * S * ks + (int64_t)g * hd;
  const float *Kp = P ? pre->k + (int64_t)g * hd : NULL, *Vp = P ? pre->v + (int64_t)g * hd : NULL;
  for (int h = g * gs; h < (g + 1) * gs; h++) {
    float *Pm = p + (b * a->n_head + h) * S * C;
    const float *Q = q + b * S * qs + (int64_t)h * hd;
    float *O = o + b * S * qs + (int64_t)h * hd;
    /* Pm (S, C) = softmax_causal(Q [Kp; K]^T / sqrt(hd)); O (S, hd) = Pm [Vp; V] */
    gemm_nt(S, P, hd, scale, Q, qs, Kp, ks, 0, Pm, C);
    gemm_nt(S, S, hd, scale, Q, qs, K, ks, 0, Pm + P, C);
    causal_softmax(Pm, S, P);
    gemm_nn(S, hd, P, Pm, C, Vp, ks, 0, O, qs);
    gemm_nn(S, hd, S, Pm + P, C, V, ks, P > 0, O, qs);
  }
}

void tidei_train_attn_prefix_bwd(const tidei_attn_shape *a, const tidei_attn_prefix *pre,
                                 int64_t b, int g, const float *q, const float *k,
                                 const float *v, const float *p, const float *dout, float *dp,
                                 float *dq, float *dk, float *dv) {
  int hd = a->head_dim, gs = a->n_head / a->n_kv_head;
  int64_t S = a->S, P = pre ? pre->n : 0, C = P + S;
  int64_t qs = (int64_t)a->n_head * hd, ks = (int64_t)a->n_kv_head * hd;
  float scale = 1.0f / sqrtf((float)hd);
  int64_t koff = b * S * ks + (int64_t)g * hd, poff = b * P * ks + (int64_t)g * hd;
  const float *K = k + koff, *V = v + koff;
  const float *Kp = P ? pre->k + (int64_t)g * hd : NULL, *Vp = P ? pre->v + (int64_t)g * hd : NULL;
  float *dK = dk + koff, *dV = dv + koff;
  float *dKp = P ? pre->dk + poff : NULL, *dVp = P ? pre->dv + poff : NULL;
  for (int64_t j = 0; j < S; j++)
    for (int d = 0; d < hd; d++) dK[j * ks + d] = dV[j * ks + d] = 0;
  for (int64_t j = 0; j < P; j++)
    for (int d = 0; d < hd; d++) dKp[j * ks + d] = dVp[j * ks + d] = 0;
  for (int h = g * gs; h < (g + 1) * gs; h++) {
    int64_t hoff = (b * a->n_head + h) * S * C, qoff = b * S * qs + (int64_t)h * hd;
    const float *Pm = p + hoff, *Q = q + qoff, *dO = dout + qoff;
    float *dP = dp + hoff, *dQ = dq + qoff;
    /* [dVp; dV] += Pm^T dO; dP = dO [Vp; V]^T */
    gemm_tn_acc(P, hd, S, Pm, C, dO, qs, dVp, ks);
    gemm_tn_acc(S, hd, S, Pm + P, C, dO, qs, dV, ks);
    gemm_nt(S, P, hd, 1.0f, dO, qs, Vp, ks, 0, dP, C);
    gemm_nt(S, S, hd, 1.0f, dO, qs, V, ks, 0, dP + P, C);
    /* dS_ij = p_ij (dp_ij - sum_k p_ik dp_ik) / sqrt(hd), in place of dP */
    for (int64_t i = 0; i < S; i++) {
      const float *pi = Pm + i * C;
      float *di = dP + i * C;
      int64_t n = P + i + 1;
      double dot = 0;
      for (int64_t j = 0; j < n; j++) dot += (double)pi[j] * di[j];
      for (int64_t j = 0; j < n; j++) di[j] = pi[j] * (di[j] - (float)dot) * scale;
      for (int64_t j = n; j < C; j++) di[j] = 0;
    }
    /* dQ = dS [Kp; K]; [dKp; dK] += dS^T Q */
    gemm_nn(S, hd, P, dP, C, Kp, ks, 0, dQ, qs);
    gemm_nn(S, hd, S, dP + P, C, K, ks, P > 0, dQ, qs);
    gemm_tn_acc(P, hd, S, dP, C, Q, qs, dKp, ks);
    gemm_tn_acc(S, hd, S, dP + P, C, Q, qs, dK, ks);
  }
}

/* ---------------------------------------------------------------- SwiGLU */

void tidei_train_swiglu_fwd(float *h, const float *a, const float *u, int64_t n) {
  for (int64_t i = 0; i < n; i++) h[i] = a[i] / (1.0f + expf(-a[i])) * u[i];
}

void tidei_train_swiglu_bwd(float *da, float *du, const float *dh, const float *a,
                            const float *u, int64_t n) {
  /* silu(a) = a s(a), silu'(a) = s(a) (1 + a (1 - s(a))) */
  for (int64_t i = 0; i < n; i++) {
    float s = 1.0f / (1.0f + expf(-a[i])), silu = a[i] * s;
    float dhi = dh[i];
    da[i] = dhi * u[i] * s * (1.0f + a[i] * (1.0f - s));
    du[i] = dhi * silu;
  }
}

/* ---------------------------------------------------------------- loss */

double tidei_train_xent_row(float *z, int32_t V, int32_t target, float scale) {
  float mx = -INFINITY;
  for (int32_t i = 0; i < V; i++)
    if (z[i] > mx) mx = z[i];
  double sum = 0;
  for (int32_t i = 0; i < V; i++) sum += exp((double)(z[i] - mx));
  double lse = (double)mx + log(sum), loss = lse - (double)z[target];
  /* d loss / dz_i = softmax_i - [i == target] */
  for (int32_t i = 0; i < V; i++) z[i] = (float)exp((double)z[i] - lse) * scale;
  z[target] -= scale;
  return loss;
}

/* ---------------------------------------------------------------- LM-Steer */

void tidei_train_steer_fwd(float *y, float *u, const float *c, const float *p1,
                           const float *p2, float eps, int64_t n, int64_t d, int64_t r) {
  /* u (n, r) = c (n, d) P1 (d, r); y = c + eps u P2^T */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)r, (int)d, 1.0f, c,
              (int)d, p1, (int)r, 0.0f, u, (int)r);
  if (y != c) memcpy(y, c, (size_t)(n * d) * sizeof(float));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d, (int)r, eps, u,
              (int)r, p2, (int)r, 1.0f, y, (int)d);
}

void tidei_train_steer_bwd(float *dc, float *dp1, float *dp2, float *du, const float *dy,
                           const float *c, const float *u, const float *p1, const float *p2,
                           float eps, int64_t n, int64_t d, int64_t r) {
  /* dP2 (d, r) += eps dy^T u */
  if (dp2)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)r, (int)n, eps, dy,
                (int)d, u, (int)r, 1.0f, dp2, (int)r);
  /* du (n, r) = eps dy P2 */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)r, (int)d, eps, dy,
              (int)d, p2, (int)r, 0.0f, du, (int)r);
  /* dP1 (d, r) += c^T du */
  if (dp1)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)r, (int)n, 1.0f, c,
                (int)d, du, (int)r, 1.0f, dp1, (int)r);
  /* dc = dy + du P1^T */
  if (dc != dy) memcpy(dc, dy, (size_t)(n * d) * sizeof(float));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d, (int)r, 1.0f, du,
              (int)r, p1, (int)r, 1.0f, dc, (int)d);
}
