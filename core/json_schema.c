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
**
** Files: this one drives the conversion (strings, numbers, arrays,
** objects, $ref worklist) and owns the GBNF text helpers;
** json_schema_num.c does exact decimals and numeric ranges,
** json_schema_re.c code point sets and pattern regexes,
** json_schema_merge.c keyword sets (types, enum/const, allOf merging,
** $ref resolution, oneOf disjointness). json_schema.h is their shared
** private header.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "json_schema.h"

void tidei_js_fail(conv *c, int status, const char *fmt, ...) {
  if (c->status) return;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->status = tidei_error(c->env, status, "json schema: %s", msg);
}

int tidei_js_oom(conv *c) {
  if (!c->status && (c->out.oom || c->unsup.oom || c->path.oom))
    c->status = tidei_error(c->env, TIDE_ERR_NOMEM, "json schema: out of memory");
  return c->status != 0;
}

/* Records an unsupported keyword at the current path (once per path). */
void tidei_js_unsup(conv *c, const char *what) {
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

int tidei_js_spend(conv *c, int64_t n) {
  c->work += n;
  if (c->work > MAX_WORK && !c->status)
    tidei_js_fail(c, TIDE_ERR_ARG, "schema too large: expansion budget (%d steps) exceeded",
                  MAX_WORK);
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

/* ---------------------------------------------------------------- gbnf text */

void tidei_js_lit(tidei_sbuf *e, const char *s, size_t n) {
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

void tidei_js_lits(tidei_sbuf *e, const char *s) { tidei_js_lit(e, s, strlen(s)); }

/* A JSON value's canonical text as a GBNF literal. */
void tidei_js_lit_value(conv *c, tidei_sbuf *e, const tidei_json *v) {
  tidei_sbuf t = {c->env, NULL, 0, 0, 0};
  tidei_json_write(&t, v);
  if (t.oom)
    c->out.oom = 1;
  else
    tidei_js_lit(e, t.p, t.n);
  tidei_sbuf_free(&t);
}

static uint32_t rule_new(conv *c) {
  tidei_js_spend(c, 1);
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

void tidei_js_sb_init(conv *c, tidei_sbuf *b) {
  memset(b, 0, sizeof *b);
  b->env = c->env;
}
void tidei_js_sb_done(conv *c, tidei_sbuf *b) {
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
void tidei_js_rep(tidei_sbuf *e, const char *item, uint64_t min, uint64_t max) {
  tidei_sbuf_put(e, "(", 1);
  rep_exact(e, item, min);
  tidei_sbuf_put(e, " ", 1);
  if (max == INF)
    tidei_sbuf_printf(e, "(%s)*", item);
  else
    rep_upto(e, item, max - min);
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
    "j-pna ::= [\\u0080-\\U0010FFFF]\n"
    "j-ktail ::= j-pchar*\n"
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
  if (kmin && !tidei_jsnum_get_count(kmin, &mn)) {
    tidei_js_fail(c, TIDE_ERR_FORMAT, "minLength at %s is not a non-negative integer",
                  c->path.n ? c->path.p : "/");
    return;
  }
  if (kmax && !tidei_jsnum_get_count(kmax, &mx)) {
    tidei_js_fail(c, TIDE_ERR_FORMAT, "maxLength at %s is not a non-negative integer",
                  c->path.n ? c->path.p : "/");
    return;
  }
  if (pat && pat->type != TIDEI_JSON_STRING) {
    tidei_js_fail(c, TIDE_ERR_FORMAT, "pattern at %s is not a string", c->path.n ? c->path.p : "/");
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
      tidei_js_unsup(c, what);
      return;
    }
  } else if (fmt) {
    tidei_js_unsup(c, "format (not a string)");
    return;
  }
  if (pat && frule) {
    tidei_js_unsup(c, "pattern with format");
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
        tidei_js_unsup(c, "minLength/maxLength with format");
        return;
      }
    }
    tidei_sbuf_printf(e, "(\"\\\"\" %s \"\\\"\")", frule);
    return;
  }
  if (pat) {
    uint64_t rmn, rmx;
    tidei_sbuf t;
    tidei_js_sb_init(c, &t);
    if (!tidei_jsre_pattern_expr(c, pat, &t, &rmn, &rmx)) {
      tidei_js_sb_done(c, &t);
      return;
    }
    if (has_len && !(rmn >= mn && rmx <= mx)) {
      if (rmx < mn || rmn > mx)
        tidei_sbuf_puts(e, "j-never");
      else
        tidei_js_unsup(c, "minLength/maxLength with pattern");
      tidei_js_sb_done(c, &t);
      return;
    }
    tidei_sbuf_puts(e, "(\"\\\"\" ");
    tidei_sbuf_put(e, t.p, t.n);
    tidei_sbuf_puts(e, " \"\\\"\")");
    tidei_js_sb_done(c, &t);
    return;
  }
  if (!has_len) {
    tidei_sbuf_puts(e, "j-string");
    return;
  }
  tidei_sbuf_puts(e, "(\"\\\"\" ");
  if (mx != INF && mx > 0 && mx <= TIDEI_GRAMMAR_MAX_REPEAT) /* one rule: a counted lexeme */
    tidei_sbuf_printf(e, "j-char{%llu,%llu}", (unsigned long long)mn, (unsigned long long)mx);
  else
    tidei_js_rep(e, "j-char", mn, mx);
  tidei_sbuf_puts(e, " \"\\\"\")");
}

/* A bound keyword as a decimal; returns 0 if absent, -1 on error. Draft 4's
** boolean exclusiveMinimum/Maximum set *strict. */
int tidei_js_get_bound(conv *c, const tidei_json *s, int upper, dec *d, int *strict) {
  const tidei_json *k = get(s, upper ? "maximum" : "minimum");
  const tidei_json *x = get(s, upper ? "exclusiveMaximum" : "exclusiveMinimum");
  int have = 0;
  *strict = 0;
  if (k) {
    if (k->type != TIDEI_JSON_NUMBER) {
      tidei_js_fail(c, TIDE_ERR_FORMAT, "%s at %s is not a number", upper ? "maximum" : "minimum",
                    c->path.n ? c->path.p : "/");
      return -1;
    }
    if (!tidei_jsnum_dec_parse(k->u.s, k->n, d)) {
      tidei_js_unsup(c, upper ? "maximum (too many digits)" : "minimum (too many digits)");
      return -1;
    }
    have = 1;
    if (is_true(x)) *strict = 1;
  }
  if (x && x->type == TIDEI_JSON_NUMBER) {
    dec t;
    if (!tidei_jsnum_dec_parse(x->u.s, x->n, &t)) {
      tidei_js_unsup(c, "exclusive bound (too many digits)");
      return -1;
    }
    int cmp = have ? tidei_jsnum_dec_cmp(&t, d) : 0;
    if (!have || (upper ? cmp <= 0 : cmp >= 0)) {
      *d = t;
      *strict = 1;
      have = 1;
    }
  } else if (x && x->type != TIDEI_JSON_TRUE && x->type != TIDEI_JSON_FALSE) {
    tidei_js_fail(c, TIDE_ERR_FORMAT, "exclusive bound at %s is not a number",
                  c->path.n ? c->path.p : "/");
    return -1;
  }
  return have;
}

static void number_expr(conv *c, const tidei_json *s, unsigned types, tidei_sbuf *e) {
  dec lo, hi;
  int lx, hx;
  int hl = tidei_js_get_bound(c, s, 0, &lo, &lx), hh = tidei_js_get_bound(c, s, 1, &hi, &hx);
  if (hl < 0 || hh < 0) return;
  const tidei_json *mul = get(s, "multipleOf");
  if (mul) {
    dec m;
    if (mul->type == TIDEI_JSON_NUMBER && tidei_jsnum_dec_parse(mul->u.s, mul->n, &m) && !m.neg &&
        !m.nf && m.ni == 1 && m.ip[0] == '1')
      types &= ~(unsigned)T_FRAC;
    else {
      tidei_js_unsup(c, "multipleOf");
      return;
    }
  }
  if (!(types & T_FRAC)) {
    if (!hl && !hh) {
      tidei_sbuf_puts(e, "j-integer");
      return;
    }
    if ((hl && !tidei_jsnum_dec_ceil(&lo, lx)) || (hh && !tidei_jsnum_dec_floor(&hi, hx))) {
      tidei_js_unsup(c, "minimum/maximum (too many digits)");
      return;
    }
    tidei_jsnum_int_range(e, hl ? &lo : NULL, hh ? &hi : NULL);
    return;
  }
  if (!hl && !hh) {
    tidei_sbuf_puts(e, "j-number");
    return;
  }
  tidei_jsnum_num_range(e, hl ? &lo : NULL, lx, hh ? &hi : NULL, hx);
}

static void array_expr(conv *c, const tidei_json *s, tidei_sbuf *e) {
  uint64_t mn = 0, mx = INF;
  const tidei_json *kmin = get(s, "minItems"), *kmax = get(s, "maxItems");
  if ((kmin && !tidei_jsnum_get_count(kmin, &mn)) || (kmax && !tidei_jsnum_get_count(kmax, &mx))) {
    tidei_js_fail(c, TIDE_ERR_FORMAT, "minItems/maxItems at %s is not a non-negative integer",
                  c->path.n ? c->path.p : "/");
    return;
  }
  const tidei_json *pre = get(s, "prefixItems"), *items = get(s, "items"), *rest = items;
  const char *pre_kw = "prefixItems", *rest_kw = "items";
  if (pre && pre->type != TIDEI_JSON_ARRAY) {
    tidei_js_fail(c, TIDE_ERR_FORMAT, "prefixItems at %s is not an array",
                  c->path.n ? c->path.p : "/");
    return;
  }
  if (items && items->type == TIDEI_JSON_ARRAY) {
    if (pre) {
      tidei_js_unsup(c, "items (array form with prefixItems)");
      return;
    }
    pre = items, pre_kw = "items";
    rest = get(s, "additionalItems"), rest_kw = "additionalItems";
  }
  const tidei_json *uq = get(s, "uniqueItems");
  uint32_t k = pre ? pre->n : 0;
  if (is_false(rest) && mx > k) mx = k;
  if (is_true(uq) && mx > 1) {
    tidei_js_unsup(c, "uniqueItems");
    return;
  }
  if (mx < mn) {
    tidei_sbuf_puts(e, "j-never");
    return;
  }
  tidei_sbuf r;
  tidei_js_sb_init(c, &r);
  if (rest)
    sub_expr(c, rest, rest_kw, NULL, UINT32_MAX, &r);
  else
    tidei_sbuf_puts(&r, "j-value");
  if (r.oom) {
    tidei_js_sb_done(c, &r);
    return;
  }
  /* rest items after j items: ("," R){max(lo,0), hi} closing with "]" */
  tidei_sbuf more;
  tidei_js_sb_init(c, &more);
  tidei_sbuf_printf(&more, "\",\" %s", r.p);
  if (k == 0 || mx == 0) {
    if (mx == 0)
      tidei_sbuf_puts(e, "(\"[\" \"]\")");
    else {
      tidei_sbuf_puts(e, mn == 0 ? "(\"[\" (" : "(\"[\" ");
      tidei_sbuf_put(e, r.p, r.n);
      tidei_sbuf_put(e, " ", 1);
      tidei_js_rep(e, more.p, mn ? mn - 1 : 0, mx == INF ? INF : mx - 1);
      tidei_sbuf_puts(e, mn == 0 ? ")? \"]\")" : " \"]\")");
    }
    tidei_js_sb_done(c, &r);
    tidei_js_sb_done(c, &more);
    return;
  }
  /* prefix chain: C_j after j items, j = 1..min(k, mx) */
  uint32_t top = mx < k ? (uint32_t)mx : k;
  uint32_t base = c->n_rules;
  for (uint32_t j = 1; j <= top; j++) rule_new(c);
  for (uint32_t j = top; j >= 1; j--) {
    tidei_sbuf b;
    tidei_js_sb_init(c, &b);
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
      tidei_js_rep(&b, more.p, lo, mx == INF ? INF : mx - k);
      tidei_sbuf_puts(&b, " \"]\"");
    }
    if (!alts) tidei_sbuf_puts(&b, "j-never");
    rule_def(c, base + j - 1, &b);
    tidei_js_sb_done(c, &b);
  }
  tidei_sbuf_puts(e, "(\"[\" (");
  if (mn == 0) tidei_sbuf_puts(e, "\"]\" | ");
  sub_expr(c, &pre->u.items[0], pre_kw, NULL, 0, e);
  tidei_sbuf_printf(e, " r%u))", base);
  tidei_js_sb_done(c, &r);
  tidei_js_sb_done(c, &more);
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
      uint32_t cp = tidei_jsre_utf8_next(k, kl, &j), ch = t[at].child;
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
    tidei_js_sb_init(c, &b);
    int alts = 0;
    if (!t[i].terminal) {
      tidei_sbuf_puts(&b, "\"\"");
      alts++;
    }
    s->n = 0;
    for (uint32_t ch = t[i].child; ch != UINT32_MAX; ch = t[ch].sibling) {
      if (!tidei_jsre_cps_add(s, t[ch].cp, t[ch].cp)) {
        tidei_js_unsup(c, "additionalProperties (too many property names)");
        break;
      }
      char u[8], buf[8];
      size_t ul = 0;
      uint32_t cp = t[ch].cp;
      const char *esc = tidei_jsre_canon_escape(cp, buf);
      if (alts++) tidei_sbuf_puts(&b, " | ");
      if (esc)
        tidei_js_lits(&b, esc);
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
        tidei_js_lit(&b, u, ul);
      }
      tidei_sbuf_printf(&b, " r%u", base + ch);
    }
    /* ASCII-only branching: the non-ASCII part and the tail are library
    ** rules, so every trie node shares their automaton (the lexer builds a
    ** rule once per continuation) and the key stays one small lexeme */
    int ascii = 1;
    for (int k = 0; k < s->n; k++) ascii &= s->r[k][1] < 0x80;
    tidei_jsre_cps_complement(s);
    if (ascii) {
      int k = 0;
      while (k < s->n && s->r[k][0] < 0x80) k++;
      if (k && s->r[k - 1][1] >= 0x80) s->r[k - 1][1] = 0x7f;
      s->n = k;
    }
    if (alts++) tidei_sbuf_puts(&b, " | ");
    if (ascii) tidei_sbuf_put(&b, "(", 1);
    tidei_jsre_emit_cpset(&b, s);
    tidei_sbuf_puts(&b, ascii ? " | j-pna) j-ktail" : " j-ktail");
    rule_def(c, base + i, &b);
    tidei_js_sb_done(c, &b);
  }
  tidei_free(c->env, s, sizeof *s);
  tidei_free(c->env, t, cap * sizeof *t);
  tidei_sbuf_printf(e, "(\"\\\"\" r%u \"\\\"\")", base);
}

int tidei_js_in_required(const tidei_json *req, const char *k, uint32_t kl) {
  if (!req || req->type != TIDEI_JSON_ARRAY) return 0;
  for (uint32_t i = 0; i < req->n; i++)
    if (req->u.items[i].type == TIDEI_JSON_STRING && req->u.items[i].n == kl &&
        memcmp(req->u.items[i].u.s, k, kl) == 0)
      return 1;
  return 0;
}

const tidei_json_member *tidei_js_find_member(const tidei_json *obj, const char *k, uint32_t kl) {
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
** between and after. Rules, for slot i of n (X: one extra member, K_i:
** the member of slot i):
**   F_i ::= X N_i | S_i             nothing written yet
**   S_i ::= K_i N_i+1 | S_i+1       nothing written, no extra member first
**   N_i ::= ("," X)* T_i            something written
**   T_i ::= "," K_i N_i+1 | T_i+1   something written, no extra member first
** with the second alternatives of S_i and T_i only when slot i is optional,
** and S_n ::= "", T_n ::= "". The grammar is unambiguous: a run of extra
** members belongs to one N_i, so the Earley chart stays small however many
** there are (a grammar where every N_i had its own loop would let each run
** split across the following slots, items growing with the run).
*/
static void object_expr(conv *c, const tidei_json *s, tidei_sbuf *e) {
  const tidei_json *props = get(s, "properties"), *req = get(s, "required");
  const tidei_json *ap = get(s, "additionalProperties");
  if (props && props->type != TIDEI_JSON_OBJECT) {
    tidei_js_fail(c, TIDE_ERR_FORMAT, "properties at %s is not an object",
                  c->path.n ? c->path.p : "/");
    return;
  }
  if (req && req->type != TIDEI_JSON_ARRAY) {
    tidei_js_unsup(c, "required (not an array)");
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
    if (tidei_js_find_member(props, m->key, m->key_len) != m) continue; /* a later duplicate wins */
    names[nn++] = m;
    if (is_false(&m->value)) {
      if (tidei_js_in_required(req, m->key, m->key_len)) {
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
      tidei_js_unsup(c, "required (not strings)");
      goto done;
    }
    int seen = tidei_js_find_member(props, r->u.s, r->n) != NULL;
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
  tidei_js_sb_init(c, &x);
  if (!is_false(ap)) {
    tidei_sbuf v;
    tidei_js_sb_init(c, &v);
    if (ap)
      sub_expr(c, ap, "additionalProperties", NULL, UINT32_MAX, &v);
    else
      tidei_sbuf_puts(&v, "j-value");
    tidei_sbuf kx;
    tidei_js_sb_init(c, &kx);
    other_key_expr(c, names, nn, &kx);
    tidei_sbuf body;
    tidei_js_sb_init(c, &body);
    tidei_sbuf_printf(&body, "%s \":\" %s", kx.p ? kx.p : "", v.p ? v.p : "");
    rule_ref_body(c, &x, &body);
    tidei_js_sb_done(c, &body);
    tidei_js_sb_done(c, &kx);
    tidei_js_sb_done(c, &v);
  }
  int has_x = x.n > 0;
  uint32_t base = c->n_rules; /* F_i, N_i, T_i, S_i = base + 4i + 0, 1, 2, 3 */
  for (uint32_t i = 0; i <= ns; i++)
    for (int k = 0; k < 4; k++) rule_new(c);
  for (uint32_t i = ns + 1; i-- > 0 && !c->status;) {
    tidei_sbuf f, n, t, sk;
    tidei_js_sb_init(c, &f);
    tidei_js_sb_init(c, &n);
    tidei_js_sb_init(c, &t);
    tidei_js_sb_init(c, &sk);
    uint32_t r = base + 4 * i, next = r + 4;
    if (has_x) {
      tidei_sbuf_printf(&f, "%s r%u | ", x.p, r + 1);
      tidei_sbuf_printf(&n, "(\",\" %s)* ", x.p);
    }
    tidei_sbuf_printf(&f, "r%u", r + 3);
    tidei_sbuf_printf(&n, "r%u", r + 2);
    if (i == ns) {
      tidei_sbuf_puts(&t, "\"\"");
      tidei_sbuf_puts(&sk, "\"\"");
    } else {
      const tidei_json_member *m = names[slot_prop[i]];
      int required = tidei_js_in_required(req, m->key, m->key_len);
      tidei_sbuf kv;
      tidei_js_sb_init(c, &kv);
      tidei_sbuf key;
      tidei_js_sb_init(c, &key);
      tidei_json_write_string(&key, m->key, m->key_len);
      tidei_sbuf_put(&key, ":", 1);
      if (!key.oom) tidei_js_lit(&kv, key.p, key.n);
      tidei_js_sb_done(c, &key);
      tidei_sbuf_put(&kv, " ", 1);
      if (slot_prop[i] < (props ? props->n : 0) && m >= props->u.members &&
          m < props->u.members + props->n)
        sub_expr(c, &m->value, "properties", m->key, UINT32_MAX, &kv);
      else if (ap)
        sub_expr(c, ap, "additionalProperties", NULL, UINT32_MAX, &kv);
      else
        tidei_sbuf_puts(&kv, "j-value");
      tidei_sbuf_printf(&sk, "%s r%u", kv.p ? kv.p : "", next + 1);
      tidei_sbuf_printf(&t, "\",\" %s r%u", kv.p ? kv.p : "", next + 1);
      if (!required) {
        tidei_sbuf_printf(&sk, " | r%u", next + 3);
        tidei_sbuf_printf(&t, " | r%u", next + 2);
      }
      tidei_js_sb_done(c, &kv);
    }
    rule_def(c, r, &f);
    rule_def(c, r + 1, &n);
    rule_def(c, r + 2, &t);
    rule_def(c, r + 3, &sk);
    tidei_js_sb_done(c, &f);
    tidei_js_sb_done(c, &n);
    tidei_js_sb_done(c, &t);
    tidei_js_sb_done(c, &sk);
  }
  tidei_sbuf_printf(e, "(\"{\" r%u \"}\")", base);
  tidei_js_sb_done(c, &x);
done:
  if (names) tidei_free(c->env, names, ((size_t)np + nr + 1) * sizeof *names);
  if (extra_req) tidei_free(c->env, extra_req, ((size_t)nr + 1) * sizeof *extra_req);
  if (slot_prop) tidei_free(c->env, slot_prop, ((size_t)np + nr + 1) * sizeof *slot_prop);
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
  int types = tidei_jsmerge_type_mask(get(s, "type"));
  if (types < 0) {
    tidei_js_unsup(c, "type (unknown type name or form)");
    return;
  }
  if (is_true(get(s, "nullable"))) types |= T_NULL;
  tidei_jsmerge_scan_unsupported(c, s, types);
  tidei_sbuf b;
  tidei_js_sb_init(c, &b);
  if (get(s, "enum") || get(s, "const"))
    tidei_jsmerge_enum_expr(c, s, types, &b);
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
  tidei_js_sb_done(c, &b);
}

static void combinator_expr(conv *c, const tidei_json *s, tidei_sbuf *e) {
  const tidei_json *any = get(s, "anyOf");
  const char *kw = any ? "anyOf" : "oneOf";
  const tidei_json *arr = any ? any : get(s, "oneOf");
  if (arr->type != TIDEI_JSON_ARRAY) {
    tidei_js_fail(c, TIDE_ERR_FORMAT, "%s at %s is not an array", kw, c->path.n ? c->path.p : "/");
    return;
  }
  mlist l = {NULL, 0, 0};
  for (uint32_t i = 0; i < s->n; i++)
    if (strcmp(s->u.members[i].key, kw))
      tidei_jsmerge_ml_set(c, &l, s->u.members[i].key, &s->u.members[i].value);
  const tidei_json *rest = tidei_jsmerge_ml_finish(c, &l);
  int use_rest = tidei_jsmerge_constrains(rest);
  const tidei_json **br = tidei_calloc(c->env, (size_t)arr->n + 1, sizeof *br);
  if (!br) {
    c->out.oom = 1;
    return;
  }
  for (uint32_t i = 0; i < arr->n && !c->status; i++) {
    const tidei_json *b = &arr->u.items[i];
    if (!tidei_jsmerge_is_schema(b)) {
      tidei_js_fail(c, TIDE_ERR_FORMAT, "%s item at %s is not a schema", kw,
                    c->path.n ? c->path.p : "/");
      break;
    }
    br[i] = use_rest ? tidei_jsmerge_merge(c, rest, tidei_jsmerge_flatten(c, b)) : b;
  }
  if (!any && !c->status) {
    for (uint32_t i = 0; i < arr->n && !c->status; i++) {
      const tidei_json *fi = tidei_jsmerge_flatten(c, br[i]);
      for (uint32_t j = i + 1; j < arr->n; j++)
        if (!tidei_jsmerge_disjoint(c, fi, tidei_jsmerge_flatten(c, br[j]))) {
          tidei_js_unsup(c, "oneOf (branches not provably disjoint)");
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

/* Nonzero if s is a $ref and nothing else that constrains. */
static int pure_ref(const tidei_json *s) {
  if (s->type != TIDEI_JSON_OBJECT || !get(s, "$ref")) return 0;
  for (uint32_t i = 0; i < s->n; i++) {
    int t;
    if (strcmp(s->u.members[i].key, "$ref") &&
        tidei_jsmerge_keyword(s->u.members[i].key, &t) != K_ANNOT)
      return 0;
  }
  return 1;
}

/* Follows the chain of pure references from s (a pure $ref); a chain that
** comes back to a schema on it constrains nothing (a rule defined only by
** itself matches no text): that is an error naming the cycle. 1 if so. */
#define MAX_CHAIN 64
static int ref_cycle(conv *c, const tidei_json *s) {
  const tidei_json *node[MAX_CHAIN + 1];
  const tidei_json *ref[MAX_CHAIN + 1];
  int n = 0;
  node[0] = s;
  for (; n < MAX_CHAIN && pure_ref(node[n]); n++) {
    ref[n] = get(node[n], "$ref");
    const tidei_json *t = tidei_jsmerge_resolve(c, ref[n]);
    if (!t) return 0; /* the error is recorded */
    for (int j = 0; j <= n; j++) {
      if (node[j] != t) continue;
      tidei_sbuf m;
      tidei_js_sb_init(c, &m);
      /* node k's pointer is the reference that led to it */
      for (int k = j; k <= n; k++) tidei_sbuf_printf(&m, "%s -> ", ref[k ? k - 1 : n]->u.s);
      tidei_sbuf_printf(&m, "%s", ref[j ? j - 1 : n]->u.s);
      tidei_js_fail(c, TIDE_ERR_FORMAT, "$ref cycle %.400s constrains nothing",
                    m.p ? m.p : "");
      tidei_js_sb_done(c, &m);
      return 1;
    }
    node[n + 1] = t;
  }
  return 0;
}

static void compile_expr(conv *c, const tidei_json *s, tidei_sbuf *e) {
  if (c->status || tidei_js_oom(c)) return;
  if (s->type == TIDEI_JSON_TRUE) {
    tidei_sbuf_puts(e, "j-value");
    return;
  }
  if (s->type == TIDEI_JSON_FALSE) {
    tidei_sbuf_puts(e, "j-never");
    return;
  }
  if (s->type != TIDEI_JSON_OBJECT) {
    tidei_js_fail(c, TIDE_ERR_FORMAT, "schema at %s is not an object or a boolean",
                  c->path.n ? c->path.p : "/");
    return;
  }
  if (c->depth >= MAX_NEST) {
    tidei_js_fail(c, TIDE_ERR_ARG, "schema nested deeper than %d", MAX_NEST);
    return;
  }
  if (!tidei_js_spend(c, 1)) return;
  c->depth++;
  const tidei_json *ref = get(s, "$ref");
  int others = 0;
  for (uint32_t i = 0; i < s->n && !others; i++) {
    int t;
    others = strcmp(s->u.members[i].key, "$ref") &&
             tidei_jsmerge_keyword(s->u.members[i].key, &t) != K_ANNOT;
  }
  if (ref && !others) {
    const tidei_json *t = ref_cycle(c, s) ? NULL : tidei_jsmerge_resolve(c, ref);
    if (t && !tidei_jsmerge_is_schema(t))
      tidei_js_fail(c, TIDE_ERR_FORMAT, "$ref '%.200s' does not point to a schema", ref->u.s);
    else if (t)
      tidei_sbuf_printf(e, "r%u", ref_rule(c, t, ref->u.s + 1, ref->n - 1));
  } else if (ref || get(s, "allOf")) {
    const tidei_json *f = tidei_jsmerge_flatten(c, s);
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
  if (!tidei_jsmerge_is_schema(c->root))
    tidei_js_fail(c, TIDE_ERR_FORMAT, "the schema is not an object or a boolean");
  else {
    uint32_t root = ref_rule(c, c->root, "", 0);
    tidei_sbuf_printf(&c->out, "root ::= r%u\n", root);
    while (c->next_work < c->n_refs && !c->status && !tidei_js_oom(c)) {
      refent *r = &c->refs[c->next_work++];
      const tidei_json *node = r->node;
      uint32_t rule = r->rule;
      c->path.n = 0;
      tidei_sbuf_put(&c->path, r->path, r->path_len);
      tidei_sbuf body;
      tidei_js_sb_init(c, &body);
      compile_expr(c, node, &body);
      rule_def(c, rule, &body);
      tidei_js_sb_done(c, &body);
    }
    tidei_sbuf_puts(&c->out, LIBRARY);
  }
  tidei_js_oom(c);
  st = c->status;
  if (!st && c->n_unsup) {
    if (c->n_unsup > MAX_UNSUP)
      tidei_sbuf_printf(&c->unsup, ", and %d more", c->n_unsup - MAX_UNSUP);
    st = tidei_error(env, TIDE_ERR_UNSUPPORTED, "json schema: unsupported keywords: %s",
                     c->unsup.p ? c->unsup.p : "");
  }
  if (!st && !tidei_js_oom(c)) {
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
  if (!tidei_grammar_productive(g)) { /* a cycle the chain test above did not see */
    tidei_grammar_engine.destroy(env, g);
    return tidei_error(env, TIDE_ERR_FORMAT,
                       "json schema: a $ref cycle constrains nothing (no value can match)");
  }
  return tidei_constraint_new(env, &tidei_grammar_engine, g, out);
}
