/*
** kv.h -- the KV cache: fixed-size blocks of positions shared by forkable
** sequences through per-sequence block tables (copy-on-write).
** Layer: core (internal). Implemented by kv.c.
**
** A block holds TIDEI_KV_BLOCK consecutive positions of one sequence's K and
** V for every layer. A sequence is a length and a table of block ids; a fork
** copies the table and bumps the blocks' reference counts. A block with more
** than one reference is never written: tidei_kv_begin copies it first.
*/
#ifndef TIDE_KV_H
#define TIDE_KV_H

#include <stddef.h>
#include <stdint.h>

#include "tidei.h"

#define TIDEI_KV_BLOCK 16 /* positions per block */

typedef struct {
  tide_env *env;
  int32_t n_layer;
  int32_t kv_dim;        /* n_kv_head*head_dim: elements of one K (or V) row */
  int32_t n_ctx;         /* max positions of one sequence */
  int32_t n_seq_max;
  int32_t max_blocks;    /* blocks of one full sequence: ceil(n_ctx / block) */
  int32_t n_blocks;      /* blocks in the cache */
  int kv_type;           /* TIDE_F16 or TIDE_F32 */
  size_t elt;            /* bytes per element of kv_type */
  size_t row_bytes;      /* kv_dim * elt */
  size_t block_bytes;    /* 2 * n_layer * TIDEI_KV_BLOCK * row_bytes */
  unsigned char *data;   /* (n_blocks, 2 (K, V), n_layer, TIDEI_KV_BLOCK, kv_dim) */
  size_t data_size;
  int32_t *refs;         /* (n_blocks) sequences using each block; 0 = free */
  int32_t *free_ids;     /* (n_blocks) stack of free block ids, n_free on it */
  int32_t n_free;
  int32_t *tables;       /* (n_seq_max, max_blocks) block ids of each sequence */
  int32_t *len;          /* (n_seq_max) positions stored; -1 = not live */
  int32_t *pending;      /* (n_seq_max) scratch: rows of a batch per sequence */
  int32_t *saved_len;    /* (n_seq_max) scratch: lengths before a batch */
  unsigned char *cow;    /* (n_seq_max) scratch: sequence must copy its last block */
} tidei_kv;

/* Allocates a cache of ceil(n_cells / block) blocks, all free, and n_seq_max
** sequence slots, none live. Checks its arguments. On failure nothing stays
** allocated (tidei_kv_release is then a no-op). */
int tidei_kv_init(tidei_kv *kv, tide_env *env, int32_t n_layer, int32_t kv_dim,
                  int32_t n_ctx, int32_t n_cells, int32_t n_seq_max,
                  int kv_type);
void tidei_kv_release(tidei_kv *kv);

/* Sequence operations behind tide_seq_*; messages on kv->env. */
int tidei_kv_seq_new(tidei_kv *kv, int32_t *seq);
int tidei_kv_seq_fork(tidei_kv *kv, int32_t parent, int32_t *child);
int tidei_kv_seq_truncate(tidei_kv *kv, int32_t seq, int32_t pos);
int tidei_kv_seq_free(tidei_kv *kv, int32_t seq);
int32_t tidei_kv_seq_len(const tidei_kv *kv, int32_t seq);
int32_t tidei_kv_free_cells(const tidei_kv *kv);

/* Takes cache rows for positions len .. len+n-1 of seq (copying a shared
** last block first) and advances its length, as a decode of n rows would;
** the caller writes the rows (tidei_kv_row). On failure nothing changed.
** Used by tide_seq_set_prefix. */
int tidei_kv_seq_grow(tidei_kv *kv, int32_t seq, int32_t n);

/* Prepares a batch: checks every row (live sequence, pos == next position of
** its sequence counting earlier rows, pos < n_ctx) and that enough blocks are
** free, then copies shared partially-filled last blocks (copy-on-write),
** takes new blocks and advances the lengths. On failure nothing changed.
** Allocates nothing. Tokens are not looked at. */
int tidei_kv_begin(tidei_kv *kv, const tide_batch_row *rows, int32_t n);

/* Undoes a successful tidei_kv_begin of the same rows (a cancelled decode):
** the sequences go back to their earlier lengths. */
void tidei_kv_rollback(tidei_kv *kv, const tide_batch_row *rows, int32_t n);

/* The K (which = 0) or V (which = 1) row of layer il at position pos of seq,
** unchecked: (kv_dim) elements of kv_type. */
static inline void *tidei_kv_row(const tidei_kv *kv, int32_t seq, int which,
                                 int32_t il, int32_t pos) {
  int32_t b = kv->tables[(size_t)seq * kv->max_blocks + pos / TIDEI_KV_BLOCK];
  size_t r = ((size_t)which * kv->n_layer + il) * TIDEI_KV_BLOCK
             + pos % TIDEI_KV_BLOCK;
  return kv->data + (size_t)b * kv->block_bytes + r * kv->row_bytes;
}

#endif
