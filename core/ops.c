/*
** ops.c -- scalar reference kernels, kernel-table choice, and the matrix
** multiply that drives them over the env's threads.
** Layer: core. Kernels check nothing and allocate nothing; tidei_matmul
** takes its scratch from the caller (tidei_matmul_scratch bytes).
**
** The reference kernels are the numerics llama.cpp's CPU backend computes:
** activations are first converted to the weight's vec_dtype (F16 for F16,
** BF16 for BF16, Q8_0 for Q8_0/Q4_0, Q8_K for K-quants), block dots are
** exact in int32 and scaled per block in float. Float dots accumulate float
** products in double, as ggml's scalar vec_dot_f32/f16 do.
*/
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "tensor.h"

/* ---------------------------------------------------------------- dots */

/* out = sum_i w[i]*x[i] over f32 rows */
void tidei_vec_dot_f32_scalar(int64_t n, const void *w, const void *x, float *out) {
  const float *a = w, *b = x;
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)(a[i] * b[i]);
  *out = (float)s;
}

/* out = sum_i f32(w[i])*f32(x[i]) over f16 rows */
void tidei_vec_dot_f16_scalar(int64_t n, const void *w, const void *x, float *out) {
  const uint16_t *a = w, *b = x;
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += (double)(tidei_f16_to_f32(a[i]) * tidei_f16_to_f32(b[i]));
  *out = (float)s;
}

/* out = sum_i f32(w[i])*f32(x[i]) over bf16 rows */
void tidei_vec_dot_bf16_scalar(int64_t n, const void *w, const void *x, float *out) {
  const uint16_t *a = w, *b = x;
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += (double)(tidei_bf16_to_f32(a[i]) * tidei_bf16_to_f32(b[i]));
  *out = (float)s;
}

/* out = sum_blocks (d_w*d_x) * sum_j qw[j]*qx[j], in llama.cpp's x86 order:
** 8 float lanes, lane k += (d_w*d_x) * (int sum of elements 4k..4k+3) by
** fma block by block, then ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)). */
void tidei_vec_dot_q8_0_scalar(int64_t n, const void *w, const void *x, float *out) {
  const tidei_block_q8_0 *a = w, *b = x;
  float l[8] = { 0 };
  for (int64_t i = 0; i < n / QK8_0; i++) {
    float d = tidei_f16_to_f32(a[i].d) * tidei_f16_to_f32(b[i].d);
    for (int k = 0; k < 8; k++) {
      int32_t sumi = 0;
      for (int j = 4 * k; j < 4 * k + 4; j++) sumi += a[i].qs[j] * b[i].qs[j];
      l[k] = fmaf(d, (float)sumi, l[k]);
    }
  }
  *out = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* out = sum_blocks (d_w*d_x) * sum_j (nib_j - 8)*qx[j]; low nibbles are
** elements 0..15, high nibbles 16..31 */
void tidei_vec_dot_q4_0_scalar(int64_t n, const void *w, const void *x, float *out) {
  const tidei_block_q4_0 *a = w;
  const tidei_block_q8_0 *b = x;
  float s = 0;
  for (int64_t i = 0; i < n / QK4_0; i++) {
    int32_t sumi = 0;
    for (int j = 0; j < QK4_0 / 2; j++) {
      sumi += ((a[i].qs[j] & 0x0f) - 8) * b[i].qs[j];
      sumi += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + 16];
    }
    s = fmaf((float)sumi, tidei_f16_to_f32(a[i].d) * tidei_f16_to_f32(b[i].d), s);
  }
  *out = s;
}

/* out = sum_superblocks d_x * (d * sum_g sc_g * sum_l q*qx
**                              - dmin * sum_g m_g * sum_l qx), g of 32 */
void tidei_vec_dot_q4_K_scalar(int64_t n, const void *w, const void *x, float *out) {
  const tidei_block_q4_K *a = w;
  const tidei_block_q8_K *b = x;
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    int32_t isum = 0, imin = 0;
    const uint8_t *q = a[i].qs;
    const int8_t *qx = b[i].qs;
    for (int g = 0; g < 8; g++) {
      uint8_t sc, m;
      tidei_q4_K_scale_min(g, a[i].scales, &sc, &m);
      int shift = (g & 1) * 4;            /* even groups: low nibbles */
      const uint8_t *qg = q + (g / 2) * 32; /* of the 32 bytes of chunk g/2 */
      int32_t dot = 0;
      for (int l = 0; l < 32; l++) dot += ((qg[l] >> shift) & 0x0f) * qx[32 * g + l];
      isum += sc * dot;
      imin += m * (b[i].bsums[2 * g] + b[i].bsums[2 * g + 1]);
    }
    float d = tidei_f16_to_f32(a[i].d) * b[i].d;
    float dmin = tidei_f16_to_f32(a[i].dmin) * b[i].d;
    s += d * (float)isum - dmin * (float)imin;
  }
  *out = s;
}

/* out = sum_superblocks d*d_x * sum_g sc_g * sum_l (q6 - 32)*qx, g of 16 */
void tidei_vec_dot_q6_K_scalar(int64_t n, const void *w, const void *x, float *out) {
  const tidei_block_q6_K *a = w;
  const tidei_block_q8_K *b = x;
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    int8_t q[QK_K];
    const uint8_t *ql = a[i].ql, *qh = a[i].qh;
    for (int h = 0; h < 2; h++, ql += 64, qh += 32)
      for (int l = 0; l < 32; l++) {
        q[128 * h + l] = (int8_t)(((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32);
        q[128 * h + l + 32] = (int8_t)(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
        q[128 * h + l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        q[128 * h + l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    int32_t isum = 0;
    for (int g = 0; g < QK_K / 16; g++) {
      int32_t dot = 0;
      for (int l = 0; l < 16; l++) dot += q[16 * g + l] * b[i].qs[16 * g + l];
      isum += a[i].scales[g] * dot;
    }
    s += tidei_f16_to_f32(a[i].d) * b[i].d * (float)isum;
  }
  *out = s;
}

/* ---------------------------------------------------------------- attention */

/* The sum of 16 lanes as the tree (j, j+8), (j, j+4), (j, j+2), (j, j+1). */
static float tree16(const float *l) {
  float a[8], b[4];
  for (int j = 0; j < 8; j++) a[j] = l[j] + l[j + 8];
  for (int j = 0; j < 4; j++) b[j] = a[j] + a[j + 4];
  return (b[0] + b[2]) + (b[1] + b[3]);
}

/* s[t] = K[t] . q in ggml_vec_dot_f32's order (tensor.h: kq) */
void tidei_kq_f32_scalar(int hd, const void *k, size_t rs, int n, const float *q, float *s) {
  int np = hd & ~63;
  for (int t = 0; t < n; t++) {
    const float *kr = (const float *)((const char *)k + (size_t)t * rs);
    float l[64] = { 0 }, r[16];
    for (int i = 0; i < np; i++) l[i & 63] = fmaf(kr[i], q[i], l[i & 63]);
    for (int j = 0; j < 16; j++) r[j] = (l[j] + l[32 + j]) + (l[16 + j] + l[48 + j]);
    float sum = tree16(r);
    for (int i = np; i < hd; i++) sum = fmaf(kr[i], q[i], sum);
    s[t] = sum;
  }
}

/* s[t] = K[t] . q, 16 fma lanes then tree16 (tensor.h: kq) */
void tidei_kq_f16_scalar(int hd, const void *k, size_t rs, int n, const float *q, float *s) {
  for (int t = 0; t < n; t++) {
    const uint16_t *kr = (const uint16_t *)((const char *)k + (size_t)t * rs);
    float l[16] = { 0 };
    for (int i = 0; i < hd; i++) l[i & 15] = fmaf(tidei_f16_to_f32(kr[i]), q[i], l[i & 15]);
    s[t] = tree16(l);
  }
}

/* acc[t][i] = fma(p[t], V[t][i], acc[t][i]) (tensor.h: pv) */
void tidei_pv_f32_scalar(int hd, const void *v, size_t rs, int n, const float *p, float *acc,
                         int ldacc) {
  for (int t = 0; t < n; t++) {
    const float *vr = (const float *)((const char *)v + (size_t)t * rs);
    for (int i = 0; i < hd; i++) acc[t * ldacc + i] = fmaf(p[t], vr[i], acc[t * ldacc + i]);
  }
}

void tidei_pv_f16_scalar(int hd, const void *v, size_t rs, int n, const float *p, float *acc,
                         int ldacc) {
  for (int t = 0; t < n; t++) {
    const uint16_t *vr = (const uint16_t *)((const char *)v + (size_t)t * rs);
    for (int i = 0; i < hd; i++)
      acc[t * ldacc + i] = fmaf(p[t], tidei_f16_to_f32(vr[i]), acc[t * ldacc + i]);
  }
}

/* ---------------------------------------------------------------- quant */

/* f32 -> the nearest F16 values, as f32 */
void tidei_round_f16_scalar(const float *src, void *dst, int64_t n) {
  float *y = dst;
  for (int64_t i = 0; i < n; i++) y[i] = tidei_f16_to_f32(tidei_f32_to_f16(src[i]));
}

static void widen_f16_scalar(const void *src, float *dst, int64_t n) {
  const uint16_t *h = src;
  for (int64_t i = 0; i < n; i++) dst[i] = tidei_f16_to_f32(h[i]);
}

void tidei_quant_f32_scalar(const float *src, void *dst, int64_t n) {
  memcpy(dst, src, (size_t)n * sizeof(float));
}

void tidei_quant_f16_scalar(const float *src, void *dst, int64_t n) {
  uint16_t *h = dst;
  for (int64_t i = 0; i < n; i++) h[i] = tidei_f32_to_f16(src[i]);
}

void tidei_quant_bf16_scalar(const float *src, void *dst, int64_t n) {
  uint16_t *h = dst;
  for (int64_t i = 0; i < n; i++) h[i] = tidei_f32_to_bf16(src[i]);
}

/* llama.cpp's x86 activation quantizer: amax = max|x|, d = f16(amax/127),
** q = nearest-even(x * 127/amax) (0 if amax == 0). Not the weight quantizer
** (which uses roundf and 1/d). */
void tidei_quant_q8_0_scalar(const float *src, void *dst, int64_t n) {
  tidei_block_q8_0 *b = dst;
  for (int64_t i = 0; i < n / QK8_0; i++) {
    const float *x = src + i * QK8_0;
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    b[i].d = tidei_f32_to_f16(amax / 127.0f);
    for (int j = 0; j < QK8_0; j++) b[i].qs[j] = (int8_t)nearbyintf(x[j] * id);
  }
}

void tidei_quant_q8_K_scalar(const float *src, void *dst, int64_t n) {
  tidei_dtype(TIDE_Q8_K)->from_float(src, dst, n);
}

/* ---------------------------------------------------------------- tables */

static const struct tidei_kernels kernels_scalar = {
  "scalar",
  {
    [TIDE_F32] = tidei_vec_dot_f32_scalar,
    [TIDE_F16] = tidei_vec_dot_f16_scalar,
    [TIDE_BF16] = tidei_vec_dot_bf16_scalar,
    [TIDE_Q8_0] = tidei_vec_dot_q8_0_scalar,
    [TIDE_Q4_0] = tidei_vec_dot_q4_0_scalar,
    [TIDE_Q4_K] = tidei_vec_dot_q4_K_scalar,
    [TIDE_Q6_K] = tidei_vec_dot_q6_K_scalar,
  },
  {
    [TIDE_F32] = tidei_quant_f32_scalar,
    [TIDE_F16] = tidei_quant_f16_scalar,
    [TIDE_BF16] = tidei_quant_bf16_scalar,
    [TIDE_Q8_0] = tidei_quant_q8_0_scalar,
    [TIDE_Q8_K] = tidei_quant_q8_K_scalar,
  },
  { 0 }, /* no tile kernels */
  { 0 },
  { 0 },
  tidei_round_f16_scalar,
  widen_f16_scalar,
  { [TIDE_F32] = tidei_kq_f32_scalar, [TIDE_F16] = tidei_kq_f16_scalar },
  { [TIDE_F32] = tidei_pv_f32_scalar, [TIDE_F16] = tidei_pv_f16_scalar },
};

const struct tidei_kernels *tidei_kernels_scalar(void) { return &kernels_scalar; }

/* The fast tables are complete constant tables (their gaps are filled with
** the scalar kernels by name), so choosing one is a pure cpuid query. The
** AVX-512 table uses VNNI, so it needs avx512vnni as well as f/bw/vl. */
const struct tidei_kernels *tidei_kernels_best(void) {
  const struct tidei_kernels *k;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2") &&
      (k = tidei_kernels_avx512()) != NULL)
    return k;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c") && (k = tidei_kernels_avx2()) != NULL)
    return k;
  return &kernels_scalar;
}

/* ---------------------------------------------------------------- matmul */

typedef struct {
  const tidei_mat *w;
  const struct tidei_kernels *k;
  const float *x;       /* (n_tok, n_in) */
  char *xq;             /* (n_tok, xrow bytes): x in vec_dtype (F16: f32 rounded) */
  char *xp;             /* the tile kernel's panel of xq, or NULL */
  float *wp;            /* F16 sgemm: (TIDEI_F16_PANEL, n_in) weights as f32 */
  size_t xrow, wrow;    /* bytes per activation row, per weight row */
  int64_t n_tok;
  int64_t p0, p1;       /* F16 sgemm: the weight rows of the current panel */
  int f16r;             /* F16 weights through rows on f32 rounded activations */
  float *y;             /* (n_tok, n_out) */
  int64_t chunk;        /* rows per piece of work (a multiple of 16) */
  atomic_llong next;    /* first row of the next piece nobody took */
} mm_task;

/* Bytes of one activation row in the weight's vec_dtype. */
static size_t act_row_size(const tidei_mat *w) {
  return tide_dtype_row_size(tidei_dtype(w->dtype)->vec_dtype, w->n_in);
}

/* Dtypes some table has a tile kernel for. */
static int tiled_dtype(int dtype) { return dtype == TIDE_Q8_0 || dtype == TIDE_Q4_0; }

/* The panel starts at a 64-byte offset past the activation rows. */
static size_t panel_offset(size_t xrow, int64_t n_tok) {
  return (xrow * (size_t)n_tok + 63) & ~(size_t)63;
}

size_t tidei_matmul_scratch(const tidei_mat *w, int64_t n_tok) {
  if (w->dtype == TIDE_F32) return 0;
  if (n_tok > 1 && tiled_dtype(w->dtype))
    return panel_offset(act_row_size(w), n_tok) + tidei_panel_size(w->n_in, n_tok);
  if (w->dtype == TIDE_F16) {
    size_t xs = (size_t)w->n_in * sizeof(float) * (size_t)n_tok;
    if (n_tok < TIDEI_F16_SGEMM) return xs;
    return panel_offset((size_t)w->n_in * sizeof(float), n_tok) +
           (size_t)TIDEI_F16_PANEL * (size_t)w->n_in * sizeof(float);
  }
  return act_row_size(w) * (size_t)n_tok;
}

/* X rows [t0, t1) -> vec_dtype rows in scratch; with a panel, the rows go in
** groups of 8 and each group is packed after it is quantized. */
static void mm_quant(void *arg, int ith, int nth) {
  mm_task *t = arg;
  int64_t t0, t1;
  tidei_split(t->n_tok, ith, nth, t->xp ? 8 : 1, &t0, &t1);
  tidei_from_float_fn q = t->f16r ? t->k->round_f16 : t->k->quant[tidei_dtype(t->w->dtype)->vec_dtype];
  for (int64_t i = t0; i < t1; i++)
    q(t->x + i * t->w->n_in, t->xq + (size_t)i * t->xrow, t->w->n_in);
  if (t->xp && t0 < t1)
    t->k->pack[t->w->dtype](t->w->n_in, t->xq + (size_t)t0 * t->xrow, t->xrow, t1 - t0,
                            t->xp + tidei_panel_size(t->w->n_in, t0));
}

/* Y[:, r0:r1] = X W[r0:r1]^T. Rows go in tiles small enough to stay in L1
** while every token row is dotted with them, so each weight byte comes from
** memory once per call whatever n_tok is. */
static void mm_range(mm_task *t, int64_t r0, int64_t r1) {
  const tidei_mat *w = t->w;
  const char *wd = w->data;
  if (t->xp) {
    if (r0 < r1)
      t->k->tile[w->dtype](w->n_in, wd + (size_t)r0 * t->wrow, t->wrow, r1 - r0, t->xp,
                           t->n_tok, t->y + r0, w->n_out);
    return;
  }
  tidei_rows_fn rows = t->k->rows[w->dtype];
  tidei_vec_dot_fn dot = t->k->vec_dot[w->dtype];
  if (!t->f16r && t->n_tok > 1) rows = NULL; /* rows takes one token */
  int64_t tile = t->n_tok == 1 ? r1 - r0 : (int64_t)(32768 / (t->wrow + 1));
  if (tile < 1) tile = 1;
  if (tile > 16 && t->n_tok > 1) tile = 16;
  if (rows && tile > 4) tile &= ~(int64_t)3; /* rows runs 4 at a time */
  for (int64_t a = r0; a < r1; a += tile) {
    int64_t b = a + tile < r1 ? a + tile : r1;
    for (int64_t i = 0; i < t->n_tok; i++) {
      const char *xr = t->xq + (size_t)i * t->xrow;
      float *yr = t->y + i * w->n_out;
      if (rows) rows(w->n_in, wd + (size_t)a * t->wrow, t->wrow, b - a, xr, yr + a);
      else
        for (int64_t r = a; r < b; r++) dot(w->n_in, wd + (size_t)r * t->wrow, xr, &yr[r]);
    }
  }
}

/* Pool task: pieces of t->chunk rows taken from a shared counter, so a
** thread that starts late (woken late, or preempted on a busy machine)
** leaves its share to the others instead of holding everyone up. */
static void mm_rows(void *arg, int ith, int nth) {
  mm_task *t = arg;
  int64_t n = t->w->n_out, a;
  (void)ith, (void)nth;
  while ((a = atomic_fetch_add_explicit(&t->next, t->chunk, memory_order_relaxed)) < n)
    mm_range(t, a, a + t->chunk < n ? a + t->chunk : n);
}

/* About 4 pieces per thread, whole multiples of 16 rows. */
static void mm_plan(mm_task *t, int nth) {
  int64_t c = (t->w->n_out + 4 * nth - 1) / (4 * nth);
  t->chunk = c < 16 ? 16 : (c + 15) / 16 * 16;
  atomic_store_explicit(&t->next, 0, memory_order_relaxed);
}

static void mm_setup(mm_task *t, const struct tidei_kernels *k, const tidei_mat *w,
                     const float *x, int64_t n_tok, float *y, void *scratch) {
  t->w = w;
  t->k = k;
  t->x = x;
  t->n_tok = n_tok;
  t->y = y;
  t->wrow = tide_dtype_row_size(w->dtype, w->n_in);
  t->f16r = w->dtype == TIDE_F16 && k->rows[TIDE_F16] != NULL;
  t->xrow = t->f16r ? (size_t)w->n_in * sizeof(float) : act_row_size(w);
  t->xq = w->dtype == TIDE_F32 ? (char *)(uintptr_t)x : (char *)scratch;
  t->xp = n_tok > 1 && tiled_dtype(w->dtype) && k->tile[w->dtype]
              ? (char *)scratch + panel_offset(t->xrow, n_tok) : NULL;
  t->wp = NULL;
}

/* F16 sgemm: weight rows [p0, p1) of the panel -> f32, split over threads. */
static void mm_widen(void *arg, int ith, int nth) {
  mm_task *t = arg;
  int64_t a, b;
  tidei_split(t->p1 - t->p0, ith, nth, 1, &a, &b);
  for (int64_t r = a; r < b; r++)
    t->k->widen_f16((const char *)t->w->data + (size_t)(t->p0 + r) * t->wrow,
                    t->wp + r * t->w->n_in, t->w->n_in);
}

/* Y = X W^T for F16 W through sgemm, a panel of rows at a time (tensor.h). */
static void mm_f16_sgemm(tide_env *env, mm_task *t, void *scratch) {
  const tidei_mat *w = t->w;
  t->f16r = 1;
  t->xrow = (size_t)w->n_in * sizeof(float);
  t->wp = (float *)((char *)scratch + panel_offset(t->xrow, t->n_tok));
  tidei_pool_run(env, mm_quant, t);
  for (int64_t p = 0; p < w->n_out; p += TIDEI_F16_PANEL) {
    t->p0 = p;
    t->p1 = p + TIDEI_F16_PANEL < w->n_out ? p + TIDEI_F16_PANEL : w->n_out;
    tidei_pool_run(env, mm_widen, t);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)t->n_tok, (int)(t->p1 - p),
                (int)w->n_in, 1.0f, (const float *)t->xq, (int)w->n_in, t->wp, (int)w->n_in,
                0.0f, t->y + p, (int)w->n_out);
  }
}

void tidei_matmul(tide_env *env, const tidei_mat *w, const float *x,
                  int64_t n_tok, float *y, void *scratch) {
  if (w->dtype == TIDE_F32 && n_tok >= 4) { /* Y = X W^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_tok, (int)w->n_out,
                (int)w->n_in, 1.0f, x, (int)w->n_in, w->data, (int)w->n_in, 0.0f, y,
                (int)w->n_out);
    return;
  }
  mm_task t;
  mm_setup(&t, env->force_scalar ? &kernels_scalar : env->k, w, x, n_tok, y, scratch);
  if (w->dtype == TIDE_F16 && n_tok >= TIDEI_F16_SGEMM) {
    mm_f16_sgemm(env, &t, scratch);
    return;
  }
  if (w->dtype != TIDE_F32) {
    if (n_tok >= 16) tidei_pool_run(env, mm_quant, &t);
    else mm_quant(&t, 0, 1);
  }
  mm_plan(&t, env->n_threads);
  tidei_pool_run(env, mm_rows, &t);
}

/* The reference never tiles: vec_dot per row and token, one thread. */
void tidei_matmul_ref(const tidei_mat *w, const float *x, int64_t n_tok, float *y,
                      void *scratch) {
  mm_task t;
  mm_setup(&t, &kernels_scalar, w, x, n_tok, y, scratch);
  if (w->dtype != TIDE_F32) mm_quant(&t, 0, 1);
  mm_range(&t, 0, w->n_out);
}
