/* coord_spec_source.c: where a job's data and shards come from, as a spec names them: a
 * dataset (a directory of IDX files, file://, an http(s) URL, csv: or libsvm: files) checked
 * without reading it, and a list of shard addresses. Part of the spec parser (coord_spec.c);
 * every refusal names its field. */
#include "coord_spec_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- dataset ------------------------------------------------------------------------------- */

static int check_file(struct pctx *c, const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return errno == ENOENT ? coord_spec__fail(c, "dataset: %s: no such file", path)
                               : coord_spec__fail(c, "dataset: %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return coord_spec__fail(c, "dataset: %s: is a directory (a file is needed here)", path);
    return 0;
}

static int has_file(const char *dir, const char *name)
{
    char path[COORD_SPEC_PATH_MAX + 64];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return 1;
    snprintf(path, sizeof path, "%s/%s.gz", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int check_dir(struct pctx *c, const char *dir)
{
    struct stat st;
    if (!*dir)
        return coord_spec__fail(c, "dataset: empty directory name");
    if (stat(dir, &st) < 0)
        return errno == ENOENT ? coord_spec__fail(c, "dataset: %s: no such directory", dir)
                               : coord_spec__fail(c, "dataset: %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return coord_spec__fail(c, "dataset: %s: not a directory", dir);
    static const char *const need[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"};
    for (int i = 0; i < 2; i++)
        if (!has_file(dir, need[i]))
            return coord_spec__fail(c, "dataset: %s: no %s(.gz) in it", dir, need[i]);
    return 0;
}

/* "csv:TRAIN[,TEST]" / "libsvm:TRAIN[,TEST]": one or two local files. */
static int check_files(struct pctx *c, const char *kind, const char *list)
{
    char buf[COORD_SPEC_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", list);
    char *comma = strchr(buf, ',');
    if (comma)
        *comma = 0;
    if (!buf[0] || (comma && (!comma[1] || strchr(comma + 1, ','))))
        return coord_spec__fail(c, "dataset: '%s:%s' must be %s:TRAIN or %s:TRAIN,TEST", kind, list, kind,
                    kind);
    int rc = check_file(c, buf);
    if (rc == 0 && comma)
        rc = check_file(c, comma + 1);
    return rc;
}

/* Syntax of an http(s) URL prefix: scheme://host[:port][/path], no spaces. */
static int check_url(struct pctx *c, const char *url, const char *rest)
{
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return coord_spec__fail(c, "dataset: '%s': a URL must not contain spaces", url);
    const char *h = rest, *end;
    if (*h == '[') {
        end = strchr(h, ']');
        if (!end || end == h + 1)
            return coord_spec__fail(c, "dataset: '%s': bad IPv6 host", url);
        end++;
    } else {
        end = h;
        while (*end && (('a' <= *end && *end <= 'z') || ('A' <= *end && *end <= 'Z') ||
                        ('0' <= *end && *end <= '9') || *end == '.' || *end == '-' || *end == '_'))
            end++;
        if (end == h)
            return coord_spec__fail(c, "dataset: '%s': the URL has no host", url);
    }
    if (*end == ':') {
        const char *p = end + 1;
        long port = 0;
        while ('0' <= *p && *p <= '9' && port <= 65535)
            port = port * 10 + (*p++ - '0');
        if (p == end + 1 || port < 1 || port > 65535 || (*p && *p != '/'))
            return coord_spec__fail(c, "dataset: '%s': bad port", url);
        end = p;
    }
    if (*end && *end != '/')
        return coord_spec__fail(c, "dataset: '%s': bad character '%c' after the host", url, *end);
    return 0;
}

/* s3://BUCKET[/PREFIX]: a bucket name as S3 allows (3-63 of a-z 0-9 . -, starting and ending
 * with a letter or digit), a prefix without spaces. The objects are not looked at here: the
 * workers fetch them with their own credentials. */
static int check_s3(struct pctx *c, const char *d)
{
    const char *b = d + 5, *slash = strchr(b, '/');
    size_t n = slash ? (size_t)(slash - b) : strlen(b);
    int ok = n >= 3 && n <= 63;
    for (size_t i = 0; ok && i < n; i++)
        ok = (b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '.' ||
             b[i] == '-';
    ok = ok && b[0] != '.' && b[0] != '-' && b[n - 1] != '.' && b[n - 1] != '-';
    if (!ok)
        return coord_spec__fail(c, "dataset: '%s': the bucket must be 3-63 characters of a-z, "
                                   "0-9, '.' and '-', starting and ending with a letter or digit",
                                d);
    if (strpbrk(d, " \t\n"))
        return coord_spec__fail(c, "dataset: '%s': no spaces in an S3 prefix", d);
    return 0;
}

int coord_spec__check_dataset(struct pctx *c, const char *d)
{
    if (!strncmp(d, "csv:", 4))
        return check_files(c, "csv", d + 4);
    if (!strncmp(d, "libsvm:", 7))
        return check_files(c, "libsvm", d + 7);
    if (!strncmp(d, "http://", 7))
        return check_url(c, d, d + 7);
    if (!strncmp(d, "https://", 8))
        return check_url(c, d, d + 8);
    if (!strncmp(d, "file://", 7))
        return check_dir(c, d + 7);
    if (!strncmp(d, "s3://", 5))
        return check_s3(c, d);
    const char *sep = strstr(d, "://");
    if (sep) {
        int n = (int)(sep - d) > 16 ? 16 : (int)(sep - d);
        return coord_spec__fail(c,
                    "dataset: unsupported scheme '%.*s' (expected a directory, file://, http://, "
                    "https://, s3://, csv:PATH or libsvm:PATH)",
                    n, d);
    }
    return check_dir(c, d);
}

/* ---- ps.addrs ------------------------------------------------------------------------------ */

/* Checks "host:port,..." and returns the number of addresses, or SMLT_EINVAL. */
int coord_spec__count_addrs(struct pctx *c, const char *addrs)
{
    int n = 0;
    const char *p = addrs;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char one[300];
        if (len == 0 || len >= sizeof one)
            return coord_spec__fail(c, "ps.addrs: %s address in '%.64s'", len ? "overlong" : "empty", addrs);
        memcpy(one, p, len);
        one[len] = 0;
        char *colon = strrchr(one, ':');
        char *close = strrchr(one, ']');
        int ok = colon && colon != one && (!close || close < colon) && colon[1];
        if (ok && one[0] == '[' && (!close || close + 1 != colon))
            ok = 0;
        long port = 0;
        for (char *q = colon ? colon + 1 : one; ok && *q; q++) {
            if (*q < '0' || *q > '9' || port > 65535)
                ok = 0;
            else
                port = port * 10 + (*q - '0');
        }
        if (!ok || port < 1 || port > 65535) {
            char clean[80];
            coord_spec__fmt_clean(one, len, 64, clean);
            return coord_spec__fail(c, "ps.addrs: '%s' is not host:port", clean);
        }
        if (++n > (int)COORD_SPEC_MAX_SHARDS)
            return coord_spec__fail(c, "ps.addrs: more than %u addresses", COORD_SPEC_MAX_SHARDS);
        if (!e)
            return n;
        p = e + 1;
    }
}

