/* test_ps_optim.c: Check suite for ps/ps_optim.c (fused SGD, momentum, Nesterov, Adam, AdamW,
 * AdaGrad).
 *
 * Expected values come from two independent sources: literals worked out by hand for a single
 * element under a constant gradient, and a double-precision reference written here straight
 * from the PyTorch documentation's update rules (torch.optim.SGD / Adam / AdamW / Adagrad,
 * dampening 0, lr_decay 0, initial accumulator 0). The fused float code is compared to the
 * reference with a relative tolerance; aliasing variants are compared bit for bit. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_optim.h"
#include "smlt_error.h"

/* A check for hot loops: Check's ck_assert_* record a checkpoint per call (a pipe write each),
 * which makes element-wise asserts over large arrays slow; this one costs nothing on success. */
#define REQUIRE(expr, ...)                                                                         \
    do {                                                                                           \
        if (!(expr))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

/* ---- helpers -------------------------------------------------------------------------------- */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
    rng_state = s ? s : 1;
}

static double rng_unit(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static float rng_sym(float scale)
{
    return (float)((rng_unit() * 2.0 - 1.0) * scale);
}

static struct ps_optim_conf conf_of(enum smlt_optim k, float lr)
{
    struct ps_optim_conf c;
    ps_optim_conf_default(&c);
    c.kind = k;
    c.lr = lr;
    return c;
}

static void assert_close(double got, double want, double rel, const char *what, int step,
                         size_t i)
{
    double tol = rel * fabs(want) + 1e-6;
    ck_assert_msg(fabs(got - want) <= tol, "%s step %d elem %zu: got %.9g want %.9g", what, step,
                  i, got, want);
}

/* Double-precision reference (PyTorch docs). state: m/momentum buffer/sum, v for Adam. */
struct ref {
    double w, m, v;
};

static void ref_step(const struct ps_optim_conf *c, int t, struct ref *r, double g, double scale)
{
    double lr = c->lr, wd = c->weight_decay;
    g *= scale;
    switch (c->kind) {
    case SMLT_OPT_SGD:
        g += wd * r->w;
        r->w -= lr * g;
        break;
    case SMLT_OPT_MOMENTUM:
        g += wd * r->w;
        r->m = t == 1 ? g : c->momentum * r->m + g; /* PyTorch: buf = g on the first step */
        r->w -= lr * (c->nesterov ? g + c->momentum * r->m : r->m);
        break;
    case SMLT_OPT_ADAM: {
        if (c->decoupled)
            r->w *= 1.0 - lr * wd; /* AdamW: decay the weights, not the gradient */
        else
            g += wd * r->w;
        r->m = c->beta1 * r->m + (1.0 - c->beta1) * g;
        r->v = c->beta2 * r->v + (1.0 - c->beta2) * g * g;
        double mh = r->m / (1.0 - pow(c->beta1, t));
        double vh = r->v / (1.0 - pow(c->beta2, t));
        r->w -= lr * mh / (sqrt(vh) + c->eps);
        break;
    }
    case SMLT_OPT_ADAGRAD:
        g += wd * r->w;
        r->m += g * g;
        r->w -= lr * g / (sqrt(r->m) + c->eps);
        break;
    }
}

/* Runs `steps` updates on n elements with per-step gradients grads[s][i], comparing with the
 * reference after each. Gradients are passed as a sum of `parts` equal pieces scaled back. */
static void check_against_ref(const struct ps_optim_conf *c, size_t n, int steps, const float *w0,
                              const float *grads, float scale, double rel, const char *what)
{
    int spp = ps_optim_state_per_param(c->kind);
    float *w = malloc(n * sizeof *w), *dst = malloc(n * sizeof *dst);
    float *state = calloc((size_t)(spp ? spp : 1) * n, sizeof *state);
    struct ref *r = calloc(n, sizeof *r);
    memcpy(w, w0, n * sizeof *w);
    for (size_t i = 0; i < n; i++)
        r[i].w = w0[i];
    for (int s = 0; s < steps; s++) {
        const float *g = grads + (size_t)s * n;
        ps_optim_apply(c, (uint64_t)s + 1, dst, w, g, scale, state, n);
        for (size_t i = 0; i < n; i++) {
            ref_step(c, s + 1, &r[i], g[i], scale);
            assert_close(dst[i], r[i].w, rel, what, s + 1, i);
        }
        memcpy(w, dst, n * sizeof *w);
    }
    free(w);
    free(dst);
    free(state);
    free(r);
}

/* Runs three steps on one element with a constant gradient; returns the params after each. */
static void three_steps(const struct ps_optim_conf *c, float w0, float g, float out[3])
{
    float w = w0;
    float state[2] = {0, 0};
    for (int s = 0; s < 3; s++) {
        /* one element: state + n is state[1] */
        ps_optim_apply(c, (uint64_t)s + 1, &w, &w, &g, 1.0f, state, 1);
        out[s] = w;
    }
}

#define LIT_TOL 2e-6

static void assert_lits(const float got[3], const double want[3], const char *what)
{
    for (int s = 0; s < 3; s++)
        ck_assert_msg(fabs(got[s] - want[s]) <= LIT_TOL * (1 + fabs(want[s])),
                      "%s step %d: got %.9g want %.9g", what, s + 1, got[s], want[s]);
}

/* ---- hand-computed literals ----------------------------------------------------------------- */

START_TEST(test_sgd_literals)
{
    struct ps_optim_conf c = conf_of(SMLT_OPT_SGD, 0.1f);
    float got[3];
    three_steps(&c, 1.0f, 0.5f, got);
    assert_lits(got, (const double[]){0.95, 0.90, 0.85}, "sgd");
    /* weight decay only: w *= 1 - lr*wd each step */
    c.weight_decay = 0.5f;
    three_steps(&c, 1.0f, 0.0f, got);
    assert_lits(got, (const double[]){0.95, 0.9025, 0.857375}, "sgd wd");
    /* both: w1 = 2 - 0.1*(1 + 0.5*2) = 1.8; w2 = 1.8 - 0.1*(1 + 0.9) = 1.61;
     * w3 = 1.61 - 0.1*(1 + 0.805) = 1.4295 */
    three_steps(&c, 2.0f, 1.0f, got);
    assert_lits(got, (const double[]){1.8, 1.61, 1.4295}, "sgd g+wd");
}
END_TEST

START_TEST(test_momentum_literals)
{
    struct ps_optim_conf c = conf_of(SMLT_OPT_MOMENTUM, 0.1f);
    c.momentum = 0.9f;
    float got[3];
    /* v: 1, 1.9, 2.71; w: -0.1, -0.29, -0.561 */
    three_steps(&c, 0.0f, 1.0f, got);
    assert_lits(got, (const double[]){-0.1, -0.29, -0.561}, "momentum");
    /* Nesterov: w -= lr*(g + mu*v): -0.19, -0.461, -0.8049 */
    c.nesterov = 1;
    three_steps(&c, 0.0f, 1.0f, got);
    assert_lits(got, (const double[]){-0.19, -0.461, -0.8049}, "nesterov");
    /* with weight decay 0.5 from w0 = 1, g = 0, plain momentum:
     * g1 = 0.5, v1 = 0.5, w1 = 0.95; g2 = 0.475, v2 = 0.925, w2 = 0.8575;
     * g3 = 0.42875, v3 = 1.26125, w3 = 0.731375 */
    c.nesterov = 0;
    c.weight_decay = 0.5f;
    three_steps(&c, 1.0f, 0.0f, got);
    assert_lits(got, (const double[]){0.95, 0.8575, 0.731375}, "momentum wd");
}
END_TEST

START_TEST(test_adam_literals)
{
    /* Constant gradient: with bias correction m_hat = g and v_hat = g^2 at every t, so each step
     * moves by lr * g / (|g| + eps) = 0.1 (to 1e-9). Without the correction the first step would
     * be 0.1 * 0.2 / sqrt(0.004) = 0.316. */
    struct ps_optim_conf c = conf_of(SMLT_OPT_ADAM, 0.1f);
    float got[3];
    three_steps(&c, 1.0f, 2.0f, got);
    assert_lits(got, (const double[]){0.9, 0.8, 0.7}, "adam const g");
    three_steps(&c, 1.0f, -0.001f, got);
    assert_lits(got, (const double[]){1.1, 1.2, 1.3}, "adam small g");
    /* AdamW, zero gradient: only the decoupled decay acts, w *= 1 - lr*wd */
    c.weight_decay = 0.5f;
    c.decoupled = 1;
    three_steps(&c, 1.0f, 0.0f, got);
    assert_lits(got, (const double[]){0.95, 0.9025, 0.857375}, "adamw decay only");
    /* Adam with L2 decay, zero gradient: the decay is the gradient (g = 0.5 w).
     * t=1: m=0.05, v=0.00025, m_hat=0.5, v_hat=0.25 -> w1 = 1 - 0.1 = 0.9
     * t=2: g=0.45, m=0.09, v=0.00045225, m_hat=0.09/0.19, v_hat=0.00045225/0.001999
     *      -> w2 = 0.9 - 0.1*0.4736842/0.4756447 = 0.8004122
     * t=3: g=0.4002061, m=0.1210206, v=0.0006119627, bc1=0.271, bc2=0.002997001
     *      -> w3 = 0.8004122 - 0.1*0.4465705/0.4518757 = 0.7015863 */
    c.decoupled = 0;
    three_steps(&c, 1.0f, 0.0f, got);
    assert_lits(got, (const double[]){0.9, 0.8004122, 0.7015863}, "adam l2");
}
END_TEST

START_TEST(test_adagrad_literals)
{
    struct ps_optim_conf c = conf_of(SMLT_OPT_ADAGRAD, 0.1f);
    c.eps = 1e-10f;
    float got[3];
    /* h = 1, 2, 3: w = 0.9, 0.9 - 0.1/sqrt(2), ... - 0.1/sqrt(3) */
    three_steps(&c, 1.0f, 1.0f, got);
    assert_lits(got, (const double[]){0.9, 0.8292893219, 0.7715542950}, "adagrad");
    /* eps is added to sqrt(h), outside the root: g = eps = 1e-4 halves the first step */
    c.eps = 1e-4f;
    c.lr = 1.0f;
    three_steps(&c, 0.0f, 1e-4f, got);
    /* h1 = 1e-8: step 1e-4/(1e-4+1e-4) = 0.5; h2 = 2e-8: 1/(sqrt2+1) = 0.4142136;
     * h3 = 3e-8: 1/(sqrt3+1) = 0.3660254 */
    assert_lits(got, (const double[]){-0.5, -0.9142136, -1.2802390}, "adagrad eps");
}
END_TEST

/* ---- against the double reference, several elements, varied gradients ---------------------- */

static void varied_case(struct ps_optim_conf c, const char *what, float scale)
{
    enum { N = 13, STEPS = 3 };
    float w0[N], g[STEPS * N];
    rng_seed(0xC0FFEE ^ (uint64_t)c.kind);
    for (int i = 0; i < N; i++)
        w0[i] = rng_sym(2.0f);
    for (int i = 0; i < STEPS * N; i++)
        g[i] = rng_sym(1.0f);
    g[3] = 0.0f; /* a zero gradient on one element */
    check_against_ref(&c, N, STEPS, w0, g, scale, 2e-5, what);
}

START_TEST(test_all_against_reference)
{
    struct ps_optim_conf c;
    c = conf_of(SMLT_OPT_SGD, 0.05f);
    varied_case(c, "sgd", 1.0f);
    c.weight_decay = 0.01f;
    varied_case(c, "sgd wd", 1.0f);
    varied_case(c, "sgd wd scale", 1.0f / 3.0f);

    c = conf_of(SMLT_OPT_MOMENTUM, 0.05f);
    c.momentum = 0.8f;
    varied_case(c, "momentum", 1.0f);
    c.weight_decay = 0.02f;
    varied_case(c, "momentum wd", 0.25f);
    c.nesterov = 1;
    varied_case(c, "nesterov wd", 1.0f);
    c.weight_decay = 0.0f;
    varied_case(c, "nesterov", 0.5f);

    c = conf_of(SMLT_OPT_ADAM, 0.01f);
    varied_case(c, "adam", 1.0f);
    c.beta1 = 0.5f;
    c.beta2 = 0.9f;
    c.eps = 1e-3f; /* big enough that where eps goes matters */
    varied_case(c, "adam b/eps", 1.0f);
    c.weight_decay = 0.1f;
    varied_case(c, "adam l2", 1.0f / 3.0f);
    c.decoupled = 1;
    varied_case(c, "adamw", 1.0f);

    c = conf_of(SMLT_OPT_ADAGRAD, 0.1f);
    c.eps = 1e-2f;
    varied_case(c, "adagrad", 1.0f);
    c.weight_decay = 0.05f;
    varied_case(c, "adagrad wd", 0.5f);
}
END_TEST

/* state layout: Adam keeps m then v, each n floats; momentum keeps v; AdaGrad the sum */
START_TEST(test_state_layout)
{
    enum { N = 5 };
    float w[N] = {1, 2, 3, 4, 5}, g[N] = {1, -2, 0.5f, 0, 4}, dst[N];
    float st[2 * N];
    struct ps_optim_conf c = conf_of(SMLT_OPT_ADAM, 0.01f);
    memset(st, 0, sizeof st);
    ps_optim_apply(&c, 1, dst, w, g, 1.0f, st, N);
    for (int i = 0; i < N; i++) {
        ck_assert_float_eq_tol(st[i], (1.0f - c.beta1) * g[i], 1e-7f);
        ck_assert_float_eq_tol(st[N + i], (1.0f - c.beta2) * g[i] * g[i], 1e-9f);
    }
    c = conf_of(SMLT_OPT_MOMENTUM, 0.01f);
    memset(st, 0, sizeof st);
    st[N] = 123.0f; /* only n state floats: the one after must stay */
    ps_optim_apply(&c, 1, dst, w, g, 2.0f, st, N);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(st[i], 2.0f * g[i]);
    ck_assert_float_eq(st[N], 123.0f);
    c = conf_of(SMLT_OPT_ADAGRAD, 0.01f);
    memset(st, 0, sizeof st);
    st[N] = 123.0f;
    ps_optim_apply(&c, 1, dst, w, g, 1.0f, st, N);
    ps_optim_apply(&c, 2, dst, w, g, 1.0f, st, N);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(st[i], 2.0f * g[i] * g[i]);
    ck_assert_float_eq(st[N], 123.0f);
    /* SGD keeps no state and must not touch the pointer's memory */
    c = conf_of(SMLT_OPT_SGD, 0.01f);
    st[0] = 77.0f;
    ps_optim_apply(&c, 1, dst, w, g, 1.0f, st, N);
    ck_assert_float_eq(st[0], 77.0f);
}
END_TEST

/* t = 0 is taken as 1 (no division by 1 - beta^0 = 0) */
START_TEST(test_adam_t0)
{
    struct ps_optim_conf c = conf_of(SMLT_OPT_ADAM, 0.1f);
    float w = 1.0f, g = 2.0f, st0[2] = {0, 0}, st1[2] = {0, 0}, d0, d1;
    ps_optim_apply(&c, 0, &d0, &w, &g, 1.0f, st0, 1);
    ps_optim_apply(&c, 1, &d1, &w, &g, 1.0f, st1, 1);
    ck_assert(isfinite(d0));
    ck_assert_float_eq(d0, d1);
}
END_TEST

/* scale multiplies the gradient: sum with scale 1/4 equals the mean with scale 1 (exactly, as
 * a power of two scales without rounding) */
START_TEST(test_scale)
{
    enum { N = 37 };
    rng_seed(21);
    float w[N], sum[N], mean[N], a[N], b[N];
    for (int i = 0; i < N; i++) {
        w[i] = rng_sym(1);
        sum[i] = rng_sym(4);
        mean[i] = sum[i] * 0.25f;
    }
    const enum smlt_optim kinds[] = {SMLT_OPT_SGD, SMLT_OPT_MOMENTUM, SMLT_OPT_ADAM,
                                     SMLT_OPT_ADAGRAD};
    for (int k = 0; k < 4; k++) {
        struct ps_optim_conf c = conf_of(kinds[k], 0.03f);
        c.weight_decay = 0.01f;
        float s1[2 * N], s2[2 * N];
        memset(s1, 0, sizeof s1);
        memset(s2, 0, sizeof s2);
        ps_optim_apply(&c, 1, a, w, sum, 0.25f, s1, N);
        ps_optim_apply(&c, 1, b, w, mean, 1.0f, s2, N);
        ck_assert_msg(!memcmp(a, b, sizeof a), "%s: scaled sum != mean",
                      smlt_enum_optim_name(kinds[k]));
        ck_assert(!memcmp(s1, s2, sizeof s1));
        /* and the scale is really applied: scale 1 on the sum gives a different result */
        memset(s1, 0, sizeof s1);
        ps_optim_apply(&c, 1, a, w, sum, 1.0f, s1, N);
        ck_assert_msg(memcmp(a, b, sizeof a) != 0, "%s: scale ignored",
                      smlt_enum_optim_name(kinds[k]));
    }
}
END_TEST

/* ---- aliasing: dst == src and dst == grad are bit-identical to out of place ------------------ */

static void alias_case(const struct ps_optim_conf *c)
{
    const size_t n = 100003; /* not a multiple of 8 or 16: the vector loops' tails run */
    int spp = ps_optim_state_per_param(c->kind);
    size_t sn = (size_t)(spp ? spp : 1) * n;
    float *w0 = malloc(n * 4), *g = malloc(3 * n * 4);
    rng_seed(0xA11A5 + (uint64_t)c->kind * 7 + (uint64_t)c->nesterov + (uint64_t)c->decoupled);
    for (size_t i = 0; i < n; i++)
        w0[i] = rng_sym(1);
    for (size_t i = 0; i < 3 * n; i++)
        g[i] = rng_sym(0.1f);
    /* out of place */
    float *pa = malloc(n * 4), *da = malloc(n * 4), *sa = calloc(sn, 4);
    /* dst == src */
    float *pb = malloc(n * 4), *sb = calloc(sn, 4);
    /* dst == grad */
    float *pc = malloc(n * 4), *gc = malloc(n * 4), *sc = calloc(sn, 4);
    memcpy(pa, w0, n * 4);
    memcpy(pb, w0, n * 4);
    memcpy(pc, w0, n * 4);
    for (int s = 0; s < 3; s++) {
        const float *gs = g + (size_t)s * n;
        ps_optim_apply(c, (uint64_t)s + 1, da, pa, gs, 0.5f, sa, n);
        memcpy(pa, da, n * 4);
        ps_optim_apply(c, (uint64_t)s + 1, pb, pb, gs, 0.5f, sb, n);
        memcpy(gc, gs, n * 4);
        ps_optim_apply(c, (uint64_t)s + 1, gc, pc, gc, 0.5f, sc, n);
        memcpy(pc, gc, n * 4);
        ck_assert_msg(!memcmp(pa, pb, n * 4), "%s: dst == src differs at step %d",
                      smlt_enum_optim_name(c->kind), s + 1);
        ck_assert_msg(!memcmp(pa, pc, n * 4), "%s: dst == grad differs at step %d",
                      smlt_enum_optim_name(c->kind), s + 1);
        ck_assert(!memcmp(sa, sb, sn * 4));
        ck_assert(!memcmp(sa, sc, sn * 4));
        /* it moved */
        ck_assert(memcmp(pa, w0, n * 4) != 0);
    }
    /* spot check the tail against the reference */
    struct ref r = {.w = w0[n - 1]};
    for (int s = 0; s < 3; s++)
        ref_step(c, s + 1, &r, g[(size_t)s * n + n - 1], 0.5);
    assert_close(pa[n - 1], r.w, 2e-5, "tail", 3, n - 1);
    free(w0);
    free(g);
    free(pa);
    free(da);
    free(sa);
    free(pb);
    free(sb);
    free(pc);
    free(gc);
    free(sc);
}

START_TEST(test_aliasing_bit_identical)
{
    struct ps_optim_conf c = conf_of(SMLT_OPT_SGD, 0.1f);
    c.weight_decay = 0.01f;
    alias_case(&c);
    c = conf_of(SMLT_OPT_MOMENTUM, 0.1f);
    c.weight_decay = 0.01f;
    alias_case(&c);
    c.nesterov = 1;
    alias_case(&c);
    c = conf_of(SMLT_OPT_ADAM, 0.01f);
    c.weight_decay = 0.01f;
    alias_case(&c);
    c.decoupled = 1;
    alias_case(&c);
    c = conf_of(SMLT_OPT_ADAGRAD, 0.1f);
    c.weight_decay = 0.01f;
    alias_case(&c);
}
END_TEST

/* ---- configuration ---------------------------------------------------------------------------- */

static void expect_bad(const struct ps_optim_conf *c, const char *field)
{
    char err[128] = "";
    ck_assert_int_eq(ps_optim_conf_check(c, err, sizeof err), SMLT_EINVAL);
    ck_assert_msg(strstr(err, field) != NULL, "error \"%s\" does not name %s", err, field);
    /* err may be NULL */
    ck_assert_int_eq(ps_optim_conf_check(c, NULL, 0), SMLT_EINVAL);
}

START_TEST(test_conf_check)
{
    struct ps_optim_conf c;
    char err[128];
    ps_optim_conf_default(&c);
    ck_assert_int_eq(c.kind, SMLT_OPT_SGD);
    ck_assert_float_eq(c.lr, 0.01f);
    ck_assert_float_eq(c.momentum, 0.9f);
    ck_assert_float_eq(c.beta1, 0.9f);
    ck_assert_float_eq(c.beta2, 0.999f);
    ck_assert_float_eq(c.eps, 1e-8f);
    ck_assert_float_eq(c.weight_decay, 0.0f);
    ck_assert_int_eq(c.nesterov, 0);
    ck_assert_int_eq(c.decoupled, 0);
    for (int k = SMLT_OPT_SGD; k <= SMLT_OPT_ADAGRAD; k++) {
        c = conf_of((enum smlt_optim)k, 0.01f);
        ck_assert_int_eq(ps_optim_conf_check(&c, err, sizeof err), 0);
        c.lr = 0.0f; /* lr 0 is allowed (frozen) */
        ck_assert_int_eq(ps_optim_conf_check(&c, err, sizeof err), 0);
        const float badlr[] = {-1e-9f, -1.0f, NAN, INFINITY, -INFINITY};
        for (int i = 0; i < 5; i++) {
            c.lr = badlr[i];
            expect_bad(&c, "lr");
        }
        c.lr = 0.01f;
        const float badwd[] = {-0.1f, NAN, INFINITY};
        for (int i = 0; i < 3; i++) {
            c.weight_decay = badwd[i];
            expect_bad(&c, "weight_decay");
        }
        c.weight_decay = 0.0f;
    }
    c = conf_of(SMLT_OPT_MOMENTUM, 0.01f);
    const float badmu[] = {1.0f, 1.5f, -0.1f, NAN};
    for (int i = 0; i < 4; i++) {
        c.momentum = badmu[i];
        expect_bad(&c, "momentum");
    }
    c.momentum = 0.0f;
    ck_assert_int_eq(ps_optim_conf_check(&c, err, sizeof err), 0);
    c.momentum = 0.999f;
    ck_assert_int_eq(ps_optim_conf_check(&c, err, sizeof err), 0);

    c = conf_of(SMLT_OPT_ADAM, 0.01f);
    const float badb[] = {1.0f, 2.0f, -0.5f, NAN};
    for (int i = 0; i < 4; i++) {
        c.beta1 = badb[i];
        expect_bad(&c, "beta1");
    }
    c.beta1 = 0.9f;
    for (int i = 0; i < 4; i++) {
        c.beta2 = badb[i];
        expect_bad(&c, "beta2");
    }
    c.beta2 = 0.999f;
    const float bade[] = {0.0f, -1e-8f, NAN};
    for (int i = 0; i < 3; i++) {
        c.eps = bade[i];
        expect_bad(&c, "eps");
    }
    c = conf_of(SMLT_OPT_ADAGRAD, 0.01f);
    for (int i = 0; i < 3; i++) {
        c.eps = bade[i];
        expect_bad(&c, "eps");
    }
    c = conf_of(SMLT_OPT_SGD, 0.01f);
    c.kind = (enum smlt_optim)7;
    expect_bad(&c, "kind");
}
END_TEST

START_TEST(test_accumulate)
{
    const size_t n = 10007;
    float *acc = malloc(n * 4), *g = malloc(n * 4), *want = malloc(n * 4);
    rng_seed(5);
    for (size_t i = 0; i < n; i++) {
        acc[i] = rng_sym(1);
        g[i] = rng_sym(1);
        want[i] = acc[i] + g[i];
    }
    ps_optim_accumulate(acc, g, n);
    for (size_t i = 0; i < n; i++)
        REQUIRE(acc[i] == want[i], "elem %zu: %.9g != %.9g", i, acc[i], want[i]);
    /* n = 0 touches nothing; a prefix leaves the rest alone */
    memcpy(want, acc, n * 4);
    ps_optim_accumulate(acc, g, 0);
    ck_assert(!memcmp(acc, want, n * 4));
    ps_optim_accumulate(acc, g, 3);
    ck_assert_float_eq(acc[2], want[2] + g[2]);
    ck_assert_float_eq(acc[3], want[3]);
    free(acc);
    free(g);
    free(want);
}
END_TEST

START_TEST(test_names)
{
    const char *names[] = {"sgd", "momentum", "adam", "adagrad"};
    for (int k = SMLT_OPT_SGD; k <= SMLT_OPT_ADAGRAD; k++) {
        ck_assert_str_eq(smlt_enum_optim_name((enum smlt_optim)k), names[k]);
        enum smlt_optim got = (enum smlt_optim)99;
        ck_assert_int_eq(smlt_enum_optim_parse(smlt_enum_optim_name((enum smlt_optim)k), &got), 0);
        ck_assert_int_eq(got, k);
    }
    enum smlt_optim got = SMLT_OPT_SGD;
    ck_assert_int_eq(smlt_enum_optim_parse("ADAM", &got), 0);
    ck_assert_int_eq(got, SMLT_OPT_ADAM);
    got = SMLT_OPT_MOMENTUM;
    ck_assert_int_eq(smlt_enum_optim_parse("adamw", &got), SMLT_EINVAL);
    ck_assert_int_eq(smlt_enum_optim_parse("", &got), SMLT_EINVAL);
    ck_assert_int_eq(smlt_enum_optim_parse("sg", &got), SMLT_EINVAL);
    ck_assert_int_eq(smlt_enum_optim_parse(NULL, &got), SMLT_EINVAL);
    ck_assert_int_eq(got, SMLT_OPT_MOMENTUM); /* untouched on failure */
    ck_assert_str_eq(smlt_enum_optim_name((enum smlt_optim)9), "?");
    ck_assert_int_eq(ps_optim_state_per_param(SMLT_OPT_SGD), 0);
    ck_assert_int_eq(ps_optim_state_per_param(SMLT_OPT_MOMENTUM), 1);
    ck_assert_int_eq(ps_optim_state_per_param(SMLT_OPT_ADAM), 2);
    ck_assert_int_eq(ps_optim_state_per_param(SMLT_OPT_ADAGRAD), 1);
}
END_TEST

static Suite *ps_optim_suite(void)
{
    Suite *s = suite_create("ps_optim");
    TCase *tc = tcase_create("math");
    tcase_add_test(tc, test_sgd_literals);
    tcase_add_test(tc, test_momentum_literals);
    tcase_add_test(tc, test_adam_literals);
    tcase_add_test(tc, test_adagrad_literals);
    tcase_add_test(tc, test_all_against_reference);
    tcase_add_test(tc, test_state_layout);
    tcase_add_test(tc, test_adam_t0);
    tcase_add_test(tc, test_scale);
    tcase_add_test(tc, test_aliasing_bit_identical);
    suite_add_tcase(s, tc);
    tc = tcase_create("conf");
    tcase_add_test(tc, test_conf_check);
    tcase_add_test(tc, test_accumulate);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ps_optim_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
