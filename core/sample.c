/*
** sample.c -- the sampler chain: penalties, logit bias, temperature, top-k,
** top-p, min-p, typical, and the final seeded categorical (or greedy) pick.
** Layer: core. Semantics follow llama.cpp's llama-sampling.cpp; the code is
** our own.
**
** How a call runs: the n_vocab logits are copied into a candidate list
** (id, logit) held in scratch sized at tide_sampler_new; each stage in push
** order transforms or shrinks that list; sample() then picks from what is
** left, apply() writes it back (-INFINITY for every id that was dropped).
** Nothing is allocated while sampling.
**
** Choices the header leaves open (docs/c-api.md should repeat them):
**  - Ranking everywhere is "larger logit first, then lower id", so every
**    tie (argmax, top-k boundary, greedy) resolves to the lowest id.
**  - Input logits may be -INFINITY (masked ids); NaN or +INFINITY is a
**    TIDE_ERR_ARG naming the id. sample() fails with TIDE_ERR_ARG when every
**    surviving candidate is -INFINITY (nothing can be drawn).
**  - PENALTIES with n = -1 ("all") keeps the last SAMPLE_MAX_WINDOW (32768)
**    accepted tokens; an explicit n above that is an error. Each penalty
**    stage has its own window; tide_sampler_accept feeds all of them and
**    ignores ids outside [0, n_vocab).
**  - TEMPERATURE with a <= 0 keeps only the argmax of the candidates at that
**    point of the chain (llama.cpp sets the others to -inf), so the pick is
**    greedy. Positive a divides, as llama.cpp.
**  - TOP_P, MIN_P, TYPICAL treat min_keep n <= 0 as 1. Weights are
**    exp(logit - max), summed in double; top_p keeps while the running mass
**    is < a (>= a stops), typical while it is <= a, as llama.cpp. Typical
**    breaks ties in its score by lower id.
**  - Cost: top_k is a k-heap, O(n log k); top_p and typical find their
**    cut by a quickselect on mass (expected O(n), no sort of the vocabulary;
**    llama.cpp sorts); min_p is one pass. Survivors are not kept sorted, so
**    the draw order (and hence which token a seed gives) is tide's own.
**  - tide_sampler_clone copies the RNG state too: a clone draws exactly the
**    tokens the original would. Forks that should differ must be reseeded
**    (tide_sampler_reset, which also clears the penalty history).
**  - The RNG is xoshiro256** seeded through splitmix64; a draw uses 53 bits.
*/
#include <math.h>
#include <string.h>

#include "tidei.h"

#define SAMPLE_MAX_STAGES 16
#define SAMPLE_MAX_WINDOW 32768

typedef struct {
  tide_sampler_stage p;  /* as pushed (min keep already >= 1) */
  /* PENALTIES only: the last accepted ids and their counts */
  int32_t window;        /* ring capacity; 0 = stage is off */
  int32_t head, size;    /* oldest entry, entries used */
  int32_t *ring;         /* (window) */
  int32_t *count;        /* (n_vocab) occurrences of each id in ring */
} stage;

struct tide_sampler {
  tide_env *env;
  int32_t n_vocab;
  int n_stage;
  int greedy;                  /* a TEMPERATURE stage with a <= 0 exists */
  stage st[SAMPLE_MAX_STAGES];
  uint64_t rng[4];             /* xoshiro256** state */
  int32_t n_bias;
  int32_t *bias_id;            /* (n_bias) one block with bias */
  float *bias;                 /* (n_bias) */
  /* candidates: the first n_cur entries of id/logit are alive. The six
  ** scratch arrays below are carved from one block and get swapped around
  ** (all n_vocab entries of 4 bytes), so only 'block' is freed. */
  int32_t n_cur;
  int sorted;                  /* id/logit in ranking order */
  int identity;                /* n_cur == n_vocab and id[i] == i */
  int32_t *id;                 /* (n_vocab) */
  float *logit;                /* (n_vocab) */
  int32_t *tid;                /* (n_vocab) scratch ids or indices */
  float *tlogit;               /* (n_vocab) scratch keys */
  float *aux;                  /* (n_vocab) exp values, typical scores */
  int32_t *pos;                /* (n_vocab) id -> slot, validated on use */
  void *block;
};

/* ---------------------------------------------------------------- RNG */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
  uint64_t r = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl64(s[3], 45);
  return r;
}

static void rng_seed(uint64_t s[4], uint64_t seed) {
  for (int i = 0; i < 4; i++) s[i] = splitmix64(&seed);
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_unit(uint64_t s[4]) {
  return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

/* ---------------------------------------------------------------- ranking */

/* Entry a ranks before entry b: larger value, then lower tag (id). */
static int better(float va, int32_t ta, float vb, int32_t tb) {
  return va > vb || (va == vb && ta < tb);
}

/* Heap over (hv, ht)[0, n) whose root is the worst entry: moves slot i down
** until each parent ranks after both children. */
static void sift_down(float *hv, int32_t *ht, int32_t n, int32_t i) {
  float v = hv[i];
  int32_t t = ht[i];
  for (;;) {
    int64_t c = 2 * (int64_t)i + 1;
    if (c >= n) break;
    if (c + 1 < n && better(hv[c], ht[c], hv[c + 1], ht[c + 1])) c++;
    if (!better(v, t, hv[c], ht[c])) break; /* v is no better than the worse child */
    hv[i] = hv[c];
    ht[i] = ht[c];
    i = (int32_t)c;
  }
  hv[i] = v;
  ht[i] = t;
}

/* The k best of (key[i], tag ? tag[i] : i) for i < n, best first, into
** hv/ht (k entries; must not alias key/tag). O(n log k) with a k-heap;
** k >= n is a heapsort. */
static void select_best(const float *key, const int32_t *tag, int32_t n,
                        int32_t k, float *hv, int32_t *ht) {
  if (k > n) k = n;
  if (k <= 0) return;
  for (int32_t i = 0; i < k; i++) { hv[i] = key[i]; ht[i] = tag ? tag[i] : i; }
  for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down(hv, ht, k, i);
  for (int32_t i = k; i < n; i++) {
    int32_t t = tag ? tag[i] : i;
    if (better(key[i], t, hv[0], ht[0])) {
      hv[0] = key[i];
      ht[0] = t;
      sift_down(hv, ht, k, 0);
    }
  }
  for (int32_t end = k - 1; end > 0; end--) { /* the worst goes last */
    float v = hv[0]; int32_t t = ht[0];
    hv[0] = hv[end]; ht[0] = ht[end];
    hv[end] = v; ht[end] = t;
    sift_down(hv, ht, end, 0);
  }
}

/* ---------------------------------------------------------------- candidates */

static void swap_f(float **a, float **b) { float *t = *a; *a = *b; *b = t; }
static void swap_i(int32_t **a, int32_t **b) { int32_t *t = *a; *a = *b; *b = t; }

static int cand_fill(tide_sampler *s, const float *logits) {
  for (int32_t i = 0; i < s->n_vocab; i++) {
    float v = logits[i];
    if (isnan(v) || v == INFINITY)
      return tidei_error(s->env, TIDE_ERR_ARG, "logit of token %d is %s (expected a number or -inf)",
                         (int)i, isnan(v) ? "nan" : "inf");
    s->id[i] = i;
    s->logit[i] = v;
  }
  s->n_cur = s->n_vocab;
  s->sorted = 0;
  s->identity = 1;
  return TIDE_OK;
}

static double cand_max(const tide_sampler *s) {
  float mx = -INFINITY;
  for (int32_t i = 0; i < s->n_cur; i++) if (s->logit[i] > mx) mx = s->logit[i];
  return mx;
}

/* Slot of the best candidate (lowest id on ties). */
static int32_t cand_best(const tide_sampler *s) {
  int32_t b = 0;
  for (int32_t i = 1; i < s->n_cur; i++)
    if (better(s->logit[i], s->id[i], s->logit[b], s->id[b])) b = i;
  return b;
}

/* Keeps the k best candidates, sorted. */
static void cand_keep_best(tide_sampler *s, int32_t k) {
  if (k <= 0 || k >= s->n_cur) return;
  if (!s->sorted) {
    select_best(s->logit, s->id, s->n_cur, k, s->tlogit, s->tid);
    swap_f(&s->logit, &s->tlogit);
    swap_i(&s->id, &s->tid);
    s->sorted = 1;
  }
  s->n_cur = k;
  s->identity = 0;
}

/* Fills pos so that pos[id] is the slot of each live candidate id. An entry
** for an id that is not alive is stale; check with cand_slot. */
static void cand_index(tide_sampler *s) {
  for (int32_t i = 0; i < s->n_cur; i++) s->pos[s->id[i]] = i;
}

static int32_t cand_slot(const tide_sampler *s, int32_t id) {
  if (s->identity) return id;
  int32_t p = s->pos[id];
  return p >= 0 && p < s->n_cur && s->id[p] == id ? p : -1;
}

/* ---------------------------------------------------------------- stages */

static float penalise(const stage *g, float l, int32_t count) {
  l = l <= 0 ? l * g->p.a : l / g->p.a;
  return l - ((float)count * g->p.b + (float)(count > 0) * g->p.c);
}

static void do_penalties(tide_sampler *s, stage *g) {
  if (g->size == 0 || (g->p.a == 1.0f && g->p.b == 0.0f && g->p.c == 0.0f)) return;
  if (s->identity) {
    /* O(window): visit each distinct id once, marking it by negating its
    ** count, then undo the marks. Ring slots [0, size) are all in use. */
    for (int32_t i = 0; i < g->size; i++) {
      int32_t t = g->ring[i], c = g->count[t];
      if (c > 0) { s->logit[t] = penalise(g, s->logit[t], c); g->count[t] = -c; }
    }
    for (int32_t i = 0; i < g->size; i++) {
      int32_t t = g->ring[i];
      if (g->count[t] < 0) g->count[t] = -g->count[t];
    }
  } else {
    for (int32_t i = 0; i < s->n_cur; i++) {
      int32_t c = g->count[s->id[i]];
      if (c > 0) s->logit[i] = penalise(g, s->logit[i], c);
    }
  }
  s->sorted = 0;
}

static void do_bias(tide_sampler *s) {
  if (s->n_bias == 0) return;
  if (!s->identity) cand_index(s);
  for (int32_t j = 0; j < s->n_bias; j++) {
    int32_t p = cand_slot(s, s->bias_id[j]);
    if (p >= 0) s->logit[p] += s->bias[j];
  }
  s->sorted = 0;
}

static void do_temperature(tide_sampler *s, float a) {
  if (a > 0) {
    for (int32_t i = 0; i < s->n_cur; i++) s->logit[i] /= a;
    s->sorted = 0;
    return;
  }
  if (s->n_cur == 1) return;
  int32_t b = cand_best(s);
  s->id[0] = s->id[b];
  s->logit[0] = s->logit[b];
  s->n_cur = 1;
  s->sorted = 1;
  s->identity = 0;
}

/* Weights for the mass-based stages: aux[i] = exp(logit[i] - mx) for the
** candidates; returns their sum (double). */
static double cand_weights(tide_sampler *s, double mx) {
  double sum = 0;
  for (int32_t i = 0; i < s->n_cur; i++) {
    s->aux[i] = expf((float)((double)s->logit[i] - mx));
    sum += s->aux[i];
  }
  return sum;
}

/* Candidate slots i, j swapped in id, logit, aux and key (if key is not
** logit): the arrays a mass selection moves together. */
static void cswap(tide_sampler *s, float *key, int32_t i, int32_t j) {
  int32_t t = s->id[i]; s->id[i] = s->id[j]; s->id[j] = t;
  float f = s->logit[i]; s->logit[i] = s->logit[j]; s->logit[j] = f;
  f = s->aux[i]; s->aux[i] = s->aux[j]; s->aux[j] = f;
  if (key != s->logit) { f = key[i]; key[i] = key[j]; key[j] = f; }
}

/* Slot i ranks before slot j by (key desc, id asc). */
static int cranks(const tide_sampler *s, const float *key, int32_t i, int32_t j) {
  return better(key[i], s->id[i], key[j], s->id[j]);
}

/* In-place heapsort of slots [lo, hi) best first (root of the heap = worst). */
static void csort(tide_sampler *s, float *key, int32_t lo, int32_t hi) {
  int32_t n = hi - lo;
  for (int32_t start = n / 2 - 1, end = n; end > 1;) {
    int32_t i;
    if (start >= 0) i = start--;            /* heapify phase */
    else { cswap(s, key, lo, lo + --end); i = 0; } /* worst goes last */
    for (;;) {
      int64_t c = 2 * (int64_t)i + 1;
      if (c >= end) break;
      if (c + 1 < end && cranks(s, key, lo + (int32_t)c, lo + (int32_t)c + 1)) c++;
      if (!cranks(s, key, lo + i, lo + (int32_t)c)) break;
      cswap(s, key, lo + i, lo + (int32_t)c);
      i = (int32_t)c;
    }
  }
}

/* Moves to the front the shortest best-first prefix (rank: key desc, id
** asc) whose weight (aux) sum reaches target (>= target, or > if strict) and
** returns its length (n_cur if it never does). The prefix itself is only
** partly ordered. Quickselect on mass, expected O(n); after 64 rounds of
** bad pivots what is left is heap-sorted, so the worst case is O(n log n). */
static int32_t mass_prefix(tide_sampler *s, float *key, double target, int strict) {
  int32_t lo = 0, hi = s->n_cur;
  double above = 0; /* weight of slots [0, lo), all in the prefix */
  for (int round = 0; hi - lo > 32 && round < 64; round++) {
    int32_t mid = lo + (hi - lo) / 2, p = hi - 1;
    /* median of lo, mid, p into p */
    if (cranks(s, key, mid, lo)) cswap(s, key, mid, lo);   /* lo <= mid in rank */
    if (cranks(s, key, p, mid)) cswap(s, key, p, mid);     /* mid <= p: p is worst */
    if (cranks(s, key, mid, lo)) cswap(s, key, mid, lo);   /* mid is the median */
    cswap(s, key, mid, p);
    int32_t m = lo;
    double w = 0;
    for (int32_t i = lo; i < p; i++)
      if (cranks(s, key, i, p)) { w += s->aux[i]; cswap(s, key, i, m++); }
    cswap(s, key, m, p); /* pivot at m; [lo, m) rank before it */
    double with = above + w + s->aux[m];
    if (strict ? above + w > target : above + w >= target) hi = m;
    else if (strict ? with > target : with >= target) return m + 1;
    else { above = with; lo = m + 1; }
  }
  csort(s, key, lo, hi);
  for (int32_t i = lo; i < hi; i++) {
    above += s->aux[i];
    if (strict ? above > target : above >= target) return i + 1;
  }
  return hi;
}

/* Keeps the smallest best-first prefix whose mass reaches a (>= a), at least
** mk entries. No sort of the whole list: see mass_prefix. */
static void do_top_p(tide_sampler *s, float a, int32_t mk) {
  if (a >= 1.0f || s->n_cur <= 1) return;
  double mx = cand_max(s);
  if (mx == -INFINITY) return;
  double sum = cand_weights(s, mx);
  int32_t last = s->n_cur;
  if (s->sorted) {
    double cum = 0;
    for (int32_t i = 0; i < s->n_cur; i++) {
      cum += s->aux[i];
      if (cum >= a * sum) { last = i + 1; break; }
    }
  } else {
    last = mass_prefix(s, s->logit, a * sum, 0);
    s->identity = 0;
  }
  if (last < mk) { cand_keep_best(s, mk); return; }
  if (last < s->n_cur) { s->n_cur = last; s->identity = 0; }
}

/* Keeps candidates with p >= a * p_max, i.e. logit >= max + log(a); if that
** leaves fewer than mk, keeps the mk best. */
static void do_min_p(tide_sampler *s, float a, int32_t mk) {
  if (a <= 0.0f || s->n_cur <= 1) return;
  double mx = cand_max(s);
  if (mx == -INFINITY) return;
  double thr = mx + log((double)a);
  int32_t n = 0;
  for (int32_t i = 0; i < s->n_cur; i++) n += (double)s->logit[i] >= thr;
  if (n < mk) { cand_keep_best(s, mk); return; }
  if (n == s->n_cur) return;
  int32_t j = 0; /* stable compaction keeps a sorted list sorted */
  for (int32_t i = 0; i < s->n_cur; i++) {
    if ((double)s->logit[i] >= thr) { s->id[j] = s->id[i]; s->logit[j] = s->logit[i]; j++; }
  }
  s->n_cur = j;
  s->identity = 0;
}

/* Locally typical sampling: rank candidates by |-log p - H| (H the entropy;
** ties: lower id) and keep the first ones until their mass exceeds a (> a),
** at least mk. */
static void do_typical(tide_sampler *s, float a, int32_t mk) {
  if (a >= 1.0f || s->n_cur <= 1) return;
  double mx = cand_max(s);
  if (mx == -INFINITY) return;
  double sum = cand_weights(s, mx), lsum = log(sum), h = 0;
  for (int32_t i = 0; i < s->n_cur; i++) {
    double lp = (double)s->logit[i] - mx - lsum; /* log p */
    if (lp > -INFINITY) h -= exp(lp) * lp;
  }
  float *key = s->tlogit; /* -score: the most typical ranks first */
  for (int32_t i = 0; i < s->n_cur; i++)
    key[i] = (float)-fabs(-((double)s->logit[i] - mx - lsum) - h);
  int32_t last = mass_prefix(s, key, a * sum, 1);
  if (last < mk) { /* rare: min keep beyond the typical set */
    csort(s, key, 0, s->n_cur);
    last = mk < s->n_cur ? mk : s->n_cur;
  }
  s->n_cur = last;
  s->sorted = 0;
  s->identity = 0;
}

/* Copies logits into the candidates and runs every stage. */
static int run_chain(tide_sampler *s, const float *logits) {
  int st = cand_fill(s, logits);
  if (st) return st;
  for (int i = 0; i < s->n_stage; i++) {
    stage *g = &s->st[i];
    switch (g->p.kind) {
    case TIDE_SAMPLE_PENALTIES: do_penalties(s, g); break;
    case TIDE_SAMPLE_LOGIT_BIAS: do_bias(s); break;
    case TIDE_SAMPLE_TEMPERATURE: do_temperature(s, g->p.a); break;
    case TIDE_SAMPLE_TOP_K: cand_keep_best(s, g->p.n); break;
    case TIDE_SAMPLE_TOP_P: do_top_p(s, g->p.a, g->p.n); break;
    case TIDE_SAMPLE_MIN_P: do_min_p(s, g->p.a, g->p.n); break;
    case TIDE_SAMPLE_TYPICAL: do_typical(s, g->p.a, g->p.n); break;
    default: break; /* push admits no other kind */
    }
  }
  return TIDE_OK;
}

/* ---------------------------------------------------------------- lifetime */

static size_t scratch_bytes(int32_t n_vocab) { return (size_t)n_vocab * 4 * 6; }
static size_t penalty_bytes(const tide_sampler *s, int32_t window) {
  return ((size_t)window + (size_t)s->n_vocab) * sizeof(int32_t);
}

int tide_sampler_new(tide_env *env, int32_t n_vocab, uint64_t seed,
                     tide_sampler **out) {
  if (!out) return env ? tidei_error(env, TIDE_ERR_ARG, "sampler: out is NULL") : TIDE_ERR_ARG;
  *out = NULL;
  if (!env) return TIDE_ERR_ARG;
  if (n_vocab <= 0)
    return tidei_error(env, TIDE_ERR_ARG, "sampler: n_vocab must be positive, got %d", (int)n_vocab);
  tide_sampler *s = tidei_calloc(env, 1, sizeof *s);
  if (!s) return TIDE_ERR_NOMEM;
  s->block = tidei_calloc(env, 1, scratch_bytes(n_vocab));
  if (!s->block) { tidei_free(env, s, sizeof *s); return TIDE_ERR_NOMEM; }
  char *b = s->block;
  size_t row = (size_t)n_vocab * 4;
  s->id = (int32_t *)(void *)b;
  s->logit = (float *)(void *)(b + row);
  s->tid = (int32_t *)(void *)(b + 2 * row);
  s->tlogit = (float *)(void *)(b + 3 * row);
  s->aux = (float *)(void *)(b + 4 * row);
  s->pos = (int32_t *)(void *)(b + 5 * row);
  s->env = env;
  s->n_vocab = n_vocab;
  rng_seed(s->rng, seed);
  tidei_env_ref(env);
  *out = s;
  return TIDE_OK;
}

void tide_sampler_free(tide_sampler *s) {
  if (!s) return;
  tide_env *env = s->env;
  for (int i = 0; i < s->n_stage; i++)
    if (s->st[i].ring) tidei_free(env, s->st[i].ring, penalty_bytes(s, s->st[i].window));
  if (s->bias_id)
    tidei_free(env, s->bias_id, (size_t)s->n_bias * (sizeof(int32_t) + sizeof(float)));
  tidei_free(env, s->block, scratch_bytes(s->n_vocab));
  tidei_free(env, s, sizeof *s);
  tidei_env_unref(env);
}

/* Checks a stage; returns TIDE_OK or the error with its message. */
static int check_stage(tide_sampler *s, const tide_sampler_stage *p) {
  tide_env *env = s->env;
  float a = p->a;
  switch (p->kind) {
  case TIDE_SAMPLE_PENALTIES:
    if (!(a > 0) || isinf(a))
      return tidei_error(env, TIDE_ERR_ARG, "penalties: repeat penalty must be a positive number, got %g", (double)a);
    if (!isfinite(p->b) || !isfinite(p->c))
      return tidei_error(env, TIDE_ERR_ARG, "penalties: frequency (%g) and presence (%g) penalties must be numbers",
                         (double)p->b, (double)p->c);
    if (p->n < -1 || p->n > SAMPLE_MAX_WINDOW)
      return tidei_error(env, TIDE_ERR_ARG, "penalties: last_n must be -1 (all) or 0..%d, got %d",
                         SAMPLE_MAX_WINDOW, (int)p->n);
    return TIDE_OK;
  case TIDE_SAMPLE_LOGIT_BIAS: case TIDE_SAMPLE_TOP_K: return TIDE_OK;
  case TIDE_SAMPLE_TEMPERATURE:
    if (!isfinite(a))
      return tidei_error(env, TIDE_ERR_ARG, "temperature must be a number, got %g", (double)a);
    return TIDE_OK;
  case TIDE_SAMPLE_TOP_P:
    if (!(a > 0 && a <= 1))
      return tidei_error(env, TIDE_ERR_ARG, "top_p must be in (0, 1], got %g", (double)a);
    return TIDE_OK;
  case TIDE_SAMPLE_MIN_P:
    if (!(a >= 0 && a <= 1))
      return tidei_error(env, TIDE_ERR_ARG, "min_p must be in [0, 1], got %g", (double)a);
    return TIDE_OK;
  case TIDE_SAMPLE_TYPICAL:
    if (!(a > 0 && a <= 1))
      return tidei_error(env, TIDE_ERR_ARG, "typical must be in (0, 1], got %g", (double)a);
    return TIDE_OK;
  default:
    return tidei_error(env, TIDE_ERR_ARG, "unknown sampler stage kind %d", p->kind);
  }
}

int tide_sampler_push(tide_sampler *s, const tide_sampler_stage *p) {
  if (!s) return TIDE_ERR_ARG;
  if (!p) return tidei_error(s->env, TIDE_ERR_ARG, "sampler stage is NULL");
  int st = check_stage(s, p);
  if (st) return st;
  if (s->n_stage >= SAMPLE_MAX_STAGES)
    return tidei_error(s->env, TIDE_ERR_FULL, "too many sampler stages (max %d)", SAMPLE_MAX_STAGES);
  stage g;
  memset(&g, 0, sizeof g);
  g.p = *p;
  if (p->kind == TIDE_SAMPLE_PENALTIES) {
    g.window = p->n == -1 ? SAMPLE_MAX_WINDOW : p->n;
    if (g.window > 0) {
      g.ring = tidei_calloc(s->env, 1, penalty_bytes(s, g.window));
      if (!g.ring) return TIDE_ERR_NOMEM;
      g.count = g.ring + g.window;
    }
  } else if (p->kind == TIDE_SAMPLE_TOP_P || p->kind == TIDE_SAMPLE_MIN_P ||
             p->kind == TIDE_SAMPLE_TYPICAL) {
    if (g.p.n < 1) g.p.n = 1;
  }
  if (p->kind == TIDE_SAMPLE_TEMPERATURE && p->a <= 0) s->greedy = 1;
  s->st[s->n_stage++] = g;
  return TIDE_OK;
}

int tide_sampler_set_bias(tide_sampler *s, const int32_t *ids,
                          const float *bias, int32_t n) {
  if (!s) return TIDE_ERR_ARG;
  tide_env *env = s->env;
  if (n < 0) return tidei_error(env, TIDE_ERR_ARG, "logit bias: count must be >= 0, got %d", (int)n);
  if (n > 0 && (!ids || !bias)) return tidei_error(env, TIDE_ERR_ARG, "logit bias: ids or bias is NULL");
  for (int32_t j = 0; j < n; j++) {
    if (ids[j] < 0 || ids[j] >= s->n_vocab)
      return tidei_error(env, TIDE_ERR_ARG, "logit bias: token id %d out of range [0, %d)",
                         (int)ids[j], (int)s->n_vocab);
    if (isnan(bias[j]) || bias[j] == INFINITY)
      return tidei_error(env, TIDE_ERR_ARG, "logit bias of token %d is %g (expected a number or -inf)",
                         (int)ids[j], (double)bias[j]);
  }
  size_t each = sizeof(int32_t) + sizeof(float);
  int32_t *nid = NULL;
  if (n > 0) {
    nid = tidei_alloc(env, (size_t)n * each);
    if (!nid) return TIDE_ERR_NOMEM;
    memcpy(nid, ids, (size_t)n * sizeof *ids);
    memcpy(nid + n, bias, (size_t)n * sizeof *bias);
  }
  if (s->bias_id) tidei_free(env, s->bias_id, (size_t)s->n_bias * each);
  s->bias_id = nid;
  s->bias = nid ? (float *)(void *)(nid + n) : NULL;
  s->n_bias = n;
  return TIDE_OK;
}

void tide_sampler_accept(tide_sampler *s, int32_t id) {
  if (!s || id < 0 || id >= s->n_vocab) return;
  for (int i = 0; i < s->n_stage; i++) {
    stage *g = &s->st[i];
    if (g->window == 0) continue;
    if (g->size == g->window) { /* full: overwrite the oldest */
      g->count[g->ring[g->head]]--;
      g->ring[g->head] = id;
      g->head = (g->head + 1) % g->window;
    } else {
      g->ring[g->size++] = id; /* head stays 0 until the ring is full */
    }
    g->count[id]++;
  }
}

void tide_sampler_reset(tide_sampler *s, uint64_t seed) {
  if (!s) return;
  for (int i = 0; i < s->n_stage; i++) {
    stage *g = &s->st[i];
    if (g->window == 0) continue;
    memset(g->ring, 0, penalty_bytes(s, g->window));
    g->head = g->size = 0;
  }
  rng_seed(s->rng, seed);
}

int tide_sampler_clone(const tide_sampler *s, tide_sampler **out) {
  if (!out) return s ? tidei_error(s->env, TIDE_ERR_ARG, "sampler clone: out is NULL") : TIDE_ERR_ARG;
  *out = NULL;
  if (!s) return TIDE_ERR_ARG;
  tide_sampler *c = NULL;
  int st = tide_sampler_new(s->env, s->n_vocab, 0, &c);
  if (st) return st;
  for (int i = 0; i < s->n_stage; i++) {
    stage g = s->st[i];
    if (g.window > 0) {
      g.ring = tidei_alloc(s->env, penalty_bytes(s, g.window));
      if (!g.ring) { tide_sampler_free(c); return TIDE_ERR_NOMEM; }
      memcpy(g.ring, s->st[i].ring, penalty_bytes(s, g.window));
      g.count = g.ring + g.window;
    }
    c->st[c->n_stage++] = g;
  }
  st = tide_sampler_set_bias(c, s->bias_id, s->bias, s->n_bias);
  if (st) { tide_sampler_free(c); return st; }
  c->greedy = s->greedy;
  memcpy(c->rng, s->rng, sizeof c->rng);
  *out = c;
  return TIDE_OK;
}

/* ---------------------------------------------------------------- pick */

/* Seeded categorical draw from the softmax of the candidates. */
static int draw(tide_sampler *s, int32_t *out) {
  double mx = cand_max(s);
  if (mx == -INFINITY)
    return tidei_error(s->env, TIDE_ERR_ARG, "sampler: no token left to sample (every logit is -inf)");
  double sum = cand_weights(s, mx);
  /* first slot whose running mass exceeds u*sum; zero-mass slots never do */
  double target = rng_unit(s->rng) * sum, cum = 0;
  int32_t pick = -1;
  for (int32_t i = 0; i < s->n_cur; i++) {
    if (s->aux[i] > 0) pick = i; /* fallback for rounding: last with mass */
    cum += s->aux[i];
    if (cum > target && s->aux[i] > 0) break;
  }
  *out = s->id[pick];
  return TIDE_OK;
}

int tide_sampler_sample(tide_sampler *s, const float *logits, int32_t *out) {
  if (!s) return TIDE_ERR_ARG;
  if (!logits || !out) return tidei_error(s->env, TIDE_ERR_ARG, "sampler: logits or out is NULL");
  *out = -1;
  int st = run_chain(s, logits);
  if (st) return st;
  if (!s->greedy) return draw(s, out);
  int32_t b = cand_best(s);
  if (s->logit[b] == -INFINITY)
    return tidei_error(s->env, TIDE_ERR_ARG, "sampler: no token left to sample (every logit is -inf)");
  *out = s->id[b];
  return TIDE_OK;
}

int tide_sampler_apply(tide_sampler *s, float *logits) {
  if (!s) return TIDE_ERR_ARG;
  if (!logits) return tidei_error(s->env, TIDE_ERR_ARG, "sampler: logits is NULL");
  int st = run_chain(s, logits);
  if (st) return st;
  if (s->identity) {
    memcpy(logits, s->logit, (size_t)s->n_vocab * sizeof *logits);
    return TIDE_OK;
  }
  for (int32_t i = 0; i < s->n_vocab; i++) logits[i] = -INFINITY;
  for (int32_t i = 0; i < s->n_cur; i++) logits[s->id[i]] = s->logit[i];
  return TIDE_OK;
}

/* ---------------------------------------------------------------- helpers */

int32_t tide_argmax(const float *x, int32_t n) {
  if (!x || n <= 0) return -1;
  int32_t b = 0;
  float v = -INFINITY;
  for (int32_t i = 0; i < n; i++) /* strict >: the first maximum wins; NaN never */
    if (x[i] > v) { v = x[i]; b = i; }
  return b;
}

double tide_logprob(const float *x, int32_t n, int32_t id) {
  if (!x || n <= 0 || id < 0 || id >= n) return NAN;
  double mx = -INFINITY;
  for (int32_t i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
  if (mx == -INFINITY || isinf(mx)) return NAN; /* all -inf, or a +inf */
  double sum = 0;
  for (int32_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
  return ((double)x[id] - mx) - log(sum);
}

void tide_topk(const float *x, int32_t n, int32_t k, int32_t *ids, float *vals) {
  if (!x || !ids || !vals) return;
  select_best(x, NULL, n, k, vals, ids);
}
