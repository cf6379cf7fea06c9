/*
** tokenizer.h -- private layout of tide_tokenizer, shared by tokenizer.c
** (vocabulary, special tokens, SentencePiece merging, detokenization) and
** tokenizer_bpe.c (byte-level BPE with PCRE2 pre-tokenizers).
** Layer: core (internal).
*/
#ifndef TIDE_TOKENIZER_H
#define TIDE_TOKENIZER_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tidei.h"

enum { TIDEI_TOK_SPM = 1, TIDEI_TOK_BPE = 2 };

#define TIDEI_TOK_MAX_RE 4

/* Ids of special tokens, indices into tide_tokenizer.sp. */
enum {
  TIDEI_SP_BOS, TIDEI_SP_EOS, TIDEI_SP_EOT, TIDEI_SP_EOM, TIDEI_SP_UNK,
  TIDEI_SP_SEP, TIDEI_SP_PAD, TIDEI_SP_MASK, TIDEI_SP_FIM_PRE,
  TIDEI_SP_FIM_SUF, TIDEI_SP_FIM_MID, TIDEI_SP_FIM_PAD, TIDEI_SP_FIM_REP,
  TIDEI_SP_FIM_SEP, TIDEI_SP_N
};

/* One merge rule "left right" of tokenizer.ggml.merges; s points into the
** GGUF mapping (kept alive by the tokenizer). split is the offset of the
** separating space (llama.cpp: the first space at offset >= 1). */
typedef struct {
  const char *s;
  uint32_t len;
  uint32_t split;
} tidei_merge;

struct tide_tokenizer {
  tide_env *env;
  tide_gguf *gguf;
  int kind;                 /* TIDEI_TOK_SPM or TIDEI_TOK_BPE */
  int32_t n_vocab;

  char *text;               /* token texts, each followed by a NUL */
  size_t text_size;
  uint32_t *text_off;       /* (n_vocab + 1) offsets into text */
  char *piece;              /* decoded pieces, each followed by a NUL */
  size_t piece_size;
  uint32_t *piece_off;      /* (n_vocab + 1) offsets into piece */
  float *score;             /* (n_vocab) SentencePiece scores (0 if absent) */
  uint8_t *attr;            /* (n_vocab) TIDE_TOKEN_* (0 = undefined) */
  uint8_t *eog;             /* (n_vocab) nonzero: ends generation */

  int32_t *vhash;           /* (vhash_mask + 1) open addressing, -1 = empty */
  uint32_t vhash_mask;

  int32_t *special;         /* (n_special) control/user/unknown ids, longest text first */
  int32_t n_special;

  int32_t sp[TIDEI_SP_N];   /* special ids, -1 if none */
  int add_bos;              /* default for tide_tokenize's add_bos */
  int add_space_prefix;     /* SPM: prefix raw text with a space */
  int ignore_merges;        /* BPE: a word that is a token is taken whole */

  int32_t byte_tok[256];    /* SPM: byte -> <0xXX> token (or fallback), -1 */

  tidei_merge *merges;      /* (n_merges) rank = index */
  int64_t n_merges;
  int32_t *mhash;           /* (mhash_mask + 1) merge indices, -1 = empty */
  uint32_t mhash_mask;

  pcre2_general_context *re_gctx; /* routes PCRE2 memory to the env */
  pcre2_code *re[TIDEI_TOK_MAX_RE];
  int n_re;
};

/* Growable scratch arrays of one tide_tokenize call (freed at its end). */
typedef struct {
  int32_t prev, next;       /* neighbours in the symbol chain, -1 at ends */
  uint32_t off, n;          /* bytes [off, off + n) of the work buffer; n == 0: merged away */
} tidei_sym;

typedef struct {
  int32_t left, right;      /* symbol indices */
  uint32_t size;            /* bytes of left + right when pushed */
  double key;               /* higher pops first: SPM score, BPE -rank */
} tidei_bigram;

typedef struct {
  size_t off, len;          /* a byte range of the input */
  int32_t id;               /* >= 0: a special token; -1: raw text */
} tidei_frag;

typedef struct {
  tide_env *env;
  char *buf; size_t buf_cap;               /* bytes */
  tidei_sym *sym; size_t sym_cap;          /* elements */
  tidei_bigram *heap; size_t heap_cap; size_t heap_n;
  tidei_frag *fa; size_t fa_cap; size_t fa_n;   /* fragments (two buffers) */
  tidei_frag *fb; size_t fb_cap; size_t fb_n;
  tidei_frag *wa; size_t wa_cap; size_t wa_n;   /* BPE words (two buffers) */
  tidei_frag *wb; size_t wb_cap; size_t wb_n;
  pcre2_match_data *md[TIDEI_TOK_MAX_RE];
  int32_t *ids; int64_t cap; int64_t n;    /* the caller's output */
} tidei_tok_run;

/* tokenizer.c */
/* The pre-tokenizer regex of tokenizer.ggml.pre "gpt-2" (tokenizer_bpe.c),
** which the BPE trainer (bpe_train.c) splits with too. */
extern const char tidei_re_gpt2[];

int32_t tidei_tok_find(const tide_tokenizer *t, const char *s, size_t n);
int tidei_tok_grow(tide_env *env, void **p, size_t *cap, size_t need,
                   size_t elem);
void tidei_tok_emit(tidei_tok_run *r, int32_t id);
void tidei_tok_heap_push(tidei_tok_run *r, tidei_bigram b);
tidei_bigram tidei_tok_heap_pop(tidei_tok_run *r);
int tidei_tok_symbols(tidei_tok_run *r, size_t n, int32_t *n_sym);
size_t tidei_utf8_len(unsigned char lead);
uint64_t tidei_tok_hash(const char *s, size_t n, uint64_t h);
#define TIDEI_HASH_SEED 1469598103934665603ull

/* tokenizer_bpe.c */
int tidei_bpe_init(tide_tokenizer *t, const char *pre, size_t pre_len);
int tidei_bpe_load_merges(tide_tokenizer *t);
void tidei_bpe_free(tide_tokenizer *t);
int tidei_bpe_piece(const tide_tokenizer *t, const char *s, size_t n,
                    char *out, size_t *n_out);
int tidei_bpe_tokenize(const tide_tokenizer *t, tidei_tok_run *r,
                       const char *text, size_t len);
void tidei_bpe_run_free(const tide_tokenizer *t, tidei_tok_run *r);

#endif
