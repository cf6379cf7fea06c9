/*
** inject.c -- hidden-state injection: vectors that replace or are added to
** batch rows of the residual stream at chosen layers in the next decode.
** Layer: core. tide_decode calls the tidei_inject_* hooks (forward.c); the
** queue lives in ctx->inj, NULL until first used.
*/
#include <math.h>
#include <string.h>

#include "model.h"
#include "steer.h"

static void inj_free(tide_ctx *ctx) {
  tidei_inject *q = ctx->inj;
  if (!q) return;
  tide_env *env = ctx->env;
  size_t cap = (size_t)q->cap;
  if (q->layer) tidei_free(env, q->layer, cap * sizeof(int32_t));
  if (q->row) tidei_free(env, q->row, cap * sizeof(int32_t));
  if (q->mode) tidei_free(env, q->mode, cap * sizeof(int));
  if (q->h) tidei_free(env, q->h, cap * (size_t)ctx->m->n_embd * sizeof(float));
  tidei_free(env, q, sizeof *q);
  ctx->inj = NULL;
}

void tidei_inject_release(tide_ctx *ctx) { inj_free(ctx); }

/* Grows the queue to hold at least need entries (the old ones kept). */
static int reserve(tide_ctx *ctx, int32_t need) {
  tide_env *env = ctx->env;
  tidei_inject *q = ctx->inj;
  if (!q) {
    q = tidei_calloc(env, 1, sizeof *q);
    if (!q) return tidei_error(env, TIDE_ERR_NOMEM, "inject: out of memory");
    ctx->inj = q;
  }
  if (need <= q->cap) return TIDE_OK;
  int32_t cap = q->cap ? q->cap : 8;
  while (cap < need) cap *= 2;
  if (cap > TIDE_INJECT_MAX) cap = TIDE_INJECT_MAX;
  size_t e = (size_t)ctx->m->n_embd, nc = (size_t)cap, oc = (size_t)q->cap;
  int32_t *layer = tidei_alloc(env, nc * sizeof(int32_t));
  int32_t *row = tidei_alloc(env, nc * sizeof(int32_t));
  int *mode = tidei_alloc(env, nc * sizeof(int));
  float *h = tidei_alloc(env, nc * e * sizeof(float));
  if (!layer || !row || !mode || !h) {
    if (layer) tidei_free(env, layer, nc * sizeof(int32_t));
    if (row) tidei_free(env, row, nc * sizeof(int32_t));
    if (mode) tidei_free(env, mode, nc * sizeof(int));
    if (h) tidei_free(env, h, nc * e * sizeof(float));
    return tidei_error(env, TIDE_ERR_NOMEM, "inject: out of memory for %d vectors", (int)cap);
  }
  size_t n = (size_t)q->n;
  if (n) {
    memcpy(layer, q->layer, n * sizeof(int32_t));
    memcpy(row, q->row, n * sizeof(int32_t));
    memcpy(mode, q->mode, n * sizeof(int));
    memcpy(h, q->h, n * e * sizeof(float));
  }
  if (q->cap) {
    tidei_free(env, q->layer, oc * sizeof(int32_t));
    tidei_free(env, q->row, oc * sizeof(int32_t));
    tidei_free(env, q->mode, oc * sizeof(int));
    tidei_free(env, q->h, oc * e * sizeof(float));
  }
  q->layer = layer, q->row = row, q->mode = mode, q->h = h, q->cap = cap;
  return TIDE_OK;
}

int tide_ctx_inject(tide_ctx *ctx, int32_t layer, int32_t row, const float *h, int mode) {
  if (!ctx) return TIDE_ERR_ARG;
  tide_env *env = ctx->env;
  int32_t nl = ctx->m->n_layer, e = ctx->m->n_embd;
  if (layer < 0 || layer > nl)
    return tidei_error(env, TIDE_ERR_ARG, "inject: layer %d out of range 0..%d (n_layer)",
                       (int)layer, (int)nl);
  if (row < 0 || row >= ctx->n_batch)
    return tidei_error(env, TIDE_ERR_ARG, "inject: row %d out of range 0..%d (n_batch - 1)",
                       (int)row, (int)ctx->n_batch - 1);
  if (mode != TIDE_INJECT_REPLACE && mode != TIDE_INJECT_ADD)
    return tidei_error(env, TIDE_ERR_ARG, "inject: mode %d is neither REPLACE (0) nor ADD (1)",
                       mode);
  if (!h) return tidei_error(env, TIDE_ERR_ARG, "inject: NULL vector");
  for (int32_t i = 0; i < e; i++)
    if (!isfinite(h[i]))
      return tidei_error(env, TIDE_ERR_ARG, "inject: element %d of the vector is not finite",
                         (int)i);
  int32_t n = ctx->inj ? ctx->inj->n : 0;
  if (n >= TIDE_INJECT_MAX)
    return tidei_error(env, TIDE_ERR_ARG, "inject: more than %d injections queued",
                       TIDE_INJECT_MAX);
  int st = reserve(ctx, n + 1);
  if (st) return st;
  tidei_inject *q = ctx->inj;
  q->layer[n] = layer, q->row[n] = row, q->mode[n] = mode;
  memcpy(q->h + (size_t)n * e, h, (size_t)e * sizeof(float));
  q->n = n + 1;
  return TIDE_OK;
}

void tide_ctx_clear_injections(tide_ctx *ctx) {
  if (ctx && ctx->inj) ctx->inj->n = 0;
}

void tidei_inject_clear(tide_ctx *ctx) { tide_ctx_clear_injections(ctx); }

int tidei_inject_check(tide_ctx *ctx, int32_t n) {
  const tidei_inject *q = ctx->inj;
  if (!q) return TIDE_OK;
  for (int32_t i = 0; i < q->n; i++)
    if (q->row[i] >= n) {
      int32_t r = q->row[i], l = q->layer[i];
      tide_ctx_clear_injections(ctx);
      return tidei_error(ctx->env, TIDE_ERR_ARG,
                         "inject: row %d (layer %d) but the decode has %d rows",
                         (int)r, (int)l, (int)n);
    }
  return TIDE_OK;
}

int tidei_inject_keep_all(const tide_ctx *ctx) {
  const tidei_inject *q = ctx->inj;
  if (!q) return 0;
  for (int32_t i = 0; i < q->n; i++)
    if (q->layer[i] == ctx->m->n_layer) return 1;
  return 0;
}

void tidei_inject_rows(tide_ctx *ctx, int32_t layer, int32_t n) {
  const tidei_inject *q = ctx->inj;
  if (!q || q->n == 0) return;
  int64_t e = ctx->m->n_embd;
  for (int32_t i = 0; i < q->n; i++) {
    if (q->layer[i] != layer || q->row[i] >= n) continue;
    float *x = ctx->x + q->row[i] * e;
    const float *h = q->h + i * e;
    if (q->mode[i] == TIDE_INJECT_REPLACE) memcpy(x, h, (size_t)e * sizeof(float));
    else
      for (int64_t j = 0; j < e; j++) x[j] += h[j];
  }
}
