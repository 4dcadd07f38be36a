/* test_data_load.c: the IDX, CSV and LIBSVM parsers on the real Fashion-MNIST files and on
 * hostile inputs written to temporary files: truncated (plain and gzip), wrong magic, wrong
 * element type, images/labels count mismatch, labels out of range, trailing bytes, a header
 * claiming huge sizes, ragged CSV rows, bad numbers, bad LIBSVM tokens. Each must fail with a
 * message naming the file and the line or offset, and never crash (the sanitizer build runs
 * these too). Then the dataset options as the worker applies them (worker_load_data()): the
 * label column, the header line, scaling fitted on the training file and applied to the test
 * file, and the refusals of a one-class training set and of a model too small for the labels. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data_load.h"
#include "data_set.h"
#include "nn_model.h"
#include "smlt_error.h"
#include "worker_train.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/smlt-test-data-load.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* Writes len bytes to tmpdir/name, gzip-compressed when gz. Returns the path (static). */
static const char *put(const char *name, const void *data, size_t len, int gz)
{
    static char paths[64][512]; /* stable for a whole test */
    static int slot;
    char *p = paths[slot++ % 64];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        ck_assert_ptr_nonnull(f);
        if (len)
            ck_assert_int_eq(gzwrite(f, data, (unsigned)len), (int)len);
        gzclose(f);
    } else {
        FILE *f = fopen(p, "wb");
        ck_assert_ptr_nonnull(f);
        if (len)
            ck_assert_int_eq(fwrite(data, 1, len, f), len);
        fclose(f);
    }
    return p;
}

static const char *put_text(const char *name, const char *text)
{
    return put(name, text, strlen(text), 0);
}

static void be32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

/* An IDX images file of n images of r x c with pixel (i, j) = (i * 7 + j) % 256. */
static size_t make_images(unsigned char *buf, uint32_t n, uint32_t r, uint32_t c)
{
    buf[0] = buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = 3;
    be32(buf + 4, n);
    be32(buf + 8, r);
    be32(buf + 12, c);
    for (uint32_t i = 0; i < n * r * c; i++)
        buf[16 + i] = (unsigned char)((i / (r * c)) * 7 + i % (r * c));
    return 16 + (size_t)n * r * c;
}

static size_t make_labels(unsigned char *buf, uint32_t n, int mod)
{
    buf[0] = buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = 1;
    be32(buf + 4, n);
    for (uint32_t i = 0; i < n; i++)
        buf[8 + i] = (unsigned char)(i % (uint32_t)mod);
    return 8 + n;
}

/* Expects failure with code rc and a message containing needle. */
static void expect_idx_fail(const char *img, const char *lab, const struct data_load_opts *o,
                            int rc, const char *needle)
{
    char err[512] = "";
    struct data_set *ds = (struct data_set *)1;
    int got = data_load_idx(img, lab, o, &ds, err, sizeof err);
    ck_assert_msg(got == rc, "expected %d got %d (%s)", rc, got, err);
    ck_assert_ptr_null(ds);
    ck_assert_msg(strstr(err, needle) != NULL, "message '%s' lacks '%s'", err, needle);
}

START_TEST(fmnist_real)
{
    char err[512];
    struct data_set *ds = NULL;
    int rc = data_load_idx(FMNIST_DIR "/train-images-idx3-ubyte.gz",
                           FMNIST_DIR "/train-labels-idx1-ubyte.gz", NULL, &ds, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_eq(data_set_size(ds), 60000);
    ck_assert_int_eq(data_set_dim(ds), 784);
    ck_assert_int_eq(data_set_num_classes(ds), 10);
    ck_assert_int_eq(data_set_y(ds)[0], 9); /* the first training item is an ankle boot */
    int counts[10] = {0};
    for (size_t i = 0; i < 60000; i++)
        counts[data_set_y(ds)[i]]++;
    for (int k = 0; k < 10; k++)
        ck_assert_int_eq(counts[k], 6000);
    float mn = 1, mx = 0;
    double sum = 0;
    for (size_t i = 0; i < 60000 * 784; i++) {
        float v = data_set_x(ds)[i];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        sum += v;
    }
    ck_assert_float_eq(mn, 0.0f);
    ck_assert_float_eq(mx, 1.0f);
    ck_assert_double_eq_tol(sum / (60000.0 * 784), 0.286, 0.002); /* the known pixel mean */
    data_set_free(ds);

    struct data_load_opts o;
    data_load_opts_init(&o);
    o.max_rows = 100;
    o.num_classes = 10;
    o.dim = 784;
    rc = data_load_idx(FMNIST_DIR "/t10k-images-idx3-ubyte.gz",
                       FMNIST_DIR "/t10k-labels-idx1-ubyte.gz", &o, &ds, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_eq(data_set_size(ds), 100);
    data_set_free(ds);
}
END_TEST

START_TEST(idx_valid_plain_and_gz)
{
    static unsigned char img[16 + 5 * 3 * 4], lab[8 + 5];
    size_t il = make_images(img, 5, 3, 4), ll = make_labels(lab, 5, 3);
    for (int gz = 0; gz < 2; gz++) {
        const char *pi = put(gz ? "i.gz" : "i", img, il, gz);
        const char *pl = put(gz ? "l.gz" : "l", lab, ll, gz);
        char err[256];
        struct data_set *ds = NULL;
        ck_assert_int_eq(data_load_idx(pi, pl, NULL, &ds, err, sizeof err), 0);
        ck_assert_int_eq(data_set_size(ds), 5);
        ck_assert_int_eq(data_set_dim(ds), 12);
        ck_assert_int_eq(data_set_num_classes(ds), 3);
        ck_assert_float_eq_tol(data_set_x(ds)[12 + 5], (7.0f + 5) / 255.0f, 1e-7f);
        ck_assert_int_eq(data_set_y(ds)[4], 1);
        data_set_free(ds);
    }
}
END_TEST

START_TEST(idx_hostile)
{
    static unsigned char img[16 + 6 * 2 * 2], lab[8 + 6], bad[64];
    size_t il = make_images(img, 6, 2, 2), ll = make_labels(lab, 6, 4);
    const char *pl = put("l", lab, ll, 0);
    struct data_load_opts o;
    data_load_opts_init(&o);

    /* truncated pixels, plain and gzip */
    expect_idx_fail(put("t", img, il - 3, 0), pl, NULL, SMLT_ECORRUPT, "truncated at offset 37");
    expect_idx_fail(put("t.gz", img, il - 3, 1), pl, NULL, SMLT_ECORRUPT, "t.gz: truncated");
    /* a gzip stream cut in the middle */
    {
        const char *full = put("full.gz", img, il, 1);
        FILE *f = fopen(full, "rb");
        unsigned char gzb[512];
        size_t n = fread(gzb, 1, sizeof gzb, f);
        fclose(f);
        expect_idx_fail(put("cut.gz", gzb, n / 2, 0), pl, NULL, SMLT_ECORRUPT, "cut.gz");
    }
    /* truncated header */
    expect_idx_fail(put("h", img, 10, 0), pl, NULL, SMLT_ECORRUPT, "h: truncated at offset");
    expect_idx_fail(put("e", img, 0, 0), pl, NULL, SMLT_ECORRUPT, "e: truncated at offset 0");
    /* wrong magic, wrong type, wrong dims */
    memcpy(bad, img, 16);
    bad[0] = 0x1f;
    expect_idx_fail(put("m", bad, 16, 0), pl, NULL, SMLT_ECORRUPT, "bad IDX magic");
    memcpy(bad, img, 16);
    bad[2] = 0x0d;
    expect_idx_fail(put("ty", bad, 16, 0), pl, NULL, SMLT_ECORRUPT, "element type 0x0d");
    memcpy(bad, img, 16);
    bad[3] = 0;
    expect_idx_fail(put("d0", bad, 16, 0), pl, NULL, SMLT_ECORRUPT, "bad IDX magic");
    expect_idx_fail(pl, pl, NULL, SMLT_ECORRUPT, "at least 2 dimensions");
    const char *pi = put("i", img, il, 0);
    expect_idx_fail(pi, pi, NULL, SMLT_ECORRUPT, "labels file has 1 dimension");
    /* images and labels disagree */
    static unsigned char lab5[8 + 5];
    size_t l5 = make_labels(lab5, 5, 4);
    expect_idx_fail(pi, put("l5", lab5, l5, 0), NULL, SMLT_ECORRUPT,
                    "has 6 images but");
    /* labels out of range for the classes asked for */
    o.num_classes = 3;
    expect_idx_fail(pi, pl, &o, SMLT_ERANGE, "label 3 of item 3 is out of range [0, 3)");
    o.num_classes = 0;
    /* pixels per image differ from what the caller expects */
    o.dim = 5;
    expect_idx_fail(pi, pl, &o, SMLT_ECORRUPT, "images have 4 pixels, expected 5");
    o.dim = 0;
    /* trailing bytes */
    static unsigned char longer[sizeof img + 3];
    memcpy(longer, img, il);
    expect_idx_fail(put("long", longer, il + 3, 0), pl, NULL, SMLT_ECORRUPT,
                    "unexpected data after the IDX body");
    /* a header claiming 4 billion images of 16M pixels: rejected before allocating */
    memcpy(bad, img, 16);
    be32(bad + 4, 0xffffffffu);
    be32(bad + 8, 4096);
    be32(bad + 12, 4096);
    static unsigned char bigl[8];
    memcpy(bigl, lab, 8);
    be32(bigl + 4, 0xffffffffu);
    expect_idx_fail(put("big", bad, 16, 0), put("bigl", bigl, 8, 0), NULL, SMLT_ETOOBIG,
                    "exceed the limits");
    /* a plausible header over a short file: fails on the data, not on a huge allocation */
    memcpy(bad, img, 16);
    be32(bad + 4, 5000000);
    be32(bad + 8, 28);
    be32(bad + 12, 28);
    be32(bigl + 4, 5000000);
    expect_idx_fail(put("lie", bad, 20, 0), put("liel", bigl, 8, 0), NULL, SMLT_ECORRUPT,
                    "liel: truncated at offset 8");
    /* missing files */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope", tmpdir);
    expect_idx_fail(missing, pl, NULL, SMLT_ENOTFOUND, "nope: cannot open");
    ck_assert_int_eq(data_load_idx(NULL, pl, NULL, NULL, NULL, 0), SMLT_EINVAL);
}
END_TEST

static void expect_text_fail(int libsvm, const char *text, const struct data_load_opts *o,
                             int rc, const char *needle)
{
    const char *p = put_text(libsvm ? "f.svm" : "f.csv", text);
    char err[512] = "";
    struct data_set *ds = (struct data_set *)1;
    int got = libsvm ? data_load_libsvm(p, o, &ds, err, sizeof err)
                     : data_load_csv(p, o, &ds, err, sizeof err);
    ck_assert_msg(got == rc, "'%s': expected %d got %d (%s)", text, rc, got, err);
    ck_assert_ptr_null(ds);
    ck_assert_msg(strstr(err, needle) != NULL, "'%s': message '%s' lacks '%s'", text, err,
                  needle);
    ck_assert_msg(strstr(err, "f.") != NULL, "message '%s' lacks the file name", err);
}

START_TEST(csv_valid)
{
    char err[256];
    struct data_set *ds = NULL;
    /* header detected, CRLF, blank line, spaces around fields */
    const char *p = put_text("a.csv", "label,p1,p2\r\n1, 0.5 ,2\r\n\r\n0,1e-1,-3\n2,4,5");
    ck_assert_msg(data_load_csv(p, NULL, &ds, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(data_set_size(ds), 3);
    ck_assert_int_eq(data_set_dim(ds), 2);
    ck_assert_int_eq(data_set_num_classes(ds), 3);
    ck_assert_float_eq(data_set_x(ds)[0], 0.5f);
    ck_assert_float_eq(data_set_x(ds)[3], -3.0f);
    ck_assert_int_eq(data_set_y(ds)[2], 2);
    data_set_free(ds);
    /* label in the last column, no header, scaled features, gzip */
    struct data_load_opts o;
    data_load_opts_init(&o);
    o.label_col = -1;
    o.scale = 1.0f / 255;
    o.num_classes = 10;
    const char *text = "255,0,3\n51,102,9\n";
    p = put("b.csv.gz", text, strlen(text), 1);
    ck_assert_msg(data_load_csv(p, &o, &ds, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(data_set_size(ds), 2);
    ck_assert_int_eq(data_set_num_classes(ds), 10);
    ck_assert_float_eq_tol(data_set_x(ds)[0], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(data_set_x(ds)[2], 0.2f, 1e-6f);
    ck_assert_int_eq(data_set_y(ds)[1], 9);
    data_set_free(ds);
    /* max_rows, and rows in numbers past a first growth step */
    char *big = malloc(5000 * 16);
    size_t off = 0;
    for (int i = 0; i < 5000; i++)
        off += (size_t)sprintf(big + off, "%d,%d,%d\n", i % 4, i, -i);
    p = put_text("c.csv", big);
    free(big);
    ck_assert_int_eq(data_load_csv(p, NULL, &ds, err, sizeof err), 0);
    ck_assert_int_eq(data_set_size(ds), 5000);
    ck_assert_float_eq(data_set_x(ds)[2 * 4999 + 1], -4999.0f);
    data_set_free(ds);
    data_load_opts_init(&o);
    o.max_rows = 10;
    ck_assert_int_eq(data_load_csv(p, &o, &ds, err, sizeof err), 0);
    ck_assert_int_eq(data_set_size(ds), 10);
    data_set_free(ds);
}
END_TEST

START_TEST(csv_hostile)
{
    struct data_load_opts o;
    data_load_opts_init(&o);
    expect_text_fail(0, "1,2,3\n0,4\n", NULL, SMLT_ECORRUPT, "line 2: ragged row: 2 fields, "
                     "expected 3");
    expect_text_fail(0, "1,2,3\n0,4,5,6\n", NULL, SMLT_ECORRUPT, "line 2: ragged");
    expect_text_fail(0, "1,2,3\n0,4,x5\n", NULL, SMLT_ECORRUPT, "line 2: column 3: bad number "
                     "'x5'");
    expect_text_fail(0, "1,2,3\n0,4,\n", NULL, SMLT_ECORRUPT, "line 2: column 3: bad number");
    expect_text_fail(0, "1,2,3\n0,nan,1\n", NULL, SMLT_ECORRUPT, "column 2: bad number 'nan'");
    expect_text_fail(0, "1,2,3\n0,1e99,1\n", NULL, SMLT_ECORRUPT, "bad number '1e99'");
    expect_text_fail(0, "1,2,3\n1.5,4,5\n", NULL, SMLT_ECORRUPT, "line 2: column 1: label "
                     "'1.5'");
    expect_text_fail(0, "1,2,3\n-4,4,5\n", NULL, SMLT_ECORRUPT, "label '-4'");
    o.num_classes = 2;
    expect_text_fail(0, "1,2,3\n2,4,5\n", &o, SMLT_ERANGE, "row 2: label 2 is out of range");
    o.num_classes = 0;
    expect_text_fail(0, "", NULL, SMLT_ECORRUPT, "no rows");
    expect_text_fail(0, "\n\n", NULL, SMLT_ECORRUPT, "no rows");
    expect_text_fail(0, "5\n6\n", NULL, SMLT_ECORRUPT, "at least one feature");
    o.label_col = 7;
    expect_text_fail(0, "1,2,3\n", &o, SMLT_EINVAL, "label column 7");
    o.label_col = 0;
    o.dim = 3;
    expect_text_fail(0, "1,2,3\n", &o, SMLT_ECORRUPT, "rows have 2 features, expected 3");
    o.dim = 0;
    /* a NUL byte inside a line */
    const char nul[] = "1,2,3\n0,4\0,5\n";
    const char *p = put("n.csv", nul, sizeof nul - 1, 0);
    char err[256];
    struct data_set *ds = NULL;
    ck_assert_int_eq(data_load_csv(p, NULL, &ds, err, sizeof err), SMLT_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "line 2: NUL byte"));
    /* a line longer than the limit is refused without reading it all into memory first */
    size_t n = DATA_LOAD_MAX_LINE + 10;
    char *huge = malloc(n);
    memset(huge, '1', n);
    p = put("huge.csv", huge, n, 0);
    free(huge);
    ck_assert_int_eq(data_load_csv(p, NULL, &ds, err, sizeof err), SMLT_ETOOBIG);
    ck_assert_ptr_nonnull(strstr(err, "line 1: longer than"));
    ck_assert_ptr_null(ds);
}
END_TEST

START_TEST(libsvm_valid)
{
    char err[256];
    struct data_set *ds = NULL;
    const char *p = put_text("a.svm", "1 1:0.5 3:2\n0 2:-1 # comment\n\n2\n");
    ck_assert_msg(data_load_libsvm(p, NULL, &ds, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(data_set_size(ds), 3);
    ck_assert_int_eq(data_set_dim(ds), 3); /* the largest index */
    ck_assert_int_eq(data_set_num_classes(ds), 3);
    const float want[9] = {0.5f, 0, 2, 0, -1, 0, 0, 0, 0};
    for (int i = 0; i < 9; i++)
        ck_assert_float_eq(data_set_x(ds)[i], want[i]);
    data_set_free(ds);
    /* densify to a given dimension; -1/+1 labels become 0/1; "1.0" labels are integers */
    struct data_load_opts o;
    data_load_opts_init(&o);
    o.dim = 6;
    p = put_text("b.svm", "+1 6:1\n-1 1:2\t2:3\n1.0 4:4\n");
    ck_assert_msg(data_load_libsvm(p, &o, &ds, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(data_set_dim(ds), 6);
    ck_assert_int_eq(data_set_num_classes(ds), 2);
    ck_assert_int_eq(data_set_y(ds)[0], 1);
    ck_assert_int_eq(data_set_y(ds)[1], 0);
    ck_assert_int_eq(data_set_y(ds)[2], 1);
    ck_assert_float_eq(data_set_x(ds)[5], 1.0f);
    ck_assert_float_eq(data_set_x(ds)[6 + 1], 3.0f);
    data_set_free(ds);
}
END_TEST

START_TEST(libsvm_hostile)
{
    struct data_load_opts o;
    data_load_opts_init(&o);
    expect_text_fail(1, "1 1:2\n0 3\n", NULL, SMLT_ECORRUPT, "line 2: bad token '3'");
    expect_text_fail(1, "1 1:2\n0 :3\n", NULL, SMLT_ECORRUPT, "line 2: bad token ':3'");
    expect_text_fail(1, "1 0:2\n", NULL, SMLT_ECORRUPT, "line 1: bad index in '0:2'");
    expect_text_fail(1, "1 -2:2\n", NULL, SMLT_ECORRUPT, "bad index in '-2:2'");
    expect_text_fail(1, "1 a:2\n", NULL, SMLT_ECORRUPT, "bad index in 'a:2'");
    expect_text_fail(1, "1 99999999999:2\n", NULL, SMLT_ECORRUPT, "bad index");
    expect_text_fail(1, "1 3:2 2:1\n", NULL, SMLT_ECORRUPT, "index 2 after 3");
    expect_text_fail(1, "1 2:2 2:1\n", NULL, SMLT_ECORRUPT, "indices must increase");
    expect_text_fail(1, "1 2:x\n", NULL, SMLT_ECORRUPT, "bad value in '2:x'");
    expect_text_fail(1, "1 2:\n", NULL, SMLT_ECORRUPT, "bad value");
    expect_text_fail(1, "1 2:inf\n", NULL, SMLT_ECORRUPT, "bad value");
    expect_text_fail(1, "cat 1:2\n", NULL, SMLT_ECORRUPT, "label 'cat'");
    expect_text_fail(1, "0.5 1:2\n", NULL, SMLT_ECORRUPT, "label '0.5'");
    expect_text_fail(1, "-1 1:2\n3 1:1\n", NULL, SMLT_ERANGE, "negative labels");
    o.dim = 4;
    expect_text_fail(1, "1 5:2\n", &o, SMLT_ECORRUPT, "bad index in '5:2' (expected 1..4)");
    o.dim = 0;
    o.num_classes = 2;
    expect_text_fail(1, "0 1:1\n2 1:2\n", &o, SMLT_ERANGE, "row 2: label 2 is out of range");
    o.num_classes = 0;
    expect_text_fail(1, "# only a comment\n", NULL, SMLT_ECORRUPT, "no rows");
    o.dim = -3;
    expect_text_fail(1, "1 1:1\n", &o, SMLT_EINVAL, "bad dimension");
}
END_TEST

/* Loads "csv:TRAIN,TEST" (two texts) through the worker with options d; returns its code. */
static int load_pair(const char *train_text, const char *test_text,
                     const struct worker_data_opts *d, struct data_set **train,
                     struct data_set **test, char *err, size_t errlen)
{
    char src[1200];
    const char *a = put_text("train.csv", train_text);
    if (test_text)
        snprintf(src, sizeof src, "csv:%s,%s", a, put_text("test.csv", test_text));
    else
        snprintf(src, sizeof src, "csv:%s", a);
    return worker_load_data(src, NULL, d, train, test, err, errlen);
}

START_TEST(options_label_column)
{
    /* The scikit-learn / UCI layout: features first, the label last. The first column is an
     * integer feature that is always 1, so read as the label it looks like one class. */
    const char *text = "1,5.1,3.5,0\n1,4.9,3.0,1\n1,6.2,2.9,2\n1,5.9,3.0,1\n";
    char err[512] = "";
    struct data_set *tr = NULL, *te = NULL;
    ck_assert_int_eq(load_pair(text, NULL, NULL, &tr, &te, err, sizeof err), SMLT_EINVAL);
    ck_assert_ptr_null(tr);
    ck_assert_msg(strstr(err, "every label (label_column 0 of columns 0..3) is 1") &&
                  strstr(err, "at least two classes"), "%s", err);
    struct worker_data_opts d = {0};
    ck_assert_int_eq(worker_data_opts_set(&d, "label_column", "last", err, sizeof err), 0);
    ck_assert_int_eq(d.label_col, -1);
    ck_assert_msg(load_pair(text, text, &d, &tr, &te, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(data_set_size(tr), 4);
    ck_assert_int_eq(data_set_dim(tr), 3);
    ck_assert_int_eq(data_set_num_classes(tr), 3);
    ck_assert_int_eq(data_set_y(tr)[2], 2);
    ck_assert_float_eq(data_set_x(tr)[3 * 2 + 1], 6.2f);
    ck_assert_ptr_nonnull(te);
    ck_assert_int_eq(data_set_size(te), 4);
    data_set_free(tr);
    data_set_free(te);
    /* an index: column 3 is the last one too; column 4 does not exist */
    ck_assert_int_eq(worker_data_opts_set(&d, "label_column", "3", err, sizeof err), 0);
    ck_assert_msg(load_pair(text, NULL, &d, &tr, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(data_set_y(tr)[1], 1);
    data_set_free(tr);
    d.label_col = 4;
    ck_assert_int_eq(load_pair(text, NULL, &d, &tr, NULL, err, sizeof err), SMLT_EINVAL);
    ck_assert_msg(strstr(err, "label column 4 out of range (rows have 4 fields)"), "%s", err);
    /* the one-class refusal names the column also when it is "last" */
    d.label_col = -1;
    ck_assert_int_eq(load_pair("0,1,7\n2,3,7\n", NULL, &d, &tr, NULL, err, sizeof err),
                     SMLT_EINVAL);
    ck_assert_msg(strstr(err, "every label (label_column 2 (\"last\") of columns 0..2) is 7"),
                  "%s", err);
    /* a test file may hold one class: only the training set must not */
    ck_assert_msg(load_pair("0,1,0\n2,3,1\n", "0,1,1\n", &d, &tr, &te, err, sizeof err) == 0,
                  "%s", err);
    data_set_free(tr);
    data_set_free(te);
    /* the option's spellings */
    const char *bad[] = {"-1", "x", "", "1.5", "2x", "first"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(worker_data_opts_set(&d, "label_column", bad[i], err, sizeof err),
                         SMLT_EINVAL);
        ck_assert_msg(strstr(err, "label_column: must be a column index >= 0 or \"last\""),
                      "%s", err);
    }
    ck_assert_int_eq(worker_data_opts_set(&d, "lable_column", "1", err, sizeof err),
                     SMLT_EINVAL);
    ck_assert_msg(strstr(err, "lable_column: unknown dataset option"), "%s", err);
}
END_TEST

START_TEST(options_header)
{
    char err[512] = "";
    struct data_set *tr = NULL;
    struct worker_data_opts d = {0};
    /* auto: a non-numeric first line is a header, a numeric one is a row */
    ck_assert_msg(load_pair("y,a,b\n0,1,2\n1,3,4\n", NULL, &d, &tr, NULL, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(data_set_size(tr), 2);
    data_set_free(tr);
    const char *numeric = "0,10,20\n0,1,2\n1,3,4\n";
    ck_assert_msg(load_pair(numeric, NULL, &d, &tr, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(data_set_size(tr), 3);
    data_set_free(tr);
    /* true: the first line is skipped even when it reads as numbers */
    ck_assert_int_eq(worker_data_opts_set(&d, "header", "true", err, sizeof err), 0);
    ck_assert_int_eq(d.header, DATA_LOAD_HEADER_YES);
    ck_assert_msg(load_pair(numeric, NULL, &d, &tr, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(data_set_size(tr), 2);
    ck_assert_float_eq(data_set_x(tr)[0], 1.0f);
    data_set_free(tr);
    /* false: every line is a row, so a header line is a bad row */
    ck_assert_int_eq(worker_data_opts_set(&d, "header", "false", err, sizeof err), 0);
    ck_assert_int_eq(d.header, DATA_LOAD_HEADER_NO);
    ck_assert_int_eq(load_pair("y,a,b\n0,1,2\n1,3,4\n", NULL, &d, &tr, NULL, err, sizeof err),
                     SMLT_ECORRUPT);
    ck_assert_msg(strstr(err, "line 1: column 1: label 'y'"), "%s", err);
    ck_assert_int_eq(worker_data_opts_set(&d, "header", "auto", err, sizeof err), 0);
    ck_assert_int_eq(d.header, DATA_LOAD_HEADER_AUTO);
    ck_assert_int_eq(worker_data_opts_set(&d, "header", "yes", err, sizeof err), SMLT_EINVAL);
    ck_assert_msg(strstr(err, "header: must be \"auto\", \"true\" or \"false\" (got \"yes\")"),
                  "%s", err);
    /* the loader refuses a value outside the enum */
    struct data_load_opts o;
    data_load_opts_init(&o);
    o.header = 7;
    expect_text_fail(0, "0,1\n", &o, SMLT_EINVAL, "bad header option 7");
}
END_TEST

START_TEST(options_scale)
{
    /* label first; feature 1 takes 0, 5, 10 (min 0, max 10; mean 5, std sqrt(50/3)), feature
     * 2 is constant 3 */
    const char *train = "0,0,3\n1,5,3\n0,10,3\n";
    const char *test = "1,20,4\n0,-10,3\n";
    char err[512] = "";
    struct data_set *tr = NULL, *te = NULL;
    struct worker_data_opts d = {0};
    ck_assert_int_eq(worker_data_opts_set(&d, "scale", "minmax", err, sizeof err), 0);
    ck_assert_int_eq(d.scaling, DATA_SET_SCALE_MINMAX);
    ck_assert_msg(load_pair(train, test, &d, &tr, &te, err, sizeof err) == 0, "%s", err);
    const float *x = data_set_x(tr), *t = data_set_x(te);
    ck_assert_float_eq_tol(x[0], 0.0f, 1e-6f);
    ck_assert_float_eq_tol(x[2], 0.5f, 1e-6f);
    ck_assert_float_eq_tol(x[4], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(x[1], 0.0f, 1e-6f); /* constant: x - min, factor 1 */
    /* the test set by the training set's min and max, not its own */
    ck_assert_float_eq_tol(t[0], 2.0f, 1e-6f);
    ck_assert_float_eq_tol(t[1], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(t[2], -1.0f, 1e-6f);
    data_set_free(tr);
    data_set_free(te);

    ck_assert_int_eq(worker_data_opts_set(&d, "scale", "standard", err, sizeof err), 0);
    ck_assert_int_eq(d.scaling, DATA_SET_SCALE_STANDARD);
    ck_assert_msg(load_pair(train, test, &d, &tr, &te, err, sizeof err) == 0, "%s", err);
    x = data_set_x(tr);
    t = data_set_x(te);
    const double sd = sqrt(50.0 / 3.0);
    ck_assert_float_eq_tol(x[0], (float)(-5.0 / sd), 1e-5f);
    ck_assert_float_eq_tol(x[2], 0.0f, 1e-6f);
    ck_assert_float_eq_tol(x[4], (float)(5.0 / sd), 1e-5f);
    ck_assert_float_eq_tol(x[1], 0.0f, 1e-6f);
    double mean = 0, var = 0;
    for (int i = 0; i < 3; i++)
        mean += x[2 * i] / 3.0;
    for (int i = 0; i < 3; i++)
        var += (x[2 * i] - mean) * (x[2 * i] - mean) / 3.0;
    ck_assert_double_eq_tol(mean, 0.0, 1e-6);
    ck_assert_double_eq_tol(var, 1.0, 1e-5);
    ck_assert_float_eq_tol(t[0], (float)(15.0 / sd), 1e-5f);
    ck_assert_float_eq_tol(t[1], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(t[2], (float)(-15.0 / sd), 1e-5f);
    data_set_free(tr);
    data_set_free(te);

    /* the test split alone (a warm worker's rank 0) is scaled by the training file's figures */
    ck_assert_msg(load_pair(train, test, &d, NULL, &te, err, sizeof err) == 0, "%s", err);
    ck_assert_float_eq_tol(data_set_x(te)[0], (float)(15.0 / sd), 1e-5f);
    data_set_free(te);

    /* none leaves the values alone */
    ck_assert_int_eq(worker_data_opts_set(&d, "scale", "none", err, sizeof err), 0);
    ck_assert_msg(load_pair(train, NULL, &d, &tr, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_float_eq(data_set_x(tr)[2], 5.0f);
    data_set_free(tr);
    ck_assert_int_eq(worker_data_opts_set(&d, "scale", "max", err, sizeof err), SMLT_EINVAL);
    ck_assert_msg(strstr(err, "scale: must be \"none\", \"minmax\" or \"standard\""), "%s",
                  err);

    /* a byte set (IDX pixels) becomes floats; a test set of another width is refused */
    uint8_t *x8 = malloc(4);
    int32_t *y = calloc(2, sizeof *y);
    x8[0] = 0;
    x8[1] = 255;
    x8[2] = 255;
    x8[3] = 255;
    struct data_set *b = data_set_wrap_u8(2, 2, 2, x8, 1.0f / 255, y);
    ck_assert_int_eq(data_set_scale(b, NULL, DATA_SET_SCALE_MINMAX), 0);
    ck_assert_float_eq_tol(data_set_x(b)[0], 0.0f, 1e-6f);
    ck_assert_float_eq_tol(data_set_x(b)[2], 1.0f, 1e-6f);
    float row[2];
    data_set_rows(b, 1, 1, row);
    ck_assert_float_eq_tol(row[0], 1.0f, 1e-6f);
    struct data_set *other = data_set_new(1, 3, 2);
    ck_assert_int_eq(data_set_scale(b, other, DATA_SET_SCALE_STANDARD), SMLT_EINVAL);
    ck_assert_int_eq(data_set_scale(b, NULL, 9), SMLT_EINVAL);
    data_set_free(other);
    data_set_free(b);
}
END_TEST

START_TEST(options_classes)
{
    char err[512] = "";
    struct data_load_opts o;
    data_load_opts_init(&o);
    /* the loader's refusals: a label past the classes, one class in a training set */
    o.num_classes = 2;
    expect_text_fail(0, "0,1\n1,2\n2,3\n", &o, SMLT_ERANGE, "row 3: label 2 is out of range "
                     "[0, 2): the labels (label_column 0 of columns 0..1) must lie in 0..1");
    o.num_classes = 0;
    o.train = 1;
    expect_text_fail(0, "4,1\n4,2\n", &o, SMLT_EINVAL, "every label (label_column 0 of "
                     "columns 0..1) is 4: a training set needs at least two classes");
    expect_text_fail(1, "1 1:2\n1 2:3\n", &o, SMLT_EINVAL, "every label (the first token of "
                     "each line) is 1");
    unsigned char img[16 + 3 * 4], lab[8 + 3];
    make_images(img, 3, 2, 2);
    make_labels(lab, 3, 1);
    expect_idx_fail(put("i1", img, sizeof img, 0), put("l1", lab, sizeof lab, 0), &o,
                    SMLT_EINVAL, "every label is 0: a training set needs at least two classes");

    /* the model's outputs must cover the labels: logreg:2-2 on labels 0..2 */
    struct data_set *tr = NULL;
    ck_assert_msg(load_pair("0,1,1\n1,2,2\n2,3,3\n", NULL, NULL, &tr, NULL, err,
                            sizeof err) == 0, "%s", err);
    struct nn_model *m = nn_model_new("logreg:2-2", 4, err, sizeof err);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(worker_check_fit(m, "logreg:2-2", tr, err, sizeof err), SMLT_EINVAL);
    ck_assert_msg(strstr(err, "model logreg:2-2 has 2 outputs (classes 0..1), but the dataset's "
                  "labels run up to 2: the model needs at least 3 outputs"), "%s", err);
    nn_model_free(m);
    m = nn_model_new("logreg:3-3", 4, err, sizeof err);
    ck_assert_int_eq(worker_check_fit(m, "logreg:3-3", tr, err, sizeof err), SMLT_EINVAL);
    ck_assert_msg(strstr(err, "model logreg:3-3 takes 3 features, the dataset's rows have 2"),
                  "%s", err);
    nn_model_free(m);
    m = nn_model_new("mlp:2-4-3", 4, err, sizeof err);
    ck_assert_int_eq(worker_check_fit(m, "mlp:2-4-3", tr, err, sizeof err), 0);
    nn_model_free(m);
    data_set_free(tr);
}
END_TEST

static Suite *data_load_suite(void)
{
    Suite *s = suite_create("data_load");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, fmnist_real);
    tcase_add_test(tc, idx_valid_plain_and_gz);
    tcase_add_test(tc, idx_hostile);
    tcase_add_test(tc, csv_valid);
    tcase_add_test(tc, csv_hostile);
    tcase_add_test(tc, libsvm_valid);
    tcase_add_test(tc, libsvm_hostile);
    tcase_add_test(tc, options_label_column);
    tcase_add_test(tc, options_header);
    tcase_add_test(tc, options_scale);
    tcase_add_test(tc, options_classes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(data_load_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
