/*
** lineedit.c -- a small line editor with history for the tide REPL.
** Layer: program (the `tide` executable); knows nothing of Lua or tide.
**
** In the spirit of antirez's linenoise: one file, VT100 escape sequences
** only, no terminfo. The contract:
**
** - All state lives in an le_editor made by le_new: the line, the saved
**   terminal modes, the history. Nothing is global, so two editors on two
**   terminals never interfere.
** - le_read puts the terminal in raw mode only while it reads one line and
**   always restores it before returning; it never exits, aborts or raises
**   signals. Ctrl-C and Ctrl-D come back as LE_INTERRUPT and LE_EOF. Modes
**   are changed with TCSADRAIN, not TCSAFLUSH, so lines pasted ahead are
**   kept for the next le_read.
** - Editing needs both fds to be terminals and $TERM not "dumb"; otherwise
**   le_read reads a plain line, one byte at a time so it never consumes
**   input past the newline (a Lua io.read on the same fd sees the rest).
** - One line, scrolled horizontally when longer than the terminal. The
**   cursor moves by UTF-8 code points; every code point is taken as one
**   column wide (wide CJK characters and emoji misplace the cursor).
** - Keys: Left/Right (Ctrl-B/F), Home/End (Ctrl-A/E), Alt-B/F or
**   Ctrl-Left/Right (word), Backspace, Delete, Ctrl-D (delete, or EOF on
**   an empty line), Ctrl-K (kill to end), Ctrl-U (kill to start), Ctrl-W
**   or Alt-Backspace (kill the previous word), Ctrl-L (clear screen),
**   Ctrl-C (abandon the line), Up/Down (Ctrl-P/N) through history, Tab
**   (two spaces), Enter.
** - History: at most history_max lines in memory. Browsing keeps the line
**   being typed and brings it back below the newest entry; editing a
**   recalled line changes only the line being edited. Files hold one entry
**   per line: le_history_append adds one line as it is entered,
**   le_history_save trims the file to its last history_max lines.
** - Memory: malloc/realloc, checked; LE_ERROR with errno ENOMEM on failure.
*/
#include "lineedit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

struct le_history {
  char **lines; /* (max) oldest first, n used */
  int n, max;
};

struct le_editor {
  int in, out;
  int editing;           /* raw-mode editing is possible */
  struct termios orig;   /* the terminal's modes, restored after each read */
  char *buf;             /* the line: len bytes + NUL, cap allocated */
  size_t len, cap, pos;  /* pos: cursor, a byte offset on a code point */
  char *out_buf;         /* one refresh's output, out_cap allocated */
  size_t out_len, out_cap;
  const char *prompt;
  size_t prompt_cols;
  struct le_history hist;
  int hist_idx;          /* entry shown; hist.n means the line being typed */
  char *typed;           /* the line being typed, kept while browsing */
};

static void hist_clear(struct le_history *h);

/* ---- buffers */

static int reserve(char **p, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 128;
  while (n < need) n *= 2;
  char *q = realloc(*p, n);
  if (!q) {
    errno = ENOMEM;
    return -1;
  }
  *p = q;
  *cap = n;
  return 0;
}

static int set_line(le_editor *e, const char *s) {
  size_t n = strlen(s);
  if (reserve(&e->buf, &e->cap, n + 1)) return -1;
  memcpy(e->buf, s, n + 1);
  e->len = e->pos = n;
  return 0;
}

static int out_add(le_editor *e, const char *s, size_t n) {
  if (reserve(&e->out_buf, &e->out_cap, e->out_len + n)) return -1;
  memcpy(e->out_buf + e->out_len, s, n);
  e->out_len += n;
  return 0;
}

static int write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  else errno = ENOMEM;
  return d;
}

/* ---- editor */

le_editor *le_new(int in_fd, int out_fd, int history_max) {
  le_editor *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->in = in_fd;
  e->out = out_fd;
  e->hist.max = history_max > 0 ? history_max : 1;
  e->hist.lines = calloc((size_t)e->hist.max, sizeof *e->hist.lines);
  if (!e->hist.lines || reserve(&e->buf, &e->cap, 128)) {
    le_free(e);
    return NULL;
  }
  e->buf[0] = 0;
  const char *term = getenv("TERM");
  int dumb = term && (!strcasecmp(term, "dumb") || !strcasecmp(term, "cons25") ||
                      !strcasecmp(term, "emacs"));
  e->editing = isatty(in_fd) && isatty(out_fd) && !dumb;
  return e;
}

void le_free(le_editor *e) {
  if (!e) return;
  hist_clear(&e->hist);
  free(e->typed);
  free(e->buf);
  free(e->out_buf);
  free(e);
}

int le_editing(const le_editor *e) { return e->editing; }

static int raw_on(le_editor *e) {
  if (tcgetattr(e->in, &e->orig) < 0) return -1;
  struct termios raw = e->orig;
  raw.c_iflag &= ~(tcflag_t)(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
  raw.c_oflag &= ~(tcflag_t)OPOST;
  raw.c_cflag |= CS8;
  raw.c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN | ISIG);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  return tcsetattr(e->in, TCSADRAIN, &raw);
}

static void raw_off(le_editor *e) { tcsetattr(e->in, TCSADRAIN, &e->orig); }

/* 1 and *c on a byte, 0 at end of input, -1 on error */
static int read_byte(le_editor *e, unsigned char *c) {
  for (;;) {
    ssize_t r = read(e->in, c, 1);
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? -1 : (int)r;
  }
}

/* ---- display */

static int is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

/* columns of n bytes of UTF-8 (one per code point) */
static size_t columns(const char *s, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++) c += !is_cont((unsigned char)s[i]);
  return c;
}

static size_t next_cp(const le_editor *e, size_t i) {
  if (i < e->len) i++;
  while (i < e->len && is_cont((unsigned char)e->buf[i])) i++;
  return i;
}

static size_t prev_cp(const le_editor *e, size_t i) {
  if (i > 0) i--;
  while (i > 0 && is_cont((unsigned char)e->buf[i])) i--;
  return i;
}

static size_t term_cols(const le_editor *e) {
  struct winsize ws;
  if (ioctl(e->out, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

/* Redraws prompt and line, scrolled so the cursor is visible, in one write. */
static int refresh(le_editor *e) {
  size_t cols = term_cols(e), pc = e->prompt_cols;
  size_t start = 0, end = e->len, cur = columns(e->buf, e->pos);
  while (pc + cur >= cols && start < e->pos) {
    start = next_cp(e, start);
    cur--;
  }
  size_t shown = columns(e->buf + start, end - start);
  while (pc + shown > cols && end > e->pos) {
    end = prev_cp(e, end);
    shown--;
  }
  char move[32];
  int nm = snprintf(move, sizeof move, "\r\x1b[%zuC", pc + cur);
  e->out_len = 0;
  if (out_add(e, "\r", 1) || out_add(e, e->prompt, strlen(e->prompt)) ||
      out_add(e, e->buf + start, end - start) || out_add(e, "\x1b[0K", 4) ||
      out_add(e, move, pc + cur > 0 ? (size_t)nm : 1))
    return -1;
  return write_all(e->out, e->out_buf, e->out_len);
}

/* ---- editing operations (each leaves buf NUL-terminated) */

static void delete_range(le_editor *e, size_t from, size_t to) {
  memmove(e->buf + from, e->buf + to, e->len - to + 1);
  e->len -= to - from;
  if (e->pos > to) e->pos -= to - from;
  else if (e->pos > from) e->pos = from;
}

static int insert(le_editor *e, const char *s, size_t n) {
  if (reserve(&e->buf, &e->cap, e->len + n + 1)) return -1;
  memmove(e->buf + e->pos + n, e->buf + e->pos, e->len - e->pos + 1);
  memcpy(e->buf + e->pos, s, n);
  e->len += n;
  e->pos += n;
  return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

static size_t word_left(const le_editor *e) {
  size_t i = e->pos;
  while (i > 0 && is_space(e->buf[i - 1])) i--;
  while (i > 0 && !is_space(e->buf[i - 1])) i--;
  return i;
}

static size_t word_right(const le_editor *e) {
  size_t i = e->pos;
  while (i < e->len && is_space(e->buf[i])) i++;
  while (i < e->len && !is_space(e->buf[i])) i++;
  return i;
}

/* Shows history entry idx (hist.n: the line that was being typed). */
static int history_show(le_editor *e, int idx) {
  if (idx < 0 || idx > e->hist.n || idx == e->hist_idx) return 0;
  if (e->hist_idx == e->hist.n) {
    free(e->typed);
    if (!(e->typed = dup_str(e->buf))) return -1;
  }
  e->hist_idx = idx;
  return set_line(e, idx == e->hist.n ? (e->typed ? e->typed : "") : e->hist.lines[idx]);
}

/* ---- keys */

enum { K_NONE, K_LEFT, K_RIGHT, K_HOME, K_END, K_UP, K_DOWN, K_DELETE, K_WLEFT,
       K_WRIGHT, K_WKILL };

/* After ESC: decodes CSI (ESC [), SS3 (ESC O) and Alt-key sequences. */
static int read_escape(le_editor *e) {
  unsigned char c, c2;
  if (read_byte(e, &c) <= 0) return K_NONE;
  if (c == 'b' || c == 'B') return K_WLEFT;
  if (c == 'f' || c == 'F') return K_WRIGHT;
  if (c == 127 || c == 8) return K_WKILL;
  if (c != '[' && c != 'O') return K_NONE;
  char params[16];
  size_t np = 0;
  for (;;) { /* parameter bytes, then one final byte in 0x40..0x7E */
    if (read_byte(e, &c2) <= 0) return K_NONE;
    if (c2 >= 0x40 && c2 <= 0x7E) break;
    if (np < sizeof params - 1) params[np++] = (char)c2;
  }
  params[np] = 0;
  int ctrl = strstr(params, ";5") != NULL; /* Ctrl-modified: 1;5C */
  switch (c2) {
    case 'A': return K_UP;
    case 'B': return K_DOWN;
    case 'C': return ctrl ? K_WRIGHT : K_RIGHT;
    case 'D': return ctrl ? K_WLEFT : K_LEFT;
    case 'H': return K_HOME;
    case 'F': return K_END;
    case '~':
      switch (atoi(params)) {
        case 1: case 7: return K_HOME;
        case 4: case 8: return K_END;
        case 3: return K_DELETE;
        default: return K_NONE;
      }
    default: return K_NONE;
  }
}

#define KEY_CTRL(k) ((k) & 0x1f)

/* Applies one key; returns 0 to go on, or an le_read result. */
static int apply_key(le_editor *e, int key) {
  int st = 0;
  switch (key) {
    case K_LEFT: e->pos = prev_cp(e, e->pos); break;
    case K_RIGHT: e->pos = next_cp(e, e->pos); break;
    case K_HOME: e->pos = 0; break;
    case K_END: e->pos = e->len; break;
    case K_WLEFT: e->pos = word_left(e); break;
    case K_WRIGHT: e->pos = word_right(e); break;
    case K_WKILL: delete_range(e, word_left(e), e->pos); break;
    case K_DELETE: delete_range(e, e->pos, next_cp(e, e->pos)); break;
    case K_UP: st = history_show(e, e->hist_idx - 1); break;
    case K_DOWN: st = history_show(e, e->hist_idx + 1); break;
    default: break;
  }
  if (st < 0) return LE_ERROR;
  return refresh(e) < 0 ? LE_ERROR : 0;
}

/* Handles one input byte c; returns 0 to go on, or an le_read result. */
static int edit_byte(le_editor *e, unsigned char c) {
  switch (c) {
    case '\r': case '\n':
      e->pos = e->len;
      if (refresh(e) < 0) return LE_ERROR;
      return write_all(e->out, "\r\n", 2) < 0 ? LE_ERROR : LE_LINE;
    case KEY_CTRL('C'): /* leave the abandoned line whole on the screen */
      e->pos = e->len;
      if (refresh(e) < 0) return LE_ERROR;
      return write_all(e->out, "^C\r\n", 4) < 0 ? LE_ERROR : LE_INTERRUPT;
    case KEY_CTRL('D'):
      if (e->len == 0) return write_all(e->out, "\r\n", 2) < 0 ? LE_ERROR : LE_EOF;
      return apply_key(e, K_DELETE);
    case 127: case KEY_CTRL('H'): delete_range(e, prev_cp(e, e->pos), e->pos); break;
    case KEY_CTRL('A'): return apply_key(e, K_HOME);
    case KEY_CTRL('E'): return apply_key(e, K_END);
    case KEY_CTRL('B'): return apply_key(e, K_LEFT);
    case KEY_CTRL('F'): return apply_key(e, K_RIGHT);
    case KEY_CTRL('P'): return apply_key(e, K_UP);
    case KEY_CTRL('N'): return apply_key(e, K_DOWN);
    case KEY_CTRL('W'): return apply_key(e, K_WKILL);
    case KEY_CTRL('K'): delete_range(e, e->pos, e->len); break;
    case KEY_CTRL('U'): delete_range(e, 0, e->pos); break;
    case KEY_CTRL('L'):
      if (write_all(e->out, "\x1b[H\x1b[2J", 7) < 0) return LE_ERROR;
      break;
    case '\t':
      if (insert(e, "  ", 2) < 0) return LE_ERROR;
      break;
    case 27: return apply_key(e, read_escape(e));
    default: {
      if (c < 32) return 0; /* other control keys do nothing */
      char cp[4] = { (char)c };
      size_t n = 1, want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      /* take a whole code point before redrawing */
      while (n < want && read_byte(e, (unsigned char *)&cp[n]) > 0) n++;
      if (insert(e, cp, n) < 0) return LE_ERROR;
    }
  }
  return refresh(e) < 0 ? LE_ERROR : 0;
}

static int read_edited(le_editor *e) {
  e->len = e->pos = 0;
  e->buf[0] = 0;
  e->hist_idx = e->hist.n;
  free(e->typed);
  e->typed = NULL;
  if (raw_on(e) < 0) return LE_ERROR;
  int st = refresh(e) < 0 ? LE_ERROR : 0;
  while (st == 0) {
    unsigned char c;
    int r = read_byte(e, &c);
    if (r < 0) st = LE_ERROR;
    else if (r == 0) st = e->len > 0 ? LE_LINE : LE_EOF;
    else st = edit_byte(e, c);
  }
  int saved = errno;
  raw_off(e);
  errno = saved;
  return st;
}

static int read_plain(le_editor *e) {
  int tty = isatty(e->in);
  if (tty && write_all(e->out, e->prompt, strlen(e->prompt)) < 0) return LE_ERROR;
  e->len = 0;
  for (;;) {
    unsigned char c;
    int r = read_byte(e, &c);
    if (r < 0) return LE_ERROR;
    if (r == 0) {
      if (e->len > 0) break;
      if (tty) write_all(e->out, "\n", 1);
      return LE_EOF;
    }
    if (c == '\n') break;
    if (reserve(&e->buf, &e->cap, e->len + 2)) return LE_ERROR;
    e->buf[e->len++] = (char)c;
  }
  if (e->len > 0 && e->buf[e->len - 1] == '\r') e->len--;
  e->buf[e->len] = 0;
  return LE_LINE;
}

int le_read(le_editor *e, const char *prompt, const char **line, size_t *len) {
  e->prompt = prompt ? prompt : "";
  e->prompt_cols = columns(e->prompt, strlen(e->prompt));
  int st = e->editing ? read_edited(e) : read_plain(e);
  *line = st == LE_LINE ? e->buf : NULL;
  *len = st == LE_LINE ? e->len : 0;
  return st;
}

/* ---- history */

/* Appends an owned line to h, dropping the oldest when full. */
static void hist_push(struct le_history *h, char *owned) {
  if (h->n == h->max) {
    free(h->lines[0]);
    memmove(h->lines, h->lines + 1, sizeof *h->lines * (size_t)(h->max - 1));
    h->n--;
  }
  h->lines[h->n++] = owned;
}

static void hist_clear(struct le_history *h) {
  if (h->lines)
    for (int i = 0; i < h->n; i++) free(h->lines[i]);
  free(h->lines);
  h->lines = NULL;
  h->n = 0;
}

int le_history_add(le_editor *e, const char *line) {
  struct le_history *h = &e->hist;
  if (!line[0] || line[0] == ' ' || strchr(line, '\n')) return 0;
  if (strspn(line, " \t\r") == strlen(line)) return 0;
  if (h->n > 0 && strcmp(h->lines[h->n - 1], line) == 0) return 0;
  char *copy = dup_str(line);
  if (!copy) return -1;
  hist_push(h, copy);
  return 1;
}

static void chomp(char *s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = 0;
}

int le_history_load(le_editor *e, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return errno == ENOENT ? 0 : -1;
  char *line = NULL;
  size_t cap = 0;
  int st = 0;
  while (st == 0 && getline(&line, &cap, f) >= 0) {
    chomp(line);
    if (le_history_add(e, line) < 0) st = -1;
  }
  int saved = errno;
  free(line);
  fclose(f);
  errno = saved;
  return st;
}

int le_history_append(const char *path, const char *line) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  size_t n = strlen(line);
  char *rec = malloc(n + 1);
  int st = -1;
  if (rec) { /* one write, so concurrent sessions do not interleave a line */
    memcpy(rec, line, n);
    rec[n] = '\n';
    st = write_all(fd, rec, n + 1);
    free(rec);
  } else {
    errno = ENOMEM;
  }
  int saved = errno;
  close(fd);
  errno = saved;
  return st;
}

/* Reads the last t->max lines of the file at path into t. Returns 0, or -1
** (errno set) if the file cannot be read whole or memory runs out. */
static int file_tail(struct le_history *t, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char *line = NULL;
  size_t cap = 0;
  int st = 0;
  while (getline(&line, &cap, f) >= 0) {
    chomp(line);
    char *copy = dup_str(line);
    if (!copy) {
      st = -1;
      break;
    }
    hist_push(t, copy);
  }
  if (ferror(f)) st = -1;
  int saved = errno;
  free(line);
  fclose(f);
  errno = saved;
  return st;
}

int le_history_save(le_editor *e, const char *path) {
  struct le_history tail = { calloc((size_t)e->hist.max, sizeof(char *)), 0, e->hist.max };
  const struct le_history *src = &e->hist;
  if (tail.lines && file_tail(&tail, path) == 0) src = &tail;
  size_t n = strlen(path);
  char *tmp = malloc(n + 5);
  int st = -1;
  if (tmp) {
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
      st = 0;
      for (int i = 0; i < src->n && st == 0; i++)
        if (write_all(fd, src->lines[i], strlen(src->lines[i])) || write_all(fd, "\n", 1))
          st = -1;
      if (close(fd) < 0) st = -1;
      if (st == 0 && rename(tmp, path) < 0) st = -1;
      if (st < 0) unlink(tmp);
    }
  } else {
    errno = ENOMEM;
  }
  int saved = errno;
  free(tmp);
  hist_clear(&tail);
  errno = saved;
  return st;
}
