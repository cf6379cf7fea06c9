/*
** gguf.c -- GGUF reader (mmap or caller buffer) and writer.
** Layer: core. Implements the GGUF section of tide.h.
**
** A GGUF file is untrusted input. The reader walks it twice: a first pass
** checks every count, length, type and offset and adds up what the tables
** need; one allocation then holds the handle and all tables, and a second
** pass fills them (key and tensor-name copies, string-array offset tables,
** hash tables, which also catch duplicates). Tensor data is checked last,
** once the start of the data section is known. Nothing reads outside
** [data, data + size); all sizes are computed in checked 64-bit arithmetic.
**
** Layout (little-endian, versions 2 and 3 are identical):
**   "GGUF" u32 version, u64 n_tensors, u64 n_kv
**   n_kv x { str key, u32 type, value }          str = u64 len + bytes
**   n_tensors x { str name, u32 n_dims, u64 ne[n_dims], u32 dtype, u64 off }
**   padding to general.alignment (u32, default 32), then the data section;
**   each off is relative to it and a multiple of the alignment.
*/
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor.h"
#include "tidei.h"

#define GGUF_DEFAULT_ALIGN 32
#define GGUF_MAX_NAME 4096         /* longest key or tensor name accepted */
#define GGUF_MAX_COUNT (1u << 30)  /* n_kv, n_tensors: hash slots are u32 */
#define GGUF_MIN_KV 13             /* key length 8 + type 4 + one byte */
#define GGUF_MIN_TENSOR 32         /* name length 8 + n_dims 4 + ne 8 + 4 + 8 */
#define GGUF_N_TYPES 13

static const char *const type_names[GGUF_N_TYPES] = {
  "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool",
  "string", "array", "uint64", "int64", "float64"
};
/* Bytes of one scalar of each type (0: string, array). */
static const unsigned char type_size[GGUF_N_TYPES] = {
  1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8
};

/* ggml's type ids that tide does not handle, so a valid file using one gets
** TIDE_ERR_UNSUPPORTED rather than TIDE_ERR_FORMAT ("" = never assigned). */
static const char *const ggml_names[40] = {
  "f32", "f16", "q4_0", "q4_1", "", "", "q5_0", "q5_1", "q8_0", "q8_1",
  "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K", "iq2_xxs", "iq2_xs",
  "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16",
  "i32", "i64", "f64", "iq1_m", "bf16", "", "", "", "tq1_0", "tq2_0", "", "",
  "", "mxfp4"
};

static const char *type_name(uint32_t t) {
  return t < GGUF_N_TYPES ? type_names[t] : "unknown";
}

static int is_int_type(int t) {
  return t <= TIDE_GGUF_INT32 || t == TIDE_GGUF_UINT64 || t == TIDE_GGUF_INT64;
}

/* ---------------------------------------------------------------- bytes */

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) {
  return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* *r = a * b; nonzero on overflow. */
static int mul_over(uint64_t a, uint64_t b, uint64_t *r) {
  if (b != 0 && a > UINT64_MAX / b) return 1;
  *r = a * b;
  return 0;
}

/* *r = a + b; nonzero on overflow. */
static int add_over(uint64_t a, uint64_t b, uint64_t *r) {
  if (a > UINT64_MAX - b) return 1;
  *r = a + b;
  return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) { /* caller checks overflow */
  return (x + a - 1) & ~(a - 1);
}

static uint32_t hash_bytes(const char *s, size_t n) { /* FNV-1a */
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static double le_f32(const unsigned char *p) {
  float f; uint32_t u = le32(p); memcpy(&f, &u, 4); return f;
}

static double le_f64(const unsigned char *p) {
  double d; uint64_t u = le64(p); memcpy(&d, &u, 8); return d;
}

/* Scalar element of type t at p, as int64 (floats truncated when in range). */
static int64_t elem_int(int t, const unsigned char *p) {
  double d;
  switch (t) {
  case TIDE_GGUF_UINT8: case TIDE_GGUF_BOOL: return p[0];
  case TIDE_GGUF_INT8: return (int8_t)p[0];
  case TIDE_GGUF_UINT16: return (uint16_t)(p[0] | p[1] << 8);
  case TIDE_GGUF_INT16: return (int16_t)(uint16_t)(p[0] | p[1] << 8);
  case TIDE_GGUF_UINT32: return le32(p);
  case TIDE_GGUF_INT32: return (int32_t)le32(p);
  case TIDE_GGUF_UINT64: case TIDE_GGUF_INT64: return (int64_t)le64(p);
  case TIDE_GGUF_FLOAT32: case TIDE_GGUF_FLOAT64:
    d = t == TIDE_GGUF_FLOAT32 ? le_f32(p) : le_f64(p);
    return d > -9.2e18 && d < 9.2e18 ? (int64_t)d : 0;
  default: return 0;
  }
}

static double elem_float(int t, const unsigned char *p) {
  return t == TIDE_GGUF_FLOAT32 ? le_f32(p) : t == TIDE_GGUF_FLOAT64 ? le_f64(p)
       : t == TIDE_GGUF_UINT64 ? (double)le64(p) : (double)elem_int(t, p);
}

/* ---------------------------------------------------------------- handle */

typedef struct {
  const char *key;             /* NUL-terminated copy */
  size_t key_len;
  int type;                    /* tide_gguf_type */
  int arr_type;                /* element type of an ARRAY */
  int64_t n;                   /* string length or array count */
  const unsigned char *data;   /* scalar, string bytes or array elements */
  const uint64_t *stroff;      /* STRING arrays: element i's length field is
                                  at data + stroff[i] */
} gguf_kv;

struct tide_gguf {
  tide_env *env;
  int refs;                    /* the opener + handles that borrow it */
  size_t alloc_size;           /* this block, tables included */
  void *map;                   /* mmap base or NULL */
  size_t map_size;
  const unsigned char *base;   /* the file's bytes */
  uint64_t size;
  uint32_t version, alignment;
  uint64_t data_start;         /* aligned start of the data section */
  int64_t n_kv, n_tensors;
  gguf_kv *kv;                 /* (n_kv) */
  tide_tensor_info *tensors;   /* (n_tensors) */
  uint32_t *khash, *thash;     /* (kcap), (tcap): index + 1, 0 = empty */
  uint32_t kcap, tcap;
};

static uint32_t hash_cap(uint64_t n) {
  uint32_t cap = 8;
  while (cap < 2 * n) cap *= 2;
  return cap;
}

/* Slot for name in table (key i's name given by name_at); returns the slot,
** holding 0 (absent) or index + 1. */
static uint32_t hash_slot(const tide_gguf *g, int tens, const char *s,
                          size_t n) {
  const uint32_t *tab = tens ? g->thash : g->khash;
  uint32_t mask = (tens ? g->tcap : g->kcap) - 1, i = hash_bytes(s, n) & mask;
  for (;; i = (i + 1) & mask) {
    uint32_t e = tab[i];
    if (e == 0) return i;
    const char *name = tens ? g->tensors[e - 1].name : g->kv[e - 1].key;
    if (strncmp(name, s, n) == 0 && name[n] == 0) return i;
  }
}

/* ---------------------------------------------------------------- parser */

typedef struct {
  tide_env *env;
  tide_gguf *g;               /* NULL in the counting pass */
  const unsigned char *base;
  uint64_t size, pos;
  const char *kind;           /* "key", "tensor" or NULL: message context */
  int64_t idx, elem;          /* entry index, array element (-1: none) */
  const unsigned char *name;  /* entry name once read (NULL: not yet) */
  uint64_t name_len;
  uint32_t alignment;
  uint64_t blob, n_str;       /* counted: name bytes, string-array elements */
  char *blob_at;              /* filled: next free name byte */
  uint64_t *str_at;           /* filled: next free string offset */
} parser;

static int fail(parser *P, uint64_t off, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 3, 4)))
#endif
  ;

static int fail(parser *P, uint64_t off, const char *fmt, ...) {
  char msg[256], where[192], elem[48] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (P->elem >= 0) snprintf(elem, sizeof elem, "element %lld: ", (long long)P->elem);
  if (P->kind && P->name)
    snprintf(where, sizeof where, "%s '%.*s': %s", P->kind,
             (int)(P->name_len < 128 ? P->name_len : 128), (const char *)P->name, elem);
  else if (P->kind)
    snprintf(where, sizeof where, "%s %lld: ", P->kind, (long long)P->idx);
  else where[0] = 0;
  return tidei_error(P->env, TIDE_ERR_FORMAT, "gguf offset %llu: %s%s",
                     (unsigned long long)off, where, msg);
}

static int need(parser *P, uint64_t n, const char *what) {
  if (n > P->size - P->pos)
    return fail(P, P->pos, "%s (%llu bytes) past end of file (size %llu)", what,
                (unsigned long long)n, (unsigned long long)P->size);
  return TIDE_OK;
}

static int rd_u32(parser *P, const char *what, uint32_t *v) {
  int st = need(P, 4, what);
  if (!st) { *v = le32(P->base + P->pos); P->pos += 4; }
  return st;
}

static int rd_u64(parser *P, const char *what, uint64_t *v) {
  int st = need(P, 8, what);
  if (!st) { *v = le64(P->base + P->pos); P->pos += 8; }
  return st;
}

/* A string: u64 length, then that many bytes (no terminator). */
static int rd_str(parser *P, const char *what, const unsigned char **s,
                  uint64_t *len) {
  uint64_t off = P->pos;
  if (8 > P->size - P->pos)
    return fail(P, off, "%s length (8 bytes) past end of file (size %llu)", what,
                (unsigned long long)P->size);
  *len = le64(P->base + off);
  P->pos += 8;
  if (*len > P->size - P->pos)
    return fail(P, off, "%s length %llu past end of file (size %llu)", what,
                (unsigned long long)*len, (unsigned long long)P->size);
  *s = P->base + P->pos;
  P->pos += *len;
  return TIDE_OK;
}

/* A key or tensor name: bounded, no NUL byte; copied in the filling pass. */
static int rd_name(parser *P, const char **copy) {
  uint64_t off = P->pos, len = 0;
  const unsigned char *s = NULL;
  int st = rd_str(P, P->kind[0] == 'k' ? "key" : "name", &s, &len);
  if (st) return st;
  if (len > GGUF_MAX_NAME)
    return fail(P, off, "name length %llu too long (max %d)",
                (unsigned long long)len, GGUF_MAX_NAME);
  if (memchr(s, 0, len)) return fail(P, off, "name contains a zero byte");
  P->name = s;
  P->name_len = len;
  P->blob += len + 1;
  if (P->g) {
    memcpy(P->blob_at, s, len);
    P->blob_at[len] = 0;
    *copy = P->blob_at;
    P->blob_at += len + 1;
  }
  return TIDE_OK;
}

static int rd_array(parser *P, gguf_kv *kv) {
  uint64_t off = P->pos, n;
  uint32_t t;
  int st = rd_u32(P, "array type", &t);
  if (st) return st;
  if (t == TIDE_GGUF_ARRAY) return fail(P, off, "arrays of arrays not supported");
  if (t >= GGUF_N_TYPES) return fail(P, off, "array type %u unknown", t);
  if ((st = rd_u64(P, "array length", &n))) return st;
  uint64_t esize = t == TIDE_GGUF_STRING ? 8 : type_size[t];
  if (n > (P->size - P->pos) / esize)
    return fail(P, off + 4, "array of %llu %s values past end of file (size %llu)",
                (unsigned long long)n, type_names[t], (unsigned long long)P->size);
  kv->arr_type = (int)t;
  kv->n = (int64_t)n;
  kv->data = P->base + P->pos;
  if (t != TIDE_GGUF_STRING) {
    P->pos += n * esize;
    return TIDE_OK;
  }
  if (P->g) kv->stroff = n ? P->str_at : NULL;
  for (uint64_t i = 0; i < n; i++) {
    const unsigned char *s = NULL;
    uint64_t len = 0;
    P->elem = (int64_t)i;
    if (P->g) *P->str_at++ = P->pos - (uint64_t)(kv->data - P->base);
    if ((st = rd_str(P, "string", &s, &len))) return st;
  }
  P->elem = -1;
  P->n_str += n;
  return TIDE_OK;
}

static int rd_kv(parser *P, gguf_kv *kv) {
  uint64_t off;
  uint32_t t;
  int st = rd_name(P, &kv->key);
  if (st) return st;
  kv->key_len = (size_t)P->name_len;
  off = P->pos;
  if ((st = rd_u32(P, "value type", &t))) return st;
  if (t >= GGUF_N_TYPES) return fail(P, off, "value type %u unknown", t);
  kv->type = (int)t;
  if (t == TIDE_GGUF_ARRAY) {
    if ((st = rd_array(P, kv))) return st;
  } else if (t == TIDE_GGUF_STRING) {
    uint64_t len = 0;
    if ((st = rd_str(P, "string", &kv->data, &len))) return st;
    kv->n = (int64_t)len;
  } else {
    if ((st = need(P, type_size[t], type_names[t]))) return st;
    kv->data = P->base + P->pos;
    P->pos += type_size[t];
  }
  if (P->name_len == 17 && memcmp(P->name, "general.alignment", 17) == 0) {
    uint32_t a = t == TIDE_GGUF_UINT32 ? le32(kv->data) : 0;
    if (t != TIDE_GGUF_UINT32)
      return fail(P, off, "type %s, expected uint32", type_names[t]);
    if (a == 0 || (a & (a - 1)))
      return fail(P, off + 4, "alignment %u not a power of two", a);
    P->alignment = a;
  }
  return TIDE_OK;
}

static int rd_tensor(parser *P, tide_tensor_info *ti) {
  uint64_t off, ne[4] = { 1, 1, 1, 1 }, nel = 1, nb, rel;
  uint32_t n_dims, t;
  const tidei_dtype_traits *tr;
  int st = rd_name(P, &ti->name);
  if (st) return st;
  off = P->pos;
  if ((st = rd_u32(P, "n_dims", &n_dims))) return st;
  if (n_dims < 1 || n_dims > 4) return fail(P, off, "n_dims %u not in 1..4", n_dims);
  for (uint32_t i = 0; i < n_dims; i++) {
    char what[8] = "ne[i]";
    what[3] = (char)('0' + i);
    off = P->pos;
    if ((st = rd_u64(P, what, &ne[i]))) return st;
    if (ne[i] > INT64_MAX || mul_over(nel, ne[i], &nel) || nel > INT64_MAX)
      return fail(P, off, "ne[%u] = %llu makes the element count overflow", i,
                  (unsigned long long)ne[i]);
  }
  off = P->pos;
  if ((st = rd_u32(P, "type", &t))) return st;
  tr = t < TIDEI_N_DTYPES ? tidei_dtype((int)t) : NULL;
  if (!tr && t < 40 && ggml_names[t][0])
    return tidei_error(P->env, TIDE_ERR_UNSUPPORTED,
                       "gguf offset %llu: tensor '%.*s': type %s (%u) not supported",
                       (unsigned long long)off, (int)(P->name_len < 128 ? P->name_len : 128),
                       (const char *)P->name, ggml_names[t], t);
  if (!tr) return fail(P, off, "type %u unknown", t);
  if (ne[0] % (uint64_t)tr->blck)
    return fail(P, off, "ne[0] = %llu not a multiple of %s's block size %lld",
                (unsigned long long)ne[0], tr->name, (long long)tr->blck);
  if (mul_over(nel / (uint64_t)tr->blck, tr->bytes, &nb) || nb > P->size)
    return fail(P, off, "data size of %llu elements of %s larger than the file (size %llu)",
                (unsigned long long)nel, tr->name, (unsigned long long)P->size);
  off = P->pos;
  if ((st = rd_u64(P, "data offset", &rel))) return st;
  if (rel % P->alignment)
    return fail(P, off, "data offset %llu not a multiple of the alignment %u",
                (unsigned long long)rel, P->alignment);
  ti->dtype = (int)t;
  ti->n_dims = (int)n_dims;
  for (int i = 0; i < 4; i++) ti->ne[i] = (int64_t)ne[i];
  ti->offset = rel;  /* relative until place_tensors */
  ti->nbytes = (size_t)nb;
  return TIDE_OK;
}

/* One pass over the file. With P->g NULL it only checks and counts. */
static int parse(parser *P, int64_t n_kv, int64_t n_tensors) {
  tide_gguf *g = P->g;
  gguf_kv kv0;
  tide_tensor_info ti0;
  int st;
  P->pos = 24;
  P->alignment = GGUF_DEFAULT_ALIGN;
  for (int64_t i = 0; i < n_kv; i++) {
    gguf_kv *kv = g ? &g->kv[i] : &kv0;
    uint64_t off = P->pos;
    memset(kv, 0, sizeof *kv);
    P->kind = "key"; P->idx = i; P->name = NULL; P->elem = -1;
    if ((st = rd_kv(P, kv))) return st;
    if (g) {
      uint32_t s = hash_slot(g, 0, kv->key, kv->key_len);
      if (g->khash[s]) return fail(P, off, "duplicate key");
      g->khash[s] = (uint32_t)i + 1;
    }
  }
  for (int64_t i = 0; i < n_tensors; i++) {
    tide_tensor_info *ti = g ? &g->tensors[i] : &ti0;
    uint64_t off = P->pos;
    memset(ti, 0, sizeof *ti);
    P->kind = "tensor"; P->idx = i; P->name = NULL; P->elem = -1;
    if ((st = rd_tensor(P, ti))) return st;
    if (g) {
      uint32_t s = hash_slot(g, 1, ti->name, (size_t)P->name_len);
      if (g->thash[s]) return fail(P, off, "duplicate tensor name");
      g->thash[s] = (uint32_t)i + 1;
    }
  }
  P->kind = NULL;
  return TIDE_OK;
}

/* Header: magic, version, counts bounded by the bytes left. */
static int parse_header(parser *P, uint32_t *version, int64_t *n_kv,
                        int64_t *n_t) {
  uint64_t nt, nk;
  int st;
  P->pos = 0;
  P->kind = NULL;
  P->elem = -1;
  if ((st = need(P, 4, "magic"))) return st;
  if (memcmp(P->base, "GGUF", 4) != 0) return fail(P, 0, "not a gguf file (bad magic)");
  P->pos = 4;
  if ((st = rd_u32(P, "version", version))) return st;
  if (*version == 1) return fail(P, 4, "version 1 not supported (need 2 or 3)");
  if (*version != 2 && *version != 3)
    return fail(P, 4, "version %u unknown (need 2 or 3%s)", *version,
                (*version & 0xffff) == 0 ? "; big-endian file?" : "");
  if ((st = rd_u64(P, "tensor count", &nt)) || (st = rd_u64(P, "kv count", &nk)))
    return st;
  if (nt > GGUF_MAX_COUNT || nt > (P->size - 24) / GGUF_MIN_TENSOR)
    return fail(P, 8, "tensor count %llu too large for file of %llu bytes",
                (unsigned long long)nt, (unsigned long long)P->size);
  if (nk > GGUF_MAX_COUNT || nk > (P->size - 24) / GGUF_MIN_KV)
    return fail(P, 16, "kv count %llu too large for file of %llu bytes",
                (unsigned long long)nk, (unsigned long long)P->size);
  *n_kv = (int64_t)nk;
  *n_t = (int64_t)nt;
  return TIDE_OK;
}

/* Tensor data: inside the file, after the aligned end of the tensor table. */
static int place_tensors(parser *P, tide_gguf *g) {
  if (P->pos > UINT64_MAX - g->alignment)
    return fail(P, P->pos, "data section start overflows");
  g->data_start = align_up(P->pos, g->alignment);
  for (int64_t i = 0; i < g->n_tensors; i++) {
    tide_tensor_info *ti = &g->tensors[i];
    uint64_t abs = UINT64_MAX, end;
    if (add_over(g->data_start, ti->offset, &abs) || add_over(abs, ti->nbytes, &end) ||
        end > g->size)
      return tidei_error(g->env, TIDE_ERR_FORMAT,
                         "tensor '%s': data at offset %llu (+%llu bytes) past end of file (size %llu)",
                         ti->name, (unsigned long long)abs,
                         (unsigned long long)ti->nbytes, (unsigned long long)g->size);
    ti->offset = abs;
    ti->data = g->base + abs;
  }
  return TIDE_OK;
}

static size_t round8(uint64_t n) { return (size_t)((n + 7) & ~(uint64_t)7); }

/* Parses [data, data + size) into a new handle (map is taken over on
** success). */
static int gguf_load(tide_env *env, const unsigned char *data, uint64_t size,
                     void *map, tide_gguf **out) {
  static const unsigned char empty[1];
  parser P;
  tide_gguf *g = NULL;
  uint32_t version = 0;
  int64_t n_kv = 0, n_t = 0;
  uint64_t total;
  size_t o_kv, o_t, o_str, o_kh, o_th, o_blob;
  uint32_t kcap, tcap;
  int st;
  memset(&P, 0, sizeof P);
  P.env = env;
  P.base = data ? data : empty;
  P.size = size;
  if ((st = parse_header(&P, &version, &n_kv, &n_t))) goto done;
  if ((st = parse(&P, n_kv, n_t))) goto done;
  /* Everything counted is bounded by the file size, so no sum overflows. */
  kcap = hash_cap((uint64_t)n_kv);
  tcap = hash_cap((uint64_t)n_t);
  o_kv = round8(sizeof(tide_gguf));
  o_t = o_kv + round8((uint64_t)n_kv * sizeof(gguf_kv));
  o_str = o_t + round8((uint64_t)n_t * sizeof(tide_tensor_info));
  o_kh = o_str + round8(P.n_str * sizeof(uint64_t));
  o_th = o_kh + round8((uint64_t)kcap * 4);
  o_blob = o_th + round8((uint64_t)tcap * 4);
  total = o_blob + P.blob;
  if (total > SIZE_MAX / 2) {
    st = tidei_error(env, TIDE_ERR_NOMEM, "gguf tables of %llu bytes too large",
                     (unsigned long long)total);
    goto done;
  }
  g = tidei_calloc(env, 1, (size_t)total);
  if (!g) { st = TIDE_ERR_NOMEM; goto done; }
  g->env = env;
  g->refs = 1;
  g->alloc_size = (size_t)total;
  g->base = P.base;
  g->size = size;
  g->version = version;
  g->alignment = P.alignment;
  g->n_kv = n_kv;
  g->n_tensors = n_t;
  g->kv = (gguf_kv *)((char *)g + o_kv);
  g->tensors = (tide_tensor_info *)((char *)g + o_t);
  g->khash = (uint32_t *)((char *)g + o_kh);
  g->thash = (uint32_t *)((char *)g + o_th);
  g->kcap = kcap;
  g->tcap = tcap;
  P.g = g;
  P.str_at = (uint64_t *)((char *)g + o_str);
  P.blob_at = (char *)g + o_blob;
  if ((st = parse(&P, n_kv, n_t))) goto done;
  if ((st = place_tensors(&P, g))) goto done;
  g->map = map;
  g->map_size = map ? (size_t)size : 0;
  tidei_env_ref(env);
done:
  if (st && g) {
    tidei_free(env, g, g->alloc_size);
    g = NULL;
  }
  *out = g;
  return st;
}

int tide_gguf_open_memory(tide_env *env, const void *data, size_t size,
                          tide_gguf **out) {
  *out = NULL;
  if (!data && size) return tidei_error(env, TIDE_ERR_ARG, "gguf buffer is NULL");
  return gguf_load(env, data, size, NULL, out);
}

int tide_gguf_open(tide_env *env, const char *path, tide_gguf **out) {
  struct stat sb;
  void *map = NULL;
  int fd, st;
  *out = NULL;
  fd = open(path, O_RDONLY);
  if (fd < 0) return tidei_error(env, TIDE_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return tidei_error(env, TIDE_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return tidei_error(env, TIDE_ERR_IO, "cannot read '%s': not a regular file", path);
  }
  if ((uint64_t)sb.st_size > SIZE_MAX) {
    close(fd);
    return tidei_error(env, TIDE_ERR_IO, "cannot map '%s': file too large", path);
  }
  if (sb.st_size > 0) {
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int e = errno;
      close(fd);
      return tidei_error(env, TIDE_ERR_IO, "cannot map '%s': %s", path, strerror(e));
    }
  }
  close(fd);
  st = gguf_load(env, map, (uint64_t)sb.st_size, map, out);
  if (st) {
    char msg[TIDEI_ERRMSG];
    if (map) munmap(map, (size_t)sb.st_size);
    if (st == TIDE_ERR_FORMAT || st == TIDE_ERR_UNSUPPORTED) {
      memcpy(msg, env->errmsg, sizeof msg);
      msg[sizeof msg - 1] = 0;
      tidei_error(env, st, "%s: %s", path, msg);
    }
  }
  return st;
}

void tidei_gguf_ref(tide_gguf *g) { g->refs++; }

void tide_gguf_free(tide_gguf *g) {
  tide_env *env;
  if (!g || --g->refs > 0) return;
  env = g->env;
  if (g->map) munmap(g->map, g->map_size);
  tidei_free(env, g, g->alloc_size);
  tidei_env_unref(env);
}

uint32_t tide_gguf_version(const tide_gguf *g) { return g->version; }
int64_t tide_gguf_n_kv(const tide_gguf *g) { return g->n_kv; }
int64_t tide_gguf_n_tensors(const tide_gguf *g) { return g->n_tensors; }

int64_t tide_gguf_find(const tide_gguf *g, const char *key) {
  uint32_t e = g->khash[hash_slot(g, 0, key, strlen(key))];
  return (int64_t)e - 1;
}

const char *tide_gguf_key(const tide_gguf *g, int64_t i) {
  return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

int tide_gguf_kv_type(const tide_gguf *g, int64_t i) {
  return i >= 0 && i < g->n_kv ? g->kv[i].type : -1;
}

int64_t tide_gguf_find_tensor(const tide_gguf *g, const char *name) {
  uint32_t e = g->thash[hash_slot(g, 1, name, strlen(name))];
  return (int64_t)e - 1;
}

int tide_gguf_tensor(const tide_gguf *g, int64_t i, tide_tensor_info *out) {
  if (i < 0 || i >= g->n_tensors)
    return tidei_error(g->env, TIDE_ERR_ARG, "tensor index %lld out of range (0..%lld)",
                       (long long)i, (long long)g->n_tensors - 1);
  *out = g->tensors[i];
  return TIDE_OK;
}

/* The entry for key if its type is want (-1: any integer type, -2: float32
** or float64); else TIDE_ERR_NOTFOUND or TIDE_ERR_FORMAT with a message. */
static int get_kv(const tide_gguf *g, const char *key, int want, const gguf_kv **kv) {
  static const char *const wants[] = { "float32 or float64", "integer" };
  int64_t i = tide_gguf_find(g, key);
  int t;
  if (i < 0) return tidei_error(g->env, TIDE_ERR_NOTFOUND, "key '%s' not found", key);
  *kv = &g->kv[i];
  t = (*kv)->type;
  if (want == -1 ? is_int_type(t)
      : want == -2 ? t == TIDE_GGUF_FLOAT32 || t == TIDE_GGUF_FLOAT64 : t == want)
    return TIDE_OK;
  return tidei_error(g->env, TIDE_ERR_FORMAT, "key '%s': %s expected, got %s", key,
                     want < 0 ? wants[want + 2] : type_names[want], type_names[t]);
}

int tide_gguf_get_int(const tide_gguf *g, const char *key, int64_t *out) {
  const gguf_kv *kv;
  int st = get_kv(g, key, -1, &kv);
  if (st) return st;
  if (kv->type == TIDE_GGUF_UINT64 && le64(kv->data) > INT64_MAX)
    return tidei_error(g->env, TIDE_ERR_FORMAT, "key '%s': value %llu does not fit in int64",
                       key, (unsigned long long)le64(kv->data));
  *out = elem_int(kv->type, kv->data);
  return TIDE_OK;
}

int tide_gguf_get_float(const tide_gguf *g, const char *key, double *out) {
  const gguf_kv *kv;
  int st = get_kv(g, key, -2, &kv);
  if (!st) *out = elem_float(kv->type, kv->data);
  return st;
}

int tide_gguf_get_bool(const tide_gguf *g, const char *key, int *out) {
  const gguf_kv *kv;
  int st = get_kv(g, key, TIDE_GGUF_BOOL, &kv);
  if (!st) *out = kv->data[0] != 0;
  return st;
}

int tide_gguf_get_str(const tide_gguf *g, const char *key, const char **s,
                      size_t *len) {
  const gguf_kv *kv;
  int st = get_kv(g, key, TIDE_GGUF_STRING, &kv);
  if (!st) { *s = (const char *)kv->data; *len = (size_t)kv->n; }
  return st;
}

int tide_gguf_get_arr(const tide_gguf *g, const char *key, tide_gguf_arr *out) {
  const gguf_kv *kv;
  int st = get_kv(g, key, TIDE_GGUF_ARRAY, &kv);
  if (!st) {
    out->type = kv->arr_type;
    out->n = kv->n;
    out->data = kv->data;
    out->strings = kv->stroff;
  }
  return st;
}

int64_t tide_gguf_arr_int(const tide_gguf_arr *a, int64_t i) {
  if (a->type >= GGUF_N_TYPES || !type_size[a->type]) return 0;
  return elem_int(a->type, (const unsigned char *)a->data + i * type_size[a->type]);
}

double tide_gguf_arr_float(const tide_gguf_arr *a, int64_t i) {
  if (a->type >= GGUF_N_TYPES || !type_size[a->type]) return 0;
  return elem_float(a->type, (const unsigned char *)a->data + i * type_size[a->type]);
}

const char *tide_gguf_arr_str(const tide_gguf_arr *a, int64_t i, size_t *len) {
  const unsigned char *p;
  if (a->type != TIDE_GGUF_STRING) { *len = 0; return NULL; }
  p = (const unsigned char *)a->data + ((const uint64_t *)a->strings)[i];
  *len = (size_t)le64(p);
  return (const char *)p + 8;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
  char *key;
  size_t key_len;
  uint32_t type;
  unsigned char *val;   /* the value's bytes as stored after the type */
  size_t val_size;
} wkv;

typedef struct {
  char *name;
  size_t name_len;
  uint32_t dtype, n_dims;
  uint64_t ne[4], nbytes, offset;
  const void *data;     /* borrowed */
} wtensor;

struct tide_gguf_writer {
  tide_env *env;
  wkv *kv;
  int64_t n_kv, cap_kv;
  wtensor *t;
  int64_t n_t, cap_t;
  int written;          /* a successful write released the tensor data */
};

int tide_gguf_writer_new(tide_env *env, tide_gguf_writer **out) {
  tide_gguf_writer *w = tidei_calloc(env, 1, sizeof *w);
  *out = w;
  if (!w) return TIDE_ERR_NOMEM;
  w->env = env;
  tidei_env_ref(env);
  return TIDE_OK;
}

void tide_gguf_writer_free(tide_gguf_writer *w) {
  tide_env *env;
  if (!w) return;
  env = w->env;
  for (int64_t i = 0; i < w->n_kv; i++) {
    tidei_free(env, w->kv[i].key, w->kv[i].key_len + 1);
    tidei_free(env, w->kv[i].val, w->kv[i].val_size);
  }
  for (int64_t i = 0; i < w->n_t; i++)
    tidei_free(env, w->t[i].name, w->t[i].name_len + 1);
  tidei_free(env, w->kv, (size_t)w->cap_kv * sizeof *w->kv);
  tidei_free(env, w->t, (size_t)w->cap_t * sizeof *w->t);
  tidei_free(env, w, sizeof *w);
  tidei_env_unref(env);
}

/* Grows *arr (elements of size es) to hold one more; 0 or TIDE_ERR_NOMEM. */
static int grow(tide_env *env, void **arr, int64_t n, int64_t *cap, size_t es) {
  int64_t ncap;
  void *p;
  if (n < *cap) return TIDE_OK;
  ncap = *cap ? *cap * 2 : 8;
  p = tidei_realloc(env, *arr, (size_t)*cap * es, (size_t)ncap * es);
  if (!p) return TIDE_ERR_NOMEM;
  *arr = p;
  *cap = ncap;
  return TIDE_OK;
}

static int check_name(tide_gguf_writer *w, const char *name, const char *what) {
  if (!name) return tidei_error(w->env, TIDE_ERR_ARG, "%s is NULL", what);
  if (w->written) return tidei_error(w->env, TIDE_ERR_STATE, "gguf writer already written");
  if (strlen(name) > GGUF_MAX_NAME)
    return tidei_error(w->env, TIDE_ERR_ARG, "%s '%.64s...' too long (max %d bytes)",
                       what, name, GGUF_MAX_NAME);
  return TIDE_OK;
}

/* Sets key to (type, val); takes val (val_size bytes) in every case. */
static int put_kv(tide_gguf_writer *w, const char *key, uint32_t type,
                  unsigned char *val, size_t val_size) {
  tide_env *env = w->env;
  size_t len = strlen(key);
  char *copy;
  if (len == 17 && memcmp(key, "general.alignment", 17) == 0) {
    uint32_t a = type == TIDE_GGUF_UINT32 ? le32(val) : 0;
    if (a == 0 || (a & (a - 1))) {
      tidei_free(env, val, val_size);
      return tidei_error(env, TIDE_ERR_ARG,
                         "key 'general.alignment': must be a uint32 power of two");
    }
  }
  for (int64_t i = 0; i < w->n_kv; i++) {
    wkv *kv = &w->kv[i];
    if (kv->key_len == len && memcmp(kv->key, key, len) == 0) {
      tidei_free(env, kv->val, kv->val_size);
      kv->type = type;
      kv->val = val;
      kv->val_size = val_size;
      return TIDE_OK;
    }
  }
  if (grow(env, (void **)&w->kv, w->n_kv, &w->cap_kv, sizeof *w->kv) ||
      !(copy = tidei_strdup(env, key, len))) {
    tidei_free(env, val, val_size);
    return TIDE_ERR_NOMEM;
  }
  w->kv[w->n_kv++] = (wkv){ copy, len, type, val, val_size };
  return TIDE_OK;
}

int tide_gguf_writer_set_int(tide_gguf_writer *w, const char *key, int type,
                             int64_t v) {
  static const int64_t lo[] = { 0, -128, 0, -32768, 0, INT32_MIN };
  static const int64_t hi[] = { 255, 127, 65535, 32767, UINT32_MAX, INT32_MAX };
  unsigned char *val;
  size_t n;
  int st = check_name(w, key, "key");
  if (st) return st;
  if (!is_int_type(type) && type != TIDE_GGUF_BOOL)
    return tidei_error(w->env, TIDE_ERR_ARG, "key '%s': type %s is not an integer type",
                       key, type_name((uint32_t)type));
  if (type == TIDE_GGUF_BOOL) v = v != 0;
  if ((type <= TIDE_GGUF_INT32 && (v < lo[type] || v > hi[type])) ||
      (type == TIDE_GGUF_UINT64 && v < 0))
    return tidei_error(w->env, TIDE_ERR_ARG, "key '%s': value %lld out of range for %s",
                       key, (long long)v, type_names[type]);
  n = type_size[type];
  if (!(val = tidei_alloc(w->env, n))) return TIDE_ERR_NOMEM;
  for (size_t i = 0; i < n; i++) val[i] = (unsigned char)((uint64_t)v >> (8 * i));
  return put_kv(w, key, (uint32_t)type, val, n);
}

int tide_gguf_writer_set_float(tide_gguf_writer *w, const char *key, int type,
                               double v) {
  unsigned char *val;
  int st = check_name(w, key, "key");
  if (st) return st;
  if (type != TIDE_GGUF_FLOAT32 && type != TIDE_GGUF_FLOAT64)
    return tidei_error(w->env, TIDE_ERR_ARG, "key '%s': type %s is not float32 or float64",
                       key, type_name((uint32_t)type));
  if (!(val = tidei_alloc(w->env, type_size[type]))) return TIDE_ERR_NOMEM;
  if (type == TIDE_GGUF_FLOAT32) {
    float f = (float)v; uint32_t u; memcpy(&u, &f, 4); put32(val, u);
  } else {
    uint64_t u; memcpy(&u, &v, 8); put64(val, u);
  }
  return put_kv(w, key, (uint32_t)type, val, type_size[type]);
}

int tide_gguf_writer_set_str(tide_gguf_writer *w, const char *key,
                             const char *s, size_t len) {
  unsigned char *val;
  int st = check_name(w, key, "key");
  if (st) return st;
  if (!s && len) return tidei_error(w->env, TIDE_ERR_ARG, "key '%s': string is NULL", key);
  if (len > SIZE_MAX - 8 || !(val = tidei_alloc(w->env, len + 8))) return TIDE_ERR_NOMEM;
  put64(val, len);
  if (len) memcpy(val + 8, s, len);
  return put_kv(w, key, TIDE_GGUF_STRING, val, len + 8);
}

int tide_gguf_writer_set_arr(tide_gguf_writer *w, const char *key, int type,
                             const void *data, int64_t n) {
  unsigned char *val;
  uint64_t bytes;
  int st = check_name(w, key, "key");
  if (st) return st;
  if (type < 0 || type >= GGUF_N_TYPES || !type_size[type])
    return tidei_error(w->env, TIDE_ERR_ARG, "key '%s': array type %s not numeric",
                       key, type_name((uint32_t)type));
  if (n < 0 || (!data && n) || mul_over((uint64_t)n, type_size[type], &bytes) ||
      bytes > SIZE_MAX - 12)
    return tidei_error(w->env, TIDE_ERR_ARG, "key '%s': bad array (n %lld)", key, (long long)n);
  if (!(val = tidei_alloc(w->env, (size_t)bytes + 12))) return TIDE_ERR_NOMEM;
  put32(val, (uint32_t)type);
  put64(val + 4, (uint64_t)n);
  if (bytes) memcpy(val + 12, data, (size_t)bytes);
  return put_kv(w, key, TIDE_GGUF_ARRAY, val, (size_t)bytes + 12);
}

int tide_gguf_writer_set_arr_str(tide_gguf_writer *w, const char *key,
                                 const char *const *strs, const size_t *lens,
                                 int64_t n) {
  unsigned char *val, *p;
  uint64_t bytes = 12;
  int st = check_name(w, key, "key");
  if (st) return st;
  if (n < 0 || (!strs && n))
    return tidei_error(w->env, TIDE_ERR_ARG, "key '%s': bad string array", key);
  for (int64_t i = 0; i < n; i++) {
    size_t len = lens ? lens[i] : strs[i] ? strlen(strs[i]) : 0;
    if (!strs[i] && len)
      return tidei_error(w->env, TIDE_ERR_ARG, "key '%s': string %lld is NULL", key, (long long)i);
    if (add_over(bytes, 8, &bytes) || add_over(bytes, len, &bytes) || bytes > SIZE_MAX)
      return tidei_error(w->env, TIDE_ERR_ARG, "key '%s': string array too large", key);
  }
  if (!(val = tidei_alloc(w->env, (size_t)bytes))) return TIDE_ERR_NOMEM;
  put32(val, TIDE_GGUF_STRING);
  put64(val + 4, (uint64_t)n);
  p = val + 12;
  for (int64_t i = 0; i < n; i++) {
    size_t len = lens ? lens[i] : strs[i] ? strlen(strs[i]) : 0;
    put64(p, len);
    if (len) memcpy(p + 8, strs[i], len);
    p += 8 + len;
  }
  return put_kv(w, key, TIDE_GGUF_ARRAY, val, (size_t)bytes);
}

int tide_gguf_writer_add_tensor(tide_gguf_writer *w, const char *name,
                                int dtype, int n_dims, const int64_t *ne,
                                const void *data) {
  tide_env *env = w->env;
  const tidei_dtype_traits *tr = dtype >= 0 && dtype < TIDEI_N_DTYPES ? tidei_dtype(dtype) : NULL;
  wtensor t;
  uint64_t nel = 1;
  size_t len;
  int st = check_name(w, name, "tensor name");
  if (st) return st;
  len = strlen(name);
  if (!tr) return tidei_error(env, TIDE_ERR_ARG, "tensor '%s': unknown dtype %d", name, dtype);
  if (n_dims < 1 || n_dims > 4 || !ne)
    return tidei_error(env, TIDE_ERR_ARG, "tensor '%s': n_dims %d not in 1..4", name, n_dims);
  memset(&t, 0, sizeof t);
  for (int i = 0; i < 4; i++) {
    t.ne[i] = i < n_dims ? (uint64_t)ne[i] : 1;
    if ((i < n_dims && ne[i] < 0) || mul_over(nel, t.ne[i], &nel) || nel > INT64_MAX)
      return tidei_error(env, TIDE_ERR_ARG, "tensor '%s': bad shape", name);
  }
  if (t.ne[0] % (uint64_t)tr->blck)
    return tidei_error(env, TIDE_ERR_ARG, "tensor '%s': ne[0] = %lld not a multiple of %lld",
                       name, (long long)ne[0], (long long)tr->blck);
  if (mul_over(nel / (uint64_t)tr->blck, tr->bytes, &t.nbytes) || t.nbytes > SIZE_MAX / 2)
    return tidei_error(env, TIDE_ERR_ARG, "tensor '%s': too large", name);
  if (!data && t.nbytes)
    return tidei_error(env, TIDE_ERR_ARG, "tensor '%s': data is NULL", name);
  for (int64_t i = 0; i < w->n_t; i++)
    if (w->t[i].name_len == len && memcmp(w->t[i].name, name, len) == 0)
      return tidei_error(env, TIDE_ERR_ARG, "tensor '%s' already added", name);
  if (grow(env, (void **)&w->t, w->n_t, &w->cap_t, sizeof *w->t) ||
      !(t.name = tidei_strdup(env, name, len)))
    return TIDE_ERR_NOMEM;
  t.name_len = len;
  t.dtype = (uint32_t)dtype;
  t.n_dims = (uint32_t)n_dims;
  t.data = data;
  w->t[w->n_t++] = t;
  return TIDE_OK;
}

/* Buffered-by-stdio output that remembers the first error. */
typedef struct {
  FILE *f;
  uint64_t pos;
  int err;
} wout;

static void out_bytes(wout *o, const void *p, size_t n) {
  if (o->err || n == 0) return;
  errno = 0;
  if (fwrite(p, 1, n, o->f) != n) o->err = errno ? errno : EIO;
  o->pos += n;
}

static void out_u32(wout *o, uint32_t v) {
  unsigned char b[4];
  put32(b, v);
  out_bytes(o, b, 4);
}

static void out_u64(wout *o, uint64_t v) {
  unsigned char b[8];
  put64(b, v);
  out_bytes(o, b, 8);
}

static void out_pad(wout *o, uint32_t align) {
  static const unsigned char zero[256];
  uint64_t n = align_up(o->pos, align) - o->pos;
  while (n > 0 && !o->err) {
    size_t k = n < sizeof zero ? (size_t)n : sizeof zero;
    out_bytes(o, zero, k);
    n -= k;
  }
}

static void write_all(tide_gguf_writer *w, wout *o, int version, uint32_t align) {
  out_bytes(o, "GGUF", 4);
  out_u32(o, (uint32_t)version);
  out_u64(o, (uint64_t)w->n_t);
  out_u64(o, (uint64_t)w->n_kv);
  for (int64_t i = 0; i < w->n_kv; i++) {
    out_u64(o, w->kv[i].key_len);
    out_bytes(o, w->kv[i].key, w->kv[i].key_len);
    out_u32(o, w->kv[i].type);
    out_bytes(o, w->kv[i].val, w->kv[i].val_size);
  }
  for (int64_t i = 0; i < w->n_t; i++) {
    const wtensor *t = &w->t[i];
    out_u64(o, t->name_len);
    out_bytes(o, t->name, t->name_len);
    out_u32(o, t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++) out_u64(o, t->ne[d]);
    out_u32(o, t->dtype);
    out_u64(o, t->offset);
  }
  out_pad(o, align);
  for (int64_t i = 0; i < w->n_t; i++) {
    out_bytes(o, w->t[i].data, (size_t)w->t[i].nbytes);
    out_pad(o, align);
  }
}

int tide_gguf_writer_write(tide_gguf_writer *w, const char *path, int version) {
  tide_env *env = w->env;
  uint32_t align = GGUF_DEFAULT_ALIGN;
  uint64_t off = 0;
  size_t plen, tlen;
  char *tmp;
  wout o = { NULL, 0, 0 };
  int st = check_name(w, path, "path");
  if (st) return st;
  if (version != 2 && version != 3)
    return tidei_error(env, TIDE_ERR_ARG, "gguf version %d not supported (need 2 or 3)", version);
  for (int64_t i = 0; i < w->n_kv; i++)
    if (w->kv[i].key_len == 17 && memcmp(w->kv[i].key, "general.alignment", 17) == 0)
      align = le32(w->kv[i].val);
  for (int64_t i = 0; i < w->n_t; i++) {
    w->t[i].offset = off;
    if (add_over(off, w->t[i].nbytes, &off) || off > UINT64_MAX - align)
      return tidei_error(env, TIDE_ERR_ARG, "gguf tensor data too large");
    off = align_up(off, align);
  }
  plen = strlen(path);
  tlen = plen + 5;
  if (!(tmp = tidei_alloc(env, tlen))) return TIDE_ERR_NOMEM;
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  if (!(o.f = fopen(tmp, "wb"))) {
    st = tidei_error(env, TIDE_ERR_IO, "cannot open '%s': %s", tmp, strerror(errno));
    goto done;
  }
  write_all(w, &o, version, align);
  errno = 0;
  if (fclose(o.f) != 0 && !o.err) o.err = errno ? errno : EIO;
  if (o.err) {
    st = tidei_error(env, TIDE_ERR_IO, "cannot write '%s': %s", tmp, strerror(o.err));
    remove(tmp);
    goto done;
  }
  if (rename(tmp, path) != 0) {
    st = tidei_error(env, TIDE_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path,
                     strerror(errno));
    remove(tmp);
    goto done;
  }
  w->written = 1;
done:
  tidei_free(env, tmp, tlen);
  return st;
}
