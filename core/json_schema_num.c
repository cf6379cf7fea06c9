/*
** json_schema_num.c -- exact decimals and numeric ranges for the JSON
** Schema converter: bounds read exactly from the schema's number text, and
** GBNF for the integers or decimals in a range (minimum, maximum,
** exclusive bounds), digit by digit.
** Layer: core (part of json_schema.c; shared types in json_schema.h).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"

/* ---------------------------------------------------------------- decimals */

/* Parses a JSON number lexeme; 0 when it has too many digits. */
int tidei_jsnum_dec_parse(const char *s, size_t n, dec *d) {
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
int tidei_jsnum_get_count(const tidei_json *v, uint64_t *out) {
  dec d;
  if (!v || v->type != TIDEI_JSON_NUMBER) return 0;
  if (!tidei_jsnum_dec_parse(v->u.s, v->n, &d)) {
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

int tidei_jsnum_dec_cmp(const dec *a, const dec *b) {
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
int tidei_jsnum_dec_ceil(dec *x, int strict) {
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
int tidei_jsnum_dec_floor(dec *x, int strict) {
  x->neg = !x->neg;
  int ok = tidei_jsnum_dec_ceil(x, strict);
  x->neg = (x->ni || x->nf) ? !x->neg : 0;
  return ok;
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
    tidei_js_lit(e, lo, (size_t)n);
    return;
  }
  tidei_sbuf_put(e, "(", 1);
  if (i) {
    tidei_js_lit(e, lo, (size_t)i);
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
void tidei_jsnum_int_range(tidei_sbuf *e, const dec *lo, const dec *hi) {
  if (lo && hi && tidei_jsnum_dec_cmp(lo, hi) > 0) {
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
void tidei_jsnum_num_range(tidei_sbuf *e, const dec *lo, int lx, const dec *hi, int hx) {
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
