/*
** json_schema.c -- JSON Schema compiled to a GBNF grammar, then to a
** constraint through the grammar compiler.
** Layer: core.
**
** The grammar accepts compact serializations (no insignificant whitespace)
** of instances valid under the schema, and nothing else: every keyword is
** either honoured exactly, ignored because it does not constrain (title,
** description, ...), or reported -- compilation then fails with
** TIDE_ERR_UNSUPPORTED and a message listing each such keyword with its JSON
** pointer. Where exactness would need an intersection a context-free grammar
** cannot express, the grammar is narrower than the schema (never wider):
** object properties come in schema order, strings that a pattern, enum,
** const, format or property name pins down must use JSON's canonical
** escapes, number ranges admit no exponent. docs/json-schema.md lists the
** rules.
**
** Structure. The schema is read with json.c. Each subschema becomes one
** GBNF expression; $ref targets become rules compiled once from a worklist
** (so recursive schemas make recursive grammars). allOf and $ref with
** siblings are flattened by merging keyword sets into synthetic schema
** objects; anyOf/oneOf with siblings distribute the siblings over the
** branches. C recursion follows the schema's nesting, which the reader caps
** at TIDEI_JSON_MAX_DEPTH (and the converter at MAX_NEST).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
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

static void fail(conv *c, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void fail(conv *c, int status, const char *fmt, ...) {
  if (c->status) return;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->status = tidei_error(c->env, status, "json schema: %s", msg);
}

static int oom(conv *c) {
  if (!c->status && (c->out.oom || c->unsup.oom || c->path.oom))
    c->status = tidei_error(c->env, TIDE_ERR_NOMEM, "json schema: out of memory");
  return c->status != 0;
}

/* Records an unsupported keyword at the current path (once per path). */
static void unsup(conv *c, const char *what) {
  char item[300];
  snprintf(item, sizeof item, "%s at %s", what, c->path.n ? c->path.p : "/");
  if (c->unsup.n && strstr(c->unsup.p, item)) {
    /* the exact item may be a prefix of a longer one; check separators */
    const char *p = c->unsup.p;
    size_t il = strlen(item);
    while ((p = strstr(p, item)) != NULL) {
      if ((p == c->unsup.p || p[-1] == ' ') && (p[il] == ',' || p[il] == 0)) return;
      p++;
    }
  }
  c->n_unsup++;
  if (c->n_unsup > MAX_UNSUP) return;
  if (c->unsup.n) tidei_sbuf_puts(&c->unsup, ", ");
  tidei_sbuf_puts(&c->unsup, item);
}

static int spend(conv *c, int64_t n) {
  c->work += n;
  if (c->work > MAX_WORK && !c->status)
    fail(c, TIDE_ERR_ARG, "schema too large: expansion budget (%d steps) exceeded", MAX_WORK);
  return c->status == 0;
}

/* Path segments: push returns the old length for pop. */
static size_t path_push(conv *c, const char *seg, size_t n) {
  size_t old = c->path.n;
  tidei_sbuf_put(&c->path, "/", 1);
  for (size_t i = 0; i < n; i++) {
    if (seg[i] == '~')
      tidei_sbuf_puts(&c->path, "~0");
    else if (seg[i] == '/')
      tidei_sbuf_puts(&c->path, "~1");
    else
      tidei_sbuf_put(&c->path, seg + i, 1);
  }
  return old;
}

static size_t path_pushi(conv *c, uint32_t i) {
  char b[16];
  int k = snprintf(b, sizeof b, "%u", i);
  return path_push(c, b, (size_t)k);
}

static void path_pop(conv *c, size_t old) {
  c->path.n = old;
  if (c->path.p) c->path.p[old] = 0;
}

/* ---------------------------------------------------------------- json helpers */

static const tidei_json *get(const tidei_json *s, const char *k) { return tidei_json_get(s, k); }

static int is_true(const tidei_json *v) { return v && v->type == TIDEI_JSON_TRUE; }
static int is_false(const tidei_json *v) { return v && v->type == TIDEI_JSON_FALSE; }

static const tidei_json TRUE_NODE = {TIDEI_JSON_TRUE, 0, 0, {NULL}};
static const tidei_json FALSE_NODE = {TIDEI_JSON_FALSE, 0, 0, {NULL}};

/* ---------------------------------------------------------------- decimals */

/* An exact decimal: sign, integer digits (no leading zeros, "" for 0) and
** fraction digits (no trailing zeros). */
typedef struct dec_ {
  int neg;
  int ni, nf;
  char ip[MAX_DIGITS + 1], fp[MAX_DIGITS + 1];
} dec;

/* Parses a JSON number lexeme; 0 when it has too many digits. */
static int dec_parse(const char *s, size_t n, dec *d) {
  memset(d, 0, sizeof *d);
  char digits[2 * MAX_DIGITS + 2];
  int nd = 0, point = -1;
  size_t i = 0;
  if (i < n && s[i] == '-') {
    d->neg = 1;
    i++;
  }
  for (; i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'); i++) {
    if (s[i] == '.') {
      point = nd;
      continue;
    }
    if (nd == 0 && s[i] == '0' && point < 0) continue; /* leading zeros */
    if (nd >= 2 * MAX_DIGITS) return 0;
    digits[nd++] = s[i];
  }
  if (point < 0) point = nd;
  long e = 0;
  if (i < n) {
    i++;
    int eneg = s[i] == '-';
    if (s[i] == '-' || s[i] == '+') i++;
    for (; i < n; i++) {
      e = e * 10 + (s[i] - '0');
      if (e > 1000) return 0;
    }
    if (eneg) e = -e;
  }
  long p = point + e; /* digits[0..p) integer part */
  for (long k = 0; k < p; k++) {
    char ch = k < nd ? digits[k] : '0';
    if (d->ni == 0 && ch == '0') continue;
    if (d->ni >= MAX_DIGITS) return 0;
    d->ip[d->ni++] = ch;
  }
  for (long k = p < 0 ? p : (p > nd ? nd : p); k < nd; k++) {
    char ch = k < 0 ? '0' : digits[k];
    if (d->nf >= MAX_DIGITS) return 0;
    d->fp[d->nf++] = ch;
  }
  while (d->nf && d->fp[d->nf - 1] == '0') d->nf--;
  if (!d->ni && !d->nf) d->neg = 0;
  return 1;
}

/* A non-negative integer keyword value (5, 5.0, 5e0); saturates at 2^62.
** 0 if v is not one. */
static int get_count(const tidei_json *v, uint64_t *out) {
  dec d;
  if (!v || v->type != TIDEI_JSON_NUMBER) return 0;
  if (!dec_parse(v->u.s, v->n, &d)) {
    if (v->n && v->u.s[0] != '-') {
      *out = (uint64_t)1 << 62;
      return 1;
    } /* huge */
    return 0;
  }
  if (d.neg || d.nf) return 0;
  if (d.ni > 18) {
    *out = (uint64_t)1 << 62;
    return 1;
  }
  uint64_t x = 0;
  for (int i = 0; i < d.ni; i++) x = x * 10 + (uint64_t)(d.ip[i] - '0');
  *out = x;
  return 1;
}

/* Compares magnitudes. */
static int mag_cmp(const dec *a, const dec *b) {
  if (a->ni != b->ni) return a->ni < b->ni ? -1 : 1;
  int k = memcmp(a->ip, b->ip, (size_t)a->ni);
  if (k) return k < 0 ? -1 : 1;
  int n = a->nf > b->nf ? a->nf : b->nf;
  for (int i = 0; i < n; i++) {
    char x = i < a->nf ? a->fp[i] : '0', y = i < b->nf ? b->fp[i] : '0';
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

static int dec_cmp(const dec *a, const dec *b) {
  if (a->neg != b->neg) return a->neg ? -1 : 1;
  int m = mag_cmp(a, b);
  return a->neg ? -m : m;
}

/* Magnitude +1 / -1 on the integer part (fraction dropped by callers). */
static int ip_inc(dec *d) {
  int i = d->ni - 1;
  while (i >= 0 && d->ip[i] == '9') d->ip[i--] = '0';
  if (i >= 0) {
    d->ip[i]++;
    return 1;
  }
  if (d->ni >= MAX_DIGITS) return 0;
  memmove(d->ip + 1, d->ip, (size_t)d->ni);
  d->ip[0] = '1';
  d->ni++;
  return 1;
}

static void ip_dec(dec *d) { /* requires ip > 0 */
  int i = d->ni - 1;
  while (i >= 0 && d->ip[i] == '0') d->ip[i--] = '9';
  d->ip[i]--;
  if (d->ip[0] == '0') {
    memmove(d->ip, d->ip + 1, (size_t)d->ni - 1);
    d->ni--;
  }
}

/* Smallest integer >= x (or > x when strict); 0 on overflow. */
static int dec_ceil(dec *x, int strict) {
  int integral = x->nf == 0;
  x->nf = 0;
  if (!x->neg) {
    if (!integral || strict) return ip_inc(x);
    return 1;
  }
  /* negative: ceil(-3.5) = -3, ceil(-3) = -3, > -3 is -2 */
  if (integral && strict) {
    ip_dec(x);
    if (!x->ni) x->neg = 0;
    return 1;
  }
  if (!integral) {
    if (!x->ni) x->neg = 0;
    return 1;
  }
  return 1;
}

/* Largest integer <= x (or < x when strict). */
static int dec_floor(dec *x, int strict) {
  x->neg = !x->neg;
  int ok = dec_ceil(x, strict);
  x->neg = (x->ni || x->nf) ? !x->neg : 0;
  return ok;
}

/* ---------------------------------------------------------------- gbnf text */

static void lit(tidei_sbuf *e, const char *s, size_t n) {
  tidei_sbuf_put(e, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"')
      tidei_sbuf_puts(e, "\\\"");
    else if (ch == '\\')
      tidei_sbuf_puts(e, "\\\\");
    else if (ch < 0x20 || ch == 0x7f)
      tidei_sbuf_printf(e, "\\x%02x", ch);
    else
      tidei_sbuf_put(e, s + i, 1);
  }
  tidei_sbuf_put(e, "\"", 1);
}

static void lits(tidei_sbuf *e, const char *s) { lit(e, s, strlen(s)); }

/* A JSON value's canonical text as a GBNF literal. */
static void lit_value(conv *c, tidei_sbuf *e, const tidei_json *v) {
  tidei_sbuf t = {c->env, NULL, 0, 0, 0};
  tidei_json_write(&t, v);
  if (t.oom)
    c->out.oom = 1;
  else
    lit(e, t.p, t.n);
  tidei_sbuf_free(&t);
}

static uint32_t rule_new(conv *c) {
  spend(c, 1);
  return c->n_rules++;
}

static void rule_def(conv *c, uint32_t id, const tidei_sbuf *body) {
  tidei_sbuf_printf(&c->out, "r%u ::= ", id);
  tidei_sbuf_put(&c->out, body->p ? body->p : "\"\"", body->p ? body->n : 2);
  tidei_sbuf_put(&c->out, "\n", 1);
}

/* Appends "rN" for a new rule defined as body. */
static void rule_ref_body(conv *c, tidei_sbuf *e, const tidei_sbuf *body) {
  uint32_t id = rule_new(c);
  rule_def(c, id, body);
  tidei_sbuf_printf(e, "r%u", id);
}

static void sb_init(conv *c, tidei_sbuf *b) {
  memset(b, 0, sizeof *b);
  b->env = c->env;
}
static void sb_done(conv *c, tidei_sbuf *b) {
  if (b->oom) c->out.oom = 1;
  tidei_sbuf_free(b);
}

/* Exact repetition item{n} for any n (nested thousands above 1000). */
static void rep_exact(tidei_sbuf *e, const char *item, uint64_t n) {
  if (n == 0) {
    tidei_sbuf_puts(e, "\"\"");
    return;
  }
  if (n == 1) {
    tidei_sbuf_printf(e, "(%s)", item);
    return;
  }
  if (n <= 1000) {
    tidei_sbuf_printf(e, "(%s){%llu}", item, (unsigned long long)n);
    return;
  }
  tidei_sbuf big = {e->env, NULL, 0, 0, 0};
  tidei_sbuf_printf(&big, "(%s){1000}", item);
  if (big.oom) {
    e->oom = 1;
    tidei_sbuf_free(&big);
    return;
  }
  rep_exact(e, big.p, n / 1000);
  tidei_sbuf_put(e, " ", 1);
  rep_exact(e, item, n % 1000);
  tidei_sbuf_free(&big);
}

/* item{0,n} for any n. */
static void rep_upto(tidei_sbuf *e, const char *item, uint64_t n) {
  if (n == 0) {
    tidei_sbuf_puts(e, "\"\"");
    return;
  }
  if (n <= 1000) {
    tidei_sbuf_printf(e, "(%s){0,%llu}", item, (unsigned long long)n);
    return;
  }
  uint64_t q = n / 1000, r = n % 1000;
  tidei_sbuf big = {e->env, NULL, 0, 0, 0};
  tidei_sbuf_printf(&big, "(%s){1000}", item);
  if (big.oom) {
    e->oom = 1;
    tidei_sbuf_free(&big);
    return;
  }
  tidei_sbuf_puts(e, "((");
  rep_upto(e, big.p, q - 1);
  tidei_sbuf_printf(e, " (%s){0,999}) | (", item);
  rep_exact(e, big.p, q);
  tidei_sbuf_put(e, " ", 1);
  rep_upto(e, item, r);
  tidei_sbuf_puts(e, "))");
  tidei_sbuf_free(&big);
}

/* item{min,max} (max INF: unbounded). */
static void rep(tidei_sbuf *e, const char *item, uint64_t min, uint64_t max) {
  tidei_sbuf_put(e, "(", 1);
  rep_exact(e, item, min);
  tidei_sbuf_put(e, " ", 1);
  if (max == INF)
    tidei_sbuf_printf(e, "(%s)*", item);
  else
    rep_upto(e, item, max - min);
  tidei_sbuf_put(e, ")", 1);
}

/* ---------------------------------------------------------------- code point sets */

#define CPSET_CAP 600
typedef struct {
  int n;
  uint32_t r[CPSET_CAP][2];
} cpset;

static int cps_add(cpset *s, uint32_t lo, uint32_t hi) {
  if (s->n >= CPSET_CAP) return 0;
  s->r[s->n][0] = lo;
  s->r[s->n][1] = hi;
  s->n++;
  return 1;
}

static int cmp_r(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void cps_norm(cpset *s) {
  if (s->n > 1) qsort(s->r, (size_t)s->n, sizeof s->r[0], cmp_r);
  int k = 0;
  for (int i = 0; i < s->n; i++) {
    if (k && s->r[i][0] <= s->r[k - 1][1] + 1) {
      if (s->r[i][1] > s->r[k - 1][1]) s->r[k - 1][1] = s->r[i][1];
    } else {
      s->r[k][0] = s->r[i][0];
      s->r[k][1] = s->r[i][1];
      k++;
    }
  }
  s->n = k;
}

static void cps_complement(cpset *s) {
  cps_norm(s);
  cpset t;
  t.n = 0;
  uint32_t next = 0;
  for (int i = 0; i < s->n; i++) {
    if (s->r[i][0] > next) cps_add(&t, next, s->r[i][0] - 1);
    next = s->r[i][1] + 1;
  }
  if (next <= 0x10ffff) cps_add(&t, next, 0x10ffff);
  *s = t;
}

static int cps_has(const cpset *s, uint32_t cp) {
  for (int i = 0; i < s->n; i++)
    if (cp >= s->r[i][0] && cp <= s->r[i][1]) return 1;
  return 0;
}

static void cp_esc(tidei_sbuf *e, uint32_t cp) {
  if ((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
    tidei_sbuf_printf(e, "%c", (char)cp);
  else if (cp < 0x10000)
    tidei_sbuf_printf(e, "\\u%04X", cp);
  else
    tidei_sbuf_printf(e, "\\U%08X", cp);
}

/* The canonical JSON escape of a code point that needs one, or NULL. */
static const char *canon_escape(uint32_t cp, char buf[8]) {
  switch (cp) {
  case '"':
    return "\\\"";
  case '\\':
    return "\\\\";
  case '\b':
    return "\\b";
  case '\f':
    return "\\f";
  case '\n':
    return "\\n";
  case '\r':
    return "\\r";
  case '\t':
    return "\\t";
  default:
    if (cp >= 0x20) return NULL;
    snprintf(buf, 8, "\\u%04x", cp);
    return buf;
  }
}

/* An expression matching the canonical encoding (inside a JSON string) of
** one code point of s; s is normalized. */
static void emit_cpset(tidei_sbuf *e, const cpset *s) {
  int parts = 0, n_special = 0;
  tidei_sbuf_put(e, "(", 1);
  /* raw part: s minus controls, '"' and '\' */
  cpset raw;
  raw.n = 0;
  for (int i = 0; i < s->n; i++) {
    uint32_t lo = s->r[i][0], hi = s->r[i][1];
    if (lo < 0x20) lo = 0x20;
    if (lo > hi) continue;
    if (lo <= 0x22 && hi >= 0x22) {
      if (lo < 0x22) cps_add(&raw, lo, 0x21);
      lo = 0x23;
    }
    if (lo <= 0x5c && hi >= 0x5c) {
      if (lo < 0x5c) cps_add(&raw, lo, 0x5b);
      lo = 0x5d;
    }
    if (lo <= hi) cps_add(&raw, lo, hi);
  }
  if (raw.n) {
    tidei_sbuf_put(e, "[", 1);
    for (int i = 0; i < raw.n; i++) {
      cp_esc(e, raw.r[i][0]);
      if (raw.r[i][1] != raw.r[i][0]) {
        tidei_sbuf_put(e, "-", 1);
        cp_esc(e, raw.r[i][1]);
      }
    }
    tidei_sbuf_put(e, "]", 1);
    parts++;
  }
  uint32_t specials[34];
  for (uint32_t cp = 0; cp < 0x20; cp++) specials[cp] = cp;
  specials[32] = '"';
  specials[33] = '\\';
  for (int i = 0; i < 34; i++) n_special += cps_has(s, specials[i]);
  if (n_special == 34) {
    tidei_sbuf_puts(e, parts++ ? " | j-cesc" : "j-cesc");
  } else {
    for (int i = 0; i < 34; i++) {
      if (!cps_has(s, specials[i])) continue;
      char buf[8];
      const char *esc = canon_escape(specials[i], buf);
      if (parts++) tidei_sbuf_puts(e, " | ");
      lits(e, esc);
    }
  }
  if (!parts) tidei_sbuf_puts(e, "j-never");
  tidei_sbuf_put(e, ")", 1);
}

static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *i) {
  unsigned c = s[*i];
  int k = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
  if (*i + (size_t)k > n) k = 1;
  uint32_t v = k == 1 ? c : c & (0x3fu >> (k - 1));
  for (int j = 1; j < k; j++) v = (v << 6) | (s[*i + (size_t)j] & 0x3fu);
  *i += (size_t)k;
  return v;
}

/* ---------------------------------------------------------------- regex (pattern) */

/*
** A pattern is an ECMA-262 regex applied with search semantics. Validators
** differ (Python's re, used by the common Python validator, reads \d, \w,
** \s as Unicode classes and lets $ match before a final newline), so each
** construct is read in the narrowest sense both agree on: a positive class
** takes the intersection of the readings, a negated class the complement of
** their union. Constructs outside the regular subset, or read differently
** in a way that cannot be narrowed (backreferences, lookaround, \b, flags,
** anchors inside the pattern), make the pattern unsupported.
*/
typedef struct {
  const unsigned char *p;
  size_t n, i;
  const char *bad; /* first unsupported construct */
  int depth;
} rxp;

static uint64_t sadd(uint64_t a, uint64_t b) { return a > INF - b ? INF : a + b; }
static uint64_t smul(uint64_t a, uint64_t b) {
  if (!a || !b) return 0;
  return a > INF / b ? INF : a * b;
}

static int rx_peek(const rxp *r) { return r->i < r->n ? r->p[r->i] : -1; }
static void rx_bad(rxp *r, const char *why) {
  if (!r->bad) r->bad = why;
}

enum { CL_DIGIT = 1, CL_WORD, CL_SPACE };

/* The class escape's set: lower (narrowest) or upper (widest) reading. */
static void class_set(cpset *s, int cls, int negate, int upper) {
  cpset t;
  t.n = 0;
  int wide = negate ? !upper : upper; /* complement of the other reading */
  if (cls == CL_DIGIT) cps_add(&t, '0', '9');
  if (cls == CL_WORD) {
    cps_add(&t, '0', '9');
    cps_add(&t, 'A', 'Z');
    cps_add(&t, 'a', 'z');
    cps_add(&t, '_', '_');
  }
  if (cls == CL_SPACE) {
    static const uint32_t sp[][2] = {{9, 13},          {32, 32},         {0xa0, 0xa0},
                                     {0x1680, 0x1680}, {0x2000, 0x200a}, {0x2028, 0x2029},
                                     {0x202f, 0x202f}, {0x205f, 0x205f}, {0x3000, 0x3000}};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) cps_add(&t, sp[i][0], sp[i][1]);
    if (wide) {
      cps_add(&t, 0x1c, 0x1f);
      cps_add(&t, 0x85, 0x85);
      cps_add(&t, 0xfeff, 0xfeff);
    }
  } else if (wide)
    cps_add(&t, 0x80, 0x10ffff); /* Unicode digits and letters */
  if (negate) cps_complement(&t);
  for (int i = 0; i < t.n; i++) cps_add(s, t.r[i][0], t.r[i][1]);
}

static int hexval(int c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/* An escape after '\' (r->i at the letter). Returns a code point, or -1 and
** sets *cls (a class escape, negated when *neg), or -2 on unsupported. */
static int64_t rx_escape(rxp *r, int in_class, int *cls, int *neg) {
  int e = rx_peek(r);
  *cls = 0;
  *neg = 0;
  if (e < 0) {
    rx_bad(r, "trailing '\\'");
    return -2;
  }
  r->i++;
  switch (e) {
  case 'd':
    *cls = CL_DIGIT;
    return -1;
  case 'D':
    *cls = CL_DIGIT;
    *neg = 1;
    return -1;
  case 'w':
    *cls = CL_WORD;
    return -1;
  case 'W':
    *cls = CL_WORD;
    *neg = 1;
    return -1;
  case 's':
    *cls = CL_SPACE;
    return -1;
  case 'S':
    *cls = CL_SPACE;
    *neg = 1;
    return -1;
  case 't':
    return '\t';
  case 'n':
    return '\n';
  case 'r':
    return '\r';
  case 'f':
    return '\f';
  case 'v':
    return 0x0b;
  case 'b':
    if (in_class) return '\b';
    rx_bad(r, "\\b");
    return -2;
  case '0':
    if (rx_peek(r) >= '0' && rx_peek(r) <= '9') {
      rx_bad(r, "octal escape");
      return -2;
    }
    return 0;
  case 'x':
  case 'u': {
    int nh = e == 'x' ? 2 : 4;
    uint32_t v = 0;
    for (int k = 0; k < nh; k++) {
      int h = hexval(rx_peek(r));
      if (h < 0) {
        rx_bad(r, "malformed \\x or \\u escape");
        return -2;
      }
      v = v * 16 + (uint32_t)h;
      r->i++;
    }
    if (v >= 0xd800 && v <= 0xdbff && r->i + 6 <= r->n && r->p[r->i] == '\\' &&
        r->p[r->i + 1] == 'u') {
      uint32_t lo = 0;
      int ok = 1;
      for (int k = 0; k < 4; k++) {
        int h = hexval(r->p[r->i + 2 + (size_t)k]);
        if (h < 0)
          ok = 0;
        else
          lo = lo * 16 + (uint32_t)h;
      }
      if (ok && lo >= 0xdc00 && lo <= 0xdfff) {
        r->i += 6;
        return 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
      }
    }
    if (v >= 0xd800 && v <= 0xdfff) {
      rx_bad(r, "lone surrogate escape");
      return -2;
    }
    return v;
  }
  default:
    if (e < 0x80 && !((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')))
      return e; /* escaped punctuation */
    rx_bad(r, "escape");
    return -2;
  }
}

/* [...] at r->i ('['): appends the lower-reading set's expression. */
static void rx_class(rxp *r, tidei_sbuf *e) {
  r->i++;
  int negate = 0;
  if (rx_peek(r) == '^') {
    negate = 1;
    r->i++;
  }
  if (rx_peek(r) == ']') {
    rx_bad(r, "empty class or ']' first in a class");
    return;
  }
  cpset lo, hi; /* union of lower readings, union of upper readings */
  lo.n = hi.n = 0;
  for (;;) {
    int ch = rx_peek(r);
    if (ch < 0) {
      rx_bad(r, "unterminated class");
      return;
    }
    if (ch == ']') {
      r->i++;
      break;
    }
    int64_t a;
    int cls = 0, neg = 0;
    if (ch == '\\') {
      r->i++;
      a = rx_escape(r, 1, &cls, &neg);
    } else if (ch == '[' && r->i + 1 < r->n &&
               (r->p[r->i + 1] == ':' || r->p[r->i + 1] == '=' || r->p[r->i + 1] == '.')) {
      rx_bad(r, "POSIX class");
      return;
    } else
      a = utf8_next(r->p, r->n, &r->i);
    if (a == -2) return;
    if (a == -1) {
      if (rx_peek(r) == '-' && r->i + 1 < r->n && r->p[r->i + 1] != ']') {
        rx_bad(r, "class escape in a range");
        return;
      }
      class_set(&lo, cls, neg, 0);
      class_set(&hi, cls, neg, 1);
      if (lo.n > CPSET_CAP - 40 || hi.n > CPSET_CAP - 40) {
        rx_bad(r, "large class");
        return;
      }
      continue;
    }
    int64_t b = a;
    if (rx_peek(r) == '-' && r->i + 1 < r->n && r->p[r->i + 1] != ']') {
      r->i++;
      int c2 = rx_peek(r);
      if (c2 == '\\') {
        r->i++;
        b = rx_escape(r, 1, &cls, &neg);
        if (b == -2) return;
        if (b == -1) {
          rx_bad(r, "class escape in a range");
          return;
        }
      } else
        b = utf8_next(r->p, r->n, &r->i);
      if (b < a) {
        rx_bad(r, "range out of order");
        return;
      }
    }
    if (!cps_add(&lo, (uint32_t)a, (uint32_t)b) || !cps_add(&hi, (uint32_t)a, (uint32_t)b)) {
      rx_bad(r, "large class");
      return;
    }
  }
  if (negate) {
    cps_complement(&hi);
    emit_cpset(e, &hi);
  } else {
    cps_norm(&lo);
    emit_cpset(e, &lo);
  }
}

static void rx_alt(rxp *r, tidei_sbuf *e, uint64_t *mn, uint64_t *mx, int top);

/* Parses {m}, {m,}, {m,n} at r->i; 0 if not a well-formed quantifier. */
static int rx_braces(rxp *r, uint64_t *m, uint64_t *n) {
  size_t i = r->i + 1;
  uint64_t a = 0, b;
  int da = 0;
  while (i < r->n && r->p[i] >= '0' && r->p[i] <= '9') {
    a = a * 10 + (r->p[i++] - '0');
    if (++da > 9) return 0;
  }
  if (!da) return 0;
  if (i < r->n && r->p[i] == '}') {
    *m = *n = a;
    r->i = i + 1;
    return 1;
  }
  if (i >= r->n || r->p[i] != ',') return 0;
  i++;
  int db = 0;
  b = 0;
  while (i < r->n && r->p[i] >= '0' && r->p[i] <= '9') {
    b = b * 10 + (r->p[i++] - '0');
    if (++db > 9) return 0;
  }
  if (i >= r->n || r->p[i] != '}') return 0;
  if (db && b < a) return 0;
  *m = a;
  *n = db ? b : INF;
  r->i = i + 1;
  return 1;
}

/* One atom with its quantifier. */
static void rx_atom(rxp *r, tidei_sbuf *e, uint64_t *mn, uint64_t *mx) {
  tidei_sbuf a = {e->env, NULL, 0, 0, 0};
  uint64_t amn = 1, amx = 1;
  int ch = rx_peek(r);
  if (ch == '(') {
    r->i++;
    if (rx_peek(r) == '?') {
      if (r->i + 1 < r->n && r->p[r->i + 1] == ':')
        r->i += 2;
      else {
        rx_bad(r, "group syntax (?...)");
        tidei_sbuf_free(&a);
        return;
      }
    }
    if (++r->depth > 40) {
      rx_bad(r, "groups nested too deep");
      tidei_sbuf_free(&a);
      return;
    }
    rx_alt(r, &a, &amn, &amx, 0);
    r->depth--;
    if (rx_peek(r) != ')')
      rx_bad(r, "unbalanced '('");
    else
      r->i++;
  } else if (ch == '[') {
    rx_class(r, &a);
  } else if (ch == '.') {
    r->i++;
    cpset s;
    s.n = 0;
    cps_add(&s, '\n', '\n');
    cps_add(&s, '\r', '\r');
    cps_add(&s, 0x2028, 0x2029);
    cps_complement(&s);
    emit_cpset(&a, &s);
  } else if (ch == '\\') {
    r->i++;
    int cls, neg;
    int64_t cp = rx_escape(r, 0, &cls, &neg);
    cpset s;
    s.n = 0;
    if (cp == -1)
      class_set(&s, cls, neg, 0);
    else if (cp >= 0)
      cps_add(&s, (uint32_t)cp, (uint32_t)cp);
    cps_norm(&s);
    if (cp != -2) emit_cpset(&a, &s);
  } else if (ch == '*' || ch == '+' || ch == '?' || ch == '{') {
    rx_bad(r, "quantifier without an atom");
  } else if (ch == '^' || ch == '$') {
    rx_bad(r, "anchor inside the pattern");
  } else {
    uint32_t cp = utf8_next(r->p, r->n, &r->i);
    cpset s;
    s.n = 0;
    cps_add(&s, cp, cp);
    emit_cpset(&a, &s);
  }
  if (r->bad) {
    tidei_sbuf_free(&a);
    return;
  }
  /* quantifier */
  uint64_t qm = 1, qn = 1;
  int q = rx_peek(r);
  if (q == '*') {
    qm = 0;
    qn = INF;
    r->i++;
  } else if (q == '+') {
    qm = 1;
    qn = INF;
    r->i++;
  } else if (q == '?') {
    qm = 0;
    qn = 1;
    r->i++;
  } else if (q == '{') {
    if (!rx_braces(r, &qm, &qn)) {
      rx_bad(r, "'{' that is not a quantifier");
      tidei_sbuf_free(&a);
      return;
    }
  } else
    q = 0;
  if (q) {
    if (rx_peek(r) == '?')
      r->i++; /* lazy: same language */
    else if (rx_peek(r) == '+') {
      rx_bad(r, "possessive quantifier");
      tidei_sbuf_free(&a);
      return;
    }
    int nq = rx_peek(r);
    if (nq == '*' || nq == '+' || nq == '?' || nq == '{') {
      rx_bad(r, "nested quantifier");
      tidei_sbuf_free(&a);
      return;
    }
    if (!a.oom) rep(e, a.p ? a.p : "\"\"", qm, qn);
    *mn = smul(amn, qm);
    *mx = qn == INF ? (amx ? INF : 0) : smul(amx, qn);
  } else {
    tidei_sbuf_put(e, a.p ? a.p : "\"\"", a.p ? a.n : 2);
    *mn = amn;
    *mx = amx;
  }
  if (a.oom) e->oom = 1;
  tidei_sbuf_free(&a);
}

/* A sequence up to '|', ')' or the end; at top level a final '$' anchors. */
static void rx_seq(rxp *r, tidei_sbuf *e, uint64_t *mn, uint64_t *mx, int top, int *end_anchor) {
  *mn = *mx = 0;
  int any = 0;
  for (;;) {
    int ch = rx_peek(r);
    if (ch < 0 || ch == '|' || ch == ')' || r->bad) break;
    if (ch == '$' && top) {
      r->i++;
      int nx = rx_peek(r);
      if (nx >= 0 && nx != '|') {
        rx_bad(r, "anchor inside the pattern");
        break;
      }
      *end_anchor = 1;
      break;
    }
    uint64_t a, b;
    if (any) tidei_sbuf_put(e, " ", 1);
    rx_atom(r, e, &a, &b);
    *mn = sadd(*mn, a);
    *mx = sadd(*mx, b);
    any = 1;
  }
  if (!any) tidei_sbuf_puts(e, "\"\"");
}

static void rx_alt(rxp *r, tidei_sbuf *e, uint64_t *mn, uint64_t *mx, int top) {
  *mn = INF;
  *mx = 0;
  tidei_sbuf_put(e, "(", 1);
  for (int first = 1;; first = 0) {
    if (!first) tidei_sbuf_puts(e, " | ");
    int start_anchor = 0, end_anchor = 0;
    if (top && rx_peek(r) == '^') {
      start_anchor = 1;
      r->i++;
    }
    if (top && !start_anchor) tidei_sbuf_puts(e, "j-pchar* ");
    uint64_t a, b;
    rx_seq(r, e, &a, &b, top, &end_anchor);
    if (top && !end_anchor) {
      tidei_sbuf_puts(e, " j-pchar*");
      b = INF;
    }
    if (top && !start_anchor) b = INF;
    if (a < *mn) *mn = a;
    if (b > *mx) *mx = b;
    if (r->bad || rx_peek(r) != '|') break;
    r->i++;
  }
  tidei_sbuf_put(e, ")", 1);
}

/* A pattern's expression (the string's contents); 0 if unsupported. */
static int pattern_expr(conv *c, const tidei_json *pat, tidei_sbuf *e, uint64_t *mn, uint64_t *mx) {
  rxp r;
  memset(&r, 0, sizeof r);
  r.p = (const unsigned char *)pat->u.s;
  r.n = pat->n;
  tidei_sbuf t;
  sb_init(c, &t);
  rx_alt(&r, &t, mn, mx, 1);
  if (!r.bad && r.i < r.n) rx_bad(&r, "unbalanced ')'");
  if (r.bad) {
    char msg[200];
    snprintf(msg, sizeof msg, "pattern (%s)", r.bad);
    unsup(c, msg);
    sb_done(c, &t);
    return 0;
  }
  tidei_sbuf_put(e, t.p, t.n);
  sb_done(c, &t);
  return 1;
}

/* ---------------------------------------------------------------- integer ranges */

/* n-digit strings >= s (ge) or <= s (!ge). */
static void digits_cmp(tidei_sbuf *e, const char *s, int n, int ge) {
  if (n == 0) {
    tidei_sbuf_puts(e, "\"\"");
    return;
  }
  int trivial = 1;
  for (int i = 0; i < n; i++) trivial &= s[i] == (ge ? '0' : '9');
  if (trivial) {
    tidei_sbuf_printf(e, "[0-9]{%d}", n);
    return;
  }
  tidei_sbuf_printf(e, "(\"%c\" ", s[0]);
  digits_cmp(e, s + 1, n - 1, ge);
  if (ge && s[0] < '9') {
    tidei_sbuf_printf(e, " | [%c-9]", s[0] + 1);
    if (n > 1) tidei_sbuf_printf(e, " [0-9]{%d}", n - 1);
  }
  if (!ge && s[0] > '0') {
    tidei_sbuf_printf(e, " | [0-%c]", s[0] - 1);
    if (n > 1) tidei_sbuf_printf(e, " [0-9]{%d}", n - 1);
  }
  tidei_sbuf_put(e, ")", 1);
}

/* n-digit strings in [lo, hi] (lo <= hi, both n digits). */
static void fixed_range(tidei_sbuf *e, const char *lo, const char *hi, int n) {
  int i = 0;
  while (i < n && lo[i] == hi[i]) i++;
  if (i == n) {
    lit(e, lo, (size_t)n);
    return;
  }
  tidei_sbuf_put(e, "(", 1);
  if (i) {
    lit(e, lo, (size_t)i);
    tidei_sbuf_put(e, " ", 1);
  }
  int rest = n - i - 1;
  tidei_sbuf_printf(e, "(\"%c\" ", lo[i]);
  digits_cmp(e, lo + i + 1, rest, 1);
  if (lo[i] + 1 <= hi[i] - 1) {
    tidei_sbuf_printf(e, " | [%c-%c]", lo[i] + 1, hi[i] - 1);
    if (rest) tidei_sbuf_printf(e, " [0-9]{%d}", rest);
  }
  tidei_sbuf_printf(e, " | \"%c\" ", hi[i]);
  digits_cmp(e, hi + i + 1, rest, 0);
  tidei_sbuf_puts(e, "))");
}

/* Canonical digit strings of the integers in [a, b] (b NULL: unbounded);
** a, b are digit strings without leading zeros ("0" for zero), a <= b. */
static void nn_range(tidei_sbuf *e, const char *a, const char *b) {
  int la = (int)strlen(a), lb = b ? (int)strlen(b) : la;
  char lo[MAX_DIGITS + 2], hi[MAX_DIGITS + 2];
  tidei_sbuf_put(e, "(", 1);
  for (int L = la; L <= lb; L++) {
    if (L > la) tidei_sbuf_puts(e, " | ");
    if (L == la)
      memcpy(lo, a, (size_t)L);
    else {
      memset(lo, '0', (size_t)L);
      lo[0] = '1';
    }
    if (b && L == lb)
      memcpy(hi, b, (size_t)L);
    else
      memset(hi, '9', (size_t)L);
    fixed_range(e, lo, hi, L);
  }
  if (!b) tidei_sbuf_printf(e, " | [1-9] [0-9]{%d,}", la);
  tidei_sbuf_put(e, ")", 1);
}

static const char *dec_int_str(const dec *d, char *buf) {
  if (!d->ni) return "0";
  memcpy(buf, d->ip, (size_t)d->ni);
  buf[d->ni] = 0;
  return buf;
}

/* Integers in [lo, hi] (either NULL: unbounded), both integral. */
static void int_range(tidei_sbuf *e, const dec *lo, const dec *hi) {
  if (lo && hi && dec_cmp(lo, hi) > 0) {
    tidei_sbuf_puts(e, "j-never");
    return;
  }
  char b1[MAX_DIGITS + 2], b2[MAX_DIGITS + 2];
  int alts = 0;
  tidei_sbuf_put(e, "(", 1);
  if (!hi || !hi->neg) { /* x >= 0 */
    const char *a = lo && !lo->neg ? dec_int_str(lo, b1) : "0";
    nn_range(e, a, hi ? dec_int_str(hi, b2) : NULL);
    alts++;
  }
  if (!lo || lo->neg) { /* x < 0: "-" magnitude in [max(1, -hi), -lo] */
    dec one;
    memset(&one, 0, sizeof one);
    one.ni = 1;
    one.ip[0] = '1';
    const dec *m0 = hi && hi->neg ? hi : &one;
    if (alts++) tidei_sbuf_puts(e, " | ");
    tidei_sbuf_puts(e, "\"-\" ");
    nn_range(e, dec_int_str(m0, b1), lo ? dec_int_str(lo, b2) : NULL);
  }
  tidei_sbuf_put(e, ")", 1);
}

/* ---------------------------------------------------------------- decimal ranges */

/* A bound on the digits F after the point, comparing 0.F with 0.D. */
typedef struct {
  const char *d;
  int n, strict, on;
} fbound;

static int eps_in(fbound lo, fbound hi) {
  return (!lo.on || (lo.n == 0 && !lo.strict)) && (!hi.on || !hi.strict || hi.n > 0);
}

/* Digit strings F (nonempty when asked) with 0.F within lo and hi; returns
** 0 (nothing appended) when there are none. Recursion follows the bounds'
** digits (at most MAX_DIGITS each). */
static int frac_lang(tidei_sbuf *e, fbound lo, fbound hi, int nonempty) {
  if (lo.on && lo.n == 0 && !lo.strict) lo.on = 0;
  if (hi.on && hi.n == 0) {
    if (hi.strict || lo.on) return 0;
    tidei_sbuf_puts(e, nonempty ? "\"0\"+" : "\"0\"*");
    return 1;
  }
  if (!lo.on && !hi.on) {
    tidei_sbuf_puts(e, nonempty ? "[0-9]+" : "[0-9]*");
    return 1;
  }
  if (lo.on && lo.n == 0 && !hi.on) {
    tidei_sbuf_puts(e, "[0-9]* [1-9] [0-9]*");
    return 1;
  }
  int alts = 0;
  tidei_sbuf_put(e, "(", 1);
  if (!nonempty && eps_in(lo, hi)) {
    tidei_sbuf_puts(e, "\"\"");
    alts++;
  }
  int ld = lo.on ? (lo.n ? lo.d[0] : '0') : -1, hd = hi.on ? hi.d[0] : -1;
  /* digits that settle both bounds: > ld and < hd */
  int a = ld < 0 ? '0' : ld + 1, b = hd < 0 ? '9' : hd - 1;
  if (a <= b) {
    if (alts++) tidei_sbuf_puts(e, " | ");
    tidei_sbuf_printf(e, "[%c-%c] [0-9]*", a, b);
  }
  for (int k = 0; k < 2; k++) {
    int f = k == 0 ? ld : hd;
    if (f < 0 || (k == 1 && f == ld)) continue;
    fbound l2 = lo, h2 = hi;
    if (lo.on) {
      if (f == ld) {
        if (lo.n) l2.d++, l2.n--;
      } else if (f > ld)
        l2.on = 0;
      else
        continue;
    }
    if (hi.on) {
      if (f == hd)
        h2.d++, h2.n--;
      else if (f < hd)
        h2.on = 0;
      else
        continue;
    }
    tidei_sbuf t = {e->env, NULL, 0, 0, 0};
    if (frac_lang(&t, l2, h2, 0)) {
      if (alts++) tidei_sbuf_puts(e, " | ");
      tidei_sbuf_printf(e, "\"%c\" ", f);
      tidei_sbuf_put(e, t.p, t.n);
    }
    if (t.oom) e->oom = 1;
    tidei_sbuf_free(&t);
  }
  tidei_sbuf_put(e, ")", 1);
  if (!alts) {
    e->n -= 2;
    if (e->p) e->p[e->n] = 0;
  }
  return alts > 0;
}

/* The optional fraction "(.F)?" with F within lo and hi; 0 if none. */
static int frac_tok(tidei_sbuf *e, fbound lo, fbound hi) {
  tidei_sbuf t = {e->env, NULL, 0, 0, 0};
  int has = frac_lang(&t, lo, hi, 1), eps = eps_in(lo, hi);
  if (has && eps) {
    tidei_sbuf_puts(e, "(\".\" ");
    tidei_sbuf_put(e, t.p, t.n);
    tidei_sbuf_puts(e, ")?");
  } else if (has) {
    tidei_sbuf_puts(e, "\".\" ");
    tidei_sbuf_put(e, t.p, t.n);
  } else if (eps)
    tidei_sbuf_puts(e, "\"\"");
  if (t.oom) e->oom = 1;
  tidei_sbuf_free(&t);
  return has || eps;
}

/* Magnitudes I(.F)? in [A, B] (B NULL: unbounded; strict flags make the
** ends open); appends alternatives separated by " | ", returns their count. */
static int mag_range(tidei_sbuf *e, const dec *A, int ax, const dec *B, int bx) {
  if (B) {
    int k = mag_cmp(A, B);
    if (k > 0 || (k == 0 && (ax || bx))) return 0;
  }
  char b1[MAX_DIGITS + 2], b2[MAX_DIGITS + 2];
  fbound off = {NULL, 0, 0, 0};
  fbound flo = {A->fp, A->nf, ax, 1}, fhi = {B ? B->fp : NULL, B ? B->nf : 0, bx, 1};
  int alts = 0;
  tidei_sbuf t = {e->env, NULL, 0, 0, 0};
  if (B && A->ni == B->ni && memcmp(A->ip, B->ip, (size_t)A->ni) == 0) {
    if (frac_tok(&t, flo, fhi)) {
      tidei_sbuf_printf(e, "\"%s\" ", dec_int_str(A, b1));
      tidei_sbuf_put(e, t.p, t.n);
      alts++;
    }
    tidei_sbuf_free(&t);
    return alts;
  }
  if (frac_tok(&t, flo, off)) {
    tidei_sbuf_printf(e, "\"%s\" ", dec_int_str(A, b1));
    tidei_sbuf_put(e, t.p, t.n);
    alts++;
  }
  t.n = 0;
  dec a1 = *A, b1d;
  a1.nf = 0;
  int ok = ip_inc(&a1), mid = 1;
  if (B) {
    b1d = *B;
    b1d.nf = 0;
    if (!b1d.ni)
      mid = 0;
    else {
      ip_dec(&b1d);
      if (mag_cmp(&a1, &b1d) > 0) mid = 0;
    }
  }
  if (ok && mid) {
    if (alts++) tidei_sbuf_puts(e, " | ");
    nn_range(e, dec_int_str(&a1, b1), B ? dec_int_str(&b1d, b2) : NULL);
    tidei_sbuf_puts(e, " (\".\" [0-9]+)?");
  }
  if (B && frac_tok(&t, off, fhi)) {
    if (alts++) tidei_sbuf_puts(e, " | ");
    tidei_sbuf_printf(e, "\"%s\" ", dec_int_str(B, b1));
    tidei_sbuf_put(e, t.p, t.n);
  }
  if (t.oom) e->oom = 1;
  tidei_sbuf_free(&t);
  return alts;
}

/* Numbers without exponent in the interval (lo, hi NULL: unbounded). */
static void num_range(tidei_sbuf *e, const dec *lo, int lx, const dec *hi, int hx) {
  dec zero;
  memset(&zero, 0, sizeof zero);
  tidei_sbuf_put(e, "(", 1);
  int alts = 0;
  if (!hi || !hi->neg) { /* written without '-' */
    const dec *A = lo && !lo->neg ? lo : &zero;
    int ax = lo && !lo->neg ? lx : 0;
    alts += mag_range(e, A, ax, hi, hx);
  }
  if (!lo || lo->neg) { /* "-" m with m > 0 */
    dec A = hi && hi->neg ? *hi : zero, B;
    A.neg = 0;
    int ax = hi && hi->neg ? hx : 1;
    if (lo) {
      B = *lo;
      B.neg = 0;
    }
    tidei_sbuf t = {e->env, NULL, 0, 0, 0};
    if (mag_range(&t, &A, ax, lo ? &B : NULL, lx)) {
      if (alts++) tidei_sbuf_puts(e, " | ");
      tidei_sbuf_puts(e, "\"-\" (");
      tidei_sbuf_put(e, t.p, t.n);
      tidei_sbuf_put(e, ")", 1);
    }
    if (t.oom) e->oom = 1;
    tidei_sbuf_free(&t);
  }
  if (!alts) tidei_sbuf_puts(e, "j-never");
  tidei_sbuf_put(e, ")", 1);
}

/* ---------------------------------------------------------------- library rules */

/* Rules every grammar carries. j-char is one code point of a JSON string in
** any escape (no lone surrogates); j-pchar one in canonical form. Formats
** follow RFC 3339 (date, time with offset, date-time; seconds 00-59, year
** 0001-9999, days checked against month and leap year), RFC 4122 text
** (uuid) and RFC 5321 dot-atom addresses (email). */
static const char LIBRARY[] =
    "j-value ::= j-object | j-array | j-string | j-number | \"true\" | \"false\" | \"null\"\n"
    "j-object ::= \"{\" ( j-string \":\" j-value ( \",\" j-string \":\" j-value )* )? \"}\"\n"
    "j-array ::= \"[\" ( j-value ( \",\" j-value )* )? \"]\"\n"
    "j-string ::= \"\\\"\" j-char* \"\\\"\"\n"
    "j-char ::= [^\"\\\\\\x00-\\x1f] | \"\\\\\" [\"\\\\/bfnrt] | \"\\\\u\" j-hex4 "
    "| \"\\\\u\" [dD] [89abAB] j-hex j-hex \"\\\\u\" [dD] [c-fC-F] j-hex j-hex\n"
    "j-hex4 ::= [0-9a-cA-Ce-fE-F] j-hex j-hex j-hex | [dD] [0-7] j-hex j-hex\n"
    "j-hex ::= [0-9a-fA-F]\n"
    "j-pchar ::= [^\"\\\\\\x00-\\x1f] | j-cesc\n"
    "j-cesc ::= \"\\\\\" [\"\\\\bfnrt] | \"\\\\u00\" ( \"0\" [0-7] | \"0\" [bef] | \"1\" [0-9a-f] "
    ")\n"
    "j-number ::= \"-\"? j-uint ( \".\" [0-9]+ )? ( [eE] [-+]? [0-9]+ )?\n"
    "j-integer ::= \"-\"? j-uint\n"
    "j-uint ::= \"0\" | [1-9] [0-9]*\n"
    "j-never ::= [^\\x00-\\U0010FFFF]\n"
    "j-date ::= j-year \"-\" ( ( \"01\" | \"03\" | \"05\" | \"07\" | \"08\" | \"10\" | \"12\" ) "
    "\"-\" j-d31 "
    "| ( \"04\" | \"06\" | \"09\" | \"11\" ) \"-\" j-d30 | \"02-\" j-d28 ) | j-leap \"-02-29\"\n"
    "j-year ::= [0-9] [0-9] [0-9] [1-9] | [0-9] [0-9] [1-9] \"0\" | [0-9] [1-9] \"00\" | [1-9] "
    "\"000\"\n"
    "j-leap ::= [0-9] [0-9] ( [02468] [48] | [13579] [26] | [2468] \"0\" ) "
    "| ( [02468] [48] | [2468] \"0\" | [13579] [26] ) \"00\"\n"
    "j-d31 ::= \"0\" [1-9] | [12] [0-9] | \"3\" [01]\n"
    "j-d30 ::= \"0\" [1-9] | [12] [0-9] | \"30\"\n"
    "j-d28 ::= \"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]\n"
    "j-time ::= j-hh \":\" j-mm \":\" j-mm ( \".\" [0-9]+ )? ( \"Z\" | [-+] j-hh \":\" j-mm )\n"
    "j-hh ::= [01] [0-9] | \"2\" [0-3]\n"
    "j-mm ::= [0-5] [0-9]\n"
    "j-date-time ::= j-date \"T\" j-time\n"
    "j-uuid ::= j-hex{8} \"-\" j-hex{4} \"-\" j-hex{4} \"-\" j-hex{4} \"-\" j-hex{12}\n"
    "j-email ::= j-atext+ ( \".\" j-atext+ )* \"@\" j-label ( \".\" j-label )+\n"
    "j-atext ::= [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]\n"
    "j-label ::= [A-Za-z0-9] ( [A-Za-z0-9-]* [A-Za-z0-9] )?\n";

/* Formats: rule, fixed length in code points (0: variable) and the
** shortest instance. */
static const struct {
  const char *name, *rule;
  uint64_t len, min;
} FORMATS[] = {
    {"date", "j-date", 10, 10}, {"time", "j-time", 0, 9},   {"date-time", "j-date-time", 0, 20},
    {"uuid", "j-uuid", 36, 36}, {"email", "j-email", 0, 5},
};

/* ---------------------------------------------------------------- schemas */

static void compile_expr(conv *c, const tidei_json *s, tidei_sbuf *e);

/* Compiles the subschema s->key (an object member) with the path extended. */
static void sub_expr(conv *c, const tidei_json *sub, const char *seg1, const char *seg2,
                     uint32_t idx, tidei_sbuf *e) {
  size_t old = path_push(c, seg1, strlen(seg1));
  if (seg2)
    path_push(c, seg2, strlen(seg2));
  else if (idx != UINT32_MAX)
    path_pushi(c, idx);
  compile_expr(c, sub, e);
  path_pop(c, old);
}

static void string_expr(conv *c, const tidei_json *s, tidei_sbuf *e) {
  uint64_t mn = 0, mx = INF;
  const tidei_json *kmin = get(s, "minLength"), *kmax = get(s, "maxLength");
  const tidei_json *pat = get(s, "pattern"), *fmt = get(s, "format");
  if (kmin && !get_count(kmin, &mn)) {
    fail(c, TIDE_ERR_FORMAT, "minLength at %s is not a non-negative integer",
         c->path.n ? c->path.p : "/");
    return;
  }
  if (kmax && !get_count(kmax, &mx)) {
    fail(c, TIDE_ERR_FORMAT, "maxLength at %s is not a non-negative integer",
         c->path.n ? c->path.p : "/");
    return;
  }
  if (pat && pat->type != TIDEI_JSON_STRING) {
    fail(c, TIDE_ERR_FORMAT, "pattern at %s is not a string", c->path.n ? c->path.p : "/");
    return;
  }
  if (mx < mn) {
    tidei_sbuf_puts(e, "j-never");
    return;
  }
  int has_len = mn > 0 || mx != INF;
  const char *frule = NULL;
  uint64_t flen = 0, fmin = 0;
  if (fmt && fmt->type == TIDEI_JSON_STRING) {
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
      if (strcmp(fmt->u.s, FORMATS[i].name) == 0)
        frule = FORMATS[i].rule, flen = FORMATS[i].len, fmin = FORMATS[i].min;
    if (!frule) {
      char what[120];
      snprintf(what, sizeof what, "format '%.80s'", fmt->u.s);
      unsup(c, what);
      return;
    }
  } else if (fmt) {
    unsup(c, "format (not a string)");
    return;
  }
  if (pat && frule) {
    unsup(c, "pattern with format");
    return;
  }
  if (frule) {
    if (has_len) {
      if (flen) {
        if (flen < mn || flen > mx) {
          tidei_sbuf_puts(e, "j-never");
          return;
        }
      } else if (mx != INF || mn > fmin) {
        unsup(c, "minLength/maxLength with format");
        return;
      }
    }
    tidei_sbuf_printf(e, "(\"\\\"\" %s \"\\\"\")", frule);
    return;
  }
  if (pat) {
    uint64_t rmn, rmx;
    tidei_sbuf t;
    sb_init(c, &t);
    if (!pattern_expr(c, pat, &t, &rmn, &rmx)) {
      sb_done(c, &t);
      return;
    }
    if (has_len && !(rmn >= mn && rmx <= mx)) {
      if (rmx < mn || rmn > mx)
        tidei_sbuf_puts(e, "j-never");
      else
        unsup(c, "minLength/maxLength with pattern");
      sb_done(c, &t);
      return;
    }
    tidei_sbuf_puts(e, "(\"\\\"\" ");
    tidei_sbuf_put(e, t.p, t.n);
    tidei_sbuf_puts(e, " \"\\\"\")");
    sb_done(c, &t);
    return;
  }
  if (!has_len) {
    tidei_sbuf_puts(e, "j-string");
    return;
  }
  tidei_sbuf_puts(e, "(\"\\\"\" ");
  rep(e, "j-char", mn, mx);
  tidei_sbuf_puts(e, " \"\\\"\")");
}

/* A bound keyword as a decimal; returns 0 if absent, -1 on error. Draft 4's
** boolean exclusiveMinimum/Maximum set *strict. */
static int get_bound(conv *c, const tidei_json *s, int upper, dec *d, int *strict) {
  const tidei_json *k = get(s, upper ? "maximum" : "minimum");
  const tidei_json *x = get(s, upper ? "exclusiveMaximum" : "exclusiveMinimum");
  int have = 0;
  *strict = 0;
  if (k) {
    if (k->type != TIDEI_JSON_NUMBER) {
      fail(c, TIDE_ERR_FORMAT, "%s at %s is not a number", upper ? "maximum" : "minimum",
           c->path.n ? c->path.p : "/");
      return -1;
    }
    if (!dec_parse(k->u.s, k->n, d)) {
      unsup(c, upper ? "maximum (too many digits)" : "minimum (too many digits)");
      return -1;
    }
    have = 1;
    if (is_true(x)) *strict = 1;
  }
  if (x && x->type == TIDEI_JSON_NUMBER) {
    dec t;
    if (!dec_parse(x->u.s, x->n, &t)) {
      unsup(c, "exclusive bound (too many digits)");
      return -1;
    }
    int cmp = have ? dec_cmp(&t, d) : 0;
    if (!have || (upper ? cmp <= 0 : cmp >= 0)) {
      *d = t;
      *strict = 1;
      have = 1;
    }
  } else if (x && x->type != TIDEI_JSON_TRUE && x->type != TIDEI_JSON_FALSE) {
    fail(c, TIDE_ERR_FORMAT, "exclusive bound at %s is not a number", c->path.n ? c->path.p : "/");
    return -1;
  }
  return have;
}

static void number_expr(conv *c, const tidei_json *s, unsigned types, tidei_sbuf *e) {
  dec lo, hi;
  int lx, hx;
  int hl = get_bound(c, s, 0, &lo, &lx), hh = get_bound(c, s, 1, &hi, &hx);
  if (hl < 0 || hh < 0) return;
  const tidei_json *mul = get(s, "multipleOf");
  if (mul) {
    dec m;
    if (mul->type == TIDEI_JSON_NUMBER && dec_parse(mul->u.s, mul->n, &m) && !m.neg && !m.nf &&
        m.ni == 1 && m.ip[0] == '1')
      types &= ~(unsigned)T_FRAC;
    else {
      unsup(c, "multipleOf");
      return;
    }
  }
  if (!(types & T_FRAC)) {
    if (!hl && !hh) {
      tidei_sbuf_puts(e, "j-integer");
      return;
    }
    if ((hl && !dec_ceil(&lo, lx)) || (hh && !dec_floor(&hi, hx))) {
      unsup(c, "minimum/maximum (too many digits)");
      return;
    }
    int_range(e, hl ? &lo : NULL, hh ? &hi : NULL);
    return;
  }
  if (!hl && !hh) {
    tidei_sbuf_puts(e, "j-number");
    return;
  }
  num_range(e, hl ? &lo : NULL, lx, hh ? &hi : NULL, hx);
}

static void array_expr(conv *c, const tidei_json *s, tidei_sbuf *e) {
  uint64_t mn = 0, mx = INF;
  const tidei_json *kmin = get(s, "minItems"), *kmax = get(s, "maxItems");
  if ((kmin && !get_count(kmin, &mn)) || (kmax && !get_count(kmax, &mx))) {
    fail(c, TIDE_ERR_FORMAT, "minItems/maxItems at %s is not a non-negative integer",
         c->path.n ? c->path.p : "/");
    return;
  }
  const tidei_json *pre = get(s, "prefixItems"), *items = get(s, "items"), *rest = items;
  const char *pre_kw = "prefixItems", *rest_kw = "items";
  if (pre && pre->type != TIDEI_JSON_ARRAY) {
    fail(c, TIDE_ERR_FORMAT, "prefixItems at %s is not an array", c->path.n ? c->path.p : "/");
    return;
  }
  if (items && items->type == TIDEI_JSON_ARRAY) {
    if (pre) {
      unsup(c, "items (array form with prefixItems)");
      return;
    }
    pre = items, pre_kw = "items";
    rest = get(s, "additionalItems"), rest_kw = "additionalItems";
  }
  const tidei_json *uq = get(s, "uniqueItems");
  uint32_t k = pre ? pre->n : 0;
  if (is_false(rest) && mx > k) mx = k;
  if (is_true(uq) && mx > 1) {
    unsup(c, "uniqueItems");
    return;
  }
  if (mx < mn) {
    tidei_sbuf_puts(e, "j-never");
    return;
  }
  tidei_sbuf r;
  sb_init(c, &r);
  if (rest)
    sub_expr(c, rest, rest_kw, NULL, UINT32_MAX, &r);
  else
    tidei_sbuf_puts(&r, "j-value");
  if (r.oom) {
    sb_done(c, &r);
    return;
  }
  /* rest items after j items: ("," R){max(lo,0), hi} closing with "]" */
  tidei_sbuf more;
  sb_init(c, &more);
  tidei_sbuf_printf(&more, "\",\" %s", r.p);
  if (k == 0 || mx == 0) {
    if (mx == 0)
      tidei_sbuf_puts(e, "(\"[\" \"]\")");
    else {
      tidei_sbuf_puts(e, mn == 0 ? "(\"[\" (" : "(\"[\" ");
      tidei_sbuf_put(e, r.p, r.n);
      tidei_sbuf_put(e, " ", 1);
      rep(e, more.p, mn ? mn - 1 : 0, mx == INF ? INF : mx - 1);
      tidei_sbuf_puts(e, mn == 0 ? ")? \"]\")" : " \"]\")");
    }
    sb_done(c, &r);
    sb_done(c, &more);
    return;
  }
  /* prefix chain: C_j after j items, j = 1..min(k, mx) */
  uint32_t top = mx < k ? (uint32_t)mx : k;
  uint32_t base = c->n_rules;
  for (uint32_t j = 1; j <= top; j++) rule_new(c);
  for (uint32_t j = top; j >= 1; j--) {
    tidei_sbuf b;
    sb_init(c, &b);
    int alts = 0;
    if (j >= mn) {
      tidei_sbuf_puts(&b, "\"]\"");
      alts++;
    }
    if (j < top) {
      if (alts++) tidei_sbuf_puts(&b, " | ");
      tidei_sbuf_puts(&b, "\",\" ");
      sub_expr(c, &pre->u.items[j], pre_kw, NULL, j, &b);
      tidei_sbuf_printf(&b, " r%u", base + j);
    } else if (j == k && mx > k && !is_false(rest)) {
      uint64_t lo = mn > k ? mn - k : 1;
      if (alts++) tidei_sbuf_puts(&b, " | ");
      rep(&b, more.p, lo, mx == INF ? INF : mx - k);
      tidei_sbuf_puts(&b, " \"]\"");
    }
    if (!alts) tidei_sbuf_puts(&b, "j-never");
    rule_def(c, base + j - 1, &b);
    sb_done(c, &b);
  }
  tidei_sbuf_puts(e, "(\"[\" (");
  if (mn == 0) tidei_sbuf_puts(e, "\"]\" | ");
  sub_expr(c, &pre->u.items[0], pre_kw, NULL, 0, e);
  tidei_sbuf_printf(e, " r%u))", base);
  sb_done(c, &r);
  sb_done(c, &more);
}

/* ---------------------------------------------------------------- objects */

/* A trie over the declared property names, for keys that are none of them. */
typedef struct {
  uint32_t cp, child, sibling;
  uint8_t terminal;
} tnode;

/* An expression for a string key (quotes included, canonical escapes) that
** is not one of the n names. */
static void other_key_expr(conv *c, const tidei_json_member *const *names, uint32_t n,
                           tidei_sbuf *e) {
  if (n == 0) {
    tidei_sbuf_puts(e, "j-string");
    return;
  }
  uint32_t cap = 1, used = 1;
  for (uint32_t i = 0; i < n; i++) cap += names[i]->key_len;
  tnode *t = tidei_calloc(c->env, cap, sizeof *t);
  if (!t) {
    c->out.oom = 1;
    return;
  }
  t[0].child = t[0].sibling = UINT32_MAX;
  for (uint32_t i = 0; i < n; i++) {
    const unsigned char *k = (const unsigned char *)names[i]->key;
    size_t j = 0, kl = names[i]->key_len;
    uint32_t at = 0;
    while (j < kl) {
      uint32_t cp = utf8_next(k, kl, &j), ch = t[at].child;
      while (ch != UINT32_MAX && t[ch].cp != cp) ch = t[ch].sibling;
      if (ch == UINT32_MAX) {
        ch = used++;
        t[ch].cp = cp;
        t[ch].child = UINT32_MAX;
        t[ch].sibling = t[at].child;
        t[at].child = ch;
      }
      at = ch;
    }
    t[at].terminal = 1;
  }
  uint32_t base = c->n_rules;
  for (uint32_t i = 0; i < used; i++) rule_new(c);
  cpset *s = tidei_alloc(c->env, sizeof *s);
  if (!s) {
    c->out.oom = 1;
    tidei_free(c->env, t, cap * sizeof *t);
    return;
  }
  for (uint32_t i = 0; i < used && !c->status; i++) {
    tidei_sbuf b;
    sb_init(c, &b);
    int alts = 0;
    if (!t[i].terminal) {
      tidei_sbuf_puts(&b, "\"\"");
      alts++;
    }
    s->n = 0;
    for (uint32_t ch = t[i].child; ch != UINT32_MAX; ch = t[ch].sibling) {
      if (!cps_add(s, t[ch].cp, t[ch].cp)) {
        unsup(c, "additionalProperties (too many property names)");
        break;
      }
      char u[8], buf[8];
      size_t ul = 0;
      uint32_t cp = t[ch].cp;
      const char *esc = canon_escape(cp, buf);
      if (alts++) tidei_sbuf_puts(&b, " | ");
      if (esc)
        lits(&b, esc);
      else {
        if (cp < 0x80)
          u[ul++] = (char)cp;
        else if (cp < 0x800)
          u[ul++] = (char)(0xc0 | (cp >> 6)), u[ul++] = (char)(0x80 | (cp & 0x3f));
        else if (cp < 0x10000)
          u[ul++] = (char)(0xe0 | (cp >> 12)), u[ul++] = (char)(0x80 | ((cp >> 6) & 0x3f)),
          u[ul++] = (char)(0x80 | (cp & 0x3f));
        else
          u[ul++] = (char)(0xf0 | (cp >> 18)), u[ul++] = (char)(0x80 | ((cp >> 12) & 0x3f)),
          u[ul++] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[ul++] = (char)(0x80 | (cp & 0x3f));
        lit(&b, u, ul);
      }
      tidei_sbuf_printf(&b, " r%u", base + ch);
    }
    cps_complement(s);
    if (alts++) tidei_sbuf_puts(&b, " | ");
    emit_cpset(&b, s);
    tidei_sbuf_puts(&b, " j-pchar*");
    rule_def(c, base + i, &b);
    sb_done(c, &b);
  }
  tidei_free(c->env, s, sizeof *s);
  tidei_free(c->env, t, cap * sizeof *t);
  tidei_sbuf_printf(e, "(\"\\\"\" r%u \"\\\"\")", base);
}

static int in_required(const tidei_json *req, const char *k, uint32_t kl) {
  if (!req || req->type != TIDEI_JSON_ARRAY) return 0;
  for (uint32_t i = 0; i < req->n; i++)
    if (req->u.items[i].type == TIDEI_JSON_STRING && req->u.items[i].n == kl &&
        memcmp(req->u.items[i].u.s, k, kl) == 0)
      return 1;
  return 0;
}

static const tidei_json_member *find_member(const tidei_json *obj, const char *k, uint32_t kl) {
  if (!obj || obj->type != TIDEI_JSON_OBJECT) return NULL;
  for (uint32_t i = obj->n; i-- > 0;)
    if (obj->u.members[i].key_len == kl && memcmp(obj->u.members[i].key, k, kl) == 0)
      return &obj->u.members[i];
  return NULL;
}

/*
** Objects: declared properties in schema order (each optional one may be
** left out), then required names that are not declared; keys outside the
** declared ones (when additionalProperties allows them) may come before,
** between and after. Rules, for slot i of n:
**   F_i ::= X N_i | <slot i with nothing written yet>
**   N_i ::= ("," X)* <slot i after something was written>
** where X is one extra member; F_n ::= X N_n | "" and N_n ::= ("," X)*.
*/
static void object_expr(conv *c, const tidei_json *s, tidei_sbuf *e) {
  const tidei_json *props = get(s, "properties"), *req = get(s, "required");
  const tidei_json *ap = get(s, "additionalProperties");
  if (props && props->type != TIDEI_JSON_OBJECT) {
    fail(c, TIDE_ERR_FORMAT, "properties at %s is not an object", c->path.n ? c->path.p : "/");
    return;
  }
  if (req && req->type != TIDEI_JSON_ARRAY) {
    unsup(c, "required (not an array)");
    return;
  }
  uint32_t np = props ? props->n : 0, nr = req ? req->n : 0;
  const tidei_json_member **names = tidei_calloc(c->env, (size_t)np + nr + 1, sizeof *names);
  tidei_json_member *extra_req = tidei_calloc(c->env, (size_t)nr + 1, sizeof *extra_req);
  uint32_t *slot_prop = tidei_calloc(c->env, (size_t)np + nr + 1, sizeof *slot_prop);
  if (!names || !extra_req || !slot_prop) {
    c->out.oom = 1;
    goto done;
  }
  uint32_t nn = 0, ns = 0, nx = 0;
  for (uint32_t i = 0; i < np; i++) {
    const tidei_json_member *m = &props->u.members[i];
    if (find_member(props, m->key, m->key_len) != m) continue; /* a later duplicate wins */
    names[nn++] = m;
    if (is_false(&m->value)) {
      if (in_required(req, m->key, m->key_len)) {
        tidei_sbuf_puts(e, "j-never");
        goto done;
      }
      continue;
    }
    slot_prop[ns++] = nn - 1;
  }
  for (uint32_t i = 0; i < nr; i++) {
    const tidei_json *r = &req->u.items[i];
    if (r->type != TIDEI_JSON_STRING) {
      unsup(c, "required (not strings)");
      goto done;
    }
    int seen = find_member(props, r->u.s, r->n) != NULL;
    for (uint32_t j = 0; j < nx && !seen; j++)
      seen = extra_req[j].key_len == r->n && memcmp(extra_req[j].key, r->u.s, r->n) == 0;
    if (seen) continue;
    if (is_false(ap)) {
      tidei_sbuf_puts(e, "j-never");
      goto done;
    }
    extra_req[nx].key = r->u.s;
    extra_req[nx].key_len = r->n;
    extra_req[nx].value = ap ? *ap : TRUE_NODE;
    names[nn++] = &extra_req[nx];
    slot_prop[ns++] = nn - 1;
    nx++;
  }
  /* X: one extra member */
  tidei_sbuf x;
  sb_init(c, &x);
  if (!is_false(ap)) {
    tidei_sbuf v;
    sb_init(c, &v);
    if (ap)
      sub_expr(c, ap, "additionalProperties", NULL, UINT32_MAX, &v);
    else
      tidei_sbuf_puts(&v, "j-value");
    tidei_sbuf kx;
    sb_init(c, &kx);
    other_key_expr(c, names, nn, &kx);
    tidei_sbuf body;
    sb_init(c, &body);
    tidei_sbuf_printf(&body, "%s \":\" %s", kx.p ? kx.p : "", v.p ? v.p : "");
    rule_ref_body(c, &x, &body);
    sb_done(c, &body);
    sb_done(c, &kx);
    sb_done(c, &v);
  }
  int has_x = x.n > 0;
  uint32_t base = c->n_rules; /* F_i = base + 2i, N_i = base + 2i + 1 */
  for (uint32_t i = 0; i <= ns; i++) {
    rule_new(c);
    rule_new(c);
  }
  for (uint32_t i = ns + 1; i-- > 0 && !c->status;) {
    tidei_sbuf f, n;
    sb_init(c, &f);
    sb_init(c, &n);
    if (has_x) {
      tidei_sbuf_printf(&f, "%s r%u | ", x.p, base + 2 * i + 1);
      tidei_sbuf_printf(&n, "(\",\" %s)* ", x.p);
    }
    if (i == ns) {
      tidei_sbuf_puts(&f, "\"\"");
      tidei_sbuf_puts(&n, "\"\"");
    } else {
      const tidei_json_member *m = names[slot_prop[i]];
      int required = in_required(req, m->key, m->key_len);
      tidei_sbuf kv;
      sb_init(c, &kv);
      tidei_sbuf key;
      sb_init(c, &key);
      tidei_json_write_string(&key, m->key, m->key_len);
      tidei_sbuf_put(&key, ":", 1);
      if (!key.oom) lit(&kv, key.p, key.n);
      sb_done(c, &key);
      tidei_sbuf_put(&kv, " ", 1);
      if (slot_prop[i] < (props ? props->n : 0) && m >= props->u.members &&
          m < props->u.members + props->n)
        sub_expr(c, &m->value, "properties", m->key, UINT32_MAX, &kv);
      else if (ap)
        sub_expr(c, ap, "additionalProperties", NULL, UINT32_MAX, &kv);
      else
        tidei_sbuf_puts(&kv, "j-value");
      tidei_sbuf_printf(&f, "(%s r%u", kv.p, base + 2 * i + 3);
      tidei_sbuf_printf(&n, "(\",\" %s r%u", kv.p, base + 2 * i + 3);
      if (!required) {
        tidei_sbuf_printf(&f, " | r%u", base + 2 * i + 2);
        tidei_sbuf_printf(&n, " | r%u", base + 2 * i + 3);
      }
      tidei_sbuf_put(&f, ")", 1);
      tidei_sbuf_put(&n, ")", 1);
      sb_done(c, &kv);
    }
    if (has_x && i == ns) { /* N_n ::= ("," X)* with nothing after */
    }
    rule_def(c, base + 2 * i, &f);
    rule_def(c, base + 2 * i + 1, &n);
    sb_done(c, &f);
    sb_done(c, &n);
  }
  tidei_sbuf_printf(e, "(\"{\" r%u \"}\")", base);
  sb_done(c, &x);
done:
  if (names) tidei_free(c->env, names, ((size_t)np + nr + 1) * sizeof *names);
  if (extra_req) tidei_free(c->env, extra_req, ((size_t)nr + 1) * sizeof *extra_req);
  if (slot_prop) tidei_free(c->env, slot_prop, ((size_t)np + nr + 1) * sizeof *slot_prop);
}

/* ---------------------------------------------------------------- types and keywords */

static int type_bit(const char *name) {
  static const struct {
    const char *n;
    int bits;
  } T[] = {
      {"null", T_NULL},  {"boolean", T_BOOL}, {"object", T_OBJ},          {"array", T_ARR},
      {"string", T_STR}, {"integer", T_INT},  {"number", T_INT | T_FRAC},
  };
  for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
    if (strcmp(name, T[i].n) == 0) return T[i].bits;
  return -1;
}

/* The "type" keyword as bits (T_ALL when absent); -1 when malformed. */
static int type_mask(const tidei_json *t) {
  if (!t) return T_ALL;
  if (t->type == TIDEI_JSON_STRING) return type_bit(t->u.s);
  if (t->type != TIDEI_JSON_ARRAY) return -1;
  int m = 0;
  for (uint32_t i = 0; i < t->n; i++) {
    if (t->u.items[i].type != TIDEI_JSON_STRING) return -1;
    int b = type_bit(t->u.items[i].u.s);
    if (b < 0) return -1;
    m |= b;
  }
  return m;
}

/* The type bit of a value (integral numbers, 1.0 included, are T_INT). */
static int value_bit(const tidei_json *v) {
  switch (v->type) {
  case TIDEI_JSON_NULL:
    return T_NULL;
  case TIDEI_JSON_FALSE:
  case TIDEI_JSON_TRUE:
    return T_BOOL;
  case TIDEI_JSON_STRING:
    return T_STR;
  case TIDEI_JSON_ARRAY:
    return T_ARR;
  case TIDEI_JSON_OBJECT:
    return T_OBJ;
  default: {
    dec d;
    if (!dec_parse(v->u.s, v->n, &d)) return T_FRAC; /* huge: treat as non-integer */
    return d.nf ? T_FRAC : T_INT;
  }
  }
}

enum { K_ANNOT = 0, K_DONE, K_UNSUP };
static const struct {
  const char *name;
  int kind, types;
} KEYWORDS[] = {
    {"type", K_DONE, T_ALL},
    {"enum", K_DONE, T_ALL},
    {"const", K_DONE, T_ALL},
    {"nullable", K_DONE, T_ALL},
    {"$ref", K_DONE, T_ALL},
    {"allOf", K_DONE, T_ALL},
    {"anyOf", K_DONE, T_ALL},
    {"oneOf", K_DONE, T_ALL},
    {"minimum", K_DONE, T_INT | T_FRAC},
    {"maximum", K_DONE, T_INT | T_FRAC},
    {"exclusiveMinimum", K_DONE, T_INT | T_FRAC},
    {"exclusiveMaximum", K_DONE, T_INT | T_FRAC},
    {"multipleOf", K_DONE, T_INT | T_FRAC},
    {"minLength", K_DONE, T_STR},
    {"maxLength", K_DONE, T_STR},
    {"pattern", K_DONE, T_STR},
    {"format", K_DONE, T_STR},
    {"items", K_DONE, T_ARR},
    {"prefixItems", K_DONE, T_ARR},
    {"additionalItems", K_DONE, T_ARR},
    {"minItems", K_DONE, T_ARR},
    {"maxItems", K_DONE, T_ARR},
    {"uniqueItems", K_DONE, T_ARR},
    {"properties", K_DONE, T_OBJ},
    {"required", K_DONE, T_OBJ},
    {"additionalProperties", K_DONE, T_OBJ},
    {"contains", K_UNSUP, T_ARR},
    {"minContains", K_UNSUP, T_ARR},
    {"maxContains", K_UNSUP, T_ARR},
    {"unevaluatedItems", K_UNSUP, T_ARR},
    {"minProperties", K_UNSUP, T_OBJ},
    {"maxProperties", K_UNSUP, T_OBJ},
    {"patternProperties", K_UNSUP, T_OBJ},
    {"dependencies", K_UNSUP, T_OBJ},
    {"dependentRequired", K_UNSUP, T_OBJ},
    {"dependentSchemas", K_UNSUP, T_OBJ},
    {"propertyNames", K_UNSUP, T_OBJ},
    {"unevaluatedProperties", K_UNSUP, T_OBJ},
    {"if", K_UNSUP, T_ALL},
    {"not", K_UNSUP, T_ALL},
    {"$dynamicRef", K_UNSUP, T_ALL},
    {"$recursiveRef", K_UNSUP, T_ALL},
    {"extends", K_UNSUP, T_ALL},
    {"disallow", K_UNSUP, T_ALL},
};

/* Kind of a keyword; unknown keywords and annotations do not constrain. */
static int keyword(const char *k, int *types) {
  for (size_t i = 0; i < sizeof KEYWORDS / sizeof KEYWORDS[0]; i++)
    if (strcmp(k, KEYWORDS[i].name) == 0) {
      *types = KEYWORDS[i].types;
      return KEYWORDS[i].kind;
    }
  *types = 0;
  return K_ANNOT;
}

/* Reports unsupported keywords of s relevant to the types allowed. */
static void scan_unsupported(conv *c, const tidei_json *s, int types) {
  for (uint32_t i = 0; i < s->n; i++) {
    const tidei_json_member *m = &s->u.members[i];
    int kt, kind = keyword(m->key, &kt);
    if (kind != K_UNSUP || !(kt & types)) continue;
    const tidei_json *v = &m->value;
    uint64_t n;
    if (strcmp(m->key, "if") == 0 && !get(s, "then") && !get(s, "else")) continue;
    if (strcmp(m->key, "patternProperties") == 0 && v->type == TIDEI_JSON_OBJECT && v->n == 0)
      continue;
    if ((strcmp(m->key, "dependencies") == 0 || strcmp(m->key, "dependentRequired") == 0 ||
         strcmp(m->key, "dependentSchemas") == 0) &&
        v->type == TIDEI_JSON_OBJECT && v->n == 0)
      continue;
    if (strcmp(m->key, "minProperties") == 0 && get_count(v, &n)) {
      /* distinct required names are distinct members */
      const tidei_json *r = get(s, "required");
      uint64_t distinct = 0;
      for (uint32_t a = 0; r && r->type == TIDEI_JSON_ARRAY && a < r->n; a++) {
        int dup = 0;
        for (uint32_t b = 0; b < a && !dup; b++)
          dup = tidei_json_equal(&r->u.items[a], &r->u.items[b]);
        distinct += !dup;
      }
      if (n <= distinct) continue;
    }
    if (strcmp(m->key, "maxProperties") == 0 && get_count(v, &n) &&
        is_false(get(s, "additionalProperties"))) {
      const tidei_json *p = get(s, "properties");
      if ((p && p->type == TIDEI_JSON_OBJECT ? p->n : 0) <= n) continue;
    }
    unsup(c, m->key);
  }
}

/* Nonzero if s has a keyword that constrains (not an annotation, not
** $defs/definitions). */
static int constrains(const tidei_json *s) {
  if (s->type != TIDEI_JSON_OBJECT) return !is_true(s);
  for (uint32_t i = 0; i < s->n; i++) {
    int t;
    if (keyword(s->u.members[i].key, &t) != K_ANNOT) return 1;
  }
  return 0;
}

/* ---------------------------------------------------------------- enum and const */

static uint64_t cp_count(const tidei_json *v) {
  uint64_t n = 0;
  for (uint32_t i = 0; i < v->n; i++) n += ((unsigned char)v->u.s[i] & 0xc0) != 0x80;
  return n;
}

/* 1 if v meets the keywords of s that apply to its type, 0 if not, -1
** (reported) if one cannot be checked here. */
static int value_ok(conv *c, const tidei_json *s, const tidei_json *v) {
  int bit = value_bit(v);
  for (uint32_t i = 0; i < s->n; i++) {
    const tidei_json_member *m = &s->u.members[i];
    int kt, kind = keyword(m->key, &kt);
    if (kind == K_ANNOT || !(kt & bit)) continue;
    const char *k = m->key;
    if (!strcmp(k, "type") || !strcmp(k, "enum") || !strcmp(k, "const") || !strcmp(k, "nullable"))
      continue;
    uint64_t n;
    if (!strcmp(k, "minLength") && get_count(&m->value, &n)) {
      if (cp_count(v) < n) return 0;
      continue;
    }
    if (!strcmp(k, "maxLength") && get_count(&m->value, &n)) {
      if (cp_count(v) > n) return 0;
      continue;
    }
    if (!strcmp(k, "minItems") && get_count(&m->value, &n)) {
      if (v->n < n) return 0;
      continue;
    }
    if (!strcmp(k, "maxItems") && get_count(&m->value, &n)) {
      if (v->n > n) return 0;
      continue;
    }
    if (!strcmp(k, "required") && m->value.type == TIDEI_JSON_ARRAY) {
      for (uint32_t j = 0; j < m->value.n; j++) {
        const tidei_json *r = &m->value.u.items[j];
        if (r->type != TIDEI_JSON_STRING || !find_member(v, r->u.s, r->n)) return 0;
      }
      continue;
    }
    if (!strcmp(k, "minimum") || !strcmp(k, "maximum") || !strcmp(k, "exclusiveMinimum") ||
        !strcmp(k, "exclusiveMaximum")) {
      dec x, b;
      int strict, up = k[0] == 'm' ? k[1] == 'a' : k[9] == 'M' && k[10] == 'a';
      if (!dec_parse(v->u.s, v->n, &x)) {
        unsup(c, "enum (huge number)");
        return -1;
      }
      int have = get_bound(c, s, up, &b, &strict);
      if (have < 0) return -1;
      int cmp = dec_cmp(&x, &b);
      if (have && (up ? (cmp > 0 || (strict && cmp == 0)) : (cmp < 0 || (strict && cmp == 0))))
        return 0;
      continue;
    }
    char what[120];
    snprintf(what, sizeof what, "%s with enum or const", k);
    unsup(c, what);
    return -1;
  }
  return 1;
}

static void enum_expr(conv *c, const tidei_json *s, int types, tidei_sbuf *e) {
  const tidei_json *en = get(s, "enum"), *cn = get(s, "const");
  if (en && en->type != TIDEI_JSON_ARRAY) {
    fail(c, TIDE_ERR_FORMAT, "enum at %s is not an array", c->path.n ? c->path.p : "/");
    return;
  }
  const tidei_json *vals = en ? en->u.items : cn;
  uint32_t n = en ? en->n : 1;
  int alts = 0;
  tidei_sbuf_put(e, "(", 1);
  for (uint32_t i = 0; i < n && !c->status; i++) {
    const tidei_json *v = &vals[i];
    if (en && cn && !tidei_json_equal(v, cn)) continue;
    int dup = 0;
    for (uint32_t j = 0; j < i && !dup; j++) dup = tidei_json_equal(&vals[j], v);
    if (dup) continue;
    if (!(value_bit(v) & types)) continue;
    if (value_ok(c, s, v) != 1) continue;
    if (alts++) tidei_sbuf_puts(e, " | ");
    lit_value(c, e, v);
  }
  if (is_true(get(s, "nullable")) && (types & T_NULL)) {
    int has_null = 0;
    for (uint32_t i = 0; i < n; i++) has_null |= vals[i].type == TIDEI_JSON_NULL;
    if (!has_null) {
      if (alts++) tidei_sbuf_puts(e, " | ");
      tidei_sbuf_puts(e, "\"null\"");
    }
  }
  if (!alts) tidei_sbuf_puts(e, "j-never");
  tidei_sbuf_put(e, ")", 1);
}

/* ---------------------------------------------------------------- synthetic schemas */

static int is_schema(const tidei_json *v) {
  return v->type == TIDEI_JSON_OBJECT || v->type == TIDEI_JSON_TRUE || v->type == TIDEI_JSON_FALSE;
}

typedef struct {
  tidei_json_member *m;
  uint32_t n, cap;
} mlist;

static void ml_set(conv *c, mlist *l, const char *key, const tidei_json *v) {
  for (uint32_t i = 0; i < l->n; i++)
    if (strcmp(l->m[i].key, key) == 0) {
      l->m[i].value = *v;
      return;
    }
  if (l->n == l->cap) {
    uint32_t nc = l->cap ? l->cap * 2 : 16;
    void *p = tidei_realloc(c->env, l->m, l->cap * sizeof *l->m, nc * sizeof *l->m);
    if (!p) {
      c->out.oom = 1;
      return;
    }
    l->m = p;
    l->cap = nc;
  }
  l->m[l->n].key = key;
  l->m[l->n].key_len = (uint32_t)strlen(key);
  l->m[l->n].value = *v;
  l->n++;
}

/* An object node (in the document's arena) with l's members; frees l. */
static const tidei_json *ml_finish(conv *c, mlist *l) {
  tidei_json *o = tidei_json_alloc(c->doc, sizeof *o);
  tidei_json_member *m = l->n ? tidei_json_alloc(c->doc, l->n * sizeof *m) : NULL;
  if (!o || (l->n && !m)) c->out.oom = 1;
  if (o) {
    o->type = TIDEI_JSON_OBJECT;
    o->n = m ? l->n : 0;
    if (m) memcpy(m, l->m, l->n * sizeof *m);
    o->u.members = m;
  }
  if (l->m) tidei_free(c->env, l->m, l->cap * sizeof *l->m);
  memset(l, 0, sizeof *l);
  return o ? o : &FALSE_NODE;
}

static const tidei_json *make_array(conv *c, const tidei_json *items, uint32_t n) {
  tidei_json *a = tidei_json_alloc(c->doc, sizeof *a);
  tidei_json *it = n ? tidei_json_alloc(c->doc, n * sizeof *it) : NULL;
  if (!a || (n && !it)) {
    c->out.oom = 1;
    return &FALSE_NODE;
  }
  a->type = TIDEI_JSON_ARRAY;
  a->n = n;
  if (n) memcpy(it, items, n * sizeof *it);
  a->u.items = it;
  return a;
}

/* x AND y as a schema (NULL stands for an absent schema, i.e. true). */
static const tidei_json *all_of2(conv *c, const tidei_json *x, const tidei_json *y) {
  if (!x || is_true(x) || (x->type == TIDEI_JSON_OBJECT && x->n == 0)) return y;
  if (!y || is_true(y) || (y->type == TIDEI_JSON_OBJECT && y->n == 0)) return x;
  if (is_false(x) || is_false(y)) return &FALSE_NODE;
  tidei_json two[2] = {*x, *y};
  mlist l = {NULL, 0, 0};
  ml_set(c, &l, "allOf", make_array(c, two, 2));
  return ml_finish(c, &l);
}

static const char *const MIN_KW[] = {"minimum", "minLength", "minItems", "minProperties", NULL};
static const char *const MAX_KW[] = {"maximum", "maxLength", "maxItems", "maxProperties", NULL};

static int in_list(const char *k, const char *const *list) {
  for (int i = 0; list[i]; i++)
    if (!strcmp(k, list[i])) return 1;
  return 0;
}

/* Combines one keyword present in both a and b; returns the merged value,
** NULL to drop it, or &FALSE_NODE when the conjunction is unsatisfiable
** (*never set). */
static const tidei_json *merge_kw(conv *c, const char *k, const tidei_json *va,
                                  const tidei_json *vb, int *never) {
  if (tidei_json_equal(va, vb)) return va;
  if (!strcmp(k, "type")) {
    int ma = type_mask(va), mb = type_mask(vb);
    if (ma < 0 || mb < 0) return va; /* reported when compiled */
    int m = ma & mb;
    static const char *const names[] = {"null", "boolean", "object", "array", "string"};
    tidei_json items[7];
    uint32_t n = 0;
    for (int i = 0; i < 5; i++)
      if (m & (1 << i)) {
        memset(&items[n], 0, sizeof items[n]);
        items[n].type = TIDEI_JSON_STRING;
        items[n].u.s = names[i];
        items[n].n = (uint32_t)strlen(names[i]);
        n++;
      }
    if (m & (T_INT | T_FRAC)) {
      const char *nm = m & T_FRAC ? "number" : "integer";
      memset(&items[n], 0, sizeof items[n]);
      items[n].type = TIDEI_JSON_STRING;
      items[n].u.s = nm;
      items[n].n = (uint32_t)strlen(nm);
      n++;
    }
    if (!n) {
      *never = 1;
      return NULL;
    }
    return make_array(c, items, n);
  }
  if (!strcmp(k, "required") && va->type == TIDEI_JSON_ARRAY && vb->type == TIDEI_JSON_ARRAY) {
    tidei_json *items = tidei_alloc(c->env, ((size_t)va->n + vb->n + 1) * sizeof *items);
    if (!items) {
      c->out.oom = 1;
      return va;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < va->n; i++) items[n++] = va->u.items[i];
    for (uint32_t i = 0; i < vb->n; i++) {
      int dup = 0;
      for (uint32_t j = 0; j < va->n && !dup; j++)
        dup = tidei_json_equal(&vb->u.items[i], &va->u.items[j]);
      if (!dup) items[n++] = vb->u.items[i];
    }
    const tidei_json *r = make_array(c, items, n);
    tidei_free(c->env, items, ((size_t)va->n + vb->n + 1) * sizeof *items);
    return r;
  }
  if (!strcmp(k, "enum") && va->type == TIDEI_JSON_ARRAY && vb->type == TIDEI_JSON_ARRAY) {
    tidei_json *items = tidei_alloc(c->env, ((size_t)va->n + 1) * sizeof *items);
    if (!items) {
      c->out.oom = 1;
      return va;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < va->n; i++) {
      int in = 0;
      for (uint32_t j = 0; j < vb->n && !in; j++)
        in = tidei_json_equal(&va->u.items[i], &vb->u.items[j]);
      if (in) items[n++] = va->u.items[i];
    }
    const tidei_json *r = make_array(c, items, n);
    tidei_free(c->env, items, ((size_t)va->n + 1) * sizeof *items);
    return r;
  }
  if (!strcmp(k, "const")) {
    *never = 1;
    return NULL;
  }
  int is_min = in_list(k, MIN_KW) || !strcmp(k, "exclusiveMinimum");
  int is_max = in_list(k, MAX_KW) || !strcmp(k, "exclusiveMaximum");
  if ((is_min || is_max) && va->type == TIDEI_JSON_NUMBER && vb->type == TIDEI_JSON_NUMBER) {
    dec x, y;
    if (!dec_parse(va->u.s, va->n, &x) || !dec_parse(vb->u.s, vb->n, &y)) return va;
    int cmp = dec_cmp(&x, &y);
    return (is_min ? cmp >= 0 : cmp <= 0) ? va : vb;
  }
  if (!strcmp(k, "items") && va->type != TIDEI_JSON_ARRAY && vb->type != TIDEI_JSON_ARRAY)
    return all_of2(c, va, vb);
  if (!strcmp(k, "nullable")) return is_true(va) && is_true(vb) ? va : &FALSE_NODE;
  if (!strcmp(k, "uniqueItems")) return is_true(va) ? va : vb;
  if (!strcmp(k, "anyOf") && va->type == TIDEI_JSON_ARRAY && vb->type == TIDEI_JSON_ARRAY) {
    if ((uint64_t)va->n * vb->n > 64) {
      unsup(c, "anyOf (too many combinations under allOf)");
      return va;
    }
    tidei_json *items = tidei_alloc(c->env, ((size_t)va->n * vb->n + 1) * sizeof *items);
    if (!items) {
      c->out.oom = 1;
      return va;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < va->n; i++)
      for (uint32_t j = 0; j < vb->n; j++)
        items[n++] = *all_of2(c, &va->u.items[i], &vb->u.items[j]);
    const tidei_json *r = make_array(c, items, n);
    tidei_free(c->env, items, ((size_t)va->n * vb->n + 1) * sizeof *items);
    return r;
  }
  int kt, kind = keyword(k, &kt);
  if (kind != K_DONE) return va; /* annotations; unsupported ones are reported when compiled */
  char what[120];
  snprintf(what, sizeof what, "%s (differing values under allOf)", k);
  unsup(c, what);
  return va;
}

/* a AND b, both flattened (no $ref or allOf at the top). */
static const tidei_json *merge(conv *c, const tidei_json *a, const tidei_json *b) {
  if (!spend(c, 1)) return &FALSE_NODE;
  if (is_false(a) || is_false(b)) return &FALSE_NODE;
  if (is_true(a)) return b;
  if (is_true(b)) return a;
  mlist l = {NULL, 0, 0};
  int never = 0;
  for (uint32_t i = 0; i < a->n; i++) {
    const tidei_json_member *m = &a->u.members[i];
    if (!strcmp(m->key, "properties") || !strcmp(m->key, "additionalProperties")) continue;
    const tidei_json *vb = get(b, m->key);
    const tidei_json *v = vb ? merge_kw(c, m->key, &m->value, vb, &never) : &m->value;
    if (v) ml_set(c, &l, m->key, v);
  }
  for (uint32_t i = 0; i < b->n; i++) {
    const tidei_json_member *m = &b->u.members[i];
    if (!strcmp(m->key, "properties") || !strcmp(m->key, "additionalProperties")) continue;
    if (!get(a, m->key)) ml_set(c, &l, m->key, &m->value);
  }
  const tidei_json *pa = get(a, "properties"), *pb = get(b, "properties");
  const tidei_json *apa = get(a, "additionalProperties"), *apb = get(b, "additionalProperties");
  if ((pa && pa->type != TIDEI_JSON_OBJECT) || (pb && pb->type != TIDEI_JSON_OBJECT)) {
    unsup(c, "properties (not an object)");
  } else if (pa || pb || apa || apb) {
    /* a key declared on one side only must meet the other side's
    ** additionalProperties; undeclared keys must meet both */
    mlist p = {NULL, 0, 0};
    for (uint32_t i = 0; pa && i < pa->n; i++) {
      const tidei_json_member *m = &pa->u.members[i];
      const tidei_json_member *o = find_member(pb, m->key, m->key_len);
      const tidei_json *v = all_of2(c, &m->value, o ? &o->value : apb);
      ml_set(c, &p, m->key, v ? v : &TRUE_NODE);
    }
    for (uint32_t i = 0; pb && i < pb->n; i++) {
      const tidei_json_member *m = &pb->u.members[i];
      if (find_member(pa, m->key, m->key_len)) continue;
      const tidei_json *v = all_of2(c, apa, &m->value);
      ml_set(c, &p, m->key, v ? v : &TRUE_NODE);
    }
    if (p.n)
      ml_set(c, &l, "properties", ml_finish(c, &p));
    else
      ml_finish(c, &p);
    const tidei_json *ap = all_of2(c, apa, apb);
    if (ap) ml_set(c, &l, "additionalProperties", ap);
  }
  const tidei_json *r = ml_finish(c, &l);
  return never ? &FALSE_NODE : r;
}

/* The node a local $ref points to; NULL (reported) otherwise. */
static const tidei_json *resolve(conv *c, const tidei_json *ref) {
  if (ref->type != TIDEI_JSON_STRING) {
    fail(c, TIDE_ERR_FORMAT, "$ref at %s is not a string", c->path.n ? c->path.p : "/");
    return NULL;
  }
  const char *s = ref->u.s;
  size_t n = ref->n;
  if (n == 0 || s[0] != '#' || (n > 1 && s[1] != '/')) {
    char what[160];
    snprintf(what, sizeof what, "$ref '%.100s' (not a local JSON pointer)", s);
    unsup(c, what);
    return NULL;
  }
  const tidei_json *at = c->root;
  size_t i = 1;
  char seg[512];
  while (i < n) {
    i++; /* '/' */
    size_t k = 0;
    while (i < n && s[i] != '/') {
      char ch = s[i++];
      if (ch == '~' && i < n && (s[i] == '0' || s[i] == '1'))
        ch = s[i++] == '0' ? '~' : '/';
      else if (ch == '%' && i + 1 < n && hexval(s[i]) >= 0 && hexval(s[i + 1]) >= 0) {
        ch = (char)(hexval(s[i]) * 16 + hexval(s[i + 1]));
        i += 2;
      }
      if (k + 1 >= sizeof seg) {
        unsup(c, "$ref (segment too long)");
        return NULL;
      }
      seg[k++] = ch;
    }
    seg[k] = 0;
    const tidei_json *next = NULL;
    if (at->type == TIDEI_JSON_OBJECT) {
      const tidei_json_member *m = find_member(at, seg, (uint32_t)k);
      next = m ? &m->value : NULL;
    } else if (at->type == TIDEI_JSON_ARRAY) {
      char *end;
      unsigned long idx = strtoul(seg, &end, 10);
      if (k && *end == 0 && idx < at->n) next = &at->u.items[idx];
    }
    if (!next) {
      fail(c, TIDE_ERR_FORMAT, "$ref '%.200s' at %s: no such location", s,
           c->path.n ? c->path.p : "/");
      return NULL;
    }
    at = next;
  }
  return at;
}

/* s with its top-level $ref and allOf merged in. */
static const tidei_json *flatten(conv *c, const tidei_json *s) {
  if (s->type != TIDEI_JSON_OBJECT) return s;
  const tidei_json *ref = get(s, "$ref"), *all = get(s, "allOf");
  if (!ref && !all) return s;
  if (c->flatten_depth >= MAX_FLATTEN) {
    unsup(c, "$ref/allOf (recursive or nested too deep to merge)");
    return &TRUE_NODE;
  }
  c->flatten_depth++;
  mlist l = {NULL, 0, 0};
  for (uint32_t i = 0; i < s->n; i++)
    if (strcmp(s->u.members[i].key, "$ref") && strcmp(s->u.members[i].key, "allOf"))
      ml_set(c, &l, s->u.members[i].key, &s->u.members[i].value);
  const tidei_json *acc = ml_finish(c, &l);
  if (ref) {
    const tidei_json *t = resolve(c, ref);
    if (t) {
      if (!is_schema(t))
        fail(c, TIDE_ERR_FORMAT, "$ref '%.200s' does not point to a schema", ref->u.s);
      else
        acc = merge(c, acc, flatten(c, t));
    }
  }
  if (all && all->type != TIDEI_JSON_ARRAY)
    fail(c, TIDE_ERR_FORMAT, "allOf at %s is not an array", c->path.n ? c->path.p : "/");
  for (uint32_t i = 0; all && all->type == TIDEI_JSON_ARRAY && i < all->n && !c->status; i++) {
    const tidei_json *b = &all->u.items[i];
    if (!is_schema(b)) {
      fail(c, TIDE_ERR_FORMAT, "allOf item at %s is not a schema", c->path.n ? c->path.p : "/");
      break;
    }
    acc = merge(c, acc, flatten(c, b));
  }
  c->flatten_depth--;
  return acc;
}

/* ---------------------------------------------------------------- oneOf disjointness */

/* The values an enum/const allows, or 0 when unrestricted. */
static int value_set(const tidei_json *f, const tidei_json **vals, uint32_t *n) {
  if (f->type != TIDEI_JSON_OBJECT) return 0;
  const tidei_json *en = get(f, "enum"), *cn = get(f, "const");
  if (cn) {
    *vals = cn;
    *n = 1;
    return 1;
  }
  if (en && en->type == TIDEI_JSON_ARRAY) {
    *vals = en->u.items;
    *n = en->n;
    return 1;
  }
  return 0;
}

/* Type bits an instance of the flattened schema f may have (a superset). */
static int possible_types(const tidei_json *f) {
  if (f->type == TIDEI_JSON_FALSE) return 0;
  if (f->type != TIDEI_JSON_OBJECT) return T_ALL;
  int m = type_mask(get(f, "type"));
  if (m < 0) m = T_ALL;
  if (is_true(get(f, "nullable"))) m |= T_NULL;
  const tidei_json *vals;
  uint32_t n;
  if (value_set(f, &vals, &n)) {
    int vm = 0;
    for (uint32_t i = 0; i < n; i++) vm |= value_bit(&vals[i]);
    if (vm & T_INT) vm |= T_FRAC; /* 1 and 1.0: keep number overlap conservative */
    m &= vm | (is_true(get(f, "nullable")) ? T_NULL : 0);
  }
  if (m & (T_INT | T_FRAC)) m |= (m & T_FRAC) ? T_INT : 0;
  return m;
}

static int values_disjoint(const tidei_json *x, const tidei_json *y) {
  const tidei_json *vx, *vy;
  uint32_t nx, ny;
  if (!value_set(x, &vx, &nx) || !value_set(y, &vy, &ny)) return 0;
  if (is_true(get(x, "nullable")) && is_true(get(y, "nullable"))) return 0;
  for (uint32_t i = 0; i < nx; i++)
    for (uint32_t j = 0; j < ny; j++)
      if (tidei_json_equal(&vx[i], &vy[j])) return 0;
  return 1;
}

/* Nonzero if no instance can satisfy both flattened schemas x and y (a
** sound, incomplete test: types, enum/const values, and a property that
** both require with disjoint values). */
static int disjoint(conv *c, const tidei_json *x, const tidei_json *y) {
  int common = possible_types(x) & possible_types(y);
  if (!common) return 1;
  if (values_disjoint(x, y)) return 1;
  if (common & ~T_OBJ) return 0;
  const tidei_json *rx = get(x, "required"), *ry = get(y, "required");
  const tidei_json *px = get(x, "properties"), *py = get(y, "properties");
  if (!rx || rx->type != TIDEI_JSON_ARRAY || !ry || !px || !py) return 0;
  for (uint32_t i = 0; i < rx->n; i++) {
    const tidei_json *k = &rx->u.items[i];
    if (k->type != TIDEI_JSON_STRING || !in_required(ry, k->u.s, k->n)) continue;
    const tidei_json_member *mx = find_member(px, k->u.s, k->n),
                            *my = find_member(py, k->u.s, k->n);
    if (!mx || !my || !is_schema(&mx->value) || !is_schema(&my->value)) continue;
    const tidei_json *fx = flatten(c, &mx->value), *fy = flatten(c, &my->value);
    if (!(possible_types(fx) & possible_types(fy)) || values_disjoint(fx, fy)) return 1;
  }
  return 0;
}

/* ---------------------------------------------------------------- compile */

/* The rule for a $ref target (or the root), compiled later from the
** worklist; path is its JSON pointer. */
static uint32_t ref_rule(conv *c, const tidei_json *t, const char *path, size_t path_len) {
  for (uint32_t i = 0; i < c->n_refs; i++)
    if (c->refs[i].node == t) return c->refs[i].rule;
  if (c->n_refs == c->cap_refs) {
    uint32_t nc = c->cap_refs ? c->cap_refs * 2 : 16;
    void *p = tidei_realloc(c->env, c->refs, c->cap_refs * sizeof *c->refs, nc * sizeof *c->refs);
    if (!p) {
      c->out.oom = 1;
      return 0;
    }
    c->refs = p;
    c->cap_refs = nc;
  }
  refent *r = &c->refs[c->n_refs];
  r->node = t;
  r->rule = rule_new(c);
  r->path = tidei_strdup(c->env, path, path_len);
  r->path_len = path_len;
  if (!r->path) {
    c->out.oom = 1;
    return 0;
  }
  c->n_refs++;
  return r->rule;
}

static void base_expr(conv *c, const tidei_json *s, tidei_sbuf *e) {
  int types = type_mask(get(s, "type"));
  if (types < 0) {
    unsup(c, "type (unknown type name or form)");
    return;
  }
  if (is_true(get(s, "nullable"))) types |= T_NULL;
  scan_unsupported(c, s, types);
  tidei_sbuf b;
  sb_init(c, &b);
  if (get(s, "enum") || get(s, "const"))
    enum_expr(c, s, types, &b);
  else {
    int alts = 0;
    for (int bit = 1; bit < T_ALL; bit <<= 1) {
      if (!(types & bit) || bit == T_FRAC || (bit == T_INT && !(types & (T_INT | T_FRAC))))
        continue;
      if (alts++) tidei_sbuf_puts(&b, " | ");
      switch (bit) {
      case T_NULL:
        tidei_sbuf_puts(&b, "\"null\"");
        break;
      case T_BOOL:
        tidei_sbuf_puts(&b, "\"true\" | \"false\"");
        break;
      case T_OBJ:
        object_expr(c, s, &b);
        break;
      case T_ARR:
        array_expr(c, s, &b);
        break;
      case T_STR:
        string_expr(c, s, &b);
        break;
      default:
        number_expr(c, s, (unsigned)types, &b);
        break;
      }
    }
    if (!alts) tidei_sbuf_puts(&b, "j-never");
  }
  rule_ref_body(c, e, &b);
  sb_done(c, &b);
}

static void combinator_expr(conv *c, const tidei_json *s, tidei_sbuf *e) {
  const tidei_json *any = get(s, "anyOf");
  const char *kw = any ? "anyOf" : "oneOf";
  const tidei_json *arr = any ? any : get(s, "oneOf");
  if (arr->type != TIDEI_JSON_ARRAY) {
    fail(c, TIDE_ERR_FORMAT, "%s at %s is not an array", kw, c->path.n ? c->path.p : "/");
    return;
  }
  mlist l = {NULL, 0, 0};
  for (uint32_t i = 0; i < s->n; i++)
    if (strcmp(s->u.members[i].key, kw)) ml_set(c, &l, s->u.members[i].key, &s->u.members[i].value);
  const tidei_json *rest = ml_finish(c, &l);
  int use_rest = constrains(rest);
  const tidei_json **br = tidei_calloc(c->env, (size_t)arr->n + 1, sizeof *br);
  if (!br) {
    c->out.oom = 1;
    return;
  }
  for (uint32_t i = 0; i < arr->n && !c->status; i++) {
    const tidei_json *b = &arr->u.items[i];
    if (!is_schema(b)) {
      fail(c, TIDE_ERR_FORMAT, "%s item at %s is not a schema", kw, c->path.n ? c->path.p : "/");
      break;
    }
    br[i] = use_rest ? merge(c, rest, flatten(c, b)) : b;
  }
  if (!any && !c->status) {
    for (uint32_t i = 0; i < arr->n && !c->status; i++) {
      const tidei_json *fi = flatten(c, br[i]);
      for (uint32_t j = i + 1; j < arr->n; j++)
        if (!disjoint(c, fi, flatten(c, br[j]))) {
          unsup(c, "oneOf (branches not provably disjoint)");
          i = arr->n;
          break;
        }
    }
  }
  if (!c->status) {
    tidei_sbuf_put(e, "(", 1);
    for (uint32_t i = 0; i < arr->n && !c->status; i++) {
      if (i) tidei_sbuf_puts(e, " | ");
      sub_expr(c, br[i], kw, NULL, i, e);
    }
    if (!arr->n) tidei_sbuf_puts(e, "j-never");
    tidei_sbuf_put(e, ")", 1);
  }
  tidei_free(c->env, br, ((size_t)arr->n + 1) * sizeof *br);
}

static void compile_expr(conv *c, const tidei_json *s, tidei_sbuf *e) {
  if (c->status || oom(c)) return;
  if (s->type == TIDEI_JSON_TRUE) {
    tidei_sbuf_puts(e, "j-value");
    return;
  }
  if (s->type == TIDEI_JSON_FALSE) {
    tidei_sbuf_puts(e, "j-never");
    return;
  }
  if (s->type != TIDEI_JSON_OBJECT) {
    fail(c, TIDE_ERR_FORMAT, "schema at %s is not an object or a boolean",
         c->path.n ? c->path.p : "/");
    return;
  }
  if (c->depth >= MAX_NEST) {
    fail(c, TIDE_ERR_ARG, "schema nested deeper than %d", MAX_NEST);
    return;
  }
  if (!spend(c, 1)) return;
  c->depth++;
  const tidei_json *ref = get(s, "$ref");
  int others = 0;
  for (uint32_t i = 0; i < s->n && !others; i++) {
    int t;
    others = strcmp(s->u.members[i].key, "$ref") && keyword(s->u.members[i].key, &t) != K_ANNOT;
  }
  if (ref && !others) {
    const tidei_json *t = resolve(c, ref);
    if (t && !is_schema(t))
      fail(c, TIDE_ERR_FORMAT, "$ref '%.200s' does not point to a schema", ref->u.s);
    else if (t)
      tidei_sbuf_printf(e, "r%u", ref_rule(c, t, ref->u.s + 1, ref->n - 1));
  } else if (ref || get(s, "allOf")) {
    const tidei_json *f = flatten(c, s);
    if (!c->status && (f->type != TIDEI_JSON_OBJECT || (!get(f, "$ref") && !get(f, "allOf"))))
      compile_expr(c, f, e);
  } else if (get(s, "anyOf") || get(s, "oneOf")) {
    combinator_expr(c, s, e);
  } else {
    base_expr(c, s, e);
  }
  c->depth--;
}

int tidei_json_schema_gbnf(tide_env *env, const char *json, size_t len, char **out,
                           size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  tidei_json_doc *doc;
  int st = tidei_json_parse(env, json, len, &doc);
  if (st) {
    char msg[TIDEI_ERRMSG];
    snprintf(msg, sizeof msg, "%s", tide_env_errmsg(env));
    return tidei_error(env, st, "json schema: %s", msg);
  }
  conv *c = tidei_calloc(env, 1, sizeof *c);
  if (!c) {
    tidei_json_free(doc);
    return TIDE_ERR_NOMEM;
  }
  c->env = env;
  c->doc = doc;
  c->root = tidei_json_root(doc);
  c->out.env = c->unsup.env = c->path.env = env;
  if (!is_schema(c->root))
    fail(c, TIDE_ERR_FORMAT, "the schema is not an object or a boolean");
  else {
    uint32_t root = ref_rule(c, c->root, "", 0);
    tidei_sbuf_printf(&c->out, "root ::= r%u\n", root);
    while (c->next_work < c->n_refs && !c->status && !oom(c)) {
      refent *r = &c->refs[c->next_work++];
      const tidei_json *node = r->node;
      uint32_t rule = r->rule;
      c->path.n = 0;
      tidei_sbuf_put(&c->path, r->path, r->path_len);
      tidei_sbuf body;
      sb_init(c, &body);
      compile_expr(c, node, &body);
      rule_def(c, rule, &body);
      sb_done(c, &body);
    }
    tidei_sbuf_puts(&c->out, LIBRARY);
  }
  oom(c);
  st = c->status;
  if (!st && c->n_unsup) {
    if (c->n_unsup > MAX_UNSUP)
      tidei_sbuf_printf(&c->unsup, ", and %d more", c->n_unsup - MAX_UNSUP);
    st = tidei_error(env, TIDE_ERR_UNSUPPORTED, "json schema: unsupported keywords: %s",
                     c->unsup.p ? c->unsup.p : "");
  }
  if (!st && !oom(c)) {
    *out = c->out.p;
    *out_len = c->out.n;
    /* hand the buffer over at its exact size + 1 */
    char *p = tidei_realloc(env, c->out.p, c->out.cap, c->out.n + 1);
    if (p) {
      *out = p;
      c->out.p = NULL;
      c->out.cap = 0;
    } else {
      *out = NULL;
      *out_len = 0;
      st = TIDE_ERR_NOMEM;
    }
  }
  st = st ? st : c->status;
  for (uint32_t i = 0; i < c->n_refs; i++)
    if (c->refs[i].path) tidei_free(env, c->refs[i].path, c->refs[i].path_len + 1);
  if (c->refs) tidei_free(env, c->refs, c->cap_refs * sizeof *c->refs);
  tidei_sbuf_free(&c->out);
  tidei_sbuf_free(&c->unsup);
  tidei_sbuf_free(&c->path);
  tidei_free(env, c, sizeof *c);
  tidei_json_free(doc);
  return st;
}

int tide_json_schema_compile(tide_env *env, const char *json, size_t len, tide_constraint **out) {
  if (!out) return tidei_error(env, TIDE_ERR_ARG, "tide_json_schema_compile: out is NULL");
  *out = NULL;
  char *text;
  size_t n;
  int st = tidei_json_schema_gbnf(env, json, len, &text, &n);
  if (st) return st;
  tidei_grammar *g;
  st = tidei_grammar_parse(env, text, n, "root", &g);
  tidei_free(env, text, n + 1);
  if (st) return st;
  return tidei_constraint_new(env, &tidei_grammar_engine, g, out);
}
