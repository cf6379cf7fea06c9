/*
** bpe_train.c -- byte-level BPE training: counts the words of GPT-2's
** pre-tokenizer (PCRE2) and learns merges, then writes tokenizer.ggml.*
** metadata that tokenizer.c/tokenizer_bpe.c load as a "gpt2" vocabulary.
** Layer: core.
**
** Words are split exactly as tokenizer_bpe.c splits text for the "gpt-2"
** pre-tokenizer: the same regex string, compiled with the same flags, runs
** of invalid UTF-8 as words of their own, and the stretches between regex
** matches kept as words. Training is the classic greedy BPE: pair counts
** over distinct words (weighted by word count) live in a hash table, a
** max-heap with lazy invalidation picks the most frequent pair, and a merge
** touches only the words on that pair's occurrence list, subtracting their
** old pairs and adding their new ones (no full recount per merge).
*/
#include <string.h>

#include "tokenizer.h"

#define PROGRESS_EVERY 32 /* tokens between progress calls */

typedef struct {
  size_t off;               /* bytes [off, off + len) of wtext */
  uint32_t len;
  int64_t count;
} bpe_word;

struct tide_bpe_trainer {
  tide_env *env;
  int64_t min_count;
  char *sp_text;            /* special texts, each followed by a NUL */
  size_t sp_size;
  size_t *sp_off;           /* (n_special + 1) offsets into sp_text */
  int32_t n_special, bos, eos;

  pcre2_general_context *gctx; /* PCRE2 memory from the env */
  pcre2_code *re;
  pcre2_match_data *md;

  char *wtext; size_t wtext_n, wtext_cap;      /* bytes of distinct words */
  bpe_word *words; size_t n_words, words_cap;
  int32_t *whash; size_t whash_cap;            /* word ids, -1 = empty */
  int64_t n_bytes, n_pretokens;

  /* the result of train (n_vocab == 0: none) */
  int32_t n_vocab;
  char *tok; size_t tok_size; uint32_t *tok_off;     /* (n_vocab + 1) */
  int64_t n_merges;
  char *mrg; size_t mrg_size; uint32_t *mrg_off;     /* (n_merges + 1) */
};

/* ---------------------------------------------------------------- params */

tide_bpe_trainer_params tide_bpe_trainer_default_params(void) {
  tide_bpe_trainer_params p = {NULL, 0, 0, 0, 2};
  return p;
}

static int copy_specials(tide_bpe_trainer *tr, const tide_bpe_trainer_params *p) {
  static const char *const def[] = {"<|endoftext|>"};
  const char *const *sp = p->special ? p->special : def;
  int32_t n = p->special ? p->n_special : 1;
  tide_env *env = tr->env;
  if (n < 0 || n > 4096)
    return tidei_error(env, TIDE_ERR_ARG, "bpe trainer: %d special tokens", (int)n);
  if (p->bos < -1 || p->bos >= n || p->eos < -1 || p->eos >= n)
    return tidei_error(env, TIDE_ERR_ARG, "bpe trainer: bos %d or eos %d not a special index",
                       (int)p->bos, (int)p->eos);
  size_t size = 0;
  tr->n_special = n; /* sizes the frees from here on */
  for (int32_t i = 0; i < n; i++) {
    size_t len = sp[i] ? strlen(sp[i]) : 0;
    if (!len)
      return tidei_error(env, TIDE_ERR_ARG, "bpe trainer: special token %d is empty", (int)i);
    for (int32_t j = 0; j < i; j++)
      if (strcmp(sp[i], sp[j]) == 0)
        return tidei_error(env, TIDE_ERR_ARG, "bpe trainer: special token '%.64s' repeated",
                           sp[i]);
    size += len + 1;
  }
  if (!(tr->sp_off = tidei_alloc(env, ((size_t)n + 1) * sizeof *tr->sp_off)) ||
      !(tr->sp_text = tidei_alloc(env, size)))
    return TIDE_ERR_NOMEM;
  tr->sp_size = size;
  size_t o = 0;
  for (int32_t i = 0; i < n; i++) {
    tr->sp_off[i] = o;
    memcpy(tr->sp_text + o, sp[i], strlen(sp[i]) + 1);
    o += strlen(sp[i]) + 1;
  }
  tr->sp_off[n] = o;
  tr->bos = p->bos;
  tr->eos = p->eos;
  return TIDE_OK;
}

static int compile_regex(tide_bpe_trainer *tr) {
  if (!(tr->gctx = pcre2_general_context_create(tidei_malloc_sized, tidei_free_sized, tr->env)))
    return tidei_error(tr->env, TIDE_ERR_NOMEM, "out of memory (regex context)");
  pcre2_compile_context *cc = pcre2_compile_context_create(tr->gctx);
  if (!cc) return tidei_error(tr->env, TIDE_ERR_NOMEM, "out of memory (regex context)");
  int err;
  PCRE2_SIZE off;
  tr->re = pcre2_compile((PCRE2_SPTR)tidei_re_gpt2, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                         &err, &off, cc);
  pcre2_compile_context_free(cc);
  if (!tr->re) {
    if (err == PCRE2_ERROR_HEAP_FAILED || err == PCRE2_ERROR_NOMEMORY)
      return tidei_error(tr->env, TIDE_ERR_NOMEM, "out of memory (compiling a regex)");
    return tidei_error(tr->env, TIDE_ERR_STATE, "bpe trainer: regex error %d at %zu", err,
                       (size_t)off);
  }
  if (!(tr->md = pcre2_match_data_create_from_pattern(tr->re, tr->gctx)))
    return tidei_error(tr->env, TIDE_ERR_NOMEM, "out of memory (regex match data)");
  return TIDE_OK;
}

static void result_free(tide_bpe_trainer *tr) {
  tide_env *env = tr->env;
  tidei_free(env, tr->tok, tr->tok_size);
  if (tr->tok_off) tidei_free(env, tr->tok_off, ((size_t)tr->n_vocab + 1) * sizeof(uint32_t));
  tidei_free(env, tr->mrg, tr->mrg_size);
  if (tr->mrg_off) tidei_free(env, tr->mrg_off, ((size_t)tr->n_merges + 1) * sizeof(uint32_t));
  tr->tok = tr->mrg = NULL;
  tr->tok_off = tr->mrg_off = NULL;
  tr->tok_size = tr->mrg_size = 0;
  tr->n_vocab = 0;
  tr->n_merges = 0;
}

void tide_bpe_trainer_free(tide_bpe_trainer *tr) {
  if (!tr) return;
  tide_env *env = tr->env;
  result_free(tr);
  tidei_free(env, tr->sp_text, tr->sp_size);
  if (tr->sp_off) tidei_free(env, tr->sp_off, ((size_t)tr->n_special + 1) * sizeof *tr->sp_off);
  pcre2_match_data_free(tr->md);
  pcre2_code_free(tr->re);
  pcre2_general_context_free(tr->gctx);
  tidei_free(env, tr->wtext, tr->wtext_cap);
  tidei_free(env, tr->words, tr->words_cap * sizeof *tr->words);
  tidei_free(env, tr->whash, tr->whash_cap * sizeof *tr->whash);
  tidei_free(env, tr, sizeof *tr);
  tidei_env_unref(env);
}

int tide_bpe_trainer_new(tide_env *env, const tide_bpe_trainer_params *p,
                         tide_bpe_trainer **out) {
  if (!out) return TIDE_ERR_ARG;
  *out = NULL;
  if (!env) return TIDE_ERR_ARG;
  tide_bpe_trainer_params def = tide_bpe_trainer_default_params();
  if (!p) p = &def;
  if (p->min_count < 1)
    return tidei_error(env, TIDE_ERR_ARG, "bpe trainer: min_count %lld is below 1",
                       (long long)p->min_count);
  tide_bpe_trainer *tr = tidei_calloc(env, 1, sizeof *tr);
  if (!tr) return TIDE_ERR_NOMEM;
  tr->env = env;
  tidei_env_ref(env);
  tr->min_count = p->min_count;
  int st = copy_specials(tr, p);
  if (!st) st = compile_regex(tr);
  if (st) {
    tide_bpe_trainer_free(tr);
    return st;
  }
  *out = tr;
  return TIDE_OK;
}

/* ---------------------------------------------------------------- counting */

static int grow_words(tide_bpe_trainer *tr) {
  size_t ncap = tr->whash_cap ? 2 * tr->whash_cap : 1024;
  int32_t *h = tidei_alloc(tr->env, ncap * sizeof *h);
  if (!h) return TIDE_ERR_NOMEM;
  memset(h, 0xff, ncap * sizeof *h);
  for (size_t w = 0; w < tr->n_words; w++) {
    const bpe_word *x = &tr->words[w];
    size_t i = (size_t)tidei_tok_hash(tr->wtext + x->off, x->len, TIDEI_HASH_SEED) & (ncap - 1);
    while (h[i] >= 0) i = (i + 1) & (ncap - 1);
    h[i] = (int32_t)w;
  }
  tidei_free(tr->env, tr->whash, tr->whash_cap * sizeof *tr->whash);
  tr->whash = h;
  tr->whash_cap = ncap;
  return TIDE_OK;
}

/* Adds one occurrence of the word s[0..n). */
static int count_word(tide_bpe_trainer *tr, const char *s, size_t n) {
  int st;
  if (n == 0) return TIDE_OK;
  if (n > UINT32_MAX) return tidei_error(tr->env, TIDE_ERR_ARG, "bpe trainer: word of %zu bytes", n);
  tr->n_pretokens++;
  if (2 * (tr->n_words + 1) > tr->whash_cap && (st = grow_words(tr))) return st;
  size_t mask = tr->whash_cap - 1;
  size_t i = (size_t)tidei_tok_hash(s, n, TIDEI_HASH_SEED) & mask;
  for (; tr->whash[i] >= 0; i = (i + 1) & mask) {
    bpe_word *x = &tr->words[tr->whash[i]];
    if (x->len == n && memcmp(tr->wtext + x->off, s, n) == 0) {
      x->count++;
      return TIDE_OK;
    }
  }
  if (tr->n_words >= INT32_MAX)
    return tidei_error(tr->env, TIDE_ERR_FULL, "bpe trainer: more than %d distinct words", INT32_MAX);
  if ((st = tidei_tok_grow(tr->env, (void **)&tr->wtext, &tr->wtext_cap, tr->wtext_n + n, 1)) ||
      (st = tidei_tok_grow(tr->env, (void **)&tr->words, &tr->words_cap, tr->n_words + 1,
                           sizeof *tr->words)))
    return st;
  memcpy(tr->wtext + tr->wtext_n, s, n);
  tr->words[tr->n_words] = (bpe_word){tr->wtext_n, (uint32_t)n, 1};
  tr->whash[i] = (int32_t)tr->n_words++;
  tr->wtext_n += n;
  return TIDE_OK;
}

/* Decodes one UTF-8 character strictly (as tokenizer_bpe.c); its length or 0. */
static size_t utf8_valid(const unsigned char *s, size_t n) {
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
  return len;
}

/* Valid UTF-8 s[0..end): regex matches and the stretches between them. */
static int split_valid(tide_bpe_trainer *tr, const char *s, size_t end) {
  int st;
  size_t gap = 0, p = 0;
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tr->md);
  while (p < end) {
    int rc = pcre2_match(tr->re, (PCRE2_SPTR)s, end, p, PCRE2_NO_UTF_CHECK, tr->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc == PCRE2_ERROR_NOMEMORY) return tidei_error(tr->env, TIDE_ERR_NOMEM, "out of memory (regex)");
    if (rc < 0) return tidei_error(tr->env, TIDE_ERR_ARG, "bpe trainer: regex match failed (%d)", rc);
    size_t ms = ov[0], me = ov[1];
    if (me <= ms) { /* empty match: step over one character */
      size_t cl = tidei_utf8_len((unsigned char)s[ms]);
      p = ms + (cl < end - ms ? cl : end - ms);
      continue;
    }
    if (ms > gap && (st = count_word(tr, s + gap, ms - gap))) return st;
    if ((st = count_word(tr, s + ms, me - ms))) return st;
    gap = p = me;
  }
  return gap < end ? count_word(tr, s + gap, end - gap) : TIDE_OK;
}

/* Text without specials: valid runs through the regex, invalid runs whole. */
static int split_text(tide_bpe_trainer *tr, const char *text, size_t len) {
  int st;
  size_t p = 0, run = 0;
  while (p < len) {
    size_t l = utf8_valid((const unsigned char *)text + p, len - p);
    if (l) { p += l; continue; }
    if (p > run && (st = split_valid(tr, text + run, p - run))) return st;
    size_t q = p + 1;
    while (q < len && !utf8_valid((const unsigned char *)text + q, len - q)) q++;
    if ((st = count_word(tr, text + p, q - p))) return st;
    p = run = q;
  }
  return run < len ? split_valid(tr, text + run, len - run) : TIDE_OK;
}

/* The earliest special text at or after from (longest on a tie), or len. */
static size_t next_special(const tide_bpe_trainer *tr, const char *text, size_t len,
                           size_t from, size_t *sp_len) {
  size_t best = len;
  *sp_len = 0;
  for (int32_t i = 0; i < tr->n_special; i++) {
    const char *s = tr->sp_text + tr->sp_off[i];
    size_t n = tr->sp_off[i + 1] - tr->sp_off[i] - 1;
    const char *hit = len - from >= n ? memmem(text + from, len - from, s, n) : NULL;
    size_t at = hit ? (size_t)(hit - text) : len;
    if (at < best || (at == best && at < len && n > *sp_len)) {
      best = at;
      *sp_len = n;
    }
  }
  return best;
}

int tide_bpe_trainer_add_text(tide_bpe_trainer *tr, const char *text, size_t len) {
  if (!tr || (!text && len)) return TIDE_ERR_ARG;
  result_free(tr);
  tr->n_bytes += (int64_t)len;
  size_t p = 0;
  while (p < len) {
    size_t n, at = next_special(tr, text, len, p, &n);
    int st = split_text(tr, text + p, at - p);
    if (st) return st;
    p = at + n;
  }
  return TIDE_OK;
}

void tide_bpe_trainer_get_stats(const tide_bpe_trainer *tr, tide_bpe_trainer_stats *out) {
  memset(out, 0, sizeof *out);
  if (!tr) return;
  out->n_bytes = tr->n_bytes;
  out->n_pretokens = tr->n_pretokens;
  out->n_words = (int64_t)tr->n_words;
  out->n_vocab = tr->n_vocab;
  out->n_merges = tr->n_merges;
}

/* ---------------------------------------------------------------- training state */

typedef struct { int32_t a, b; int64_t count, before; int32_t head; int32_t stamp; } bpe_pair;
typedef struct { int32_t word, next; } bpe_occ;   /* a word on a pair's list */
typedef struct { int64_t count; int32_t a, b; } bpe_entry;
typedef struct { uint32_t off, len; } bpe_tok;        /* raw bytes in tbytes */

typedef struct {
  tide_bpe_trainer *tr;
  tide_env *env;
  int32_t *sym; size_t sym_cap;           /* symbols of all words, laid out as wtext */
  uint32_t *nsym; size_t nsym_cap;        /* (n_words) symbols left per word */
  int32_t *wstamp; size_t wstamp_cap;     /* (n_words) last merge that touched it */
  bpe_pair *pairs; size_t n_pairs, pairs_cap;
  int32_t *phash; size_t phash_cap;       /* pair ids, -1 = empty */
  bpe_occ *occ; size_t n_occ, occ_cap;
  bpe_entry *heap; size_t n_heap, heap_cap;
  int32_t *touched; size_t n_touched, touched_cap;
  bpe_tok *toks; size_t n_toks, toks_cap;
  char *tbytes; size_t tbytes_n, tbytes_cap;
  int32_t *thash; size_t thash_cap;       /* token ids by raw bytes, -1 = empty */
  int32_t *merges; size_t n_merges, merges_cap; /* (n_merges, 2) left, right */
  int32_t stamp;
} bpe_run;

static void run_free(bpe_run *r) {
  tide_env *env = r->env;
#define F(p, cap) tidei_free(env, r->p, r->cap * sizeof *r->p)
  F(sym, sym_cap); F(nsym, nsym_cap); F(wstamp, wstamp_cap);
  F(pairs, pairs_cap); F(phash, phash_cap); F(occ, occ_cap); F(heap, heap_cap);
  F(touched, touched_cap); F(toks, toks_cap); F(tbytes, tbytes_cap); F(thash, thash_cap);
  F(merges, merges_cap);
#undef F
}

static uint32_t pair_hash(int32_t a, int32_t b) {
  uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9E3779B97F4A7C15ull;
  return (uint32_t)(k >> 32);
}

static int rehash_pairs(bpe_run *r) {
  size_t ncap = r->phash_cap ? 2 * r->phash_cap : 4096;
  int32_t *h = tidei_alloc(r->env, ncap * sizeof *h);
  if (!h) return TIDE_ERR_NOMEM;
  memset(h, 0xff, ncap * sizeof *h);
  for (size_t k = 0; k < r->n_pairs; k++) {
    size_t i = pair_hash(r->pairs[k].a, r->pairs[k].b) & (ncap - 1);
    while (h[i] >= 0) i = (i + 1) & (ncap - 1);
    h[i] = (int32_t)k;
  }
  tidei_free(r->env, r->phash, r->phash_cap * sizeof *r->phash);
  r->phash = h;
  r->phash_cap = ncap;
  return TIDE_OK;
}

/* The id of pair (a, b), made with count 0 if new; -1 on failure. */
static int32_t pair_get(bpe_run *r, int32_t a, int32_t b) {
  if (2 * (r->n_pairs + 1) > r->phash_cap && rehash_pairs(r)) return -1;
  size_t mask = r->phash_cap - 1, i = pair_hash(a, b) & mask;
  for (; r->phash[i] >= 0; i = (i + 1) & mask) {
    const bpe_pair *p = &r->pairs[r->phash[i]];
    if (p->a == a && p->b == b) return r->phash[i];
  }
  if (r->n_pairs >= INT32_MAX ||
      tidei_tok_grow(r->env, (void **)&r->pairs, &r->pairs_cap, r->n_pairs + 1, sizeof *r->pairs))
    return -1;
  r->pairs[r->n_pairs] = (bpe_pair){a, b, 0, 0, -1, -1};
  r->phash[i] = (int32_t)r->n_pairs;
  return (int32_t)r->n_pairs++;
}

/* Puts word w on pair k's list unless it was the last one added. */
static int occ_add(bpe_run *r, int32_t k, int32_t w) {
  bpe_pair *p = &r->pairs[k];
  if (p->head >= 0 && r->occ[p->head].word == w) return TIDE_OK;
  if (r->n_occ >= INT32_MAX)
    return tidei_error(r->env, TIDE_ERR_FULL, "bpe trainer: too many pair occurrences");
  int st = tidei_tok_grow(r->env, (void **)&r->occ, &r->occ_cap, r->n_occ + 1, sizeof *r->occ);
  if (st) return st;
  r->occ[r->n_occ] = (bpe_occ){w, r->pairs[k].head};
  r->pairs[k].head = (int32_t)r->n_occ++;
  return TIDE_OK;
}

/* Heap order: higher count first, then smaller left id, then smaller right id. */
static int entry_before(const bpe_entry *x, const bpe_entry *y) {
  if (x->count != y->count) return x->count > y->count;
  if (x->a != y->a) return x->a < y->a;
  return x->b < y->b;
}

static int heap_push(bpe_run *r, bpe_entry e) {
  int st = tidei_tok_grow(r->env, (void **)&r->heap, &r->heap_cap, r->n_heap + 1, sizeof *r->heap);
  if (st) return st;
  size_t i = r->n_heap++;
  while (i > 0 && entry_before(&e, &r->heap[(i - 1) / 2])) {
    r->heap[i] = r->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  r->heap[i] = e;
  return TIDE_OK;
}

static bpe_entry heap_pop(bpe_run *r) {
  bpe_entry top = r->heap[0], e = r->heap[--r->n_heap];
  size_t i = 0, n = r->n_heap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && entry_before(&r->heap[c + 1], &r->heap[c])) c++;
    if (!entry_before(&r->heap[c], &e)) break;
    r->heap[i] = r->heap[c];
    i = c;
  }
  if (n) r->heap[i] = e;
  return top;
}

/* Adds delta to pair (a, b) of word w, remembering the count it had before
** this merge; a pair that appears in w goes on its list when add_occ. */
static int pair_add(bpe_run *r, int32_t a, int32_t b, int64_t delta, int32_t w, int add_occ) {
  int32_t k = pair_get(r, a, b);
  if (k < 0) return TIDE_ERR_NOMEM;
  bpe_pair *p = &r->pairs[k];
  if (p->stamp != r->stamp) {
    int st = tidei_tok_grow(r->env, (void **)&r->touched, &r->touched_cap, r->n_touched + 1,
                            sizeof *r->touched);
    if (st) return st;
    p = &r->pairs[k];
    p->stamp = r->stamp;
    p->before = p->count;
    r->touched[r->n_touched++] = k;
  }
  p->count += delta;
  return add_occ ? occ_add(r, k, w) : TIDE_OK;
}

/* ---------------------------------------------------------------- tokens */

static int32_t tok_find(const bpe_run *r, const char *s, size_t n, size_t *slot) {
  size_t mask = r->thash_cap - 1, i = (size_t)tidei_tok_hash(s, n, TIDEI_HASH_SEED) & mask;
  for (; r->thash[i] >= 0; i = (i + 1) & mask) {
    const bpe_tok *t = &r->toks[r->thash[i]];
    if (t->len == n && memcmp(r->tbytes + t->off, s, n) == 0) return r->thash[i];
  }
  *slot = i;
  return -1;
}

/* The token made of a's then b's bytes (a < 0: the single byte b), new or
** existing, in *id. thash has room for every token train will make. */
static int tok_make(bpe_run *r, int32_t a, int32_t b, int32_t *id) {
  int st;
  size_t la = a < 0 ? 0 : r->toks[a].len, lb = a < 0 ? 1 : r->toks[b].len;
  if ((st = tidei_tok_grow(r->env, (void **)&r->tbytes, &r->tbytes_cap, r->tbytes_n + la + lb, 1)))
    return st;
  char *s = r->tbytes + r->tbytes_n;
  if (a < 0) s[0] = (char)b;
  else {
    memcpy(s, r->tbytes + r->toks[a].off, la);
    memcpy(s + la, r->tbytes + r->toks[b].off, lb);
  }
  size_t slot = 0;
  if ((*id = tok_find(r, s, la + lb, &slot)) >= 0) return TIDE_OK;
  if (la + lb > UINT32_MAX - r->tbytes_n)
    return tidei_error(r->env, TIDE_ERR_FULL, "bpe trainer: token bytes exceed 4 GiB");
  if ((st = tidei_tok_grow(r->env, (void **)&r->toks, &r->toks_cap, r->n_toks + 1, sizeof *r->toks)))
    return st;
  r->toks[r->n_toks] = (bpe_tok){(uint32_t)r->tbytes_n, (uint32_t)(la + lb)};
  r->tbytes_n += la + lb;
  r->thash[slot] = (int32_t)r->n_toks;
  *id = (int32_t)r->n_toks++;
  return TIDE_OK;
}

/* ---------------------------------------------------------------- training */

/* Symbols of every word are its bytes; pairs counted, lists and heap filled. */
static int run_init(bpe_run *r, int32_t vocab_size) {
  tide_bpe_trainer *tr = r->tr;
  size_t nw = tr->n_words;
  int st;
  size_t cap = 16;
  while (cap < 2 * (size_t)vocab_size) cap *= 2;
  if (!(r->thash = tidei_alloc(r->env, cap * sizeof *r->thash))) return TIDE_ERR_NOMEM;
  r->thash_cap = cap;
  memset(r->thash, 0xff, cap * sizeof *r->thash);
  for (int32_t b = 0; b < 256; b++) {
    int32_t id;
    if ((st = tok_make(r, -1, b, &id))) return st;
  }
  if ((st = tidei_tok_grow(r->env, (void **)&r->sym, &r->sym_cap, tr->wtext_n + 1, sizeof *r->sym)) ||
      (st = tidei_tok_grow(r->env, (void **)&r->nsym, &r->nsym_cap, nw + 1, sizeof *r->nsym)) ||
      (st = tidei_tok_grow(r->env, (void **)&r->wstamp, &r->wstamp_cap, nw + 1, sizeof *r->wstamp)))
    return st;
  for (size_t i = 0; i < tr->wtext_n; i++) r->sym[i] = (unsigned char)tr->wtext[i];
  r->stamp = 0;
  for (size_t w = 0; w < nw; w++) {
    const bpe_word *x = &tr->words[w];
    r->nsym[w] = x->len;
    r->wstamp[w] = -1;
    for (uint32_t i = 0; i + 1 < x->len; i++)
      if ((st = pair_add(r, r->sym[x->off + i], r->sym[x->off + i + 1], x->count, (int32_t)w, 1)))
        return st;
  }
  for (size_t k = 0; k < r->n_pairs; k++)
    if ((st = heap_push(r, (bpe_entry){r->pairs[k].count, r->pairs[k].a, r->pairs[k].b})))
      return st;
  return TIDE_OK;
}

/* Rewrites word w's symbols with (a, b) -> id, moving its pair counts. */
static int merge_word(bpe_run *r, int32_t w, int32_t a, int32_t b, int32_t id) {
  int32_t *s = r->sym + r->tr->words[w].off; /* sym mirrors wtext */
  uint32_t n = r->nsym[w], i, o;
  int64_t c = r->tr->words[w].count;
  int st, found = 0;
  for (i = 0; i + 1 < n && !found; i++) found = s[i] == a && s[i + 1] == b;
  if (!found) return TIDE_OK; /* a stale entry of the list */
  for (i = 0; i + 1 < n; i++)
    if ((st = pair_add(r, s[i], s[i + 1], -c, w, 0))) return st;
  for (i = o = 0; i < n; o++) {
    if (i + 1 < n && s[i] == a && s[i + 1] == b) { s[o] = id; i += 2; }
    else s[o] = s[i++];
  }
  r->nsym[w] = n = o;
  for (i = 0; i + 1 < n; i++)
    if ((st = pair_add(r, s[i], s[i + 1], c, w, s[i] == id || s[i + 1] == id))) return st;
  return TIDE_OK;
}

/* One merge of pair k into a token; re-pushes the pairs whose count grew. */
static int merge_pair(bpe_run *r, int32_t k) {
  int32_t a = r->pairs[k].a, b = r->pairs[k].b, id;
  int st;
  if ((st = tok_make(r, a, b, &id)) ||
      (st = tidei_tok_grow(r->env, (void **)&r->merges, &r->merges_cap, 2 * (r->n_merges + 1),
                           sizeof *r->merges)))
    return st;
  r->merges[2 * r->n_merges] = a;
  r->merges[2 * r->n_merges + 1] = b;
  r->n_merges++;
  r->stamp++;
  r->n_touched = 0;
  for (int32_t o = r->pairs[k].head; o >= 0; o = r->occ[o].next) {
    int32_t w = r->occ[o].word;
    if (r->wstamp[w] == r->stamp) continue;
    r->wstamp[w] = r->stamp;
    if ((st = merge_word(r, w, a, b, id))) return st;
  }
  for (size_t t = 0; t < r->n_touched; t++) {
    const bpe_pair *p = &r->pairs[r->touched[t]];
    if (p->count > p->before && (st = heap_push(r, (bpe_entry){p->count, p->a, p->b}))) return st;
  }
  return TIDE_OK;
}

/* The most frequent pair with at least min_count, or -1 when none is left. */
static int32_t best_pair(bpe_run *r, int *st) {
  *st = TIDE_OK;
  while (r->n_heap) {
    bpe_entry e = heap_pop(r);
    int32_t k = pair_get(r, e.a, e.b);
    if (k < 0) { *st = TIDE_ERR_NOMEM; return -1; }
    int64_t cur = r->pairs[k].count;
    if (cur == e.count) return cur >= r->tr->min_count ? k : -1;
    /* stale: a lower count has no entry yet; a higher one has its own */
    if (cur > 0 && cur < e.count && (*st = heap_push(r, (bpe_entry){cur, e.a, e.b}))) return -1;
  }
  return -1;
}

/* GPT-2's bytes_to_unicode (tokenizer_bpe.c's byte_to_cp) as UTF-8 into out. */
static size_t byte_text(unsigned b, char *out) {
  unsigned cp = b <= 32 ? 256 + b : b >= 127 && b <= 160 ? 256 + 33 + (b - 127)
              : b == 173 ? 256 + 67 : b;
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  out[0] = (char)(0xC0 | (cp >> 6));
  out[1] = (char)(0x80 | (cp & 0x3F));
  return 2;
}

/* Encoded texts of tokens and merges into tr (the result of train). */
static int run_publish(bpe_run *r) {
  tide_bpe_trainer *tr = r->tr;
  tide_env *env = r->env;
  int32_t nl = (int32_t)r->n_toks, nv = nl + tr->n_special;
  size_t tsize = 0, msize = 0;
  for (int32_t i = 0; i < nl; i++) {
    for (uint32_t j = 0; j < r->toks[i].len; j++) {
      char tmp[2];
      tsize += byte_text((unsigned char)r->tbytes[r->toks[i].off + j], tmp);
    }
    tsize++;
  }
  if (tsize > UINT32_MAX / 4) return tidei_error(env, TIDE_ERR_FULL, "bpe trainer: vocabulary too large");
  tsize += tr->sp_size;
  if (!(tr->tok = tidei_alloc(env, tsize))) return TIDE_ERR_NOMEM;
  tr->tok_size = tsize; /* result_free needs each size as soon as its block exists */
  if (!(tr->tok_off = tidei_alloc(env, ((size_t)nv + 1) * sizeof *tr->tok_off)))
    return TIDE_ERR_NOMEM;
  tr->n_vocab = nv;
  size_t o = 0;
  for (int32_t i = 0; i < nl; i++) {
    tr->tok_off[i] = (uint32_t)o;
    for (uint32_t j = 0; j < r->toks[i].len; j++)
      o += byte_text((unsigned char)r->tbytes[r->toks[i].off + j], tr->tok + o);
    tr->tok[o++] = 0;
  }
  for (int32_t i = 0; i < tr->n_special; i++) {
    tr->tok_off[nl + i] = (uint32_t)o;
    memcpy(tr->tok + o, tr->sp_text + tr->sp_off[i], tr->sp_off[i + 1] - tr->sp_off[i]);
    o += tr->sp_off[i + 1] - tr->sp_off[i];
  }
  tr->tok_off[nv] = (uint32_t)o;
  for (size_t m = 0; m < r->n_merges; m++)
    msize += tr->tok_off[r->merges[2 * m] + 1] - tr->tok_off[r->merges[2 * m]] +
             tr->tok_off[r->merges[2 * m + 1] + 1] - tr->tok_off[r->merges[2 * m + 1]];
  if (!(tr->mrg = tidei_alloc(env, msize))) return TIDE_ERR_NOMEM;
  tr->mrg_size = msize;
  if (!(tr->mrg_off = tidei_alloc(env, (r->n_merges + 1) * sizeof *tr->mrg_off)))
    return TIDE_ERR_NOMEM;
  tr->n_merges = (int64_t)r->n_merges;
  o = 0;
  for (size_t m = 0; m < r->n_merges; m++) {
    int32_t a = r->merges[2 * m], b = r->merges[2 * m + 1];
    size_t la = tr->tok_off[a + 1] - tr->tok_off[a] - 1, lb = tr->tok_off[b + 1] - tr->tok_off[b] - 1;
    tr->mrg_off[m] = (uint32_t)o;
    memcpy(tr->mrg + o, tr->tok + tr->tok_off[a], la);
    tr->mrg[o + la] = ' ';
    memcpy(tr->mrg + o + la + 1, tr->tok + tr->tok_off[b], lb + 1);
    o += la + lb + 2;
  }
  tr->mrg_off[r->n_merges] = (uint32_t)o;
  return TIDE_OK;
}

/* A special text that is also a learned token's text would be ambiguous. */
static int check_specials(bpe_run *r) {
  tide_bpe_trainer *tr = r->tr;
  int32_t nl = (int32_t)r->n_toks;
  for (int32_t i = 0; i < tr->n_special; i++) {
    const char *s = tr->tok + tr->tok_off[nl + i];
    for (int32_t id = 0; id < nl; id++)
      if (strcmp(s, tr->tok + tr->tok_off[id]) == 0)
        return tidei_error(r->env, TIDE_ERR_ARG,
                           "bpe trainer: special token '%.64s' is also learned token %d", s,
                           (int)id);
  }
  return TIDE_OK;
}

int tide_bpe_trainer_train(tide_bpe_trainer *tr, int32_t vocab_size,
                           tide_bpe_progress_fn progress, void *ud) {
  if (!tr) return TIDE_ERR_ARG;
  result_free(tr);
  if (vocab_size < 256 + tr->n_special || vocab_size > INT32_MAX / 4)
    return tidei_error(tr->env, TIDE_ERR_ARG,
                       "bpe trainer: vocab_size %d outside [%d, %d]", (int)vocab_size,
                       (int)(256 + tr->n_special), INT32_MAX / 4);
  bpe_run r;
  memset(&r, 0, sizeof r);
  r.tr = tr;
  r.env = tr->env;
  int32_t target = vocab_size - tr->n_special;
  int st = run_init(&r, vocab_size);
  int32_t reported = 0;
  while (!st && (int32_t)r.n_toks < target) {
    if ((int32_t)r.n_toks - reported >= PROGRESS_EVERY) {
      reported = (int32_t)r.n_toks;
      if (progress) progress(ud, reported + tr->n_special, vocab_size);
      if (tidei_cancelled(r.env)) {
        st = tidei_error(r.env, TIDE_ERR_CANCELLED, "bpe trainer: cancelled");
        break;
      }
    }
    int32_t k = best_pair(&r, &st);
    if (k < 0) break;
    st = merge_pair(&r, k);
  }
  if (!st) st = run_publish(&r);
  if (!st) st = check_specials(&r);
  run_free(&r);
  if (st) result_free(tr);
  else if (progress) progress(ud, tr->n_vocab, vocab_size);
  return st;
}

/* ---------------------------------------------------------------- results */

const char *tide_bpe_trainer_token(const tide_bpe_trainer *tr, int32_t id, size_t *len) {
  if (!tr || id < 0 || id >= tr->n_vocab) return NULL;
  if (len) *len = tr->tok_off[id + 1] - tr->tok_off[id] - 1;
  return tr->tok + tr->tok_off[id];
}

const char *tide_bpe_trainer_merge(const tide_bpe_trainer *tr, int64_t i, size_t *len) {
  if (!tr || !tr->n_vocab || i < 0 || i >= tr->n_merges) return NULL;
  if (len) *len = tr->mrg_off[i + 1] - tr->mrg_off[i] - 1;
  return tr->mrg + tr->mrg_off[i];
}

/* The n strings of an offset table as pointer and length arrays. */
static int str_table(tide_env *env, const char *base, const uint32_t *off, int64_t n,
                     const char ***ptrs, size_t **lens) {
  *ptrs = tidei_alloc(env, ((size_t)n + 1) * sizeof **ptrs);
  *lens = tidei_alloc(env, ((size_t)n + 1) * sizeof **lens);
  if (!*ptrs || !*lens) return TIDE_ERR_NOMEM;
  for (int64_t i = 0; i < n; i++) {
    (*ptrs)[i] = base + off[i];
    (*lens)[i] = off[i + 1] - off[i] - 1;
  }
  return TIDE_OK;
}

int tide_bpe_trainer_write(const tide_bpe_trainer *tr, tide_gguf_writer *w) {
  if (!tr || !w) return TIDE_ERR_ARG;
  tide_env *env = tr->env;
  if (!tr->n_vocab) return tidei_error(env, TIDE_ERR_STATE, "bpe trainer: not trained");
  int32_t nv = tr->n_vocab, nl = nv - tr->n_special;
  const char **tp = NULL, **mp = NULL;
  size_t *tl = NULL, *ml = NULL;
  int32_t *types = tidei_alloc(env, (size_t)nv * sizeof *types);
  int st = types ? TIDE_OK : TIDE_ERR_NOMEM;
  if (!st) st = str_table(env, tr->tok, tr->tok_off, nv, &tp, &tl);
  if (!st) st = str_table(env, tr->mrg, tr->mrg_off, tr->n_merges, &mp, &ml);
  for (int32_t i = 0; !st && i < nv; i++)
    types[i] = i < nl ? TIDE_TOKEN_NORMAL : TIDE_TOKEN_CONTROL;
  if (!st) st = tide_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", 4);
  if (!st) st = tide_gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2", 5);
  if (!st) st = tide_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tp, tl, nv);
  if (!st) st = tide_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", TIDE_GGUF_INT32, types, nv);
  if (!st) st = tide_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", mp, ml, tr->n_merges);
  if (!st && tr->bos >= 0)
    st = tide_gguf_writer_set_int(w, "tokenizer.ggml.bos_token_id", TIDE_GGUF_UINT32, nl + tr->bos);
  if (!st && tr->eos >= 0)
    st = tide_gguf_writer_set_int(w, "tokenizer.ggml.eos_token_id", TIDE_GGUF_UINT32, nl + tr->eos);
  if (types) tidei_free(env, types, (size_t)nv * sizeof *types);
  if (tp) tidei_free(env, tp, ((size_t)nv + 1) * sizeof *tp);
  if (tl) tidei_free(env, tl, ((size_t)nv + 1) * sizeof *tl);
  if (mp) tidei_free(env, mp, ((size_t)tr->n_merges + 1) * sizeof *mp);
  if (ml) tidei_free(env, ml, ((size_t)tr->n_merges + 1) * sizeof *ml);
  return st;
}
