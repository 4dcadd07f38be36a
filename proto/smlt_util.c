/* smlt_util.c: error messages, clocks, atomic file writes and token files (smlt_util.h). */
#include "smlt_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "smlt_limits.h"

void smlt_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    errno = saved;
}

static double now_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double smlt_now_mono(void)
{
    return now_of(CLOCK_MONOTONIC);
}

double smlt_now_unix(void)
{
    return now_of(CLOCK_REALTIME);
}

static atomic_uint_fast64_t atomic_seq;

int smlt_atomic_open(const char *path, unsigned mode, char *tmp, size_t tmplen)
{
    int n = snprintf(tmp, tmplen, "%s.tmp.%ld.%llu", path, (long)getpid(),
                     (unsigned long long)atomic_fetch_add(&atomic_seq, 1));
    if (n < 0 || (size_t)n >= tmplen) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* O_EXCL: a leftover of a crashed writer with the same pid is never written through. */
    return open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode ? (mode_t)mode : 0644);
}

void smlt_atomic_abort(int fd, const char *tmp)
{
    int saved = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = saved;
}

int smlt_atomic_commit(int fd, const char *tmp, const char *path, const char **what)
{
    const char *step = "fsync";
    if (fsync(fd) < 0)
        goto fail;
    step = "close";
    int cfd = fd;
    fd = -1;
    if (close(cfd) < 0)
        goto fail;
    step = "rename";
    if (smlt_atomic_rename(tmp, path) < 0)
        goto fail;
    return 0;
fail:
    if (what)
        *what = step;
    smlt_atomic_abort(fd, tmp);
    return -1;
}

int smlt_atomic_rename(const char *tmp, const char *path)
{
    if (rename(tmp, path) < 0)
        return -1;
    /* The data is safe; only the new name's durability is at stake: the directory's fsync
     * is best effort. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    (void)smlt_sync_dir(dir);
    return 0;
}

int smlt_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
    char tmp[4200];
    int fd = smlt_atomic_open(path, mode, tmp, sizeof tmp);
    if (fd < 0)
        return -1;
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            smlt_atomic_abort(fd, tmp);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return smlt_atomic_commit(fd, tmp, path, NULL);
}

int smlt_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc < 0 ? -1 : 0;
}

char *smlt_file_read(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(max + 2);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int e = !buf ? ENOMEM : ferror(f) ? (errno ? errno : EIO) : n > max ? E2BIG : 0;
    fclose(f);
    if (e) {
        free(buf);
        errno = e;
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

char *smlt_token_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[SMLT_MAX_TOKEN + 2];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    n = strcspn(buf, "\r\n");
    buf[n] = '\0';
    while (n && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    if (n > SMLT_MAX_TOKEN) {
        errno = E2BIG;
        return NULL;
    }
    if (!n) {
        errno = ENODATA;
        return NULL;
    }
    return strdup(buf);
}
