/* data_load.c: IDX, CSV and LIBSVM parsers with validation, reading plain or gzip files.
 *
 * All three read through zlib's gzFile (which reads uncompressed files transparently). The
 * IDX reader checks the header against the limits before it allocates and then streams the
 * body, so a header that claims billions of rows in a short file costs nothing. The text
 * readers grow their arrays as rows arrive and stop at the first bad token with the line
 * number. Sits under data_fetch.c and the worker's loading phase. */
#include "data_load.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data_set.h"
#include "smlt_error.h"
#include "smlt_util.h"

#define IDX_TYPE_UBYTE 0x08
#define IDX_MAX_DIMS 8
#define GZ_BUFFER (256u << 10)

void data_load_opts_init(struct data_load_opts *o)
{
    memset(o, 0, sizeof *o);
    o->header = DATA_LOAD_HEADER_AUTO;
    o->scale = 1.0f;
}

static void opts_or_default(const struct data_load_opts *in, struct data_load_opts *o)
{
    if (in)
        *o = *in;
    else
        data_load_opts_init(o);
    if (o->scale == 0.0f)
        o->scale = 1.0f;
}

/* Opens path for reading through zlib. Returns NULL with a message on failure. */
static gzFile open_gz(const char *path, int *rc, char *err, size_t errlen)
{
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        int e = errno;
        *rc = e == ENOENT ? SMLT_ENOTFOUND : SMLT_EIO;
        smlt_set_err(err, errlen, "%s: cannot open: %s", path, e ? strerror(e) : "out of memory");
        return NULL;
    }
    gzbuffer(f, GZ_BUFFER);
    return f;
}

/* Reads exactly len bytes. Returns 0, or -1 after setting a message that says where the
 * stream ended or what zlib reported. */
static int read_exact(gzFile f, const char *path, void *dst, size_t len, uint64_t at,
                      const char *what, char *err, size_t errlen)
{
    unsigned char *p = dst;
    size_t got = 0;
    while (got < len) {
        unsigned want = len - got > (1u << 30) ? (1u << 30) : (unsigned)(len - got);
        int r = gzread(f, p + got, want);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            smlt_set_err(err, errlen, "%s: offset %llu: read error in %s: %s", path,
                    (unsigned long long)(at + got), what, msg);
            return -1;
        }
        if (r == 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            smlt_set_err(err, errlen, "%s: truncated at offset %llu: %s needs %llu more bytes%s%s",
                    path, (unsigned long long)(at + got), what,
                    (unsigned long long)(len - got), zerr ? "; zlib: " : "",
                    zerr ? msg : "");
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Reads an IDX header: the dims (*ndim of them) of an unsigned-byte file. */
static int idx_header(gzFile f, const char *path, uint32_t *dims, int *ndim, char *err,
                      size_t errlen)
{
    unsigned char h[4];
    if (read_exact(f, path, h, 4, 0, "the IDX magic", err, errlen) < 0)
        return SMLT_ECORRUPT;
    if (h[0] || h[1] || h[3] < 1 || h[3] > IDX_MAX_DIMS) {
        smlt_set_err(err, errlen, "%s: offset 0: bad IDX magic %02x %02x %02x %02x (expected "
                "00 00 <type> <1..%d dims>)", path, h[0], h[1], h[2], h[3], IDX_MAX_DIMS);
        return SMLT_ECORRUPT;
    }
    if (h[2] != IDX_TYPE_UBYTE) {
        smlt_set_err(err, errlen, "%s: offset 2: unsupported IDX element type 0x%02x (only unsigned "
                "bytes, 0x08)", path, h[2]);
        return SMLT_ECORRUPT;
    }
    *ndim = h[3];
    unsigned char d[4 * IDX_MAX_DIMS];
    if (read_exact(f, path, d, 4 * (size_t)*ndim, 4, "the IDX dimensions", err, errlen) < 0)
        return SMLT_ECORRUPT;
    for (int i = 0; i < *ndim; i++)
        dims[i] = be32(d + 4 * i);
    return 0;
}

/* Checks that the stream has nothing after the expected body. */
static int expect_eof(gzFile f, const char *path, uint64_t at, char *err, size_t errlen)
{
    unsigned char c;
    int r = gzread(f, &c, 1);
    if (r > 0) {
        smlt_set_err(err, errlen, "%s: offset %llu: unexpected data after the IDX body", path,
                (unsigned long long)at);
        return SMLT_ECORRUPT;
    }
    if (r < 0) {
        int zerr;
        smlt_set_err(err, errlen, "%s: offset %llu: %s", path, (unsigned long long)at,
                gzerror(f, &zerr));
        return SMLT_ECORRUPT;
    }
    return 0;
}

/* Reads len bytes of an IDX body into a buffer that grows as the data arrives, so that a
 * header claiming more than the file holds never causes a big allocation. Returns the
 * buffer (caller frees) or NULL with *rc and a message. */
static unsigned char *read_body(gzFile f, const char *path, uint64_t at, uint64_t len,
                                const char *what, int *rc, char *err, size_t errlen)
{
    const size_t blk = 4u << 20;
    size_t cap = 0, got = 0;
    unsigned char *buf = NULL;
    *rc = SMLT_ECORRUPT;
    for (;;) {
        if (got == cap) {
            size_t ncap = cap ? cap * 2 : blk;
            if (ncap > len)
                ncap = (size_t)len;
            if (ncap < 1)
                ncap = 1;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                *rc = SMLT_ENOMEM;
                smlt_set_err(err, errlen, "%s: out of memory reading %s", path, what);
                free(buf);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        if (got == len)
            return buf;
        size_t want = cap - got < blk ? cap - got : blk;
        if (read_exact(f, path, buf + got, want, at + got, what, err, errlen) < 0) {
            free(buf);
            return NULL;
        }
        got += want;
    }
}

int data_load_idx(const char *images_path, const char *labels_path,
                  const struct data_load_opts *oin, struct data_set **out, char *err,
                  size_t errlen)
{
    struct data_load_opts o;
    opts_or_default(oin, &o);
    int rc = 0;
    gzFile fi = NULL, fl = NULL;
    unsigned char *lab = NULL, *pix = NULL;
    float *x = NULL;
    int32_t *y = NULL;
    uint32_t idims[IDX_MAX_DIMS], ldims[IDX_MAX_DIMS];
    int ind = 0, lnd = 0;
    if (!images_path || !labels_path || !out) {
        smlt_set_err(err, errlen, "data_load_idx: missing argument");
        return SMLT_EINVAL;
    }
    *out = NULL;
    if (!(fi = open_gz(images_path, &rc, err, errlen)) ||
        !(fl = open_gz(labels_path, &rc, err, errlen)))
        goto out;
    if ((rc = idx_header(fi, images_path, idims, &ind, err, errlen)) < 0 ||
        (rc = idx_header(fl, labels_path, ldims, &lnd, err, errlen)) < 0)
        goto out;
    rc = SMLT_ECORRUPT;
    if (ind < 2) {
        smlt_set_err(err, errlen, "%s: an images file needs at least 2 dimensions, has %d",
                images_path, ind);
        goto out;
    }
    if (lnd != 1) {
        smlt_set_err(err, errlen, "%s: a labels file has 1 dimension, this one %d", labels_path, lnd);
        goto out;
    }
    if (idims[0] != ldims[0]) {
        smlt_set_err(err, errlen, "dimension mismatch: %s has %u images but %s has %u labels",
                images_path, idims[0], labels_path, ldims[0]);
        goto out;
    }
    uint64_t n = idims[0], dim = 1;
    for (int i = 1; i < ind; i++)
        dim *= idims[i];
    const int whole = !o.max_rows || n <= o.max_rows;
    if (!whole)
        n = o.max_rows;
    if (dim < 1 || dim > DATA_SET_MAX_DIM || n > DATA_SET_MAX_ROWS ||
        n * dim > DATA_SET_MAX_ELEMS) {
        rc = SMLT_ETOOBIG;
        smlt_set_err(err, errlen, "%s: %llu images of %llu pixels exceed the limits", images_path,
                (unsigned long long)n, (unsigned long long)dim);
        goto out;
    }
    if (o.dim && (uint64_t)o.dim != dim) {
        smlt_set_err(err, errlen, "%s: images have %llu pixels, expected %d", images_path,
                (unsigned long long)dim, o.dim);
        goto out;
    }
    const uint64_t hdr_i = 4 + 4 * (uint64_t)ind, hdr_l = 8;
    if (!(lab = read_body(fl, labels_path, hdr_l, n, "the labels", &rc, err, errlen)))
        goto out;
    if (whole && (rc = expect_eof(fl, labels_path, hdr_l + n, err, errlen)) < 0)
        goto out;
    int classes = o.num_classes;
    if (classes <= 0) {
        int mx = 1;
        for (uint64_t i = 0; i < n; i++)
            mx = lab[i] > mx ? lab[i] : mx;
        classes = mx + 1;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (lab[i] >= classes) {
            rc = SMLT_ERANGE;
            smlt_set_err(err, errlen, "%s: offset %llu: label %u of item %llu is out of range "
                    "[0, %d)", labels_path, (unsigned long long)(hdr_l + i), lab[i],
                    (unsigned long long)i, classes);
            goto out;
        }
    }
    uint64_t same = 1;
    while (same < n && lab[same] == lab[0])
        same++;
    if (o.train && n && same == n) {
        rc = SMLT_EINVAL;
        smlt_set_err(err, errlen, "%s: every label is %u: a training set needs at least two classes",
                labels_path, lab[0]);
        goto out;
    }
    const uint64_t total = n * dim;
    if (!(pix = read_body(fi, images_path, hdr_i, total, "the pixels", &rc, err, errlen)))
        goto out;
    if (whole && (rc = expect_eof(fi, images_path, hdr_i + total, err, errlen)) < 0)
        goto out;
    /* Only now, with every byte in hand, the set: the pixels stay bytes (read as byte / 255
     * when batches are gathered), a quarter of the memory of floats and no conversion pass. */
    y = malloc(sizeof(int32_t) * (n ? n : 1));
    if (!y) {
        rc = SMLT_ENOMEM;
        smlt_set_err(err, errlen, "%s: out of memory for %llu labels", labels_path,
                (unsigned long long)n);
        goto out;
    }
    for (uint64_t i = 0; i < n; i++)
        y[i] = lab[i];
    *out = data_set_wrap_u8((size_t)n, (int)dim, classes, pix, 1.0f / 255.0f, y);
    pix = NULL;
    y = NULL;
    if (!*out) {
        rc = SMLT_ENOMEM;
        smlt_set_err(err, errlen, "%s: out of memory", images_path);
        goto out;
    }
    rc = 0;
out:
    free(lab);
    free(pix);
    free(x);
    free(y);
    if (fi)
        gzclose(fi);
    if (fl)
        gzclose(fl);
    return rc;
}

/* ---- text formats ---- */

struct line_reader {
    gzFile f;
    const char *path;
    char *buf;
    size_t cap, len;
    long lineno;
};

/* Reads the next line (without its newline) into r->buf. Returns 1, 0 at the end of the
 * file, or a negative code with a message (read error, line too long). */
static int line_next(struct line_reader *r, char *err, size_t errlen)
{
    r->len = 0;
    for (;;) {
        if (r->cap - r->len < 2) {
            size_t ncap = r->cap ? r->cap * 2 : 4096;
            if (ncap > DATA_LOAD_MAX_LINE + 2) {
                smlt_set_err(err, errlen, "%s: line %ld: longer than %u bytes", r->path,
                        r->lineno + 1, DATA_LOAD_MAX_LINE);
                return SMLT_ETOOBIG;
            }
            char *nb = realloc(r->buf, ncap);
            if (!nb) {
                smlt_set_err(err, errlen, "%s: out of memory", r->path);
                return SMLT_ENOMEM;
            }
            r->buf = nb;
            r->cap = ncap;
        }
        const size_t room = r->cap - r->len;
        if (!gzgets(r->f, r->buf + r->len, (int)room)) {
            int zerr;
            const char *msg = gzerror(r->f, &zerr);
            if (zerr != Z_OK && zerr != Z_STREAM_END) {
                smlt_set_err(err, errlen, "%s: line %ld: read error: %s", r->path, r->lineno + 1,
                        msg);
                return SMLT_ECORRUPT;
            }
            if (r->len == 0)
                return 0;
            break; /* last line without a newline */
        }
        const size_t l = strlen(r->buf + r->len);
        r->len += l;
        if (l && r->buf[r->len - 1] == '\n') {
            r->buf[--r->len] = '\0';
            break;
        }
        if (l + 1 < room) {
            /* gzgets stopped short of the buffer without a newline: the end of the file, or a
             * NUL byte inside the line (which strlen stopped at). */
            if (gzeof(r->f) && l > 0)
                break;
            smlt_set_err(err, errlen, "%s: line %ld: NUL byte in a text file", r->path,
                    r->lineno + 1);
            return SMLT_ECORRUPT;
        }
    }
    if (r->len && r->buf[r->len - 1] == '\r')
        r->buf[--r->len] = '\0';
    r->lineno++;
    return 1;
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t')
            return 0;
    return 1;
}

/* Growing row storage for the text loaders. */
struct rows {
    float *x;
    int32_t *y;
    size_t n, cap, dim;
};

static int rows_push(struct rows *r, const char *path, char *err, size_t errlen)
{
    if (r->n < r->cap)
        return 0;
    size_t ncap = r->cap ? r->cap * 2 : 1024;
    if (ncap > DATA_SET_MAX_ROWS)
        ncap = DATA_SET_MAX_ROWS;
    if (r->n >= ncap || (uint64_t)ncap * r->dim > DATA_SET_MAX_ELEMS) {
        if ((uint64_t)(r->n + 1) * r->dim > DATA_SET_MAX_ELEMS || r->n >= DATA_SET_MAX_ROWS) {
            smlt_set_err(err, errlen, "%s: more than %llu values", path,
                    (unsigned long long)DATA_SET_MAX_ELEMS);
            return SMLT_ETOOBIG;
        }
        ncap = r->n + 1;
    }
    float *nx = realloc(r->x, sizeof(float) * ncap * r->dim);
    if (!nx)
        goto oom;
    r->x = nx;
    int32_t *ny = realloc(r->y, sizeof(int32_t) * ncap);
    if (!ny)
        goto oom;
    r->y = ny;
    r->cap = ncap;
    return 0;
oom:
    smlt_set_err(err, errlen, "%s: out of memory at row %zu", path, r->n + 1);
    return SMLT_ENOMEM;
}

/* Parses an integer label; returns 0 or -1. */
static int parse_label(const char *s, const char *end, long *out)
{
    char tmp[32];
    size_t len = (size_t)(end - s);
    if (len == 0 || len >= sizeof tmp)
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *e;
    errno = 0;
    long v = strtol(tmp, &e, 10);
    if (errno || *e || v < -1 || v > DATA_SET_MAX_CLASSES)
        return -1;
    *out = v;
    return 0;
}

/* Decides the classes and validates labels. -1/+1 binary labels become 0/1. where names the
 * labels' place in messages ("label_column 0 (of columns 0..4)"); train refuses one class. */
static int finish_labels(struct rows *r, int want_classes, int train, const char *where,
                         const char *path, int *classes, char *err, size_t errlen)
{
    int has_neg = 0, only_pm1 = 1;
    long mx = 1;
    for (size_t i = 0; i < r->n; i++) {
        if (r->y[i] < 0)
            has_neg = 1;
        if (r->y[i] != -1 && r->y[i] != 1)
            only_pm1 = 0;
        if (r->y[i] > mx)
            mx = r->y[i];
    }
    if (has_neg) {
        if (!only_pm1) {
            smlt_set_err(err, errlen, "%s: negative labels other than a -1/+1 binary labelling", path);
            return SMLT_ERANGE;
        }
        for (size_t i = 0; i < r->n; i++)
            r->y[i] = r->y[i] > 0;
        mx = 1;
    }
    *classes = want_classes > 0 ? want_classes : (int)mx + 1;
    for (size_t i = 0; i < r->n; i++) {
        if (r->y[i] >= *classes) {
            smlt_set_err(err, errlen, "%s: row %zu: label %d is out of range [0, %d): the labels "
                    "(%s) must lie in 0..%d, one per class of %d", path, i + 1, (int)r->y[i],
                    *classes, where, *classes - 1, *classes);
            return SMLT_ERANGE;
        }
    }
    size_t i = 1;
    while (i < r->n && r->y[i] == r->y[0])
        i++;
    if (train && r->n && i == r->n) {
        smlt_set_err(err, errlen, "%s: every label (%s) is %d: a training set needs at least two "
                "classes; is the label in another column?", path, where, (int)r->y[0]);
        return SMLT_EINVAL;
    }
    return 0;
}

static int rows_to_set(struct rows *r, int classes, const char *path, struct data_set **out,
                       char *err, size_t errlen)
{
    /* Shrink to fit, then hand the arrays over. */
    if (r->n && r->n < r->cap) {
        float *nx = realloc(r->x, sizeof(float) * r->n * r->dim);
        int32_t *ny;
        if (nx)
            r->x = nx;
        ny = realloc(r->y, sizeof(int32_t) * r->n);
        if (ny)
            r->y = ny;
    }
    if (!r->n) {
        free(r->x);
        free(r->y);
        r->x = calloc(1, sizeof(float));
        r->y = calloc(1, sizeof(int32_t));
    }
    *out = data_set_wrap(r->n, (int)r->dim, classes, r->x, r->y);
    r->x = NULL;
    r->y = NULL;
    if (!*out) {
        smlt_set_err(err, errlen, "%s: out of memory or sizes out of range", path);
        return SMLT_ENOMEM;
    }
    return 0;
}

/* Parses a float spanning exactly [s, end); returns 0 or -1 (junk, empty, non-finite). */
static int parse_float(const char *s, const char *end, float *out)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (s == end)
        return -1;
    char *e;
    errno = 0;
    float v = strtof(s, &e);
    if (e != end || !isfinite(v) || (errno == ERANGE && v != 0.0f))
        return -1;
    *out = v;
    return 0;
}

int data_load_csv(const char *path, const struct data_load_opts *oin, struct data_set **out,
                  char *err, size_t errlen)
{
    struct data_load_opts o;
    opts_or_default(oin, &o);
    struct line_reader lr = {.path = path};
    struct rows r = {0};
    int rc = 0, ncols = 0, classes = 0;
    if (!path || !out) {
        smlt_set_err(err, errlen, "data_load_csv: missing argument");
        return SMLT_EINVAL;
    }
    *out = NULL;
    if (!(lr.f = open_gz(path, &rc, err, errlen)))
        return rc;
    int first = 1;
    while ((rc = line_next(&lr, err, errlen)) == 1) {
        if (is_blank(lr.buf))
            continue;
        /* Count fields; the first data line fixes the column count. */
        int nf = 1;
        for (const char *p = lr.buf; *p; p++)
            nf += *p == ',';
        if (first) {
            first = 0;
            int header = o.header == DATA_LOAD_HEADER_YES;
            if (o.header == DATA_LOAD_HEADER_AUTO) {
                /* A header has a field that is not a number. */
                header = 0;
                const char *s = lr.buf;
                for (int i = 0; i < nf; i++) {
                    const char *e = strchr(s, ',');
                    if (!e)
                        e = s + strlen(s);
                    float v;
                    if (parse_float(s, e, &v) < 0) {
                        header = 1;
                        break;
                    }
                    s = e + 1;
                }
            }
            if (nf < 2) {
                smlt_set_err(err, errlen, "%s: line %ld: a row needs a label and at least one "
                        "feature, found %d field", path, lr.lineno, nf);
                rc = SMLT_ECORRUPT;
                goto out;
            }
            ncols = nf;
            r.dim = (size_t)nf - 1;
            if (o.header < DATA_LOAD_HEADER_AUTO || o.header > DATA_LOAD_HEADER_NO) {
                smlt_set_err(err, errlen, "%s: bad header option %d", path, o.header);
                rc = SMLT_EINVAL;
                goto out;
            }
            if (o.label_col < -1 || o.label_col >= ncols) {
                smlt_set_err(err, errlen, "%s: label column %d out of range (rows have %d fields)",
                        path, o.label_col, ncols);
                rc = SMLT_EINVAL;
                goto out;
            }
            if (o.dim && (size_t)o.dim != r.dim) {
                smlt_set_err(err, errlen, "%s: line %ld: rows have %zu features, expected %d", path,
                        lr.lineno, r.dim, o.dim);
                rc = SMLT_ECORRUPT;
                goto out;
            }
            if (header)
                continue;
        }
        if (nf != ncols) {
            smlt_set_err(err, errlen, "%s: line %ld: ragged row: %d fields, expected %d", path,
                    lr.lineno, nf, ncols);
            rc = SMLT_ECORRUPT;
            goto out;
        }
        if (o.max_rows && r.n >= o.max_rows)
            break;
        if ((rc = rows_push(&r, path, err, errlen)) < 0)
            goto out;
        const int lcol = o.label_col < 0 ? ncols - 1 : o.label_col;
        float *xr = r.x + r.n * r.dim;
        const char *s = lr.buf;
        int fi = 0;
        for (int col = 0; col < ncols; col++) {
            const char *e = strchr(s, ',');
            if (!e)
                e = s + strlen(s);
            if (col == lcol) {
                long lab;
                const char *a = s, *b = e;
                while (a < b && (*a == ' ' || *a == '\t'))
                    a++;
                while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                    b--;
                if (parse_label(a, b, &lab) < 0) {
                    smlt_set_err(err, errlen, "%s: line %ld: column %d: label '%.*s' is not an "
                            "integer label", path, lr.lineno, col + 1, (int)(e - s > 40 ? 40 :
                            e - s), s);
                    rc = SMLT_ECORRUPT;
                    goto out;
                }
                r.y[r.n] = (int32_t)lab;
            } else {
                float v;
                if (parse_float(s, e, &v) < 0) {
                    smlt_set_err(err, errlen, "%s: line %ld: column %d: bad number '%.*s'", path,
                            lr.lineno, col + 1, (int)(e - s > 40 ? 40 : e - s), s);
                    rc = SMLT_ECORRUPT;
                    goto out;
                }
                xr[fi++] = v * o.scale;
            }
            s = e + 1;
        }
        r.n++;
    }
    if (rc < 0)
        goto out;
    if (first) {
        smlt_set_err(err, errlen, "%s: no rows", path);
        rc = SMLT_ECORRUPT;
        goto out;
    }
    char where[96];
    snprintf(where, sizeof where, "label_column %d%s of columns 0..%d",
             o.label_col < 0 ? ncols - 1 : o.label_col, o.label_col < 0 ? " (\"last\")" : "",
             ncols - 1);
    if ((rc = finish_labels(&r, o.num_classes, o.train, where, path, &classes, err,
                            errlen)) < 0)
        goto out;
    rc = rows_to_set(&r, classes, path, out, err, errlen);
out:
    free(r.x);
    free(r.y);
    free(lr.buf);
    gzclose(lr.f);
    return rc;
}

/* Sparse rows of a LIBSVM file before densifying. */
struct sparse {
    uint32_t *idx;
    float *val;
    size_t nnz, cap;
    size_t *start; /* per row: first entry */
    int32_t *y;
    size_t n, rcap;
};

static int sparse_grow(struct sparse *s, int entry, const char *path, char *err,
                       size_t errlen)
{
    if (entry) {
        if (s->nnz < s->cap)
            return 0;
        size_t ncap = s->cap ? s->cap * 2 : 4096;
        if (ncap > DATA_SET_MAX_ELEMS) {
            smlt_set_err(err, errlen, "%s: more than %llu entries", path,
                    (unsigned long long)DATA_SET_MAX_ELEMS);
            return SMLT_ETOOBIG;
        }
        uint32_t *ni = realloc(s->idx, sizeof(uint32_t) * ncap);
        if (ni)
            s->idx = ni;
        float *nv = ni ? realloc(s->val, sizeof(float) * ncap) : NULL;
        if (nv)
            s->val = nv;
        if (!ni || !nv)
            goto oom;
        s->cap = ncap;
        return 0;
    }
    if (s->n + 1 < s->rcap)
        return 0;
    size_t ncap = s->rcap ? s->rcap * 2 : 1024;
    if (ncap > (size_t)DATA_SET_MAX_ROWS + 1) {
        smlt_set_err(err, errlen, "%s: more than %u rows", path, DATA_SET_MAX_ROWS);
        return SMLT_ETOOBIG;
    }
    size_t *ns = realloc(s->start, sizeof(size_t) * ncap);
    if (ns)
        s->start = ns;
    int32_t *ny = ns ? realloc(s->y, sizeof(int32_t) * ncap) : NULL;
    if (ny)
        s->y = ny;
    if (!ns || !ny)
        goto oom;
    s->rcap = ncap;
    return 0;
oom:
    smlt_set_err(err, errlen, "%s: out of memory", path);
    return SMLT_ENOMEM;
}

int data_load_libsvm(const char *path, const struct data_load_opts *oin, struct data_set **out,
                     char *err, size_t errlen)
{
    struct data_load_opts o;
    opts_or_default(oin, &o);
    struct line_reader lr = {.path = path};
    struct sparse sp = {0};
    struct rows r = {0};
    int rc = 0, classes = 0;
    uint32_t maxidx = 0;
    if (!path || !out) {
        smlt_set_err(err, errlen, "data_load_libsvm: missing argument");
        return SMLT_EINVAL;
    }
    *out = NULL;
    if (o.dim < 0 || o.dim > DATA_SET_MAX_DIM) {
        smlt_set_err(err, errlen, "%s: bad dimension %d", path, o.dim);
        return SMLT_EINVAL;
    }
    if (!(lr.f = open_gz(path, &rc, err, errlen)))
        return rc;
    while ((rc = line_next(&lr, err, errlen)) == 1) {
        char *s = lr.buf;
        char *hash = strchr(s, '#'); /* trailing comments, as some LIBSVM files have */
        if (hash)
            *hash = '\0';
        if (is_blank(s))
            continue;
        if (o.max_rows && sp.n >= o.max_rows)
            break;
        if ((rc = sparse_grow(&sp, 0, path, err, errlen)) < 0)
            goto out;
        sp.start[sp.n] = sp.nnz;
        char *save = NULL;
        char *tok = strtok_r(s, " \t", &save);
        long lab;
        if (parse_label(tok, tok + strlen(tok), &lab) < 0) {
            /* Accept "1.0"-style integral labels too. */
            float fv;
            if (parse_float(tok, tok + strlen(tok), &fv) < 0 || fv != floorf(fv) ||
                fv < -1.0f || fv > (float)DATA_SET_MAX_CLASSES) {
                smlt_set_err(err, errlen, "%s: line %ld: label '%.40s' is not an integer label",
                        path, lr.lineno, tok);
                rc = SMLT_ECORRUPT;
                goto out;
            }
            lab = (long)fv;
        }
        sp.y[sp.n] = (int32_t)lab;
        uint32_t prev = 0;
        while ((tok = strtok_r(NULL, " \t", &save))) {
            char *colon = strchr(tok, ':');
            char *e;
            if (!colon || colon == tok) {
                smlt_set_err(err, errlen, "%s: line %ld: bad token '%.40s' (expected index:value)",
                        path, lr.lineno, tok);
                rc = SMLT_ECORRUPT;
                goto out;
            }
            errno = 0;
            unsigned long ix = strtoul(tok, &e, 10);
            if (e != colon || errno || tok[0] == '-' || tok[0] == '+' || ix < 1 ||
                ix > DATA_SET_MAX_DIM || (o.dim && ix > (unsigned long)o.dim)) {
                smlt_set_err(err, errlen, "%s: line %ld: bad index in '%.40s' (expected 1..%d)", path,
                        lr.lineno, tok, o.dim ? o.dim : DATA_SET_MAX_DIM);
                rc = SMLT_ECORRUPT;
                goto out;
            }
            if (ix <= prev) {
                smlt_set_err(err, errlen, "%s: line %ld: index %lu after %u: indices must increase",
                        path, lr.lineno, ix, prev);
                rc = SMLT_ECORRUPT;
                goto out;
            }
            float v;
            if (parse_float(colon + 1, colon + 1 + strlen(colon + 1), &v) < 0) {
                smlt_set_err(err, errlen, "%s: line %ld: bad value in '%.40s'", path, lr.lineno, tok);
                rc = SMLT_ECORRUPT;
                goto out;
            }
            if ((rc = sparse_grow(&sp, 1, path, err, errlen)) < 0)
                goto out;
            sp.idx[sp.nnz] = (uint32_t)ix;
            sp.val[sp.nnz] = v * o.scale;
            sp.nnz++;
            prev = (uint32_t)ix;
            if (ix > maxidx)
                maxidx = (uint32_t)ix;
        }
        sp.n++;
    }
    if (rc < 0)
        goto out;
    if (sp.n == 0) {
        smlt_set_err(err, errlen, "%s: no rows", path);
        rc = SMLT_ECORRUPT;
        goto out;
    }
    r.dim = o.dim ? (size_t)o.dim : (maxidx ? maxidx : 1);
    if ((uint64_t)sp.n * r.dim > DATA_SET_MAX_ELEMS) {
        smlt_set_err(err, errlen, "%s: %zu rows x %zu features exceed the limit", path, sp.n, r.dim);
        rc = SMLT_ETOOBIG;
        goto out;
    }
    r.n = r.cap = sp.n;
    size_t xbytes = sizeof(float) * (sp.n * (size_t)r.dim > 0 ? sp.n * (size_t)r.dim : 1);
    r.x = data_set_alloc(xbytes);
    if (r.x)
        memset(r.x, 0, xbytes);
    r.y = malloc(sizeof(int32_t) * sp.n);
    if (!r.x || !r.y) {
        smlt_set_err(err, errlen, "%s: out of memory for %zu x %zu floats", path, sp.n, r.dim);
        rc = SMLT_ENOMEM;
        goto out;
    }
    sp.start[sp.n] = sp.nnz;
    for (size_t i = 0; i < sp.n; i++) {
        float *xr = r.x + i * r.dim;
        for (size_t k = sp.start[i]; k < sp.start[i + 1]; k++)
            xr[sp.idx[k] - 1] = sp.val[k];
        r.y[i] = sp.y[i];
    }
    if ((rc = finish_labels(&r, o.num_classes, o.train, "the first token of each line", path,
                            &classes, err, errlen)) < 0)
        goto out;
    rc = rows_to_set(&r, classes, path, out, err, errlen);
out:
    free(sp.idx);
    free(sp.val);
    free(sp.start);
    free(sp.y);
    free(r.x);
    free(r.y);
    free(lr.buf);
    gzclose(lr.f);
    return rc;
}
