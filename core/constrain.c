/*
** constrain.c -- constraints, the vocabulary index and matchers.
** Layer: core. A tide_constraint wraps one engine's compiled object
** (constrain.h); a tide_vocab_index is a byte trie over the token pieces;
** a tide_matcher is one position in a constraint, with the mask walk.
**
** The trie is laid out in preorder in flat arrays: node i has a byte, the
** index one past its subtree (end[i]) and the tokens whose piece ends there
** (toks[tok_first[i], tok_first[i + 1])). The mask walk is a loop over node
** indices with an explicit stack of subtree ends: a node whose byte the
** engine rejects is skipped with i = end[i], otherwise its tokens are set
** and the walk descends; leaving a subtree pops one byte. Tokens with an
** empty piece (control tokens) and end-of-generation tokens are not in the
** trie: the former are never allowed, the latter exactly when the matcher
** accepts.
**
** The index copies the pieces it needs, so it does not keep the tokenizer
** alive (tokenizers are owned by their model and have no reference count);
** it keeps the tokenizer's env alive.
**
** For the regex engine the walk reads the DFA table directly (a stack of
** DFA states instead of push/pop through function pointers), and a subtree
** is taken whole when every byte in it loops on the current DFA state: each
** node with a large enough subtree records the set of bytes below it.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "constrain.h"
#include "grammar.h"
#include "regex.h"
#include "tokenizer.h"

/* Nodes whose subtree holds at least this many tokens get a byte set. */
#define VI_BULK_MIN 16
/* Nodes whose subtree holds at least max(VI_MAP_MIN, n_words / 4) tokens
** also get a bitmap of them (a bulk hit ORs words instead of scattering
** bits); the threshold doubles until the bitmaps fit in VI_MAP_BYTES. */
#define VI_MAP_MIN 256
#define VI_MAP_BYTES (16u << 20)

struct tide_constraint {
  tide_env *env;
  int refs;
  const tidei_engine *engine;
  void *compiled;
};

struct tide_vocab_index {
  tide_env *env;
  int refs;
  int32_t n_vocab;
  int32_t n_nodes;     /* node 0 is the root (empty prefix) */
  size_t node_cap;     /* allocated nodes (1 + bytes of all pieces) */
  int32_t max_len;     /* longest piece = depth of the trie */
  uint8_t *byte;       /* (n_nodes) the byte leading to the node */
  int32_t *end;        /* (n_nodes) one past the node's subtree */
  int32_t *tok_first;  /* (n_nodes + 1) into toks */
  int32_t *toks;       /* (n_toks) token ids in trie preorder */
  int32_t n_toks;
  int32_t *bset;       /* (n_nodes) index into bytes_below, -1 = none */
  uint64_t *bytes_below; /* (n_bset, 4) bytes occurring strictly below a node */
  int32_t *height;     /* (n_bset) bytes on the longest path below a node */
  int32_t n_bset;
  int32_t *map;        /* (n_nodes) index into maps, -1 = none */
  uint32_t *maps;      /* (n_map, n_words) tokens at or below a node */
  int32_t n_map, n_words;
  int32_t *eog;        /* (n_eog) end-of-generation ids */
  int32_t n_eog;
  char *piece;         /* pieces, concatenated (for advance) */
  size_t piece_size;
  uint32_t *piece_off; /* (n_vocab + 1) */
  uint8_t *kind;       /* (n_vocab) 0 normal, 1 eog, 2 never allowed */
};

struct tide_matcher {
  tide_constraint *c;
  tide_vocab_index *vi;
  int32_t max_push;
  size_t state_size;
  void *state;         /* state_size bytes */
  void *scratch;       /* state_size bytes (advance_bytes) */
  int32_t *stk;        /* (max_len + 2) subtree ends */
  int32_t *dstk;       /* (max_len + 2) DFA states (regex and grammar walks) */
  uint8_t *path;       /* (max_len + 2) bytes of the trie path (grammar walk) */
  uint64_t *follow;    /* (max_len + 2, 4) byte sets (grammar walk) */
  int32_t *fidx;       /* (max_len + 2) level whose follow set applies, -1 none */
  uint64_t *loops;     /* (n_dfa, 4) bytes that loop on each DFA state, or NULL */
  int32_t n_dfa;
};

/* ---------------------------------------------------------------- constraints */

int tidei_constraint_new(tide_env *env, const tidei_engine *engine, void *compiled,
                         tide_constraint **out) {
  *out = NULL;
  tide_constraint *c = tidei_calloc(env, 1, sizeof *c);
  if (!c) {
    engine->destroy(env, compiled);
    return TIDE_ERR_NOMEM;
  }
  c->env = env;
  c->refs = 1;
  c->engine = engine;
  c->compiled = compiled;
  tidei_env_ref(env);
  *out = c;
  return TIDE_OK;
}

static void constraint_unref(tide_constraint *c) {
  if (--c->refs > 0) return;
  tide_env *env = c->env;
  c->engine->destroy(env, c->compiled);
  tidei_free(env, c, sizeof *c);
  tidei_env_unref(env);
}

void tide_constraint_free(tide_constraint *c) {
  if (c) constraint_unref(c);
}

/* ---------------------------------------------------------------- vocabulary index */

static void vi_destroy(tide_vocab_index *vi) {
  tide_env *env = vi->env;
  size_t nn = (size_t)vi->n_nodes, nv = (size_t)vi->n_vocab, cap = vi->node_cap;
  if (vi->byte) tidei_free(env, vi->byte, cap);
  if (vi->end) tidei_free(env, vi->end, cap * sizeof(int32_t));
  if (vi->tok_first) tidei_free(env, vi->tok_first, (cap + 1) * sizeof(int32_t));
  if (vi->toks) tidei_free(env, vi->toks, ((size_t)vi->n_toks + 1) * sizeof(int32_t));
  if (vi->bset) tidei_free(env, vi->bset, nn * sizeof(int32_t));
  if (vi->bytes_below) tidei_free(env, vi->bytes_below, (size_t)vi->n_bset * 4 * sizeof(uint64_t));
  if (vi->height) tidei_free(env, vi->height, (size_t)vi->n_bset * sizeof(int32_t));
  if (vi->map) tidei_free(env, vi->map, nn * sizeof(int32_t));
  if (vi->maps)
    tidei_free(env, vi->maps, (size_t)vi->n_map * (size_t)vi->n_words * sizeof(uint32_t));
  if (vi->eog) tidei_free(env, vi->eog, (size_t)vi->n_eog * sizeof(int32_t));
  if (vi->piece) tidei_free(env, vi->piece, vi->piece_size);
  if (vi->piece_off) tidei_free(env, vi->piece_off, (nv + 1) * sizeof(uint32_t));
  if (vi->kind) tidei_free(env, vi->kind, nv);
  tidei_free(env, vi, sizeof *vi);
  tidei_env_unref(env);
}

static const uint8_t *vi_piece(const tide_vocab_index *vi, int32_t id, int32_t *len) {
  *len = (int32_t)(vi->piece_off[id + 1] - vi->piece_off[id]);
  return (const uint8_t *)vi->piece + vi->piece_off[id];
}

static int piece_less(const tide_vocab_index *vi, int32_t a, int32_t b) {
  int32_t na, nb;
  const uint8_t *pa = vi_piece(vi, a, &na), *pb = vi_piece(vi, b, &nb);
  int r = memcmp(pa, pb, (size_t)(na < nb ? na : nb));
  if (r) return r < 0;
  if (na != nb) return na < nb;
  return a < b;
}

/* Sorts ids[0, n) by piece (bottom-up merge sort, tmp of n). */
static void sort_by_piece(const tide_vocab_index *vi, int32_t *ids, int32_t *tmp, int32_t n) {
  int32_t *a = ids, *b = tmp;
  for (int32_t w = 1; w < n; w *= 2) {
    for (int32_t lo = 0; lo < n; lo += 2 * w) {
      int32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      int32_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) b[k++] = piece_less(vi, a[j], a[i]) ? a[j++] : a[i++];
      while (i < mid) b[k++] = a[i++];
      while (j < hi) b[k++] = a[j++];
    }
    int32_t *t = a; a = b; b = t;
  }
  if (a != ids) memcpy(ids, a, (size_t)n * sizeof(int32_t));
}

/* Copies the pieces and classifies tokens; ids gets the trie tokens. */
static int vi_copy_pieces(tide_vocab_index *vi, const tide_tokenizer *tok, int32_t *ids) {
  size_t total = 0, nv = (size_t)vi->n_vocab;
  for (int32_t id = 0; id < vi->n_vocab; id++) {
    size_t n;
    tide_token_piece(tok, id, &n);
    total += n;
  }
  if (total >= UINT32_MAX)
    return tidei_error(vi->env, TIDE_ERR_FORMAT, "vocab index: pieces too large");
  vi->piece_size = total ? total : 1;
  if (!(vi->piece = tidei_alloc(vi->env, vi->piece_size)) ||
      !(vi->piece_off = tidei_alloc(vi->env, (nv + 1) * sizeof(uint32_t))) ||
      !(vi->kind = tidei_calloc(vi->env, nv, 1)))
    return TIDE_ERR_NOMEM;
  size_t at = 0;
  vi->n_toks = 0;
  for (int32_t id = 0; id < vi->n_vocab; id++) {
    size_t n;
    const char *p = tide_token_piece(tok, id, &n);
    vi->piece_off[id] = (uint32_t)at;
    memcpy(vi->piece + at, p, n);
    at += n;
    if (tide_tokenizer_is_eog(tok, id)) { vi->kind[id] = 1; vi->n_eog++; }
    else if (n == 0) vi->kind[id] = 2;
    else {
      ids[vi->n_toks++] = id;
      if ((int32_t)n > vi->max_len) vi->max_len = (int32_t)n;
    }
  }
  vi->piece_off[nv] = (uint32_t)at;
  if (vi->n_eog && !(vi->eog = tidei_alloc(vi->env, (size_t)vi->n_eog * sizeof(int32_t))))
    return TIDE_ERR_NOMEM;
  int32_t k = 0;
  for (int32_t id = 0; id < vi->n_vocab; id++) if (vi->kind[id] == 1) vi->eog[k++] = id;
  return TIDE_OK;
}

/* Builds the preorder trie from the sorted ids (nodes <= 1 + total bytes). */
static int vi_build_trie(tide_vocab_index *vi, const int32_t *ids) {
  tide_env *env = vi->env;
  size_t cap = vi->node_cap = 1 + vi->piece_size;
  int32_t *path = NULL;
  int st = TIDE_OK;
  if (!(vi->byte = tidei_alloc(env, cap)) || !(vi->end = tidei_alloc(env, cap * sizeof(int32_t))) ||
      !(vi->tok_first = tidei_alloc(env, (cap + 1) * sizeof(int32_t))) ||
      !(vi->toks = tidei_alloc(env, ((size_t)vi->n_toks + 1) * sizeof(int32_t))) ||
      !(path = tidei_alloc(env, ((size_t)vi->max_len + 1) * sizeof(int32_t)))) {
    st = TIDE_ERR_NOMEM;
    goto done;
  }
  int32_t nn = 1, depth = 0, prev = -1;
  vi->byte[0] = 0;
  vi->tok_first[0] = 0;
  path[0] = 0;
  for (int32_t t = 0; t < vi->n_toks; t++) {
    int32_t id = ids[t], n, pn = 0, lcp = 0;
    const uint8_t *p = vi_piece(vi, id, &n), *pp = prev >= 0 ? vi_piece(vi, prev, &pn) : NULL;
    while (lcp < n && lcp < pn && p[lcp] == pp[lcp]) lcp++;
    while (depth > lcp) vi->end[path[depth--]] = nn; /* close subtrees not shared */
    while (depth < n) {
      vi->byte[nn] = p[depth];
      vi->tok_first[nn] = t;
      path[++depth] = nn++;
    }
    vi->toks[t] = id; /* tokens arrive in preorder: node path[n] gets it */
    prev = id;
  }
  while (depth > 0) vi->end[path[depth--]] = nn;
  vi->end[0] = nn;
  vi->tok_first[nn] = vi->n_toks;
  vi->n_nodes = nn;
  /* The tokens ending at node i are [tok_first[i], tok_first[i + 1]): a
  ** node gets the index of the token that made it, tokens equal to its
  ** prefix sort before longer ones, and node i + 1 (its first child, or the
  ** next node if it is a leaf) was made by the first token past it. The
  ** tokens at or below i are [tok_first[i], tok_first[end[i]]). */
done:
  if (path) tidei_free(env, path, ((size_t)vi->max_len + 1) * sizeof(int32_t));
  return st;
}

/* Byte sets of the bytes strictly below every node with at least
** VI_BULK_MIN tokens in its subtree, and the height of its subtree (the
** bulk tests of the walks). */
static int vi_bytes_below(tide_vocab_index *vi) {
  tide_env *env = vi->env;
  size_t nn = (size_t)vi->n_nodes;
  if (!(vi->bset = tidei_alloc(env, nn * sizeof(int32_t)))) return TIDE_ERR_NOMEM;
  int32_t nb = 0;
  for (size_t i = 0; i < nn; i++) {
    int32_t ntok = vi->tok_first[vi->end[i]] - vi->tok_first[i + 1];
    vi->bset[i] = ntok >= VI_BULK_MIN && vi->end[i] > (int32_t)i + 1 ? nb++ : -1;
  }
  vi->n_bset = nb;
  if (nb && (!(vi->bytes_below = tidei_calloc(env, (size_t)nb * 4, sizeof(uint64_t))) ||
             !(vi->height = tidei_calloc(env, (size_t)nb, sizeof(int32_t)))))
    return TIDE_ERR_NOMEM;
  /* node depths (preorder: the ancestors of i are on a stack) */
  int32_t *dep = tidei_alloc(env, nn * sizeof(int32_t));
  int32_t *stk = tidei_alloc(env, nn * sizeof(int32_t));
  if (!dep || !stk) {
    if (dep) tidei_free(env, dep, nn * sizeof(int32_t));
    if (stk) tidei_free(env, stk, nn * sizeof(int32_t));
    return TIDE_ERR_NOMEM;
  }
  int32_t top = 0;
  dep[0] = 0, stk[0] = 0;
  for (size_t i = 1; i < nn; i++) {
    while (vi->end[stk[top]] <= (int32_t)i) top--;
    dep[i] = dep[stk[top]] + 1;
    stk[++top] = (int32_t)i;
  }
  for (size_t i = 0; i < nn; i++) {
    if (vi->bset[i] < 0) continue;
    uint64_t *w = vi->bytes_below + (size_t)vi->bset[i] * 4;
    int32_t h = 0;
    for (int32_t j = (int32_t)i + 1; j < vi->end[i]; j++) {
      w[vi->byte[j] >> 6] |= 1ull << (vi->byte[j] & 63);
      if (dep[j] - dep[i] > h) h = dep[j] - dep[i];
    }
    vi->height[vi->bset[i]] = h;
  }
  tidei_free(env, dep, nn * sizeof(int32_t));
  tidei_free(env, stk, nn * sizeof(int32_t));
  /* bitmaps for the biggest subtrees, and always the root */
  size_t nw = (size_t)vi->n_words, min = VI_MAP_MIN > nw / 4 ? VI_MAP_MIN : nw / 4, count;
  for (;; min *= 2) {
    count = 0;
    for (size_t i = 0; i < nn; i++)
      count += !i || (size_t)(vi->tok_first[vi->end[i]] - vi->tok_first[i]) >= min;
    if (count * nw * sizeof(uint32_t) <= VI_MAP_BYTES) break;
  }
  if (!(vi->map = tidei_alloc(env, nn * sizeof(int32_t)))) return TIDE_ERR_NOMEM;
  if (count && !(vi->maps = tidei_calloc(env, count * nw, sizeof(uint32_t)))) return TIDE_ERR_NOMEM;
  vi->n_map = (int32_t)count;
  int32_t k = 0;
  for (size_t i = 0; i < nn; i++) {
    vi->map[i] = -1;
    if (i && (size_t)(vi->tok_first[vi->end[i]] - vi->tok_first[i]) < min) continue;
    uint32_t *w = vi->maps + (size_t)k * nw;
    for (int32_t t = vi->tok_first[i]; t < vi->tok_first[vi->end[i]]; t++)
      w[vi->toks[t] >> 5] |= 1u << (vi->toks[t] & 31);
    vi->map[i] = k++;
  }
  return TIDE_OK;
}

int tide_vocab_index_new(const tide_tokenizer *tok, tide_vocab_index **out) {
  if (!out)
    return tok ? tidei_error(tok->env, TIDE_ERR_ARG, "vocab index: out is NULL") : TIDE_ERR_ARG;
  *out = NULL;
  if (!tok) return TIDE_ERR_ARG;
  tide_env *env = tok->env;
  tide_vocab_index *vi = tidei_calloc(env, 1, sizeof *vi);
  if (!vi) return TIDE_ERR_NOMEM;
  vi->env = env;
  tidei_env_ref(env);
  vi->refs = 1;
  vi->n_vocab = tide_tokenizer_n_vocab(tok);
  vi->n_words = (vi->n_vocab + 31) / 32;
  size_t nv = (size_t)vi->n_vocab;
  int32_t *ids = tidei_alloc(env, nv * sizeof(int32_t)),
          *tmp = tidei_alloc(env, nv * sizeof(int32_t));
  int st = TIDE_OK;
  if (!ids || !tmp) { st = TIDE_ERR_NOMEM; goto done; }
  if ((st = vi_copy_pieces(vi, tok, ids))) goto done;
  sort_by_piece(vi, ids, tmp, vi->n_toks);
  if ((st = vi_build_trie(vi, ids)) || (st = vi_bytes_below(vi))) goto done;
done:
  if (ids) tidei_free(env, ids, nv * sizeof(int32_t));
  if (tmp) tidei_free(env, tmp, nv * sizeof(int32_t));
  if (st) {
    vi_destroy(vi);
    return st;
  }
  *out = vi;
  return TIDE_OK;
}

void tide_vocab_index_free(tide_vocab_index *vi) {
  if (vi && --vi->refs == 0) vi_destroy(vi);
}

/* ---------------------------------------------------------------- matchers */

static void matcher_destroy(tide_matcher *m) {
  tide_env *env = m->c->env;
  size_t depth = (size_t)m->vi->max_len + 2;
  if (m->state) tidei_free(env, m->state, m->state_size);
  if (m->scratch) tidei_free(env, m->scratch, m->state_size);
  if (m->stk) tidei_free(env, m->stk, depth * sizeof(int32_t));
  if (m->dstk) tidei_free(env, m->dstk, depth * sizeof(int32_t));
  if (m->path) tidei_free(env, m->path, depth);
  if (m->follow) tidei_free(env, m->follow, depth * 4 * sizeof(uint64_t));
  if (m->fidx) tidei_free(env, m->fidx, depth * sizeof(int32_t));
  tide_constraint *c = m->c;
  tide_vocab_index_free(m->vi);
  tidei_free(env, m, sizeof *m);
  constraint_unref(c);
}

/* A matcher with its buffers allocated; the state is left uninitialised. */
static int matcher_alloc(tide_constraint *c, tide_vocab_index *vi, tide_matcher **out) {
  tide_env *env = c->env;
  *out = NULL;
  tide_matcher *m = tidei_calloc(env, 1, sizeof *m);
  if (!m) return TIDE_ERR_NOMEM;
  m->c = c;
  c->refs++;
  m->vi = vi;
  vi->refs++;
  m->max_push = vi->max_len > 0 ? vi->max_len : 1;
  m->state_size = c->engine->state_size(c->compiled, m->max_push);
  size_t depth = (size_t)vi->max_len + 2;
  if (!(m->state = tidei_alloc(env, m->state_size)) ||
      !(m->scratch = tidei_alloc(env, m->state_size)) ||
      !(m->stk = tidei_alloc(env, depth * sizeof(int32_t))) ||
      !(m->dstk = tidei_alloc(env, depth * sizeof(int32_t))) ||
      !(m->path = tidei_alloc(env, depth)) ||
      !(m->follow = tidei_alloc(env, depth * 4 * sizeof(uint64_t))) ||
      !(m->fidx = tidei_alloc(env, depth * sizeof(int32_t)))) {
    matcher_destroy(m);
    return TIDE_ERR_NOMEM;
  }
  *out = m;
  return TIDE_OK;
}

int tide_matcher_new(tide_constraint *c, const tide_vocab_index *vi, tide_matcher **out) {
  if (!out) return c ? tidei_error(c->env, TIDE_ERR_ARG, "matcher: out is NULL") : TIDE_ERR_ARG;
  *out = NULL;
  if (!c) return TIDE_ERR_ARG;
  if (!vi) return tidei_error(c->env, TIDE_ERR_ARG, "matcher: vocab index is NULL");
  /* the index is immutable but reference counted: the count is not part of
  ** its value, hence the cast */
  int st = matcher_alloc(c, (tide_vocab_index *)vi, out);
  if (st) return st;
  c->engine->init(c->compiled, (*out)->state, (*out)->max_push);
  return TIDE_OK;
}

void tide_matcher_free(tide_matcher *m) {
  if (m) matcher_destroy(m);
}

int tide_matcher_clone(const tide_matcher *m, tide_matcher **out) {
  if (!out) return m ? tidei_error(m->c->env, TIDE_ERR_ARG, "matcher: out is NULL") : TIDE_ERR_ARG;
  *out = NULL;
  if (!m) return TIDE_ERR_ARG;
  int st = matcher_alloc(m->c, m->vi, out);
  if (st) return st;
  m->c->engine->copy(m->c->compiled, (*out)->state, m->state, m->state_size);
  return TIDE_OK;
}

static inline void set_bit(uint32_t *bits, int32_t id) { bits[id >> 5] |= 1u << (id & 31); }

static void set_tokens(const tide_vocab_index *vi, uint32_t *bits, int32_t a, int32_t b) {
  const int32_t *toks = vi->toks;
  for (int32_t k = a; k < b; k++) set_bit(bits, toks[k]);
}

/* Tokens at or below node i (bitmap OR when the node has one). */
static void set_subtree(const tide_vocab_index *vi, uint32_t *bits, int32_t i) {
  if (vi->map[i] >= 0) {
    const uint32_t *w = vi->maps + (size_t)vi->map[i] * (size_t)vi->n_words;
    for (int32_t k = 0; k < vi->n_words; k++) bits[k] |= w[k];
  } else {
    set_tokens(vi, bits, vi->tok_first[i], vi->tok_first[vi->end[i]]);
  }
}

static inline int subset4(const uint64_t *a, const uint64_t *b) {
  return !(a[0] & ~b[0]) && !(a[1] & ~b[1]) && !(a[2] & ~b[2]) && !(a[3] & ~b[3]);
}

/* Clears the tokens at or below node i. */
static void clear_subtree(const tide_vocab_index *vi, uint32_t *bits, int32_t i) {
  if (vi->map[i] >= 0) {
    const uint32_t *w = vi->maps + (size_t)vi->map[i] * (size_t)vi->n_words;
    for (int32_t k = 0; k < vi->n_words; k++) bits[k] &= ~w[k];
  } else {
    const int32_t *toks = vi->toks;
    for (int32_t k = vi->tok_first[i]; k < vi->tok_first[vi->end[i]]; k++)
      bits[toks[k] >> 5] &= ~(1u << (toks[k] & 31));
  }
}

/* The regex walk: a stack of DFA states; a subtree whose bytes all loop on
** the current state is allowed whole. Two modes with the same result: when
** the first bytes already rule out most tokens, set the allowed ones
** (cost ~ allowed tokens); otherwise start from every token and clear the
** rejected subtrees (cost ~ rejected tokens). */
static void mask_dfa(tide_matcher *m, uint32_t *bits) {
  const tide_vocab_index *vi = m->vi;
  const tidei_dfa *f = m->c->compiled;
  const tidei_regex_state *rs = m->state;
  const int32_t *next = f->next, *end = vi->end, *tf = vi->tok_first, *bset = vi->bset;
  const uint64_t *loops = f->loops, *below = vi->bytes_below;
  const uint8_t *byte = vi->byte;
  int32_t *stk = m->stk, *ds = m->dstk, nn = vi->n_nodes, depth = 0, i = 1;
  int32_t s0 = rs->ids[rs->n];
  const int32_t *row = next + (size_t)s0 * 256;
  if (bset[0] >= 0 && subset4(below + (size_t)bset[0] * 4, loops + (size_t)s0 * 4)) {
    set_subtree(vi, bits, 0);
    return;
  }
  int64_t upper = 0; /* tokens under first bytes the state accepts */
  for (int32_t c = 1; c < nn; c = end[c])
    if (row[byte[c]]) upper += tf[end[c]] - tf[c];
  int clear = 2 * upper > vi->n_toks;
  if (clear) set_subtree(vi, bits, 0);
  stk[0] = nn;
  ds[0] = s0;
  while (i < nn) {
    while (i >= stk[depth]) depth--;
    int32_t t = next[(size_t)ds[depth] * 256 + byte[i]];
    if (!t) {
      if (clear) clear_subtree(vi, bits, i);
      i = end[i];
      continue;
    }
    if (bset[i] >= 0 && subset4(below + (size_t)bset[i] * 4, loops + (size_t)t * 4)) {
      if (!clear) set_subtree(vi, bits, i);
      i = end[i];
      continue;
    }
    if (!clear)
      for (int32_t k = tf[i]; k < tf[i + 1]; k++) set_bit(bits, vi->toks[k]);
    stk[++depth] = end[i];
    ds[depth] = t;
    i++;
  }
}

/* Any engine: push each node's byte, pop when leaving its subtree. */
static void mask_generic(tide_matcher *m, uint32_t *bits) {
  const tide_vocab_index *vi = m->vi;
  const tidei_engine *e = m->c->engine;
  const void *cp = m->c->compiled;
  void *st = m->state;
  const int32_t *end = vi->end, *tf = vi->tok_first;
  int32_t *stk = m->stk, nn = vi->n_nodes, depth = 0, i = 1;
  stk[0] = nn;
  while (i < nn) {
    int32_t up = 0;
    while (i >= stk[depth]) { depth--; up++; }
    if (up) e->pop(cp, st, up);
    if (!e->push(cp, st, vi->byte[i])) { i = end[i]; continue; }
    for (int32_t k = tf[i]; k < tf[i + 1]; k++) set_bit(bits, vi->toks[k]);
    stk[++depth] = end[i];
    i++;
  }
  if (depth) e->pop(cp, st, depth);
}

/* Pushes path[from..to] into the engine; the count pushed. */
static int32_t push_path(const tidei_engine *e, const void *cp, void *st, const uint8_t *path,
                         int32_t from, int32_t to) {
  int32_t k = from;
  while (k <= to && e->push(cp, st, path[k])) k++;
  return k - from;
}

static inline int has_byte(const uint64_t *set, uint8_t b) { return set[b >> 6] >> (b & 63) & 1; }

static inline int disjoint4(const uint64_t *a, const uint64_t *b) {
  return !(a[0] & b[0]) && !(a[1] & b[1]) && !(a[2] & b[2]) && !(a[3] & b[3]);
}

/* Nonzero when lexeme state t (reached at node i, which has a byte set)
** takes every token below i: all the bytes below loop on t, or t is a
** counted lexeme between two x's and every byte below is a whole x, with
** room for the longest path. As the lexeme can end, the bytes below must
** also stay out of what the parser takes after it (follow fs). */
static int bulk_ok(const tide_vocab_index *vi, const tidei_lex *lx, int32_t i, int32_t t,
                   const uint64_t *fs) {
  const uint64_t *bb = vi->bytes_below + (size_t)vi->bset[i] * 4, *lp;
  if (tidei_lex_accept(lx, t) && !(fs && disjoint4(bb, fs))) return 0;
  if ((lp = tidei_lex_loops(lx, t))) return subset4(bb, lp);
  uint32_t k;
  int32_t j;
  if (t < TIDEI_LEX_VIRT) return 0;
  const tidei_lex_count *c = tidei_lex_counted(lx, t, &k, &j);
  return !j && subset4(bb, c->one) && (uint32_t)vi->height[vi->bset[i]] <= c->n - k;
}

/* The grammar walk: the generic push/pop walk, except below a node where
** one lexeme item decides the chart's next bytes (tidei_grammar_lex_state:
** DFA state ds[depth] != 0, and when the lexeme may end, the bytes that
** what follows it accepts, follow + 4 * fidx[depth]). There the walk
** steps the lexeme's DFA without pushing, as long as the byte is not one
** the parser might take instead (in follow, or unknown); a subtree whose
** bytes all loop on a state and stay out of follow is allowed whole. At
** other bytes the path is pushed for real (edepth: bytes pushed) and the
** walk goes on from the chart. Same result as mask_generic. As in mask_dfa,
** when most tokens are allowed at the start the walk clears rejected
** subtrees from a full mask instead of setting allowed ones. */
static void mask_grammar(tide_matcher *m, uint32_t *bits) {
  const tide_vocab_index *vi = m->vi;
  const tidei_engine *e = m->c->engine;
  const tidei_grammar *g = m->c->compiled;
  const tidei_lex *lx = &g->lex;
  void *st = m->state;
  const int32_t *end = vi->end, *tf = vi->tok_first, *bset = vi->bset;
  int32_t *stk = m->stk, *ds = m->dstk, *fidx = m->fidx, nn = vi->n_nodes, depth = 0, edepth = 0;
  int32_t more = vi->max_len + 1, i = 1;
  uint8_t *path = m->path;
  uint64_t *follow = m->follow;
  int has;
  stk[0] = nn;
  ds[0] = tidei_grammar_lex_state(g, st, more, follow, &has);
  fidx[0] = has ? 0 : -1;
  int clear = 0;
  if (ds[0]) {
    int open = tidei_lex_accept(lx, ds[0]); /* some bytes go to the parser */
    int64_t upper = 0;
    for (int32_t c = 1; c < nn; c = end[c]) {
      uint8_t b = vi->byte[c];
      if (tidei_lex_step(lx, ds[0], b) || (open && (!has || has_byte(follow, b))))
        upper += tf[end[c]] - tf[c];
    }
    if ((clear = 2 * upper > vi->n_toks)) set_subtree(vi, bits, 0);
  }
  while (i < nn) {
    while (i >= stk[depth]) depth--;
    if (edepth > depth) {
      e->pop(g, st, edepth - depth);
      edepth = depth;
    }
    uint8_t b = vi->byte[i];
    int32_t d = ds[depth], f = fidx[depth], nd = 0, nf = -1, ok = 1;
    const uint64_t *fs = f >= 0 ? follow + (size_t)f * 4 : NULL;
    if (d && !(tidei_lex_accept(lx, d) && (!fs || has_byte(fs, b)))) {
      int32_t t = tidei_lex_step(lx, d, b);
      if (!t) ok = 0;
      else {
        if (bset[i] >= 0 && bulk_ok(vi, lx, i, t, fs)) {
          if (!clear) set_subtree(vi, bits, i);
          i = end[i];
          continue;
        }
        nd = t, nf = f;
      }
    } else {
      path[depth + 1] = b;
      edepth += push_path(e, g, st, path, edepth + 1, depth + 1);
      ok = edepth == depth + 1; /* short only when the chart is full */
      if (ok) {
        nd = tidei_grammar_lex_state(g, st, more, follow + (size_t)(depth + 1) * 4, &has);
        nf = has ? depth + 1 : -1;
      }
    }
    if (!ok) {
      if (clear) clear_subtree(vi, bits, i);
      i = end[i];
      continue;
    }
    if (!clear)
      for (int32_t k = tf[i]; k < tf[i + 1]; k++) set_bit(bits, vi->toks[k]);
    path[depth + 1] = b;
    stk[++depth] = end[i];
    ds[depth] = nd;
    fidx[depth] = nf;
    i++;
  }
  if (edepth) e->pop(g, st, edepth);
}

void tide_matcher_mask(tide_matcher *m, uint32_t *bits) {
  const tide_vocab_index *vi = m->vi;
  memset(bits, 0, (((size_t)vi->n_vocab + 31) / 32) * sizeof(uint32_t));
  if (m->c->engine == &tidei_regex_engine) mask_dfa(m, bits);
  else if (m->c->engine == &tidei_grammar_engine) mask_grammar(m, bits);
  else mask_generic(m, bits);
  if (m->c->engine->accepting(m->c->compiled, m->state))
    for (int32_t k = 0; k < vi->n_eog; k++) set_bit(bits, vi->eog[k]);
}

/* The piece of a token for messages: printable ASCII kept, the rest \xNN. */
static void piece_text(const tide_vocab_index *vi, int32_t id, char *out, size_t cap) {
  int32_t n;
  const uint8_t *p = vi_piece(vi, id, &n);
  size_t k = 0;
  for (int32_t j = 0; j < n && k + 8 < cap; j++) {
    if (p[j] >= 32 && p[j] < 127 && p[j] != '\'' && p[j] != '\\') out[k++] = (char)p[j];
    else k += (size_t)snprintf(out + k, cap - k, "\\x%02x", p[j]);
  }
  if (k + 8 >= cap && k + 4 < cap) { memcpy(out + k, "...", 3); k += 3; }
  out[k] = 0;
}

int tide_matcher_advance(tide_matcher *m, int32_t token) {
  tide_env *env = m->c->env;
  const tide_vocab_index *vi = m->vi;
  const tidei_engine *e = m->c->engine;
  const void *cp = m->c->compiled;
  if (token < 0 || token >= vi->n_vocab)
    return tidei_error(env, TIDE_ERR_ARG, "advance: token %d out of range (n_vocab %d)", (int)token,
                       (int)vi->n_vocab);
  if (vi->kind[token] == 1) {
    if (e->accepting(cp, m->state)) return TIDE_OK;
    return tidei_error(env, TIDE_ERR_ARG,
                       "advance: end-of-generation token %d before the constraint is complete",
                       (int)token);
  }
  if (vi->kind[token] == 2)
    return tidei_error(env, TIDE_ERR_ARG, "advance: token %d has no text and is never allowed",
                       (int)token);
  int32_t n;
  const uint8_t *p = vi_piece(vi, token, &n);
  for (int32_t j = 0; j < n; j++) {
    if (!e->push(cp, m->state, p[j])) {
      if (j) e->pop(cp, m->state, j);
      char txt[80];
      piece_text(vi, token, txt, sizeof txt);
      return tidei_error(env, TIDE_ERR_ARG,
                         "advance: token %d '%s' not allowed here (byte %d rejected)", (int)token,
                         txt, (int)j);
    }
  }
  e->commit(cp, m->state);
  return TIDE_OK;
}

int tide_matcher_advance_bytes(tide_matcher *m, const char *s, size_t n) {
  tide_env *env = m->c->env;
  const tidei_engine *e = m->c->engine;
  const void *cp = m->c->compiled;
  if (!n) return TIDE_OK;
  if (!s) return tidei_error(env, TIDE_ERR_ARG, "advance_bytes: bytes are NULL");
  /* work on a copy, committing every max_push bytes; copy back at the end */
  e->copy(cp, m->scratch, m->state, m->state_size);
  for (size_t j = 0; j < n; j++) {
    if (j && j % (size_t)m->max_push == 0) e->commit(cp, m->scratch);
    if (!e->push(cp, m->scratch, (uint8_t)s[j]))
      return tidei_error(env, TIDE_ERR_ARG, "advance_bytes: byte %zu (0x%02x) not allowed here", j,
                         (unsigned)(uint8_t)s[j]);
  }
  e->commit(cp, m->scratch);
  e->copy(cp, m->state, m->scratch, m->state_size);
  return TIDE_OK;
}

int tide_matcher_accepting(const tide_matcher *m) {
  return m->c->engine->accepting(m->c->compiled, m->state) != 0;
}

int tide_matcher_finished(const tide_matcher *m) {
  return m->c->engine->finished(m->c->compiled, m->state) != 0;
}

void tide_mask_apply(const uint32_t *bits, float *logits, int32_t n_vocab) {
  for (int32_t w = 0; w * 32 < n_vocab; w++) {
    uint32_t b = bits[w];
    if (b == 0xFFFFFFFFu) continue;
    int32_t lim = n_vocab - w * 32 < 32 ? n_vocab - w * 32 : 32;
    for (int32_t k = 0; k < lim; k++)
      if (!(b >> k & 1)) logits[w * 32 + k] = -INFINITY;
  }
}
