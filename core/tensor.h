/*
** tensor.h -- element types, GGUF block layouts, and the matrix kernels.
** Layer: core (internal). Implemented by tensor.c (conversions, reference
** (de)quantizers, traits), ops.c (scalar reference kernels, tidei_matmul) and
** ops_avx2.c / ops_avx512.c (fast kernels with the same signatures).
*/
#ifndef TIDE_TENSOR_H
#define TIDE_TENSOR_H

#include <stdint.h>

#include "tidei.h"

#define TIDEI_N_DTYPES 31 /* dtype ids are < this */

/* Block layouts, byte for byte as ggml/GGUF store them (little-endian). */
#define QK8_0 32
typedef struct { uint16_t d; int8_t qs[QK8_0]; } tidei_block_q8_0;        /* 34 B */
#define QK4_0 32
typedef struct { uint16_t d; uint8_t qs[QK4_0 / 2]; } tidei_block_q4_0;   /* 18 B */
#define QK_K 256
typedef struct {
  uint16_t d, dmin;      /* super-block scales for scales and mins (f16) */
  uint8_t scales[12];    /* 8 pairs of 6-bit scale and min */
  uint8_t qs[QK_K / 2];  /* 4-bit quants */
} tidei_block_q4_K;                                                        /* 144 B */
typedef struct {
  uint8_t ql[QK_K / 2];      /* low 4 bits */
  uint8_t qh[QK_K / 4];      /* high 2 bits */
  int8_t scales[QK_K / 16];  /* 8-bit scales of 16-element groups */
  uint16_t d;                /* f16 super-block scale */
} tidei_block_q6_K;                                                        /* 210 B */
typedef struct {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];  /* sums of groups of 16 quants */
} tidei_block_q8_K;                                                        /* 292 B */

/* Scalar conversions, round-to-nearest-even as the F16C instructions. */
float tidei_f16_to_f32(uint16_t h);
uint16_t tidei_f32_to_f16(float f);
float tidei_bf16_to_f32(uint16_t h);
uint16_t tidei_f32_to_bf16(float f); /* as ggml_compute_fp32_to_bf16 */

/* Scale and min (6 bits each) of 32-element group j (0..7) of a Q4_K block:
** groups 0..3 sit in the low 6 bits of scales[j] and scales[j + 4]; groups
** 4..7 in the nibbles of scales[j + 4] with their top 2 bits in the top bits
** of scales[j - 4] (scale) and scales[j] (min). As ggml's get_scale_min_k4. */
static inline void tidei_q4_K_scale_min(int j, const uint8_t *q, uint8_t *sc,
                                        uint8_t *m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

typedef void (*tidei_to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*tidei_from_float_fn)(const float *src, void *dst, int64_t n);

/* Static facts about a dtype. */
typedef struct {
  const char *name;
  int64_t blck;                   /* elements per block */
  size_t bytes;                   /* bytes per block */
  int vec_dtype;                  /* activation dtype its dot product takes */
  tidei_to_float_fn to_float;     /* reference dequantizer */
  tidei_from_float_fn from_float; /* reference quantizer (NULL: none) */
} tidei_dtype_traits;

/* NULL for an unknown dtype. */
const tidei_dtype_traits *tidei_dtype(int dtype);

/* One weight row (dtype) . one activation row (its vec_dtype), n elements
** (a multiple of the block) -> *out. */
typedef void (*tidei_vec_dot_fn)(int64_t n, const void *w, const void *x,
                                 float *out);

/* Multi-token matmul for one weight dtype, in two steps.
** pack: n_tok activation rows xq (vec_dtype, xrow bytes apart) -> the
**   table's private panel layout xp (at most tidei_panel_size bytes,
**   64-byte aligned); rows past n_tok up to the next multiple of 8 are
**   packed as zeros.
** tile: rows [0, nr) of W (n_in each, wrow bytes apart) . the n_tok packed
**   rows -> y[t*ldy + r]. Each output is bit for bit what the same table's
**   vec_dot gives for that (row, token) pair: the tile runs several rows
**   and tokens at once but keeps every pair's float operation order. */
typedef void (*tidei_pack_fn)(int64_t n_in, const void *xq, size_t xrow, int64_t n_tok,
                              void *xp);
typedef void (*tidei_tile_fn)(int64_t n_in, const void *w, size_t wrow, int64_t nr,
                              const void *xp, int64_t n_tok, float *y, int64_t ldy);
/* rows: rows [0, nr) of W . one activation row xq (vec_dtype) -> y[0..nr),
** each bit for bit the table's vec_dot, several rows at a time. F16 is the
** exception in its input: xq is f32 values already rounded to F16 (the
** table's round_f16), so that only the weights need converting; products
** and sums are those of vec_dot on the F16 activation. */
typedef void (*tidei_rows_fn)(int64_t n_in, const void *w, size_t wrow, int64_t nr,
                              const void *xq, float *y);

/* Attention over the positions of one KV block (TIDEI_KV_BLOCK = 16 rows of
** the kv dtype, F16 or F32, rs bytes apart), for one head of hd elements,
** in llama.cpp's order (its tinyBLAS F16/F32 dot: one 16-lane accumulator,
** lane j takes the elements i = j (mod 16) by fma in order, then the lanes
** sum as the tree (j, j+8), (j, j+4), (j, j+2), (j, j+1)); elements past hd
** up to the next multiple of 16 count as zeros.
** kq: s[t] = K[t] . q for the n <= 16 rows t of K (q in f32, already rounded
**   to F16 when K is F16). F32 K takes ggml_vec_dot_f32's order instead
**   (llama.cpp's K.Q skips tinyBLAS when no conversion happens): 4 such
**   16-lane accumulators over each 64 elements, added (0+2)+(1+3) and then
**   as the tree, and the elements past the last 64 by fmaf one by one.
** pv: acc[t*ldacc + i] = fma(p[t], V[t][i], acc[t*ldacc + i]) for t < n,
**   i < hd: row t is lane t (mod 16) of the P.V dot over positions, which
**   the caller sums with the same tree (p already rounded to F16 when V is
**   F16). */
typedef void (*tidei_kq_fn)(int hd, const void *k, size_t rs, int n, const float *q,
                            float *s);
typedef void (*tidei_pv_fn)(int hd, const void *v, size_t rs, int n, const float *p,
                            float *acc, int ldacc);

/* Panel bytes for n_tok rows of n_in elements: 72 bytes per block of 32 per
** token, tokens rounded up to 8 (every table's layout fits in this). */
static inline size_t tidei_panel_size(int64_t n_in, int64_t n_tok) {
  return (size_t)((n_tok + 7) / 8 * 8) * (size_t)(n_in / 32) * 72;
}

/* A kernel table: one per ISA, chosen once per env. Entries a fast table
** lacks are filled from the scalar table; pack/tile/rows may be NULL (then
** tidei_matmul runs vec_dot per row and token). */
struct tidei_kernels {
  const char *isa;
  tidei_vec_dot_fn vec_dot[TIDEI_N_DTYPES];     /* by weight dtype */
  tidei_from_float_fn quant[TIDEI_N_DTYPES];    /* by activation dtype */
  tidei_pack_fn pack[TIDEI_N_DTYPES];           /* by weight dtype */
  tidei_tile_fn tile[TIDEI_N_DTYPES];           /* by weight dtype */
  tidei_rows_fn rows[TIDEI_N_DTYPES];           /* by weight dtype; n_tok == 1 */
  tidei_from_float_fn round_f16;                /* f32 -> f32 rounded to the nearest F16
                                                   (dst may be src) */
  tidei_to_float_fn widen_f16;                  /* F16 -> f32 */
  tidei_kq_fn kq[TIDEI_N_DTYPES];               /* by kv dtype (F16, F32) */
  tidei_pv_fn pv[TIDEI_N_DTYPES];               /* by kv dtype (F16, F32) */
};

/* ops.c: the scalar reference kernels, named so that the fast tables can
** list them as fallbacks in their (compile-time constant) initialisers.
** vec_dot_<w>: weight dtype w . its vec_dtype; quant_<a>: f32 -> activation
** dtype a (quant_q8_0 is llama.cpp's activation quantizer, not the weight
** quantizer of tensor.c; quant_f32 is a copy). */
void tidei_vec_dot_f32_scalar(int64_t n, const void *w, const void *x, float *out);
void tidei_vec_dot_f16_scalar(int64_t n, const void *w, const void *x, float *out);
void tidei_vec_dot_bf16_scalar(int64_t n, const void *w, const void *x, float *out);
void tidei_vec_dot_q8_0_scalar(int64_t n, const void *w, const void *x, float *out);
void tidei_vec_dot_q4_0_scalar(int64_t n, const void *w, const void *x, float *out);
void tidei_vec_dot_q4_K_scalar(int64_t n, const void *w, const void *x, float *out);
void tidei_vec_dot_q6_K_scalar(int64_t n, const void *w, const void *x, float *out);
void tidei_kq_f32_scalar(int hd, const void *k, size_t rs, int n, const float *q, float *s);
void tidei_kq_f16_scalar(int hd, const void *k, size_t rs, int n, const float *q, float *s);
void tidei_pv_f32_scalar(int hd, const void *v, size_t rs, int n, const float *p, float *acc,
                         int ldacc);
void tidei_pv_f16_scalar(int hd, const void *v, size_t rs, int n, const float *p, float *acc,
                         int ldacc);
void tidei_round_f16_scalar(const float *src, void *dst, int64_t n);
void tidei_quant_f32_scalar(const float *src, void *dst, int64_t n);
void tidei_quant_f16_scalar(const float *src, void *dst, int64_t n);
void tidei_quant_bf16_scalar(const float *src, void *dst, int64_t n);
void tidei_quant_q8_0_scalar(const float *src, void *dst, int64_t n);
void tidei_quant_q8_K_scalar(const float *src, void *dst, int64_t n);

/* ops_avx2.c: K-quant kernels the AVX-512 table reuses. */
void tidei_vec_dot_q4_K_avx2(int64_t n, const void *w, const void *x, float *out);
void tidei_vec_dot_q6_K_avx2(int64_t n, const void *w, const void *x, float *out);

const struct tidei_kernels *tidei_kernels_scalar(void);
const struct tidei_kernels *tidei_kernels_avx2(void);   /* NULL if not built */
const struct tidei_kernels *tidei_kernels_avx512(void); /* NULL if not built */
/* The best table this CPU runs (cpuid), complete (no NULL entries). */
const struct tidei_kernels *tidei_kernels_best(void);

/* A weight matrix as the forward pass sees it. */
typedef struct {
  const void *data;  /* (n_out, n_in) rows of dtype, row-major */
  int dtype;
  int64_t n_in, n_out;
} tidei_mat;

/* Bytes of scratch tidei_matmul needs for n_tok activation rows (0 for F32
** weights; F16 rows are kept as f32, and n_tok >= TIDEI_F16_SGEMM adds a
** panel of F16 weights widened to f32). The scratch must be 4-byte aligned
** (Q8_K blocks hold a float); 64 is best. */
size_t tidei_matmul_scratch(const tidei_mat *w, int64_t n_tok);

/* W (n_out, n_in) @ X (n_tok, n_in) -> Y (n_tok, n_out), all f32 rows.
** Quantizes X to W's vec_dtype (as llama.cpp does) into scratch, then splits
** the output rows over the env's threads; F32 weights with n_tok >= 4 go
** to OpenBLAS sgemm from the calling thread (OpenBLAS then uses its own
** threads). F16 weights with n_tok >= TIDEI_F16_SGEMM do too, a panel of
** TIDEI_F16_PANEL rows at a time widened to f32 by the env's threads, with
** X rounded to F16 values: the same exact products as the dot kernels (of
** F16-rounded values, as llama.cpp's F16 x F16), summed in sgemm's order.
** Allocates nothing. */
#define TIDEI_F16_SGEMM 16
#define TIDEI_F16_PANEL 256
void tidei_matmul(tide_env *env, const tidei_mat *w, const float *x,
                  int64_t n_tok, float *y, void *scratch);

/* The same with the scalar reference kernels, single-threaded: the oracle
** the fast paths are tested against. */
void tidei_matmul_ref(const tidei_mat *w, const float *x, int64_t n_tok,
                      float *y, void *scratch);

#endif
