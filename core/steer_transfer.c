/*
** steer_transfer.c -- moves an LM-Steer from one model to another through
** their shared tokens: two ridge regressions between the output embeddings
** (in double; Gram matrices through BLAS, the Cholesky factorization here),
** then P1' = H^T P1, P2' = K P2. Layer: core. docs/steering.md
** ("Transferring a steer") has the derivation.
**
** Shapes: E_a (n, d_a) and E_b (n, d_b) are the shared tokens' rows of the
** output matrices; G_a = E_a^T E_a (d_a, d_a), G_b (d_b, d_b), C = E_a^T E_b
** (d_a, d_b); H (d_a, d_b), K (d_b, d_a). All row-major; the Gram matrices
** hold their lower triangle.
*/
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "steer.h"
#include "tokenizer.h"

/* ---------------------------------------------------------------- shared tokens */

/* Nonzero for a token that takes part: not control, unknown or unused, and
** standing for at least one byte. */
static const char *usable(const tide_tokenizer *t, int32_t id, size_t *len) {
  int a = tide_tokenizer_attr(t, id);
  if (a == TIDE_TOKEN_CONTROL || a == TIDE_TOKEN_UNKNOWN || a == TIDE_TOKEN_UNUSED) return NULL;
  const char *s = tide_token_piece(t, id, len);
  return s && *len > 0 ? s : NULL;
}

int tidei_shared_tokens(tide_env *env, const tide_tokenizer *a, const tide_tokenizer *b,
                        int32_t **ids_a, int32_t **ids_b, int32_t *n_out) {
  int32_t na = tide_tokenizer_n_vocab(a), nb = tide_tokenizer_n_vocab(b), n = 0;
  size_t cap = 16;
  while (cap < 2 * (size_t)nb) cap *= 2;
  int32_t *slot = tidei_alloc(env, cap * sizeof(int32_t)); /* b ids by piece; -1 empty */
  unsigned char *used = tidei_calloc(env, (size_t)nb + 1, 1);
  int32_t *ia = tidei_alloc(env, ((size_t)na + 1) * sizeof(int32_t));
  int32_t *ib = tidei_alloc(env, ((size_t)na + 1) * sizeof(int32_t));
  *ids_a = *ids_b = NULL;
  *n_out = 0;
  int st = TIDE_OK;
  if (!slot || !used || !ia || !ib) { st = TIDE_ERR_NOMEM; goto done; }
  for (size_t i = 0; i < cap; i++) slot[i] = -1;
  for (int32_t id = 0; id < nb; id++) { /* increasing ids: the first of a string stays */
    size_t len;
    const char *s = usable(b, id, &len);
    if (!s) continue;
    size_t h = (size_t)tidei_tok_hash(s, len, TIDEI_HASH_SEED) & (cap - 1);
    for (;; h = (h + 1) & (cap - 1)) {
      if (slot[h] < 0) { slot[h] = id; break; }
      size_t l2;
      const char *s2 = tide_token_piece(b, slot[h], &l2);
      if (l2 == len && !memcmp(s, s2, len)) break;
    }
  }
  for (int32_t id = 0; id < na; id++) {
    size_t len;
    const char *s = usable(a, id, &len);
    if (!s) continue;
    size_t h = (size_t)tidei_tok_hash(s, len, TIDEI_HASH_SEED) & (cap - 1);
    for (; slot[h] >= 0; h = (h + 1) & (cap - 1)) {
      size_t l2;
      const char *s2 = tide_token_piece(b, slot[h], &l2);
      if (l2 != len || memcmp(s, s2, len)) continue;
      if (!used[slot[h]]) used[slot[h]] = 1, ia[n] = id, ib[n] = slot[h], n++;
      break; /* a later a id of the same string finds it used */
    }
  }
done:
  if (slot) tidei_free(env, slot, cap * sizeof(int32_t));
  if (used) tidei_free(env, used, (size_t)nb + 1);
  if (st || n == 0) {
    if (ia) tidei_free(env, ia, ((size_t)na + 1) * sizeof(int32_t));
    if (ib) tidei_free(env, ib, ((size_t)na + 1) * sizeof(int32_t));
    return st;
  }
  /* shrink to n: reallocate through the env (free needs the exact size) */
  int32_t *ra = tidei_alloc(env, (size_t)n * sizeof(int32_t));
  int32_t *rb = tidei_alloc(env, (size_t)n * sizeof(int32_t));
  if (ra && rb) {
    memcpy(ra, ia, (size_t)n * sizeof(int32_t));
    memcpy(rb, ib, (size_t)n * sizeof(int32_t));
  } else st = TIDE_ERR_NOMEM;
  tidei_free(env, ia, ((size_t)na + 1) * sizeof(int32_t));
  tidei_free(env, ib, ((size_t)na + 1) * sizeof(int32_t));
  if (st) {
    if (ra) tidei_free(env, ra, (size_t)n * sizeof(int32_t));
    if (rb) tidei_free(env, rb, (size_t)n * sizeof(int32_t));
    return st;
  }
  *ids_a = ra, *ids_b = rb, *n_out = n;
  return TIDE_OK;
}

/* ---------------------------------------------------------------- linear algebra */

/* a (n, n) lower triangle <- L with L L^T = a (Cholesky, row-major: every
** inner product runs along two rows). -1 when a pivot is not clearly
** positive (the matrix is not positive definite to working precision). */
static int cholesky(double *a, int64_t n) {
  for (int64_t j = 0; j < n; j++) {
    double *aj = a + j * n, s = aj[j], tol = (double)n * DBL_EPSILON * fabs(aj[j]);
    for (int64_t k = 0; k < j; k++) s -= aj[k] * aj[k];
    if (!(s > tol)) return -1;
    double d = sqrt(s);
    aj[j] = d;
    for (int64_t i = j + 1; i < n; i++) {
      double *ai = a + i * n, t = ai[j];
      for (int64_t k = 0; k < j; k++) t -= ai[k] * aj[k];
      ai[j] = t / d;
    }
  }
  return 0;
}

/* x (n, m) <- (L L^T)^-1 x for the factor L (n, n) of cholesky. */
static void chol_solve(const double *l, int64_t n, double *x, int64_t m) {
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)n, (int)m,
              1.0, l, (int)n, x, (int)m);
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, (int)n, (int)m,
              1.0, l, (int)n, x, (int)m);
}

/* ---------------------------------------------------------------- the fit */

#define CHUNK 256 /* shared tokens dequantized per BLAS update */

typedef struct {
  tide_env *env;
  int64_t da, db, n;
  double *ga, *gb, *c, *h, *k;  /* see the top comment */
  double *xa, *xb;              /* (CHUNK, d_a), (CHUNK, d_b) rows of a chunk */
  float *row;                   /* (max(d_a, d_b)) one dequantized row */
} fit;

static size_t dbytes(int64_t n) { return (size_t)n * sizeof(double); }

static void fit_free(fit *f) {
  double **ps[] = { &f->ga, &f->gb, &f->c, &f->h, &f->k, &f->xa, &f->xb };
  int64_t ns[] = { f->da * f->da, f->db * f->db, f->da * f->db, f->da * f->db, f->da * f->db,
                   CHUNK * f->da, CHUNK * f->db };
  for (int i = 0; i < 7; i++)
    if (*ps[i]) tidei_free(f->env, *ps[i], dbytes(ns[i]));
  if (f->row) tidei_free(f->env, f->row, (size_t)(f->da > f->db ? f->da : f->db) * sizeof(float));
}

static int fit_alloc(fit *f) {
  double **ps[] = { &f->ga, &f->gb, &f->c, &f->h, &f->k, &f->xa, &f->xb };
  int64_t ns[] = { f->da * f->da, f->db * f->db, f->da * f->db, f->da * f->db, f->da * f->db,
                   CHUNK * f->da, CHUNK * f->db };
  for (int i = 0; i < 7; i++)
    if (!(*ps[i] = tidei_calloc(f->env, (size_t)ns[i], sizeof(double)))) return TIDE_ERR_NOMEM;
  f->row = tidei_alloc(f->env, (size_t)(f->da > f->db ? f->da : f->db) * sizeof(float));
  return f->row ? TIDE_OK : TIDE_ERR_NOMEM;
}

/* Rows ids[0..n) of m's output matrix as doubles into x (n, n_embd). */
static void rows_of(const tide_model *m, const int32_t *ids, int64_t n, double *x, float *row) {
  const tidei_mat *w = &m->output;
  size_t rs = tide_dtype_row_size(w->dtype, w->n_in);
  for (int64_t i = 0; i < n; i++) {
    tide_dequantize(w->dtype, (const char *)w->data + (size_t)ids[i] * rs, row, w->n_in);
    for (int64_t j = 0; j < w->n_in; j++) x[i * w->n_in + j] = row[j];
  }
}

/* G_a, G_b and C over the shared tokens, in chunks. */
static void fit_grams(fit *f, const tide_model *a, const tide_model *b, const int32_t *ia,
                      const int32_t *ib) {
  int da = (int)f->da, db = (int)f->db;
  for (int64_t i0 = 0; i0 < f->n; i0 += CHUNK) {
    int nc = (int)(f->n - i0 < CHUNK ? f->n - i0 : CHUNK);
    rows_of(a, ia + i0, nc, f->xa, f->row);
    rows_of(b, ib + i0, nc, f->xb, f->row);
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, da, nc, 1.0, f->xa, da, 1.0, f->ga, da);
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, db, nc, 1.0, f->xb, db, 1.0, f->gb, db);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, da, db, nc, 1.0, f->xa, da, f->xb, db,
                1.0, f->c, db);
  }
}

static double trace(const double *g, int64_t n) {
  double t = 0;
  for (int64_t i = 0; i < n; i++) t += g[i * n + i];
  return t;
}

/* Solves both ridge problems; residuals from the normal equations:
** |E_a H - E_b|^2 = tr(G_b) - tr(H^T C) - r_a |H|^2 since (G_a + r_a I) H = C. */
static int fit_solve(fit *f, double lambda, tide_steer_transfer_info *in) {
  int64_t da = f->da, db = f->db;
  double ta = trace(f->ga, da), tb = trace(f->gb, db);
  double ra = lambda * ta / (double)da, rb = lambda * tb / (double)db;
  in->ridge_a = ra, in->ridge_b = rb;
  for (int64_t i = 0; i < da; i++) f->ga[i * da + i] += ra;
  for (int64_t i = 0; i < db; i++) f->gb[i * db + i] += rb;
  const char *bad = cholesky(f->ga, da) ? "a" : cholesky(f->gb, db) ? "b" : NULL;
  if (bad)
    return tidei_error(f->env, TIDE_ERR_STATE, "steer_transfer: the Gram matrix of model %s's "
                       "embeddings is not positive definite (%lld shared tokens, n_embd %lld, "
                       "lambda %g); use a larger lambda", bad, (long long)f->n,
                       (long long)(*bad == 'a' ? da : db), lambda);
  memcpy(f->h, f->c, dbytes(da * db));
  for (int64_t i = 0; i < da; i++) /* K's right-hand side is C^T (d_b, d_a) */
    for (int64_t j = 0; j < db; j++) f->k[j * da + i] = f->c[i * db + j];
  chol_solve(f->ga, da, f->h, db);
  chol_solve(f->gb, db, f->k, da);
  double hc = 0, hh = 0, kc = 0, kk = 0;
  for (int64_t i = 0; i < da; i++)
    for (int64_t j = 0; j < db; j++) {
      double h = f->h[i * db + j], k = f->k[j * da + i], c = f->c[i * db + j];
      hc += h * c, hh += h * h, kc += k * c, kk += k * k;
    }
  double eab = tb - hc - ra * hh, eba = ta - kc - rb * kk;
  in->residual_ab = tb > 0 ? sqrt(eab > 0 ? eab / tb : 0) : 0;
  in->residual_ba = ta > 0 ? sqrt(eba > 0 ? eba / ta : 0) : 0;
  return TIDE_OK;
}

/* out (d_b, r) = M p (d_a, r): M is H^T (trans, H (d_a, d_b)) or K (d_b, d_a). */
static int map_factor(const double *m, int trans, int64_t da, int64_t db, const float *p,
                      int64_t r, float *out) {
  for (int64_t i = 0; i < db; i++)
    for (int64_t c = 0; c < r; c++) {
      double acc = 0;
      for (int64_t j = 0; j < da; j++) acc += (trans ? m[j * db + i] : m[i * da + j]) * p[j * r + c];
      if (!isfinite(acc) || fabs(acc) > FLT_MAX) return -1;
      out[i * r + c] = (float)acc;
    }
  return 0;
}

/* ---------------------------------------------------------------- the API */

tide_steer_transfer_params tide_steer_transfer_default_params(void) {
  tide_steer_transfer_params p;
  memset(&p, 0, sizeof p);
  p.lambda = 1e-3;
  p.method = TIDE_STEER_TRANSFER_FIT2;
  return p;
}

static int check_args(tide_env *env, const tide_model *a, const tide_model *b,
                      const tide_steer *w, const tide_steer_transfer_params *p) {
  if (!a || !b || !w)
    return tidei_error(env, TIDE_ERR_ARG, "steer_transfer: model a, model b or the steer is NULL");
  if (w->n_embd != a->n_embd)
    return tidei_error(env, TIDE_ERR_ARG, "steer_transfer: the steer's n_embd is %d, model a's "
                       "is %d", (int)w->n_embd, (int)a->n_embd);
  if (!a->output.data || !b->output.data)
    return tidei_error(env, TIDE_ERR_ARG, "steer_transfer: model %s has no weights (vocab only)",
                       a->output.data ? "b" : "a");
  if (w->rank > b->n_embd)
    return tidei_error(env, TIDE_ERR_ARG, "steer_transfer: the steer's rank %d exceeds model b's "
                       "n_embd %d", (int)w->rank, (int)b->n_embd);
  if (!(p->lambda >= 0) || !isfinite(p->lambda))
    return tidei_error(env, TIDE_ERR_ARG, "steer_transfer: lambda %g, expected a finite "
                       "number >= 0", p->lambda);
  if (p->method != TIDE_STEER_TRANSFER_FIT2 && p->method != TIDE_STEER_TRANSFER_HTWH)
    return tidei_error(env, TIDE_ERR_ARG, "steer_transfer: method %d is neither fit2 (0) nor "
                       "htwh (1)", p->method);
  return TIDE_OK;
}

/* The new steer's source: model b, and a data string naming a. */
static int set_source(tide_steer *s, const tide_model *a, const tide_model *b,
                      const tide_steer *w) {
  uint64_t ha = 0, hb = 0;
  int st = tide_model_hash(a, &ha);
  if (!st) st = tide_model_hash(b, &hb);
  if (st) return st;
  const char *an = a->name ? a->name : "", *wd = w->data;
  size_t n = strlen(an) + (wd ? strlen(wd) : 0) + 64;
  char *d = tidei_alloc(s->env, n);
  if (!d) return TIDE_ERR_NOMEM;
  snprintf(d, n, "transferred from '%s' (%016llx)%s%s", an, (unsigned long long)ha,
           wd ? "; " : "", wd ? wd : "");
  tide_steer_source src = { b->name, 1, hb, d };
  st = tide_steer_set_source(s, &src);
  tidei_free(s->env, d, n);
  return st;
}

int tide_steer_transfer(const tide_model *a, const tide_model *b, const tide_steer *w,
                        const tide_steer_transfer_params *p, tide_steer **out,
                        tide_steer_transfer_info *info) {
  if (out) *out = NULL;
  if (!w) return TIDE_ERR_ARG;
  tide_env *env = w->env;
  tide_steer_transfer_params dp = tide_steer_transfer_default_params();
  if (!p) p = &dp;
  if (!out) return tidei_error(env, TIDE_ERR_ARG, "steer_transfer: out is NULL");
  int st = check_args(env, a, b, w, p);
  if (st) return st;
  tide_steer_transfer_info in;
  memset(&in, 0, sizeof in);
  in.d_a = a->n_embd, in.d_b = b->n_embd;
  int32_t *ia = NULL, *ib = NULL, n = 0;
  if ((st = tidei_shared_tokens(env, a->tok, b->tok, &ia, &ib, &n))) return st;
  in.n_shared = n;
  in.underdetermined = n < (in.d_a > in.d_b ? in.d_a : in.d_b);
  if (info) *info = in;
  if (n == 0)
    return tidei_error(env, TIDE_ERR_STATE, "steer_transfer: the vocabularies of '%s' and '%s' "
                       "share no token", a->name ? a->name : "", b->name ? b->name : "");
  fit f;
  memset(&f, 0, sizeof f);
  f.env = env, f.da = a->n_embd, f.db = b->n_embd, f.n = n;
  int64_t r = w->rank, db = b->n_embd;
  float *p1 = NULL, *p2 = NULL;
  size_t pb = (size_t)(db * r) * sizeof(float);
  if ((st = fit_alloc(&f)) || !(p1 = tidei_alloc(env, pb)) || !(p2 = tidei_alloc(env, pb))) {
    st = TIDE_ERR_NOMEM;
    goto done;
  }
  fit_grams(&f, a, b, ia, ib);
  if ((st = fit_solve(&f, p->lambda, &in))) goto done;
  if (info) *info = in;
  int htwh = p->method == TIDE_STEER_TRANSFER_HTWH;
  if (map_factor(f.h, 1, f.da, db, w->p1, r, p1)
      || (htwh ? map_factor(f.h, 1, f.da, db, w->p2, r, p2) : map_factor(f.k, 0, f.da, db, w->p2, r, p2))) {
    st = tidei_error(env, TIDE_ERR_STATE, "steer_transfer: the transferred steer is not finite "
                     "(relative residual %g); use a larger lambda", in.residual_ab);
    goto done;
  }
  if (!(st = tide_steer_new(env, (int32_t)db, (int32_t)r, p1, p2, w->eps0, out))
      && (st = set_source(*out, a, b, w))) {
    tide_steer_free(*out);
    *out = NULL;
  }
done:
  fit_free(&f);
  if (p1) tidei_free(env, p1, pb);
  if (p2) tidei_free(env, p2, pb);
  if (ia) tidei_free(env, ia, (size_t)n * sizeof(int32_t));
  if (ib) tidei_free(env, ib, (size_t)n * sizeof(int32_t));
  return st;
}
