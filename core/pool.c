/*
** pool.c -- a small thread pool for kernels: run one task on n threads.
** Layer: core. Workers spin briefly on a generation counter (a decode step
** issues hundreds of tasks per token, so wake-up latency matters), then
** sleep on a condition variable so an idle pool costs no CPU.
*/
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "tidei.h"

#define SPIN_PAUSE 1024      /* pause-spins before yielding the CPU */
#define SPIN_LIMIT (1 << 14)  /* spins (then yields) before sleeping */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

struct tidei_pool {
  int n;                      /* threads including the caller */
  pthread_t th[TIDEI_MAX_THREADS];
  int started;                /* workers actually started */
  tidei_task_fn fn;
  void *arg;
  atomic_uint gen;            /* bumped once per task */
  atomic_int done;            /* workers finished with this task */
  atomic_int sleepers;
  atomic_int stop;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

typedef struct { tidei_pool *pool; int ith; } worker_arg;

static unsigned wait_gen(tidei_pool *p, unsigned seen) {
  unsigned g;
  for (int i = 0; i < SPIN_LIMIT; i++) {
    if ((g = atomic_load(&p->gen)) != seen) return g;
    if (i < SPIN_PAUSE) cpu_relax();
    else sched_yield(); /* more threads than cores: let the others run */
  }
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add(&p->sleepers, 1);
  while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->cv, &p->mu);
  atomic_fetch_sub(&p->sleepers, 1);
  pthread_mutex_unlock(&p->mu);
  return g;
}

static void *worker(void *a) {
  tidei_pool *p = ((worker_arg *)a)->pool;
  int ith = ((worker_arg *)a)->ith;
  unsigned seen = 0;
  for (;;) {
    seen = wait_gen(p, seen);
    if (atomic_load(&p->stop)) return NULL;
    p->fn(p->arg, ith, p->n);
    atomic_fetch_add(&p->done, 1);
  }
}

static worker_arg *args_of(tidei_pool *p) { return (worker_arg *)(p + 1); }

int tidei_pool_new(tide_env *env, int n_threads, tidei_pool **out) {
  size_t size = sizeof(tidei_pool) + sizeof(worker_arg) * (size_t)n_threads;
  tidei_pool *p = tidei_alloc(env, size);
  *out = NULL;
  if (!p) return TIDE_ERR_NOMEM;
  memset(p, 0, size);
  p->n = n_threads;
  atomic_init(&p->gen, 0);
  atomic_init(&p->done, 0);
  atomic_init(&p->sleepers, 0);
  atomic_init(&p->stop, 0);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  for (int i = 1; i < n_threads; i++) {
    args_of(p)[i].pool = p;
    args_of(p)[i].ith = i;
    if (pthread_create(&p->th[i], NULL, worker, &args_of(p)[i]) != 0) {
      tidei_pool_free(env, p);
      return tidei_error(env, TIDE_ERR_NOMEM, "cannot start thread %d of %d", i, n_threads);
    }
    p->started = i;
  }
  *out = p;
  return TIDE_OK;
}

static void wake(tidei_pool *p) {
  if (atomic_load(&p->sleepers) > 0) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
}

void tidei_pool_free(tide_env *env, tidei_pool *p) {
  if (!p) return;
  atomic_store(&p->stop, 1);
  atomic_fetch_add(&p->gen, 1);
  pthread_mutex_lock(&p->mu);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i <= p->started; i++) pthread_join(p->th[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  tidei_free(env, p, sizeof(tidei_pool) + sizeof(worker_arg) * (size_t)p->n);
}

void tidei_pool_run(tide_env *env, tidei_task_fn fn, void *arg) {
  tidei_pool *p = env->pool;
  if (!p) { fn(arg, 0, 1); return; }
  p->fn = fn;
  p->arg = arg;
  atomic_store(&p->done, 0);
  atomic_fetch_add(&p->gen, 1);
  wake(p);
  fn(arg, 0, p->n);
  for (int i = 0; atomic_load(&p->done) < p->n - 1; i++) {
    if (i < SPIN_PAUSE) cpu_relax();
    else sched_yield();
  }
}
