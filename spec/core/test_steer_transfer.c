/*
** test_steer_transfer.c -- steer provenance (XXH64, the model hash, the
** source keys of steer files and frozen-trainer files) and the transfer
** of a steer between models: the shared-token matching against a sorted
** reference, self-transfer (H ~ I), an exactly rotated model (W' = Q^T W Q
** and equal steered logits), a rescaled output matrix (where H^T W H is off
** by the square of the scale and the default method is not), a permuted
** vocabulary, and the errors. The variants are written from the F32
** fixture llama-spm-tiny.gguf. Layer: tests (C unit tests of core/).
*/
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "steer.h"
#include "test.h"

/* ---------------------------------------------------------------- helpers */

static tide_env *new_env(void) {
  tide_env *env = NULL;
  tide_env_new(&env, test_count_alloc, NULL);
  return env;
}

static const char *fixture(const char *name) {
  static char p[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "%s/models/%s.gguf", test_fixtures(), name);
  return p[k];
}

static const char *tmp(const char *name) {
  static char p[4][256];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "/tmp/tide_test_transfer_%d_%s", (int)getpid(), name);
  return p[k];
}

static tide_model *load(tide_env *env, const char *path) {
  tide_model *m = NULL;
  int st = tide_model_load(env, path, NULL, &m);
  CHECKF(st == TIDE_OK, "load %s: %s", path, tide_env_errmsg(env));
  return m;
}

static uint64_t rng = 0x243f6a8885a308d3ULL;
static double drand(void) { /* uniform in [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0 * 2 - 1;
}

static tide_steer *rand_steer(tide_env *env, int32_t d, int32_t r, float s) {
  float *p1 = malloc(sizeof(float) * (size_t)(d * r)), *p2 = malloc(sizeof(float) * (size_t)(d * r));
  for (int i = 0; i < d * r; i++) p1[i] = s * (float)drand(), p2[i] = s * (float)drand();
  tide_steer *st = NULL;
  CHECK(tide_steer_new(env, d, r, p1, p2, 1e-3f, &st) == TIDE_OK);
  free(p1);
  free(p2);
  return st;
}

/* W = P1 P2^T (d, d) in double. */
static double *dense(const tide_steer *s) {
  tide_steer_info in;
  tide_steer_get_info(s, &in);
  int d = in.n_embd, r = in.rank;
  double *w = calloc((size_t)(d * d), sizeof(double));
  for (int i = 0; i < d; i++)
    for (int j = 0; j < d; j++)
      for (int k = 0; k < r; k++) w[i * d + j] += (double)in.p1[i * r + k] * in.p2[j * r + k];
  return w;
}

/* |x - y|_F / |y|_F */
static double rel_diff(const double *x, const double *y, int n) {
  double e = 0, t = 0;
  for (int i = 0; i < n; i++) e += (x[i] - y[i]) * (x[i] - y[i]), t += y[i] * y[i];
  return sqrt(e / t);
}

/* A random orthogonal (d, d): Gram-Schmidt of random columns, twice. */
static double *rand_orthogonal(int d) {
  double *q = malloc(sizeof(double) * (size_t)(d * d));
  for (int i = 0; i < d * d; i++) q[i] = drand();
  for (int j = 0; j < d; j++) /* column j: q[i*d + j] */
    for (int pass = 0; pass < 3; pass++) {
      for (int k = 0; k < j && pass < 2; k++) {
        double dot = 0;
        for (int i = 0; i < d; i++) dot += q[i * d + k] * q[i * d + j];
        for (int i = 0; i < d; i++) q[i * d + j] -= dot * q[i * d + k];
      }
      double nn = 0;
      for (int i = 0; i < d; i++) nn += q[i * d + j] * q[i * d + j];
      for (int i = 0; i < d; i++) q[i * d + j] /= sqrt(nn);
    }
  return q;
}

/* ---------------------------------------------------------------- variants */

/* A variant of the tied F32 llama fixture: the norm gains folded into the
** matrices that read the norms (gains 1, an untied output = E diag(g)), the
** residual stream rotated by q (d, d) (NULL: identity): e -> e Q on the
** embeddings and on every matrix that reads the stream, Q^T W on those that
** write it. With q orthogonal the variant computes the same logits as the
** fixture. out_scale multiplies the output matrix; perm (new id of old id)
** reorders the vocabulary; n_normal >= 0 keeps only that many tokens
** normal (the others control). */
typedef struct {
  const double *q;
  double out_scale;
  const int32_t *perm;
  int n_normal;
  const char *name;
} variant;

typedef struct { void *p[64]; int n; } bufs;

static float *buf_new(bufs *b, int64_t n) {
  float *p = malloc(sizeof(float) * (size_t)n);
  b->p[b->n++] = p;
  return p;
}

static const float *tensor_f32(const tide_gguf *g, const char *name, int64_t *ne0, int64_t *ne1) {
  tide_tensor_info ti;
  int64_t i = tide_gguf_find_tensor(g, name);
  if (i < 0 || tide_gguf_tensor(g, i, &ti) || ti.dtype != TIDE_F32) return NULL;
  if (ne0) *ne0 = ti.ne[0];
  if (ne1) *ne1 = ti.ne[1];
  return ti.data;
}

/* rows (n_out, n_in) of src -> dst: reads the stream (dst = W diag(g) Q) or
** writes it (dst = Q^T W, n_out = d). */
static void fold(float *dst, const float *src, int64_t n_out, int64_t n_in, const float *g,
                 const double *q, int writes) {
  if (writes) {
    for (int64_t i = 0; i < n_out; i++)
      for (int64_t c = 0; c < n_in; c++) {
        double acc = 0;
        for (int64_t k = 0; k < n_out; k++) acc += (q ? q[k * n_out + i] : (k == i)) * src[k * n_in + c];
        dst[i * n_in + c] = (float)acc;
      }
    return;
  }
  for (int64_t r = 0; r < n_out; r++)
    for (int64_t j = 0; j < n_in; j++) {
      double acc = 0;
      for (int64_t k = 0; k < n_in; k++)
        acc += (double)src[r * n_in + k] * (g ? g[k] : 1) * (q ? q[k * n_in + j] : (k == j));
      dst[r * n_in + j] = (float)acc;
    }
}

static int copy_kv(tide_gguf_writer *w, const tide_gguf *g, int64_t i, const variant *v,
                   int32_t n_vocab) {
  const char *key = tide_gguf_key(g, i);
  int type = tide_gguf_kv_type(g, i);
  if (!strcmp(key, "general.name")) return tide_gguf_writer_set_str(w, key, v->name, strlen(v->name));
  if (type == TIDE_GGUF_STRING) {
    const char *s;
    size_t len;
    tide_gguf_get_str(g, key, &s, &len);
    return tide_gguf_writer_set_str(w, key, s, len);
  }
  if (type == TIDE_GGUF_FLOAT32 || type == TIDE_GGUF_FLOAT64) {
    double x;
    tide_gguf_get_float(g, key, &x);
    return tide_gguf_writer_set_float(w, key, type, x);
  }
  if (type == TIDE_GGUF_BOOL) {
    int x;
    tide_gguf_get_bool(g, key, &x);
    return tide_gguf_writer_set_int(w, key, type, x);
  }
  if (type != TIDE_GGUF_ARRAY) {
    int64_t x;
    tide_gguf_get_int(g, key, &x);
    size_t kl = strlen(key);
    if (v->perm && !strncmp(key, "tokenizer.ggml.", 15) && kl > 9 && !strcmp(key + kl - 9, "_token_id")
        && x >= 0 && x < n_vocab)
      x = v->perm[x];
    return tide_gguf_writer_set_int(w, key, type, x);
  }
  tide_gguf_arr a;
  tide_gguf_get_arr(g, key, &a);
  int is_vocab = a.n == n_vocab && !strncmp(key, "tokenizer.ggml.", 15);
  if (a.type == TIDE_GGUF_STRING) {
    const char **s = malloc(sizeof(char *) * (size_t)a.n);
    size_t *l = malloc(sizeof(size_t) * (size_t)a.n);
    for (int64_t j = 0; j < a.n; j++) {
      int64_t to = is_vocab && v->perm ? v->perm[j] : j;
      s[to] = tide_gguf_arr_str(&a, j, &l[to]);
    }
    int st = tide_gguf_writer_set_arr_str(w, key, s, l, a.n);
    free(s);
    free(l);
    return st;
  }
  if (!is_vocab || (a.type != TIDE_GGUF_FLOAT32 && a.type != TIDE_GGUF_INT32))
    return tide_gguf_writer_set_arr(w, key, a.type, a.data, a.n);
  int32_t *x = malloc(4 * (size_t)a.n); /* scores or token types, permuted */
  int types = !strcmp(key, "tokenizer.ggml.token_type"), kept = 0;
  for (int64_t j = 0; j < a.n; j++) {
    int64_t to = v->perm ? v->perm[j] : j;
    if (a.type == TIDE_GGUF_FLOAT32) {
      float f = (float)tide_gguf_arr_float(&a, j);
      memcpy(&x[to], &f, 4);
    } else {
      x[to] = (int32_t)tide_gguf_arr_int(&a, j);
      if (types && v->n_normal >= 0)
        x[to] = x[to] == TIDE_TOKEN_NORMAL && kept < v->n_normal ? (kept++, TIDE_TOKEN_NORMAL)
                : TIDE_TOKEN_CONTROL;
    }
  }
  int st = tide_gguf_writer_set_arr(w, key, a.type, x, a.n);
  free(x);
  return st;
}

static int write_variant(tide_env *env, const char *src, const char *dst, const variant *v) {
  tide_gguf *g = NULL;
  int st = tide_gguf_open(env, src, &g);
  if (st) return st;
  tide_gguf_writer *w = NULL;
  tide_gguf_writer_new(env, &w);
  int64_t d = 0, nv = 0;
  const float *E = tensor_f32(g, "token_embd.weight", &d, &nv);
  for (int64_t i = 0; !st && i < tide_gguf_n_kv(g); i++) st = copy_kv(w, g, i, v, (int32_t)nv);
  bufs b = { { 0 }, 0 };
  float *ones = buf_new(&b, d);
  for (int64_t i = 0; i < d; i++) ones[i] = 1;
  for (int64_t t = 0; !st && t < tide_gguf_n_tensors(g); t++) {
    tide_tensor_info ti;
    tide_gguf_tensor(g, t, &ti);
    const char *nm = ti.name;
    int64_t n_in = ti.ne[0], n_out = ti.ne[1];
    if (strstr(nm, "norm.weight")) {
      st = tide_gguf_writer_add_tensor(w, nm, TIDE_F32, 1, ti.ne, ones);
      continue;
    }
    float *out = buf_new(&b, n_in * n_out);
    const float *gain = NULL;
    int writes = strstr(nm, "attn_output") || strstr(nm, "ffn_down");
    if (!strncmp(nm, "blk.", 4)) { /* the norm this matrix reads */
      char gn[96];
      int il = atoi(nm + 4);
      snprintf(gn, sizeof gn, "blk.%d.%s", il, strstr(nm, "attn_") ? "attn_norm.weight" : "ffn_norm.weight");
      gain = tensor_f32(g, gn, NULL, NULL);
    }
    fold(out, ti.data, n_out, n_in, gain, v->q, writes);
    if (!strcmp(nm, "token_embd.weight")) {
      float *o2 = buf_new(&b, n_in * n_out); /* output = E diag(g_out) Q, scaled */
      fold(o2, E, nv, d, tensor_f32(g, "output_norm.weight", NULL, NULL), v->q, 0);
      for (int64_t i = 0; i < nv * d; i++) o2[i] = (float)(o2[i] * v->out_scale);
      if (v->perm) { /* rows move with their tokens */
        float *p1 = buf_new(&b, nv * d), *p2 = buf_new(&b, nv * d);
        for (int64_t r = 0; r < nv; r++) {
          memcpy(p1 + v->perm[r] * d, out + r * d, sizeof(float) * (size_t)d);
          memcpy(p2 + v->perm[r] * d, o2 + r * d, sizeof(float) * (size_t)d);
        }
        out = p1, o2 = p2;
      }
      st = tide_gguf_writer_add_tensor(w, "output.weight", TIDE_F32, 2, ti.ne, o2);
    }
    if (!st) st = tide_gguf_writer_add_tensor(w, nm, TIDE_F32, 2, ti.ne, out);
  }
  if (!st) st = tide_gguf_writer_write(w, dst, 3);
  tide_gguf_writer_free(w);
  for (int i = 0; i < b.n; i++) free(b.p[i]);
  tide_gguf_free(g);
  return st;
}

static tide_model *make_variant(tide_env *env, const char *file, const variant *v) {
  int st = write_variant(env, fixture("llama-spm-tiny"), tmp(file), v);
  CHECKF(st == TIDE_OK, "variant %s: %s", file, tide_env_errmsg(env));
  tide_model *m = st ? NULL : load(env, tmp(file));
  remove(tmp(file));
  return m;
}

static const int32_t PROMPT[] = { 1, 450, 4996, 17354, 1701, 29916, 432, 17204 };
#define N_PROMPT 8

/* The last-row logits of PROMPT under steer s with eps (s NULL: none),
** copied (caller frees). */
static float *logits_of(tide_model *m, tide_steer *s, float eps) {
  tide_ctx_params cp = tide_ctx_default_params();
  cp.kv_type = TIDE_F32, cp.n_batch = 16, cp.n_ctx = 32;
  tide_ctx *c = NULL;
  CHECK(tide_ctx_new(m, &cp, &c) == TIDE_OK);
  if (s) {
    tide_steer_entry e = { s, eps, TIDE_STEER_OUTPUT };
    CHECK(tide_ctx_set_steers(c, -1, &e, 1) == TIDE_OK);
  }
  int32_t seq;
  CHECK(tide_seq_new(c, &seq) == TIDE_OK);
  tide_batch_row rows[N_PROMPT];
  for (int i = 0; i < N_PROMPT; i++) rows[i] = (tide_batch_row){ seq, i, PROMPT[i], i == N_PROMPT - 1 };
  CHECK(tide_decode(c, rows, N_PROMPT) == TIDE_OK);
  float *x = malloc(sizeof(float) * (size_t)m->n_vocab);
  memcpy(x, tide_ctx_logits(c, 0), sizeof(float) * (size_t)m->n_vocab);
  tide_ctx_free(c);
  return x;
}

static double max_abs_diff(const float *a, const float *b, int n, double scale_b) {
  double mx = 0;
  for (int i = 0; i < n; i++) {
    double d = fabs((double)a[i] - scale_b * b[i]);
    if (!(d <= mx)) mx = d;
  }
  return mx;
}

/* ---------------------------------------------------------------- hashes */

static void test_xxh64(void) {
  CHECK(tide_xxh64("", 0, 0) == 0xEF46DB3751D8E999ULL);
  CHECK(tide_xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ULL);
  const char *s = "Nobody inspects the spammish repetition"; /* 39 bytes: stripes + tail */
  CHECK(tide_xxh64(s, strlen(s), 0) == 0xFBCEA83C8A378BF1ULL);
  CHECK(tide_xxh64("abc", 3, 1) != tide_xxh64("abc", 3, 0));
}

/* The documented chain, recomputed here from the file. */
static uint64_t ref_hash(tide_env *env, const char *path) {
  tide_gguf *g = NULL;
  if (tide_gguf_open(env, path, &g)) return 0;
  uint64_t h = 0;
  for (int64_t i = 0; i < tide_gguf_n_tensors(g); i++) {
    tide_tensor_info ti;
    tide_gguf_tensor(g, i, &ti);
    unsigned char hdr[40] = { 0 };
    uint32_t a[2] = { (uint32_t)ti.dtype, (uint32_t)ti.n_dims };
    memcpy(hdr, a, 8); /* little-endian host, as GGUF */
    memcpy(hdr + 8, ti.ne, 32);
    h = tide_xxh64(ti.name, strlen(ti.name), h);
    h = tide_xxh64(hdr, 40, h);
    h = tide_xxh64(ti.data, ti.nbytes, h);
  }
  tide_gguf_free(g);
  return h;
}

static void test_model_hash(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *a = load(env, fixture("llama-spm-tiny")), *a2 = load(env, fixture("llama-spm-tiny"));
  tide_model *q = load(env, fixture("llama-spm-tiny-q8_0")), *g = load(env, fixture("gpt2-tiny"));
  uint64_t ha = 0, ha2 = 1, hq = 0, hg = 0;
  CHECK(tide_model_hash(a, &ha) == TIDE_OK && tide_model_hash(a2, &ha2) == TIDE_OK);
  CHECK(tide_model_hash(q, &hq) == TIDE_OK && tide_model_hash(g, &hg) == TIDE_OK);
  CHECK(ha == ha2 && ha != hq && ha != hg && hq != hg);
  CHECK(ha == ref_hash(env, fixture("llama-spm-tiny")));
  CHECK(hg == ref_hash(env, fixture("gpt2-tiny")));
  CHECK(tide_model_hash(NULL, &ha) == TIDE_ERR_ARG);
  /* renaming keeps the hash (metadata is not hashed) */
  tide_model *b = make_variant(env, "same.gguf", &(variant){ NULL, 1, NULL, -1, "renamed" });
  tide_model *b2 = make_variant(env, "same2.gguf", &(variant){ NULL, 1, NULL, -1, "other name" });
  uint64_t hb = 0, hb2 = 1;
  CHECK(b && b2 && tide_model_hash(b, &hb) == TIDE_OK && tide_model_hash(b2, &hb2) == TIDE_OK);
  CHECK(hb == hb2 && hb != ha);
  tide_model_free(b), tide_model_free(b2);
  tide_model_free(a), tide_model_free(a2), tide_model_free(q), tide_model_free(g);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* ---------------------------------------------------------------- provenance */

static void test_source_files(void) {
  tide_env *env = new_env();
  tide_steer *s = rand_steer(env, 16, 2, 0.1f), *l = NULL;
  tide_steer_source src;
  tide_steer_get_source(s, &src);
  CHECK(!src.base_name && !src.data && !src.has_base_hash);
  /* an old-style file (no source keys) loads with nothing recorded */
  CHECK(tide_steer_save(s, tmp("old.gguf"), "old") == TIDE_OK);
  CHECK(tide_steer_load(env, tmp("old.gguf"), &l) == TIDE_OK);
  tide_steer_get_source(l, &src);
  CHECK(!src.base_name && !src.data && !src.has_base_hash);
  tide_steer_free(l);
  tide_steer_source set = { "base model", 1, 0xfedcba9876543210ULL, "a.txt, b.txt" };
  CHECK(tide_steer_set_source(s, &set) == TIDE_OK);
  CHECK(tide_steer_save(s, tmp("new.gguf"), "new") == TIDE_OK);
  CHECK(tide_steer_load(env, tmp("new.gguf"), &l) == TIDE_OK);
  tide_steer_get_source(l, &src);
  CHECK(src.base_name && !strcmp(src.base_name, "base model"));
  CHECK(src.data && !strcmp(src.data, "a.txt, b.txt"));
  CHECK(src.has_base_hash && src.base_hash == 0xfedcba9876543210ULL);
  tide_gguf *g = NULL;
  const char *hex;
  size_t len;
  CHECK(tide_gguf_open(env, tmp("new.gguf"), &g) == TIDE_OK);
  CHECK(tide_gguf_get_str(g, "tide.extras.base_hash", &hex, &len) == TIDE_OK && len == 16
        && !memcmp(hex, "fedcba9876543210", 16));
  tide_gguf_free(g);
  tide_steer_free(l);
  CHECK(tide_steer_set_source(s, NULL) == TIDE_OK);
  tide_steer_get_source(s, &src);
  CHECK(!src.base_name && !src.has_base_hash);
  /* a malformed hash is refused with the key's name */
  tide_gguf_writer *w = NULL;
  float p[16 * 2] = { 0 };
  int64_t ne[2] = { 2, 16 };
  tide_gguf_writer_new(env, &w);
  tide_gguf_writer_set_str(w, "general.architecture", "tide-extras", 11);
  tide_gguf_writer_set_str(w, "tide.extras.base_hash", "xyz", 3);
  tide_gguf_writer_add_tensor(w, "steer.p1", TIDE_F32, 2, ne, p);
  tide_gguf_writer_add_tensor(w, "steer.p2", TIDE_F32, 2, ne, p);
  CHECK(tide_gguf_writer_write(w, tmp("bad.gguf"), 3) == TIDE_OK);
  tide_gguf_writer_free(w);
  CHECK(tide_steer_load(env, tmp("bad.gguf"), &l) == TIDE_ERR_FORMAT && l == NULL);
  CHECK(strstr(tide_env_errmsg(env), "tide.extras.base_hash") != NULL);
  remove(tmp("old.gguf")), remove(tmp("new.gguf")), remove(tmp("bad.gguf"));
  tide_steer_free(s);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* A frozen trainer's steer file names its base model, hash and data. */
static void test_trainer_source(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *m = load(env, fixture("llama-spm-tiny"));
  tide_trainer_params p = tide_trainer_default_params();
  p.n_ctx = 8, p.n_batch = 1;
  tide_trainer_frozen_params fp = tide_trainer_frozen_default_params();
  fp.steer_rank = 2, fp.steer_eps = 1e-3f;
  tide_trainer *tr = NULL;
  CHECK(tide_trainer_new_frozen(m, &p, &fp, &tr) == TIDE_OK);
  tide_trainer_save_params sp;
  memset(&sp, 0, sizeof sp);
  sp.name = "steer", sp.data = "pos.txt vs neg.txt";
  CHECK(tide_trainer_save(tr, tmp("tr.gguf"), &sp) == TIDE_OK);
  tide_steer *s = NULL;
  CHECK(tide_steer_load(env, tmp("tr.gguf"), &s) == TIDE_OK);
  tide_steer_source src;
  uint64_t h = 0;
  tide_model_hash(m, &h);
  tide_model_info mi;
  tide_model_get_info(m, &mi);
  if (s) {
    tide_steer_get_source(s, &src);
    CHECK(src.has_base_hash && src.base_hash == h);
    CHECK(src.base_name && !strcmp(src.base_name, mi.name));
    CHECK(src.data && !strcmp(src.data, "pos.txt vs neg.txt"));
  }
  remove(tmp("tr.gguf"));
  tide_steer_free(s);
  tide_trainer_free(tr);
  tide_model_free(m);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* ---------------------------------------------------------------- matching */

static const tide_tokenizer *cmp_tok;
static int cmp_piece(const void *x, const void *y) {
  int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
  size_t la, lb;
  const char *sa = tide_token_piece(cmp_tok, a, &la), *sb = tide_token_piece(cmp_tok, b, &lb);
  int c = memcmp(sa, sb, la < lb ? la : lb);
  if (c) return c;
  if (la != lb) return la < lb ? -1 : 1;
  return a < b ? -1 : a > b;
}

static int usable(const tide_tokenizer *t, int32_t id) {
  int a = tide_tokenizer_attr(t, id);
  size_t len;
  tide_token_piece(t, id, &len);
  return a != TIDE_TOKEN_CONTROL && a != TIDE_TOKEN_UNKNOWN && a != TIDE_TOKEN_UNUSED && len > 0;
}

/* The pairs by sorting b's pieces and binary search, in a's id order. */
static int32_t ref_shared(const tide_tokenizer *a, const tide_tokenizer *b, int32_t *ia, int32_t *ib) {
  int32_t nb = tide_tokenizer_n_vocab(b), ns = 0, n = 0;
  int32_t *sorted = malloc(sizeof(int32_t) * (size_t)nb);
  char *used = calloc((size_t)nb, 1);
  for (int32_t i = 0; i < nb; i++)
    if (usable(b, i)) sorted[ns++] = i;
  cmp_tok = b;
  qsort(sorted, (size_t)ns, sizeof(int32_t), cmp_piece);
  for (int32_t id = 0; id < tide_tokenizer_n_vocab(a); id++) {
    if (!usable(a, id)) continue;
    size_t la;
    const char *s = tide_token_piece(a, id, &la);
    int32_t lo = 0, hi = ns; /* first b piece >= s */
    while (lo < hi) {
      int32_t mid = (lo + hi) / 2;
      size_t lb;
      const char *t = tide_token_piece(b, sorted[mid], &lb);
      int c = memcmp(t, s, la < lb ? la : lb);
      if (c < 0 || (c == 0 && lb < la)) lo = mid + 1;
      else hi = mid;
    }
    size_t lb;
    const char *t = lo < ns ? tide_token_piece(b, sorted[lo], &lb) : NULL;
    if (t && lb == la && !memcmp(s, t, la) && !used[sorted[lo]]) {
      used[sorted[lo]] = 1;
      ia[n] = id, ib[n] = sorted[lo], n++;
    }
  }
  free(sorted);
  free(used);
  return n;
}

static void test_shared_tokens(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *a = load(env, fixture("llama-spm-tiny")), *b = load(env, fixture("gpt2-tiny"));
  int32_t *ia = NULL, *ib = NULL, n = 0;
  CHECK(tidei_shared_tokens(env, a->tok, b->tok, &ia, &ib, &n) == TIDE_OK);
  int32_t *ra = malloc(sizeof(int32_t) * 32000), *rb = malloc(sizeof(int32_t) * 32000);
  int32_t rn = ref_shared(a->tok, b->tok, ra, rb);
  CHECKF(n == rn && n > 10000, "shared %d, reference %d", (int)n, (int)rn);
  int same = n == rn, the = 0, space = 0;
  for (int32_t i = 0; same && i < n; i++) same = ia[i] == ra[i] && ib[i] == rb[i];
  CHECK(same);
  for (int32_t i = 0; i < n; i++) {
    size_t la, lb;
    const char *sa = tide_token_piece(a->tok, ia[i], &la), *sb = tide_token_piece(b->tok, ib[i], &lb);
    if (la != lb || memcmp(sa, sb, la)) { CHECKF(0, "pair %d: pieces differ", (int)i); break; }
    if (la == 4 && !memcmp(sa, " the", 4)) the = ia[i] == 278 && ib[i] == 262;
    if (la == 1 && sa[0] == ' ') space = ia[i] == 35 && ib[i] == 220; /* <0x20> before U+2581 */
  }
  CHECK(the && space); /* SPM's "▁the" is GPT-2's "Ġthe" */
  if (ia) tidei_free(env, ia, (size_t)n * sizeof(int32_t));
  if (ib) tidei_free(env, ib, (size_t)n * sizeof(int32_t));
  free(ra), free(rb);
  tide_model_free(a), tide_model_free(b);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* ---------------------------------------------------------------- transfer */

/* a to itself: H ~ I, W' ~ W, closer as lambda shrinks. */
static void test_self_transfer(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *a = load(env, fixture("llama-spm-tiny"));
  tide_steer *w = rand_steer(env, 64, 4, 0.3f);
  double *wd = dense(w);
  double lambdas[] = { 1e-3, 1e-9 }, tols[] = { 1e-2, 1e-6 };
  for (int li = 0; li < 2; li++) {
    tide_steer_transfer_params p = tide_steer_transfer_default_params();
    p.lambda = lambdas[li];
    tide_steer_transfer_info in;
    tide_steer *o = NULL;
    CHECK(tide_steer_transfer(a, a, w, &p, &o, &in) == TIDE_OK);
    if (!o) continue;
    double *od = dense(o);
    double e = rel_diff(od, wd, 64 * 64);
    CHECKF(e < tols[li], "lambda %g: |W' - W| / |W| = %g", lambdas[li], e);
    CHECK(in.n_shared > 20000 && !in.underdetermined && in.d_a == 64 && in.d_b == 64);
    CHECK(in.residual_ab < 10 * tols[li] && in.residual_ba < 10 * tols[li]);
    CHECK(in.ridge_a > 0 && in.ridge_a == in.ridge_b);
    tide_steer_info oi;
    tide_steer_get_info(o, &oi);
    CHECK(oi.rank == 4 && oi.eps0 == 1e-3f);
    tide_steer_source src;
    tide_steer_get_source(o, &src);
    CHECK(src.has_base_hash && src.data && strstr(src.data, "transferred from") != NULL);
    free(od);
    tide_steer_free(o);
  }
  free(wd);
  tide_steer_free(w);
  tide_model_free(a);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* B is A with its residual stream rotated by an orthogonal Q: the same
** logits; E_b = E_a Q, so W' = Q^T W Q, and B steered by W' gives A's
** steered logits for every token (both methods: H = Q is orthogonal). */
static void test_rotation(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  int d = 64;
  double *q = rand_orthogonal(d);
  tide_model *orig = load(env, fixture("llama-spm-tiny"));
  tide_model *a = make_variant(env, "a.gguf", &(variant){ NULL, 1, NULL, -1, "folded" });
  tide_model *b = make_variant(env, "b.gguf", &(variant){ q, 1, NULL, -1, "rotated" });
  if (!a || !b) goto out;
  int V = a->n_vocab;
  float *l0 = logits_of(orig, NULL, 0), *la = logits_of(a, NULL, 0), *lb = logits_of(b, NULL, 0);
  CHECKF(max_abs_diff(la, l0, V, 1) < 1e-3, "folding: %g", max_abs_diff(la, l0, V, 1));
  CHECKF(max_abs_diff(lb, la, V, 1) < 1e-3, "rotation: %g", max_abs_diff(lb, la, V, 1));
  tide_steer *w = rand_steer(env, d, 4, 0.5f);
  double *wd = dense(w), *qwq = calloc((size_t)(d * d), sizeof(double)), *t = calloc((size_t)(d * d), sizeof(double));
  for (int i = 0; i < d; i++) /* t = W Q, then qwq = Q^T t */
    for (int j = 0; j < d; j++)
      for (int k = 0; k < d; k++) t[i * d + j] += wd[i * d + k] * q[k * d + j];
  for (int i = 0; i < d; i++)
    for (int j = 0; j < d; j++)
      for (int k = 0; k < d; k++) qwq[i * d + j] += q[k * d + i] * t[k * d + j];
  float *sa = logits_of(a, w, 0.5f);
  CHECKF(max_abs_diff(sa, la, V, 1) > 0.1, "the steer changes A's logits: %g", max_abs_diff(sa, la, V, 1));
  for (int method = 0; method < 2; method++) {
    tide_steer_transfer_params p = tide_steer_transfer_default_params();
    p.lambda = 1e-10, p.method = method;
    tide_steer_transfer_info in;
    tide_steer *o = NULL;
    CHECK(tide_steer_transfer(a, b, w, &p, &o, &in) == TIDE_OK);
    if (!o) continue;
    CHECKF(in.residual_ab < 1e-5 && in.residual_ba < 1e-5, "residuals %g %g", in.residual_ab, in.residual_ba);
    double *od = dense(o);
    CHECKF(rel_diff(od, qwq, d * d) < 1e-5, "method %d: |W' - Q^T W Q| / |W| = %g", method,
           rel_diff(od, qwq, d * d));
    float *sb = logits_of(b, o, 0.5f);
    CHECKF(max_abs_diff(sb, sa, V, 1) < 2e-3, "method %d: steered logits differ by %g", method,
           max_abs_diff(sb, sa, V, 1));
    free(sb);
    free(od);
    tide_steer_free(o);
  }
  free(sa), free(wd), free(qwq), free(t);
  free(l0), free(la), free(lb);
  tide_steer_free(w);
out:
  free(q);
  tide_model_free(orig), tide_model_free(a), tide_model_free(b);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* B's output matrix is 2 E_a (the rest A's): B's logits are twice A's.
** The default method keeps W (B steered = 2 x A steered); H^T W H is 4 W. */
static void test_scale(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *a = make_variant(env, "a.gguf", &(variant){ NULL, 1, NULL, -1, "folded" });
  tide_model *b = make_variant(env, "b2.gguf", &(variant){ NULL, 2, NULL, -1, "scaled" });
  if (!a || !b) goto out;
  int V = a->n_vocab;
  tide_steer *w = rand_steer(env, 64, 4, 0.5f);
  double *wd = dense(w);
  float *sa = logits_of(a, w, 0.5f);
  double want[2] = { 1, 4 };
  for (int method = 0; method < 2; method++) {
    tide_steer_transfer_params p = tide_steer_transfer_default_params();
    p.lambda = 1e-10, p.method = method;
    tide_steer *o = NULL;
    CHECK(tide_steer_transfer(a, b, w, &p, &o, NULL) == TIDE_OK);
    if (!o) continue;
    double *od = dense(o);
    for (int i = 0; i < 64 * 64; i++) od[i] /= want[method];
    CHECKF(rel_diff(od, wd, 64 * 64) < 1e-5, "method %d: W' / %g vs W: %g", method, want[method],
           rel_diff(od, wd, 64 * 64));
    float *sb = logits_of(b, o, 0.5f);
    double e = max_abs_diff(sb, sa, V, 2);
    if (method == 0) CHECKF(e < 2e-3, "fit2: steered logits differ by %g", e);
    else CHECKF(e > 0.1, "htwh: steered logits differ by only %g", e);
    free(sb), free(od);
    tide_steer_free(o);
  }
  free(sa), free(wd);
  tide_steer_free(w);
out:
  tide_model_free(a), tide_model_free(b);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* A permuted vocabulary is matched by strings, not ids. */
static void test_permuted(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  int32_t V = 32000, *perm = malloc(sizeof(int32_t) * (size_t)V);
  for (int32_t i = 0; i < V; i++) perm[i] = i;
  for (int32_t i = V - 1; i > 0; i--) { /* Fisher-Yates */
    int32_t j = (int32_t)((drand() + 1) / 2 * (i + 1)), t = perm[i];
    if (j > i) j = i;
    perm[i] = perm[j], perm[j] = t;
  }
  tide_model *a = make_variant(env, "a.gguf", &(variant){ NULL, 1, NULL, -1, "folded" });
  tide_model *b = make_variant(env, "p.gguf", &(variant){ NULL, 1, perm, -1, "permuted" });
  if (a && b) {
    int32_t *ia = NULL, *ib = NULL, n = 0, *sa = NULL, *sb = NULL, ns = 0, agree = 0;
    CHECK(tidei_shared_tokens(env, a->tok, b->tok, &ia, &ib, &n) == TIDE_OK);
    CHECK(tidei_shared_tokens(env, a->tok, a->tok, &sa, &sb, &ns) == TIDE_OK);
    for (int32_t i = 0; i < n; i++) agree += perm[ia[i]] == ib[i];
    CHECKF(n == ns && agree > n - 400, "shared %d (self %d), %d where perm agrees", (int)n, (int)ns, (int)agree);
    tide_steer *w = rand_steer(env, 64, 4, 0.5f), *o = NULL;
    tide_steer_transfer_info in;
    CHECK(tide_steer_transfer(a, b, w, NULL, &o, &in) == TIDE_OK);
    CHECKF(in.residual_ab < 0.1, "residual %g", in.residual_ab);
    tidei_free(env, ia, (size_t)n * 4), tidei_free(env, ib, (size_t)n * 4);
    tidei_free(env, sa, (size_t)ns * 4), tidei_free(env, sb, (size_t)ns * 4);
    tide_steer_free(w), tide_steer_free(o);
  }
  free(perm);
  tide_model_free(a), tide_model_free(b);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

static void test_errors(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = new_env();
  tide_model *a = load(env, fixture("llama-spm-tiny"));
  tide_model_params vp = tide_model_default_params();
  vp.vocab_only = 1;
  tide_model *vo = NULL;
  CHECK(tide_model_load(env, fixture("gpt2-tiny"), &vp, &vo) == TIDE_OK);
  tide_model *none = make_variant(env, "c.gguf", &(variant){ NULL, 1, NULL, 0, "all control" });
  tide_model *few = make_variant(env, "f.gguf", &(variant){ NULL, 1, NULL, 40, "40 normal" });
  tide_steer *w = rand_steer(env, 64, 4, 0.5f), *w32 = rand_steer(env, 32, 4, 0.5f), *o = (tide_steer *)1;
  tide_steer_transfer_params p = tide_steer_transfer_default_params();
  tide_steer_transfer_info in;
  CHECK(tide_steer_transfer(a, a, w32, NULL, &o, NULL) == TIDE_ERR_ARG && o == NULL);
  CHECK(strstr(tide_env_errmsg(env), "n_embd") != NULL);
  CHECK(tide_steer_transfer(a, vo, w, NULL, &o, NULL) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "vocab only") != NULL);
  CHECK(tide_steer_transfer(NULL, a, w, NULL, &o, NULL) == TIDE_ERR_ARG);
  CHECK(tide_steer_transfer(a, a, w, NULL, NULL, NULL) == TIDE_ERR_ARG);
  p.lambda = -1;
  CHECK(tide_steer_transfer(a, a, w, &p, &o, NULL) == TIDE_ERR_ARG);
  p.lambda = NAN;
  CHECK(tide_steer_transfer(a, a, w, &p, &o, NULL) == TIDE_ERR_ARG);
  p = tide_steer_transfer_default_params(), p.method = 7;
  CHECK(tide_steer_transfer(a, a, w, &p, &o, NULL) == TIDE_ERR_ARG);
  if (none) {
    CHECK(tide_steer_transfer(a, none, w, NULL, &o, &in) == TIDE_ERR_STATE && o == NULL);
    CHECK(in.n_shared == 0 && strstr(tide_env_errmsg(env), "share no token") != NULL);
  }
  if (few) { /* 40 tokens for 64 dimensions: only the ridge makes it unique */
    p = tide_steer_transfer_default_params(), p.lambda = 0;
    CHECK(tide_steer_transfer(a, few, w, &p, &o, &in) == TIDE_ERR_STATE && o == NULL);
    CHECK(strstr(tide_env_errmsg(env), "not positive definite") != NULL);
    CHECK(tide_steer_transfer(a, few, w, NULL, &o, &in) == TIDE_OK && o != NULL);
    CHECK(in.n_shared == 40 && in.underdetermined);
    tide_steer_free(o);
  }
  tide_steer_free(w), tide_steer_free(w32);
  tide_model_free(a), tide_model_free(vo), tide_model_free(none), tide_model_free(few);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

/* Out of memory at every allocation: an error, nothing leaked. */
static int fail_at = -1, n_allocs;
static void *failing_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  if (nsize > 0 && fail_at >= 0 && n_allocs++ == fail_at) return NULL;
  return test_count_alloc(ud, p, osize, nsize);
}

static void test_oom(void) {
  if (!test_fixtures()) SKIP("no fixtures");
  tide_env *env = NULL;
  tide_env_new(&env, failing_alloc, NULL);
  tide_model *a = load(env, fixture("llama-spm-tiny"));
  tide_steer *w = rand_steer(env, 64, 2, 0.5f);
  long long live = test_live_bytes;
  int ok = 0;
  for (int k = 0; k < 100 && !ok; k++) {
    fail_at = k, n_allocs = 0;
    tide_steer *o = NULL;
    int st = tide_steer_transfer(a, a, w, NULL, &o, NULL);
    fail_at = -1;
    ok = st == TIDE_OK;
    if (!ok) CHECKF(st == TIDE_ERR_NOMEM && o == NULL, "allocation %d: status %d", k, st);
    tide_steer_free(o);
    CHECKF(test_live_bytes == live, "allocation %d: %lld bytes leaked", k, test_live_bytes - live);
  }
  CHECK(ok);
  tide_steer_free(w);
  tide_model_free(a);
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

TEST_MAIN(test_xxh64, test_model_hash, test_source_files, test_trainer_source, test_shared_tokens,
          test_self_transfer, test_rotation, test_scale, test_permuted, test_errors, test_oom)
