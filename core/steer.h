/*
** steer.h -- steering and introspection state of a context: LM-Steer sets
** per sequence, the control vector, hidden-state capture. Shared by steer.c
** (which owns it), forward.c (tide_decode calls the hooks) and kv.c (forks
** inherit a sequence's steers). Layer: core (internal).
**
** Everything here is NULL until first used, so a context that never steers
** or captures pays one pointer test per hook.
*/
#ifndef TIDE_STEER_H
#define TIDE_STEER_H

#include <stdint.h>

#include "model.h"

struct tide_steer {
  tide_env *env;
  int refs;                 /* 1 + active-set entries that hold it */
  int32_t n_embd, rank;
  float eps0;               /* eps it was trained with (0: unknown) */
  float *p1;                /* (n_embd, rank) row-major, as GGUF "steer.p1" */
  float *p2;                /* (n_embd, rank) */
  float *p1t, *p2t;         /* (rank, n_embd) transposes: both skinny products
                               become row axpys */
  char *base_name, *data;   /* provenance (tide_steer_source), NUL-terminated, or NULL */
  int has_base_hash;
  uint64_t base_hash;
};

/* The steers of one sequence (or the context default). */
typedef struct {
  int own;                  /* 0: the sequence follows the context default */
  int32_t n;
  tide_steer_entry e[TIDE_STEER_MAX];
} tidei_steer_set;

typedef struct tidei_steer_state {
  tidei_steer_set def;      /* the context default (seq -1) */
  tidei_steer_set *seqs;    /* (n_seq_max) */
  int32_t n_active;         /* sets with entries (own, or def); 0: hooks skip */
  int32_t r_max;            /* rank the scratch is sized for */
  float *c0;                /* (n_batch, n_embd) rows before any steer */
  float *g;                 /* (n_batch, n_embd) gathered rows, then updates */
  float *u;                 /* (n_batch, r_max) projections */
  float *eps;               /* (n_batch) coefficient of one steer per row */
  int32_t *idx;             /* (n_batch) rows gathered for one steer */
} tidei_steer_state;

typedef struct tidei_capture {
  int32_t n;                /* layers captured */
  int32_t *layers;          /* (n) 0..n_layer */
  int32_t *n_rows;          /* (n) rows captured at each layer in the last decode */
  float *h;                 /* (n, n_batch, n_embd) */
  int keep_all;             /* layer n_layer is captured: no row is dropped */
} tidei_capture;

/* Hidden-state injections queued for the next decode (inject.c). */
typedef struct tidei_inject {
  int32_t n, cap;           /* queued, allocated */
  int32_t *layer, *row;     /* (cap) */
  int *mode;                /* (cap) TIDE_INJECT_REPLACE or TIDE_INJECT_ADD */
  float *h;                 /* (cap, n_embd) */
} tidei_inject;

/* Hooks of tide_decode; each returns at once when its feature is off.
** Steers: TIDE_STEER_INPUT on x (n rows: the batch rows), TIDE_STEER_OUTPUT
** on xb (n rows: the batch rows out_rows[0..n)). */
void tidei_steer_apply(tide_ctx *ctx, int where, const tide_batch_row *rows, int32_t n);
/* x (n rows) += control vector row il, when il is in range. */
void tidei_cvec_add(tide_ctx *ctx, int32_t il, int32_t n);
/* Copies rows [0, n) of x as layer's capture. */
void tidei_capture_rows(tide_ctx *ctx, int32_t layer, int32_t n);
/* Nonzero when the last block must keep every row (layer n_layer captured). */
int tidei_capture_keep_all(const tide_ctx *ctx);

/* Injections (inject.c): check the queue against a decode of n rows
** (TIDE_ERR_ARG for a row >= n; the queue is cleared then); whether one is
** at layer n_layer (the last block must keep every row); apply those at
** layer to rows [0, n) of x; clear the queue after a decode. */
int tidei_inject_check(tide_ctx *ctx, int32_t n);
int tidei_inject_keep_all(const tide_ctx *ctx);
void tidei_inject_rows(tide_ctx *ctx, int32_t layer, int32_t n);
void tidei_inject_clear(tide_ctx *ctx);
void tidei_inject_release(tide_ctx *ctx);

/* Sequence events (kv.c): a fork copies the parent's set; new and free
** make the slot follow the default again. */
void tidei_steer_seq_fork(tide_ctx *ctx, int32_t parent, int32_t child);
void tidei_steer_seq_reset(tide_ctx *ctx, int32_t seq);

/* steer_transfer.c: the shared tokens of two vocabularies (equal bytes,
** control/unknown/unused skipped, lowest id per string), in increasing id
** of a: ids_a[i] and ids_b[i] (allocated, n_shared each, freed by the caller
** with tidei_free; NULL when n is 0). */
int tidei_shared_tokens(tide_env *env, const tide_tokenizer *a, const tide_tokenizer *b,
                        int32_t **ids_a, int32_t **ids_b, int32_t *n);

/* Frees everything above (ctx_destroy). */
void tidei_steer_release(tide_ctx *ctx);

#endif
