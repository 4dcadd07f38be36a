/* test_smlt_model.c: Check suite for worker/smlt_model.c, the model file format of libsmlt.
 *
 * Round trips are compared bit for bit (NaN payloads, -0, infinities, denormals included).
 * Corruption: every single-byte change anywhere in a small file, and sampled ones in a 20 MB
 * file, must be refused; so must every truncation. Hostile files are built from a valid one
 * with one field changed and every CRC recomputed, so that it is the limit or the consistency
 * check that refuses them, not a checksum. A count that would make a reader allocate gigabytes
 * must give SMLT_ETOOBIG or SMLT_ECORRUPT, never SMLT_ENOMEM: the check comes before any
 * allocation. smlt_model_save() runs against two real smlt-ps shards (bin/smlt-ps next to
 * this test's directory; the test fails when it is missing), started on port 0 and stopped by
 * pid. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "smlt.h"
#include "smlt_admin.h"
#include "smlt_limits.h"
#include "smlt_proc.h"

static char tmpdir[256];
static char path[512];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_smlt_model.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(path, sizeof path, "%s/model.smlt", tmpdir);
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- helpers -------------------------------------------------------------------------------- */

static const uint64_t shp_w[] = {3, 4};
static const uint64_t shp_b[] = {4};
static const uint64_t shp_s[] = {1};
static const struct smlt_tensor_def defs3[] = {
    {"w", 2, shp_w, 0, 0}, {"b", 1, shp_b, 0, 0}, {"scale", 1, shp_s, 0, 0}};
#define N3 17u

static unsigned char *slurp(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spit(const char *p, const void *buf, size_t len)
{
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    if (len)
        ck_assert_int_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void wr64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Recomputes the index, header and whole-file CRCs of a file image (after a field changed). */
static void fix_crcs(unsigned char *buf, size_t len)
{
    uint64_t index_len = rd64(buf + 40);
    if (64 + index_len <= len)
        wr32(buf + 56, (uint32_t)crc32(0, buf + 64, (uInt)index_len));
    wr32(buf + 60, (uint32_t)crc32(0, buf, 60));
    wr32(buf + len - 4, (uint32_t)crc32(0, buf, (uInt)(len - 4)));
}

/* Reads path and asserts it is refused with code (0: any error) and a message. */
static void read_fails(int code, const char *what)
{
    char err[256] = "";
    struct smlt_model *m = (struct smlt_model *)&err; /* must be reset to NULL */
    int rc = smlt_model_read(path, &m, err, sizeof err);
    ck_assert_msg(rc < 0, "%s: accepted", what);
    if (code)
        ck_assert_msg(rc == code, "%s: rc %s, want %s (%s)", what, smlt_errname(rc),
                      smlt_errname(code), err);
    ck_assert_ptr_null(m);
    ck_assert_msg(err[0] != 0, "%s: no message", what);
}

/* Values with every kind of float, so that "bit-exact" means something. */
static void fill_values(float *v, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        uint32_t bits = x;
        memcpy(&v[i], &bits, 4);
    }
    if (n >= 8) {
        v[0] = -0.0f;
        v[1] = INFINITY;
        v[2] = -INFINITY;
        uint32_t nan_payload = 0x7fc12345u, denorm = 0x00000001u;
        memcpy(&v[3], &nan_payload, 4);
        memcpy(&v[4], &denorm, 4);
        v[5] = 1.0f;
    }
}

static void write_small(float *vals)
{
    char err[256] = "";
    fill_values(vals, N3, 1);
    ck_assert_msg(smlt_model_write(path, defs3, 3, vals, N3, "job-x", 1234, err, sizeof err) == 0,
                  "%s", err);
}

/* ---- round trips ---------------------------------------------------------------------------- */

START_TEST(round_trip_small)
{
    float vals[N3];
    write_small(vals);
    char err[256] = "";
    struct smlt_model *m = NULL;
    ck_assert_msg(smlt_model_read(path, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(smlt_model_num_tensors(m), 3);
    ck_assert_uint_eq(smlt_model_num_params(m), N3);
    ck_assert_str_eq(smlt_model_job(m), "job-x");
    ck_assert_uint_eq(smlt_model_step(m), 1234);
    ck_assert_int_eq(memcmp(smlt_model_values(m), vals, sizeof vals), 0);
    uint64_t off = 0;
    for (uint32_t i = 0; i < 3; i++) {
        struct smlt_tensor_info ti;
        ck_assert_int_eq(smlt_model_tensor(m, i, &ti), 0);
        ck_assert_str_eq(ti.name, defs3[i].name);
        ck_assert_uint_eq(ti.ndims, defs3[i].ndims);
        uint64_t len = 1;
        for (uint32_t d = 0; d < ti.ndims; d++) {
            ck_assert_uint_eq(ti.shape[d], defs3[i].shape[d]);
            len *= ti.shape[d];
        }
        ck_assert_uint_eq(ti.offset, off);
        ck_assert_uint_eq(ti.length, len);
        off += len;
        ck_assert_int_eq(smlt_model_find(m, defs3[i].name), (int)i);
    }
    struct smlt_tensor_info ti;
    ck_assert_int_eq(smlt_model_tensor(m, 3, &ti), SMLT_ERANGE);
    ck_assert_int_eq(smlt_model_find(m, "nope"), -1);
    ck_assert_int_eq(smlt_model_find(m, NULL), -1);
    smlt_model_free(m);
    smlt_model_free(NULL);

    /* The layout documented in smlt.h. */
    size_t len;
    unsigned char *buf = slurp(path, &len);
    uint64_t index_len = 5 + (4 + 1 + 4 + 16 + 8) + (4 + 1 + 4 + 8 + 8) + (4 + 5 + 4 + 8 + 8);
    uint64_t data_off = (64 + index_len + 63) / 64 * 64;
    ck_assert_uint_eq(len, data_off + N3 * 4 + 4);
    ck_assert_int_eq(memcmp(buf, "SMLTMODL", 8), 0);
    ck_assert_uint_eq(rd32(buf + 8), 1);
    ck_assert_uint_eq(rd32(buf + 12), 0);
    ck_assert_uint_eq(rd32(buf + 16), 3);
    ck_assert_uint_eq(rd32(buf + 20), 5);
    ck_assert_uint_eq(rd64(buf + 24), N3);
    ck_assert_uint_eq(rd64(buf + 32), 1234);
    ck_assert_uint_eq(rd64(buf + 40), index_len);
    ck_assert_uint_eq(rd64(buf + 48), data_off);
    ck_assert_uint_eq(rd32(buf + 60), (uint32_t)crc32(0, buf, 60));
    ck_assert_uint_eq(rd32(buf + 56), (uint32_t)crc32(0, buf + 64, (uInt)index_len));
    ck_assert_int_eq(memcmp(buf + 64, "job-x", 5), 0);
    ck_assert_uint_eq(rd32(buf + len - 4), (uint32_t)crc32(0, buf, (uInt)(len - 4)));
    uint32_t first;
    memcpy(&first, vals, 4);
    ck_assert_uint_eq(rd32(buf + data_off), first); /* little-endian float32 */
    free(buf);

    /* No temporary file is left behind, and a rewrite replaces the file. */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    fill_values(vals, N3, 2);
    ck_assert_int_eq(smlt_model_write(path, defs3, 3, vals, N3, NULL, 0, err, sizeof err), 0);
    ck_assert_int_eq(smlt_model_read(path, &m, err, sizeof err), 0);
    ck_assert_str_eq(smlt_model_job(m), "");
    ck_assert_uint_eq(smlt_model_step(m), 0);
    ck_assert_int_eq(memcmp(smlt_model_values(m), vals, sizeof vals), 0);
    smlt_model_free(m);
}
END_TEST

START_TEST(round_trip_large)
{
    /* 5 M floats: more than one 16 MiB I/O piece. Many tensors with long names and 8 dims. */
    const uint32_t nt = 1000;
    struct smlt_tensor_def *defs = calloc(nt, sizeof *defs);
    char(*names)[SMLT_MAX_NAME + 1] = calloc(nt, sizeof *names);
    uint64_t(*shapes)[SMLT_MAX_DIMS] = calloc(nt, sizeof *shapes);
    uint64_t total = 0;
    for (uint32_t i = 0; i < nt; i++) {
        memset(names[i], 'a' + i % 26, SMLT_MAX_NAME);
        snprintf(names[i], SMLT_MAX_NAME + 1, "layer%u.", i);
        names[i][strlen(names[i])] = 'x'; /* keep the name SMLT_MAX_NAME bytes long */
        names[i][SMLT_MAX_NAME] = 0;
        defs[i].name = names[i];
        if (i == 0) {
            defs[i].ndims = SMLT_MAX_DIMS;
            for (uint32_t d = 0; d < SMLT_MAX_DIMS; d++)
                shapes[i][d] = d < 2 ? 3 : 1;
        } else {
            defs[i].ndims = 2;
            shapes[i][0] = 5000;
            shapes[i][1] = 1 + i % 2;
        }
        defs[i].shape = shapes[i];
        uint64_t len = 1;
        for (uint32_t d = 0; d < defs[i].ndims; d++)
            len *= shapes[i][d];
        total += len;
    }
    float *vals = malloc(total * sizeof *vals);
    fill_values(vals, total, 3);
    char err[256] = "";
    char job[SMLT_MAX_NAME + 1];
    memset(job, 'j', SMLT_MAX_NAME);
    job[SMLT_MAX_NAME] = 0;
    ck_assert_msg(smlt_model_write(path, defs, nt, vals, total, job, UINT64_MAX, err,
                                   sizeof err) == 0, "%s", err);
    struct smlt_model *m = NULL;
    ck_assert_msg(smlt_model_read(path, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(smlt_model_num_params(m), total);
    ck_assert_uint_eq(smlt_model_step(m), UINT64_MAX);
    ck_assert_str_eq(smlt_model_job(m), job);
    ck_assert_int_eq(memcmp(smlt_model_values(m), vals, total * sizeof *vals), 0);
    struct smlt_tensor_info ti;
    ck_assert_int_eq(smlt_model_tensor(m, 0, &ti), 0);
    ck_assert_uint_eq(ti.ndims, SMLT_MAX_DIMS);
    ck_assert_uint_eq(ti.length, 9);
    ck_assert_int_eq(smlt_model_find(m, names[nt - 1]), (int)nt - 1);
    smlt_model_free(m);

    /* A few single-byte flips in the data and a few truncations are refused too. */
    size_t len;
    unsigned char *buf = slurp(path, &len);
    size_t offs[] = {64, rd64(buf + 48), rd64(buf + 48) + 1, len / 2, len - 5, len - 1};
    for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++) {
        buf[offs[k]] ^= 0x10;
        spit(path, buf, len);
        read_fails(SMLT_ECORRUPT, "flip in a large file");
        buf[offs[k]] ^= 0x10;
    }
    size_t cuts[] = {len - 1, len - 4, len / 2, 100000};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        spit(path, buf, cuts[k]);
        read_fails(SMLT_ECORRUPT, "truncated large file");
    }
    free(buf);
    free(vals);
    free(defs);
    free(names);
    free(shapes);
}
END_TEST

/* ---- corruption ----------------------------------------------------------------------------- */

START_TEST(every_byte_flip_detected)
{
    float vals[N3];
    write_small(vals);
    size_t len;
    unsigned char *buf = slurp(path, &len);
    static const unsigned char masks[] = {0x01, 0x80, 0xff, 0x5a};
    char what[64];
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof masks; k++) {
            buf[i] ^= masks[k];
            spit(path, buf, len);
            snprintf(what, sizeof what, "byte %zu ^ 0x%02x", i, masks[k]);
            read_fails(0, what);
            buf[i] ^= masks[k];
        }
    }
    /* The header CRC speaks first: a flipped count is reported as a corrupt header. */
    char err[256];
    struct smlt_model *m;
    buf[16] ^= 0x40;
    spit(path, buf, len);
    ck_assert_int_eq(smlt_model_read(path, &m, err, sizeof err), SMLT_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "header (CRC mismatch)"));
    buf[16] ^= 0x40;
    buf[len - 10] ^= 0x01;
    spit(path, buf, len);
    ck_assert_int_eq(smlt_model_read(path, &m, err, sizeof err), SMLT_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "data (CRC mismatch)"));
    buf[len - 10] ^= 0x01;
    buf[70] ^= 0x01;
    spit(path, buf, len);
    ck_assert_int_eq(smlt_model_read(path, &m, err, sizeof err), SMLT_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "tensor index (CRC mismatch)"));
    free(buf);
}
END_TEST

START_TEST(every_truncation_refused)
{
    float vals[N3];
    write_small(vals);
    size_t len;
    unsigned char *buf = slurp(path, &len);
    char what[64];
    for (size_t cut = 0; cut < len; cut++) {
        spit(path, buf, cut);
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", cut, len);
        /* Shorter than the magic: not a model file; else corrupt. */
        read_fails(cut < 8 ? SMLT_EPROTO : SMLT_ECORRUPT, what);
    }
    /* Trailing bytes are refused as well. */
    unsigned char *longer = malloc(len + 64);
    memcpy(longer, buf, len);
    memset(longer + len, 0, 64);
    spit(path, longer, len + 1);
    read_fails(SMLT_ECORRUPT, "one trailing byte");
    spit(path, longer, len + 64);
    read_fails(SMLT_ECORRUPT, "64 trailing bytes");
    free(longer);
    free(buf);
}
END_TEST

/* A valid small file, one field changed by fn, every CRC recomputed, must be refused. */
static void hostile(void (*fn)(unsigned char *buf, size_t len), int code, const char *what)
{
    float vals[N3];
    write_small(vals);
    size_t len;
    unsigned char *buf = slurp(path, &len);
    fn(buf, len);
    fix_crcs(buf, len);
    spit(path, buf, len);
    read_fails(code, what);
    free(buf);
}

/* Offsets in the small file's index (after the 5-byte job name "job-x"). */
#define T0 (64 + 5)          /* tensor "w": name length */
#define T0_NDIMS (T0 + 4 + 1)
#define T0_SHAPE (T0_NDIMS + 4)
#define T0_OFFSET (T0_SHAPE + 16)
#define T1 (T0_OFFSET + 8)   /* tensor "b" */
#define T1_OFFSET (T1 + 4 + 1 + 4 + 8)

static void h_tensors_2_31(unsigned char *b, size_t l) { (void)l; wr32(b + 16, 1u << 31); }
static void h_tensors_max1(unsigned char *b, size_t l) { (void)l; wr32(b + 16, SMLT_MAX_TENSORS + 1); }
static void h_tensors_0(unsigned char *b, size_t l) { (void)l; wr32(b + 16, 0); }
static void h_tensors_4(unsigned char *b, size_t l) { (void)l; wr32(b + 16, 4); }
static void h_job_1e9(unsigned char *b, size_t l) { (void)l; wr32(b + 20, 1000000000u); }
static void h_elems_2_60(unsigned char *b, size_t l) { (void)l; wr64(b + 24, (uint64_t)1 << 60); }
static void h_elems_max(unsigned char *b, size_t l) { (void)l; wr64(b + 24, SMLT_MAX_MODEL_ELEMS); }
static void h_elems_0(unsigned char *b, size_t l) { (void)l; wr64(b + 24, 0); }
static void h_index_huge(unsigned char *b, size_t l) { (void)l; wr64(b + 40, (uint64_t)1 << 62); }
static void h_data_off(unsigned char *b, size_t l) { (void)l; wr64(b + 48, rd64(b + 48) + 64); }
static void h_version(unsigned char *b, size_t l) { (void)l; wr32(b + 8, 2); }
static void h_flags(unsigned char *b, size_t l) { (void)l; wr32(b + 12, 1); }
static void h_name_1e9(unsigned char *b, size_t l) { (void)l; wr32(b + T0, 1000000000u); }
static void h_name_0(unsigned char *b, size_t l) { (void)l; wr32(b + T0, 0); }
static void h_name_long(unsigned char *b, size_t l) { (void)l; wr32(b + T0, 30); }
static void h_ndims_100(unsigned char *b, size_t l) { (void)l; wr32(b + T0_NDIMS, 100); }
static void h_ndims_0(unsigned char *b, size_t l) { (void)l; wr32(b + T0_NDIMS, 0); }
static void h_ndims_3(unsigned char *b, size_t l) { (void)l; wr32(b + T0_NDIMS, 3); }
static void h_dim_0(unsigned char *b, size_t l) { (void)l; wr64(b + T0_SHAPE, 0); }
static void h_dim_huge(unsigned char *b, size_t l) { (void)l; wr64(b + T0_SHAPE, (uint64_t)1 << 40); }
static void h_dim_wrap(unsigned char *b, size_t l)
{
    /* 2^32 x 2^32 wraps to 0 in 64 bits. */
    (void)l;
    wr64(b + T0_SHAPE, (uint64_t)1 << 32);
    wr64(b + T0_SHAPE + 8, (uint64_t)1 << 32);
}
static void h_dim_short(unsigned char *b, size_t l) { (void)l; wr64(b + T0_SHAPE, 2); }
static void h_offset(unsigned char *b, size_t l) { (void)l; wr64(b + T0_OFFSET, 1); }
static void h_offset1(unsigned char *b, size_t l) { (void)l; wr64(b + T1_OFFSET, 11); }
static void h_dup_name(unsigned char *b, size_t l) { (void)l; b[T1 + 4] = 'w'; }
static void h_nul_name(unsigned char *b, size_t l) { (void)l; b[T0 + 4] = 0; }
static void h_nul_job(unsigned char *b, size_t l) { (void)l; b[64 + 2] = 0; }
static void h_padding(unsigned char *b, size_t l) { (void)l; b[rd64(b + 48) - 1] = 1; }
static void h_magic(unsigned char *b, size_t l) { (void)l; b[7] = 'X'; }

START_TEST(hostile_counts_refused)
{
    hostile(h_tensors_2_31, SMLT_ETOOBIG, "tensor count 2^31");
    hostile(h_tensors_max1, SMLT_ETOOBIG, "tensor count SMLT_MAX_TENSORS + 1");
    hostile(h_job_1e9, SMLT_ETOOBIG, "job name length 10^9");
    hostile(h_elems_2_60, SMLT_ETOOBIG, "total elements 2^60");
    hostile(h_name_1e9, SMLT_ETOOBIG, "name length 10^9");
    hostile(h_ndims_100, SMLT_ETOOBIG, "ndims 100");
    /* Within the limits but not what the file holds: refused before the 256 GiB malloc. */
    hostile(h_elems_max, SMLT_ECORRUPT, "total elements 2^36 in a small file");
    hostile(h_index_huge, SMLT_ECORRUPT, "index length 2^62");
    hostile(h_tensors_0, SMLT_ECORRUPT, "no tensors");
    hostile(h_tensors_4, SMLT_ECORRUPT, "one tensor more than the index holds");
    hostile(h_elems_0, SMLT_ECORRUPT, "zero elements");
    hostile(h_data_off, SMLT_ECORRUPT, "data offset off by 64");
    hostile(h_version, SMLT_EVERSION, "format version 2");
    hostile(h_flags, SMLT_EVERSION, "unknown flag");
    hostile(h_name_0, SMLT_ECORRUPT, "empty tensor name");
    hostile(h_name_long, SMLT_ECORRUPT, "name running past the index");
    hostile(h_ndims_0, SMLT_ECORRUPT, "ndims 0");
    hostile(h_ndims_3, SMLT_ECORRUPT, "ndims one more than written");
    hostile(h_dim_0, SMLT_ECORRUPT, "a zero dimension");
    hostile(h_dim_huge, SMLT_ECORRUPT, "a dimension of 2^40");
    hostile(h_dim_wrap, SMLT_ECORRUPT, "dimensions whose product wraps");
    hostile(h_dim_short, SMLT_ECORRUPT, "tensors not covering the values");
    hostile(h_offset, SMLT_ECORRUPT, "first offset not 0");
    hostile(h_offset1, SMLT_ECORRUPT, "offset not back to back");
    hostile(h_dup_name, SMLT_ECORRUPT, "two tensors with one name");
    hostile(h_nul_name, SMLT_ECORRUPT, "NUL in a tensor name");
    hostile(h_nul_job, SMLT_ECORRUPT, "NUL in the job name");
    hostile(h_padding, SMLT_ECORRUPT, "nonzero padding");
    hostile(h_magic, SMLT_EPROTO, "wrong magic");
}
END_TEST

START_TEST(not_a_model_file)
{
    char err[256];
    struct smlt_model *m;
    spit(path, "hello world, this is not a model file at all; it is text.\n", 59);
    read_fails(SMLT_EPROTO, "a text file");
    ck_assert_int_eq(smlt_model_read(path, &m, err, sizeof err), SMLT_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "not an SMLT model file"));
    spit(path, "", 0);
    read_fails(SMLT_EPROTO, "an empty file");
    spit(path, "SMLTMOD", 7);
    read_fails(SMLT_EPROTO, "7 bytes of magic");
    spit(path, "SMLTMODL", 8);
    read_fails(SMLT_ECORRUPT, "only the magic");
    unsigned char zeros[4096] = {0};
    spit(path, zeros, sizeof zeros);
    read_fails(SMLT_EPROTO, "zeros");
    ck_assert_int_eq(smlt_model_read(tmpdir, &m, err, sizeof err), SMLT_EPROTO);
    snprintf(path, sizeof path, "%s/nope", tmpdir);
    ck_assert_int_eq(smlt_model_read(path, &m, err, sizeof err), SMLT_ENOTFOUND);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(smlt_model_read(NULL, &m, err, sizeof err), SMLT_EINVAL);
    ck_assert_int_eq(smlt_model_read(path, NULL, NULL, 0), SMLT_EINVAL);
}
END_TEST

START_TEST(write_refusals)
{
    float vals[N3] = {0};
    char err[256];
    const uint64_t zero_dim[] = {0}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    char longname[SMLT_MAX_NAME + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    struct smlt_tensor_def t[3];

#define REFUSE(ts, nt, n, job)                                                                      \
    do {                                                                                            \
        err[0] = 0;                                                                                 \
        ck_assert_int_eq(smlt_model_write(path, ts, nt, vals, n, job, 0, err, sizeof err),         \
                         SMLT_EINVAL);                                                              \
        ck_assert(err[0] != 0);                                                                     \
        ck_assert_int_ne(access(path, F_OK), 0);                                                    \
    } while (0)

    REFUSE(defs3, 0, 0, "j");             /* no tensors */
    REFUSE(defs3, 3, N3 - 1, "j");        /* values do not match */
    REFUSE(defs3, 3, N3 + 1, "j");
    REFUSE(defs3, 3, N3, longname);       /* job name too long */
    memcpy(t, defs3, sizeof t);
    t[1].name = "w";
    REFUSE(t, 3, N3, "j");                /* duplicate name */
    ck_assert_ptr_nonnull(strstr(err, "two tensors are called 'w'"));
    memcpy(t, defs3, sizeof t);
    t[1].name = "";
    REFUSE(t, 3, N3, "j");
    t[1].name = NULL;
    REFUSE(t, 3, N3, "j");
    t[1].name = longname;
    REFUSE(t, 3, N3, "j");
    memcpy(t, defs3, sizeof t);
    t[2].ndims = 0;
    REFUSE(t, 3, N3, "j");
    t[2].ndims = 9;
    t[2].shape = nine;
    REFUSE(t, 3, N3, "j");
    t[2].ndims = 1;
    t[2].shape = zero_dim;
    REFUSE(t, 3, N3 - 1, "j");
    t[2].shape = NULL;
    REFUSE(t, 3, N3, "j");
    ck_assert_int_eq(smlt_model_write(path, defs3, 3, NULL, N3, "j", 0, err, sizeof err),
                     SMLT_EINVAL);
    ck_assert_int_eq(smlt_model_write(NULL, defs3, 3, vals, N3, "j", 0, err, sizeof err),
                     SMLT_EINVAL);
    ck_assert_int_eq(smlt_model_write(path, NULL, 3, vals, N3, "j", 0, NULL, 0), SMLT_EINVAL);
    /* A directory that does not exist: a system error, nothing left behind. */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/m.smlt", tmpdir);
    ck_assert_int_eq(smlt_model_write(bad, defs3, 3, vals, N3, "j", 0, err, sizeof err),
                     SMLT_ESYS);
    ck_assert_ptr_nonnull(strstr(err, "m.smlt.tmp"));
}
END_TEST

/* ---- saving through a client against real shards -------------------------------------------- */

struct shard {
    pid_t pid;
    int port;
};

static int start_shard(struct shard *s, const char *ps_bin, int id)
{
    char port_file[400], log_file[400], shard_arg[16];
    snprintf(port_file, sizeof port_file, "%s/port%d", tmpdir, id);
    snprintf(log_file, sizeof log_file, "%s/log%d", tmpdir, id);
    snprintf(shard_arg, sizeof shard_arg, "%d", id);
    const char *argv[] = {ps_bin, "--listen", "127.0.0.1:0", "--port-file", port_file,
                          "--shard", shard_arg, "--token", "tok", "--log-level", "warn", NULL};
    struct smlt_proc_opts o = {.log_path = log_file, .watchdog_s = 120, .die_with_parent = 1};
    s->pid = smlt_proc_spawn(argv, &o);
    if (s->pid <= 0)
        return -1;
    s->port = smlt_proc_wait_port(s->pid, port_file, 10000);
    return s->port > 0 ? 0 : -1;
}

START_TEST(save_through_client)
{
    char ps_bin[1024];
    snprintf(ps_bin, sizeof ps_bin, "%s/../bin/smlt-ps", smlt_proc_self_dir());
    /* Not a skip: a suite that passes without running its test could hide a broken save. */
    if (access(ps_bin, X_OK) != 0)
        ck_abort_msg("save_through_client: %s is missing: build smlt-ps (cmake --build build) "
                     "before this suite", ps_bin);
    struct shard sh[2] = {{0, 0}, {0, 0}};
    ck_assert_int_eq(start_shard(&sh[0], ps_bin, 0), 0);
    ck_assert_int_eq(start_shard(&sh[1], ps_bin, 1), 0);
    char addrs[128];
    snprintf(addrs, sizeof addrs, "127.0.0.1:%d,127.0.0.1:%d", sh[0].port, sh[1].port);

    /* A model big enough that both shards hold part of it, a boundary inside a tensor. */
    static const uint64_t s_w1[] = {100, 50}, s_b1[] = {50}, s_w2[] = {50, 10}, s_b2[] = {10};
    const struct smlt_tensor_def defs[] = {
        {"fc1.weight", 2, s_w1, SMLT_INIT_UNIFORM, 0.1f},
        {"fc1.bias", 1, s_b1, SMLT_INIT_ZERO, 0.0f},
        {"fc2.weight", 2, s_w2, SMLT_INIT_NORMAL, 0.05f},
        {"fc2.bias", 1, s_b2, SMLT_INIT_CONST, 0.5f}};
    struct smlt_client_opts opts = {.token = "tok", .admin = 1, .timeout_ms = 10000};
    struct smlt_job_conf conf;
    smlt_job_conf_default(&conf);
    conf.job = "save-test";
    conf.sync = SMLT_SYNC_BSP;
    conf.workers = 1;
    conf.optim = SMLT_OPT_SGD;
    conf.lr = 0.5f;
    conf.seed = 7;
    char err[256] = "";
    struct smlt_client *c = NULL;
    int rc = smlt_job_setup(&c, addrs, &opts, defs, 4, &conf, err, sizeof err);
    ck_assert_msg(rc == 0, "setup: %s", err);
    uint64_t n = smlt_client_num_params(c);
    ck_assert_uint_eq(n, 5000 + 50 + 500 + 10);
    ck_assert_uint_eq(smlt_client_num_shards(c), 2);

    /* Move the model away from its initial values, then save it. */
    float *grad = malloc(n * sizeof *grad), *want = malloc(n * sizeof *want);
    for (uint64_t i = 0; i < n; i++)
        grad[i] = (float)(i % 7) - 3.0f;
    ck_assert_int_eq(smlt_push(c, 0, grad), 0);
    ck_assert_int_eq(smlt_pull(c, 1, 10000, want, NULL), 0);
    rc = smlt_model_save(c, path, 1, err, sizeof err);
    ck_assert_msg(rc == 0, "save: %s", err);

    struct smlt_model *m = NULL;
    ck_assert_msg(smlt_model_read(path, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(smlt_model_num_params(m), n);
    ck_assert_uint_eq(smlt_model_step(m), 1);
    ck_assert_str_eq(smlt_model_job(m), "");
    ck_assert_int_eq(memcmp(smlt_model_values(m), want, n * sizeof *want), 0);
    ck_assert_uint_eq(smlt_model_num_tensors(m), 4);
    for (uint32_t i = 0; i < 4; i++) {
        struct smlt_tensor_info a, b;
        ck_assert_int_eq(smlt_model_tensor(m, i, &a), 0);
        ck_assert_int_eq(smlt_client_tensor(c, i, &b), 0);
        ck_assert_str_eq(a.name, defs[i].name);
        ck_assert_uint_eq(a.ndims, b.ndims);
        ck_assert_int_eq(memcmp(a.shape, b.shape, sizeof a.shape), 0);
        ck_assert_uint_eq(a.offset, b.offset);
        ck_assert_uint_eq(a.length, b.length);
    }
    /* fc2.bias was initialised to the constant 0.5 and moved by -lr * grad. */
    struct smlt_tensor_info b2;
    smlt_model_tensor(m, (uint32_t)smlt_model_find(m, "fc2.bias"), &b2);
    for (uint64_t i = b2.offset; i < b2.offset + b2.length; i++)
        ck_assert(smlt_model_values(m)[i] == 0.5f - 0.5f * grad[i]);
    smlt_model_free(m);

    smlt_client_close(c);
    free(grad);
    free(want);
    for (int i = 0; i < 2; i++)
        smlt_proc_stop(sh[i].pid, 5000);
}
END_TEST

static Suite *smlt_model_suite(void)
{
    Suite *s = suite_create("smlt_model");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, round_trip_small);
    tcase_add_test(tc, round_trip_large);
    tcase_add_test(tc, every_byte_flip_detected);
    tcase_add_test(tc, every_truncation_refused);
    tcase_add_test(tc, hostile_counts_refused);
    tcase_add_test(tc, not_a_model_file);
    tcase_add_test(tc, write_refusals);
    tcase_add_test(tc, save_through_client);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(smlt_model_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
