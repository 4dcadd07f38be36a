/* data_set.c: in-memory datasets, partitions, per-epoch shuffles, batches and the cursor.
 *
 * The shuffle uses only the counter RNG of smlt_rand.h, so the order of a partition's
 * batches is a pure function of (rows, part, nparts, seed, epoch): a worker that replaces
 * another one, on any machine, reproduces it and resumes from the (epoch, batch) cursor.
 * Sits under the worker's training loop; loaders (data_load.c) create the sets. */
#include "data_set.h"

#include <math.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

#include "smlt_error.h"
#include "smlt_rand.h"

struct data_set {
    size_t n;
    int dim, classes;
    float *x;        /* features as floats; for a byte set, made on first data_set_x() */
    uint8_t *x8;     /* or: features as bytes, each scaled by x8_scale when read */
    float x8_scale;
    int32_t *y;
};

struct data_set_iter {
    const struct data_set *ds;
    int part, nparts, batch, flags;
    uint64_t seed;
    uint32_t *rows;      /* this partition's rows, in the fixed partition order */
    uint32_t *order;     /* rows shuffled for epoch order_epoch */
    size_t len;
    int64_t order_epoch; /* -1: order not computed yet */
    int64_t epoch, next; /* cursor */
};

static int sizes_ok(size_t n, int dim, int classes)
{
    return n <= DATA_SET_MAX_ROWS && dim >= 1 && dim <= DATA_SET_MAX_DIM && classes >= 1 &&
           classes <= DATA_SET_MAX_CLASSES && (uint64_t)n * (uint64_t)dim <= DATA_SET_MAX_ELEMS;
}

/* A set over x (floats) or x8 (bytes times scale), taking ownership of them and of y. */
static struct data_set *wrap(size_t n, int dim, int num_classes, float *x, uint8_t *x8,
                             float scale, int32_t *y)
{
    struct data_set *ds = NULL;
    if (!sizes_ok(n, dim, num_classes) || (n && (!(x || x8) || !y)) ||
        !(ds = calloc(1, sizeof *ds))) {
        free(x);
        free(x8);
        free(y);
        return NULL;
    }
    ds->n = n;
    ds->dim = dim;
    ds->classes = num_classes;
    ds->x = x;
    ds->x8 = x8;
    ds->x8_scale = scale;
    ds->y = y;
    return ds;
}

struct data_set *data_set_wrap(size_t n, int dim, int num_classes, float *x, int32_t *y)
{
    return wrap(n, dim, num_classes, x, NULL, 0.0f, y);
}

struct data_set *data_set_new(size_t n, int dim, int num_classes)
{
    if (!sizes_ok(n, dim, num_classes))
        return NULL;
    size_t xbytes = sizeof(float) * (n ? n * (size_t)dim : 1);
    float *x = data_set_alloc(xbytes);
    if (x)
        memset(x, 0, xbytes);
    int32_t *y = calloc(n ? n : 1, sizeof(int32_t));
    if (!x || !y) {
        free(x);
        free(y);
        return NULL;
    }
    return data_set_wrap(n, dim, num_classes, x, y);
}

void *data_set_alloc(size_t n)
{
    const size_t huge = 2u << 20;
    if (n < 4 * huge)
        return malloc(n ? n : 1);
    void *p = NULL;
    if (posix_memalign(&p, huge, (n + huge - 1) / huge * huge) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, (n + huge - 1) / huge * huge, MADV_HUGEPAGE);
#endif
    return p;
}

struct data_set *data_set_wrap_u8(size_t n, int dim, int num_classes, uint8_t *x8, float scale,
                                  int32_t *y)
{
    return wrap(n, dim, num_classes, NULL, x8, scale, y);
}

void data_set_rows(const struct data_set *ds, size_t first, size_t n, float *out)
{
    const size_t dim = (size_t)ds->dim;
    if (ds->x) {
        memcpy(out, ds->x + first * dim, sizeof(float) * n * dim);
        return;
    }
    const uint8_t *src = ds->x8 + first * dim;
    const float k = ds->x8_scale;
    for (size_t i = 0; i < n * dim; i++)
        out[i] = (float)src[i] * k;
}

void data_set_free(struct data_set *ds)
{
    if (!ds)
        return;
    free(ds->x);
    free(ds->x8);
    free(ds->y);
    free(ds);
}

size_t data_set_size(const struct data_set *ds)
{
    return ds->n;
}

int data_set_dim(const struct data_set *ds)
{
    return ds->dim;
}

int data_set_num_classes(const struct data_set *ds)
{
    return ds->classes;
}

const float *data_set_x(const struct data_set *ds)
{
    if (!ds->x && ds->x8 && ds->n) {
        /* A byte set asked for its whole float matrix: made once, on demand (the set is a
         * single-threaded object; this is its only lazily filled member). */
        struct data_set *w = (struct data_set *)ds;
        float *x = data_set_alloc(sizeof(float) * ds->n * (size_t)ds->dim);
        if (x)
            data_set_rows(ds, 0, ds->n, x); /* from the bytes: x is not the set's yet */
        w->x = x;
    }
    return ds->x;
}

const int32_t *data_set_y(const struct data_set *ds)
{
    return ds->y;
}

float *data_set_x_mut(struct data_set *ds)
{
    return (float *)data_set_x(ds);
}

int32_t *data_set_y_mut(struct data_set *ds)
{
    return ds->y;
}

int data_set_check(const struct data_set *ds, size_t *bad_row)
{
    for (size_t i = 0; i < ds->n; i++) {
        if (ds->y[i] < 0 || ds->y[i] >= ds->classes) {
            if (bad_row)
                *bad_row = i;
            return SMLT_ERANGE;
        }
    }
    return 0;
}

struct data_set *data_set_slice(const struct data_set *ds, size_t first, size_t n)
{
    if (first > ds->n)
        first = ds->n;
    if (n > ds->n - first)
        n = ds->n - first;
    if (ds->x8 && !ds->x) {
        size_t bytes = n * (size_t)ds->dim;
        uint8_t *x8 = malloc(bytes ? bytes : 1);
        int32_t *y = malloc(sizeof(int32_t) * (n ? n : 1));
        if (x8 && n)
            memcpy(x8, ds->x8 + first * (size_t)ds->dim, bytes);
        if (y && n)
            memcpy(y, ds->y + first, sizeof(int32_t) * n);
        if (!x8 || !y) {
            free(x8);
            free(y);
            return NULL;
        }
        return data_set_wrap_u8(n, ds->dim, ds->classes, x8, ds->x8_scale, y);
    }
    struct data_set *out = data_set_new(n, ds->dim, ds->classes);
    if (!out)
        return NULL;
    if (n) {
        data_set_rows(ds, first, n, out->x);
        memcpy(out->y, ds->y + first, sizeof(int32_t) * n);
    }
    return out;
}

/* Makes a byte set a float set: the floats from data_set_x(), the bytes freed. */
static int to_floats(struct data_set *ds)
{
    if (!ds->x8)
        return 0;
    if (ds->n && !data_set_x(ds))
        return SMLT_ENOMEM;
    free(ds->x8);
    ds->x8 = NULL;
    return 0;
}

static void scale_rows(struct data_set *ds, const double *shift, const double *factor)
{
    const size_t dim = (size_t)ds->dim;
    for (size_t i = 0; i < ds->n; i++) {
        float *r = ds->x + i * dim;
        for (size_t j = 0; j < dim; j++)
            r[j] = (float)(((double)r[j] - shift[j]) * factor[j]);
    }
}

int data_set_scale(struct data_set *train, struct data_set *test, int kind)
{
    if (!train || (test && test->dim != train->dim) ||
        (kind != DATA_SET_SCALE_NONE && kind != DATA_SET_SCALE_MINMAX &&
         kind != DATA_SET_SCALE_STANDARD))
        return SMLT_EINVAL;
    if (kind == DATA_SET_SCALE_NONE || train->n == 0)
        return 0;
    const size_t dim = (size_t)train->dim;
    double *shift = calloc(dim, sizeof *shift), *factor = calloc(dim, sizeof *factor);
    int rc = SMLT_ENOMEM;
    if (!shift || !factor || to_floats(train) < 0 || (test && to_floats(test) < 0))
        goto out;
    /* shift: min or mean; factor: first the max or the sum of squared deviations */
    const float *x = train->x;
    for (size_t j = 0; j < dim; j++)
        shift[j] = factor[j] = x[j];
    if (kind == DATA_SET_SCALE_MINMAX) {
        for (size_t i = 1; i < train->n; i++)
            for (size_t j = 0; j < dim; j++) {
                double v = x[i * dim + j];
                if (v < shift[j])
                    shift[j] = v;
                if (v > factor[j])
                    factor[j] = v;
            }
        for (size_t j = 0; j < dim; j++)
            factor[j] = factor[j] > shift[j] ? 1.0 / (factor[j] - shift[j]) : 1.0;
    } else {
        for (size_t j = 0; j < dim; j++)
            shift[j] = factor[j] = 0.0;
        for (size_t i = 0; i < train->n; i++)
            for (size_t j = 0; j < dim; j++)
                shift[j] += x[i * dim + j];
        for (size_t j = 0; j < dim; j++)
            shift[j] /= (double)train->n;
        /* Two passes: the squared deviations, not E[x^2] - E[x]^2, which cancels badly. */
        for (size_t i = 0; i < train->n; i++)
            for (size_t j = 0; j < dim; j++) {
                double d = x[i * dim + j] - shift[j];
                factor[j] += d * d;
            }
        for (size_t j = 0; j < dim; j++) {
            double sd = sqrt(factor[j] / (double)train->n);
            factor[j] = sd > 0.0 ? 1.0 / sd : 1.0;
        }
    }
    scale_rows(train, shift, factor);
    if (test)
        scale_rows(test, shift, factor);
    rc = 0;
out:
    free(shift);
    free(factor);
    return rc;
}

/* Uniform integer in [0, bound) from a 64-bit random word (bound < 2^32): the high half of
 * a 32 x 32 product, whose bias is below 2^-32 per draw. */
static inline uint32_t rand_below(uint64_t r, uint32_t bound)
{
    return (uint32_t)(((r >> 32) * (uint64_t)bound) >> 32);
}

/* Fisher-Yates over v[0, len) with the counter stream `key`: draw i uses index i. */
static void shuffle(uint32_t *v, size_t len, uint64_t key)
{
    for (size_t i = len; i > 1; i--) {
        uint32_t j = rand_below(smlt_rand_mix(key ^ smlt_rand_mix((uint64_t)i)), (uint32_t)i);
        uint32_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

struct data_set_iter *data_set_iter_new(const struct data_set *ds, int part, int nparts,
                                        uint64_t seed, int batch, int flags)
{
    if (!ds || nparts < 1 || part < 0 || part >= nparts || batch < 1 || (size_t)nparts > ds->n)
        return NULL;
    struct data_set_iter *it = calloc(1, sizeof *it);
    uint32_t *all = malloc(sizeof(uint32_t) * ds->n);
    if (!it || !all)
        goto fail;
    it->ds = ds;
    it->part = part;
    it->nparts = nparts;
    it->seed = seed;
    it->batch = batch;
    it->flags = flags;
    it->order_epoch = -1;
    /* The partition order: one seeded permutation of all rows, the same for every part and
     * every epoch, cut into nparts nearly equal blocks. */
    for (size_t i = 0; i < ds->n; i++)
        all[i] = (uint32_t)i;
    shuffle(all, ds->n, smlt_rand_mix(seed ^ 0x7061727469746e31ull));
    size_t lo = ds->n * (size_t)part / (size_t)nparts;
    size_t hi = ds->n * (size_t)(part + 1) / (size_t)nparts;
    it->len = hi - lo;
    if (it->len == 0 || (flags & DATA_SET_DROP_LAST && it->len < (size_t)batch))
        goto fail;
    it->rows = malloc(sizeof(uint32_t) * it->len);
    it->order = malloc(sizeof(uint32_t) * it->len);
    if (!it->rows || !it->order)
        goto fail;
    memcpy(it->rows, all + lo, sizeof(uint32_t) * it->len);
    free(all);
    return it;
fail:
    free(all);
    data_set_iter_free(it);
    return NULL;
}

void data_set_iter_free(struct data_set_iter *it)
{
    if (!it)
        return;
    free(it->rows);
    free(it->order);
    free(it);
}

size_t data_set_iter_part_size(const struct data_set_iter *it)
{
    return it->len;
}

int64_t data_set_iter_batches_per_epoch(const struct data_set_iter *it)
{
    if (it->flags & DATA_SET_DROP_LAST)
        return (int64_t)(it->len / (size_t)it->batch);
    return (int64_t)((it->len + (size_t)it->batch - 1) / (size_t)it->batch);
}

void data_set_iter_cursor(const struct data_set_iter *it, int64_t *epoch, int64_t *batch)
{
    if (epoch)
        *epoch = it->epoch;
    if (batch)
        *batch = it->next;
}

int data_set_iter_seek(struct data_set_iter *it, int64_t epoch, int64_t batch)
{
    const int64_t per = data_set_iter_batches_per_epoch(it);
    if (epoch < 0 || batch < 0 || batch > per || epoch > INT64_MAX / 2)
        return SMLT_EINVAL;
    if (batch == per) {
        epoch++;
        batch = 0;
    }
    it->epoch = epoch;
    it->next = batch;
    return 0;
}

/* Makes it->order the shuffled partition of the given epoch. */
static void iter_order(struct data_set_iter *it, int64_t epoch)
{
    if (it->order_epoch == epoch)
        return;
    memcpy(it->order, it->rows, sizeof(uint32_t) * it->len);
    uint64_t key = smlt_rand_mix(it->seed ^ 0x65706f6368ull);
    key = smlt_rand_mix(key ^ (uint64_t)epoch);
    key = smlt_rand_mix(key ^ ((uint64_t)(uint32_t)it->part << 32 | (uint32_t)it->nparts));
    shuffle(it->order, it->len, key);
    it->order_epoch = epoch;
}

int data_set_iter_batch_rows(struct data_set_iter *it, int64_t epoch, int64_t b, uint32_t *idx)
{
    if (epoch < 0 || b < 0 || b >= data_set_iter_batches_per_epoch(it) || !idx)
        return SMLT_EINVAL;
    iter_order(it, epoch);
    size_t first = (size_t)b * (size_t)it->batch;
    size_t n = it->len - first < (size_t)it->batch ? it->len - first : (size_t)it->batch;
    memcpy(idx, it->order + first, sizeof(uint32_t) * n);
    return (int)n;
}

int data_set_iter_next(struct data_set_iter *it, float *x, int32_t *y, uint32_t *idx)
{
    if (!x || !y)
        return SMLT_EINVAL;
    iter_order(it, it->epoch);
    const struct data_set *ds = it->ds;
    const size_t dim = (size_t)ds->dim;
    size_t first = (size_t)it->next * (size_t)it->batch;
    size_t n = it->len - first < (size_t)it->batch ? it->len - first : (size_t)it->batch;
    const uint32_t *rows = it->order + first;
    for (size_t i = 0; i < n; i++) {
        const uint32_t r = rows[i];
        data_set_rows(ds, r, 1, x + i * dim);
        y[i] = ds->y[r];
        if (idx)
            idx[i] = r;
    }
    if (++it->next >= data_set_iter_batches_per_epoch(it)) {
        it->epoch++;
        it->next = 0;
    }
    return (int)n;
}
