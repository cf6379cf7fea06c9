/*
** tokenizer_bpe.c -- byte-level BPE (tokenizer.ggml.model = "gpt2"): the
** pre-tokenizer regexes of tokenizer.ggml.pre run through PCRE2, GPT-2's
** byte-to-unicode alphabet, and merges ranked by their order in
** tokenizer.ggml.merges (llama.cpp's llm_tokenizer_bpe_session).
** Layer: core.
**
** The regex sets are llama.cpp's (llama-vocab.cpp, llm_tokenizer_bpe), with
** one adaptation: PCRE2's \s under UCP is [\t-\r] plus the Z categories,
** while llama.cpp's whitespace also has U+0085, so \s is spelled [\s\x{85}].
** Regexes are compiled once per tokenizer (UTF + UCP); all PCRE2 memory
** comes from the env's allocator. Runs of invalid UTF-8 bytes are never seen
** by a regex: each run is a word of its own, byte-encoded like any other
** bytes, so every input round-trips (llama.cpp instead turns such bytes into
** U+FFFD).
*/
#include <string.h>

#include "tokenizer.h"

#define KEY_MERGES "tokenizer.ggml.merges"
#define KEY_PRE "tokenizer.ggml.pre"

/* ---------------------------------------------------------------- regexes */

#define WS "\\s\\x{85}"
#define RE_GPT2 \
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS \
  "]+(?![^" WS "])"
#define RE_LLAMA3_(num) \
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?" \
  "\\p{L}+|" num "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS       \
  "]+(?![^" WS "])|[" WS "]+"

const char tidei_re_gpt2[] = RE_GPT2;

enum { SET_DEFAULT, SET_GPT2, SET_LLAMA3, SET_QWEN2, SET_STARCODER, SET_FALCON };

static const char *const re_sets[][TIDEI_TOK_MAX_RE + 1] = {
  [SET_DEFAULT] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", 0},
  [SET_GPT2] = {RE_GPT2, 0},
  [SET_LLAMA3] = {RE_LLAMA3_("\\p{N}{1,3}"), 0},
  [SET_QWEN2] = {RE_LLAMA3_("\\p{N}"), 0},
  [SET_STARCODER] = {"\\p{N}", RE_GPT2, 0},
  [SET_FALCON] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", 0},
};

/* tokenizer.ggml.pre names and what they select, as llama.cpp's
** llama_vocab::impl::load (only names whose behaviour tide fully has). */
static const struct {
  const char *name;
  int set, ignore_merges, add_bos;
} pre_table[] = {
  {"default", SET_DEFAULT, 0, 0},
  {"gpt-2", SET_GPT2, 0, 0}, {"phi-2", SET_GPT2, 0, 0}, {"mpt", SET_GPT2, 0, 0},
  {"olmo", SET_GPT2, 0, 0}, {"jais", SET_GPT2, 0, 0}, {"jina-es", SET_GPT2, 0, 0},
  {"jina-de", SET_GPT2, 0, 0},
  {"llama3", SET_LLAMA3, 1, 1}, {"llama-v3", SET_LLAMA3, 1, 1},
  {"llama-bpe", SET_LLAMA3, 1, 1}, {"falcon3", SET_LLAMA3, 1, 1},
  {"pixtral", SET_LLAMA3, 1, 1}, {"dbrx", SET_LLAMA3, 0, 0},
  {"smaug-bpe", SET_LLAMA3, 0, 0},
  {"qwen2", SET_QWEN2, 0, 0}, {"deepseek-r1-qwen", SET_QWEN2, 0, 0},
  {"stablelm2", SET_QWEN2, 0, 0},
  {"starcoder", SET_STARCODER, 0, 0}, {"refact", SET_STARCODER, 0, 0},
  {"command-r", SET_STARCODER, 0, 0}, {"smollm", SET_STARCODER, 0, 0},
  {"codeshell", SET_STARCODER, 0, 0}, {"exaone", SET_STARCODER, 0, 0},
  {"minerva-7b", SET_STARCODER, 0, 0},
  {"falcon", SET_FALCON, 0, 0},
};

/* PCRE2's allocator hooks: a header keeps the block size that tidei_free
** needs. */
int tidei_bpe_init(tide_tokenizer *t, const char *pre, size_t pre_len) {
  size_t k = 0, nt = sizeof pre_table / sizeof pre_table[0];
  while (k < nt && !(strlen(pre_table[k].name) == pre_len &&
                     memcmp(pre_table[k].name, pre, pre_len) == 0))
    k++;
  if (k == nt)
    return tidei_error(t->env, TIDE_ERR_UNSUPPORTED, "pre-tokenizer '%.*s' not supported (%s)",
                       (int)(pre_len > 64 ? 64 : pre_len), pre, KEY_PRE);
  t->ignore_merges = pre_table[k].ignore_merges;
  t->add_bos = pre_table[k].add_bos;
  t->add_space_prefix = 0;
  t->re_gctx = pcre2_general_context_create(tidei_malloc_sized, tidei_free_sized, t->env);
  if (!t->re_gctx) return TIDE_ERR_NOMEM;
  pcre2_compile_context *cc = pcre2_compile_context_create(t->re_gctx);
  if (!cc) return TIDE_ERR_NOMEM;
  const char *const *set = re_sets[pre_table[k].set];
  int st = TIDE_OK;
  for (t->n_re = 0; set[t->n_re]; t->n_re++) {
    int err;
    PCRE2_SIZE off;
    t->re[t->n_re] = pcre2_compile((PCRE2_SPTR)set[t->n_re], PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP,
                                   &err, &off, cc);
    if (!t->re[t->n_re]) {
      if (err == PCRE2_ERROR_HEAP_FAILED || err == PCRE2_ERROR_NOMEMORY) {
        st = tidei_error(t->env, TIDE_ERR_NOMEM, "out of memory (compiling a regex)");
      } else {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(err, msg, sizeof msg);
        st = tidei_error(t->env, TIDE_ERR_STATE, "pre-tokenizer '%s': regex %d: %s at %zu",
                         pre_table[k].name, t->n_re, (const char *)msg, (size_t)off);
      }
      break;
    }
  }
  pcre2_compile_context_free(cc);
  return st;
}

/* ---------------------------------------------------------------- merges */

int tidei_bpe_load_merges(tide_tokenizer *t) {
  tide_env *env = t->env;
  tide_gguf_arr a;
  int64_t k = tide_gguf_find(t->gguf, KEY_MERGES);
  if (k < 0) return tidei_error(env, TIDE_ERR_FORMAT, "key '%s' is missing", KEY_MERGES);
  if (tide_gguf_kv_type(t->gguf, k) != TIDE_GGUF_ARRAY ||
      tide_gguf_get_arr(t->gguf, KEY_MERGES, &a) != TIDE_OK || a.type != TIDE_GGUF_STRING)
    return tidei_error(env, TIDE_ERR_FORMAT, "key '%s': expected an array of strings",
                       KEY_MERGES);
  if (a.n < 0 || a.n >= INT32_MAX / 2)
    return tidei_error(env, TIDE_ERR_FORMAT, "key '%s': %lld merges", KEY_MERGES,
                       (long long)a.n);
  size_t cap = 16;
  while (cap < 2 * (size_t)a.n) cap *= 2;
  t->mhash = tidei_alloc(env, cap * sizeof(int32_t));
  if (!t->mhash) return TIDE_ERR_NOMEM;
  t->mhash_mask = (uint32_t)(cap - 1);
  memset(t->mhash, 0xff, cap * sizeof(int32_t));
  if (a.n && !(t->merges = tidei_alloc(env, (size_t)a.n * sizeof *t->merges)))
    return TIDE_ERR_NOMEM;
  t->n_merges = a.n;
  for (int64_t i = 0; i < a.n; i++) {
    size_t n;
    const char *s = tide_gguf_arr_str(&a, i, &n);
    if (n > UINT32_MAX / 2)
      return tidei_error(env, TIDE_ERR_FORMAT, "key '%s': merge %lld is too long",
                         KEY_MERGES, (long long)i);
    const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
    tidei_merge *m = &t->merges[i];
    *m = (tidei_merge){s, (uint32_t)n, sp ? (uint32_t)(sp - s) : UINT32_MAX};
    if (!sp) continue; /* llama.cpp ranks it as ("", ""), which never matches */
    uint32_t h = (uint32_t)tidei_tok_hash(s, n, TIDEI_HASH_SEED) & t->mhash_mask;
    for (;; h = (h + 1) & t->mhash_mask) {
      int32_t o = t->mhash[h];
      if (o < 0) { t->mhash[h] = (int32_t)i; break; }
      const tidei_merge *x = &t->merges[o];
      if (x->len == m->len && x->split == m->split && memcmp(x->s, s, n) == 0)
        break; /* a repeated merge keeps its first rank */
    }
  }
  return TIDE_OK;
}

static int32_t find_merge(const tide_tokenizer *t, const char *l, size_t ln,
                          const char *r, size_t rn) {
  uint64_t h = tidei_tok_hash(l, ln, TIDEI_HASH_SEED);
  h = tidei_tok_hash(" ", 1, h);
  uint32_t i = (uint32_t)tidei_tok_hash(r, rn, h) & t->mhash_mask;
  for (;; i = (i + 1) & t->mhash_mask) {
    int32_t o = t->mhash[i];
    if (o < 0) return -1;
    const tidei_merge *m = &t->merges[o];
    if (m->len == ln + 1 + rn && m->split == ln && memcmp(m->s, l, ln) == 0 &&
        memcmp(m->s + ln + 1, r, rn) == 0)
      return o;
  }
}

void tidei_bpe_free(tide_tokenizer *t) {
  tide_env *env = t->env;
  if (t->merges) tidei_free(env, t->merges, (size_t)t->n_merges * sizeof *t->merges);
  if (t->mhash) tidei_free(env, t->mhash, ((size_t)t->mhash_mask + 1) * sizeof(int32_t));
  for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
  pcre2_general_context_free(t->re_gctx);
  t->merges = NULL;
  t->mhash = NULL;
  t->n_re = 0;
  t->re_gctx = NULL;
}

/* ---------------------------------------------------------------- bytes */

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other
** 68 (0-32, 127-160, 173) become U+0100.. in byte order. */
static unsigned byte_to_cp(unsigned b) {
  if (b <= 32) return 256 + b;
  if (b >= 127 && b <= 160) return 256 + 33 + (b - 127);
  if (b == 173) return 256 + 67;
  return b;
}

static int cp_to_byte(uint32_t cp) {
  if (cp < 256) return byte_to_cp(cp) == cp ? (int)cp : -1;
  if (cp < 256 + 33) return (int)(cp - 256);
  if (cp < 256 + 67) return (int)(cp - 256 - 33 + 127);
  if (cp == 256 + 67) return 173;
  return -1;
}

/* Decodes one UTF-8 character (strictly); returns its length or 0. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned c = s[0];
  size_t len = c < 0x80 ? 1 : c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3
             : c >= 0xF0 && c < 0xF5 ? 4 : 0;
  if (!len || len > n) return 0;
  uint32_t v = len == 1 ? c : c & (0x7F >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (s[i] & 0x3F);
  }
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

int tidei_bpe_piece(const tide_tokenizer *t, const char *s, size_t n, char *out,
                    size_t *n_out) {
  (void)t;
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len = utf8_decode((const unsigned char *)s + i, n - i, &cp);
    int b = len ? cp_to_byte(cp) : -1;
    if (b >= 0) {
      out[o++] = (char)b;
      i += len;
    } else { /* not of the byte alphabet: kept as it is */
      if (!len) len = 1;
      memcpy(out + o, s + i, len);
      o += len;
      i += len;
    }
  }
  *n_out = o;
  return TIDE_OK;
}

/* ---------------------------------------------------------------- tokenize */

static void bpe_try_bigram(const tide_tokenizer *t, tidei_tok_run *r, int32_t left,
                           int32_t right) {
  if (left < 0 || right < 0) return;
  const tidei_sym *a = &r->sym[left], *b = &r->sym[right];
  int32_t rank = find_merge(t, r->buf + a->off, a->n, r->buf + b->off, b->n);
  if (rank < 0) return;
  tidei_tok_heap_push(r, (tidei_bigram){left, right, a->n + b->n, -(double)rank});
}

/* One pre-tokenized word: byte-encode, merge by rank (lowest first, ties
** leftmost), emit the tokens of what remains. */
static int bpe_word(const tide_tokenizer *t, tidei_tok_run *r, const char *s, size_t len) {
  int st;
  if ((st = tidei_tok_grow(r->env, (void **)&r->buf, &r->buf_cap, 2 * len, 1))) return st;
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned cp = byte_to_cp((unsigned char)s[i]);
    if (cp < 0x80) r->buf[n++] = (char)cp;
    else {
      r->buf[n++] = (char)(0xC0 | (cp >> 6));
      r->buf[n++] = (char)(0x80 | (cp & 0x3F));
    }
  }
  if (t->ignore_merges) {
    int32_t id = tidei_tok_find(t, r->buf, n);
    if (id >= 0) {
      tidei_tok_emit(r, id);
      return TIDE_OK;
    }
  }
  int32_t ns;
  if ((st = tidei_tok_symbols(r, n, &ns))) return st;
  for (int32_t i = 1; i < ns; i++) bpe_try_bigram(t, r, i - 1, i);
  while (r->heap_n) {
    tidei_bigram b = tidei_tok_heap_pop(r);
    tidei_sym *L = &r->sym[b.left], *R = &r->sym[b.right];
    if (L->n == 0 || R->n == 0 || L->n + R->n != b.size) continue; /* outdated */
    L->n += R->n;
    R->n = 0;
    L->next = R->next;
    if (R->next >= 0) r->sym[R->next].prev = b.left;
    bpe_try_bigram(t, r, L->prev, b.left);
    bpe_try_bigram(t, r, b.left, L->next);
  }
  for (int32_t i = ns ? 0 : -1; i >= 0; i = r->sym[i].next) {
    const tidei_sym *y = &r->sym[i];
    int32_t id = tidei_tok_find(t, r->buf + y->off, y->n);
    if (id >= 0) { tidei_tok_emit(r, id); continue; }
    for (uint32_t j = 0; j < y->n; j++) { /* single bytes of the encoded text */
      int32_t bid = tidei_tok_find(t, r->buf + y->off + j, 1);
      if (bid >= 0) tidei_tok_emit(r, bid);
    }
  }
  return TIDE_OK;
}

static int push_word(tidei_tok_run *r, size_t off, size_t len, int32_t kind) {
  int st = tidei_tok_grow(r->env, (void **)&r->wb, &r->wb_cap, r->wb_n + 1, sizeof *r->wb);
  if (st) return st;
  r->wb[r->wb_n++] = (tidei_frag){off, len, kind};
  return TIDE_OK;
}

static void swap_words(tidei_tok_run *r) {
  tidei_frag *tf = r->wa; r->wa = r->wb; r->wb = tf;
  size_t tc = r->wa_cap; r->wa_cap = r->wb_cap; r->wb_cap = tc;
  r->wa_n = r->wb_n;
}

static int match_error(tide_env *env, int rc) {
  if (rc == PCRE2_ERROR_NOMEMORY) return TIDE_ERR_NOMEM;
  PCRE2_UCHAR msg[128];
  pcre2_get_error_message(rc, msg, sizeof msg);
  return tidei_error(env, TIDE_ERR_ARG, "tokenize: pre-tokenizer regex failed: %s",
                     (const char *)msg);
}

/* The text as runs of valid UTF-8 (kind -1) and runs of invalid bytes
** (kind -2, words of their own that no regex sees), into r->wa. Validating
** once lets every match skip PCRE2's own check, which would rescan the rest
** of the subject on each call. */
static int split_utf8(tidei_tok_run *r, const char *text, size_t len) {
  int st;
  size_t p = 0, run = 0;
  r->wb_n = 0;
  while (p < len) {
    uint32_t cp;
    size_t l = utf8_decode((const unsigned char *)text + p, len - p, &cp);
    if (l) { p += l; continue; }
    if (p > run && (st = push_word(r, run, p - run, -1))) return st;
    size_t q = p + 1;
    while (q < len && !utf8_decode((const unsigned char *)text + q, len - q, &cp)) q++;
    if ((st = push_word(r, p, q - p, -2))) return st;
    p = run = q;
  }
  if (run < len && (st = push_word(r, run, len - run, -1))) return st;
  swap_words(r);
  return TIDE_OK;
}

/* Splits every valid word of r->wa with regex k into matches and the
** stretches between them (both kept, in order, as llama.cpp keeps text
** between matches) into r->wb. The subject is the word alone. */
static int split_words(const tide_tokenizer *t, tidei_tok_run *r, int k,
                       const char *text) {
  int st;
  r->wb_n = 0;
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md[k]);
  for (size_t w = 0; w < r->wa_n; w++) {
    const char *s = text + r->wa[w].off;
    size_t end = r->wa[w].len, gap = 0, p = 0, base = r->wa[w].off;
    if (r->wa[w].id == -2) {
      if ((st = push_word(r, base, end, -2))) return st;
      continue;
    }
    while (p < end) {
      int rc = pcre2_match(t->re[k], (PCRE2_SPTR)s, end, p, PCRE2_NO_UTF_CHECK, r->md[k], NULL);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) return match_error(r->env, rc);
      size_t ms = ov[0], me = ov[1];
      if (me <= ms) { /* empty match: step over one character */
        size_t cl = tidei_utf8_len((unsigned char)s[ms]);
        p = ms + (cl < end - ms ? cl : end - ms);
        continue;
      }
      if (ms > gap && (st = push_word(r, base + gap, ms - gap, -1))) return st;
      if ((st = push_word(r, base + ms, me - ms, -1))) return st;
      gap = p = me;
    }
    if (gap < end && (st = push_word(r, base + gap, end - gap, -1))) return st;
  }
  swap_words(r);
  return TIDE_OK;
}

int tidei_bpe_tokenize(const tide_tokenizer *t, tidei_tok_run *r, const char *text,
                       size_t len) {
  int st;
  for (int k = 0; k < t->n_re; k++)
    if (!r->md[k] && !(r->md[k] = pcre2_match_data_create_from_pattern(t->re[k], t->re_gctx)))
      return TIDE_ERR_NOMEM;
  if ((st = split_utf8(r, text, len))) return st;
  for (int k = 0; k < t->n_re; k++)
    if ((st = split_words(t, r, k, text))) return st;
  for (size_t w = 0; w < r->wa_n; w++)
    if ((st = bpe_word(t, r, text + r->wa[w].off, r->wa[w].len))) return st;
  return TIDE_OK;
}

void tidei_bpe_run_free(const tide_tokenizer *t, tidei_tok_run *r) {
  (void)t;
  tidei_free(r->env, r->wa, r->wa_cap * sizeof *r->wa);
  tidei_free(r->env, r->wb, r->wb_cap * sizeof *r->wb);
  for (int k = 0; k < TIDEI_TOK_MAX_RE; k++) pcre2_match_data_free(r->md[k]);
}
