/*
** tide.h -- the public C API of tide, a generation runtime for language models.
** Layer: core (the only public header; it includes nothing but the C library).
**
** Contract in brief:
**  - Everything hangs off a tide_env the caller creates: allocator, thread
**    count, cancel callback and the last error message. No global mutable state.
**  - Every function that can fail returns a status (TIDE_OK == 0) and leaves a
**    message readable with tide_env_errmsg(). Constructors write their handle
**    through an out-parameter; on failure it is set to NULL and nothing leaks.
**  - Every *_free accepts NULL. Children keep their parents alive (reference
**    counts), so handles may be freed in any order.
**  - The core never prints, exits or aborts on anything a caller can influence.
**  - A handle is used by one thread at a time; a loaded model is immutable.
*/
#ifndef TIDE_H
#define TIDE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TIDE_VERSION_MAJOR 0
#define TIDE_VERSION_MINOR 1
#define TIDE_VERSION_PATCH 0
#define TIDE_VERSION_NUM (TIDE_VERSION_MAJOR * 10000 + TIDE_VERSION_MINOR * 100 + TIDE_VERSION_PATCH)

/* Version of the library actually linked (compare with TIDE_VERSION_NUM). */
int tide_version(void);

/* ---------------------------------------------------------------- status */

enum {
  TIDE_OK = 0,
  TIDE_ERR_NOMEM,       /* the allocator returned NULL */
  TIDE_ERR_ARG,         /* a bad argument (range, NULL, inconsistent sizes) */
  TIDE_ERR_IO,          /* open/read/write/mmap failed */
  TIDE_ERR_FORMAT,      /* malformed input file or data */
  TIDE_ERR_NOTFOUND,    /* a key, tensor or sequence that does not exist */
  TIDE_ERR_UNSUPPORTED, /* valid input tide does not handle (arch, dtype...) */
  TIDE_ERR_FULL,        /* a fixed-size resource (KV cache, buffer) is full */
  TIDE_ERR_STATE,       /* call not valid in the handle's current state */
  TIDE_ERR_CANCELLED    /* the env's cancel callback asked to stop */
};

/* Short name of a status ("ok", "out of memory", ...). Never NULL. */
const char *tide_status_name(int status);

/* ---------------------------------------------------------------- env */

typedef struct tide_env tide_env;

/* Allocator with lua_Alloc's contract: nsize == 0 frees ptr (returns NULL);
** otherwise (re)allocates ptr from osize to nsize bytes and returns the new
** block or NULL on failure (ptr untouched). osize is exact for live blocks. */
typedef void *(*tide_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

/* Called now and then during long work; a nonzero return cancels it
** (the call returns TIDE_ERR_CANCELLED). */
typedef int (*tide_cancel_fn)(void *ud);

/* Creates an environment. alloc may be NULL (the C library's realloc/free).
** Returns TIDE_ERR_NOMEM if even the env cannot be allocated. */
int tide_env_new(tide_env **out, tide_alloc_fn alloc, void *ud);

/* Frees the env once every handle made from it is freed (reference counted). */
void tide_env_free(tide_env *env);

/* The message of the last failure on this env ("" if none). Valid until the
** next call that fails. */
const char *tide_env_errmsg(const tide_env *env);

/* Worker threads for kernels, 1..64 (default 1). Starts/stops the pool. */
int tide_env_set_threads(tide_env *env, int n_threads);
int tide_env_threads(const tide_env *env);

/* Installs (or with fn == NULL removes) the cancel callback. */
void tide_env_set_cancel(tide_env *env, tide_cancel_fn fn, void *ud);

/* Name of the SIMD path the kernels use: "avx512", "avx2" or "scalar". */
const char *tide_env_isa(const tide_env *env);

/* Forces the scalar reference kernels (nonzero) or the best path (zero).
** Used by tests to compare the two; also a debugging aid. */
void tide_env_force_scalar(tide_env *env, int on);

/* ---------------------------------------------------------------- dtypes */

/* Element types; the numbers are GGUF's (ggml_type). */
typedef enum {
  TIDE_F32 = 0,
  TIDE_F16 = 1,
  TIDE_Q4_0 = 2,
  TIDE_Q8_0 = 8,
  TIDE_Q4_K = 12,
  TIDE_Q6_K = 14,
  TIDE_Q8_K = 15, /* activations for K-quants only; not a weight type */
  TIDE_BF16 = 30
} tide_dtype;

/* Elements per block (1 for float types) and bytes per block; 0 for an
** unknown dtype. */
int64_t tide_dtype_block(int dtype);
size_t tide_dtype_block_bytes(int dtype);

/* "f32", "q4_K", ... or NULL for an unknown dtype. */
const char *tide_dtype_name(int dtype);

/* Bytes of n elements, or 0 if dtype is unknown or n is not a multiple of
** the block size. */
size_t tide_dtype_row_size(int dtype, int64_t n);

/* n elements of dtype at src -> n floats at dst. TIDE_ERR_ARG if dtype is
** unknown or n is not a multiple of the block size. Allocates nothing. */
int tide_dequantize(int dtype, const void *src, float *dst, int64_t n);

/* n floats -> dtype (row-wise, as llama.cpp's reference quantizers). */
int tide_quantize(int dtype, const float *src, void *dst, int64_t n);

/* ---------------------------------------------------------------- GGUF */

typedef struct tide_gguf tide_gguf;

/* GGUF value types (gguf_type). */
typedef enum {
  TIDE_GGUF_UINT8 = 0, TIDE_GGUF_INT8 = 1, TIDE_GGUF_UINT16 = 2,
  TIDE_GGUF_INT16 = 3, TIDE_GGUF_UINT32 = 4, TIDE_GGUF_INT32 = 5,
  TIDE_GGUF_FLOAT32 = 6, TIDE_GGUF_BOOL = 7, TIDE_GGUF_STRING = 8,
  TIDE_GGUF_ARRAY = 9, TIDE_GGUF_UINT64 = 10, TIDE_GGUF_INT64 = 11,
  TIDE_GGUF_FLOAT64 = 12
} tide_gguf_type;

/* Opens a GGUF file (v2 or v3) by mmap and validates all of its header,
** metadata and tensor table. A bad file gives TIDE_ERR_FORMAT and a message
** naming the byte offset and the field. */
int tide_gguf_open(tide_env *env, const char *path, tide_gguf **out);

/* The same over a caller-owned buffer, which must outlive the handle. */
int tide_gguf_open_memory(tide_env *env, const void *data, size_t size,
                          tide_gguf **out);

void tide_gguf_free(tide_gguf *g);

uint32_t tide_gguf_version(const tide_gguf *g);

/* Metadata. Keys are looked up exactly. find returns the index or -1. */
int64_t tide_gguf_n_kv(const tide_gguf *g);
int64_t tide_gguf_find(const tide_gguf *g, const char *key);
const char *tide_gguf_key(const tide_gguf *g, int64_t i); /* NUL-terminated */
int tide_gguf_kv_type(const tide_gguf *g, int64_t i);     /* tide_gguf_type */

/* Typed getters: TIDE_ERR_NOTFOUND if the key is absent, TIDE_ERR_FORMAT if
** its type does not fit (get_int takes any integer type whose value fits in
** int64_t; get_float takes FLOAT32 or FLOAT64). Messages name the key. */
int tide_gguf_get_int(const tide_gguf *g, const char *key, int64_t *out);
int tide_gguf_get_float(const tide_gguf *g, const char *key, double *out);
int tide_gguf_get_bool(const tide_gguf *g, const char *key, int *out);
/* *s points into the file; not NUL-terminated. */
int tide_gguf_get_str(const tide_gguf *g, const char *key, const char **s,
                      size_t *len);

/* An array value. Elements are read with the accessors below. */
typedef struct {
  int type;        /* element type (tide_gguf_type, never ARRAY) */
  int64_t n;       /* element count */
  const void *data;     /* raw little-endian elements (may be unaligned) */
  const void *strings;  /* internal: string offsets for STRING arrays */
} tide_gguf_arr;

int tide_gguf_get_arr(const tide_gguf *g, const char *key, tide_gguf_arr *out);
/* Element i (0 <= i < n, unchecked) of a numeric or bool array. */
int64_t tide_gguf_arr_int(const tide_gguf_arr *a, int64_t i);
double tide_gguf_arr_float(const tide_gguf_arr *a, int64_t i);
/* Element i of a STRING array: pointer into the file, not NUL-terminated. */
const char *tide_gguf_arr_str(const tide_gguf_arr *a, int64_t i, size_t *len);

/* Tensors. */
typedef struct {
  const char *name;   /* NUL-terminated, owned by the gguf handle */
  int dtype;          /* tide_dtype */
  int n_dims;         /* 1..4 */
  int64_t ne[4];      /* elements per dimension; ne[0] is contiguous; unused = 1 */
  uint64_t offset;    /* from the start of the file */
  size_t nbytes;
  const void *data;   /* into the mapping */
} tide_tensor_info;

int64_t tide_gguf_n_tensors(const tide_gguf *g);
int64_t tide_gguf_find_tensor(const tide_gguf *g, const char *name);
/* Fills *out for tensor i; TIDE_ERR_ARG if i is out of range. */
int tide_gguf_tensor(const tide_gguf *g, int64_t i, tide_tensor_info *out);

/* Writer: collects metadata and tensors, then writes one file. Setting an
** existing key replaces it. Tensor data is borrowed until write or free. */
typedef struct tide_gguf_writer tide_gguf_writer;

int tide_gguf_writer_new(tide_env *env, tide_gguf_writer **out);
void tide_gguf_writer_free(tide_gguf_writer *w);
int tide_gguf_writer_set_int(tide_gguf_writer *w, const char *key, int type,
                             int64_t v);   /* any integer type, or BOOL */
int tide_gguf_writer_set_float(tide_gguf_writer *w, const char *key, int type,
                               double v);  /* FLOAT32 or FLOAT64 */
int tide_gguf_writer_set_str(tide_gguf_writer *w, const char *key,
                             const char *s, size_t len);
/* Array of n numeric elements of elem type, raw little-endian (copied). */
int tide_gguf_writer_set_arr(tide_gguf_writer *w, const char *key, int type,
                             const void *data, int64_t n);
/* Array of n strings (copied); lens may be NULL for NUL-terminated strings. */
int tide_gguf_writer_set_arr_str(tide_gguf_writer *w, const char *key,
                                 const char *const *strs, const size_t *lens,
                                 int64_t n);
int tide_gguf_writer_add_tensor(tide_gguf_writer *w, const char *name,
                                int dtype, int n_dims, const int64_t *ne,
                                const void *data);
/* version is 2 or 3; alignment comes from general.alignment (default 32). */
int tide_gguf_writer_write(tide_gguf_writer *w, const char *path, int version);

/* ---------------------------------------------------------------- tokenizer */

typedef struct tide_tokenizer tide_tokenizer;

enum { /* token attributes (tokenizer.ggml.token_type) */
  TIDE_TOKEN_NORMAL = 1, TIDE_TOKEN_UNKNOWN = 2, TIDE_TOKEN_CONTROL = 3,
  TIDE_TOKEN_USER_DEFINED = 4, TIDE_TOKEN_UNUSED = 5, TIDE_TOKEN_BYTE = 6
};

/* Builds a tokenizer from the tokenizer.ggml.* metadata of g (model "llama"
** = SentencePiece-style, "gpt2" = byte-level BPE with tokenizer.ggml.pre).
** Keeps g alive. */
int tide_tokenizer_new(tide_env *env, tide_gguf *g, tide_tokenizer **out);
void tide_tokenizer_free(tide_tokenizer *tok);

int32_t tide_tokenizer_n_vocab(const tide_tokenizer *tok);
int32_t tide_tokenizer_bos(const tide_tokenizer *tok); /* -1 if none */
int32_t tide_tokenizer_eos(const tide_tokenizer *tok); /* -1 if none */
int tide_tokenizer_add_bos(const tide_tokenizer *tok); /* default for add_bos */
/* Nonzero for end-of-generation tokens (EOS, EOT, ...). */
int tide_tokenizer_is_eog(const tide_tokenizer *tok, int32_t id);
int tide_tokenizer_attr(const tide_tokenizer *tok, int32_t id);

/* Text -> ids. Writes at most cap ids and sets *n_out to the number the text
** needs; TIDE_ERR_FULL if that is more than cap (call again with more room).
** add_bos prepends BOS; parse_special matches special/control token texts. */
int tide_tokenize(const tide_tokenizer *tok, const char *text, size_t len,
                  int add_bos, int parse_special, int32_t *ids, int64_t cap,
                  int64_t *n_out);

/* The bytes a token stands for (byte tokens as their byte, SPM's U+2581 as a
** space, GPT-2's byte alphabet undone). Pointer owned by tok. */
const char *tide_token_piece(const tide_tokenizer *tok, int32_t id,
                             size_t *len);

/* ids -> text, as llama.cpp's detokenize(remove_special = false,
** unparse_special = false). Same sizing protocol as tide_tokenize. */
int tide_detokenize(const tide_tokenizer *tok, const int32_t *ids, int64_t n,
                    char *text, size_t cap, size_t *n_out);

/* Streaming detokenization: feed one id at a time, get only complete UTF-8
** characters; bytes of a character split across tokens wait in the state.
** Zero-initialise the state before the first call. */
typedef struct { unsigned char pending[8]; int n_pending; int n_tokens; } tide_detok;
/* Writes at most cap bytes (cap >= 64 always suffices for one token plus the
** pending bytes... plus long pieces: returns TIDE_ERR_FULL if not). */
int tide_detok_push(const tide_tokenizer *tok, tide_detok *st, int32_t id,
                    char *out, size_t cap, size_t *n_out);
/* Flushes whatever is pending (invalid UTF-8 as U+FFFD). */
int tide_detok_flush(const tide_tokenizer *tok, tide_detok *st, char *out,
                     size_t cap, size_t *n_out);

/* ---------------------------------------------------------------- model */

typedef struct tide_model tide_model;

typedef struct {
  int vocab_only;   /* load only the tokenizer (no weights, no arch needed) */
} tide_model_params;

tide_model_params tide_model_default_params(void);

typedef struct {
  const char *arch;       /* "llama", "qwen2", "gpt2" */
  const char *name;       /* general.name or "" */
  int32_t n_vocab;
  int32_t n_embd, n_layer, n_head, n_kv_head, head_dim, n_ff;
  int32_t n_ctx_train;
  double rope_base;
  double norm_eps;
  int file_type;          /* general.file_type or -1 */
  size_t weight_bytes;    /* bytes of weights read per token */
} tide_model_info;

/* Loads a GGUF model. Weights stay in the mapping when their dtype is used as
** stored. TIDE_ERR_UNSUPPORTED for architectures or dtypes tide lacks. */
int tide_model_load(tide_env *env, const char *path,
                    const tide_model_params *params, tide_model **out);
void tide_model_free(tide_model *m);
void tide_model_get_info(const tide_model *m, tide_model_info *out);
/* Owned by the model; valid while the model lives. */
const tide_tokenizer *tide_model_tokenizer(const tide_model *m);
const tide_gguf *tide_model_gguf(const tide_model *m);

/* ---------------------------------------------------------------- context */

/* A context holds the KV cache (fixed size), the sequences living in it and
** all scratch memory for forward passes. */
typedef struct tide_ctx tide_ctx;

typedef struct {
  int32_t n_ctx;     /* max positions of one sequence (0 = n_ctx_train) */
  int32_t n_cells;   /* KV positions in the whole cache (0 = n_ctx) */
  int32_t n_seq_max; /* max live sequences (default 64) */
  int32_t n_batch;   /* max rows per tide_decode call (default 512) */
  int kv_type;       /* TIDE_F16 (default, as llama.cpp) or TIDE_F32 */
  int32_t n_outputs; /* max rows of one tide_decode that want logits
                        (0 = n_batch). The logits buffer is n_outputs x
                        n_vocab floats: at n_batch 512 and a 150k
                        vocabulary that is 300 MB, so an engine that only
                        ever samples a few sequences at a time sets this
                        low. A decode asking for more is TIDE_ERR_ARG. */
} tide_ctx_params;

tide_ctx_params tide_ctx_default_params(void);

/* Keeps the model alive. Allocates all memory it will ever use. */
int tide_ctx_new(tide_model *m, const tide_ctx_params *params, tide_ctx **out);
void tide_ctx_free(tide_ctx *ctx);

/* Sequences: small integer ids, valid until freed. */
int tide_seq_new(tide_ctx *ctx, int32_t *seq);
/* The child shares the parent's KV rows (copy-on-write blocks): O(blocks). */
int tide_seq_fork(tide_ctx *ctx, int32_t parent, int32_t *child);
/* Keeps positions [0, pos); later rows are forgotten. */
int tide_seq_truncate(tide_ctx *ctx, int32_t seq, int32_t pos);
int tide_seq_free(tide_ctx *ctx, int32_t seq);
/* Positions stored for seq, or -1 if seq is not live. */
int32_t tide_seq_len(const tide_ctx *ctx, int32_t seq);
/* Cells free for new positions (whole blocks not in use). */
int32_t tide_ctx_free_cells(const tide_ctx *ctx);

/* One row of a batch: token at position pos of sequence seq. pos must be the
** next position of seq (its length, counting earlier rows of this batch). */
typedef struct {
  int32_t seq;
  int32_t pos;
  int32_t token;
  int32_t logits;  /* nonzero: compute this row's logits */
} tide_batch_row;

/* Runs the model over n rows (1..n_batch, at most n_outputs of them asking
** for logits) in one pass over the weights. On failure (bad row, cache
** full, cancelled) no sequence changes. */
int tide_decode(tide_ctx *ctx, const tide_batch_row *rows, int32_t n);

/* Logits (n_vocab floats) of the i-th row of the last decode that asked for
** logits, counting only such rows; NULL if i is out of range. Valid until the
** next decode. */
const float *tide_ctx_logits(const tide_ctx *ctx, int32_t i);
int32_t tide_ctx_n_logits(const tide_ctx *ctx);

/* Counters since the context was made: how much work decodes did. A row is
** one (sequence, position, token) run through the model, so prompt tokens
** processed = rows fed as prompts: forks that share a prefix add none. */
typedef struct {
  int64_t n_decodes;     /* successful tide_decode calls */
  int64_t n_rows;        /* rows processed by them */
  int64_t n_logit_rows;  /* rows whose logits were computed */
} tide_ctx_stats;

void tide_ctx_get_stats(const tide_ctx *ctx, tide_ctx_stats *out);

/* ---------------------------------------------------------------- constraints */

/* A constraint is a compiled matcher over bytes (a regex automaton or a
** grammar recognizer); it is immutable, reference counted and shared by every
** matcher made from it. A matcher is one position in it: mask says which
** tokens may come next, advance consumes one. Matchers are cheap to clone,
** so each forked sequence carries its own. */
typedef struct tide_constraint tide_constraint;
typedef struct tide_matcher tide_matcher;
/* Built once per tokenizer: a byte trie over every token's piece, laid out
** for a depth-first walk that skips rejected subtrees. It copies what it
** needs (pieces, end-of-generation flags), so the tokenizer or its model may
** be freed first; it keeps the env alive. */
typedef struct tide_vocab_index tide_vocab_index;

int tide_vocab_index_new(const tide_tokenizer *tok, tide_vocab_index **out);
void tide_vocab_index_free(tide_vocab_index *vi);

/* A regex in PCRE2 syntax, restricted to its regular subset (classes,
** Unicode properties, escapes, quantifiers incl. {m,n}, alternation, groups,
** anchors). The whole output must match (implicitly anchored at both ends).
** Backreferences, lookaround and the like fail with TIDE_ERR_UNSUPPORTED and
** a message naming the construct and its offset; syntax errors give
** TIDE_ERR_FORMAT with the byte offset PCRE2 would report ("(ab": 3, the
** end of the pattern, where the missing ')' was found). */
int tide_regex_compile(tide_env *env, const char *pattern, size_t len,
                       tide_constraint **out);

/* A GBNF grammar (llama.cpp's dialect); root names the start rule (NULL:
** "root"). Errors name the line and column. */
int tide_grammar_compile(tide_env *env, const char *src, size_t len,
                         const char *root, tide_constraint **out);

/* A JSON Schema (as JSON text). Keywords the converter cannot honour fail
** with TIDE_ERR_UNSUPPORTED and a message listing them. */
int tide_json_schema_compile(tide_env *env, const char *json, size_t len,
                             tide_constraint **out);

void tide_constraint_free(tide_constraint *c);

/* A matcher at the start of c for vi's vocabulary. Keeps c and vi alive. */
int tide_matcher_new(tide_constraint *c, const tide_vocab_index *vi,
                     tide_matcher **out);
void tide_matcher_free(tide_matcher *m);
int tide_matcher_clone(const tide_matcher *m, tide_matcher **out);

/* Writes the set of tokens that may come next as n_vocab bits (bit id%32 of
** word id/32; (n_vocab+31)/32 words). End-of-generation tokens are allowed
** exactly when the matcher accepts. Allocates nothing. */
void tide_matcher_mask(tide_matcher *m, uint32_t *bits);

/* Consumes a token. An illegal token is TIDE_ERR_ARG (message names it) and
** leaves the state unchanged. An end-of-generation token is legal when the
** matcher accepts and changes nothing. */
int tide_matcher_advance(tide_matcher *m, int32_t token);

/* Consumes raw bytes (all or nothing), e.g. a forced prefix. */
int tide_matcher_advance_bytes(tide_matcher *m, const char *s, size_t n);

int tide_matcher_accepting(const tide_matcher *m);
/* Nonzero when nothing more can follow (generation must end). */
int tide_matcher_finished(const tide_matcher *m);

/* logits[id] = -INFINITY for every id whose bit is clear. */
void tide_mask_apply(const uint32_t *bits, float *logits, int32_t n_vocab);

/* ---------------------------------------------------------------- sampling */

/* A sampler is an ordered chain of stages run in C over a logits buffer,
** ending in a pick (seeded categorical draw, or greedy). It owns its scratch
** (sized for n_vocab at creation) and its RNG; sampling allocates nothing. */
typedef struct tide_sampler tide_sampler;

enum { /* stage kinds */
  TIDE_SAMPLE_PENALTIES = 1, /* repeat (a), frequency (b), presence (c) over
                                the last n accepted tokens (n; -1 = all) */
  TIDE_SAMPLE_LOGIT_BIAS,    /* adds the bias table (tide_sampler_set_bias) */
  TIDE_SAMPLE_TEMPERATURE,   /* logits / a; a <= 0 means greedy */
  TIDE_SAMPLE_TOP_K,         /* keep the n best (n <= 0: off) */
  TIDE_SAMPLE_TOP_P,         /* keep the smallest set with mass >= a (min keep n) */
  TIDE_SAMPLE_MIN_P,         /* keep p >= a * p_max (min keep n) */
  TIDE_SAMPLE_TYPICAL        /* locally typical sampling, mass a (min keep n) */
};

typedef struct {
  int kind;
  float a, b, c;   /* parameters as listed per kind; unused ones ignored */
  int32_t n;
} tide_sampler_stage;

int tide_sampler_new(tide_env *env, int32_t n_vocab, uint64_t seed,
                     tide_sampler **out);
void tide_sampler_free(tide_sampler *s);
/* Appends a stage; TIDE_ERR_ARG for an unknown kind or a parameter out of
** range (e.g. top_p outside (0, 1]). */
int tide_sampler_push(tide_sampler *s, const tide_sampler_stage *stage);
/* Replaces the bias table used by TIDE_SAMPLE_LOGIT_BIAS (copied). */
int tide_sampler_set_bias(tide_sampler *s, const int32_t *ids,
                          const float *bias, int32_t n);
/* Records a token for the penalty history (call for prompt tokens too if
** they should be penalised, and for every sampled token). */
void tide_sampler_accept(tide_sampler *s, int32_t id);
/* Clears the history and reseeds the RNG. */
void tide_sampler_reset(tide_sampler *s, uint64_t seed);
/* A copy with the same stages, history and RNG state (for forks). */
int tide_sampler_clone(const tide_sampler *s, tide_sampler **out);

/* Runs the stages over logits (n_vocab floats, not modified) and picks a
** token: the argmax if the chain has a temperature stage with a <= 0,
** otherwise a seeded categorical draw from the softmax of what survived.
** Same seed and same calls give the same tokens. Does not call accept. */
int tide_sampler_sample(tide_sampler *s, const float *logits, int32_t *out);

/* Runs the stages in place: filtered-out entries become -INFINITY, kept ones
** are the (penalised, biased, tempered) logits. For custom pipelines. */
int tide_sampler_apply(tide_sampler *s, float *logits);

/* Helpers over a logits row (n floats). */
int32_t tide_argmax(const float *x, int32_t n); /* lowest id on ties */
/* log-softmax of x[id] (log-sum-exp in double). */
double tide_logprob(const float *x, int32_t n, int32_t id);
/* The k largest entries, descending (ties: lower id first); k <= n. */
void tide_topk(const float *x, int32_t n, int32_t k, int32_t *ids, float *vals);


/* ---------------------------------------------------------------- training */

/* A trainer owns a llama-architecture model in F32 with its gradients and
** AdamW moments, plus every activation buffer a step needs: all memory is
** allocated at creation, a step allocates nothing. Two modes:
**  - full: every weight trains (tide_trainer_new from hyper-parameters with
**    a seeded init, or tide_trainer_new_from_model copying a loaded model);
**  - frozen: the weights of a loaded model stay read-only and only extra
**    parameters train: an LM-Steer pair and/or a prefix
**    (tide_trainer_new_frozen). The trainer reads an F32 model's weights in
**    place (in its mapping); a quantized model is dequantized once into an
**    F32 copy the trainer owns.
** A step takes B sequences of T tokens; position t predicts token t+1, so a
** sequence gives T-1 targets and the loss is their mean cross-entropy.
** Progress is the caller's: steps return their loss, learning rate and
** gradient norm. See docs/training.md. */
typedef struct tide_trainer tide_trainer;

typedef struct {
  /* shape (tide_trainer_new only; the other constructors take the model's) */
  int32_t n_vocab, n_embd, n_layer, n_head, n_kv_head, n_ff;
  int32_t n_ctx;        /* max tokens per sequence (and llama.context_length) */
  float rope_base;      /* 10000 */
  float norm_eps;       /* RMSNorm epsilon, 1e-5 */
  int tied;             /* 1: the output projection is token_embd (default 1) */
  uint64_t seed;        /* initialisation: N(0, init_std), residual outputs
                           (attn_output, ffn_down) / sqrt(2 n_layer), norms 1 */
  float init_std;       /* 0.02 */
  /* batches */
  int32_t n_batch;      /* max sequences per micro-batch (default 8) */
  int32_t grad_accum;   /* micro-batches per optimizer step (default 1) */
  /* AdamW (decoupled weight decay, not on norm weights or prefixes) */
  float lr;             /* peak learning rate (default 1e-3) */
  float lr_min;         /* floor of the cosine decay (default lr / 10) */
  int64_t warmup_steps; /* linear warm-up from lr/warmup to lr (default 0) */
  int64_t total_steps;  /* cosine decay to lr_min over the steps after warm-up
                           (0: constant lr after warm-up) */
  float beta1, beta2;   /* 0.9, 0.95 */
  float adam_eps;       /* 1e-8 */
  float weight_decay;   /* 0.1 */
  float grad_clip;      /* clip the global gradient norm to this (0: off; 1.0) */
} tide_trainer_params;

tide_trainer_params tide_trainer_default_params(void);

/* The learning rate of update number step (0-based) under p's schedule. */
double tide_trainer_lr_at(const tide_trainer_params *p, int64_t step);

/* Extras of the frozen mode. */
typedef struct {
  int32_t steer_rank;   /* r > 0: train an LM-Steer pair P1, P2 (n_embd, r),
                           applied to the final hidden state c (after the
                           output norm) as c <- c + eps (c . P1) P2^T.
                           P1 starts N(0, init_std), P2 zero */
  float steer_eps;      /* eps used while training (default 1e-3) */
  int32_t n_prefix;     /* k > 0: train k embedding vectors prepended to every
                           sequence (positions 0..k-1; the tokens follow at
                           k..k+T-1; n_ctx counts only the tokens) */
  int32_t n_kv_prefix;  /* k > 0: prefix tuning: train k key and value rows per
                           layer, (k, n_kv_head*head_dim) each, that every
                           query attends to before the tokens. They sit at
                           positions 0..k-1 as KV-cache rows do (keys as
                           attended: no RoPE is applied to them); the tokens
                           (after any n_prefix embeddings) start at position
                           k. Saved as prefix.k.<il>, prefix.v.<il>;
                           tide_prefix_load + tide_seq_set_prefix replay them */
} tide_trainer_frozen_params;

tide_trainer_frozen_params tide_trainer_frozen_default_params(void);

/* Full training from scratch: a seeded init of p's shape. TIDE_ERR_ARG for a
** bad shape (n_embd not a multiple of n_head, n_head not a multiple of
** n_kv_head, odd head_dim, ...). Allocates everything. */
int tide_trainer_new(tide_env *env, const tide_trainer_params *p, tide_trainer **out);

/* Full training starting from a loaded llama model's weights (any dtype,
** copied to F32); the shape comes from the model, the rest from p. Keeps the
** model alive (its tokenizer metadata is the default for saving).
** TIDE_ERR_UNSUPPORTED for other architectures, biases, rope scaling. */
int tide_trainer_new_from_model(tide_model *m, const tide_trainer_params *p,
                                tide_trainer **out);

/* Frozen mode: only fp's extras train (at least one of them). Keeps m
** alive and never writes to its weights. */
int tide_trainer_new_frozen(tide_model *m, const tide_trainer_params *p,
                            const tide_trainer_frozen_params *fp, tide_trainer **out);

void tide_trainer_free(tide_trainer *tr);

/* What one step did. */
typedef struct {
  double loss;          /* mean cross-entropy over the step's targets (nats) */
  double lr;            /* learning rate used */
  double grad_norm;     /* global gradient norm before clipping */
  int clipped;          /* the gradient was scaled down */
  int64_t step;         /* updates done, this one included */
  int64_t n_tokens;     /* tokens processed (B * T * grad_accum) */
} tide_trainer_stats;

/* One optimizer step: tokens holds grad_accum micro-batches of B sequences
** of T tokens each ((grad_accum * B, T) ids, row-major); gradients are the
** mean over the micro-batches, clipped, then AdamW updates the trainable
** parameters. 1 <= B <= n_batch, 2 <= T <= n_ctx, every id < n_vocab
** (TIDE_ERR_ARG otherwise, nothing changed). stats may be NULL. Checks the
** cancel callback between micro-batches (TIDE_ERR_CANCELLED: no update).
** Allocates nothing. */
int tide_trainer_step(tide_trainer *tr, const int32_t *tokens, int32_t B, int32_t T,
                      tide_trainer_stats *stats);

/* Held-out evaluation: mean loss over the targets of B sequences of T tokens
** (any B >= 1; run n_batch sequences at a time). Changes no parameter. */
int tide_trainer_eval(tide_trainer *tr, const int32_t *tokens, int32_t B, int32_t T,
                      double *loss);

/* Updates done so far (the step a resumed run continues from). */
int64_t tide_trainer_steps_done(const tide_trainer *tr);

/* The trainable tensors, by index 0..n-1: name as saved, shape, and the live
** F32 data (read and write; e.g. to set or read a steer matrix). */
typedef struct {
  const char *name;     /* "blk.0.attn_q.weight", "steer.p1", ... */
  int n_dims;
  int64_t ne[2];        /* GGUF order: ne[0] is contiguous */
  float *data;          /* ne[0] * ne[1] floats, owned by the trainer */
} tide_trainer_tensor;

int tide_trainer_n_tensors(const tide_trainer *tr);
int tide_trainer_get_tensor(const tide_trainer *tr, int i, tide_trainer_tensor *out);

/* Tokenizer metadata given as arrays (written as tokenizer.ggml.*). */
typedef struct {
  const char *model;            /* "llama" (SentencePiece) or "gpt2" (BPE) */
  const char *pre;              /* tokenizer.ggml.pre or NULL */
  const char *const *tokens;    /* n_vocab texts (NUL-terminated) */
  const float *scores;          /* n_vocab or NULL */
  const int32_t *types;         /* n_vocab TIDE_TOKEN_* or NULL */
  const char *const *merges;    /* n_merges "a b" rules (gpt2) or NULL */
  int64_t n_merges;
  int32_t bos, eos;             /* -1: not written */
  int add_bos;                  /* -1: not written, else 0/1 */
} tide_trainer_vocab;

typedef struct {
  const char *name;             /* general.name (NULL: "tide") */
  const tide_gguf *vocab_gguf;  /* copy every tokenizer.* key of this file */
  const tide_trainer_vocab *vocab; /* or write these (if vocab_gguf is NULL) */
  int optimizer;                /* nonzero: add the optimizer state, making a
                                   checkpoint tide_trainer_resume reads */
  const char *data;             /* frozen mode: tide.extras.data, a free
                                   description of the training data (NULL:
                                   not written); the base model's name and
                                   tide_model_hash are always written */
} tide_trainer_save_params;

/* Writes the trainable parameters as GGUF. Full mode: a llama model file
** that tide_model_load loads (F32 weights, llama.* keys as llama.cpp writes
** them, tokenizer metadata from sp->vocab_gguf, sp->vocab, or the model the
** trainer was made from; TIDE_ERR_ARG if none). Frozen mode: the extras
** only ("steer.p1", "steer.p2", "prefix.embd" and steer.* keys). With
** sp->optimizer the same file also holds the AdamW moments and the step
** under tide.train.* names (docs/training.md). */
int tide_trainer_save(tide_trainer *tr, const char *path,
                      const tide_trainer_save_params *sp);

/* Sets a KV prefix (n_kv_prefix = n) to the key and value rows the frozen
** model computes for the n tokens at positions 0..n-1: the cache state of
** that prompt, a starting point that already means something (a random
** start disturbs every query). TIDE_ERR_STATE without a KV prefix,
** TIDE_ERR_ARG if n is not n_kv_prefix or exceeds n_ctx, or a token is out
** of range. */
int tide_trainer_init_kv_prefix(tide_trainer *tr, const int32_t *tokens, int32_t n);

/* Loads a checkpoint written with optimizer state by a trainer of the same
** shape and mode: parameters, moments and step. TIDE_ERR_FORMAT (message
** names the key or tensor) on a mismatch; the trainer is unchanged then. */
int tide_trainer_resume(tide_trainer *tr, const char *path);

/* ---------------------------------------------------------------- prefixes (prefix tuning) */

/* A prefix is k learned key and value rows per layer (prefix tuning, Li &
** Liang 2021), as a frozen trainer with n_kv_prefix saves them. Setting it
** on an empty sequence writes them into cache positions 0..k-1, so the
** tokens decoded next (at positions k, k+1, ...) attend to them exactly as
** in training; forks of the sequence share those rows. A prefix is
** immutable and independent of models and contexts (its rows are copied).
** See docs/steering.md, "Prefix tuning". */
typedef struct tide_prefix tide_prefix;

typedef struct {
  int32_t n_tokens;  /* k: positions the prefix occupies */
  int32_t n_layer;
  int32_t kv_dim;    /* n_kv_head * head_dim: floats of one K (or V) row */
  int32_t n_embd;    /* of the model it was trained on (0: not recorded) */
  int32_t n_vocab;   /* likewise */
} tide_prefix_info;

/* Reads the tensors prefix.k.<il>, prefix.v.<il> (f32 [kv_dim, k]) and the
** tide.extras.* keys of a trainer's extras file into memory (the file is
** closed again). TIDE_ERR_FORMAT names the key or tensor that is missing or
** wrong, e.g. for a file without a KV prefix. Allocates. */
int tide_prefix_load(tide_env *env, const char *path, tide_prefix **out);
void tide_prefix_free(tide_prefix *p);
void tide_prefix_get_info(const tide_prefix *p, tide_prefix_info *out);
/* The K (which = 0) or V (1) rows of layer il: (n_tokens, kv_dim) floats
** owned by p, or NULL when out of range. */
const float *tide_prefix_data(const tide_prefix *p, int32_t il, int which);

/* Writes p into positions 0..k-1 of seq (converted to the cache's type) and
** sets its length to k. seq must be live and empty (TIDE_ERR_STATE
** otherwise); the model must be llama or qwen2 (TIDE_ERR_UNSUPPORTED) with
** p's n_layer, kv_dim and n_embd (TIDE_ERR_ARG); TIDE_ERR_FULL if the cache
** has no room. On failure the sequence is unchanged. Allocates nothing. */
int tide_seq_set_prefix(tide_ctx *ctx, int32_t seq, const tide_prefix *p);

/* ---------------------------------------------------------------- tokenizer training */

/* A BPE trainer learns a byte-level BPE vocabulary (GPT-2's scheme) from
** text and writes it as tokenizer.ggml.* metadata (model "gpt2", pre
** "gpt-2") that tide_tokenizer_new loads like any GPT-2-style vocabulary.
**  - add_text pre-tokenizes with the "gpt-2" pre-tokenizer regex through
**    PCRE2, exactly as tide_tokenize splits text (runs of invalid UTF-8 are
**    words of their own), and counts the distinct words. Occurrences of the
**    special token texts are cut out first and never learned from.
**  - train starts from the 256 byte tokens and repeatedly merges the most
**    frequent adjacent pair of tokens inside words (ties: the pair with the
**    smaller left id, then the smaller right id), updating pair counts
**    incrementally, until the vocabulary (bytes + learned tokens + specials)
**    has vocab_size tokens or no pair occurs min_count times.
**  - Ids: 0..255 are the bytes in byte order (GPT-2's byte-to-unicode texts),
**    then the learned tokens in the order they were made, then the specials.
**    A merge whose text already is a token is kept as a merge rule but adds
**    no token.
** The result depends only on the multiset of texts added, not on their
** order or on how they were cut into calls. The trainer never prints; long
** work reports through the progress callback and honours the env's cancel
** callback. All memory comes from the env's allocator. */
typedef struct tide_bpe_trainer tide_bpe_trainer;

typedef struct {
  const char *const *special; /* n_special NUL-terminated texts of control
                                 tokens, in id order after the learned ones;
                                 NULL: the one token "<|endoftext|>" */
  int32_t n_special;
  int32_t bos, eos;           /* indices into special, -1: not written
                                 (default 0 and 0: <|endoftext|>, as GPT-2) */
  int64_t min_count;          /* a pair seen fewer times is never merged
                                 (default 2; at least 1) */
} tide_bpe_trainer_params;

tide_bpe_trainer_params tide_bpe_trainer_default_params(void);

/* Called during training with the tokens made so far and the target. */
typedef void (*tide_bpe_progress_fn)(void *ud, int32_t n_vocab, int32_t vocab_size);

/* Makes an empty trainer (p NULL: the defaults; the special texts are
** copied). Compiles the pre-tokenizer regex. TIDE_ERR_ARG for an empty or
** repeated special text or a bos/eos index out of range. Keeps env alive. */
int tide_bpe_trainer_new(tide_env *env, const tide_bpe_trainer_params *p,
                         tide_bpe_trainer **out);
void tide_bpe_trainer_free(tide_bpe_trainer *tr);

/* Pre-tokenizes len bytes of text (any bytes; need not be valid UTF-8 or
** NUL-terminated) and adds their words to the counts. Each call is one
** independent text, as one tide_tokenize call would see it: feed whole
** documents or lines, not arbitrary slices. Discards an earlier training
** result. On failure the counts may hold part of this text. */
int tide_bpe_trainer_add_text(tide_bpe_trainer *tr, const char *text, size_t len);

/* Learns merges from the counts until the vocabulary has vocab_size tokens
** (256 byte tokens + merges + specials; at least 256 + n_special, else
** TIDE_ERR_ARG) or no pair reaches min_count. Replaces an earlier result.
** progress may be NULL; it is called every few tokens and at the end.
** TIDE_ERR_CANCELLED if the env's cancel callback asks (no result kept). */
int tide_bpe_trainer_train(tide_bpe_trainer *tr, int32_t vocab_size,
                           tide_bpe_progress_fn progress, void *ud);

typedef struct {
  int64_t n_bytes;      /* bytes of text added */
  int64_t n_pretokens;  /* words the pre-tokenizer produced */
  int64_t n_words;      /* distinct words among them */
  int32_t n_vocab;      /* tokens of the trained vocabulary (0 before train) */
  int64_t n_merges;     /* merge rules learned (0 before train) */
} tide_bpe_trainer_stats;

void tide_bpe_trainer_get_stats(const tide_bpe_trainer *tr, tide_bpe_trainer_stats *out);

/* The trained vocabulary: token id's text as written to tokenizer.ggml.tokens
** (GPT-2's byte-to-unicode alphabet; specials verbatim) and merge rule i
** ("left right" in the same alphabet). NUL-terminated, owned by the trainer,
** valid until the next add_text, train or free; NULL when out of range or
** not trained. */
const char *tide_bpe_trainer_token(const tide_bpe_trainer *tr, int32_t id, size_t *len);
const char *tide_bpe_trainer_merge(const tide_bpe_trainer *tr, int64_t i, size_t *len);

/* Sets tokenizer.ggml.model ("gpt2"), .pre ("gpt-2"), .tokens, .token_type
** (normal, specials control), .merges and the bos/eos ids on w (replacing
** keys already there). TIDE_ERR_STATE before a successful train. The
** writer's status is returned on its failure. */
int tide_bpe_trainer_write(const tide_bpe_trainer *tr, tide_gguf_writer *w);

/* ---------------------------------------------------------------- steering and introspection */

/* LM-Steer ("Word Embeddings Are Steers for Language Models", ACL 2024): a
** steer is W = P1 P2^T with P1, P2 of shape (n_embd, rank). Transforming
** the output embeddings as e'_v = (I + eps W) e_v equals, for a final hidden
** state c (after the output norm), c <- c + eps (c . P1) P2^T: two skinny
** products per steer and token, no vocabulary-sized matrix. A steer is
** immutable and reference counted; contexts keep the steers they use alive.
** See docs/steering.md. */
typedef struct tide_steer tide_steer;

/* A steer from p1, p2: (n_embd, rank) floats each, row-major (element (i, j)
** at i*rank + j; the GGUF tensors "steer.p1"/"steer.p2" with ne = {rank,
** n_embd}), copied. eps0 is the eps it was trained with (0: unknown).
** TIDE_ERR_ARG for a bad size or a non-finite value. Keeps env alive. */
int tide_steer_new(tide_env *env, int32_t n_embd, int32_t rank, const float *p1,
                   const float *p2, float eps0, tide_steer **out);

/* Loads a steer file as tide_trainer_save writes it in frozen mode
** (general.architecture "tide-extras", tensors "steer.p1" and "steer.p2",
** key tide.extras.steer_eps). TIDE_ERR_FORMAT (message names the key or
** tensor) for anything else. */
int tide_steer_load(tide_env *env, const char *path, tide_steer **out);

/* Writes s in the same format (name: general.name, NULL: "steer"). */
int tide_steer_save(const tide_steer *s, const char *path, const char *name);

void tide_steer_free(tide_steer *s);

typedef struct {
  int32_t n_embd, rank;
  float eps0;
  const float *p1, *p2;   /* (n_embd, rank), owned by the steer */
} tide_steer_info;

void tide_steer_get_info(const tide_steer *s, tide_steer_info *out);

/* The k leading singular triplets of W = P1 P2^T = U diag(sigma) V^T,
** computed through the small problem (QR of P1 and P2, one-sided Jacobi SVD
** of the rank x rank R1 R2^T): sigma (k) descending, u and v (k, n_embd)
** unit rows; a pair's sign (u, v or -u, -v) is fixed by making v's largest
** component positive. The steer moves a hidden state c along v_i by
** eps sigma_i (u_i . c), so v_i read through the output embeddings names
** the tokens direction i promotes when eps (u_i . c) > 0 (and, at the
** negative end, suppresses). 1 <= k <= rank. Allocates O(n_embd rank)
** temporary memory; O(rank^3) time. */
int tide_steer_svd(const tide_steer *s, int32_t k, float *sigma, float *u, float *v);

enum {
  TIDE_STEER_OUTPUT = 0, /* c <- c + eps (c . P1) P2^T on the final hidden state
                            (the LM-Steer of the paper) */
  TIDE_STEER_INPUT = 1   /* e <- (I + eps W) e = e + eps (e . P2) P1^T on the
                            token embeddings: the same W on the input side, a
                            different control (it changes every layer's input
                            and the KV cache, not only the last projection) */
};

#define TIDE_STEER_MAX 16 /* entries of one active set */

typedef struct {
  tide_steer *steer;
  float eps;
  int where;             /* TIDE_STEER_OUTPUT or TIDE_STEER_INPUT */
} tide_steer_entry;

/* Sets the active steers of sequence seq, or with seq == -1 the context's
** default, which every sequence without a set of its own uses. The rows of
** a sequence are steered by the sum of its entries: c <- c + sum_i eps_i
** (c . P1_i) P2_i^T (every product from the unsteered c). n == 0 gives seq
** an empty set of its own (no steering even if the default has some).
** Replaces the previous set; forks copy their parent's. TIDE_ERR_ARG for a
** steer of another n_embd, a bad where, a non-finite eps, n > TIDE_STEER_MAX
** or a sequence that is not live. Sizes the decode scratch here (may
** allocate; TIDE_ERR_NOMEM leaves the old set); tide_decode allocates
** nothing. An entry with eps == 0 changes nothing, bit for bit. */
int tide_ctx_set_steers(tide_ctx *ctx, int32_t seq, const tide_steer_entry *e, int32_t n);

/* Makes seq follow the context default again (drops its own set). */
int tide_ctx_reset_steers(tide_ctx *ctx, int32_t seq);

/* The set seq uses (its own or the default): copies up to cap entries to e
** and returns how many it has; -1 if seq is neither -1 nor live. */
int32_t tide_ctx_get_steers(const tide_ctx *ctx, int32_t seq, tide_steer_entry *e,
                            int32_t cap);

/* Control vectors, as llama.cpp's llama_apply_adapter_cvec: dirs (n_layer,
** n_embd) floats, row il added to the residual stream after block il (0-based)
** for il_start <= il <= il_end, in every row of every sequence. llama.cpp
** never uses row 0 (its files have no direction.0); tide applies whatever
** the row holds. dirs NULL turns the control vector off. Copied; allocates
** here only. TIDE_ERR_ARG for n_layer/n_embd not the model's. */
int tide_ctx_set_cvec(tide_ctx *ctx, const float *dirs, int32_t n_layer, int32_t n_embd,
                      int32_t il_start, int32_t il_end);

/* Reads a llama.cpp control-vector GGUF (general.architecture
** "controlvector", F32 tensors "direction.N" of n_embd floats, N >= 1) and
** adds scale * direction.N to row N of dirs (n_layer, n_embd): several files
** sum, as llama.cpp's common_control_vector_load. TIDE_ERR_FORMAT for
** direction.0, a wrong size or dtype, N >= n_layer, or no direction at all.
** dirs is unchanged on failure. */
int tide_cvec_load(tide_env *env, const char *path, float scale, int32_t n_layer,
                   int32_t n_embd, float *dirs);

/* Writes dirs (n_layer, n_embd) as llama.cpp's cvector-generator does:
** general.architecture "controlvector", controlvector.model_hint (if
** model_hint is not NULL), controlvector.layer_count = n_layer - 1, and
** tensors direction.1 .. direction.(n_layer-1) from rows 1..n_layer-1. */
int tide_cvec_save(tide_env *env, const char *path, const float *dirs, int32_t n_layer,
                   int32_t n_embd, const char *model_hint);

/* Hidden-state capture. Layer numbers are 0..n_layer: 0 is the input
** embeddings as block 0 reads them (after an input steer; gpt2: with its
** learned positions added), l >= 1 the residual stream after block l-1
** (after its control vector); layer n_layer is what the final norm reads. Asks every
** following decode to keep every row's vector at the n given layers (n == 0
** turns capture off). Allocates (n, n_batch, n_embd) floats here; decodes
** allocate nothing. While layer n_layer is captured the last block runs over
** every row, not only the rows that want logits. */
int tide_ctx_capture(tide_ctx *ctx, const int32_t *layers, int32_t n);

/* The captured vector (n_embd floats, owned by ctx, valid until the next
** decode) of batch row `row` (0-based, all rows of the last decode) at
** layer; NULL if that layer is not captured or row is out of range. */
const float *tide_ctx_hidden(const tide_ctx *ctx, int32_t layer, int32_t row);

/* Projects n (1..n_batch) vectors h (n, n_embd) through the output matrix
** into out (n, n_vocab), after the model's final norm when norm is nonzero
** (the logit lens: at layer n_layer that gives the model's logits, without
** output steers). Uses the model's kernels and the context's scratch;
** allocates nothing. The last decode's logits stay valid. */
int tide_ctx_project(tide_ctx *ctx, const float *h, int32_t n, int norm, float *out);

/* The model's final norm of n vectors h (n, n_embd) into out (n, n_embd):
** the hidden state c that output steers and the output matrix read. */
int tide_ctx_final_norm(tide_ctx *ctx, const float *h, int32_t n, float *out);

/* Hidden-state injection (the write half of the hooks; SelfIE builds on it).
** Queues, for the next tide_decode only, a change of batch row `row`'s
** vector at layer (0..n_layer, numbered as for capture): REPLACE sets it
** to h, ADD adds h. Applied where that layer is read, before a capture of
** it (which then sees the injected vector), so at layer l < n_layer it
** changes block l's input, the K/V that block and the later ones store
** for the row, and everything downstream; at layer n_layer it changes
** what the final norm reads (the last block then keeps every row, as for
** capture). Injections at the same (layer, row) apply in queue order. h
** (n_embd floats) is copied; the queue grows here (may allocate), decodes
** allocate nothing. The next decode empties the queue, whether it succeeds
** or not; it fails with TIDE_ERR_ARG, computing nothing, when a queued row
** is >= its row count. TIDE_ERR_ARG here for a bad layer, mode, a negative
** row or row >= n_batch, a non-finite h, or more than TIDE_INJECT_MAX
** queued. */
enum { TIDE_INJECT_REPLACE = 0, TIDE_INJECT_ADD = 1 };
#define TIDE_INJECT_MAX 1024

int tide_ctx_inject(tide_ctx *ctx, int32_t layer, int32_t row, const float *h, int mode);

/* Drops every queued injection. */
void tide_ctx_clear_injections(tide_ctx *ctx);

/* ---------------------------------------------------------------- steer provenance and transfer */

/* XXH64 of len bytes (xxHash's 64-bit hash, bit for bit, seeded). */
uint64_t tide_xxh64(const void *data, size_t len, uint64_t seed);

/* The model's identity as steer files record it: XXH64 chained over every
** tensor of its GGUF file in file order (name, then dtype, n_dims and ne[4]
** as 40 little-endian bytes, then the tensor's bytes; each seeded with the
** hash so far, starting at 0). Metadata is not hashed (renaming a model
** keeps its hash; quantizing it changes it). Reads every weight byte (a few
** GB/s once the file is in the page cache); allocates nothing; computed on
** every call (not cached). */
int tide_model_hash(const tide_model *m, uint64_t *out);

/* Where a steer comes from, as steer files record it (tide.extras.base_name,
** .base_hash, .data): the base model's general.name, its tide_model_hash,
** a free description of the training data. */
typedef struct {
  const char *base_name;  /* NULL: not recorded */
  int has_base_hash;      /* 0: base_hash not recorded */
  uint64_t base_hash;
  const char *data;       /* NULL: not recorded */
} tide_steer_source;

/* The steer's source (strings owned by s, valid until the next set or free;
** all unset for a steer made by tide_steer_new or read from an older file). */
void tide_steer_get_source(const tide_steer *s, tide_steer_source *out);

/* Replaces the source record (strings copied; src NULL clears it). The
** arithmetic of the steer is unchanged, so this is allowed on a steer in
** use. tide_steer_save writes it; tide_steer_load reads it. Allocates. */
int tide_steer_set_source(tide_steer *s, const tide_steer_source *src);

/* Transfer of a steer from model a to model b (docs/steering.md,
** "Transferring a steer"). The shared tokens are those whose bytes
** (tide_token_piece) are equal, control/unknown/unused tokens skipped, the
** lowest id taken when a string repeats in one vocabulary. On their output
** embeddings (rows of the output matrix, token_embd when tied, dequantized)
** two ridge regressions are fit in double (Gram matrices through BLAS, the
** Cholesky factorization tide's own):
**   H (d_a, d_b) = argmin |E_a H - E_b|^2 + ra |H|^2   (e_b ~ H^T e_a)
**   K (d_b, d_a) = argmin |E_b K - E_a|^2 + rb |K|^2   (e_a ~ K^T e_b)
** with ra = lambda trace(E_a^T E_a) / d_a (rb likewise). The steered
** embedding (I + eps W) e_a maps to H^T (I + eps W) e_a, which is
** (I + eps W') e_b for W' = H^T W K^T, so P1' = H^T P1 and P2' = K P2
** (n_embd b, rank): still rank r. With method HTWH, W' = H^T W H (P2' =
** H^T P2): the same when H is orthogonal, off by the square of the scale
** when the embeddings' scales differ. eps0 is kept; the source is set to
** b (name, hash) and a data string naming a. */
enum { TIDE_STEER_TRANSFER_FIT2 = 0, TIDE_STEER_TRANSFER_HTWH = 1 };

typedef struct {
  double lambda;   /* relative ridge (default 1e-3); 0: none (may fail) */
  int method;      /* TIDE_STEER_TRANSFER_FIT2 (default) or _HTWH */
} tide_steer_transfer_params;

tide_steer_transfer_params tide_steer_transfer_default_params(void);

typedef struct {
  int32_t n_shared;      /* tokens matched */
  int32_t d_a, d_b;      /* n_embd of a and b */
  int underdetermined;   /* n_shared < max(d_a, d_b): only the ridge makes
                            the fits unique; expect a poor transfer */
  double ridge_a, ridge_b;   /* absolute ridges added to the diagonals */
  double residual_ab;    /* |E_a H - E_b|_F / |E_b|_F on the shared tokens */
  double residual_ba;    /* |E_b K - E_a|_F / |E_a|_F */
} tide_steer_transfer_info;

/* Writes the transferred steer to *out (new, reference 1, on a's env) and,
** when info is not NULL, the fit's numbers. p NULL: defaults. TIDE_ERR_ARG
** for a steer whose n_embd is not a's, a model without weights, lambda < 0
** or not finite, a bad method; TIDE_ERR_STATE for no shared tokens, a Gram
** matrix that is not positive definite (lambda 0 with too few tokens), or a
** non-finite result. Allocates O(d_a^2 + d_b^2 + d_a d_b) doubles; time
** O(n_shared (d_a + d_b)^2 + d^3) (seconds for d = 2048). */
int tide_steer_transfer(const tide_model *a, const tide_model *b, const tide_steer *w,
                        const tide_steer_transfer_params *p, tide_steer **out,
                        tide_steer_transfer_info *info);

/* ---------------------------------------------------------------- training (steer) */

/* Changes the eps a frozen trainer with a steer uses from the next step on
** (e.g. +eps0 on batches of style A, -eps0 on style B). TIDE_ERR_STATE
** without a steer; TIDE_ERR_ARG for a non-finite eps. */
int tide_trainer_set_steer_eps(tide_trainer *tr, float eps);

#ifdef __cplusplus
}
#endif
#endif
