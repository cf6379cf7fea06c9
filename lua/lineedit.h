/*
** lineedit.h -- a small line editor with history for the tide REPL.
** Layer: program (the `tide` executable); knows nothing of Lua or tide.
** The contract is at the top of lineedit.c.
*/
#ifndef LINEEDIT_H
#define LINEEDIT_H

#include <stddef.h>

typedef struct le_editor le_editor;

/* le_read results */
enum {
  LE_LINE = 1,  /* a line was read */
  LE_EOF,       /* end of input (or Ctrl-D on an empty line) */
  LE_INTERRUPT, /* Ctrl-C: the line was abandoned */
  LE_ERROR      /* a read error or out of memory; errno tells which */
};

/* A new editor reading in_fd and echoing to out_fd, keeping at most
** history_max lines of history (at least 1). Returns NULL when out of
** memory. Does not touch the terminal until le_read. */
le_editor *le_new(int in_fd, int out_fd, int history_max);
/* Frees the editor (NULL is fine); the terminal is already restored. */
void le_free(le_editor *e);
/* 1 if le_read edits in raw mode (in_fd and out_fd are terminals and
** $TERM is not a dumb one), 0 if it reads plain lines. */
int le_editing(const le_editor *e);

/* Shows prompt and reads one line without its newline. On LE_LINE, *line
** points at the editor's own NUL-terminated buffer (valid until the next
** le_read or le_free) and *len is its length in bytes (the line may hold
** NULs when input is not a terminal). The prompt is shown only when in_fd
** is a terminal. */
int le_read(le_editor *e, const char *prompt, const char **line, size_t *len);

/* Adds line to the in-memory history unless it is empty, blank, starts
** with a space, holds a newline, or repeats the last entry. Returns 1 if
** added, 0 if skipped, -1 when out of memory. */
int le_history_add(le_editor *e, const char *line);
/* Loads the last history_max lines of the file at path into the history.
** A missing file is not an error. Returns 0, or -1 with errno set. */
int le_history_load(le_editor *e, const char *path);
/* Appends one line to the file at path (created with mode 0600). Returns 0,
** or -1 with errno set. */
int le_history_append(const char *path, const char *line);
/* Rewrites the file at path keeping its last history_max lines (the file,
** not the memory, so lines appended by other sessions survive; the
** in-memory history if the file cannot be read). Atomic: writes path.tmp
** and renames it. Returns 0, or -1 with errno set. */
int le_history_save(le_editor *e, const char *path);

#endif
