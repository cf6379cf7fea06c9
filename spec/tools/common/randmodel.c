/*
** randmodel.c -- random-weight llama models of any shape, written as GGUF.
** Layer: tools. The vocabulary is byte-level BPE (tokenizer.ggml.model
** "gpt2", pre "gpt-2"): the 256 bytes in GPT-2's printable byte alphabet,
** then tokens made by merging pairs, so the tokenizer of the core loads it
** like any real GPT-2-style vocabulary and every string round-trips.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "randmodel.h"

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Uniform in [-a, a) with standard deviation std: a = std * sqrt(3). */
static void fill_uniform(float *x, int64_t n, float std, uint64_t *s) {
  float a = std * 1.7320508f;
  for (int64_t i = 0; i < n; i++)
    x[i] = a * ((float)(rng_next(s) >> 40) * (2.0f / 16777216.0f) - 1.0f);
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the others
** to U+0100 onwards. Writes the UTF-8 of byte b's character into out. */
static int byte_char(int b, char *out) {
  int cp = b, n = 0;
  if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
    for (int c = 0; c < b; c++)
      if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) n++;
    cp = 256 + n;
  }
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  out[0] = (char)(0xC0 | (cp >> 6));
  out[1] = (char)(0x80 | (cp & 0x3F));
  return 2;
}

typedef struct {
  char **tok;   /* n_vocab token strings */
  char **merge; /* n_merge merge rules "a b" */
  int32_t n_vocab, n_merge;
} vocab;

static void vocab_free(vocab *v) {
  for (int32_t i = 0; v->tok && i < v->n_vocab; i++) free(v->tok[i]);
  for (int32_t i = 0; v->merge && i < v->n_merge; i++) free(v->merge[i]);
  free(v->tok);
  free(v->merge);
}

/* Tokens 256.. are pairs of common bytes, each with its merge rule; past
** those, unreachable filler tokens spelling k in base-23 "digits" of common
** letters (real vocabularies have unreachable tokens too). The last token is
** <|endoftext|>. */
static int vocab_make(vocab *v, int32_t n_vocab) {
  static const char common[] = " etaoinshrdlucmfwypvbgk";
  int32_t nc = (int32_t)sizeof common - 1;
  v->n_vocab = n_vocab;
  v->tok = calloc((size_t)n_vocab, sizeof *v->tok);
  v->merge = calloc((size_t)n_vocab, sizeof *v->merge);
  if (!v->tok || !v->merge) return -1;
  for (int b = 0; b < 256; b++) {
    char s[3] = { 0 };
    byte_char(b, s);
    if (!(v->tok[b] = strdup(s))) return -1;
  }
  for (int32_t id = 256, k = 0; id < n_vocab - 1; k++, id++) {
    char s[24] = { 0 }, m[24] = { 0 };
    if (k < nc * nc) {
      int la = byte_char((unsigned char)common[k % nc], s);
      memcpy(m, s, (size_t)la);
      m[la] = ' ';
      int lb = byte_char((unsigned char)common[k / nc], s + la);
      memcpy(m + la + 1, s + la, (size_t)lb);
      if (!(v->merge[v->n_merge++] = strdup(m))) return -1;
    } else {
      int len = 0;
      for (int32_t r = k; r > 0 && len < 8; r /= nc) len += byte_char((unsigned char)common[r % nc], s + len);
      s[len] = 0;
    }
    if (!(v->tok[id] = strdup(s))) return -1;
  }
  if (!(v->tok[n_vocab - 1] = strdup("<|endoftext|>"))) return -1;
  return 0;
}

/* The tensors, in file order: name, ne[0] (n_in), ne[1] (n_out), std. */
typedef struct { char name[64]; int64_t n_in, n_out; float std; int norm; } tdesc;

static int describe(const randmodel_params *p, tdesc *t) {
  int n = 0, hd = p->n_embd / p->n_head;
  int64_t q = (int64_t)p->n_head * hd, kv = (int64_t)p->n_kv_head * hd;
#define T(nm, a, b, sd, nrm) (snprintf(t[n].name, 64, "%s", nm), t[n].n_in = a, t[n].n_out = b, t[n].std = sd, t[n].norm = nrm, n++)
  T("token_embd.weight", p->n_embd, p->n_vocab, 0.35f, 0);
  for (int l = 0; l < p->n_layer; l++) {
    char b[64];
#define B(suffix, a, o, sd, nrm) (snprintf(b, 64, "blk.%d.%s", l, suffix), T(b, a, o, sd, nrm))
    B("attn_norm.weight", p->n_embd, 1, 0.1f, 1);
    B("attn_q.weight", p->n_embd, q, 0.2f / sqrtf((float)p->n_embd / 64), 0);
    B("attn_k.weight", p->n_embd, kv, 0.2f / sqrtf((float)p->n_embd / 64), 0);
    B("attn_v.weight", p->n_embd, kv, 0.15f / sqrtf((float)p->n_embd / 64), 0);
    B("attn_output.weight", q, p->n_embd, 0.15f / sqrtf((float)q / 64), 0);
    B("ffn_norm.weight", p->n_embd, 1, 0.1f, 1);
    B("ffn_gate.weight", p->n_embd, p->n_ff, 0.15f / sqrtf((float)p->n_embd / 64), 0);
    B("ffn_up.weight", p->n_embd, p->n_ff, 0.15f / sqrtf((float)p->n_embd / 64), 0);
    B("ffn_down.weight", p->n_ff, p->n_embd, 0.1f / sqrtf((float)p->n_ff / 192), 0);
#undef B
  }
  T("output_norm.weight", p->n_embd, 1, 0.1f, 1);
  if (!p->tied) T("output.weight", p->n_embd, p->n_vocab, 0.35f / sqrtf((float)p->n_embd / 64), 0);
#undef T
  return n;
}

static int set_meta(tide_gguf_writer *w, const randmodel_params *p, const vocab *v) {
  int st = 0, hd = p->n_embd / p->n_head;
  char key[96];
#define I(k, v) (snprintf(key, sizeof key, "llama.%s", k), st = st ? st : tide_gguf_writer_set_int(w, key, TIDE_GGUF_UINT32, v))
  st = tide_gguf_writer_set_str(w, "general.architecture", "llama", 5);
  if (!st) st = tide_gguf_writer_set_str(w, "general.name", p->name, strlen(p->name));
  if (!st) st = tide_gguf_writer_set_int(w, "general.alignment", TIDE_GGUF_UINT32, 32);
  I("context_length", p->n_ctx);
  I("embedding_length", p->n_embd);
  I("block_count", p->n_layer);
  I("feed_forward_length", p->n_ff);
  I("attention.head_count", p->n_head);
  I("attention.head_count_kv", p->n_kv_head);
  I("rope.dimension_count", hd);
  I("vocab_size", p->n_vocab);
#undef I
  if (!st) st = tide_gguf_writer_set_float(w, "llama.rope.freq_base", TIDE_GGUF_FLOAT32, 10000.0);
  if (!st) st = tide_gguf_writer_set_float(w, "llama.attention.layer_norm_rms_epsilon", TIDE_GGUF_FLOAT32, 1e-5);
  if (!st) st = tide_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", 4);
  if (!st) st = tide_gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2", 5);
  if (!st) st = tide_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tok, NULL, v->n_vocab);
  if (!st) st = tide_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merge, NULL, v->n_merge);
  if (!st) {
    int32_t *tt = malloc(sizeof(int32_t) * (size_t)v->n_vocab);
    if (!tt) return TIDE_ERR_NOMEM;
    for (int32_t i = 0; i < v->n_vocab; i++) tt[i] = i == v->n_vocab - 1 ? TIDE_TOKEN_CONTROL : TIDE_TOKEN_NORMAL;
    st = tide_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", TIDE_GGUF_INT32, tt, v->n_vocab);
    free(tt);
  }
  if (!st) st = tide_gguf_writer_set_int(w, "tokenizer.ggml.bos_token_id", TIDE_GGUF_UINT32, v->n_vocab - 1);
  if (!st) st = tide_gguf_writer_set_int(w, "tokenizer.ggml.eos_token_id", TIDE_GGUF_UINT32, v->n_vocab - 1);
  if (!st) st = tide_gguf_writer_set_int(w, "general.file_type", TIDE_GGUF_UINT32,
                                         p->dtype == TIDE_F16 ? 1 : p->dtype == TIDE_Q8_0 ? 7 : p->dtype == TIDE_Q4_0 ? 2 : 0);
  return st;
}

int randmodel_write(tide_env *env, const char *path, const randmodel_params *p,
                    void (*progress)(int done, int total)) {
  tide_gguf_writer *w = NULL;
  vocab v = { 0 };
  int n = 4 + 9 * p->n_layer, st;
  tdesc *t = calloc((size_t)n, sizeof *t);
  void **data = calloc((size_t)n, sizeof *data);
  uint64_t seed = p->seed;
  st = (!t || !data || vocab_make(&v, p->n_vocab)) ? TIDE_ERR_NOMEM : TIDE_OK;
  if (!st) st = tide_gguf_writer_new(env, &w);
  if (!st) st = set_meta(w, p, &v);
  if (!st) n = describe(p, t);
  float *f = NULL;
  for (int i = 0; !st && i < n; i++) {
    int64_t ne[2] = { t[i].n_in, t[i].n_out }, cnt = ne[0] * ne[1];
    int dt = t[i].norm ? TIDE_F32 : (i == 0 && !p->tied) ? TIDE_F16 : p->dtype;
    if (i == 0 && p->tied && p->dtype == TIDE_Q4_0) dt = TIDE_Q8_0; /* as llama.cpp */
    size_t bytes = tide_dtype_row_size(dt, cnt);
    free(f);
    f = malloc(sizeof(float) * (size_t)cnt);
    data[i] = malloc(bytes ? bytes : 1);
    if (!f || !data[i] || !bytes) { st = TIDE_ERR_NOMEM; break; }
    fill_uniform(f, cnt, t[i].std, &seed);
    if (t[i].norm) for (int64_t k = 0; k < cnt; k++) f[k] += 1.0f;
    st = tide_quantize(dt, f, data[i], cnt);
    if (!st) st = tide_gguf_writer_add_tensor(w, t[i].name, dt, t[i].norm ? 1 : 2, ne, data[i]);
    if (progress) progress(i + 1, n + 1);
  }
  free(f);
  if (!st) st = tide_gguf_writer_write(w, path, 3);
  if (progress && !st) progress(n + 1, n + 1);
  tide_gguf_writer_free(w);
  for (int i = 0; data && i < n; i++) free(data[i]);
  free(data);
  free(t);
  vocab_free(&v);
  return st;
}
