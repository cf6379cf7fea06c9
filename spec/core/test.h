/*
** test.h -- the tiny C test harness of spec/core/.
** Layer: tests. Each test binary includes this once, defines test functions
** and ends with TEST_MAIN(t1, t2, ...). It prints failures as they happen
** and a last line "N passed, N failed" that `make test` adds up.
*/
#ifndef TIDE_TEST_H
#define TIDE_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed, test_failed;
static const char *test_current;

/* One check: counts a pass or prints the failure with file:line. */
#define CHECK(cond) check_((cond) != 0, #cond, __FILE__, __LINE__)
#define CHECKF(cond, ...) \
  do { if (!CHECK(cond)) { fprintf(stderr, "    "); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } } while (0)
/* |a - b| <= tol */
#define CHECK_NEAR(a, b, tol) \
  CHECKF(fabs((double)(a) - (double)(b)) <= (tol), "%s = %.9g, %s = %.9g", #a, (double)(a), #b, (double)(b))

static inline int check_(int ok, const char *what, const char *file, int line) {
  if (ok) test_passed++;
  else {
    test_failed++;
    fprintf(stderr, "FAIL %s: %s:%d: %s\n", test_current, file, line, what);
  }
  return ok;
}

/* A counting allocator (tide_alloc_fn): tests check that everything they
** made is freed by asserting test_live_bytes == 0 afterwards. */
static long long test_live_bytes __attribute__((unused));
static inline void *test_count_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    if (p) test_live_bytes -= (long long)osize;
    free(p);
    return NULL;
  }
  void *q = realloc(p, nsize);
  if (q) test_live_bytes += (long long)nsize - (long long)(p ? osize : 0);
  return q;
}

/* The shared fixtures folder, or NULL (tests then skip with a reason). */
static inline const char *test_fixtures(void) {
  const char *cands[] = { getenv("TIDE_FIXTURES"), "../shared/fixtures", NULL };
  for (int i = cands[0] ? 0 : 1; cands[i]; i++) {
    char p[512];
    snprintf(p, sizeof p, "%s/README.md", cands[i]);
    FILE *f = fopen(p, "rb");
    if (f) { fclose(f); return cands[i]; }
  }
  return NULL;
}

#define SKIP(reason) do { printf("skip %s: %s\n", test_current, reason); return; } while (0)

typedef void (*test_fn)(void);
static inline int test_run_(const char *names, test_fn *fns, int n) {
  const char *p = names;
  for (int i = 0; i < n; i++) {
    char name[128];
    while (*p == ' ' || *p == ',') p++;
    int k = 0;
    while (*p && *p != ',' && k < 127) name[k++] = *p++;
    while (k > 0 && name[k - 1] == ' ') k--;
    name[k] = 0;
    test_current = name;
    fns[i]();
  }
  printf("%d passed, %d failed\n", test_passed, test_failed);
  return test_failed ? 1 : 0;
}

#define TEST_MAIN(...) \
  int main(void) { \
    test_fn fns[] = { __VA_ARGS__ }; \
    return test_run_(#__VA_ARGS__, fns, (int)(sizeof fns / sizeof fns[0])); \
  }

#endif
