/*
** train_io.c -- trainer checkpoints as GGUF: the weights as a llama model
** file that tide_model_load reads (or, in frozen mode, the extras alone),
** tokenizer metadata passed through, and optionally the AdamW state under
** tide.train.* names in the same file. Layer: core. docs/training.md has
** the format.
*/
#include <stdio.h>
#include <string.h>

#include "train.h"

#define KEY_MAX 96
#define EXTRAS_ARCH "tide-extras" /* general.architecture of a frozen-mode file */

/* ---------------------------------------------------------------- keys */

typedef struct {
  const char *key;    /* full key */
  int64_t value;
} ikey;

/* The integer keys that pin a trainer's shape, as written and checked. */
static int shape_keys(const tide_trainer *tr, ikey *k) {
  int n = 0;
  if (tr->frozen) {
    k[n++] = (ikey){ "tide.extras.n_embd", tr->n_embd };
    k[n++] = (ikey){ "tide.extras.n_vocab", tr->n_vocab };
    k[n++] = (ikey){ "tide.extras.steer_rank", tr->steer_rank };
    k[n++] = (ikey){ "tide.extras.n_prefix", tr->n_prefix };
    if (tr->n_kv_prefix) { /* only then, so older extras files still resume */
      k[n++] = (ikey){ "tide.extras.n_kv_prefix", tr->n_kv_prefix };
      k[n++] = (ikey){ "tide.extras.n_layer", tr->n_layer };
      k[n++] = (ikey){ "tide.extras.kv_dim", (int64_t)tr->n_kv_head * tr->head_dim };
    }
    return n;
  }
  k[n++] = (ikey){ "llama.context_length", tr->n_ctx_train };
  k[n++] = (ikey){ "llama.embedding_length", tr->n_embd };
  k[n++] = (ikey){ "llama.block_count", tr->n_layer };
  k[n++] = (ikey){ "llama.feed_forward_length", tr->n_ff };
  k[n++] = (ikey){ "llama.attention.head_count", tr->n_head };
  k[n++] = (ikey){ "llama.attention.head_count_kv", tr->n_kv_head };
  k[n++] = (ikey){ "llama.rope.dimension_count", tr->head_dim };
  k[n++] = (ikey){ "llama.vocab_size", tr->n_vocab };
  if ((int64_t)tr->head_dim * tr->n_head != tr->n_embd) {
    k[n++] = (ikey){ "llama.attention.key_length", tr->head_dim };
    k[n++] = (ikey){ "llama.attention.value_length", tr->head_dim };
  }
  return n;
}

/* Copies key i of g (any non-nested type) into w. */
static int copy_kv(tide_env *env, tide_gguf_writer *w, const tide_gguf *g, int64_t i) {
  const char *key = tide_gguf_key(g, i);
  int type = tide_gguf_kv_type(g, i), st;
  if (type == TIDE_GGUF_STRING) {
    const char *s;
    size_t len;
    if ((st = tide_gguf_get_str(g, key, &s, &len))) return st;
    return tide_gguf_writer_set_str(w, key, s, len);
  }
  if (type == TIDE_GGUF_FLOAT32 || type == TIDE_GGUF_FLOAT64) {
    double v;
    if ((st = tide_gguf_get_float(g, key, &v))) return st;
    return tide_gguf_writer_set_float(w, key, type, v);
  }
  if (type == TIDE_GGUF_BOOL) {
    int v;
    if ((st = tide_gguf_get_bool(g, key, &v))) return st;
    return tide_gguf_writer_set_int(w, key, type, v);
  }
  if (type != TIDE_GGUF_ARRAY) {
    int64_t v;
    if ((st = tide_gguf_get_int(g, key, &v))) return st;
    return tide_gguf_writer_set_int(w, key, type, v);
  }
  tide_gguf_arr a;
  if ((st = tide_gguf_get_arr(g, key, &a))) return st;
  if (a.type != TIDE_GGUF_STRING) return tide_gguf_writer_set_arr(w, key, a.type, a.data, a.n);
  size_t np = (size_t)a.n * sizeof(char *), nl = (size_t)a.n * sizeof(size_t);
  const char **strs = a.n ? tidei_alloc(env, np) : NULL;
  size_t *lens = a.n ? tidei_alloc(env, nl) : NULL;
  if (a.n && (!strs || !lens)) st = TIDE_ERR_NOMEM;
  for (int64_t j = 0; !st && j < a.n; j++) strs[j] = tide_gguf_arr_str(&a, j, &lens[j]);
  if (!st) st = tide_gguf_writer_set_arr_str(w, key, strs, lens, a.n);
  if (strs) tidei_free(env, strs, np);
  if (lens) tidei_free(env, lens, nl);
  return st;
}

/* Every tokenizer.* key of g; its token count must be n_vocab. */
static int vocab_from_gguf(tide_trainer *tr, tide_gguf_writer *w, const tide_gguf *g) {
  tide_gguf_arr a;
  if (tide_gguf_get_arr(g, "tokenizer.ggml.tokens", &a) || a.type != TIDE_GGUF_STRING
      || a.n != tr->n_vocab)
    return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_save: the vocabulary gguf has no "
                       "'tokenizer.ggml.tokens' of %d strings", (int)tr->n_vocab);
  for (int64_t i = 0; i < tide_gguf_n_kv(g); i++) {
    if (strncmp(tide_gguf_key(g, i), "tokenizer.", 10)) continue;
    int st = copy_kv(tr->env, w, g, i);
    if (st) return st;
  }
  return TIDE_OK;
}

static int vocab_from_arrays(tide_trainer *tr, tide_gguf_writer *w, const tide_trainer_vocab *v) {
  int64_t n = tr->n_vocab;
  if (!v->model || !v->tokens)
    return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_save: vocab model or tokens is NULL");
  int st = tide_gguf_writer_set_str(w, "tokenizer.ggml.model", v->model, strlen(v->model));
  if (!st && v->pre) st = tide_gguf_writer_set_str(w, "tokenizer.ggml.pre", v->pre, strlen(v->pre));
  if (!st) st = tide_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", v->tokens, NULL, n);
  if (!st && v->scores)
    st = tide_gguf_writer_set_arr(w, "tokenizer.ggml.scores", TIDE_GGUF_FLOAT32, v->scores, n);
  if (!st && v->types)
    st = tide_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", TIDE_GGUF_INT32, v->types, n);
  if (!st && v->merges)
    st = tide_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", v->merges, NULL, v->n_merges);
  if (!st && v->bos >= 0)
    st = tide_gguf_writer_set_int(w, "tokenizer.ggml.bos_token_id", TIDE_GGUF_UINT32, v->bos);
  if (!st && v->eos >= 0)
    st = tide_gguf_writer_set_int(w, "tokenizer.ggml.eos_token_id", TIDE_GGUF_UINT32, v->eos);
  if (!st && v->add_bos >= 0)
    st = tide_gguf_writer_set_int(w, "tokenizer.ggml.add_bos_token", TIDE_GGUF_BOOL, v->add_bos != 0);
  return st;
}

/* Frozen mode: steer_eps and the provenance keys (docs/training.md): the
** base model's general.name, its tide_model_hash as 16 lowercase hex
** digits (a string: GGUF readers differ on u64 above INT64_MAX), the
** caller's data string. */
static int write_source(tide_trainer *tr, tide_gguf_writer *w, const tide_trainer_save_params *sp) {
  int st = tide_gguf_writer_set_float(w, "tide.extras.steer_eps", TIDE_GGUF_FLOAT32, tr->steer_eps);
  uint64_t hash = 0;
  if (!st && tr->model) {
    const char *bn = tr->model->name ? tr->model->name : "";
    st = tide_gguf_writer_set_str(w, "tide.extras.base_name", bn, strlen(bn));
    if (!st) st = tide_model_hash(tr->model, &hash);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)hash);
    if (!st) st = tide_gguf_writer_set_str(w, "tide.extras.base_hash", hex, 16);
  }
  if (!st && sp && sp->data)
    st = tide_gguf_writer_set_str(w, "tide.extras.data", sp->data, strlen(sp->data));
  return st;
}

/* general.*, the shape keys and the float hyper-parameters. */
static int write_meta(tide_trainer *tr, tide_gguf_writer *w, const tide_trainer_save_params *sp) {
  const char *arch = tr->frozen ? EXTRAS_ARCH : "llama";
  const char *name = sp && sp->name ? sp->name : "tide";
  ikey k[16];
  int n = shape_keys(tr, k);
  int st = tide_gguf_writer_set_str(w, "general.architecture", arch, strlen(arch));
  if (!st) st = tide_gguf_writer_set_str(w, "general.name", name, strlen(name));
  if (!st) st = tide_gguf_writer_set_int(w, "general.alignment", TIDE_GGUF_UINT32, 32);
  for (int i = 0; !st && i < n; i++)
    st = tide_gguf_writer_set_int(w, k[i].key, TIDE_GGUF_UINT32, k[i].value);
  if (tr->frozen)
    return st ? st : write_source(tr, w, sp);
  if (!st) st = tide_gguf_writer_set_int(w, "general.file_type", TIDE_GGUF_UINT32, 0);
  if (!st) st = tide_gguf_writer_set_float(w, "llama.rope.freq_base", TIDE_GGUF_FLOAT32,
                                           tr->rope_base);
  if (!st) st = tide_gguf_writer_set_float(w, "llama.attention.layer_norm_rms_epsilon",
                                           TIDE_GGUF_FLOAT32, tr->norm_eps);
  if (st) return st;
  /* tokenizer: the caller's gguf, its arrays, or the source model's */
  if (sp && sp->vocab_gguf) return vocab_from_gguf(tr, w, sp->vocab_gguf);
  if (sp && sp->vocab) return vocab_from_arrays(tr, w, sp->vocab);
  if (tr->model) return vocab_from_gguf(tr, w, tide_model_gguf(tr->model));
  return tidei_error(tr->env, TIDE_ERR_ARG, "trainer_save: no tokenizer metadata (set "
                     "vocab_gguf or vocab)");
}

/* "tide.train.adam_m.<name>" (which 0) or "tide.train.adam_v.<name>" (1). */
static const char *moment_name(const tidei_tparam *t, int which, char *buf) {
  snprintf(buf, KEY_MAX, "tide.train.adam_%c.%s", which ? 'v' : 'm', t->name);
  return buf;
}

int tidei_train_save(tide_trainer *tr, const char *path, const tide_trainer_save_params *sp) {
  tide_gguf_writer *w = NULL;
  int st = tide_gguf_writer_new(tr->env, &w);
  if (!st) st = write_meta(tr, w, sp);
  for (int i = 0; !st && i < tr->n_tensors; i++) {
    const tidei_tparam *t = &tr->tensors[i];
    st = tide_gguf_writer_add_tensor(w, t->name, TIDE_F32, t->n_dims, t->ne, tr->w + t->off);
  }
  if (!st && sp && sp->optimizer) {
    st = tide_gguf_writer_set_int(w, "tide.train.step", TIDE_GGUF_UINT64, tr->step);
    if (!st) st = tide_gguf_writer_set_int(w, "tide.train.format", TIDE_GGUF_UINT32, 1);
    for (int i = 0; !st && i < tr->n_tensors; i++) {
      const tidei_tparam *t = &tr->tensors[i];
      char name[KEY_MAX];
      st = tide_gguf_writer_add_tensor(w, moment_name(t, 0, name), TIDE_F32, t->n_dims, t->ne,
                                       tr->adam_m + t->off);
      if (!st) st = tide_gguf_writer_add_tensor(w, moment_name(t, 1, name), TIDE_F32, t->n_dims,
                                                t->ne, tr->adam_v + t->off);
    }
  }
  if (!st) st = tide_gguf_writer_write(w, path, 3);
  tide_gguf_writer_free(w);
  return st;
}

/* ---------------------------------------------------------------- resume */

/* The F32 data of tensor name in g, checked against t's shape. */
static int resume_tensor(tide_trainer *tr, tide_gguf *g, const char *name,
                         const tidei_tparam *t, const float **out) {
  tide_tensor_info ti;
  int64_t i = tide_gguf_find_tensor(g, name);
  if (i < 0) return tidei_error(tr->env, TIDE_ERR_FORMAT, "trainer_resume: tensor '%s' not found",
                                name);
  int st = tide_gguf_tensor(g, i, &ti);
  if (st) return st;
  if (ti.dtype != TIDE_F32 || ti.ne[0] != t->ne[0] || ti.ne[1] != t->ne[1] || ti.ne[2] != 1
      || ti.ne[3] != 1 || (uintptr_t)ti.data % sizeof(float))
    return tidei_error(tr->env, TIDE_ERR_FORMAT, "trainer_resume: tensor '%s': expected f32 "
                       "[%lld, %lld]", name, (long long)t->ne[0], (long long)t->ne[1]);
  *out = ti.data;
  return TIDE_OK;
}

/* Checks shape keys, tensors and step; copies only when all are present. */
static int resume_from(tide_trainer *tr, tide_gguf *g) {
  tide_env *env = tr->env;
  ikey k[16];
  int n = shape_keys(tr, k), st;
  const char *arch;
  size_t alen;
  const char *want = tr->frozen ? EXTRAS_ARCH : "llama";
  if (tide_gguf_get_str(g, "general.architecture", &arch, &alen) || alen != strlen(want)
      || memcmp(arch, want, alen))
    return tidei_error(env, TIDE_ERR_FORMAT, "trainer_resume: general.architecture is not '%s'",
                       want);
  for (int i = 0; i < n; i++) {
    int64_t v;
    if (tide_gguf_get_int(g, k[i].key, &v) || v != k[i].value)
      return tidei_error(env, TIDE_ERR_FORMAT, "trainer_resume: key '%s' is not %lld (the "
                         "trainer's)", k[i].key, (long long)k[i].value);
  }
  int64_t step;
  if (tide_gguf_get_int(g, "tide.train.step", &step) || step < 0)
    return tidei_error(env, TIDE_ERR_FORMAT, "trainer_resume: no optimizer state (key "
                       "'tide.train.step')");
  if (!tr->frozen && tr->tied != (tide_gguf_find_tensor(g, "output.weight") < 0))
    return tidei_error(env, TIDE_ERR_FORMAT, "trainer_resume: the file's output projection is %s, "
                       "the trainer's is %s", tr->tied ? "untied" : "tied",
                       tr->tied ? "tied" : "untied");
  for (int pass = 0; pass < 2; pass++) /* check everything, then copy */
    for (int i = 0; i < tr->n_tensors; i++) {
      const tidei_tparam *t = &tr->tensors[i];
      char mn[KEY_MAX], vn[KEY_MAX];
      const float *w, *m, *v;
      if ((st = resume_tensor(tr, g, t->name, t, &w))
          || (st = resume_tensor(tr, g, moment_name(t, 0, mn), t, &m))
          || (st = resume_tensor(tr, g, moment_name(t, 1, vn), t, &v)))
        return st;
      if (pass == 0) continue;
      size_t bytes = (size_t)t->n * sizeof(float);
      memcpy(tr->w + t->off, w, bytes);
      memcpy(tr->adam_m + t->off, m, bytes);
      memcpy(tr->adam_v + t->off, v, bytes);
    }
  tr->step = step;
  return TIDE_OK;
}

int tidei_train_resume(tide_trainer *tr, const char *path) {
  tide_gguf *g = NULL;
  int st = tide_gguf_open(tr->env, path, &g);
  if (st) return st;
  st = resume_from(tr, g);
  tide_gguf_free(g);
  return st;
}
