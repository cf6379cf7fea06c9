/*
** test_tensor.c -- dtypes, conversions, (de)quantizers, dot kernels and
** tidei_matmul against hand-computed values and the scalar reference.
** Layer: tests (C unit tests of core/tensor.c, ops.c, ops_avx2.c,
** ops_avx512.c). Random data comes from a fixed-seed xorshift.
*/
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static void rng_seed(uint64_t s) { rng_state = s ? s : 1; }
static uint32_t rng_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(float lo, float hi) { /* [lo, hi) */
  return lo + (hi - lo) * (float)(rng_u32() >> 8) * (1.0f / 16777216.0f);
}

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void *xalloc(size_t n) { /* 64-byte aligned, as tidei_matmul's scratch */
  void *p = aligned_alloc(64, (n + 63) / 64 * 64);
  if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
  return p;
}

/* The fast tables this CPU can run (the scalar one excluded). */
static int fast_tables(const struct tidei_kernels **out) {
  int n = 0;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c") && tidei_kernels_avx2())
    out[n++] = tidei_kernels_avx2();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
      tidei_kernels_avx512())
    out[n++] = tidei_kernels_avx512();
  return n;
}

static const int weight_dtypes[] = { TIDE_F32, TIDE_F16, TIDE_BF16, TIDE_Q8_0,
                                     TIDE_Q4_0, TIDE_Q4_K, TIDE_Q6_K };
#define N_WEIGHT_DTYPES ((int)(sizeof weight_dtypes / sizeof weight_dtypes[0]))

/* ---------------------------------------------------------------- traits */

static void test_dtype_traits(void) {
  CHECK(strcmp(tide_dtype_name(TIDE_F32), "f32") == 0);
  CHECK(strcmp(tide_dtype_name(TIDE_F16), "f16") == 0);
  CHECK(strcmp(tide_dtype_name(TIDE_BF16), "bf16") == 0);
  CHECK(strcmp(tide_dtype_name(TIDE_Q8_0), "q8_0") == 0);
  CHECK(strcmp(tide_dtype_name(TIDE_Q4_0), "q4_0") == 0);
  CHECK(strcmp(tide_dtype_name(TIDE_Q4_K), "q4_K") == 0);
  CHECK(strcmp(tide_dtype_name(TIDE_Q6_K), "q6_K") == 0);
  CHECK(strcmp(tide_dtype_name(TIDE_Q8_K), "q8_K") == 0);
  CHECK(tide_dtype_name(3) == NULL && tide_dtype_name(-1) == NULL && tide_dtype_name(99) == NULL);
  CHECK(tide_dtype_block(TIDE_Q4_0) == 32 && tide_dtype_block_bytes(TIDE_Q4_0) == 18);
  CHECK(tide_dtype_block(TIDE_Q8_0) == 32 && tide_dtype_block_bytes(TIDE_Q8_0) == 34);
  CHECK(tide_dtype_block(TIDE_Q4_K) == 256 && tide_dtype_block_bytes(TIDE_Q4_K) == 144);
  CHECK(tide_dtype_block(TIDE_Q6_K) == 256 && tide_dtype_block_bytes(TIDE_Q6_K) == 210);
  CHECK(tide_dtype_block(TIDE_Q8_K) == 256 && tide_dtype_block_bytes(TIDE_Q8_K) == 292);
  CHECK(tide_dtype_block(TIDE_F16) == 1 && tide_dtype_block_bytes(TIDE_BF16) == 2);
  CHECK(tide_dtype_block(12345) == 0 && tide_dtype_block_bytes(4) == 0);
  CHECK(tide_dtype_row_size(TIDE_Q4_0, 4096) == 128 * 18);
  CHECK(tide_dtype_row_size(TIDE_F32, 7) == 28);
  CHECK(tide_dtype_row_size(TIDE_Q4_0, 33) == 0);
  CHECK(tide_dtype_row_size(TIDE_Q6_K, 512) == 420);
  CHECK(tide_dtype_row_size(5, 32) == 0);
  CHECK(tidei_dtype(TIDE_F16)->vec_dtype == TIDE_F16);
  CHECK(tidei_dtype(TIDE_BF16)->vec_dtype == TIDE_BF16);
  CHECK(tidei_dtype(TIDE_F32)->vec_dtype == TIDE_F32);
  CHECK(tidei_dtype(TIDE_Q4_0)->vec_dtype == TIDE_Q8_0);
  CHECK(tidei_dtype(TIDE_Q8_0)->vec_dtype == TIDE_Q8_0);
  CHECK(tidei_dtype(TIDE_Q4_K)->vec_dtype == TIDE_Q8_K);
  CHECK(tidei_dtype(TIDE_Q6_K)->vec_dtype == TIDE_Q8_K);
  float f[32];
  unsigned char buf[64];
  CHECK(tide_dequantize(7, buf, f, 32) == TIDE_ERR_ARG);
  CHECK(tide_dequantize(TIDE_Q8_0, buf, f, 31) == TIDE_ERR_ARG);
  CHECK(tide_quantize(TIDE_Q4_0, f, buf, 16) == TIDE_ERR_ARG);
  CHECK(tide_quantize(40, f, buf, 32) == TIDE_ERR_ARG);
  CHECK(tide_dequantize(TIDE_Q8_0, NULL, NULL, 0) == TIDE_OK);
}

static void test_kernel_tables_complete(void) {
  const struct tidei_kernels *t[4];
  int n = fast_tables(t);
  t[n++] = tidei_kernels_scalar();
  t[n++] = tidei_kernels_best();
  for (int k = 0; k < n; k++) {
    for (int i = 0; i < N_WEIGHT_DTYPES; i++) {
      int d = weight_dtypes[i];
      CHECKF(t[k]->vec_dot[d] != NULL, "%s vec_dot[%s]", t[k]->isa, tide_dtype_name(d));
      CHECKF(t[k]->quant[tidei_dtype(d)->vec_dtype] != NULL, "%s quant for %s", t[k]->isa,
             tide_dtype_name(d));
    }
  }
  CHECK(strcmp(tidei_kernels_scalar()->isa, "scalar") == 0);
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    CHECK(strcmp(tidei_kernels_best()->isa, "avx512") == 0);
}

/* ---------------------------------------------------------------- f16/bf16 */

static void test_f16_edges(void) {
  static const struct { uint32_t f; uint16_t h; } cases[] = {
    { 0x00000000u, 0x0000 }, /* +0 */
    { 0x80000000u, 0x8000 }, /* -0 */
    { 0x3f800000u, 0x3c00 }, /* 1 */
    { 0xc0000000u, 0xc000 }, /* -2 */
    { 0x477fe000u, 0x7bff }, /* 65504, largest half */
    { 0x477fefffu, 0x7bff }, /* just below 65520: stays finite */
    { 0x477ff000u, 0x7c00 }, /* 65520: tie, rounds to even = inf */
    { 0x7f7fffffu, 0x7c00 }, /* FLT_MAX -> inf */
    { 0x7f800000u, 0x7c00 }, /* inf */
    { 0xff800000u, 0xfc00 }, /* -inf */
    { 0x7fc00000u, 0x7e00 }, /* quiet NaN */
    { 0x7f800001u, 0x7e00 }, /* signalling NaN, low payload: quieted */
    { 0xffa00000u, 0xff00 }, /* -sNaN: quieted, payload bit 21 kept */
    { 0x3f801000u, 0x3c00 }, /* 1 + 2^-11: tie, to even (down) */
    { 0x3f803000u, 0x3c02 }, /* 1 + 3*2^-11: tie, to even (up) */
    { 0x3f801001u, 0x3c01 }, /* just above the tie: up */
    { 0x38800000u, 0x0400 }, /* 2^-14, smallest normal */
    { 0x387fc000u, 0x03ff }, /* largest subnormal */
    { 0x387fe000u, 0x0400 }, /* tie between largest subnormal and 2^-14: even */
    { 0x33800000u, 0x0001 }, /* 2^-24, smallest subnormal */
    { 0x33000000u, 0x0000 }, /* 2^-25: tie between 0 and 2^-24, to even (0) */
    { 0x33000001u, 0x0001 }, /* just above: up */
    { 0x33c00000u, 0x0002 }, /* 1.5 * 2^-24: tie, to even (2) */
    { 0x32ffffffu, 0x0000 }, /* below 2^-25 */
    { 0x80000001u, 0x8000 }, /* tiny negative float subnormal */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t h = tidei_f32_to_f16(from_bits(cases[i].f));
    CHECKF(h == cases[i].h, "f32 0x%08x -> 0x%04x, want 0x%04x", cases[i].f, h, cases[i].h);
  }
  CHECK(bits(tidei_f16_to_f32(0x3c00)) == 0x3f800000u);
  CHECK(bits(tidei_f16_to_f32(0x0001)) == 0x33800000u);
  CHECK(bits(tidei_f16_to_f32(0x8001)) == 0xb3800000u);
  CHECK(bits(tidei_f16_to_f32(0x03ff)) == 0x387fc000u);
  CHECK(bits(tidei_f16_to_f32(0x7bff)) == 0x477fe000u);
  CHECK(bits(tidei_f16_to_f32(0x7c00)) == 0x7f800000u);
  CHECK(bits(tidei_f16_to_f32(0xfc00)) == 0xff800000u);
  CHECK(bits(tidei_f16_to_f32(0x7e00)) == 0x7fc00000u);
  CHECK(bits(tidei_f16_to_f32(0x7c01)) == 0x7fc02000u); /* sNaN -> quiet, payload kept */
  CHECK(bits(tidei_f16_to_f32(0x8000)) == 0x80000000u);
}

__attribute__((target("f16c"))) static uint16_t hw_to_f16(float f) {
  return (uint16_t)_cvtss_sh(f, 0);
}
__attribute__((target("f16c"))) static float hw_from_f16(uint16_t h) { return _cvtsh_ss(h); }

/* All 65536 halves both ways, every midpoint between neighbours and the
** floats next to it, and a sweep of the float line, against F16C. */
static void test_f16_matches_f16c(void) {
  if (!__builtin_cpu_supports("f16c")) SKIP("no f16c");
  int bad_from = 0, bad_to = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = tidei_f16_to_f32((uint16_t)h), g = hw_from_f16((uint16_t)h);
    if (bits(f) != bits(g)) bad_from++;
    if (tidei_f32_to_f16(g) != hw_to_f16(g)) bad_to++;
    uint32_t u = bits(g);
    if ((h & 0x7c00) != 0x7c00 && (h & 0x7fff) != 0x7bff) {
      float next = hw_from_f16((uint16_t)(h + 1));
      float mid = (float)(((double)g + (double)next) / 2);
      uint32_t m = bits(mid);
      for (int d = -2; d <= 2; d++) {
        float v = from_bits(m + (uint32_t)d);
        if (tidei_f32_to_f16(v) != hw_to_f16(v)) bad_to++;
      }
    }
    (void)u;
  }
  for (uint64_t u = 0; u < 0x100000000ull; u += 4093) {
    float v = from_bits((uint32_t)u);
    if (tidei_f32_to_f16(v) != hw_to_f16(v)) bad_to++;
  }
  CHECKF(bad_from == 0, "%d halves convert differently", bad_from);
  CHECKF(bad_to == 0, "%d floats convert differently", bad_to);
}

static void test_bf16(void) {
  static const struct { uint32_t f; uint16_t h; } cases[] = {
    { 0x3f800000u, 0x3f80 }, { 0xbf800000u, 0xbf80 },
    { 0x3f808000u, 0x3f80 }, /* tie, to even (down) */
    { 0x3f818000u, 0x3f82 }, /* tie, to even (up) */
    { 0x3f808001u, 0x3f81 }, /* above the tie */
    { 0x3f807fffu, 0x3f80 }, /* below the tie */
    { 0x7f7fffffu, 0x7f80 }, /* FLT_MAX rounds to inf */
    { 0x7f800000u, 0x7f80 }, { 0xff800000u, 0xff80 },
    { 0x7fc00000u, 0x7fc0 },
    { 0x7f800001u, 0x7fc0 }, /* sNaN: (bits >> 16) | 64 */
    { 0xff810000u, 0xffc1 }, /* NaN payload kept, quiet bit set */
    { 0x00018000u, 0x0002 }, /* subnormal tie rounds to even, no flush */
    { 0x00008000u, 0x0000 }, /* subnormal tie to even 0 */
    { 0x80000000u, 0x8000 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t h = tidei_f32_to_bf16(from_bits(cases[i].f));
    CHECKF(h == cases[i].h, "f32 0x%08x -> bf16 0x%04x, want 0x%04x", cases[i].f, h, cases[i].h);
  }
  CHECK(bits(tidei_bf16_to_f32(0x3f80)) == 0x3f800000u);
  CHECK(bits(tidei_bf16_to_f32(0xffc1)) == 0xffc10000u);
  CHECK(bits(tidei_bf16_to_f32(0x0001)) == 0x00010000u);
}

/* ---------------------------------------------------------------- blocks */

static void test_q8_0_block(void) {
  tidei_block_q8_0 b[2];
  b[0].d = 0x3800; /* 0.5 */
  b[1].d = 0x0001; /* 2^-24 */
  for (int j = 0; j < 32; j++) {
    b[0].qs[j] = (int8_t)(j * 8 - 128);
    b[1].qs[j] = (int8_t)(127 - j);
  }
  float y[64];
  CHECK(tide_dequantize(TIDE_Q8_0, b, y, 64) == TIDE_OK);
  int bad = 0;
  for (int j = 0; j < 32; j++) {
    if (bits(y[j]) != bits((float)(j * 8 - 128) * 0.5f)) bad++;
    if (bits(y[32 + j]) != bits((float)(127 - j) * 0x1p-24f)) bad++;
  }
  CHECKF(bad == 0, "%d wrong values", bad);
}

static void test_q4_0_block(void) {
  tidei_block_q4_0 b;
  b.d = 0xc000; /* -2 */
  for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
  float y[32];
  CHECK(tide_dequantize(TIDE_Q4_0, &b, y, 32) == TIDE_OK);
  int bad = 0;
  for (int j = 0; j < 16; j++) {
    if (y[j] != (float)(j - 8) * -2.0f) bad++;              /* low nibble: element j */
    if (y[16 + j] != (float)((15 - j) - 8) * -2.0f) bad++;  /* high nibble: j + 16 */
  }
  CHECKF(bad == 0, "%d wrong values", bad);
}

static void test_q4_K_block(void) {
  static const uint8_t sc[8] = { 1, 2, 3, 63, 17, 33, 48, 5 };
  static const uint8_t mn[8] = { 0, 1, 62, 7, 20, 40, 63, 9 };
  tidei_block_q4_K b;
  memset(&b, 0, sizeof b);
  b.d = 0x3c00;    /* 1.0 */
  b.dmin = 0x3800; /* 0.5 */
  /* 6-bit packing written out: groups 0..3 low 6 bits of bytes 0..7, groups
  ** 4..7 nibbles of bytes 8..11 plus top two bits of bytes 0..7. */
  for (int g = 0; g < 4; g++) {
    b.scales[g] = (uint8_t)(sc[g] | ((sc[g + 4] >> 4) << 6));
    b.scales[g + 4] = (uint8_t)(mn[g] | ((mn[g + 4] >> 4) << 6));
    b.scales[g + 8] = (uint8_t)((sc[g + 4] & 15) | ((mn[g + 4] & 15) << 4));
  }
  rng_seed(11);
  for (int j = 0; j < 128; j++) b.qs[j] = (uint8_t)rng_u32();
  float y[256];
  CHECK(tide_dequantize(TIDE_Q4_K, &b, y, 256) == TIDE_OK);
  int bad = 0;
  for (int e = 0; e < 256; e++) {
    int c = e / 64, r = e % 64, g = e / 32;
    int q = r < 32 ? b.qs[32 * c + r] & 15 : b.qs[32 * c + r - 32] >> 4;
    float want = (1.0f * sc[g]) * q - 0.5f * mn[g];
    if (bits(y[e]) != bits(want)) bad++;
  }
  CHECKF(bad == 0, "%d wrong values", bad);
}

static void test_q6_K_block(void) {
  tidei_block_q6_K b;
  rng_seed(12);
  for (size_t j = 0; j < sizeof b.ql; j++) b.ql[j] = (uint8_t)rng_u32();
  for (size_t j = 0; j < sizeof b.qh; j++) b.qh[j] = (uint8_t)rng_u32();
  for (int g = 0; g < 16; g++) b.scales[g] = (int8_t)(g * 17 - 128);
  b.d = 0x3400; /* 0.25 */
  float y[256];
  CHECK(tide_dequantize(TIDE_Q6_K, &b, y, 256) == TIDE_OK);
  int bad = 0;
  for (int e = 0; e < 256; e++) {
    int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    uint8_t lo = b.ql[64 * h + l + 32 * (k & 1)];
    int nib = k >= 2 ? lo >> 4 : lo & 15;
    int hi = (b.qh[32 * h + l] >> (2 * k)) & 3;
    int q = (nib | (hi << 4)) - 32;
    float want = 0.25f * b.scales[e / 16] * q;
    if (bits(y[e]) != bits(want)) bad++;
  }
  CHECKF(bad == 0, "%d wrong values", bad);
}

/* ---------------------------------------------------------------- round trip */

static void test_roundtrip(void) {
  enum { N = 4096 };
  float *x = xalloc(N * 4), *y = xalloc(N * 4);
  void *q = xalloc(N * 4);
  rng_seed(13);
  for (int i = 0; i < N; i++) x[i] = rng_uniform(-1, 1) * (i % 97 == 0 ? 8.0f : 1.0f);
  for (int i = 0; i < N; i += 512) x[i + 5] = 0; /* some exact zeros */
  static const int types[] = { TIDE_F16, TIDE_BF16, TIDE_Q8_0, TIDE_Q4_0, TIDE_Q4_K,
                               TIDE_Q6_K, TIDE_Q8_K };
  for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
    int d = types[t];
    CHECK(tide_quantize(d, x, q, N) == TIDE_OK);
    CHECK(tide_dequantize(d, q, y, N) == TIDE_OK);
    int64_t blk = tide_dtype_block(d);
    double se = 0, sx = 0;
    int bad = 0;
    for (int64_t i0 = 0; i0 < N; i0 += blk) {
      float amax = 0;
      for (int64_t i = i0; i < i0 + blk; i++) amax = fmaxf(amax, fabsf(x[i]));
      for (int64_t i = i0; i < i0 + blk; i++) {
        double e = fabs((double)y[i] - x[i]);
        se += e * e;
        sx += (double)x[i] * x[i];
        double tol;
        switch (d) {
        case TIDE_F16: tol = fabs(x[i]) * 0x1p-11; break;
        case TIDE_BF16: tol = fabs(x[i]) * 0x1p-8; break;
        /* q = round(x/d) with the float d, then d is stored as f16: up to
        ** 127 quanta of f16 rounding (2^-11 relative) come on top */
        case TIDE_Q8_0: tol = amax / 127.0 * (0.5 + 127 * 0x1p-11) * 1.001; break;
        case TIDE_Q8_K: tol = amax / 127.0 * 0.5 * 1.001; break; /* d is a float */
        case TIDE_Q4_0: tol = amax / 8.0 * 1.01; break; /* clamp at 15 costs a step */
        case TIDE_Q6_K: tol = amax / 31.0 * 1.5; break;
        default: tol = amax / 15.0 * 1.5; break; /* Q4_K with its min */
        }
        if (e > tol + 1e-7) bad++;
      }
    }
    double rel = sqrt(se / sx);
    /* rms error over rms x; the blocks with an 8x outlier dominate */
    double rel_max = d == TIDE_Q4_0 ? 0.2 : d == TIDE_Q4_K ? 0.12 : d == TIDE_Q6_K || d == TIDE_Q8_K ? 0.03 : 0.01;
    CHECKF(bad == 0, "%s: %d elements beyond the bound", tide_dtype_name(d), bad);
    CHECKF(rel < rel_max, "%s: relative rms error %g", tide_dtype_name(d), rel);
    /* zeros stay zeros */
    float z[256] = { 0 };
    CHECK(tide_quantize(d, z, q, 256) == TIDE_OK && tide_dequantize(d, q, y, 256) == TIDE_OK);
    int nz = 0;
    for (int i = 0; i < 256; i++) nz += y[i] != 0.0f;
    CHECKF(nz == 0, "%s: zero row dequantizes to %d nonzeros", tide_dtype_name(d), nz);
  }
  free(x);
  free(y);
  free(q);
}

/* ---------------------------------------------------------------- Q8_0 ties */

static void test_q8_0_activation_ties(void) {
  /* amax = 127 makes id = 127/amax = 1 and d = 1: x*id is x, so the .5s are
  ** exact ties. */
  float x[32] = { 127, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.5f, 126.5f, -126.5f, 0.49999997f };
  int8_t even[32] = { 127, 0, 2, 2, 0, -2, -2, 4, 126, -126, 0 };
  int8_t away[32] = { 127, 1, 2, 3, -1, -2, -3, 4, 127, -127, 0 };
  const struct tidei_kernels *t[4];
  int n = fast_tables(t);
  t[n++] = tidei_kernels_scalar();
  for (int k = 0; k < n; k++) {
    tidei_block_q8_0 b;
    t[k]->quant[TIDE_Q8_0](x, &b, 32);
    CHECKF(b.d == 0x3c00, "%s: d 0x%04x", t[k]->isa, b.d);
    CHECKF(memcmp(b.qs, even, 32) == 0, "%s: activation quantizer does not round half to even",
           t[k]->isa);
  }
  tidei_block_q8_0 w; /* the weight reference rounds half away from zero */
  CHECK(tide_quantize(TIDE_Q8_0, x, &w, 32) == TIDE_OK);
  CHECK(w.d == 0x3c00);
  CHECK(memcmp(w.qs, away, 32) == 0);
  /* amax = 0: d = 0 and all quants 0, no NaN */
  float z[32] = { 0 };
  tidei_block_q8_0 bz;
  for (int k = 0; k < n; k++) {
    memset(&bz, 0x55, sizeof bz);
    t[k]->quant[TIDE_Q8_0](z, &bz, 32);
    int nz = 0;
    for (int j = 0; j < 32; j++) nz += bz.qs[j] != 0;
    CHECKF(bz.d == 0 && nz == 0, "%s: zero block", t[k]->isa);
  }
}

/* Fast activation quantizers produce the scalar bytes exactly. */
static void test_fast_quant_exact(void) {
  enum { N = 4096 + 256 };
  const struct tidei_kernels *t[4];
  int n = fast_tables(t);
  if (n == 0) SKIP("no fast table on this cpu");
  float *x = xalloc(N * 4);
  unsigned char *a = xalloc(N * 4 + 512), *b = xalloc(N * 4 + 512);
  rng_seed(14);
  for (int i = 0; i < N; i++) x[i] = rng_uniform(-3, 3) * (i % 61 == 0 ? 1e-3f : 1.0f);
  x[7] = from_bits(0x7f800001u); /* a NaN for the f16/bf16 converters */
  x[9] = from_bits(0x00018000u); /* a float subnormal */
  static const int acts[] = { TIDE_F32, TIDE_F16, TIDE_BF16, TIDE_Q8_0, TIDE_Q8_K };
  for (int k = 0; k < n; k++)
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
      int d = acts[i];
      if (d == TIDE_Q8_0 || d == TIDE_Q8_K) x[7] = 1.0f; /* quantizers take finite input */
      else x[7] = from_bits(0x7f800001u);
      size_t bytes = tide_dtype_row_size(d, N);
      memset(a, 0, bytes);
      memset(b, 0, bytes);
      tidei_kernels_scalar()->quant[d](x, a, N);
      t[k]->quant[d](x, b, N);
      CHECKF(memcmp(a, b, bytes) == 0, "%s quant %s differs from scalar", t[k]->isa,
             tide_dtype_name(d));
    }
  free(x);
  free(a);
  free(b);
}

/* ---------------------------------------------------------------- vec_dot */

/* Random weight row of n elements in dtype d and the activation row (its
** vec_dtype) made by the scalar quantizer; *mag = sum |w_i x_i| from the
** dequantized values, the scale of float rounding differences. */
static void make_rows(int d, int64_t n, void *w, void *xq, double *mag) {
  float *wf = xalloc((size_t)n * 4), *xf = xalloc((size_t)n * 4), *xd = xalloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++) {
    wf[i] = rng_uniform(-1, 1);
    xf[i] = rng_uniform(-2, 2);
  }
  tide_quantize(d, wf, w, n);
  int vd = tidei_dtype(d)->vec_dtype;
  tidei_kernels_scalar()->quant[vd](xf, xq, n);
  tide_dequantize(d, w, wf, n);
  tide_dequantize(vd, xq, xd, n);
  double m = 0;
  for (int64_t i = 0; i < n; i++) m += fabs((double)wf[i] * xd[i]);
  *mag = m;
  free(wf);
  free(xf);
  free(xd);
}

static void test_fast_vec_dot(void) {
  const struct tidei_kernels *t[4];
  int nt = fast_tables(t);
  if (nt == 0) SKIP("no fast table on this cpu");
  static const int64_t lens[] = { 256, 512, 1792, 2048, 2304, 4096, 11008 };
  static const int64_t odd[] = { 1, 5, 16, 17, 33, 64, 100, 1000 };
  rng_seed(15);
  for (int k = 0; k < nt; k++)
    for (int i = 0; i < N_WEIGHT_DTYPES; i++) {
      int d = weight_dtypes[i];
      int is_float = d == TIDE_F32 || d == TIDE_F16 || d == TIDE_BF16;
      /* Q8_0/Q4_0/K-quants: integer block sums are exact, only the float
      ** sum of scaled blocks is reordered; float rows: reordered FMAs */
      double rel = is_float ? 2e-6 : 1e-5;
      int nl = (int)(sizeof lens / sizeof lens[0]), no = is_float ? (int)(sizeof odd / sizeof odd[0]) : 0;
      int worst = 0;
      double worst_err = 0;
      for (int li = 0; li < nl + no; li++) {
        int64_t n = li < nl ? lens[li] : odd[li - nl];
        if (tide_dtype_row_size(d, n) == 0) continue;
        if (!is_float && n % 32) continue;
        void *w = xalloc(tide_dtype_row_size(d, n)), *x = xalloc(tide_dtype_row_size(TIDE_Q8_K, n) + (size_t)n * 4);
        for (int rep = 0; rep < 3; rep++) {
          double mag;
          make_rows(d, n, w, x, &mag);
          float ref, got;
          tidei_kernels_scalar()->vec_dot[d](n, w, x, &ref);
          t[k]->vec_dot[d](n, w, x, &got);
          double err = fabs((double)got - ref), tol = rel * mag + 1e-30;
          /* Q4_0 keeps the reference's order of float operations (it is what
          ** reproduces llama.cpp's Q4_0 outputs): bit-identical */
          if (d == TIDE_Q4_0) tol = 0;
          if (err > tol) worst++;
          if (err / tol > worst_err) worst_err = err / tol;
        }
        free(w);
        free(x);
      }
      CHECKF(worst == 0, "%s vec_dot %s: %d rows beyond tolerance (worst %.3g x tol)", t[k]->isa,
             tide_dtype_name(d), worst, worst_err);
    }
}

/* With power-of-two block scales every product and partial sum is exact in
** float, so the fast Q8_0/Q4_0 dots must equal the scalar one bit for bit:
** this pins the integer parts (nibble order, sign handling) exactly. */
static void test_fast_vec_dot_exact_ints(void) {
  const struct tidei_kernels *t[4];
  int nt = fast_tables(t);
  if (nt == 0) SKIP("no fast table on this cpu");
  rng_seed(16);
  for (int nb = 1; nb <= 19; nb += 3) {
    tidei_block_q8_0 w8[19], x8[19];
    tidei_block_q4_0 w4[19];
    for (int i = 0; i < nb; i++) {
      w8[i].d = (uint16_t)(0x3c00 - 0x400 * (rng_u32() % 6)); /* 2^0 .. 2^-5 */
      x8[i].d = (uint16_t)(0x3c00 - 0x400 * (rng_u32() % 6));
      w4[i].d = (uint16_t)(0x3c00 - 0x400 * (rng_u32() % 6)) | (rng_u32() & 1 ? 0x8000 : 0);
      for (int j = 0; j < 32; j++) {
        w8[i].qs[j] = (int8_t)((int)(rng_u32() % 121) - 60);
        x8[i].qs[j] = (int8_t)((int)(rng_u32() % 255) - 127);
      }
      w8[i].qs[3] = -128; /* the one value |w| = 128 */
      for (int j = 0; j < 16; j++) w4[i].qs[j] = (uint8_t)rng_u32();
    }
    float r8, r4;
    tidei_kernels_scalar()->vec_dot[TIDE_Q8_0](nb * 32, w8, x8, &r8);
    tidei_kernels_scalar()->vec_dot[TIDE_Q4_0](nb * 32, w4, x8, &r4);
    for (int k = 0; k < nt; k++) {
      float g8, g4;
      t[k]->vec_dot[TIDE_Q8_0](nb * 32, w8, x8, &g8);
      t[k]->vec_dot[TIDE_Q4_0](nb * 32, w4, x8, &g4);
      CHECKF(g8 == r8, "%s q8_0 nb=%d: %.9g vs %.9g", t[k]->isa, nb, g8, r8);
      CHECKF(g4 == r4, "%s q4_0 nb=%d: %.9g vs %.9g", t[k]->isa, nb, g4, r4);
    }
  }
}

/* ---------------------------------------------------------------- matmul */

static void check_matmul(tide_env *env, int d, int64_t n_in, int64_t n_out, int64_t n_tok,
                         double rel, const char *what) {
  tidei_mat m = { NULL, d, n_in, n_out };
  size_t wrow = tide_dtype_row_size(d, n_in);
  char *w = xalloc(wrow * (size_t)n_out);
  float *wf = xalloc((size_t)n_in * 4), *x = xalloc((size_t)(n_in * n_tok) * 4);
  float *y = xalloc((size_t)(n_out * n_tok) * 4), *yr = xalloc((size_t)(n_out * n_tok) * 4);
  double *wabs = xalloc((size_t)(n_in * n_out) * 8);
  for (int64_t r = 0; r < n_out; r++) {
    for (int64_t i = 0; i < n_in; i++) wf[i] = rng_uniform(-1, 1);
    tide_quantize(d, wf, w + (size_t)r * wrow, n_in);
    tide_dequantize(d, w + (size_t)r * wrow, wf, n_in);
    for (int64_t i = 0; i < n_in; i++) wabs[r * n_in + i] = fabs(wf[i]);
  }
  for (int64_t i = 0; i < n_in * n_tok; i++) x[i] = rng_uniform(-2, 2);
  m.data = w;
  size_t sb = tidei_matmul_scratch(&m, n_tok);
  void *s1 = xalloc(sb + 1), *s2 = xalloc(sb + 1);
  for (int64_t i = 0; i < n_out * n_tok; i++) y[i] = yr[i] = NAN;
  tidei_matmul(env, &m, x, n_tok, y, s1);
  tidei_matmul_ref(&m, x, n_tok, yr, s2);
  int bad = 0;
  for (int64_t t = 0; t < n_tok; t++)
    for (int64_t r = 0; r < n_out; r++) {
      double mag = 0;
      for (int64_t i = 0; i < n_in; i++) mag += wabs[r * n_in + i] * fabs(x[t * n_in + i]);
      double err = fabs((double)y[t * n_out + r] - yr[t * n_out + r]);
      if (!(err <= rel * mag)) bad++;
    }
  CHECKF(bad == 0, "%s %s n_tok=%lld: %d outputs differ", what, tide_dtype_name(d),
         (long long)n_tok, bad);
  free(w); free(wf); free(x); free(y); free(yr); free(wabs); free(s1); free(s2);
}

static void test_matmul(void) {
  tide_env *env;
  if (tide_env_new(&env, NULL, NULL) != TIDE_OK) { CHECK(0); return; }
  rng_seed(17);
  static const int64_t toks[] = { 1, 3, 8 };
  for (int th = 1; th <= 2; th++) {
    CHECK(tide_env_set_threads(env, th) == TIDE_OK);
    for (int i = 0; i < N_WEIGHT_DTYPES; i++)
      for (int k = 0; k < 3; k++) {
        int d = weight_dtypes[i];
        /* F32 with n_tok >= 4 goes to sgemm: 1e-4; others 1e-5 */
        double rel = d == TIDE_F32 && toks[k] >= 4 ? 1e-4 : 1e-5;
        check_matmul(env, d, 512, 67, toks[k], rel, th == 1 ? "1 thread" : "2 threads");
      }
    check_matmul(env, TIDE_Q4_0, 2048, 130, 8, 1e-5, "2048x130");
  }
  /* forced scalar and the reference run the same kernels in the same order */
  tide_env_force_scalar(env, 1);
  CHECK(strcmp(tide_env_isa(env), "scalar") == 0);
  for (int i = 1; i < N_WEIGHT_DTYPES; i++) check_matmul(env, weight_dtypes[i], 512, 40, 3, 0, "scalar");
  tide_env_force_scalar(env, 0);
  tide_env_free(env);
}

/* Q8_0 and Q4_0 on every table: the multi-row (rows) and multi-token
** (pack + tile) kernels give, for every (row, token) pair, the very bits
** of that table's vec_dot (they keep its float order); so does
** tidei_matmul, whichever path it takes. Odd row counts, n_tok 1..9 and 20,
** block counts below, at and past the 8-block unroll. Weights include -128
** and activations +-127, the extremes the int8 tricks must get exact. */
static void test_tiled_exact(void) {
  const struct tidei_kernels *t[4];
  int nt = fast_tables(t);
  t[nt++] = tidei_kernels_scalar();
  static const int dts[] = { TIDE_Q8_0, TIDE_Q4_0 };
  static const int64_t ins[] = { 32, 96, 256, 288, 800 };
  static const int64_t outs[] = { 1, 3, 5, 8, 13, 17, 33 };
  rng_seed(18);
  for (int k = 0; k < nt; k++)
    for (int di = 0; di < 2; di++)
      for (int ii = 0; ii < 5; ii++) {
        int d = dts[di];
        int64_t n_in = ins[ii], n_out = outs[(ii + di) % 7 + 0] + 2 * ii, n_tok = 20;
        size_t wrow = tide_dtype_row_size(d, n_in), xrow = tide_dtype_row_size(TIDE_Q8_0, n_in);
        char *w = xalloc(wrow * (size_t)n_out), *xq = xalloc(xrow * (size_t)n_tok);
        float *x = xalloc((size_t)(n_in * n_tok) * 4), *wf = xalloc((size_t)n_in * 4);
        float *ref = xalloc((size_t)(n_out * n_tok) * 4), *got = xalloc((size_t)(n_out * n_tok) * 4);
        void *xp = xalloc(tidei_panel_size(n_in, n_tok));
        for (int64_t r = 0; r < n_out; r++) {
          for (int64_t i = 0; i < n_in; i++) wf[i] = rng_uniform(-1, 1);
          wf[rng_u32() % n_in] = 1.0f; /* the block's amax: its q8_0 weight is +127 */
          tide_quantize(d, wf, w + (size_t)r * wrow, n_in);
          if (d == TIDE_Q8_0) ((tidei_block_q8_0 *)(w + (size_t)r * wrow))->qs[5] = -128;
        }
        for (int64_t i = 0; i < n_in * n_tok; i++) x[i] = rng_uniform(-2, 2);
        for (int64_t i = 0; i < n_tok; i++)
          t[k]->quant[TIDE_Q8_0](x + i * n_in, xq + (size_t)i * xrow, n_in);
        for (int64_t i = 0; i < n_tok; i++)
          for (int64_t r = 0; r < n_out; r++)
            t[k]->vec_dot[d](n_in, w + (size_t)r * wrow, xq + (size_t)i * xrow, &ref[i * n_out + r]);
        int bad = 0;
        if (t[k]->rows[d])
          for (int64_t nr = 1; nr <= n_out; nr++) {
            for (int64_t r = 0; r < nr; r++) got[r] = NAN;
            t[k]->rows[d](n_in, w, wrow, nr, xq, got);
            for (int64_t r = 0; r < nr; r++) bad += bits(got[r]) != bits(ref[r]);
          }
        CHECKF(bad == 0, "%s %s rows n_in=%lld: %d differ", t[k]->isa, tide_dtype_name(d), (long long)n_in, bad);
        bad = 0;
        if (t[k]->tile[d])
          for (int64_t m = 2; m <= 10; m++) {
            int64_t nk = m == 10 ? n_tok : m; /* 2..9 and 20 tokens */
            t[k]->pack[d](n_in, xq, xrow, nk, xp);
            for (int64_t i = 0; i < n_out * nk; i++) got[i] = NAN;
            t[k]->tile[d](n_in, w, wrow, n_out, xp, nk, got, n_out);
            for (int64_t i = 0; i < n_out * nk; i++) bad += bits(got[i]) != bits(ref[i]);
            /* odd row counts: rows [1, n_out) with y offset by one row */
            if (n_out > 1) {
              for (int64_t i = 0; i < n_out * nk; i++) got[i] = NAN;
              t[k]->tile[d](n_in, w + wrow, wrow, n_out - 1, xp, nk, got + 1, n_out);
              for (int64_t i = 0; i < nk; i++)
                for (int64_t r = 1; r < n_out; r++)
                  bad += bits(got[i * n_out + r]) != bits(ref[i * n_out + r]);
            }
          }
        CHECKF(bad == 0, "%s %s tile n_in=%lld n_out=%lld: %d differ", t[k]->isa, tide_dtype_name(d),
               (long long)n_in, (long long)n_out, bad);
        free(w); free(xq); free(x); free(wf); free(ref); free(got); free(xp);
      }
  /* through tidei_matmul on the env's table, 1 and 2 threads */
  tide_env *env;
  if (tide_env_new(&env, NULL, NULL) != TIDE_OK) { CHECK(0); return; }
  const struct tidei_kernels *best = tidei_kernels_best();
  for (int th = 1; th <= 2; th++) {
    CHECK(tide_env_set_threads(env, th) == TIDE_OK);
    for (int di = 0; di < 2; di++)
      for (int64_t n_tok = 1; n_tok <= 20; n_tok += (n_tok < 9 ? 1 : 11)) {
        int d = dts[di];
        int64_t n_in = 288, n_out = 37;
        tidei_mat m = { NULL, d, n_in, n_out };
        size_t wrow = tide_dtype_row_size(d, n_in), xrow = tide_dtype_row_size(TIDE_Q8_0, n_in);
        char *w = xalloc(wrow * (size_t)n_out), *xq = xalloc(xrow * (size_t)n_tok);
        float *x = xalloc((size_t)(n_in * n_tok) * 4), *wf = xalloc((size_t)n_in * 4);
        float *y = xalloc((size_t)(n_out * n_tok) * 4);
        void *s = xalloc(tidei_matmul_scratch(&m, n_tok));
        for (int64_t r = 0; r < n_out; r++) {
          for (int64_t i = 0; i < n_in; i++) wf[i] = rng_uniform(-1, 1);
          tide_quantize(d, wf, w + (size_t)r * wrow, n_in);
        }
        for (int64_t i = 0; i < n_in * n_tok; i++) x[i] = rng_uniform(-2, 2);
        m.data = w;
        tidei_matmul(env, &m, x, n_tok, y, s);
        int bad = 0;
        for (int64_t i = 0; i < n_tok; i++) {
          best->quant[TIDE_Q8_0](x + i * n_in, xq + (size_t)i * xrow, n_in);
          for (int64_t r = 0; r < n_out; r++) {
            float e;
            best->vec_dot[d](n_in, w + (size_t)r * wrow, xq + (size_t)i * xrow, &e);
            bad += bits(e) != bits(y[i * n_out + r]);
          }
        }
        CHECKF(bad == 0, "matmul %s %s n_tok=%lld, %d threads: %d differ from vec_dot", best->isa,
               tide_dtype_name(d), (long long)n_tok, th, bad);
        free(w); free(xq); free(x); free(wf); free(y); free(s);
      }
  }
  tide_env_free(env);
}

/* F16 rows on f32 activations rounded to F16 values (round_f16) give the
** bits of vec_dot on the F16 activation, on every table that has them; F16
** matmul through sgemm (n_tok >= TIDEI_F16_SGEMM) stays near the reference. */
static void test_f16_rows(void) {
  const struct tidei_kernels *t[4];
  int nt = fast_tables(t);
  t[nt++] = tidei_kernels_scalar();
  static const int64_t ins[] = { 16, 40, 64, 100, 512, 2048 + 48 };
  rng_seed(19);
  for (int k = 0; k < nt; k++) {
    CHECKF(t[k]->round_f16 && t[k]->widen_f16, "%s round_f16/widen_f16", t[k]->isa);
    if (!t[k]->rows[TIDE_F16]) continue;
    for (int ii = 0; ii < 6; ii++) {
      int64_t n = ins[ii], nr = 11;
      uint16_t *w = xalloc((size_t)(n * nr) * 2), *xh = xalloc((size_t)n * 2);
      float *x = xalloc((size_t)n * 4), *xr = xalloc((size_t)n * 4), *xw = xalloc((size_t)n * 4);
      float ref[11], got[11];
      for (int64_t i = 0; i < n * nr; i++) w[i] = tidei_f32_to_f16(rng_uniform(-1, 1));
      for (int64_t i = 0; i < n; i++) x[i] = rng_uniform(-3, 3);
      t[k]->quant[TIDE_F16](x, xh, n);
      t[k]->round_f16(x, xr, n);
      t[k]->widen_f16(xh, xw, n);
      int bad = 0;
      for (int64_t i = 0; i < n; i++) bad += bits(xr[i]) != bits(xw[i]);
      for (int64_t r = 0; r < nr; r++) t[k]->vec_dot[TIDE_F16](n, w + r * n, xh, &ref[r]);
      for (int64_t m = 1; m <= nr; m++) {
        for (int64_t r = 0; r < m; r++) got[r] = NAN;
        t[k]->rows[TIDE_F16](n, w, (size_t)n * 2, m, xr, got);
        for (int64_t r = 0; r < m; r++) bad += bits(got[r]) != bits(ref[r]);
      }
      CHECKF(bad == 0, "%s f16 rows n=%lld: %d differ", t[k]->isa, (long long)n, bad);
      free(w); free(xh); free(x); free(xr); free(xw);
    }
  }
  tide_env *env;
  if (tide_env_new(&env, NULL, NULL) != TIDE_OK) { CHECK(0); return; }
  for (int th = 1; th <= 2; th++) {
    CHECK(tide_env_set_threads(env, th) == TIDE_OK);
    check_matmul(env, TIDE_F16, 512, 300, TIDEI_F16_SGEMM, 1e-5, "f16 sgemm");
    check_matmul(env, TIDE_F16, 96, 530, 37, 1e-5, "f16 sgemm");
  }
  tide_env_free(env);
}

/* Attention kernels (tensor.h: kq, pv): every table gives the scalar
** reference's bits (same fmas, same tree), for head sizes below, at and
** past 16 and 64, and 1..16 rows of a block. */
static void test_attention_kernels(void) {
  const struct tidei_kernels *t[4];
  int nt = fast_tables(t);
  const struct tidei_kernels *sc = tidei_kernels_scalar();
  static const int hds[] = { 16, 20, 64, 80, 128, 136 };
  static const int kvts[] = { TIDE_F16, TIDE_F32 };
  rng_seed(20);
  for (int k = 0; k < nt; k++)
    for (int ki = 0; ki < 2; ki++)
      for (int hi = 0; hi < 6; hi++) {
        int kvt = kvts[ki], hd = hds[hi], ld = hd + 3;
        size_t elt = kvt == TIDE_F16 ? 2 : 4, rs = (size_t)(hd + 8) * elt;
        char *kv = xalloc(16 * rs);
        float q[136], p[16], s1[16], s2[16], *a1 = xalloc(16 * (size_t)ld * 4), *a2 = xalloc(16 * (size_t)ld * 4);
        for (int r = 0; r < 16; r++)
          for (int i = 0; i < hd + 8; i++) {
            float v = rng_uniform(-2, 2);
            if (kvt == TIDE_F16) ((uint16_t *)(kv + r * rs))[i] = tidei_f32_to_f16(v);
            else ((float *)(kv + r * rs))[i] = v;
          }
        for (int i = 0; i < hd; i++) q[i] = rng_uniform(-2, 2);
        for (int r = 0; r < 16; r++) p[r] = rng_uniform(0, 1);
        int bad = 0;
        for (int n = 1; n <= 16; n++) {
          sc->kq[kvt](hd, kv, rs, n, q, s1);
          t[k]->kq[kvt](hd, kv, rs, n, q, s2);
          for (int r = 0; r < n; r++) bad += bits(s1[r]) != bits(s2[r]);
          for (int i = 0; i < 16 * ld; i++) a1[i] = a2[i] = (float)(i % 7) * 0.25f;
          sc->pv[kvt](hd, kv, rs, n, p, a1, ld);
          t[k]->pv[kvt](hd, kv, rs, n, p, a2, ld);
          for (int i = 0; i < 16 * ld; i++) bad += bits(a1[i]) != bits(a2[i]);
        }
        CHECKF(bad == 0, "%s %s kq/pv hd=%d: %d differ", t[k]->isa, tide_dtype_name(kvt), hd, bad);
        free(kv); free(a1); free(a2);
      }
  /* kq of 16 F16 products summed as the tree: exact small integers */
  uint16_t kk[16];
  float q[16], s;
  for (int i = 0; i < 16; i++) { kk[i] = tidei_f32_to_f16((float)(i + 1)); q[i] = 2.0f; }
  sc->kq[TIDE_F16](16, kk, 32, 1, q, &s);
  CHECK(s == 272.0f);
}

static void test_matmul_scratch(void) {
  tidei_mat m = { NULL, TIDE_Q4_0, 4096, 10 };
  CHECK(tidei_matmul_scratch(&m, 1) == tide_dtype_row_size(TIDE_Q8_0, 4096));
  /* several tokens: the rows, then (64-byte aligned) the tile panel */
  CHECK(tidei_matmul_scratch(&m, 8) == 8 * tide_dtype_row_size(TIDE_Q8_0, 4096) + tidei_panel_size(4096, 8));
  CHECK(tidei_matmul_scratch(&m, 3) == (3 * tide_dtype_row_size(TIDE_Q8_0, 4096) + 63) / 64 * 64 +
                                           tidei_panel_size(4096, 3));
  m.dtype = TIDE_Q6_K;
  CHECK(tidei_matmul_scratch(&m, 3) == 3 * tide_dtype_row_size(TIDE_Q8_K, 4096));
  m.dtype = TIDE_F16; /* activations kept as f32 (rounded to F16 values) */
  CHECK(tidei_matmul_scratch(&m, 2) == 2 * 4096 * 4);
  /* sgemm from TIDEI_F16_SGEMM tokens: the rows, then a panel of f32 weights */
  CHECK(tidei_matmul_scratch(&m, TIDEI_F16_SGEMM) ==
        TIDEI_F16_SGEMM * 4096 * 4 + (size_t)TIDEI_F16_PANEL * 4096 * 4);
  m.dtype = TIDE_F32;
  CHECK(tidei_matmul_scratch(&m, 64) == 0);
}

TEST_MAIN(test_dtype_traits, test_kernel_tables_complete, test_f16_edges, test_f16_matches_f16c,
          test_bf16, test_q8_0_block, test_q4_0_block, test_q4_K_block, test_q6_K_block,
          test_roundtrip, test_q8_0_activation_ties, test_fast_quant_exact, test_fast_vec_dot,
          test_fast_vec_dot_exact_ints, test_matmul, test_tiled_exact, test_f16_rows,
          test_attention_kernels, test_matmul_scratch)
