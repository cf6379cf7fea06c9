/*
** tidei.h -- private declarations shared by the files of core/.
** Layer: core (internal). Never installed, never included outside core/ and
** spec/core/.
*/
#ifndef TIDEI_H
#define TIDEI_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "tide.h"

#define TIDEI_MAX_THREADS 64
#define TIDEI_ERRMSG 512

#ifndef NDEBUG
#include <assert.h>
#define tidei_assert(c) assert(c)
#else
#define tidei_assert(c) ((void)0)
#endif

typedef struct tidei_pool tidei_pool;
struct tidei_kernels;

/* env.c */
struct tide_env {
  tide_alloc_fn alloc;
  void *ud;
  int refs;                     /* 1 + handles alive that point here */
  int n_threads;
  int freed;                    /* tide_env_free was called */
  tide_cancel_fn cancel;
  void *cancel_ud;
  tidei_pool *pool;             /* NULL when n_threads == 1 */
  const struct tidei_kernels *k; /* kernel table for this CPU */
  int force_scalar;
  char errmsg[TIDEI_ERRMSG];
};

/* Allocation through the env's hook. tidei_alloc/realloc set a message and
** return NULL on failure; tidei_calloc zeroes. Free needs the exact size. */
void *tidei_alloc(tide_env *env, size_t n);
void *tidei_calloc(tide_env *env, size_t count, size_t size);
void *tidei_realloc(tide_env *env, void *p, size_t osize, size_t nsize);
void tidei_free(tide_env *env, void *p, size_t n);
char *tidei_strdup(tide_env *env, const char *s, size_t len); /* len+1 bytes */
/* malloc/free-style allocation through the env's hook, for libraries whose
** free does not pass the size (PCRE2's general contexts): the size rides in
** a 16-byte header. The argument order is PCRE2's (size, env). */
void *tidei_malloc_sized(size_t size, void *env);
void tidei_free_sized(void *p, void *env);

/* Sets the env's message (printf-style) and returns status. */
int tidei_error(tide_env *env, int status, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 3, 4)))
#endif
  ;

/* Reference counting of the env by handles made from it. */
void tidei_env_ref(tide_env *env);
void tidei_env_unref(tide_env *env);

/* Nonzero if the cancel callback asks to stop. */
int tidei_cancelled(tide_env *env);

/* gguf.c: handles that borrow a gguf (tokenizer, model) take a reference;
** tide_gguf_free drops one and frees with the last. */
void tidei_gguf_ref(tide_gguf *g);

/* pool.c: runs fn(arg, ith, nth) for ith = 0..nth-1 on the env's threads
** (the caller is thread 0) and returns when all are done. Allocates nothing. */
typedef void (*tidei_task_fn)(void *arg, int ith, int nth);
void tidei_pool_run(tide_env *env, tidei_task_fn fn, void *arg);
int tidei_pool_new(tide_env *env, int n_threads, tidei_pool **out);
void tidei_pool_free(tide_env *env, tidei_pool *pool);

/* Rows [*r0, *r1) of n for thread ith of nth, in chunks aligned to align. */
static inline void tidei_split(int64_t n, int ith, int nth, int64_t align,
                               int64_t *r0, int64_t *r1) {
  int64_t chunks = (n + align - 1) / align;
  int64_t per = (chunks + nth - 1) / nth;
  int64_t a = per * ith * align, b = a + per * align;
  *r0 = a < n ? a : n;
  *r1 = b < n ? b : n;
}

#endif
