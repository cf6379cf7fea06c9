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

/* out = sum_blocks (d_w*d_x) * sum_j qw[j]*qx[j]; 256-bit ops, one block each */
AVX512 static void dot_q8_0(int64_t n, const void *w, const void *x, float *out) {
  const tidei_block_q8_0 *a = w, *b = x;
  int64_t nb = n / QK8_0, i = 0;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
#define BLK(j, s, scale) \
  s = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(dot_i8(_mm256_loadu_si256((const __m256i *)a[j].qs), \
                                                        _mm256_loadu_si256((const __m256i *)b[j].qs))), s)
#define SC(k) _mm256_permutevar8x32_ps(sc, _mm256_set1_epi32(k))
  for (; i + 8 <= nb; i += 8) {
    const char *pa = (const char *)(a + i);
    for (int k = 0; k < 5; k++) _mm_prefetch(pa + PF_DIST + 64 * k, _MM_HINT_T0);
    __m256 sc = _mm256_mul_ps(scales8_34(a + i), scales8_34(b + i));
    BLK(i, s0, SC(0));
    BLK(i + 1, s1, SC(1));
    BLK(i + 2, s2, SC(2));
    BLK(i + 3, s3, SC(3));
    BLK(i + 4, s0, SC(4));
    BLK(i + 5, s1, SC(5));
    BLK(i + 6, s2, SC(6));
    BLK(i + 7, s3, SC(7));
  }
  for (; i < nb; i++) BLK(i, s0, _mm256_set1_ps(f16(a[i].d) * f16(b[i].d)));
#undef SC
#undef BLK
  *out = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
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
};

const struct tidei_kernels *tidei_kernels_avx512(void) { return &kernels_avx512; }
