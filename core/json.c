/*
** json.c -- a strict JSON reader into an arena tree, and a compact writer.
** Layer: core. The JSON Schema converter reads schemas with it; the specs
** read fixture instances with it and write them back compactly.
**
** The reader is a loop over an explicit stack of open containers, so
** nesting costs heap (capped at TIDEI_JSON_MAX_DEPTH), never C stack.
** Values finished inside an open container wait in one pending vector and
** move into the arena as one array when the container closes.
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json.h"

/* ---------------------------------------------------------------- arena */

typedef struct block {
  struct block *next;
  size_t size, used;
} block;

struct tidei_json_doc {
  tide_env *env;
  block *blocks;
  tidei_json root;
};

void *tidei_json_alloc(tidei_json_doc *doc, size_t n) {
  n = (n + 15) & ~(size_t)15;
  block *b = doc->blocks;
  if (!b || b->size - b->used < n) {
    size_t size = n + 64 > 65536 ? n + 64 : 65536;
    b = tidei_alloc(doc->env, size);
    if (!b) return NULL;
    b->next = doc->blocks;
    b->size = size;
    b->used = (sizeof(block) + 15) & ~(size_t)15;
    doc->blocks = b;
  }
  void *p = (char *)b + b->used;
  b->used += n;
  memset(p, 0, n);
  return p;
}

void tidei_json_free(tidei_json_doc *doc) {
  if (!doc) return;
  tide_env *env = doc->env;
  for (block *b = doc->blocks, *next; b; b = next) {
    next = b->next;
    tidei_free(env, b, b->size);
  }
  tidei_free(env, doc, sizeof *doc);
  tidei_env_unref(env);
}

const tidei_json *tidei_json_root(const tidei_json_doc *doc) { return &doc->root; }

const tidei_json *tidei_json_get(const tidei_json *obj, const char *key) {
  if (!obj || obj->type != TIDEI_JSON_OBJECT) return NULL;
  size_t kl = strlen(key);
  for (uint32_t i = obj->n; i-- > 0;) /* the last duplicate wins, as in JS and Python */
    if (obj->u.members[i].key_len == kl && memcmp(obj->u.members[i].key, key, kl) == 0)
      return &obj->u.members[i].value;
  return NULL;
}

/* ---------------------------------------------------------------- sbuf */

static int sbuf_grow(tidei_sbuf *b, size_t extra) {
  if (b->oom) return 0;
  if (b->n + extra + 1 <= b->cap) return 1;
  size_t nc = b->cap ? b->cap : 256;
  while (nc < b->n + extra + 1) nc *= 2;
  char *p = tidei_realloc(b->env, b->p, b->cap, nc);
  if (!p) {
    b->oom = 1;
    return 0;
  }
  b->p = p;
  b->cap = nc;
  return 1;
}

void tidei_sbuf_put(tidei_sbuf *b, const char *s, size_t n) {
  if (!sbuf_grow(b, n)) return;
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

void tidei_sbuf_puts(tidei_sbuf *b, const char *s) { tidei_sbuf_put(b, s, strlen(s)); }

void tidei_sbuf_printf(tidei_sbuf *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  if ((size_t)k < sizeof tmp) {
    tidei_sbuf_put(b, tmp, (size_t)k);
    return;
  }
  if (!sbuf_grow(b, (size_t)k)) return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)k;
}

void tidei_sbuf_free(tidei_sbuf *b) {
  if (b->p) tidei_free(b->env, b->p, b->cap);
  b->p = NULL;
  b->n = b->cap = 0;
}

/* ---------------------------------------------------------------- reader */

typedef struct {
  int type;
  uint32_t start;
  size_t off;
} frame;

typedef struct {
  tide_env *env;
  tidei_json_doc *doc;
  const unsigned char *s;
  size_t len, pos;
  int status;
  tidei_json_member *pend; /* values of open containers */
  uint32_t n_pend, cap_pend;
  frame stack[TIDEI_JSON_MAX_DEPTH];
  int depth;
  tidei_sbuf str; /* scratch for decoding a string */
} reader;

static int rerr(reader *r, size_t off, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int rerr(reader *r, size_t off, const char *fmt, ...) {
  if (r->status) return r->status;
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return r->status = tidei_error(r->env, TIDE_ERR_FORMAT, "json offset %zu: %s", off, msg);
}

static void skip_ws(reader *r) {
  while (r->pos < r->len) {
    unsigned char c = r->s[r->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    r->pos++;
  }
}

static int peek(const reader *r) { return r->pos < r->len ? r->s[r->pos] : -1; }

static int hex4(reader *r, size_t at, uint32_t *v) {
  *v = 0;
  for (int i = 0; i < 4; i++) {
    if (at + (size_t)i >= r->len) return 0;
    int c = r->s[at + (size_t)i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return 0;
    *v = *v * 16 + (uint32_t)d;
  }
  return 1;
}

static void put_utf8(tidei_sbuf *b, uint32_t cp) {
  char u[4];
  size_t n;
  if (cp < 0x80)
    u[0] = (char)cp, n = 1;
  else if (cp < 0x800)
    u[0] = (char)(0xc0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
  else if (cp < 0x10000) {
    u[0] = (char)(0xe0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
  } else {
    u[0] = (char)(0xf0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
  }
  tidei_sbuf_put(b, u, n);
}

/* Length of a valid UTF-8 sequence at s[0..n), or 0. */
static int utf8_valid(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  int k = c < 0x80                ? 1
          : c >= 0xc2 && c < 0xe0 ? 2
          : c >= 0xe0 && c < 0xf0 ? 3
          : c >= 0xf0 && c < 0xf5 ? 4
                                  : 0;
  if (!k || (size_t)k > n) return 0;
  for (int i = 1; i < k; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  if (c == 0xe0 && s[1] < 0xa0) return 0;  /* overlong */
  if (c == 0xed && s[1] >= 0xa0) return 0; /* surrogate */
  if (c == 0xf0 && s[1] < 0x90) return 0;  /* overlong */
  if (c == 0xf4 && s[1] >= 0x90) return 0; /* > U+10FFFF */
  return k;
}

/* A string at r->pos ('"'); decoded into arena memory. */
static int read_string(reader *r, const char **out, uint32_t *out_len) {
  size_t start = r->pos++;
  r->str.n = 0;
  for (;;) {
    if (r->pos >= r->len) return rerr(r, start, "unterminated string");
    unsigned char c = r->s[r->pos];
    if (c == '"') {
      r->pos++;
      break;
    }
    if (c < 0x20) return rerr(r, r->pos, "control character 0x%02x in string", c);
    if (c == '\\') {
      size_t esc = r->pos;
      int e = r->pos + 1 < r->len ? r->s[r->pos + 1] : -1;
      r->pos += 2;
      const char *simple = strchr("\"\\/bfnrt", e > 0 ? e : 'x');
      if (e > 0 && simple) {
        static const char map[] = "\"\\/\b\f\n\r\t";
        char ch = map[simple - "\"\\/bfnrt"];
        tidei_sbuf_put(&r->str, &ch, 1);
        continue;
      }
      if (e != 'u') return rerr(r, esc, "invalid escape in string");
      uint32_t cp;
      if (!hex4(r, r->pos, &cp)) return rerr(r, esc, "invalid \\u escape");
      r->pos += 4;
      if (cp >= 0xdc00 && cp <= 0xdfff) return rerr(r, esc, "lone surrogate \\u%04x", cp);
      if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t lo;
        if (r->pos + 1 >= r->len || r->s[r->pos] != '\\' || r->s[r->pos + 1] != 'u' ||
            !hex4(r, r->pos + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
          return rerr(r, esc, "lone surrogate \\u%04x", cp);
        r->pos += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      }
      put_utf8(&r->str, cp);
      continue;
    }
    int k = utf8_valid(r->s + r->pos, r->len - r->pos);
    if (!k) return rerr(r, r->pos, "invalid UTF-8 in string");
    tidei_sbuf_put(&r->str, (const char *)r->s + r->pos, (size_t)k);
    r->pos += (size_t)k;
  }
  if (r->str.oom) return r->status = TIDE_ERR_NOMEM;
  if (r->str.n > UINT32_MAX - 1) return rerr(r, start, "string too long");
  char *p = tidei_json_alloc(r->doc, r->str.n + 1);
  if (!p) return r->status = TIDE_ERR_NOMEM;
  if (r->str.n) memcpy(p, r->str.p, r->str.n);
  *out = p;
  *out_len = (uint32_t)r->str.n;
  return 0;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int read_number(reader *r, tidei_json *v) {
  size_t start = r->pos;
  if (peek(r) == '-') r->pos++;
  if (peek(r) == '0')
    r->pos++;
  else if (is_digit(peek(r)))
    while (is_digit(peek(r))) r->pos++;
  else
    return rerr(r, start, "invalid number");
  if (peek(r) == '.') {
    r->pos++;
    if (!is_digit(peek(r))) return rerr(r, start, "invalid number");
    while (is_digit(peek(r))) r->pos++;
  }
  if (peek(r) == 'e' || peek(r) == 'E') {
    r->pos++;
    if (peek(r) == '+' || peek(r) == '-') r->pos++;
    if (!is_digit(peek(r))) return rerr(r, start, "invalid number");
    while (is_digit(peek(r))) r->pos++;
  }
  size_t n = r->pos - start;
  if (n > 1u << 20) return rerr(r, start, "number too long");
  char *p = tidei_json_alloc(r->doc, n + 1);
  if (!p) return r->status = TIDE_ERR_NOMEM;
  memcpy(p, r->s + start, n);
  v->type = TIDEI_JSON_NUMBER;
  v->u.s = p;
  v->n = (uint32_t)n;
  return 0;
}

static int pend_push(reader *r, const char *key, uint32_t key_len, size_t off) {
  if (r->n_pend == r->cap_pend) {
    uint32_t nc = r->cap_pend ? r->cap_pend * 2 : 64;
    if (nc > (1u << 28)) return rerr(r, off, "too many values");
    void *p = tidei_realloc(r->env, r->pend, r->cap_pend * sizeof *r->pend, nc * sizeof *r->pend);
    if (!p) return r->status = TIDE_ERR_NOMEM;
    r->pend = p;
    r->cap_pend = nc;
  }
  tidei_json_member *m = &r->pend[r->n_pend++];
  memset(m, 0, sizeof *m);
  m->key = key;
  m->key_len = key_len;
  return 0;
}

/* Reads "key": after '{' or ',' in an object and pushes its pending slot. */
static int read_key(reader *r) {
  skip_ws(r);
  if (peek(r) != '"') return rerr(r, r->pos, "expecting a string key");
  const char *k;
  uint32_t kl;
  size_t off = r->pos;
  if (read_string(r, &k, &kl)) return r->status;
  skip_ws(r);
  if (peek(r) != ':') return rerr(r, r->pos, "expecting ':' after key");
  r->pos++;
  return pend_push(r, k, kl, off);
}

/* Stores a finished value into the innermost open container (or the root). */
static int place(reader *r, const tidei_json *v) {
  if (r->depth == 0) {
    r->doc->root = *v;
    return 0;
  }
  frame *f = &r->stack[r->depth - 1];
  if (f->type == TIDEI_JSON_ARRAY && pend_push(r, NULL, 0, v->off)) return r->status;
  r->pend[r->n_pend - 1].value = *v;
  return 0;
}

/* Closes the innermost container: its pending values move to the arena. */
static int close_container(reader *r) {
  frame *f = &r->stack[--r->depth];
  uint32_t n = r->n_pend - f->start;
  tidei_json v;
  memset(&v, 0, sizeof v);
  v.type = f->type;
  v.n = n;
  v.off = f->off;
  if (f->type == TIDEI_JSON_OBJECT) {
    tidei_json_member *m = n ? tidei_json_alloc(r->doc, n * sizeof *m) : NULL;
    if (n && !m) return r->status = TIDE_ERR_NOMEM;
    if (n) memcpy(m, r->pend + f->start, n * sizeof *m);
    v.u.members = m;
  } else {
    tidei_json *items = n ? tidei_json_alloc(r->doc, n * sizeof *items) : NULL;
    if (n && !items) return r->status = TIDE_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) items[i] = r->pend[f->start + i].value;
    v.u.items = items;
  }
  r->n_pend = f->start;
  return place(r, &v);
}

/* After a value: ',' or the closer of the innermost container, repeatedly.
** Returns 1 when another value must be read, 0 when the document is done. */
static int after_value(reader *r) {
  while (r->depth > 0) {
    frame *f = &r->stack[r->depth - 1];
    skip_ws(r);
    int c = peek(r);
    int closer = f->type == TIDEI_JSON_OBJECT ? '}' : ']';
    if (c == ',') {
      r->pos++;
      if (f->type == TIDEI_JSON_OBJECT && read_key(r)) return 0;
      return 1;
    }
    if (c == closer) {
      r->pos++;
      if (close_container(r)) return 0;
      continue;
    }
    rerr(r, r->pos, "expecting ',' or '%c'", closer);
    return 0;
  }
  return 0;
}

static int read_value(reader *r) {
  skip_ws(r);
  int c = peek(r);
  size_t off = r->pos;
  tidei_json v;
  memset(&v, 0, sizeof v);
  v.off = off;
  if (c == '{' || c == '[') {
    if (r->depth >= TIDEI_JSON_MAX_DEPTH)
      return rerr(r, off, "nesting deeper than %d", TIDEI_JSON_MAX_DEPTH);
    r->pos++;
    frame *f = &r->stack[r->depth++];
    f->type = c == '{' ? TIDEI_JSON_OBJECT : TIDEI_JSON_ARRAY;
    f->start = r->n_pend;
    f->off = off;
    skip_ws(r);
    if (peek(r) == (c == '{' ? '}' : ']')) {
      r->pos++;
      return close_container(r) ? r->status : -1; /* -1: a value was finished */
    }
    if (c == '{') return read_key(r);
    return 0;
  }
  if (c == '"') {
    v.type = TIDEI_JSON_STRING;
    if (read_string(r, &v.u.s, &v.n)) return r->status;
  } else if (c == '-' || is_digit(c)) {
    if (read_number(r, &v)) return r->status;
  } else {
    static const char *const words[] = {"null", "false", "true"};
    int k = 0;
    while (k < 3 && !(r->len - r->pos >= strlen(words[k]) &&
                      memcmp(r->s + r->pos, words[k], strlen(words[k])) == 0))
      k++;
    if (k == 3) {
      if (c < 0) return rerr(r, off, "unexpected end of input");
      if (c >= 0x21 && c < 0x7f) return rerr(r, off, "unexpected '%c'", c);
      return rerr(r, off, "unexpected byte 0x%02x", c);
    }
    r->pos += strlen(words[k]);
    v.type = k; /* NULL, FALSE, TRUE in that order */
  }
  return place(r, &v) ? r->status : -1;
}

int tidei_json_parse(tide_env *env, const char *text, size_t len, tidei_json_doc **out) {
  *out = NULL;
  if (!text && len) return tidei_error(env, TIDE_ERR_ARG, "json: text is NULL");
  if (len > TIDEI_JSON_MAX_TEXT)
    return tidei_error(env, TIDE_ERR_ARG, "json: text of %zu bytes is above the limit (%u)", len,
                       TIDEI_JSON_MAX_TEXT);
  tidei_json_doc *doc = tidei_calloc(env, 1, sizeof *doc);
  if (!doc) return TIDE_ERR_NOMEM;
  doc->env = env;
  tidei_env_ref(env);
  reader *r = tidei_calloc(env, 1, sizeof *r);
  if (!r) {
    tidei_json_free(doc);
    return TIDE_ERR_NOMEM;
  }
  r->env = env;
  r->doc = doc;
  r->s = (const unsigned char *)text;
  r->len = len;
  r->str.env = env;
  for (;;) {
    int st = read_value(r);
    if (r->status) break;
    if (st == -1 && !after_value(r)) break; /* a value finished: continue or stop */
    if (r->status) break;
  }
  if (!r->status) {
    skip_ws(r);
    if (r->pos < r->len) rerr(r, r->pos, "unexpected text after the value");
  }
  int status = r->status;
  tidei_free(env, r->pend, r->cap_pend * sizeof *r->pend);
  tidei_sbuf_free(&r->str);
  tidei_free(env, r, sizeof *r);
  if (status) {
    tidei_json_free(doc);
    return status;
  }
  *out = doc;
  return TIDE_OK;
}

/* ---------------------------------------------------------------- writer */

void tidei_json_write_string(tidei_sbuf *b, const char *s, size_t n) {
  tidei_sbuf_put(b, "\"", 1);
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    tidei_sbuf_put(b, s + run, i - run);
    run = i + 1;
    const char *e = c == '"'    ? "\\\""
                    : c == '\\' ? "\\\\"
                    : c == '\b' ? "\\b"
                    : c == '\f' ? "\\f"
                    : c == '\n' ? "\\n"
                    : c == '\r' ? "\\r"
                    : c == '\t' ? "\\t"
                                : NULL;
    if (e)
      tidei_sbuf_puts(b, e);
    else
      tidei_sbuf_printf(b, "\\u%04x", c);
  }
  tidei_sbuf_put(b, s + run, n - run);
  tidei_sbuf_put(b, "\"", 1);
}

/* Recursive; parsed values nest at most TIDEI_JSON_MAX_DEPTH deep. */
void tidei_json_write(tidei_sbuf *b, const tidei_json *v) {
  switch (v->type) {
  case TIDEI_JSON_NULL:
    tidei_sbuf_puts(b, "null");
    break;
  case TIDEI_JSON_FALSE:
    tidei_sbuf_puts(b, "false");
    break;
  case TIDEI_JSON_TRUE:
    tidei_sbuf_puts(b, "true");
    break;
  case TIDEI_JSON_NUMBER:
    tidei_sbuf_put(b, v->u.s, v->n);
    break;
  case TIDEI_JSON_STRING:
    tidei_json_write_string(b, v->u.s, v->n);
    break;
  case TIDEI_JSON_ARRAY:
    tidei_sbuf_put(b, "[", 1);
    for (uint32_t i = 0; i < v->n; i++) {
      if (i) tidei_sbuf_put(b, ",", 1);
      tidei_json_write(b, &v->u.items[i]);
    }
    tidei_sbuf_put(b, "]", 1);
    break;
  default:
    tidei_sbuf_put(b, "{", 1);
    for (uint32_t i = 0; i < v->n; i++) {
      const tidei_json_member *m = &v->u.members[i];
      if (i) tidei_sbuf_put(b, ",", 1);
      tidei_json_write_string(b, m->key, m->key_len);
      tidei_sbuf_put(b, ":", 1);
      tidei_json_write(b, &m->value);
    }
    tidei_sbuf_put(b, "}", 1);
  }
}

/* ---------------------------------------------------------------- equality */

/* A number lexeme as sign, significant digits (no leading or trailing
** zeros) and the decimal exponent of the last digit; zero is "" and +. */
typedef struct {
  int neg;
  const char *d;
  size_t nd;
  int64_t exp;
  char buf[128];
} normnum;

static int norm_number(const char *s, size_t n, normnum *x) {
  size_t i = 0, k = 0;
  x->neg = n && s[0] == '-';
  if (x->neg) i++;
  int64_t exp = 0;
  int seen_dot = 0;
  for (; i < n && (is_digit(s[i]) || s[i] == '.'); i++) {
    if (s[i] == '.') {
      seen_dot = 1;
      continue;
    }
    if (k == 0 && s[i] == '0') {
      if (seen_dot) exp--;
      continue;
    }
    if (k >= sizeof x->buf) return 0;
    x->buf[k++] = s[i];
    if (seen_dot) exp--;
  }
  if (i < n) { /* exponent */
    i++;
    int eneg = s[i] == '-';
    if (s[i] == '-' || s[i] == '+') i++;
    int64_t e = 0;
    for (; i < n; i++) {
      if (e > 1000000000) return 0;
      e = e * 10 + (s[i] - '0');
    }
    exp += eneg ? -e : e;
  }
  while (k && x->buf[k - 1] == '0') {
    k--;
    exp++;
  }
  x->d = x->buf;
  x->nd = k;
  x->exp = k ? exp : 0;
  if (!k) x->neg = 0;
  return 1;
}

int tidei_json_equal(const tidei_json *a, const tidei_json *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case TIDEI_JSON_NUMBER: {
    normnum x, y;
    if (!norm_number(a->u.s, a->n, &x) || !norm_number(b->u.s, b->n, &y))
      return a->n == b->n && memcmp(a->u.s, b->u.s, a->n) == 0;
    return x.neg == y.neg && x.nd == y.nd && x.exp == y.exp && memcmp(x.d, y.d, x.nd) == 0;
  }
  case TIDEI_JSON_STRING:
    return a->n == b->n && memcmp(a->u.s, b->u.s, a->n) == 0;
  case TIDEI_JSON_ARRAY:
    if (a->n != b->n) return 0;
    for (uint32_t i = 0; i < a->n; i++)
      if (!tidei_json_equal(&a->u.items[i], &b->u.items[i])) return 0;
    return 1;
  case TIDEI_JSON_OBJECT:
    if (a->n != b->n) return 0;
    for (uint32_t i = 0; i < a->n; i++) {
      const tidei_json_member *m = &a->u.members[i];
      const tidei_json *o = NULL;
      for (uint32_t j = 0; j < b->n && !o; j++)
        if (b->u.members[j].key_len == m->key_len &&
            memcmp(b->u.members[j].key, m->key, m->key_len) == 0)
          o = &b->u.members[j].value;
      if (!o || !tidei_json_equal(&m->value, o)) return 0;
    }
    return 1;
  default:
    return 1;
  }
}
