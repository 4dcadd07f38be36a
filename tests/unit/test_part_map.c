/* test_part_map.c: Check suite for proto/part_map.c (partition map build, split, protobuf round trip,
 * validation of hostile maps, shard lookup, split-independent initial values, reshard).
 *
 * Hostile maps are built by hand as protobuf-c structs (a valid map encoded with part_map_to_pb,
 * then one field broken at a time), so each limit and each tiling rule is exercised alone. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "part_map.h"
#include "smlt_error.h"
#include "smlt_limits.h"

/* A check for hot loops: Check's ck_assert_* record a checkpoint per call (a pipe write each),
 * which makes element-wise asserts over large arrays slow; this one costs nothing on success. */
#define REQUIRE(expr, ...)                                                                         \
    do {                                                                                           \
        if (!(expr))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

/* ---- helpers -------------------------------------------------------------------------------- */

static const uint64_t shp_w1[] = {30, 20};    /* 600 */
static const uint64_t shp_b1[] = {20};        /* 20 */
static const uint64_t shp_w2[] = {5, 4, 3};   /* 60 */
static const uint64_t shp_c[] = {7};          /* 7 */

/* Four tensors, one per init kind, 687 elements: total is not a multiple of the alignment. */
static const struct part_map_spec specs4[] = {
    {"layer1.weight", 2, shp_w1, SMLT__INIT_KIND__INIT_UNIFORM, 0.25f},
    {"layer1.bias", 1, shp_b1, SMLT__INIT_KIND__INIT_ZERO, 0.0f},
    {"layer2.weight", 3, shp_w2, SMLT__INIT_KIND__INIT_NORMAL, 0.5f},
    {"scale", 1, shp_c, SMLT__INIT_KIND__INIT_CONST, 1.5f},
};
#define TOTAL4 687u

static struct part_map *build4(uint32_t nshards, uint64_t version, uint64_t seed)
{
    char err[256] = "";
    struct part_map *m = part_map_build(specs4, 4, nshards, NULL, version, seed, "job-x", err,
                                    sizeof err);
    ck_assert_msg(m != NULL, "build: %s", err);
    return m;
}

/* Asserts part_map_build() refuses and says why. */
static void build_fails(const struct part_map_spec *t, uint32_t nt, uint32_t ns)
{
    char err[256] = "";
    struct part_map *m = part_map_build(t, nt, ns, NULL, 1, 1, "j", err, sizeof err);
    ck_assert_msg(m == NULL, "build of a bad map succeeded");
    ck_assert_msg(err[0] != 0, "no error message");
}

/* Checks the invariants every valid map has. */
static void check_invariants(const struct part_map *m)
{
    uint64_t off = 0;
    for (uint32_t i = 0; i < m->ntensors; i++) {
        const struct part_map_tensor *t = &m->tensors[i];
        ck_assert_uint_eq(t->offset, off);
        uint64_t len = 1;
        for (uint32_t d = 0; d < t->ndims; d++)
            len *= t->shape[d];
        ck_assert_uint_eq(t->length, len);
        off += len;
    }
    ck_assert_uint_eq(off, m->total);
    uint64_t prev = 0;
    for (uint32_t i = 0; i < m->nshards; i++) {
        ck_assert_uint_eq(m->shards[i].id, i);
        ck_assert_uint_eq(m->shards[i].lo, prev);
        ck_assert_uint_ge(m->shards[i].hi, m->shards[i].lo);
        ck_assert_ptr_nonnull(m->shards[i].addr);
        prev = m->shards[i].hi;
    }
    ck_assert_uint_eq(prev, m->total);
}

/* ---- split ------------------------------------------------------------------------------------ */

static void check_split(uint64_t total, uint32_t n)
{
    uint64_t *lo = malloc(n * sizeof *lo), *hi = malloc(n * sizeof *hi);
    part_map_split(total, n, lo, hi);
    uint64_t prev = 0, mn = UINT64_MAX, mx = 0;
    for (uint32_t i = 0; i < n; i++) {
        REQUIRE(lo[i] == prev, "T=%llu n=%u: shard %u starts at %llu, not %llu",
                      (unsigned long long)total, n, i, (unsigned long long)lo[i],
                      (unsigned long long)prev);
        REQUIRE(hi[i] >= lo[i], "T=%llu n=%u: shard %u negative", (unsigned long long)total,
                      n, i);
        /* every cut is aligned unless it is the end of the model or the model is too small
         * for aligned cuts; then no shard is empty while there is an element for each */
        if (total >= n && total < (uint64_t)n * SMLT_PART_MAP_ALIGN)
            REQUIRE(hi[i] > lo[i], "T=%llu n=%u: shard %u empty", (unsigned long long)total, n,
                    i);
        REQUIRE(hi[i] % SMLT_PART_MAP_ALIGN == 0 || hi[i] == total ||
                    total < (uint64_t)n * SMLT_PART_MAP_ALIGN,
                      "T=%llu n=%u: boundary %llu not aligned", (unsigned long long)total, n,
                      (unsigned long long)hi[i]);
        uint64_t sz = hi[i] - lo[i];
        mn = sz < mn ? sz : mn;
        mx = sz > mx ? sz : mx;
        if (total >= (uint64_t)n * SMLT_PART_MAP_ALIGN) {
            double ideal = (double)total / n;
            REQUIRE(fabs((double)sz - ideal) <= SMLT_PART_MAP_ALIGN,
                          "T=%llu n=%u: shard %u has %llu elements, ideal %.1f",
                          (unsigned long long)total, n, i, (unsigned long long)sz, ideal);
        }
        prev = hi[i];
    }
    REQUIRE(prev == total, "T=%llu n=%u: ends at %llu", (unsigned long long)total, n,
                  (unsigned long long)prev);
    REQUIRE(mx - mn <= 2 * SMLT_PART_MAP_ALIGN, "T=%llu n=%u: sizes %llu..%llu",
                  (unsigned long long)total, n, (unsigned long long)mn, (unsigned long long)mx);
    free(lo);
    free(hi);
}

START_TEST(test_split_balanced)
{
    for (uint64_t t = 1; t < 600; t += 13)
        for (uint32_t n = 1; n <= 40; n++)
            check_split(t, n);
    const uint64_t big[] = {1000003, 123456789, (uint64_t)1 << 32, SMLT_MAX_MODEL_ELEMS,
                            SMLT_MAX_MODEL_ELEMS - 1};
    const uint32_t ns[] = {1, 2, 3, 7, 64, 1000, SMLT_MAX_SHARDS};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 7; j++)
            check_split(big[i], ns[j]);
}
END_TEST

START_TEST(test_split_edges)
{
    uint64_t lo[8], hi[8];
    part_map_split(1000, 1, lo, hi);
    ck_assert_uint_eq(lo[0], 0);
    ck_assert_uint_eq(hi[0], 1000);
    /* more shards than elements: still contiguous, covering, every element owned once */
    part_map_split(5, 8, lo, hi);
    uint64_t owned = 0;
    for (int i = 0; i < 8; i++)
        owned += hi[i] - lo[i];
    ck_assert_uint_eq(owned, 5);
    ck_assert_uint_eq(hi[7], 5);
    /* 64 over 4: exactly 16 each */
    part_map_split(64, 4, lo, hi);
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(lo[i], 16u * (unsigned)i);
        ck_assert_uint_eq(hi[i], 16u * (unsigned)i + 16);
    }
}
END_TEST

/* ---- build ------------------------------------------------------------------------------------ */

START_TEST(test_build_layout)
{
    char addr0[32] = "127.0.0.1:7001";
    const char *addrs[3] = {addr0, NULL, "127.0.0.1:7003"};
    char err[256];
    struct part_map *m = part_map_build(specs4, 4, 3, addrs, 9, 1234, "job-x", err, sizeof err);
    ck_assert_ptr_nonnull(m);
    strcpy(addr0, "changed"); /* addresses are copied */
    ck_assert_uint_eq(m->version, 9);
    ck_assert_uint_eq(m->seed, 1234);
    ck_assert_str_eq(m->job, "job-x");
    ck_assert_uint_eq(m->total, TOTAL4);
    ck_assert_uint_eq(m->ntensors, 4);
    ck_assert_uint_eq(m->nshards, 3);
    ck_assert_str_eq(m->tensors[0].name, "layer1.weight");
    ck_assert_uint_eq(m->tensors[0].offset, 0);
    ck_assert_uint_eq(m->tensors[0].length, 600);
    ck_assert_uint_eq(m->tensors[1].offset, 600);
    ck_assert_uint_eq(m->tensors[2].offset, 620);
    ck_assert_uint_eq(m->tensors[2].ndims, 3);
    ck_assert_uint_eq(m->tensors[2].shape[2], 3);
    ck_assert_uint_eq(m->tensors[3].offset, 680);
    ck_assert_int_eq(m->tensors[3].init, SMLT__INIT_KIND__INIT_CONST);
    ck_assert_float_eq(m->tensors[3].init_scale, 1.5f);
    ck_assert_str_eq(m->shards[0].addr, "127.0.0.1:7001");
    ck_assert_str_eq(m->shards[1].addr, "");
    ck_assert_str_eq(m->shards[2].addr, "127.0.0.1:7003");
    check_invariants(m);
    const struct part_map_tensor *t = part_map_tensor(m, "layer2.weight");
    ck_assert_ptr_eq(t, &m->tensors[2]);
    ck_assert_ptr_null(part_map_tensor(m, "layer2"));
    ck_assert_ptr_null(part_map_tensor(m, ""));
    part_map_free(m);
    part_map_free(NULL);
}
END_TEST

START_TEST(test_build_errors)
{
    const uint64_t s10[] = {10}, s0[] = {10, 0}, huge[] = {SMLT_MAX_MODEL_ELEMS + 1};
    const uint64_t half[] = {SMLT_MAX_MODEL_ELEMS / 2 + 1};
    struct part_map_spec t[3] = {{"a", 1, s10, 0, 0}, {"b", 1, s10, 0, 0}, {"c", 1, s10, 0, 0}};
    char err[256];
    struct part_map *ok = part_map_build(t, 3, 2, NULL, 1, 1, "j", err, sizeof err);
    ck_assert_ptr_nonnull(ok);
    part_map_free(ok);
    /* duplicate names, adjacent or not */
    t[2].name = "a";
    build_fails(t, 3, 2);
    t[2].name = "b";
    build_fails(t, 3, 2);
    t[2].name = "c";
    /* empty / missing / too long name */
    t[1].name = "";
    build_fails(t, 3, 2);
    t[1].name = NULL;
    build_fails(t, 3, 2);
    char longname[SMLT_MAX_NAME + 1];
    memset(longname, 'n', SMLT_MAX_NAME);
    longname[SMLT_MAX_NAME] = 0; /* 256 characters */
    t[1].name = longname;
    build_fails(t, 3, 2);
    longname[SMLT_MAX_NAME - 1] = 0; /* 255 characters: fine */
    ok = part_map_build(t, 3, 2, NULL, 1, 1, "j", err, sizeof err);
    ck_assert_ptr_nonnull(ok);
    part_map_free(ok);
    t[1].name = "b";
    /* 30 elements over 30 shards: one each, none empty */
    ok = part_map_build(t, 3, 30, NULL, 1, 1, "j", err, sizeof err);
    ck_assert_ptr_nonnull(ok);
    for (uint32_t i = 0; i < 30; i++)
        ck_assert_uint_eq(ok->shards[i].hi - ok->shards[i].lo, 1);
    part_map_free(ok);
    /* zero dimension, no dimensions, too many dimensions */
    t[0].shape = s0;
    t[0].ndims = 2;
    build_fails(t, 3, 2);
    t[0].shape = s10;
    t[0].ndims = 0;
    build_fails(t, 3, 2);
    uint64_t many[SMLT_MAX_DIMS + 1];
    for (unsigned i = 0; i <= SMLT_MAX_DIMS; i++)
        many[i] = 1;
    t[0].shape = many;
    t[0].ndims = SMLT_MAX_DIMS + 1;
    build_fails(t, 3, 2);
    t[0].ndims = SMLT_MAX_DIMS; /* exactly the maximum is fine */
    ok = part_map_build(t, 3, 2, NULL, 1, 1, "j", err, sizeof err);
    ck_assert_ptr_nonnull(ok);
    part_map_free(ok);
    t[0].shape = s10;
    t[0].ndims = 1;
    /* shard counts */
    build_fails(t, 3, 0);
    build_fails(t, 3, SMLT_MAX_SHARDS + 1);
    ok = part_map_build(t, 3, SMLT_MAX_SHARDS, NULL, 1, 1, "j", err, sizeof err);
    ck_assert_ptr_nonnull(ok);
    check_invariants(ok);
    part_map_free(ok);
    /* tensor counts */
    build_fails(t, 0, 1);
    build_fails(NULL, 3, 1);
    build_fails(t, SMLT_MAX_TENSORS + 1, 1); /* refused before the array is read */
    /* model size */
    t[0].shape = huge;
    build_fails(t, 3, 1);
    t[0].shape = half;
    t[1].shape = half;
    build_fails(t, 3, 1);
}
END_TEST

/* ---- protobuf --------------------------------------------------------------------------------- */

static void assert_maps_equal(const struct part_map *a, const struct part_map *b)
{
    ck_assert_uint_eq(a->version, b->version);
    ck_assert_uint_eq(a->total, b->total);
    ck_assert_uint_eq(a->seed, b->seed);
    ck_assert_str_eq(a->job, b->job);
    ck_assert_uint_eq(a->ntensors, b->ntensors);
    ck_assert_uint_eq(a->nshards, b->nshards);
    for (uint32_t i = 0; i < a->ntensors; i++) {
        const struct part_map_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        ck_assert_str_eq(x->name, y->name);
        ck_assert_uint_eq(x->ndims, y->ndims);
        for (uint32_t d = 0; d < x->ndims; d++)
            ck_assert_uint_eq(x->shape[d], y->shape[d]);
        ck_assert_uint_eq(x->offset, y->offset);
        ck_assert_uint_eq(x->length, y->length);
        ck_assert_int_eq(x->init, y->init);
        ck_assert_float_eq(x->init_scale, y->init_scale);
    }
    for (uint32_t i = 0; i < a->nshards; i++) {
        ck_assert_uint_eq(a->shards[i].id, b->shards[i].id);
        ck_assert_uint_eq(a->shards[i].lo, b->shards[i].lo);
        ck_assert_uint_eq(a->shards[i].hi, b->shards[i].hi);
        ck_assert_str_eq(a->shards[i].addr, b->shards[i].addr);
    }
}

START_TEST(test_pb_roundtrip)
{
    const char *addrs[5] = {"127.0.0.1:1", "127.0.0.1:2", "[::1]:3", "127.0.0.1:4", "x:5"};
    char err[256] = "";
    struct part_map *m = part_map_build(specs4, 4, 5, addrs, 42, 0xfeedull << 20, "job-y", err,
                                    sizeof err);
    ck_assert_ptr_nonnull(m);
    Smlt__PartitionMap pb = SMLT__PARTITION_MAP__INIT;
    ck_assert_int_eq(part_map_to_pb(m, &pb), 0);
    ck_assert_uint_eq(pb.n_tensors, 4);
    ck_assert_uint_eq(pb.n_shards, 5);
    /* directly */
    struct part_map *d = part_map_from_pb(&pb, err, sizeof err);
    ck_assert_msg(d != NULL, "from_pb: %s", err);
    assert_maps_equal(m, d);
    part_map_free(d);
    /* through the wire encoding */
    size_t len = smlt__partition_map__get_packed_size(&pb);
    uint8_t *buf = malloc(len);
    ck_assert_uint_eq(smlt__partition_map__pack(&pb, buf), len);
    part_map_pb_clear(&pb);
    ck_assert_ptr_null(pb.tensors);
    ck_assert_uint_eq(pb.n_tensors, 0);
    Smlt__PartitionMap *u = smlt__partition_map__unpack(NULL, len, buf);
    ck_assert_ptr_nonnull(u);
    d = part_map_from_pb(u, err, sizeof err);
    ck_assert_msg(d != NULL, "from_pb after unpack: %s", err);
    assert_maps_equal(m, d);
    check_invariants(d);
    smlt__partition_map__free_unpacked(u, NULL);
    free(buf);
    part_map_free(d);
    part_map_free(m);
}
END_TEST

/* A valid hand-editable protobuf map: 3 tensors of 10, 20, 30 elements, 3 shards. */
struct pbmap {
    Smlt__PartitionMap pm;
    Smlt__TensorInfo ti[3];
    Smlt__TensorInfo *tp[3];
    uint64_t shape[3][2];
    Smlt__ShardInfo si[3];
    Smlt__ShardInfo *sp[3];
    char names[3][8];
    char addrs[3][24];
};

static void pbmap_init(struct pbmap *p)
{
    memset(p, 0, sizeof *p);
    Smlt__PartitionMap pm = SMLT__PARTITION_MAP__INIT;
    p->pm = pm;
    p->pm.version = 5;
    p->pm.total = 60;
    p->pm.has_seed = 1;
    p->pm.seed = 77;
    p->pm.job = "j";
    const uint64_t len[3] = {10, 20, 30};
    uint64_t off = 0;
    for (int i = 0; i < 3; i++) {
        Smlt__TensorInfo ti = SMLT__TENSOR_INFO__INIT;
        p->ti[i] = ti;
        snprintf(p->names[i], sizeof p->names[i], "t%d", i);
        p->ti[i].name = p->names[i];
        p->shape[i][0] = 2;
        p->shape[i][1] = len[i] / 2;
        p->ti[i].n_shape = 2;
        p->ti[i].shape = p->shape[i];
        p->ti[i].offset = off;
        p->ti[i].length = len[i];
        p->ti[i].has_init = 1;
        p->ti[i].init = SMLT__INIT_KIND__INIT_UNIFORM;
        p->ti[i].has_init_scale = 1;
        p->ti[i].init_scale = 0.1f;
        p->tp[i] = &p->ti[i];
        off += len[i];
    }
    const uint64_t cuts[4] = {0, 16, 32, 60};
    for (int i = 0; i < 3; i++) {
        Smlt__ShardInfo si = SMLT__SHARD_INFO__INIT;
        p->si[i] = si;
        p->si[i].id = (uint32_t)i;
        snprintf(p->addrs[i], sizeof p->addrs[i], "127.0.0.1:%d", 7000 + i);
        p->si[i].addr = p->addrs[i];
        p->si[i].lo = cuts[i];
        p->si[i].hi = cuts[i + 1];
        p->sp[i] = &p->si[i];
    }
    p->pm.n_tensors = 3;
    p->pm.tensors = p->tp;
    p->pm.n_shards = 3;
    p->pm.shards = p->sp;
}

static void pb_ok(struct pbmap *p)
{
    char err[256] = "";
    struct part_map *m = part_map_from_pb(&p->pm, err, sizeof err);
    ck_assert_msg(m != NULL, "valid map refused: %s", err);
    check_invariants(m);
    part_map_free(m);
}

static void pb_bad(struct pbmap *p, const char *what)
{
    char err[256] = "";
    struct part_map *m = part_map_from_pb(&p->pm, err, sizeof err);
    ck_assert_msg(m == NULL, "%s: accepted", what);
    ck_assert_msg(err[0] != 0, "%s: no message", what);
    pbmap_init(p);
}

START_TEST(test_from_pb_rejects)
{
    struct pbmap p;
    pbmap_init(&p);
    pb_ok(&p);
    char err[256];
    ck_assert_ptr_null(part_map_from_pb(NULL, err, sizeof err));

    /* tensors that do not tile [0, total) */
    p.ti[1].offset = 11;
    pb_bad(&p, "offset gap");
    p.ti[1].offset = 9;
    pb_bad(&p, "offset overlap");
    p.ti[0].offset = 1;
    pb_bad(&p, "first offset not 0");
    p.pm.total = 61;
    p.si[2].hi = 61;
    pb_bad(&p, "total above the tensors");
    p.pm.total = 59;
    p.si[2].hi = 59;
    pb_bad(&p, "total below the tensors");
    p.pm.total = 0;
    pb_bad(&p, "total 0");
    p.pm.total = SMLT_MAX_MODEL_ELEMS + 1;
    pb_bad(&p, "total over the limit");
    /* length != product of shape */
    p.ti[2].length = 31;
    pb_bad(&p, "length != shape product");
    p.shape[0][1] = 6;
    pb_bad(&p, "shape product != length");
    p.shape[1][0] = 0;
    pb_bad(&p, "zero dimension");
    p.ti[0].n_shape = 0;
    pb_bad(&p, "no dimensions");
    uint64_t nine[SMLT_MAX_DIMS + 1] = {10, 1, 1, 1, 1, 1, 1, 1, 1};
    p.ti[0].shape = nine;
    p.ti[0].n_shape = SMLT_MAX_DIMS + 1;
    pb_bad(&p, "too many dimensions");
    uint64_t ovf[3] = {(uint64_t)1 << 32, (uint64_t)1 << 32, 10};
    p.ti[0].shape = ovf;
    p.ti[0].n_shape = 3;
    pb_bad(&p, "shape product overflows");

    /* names */
    p.ti[1].name = NULL;
    pb_bad(&p, "missing name");
    p.ti[1].name = "";
    pb_bad(&p, "empty name");
    char longname[SMLT_MAX_NAME + 8];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    p.ti[1].name = longname;
    pb_bad(&p, "long name");
    p.ti[2].name = "t0";
    pb_bad(&p, "duplicate name");

    /* init kind */
    p.ti[0].init = (Smlt__InitKind)4;
    pb_bad(&p, "init kind 4");
    p.ti[0].init = (Smlt__InitKind)-1;
    pb_bad(&p, "init kind -1");
    p.ti[0].init = SMLT__INIT_KIND__INIT_CONST;
    pb_ok(&p);
    p.ti[0].has_init = 0; /* absent: zero */
    {
        struct part_map *m = part_map_from_pb(&p.pm, err, sizeof err);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(m->tensors[0].init, SMLT__INIT_KIND__INIT_ZERO);
        part_map_free(m);
    }
    pbmap_init(&p);

    /* shard ranges */
    p.si[1].lo = 17;
    pb_bad(&p, "shard gap");
    p.si[1].lo = 15;
    pb_bad(&p, "shard overlap");
    p.si[0].lo = 1;
    pb_bad(&p, "first shard not at 0");
    p.si[2].hi = 59;
    pb_bad(&p, "shards end before total");
    p.si[2].hi = 61;
    pb_bad(&p, "shards end after total");
    p.si[1].hi = 10;
    p.si[2].lo = 10;
    pb_bad(&p, "hi < lo");
    p.si[1].hi = 16; /* an empty range is allowed */
    p.si[2].lo = 16;
    pb_ok(&p);
    pbmap_init(&p);
    /* shard ids */
    p.si[0].id = 1;
    p.si[1].id = 0;
    pb_bad(&p, "ids swapped");
    p.si[0].id = 1;
    p.si[1].id = 2;
    p.si[2].id = 3;
    pb_bad(&p, "ids from 1");
    p.si[2].id = 7;
    pb_bad(&p, "id jumps");
    p.si[1].id = 0;
    pb_bad(&p, "id repeated");
    p.si[2].id = 1;
    pb_bad(&p, "id goes back");
    /* address */
    p.si[1].addr = NULL;
    pb_bad(&p, "missing address");
    char longaddr[SMLT_MAX_NAME + 8];
    memset(longaddr, '1', sizeof longaddr - 1);
    longaddr[sizeof longaddr - 1] = 0;
    p.si[1].addr = longaddr;
    pb_bad(&p, "long address");

    /* counts */
    p.pm.n_tensors = 0;
    pb_bad(&p, "no tensors");
    p.pm.n_shards = 0;
    pb_bad(&p, "no shards");
    {
        /* SMLT_MAX_TENSORS + 1 one-element tensors, all the same struct: refused on the count */
        size_t n = SMLT_MAX_TENSORS + 1;
        Smlt__TensorInfo one = SMLT__TENSOR_INFO__INIT;
        uint64_t s1 = 1;
        one.name = "same";
        one.n_shape = 1;
        one.shape = &s1;
        one.length = 1;
        Smlt__TensorInfo **many = malloc(n * sizeof *many);
        for (size_t i = 0; i < n; i++)
            many[i] = &one;
        p.pm.n_tensors = n;
        p.pm.tensors = many;
        p.pm.total = n;
        p.si[2].hi = n;
        pb_bad(&p, "too many tensors");
        free(many);
    }
    {
        size_t n = SMLT_MAX_SHARDS + 1;
        Smlt__ShardInfo **many = malloc(n * sizeof *many);
        for (size_t i = 0; i < n; i++)
            many[i] = &p.si[0];
        p.pm.n_shards = n;
        p.pm.shards = many;
        pb_bad(&p, "too many shards");
        free(many);
    }
}
END_TEST

/* ---- queries ---------------------------------------------------------------------------------- */

static void check_shard_of_all(const struct part_map *m)
{
    for (uint64_t idx = 0; idx < m->total; idx++) {
        int s = part_map_shard_of(m, idx);
        REQUIRE(s >= 0 && (uint32_t)s < m->nshards, "idx %llu: shard %d",
                      (unsigned long long)idx, s);
        REQUIRE(m->shards[s].lo <= idx && idx < m->shards[s].hi,
                      "idx %llu in shard %d [%llu, %llu)", (unsigned long long)idx, s,
                      (unsigned long long)m->shards[s].lo, (unsigned long long)m->shards[s].hi);
    }
    ck_assert_int_eq(part_map_shard_of(m, m->total), -1);
    ck_assert_int_eq(part_map_shard_of(m, m->total + 1), -1);
    ck_assert_int_eq(part_map_shard_of(m, UINT64_MAX), -1);
}

START_TEST(test_shard_of)
{
    for (uint32_t n = 1; n <= 50; n++) {
        struct part_map *m = build4(n, 1, 1);
        check_invariants(m);
        check_shard_of_all(m);
        /* at every boundary, both sides */
        for (uint32_t i = 0; i < n; i++) {
            if (m->shards[i].lo == m->shards[i].hi)
                continue;
            ck_assert_int_eq(part_map_shard_of(m, m->shards[i].lo), (int)i);
            ck_assert_int_eq(part_map_shard_of(m, m->shards[i].hi - 1), (int)i);
        }
        part_map_free(m);
    }
    /* more shards than elements: empty ranges everywhere */
    const uint64_t s3[] = {3};
    struct part_map_spec t = {"tiny", 1, s3, 0, 0};
    char err[256];
    struct part_map *m = part_map_build(&t, 1, 9, NULL, 1, 1, "j", err, sizeof err);
    ck_assert_ptr_nonnull(m);
    check_invariants(m);
    check_shard_of_all(m);
    part_map_free(m);
    /* hand-made ranges with empty shards in the middle and at the start */
    struct pbmap p;
    pbmap_init(&p);
    p.si[0].hi = 0;
    p.si[1].lo = 0;
    p.si[1].hi = 32;
    m = part_map_from_pb(&p.pm, err, sizeof err);
    ck_assert_ptr_nonnull(m);
    check_shard_of_all(m);
    ck_assert_int_eq(part_map_shard_of(m, 0), 1);
    part_map_free(m);
    pbmap_init(&p);
    p.si[1].lo = p.si[1].hi = 16;
    p.si[2].lo = 16;
    m = part_map_from_pb(&p.pm, err, sizeof err);
    ck_assert_ptr_nonnull(m);
    check_shard_of_all(m);
    ck_assert_int_eq(part_map_shard_of(m, 16), 2);
    ck_assert_int_eq(part_map_shard_of(m, 15), 0);
    part_map_free(m);
}
END_TEST

/* ---- initial values --------------------------------------------------------------------------- */

START_TEST(test_init_split_independent)
{
    struct part_map *one = build4(1, 1, 99);
    struct part_map *seven = build4(7, 1, 99);
    float *whole = malloc(TOTAL4 * sizeof *whole);
    part_map_init_values(one, 0, TOTAL4, whole);
    float *part = malloc(TOTAL4 * sizeof *part);
    memset(part, 0xff, TOTAL4 * sizeof *part);
    for (uint32_t i = 0; i < seven->nshards; i++) {
        uint64_t lo = seven->shards[i].lo, hi = seven->shards[i].hi;
        part_map_init_values(seven, lo, hi, part + lo);
    }
    for (uint32_t i = 0; i < TOTAL4; i++)
        REQUIRE(memcmp(&whole[i], &part[i], sizeof(float)) == 0,
                      "element %u: %.9g (1 shard) vs %.9g (7 shards)", i, whole[i], part[i]);
    /* arbitrary sub-ranges, cutting through tensors, write exactly hi-lo floats */
    const uint64_t r[][2] = {{0, 1}, {5, 601}, {599, 621}, {620, 687}, {686, 687}, {300, 300}};
    for (size_t k = 0; k < 6; k++) {
        size_t n = (size_t)(r[k][1] - r[k][0]);
        float *o = malloc((n + 4) * sizeof *o);
        for (size_t j = 0; j < n + 4; j++)
            o[j] = -12345.0f;
        part_map_init_values(one, r[k][0], r[k][1], o);
        ck_assert(memcmp(o, whole + r[k][0], n * sizeof *o) == 0);
        for (size_t j = n; j < n + 4; j++)
            ck_assert_float_eq(o[j], -12345.0f);
        free(o);
    }
    /* per kind: uniform within its scale, zero, normal not constant, const */
    for (uint32_t i = 0; i < 600; i++)
        REQUIRE(whole[i] >= -0.25f && whole[i] < 0.25f, "uniform value %u: %g", i, whole[i]);
    for (uint32_t i = 600; i < 620; i++)
        ck_assert_float_eq(whole[i], 0.0f);
    int distinct = 0;
    for (uint32_t i = 621; i < 680; i++)
        distinct += whole[i] != whole[620];
    ck_assert_int_gt(distinct, 50);
    for (uint32_t i = 680; i < 687; i++)
        ck_assert_float_eq(whole[i], 1.5f);
    /* the seed matters */
    struct part_map *other = build4(1, 1, 100);
    float *w2 = malloc(TOTAL4 * sizeof *w2);
    part_map_init_values(other, 0, TOTAL4, w2);
    ck_assert(memcmp(w2, whole, 600 * sizeof(float)) != 0);
    ck_assert(memcmp(w2 + 680, whole + 680, 7 * sizeof(float)) == 0);
    /* and survives the wire */
    Smlt__PartitionMap pb = SMLT__PARTITION_MAP__INIT;
    ck_assert_int_eq(part_map_to_pb(seven, &pb), 0);
    char err[256];
    struct part_map *dec = part_map_from_pb(&pb, err, sizeof err);
    ck_assert_ptr_nonnull(dec);
    part_map_init_values(dec, 0, TOTAL4, w2);
    ck_assert(memcmp(w2, whole, TOTAL4 * sizeof(float)) == 0);
    part_map_free(dec);
    part_map_pb_clear(&pb);
    free(w2);
    free(whole);
    free(part);
    part_map_free(other);
    part_map_free(one);
    part_map_free(seven);
}
END_TEST

START_TEST(test_init_distribution)
{
    const uint64_t shp[] = {200, 500};
    struct part_map_spec t[2] = {{"n", 2, shp, SMLT__INIT_KIND__INIT_NORMAL, 0.5f},
                                  {"u", 2, shp, SMLT__INIT_KIND__INIT_UNIFORM, 2.0f}};
    char err[256];
    struct part_map *m = part_map_build(t, 2, 3, NULL, 1, 2024, "j", err, sizeof err);
    ck_assert_ptr_nonnull(m);
    const size_t n = 100000;
    float *v = malloc(2 * n * sizeof *v);
    part_map_init_values(m, 0, 2 * n, v);
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        REQUIRE(isfinite(v[i]), "normal value %zu: %g", i, v[i]);
        s += v[i];
        s2 += (double)v[i] * v[i];
    }
    double mean = s / n, sd = sqrt(s2 / n - mean * mean);
    /* standard error of the mean: 0.5/sqrt(1e5) = 0.0016; of the sd about 0.0011 */
    ck_assert_msg(fabs(mean) < 0.006, "normal mean %.5f", mean);
    ck_assert_msg(fabs(sd - 0.5) < 0.01, "normal sd %.5f", sd);
    s = s2 = 0;
    for (size_t i = n; i < 2 * n; i++) {
        REQUIRE(v[i] >= -2.0f && v[i] < 2.0f, "uniform value %zu: %g", i, v[i]);
        s += v[i];
        s2 += (double)v[i] * v[i];
    }
    mean = s / n;
    sd = sqrt(s2 / n - mean * mean);
    ck_assert_msg(fabs(mean) < 0.02, "uniform mean %.5f", mean);
    ck_assert_msg(fabs(sd - 2.0 / sqrt(3.0)) < 0.02, "uniform sd %.5f", sd);
    free(v);
    part_map_free(m);
}
END_TEST

/* ---- reshard, dup, same_model ----------------------------------------------------------------- */

START_TEST(test_reshard)
{
    struct part_map *m = build4(3, 7, 5);
    const char *addrs[5] = {"a:1", "b:2", "c:3", "d:4", "e:5"};
    char err[256];
    struct part_map *r = part_map_reshard(m, 5, addrs, err, sizeof err);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->version, 8);
    ck_assert_uint_eq(r->nshards, 5);
    ck_assert_uint_eq(r->seed, 5);
    ck_assert_str_eq(r->job, "job-x");
    ck_assert_str_eq(r->shards[4].addr, "e:5");
    ck_assert_int_eq(part_map_same_model(m, r), 1);
    check_invariants(r);
    /* the split is the same one part_map_split computes */
    uint64_t lo[5], hi[5];
    part_map_split(TOTAL4, 5, lo, hi);
    for (int i = 0; i < 5; i++) {
        ck_assert_uint_eq(r->shards[i].lo, lo[i]);
        ck_assert_uint_eq(r->shards[i].hi, hi[i]);
    }
    /* the original is untouched */
    ck_assert_uint_eq(m->version, 7);
    ck_assert_uint_eq(m->nshards, 3);
    check_invariants(m);
    /* and initial values did not move */
    float a[TOTAL4], b[TOTAL4];
    part_map_init_values(m, 0, TOTAL4, a);
    part_map_init_values(r, 0, TOTAL4, b);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    struct part_map *r2 = part_map_reshard(r, 1, NULL, err, sizeof err);
    ck_assert_ptr_nonnull(r2);
    ck_assert_uint_eq(r2->version, 9);
    ck_assert_str_eq(r2->shards[0].addr, "");
    part_map_free(r2);
    err[0] = 0;
    ck_assert_ptr_null(part_map_reshard(m, 0, NULL, err, sizeof err));
    ck_assert(err[0] != 0);
    ck_assert_ptr_null(part_map_reshard(m, SMLT_MAX_SHARDS + 1, NULL, err, sizeof err));
    part_map_free(r);
    part_map_free(m);
}
END_TEST

START_TEST(test_dup_and_same_model)
{
    struct part_map *m = build4(4, 3, 3);
    struct part_map *d = part_map_dup(m);
    ck_assert_ptr_nonnull(d);
    assert_maps_equal(m, d);
    ck_assert_ptr_ne(d->tensors, m->tensors);
    ck_assert_ptr_ne(d->tensors[0].name, m->tensors[0].name);
    ck_assert_ptr_ne(d->shards[0].addr, m->shards[0].addr);
    ck_assert_int_eq(part_map_same_model(m, d), 1);
    d->tensors[0].name[0] = 'X';
    ck_assert_str_eq(m->tensors[0].name, "layer1.weight");
    ck_assert_int_eq(part_map_same_model(m, d), 0);
    part_map_free(d);

    /* same total, shape transposed */
    const uint64_t a46[] = {4, 6}, a64[] = {6, 4}, a24[] = {24};
    struct part_map_spec t1 = {"w", 2, a46, 0, 0}, t2 = {"w", 2, a64, 0, 0},
                          t3 = {"w", 1, a24, 0, 0}, t4 = {"w", 2, a46, 1, 3.0f};
    char err[256];
    struct part_map *x = part_map_build(&t1, 1, 1, NULL, 1, 1, "j", err, sizeof err);
    struct part_map *y = part_map_build(&t2, 1, 2, NULL, 2, 1, "j", err, sizeof err);
    struct part_map *z = part_map_build(&t3, 1, 1, NULL, 1, 1, "j", err, sizeof err);
    struct part_map *w = part_map_build(&t4, 1, 3, NULL, 9, 4, "k", err, sizeof err);
    ck_assert_int_eq(part_map_same_model(x, y), 0);
    ck_assert_int_eq(part_map_same_model(x, z), 0);
    /* version, shards, seed, job and init do not make a different model */
    ck_assert_int_eq(part_map_same_model(x, w), 1);
    ck_assert_int_eq(part_map_same_model(x, m), 0);
    part_map_free(x);
    part_map_free(y);
    part_map_free(z);
    part_map_free(w);
    part_map_free(m);
}
END_TEST

static Suite *part_map_suite(void)
{
    Suite *s = suite_create("part_map");
    TCase *tc = tcase_create("split");
    tcase_add_test(tc, test_split_balanced);
    tcase_add_test(tc, test_split_edges);
    suite_add_tcase(s, tc);
    tc = tcase_create("build");
    tcase_add_test(tc, test_build_layout);
    tcase_add_test(tc, test_build_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("pb");
    tcase_add_test(tc, test_pb_roundtrip);
    tcase_add_test(tc, test_from_pb_rejects);
    suite_add_tcase(s, tc);
    tc = tcase_create("query");
    tcase_add_test(tc, test_shard_of);
    tcase_add_test(tc, test_init_split_independent);
    tcase_add_test(tc, test_init_distribution);
    tcase_add_test(tc, test_reshard);
    tcase_add_test(tc, test_dup_and_same_model);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(part_map_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
