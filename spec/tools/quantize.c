/*
** quantize.c -- `build/release/quantize IN.gguf OUT.gguf TYPE`: rewrites a
** GGUF model with its 2-D weight matrices in TYPE (f16, bf16, q8_0, q4_0),
** keeping every metadata key and every other tensor as it is.
** Layer: tools. Uses only the public API (tide.h). Used to ship the trained
** default model in F16 (models/, see docs/default-model.md).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tide.h"

static int fail(tide_env *env, const char *what, int st) {
  fprintf(stderr, "quantize: %s: %s (%s)\n", what, tide_env_errmsg(env), tide_status_name(st));
  return 1;
}

/* Copies metadata key i of g into w. */
static int copy_kv(tide_gguf_writer *w, const tide_gguf *g, int64_t i, uint32_t file_type) {
  const char *key = tide_gguf_key(g, i);
  int t = tide_gguf_kv_type(g, i);
  if (!strcmp(key, "general.file_type"))
    return tide_gguf_writer_set_int(w, key, TIDE_GGUF_UINT32, file_type);
  switch (t) {
  case TIDE_GGUF_STRING: {
    const char *s;
    size_t n;
    tide_gguf_get_str(g, key, &s, &n);
    return tide_gguf_writer_set_str(w, key, s, n);
  }
  case TIDE_GGUF_FLOAT32: case TIDE_GGUF_FLOAT64: {
    double v;
    tide_gguf_get_float(g, key, &v);
    return tide_gguf_writer_set_float(w, key, t, v);
  }
  case TIDE_GGUF_BOOL: {
    int v;
    tide_gguf_get_bool(g, key, &v);
    return tide_gguf_writer_set_int(w, key, t, v);
  }
  case TIDE_GGUF_ARRAY: {
    tide_gguf_arr a;
    tide_gguf_get_arr(g, key, &a);
    if (a.type == TIDE_GGUF_STRING) {
      const char **strs = malloc(sizeof *strs * (size_t)(a.n ? a.n : 1));
      size_t *lens = malloc(sizeof *lens * (size_t)(a.n ? a.n : 1));
      if (!strs || !lens) { free(strs); free(lens); return TIDE_ERR_NOMEM; }
      for (int64_t k = 0; k < a.n; k++) strs[k] = tide_gguf_arr_str(&a, k, &lens[k]);
      int st = tide_gguf_writer_set_arr_str(w, key, strs, lens, a.n);
      free(strs);
      free(lens);
      return st;
    }
    return tide_gguf_writer_set_arr(w, key, a.type, a.data, a.n);
  }
  default: {
    int64_t v;
    int st = tide_gguf_get_int(g, key, &v);
    return st ? st : tide_gguf_writer_set_int(w, key, t, v);
  }
  }
}

int main(int argc, char **argv) {
  static const struct { const char *name; int dtype; uint32_t ftype; } TYPES[] = {
    { "f16", TIDE_F16, 1 }, { "bf16", TIDE_BF16, 32 }, { "q8_0", TIDE_Q8_0, 7 }, { "q4_0", TIDE_Q4_0, 2 },
  };
  if (argc != 4) {
    fprintf(stderr, "usage: quantize IN.gguf OUT.gguf f16|bf16|q8_0|q4_0\n");
    return 2;
  }
  int dt = -1;
  uint32_t ftype = 0;
  for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
    if (!strcmp(argv[3], TYPES[i].name)) { dt = TYPES[i].dtype; ftype = TYPES[i].ftype; }
  if (dt < 0) { fprintf(stderr, "quantize: unknown type '%s'\n", argv[3]); return 2; }
  tide_env *env = NULL;
  tide_gguf *g = NULL;
  tide_gguf_writer *w = NULL;
  int st, rc = 1;
  int64_t n_t = 0;
  void **bufs = NULL;
  if (tide_env_new(&env, NULL, NULL)) return 1;
  if ((st = tide_gguf_open(env, argv[1], &g))) { rc = fail(env, argv[1], st); goto done; }
  if ((st = tide_gguf_writer_new(env, &w))) { rc = fail(env, "writer", st); goto done; }
  for (int64_t i = 0; i < tide_gguf_n_kv(g); i++)
    if ((st = copy_kv(w, g, i, ftype))) { rc = fail(env, tide_gguf_key(g, i), st); goto done; }
  n_t = tide_gguf_n_tensors(g);
  bufs = calloc((size_t)(n_t ? n_t : 1), sizeof *bufs);
  if (!bufs) goto done;
  for (int64_t i = 0; i < n_t; i++) {
    tide_tensor_info ti;
    tide_gguf_tensor(g, i, &ti);
    int64_t n = ti.ne[0] * ti.ne[1] * ti.ne[2] * ti.ne[3];
    const void *data = ti.data;
    int out_dt = ti.dtype;
    /* matrices whose rows fit the target's blocks; vectors stay as they are */
    if (ti.n_dims == 2 && tide_dtype_row_size(dt, ti.ne[0]) != 0 && ti.dtype != dt) {
      float *f = malloc(sizeof(float) * (size_t)n);
      bufs[i] = malloc(tide_dtype_row_size(dt, n));
      if (!f || !bufs[i]) { free(f); goto done; }
      if ((st = tide_dequantize(ti.dtype, ti.data, f, n)) || (st = tide_quantize(dt, f, bufs[i], n))) {
        free(f);
        rc = fail(env, ti.name, st);
        goto done;
      }
      free(f);
      data = bufs[i];
      out_dt = dt;
    }
    if ((st = tide_gguf_writer_add_tensor(w, ti.name, out_dt, ti.n_dims, ti.ne, data))) {
      rc = fail(env, ti.name, st);
      goto done;
    }
  }
  if ((st = tide_gguf_writer_write(w, argv[2], 3))) { rc = fail(env, argv[2], st); goto done; }
  rc = 0;
done:
  for (int64_t i = 0; bufs && i < n_t; i++) free(bufs[i]);
  free(bufs);
  tide_gguf_writer_free(w);
  tide_gguf_free(g);
  tide_env_free(env);
  return rc;
}
