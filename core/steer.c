/*
** steer.c -- steering and introspection: LM-Steer objects (W = P1 P2^T),
** their active sets per sequence and their application in tide_decode,
** the SVD that explains a steer, control vectors (llama.cpp's GGUF) and
** hidden-state capture. Layer: core.
**
** The skinny products are written as row axpys over P1 (n_embd, rank) and
** the transposes kept beside it, accumulated in a fixed order, so a row's
** result does not depend on which other rows share the batch: a batch of
** forks steered differently equals separate runs, bit for bit. Threads
** split output columns. Nothing here allocates inside tide_decode.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "steer.h"

#define EXTRAS_ARCH "tide-extras" /* as train_io.c writes frozen-mode files */

/* ---------------------------------------------------------------- steer objects */

static void steer_destroy(tide_steer *s) {
  tide_env *env = s->env;
  size_t bytes = (size_t)s->n_embd * (size_t)s->rank * sizeof(float);
  float **ps[] = { &s->p1, &s->p2, &s->p1t, &s->p2t };
  for (int i = 0; i < 4; i++)
    if (*ps[i]) tidei_free(env, *ps[i], bytes);
  tide_steer_set_source(s, NULL);
  tidei_free(env, s, sizeof *s);
  tidei_env_unref(env);
}

static void steer_ref(tide_steer *s) { s->refs++; }

void tide_steer_free(tide_steer *s) {
  if (s && --s->refs == 0) steer_destroy(s);
}

/* (rows, cols) row-major -> (cols, rows) */
static void transpose(float *dst, const float *src, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
}

int tide_steer_new(tide_env *env, int32_t n_embd, int32_t rank, const float *p1,
                   const float *p2, float eps0, tide_steer **out) {
  if (out) *out = NULL;
  if (!env) return TIDE_ERR_ARG;
  if (!out || !p1 || !p2)
    return tidei_error(env, TIDE_ERR_ARG, "steer_new: out, p1 or p2 is NULL");
  if (n_embd < 1 || n_embd > (1 << 20) || rank < 1 || rank > n_embd)
    return tidei_error(env, TIDE_ERR_ARG, "steer_new: n_embd %d, rank %d (expected "
                       "1 <= rank <= n_embd)", (int)n_embd, (int)rank);
  int64_t n = (int64_t)n_embd * rank;
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(p1[i]) || !isfinite(p2[i]))
      return tidei_error(env, TIDE_ERR_ARG, "steer_new: element %lld of %s is not finite",
                         (long long)i, isfinite(p1[i]) ? "p2" : "p1");
  tide_steer *s = tidei_calloc(env, 1, sizeof *s);
  if (!s) return TIDE_ERR_NOMEM;
  tidei_env_ref(env);
  s->env = env, s->refs = 1, s->n_embd = n_embd, s->rank = rank;
  s->eps0 = isfinite(eps0) ? eps0 : 0.0f;
  size_t bytes = (size_t)n * sizeof(float);
  float **ps[] = { &s->p1, &s->p2, &s->p1t, &s->p2t };
  for (int i = 0; i < 4; i++)
    if (!(*ps[i] = tidei_alloc(env, bytes))) {
      steer_destroy(s);
      return TIDE_ERR_NOMEM;
    }
  memcpy(s->p1, p1, bytes);
  memcpy(s->p2, p2, bytes);
  transpose(s->p1t, p1, n_embd, rank);
  transpose(s->p2t, p2, n_embd, rank);
  *out = s;
  return TIDE_OK;
}

/* The F32 (n_embd, rank) tensor name of g. */
static int steer_tensor(tide_env *env, const tide_gguf *g, const char *name,
                        tide_tensor_info *ti) {
  int64_t i = tide_gguf_find_tensor(g, name);
  if (i < 0) return tidei_error(env, TIDE_ERR_FORMAT, "steer file: tensor '%s' not found", name);
  int st = tide_gguf_tensor(g, i, ti);
  if (st) return st;
  if (ti->dtype != TIDE_F32 || ti->n_dims != 2 || (uintptr_t)ti->data % sizeof(float))
    return tidei_error(env, TIDE_ERR_FORMAT, "steer file: tensor '%s' is not a 2-d f32 "
                       "matrix", name);
  return TIDE_OK;
}

/* An optional string key of g into buf (cut at cap - 1 bytes); NULL if absent. */
static int opt_str(tide_env *env, const tide_gguf *g, const char *key, char *buf, size_t cap,
                   const char **out) {
  const char *s;
  size_t len;
  *out = NULL;
  if (tide_gguf_find(g, key) < 0) return TIDE_OK;
  if (tide_gguf_get_str(g, key, &s, &len))
    return tidei_error(env, TIDE_ERR_FORMAT, "steer file: key '%s' is not a string", key);
  if (len > cap - 1) len = cap - 1;
  memcpy(buf, s, len);
  buf[len] = 0;
  *out = buf;
  return TIDE_OK;
}

/* tide.extras.base_name, .base_hash (16 hex digits), .data; each optional. */
static int source_from(tide_env *env, const tide_gguf *g, tide_steer_source *src, char *bn,
                       size_t nbn, char *dt, size_t ndt) {
  char hex[32];
  const char *h;
  memset(src, 0, sizeof *src);
  int st = opt_str(env, g, "tide.extras.base_name", bn, nbn, &src->base_name);
  if (!st) st = opt_str(env, g, "tide.extras.data", dt, ndt, &src->data);
  if (!st) st = opt_str(env, g, "tide.extras.base_hash", hex, sizeof hex, &h);
  if (st || !h) return st;
  uint64_t v = 0;
  int i = 0;
  for (; h[i] && i < 16; i++) {
    int c = h[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) break;
    v = v << 4 | (uint64_t)d;
  }
  if (i != 16 || h[16])
    return tidei_error(env, TIDE_ERR_FORMAT, "steer file: key 'tide.extras.base_hash' is "
                       "'%s', expected 16 lowercase hex digits", h);
  src->has_base_hash = 1;
  src->base_hash = v;
  return TIDE_OK;
}

static int steer_from(tide_env *env, const tide_gguf *g, tide_steer **out) {
  const char *arch;
  size_t alen;
  if (tide_gguf_get_str(g, "general.architecture", &arch, &alen)
      || alen != strlen(EXTRAS_ARCH) || memcmp(arch, EXTRAS_ARCH, alen))
    return tidei_error(env, TIDE_ERR_FORMAT, "steer file: general.architecture is not '%s'",
                       EXTRAS_ARCH);
  tide_tensor_info a, b;
  int st = steer_tensor(env, g, "steer.p1", &a);
  if (!st) st = steer_tensor(env, g, "steer.p2", &b);
  if (st) return st;
  if (a.ne[0] != b.ne[0] || a.ne[1] != b.ne[1])
    return tidei_error(env, TIDE_ERR_FORMAT, "steer file: 'steer.p1' is [%lld, %lld] but "
                       "'steer.p2' is [%lld, %lld]", (long long)a.ne[0], (long long)a.ne[1],
                       (long long)b.ne[0], (long long)b.ne[1]);
  double eps0 = 0;
  if (tide_gguf_find(g, "tide.extras.steer_eps") >= 0
      && tide_gguf_get_float(g, "tide.extras.steer_eps", &eps0))
    return tidei_error(env, TIDE_ERR_FORMAT, "steer file: key 'tide.extras.steer_eps' is not "
                       "a float");
  if (a.ne[1] > (1 << 20) || a.ne[0] > a.ne[1])
    return tidei_error(env, TIDE_ERR_FORMAT, "steer file: 'steer.p1' is [%lld, %lld], "
                       "expected [rank, n_embd] with rank <= n_embd", (long long)a.ne[0],
                       (long long)a.ne[1]);
  tide_steer_source src;
  char bn[256], dt[4096];
  if ((st = source_from(env, g, &src, bn, sizeof bn, dt, sizeof dt))) return st;
  st = tide_steer_new(env, (int32_t)a.ne[1], (int32_t)a.ne[0], a.data, b.data, (float)eps0, out);
  if (!st && (st = tide_steer_set_source(*out, &src))) {
    tide_steer_free(*out);
    *out = NULL;
  }
  return st;
}

int tide_steer_load(tide_env *env, const char *path, tide_steer **out) {
  if (out) *out = NULL;
  if (!env) return TIDE_ERR_ARG;
  if (!path || !out) return tidei_error(env, TIDE_ERR_ARG, "steer_load: path or out is NULL");
  tide_gguf *g = NULL;
  int st = tide_gguf_open(env, path, &g);
  if (st) return st;
  st = steer_from(env, g, out);
  tide_gguf_free(g);
  return st;
}

int tide_steer_save(const tide_steer *s, const char *path, const char *name) {
  if (!s) return TIDE_ERR_ARG;
  tide_env *env = s->env;
  if (!path) return tidei_error(env, TIDE_ERR_ARG, "steer_save: path is NULL");
  if (!name) name = "steer";
  tide_gguf_writer *w = NULL;
  int64_t ne[2] = { s->rank, s->n_embd };
  int st = tide_gguf_writer_new(env, &w);
  if (!st) st = tide_gguf_writer_set_str(w, "general.architecture", EXTRAS_ARCH, strlen(EXTRAS_ARCH));
  if (!st) st = tide_gguf_writer_set_str(w, "general.name", name, strlen(name));
  if (!st) st = tide_gguf_writer_set_int(w, "general.alignment", TIDE_GGUF_UINT32, 32);
  if (!st) st = tide_gguf_writer_set_int(w, "tide.extras.n_embd", TIDE_GGUF_UINT32, s->n_embd);
  if (!st) st = tide_gguf_writer_set_int(w, "tide.extras.steer_rank", TIDE_GGUF_UINT32, s->rank);
  if (!st) st = tide_gguf_writer_set_int(w, "tide.extras.n_prefix", TIDE_GGUF_UINT32, 0);
  if (!st) st = tide_gguf_writer_set_float(w, "tide.extras.steer_eps", TIDE_GGUF_FLOAT32, s->eps0);
  if (!st && s->base_name)
    st = tide_gguf_writer_set_str(w, "tide.extras.base_name", s->base_name, strlen(s->base_name));
  if (!st && s->has_base_hash) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)s->base_hash);
    st = tide_gguf_writer_set_str(w, "tide.extras.base_hash", hex, 16);
  }
  if (!st && s->data) st = tide_gguf_writer_set_str(w, "tide.extras.data", s->data, strlen(s->data));
  if (!st) st = tide_gguf_writer_add_tensor(w, "steer.p1", TIDE_F32, 2, ne, s->p1);
  if (!st) st = tide_gguf_writer_add_tensor(w, "steer.p2", TIDE_F32, 2, ne, s->p2);
  if (!st) st = tide_gguf_writer_write(w, path, 3);
  tide_gguf_writer_free(w);
  return st;
}

void tide_steer_get_info(const tide_steer *s, tide_steer_info *out) {
  out->n_embd = s->n_embd;
  out->rank = s->rank;
  out->eps0 = s->eps0;
  out->p1 = s->p1;
  out->p2 = s->p2;
}

static char *dup_str(tide_env *env, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = tidei_alloc(env, n);
  if (d) memcpy(d, s, n);
  return d;
}

static void free_str(tide_env *env, char *s) {
  if (s) tidei_free(env, s, strlen(s) + 1);
}

void tide_steer_get_source(const tide_steer *s, tide_steer_source *out) {
  out->base_name = s->base_name;
  out->data = s->data;
  out->has_base_hash = s->has_base_hash;
  out->base_hash = s->base_hash;
}

int tide_steer_set_source(tide_steer *s, const tide_steer_source *src) {
  if (!s) return TIDE_ERR_ARG;
  char *bn = NULL, *dt = NULL;
  if (src && src->base_name && !(bn = dup_str(s->env, src->base_name))) return TIDE_ERR_NOMEM;
  if (src && src->data && !(dt = dup_str(s->env, src->data))) {
    free_str(s->env, bn);
    return TIDE_ERR_NOMEM;
  }
  free_str(s->env, s->base_name);
  free_str(s->env, s->data);
  s->base_name = bn, s->data = dt;
  s->has_base_hash = src && src->has_base_hash;
  s->base_hash = s->has_base_hash ? src->base_hash : 0;
  return TIDE_OK;
}

/* ---------------------------------------------------------------- SVD */

/* Columns are contiguous: column j of a (rows x cols) matrix at a + j*rows. */

/* P (d, r) row-major floats -> Q (d, r) orthonormal columns (zero where P's
** column is dependent on earlier ones), R (r, r) upper: P = Q R. Modified
** Gram-Schmidt, each projection done twice. */
static void qr(const float *p, int64_t d, int64_t r, double *q, double *rr) {
  memset(rr, 0, (size_t)(r * r) * sizeof(double));
  for (int64_t j = 0; j < r; j++) {
    double *v = q + j * d, n0 = 0;
    for (int64_t i = 0; i < d; i++) v[i] = p[i * r + j], n0 += v[i] * v[i];
    for (int pass = 0; pass < 2; pass++)
      for (int64_t k = 0; k < j; k++) {
        const double *qk = q + k * d;
        double dot = 0;
        for (int64_t i = 0; i < d; i++) dot += qk[i] * v[i];
        for (int64_t i = 0; i < d; i++) v[i] -= dot * qk[i];
        rr[j * r + k] += dot; /* R[k][j], column-major */
      }
    double nn = 0;
    for (int64_t i = 0; i < d; i++) nn += v[i] * v[i];
    nn = sqrt(nn);
    if (nn <= 1e-12 * sqrt(n0) || nn == 0) {
      memset(v, 0, (size_t)d * sizeof(double));
      continue;
    }
    rr[j * r + j] = nn;
    for (int64_t i = 0; i < d; i++) v[i] /= nn;
  }
}

/* One-sided Jacobi: a (n, n) column-major becomes U diag(s), v (n, n) the
** accumulated rotations, so that the input equals a v^T. */
static void jacobi(double *a, double *v, int64_t n) {
  for (int64_t i = 0; i < n * n; i++) v[i] = 0;
  for (int64_t i = 0; i < n; i++) v[i * n + i] = 1;
  for (int sweep = 0; sweep < 60; sweep++) {
    int rotated = 0;
    for (int64_t p = 0; p < n; p++)
      for (int64_t q = p + 1; q < n; q++) {
        double *ap = a + p * n, *aq = a + q * n, al = 0, be = 0, ga = 0;
        for (int64_t i = 0; i < n; i++) al += ap[i] * ap[i], be += aq[i] * aq[i], ga += ap[i] * aq[i];
        if (ga == 0 || fabs(ga) <= 1e-15 * sqrt(al * be)) continue;
        rotated = 1;
        double zeta = (be - al) / (2 * ga);
        double t = (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1 + zeta * zeta));
        double c = 1 / sqrt(1 + t * t), s = c * t;
        double *vp = v + p * n, *vq = v + q * n;
        for (int64_t i = 0; i < n; i++) {
          double x = ap[i], y = aq[i];
          ap[i] = c * x - s * y, aq[i] = s * x + c * y;
          x = vp[i], y = vq[i];
          vp[i] = c * x - s * y, vq[i] = s * x + c * y;
        }
      }
    if (!rotated) break;
  }
}

/* out (d) = Q (d, r) x (r), then scaled to unit length. */
static void lift(float *out, const double *q, const double *x, int64_t d, int64_t r) {
  double nn = 0;
  for (int64_t i = 0; i < d; i++) {
    double s = 0;
    for (int64_t k = 0; k < r; k++) s += q[k * d + i] * x[k];
    out[i] = (float)s;
    nn += s * s;
  }
  nn = sqrt(nn);
  if (nn > 0)
    for (int64_t i = 0; i < d; i++) out[i] = (float)(out[i] / nn);
}

int tide_steer_svd(const tide_steer *s, int32_t k, float *sigma, float *u, float *v) {
  if (!s) return TIDE_ERR_ARG;
  tide_env *env = s->env;
  int64_t d = s->n_embd, r = s->rank;
  if (k < 1 || k > r || !sigma || !u || !v)
    return tidei_error(env, TIDE_ERR_ARG, "steer_svd: k %d out of range 1..%d (rank) or a "
                       "NULL output", (int)k, (int)r);
  size_t nq = (size_t)(d * r) * sizeof(double), nr = (size_t)(r * r) * sizeof(double);
  double *q1 = tidei_alloc(env, nq), *q2 = tidei_alloc(env, nq);
  double *r1 = tidei_alloc(env, nr), *r2 = tidei_alloc(env, nr);
  double *mm = tidei_alloc(env, nr), *vv = tidei_alloc(env, nr);
  int64_t *order = tidei_alloc(env, (size_t)r * sizeof(int64_t));
  int st = TIDE_OK;
  if (!q1 || !q2 || !r1 || !r2 || !mm || !vv || !order) { st = TIDE_ERR_NOMEM; goto done; }
  qr(s->p1, d, r, q1, r1);
  qr(s->p2, d, r, q2, r2);
  /* W = Q1 (R1 R2^T) Q2^T; M = R1 R2^T, column-major: M[i][j] = sum_k R1[i][k] R2[j][k] */
  for (int64_t j = 0; j < r; j++)
    for (int64_t i = 0; i < r; i++) {
      double acc = 0;
      for (int64_t t = 0; t < r; t++) acc += r1[t * r + i] * r2[t * r + j];
      mm[j * r + i] = acc;
    }
  jacobi(mm, vv, r); /* M = (M V) V^T; columns of M V are sigma_j Um_j */
  for (int64_t j = 0; j < r; j++) order[j] = j;
  double *sv = r1; /* R1 is no longer needed: singular values in its first column */
  for (int64_t j = 0; j < r; j++) {
    double nn = 0;
    for (int64_t i = 0; i < r; i++) nn += mm[j * r + i] * mm[j * r + i];
    sv[j] = sqrt(nn);
  }
  for (int64_t a = 1; a < r; a++) /* insertion sort, descending; r is small */
    for (int64_t b = a; b > 0 && sv[order[b]] > sv[order[b - 1]]; b--) {
      int64_t t = order[b];
      order[b] = order[b - 1], order[b - 1] = t;
    }
  for (int32_t i = 0; i < k; i++) {
    int64_t j = order[i];
    float *ui = u + (int64_t)i * d, *vi = v + (int64_t)i * d;
    sigma[i] = (float)sv[j];
    lift(ui, q1, mm + j * r, d, r); /* U_j = Q1 Um_j (Um_j = M V e_j / sigma_j) */
    lift(vi, q2, vv + j * r, d, r); /* V_j = Q2 V e_j */
    int64_t big = 0; /* the pair's sign: v's largest component positive */
    for (int64_t t = 1; t < d; t++)
      if (fabsf(vi[t]) > fabsf(vi[big])) big = t;
    if (vi[big] < 0)
      for (int64_t t = 0; t < d; t++) ui[t] = -ui[t], vi[t] = -vi[t];
  }
done:
  if (q1) tidei_free(env, q1, nq);
  if (q2) tidei_free(env, q2, nq);
  if (r1) tidei_free(env, r1, nr);
  if (r2) tidei_free(env, r2, nr);
  if (mm) tidei_free(env, mm, nr);
  if (vv) tidei_free(env, vv, nr);
  if (order) tidei_free(env, order, (size_t)r * sizeof(int64_t));
  return st;
}

/* ---------------------------------------------------------------- active sets */

static void set_clear(tidei_steer_set *s) {
  for (int32_t i = 0; i < s->n; i++) tide_steer_free(s->e[i].steer);
  s->n = 0;
  s->own = 0;
}

static void set_copy(tidei_steer_set *dst, const tidei_steer_set *src) {
  set_clear(dst);
  *dst = *src;
  for (int32_t i = 0; i < dst->n; i++) steer_ref(dst->e[i].steer);
}

static void count_active(tidei_steer_state *st, int32_t n_seq) {
  int32_t n = st->def.n > 0;
  for (int32_t i = 0; i < n_seq; i++) n += st->seqs[i].own && st->seqs[i].n > 0;
  st->n_active = n;
}

static int32_t n_seq_of(const tide_ctx *ctx) { return ctx->kv.n_seq_max; }

static void state_free(tide_ctx *ctx, tidei_steer_state *st) {
  tide_env *env = ctx->env;
  size_t nb = (size_t)ctx->n_batch, e = (size_t)ctx->m->n_embd;
  set_clear(&st->def);
  if (st->seqs) {
    for (int32_t i = 0; i < n_seq_of(ctx); i++) set_clear(&st->seqs[i]);
    tidei_free(env, st->seqs, (size_t)n_seq_of(ctx) * sizeof *st->seqs);
  }
  if (st->c0) tidei_free(env, st->c0, nb * e * sizeof(float));
  if (st->g) tidei_free(env, st->g, nb * e * sizeof(float));
  if (st->u) tidei_free(env, st->u, nb * (size_t)st->r_max * sizeof(float));
  if (st->eps) tidei_free(env, st->eps, nb * sizeof(float));
  if (st->idx) tidei_free(env, st->idx, nb * sizeof(int32_t));
  tidei_free(env, st, sizeof *st);
}

/* The context's steer state, made on first use. */
static int state_get(tide_ctx *ctx, tidei_steer_state **out) {
  if (ctx->steer) { *out = ctx->steer; return TIDE_OK; }
  tide_env *env = ctx->env;
  size_t nb = (size_t)ctx->n_batch, e = (size_t)ctx->m->n_embd;
  tidei_steer_state *st = tidei_calloc(env, 1, sizeof *st);
  if (!st) return TIDE_ERR_NOMEM;
  st->seqs = tidei_calloc(env, (size_t)n_seq_of(ctx), sizeof *st->seqs);
  st->c0 = tidei_alloc(env, nb * e * sizeof(float));
  st->g = tidei_alloc(env, nb * e * sizeof(float));
  st->eps = tidei_alloc(env, nb * sizeof(float));
  st->idx = tidei_alloc(env, nb * sizeof(int32_t));
  if (!st->seqs || !st->c0 || !st->g || !st->eps || !st->idx) {
    state_free(ctx, st);
    return TIDE_ERR_NOMEM;
  }
  *out = ctx->steer = st;
  return TIDE_OK;
}

/* Grows the projection scratch to rank r (before any set changes). */
static int state_fit_rank(tide_ctx *ctx, tidei_steer_state *st, int32_t r) {
  if (r <= st->r_max) return TIDE_OK;
  size_t nb = (size_t)ctx->n_batch;
  float *u = tidei_alloc(ctx->env, nb * (size_t)r * sizeof(float));
  if (!u) return TIDE_ERR_NOMEM;
  if (st->u) tidei_free(ctx->env, st->u, nb * (size_t)st->r_max * sizeof(float));
  st->u = u;
  st->r_max = r;
  return TIDE_OK;
}

static int check_seq(const tide_ctx *ctx, int32_t seq, const char *fn) {
  if (seq == -1 || (seq >= 0 && seq < n_seq_of(ctx) && tide_seq_len(ctx, seq) >= 0))
    return TIDE_OK;
  return tidei_error(ctx->env, TIDE_ERR_ARG, "%s: sequence %d is not live", fn, (int)seq);
}

int tide_ctx_set_steers(tide_ctx *ctx, int32_t seq, const tide_steer_entry *e, int32_t n) {
  if (!ctx) return TIDE_ERR_ARG;
  tide_env *env = ctx->env;
  int st = check_seq(ctx, seq, "set_steers");
  if (st) return st;
  if (n < 0 || n > TIDE_STEER_MAX || (n > 0 && !e))
    return tidei_error(env, TIDE_ERR_ARG, "set_steers: %d entries, expected 0..%d", (int)n,
                       TIDE_STEER_MAX);
  int32_t r = 0;
  for (int32_t i = 0; i < n; i++) {
    if (!e[i].steer || e[i].steer->n_embd != ctx->m->n_embd)
      return tidei_error(env, TIDE_ERR_ARG, "set_steers: entry %d: steer n_embd %d, the "
                         "model's is %d", (int)i, e[i].steer ? (int)e[i].steer->n_embd : 0,
                         (int)ctx->m->n_embd);
    if (e[i].where != TIDE_STEER_OUTPUT && e[i].where != TIDE_STEER_INPUT)
      return tidei_error(env, TIDE_ERR_ARG, "set_steers: entry %d: where %d is neither "
                         "output (0) nor input (1)", (int)i, e[i].where);
    if (!isfinite(e[i].eps))
      return tidei_error(env, TIDE_ERR_ARG, "set_steers: entry %d: eps is not finite", (int)i);
    if (e[i].steer->rank > r) r = e[i].steer->rank;
  }
  tidei_steer_state *ss;
  if ((st = state_get(ctx, &ss)) || (st = state_fit_rank(ctx, ss, r))) return st;
  tidei_steer_set nw;
  memset(&nw, 0, sizeof nw);
  nw.own = 1;
  nw.n = n;
  for (int32_t i = 0; i < n; i++) nw.e[i] = e[i], steer_ref(e[i].steer);
  tidei_steer_set *dst = seq < 0 ? &ss->def : &ss->seqs[seq];
  set_clear(dst);
  *dst = nw;
  count_active(ss, n_seq_of(ctx));
  return TIDE_OK;
}

int tide_ctx_reset_steers(tide_ctx *ctx, int32_t seq) {
  if (!ctx) return TIDE_ERR_ARG;
  int st = check_seq(ctx, seq, "reset_steers");
  if (st || !ctx->steer) return st;
  set_clear(seq < 0 ? &ctx->steer->def : &ctx->steer->seqs[seq]);
  count_active(ctx->steer, n_seq_of(ctx));
  return TIDE_OK;
}

static const tidei_steer_set *set_of(const tidei_steer_state *st, int32_t seq) {
  return seq >= 0 && st->seqs[seq].own ? &st->seqs[seq] : &st->def;
}

int32_t tide_ctx_get_steers(const tide_ctx *ctx, int32_t seq, tide_steer_entry *e,
                            int32_t cap) {
  if (!ctx || !(seq == -1 || tide_seq_len(ctx, seq) >= 0)) return -1;
  if (!ctx->steer) return 0;
  const tidei_steer_set *s = set_of(ctx->steer, seq);
  for (int32_t i = 0; i < s->n && i < cap; i++) e[i] = s->e[i];
  return s->n;
}

void tidei_steer_seq_fork(tide_ctx *ctx, int32_t parent, int32_t child) {
  if (!ctx->steer) return;
  set_copy(&ctx->steer->seqs[child], &ctx->steer->seqs[parent]);
  count_active(ctx->steer, n_seq_of(ctx));
}

void tidei_steer_seq_reset(tide_ctx *ctx, int32_t seq) {
  if (!ctx->steer || seq < 0 || seq >= n_seq_of(ctx)) return;
  set_clear(&ctx->steer->seqs[seq]);
  count_active(ctx->steer, n_seq_of(ctx));
}

/* ---------------------------------------------------------------- application */

/* y (nj, d_out) = diag(scale) a (nj, d_in) B (d_in, d_out), B row-major, as
** row axpys in i order: every output row sums in the same order whatever
** the other rows are. Threads split the columns. */
typedef struct {
  const float *a, *b, *scale;
  float *y;
  int32_t nj;
  int64_t d_in, d_out;
} axpy_task;

/* y (n) += s * b (n). Element by element (one rounded product, one rounded
** sum each), so any vector width gives the same bits; the fixed 16-wide
** inner loop is what GCC's -O2 vectorizer takes (y and b never overlap). */
static void axpy(float *restrict y, const float *restrict b, float s, int64_t n) {
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    for (int k = 0; k < 16; k++) y[c + k] += s * b[c + k];
  for (; c < n; c++) y[c] += s * b[c];
}

static void axpy_rows(void *arg, int ith, int nth) {
  const axpy_task *t = arg;
  int64_t c0, c1;
  tidei_split(t->d_out, ith, nth, 16, &c0, &c1);
  for (int32_t j = 0; j < t->nj; j++)
    memset(t->y + j * t->d_out + c0, 0, (size_t)(c1 - c0) * sizeof(float));
  for (int64_t i = 0; i < t->d_in; i++) {
    const float *b = t->b + i * t->d_out;
    for (int32_t j = 0; j < t->nj; j++)
      axpy(t->y + j * t->d_out + c0, b + c0, t->a[j * t->d_in + i], c1 - c0);
  }
  if (t->scale)
    for (int32_t j = 0; j < t->nj; j++) {
      float s = t->scale[j], *y = t->y + j * t->d_out;
      for (int64_t c = c0; c < c1; c++) y[c] *= s;
    }
}

static void axpy_run(tide_env *env, const float *a, const float *b, const float *scale,
                     float *y, int32_t nj, int64_t d_in, int64_t d_out) {
  axpy_task t = { a, b, scale, y, nj, d_in, d_out };
  if ((int64_t)nj * d_in * d_out < 65536) axpy_rows(&t, 0, 1);
  else tidei_pool_run(env, axpy_rows, &t);
}

/* The sequence of row i of the hook's rows. */
static int32_t seq_of_row(const tide_ctx *ctx, int where, const tide_batch_row *rows, int32_t i) {
  return where == TIDE_STEER_OUTPUT ? rows[ctx->out_rows[i]].seq : rows[i].seq;
}

/* The summed eps of steer s (of kind where) in the set of row i. */
static float row_eps(const tidei_steer_set *set, const tide_steer *s, int where) {
  float eps = 0;
  for (int32_t k = 0; k < set->n; k++)
    if (set->e[k].steer == s && set->e[k].where == where) eps += set->e[k].eps;
  return eps;
}

/* Applies steer s to the rows whose set holds it: x[i] += eps_i (c0[i] B1) B2. */
static void apply_one(tide_ctx *ctx, tidei_steer_state *st, const tide_steer *s, int where,
                      const tide_batch_row *rows, int32_t n, float *x) {
  int64_t e = ctx->m->n_embd, r = s->rank;
  int32_t nj = 0;
  for (int32_t i = 0; i < n; i++) {
    float eps = row_eps(set_of(st, seq_of_row(ctx, where, rows, i)), s, where);
    if (eps == 0) continue;
    st->idx[nj] = i, st->eps[nj] = eps;
    memcpy(st->g + nj * e, st->c0 + i * e, (size_t)e * sizeof(float));
    nj++;
  }
  if (nj == 0) return;
  int out = where == TIDE_STEER_OUTPUT;
  /* output: u = c P1, update = eps u P2^T; input: u = e P2, update = eps u P1^T */
  axpy_run(ctx->env, st->g, out ? s->p1 : s->p2, NULL, st->u, nj, e, r);
  axpy_run(ctx->env, st->u, out ? s->p2t : s->p1t, st->eps, st->g, nj, r, e);
  for (int32_t j = 0; j < nj; j++) {
    float *xr = x + st->idx[j] * e;
    const float *gr = st->g + j * e;
    for (int64_t c = 0; c < e; c++) xr[c] += gr[c];
  }
}

/* Has steer s (of kind where) been applied for an earlier (row, entry)? */
static int seen_before(const tide_ctx *ctx, const tidei_steer_state *st, int where,
                       const tide_batch_row *rows, int32_t i, int32_t k) {
  const tide_steer *s = set_of(st, seq_of_row(ctx, where, rows, i))->e[k].steer;
  for (int32_t i2 = 0; i2 <= i; i2++) {
    const tidei_steer_set *set = set_of(st, seq_of_row(ctx, where, rows, i2));
    for (int32_t k2 = 0; k2 < (i2 == i ? k : set->n); k2++)
      if (set->e[k2].steer == s && set->e[k2].where == where && set->e[k2].eps != 0) return 1;
  }
  return 0;
}

void tidei_steer_apply(tide_ctx *ctx, int where, const tide_batch_row *rows, int32_t n) {
  tidei_steer_state *st = ctx->steer;
  if (!st || st->n_active == 0 || n == 0) return;
  int64_t e = ctx->m->n_embd;
  float *x = where == TIDE_STEER_OUTPUT ? ctx->xb : ctx->x;
  int copied = 0;
  for (int32_t i = 0; i < n; i++) {
    const tidei_steer_set *set = set_of(st, seq_of_row(ctx, where, rows, i));
    for (int32_t k = 0; k < set->n; k++) {
      const tide_steer_entry *en = &set->e[k];
      if (en->where != where || en->eps == 0 || seen_before(ctx, st, where, rows, i, k)) continue;
      if (!copied) memcpy(st->c0, x, (size_t)(n * e) * sizeof(float)), copied = 1;
      apply_one(ctx, st, en->steer, where, rows, n, x);
    }
  }
}

/* ---------------------------------------------------------------- control vectors */

int tide_ctx_set_cvec(tide_ctx *ctx, const float *dirs, int32_t n_layer, int32_t n_embd,
                      int32_t il_start, int32_t il_end) {
  if (!ctx) return TIDE_ERR_ARG;
  const tide_model *m = ctx->m;
  size_t bytes = (size_t)m->n_layer * (size_t)m->n_embd * sizeof(float);
  if (!dirs) {
    if (ctx->cvec) tidei_free(ctx->env, ctx->cvec, bytes);
    ctx->cvec = NULL;
    return TIDE_OK;
  }
  if (n_layer != m->n_layer || n_embd != m->n_embd)
    return tidei_error(ctx->env, TIDE_ERR_ARG, "set_cvec: %d layers of %d, the model has %d "
                       "of %d", (int)n_layer, (int)n_embd, (int)m->n_layer, (int)m->n_embd);
  if (!ctx->cvec && !(ctx->cvec = tidei_alloc(ctx->env, bytes))) return TIDE_ERR_NOMEM;
  memcpy(ctx->cvec, dirs, bytes);
  ctx->cvec_start = il_start;
  ctx->cvec_end = il_end;
  return TIDE_OK;
}

void tidei_cvec_add(tide_ctx *ctx, int32_t il, int32_t n) {
  if (!ctx->cvec || il < ctx->cvec_start || il > ctx->cvec_end) return;
  int64_t e = ctx->m->n_embd;
  const float *d = ctx->cvec + il * e;
  for (int32_t i = 0; i < n; i++) {
    float *x = ctx->x + i * e;
    for (int64_t c = 0; c < e; c++) x[c] += d[c];
  }
}

/* The N of a tensor named "direction.N", or -1. */
static int64_t direction_index(const char *name) {
  if (strncmp(name, "direction.", 10)) return -1;
  const char *p = name + 10;
  if (!*p) return -1;
  int64_t v = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || v > (1 << 24)) return -1;
    v = v * 10 + (*p - '0');
  }
  return v;
}

static int cvec_from(tide_env *env, const tide_gguf *g, float scale, int32_t n_layer,
                     int32_t n_embd, float *dirs) {
  const char *arch;
  size_t alen;
  if (tide_gguf_get_str(g, "general.architecture", &arch, &alen) || alen != 13
      || memcmp(arch, "controlvector", 13))
    return tidei_error(env, TIDE_ERR_FORMAT, "control vector: general.architecture is not "
                       "'controlvector'");
  int found = 0;
  for (int pass = 0; pass < 2; pass++) /* check everything, then add */
    for (int64_t i = 0; i < tide_gguf_n_tensors(g); i++) {
      tide_tensor_info ti;
      int st = tide_gguf_tensor(g, i, &ti);
      if (st) return st;
      int64_t il = direction_index(ti.name);
      if (il < 0) continue;
      if (il == 0)
        return tidei_error(env, TIDE_ERR_FORMAT, "control vector: tensor 'direction.0' (layer "
                           "indices start at 1)");
      if (il >= n_layer)
        return tidei_error(env, TIDE_ERR_FORMAT, "control vector: tensor '%s' past the model's "
                           "%d layers", ti.name, (int)n_layer);
      if (ti.dtype != TIDE_F32 || ti.ne[0] != n_embd || ti.ne[1] * ti.ne[2] * ti.ne[3] != 1
          || (uintptr_t)ti.data % sizeof(float))
        return tidei_error(env, TIDE_ERR_FORMAT, "control vector: tensor '%s' is not %d f32 "
                           "values (n_embd)", ti.name, (int)n_embd);
      found = 1;
      if (pass == 0) continue;
      const float *src = ti.data;
      float *dst = dirs + il * n_embd;
      for (int32_t c = 0; c < n_embd; c++) dst[c] += scale * src[c];
    }
  if (!found) return tidei_error(env, TIDE_ERR_FORMAT, "control vector: no 'direction.N' tensor");
  return TIDE_OK;
}

int tide_cvec_load(tide_env *env, const char *path, float scale, int32_t n_layer,
                   int32_t n_embd, float *dirs) {
  if (!env) return TIDE_ERR_ARG;
  if (!path || !dirs || n_layer < 1 || n_embd < 1)
    return tidei_error(env, TIDE_ERR_ARG, "cvec_load: bad arguments");
  tide_gguf *g = NULL;
  int st = tide_gguf_open(env, path, &g);
  if (st) return st;
  st = cvec_from(env, g, scale, n_layer, n_embd, dirs);
  tide_gguf_free(g);
  return st;
}

int tide_cvec_save(tide_env *env, const char *path, const float *dirs, int32_t n_layer,
                   int32_t n_embd, const char *model_hint) {
  if (!env) return TIDE_ERR_ARG;
  if (!path || !dirs || n_layer < 2 || n_embd < 1)
    return tidei_error(env, TIDE_ERR_ARG, "cvec_save: bad arguments (n_layer %d, n_embd %d)",
                       (int)n_layer, (int)n_embd);
  tide_gguf_writer *w = NULL;
  int st = tide_gguf_writer_new(env, &w);
  if (!st) st = tide_gguf_writer_set_str(w, "general.architecture", "controlvector", 13);
  if (!st && model_hint)
    st = tide_gguf_writer_set_str(w, "controlvector.model_hint", model_hint, strlen(model_hint));
  if (!st) st = tide_gguf_writer_set_int(w, "controlvector.layer_count", TIDE_GGUF_INT32,
                                         n_layer - 1);
  for (int32_t il = 1; !st && il < n_layer; il++) {
    char name[32];
    snprintf(name, sizeof name, "direction.%d", (int)il);
    int64_t ne[1] = { n_embd };
    st = tide_gguf_writer_add_tensor(w, name, TIDE_F32, 1, ne, dirs + (int64_t)il * n_embd);
  }
  if (!st) st = tide_gguf_writer_write(w, path, 3);
  tide_gguf_writer_free(w);
  return st;
}

/* ---------------------------------------------------------------- capture */

static void capture_free(tide_ctx *ctx) {
  tidei_capture *c = ctx->cap;
  if (!c) return;
  tide_env *env = ctx->env;
  size_t rows = (size_t)ctx->n_batch * (size_t)ctx->m->n_embd;
  if (c->layers) tidei_free(env, c->layers, (size_t)c->n * sizeof(int32_t));
  if (c->n_rows) tidei_free(env, c->n_rows, (size_t)c->n * sizeof(int32_t));
  if (c->h) tidei_free(env, c->h, (size_t)c->n * rows * sizeof(float));
  tidei_free(env, c, sizeof *c);
  ctx->cap = NULL;
}

int tide_ctx_capture(tide_ctx *ctx, const int32_t *layers, int32_t n) {
  if (!ctx) return TIDE_ERR_ARG;
  tide_env *env = ctx->env;
  int32_t nl = ctx->m->n_layer;
  if (n < 0 || n > nl + 1 || (n > 0 && !layers))
    return tidei_error(env, TIDE_ERR_ARG, "capture: %d layers, expected 0..%d", (int)n, (int)nl + 1);
  for (int32_t i = 0; i < n; i++) {
    if (layers[i] < 0 || layers[i] > nl)
      return tidei_error(env, TIDE_ERR_ARG, "capture: layer %d out of range 0..%d (n_layer)",
                         (int)layers[i], (int)nl);
    for (int32_t j = 0; j < i; j++)
      if (layers[j] == layers[i])
        return tidei_error(env, TIDE_ERR_ARG, "capture: layer %d given twice", (int)layers[i]);
  }
  capture_free(ctx);
  if (n == 0) return TIDE_OK;
  size_t rows = (size_t)ctx->n_batch * (size_t)ctx->m->n_embd;
  tidei_capture *c = tidei_calloc(env, 1, sizeof *c);
  if (!c) return TIDE_ERR_NOMEM;
  ctx->cap = c;
  c->n = n;
  c->layers = tidei_alloc(env, (size_t)n * sizeof(int32_t));
  c->n_rows = tidei_calloc(env, (size_t)n, sizeof(int32_t));
  c->h = tidei_alloc(env, (size_t)n * rows * sizeof(float));
  if (!c->layers || !c->n_rows || !c->h) {
    capture_free(ctx);
    return TIDE_ERR_NOMEM;
  }
  memcpy(c->layers, layers, (size_t)n * sizeof(int32_t));
  for (int32_t i = 0; i < n; i++) c->keep_all |= layers[i] == nl;
  return TIDE_OK;
}

static int32_t capture_slot(const tidei_capture *c, int32_t layer) {
  for (int32_t i = 0; i < c->n; i++)
    if (c->layers[i] == layer) return i;
  return -1;
}

void tidei_capture_rows(tide_ctx *ctx, int32_t layer, int32_t n) {
  tidei_capture *c = ctx->cap;
  if (!c) return;
  int32_t k = capture_slot(c, layer);
  if (k < 0) return;
  size_t e = (size_t)ctx->m->n_embd;
  memcpy(c->h + (size_t)k * ctx->n_batch * e, ctx->x, (size_t)n * e * sizeof(float));
  c->n_rows[k] = n;
}

int tidei_capture_keep_all(const tide_ctx *ctx) { return ctx->cap && ctx->cap->keep_all; }

const float *tide_ctx_hidden(const tide_ctx *ctx, int32_t layer, int32_t row) {
  const tidei_capture *c = ctx ? ctx->cap : NULL;
  if (!c) return NULL;
  int32_t k = capture_slot(c, layer);
  if (k < 0 || row < 0 || row >= c->n_rows[k]) return NULL;
  size_t e = (size_t)ctx->m->n_embd;
  return c->h + ((size_t)k * ctx->n_batch + (size_t)row) * e;
}

/* ---------------------------------------------------------------- release */

void tidei_steer_release(tide_ctx *ctx) {
  if (ctx->steer) state_free(ctx, ctx->steer);
  ctx->steer = NULL;
  tide_ctx_set_cvec(ctx, NULL, 0, 0, 0, 0);
  capture_free(ctx);
}
