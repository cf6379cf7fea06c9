/*
** test.h -- the tiny C test harness of spec/core/.
** Layer: tests. Each test binary includes this once, defines test functions
** and ends with TEST_MAIN(t1, t2, ...). It prints failures as they happen
** and a last line "N passed, N failed" that `make test` adds up.
*/
#ifndef TIDE_TEST_H
#define TIDE_TEST_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
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

/* A checking allocator (tide_alloc_fn) for leak and out-of-memory tests.
** ud is a test_allocator; zero-initialised it only counts. Every block keeps
** a 16-byte header with its size, so a free or realloc whose osize is not the
** block's size is counted in bad_size and fails the current test. live adds
** up the sizes as the caller gives them, so a wrong osize also shows there.
** Each call with nsize > 0 (an allocation or any realloc, shrinking too) is
** one in n_alloc; the fail_at-th of them (1-based; 0: never) returns NULL,
** which walks a constructor through every out-of-memory path in turn. */
typedef struct {
  long long live;  /* bytes allocated and not freed */
  long blocks;     /* blocks allocated and not freed */
  long n_alloc;    /* calls with nsize > 0, the failing one included */
  long fail_at;    /* the call n_alloc == fail_at returns NULL; 0: never */
  long bad_size;   /* frees and reallocs given a wrong osize */
} test_allocator;

#define TEST_ALLOC_HDR 16 /* keeps the blocks aligned as malloc's */
_Static_assert(_Alignof(max_align_t) <= TEST_ALLOC_HDR, "TEST_ALLOC_HDR too small");

static inline void *test_alloc_fn(void *ud, void *ptr, size_t osize, size_t nsize) {
  test_allocator *a = ud;
  unsigned char *p = ptr ? (unsigned char *)ptr - TEST_ALLOC_HDR : NULL;
  if (p) {
    size_t size;
    memcpy(&size, p, sizeof size);
    if (size != osize) {
      a->bad_size++;
      test_failed++;
      fprintf(stderr, "FAIL %s: a block of %zu bytes freed or resized as %zu bytes\n",
              test_current, size, osize);
    }
  }
  if (nsize == 0) {
    if (p) { a->live -= (long long)osize; a->blocks--; free(p); }
    return NULL;
  }
  if (++a->n_alloc == a->fail_at || nsize > SIZE_MAX - TEST_ALLOC_HDR) return NULL;
  unsigned char *q = realloc(p, nsize + TEST_ALLOC_HDR);
  if (!q) return NULL;
  a->live += (long long)nsize - (long long)(p ? osize : 0);
  if (!p) a->blocks++;
  memcpy(q, &nsize, sizeof nsize);
  return q + TEST_ALLOC_HDR;
}

/* The same with one shared state, for tests that only check for leaks:
** they assert test_live_bytes == 0 once everything is freed. */
static test_allocator test_counts __attribute__((unused));
#define test_live_bytes (test_counts.live)
static inline void *test_count_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud;
  return test_alloc_fn(&test_counts, p, osize, nsize);
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
