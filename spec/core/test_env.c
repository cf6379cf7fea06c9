/*
** test_env.c -- the env: allocator hook, error messages, thread pool.
** Layer: tests (core).
*/
#include <stdatomic.h>

#include "test.h"
#include "tidei.h"

static void test_env_alloc_hook(void) {
  test_allocator c = { 0 };
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, test_alloc_fn, &c) == TIDE_OK);
  CHECK(env != NULL);
  CHECK(c.blocks == 1);
  char *s = tidei_strdup(env, "hello", 5);
  CHECK(s && strcmp(s, "hello") == 0);
  s = tidei_realloc(env, s, 6, 100);
  CHECK(s && strcmp(s, "hello") == 0);
  tidei_free(env, s, 100);
  CHECK(tide_env_set_threads(env, 2) == TIDE_OK);
  tide_env_free(env);
  CHECK(c.live == 0 && c.blocks == 0);
}

static void test_env_nomem(void) {
  test_allocator c = { .fail_at = 1 };
  tide_env *env = (tide_env *)&c;
  CHECK(tide_env_new(&env, test_alloc_fn, &c) == TIDE_ERR_NOMEM);
  CHECK(env == NULL);
  c = (test_allocator){ .fail_at = 2 };
  CHECK(tide_env_new(&env, test_alloc_fn, &c) == TIDE_OK);
  CHECK(tidei_alloc(env, 10) == NULL);
  CHECK(strstr(tide_env_errmsg(env), "out of memory") != NULL);
  CHECK(tidei_calloc(env, SIZE_MAX / 2, 4) == NULL);
  tide_env_free(env);
  CHECK(c.live == 0);
}

static void test_env_errors(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  CHECK(strcmp(tide_env_errmsg(env), "") == 0);
  CHECK(tide_env_set_threads(env, 0) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "thread count 0") != NULL);
  CHECK(tide_env_set_threads(env, 65) == TIDE_ERR_ARG);
  CHECK(tide_env_threads(env) == 1);
  CHECK(strcmp(tide_status_name(TIDE_ERR_FULL), "full") == 0);
  CHECK(tide_version() == TIDE_VERSION_NUM);
  CHECK(tide_env_isa(env) != NULL);
  tide_env_free(env);
  tide_env_free(NULL);
}

typedef struct { atomic_int hits[8]; atomic_long sum; int n; } job;

static void job_fn(void *arg, int ith, int nth) {
  job *j = arg;
  atomic_fetch_add(&j->hits[ith], 1);
  int64_t r0, r1;
  tidei_split(j->n, ith, nth, 4, &r0, &r1);
  long s = 0;
  for (int64_t i = r0; i < r1; i++) s += i;
  atomic_fetch_add(&j->sum, s);
}

static void test_pool_runs_every_thread(void) {
  for (int nt = 1; nt <= 4; nt++) {
    tide_env *env = NULL;
    CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
    CHECK(tide_env_set_threads(env, nt) == TIDE_OK);
    job j;
    memset(&j, 0, sizeof j);
    j.n = 1003;
    int ok = 1;
    for (int r = 0; r < 2000; r++) {
      atomic_store(&j.sum, 0);
      tidei_pool_run(env, job_fn, &j);
      if (atomic_load(&j.sum) != 1003L * 1002 / 2) ok = 0;
    }
    CHECK(ok);
    for (int t = 0; t < nt; t++) CHECKF(atomic_load(&j.hits[t]) == 2000, "thread %d ran %d", t, atomic_load(&j.hits[t]));
    CHECK(tide_env_set_threads(env, 1) == TIDE_OK);
    tide_env_free(env);
  }
}

static void test_split_covers_range(void) {
  for (int n = 0; n < 100; n += 7)
    for (int nth = 1; nth <= 5; nth++) {
      int64_t prev = 0, ok = 1;
      for (int t = 0; t < nth; t++) {
        int64_t a, b;
        tidei_split(n, t, nth, 4, &a, &b);
        if (a != prev || b < a || (a % 4 && a != n)) ok = 0;
        prev = b;
      }
      CHECK(ok && prev == n);
    }
}

static int cancel_now(void *ud) { return *(int *)ud; }

static void test_cancel_callback(void) {
  tide_env *env = NULL;
  int flag = 0;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  CHECK(!tidei_cancelled(env));
  tide_env_set_cancel(env, cancel_now, &flag);
  CHECK(!tidei_cancelled(env));
  flag = 1;
  CHECK(tidei_cancelled(env));
  tide_env_free(env);
}

TEST_MAIN(test_env_alloc_hook, test_env_nomem, test_env_errors,
          test_pool_runs_every_thread, test_split_covers_range, test_cancel_callback)
