/*
** kv.c -- the KV cache: blocks, sequences, fork, truncate, copy-on-write.
** Layer: core. Also defines the public tide_seq_* functions and
** tide_ctx_free_cells, which act on a context's cache.
**
** Invariants: a block is free (refs 0, on the free stack) or used by refs
** sequences; sequence s uses tables[s][0 .. blocks(len[s]) - 1]; positions
** [len, end of its last block) of a block are garbage that nobody reads. A
** sequence writes only into blocks it holds alone (tidei_kv_begin copies a
** shared last block first), so a fork never sees its parent's later rows.
*/
#include <string.h>

#include "kv.h"
#include "model.h"
#include "steer.h"

#define B TIDEI_KV_BLOCK

/* Blocks needed for n positions. */
static int32_t blocks_of(int32_t n) { return (n + B - 1) / B; }

int tidei_kv_init(tidei_kv *kv, tide_env *env, int32_t n_layer, int32_t kv_dim,
                  int32_t n_ctx, int32_t n_cells, int32_t n_seq_max,
                  int kv_type) {
  memset(kv, 0, sizeof *kv);
  kv->env = env;
  if (kv_type != TIDE_F16 && kv_type != TIDE_F32)
    return tidei_error(env, TIDE_ERR_ARG, "kv_type %d: expected f16 (%d) or f32 (%d)",
                       kv_type, TIDE_F16, TIDE_F32);
  if (n_layer <= 0 || kv_dim <= 0 || n_ctx <= 0 || n_cells <= 0 || n_seq_max <= 0)
    return tidei_error(env, TIDE_ERR_ARG,
                       "kv cache: bad sizes (n_layer %d, kv_dim %d, n_ctx %d, n_cells %d, n_seq_max %d)",
                       (int)n_layer, (int)kv_dim, (int)n_ctx, (int)n_cells, (int)n_seq_max);
  if (n_cells > INT32_MAX - B || n_ctx > INT32_MAX - B)
    return tidei_error(env, TIDE_ERR_ARG, "kv cache: n_cells %d too large", (int)n_cells);
  kv->n_layer = n_layer;
  kv->kv_dim = kv_dim;
  kv->n_ctx = n_ctx;
  kv->n_seq_max = n_seq_max;
  kv->max_blocks = blocks_of(n_ctx);
  kv->n_blocks = blocks_of(n_cells);
  kv->kv_type = kv_type;
  kv->elt = kv_type == TIDE_F16 ? 2 : 4;
  kv->row_bytes = (size_t)kv_dim * kv->elt;
  /* block_bytes and data_size in 64 bits, checked against SIZE_MAX */
  uint64_t bb = 2u * (uint64_t)n_layer * B * (uint64_t)kv->row_bytes;
  uint64_t total = bb * (uint64_t)kv->n_blocks;
  if (total / kv->n_blocks != bb || total > (uint64_t)SIZE_MAX / 2
      || (uint64_t)n_seq_max * (uint64_t)kv->max_blocks > (uint64_t)INT32_MAX)
    return tidei_error(env, TIDE_ERR_ARG, "kv cache of %d cells too large", (int)n_cells);
  kv->block_bytes = (size_t)bb;
  kv->data_size = (size_t)total;

  size_t nb = (size_t)kv->n_blocks, ns = (size_t)n_seq_max;
  kv->data = tidei_alloc(env, kv->data_size);
  kv->refs = tidei_calloc(env, nb, sizeof(int32_t));
  kv->free_ids = tidei_alloc(env, nb * sizeof(int32_t));
  kv->tables = tidei_calloc(env, ns * (size_t)kv->max_blocks, sizeof(int32_t));
  kv->len = tidei_alloc(env, ns * sizeof(int32_t));
  kv->pending = tidei_calloc(env, ns, sizeof(int32_t));
  kv->saved_len = tidei_calloc(env, ns, sizeof(int32_t));
  kv->cow = tidei_calloc(env, ns, 1);
  if (!kv->data || !kv->refs || !kv->free_ids || !kv->tables || !kv->len
      || !kv->pending || !kv->saved_len || !kv->cow) {
    tidei_kv_release(kv);
    return tidei_error(env, TIDE_ERR_NOMEM, "out of memory for a kv cache of %d cells",
                       (int)n_cells);
  }
  /* lowest ids on top of the stack, so a fresh cache fills in order */
  for (int32_t i = 0; i < kv->n_blocks; i++) kv->free_ids[i] = kv->n_blocks - 1 - i;
  kv->n_free = kv->n_blocks;
  for (int32_t s = 0; s < n_seq_max; s++) kv->len[s] = -1;
  return TIDE_OK;
}

static void xfree(tide_env *env, void *p, size_t n) {
  if (p) tidei_free(env, p, n);
}

void tidei_kv_release(tidei_kv *kv) {
  tide_env *env = kv->env;
  size_t nb = (size_t)kv->n_blocks, ns = (size_t)kv->n_seq_max;
  if (!env) return;
  xfree(env, kv->data, kv->data_size);
  xfree(env, kv->refs, nb * sizeof(int32_t));
  xfree(env, kv->free_ids, nb * sizeof(int32_t));
  xfree(env, kv->tables, ns * (size_t)kv->max_blocks * sizeof(int32_t));
  xfree(env, kv->len, ns * sizeof(int32_t));
  xfree(env, kv->pending, ns * sizeof(int32_t));
  xfree(env, kv->saved_len, ns * sizeof(int32_t));
  xfree(env, kv->cow, ns);
  memset(kv, 0, sizeof *kv);
}

static int32_t block_take(tidei_kv *kv) {
  tidei_assert(kv->n_free > 0);
  int32_t b = kv->free_ids[--kv->n_free];
  kv->refs[b] = 1;
  return b;
}

static void block_drop(tidei_kv *kv, int32_t b) {
  tidei_assert(kv->refs[b] > 0);
  if (--kv->refs[b] == 0) kv->free_ids[kv->n_free++] = b;
}

static int32_t *table_of(tidei_kv *kv, int32_t seq) {
  return kv->tables + (size_t)seq * kv->max_blocks;
}

static int check_live(tidei_kv *kv, int32_t seq) {
  if (seq < 0 || seq >= kv->n_seq_max || kv->len[seq] < 0)
    return tidei_error(kv->env, TIDE_ERR_NOTFOUND, "sequence %d is not live", (int)seq);
  return TIDE_OK;
}

static int free_slot(tidei_kv *kv, int32_t *seq) {
  for (int32_t s = 0; s < kv->n_seq_max; s++)
    if (kv->len[s] < 0) { *seq = s; return TIDE_OK; }
  return tidei_error(kv->env, TIDE_ERR_FULL, "no free sequence (n_seq_max %d)",
                     (int)kv->n_seq_max);
}

int tidei_kv_seq_new(tidei_kv *kv, int32_t *seq) {
  int32_t s = -1;
  int st = free_slot(kv, &s);
  *seq = s;
  if (st) return st;
  kv->len[s] = 0;
  return TIDE_OK;
}

int tidei_kv_seq_fork(tidei_kv *kv, int32_t parent, int32_t *child) {
  int32_t c = -1;
  int st = check_live(kv, parent);
  if (!st) st = free_slot(kv, &c);
  *child = st ? -1 : c;
  if (st) return st;
  int32_t nb = blocks_of(kv->len[parent]);
  int32_t *pt = table_of(kv, parent), *ct = table_of(kv, c);
  for (int32_t i = 0; i < nb; i++) {
    ct[i] = pt[i];
    kv->refs[pt[i]]++;
  }
  kv->len[c] = kv->len[parent];
  return TIDE_OK;
}

int tidei_kv_seq_truncate(tidei_kv *kv, int32_t seq, int32_t pos) {
  int st = check_live(kv, seq);
  if (st) return st;
  if (pos < 0 || pos > kv->len[seq])
    return tidei_error(kv->env, TIDE_ERR_ARG,
                       "truncate sequence %d at %d: position out of range [0, %d]",
                       (int)seq, (int)pos, (int)kv->len[seq]);
  int32_t *t = table_of(kv, seq);
  for (int32_t i = blocks_of(pos); i < blocks_of(kv->len[seq]); i++) block_drop(kv, t[i]);
  kv->len[seq] = pos;
  return TIDE_OK;
}

int tidei_kv_seq_free(tidei_kv *kv, int32_t seq) {
  int st = tidei_kv_seq_truncate(kv, seq, 0);
  if (st) return st;
  kv->len[seq] = -1;
  return TIDE_OK;
}

int32_t tidei_kv_seq_len(const tidei_kv *kv, int32_t seq) {
  if (seq < 0 || seq >= kv->n_seq_max) return -1;
  return kv->len[seq];
}

int32_t tidei_kv_free_cells(const tidei_kv *kv) { return kv->n_free * B; }

/* Clears the per-sequence scratch of rows [0, n). */
static void clear_scratch(tidei_kv *kv, const tide_batch_row *rows, int32_t n) {
  for (int32_t i = 0; i < n; i++) {
    int32_t s = rows[i].seq;
    if (s >= 0 && s < kv->n_seq_max) { kv->pending[s] = 0; kv->cow[s] = 0; }
  }
}

/* Checks rows and counts the blocks the batch needs (new blocks plus copies
** of shared last blocks). Marks cow[s] and lowers the shared block's count as
** the copy will; the caller restores the counts if the batch does not go on. */
static int plan(tidei_kv *kv, const tide_batch_row *rows, int32_t n, int32_t *need) {
  for (int32_t i = 0; i < n; i++) {
    int32_t s = rows[i].seq, pos = rows[i].pos;
    if (s < 0 || s >= kv->n_seq_max || kv->len[s] < 0) {
      clear_scratch(kv, rows, i);
      return tidei_error(kv->env, TIDE_ERR_NOTFOUND, "row %d: sequence %d is not live",
                         (int)i, (int)s);
    }
    int32_t expect = kv->len[s] + kv->pending[s];
    if (pos != expect) {
      clear_scratch(kv, rows, i);
      return tidei_error(kv->env, TIDE_ERR_ARG,
                         "row %d: position %d of sequence %d, expected %d",
                         (int)i, (int)pos, (int)s, (int)expect);
    }
    if (pos >= kv->n_ctx) {
      clear_scratch(kv, rows, i);
      return tidei_error(kv->env, TIDE_ERR_FULL,
                         "row %d: position %d of sequence %d past n_ctx %d",
                         (int)i, (int)pos, (int)s, (int)kv->n_ctx);
    }
    kv->pending[s]++;
  }
  *need = 0;
  for (int32_t i = 0; i < n; i++) {
    int32_t s = rows[i].seq, len = kv->len[s];
    if (rows[i].pos != len) continue; /* not the sequence's first row */
    *need += blocks_of(len + kv->pending[s]) - blocks_of(len);
    if (len % B) {
      int32_t b = table_of(kv, s)[len / B];
      if (kv->refs[b] > 1) { kv->cow[s] = 1; kv->refs[b]--; (*need)++; }
    }
  }
  return TIDE_OK;
}

int tidei_kv_begin(tidei_kv *kv, const tide_batch_row *rows, int32_t n) {
  int32_t need = 0;
  int st = plan(kv, rows, n, &need);
  if (st) return st;
  if (need > kv->n_free) {
    for (int32_t i = 0; i < n; i++) {
      int32_t s = rows[i].seq, len = kv->len[s];
      if (rows[i].pos == len && kv->cow[s]) kv->refs[table_of(kv, s)[len / B]]++;
    }
    clear_scratch(kv, rows, n);
    return tidei_error(kv->env, TIDE_ERR_FULL,
                       "kv cache full: the batch needs %d blocks of %d positions, %d free",
                       (int)need, B, (int)kv->n_free);
  }
  for (int32_t i = 0; i < n; i++) {
    int32_t s = rows[i].seq, len = kv->len[s];
    if (rows[i].pos != len) continue;
    int32_t *t = table_of(kv, s);
    if (kv->cow[s]) { /* the shared block's count was lowered in plan() */
      int32_t b = t[len / B], c = block_take(kv);
      memcpy(kv->data + (size_t)c * kv->block_bytes,
             kv->data + (size_t)b * kv->block_bytes, kv->block_bytes);
      t[len / B] = c;
    }
    int32_t end = len + kv->pending[s];
    for (int32_t j = blocks_of(len); j < blocks_of(end); j++) t[j] = block_take(kv);
    kv->saved_len[s] = len;
    kv->len[s] = end;
  }
  clear_scratch(kv, rows, n);
  return TIDE_OK;
}

void tidei_kv_rollback(tidei_kv *kv, const tide_batch_row *rows, int32_t n) {
  for (int32_t i = 0; i < n; i++) {
    int32_t s = rows[i].seq;
    if (rows[i].pos == kv->saved_len[s] && kv->len[s] > kv->saved_len[s])
      tidei_kv_seq_truncate(kv, s, kv->saved_len[s]);
  }
}

int tidei_kv_seq_grow(tidei_kv *kv, int32_t seq, int32_t n) {
  int st = check_live(kv, seq);
  if (st) return st;
  int32_t len0 = kv->len[seq];
  tide_batch_row rows[B];
  for (int32_t done = 0; done < n;) { /* a block's worth of rows at a time */
    int32_t m = n - done < B ? n - done : B;
    for (int32_t i = 0; i < m; i++) rows[i] = (tide_batch_row){ seq, kv->len[seq] + i, 0, 0 };
    if ((st = tidei_kv_begin(kv, rows, m))) {
      tidei_kv_seq_truncate(kv, seq, len0);
      return st;
    }
    done += m;
  }
  return TIDE_OK;
}

/* ---------------------------------------------------------------- public */

/* Sequence slots carry their steers (steer.c): new ones follow the context
** default, forks copy their parent's set, freed ones drop theirs. */
int tide_seq_new(tide_ctx *ctx, int32_t *seq) {
  if (!seq) return tidei_error(ctx->env, TIDE_ERR_ARG, "seq_new: seq is NULL");
  int st = tidei_kv_seq_new(&ctx->kv, seq);
  if (!st) tidei_steer_seq_reset(ctx, *seq);
  return st;
}

int tide_seq_fork(tide_ctx *ctx, int32_t parent, int32_t *child) {
  if (!child) return tidei_error(ctx->env, TIDE_ERR_ARG, "seq_fork: child is NULL");
  int st = tidei_kv_seq_fork(&ctx->kv, parent, child);
  if (!st) tidei_steer_seq_fork(ctx, parent, *child);
  return st;
}

int tide_seq_truncate(tide_ctx *ctx, int32_t seq, int32_t pos) {
  return tidei_kv_seq_truncate(&ctx->kv, seq, pos);
}

int tide_seq_free(tide_ctx *ctx, int32_t seq) {
  int st = tidei_kv_seq_free(&ctx->kv, seq);
  if (!st) tidei_steer_seq_reset(ctx, seq);
  return st;
}

int32_t tide_seq_len(const tide_ctx *ctx, int32_t seq) {
  return tidei_kv_seq_len(&ctx->kv, seq);
}

int32_t tide_ctx_free_cells(const tide_ctx *ctx) {
  return tidei_kv_free_cells(&ctx->kv);
}
