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

typedef struct tidei_grammar tidei_grammar;

/* Parses GBNF text (llama.cpp's dialect) and compiles it. root names the
** start rule (NULL: "root"). Errors: TIDE_ERR_FORMAT with "grammar line L,
** column C: ..." for syntax errors and undefined rules, "grammar has no rule
** 'root'"; TIDE_ERR_ARG for text or expansions beyond the limits above. */
int tidei_grammar_parse(tide_env *env, const char *src, size_t len,
                        const char *root, tidei_grammar **out);

/* Counts for specs and benchmarks. */
void tidei_grammar_stats(const tidei_grammar *g, int64_t *n_rules,
                         int64_t *n_syms, int64_t *n_terms);

/* Chart size of a state (sets, items) after the last push or commit. */
void tidei_grammar_state_stats(const void *state, int64_t *n_sets,
                               int64_t *n_items);

/* The engine: compiled = tidei_grammar *, destroy frees it. */
extern const tidei_engine tidei_grammar_engine;

#endif
