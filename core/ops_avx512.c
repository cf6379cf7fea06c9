/*
** ops_avx512.c -- AVX-512 (F, BW, VL, VNNI) kernels: fused dequantize-dot
** products and activation quantizers with the signatures and results of
** ops.c's scalar ones (up to float summation order; integer block sums are
** exact). Integer dots use VNNI's dpbusd on 256-bit lanes, one block each;
** float dots use 512-bit FMAs. K-quants reuse the AVX2 kernels.
** Layer: core. Built without -m flags through target attributes; chosen by
** tidei_kernels_best() only when cpuid reports avx512f/bw/vl/vnni.
*/
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "tensor.h"

/* Software prefetch distance in bytes of weights: the hardware prefetchers
** alone left the kernels at a third of their in-cache speed on rows
** streamed from DRAM. */
#define PF_DIST 2048
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

AVX512 static inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

AVX512 static inline float hsum512(__m512 v) {
  return hsum256(_mm256_add_ps(_mm512_castps512_ps256(v),
                               _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

AVX512 static inline float f16(uint16_t h) { return _cvtsh_ss(h); }

/* ---------------------------------------------------------------- floats */

/* out = sum_i w[i]*x[i] */
AVX512 static void dot_f32(int64_t n, const void *w, const void *x, float *out) {
  const float *a = w, *b = x;
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int k = 0; k < 4; k++) _mm_prefetch((const char *)(a + i + 16 * k) + PF_DIST, _MM_HINT_T0);
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16)
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  if (i < n) { /* masked tail */
    __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i), s1);
  }
  *out = hsum512(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* out = sum_i f32(w[i])*f32(x[i]) over f16 rows */
AVX512 static void dot_f16(int64_t n, const void *w, const void *x, float *out) {
  const uint16_t *a = w, *b = x;
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
#define LD(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    _mm_prefetch((const char *)(a + i) + PF_DIST, _MM_HINT_T0);
    _mm_prefetch((const char *)(a + i) + PF_DIST + 64, _MM_HINT_T0);
    s0 = _mm512_fmadd_ps(LD(a + i), LD(b + i), s0);
    s1 = _mm512_fmadd_ps(LD(a + i + 16), LD(b + i + 16), s1);
    s2 = _mm512_fmadd_ps(LD(a + i + 32), LD(b + i + 32), s2);
    s3 = _mm512_fmadd_ps(LD(a + i + 48), LD(b + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(LD(a + i), LD(b + i), s0);
#undef LD
  if (i < n) {
    __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, a + i)),
                         _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, b + i)), s1);
  }
  *out = hsum512(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* rows (tensor.h) for F16: dot_f16 on 4 rows at once against x already
** widened (f32 values of F16), each row with dot_f16's accumulators, order
** and tail, so only the weights are converted. */
AVX512 static void rows_f16(int64_t n, const void *w, size_t wrow, int64_t nr, const void *xq,
                            float *y) {
  const float *b = xq;
  int64_t r = 0;
  for (; r < nr; r += 4) {
    int nk = nr - r < 4 ? (int)(nr - r) : 4;
    const uint16_t *a[4];
    for (int k = 0; k < 4; k++) a[k] = (const uint16_t *)((const char *)w + (size_t)(r + (k < nk ? k : 0)) * wrow);
    __m512 s[4][4];
    _Pragma("GCC unroll 4")
    for (int k = 0; k < 4; k++)
      _Pragma("GCC unroll 4")
      for (int j = 0; j < 4; j++) s[k][j] = _mm512_setzero_ps();
#define LD(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
      __m512 x0 = _mm512_loadu_ps(b + i), x1 = _mm512_loadu_ps(b + i + 16);
      __m512 x2 = _mm512_loadu_ps(b + i + 32), x3 = _mm512_loadu_ps(b + i + 48);
      _Pragma("GCC unroll 4")
      for (int k = 0; k < 4; k++) {
        _mm_prefetch((const char *)(a[k] + i) + PF_DIST, _MM_HINT_T0);
        _mm_prefetch((const char *)(a[k] + i) + PF_DIST + 64, _MM_HINT_T0);
        s[k][0] = _mm512_fmadd_ps(LD(a[k] + i), x0, s[k][0]);
        s[k][1] = _mm512_fmadd_ps(LD(a[k] + i + 16), x1, s[k][1]);
        s[k][2] = _mm512_fmadd_ps(LD(a[k] + i + 32), x2, s[k][2]);
        s[k][3] = _mm512_fmadd_ps(LD(a[k] + i + 48), x3, s[k][3]);
      }
    }
    for (; i + 16 <= n; i += 16) {
      __m512 x0 = _mm512_loadu_ps(b + i);
      _Pragma("GCC unroll 4")
      for (int k = 0; k < 4; k++) s[k][0] = _mm512_fmadd_ps(LD(a[k] + i), x0, s[k][0]);
    }
#undef LD
    if (i < n) {
      __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
      __m512 x1 = _mm512_maskz_loadu_ps(m, b + i);
      _Pragma("GCC unroll 4")
      for (int k = 0; k < 4; k++)
        s[k][1] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a[k] + i)), x1, s[k][1]);
    }
    for (int k = 0; k < nk; k++)
      y[r + k] = hsum512(_mm512_add_ps(_mm512_add_ps(s[k][0], s[k][1]), _mm512_add_ps(s[k][2], s[k][3])));
  }
}

/* f32 -> the nearest F16 values, as f32 */
AVX512 static void round_f16(const float *src, void *dst, int64_t n) {
  float *y = dst;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(src + i), 0)));
  for (; i < n; i++) y[i] = f16(tidei_f32_to_f16(src[i]));
}

/* F16 -> f32 */
AVX512 static void widen_f16(const void *src, float *dst, int64_t n) {
  const uint16_t *h = src;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
  for (; i < n; i++) dst[i] = f16(h[i]);
}

/* out = sum_i f32(w[i])*f32(x[i]) over bf16 rows (bf16 -> f32 is a shift) */
AVX512 static void dot_bf16(int64_t n, const void *w, const void *x, float *out) {
  const uint16_t *a = w, *b = x;
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
#define CV(v) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16))
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm_prefetch((const char *)(a + i) + PF_DIST, _MM_HINT_T0);
    s0 = _mm512_fmadd_ps(CV(_mm256_loadu_si256((const __m256i *)(a + i))),
                         CV(_mm256_loadu_si256((const __m256i *)(b + i))), s0);
    s1 = _mm512_fmadd_ps(CV(_mm256_loadu_si256((const __m256i *)(a + i + 16))),
                         CV(_mm256_loadu_si256((const __m256i *)(b + i + 16))), s1);
  }
  for (; i < n; i += 16) {
    int64_t r = n - i < 16 ? n - i : 16;
    __mmask16 k = (__mmask16)((1u << r) - 1);
    s0 = _mm512_fmadd_ps(CV(_mm256_maskz_loadu_epi16(k, a + i)),
                         CV(_mm256_maskz_loadu_epi16(k, b + i)), s0);
  }
#undef CV
  *out = hsum512(_mm512_add_ps(s0, s1));
}

/* ---------------------------------------------------------------- Q8_0/Q4_0 */

/* f16 scales d of 8 consecutive blocks with a d at offset 0 and a stride of
** 18 bytes (Q4_0) or 34 bytes (Q8_0), as 8 floats: word permutes over the
** 128 (Q4_0) or 256 (Q8_0) bytes the 8 blocks start with. */
AVX512 static inline __m256 scales8_18(const void *p) {
  const __m512i idx = _mm512_zextsi128_si512(_mm_setr_epi16(0, 9, 18, 27, 36, 45, 54, 63));
  const char *c = p;
  __m512i h = _mm512_permutex2var_epi16(_mm512_loadu_si512(c), idx, _mm512_loadu_si512(c + 64));
  return _mm256_cvtph_ps(_mm512_castsi512_si128(h));
}

AVX512 static inline __m256 scales8_34(const void *p) {
  const __m512i lo = _mm512_zextsi128_si512(_mm_setr_epi16(0, 17, 34, 51, 0, 0, 0, 0));
  const __m512i hi = _mm512_zextsi128_si512(_mm_setr_epi16(0, 0, 0, 0, 4, 21, 38, 55));
  const char *c = p;
  __m512i h0 = _mm512_permutex2var_epi16(_mm512_loadu_si512(c), lo, _mm512_loadu_si512(c + 64));
  __m512i h1 = _mm512_permutex2var_epi16(_mm512_loadu_si512(c + 128), hi,
                                         _mm512_loadu_si512(c + 192));
  __m128i h = _mm_blend_epi16(_mm512_castsi512_si128(h0), _mm512_castsi512_si128(h1), 0xf0);
  return _mm256_cvtph_ps(h);
}

/* 8 int32 partial sums of the signed byte dot w.x of one block: dpbusd wants
** an unsigned left operand, so the sign of w moves onto x (|w| <= 128, x in
** -127..127: exact). */
AVX512 static inline __m256i dot_i8(__m256i w, __m256i x) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
}

/* 8 int32 partial sums of one Q4_0 block (qs) . one Q8_0 block (x). */
AVX512 static inline __m256i q4_dot(const uint8_t *qs, const int8_t *x, __m256i m4, __m256i e8,
                                    __m256i z) {
  __m128i t = _mm_loadu_si128((const __m128i *)qs);
  __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), m4);
  __m256i v = _mm256_loadu_si256((const __m256i *)x);
  return _mm256_dpbusd_epi32(_mm256_sub_epi32(z, _mm256_dpbusd_epi32(z, e8, v)), q, v);
}

/* out = sum_blocks (d_w*d_x) * sum_j qw[j]*qx[j] in llama.cpp's order (see
** ops.c): one 8-lane accumulator, acc = fma(d_w*d_x, lanes, acc) block by
** block, then hsum256. Lane k of a block = int sum of elements 4k..4k+3. */
AVX512 static void dot_q8_0(int64_t n, const void *w, const void *x, float *out) {
  const tidei_block_q8_0 *a = w, *b = x;
  int64_t nb = n / QK8_0, i = 0;
  __m256 acc = _mm256_setzero_ps();
#define BLK(j, scale) \
  acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(dot_i8(_mm256_loadu_si256((const __m256i *)a[j].qs), \
                                                          _mm256_loadu_si256((const __m256i *)b[j].qs))), acc)
#define SC(k) _mm256_permutevar8x32_ps(sc, _mm256_set1_epi32(k))
  for (; i + 8 <= nb; i += 8) {
    const char *pa = (const char *)(a + i);
    for (int k = 0; k < 5; k++) _mm_prefetch(pa + PF_DIST + 64 * k, _MM_HINT_T0);
    __m256 sc = _mm256_mul_ps(scales8_34(a + i), scales8_34(b + i));
    for (int k = 0; k < 8; k++) BLK(i + k, SC(k));
  }
  for (; i < nb; i++) BLK(i, _mm256_set1_ps(f16(a[i].d) * f16(b[i].d)));
#undef SC
#undef BLK
  *out = hsum256(acc);
}

/* [lo, hi] (no avx512dq: the f64x4 insert) */
AVX512 static inline __m512 pair_ps(__m256 lo, __m256 hi) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
}

/* rows (tensor.h) for Q8_0: dot_q8_0 on 8 rows at once, two rows per zmm
** (lanes 0..7 and 8..15 are each row's 8 vec_dot lanes), so the 4 fma
** chains overlap. The weights go unsigned (w + 128, dpbusd) and the
** accumulation starts at -128 * the activation's 4-byte sums. */
AVX512 static void rows_q8_0(int64_t n_in, const void *w, size_t wrow, int64_t nr,
                             const void *xq, float *y) {
  const tidei_block_q8_0 *b = xq;
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  int64_t nb = n_in / QK8_0, r = 0;
  size_t ahead = 8 * wrow * (8 * wrow >= 12288 ? 1 : 2);
  for (; r + 8 <= nr; r += 8) {
    const tidei_block_q8_0 *a[8];
    _Pragma("GCC unroll 8")
    for (int k = 0; k < 8; k++) a[k] = (const tidei_block_q8_0 *)((const char *)w + (size_t)(r + k) * wrow);
    __m512 acc[4];
    _Pragma("GCC unroll 4")
    for (int p = 0; p < 4; p++) acc[p] = _mm512_setzero_ps();
#define PAIR(lo, hi) _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
#define QS(q) _mm256_loadu_si256((const __m256i *)(q).qs)
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
      __m256 sx = scales8_34(b + i);
      __m512 sc[4];
      /* as rows_q4_0: the 8 rows' stretch a little ahead, 2176 bytes a step */
      const char *pf = (const char *)a[0] + ahead + (size_t)i * 8 * sizeof(tidei_block_q8_0);
      for (int l = 0; l < 34; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T0);
      _Pragma("GCC unroll 4")
      for (int p = 0; p < 4; p++) {
        sc[p] = pair_ps(_mm256_mul_ps(scales8_34(a[2 * p] + i), sx),
                        _mm256_mul_ps(scales8_34(a[2 * p + 1] + i), sx));
      }
      _Pragma("GCC unroll 8")
      for (int j = 0; j < 8; j++) {
        __m512i xb = _mm512_broadcast_i64x4(QS(b[i + j]));
        __m512i nc = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), flip, xb));
        const __m512i idx = _mm512_setr_epi32(j, j, j, j, j, j, j, j, 8 + j, 8 + j, 8 + j, 8 + j, 8 + j,
                                              8 + j, 8 + j, 8 + j);
        _Pragma("GCC unroll 4")
        for (int p = 0; p < 4; p++) {
          __m512i u = _mm512_xor_si512(PAIR(QS(a[2 * p][i + j]), QS(a[2 * p + 1][i + j])), flip);
          __m512 q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(nc, u, xb));
          acc[p] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, sc[p]), q, acc[p]);
        }
      }
    }
    for (; i < nb; i++) {
      __m512i xb = _mm512_broadcast_i64x4(QS(b[i]));
      __m512i nc = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), flip, xb));
      float dx = f16(b[i].d);
      for (int p = 0; p < 4; p++) {
        __m512i u = _mm512_xor_si512(PAIR(QS(a[2 * p][i]), QS(a[2 * p + 1][i])), flip);
        __m512 q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(nc, u, xb));
        __m512 sc = pair_ps(_mm256_set1_ps(f16(a[2 * p][i].d) * dx), _mm256_set1_ps(f16(a[2 * p + 1][i].d) * dx));
        acc[p] = _mm512_fmadd_ps(sc, q, acc[p]);
      }
    }
#undef QS
#undef PAIR
    for (int p = 0; p < 4; p++) {
      y[r + 2 * p] = hsum256(_mm512_castps512_ps256(acc[p]));
      y[r + 2 * p + 1] = hsum256(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[p]), 1)));
    }
  }
  for (; r < nr; r++) dot_q8_0(n_in, (const char *)w + (size_t)r * wrow, xq, &y[r]);
}

/* [sum(p0), ..., sum(p7)]: the int32 lane sums of 8 vectors. */
AVX512 static inline __m256i hsum8x8_epi32(__m256i p0, __m256i p1, __m256i p2, __m256i p3,
                                           __m256i p4, __m256i p5, __m256i p6, __m256i p7) {
  __m256i ab = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
  __m256i cd = _mm256_hadd_epi32(_mm256_hadd_epi32(p4, p5), _mm256_hadd_epi32(p6, p7));
  return _mm256_set_m128i(
    _mm_add_epi32(_mm256_castsi256_si128(cd), _mm256_extracti128_si256(cd, 1)),
    _mm_add_epi32(_mm256_castsi256_si128(ab), _mm256_extracti128_si256(ab, 1)));
}

/* out = sum_blocks (d_w*d_x) * (sum_j nib_j*qx[j] - 8 * sum_j qx[j]),
** accumulated exactly as the scalar reference: s = fma(block_sum,
** d_w*d_x, s), block by block (see ops_avx2.c: this order is what reproduces
** llama.cpp's Q4_0 outputs). The nibbles are unsigned, so dpbusd takes them
** as they are; the -8 term starts the accumulation (0 - dpbusd(8, qx)). */
AVX512 static void dot_q4_0(int64_t n, const void *w, const void *x, float *out) {
  const tidei_block_q4_0 *a = w;
  const tidei_block_q8_0 *b = x;
  const __m256i m4 = _mm256_set1_epi8(15), e8 = _mm256_set1_epi8(8), z = _mm256_setzero_si256();
  int64_t nb = n / QK4_0, i = 0;
  float s = 0, f[8], d[8];
#define P(j) q4_dot(a[i + j].qs, b[i + j].qs, m4, e8, z)
  for (; i + 8 <= nb; i += 8) {
    const char *pa = (const char *)(a + i);
    _mm_prefetch(pa + PF_DIST, _MM_HINT_T0);
    _mm_prefetch(pa + PF_DIST + 64, _MM_HINT_T0);
    _mm_prefetch(pa + PF_DIST + 128, _MM_HINT_T0);
    _mm256_storeu_ps(d, _mm256_mul_ps(scales8_18(a + i), scales8_34(b + i)));
    _mm256_storeu_ps(f, _mm256_cvtepi32_ps(hsum8x8_epi32(P(0), P(1), P(2), P(3), P(4), P(5), P(6), P(7))));
    for (int j = 0; j < 8; j++) s = fmaf(f[j], d[j], s);
  }
#undef P
  for (; i < nb; i++) {
    __m256i p = q4_dot(a[i].qs, b[i].qs, m4, e8, z);
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    h = _mm_hadd_epi32(h, h);
    h = _mm_hadd_epi32(h, h);
    s = fmaf((float)_mm_cvtsi128_si32(h), f16(a[i].d) * f16(b[i].d), s);
  }
  *out = s;
}

/* rows (tensor.h) for Q4_0: dot_q4_0 on 8 rows at once, lane r of a ymm is
** row r's float sum s, so each block is one fma for the 8 rows (s = fma(
** block_sum, d_w*d_x, s), vec_dot's order per row) and the 8 chains hide
** the fma latency. Low and high nibbles meet the activation's two halves in
** 128-bit dpbusd (no lane inserts); the -8 term is the activation block's,
** shared by the rows; the rows' scales come in one dword gather. */
AVX512 static void rows_q4_0(int64_t n_in, const void *w, size_t wrow, int64_t nr,
                             const void *xq, float *y) {
  const tidei_block_q8_0 *b = xq;
  const __m128i m4 = _mm_set1_epi8(15), e8 = _mm_set1_epi8(8), z = _mm_setzero_si128();
  const __m256i off = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                         _mm256_set1_epi32((int)wrow));
  int64_t nb = n_in / QK4_0, r = 0;
  size_t ahead = 8 * wrow * (8 * wrow >= 12288 ? 1 : 2);
  for (; r + 8 <= nr; r += 8) {
    const char *w0 = (const char *)w + (size_t)r * wrow;
    __m256 s = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
      const char *wi = w0 + (size_t)i * sizeof(tidei_block_q4_0);
      /* the 8 rows are one contiguous stretch of memory: fetch a later
      ** stretch (>= 12 KB ahead) as fast as this one is read (144 bytes a
      ** block); prefetching each row's own line ahead ran at 2/3 the speed */
      const char *pf = w0 + ahead + (size_t)i * 8 * sizeof(tidei_block_q4_0);
      _mm_prefetch(pf, _MM_HINT_T0);
      _mm_prefetch(pf + 64, _MM_HINT_T0);
      _mm_prefetch(pf + 128, _MM_HINT_T0);
      __m128i xl = _mm_loadu_si128((const __m128i *)b[i].qs);
      __m128i xh = _mm_loadu_si128((const __m128i *)(b[i].qs + 16));
      __m128i c = _mm_sub_epi32(z, _mm_dpbusd_epi32(_mm_dpbusd_epi32(z, e8, xl), e8, xh));
      __m128i p[8];
      _Pragma("GCC unroll 8")
      for (int k = 0; k < 8; k++) {
        __m128i t = _mm_loadu_si128((const __m128i *)(wi + (size_t)k * wrow + 2));
        p[k] = _mm_dpbusd_epi32(_mm_dpbusd_epi32(c, _mm_and_si128(t, m4), xl),
                                _mm_and_si128(_mm_srli_epi16(t, 4), m4), xh);
      }
      __m128i s03 = _mm_hadd_epi32(_mm_hadd_epi32(p[0], p[1]), _mm_hadd_epi32(p[2], p[3]));
      __m128i s47 = _mm_hadd_epi32(_mm_hadd_epi32(p[4], p[5]), _mm_hadd_epi32(p[6], p[7]));
      __m256i dw = _mm256_i32gather_epi32((const int *)wi, off, 1);
      __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_cvtepi32_epi16(dw)), _mm256_set1_ps(f16(b[i].d)));
      s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_set_m128i(s47, s03)), d, s);
    }
    _mm256_storeu_ps(y + r, s);
  }
  for (; r < nr; r++) dot_q4_0(n_in, (const char *)w + (size_t)r * wrow, xq, &y[r]);
}

/* ---------------------------------------------------------------- tiles */

/* Multi-token Q8_0/Q4_0 (tensor.h: pack, tile). A register tile is 4 weight
** rows x 4 tokens in the 16 lanes of a zmm, lane j = (row j/4, token j%4),
** two such tiles (8 tokens) at a time. For each group k of 4 elements of a
** block, one vpermt2d spreads dword k of the 4 rows over their lanes and one
** dpbusd multiplies them with dword k of the 4 tokens: the lane holds the
** pair's int sum of elements 4k..4k+3, as vec_dot's lane k. So Q8_0 keeps 8
** float accumulators per tile (vec_dot's 8 lanes, same fmas in the same
** order, same hsum tree) and Q4_0 sums the 8 dpbusd of a block in int32
** before its one fma, as vec_dot does.
**
** Panel: per group of 8 tokens, per block, per 4 tokens (h), 288 bytes: */
typedef struct {
  int32_t xs[8][4]; /* [k][t]: dword k (elements 4k..4k+3) of token t's block */
  int32_t nc[8][4]; /* -128 * the sum of those 4 bytes (Q8_0: weights + 128) */
  float dx[4];      /* token scales */
  int32_t c8[4];    /* -8 * the sum of the block (Q4_0: unsigned nibbles) */
} panel4;

/* dword t*8+k of two zmm of 4 token blocks -> [k][t] */
AVX512 static void pack_q8_0(int64_t n_in, const void *xq, size_t xrow, int64_t n_tok, void *xp) {
  static const tidei_block_q8_0 zero;
  const __m512i i0 = _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
  const __m512i i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(4));
  const __m512i ones = _mm512_set1_epi8(1);
  int64_t nb = n_in / QK8_0;
  panel4 *p = xp;
  for (int64_t g = 0; g < n_tok; g += 8)
    for (int64_t b = 0; b < nb; b++)
      for (int h = 0; h < 2; h++, p++) {
        const tidei_block_q8_0 *x[4];
        for (int t = 0; t < 4; t++) {
          int64_t tok = g + 4 * h + t;
          x[t] = tok < n_tok ? (const tidei_block_q8_0 *)((const char *)xq + (size_t)tok * xrow) + b : &zero;
        }
#define LD(t) _mm256_loadu_si256((const __m256i *)x[t]->qs)
        __m512i a = _mm512_inserti64x4(_mm512_castsi256_si512(LD(0)), LD(1), 1);
        __m512i c = _mm512_inserti64x4(_mm512_castsi256_si512(LD(2)), LD(3), 1);
#undef LD
        __m512i x0 = _mm512_permutex2var_epi32(a, i0, c), x1 = _mm512_permutex2var_epi32(a, i1, c);
        __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, x0);
        __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, x1);
        _mm512_storeu_si512(p->xs[0], x0);
        _mm512_storeu_si512(p->xs[4], x1);
        _mm512_storeu_si512(p->nc[0], _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s0, 7)));
        _mm512_storeu_si512(p->nc[4], _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s1, 7)));
        __m512i s = _mm512_add_epi32(s0, s1);
        __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
        _mm_storeu_si128((__m128i *)p->c8, _mm_sub_epi32(_mm_setzero_si128(), _mm_slli_epi32(s4, 3)));
        for (int t = 0; t < 4; t++) p->dx[t] = f16(x[t]->d);
      }
}

/* The 4 rows' f16 scales of block b (bytes bs apart in a row) as lanes j -> d[j/4]. */
AVX512 static inline __m512 row_scales(const char *const *w, int64_t b, size_t bs) {
  uint16_t d[4];
  _Pragma("GCC unroll 8")
  for (int r = 0; r < 4; r++) memcpy(&d[r], w[r] + (size_t)b * bs, 2);
  __m128 f = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)d));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                               _mm512_castps128_ps512(f));
}

#define BC4(p) _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p)))

/* Lanes j of a 16-lane tile result -> y[t*ldy + r], r = j/4 < nr, t = j%4 < nt. */
AVX512 static inline void tile_store(__m512 v, float *y, int64_t ldy, int nr, int nt) {
  float f[16];
  _mm512_storeu_ps(f, v);
  _Pragma("GCC unroll 8")
  for (int r = 0; r < nr; r++)
    _Pragma("GCC unroll 8")
    for (int t = 0; t < nt; t++) y[t * ldy + r] = f[4 * r + t];
}

/* 4 rows (w[0..3]) x 4*NQ tokens of panel p (nb blocks, stride 2 per block). */
AVX512 static inline __attribute__((always_inline)) void
q8_0_micro(const char *const *w, int64_t nb, const panel4 *p, const int NQ, float *y,
           int64_t ldy, int nr, int nt) {
  __m512 acc[2][8];
  _Pragma("GCC unroll 8")
  for (int h = 0; h < NQ; h++)
    _Pragma("GCC unroll 8")
    for (int k = 0; k < 8; k++) acc[h][k] = _mm512_setzero_ps();
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  for (int64_t b = 0; b < nb; b++, p += 2) {
    const tidei_block_q8_0 *r0 = (const tidei_block_q8_0 *)w[0] + b, *r1 = (const tidei_block_q8_0 *)w[1] + b;
    const tidei_block_q8_0 *r2 = (const tidei_block_q8_0 *)w[2] + b, *r3 = (const tidei_block_q8_0 *)w[3] + b;
    if (!(b & 1))
      _Pragma("GCC unroll 8")
      for (int r = 0; r < 4; r++) _mm_prefetch(w[r] + (size_t)b * 34 + PF_DIST, _MM_HINT_T0);
#define LD(q) _mm256_loadu_si256((const __m256i *)(q)->qs)
    __m512i A = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(LD(r0)), LD(r1), 1), flip);
    __m512i B = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(LD(r2)), LD(r3), 1), flip);
#undef LD
    __m512 dw = row_scales(w, b, sizeof(tidei_block_q8_0));
    __m512 sc[2];
    _Pragma("GCC unroll 8")
    for (int h = 0; h < NQ; h++) sc[h] = _mm512_mul_ps(dw, _mm512_broadcast_f32x4(_mm_loadu_ps(p[h].dx)));
    _Pragma("GCC unroll 8")
    for (int k = 0; k < 8; k++) {
      const __m512i idx = _mm512_setr_epi32(k, k, k, k, 8 + k, 8 + k, 8 + k, 8 + k, 16 + k, 16 + k,
                                            16 + k, 16 + k, 24 + k, 24 + k, 24 + k, 24 + k);
      __m512i u = _mm512_permutex2var_epi32(A, idx, B);
      _Pragma("GCC unroll 8")
      for (int h = 0; h < NQ; h++) {
        __m512i q = _mm512_dpbusd_epi32(BC4(p[h].nc[k]), u, BC4(p[h].xs[k]));
        acc[h][k] = _mm512_fmadd_ps(sc[h], _mm512_cvtepi32_ps(q), acc[h][k]);
      }
    }
  }
  _Pragma("GCC unroll 8")
  for (int h = 0; h < NQ; h++) {
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[h][0], acc[h][4]), _mm512_add_ps(acc[h][2], acc[h][6])),
                             _mm512_add_ps(_mm512_add_ps(acc[h][1], acc[h][5]), _mm512_add_ps(acc[h][3], acc[h][7])));
    int n = nt - 4 * h;
    if (n > 0) tile_store(s, y + 4 * h * ldy, ldy, nr, n > 4 ? 4 : n);
  }
}

AVX512 static inline __attribute__((always_inline)) void
q4_0_micro(const char *const *w, int64_t nb, const panel4 *p, const int NQ, float *y,
           int64_t ldy, int nr, int nt) {
  __m512 acc[2];
  _Pragma("GCC unroll 8")
  for (int h = 0; h < NQ; h++) acc[h] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(15);
  for (int64_t b = 0; b < nb; b++, p += 2) {
    if (!(b & 3))
      _Pragma("GCC unroll 8")
      for (int r = 0; r < 4; r++) _mm_prefetch(w[r] + (size_t)b * 18 + PF_DIST, _MM_HINT_T0);
#define LD(r) _mm_loadu_si128((const __m128i *)((const tidei_block_q4_0 *)w[r] + b)->qs)
    __m512i v = _mm512_inserti32x4(_mm512_castsi128_si512(LD(0)), LD(1), 1);
    v = _mm512_inserti32x4(_mm512_inserti32x4(v, LD(2), 2), LD(3), 3);
#undef LD
    __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    __m512 dw = row_scales(w, b, sizeof(tidei_block_q4_0));
    __m512i is[2];
    _Pragma("GCC unroll 8")
    for (int h = 0; h < NQ; h++) is[h] = BC4(p[h].c8);
    _Pragma("GCC unroll 8")
    for (int k = 0; k < 8; k++) {
      const int m = k & 3;
      const __m512i idx = _mm512_setr_epi32(m, m, m, m, 4 + m, 4 + m, 4 + m, 4 + m, 8 + m, 8 + m,
                                            8 + m, 8 + m, 12 + m, 12 + m, 12 + m, 12 + m);
      __m512i u = _mm512_permutexvar_epi32(idx, k < 4 ? lo : hi);
      _Pragma("GCC unroll 8")
      for (int h = 0; h < NQ; h++) is[h] = _mm512_dpbusd_epi32(is[h], u, BC4(p[h].xs[k]));
    }
    _Pragma("GCC unroll 8")
    for (int h = 0; h < NQ; h++)
      acc[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[h]),
                               _mm512_mul_ps(dw, _mm512_broadcast_f32x4(_mm_loadu_ps(p[h].dx))), acc[h]);
  }
  _Pragma("GCC unroll 8")
  for (int h = 0; h < NQ; h++) {
    int n = nt - 4 * h;
    if (n > 0) tile_store(acc[h], y + 4 * h * ldy, ldy, nr, n > 4 ? 4 : n);
  }
}

/* Rows in chunks of 16 (kept in cache while every group of 8 tokens passes),
** 4 rows x 8 tokens per micro-kernel call; missing rows repeat the last. */
#define TILE_DRIVER(name, micro)                                                          \
  AVX512 static void name(int64_t n_in, const void *w, size_t wrow, int64_t nr,          \
                          const void *xp, int64_t n_tok, float *y, int64_t ldy) {        \
    int64_t nb = n_in / 32;                                                               \
    const panel4 *p = xp;                                                                 \
    for (int64_t rc = 0; rc < nr; rc += 16) {                                             \
      int64_t re = rc + 16 < nr ? rc + 16 : nr;                                           \
      for (int64_t g = 0; g < n_tok; g += 8) {                                            \
        int nt = n_tok - g < 8 ? (int)(n_tok - g) : 8;                                    \
        const panel4 *pg = p + (g / 8) * nb * 2;                                          \
        for (int64_t r = rc; r < re; r += 4) {                                            \
          int n = re - r < 4 ? (int)(re - r) : 4;                                         \
          const char *wr[4];                                                              \
          for (int i = 0; i < 4; i++)                                                     \
            wr[i] = (const char *)w + (size_t)(r + (i < n ? i : n - 1)) * wrow;           \
          if (nt > 4) micro(wr, nb, pg, 2, y + g * ldy + r, ldy, n, nt);                  \
          else micro(wr, nb, pg, 1, y + g * ldy + r, ldy, n, nt);                         \
        }                                                                                 \
      }                                                                                   \
    }                                                                                     \
  }

TILE_DRIVER(tile_q8_0, q8_0_micro)
TILE_DRIVER(tile_q4_0, q4_0_micro)
#undef TILE_DRIVER
#undef BC4

/* ---------------------------------------------------------------- attention */

/* The 16 tree sums (tensor.h: kq) of v[0..15], lane t = tree(v[t]): each
** level adds the same lane pairs as _mm512_reduce_add_ps, four vectors at
** a time, and the last permute undoes the 4x4 transpose the levels leave. */
AVX512 static inline __m512 tree16x16(const __m512 *v) {
  __m512 u[8], w[4], z[2];
  _Pragma("GCC unroll 8")
  for (int i = 0; i < 8; i++) /* lanes j + j+8: [a 0..7, b 0..7] */
    u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xee));
  _Pragma("GCC unroll 4")
  for (int i = 0; i < 4; i++) /* j + j+4: quarter k = vector 4i+k */
    w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0xdd));
  _Pragma("GCC unroll 2")
  for (int i = 0; i < 2; i++) /* j + j+2 */
    z[i] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * i], w[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(w[2 * i], w[2 * i + 1], 0xee));
  __m512 r = _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], 0x88), _mm512_shuffle_ps(z[0], z[1], 0xdd));
  /* lane 4k + m holds vector 4m + k */
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r);
}

#define KV_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define KV_F16M(m, p) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p))
#define KV_F32(p) _mm512_loadu_ps(p)
#define KV_F32M(m, p) _mm512_maskz_loadu_ps(m, p)

/* kq (tensor.h) for F16 K: 16 positions' accumulators, then tree16x16. */
AVX512 static void kq_f16(int hd, const void *k, size_t rs, int n, const float *q, float *s) {
  __m512 v[16];
  __mmask16 m = (__mmask16)((1u << (hd & 15)) - 1);
  for (int t = 0; t < 16; t++) {
    const uint16_t *kr = (const uint16_t *)((const char *)k + (size_t)t * rs);
    __m512 a = _mm512_setzero_ps();
    if (t < n) {
      int i = 0;
      for (; i + 16 <= hd; i += 16) a = _mm512_fmadd_ps(KV_F16(kr + i), _mm512_loadu_ps(q + i), a);
      if (m) a = _mm512_fmadd_ps(KV_F16M(m, kr + i), _mm512_maskz_loadu_ps(m, q + i), a);
    }
    v[t] = a;
  }
  _mm512_mask_storeu_ps(s, (__mmask16)((1u << n) - 1), tree16x16(v));
}

/* kq for F32 K in ggml_vec_dot_f32's order (tensor.h) */
AVX512 static void kq_f32(int hd, const void *k, size_t rs, int n, const float *q, float *s) {
  int np = hd & ~63;
  for (int t = 0; t < n; t++) {
    const float *kr = (const float *)((const char *)k + (size_t)t * rs);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < np; i += 64) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(kr + i), _mm512_loadu_ps(q + i), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(kr + i + 16), _mm512_loadu_ps(q + i + 16), a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(kr + i + 32), _mm512_loadu_ps(q + i + 32), a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(kr + i + 48), _mm512_loadu_ps(q + i + 48), a3);
    }
    float sum = hsum512(_mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3)));
    for (int i = np; i < hd; i++) sum = fmaf(kr[i], q[i], sum);
    s[t] = sum;
  }
}

/* pv (tensor.h) for V elements of type T loaded by LD/LDM. */
#define PV_KERNEL(pv, T, LD, LDM)                                                           \
  AVX512 static void pv(int hd, const void *v, size_t rs, int n, const float *p, float *acc, \
                        int ldacc) {                                                        \
    __mmask16 m = (__mmask16)((1u << (hd & 15)) - 1);                                       \
    for (int t = 0; t < n; t++) {                                                           \
      const T *vr = (const T *)((const char *)v + (size_t)t * rs);                          \
      float *a = acc + (size_t)t * ldacc;                                                   \
      __m512 pt = _mm512_set1_ps(p[t]);                                                     \
      int i = 0;                                                                            \
      for (; i + 16 <= hd; i += 16)                                                         \
        _mm512_storeu_ps(a + i, _mm512_fmadd_ps(pt, LD(vr + i), _mm512_loadu_ps(a + i)));   \
      if (m)                                                                                \
        _mm512_mask_storeu_ps(a + i, m, _mm512_fmadd_ps(pt, LDM(m, vr + i),                 \
                                                        _mm512_maskz_loadu_ps(m, a + i)));  \
    }                                                                                       \
  }

PV_KERNEL(pv_f16, uint16_t, KV_F16, KV_F16M)
PV_KERNEL(pv_f32, float, KV_F32, KV_F32M)
#undef PV_KERNEL
#undef KV_F16
#undef KV_F16M
#undef KV_F32
#undef KV_F32M

/* ---------------------------------------------------------------- quant */

/* f32 -> f16, round to nearest even */
AVX512 static void quant_f16(const float *src, void *dst, int64_t n) {
  uint16_t *h = dst;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i *)(h + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), 0));
  for (; i < n; i++) h[i] = tidei_f32_to_f16(src[i]);
}

/* f32 -> bf16 as ggml_compute_fp32_to_bf16 (integer rounding, NaN quieted) */
AVX512 static void quant_bf16(const float *src, void *dst, int64_t n) {
  uint16_t *h = dst;
  int64_t i = 0;
  const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  for (; i + 16 <= n; i += 16) {
    __m512i u = _mm512_loadu_si512(src + i);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                 _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
    r = _mm512_srli_epi32(r, 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(64));
    _mm256_storeu_si256((__m256i *)(h + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < n; i++) h[i] = tidei_f32_to_bf16(src[i]);
}

/* llama.cpp's x86 quantize_row_q8_0: d = amax/127, q = nearest-even(x*127/amax) */
AVX512 static void quant_q8_0(const float *src, void *dst, int64_t n) {
  tidei_block_q8_0 *b = dst;
  for (int64_t i = 0; i < n / QK8_0; i++) {
    const float *x = src + i * QK8_0;
    __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    b[i].d = tidei_f32_to_f16(amax / 127.0f);
    __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m512i i0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512i i1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128((__m128i *)b[i].qs, _mm512_cvtsepi32_epi8(i0));
    _mm_storeu_si128((__m128i *)(b[i].qs + 16), _mm512_cvtsepi32_epi8(i1));
  }
}

/* ---------------------------------------------------------------- table */

static const struct tidei_kernels kernels_avx512 = {
  "avx512",
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
    [TIDE_BF16] = quant_bf16,
    [TIDE_Q8_0] = quant_q8_0,
    [TIDE_Q8_K] = tidei_quant_q8_K_scalar,
  },
  { [TIDE_Q8_0] = pack_q8_0, [TIDE_Q4_0] = pack_q8_0 },
  { [TIDE_Q8_0] = tile_q8_0, [TIDE_Q4_0] = tile_q4_0 },
  { [TIDE_F16] = rows_f16, [TIDE_Q8_0] = rows_q8_0, [TIDE_Q4_0] = rows_q4_0 },
  round_f16,
  widen_f16,
  { [TIDE_F32] = kq_f32, [TIDE_F16] = kq_f16 },
  { [TIDE_F32] = pv_f32, [TIDE_F16] = pv_f16 },
};

const struct tidei_kernels *tidei_kernels_avx512(void) { return &kernels_avx512; }
