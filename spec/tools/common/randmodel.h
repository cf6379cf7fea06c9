/*
** randmodel.h -- writes random-weight llama GGUF models with tide's writer.
** Layer: tools (bench and demo). Uses only the public API (tide.h).
*/
#ifndef TIDE_RANDMODEL_H
#define TIDE_RANDMODEL_H

#include <stdint.h>

#include "tide.h"

typedef struct {
  const char *name;     /* general.name */
  int32_t n_vocab;      /* >= 257: the 256 byte tokens, then merged tokens */
  int32_t n_embd, n_layer, n_head, n_kv_head, n_ff, n_ctx;
  int dtype;            /* block matrices and output: TIDE_F16, TIDE_Q8_0, ... */
  int tied;             /* no output.weight: token_embd is the output matrix */
  uint64_t seed;
} randmodel_params;

/* Writes the model to path. progress (may be NULL) is called after each
** tensor with (done, total) counts. Returns a tide status; the message is on
** env. */
int randmodel_write(tide_env *env, const char *path, const randmodel_params *p,
                    void (*progress)(int done, int total));

#endif
