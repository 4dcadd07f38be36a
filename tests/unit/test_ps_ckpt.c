/* test_ps_ckpt.c: Check suite for ps/ps_ckpt.c (shard checkpoint files): a round trip bit for
 * bit (NaN payloads, optimizer state, tables), every single-byte change and every truncation
 * refused, hostile counts refused before allocating, newest-valid selection and rotation. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "ps_ckpt.h"
#include "smlt_error.h"
#include "smlt_limits.h"

static char dir[256];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_ps_ckpt.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* A checkpoint of n floats with nstate arrays: params include NaNs with payloads, infinities
 * and a zero run (so some blocks compress), state is dense. */
struct fixture {
    struct ps_ckpt c;
    uint64_t lc[3], la[3];
    uint8_t map[40];
};

static void fixture_init(struct fixture *f, uint32_t shard, uint64_t step, uint64_t n,
                         uint32_t nstate)
{
    memset(f, 0, sizeof *f);
    f->c.shard = shard;
    f->c.step = step;
    f->c.lo = 1000;
    f->c.hi = 1000 + n;
    f->c.version = step;
    f->c.clock = step;
    f->c.updates = step + 7;
    f->c.optim = 2;
    f->c.nstate = nstate;
    f->c.nranks = 3;
    f->lc[0] = step - 1;
    f->lc[1] = UINT64_MAX;
    f->lc[2] = step - 1;
    f->la[0] = 5;
    f->la[1] = UINT64_MAX;
    f->la[2] = 0;
    f->c.last_counted = f->lc;
    f->c.last_applied = f->la;
    f->c.job = "job-ckpt";
    for (size_t i = 0; i < sizeof f->map; i++)
        f->map[i] = (uint8_t)(i * 7);
    f->c.map_pb = f->map;
    f->c.map_len = sizeof f->map;
    f->c.params = malloc(n * sizeof(float) + 4);
    f->c.state = malloc((nstate ? nstate : 1) * n * sizeof(float) + 4);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t bits;
        if (i % 97 == 3)
            bits = 0x7fc00000u | (uint32_t)(i & 0x3fffff); /* quiet NaN with a payload */
        else if (i % 97 == 5)
            bits = 0xff800001u; /* signalling NaN, negative */
        else if (i % 97 == 7)
            bits = 0x7f800000u; /* +inf */
        else if (n > PS_CKPT_BLOCK ? i / PS_CKPT_BLOCK == 1 : (i >= n / 2 && i < n / 2 + n / 4))
            bits = 0; /* a zero run: the second block, if there is one, compresses */
        else {
            float v = sinf((float)i * 0.37f) * 3.0f;
            memcpy(&bits, &v, 4);
        }
        memcpy(&f->c.params[i], &bits, 4);
    }
    for (uint64_t i = 0; i < nstate * n; i++)
        f->c.state[i] = cosf((float)i * 0.11f) * 1e-3f;
}

static void fixture_free(struct fixture *f)
{
    free(f->c.params);
    free(f->c.state);
}

static void assert_same(const struct ps_ckpt *a, const struct ps_ckpt *b)
{
    uint64_t n = a->hi - a->lo;
    ck_assert_uint_eq(a->shard, b->shard);
    ck_assert_uint_eq(a->step, b->step);
    ck_assert_uint_eq(a->lo, b->lo);
    ck_assert_uint_eq(a->hi, b->hi);
    ck_assert_uint_eq(a->version, b->version);
    ck_assert_uint_eq(a->clock, b->clock);
    ck_assert_uint_eq(a->updates, b->updates);
    ck_assert_uint_eq(a->optim, b->optim);
    ck_assert_uint_eq(a->nstate, b->nstate);
    ck_assert_uint_eq(a->nranks, b->nranks);
    ck_assert_mem_eq(a->last_counted, b->last_counted, 8 * a->nranks);
    ck_assert_mem_eq(a->last_applied, b->last_applied, 8 * a->nranks);
    ck_assert_str_eq(a->job, b->job);
    ck_assert_uint_eq(a->map_len, b->map_len);
    ck_assert_mem_eq(a->map_pb, b->map_pb, a->map_len);
    ck_assert_int_eq(memcmp(a->params, b->params, n * sizeof(float)), 0);
    if (a->nstate)
        ck_assert_int_eq(memcmp(a->state, b->state, a->nstate * n * sizeof(float)), 0);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)l + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)l, f), (size_t)l);
    fclose(f);
    *len = (size_t)l;
    return b;
}

START_TEST(round_trip)
{
    /* Over two blocks per array, the last one partial. */
    uint64_t n = PS_CKPT_BLOCK * 2 + 1234;
    struct fixture f;
    fixture_init(&f, 3, 40, n, 2);
    char err[512] = "", path[4096];
    uint64_t bytes = 0;
    ck_assert_msg(ps_ckpt_write(dir, &f.c, &bytes, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ps_ckpt_path(path, sizeof path, dir, 3, 40), 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq((uint64_t)st.st_size, bytes);
    /* The zero run compressed: smaller than the raw floats. */
    ck_assert_uint_lt(bytes, 3 * n * sizeof(float));
    struct ps_ckpt *r = NULL;
    ck_assert_msg(ps_ckpt_read(path, &r, err, sizeof err) == 0, "%s", err);
    assert_same(&f.c, r);
    ps_ckpt_free(r);
    /* No optimizer state (SGD), no ranks, no job name. */
    f.c.nstate = 0;
    f.c.nranks = 0;
    f.c.job = "";
    f.c.step = 41;
    ck_assert_int_eq(ps_ckpt_write(dir, &f.c, NULL, err, sizeof err), 0);
    ck_assert_int_eq(ps_ckpt_path(path, sizeof path, dir, 3, 41), 0);
    ck_assert_int_eq(ps_ckpt_read(path, &r, err, sizeof err), 0);
    assert_same(&f.c, r);
    ps_ckpt_free(r);
    fixture_free(&f);
}
END_TEST

START_TEST(every_byte_and_length)
{
    struct fixture f;
    fixture_init(&f, 0, 8, 100, 2);
    char err[512], path[4096];
    ck_assert_int_eq(ps_ckpt_write(dir, &f.c, NULL, err, sizeof err), 0);
    ck_assert_int_eq(ps_ckpt_path(path, sizeof path, dir, 0, 8), 0);
    size_t len;
    uint8_t *b = slurp(path, &len);
    struct ps_ckpt *r = NULL;
    ck_assert_int_eq(ps_ckpt_parse(b, len, &r, err, sizeof err), 0);
    ps_ckpt_free(r);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            b[i] ^= (uint8_t)(1u << bit);
            r = NULL;
            err[0] = 0;
            int rc = ps_ckpt_parse(b, len, &r, err, sizeof err);
            ck_assert_msg(rc < 0, "byte %zu bit %d changed undetected", i, bit);
            ck_assert_ptr_null(r);
            ck_assert_msg(err[0] != 0, "no message for byte %zu", i);
            b[i] ^= (uint8_t)(1u << bit);
        }
    }
    for (size_t l = 0; l < len; l++) {
        r = NULL;
        ck_assert_msg(ps_ckpt_parse(b, l, &r, err, sizeof err) < 0, "length %zu accepted", l);
        ck_assert_ptr_null(r);
    }
    /* A file with one byte too many is refused too. */
    uint8_t *big = malloc(len + 1);
    memcpy(big, b, len);
    big[len] = 0;
    ck_assert_int_lt(ps_ckpt_parse(big, len + 1, &r, err, sizeof err), 0);
    free(big);
    free(b);
    fixture_free(&f);
}
END_TEST

/* Rewrites the header CRC after a change, so the counts themselves are what is checked. */
static void fix_crc(uint8_t *b)
{
    uint32_t c = (uint32_t)crc32(0, b, 100);
    for (int i = 0; i < 4; i++)
        b[100 + i] = (uint8_t)(c >> (8 * i));
}

static void put64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

START_TEST(hostile_counts)
{
    struct fixture f;
    fixture_init(&f, 0, 8, 64, 1);
    char err[512], path[4096];
    ck_assert_int_eq(ps_ckpt_write(dir, &f.c, NULL, err, sizeof err), 0);
    ck_assert_int_eq(ps_ckpt_path(path, sizeof path, dir, 0, 8), 0);
    size_t len;
    uint8_t *b = slurp(path, &len);
    uint8_t *x = malloc(len);
    struct ps_ckpt *r = NULL;
    /* A range of 2^40 elements (valid CRC): refused by the limit, nothing allocated. */
    memcpy(x, b, len);
    put64le(x + 40, (uint64_t)1 << 40);
    fix_crc(x);
    ck_assert_int_eq(ps_ckpt_parse(x, len, &r, err, sizeof err), SMLT_ETOOBIG);
    /* A range within the limit but far larger than the file: refused by the block scan. */
    memcpy(x, b, len);
    put64le(x + 40, 1000 + ((uint64_t)1 << 30));
    fix_crc(x);
    ck_assert_int_eq(ps_ckpt_parse(x, len, &r, err, sizeof err), SMLT_ECORRUPT);
    /* Too many ranks, state arrays, a huge map. */
    memcpy(x, b, len);
    put32le(x + 48, SMLT_MAX_WORKERS + 1);
    fix_crc(x);
    ck_assert_int_eq(ps_ckpt_parse(x, len, &r, err, sizeof err), SMLT_ETOOBIG);
    memcpy(x, b, len);
    put32le(x + 20, PS_CKPT_MAX_STATE + 1);
    fix_crc(x);
    ck_assert_int_eq(ps_ckpt_parse(x, len, &r, err, sizeof err), SMLT_ETOOBIG);
    memcpy(x, b, len);
    put32le(x + 52, 0xffffffffu);
    fix_crc(x);
    ck_assert_int_eq(ps_ckpt_parse(x, len, &r, err, sizeof err), SMLT_ETOOBIG);
    /* hi below lo. */
    memcpy(x, b, len);
    put64le(x + 40, 10);
    fix_crc(x);
    ck_assert_int_lt(ps_ckpt_parse(x, len, &r, err, sizeof err), 0);
    ck_assert_ptr_null(r);
    free(x);
    free(b);
    fixture_free(&f);
}
END_TEST

static void corrupt_file(const char *path, long at)
{
    FILE *fp = fopen(path, "r+b");
    ck_assert_ptr_nonnull(fp);
    fseek(fp, at, SEEK_SET);
    int ch = fgetc(fp);
    fseek(fp, at, SEEK_SET);
    fputc(ch ^ 0x40, fp);
    fclose(fp);
}

START_TEST(newest_valid)
{
    struct fixture f;
    fixture_init(&f, 2, 10, 500, 2);
    char err[512], path[4096], report[1024] = "";
    for (uint64_t s = 10; s <= 30; s += 10) {
        f.c.step = s;
        f.c.version = s;
        ck_assert_int_eq(ps_ckpt_write(dir, &f.c, NULL, err, sizeof err), 0);
    }
    struct ps_ckpt *r = NULL;
    uint32_t corrupt = 0;
    ck_assert_int_eq(ps_ckpt_find(dir, 2, 0, &r, report, sizeof report, &corrupt, err, sizeof err), 0);
    ck_assert_uint_eq(r->step, 30);
    ck_assert_uint_eq(corrupt, 0);
    ps_ckpt_free(r);
    /* Corrupt the newest in its floats, truncate the one before: the oldest is used. */
    ck_assert_int_eq(ps_ckpt_path(path, sizeof path, dir, 2, 30), 0);
    corrupt_file(path, 300);
    ck_assert_int_eq(ps_ckpt_path(path, sizeof path, dir, 2, 20), 0);
    ck_assert_int_eq(truncate(path, 1000), 0);
    ck_assert_int_eq(ps_ckpt_find(dir, 2, 0, &r, report, sizeof report, &corrupt, err, sizeof err), 0);
    ck_assert_uint_eq(r->step, 10);
    ck_assert_uint_eq(corrupt, 2);
    ck_assert_ptr_nonnull(strstr(report, "ckpt-30"));
    ck_assert_ptr_nonnull(strstr(report, "ckpt-20"));
    ps_ckpt_free(r);
    uint64_t *steps;
    size_t n;
    ck_assert_int_eq(ps_ckpt_valid_steps(dir, 2, &steps, &n, NULL, 0, NULL), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(steps[0], 10);
    free(steps);
    /* An explicit step that is corrupt is an error, not another step. */
    ck_assert_int_eq(ps_ckpt_find(dir, 2, 30, &r, NULL, 0, NULL, err, sizeof err), SMLT_ECORRUPT);
    ck_assert_int_eq(ps_ckpt_find(dir, 2, 99, &r, NULL, 0, NULL, err, sizeof err), SMLT_ENOTFOUND);
    /* A file renamed to another step is refused. */
    char other[4096];
    ck_assert_int_eq(ps_ckpt_path(path, sizeof path, dir, 2, 10), 0);
    ck_assert_int_eq(ps_ckpt_path(other, sizeof other, dir, 2, 50), 0);
    ck_assert_int_eq(link(path, other), 0);
    ck_assert_int_eq(ps_ckpt_find(dir, 2, 0, &r, NULL, 0, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(r->step, 10);
    ps_ckpt_free(r);
    /* Another shard's directory is empty. */
    ck_assert_int_eq(ps_ckpt_find(dir, 7, 0, &r, NULL, 0, NULL, err, sizeof err), SMLT_ENOTFOUND);
    fixture_free(&f);
}
END_TEST

START_TEST(keep_rotation)
{
    struct fixture f;
    fixture_init(&f, 1, 5, 32, 0);
    char err[512];
    for (uint64_t s = 5; s <= 40; s += 5) {
        f.c.step = s;
        ck_assert_int_eq(ps_ckpt_write(dir, &f.c, NULL, err, sizeof err), 0);
        ck_assert_int_ge(ps_ckpt_prune(dir, 1, 3), 0);
    }
    uint64_t *steps;
    size_t n;
    ck_assert_int_eq(ps_ckpt_list(dir, 1, &steps, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(steps[0], 40);
    ck_assert_uint_eq(steps[1], 35);
    ck_assert_uint_eq(steps[2], 30);
    free(steps);
    /* Unrelated names are ignored. */
    char p[512];
    snprintf(p, sizeof p, "%s/shard-1/ckpt-x.smltck", dir);
    FILE *fp = fopen(p, "w");
    fclose(fp);
    snprintf(p, sizeof p, "%s/shard-1/ckpt-45.smltck.tmp.1.1", dir);
    fp = fopen(p, "w");
    fclose(fp);
    ck_assert_int_eq(ps_ckpt_list(dir, 1, &steps, &n), 0);
    ck_assert_uint_eq(n, 3);
    free(steps);
    ck_assert_int_eq(ps_ckpt_prune(dir, 1, 1), 2);
    fixture_free(&f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ps_ckpt");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, every_byte_and_length);
    tcase_add_test(tc, hostile_counts);
    tcase_add_test(tc, newest_valid);
    tcase_add_test(tc, keep_rotation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
