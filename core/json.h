/*
** json.h -- a strict JSON (RFC 8259) reader into an arena tree, a compact
** canonical writer, and the JSON Schema converter's internal entry points.
** Layer: core (internal). json.c defines the reader and writer;
** json_schema.c defines tidei_json_schema_*; the specs use both.
*/
#ifndef TIDE_JSON_H
#define TIDE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "tidei.h"

#define TIDEI_JSON_MAX_DEPTH 256 /* nesting of [ ] and { } */
#define TIDEI_JSON_MAX_TEXT (256u << 20)

enum {
  TIDEI_JSON_NULL,
  TIDEI_JSON_FALSE,
  TIDEI_JSON_TRUE,
  TIDEI_JSON_NUMBER,
  TIDEI_JSON_STRING,
  TIDEI_JSON_ARRAY,
  TIDEI_JSON_OBJECT
};

typedef struct tidei_json tidei_json;
typedef struct tidei_json_member tidei_json_member;

/* One value. Strings are decoded UTF-8 (may hold NUL bytes; n bytes, with a
** NUL after them); numbers keep their source lexeme in s (n bytes). */
struct tidei_json {
  int type;
  uint32_t n; /* string/lexeme bytes, items, members */
  size_t off; /* byte offset in the source (0 if made) */
  union {
    const char *s;                    /* STRING, NUMBER */
    const tidei_json *items;          /* ARRAY (n) */
    const tidei_json_member *members; /* OBJECT (n), in source order */
  } u;
};

struct tidei_json_member {
  const char *key; /* decoded UTF-8, NUL after key_len bytes */
  uint32_t key_len;
  tidei_json value;
};

/* A parsed document: the tree and the arena that holds it (and anything
** made later with tidei_json_alloc). */
typedef struct tidei_json_doc tidei_json_doc;

/* Parses text (exactly one value, optional whitespace around). Errors:
** TIDE_ERR_FORMAT "json offset N: ..." for malformed text or nesting deeper
** than TIDEI_JSON_MAX_DEPTH; TIDE_ERR_NOMEM. Iterative: the C stack does not
** grow with the input. */
int tidei_json_parse(tide_env *env, const char *text, size_t len, tidei_json_doc **out);
void tidei_json_free(tidei_json_doc *doc);
const tidei_json *tidei_json_root(const tidei_json_doc *doc);
/* Zeroed arena memory living as long as doc; NULL on failure (message set). */
void *tidei_json_alloc(tidei_json_doc *doc, size_t n);

/* The member value of obj called key (NUL-terminated), or NULL. */
const tidei_json *tidei_json_get(const tidei_json *obj, const char *key);

/* A growable byte buffer on the env's allocator. Once a push fails, oom is
** set and later pushes do nothing. */
typedef struct {
  tide_env *env;
  char *p;
  size_t n, cap;
  int oom;
} tidei_sbuf;

void tidei_sbuf_put(tidei_sbuf *b, const char *s, size_t n);
void tidei_sbuf_puts(tidei_sbuf *b, const char *s);
void tidei_sbuf_printf(tidei_sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void tidei_sbuf_free(tidei_sbuf *b);

/* Appends v compactly: no whitespace, members in order, numbers as their
** lexemes, strings with only the escapes JSON requires (\" \\ \b \f \n \r
** \t, other controls as \u00xx), everything else raw UTF-8. Iterative. */
void tidei_json_write(tidei_sbuf *b, const tidei_json *v);
/* Appends a string's canonical serialization (quotes included). */
void tidei_json_write_string(tidei_sbuf *b, const char *s, size_t n);

/* Nonzero if a and b are the same JSON value (numbers compared by value
** when both are plain decimals, object members in any order). Recursive,
** bounded by the documents' depth. */
int tidei_json_equal(const tidei_json *a, const tidei_json *b);

/* ---------------------------------------------------------------- json_schema.c */

/* The GBNF text a schema compiles to (root rule "root"); *out is allocated
** on env (free with tidei_free(env, *out, *out_len + 1)). Errors as
** tide_json_schema_compile. */
int tidei_json_schema_gbnf(tide_env *env, const char *json, size_t len, char **out,
                           size_t *out_len);

#endif
