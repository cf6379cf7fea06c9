/*
** json_schema_re.c -- code point sets and the schema's "pattern" regexes
** for the JSON Schema converter: a pattern (ECMA-262, search semantics)
** is read in the narrowest sense validators agree on and written as GBNF
** over the code points of a JSON string's content.
** Layer: core (part of json_schema.c; shared types in json_schema.h).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"

/* ---------------------------------------------------------------- code point sets */

int tidei_jsre_cps_add(cpset *s, uint32_t lo, uint32_t hi) {
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

void tidei_jsre_cps_complement(cpset *s) {
  cps_norm(s);
  cpset t;
  t.n = 0;
  uint32_t next = 0;
  for (int i = 0; i < s->n; i++) {
    if (s->r[i][0] > next) tidei_jsre_cps_add(&t, next, s->r[i][0] - 1);
    next = s->r[i][1] + 1;
  }
  if (next <= 0x10ffff) tidei_jsre_cps_add(&t, next, 0x10ffff);
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
const char *tidei_jsre_canon_escape(uint32_t cp, char buf[8]) {
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
void tidei_jsre_emit_cpset(tidei_sbuf *e, const cpset *s) {
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
      if (lo < 0x22) tidei_jsre_cps_add(&raw, lo, 0x21);
      lo = 0x23;
    }
    if (lo <= 0x5c && hi >= 0x5c) {
      if (lo < 0x5c) tidei_jsre_cps_add(&raw, lo, 0x5b);
      lo = 0x5d;
    }
    if (lo <= hi) tidei_jsre_cps_add(&raw, lo, hi);
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
      const char *esc = tidei_jsre_canon_escape(specials[i], buf);
      if (parts++) tidei_sbuf_puts(e, " | ");
      tidei_js_lits(e, esc);
    }
  }
  if (!parts) tidei_sbuf_puts(e, "j-never");
  tidei_sbuf_put(e, ")", 1);
}

uint32_t tidei_jsre_utf8_next(const unsigned char *s, size_t n, size_t *i) {
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
  if (cls == CL_DIGIT) tidei_jsre_cps_add(&t, '0', '9');
  if (cls == CL_WORD) {
    tidei_jsre_cps_add(&t, '0', '9');
    tidei_jsre_cps_add(&t, 'A', 'Z');
    tidei_jsre_cps_add(&t, 'a', 'z');
    tidei_jsre_cps_add(&t, '_', '_');
  }
  if (cls == CL_SPACE) {
    static const uint32_t sp[][2] = {{9, 13},          {32, 32},         {0xa0, 0xa0},
                                     {0x1680, 0x1680}, {0x2000, 0x200a}, {0x2028, 0x2029},
                                     {0x202f, 0x202f}, {0x205f, 0x205f}, {0x3000, 0x3000}};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++)
      tidei_jsre_cps_add(&t, sp[i][0], sp[i][1]);
    if (wide) {
      tidei_jsre_cps_add(&t, 0x1c, 0x1f);
      tidei_jsre_cps_add(&t, 0x85, 0x85);
      tidei_jsre_cps_add(&t, 0xfeff, 0xfeff);
    }
  } else if (wide)
    tidei_jsre_cps_add(&t, 0x80, 0x10ffff); /* Unicode digits and letters */
  if (negate) tidei_jsre_cps_complement(&t);
  for (int i = 0; i < t.n; i++) tidei_jsre_cps_add(s, t.r[i][0], t.r[i][1]);
}

int tidei_jsre_hexval(int c) {
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
      int h = tidei_jsre_hexval(rx_peek(r));
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
        int h = tidei_jsre_hexval(r->p[r->i + 2 + (size_t)k]);
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
      a = tidei_jsre_utf8_next(r->p, r->n, &r->i);
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
        b = tidei_jsre_utf8_next(r->p, r->n, &r->i);
      if (b < a) {
        rx_bad(r, "range out of order");
        return;
      }
    }
    if (!tidei_jsre_cps_add(&lo, (uint32_t)a, (uint32_t)b) ||
        !tidei_jsre_cps_add(&hi, (uint32_t)a, (uint32_t)b)) {
      rx_bad(r, "large class");
      return;
    }
  }
  if (negate) {
    tidei_jsre_cps_complement(&hi);
    tidei_jsre_emit_cpset(e, &hi);
  } else {
    cps_norm(&lo);
    tidei_jsre_emit_cpset(e, &lo);
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
    tidei_jsre_cps_add(&s, '\n', '\n');
    tidei_jsre_cps_add(&s, '\r', '\r');
    tidei_jsre_cps_add(&s, 0x2028, 0x2029);
    tidei_jsre_cps_complement(&s);
    tidei_jsre_emit_cpset(&a, &s);
  } else if (ch == '\\') {
    r->i++;
    int cls, neg;
    int64_t cp = rx_escape(r, 0, &cls, &neg);
    cpset s;
    s.n = 0;
    if (cp == -1)
      class_set(&s, cls, neg, 0);
    else if (cp >= 0)
      tidei_jsre_cps_add(&s, (uint32_t)cp, (uint32_t)cp);
    cps_norm(&s);
    if (cp != -2) tidei_jsre_emit_cpset(&a, &s);
  } else if (ch == '*' || ch == '+' || ch == '?' || ch == '{') {
    rx_bad(r, "quantifier without an atom");
  } else if (ch == '^' || ch == '$') {
    rx_bad(r, "anchor inside the pattern");
  } else {
    uint32_t cp = tidei_jsre_utf8_next(r->p, r->n, &r->i);
    cpset s;
    s.n = 0;
    tidei_jsre_cps_add(&s, cp, cp);
    tidei_jsre_emit_cpset(&a, &s);
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
    if (!a.oom) tidei_js_rep(e, a.p ? a.p : "\"\"", qm, qn);
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
int tidei_jsre_pattern_expr(conv *c, const tidei_json *pat, tidei_sbuf *e, uint64_t *mn,
                            uint64_t *mx) {
  rxp r;
  memset(&r, 0, sizeof r);
  r.p = (const unsigned char *)pat->u.s;
  r.n = pat->n;
  tidei_sbuf t;
  tidei_js_sb_init(c, &t);
  rx_alt(&r, &t, mn, mx, 1);
  if (!r.bad && r.i < r.n) rx_bad(&r, "unbalanced ')'");
  if (r.bad) {
    char msg[200];
    snprintf(msg, sizeof msg, "pattern (%s)", r.bad);
    tidei_js_unsup(c, msg);
    tidei_js_sb_done(c, &t);
    return 0;
  }
  tidei_sbuf_put(e, t.p, t.n);
  tidei_js_sb_done(c, &t);
  return 1;
}
