/*
** hash.c -- XXH64 (Yann Collet's xxHash, 64-bit variant, bit for bit) and
** the model hash built on it: what a steer file records as the identity of
** the model it was trained on. Layer: core.
**
** The model hash chains XXH64 over every tensor of the GGUF file in file
** order: h = 0; per tensor h = XXH64(name, h), then XXH64 of a 40-byte
** header (dtype, n_dims as u32, ne[0..3] as u64, little-endian) seeded
** with h, then XXH64 of the tensor's bytes seeded with that. Metadata
** (general.name, tokenizer) is not hashed: the same weights under another
** name hash the same; a quantized copy does not.
*/
#include <string.h>

#include "model.h"

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* Little-endian loads (one instruction on little-endian hosts). */
static uint64_t rd64(const unsigned char *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
#else
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
#endif
}

static uint64_t rd32(const unsigned char *p) {
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

static uint64_t round64(uint64_t acc, uint64_t in) { return rotl(acc + in * P2, 31) * P1; }

static uint64_t merge64(uint64_t h, uint64_t v) { return (h ^ round64(0, v)) * P1 + P4; }

uint64_t tide_xxh64(const void *data, size_t len, uint64_t seed) {
  const unsigned char *p = data, *end = p + len;
  uint64_t h;
  if (len >= 32) {
    uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
    for (; end - p >= 32; p += 32) {
      v1 = round64(v1, rd64(p)), v2 = round64(v2, rd64(p + 8));
      v3 = round64(v3, rd64(p + 16)), v4 = round64(v4, rd64(p + 24));
    }
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = merge64(merge64(merge64(merge64(h, v1), v2), v3), v4);
  } else {
    h = seed + P5;
  }
  h += (uint64_t)len;
  for (; end - p >= 8; p += 8) h = rotl(h ^ round64(0, rd64(p)), 27) * P1 + P4;
  if (end - p >= 4) h = rotl(h ^ rd32(p) * P1, 23) * P2 + P3, p += 4;
  for (; p < end; p++) h = rotl(h ^ *p * P5, 11) * P1;
  h ^= h >> 33, h *= P2, h ^= h >> 29, h *= P3, h ^= h >> 32;
  return h;
}

int tide_model_hash(const tide_model *m, uint64_t *out) {
  if (!m || !out) return TIDE_ERR_ARG;
  const tide_gguf *g = m->gguf;
  uint64_t h = 0;
  for (int64_t i = 0; i < tide_gguf_n_tensors(g); i++) {
    tide_tensor_info ti;
    int st = tide_gguf_tensor(g, i, &ti);
    if (st) return st;
    unsigned char hdr[40];
    uint64_t f[5] = { (uint64_t)(uint32_t)ti.dtype | (uint64_t)(uint32_t)ti.n_dims << 32,
                      (uint64_t)ti.ne[0], (uint64_t)ti.ne[1], (uint64_t)ti.ne[2],
                      (uint64_t)ti.ne[3] };
    for (int k = 0; k < 5; k++)
      for (int b = 0; b < 8; b++) hdr[k * 8 + b] = (unsigned char)(f[k] >> (8 * b));
    h = tide_xxh64(ti.name, strlen(ti.name), h);
    h = tide_xxh64(hdr, sizeof hdr, h);
    h = tide_xxh64(ti.data, ti.nbytes, h);
  }
  *out = h;
  return TIDE_OK;
}
