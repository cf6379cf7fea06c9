/*
** grammar.c -- GBNF (llama.cpp's dialect) compiled to an Earley recognizer
** over UTF-8 bytes, exposed as a tidei_engine.
** Layer: core.
**
** Compile. The text is parsed into rules whose alternatives are sequences of
** symbols: a terminal (a set of bytes), a nonterminal (a rule), END (closes an
** alternative) and EXIT (the item may complete here and also go on; it makes
** x{m,n} one flat alternative, so a bounded repetition costs O(1) items per
** Earley set). Groups become rules; x* and x+ become left-recursive rules
** (Q ::= Q x | ...), which Earley handles in constant items per set where
** right recursion would grow; character classes over code points become
** rules whose alternatives are UTF-8 byte-set sequences. Parsing recurses
** only on ( ) nesting, capped at TIDEI_GRAMMAR_MAX_DEPTH.
**
** Match. A state is an Earley chart: sets of items (dot = position in the
** flat symbol array, origin = set index), stored in one arena sized at
** matcher creation. push(b) scans b from the top set and closes the new set
** under prediction and completion, with nullable rules handled as in Aycock
** and Horspool (predicting a nullable rule also advances over it). A set is
** deduplicated through an open-addressing table that is empty between calls.
** commit() garbage-collects the chart: it keeps the top set and, in older
** sets, only the items waiting on a rule that some kept item may still
** complete there; other sets vanish and origins are renumbered. What stays is
** proportional to the nesting depth of the input, not its length.
** Limits (TIDEI_GRAMMAR_SET_ITEMS items per set, the arena's items and sets):
** a byte whose set would exceed them is rejected; such a state is then stuck
** rather than wrong.
**
** Lexemes (grammar_lex.c). A regular rule compiled to a DFA is predicted as
** one item whose dot is LEXBIT | DFA state: scanning steps the state, and
** the rule completes (at the item's origin) whenever the state accepts.
** Each set records (bit 1 of its accept byte) whether its kernel -- the
** items the scan made -- is a single lexeme item; the mask walk relies on
** it (tidei_grammar_lex_state).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"

/* ---------------------------------------------------------------- symbols */

enum { SYM_TERM = TIDEI_SYM_TERM, SYM_NT = TIDEI_SYM_NT, SYM_END = TIDEI_SYM_END,
       SYM_EXIT = TIDEI_SYM_EXIT };
#define SYM(kind, v) TIDEI_SYM(kind, v)
#define SYM_KIND(s) TIDEI_SYM_KIND(s)
#define SYM_VAL(s) TIDEI_SYM_VAL(s)
#define NONE 0xffffffffu
/* An item whose dot has this bit is inside a lexeme: dot = LEXBIT | the
** lexeme's DFA state (tidei_lex), origin = the set where the lexeme began. */
#define LEXBIT 0x80000000u

/* ---------------------------------------------------------------- parser */

typedef struct { uint32_t *p; uint32_t n, cap; } u32vec;

typedef struct {
  const char *name;  /* into the source; NULL for rules made by the parser */
  uint32_t name_len;
  int defined;
  size_t ref_off;    /* first reference, for "undefined rule" */
  u32vec body;       /* alternatives, each closed by SYM(END, rule) */
} prule;

typedef struct {
  tide_env *env;
  const char *src;
  size_t len, pos;
  int status, depth;
  prule *rules;
  uint32_t n_rules, cap_rules;
  uint32_t *names;          /* open addressing: rule index + 1, 0 empty */
  uint32_t names_cap;
  uint32_t (*terms)[8];
  uint32_t n_terms, cap_terms;
  uint32_t *term_hash;      /* open addressing: term index + 1 */
  uint32_t term_hash_cap;
  uint32_t any_rule;        /* rule for '.', made on first use */
  uint64_t n_syms;          /* symbols emitted so far (limit) */
  u32vec tmp;
  uint32_t *ranges;         /* code point ranges of the class being parsed */
  uint32_t n_ranges, cap_ranges;
} gparser;

static void perr(gparser *ps, size_t off, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 3, 4)))
#endif
  ;

static void perr(gparser *ps, size_t off, const char *fmt, ...) {
  if (ps->status) return;
  size_t line = 1, col = 1;
  for (size_t i = 0; i < off && i < ps->len; i++) {
    if (ps->src[i] == '\n') { line++; col = 1; }
    else col++;
  }
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ps->status = tidei_error(ps->env, TIDE_ERR_FORMAT, "grammar line %zu, column %zu: %s",
                           line, col, msg);
}

static void pnomem(gparser *ps) {
  if (!ps->status) ps->status = TIDE_ERR_NOMEM; /* message set by tidei_alloc */
}

static int vec_push(gparser *ps, u32vec *v, uint32_t x) {
  if (v->n == v->cap) {
    uint32_t nc = v->cap ? v->cap * 2 : 16;
    uint32_t *p = tidei_realloc(ps->env, v->p, (size_t)v->cap * 4, (size_t)nc * 4);
    if (!p) { pnomem(ps); return 0; }
    v->p = p;
    v->cap = nc;
  }
  v->p[v->n++] = x;
  return 1;
}

/* Counts symbols against the limit; 0 (error set) when over. */
static int budget(gparser *ps, uint64_t n) {
  ps->n_syms += n;
  if (ps->n_syms > TIDEI_GRAMMAR_MAX_SYMS) {
    if (!ps->status)
      ps->status = tidei_error(ps->env, TIDE_ERR_ARG,
                               "grammar too large: more than %u symbols after expansion",
                               TIDEI_GRAMMAR_MAX_SYMS);
    return 0;
  }
  return 1;
}

static int emit(gparser *ps, uint32_t rule, uint32_t sym) {
  return budget(ps, 1) && vec_push(ps, &ps->rules[rule].body, sym);
}

static uint32_t hash_bytes(const void *p, size_t n) {
  const unsigned char *s = p;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
  return h;
}

/* A new rule (name NULL for generated ones); NONE on error. */
static uint32_t rule_new(gparser *ps, const char *name, uint32_t name_len) {
  if (ps->n_rules >= TIDEI_GRAMMAR_MAX_RULES) {
    if (!ps->status)
      ps->status = tidei_error(ps->env, TIDE_ERR_ARG, "grammar too large: more than %u rules",
                               TIDEI_GRAMMAR_MAX_RULES);
    return NONE;
  }
  if (ps->n_rules == ps->cap_rules) {
    uint32_t nc = ps->cap_rules ? ps->cap_rules * 2 : 64;
    prule *r = tidei_realloc(ps->env, ps->rules, ps->cap_rules * sizeof *r, nc * sizeof *r);
    if (!r) { pnomem(ps); return NONE; }
    ps->rules = r;
    ps->cap_rules = nc;
  }
  prule *r = &ps->rules[ps->n_rules];
  memset(r, 0, sizeof *r);
  r->name = name;
  r->name_len = name_len;
  r->defined = name == NULL;
  return ps->n_rules++;
}

/* The rule called name (made undefined on first sight); NONE on error. */
static uint32_t rule_named(gparser *ps, const char *name, uint32_t len, size_t off) {
  if ((ps->n_rules + 1) * 2 > ps->names_cap) {
    uint32_t nc = ps->names_cap ? ps->names_cap * 2 : 256;
    uint32_t *t = tidei_calloc(ps->env, nc, sizeof *t);
    if (!t) { pnomem(ps); return NONE; }
    for (uint32_t i = 0; i < ps->names_cap; i++) {
      uint32_t v = ps->names[i];
      if (!v) continue;
      prule *r = &ps->rules[v - 1];
      uint32_t h = hash_bytes(r->name, r->name_len) & (nc - 1);
      while (t[h]) h = (h + 1) & (nc - 1);
      t[h] = v;
    }
    tidei_free(ps->env, ps->names, ps->names_cap * sizeof *t);
    ps->names = t;
    ps->names_cap = nc;
  }
  uint32_t mask = ps->names_cap - 1, h = hash_bytes(name, len) & mask;
  for (; ps->names[h]; h = (h + 1) & mask) {
    prule *r = &ps->rules[ps->names[h] - 1];
    if (r->name_len == len && memcmp(r->name, name, len) == 0) return ps->names[h] - 1;
  }
  uint32_t id = rule_new(ps, name, len);
  if (id == NONE) return NONE;
  ps->rules[id].defined = 0;
  ps->rules[id].ref_off = off;
  ps->names[h] = id + 1;
  return id;
}

/* Interns a byte set; returns SYM(TERM, index) or NONE. */
static uint32_t term_intern(gparser *ps, const uint32_t set[8]) {
  if ((ps->n_terms + 1) * 2 > ps->term_hash_cap) {
    uint32_t nc = ps->term_hash_cap ? ps->term_hash_cap * 2 : 256;
    uint32_t *t = tidei_calloc(ps->env, nc, sizeof *t);
    if (!t) { pnomem(ps); return NONE; }
    for (uint32_t i = 0; i < ps->n_terms; i++) {
      uint32_t h = hash_bytes(ps->terms[i], 32) & (nc - 1);
      while (t[h]) h = (h + 1) & (nc - 1);
      t[h] = i + 1;
    }
    tidei_free(ps->env, ps->term_hash, ps->term_hash_cap * sizeof *t);
    ps->term_hash = t;
    ps->term_hash_cap = nc;
  }
  uint32_t mask = ps->term_hash_cap - 1, h = hash_bytes(set, 32) & mask;
  for (; ps->term_hash[h]; h = (h + 1) & mask)
    if (memcmp(ps->terms[ps->term_hash[h] - 1], set, 32) == 0)
      return SYM(SYM_TERM, ps->term_hash[h] - 1);
  if (ps->n_terms == ps->cap_terms) {
    uint32_t nc = ps->cap_terms ? ps->cap_terms * 2 : 64;
    void *p = tidei_realloc(ps->env, ps->terms, ps->cap_terms * 32u, nc * 32u);
    if (!p) { pnomem(ps); return NONE; }
    ps->terms = p;
    ps->cap_terms = nc;
  }
  memcpy(ps->terms[ps->n_terms], set, 32);
  ps->term_hash[h] = ++ps->n_terms;
  return SYM(SYM_TERM, ps->n_terms - 1);
}

static uint32_t term_range(gparser *ps, unsigned lo, unsigned hi) {
  uint32_t set[8] = {0};
  for (unsigned b = lo; b <= hi; b++) set[b >> 5] |= 1u << (b & 31);
  return term_intern(ps, set);
}

static int utf8_encode(uint32_t cp, unsigned char *b) {
  if (cp < 0x80) { b[0] = (unsigned char)cp; return 1; }
  if (cp < 0x800) {
    b[0] = (unsigned char)(0xc0 | (cp >> 6));
    b[1] = (unsigned char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    b[0] = (unsigned char)(0xe0 | (cp >> 12));
    b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    b[2] = (unsigned char)(0x80 | (cp & 0x3f));
    return 3;
  }
  b[0] = (unsigned char)(0xf0 | (cp >> 18));
  b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
  b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
  b[3] = (unsigned char)(0x80 | (cp & 0x3f));
  return 4;
}

/* ---------------------------------------------------------------- lexing */

static int cur(const gparser *ps) {
  return ps->pos < ps->len ? (unsigned char)ps->src[ps->pos] : -1;
}

static int at(const gparser *ps, size_t k) {
  return ps->pos + k < ps->len ? (unsigned char)ps->src[ps->pos + k] : -1;
}

static int is_word(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_';
}

/* Skips blanks and # comments, and line breaks when newline_ok. */
static void skip_space(gparser *ps, int newline_ok) {
  for (;;) {
    int c = cur(ps);
    if (c == ' ' || c == '\t') ps->pos++;
    else if (c == '#') {
      while (ps->pos < ps->len && ps->src[ps->pos] != '\n' && ps->src[ps->pos] != '\r') ps->pos++;
    } else if (newline_ok && (c == '\n' || c == '\r')) ps->pos++;
    else return;
  }
}

/* One code point of the source: a UTF-8 sequence or an escape; -1 on error. */
static int64_t parse_char(gparser *ps) {
  size_t start = ps->pos;
  int c = cur(ps);
  if (c < 0) { perr(ps, start, "unexpected end of input"); return -1; }
  if (c == '\\') {
    int e = at(ps, 1), nhex = 0;
    ps->pos += 2;
    switch (e) {
    case 'x': nhex = 2; break;
    case 'u': nhex = 4; break;
    case 'U': nhex = 8; break;
    case 't': return '\t';
    case 'n': return '\n';
    case 'r': return '\r';
    case '\\': case '"': case '[': case ']': case '-': case '^': return e;
    default:
      if (e < 0) perr(ps, start, "unexpected end of input after '\\'");
      else if (e >= 0x20 && e < 0x7f) perr(ps, start, "unknown escape '\\%c'", e);
      else perr(ps, start, "unknown escape (byte 0x%02x after '\\')", e);
      return -1;
    }
    uint32_t v = 0;
    for (int i = 0; i < nhex; i++) {
      int h = cur(ps);
      int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
            : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) { perr(ps, ps->pos, "expecting %d hex digits after '\\%c'", nhex, e); return -1; }
      v = v * 16 + (uint32_t)d;
      ps->pos++;
    }
    if (v > 0x10ffff) { perr(ps, start, "code point U+%X out of range", v); return -1; }
    return v;
  }
  /* UTF-8 */
  int n = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3
        : c >= 0xf0 && c < 0xf5 ? 4 : 0;
  if (!n) { perr(ps, start, "invalid UTF-8 byte 0x%02x", c); return -1; }
  uint32_t v = n == 1 ? (uint32_t)c : (uint32_t)c & (0x3fu >> (n - 1));
  for (int i = 1; i < n; i++) {
    int d = at(ps, (size_t)i);
    if (d < 0 || (d & 0xc0) != 0x80) { perr(ps, start, "invalid UTF-8 sequence"); return -1; }
    v = (v << 6) | ((uint32_t)d & 0x3f);
  }
  static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
  if (v < min_cp[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
    perr(ps, start, "invalid UTF-8 sequence");
    return -1;
  }
  ps->pos += (size_t)n;
  return v;
}

/* ---------------------------------------------------------------- classes */

static int range_add(gparser *ps, uint32_t lo, uint32_t hi) {
  if (ps->n_ranges == ps->cap_ranges) {
    uint32_t nc = ps->cap_ranges ? ps->cap_ranges * 2 : 32;
    uint32_t *p = tidei_realloc(ps->env, ps->ranges, ps->cap_ranges * 8u, nc * 8u);
    if (!p) { pnomem(ps); return 0; }
    ps->ranges = p;
    ps->cap_ranges = nc;
  }
  ps->ranges[2 * ps->n_ranges] = lo;
  ps->ranges[2 * ps->n_ranges + 1] = hi;
  ps->n_ranges++;
  return 1;
}

static int cmp_range(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Sorts and merges ps->ranges; complements them over the code points when
** negate; drops the surrogates (not encodable in UTF-8). */
static int ranges_normalize(gparser *ps, int negate) {
  if (ps->n_ranges) qsort(ps->ranges, ps->n_ranges, 8, cmp_range);
  uint32_t n = 0;
  for (uint32_t i = 0; i < ps->n_ranges; i++) {
    uint32_t lo = ps->ranges[2 * i], hi = ps->ranges[2 * i + 1];
    if (n && lo <= ps->ranges[2 * n - 1] + 1) {
      if (hi > ps->ranges[2 * n - 1]) ps->ranges[2 * n - 1] = hi;
    } else {
      ps->ranges[2 * n] = lo;
      ps->ranges[2 * n + 1] = hi;
      n++;
    }
  }
  ps->n_ranges = n;
  if (negate) {
    uint32_t old = n, next = 0;
    uint32_t *copy = tidei_alloc(ps->env, (size_t)old * 8 + 8);
    if (!copy) { pnomem(ps); return 0; }
    if (old) memcpy(copy, ps->ranges, (size_t)old * 8);
    ps->n_ranges = 0;
    for (uint32_t i = 0; i < old; i++) {
      if (copy[2 * i] > next && !range_add(ps, next, copy[2 * i] - 1)) break;
      next = copy[2 * i + 1] + 1;
    }
    if (next <= 0x10ffff) range_add(ps, next, 0x10ffff);
    tidei_free(ps->env, copy, (size_t)old * 8 + 8);
    if (ps->status) return 0;
  }
  /* remove [D800, DFFF] */
  uint32_t cnt = ps->n_ranges;
  for (uint32_t i = 0; i < cnt; i++) {
    uint32_t lo = ps->ranges[2 * i], hi = ps->ranges[2 * i + 1];
    if (hi < 0xd800 || lo > 0xdfff) continue;
    if (lo < 0xd800 && hi > 0xdfff) {
      ps->ranges[2 * i + 1] = 0xd7ff;
      if (!range_add(ps, 0xe000, hi)) return 0;
    } else if (lo < 0xd800) ps->ranges[2 * i + 1] = 0xd7ff;
    else if (hi > 0xdfff) ps->ranges[2 * i] = 0xe000;
    else ps->ranges[2 * i] = 1, ps->ranges[2 * i + 1] = 0; /* empty */
  }
  return 1;
}

/* A UTF-8 byte-range sequence: n ranges [lo[i], hi[i]]. */
typedef struct { int n; unsigned char lo[4], hi[4]; } u8seq;

/* Splits code points [lo, hi] (no surrogates) into byte-range sequences,
** as RE2 and Rust's utf8-ranges do. Writes at most cap; returns the count. */
static int utf8_split(uint32_t lo, uint32_t hi, u8seq *out, int cap) {
  uint32_t st[64][2];
  int sp = 0, n = 0;
  st[sp][0] = lo, st[sp][1] = hi, sp++;
  while (sp > 0) {
    sp--;
    uint32_t s = st[sp][0], e = st[sp][1];
    if (s > e) continue;
    static const uint32_t lim[3] = { 0x7f, 0x7ff, 0xffff };
    int split = 0;
    for (int i = 0; i < 3 && !split; i++)
      if (s <= lim[i] && lim[i] < e) {
        st[sp][0] = lim[i] + 1, st[sp][1] = e, sp++;
        st[sp][0] = s, st[sp][1] = lim[i], sp++;
        split = 1;
      }
    if (split) continue;
    unsigned char bs[4], be[4];
    int len = utf8_encode(s, bs);
    for (int i = 1; i < len && !split; i++) {
      uint32_t m = (1u << (6 * i)) - 1;
      if ((s & ~m) != (e & ~m)) {
        if ((s & m) != 0) {
          st[sp][0] = (s | m) + 1, st[sp][1] = e, sp++;
          st[sp][0] = s, st[sp][1] = s | m, sp++;
          split = 1;
        } else if ((e & m) != m) {
          st[sp][0] = e & ~m, st[sp][1] = e, sp++;
          st[sp][0] = s, st[sp][1] = (e & ~m) - 1, sp++;
          split = 1;
        }
      }
    }
    if (split) continue;
    utf8_encode(e, be);
    if (n < cap) {
      out[n].n = len;
      memcpy(out[n].lo, bs, 4);
      memcpy(out[n].hi, be, 4);
    }
    n++;
  }
  return n;
}

/* Turns ps->ranges into one symbol: a terminal when the class is a set of
** single bytes, else a rule whose alternatives are byte-set sequences
** (sequences with equal tails share one alternative with a merged lead set). */
static uint32_t class_symbol(gparser *ps) {
  enum { MAXSEQ = 4096 };
  u8seq *seq = tidei_alloc(ps->env, MAXSEQ * sizeof *seq);
  if (!seq) { pnomem(ps); return NONE; }
  int n = 0;
  for (uint32_t i = 0; i < ps->n_ranges; i++) {
    uint32_t lo = ps->ranges[2 * i], hi = ps->ranges[2 * i + 1];
    if (lo > hi) continue;
    n += utf8_split(lo, hi, seq + n, MAXSEQ - n);
    if (n > MAXSEQ - 64) n = MAXSEQ - 64; /* cannot happen: a class splits into few */
  }
  /* group by (length, tail): lead bytes unioned */
  uint32_t (*lead)[8] = tidei_calloc(ps->env, (size_t)n + 1, 32);
  int *grp = tidei_alloc(ps->env, ((size_t)n + 1) * sizeof(int));
  uint32_t result = NONE;
  if (!lead || !grp) { pnomem(ps); goto done; }
  int ng = 0;
  for (int i = 0; i < n; i++) {
    int g = -1;
    for (int k = 0; k < ng && g < 0; k++) {
      u8seq *a = &seq[grp[k]], *b = &seq[i];
      if (a->n == b->n && memcmp(a->lo + 1, b->lo + 1, (size_t)a->n - 1) == 0 &&
          memcmp(a->hi + 1, b->hi + 1, (size_t)a->n - 1) == 0) g = k;
    }
    if (g < 0) { g = ng++; grp[g] = i; }
    for (unsigned b = seq[i].lo[0]; b <= seq[i].hi[0]; b++) lead[g][b >> 5] |= 1u << (b & 31);
  }
  if (ng == 0) { /* empty class: a terminal that matches nothing */
    uint32_t none[8] = {0};
    result = term_intern(ps, none);
    goto done;
  }
  if (ng == 1 && seq[grp[0]].n == 1) { result = term_intern(ps, lead[0]); goto done; }
  uint32_t r = rule_new(ps, NULL, 0);
  if (r == NONE) goto done;
  for (int g = 0; g < ng; g++) {
    u8seq *s = &seq[grp[g]];
    uint32_t t = term_intern(ps, lead[g]);
    if (t == NONE || !emit(ps, r, t)) goto done;
    for (int k = 1; k < s->n; k++) {
      t = term_range(ps, s->lo[k], s->hi[k]);
      if (t == NONE || !emit(ps, r, t)) goto done;
    }
    if (!emit(ps, r, SYM(SYM_END, r))) goto done;
  }
  result = SYM(SYM_NT, r);
done:
  tidei_free(ps->env, seq, MAXSEQ * sizeof *seq);
  if (lead) tidei_free(ps->env, lead, ((size_t)n + 1) * 32);
  if (grp) tidei_free(ps->env, grp, ((size_t)n + 1) * sizeof(int));
  return result;
}

/* [...] at ps->pos; returns the symbol or NONE. */
static uint32_t parse_class(gparser *ps) {
  size_t start = ps->pos;
  ps->pos++;
  int negate = 0;
  if (cur(ps) == '^') { negate = 1; ps->pos++; }
  ps->n_ranges = 0;
  while (cur(ps) != ']') {
    if (cur(ps) < 0) { perr(ps, start, "unterminated character class"); return NONE; }
    size_t here = ps->pos;
    int64_t lo = parse_char(ps), hi = lo;
    if (lo < 0) return NONE;
    if (cur(ps) == '-' && at(ps, 1) >= 0 && at(ps, 1) != ']') {
      ps->pos++;
      hi = parse_char(ps);
      if (hi < 0) return NONE;
      if (hi < lo) { perr(ps, here, "character range out of order"); return NONE; }
    }
    if (!range_add(ps, (uint32_t)lo, (uint32_t)hi)) return NONE;
  }
  ps->pos++;
  if (!ranges_normalize(ps, negate)) return NONE;
  return class_symbol(ps);
}

/* "..." at ps->pos, appended to rule r as byte terminals. */
static int parse_literal(gparser *ps, uint32_t r) {
  size_t start = ps->pos;
  ps->pos++;
  while (cur(ps) != '"') {
    if (cur(ps) < 0) { perr(ps, start, "unterminated string literal"); return 0; }
    size_t here = ps->pos;
    int64_t cp = parse_char(ps);
    if (cp < 0) return 0;
    if (cp >= 0xd800 && cp <= 0xdfff) { perr(ps, here, "surrogate code point in string"); return 0; }
    unsigned char b[4];
    int nb = utf8_encode((uint32_t)cp, b);
    for (int i = 0; i < nb; i++) {
      uint32_t t = term_range(ps, b[i], b[i]);
      if (t == NONE || !emit(ps, r, t)) return 0;
    }
  }
  ps->pos++;
  return 1;
}

static int parse_int(gparser *ps, uint32_t *v) {
  size_t start = ps->pos;
  int c = cur(ps);
  if (c < '0' || c > '9') { perr(ps, start, "expecting a number"); return 0; }
  uint64_t x = 0;
  while ((c = cur(ps)) >= '0' && c <= '9') {
    x = x * 10 + (uint64_t)(c - '0');
    if (x > TIDEI_GRAMMAR_MAX_REPEAT) {
      perr(ps, start, "repetition bound above %d (the limit)", TIDEI_GRAMMAR_MAX_REPEAT);
      return 0;
    }
    ps->pos++;
  }
  *v = (uint32_t)x;
  return 1;
}

/* Replaces the item body[r][start..] by a rule for item{min,max}
** (max == NONE: unbounded). */
static int repeat(gparser *ps, uint32_t r, uint32_t start, uint32_t min, uint32_t max) {
  u32vec *b = &ps->rules[r].body;
  uint32_t ilen = b->n - start;
  ps->tmp.n = 0;
  for (uint32_t i = 0; i < ilen; i++)
    if (!vec_push(ps, &ps->tmp, b->p[start + i])) return 0;
  b->n = start;
  ps->n_syms -= ilen;
  uint64_t copies = max == NONE ? (uint64_t)min + 1 : max;
  if (!budget(ps, ilen * copies + copies + 3)) return 0;
  ps->n_syms -= ilen * copies + copies + 3; /* emit() counts them again */
  uint32_t q = rule_new(ps, NULL, 0);
  if (q == NONE) return 0;
  uint32_t *item = ps->tmp.p;
  if (max == NONE) {
    /* Q ::= item^min | Q item */
    for (uint32_t k = 0; k < min; k++)
      for (uint32_t i = 0; i < ilen; i++)
        if (!emit(ps, q, item[i])) return 0;
    if (!emit(ps, q, SYM(SYM_END, q)) || !emit(ps, q, SYM(SYM_NT, q))) return 0;
    for (uint32_t i = 0; i < ilen; i++)
      if (!emit(ps, q, item[i])) return 0;
  } else {
    /* Q ::= item^min (EXIT item)^(max-min) */
    for (uint32_t k = 0; k < max; k++) {
      if (k >= min && !emit(ps, q, SYM(SYM_EXIT, q))) return 0;
      for (uint32_t i = 0; i < ilen; i++)
        if (!emit(ps, q, item[i])) return 0;
    }
  }
  return emit(ps, q, SYM(SYM_END, q)) && emit(ps, r, SYM(SYM_NT, q));
}

static int parse_alternates(gparser *ps, uint32_t r, int nested);

/* Appends one sequence to rule r; stops at '|', ')', a line break (not
** nested) or anything that cannot start an item. */
static int parse_sequence(gparser *ps, uint32_t r, int nested) {
  uint32_t last = NONE; /* start of the last item in r's body */
  for (;;) {
    int c = cur(ps);
    size_t here = ps->pos;
    if (c == '"') {
      last = ps->rules[r].body.n;
      if (!parse_literal(ps, r)) return 0;
    } else if (c == '[') {
      last = ps->rules[r].body.n;
      uint32_t s = parse_class(ps);
      if (s == NONE || !emit(ps, r, s)) return 0;
    } else if (is_word(c)) {
      while (is_word(cur(ps))) ps->pos++;
      uint32_t id = rule_named(ps, ps->src + here, (uint32_t)(ps->pos - here), here);
      last = ps->rules[r].body.n;
      if (id == NONE || !emit(ps, r, SYM(SYM_NT, id))) return 0;
    } else if (c == '(') {
      if (ps->depth >= TIDEI_GRAMMAR_MAX_DEPTH) {
        perr(ps, here, "groups nested deeper than %d", TIDEI_GRAMMAR_MAX_DEPTH);
        return 0;
      }
      ps->pos++;
      skip_space(ps, 1);
      uint32_t g = rule_new(ps, NULL, 0);
      if (g == NONE) return 0;
      ps->depth++;
      int ok = parse_alternates(ps, g, 1);
      ps->depth--;
      if (!ok) return 0;
      if (cur(ps) != ')') { perr(ps, ps->pos, "expecting ')'"); return 0; }
      ps->pos++;
      last = ps->rules[r].body.n;
      if (!emit(ps, r, SYM(SYM_NT, g))) return 0;
    } else if (c == '.') {
      ps->pos++;
      if (ps->any_rule == NONE) {
        ps->n_ranges = 0;
        if (!range_add(ps, 0, 0x10ffff) || !ranges_normalize(ps, 0)) return 0;
        uint32_t s = class_symbol(ps);
        if (s == NONE) return 0;
        ps->any_rule = s;
      }
      last = ps->rules[r].body.n;
      if (!emit(ps, r, ps->any_rule)) return 0;
    } else if (c == '*' || c == '+' || c == '?' || c == '{') {
      if (last == NONE) { perr(ps, here, "expecting an item before '%c'", c); return 0; }
      uint32_t min = 0, max = NONE;
      ps->pos++;
      if (c == '+') min = 1;
      else if (c == '?') max = 1;
      else if (c == '{') {
        skip_space(ps, nested);
        if (!parse_int(ps, &min)) return 0;
        skip_space(ps, nested);
        if (cur(ps) == '}') max = min;
        else if (cur(ps) == ',') {
          ps->pos++;
          skip_space(ps, nested);
          if (cur(ps) >= '0' && cur(ps) <= '9' && !parse_int(ps, &max)) return 0;
          skip_space(ps, nested);
          if (cur(ps) != '}') { perr(ps, ps->pos, "expecting '}'"); return 0; }
          if (max != NONE && max < min) {
            perr(ps, here, "repetition {%u,%u} has max below min", min, max);
            return 0;
          }
        } else { perr(ps, ps->pos, "expecting ',' or '}'"); return 0; }
        ps->pos++;
      }
      if (!repeat(ps, r, last, min, max)) return 0;
    } else return 1;
    skip_space(ps, nested);
  }
}

/* Alternatives into rule r. At top level a line break ends the rule unless
** the line ends with '|' or (an extension) the next line starts with '|'. */
static int parse_alternates(gparser *ps, uint32_t r, int nested) {
  for (;;) {
    if (!parse_sequence(ps, r, nested)) return 0;
    if (!emit(ps, r, SYM(SYM_END, r))) return 0;
    if (!nested && cur(ps) != '|') {
      size_t save = ps->pos;
      skip_space(ps, 1);
      if (cur(ps) != '|') { ps->pos = save; return 1; }
    }
    if (cur(ps) != '|') return 1;
    ps->pos++;
    skip_space(ps, 1);
  }
}

static int parse_rule(gparser *ps) {
  size_t start = ps->pos;
  while (is_word(cur(ps))) ps->pos++;
  if (ps->pos == start) {
    int c = cur(ps);
    if (c >= 0x21 && c < 0x7f) perr(ps, start, "expecting a rule name, got '%c'", c);
    else perr(ps, start, "expecting a rule name");
    return 0;
  }
  uint32_t len = (uint32_t)(ps->pos - start);
  uint32_t r = rule_named(ps, ps->src + start, len, start);
  if (r == NONE) return 0;
  if (ps->rules[r].defined) {
    perr(ps, start, "rule '%.*s' defined twice", (int)len, ps->src + start);
    return 0;
  }
  ps->rules[r].defined = 1;
  skip_space(ps, 0);
  if (!(cur(ps) == ':' && at(ps, 1) == ':' && at(ps, 2) == '=')) {
    perr(ps, ps->pos, "expecting '::=' after rule name '%.*s'", (int)len, ps->src + start);
    return 0;
  }
  ps->pos += 3;
  skip_space(ps, 1);
  if (!parse_alternates(ps, r, 0)) return 0;
  int c = cur(ps);
  if (c == '\r' || c == '\n') ps->pos++;
  else if (c >= 0) {
    if (c == ')') perr(ps, ps->pos, "unmatched ')'");
    else if (c >= 0x21 && c < 0x7f) perr(ps, ps->pos, "unexpected '%c'", c);
    else perr(ps, ps->pos, "expecting a line break or the end of input");
    return 0;
  }
  skip_space(ps, 1);
  return 1;
}

/* ---------------------------------------------------------------- compile */

static void parser_free(gparser *ps) {
  tide_env *env = ps->env;
  for (uint32_t i = 0; i < ps->n_rules; i++)
    tidei_free(env, ps->rules[i].body.p, ps->rules[i].body.cap * 4u);
  tidei_free(env, ps->rules, ps->cap_rules * sizeof *ps->rules);
  tidei_free(env, ps->names, ps->names_cap * 4u);
  tidei_free(env, ps->terms, ps->cap_terms * 32u);
  tidei_free(env, ps->term_hash, ps->term_hash_cap * 4u);
  tidei_free(env, ps->tmp.p, ps->tmp.cap * 4u);
  tidei_free(env, ps->ranges, ps->cap_ranges * 8u);
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

/* Lays the rules out flat and computes nullability. */
static tidei_grammar *flatten(gparser *ps, uint32_t root) {
  uint32_t nr = ps->n_rules, ns = 0, na = 0;
  for (uint32_t r = 0; r < nr; r++) {
    ns += ps->rules[r].body.n;
    for (uint32_t i = 0; i < ps->rules[r].body.n; i++)
      if (SYM_KIND(ps->rules[r].body.p[i]) == SYM_END) na++;
  }
  size_t bytes = align8(sizeof(tidei_grammar)) + align8((size_t)ns * 4) * 2 +
                 align8(((size_t)nr + 1) * 4) + align8((size_t)na * 4) + align8(nr) +
                 (size_t)ps->n_terms * 32;
  char *blk = tidei_alloc(ps->env, bytes);
  if (!blk) { pnomem(ps); return NULL; }
  tidei_grammar *g = (tidei_grammar *)blk;
  char *p = blk + align8(sizeof *g);
  g->syms = (uint32_t *)p, p += align8((size_t)ns * 4);
  g->lhs = (uint32_t *)p, p += align8((size_t)ns * 4);
  g->alt_off = (uint32_t *)p, p += align8(((size_t)nr + 1) * 4);
  g->alts = (uint32_t *)p, p += align8((size_t)na * 4);
  g->nullable = (uint8_t *)p, p += align8(nr);
  g->terms = (uint32_t(*)[8])p;
  g->n_rules = nr, g->n_syms = ns, g->n_alts = na, g->n_terms = ps->n_terms;
  g->root = root;
  g->bytes = bytes;
  g->lex_start = NULL;
  g->n_lexemes = 0;
  memset(&g->lex, 0, sizeof g->lex);
  if (ps->n_terms) memcpy(g->terms, ps->terms, (size_t)ps->n_terms * 32);
  uint32_t pos = 0, a = 0;
  for (uint32_t r = 0; r < nr; r++) {
    const u32vec *b = &ps->rules[r].body;
    g->alt_off[r] = a;
    for (uint32_t i = 0; i < b->n; i++) {
      if (i == 0 || SYM_KIND(b->p[i - 1]) == SYM_END) g->alts[a++] = pos;
      g->syms[pos] = b->p[i];
      g->lhs[pos] = r;
      pos++;
    }
  }
  g->alt_off[nr] = a;
  /* nullable: an alternative whose symbols up to an EXIT or END are all
  ** nullable rules. Reverse order first: groups come after their parent. */
  memset(g->nullable, 0, nr);
  for (int changed = 1; changed;) {
    changed = 0;
    for (uint32_t r = nr; r-- > 0;) {
      if (g->nullable[r]) continue;
      for (uint32_t k = g->alt_off[r]; k < g->alt_off[r + 1] && !g->nullable[r]; k++) {
        for (uint32_t q = g->alts[k];; q++) {
          uint32_t s = g->syms[q], kind = SYM_KIND(s);
          if (kind == SYM_END || kind == SYM_EXIT) { g->nullable[r] = 1; changed = 1; break; }
          if (kind == SYM_TERM || !g->nullable[SYM_VAL(s)]) break;
        }
      }
    }
  }
  return g;
}

static int check_start_set(tide_env *env, tidei_grammar *g);
static void g_destroy(tide_env *env, void *compiled);

/* An alternative that is a lone reference to a small generated rule (a
** group, a class) takes that rule's alternatives instead: P ::= R | y with
** R ::= a | b becomes P ::= a | b | y. Same language, one Earley level less
** per byte. Children have higher ids than parents, so a descending pass
** inlines already-inlined bodies. */
static int inline_units(gparser *ps) {
  for (uint32_t p = ps->n_rules; p-- > 0;) {
    u32vec *b = &ps->rules[p].body;
    int any = 0;
    for (uint32_t i = 0; i + 1 < b->n && !any; i++) {
      uint32_t r = SYM_VAL(b->p[i]);
      any = SYM_KIND(b->p[i]) == SYM_NT && SYM_KIND(b->p[i + 1]) == SYM_END &&
            (i == 0 || SYM_KIND(b->p[i - 1]) == SYM_END) && r != p && !ps->rules[r].name &&
            ps->rules[r].body.n <= 64;
    }
    if (!any) continue;
    u32vec out = { NULL, 0, 0 };
    for (uint32_t i = 0; i < b->n; i++) {
      uint32_t s = b->p[i], r = SYM_VAL(s);
      if (SYM_KIND(s) == SYM_NT && i + 1 < b->n && SYM_KIND(b->p[i + 1]) == SYM_END &&
          (i == 0 || SYM_KIND(b->p[i - 1]) == SYM_END) && r != p && !ps->rules[r].name &&
          ps->rules[r].body.n <= 64) {
        const u32vec *rb = &ps->rules[r].body;
        for (uint32_t k = 0; k < rb->n; k++) {
          uint32_t t = rb->p[k], kind = SYM_KIND(t);
          if (!vec_push(ps, &out, kind >= SYM_END ? SYM(kind, p) : t)) break;
        }
        i++; /* the END of the unit alternative came with R's own */
      } else if (!vec_push(ps, &out, s)) break;
    }
    if (ps->status) { tidei_free(ps->env, out.p, out.cap * 4u); return 0; }
    tidei_free(ps->env, b->p, b->cap * 4u);
    *b = out;
  }
  return 1;
}

int tidei_grammar_parse(tide_env *env, const char *src, size_t len, const char *root,
                        tidei_grammar **out) {
  *out = NULL;
  if (!src && len) return tidei_error(env, TIDE_ERR_ARG, "grammar text is NULL");
  if (len > TIDEI_GRAMMAR_MAX_SRC)
    return tidei_error(env, TIDE_ERR_ARG, "grammar text of %zu bytes exceeds the limit (%u)",
                       len, TIDEI_GRAMMAR_MAX_SRC);
  if (!root) root = "root";
  gparser ps;
  memset(&ps, 0, sizeof ps);
  ps.env = env;
  ps.src = src ? src : "";
  ps.len = len;
  ps.any_rule = NONE;
  skip_space(&ps, 1);
  while (!ps.status && ps.pos < ps.len) parse_rule(&ps);
  tidei_grammar *g = NULL;
  if (!ps.status) { /* the earliest reference to an undefined rule */
    uint32_t bad = NONE;
    for (uint32_t r = 0; r < ps.n_rules; r++)
      if (!ps.rules[r].defined && (bad == NONE || ps.rules[r].ref_off < ps.rules[bad].ref_off))
        bad = r;
    if (bad != NONE)
      perr(&ps, ps.rules[bad].ref_off, "undefined rule '%.*s'", (int)ps.rules[bad].name_len,
           ps.rules[bad].name);
  }
  if (!ps.status) {
    size_t rl = strlen(root);
    uint32_t id = NONE;
    for (uint32_t r = 0; r < ps.n_rules && id == NONE; r++)
      if (ps.rules[r].name && ps.rules[r].name_len == rl && memcmp(ps.rules[r].name, root, rl) == 0)
        id = r;
    if (id == NONE)
      ps.status = tidei_error(env, TIDE_ERR_FORMAT, "grammar has no rule '%s'", root);
    else if (inline_units(&ps))
      g = flatten(&ps, id);
  }
  int status = ps.status;
  parser_free(&ps);
  if (!status && g) status = tidei_grammar_lexemes(env, g);
  if (!status && g) status = check_start_set(env, g);
  if (status) {
    if (g) g_destroy(env, g);
    return status;
  }
  *out = g;
  return TIDE_OK;
}

int tidei_grammar_productive(tidei_grammar *g) {
  /* the nullable bytes hold the answer per rule while it is computed: bit 1 */
  uint8_t *prod = g->nullable;
  for (int changed = 1; changed;) {
    changed = 0;
    for (uint32_t r = g->n_rules; r-- > 0;) {
      if (prod[r] & 2) continue;
      for (uint32_t k = g->alt_off[r]; k < g->alt_off[r + 1] && !(prod[r] & 2); k++)
        for (uint32_t q = g->alts[k];; q++) {
          uint32_t s = g->syms[q], kind = SYM_KIND(s);
          if (kind == SYM_END || kind == SYM_EXIT) { prod[r] |= 2; changed = 1; break; }
          if (kind == SYM_NT && !(prod[SYM_VAL(s)] & 2)) break;
        }
    }
  }
  int ok = (prod[g->root] & 2) != 0;
  for (uint32_t r = 0; r < g->n_rules; r++) prod[r] &= 1;
  return ok;
}

void tidei_grammar_stats(const tidei_grammar *g, int64_t *n_rules, int64_t *n_syms,
                         int64_t *n_terms) {
  if (n_rules) *n_rules = g->n_rules;
  if (n_syms) *n_syms = g->n_syms;
  if (n_terms) *n_terms = g->n_terms;
}

/* ---------------------------------------------------------------- state */

typedef struct { uint32_t dot, origin; } gitem;

#define HASH_SIZE (4 * TIDEI_GRAMMAR_SET_ITEMS) /* slots, power of two */

typedef struct {
  uint32_t n_sets, n_items;     /* chart in use */
  uint32_t sets_cap, items_cap;
  uint32_t n_rules;
  uint32_t n_extra;             /* completion keys in the hash (during push) */
  uint32_t top;                 /* top set at the last commit */
  uint32_t full_items, full_sets; /* chart size after the last full compaction */
  /* byte offsets from the state's start */
  size_t o_start, o_accept, o_items, o_hash, o_extra, o_keep, o_need, o_head, o_mark, size;
} gstate;

/* Per-push working context (registers, not state). */
typedef struct {
  const tidei_grammar *g;
  gstate *st;
  uint32_t *start;
  gitem *items;
  uint64_t *hash;
  uint64_t *extra;
  uint32_t j, begin;            /* set being built and its first item */
  int overflow, accept;
} gctx;

static void layout(const tidei_grammar *g, int32_t max_push, gstate *h) {
  if (max_push < 0) max_push = 0;
  h->sets_cap = TIDEI_GRAMMAR_BASE_SETS + (uint32_t)max_push + 1;
  h->items_cap = TIDEI_GRAMMAR_BASE_ITEMS + TIDEI_GRAMMAR_PUSH_ITEMS * (uint32_t)max_push;
  h->n_rules = g->n_rules;
  size_t o = align8(sizeof(gstate));
  h->o_start = o, o += align8(((size_t)h->sets_cap + 1) * 4);
  h->o_accept = o, o += align8(h->sets_cap);
  h->o_items = o, o += (size_t)h->items_cap * sizeof(gitem);
  h->o_hash = o, o += (size_t)HASH_SIZE * 8;
  h->o_extra = o, o += (size_t)TIDEI_GRAMMAR_SET_ITEMS * 8;
  h->o_keep = o, o += align8(h->items_cap);
  h->o_need = o, o += (size_t)h->items_cap * 8;
  h->o_head = o, o += align8((size_t)h->sets_cap * 4);
  h->o_mark = o, o += align8(g->n_rules);
  h->size = o;
}

#define ST_PTR(st, T, off) ((T *)((char *)(st) + (st)->off))

static size_t g_state_size(const void *compiled, int32_t max_push) {
  gstate h;
  layout(compiled, max_push, &h);
  return h.size;
}

static inline uint32_t hash_slot(uint64_t key) {
  return (uint32_t)((key * 0x9e3779b97f4a7c15ULL) >> 40) & (HASH_SIZE - 1);
}

/* Inserts key; 1 if it was new. */
static inline int hash_insert(uint64_t *hash, uint64_t key) {
  uint32_t h = hash_slot(key);
  while (hash[h]) {
    if (hash[h] == key) return 0;
    h = (h + 1) & (HASH_SIZE - 1);
  }
  hash[h] = key;
  return 1;
}

static inline int hash_has(const uint64_t *hash, uint64_t key) {
  uint32_t h = hash_slot(key);
  while (hash[h]) {
    if (hash[h] == key) return 1;
    h = (h + 1) & (HASH_SIZE - 1);
  }
  return 0;
}

/* Empties the table again: every key inserted during one push is listed
** (items of the new set, completion keys), and the table held nothing else,
** so each is found by probing past holes left by earlier removals. */
static void hash_clear_all(gctx *c) {
  uint64_t *hash = c->hash;
  for (uint32_t i = c->begin; i < c->st->n_items; i++) {
    uint64_t key = ((uint64_t)(c->items[i].dot + 1) << 32) | c->items[i].origin;
    uint32_t h = hash_slot(key);
    while (hash[h] != key) h = (h + 1) & (HASH_SIZE - 1);
    hash[h] = 0;
  }
  for (uint32_t i = 0; i < c->st->n_extra; i++) {
    uint32_t h = hash_slot(c->extra[i]);
    while (hash[h] != c->extra[i]) h = (h + 1) & (HASH_SIZE - 1);
    hash[h] = 0;
  }
  c->st->n_extra = 0;
}

static inline uint64_t item_key(uint32_t dot, uint32_t origin) {
  return ((uint64_t)(dot + 1) << 32) | origin;
}

static inline void add(gctx *c, uint32_t dot, uint32_t origin) {
  gstate *st = c->st;
  uint64_t key = item_key(dot, origin);
  uint32_t h = hash_slot(key);
  while (c->hash[h]) {
    if (c->hash[h] == key) return;
    h = (h + 1) & (HASH_SIZE - 1);
  }
  if (st->n_items - c->begin >= TIDEI_GRAMMAR_SET_ITEMS || st->n_items >= st->items_cap) {
    c->overflow = 1;
    return;
  }
  c->hash[h] = key;
  c->items[st->n_items].dot = dot;
  c->items[st->n_items].origin = origin;
  st->n_items++;
}

static void complete(gctx *c, uint32_t rule, uint32_t k) {
  const tidei_grammar *g = c->g;
  if (k == 0 && rule == g->root) c->accept = 1;
  if (k == c->j) return; /* empty completion: handled when predicting (nullable) */
  uint64_t key = ((uint64_t)(0xc0000000u | rule) << 32) | k;
  if (!hash_insert(c->hash, key)) return;
  if (c->st->n_extra >= TIDEI_GRAMMAR_SET_ITEMS) {
    /* the key is in the hash but not listed: remove it again */
    uint32_t h = hash_slot(key);
    while (c->hash[h] != key) h = (h + 1) & (HASH_SIZE - 1);
    c->hash[h] = 0;
    c->overflow = 1;
    return;
  }
  c->extra[c->st->n_extra++] = key;
  uint32_t want = SYM(SYM_NT, rule), e = c->start[k + 1];
  for (uint32_t i = c->start[k]; i < e; i++)
    if (c->items[i].dot < LEXBIT && g->syms[c->items[i].dot] == want)
      add(c, c->items[i].dot + 1, c->items[i].origin);
}

/* Closes set c->j (items from c->begin) under prediction and completion. */
static void closure(gctx *c) {
  const tidei_grammar *g = c->g;
  for (uint32_t i = c->begin; i < c->st->n_items && !c->overflow; i++) {
    gitem it = c->items[i];
    if (it.dot & LEXBIT) { /* inside a lexeme: it may end here */
      uint32_t q = it.dot & ~LEXBIT;
      if (tidei_lex_accept(&g->lex, (int32_t)q))
        complete(c, tidei_lex_rule(&g->lex, (int32_t)q), it.origin);
      continue;
    }
    uint32_t s = g->syms[it.dot], v = SYM_VAL(s);
    switch (SYM_KIND(s)) {
    case SYM_NT:
      if (g->lex_start && g->lex_start[v])
        add(c, LEXBIT | (uint32_t)g->lex_start[v], c->j);
      else if (!hash_has(c->hash, item_key(g->alts[g->alt_off[v]], c->j)))
        for (uint32_t a = g->alt_off[v]; a < g->alt_off[v + 1]; a++) add(c, g->alts[a], c->j);
      if (g->nullable[v]) add(c, it.dot + 1, it.origin);
      break;
    case SYM_END:
      complete(c, v, it.origin);
      break;
    case SYM_EXIT:
      complete(c, v, it.origin);
      add(c, it.dot + 1, it.origin);
      break;
    default:
      break;
    }
  }
}

static void ctx_init(gctx *c, const tidei_grammar *g, gstate *st) {
  c->g = g;
  c->st = st;
  c->start = ST_PTR(st, uint32_t, o_start);
  c->items = ST_PTR(st, gitem, o_items);
  c->hash = ST_PTR(st, uint64_t, o_hash);
  c->extra = ST_PTR(st, uint64_t, o_extra);
  c->overflow = 0;
  c->accept = 0;
}

static void g_init(const void *compiled, void *state, int32_t max_push) {
  const tidei_grammar *g = compiled;
  gstate *st = state;
  layout(g, max_push, st);
  st->n_sets = 0;
  st->n_items = 0;
  st->n_extra = 0;
  memset(ST_PTR(st, char, o_hash), 0, (size_t)HASH_SIZE * 8);
  memset(ST_PTR(st, char, o_mark), 0, g->n_rules);
  gctx c;
  ctx_init(&c, g, st);
  c.j = 0;
  c.begin = 0;
  c.start[0] = 0;
  if (g->lex_start && g->lex_start[g->root])
    add(&c, LEXBIT | (uint32_t)g->lex_start[g->root], 0);
  else
    for (uint32_t a = g->alt_off[g->root]; a < g->alt_off[g->root + 1]; a++)
      add(&c, g->alts[a], 0);
  closure(&c);
  hash_clear_all(&c);
  if (c.overflow) st->n_items = 0; /* a stuck state; compile checks this cannot happen */
  st->n_sets = 1;
  c.start[1] = st->n_items;
  st->top = 0;
  st->full_items = st->n_items;
  st->full_sets = 1;
  ST_PTR(st, uint8_t, o_accept)[0] = (uint8_t)(c.accept && !c.overflow);
}

static int g_push(const void *compiled, void *state, uint8_t byte) {
  const tidei_grammar *g = compiled;
  gstate *st = state;
  if (st->n_sets >= st->sets_cap) return 0;
  gctx c;
  ctx_init(&c, g, st);
  uint32_t top = st->n_sets - 1, j = st->n_sets;
  c.j = j;
  c.begin = st->n_items;
  uint32_t word = (uint32_t)byte >> 5, bit = 1u << (byte & 31);
  for (uint32_t i = c.start[top], e = c.start[j]; i < e; i++) {
    uint32_t d = c.items[i].dot;
    if (d & LEXBIT) {
      int32_t t = tidei_lex_step(&g->lex, (int32_t)(d & ~LEXBIT), byte);
      if (t) add(&c, LEXBIT | (uint32_t)t, c.items[i].origin);
      continue;
    }
    uint32_t s = g->syms[d];
    if (SYM_KIND(s) == SYM_TERM && (g->terms[s][word] & bit)) add(&c, d + 1, c.items[i].origin);
  }
  if (st->n_items == c.begin) return 0;
  /* the set's kernel is one lexeme item: the rest is what completing it adds */
  uint8_t lex1 = st->n_items - c.begin == 1 && (c.items[c.begin].dot & LEXBIT);
  closure(&c);
  hash_clear_all(&c);
  if (c.overflow) {
    st->n_items = c.begin;
    return 0;
  }
  c.start[j + 1] = st->n_items;
  ST_PTR(st, uint8_t, o_accept)[j] = (uint8_t)(c.accept | lex1 << 1);
  st->n_sets++;
  return 1;
}

static void g_pop(const void *compiled, void *state, int32_t n) {
  (void)compiled;
  gstate *st = state;
  tidei_assert(n >= 0 && (uint32_t)n < st->n_sets);
  st->n_sets -= (uint32_t)n;
  st->n_items = ST_PTR(st, uint32_t, o_start)[st->n_sets];
}

/* Garbage-collects sets lo..top: keeps the top set and, in older sets, the
** items that may still advance (waiting on a rule that a kept item with that
** origin may complete); sets below lo are kept whole (a superset is safe).
** Empty sets vanish and origins are renumbered; set 0 always stays. */
static void compact(const tidei_grammar *g, gstate *st, uint32_t lo) {
  uint32_t *start = ST_PTR(st, uint32_t, o_start);
  gitem *items = ST_PTR(st, gitem, o_items);
  uint8_t *keep = ST_PTR(st, uint8_t, o_keep);
  uint32_t *need = ST_PTR(st, uint32_t, o_need); /* pairs (rule, next) */
  uint32_t *head = ST_PTR(st, uint32_t, o_head);
  uint8_t *mark = ST_PTR(st, uint8_t, o_mark);
  uint8_t *accept = ST_PTR(st, uint8_t, o_accept);
  uint32_t T = st->n_sets - 1, nneed = 0;
  memset(keep + start[lo], 0, st->n_items - start[lo]);
  for (uint32_t k = lo; k <= T; k++) head[k] = NONE;
#define NEED(k, r) \
  do { if ((k) >= lo) { need[2 * nneed] = (r), need[2 * nneed + 1] = head[k], head[k] = nneed++; } } while (0)
  for (uint32_t i = start[T]; i < start[T + 1]; i++) {
    uint32_t d = items[i].dot, l;
    if (d & LEXBIT) {
      l = tidei_lex_rule(&g->lex, (int32_t)(d & ~LEXBIT));
    } else {
      uint32_t kind = SYM_KIND(g->syms[d]);
      if (kind != SYM_TERM && kind != SYM_NT) continue;
      l = g->lhs[d];
    }
    keep[i] = 1;
    if (items[i].origin != T) NEED(items[i].origin, l);
  }
  for (uint32_t k = T; k-- > lo;) {
    if (head[k] == NONE) continue;
    for (uint32_t e = head[k]; e != NONE; e = need[2 * e + 1]) mark[need[2 * e]] = 1;
    for (int changed = 1; changed;) {
      changed = 0;
      for (uint32_t i = start[k]; i < start[k + 1]; i++) {
        if (keep[i] || (items[i].dot & LEXBIT)) continue;
        uint32_t s = g->syms[items[i].dot];
        if (SYM_KIND(s) != SYM_NT || !mark[SYM_VAL(s)]) continue;
        keep[i] = 1;
        uint32_t o = items[i].origin, l = g->lhs[items[i].dot];
        if (o != k) NEED(o, l);
        else if (!mark[l]) { mark[l] = 1; NEED(k, l); changed = 1; }
      }
    }
    for (uint32_t e = head[k]; e != NONE; e = need[2 * e + 1]) mark[need[2 * e]] = 0;
  }
#undef NEED
  /* renumber sets lo..T (below lo: unchanged) */
  uint32_t *map = head, nk = lo;
  for (uint32_t k = lo; k <= T; k++) {
    int any = k == 0 || k == T;
    for (uint32_t i = start[k]; i < start[k + 1] && !any; i++) any = keep[i];
    map[k] = any ? nk++ : NONE;
  }
  uint32_t w = start[lo], s0 = start[lo];
  for (uint32_t k = lo; k <= T; k++) {
    uint32_t s1 = start[k + 1];
    if (map[k] != NONE) {
      start[map[k]] = w;
      for (uint32_t i = s0; i < s1; i++)
        if (keep[i]) {
          uint32_t o = items[i].origin;
          items[w].dot = items[i].dot;
          items[w].origin = o < lo ? o : map[o];
          w++;
        }
    }
    s0 = s1;
  }
  uint8_t acc = accept[T];
  st->n_sets = nk;
  start[nk] = w;
  st->n_items = w;
  memset(accept + lo, 0, nk - lo);
  accept[nk - 1] = acc;
}

/* Compacts the sets pushed since the last commit; the whole chart when it
** has doubled since the last full pass (amortised O(1) per commit). */
static void g_commit(const void *compiled, void *state) {
  gstate *st = state;
  if (st->n_items > 2 * st->full_items + 256 || st->n_sets > 2 * st->full_sets + 32) {
    compact(compiled, st, 0);
    st->full_items = st->n_items;
    st->full_sets = st->n_sets;
  } else {
    compact(compiled, st, st->top);
  }
  st->top = st->n_sets - 1;
}

static int g_accepting(const void *compiled, const void *state) {
  (void)compiled;
  const gstate *st = state;
  return ((const uint8_t *)state + st->o_accept)[st->n_sets - 1] & 1;
}

static int g_finished(const void *compiled, const void *state) {
  const tidei_grammar *g = compiled;
  const gstate *st = state;
  if (!g_accepting(compiled, state)) return 0;
  const uint32_t *start = (const uint32_t *)((const char *)state + st->o_start);
  const gitem *items = (const gitem *)((const char *)state + st->o_items);
  for (uint32_t i = start[st->n_sets - 1]; i < start[st->n_sets]; i++) {
    if (items[i].dot & LEXBIT) {
      if (!tidei_lex_final(&g->lex, (int32_t)(items[i].dot & ~LEXBIT))) return 0;
      continue;
    }
    uint32_t s = g->syms[items[i].dot];
    if (SYM_KIND(s) == SYM_TERM) {
      for (int w = 0; w < 8; w++)
        if (g->terms[s][w]) return 0;
    }
  }
  return 1;
}

static void g_copy(const void *compiled, void *dst, const void *src, size_t size) {
  const tidei_grammar *g = compiled;
  const gstate *s = src;
  gstate *d = dst;
  (void)size;
  tidei_assert(size == s->size);
  memcpy(d, s, sizeof *s);
  memcpy(ST_PTR(d, char, o_start), (const char *)s + s->o_start, ((size_t)s->n_sets + 1) * 4);
  memcpy(ST_PTR(d, char, o_accept), (const char *)s + s->o_accept, s->n_sets);
  memcpy(ST_PTR(d, char, o_items), (const char *)s + s->o_items, (size_t)s->n_items * sizeof(gitem));
  memset(ST_PTR(d, char, o_hash), 0, (size_t)HASH_SIZE * 8);
  memset(ST_PTR(d, char, o_mark), 0, g->n_rules);
}

static void g_destroy(tide_env *env, void *compiled) {
  tidei_grammar *g = compiled;
  if (!g) return;
  tidei_grammar_lex_free(env, g);
  tidei_free(env, g, g->bytes);
}

int32_t tidei_grammar_lex_state(const tidei_grammar *g, const void *state, int32_t more,
                                uint64_t follow[4], int *has_follow) {
  const gstate *st = state;
  *has_follow = 0;
  if (!g->lex_start) return 0;
  const uint32_t *start = (const uint32_t *)((const char *)state + st->o_start);
  const gitem *items = (const gitem *)((const char *)state + st->o_items);
  uint32_t top = st->n_sets - 1;
  /* room for more sets as big as this one (the walk's steps make no bigger) */
  if ((int64_t)st->n_sets + more >= st->sets_cap ||
      (int64_t)st->n_items + (int64_t)more * (start[top + 1] - start[top]) >= st->items_cap)
    return 0;
  if (((const uint8_t *)state + st->o_accept)[top] & 2) {
    /* kernel first; every other scanner came from completing it */
    int32_t d = (int32_t)(items[start[top]].dot & ~LEXBIT);
    if (!tidei_lex_accept(&g->lex, d)) return d; /* nothing completed: it is alone */
    follow[0] = follow[1] = follow[2] = follow[3] = 0;
    for (uint32_t i = start[top] + 1; i < start[top + 1]; i++) {
      uint32_t x = items[i].dot;
      if (x & LEXBIT) {
        for (int b = 0; b < 256; b++)
          if (tidei_lex_step(&g->lex, (int32_t)(x & ~LEXBIT), (uint8_t)b))
            follow[b >> 6] |= 1ull << (b & 63);
      } else if (SYM_KIND(g->syms[x]) == SYM_TERM) {
        const uint32_t *t = g->terms[g->syms[x]];
        for (int w = 0; w < 4; w++) follow[w] |= (uint64_t)t[2 * w] | (uint64_t)t[2 * w + 1] << 32;
      }
    }
    *has_follow = 1;
    return d;
  }
  int32_t found = 0;
  for (uint32_t i = start[top]; i < start[top + 1]; i++) {
    uint32_t d = items[i].dot;
    if (d & LEXBIT) {
      if (found) return 0;
      found = (int32_t)(d & ~LEXBIT);
    } else if (SYM_KIND(g->syms[d]) == SYM_TERM) {
      return 0;
    }
  }
  return found;
}

void tidei_grammar_state_stats(const void *state, int64_t *n_sets, int64_t *n_items) {
  const gstate *st = state;
  if (n_sets) *n_sets = st->n_sets;
  if (n_items) *n_items = st->n_items;
}

const tidei_engine tidei_grammar_engine = {
  "grammar", g_state_size, g_init, g_push, g_pop, g_commit, g_accepting, g_finished, g_copy,
  g_destroy,
};

/* Fails compile when the start set alone overflows a set. */
static int check_start_set(tide_env *env, tidei_grammar *g) {
  size_t n = g_state_size(g, 0);
  void *st = tidei_alloc(env, n);
  if (!st) return TIDE_ERR_NOMEM;
  g_init(g, st, 0);
  int ok = ((gstate *)st)->n_items > 0 || g->alt_off[g->root + 1] == g->alt_off[g->root];
  tidei_free(env, st, n);
  if (!ok)
    return tidei_error(env, TIDE_ERR_ARG,
                       "grammar too large: its start set needs more than %d Earley items",
                       TIDEI_GRAMMAR_SET_ITEMS);
  return TIDE_OK;
}

/* ---------------------------------------------------------------- public */

int tide_grammar_compile(tide_env *env, const char *src, size_t len, const char *root,
                         tide_constraint **out) {
  if (!out) return tidei_error(env, TIDE_ERR_ARG, "tide_grammar_compile: out is NULL");
  *out = NULL;
  tidei_grammar *g;
  int status = tidei_grammar_parse(env, src, len, root, &g);
  if (status) return status;
  return tidei_constraint_new(env, &tidei_grammar_engine, g, out);
}
