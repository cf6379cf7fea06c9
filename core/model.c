/*
** model.c -- loads a GGUF model: architecture, hyper-parameters, tokenizer
** and the weights (views into the mapping, checked for presence, dtype and
** shape). Layer: core.
**
** Keys and tensor names are the ones llama.cpp reads (llama-arch.cpp,
** llama-model.cpp): "{arch}.embedding_length", "blk.N.attn_q.weight", ...
** A tensor is a matrix (n_out rows of n_in elements; GGUF ne = [n_in, n_out])
** of a dtype the kernels multiply, or an F32 vector (norm weights, biases).
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model.h"

#define KEY_MAX 128

typedef struct {
  tide_model *m;
  const char *arch;       /* key prefix */
} loader;

/* ---------------------------------------------------------------- keys */

/* "{arch}.{suffix}" into buf. */
static const char *key_name(const loader *L, const char *suffix, char *buf) {
  snprintf(buf, KEY_MAX, "%s.%s", L->arch, suffix);
  return buf;
}

/* An integer hyper-parameter in [lo, hi]. Absent: *out = def, or an error
** when required. */
static int key_int(const loader *L, const char *suffix, int required, int64_t def,
                   int64_t lo, int64_t hi, int32_t *out) {
  char key[KEY_MAX];
  int64_t v = def;
  tide_env *env = L->m->env;
  int st = tide_gguf_get_int(L->m->gguf, key_name(L, suffix, key), &v);
  if (st == TIDE_ERR_NOTFOUND && !required) v = def;
  else if (st == TIDE_ERR_NOTFOUND)
    return tidei_error(env, TIDE_ERR_NOTFOUND, "model: key '%s' not found", key);
  else if (st)
    return tidei_error(env, TIDE_ERR_FORMAT, "model: key '%s' is not an integer", key);
  if (v < lo || v > hi)
    return tidei_error(env, TIDE_ERR_FORMAT, "model: key '%s' is %lld, expected %lld..%lld",
                       key, (long long)v, (long long)lo, (long long)hi);
  *out = (int32_t)v;
  return TIDE_OK;
}

/* A float hyper-parameter, rounded to float as llama.cpp stores it. */
static int key_float(const loader *L, const char *suffix, int required, double def,
                     float *out) {
  char key[KEY_MAX];
  double v = def;
  tide_env *env = L->m->env;
  int st = tide_gguf_get_float(L->m->gguf, key_name(L, suffix, key), &v);
  if (st == TIDE_ERR_NOTFOUND && !required) v = def;
  else if (st == TIDE_ERR_NOTFOUND)
    return tidei_error(env, TIDE_ERR_NOTFOUND, "model: key '%s' not found", key);
  else if (st)
    return tidei_error(env, TIDE_ERR_FORMAT, "model: key '%s' is not a float", key);
  if (!isfinite(v) || v < 0)
    return tidei_error(env, TIDE_ERR_FORMAT, "model: key '%s' is %g, expected a finite value >= 0",
                       key, v);
  *out = (float)v;
  return TIDE_OK;
}

/* A string key as a NUL-terminated copy ("" if absent). */
static int key_strdup(tide_model *m, const char *key, char **out, size_t *size) {
  const char *s = "";
  size_t len = 0;
  int st = tide_gguf_get_str(m->gguf, key, &s, &len);
  if (st == TIDE_ERR_NOTFOUND) { s = ""; len = 0; }
  else if (st) return tidei_error(m->env, TIDE_ERR_FORMAT, "model: key '%s' is not a string", key);
  *out = tidei_strdup(m->env, s, len);
  if (!*out) return TIDE_ERR_NOMEM;
  *size = len + 1;
  return TIDE_OK;
}

/* Reads the hyper-parameters of m->arch (architecture already known). */
static int load_hparams(loader *L) {
  tide_model *m = L->m;
  tide_env *env = m->env;
  const int32_t big = 1 << 24;
  int gpt2 = m->arch == TIDEI_ARCH_GPT2;
  int st;
  int32_t key_len = 0, val_len = 0;
  if ((st = key_int(L, "context_length", 1, 0, 1, INT32_MAX, &m->n_ctx_train))
      || (st = key_int(L, "embedding_length", 1, 0, 1, big, &m->n_embd))
      || (st = key_int(L, "block_count", 1, 0, 1, 65536, &m->n_layer))
      || (st = key_int(L, "feed_forward_length", 1, 0, 1, big, &m->n_ff))
      || (st = key_int(L, "attention.head_count", 1, 0, 1, 65536, &m->n_head))
      || (st = key_int(L, "attention.head_count_kv", 0, m->n_head, 1, m->n_head, &m->n_kv_head))
      || (st = key_int(L, "attention.key_length", 0, 0, 0, big, &key_len))
      || (st = key_int(L, "attention.value_length", 0, key_len, 0, big, &val_len)))
    return st;
  if (key_len != val_len)
    return tidei_error(env, TIDE_ERR_UNSUPPORTED,
                       "model: attention key_length %d differs from value_length %d",
                       (int)key_len, (int)val_len);
  if (key_len == 0 && m->n_embd % m->n_head)
    return tidei_error(env, TIDE_ERR_FORMAT, "model: n_embd %d is not a multiple of n_head %d",
                       (int)m->n_embd, (int)m->n_head);
  m->head_dim = key_len ? key_len : m->n_embd / m->n_head;
  if (m->n_head % m->n_kv_head)
    return tidei_error(env, TIDE_ERR_FORMAT, "model: n_head %d is not a multiple of n_kv_head %d",
                       (int)m->n_head, (int)m->n_kv_head);
  if (gpt2 && (m->n_kv_head != m->n_head || m->head_dim * m->n_head != m->n_embd))
    return tidei_error(env, TIDE_ERR_FORMAT, "model: gpt2 needs n_kv_head == n_head and "
                       "head_dim * n_head == n_embd");
  if (gpt2) {
    m->n_rot = 0;
    m->rope_base = 10000.0f;
    m->rope_freq_scale = 1.0f;
    return key_float(L, "attention.layer_norm_epsilon", 1, 0, &m->norm_eps);
  }
  float scale = 0;
  char key[KEY_MAX];
  const char *type = NULL;
  size_t tlen = 0;
  if ((st = key_int(L, "rope.dimension_count", 0, m->head_dim, 2, m->head_dim, &m->n_rot))
      || (st = key_float(L, "rope.freq_base", 0, 10000.0, &m->rope_base))
      || (st = key_float(L, "attention.layer_norm_rms_epsilon", 1, 0, &m->norm_eps))
      || (st = key_float(L, "rope.scaling.factor", 0, 0.0, &scale)))
    return st;
  if (m->n_rot % 2 || (m->arch == TIDEI_ARCH_LLAMA && m->n_rot != m->head_dim))
    return tidei_error(env, TIDE_ERR_FORMAT, "model: rope.dimension_count %d, expected %d",
                       (int)m->n_rot, (int)m->head_dim);
  if (scale == 0 && (st = key_float(L, "rope.scale_linear", 0, 0.0, &scale))) return st;
  if (tide_gguf_get_str(m->gguf, key_name(L, "rope.scaling.type", key), &type, &tlen) == TIDE_OK) {
    int none = tlen == 4 && !memcmp(type, "none", 4);
    if (!none && !(tlen == 6 && !memcmp(type, "linear", 6)))
      return tidei_error(env, TIDE_ERR_UNSUPPORTED, "model: rope scaling '%.*s' not supported",
                         (int)(tlen > 32 ? 32 : tlen), type);
    if (none) scale = 0;
  }
  m->rope_freq_scale = scale == 0 ? 1.0f : 1.0f / scale;
  int32_t n_expert = 0;
  if ((st = key_int(L, "expert_count", 0, 0, 0, 65536, &n_expert))) return st;
  if (n_expert > 0)
    return tidei_error(env, TIDE_ERR_UNSUPPORTED, "model: mixture of experts (%s.expert_count %d) "
                       "not supported", L->arch, (int)n_expert);
  return TIDE_OK;
}

/* ---------------------------------------------------------------- tensors */

static int is_matrix_dtype(int dt) {
  return dt == TIDE_F32 || dt == TIDE_F16 || dt == TIDE_BF16 || dt == TIDE_Q8_0
         || dt == TIDE_Q4_0 || dt == TIDE_Q4_K || dt == TIDE_Q6_K;
}

/* Finds tensor name and checks its shape is [ne0] (ne1 == 0) or [ne0, ne1].
** Absent: *found = 0 and OK, or an error when required. */
static int find_tensor(tide_model *m, const char *name, int64_t ne0, int64_t ne1,
                       int required, tide_tensor_info *ti, int *found) {
  tide_env *env = m->env;
  int64_t i = tide_gguf_find_tensor(m->gguf, name);
  *found = 0;
  if (i < 0) {
    if (!required) return TIDE_OK;
    return tidei_error(env, TIDE_ERR_NOTFOUND, "tensor '%s' not found", name);
  }
  int st = tide_gguf_tensor(m->gguf, i, ti);
  if (st) return st;
  int want_dims = ne1 ? 2 : 1, ok = ti->ne[0] == ne0;
  for (int d = 1; d < 4; d++) ok = ok && ti->ne[d] == (d == 1 && ne1 ? ne1 : 1);
  if (!ok) {
    char got[96];
    int k = snprintf(got, sizeof got, "[%lld", (long long)ti->ne[0]);
    int nd = ti->n_dims < 1 ? 1 : ti->n_dims > 4 ? 4 : ti->n_dims;
    for (int d = 1; d < nd && k < 80; d++)
      k += snprintf(got + k, sizeof got - (size_t)k, ", %lld", (long long)ti->ne[d]);
    snprintf(got + k, sizeof got - (size_t)k, "]");
    if (want_dims == 2)
      return tidei_error(env, TIDE_ERR_FORMAT, "tensor '%s': shape %s, expected [%lld, %lld]",
                         name, got, (long long)ne0, (long long)ne1);
    return tidei_error(env, TIDE_ERR_FORMAT, "tensor '%s': shape %s, expected [%lld]",
                       name, got, (long long)ne0);
  }
  *found = 1;
  return TIDE_OK;
}

static const char *dtype_str(int dt, char *buf) {
  const char *s = tide_dtype_name(dt);
  if (s) return s;
  snprintf(buf, 16, "type %d", dt);
  return buf;
}

/* A weight matrix [n_in, n_out] of a supported dtype. */
static int get_mat(tide_model *m, const char *name, int64_t n_in, int64_t n_out,
                   int required, tidei_mat *w) {
  tide_tensor_info ti;
  int found, st = find_tensor(m, name, n_in, n_out, required, &ti, &found);
  char buf[16];
  memset(w, 0, sizeof *w);
  if (st || !found) return st;
  if (!is_matrix_dtype(ti.dtype))
    return tidei_error(m->env, TIDE_ERR_UNSUPPORTED,
                       "tensor '%s': dtype %s not supported for a matrix "
                       "(f32, f16, bf16, q8_0, q4_0, q4_K, q6_K)", name, dtype_str(ti.dtype, buf));
  if (tide_dtype_row_size(ti.dtype, n_in) == 0)
    return tidei_error(m->env, TIDE_ERR_FORMAT, "tensor '%s': %lld elements per row is not a "
                       "multiple of the %s block", name, (long long)n_in, dtype_str(ti.dtype, buf));
  size_t esz = ti.dtype == TIDE_F32 ? 4 : ti.dtype == TIDE_F16 || ti.dtype == TIDE_BF16 ? 2 : 1;
  if ((uintptr_t)ti.data % esz)
    return tidei_error(m->env, TIDE_ERR_FORMAT, "tensor '%s': data at offset %llu is not aligned",
                       name, (unsigned long long)ti.offset);
  w->data = ti.data;
  w->dtype = ti.dtype;
  w->n_in = n_in;
  w->n_out = n_out;
  return TIDE_OK;
}

/* An F32 vector [n]. */
static int get_vec(tide_model *m, const char *name, int64_t n, int required,
                   const float **v) {
  tide_tensor_info ti;
  int found, st = find_tensor(m, name, n, 0, required, &ti, &found);
  char buf[16];
  *v = NULL;
  if (st || !found) return st;
  if (ti.dtype != TIDE_F32)
    return tidei_error(m->env, TIDE_ERR_UNSUPPORTED, "tensor '%s': dtype %s, expected f32",
                       name, dtype_str(ti.dtype, buf));
  if ((uintptr_t)ti.data % 4)
    return tidei_error(m->env, TIDE_ERR_FORMAT, "tensor '%s': data at offset %llu is not aligned",
                       name, (unsigned long long)ti.offset);
  *v = ti.data;
  return TIDE_OK;
}

static size_t mat_bytes(const tidei_mat *w) {
  return w->data ? tide_dtype_row_size(w->dtype, w->n_in) * (size_t)w->n_out : 0;
}

/* The tensors of block il. */
static int load_layer(tide_model *m, int il) {
  tidei_layer *l = &m->layers[il];
  int64_t e = m->n_embd, q = (int64_t)m->n_head * m->head_dim;
  int64_t kvd = (int64_t)m->n_kv_head * m->head_dim, ff = m->n_ff;
  int gpt2 = m->arch == TIDEI_ARCH_GPT2, qwen2 = m->arch == TIDEI_ARCH_QWEN2;
  char n[20][64];
  static const char *const sfx[20] = {
    "attn_norm.weight", "attn_norm.bias", "attn_q.weight", "attn_k.weight",
    "attn_v.weight", "attn_q.bias", "attn_k.bias", "attn_v.bias", "attn_qkv.weight",
    "attn_qkv.bias", "attn_output.weight", "attn_output.bias", "ffn_norm.weight",
    "ffn_norm.bias", "ffn_gate.weight", "ffn_up.weight", "ffn_up.bias",
    "ffn_down.weight", "ffn_down.bias", "ffn_gate.bias"
  };
  for (int i = 0; i < 20; i++) snprintf(n[i], sizeof n[i], "blk.%d.%s", il, sfx[i]);
  int st;
  if ((st = get_vec(m, n[0], e, 1, &l->attn_norm))
      || (st = get_vec(m, n[1], e, gpt2, &l->attn_norm_b)))
    return st;
  if (gpt2) {
    if ((st = get_mat(m, n[8], e, 3 * e, 1, &l->wqkv))
        || (st = get_vec(m, n[9], 3 * e, 1, &l->bqkv)))
      return st;
  } else {
    if ((st = get_mat(m, n[2], e, q, 1, &l->wq)) || (st = get_mat(m, n[3], e, kvd, 1, &l->wk))
        || (st = get_mat(m, n[4], e, kvd, 1, &l->wv))
        || (st = get_vec(m, n[5], q, qwen2, &l->bq)) || (st = get_vec(m, n[6], kvd, qwen2, &l->bk))
        || (st = get_vec(m, n[7], kvd, qwen2, &l->bv)))
      return st;
  }
  if ((st = get_mat(m, n[10], q, e, 1, &l->wo)) || (st = get_vec(m, n[11], e, gpt2, &l->bo))
      || (st = get_vec(m, n[12], e, 1, &l->ffn_norm))
      || (st = get_vec(m, n[13], e, gpt2, &l->ffn_norm_b))
      || (st = get_mat(m, n[15], e, ff, 1, &l->w_up)) || (st = get_vec(m, n[16], ff, gpt2, &l->b_up))
      || (st = get_mat(m, n[17], ff, e, 1, &l->w_down))
      || (st = get_vec(m, n[18], e, gpt2, &l->b_down)))
    return st;
  if (!gpt2) {
    const float *gate_b;
    if ((st = get_mat(m, n[14], e, ff, 1, &l->w_gate)) || (st = get_vec(m, n[19], ff, 0, &gate_b)))
      return st;
    if (gate_b)
      return tidei_error(m->env, TIDE_ERR_UNSUPPORTED, "tensor '%s': ffn gate bias not supported",
                         n[19]);
  }
  m->info.weight_bytes += mat_bytes(&l->wq) + mat_bytes(&l->wk) + mat_bytes(&l->wv)
                          + mat_bytes(&l->wqkv) + mat_bytes(&l->wo) + mat_bytes(&l->w_gate)
                          + mat_bytes(&l->w_up) + mat_bytes(&l->w_down);
  return TIDE_OK;
}

/* token_embd, position_embd, blocks, output_norm, output (tied if absent). */
static int load_weights(tide_model *m) {
  int gpt2 = m->arch == TIDEI_ARCH_GPT2;
  int64_t e = m->n_embd;
  int st;
  if ((st = get_mat(m, "token_embd.weight", e, m->n_vocab, 1, &m->tok_embd))) return st;
  if (gpt2 && (st = get_mat(m, "position_embd.weight", e, m->n_ctx_train, 1, &m->pos_embd)))
    return st;
  if (!gpt2 && (st = get_vec(m, "rope_freqs.weight", m->n_rot / 2, 0, &m->rope_freqs)))
    return st;
  m->layers = tidei_calloc(m->env, (size_t)m->n_layer, sizeof(tidei_layer));
  if (!m->layers) return TIDE_ERR_NOMEM;
  for (int il = 0; il < m->n_layer; il++)
    if ((st = load_layer(m, il))) return st;
  if ((st = get_vec(m, "output_norm.weight", e, 1, &m->out_norm))
      || (st = get_vec(m, "output_norm.bias", e, gpt2, &m->out_norm_b))
      || (st = get_mat(m, "output.weight", e, m->n_vocab, 0, &m->output)))
    return st;
  if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
  m->info.weight_bytes += mat_bytes(&m->output)
                          + tide_dtype_row_size(m->tok_embd.dtype, e)
                          + (gpt2 ? tide_dtype_row_size(m->pos_embd.dtype, e) : 0);
  return TIDE_OK;
}

static float gelu_tanh(float x) {
  const float sqrt_2_over_pi = 0.79788456080286535587989211986876f;
  return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + 0.044715f * x * x)));
}

/* The F16 -> F32 table, and for gpt2 llama.cpp's F16 GELU table. */
static int build_tables(tide_model *m) {
  m->f16_to_f32 = tidei_alloc(m->env, 65536 * sizeof(float));
  if (!m->f16_to_f32) return TIDE_ERR_NOMEM;
  for (uint32_t i = 0; i < 65536; i++) m->f16_to_f32[i] = tidei_f16_to_f32((uint16_t)i);
  if (m->arch != TIDEI_ARCH_GPT2) return TIDE_OK;
  m->gelu_f16 = tidei_alloc(m->env, 65536 * sizeof(uint16_t));
  if (!m->gelu_f16) return TIDE_ERR_NOMEM;
  for (uint32_t i = 0; i < 65536; i++)
    m->gelu_f16[i] = tidei_f32_to_f16(gelu_tanh(m->f16_to_f32[i]));
  return TIDE_OK;
}

/* ---------------------------------------------------------------- model */

tide_model_params tide_model_default_params(void) {
  tide_model_params p;
  memset(&p, 0, sizeof p);
  return p;
}

static void fill_info(tide_model *m) {
  tide_model_info *i = &m->info;
  int64_t ft = -1;
  i->arch = m->arch == TIDEI_ARCH_LLAMA ? "llama" : m->arch == TIDEI_ARCH_QWEN2 ? "qwen2"
            : m->arch == TIDEI_ARCH_GPT2 ? "gpt2" : m->arch_name;
  i->name = m->name;
  i->n_vocab = m->n_vocab;
  i->n_embd = m->n_embd;
  i->n_layer = m->n_layer;
  i->n_head = m->n_head;
  i->n_kv_head = m->n_kv_head;
  i->head_dim = m->head_dim;
  i->n_ff = m->n_ff;
  i->n_ctx_train = m->n_ctx_train;
  i->rope_base = m->arch == TIDEI_ARCH_GPT2 || m->arch == TIDEI_ARCH_NONE ? 0 : m->rope_base;
  i->norm_eps = m->norm_eps;
  if (tide_gguf_get_int(m->gguf, "general.file_type", &ft) || ft < INT32_MIN || ft > INT32_MAX)
    ft = -1;
  i->file_type = (int)ft;
}

static void xfree(tide_env *env, void *p, size_t n) {
  if (p) tidei_free(env, p, n);
}

static void model_destroy(tide_model *m) {
  tide_env *env = m->env;
  tide_tokenizer_free(m->tok);
  tide_gguf_free(m->gguf);
  xfree(env, m->layers, (size_t)m->n_layer * sizeof(tidei_layer));
  xfree(env, m->f16_to_f32, 65536 * sizeof(float));
  xfree(env, m->gelu_f16, 65536 * sizeof(uint16_t));
  xfree(env, m->arch_name, m->arch_name_size);
  xfree(env, m->name, m->name_size);
  tidei_free(env, m, sizeof *m);
  tidei_env_unref(env);
}

static int model_arch(tide_model *m, int vocab_only) {
  const char *a = m->arch_name;
  if (!strcmp(a, "llama")) m->arch = TIDEI_ARCH_LLAMA;
  else if (!strcmp(a, "qwen2")) m->arch = TIDEI_ARCH_QWEN2;
  else if (!strcmp(a, "gpt2")) m->arch = TIDEI_ARCH_GPT2;
  else if (vocab_only) m->arch = TIDEI_ARCH_NONE;
  else if (!*a)
    return tidei_error(m->env, TIDE_ERR_NOTFOUND, "model: key 'general.architecture' not found");
  else
    return tidei_error(m->env, TIDE_ERR_UNSUPPORTED,
                       "model: architecture '%s' not supported (llama, qwen2, gpt2)", a);
  if (vocab_only) m->arch = TIDEI_ARCH_NONE;
  return TIDE_OK;
}

int tide_model_load(tide_env *env, const char *path, const tide_model_params *params,
                    tide_model **out) {
  if (out) *out = NULL;
  if (!env) return TIDE_ERR_ARG;
  if (!path || !out) return tidei_error(env, TIDE_ERR_ARG, "model_load: path or out is NULL");
  tide_model_params p = params ? *params : tide_model_default_params();
  tide_model *m = tidei_calloc(env, 1, sizeof *m);
  if (!m) return TIDE_ERR_NOMEM;
  tidei_env_ref(env);
  m->env = env;
  m->refs = 1;
  loader L = { m, NULL };
  int st = tide_gguf_open(env, path, &m->gguf);
  if (!st) st = key_strdup(m, "general.architecture", &m->arch_name, &m->arch_name_size);
  if (!st) st = key_strdup(m, "general.name", &m->name, &m->name_size);
  if (!st) st = model_arch(m, p.vocab_only);
  if (!st) st = tide_tokenizer_new(env, m->gguf, &m->tok);
  if (st) goto fail;
  m->n_vocab = tide_tokenizer_n_vocab(m->tok);
  L.arch = m->arch_name;
  if (m->arch != TIDEI_ARCH_NONE) {
    if ((st = load_hparams(&L)) || (st = load_weights(m)) || (st = build_tables(m))) goto fail;
  }
  fill_info(m);
  *out = m;
  return TIDE_OK;
fail:
  model_destroy(m);
  return st;
}

void tidei_model_ref(tide_model *m) { m->refs++; }

void tidei_model_unref(tide_model *m) {
  if (--m->refs == 0) model_destroy(m);
}

void tide_model_free(tide_model *m) {
  if (m) tidei_model_unref(m);
}

void tide_model_get_info(const tide_model *m, tide_model_info *out) { *out = m->info; }

const tide_tokenizer *tide_model_tokenizer(const tide_model *m) { return m->tok; }

const tide_gguf *tide_model_gguf(const tide_model *m) { return m->gguf; }
