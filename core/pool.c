/*
** pool.c -- a small thread pool for kernels: run one task on n threads.
** Layer: core. Workers spin on a generation counter (a decode step issues
** hundreds of tasks per token, so wake-up latency matters), then yield the
** CPU, then sleep on a condition variable so an idle pool costs no CPU.
** The phases are timed, not counted: pause-spin SPIN_NS (SPIN_NS_SHARED
** with more threads than cores), yield until SLEEP_NS, then sleep. Measured
** on 2 threads and 2 cores: a yield that finds nothing else to run returns
** in about a microsecond, so yielding early costs little on an idle machine,
** while on a busy one long spins (200 us tried) halved decode speed: the
** spinning thread eats the time slice of the thread it waits for. What cost
** time was waiting for a late thread's static share of the work (the tasks
** now take their work in pieces from a counter) and, when idle, the 16K
** yields the counted version made before sleeping.
*/
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tidei.h"

#define SPIN_NS 5000           /* pause-spin this long, n_threads <= cores */
#define SPIN_NS_SHARED 1000    /* pause-spin this long, more threads than cores */
#define SLEEP_NS 2000000       /* then yield until this long, then sleep */
#define SPIN_CHECK 64          /* spins between clock reads */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

struct tidei_pool {
  int n;                      /* threads including the caller */
  long spin_ns;               /* pause-spin phase of a wait (SPIN_NS...) */
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

static long elapsed_ns(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long)(t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

/* One step of a wait that began at t0 (read at step 0): pause, or once
** spin_ns have passed, yield. Returns 0 once limit_ns have passed. */
static int wait_step(const tidei_pool *p, long i, struct timespec *t0, long *ns, long limit_ns) {
  if (i == 0) clock_gettime(CLOCK_MONOTONIC, t0);
  if (i % SPIN_CHECK == SPIN_CHECK - 1 || *ns >= p->spin_ns) *ns = elapsed_ns(t0);
  if (*ns < p->spin_ns) cpu_relax();
  else if (*ns < limit_ns) sched_yield(); /* let the machine's other threads run */
  else return 0;
  return 1;
}

static unsigned wait_gen(tidei_pool *p, unsigned seen) {
  unsigned g;
  struct timespec t0;
  long ns = 0;
  for (long i = 0;; i++) {
    if ((g = atomic_load(&p->gen)) != seen) return g;
    if (!wait_step(p, i, &t0, &ns, SLEEP_NS)) break;
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
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  p->spin_ns = cores > 0 && n_threads > cores ? SPIN_NS_SHARED : SPIN_NS;
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
  struct timespec t0;
  long ns = 0;
  for (long i = 0; atomic_load(&p->done) < p->n - 1; i++) wait_step(p, i, &t0, &ns, LONG_MAX);
}
