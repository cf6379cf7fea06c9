/*
** env.c -- the environment: allocator hook, error messages, threads, cancel.
** Layer: core. Every other core object hangs off a tide_env.
*/
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor.h"
#include "tidei.h"

int tide_version(void) { return TIDE_VERSION_NUM; }

const char *tide_status_name(int status) {
  switch (status) {
  case TIDE_OK: return "ok";
  case TIDE_ERR_NOMEM: return "out of memory";
  case TIDE_ERR_ARG: return "bad argument";
  case TIDE_ERR_IO: return "i/o error";
  case TIDE_ERR_FORMAT: return "bad format";
  case TIDE_ERR_NOTFOUND: return "not found";
  case TIDE_ERR_UNSUPPORTED: return "unsupported";
  case TIDE_ERR_FULL: return "full";
  case TIDE_ERR_STATE: return "bad state";
  case TIDE_ERR_CANCELLED: return "cancelled";
  default: return "unknown status";
  }
}

static void *default_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud; (void)osize;
  if (nsize == 0) { free(ptr); return NULL; }
  return realloc(ptr, nsize);
}

int tide_env_new(tide_env **out, tide_alloc_fn alloc, void *ud) {
  if (!out) return TIDE_ERR_ARG;
  *out = NULL;
  if (!alloc) alloc = default_alloc;
  tide_env *env = alloc(ud, NULL, 0, sizeof *env);
  if (!env) return TIDE_ERR_NOMEM;
  memset(env, 0, sizeof *env);
  env->alloc = alloc;
  env->ud = ud;
  env->refs = 1;
  env->n_threads = 1;
  env->k = tidei_kernels_best();
  *out = env;
  return TIDE_OK;
}

static void env_destroy(tide_env *env) {
  tidei_pool_free(env, env->pool);
  env->alloc(env->ud, env, sizeof *env, 0);
}

void tide_env_free(tide_env *env) {
  if (!env || env->freed) return;
  env->freed = 1;
  tidei_env_unref(env);
}

void tidei_env_ref(tide_env *env) { env->refs++; }

void tidei_env_unref(tide_env *env) {
  if (--env->refs == 0) env_destroy(env);
}

const char *tide_env_errmsg(const tide_env *env) {
  return env ? env->errmsg : "no env";
}

int tide_env_set_threads(tide_env *env, int n_threads) {
  if (n_threads < 1 || n_threads > TIDEI_MAX_THREADS)
    return tidei_error(env, TIDE_ERR_ARG, "thread count %d out of range 1..%d",
                       n_threads, TIDEI_MAX_THREADS);
  if (n_threads == env->n_threads) return TIDE_OK;
  tidei_pool *pool = NULL;
  if (n_threads > 1) {
    int st = tidei_pool_new(env, n_threads, &pool);
    if (st) return st;
  }
  tidei_pool_free(env, env->pool);
  env->pool = pool;
  env->n_threads = n_threads;
  return TIDE_OK;
}

int tide_env_threads(const tide_env *env) { return env->n_threads; }

void tide_env_set_cancel(tide_env *env, tide_cancel_fn fn, void *ud) {
  env->cancel = fn;
  env->cancel_ud = ud;
}

const char *tide_env_isa(const tide_env *env) {
  return env->force_scalar ? tidei_kernels_scalar()->isa : env->k->isa;
}

void tide_env_force_scalar(tide_env *env, int on) {
  env->force_scalar = on != 0;
  env->k = on ? tidei_kernels_scalar() : tidei_kernels_best();
}

int tidei_cancelled(tide_env *env) {
  return env->cancel && env->cancel(env->cancel_ud);
}

int tidei_error(tide_env *env, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(env->errmsg, sizeof env->errmsg, fmt, ap);
  va_end(ap);
  return status;
}

void *tidei_alloc(tide_env *env, size_t n) {
  void *p = env->alloc(env->ud, NULL, 0, n ? n : 1);
  if (!p) tidei_error(env, TIDE_ERR_NOMEM, "out of memory (%zu bytes)", n);
  return p;
}

void *tidei_calloc(tide_env *env, size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) {
    tidei_error(env, TIDE_ERR_NOMEM, "out of memory (%zu x %zu bytes)", count, size);
    return NULL;
  }
  size_t n = count * size;
  void *p = tidei_alloc(env, n);
  if (p && n) memset(p, 0, n);
  return p;
}

void *tidei_realloc(tide_env *env, void *p, size_t osize, size_t nsize) {
  if (!p) return tidei_alloc(env, nsize);
  void *q = env->alloc(env->ud, p, osize, nsize ? nsize : 1);
  if (!q) tidei_error(env, TIDE_ERR_NOMEM, "out of memory (%zu bytes)", nsize);
  return q;
}

void tidei_free(tide_env *env, void *p, size_t n) {
  if (p) env->alloc(env->ud, p, n ? n : 1, 0);
}

char *tidei_strdup(tide_env *env, const char *s, size_t len) {
  char *d = tidei_alloc(env, len + 1);
  if (d) { memcpy(d, s, len); d[len] = 0; }
  return d;
}

#define SIZED_HDR 16
_Static_assert(_Alignof(max_align_t) <= SIZED_HDR, "SIZED_HDR too small");

void *tidei_malloc_sized(size_t size, void *env) {
  size_t total = size + SIZED_HDR;
  if (total < size) return NULL;
  unsigned char *p = tidei_alloc(env, total);
  if (!p) return NULL;
  memcpy(p, &total, sizeof total);
  return p + SIZED_HDR;
}

void tidei_free_sized(void *ptr, void *env) {
  if (!ptr) return;
  unsigned char *p = (unsigned char *)ptr - SIZED_HDR;
  size_t total;
  memcpy(&total, p, sizeof total);
  tidei_free(env, p, total);
}
