/* coord_journal.c: append-only JSON-lines job journals (see coord_journal.h). */
#include "coord_journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_util.h"

#define COORD_JOURNAL_MAX_TYPE 64

struct coord_journal {
    int fd;
    char *id;
    char *dir;
};

int coord_journal_id_valid(const char *id)
{
    if (!id)
        return 0;
    size_t n = strlen(id);
    if (n == 0 || n > COORD_JOURNAL_MAX_ID || strstr(id, ".."))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!(('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    /* "." alone names the jobs directory itself. */
    return strcmp(id, ".") != 0;
}

/* Builds DATA_DIR/jobs[/ID[/FILE]] into out. Returns 0 or -1 when it does not fit. */
static int build_path(char *out, size_t outlen, const char *data_dir, const char *id,
                      const char *file)
{
    int n;
    if (!id)
        n = snprintf(out, outlen, "%s/jobs", data_dir);
    else if (!file)
        n = snprintf(out, outlen, "%s/jobs/%s", data_dir, id);
    else
        n = snprintf(out, outlen, "%s/jobs/%s/%s", data_dir, id, file);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* fsync()s a directory so that an entry just created in it survives a crash. */
static void sync_dir(const char *path)
{
    if (smlt_sync_dir(path) < 0)
        log_warn("journal: fsync %s: %s", path, strerror(errno));
}

/* mkdir -p with mode 0700 for what it creates. Returns 0 or -1 with errno. */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0)
            continue;
        char saved = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0700) == 0) {
            /* Make the new entry durable in its parent. */
            char *slash = strrchr(buf, '/');
            if (slash && slash != buf) {
                *slash = 0;
                sync_dir(buf);
                *slash = '/';
            } else if (slash) {
                sync_dir("/");
            } else {
                sync_dir(".");
            }
        } else if (errno != EEXIST) {
            return -1;
        } else {
            struct stat st;
            if (stat(buf, &st) < 0)
                return -1;
            if (!S_ISDIR(st.st_mode)) {
                errno = ENOTDIR;
                return -1;
            }
        }
        buf[i] = saved;
    }
    return 0;
}

/* Writes all of buf (a short write on a regular file means the disk is full or an error). */
static ssize_t write_once(int fd, const void *buf, size_t len)
{
    ssize_t w;
    do
        w = write(fd, buf, len);
    while (w < 0 && errno == EINTR);
    return w;
}

struct coord_journal *coord_journal_open(const char *data_dir, const char *job_id, char *err,
                                         size_t errlen)
{
    char dir[PATH_MAX], file[PATH_MAX];
    if (!data_dir || !*data_dir) {
        smlt_set_err(err, errlen, "journal: no data directory");
        return NULL;
    }
    if (!coord_journal_id_valid(job_id)) {
        smlt_set_err(err, errlen,
                     "journal: bad job id (expected [A-Za-z0-9._-]{1,%d} without '..')",
                     COORD_JOURNAL_MAX_ID);
        return NULL;
    }
    if (build_path(dir, sizeof dir, data_dir, job_id, NULL) < 0 ||
        build_path(file, sizeof file, data_dir, job_id, COORD_JOURNAL_FILE) < 0) {
        smlt_set_err(err, errlen, "journal: data directory path too long");
        return NULL;
    }
    if (make_dirs(dir) < 0) {
        smlt_set_err(err, errlen, "journal: mkdir %s: %s", dir, strerror(errno));
        return NULL;
    }
    int created = 1;
    int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        created = 0;
        fd = open(file, O_WRONLY | O_APPEND | O_CLOEXEC);
    }
    if (fd < 0) {
        smlt_set_err(err, errlen, "journal: open %s: %s", file, strerror(errno));
        return NULL;
    }
    if (created) {
        sync_dir(dir);
    } else {
        /* A crash mid-write leaves a last line without its newline: end it, so the next
         * record is not glued to it (replay then skips the cut line alone). */
        struct stat st;
        char last = '\n';
        int rfd = open(file, O_RDONLY | O_CLOEXEC);
        if (fstat(fd, &st) == 0 && st.st_size > 0 && rfd >= 0 &&
            pread(rfd, &last, 1, st.st_size - 1) == 1 && last != '\n') {
            log_warn("job %s: journal ends in a cut line (crash mid-write?); ending it", job_id);
            if (write_once(fd, "\n", 1) != 1 || fdatasync(fd) < 0)
                log_warn("job %s: journal: %s", job_id, strerror(errno));
        }
        if (rfd >= 0)
            close(rfd);
    }
    struct coord_journal *j = calloc(1, sizeof *j);
    if (!j || !(j->id = strdup(job_id)) || !(j->dir = strdup(dir))) {
        if (j) {
            free(j->id);
            free(j);
        }
        close(fd);
        smlt_set_err(err, errlen, "journal: out of memory");
        return NULL;
    }
    j->fd = fd;
    return j;
}

static int type_valid(const char *type)
{
    if (!type)
        return 0;
    size_t n = strlen(type);
    if (n == 0 || n > COORD_JOURNAL_MAX_TYPE)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)type[i] < 0x20 || type[i] == 0x7f)
            return 0;
    return 1;
}

int coord_journal_append(struct coord_journal *j, const char *type, json_t *fields, int durable)
{
    if (!j || !type_valid(type) || (fields && !json_is_object(fields)) ||
        json_object_get(fields, "t") || json_object_get(fields, "type"))
        return SMLT_EINVAL;
    int rc = 0;
    char *line = NULL;
    json_t *rec = json_object();
    if (!rec || json_object_set_new(rec, "t", json_integer((int64_t)(smlt_now_unix() * 1e3))) < 0 ||
        json_object_set_new(rec, "type", json_string(type)) < 0 ||
        (fields && json_object_update(rec, fields) < 0)) {
        rc = SMLT_ENOMEM;
        goto out;
    }
    line = json_dumps(rec, JSON_COMPACT);
    if (!line) {
        rc = SMLT_ENOMEM;
        goto out;
    }
    size_t len = strlen(line);
    if (len + 1 > COORD_JOURNAL_MAX_LINE) {
        log_warn("job %s: journal record '%s' of %zu bytes refused (at most %u)", j->id, type,
                 len + 1, COORD_JOURNAL_MAX_LINE);
        rc = SMLT_ETOOBIG;
        goto out;
    }
    char *grown = realloc(line, len + 2);
    if (!grown) {
        rc = SMLT_ENOMEM;
        goto out;
    }
    line = grown;
    line[len++] = '\n';
    line[len] = 0;
    ssize_t w = write_once(j->fd, line, len);
    if (w != (ssize_t)len) {
        int e = w < 0 ? errno : ENOSPC;
        log_error("job %s: journal write of '%s' failed: %s", j->id, type, strerror(e));
        /* End a partial line so that the next record starts on its own line. */
        if (w > 0)
            (void)write_once(j->fd, "\n", 1);
        rc = SMLT_ESYS;
        goto out;
    }
    if ((durable || !strcmp(type, "state")) && fdatasync(j->fd) < 0) {
        log_error("job %s: journal fdatasync: %s", j->id, strerror(errno));
        rc = SMLT_ESYS;
    }
out:
    free(line);
    json_decref(rec);
    return rc;
}

const char *coord_journal_dir(const struct coord_journal *j)
{
    return j->dir;
}

void coord_journal_close(struct coord_journal *j)
{
    if (!j)
        return;
    close(j->fd);
    free(j->id);
    free(j->dir);
    free(j);
}

/* ---- replay -------------------------------------------------------------------------------- */

/* Parses one complete line and hands it to fn. Returns fn's value, or 0 for a skipped line. */
static int replay_line(const char *job_id, unsigned long lineno, const char *line, size_t len,
                       int last_cut, coord_journal_fn fn, void *arg)
{
    if (len == 0)
        return 0;
    json_error_t je;
    json_t *rec = json_loadb(line, len, 0, &je);
    json_t *type = rec ? json_object_get(rec, "type") : NULL;
    if (!rec || !json_is_object(rec) || !json_is_string(type) ||
        !json_is_integer(json_object_get(rec, "t"))) {
        if (last_cut)
            log_warn("job %s: journal line %lu is cut short (crash mid-write?), skipped", job_id,
                     lineno);
        else
            log_warn("job %s: journal line %lu is corrupt (%s), skipped", job_id, lineno,
                     rec ? "not a record with \"t\" and \"type\"" : je.text);
        json_decref(rec);
        return 0;
    }
    int rc = fn(json_string_value(type), rec, arg);
    json_decref(rec);
    return rc;
}

/* Appends take bytes to the line being read, growing it up to COORD_JOURNAL_MAX_LINE (the
 * caller checks the length first). Returns 0 or SMLT_ENOMEM. */
static int line_append(char **line, size_t *cap, size_t *len, const char *src, size_t take)
{
    if (*len + take > *cap) {
        size_t ncap = *cap;
        while (ncap < *len + take)
            ncap *= 2;
        if (ncap > COORD_JOURNAL_MAX_LINE)
            ncap = COORD_JOURNAL_MAX_LINE;
        char *g = realloc(*line, ncap);
        if (!g)
            return SMLT_ENOMEM;
        *line = g;
        *cap = ncap;
    }
    memcpy(*line + *len, src, take);
    *len += take;
    return 0;
}

int coord_journal_replay(const char *data_dir, const char *job_id, coord_journal_fn fn,
                         void *arg)
{
    char file[PATH_MAX];
    if (!data_dir || !fn || !coord_journal_id_valid(job_id) ||
        build_path(file, sizeof file, data_dir, job_id, COORD_JOURNAL_FILE) < 0)
        return SMLT_EINVAL;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SMLT_ENOTFOUND : SMLT_ESYS;

    int rc = 0, overflow = 0;
    unsigned long lineno = 0;
    size_t cap = 4096, len = 0;
    char *line = malloc(cap);
    char *chunk = malloc(65536);
    if (!line || !chunk) {
        rc = SMLT_ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, chunk, 65536);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_error("job %s: journal read: %s", job_id, strerror(errno));
            rc = SMLT_ESYS;
            goto out;
        }
        if (n == 0)
            break;
        size_t i = 0;
        while (i < (size_t)n) {
            char *nl = memchr(chunk + i, '\n', (size_t)n - i);
            size_t take = nl ? (size_t)(nl - (chunk + i)) : (size_t)n - i;
            if (!overflow && len + take >= COORD_JOURNAL_MAX_LINE) {
                overflow = 1;
            } else if (!overflow) {
                if ((rc = line_append(&line, &cap, &len, chunk + i, take)))
                    goto out;
            }
            i += take;
            if (!nl)
                break;
            i++;
            lineno++;
            if (overflow)
                log_warn("job %s: journal line %lu is longer than %u bytes, skipped", job_id,
                         lineno, COORD_JOURNAL_MAX_LINE);
            else if ((rc = replay_line(job_id, lineno, line, len, 0, fn, arg)))
                goto out;
            len = 0;
            overflow = 0;
        }
    }
    /* A last line without its newline: a write cut by a crash (one write(2) per line means a
     * whole record always ends in '\n'). Skipped unless it still parses. */
    if (len || overflow) {
        lineno++;
        if (overflow)
            log_warn("job %s: journal line %lu is longer than %u bytes, skipped", job_id, lineno,
                     COORD_JOURNAL_MAX_LINE);
        else
            rc = replay_line(job_id, lineno, line, len, 1, fn, arg);
    }
out:
    free(line);
    free(chunk);
    close(fd);
    return rc;
}

/* ---- listing ------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int coord_journal_list(const char *data_dir, int (*fn)(const char *job_id, void *arg),
                       void *arg)
{
    char jobs[PATH_MAX], file[PATH_MAX];
    if (!data_dir || !fn || build_path(jobs, sizeof jobs, data_dir, NULL, NULL) < 0)
        return SMLT_EINVAL;
    DIR *d = opendir(jobs);
    if (!d)
        return errno == ENOENT ? 0 : SMLT_ESYS;
    int rc = 0;
    size_t n = 0, cap = 0;
    char **ids = NULL;
    struct dirent *de;
    while ((errno = 0, de = readdir(d))) {
        struct stat st;
        if (!coord_journal_id_valid(de->d_name) ||
            build_path(file, sizeof file, data_dir, de->d_name, COORD_JOURNAL_FILE) < 0 ||
            stat(file, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **g = realloc(ids, ncap * sizeof *g);
            if (!g) {
                rc = SMLT_ENOMEM;
                goto out;
            }
            ids = g;
            cap = ncap;
        }
        if (!(ids[n] = strdup(de->d_name))) {
            rc = SMLT_ENOMEM;
            goto out;
        }
        n++;
    }
    if (errno) {
        rc = SMLT_ESYS;
        goto out;
    }
    if (n)
        qsort(ids, n, sizeof *ids, cmp_str);
    for (size_t i = 0; i < n && !rc; i++)
        rc = fn(ids[i], arg);
out:
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    closedir(d);
    return rc;
}
