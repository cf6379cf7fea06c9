/*
** test_gguf.c -- tests of the GGUF reader and writer (core/gguf.c).
** Layer: tests. Round trips through the writer, the llama-spm-tiny fixture,
** corrupted files (truncated, patched counts, types, offsets) and
** allocation failures with a leak-counting allocator.
*/
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <unistd.h>

#include "tide.h"
#include "test.h"

/* ---------------------------------------------------------------- helpers */

static char tmp_path[256];

static const char *tmpfile_name(const char *tag) {
  snprintf(tmp_path, sizeof tmp_path, "/tmp/tide_test_gguf_%ld_%s.gguf", (long)getpid(), tag);
  return tmp_path;
}

static unsigned char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  unsigned char *buf;
  long n;
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc(n > 0 ? (size_t)n : 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
  fclose(f);
  *size = (size_t)n;
  return buf;
}

static int has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* Tensor payloads of the small file: bytes i*7+k. */
static unsigned char tdata[5][512];
static const char *const tnames[5] = { "w.f32", "w.f16", "w.q8_0", "w.q4_0", "w.bf16" };
static const int tdtypes[5] = { TIDE_F32, TIDE_F16, TIDE_Q8_0, TIDE_Q4_0, TIDE_BF16 };
static const int tndims[5] = { 2, 1, 2, 4, 3 };
static const int64_t tne[5][4] = { { 3, 2 }, { 5 }, { 64, 2 }, { 32, 1, 1, 2 }, { 7, 1, 3 } };
static const size_t tbytes[5] = { 24, 10, 136, 36, 42 };

static const int32_t arr_i32[5] = { 1, -2, 3, -2147483647 - 1, 2147483647 };
static const float arr_f32[3] = { 0.5f, -1.25f, 1e30f };
static const uint8_t arr_u8[3] = { 0, 1, 255 };
static const int64_t arr_i64[2] = { INT64_MIN, INT64_MAX };
static const double arr_f64[2] = { 3.25, -1e300 };
static const uint16_t arr_u16[2] = { 65535, 7 };
static const char *const arr_str[4] = { "a", "", "h\xc3\xa9llo", "tokens" };

/* Writes the small test file: every value type, arrays, five tensors.
** Returns the first failing status. */
static int build_small(tide_env *env, const char *path, int version, uint32_t align) {
  tide_gguf_writer *w;
  int st = tide_gguf_writer_new(env, &w);
  if (st) return st;
#define TRY(call) do { if ((st = (call))) goto done; } while (0)
  TRY(tide_gguf_writer_set_str(w, "general.architecture", "llama", 5));
  if (align) TRY(tide_gguf_writer_set_int(w, "general.alignment", TIDE_GGUF_UINT32, align));
  TRY(tide_gguf_writer_set_int(w, "t.u8", TIDE_GGUF_UINT8, 200));
  TRY(tide_gguf_writer_set_int(w, "t.i8", TIDE_GGUF_INT8, -100));
  TRY(tide_gguf_writer_set_int(w, "t.u16", TIDE_GGUF_UINT16, 60000));
  TRY(tide_gguf_writer_set_int(w, "t.i16", TIDE_GGUF_INT16, -30000));
  TRY(tide_gguf_writer_set_int(w, "t.u32", TIDE_GGUF_UINT32, 4000000000));
  TRY(tide_gguf_writer_set_int(w, "t.i32", TIDE_GGUF_INT32, -2000000000));
  TRY(tide_gguf_writer_set_float(w, "t.f32", TIDE_GGUF_FLOAT32, 1.5));
  TRY(tide_gguf_writer_set_int(w, "t.bool", TIDE_GGUF_BOOL, 1));
  TRY(tide_gguf_writer_set_str(w, "t.str", "hello, world", 12));
  TRY(tide_gguf_writer_set_int(w, "t.u64", TIDE_GGUF_UINT64, ((int64_t)1 << 62) + 5));
  TRY(tide_gguf_writer_set_int(w, "t.i64", TIDE_GGUF_INT64, -((int64_t)1 << 62)));
  TRY(tide_gguf_writer_set_float(w, "t.f64", TIDE_GGUF_FLOAT64, 3.141592653589793));
  TRY(tide_gguf_writer_set_str(w, "t.empty", "", 0));
  TRY(tide_gguf_writer_set_arr(w, "a.i32", TIDE_GGUF_INT32, arr_i32, 5));
  TRY(tide_gguf_writer_set_arr(w, "a.f32", TIDE_GGUF_FLOAT32, arr_f32, 3));
  TRY(tide_gguf_writer_set_arr(w, "a.u8", TIDE_GGUF_UINT8, arr_u8, 3));
  TRY(tide_gguf_writer_set_arr(w, "a.bool", TIDE_GGUF_BOOL, arr_u8, 2));
  TRY(tide_gguf_writer_set_arr(w, "a.i64", TIDE_GGUF_INT64, arr_i64, 2));
  TRY(tide_gguf_writer_set_arr(w, "a.f64", TIDE_GGUF_FLOAT64, arr_f64, 2));
  TRY(tide_gguf_writer_set_arr(w, "a.u16", TIDE_GGUF_UINT16, arr_u16, 2));
  TRY(tide_gguf_writer_set_arr(w, "a.none", TIDE_GGUF_INT32, NULL, 0));
  TRY(tide_gguf_writer_set_arr_str(w, "a.str", arr_str, NULL, 4));
  TRY(tide_gguf_writer_set_arr_str(w, "a.str0", NULL, NULL, 0));
  for (int i = 0; i < 5; i++) {
    for (size_t k = 0; k < sizeof tdata[i]; k++) tdata[i][k] = (unsigned char)(i * 7 + k);
    TRY(tide_gguf_writer_add_tensor(w, tnames[i], tdtypes[i], tndims[i], tne[i], tdata[i]));
  }
  TRY(tide_gguf_writer_write(w, path, version));
#undef TRY
done:
  tide_gguf_writer_free(w);
  return st;
}

/* Opens buf[0, len) from an exact-size copy (so ASan sees over-reads). */
static int open_copy(tide_env *env, const unsigned char *buf, size_t len, tide_gguf **g) {
  unsigned char *copy = malloc(len ? len : 1);
  int st;
  memcpy(copy, buf, len);
  st = tide_gguf_open_memory(env, copy, len, g);
  tide_gguf_free(*g);
  *g = NULL;
  free(copy);
  return st;
}

/* Expects buf to be rejected with status want and a message. */
static int expect_bad(tide_env *env, const unsigned char *buf, size_t len,
                      int want, const char *what) {
  tide_gguf *g = (tide_gguf *)1;
  int st = tide_gguf_open_memory(env, buf, len, &g);
  CHECKF(st == want && g == NULL && tide_env_errmsg(env)[0],
         "%s: status %d (want %d), message '%s'", what, st, want, tide_env_errmsg(env));
  if (!st) tide_gguf_free(g);
  return st;
}

/* ---------------------------------------------------------------- layout */

/* Where the fields of a (valid) GGUF file are, found independently of
** gguf.c so corruption tests can patch them. */
enum { F_U64, F_VTYPE, F_ATYPE, F_NDIMS, F_DTYPE, F_TOFF };
typedef struct { size_t off; int kind; } field;
typedef struct {
  field f[2048];
  int n;
  size_t data_start, data_end;   /* absolute; data_end: end of the last byte */
  size_t key_off[64], val_off[64];
  int n_kv;
  size_t last_toff;              /* offset field of the tensor ending last */
  size_t tname_off[64];          /* name length field of each tensor */
} layout;

static uint64_t rd64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void add_field(layout *L, size_t off, int kind) {
  if (L->n < (int)(sizeof L->f / sizeof L->f[0])) L->f[L->n++] = (field){ off, kind };
}

/* every: record only every every-th element of string arrays. */
static void walk(const unsigned char *b, layout *L, int every) {
  static const size_t sz[13] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
  uint64_t nt = rd64(b + 8), nk = rd64(b + 16), align = 32, end = 0;
  size_t pos = 24, toffs[64];
  int64_t tbytes_[64];
  memset(L, 0, sizeof *L);
  add_field(L, 8, F_U64);
  add_field(L, 16, F_U64);
  for (uint64_t i = 0; i < nk; i++) {
    uint64_t len = rd64(b + pos);
    uint32_t t;
    if (L->n_kv < 64) L->key_off[L->n_kv] = pos;
    add_field(L, pos, F_U64);
    if (len == 17 && memcmp(b + pos + 8, "general.alignment", 17) == 0)
      align = rd32(b + pos + 8 + 17 + 4);
    pos += 8 + len;
    add_field(L, pos, F_VTYPE);
    t = rd32(b + pos);
    pos += 4;
    if (L->n_kv < 64) L->val_off[L->n_kv++] = pos;
    if (t == 8) { add_field(L, pos, F_U64); pos += 8 + rd64(b + pos); }
    else if (t == 9) {
      uint32_t at = rd32(b + pos);
      uint64_t n = rd64(b + pos + 4);
      add_field(L, pos, F_ATYPE);
      add_field(L, pos + 4, F_U64);
      pos += 12;
      if (at != 8) pos += n * sz[at];
      else for (uint64_t k = 0; k < n; k++) {
        if (k % every == 0) add_field(L, pos, F_U64);
        pos += 8 + rd64(b + pos);
      }
    } else pos += sz[t];
  }
  for (uint64_t i = 0; i < nt && i < 64; i++) {
    uint32_t nd;
    int64_t nel = 1;
    int dt;
    add_field(L, pos, F_U64);
    L->tname_off[i] = pos;
    pos += 8 + rd64(b + pos);
    add_field(L, pos, F_NDIMS);
    nd = rd32(b + pos);
    pos += 4;
    for (uint32_t d = 0; d < nd; d++) {
      add_field(L, pos, F_U64);
      nel *= (int64_t)rd64(b + pos);
      pos += 8;
    }
    add_field(L, pos, F_DTYPE);
    dt = (int)rd32(b + pos);
    tbytes_[i] = nel / tide_dtype_block(dt) * (int64_t)tide_dtype_block_bytes(dt);
    add_field(L, pos + 4, F_TOFF);
    toffs[i] = pos + 4;
    pos += 12;
  }
  L->data_start = (pos + align - 1) / align * align;
  for (uint64_t i = 0; i < nt && i < 64; i++) {
    uint64_t e = L->data_start + rd64(b + toffs[i]) + (uint64_t)tbytes_[i];
    if (e >= end) { end = e; L->last_toff = toffs[i]; }
  }
  L->data_end = end;
}

/* ---------------------------------------------------------------- tests */

static void check_small(tide_env *env, tide_gguf *g, int version, uint32_t align) {
  int64_t v;
  double d;
  int b;
  const char *s;
  size_t len;
  tide_gguf_arr a;
  tide_tensor_info ti;
  CHECK(tide_gguf_version(g) == (uint32_t)version);
  CHECK(tide_gguf_n_kv(g) == 24 + (align != 0));
  CHECK(strcmp(tide_gguf_key(g, 0), "general.architecture") == 0);
  CHECK(tide_gguf_find(g, "t.u8") == 1 + (align != 0));
  CHECK(tide_gguf_kv_type(g, tide_gguf_find(g, "t.f64")) == TIDE_GGUF_FLOAT64);
  CHECK(tide_gguf_find(g, "missing") == -1 && tide_gguf_find(g, "") == -1);
  CHECK(tide_gguf_get_int(g, "t.u8", &v) == 0 && v == 200);
  CHECK(tide_gguf_get_int(g, "t.i8", &v) == 0 && v == -100);
  CHECK(tide_gguf_get_int(g, "t.u16", &v) == 0 && v == 60000);
  CHECK(tide_gguf_get_int(g, "t.i16", &v) == 0 && v == -30000);
  CHECK(tide_gguf_get_int(g, "t.u32", &v) == 0 && v == 4000000000);
  CHECK(tide_gguf_get_int(g, "t.i32", &v) == 0 && v == -2000000000);
  CHECK(tide_gguf_get_int(g, "t.u64", &v) == 0 && v == ((int64_t)1 << 62) + 5);
  CHECK(tide_gguf_get_int(g, "t.i64", &v) == 0 && v == -((int64_t)1 << 62));
  CHECK(tide_gguf_get_float(g, "t.f32", &d) == 0 && d == 1.5);
  CHECK(tide_gguf_get_float(g, "t.f64", &d) == 0 && d == 3.141592653589793);
  CHECK(tide_gguf_get_bool(g, "t.bool", &b) == 0 && b == 1);
  CHECK(tide_gguf_get_str(g, "t.str", &s, &len) == 0 && len == 12 && memcmp(s, "hello, world", 12) == 0);
  CHECK(tide_gguf_get_str(g, "t.empty", &s, &len) == 0 && len == 0);
  if (align) CHECK(tide_gguf_get_int(g, "general.alignment", &v) == 0 && v == align);
  /* arrays */
  CHECK(tide_gguf_get_arr(g, "a.i32", &a) == 0 && a.type == TIDE_GGUF_INT32 && a.n == 5);
  for (int i = 0; i < 5; i++) CHECK(tide_gguf_arr_int(&a, i) == arr_i32[i]);
  CHECK(tide_gguf_get_arr(g, "a.f32", &a) == 0 && a.type == TIDE_GGUF_FLOAT32 && a.n == 3);
  for (int i = 0; i < 3; i++) CHECK(tide_gguf_arr_float(&a, i) == arr_f32[i]);
  CHECK(tide_gguf_get_arr(g, "a.u8", &a) == 0 && a.n == 3 && tide_gguf_arr_int(&a, 2) == 255);
  CHECK(tide_gguf_get_arr(g, "a.bool", &a) == 0 && a.type == TIDE_GGUF_BOOL && a.n == 2 &&
        tide_gguf_arr_int(&a, 1) == 1);
  CHECK(tide_gguf_get_arr(g, "a.i64", &a) == 0 && tide_gguf_arr_int(&a, 0) == INT64_MIN &&
        tide_gguf_arr_int(&a, 1) == INT64_MAX);
  CHECK(tide_gguf_get_arr(g, "a.f64", &a) == 0 && tide_gguf_arr_float(&a, 1) == -1e300);
  CHECK(tide_gguf_get_arr(g, "a.u16", &a) == 0 && tide_gguf_arr_int(&a, 0) == 65535 &&
        tide_gguf_arr_float(&a, 1) == 7.0);
  CHECK(tide_gguf_get_arr(g, "a.none", &a) == 0 && a.n == 0);
  CHECK(tide_gguf_get_arr(g, "a.str", &a) == 0 && a.type == TIDE_GGUF_STRING && a.n == 4);
  for (int i = 0; i < 4; i++) {
    s = tide_gguf_arr_str(&a, i, &len);
    CHECK(len == strlen(arr_str[i]) && memcmp(s, arr_str[i], len) == 0);
  }
  CHECK(tide_gguf_get_arr(g, "a.str0", &a) == 0 && a.type == TIDE_GGUF_STRING && a.n == 0);
  /* tensors */
  CHECK(tide_gguf_n_tensors(g) == 5);
  for (int i = 0; i < 5; i++) {
    int64_t k = tide_gguf_find_tensor(g, tnames[i]);
    CHECK(k == i);
    CHECK(tide_gguf_tensor(g, k, &ti) == 0);
    CHECK(strcmp(ti.name, tnames[i]) == 0 && ti.dtype == tdtypes[i] && ti.n_dims == tndims[i]);
    for (int j = 0; j < 4; j++) CHECK(ti.ne[j] == (j < tndims[i] ? tne[i][j] : 1));
    CHECK(ti.nbytes == tbytes[i]);
    CHECK(ti.offset % (align ? align : 32) == 0);
    CHECK(memcmp(ti.data, tdata[i], ti.nbytes) == 0);
  }
  CHECK(tide_gguf_find_tensor(g, "w.f3") == -1);
  CHECK(tide_gguf_tensor(g, 5, &ti) == TIDE_ERR_ARG && tide_gguf_tensor(g, -1, &ti) == TIDE_ERR_ARG);
  (void)env;
}

static void test_roundtrip(void) {
  static const uint32_t aligns[3] = { 0, 32, 64 };
  tide_env *env;
  CHECK(tide_env_new(&env, NULL, NULL) == 0);
  for (int version = 2; version <= 3; version++)
    for (int k = 0; k < 3; k++) {
      const char *path = tmpfile_name("rt");
      tide_gguf *g;
      unsigned char *buf;
      size_t size;
      CHECK(build_small(env, path, version, aligns[k]) == 0);
      CHECK(tide_gguf_open(env, path, &g) == 0);
      if (g) { check_small(env, g, version, aligns[k]); tide_gguf_free(g); }
      buf = read_file(path, &size);
      CHECK(buf != NULL);
      CHECK(tide_gguf_open_memory(env, buf, size, &g) == 0);
      if (g) { check_small(env, g, version, aligns[k]); tide_gguf_free(g); }
      free(buf);
      remove(path);
    }
  tide_env_free(env);
}

static void test_getter_errors(void) {
  tide_env *env;
  tide_gguf *g;
  int64_t v;
  double d;
  int b;
  const char *s;
  size_t len;
  tide_gguf_arr a;
  const char *path = tmpfile_name("get");
  CHECK(tide_env_new(&env, NULL, NULL) == 0);
  CHECK(build_small(env, path, 3, 0) == 0);
  CHECK(tide_gguf_open(env, path, &g) == 0);
  if (!g) { tide_env_free(env); return; }
  CHECK(tide_gguf_get_int(g, "nope", &v) == TIDE_ERR_NOTFOUND && has(tide_env_errmsg(env), "'nope'"));
  CHECK(tide_gguf_get_int(g, "t.str", &v) == TIDE_ERR_FORMAT);
  CHECKF(has(tide_env_errmsg(env), "'t.str'") && has(tide_env_errmsg(env), "string"), "%s", tide_env_errmsg(env));
  CHECK(tide_gguf_get_int(g, "t.bool", &v) == TIDE_ERR_FORMAT);
  CHECK(tide_gguf_get_int(g, "t.f32", &v) == TIDE_ERR_FORMAT);
  CHECK(tide_gguf_get_float(g, "t.i32", &d) == TIDE_ERR_FORMAT && has(tide_env_errmsg(env), "int32"));
  CHECK(tide_gguf_get_bool(g, "t.u8", &b) == TIDE_ERR_FORMAT);
  CHECK(tide_gguf_get_str(g, "t.u8", &s, &len) == TIDE_ERR_FORMAT);
  CHECK(tide_gguf_get_arr(g, "t.str", &a) == TIDE_ERR_FORMAT);
  CHECK(tide_gguf_get_str(g, "a.str", &s, &len) == TIDE_ERR_FORMAT && has(tide_env_errmsg(env), "array"));
  CHECK(tide_gguf_key(g, -1) == NULL && tide_gguf_key(g, 1000) == NULL);
  tide_gguf_free(g);
  CHECK(tide_gguf_open(env, "/nonexistent/tide.gguf", &g) == TIDE_ERR_IO && g == NULL);
  CHECK(has(tide_env_errmsg(env), "'/nonexistent/tide.gguf'"));
  remove(path);
  tide_env_free(env);
}

static void test_writer(void) {
  tide_env *env;
  tide_gguf_writer *w;
  tide_gguf *g;
  const char *path = tmpfile_name("w");
  int64_t ne[2] = { 33, 1 }, v;
  float f[4] = { 0 };
  CHECK(tide_env_new(&env, NULL, NULL) == 0);
  CHECK(tide_gguf_writer_new(env, &w) == 0);
  CHECK(tide_gguf_writer_set_int(w, "a", TIDE_GGUF_INT32, 1) == 0);
  CHECK(tide_gguf_writer_set_str(w, "b", "x", 1) == 0);
  CHECK(tide_gguf_writer_set_float(w, "a", TIDE_GGUF_FLOAT32, 2.5) == 0);
  CHECK(tide_gguf_writer_set_int(w, "c", TIDE_GGUF_UINT8, 256) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_int(w, "c", TIDE_GGUF_INT8, -129) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_int(w, "c", TIDE_GGUF_UINT64, -1) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_int(w, "c", TIDE_GGUF_FLOAT32, 1) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_int(w, "c", 99, 1) == TIDE_ERR_ARG && has(tide_env_errmsg(env), "'c'"));
  CHECK(tide_gguf_writer_set_float(w, "c", TIDE_GGUF_INT32, 1) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_arr(w, "c", TIDE_GGUF_STRING, f, 1) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_arr(w, "c", TIDE_GGUF_ARRAY, f, 1) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_arr(w, "c", TIDE_GGUF_INT32, f, -1) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_int(w, "general.alignment", TIDE_GGUF_UINT32, 48) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_int(w, "general.alignment", TIDE_GGUF_UINT32, 0) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_int(w, "general.alignment", TIDE_GGUF_UINT64, 64) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_str(w, "general.alignment", "64", 2) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_set_int(w, NULL, TIDE_GGUF_INT32, 1) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_add_tensor(w, "t", 99, 1, ne, f) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_add_tensor(w, "t", TIDE_F32, 5, ne, f) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_add_tensor(w, "t", TIDE_F32, 0, ne, f) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_add_tensor(w, "t", TIDE_Q8_0, 2, ne, f) == TIDE_ERR_ARG);
  ne[0] = 4;
  CHECK(tide_gguf_writer_add_tensor(w, "t", TIDE_F32, 1, ne, NULL) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_add_tensor(w, "t", TIDE_F32, 1, ne, f) == 0);
  CHECK(tide_gguf_writer_add_tensor(w, "t", TIDE_F32, 1, ne, f) == TIDE_ERR_ARG &&
        has(tide_env_errmsg(env), "'t'"));
  CHECK(tide_gguf_writer_write(w, path, 1) == TIDE_ERR_ARG);
  CHECK(tide_gguf_writer_write(w, "/nonexistent/x.gguf", 3) == TIDE_ERR_IO);
  CHECKF(has(tide_env_errmsg(env), "/nonexistent/x.gguf"), "%s", tide_env_errmsg(env));
  CHECK(tide_gguf_writer_write(w, path, 2) == 0);
  CHECK(tide_gguf_writer_set_int(w, "d", TIDE_GGUF_INT32, 1) == TIDE_ERR_STATE);
  tide_gguf_writer_free(w);
  tide_gguf_writer_free(NULL);
  CHECK(tide_gguf_open(env, path, &g) == 0);
  if (g) {
    double d;
    CHECK(tide_gguf_n_kv(g) == 2 && strcmp(tide_gguf_key(g, 0), "a") == 0);
    CHECK(tide_gguf_kv_type(g, 0) == TIDE_GGUF_FLOAT32);
    CHECK(tide_gguf_get_float(g, "a", &d) == 0 && d == 2.5);
    CHECK(tide_gguf_get_int(g, "a", &v) == TIDE_ERR_FORMAT);
    CHECK(tide_gguf_version(g) == 2 && tide_gguf_n_tensors(g) == 1);
    tide_gguf_free(g);
  }
  tide_gguf_free(NULL);
  remove(path);
  tide_env_free(env);
}

static void patch64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void patch32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Every u64 count/length/ne/offset field set to huge values. */
static void patch_counts(tide_env *env, unsigned char *buf, size_t size, const layout *L) {
  const uint64_t huge[] = { UINT64_MAX, (uint64_t)1 << 62, (uint64_t)1 << 63,
                            (uint64_t)INT64_MAX, (uint64_t)1 << 32, UINT64_MAX - 31,
                            (uint64_t)size * 64 };
  int fails = 0;
  for (int i = 0; i < L->n; i++) {
    unsigned char save[8];
    if (L->f[i].kind != F_U64 && L->f[i].kind != F_TOFF) continue;
    memcpy(save, buf + L->f[i].off, 8);
    for (size_t k = 0; k < sizeof huge / sizeof huge[0]; k++) {
      char what[64];
      snprintf(what, sizeof what, "u64 at %zu = %llu", L->f[i].off, (unsigned long long)huge[k]);
      patch64(buf + L->f[i].off, huge[k]);
      fails += expect_bad(env, buf, size, TIDE_ERR_FORMAT, what) != TIDE_ERR_FORMAT;
    }
    memcpy(buf + L->f[i].off, save, 8);
  }
  CHECK(fails == 0);
}

/* u32 fields: value types, array types, n_dims, dtypes. */
static void patch_types(tide_env *env, unsigned char *buf, size_t size, const layout *L) {
  for (int i = 0; i < L->n; i++) {
    static const uint32_t vt[] = { 13, 99, 0xffffffffu }, at[] = { 9, 13, 0xffffffffu },
                          nd[] = { 0, 5, 0xffffffffu }, dt[] = { 99, 40, 0xffffffffu, 31 };
    const uint32_t *vals;
    size_t n;
    uint32_t save;
    switch (L->f[i].kind) {
    case F_VTYPE: vals = vt; n = 3; break;
    case F_ATYPE: vals = at; n = 3; break;
    case F_NDIMS: vals = nd; n = 3; break;
    case F_DTYPE: vals = dt; n = 4; break;
    default: continue;
    }
    save = rd32(buf + L->f[i].off);
    for (size_t k = 0; k < n; k++) {
      char what[64];
      snprintf(what, sizeof what, "u32 at %zu (kind %d) = %u", L->f[i].off, L->f[i].kind, vals[k]);
      patch32(buf + L->f[i].off, vals[k]);
      expect_bad(env, buf, size, TIDE_ERR_FORMAT, what);
      if (L->f[i].kind == F_DTYPE)
        CHECKF(has(tide_env_errmsg(env), "tensor '") && has(tide_env_errmsg(env), "unknown"),
               "%s", tide_env_errmsg(env));
    }
    if (L->f[i].kind == F_DTYPE) {  /* a ggml type tide lacks: q5_K */
      patch32(buf + L->f[i].off, 13);
      expect_bad(env, buf, size, TIDE_ERR_UNSUPPORTED, "dtype q5_K");
      CHECKF(has(tide_env_errmsg(env), "q5_K"), "%s", tide_env_errmsg(env));
    }
    patch32(buf + L->f[i].off, save);
  }
}

static void test_corrupt_small(void) {
  tide_env *env;
  tide_gguf *g;
  layout L;
  unsigned char *buf, save[8];
  size_t size;
  const char *path = tmpfile_name("bad");
  int fails = 0;
  CHECK(tide_env_new(&env, NULL, NULL) == 0);
  CHECK(build_small(env, path, 3, 64) == 0);
  buf = read_file(path, &size);
  remove(path);
  if (!buf) { tide_env_free(env); return; }
  walk(buf, &L, 1);
  CHECK(L.data_end <= size && L.data_end > L.data_start);
  /* (a) every truncation short of the last tensor's data fails */
  for (size_t len = 0; len < size; len++) {
    int st = open_copy(env, buf, len, &g);
    if (len < L.data_end) fails += st != TIDE_ERR_FORMAT || !tide_env_errmsg(env)[0];
    else fails += st != TIDE_OK;
  }
  CHECKF(fails == 0, "%d truncations misjudged", fails);
  /* (b), (c) */
  patch_counts(env, buf, size, &L);
  patch_types(env, buf, size, &L);
  /* (d) a string one byte too long for the file: the last key's value */
  memcpy(save, buf + L.key_off[0], 8);
  patch64(buf + L.key_off[0], size - L.key_off[0] - 7);
  expect_bad(env, buf, size, TIDE_ERR_FORMAT, "key one byte too long");
  CHECKF(has(tide_env_errmsg(env), "gguf offset 24:"), "%s", tide_env_errmsg(env));
  memcpy(buf + L.key_off[0], save, 8);
  /* (e) tensor data past the end, misaligned */
  memcpy(save, buf + L.last_toff, 8);
  patch64(buf + L.last_toff, (size - L.data_start + 63) / 64 * 64);
  expect_bad(env, buf, size, TIDE_ERR_FORMAT, "tensor past end");
  CHECKF(has(tide_env_errmsg(env), "tensor 'w.") && has(tide_env_errmsg(env), "past end of file"),
         "%s", tide_env_errmsg(env));
  patch64(buf + L.last_toff, rd64(save) + 32);
  expect_bad(env, buf, size, TIDE_ERR_FORMAT, "tensor misaligned");
  CHECKF(has(tide_env_errmsg(env), "alignment 64"), "%s", tide_env_errmsg(env));
  memcpy(buf + L.last_toff, save, 8);
  /* header: magic, version 1, version 4 */
  buf[0] = 'X';
  expect_bad(env, buf, size, TIDE_ERR_FORMAT, "bad magic");
  buf[0] = 'G';
  buf[4] = 1;
  expect_bad(env, buf, size, TIDE_ERR_FORMAT, "version 1");
  CHECKF(has(tide_env_errmsg(env), "version 1"), "%s", tide_env_errmsg(env));
  buf[4] = 4;
  expect_bad(env, buf, size, TIDE_ERR_FORMAT, "version 4");
  buf[4] = 3;
  /* general.alignment (key 1) 0, 3, 48 */
  for (int k = 0; k < 3; k++) {
    static const uint32_t bad[3] = { 0, 3, 48 };
    patch32(buf + L.val_off[1], bad[k]);
    expect_bad(env, buf, size, TIDE_ERR_FORMAT, "alignment");
    CHECKF(has(tide_env_errmsg(env), "'general.alignment'"), "%s", tide_env_errmsg(env));
  }
  patch32(buf + L.val_off[1], 64);
  /* general.alignment as int32 */
  patch32(buf + L.val_off[1] - 4, TIDE_GGUF_INT32);
  expect_bad(env, buf, size, TIDE_ERR_FORMAT, "alignment type");
  patch32(buf + L.val_off[1] - 4, TIDE_GGUF_UINT32);
  /* duplicate key: "t.i8" (key 3) -> "t.u8"; zero byte in a key */
  buf[L.key_off[3] + 8 + 2] = 'u';
  expect_bad(env, buf, size, TIDE_ERR_FORMAT, "duplicate key");
  CHECKF(has(tide_env_errmsg(env), "'t.u8'") && has(tide_env_errmsg(env), "duplicate"), "%s", tide_env_errmsg(env));
  buf[L.key_off[3] + 8 + 2] = 0;
  expect_bad(env, buf, size, TIDE_ERR_FORMAT, "zero in key");
  buf[L.key_off[3] + 8 + 2] = 'i';
  /* t.u64 above INT64_MAX: opens, get_int refuses */
  buf[L.val_off[11] + 7] = 0xff;
  CHECK(tide_gguf_open_memory(env, buf, size, &g) == 0);
  if (g) {
    int64_t v;
    CHECK(tide_gguf_get_int(g, "t.u64", &v) == TIDE_ERR_FORMAT);
    tide_gguf_free(g);
  }
  buf[L.val_off[11] + 7] = 0x40;
  /* duplicate tensor: "w.f16" (tensor 1) -> "w.f32" */
  buf[L.tname_off[1] + 8 + 3] = '3';
  buf[L.tname_off[1] + 8 + 4] = '2';
  expect_bad(env, buf, size, TIDE_ERR_FORMAT, "duplicate tensor");
  CHECKF(has(tide_env_errmsg(env), "'w.f32'") && has(tide_env_errmsg(env), "duplicate"),
         "%s", tide_env_errmsg(env));
  buf[L.tname_off[1] + 8 + 3] = '1';
  buf[L.tname_off[1] + 8 + 4] = '6';
  /* after all of that the env still works and the file loads */
  CHECK(tide_gguf_open_memory(env, buf, size, &g) == 0);
  if (g) { check_small(env, g, 3, 64); tide_gguf_free(g); }
  free(buf);
  tide_env_free(env);
}

static void test_fixture(void) {
  const char *fx = test_fixtures();
  char path[512];
  tide_env *env;
  tide_gguf *g;
  int64_t v;
  double d;
  int b;
  const char *s;
  size_t len;
  tide_gguf_arr a;
  tide_tensor_info ti;
  FILE *f;
  if (!fx) SKIP("no fixtures");
  snprintf(path, sizeof path, "%s/models/llama-spm-tiny.gguf", fx);
  if (!(f = fopen(path, "rb"))) SKIP("llama-spm-tiny.gguf absent");
  fclose(f);
  CHECK(tide_env_new(&env, NULL, NULL) == 0);
  CHECK(tide_gguf_open(env, path, &g) == 0);
  if (!g) { fprintf(stderr, "  %s\n", tide_env_errmsg(env)); tide_env_free(env); return; }
  CHECK(tide_gguf_version(g) == 3 && tide_gguf_n_kv(g) == 23 && tide_gguf_n_tensors(g) == 20);
  CHECK(tide_gguf_get_str(g, "general.architecture", &s, &len) == 0 && len == 5 && !memcmp(s, "llama", 5));
  CHECK(tide_gguf_get_int(g, "llama.block_count", &v) == 0 && v == 2);
  CHECK(tide_gguf_get_int(g, "llama.embedding_length", &v) == 0 && v == 64);
  CHECK(tide_gguf_get_int(g, "llama.context_length", &v) == 0 && v == 256);
  CHECK(tide_gguf_get_int(g, "llama.feed_forward_length", &v) == 0 && v == 192);
  CHECK(tide_gguf_get_int(g, "llama.attention.head_count", &v) == 0 && v == 4);
  CHECK(tide_gguf_get_int(g, "llama.attention.head_count_kv", &v) == 0 && v == 2);
  CHECK(tide_gguf_get_int(g, "llama.rope.dimension_count", &v) == 0 && v == 16);
  CHECK(tide_gguf_get_int(g, "llama.vocab_size", &v) == 0 && v == 32000);
  CHECK(tide_gguf_get_int(g, "general.file_type", &v) == 0 && v == 0);
  CHECK(tide_gguf_get_float(g, "llama.rope.freq_base", &d) == 0 && d == 10000.0);
  CHECK(tide_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &d) == 0 && fabs(d - 1e-5) < 1e-9);
  CHECK(tide_gguf_get_str(g, "tokenizer.ggml.model", &s, &len) == 0 && len == 5 && !memcmp(s, "llama", 5));
  CHECK(tide_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) == 0 && b == 1);
  CHECK(tide_gguf_get_arr(g, "tokenizer.ggml.tokens", &a) == 0 && a.type == TIDE_GGUF_STRING && a.n == 32000);
  if (a.n == 32000) {
    s = tide_gguf_arr_str(&a, 1, &len);
    CHECK(len == 3 && memcmp(s, "<s>", 3) == 0);
    s = tide_gguf_arr_str(&a, 2, &len);
    CHECK(len == 4 && memcmp(s, "</s>", 4) == 0);
    s = tide_gguf_arr_str(&a, 31999, &len);
    CHECK(len > 0 && len < 32);
  }
  CHECK(tide_gguf_get_arr(g, "tokenizer.ggml.scores", &a) == 0 && a.type == TIDE_GGUF_FLOAT32 && a.n == 32000);
  CHECK(tide_gguf_get_arr(g, "tokenizer.ggml.token_type", &a) == 0 && a.type == TIDE_GGUF_INT32 && a.n == 32000);
  if (a.n == 32000) CHECK(tide_gguf_arr_int(&a, 1) == TIDE_TOKEN_CONTROL && tide_gguf_arr_int(&a, 3) == TIDE_TOKEN_BYTE);
  CHECK(tide_gguf_find_tensor(g, "output.weight") == -1);
  CHECK(tide_gguf_tensor(g, tide_gguf_find_tensor(g, "token_embd.weight"), &ti) == 0);
  CHECK(ti.dtype == TIDE_F32 && ti.n_dims == 2 && ti.ne[0] == 64 && ti.ne[1] == 32000 &&
        ti.nbytes == (size_t)64 * 32000 * 4 && ti.offset % 32 == 0);
  if (ti.dtype == TIDE_F32 && ti.nbytes == (size_t)64 * 32000 * 4) {
    double s2 = 0;  /* the embedding was drawn with std 0.35 */
    for (int i = 0; i < 64 * 1000; i++) { float x; memcpy(&x, (const char *)ti.data + 4 * i, 4); s2 += x * x; }
    CHECK_NEAR(sqrt(s2 / 64000), 0.35, 0.02);
  }
  CHECK(tide_gguf_tensor(g, tide_gguf_find_tensor(g, "blk.1.ffn_down.weight"), &ti) == 0);
  CHECK(ti.ne[0] == 192 && ti.ne[1] == 64 && ti.dtype == TIDE_F32);
  CHECK(tide_gguf_tensor(g, tide_gguf_find_tensor(g, "blk.0.attn_k.weight"), &ti) == 0);
  CHECK(ti.ne[0] == 64 && ti.ne[1] == 32);
  CHECK(tide_gguf_tensor(g, tide_gguf_find_tensor(g, "output_norm.weight"), &ti) == 0);
  CHECK(ti.n_dims == 1 && ti.ne[0] == 64 && ti.offset + ti.nbytes <= 9311584);
  tide_gguf_free(g);
  tide_env_free(env);
}

static void test_corrupt_fixture(void) {
  const char *fx = test_fixtures();
  char path[512];
  tide_env *env;
  tide_gguf *g;
  unsigned char *buf;
  size_t size;
  layout L;
  int fails = 0, n = 0;
  if (!fx) SKIP("no fixtures");
  snprintf(path, sizeof path, "%s/models/llama-spm-tiny.gguf", fx);
  if (!(buf = read_file(path, &size))) SKIP("llama-spm-tiny.gguf absent");
  CHECK(tide_env_new(&env, NULL, NULL) == 0);
  walk(buf, &L, 997);
  CHECK(L.data_end <= size);
  /* every byte of the first 1 KiB, then ~300 spread over the rest */
  for (size_t len = 0; len < size; len += len < 1024 ? 1 : size / 300 + 17, n++) {
    int st = open_copy(env, buf, len, &g);
    if (len < L.data_end) fails += st != TIDE_ERR_FORMAT || !tide_env_errmsg(env)[0];
    else fails += st != TIDE_OK;
  }
  CHECKF(fails == 0, "%d of %d truncations misjudged", fails, n);
  patch_counts(env, buf, size, &L);
  patch_types(env, buf, size, &L);
  CHECK(tide_gguf_open_memory(env, buf, size, &g) == 0);
  tide_gguf_free(g);
  free(buf);
  tide_env_free(env);
}

/* Steps the failing allocation upward until the operation succeeds. */
static void test_nomem(void) {
  const char *fx = test_fixtures();
  char fpath[512];
  const char *path = tmpfile_name("nomem");
  unsigned char *buf = NULL;
  size_t size = 0;
  int done = 0, leaks = 0, bad = 0;
  for (long n = 1; n < 200 && !done; n++) {  /* writer */
    test_allocator a = { 0 };
    tide_env *env;
    int st;
    if (tide_env_new(&env, test_alloc_fn, &a)) { bad++; break; }
    a.n_alloc = 0;
    a.fail_at = n;
    st = build_small(env, path, 3, 64);
    if (st == TIDE_OK) done = 1;
    else bad += st != TIDE_ERR_NOMEM;
    tide_env_free(env);
    leaks += a.live != 0;
  }
  CHECK(done && !leaks && !bad);
  buf = read_file(path, &size);
  remove(path);
  snprintf(fpath, sizeof fpath, "%s/models/llama-spm-tiny.gguf", fx ? fx : ".");
  for (int which = 0; which < 2; which++) {  /* open_memory, open (fixture) */
    done = leaks = bad = 0;
    if (which == 1 && (!fx || access(fpath, R_OK) != 0)) break;
    for (long n = 1; n < 50 && !done; n++) {
      test_allocator a = { 0 };
      tide_env *env;
      tide_gguf *g = (tide_gguf *)1;
      long long base;
      int st;
      if (tide_env_new(&env, test_alloc_fn, &a)) { bad++; break; }
      base = a.live;
      a.n_alloc = 0;
      a.fail_at = n;
      st = which ? tide_gguf_open(env, fpath, &g) : tide_gguf_open_memory(env, buf, size, &g);
      if (st == TIDE_OK) { done = 1; tide_env_free(env); tide_gguf_free(g); } /* env first */
      else {
        bad += st != TIDE_ERR_NOMEM || g != NULL;
        leaks += a.live != base;
        tide_env_free(env);
      }
      leaks += a.live != 0;
    }
    CHECKF(done && !leaks && !bad, "which %d: done %d leaks %d bad %d", which, done, leaks, bad);
  }
  free(buf);
}

TEST_MAIN(test_roundtrip, test_getter_errors, test_writer, test_corrupt_small,
          test_fixture, test_corrupt_fixture, test_nomem)
