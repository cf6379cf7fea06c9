/*
** ops_avx2.c -- AVX2+FMA+F16C kernels: fused dequantize-dot products and
** the activation quantizers, same signatures and results as ops.c's scalar
** ones (up to float summation order; integer block sums are exact).
** Layer: core. Every function carries a target attribute, so the file builds
** without -m flags; tidei_kernels_best() uses the table only after cpuid.
*/
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "tensor.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* Software prefetch distance in bytes of weights (see ops_avx512.c). */
#define PF_DIST 2048
#define PF(p) _mm_prefetch((const char *)(p) + PF_DIST, _MM_HINT_T0)

AVX2 static inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

AVX2 static inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

AVX2 static inline float f16(uint16_t h) { return _cvtsh_ss(h); }

/* ---------------------------------------------------------------- floats */

/* out = sum_i w[i]*x[i] */
AVX2 static void dot_f32(int64_t n, const void *w, const void *x, float *out) {
  const float *a = w, *b = x;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    PF(a + i);
    PF(a + i + 16);
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; i++) s += a[i] * b[i];
  *out = s;
}

/* out = sum_i f32(w[i])*f32(x[i]) over f16 rows */
AVX2 static void dot_f16(int64_t n, const void *w, const void *x, float *out) {
  const uint16_t *a = w, *b = x;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
#define LD(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    PF(a + i);
    s0 = _mm256_fmadd_ps(LD(a + i), LD(b + i), s0);
    s1 = _mm256_fmadd_ps(LD(a + i + 8), LD(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(LD(a + i + 16), LD(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(LD(a + i + 24), LD(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(LD(a + i), LD(b + i), s0);
#undef LD
  float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; i++) s += f16(a[i]) * f16(b[i]);
  *out = s;
}

/* out = sum_i f32(w[i])*f32(x[i]) over bf16 rows (bf16 -> f32 is a shift) */
AVX2 static void dot_bf16(int64_t n, const void *w, const void *x, float *out) {
  const uint16_t *a = w, *b = x;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
#define LD(p) _mm256_castsi256_ps(_mm256_slli_epi32( \
    _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    if (!(i & 31)) PF(a + i);
    s0 = _mm256_fmadd_ps(LD(a + i), LD(b + i), s0);
    s1 = _mm256_fmadd_ps(LD(a + i + 8), LD(b + i + 8), s1);
  }
#undef LD
  float s = hsum_ps(_mm256_add_ps(s0, s1));
  for (; i < n; i++) s += tidei_bf16_to_f32(a[i]) * tidei_bf16_to_f32(b[i]);
  *out = s;
}

/* ---------------------------------------------------------------- Q8_0/Q4_0 */

/* 8 int32 partial sums of the signed byte dot a.b: maddubs needs an
** unsigned left operand, so move a's sign onto b (|a| <= 128, b in
** -127..127: no int16 saturation). */
AVX2 static inline __m256i dot_i8(__m256i a, __m256i b) {
  __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* out = sum_blocks (d_w*d_x) * sum_j qw[j]*qx[j] in llama.cpp's order (see
** ops.c): acc = fma(d_w*d_x, lanes, acc) block by block, then hsum_ps. */
AVX2 static void dot_q8_0(int64_t n, const void *w, const void *x, float *out) {
  const tidei_block_q8_0 *a = w, *b = x;
  int64_t nb = n / QK8_0;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; i++) {
    if (!(i & 1)) PF(a + i);
    __m256i p = dot_i8(_mm256_loadu_si256((const __m256i *)a[i].qs),
                       _mm256_loadu_si256((const __m256i *)b[i].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(a[i].d) * f16(b[i].d)), _mm256_cvtepi32_ps(p), acc);
  }
  *out = hsum_ps(acc);
}

/* 32 signed weights of a Q4_0 block: low nibbles (elements 0..15) in the
** low lane, high nibbles (16..31) in the high lane, minus 8. */
AVX2 static inline __m256i q4_0_bytes(const uint8_t *qs) {
  __m128i t = _mm_loadu_si128((const __m128i *)qs);
  __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(15));
  return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

/* [sum(p0), ..., sum(p7)]: the int32 lane sums of 8 vectors. */
AVX2 static inline __m256i hsum8x8_epi32(__m256i p0, __m256i p1, __m256i p2, __m256i p3,
                                         __m256i p4, __m256i p5, __m256i p6, __m256i p7) {
  __m256i ab = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
  __m256i cd = _mm256_hadd_epi32(_mm256_hadd_epi32(p4, p5), _mm256_hadd_epi32(p6, p7));
  return _mm256_set_m128i(
    _mm_add_epi32(_mm256_castsi256_si128(cd), _mm256_extracti128_si256(cd, 1)),
    _mm_add_epi32(_mm256_castsi256_si128(ab), _mm256_extracti128_si256(ab, 1)));
}

/* out = sum_blocks (d_w*d_x) * sum_j (nib_j - 8)*qx[j], accumulated exactly
** as the scalar reference: s = fma(block_sum, d_w*d_x, s), block by block.
** The order matters: llama.cpp's outputs for Q4_0 models are reproduced
** only by this order (a different float order flips Q8_0 roundings of the
** next activations). The integer work runs 8 blocks at a time. */
AVX2 static void dot_q4_0(int64_t n, const void *w, const void *x, float *out) {
  const tidei_block_q4_0 *a = w;
  const tidei_block_q8_0 *b = x;
  int64_t nb = n / QK4_0, i = 0;
  float s = 0, f[8], d[8];
#define P(j) dot_i8(q4_0_bytes(a[i + j].qs), _mm256_loadu_si256((const __m256i *)b[i + j].qs))
  for (; i + 8 <= nb; i += 8) {
    PF(a + i);
    PF((const char *)(a + i) + 64);
    PF((const char *)(a + i) + 128);
    _mm256_storeu_ps(f, _mm256_cvtepi32_ps(hsum8x8_epi32(P(0), P(1), P(2), P(3), P(4), P(5), P(6), P(7))));
    for (int j = 0; j < 8; j++) d[j] = f16(a[i + j].d) * f16(b[i + j].d);
    for (int j = 0; j < 8; j++) s = fmaf(f[j], d[j], s);
  }
#undef P
  for (; i < nb; i++) {
    __m256i p = dot_i8(q4_0_bytes(a[i].qs), _mm256_loadu_si256((const __m256i *)b[i].qs));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    h = _mm_hadd_epi32(h, h);
    h = _mm_hadd_epi32(h, h);
    s = fmaf((float)_mm_cvtsi128_si32(h), f16(a[i].d) * f16(b[i].d), s);
  }
  *out = s;
}

/* ---------------------------------------------------------------- K-quants */

/* out = sum_superblocks d_x * (d * sum_g sc_g * sum_l q*qx
**                              - dmin * sum_g m_g * sum_l qx), g of 32 */
AVX2 void tidei_vec_dot_q4_K_avx2(int64_t n, const void *w, const void *x, float *out) {
  const tidei_block_q4_K *a = w;
  const tidei_block_q8_K *b = x;
  __m256 acc = _mm256_setzero_ps();
  float mins_sum = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    PF(a + i);
    PF((const char *)(a + i) + 64);
    PF((const char *)(a + i) + 128);
    uint8_t sc[8], m[8];
    for (int g = 0; g < 8; g++) tidei_q4_K_scale_min(g, a[i].scales, &sc[g], &m[g]);
    /* mins: bsums (16 sums of 16) . m of their group of 32 */
    int16_t m16[16];
    for (int k = 0; k < 16; k++) m16[k] = m[k / 2];
    __m256i pm = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b[i].bsums),
                                   _mm256_loadu_si256((const __m256i *)m16));
    __m256i isum = _mm256_setzero_si256();
    const uint8_t *q = a[i].qs;
    const int8_t *qx = b[i].qs;
    for (int c = 0; c < 4; c++) {
      __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * c));
      __m256i lo = _mm256_and_si256(v, _mm256_set1_epi8(15));
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(15));
      __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(qx + 64 * c)));
      __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(qx + 64 * c + 32)));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * c])));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * c + 1])));
    }
    float d = f16(a[i].d) * b[i].d, dmin = f16(a[i].dmin) * b[i].d;
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    mins_sum += dmin * (float)hsum_epi32(pm);
  }
  *out = hsum_ps(acc) - mins_sum;
}

/* out = sum_superblocks d*d_x * (sum_g sc_g * sum_l q*qx - 32 * sum_g sc_g *
** bsum_g), q = the unsigned 6-bit value (q - 32 is the weight), g of 16 */
AVX2 void tidei_vec_dot_q6_K_avx2(int64_t n, const void *w, const void *x, float *out) {
  const tidei_block_q6_K *a = w;
  const tidei_block_q8_K *b = x;
  const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3 << 4);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; i++) {
    PF(a + i);
    PF((const char *)(a + i) + 64);
    PF((const char *)(a + i) + 128);
    PF((const char *)(a + i) + 192);
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a[i].scales));
    __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)b[i].bsums));
    __m256i isum = _mm256_setzero_si256();
    const uint8_t *ql = a[i].ql, *qh = a[i].qh;
    const int8_t *qx = b[i].qs, *sc = a[i].scales;
    for (int h = 0; h < 2; h++, ql += 64, qh += 32, qx += 128, sc += 8) {
      __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
      __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
      __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2));
      q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m2));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                             _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2));
      for (int k = 0; k < 4; k++) {
        __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(qx + 32 * k)));
        __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, s));
      }
    }
    isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(corr, 5));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(a[i].d) * b[i].d), _mm256_cvtepi32_ps(isum), acc);
  }
  *out = hsum_ps(acc);
}

/* ---------------------------------------------------------------- tiles */

/* Multi-token Q8_0/Q4_0 (tensor.h: pack, tile): one weight row x 8 tokens,
** lane t = token t. For each group k of 4 elements, a broadcast of the
** row's dword k meets dword k of the 8 tokens, so lane t holds the pair's
** int sum of elements 4k..4k+3, vec_dot's lane k: Q8_0 keeps vec_dot's 8
** accumulators (same fmas, same order, same hsum tree); Q4_0 sums a block
** in int before its one fma, as vec_dot does.
** Panel: per group of 8 tokens, per block, 320 bytes: */
typedef struct {
  int32_t xs[8][8]; /* [k][t]: dword k (elements 4k..4k+3) of token t's block */
  float dx[8];      /* token scales */
  int32_t c8[8];    /* -8 * the sum of the block (Q4_0: unsigned nibbles) */
} panel8;

AVX2 static void pack_q8_0(int64_t n_in, const void *xq, size_t xrow, int64_t n_tok, void *xp) {
  int64_t nb = n_in / QK8_0;
  panel8 *p = xp;
  for (int64_t g = 0; g < n_tok; g += 8)
    for (int64_t b = 0; b < nb; b++, p++)
      for (int t = 0; t < 8; t++) {
        int32_t sum = 0;
        if (g + t >= n_tok) {
          for (int k = 0; k < 8; k++) p->xs[k][t] = 0;
          p->dx[t] = 0;
        } else {
          const tidei_block_q8_0 *x = (const tidei_block_q8_0 *)((const char *)xq + (size_t)(g + t) * xrow) + b;
          for (int k = 0; k < 8; k++) memcpy(&p->xs[k][t], x->qs + 4 * k, 4);
          for (int j = 0; j < QK8_0; j++) sum += x->qs[j];
          p->dx[t] = f16(x->d);
        }
        p->c8[t] = -8 * sum;
      }
}

/* Lanes t < nt of v -> y[t*ldy]. */
AVX2 static inline void col_store(__m256 v, float *y, int64_t ldy, int nt) {
  float f[8];
  _mm256_storeu_ps(f, v);
  for (int t = 0; t < nt; t++) y[t * ldy] = f[t];
}

#define LDX(k) _mm256_loadu_si256((const __m256i *)p->xs[k])

AVX2 static void q8_0_micro(const tidei_block_q8_0 *a, int64_t nb, const panel8 *p, float *y,
                            int64_t ldy, int nt) {
  __m256 acc[8];
  _Pragma("GCC unroll 8")
  for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b++, p++) {
    if (!(b & 1)) PF(a + b);
    __m256 sc = _mm256_mul_ps(_mm256_set1_ps(f16(a[b].d)), _mm256_loadu_ps(p->dx));
    _Pragma("GCC unroll 8")
    for (int k = 0; k < 8; k++) {
      int32_t wk;
      memcpy(&wk, a[b].qs + 4 * k, 4);
      __m256i u = _mm256_set1_epi32(wk);
      __m256i q = _mm256_maddubs_epi16(_mm256_sign_epi8(u, u), _mm256_sign_epi8(LDX(k), u));
      acc[k] = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(_mm256_madd_epi16(q, _mm256_set1_epi16(1))), acc[k]);
    }
  }
  col_store(_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6])),
                          _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]))),
            y, ldy, nt);
}

/* Nibble products are at most 15*128*2 per int16 lane: 8 of them still fit. */
AVX2 static void q4_0_micro(const tidei_block_q4_0 *a, int64_t nb, const panel8 *p, float *y,
                            int64_t ldy, int nt) {
  const __m256i m4 = _mm256_set1_epi8(15);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b++, p++) {
    if (!(b & 3)) PF(a + b);
    __m256i s16 = _mm256_setzero_si256();
    _Pragma("GCC unroll 8")
    for (int k = 0; k < 8; k++) {
      int32_t wk;
      memcpy(&wk, a[b].qs + 4 * (k & 3), 4);
      __m256i u = _mm256_set1_epi32(wk);
      u = k < 4 ? _mm256_and_si256(u, m4) : _mm256_and_si256(_mm256_srli_epi16(u, 4), m4);
      s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(u, LDX(k)));
    }
    __m256i is = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)p->c8),
                                  _mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is),
                          _mm256_mul_ps(_mm256_set1_ps(f16(a[b].d)), _mm256_loadu_ps(p->dx)), acc);
  }
  col_store(acc, y, ldy, nt);
}
#undef LDX

/* Rows in chunks of 16 (kept in cache while every group of 8 tokens passes). */
#define TILE_DRIVER(name, micro, blk)                                                     \
  AVX2 static void name(int64_t n_in, const void *w, size_t wrow, int64_t nr,            \
                        const void *xp, int64_t n_tok, float *y, int64_t ldy) {          \
    int64_t nb = n_in / 32;                                                               \
    for (int64_t rc = 0; rc < nr; rc += 16)                                               \
      for (int64_t g = 0; g < n_tok; g += 8)                                              \
        for (int64_t r = rc; r < rc + 16 && r < nr; r++)                                  \
          micro((const blk *)((const char *)w + (size_t)r * wrow), nb,                    \
                (const panel8 *)xp + (g / 8) * nb, y + g * ldy + r, ldy,                  \
                n_tok - g < 8 ? (int)(n_tok - g) : 8);                                    \
  }

TILE_DRIVER(tile_q8_0, q8_0_micro, tidei_block_q8_0)
TILE_DRIVER(tile_q4_0, q4_0_micro, tidei_block_q4_0)
#undef TILE_DRIVER

/* ---------------------------------------------------------------- attention */

/* kq (F16) and pv (tensor.h): the 16 lanes of llama.cpp's accumulator are
** two ymm (elements i mod 16 < 8, >= 8); a tail past the last 16 goes lane
** by lane with fmaf, then the tree (j, j+8), (j, j+4), (j, j+2), (j, j+1).
** F32 K takes the scalar kernel (ggml_vec_dot_f32's order). */
AVX2 static void kq_f16(int hd, const void *k, size_t rs, int n, const float *q, float *s) {
#define LD(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
  for (int t = 0; t < n; t++) {
    const uint16_t *kr = (const uint16_t *)((const char *)k + (size_t)t * rs);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 16 <= hd; i += 16) {
      a0 = _mm256_fmadd_ps(LD(kr + i), _mm256_loadu_ps(q + i), a0);
      a1 = _mm256_fmadd_ps(LD(kr + i + 8), _mm256_loadu_ps(q + i + 8), a1);
    }
#undef LD
    if (i < hd) {
      float l[16];
      _mm256_storeu_ps(l, a0);
      _mm256_storeu_ps(l + 8, a1);
      for (int j = 0; i + j < hd; j++) l[j] = fmaf(f16(kr[i + j]), q[i + j], l[j]);
      a0 = _mm256_loadu_ps(l);
      a1 = _mm256_loadu_ps(l + 8);
    }
    s[t] = hsum_ps(_mm256_add_ps(a0, a1));
  }
}

#define CV_F32(x) (x)
#define LD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define PV_KERNEL(pv, T, LD, CV)                                                           \
  AVX2 static void pv(int hd, const void *v, size_t rs, int n, const float *p, float *acc, \
                      int ldacc) {                                                         \
    for (int t = 0; t < n; t++) {                                                          \
      const T *vr = (const T *)((const char *)v + (size_t)t * rs);                         \
      float *a = acc + (size_t)t * ldacc;                                                  \
      __m256 pt = _mm256_set1_ps(p[t]);                                                    \
      int i = 0;                                                                           \
      for (; i + 8 <= hd; i += 8)                                                          \
        _mm256_storeu_ps(a + i, _mm256_fmadd_ps(pt, LD(vr + i), _mm256_loadu_ps(a + i)));  \
      for (; i < hd; i++) a[i] = fmaf(p[t], CV(vr[i]), a[i]);                              \
    }                                                                                      \
  }

PV_KERNEL(pv_f16, uint16_t, LD_F16, f16)
PV_KERNEL(pv_f32, float, _mm256_loadu_ps, CV_F32)
#undef PV_KERNEL
#undef LD_F16
#undef CV_F32

/* ---------------------------------------------------------------- quant */

/* f32 -> f16, round to nearest even (VCVTPS2PH imm 0) */
AVX2 static void quant_f16(const float *src, void *dst, int64_t n) {
  uint16_t *h = dst;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), 0));
  for (; i < n; i++) h[i] = tidei_f32_to_f16(src[i]);
}

/* f32 -> the nearest F16 values, as f32 */
AVX2 static void round_f16(const float *src, void *dst, int64_t n) {
  float *y = dst;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(src + i), 0)));
  for (; i < n; i++) y[i] = f16(tidei_f32_to_f16(src[i]));
}

/* F16 -> f32 */
AVX2 static void widen_f16(const void *src, float *dst, int64_t n) {
  const uint16_t *h = src;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
  for (; i < n; i++) dst[i] = f16(h[i]);
}

/* llama.cpp's x86 quantize_row_q8_0: d = amax/127, q = nearest-even(x*127/amax) */
AVX2 static void quant_q8_0(const float *src, void *dst, int64_t n) {
  tidei_block_q8_0 *b = dst;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t i = 0; i < n / QK8_0; i++) {
    const float *x = src + i * QK8_0;
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                              _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mx, 1), _mm256_castps256_ps128(mx));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    b[i].d = tidei_f32_to_f16(amax / 127.0f);
    __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    /* packs interleave 128-bit lanes; the permute restores element order */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)b[i].qs, p);
  }
}

/* ---------------------------------------------------------------- table */

static const struct tidei_kernels kernels_avx2 = {
  "avx2",
  {
    [TIDE_F32] = dot_f32,
    [TIDE_F16] = dot_f16,
    [TIDE_BF16] = dot_bf16,
    [TIDE_Q8_0] = dot_q8_0,
    [TIDE_Q4_0] = dot_q4_0,
    [TIDE_Q4_K] = tidei_vec_dot_q4_K_avx2,
    [TIDE_Q6_K] = tidei_vec_dot_q6_K_avx2,
  },
  {
    [TIDE_F32] = tidei_quant_f32_scalar,
    [TIDE_F16] = quant_f16,
    [TIDE_BF16] = tidei_quant_bf16_scalar,
    [TIDE_Q8_0] = quant_q8_0,
    [TIDE_Q8_K] = tidei_quant_q8_K_scalar,
  },
  { [TIDE_Q8_0] = pack_q8_0, [TIDE_Q4_0] = pack_q8_0 },
  { [TIDE_Q8_0] = tile_q8_0, [TIDE_Q4_0] = tile_q4_0 },
  { 0 }, /* rows: vec_dot per row */
  round_f16,
  widen_f16,
  { [TIDE_F32] = tidei_kq_f32_scalar, [TIDE_F16] = kq_f16 },
  { [TIDE_F32] = pv_f32, [TIDE_F16] = pv_f16 },
};

const struct tidei_kernels *tidei_kernels_avx2(void) { return &kernels_avx2; }
