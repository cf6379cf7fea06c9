/*
** test_regex.c -- the regex compiler against PCRE2 as the oracle.
** Layer: tests. For a table of patterns, strings made three ways (random
** over a pattern-specific alphabet, random walks of the DFA, mutations of
** both) must be accepted by the DFA exactly when PCRE2 (UTF mode, anchored
** at both ends) matches them whole. Then the rejected constructs, syntax
** errors, limits and out-of-memory paths.
*/
#include <time.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "regex.h"
#include "test.h"
#include "tide.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (uint32_t)(rng >> 11) % n;
}

/* ---------------------------------------------------------------- allocators */

typedef struct { long n_alloc, fail_at; size_t live; } counter;

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counter *c = ud;
  if (nsize == 0) {
    if (ptr) c->live -= osize;
    free(ptr);
    return NULL;
  }
  if (c->fail_at > 0 && ++c->n_alloc >= c->fail_at) return NULL;
  void *p = realloc(ptr, nsize);
  if (p) c->live += nsize - (ptr ? osize : 0);
  return p;
}

/* ---------------------------------------------------------------- helpers */

static int dfa_match(const tidei_dfa *f, const uint8_t *s, size_t n) {
  int32_t st = 1;
  for (size_t i = 0; i < n; i++) {
    st = f->next[(size_t)st * 256 + s[i]];
    if (!st) return 0;
  }
  return f->accept[st];
}

static int pcre_match(pcre2_code *re, pcre2_match_data *md, const uint8_t *s, size_t n) {
  return pcre2_match(re, s, n, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, md, NULL) >= 0;
}

/* The UTF-8 characters of an alphabet string: offsets of each start. */
static int split_chars(const char *a, int *start, int *len) {
  int n = 0;
  for (int i = 0; a[i];) {
    unsigned char c = (unsigned char)a[i];
    int l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    start[n] = i;
    len[n++] = l;
    i += l;
  }
  return n;
}

typedef struct { uint8_t b[96]; size_t n; } str;

static void rand_str(str *s, const char *alpha, const int *st, const int *ln, int na) {
  s->n = 0;
  int k = (int)rnd(9);
  for (int i = 0; i < k && s->n + 4 < sizeof s->b; i++) {
    int c = (int)rnd((uint32_t)na);
    memcpy(s->b + s->n, alpha + st[c], (size_t)ln[c]);
    s->n += (size_t)ln[c];
  }
}

static void walk_str(str *s, const tidei_dfa *f) {
  int32_t st = 1;
  s->n = 0;
  while (s->n + 1 < sizeof s->b) {
    if (f->accept[st] && rnd(4) == 0) break;
    int opts[256], no = 0;
    for (int b = 0; b < 256; b++) if (f->next[(size_t)st * 256 + (size_t)b]) opts[no++] = b;
    if (!no) break;
    int b = opts[rnd((uint32_t)no)];
    s->b[s->n++] = (uint8_t)b;
    st = f->next[(size_t)st * 256 + (size_t)b];
  }
}

/* Insert, delete or replace one alphabet character (or, rarely, a raw byte). */
static void mutate(str *s, const char *alpha, const int *st, const int *ln, int na) {
  int op = (int)rnd(4);
  size_t at = s->n ? rnd((uint32_t)s->n + 1) : 0;
  if (op == 3) { /* raw byte: may break UTF-8 */
    if (s->n < sizeof s->b) {
      s->b[at < s->n ? at : s->n] = (uint8_t)rnd(256);
      if (at >= s->n) s->n++;
    }
    return;
  }
  if (op == 1 && s->n) { /* delete a byte run up to the next char start */
    size_t e = at < s->n ? at + 1 : s->n;
    if (at >= s->n) at = s->n - 1, e = s->n;
    while (e < s->n && (s->b[e] & 0xC0) == 0x80) e++;
    memmove(s->b + at, s->b + e, s->n - e);
    s->n -= e - at;
    return;
  }
  int c = (int)rnd((uint32_t)na);
  if (s->n + (size_t)ln[c] > sizeof s->b) return;
  if (at > s->n) at = s->n;
  memmove(s->b + at + ln[c], s->b + at, s->n - at);
  memcpy(s->b + at, alpha + st[c], (size_t)ln[c]);
  s->n += (size_t)ln[c];
}

/* ---------------------------------------------------------------- the oracle table */

static const struct { const char *re, *alpha;
} cases[] = {
    {"[0-9]+", "0159a -"},
    {"\\d{3}-\\d{4}", "019-x"},
    {"[A-Z][a-z]+", "AZaqz09 \xc3\xa9"},
    {"(ab|cd){2,4}", "abcdx"},
    {"\\p{L}+", "aZ\xc3\xa9\xc3\x9f\xd0\xb6\xe4\xb8\xad"
                "1 _\xf0\x9f\x98\x80"},
    {"[^\"\\\\]*", "a\"\\\xc3\xa9 \n"},
    {"\\w+@\\w+\\.(com|org)", "ab@.comrgx"},
    {"\\d{4}-\\d{2}-\\d{2}", "0129-"},
    {".{3}", "ab\n\xc3\xa9\xf0\x9f\x98\x80"},
    {"x?y*z+", "xyzw"},
    {"((a|b)c)*d", "abcd"},
    {"(?:a(?:b(?:c)?)?)+", "abcx"},
    {"a|b|c|", "abcd"},
    {"\\n\\t\\r\\f\\e\\a\\x41\\x{e9}\\0\\o{102}\\101", "\n\t\r\f\x1b\x07"
                                                       "AB\xc3\xa9"
                                                       "a"},
    {"[\\x00-\\x1f]", "\x01\x1f a\t"},
    {"\\s+", " \t\n\v\f\r\xc2\xa0"
             "a"},
    {"\\S\\D\\W", "a1 _."},
    {"\\h\\v\\H\\V", " \t\xc2\xa0\n\r\xe2\x80\xa8"
                     "a"},
    {"[[:alpha:][:digit:]]+", "aZ09_-\xc3\xa9"},
    {"[[:^space:]x]", " ax\t"},
    {"[[:punct:][:xdigit:]]", "!/:@[`{~aFgG"},
    {"[a-f0-9]{2,}", "af09gz"},
    {"[^a-z]", "amz A1\xc3\xa9\n"},
    {"\\P{L}", "a\xc3\xa9"
               "1 \xf0\x9f\x98\x80"},
    {"\\p{Lu}\\p{Ll}*", "Aa\xc3\x89\xc3\xa9"
                        "1"},
    {"\\p{N}+", "0\xd9\xa1\xc2\xb2\xe2\x85\xab"
                "a"},
    {"\\p{Nd}", "0\xd9\xa1\xc2\xb2"
                "a"},
    {"\\p{P}|\\p{S}", ".,!+$\xe2\x82\xac"
                      "a"},
    {"\\p{Z}", " \xc2\xa0\xe3\x80\x80"
               "a"},
    {"\\p{Greek}+", "\xce\xb1\xce\xb2\xce\xa9"
                    "a"},
    {"[\\p{L}\\d_]+", "a_1 \xc3\xa9-"},
    {"[^\\p{L}]", "a\xc3\xa9"
                  "1 "},
    {"\\pL\\p{^L}", "a1 \xc3\xa9"},
    {"a{0}b", "ab"},
    {"a{2}", "ab"},
    {"a{2,}", "ab"},
    {"a{1,3}?b", "ab"},
    {"(a*)*b", "ab"},
    {"(a|ab)(c|bcd)(d*)", "abcd"},
    {"^abc$", "abc\n"},
    {"\\Aab\\z", "ab"},
    {"^(a|b)+$", "ab"},
    {"(^a|^b)c", "abc"},
    {"a$|b$", "ab"},
    {"ab\\Z", "ab\n"},
    {"(?s).", "a\n"},
    {"(?s:.)\\n.", "a\n"},
    {"(?x) a b # comment\n c", "abc #"},
    {"(?<year>\\d{4})-(?P<m>\\d\\d)(?'d'x)", "019-x"},
    {"\\Qa.b\\E+", "a.bx"},
    {"[]a]+", "]ab"},
    {"[^]a]", "]ab"},
    {"[a\\-z]", "a-zb"},
    {"[-a][a-]", "a-b"},
    {"\\.\\*\\+\\?\\(\\)\\[\\{\\|\\^\\$", ".*+?()[{|^$"},
    {"\xc3\xa9+", "\xc3\xa9"
                  "e"},
    {"[\xc3\xa9-\xc3\xbc]", "\xc3\xa9\xc3\xbc\xc3\xbd\xc3\xa8"},
    {"[\\x{1F600}-\\x{1F64F}]+", "\xf0\x9f\x98\x80\xf0\x9f\x98\x8e\xf0\x9f\x99\x90"
                                 "a"},
    {"\\R", "\r\n\x0b\x0c\xc2\x85"
            "a"},
    {"\\N+", "a\n\r"},
    {"\\cA\\cz", "\x01\x1a"
                 "a"},
    {"[\\b]", "\b"
              "b"},
    {"\"([^\"\\\\\\x00-\\x1f]|\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4})*\"",
     "\"\\ab/nu0F\x01\xc3\xa9"},
    {"-?(0|[1-9]\\d*)(\\.\\d+)?([eE][+-]?\\d+)?", "-019.eE+"},
    {"(true|false|null)", "truefalsn"},
    {"[a-z]+(-[a-z]+)*", "ab-"},
    {"(a|b)*abb", "ab"},
    {"((((a))))", "ab"},
    {"(a?){3}a{3}", "a"},
    {"a{,3}", "a{,3}"},
    {"a{ 2}", "a{ 2}"},
    {"a{x", "a{x"},
    {"x{2,3}y{0,2}", "xy"},
    {"[\\d\\s]+", "1 a\t"},
    {"\\x{10FFFF}|\\x{FFFF}|\\x{D7FF}|\\x{E000}",
     "\xf4\x8f\xbf\xbf\xef\xbf\xbf\xed\x9f\xbf\xee\x80\x80"
     "a"},
    {"(?m)^ab$", "ab\n"},
    {"(?U)a+b", "ab"},
    {"(?s-s).", "a\n"},
    {"(?#comment)a(?:)b()", "ab"},
    {"(|a)+", "ab"},
    {"[\\w.-]+", "a.-_ "},
    {"[^\\d\\s]", "1 a\xc3\xa9"},
    {"[\\S]", " a"},
    {"[\\p{Lu}\\p{Nd}]{2}", "A1a"},
    {"(?|a|b)c", "abc"},
};

static void test_oracle(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  int n_cases = (int)(sizeof cases / sizeof cases[0]);
  long n_strings = 0;
  pcre2_match_data *md = pcre2_match_data_create(16, NULL);
  for (int k = 0; k < n_cases; k++) {
    const char *pat = cases[k].re;
    int err;
    PCRE2_SIZE eoff;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &eoff, NULL);
    CHECKF(re != NULL, "pcre2 rejects '%s'", pat);
    tidei_dfa *f = NULL;
    int st = tidei_regex_build(env, pat, strlen(pat), &f);
    CHECKF(st == TIDE_OK, "'%s': %s", pat, tide_env_errmsg(env));
    if (!re || st) { pcre2_code_free(re); continue; }
    int sst[64], sln[64];
    int na = split_chars(cases[k].alpha, sst, sln);
    int bad = 0, n_acc = 0;
    str s, base[64];
    int nb = 0;
    for (int i = 0; i < 1500 && bad < 3; i++) {
      int how = i % 3;
      if (how == 0) rand_str(&s, cases[k].alpha, sst, sln, na);
      else if (how == 1) { walk_str(&s, f); if (nb < 64) base[nb++] = s; }
      else {
        s = nb ? base[rnd((uint32_t)nb)] : s;
        int m = 1 + (int)rnd(3);
        for (int j = 0; j < m; j++) mutate(&s, cases[k].alpha, sst, sln, na);
      }
      int a = dfa_match(f, s.b, s.n), b = pcre_match(re, md, s.b, s.n);
      n_acc += b;
      n_strings++;
      if (a != b) {
        bad++;
        fprintf(stderr, "    '%s' on \"", pat);
        for (size_t j = 0; j < s.n; j++)
          fprintf(stderr, s.b[j] >= 32 && s.b[j] < 127 ? "%c" : "\\x%02x", s.b[j]);
        fprintf(stderr, "\": tide %d, pcre2 %d\n", a, b);
      }
    }
    CHECKF(bad == 0, "pattern '%s' disagrees with PCRE2", pat);
    CHECKF(n_acc > 0, "pattern '%s': no matching string generated", pat);
    tidei_regex_engine.destroy(env, f);
    pcre2_code_free(re);
  }
  pcre2_match_data_free(md);
  printf("oracle: %d patterns, %ld strings\n", n_cases, n_strings);
  tide_env_free(env);
}

/* \u is tide's extension (PCRE2 rejects it): checked against fixed strings. */
static void test_u_escape(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tidei_dfa *f;
  const char *pat = "\\u0041\\u00e9\\u{1F600}[\\u0030-\\u0039]";
  CHECK(tidei_regex_build(env, pat, strlen(pat), &f) == TIDE_OK);
  const char *yes = "A\xc3\xa9\xf0\x9f\x98\x80" "5", *no = "A\xc3\xa9\xf0\x9f\x98\x80" "a";
  CHECK(dfa_match(f, (const uint8_t *)yes, strlen(yes)));
  CHECK(!dfa_match(f, (const uint8_t *)no, strlen(no)));
  tidei_regex_engine.destroy(env, f);
  CHECK(tidei_regex_build(env, "\\u12", 4, &f) == TIDE_ERR_FORMAT);
  CHECK(tidei_regex_build(env, "\\uD800", 6, &f) == TIDE_ERR_FORMAT);
  tide_env_free(env);
}

/* Every accepted string is valid UTF-8: random bytes never slip through. */
static void test_utf8_only(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  const char *pats[] = { ".*", "[^a]*", "\\P{L}*", "(?s).*", "\\W*" };
  pcre2_match_data *md = pcre2_match_data_create(4, NULL);
  for (int k = 0; k < 5; k++) {
    tidei_dfa *f;
    CHECK(tidei_regex_build(env, pats[k], strlen(pats[k]), &f) == TIDE_OK);
    int err;
    PCRE2_SIZE eoff;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pats[k], PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &eoff, NULL);
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
      uint8_t b[6];
      size_t n = 1 + rnd(5);
      for (size_t j = 0; j < n; j++) b[j] = (uint8_t)(rnd(2) ? 0x80 + rnd(128) : rnd(256));
      bad += dfa_match(f, b, n) != pcre_match(re, md, b, n);
    }
    CHECKF(bad == 0, "'%s': %d disagreements on random bytes", pats[k], bad);
    pcre2_code_free(re);
    tidei_regex_engine.destroy(env, f);
  }
  pcre2_match_data_free(md);
  tide_env_free(env);
}

/* ---------------------------------------------------------------- errors */

static const struct { const char *re; int status; const char *msg; } errors[] = {
  { "(a)\\1", TIDE_ERR_UNSUPPORTED, "offset 3: backreference '\\1'" },
  { "ab(?=c)", TIDE_ERR_UNSUPPORTED, "offset 2: lookahead" },
  { "(?!a)b", TIDE_ERR_UNSUPPORTED, "offset 0: negative lookahead" },
  { "(?<=a)b", TIDE_ERR_UNSUPPORTED, "lookbehind" },
  { "(?<!a)b", TIDE_ERR_UNSUPPORTED, "lookbehind" },
  { "x(?>a)", TIDE_ERR_UNSUPPORTED, "offset 1: atomic group" },
  { "a++", TIDE_ERR_UNSUPPORTED, "possessive" },
  { "a{2}+", TIDE_ERR_UNSUPPORTED, "possessive" },
  { "\\bfoo", TIDE_ERR_UNSUPPORTED, "offset 0: word boundary" },
  { "a\\Bx", TIDE_ERR_UNSUPPORTED, "offset 1: non-word-boundary" },
  { "(a)(?(1)a|b)", TIDE_ERR_UNSUPPORTED, "offset 3: conditional" },
  { "(a)(?1)", TIDE_ERR_UNSUPPORTED, "recursion" },
  { "a(?R)?", TIDE_ERR_UNSUPPORTED, "recursion" },
  { "(?<n>a)\\k<n>", TIDE_ERR_UNSUPPORTED, "backreference" },
  { "(?P<n>a)(?P=n)", TIDE_ERR_UNSUPPORTED, "backreference" },
  { "a\\Kb", TIDE_ERR_UNSUPPORTED, "offset 1: '\\K'" },
  { "(?i)abc", TIDE_ERR_UNSUPPORTED, "caseless" },
  { "a^b", TIDE_ERR_UNSUPPORTED, "offset 1: '^'" },
  { "a$b", TIDE_ERR_UNSUPPORTED, "offset 1: '$'" },
  { "(^a)+", TIDE_ERR_UNSUPPORTED, "offset 1: '^'" },
  { "(a$)*", TIDE_ERR_UNSUPPORTED, "'$'" },
  { "(*UTF)a", TIDE_ERR_UNSUPPORTED, "verb" },
  { "\\X", TIDE_ERR_UNSUPPORTED, "grapheme" },
  { "a{1001}", TIDE_ERR_UNSUPPORTED, "repetition count 1001 above the limit 1000" },
  { "(a|b)*a(a|b){13}", TIDE_ERR_UNSUPPORTED, "more than 10000 states" },
  { "((a|b|c|d){1000}){1000}", TIDE_ERR_UNSUPPORTED, "pattern too large" },
  { "(ab", TIDE_ERR_FORMAT, "offset 3: missing closing parenthesis for '(' at offset 0" },
  { "ab)", TIDE_ERR_FORMAT, "offset 2: unmatched closing parenthesis" },
  { "x[ab", TIDE_ERR_FORMAT,
    "offset 4: missing terminating ] for character class opened at offset 1" },
  { "a{3,2}", TIDE_ERR_FORMAT, "numbers out of order" },
  { "*a", TIDE_ERR_FORMAT, "offset 0: quantifier does not follow a repeatable item" },
  { "a**", TIDE_ERR_FORMAT, "offset 2: quantifier does not follow" },
  { "^*", TIDE_ERR_FORMAT, "quantifier does not follow" },
  { "ab\\", TIDE_ERR_FORMAT, "offset 3: \\ at end of pattern" },
  { "[z-a]", TIDE_ERR_FORMAT, "range out of order" },
  { "\\p{Foo}", TIDE_ERR_FORMAT, "unknown property" },
  { "(?<1a>x)", TIDE_ERR_FORMAT, "group name" },
  { "\\x{110000}", TIDE_ERR_FORMAT, "too large" },
  { "a{99999}", TIDE_ERR_FORMAT, "number too big" },
  { "[\\d-z]", TIDE_ERR_FORMAT, "invalid range" },
  { "[a-\\d]", TIDE_ERR_FORMAT, "invalid range" },
  { "\\c", TIDE_ERR_FORMAT, "\\c at end" },
  { "\\q", TIDE_ERR_FORMAT, "unrecognized character follows" },
  { "(?z)", TIDE_ERR_FORMAT, "unrecognized character after (?" },
  { "[[:foo:]]", TIDE_ERR_FORMAT, "POSIX class" },
  { "\xff", TIDE_ERR_FORMAT, "invalid UTF-8" },
  { "[^\\x00-\\x{10FFFF}]", TIDE_ERR_ARG, "matches no string" },
};

static void test_errors(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  for (size_t k = 0; k < sizeof errors / sizeof errors[0]; k++) {
    tide_constraint *c = (tide_constraint *)1;
    int st = tide_regex_compile(env, errors[k].re, strlen(errors[k].re), &c);
    const char *msg = tide_env_errmsg(env);
    CHECKF(st == errors[k].status && c == NULL, "'%s': status %d (want %d): %s", errors[k].re, st,
           errors[k].status, msg);
    CHECKF(strstr(msg, errors[k].msg) != NULL, "'%s': message \"%s\" lacks \"%s\"", errors[k].re,
           msg, errors[k].msg);
  }
  /* the bad ones PCRE2 also rejects (sanity of the FORMAT list) */
  tide_constraint *c;
  CHECK(tide_regex_compile(env, "a", 1, NULL) == TIDE_ERR_ARG);
  CHECK(tide_regex_compile(NULL, "a", 1, &c) == TIDE_ERR_ARG && c == NULL);
  CHECK(tide_regex_compile(env, "abc", 3, &c) == TIDE_OK && c != NULL);
  tide_constraint_free(c);
  tide_constraint_free(NULL);
  /* the empty pattern matches the empty string */
  tidei_dfa *f;
  CHECK(tidei_regex_build(env, "", 0, &f) == TIDE_OK && f->accept[1] && f->final[1]);
  tidei_regex_engine.destroy(env, f);
  tide_env_free(env);
}

/* Syntax errors report the offset where PCRE2 detects them (pcre2_compile's
** erroroffset), checked against PCRE2 itself; pcre2 0 marks the two tide
** extensions PCRE2 treats differently (\u; a \x{ brace missing at the end,
** which tide reports at the end of the pattern). Unsupported constructs that
** PCRE2 accepts report where they start. */
static const struct { const char *re; size_t off; int pcre2; } offsets[] = {
  /* unclosed group: the end of the pattern */
  { "(ab", 3, 1 }, { "((a)", 4, 1 }, { "a(b(c)", 6, 1 }, { "(?:ab", 5, 1 }, { "a|(b", 4, 1 },
  { "(?<n>", 5, 1 }, { "(?", 2, 1 }, { "(?#abc", 6, 1 },
  /* unbalanced ')' */
  { "ab)", 2, 1 }, { "(a|b))", 5, 1 },
  /* bad quantifier: the last character of the quantifier */
  { "a{3,2}", 5, 1 }, { "x{100000}", 8, 1 }, { "x{10,100000}", 11, 1 },
  /* nothing to repeat */
  { "*a", 0, 1 }, { "a**", 2, 1 }, { "^*", 1, 1 }, { "a{2}{3}", 6, 1 }, { "a*{2}", 4, 1 },
  { "a+?*", 3, 1 }, { "a$*", 2, 1 },
  /* bad escapes */
  { "ab\\", 3, 1 }, { "\\q", 1, 1 }, { "a\\q", 2, 1 }, { "[\\q]", 2, 1 }, { "\\c", 2, 1 },
  { "\\o12", 2, 1 }, { "\\x{zz}", 3, 1 }, { "\\x{110000}", 9, 1 }, { "ab\\x{}", 5, 1 },
  { "\\p{Foo}", 7, 1 }, { "a\\p{Foo}x", 8, 1 }, { "a\\P{Foo", 7, 1 }, { "\\p", 2, 1 },
  { "a\\L", 3, 1 }, { "\\N{x}", 2, 1 }, { "ab\\x{12", 7, 0 }, { "a\\u12", 5, 0 },
  /* classes: unterminated at the end; ranges at their upper end */
  { "x[ab", 4, 1 }, { "[a", 2, 1 }, { "[]", 2, 1 }, { "[^]", 3, 1 }, { "[z-a]", 3, 1 },
  { "ab[b-a]c", 5, 1 }, { "[zz-\\x41]", 7, 1 }, { "[\\d-z]", 3, 1 }, { "[a-\\d]", 5, 1 },
  { "[[:foo:]x]", 3, 1 },
  /* group syntax */
  { "(?z)", 2, 1 }, { "(?<1a>x)", 3, 1 }, { "(?'1'a)", 3, 1 }, { "(?<>a)", 3, 1 },
  /* unsupported (PCRE2 compiles these): where the construct starts */
  { "(a)\\1", 3, 0 }, { "ab(?=c)", 2, 0 }, { "x(?<!a)b", 1, 0 }, { "x(?>a)", 1, 0 },
  { "(?<n>a)\\k<n>", 7, 0 }, { "a\\bc", 1, 0 }, { "a++", 2, 0 },
};

static void test_offsets(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  for (size_t k = 0; k < sizeof offsets / sizeof offsets[0]; k++) {
    const char *re = offsets[k].re;
    tide_constraint *c;
    int st = tide_regex_compile(env, re, strlen(re), &c);
    char want[64];
    snprintf(want, sizeof want, "regex offset %zu: ", offsets[k].off);
    CHECKF(st != TIDE_OK && !strncmp(tide_env_errmsg(env), want, strlen(want)),
           "'%s': \"%s\", want \"%s...\"", re, tide_env_errmsg(env), want);
    if (!offsets[k].pcre2) continue;
    int err;
    PCRE2_SIZE eoff = 0;
    pcre2_code *p = pcre2_compile((PCRE2_SPTR)re, strlen(re), PCRE2_UTF, &err, &eoff, NULL);
    CHECKF(p == NULL && eoff == offsets[k].off, "'%s': pcre2 offset %zu, table %zu", re,
           (size_t)eoff, offsets[k].off);
    pcre2_code_free(p);
  }
  tide_env_free(env);
}

static void test_limits(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  tide_constraint *c;
  /* 100k nested groups: rejected by the length cap, without recursion */
  size_t n = 100000;
  char *p = malloc(2 * n + 2);
  for (size_t i = 0; i < n; i++) p[i] = '(', p[n + 1 + i] = ')';
  p[n] = 'a';
  int st = tide_regex_compile(env, p, 2 * n + 1, &c);
  CHECKF(st == TIDE_ERR_UNSUPPORTED && strstr(tide_env_errmsg(env), "limit"), "%d %s", st,
         tide_env_errmsg(env));
  /* 1000 levels: under the length cap, over the depth cap */
  n = 1000;
  for (size_t i = 0; i < n; i++) p[i] = '(', p[n + 1 + i] = ')';
  p[n] = 'a';
  st = tide_regex_compile(env, p, 2 * n + 1, &c);
  CHECKF(st == TIDE_ERR_UNSUPPORTED && strstr(tide_env_errmsg(env), "nested deeper than 250"),
         "%d %s", st, tide_env_errmsg(env));
  /* 250 levels: fine */
  n = 250;
  for (size_t i = 0; i < n; i++) p[i] = '(', p[n + 1 + i] = ')';
  p[n] = 'a';
  CHECKF(tide_regex_compile(env, p, 2 * n + 1, &c) == TIDE_OK, "%s", tide_env_errmsg(env));
  tide_constraint_free(c);
  free(p);
  /* a{1000} is the largest repetition accepted */
  CHECK(tide_regex_compile(env, "a{1000}b{0,1000}", 16, &c) == TIDE_OK);
  tide_constraint_free(c);
  tide_env_free(env);
}

/* Compile time of the Unicode property scan, printed (not asserted). */
static void test_property_time(void) {
  tide_env *env;
  tide_env_new(&env, NULL, NULL);
  const char *pats[] = { "\\p{L}+", "[\\p{L}\\p{N}\\p{P}]+", "\\w+", "\"([^\"\\\\]|\\\\.)*\"" };
  for (int k = 0; k < 4; k++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    tidei_dfa *f;
    int st = tidei_regex_build(env, pats[k], strlen(pats[k]), &f);
    clock_gettime(CLOCK_MONOTONIC, &b);
    CHECK(st == TIDE_OK);
    if (st) continue;
    printf("compile '%s': %.1f ms, %d DFA states\n", pats[k],
           (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) * 1e-6,
           (int)f->n_states);
    tidei_regex_engine.destroy(env, f);
  }
  tide_env_free(env);
}

/* Out of memory at every allocation in turn: a clean error, no leak. */
static void test_oom(void) {
  const char *pats[] = { "(ab|c[d-f\xc3\xa9]+){2,3}\\w$", "\\p{Lu}x" };
  for (int k = 0; k < 2; k++) {
    int done = 0, leaks = 0, bad = 0;
    for (long fail_at = 1; fail_at < 2000 && !done; fail_at++) {
      counter cnt = { 0, fail_at, 0 };
      tide_env *env;
      if (tide_env_new(&env, count_alloc, &cnt) != TIDE_OK) continue;
      tide_constraint *c = NULL;
      int st = tide_regex_compile(env, pats[k], strlen(pats[k]), &c);
      if (st == TIDE_OK) done = 1;
      else if (st != TIDE_ERR_NOMEM) bad++;
      tide_constraint_free(c);
      tide_env_free(env);
      if (cnt.live) leaks++;
    }
    CHECKF(done && !leaks && !bad, "'%s': done %d leaks %d bad %d", pats[k], done, leaks, bad);
  }
}

TEST_MAIN(test_oracle, test_u_escape, test_utf8_only, test_errors, test_offsets, test_limits,
          test_property_time, test_oom)
