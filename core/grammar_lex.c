/*
** grammar_lex.c -- the grammar compiler's lexer layer: regular rules become
** lexemes, each compiled to a minimised DFA.
** Layer: core.
**
** Why. A string or a number in a grammar is a handful of small rules (a
** class, a repetition, an escape); byte by byte, the Earley recognizer
** predicts and completes them all, ~100 ns a byte. A lexeme is one Earley
** item carrying a DFA state: scanning a byte is one table lookup, and the
** lexeme completes (its rule, at its origin) whenever the DFA accepts. The
** language is unchanged -- completion is not greedy: an accepting state that
** can go on keeps both the completed and the continuing item -- so every
** verdict is the byte-level recognizer's. The mask walk (constrain.c) goes
** further: while the only item that can scan is inside a lexeme, it steps
** the DFA without touching the chart.
**
** Which rules. Rules reachable from the root are classified bottom-up: a
** rule is regular when every rule it references is regular, and its only
** recursion is on itself at the left end of an alternative (R ::= R a, as
** x* and x+ compile) or at the right end (R ::= a R); then R is
** (right heads)* (other alternatives) (left tails)*. A regular rule
** referenced from a non-regular one (or the regular root) is a lexeme; the
** rules inside it are absorbed into its DFA. Limits (grammar.h): NFA states
** per lexeme, nesting depth, DFA states in all; past them a rule stays an
** Earley rule. The NFA is the regex engine's (regex.h), and so is the DFA
** construction (tidei_regex_dfa).
**
** Counted lexemes. A bounded repetition Q ::= x{m,n} too big for a DFA of
** its own (n copies of x) becomes a counted lexeme when x is regular and
** prefix-free: x's DFA plus the count of x's done, in virtual state ids
** (grammar.h, tidei_lex_count). A JSON string with maxLength is one.
*/
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "regex.h"

/* R_BIG: regular but past the limits (its parts may still be lexemes) */
enum { R_UNKNOWN = 0, R_REGULAR = 1, R_NO = 2, R_BIG = 3 };

/* ---------------------------------------------------------------- analysis */

typedef struct {
  tide_env *env;
  tidei_grammar *g;
  uint8_t *reach;      /* (n_rules) reachable from the root */
  uint8_t *cls;        /* (n_rules) R_* */
  uint32_t *pending;   /* (n_rules) references to other rules not yet regular */
  uint32_t *est;       /* (n_rules) NFA size estimate, saturating */
  uint8_t *depth;      /* (n_rules) nesting of rules inside */
  uint8_t *loopy;      /* (n_rules) regular with a repetition (x*, x+, x{m,n}) inside */
  uint32_t *ref_first; /* (n_rules + 1) CSR of referrers */
  uint32_t *refs;      /* (n_refs) the rule holding each reference */
  uint32_t n_refs;
  uint32_t *queue;     /* (n_rules) */
  uint32_t *rng_first; /* (n_terms + 1) terminal t's byte ranges: */
  uint8_t *rng;        /* (n_rng, 2) lo, hi of rng_first[t] .. rng_first[t + 1] */
  uint32_t n_rng;
} lexan;

static int lexan_alloc(lexan *a) {
  tide_env *env = a->env;
  size_t nr = a->g->n_rules;
  a->reach = tidei_calloc(env, nr, 1);
  a->cls = tidei_calloc(env, nr, 1);
  a->pending = tidei_calloc(env, nr, sizeof(uint32_t));
  a->est = tidei_calloc(env, nr, sizeof(uint32_t));
  a->depth = tidei_calloc(env, nr, 1);
  a->loopy = tidei_calloc(env, nr, 1);
  a->ref_first = tidei_calloc(env, nr + 1, sizeof(uint32_t));
  a->queue = tidei_alloc(env, (nr ? nr : 1) * sizeof(uint32_t));
  a->rng_first = tidei_calloc(env, (size_t)a->g->n_terms + 1, sizeof(uint32_t));
  return a->reach && a->cls && a->pending && a->est && a->depth && a->loopy && a->ref_first &&
         a->queue && a->rng_first;
}

static void lexan_free(lexan *a) {
  tide_env *env = a->env;
  size_t nr = a->g->n_rules;
  tidei_free(env, a->reach, nr);
  tidei_free(env, a->cls, nr);
  tidei_free(env, a->pending, nr * sizeof(uint32_t));
  tidei_free(env, a->est, nr * sizeof(uint32_t));
  tidei_free(env, a->depth, nr);
  tidei_free(env, a->loopy, nr);
  tidei_free(env, a->ref_first, (nr + 1) * sizeof(uint32_t));
  tidei_free(env, a->refs, (size_t)a->n_refs * sizeof(uint32_t));
  tidei_free(env, a->queue, (nr ? nr : 1) * sizeof(uint32_t));
  tidei_free(env, a->rng_first, ((size_t)a->g->n_terms + 1) * sizeof(uint32_t));
  tidei_free(env, a->rng, (size_t)a->n_rng * 2);
}

static int term_has(const uint32_t set[8], int b) {
  return b < 256 && (set[b >> 5] >> (b & 31) & 1);
}

/* Symbols [first, end) of rule r's alternatives (rules are laid out in order). */
static void rule_span(const tidei_grammar *g, uint32_t r, uint32_t *first, uint32_t *end) {
  if (g->alt_off[r] == g->alt_off[r + 1]) {
    *first = *end = 0;
    return;
  }
  *first = g->alts[g->alt_off[r]];
  uint32_t last = g->alts[g->alt_off[r + 1] - 1];
  while (TIDEI_SYM_KIND(g->syms[last]) != TIDEI_SYM_END) last++;
  *end = last + 1;
}

/* Rules reachable from the root (breadth first through the queue). */
static void find_reachable(lexan *a) {
  const tidei_grammar *g = a->g;
  uint32_t qh = 0, qt = 0;
  a->reach[g->root] = 1;
  a->queue[qt++] = g->root;
  while (qh < qt) {
    uint32_t r = a->queue[qh++], lo, hi;
    rule_span(g, r, &lo, &hi);
    for (uint32_t p = lo; p < hi; p++) {
      uint32_t s = g->syms[p];
      if (TIDEI_SYM_KIND(s) == TIDEI_SYM_NT && !a->reach[TIDEI_SYM_VAL(s)]) {
        a->reach[TIDEI_SYM_VAL(s)] = 1;
        a->queue[qt++] = TIDEI_SYM_VAL(s);
      }
    }
  }
}

/* How alternative a of rule r refers to r: 0 not at all, 1 left end
** (R ::= R x), 2 right end (R ::= x R), 3 otherwise (not regular). */
static int self_ref(const tidei_grammar *g, uint32_t r, uint32_t a) {
  uint32_t p = g->alts[a], q = p, n_self = 0, exits = 0;
  for (; TIDEI_SYM_KIND(g->syms[q]) != TIDEI_SYM_END; q++) {
    uint32_t s = g->syms[q];
    n_self += s == TIDEI_SYM(TIDEI_SYM_NT, r);
    exits += TIDEI_SYM_KIND(s) == TIDEI_SYM_EXIT;
  }
  if (!n_self) return 0;
  if (n_self > 1 || exits || q - p < 2) return 3;
  if (g->syms[p] == TIDEI_SYM(TIDEI_SYM_NT, r)) return 1;
  if (g->syms[q - 1] == TIDEI_SYM(TIDEI_SYM_NT, r)) return 2;
  return 3;
}

/* Nonzero if some alternative of r refers to r the way how says. */
static int self_ref_any(const tidei_grammar *g, uint32_t r, int how) {
  for (uint32_t a = g->alt_off[r]; a < g->alt_off[r + 1]; a++)
    if (self_ref(g, r, a) == how) return 1;
  return 0;
}

/* Referrer lists (CSR) and pending counts over the reachable rules; rules
** with a self-reference in the wrong place are R_NO. */
static int build_refs(lexan *a) {
  const tidei_grammar *g = a->g;
  uint32_t nr = g->n_rules, n = 0;
  for (uint32_t r = 0; r < nr; r++) {
    if (!a->reach[r]) continue;
    for (uint32_t k = g->alt_off[r]; k < g->alt_off[r + 1]; k++)
      if (self_ref(g, r, k) == 3) a->cls[r] = R_NO;
    uint32_t lo, hi;
    rule_span(g, r, &lo, &hi);
    for (uint32_t p = lo; p < hi; p++) {
      uint32_t s = g->syms[p];
      if (TIDEI_SYM_KIND(s) != TIDEI_SYM_NT || TIDEI_SYM_VAL(s) == r) continue;
      a->pending[r]++;
      a->ref_first[TIDEI_SYM_VAL(s) + 1]++;
      n++;
    }
  }
  for (uint32_t r = 0; r < nr; r++) a->ref_first[r + 1] += a->ref_first[r];
  a->n_refs = n;
  if (n && !(a->refs = tidei_alloc(a->env, (size_t)n * sizeof(uint32_t)))) return 0;
  for (uint32_t r = 0; r < nr; r++) {
    if (!a->reach[r]) continue;
    uint32_t lo, hi;
    rule_span(g, r, &lo, &hi);
    for (uint32_t p = lo; p < hi; p++) {
      uint32_t s = g->syms[p];
      if (TIDEI_SYM_KIND(s) != TIDEI_SYM_NT || TIDEI_SYM_VAL(s) == r) continue;
      a->refs[a->ref_first[TIDEI_SYM_VAL(s)]++] = r;
    }
  }
  for (uint32_t r = nr; r > 0; r--) a->ref_first[r] = a->ref_first[r - 1];
  a->ref_first[0] = 0;
  return 1;
}

/* The size estimate counts a shared part once per use, so it is loose:
** rules past EST_MAX are not tried at all, the others are built up to the
** NFA limit. */
#define EST_MAX (16u * TIDEI_GRAMMAR_LEX_NFA)

static uint32_t sat_add(uint32_t x, uint32_t y) {
  return x > EST_MAX || y > EST_MAX ? EST_MAX + 1 : x + y;
}

/* Size and depth of rule r once all it references is regular; R_REGULAR
** when within the limits, else R_NO. */
static void classify(lexan *a, uint32_t r) {
  const tidei_grammar *g = a->g;
  uint32_t lo, hi, est = 8;
  unsigned depth = 1;
  rule_span(g, r, &lo, &hi);
  for (uint32_t p = lo; p < hi; p++) {
    uint32_t s = g->syms[p], v = TIDEI_SYM_VAL(s);
    switch (TIDEI_SYM_KIND(s)) {
    case TIDEI_SYM_TERM:
      est = sat_add(est, 2u * (a->rng_first[v + 1] - a->rng_first[v]) + 1);
      break;
    case TIDEI_SYM_NT:
      if (v != r) {
        est = sat_add(est, a->est[v] + 1);
        if (a->depth[v] + 1u > depth) depth = a->depth[v] + 1u;
      }
      break;
    default:
      est = sat_add(est, 3);
      break;
    }
  }
  a->est[r] = est;
  a->depth[r] = (uint8_t)(depth > 255 ? 255 : depth);
  int loopy = 0;
  for (uint32_t k = g->alt_off[r]; k < g->alt_off[r + 1] && !loopy; k++)
    loopy = self_ref(g, r, k) != 0;
  for (uint32_t p = lo; p < hi && !loopy; p++) {
    uint32_t s = g->syms[p];
    loopy =
        TIDEI_SYM_KIND(s) == TIDEI_SYM_EXIT ||
        (TIDEI_SYM_KIND(s) == TIDEI_SYM_NT && TIDEI_SYM_VAL(s) != r && a->loopy[TIDEI_SYM_VAL(s)]);
  }
  a->loopy[r] = (uint8_t)loopy;
  a->cls[r] = est <= EST_MAX && depth <= TIDEI_GRAMMAR_LEX_DEPTH ? R_REGULAR : R_BIG;
}

/* The maximal byte ranges of every terminal. */
static int term_ranges(lexan *a) {
  const tidei_grammar *g = a->g;
  uint32_t n = 0;
  for (int pass = 0; pass < 2; pass++) {
    n = 0;
    for (uint32_t t = 0; t < g->n_terms; t++) {
      if (pass) a->rng_first[t] = n;
      for (int lo = 0; lo < 256; lo++) {
        if (!g->terms[t][lo >> 5]) {
          lo |= 31;
          continue;
        }
        if (!term_has(g->terms[t], lo)) continue;
        int hi = lo;
        while (hi < 255 && term_has(g->terms[t], hi + 1)) hi++;
        if (pass) a->rng[2 * n] = (uint8_t)lo, a->rng[2 * n + 1] = (uint8_t)hi;
        n++;
        lo = hi;
      }
    }
    if (!pass) {
      a->n_rng = n;
      if (!(a->rng = tidei_alloc(a->env, (size_t)(n ? n : 1) * 2))) return 0;
      a->n_rng = n ? n : 1;
    }
  }
  a->rng_first[g->n_terms] = n;
  return 1;
}

/* Bottom-up: a rule is classified once every rule it references is
** regular; rules left unknown (recursive, or above a non-regular rule) are
** not regular. */
static void find_regular(lexan *a) {
  const tidei_grammar *g = a->g;
  uint32_t nr = g->n_rules, qh = 0, qt = 0;
  for (uint32_t r = 0; r < nr; r++)
    if (a->reach[r] && a->cls[r] == R_UNKNOWN && !a->pending[r]) a->queue[qt++] = r;
  while (qh < qt) {
    uint32_t r = a->queue[qh++];
    classify(a, r);
    if (a->cls[r] != R_REGULAR) continue;
    for (uint32_t k = a->ref_first[r]; k < a->ref_first[r + 1]; k++) {
      uint32_t p = a->refs[k];
      if (--a->pending[p] == 0 && a->cls[p] == R_UNKNOWN) a->queue[qt++] = p;
    }
  }
  for (uint32_t r = 0; r < nr; r++)
    if (a->cls[r] == R_UNKNOWN) a->cls[r] = R_NO;
}

/* ---------------------------------------------------------------- NFA */

/* The NFA is built backwards, continuation first: building a symbol takes
** the state that follows it and returns its entry. A rule or terminal built
** twice before the same continuation is the same sub-automaton, so it is
** built once (memo): the tails that end every branch of a string rule,
** say, are shared instead of copied per branch. */
#define NB_LIMIT (-1) /* nfab.st: past the state limit (not an error) */

typedef struct {
  tide_env *env;
  const tidei_grammar *g;
  const uint32_t *rng_first;
  const uint8_t *rng;
  tidei_nstate *ns;
  int32_t n, cap, limit;
  int st;             /* TIDE_ERR_NOMEM, or NB_LIMIT: past the limit */
  uint64_t *memo_key; /* open addressing: (symbol, continuation) + 1, 0 empty */
  int32_t *memo_val;  /* entry state */
  uint32_t memo_cap, memo_n;
} nfab;

static int32_t nb_new(nfab *b, int kind, int lo, int hi, int32_t out, int32_t out2) {
  if (b->st) return 0;
  if (b->n >= b->limit) {
    b->st = NB_LIMIT;
    return 0;
  }
  if (b->n == b->cap) {
    int32_t nc = b->cap ? b->cap * 2 : 256;
    tidei_nstate *p =
        tidei_realloc(b->env, b->ns, (size_t)b->cap * sizeof *p, (size_t)nc * sizeof *p);
    if (!p) {
      b->st = TIDE_ERR_NOMEM;
      return 0;
    }
    b->ns = p;
    b->cap = nc;
  }
  tidei_nstate *q = &b->ns[b->n];
  q->kind = (uint8_t)kind, q->lo = (uint8_t)lo, q->hi = (uint8_t)hi;
  q->out = out, q->out2 = out2, q->off = 0;
  return b->n++;
}

/* The memo slot of (sym, cont): its value when found, else -1 and *slot
** where to store it (UINT32_MAX when the table is full). */
static int32_t memo_find(nfab *b, uint32_t sym, int32_t cont, uint32_t *slot) {
  *slot = UINT32_MAX;
  if (b->st) return -1;
  uint64_t key = ((uint64_t)sym << 32 | (uint32_t)cont) + 1;
  uint32_t mask = b->memo_cap - 1, h = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 40) & mask;
  for (uint32_t k = 0; k < b->memo_cap; k++, h = (h + 1) & mask) {
    if (b->memo_key[h] == key) return b->memo_val[h];
    if (!b->memo_key[h]) {
      *slot = 2 * b->memo_n < b->memo_cap ? h : UINT32_MAX;
      return -1;
    }
  }
  *slot = UINT32_MAX;
  return -1;
}

static void memo_put(nfab *b, uint32_t slot, uint32_t sym, int32_t cont, int32_t entry) {
  if (slot == UINT32_MAX || b->st) return;
  b->memo_key[slot] = ((uint64_t)sym << 32 | (uint32_t)cont) + 1;
  b->memo_val[slot] = entry;
  b->memo_n++;
}

/* A terminal before cont: a RANGE state per maximal byte range, behind a
** chain of splits when there are several. */
static int32_t nb_term(nfab *b, uint32_t t, int32_t cont) {
  uint32_t k0 = b->rng_first[t], k1 = b->rng_first[t + 1], slot;
  const uint8_t *rg = b->rng;
  int32_t in = memo_find(b, TIDEI_SYM(TIDEI_SYM_TERM, t), cont, &slot);
  if (in >= 0) return in;
  if (k0 == k1) in = nb_new(b, TIDEI_NFA_FAIL, 0, 0, -1, -1);
  for (uint32_t k = k1; k-- > k0 && !b->st;) {
    int32_t r = nb_new(b, TIDEI_NFA_RANGE, rg[2 * k], rg[2 * k + 1], cont, -1);
    in = k + 1 == k1 ? r : nb_new(b, TIDEI_NFA_EPS, 0, 0, r, in);
  }
  memo_put(b, slot, TIDEI_SYM(TIDEI_SYM_TERM, t), cont, in);
  return in;
}

static int32_t nb_rule(nfab *b, uint32_t r, int32_t cont, int depth);

/* Symbols [p, e) of an alternative before cont, last first; an EXIT may
** end the alternative there (it goes on to cont). */
static int32_t nb_piece(nfab *b, uint32_t p, uint32_t e, int32_t cont, int depth) {
  const tidei_grammar *g = b->g;
  int32_t x = cont;
  for (uint32_t q = e; q-- > p && !b->st;) {
    uint32_t s = g->syms[q];
    switch (TIDEI_SYM_KIND(s)) {
    case TIDEI_SYM_TERM:
      x = nb_term(b, TIDEI_SYM_VAL(s), x);
      break;
    case TIDEI_SYM_NT:
      x = nb_rule(b, TIDEI_SYM_VAL(s), x, depth + 1);
      break;
    default:
      x = nb_new(b, TIDEI_NFA_EPS, 0, 0, x, cont);
      break; /* EXIT */
    }
  }
  return x;
}

/* The alternatives of r of one kind (0 base, 1 left tails, 2 right heads),
** each before cont, as one entry (a chain of splits); -1 when none. */
static int32_t nb_alts(nfab *b, uint32_t r, int how, int32_t cont, int depth) {
  const tidei_grammar *g = b->g;
  int32_t in = -1;
  for (uint32_t a = g->alt_off[r + 1]; a-- > g->alt_off[r] && !b->st;) {
    if (self_ref(g, r, a) != how) continue;
    uint32_t p = g->alts[a], e = p;
    while (TIDEI_SYM_KIND(g->syms[e]) != TIDEI_SYM_END) e++;
    int32_t x = nb_piece(b, how == 1 ? p + 1 : p, how == 2 ? e - 1 : e, cont, depth);
    in = in < 0 ? x : nb_new(b, TIDEI_NFA_EPS, 0, 0, x, in);
  }
  return in;
}

/* Rule r before cont: (right heads)* (base alternatives) (left tails)*. */
static int32_t nb_rule(nfab *b, uint32_t r, int32_t cont, int depth) {
  uint32_t slot;
  int32_t in = memo_find(b, TIDEI_SYM(TIDEI_SYM_NT, r), cont, &slot);
  if (in >= 0) return in;
  if (depth > TIDEI_GRAMMAR_LEX_DEPTH + 1) b->st = NB_LIMIT; /* the analysis bounds it */
  int32_t after = cont;
  if (self_ref_any(b->g, r, 1)) { /* loop: tails, or on to cont */
    after = nb_new(b, TIDEI_NFA_EPS, 0, 0, -1, cont);
    int32_t t = nb_alts(b, r, 1, after, depth);
    if (!b->st) b->ns[after].out = t;
  }
  int32_t base = nb_alts(b, r, 0, after, depth);
  if (base < 0) base = nb_new(b, TIDEI_NFA_FAIL, 0, 0, -1, -1);
  in = base;
  if (self_ref_any(b->g, r, 2)) { /* loop: heads, or on to the base */
    in = nb_new(b, TIDEI_NFA_EPS, 0, 0, -1, base);
    int32_t h = nb_alts(b, r, 2, in, depth);
    if (!b->st) b->ns[in].out = h;
  }
  memo_put(b, slot, TIDEI_SYM(TIDEI_SYM_NT, r), cont, in);
  return in;
}

/* ---------------------------------------------------------------- lexemes */

/* Room for need states: fresh arrays, copied, so that a failure leaves
** the table as it was (sizes stay exact for tidei_free). */
static int lex_grow(tide_env *env, tidei_lex *L, int32_t need) {
  if (need <= L->cap) return 1;
  int32_t nc = L->cap ? L->cap : 64;
  while (nc < need) nc *= 2;
  size_t o = (size_t)L->cap, n = (size_t)nc, used = (size_t)L->n_states;
  int32_t *next = tidei_alloc(env, n * 256 * sizeof(int32_t));
  uint8_t *acc = tidei_alloc(env, n), *fin = tidei_alloc(env, n);
  uint32_t *rule = tidei_alloc(env, n * sizeof(uint32_t));
  uint64_t *loops = tidei_alloc(env, n * 4 * sizeof(uint64_t));
  if (!next || !acc || !fin || !rule || !loops) {
    if (next) tidei_free(env, next, n * 256 * sizeof(int32_t));
    if (acc) tidei_free(env, acc, n);
    if (fin) tidei_free(env, fin, n);
    if (rule) tidei_free(env, rule, n * sizeof(uint32_t));
    if (loops) tidei_free(env, loops, n * 4 * sizeof(uint64_t));
    return 0;
  }
  if (used) {
    memcpy(next, L->next, used * 256 * sizeof(int32_t));
    memcpy(acc, L->accept, used);
    memcpy(fin, L->final, used);
    memcpy(rule, L->rule, used * sizeof(uint32_t));
    memcpy(loops, L->loops, used * 4 * sizeof(uint64_t));
  }
  if (L->next) {
    tidei_free(env, L->next, o * 256 * sizeof(int32_t));
    tidei_free(env, L->accept, o);
    tidei_free(env, L->final, o);
    tidei_free(env, L->rule, o * sizeof(uint32_t));
    tidei_free(env, L->loops, o * 4 * sizeof(uint64_t));
  }
  L->next = next, L->accept = acc, L->final = fin, L->rule = rule, L->loops = loops;
  L->cap = nc;
  return 1;
}

/* Appends dfa (states 1.. of it; 0 is the shared dead state) for rule r. */
static void lex_append(tidei_lex *L, const tidei_dfa *f, uint32_t r) {
  int32_t base = L->n_states - 1; /* local s >= 1 -> base + s */
  for (int32_t s = 1; s < f->n_states; s++) {
    int32_t q = base + s;
    for (int c = 0; c < 256; c++) {
      int32_t t = f->next[(size_t)s * 256 + (size_t)c];
      L->next[(size_t)q * 256 + (size_t)c] = t ? base + t : 0;
    }
    L->accept[q] = f->accept[s];
    L->final[q] = f->final[s];
    L->rule[q] = r;
    memcpy(L->loops + (size_t)q * 4, f->loops + (size_t)s * 4, 4 * sizeof(uint64_t));
  }
  L->n_states += f->n_states - 1;
}

/* Builds rule r's DFA into the table: 1 done, 0 skipped (limits, empty
** language), -1 out of memory. */
static int lex_build(lexan *a, uint32_t r, int32_t limit, int32_t *used) {
  tide_env *env = a->env;
  tidei_grammar *g = a->g;
  nfab b;
  memset(&b, 0, sizeof b);
  b.env = env, b.g = g, b.rng_first = a->rng_first, b.rng = a->rng, b.limit = limit;
  b.memo_cap = 1024;
  while (b.memo_cap < 2u * (uint32_t)limit) b.memo_cap *= 2;
  b.memo_key = tidei_calloc(env, b.memo_cap, sizeof(uint64_t));
  b.memo_val = tidei_alloc(env, b.memo_cap * sizeof(int32_t));
  if (!b.memo_key || !b.memo_val) b.st = TIDE_ERR_NOMEM;
  int32_t match = nb_new(&b, TIDEI_NFA_MATCH, 0, 0, -1, -1);
  int32_t start = b.st ? 0 : nb_rule(&b, r, match, 0);
  int res = 0;
  *used = b.st == NB_LIMIT ? b.n / 8 : b.n; /* cut short: no DFA was built */
  if (b.st == TIDE_ERR_NOMEM)
    res = -1;
  else if (!b.st) {
    char saved[TIDEI_ERRMSG];
    memcpy(saved, env->errmsg, sizeof saved);
    tidei_dfa *d = NULL;
    int st = tidei_regex_dfa(env, b.ns, b.n, start, &d);
    memcpy(env->errmsg, saved, sizeof saved); /* a skipped lexeme is no error */
    if (st == TIDE_ERR_NOMEM)
      res = -1;
    else if (!st && g->lex.n_states + d->n_states - 1 <= TIDEI_GRAMMAR_LEX_STATES) {
      if (!lex_grow(env, &g->lex, g->lex.n_states + d->n_states - 1))
        res = -1;
      else {
        g->lex_start[r] = g->lex.n_states;
        lex_append(&g->lex, d, r);
        res = 1;
      }
    }
    if (d) tidei_regex_engine.destroy(env, d);
  }
  if (b.ns) tidei_free(env, b.ns, (size_t)b.cap * sizeof(tidei_nstate));
  if (b.memo_key) tidei_free(env, b.memo_key, b.memo_cap * sizeof(uint64_t));
  if (b.memo_val) tidei_free(env, b.memo_val, b.memo_cap * sizeof(int32_t));
  return res;
}

static int cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return a < b ? -1 : a > b;
}

/* want[r] = 1 for r, or for the rule r is an alias of (r ::= x): the alias
** stays an Earley rule and x gets the DFA, shared by all its aliases. Only
** infinite languages (strings, numbers, ...): a finite one (a keyword, an
** enum, a date) is cheap for the parser and seldom worth its DFA's compile
** time. */
static void want_rule(const lexan *a, uint8_t *want, uint32_t r, int any) {
  const tidei_grammar *g = a->g;
  for (int hops = 0; hops < 64; hops++) {
    uint32_t k = g->alt_off[r], p = g->alts[k], s = g->syms[p];
    if (g->alt_off[r + 1] != k + 1 || TIDEI_SYM_KIND(s) != TIDEI_SYM_NT ||
        TIDEI_SYM_KIND(g->syms[p + 1]) != TIDEI_SYM_END || TIDEI_SYM_VAL(s) == r)
      break;
    r = TIDEI_SYM_VAL(s);
  }
  if (!want[r] && (any || a->loopy[r])) want[r] = 1;
}

/* Marks the regular rules referenced from rule r as wanted; finite ones
** too (any) when r is a regular rule too big for a DFA of its own (the
** characters of a bounded string, say). */
static void want_children(const lexan *a, uint8_t *want, uint32_t r, int any) {
  const tidei_grammar *g = a->g;
  uint32_t lo, hi;
  rule_span(g, r, &lo, &hi);
  for (uint32_t p = lo; p < hi; p++) {
    uint32_t s = g->syms[p], v = TIDEI_SYM_VAL(s);
    if (TIDEI_SYM_KIND(s) == TIDEI_SYM_NT && v != r && a->cls[v] == R_REGULAR)
      want_rule(a, want, v, any);
  }
}

static int lex_table_init(tide_env *env, tidei_grammar *g) {
  if (!(g->lex_start = tidei_calloc(env, g->n_rules, sizeof(int32_t)))) return 0;
  if (!lex_grow(env, &g->lex, 1)) return 0;
  memset(g->lex.next, 0, 256 * sizeof(int32_t)); /* state 0: dead */
  g->lex.accept[0] = g->lex.final[0] = 0;
  g->lex.rule[0] = 0;
  memset(g->lex.loops, 0, 4 * sizeof(uint64_t));
  g->lex.n_states = 1;
  g->lex.next_virt = TIDEI_LEX_VIRT;
  return 1;
}

/* ---------------------------------------------------------------- counted lexemes */

/* Rule q as x{m,n}: one alternative x^m (EXIT x)^(n-m), x a regular rule
** that cannot be empty. */
static int count_shape(const lexan *a, uint32_t q, uint32_t *x, uint32_t *m, uint32_t *n) {
  const tidei_grammar *g = a->g;
  if (g->alt_off[q + 1] != g->alt_off[q] + 1) return 0;
  uint32_t xs = 0, exits = 0, prev_exit = 0;
  *m = *n = 0;
  for (uint32_t p = g->alts[g->alt_off[q]];; p++) {
    uint32_t sym = g->syms[p], kind = TIDEI_SYM_KIND(sym);
    if (kind == TIDEI_SYM_END) break;
    if (kind == TIDEI_SYM_EXIT) {
      if (prev_exit) return 0;
      exits++, prev_exit = 1;
      continue;
    }
    if (kind != TIDEI_SYM_NT || (xs && sym != xs) || (exits && !prev_exit)) return 0;
    xs = sym, prev_exit = 0;
    *m += !exits;
    ++*n;
  }
  if (prev_exit || *n < 2) return 0;
  *x = TIDEI_SYM_VAL(xs);
  return *x != q && a->cls[*x] == R_REGULAR && !g->nullable[*x];
}

/* Makes rule q (of count_shape) a counted lexeme over x's DFA (built here
** if x has none yet): 1 done, 0 skipped (x too big or not prefix-free,
** virtual ids used up), -1 out of memory. */
static int count_build(lexan *a, uint32_t q, int64_t *budget) {
  tidei_grammar *g = a->g;
  tidei_lex *L = &g->lex;
  uint32_t x, m, n;
  if (!count_shape(a, q, &x, &m, &n)) return 0;
  if (!g->lex_start[x]) {
    int32_t used = 0;
    int res = *budget > 0 ? lex_build(a, x, *budget < TIDEI_GRAMMAR_LEX_NFA
                                                ? (int32_t)*budget : TIDEI_GRAMMAR_LEX_NFA, &used)
                          : 0;
    *budget -= used;
    if (res <= 0) return res;
    g->n_lexemes++;
  }
  int32_t first = g->lex_start[x], span = 1;
  if (first >= TIDEI_LEX_VIRT) return 0;
  while (first + span - 1 < L->n_states && L->rule[first + span - 1] == x) {
    int32_t st = first + span - 1;
    if (L->accept[st] && !L->final[st]) return 0; /* x could end and go on */
    span++;
  }
  int32_t sh = 0;
  while ((1 << sh) < span) sh++;
  int64_t blocks = ((((int64_t)n + 1) << sh) + 0xffff) >> 16;
  if (L->next_virt + (blocks << 16) > TIDEI_LEX_VIRT_END || L->n_counts >= 0xffff) return 0;
  tidei_lex_count *cs = tidei_realloc(a->env, L->counts, (size_t)L->n_counts * sizeof *cs,
                                      ((size_t)L->n_counts + 1) * sizeof *cs);
  if (!cs) return -1;
  L->counts = cs;
  uint16_t *dir = tidei_realloc(a->env, L->dir, (size_t)L->n_dir * sizeof *dir,
                                ((size_t)L->n_dir + (size_t)blocks) * sizeof *dir);
  if (!dir) return -1;
  L->dir = dir;
  for (int64_t k = 0; k < blocks; k++) dir[L->n_dir++] = (uint16_t)L->n_counts;
  tidei_lex_count *c = &cs[L->n_counts++];
  c->base = L->next_virt, c->sh = sh, c->x_first = first;
  c->m = m, c->n = n, c->rule = q;
  memset(c->one, 0, sizeof c->one);
  for (int b = 0; b < 256; b++) {
    int32_t t = L->next[(size_t)first * 256 + b];
    if (t && L->accept[t]) c->one[b >> 6] |= 1ull << (b & 63);
  }
  L->next_virt += (int32_t)(blocks << 16);
  g->lex_start[q] = c->base;
  return 1;
}

/* The lexemes: regular rules referenced from reachable non-regular ones,
** and the root when it is regular. Built smallest first within a budget of
** NFA states for the whole grammar (compile time); a rule skipped for the
** budget or the limits stays an Earley rule and its regular children are
** tried in the next round. want[r]: 1 to try, 2 tried. */
static int make_lexemes(lexan *a) {
  tidei_grammar *g = a->g;
  tide_env *env = a->env;
  uint32_t nr = g->n_rules;
  uint8_t *want = a->depth; /* reused: depth is no longer needed */
  memset(want, 0, nr);
  if (a->cls[g->root] == R_REGULAR) want_rule(a, want, g->root, 0);
  for (uint32_t r = 0; r < nr; r++) {
    uint32_t cx, cm, cn;
    if (a->reach[r] && a->cls[r] != R_REGULAR) want_children(a, want, r, a->cls[r] == R_BIG);
    if (a->reach[r] && a->cls[r] == R_BIG && count_shape(a, r, &cx, &cm, &cn)) want[r] = 1;
  }
  uint64_t *order = NULL;
  size_t order_n = 0;
  int64_t budget = TIDEI_GRAMMAR_LEX_BUDGET;
  int st = TIDE_OK;
  for (;;) {
    uint32_t n = 0;
    for (uint32_t r = 0; r < nr; r++) n += want[r] == 1;
    if (!n) break;
    if (!g->lex_start && !lex_table_init(env, g)) {
      st = TIDE_ERR_NOMEM;
      break;
    }
    if (order) tidei_free(env, order, order_n * sizeof(uint64_t));
    order_n = n;
    if (!(order = tidei_alloc(env, order_n * sizeof(uint64_t)))) {
      st = TIDE_ERR_NOMEM;
      break;
    }
    n = 0;
    for (uint32_t r = 0; r < nr; r++)
      if (want[r] == 1) order[n++] = (uint64_t)a->est[r] << 32 | r, want[r] = 2;
    qsort(order, n, sizeof(uint64_t), cmp_u64);
    for (uint32_t k = 0; k < n; k++) {
      uint32_t r = (uint32_t)order[k];
      int res = 0;
      uint32_t cx, cm, cn;
      int counted = count_shape(a, r, &cx, &cm, &cn) &&
                    (a->cls[r] == R_BIG || a->est[r] > TIDEI_GRAMMAR_LEX_NFA);
      if (budget > 0 && !counted) {
        int32_t used = 0;
        res = lex_build(
            a, r, budget < TIDEI_GRAMMAR_LEX_NFA ? (int32_t)budget : TIDEI_GRAMMAR_LEX_NFA, &used);
        budget -= used;
        if (res < 0) {
          st = TIDE_ERR_NOMEM;
          break;
        }
        g->n_lexemes += (uint32_t)res;
      }
      if (!res && (res = count_build(a, r, &budget)) < 0) {
        st = TIDE_ERR_NOMEM;
        break;
      }
      g->n_lexemes += (uint32_t)res;
      if (!res) want_children(a, want, r, 1);
    }
    if (st) break;
  }
  if (order) tidei_free(env, order, order_n * sizeof(uint64_t));
  return st;
}

void tidei_grammar_lex_free(tide_env *env, tidei_grammar *g) {
  if (g->lex_start) tidei_free(env, g->lex_start, (size_t)g->n_rules * sizeof(int32_t));
  size_t n = (size_t)g->lex.cap;
  if (g->lex.next) {
    tidei_free(env, g->lex.next, n * 256 * sizeof(int32_t));
    tidei_free(env, g->lex.accept, n);
    tidei_free(env, g->lex.final, n);
    tidei_free(env, g->lex.rule, n * sizeof(uint32_t));
    tidei_free(env, g->lex.loops, n * 4 * sizeof(uint64_t));
  }
  if (g->lex.counts)
    tidei_free(env, g->lex.counts, (size_t)g->lex.n_counts * sizeof *g->lex.counts);
  if (g->lex.dir) tidei_free(env, g->lex.dir, (size_t)g->lex.n_dir * sizeof *g->lex.dir);
  g->lex_start = NULL;
  memset(&g->lex, 0, sizeof g->lex);
}

int tidei_grammar_lexemes(tide_env *env, tidei_grammar *g) {
  lexan a;
  memset(&a, 0, sizeof a);
  a.env = env;
  a.g = g;
  int st = TIDE_OK;
  if (!lexan_alloc(&a) || !term_ranges(&a) || (find_reachable(&a), !build_refs(&a)))
    st = TIDE_ERR_NOMEM;
  else {
    find_regular(&a);
    st = make_lexemes(&a);
  }
  lexan_free(&a);
  return st;
}
