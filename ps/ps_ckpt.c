/* ps_ckpt.c: shard checkpoint files (format and contracts in ps_ckpt.h). */
#include "ps_ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lz4.h>
#include <zlib.h>

#include "rpc_frame.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_util.h"

#define CKPT_SUFFIX ".smltck"
#define BLOCK_BYTES ((size_t)PS_CKPT_BLOCK * sizeof(float))

/* ---- little-endian helpers --------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint32_t crc(uint32_t c, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) { /* zlib's crc32 takes a uInt length */
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = (uint32_t)crc32(c, b, k);
        b += k;
        n -= k;
    }
    return c;
}

/* ---- paths ------------------------------------------------------------------------------- */

int ps_ckpt_path(char *out, size_t len, const char *dir, uint32_t shard, uint64_t step)
{
    int k = snprintf(out, len, "%s/shard-%u/ckpt-%" PRIu64 CKPT_SUFFIX, dir, shard, step);
    return k < 0 || (size_t)k >= len ? SMLT_ETOOBIG : 0;
}

static int shard_dir(char *out, size_t len, const char *dir, uint32_t shard)
{
    int k = snprintf(out, len, "%s/shard-%u", dir, shard);
    return k < 0 || (size_t)k >= len ? SMLT_ETOOBIG : 0;
}

static int mkdir_one(const char *p)
{
    return mkdir(p, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* ---- writing ----------------------------------------------------------------------------- */

struct wfile {
    int fd;
    uint64_t off;
};

static int wfull(struct wfile *w, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t k = write(w->fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        b += k;
        n -= (size_t)k;
        w->off += (uint64_t)k;
    }
    return 0;
}

/* Writes one float array as blocks; scratch holds a compressed block. Compression is decided
 * per block like the wire does (rpc_payload_should_compress(): a few samples), and kept only
 * when it shrinks the block. */
static int write_array(struct wfile *w, const float *a, uint64_t n, uint8_t *scratch, size_t cap)
{
    for (uint64_t i = 0; i < n; i += PS_CKPT_BLOCK) {
        size_t raw = (size_t)((n - i < PS_CKPT_BLOCK ? n - i : PS_CKPT_BLOCK) * sizeof(float));
        const void *data = a + i;
        size_t stored = raw;
        if (rpc_payload_should_compress(data, raw)) {
            int k = LZ4_compress_default(data, (char *)scratch, (int)raw, (int)cap);
            if (k > 0 && (size_t)k < raw) {
                stored = (size_t)k;
                data = scratch;
            }
        }
        uint8_t h[8];
        put32(h, (uint32_t)stored);
        uint32_t c = crc(crc(0, h, 4), data, stored);
        put32(h + 4, c);
        if (wfull(w, h, 8) || wfull(w, data, stored))
            return -1;
    }
    return 0;
}

int ps_ckpt_write(const char *dir, const struct ps_ckpt *c, uint64_t *bytes, char *err,
                  size_t errlen)
{
    char path[4096], tmp[4200];
    uint8_t *meta = NULL, *scratch = NULL;
    int fd = -1, rc = SMLT_ESYS;
    size_t joblen = c->job ? strlen(c->job) : 0;
    uint64_t n = c->hi - c->lo;
    if (c->hi < c->lo || n > SMLT_MAX_MODEL_ELEMS || c->nstate > PS_CKPT_MAX_STATE ||
        c->nranks > SMLT_MAX_WORKERS || joblen > SMLT_MAX_NAME || c->map_len > SMLT_MAX_META_LEN) {
        smlt_set_err(err, errlen, "checkpoint of shard %u: counts out of range", c->shard);
        return SMLT_EINVAL;
    }
    if (ps_ckpt_path(path, sizeof path, dir, c->shard, c->step) ||
        shard_dir(tmp, sizeof tmp, dir, c->shard)) {
        smlt_set_err(err, errlen, "checkpoint directory name too long: %s", dir);
        return SMLT_ETOOBIG;
    }
    if (mkdir_one(dir) || mkdir_one(tmp)) {
        smlt_set_err(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return SMLT_ESYS;
    }
    size_t mlen = (size_t)c->nranks * 16 + joblen + c->map_len;
    size_t cap = (size_t)LZ4_compressBound((int)BLOCK_BYTES);
    meta = malloc(mlen + 4);
    scratch = malloc(cap);
    if (!meta || !scratch) {
        smlt_set_err(err, errlen, "out of memory writing a checkpoint");
        rc = SMLT_ENOMEM;
        goto out;
    }
    uint8_t *p = meta;
    for (uint32_t r = 0; r < c->nranks; r++, p += 8)
        put64(p, c->last_counted[r]);
    for (uint32_t r = 0; r < c->nranks; r++, p += 8)
        put64(p, c->last_applied[r]);
    if (joblen)
        memcpy(p, c->job, joblen);
    p += joblen;
    if (c->map_len)
        memcpy(p, c->map_pb, c->map_len);
    p += c->map_len;
    put32(p, crc(0, meta, mlen));

    fd = smlt_atomic_open(path, 0644, tmp, sizeof tmp);
    if (fd < 0) {
        smlt_set_err(err, errlen, "cannot create %s: %s", path, strerror(errno));
        goto out;
    }
    /* The header's file length is only known once the blocks are compressed: write a
     * placeholder header, the body, then the header again. */
    struct wfile w = {fd, 0};
    uint8_t h[PS_CKPT_HDR_LEN] = {0};
    if (wfull(&w, h, sizeof h) || wfull(&w, meta, mlen + 4) ||
        write_array(&w, c->params, n, scratch, cap))
        goto io_fail;
    for (uint32_t k = 0; k < c->nstate; k++)
        if (write_array(&w, c->state + (size_t)k * n, n, scratch, cap))
            goto io_fail;
    memcpy(h, PS_CKPT_MAGIC, 8);
    put32(h + 8, PS_CKPT_FORMAT);
    put32(h + 12, 0);
    put32(h + 16, c->shard);
    put32(h + 20, c->nstate);
    put64(h + 24, c->step);
    put64(h + 32, c->lo);
    put64(h + 40, c->hi);
    put32(h + 48, c->nranks);
    put32(h + 52, (uint32_t)c->map_len);
    put64(h + 56, w.off);
    put32(h + 64, (uint32_t)joblen);
    put32(h + 68, c->optim);
    put64(h + 72, c->version);
    put64(h + 80, c->clock);
    put64(h + 88, c->updates);
    put32(h + 96, 0);
    put32(h + 100, crc(0, h, 100));
    if (pwrite(fd, h, sizeof h, 0) != (ssize_t)sizeof h)
        goto io_fail;
    uint64_t size = w.off;
    const char *what = NULL;
    int cfd = fd;
    fd = -1;
    if (smlt_atomic_commit(cfd, tmp, path, &what) != 0) {
        smlt_set_err(err, errlen, "checkpoint %s: %s failed: %s", path, what ? what : "commit",
                     strerror(errno));
        goto out;
    }
    if (bytes)
        *bytes = size;
    rc = 0;
    goto out;
io_fail:
    smlt_set_err(err, errlen, "writing %s: %s", tmp, strerror(errno));
    smlt_atomic_abort(fd, tmp);
    fd = -1;
out:
    free(meta);
    free(scratch);
    return rc;
}

/* ---- reading ----------------------------------------------------------------------------- */

void ps_ckpt_free(struct ps_ckpt *c)
{
    if (!c)
        return;
    free(c->last_counted);
    free(c->last_applied);
    free(c->job);
    free(c->map_pb);
    free(c->params);
    free(c->state);
    free(c);
}

/* Walks the blocks of one array at *off without decoding: checks that each fits the file, that
 * its stored size is possible for its raw size, and adds nothing up. Returns 0 or
 * SMLT_ECORRUPT with a message. */
static int scan_array(const uint8_t *b, size_t len, size_t *off, uint64_t n, const char *what,
                      char *err, size_t errlen)
{
    for (uint64_t i = 0; i < n; i += PS_CKPT_BLOCK) {
        size_t raw = (size_t)((n - i < PS_CKPT_BLOCK ? n - i : PS_CKPT_BLOCK) * sizeof(float));
        if (len - *off < 8) {
            smlt_set_err(err, errlen, "%s: block at element %" PRIu64 " truncated", what, i);
            return SMLT_ECORRUPT;
        }
        size_t stored = get32(b + *off);
        if (stored > raw || stored == 0 || stored < raw / PS_CKPT_MAX_RATIO ||
            len - *off - 8 < stored) {
            smlt_set_err(err, errlen, "%s: block at element %" PRIu64 " has a bad size (%zu of %zu"
                         " bytes, %zu left in the file)", what, i, stored, raw, len - *off - 8);
            return SMLT_ECORRUPT;
        }
        *off += 8 + stored;
    }
    return 0;
}

static int read_array(const uint8_t *b, size_t *off, float *dst, uint64_t n, const char *what,
                      char *err, size_t errlen)
{
    for (uint64_t i = 0; i < n; i += PS_CKPT_BLOCK) {
        size_t raw = (size_t)((n - i < PS_CKPT_BLOCK ? n - i : PS_CKPT_BLOCK) * sizeof(float));
        size_t stored = get32(b + *off);
        const uint8_t *data = b + *off + 8;
        if (crc(crc(0, b + *off, 4), data, stored) != get32(b + *off + 4)) {
            smlt_set_err(err, errlen, "%s: CRC mismatch in the block at element %" PRIu64, what, i);
            return SMLT_ECORRUPT;
        }
        if (stored == raw) {
            memcpy(dst + i, data, raw);
        } else {
            int k = LZ4_decompress_safe((const char *)data, (char *)(dst + i), (int)stored, (int)raw);
            if (k < 0 || (size_t)k != raw) {
                smlt_set_err(err, errlen, "%s: bad lz4 block at element %" PRIu64, what, i);
                return SMLT_ECORRUPT;
            }
        }
        *off += 8 + stored;
    }
    return 0;
}

int ps_ckpt_parse(const void *buf, size_t len, struct ps_ckpt **out, char *err, size_t errlen)
{
    const uint8_t *b = buf;
    *out = NULL;
    if (len < PS_CKPT_HDR_LEN) {
        smlt_set_err(err, errlen, "truncated: %zu bytes, the header alone is %u", len,
                     PS_CKPT_HDR_LEN);
        return SMLT_ECORRUPT;
    }
    if (memcmp(b, PS_CKPT_MAGIC, 8) != 0) {
        smlt_set_err(err, errlen, "not a shard checkpoint (bad magic)");
        return SMLT_ECORRUPT;
    }
    if (crc(0, b, 100) != get32(b + 100)) {
        smlt_set_err(err, errlen, "header CRC mismatch");
        return SMLT_ECORRUPT;
    }
    uint32_t fmt = get32(b + 8), flags = get32(b + 12), nstate = get32(b + 20);
    uint32_t nranks = get32(b + 48), map_len = get32(b + 52), joblen = get32(b + 64);
    uint64_t lo = get64(b + 32), hi = get64(b + 40), flen = get64(b + 56);
    if (fmt != PS_CKPT_FORMAT || flags != 0 || get32(b + 96) != 0) {
        smlt_set_err(err, errlen, "format version %u flags %u: this reader knows version %u", fmt,
                     flags, PS_CKPT_FORMAT);
        return SMLT_ECORRUPT;
    }
    if (flen != len) {
        smlt_set_err(err, errlen, "truncated or padded: the header says %" PRIu64
                     " bytes, the file has %zu", flen, len);
        return SMLT_ECORRUPT;
    }
    if (hi < lo || hi > SMLT_MAX_MODEL_ELEMS || nstate > PS_CKPT_MAX_STATE ||
        nranks > SMLT_MAX_WORKERS || joblen > SMLT_MAX_NAME || map_len > SMLT_MAX_META_LEN) {
        smlt_set_err(err, errlen, "counts over the limits: range [%" PRIu64 ", %" PRIu64
                     "), %u state arrays, %u ranks, job name %u, map %u bytes", lo, hi, nstate,
                     nranks, joblen, map_len);
        return SMLT_ETOOBIG;
    }
    uint64_t n = hi - lo;
    size_t mlen = (size_t)nranks * 16 + joblen + map_len;
    if (len - PS_CKPT_HDR_LEN < (uint64_t)mlen + 4) {
        smlt_set_err(err, errlen, "truncated in the tables (%zu bytes needed)", mlen + 4);
        return SMLT_ECORRUPT;
    }
    const uint8_t *m = b + PS_CKPT_HDR_LEN;
    if (crc(0, m, mlen) != get32(m + mlen)) {
        smlt_set_err(err, errlen, "tables CRC mismatch");
        return SMLT_ECORRUPT;
    }
    /* Every block size before a single float is allocated. */
    size_t off = PS_CKPT_HDR_LEN + mlen + 4, off0 = off;
    for (uint32_t k = 0; k <= nstate; k++) {
        int rc = scan_array(b, len, &off, n, k ? "optimizer state" : "parameters", err, errlen);
        if (rc)
            return rc;
    }
    if (off != len) {
        smlt_set_err(err, errlen, "%zu bytes after the last block", len - off);
        return SMLT_ECORRUPT;
    }
    struct ps_ckpt *c = calloc(1, sizeof *c);
    if (!c)
        return SMLT_ENOMEM;
    c->shard = get32(b + 16);
    c->nstate = nstate;
    c->step = get64(b + 24);
    c->lo = lo;
    c->hi = hi;
    c->nranks = nranks;
    c->map_len = map_len;
    c->optim = get32(b + 68);
    c->version = get64(b + 72);
    c->clock = get64(b + 80);
    c->updates = get64(b + 88);
    c->last_counted = malloc(sizeof(uint64_t) * (nranks ? nranks : 1));
    c->last_applied = malloc(sizeof(uint64_t) * (nranks ? nranks : 1));
    c->job = malloc(joblen + 1);
    c->map_pb = malloc(map_len ? map_len : 1);
    c->params = malloc(n ? n * sizeof(float) : 1);
    c->state = malloc(nstate && n ? (size_t)nstate * n * sizeof(float) : 1);
    int rc = SMLT_ENOMEM;
    if (!c->last_counted || !c->last_applied || !c->job || !c->map_pb || !c->params || !c->state) {
        smlt_set_err(err, errlen, "out of memory reading a checkpoint of %" PRIu64 " floats", n);
        goto fail;
    }
    for (uint32_t r = 0; r < nranks; r++) {
        c->last_counted[r] = get64(m + 8 * r);
        c->last_applied[r] = get64(m + 8 * ((size_t)nranks + r));
    }
    memcpy(c->job, m + (size_t)nranks * 16, joblen);
    c->job[joblen] = 0;
    if (memchr(c->job, 0, joblen)) {
        smlt_set_err(err, errlen, "job name holds a NUL byte");
        rc = SMLT_ECORRUPT;
        goto fail;
    }
    if (map_len)
        memcpy(c->map_pb, m + (size_t)nranks * 16 + joblen, map_len);
    off = off0;
    if ((rc = read_array(b, &off, c->params, n, "parameters", err, errlen)) != 0)
        goto fail;
    for (uint32_t k = 0; k < nstate; k++)
        if ((rc = read_array(b, &off, c->state + (size_t)k * n, n, "optimizer state", err,
                             errlen)) != 0)
            goto fail;
    *out = c;
    return 0;
fail:
    ps_ckpt_free(c);
    return rc;
}

int ps_ckpt_read(const char *path, struct ps_ckpt **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        smlt_set_err(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? SMLT_ENOTFOUND : SMLT_ESYS;
    }
    struct stat st;
    uint8_t *buf = NULL;
    int rc = SMLT_ESYS;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        smlt_set_err(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    size_t len = (size_t)st.st_size, got = 0;
    buf = malloc(len ? len : 1);
    if (!buf) {
        smlt_set_err(err, errlen, "%s: out of memory for %zu bytes", path, len);
        rc = SMLT_ENOMEM;
        goto out;
    }
    while (got < len) {
        ssize_t k = read(fd, buf + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    char e[384] = "";
    rc = ps_ckpt_parse(buf, got, out, e, sizeof e);
    if (rc)
        smlt_set_err(err, errlen, "%s: %s", path, e);
out:
    free(buf);
    close(fd);
    return rc;
}

/* ---- the files of one shard --------------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int ps_ckpt_list(const char *dir, uint32_t shard, uint64_t **steps, size_t *n)
{
    char d[4096];
    *steps = NULL;
    *n = 0;
    if (shard_dir(d, sizeof d, dir, shard))
        return SMLT_ETOOBIG;
    DIR *dh = opendir(d);
    if (!dh)
        return errno == ENOENT ? 0 : SMLT_ESYS;
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(dh)) != NULL) {
        const char *nm = e->d_name;
        size_t l = strlen(nm), sl = strlen(CKPT_SUFFIX);
        if (l <= 5 + sl || strncmp(nm, "ckpt-", 5) != 0 || strcmp(nm + l - sl, CKPT_SUFFIX) != 0)
            continue;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(nm + 5, &end, 10);
        if (errno || end != nm + l - sl || nm[5] < '0' || nm[5] > '9')
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            uint64_t *x = realloc(*steps, nc * sizeof *x);
            if (!x) {
                rc = SMLT_ENOMEM;
                break;
            }
            *steps = x;
            cap = nc;
        }
        (*steps)[(*n)++] = v;
    }
    closedir(dh);
    if (rc) {
        free(*steps);
        *steps = NULL;
        *n = 0;
        return rc;
    }
    if (*n)
        qsort(*steps, *n, sizeof **steps, cmp_desc);
    return 0;
}

int ps_ckpt_prune(const char *dir, uint32_t shard, uint32_t keep)
{
    uint64_t *steps;
    size_t n;
    int rc = ps_ckpt_list(dir, shard, &steps, &n);
    if (rc)
        return rc;
    if (!keep)
        keep = PS_CKPT_DEFAULT_KEEP;
    int removed = 0;
    for (size_t i = keep; i < n; i++) {
        char p[4096];
        if (ps_ckpt_path(p, sizeof p, dir, shard, steps[i]) == 0 && unlink(p) == 0)
            removed++;
    }
    free(steps);
    return removed;
}

static void report_add(char *report, size_t reportlen, const char *msg)
{
    if (!report || !reportlen)
        return;
    size_t l = strlen(report);
    if (l + 1 < reportlen)
        snprintf(report + l, reportlen - l, "%s%s", l ? "; " : "", msg);
}

int ps_ckpt_find(const char *dir, uint32_t shard, uint64_t step, struct ps_ckpt **out,
                 char *report, size_t reportlen, uint32_t *corrupt, char *err, size_t errlen)
{
    *out = NULL;
    if (step) {
        char p[4096];
        if (ps_ckpt_path(p, sizeof p, dir, shard, step)) {
            smlt_set_err(err, errlen, "checkpoint directory name too long");
            return SMLT_ETOOBIG;
        }
        int rc = ps_ckpt_read(p, out, err, errlen);
        if (rc == 0 && (*out)->step != step) {
            smlt_set_err(err, errlen, "%s: names step %" PRIu64, p, (*out)->step);
            ps_ckpt_free(*out);
            *out = NULL;
            rc = SMLT_ECORRUPT;
        }
        if (rc && rc != SMLT_ENOTFOUND && rc != SMLT_ESYS) {
            if (corrupt)
                (*corrupt)++;
            report_add(report, reportlen, err);
            log_warn("shard %u: corrupt checkpoint: %s", shard, err);
        }
        return rc;
    }
    uint64_t *steps;
    size_t n;
    int rc = ps_ckpt_list(dir, shard, &steps, &n);
    if (rc) {
        smlt_set_err(err, errlen, "cannot list %s/shard-%u: %s", dir, shard, smlt_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        char p[4096], e[4096 + 512];
        if (ps_ckpt_path(p, sizeof p, dir, shard, steps[i]))
            continue;
        rc = ps_ckpt_read(p, out, e, sizeof e);
        if (rc == 0 && (*out)->step == steps[i]) {
            free(steps);
            return 0;
        }
        if (rc == 0) {
            snprintf(e, sizeof e, "%s: names step %" PRIu64, p, (*out)->step);
            ps_ckpt_free(*out);
            *out = NULL;
        }
        if (corrupt)
            (*corrupt)++;
        report_add(report, reportlen, e);
        log_warn("shard %u: skipping checkpoint: %s", shard, e);
    }
    free(steps);
    smlt_set_err(err, errlen, "no valid checkpoint of shard %u in %s (%zu found)", shard, dir, n);
    return SMLT_ENOTFOUND;
}

int ps_ckpt_valid_steps(const char *dir, uint32_t shard, uint64_t **steps, size_t *n,
                        char *report, size_t reportlen, uint32_t *corrupt)
{
    int rc = ps_ckpt_list(dir, shard, steps, n);
    if (rc)
        return rc;
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        char p[4096], e[4096 + 512];
        struct ps_ckpt *c = NULL;
        if (ps_ckpt_path(p, sizeof p, dir, shard, (*steps)[i]))
            continue;
        if (ps_ckpt_read(p, &c, e, sizeof e) == 0 && c->step == (*steps)[i]) {
            (*steps)[k++] = (*steps)[i];
        } else {
            if (c)
                snprintf(e, sizeof e, "%s: names step %" PRIu64, p, c->step);
            if (corrupt)
                (*corrupt)++;
            report_add(report, reportlen, e);
            log_warn("shard %u: corrupt checkpoint: %s", shard, e);
        }
        ps_ckpt_free(c);
    }
    *n = k;
    return 0;
}
