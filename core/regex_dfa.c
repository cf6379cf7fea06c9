/*
** regex_dfa.c -- the regex engine's NFA -> DFA step and its matcher state.
** Layer: core. Subset construction over byte equivalence classes (at most
** TIDEI_RE_MAX_DFA states), removal of the states that cannot reach a
** match, Moore partition refinement; then the engine table of constrain.h:
** the state is a stack of DFA state ids (push = one table lookup, pop =
** decrement).
*/
#include <stdlib.h>
#include <string.h>

#include "regex.h"

static int grow(tide_env *env, void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return TIDE_OK;
  size_t n = *cap ? *cap : 16;
  while (n < need) n *= 2;
  void *q = tidei_realloc(env, *p, *cap * elem, n * elem);
  if (!q) return TIDE_ERR_NOMEM;
  *p = q;
  *cap = n;
  return TIDE_OK;
}

/* ---------------------------------------------------------------- subset construction */

typedef struct {
  tide_env *env;
  const tidei_nstate *ns;
  int st;
  int32_t n_nfa;
  uint8_t cls[256];      /* byte -> equivalence class */
  uint8_t rep[256];      /* class -> a byte of it */
  int ncls;
  int32_t *mark, gen;    /* (n_nfa) closure stamps */
  int32_t *stk;          /* (n_nfa) */
  int32_t *tmp, n_tmp;   /* (n_nfa) the set being built */
  int32_t *pool; size_t pool_cap, pool_n;  /* all sets, concatenated */
  size_t *off; int32_t *len; size_t off_cap, len_cap;
  int32_t n_d;
  int32_t *tab; size_t tab_cap;            /* hash of sets -> DFA id, -1 empty */
  int32_t *trans; size_t trans_cap;        /* (n_d, ncls); -1 = no transition */
  uint8_t *acc; size_t acc_cap;            /* (n_d) */
} dc;

static void closure(dc *d, int32_t s) {
  int32_t sp = 0;
  if (d->mark[s] == d->gen) return;
  d->mark[s] = d->gen;
  d->stk[sp++] = s;
  while (sp > 0) {
    const tidei_nstate *q = &d->ns[d->stk[--sp]];
    if (q->kind == TIDEI_NFA_RANGE || q->kind == TIDEI_NFA_MATCH) {
      d->tmp[d->n_tmp++] = (int32_t)(q - d->ns);
      continue;
    }
    if (q->kind != TIDEI_NFA_EPS) continue;
    int32_t o[2] = { q->out, q->out2 };
    for (int k = 0; k < 2; k++)
      if (o[k] >= 0 && d->mark[o[k]] != d->gen) { d->mark[o[k]] = d->gen; d->stk[sp++] = o[k]; }
  }
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t hash_set(const int32_t *s, int32_t n) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t i = 0; i < n; i++) h = (h ^ (uint32_t)s[i]) * 1099511628211ull;
  return h ^ (uint64_t)n;
}

static int rehash(dc *d, size_t cap) {
  int32_t *t = tidei_alloc(d->env, cap * sizeof(int32_t));
  if (!t) return TIDE_ERR_NOMEM;
  for (size_t i = 0; i < cap; i++) t[i] = -1;
  for (int32_t k = 0; k < d->n_d; k++) {
    size_t h = (size_t)hash_set(d->pool + d->off[k], d->len[k]) & (cap - 1);
    while (t[h] >= 0) h = (h + 1) & (cap - 1);
    t[h] = k;
  }
  if (d->tab) tidei_free(d->env, d->tab, d->tab_cap * sizeof(int32_t));
  d->tab = t;
  d->tab_cap = cap;
  return TIDE_OK;
}

/* The DFA state of the set in tmp (sorted here), made if new; -1 on error. */
static int32_t dfa_state(dc *d) {
  qsort(d->tmp, (size_t)d->n_tmp, sizeof(int32_t), cmp_i32);
  size_t mask = d->tab_cap - 1, h = (size_t)hash_set(d->tmp, d->n_tmp) & mask;
  for (; d->tab[h] >= 0; h = (h + 1) & mask) {
    int32_t k = d->tab[h];
    if (d->len[k] == d->n_tmp &&
        !memcmp(d->pool + d->off[k], d->tmp, (size_t)d->n_tmp * sizeof(int32_t)))
      return k;
  }
  if (d->n_d >= TIDEI_RE_MAX_DFA) {
    d->st = tidei_error(d->env, TIDE_ERR_UNSUPPORTED,
                        "regex: automaton needs more than %d states (bound the repetitions or "
                        "simplify the pattern)",
                        TIDEI_RE_MAX_DFA);
    return -1;
  }
  size_t nd = (size_t)d->n_d + 1;
  if (grow(d->env, (void **)&d->pool, &d->pool_cap, d->pool_n + (size_t)d->n_tmp,
           sizeof(int32_t)) ||
      grow(d->env, (void **)&d->off, &d->off_cap, nd, sizeof(size_t)) ||
      grow(d->env, (void **)&d->len, &d->len_cap, nd, sizeof(int32_t)) ||
      grow(d->env, (void **)&d->acc, &d->acc_cap, nd, 1) ||
      grow(d->env, (void **)&d->trans, &d->trans_cap, nd * (size_t)d->ncls, sizeof(int32_t))) {
    d->st = TIDE_ERR_NOMEM;
    return -1;
  }
  int32_t k = d->n_d++;
  if (d->n_tmp) memcpy(d->pool + d->pool_n, d->tmp, (size_t)d->n_tmp * sizeof(int32_t));
  d->off[k] = d->pool_n;
  d->len[k] = d->n_tmp;
  d->pool_n += (size_t)d->n_tmp;
  d->acc[k] = 0;
  for (int32_t i = 0; i < d->n_tmp; i++) d->acc[k] |= d->ns[d->tmp[i]].kind == TIDEI_NFA_MATCH;
  d->tab[h] = k;
  if ((size_t)d->n_d * 2 > d->tab_cap && rehash(d, d->tab_cap * 2)) {
    d->st = TIDE_ERR_NOMEM;
    return -1;
  }
  return k;
}

static void byte_classes(dc *d) {
  uint8_t cut[257] = { 0 };
  for (int32_t i = 0; i < d->n_nfa; i++) {
    const tidei_nstate *q = &d->ns[i];
    if (q->kind != TIDEI_NFA_RANGE) continue;
    cut[q->lo] = 1;
    cut[q->hi + 1] = 1;
  }
  int k = -1;
  for (int b = 0; b < 256; b++) {
    if (b == 0 || cut[b]) d->rep[++k] = (uint8_t)b;
    d->cls[b] = (uint8_t)k;
  }
  d->ncls = k + 1;
}

static int determinise(dc *d, int32_t start) {
  size_t n = (size_t)d->n_nfa;
  if (!(d->mark = tidei_calloc(d->env, n, sizeof(int32_t))) ||
      !(d->stk = tidei_alloc(d->env, n * sizeof(int32_t))) ||
      !(d->tmp = tidei_alloc(d->env, n * sizeof(int32_t))) || rehash(d, 1024))
    return d->st = TIDE_ERR_NOMEM;
  byte_classes(d);
  d->gen = 1;
  d->n_tmp = 0;
  closure(d, start);
  if (dfa_state(d) < 0) return d->st;
  for (int32_t k = 0; k < d->n_d; k++) {
    if ((k & 63) == 63 && tidei_cancelled(d->env))
      return d->st = tidei_error(d->env, TIDE_ERR_CANCELLED, "regex: compile cancelled");
    for (int cc = 0; cc < d->ncls; cc++) {
      uint8_t r = d->rep[cc];
      d->gen++;
      d->n_tmp = 0;
      for (int32_t i = 0; i < d->len[k]; i++) {
        const tidei_nstate *q = &d->ns[d->pool[d->off[k] + (size_t)i]];
        if (q->kind == TIDEI_NFA_RANGE && q->lo <= r && r <= q->hi && q->out >= 0)
          closure(d, q->out);
      }
      int32_t t = -1;
      if (d->n_tmp && (t = dfa_state(d)) < 0) return d->st;
      d->trans[(size_t)k * (size_t)d->ncls + (size_t)cc] = t;
    }
  }
  return TIDE_OK;
}

/* ---------------------------------------------------------------- pruning and minimisation */

/* live[k]: an accepting state is reachable from k (reverse BFS). */
static int find_live(dc *d, uint8_t *live) {
  tide_env *env = d->env;
  size_t n = (size_t)d->n_d, m = n * (size_t)d->ncls;
  int32_t *first = tidei_calloc(env, n + 1, sizeof(int32_t)),
          *src = tidei_alloc(env, (m ? m : 1) * sizeof(int32_t));
  int32_t *q = tidei_alloc(env, n * sizeof(int32_t));
  int st = TIDE_OK;
  if (!first || !src || !q) { st = TIDE_ERR_NOMEM; goto done; }
  for (size_t i = 0; i < m; i++) if (d->trans[i] >= 0) first[d->trans[i] + 1]++;
  for (size_t k = 0; k < n; k++) first[k + 1] += first[k];
  for (size_t i = 0; i < m; i++) {
    int32_t t = d->trans[i];
    if (t >= 0) src[first[t]++] = (int32_t)(i / (size_t)d->ncls);
  }
  for (size_t k = n; k > 0; k--) first[k] = first[k - 1];
  first[0] = 0;
  size_t qh = 0, qt = 0;
  for (size_t k = 0; k < n; k++) { live[k] = d->acc[k]; if (live[k]) q[qt++] = (int32_t)k; }
  while (qh < qt) {
    int32_t t = q[qh++];
    for (int32_t j = first[t]; j < first[t + 1]; j++)
      if (!live[src[j]]) { live[src[j]] = 1; q[qt++] = src[j]; }
  }
done:
  if (first) tidei_free(env, first, (n + 1) * sizeof(int32_t));
  if (src) tidei_free(env, src, (m ? m : 1) * sizeof(int32_t));
  if (q) tidei_free(env, q, n * sizeof(int32_t));
  return st;
}

/* Moore refinement: part[k] (0 = dead) until the partition count is stable.
** Returns the number of partitions (including the dead one) or -1. */
static int32_t minimise(dc *d, const uint8_t *live, int32_t *part) {
  tide_env *env = d->env;
  size_t n = (size_t)d->n_d, w = (size_t)d->ncls + 1, cap = 64;
  while (cap < n * 2) cap *= 2;
  int32_t *sig = tidei_alloc(env, n * w * sizeof(int32_t)),
          *tab = tidei_alloc(env, cap * sizeof(int32_t));
  int32_t *np = tidei_alloc(env, n * sizeof(int32_t));
  int32_t count = -1, prev = 0;
  if (!sig || !tab || !np) goto done;
  for (size_t k = 0; k < n; k++) part[k] = !live[k] ? 0 : d->acc[k] ? 1 : 2;
  for (;;) {
    for (size_t i = 0; i < cap; i++) tab[i] = -1;
    int32_t next = 1;
    for (size_t k = 0; k < n; k++) {
      if (!live[k]) { np[k] = 0; continue; }
      int32_t *s = sig + k * w;
      s[0] = part[k];
      for (size_t cc = 0; cc + 1 < w; cc++) {
        int32_t t = d->trans[k * (w - 1) + cc];
        s[cc + 1] = t < 0 ? 0 : part[t];
      }
      size_t h = (size_t)hash_set(s, (int32_t)w) & (cap - 1);
      for (; tab[h] >= 0; h = (h + 1) & (cap - 1))
        if (!memcmp(sig + (size_t)tab[h] * w, s, w * sizeof(int32_t))) break;
      if (tab[h] < 0) { tab[h] = (int32_t)k; np[k] = next++; }
      else np[k] = np[tab[h]];
    }
    memcpy(part, np, n * sizeof(int32_t));
    if (next == prev) { count = next; break; }
    prev = next;
    if (tidei_cancelled(env)) {
      tidei_error(env, TIDE_ERR_CANCELLED, "regex: compile cancelled");
      count = -2;
      break;
    }
  }
done:
  if (sig) tidei_free(env, sig, n * w * sizeof(int32_t));
  if (tab) tidei_free(env, tab, cap * sizeof(int32_t));
  if (np) tidei_free(env, np, n * sizeof(int32_t));
  return count;
}

static void dfa_free(tide_env *env, tidei_dfa *f) {
  if (!f) return;
  size_t n = (size_t)f->n_states;
  if (f->next) tidei_free(env, f->next, n * 256 * sizeof(int32_t));
  if (f->accept) tidei_free(env, f->accept, n);
  if (f->final) tidei_free(env, f->final, n);
  if (f->loops) tidei_free(env, f->loops, n * 4 * sizeof(uint64_t));
  tidei_free(env, f, sizeof *f);
}

/* The minimised DFA from the subset construction (start = DFA state 0). */
static int finish_dfa(dc *d, tidei_dfa **out) {
  tide_env *env = d->env;
  size_t n = (size_t)d->n_d;
  uint8_t *live = tidei_alloc(env, n);
  int32_t *part = tidei_alloc(env, n * sizeof(int32_t)), *rep = NULL, *id = NULL;
  int32_t np = 0;
  tidei_dfa *f = NULL;
  int st = TIDE_OK;
  if (!live || !part || (st = find_live(d, live))) { st = st ? st : TIDE_ERR_NOMEM; goto done; }
  if (!live[0]) {
    st = tidei_error(env, TIDE_ERR_ARG, "regex: the pattern matches no string");
    goto done;
  }
  np = minimise(d, live, part);
  if (np < 0) { st = np == -1 ? TIDE_ERR_NOMEM : TIDE_ERR_CANCELLED; goto done; }
  /* new ids: dead 0, start 1, the rest in order of first appearance */
  rep = tidei_alloc(env, (size_t)np * sizeof(int32_t));
  id = tidei_alloc(env, (size_t)np * sizeof(int32_t));
  f = tidei_calloc(env, 1, sizeof *f);
  if (!rep || !id || !f) { st = TIDE_ERR_NOMEM; goto done; }
  for (int32_t p = 0; p < np; p++) id[p] = -1;
  id[0] = 0;
  id[part[0]] = 1;
  rep[1] = 0;
  int32_t nid = 2;
  for (size_t k = 0; k < n; k++)
    if (id[part[k]] < 0) { id[part[k]] = nid; rep[nid++] = (int32_t)k; }
  f->n_states = np;
  f->next = tidei_calloc(env, (size_t)np * 256, sizeof(int32_t));
  f->accept = tidei_calloc(env, (size_t)np, 1);
  f->final = tidei_calloc(env, (size_t)np, 1);
  f->loops = tidei_calloc(env, (size_t)np * 4, sizeof(uint64_t));
  if (!f->next || !f->accept || !f->final || !f->loops) { st = TIDE_ERR_NOMEM; goto done; }
  for (int32_t s = 1; s < np; s++) {
    size_t k = (size_t)rep[s];
    int any = 0;
    for (int b = 0; b < 256; b++) {
      int32_t t = d->trans[k * (size_t)d->ncls + d->cls[b]];
      int32_t v = t < 0 ? 0 : id[part[t]];
      f->next[(size_t)s * 256 + (size_t)b] = v;
      if (v == s) f->loops[(size_t)s * 4 + (size_t)(b >> 6)] |= 1ull << (b & 63);
      any |= v != 0;
    }
    f->accept[s] = d->acc[k];
    f->final[s] = d->acc[k] && !any;
  }
done:
  if (live) tidei_free(env, live, n);
  if (part) tidei_free(env, part, n * sizeof(int32_t));
  if (rep) tidei_free(env, rep, (size_t)np * sizeof(int32_t));
  if (id) tidei_free(env, id, (size_t)np * sizeof(int32_t));
  if (st) { dfa_free(env, f); f = NULL; }
  *out = f;
  return st;
}

static void dc_free(dc *d) {
  tide_env *env = d->env;
  size_t n = (size_t)d->n_nfa;
  if (d->mark) tidei_free(env, d->mark, n * sizeof(int32_t));
  if (d->stk) tidei_free(env, d->stk, n * sizeof(int32_t));
  if (d->tmp) tidei_free(env, d->tmp, n * sizeof(int32_t));
  if (d->pool) tidei_free(env, d->pool, d->pool_cap * sizeof(int32_t));
  if (d->off) tidei_free(env, d->off, d->off_cap * sizeof(size_t));
  if (d->len) tidei_free(env, d->len, d->len_cap * sizeof(int32_t));
  if (d->tab) tidei_free(env, d->tab, d->tab_cap * sizeof(int32_t));
  if (d->trans) tidei_free(env, d->trans, d->trans_cap * sizeof(int32_t));
  if (d->acc) tidei_free(env, d->acc, d->acc_cap);
}

int tidei_regex_dfa(tide_env *env, const tidei_nstate *ns, int32_t n, int32_t start,
                    tidei_dfa **out) {
  dc d;
  memset(&d, 0, sizeof d);
  d.env = env;
  d.ns = ns;
  d.n_nfa = n;
  *out = NULL;
  if (!determinise(&d, start)) d.st = finish_dfa(&d, out);
  dc_free(&d);
  return d.st;
}

/* ---------------------------------------------------------------- the engine */

static size_t re_state_size(const void *compiled, int32_t max_push) {
  (void)compiled;
  return sizeof(tidei_regex_state) + ((size_t)max_push + 1) * sizeof(int32_t);
}

static void re_init(const void *compiled, void *state, int32_t max_push) {
  (void)compiled;
  tidei_regex_state *s = state;
  s->n = 0;
  s->cap = max_push;
  s->ids[0] = 1;
}

static int re_push(const void *compiled, void *state, uint8_t byte) {
  const tidei_dfa *f = compiled;
  tidei_regex_state *s = state;
  if (s->n >= s->cap) return 0;
  int32_t t = f->next[(size_t)s->ids[s->n] * 256 + byte];
  if (!t) return 0;
  s->ids[++s->n] = t;
  return 1;
}

static void re_pop(const void *compiled, void *state, int32_t n) {
  (void)compiled;
  tidei_regex_state *s = state;
  tidei_assert(n >= 0 && n <= s->n);
  s->n -= n;
}

static void re_commit(const void *compiled, void *state) {
  (void)compiled;
  tidei_regex_state *s = state;
  s->ids[0] = s->ids[s->n];
  s->n = 0;
}

static int re_accepting(const void *compiled, const void *state) {
  const tidei_dfa *f = compiled;
  const tidei_regex_state *s = state;
  return f->accept[s->ids[s->n]];
}

static int re_finished(const void *compiled, const void *state) {
  const tidei_dfa *f = compiled;
  const tidei_regex_state *s = state;
  return f->final[s->ids[s->n]];
}

static void re_copy(const void *compiled, void *dst, const void *src, size_t size) {
  (void)compiled;
  const tidei_regex_state *s = src;
  size_t used = sizeof(tidei_regex_state) + ((size_t)s->n + 1) * sizeof(int32_t);
  memcpy(dst, src, used < size ? used : size);
}

static void re_destroy(tide_env *env, void *compiled) { dfa_free(env, compiled); }

const tidei_engine tidei_regex_engine = {
  "regex", re_state_size, re_init, re_push, re_pop, re_commit,
  re_accepting, re_finished, re_copy, re_destroy,
};
