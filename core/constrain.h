/*
** constrain.h -- the byte-level matcher interface behind every constraint.
** Layer: core (internal). constrain.c owns the vocabulary index, tide_matcher
** and the mask walk; regex.c and grammar.c (and json_schema.c, which compiles
** to a grammar) each provide one engine through tidei_engine.
**
** The contract an engine implements: a matcher state consumes bytes one at a
** time. push(b) either accepts the byte (the state moves forward and the step
** is recorded so it can be undone) or rejects it (nothing changes). pop(n)
** undoes the last n accepted pushes. commit() forgets the undo records, making
** the current state the new base. The mask walk pushes the bytes of a trie
** path, pops when it backs out, and never commits; advance pushes a token's
** bytes and commits (or pops them all if one is rejected).
**
** push/pop/commit/accepting allocate nothing and cannot fail other than by
** rejecting a byte: every limit (undo depth = the longest token, states,
** Earley items) is sized at compile or matcher-creation time; an engine that
** would exceed a limit rejects the byte.
*/
#ifndef TIDE_CONSTRAIN_H
#define TIDE_CONSTRAIN_H

#include <stdint.h>

#include "tidei.h"

typedef struct tidei_engine {
  const char *name; /* "regex", "grammar" */
  /* Bytes of one matcher state for this compiled constraint, given the
  ** longest byte sequence one advance may push (the longest token). */
  size_t (*state_size)(const void *compiled, int32_t max_push);
  /* Initialises a state at the start (nothing consumed). */
  void (*init)(const void *compiled, void *state, int32_t max_push);
  int (*push)(const void *compiled, void *state, uint8_t byte); /* 1 accepted, 0 rejected */
  void (*pop)(const void *compiled, void *state, int32_t n);
  void (*commit)(const void *compiled, void *state);
  /* Nonzero if the bytes consumed so far form a complete match. */
  int (*accepting)(const void *compiled, const void *state);
  /* Nonzero if no further byte can ever be accepted (complete and final):
  ** lets generation stop without sampling EOS. */
  int (*finished)(const void *compiled, const void *state);
  /* Copies a state (same compiled constraint); states are flat memory of
  ** state_size bytes unless the engine says otherwise here. */
  void (*copy)(const void *compiled, void *dst, const void *src, size_t size);
  void (*destroy)(tide_env *env, void *compiled);
} tidei_engine;

/* constrain.c: wraps an engine's compiled object as a tide_constraint (takes
** ownership; on failure destroys it). */
int tidei_constraint_new(tide_env *env, const tidei_engine *engine, void *compiled,
                         tide_constraint **out);

#endif
