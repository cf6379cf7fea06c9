/*
** tensor.c -- element types: f16/bf16 conversions, dtype traits, and the
** reference (de)quantizers of the GGUF block formats.
** Layer: core. Pure functions over caller-owned memory; no allocation.
**
** Every dequantizer reproduces ggml's dequantize_row_* bit for bit. The
** quantizers for F16, BF16, Q8_0, Q4_0 and Q8_K follow ggml's
** quantize_row_*_ref bit for bit (these make model files and K-quant
** activations). Q4_K and Q6_K run the same search as ggml's reference
** quantizers (make_qkx2_quants for Q4_K, make_qx_quants with x^2 weights for
** Q6_K) written afresh; they are correct but not verified to equal
** llama.cpp's output byte for byte, and need not: they only make bench
** and test models.
**
** Two Q8_0 quantizers exist and differ on purpose:
**  - tidei_dtype(TIDE_Q8_0)->from_float (here) is ggml's weight quantizer:
**    d = amax/127, id = 1/d, q = roundf(x*id) (ties away from zero).
**  - the activation quantizer in the kernel tables (ops.c) is llama.cpp's
**    x86 quantize_row_q8_0: id = 127/amax, q = nearest-even(x*id).
*/
#include <math.h>
#include <string.h>

#include "tensor.h"

/* ---------------------------------------------------------------- f16/bf16 */

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* IEEE half -> float, exact; NaNs keep their payload and become quiet
** (as VCVTPH2PS does). */
float tidei_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0x1f) /* inf, nan */
    return bits_f32(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0));
  if (e == 0) /* zero or subnormal: m * 2^-24, exact in float */
    return bits_f32(sign | f32_bits((float)m * 0x1p-24f));
  return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

/* float -> IEEE half, round to nearest even, overflow to inf, subnormals
** kept; NaN -> quiet NaN with the top payload bits (as VCVTPS2PH). */
uint16_t tidei_f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* >= 65520: inf */
  if (ax >= 0x38800000u) {                                 /* normal half */
    uint32_t r = ax - 0x38000000u;                        /* rebias 127 -> 15 */
    r += 0x0fffu + ((r >> 13) & 1);
    return (uint16_t)(sign | (r >> 13));
  }
  uint32_t e = ax >> 23;
  if (e < 102) return sign; /* below 2^-25: rounds to zero */
  uint32_t m = (ax & 0x7fffffu) | 0x800000u, s = 126 - e; /* units of 2^-24 */
  uint32_t r = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);
  if (rem > half || (rem == half && (r & 1))) r++;
  return (uint16_t)(sign | r);
}

float tidei_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* As ggml_compute_fp32_to_bf16: NaN -> (bits >> 16) | 64 (quiet), else
** round to nearest even on the top 16 bits (no flush of subnormals). */
uint16_t tidei_f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
  return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

/* ---------------------------------------------------------------- floats */

static void f32_to_float(const void *src, float *dst, int64_t n) {
  memcpy(dst, src, (size_t)n * sizeof(float));
}
static void f32_from_float(const float *src, void *dst, int64_t n) {
  memcpy(dst, src, (size_t)n * sizeof(float));
}
static void f16_to_float(const void *src, float *dst, int64_t n) {
  const uint16_t *h = src;
  for (int64_t i = 0; i < n; i++) dst[i] = tidei_f16_to_f32(h[i]);
}
static void f16_from_float(const float *src, void *dst, int64_t n) {
  uint16_t *h = dst;
  for (int64_t i = 0; i < n; i++) h[i] = tidei_f32_to_f16(src[i]);
}
static void bf16_to_float(const void *src, float *dst, int64_t n) {
  const uint16_t *h = src;
  for (int64_t i = 0; i < n; i++) dst[i] = tidei_bf16_to_f32(h[i]);
}
static void bf16_from_float(const float *src, void *dst, int64_t n) {
  uint16_t *h = dst;
  for (int64_t i = 0; i < n; i++) h[i] = tidei_f32_to_bf16(src[i]);
}

/* ---------------------------------------------------------------- Q8_0 */

/* x[j] = d * qs[j] */
static void q8_0_to_float(const void *src, float *dst, int64_t n) {
  const tidei_block_q8_0 *b = src;
  for (int64_t i = 0; i < n / QK8_0; i++) {
    float d = tidei_f16_to_f32(b[i].d);
    for (int j = 0; j < QK8_0; j++) dst[i * QK8_0 + j] = b[i].qs[j] * d;
  }
}

/* ggml's weight quantizer: d = amax/127, q = roundf(x / d). */
static void q8_0_from_float(const float *src, void *dst, int64_t n) {
  tidei_block_q8_0 *b = dst;
  for (int64_t i = 0; i < n / QK8_0; i++) {
    const float *x = src + i * QK8_0;
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = tidei_f32_to_f16(d);
    for (int j = 0; j < QK8_0; j++) b[i].qs[j] = (int8_t)roundf(x[j] * id);
  }
}

/* ---------------------------------------------------------------- Q4_0 */

/* x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8) */
static void q4_0_to_float(const void *src, float *dst, int64_t n) {
  const tidei_block_q4_0 *b = src;
  for (int64_t i = 0; i < n / QK4_0; i++) {
    float d = tidei_f16_to_f32(b[i].d);
    float *y = dst + i * QK4_0;
    for (int j = 0; j < QK4_0 / 2; j++) {
      y[j] = ((b[i].qs[j] & 0x0f) - 8) * d;
      y[j + QK4_0 / 2] = ((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

/* ggml's reference: d = (signed value of largest magnitude) / -8,
** q = min(15, trunc(x/d + 8.5)). */
static void q4_0_from_float(const float *src, void *dst, int64_t n) {
  tidei_block_q4_0 *b = dst;
  for (int64_t i = 0; i < n / QK4_0; i++) {
    const float *x = src + i * QK4_0;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK4_0; j++)
      if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = tidei_f32_to_f16(d);
    for (int j = 0; j < QK4_0 / 2; j++) {
      int8_t q0 = (int8_t)(x[j] * id + 8.5f), q1 = (int8_t)(x[j + 16] * id + 8.5f);
      if (q0 > 15) q0 = 15;
      if (q1 > 15) q1 = 15;
      b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
  }
}

/* ---------------------------------------------------------------- K-quants */

/* Nearest integer, ties to even (ggml's nearest_int does the same with a
** magic-number add for |v| < 2^22). */
static int nearest(float v) { return (int)lrintf(v); }

/* Elements 64c + l (l < 32) are low nibbles of qs[32c + l], 64c + 32 + l the
** high nibbles; x = d*sc_g*q - dmin*m_g with g the 32-element group. */
static void q4_K_to_float(const void *src, float *dst, int64_t n) {
  const tidei_block_q4_K *b = src;
  for (int64_t i = 0; i < n / QK_K; i++) {
    float d = tidei_f16_to_f32(b[i].d), dmin = tidei_f16_to_f32(b[i].dmin);
    const uint8_t *q = b[i].qs;
    float *y = dst + i * QK_K;
    for (int c = 0; c < QK_K / 64; c++) {
      uint8_t sc, m;
      tidei_q4_K_scale_min(2 * c, b[i].scales, &sc, &m);
      float d1 = d * sc, m1 = dmin * m;
      tidei_q4_K_scale_min(2 * c + 1, b[i].scales, &sc, &m);
      float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
    }
  }
}

/* Fits x ~ scale*L - min, L in 0..nmax, minimising the weighted squared
** error over a small grid of trial scales (ggml's make_qkx2_quants search
** with rmin = -1, rdelta = 0.1, nstep = 20). Returns scale; *neg_min = -min. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w,
                           uint8_t *L, float *neg_min) {
  uint8_t Laux[32];
  float min = x[0], max = x[0], sum_w = w[0], sum_x = w[0] * x[0];
  for (int i = 1; i < n; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    memset(L, 0, (size_t)n);
    *neg_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min), scale = 1 / iscale, best = 0;
  for (int i = 0; i < n; i++) {
    int l = nearest(iscale * (x[i] - min));
    L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
    float diff = scale * L[i] + min - x[i];
    best += w[i] * diff * diff;
  }
  for (int is = 0; is <= 20; is++) {
    iscale = (-1.0f + 0.1f * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; i++) {
      int l = nearest(iscale * (x[i] - min));
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      Laux[i] = (uint8_t)l;
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float err = 0;
      for (int i = 0; i < n; i++) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        err += w[i] * diff * diff;
      }
      if (err < best) {
        memcpy(L, Laux, (size_t)n);
        best = err;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *neg_min = -min;
  return scale;
}

static void q4_K_from_float(const float *src, void *dst, int64_t n) {
  tidei_block_q4_K *b = dst;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const float *x = src + i * QK_K;
    uint8_t L[QK_K];
    float scales[8], mins[8], w[32], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
      float av_x = sqrtf(sum_x2 / 32);
      for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
      scales[j] = fit_scale_min(32, 15, x + 32 * j, w, L + 32 * j, &mins[j]);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(b[i].scales, 0, sizeof b[i].scales);
    for (int j = 0; j < 8; j++) {
      int ls = nearest(inv_scale * scales[j]), lm = nearest(inv_min * mins[j]);
      ls = ls > 63 ? 63 : ls;
      lm = lm > 63 ? 63 : lm;
      if (j < 4) {
        b[i].scales[j] = (uint8_t)ls;
        b[i].scales[j + 4] = (uint8_t)lm;
      } else {
        b[i].scales[j + 4] = (uint8_t)((ls & 0x0f) | ((lm & 0x0f) << 4));
        b[i].scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
        b[i].scales[j] |= (uint8_t)((lm >> 4) << 6);
      }
    }
    b[i].d = tidei_f32_to_f16(max_scale / 63.f);
    b[i].dmin = tidei_f32_to_f16(max_min / 63.f);
    /* requantize against the scales as stored */
    for (int j = 0; j < 8; j++) {
      uint8_t sc, m;
      tidei_q4_K_scale_min(j, b[i].scales, &sc, &m);
      float d = tidei_f16_to_f32(b[i].d) * sc;
      if (d == 0.0f) continue;
      float dm = tidei_f16_to_f32(b[i].dmin) * m;
      for (int l = 0; l < 32; l++) {
        int q = nearest((x[32 * j + l] + dm) / d);
        L[32 * j + l] = (uint8_t)(q < 0 ? 0 : q > 15 ? 15 : q);
      }
    }
    for (int c = 0; c < 4; c++)
      for (int l = 0; l < 32; l++)
        b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

/* Q6_K: q = (4 low bits from ql) | (2 high bits from qh) - 32; in each 128
** half, element l + 32k (k = 0..3) takes ql[l + 32(k&1)] nibble k>>1 and
** qh[l] bits 2k..2k+1; x = d * scales[group of 16] * q. */
static void q6_K_to_float(const void *src, float *dst, int64_t n) {
  const tidei_block_q6_K *b = src;
  for (int64_t i = 0; i < n / QK_K; i++) {
    float d = tidei_f16_to_f32(b[i].d);
    const uint8_t *ql = b[i].ql, *qh = b[i].qh;
    const int8_t *sc = b[i].scales;
    float *y = dst + i * QK_K;
    for (int h = 0; h < 2; h++) {
      for (int l = 0; l < 32; l++) {
        int is = l / 16;
        int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

/* Symmetric fit x ~ scale*l, l in -nmax..nmax-1, weights x^2, trying 19
** scales around nmax/max (ggml's make_qx_quants, rmse_type 1). L gets
** l + nmax. */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; i++)
    if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
  if (amax < 1e-15f) {
    memset(L, 0, (size_t)n);
    return 0.0f;
  }
  float iscale = -nmax / max, sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; i++) {
    int l = nearest(iscale * x[i]);
    l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
    L[i] = (int8_t)(l + nmax);
    float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
  for (int is = -9; is <= 9; is++) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; i++) {
      int l = nearest(iscale * x[i]);
      l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
      float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; i++) {
        int l = nearest(iscale * x[i]);
        L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

static void q6_K_from_float(const float *src, void *dst, int64_t n) {
  tidei_block_q6_K *b = dst;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const float *x = src + i * QK_K;
    int8_t L[QK_K];
    float scales[QK_K / 16], max_scale = 0, max_abs = 0;
    for (int g = 0; g < QK_K / 16; g++) {
      scales[g] = fit_scale_sym(16, 32, x + 16 * g, L + 16 * g);
      if (fabsf(scales[g]) > max_abs) { max_abs = fabsf(scales[g]); max_scale = scales[g]; }
    }
    memset(&b[i], 0, sizeof b[i]);
    if (max_abs < 1e-15f) continue; /* all zero: d = 0 */
    float iscale = -128.f / max_scale;
    b[i].d = tidei_f32_to_f16(1 / iscale);
    for (int g = 0; g < QK_K / 16; g++) {
      int s = nearest(iscale * scales[g]);
      b[i].scales[g] = (int8_t)(s > 127 ? 127 : s);
    }
    for (int g = 0; g < QK_K / 16; g++) {
      float d = tidei_f16_to_f32(b[i].d) * b[i].scales[g];
      if (d == 0.0f) continue;
      for (int l = 0; l < 16; l++) {
        int q = nearest(x[16 * g + l] / d);
        L[16 * g + l] = (int8_t)((q < -32 ? -32 : q > 31 ? 31 : q) + 32);
      }
    }
    uint8_t *ql = b[i].ql, *qh = b[i].qh;
    for (int h = 0; h < QK_K; h += 128) {
      for (int l = 0; l < 32; l++) {
        const int8_t *q = L + h + l;
        ql[l] = (uint8_t)((q[0] & 0x0f) | ((q[64] & 0x0f) << 4));
        ql[l + 32] = (uint8_t)((q[32] & 0x0f) | ((q[96] & 0x0f) << 4));
        qh[l] = (uint8_t)((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) |
                          ((q[96] >> 4) << 6));
      }
      ql += 64;
      qh += 32;
    }
  }
}

/* Q8_K (activations of K-quant dots), as quantize_row_q8_K_ref:
** iscale = -127/max (max = signed value of largest magnitude),
** q = min(127, nearest(iscale*x)), d = 1/iscale, bsums = sums of 16. */
static void q8_K_from_float(const float *src, void *dst, int64_t n) {
  tidei_block_q8_K *b = dst;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const float *x = src + i * QK_K;
    float max = 0, amax = 0;
    for (int j = 0; j < QK_K; j++)
      if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
    if (amax == 0.0f) {
      memset(&b[i], 0, sizeof b[i]);
      continue;
    }
    float iscale = -127.f / max;
    for (int j = 0; j < QK_K; j++) {
      int v = nearest(iscale * x[j]);
      b[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
    }
    for (int g = 0; g < QK_K / 16; g++) {
      int sum = 0;
      for (int l = 0; l < 16; l++) sum += b[i].qs[16 * g + l];
      b[i].bsums[g] = (int16_t)sum;
    }
    b[i].d = 1 / iscale;
  }
}

/* x[j] = d * qs[j] */
static void q8_K_to_float(const void *src, float *dst, int64_t n) {
  const tidei_block_q8_K *b = src;
  for (int64_t i = 0; i < n / QK_K; i++)
    for (int j = 0; j < QK_K; j++) dst[i * QK_K + j] = b[i].d * b[i].qs[j];
}

/* ---------------------------------------------------------------- traits */

static const tidei_dtype_traits traits[TIDEI_N_DTYPES] = {
  [TIDE_F32] = { "f32", 1, 4, TIDE_F32, f32_to_float, f32_from_float },
  [TIDE_F16] = { "f16", 1, 2, TIDE_F16, f16_to_float, f16_from_float },
  [TIDE_BF16] = { "bf16", 1, 2, TIDE_BF16, bf16_to_float, bf16_from_float },
  [TIDE_Q8_0] = { "q8_0", QK8_0, sizeof(tidei_block_q8_0), TIDE_Q8_0,
                  q8_0_to_float, q8_0_from_float },
  [TIDE_Q4_0] = { "q4_0", QK4_0, sizeof(tidei_block_q4_0), TIDE_Q8_0,
                  q4_0_to_float, q4_0_from_float },
  [TIDE_Q4_K] = { "q4_K", QK_K, sizeof(tidei_block_q4_K), TIDE_Q8_K,
                  q4_K_to_float, q4_K_from_float },
  [TIDE_Q6_K] = { "q6_K", QK_K, sizeof(tidei_block_q6_K), TIDE_Q8_K,
                  q6_K_to_float, q6_K_from_float },
  [TIDE_Q8_K] = { "q8_K", QK_K, sizeof(tidei_block_q8_K), TIDE_Q8_K,
                  q8_K_to_float, q8_K_from_float },
};

_Static_assert(sizeof(tidei_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(tidei_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(tidei_block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(tidei_block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(tidei_block_q8_K) == 292, "q8_K block");

const tidei_dtype_traits *tidei_dtype(int dtype) {
  if (dtype < 0 || dtype >= TIDEI_N_DTYPES || !traits[dtype].name) return NULL;
  return &traits[dtype];
}

int64_t tide_dtype_block(int dtype) {
  const tidei_dtype_traits *t = tidei_dtype(dtype);
  return t ? t->blck : 0;
}

size_t tide_dtype_block_bytes(int dtype) {
  const tidei_dtype_traits *t = tidei_dtype(dtype);
  return t ? t->bytes : 0;
}

const char *tide_dtype_name(int dtype) {
  const tidei_dtype_traits *t = tidei_dtype(dtype);
  return t ? t->name : NULL;
}

size_t tide_dtype_row_size(int dtype, int64_t n) {
  const tidei_dtype_traits *t = tidei_dtype(dtype);
  if (!t || n < 0 || n % t->blck) return 0;
  return (size_t)(n / t->blck) * t->bytes;
}

int tide_dequantize(int dtype, const void *src, float *dst, int64_t n) {
  const tidei_dtype_traits *t = tidei_dtype(dtype);
  if (!t || n < 0 || n % t->blck || (n && (!src || !dst))) return TIDE_ERR_ARG;
  t->to_float(src, dst, n);
  return TIDE_OK;
}

int tide_quantize(int dtype, const float *src, void *dst, int64_t n) {
  const tidei_dtype_traits *t = tidei_dtype(dtype);
  if (!t || !t->from_float || n < 0 || n % t->blck || (n && (!src || !dst)))
    return TIDE_ERR_ARG;
  t->from_float(src, dst, n);
  return TIDE_OK;
}
