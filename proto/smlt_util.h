/* smlt_util.h: the small helpers every component needs once: an error-message setter, the two
 * clocks, writing a file atomically, and reading a token file.
 *
 * Internal to the project: libsmlt.so links these objects but does not export them (the
 * project builds with -fvisibility=hidden and none of them is marked SMLT_API). */
#ifndef SMLT_UTIL_H
#define SMLT_UTIL_H

#include <stdarg.h>
#include <stddef.h>

/* Formats a message into err (errlen bytes, always terminated). err NULL or errlen 0: no-op.
 * errno is left as it was, so a caller may format strerror(errno) and then return it. */
void smlt_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Seconds on CLOCK_MONOTONIC (for intervals and deadlines). */
double smlt_now_mono(void);

/* Seconds since the Unix epoch, CLOCK_REALTIME (for timestamps that leave the process). */
double smlt_now_unix(void);

/* Atomic file replacement in steps, for writers that stream (model files, downloads):
 * smlt_atomic_open() creates a new temporary file next to path, "PATH.tmp.PID.N" (unique in
 * the process and among processes, so concurrent writers of one path never share it), with the
 * given mode bits (0: 0644) from its creation, and writes its name to tmp (tmplen bytes).
 * Returns the descriptor, or -1 with errno (ENAMETOOLONG when the name does not fit). Write
 * through it, then either smlt_atomic_commit() (fsync, close, rename onto path, fsync path's
 * directory: a reader sees the old file or the whole new one, and the new one survives a
 * crash) or smlt_atomic_abort() (close, unlink). Both take the descriptor: it is closed on
 * return. commit returns 0, or -1 with errno and *what (if non-NULL) naming the step that
 * failed ("fsync", "close", "rename"); on failure the temporary file is removed.
 * A writer that wrote, fsynced and closed the file itself (through stdio) finishes with
 * smlt_atomic_rename(): rename, then fsync the directory; 0 or -1 with errno. */
int smlt_atomic_open(const char *path, unsigned mode, char *tmp, size_t tmplen);
int smlt_atomic_commit(int fd, const char *tmp, const char *path, const char **what);
void smlt_atomic_abort(int fd, const char *tmp);
int smlt_atomic_rename(const char *tmp, const char *path);

/* Writes len bytes of data to path atomically as above (a temporary file, fsync, rename,
 * fsync the directory), with the given mode bits (0: 0644; the file has them from its
 * creation, so a secret is never readable by others). Returns 0, or -1 with errno. Borrows data. */
int smlt_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);

/* fsync()s the directory dir, so that an entry just created or renamed in it survives a
 * crash. Returns 0 or -1 with errno. */
int smlt_sync_dir(const char *dir);

/* Reads a whole file of at most max bytes. Returns a new NUL-terminated string (free() it)
 * with its length in *len (may be NULL), or NULL with errno: the file's, E2BIG when it is
 * larger than max, ENOMEM. */
char *smlt_file_read(const char *path, size_t max, size_t *len);

/* Reads a token from a file: the first line, without its line end and trailing blanks.
 * Returns a new string (free() it), or NULL with errno: the file cannot be read (its errno),
 * is empty (ENODATA), or its first line is longer than SMLT_MAX_TOKEN bytes (E2BIG). */
char *smlt_token_read(const char *path);

#endif
