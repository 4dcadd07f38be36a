/* test_ps_shard.c: Check suite for ps/ps_shard.c (a shard's parameters, aggregation under
 * BSP / SSP / ASP, exactly-once counting, the buffer pool, double-buffered parameters with
 * references, set_params and live updates).
 *
 * Most tests use a NULL event base, so jobs run inline and every result is visible when the
 * call returns. One case runs the real apply thread with an event base and ps_shard_drain(),
 * on a range big enough that the shard does not apply it inline on the loop thread.
 * Gradients and parameters are multiples of 1/1024 and learning rates powers of two wherever a
 * result is compared exactly, so the float arithmetic there has no rounding at all. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "part_map.h"
#include "ps_ckpt.h"
#include "ps_optim.h"
#include "ps_shard.h"
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

struct ctx {
    int advance;
    int buffree;
    int configured;
    int conf_err;
};

static void on_advance(struct ps_shard *s, void *arg)
{
    ((struct ctx *)arg)->advance++;
}

static void on_buffer_free(struct ps_shard *s, void *arg)
{
    ((struct ctx *)arg)->buffree++;
}

static void on_configured(struct ps_shard *s, int err, void *arg)
{
    struct ctx *c = arg;
    c->configured++;
    c->conf_err = err;
}

static const struct ps_shard_cbs cbs = {on_advance, on_buffer_free, on_configured};

static uint64_t rng_state = 1;

static void rng_seed(uint64_t s)
{
    rng_state = s ? s : 1;
}

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* A multiple of 1/1024 in [-1, 1]: sums and power-of-two scalings of these are exact. */
static float rng_grad(void)
{
    return (float)((int)(rng_next() % 2049) - 1024) / 1024.0f;
}

static float *grad_new(size_t n)
{
    float *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++)
        g[i] = rng_grad();
    return g;
}

/* One tensor of `total` elements, uniform init, split into nshards. */
static struct part_map *mkmap(uint64_t version, uint64_t total, uint32_t nshards)
{
    const uint64_t shape[1] = {total};
    struct part_map_spec t = {"w", 1, shape, SMLT__INIT_KIND__INIT_UNIFORM, 0.5f};
    char err[256] = "";
    struct part_map *m = part_map_build(&t, 1, nshards, NULL, version, 7, "job", err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    return m;
}

static struct ps_shard_conf mkconf(enum smlt_sync mode, uint32_t workers, uint32_t staleness,
                                   enum smlt_optim k, float lr)
{
    struct ps_shard_conf c;
    memset(&c, 0, sizeof c);
    c.mode = mode;
    c.workers = workers;
    c.staleness = staleness;
    ps_optim_conf_default(&c.optim);
    c.optim.kind = k;
    c.optim.lr = lr;
    return c;
}

/* An inline shard `id`, configured with map (taken) and conf. */
static struct ps_shard *mkshard(uint32_t id, struct part_map *map, const struct ps_shard_conf *conf,
                                struct ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    struct ps_shard *s = ps_shard_new(id, NULL, &cbs, ctx);
    ck_assert_ptr_nonnull(s);
    char err[256] = "";
    ck_assert_msg(ps_shard_configure(s, map, conf, err, sizeof err) == 0, "configure: %s", err);
    ck_assert_int_eq(ps_shard_ready(s), 1);
    ck_assert_int_eq(ctx->configured, 1);
    ck_assert_int_eq(ctx->conf_err, 0);
    return s;
}

static size_t nof(const struct ps_shard *s)
{
    return (size_t)(ps_shard_hi(s) - ps_shard_lo(s));
}

static uint64_t mapv(const struct ps_shard *s)
{
    return ps_shard_map(s)->version;
}

/* Checks, receives and commits a push of g (n floats). Returns the check's code if it refused,
 * else the commit's. */
static int push(struct ps_shard *s, uint32_t rank, uint64_t step, const float *g)
{
    char err[256] = "";
    int rc = ps_shard_push_check(s, mapv(s), rank, step, ps_shard_lo(s), ps_shard_hi(s), err,
                                 sizeof err);
    if (rc != 0)
        return rc;
    float *b = ps_shard_buf_get(s);
    ck_assert_ptr_nonnull(b);
    memcpy(b, g, nof(s) * sizeof *b);
    return ps_shard_push_commit(s, rank, step, b, err, sizeof err);
}

/* Commits without checking first (a push received while another connection counted it). */
static int commit_only(struct ps_shard *s, uint32_t rank, uint64_t step, const float *g)
{
    char err[256] = "";
    float *b = ps_shard_buf_get(s);
    ck_assert_ptr_nonnull(b);
    memcpy(b, g, nof(s) * sizeof *b);
    return ps_shard_push_commit(s, rank, step, b, err, sizeof err);
}

static float *params_copy(struct ps_shard *s)
{
    size_t n = nof(s);
    const float *p = ps_shard_params_ref(s, NULL, NULL);
    ck_assert_ptr_nonnull(p);
    float *c = malloc((n ? n : 1) * sizeof *c);
    memcpy(c, p, n * sizeof *c);
    ps_shard_params_unref(s, p);
    return c;
}

static void assert_params_eq(struct ps_shard *s, const float *want, const char *what)
{
    size_t n = nof(s);
    float *p = params_copy(s);
    for (size_t i = 0; i < n; i++)
        REQUIRE(p[i] == want[i], "%s: element %zu is %.9g, want %.9g", what, i, p[i], want[i]);
    free(p);
}

static void stats(struct ps_shard *s, struct ps_shard_stats *st)
{
    memset(st, 0xab, sizeof *st);
    ps_shard_stats(s, st);
}

/* ---- lifecycle -------------------------------------------------------------------------------- */

START_TEST(test_unconfigured)
{
    struct ctx ctx = {0};
    struct ps_shard *s = ps_shard_new(0, NULL, &cbs, &ctx);
    ck_assert_ptr_nonnull(s);
    char err[256] = "";
    ck_assert_int_eq(ps_shard_ready(s), 0);
    ck_assert_ptr_null(ps_shard_map(s));
    ck_assert_uint_eq(ps_shard_id(s), 0);
    ck_assert_int_eq(ps_shard_push_check(s, 1, 0, 0, 0, 10, err, sizeof err), SMLT_ENOTCONF);
    ck_assert(err[0] != 0);
    ck_assert_int_eq(ps_shard_pull_check(s, 1, 0, 10, err, sizeof err), SMLT_ENOTCONF);
    ck_assert_ptr_null(ps_shard_buf_get(s));
    uint64_t v = 9, c = 9;
    ck_assert_ptr_null(ps_shard_params_ref(s, &v, &c));
    ck_assert_uint_eq(v, 0);
    ck_assert_uint_eq(c, 0);
    float vals[4] = {1, 2, 3, 4};
    ck_assert_int_eq(ps_shard_set_params(s, 1, 0, 4, vals, 0, 1, NULL, err, sizeof err),
                     SMLT_ENOTCONF);
    ck_assert_int_eq(ps_shard_push_commit(s, 0, 0, NULL, err, sizeof err), SMLT_ENOTCONF);
    ck_assert_int_eq(ctx.advance, 0);
    ps_shard_free(s);
    ps_shard_free(NULL);
}
END_TEST

START_TEST(test_configure_errors)
{
    struct ctx ctx = {0};
    struct ps_shard *s = ps_shard_new(2, NULL, &cbs, &ctx);
    char err[256] = "";
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 2, 0, SMLT_OPT_SGD, 0.1f);
    /* shard 2 of a 2-shard map: the map is taken (freed) even on failure (ASan: no leak) */
    ck_assert_int_eq(ps_shard_configure(s, mkmap(1, 100, 2), &c, err, sizeof err), SMLT_EINVAL);
    ck_assert(err[0] != 0);
    ck_assert_int_eq(ps_shard_configure(s, NULL, &c, err, sizeof err), SMLT_EINVAL);
    ck_assert_int_eq(ps_shard_ready(s), 0);
    ps_shard_free(s);

    s = ps_shard_new(0, NULL, &cbs, &ctx);
    c.workers = 0;
    ck_assert_int_eq(ps_shard_configure(s, mkmap(1, 100, 2), &c, err, sizeof err), SMLT_EINVAL);
    c.workers = SMLT_MAX_WORKERS + 1;
    ck_assert_int_eq(ps_shard_configure(s, mkmap(1, 100, 2), &c, err, sizeof err), SMLT_EINVAL);
    c.workers = 2;
    c.mode = (enum smlt_sync)3;
    ck_assert_int_eq(ps_shard_configure(s, mkmap(1, 100, 2), &c, err, sizeof err), SMLT_EINVAL);
    c.mode = SMLT_SYNC_BSP;
    c.optim.lr = -1.0f;
    ck_assert_int_eq(ps_shard_configure(s, mkmap(1, 100, 2), &c, err, sizeof err), SMLT_EINVAL);
    ck_assert_int_eq(ps_shard_ready(s), 0);
    ck_assert_int_eq(ctx.configured, 0); /* failing calls never call back */
    c.optim.lr = 0.1f;
    ck_assert_int_eq(ps_shard_configure(s, mkmap(1, 100, 2), &c, err, sizeof err), 0);
    ck_assert_int_eq(ps_shard_ready(s), 1);
    ck_assert_int_eq(ctx.configured, 1);
    ps_shard_free(s);
}
END_TEST

START_TEST(test_configure_init_values)
{
    for (uint32_t id = 0; id < 2; id++) {
        struct ctx ctx;
        struct part_map *ref = mkmap(3, 100, 2);
        struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 2, 0, SMLT_OPT_ADAM, 0.01f);
        struct ps_shard *s = mkshard(id, part_map_dup(ref), &c, &ctx);
        ck_assert_uint_eq(ps_shard_id(s), id);
        ck_assert_uint_eq(ps_shard_lo(s), ref->shards[id].lo);
        ck_assert_uint_eq(ps_shard_hi(s), ref->shards[id].hi);
        ck_assert_uint_gt(nof(s), 0);
        ck_assert_uint_eq(mapv(s), 3);
        ck_assert_int_eq(ps_shard_conf(s)->optim.kind, SMLT_OPT_ADAM);
        ck_assert_uint_eq(ps_shard_conf(s)->workers, 2);
        uint64_t v = 9, cl = 9;
        const float *p = ps_shard_params_ref(s, &v, &cl);
        ck_assert_uint_eq(v, 0);
        ck_assert_uint_eq(cl, 0);
        float *want = malloc(nof(s) * sizeof *want);
        part_map_init_values(ref, ps_shard_lo(s), ps_shard_hi(s), want);
        ck_assert(memcmp(p, want, nof(s) * sizeof *want) == 0);
        ps_shard_params_unref(s, p);
        free(want);
        part_map_free(ref);
        ps_shard_free(s);
    }
}
END_TEST

/* ---- BSP -------------------------------------------------------------------------------------- */

START_TEST(test_bsp_step)
{
    for (uint32_t id = 0; id < 2; id++) {
        struct ctx ctx;
        struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 3, 0, SMLT_OPT_SGD, 0.1f);
        struct ps_shard *s = mkshard(id, mkmap(1, 100, 2), &c, &ctx);
        size_t n = nof(s);
        rng_seed(100 + id);
        float *p0 = params_copy(s);
        float *g[3];
        for (int r = 0; r < 3; r++)
            g[r] = grad_new(n);
        ck_assert_int_eq(push(s, 0, 0, g[0]), 0);
        ck_assert_uint_eq(ps_shard_version(s), 0);
        ck_assert_int_eq(push(s, 1, 0, g[1]), 0);
        ck_assert_uint_eq(ps_shard_version(s), 0);
        ck_assert_int_eq(ctx.advance, 0);
        assert_params_eq(s, p0, "before the last push");
        ck_assert_int_eq(push(s, 2, 0, g[2]), 0);
        ck_assert_uint_eq(ps_shard_version(s), 1);
        ck_assert_uint_eq(ps_shard_clock(s), 1);
        ck_assert_int_eq(ctx.advance, 1);
        /* params - lr * mean: the same float operations, then against a double mean */
        float *want = malloc(n * sizeof *want);
        const float step = 0.1f * (1.0f / 3.0f);
        for (size_t i = 0; i < n; i++)
            want[i] = p0[i] - step * ((g[0][i] + g[1][i]) + g[2][i]);
        assert_params_eq(s, want, "after step 0");
        float *p1 = params_copy(s);
        for (size_t i = 0; i < n; i++) {
            double mean = ((double)g[0][i] + g[1][i] + g[2][i]) / 3.0;
            REQUIRE(fabs(p1[i] - (p0[i] - 0.1 * mean)) < 1e-6, "elem %zu", i);
        }
        /* the next step opens at version 1 */
        ck_assert_int_eq(push(s, 1, 1, g[0]), 0);
        ck_assert_int_eq(push(s, 0, 1, g[0]), 0);
        ck_assert_int_eq(push(s, 2, 1, g[0]), 0);
        ck_assert_uint_eq(ps_shard_version(s), 2);
        for (size_t i = 0; i < n; i++)
            want[i] = p1[i] - step * ((g[0][i] + g[0][i]) + g[0][i]);
        assert_params_eq(s, want, "after step 1");
        struct ps_shard_stats st;
        stats(s, &st);
        ck_assert_uint_eq(st.pushes_received, 6);
        ck_assert_uint_eq(st.pushes_counted, 6);
        ck_assert_uint_eq(st.pushes_duplicate, 0);
        ck_assert_uint_eq(st.pushes_rejected, 0);
        ck_assert_uint_eq(st.updates_applied, 2);
        ck_assert_uint_eq(ps_shard_seq_done(s), 2);
        for (int r = 0; r < 3; r++)
            free(g[r]);
        free(p0);
        free(p1);
        free(want);
        ps_shard_free(s);
    }
}
END_TEST

/* Gradient noise scale statistics: one step's sums match the estimator computed here in
 * double, and over many steps of synthetic gradients (a true gradient plus independent noise)
 * noise_s / noise_g2 recovers tr(Sigma) / b / |G|^2. One worker: nothing measured. */
static double nrm(void)
{
    double u1 = ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
    double u2 = ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

START_TEST(test_noise_scale_stats)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 4, 0, SMLT_OPT_SGD, 0.01f);
    struct ps_shard *s = mkshard(0, mkmap(1, 2000, 1), &c, &ctx);
    size_t n = nof(s);
    rng_seed(5);
    float *g[4];
    for (int r = 0; r < 4; r++)
        g[r] = grad_new(n);
    for (int r = 0; r < 4; r++)
        ck_assert_int_eq(push(s, (uint32_t)r, 0, g[r]), 0);
    double small = 0, big = 0;
    for (size_t i = 0; i < n; i++) {
        double sum = 0;
        for (int r = 0; r < 4; r++) {
            small += (double)g[r][i] * g[r][i];
            sum += g[r][i];
        }
        big += sum * sum;
    }
    small /= 4;
    big /= 16;
    struct ps_shard_stats st;
    stats(s, &st);
    ck_assert_uint_eq(st.noise_steps, 1);
    ck_assert_double_eq_tol(st.noise_g2, (4 * big - small) / 3, 1e-4 * fabs(small));
    ck_assert_double_eq_tol(st.noise_s, 4 * (small - big) / 3, 1e-4 * fabs(small));

    /* 120 steps of G + noise, of which every fourth is measured (as on every shard): per
     * element G = 0.1, noise sd 0.2, so tr(Sigma)/b over the range is n * 0.04 and |G|^2 is
     * n * 0.01: a ratio of 4. */
    for (uint64_t step = 1; step <= 120; step++)
        for (int r = 0; r < 4; r++) {
            for (size_t i = 0; i < n; i++)
                g[r][i] = (float)(0.1 + 0.2 * nrm());
            ck_assert_int_eq(push(s, (uint32_t)r, step, g[r]), 0);
        }
    double g2_0 = st.noise_g2, s_0 = st.noise_s;
    stats(s, &st);
    ck_assert_uint_eq(st.noise_steps, 31);
    double ratio = (st.noise_s - s_0) / (st.noise_g2 - g2_0);
    ck_assert_msg(fabs(ratio - 4.0) < 0.4, "noise_s / noise_g2 = %.3f, want 4", ratio);
    ck_assert_double_eq_tol((st.noise_g2 - g2_0) / 30, n * 0.01, 0.1 * n * 0.01);
    for (int r = 0; r < 4; r++)
        free(g[r]);
    ps_shard_free(s);

    /* One worker: no second batch size, no estimate. */
    c = mkconf(SMLT_SYNC_BSP, 1, 0, SMLT_OPT_SGD, 0.01f);
    s = mkshard(0, mkmap(1, 100, 1), &c, &ctx);
    float *one = grad_new(nof(s));
    for (uint64_t step = 0; step < 3; step++)
        ck_assert_int_eq(push(s, 0, step, one), 0);
    stats(s, &st);
    ck_assert_uint_eq(st.noise_steps, 0);
    ck_assert(st.noise_g2 == 0 && st.noise_s == 0);
    free(one);
    ps_shard_free(s);
}
END_TEST

START_TEST(test_bsp_duplicate)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 3, 0, SMLT_OPT_SGD, 0.5f);
    struct ps_shard *s = mkshard(1, mkmap(1, 100, 2), &c, &ctx);
    size_t n = nof(s);
    rng_seed(7);
    float *p0 = params_copy(s);
    float *g0 = grad_new(n), *g1 = grad_new(n), *g2 = grad_new(n), *big = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        big[i] = 1000.0f; /* would show if a duplicate were applied */
    char err[256];
    ck_assert_int_eq(push(s, 0, 0, g0), 0);
    /* the retry is recognised at check ... */
    ck_assert_int_eq(ps_shard_push_check(s, mapv(s), 0, 0, ps_shard_lo(s), ps_shard_hi(s), err,
                                         sizeof err),
                     1);
    /* ... and at commit (it raced past the check on another connection) */
    ck_assert_int_eq(commit_only(s, 0, 0, big), 1);
    /* two connections both pass the check for rank 1; only the first commit counts */
    ck_assert_int_eq(ps_shard_push_check(s, mapv(s), 1, 0, ps_shard_lo(s), ps_shard_hi(s), err,
                                         sizeof err),
                     0);
    ck_assert_int_eq(ps_shard_push_check(s, mapv(s), 1, 0, ps_shard_lo(s), ps_shard_hi(s), err,
                                         sizeof err),
                     0);
    ck_assert_int_eq(commit_only(s, 1, 0, g1), 0);
    ck_assert_int_eq(commit_only(s, 1, 0, big), 1);
    ck_assert_uint_eq(ps_shard_version(s), 0);
    ps_shard_count_duplicate(s); /* a duplicate dropped unread */
    ck_assert_int_eq(push(s, 2, 0, g2), 0);
    ck_assert_uint_eq(ps_shard_version(s), 1);
    float *want = malloc(n * 4);
    const float step = 0.5f * (1.0f / 3.0f);
    for (size_t i = 0; i < n; i++)
        want[i] = p0[i] - step * ((g0[i] + g1[i]) + g2[i]);
    assert_params_eq(s, want, "duplicates applied");
    /* after the step, an old step is still a duplicate, not an error */
    ck_assert_int_eq(push(s, 2, 0, big), 1);
    ck_assert_uint_eq(ps_shard_version(s), 1);
    struct ps_shard_stats st;
    stats(s, &st);
    ck_assert_uint_eq(st.pushes_counted, 3);
    ck_assert_uint_eq(st.pushes_duplicate, 3);
    ck_assert_uint_eq(st.pushes_received, 6);
    ck_assert_uint_eq(st.pushes_rejected, 0);
    ck_assert_uint_eq(st.updates_applied, 1);
    free(g0);
    free(g1);
    free(g2);
    free(big);
    free(p0);
    free(want);
    ps_shard_free(s);
}
END_TEST

START_TEST(test_push_errors)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 2, 0, SMLT_OPT_SGD, 0.5f);
    struct ps_shard *s = mkshard(0, mkmap(4, 100, 2), &c, &ctx);
    size_t n = nof(s);
    uint64_t lo = ps_shard_lo(s), hi = ps_shard_hi(s);
    rng_seed(9);
    float *g = grad_new(n);
    char err[256];
#define CHECK_RC(mv, rank, step, l, h, want)                                                       \
    do {                                                                                           \
        err[0] = 0;                                                                                \
        ck_assert_int_eq(ps_shard_push_check(s, mv, rank, step, l, h, err, sizeof err), want);    \
        if ((want) < 0)                                                                            \
            ck_assert_msg(err[0] != 0, "no message for %d", want);                                 \
    } while (0)
    CHECK_RC(4, 0, 0, lo, hi, 0);
    CHECK_RC(4, 0, 1, lo, hi, SMLT_ESTEP);  /* ahead */
    CHECK_RC(4, 0, 99, lo, hi, SMLT_ESTEP);
    CHECK_RC(4, 2, 0, lo, hi, SMLT_EINVAL); /* rank >= workers */
    CHECK_RC(4, UINT32_MAX, 0, lo, hi, SMLT_EINVAL);
    CHECK_RC(4, 0, 0, lo + 1, hi, SMLT_ERANGE);
    CHECK_RC(4, 0, 0, lo, hi - 1, SMLT_ERANGE);
    CHECK_RC(4, 0, 0, lo, hi + 1, SMLT_ERANGE);
    CHECK_RC(4, 0, 0, hi, 100, SMLT_ERANGE); /* the other shard's range */
    CHECK_RC(3, 0, 0, lo, hi, SMLT_ESTALEMAP);
    CHECK_RC(5, 0, 0, lo, hi, SMLT_ESTALEMAP);
    /* rejected at commit too, counted as rejected, buffer back in the pool */
    ck_assert_int_eq(commit_only(s, 0, 1, g), SMLT_ESTEP);
    ck_assert_int_eq(commit_only(s, 5, 0, g), SMLT_EINVAL);
    struct ps_shard_stats st;
    stats(s, &st);
    ck_assert_uint_eq(st.pushes_rejected, 2);
    ck_assert_uint_eq(st.pushes_counted, 0);
    /* step behind: rank 2 joins after step 0 was done without it */
    ck_assert_int_eq(push(s, 0, 0, g), 0);
    ck_assert_int_eq(push(s, 1, 0, g), 0);
    ck_assert_uint_eq(ps_shard_version(s), 1);
    uint32_t three = 3;
    ck_assert_int_eq(ps_shard_update(s, NULL, NULL, &three, NULL, err, sizeof err), 0);
    CHECK_RC(4, 2, 0, lo, hi, SMLT_ESTEP);
    CHECK_RC(4, 2, 1, lo, hi, 0);
    CHECK_RC(4, 2, 2, lo, hi, SMLT_ESTEP);
#undef CHECK_RC
    free(g);
    ps_shard_free(s);
}
END_TEST

START_TEST(test_bsp_lower_workers)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 3, 0, SMLT_OPT_SGD, 0.25f);
    struct ps_shard *s = mkshard(0, mkmap(1, 100, 2), &c, &ctx);
    size_t n = nof(s);
    rng_seed(11);
    float *p0 = params_copy(s), *g0 = grad_new(n), *g1 = grad_new(n);
    char err[256];
    ck_assert_int_eq(push(s, 0, 0, g0), 0);
    ck_assert_int_eq(push(s, 1, 0, g1), 0);
    ck_assert_uint_eq(ps_shard_version(s), 0);
    /* invalid updates change nothing */
    uint32_t zero = 0;
    float neg = -1.0f, nan = NAN;
    ck_assert_int_eq(ps_shard_update(s, NULL, NULL, &zero, NULL, err, sizeof err), SMLT_EINVAL);
    ck_assert_int_eq(ps_shard_update(s, &neg, NULL, NULL, NULL, err, sizeof err), SMLT_EINVAL);
    ck_assert_int_eq(ps_shard_update(s, &nan, NULL, NULL, NULL, err, sizeof err), SMLT_EINVAL);
    ck_assert_int_eq(ps_shard_update(s, NULL, &neg, NULL, NULL, err, sizeof err), SMLT_EINVAL);
    ck_assert_uint_eq(ps_shard_conf(s)->workers, 3);
    ck_assert_float_eq(ps_shard_conf(s)->optim.lr, 0.25f);
    ck_assert_uint_eq(ps_shard_version(s), 0);
    /* two workers now: the step has its pushes and completes with their mean */
    uint32_t two = 2;
    ck_assert_int_eq(ps_shard_update(s, NULL, NULL, &two, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(ps_shard_version(s), 1);
    ck_assert_int_eq(ctx.advance, 1);
    float *want = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        want[i] = p0[i] - 0.125f * (g0[i] + g1[i]);
    assert_params_eq(s, want, "lowered workers");
    /* a new learning rate applies to the next step */
    float lr = 0.5f;
    ck_assert_int_eq(ps_shard_update(s, &lr, NULL, NULL, NULL, err, sizeof err), 0);
    ck_assert_float_eq(ps_shard_conf(s)->optim.lr, 0.5f);
    ck_assert_uint_eq(ps_shard_conf(s)->workers, 2);
    ck_assert_int_eq(push(s, 0, 1, g0), 0);
    ck_assert_int_eq(push(s, 1, 1, g0), 0);
    ck_assert_uint_eq(ps_shard_version(s), 2);
    for (size_t i = 0; i < n; i++)
        want[i] = want[i] - 0.25f * (g0[i] + g0[i]);
    assert_params_eq(s, want, "new lr");
    /* raising workers back: the next step needs three */
    uint32_t three = 3;
    ck_assert_int_eq(ps_shard_update(s, NULL, NULL, &three, NULL, err, sizeof err), 0);
    ck_assert_int_eq(push(s, 0, 2, g0), 0);
    ck_assert_int_eq(push(s, 1, 2, g0), 0);
    ck_assert_uint_eq(ps_shard_version(s), 2);
    ck_assert_int_eq(push(s, 2, 2, g0), 0);
    ck_assert_uint_eq(ps_shard_version(s), 3);
    free(p0);
    free(g0);
    free(g1);
    free(want);
    ps_shard_free(s);
}
END_TEST

/* ---- SSP / ASP -------------------------------------------------------------------------------- */

START_TEST(test_ssp_bound)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_SSP, 2, 1, SMLT_OPT_SGD, 0.5f);
    struct ps_shard *s = mkshard(1, mkmap(1, 100, 2), &c, &ctx);
    size_t n = nof(s);
    rng_seed(13);
    float *p = params_copy(s), *g = grad_new(n);
    /* every push is applied by itself, scale 1 */
#define APPLIED()                                                                                  \
    do {                                                                                           \
        for (size_t i = 0; i < n; i++)                                                             \
            p[i] = p[i] - 0.5f * g[i];                                                             \
        assert_params_eq(s, p, "ssp");                                                             \
    } while (0)
    ck_assert_int_eq(push(s, 0, 0, g), 0);
    APPLIED();
    ck_assert_uint_eq(ps_shard_version(s), 1);
    ck_assert_uint_eq(ps_shard_clock(s), 0); /* rank 1 has not pushed */
    ck_assert_int_eq(push(s, 0, 1, g), 0);   /* 1 <= clock 0 + staleness 1 */
    APPLIED();
    ck_assert_uint_eq(ps_shard_version(s), 2);
    ck_assert_int_eq(push(s, 0, 2, g), SMLT_ESTEP); /* 2 > 0 + 1 */
    ck_assert_int_eq(push(s, 0, 1, g), 1);          /* a retry */
    ck_assert_int_eq(push(s, 1, 0, g), 0);          /* the slow rank catches up */
    APPLIED();
    ck_assert_uint_eq(ps_shard_clock(s), 1);
    ck_assert_int_eq(push(s, 0, 2, g), 0);
    APPLIED();
    ck_assert_int_eq(push(s, 0, 3, g), SMLT_ESTEP);
    ck_assert_int_eq(push(s, 1, 3, g), SMLT_ESTEP); /* the slow rank is bounded the same way */
    ck_assert_int_eq(push(s, 1, 1, g), 0);
    APPLIED();
    ck_assert_uint_eq(ps_shard_clock(s), 2);
    ck_assert_uint_eq(ps_shard_version(s), 5);
    ck_assert_int_eq(push(s, 0, 3, g), 0);
    APPLIED();
    /* a larger bound, set live */
    uint32_t st4 = 4;
    char err[256];
    ck_assert_int_eq(ps_shard_update(s, NULL, NULL, NULL, &st4, err, sizeof err), 0);
    ck_assert_int_eq(push(s, 0, 6, g), 0);
    APPLIED();
    ck_assert_int_eq(push(s, 0, 7, g), SMLT_ESTEP);
#undef APPLIED
    struct ps_shard_stats st;
    stats(s, &st);
    ck_assert_uint_eq(st.updates_applied, 7);
    ck_assert_uint_eq(st.pushes_counted, 7);
    free(p);
    free(g);
    ps_shard_free(s);
}
END_TEST

START_TEST(test_asp_each_push)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_ASP, 2, 0, SMLT_OPT_SGD, 0.25f);
    struct ps_shard *s = mkshard(0, mkmap(1, 100, 2), &c, &ctx);
    size_t n = nof(s);
    rng_seed(17);
    float *p = params_copy(s), *g = grad_new(n);
    const uint64_t steps[][2] = {{0, 0}, {0, 1}, {0, 100}, {1, 0}, {1, 5}, {0, 101}};
    for (int k = 0; k < 6; k++) {
        ck_assert_int_eq(push(s, (uint32_t)steps[k][0], steps[k][1], g), 0);
        ck_assert_uint_eq(ps_shard_version(s), (uint64_t)k + 1);
        for (size_t i = 0; i < n; i++)
            p[i] = p[i] - 0.25f * g[i];
        assert_params_eq(s, p, "asp");
    }
    ck_assert_int_eq(ctx.advance, 6);
    /* retries, including of a step below the rank's last */
    ck_assert_int_eq(push(s, 0, 101, g), 1);
    ck_assert_int_eq(push(s, 0, 50, g), 1);
    ck_assert_int_eq(push(s, 1, 5, g), 1);
    ck_assert_uint_eq(ps_shard_version(s), 6);
    ck_assert_int_eq(push(s, 2, 0, g), SMLT_EINVAL);
    assert_params_eq(s, p, "asp after duplicates");
    free(p);
    free(g);
    ps_shard_free(s);
}
END_TEST

/* ---- optimizer through the shard -------------------------------------------------------------- */

START_TEST(test_adam_matches_optim)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 2, 0, SMLT_OPT_ADAM, 0.01f);
    c.optim.weight_decay = 0.01f;
    c.optim.decoupled = 1;
    struct ps_shard *s = mkshard(1, mkmap(1, 1000, 2), &c, &ctx);
    size_t n = nof(s);
    float *ref = params_copy(s), *dst = malloc(n * 4), *state = calloc(2 * n, 4);
    rng_seed(19);
    for (int step = 0; step < 3; step++) {
        float *g0 = grad_new(n), *g1 = grad_new(n);
        ck_assert_int_eq(push(s, 0, (uint64_t)step, g0), 0);
        ck_assert_int_eq(push(s, 1, (uint64_t)step, g1), 0);
        ck_assert_uint_eq(ps_shard_version(s), (uint64_t)step + 1);
        float *sum = malloc(n * 4);
        memcpy(sum, g0, n * 4);
        ps_optim_accumulate(sum, g1, n);
        ps_optim_apply(&c.optim, (uint64_t)step + 1, dst, ref, sum, 0.5f, state, n);
        memcpy(ref, dst, n * 4);
        assert_params_eq(s, ref, "adam via shard");
        free(sum);
        free(g0);
        free(g1);
    }
    free(ref);
    free(dst);
    free(state);
    ps_shard_free(s);

    /* ASP: Adam's t counts the updates, one per push */
    c = mkconf(SMLT_SYNC_ASP, 2, 0, SMLT_OPT_ADAM, 0.01f);
    s = mkshard(0, mkmap(1, 1000, 2), &c, &ctx);
    n = nof(s);
    ref = params_copy(s);
    dst = malloc(n * 4);
    state = calloc(2 * n, 4);
    for (int k = 0; k < 4; k++) {
        float *g = grad_new(n);
        ck_assert_int_eq(push(s, (uint32_t)(k % 2), (uint64_t)(k / 2), g), 0);
        ps_optim_apply(&c.optim, (uint64_t)k + 1, dst, ref, g, 1.0f, state, n);
        memcpy(ref, dst, n * 4);
        assert_params_eq(s, ref, "adam asp");
        free(g);
    }
    free(ref);
    free(dst);
    free(state);
    ps_shard_free(s);
}
END_TEST

/* ---- parameters, references, buffers ---------------------------------------------------------- */

START_TEST(test_params_ref_snapshot)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 2, 0, SMLT_OPT_MOMENTUM, 0.25f);
    struct ps_shard *s = mkshard(0, mkmap(1, 100, 2), &c, &ctx);
    size_t n = nof(s);
    rng_seed(23);
    uint64_t v = 9, cl = 9;
    const float *held = ps_shard_params_ref(s, &v, &cl);
    ck_assert_uint_eq(v, 0);
    float *snap = malloc(n * 4);
    memcpy(snap, held, n * 4);
    /* many updates while a pull still sends `held`: its bytes must not change */
    for (int step = 0; step < 6; step++) {
        float *g = grad_new(n);
        ck_assert_int_eq(push(s, 0, (uint64_t)step, g), 0);
        ck_assert_int_eq(push(s, 1, (uint64_t)step, g), 0);
        ck_assert_msg(memcmp(held, snap, n * 4) == 0, "referenced params changed at step %d",
                      step);
        free(g);
    }
    ck_assert_uint_eq(ps_shard_version(s), 6);
    /* a new pull sees the new values, in another buffer */
    const float *now = ps_shard_params_ref(s, &v, &cl);
    ck_assert_uint_eq(v, 6);
    ck_assert_uint_eq(cl, 6);
    ck_assert_ptr_ne(now, held);
    ck_assert(memcmp(now, snap, n * 4) != 0);
    /* two references to the same version are the same buffer */
    const float *again = ps_shard_params_ref(s, NULL, NULL);
    ck_assert_ptr_eq(again, now);
    ps_shard_params_unref(s, again);
    ps_shard_params_unref(s, held);
    float *now_copy = malloc(n * 4);
    memcpy(now_copy, now, n * 4);
    /* and the still-held current buffer survives further updates too */
    for (int step = 6; step < 9; step++) {
        float *g = grad_new(n);
        ck_assert_int_eq(push(s, 0, (uint64_t)step, g), 0);
        ck_assert_int_eq(push(s, 1, (uint64_t)step, g), 0);
        free(g);
    }
    ck_assert(memcmp(now, now_copy, n * 4) == 0);
    ps_shard_params_unref(s, now);
    free(now_copy);
    free(snap);
    ps_shard_free(s);
}
END_TEST

START_TEST(test_buf_pool_cap)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 3, 0, SMLT_OPT_SGD, 0.25f);
    struct ps_shard *s = mkshard(1, mkmap(1, 1000, 2), &c, &ctx);
    size_t n = nof(s);
    float *p0 = params_copy(s);
    float *bufs[256];
    int got = 0;
    while (got < 256) {
        float *b = ps_shard_buf_get(s);
        if (!b)
            break;
        /* each is writable over the whole range and distinct from the others */
        memset(b, 0xff, n * 4);
        for (int k = 0; k < got; k++)
            ck_assert_msg(b + n <= bufs[k] || bufs[k] + n <= b, "buffer %d overlaps %d", got, k);
        bufs[got++] = b;
    }
    ck_assert_msg(got < 256, "the pool has no cap");
    ck_assert_int_ge(got, (int)SMLT_MAX_GRAD_BUFS);
    /* range-sized buffers are capped near SMLT_MAX_GRAD_BUFS (gradients plus the parameters) */
    ck_assert_int_le(got, (int)SMLT_MAX_GRAD_BUFS + 4);
    ck_assert_ptr_null(ps_shard_buf_get(s));
    struct ps_shard_stats st;
    stats(s, &st);
    ck_assert_uint_le(st.bufs_allocated, SMLT_MAX_GRAD_BUFS + 4);
    ck_assert_uint_ge(st.bufs_allocated, (uint32_t)got + 1);
    /* the parameters were never handed out */
    assert_params_eq(s, p0, "params overwritten through a pool buffer");
    /* one back: it is handed out again */
    int before = ctx.buffree;
    ps_shard_buf_put(s, bufs[3]);
    ck_assert_int_gt(ctx.buffree, before);
    float *b = ps_shard_buf_get(s);
    ck_assert_ptr_eq(b, bufs[3]);
    ck_assert_ptr_null(ps_shard_buf_get(s));
    ps_shard_buf_put(s, NULL); /* harmless */
    for (int k = 0; k < got; k++)
        ps_shard_buf_put(s, bufs[k]);
    /* all back: a full step works again and needs no new allocation beyond the cap */
    rng_seed(29);
    float *g = grad_new(n);
    for (uint32_t r = 0; r < 3; r++)
        ck_assert_int_eq(push(s, r, 0, g), 0);
    ck_assert_uint_eq(ps_shard_version(s), 1);
    stats(s, &st);
    ck_assert_uint_le(st.bufs_allocated, (uint32_t)got + 1);
    free(g);
    free(p0);
    ps_shard_free(s);
}
END_TEST

/* Rejected pushes and set_params give their buffers back: many rounds never exhaust the pool. */
START_TEST(test_buf_no_leak_on_reject)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 2, 0, SMLT_OPT_SGD, 0.25f);
    struct ps_shard *s = mkshard(0, mkmap(1, 100, 2), &c, &ctx);
    size_t n = nof(s);
    rng_seed(31);
    float *g = grad_new(n);
    char err[256];
    ck_assert_int_eq(push(s, 0, 0, g), 0);
    for (int k = 0; k < 3 * (int)SMLT_MAX_GRAD_BUFS + 8; k++) {
        ck_assert_int_eq(commit_only(s, 0, 5, g), SMLT_ESTEP);
        ck_assert_int_eq(commit_only(s, 0, 0, g), 1);
        float *b = ps_shard_buf_get(s);
        ck_assert_ptr_nonnull(b);
        ck_assert_int_eq(ps_shard_set_params(s, mapv(s) + 1, ps_shard_lo(s), ps_shard_hi(s), b, 1,
                                             1, NULL, err, sizeof err),
                         SMLT_ESTALEMAP);
    }
    ck_assert_int_eq(push(s, 1, 0, g), 0);
    ck_assert_uint_eq(ps_shard_version(s), 1);
    free(g);
    ps_shard_free(s);
}
END_TEST

START_TEST(test_set_params)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 1, 0, SMLT_OPT_SGD, 0.25f);
    struct ps_shard *s = mkshard(1, mkmap(6, 100, 2), &c, &ctx);
    size_t n = nof(s);
    uint64_t lo = ps_shard_lo(s), hi = ps_shard_hi(s);
    char err[256];
    float *vals = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        vals[i] = (float)i + 0.5f;
    /* whole range, copied from a borrowed array */
    uint64_t seq = 0;
    ck_assert_int_eq(ps_shard_set_params(s, 6, lo, hi, vals, 0, 1, &seq, err, sizeof err), 0);
    ck_assert_uint_gt(seq, 0);
    ck_assert_uint_ge(ps_shard_seq_done(s), seq);
    vals[0] = -99.0f; /* borrowed only for the call */
    float *want = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        want[i] = (float)i + 0.5f;
    assert_params_eq(s, want, "whole set");
    ck_assert_uint_eq(ps_shard_version(s), 0); /* not an update */
    /* a partial range: the rest stays */
    float part[7] = {-1, -2, -3, -4, -5, -6, -7};
    uint64_t seq2 = 0;
    ck_assert_int_eq(ps_shard_set_params(s, 6, lo + 3, lo + 10, part, 0, 1, &seq2, err,
                                         sizeof err),
                     0);
    ck_assert_uint_gt(seq2, seq);
    for (int i = 0; i < 7; i++)
        want[3 + i] = part[i];
    assert_params_eq(s, want, "partial set");
    /* the last element alone, and an empty range */
    float last = 42.0f;
    ck_assert_int_eq(ps_shard_set_params(s, 6, hi - 1, hi, &last, 0, 0, NULL, err, sizeof err), 0);
    want[n - 1] = 42.0f;
    assert_params_eq(s, want, "last element");
    ck_assert_int_eq(ps_shard_set_params(s, 6, lo + 5, lo + 5, &last, 0, 0, NULL, err, sizeof err),
                     0);
    assert_params_eq(s, want, "empty range");
    /* an owned buffer over the whole range is installed as is */
    float *b = ps_shard_buf_get(s);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < n; i++)
        b[i] = want[i] = (float)i * 2.0f;
    ck_assert_int_eq(ps_shard_set_params(s, 6, lo, hi, b, 1, 1, NULL, err, sizeof err), 0);
    const float *p = ps_shard_params_ref(s, NULL, NULL);
    ck_assert_ptr_eq(p, b);
    ps_shard_params_unref(s, p);
    assert_params_eq(s, want, "owned set");
    /* refused writes */
    ck_assert_int_eq(ps_shard_set_params(s, 5, lo, hi, vals, 0, 1, NULL, err, sizeof err),
                     SMLT_ESTALEMAP);
    ck_assert_int_eq(ps_shard_set_params(s, 6, lo - 1, hi, vals, 0, 1, NULL, err, sizeof err),
                     SMLT_ERANGE);
    ck_assert_int_eq(ps_shard_set_params(s, 6, lo, hi + 1, vals, 0, 1, NULL, err, sizeof err),
                     SMLT_ERANGE);
    ck_assert_int_eq(ps_shard_set_params(s, 6, lo + 5, lo + 4, vals, 0, 1, NULL, err, sizeof err),
                     SMLT_ERANGE);
    assert_params_eq(s, want, "after refused sets");
    /* pull_check agrees on ranges */
    ck_assert_int_eq(ps_shard_pull_check(s, 6, lo, hi, err, sizeof err), 0);
    ck_assert_int_eq(ps_shard_pull_check(s, 6, lo + 1, lo + 1, err, sizeof err), 0);
    ck_assert_int_eq(ps_shard_pull_check(s, 6, lo, hi + 1, err, sizeof err), SMLT_ERANGE);
    ck_assert_int_eq(ps_shard_pull_check(s, 6, 0, lo, err, sizeof err), SMLT_ERANGE);
    ck_assert_int_eq(ps_shard_pull_check(s, 7, lo, hi, err, sizeof err), SMLT_ESTALEMAP);
    /* an update after a set starts from the set values */
    rng_seed(37);
    float *g = grad_new(n);
    ck_assert_int_eq(push(s, 0, 0, g), 0);
    for (size_t i = 0; i < n; i++)
        want[i] = want[i] - 0.25f * g[i];
    assert_params_eq(s, want, "update after set");
    free(g);
    free(vals);
    free(want);
    ps_shard_free(s);
}
END_TEST

/* reset_state zeroes the optimizer state of the range written, and only when asked */
START_TEST(test_set_params_reset_state)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 1, 0, SMLT_OPT_MOMENTUM, 0.25f);
    c.optim.momentum = 0.5f;
    struct ps_shard *s = mkshard(0, mkmap(2, 100, 2), &c, &ctx);
    size_t n = nof(s);
    uint64_t lo = ps_shard_lo(s), hi = ps_shard_hi(s);
    char err[256];
    float *g = malloc(n * 4), *zero = calloc(n, 4), *want = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        g[i] = 1.0f;
    /* step 0 builds velocity v = g = 1 */
    ck_assert_int_eq(push(s, 0, 0, g), 0);
    /* zero the params; reset the state of [lo, lo+8) only */
    ck_assert_int_eq(ps_shard_set_params(s, 2, lo, hi, zero, 0, 0, NULL, err, sizeof err), 0);
    ck_assert_int_eq(ps_shard_set_params(s, 2, lo, lo + 8, zero, 0, 1, NULL, err, sizeof err), 0);
    ck_assert_int_eq(push(s, 0, 1, g), 0);
    /* reset: v = 1, w = -0.25; kept: v = 0.5 + 1 = 1.5, w = -0.375 */
    for (size_t i = 0; i < n; i++)
        want[i] = i < 8 ? -0.25f : -0.375f;
    assert_params_eq(s, want, "reset_state");
    free(g);
    free(zero);
    free(want);
    ps_shard_free(s);
}
END_TEST

/* Reconfiguring replaces the job; buffers from the old job do not leak into the new one. */
START_TEST(test_reconfigure)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 1, 0, SMLT_OPT_SGD, 0.25f);
    struct ps_shard *s = mkshard(0, mkmap(1, 100, 2), &c, &ctx);
    rng_seed(41);
    float *g = grad_new(nof(s));
    ck_assert_int_eq(push(s, 0, 0, g), 0);
    ck_assert_uint_eq(ps_shard_version(s), 1);
    const float *held = ps_shard_params_ref(s, NULL, NULL); /* a pull in flight */
    float *snap = malloc(nof(s) * 4);
    memcpy(snap, held, nof(s) * 4);
    char err[256];
    struct part_map *m2 = mkmap(2, 1000, 2);
    struct part_map *ref = part_map_dup(m2);
    ck_assert_int_eq(ps_shard_configure(s, m2, &c, err, sizeof err), 0);
    ck_assert_int_eq(ctx.configured, 2);
    ck_assert_uint_eq(ps_shard_version(s), 0);
    ck_assert_uint_eq(ps_shard_clock(s), 0);
    ck_assert_uint_eq(ps_shard_hi(s), ref->shards[0].hi);
    ck_assert(memcmp(held, snap, 8 * 4) == 0); /* the old pull's bytes stay valid */
    ps_shard_params_unref(s, held);
    float *want = malloc(nof(s) * 4);
    part_map_init_values(ref, ps_shard_lo(s), ps_shard_hi(s), want);
    assert_params_eq(s, want, "reconfigured params");
    /* rank 0 starts again at step 0 in the new job */
    float *g2 = grad_new(nof(s));
    ck_assert_int_eq(push(s, 0, 0, g2), 0);
    ck_assert_uint_eq(ps_shard_version(s), 1);
    ck_assert_int_eq(ps_shard_push_check(s, 1, 0, 1, ps_shard_lo(s), ps_shard_hi(s), err,
                                         sizeof err),
                     SMLT_ESTALEMAP);
    free(g);
    free(g2);
    free(snap);
    free(want);
    part_map_free(ref);
    ps_shard_free(s);
}
END_TEST

/* A push whose buffer was taken under the old configuration and committed after a reconfigure
 * (the payload was still arriving) must not be counted into the new job: it was computed for the
 * old map, and its buffer has the old range's size. */
START_TEST(test_commit_across_reconfigure)
{
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 2, 0, SMLT_OPT_SGD, 0.25f);
    struct ps_shard *s = mkshard(0, mkmap(1, 64, 2), &c, &ctx); /* range of 32 floats */
    char err[256];
    ck_assert_int_eq(ps_shard_push_check(s, 1, 0, 0, ps_shard_lo(s), ps_shard_hi(s), err,
                                         sizeof err),
                     0);
    float *old = ps_shard_buf_get(s);
    ck_assert_ptr_nonnull(old);
    memset(old, 0, 32 * 4);
    /* the admin reconfigures with a bigger model while the payload is being read */
    ck_assert_int_eq(ps_shard_configure(s, mkmap(2, 100000, 2), &c, err, sizeof err), 0);
    ck_assert_uint_gt(nof(s), 32);
    /* BUG (ps_shard.c ps_shard_push_commit): the commit re-checks with the shard's current map
     * version, not the push's, and accepts a buffer retired with the old configuration. With
     * BSP it becomes the accumulator of the new job's step (32 floats where the new range has
     * ~50000: the apply writes past the old mapping). Expected: refused, buffer released. */
    int rc = ps_shard_push_commit(s, 0, 0, old, err, sizeof err);
    ck_assert_msg(rc < 0, "push from the old configuration counted (rc %d)", rc);
    struct ps_shard_stats st;
    stats(s, &st);
    ck_assert_uint_eq(st.pushes_counted, 0);
    ps_shard_free(s);
}
END_TEST

START_TEST(test_sync_names)
{
    const char *names[] = {"bsp", "ssp", "asp"};
    for (int m = SMLT_SYNC_BSP; m <= SMLT_SYNC_ASP; m++) {
        ck_assert_str_eq(smlt_enum_sync_name((enum smlt_sync)m), names[m]);
        enum smlt_sync got = (enum smlt_sync)9;
        ck_assert_int_eq(smlt_enum_sync_parse(names[m], &got), 0);
        ck_assert_int_eq(got, m);
    }
    enum smlt_sync got = SMLT_SYNC_SSP;
    ck_assert_int_eq(smlt_enum_sync_parse("BSP", &got), 0);
    ck_assert_int_eq(got, SMLT_SYNC_BSP);
    ck_assert_int_eq(smlt_enum_sync_parse("sync", &got), SMLT_EINVAL);
    ck_assert_int_eq(smlt_enum_sync_parse(NULL, &got), SMLT_EINVAL);
    ck_assert_str_eq(smlt_enum_sync_name((enum smlt_sync)5), "?");
}
END_TEST

/* ---- the apply thread ------------------------------------------------------------------------- */

static float *buf_get_wait(struct ps_shard *s)
{
    for (int tries = 0; tries < 1000; tries++) {
        float *b = ps_shard_buf_get(s);
        if (b)
            return b;
        ps_shard_drain(s); /* the pool grows in the background */
    }
    ck_abort_msg("no buffer");
    return NULL;
}

START_TEST(test_threaded_bsp)
{
    struct event_base *base = event_base_new();
    ck_assert_ptr_nonnull(base);
    struct ctx ctx = {0};
    struct ps_shard *s = ps_shard_new(1, base, &cbs, &ctx);
    ck_assert_ptr_nonnull(s);
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 2, 0, SMLT_OPT_SGD, 0.125f);
    char err[256];
    /* a range above the size the shard applies inline on the loop thread (256 Ki elements) */
    ck_assert_int_eq(ps_shard_configure(s, mkmap(3, 600000, 2), &c, err, sizeof err), 0);
    /* initialization runs on the apply thread; its completion only on the loop thread */
    ck_assert_int_eq(ps_shard_push_check(s, 3, 0, 0, ps_shard_lo(s), ps_shard_hi(s), err,
                                         sizeof err),
                     SMLT_EAGAIN);
    ck_assert_int_eq(ps_shard_pull_check(s, 3, ps_shard_lo(s), ps_shard_lo(s), err, sizeof err),
                     SMLT_EAGAIN);
    ck_assert_int_eq(ps_shard_configure(s, mkmap(4, 100, 2), &c, err, sizeof err), SMLT_EBUSY);
    ps_shard_drain(s);
    ck_assert_int_eq(ps_shard_ready(s), 1);
    ck_assert_int_eq(ctx.configured, 1);
    ck_assert_int_eq(ctx.conf_err, 0);
    size_t n = nof(s);
    ck_assert_uint_gt(n, 256u << 10);
    uint64_t lo = ps_shard_lo(s), hi = ps_shard_hi(s);
    /* parameters on a 1/1024 grid so that the reference is exact */
    float *ref = malloc(n * 4);
    rng_seed(43);
    for (size_t i = 0; i < n; i++)
        ref[i] = rng_grad();
    ck_assert_int_eq(ps_shard_set_params(s, 3, lo, hi, ref, 0, 1, NULL, err, sizeof err), 0);
    ps_shard_drain(s);
    assert_params_eq(s, ref, "threaded set");
    float *pool[5];
    for (int k = 0; k < 5; k++)
        pool[k] = grad_new(n);
    for (uint64_t step = 0; step < 50; step++) {
        /* gradients from a small rotating set: cheap, and different every step */
        const float *g0 = pool[step % 5], *g1 = pool[(step * 3 + 1) % 5];
        for (uint32_t r = 0; r < 2; r++) {
            ck_assert_int_eq(ps_shard_push_check(s, 3, r, step, lo, hi, err, sizeof err), 0);
            float *b = buf_get_wait(s);
            memcpy(b, r ? g1 : g0, n * 4);
            ck_assert_int_eq(ps_shard_push_commit(s, r, step, b, err, sizeof err), 0);
        }
        /* the step is closed, its update in flight: nothing more for it, the next not open */
        ck_assert_int_eq(ps_shard_push_check(s, 3, 0, step, lo, hi, err, sizeof err), 1);
        int ahead = ps_shard_push_check(s, 3, 0, step + 1, lo, hi, err, sizeof err);
        ck_assert_msg(ahead == SMLT_ESTEP, "step %llu: push of the next step: %d, version %llu",
                      (unsigned long long)step, ahead, (unsigned long long)ps_shard_version(s));
        if (step == 10)
            ck_assert_int_eq(ps_shard_configure(s, mkmap(4, 100, 2), &c, err, sizeof err),
                             SMLT_EBUSY);
        if (step % 2) {
            ps_shard_drain(s);
        } else {
            /* the real path: the apply thread wakes the loop, which runs the completion */
            for (int k = 0; k < 100000 && ps_shard_version(s) != step + 1; k++)
                event_base_loop(base, EVLOOP_ONCE);
        }
        ck_assert_uint_eq(ps_shard_version(s), step + 1);
        for (size_t i = 0; i < n; i++)
            ref[i] = ref[i] - 0.0625f * (g0[i] + g1[i]);
    }
    ps_shard_drain(s);
    ck_assert_uint_eq(ps_shard_clock(s), 50);
    ck_assert_int_eq(ctx.advance, 51); /* 50 updates and the set */
    assert_params_eq(s, ref, "threaded BSP after 50 steps");
    struct ps_shard_stats st;
    stats(s, &st);
    ck_assert_uint_eq(st.updates_applied, 50);
    ck_assert_uint_eq(st.pushes_counted, 100);
    free(ref);
    for (int k = 0; k < 5; k++)
        free(pool[k]);
    ps_shard_free(s);
    event_base_free(base);
}
END_TEST

/* With an event base but a small range, updates may run on the loop thread; the results and the
 * BSP rules are the same. */
START_TEST(test_threaded_small_range)
{
    struct event_base *base = event_base_new();
    struct ctx ctx = {0};
    struct ps_shard *s = ps_shard_new(0, base, &cbs, &ctx);
    ck_assert_ptr_nonnull(s);
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 2, 0, SMLT_OPT_SGD, 0.25f);
    char err[256];
    ck_assert_int_eq(ps_shard_configure(s, mkmap(1, 1000, 2), &c, err, sizeof err), 0);
    ps_shard_drain(s);
    ck_assert_int_eq(ps_shard_ready(s), 1);
    size_t n = nof(s);
    float *ref = params_copy(s);
    rng_seed(47);
    for (uint64_t step = 0; step < 5; step++) {
        float *g0 = grad_new(n), *g1 = grad_new(n);
        for (uint32_t r = 0; r < 2; r++) {
            ck_assert_int_eq(ps_shard_push_check(s, 1, r, step, ps_shard_lo(s), ps_shard_hi(s),
                                                 err, sizeof err),
                             0);
            float *b = buf_get_wait(s);
            memcpy(b, r ? g1 : g0, n * 4);
            ck_assert_int_eq(ps_shard_push_commit(s, r, step, b, err, sizeof err), 0);
        }
        ps_shard_drain(s);
        ck_assert_uint_eq(ps_shard_version(s), step + 1);
        for (size_t i = 0; i < n; i++)
            ref[i] = ref[i] - 0.125f * (g0[i] + g1[i]);
        assert_params_eq(s, ref, "small range with an event base");
        free(g0);
        free(g1);
    }
    free(ref);
    ps_shard_free(s);
    event_base_free(base);
}
END_TEST

/* ---- checkpoints -------------------------------------------------------------------------- */

static void tmpdir(char *d, size_t len)
{
    snprintf(d, len, "/tmp/test_ps_shard_ckpt.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d));
}

static void rmdir_all(const char *d)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    ck_assert_int_eq(system(cmd), 0);
}

/* Checkpoints every 2 steps, the newest 2 kept; a restore of step 6 brings back parameters,
 * Adam state and step count, version and the exactly-once table, so training the same two steps
 * again ends bit for bit at the checkpoint of step 8; checkpoints of another shard, range or
 * optimizer are refused. */
START_TEST(test_ckpt_take_restore)
{
    char dir[256], err[512];
    tmpdir(dir, sizeof dir);
    struct ctx ctx;
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 2, 0, SMLT_OPT_ADAM, 0.125f);
    snprintf(c.ckpt_dir, sizeof c.ckpt_dir, "%s", dir);
    c.ckpt_every = 2;
    c.ckpt_keep = 2;
    struct ps_shard *s = mkshard(0, mkmap(1, 1000, 2), &c, &ctx);
    size_t n = nof(s);
    rng_seed(5);
    float *g = grad_new(n);
    for (uint64_t step = 0; step < 8; step++)
        for (uint32_t r = 0; r < 2; r++)
            ck_assert_int_eq(push(s, r, step, g), 0);
    ck_assert_uint_eq(ps_shard_version(s), 8);
    struct ps_shard_stats st;
    stats(s, &st);
    ck_assert_uint_eq(st.ckpt_written, 4);
    ck_assert_uint_eq(st.ckpt_skipped, 0);
    ck_assert_uint_eq(st.ckpt_last_step, 8);
    uint64_t *steps;
    size_t k;
    ck_assert_int_eq(ps_ckpt_list(dir, 0, &steps, &k), 0);
    ck_assert_uint_eq(k, 2); /* keep 2 */
    ck_assert_uint_eq(steps[0], 8);
    ck_assert_uint_eq(steps[1], 6);
    free(steps);
    struct ps_ckpt *ck = NULL;
    ck_assert_int_eq(ps_ckpt_find(dir, 0, 6, &ck, NULL, 0, NULL, err, sizeof err), 0);
    ck_assert_int_eq(ps_shard_restore(s, ck, err, sizeof err), 0);
    ck_assert_uint_eq(ps_shard_version(s), 6);
    ck_assert_uint_eq(ps_shard_clock(s), 6);
    /* Steps up to 5 are duplicates again, 6 is open. */
    ck_assert_int_eq(push(s, 0, 5, g), 1);
    ck_assert_int_eq(push(s, 1, 5, g), 1);
    ck_assert_int_eq(push(s, 0, 7, g), SMLT_ESTEP);
    ps_ckpt_free(ck);
    for (uint64_t step = 6; step < 8; step++)
        for (uint32_t r = 0; r < 2; r++)
            ck_assert_int_eq(push(s, r, step, g), 0);
    ck_assert_int_eq(ps_ckpt_find(dir, 0, 8, &ck, NULL, 0, NULL, err, sizeof err), 0);
    assert_params_eq(s, ck->params, "replayed from the checkpoint of step 6");
    struct ps_shard_export e;
    ck_assert_int_eq(ps_shard_export(s, &e), 0);
    ck_assert_int_eq(memcmp(e.state, ck->state, 2 * n * sizeof(float)), 0);
    ck_assert_uint_eq(e.updates, ck->updates);

    /* Refusals: another shard id, another range, another optimizer. */
    struct ctx c1, c2, c3;
    struct ps_shard *other = mkshard(1, mkmap(1, 1000, 2), &c, &c1);
    ck_assert_int_eq(ps_shard_restore(other, ck, err, sizeof err), SMLT_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "shard 0"));
    struct ps_shard *wide = mkshard(0, mkmap(1, 2000, 2), &c, &c2);
    ck_assert_int_eq(ps_shard_restore(wide, ck, err, sizeof err), SMLT_ERANGE);
    struct ps_shard_conf sgd = mkconf(SMLT_SYNC_BSP, 2, 0, SMLT_OPT_SGD, 0.125f);
    struct ps_shard *plain = mkshard(0, mkmap(1, 1000, 2), &sgd, &c3);
    ck_assert_int_eq(ps_shard_restore(plain, ck, err, sizeof err), SMLT_EINVAL);
    ps_ckpt_free(ck);
    ps_shard_free(other);
    ps_shard_free(wide);
    ps_shard_free(plain);
    free(g);
    ps_shard_free(s);
    rmdir_all(dir);
}
END_TEST

/* With the apply and writer threads: every checkpoint due is written or, while the previous one
 * is still being written, skipped and counted; pushes never wait for a write. */
START_TEST(test_ckpt_threaded)
{
    char dir[256], err[256];
    tmpdir(dir, sizeof dir);
    struct event_base *base = event_base_new();
    struct ctx ctx = {0};
    struct ps_shard *s = ps_shard_new(0, base, &cbs, &ctx);
    struct ps_shard_conf c = mkconf(SMLT_SYNC_BSP, 1, 0, SMLT_OPT_MOMENTUM, 0.125f);
    snprintf(c.ckpt_dir, sizeof c.ckpt_dir, "%s", dir);
    c.ckpt_every = 1;
    ck_assert_int_eq(ps_shard_configure(s, mkmap(1, 600000, 1), &c, err, sizeof err), 0);
    ps_shard_drain(s);
    size_t n = nof(s);
    rng_seed(9);
    float *g = grad_new(n);
    for (uint64_t step = 0; step < 20; step++) {
        ck_assert_int_eq(ps_shard_push_check(s, 1, 0, step, 0, n, err, sizeof err), 0);
        float *b = buf_get_wait(s);
        memcpy(b, g, n * sizeof *b);
        ck_assert_int_eq(ps_shard_push_commit(s, 0, step, b, err, sizeof err), 0);
        for (int k = 0; k < 100000 && ps_shard_version(s) != step + 1; k++)
            event_base_loop(base, EVLOOP_ONCE);
    }
    ps_shard_ckpt_wait(s);
    struct ps_shard_stats st;
    stats(s, &st);
    ck_assert_uint_eq(st.ckpt_written + st.ckpt_skipped, 20);
    ck_assert_uint_ge(st.ckpt_written, 1);
    ck_assert_uint_eq(st.ckpt_failed, 0);
    struct ps_ckpt *ck = NULL;
    ck_assert_int_eq(ps_ckpt_find(dir, 0, st.ckpt_last_step, &ck, NULL, 0, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(ck->nstate, 1);
    ck_assert_uint_eq(ck->version, st.ckpt_last_step);
    ps_ckpt_free(ck);
    free(g);
    ps_shard_free(s);
    event_base_free(base);
    rmdir_all(dir);
}
END_TEST

static Suite *ps_shard_suite(void)
{
    Suite *s = suite_create("ps_shard");
    TCase *tc = tcase_create("lifecycle");
    tcase_add_test(tc, test_unconfigured);
    tcase_add_test(tc, test_configure_errors);
    tcase_add_test(tc, test_configure_init_values);
    tcase_add_test(tc, test_reconfigure);
    tcase_add_test(tc, test_commit_across_reconfigure);
    tcase_add_test(tc, test_sync_names);
    suite_add_tcase(s, tc);
    tc = tcase_create("sync");
    tcase_add_test(tc, test_bsp_step);
    tcase_add_test(tc, test_bsp_duplicate);
    tcase_add_test(tc, test_push_errors);
    tcase_add_test(tc, test_bsp_lower_workers);
    tcase_add_test(tc, test_ssp_bound);
    tcase_add_test(tc, test_asp_each_push);
    tcase_add_test(tc, test_adam_matches_optim);
    suite_add_tcase(s, tc);
    tc = tcase_create("buffers");
    tcase_add_test(tc, test_params_ref_snapshot);
    tcase_add_test(tc, test_buf_pool_cap);
    tcase_add_test(tc, test_buf_no_leak_on_reject);
    tcase_add_test(tc, test_set_params);
    tcase_add_test(tc, test_set_params_reset_state);
    suite_add_tcase(s, tc);
    tc = tcase_create("thread");
    tcase_add_test(tc, test_threaded_bsp);
    tcase_add_test(tc, test_threaded_small_range);
    tcase_add_test(tc, test_noise_scale_stats);
    suite_add_tcase(s, tc);
    tc = tcase_create("checkpoints");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ckpt_take_restore);
    tcase_add_test(tc, test_ckpt_threaded);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ps_shard_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
