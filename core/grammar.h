/*
** grammar.h -- GBNF grammars compiled to an Earley recognizer over bytes.
** Layer: core (internal). grammar.c defines these; json_schema.c compiles
** a schema to GBNF text and goes through tidei_grammar_parse; the specs
** drive tidei_grammar_engine directly on byte strings.
*/
#ifndef TIDE_GRAMMAR_H
#define TIDE_GRAMMAR_H

#include "constrain.h"

/* Limits of the compiler (a grammar beyond them fails to compile with a
** message naming the limit) and of one matcher state (a byte that would
** exceed them is rejected, see tidei_grammar_engine). */
#define TIDEI_GRAMMAR_MAX_SRC     (64u << 20) /* bytes of GBNF text */
#define TIDEI_GRAMMAR_MAX_RULES   (1u << 20)  /* incl. rules made for groups */
#define TIDEI_GRAMMAR_MAX_SYMS    (1u << 24)  /* symbols after expansion */
#define TIDEI_GRAMMAR_MAX_REPEAT  100000      /* m and n in x{m,n} */
#define TIDEI_GRAMMAR_MAX_DEPTH   200         /* nesting of ( ) */
#define TIDEI_GRAMMAR_SET_ITEMS   4096        /* Earley items in one set */
#define TIDEI_GRAMMAR_BASE_ITEMS  16384       /* items kept after a commit */
#define TIDEI_GRAMMAR_BASE_SETS   8192        /* sets kept after a commit */
#define TIDEI_GRAMMAR_PUSH_ITEMS  256         /* extra items per pushed byte */

/* ---------------------------------------------------------------- compiled form
** (grammar.c builds and runs it; grammar_lex.c adds the lexemes) */

/* A symbol: kind in the top two bits, value below. */
enum { TIDEI_SYM_TERM = 0, TIDEI_SYM_NT = 1, TIDEI_SYM_END = 2, TIDEI_SYM_EXIT = 3 };
#define TIDEI_SYM(kind, v) (((uint32_t)(kind) << 30) | (uint32_t)(v))
#define TIDEI_SYM_KIND(s) ((s) >> 30)
#define TIDEI_SYM_VAL(s) ((s) & 0x3fffffffu)

/* Limits of the lexer layer (a regular rule past them stays an Earley rule). */
#define TIDEI_GRAMMAR_LEX_NFA    4000    /* NFA states of one lexeme */
#define TIDEI_GRAMMAR_LEX_DEPTH  48      /* rules nested inside one lexeme */
#define TIDEI_GRAMMAR_LEX_STATES 32768   /* DFA states of all lexemes together */
#define TIDEI_GRAMMAR_LEX_BUDGET 20000   /* NFA states of all lexemes (compile time) */

/* The lexemes: every DFA state of every lexeme, numbered globally. State 0
** is dead; each lexeme's states are contiguous, its start first. A byte is
** accepted exactly when next[] is nonzero (every live state can still
** reach an accepting one). */
/* A counted lexeme: rule Q ::= x{m,n} (one flat alternative, x a regular
** rule whose DFA is prefix-free: every accepting state is final), run as
** x's DFA plus a count of the x's done. Its states are virtual ids
** base + (k << sh) + j (k = 0..n x's done; j = 0 between two x's, else
** x's state x_first + j - 1), stepped by tidei_lex_step: no table of
** n copies of x. Each lexeme's ids start on a 2^16 boundary, and dir maps
** every 2^16 block of ids to its lexeme (a lookup without search). */
typedef struct {
  int32_t base, sh;       /* ids base .. base + ((n + 1) << sh) - 1 */
  int32_t x_first;        /* x's DFA: states x_first .. (its start first) */
  uint32_t m, n, rule;    /* bounds; the rule Q */
  uint64_t one[4];        /* bytes that are a whole x by themselves */
} tidei_lex_count;

/* Virtual ids lie in [TIDEI_LEX_VIRT, TIDEI_LEX_VIRT_END): above every table
** state, and below bit 30 so that item and completion keys never meet. */
#define TIDEI_LEX_VIRT 0x20000000
#define TIDEI_LEX_VIRT_END 0x3fff0000

typedef struct {
  int32_t n_states, cap; /* states in use, allocated */
  int32_t *next;       /* (n_states, 256) */
  uint8_t *accept;     /* (n_states) the lexeme may end here */
  uint8_t *final;      /* (n_states) accepting with no way to continue */
  uint32_t *rule;      /* (n_states) the lexeme (rule) a state belongs to */
  uint64_t *loops;     /* (n_states, 4) bit b: byte b leads back to the state */
  tidei_lex_count *counts; /* (n_counts) counted lexemes */
  uint16_t *dir;       /* (n_dir) counted lexeme of each 2^16 block of virtual ids */
  int32_t n_counts, n_dir, next_virt;
} tidei_lex;

/* The counted lexeme holding virtual state s (s >= TIDEI_LEX_VIRT), its
** count k and DFA part j (see above). */
static inline const tidei_lex_count *tidei_lex_counted(const tidei_lex *L, int32_t s,
                                                       uint32_t *k, int32_t *j) {
  const tidei_lex_count *c = &L->counts[L->dir[(s - TIDEI_LEX_VIRT) >> 16]];
  int32_t off = s - c->base;
  *k = (uint32_t)(off >> c->sh);
  *j = off & ((1 << c->sh) - 1);
  return c;
}

static inline int32_t tidei_lex_cstep(const tidei_lex *L, int32_t s, uint8_t b) {
  uint32_t k;
  int32_t j;
  const tidei_lex_count *c = tidei_lex_counted(L, s, &k, &j);
  if (!j && k == c->n) return 0;
  int32_t t = L->next[(size_t)(j ? c->x_first + j - 1 : c->x_first) * 256 + b];
  if (!t) return 0;
  if (L->accept[t]) return c->base + (int32_t)((k + 1) << c->sh); /* one more x done */
  return c->base + (int32_t)(k << c->sh) + (t - c->x_first + 1);
}

/* Any lexeme state (table or counted): step by byte b (0: dead), may end,
** cannot go on, its rule, and the bytes that lead back to it. */
static inline int32_t tidei_lex_step(const tidei_lex *L, int32_t s, uint8_t b) {
  return s < TIDEI_LEX_VIRT ? L->next[(size_t)s * 256 + b] : tidei_lex_cstep(L, s, b);
}
static inline int tidei_lex_accept(const tidei_lex *L, int32_t s) {
  uint32_t k;
  int32_t j;
  if (s < TIDEI_LEX_VIRT) return L->accept[s];
  const tidei_lex_count *c = tidei_lex_counted(L, s, &k, &j);
  return !j && k >= c->m;
}
static inline int tidei_lex_final(const tidei_lex *L, int32_t s) {
  uint32_t k;
  int32_t j;
  if (s < TIDEI_LEX_VIRT) return L->final[s];
  const tidei_lex_count *c = tidei_lex_counted(L, s, &k, &j);
  return !j && k == c->n;
}
static inline uint32_t tidei_lex_rule(const tidei_lex *L, int32_t s) {
  uint32_t k;
  int32_t j;
  return s < TIDEI_LEX_VIRT ? L->rule[s] : tidei_lex_counted(L, s, &k, &j)->rule;
}
/* NULL when no byte leads back (a counted state between two x's) */
static inline const uint64_t *tidei_lex_loops(const tidei_lex *L, int32_t s) {
  uint32_t k;
  int32_t j;
  if (s < TIDEI_LEX_VIRT) return L->loops + (size_t)s * 4;
  const tidei_lex_count *c = tidei_lex_counted(L, s, &k, &j);
  return j ? L->loops + (size_t)(c->x_first + j - 1) * 4 : NULL;
}

typedef struct tidei_grammar {
  uint32_t n_rules, n_syms, n_alts, n_terms, root;
  uint32_t *syms;         /* (n_syms) alternatives laid end to end */
  uint32_t *lhs;          /* (n_syms) the rule each position belongs to */
  uint32_t *alt_off;      /* (n_rules+1) rule r's alternatives: alts[alt_off[r]..] */
  uint32_t *alts;         /* (n_alts) start position of each alternative */
  uint8_t *nullable;      /* (n_rules) */
  uint32_t (*terms)[8];   /* (n_terms) 256-bit byte sets */
  size_t bytes;           /* of this block */
  /* lexer layer (grammar_lex.c): lex_start[r] is the start state of rule
  ** r's DFA when r is a lexeme, else 0; NULL when there are none */
  int32_t *lex_start;     /* (n_rules) */
  uint32_t n_lexemes;
  tidei_lex lex;
} tidei_grammar;

/* grammar_lex.c: finds the regular rules reachable from the root (no
** recursion but a rule's direct left or right recursion, as x* and x+
** make), and compiles each one referenced from a non-regular rule (or the
** root itself) to a minimised DFA. A rule whose automaton would pass the
** limits above stays an Earley rule. Errors: TIDE_ERR_NOMEM only. */
int tidei_grammar_lexemes(tide_env *env, tidei_grammar *g);
void tidei_grammar_lex_free(tide_env *env, tidei_grammar *g);

/* For the mask walk: the DFA state d of the lexeme item that alone decides
** the next bytes of the top Earley set, or 0 (no such item, or the chart
** has no room for more sets of one item each). Two cases:
**  - the item is the only one in the set that can scan; *has_follow = 0;
**  - the set's kernel (what the last byte scanned) is that one item and d
**    accepts: the other scanners are what completing the lexeme adds, and
**    follow gets the bytes they accept (*has_follow = 1). A byte outside
**    follow leads to {the item stepped by the DFA} plus, if that state
**    accepts again, the same completions: the walk steps the DFA alone
**    until a byte in follow or a state that accepts without follow.
** Allocates nothing. */
int32_t tidei_grammar_lex_state(const tidei_grammar *g, const void *state, int32_t more,
                                uint64_t follow[4], int *has_follow);

/* Parses GBNF text (llama.cpp's dialect) and compiles it. root names the
** start rule (NULL: "root"). Errors: TIDE_ERR_FORMAT with "grammar line L,
** column C: ..." for syntax errors and undefined rules, "grammar has no rule
** 'root'"; TIDE_ERR_ARG for text or expansions beyond the limits above. */
int tidei_grammar_parse(tide_env *env, const char *src, size_t len,
                        const char *root, tidei_grammar **out);

/* Nonzero if the root derives some string of terminals, counting a
** terminal with an empty byte set as one (so only rules defined through
** themselves alone, like r ::= r, are unproductive). Allocates nothing;
** uses g's nullable bytes as scratch (so not while g is shared). */
int tidei_grammar_productive(tidei_grammar *g);

/* Counts for specs and benchmarks. */
void tidei_grammar_stats(const tidei_grammar *g, int64_t *n_rules,
                         int64_t *n_syms, int64_t *n_terms);

/* Chart size of a state (sets, items) after the last push or commit. */
void tidei_grammar_state_stats(const void *state, int64_t *n_sets,
                               int64_t *n_items);

/* The engine: compiled = tidei_grammar *, destroy frees it. */
extern const tidei_engine tidei_grammar_engine;

#endif
