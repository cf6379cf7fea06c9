/*
** model.h -- the structs behind tide_model and tide_ctx, shared by model.c
** (loading), kv.c (the cache and its sequences) and forward.c (tide_decode).
** Layer: core (internal).
*/
#ifndef TIDE_MODEL_H
#define TIDE_MODEL_H

#include <stdint.h>

#include "kv.h"
#include "tensor.h"
#include "tidei.h"

typedef enum {
  TIDEI_ARCH_NONE = 0, /* vocab_only model */
  TIDEI_ARCH_LLAMA,
  TIDEI_ARCH_QWEN2,
  TIDEI_ARCH_GPT2
} tidei_arch;

/* One transformer block. Vectors point into the mapping (F32); a NULL bias
** means the file has none (llama may carry optional biases). */
typedef struct {
  const float *attn_norm;   /* (n_embd) */
  const float *attn_norm_b; /* (n_embd) gpt2 only */
  tidei_mat wq;             /* (n_head*head_dim, n_embd)    llama, qwen2 */
  tidei_mat wk;             /* (n_kv_head*head_dim, n_embd) llama, qwen2 */
  tidei_mat wv;             /* (n_kv_head*head_dim, n_embd) llama, qwen2 */
  tidei_mat wqkv;           /* (3*n_embd, n_embd) gpt2: rows q, then k, then v */
  const float *bq;          /* (n_head*head_dim) */
  const float *bk, *bv;     /* (n_kv_head*head_dim) */
  const float *bqkv;        /* (3*n_embd) gpt2 */
  tidei_mat wo;             /* (n_embd, n_head*head_dim) */
  const float *bo;          /* (n_embd) */
  const float *ffn_norm;    /* (n_embd) */
  const float *ffn_norm_b;  /* (n_embd) gpt2 only */
  tidei_mat w_gate;         /* (n_ff, n_embd) llama, qwen2 */
  tidei_mat w_up;           /* (n_ff, n_embd) */
  const float *b_up;        /* (n_ff) */
  tidei_mat w_down;         /* (n_embd, n_ff) */
  const float *b_down;      /* (n_embd) */
} tidei_layer;

struct tide_model {
  tide_env *env;
  int refs;                 /* 1 + contexts alive that use the model */
  tidei_arch arch;
  tide_gguf *gguf;          /* owned; the weights point into its mapping */
  tide_tokenizer *tok;      /* owned */
  tide_model_info info;     /* what tide_model_get_info returns */
  char *arch_name;          /* general.architecture, NUL-terminated (owned) */
  size_t arch_name_size;
  char *name;               /* general.name, NUL-terminated (owned) */
  size_t name_size;

  /* hyper-parameters (copies of info's, in the names the forward pass uses) */
  int32_t n_vocab, n_embd, n_layer, n_head, n_kv_head, head_dim, n_ff;
  int32_t n_ctx_train;
  int32_t n_rot;            /* dimensions RoPE rotates per head (<= head_dim) */
  float rope_base;          /* float, as llama.cpp reads it */
  float rope_freq_scale;    /* 1 / linear scaling factor (1 = none) */
  float norm_eps;

  /* weights */
  tidei_mat tok_embd;       /* (n_vocab, n_embd) */
  tidei_mat pos_embd;       /* (n_pos, n_embd) gpt2: learned positions */
  const float *rope_freqs;  /* (n_rot/2) optional frequency factors, or NULL */
  tidei_layer *layers;      /* (n_layer) */
  const float *out_norm;    /* (n_embd) */
  const float *out_norm_b;  /* (n_embd) gpt2 only */
  tidei_mat output;         /* (n_vocab, n_embd); tok_embd when tied */

  /* tables built at load (no process-wide state) */
  float *f16_to_f32;        /* (65536) F16 bit pattern -> float */
  uint16_t *gelu_f16;       /* (65536) fp16(gelu(fp16 x)) by x's bits; gpt2 */
};

struct tide_ctx {
  tide_env *env;
  tide_model *m;            /* referenced */
  int32_t n_ctx, n_batch;
  int32_t n_outputs;        /* max logits rows of one decode (<= n_batch) */
  tidei_kv kv;              /* cache, sequences, block tables */

  /* scratch for tide_decode, sized for n_batch rows at creation */
  float *x;                 /* (n_batch, n_embd) residual stream */
  float *xb;                /* (n_batch, n_embd) normed input of a sublayer */
  float *q;                 /* (n_batch, n_head*head_dim) or gpt2 (n_batch, 3*n_embd) q|k|v */
  float *k, *v;             /* (n_batch, n_kv_head*head_dim) each; unused by gpt2 */
  float *att;               /* (n_batch, n_head*head_dim) attention output */
  float *hb;                /* (n_batch, max(n_ff, n_embd)) */
  float *hb2;               /* (n_batch, n_ff) */
  float *rope_cs;           /* (n_rot) cos, sin pairs of one position */
  void *mm_scratch;         /* tidei_matmul's activation buffer */
  size_t mm_scratch_size;
  float *att_scores;        /* (TIDEI_MAX_THREADS, n_ctx + head_dim + 16*head_dim) per thread:
                               scores of each position, the query, then 16
                               per-lane accumulators of P.V */
  int32_t *row_ids;         /* (n_batch) 0, 1, 2, ...: rows attending in a layer */
  int32_t *out_rows;        /* (n_batch) rows whose logits are computed */
  float *logits;            /* (n_batch, n_vocab) */
  int32_t n_logits;         /* rows of logits of the last decode */
  tide_ctx_stats stats;     /* counters since creation (tide_ctx_get_stats) */

  /* steering and introspection (steer.c); NULL until first used */
  struct tidei_steer_state *steer; /* LM-Steer sets per sequence + scratch */
  float *cvec;              /* (n_layer, n_embd) control vector, or NULL */
  int32_t cvec_start, cvec_end; /* blocks il_start..il_end get row il */
  struct tidei_capture *cap; /* hidden-state capture, or NULL */
  struct tidei_inject *inj; /* injections for the next decode, or NULL */

  /* what the attention task reads (set per layer by tide_decode) */
  const tide_batch_row *rows;
  const int32_t *att_rows;  /* (n_att) batch row of each attending row */
  int32_t n_att, il;
  int64_t q_stride, kv_stride; /* floats between consecutive rows of q, k, v */
  const float *cq;          /* (n_att, q_stride) queries after RoPE */
};


/* model.c: reference counting of a model by the contexts made from it. */
void tidei_model_ref(tide_model *m);
void tidei_model_unref(tide_model *m);

#endif
