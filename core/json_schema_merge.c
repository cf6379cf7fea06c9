/*
** json_schema_merge.c -- keyword sets for the JSON Schema converter:
** types, the keywords each type honours (and those reported unsupported),
** enum and const, allOf and $ref-with-siblings merged into synthetic
** schema objects, $ref resolution, and the oneOf disjointness proof.
** Layer: core (part of json_schema.c; shared types in json_schema.h).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"

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
int tidei_jsmerge_type_mask(const tidei_json *t) {
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
    if (!tidei_jsnum_dec_parse(v->u.s, v->n, &d)) return T_FRAC; /* huge: treat as non-integer */
    return d.nf ? T_FRAC : T_INT;
  }
  }
}

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
int tidei_jsmerge_keyword(const char *k, int *types) {
  for (size_t i = 0; i < sizeof KEYWORDS / sizeof KEYWORDS[0]; i++)
    if (strcmp(k, KEYWORDS[i].name) == 0) {
      *types = KEYWORDS[i].types;
      return KEYWORDS[i].kind;
    }
  *types = 0;
  return K_ANNOT;
}

/* Reports unsupported keywords of s relevant to the types allowed. */
void tidei_jsmerge_scan_unsupported(conv *c, const tidei_json *s, int types) {
  for (uint32_t i = 0; i < s->n; i++) {
    const tidei_json_member *m = &s->u.members[i];
    int kt, kind = tidei_jsmerge_keyword(m->key, &kt);
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
    if (strcmp(m->key, "minProperties") == 0 && tidei_jsnum_get_count(v, &n)) {
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
    if (strcmp(m->key, "maxProperties") == 0 && tidei_jsnum_get_count(v, &n) &&
        is_false(get(s, "additionalProperties"))) {
      const tidei_json *p = get(s, "properties");
      if ((p && p->type == TIDEI_JSON_OBJECT ? p->n : 0) <= n) continue;
    }
    tidei_js_unsup(c, m->key);
  }
}

/* Nonzero if s has a keyword that tidei_jsmerge_constrains (not an annotation, not
** $defs/definitions). */
int tidei_jsmerge_constrains(const tidei_json *s) {
  if (s->type != TIDEI_JSON_OBJECT) return !is_true(s);
  for (uint32_t i = 0; i < s->n; i++) {
    int t;
    if (tidei_jsmerge_keyword(s->u.members[i].key, &t) != K_ANNOT) return 1;
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
    int kt, kind = tidei_jsmerge_keyword(m->key, &kt);
    if (kind == K_ANNOT || !(kt & bit)) continue;
    const char *k = m->key;
    if (!strcmp(k, "type") || !strcmp(k, "enum") || !strcmp(k, "const") || !strcmp(k, "nullable"))
      continue;
    uint64_t n;
    if (!strcmp(k, "minLength") && tidei_jsnum_get_count(&m->value, &n)) {
      if (cp_count(v) < n) return 0;
      continue;
    }
    if (!strcmp(k, "maxLength") && tidei_jsnum_get_count(&m->value, &n)) {
      if (cp_count(v) > n) return 0;
      continue;
    }
    if (!strcmp(k, "minItems") && tidei_jsnum_get_count(&m->value, &n)) {
      if (v->n < n) return 0;
      continue;
    }
    if (!strcmp(k, "maxItems") && tidei_jsnum_get_count(&m->value, &n)) {
      if (v->n > n) return 0;
      continue;
    }
    if (!strcmp(k, "required") && m->value.type == TIDEI_JSON_ARRAY) {
      for (uint32_t j = 0; j < m->value.n; j++) {
        const tidei_json *r = &m->value.u.items[j];
        if (r->type != TIDEI_JSON_STRING || !tidei_js_find_member(v, r->u.s, r->n)) return 0;
      }
      continue;
    }
    if (!strcmp(k, "minimum") || !strcmp(k, "maximum") || !strcmp(k, "exclusiveMinimum") ||
        !strcmp(k, "exclusiveMaximum")) {
      dec x, b;
      int strict, up = k[0] == 'm' ? k[1] == 'a' : k[9] == 'M' && k[10] == 'a';
      if (!tidei_jsnum_dec_parse(v->u.s, v->n, &x)) {
        tidei_js_unsup(c, "enum (huge number)");
        return -1;
      }
      int have = tidei_js_get_bound(c, s, up, &b, &strict);
      if (have < 0) return -1;
      int cmp = tidei_jsnum_dec_cmp(&x, &b);
      if (have && (up ? (cmp > 0 || (strict && cmp == 0)) : (cmp < 0 || (strict && cmp == 0))))
        return 0;
      continue;
    }
    char what[120];
    snprintf(what, sizeof what, "%s with enum or const", k);
    tidei_js_unsup(c, what);
    return -1;
  }
  return 1;
}

void tidei_jsmerge_enum_expr(conv *c, const tidei_json *s, int types, tidei_sbuf *e) {
  const tidei_json *en = get(s, "enum"), *cn = get(s, "const");
  if (en && en->type != TIDEI_JSON_ARRAY) {
    tidei_js_fail(c, TIDE_ERR_FORMAT, "enum at %s is not an array", c->path.n ? c->path.p : "/");
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
    tidei_js_lit_value(c, e, v);
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

int tidei_jsmerge_is_schema(const tidei_json *v) {
  return v->type == TIDEI_JSON_OBJECT || v->type == TIDEI_JSON_TRUE || v->type == TIDEI_JSON_FALSE;
}

void tidei_jsmerge_ml_set(conv *c, mlist *l, const char *key, const tidei_json *v) {
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
const tidei_json *tidei_jsmerge_ml_finish(conv *c, mlist *l) {
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
  tidei_jsmerge_ml_set(c, &l, "allOf", make_array(c, two, 2));
  return tidei_jsmerge_ml_finish(c, &l);
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
    int ma = tidei_jsmerge_type_mask(va), mb = tidei_jsmerge_type_mask(vb);
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
    if (!tidei_jsnum_dec_parse(va->u.s, va->n, &x) || !tidei_jsnum_dec_parse(vb->u.s, vb->n, &y))
      return va;
    int cmp = tidei_jsnum_dec_cmp(&x, &y);
    return (is_min ? cmp >= 0 : cmp <= 0) ? va : vb;
  }
  if (!strcmp(k, "items") && va->type != TIDEI_JSON_ARRAY && vb->type != TIDEI_JSON_ARRAY)
    return all_of2(c, va, vb);
  if (!strcmp(k, "nullable")) return is_true(va) && is_true(vb) ? va : &FALSE_NODE;
  if (!strcmp(k, "uniqueItems")) return is_true(va) ? va : vb;
  if (!strcmp(k, "anyOf") && va->type == TIDEI_JSON_ARRAY && vb->type == TIDEI_JSON_ARRAY) {
    if ((uint64_t)va->n * vb->n > 64) {
      tidei_js_unsup(c, "anyOf (too many combinations under allOf)");
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
  int kt, kind = tidei_jsmerge_keyword(k, &kt);
  if (kind != K_DONE) return va; /* annotations; unsupported ones are reported when compiled */
  char what[120];
  snprintf(what, sizeof what, "%s (differing values under allOf)", k);
  tidei_js_unsup(c, what);
  return va;
}

/* a AND b, both flattened (no $ref or allOf at the top). */
const tidei_json *tidei_jsmerge_merge(conv *c, const tidei_json *a, const tidei_json *b) {
  if (!tidei_js_spend(c, 1)) return &FALSE_NODE;
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
    if (v) tidei_jsmerge_ml_set(c, &l, m->key, v);
  }
  for (uint32_t i = 0; i < b->n; i++) {
    const tidei_json_member *m = &b->u.members[i];
    if (!strcmp(m->key, "properties") || !strcmp(m->key, "additionalProperties")) continue;
    if (!get(a, m->key)) tidei_jsmerge_ml_set(c, &l, m->key, &m->value);
  }
  const tidei_json *pa = get(a, "properties"), *pb = get(b, "properties");
  const tidei_json *apa = get(a, "additionalProperties"), *apb = get(b, "additionalProperties");
  if ((pa && pa->type != TIDEI_JSON_OBJECT) || (pb && pb->type != TIDEI_JSON_OBJECT)) {
    tidei_js_unsup(c, "properties (not an object)");
  } else if (pa || pb || apa || apb) {
    /* a key declared on one side only must meet the other side's
    ** additionalProperties; undeclared keys must meet both */
    mlist p = {NULL, 0, 0};
    for (uint32_t i = 0; pa && i < pa->n; i++) {
      const tidei_json_member *m = &pa->u.members[i];
      const tidei_json_member *o = tidei_js_find_member(pb, m->key, m->key_len);
      const tidei_json *v = all_of2(c, &m->value, o ? &o->value : apb);
      tidei_jsmerge_ml_set(c, &p, m->key, v ? v : &TRUE_NODE);
    }
    for (uint32_t i = 0; pb && i < pb->n; i++) {
      const tidei_json_member *m = &pb->u.members[i];
      if (tidei_js_find_member(pa, m->key, m->key_len)) continue;
      const tidei_json *v = all_of2(c, apa, &m->value);
      tidei_jsmerge_ml_set(c, &p, m->key, v ? v : &TRUE_NODE);
    }
    if (p.n)
      tidei_jsmerge_ml_set(c, &l, "properties", tidei_jsmerge_ml_finish(c, &p));
    else
      tidei_jsmerge_ml_finish(c, &p);
    const tidei_json *ap = all_of2(c, apa, apb);
    if (ap) tidei_jsmerge_ml_set(c, &l, "additionalProperties", ap);
  }
  const tidei_json *r = tidei_jsmerge_ml_finish(c, &l);
  return never ? &FALSE_NODE : r;
}

/* The node a local $ref points to; NULL (reported) otherwise. */
const tidei_json *tidei_jsmerge_resolve(conv *c, const tidei_json *ref) {
  if (ref->type != TIDEI_JSON_STRING) {
    tidei_js_fail(c, TIDE_ERR_FORMAT, "$ref at %s is not a string", c->path.n ? c->path.p : "/");
    return NULL;
  }
  const char *s = ref->u.s;
  size_t n = ref->n;
  if (n == 0 || s[0] != '#' || (n > 1 && s[1] != '/')) {
    char what[160];
    snprintf(what, sizeof what, "$ref '%.100s' (not a local JSON pointer)", s);
    tidei_js_unsup(c, what);
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
      else if (ch == '%' && i + 1 < n && tidei_jsre_hexval(s[i]) >= 0 &&
               tidei_jsre_hexval(s[i + 1]) >= 0) {
        ch = (char)(tidei_jsre_hexval(s[i]) * 16 + tidei_jsre_hexval(s[i + 1]));
        i += 2;
      }
      if (k + 1 >= sizeof seg) {
        tidei_js_unsup(c, "$ref (segment too long)");
        return NULL;
      }
      seg[k++] = ch;
    }
    seg[k] = 0;
    const tidei_json *next = NULL;
    if (at->type == TIDEI_JSON_OBJECT) {
      const tidei_json_member *m = tidei_js_find_member(at, seg, (uint32_t)k);
      next = m ? &m->value : NULL;
    } else if (at->type == TIDEI_JSON_ARRAY) {
      char *end;
      unsigned long idx = strtoul(seg, &end, 10);
      if (k && *end == 0 && idx < at->n) next = &at->u.items[idx];
    }
    if (!next) {
      tidei_js_fail(c, TIDE_ERR_FORMAT, "$ref '%.200s' at %s: no such location", s,
                    c->path.n ? c->path.p : "/");
      return NULL;
    }
    at = next;
  }
  return at;
}

/* s with its top-level $ref and allOf merged in. */
const tidei_json *tidei_jsmerge_flatten(conv *c, const tidei_json *s) {
  if (s->type != TIDEI_JSON_OBJECT) return s;
  const tidei_json *ref = get(s, "$ref"), *all = get(s, "allOf");
  if (!ref && !all) return s;
  if (c->flatten_depth >= MAX_FLATTEN) {
    tidei_js_unsup(c, "$ref/allOf (recursive or nested too deep to merge)");
    return &TRUE_NODE;
  }
  c->flatten_depth++;
  mlist l = {NULL, 0, 0};
  for (uint32_t i = 0; i < s->n; i++)
    if (strcmp(s->u.members[i].key, "$ref") && strcmp(s->u.members[i].key, "allOf"))
      tidei_jsmerge_ml_set(c, &l, s->u.members[i].key, &s->u.members[i].value);
  const tidei_json *acc = tidei_jsmerge_ml_finish(c, &l);
  if (ref) {
    const tidei_json *t = tidei_jsmerge_resolve(c, ref);
    if (t) {
      if (!tidei_jsmerge_is_schema(t))
        tidei_js_fail(c, TIDE_ERR_FORMAT, "$ref '%.200s' does not point to a schema", ref->u.s);
      else
        acc = tidei_jsmerge_merge(c, acc, tidei_jsmerge_flatten(c, t));
    }
  }
  if (all && all->type != TIDEI_JSON_ARRAY)
    tidei_js_fail(c, TIDE_ERR_FORMAT, "allOf at %s is not an array", c->path.n ? c->path.p : "/");
  for (uint32_t i = 0; all && all->type == TIDEI_JSON_ARRAY && i < all->n && !c->status; i++) {
    const tidei_json *b = &all->u.items[i];
    if (!tidei_jsmerge_is_schema(b)) {
      tidei_js_fail(c, TIDE_ERR_FORMAT, "allOf item at %s is not a schema",
                    c->path.n ? c->path.p : "/");
      break;
    }
    acc = tidei_jsmerge_merge(c, acc, tidei_jsmerge_flatten(c, b));
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
  int m = tidei_jsmerge_type_mask(get(f, "type"));
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
int tidei_jsmerge_disjoint(conv *c, const tidei_json *x, const tidei_json *y) {
  int common = possible_types(x) & possible_types(y);
  if (!common) return 1;
  if (values_disjoint(x, y)) return 1;
  if (common & ~T_OBJ) return 0;
  const tidei_json *rx = get(x, "required"), *ry = get(y, "required");
  const tidei_json *px = get(x, "properties"), *py = get(y, "properties");
  if (!rx || rx->type != TIDEI_JSON_ARRAY || !ry || !px || !py) return 0;
  for (uint32_t i = 0; i < rx->n; i++) {
    const tidei_json *k = &rx->u.items[i];
    if (k->type != TIDEI_JSON_STRING || !tidei_js_in_required(ry, k->u.s, k->n)) continue;
    const tidei_json_member *mx = tidei_js_find_member(px, k->u.s, k->n),
                            *my = tidei_js_find_member(py, k->u.s, k->n);
    if (!mx || !my || !tidei_jsmerge_is_schema(&mx->value) || !tidei_jsmerge_is_schema(&my->value))
      continue;
    const tidei_json *fx = tidei_jsmerge_flatten(c, &mx->value),
                     *fy = tidei_jsmerge_flatten(c, &my->value);
    if (!(possible_types(fx) & possible_types(fy)) || values_disjoint(fx, fy)) return 1;
  }
  return 0;
}
