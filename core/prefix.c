/*
** prefix.c -- prefix tuning at run time: loading the per-layer K/V rows a
** frozen trainer with n_kv_prefix saved (tide_prefix_load) and writing them
** into an empty sequence's cache rows 0..k-1 (tide_seq_set_prefix), so the
** tokens fed next, at positions k.., attend to them as in training.
** Layer: core. The file format is in docs/steering.md ("Prefix tuning").
**
** The rows are stored as they sit in the cache: the keys already as
** attended (the trainer applies no RoPE to them), so setting a prefix is a
** copy (and an F16 rounding for an F16 cache), with no forward pass.
*/
#include <stdio.h>
#include <string.h>

#include "kv.h"
#include "model.h"

#define PREFIX_ARCH "tide-extras" /* general.architecture of a trainer's extras file */
#define PREFIX_MAX 4096           /* the trainer's bound on n_kv_prefix */

struct tide_prefix {
  tide_env *env;
  tide_prefix_info info;
  float *data;     /* (n_layer, 2 (K, V), n_tokens, kv_dim) */
  size_t size;
};

/* ---------------------------------------------------------------- load */

/* Integer key of g into *v; absent keys give def (or an error if def < 0). */
static int read_key(tide_env *env, const tide_gguf *g, const char *path, const char *key,
                    int64_t def, int64_t lo, int64_t hi, int64_t *v) {
  int64_t x;
  if (tide_gguf_get_int(g, key, &x)) {
    if (def >= 0 && tide_gguf_find(g, key) < 0) {
      *v = def;
      return TIDE_OK;
    }
    return tidei_error(env, TIDE_ERR_FORMAT, "prefix '%s': no integer key '%s' (not a KV "
                       "prefix file: train one with n_kv_prefix)", path, key);
  }
  if (x < lo || x > hi)
    return tidei_error(env, TIDE_ERR_FORMAT, "prefix '%s': key '%s' is %lld, expected %lld..%lld",
                       path, key, (long long)x, (long long)lo, (long long)hi);
  *v = x;
  return TIDE_OK;
}

/* The shape keys of g into p->info. */
static int read_info(tide_prefix *p, const tide_gguf *g, const char *path) {
  tide_env *env = p->env;
  const char *arch;
  size_t alen;
  if (tide_gguf_get_str(g, "general.architecture", &arch, &alen) || alen != strlen(PREFIX_ARCH)
      || memcmp(arch, PREFIX_ARCH, alen))
    return tidei_error(env, TIDE_ERR_FORMAT, "prefix '%s': general.architecture is not '%s' "
                       "(a trainer's extras file)", path, PREFIX_ARCH);
  int64_t k, nl, kvd, ne, nv, np;
  int st;
  if ((st = read_key(env, g, path, "tide.extras.n_kv_prefix", -1, 1, PREFIX_MAX, &k))
      || (st = read_key(env, g, path, "tide.extras.n_layer", -1, 1, 4096, &nl))
      || (st = read_key(env, g, path, "tide.extras.kv_dim", -1, 1, 1 << 20, &kvd))
      || (st = read_key(env, g, path, "tide.extras.n_embd", 0, 0, 1 << 20, &ne))
      || (st = read_key(env, g, path, "tide.extras.n_vocab", 0, 0, 1 << 24, &nv))
      || (st = read_key(env, g, path, "tide.extras.n_prefix", 0, 0, PREFIX_MAX, &np)))
    return st;
  if (np)
    return tidei_error(env, TIDE_ERR_FORMAT, "prefix '%s': it also has %lld prefix embeddings "
                       "(n_prefix), which a KV prefix alone cannot replay", path, (long long)np);
  p->info = (tide_prefix_info){ (int32_t)k, (int32_t)nl, (int32_t)kvd, (int32_t)ne, (int32_t)nv };
  return TIDE_OK;
}

/* Copies tensor prefix.k.<il> (which 0) or prefix.v.<il> (1) into dst after
** checking it is F32 [kv_dim, n_tokens]. */
static int read_rows(tide_prefix *p, const tide_gguf *g, const char *path, int32_t il,
                     int which, float *dst) {
  char name[48];
  snprintf(name, sizeof name, "prefix.%c.%d", which ? 'v' : 'k', (int)il);
  tide_tensor_info ti;
  int64_t i = tide_gguf_find_tensor(g, name);
  if (i < 0 || tide_gguf_tensor(g, i, &ti))
    return tidei_error(p->env, TIDE_ERR_FORMAT, "prefix '%s': tensor '%s' not found", path, name);
  const tide_prefix_info *f = &p->info;
  if (ti.dtype != TIDE_F32 || ti.ne[0] != f->kv_dim || ti.ne[1] != f->n_tokens || ti.ne[2] != 1
      || ti.ne[3] != 1)
    return tidei_error(p->env, TIDE_ERR_FORMAT, "prefix '%s': tensor '%s': expected f32 "
                       "[%d, %d]", path, name, (int)f->kv_dim, (int)f->n_tokens);
  memcpy(dst, ti.data, (size_t)f->n_tokens * (size_t)f->kv_dim * sizeof(float));
  return TIDE_OK;
}

static void prefix_destroy(tide_prefix *p) {
  tide_env *env = p->env;
  if (p->data) tidei_free(env, p->data, p->size);
  tidei_free(env, p, sizeof *p);
  tidei_env_unref(env);
}

void tide_prefix_free(tide_prefix *p) {
  if (p) prefix_destroy(p);
}

int tide_prefix_load(tide_env *env, const char *path, tide_prefix **out) {
  if (out) *out = NULL;
  if (!env) return TIDE_ERR_ARG;
  if (!path || !out) return tidei_error(env, TIDE_ERR_ARG, "prefix_load: path or out is NULL");
  tide_gguf *g = NULL;
  int st = tide_gguf_open(env, path, &g);
  if (st) return st;
  tide_prefix *p = tidei_calloc(env, 1, sizeof *p);
  if (!p) {
    tide_gguf_free(g);
    return TIDE_ERR_NOMEM;
  }
  tidei_env_ref(env);
  p->env = env;
  if (!(st = read_info(p, g, path))) {
    const tide_prefix_info *f = &p->info;
    size_t rows = (size_t)f->n_tokens * (size_t)f->kv_dim;
    p->size = 2 * (size_t)f->n_layer * rows * sizeof(float);
    if (!(p->data = tidei_alloc(env, p->size))) st = TIDE_ERR_NOMEM;
    for (int32_t il = 0; !st && il < f->n_layer; il++)
      for (int which = 0; !st && which < 2; which++)
        st = read_rows(p, g, path, il, which, p->data + (2 * (size_t)il + which) * rows);
  }
  tide_gguf_free(g);
  if (st) {
    prefix_destroy(p);
    return st;
  }
  *out = p;
  return TIDE_OK;
}

void tide_prefix_get_info(const tide_prefix *p, tide_prefix_info *out) {
  if (!out) return;
  if (p) *out = p->info;
  else memset(out, 0, sizeof *out);
}

const float *tide_prefix_data(const tide_prefix *p, int32_t il, int which) {
  if (!p || il < 0 || il >= p->info.n_layer || (which != 0 && which != 1)) return NULL;
  size_t rows = (size_t)p->info.n_tokens * (size_t)p->info.kv_dim;
  return p->data + (2 * (size_t)il + which) * rows;
}

/* ---------------------------------------------------------------- set */

/* The prefix fits the context's model: a RoPE architecture of the same
** block count, K/V width (and n_embd when the file names it). */
static int check_fit(tide_ctx *ctx, const tide_prefix *p) {
  const tide_model *m = ctx->m;
  const tide_prefix_info *f = &p->info;
  int32_t kvd = m->n_kv_head * m->head_dim;
  if (m->arch != TIDEI_ARCH_LLAMA && m->arch != TIDEI_ARCH_QWEN2)
    return tidei_error(ctx->env, TIDE_ERR_UNSUPPORTED, "seq_set_prefix: architecture '%s' not "
                       "supported (llama, qwen2)", m->info.arch ? m->info.arch : "");
  if (f->n_layer != m->n_layer || f->kv_dim != kvd || (f->n_embd && f->n_embd != m->n_embd))
    return tidei_error(ctx->env, TIDE_ERR_ARG, "seq_set_prefix: the prefix is for n_layer %d, "
                       "kv_dim %d, n_embd %d; the model has %d, %d, %d", (int)f->n_layer,
                       (int)f->kv_dim, (int)f->n_embd, (int)m->n_layer, (int)kvd,
                       (int)m->n_embd);
  if (f->n_tokens >= ctx->n_ctx)
    return tidei_error(ctx->env, TIDE_ERR_ARG, "seq_set_prefix: %d prefix positions leave no "
                       "room in n_ctx %d", (int)f->n_tokens, (int)ctx->n_ctx);
  return TIDE_OK;
}

int tide_seq_set_prefix(tide_ctx *ctx, int32_t seq, const tide_prefix *p) {
  if (!ctx) return TIDE_ERR_ARG;
  if (!p) return tidei_error(ctx->env, TIDE_ERR_ARG, "seq_set_prefix: prefix is NULL");
  tidei_kv *kv = &ctx->kv;
  int32_t len = tidei_kv_seq_len(kv, seq);
  if (len < 0)
    return tidei_error(ctx->env, TIDE_ERR_NOTFOUND, "seq_set_prefix: sequence %d is not live",
                       (int)seq);
  if (len > 0)
    return tidei_error(ctx->env, TIDE_ERR_STATE, "seq_set_prefix: sequence %d is not empty "
                       "(%d positions)", (int)seq, (int)len);
  int st = check_fit(ctx, p);
  if (!st) st = tidei_kv_seq_grow(kv, seq, p->info.n_tokens);
  if (st) return st;
  /* rows as the cache holds them: F32 copied, F16 rounded as forward.c's kv_store */
  int32_t k = p->info.n_tokens, kvd = p->info.kv_dim;
  for (int32_t il = 0; il < kv->n_layer; il++)
    for (int which = 0; which < 2; which++) {
      const float *src = tide_prefix_data(p, il, which);
      for (int32_t pos = 0; pos < k; pos++) {
        const float *x = src + (size_t)pos * kvd;
        void *dst = tidei_kv_row(kv, seq, which, il, pos);
        if (kv->kv_type == TIDE_F32) {
          memcpy(dst, x, kv->row_bytes);
        } else {
          uint16_t *h = dst;
          for (int32_t j = 0; j < kvd; j++) h[j] = tidei_f32_to_f16(x[j]);
        }
      }
    }
  return TIDE_OK;
}
