/*
** regex.h -- the regex engine's compiled form, shared by regex.c (which
** builds it) and constrain.c (whose mask walk reads the DFA directly instead
** of calling push/pop through the engine table).
** Layer: core (internal).
*/
#ifndef TIDE_REGEX_H
#define TIDE_REGEX_H

#include <stdint.h>

#include "constrain.h"

/* Limits of tide_regex_compile (each exceeded one is a clear error). */
#define TIDEI_RE_MAX_PATTERN 65536   /* bytes of pattern */
#define TIDEI_RE_MAX_DEPTH 250       /* nested groups (PCRE2's default too) */
#define TIDEI_RE_MAX_REPEAT 1000     /* m and n of {m,n} */
#define TIDEI_RE_MAX_NFA 400000      /* Thompson NFA states */
#define TIDEI_RE_MAX_DFA 10000       /* DFA states before minimisation */

/* A minimised DFA over bytes. State 0 is dead (every byte leads back to 0)
** and state 1 the start. Every live state can still reach an accepting one,
** so a byte is accepted exactly when next[] is nonzero. */
typedef struct {
  int32_t n_states;
  int32_t *next;      /* (n_states, 256) next state; 0 = byte rejected */
  uint8_t *accept;    /* (n_states) nonzero: the bytes so far are a match */
  uint8_t *final;     /* (n_states) accepting with no way to continue */
  uint64_t *loops;    /* (n_states, 4) bit b: byte b leads back to the state */
} tidei_dfa;

/* The matcher state of the regex engine: a stack of DFA states; ids[0] is the
** committed state and ids[n] the current one (undo = pop). cap = max_push. */
typedef struct {
  int32_t n, cap;
  int32_t ids[];      /* (cap + 1) */
} tidei_regex_state;

/* Thompson NFA over bytes (regex.c builds it, regex_dfa.c determinises it). */
enum {
  TIDEI_NFA_EPS,   /* epsilon to out and (if >= 0) out2 */
  TIDEI_NFA_RANGE, /* bytes lo..hi lead to out */
  TIDEI_NFA_MATCH,
  TIDEI_NFA_BOL,   /* anchors: checked, then turned into epsilons */
  TIDEI_NFA_EOL,
  TIDEI_NFA_FAIL   /* matches nothing (an empty class) */
};

typedef struct {
  uint8_t kind, lo, hi;
  int32_t out, out2;     /* -1: none (an unpatched exit has out == -1) */
  int32_t off;           /* pattern offset (anchors, for messages) */
} tidei_nstate;

/* regex_dfa.c: the minimised DFA of the NFA ns[0, n) from start. Errors:
** TIDE_ERR_UNSUPPORTED past TIDEI_RE_MAX_DFA states, TIDE_ERR_ARG when no
** string matches, TIDE_ERR_NOMEM, TIDE_ERR_CANCELLED. */
int tidei_regex_dfa(tide_env *env, const tidei_nstate *ns, int32_t n, int32_t start,
                    tidei_dfa **out);

extern const tidei_engine tidei_regex_engine;

/* Compiles a pattern to a DFA (the compiled object of tidei_regex_engine).
** Errors as tide_regex_compile. Free with tidei_regex_engine.destroy. */
int tidei_regex_build(tide_env *env, const char *pattern, size_t len,
                      tidei_dfa **out);

#endif
