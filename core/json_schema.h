/*
** json_schema.h -- the JSON Schema converter's private header: the
** converter state and the types and functions its four files share.
** Layer: core (internal; json_schema*.c only). Prefixes name the file:
** tidei_js_ json_schema.c, tidei_jsnum_ json_schema_num.c, tidei_jsre_
** json_schema_re.c, tidei_jsmerge_ json_schema_merge.c.
*/
#ifndef TIDE_JSON_SCHEMA_H
#define TIDE_JSON_SCHEMA_H

#include <stdarg.h>
#include <stdint.h>

#include "json.h"

#define MAX_NEST 400     /* nested subschemas being compiled */
#define MAX_FLATTEN 32   /* $ref/allOf resolutions inside one flatten */
#define MAX_WORK 2000000 /* merges + rules: a budget against blow-up */
#define MAX_DIGITS 60    /* digits of a numeric bound */
#define MAX_UNSUP 12     /* keywords listed in the message */
#define INF UINT64_MAX

/* type bits; "number" is INT|FRAC */
enum {
  T_NULL = 1,
  T_BOOL = 2,
  T_OBJ = 4,
  T_ARR = 8,
  T_STR = 16,
  T_INT = 32,
  T_FRAC = 64,
  T_ALL = 127
};

/* keyword kinds (tidei_jsmerge_keyword) */
enum { K_ANNOT = 0, K_DONE, K_UNSUP };

typedef struct {
  const tidei_json *node;
  uint32_t rule;
  char *path;
  size_t path_len;
} refent;

typedef struct {
  tide_env *env;
  tidei_json_doc *doc;
  const tidei_json *root;
  tidei_sbuf out;   /* rules */
  tidei_sbuf unsup; /* "kw at /path, ..." */
  int n_unsup;
  int status; /* first hard error */
  uint32_t n_rules;
  refent *refs; /* $ref targets (and the root): rule per node */
  uint32_t n_refs, cap_refs, next_work;
  tidei_sbuf path; /* JSON pointer of the subschema being compiled */
  int depth, flatten_depth;
  int64_t work;
} conv;

/* An exact decimal: sign, integer digits (no leading zeros, "" for 0) and
** fraction digits (no trailing zeros). */
typedef struct dec_ {
  int neg;
  int ni, nf;
  char ip[MAX_DIGITS + 1], fp[MAX_DIGITS + 1];
} dec;

#define CPSET_CAP 600
typedef struct {
  int n;
  uint32_t r[CPSET_CAP][2];
} cpset;

typedef struct {
  tidei_json_member *m;
  uint32_t n, cap;
} mlist;

/* json helpers */

static inline const tidei_json *get(const tidei_json *s, const char *k) {
  return tidei_json_get(s, k);
}

static inline int is_true(const tidei_json *v) { return v && v->type == TIDEI_JSON_TRUE; }
static inline int is_false(const tidei_json *v) { return v && v->type == TIDEI_JSON_FALSE; }

static const tidei_json TRUE_NODE = {TIDEI_JSON_TRUE, 0, 0, {NULL}};
static const tidei_json FALSE_NODE = {TIDEI_JSON_FALSE, 0, 0, {NULL}};

/* ---------------------------------------------------------------- json_schema.c */

/* The first hard error (later ones are dropped); message "json schema: ...". */
void tidei_js_fail(conv *c, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* GBNF text: s as a quoted literal; lits for a C string. */
void tidei_js_lit(tidei_sbuf *e, const char *s, size_t n);
void tidei_js_lits(tidei_sbuf *e, const char *s);
/* item{min,max} (max INF: unbounded), any size (nested above 1000). */
void tidei_js_rep(tidei_sbuf *e, const char *item, uint64_t min, uint64_t max);
/* A scratch buffer on c's env; done frees it, recording OOM on c. */
void tidei_js_sb_init(conv *c, tidei_sbuf *b);
void tidei_js_sb_done(conv *c, tidei_sbuf *b);
/* Nonzero once an error (OOM included) is recorded on c. */
int tidei_js_oom(conv *c);
/* Records an unsupported keyword at the current path (once per path). */
void tidei_js_unsup(conv *c, const char *what);
/* Counts n steps against MAX_WORK; 0 (error set) past it. */
int tidei_js_spend(conv *c, int64_t n);
/* A JSON value's canonical text as a GBNF literal. */
void tidei_js_lit_value(conv *c, tidei_sbuf *e, const tidei_json *v);
/* Member k of object obj, or NULL. */
const tidei_json_member *tidei_js_find_member(const tidei_json *obj, const char *k, uint32_t kl);
/* The lower (upper = 0) or upper bound of s into d, *strict when
** exclusive: 1 found, 0 none, -1 error (set on c). */
int tidei_js_get_bound(conv *c, const tidei_json *s, int upper, dec *d, int *strict);
/* Nonzero if k is listed in the "required" array req. */
int tidei_js_in_required(const tidei_json *req, const char *k, uint32_t kl);

/* ---------------------------------------------------------------- json_schema_num.c */

/* A non-negative integer keyword (minItems, ...); 0 if it is not one. */
int tidei_jsnum_get_count(const tidei_json *v, uint64_t *out);
/* Exact decimals: parse a JSON number (0: too many digits), compare,
** round to an integer bound (strict: exclusive). */
int tidei_jsnum_dec_parse(const char *s, size_t n, dec *d);
int tidei_jsnum_dec_cmp(const dec *a, const dec *b);
int tidei_jsnum_dec_ceil(dec *x, int strict);
int tidei_jsnum_dec_floor(dec *x, int strict);
/* GBNF for the integers in [lo, hi] (NULL: unbounded). */
void tidei_jsnum_int_range(tidei_sbuf *e, const dec *lo, const dec *hi);
/* GBNF for the numbers between lo and hi (lx/hx: exclusive), no exponent. */
void tidei_jsnum_num_range(tidei_sbuf *e, const dec *lo, int lx, const dec *hi, int hx);

/* ---------------------------------------------------------------- json_schema_re.c */

/* Code point sets: a GBNF class for s; add a range; complement. */
void tidei_jsre_emit_cpset(tidei_sbuf *e, const cpset *s);
/* The code point at s[*i] (advancing *i). */
uint32_t tidei_jsre_utf8_next(const unsigned char *s, size_t n, size_t *i);
void tidei_jsre_cps_complement(cpset *s);
/* GBNF for the strings matching the schema pattern pat (search
** semantics) with their length range in code points; 0 if unsupported. */
int tidei_jsre_pattern_expr(conv *c, const tidei_json *pat, tidei_sbuf *e, uint64_t *mn,
                            uint64_t *mx);
int tidei_jsre_cps_add(cpset *s, uint32_t lo, uint32_t hi);
/* JSON's canonical escape of cp, or NULL when it is written raw. */
const char *tidei_jsre_canon_escape(uint32_t cp, char buf[8]);
int tidei_jsre_hexval(int c);

/* ---------------------------------------------------------------- json_schema_merge.c */

/* s with $ref and allOf merged in (a synthetic object when needed). */
const tidei_json *tidei_jsmerge_flatten(conv *c, const tidei_json *s);
/* Reports the keywords of s that types cannot honour. */
void tidei_jsmerge_scan_unsupported(conv *c, const tidei_json *s, int types);
/* GBNF for the enum/const values of s valid under its other keywords. */
void tidei_jsmerge_enum_expr(conv *c, const tidei_json *s, int types, tidei_sbuf *e);
/* The target of a $ref within the document, or NULL (error set). */
const tidei_json *tidei_jsmerge_resolve(conv *c, const tidei_json *ref);
/* T_* bits of a "type" keyword. */
int tidei_jsmerge_type_mask(const tidei_json *t);
/* The schema requiring both a and b (allOf of two). */
const tidei_json *tidei_jsmerge_merge(conv *c, const tidei_json *a, const tidei_json *b);
/* Building synthetic objects: set a member, finish into the arena. */
void tidei_jsmerge_ml_set(conv *c, mlist *l, const char *key, const tidei_json *v);
/* An object or a boolean. */
int tidei_jsmerge_is_schema(const tidei_json *v);
/* Nonzero when no instance can satisfy both x and y (oneOf as anyOf). */
int tidei_jsmerge_disjoint(conv *c, const tidei_json *x, const tidei_json *y);
/* K_* kind of keyword k and the types it applies to. */
int tidei_jsmerge_keyword(const char *k, int *types);
/* Nonzero if s has any keyword that constrains. */
int tidei_jsmerge_constrains(const tidei_json *s);
const tidei_json *tidei_jsmerge_ml_finish(conv *c, mlist *l);

#endif
