/*
** tokenizer.c -- tokenizers built from GGUF metadata: the vocabulary, special
** tokens, SentencePiece-style merging (tokenizer.ggml.model = "llama"),
** detokenization and streaming detokenization. Byte-level BPE ("gpt2") lives
** in tokenizer_bpe.c.
** Layer: core.
**
** Behaviour follows llama.cpp's llama-vocab.cpp so that ids match it on real
** vocabularies: the same defaults for special tokens and add_bos, the same
** splitting on special-token texts (tokenizer_st_partition), the same bigram
** merge order. Differences, on purpose:
**  - bad metadata (mistyped keys, arrays of the wrong length, special ids out
**    of range) is an error, never a warning;
**  - tide_detokenize does not apply llama.cpp's clean_spaces pass (" ?" ->
**    "?"), so byte-level BPE round-trips exactly and streaming output equals
**    whole output;
**  - the streaming detokenizer turns invalid UTF-8 into U+FFFD.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES "tokenizer.ggml.token_type"
#define KEY_ADD_BOS "tokenizer.ggml.add_bos_token"
#define KEY_ADD_PREFIX "tokenizer.ggml.add_space_prefix"

/* Longest input tide_tokenize accepts (offsets of the work buffer are
** 32-bit and an SPM text may triple when spaces become U+2581). */
#define MAX_TEXT ((size_t)1 << 29)

/* ---------------------------------------------------------------- helpers */

uint64_t tidei_tok_hash(const char *s, size_t n, uint64_t h) {
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h;
}

size_t tidei_utf8_len(unsigned char lead) {
  /* as llama.cpp's unicode_len_utf8: by the high nibble, no validation */
  static const unsigned char len[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                        1, 1, 1, 1, 2, 2, 3, 4};
  return len[lead >> 4];
}

int tidei_tok_grow(tide_env *env, void **p, size_t *cap, size_t need,
                   size_t elem) {
  if (need <= *cap) return TIDE_OK;
  size_t ncap = *cap ? *cap : 64;
  while (ncap < need) ncap *= 2;
  if (ncap > SIZE_MAX / elem)
    return tidei_error(env, TIDE_ERR_NOMEM, "out of memory (%zu x %zu bytes)",
                       ncap, elem);
  void *q = tidei_realloc(env, *p, *cap * elem, ncap * elem);
  if (!q) return TIDE_ERR_NOMEM;
  *p = q;
  *cap = ncap;
  return TIDE_OK;
}

static const char *tok_text(const tide_tokenizer *t, int32_t id, size_t *n) {
  *n = t->text_off[id + 1] - t->text_off[id] - 1;
  return t->text + t->text_off[id];
}

int32_t tidei_tok_find(const tide_tokenizer *t, const char *s, size_t n) {
  uint32_t i = (uint32_t)tidei_tok_hash(s, n, TIDEI_HASH_SEED) & t->vhash_mask;
  for (;; i = (i + 1) & t->vhash_mask) {
    int32_t id = t->vhash[i];
    if (id < 0) return -1;
    size_t m;
    const char *x = tok_text(t, id, &m);
    if (m == n && memcmp(x, s, n) == 0) return id;
  }
}

void tidei_tok_emit(tidei_tok_run *r, int32_t id) {
  if (r->n < r->cap) r->ids[r->n] = id;
  r->n++;
}

/* Binary max-heap of bigrams: higher key first, then the leftmost (the
** order of llama.cpp's priority queues). Capacity is ensured by callers. */
static int bigram_before(const tidei_bigram *a, const tidei_bigram *b) {
  return a->key > b->key || (a->key == b->key && a->left < b->left);
}

void tidei_tok_heap_push(tidei_tok_run *r, tidei_bigram b) {
  tidei_bigram *h = r->heap;
  size_t i = r->heap_n++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!bigram_before(&b, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = b;
}

/* Splits r->buf[0, n) into a linked list of UTF-8 characters (r->sym) and
** empties the merge heap, sized for the merges to come: the start of both
** the SentencePiece and the BPE merge loops. */
int tidei_tok_symbols(tidei_tok_run *r, size_t n, int32_t *n_sym) {
  int st;
  if ((st = tidei_tok_grow(r->env, (void **)&r->sym, &r->sym_cap, n, sizeof *r->sym)) ||
      (st = tidei_tok_grow(r->env, (void **)&r->heap, &r->heap_cap, 3 * n + 1,
                           sizeof *r->heap)))
    return st;
  int32_t ns = 0;
  for (size_t off = 0; off < n; ns++) {
    size_t cl = tidei_utf8_len((unsigned char)r->buf[off]);
    if (cl > n - off) cl = n - off;
    r->sym[ns] = (tidei_sym){ns - 1, off + cl == n ? -1 : ns + 1, (uint32_t)off, (uint32_t)cl};
    off += cl;
  }
  r->heap_n = 0;
  *n_sym = ns;
  return TIDE_OK;
}

tidei_bigram tidei_tok_heap_pop(tidei_tok_run *r) {
  tidei_bigram *h = r->heap;
  tidei_bigram top = h[0], last = h[--r->heap_n];
  size_t n = r->heap_n, i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && bigram_before(&h[c + 1], &h[c])) c++;
    if (!bigram_before(&h[c], &last)) break;
    h[i] = h[c];
    i = c;
  }
  if (n) h[i] = last;
  return top;
}

/* ---------------------------------------------------------------- metadata */

static int is_int_type(int type) {
  return type == TIDE_GGUF_UINT8 || type == TIDE_GGUF_INT8 ||
         type == TIDE_GGUF_UINT16 || type == TIDE_GGUF_INT16 ||
         type == TIDE_GGUF_UINT32 || type == TIDE_GGUF_INT32 ||
         type == TIDE_GGUF_UINT64 || type == TIDE_GGUF_INT64;
}

/* An optional array of n_vocab numbers; *found = 0 if the key is absent. */
static int get_num_arr(tide_tokenizer *t, const char *key, int ints_only,
                       tide_gguf_arr *a, int *found) {
  tide_env *env = t->env;
  *found = 0;
  int64_t k = tide_gguf_find(t->gguf, key);
  if (k < 0) return TIDE_OK;
  if (tide_gguf_kv_type(t->gguf, k) != TIDE_GGUF_ARRAY ||
      tide_gguf_get_arr(t->gguf, key, a) != TIDE_OK ||
      !(is_int_type(a->type) || (!ints_only && (a->type == TIDE_GGUF_FLOAT32 ||
                                                a->type == TIDE_GGUF_FLOAT64))))
    return tidei_error(env, TIDE_ERR_FORMAT, "key '%s': expected an array of %s",
                       key, ints_only ? "integers" : "numbers");
  if (a->n != t->n_vocab)
    return tidei_error(env, TIDE_ERR_FORMAT,
                       "key '%s': %lld elements for %d tokens", key,
                       (long long)a->n, (int)t->n_vocab);
  *found = 1;
  return TIDE_OK;
}

/* An optional bool; leaves *v alone if the key is absent. */
static int get_opt_bool(tide_tokenizer *t, const char *key, int *v) {
  int64_t k = tide_gguf_find(t->gguf, key);
  if (k < 0) return TIDE_OK;
  if (tide_gguf_kv_type(t->gguf, k) != TIDE_GGUF_BOOL ||
      tide_gguf_get_bool(t->gguf, key, v) != TIDE_OK)
    return tidei_error(t->env, TIDE_ERR_FORMAT, "key '%s': expected a bool", key);
  *v = *v != 0;
  return TIDE_OK;
}

/* The token texts: one blob, empty texts renamed "[EMPTY_i]" as llama.cpp. */
static int load_texts(tide_tokenizer *t, const tide_gguf_arr *a) {
  size_t total = 0;
  for (int32_t i = 0; i < t->n_vocab; i++) {
    size_t n;
    tide_gguf_arr_str(a, i, &n);
    total += (n ? n : 20) + 1;
    if (total > UINT32_MAX - 64)
      return tidei_error(t->env, TIDE_ERR_FORMAT,
                         "key '%s': token texts exceed 4 GiB", KEY_TOKENS);
  }
  t->text_off = tidei_alloc(t->env, ((size_t)t->n_vocab + 1) * sizeof(uint32_t));
  if (!t->text_off) return TIDE_ERR_NOMEM;
  t->text = tidei_alloc(t->env, total);
  if (!t->text) return TIDE_ERR_NOMEM;
  t->text_size = total;
  size_t off = 0;
  for (int32_t i = 0; i < t->n_vocab; i++) {
    size_t n;
    const char *s = tide_gguf_arr_str(a, i, &n);
    t->text_off[i] = (uint32_t)off;
    if (n) memcpy(t->text + off, s, n);
    else n = (size_t)snprintf(t->text + off, 21, "[EMPTY_%d]", (int)i);
    off += n;
    t->text[off++] = 0;
  }
  t->text_off[t->n_vocab] = (uint32_t)off;
  return TIDE_OK;
}

static int build_vocab_hash(tide_tokenizer *t) {
  size_t cap = 16;
  while (cap < 2 * (size_t)t->n_vocab) cap *= 2;
  t->vhash = tidei_alloc(t->env, cap * sizeof(int32_t));
  if (!t->vhash) return TIDE_ERR_NOMEM;
  t->vhash_mask = (uint32_t)(cap - 1);
  memset(t->vhash, 0xff, cap * sizeof(int32_t));
  for (int32_t id = 0; id < t->n_vocab; id++) {
    size_t n;
    const char *s = tok_text(t, id, &n);
    uint32_t i = (uint32_t)tidei_tok_hash(s, n, TIDEI_HASH_SEED) & t->vhash_mask;
    for (;; i = (i + 1) & t->vhash_mask) {
      int32_t o = t->vhash[i];
      if (o < 0) break;
      size_t m;
      const char *x = tok_text(t, o, &m);
      if (m == n && memcmp(x, s, n) == 0)
        return tidei_error(t->env, TIDE_ERR_FORMAT,
                           "key '%s': duplicate token '%.*s' (ids %d and %d)",
                           KEY_TOKENS, (int)(n > 64 ? 64 : n), s, (int)o, (int)id);
    }
    t->vhash[i] = id;
  }
  return TIDE_OK;
}

static int load_scores_types(tide_tokenizer *t) {
  tide_gguf_arr a;
  int found, st;
  t->score = tidei_calloc(t->env, (size_t)t->n_vocab, sizeof(float));
  t->attr = tidei_alloc(t->env, (size_t)t->n_vocab);
  t->eog = tidei_calloc(t->env, (size_t)t->n_vocab, 1);
  if (!t->score || !t->attr || !t->eog) return TIDE_ERR_NOMEM;
  if ((st = get_num_arr(t, KEY_SCORES, 0, &a, &found))) return st;
  for (int32_t i = 0; found && i < t->n_vocab; i++)
    t->score[i] = is_int_type(a.type) ? (float)tide_gguf_arr_int(&a, i)
                                      : (float)tide_gguf_arr_float(&a, i);
  if ((st = get_num_arr(t, KEY_TYPES, 1, &a, &found))) return st;
  for (int32_t i = 0; i < t->n_vocab; i++) {
    int64_t v = found ? tide_gguf_arr_int(&a, i) : TIDE_TOKEN_NORMAL;
    t->attr[i] = (uint8_t)(v >= TIDE_TOKEN_NORMAL && v <= TIDE_TOKEN_BYTE ? v : 0);
  }
  return TIDE_OK;
}

/* ---------------------------------------------------------------- specials */

static const struct {
  const char *key;
  int detect;   /* found by text when the key is absent (llama.cpp's lists) */
  const char *texts[12];
} sp_info[TIDEI_SP_N] = {
  [TIDEI_SP_BOS] = {"tokenizer.ggml.bos_token_id", 0, {0}},
  [TIDEI_SP_EOS] = {"tokenizer.ggml.eos_token_id", 0, {0}},
  [TIDEI_SP_EOT] = {"tokenizer.ggml.eot_token_id", 1,
                    {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                     "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
                     "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81"
                     "sentence\xef\xbd\x9c>", "<end_of_utterance>", 0}},
  [TIDEI_SP_EOM] = {"tokenizer.ggml.eom_token_id", 1, {"<|eom_id|>", 0}},
  [TIDEI_SP_UNK] = {"tokenizer.ggml.unknown_token_id", 0, {0}},
  [TIDEI_SP_SEP] = {"tokenizer.ggml.seperator_token_id", 0, {0}},
  [TIDEI_SP_PAD] = {"tokenizer.ggml.padding_token_id", 0, {0}},
  [TIDEI_SP_MASK] = {"tokenizer.ggml.mask_token_id", 0, {0}},
  [TIDEI_SP_FIM_PRE] = {"tokenizer.ggml.fim_pre_token_id", 1,
                        {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                         "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", 0}},
  [TIDEI_SP_FIM_SUF] = {"tokenizer.ggml.fim_suf_token_id", 1,
                        {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                         "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", 0}},
  [TIDEI_SP_FIM_MID] = {"tokenizer.ggml.fim_mid_token_id", 1,
                        {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                         "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", 0}},
  [TIDEI_SP_FIM_PAD] = {"tokenizer.ggml.fim_pad_token_id", 1,
                        {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                         "[PAD]", 0}},
  [TIDEI_SP_FIM_REP] = {"tokenizer.ggml.fim_rep_token_id", 1,
                        {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                         "<REPO>", "<reponame>", 0}},
  [TIDEI_SP_FIM_SEP] = {"tokenizer.ggml.fim_sep_token_id", 1,
                        {"<|file_sep|>", 0}},
};

/* Texts that end generation (llama.cpp's list, marked control as there). */
static const char *const eog_texts[] = {
  "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
  "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
  "<end_of_utterance>", "<eos>", "</s>", 0
};

static void mark_control(tide_tokenizer *t, int32_t id) {
  if (t->attr[id] != TIDE_TOKEN_CONTROL && t->attr[id] != TIDE_TOKEN_UNUSED)
    t->attr[id] = TIDE_TOKEN_CONTROL;
}

static int32_t find_cstr(const tide_tokenizer *t, const char *s) {
  return tidei_tok_find(t, s, strlen(s));
}

static int load_special_ids(tide_tokenizer *t) {
  for (int k = 0; k < TIDEI_SP_N; k++) {
    const char *key = sp_info[k].key;
    if (t->sp[k] >= t->n_vocab) t->sp[k] = -1; /* default out of range */
    int64_t i = tide_gguf_find(t->gguf, key), v;
    if (i < 0) continue;
    if (!is_int_type(tide_gguf_kv_type(t->gguf, i)) ||
        tide_gguf_get_int(t->gguf, key, &v) != TIDE_OK)
      return tidei_error(t->env, TIDE_ERR_FORMAT, "key '%s': expected an integer",
                         key);
    if (v < 0 || v >= t->n_vocab)
      return tidei_error(t->env, TIDE_ERR_FORMAT,
                         "key '%s': token id %lld out of range (%d tokens)", key,
                         (long long)v, (int)t->n_vocab);
    t->sp[k] = (int32_t)v;
  }
  for (int k = 0; k < TIDEI_SP_N; k++) {
    for (int j = 0; sp_info[k].detect && t->sp[k] < 0 && sp_info[k].texts[j]; j++) {
      int32_t id = find_cstr(t, sp_info[k].texts[j]);
      if (id >= 0) {
        t->sp[k] = id;
        mark_control(t, id);
      }
    }
  }
  static const int eog_sp[] = {TIDEI_SP_EOS, TIDEI_SP_EOT, TIDEI_SP_EOM,
                               TIDEI_SP_FIM_PAD, TIDEI_SP_FIM_REP,
                               TIDEI_SP_FIM_SEP};
  for (size_t k = 0; k < sizeof eog_sp / sizeof eog_sp[0]; k++)
    if (t->sp[eog_sp[k]] >= 0) t->eog[t->sp[eog_sp[k]]] = 1;
  for (int j = 0; eog_texts[j]; j++) {
    int32_t id = find_cstr(t, eog_texts[j]);
    if (id >= 0) {
      t->eog[id] = 1;
      mark_control(t, id);
    }
  }
  int st = get_opt_bool(t, KEY_ADD_BOS, &t->add_bos);
  if (st) return st;
  if (t->add_bos && t->sp[TIDEI_SP_BOS] < 0)
    return tidei_error(t->env, TIDE_ERR_FORMAT, "key '%s' is true but '%s' is not set",
                       KEY_ADD_BOS, sp_info[TIDEI_SP_BOS].key);
  return TIDE_OK;
}

typedef struct { uint32_t len; int32_t id; } len_id;

static int cmp_len_id(const void *a, const void *b) {
  const len_id *x = a, *y = b;
  if (x->len != y->len) return x->len > y->len ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* Control, user-defined and unknown tokens, longest text first: the order in
** which tide_tokenize splits text on them. */
static int build_special_list(tide_tokenizer *t) {
  int32_t n = 0;
  for (int32_t i = 0; i < t->n_vocab; i++)
    n += t->attr[i] == TIDE_TOKEN_CONTROL || t->attr[i] == TIDE_TOKEN_USER_DEFINED ||
         t->attr[i] == TIDE_TOKEN_UNKNOWN;
  if (n == 0) return TIDE_OK;
  len_id *tmp = tidei_alloc(t->env, (size_t)n * sizeof *tmp);
  if (!tmp) return TIDE_ERR_NOMEM;
  t->special = tidei_alloc(t->env, (size_t)n * sizeof(int32_t));
  if (!t->special) {
    tidei_free(t->env, tmp, (size_t)n * sizeof *tmp);
    return TIDE_ERR_NOMEM;
  }
  t->n_special = n;
  n = 0;
  for (int32_t i = 0; i < t->n_vocab; i++) {
    int a = t->attr[i];
    if (a == TIDE_TOKEN_CONTROL || a == TIDE_TOKEN_USER_DEFINED || a == TIDE_TOKEN_UNKNOWN) {
      tmp[n].len = t->text_off[i + 1] - t->text_off[i] - 1;
      tmp[n++].id = i;
    }
  }
  qsort(tmp, (size_t)n, sizeof *tmp, cmp_len_id);
  for (int32_t i = 0; i < n; i++) t->special[i] = tmp[i].id;
  tidei_free(t->env, tmp, (size_t)n * sizeof *tmp);
  return TIDE_OK;
}

/* ---------------------------------------------------------------- pieces */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* "<0xXX>" -> XX, or -1. */
static int parse_byte_token(const char *s, size_t n) {
  if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
  int hi = hexval(s[3]), lo = hexval(s[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Piece of one token into out (room for the text's length), as llama.cpp's
** token_to_piece(special = true). */
static int make_piece(const tide_tokenizer *t, int32_t id, char *out, size_t *n_out) {
  size_t n;
  const char *s = tok_text(t, id, &n);
  *n_out = 0;
  switch (t->attr[id]) {
  case TIDE_TOKEN_CONTROL: case TIDE_TOKEN_UNKNOWN: case TIDE_TOKEN_USER_DEFINED:
    memcpy(out, s, n);
    *n_out = n;
    return TIDE_OK;
  case TIDE_TOKEN_BYTE: {
    int b = parse_byte_token(s, n);
    if (b < 0)
      return tidei_error(t->env, TIDE_ERR_FORMAT,
                         "key '%s': byte token %d is '%.*s', not <0xXX>", KEY_TOKENS,
                         (int)id, (int)(n > 32 ? 32 : n), s);
    out[0] = (char)b;
    *n_out = 1;
    return TIDE_OK;
  }
  case TIDE_TOKEN_NORMAL:
    if (t->kind == TIDEI_TOK_BPE) return tidei_bpe_piece(t, s, n, out, n_out);
    for (size_t i = 0; i < n; i++) { /* U+2581 -> ' ' */
      if (i + 2 < n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
        out[(*n_out)++] = ' ';
        i += 2;
      } else {
        out[(*n_out)++] = s[i];
      }
    }
    return TIDE_OK;
  default: /* unused and undefined tokens stand for nothing */
    return TIDE_OK;
  }
}

static int build_pieces(tide_tokenizer *t) {
  /* a piece is never longer than its text */
  t->piece_off = tidei_alloc(t->env, ((size_t)t->n_vocab + 1) * sizeof(uint32_t));
  if (!t->piece_off) return TIDE_ERR_NOMEM;
  t->piece = tidei_alloc(t->env, t->text_size);
  if (!t->piece) return TIDE_ERR_NOMEM;
  t->piece_size = t->text_size;
  size_t off = 0;
  for (int32_t i = 0; i < t->n_vocab; i++) {
    size_t n;
    int st = make_piece(t, i, t->piece + off, &n);
    if (st) return st;
    t->piece_off[i] = (uint32_t)off;
    off += n;
    t->piece[off++] = 0;
  }
  t->piece_off[t->n_vocab] = (uint32_t)off;
  return TIDE_OK;
}

static void build_byte_tokens(tide_tokenizer *t) {
  for (int b = 0; b < 256; b++) {
    char buf[8];
    snprintf(buf, sizeof buf, "<0x%02X>", b);
    int32_t id = find_cstr(t, buf);
    if (id < 0) {
      buf[0] = (char)b;
      id = tidei_tok_find(t, buf, 1);
    }
    t->byte_tok[b] = id >= 0 ? id : t->sp[TIDEI_SP_UNK];
  }
}

/* ---------------------------------------------------------------- new/free */

static int read_model(tide_tokenizer *t, const char **pre, size_t *pre_len) {
  tide_env *env = t->env;
  const char *s;
  size_t n;
  int64_t k = tide_gguf_find(t->gguf, KEY_MODEL);
  if (k < 0) return tidei_error(env, TIDE_ERR_FORMAT, "key '%s' is missing", KEY_MODEL);
  if (tide_gguf_kv_type(t->gguf, k) != TIDE_GGUF_STRING ||
      tide_gguf_get_str(t->gguf, KEY_MODEL, &s, &n) != TIDE_OK)
    return tidei_error(env, TIDE_ERR_FORMAT, "key '%s': expected a string", KEY_MODEL);
  for (int i = 0; i < TIDEI_SP_N; i++) t->sp[i] = -1;
  if (n == 5 && memcmp(s, "llama", 5) == 0) {
    t->kind = TIDEI_TOK_SPM;
    t->sp[TIDEI_SP_BOS] = 1;
    t->sp[TIDEI_SP_EOS] = 2;
    t->sp[TIDEI_SP_UNK] = 0;
    t->add_bos = 1;
    t->add_space_prefix = 1;
  } else if (n == 4 && memcmp(s, "gpt2", 4) == 0) {
    t->kind = TIDEI_TOK_BPE;
    t->sp[TIDEI_SP_BOS] = 11; /* llama.cpp's defaults, dropped if out of range */
    t->sp[TIDEI_SP_EOS] = 11;
  } else {
    return tidei_error(env, TIDE_ERR_UNSUPPORTED, "tokenizer model '%.*s' not supported (%s)",
                       (int)(n > 64 ? 64 : n), s, KEY_MODEL);
  }
  *pre = "default";
  *pre_len = 7;
  k = tide_gguf_find(t->gguf, KEY_PRE);
  if (t->kind == TIDEI_TOK_BPE && k >= 0 &&
      (tide_gguf_kv_type(t->gguf, k) != TIDE_GGUF_STRING ||
       tide_gguf_get_str(t->gguf, KEY_PRE, pre, pre_len) != TIDE_OK))
    return tidei_error(env, TIDE_ERR_FORMAT, "key '%s': expected a string", KEY_PRE);
  return TIDE_OK;
}

static int read_tokens(tide_tokenizer *t) {
  tide_gguf_arr a;
  int64_t k = tide_gguf_find(t->gguf, KEY_TOKENS);
  if (k < 0) return tidei_error(t->env, TIDE_ERR_FORMAT, "key '%s' is missing", KEY_TOKENS);
  if (tide_gguf_kv_type(t->gguf, k) != TIDE_GGUF_ARRAY ||
      tide_gguf_get_arr(t->gguf, KEY_TOKENS, &a) != TIDE_OK || a.type != TIDE_GGUF_STRING)
    return tidei_error(t->env, TIDE_ERR_FORMAT, "key '%s': expected an array of strings",
                       KEY_TOKENS);
  if (a.n <= 0 || a.n >= INT32_MAX / 2)
    return tidei_error(t->env, TIDE_ERR_FORMAT, "key '%s': %lld tokens", KEY_TOKENS,
                       (long long)a.n);
  t->n_vocab = (int32_t)a.n;
  return load_texts(t, &a);
}

int tide_tokenizer_new(tide_env *env, tide_gguf *g, tide_tokenizer **out) {
  if (!out) return env ? tidei_error(env, TIDE_ERR_ARG, "tokenizer: out is NULL") : TIDE_ERR_ARG;
  *out = NULL;
  if (!env) return TIDE_ERR_ARG;
  if (!g) return tidei_error(env, TIDE_ERR_ARG, "tokenizer: gguf is NULL");
  tide_tokenizer *t = tidei_calloc(env, 1, sizeof *t);
  if (!t) return TIDE_ERR_NOMEM;
  t->env = env;
  tidei_env_ref(env);
  t->gguf = g;
  tidei_gguf_ref(g);
  const char *pre;
  size_t pre_len;
  int st;
  if ((st = read_model(t, &pre, &pre_len))) goto fail;
  if ((st = read_tokens(t))) goto fail;
  if ((st = load_scores_types(t))) goto fail;
  if ((st = build_vocab_hash(t))) goto fail;
  if (t->kind == TIDEI_TOK_BPE && (st = tidei_bpe_init(t, pre, pre_len))) goto fail;
  if ((st = get_opt_bool(t, KEY_ADD_PREFIX, &t->add_space_prefix))) goto fail;
  if ((st = load_special_ids(t))) goto fail;
  if ((st = build_special_list(t))) goto fail;
  if ((st = build_pieces(t))) goto fail;
  if (t->kind == TIDEI_TOK_SPM) build_byte_tokens(t);
  if (t->kind == TIDEI_TOK_BPE && (st = tidei_bpe_load_merges(t))) goto fail;
  *out = t;
  return TIDE_OK;
fail:
  tide_tokenizer_free(t);
  return st;
}

void tide_tokenizer_free(tide_tokenizer *t) {
  if (!t) return;
  tide_env *env = t->env;
  size_t nv = (size_t)t->n_vocab;
  tidei_bpe_free(t);
  if (t->text_off) tidei_free(env, t->text_off, (nv + 1) * sizeof(uint32_t));
  if (t->piece_off) tidei_free(env, t->piece_off, (nv + 1) * sizeof(uint32_t));
  if (t->text) tidei_free(env, t->text, t->text_size);
  if (t->piece) tidei_free(env, t->piece, t->piece_size);
  if (t->score) tidei_free(env, t->score, nv * sizeof(float));
  if (t->attr) tidei_free(env, t->attr, nv);
  if (t->eog) tidei_free(env, t->eog, nv);
  if (t->vhash) tidei_free(env, t->vhash, ((size_t)t->vhash_mask + 1) * sizeof(int32_t));
  if (t->special) tidei_free(env, t->special, (size_t)t->n_special * sizeof(int32_t));
  tide_gguf_free(t->gguf);
  tidei_free(env, t, sizeof *t);
  tidei_env_unref(env);
}

/* ---------------------------------------------------------------- getters */

int32_t tide_tokenizer_n_vocab(const tide_tokenizer *t) { return t->n_vocab; }
int32_t tide_tokenizer_bos(const tide_tokenizer *t) { return t->sp[TIDEI_SP_BOS]; }
int32_t tide_tokenizer_eos(const tide_tokenizer *t) { return t->sp[TIDEI_SP_EOS]; }
int tide_tokenizer_add_bos(const tide_tokenizer *t) { return t->add_bos; }

int tide_tokenizer_is_eog(const tide_tokenizer *t, int32_t id) {
  return id >= 0 && id < t->n_vocab && t->eog[id];
}

int tide_tokenizer_attr(const tide_tokenizer *t, int32_t id) {
  return id >= 0 && id < t->n_vocab ? t->attr[id] : 0;
}

const char *tide_token_piece(const tide_tokenizer *t, int32_t id, size_t *len) {
  if (id < 0 || id >= t->n_vocab) {
    if (len) *len = 0;
    return NULL;
  }
  if (len) *len = t->piece_off[id + 1] - t->piece_off[id] - 1;
  return t->piece + t->piece_off[id];
}

/* ---------------------------------------------------------------- tokenize */

/* Index of the first occurrence of pat in s[from, end), or end. */
static size_t find_bytes(const char *s, size_t from, size_t end, const char *pat,
                         size_t n) {
  while (from + n <= end) {
    const char *p = memchr(s + from, pat[0], end - n + 1 - from);
    if (!p) break;
    size_t i = (size_t)(p - s);
    if (memcmp(p, pat, n) == 0) return i;
    from = i + 1;
  }
  return end;
}

static int push_frag(tidei_tok_run *r, size_t off, size_t len, int32_t id) {
  int st = tidei_tok_grow(r->env, (void **)&r->fb, &r->fb_cap, r->fb_n + 1,
                          sizeof *r->fb);
  if (st) return st;
  r->fb[r->fb_n++] = (tidei_frag){off, len, id};
  return TIDE_OK;
}

/* Splits the text into raw fragments and special tokens (r->fa), as
** llama.cpp's tokenizer_st_partition: for each special token, longest first,
** every raw fragment is cut at its occurrences. Without parse_special only
** user-defined tokens are cut out. */
static int partition(const tide_tokenizer *t, tidei_tok_run *r, const char *text,
                     size_t len, int parse_special) {
  int st = tidei_tok_grow(r->env, (void **)&r->fa, &r->fa_cap, 1, sizeof *r->fa);
  if (st) return st;
  r->fa[0] = (tidei_frag){0, len, -1};
  r->fa_n = len > 0;
  for (int32_t k = 0; k < t->n_special; k++) {
    int32_t id = t->special[k];
    if (!parse_special && t->attr[id] != TIDE_TOKEN_USER_DEFINED) continue;
    size_t n;
    const char *s = tok_text(t, id, &n);
    int hit = 0;
    for (size_t i = 0; i < r->fa_n && !hit; i++)
      hit = r->fa[i].id < 0 &&
            find_bytes(text, r->fa[i].off, r->fa[i].off + r->fa[i].len, s, n) <
                r->fa[i].off + r->fa[i].len;
    if (!hit) continue;
    r->fb_n = 0;
    for (size_t i = 0; i < r->fa_n; i++) {
      tidei_frag f = r->fa[i];
      if (f.id >= 0) {
        if ((st = push_frag(r, f.off, f.len, f.id))) return st;
        continue;
      }
      size_t p = f.off, end = f.off + f.len, m;
      while ((m = find_bytes(text, p, end, s, n)) < end) {
        if (m > p && (st = push_frag(r, p, m - p, -1))) return st;
        if ((st = push_frag(r, m, n, id))) return st;
        p = m + n;
      }
      if (p < end && (st = push_frag(r, p, end - p, -1))) return st;
    }
    tidei_frag *tf = r->fa; r->fa = r->fb; r->fb = tf;
    size_t tc = r->fa_cap; r->fa_cap = r->fb_cap; r->fb_cap = tc;
    r->fa_n = r->fb_n;
  }
  return TIDE_OK;
}

static void spm_try_bigram(const tide_tokenizer *t, tidei_tok_run *r, int32_t left,
                           int32_t right) {
  if (left < 0 || right < 0) return;
  const tidei_sym *a = &r->sym[left], *b = &r->sym[right];
  int32_t id = tidei_tok_find(t, r->buf + a->off, a->n + b->n);
  if (id < 0) return;
  tidei_tok_heap_push(r, (tidei_bigram){left, right, a->n + b->n, t->score[id]});
}

/* One raw fragment through SentencePiece-style merging (llama.cpp's
** llm_tokenizer_spm_session): spaces become U+2581, symbols are UTF-8
** characters, the adjacent pair whose merge is the best-scoring token merges
** first (ties: leftmost); leftovers fall back to byte tokens. */
static int spm_fragment(const tide_tokenizer *t, tidei_tok_run *r, const char *s,
                        size_t len, int prefix) {
  int st;
  size_t cap = 3 * (len + 1);
  if ((st = tidei_tok_grow(r->env, (void **)&r->buf, &r->buf_cap, cap, 1))) return st;
  size_t n = 0;
  if (prefix) { memcpy(r->buf, "\xe2\x96\x81", 3); n = 3; }
  for (size_t i = 0; i < len; i++) {
    if (s[i] == ' ') { memcpy(r->buf + n, "\xe2\x96\x81", 3); n += 3; }
    else r->buf[n++] = s[i];
  }
  int32_t ns;
  if ((st = tidei_tok_symbols(r, n, &ns))) return st;
  for (int32_t i = 1; i < ns; i++) spm_try_bigram(t, r, i - 1, i);
  while (r->heap_n) {
    tidei_bigram b = tidei_tok_heap_pop(r);
    tidei_sym *L = &r->sym[b.left], *R = &r->sym[b.right];
    if (L->n == 0 || R->n == 0 || L->n + R->n != b.size) continue;
    L->n += R->n;
    R->n = 0;
    L->next = R->next;
    if (R->next >= 0) r->sym[R->next].prev = b.left;
    spm_try_bigram(t, r, L->prev, b.left);
    spm_try_bigram(t, r, b.left, L->next);
  }
  /* A symbol that is not a token is a single (possibly broken) character:
  ** merged symbols always are tokens, so llama.cpp's rev_merge resegmenting
  ** never applies and the fallback is bytes. */
  for (int32_t i = ns ? 0 : -1; i >= 0; i = r->sym[i].next) {
    const tidei_sym *y = &r->sym[i];
    int32_t id = tidei_tok_find(t, r->buf + y->off, y->n);
    if (id >= 0) { tidei_tok_emit(r, id); continue; }
    for (uint32_t j = 0; j < y->n; j++) {
      int32_t bid = t->byte_tok[(unsigned char)r->buf[y->off + j]];
      if (bid >= 0) tidei_tok_emit(r, bid);
    }
  }
  return TIDE_OK;
}

static void run_free(const tide_tokenizer *t, tidei_tok_run *r) {
  tide_env *env = r->env;
  tidei_free(env, r->buf, r->buf_cap);
  tidei_free(env, r->sym, r->sym_cap * sizeof *r->sym);
  tidei_free(env, r->heap, r->heap_cap * sizeof *r->heap);
  tidei_free(env, r->fa, r->fa_cap * sizeof *r->fa);
  tidei_free(env, r->fb, r->fb_cap * sizeof *r->fb);
  tidei_bpe_run_free(t, r);
}

int tide_tokenize(const tide_tokenizer *t, const char *text, size_t len, int add_bos,
                  int parse_special, int32_t *ids, int64_t cap, int64_t *n_out) {
  if (!t) return TIDE_ERR_ARG;
  tide_env *env = t->env;
  if (!n_out || (!text && len) || cap < 0 || (!ids && cap))
    return tidei_error(env, TIDE_ERR_ARG, "tokenize: bad arguments");
  *n_out = 0;
  if (len > MAX_TEXT)
    return tidei_error(env, TIDE_ERR_ARG, "tokenize: text of %zu bytes is too long (max %zu)",
                       len, MAX_TEXT);
  if (add_bos && t->sp[TIDEI_SP_BOS] < 0)
    return tidei_error(env, TIDE_ERR_ARG, "tokenize: add_bos but the vocabulary has no bos token");
  tidei_tok_run r;
  memset(&r, 0, sizeof r);
  r.env = env;
  r.ids = ids;
  r.cap = cap;
  if (add_bos) tidei_tok_emit(&r, t->sp[TIDEI_SP_BOS]);
  int st = partition(t, &r, text, len, parse_special);
  int prev_special = 1; /* SPM: a space prefix starts the text and follows specials */
  for (size_t i = 0; !st && i < r.fa_n; i++) {
    tidei_frag f = r.fa[i];
    if (f.id >= 0) {
      tidei_tok_emit(&r, f.id);
      prev_special = 1;
    } else if (t->kind == TIDEI_TOK_SPM) {
      st = spm_fragment(t, &r, text + f.off, f.len, t->add_space_prefix && prev_special);
      prev_special = 0;
    } else {
      st = tidei_bpe_tokenize(t, &r, text + f.off, f.len);
    }
  }
  run_free(t, &r);
  if (st) return st;
  *n_out = r.n;
  if (r.n > cap)
    return tidei_error(env, TIDE_ERR_FULL, "tokenize: %lld ids do not fit in %lld",
                       (long long)r.n, (long long)cap);
  return TIDE_OK;
}

/* ---------------------------------------------------------------- detokenize */

/* The bytes id contributes to detokenized text: nothing for control and
** unknown tokens; the first token of a text loses one leading space when
** the vocabulary adds a space prefix. */
static const char *detok_piece(const tide_tokenizer *t, int32_t id, int first,
                               size_t *n) {
  int a = t->attr[id];
  if (a == TIDE_TOKEN_CONTROL || a == TIDE_TOKEN_UNKNOWN) {
    *n = 0;
    return "";
  }
  const char *p = tide_token_piece(t, id, n);
  if (first && t->add_space_prefix && *n && p[0] == ' ') {
    p++;
    (*n)--;
  }
  return p;
}

int tide_detokenize(const tide_tokenizer *t, const int32_t *ids, int64_t n, char *text,
                    size_t cap, size_t *n_out) {
  if (!t) return TIDE_ERR_ARG;
  if (!n_out || n < 0 || (!ids && n) || (!text && cap))
    return tidei_error(t->env, TIDE_ERR_ARG, "detokenize: bad arguments");
  *n_out = 0;
  size_t total = 0;
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= t->n_vocab)
      return tidei_error(t->env, TIDE_ERR_ARG, "detokenize: id %d at %lld out of range (%d tokens)",
                         (int)ids[i], (long long)i, (int)t->n_vocab);
    size_t m;
    const char *p = detok_piece(t, ids[i], i == 0, &m);
    if (total < cap) memcpy(text + total, p, m < cap - total ? m : cap - total);
    total += m;
  }
  *n_out = total;
  if (total > cap)
    return tidei_error(t->env, TIDE_ERR_FULL, "detokenize: %zu bytes do not fit in %zu",
                       total, cap);
  return TIDE_OK;
}

/* UTF-8 over two buffers a ++ b. At byte i of n: > 0, a valid character of
** that length; 0, a valid but incomplete prefix running to the end; < 0, an
** invalid maximal subpart of that many bytes (one U+FFFD each). */
static int utf8_step(const unsigned char *a, size_t na, const unsigned char *b,
                     size_t n, size_t i) {
#define AT(k) ((k) < na ? a[k] : b[(k) - na])
  unsigned c = AT(i), need, lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  if (c < 0xC2) return -1;
  if (c < 0xE0) need = 2;
  else if (c < 0xF0) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c < 0xF5) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else return -1;
  for (unsigned k = 1; k < need; k++) {
    if (i + k >= n) return 0;
    unsigned x = AT(i + k);
    if (x < (k == 1 ? lo : 0x80) || x > (k == 1 ? hi : 0xBF)) return -(int)k;
  }
  return (int)need;
#undef AT
}

/* Emits the complete characters of a ++ b into out (NULL: count only);
** returns the bytes emitted and sets *keep to the incomplete tail length. */
static size_t utf8_emit(const unsigned char *a, size_t na, const unsigned char *b,
                        size_t nb, char *out, size_t *keep) {
  size_t n = na + nb, i = 0, o = 0;
  *keep = 0;
  while (i < n) {
    int k = utf8_step(a, na, b, n, i);
    if (k == 0) { *keep = n - i; break; }
    if (k < 0) {
      if (out) memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
      i += (size_t)-k;
      continue;
    }
    for (int j = 0; j < k; j++, i++)
      if (out) out[o + (size_t)j] = (char)(i < na ? a[i] : b[i - na]);
    o += (size_t)k;
  }
  return o;
}

int tide_detok_push(const tide_tokenizer *t, tide_detok *st, int32_t id, char *out,
                    size_t cap, size_t *n_out) {
  if (!t) return TIDE_ERR_ARG;
  if (!st || !n_out || (!out && cap) || st->n_pending < 0 ||
      st->n_pending > (int)sizeof st->pending - 4)
    return tidei_error(t->env, TIDE_ERR_ARG, "detok_push: bad arguments or state");
  *n_out = 0;
  if (id < 0 || id >= t->n_vocab)
    return tidei_error(t->env, TIDE_ERR_ARG, "detok_push: id %d out of range (%d tokens)",
                       (int)id, (int)t->n_vocab);
  size_t m, keep;
  const unsigned char *p = (const unsigned char *)detok_piece(t, id, st->n_tokens == 0, &m);
  size_t need = utf8_emit(st->pending, (size_t)st->n_pending, p, m, NULL, &keep);
  *n_out = need;
  if (need > cap)
    return tidei_error(t->env, TIDE_ERR_FULL, "detok_push: %zu bytes do not fit in %zu",
                       need, cap);
  unsigned char tail[4];
  size_t n = (size_t)st->n_pending + m;
  for (size_t k = 0; k < keep; k++) { /* keep <= 3: a prefix of one character */
    size_t i = n - keep + k;
    tail[k] = i < (size_t)st->n_pending ? st->pending[i] : p[i - (size_t)st->n_pending];
  }
  utf8_emit(st->pending, (size_t)st->n_pending, p, m, out, &keep);
  memcpy(st->pending, tail, keep);
  st->n_pending = (int)keep;
  if (st->n_tokens < INT32_MAX) st->n_tokens++;
  return TIDE_OK;
}

int tide_detok_flush(const tide_tokenizer *t, tide_detok *st, char *out, size_t cap,
                     size_t *n_out) {
  if (!t) return TIDE_ERR_ARG;
  if (!st || !n_out || (!out && cap) || st->n_pending < 0 ||
      st->n_pending > (int)sizeof st->pending - 4)
    return tidei_error(t->env, TIDE_ERR_ARG, "detok_flush: bad arguments or state");
  *n_out = st->n_pending ? 3 : 0;
  if (*n_out > cap)
    return tidei_error(t->env, TIDE_ERR_FULL, "detok_flush: 3 bytes do not fit in %zu", cap);
  if (st->n_pending) memcpy(out, "\xef\xbf\xbd", 3);
  st->n_pending = 0;
  return TIDE_OK;
}
