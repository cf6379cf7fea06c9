/*
** test_sample.c -- the sampler chain and the logits helpers (argmax,
** logprob, topk): each stage on hand-computed examples, brute-force
** references, seeded draws, clone/reset, argument errors and allocation.
** Layer: tests (core).
*/
#include "test.h"
#include "tidei.h"

/* ---------------------------------------------------------------- fixtures */

static uint64_t trng_state = 12345;
static uint64_t trng(void) { /* splitmix64: test data only */
  uint64_t z = (trng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static double trng_unit(void) { return (double)(trng() >> 11) * 0x1.0p-53; }

static tide_sampler_stage stg(int kind, float a, int32_t n) {
  tide_sampler_stage s = { kind, a, 0, 0, n };
  return s;
}

static tide_sampler_stage pen(float a, float b, float c, int32_t n) {
  tide_sampler_stage s = { TIDE_SAMPLE_PENALTIES, a, b, c, n };
  return s;
}

/* A sampler over n_vocab with the given stages; every push must succeed. */
static tide_sampler *mk(tide_env *env, int32_t n_vocab, uint64_t seed,
                        const tide_sampler_stage *st, int n) {
  tide_sampler *s = NULL;
  CHECK(tide_sampler_new(env, n_vocab, seed, &s) == TIDE_OK);
  for (int i = 0; i < n; i++) CHECKF(tide_sampler_push(s, &st[i]) == TIDE_OK, "%s", tide_env_errmsg(env));
  return s;
}

/* Bitmask of the ids apply keeps (n <= 32); out gets the applied row. */
static unsigned kept(tide_sampler *s, const float *x, int32_t n, float *out) {
  float buf[32];
  memcpy(buf, x, (size_t)n * sizeof *x);
  CHECK(tide_sampler_apply(s, buf) == TIDE_OK);
  unsigned m = 0;
  for (int32_t i = 0; i < n; i++) if (buf[i] != -INFINITY) m |= 1u << i;
  if (out) memcpy(out, buf, (size_t)n * sizeof *x);
  return m;
}

#define BIT(i) (1u << (i))

/* Probabilities 0.05 0.45 0.03 0.30 0.17 at ids 0..4 (they sum to 1), so
** ranked: id1 .45, id3 .30, id4 .17, id0 .05, id2 .03. */
static const double P5[5] = { 0.05, 0.45, 0.03, 0.30, 0.17 };
static void p5_logits(float *x) { for (int i = 0; i < 5; i++) x[i] = (float)log(P5[i]); }

/* Applies one stage to the P5 logits and returns the kept mask. */
static unsigned p5_kept(tide_env *env, int kind, float a, int32_t n) {
  float x[5];
  p5_logits(x);
  tide_sampler_stage st = stg(kind, a, n);
  tide_sampler *s = mk(env, 5, 1, &st, 1);
  unsigned m = kept(s, x, 5, NULL);
  tide_sampler_free(s);
  return m;
}

/* ---------------------------------------------------------------- stages */

static void test_top_p(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  /* cumulative: .45, .75, .92, .97, 1 */
  CHECK(p5_kept(env, TIDE_SAMPLE_TOP_P, 0.9f, 1) == (BIT(1) | BIT(3) | BIT(4)));
  CHECK(p5_kept(env, TIDE_SAMPLE_TOP_P, 0.7f, 1) == (BIT(1) | BIT(3)));
  CHECK(p5_kept(env, TIDE_SAMPLE_TOP_P, 0.4f, 1) == BIT(1));
  CHECK(p5_kept(env, TIDE_SAMPLE_TOP_P, 0.4f, 4) == (BIT(1) | BIT(3) | BIT(4) | BIT(0)));
  CHECK(p5_kept(env, TIDE_SAMPLE_TOP_P, 0.4f, 0) == BIT(1)); /* min keep 0 acts as 1 */
  CHECK(p5_kept(env, TIDE_SAMPLE_TOP_P, 1.0f, 1) == 0x1f);
  /* kept logits are untouched */
  float x[5], y[5];
  p5_logits(x);
  tide_sampler_stage st = stg(TIDE_SAMPLE_TOP_P, 0.9f, 1);
  tide_sampler *s = mk(env, 5, 1, &st, 1);
  kept(s, x, 5, y);
  CHECK(y[1] == x[1] && y[3] == x[3] && y[4] == x[4] && y[0] == -INFINITY && y[2] == -INFINITY);
  tide_sampler_free(s);
  /* top_k 3 first renormalises: .489, .815 -> top_p .8 keeps 2 (alone: 3) */
  tide_sampler_stage two[2] = { stg(TIDE_SAMPLE_TOP_K, 0, 3), stg(TIDE_SAMPLE_TOP_P, 0.8f, 1) };
  s = mk(env, 5, 1, two, 2);
  CHECK(kept(s, x, 5, NULL) == (BIT(1) | BIT(3)));
  tide_sampler_free(s);
  CHECK(p5_kept(env, TIDE_SAMPLE_TOP_P, 0.8f, 1) == (BIT(1) | BIT(3) | BIT(4)));
  tide_env_free(env);
}

static void test_min_p(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  /* p >= a * .45 */
  CHECK(p5_kept(env, TIDE_SAMPLE_MIN_P, 0.3f, 1) == (BIT(1) | BIT(3) | BIT(4))); /* >= .135 */
  CHECK(p5_kept(env, TIDE_SAMPLE_MIN_P, 0.5f, 1) == (BIT(1) | BIT(3)));          /* >= .225 */
  CHECK(p5_kept(env, TIDE_SAMPLE_MIN_P, 0.5f, 4) == (BIT(1) | BIT(3) | BIT(4) | BIT(0)));
  CHECK(p5_kept(env, TIDE_SAMPLE_MIN_P, 0.0f, 1) == 0x1f);
  CHECK(p5_kept(env, TIDE_SAMPLE_MIN_P, 1.0f, 1) == BIT(1));
  CHECK(p5_kept(env, TIDE_SAMPLE_MIN_P, 0.1f, 1) == (0x1f & ~BIT(2)));            /* >= .045 */
  tide_env_free(env);
}

static void test_typical(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  /* H = 1.27674 nats; |-ln p - H|: .30 -> 0.073, .45 -> 0.478, .17 -> 0.495,
  ** .05 -> 1.719, .03 -> 2.230; cumulative in that order: .30 .75 .92 .97 1 */
  CHECK(p5_kept(env, TIDE_SAMPLE_TYPICAL, 0.5f, 1) == (BIT(3) | BIT(1)));
  CHECK(p5_kept(env, TIDE_SAMPLE_TYPICAL, 0.8f, 1) == (BIT(3) | BIT(1) | BIT(4)));
  CHECK(p5_kept(env, TIDE_SAMPLE_TYPICAL, 0.2f, 1) == BIT(3));
  CHECK(p5_kept(env, TIDE_SAMPLE_TYPICAL, 0.2f, 2) == (BIT(3) | BIT(1)));
  CHECK(p5_kept(env, TIDE_SAMPLE_TYPICAL, 1.0f, 1) == 0x1f);
  tide_env_free(env);
}

static void test_top_k_temperature(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  float x[5] = { 2.0f, -1.0f, 0.5f, 3.0f, -2.0f }, y[5];
  CHECK(p5_kept(env, TIDE_SAMPLE_TOP_K, 0, 2) == (BIT(1) | BIT(3)));
  CHECK(p5_kept(env, TIDE_SAMPLE_TOP_K, 0, 0) == 0x1f);   /* off */
  CHECK(p5_kept(env, TIDE_SAMPLE_TOP_K, 0, -3) == 0x1f);  /* off */
  CHECK(p5_kept(env, TIDE_SAMPLE_TOP_K, 0, 99) == 0x1f);
  /* ties at the boundary go to the lower id */
  float t[4] = { 1, 3, 3, 2 };
  tide_sampler_stage st = stg(TIDE_SAMPLE_TOP_K, 0, 1);
  tide_sampler *s = mk(env, 4, 1, &st, 1);
  CHECK(kept(s, t, 4, NULL) == BIT(1));
  tide_sampler_free(s);
  st = stg(TIDE_SAMPLE_TOP_K, 0, 3);
  s = mk(env, 4, 1, &st, 1);
  CHECK(kept(s, t, 4, NULL) == (BIT(1) | BIT(2) | BIT(3)));
  tide_sampler_free(s);
  /* temperature divides */
  st = stg(TIDE_SAMPLE_TEMPERATURE, 0.5f, 0);
  s = mk(env, 5, 1, &st, 1);
  CHECK(kept(s, x, 5, y) == 0x1f);
  for (int i = 0; i < 5; i++) CHECK(y[i] == x[i] / 0.5f);
  tide_sampler_free(s);
  /* temperature <= 0 keeps only the argmax, lowest id on ties */
  st = stg(TIDE_SAMPLE_TEMPERATURE, 0, 0);
  s = mk(env, 4, 1, &st, 1);
  CHECK(kept(s, t, 4, y) == BIT(1) && y[1] == 3);
  int32_t id = -1;
  for (int i = 0; i < 10; i++) { CHECK(tide_sampler_sample(s, t, &id) == TIDE_OK); CHECK(id == 1); }
  tide_sampler_free(s);
  tide_env_free(env);
}

static void test_penalties(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  float x[5] = { 2.0f, -1.0f, 0.5f, 3.0f, -2.0f }, y[5];
  /* window 3 over history 0 1 1 3 holds 1 1 3: id1 (count 2): -1*2 - (2*.5 + .25)
  ** = -3.25; id3 (count 1): 3/2 - (.5 + .25) = .75; id0 fell out of the window */
  tide_sampler_stage st = pen(2.0f, 0.5f, 0.25f, 3);
  tide_sampler *s = mk(env, 5, 1, &st, 1);
  int32_t hist[4] = { 0, 1, 1, 3 };
  for (int i = 0; i < 4; i++) tide_sampler_accept(s, hist[i]);
  tide_sampler_accept(s, -1); /* ignored */
  tide_sampler_accept(s, 5);  /* ignored */
  CHECK(kept(s, x, 5, y) == 0x1f);
  CHECK(y[0] == 2.0f && y[1] == -3.25f && y[2] == 0.5f && y[3] == 0.75f && y[4] == -2.0f);
  /* the ring wraps: after 3 3 3 the window is 3 3 3: 1.5 - (1.5 + .25) */
  for (int i = 0; i < 3; i++) tide_sampler_accept(s, 3);
  kept(s, x, 5, y);
  CHECK(y[1] == -1.0f && y[3] == -0.25f && y[0] == 2.0f);
  /* reset clears the history */
  tide_sampler_reset(s, 1);
  kept(s, x, 5, y);
  CHECK(memcmp(x, y, sizeof x) == 0);
  tide_sampler_free(s);

  /* n = -1 keeps everything: id0 too: 2/2 - .75 */
  st = pen(2.0f, 0.5f, 0.25f, -1);
  s = mk(env, 5, 1, &st, 1);
  for (int i = 0; i < 4; i++) tide_sampler_accept(s, hist[i]);
  kept(s, x, 5, y);
  CHECK(y[0] == 0.25f && y[1] == -3.25f && y[3] == 0.75f);
  tide_sampler_free(s);

  /* n = 0 is off */
  st = pen(2.0f, 0.5f, 0.25f, 0);
  s = mk(env, 5, 1, &st, 1);
  for (int i = 0; i < 4; i++) tide_sampler_accept(s, hist[i]);
  kept(s, x, 5, y);
  CHECK(memcmp(x, y, sizeof x) == 0);
  tide_sampler_free(s);

  /* after top_k 3 (ids 3 0 2) the penalties see a reordered list */
  tide_sampler_stage two[2] = { stg(TIDE_SAMPLE_TOP_K, 0, 3), pen(2.0f, 0.5f, 0.25f, 3) };
  s = mk(env, 5, 1, two, 2);
  for (int i = 0; i < 4; i++) tide_sampler_accept(s, hist[i]);
  CHECK(kept(s, x, 5, y) == (BIT(0) | BIT(2) | BIT(3)));
  CHECK(y[0] == 2.0f && y[2] == 0.5f && y[3] == 0.75f);
  tide_sampler_free(s);
  tide_env_free(env);
}

static void test_logit_bias(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  float x[5] = { 2.0f, -1.0f, 0.5f, 3.0f, -2.0f }, y[5];
  tide_sampler_stage st = stg(TIDE_SAMPLE_LOGIT_BIAS, 0, 0);
  tide_sampler *s = mk(env, 5, 1, &st, 1);
  int32_t ids[3] = { 1, 4, 1 };
  float b[3] = { 1.0f, -0.5f, 0.25f };
  CHECK(tide_sampler_set_bias(s, ids, b, 3) == TIDE_OK); /* repeated ids add up */
  kept(s, x, 5, y);
  CHECK(y[0] == 2.0f && y[1] == 0.25f && y[2] == 0.5f && y[3] == 3.0f && y[4] == -2.5f);
  /* a bad table is refused and the old one stays */
  int32_t bad[1] = { 5 };
  CHECK(tide_sampler_set_bias(s, bad, b, 1) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "token id 5 out of range [0, 5)") != NULL);
  float nanb[1] = { NAN };
  CHECK(tide_sampler_set_bias(s, ids, nanb, 1) == TIDE_ERR_ARG);
  CHECK(tide_sampler_set_bias(s, ids, b, -1) == TIDE_ERR_ARG);
  CHECK(tide_sampler_set_bias(s, NULL, b, 1) == TIDE_ERR_ARG);
  kept(s, x, 5, y);
  CHECK(y[1] == 0.25f && y[4] == -2.5f);
  /* -inf bans a token: greedy then takes the next best */
  int32_t ban[1] = { 3 };
  float minf[1] = { -INFINITY };
  CHECK(tide_sampler_set_bias(s, ban, minf, 1) == TIDE_OK);
  CHECK(kept(s, x, 5, y) == (0x1f & ~BIT(3)));
  CHECK(tide_sampler_set_bias(s, NULL, NULL, 0) == TIDE_OK); /* clears */
  kept(s, x, 5, y);
  CHECK(memcmp(x, y, sizeof x) == 0);
  tide_sampler_free(s);

  /* bias after top_k 2 (ids 3, 0) touches only survivors */
  tide_sampler_stage two[2] = { stg(TIDE_SAMPLE_TOP_K, 0, 2), stg(TIDE_SAMPLE_LOGIT_BIAS, 0, 0) };
  s = mk(env, 5, 1, two, 2);
  int32_t ids2[2] = { 0, 4 };
  float b2[2] = { 5.0f, 10.0f };
  CHECK(tide_sampler_set_bias(s, ids2, b2, 2) == TIDE_OK);
  CHECK(kept(s, x, 5, y) == (BIT(0) | BIT(3)));
  CHECK(y[0] == 7.0f && y[3] == 3.0f);
  tide_sampler_free(s);

  /* bias then greedy picks the biased token */
  tide_sampler_stage g2[2] = { stg(TIDE_SAMPLE_LOGIT_BIAS, 0, 0), stg(TIDE_SAMPLE_TEMPERATURE, 0, 0) };
  s = mk(env, 5, 1, g2, 2);
  int32_t one[1] = { 2 };
  float ten[1] = { 10.0f };
  CHECK(tide_sampler_set_bias(s, one, ten, 1) == TIDE_OK);
  int32_t id = -1;
  CHECK(tide_sampler_sample(s, x, &id) == TIDE_OK && id == 2);
  tide_sampler_free(s);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- brute force */

static const float *cmp_x;
static int cmp_desc(const void *a, const void *b) { /* value desc, id asc */
  int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
  if (cmp_x[i] > cmp_x[j]) return -1;
  if (cmp_x[i] < cmp_x[j]) return 1;
  return (i > j) - (i < j);
}

static void brute_sort(const float *x, int32_t n, int32_t *order) {
  for (int32_t i = 0; i < n; i++) order[i] = i;
  cmp_x = x;
  qsort(order, (size_t)n, sizeof *order, cmp_desc);
}

/* Kept flags of top_p a over x by a full sort. */
static void brute_top_p(const float *x, int32_t n, double a, char *keep) {
  if (n <= 0) return;
  int32_t *o = malloc((size_t)n * sizeof *o);
  brute_sort(x, n, o);
  double mx = x[o[0]], sum = 0, cum = 0;
  for (int32_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
  memset(keep, 0, (size_t)n);
  for (int32_t i = 0; i < n; i++) {
    keep[o[i]] = 1;
    cum += exp((double)x[o[i]] - mx) / sum;
    if (cum >= a) break;
  }
  free(o);
}

/* Kept flags of typical a over x: rank by |-ln p - H| (ties: lower id),
** keep until the mass exceeds a. */
static const double *cmp_score;
static int cmp_score_asc(const void *a, const void *b) {
  int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
  if (cmp_score[i] < cmp_score[j]) return -1;
  if (cmp_score[i] > cmp_score[j]) return 1;
  return (i > j) - (i < j);
}

static void brute_typical(const float *x, int32_t n, double a, char *keep) {
  int32_t *o = malloc((size_t)n * sizeof *o);
  double *sc = malloc((size_t)n * sizeof *sc), mx = -INFINITY, sum = 0, h = 0, cum = 0;
  for (int32_t i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
  for (int32_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
  for (int32_t i = 0; i < n; i++) {
    double p = exp((double)x[i] - mx) / sum;
    h -= p * log(p);
  }
  for (int32_t i = 0; i < n; i++) {
    sc[i] = fabs(-log(exp((double)x[i] - mx) / sum) - h);
    o[i] = i;
  }
  cmp_score = sc;
  qsort(o, (size_t)n, sizeof *o, cmp_score_asc);
  memset(keep, 0, (size_t)n);
  for (int32_t i = 0; i < n; i++) {
    keep[o[i]] = 1;
    cum += exp((double)x[o[i]] - mx) / sum;
    if (cum > a) break;
  }
  free(o);
  free(sc);
}

static void test_large_vs_brute(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  enum { N = 3000 };
  float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
  char *keep = malloc(N);
  int32_t *o = malloc(N * sizeof *o);
  /* steep (nucleus inside the partial sort) and flat (nucleus > 256) rows */
  double scales[2] = { 8.0, 0.1 }, ps[3] = { 0.5, 0.9, 0.99 };
  for (int sc = 0; sc < 2; sc++) {
    for (int i = 0; i < N; i++) x[i] = (float)(scales[sc] * trng_unit());
    for (int pi = 0; pi < 3; pi++) {
      tide_sampler_stage st = stg(TIDE_SAMPLE_TOP_P, (float)ps[pi], 1);
      tide_sampler *s = mk(env, N, 1, &st, 1);
      memcpy(y, x, N * sizeof *x);
      CHECK(tide_sampler_apply(s, y) == TIDE_OK);
      brute_top_p(x, N, (float)ps[pi], keep);
      int bad = 0, nk = 0;
      for (int i = 0; i < N; i++) {
        bad += keep[i] ? y[i] != x[i] : y[i] != -INFINITY;
        nk += keep[i];
      }
      CHECKF(bad == 0, "top_p %g scale %g: %d ids differ (brute keeps %d)", ps[pi], scales[sc], bad, nk);
      tide_sampler_free(s);
    }
  }
  /* typical; and top_p after top_k (a sorted list) */
  for (int sc = 0; sc < 2; sc++) {
    for (int i = 0; i < N; i++) x[i] = (float)(scales[sc] * trng_unit());
    for (int pi = 0; pi < 3; pi++) {
      tide_sampler_stage st = stg(TIDE_SAMPLE_TYPICAL, (float)ps[pi], 1);
      tide_sampler *s = mk(env, N, 1, &st, 1);
      memcpy(y, x, N * sizeof *x);
      CHECK(tide_sampler_apply(s, y) == TIDE_OK);
      brute_typical(x, N, (float)ps[pi], keep);
      int bad = 0;
      for (int i = 0; i < N; i++) bad += keep[i] ? y[i] != x[i] : y[i] != -INFINITY;
      CHECKF(bad == 0, "typical %g scale %g: %d ids differ", ps[pi], scales[sc], bad);
      tide_sampler_free(s);
    }
    tide_sampler_stage two[2] = { stg(TIDE_SAMPLE_TOP_K, 0, 700), stg(TIDE_SAMPLE_TOP_P, 0.6f, 1) };
    tide_sampler *s = mk(env, N, 1, two, 2);
    memcpy(y, x, N * sizeof *x);
    CHECK(tide_sampler_apply(s, y) == TIDE_OK);
    brute_sort(x, N, o);
    float *z = malloc(N * sizeof *z); /* x with all but the 700 best masked */
    for (int i = 0; i < N; i++) z[i] = -INFINITY;
    for (int i = 0; i < 700; i++) z[o[i]] = x[o[i]];
    brute_top_p(z, N, 0.6f, keep);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += keep[i] && z[i] != -INFINITY ? y[i] != x[i] : y[i] != -INFINITY;
    CHECKF(bad == 0, "top_k 700, top_p .6, scale %g: %d ids differ", scales[sc], bad);
    free(z);
    tide_sampler_free(s);
  }
  /* top_k and min_p */
  for (int i = 0; i < N; i++) x[i] = (float)(int)(20 * trng_unit()); /* many ties */
  brute_sort(x, N, o);
  int32_t ks[4] = { 1, 50, 777, N - 1 };
  for (int ki = 0; ki < 4; ki++) {
    tide_sampler_stage st = stg(TIDE_SAMPLE_TOP_K, 0, ks[ki]);
    tide_sampler *s = mk(env, N, 1, &st, 1);
    memcpy(y, x, N * sizeof *x);
    CHECK(tide_sampler_apply(s, y) == TIDE_OK);
    memset(keep, 0, N);
    for (int i = 0; i < ks[ki]; i++) keep[o[i]] = 1;
    int bad = 0;
    for (int i = 0; i < N; i++) bad += keep[i] ? y[i] != x[i] : y[i] != -INFINITY;
    CHECKF(bad == 0, "top_k %d: %d ids differ", (int)ks[ki], bad);
    tide_sampler_free(s);
  }
  for (int i = 0; i < N; i++) x[i] = (float)(4 * trng_unit());
  tide_sampler_stage st = stg(TIDE_SAMPLE_MIN_P, 0.2f, 1);
  tide_sampler *s = mk(env, N, 1, &st, 1);
  memcpy(y, x, N * sizeof *x);
  CHECK(tide_sampler_apply(s, y) == TIDE_OK);
  double thr = x[tide_argmax(x, N)] + log(0.2f);
  int bad = 0;
  for (int i = 0; i < N; i++) bad += (double)x[i] >= thr ? y[i] != x[i] : y[i] != -INFINITY;
  CHECK(bad == 0);
  tide_sampler_free(s);
  free(x); free(y); free(keep); free(o);
  tide_env_free(env);
}

static void test_helpers_vs_brute(void) {
  int32_t ns[5] = { 1, 2, 7, 100, 1000 };
  for (int t = 0; t < 5; t++) {
    int32_t n = ns[t];
    float *x = malloc((size_t)n * sizeof *x), *v = malloc((size_t)n * sizeof *v);
    int32_t *o = malloc((size_t)n * sizeof *o), *ids = malloc((size_t)n * sizeof *ids);
    for (int rep = 0; rep < 3; rep++) {
      for (int32_t i = 0; i < n; i++) x[i] = (float)(int)(10 * trng_unit()) - 5; /* ties */
      if (rep == 2 && n > 1) x[n / 2] = -INFINITY;
      brute_sort(x, n, o);
      CHECK(tide_argmax(x, n) == o[0]);
      int32_t kk[4] = { 1, 3, n / 2, n };
      for (int ki = 0; ki < 4; ki++) {
        int32_t k = kk[ki] < 1 ? 1 : kk[ki] > n ? n : kk[ki];
        tide_topk(x, n, k, ids, v);
        int bad = 0;
        for (int32_t i = 0; i < k; i++) bad += ids[i] != o[i] || v[i] != x[o[i]];
        CHECKF(bad == 0, "topk n=%d k=%d", (int)n, (int)k);
      }
      /* log-softmax sums to one and matches the naive formula */
      double tot = 0, naive = 0;
      for (int32_t i = 0; i < n; i++) naive += exp((double)x[i]);
      int bad = 0;
      for (int32_t i = 0; i < n; i++) {
        double lp = tide_logprob(x, n, i);
        tot += exp(lp);
        if (x[i] == -INFINITY) bad += lp != -INFINITY;
        else bad += fabs(lp - ((double)x[i] - log(naive))) > 1e-12;
      }
      CHECK(bad == 0);
      CHECK_NEAR(tot, 1.0, 1e-12);
    }
    free(x); free(v); free(o); free(ids);
  }
  /* max subtraction: the naive sum would overflow */
  float big[3] = { 1000.0f, 1001.0f, 999.0f };
  CHECK_NEAR(tide_logprob(big, 3, 1), -log(1 + exp(-1.0) + exp(-2.0)), 1e-12);
  CHECK(tide_argmax(big, 3) == 1);
  /* bad arguments */
  CHECK(tide_argmax(big, 0) == -1);
  CHECK(isnan(tide_logprob(big, 3, 3)));
  CHECK(isnan(tide_logprob(big, 3, -1)));
  float ninf[2] = { -INFINITY, -INFINITY };
  CHECK(tide_argmax(ninf, 2) == 0);
  CHECK(isnan(tide_logprob(ninf, 2, 0)));
  int32_t id1[1] = { -7 };
  float v1[1] = { 0 };
  tide_topk(big, 3, 0, id1, v1); /* k = 0 writes nothing */
  CHECK(id1[0] == -7);
}

/* ---------------------------------------------------------------- draws */

static void draws(tide_sampler *s, const float *x, int n, int32_t *out) {
  int bad = 0;
  for (int i = 0; i < n; i++) bad += tide_sampler_sample(s, x, &out[i]) != TIDE_OK;
  CHECK(bad == 0);
}

static void test_seeds(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  float x[5] = { 0.1f, 0.2f, 0.0f, 0.3f, 0.15f };
  int32_t a[100], b[100], c[100];
  tide_sampler_stage st = stg(TIDE_SAMPLE_TEMPERATURE, 1.0f, 0);
  tide_sampler *s1 = mk(env, 5, 42, &st, 1), *s2 = mk(env, 5, 42, &st, 1), *s3 = mk(env, 5, 43, &st, 1);
  draws(s1, x, 100, a);
  draws(s2, x, 100, b);
  draws(s3, x, 100, c);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK(memcmp(a, c, sizeof a) != 0);
  /* reset with the same seed replays the sequence */
  tide_sampler_reset(s1, 42);
  draws(s1, x, 100, b);
  CHECK(memcmp(a, b, sizeof a) == 0);
  /* a sampler with no stages draws too */
  tide_sampler *s4 = NULL;
  CHECK(tide_sampler_new(env, 5, 42, &s4) == TIDE_OK);
  draws(s4, x, 100, b);
  CHECK(memcmp(a, b, sizeof a) == 0);
  tide_sampler_free(s1); tide_sampler_free(s2); tide_sampler_free(s3); tide_sampler_free(s4);
  tide_env_free(env);
}

/* Max |empirical - p| over 20,000 draws. With N = 20000 one standard
** deviation of a frequency is at most 0.0035, so 0.02 is > 5 sigma. */
static double draw_error(tide_sampler *s, const float *x, int n, const double *p) {
  enum { N = 20000 };
  int hist[8] = { 0 }, bad = 0;
  for (int i = 0; i < N; i++) {
    int32_t id = -1;
    bad += tide_sampler_sample(s, x, &id) != TIDE_OK;
    if (id >= 0 && id < n) hist[id]++;
  }
  CHECK(bad == 0);
  double err = 0;
  for (int i = 0; i < n; i++) {
    double e = fabs((double)hist[i] / N - p[i]);
    if (e > err) err = e;
  }
  return err;
}

static void test_distribution(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  float x[5] = { 0.0f, 1.0f, 2.0f, 0.5f, -1.0f };
  double p[5], z = 0;
  for (int i = 0; i < 5; i++) z += exp(x[i]);
  for (int i = 0; i < 5; i++) p[i] = exp(x[i]) / z;
  tide_sampler *s = NULL;
  CHECK(tide_sampler_new(env, 5, 7, &s) == TIDE_OK);
  double err = draw_error(s, x, 5, p);
  CHECKF(err < 0.02, "max abs error %g", err);
  tide_sampler_free(s);
  /* temperature 2 then top_k 3: softmax of x/2 over ids 2, 1, 3 */
  tide_sampler_stage st[2] = { stg(TIDE_SAMPLE_TEMPERATURE, 2.0f, 0), stg(TIDE_SAMPLE_TOP_K, 0, 3) };
  s = mk(env, 5, 8, st, 2);
  z = exp(1.0) + exp(0.5) + exp(0.25);
  double q[5] = { 0, exp(0.5) / z, exp(1.0) / z, exp(0.25) / z, 0 };
  err = draw_error(s, x, 5, q);
  CHECKF(err < 0.02, "max abs error %g", err);
  tide_sampler_free(s);
  /* top_k 1 is greedy */
  st[0] = stg(TIDE_SAMPLE_TOP_K, 0, 1);
  s = mk(env, 5, 9, st, 1);
  int32_t d[50];
  draws(s, x, 50, d);
  int bad = 0;
  for (int i = 0; i < 50; i++) bad += d[i] != 2;
  CHECK(bad == 0);
  tide_sampler_free(s);
  tide_env_free(env);
}

static void test_clone(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  enum { V = 20 };
  float x[V];
  for (int i = 0; i < V; i++) x[i] = (float)(2 * trng_unit());
  tide_sampler_stage st[4] = { pen(1.3f, 0.2f, 0.1f, 8), stg(TIDE_SAMPLE_LOGIT_BIAS, 0, 0),
                               stg(TIDE_SAMPLE_TOP_K, 0, 12), stg(TIDE_SAMPLE_TEMPERATURE, 0.9f, 0) };
  tide_sampler *s = mk(env, V, 42, st, 4);
  int32_t bid[2] = { 3, 4 };
  float bv[2] = { 0.5f, -0.5f };
  CHECK(tide_sampler_set_bias(s, bid, bv, 2) == TIDE_OK);
  int32_t id;
  for (int i = 0; i < 10; i++) {
    CHECK(tide_sampler_sample(s, x, &id) == TIDE_OK);
    tide_sampler_accept(s, id);
  }
  tide_sampler *c = NULL;
  CHECK(tide_sampler_clone(s, &c) == TIDE_OK);
  int32_t a[50], b[50];
  for (int i = 0; i < 50; i++) { /* interleaved: the two share no state */
    CHECK(tide_sampler_sample(s, x, &a[i]) == TIDE_OK);
    tide_sampler_accept(s, a[i]);
    CHECK(tide_sampler_sample(c, x, &b[i]) == TIDE_OK);
    tide_sampler_accept(c, b[i]);
  }
  CHECK(memcmp(a, b, sizeof a) == 0);
  /* reseeded forks diverge */
  tide_sampler_reset(c, 1);
  tide_sampler_reset(s, 2);
  for (int i = 0; i < 50; i++) {
    CHECK(tide_sampler_sample(s, x, &a[i]) == TIDE_OK);
    CHECK(tide_sampler_sample(c, x, &b[i]) == TIDE_OK);
  }
  CHECK(memcmp(a, b, sizeof a) != 0);
  tide_sampler_free(s); /* any order */
  tide_sampler_free(c);
  tide_env_free(env);
}

/* Random chains over random rows (with masked ids): the sampled token is
** always one that apply keeps, with a finite logit. */
static void test_chain_invariants(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  enum { V = 1500 };
  float *x = malloc(V * sizeof *x), *y = malloc(V * sizeof *y);
  int bad = 0;
  for (int rep = 0; rep < 60; rep++) {
    tide_sampler *s = NULL;
    CHECK(tide_sampler_new(env, V, (uint64_t)rep, &s) == TIDE_OK);
    int ns = 1 + (int)(5 * trng_unit());
    for (int i = 0; i < ns; i++) {
      int kind = TIDE_SAMPLE_PENALTIES + (int)(7 * trng_unit());
      tide_sampler_stage st = { kind, 0, 0, 0, 0 };
      switch (kind) {
      case TIDE_SAMPLE_PENALTIES: st = pen(1.5f, 0.3f, 0.2f, 16); break;
      case TIDE_SAMPLE_TEMPERATURE: st.a = trng_unit() < 0.15 ? 0 : (float)(0.3 + trng_unit()); break;
      case TIDE_SAMPLE_TOP_K: st.n = (int32_t)(600 * trng_unit()); break;
      default: st.a = (float)(0.05 + 0.95 * trng_unit()); st.n = (int32_t)(4 * trng_unit()); break;
      }
      CHECK(tide_sampler_push(s, &st) == TIDE_OK);
    }
    int32_t bid[3] = { 5, 6, 7 };
    float bv[3] = { 3.0f, -INFINITY, 1.0f };
    CHECK(tide_sampler_set_bias(s, bid, bv, 3) == TIDE_OK);
    for (int step = 0; step < 5; step++) {
      for (int i = 0; i < V; i++) x[i] = trng_unit() < 0.1 ? -INFINITY : (float)(6 * trng_unit());
      memcpy(y, x, V * sizeof *x);
      CHECK(tide_sampler_apply(s, y) == TIDE_OK);
      int32_t id = -1;
      CHECK(tide_sampler_sample(s, x, &id) == TIDE_OK);
      bad += !(id >= 0 && id < V && y[id] != -INFINITY && isfinite(y[id]));
      if (id >= 0 && id < V) tide_sampler_accept(s, id);
    }
    tide_sampler_free(s);
  }
  CHECK(bad == 0);
  free(x); free(y);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK);
  tide_sampler *s = (tide_sampler *)env;
  CHECK(tide_sampler_new(env, 0, 1, &s) == TIDE_ERR_ARG && s == NULL);
  CHECK(strstr(tide_env_errmsg(env), "n_vocab must be positive, got 0") != NULL);
  CHECK(tide_sampler_new(env, -5, 1, &s) == TIDE_ERR_ARG && s == NULL);
  CHECK(tide_sampler_new(NULL, 5, 1, &s) == TIDE_ERR_ARG);
  CHECK(tide_sampler_new(env, 5, 1, NULL) == TIDE_ERR_ARG);

  tide_sampler_stage good[2] = { pen(1.2f, 0, 0, 4), stg(TIDE_SAMPLE_TOP_P, 0.9f, 1) };
  s = mk(env, 5, 3, good, 1);
  tide_sampler *twin = mk(env, 5, 3, good, 2);
  struct { tide_sampler_stage st; const char *msg; } bad[] = {
    { stg(0, 0, 0), "unknown sampler stage kind 0" },
    { stg(99, 0, 0), "unknown sampler stage kind 99" },
    { stg(TIDE_SAMPLE_TOP_P, 0, 1), "top_p must be in (0, 1], got 0" },
    { stg(TIDE_SAMPLE_TOP_P, 1.5f, 1), "top_p must be in (0, 1], got 1.5" },
    { stg(TIDE_SAMPLE_TOP_P, NAN, 1), "top_p must be in (0, 1]" },
    { stg(TIDE_SAMPLE_MIN_P, -0.1f, 1), "min_p must be in [0, 1], got -0.1" },
    { stg(TIDE_SAMPLE_MIN_P, 1.1f, 1), "min_p must be in [0, 1]" },
    { stg(TIDE_SAMPLE_TYPICAL, 0, 1), "typical must be in (0, 1], got 0" },
    { stg(TIDE_SAMPLE_TYPICAL, 2, 1), "typical must be in (0, 1]" },
    { stg(TIDE_SAMPLE_TEMPERATURE, NAN, 0), "temperature must be a number" },
    { pen(-1.0f, 0, 0, 64), "repeat penalty must be a positive number, got -1" },
    { pen(0.0f, 0, 0, 64), "repeat penalty must be a positive number, got 0" },
    { pen(1.0f, NAN, 0, 64), "frequency" },
    { pen(1.0f, 0, 0, -2), "last_n must be -1 (all) or 0..32768, got -2" },
    { pen(1.0f, 0, 0, 40000), "got 40000" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECKF(tide_sampler_push(s, &bad[i].st) == TIDE_ERR_ARG, "case %zu", i);
    CHECKF(strstr(tide_env_errmsg(env), bad[i].msg) != NULL, "case %zu: '%s'", i, tide_env_errmsg(env));
  }
  CHECK(tide_sampler_push(s, NULL) == TIDE_ERR_ARG);
  CHECK(tide_sampler_push(NULL, &good[0]) == TIDE_ERR_ARG);
  /* bad logits */
  float x[5] = { 0.1f, 0.2f, NAN, 0.3f, 0.15f };
  int32_t id = 77;
  CHECK(tide_sampler_sample(s, x, &id) == TIDE_ERR_ARG && id == -1);
  CHECK(strstr(tide_env_errmsg(env), "logit of token 2 is nan") != NULL);
  x[2] = INFINITY;
  CHECK(tide_sampler_apply(s, x) == TIDE_ERR_ARG);
  CHECK(x[2] == INFINITY && x[0] == 0.1f); /* untouched on failure */
  float ninf[5] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY };
  CHECK(tide_sampler_sample(s, ninf, &id) == TIDE_ERR_ARG);
  CHECK(strstr(tide_env_errmsg(env), "every logit is -inf") != NULL);
  CHECK(tide_sampler_sample(s, NULL, &id) == TIDE_ERR_ARG);
  CHECK(tide_sampler_sample(s, x, NULL) == TIDE_ERR_ARG);
  /* still usable: finishing the chain gives what the twin gives */
  CHECK(tide_sampler_push(s, &good[1]) == TIDE_OK);
  float y[5] = { 0.1f, 0.2f, 0.0f, 0.3f, 0.15f };
  int32_t a[40], b[40];
  for (int i = 0; i < 40; i++) {
    CHECK(tide_sampler_sample(s, y, &a[i]) == TIDE_OK);
    CHECK(tide_sampler_sample(twin, y, &b[i]) == TIDE_OK);
    tide_sampler_accept(s, a[i]);
    tide_sampler_accept(twin, b[i]);
  }
  CHECK(memcmp(a, b, sizeof a) == 0);
  /* the stage table is capped */
  tide_sampler_stage k = stg(TIDE_SAMPLE_TOP_K, 0, 3);
  int n = 2;
  while (tide_sampler_push(s, &k) == TIDE_OK) n++;
  CHECK(n == 16);
  CHECK(strstr(tide_env_errmsg(env), "too many sampler stages (max 16)") != NULL);
  CHECK(tide_sampler_sample(s, y, &id) == TIDE_OK);
  tide_sampler_free(s);
  tide_sampler_free(twin);
  tide_sampler_free(NULL);
  tide_sampler_accept(NULL, 1);
  tide_sampler_reset(NULL, 1);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- memory */

/* Builds a full sampler and a clone; returns the first failing status. */
static int build_all(tide_env *env, tide_sampler **s, tide_sampler **c) {
  tide_sampler_stage st[3] = { pen(1.1f, 0.1f, 0.1f, -1), stg(TIDE_SAMPLE_LOGIT_BIAS, 0, 0),
                               pen(1.2f, 0, 0, 3) };
  int32_t ids[2] = { 1, 2 };
  float b[2] = { 1, 2 };
  int r = tide_sampler_new(env, 100, 5, s);
  for (int i = 0; !r && i < 3; i++) r = tide_sampler_push(*s, &st[i]);
  if (!r) r = tide_sampler_set_bias(*s, ids, b, 2);
  if (!r) r = tide_sampler_set_bias(*s, ids, b, 1); /* replaces */
  if (!r) { tide_sampler_accept(*s, 4); r = tide_sampler_clone(*s, c); }
  return r;
}

static void test_alloc(void) {
  test_allocator c = { 0 };
  tide_env *env = NULL;
  CHECK(tide_env_new(&env, test_alloc_fn, &c) == TIDE_OK);
  tide_sampler *s = NULL, *k = NULL;
  CHECK(build_all(env, &s, &k) == TIDE_OK);
  float x[100];
  for (int i = 0; i < 100; i++) x[i] = (float)i / 50;
  long calls = c.n_alloc;
  int32_t id;
  CHECK(tide_sampler_sample(k, x, &id) == TIDE_OK);
  CHECK(tide_sampler_apply(s, x) == TIDE_OK);
  CHECK(c.n_alloc == calls); /* sampling allocates nothing */
  tide_env_free(env);      /* the samplers keep it alive */
  tide_sampler_free(s);
  tide_sampler_free(k);
  CHECK(c.live == 0 && c.blocks == 0);

  /* fail the n-th allocation, n = 1, 2, ... until everything succeeds */
  int ok = 0, leaks = 0, nulls = 0, steps = 0;
  for (long n = 1; !ok && n < 100; n++, steps++) {
    c = (test_allocator){ 0 };
    CHECK(tide_env_new(&env, test_alloc_fn, &c) == TIDE_OK);
    c.fail_at = c.n_alloc + n;
    s = k = NULL;
    int r = build_all(env, &s, &k);
    if (r == TIDE_OK) ok = 1;
    else {
      nulls += k != NULL;
      if (r != TIDE_ERR_NOMEM) leaks += 1000;
    }
    tide_sampler_free(s);
    tide_sampler_free(k);
    tide_env_free(env);
    leaks += c.live != 0 || c.blocks != 0;
  }
  CHECK(ok);
  CHECK(steps > 5);
  CHECK(leaks == 0);
  CHECK(nulls == 0);
}

TEST_MAIN(test_top_p, test_min_p, test_typical, test_top_k_temperature, test_penalties,
          test_logit_bias, test_large_vs_brute, test_helpers_vs_brute, test_seeds,
          test_distribution, test_clone, test_chain_invariants, test_errors, test_alloc)
