/*
** test_json_schema.c -- the JSON reader/writer and the JSON Schema
** converter: accept/reject tables per keyword (instances pushed byte by
** byte through the grammar engine), malformed schemas, unsupported keyword
** lists, and the JSONSchemaBench fixture (accepted-invalid must be 0).
** Layer: tests (core).
*/
#include <time.h>

#include "grammar.h"
#include "json.h"
#include "test.h"
#include "tidei.h"

static const tidei_engine *E = &tidei_grammar_engine;
static tide_env *env;

static void env_open(void) { CHECK(tide_env_new(&env, NULL, NULL) == TIDE_OK); }
static void env_close(void) {
  tide_env_free(env);
  env = NULL;
}

/* Compiles a schema to a grammar; NULL with *status on failure. */
static tidei_grammar *schema_grammar(const char *schema, size_t len, int *status) {
  char *text;
  size_t n;
  *status = tidei_json_schema_gbnf(env, schema, len, &text, &n);
  if (*status) return NULL;
  tidei_grammar *g = NULL;
  *status = tidei_grammar_parse(env, text, n, "root", &g);
  if (*status) fprintf(stderr, "    generated grammar failed: %s\n", tide_env_errmsg(env));
  tidei_free(env, text, n + 1);
  return g;
}

/* 1 if g accepts s[0..n) exactly (committing after every byte). */
static int accepts(const tidei_grammar *g, const char *s, size_t n) {
  size_t size = E->state_size(g, 8);
  void *st = malloc(size);
  E->init(g, st, 8);
  int ok = 1;
  for (size_t i = 0; i < n && ok; i++) {
    ok = E->push(g, st, (uint8_t)s[i]);
    E->commit(g, st);
  }
  ok = ok && E->accepting(g, st);
  free(st);
  return ok;
}

static void check_schema(const char *schema, const char *const *yes, const char *const *no) {
  int st;
  tidei_grammar *g = schema_grammar(schema, strlen(schema), &st);
  CHECKF(g != NULL, "schema failed (%d): %s\n    schema: %s", st, tide_env_errmsg(env), schema);
  if (!g) return;
  for (int i = 0; yes && yes[i]; i++)
    CHECKF(accepts(g, yes[i], strlen(yes[i])), "%s\n    should accept: %s", schema, yes[i]);
  for (int i = 0; no && no[i]; i++)
    CHECKF(!accepts(g, no[i], strlen(no[i])), "%s\n    should reject: %s", schema, no[i]);
  E->destroy(env, g);
}

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---------------------------------------------------------------- json.c */

static void test_json_reader(void) {
  env_open();
  static const char *const good[] = {
      "null",
      " true ",
      "[1,-2.5e3,\"a\\u00e9\\ud83d\\ude00\",{\"k\":[]}]",
      "{\"a\":{\"b\":null}}",
      "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
      "0",
      "-0.0e+1",
      NULL,
  };
  for (int i = 0; good[i]; i++) {
    tidei_json_doc *d;
    CHECKF(tidei_json_parse(env, good[i], strlen(good[i]), &d) == TIDE_OK, "%s: %s", good[i],
           tide_env_errmsg(env));
    tidei_json_free(d);
  }
  static const struct {
    const char *text, *msg;
  } bad[] = {
      {"", "json offset 0: unexpected end of input"},
      {"[1,]", "json offset 3: unexpected ']'"},
      {"{\"a\" 1}", "json offset 5: expecting ':' after key"},
      {"[1 2]", "json offset 3: expecting ',' or ']'"},
      {"01", "json offset 1: unexpected text after the value"},
      {"\"a\nb\"", "json offset 2: control character 0x0a in string"},
      {"\"\\ud800\"", "json offset 1: lone surrogate \\ud800"},
      {"\"\xc0\x80\"", "json offset 1: invalid UTF-8 in string"},
      {"{\"a\":1}x", "json offset 7: unexpected text after the value"},
      {"tru", "json offset 0: unexpected 't'"},
      {"1.", "json offset 0: invalid number"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tidei_json_doc *d = (void *)1;
    int st = tidei_json_parse(env, bad[i].text, strlen(bad[i].text), &d);
    CHECKF(st == TIDE_ERR_FORMAT && d == NULL, "%s: status %d", bad[i].text, st);
    CHECKF(strcmp(tide_env_errmsg(env), bad[i].msg) == 0, "got '%s', want '%s'",
           tide_env_errmsg(env), bad[i].msg);
  }
  /* deep nesting: an error, not a stack overflow */
  size_t n = 100000;
  char *deep = malloc(n);
  memset(deep, '[', n);
  tidei_json_doc *d;
  CHECK(tidei_json_parse(env, deep, n, &d) == TIDE_ERR_FORMAT);
  CHECK(strstr(tide_env_errmsg(env), "nesting deeper than 256") != NULL);
  free(deep);
  env_close();
}

static void test_json_writer(void) {
  env_open();
  static const char *const cases[][2] = {
      {" { \"a\" : [ 1 , 2.50 , true ] , \"b\" : null } ", "{\"a\":[1,2.50,true],\"b\":null}"},
      {"\"\\u0041\\/\\u00e9\\u0001\\n\"", "\"A/\xc3\xa9\\u0001\\n\""},
      {"[[],{}]", "[[],{}]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tidei_json_doc *d;
    CHECK(tidei_json_parse(env, cases[i][0], strlen(cases[i][0]), &d) == TIDE_OK);
    tidei_sbuf b = {env, NULL, 0, 0, 0};
    tidei_json_write(&b, tidei_json_root(d));
    CHECKF(b.p && strcmp(b.p, cases[i][1]) == 0, "got %s want %s", b.p, cases[i][1]);
    tidei_sbuf_free(&b);
    tidei_json_free(d);
  }
  /* equality: numbers by value, members in any order */
  tidei_json_doc *a, *b;
  const char *x = "{\"a\":[1.0,2e1],\"b\":\"s\"}", *y = "{\"b\":\"s\",\"a\":[1,20]}";
  CHECK(tidei_json_parse(env, x, strlen(x), &a) == TIDE_OK);
  CHECK(tidei_json_parse(env, y, strlen(y), &b) == TIDE_OK);
  CHECK(tidei_json_equal(tidei_json_root(a), tidei_json_root(b)));
  tidei_json_free(a);
  tidei_json_free(b);
  env_close();
}

/* ---------------------------------------------------------------- keywords */

static void test_types(void) {
  env_open();
  check_schema("{\"type\":\"string\"}", LIST("\"\"", "\"a b\"", "\"\\u00e9\\\"\"", "\"\xc3\xa9\""),
               LIST("1", "null", "\"a", "\"\\x\"", "\"\\ud800\"", " \"a\""));
  check_schema("{\"type\":\"integer\"}", LIST("0", "-1", "123456789012345678901234567890"),
               LIST("1.5", "01", "1e3", "\"1\"", "-"));
  check_schema("{\"type\":\"number\"}", LIST("0", "-1.25", "1e-3", "2E+10"),
               LIST(".5", "1.", "+1", "NaN"));
  check_schema("{\"type\":\"boolean\"}", LIST("true", "false"), LIST("null", "0"));
  check_schema("{\"type\":\"null\"}", LIST("null"), LIST("false"));
  check_schema("{\"type\":[\"string\",\"null\"]}", LIST("null", "\"x\""), LIST("1", "[]"));
  check_schema("{}", LIST("1", "{\"a\":[null,{}]}", "\"s\""), LIST("{a:1}", "[1,]", " 1"));
  check_schema("true", LIST("[]"), LIST("x"));
  check_schema("false", NULL, LIST("1", "null", "{}"));
  check_schema("{\"type\":\"string\",\"nullable\":true}", LIST("null", "\"a\""), LIST("1"));
  env_close();
}

static void test_objects(void) {
  env_open();
  const char *s =
      "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
      "\"b\":{\"type\":\"string\"}},\"required\":[\"a\"],\"additionalProperties\":false}";
  check_schema(s, LIST("{\"a\":1}", "{\"a\":1,\"b\":\"x\"}"),
               LIST("{}", "{\"b\":\"x\"}", "{\"a\":1,\"c\":2}", "{\"a\":\"1\"}",
                    "{\"a\":1,\"a\":2}", "{\"a\":1,}", "{ \"a\":1}"));
  /* default additionalProperties: any extra key, anywhere, but not a declared one */
  s = "{\"properties\":{\"a\":{\"type\":\"integer\"}}}";
  check_schema(s,
               LIST("{}", "{\"a\":1}", "{\"x\":[1]}", "{\"x\":1,\"a\":2,\"ab\":null}", "{\"\":0}",
                    "[1]", "\"s\""),
               LIST("{\"a\":\"s\"}", "{\"x\":1,\"a\":\"s\"}", "{\"a\":1,\"a\":1}"));
  /* additionalProperties as a schema; required names not declared */
  s = "{\"type\":\"object\",\"required\":[\"k\"],\"additionalProperties\":{\"type\":\"number\"}}";
  check_schema(s, LIST("{\"k\":1}", "{\"k\":1,\"z\":2.5}", "{\"z\":2.5,\"k\":1}"),
               LIST("{}", "{\"k\":\"a\"}", "{\"z\":1}"));
  /* property order follows the schema; optional ones may be skipped */
  s = "{\"properties\":{\"a\":{},\"b\":{},\"c\":{}},\"additionalProperties\":false}";
  check_schema(s, LIST("{\"a\":1,\"c\":3}", "{\"b\":2}", "{}"),
               LIST("{\"c\":3,\"a\":1}", "{\"d\":1}"));
  /* a property that is false must be absent */
  check_schema("{\"properties\":{\"a\":false}}", LIST("{\"b\":1}"), LIST("{\"a\":1}"));
  check_schema("{\"minProperties\":1,\"required\":[\"a\"]}", LIST("{\"a\":1}"), LIST("{}"));
  /* extra members between optional ones: accepted wherever they are, and
  ** the grammar is unambiguous, so the chart does not grow with them */
  s = "{\"properties\":{\"a\":{},\"b\":{},\"c\":{},\"d\":{},\"e\":{},\"f\":{}}}";
  check_schema(s, LIST("{\"x\":1,\"b\":2,\"y\":3,\"z\":4,\"f\":5,\"w\":6}", "{\"x\":1,\"y\":2}"),
               LIST("{\"f\":1,\"x\":2,\"a\":3}", "{\"x\":1,\"b\":2,\"b\":3}"));
  int st;
  tidei_grammar *g = schema_grammar(s, strlen(s), &st);
  CHECK(g != NULL);
  if (g) {
    size_t size = E->state_size(g, 8);
    void *gs = malloc(size);
    E->init(g, gs, 8);
    char doc[4096];
    size_t n = (size_t)snprintf(doc, sizeof doc, "{\"b\":1");
    for (int i = 0; i < 150; i++)
      n += (size_t)snprintf(doc + n, sizeof doc - n, ",\"k%d\":%d", i, i);
    n += (size_t)snprintf(doc + n, sizeof doc - n, ",\"e\":0}");
    int ok = 1;
    int64_t most = 0, sets, items;
    for (size_t i = 0; i < n && ok; i++) {
      ok = E->push(g, gs, (uint8_t)doc[i]);
      E->commit(g, gs);
      tidei_grammar_state_stats(gs, &sets, &items);
      if (items > most) most = items;
    }
    CHECK(ok && E->accepting(g, gs));
    CHECKF(most < 300, "chart grew to %lld items over 150 extra members", (long long)most);
    free(gs);
    E->destroy(env, g);
  }
  env_close();
}

static void test_arrays(void) {
  env_open();
  check_schema(
      "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":3}",
      LIST("[1]", "[1,2,3]"), LIST("[]", "[1,2,3,4]", "[\"a\"]", "[1,]"));
  check_schema("{\"type\":\"array\",\"maxItems\":0}", LIST("[]"), LIST("[1]"));
  check_schema("{\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"integer\"}],\"items\":false,"
               "\"type\":\"array\"}",
               LIST("[]", "[\"a\"]", "[\"a\",1]"), LIST("[1]", "[\"a\",1,2]", "[\"a\",\"b\"]"));
  check_schema("{\"type\":\"array\",\"items\":[{\"const\":1}],\"additionalItems\":{\"type\":"
               "\"string\"},\"minItems\":2}",
               LIST("[1,\"x\"]", "[1,\"x\",\"y\"]"), LIST("[1]", "[1,2]", "[2,\"x\"]"));
  check_schema("{\"type\":\"array\",\"uniqueItems\":true,\"maxItems\":1}", LIST("[]", "[1]"),
               LIST("[1,1]"));
  check_schema("{\"type\":\"array\",\"minItems\":1500,\"maxItems\":2100,\"items\":{\"const\":0}}",
               NULL, LIST("[0]"));
  env_close();
}

static void test_strings(void) {
  env_open();
  check_schema("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}",
               LIST("\"ab\"", "\"abc\"", "\"\xc3\xa9\xc3\xa9\"", "\"\\n\\t\"",
                    "\"\\ud83d\\ude00x\"", "\"\xf0\x9f\x98\x80x\""),
               LIST("\"a\"", "\"abcd\"", "\"\xc3\xa9\""));
  check_schema("{\"type\":\"string\",\"pattern\":\"^[a-z]+-\\\\d{2,3}$\"}",
               LIST("\"ab-12\"", "\"x-123\""),
               LIST("\"ab-1\"", "\"Ab-12\"", "\"ab-1234\"", "\"ab-12\\n\""));
  check_schema("{\"type\":\"string\",\"pattern\":\"abc\"}", LIST("\"abc\"", "\"xxabcyy\""),
               LIST("\"ab\"", "\"a bc\""));
  check_schema("{\"type\":\"string\",\"pattern\":\"^(https?|ftp)://[^ ]+$\"}",
               LIST("\"http://x\"", "\"ftp://a/b\""), LIST("\"http://a b\"", "\"file://x\""));
  check_schema("{\"type\":\"string\",\"pattern\":\"^[\\\"\\\\\\\\]$\"}",
               LIST("\"\\\"\"", "\"\\\\\""), LIST("\"a\""));
  check_schema("{\"type\":\"string\",\"pattern\":\"^.$\"}", LIST("\"a\"", "\"\xc3\xa9\""),
               LIST("\"\\n\"", "\"ab\""));
  check_schema("{\"type\":\"string\",\"pattern\":\"^\\\\w+\\\\s\\\\D$\",\"minLength\":3}",
               LIST("\"ab x\""), LIST("\"ab 1\"", "\"\xc3\xa9 x\""));
  check_schema("{\"type\":\"string\",\"pattern\":\"^a{2}$\",\"minLength\":3}", NULL,
               LIST("\"aa\""));
  check_schema("{\"type\":\"string\",\"format\":\"date\"}",
               LIST("\"2024-02-29\"", "\"2000-02-29\"", "\"1999-12-31\""),
               LIST("\"2023-02-29\"", "\"1900-02-29\"", "\"2022-01-32\"", "\"2022-13-01\"",
                    "\"0000-01-01\"", "\"2022-04-31\""));
  check_schema("{\"type\":\"string\",\"format\":\"time\"}",
               LIST("\"12:30:00Z\"", "\"23:59:59.5+01:00\""),
               LIST("\"24:00:00Z\"", "\"12:30:00\"", "\"12:60:00Z\""));
  check_schema("{\"type\":\"string\",\"format\":\"date-time\"}", LIST("\"2022-01-01T00:00:00Z\""),
               LIST("\"2022-01-01 00:00:00Z\"", "\"2022-01-01T00:00:00\""));
  check_schema(
      "{\"type\":\"string\",\"format\":\"uuid\"}", LIST("\"123e4567-e89b-12d3-a456-426614174000\""),
      LIST("\"123e4567e89b12d3a456426614174000\"", "\"123e4567-e89b-12d3-a456-42661417400g\""));
  check_schema("{\"type\":\"string\",\"format\":\"email\"}", LIST("\"a.b@example.com\""),
               LIST("\"a@b\"", "\"@b.com\"", "\"a..b@c.com\"", "\"a b@c.com\""));
  env_close();
}

static void test_numbers(void) {
  env_open();
  check_schema("{\"type\":\"integer\",\"minimum\":-12,\"maximum\":305}",
               LIST("-12", "-1", "0", "9", "10", "99", "100", "299", "305"),
               LIST("-13", "306", "1000", "-0.5", "-100"));
  check_schema("{\"type\":\"integer\",\"exclusiveMinimum\":0}", LIST("1", "12345678901234567890"),
               LIST("0", "-1"));
  check_schema("{\"type\":\"integer\",\"minimum\":0,\"exclusiveMaximum\":true,\"maximum\":10}",
               LIST("0", "9"), LIST("10", "-1"));
  check_schema("{\"type\":\"integer\",\"minimum\":1.5,\"maximum\":3.5}", LIST("2", "3"),
               LIST("1", "4"));
  check_schema("{\"type\":\"integer\",\"maximum\":-5}", LIST("-5", "-100"), LIST("-4", "0", "5"));
  check_schema("{\"type\":\"number\",\"minimum\":0}", LIST("0", "0.0", "1.5", "100"),
               LIST("-1", "-0.1", "1e3"));
  check_schema("{\"type\":\"number\",\"minimum\":-90,\"maximum\":90}",
               LIST("-90", "-90.0", "-89.999", "0", "45.5", "90", "90.000"),
               LIST("-90.01", "90.5", "91", "-100"));
  check_schema("{\"type\":\"number\",\"exclusiveMinimum\":0.25,\"exclusiveMaximum\":0.5}",
               LIST("0.26", "0.3", "0.4999", "0.250001"),
               LIST("0.25", "0.2500", "0.5", "0", "0.1", "1"));
  check_schema("{\"type\":\"number\",\"minimum\":0.1}", LIST("0.1", "0.10", "0.11", "1", "10.5"),
               LIST("0.09", "0", "0.099999"));
  check_schema("{\"type\":\"number\",\"maximum\":-0.5}", LIST("-0.5", "-1", "-0.51"),
               LIST("-0.49", "0", "1"));
  check_schema("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", NULL, LIST("4", "5"));
  check_schema("{\"type\":\"number\",\"multipleOf\":1}", LIST("3"), LIST("3.5"));
  env_close();
}

static void test_enum_const(void) {
  env_open();
  check_schema("{\"enum\":[\"a\",1,null,{\"k\":[true]}]}",
               LIST("\"a\"", "1", "null", "{\"k\":[true]}"), LIST("\"b\"", "2", "{}"));
  check_schema("{\"type\":\"string\",\"enum\":[\"a\",1,\"bcd\"],\"maxLength\":2}", LIST("\"a\""),
               LIST("1", "\"bcd\""));
  check_schema("{\"const\":\"x\\\"y\"}", LIST("\"x\\\"y\""), LIST("\"xy\""));
  check_schema("{\"enum\":[1,2],\"const\":2}", LIST("2"), LIST("1"));
  env_close();
}

static void test_combinators(void) {
  env_open();
  check_schema("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\",\"minimum\":5}]}",
               LIST("\"s\"", "5"), LIST("4", "null"));
  check_schema("{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}", LIST("\"s\"", "null"),
               LIST("1"));
  check_schema(
      "{\"oneOf\":[{\"properties\":{\"kind\":{\"const\":\"a\"},\"x\":{\"type\":\"integer\"}},"
      "\"required\":[\"kind\"],\"type\":\"object\"},"
      "{\"properties\":{\"kind\":{\"const\":\"b\"}},\"required\":[\"kind\"],\"type\":\"object\"}]}",
      LIST("{\"kind\":\"a\",\"x\":1}", "{\"kind\":\"b\",\"x\":\"s\"}"),
      LIST("{\"kind\":\"c\"}", "{\"kind\":\"a\",\"x\":\"s\"}"));
  check_schema(
      "{\"allOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":"
      "[\"a\"]},"
      "{\"properties\":{\"a\":{\"minimum\":3},\"b\":{\"type\":\"string\"}},\"required\":[\"b\"]}]}",
      LIST("{\"a\":3,\"b\":\"x\"}"),
      LIST("{\"a\":2,\"b\":\"x\"}", "{\"a\":3}", "{\"a\":3,\"b\":1}"));
  /* allOf with additionalProperties: false on one side only keeps its keys */
  check_schema("{\"allOf\":[{\"properties\":{\"a\":{}},\"additionalProperties\":false},{"
               "\"properties\":{\"b\":{}}}]}",
               LIST("{\"a\":1}", "{}"), LIST("{\"b\":1}", "{\"c\":1}"));
  check_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"anyOf\":[{"
               "\"required\":[\"a\"]},{\"required\":[\"b\"]}]}",
               LIST("{\"a\":1}", "{\"b\":null}"), LIST("{}", "{\"a\":\"s\"}"));
  check_schema("{\"type\":[\"string\",\"integer\"],\"allOf\":[{\"type\":\"integer\"}]}", LIST("1"),
               LIST("\"s\""));
  env_close();
}

static void test_refs(void) {
  env_open();
  const char *tree =
      "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
      "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},"
      "\"required\":[\"v\"],\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}";
  check_schema(tree, LIST("{\"v\":1}", "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[{\"v\":3}]}]}"),
               LIST("{\"v\":1,\"kids\":[{}]}", "{\"kids\":[]}"));
  check_schema(
      "{\"definitions\":{\"a~b/c\":{\"type\":\"integer\"}},\"properties\":{\"x\":{\"$ref\":\"#/"
      "definitions/a~0b~1c\"}}}",
      LIST("{\"x\":1}"), LIST("{\"x\":\"1\"}"));
  check_schema("{\"type\":\"array\",\"items\":{\"$ref\":\"#\"},\"maxItems\":2}",
               LIST("[]", "[[],[[]]]"), LIST("[1]", "[[],[],[]]"));
  /* $ref with siblings: both apply */
  check_schema("{\"definitions\":{\"s\":{\"type\":\"string\"}},\"$ref\":\"#/definitions/"
               "s\",\"maxLength\":2}",
               LIST("\"ab\""), LIST("\"abc\"", "1"));
  env_close();
}

/* ---------------------------------------------------------------- errors */

static void check_error(const char *schema, int status, const char *msg) {
  int st;
  tidei_grammar *g = schema_grammar(schema, strlen(schema), &st);
  CHECKF(g == NULL && st == status, "%s: status %d, want %d", schema, st, status);
  if (g) E->destroy(env, g);
  CHECKF(strcmp(tide_env_errmsg(env), msg) == 0, "%s\n    got  '%s'\n    want '%s'", schema,
         tide_env_errmsg(env), msg);
}

static void test_errors(void) {
  env_open();
  check_error("{\"type\":", TIDE_ERR_FORMAT, "json schema: json offset 8: unexpected end of input");
  check_error("{\"type\":\"string\",}", TIDE_ERR_FORMAT,
              "json schema: json offset 17: expecting a string key");
  check_error("[1]", TIDE_ERR_FORMAT, "json schema: the schema is not an object or a boolean");
  check_error("{\"properties\":{\"a\":3}}", TIDE_ERR_FORMAT,
              "json schema: schema at /properties/a is not an object or a boolean");
  check_error("{\"$ref\":\"#/definitions/x\"}", TIDE_ERR_FORMAT,
              "json schema: $ref '#/definitions/x' at /: no such location");
  check_error("{\"type\":\"array\",\"minItems\":-1}", TIDE_ERR_FORMAT,
              "json schema: minItems/maxItems at / is not a non-negative integer");
  check_error("{\"properties\":{\"tags\":{\"type\":\"array\",\"uniqueItems\":true},\"n\":{\"type\":"
              "\"number\",\"multipleOf\":0.5}}}",
              TIDE_ERR_UNSUPPORTED,
              "json schema: unsupported keywords: multipleOf at /properties/n, uniqueItems at "
              "/properties/tags");
  check_error("{\"not\":{\"type\":\"string\"},\"patternProperties\":{\"^x\":{}}}",
              TIDE_ERR_UNSUPPORTED,
              "json schema: unsupported keywords: not at /, patternProperties at /");
  check_error("{\"type\":\"string\",\"pattern\":\"^(a)\\\\1$\"}", TIDE_ERR_UNSUPPORTED,
              "json schema: unsupported keywords: pattern (escape) at /");
  check_error("{\"type\":\"string\",\"pattern\":\"(?=a)\"}", TIDE_ERR_UNSUPPORTED,
              "json schema: unsupported keywords: pattern (group syntax (?...)) at /");
  check_error("{\"type\":\"string\",\"format\":\"uri\"}", TIDE_ERR_UNSUPPORTED,
              "json schema: unsupported keywords: format 'uri' at /");
  check_error("{\"oneOf\":[{\"type\":\"string\"},{\"maxLength\":3}]}", TIDE_ERR_UNSUPPORTED,
              "json schema: unsupported keywords: oneOf (branches not provably disjoint) at /");
  check_error(
      "{\"$ref\":\"other.json#/x\"}", TIDE_ERR_UNSUPPORTED,
      "json schema: unsupported keywords: $ref 'other.json#/x' (not a local JSON pointer) at /");
  /* cycles of pure references constrain nothing: an error naming the cycle */
  check_error("{\"$ref\":\"#\"}", TIDE_ERR_FORMAT,
              "json schema: $ref cycle # -> # constrains nothing");
  check_error("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}",
              TIDE_ERR_FORMAT, "json schema: $ref cycle #/$defs/a -> #/$defs/a constrains nothing");
  check_error("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"title\":\"t\",\"$ref\":"
              "\"#/$defs/a\"}},\"properties\":{\"x\":{\"$ref\":\"#/$defs/a\"}}}",
              TIDE_ERR_FORMAT,
              "json schema: $ref cycle #/$defs/a -> #/$defs/b -> #/$defs/a constrains nothing");
  /* a cycle through anyOf: the compiled grammar's root derives nothing */
  {
    tide_constraint *cc = (void *)1;
    const char *cyc = "{\"anyOf\":[{\"$ref\":\"#\"}]}";
    CHECK(tide_json_schema_compile(env, cyc, strlen(cyc), &cc) == TIDE_ERR_FORMAT && cc == NULL);
    CHECKF(strstr(tide_env_errmsg(env), "$ref cycle constrains nothing") != NULL, "%s",
           tide_env_errmsg(env));
    /* recursion that can end is fine, and so is an unsatisfiable schema
    ** that is no cycle (it compiles; generation ends at a dead end) */
    const char *ok1 = "{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}";
    const char *ok2 = "{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}";
    CHECK(tide_json_schema_compile(env, ok1, strlen(ok1), &cc) == TIDE_OK);
    tide_constraint_free(cc);
    CHECK(tide_json_schema_compile(env, ok2, strlen(ok2), &cc) == TIDE_OK);
    tide_constraint_free(cc);
  }
  /* keywords that do not apply to the allowed types are not reported */
  check_schema(
      "{\"type\":\"string\",\"uniqueItems\":true,\"multipleOf\":3,\"title\":\"t\",\"x-custom\":1}",
      LIST("\"a\""), NULL);
  /* the public entry point */
  tide_constraint *c = (void *)1;
  CHECK(tide_json_schema_compile(env, "{\"not\":{}}", 10, &c) == TIDE_ERR_UNSUPPORTED && c == NULL);
  CHECK(tide_json_schema_compile(env, "{\"type\":\"integer\"}", 18, &c) == TIDE_OK && c != NULL);
  tide_constraint_free(c);
  /* deep schemas fail cleanly */
  size_t n = 0, cap = 64 * 300 + 64;
  char *deep = malloc(cap);
  for (int i = 0; i < 300; i++) n += (size_t)snprintf(deep + n, cap - n, "{\"items\":");
  n += (size_t)snprintf(deep + n, cap - n, "{}");
  for (int i = 0; i < 300; i++) deep[n++] = '}';
  int st;
  tidei_grammar *g = schema_grammar(deep, n, &st);
  CHECK(g == NULL && st == TIDE_ERR_FORMAT);
  free(deep);
  env_close();
}

/* ---------------------------------------------------------------- fixture */

typedef struct {
  char name[96];
  int n;
} reason;

static void count_reason(reason *rs, int *nr, const char *msg) {
  const char *p = strstr(msg, "unsupported keywords: ");
  char key[96];
  if (p) {
    p += strlen("unsupported keywords: ");
    size_t k = 0;
    while (p[k] && strncmp(p + k, " at ", 4) != 0 && k < sizeof key - 1) k++;
    memcpy(key, p, k);
    key[k] = 0;
  } else
    snprintf(key, sizeof key, "%.60s", msg);
  for (int i = 0; i < *nr; i++)
    if (!strcmp(rs[i].name, key)) {
      rs[i].n++;
      return;
    }
  if (*nr < 200) {
    snprintf(rs[*nr].name, sizeof rs[*nr].name, "%s", key);
    rs[(*nr)++].n = 1;
  }
}

static int cmp_reason(const void *a, const void *b) {
  return ((const reason *)b)->n - ((const reason *)a)->n;
}

static void test_fixture(void) {
  const char *fx = test_fixtures();
  if (!fx) SKIP("no fixtures folder");
  char path[512];
  snprintf(path, sizeof path, "%s/jsonschema/schemas.jsonl", fx);
  FILE *f = fopen(path, "rb");
  if (!f) SKIP("jsonschema/schemas.jsonl absent");
  int limit = 1 << 30; /* the full set takes well under a second, ASan included */
  env_open();
  static reason rs[200];
  int nr = 0, n_schemas = 0, compiled = 0, acc_invalid = 0, rej_valid = 0, n_inst = 0,
      n_checked = 0, n_valid = 0;
  size_t cap = 1 << 20;
  char *line = malloc(cap);
  clock_t t0 = clock();
  while (n_schemas < limit) {
    size_t len = 0;
    int ch;
    while ((ch = fgetc(f)) != EOF && ch != '\n') {
      if (len + 1 >= cap) line = realloc(line, cap *= 2);
      line[len++] = (char)ch;
    }
    if (len == 0 && ch == EOF) break;
    if (len == 0) continue;
    tidei_json_doc *d;
    if (tidei_json_parse(env, line, len, &d) != TIDE_OK) {
      CHECKF(0, "fixture line: %s", tide_env_errmsg(env));
      continue;
    }
    const tidei_json *root = tidei_json_root(d), *schema = tidei_json_get(root, "schema");
    const tidei_json *tests = tidei_json_get(root, "tests"), *name = tidei_json_get(root, "name");
    n_schemas++;
    n_inst += tests ? (int)tests->n : 0;
    tidei_sbuf sb = {env, NULL, 0, 0, 0};
    tidei_json_write(&sb, schema);
    int st;
    tidei_grammar *g = schema_grammar(sb.p, sb.n, &st);
    tidei_sbuf_free(&sb);
    if (!g) {
      count_reason(rs, &nr, tide_env_errmsg(env));
      CHECKF(st == TIDE_ERR_UNSUPPORTED, "%s: %s", name ? name->u.s : "?", tide_env_errmsg(env));
    } else {
      compiled++;
      for (uint32_t i = 0; i < tests->n; i++) {
        const tidei_json *t = &tests->u.items[i];
        const tidei_json *data = tidei_json_get(t, "data"), *valid = tidei_json_get(t, "valid");
        tidei_sbuf ib = {env, NULL, 0, 0, 0};
        tidei_json_write(&ib, data);
        int ok = accepts(g, ib.p, ib.n), want = valid && valid->type == TIDEI_JSON_TRUE;
        n_checked++;
        if (ok && !want) {
          acc_invalid++;
          fprintf(stderr, "    accepted invalid: %s: %.300s\n", name ? name->u.s : "?", ib.p);
        }
        if (!ok && want) {
          rej_valid++;
          printf("    rejected valid: %s: %.200s\n", name ? name->u.s : "?", ib.p);
        }
        n_valid += want;
        tidei_sbuf_free(&ib);
      }
      E->destroy(env, g);
    }
    tidei_json_free(d);
  }
  free(line);
  fclose(f);
  double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
  printf("jsonschema fixture: %d schemas (%d instances), compiled %d / accepted-invalid %d / "
         "rejected-valid %d (of %d instances checked: %d valid, %d invalid), %.1f s\n",
         n_schemas, n_inst, compiled, acc_invalid, rej_valid, n_checked, n_valid,
         n_checked - n_valid, secs);
  qsort(rs, (size_t)nr, sizeof rs[0], cmp_reason);
  printf("  not compiled (%d), first reason per schema:\n", n_schemas - compiled);
  for (int i = 0; i < nr && i < 30; i++) printf("    %3d  %s\n", rs[i].n, rs[i].name);
  CHECK(acc_invalid == 0);
  env_close();
}

TEST_MAIN(test_json_reader, test_json_writer, test_types, test_objects, test_arrays, test_strings,
          test_numbers, test_enum_const, test_combinators, test_refs, test_errors, test_fixture)
