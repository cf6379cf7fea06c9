/*
** test_kv.c -- the KV cache on its own (core/kv.c): block accounting, fork
** sharing, copy-on-write, cache full without state change, truncate, free,
** rollback, and leak-free fork/free cycles. No model needed.
** Layer: tests (C unit tests of core/).
*/
#include <stdint.h>

#include "kv.h"
#include "test.h"

enum { N_LAYER = 2, KV_DIM = 4, BLK = TIDEI_KV_BLOCK };

static tide_env *env;

/* A cache of n_cells positions (F32), n_ctx 256, 8 sequences. */
static int kv_new(tidei_kv *kv, int32_t n_cells) {
  int st = tidei_kv_init(kv, env, N_LAYER, KV_DIM, 256, n_cells, 8, TIDE_F32);
  CHECKF(st == TIDE_OK, "%s", tide_env_errmsg(env));
  return st;
}

/* The value stamped into K/V of (seq, layer, pos, elem): which sequence wrote it. */
static float stamp(int32_t seq, int which, int32_t il, int32_t pos, int j) {
  return (float)(seq * 100000 + which * 10000 + il * 1000 + pos * 4 + j);
}

/* Appends n positions to seq through tidei_kv_begin and writes their K/V as
** sequence `writer` would (the forward pass's store step). */
static int append(tidei_kv *kv, int32_t seq, int32_t n, int32_t writer) {
  tide_batch_row rows[256];
  int32_t len = tidei_kv_seq_len(kv, seq);
  for (int32_t i = 0; i < n; i++) rows[i] = (tide_batch_row){ seq, len + i, 0, 0 };
  int st = tidei_kv_begin(kv, rows, n);
  if (st) return st;
  for (int32_t i = 0; i < n; i++)
    for (int w = 0; w < 2; w++)
      for (int32_t il = 0; il < N_LAYER; il++) {
        float *r = tidei_kv_row(kv, seq, w, il, len + i);
        for (int j = 0; j < KV_DIM; j++) r[j] = stamp(writer, w, il, len + i, j);
      }
  return TIDE_OK;
}

/* Positions [p0, p1) of seq hold what `writer` stored. */
static int holds(const tidei_kv *kv, int32_t seq, int32_t p0, int32_t p1, int32_t writer) {
  for (int32_t p = p0; p < p1; p++)
    for (int w = 0; w < 2; w++)
      for (int32_t il = 0; il < N_LAYER; il++) {
        const float *r = tidei_kv_row(kv, seq, w, il, p);
        for (int j = 0; j < KV_DIM; j++)
          if (r[j] != stamp(writer, w, il, p, j)) return 0;
      }
  return 1;
}

/* Sum of block reference counts must equal the blocks the live sequences use. */
static int consistent(const tidei_kv *kv) {
  long used = 0, refs = 0;
  for (int32_t s = 0; s < kv->n_seq_max; s++)
    if (kv->len[s] > 0) used += (kv->len[s] + BLK - 1) / BLK;
  for (int32_t b = 0; b < kv->n_blocks; b++) {
    if (kv->refs[b] < 0) return 0;
    refs += kv->refs[b];
  }
  int32_t free_blocks = 0;
  for (int32_t b = 0; b < kv->n_blocks; b++) free_blocks += kv->refs[b] == 0;
  return used == refs && free_blocks == kv->n_free;
}

static void test_accounting(void) {
  tidei_kv kv;
  if (kv_new(&kv, 100)) return; /* rounds up to 7 blocks */
  CHECK(kv.n_blocks == 7 && tidei_kv_free_cells(&kv) == 7 * BLK);
  int32_t a = -1, b = -1;
  CHECK(tidei_kv_seq_new(&kv, &a) == TIDE_OK && a == 0);
  CHECK(tidei_kv_seq_len(&kv, a) == 0 && tidei_kv_seq_len(&kv, 5) == -1);
  CHECK(tidei_kv_seq_len(&kv, -1) == -1 && tidei_kv_seq_len(&kv, 99) == -1);
  CHECK(append(&kv, a, 1, a) == TIDE_OK && tidei_kv_free_cells(&kv) == 6 * BLK);
  CHECK(append(&kv, a, 15, a) == TIDE_OK && tidei_kv_free_cells(&kv) == 6 * BLK);
  CHECK(append(&kv, a, 1, a) == TIDE_OK && tidei_kv_free_cells(&kv) == 5 * BLK);
  CHECK(tidei_kv_seq_len(&kv, a) == 17 && holds(&kv, a, 0, 17, a));
  CHECK(tidei_kv_seq_new(&kv, &b) == TIDE_OK && b == 1);
  CHECK(append(&kv, b, 40, b) == TIDE_OK && tidei_kv_free_cells(&kv) == 2 * BLK);
  CHECK(holds(&kv, a, 0, 17, a) && holds(&kv, b, 0, 40, b));
  CHECK(consistent(&kv));
  /* truncate releases whole blocks past the new length only */
  CHECK(tidei_kv_seq_truncate(&kv, b, 33) == TIDE_OK && tidei_kv_free_cells(&kv) == 2 * BLK);
  CHECK(tidei_kv_seq_truncate(&kv, b, 32) == TIDE_OK && tidei_kv_free_cells(&kv) == 3 * BLK);
  CHECK(tidei_kv_seq_truncate(&kv, b, 33) == TIDE_ERR_ARG);
  CHECK(tidei_kv_seq_truncate(&kv, b, -1) == TIDE_ERR_ARG);
  CHECK(holds(&kv, b, 0, 32, b));
  /* free returns every block */
  CHECK(tidei_kv_seq_free(&kv, b) == TIDE_OK && tidei_kv_free_cells(&kv) == 5 * BLK);
  CHECK(tidei_kv_seq_free(&kv, b) == TIDE_ERR_NOTFOUND);
  CHECK(strstr(tide_env_errmsg(env), "sequence 1") != NULL);
  CHECK(tidei_kv_seq_free(&kv, a) == TIDE_OK && tidei_kv_free_cells(&kv) == 7 * BLK);
  CHECK(consistent(&kv));
  tidei_kv_release(&kv);
}

static void test_fork_shares(void) {
  tidei_kv kv;
  if (kv_new(&kv, 8 * BLK)) return;
  int32_t a = -1, b = -1;
  CHECK(tidei_kv_seq_new(&kv, &a) == TIDE_OK && append(&kv, a, 5 * BLK, a) == TIDE_OK);
  int32_t f = tidei_kv_free_cells(&kv);
  CHECK(f == 3 * BLK);
  CHECK(tidei_kv_seq_fork(&kv, a, &b) == TIDE_OK && b != a);
  CHECK(tidei_kv_free_cells(&kv) == f);
  CHECK(tidei_kv_seq_len(&kv, b) == 5 * BLK && holds(&kv, b, 0, 5 * BLK, a));
  /* a full last block: the child's next position takes a new block, no copy */
  CHECK(append(&kv, b, 1, b) == TIDE_OK && tidei_kv_free_cells(&kv) == f - BLK);
  CHECK(holds(&kv, a, 0, 5 * BLK, a) && holds(&kv, b, 0, 5 * BLK, a) && holds(&kv, b, 5 * BLK, 5 * BLK + 1, b));
  /* freeing the parent keeps the shared blocks for the child */
  CHECK(tidei_kv_seq_free(&kv, a) == TIDE_OK && tidei_kv_free_cells(&kv) == f - BLK);
  CHECK(holds(&kv, b, 0, 5 * BLK, a));
  CHECK(tidei_kv_seq_fork(&kv, a, &b) == TIDE_ERR_NOTFOUND && b == -1);
  CHECK(consistent(&kv));
  tidei_kv_release(&kv);
}

static void test_copy_on_write(void) {
  tidei_kv kv;
  if (kv_new(&kv, 8 * BLK)) return;
  int32_t a = -1, b = -1, c = -1;
  CHECK(tidei_kv_seq_new(&kv, &a) == TIDE_OK && append(&kv, a, BLK + 4, a) == TIDE_OK);
  CHECK(tidei_kv_seq_fork(&kv, a, &b) == TIDE_OK && tidei_kv_seq_fork(&kv, a, &c) == TIDE_OK);
  int32_t f = tidei_kv_free_cells(&kv);
  int32_t shared = kv.tables[(size_t)a * kv.max_blocks + 1];
  CHECK(kv.refs[shared] == 3);
  /* the child writes into the shared, partly filled block: it gets a copy */
  CHECK(append(&kv, b, 2, b) == TIDE_OK);
  CHECK(tidei_kv_free_cells(&kv) == f - BLK);
  CHECK(kv.tables[(size_t)b * kv.max_blocks + 1] != shared && kv.refs[shared] == 2);
  CHECK(holds(&kv, b, 0, BLK + 4, a) && holds(&kv, b, BLK + 4, BLK + 6, b));
  /* the parent and the other child still read their own rows */
  CHECK(holds(&kv, a, 0, BLK + 4, a) && holds(&kv, c, 0, BLK + 4, a));
  /* parent and second child write in one batch: one copies, the last owner writes in place */
  tide_batch_row rows[2] = { { a, BLK + 4, 0, 0 }, { c, BLK + 4, 0, 0 } };
  f = tidei_kv_free_cells(&kv);
  CHECK(tidei_kv_begin(&kv, rows, 2) == TIDE_OK);
  CHECK(tidei_kv_free_cells(&kv) == f - BLK);
  CHECK(kv.refs[shared] == 1);
  CHECK(tidei_kv_seq_len(&kv, a) == BLK + 5 && tidei_kv_seq_len(&kv, c) == BLK + 5);
  /* a child truncated into a shared block copies it when it writes */
  int32_t d = -1;
  CHECK(tidei_kv_seq_fork(&kv, b, &d) == TIDE_OK && tidei_kv_seq_truncate(&kv, d, 3) == TIDE_OK);
  f = tidei_kv_free_cells(&kv);
  CHECK(append(&kv, d, 1, d) == TIDE_OK && tidei_kv_free_cells(&kv) == f - BLK);
  CHECK(holds(&kv, d, 0, 3, a) && holds(&kv, d, 3, 4, d) && holds(&kv, b, 0, BLK + 4, a));
  CHECK(consistent(&kv));
  tidei_kv_release(&kv);
}

static void test_full(void) {
  tidei_kv kv;
  if (kv_new(&kv, 4 * BLK)) return;
  int32_t a = -1, b = -1;
  CHECK(tidei_kv_seq_new(&kv, &a) == TIDE_OK && append(&kv, a, BLK + 8, a) == TIDE_OK);
  CHECK(tidei_kv_seq_fork(&kv, a, &b) == TIDE_OK);
  /* b needs a copy of block 1 plus 2 new blocks: 3 > 2 free */
  int32_t f = tidei_kv_free_cells(&kv), shared = kv.tables[(size_t)a * kv.max_blocks + 1];
  CHECK(append(&kv, b, 2 * BLK, b) == TIDE_ERR_FULL);
  CHECK(strstr(tide_env_errmsg(env), "kv cache full") != NULL);
  CHECK(tidei_kv_free_cells(&kv) == f && kv.refs[shared] == 2);
  CHECK(tidei_kv_seq_len(&kv, b) == BLK + 8 && tidei_kv_seq_len(&kv, a) == BLK + 8);
  CHECK(kv.tables[(size_t)b * kv.max_blocks + 1] == shared);
  /* a batch whose second row is bad changes nothing either */
  tide_batch_row rows[2] = { { a, BLK + 8, 0, 0 }, { b, BLK + 7, 0, 0 } };
  CHECK(tidei_kv_begin(&kv, rows, 2) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "row 1") != NULL);
  rows[1].pos = BLK + 8, rows[1].seq = 7;
  CHECK(tidei_kv_begin(&kv, rows, 2) == TIDE_ERR_NOTFOUND);
  CHECK(tidei_kv_free_cells(&kv) == f && kv.refs[shared] == 2 && consistent(&kv));
  /* what fits still goes through, exactly up to the last block */
  CHECK(append(&kv, b, BLK + 8, b) == TIDE_OK && tidei_kv_free_cells(&kv) == 0);
  CHECK(append(&kv, a, 1, a) == TIDE_OK); /* a now owns block 1 alone: no copy */
  CHECK(append(&kv, a, 8, a) == TIDE_ERR_FULL);
  CHECK(tidei_kv_seq_len(&kv, a) == BLK + 9);
  CHECK(holds(&kv, a, 0, BLK + 9, a) && holds(&kv, b, 0, BLK + 8, a) && holds(&kv, b, BLK + 8, 2 * BLK + 16, b));
  /* n_ctx is a limit per sequence */
  tidei_kv_release(&kv);
  CHECK(tidei_kv_init(&kv, env, N_LAYER, KV_DIM, 20, 64, 2, TIDE_F16) == TIDE_OK);
  CHECK(tidei_kv_seq_new(&kv, &a) == TIDE_OK);
  tide_batch_row r[21];
  for (int i = 0; i < 21; i++) r[i] = (tide_batch_row){ a, i, 0, 0 };
  CHECK(tidei_kv_begin(&kv, r, 21) == TIDE_ERR_FULL && tidei_kv_seq_len(&kv, a) == 0);
  CHECK(tidei_kv_begin(&kv, r, 20) == TIDE_OK && tidei_kv_seq_len(&kv, a) == 20);
  CHECK(tidei_kv_seq_new(&kv, &b) == TIDE_OK && tidei_kv_seq_new(&kv, &b) == TIDE_ERR_FULL && b == -1);
  tidei_kv_release(&kv);
  CHECK(tidei_kv_init(&kv, env, N_LAYER, KV_DIM, 20, 64, 2, TIDE_BF16) == TIDE_ERR_ARG);
  CHECK(tidei_kv_init(&kv, env, N_LAYER, KV_DIM, 0, 64, 2, TIDE_F16) == TIDE_ERR_ARG);
  tidei_kv_release(&kv); /* zeroed by the failed init: a no-op */
}

static void test_rollback(void) {
  tidei_kv kv;
  if (kv_new(&kv, 8 * BLK)) return;
  int32_t a = -1, b = -1;
  CHECK(tidei_kv_seq_new(&kv, &a) == TIDE_OK && append(&kv, a, 5, a) == TIDE_OK);
  CHECK(tidei_kv_seq_fork(&kv, a, &b) == TIDE_OK);
  int32_t f = tidei_kv_free_cells(&kv);
  tide_batch_row rows[40];
  for (int i = 0; i < 20; i++) rows[i] = (tide_batch_row){ a, 5 + i, 0, 0 };
  for (int i = 0; i < 20; i++) rows[20 + i] = (tide_batch_row){ b, 5 + i, 0, 0 };
  CHECK(tidei_kv_begin(&kv, rows, 40) == TIDE_OK);
  CHECK(tidei_kv_seq_len(&kv, a) == 25 && tidei_kv_seq_len(&kv, b) == 25);
  tidei_kv_rollback(&kv, rows, 40);
  CHECK(tidei_kv_seq_len(&kv, a) == 5 && tidei_kv_seq_len(&kv, b) == 5);
  /* the copy made for the shared block stays (one of them owns it now) */
  CHECK(tidei_kv_free_cells(&kv) == f - BLK);
  CHECK(holds(&kv, a, 0, 5, a) && holds(&kv, b, 0, 5, a) && consistent(&kv));
  tidei_kv_release(&kv);
}

static void test_cycles(void) {
  tidei_kv kv;
  if (kv_new(&kv, 64 * BLK)) return;
  int32_t root = -1;
  CHECK(tidei_kv_seq_new(&kv, &root) == TIDE_OK && append(&kv, root, 3 * BLK + 5, root) == TIDE_OK);
  int32_t f = tidei_kv_free_cells(&kv);
  uint32_t rng = 12345;
  int ok = 1;
  for (int cycle = 0; cycle < 500 && ok; cycle++) {
    int32_t kids[7];
    for (int i = 0; i < 7; i++) {
      int32_t parent = i == 0 ? root : kids[(rng >> 8) % (uint32_t)i];
      rng = rng * 1103515245u + 12345u;
      ok &= tidei_kv_seq_fork(&kv, parent, &kids[i]) == TIDE_OK;
      ok &= append(&kv, kids[i], (int32_t)((rng >> 16) % 40), kids[i]) == TIDE_OK;
      rng = rng * 1103515245u + 12345u;
      if (rng & 0x10000) ok &= tidei_kv_seq_truncate(&kv, kids[i], (int32_t)((rng >> 8) % (uint32_t)(tidei_kv_seq_len(&kv, kids[i]) + 1))) == TIDE_OK;
    }
    ok &= consistent(&kv) && holds(&kv, root, 0, 3 * BLK + 5, root);
    for (int i = 6; i >= 0; i--) ok &= tidei_kv_seq_free(&kv, kids[(i * 3) % 7]) == TIDE_OK;
    ok &= tidei_kv_free_cells(&kv) == f;
  }
  CHECKF(ok, "fork/free cycles left the cache inconsistent (free %d, want %d)",
         (int)tidei_kv_free_cells(&kv), (int)f);
  CHECK(tidei_kv_seq_free(&kv, root) == TIDE_OK && tidei_kv_free_cells(&kv) == 64 * BLK);
  tidei_kv_release(&kv);
}

static void test_setup(void) {
  test_live_bytes = 0;
  CHECK(tide_env_new(&env, test_count_alloc, NULL) == TIDE_OK);
}

static void test_no_leaks(void) {
  tide_env_free(env);
  CHECK(test_live_bytes == 0);
}

TEST_MAIN(test_setup, test_accounting, test_fork_shares, test_copy_on_write, test_full,
          test_rollback, test_cycles, test_no_leaks)
