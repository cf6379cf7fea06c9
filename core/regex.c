/*
** regex.c -- PCRE2-syntax regular expressions compiled to a byte DFA.
** Layer: core. Implements tide_regex_compile: pattern -> NFA here, NFA ->
** DFA and the "regex" engine of constrain.h in regex_dfa.c.
**
** Pipeline: the pattern is parsed (no C recursion: groups live on an explicit
** frame stack) straight into a Thompson NFA over bytes; code point classes
** become UTF-8 byte automata (ranges split by encoded length, prefixes merged
** in a small trie, suffixes shared by hash-consing). regex_dfa.c turns the
** NFA into a minimised DFA and runs it as an engine.
**
** Semantics follow PCRE2 in UTF mode without UCP: \d \w \s and POSIX classes
** are ASCII, \h \v and \p{..} are Unicode, '.' is any code point but \n (any
** with (?s)). Whole-output matching: the pattern is anchored at both ends, so
** ^ \A \G may appear only where nothing can have been consumed and $ \Z \z
** only where nothing can follow; elsewhere they are rejected (a check on the
** NFA, so "(^a|^b)" and "a$|b$" are fine, "a^b" and "(^a)+" are not).
** Unicode properties are asked of PCRE2 once per property per compile: all
** code points are laid out as UTF-8 in one buffer and "\p{X}+" is matched
** along it (JIT when available), ~3 ms for the buffer plus 3-9 ms per
** distinct property. Extension over PCRE2: \uhhhh and \u{h..} (JSON Schema
** patterns use them); PCRE2 itself rejects \u.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "regex.h"

#define MAX_CP 0x10FFFFu


/* A fragment: entry state and the one exit state whose out is unpatched. */
typedef struct { int32_t start, exit; } frag;

typedef struct { uint32_t lo, hi; } cprange;
typedef struct { cprange *r; int32_t n; size_t cap; } cpset;

enum { A_NONE, A_REPEATABLE, A_QUANTIFIED, A_FIXED };
enum { F_DOTALL = 1, F_EXT = 2, F_EXTMORE = 4 };

typedef struct {
  int32_t first;    /* first NFA state of the group */
  int32_t alt_base; /* alts[alt_base, n_alts) are its finished alternatives */
  frag seq;         /* current alternative so far (start < 0: empty) */
  frag atom;        /* pending atom, not yet appended to seq */
  int32_t atom_first;
  int atom_kind;    /* A_* */
  unsigned flags;   /* F_* in effect */
  size_t off;       /* offset of the '(' */
} frame;

typedef struct { char name[48]; cpset set; } propcache;

typedef struct {
  uint8_t lo, hi;
  int32_t child, last, sib; /* first child, last child, next sibling */
  int32_t state;            /* NFA state once emitted */
} tnode;

typedef struct {
  tide_env *env;
  int st;                   /* sticky status of state creation */
  const char *p;
  size_t len, pos;
  tidei_nstate *ns; size_t ns_cap; int32_t n_ns;
  frag *alts; size_t alts_cap; int32_t n_alts;
  frame *fr; int n_fr;      /* (TIDEI_RE_MAX_DEPTH + 1) */
  int quoting;              /* inside \Q...\E */
  int n_caps;               /* capturing groups opened so far */
  cpset cls, tmp;
  propcache *props; size_t props_cap; int n_props;
  pcre2_general_context *gctx;
  unsigned char *cpbuf; size_t cpbuf_len;
  tnode *tn; size_t tn_cap;
  int32_t *hash; size_t hash_cap;
  int32_t *kids; size_t kids_cap;
} rc;

/* ---------------------------------------------------------------- helpers */

static int grow(tide_env *env, void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return TIDE_OK;
  size_t n = *cap ? *cap : 16;
  while (n < need) n *= 2;
  void *q = tidei_realloc(env, *p, *cap * elem, n * elem);
  if (!q) return TIDE_ERR_NOMEM;
  *p = q;
  *cap = n;
  return TIDE_OK;
}

static int fail(rc *c, int status, size_t off, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 4, 5)))
#endif
  ;
static int fail(rc *c, int status, size_t off, const char *fmt, ...) {
  char msg[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!c->st) c->st = status;
  return tidei_error(c->env, status, "regex offset %zu: %s", off, msg);
}

/* A new NFA state, or index 0 with c->st set when the NFA is full (callers
** check c->st before trusting the result; state 0 is scribbled harmlessly). */
static int32_t new_state(rc *c, int kind, int lo, int hi, int32_t out, int32_t out2) {
  if (c->st) return 0;
  if (c->n_ns >= TIDEI_RE_MAX_NFA) {
    fail(c, TIDE_ERR_UNSUPPORTED, c->pos,
         "pattern too large: its automaton needs more than %d states", TIDEI_RE_MAX_NFA);
    return 0;
  }
  if (grow(c->env, (void **)&c->ns, &c->ns_cap, (size_t)c->n_ns + 1, sizeof(tidei_nstate))) {
    c->st = TIDE_ERR_NOMEM;
    return 0;
  }
  tidei_nstate *s = &c->ns[c->n_ns];
  s->kind = (uint8_t)kind;
  s->lo = (uint8_t)lo;
  s->hi = (uint8_t)hi;
  s->out = out;
  s->out2 = out2;
  s->off = (int32_t)c->pos;
  return c->n_ns++;
}

static frag eps_frag(rc *c) {
  int32_t s = new_state(c, TIDEI_NFA_EPS, 0, 0, -1, -1);
  return (frag){ s, s };
}

static int utf8_encode(uint32_t cp, uint8_t *o) {
  if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
  if (cp < 0x800) {
    o[0] = (uint8_t)(0xC0 | cp >> 6);
    o[1] = (uint8_t)(0x80 | (cp & 63));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (uint8_t)(0xE0 | cp >> 12); o[1] = (uint8_t)(0x80 | ((cp >> 6) & 63));
    o[2] = (uint8_t)(0x80 | (cp & 63));
    return 3;
  }
  o[0] = (uint8_t)(0xF0 | cp >> 18); o[1] = (uint8_t)(0x80 | ((cp >> 12) & 63));
  o[2] = (uint8_t)(0x80 | ((cp >> 6) & 63)); o[3] = (uint8_t)(0x80 | (cp & 63));
  return 4;
}

/* Decodes one UTF-8 code point of s[0, n); returns its length, 0 if invalid. */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
  if (n == 0) return 0;
  uint32_t c0 = s[0];
  if (c0 < 0x80) { *cp = c0; return 1; }
  int len = c0 >= 0xF0 ? 4 : c0 >= 0xE0 ? 3 : c0 >= 0xC2 ? 2 : 0;
  if (!len || c0 > 0xF4 || (size_t)len > n) return 0;
  uint32_t v = c0 & (0x3F >> (len - 1));
  for (int i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = v << 6 | (s[i] & 63);
  }
  static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
  if (v < min[len] || v > MAX_CP || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

/* ---------------------------------------------------------------- code point sets */

static void set_add(rc *c, cpset *s, uint32_t lo, uint32_t hi) {
  if (c->st) return;
  if (grow(c->env, (void **)&s->r, &s->cap, (size_t)s->n + 1, sizeof(cprange))) {
    c->st = TIDE_ERR_NOMEM;
    return;
  }
  s->r[s->n++] = (cprange){ lo, hi };
}

static int cmp_range(const void *a, const void *b) {
  const cprange *x = a, *y = b;
  return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void set_norm(cpset *s) {
  if (s->n < 2) return;
  qsort(s->r, (size_t)s->n, sizeof(cprange), cmp_range);
  int32_t k = 0;
  for (int32_t i = 1; i < s->n; i++) {
    if (s->r[i].lo <= s->r[k].hi + 1) {
      if (s->r[i].hi > s->r[k].hi) s->r[k].hi = s->r[i].hi;
    } else {
      s->r[++k] = s->r[i];
    }
  }
  s->n = k + 1;
}

/* s = complement of s over [0, MAX_CP] (tmp is scratch). */
static void set_negate(rc *c, cpset *s) {
  set_norm(s);
  c->tmp.n = 0;
  uint32_t next = 0;
  for (int32_t i = 0; i < s->n; i++) {
    if (s->r[i].lo > next) set_add(c, &c->tmp, next, s->r[i].lo - 1);
    next = s->r[i].hi + 1;
  }
  if (next <= MAX_CP) set_add(c, &c->tmp, next, MAX_CP);
  cpset t = *s;
  *s = c->tmp;
  c->tmp = t;
}

static void set_append(rc *c, cpset *dst, const cpset *src, int neg) {
  if (!neg) {
    for (int32_t i = 0; i < src->n; i++) set_add(c, dst, src->r[i].lo, src->r[i].hi);
    return;
  }
  uint32_t next = 0;
  for (int32_t i = 0; i < src->n; i++) {
    if (src->r[i].lo > next) set_add(c, dst, next, src->r[i].lo - 1);
    next = src->r[i].hi + 1;
  }
  if (next <= MAX_CP) set_add(c, dst, next, MAX_CP);
}

/* Adds a predefined class (d w s h v D W S H V, or 'N' = not newline). */
static void set_escape_class(rc *c, cpset *s, int e) {
  static const cprange d[] = { { '0', '9' } };
  static const cprange w[] = { { '0', '9' }, { 'A', 'Z' }, { '_', '_' }, { 'a', 'z' } };
  static const cprange sp[] = { { 9, 13 }, { ' ', ' ' } };
  static const cprange h[] = { { 9, 9 }, { ' ', ' ' }, { 0xA0, 0xA0 }, { 0x1680, 0x1680 },
                               { 0x180E, 0x180E }, { 0x2000, 0x200A }, { 0x202F, 0x202F },
                               { 0x205F, 0x205F }, { 0x3000, 0x3000 } };
  static const cprange v[] = { { 10, 13 }, { 0x85, 0x85 }, { 0x2028, 0x2029 } };
  static const cprange nl[] = { { 10, 10 } };
  const cprange *t;
  int32_t n;
  switch (e | 0x20) {
  case 'd': t = d; n = 1; break;
  case 'w': t = w; n = 4; break;
  case 's': t = sp; n = 2; break;
  case 'h': t = h; n = 9; break;
  case 'v': t = v; n = 3; break;
  default: t = nl; n = 1; break; /* 'n': \N is [^\n] */
  }
  cpset src = { (cprange *)t, n, 0 };
  set_append(c, s, &src, e != 'N' && (e & 0x20) == 0 ? 1 : e == 'N');
}

/* POSIX [:name:] (ASCII, as PCRE2 without UCP). Returns 0 if unknown. */
static int set_posix(rc *c, cpset *s, const char *name, size_t n, int neg) {
  static const struct { const char *name; const char *r; } tab[] = {
    { "alnum", "09AZaz" }, { "alpha", "AZaz" }, { "ascii", "\x01\x7f" },
    { "blank", "\t\t  " }, { "cntrl", "\x01\x1f\x7f\x7f" }, { "digit", "09" },
    { "graph", "!~" }, { "lower", "az" }, { "print", " ~" },
    { "punct", "!/:@[`{~" }, { "space", "\t\r  " }, { "upper", "AZ" },
    { "word", "09AZ__az" }, { "xdigit", "09AFaf" },
  };
  for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
    if (strlen(tab[i].name) != n || memcmp(tab[i].name, name, n)) continue;
    cpset src = { NULL, 0, 0 };
    cprange rr[8];
    const char *r = tab[i].r;
    size_t k = strlen(r);
    for (size_t j = 0; j + 1 < k; j += 2) rr[src.n++] = (cprange){(uint8_t)r[j], (uint8_t)r[j + 1]};
    if (i == 2 || i == 4) rr[0].lo = 0; /* ascii, cntrl start at NUL */
    src.r = rr;
    set_append(c, s, &src, neg);
    return 1;
  }
  return 0;
}

/* ---------------------------------------------------------------- Unicode properties */

/* Every code point but the surrogates, in order, as UTF-8 (built once). */
static int cp_buffer(rc *c) {
  if (c->cpbuf) return TIDE_OK;
  size_t n = 0x80 + 0x780 * 2 + (0x10000 - 0x800 - 0x800) * 3 + 0x100000 * 4;
  c->cpbuf = tidei_alloc(c->env, n);
  if (!c->cpbuf) return c->st = TIDE_ERR_NOMEM;
  size_t k = 0;
  for (uint32_t cp = 0; cp <= MAX_CP; cp++) {
    if (cp == 0xD800) cp = 0xE000;
    k += (size_t)utf8_encode(cp, c->cpbuf + k);
  }
  c->cpbuf_len = k;
  return TIDE_OK;
}

/* Code point of the UTF-8 sequence at byte offset off of cpbuf (MAX_CP + 1
** at the end). */
static uint32_t cp_at(const rc *c, size_t off) {
  uint32_t cp = MAX_CP + 1;
  if (off < c->cpbuf_len) utf8_decode(c->cpbuf + off, c->cpbuf_len - off, &cp);
  return cp;
}

/* Ranges of the property named name[0, n) (as written between \p{ and }),
** computed by PCRE2 and cached for this compile. */
static const cpset *prop_set(rc *c, const char *name, size_t n, size_t off) {
  for (int i = 0; i < c->n_props; i++)
    if (strlen(c->props[i].name) == n && !memcmp(c->props[i].name, name, n))
      return &c->props[i].set;
  if (!c->gctx && !(c->gctx = pcre2_general_context_create(tidei_malloc_sized, tidei_free_sized, c->env))) {
    c->st = TIDE_ERR_NOMEM;
    return NULL;
  }
  char pat[64];
  snprintf(pat, sizeof pat, "\\p{%.*s}+", (int)n, name);
  int err;
  PCRE2_SIZE eoff;
  pcre2_compile_context *cc = pcre2_compile_context_create(c->gctx);
  pcre2_code *re =
      cc ? pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &eoff, cc) : NULL;
  pcre2_compile_context_free(cc);
  if (!re) {
    if (!cc || err == PCRE2_ERROR_HEAP_FAILED) { c->st = TIDE_ERR_NOMEM; return NULL; }
    fail(c, TIDE_ERR_FORMAT, off, "unknown property '\\p{%.*s}'", (int)n, name);
    return NULL;
  }
  propcache *pc = NULL;
  pcre2_match_data *md = NULL;
  if (cp_buffer(c) || grow(c->env, (void **)&c->props, &c->props_cap, (size_t)c->n_props + 1,
                           sizeof(propcache)) ||
      !(md = pcre2_match_data_create(2, c->gctx))) {
    c->st = TIDE_ERR_NOMEM;
    goto done;
  }
  pc = &c->props[c->n_props++];
  memset(pc, 0, sizeof *pc);
  memcpy(pc->name, name, n);
  int jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
  size_t at = 0;
  while (at < c->cpbuf_len && !c->st) {
    int r = jit ? pcre2_jit_match(re, c->cpbuf, c->cpbuf_len, at, PCRE2_NO_UTF_CHECK, md, NULL)
                : pcre2_match(re, c->cpbuf, c->cpbuf_len, at, PCRE2_NO_UTF_CHECK, md, NULL);
    if (r < 0) break;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    if (ov[1] <= ov[0]) break;
    uint32_t lo = cp_at(c, ov[0]), hi = cp_at(c, ov[1]) - 1; /* run [lo, next start) */
    if (hi == 0xDFFF) hi = 0xD7FF;                            /* the run spans the surrogate gap */
    set_add(c, &pc->set, lo, hi);
    if (lo <= 0xD7FF && hi >= 0xE000) {
      pc->set.r[pc->set.n - 1].hi = 0xD7FF;
      set_add(c, &pc->set, 0xE000, hi);
    }
    at = ov[1];
  }
done:
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  return c->st ? NULL : &pc->set;
}

/* ---------------------------------------------------------------- classes to UTF-8 automata */

/* Interns an NFA state (kind, lo, hi, out, out2) among those made since
** base (suffix sharing within one class). */
static int32_t intern(rc *c, int32_t base, int kind, int lo, int hi, int32_t out, int32_t out2) {
  size_t mask = c->hash_cap - 1;
  size_t h = ((size_t)kind * 31 + (size_t)lo * 131 + (size_t)hi * 7919 + (size_t)out * 2654435761u +
              (size_t)(out2 + 1) * 40503u) & mask;
  for (;; h = (h + 1) & mask) {
    int32_t s = c->hash[h];
    if (s < 0) break;
    const tidei_nstate *q = &c->ns[s];
    if (s >= base && q->kind == kind && q->lo == lo && q->hi == hi && q->out == out &&
        q->out2 == out2)
      return s;
  }
  int32_t s = new_state(c, kind, lo, hi, out, out2);
  if (!c->st) c->hash[h] = s;
  return s;
}

/* Appends one UTF-8 byte-range sequence to the class trie (sequences come in
** code point order, so a shared prefix is always along the last path). */
static void trie_add(rc *c, const uint8_t *lo, const uint8_t *hi, int n, int32_t *n_tn) {
  int32_t cur = 0;
  for (int i = 0; i < n && !c->st; i++) {
    int32_t k = c->tn[cur].last;
    if (k >= 0 && c->tn[k].lo == lo[i] && c->tn[k].hi == hi[i]) { cur = k; continue; }
    if (grow(c->env, (void **)&c->tn, &c->tn_cap, (size_t)*n_tn + 1, sizeof(tnode))) {
      c->st = TIDE_ERR_NOMEM;
      return;
    }
    k = (*n_tn)++;
    c->tn[k] = (tnode){ lo[i], hi[i], -1, -1, -1, -1 };
    if (c->tn[cur].last >= 0) c->tn[c->tn[cur].last].sib = k;
    else c->tn[cur].child = k;
    c->tn[cur].last = k;
    cur = k;
  }
}

/* Splits [lo, hi] (no surrogates, one encoded length... or not) into UTF-8
** sequences of byte ranges and adds them to the trie, in order. */
static void utf8_ranges(rc *c, uint32_t lo, uint32_t hi, int32_t *n_tn) {
  uint32_t stk[64][2];
  int sp = 0;
  stk[sp][0] = lo; stk[sp][1] = hi; sp++;
  while (sp > 0 && !c->st) {
    sp--;
    uint32_t a = stk[sp][0], b = stk[sp][1];
    static const uint32_t lim[3] = { 0x7F, 0x7FF, 0xFFFF };
    int split = 0;
    for (int i = 0; i < 3 && !split; i++) {
      if (a <= lim[i] && b > lim[i]) {
        stk[sp][0] = lim[i] + 1; stk[sp][1] = b; sp++;
        stk[sp][0] = a; stk[sp][1] = lim[i]; sp++;
        split = 1;
      }
    }
    for (int i = 1; i < 4 && !split && b > 0x7F; i++) {
      uint32_t m = (1u << (6 * i)) - 1;
      if ((a & ~m) == (b & ~m)) continue;
      if (a & m) {
        stk[sp][0] = (a | m) + 1; stk[sp][1] = b; sp++;
        stk[sp][0] = a; stk[sp][1] = a | m; sp++;
        split = 1;
      } else if ((b & m) != m) {
        stk[sp][0] = b & ~m; stk[sp][1] = b; sp++;
        stk[sp][0] = a; stk[sp][1] = (b & ~m) - 1; sp++;
        split = 1;
      }
    }
    if (split) continue;
    uint8_t x[4], y[4];
    int n = utf8_encode(a, x);
    utf8_encode(b, y);
    trie_add(c, x, y, n, n_tn);
  }
}

/* The NFA fragment of a code point set (normalised here). */
static frag set_frag(rc *c, cpset *s) {
  set_norm(s);
  if (s->n == 1 && s->r[0].lo == s->r[0].hi && s->r[0].lo < 0x80) {
    int32_t q = new_state(c, TIDEI_NFA_RANGE, (int)s->r[0].lo, (int)s->r[0].lo, -1, -1);
    return (frag){ q, q };
  }
  int32_t n_tn = 1;
  if (grow(c->env, (void **)&c->tn, &c->tn_cap, 1, sizeof(tnode))) {
    c->st = TIDE_ERR_NOMEM;
    return (frag){0, 0};
  }
  c->tn[0] = (tnode){ 0, 0, -1, -1, -1, -1 };
  for (int32_t i = 0; i < s->n && !c->st; i++) {
    uint32_t lo = s->r[i].lo, hi = s->r[i].hi;
    if (lo <= 0xDFFF && hi >= 0xD800) { /* drop the surrogates */
      if (lo < 0xD800) utf8_ranges(c, lo, 0xD7FF, &n_tn);
      if (hi > 0xDFFF) utf8_ranges(c, 0xE000, hi, &n_tn);
    } else {
      utf8_ranges(c, lo, hi, &n_tn);
    }
  }
  size_t hc = 64;
  while (hc < (size_t)n_tn * 4) hc *= 2;
  if (c->st || grow(c->env, (void **)&c->hash, &c->hash_cap, hc, sizeof(int32_t)) ||
      grow(c->env, (void **)&c->kids, &c->kids_cap, 256, sizeof(int32_t))) {
    if (!c->st) c->st = TIDE_ERR_NOMEM;
    return (frag){ 0, 0 };
  }
  for (size_t i = 0; i < c->hash_cap; i++) c->hash[i] = -1;
  int32_t base = c->n_ns;
  int32_t x = new_state(c, TIDEI_NFA_EPS, 0, 0, -1, -1);
  /* children are created after parents: emit in reverse creation order */
  for (int32_t i = n_tn - 1; i >= 0 && !c->st; i--) {
    tnode *t = &c->tn[i];
    int32_t out = x;
    if (t->child >= 0) {
      int nk = 0;
      for (int32_t k = t->child; k >= 0; k = c->tn[k].sib) c->kids[nk++] = c->tn[k].state;
      out = c->kids[nk - 1];
      for (int k = nk - 2; k >= 0; k--) out = intern(c, base, TIDEI_NFA_EPS, 0, 0, c->kids[k], out);
    }
    if (i == 0) {
      t->state = t->child >= 0 ? out : new_state(c, TIDEI_NFA_FAIL, 0, 0, -1, -1);
    } else {
      t->state = intern(c, base, TIDEI_NFA_RANGE, t->lo, t->hi, out, -1);
    }
  }
  return (frag){ c->tn[0].state, x };
}

/* ---------------------------------------------------------------- the parser: frames and atoms */

static void flush_atom(rc *c, frame *f) {
  if (f->atom_kind == A_NONE) return;
  if (f->seq.start < 0) f->seq = f->atom;
  else { c->ns[f->seq.exit].out = f->atom.start; f->seq.exit = f->atom.exit; }
  f->atom_kind = A_NONE;
}

static frame *begin_atom(rc *c) {
  frame *f = &c->fr[c->n_fr - 1];
  flush_atom(c, f);
  f->atom_first = c->n_ns;
  return f;
}

static void set_atom(rc *c, frag a, int kind) {
  frame *f = &c->fr[c->n_fr - 1];
  f->atom = a;
  f->atom_kind = kind;
}

static void literal_atom(rc *c, uint32_t cp) {
  begin_atom(c);
  uint8_t b[4];
  int n = utf8_encode(cp, b);
  int32_t first = -1, prev = -1;
  for (int i = 0; i < n; i++) {
    int32_t q = new_state(c, TIDEI_NFA_RANGE, b[i], b[i], -1, -1);
    if (prev >= 0) c->ns[prev].out = q;
    else first = q;
    prev = q;
  }
  set_atom(c, (frag){ first, prev }, A_REPEATABLE);
}

static void set_atom_from(rc *c, cpset *s) {
  begin_atom(c);
  frag a = set_frag(c, s);
  set_atom(c, a, A_REPEATABLE);
}

/* The alternatives of the top frame joined into one fragment. */
static frag close_alts(rc *c, frame *f) {
  flush_atom(c, f);
  frag cur = f->seq.start >= 0 ? f->seq : eps_frag(c);
  if (c->n_alts == f->alt_base) return cur;
  int32_t x = new_state(c, TIDEI_NFA_EPS, 0, 0, -1, -1);
  if (c->st) return cur;
  c->ns[cur.exit].out = x;
  int32_t e = cur.start;
  for (int32_t i = c->n_alts - 1; i >= f->alt_base; i--) {
    frag a = c->alts[i];
    c->ns[a.exit].out = x;
    e = new_state(c, TIDEI_NFA_EPS, 0, 0, a.start, e);
  }
  c->n_alts = f->alt_base;
  return (frag){ e, x };
}

static void alternative(rc *c) {
  frame *f = &c->fr[c->n_fr - 1];
  flush_atom(c, f);
  frag cur = f->seq.start >= 0 ? f->seq : eps_frag(c);
  if (grow(c->env, (void **)&c->alts, &c->alts_cap, (size_t)c->n_alts + 1, sizeof(frag))) {
    c->st = TIDE_ERR_NOMEM;
    return;
  }
  c->alts[c->n_alts++] = cur;
  f->seq.start = f->seq.exit = -1;
}

static int push_frame(rc *c, unsigned flags, size_t off) {
  if (c->n_fr > TIDEI_RE_MAX_DEPTH)
    return fail(c, TIDE_ERR_UNSUPPORTED, off, "groups nested deeper than %d", TIDEI_RE_MAX_DEPTH);
  frame *f = begin_atom(c);
  (void)f;
  frame *g = &c->fr[c->n_fr++];
  memset(g, 0, sizeof *g);
  g->first = c->n_ns;
  g->alt_base = c->n_alts;
  g->seq.start = g->seq.exit = -1;
  g->atom_kind = A_NONE;
  g->flags = flags;
  g->off = off;
  return TIDE_OK;
}

static int pop_frame(rc *c, size_t off) {
  if (c->n_fr == 1) return fail(c, TIDE_ERR_FORMAT, off, "unmatched closing parenthesis");
  frame *g = &c->fr[c->n_fr - 1];
  frag a = close_alts(c, g);
  int32_t first = g->first;
  c->n_fr--;
  frame *f = &c->fr[c->n_fr - 1];
  f->atom_first = first;
  set_atom(c, a, A_REPEATABLE);
  return c->st;
}

/* Applies {mn, mx} (mx < 0: unbounded) to the pending atom by copying its
** states (they are exactly [atom_first, n_ns): everything built since). */
static int quantify(rc *c, int32_t mn, int32_t mx, size_t off) {
  frame *f = &c->fr[c->n_fr - 1];
  if (f->atom_kind != A_REPEATABLE)
    return fail(c, TIDE_ERR_FORMAT, off, "quantifier does not follow a repeatable item");
  frag a = f->atom;
  int32_t a0 = f->atom_first, size = c->n_ns - a0;
  f->atom_kind = A_QUANTIFIED;
  if (mx == 0) {
    c->n_ns = a0;
    f->atom = eps_frag(c);
    return c->st;
  }
  int32_t k = mx < 0 ? (mn > 0 ? mn : 1) : mx;
  if ((int64_t)size * k + k + 2 > TIDEI_RE_MAX_NFA - (int64_t)c->n_ns)
    return fail(c, TIDE_ERR_UNSUPPORTED, off,
                "pattern too large: its automaton needs more than %d states", TIDEI_RE_MAX_NFA);
  if (grow(c->env, (void **)&c->ns, &c->ns_cap,
           (size_t)c->n_ns + (size_t)size * (size_t)k + 2 * (size_t)k + 2, sizeof(tidei_nstate)))
    return c->st = TIDE_ERR_NOMEM;
  for (int32_t i = 1; i < k; i++) {
    int32_t delta = i * size;
    for (int32_t j = 0; j < size; j++) {
      tidei_nstate s = c->ns[a0 + j];
      if (s.out >= 0) s.out += delta;
      if (s.out2 >= 0) s.out2 += delta;
      c->ns[c->n_ns++] = s;
    }
  }
  int32_t x = new_state(c, TIDEI_NFA_EPS, 0, 0, -1, -1), entry = -1, prev = -1;
#define LINK(to) do { if (prev < 0) entry = (to); else c->ns[prev].out = (to); } while (0)
  for (int32_t i = 0; i < k; i++) {
    int32_t s = a.start + i * size, e = a.exit + i * size;
    if (i < mn) {
      LINK(s);
      prev = e;
    } else if (mx >= 0) {
      int32_t sp = new_state(c, TIDEI_NFA_EPS, 0, 0, s, x);
      LINK(sp);
      prev = e;
    }
  }
  if (mx < 0) {
    int32_t last = k - 1, s = a.start + last * size, e = a.exit + last * size;
    int32_t loop = new_state(c, TIDEI_NFA_EPS, 0, 0, s, x);
    if (mn == 0) entry = loop;
    c->ns[e].out = loop;
  } else {
    LINK(x);
  }
#undef LINK
  f->atom = (frag){ entry, x };
  return c->st;
}

/* ---------------------------------------------------------------- the parser: lexing */

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') return (ch | 0x20) - 'a' + 10;
  return -1;
}

static int peek(const rc *c, size_t k) {
  return c->pos + k < c->len ? (unsigned char)c->p[c->pos + k] : -1;
}

/* Reads a UTF-8 code point of the pattern. */
static int read_cp(rc *c, uint32_t *cp) {
  int n = utf8_decode((const unsigned char *)c->p + c->pos, c->len - c->pos, cp);
  if (!n) return fail(c, TIDE_ERR_FORMAT, c->pos, "invalid UTF-8 in pattern");
  c->pos += (size_t)n;
  return TIDE_OK;
}

/* Reads {h..} or up to maxd digits of base 8/16 into *v. */
static int read_braced(rc *c, int base, uint32_t *v, size_t off) {
  uint32_t x = 0;
  int nd = 0;
  c->pos++; /* '{' */
  while (c->pos < c->len && c->p[c->pos] != '}') {
    int d = hexval((unsigned char)c->p[c->pos]);
    if (d < 0 || d >= base) return fail(c, TIDE_ERR_FORMAT, c->pos, "non-%s character in escape",
                                        base == 8 ? "octal" : "hex");
    x = x * (uint32_t)base + (uint32_t)d;
    if (x > MAX_CP) /* at the digit after the one that overflowed, as PCRE2 */
      return fail(c, TIDE_ERR_FORMAT, c->pos + 1,
                  "character code point value in escape is too large");
    c->pos++;
    nd++;
  }
  if (c->pos >= c->len)
    return fail(c, TIDE_ERR_FORMAT, c->pos, "missing '}' in escape at offset %zu", off);
  if (!nd) return fail(c, TIDE_ERR_FORMAT, c->pos, "empty braces in escape");
  c->pos++;
  *v = x;
  return TIDE_OK;
}

enum { E_CHAR, E_SET, E_BOL, E_EOL, E_QUOTE, E_NONE, E_NEWLINE };

/* Parses the escape at c->pos (a backslash). E_CHAR: *cp; E_SET: added to s
** (for \p, \d...); E_BOL/E_EOL anchors; E_QUOTE \Q; E_NONE \E; E_NEWLINE \R. */
static int parse_escape(rc *c, int in_class, uint32_t *cp, cpset *s, int *kind) {
  size_t off = c->pos;
  c->pos++;
  if (c->pos >= c->len) return fail(c, TIDE_ERR_FORMAT, c->pos, "\\ at end of pattern");
  int ch = (unsigned char)c->p[c->pos];
  *kind = E_CHAR;
  if (ch >= 0x80) return read_cp(c, cp);
  c->pos++;
  switch (ch) {
  case 'a': *cp = 7; return TIDE_OK;
  case 'e': *cp = 0x1B; return TIDE_OK;
  case 'f': *cp = 0x0C; return TIDE_OK;
  case 'n': *cp = 0x0A; return TIDE_OK;
  case 'r': *cp = 0x0D; return TIDE_OK;
  case 't': *cp = 0x09; return TIDE_OK;
  case '0': {
    uint32_t v = 0;
    for (int i = 0; i < 2 && peek(c, 0) >= '0' && peek(c, 0) <= '7'; i++)
      v = v * 8 + (uint32_t)(c->p[c->pos++] - '0');
    *cp = v;
    return TIDE_OK;
  }
  case 'o':
    if (peek(c, 0) != '{')
      return fail(c, TIDE_ERR_FORMAT, c->pos, "missing opening brace after \\o");
    return read_braced(c, 8, cp, off);
  case 'x':
    if (peek(c, 0) == '{') return read_braced(c, 16, cp, off);
    *cp = 0;
    for (int i = 0; i < 2 && hexval(peek(c, 0)) >= 0; i++)
      *cp = *cp * 16 + (uint32_t)hexval(c->p[c->pos++]);
    return TIDE_OK;
  case 'u': /* tide extension (JSON Schema / ECMAScript): \uhhhh, \u{h..} */
    if (peek(c, 0) == '{') return read_braced(c, 16, cp, off);
    *cp = 0;
    for (int i = 0; i < 4; i++) {
      if (hexval(peek(c, 0)) < 0)
        return fail(c, TIDE_ERR_FORMAT, c->pos, "\\u needs 4 hex digits");
      *cp = *cp * 16 + (uint32_t)hexval(c->p[c->pos++]);
    }
    if (*cp >= 0xD800 && *cp <= 0xDFFF)
      return fail(c, TIDE_ERR_FORMAT, off, "\\u%04X is a surrogate", (unsigned)*cp);
    return TIDE_OK;
  case 'c': {
    int x = peek(c, 0);
    if (x < 0) return fail(c, TIDE_ERR_FORMAT, c->pos, "\\c at end of pattern");
    if (x < 32 || x > 126)
      return fail(c, TIDE_ERR_FORMAT, c->pos,
                  "\\c must be followed by a printable ASCII character");
    c->pos++;
    if (x >= 'a' && x <= 'z') x -= 32;
    *cp = (uint32_t)(x ^ 0x40);
    return TIDE_OK;
  }
  case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
  case 'h': case 'H': case 'v': case 'V':
    *kind = E_SET;
    set_escape_class(c, s, ch);
    return c->st;
  case 'N':
    if (in_class) return fail(c, TIDE_ERR_FORMAT, c->pos, "\\N is not supported in a class");
    if (peek(c, 0) == '{') return fail(c, TIDE_ERR_FORMAT, c->pos, "\\N{name} is not supported");
    *kind = E_SET;
    set_escape_class(c, s, 'N');
    return c->st;
  case 'p': case 'P': {
    size_t a, n;
    if (peek(c, 0) == '{') {
      a = ++c->pos;
      while (c->pos < c->len && c->p[c->pos] != '}') c->pos++;
      if (c->pos >= c->len) return fail(c, TIDE_ERR_FORMAT, c->pos, "malformed \\%c{...}", ch);
      n = c->pos++ - a;
    } else {
      if (c->pos >= c->len) return fail(c, TIDE_ERR_FORMAT, c->pos, "malformed \\%c", ch);
      a = c->pos++;
      n = 1;
    }
    int neg = ch == 'P';
    if (n > 0 && c->p[a] == '^') { neg = !neg; a++; n--; }
    int ok = n > 0 && n < 40;
    for (size_t i = 0; i < n && ok; i++) {
      unsigned char k = (unsigned char)c->p[a + i];
      ok = (k >= '0' && k <= '9') || ((k | 0x20) >= 'a' && (k | 0x20) <= 'z') || k == '_' ||
           k == '&' || k == ' ' || k == '-' || k == ':' || k == '=';
    }
    if (!ok)
      return fail(c, TIDE_ERR_FORMAT, c->pos, "unknown property '\\%c{%.*s}'", ch,
                  (int)(n < 40 ? n : 40), c->p + a);
    const cpset *ps = prop_set(c, c->p + a, n, c->pos);
    if (!ps) return c->st;
    *kind = E_SET;
    set_append(c, s, ps, neg);
    return c->st;
  }
  case 'b':
    if (in_class) { *cp = 8; return TIDE_OK; }
    return fail(c, TIDE_ERR_UNSUPPORTED, off,
                "word boundary '\\b' not supported (not regular over bytes)");
  case 'B':
    if (in_class) break;
    return fail(c, TIDE_ERR_UNSUPPORTED, off, "non-word-boundary '\\B' not supported");
  case 'A': case 'G':
    if (in_class) break;
    *kind = E_BOL;
    return TIDE_OK;
  case 'z': case 'Z':
    if (in_class) break;
    *kind = E_EOL;
    return TIDE_OK;
  case 'Q': *kind = E_QUOTE; return TIDE_OK;
  case 'E': *kind = E_NONE; return TIDE_OK;
  case 'R':
    if (in_class) break;
    *kind = E_NEWLINE;
    return TIDE_OK;
  case 'K': return fail(c, TIDE_ERR_UNSUPPORTED, off, "'\\K' (match start reset) not supported");
  case 'X':
    return fail(c, TIDE_ERR_UNSUPPORTED, off, "extended grapheme cluster '\\X' not supported");
  case 'C': return fail(c, TIDE_ERR_UNSUPPORTED, off, "single code unit '\\C' not supported");
  case 'g': case 'k':
    if (in_class) break;
    return fail(c, TIDE_ERR_UNSUPPORTED, off, "backreference or subroutine '\\%c' not supported",
                ch);
  case 'L': case 'l': case 'U':
    return fail(c, TIDE_ERR_FORMAT, c->pos, "PCRE2 does not support \\%c", ch);
  default:
    if (ch >= '1' && ch <= '9') {
      if (!in_class) { /* PCRE2: a backreference unless >= 10, not 8/9-led and > groups so far */
        uint32_t v = (uint32_t)(ch - '0');
        size_t e = c->pos;
        while (e < c->len && c->p[e] >= '0' && c->p[e] <= '9' && v < 100000)
          v = v * 10 + (uint32_t)(c->p[e++] - '0');
        if (v < 10 || ch >= '8' || v <= (uint32_t)c->n_caps)
          return fail(c, TIDE_ERR_UNSUPPORTED, off, "backreference '\\%.*s' not supported",
                      (int)(e - off - 1), c->p + off + 1);
      }
      if (ch >= '8') { *cp = (uint32_t)ch; return TIDE_OK; }
      uint32_t v = (uint32_t)(ch - '0');
      for (int i = 0; i < 2 && peek(c, 0) >= '0' && peek(c, 0) <= '7'; i++)
        v = v * 8 + (uint32_t)(c->p[c->pos++] - '0');
      *cp = v;
      return TIDE_OK;
    }
    if ((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z')) break;
    *cp = (uint32_t)ch;
    return TIDE_OK;
  }
  return fail(c, TIDE_ERR_FORMAT, off + 1, "unrecognized character follows \\");
}

/* [...]: the class's code points into c->cls. */
static int parse_class(rc *c) {
  size_t off = c->pos++;
  unsigned flags = c->fr[c->n_fr - 1].flags;
  int neg = 0, quote = 0, first = 1;
  cpset *s = &c->cls;
  s->n = 0;
  if (peek(c, 0) == '^') { neg = 1; c->pos++; }
  for (;;) {
    if (c->pos >= c->len)
      return fail(c, TIDE_ERR_FORMAT, c->pos,
                  "missing terminating ] for character class opened at offset %zu", off);
    int ch = peek(c, 0);
    if (quote) {
      if (ch == '\\' && peek(c, 1) == 'E') { c->pos += 2; quote = 0; continue; }
    } else {
      if (ch == ']' && !first) { c->pos++; break; }
      if ((flags & F_EXTMORE) && (ch == ' ' || ch == '\t')) { c->pos++; continue; }
      if (ch == '[' && (peek(c, 1) == ':' || peek(c, 1) == '.' || peek(c, 1) == '=')) {
        size_t a = c->pos + 2, e = a;
        while (e + 1 < c->len && c->p[e] != ':' && c->p[e] != ']') e++;
        if (e + 1 < c->len && c->p[e] == ':' && c->p[e + 1] == ']' && peek(c, 1) == ':') {
          int pneg = c->p[a] == '^';
          if (!set_posix(c, s, c->p + a + pneg, e - a - (size_t)pneg, pneg))
            return fail(c, TIDE_ERR_FORMAT, a, "unknown POSIX class name");
          c->pos = e + 2;
          first = 0;
          continue;
        }
        if (peek(c, 1) != ':' && e + 1 < c->len && c->p[e + 1] == ']')
          return fail(c, TIDE_ERR_FORMAT, c->pos, "POSIX collating elements are not supported");
      }
    }
    first = 0;
    /* one item: a code point (maybe a range start) or a set */
    uint32_t lo;
    int kind = E_CHAR;
    if (!quote && ch == '\\') {
      if (parse_escape(c, 1, &lo, s, &kind)) return c->st;
      if (kind == E_QUOTE) { quote = 1; continue; }
      if (kind == E_NONE) continue;
      if (kind == E_SET) {
        if (peek(c, 0) == '-' && peek(c, 1) != ']' && peek(c, 1) >= 0)
          return fail(c, TIDE_ERR_FORMAT, c->pos, "invalid range in character class");
        continue;
      }
    } else if (read_cp(c, &lo)) {
      return c->st;
    }
    uint32_t hi = lo;
    if (peek(c, 0) == '-' && peek(c, 1) != ']' && peek(c, 1) >= 0) {
      c->pos++;
      int k2 = E_CHAR;
      if (peek(c, 0) == '\\' && !quote) {
        if (parse_escape(c, 1, &hi, s, &k2)) return c->st;
        if (k2 != E_CHAR)
          return fail(c, TIDE_ERR_FORMAT, c->pos, "invalid range in character class");
      } else if (peek(c, 0) == '[' && peek(c, 1) == ':') {
        return fail(c, TIDE_ERR_FORMAT, c->pos, "invalid range in character class");
      } else if (read_cp(c, &hi)) {
        return c->st;
      }
      if (hi < lo)
        return fail(c, TIDE_ERR_FORMAT, c->pos - 1, "range out of order in character class");
    }
    set_add(c, s, lo, hi);
  }
  if (neg) set_negate(c, s);
  return c->st;
}

/* (? ... : group kinds, options and the unsupported constructs. */
static int parse_group(rc *c) {
  size_t off = c->pos++;
  unsigned flags = c->fr[c->n_fr - 1].flags;
  if (peek(c, 0) == '*')
    return fail(c, TIDE_ERR_UNSUPPORTED, off, "verb or option '(*...)' not supported");
  if (peek(c, 0) != '?') { c->n_caps++; return push_frame(c, flags, off); }
  c->pos++;
  int ch = peek(c, 0);
  switch (ch) {
  case ':': case '|': c->pos++; return push_frame(c, flags, off);
  case '>': return fail(c, TIDE_ERR_UNSUPPORTED, off, "atomic group '(?>' not supported");
  case '=': return fail(c, TIDE_ERR_UNSUPPORTED, off, "lookahead '(?=' not supported");
  case '!': return fail(c, TIDE_ERR_UNSUPPORTED, off, "negative lookahead '(?!' not supported");
  case '(': return fail(c, TIDE_ERR_UNSUPPORTED, off, "conditional group '(?(' not supported");
  case 'C': return fail(c, TIDE_ERR_UNSUPPORTED, off, "callout '(?C' not supported");
  case 'R': case '&': case '+':
  case '0':
  case '1':
  case '2':
  case '3':
  case '4':
  case '5':
  case '6':
  case '7':
  case '8':
  case '9':
    return fail(c, TIDE_ERR_UNSUPPORTED, off, "recursion or subroutine call '(?%c' not supported",
                ch);
  case '#':
    while (c->pos < c->len && c->p[c->pos] != ')') c->pos++;
    if (c->pos >= c->len) return fail(c, TIDE_ERR_FORMAT, c->pos, "missing ) after (?# comment");
    c->pos++;
    return TIDE_OK;
  case '<': case '\'': case 'P': {
    if (ch == '<' && (peek(c, 1) == '=' || peek(c, 1) == '!'))
      return fail(c, TIDE_ERR_UNSUPPORTED, off, "lookbehind '(?<%c' not supported", peek(c, 1));
    if (ch == 'P') {
      c->pos++;
      if (peek(c, 0) == '=')
        return fail(c, TIDE_ERR_UNSUPPORTED, off, "backreference '(?P=' not supported");
      if (peek(c, 0) == '>')
        return fail(c, TIDE_ERR_UNSUPPORTED, off, "subroutine call '(?P>' not supported");
      if (peek(c, 0) != '<')
        return fail(c, TIDE_ERR_FORMAT, c->pos, "unrecognized character after (?P");
    }
    int close = peek(c, 0) == '\'' ? '\'' : '>';
    c->pos++;
    size_t a = c->pos;
    while (c->pos < c->len &&
           (c->p[c->pos] == '_' || (c->p[c->pos] >= '0' && c->p[c->pos] <= '9') ||
            ((c->p[c->pos] | 0x20) >= 'a' && (c->p[c->pos] | 0x20) <= 'z')))
      c->pos++;
    if (c->pos > a && c->p[a] >= '0' && c->p[a] <= '9')
      return fail(c, TIDE_ERR_FORMAT, a, "group name must start with a non-digit");
    if (c->pos == a || peek(c, 0) != close)
      return fail(c, TIDE_ERR_FORMAT, c->pos, "malformed group name");
    c->pos++;
    c->n_caps++;
    return push_frame(c, flags, off);
  }
  default: break;
  }
  /* option letters: (?imnsxJU-imnsx) or (?opts:...) */
  int on = 1;
  unsigned f = flags;
  if (peek(c, 0) == '^') { f = 0; c->pos++; }
  for (;;) {
    ch = peek(c, 0);
    if (ch < 0) return fail(c, TIDE_ERR_FORMAT, c->pos, "missing ) after (? options");
    c->pos++;
    if (ch == ')') { c->fr[c->n_fr - 1].flags = f; return TIDE_OK; }
    if (ch == ':') return push_frame(c, f, off);
    unsigned bit = 0;
    switch (ch) {
    case '-': on = 0; continue;
    case 'i':
      if (!on) continue;
      return fail(c, TIDE_ERR_UNSUPPORTED, off, "caseless matching '(?i)' not supported");
    case 's': bit = F_DOTALL; break;
    case 'x':
      bit = F_EXT;
      if (peek(c, 0) == 'x') { c->pos++; bit |= F_EXTMORE; }
      break;
    case 'm': case 'n': case 'U': case 'J': continue; /* no effect on the language here */
    default:
      return fail(c, TIDE_ERR_FORMAT, c->pos - 1, "unrecognized character after (? or (?-");
    }
    f = on ? (f | bit) : (f & ~bit);
  }
}

/* {m}, {m,}, {m,n} at c->pos: 1 and the bounds if it is a quantifier, 0 if
** the brace is a literal (PCRE2 10.42 rules), or an error status < 0. */
static int read_braces(rc *c, int32_t *mn, int32_t *mx) {
  size_t i = c->pos + 1, off = c->pos;
  uint32_t v[2] = { 0, 0 };
  int nd[2] = { 0, 0 }, comma = 0;
  for (; i < c->len; i++) {
    int ch = (unsigned char)c->p[i];
    if (ch >= '0' && ch <= '9') {
      if (v[comma] < 100000) v[comma] = v[comma] * 10 + (uint32_t)(ch - '0');
      nd[comma]++;
    } else if (ch == ',' && !comma) {
      comma = 1;
    } else {
      break;
    }
  }
  if (i >= c->len || c->p[i] != '}' || !nd[0]) return 0;
  if (v[0] > 65535 || v[1] > 65535) {
    fail(c, TIDE_ERR_FORMAT, i, "number too big in {} quantifier");
    return -1;
  }
  if (comma && nd[1] && v[1] < v[0]) {
    fail(c, TIDE_ERR_FORMAT, i, "numbers out of order in {} quantifier");
    return -1;
  }
  uint32_t top = comma ? (nd[1] ? v[1] : v[0]) : v[0];
  if (top > TIDEI_RE_MAX_REPEAT) {
    fail(c, TIDE_ERR_UNSUPPORTED, off, "repetition count %u above the limit %d", (unsigned)top,
         TIDEI_RE_MAX_REPEAT);
    return -1;
  }
  *mn = (int32_t)v[0];
  *mx = comma ? (nd[1] ? (int32_t)v[1] : -1) : (int32_t)v[0];
  c->pos = i + 1;
  return 1;
}

/* \R: (?:\r\n|[\n\v\f\r\x85\x{2028}\x{2029}]) */
static void newline_atom(rc *c) {
  frame *f = begin_atom(c);
  (void)f;
  int32_t r = new_state(c, TIDEI_NFA_RANGE, '\r', '\r', -1, -1);
  int32_t n = new_state(c, TIDEI_NFA_RANGE, '\n', '\n', -1, -1);
  if (c->st) return;
  c->ns[r].out = n;
  c->cls.n = 0;
  set_add(c, &c->cls, 10, 13);
  set_add(c, &c->cls, 0x85, 0x85);
  set_add(c, &c->cls, 0x2028, 0x2029);
  frag one = set_frag(c, &c->cls);
  int32_t x = new_state(c, TIDEI_NFA_EPS, 0, 0, -1, -1);
  int32_t sp = new_state(c, TIDEI_NFA_EPS, 0, 0, r, one.start);
  if (c->st) return;
  c->ns[n].out = x;
  c->ns[one.exit].out = x;
  set_atom(c, (frag){ sp, x }, A_REPEATABLE);
}

static void anchor_atom(rc *c, int kind, size_t off) {
  begin_atom(c);
  int32_t q = new_state(c, kind, 0, 0, -1, -1);
  if (!c->st) c->ns[q].off = (int32_t)off;
  set_atom(c, (frag){ q, q }, A_FIXED);
}

static int parse_quantifier(rc *c, int32_t mn, int32_t mx, size_t off) {
  if (quantify(c, mn, mx, off)) return c->st;
  if (peek(c, 0) == '?') c->pos++; /* lazy: same language */
  else if (peek(c, 0) == '+')
    return fail(c, TIDE_ERR_UNSUPPORTED, c->pos, "possessive quantifier not supported");
  return TIDE_OK;
}

static int parse_one(rc *c) {
  frame *f = &c->fr[c->n_fr - 1];
  size_t off = c->pos;
  int ch = peek(c, 0);
  if (c->quoting) {
    if (ch == '\\' && peek(c, 1) == 'E') { c->pos += 2; c->quoting = 0; return TIDE_OK; }
    uint32_t cp;
    if (read_cp(c, &cp)) return c->st;
    literal_atom(c, cp);
    return c->st;
  }
  if (f->flags & F_EXT) {
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v') {
      c->pos++;
      return TIDE_OK;
    }
    if (ch == '#') {
      while (c->pos < c->len && c->p[c->pos] != '\n') c->pos++;
      return TIDE_OK;
    }
  }
  switch (ch) {
  case '(': return parse_group(c);
  case ')': c->pos++; return pop_frame(c, off);
  case '|': c->pos++; alternative(c); return c->st;
  case '*': c->pos++; return parse_quantifier(c, 0, -1, off);
  case '+': c->pos++; return parse_quantifier(c, 1, -1, off);
  case '?': c->pos++; return parse_quantifier(c, 0, 1, off);
  case '{': {
    int32_t mn, mx;
    int q = read_braces(c, &mn, &mx);
    if (q < 0) return c->st;
    if (q) return parse_quantifier(c, mn, mx, c->pos - 1); /* at its '}', as PCRE2 */
    c->pos++;
    literal_atom(c, '{');
    return c->st;
  }
  case '^': c->pos++; anchor_atom(c, TIDEI_NFA_BOL, off); return c->st;
  case '$': c->pos++; anchor_atom(c, TIDEI_NFA_EOL, off); return c->st;
  case '.':
    c->pos++;
    c->cls.n = 0;
    if (f->flags & F_DOTALL) set_add(c, &c->cls, 0, MAX_CP);
    else set_escape_class(c, &c->cls, 'N');
    set_atom_from(c, &c->cls);
    return c->st;
  case '[':
    if (parse_class(c)) return c->st;
    set_atom_from(c, &c->cls);
    return c->st;
  case '\\': {
    uint32_t cp;
    int kind;
    c->cls.n = 0;
    if (parse_escape(c, 0, &cp, &c->cls, &kind)) return c->st;
    switch (kind) {
    case E_CHAR: literal_atom(c, cp); break;
    case E_SET: set_atom_from(c, &c->cls); break;
    case E_BOL: anchor_atom(c, TIDEI_NFA_BOL, off); break;
    case E_EOL: anchor_atom(c, TIDEI_NFA_EOL, off); break;
    case E_QUOTE: c->quoting = 1; break;
    case E_NEWLINE: newline_atom(c); break;
    default: break;
    }
    return c->st;
  }
  default: {
    uint32_t cp;
    if (read_cp(c, &cp)) return c->st;
    literal_atom(c, cp);
    return c->st;
  }
  }
}

/* ---------------------------------------------------------------- anchors */

/* ^ must be unreachable once a byte was consumed, and no byte may be
** consumable after $: then both are no-ops and become epsilons. */
static int check_anchors(rc *c, int32_t start) {
  int32_t n = c->n_ns, *stk = NULL;
  uint8_t *mark = NULL;
  int st = TIDE_OK;
  if (!(stk = tidei_alloc(c->env, (size_t)n * 2 * sizeof(int32_t))) ||
      !(mark = tidei_calloc(c->env, (size_t)n, 1))) {
    st = TIDE_ERR_NOMEM;
    goto done;
  }
  int has = 0;
  for (int32_t i = 0; i < n; i++)
    has |= c->ns[i].kind == TIDEI_NFA_BOL || c->ns[i].kind == TIDEI_NFA_EOL;
  if (!has) goto done;
  /* mark 1: reachable from start; mark 2: reachable after consuming a byte */
  int sp = 0;
  for (int pass = 1; pass <= 2; pass++) {
    if (pass == 1) { stk[sp++] = start; mark[start] = 1; }
    else
      for (int32_t i = 0; i < n; i++)
        if (mark[i] && c->ns[i].kind == TIDEI_NFA_RANGE && c->ns[i].out >= 0 &&
            mark[c->ns[i].out] < 2) {
          mark[c->ns[i].out] = 2;
          stk[sp++] = c->ns[i].out;
        }
    while (sp > 0) {
      const tidei_nstate *q = &c->ns[stk[--sp]];
      int32_t o[2] = { q->out, q->kind == TIDEI_NFA_EPS ? q->out2 : -1 };
      for (int k = 0; k < 2; k++)
        if (o[k] >= 0 && mark[o[k]] < pass) { mark[o[k]] = (uint8_t)pass; stk[sp++] = o[k]; }
    }
  }
  for (int32_t i = 0; i < n && !st; i++) {
    if (c->ns[i].kind == TIDEI_NFA_BOL && mark[i] == 2)
      st = fail(c, TIDE_ERR_UNSUPPORTED, (size_t)c->ns[i].off,
                "'^' or '\\A' where text may precede it (only anchors at the start are supported)");
  }
  /* $: nothing consuming reachable from it */
  for (int32_t i = 0; i < n && !st; i++) {
    if (c->ns[i].kind != TIDEI_NFA_EOL || !mark[i]) continue;
    int32_t *seen = stk + n; /* states flagged 0x80 in this search */
    int32_t ns = 0;
    sp = 0;
    stk[sp++] = i;
    mark[i] |= 0x80;
    seen[ns++] = i;
    int bad = 0;
    while (sp > 0 && !bad) {
      int32_t x = stk[--sp];
      const tidei_nstate *q = &c->ns[x];
      if (q->kind == TIDEI_NFA_RANGE) { bad = 1; break; }
      int32_t o[2] = { q->out, q->kind == TIDEI_NFA_EPS ? q->out2 : -1 };
      for (int k = 0; k < 2; k++)
        if (o[k] >= 0 && !(mark[o[k]] & 0x80)) {
          mark[o[k]] |= 0x80;
          seen[ns++] = o[k];
          stk[sp++] = o[k];
        }
    }
    for (int32_t k = 0; k < ns; k++) mark[seen[k]] &= 0x7F;
    if (bad)
      st = fail(c, TIDE_ERR_UNSUPPORTED, (size_t)c->ns[i].off,
                "'$' or '\\z' where text may follow it (only anchors at the end are supported)");
  }
  for (int32_t i = 0; i < n; i++)
    if (c->ns[i].kind == TIDEI_NFA_BOL || c->ns[i].kind == TIDEI_NFA_EOL)
      c->ns[i].kind = TIDEI_NFA_EPS, c->ns[i].out2 = -1;
done:
  if (stk) tidei_free(c->env, stk, (size_t)n * 2 * sizeof(int32_t));
  if (mark) tidei_free(c->env, mark, (size_t)n);
  return st;
}

/* ---------------------------------------------------------------- compile */

static void rc_free(rc *c) {
  tide_env *env = c->env;
  if (c->ns) tidei_free(env, c->ns, c->ns_cap * sizeof(tidei_nstate));
  if (c->alts) tidei_free(env, c->alts, c->alts_cap * sizeof(frag));
  if (c->fr) tidei_free(env, c->fr, (TIDEI_RE_MAX_DEPTH + 1) * sizeof(frame));
  if (c->cls.r) tidei_free(env, c->cls.r, c->cls.cap * sizeof(cprange));
  if (c->tmp.r) tidei_free(env, c->tmp.r, c->tmp.cap * sizeof(cprange));
  for (int i = 0; i < c->n_props; i++)
    if (c->props[i].set.r)
      tidei_free(env, c->props[i].set.r, c->props[i].set.cap * sizeof(cprange));
  if (c->props) tidei_free(env, c->props, c->props_cap * sizeof(propcache));
  if (c->gctx) pcre2_general_context_free(c->gctx);
  if (c->cpbuf)
    tidei_free(env, c->cpbuf, 0x80 + 0x780 * 2 + (0x10000 - 0x800 - 0x800) * 3 + 0x100000 * 4);
  if (c->tn) tidei_free(env, c->tn, c->tn_cap * sizeof(tnode));
  if (c->hash) tidei_free(env, c->hash, c->hash_cap * sizeof(int32_t));
  if (c->kids) tidei_free(env, c->kids, c->kids_cap * sizeof(int32_t));
}

int tidei_regex_build(tide_env *env, const char *pattern, size_t len, tidei_dfa **out) {
  *out = NULL;
  if (!pattern && len) return tidei_error(env, TIDE_ERR_ARG, "regex: pattern is NULL");
  if (len > TIDEI_RE_MAX_PATTERN)
    return tidei_error(env, TIDE_ERR_UNSUPPORTED,
                       "regex: pattern of %zu bytes is above the limit of %d", len,
                       TIDEI_RE_MAX_PATTERN);
  rc c;
  memset(&c, 0, sizeof c);
  c.env = env;
  c.p = pattern;
  c.len = len;
  if (!(c.fr = tidei_alloc(env, (TIDEI_RE_MAX_DEPTH + 1) * sizeof(frame)))) {
    c.st = TIDE_ERR_NOMEM;
    goto done;
  }
  memset(&c.fr[0], 0, sizeof c.fr[0]);
  c.fr[0].seq.start = c.fr[0].seq.exit = -1;
  c.n_fr = 1;
  while (c.pos < c.len && !c.st) parse_one(&c);
  if (!c.st && c.n_fr > 1)
    fail(&c, TIDE_ERR_FORMAT, c.len, "missing closing parenthesis for '(' at offset %zu",
         c.fr[c.n_fr - 1].off);
  if (c.st) goto done;
  frag whole = close_alts(&c, &c.fr[0]);
  int32_t m = new_state(&c, TIDEI_NFA_MATCH, 0, 0, -1, -1);
  if (c.st) goto done;
  c.ns[whole.exit].out = m;
  if (check_anchors(&c, whole.start)) goto done;
  c.st = tidei_regex_dfa(env, c.ns, c.n_ns, whole.start, out);
done:
  rc_free(&c);
  return c.st;
}

int tide_regex_compile(tide_env *env, const char *pattern, size_t len, tide_constraint **out) {
  if (!out) return env ? tidei_error(env, TIDE_ERR_ARG, "regex: out is NULL") : TIDE_ERR_ARG;
  *out = NULL;
  if (!env) return TIDE_ERR_ARG;
  tidei_dfa *f;
  int st = tidei_regex_build(env, pattern, len, &f);
  if (st) return st;
  return tidei_constraint_new(env, &tidei_regex_engine, f, out);
}
