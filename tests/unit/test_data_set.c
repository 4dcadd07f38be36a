/* test_data_set.c: datasets, partitions (disjoint, covering, balanced), per-epoch shuffles
 * (deterministic in (part, nparts, seed, epoch), a permutation every epoch), batches with the
 * right rows, and the (epoch, batch) cursor: a new iterator seeked to a saved cursor yields the
 * identical remaining batch sequence. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "data_set.h"
#include "smlt_error.h"

/* A set whose row i holds the value i in every feature and label i % classes. */
static struct data_set *numbered(size_t n, int dim, int classes)
{
    struct data_set *ds = data_set_new(n, dim, classes);
    ck_assert_ptr_nonnull(ds);
    float *x = data_set_x_mut(ds);
    int32_t *y = data_set_y_mut(ds);
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < dim; j++)
            x[i * (size_t)dim + j] = (float)i;
        y[i] = (int32_t)(i % (size_t)classes);
    }
    return ds;
}

START_TEST(set_basics)
{
    struct data_set *ds = numbered(10, 3, 4);
    ck_assert_int_eq(data_set_size(ds), 10);
    ck_assert_int_eq(data_set_dim(ds), 3);
    ck_assert_int_eq(data_set_num_classes(ds), 4);
    ck_assert_int_eq(data_set_check(ds, NULL), 0);
    data_set_y_mut(ds)[7] = 4;
    size_t bad = 0;
    ck_assert_int_eq(data_set_check(ds, &bad), SMLT_ERANGE);
    ck_assert_int_eq(bad, 7);
    data_set_y_mut(ds)[7] = 3;
    struct data_set *sl = data_set_slice(ds, 8, 5); /* clamped to 2 rows */
    ck_assert_int_eq(data_set_size(sl), 2);
    ck_assert_float_eq(data_set_x(sl)[3], 9.0f);
    ck_assert_int_eq(data_set_y(sl)[1], 1);
    data_set_free(sl);
    ck_assert_ptr_null(data_set_new(5, 0, 2));
    ck_assert_ptr_null(data_set_new(5, 2, 0));
    ck_assert_ptr_null(data_set_new((size_t)1 << 33, 1, 2));
    ck_assert_ptr_null(data_set_new(1u << 30, 1 << 10, 2)); /* 2^40 elements */
    ck_assert_ptr_null(data_set_wrap(3, 0, 2, malloc(4), malloc(4))); /* frees both */
    data_set_free(ds);
    data_set_free(NULL);
}
END_TEST

/* Collects every row index of one epoch of an iterator. */
static size_t epoch_rows(struct data_set_iter *it, uint32_t *rows, float *x, int32_t *y,
                         const struct data_set *ds)
{
    size_t got = 0;
    int64_t e0;
    data_set_iter_cursor(it, &e0, NULL);
    const int64_t per = data_set_iter_batches_per_epoch(it);
    for (int64_t b = 0; b < per; b++) {
        int n = data_set_iter_next(it, x, y, rows + got);
        ck_assert_int_gt(n, 0);
        /* the gathered features and labels are those rows */
        for (int i = 0; i < n; i++) {
            uint32_t r = rows[got + i];
            ck_assert_float_eq(x[(size_t)i * data_set_dim(ds)], (float)r);
            ck_assert_int_eq(y[i], data_set_y(ds)[r]);
        }
        got += (size_t)n;
    }
    int64_t e1, b1;
    data_set_iter_cursor(it, &e1, &b1);
    ck_assert_int_eq(e1, e0 + 1);
    ck_assert_int_eq(b1, 0);
    return got;
}

START_TEST(partitions_disjoint_and_cover)
{
    const size_t N = 1003;
    struct data_set *ds = numbered(N, 2, 10);
    const int parts[] = {1, 2, 3, 7, 16};
    uint32_t *rows = malloc(sizeof(uint32_t) * N);
    float *x = malloc(sizeof(float) * 64 * 2);
    int32_t *y = malloc(sizeof(int32_t) * 64);
    for (size_t t = 0; t < sizeof parts / sizeof parts[0]; t++) {
        const int np = parts[t];
        unsigned char *seen = calloc(N, 1);
        size_t total = 0;
        for (int k = 0; k < np; k++) {
            struct data_set_iter *it = data_set_iter_new(ds, k, np, 99, 64, 0);
            ck_assert_ptr_nonnull(it);
            size_t len = data_set_iter_part_size(it);
            ck_assert(len == N / (size_t)np || len == N / (size_t)np + 1); /* balanced */
            size_t got = epoch_rows(it, rows, x, y, ds);
            ck_assert_int_eq(got, len);
            for (size_t i = 0; i < got; i++) {
                ck_assert_int_lt(rows[i], N);
                ck_assert_int_eq(seen[rows[i]], 0); /* disjoint, and no repeats */
                seen[rows[i]] = 1;
            }
            total += got;
            data_set_iter_free(it);
        }
        ck_assert_int_eq(total, N); /* cover */
        free(seen);
    }
    /* Labels are spread across partitions even though rows are sorted by label blocks. */
    struct data_set *sorted = data_set_new(1000, 1, 2);
    for (int i = 500; i < 1000; i++)
        data_set_y_mut(sorted)[i] = 1;
    struct data_set_iter *it = data_set_iter_new(sorted, 0, 4, 5, 250, 0);
    float xb[250];
    int32_t yb[250];
    int ones = 0, n = data_set_iter_next(it, xb, yb, NULL);
    for (int i = 0; i < n; i++)
        ones += yb[i];
    ck_assert_int_gt(ones, 90);
    ck_assert_int_lt(ones, 160);
    data_set_iter_free(it);
    data_set_free(sorted);
    free(rows);
    free(x);
    free(y);
    data_set_free(ds);
}
END_TEST

START_TEST(shuffle_deterministic_per_epoch)
{
    const size_t N = 500;
    struct data_set *ds = numbered(N, 1, 3);
    struct data_set_iter *a = data_set_iter_new(ds, 1, 3, 1234, 32, 0);
    struct data_set_iter *b = data_set_iter_new(ds, 1, 3, 1234, 32, 0);
    struct data_set_iter *c = data_set_iter_new(ds, 1, 3, 1235, 32, 0);
    const size_t len = data_set_iter_part_size(a);
    uint32_t *ra = malloc(sizeof(uint32_t) * len * 3), *rb = malloc(sizeof(uint32_t) * len * 3);
    uint32_t *rc = malloc(sizeof(uint32_t) * len);
    float x[32];
    int32_t y[32];
    for (int e = 0; e < 3; e++) {
        ck_assert_int_eq(epoch_rows(a, ra + len * e, x, y, ds), len);
        ck_assert_int_eq(epoch_rows(b, rb + len * e, x, y, ds), len);
    }
    /* same (part, nparts, seed, epoch): the same batches */
    ck_assert_int_eq(memcmp(ra, rb, sizeof(uint32_t) * len * 3), 0);
    /* each epoch is a permutation of the same partition, in a different order */
    uint32_t *s0 = malloc(sizeof(uint32_t) * len), *s1 = malloc(sizeof(uint32_t) * len);
    memcpy(s0, ra, sizeof(uint32_t) * len);
    memcpy(s1, ra + len, sizeof(uint32_t) * len);
    ck_assert_int_ne(memcmp(s0, s1, sizeof(uint32_t) * len), 0);
    int same_set = 1;
    unsigned char *mark = calloc(N, 1);
    for (size_t i = 0; i < len; i++)
        mark[s0[i]] = 1;
    for (size_t i = 0; i < len; i++)
        same_set &= mark[s1[i]];
    ck_assert(same_set);
    /* a different seed: a different order */
    epoch_rows(c, rc, x, y, ds);
    ck_assert_int_ne(memcmp(rc, ra, sizeof(uint32_t) * len), 0);
    /* random access to a batch agrees with the sequence */
    uint32_t idx[32];
    int n = data_set_iter_batch_rows(a, 1, 2, idx);
    ck_assert_int_eq(n, 32);
    ck_assert_int_eq(memcmp(idx, ra + len + 64, sizeof(uint32_t) * 32), 0);
    ck_assert_int_eq(data_set_iter_batch_rows(a, 0, data_set_iter_batches_per_epoch(a), idx),
                     SMLT_EINVAL);
    free(mark);
    free(s0);
    free(s1);
    free(ra);
    free(rb);
    free(rc);
    data_set_iter_free(a);
    data_set_iter_free(b);
    data_set_iter_free(c);
    data_set_free(ds);
}
END_TEST

START_TEST(cursor_resume)
{
    const size_t N = 301;
    struct data_set *ds = numbered(N, 4, 5);
    const int batch = 16;
    struct data_set_iter *a = data_set_iter_new(ds, 0, 2, 77, batch, 0);
    const int64_t per = data_set_iter_batches_per_epoch(a);
    ck_assert_int_eq(per, (int64_t)((data_set_iter_part_size(a) + batch - 1) / batch));
    float x[16 * 4];
    int32_t y[16];
    uint32_t ia[16], ib[16];
    /* the predecessor runs 1.5 epochs and stops */
    for (int64_t i = 0; i < per + per / 2; i++)
        data_set_iter_next(a, x, y, NULL);
    int64_t ep, bt;
    data_set_iter_cursor(a, &ep, &bt);
    ck_assert_int_eq(ep, 1);
    ck_assert_int_eq(bt, per / 2);
    /* a replacement worker resumes from the two integers */
    struct data_set_iter *b = data_set_iter_new(ds, 0, 2, 77, batch, 0);
    ck_assert_int_eq(data_set_iter_seek(b, ep, bt), 0);
    for (int64_t i = 0; i < 2 * per + 3; i++) {
        int na = data_set_iter_next(a, x, y, ia);
        int nb = data_set_iter_next(b, x, y, ib);
        ck_assert_int_eq(na, nb);
        ck_assert_int_eq(memcmp(ia, ib, sizeof(uint32_t) * (size_t)na), 0);
    }
    /* seeking to the end of an epoch is the start of the next */
    ck_assert_int_eq(data_set_iter_seek(b, 4, per), 0);
    data_set_iter_cursor(b, &ep, &bt);
    ck_assert_int_eq(ep, 5);
    ck_assert_int_eq(bt, 0);
    ck_assert_int_eq(data_set_iter_seek(b, -1, 0), SMLT_EINVAL);
    ck_assert_int_eq(data_set_iter_seek(b, 0, per + 1), SMLT_EINVAL);
    ck_assert_int_eq(data_set_iter_seek(b, 0, -1), SMLT_EINVAL);
    data_set_iter_free(a);
    data_set_iter_free(b);
    data_set_free(ds);
}
END_TEST

START_TEST(drop_last_and_bad_args)
{
    struct data_set *ds = numbered(100, 1, 2);
    struct data_set_iter *it = data_set_iter_new(ds, 0, 1, 1, 30, DATA_SET_DROP_LAST);
    ck_assert_int_eq(data_set_iter_batches_per_epoch(it), 3);
    float x[30];
    int32_t y[30];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(data_set_iter_next(it, x, y, NULL), 30);
    int64_t ep;
    data_set_iter_cursor(it, &ep, NULL);
    ck_assert_int_eq(ep, 1);
    data_set_iter_free(it);
    it = data_set_iter_new(ds, 0, 1, 1, 30, 0);
    ck_assert_int_eq(data_set_iter_batches_per_epoch(it), 4);
    for (int i = 0; i < 3; i++)
        data_set_iter_next(it, x, y, NULL);
    ck_assert_int_eq(data_set_iter_next(it, x, y, NULL), 10); /* partial last batch */
    ck_assert_int_eq(data_set_iter_next(it, NULL, y, NULL), SMLT_EINVAL);
    data_set_iter_free(it);
    ck_assert_ptr_null(data_set_iter_new(ds, 2, 2, 1, 10, 0));
    ck_assert_ptr_null(data_set_iter_new(ds, -1, 2, 1, 10, 0));
    ck_assert_ptr_null(data_set_iter_new(ds, 0, 0, 1, 10, 0));
    ck_assert_ptr_null(data_set_iter_new(ds, 0, 1, 1, 0, 0));
    ck_assert_ptr_null(data_set_iter_new(ds, 0, 101, 1, 1, 0)); /* empty partitions */
    ck_assert_ptr_null(data_set_iter_new(ds, 0, 1, 1, 101, DATA_SET_DROP_LAST));
    ck_assert_ptr_null(data_set_iter_new(NULL, 0, 1, 1, 1, 0));
    data_set_iter_free(NULL);
    data_set_free(ds);
}
END_TEST

/* A set of bytes reads exactly like the same set of floats: rows, batches, slices, the
 * whole matrix made on demand. */
START_TEST(byte_set_matches_float_set)
{
    const size_t n = 37;
    const int dim = 5;
    uint8_t *x8 = malloc(n * dim);
    int32_t *y8 = malloc(sizeof(int32_t) * n), *yf = malloc(sizeof(int32_t) * n);
    float *xf = malloc(sizeof(float) * n * dim);
    for (size_t i = 0; i < n * dim; i++) {
        x8[i] = (uint8_t)(i * 7 + 3);
        xf[i] = (float)x8[i] * (1.0f / 255.0f);
    }
    for (size_t i = 0; i < n; i++)
        y8[i] = yf[i] = (int32_t)(i % 4);
    struct data_set *a = data_set_wrap_u8(n, dim, 4, x8, 1.0f / 255.0f, y8);
    struct data_set *b = data_set_wrap(n, dim, 4, xf, yf);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    float ra[3 * 5], rb[3 * 5];
    data_set_rows(a, 10, 3, ra);
    data_set_rows(b, 10, 3, rb);
    ck_assert_mem_eq(ra, rb, sizeof ra);
    struct data_set_iter *ia = data_set_iter_new(a, 1, 3, 9, 4, 0);
    struct data_set_iter *ib = data_set_iter_new(b, 1, 3, 9, 4, 0);
    float xa[4 * 5], xb[4 * 5];
    int32_t la[4], lb[4];
    for (int k = 0; k < 7; k++) {
        int na = data_set_iter_next(ia, xa, la, NULL), nb = data_set_iter_next(ib, xb, lb, NULL);
        ck_assert_int_eq(na, nb);
        ck_assert_mem_eq(xa, xb, sizeof(float) * (size_t)na * dim);
        ck_assert_mem_eq(la, lb, sizeof(int32_t) * (size_t)na);
    }
    data_set_iter_free(ia);
    data_set_iter_free(ib);
    struct data_set *sa = data_set_slice(a, 5, 6), *sb = data_set_slice(b, 5, 6);
    data_set_rows(sa, 0, 3, ra);
    data_set_rows(sb, 0, 3, rb);
    ck_assert_mem_eq(ra, rb, sizeof ra);
    /* The whole float matrix, made from the bytes on the first call. */
    ck_assert_mem_eq(data_set_x(a), data_set_x(b), sizeof(float) * n * dim);
    ck_assert_mem_eq(data_set_x(sa), data_set_x(sb), sizeof(float) * 6 * dim);
    data_set_free(sa);
    data_set_free(sb);
    data_set_free(a);
    data_set_free(b);
}
END_TEST

static Suite *data_set_suite(void)
{
    Suite *s = suite_create("data_set");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, set_basics);
    tcase_add_test(tc, partitions_disjoint_and_cover);
    tcase_add_test(tc, shuffle_deterministic_per_epoch);
    tcase_add_test(tc, cursor_resume);
    tcase_add_test(tc, drop_last_and_bad_args);
    tcase_add_test(tc, byte_set_matches_float_set);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(data_set_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
