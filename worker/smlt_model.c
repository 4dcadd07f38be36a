/* smlt_model.c: trained-model files in libsmlt: writing, reading with every count checked, and
 * saving a job's current model through a client. The format is documented in smlt.h
 * ("Model files") and docs/ARCHITECTURE.md.
 *
 * Reading trusts nothing in the file: the header's CRC is checked first, then every count
 * against proto/smlt_limits.h and the header's sizes against the file's real size, all before
 * anything is allocated, so the largest allocation is bounded by the file's own length. */
#include "smlt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "smlt_limits.h"
#include "smlt_util.h"

#define MODEL_MAGIC "SMLTMODL"
#define MODEL_VERSION 1u
#define MODEL_HDR_LEN 64u
#define MODEL_ALIGN 64u
/* Bytes of one tensor's index entry: name length, ndims, shape, offset. */
#define ENTRY_FIXED (4u + 4u + 8u)
#define ENTRY_MIN (ENTRY_FIXED + 1u + 8u)
#define ENTRY_MAX (ENTRY_FIXED + SMLT_MAX_NAME + 8u * SMLT_MAX_DIMS)
/* Values are read and written in pieces of this many bytes. */
#define IO_CHUNK (16u << 20)

struct model_tensor {
    const char *name; /* into smlt_model.names */
    uint32_t ndims;
    uint64_t shape[SMLT_MAX_DIMS];
    uint64_t offset, length;
};

struct smlt_model {
    uint32_t ntensors;
    struct model_tensor *t;
    char *names; /* every tensor name, NUL-terminated, back to back */
    char *job;
    uint64_t step, n;
    float *values;
};

/* ---- little-endian codec ------------------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int host_is_le(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* Swaps the bytes of n float32 words in place (big-endian hosts only). */
static void swap32(void *buf, size_t n)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < n; i++, p += 4) {
        unsigned char a = p[0], b = p[1];
        p[0] = p[3];
        p[1] = p[2];
        p[2] = b;
        p[3] = a;
    }
}

static uint64_t align_up(uint64_t x)
{
    return (x + MODEL_ALIGN - 1) / MODEL_ALIGN * MODEL_ALIGN;
}

static uLong crc_update(uLong crc, const void *buf, size_t len)
{
    return crc32_z(crc, buf, len);
}

/* ---- I/O helpers ---------------------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len > IO_CHUNK ? IO_CHUNK : len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads exactly len bytes. Returns 0, 1 at a premature end of file, -1 on error (errno). */
static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t r = read(fd, p, len > IO_CHUNK ? IO_CHUNK : len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

/* ---- validation shared by write and read ----------------------------------------------------- */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns the first name that appears twice among n names, or NULL (also when out of memory,
 * in which case *oom is set). */
static const char *find_duplicate(const char *const *names, size_t n, int *oom)
{
    *oom = 0;
    if (n < 2)
        return NULL;
    const char **sorted = malloc(n * sizeof *sorted);
    if (!sorted) {
        *oom = 1;
        return NULL;
    }
    memcpy(sorted, names, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_name);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(sorted[i - 1], sorted[i]))
            dup = sorted[i];
    free(sorted);
    return dup;
}

/* Product of a shape, or 0 when a dimension is 0 or the product exceeds the model limit. */
static uint64_t shape_elems(const uint64_t *shape, uint32_t ndims)
{
    uint64_t len = 1;
    for (uint32_t d = 0; d < ndims; d++) {
        if (shape[d] == 0 || shape[d] > SMLT_MAX_MODEL_ELEMS || len > SMLT_MAX_MODEL_ELEMS / shape[d])
            return 0;
        len *= shape[d];
    }
    return len;
}

/* ---- writing -------------------------------------------------------------------------------- */

int smlt_model_write(const char *path, const struct smlt_tensor_def *t, size_t ntensors,
                     const float *values, uint64_t n, const char *job, uint64_t step, char *err,
                     size_t errlen)
{
    if (!path || !*path || !t || (!values && n)) {
        smlt_set_err(err, errlen, "model file: bad arguments");
        return SMLT_EINVAL;
    }
    if (!job)
        job = "";
    size_t job_len = strlen(job);
    if (ntensors == 0 || ntensors > SMLT_MAX_TENSORS) {
        smlt_set_err(err, errlen, "model file: %zu tensors (expected 1..%u)", ntensors,
                     SMLT_MAX_TENSORS);
        return SMLT_EINVAL;
    }
    if (job_len > SMLT_MAX_NAME) {
        smlt_set_err(err, errlen, "model file: job name longer than %u bytes", SMLT_MAX_NAME);
        return SMLT_EINVAL;
    }
    uint64_t total = 0, index_len = job_len;
    for (size_t i = 0; i < ntensors; i++) {
        size_t nl = t[i].name ? strlen(t[i].name) : 0;
        if (nl == 0 || nl > SMLT_MAX_NAME) {
            smlt_set_err(err, errlen, "model file: tensor %zu: name must be 1..%u bytes", i,
                         SMLT_MAX_NAME);
            return SMLT_EINVAL;
        }
        if (t[i].ndims == 0 || t[i].ndims > SMLT_MAX_DIMS || !t[i].shape) {
            smlt_set_err(err, errlen, "model file: tensor '%s': %u dimensions (expected 1..%u)",
                         t[i].name, t[i].ndims, SMLT_MAX_DIMS);
            return SMLT_EINVAL;
        }
        uint64_t len = shape_elems(t[i].shape, t[i].ndims);
        if (len == 0 || len > SMLT_MAX_MODEL_ELEMS - total) {
            smlt_set_err(err, errlen,
                         "model file: tensor '%s': empty shape or model larger than %llu "
                         "elements",
                         t[i].name, (unsigned long long)SMLT_MAX_MODEL_ELEMS);
            return SMLT_EINVAL;
        }
        total += len;
        index_len += ENTRY_FIXED + nl + 8u * t[i].ndims;
    }
    if (total != n) {
        smlt_set_err(err, errlen,
                     "model file: the tensors hold %llu elements but %llu values given",
                     (unsigned long long)total, (unsigned long long)n);
        return SMLT_EINVAL;
    }
    const char **names = malloc(ntensors * sizeof *names);
    if (!names) {
        smlt_set_err(err, errlen, "model file: out of memory");
        return SMLT_ENOMEM;
    }
    for (size_t i = 0; i < ntensors; i++)
        names[i] = t[i].name;
    int oom;
    const char *dup = find_duplicate(names, ntensors, &oom);
    free(names);
    if (dup || oom) {
        if (dup)
            smlt_set_err(err, errlen, "model file: two tensors are called '%s'", dup);
        else
            smlt_set_err(err, errlen, "model file: out of memory");
        return dup ? SMLT_EINVAL : SMLT_ENOMEM;
    }

    /* Header, index and padding in one buffer. */
    uint64_t data_off = align_up(MODEL_HDR_LEN + index_len);
    unsigned char *head = calloc(1, data_off);
    char tmp[4200];
    if (strlen(path) >= 4096) {
        free(head);
        smlt_set_err(err, errlen, "model file: path too long");
        return SMLT_EINVAL;
    }
    if (!head) {
        smlt_set_err(err, errlen, "model file: out of memory");
        return SMLT_ENOMEM;
    }
    unsigned char *p = head + MODEL_HDR_LEN;
    memcpy(p, job, job_len);
    p += job_len;
    uint64_t off = 0;
    for (size_t i = 0; i < ntensors; i++) {
        uint32_t nl = (uint32_t)strlen(t[i].name);
        put_u32(p, nl);
        memcpy(p + 4, t[i].name, nl);
        p += 4 + nl;
        put_u32(p, t[i].ndims);
        p += 4;
        for (uint32_t d = 0; d < t[i].ndims; d++, p += 8)
            put_u64(p, t[i].shape[d]);
        put_u64(p, off);
        p += 8;
        off += shape_elems(t[i].shape, t[i].ndims);
    }
    memcpy(head, MODEL_MAGIC, 8);
    put_u32(head + 8, MODEL_VERSION);
    put_u32(head + 12, 0);
    put_u32(head + 16, (uint32_t)ntensors);
    put_u32(head + 20, (uint32_t)job_len);
    put_u64(head + 24, n);
    put_u64(head + 32, step);
    put_u64(head + 40, index_len);
    put_u64(head + 48, data_off);
    put_u32(head + 56, (uint32_t)crc_update(crc32_z(0, NULL, 0), head + MODEL_HDR_LEN,
                                            (size_t)index_len));
    put_u32(head + 60, (uint32_t)crc_update(crc32_z(0, NULL, 0), head, 60));

    int rc = SMLT_ESYS;
    const char *what = "open";
    unsigned char *swapbuf = NULL;
    int fd = smlt_atomic_open(path, 0644, tmp, sizeof tmp);
    if (fd < 0)
        goto out;
    what = "write";
    uLong crc = crc_update(crc32_z(0, NULL, 0), head, (size_t)data_off);
    if (write_all(fd, head, (size_t)data_off) < 0)
        goto out;
    if (host_is_le()) {
        const unsigned char *v = (const unsigned char *)values;
        for (uint64_t done = 0, bytes = n * 4; done < bytes;) {
            size_t len = bytes - done > IO_CHUNK ? IO_CHUNK : (size_t)(bytes - done);
            crc = crc_update(crc, v + done, len);
            if (write_all(fd, v + done, len) < 0)
                goto out;
            done += len;
        }
    } else {
        if (!(swapbuf = malloc(IO_CHUNK))) {
            rc = SMLT_ENOMEM;
            goto out;
        }
        for (uint64_t done = 0; done < n;) {
            size_t cnt = n - done > IO_CHUNK / 4 ? IO_CHUNK / 4 : (size_t)(n - done);
            memcpy(swapbuf, values + done, cnt * 4);
            swap32(swapbuf, cnt);
            crc = crc_update(crc, swapbuf, cnt * 4);
            if (write_all(fd, swapbuf, cnt * 4) < 0)
                goto out;
            done += cnt;
        }
    }
    unsigned char trailer[4];
    put_u32(trailer, (uint32_t)crc);
    if (write_all(fd, trailer, 4) < 0)
        goto out;
    int cfd = fd;
    fd = -1;
    if (smlt_atomic_commit(cfd, tmp, path, &what) < 0)
        goto out;
    rc = 0;
out:
    if (rc) {
        if (rc == SMLT_ENOMEM)
            smlt_set_err(err, errlen, "model file %s: out of memory", path);
        else
            smlt_set_err(err, errlen, "model file %s: %s: %s", !strcmp(what, "open") ? tmp : path,
                         what, strerror(errno ? errno : EIO));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
    }
    free(swapbuf);
    free(head);
    return rc;
}

/* ---- reading -------------------------------------------------------------------------------- */

void smlt_model_free(struct smlt_model *m)
{
    if (!m)
        return;
    free(m->t);
    free(m->names);
    free(m->job);
    free(m->values);
    free(m);
}

/* Parses the index (index_len bytes at idx, CRC already checked) into m. Returns 0 or
 * SMLT_ECORRUPT / SMLT_ETOOBIG / SMLT_ENOMEM with a message. */
static int parse_index(struct smlt_model *m, const unsigned char *idx, uint64_t index_len,
                       uint32_t job_len, const char *path, char *err, size_t errlen)
{
    const unsigned char *p = idx, *end = idx + index_len;
    if (memchr(p, 0, job_len)) {
        smlt_set_err(err, errlen, "%s: corrupt model file (NUL in the job name)", path);
        return SMLT_ECORRUPT;
    }
    if (!(m->job = malloc(job_len + 1)))
        goto oom;
    memcpy(m->job, p, job_len);
    m->job[job_len] = 0;
    p += job_len;
    /* Every name fits in the index, so index_len + ntensors bytes hold them all. */
    m->t = calloc(m->ntensors, sizeof *m->t);
    m->names = malloc((size_t)index_len + m->ntensors);
    if (!m->t || !m->names)
        goto oom;
    char *np = m->names;
    uint64_t off = 0;
    for (uint32_t i = 0; i < m->ntensors; i++) {
        struct model_tensor *t = &m->t[i];
        if ((size_t)(end - p) < 4)
            goto short_index;
        uint32_t nl = get_u32(p);
        p += 4;
        if (nl == 0 || nl > SMLT_MAX_NAME) {
            smlt_set_err(err, errlen, "%s: tensor %u: name length %u (expected 1..%u)", path, i, nl,
                         SMLT_MAX_NAME);
            return nl ? SMLT_ETOOBIG : SMLT_ECORRUPT;
        }
        if ((size_t)(end - p) < (size_t)nl + 4)
            goto short_index;
        if (memchr(p, 0, nl)) {
            smlt_set_err(err, errlen, "%s: tensor %u: NUL in its name", path, i);
            return SMLT_ECORRUPT;
        }
        memcpy(np, p, nl);
        np[nl] = 0;
        t->name = np;
        np += nl + 1;
        p += nl;
        t->ndims = get_u32(p);
        p += 4;
        if (t->ndims == 0 || t->ndims > SMLT_MAX_DIMS) {
            smlt_set_err(err, errlen, "%s: tensor '%s': %u dimensions (expected 1..%u)", path,
                         t->name, t->ndims, SMLT_MAX_DIMS);
            return t->ndims ? SMLT_ETOOBIG : SMLT_ECORRUPT;
        }
        if ((size_t)(end - p) < 8u * t->ndims + 8u)
            goto short_index;
        for (uint32_t d = 0; d < t->ndims; d++, p += 8)
            t->shape[d] = get_u64(p);
        t->offset = get_u64(p);
        p += 8;
        t->length = shape_elems(t->shape, t->ndims);
        if (t->length == 0 || t->offset != off || t->length > m->n - off) {
            smlt_set_err(err, errlen,
                         "%s: tensor '%s': shape or offset inconsistent with the model's "
                         "%llu elements",
                         path, t->name, (unsigned long long)m->n);
            return SMLT_ECORRUPT;
        }
        off += t->length;
    }
    if (off != m->n || p != end) {
        smlt_set_err(err, errlen, "%s: corrupt model file (the tensors %s)", path,
                     off != m->n ? "do not cover the values" : "leave bytes in the index");
        return SMLT_ECORRUPT;
    }
    const char **names = malloc(m->ntensors * sizeof *names);
    if (!names)
        goto oom;
    for (uint32_t i = 0; i < m->ntensors; i++)
        names[i] = m->t[i].name;
    int nomem;
    const char *dup = find_duplicate(names, m->ntensors, &nomem);
    free(names);
    if (nomem)
        goto oom;
    if (dup) {
        smlt_set_err(err, errlen, "%s: two tensors are called '%s'", path, dup);
        return SMLT_ECORRUPT;
    }
    return 0;
short_index:
    smlt_set_err(err, errlen, "%s: corrupt model file (the tensor index ends early)", path);
    return SMLT_ECORRUPT;
oom:
    smlt_set_err(err, errlen, "%s: out of memory", path);
    return SMLT_ENOMEM;
}

int smlt_model_read(const char *path, struct smlt_model **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!path || !out) {
        smlt_set_err(err, errlen, "model file: bad arguments");
        return SMLT_EINVAL;
    }
    int rc, r;
    unsigned char hdr[MODEL_HDR_LEN], *idx = NULL;
    struct smlt_model *m = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        smlt_set_err(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? SMLT_ENOTFOUND : SMLT_ESYS;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        smlt_set_err(err, errlen, "%s: not a regular file", path);
        rc = SMLT_EPROTO;
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    size_t first = size < MODEL_HDR_LEN ? (size_t)size : MODEL_HDR_LEN;
    if ((r = read_all(fd, hdr, first)) != 0)
        goto io;
    if (first < 8 || memcmp(hdr, MODEL_MAGIC, 8)) {
        smlt_set_err(err, errlen, "%s: not an SMLT model file", path);
        rc = SMLT_EPROTO;
        goto out;
    }
    if (size < MODEL_HDR_LEN + 4) {
        smlt_set_err(err, errlen, "%s: truncated model file (%llu bytes)", path,
                     (unsigned long long)size);
        rc = SMLT_ECORRUPT;
        goto out;
    }
    if (get_u32(hdr + 60) != (uint32_t)crc_update(crc32_z(0, NULL, 0), hdr, 60)) {
        smlt_set_err(err, errlen, "%s: corrupt model file header (CRC mismatch)", path);
        rc = SMLT_ECORRUPT;
        goto out;
    }
    uint32_t version = get_u32(hdr + 8), flags = get_u32(hdr + 12);
    if (version != MODEL_VERSION || flags != 0) {
        smlt_set_err(err, errlen,
                     "%s: model file format %u (flags 0x%x); this library reads format "
                     "%u",
                     path, version, flags, MODEL_VERSION);
        rc = SMLT_EVERSION;
        goto out;
    }
    uint32_t ntensors = get_u32(hdr + 16), job_len = get_u32(hdr + 20);
    uint64_t n = get_u64(hdr + 24), step = get_u64(hdr + 32);
    uint64_t index_len = get_u64(hdr + 40), data_off = get_u64(hdr + 48);
    if (ntensors == 0 || n == 0) {
        smlt_set_err(err, errlen, "%s: corrupt model file header (%u tensors, %llu elements)", path,
                     ntensors, (unsigned long long)n);
        rc = SMLT_ECORRUPT;
        goto out;
    }
    if (ntensors > SMLT_MAX_TENSORS || job_len > SMLT_MAX_NAME || n > SMLT_MAX_MODEL_ELEMS) {
        smlt_set_err(err, errlen,
                     "%s: model file header out of limits (%u tensors, job name of %u "
                     "bytes, %llu elements; at most %u, %u, %llu)",
                     path, ntensors, job_len, (unsigned long long)n, SMLT_MAX_TENSORS,
                     SMLT_MAX_NAME, (unsigned long long)SMLT_MAX_MODEL_ELEMS);
        rc = SMLT_ETOOBIG;
        goto out;
    }
    /* Both bounds are products of capped u32s: no overflow. */
    if (index_len < job_len + (uint64_t)ntensors * ENTRY_MIN ||
        index_len > job_len + (uint64_t)ntensors * ENTRY_MAX ||
        data_off != align_up(MODEL_HDR_LEN + index_len)) {
        smlt_set_err(err, errlen,
                     "%s: corrupt model file header (index of %llu bytes for %u tensors, "
                     "data at %llu)",
                     path, (unsigned long long)index_len, ntensors, (unsigned long long)data_off);
        rc = SMLT_ECORRUPT;
        goto out;
    }
    uint64_t expect = data_off + n * 4 + 4;
    if (size != expect) {
        smlt_set_err(err, errlen, "%s: %s model file (%llu bytes; the header says %llu)", path,
                     size < expect ? "truncated" : "oversized", (unsigned long long)size,
                     (unsigned long long)expect);
        rc = SMLT_ECORRUPT;
        goto out;
    }

    /* The index and padding: at most about 22 MiB (the caps above), and within the file. */
    size_t rest = (size_t)(data_off - MODEL_HDR_LEN);
    if (!(idx = malloc(rest))) {
        smlt_set_err(err, errlen, "%s: out of memory", path);
        rc = SMLT_ENOMEM;
        goto out;
    }
    if ((r = read_all(fd, idx, rest)) != 0)
        goto io;
    if (get_u32(hdr + 56) != (uint32_t)crc_update(crc32_z(0, NULL, 0), idx, (size_t)index_len)) {
        smlt_set_err(err, errlen, "%s: corrupt model file tensor index (CRC mismatch)", path);
        rc = SMLT_ECORRUPT;
        goto out;
    }
    if (!(m = calloc(1, sizeof *m))) {
        smlt_set_err(err, errlen, "%s: out of memory", path);
        rc = SMLT_ENOMEM;
        goto out;
    }
    m->ntensors = ntensors;
    m->n = n;
    m->step = step;
    if ((rc = parse_index(m, idx, index_len, job_len, path, err, errlen)))
        goto out;
    for (size_t i = (size_t)index_len; i < rest; i++)
        if (idx[i]) {
            smlt_set_err(err, errlen, "%s: corrupt model file (nonzero padding)", path);
            rc = SMLT_ECORRUPT;
            goto out;
        }

    /* The values; the whole-file CRC covers header, index, padding and values. */
    uLong crc = crc_update(crc32_z(0, NULL, 0), hdr, MODEL_HDR_LEN);
    crc = crc_update(crc, idx, rest);
    if (!(m->values = malloc((size_t)n * sizeof(float)))) {
        smlt_set_err(err, errlen, "%s: out of memory for %llu values", path, (unsigned long long)n);
        rc = SMLT_ENOMEM;
        goto out;
    }
    unsigned char *v = (unsigned char *)m->values;
    for (uint64_t done = 0, bytes = n * 4; done < bytes;) {
        size_t len = bytes - done > IO_CHUNK ? IO_CHUNK : (size_t)(bytes - done);
        if ((r = read_all(fd, v + done, len)) != 0)
            goto io;
        crc = crc_update(crc, v + done, len);
        done += len;
    }
    unsigned char trailer[4];
    if ((r = read_all(fd, trailer, 4)) != 0)
        goto io;
    if (get_u32(trailer) != (uint32_t)crc) {
        smlt_set_err(err, errlen, "%s: corrupt model file data (CRC mismatch)", path);
        rc = SMLT_ECORRUPT;
        goto out;
    }
    if (!host_is_le())
        swap32(m->values, (size_t)n);
    *out = m;
    m = NULL;
    rc = 0;
    goto out;
io:
    if (r > 0) {
        smlt_set_err(err, errlen, "%s: truncated model file (changed while reading?)", path);
        rc = SMLT_ECORRUPT;
    } else {
        smlt_set_err(err, errlen, "%s: read: %s", path, strerror(errno));
        rc = SMLT_ESYS;
    }
out:
    free(idx);
    smlt_model_free(m);
    close(fd);
    return rc;
}

/* ---- accessors ------------------------------------------------------------------------------ */

uint32_t smlt_model_num_tensors(const struct smlt_model *m)
{
    return m->ntensors;
}

int smlt_model_tensor(const struct smlt_model *m, uint32_t i, struct smlt_tensor_info *out)
{
    if (i >= m->ntensors)
        return SMLT_ERANGE;
    const struct model_tensor *t = &m->t[i];
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->ndims = t->ndims;
    for (uint32_t d = 0; d < t->ndims; d++)
        out->shape[d] = t->shape[d];
    out->offset = t->offset;
    out->length = t->length;
    return 0;
}

const float *smlt_model_values(const struct smlt_model *m)
{
    return m->values;
}

uint64_t smlt_model_num_params(const struct smlt_model *m)
{
    return m->n;
}

const char *smlt_model_job(const struct smlt_model *m)
{
    return m->job;
}

uint64_t smlt_model_step(const struct smlt_model *m)
{
    return m->step;
}

int smlt_model_find(const struct smlt_model *m, const char *name)
{
    if (!name)
        return -1;
    for (uint32_t i = 0; i < m->ntensors; i++)
        if (!strcmp(m->t[i].name, name))
            return (int)i;
    return -1;
}

/* ---- saving through a client ---------------------------------------------------------------- */

int smlt_model_save(struct smlt_client *c, const char *path, uint64_t step, char *err,
                    size_t errlen)
{
    if (!c || !path) {
        smlt_set_err(err, errlen, "model save: bad arguments");
        return SMLT_EINVAL;
    }
    uint64_t n = smlt_client_num_params(c);
    if (n == 0 || smlt_client_num_tensors(c) == 0) {
        smlt_set_err(err, errlen, "model save: the client has no partition map");
        return SMLT_ENOTCONF;
    }
    int rc;
    struct smlt_tensor_def *defs = NULL;
    uint64_t(*shapes)[SMLT_MAX_DIMS] = NULL;
    float *values = malloc((size_t)n * sizeof(float));
    if (!values) {
        smlt_set_err(err, errlen, "model save: out of memory for %llu values",
                     (unsigned long long)n);
        return SMLT_ENOMEM;
    }
    if ((rc = smlt_pull(c, 0, 0, values, NULL))) {
        smlt_set_err(err, errlen, "model save: pull: %s", smlt_client_errmsg(c));
        goto out;
    }
    /* The layout after the pull: a pull may have installed a newer map (same model, new
     * split), and names are valid until the map changes, which takes another call on c. */
    uint32_t nt = smlt_client_num_tensors(c);
    if (smlt_client_num_params(c) != n) {
        smlt_set_err(err, errlen, "model save: the model changed size during the pull");
        rc = SMLT_ESTALEMAP;
        goto out;
    }
    defs = calloc(nt, sizeof *defs);
    shapes = calloc(nt, sizeof *shapes);
    if (!defs || !shapes) {
        smlt_set_err(err, errlen, "model save: out of memory");
        rc = SMLT_ENOMEM;
        goto out;
    }
    uint64_t off = 0;
    for (uint32_t i = 0; i < nt; i++) {
        struct smlt_tensor_info ti;
        if ((rc = smlt_client_tensor(c, i, &ti)))
            goto out;
        if (ti.offset != off || ti.ndims > SMLT_MAX_DIMS) {
            smlt_set_err(err, errlen, "model save: tensor '%s' is not where the map layout puts it",
                         ti.name);
            rc = SMLT_EINTERNAL;
            goto out;
        }
        off += ti.length;
        memcpy(shapes[i], ti.shape, sizeof shapes[i]);
        defs[i].name = ti.name;
        defs[i].ndims = ti.ndims;
        defs[i].shape = shapes[i];
    }
    rc = smlt_model_write(path, defs, nt, values, n, "", step, err, errlen);
out:
    free(defs);
    free(shapes);
    free(values);
    return rc;
}
