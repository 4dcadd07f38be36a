/* test_nn_layer.c: every layer's backward pass against central finite differences.
 *
 * For a layer f with parameters w, the test objective is L(x, w) = sum(r * f(x, w)) for a fixed
 * random r, so dL/dy = r; the analytic dL/dx, dL/dW, dL/db from nn_layer_backward() are
 * compared with (L(+eps) - L(-eps)) / 2eps computed in double. Dense and conv layers without a
 * ReLU are linear in each input, so their differences are exact up to rounding; ReLU and
 * max-pooling have kinks, so the inputs are kept away from them. Also: the im2col/col2im
 * adjoint identity, softmax cross-entropy, fused SGD updates and the tensor descriptions. */
#include <check.h>
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_conv.h"
#include "nn_layer.h"
#include "smlt_error.h"
#include "smlt_rand.h"

static uint64_t rng_idx;

static float urand(float lo, float hi)
{
    return lo + (hi - lo) * smlt_rand_unit(12345, rng_idx++);
}

static float *frand(size_t n, float lo, float hi)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        p[i] = urand(lo, hi);
    return p;
}

/* Values in [-hi, -lo] U [lo, hi]: away from ReLU's kink. */
static float *frand_away(size_t n, float lo, float hi)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        float v = urand(lo, hi);
        p[i] = smlt_rand_unit(999, rng_idx++) < 0.5f ? -v : v;
    }
    return p;
}

struct gc {
    struct nn_layer *l;
    int n;
    float *x, *params, *grads, *y, *r;
};

static double objective(struct gc *g)
{
    nn_layer_forward(g->l, g->x, g->y, g->n, 1);
    double s = 0.0;
    size_t len = (size_t)g->n * nn_layer_out_dim(g->l);
    for (size_t i = 0; i < len; i++)
        s += (double)g->r[i] * g->y[i];
    return s;
}

/* Compares analytic and numeric derivatives of the objective with respect to v[0, len).
 * Returns the number of elements outside atol + rtol * max(|a|, |n|). */
static int compare(struct gc *g, float *v, const float *analytic, size_t len, float eps,
                   double atol, double rtol, const char *what)
{
    int bad = 0;
    for (size_t i = 0; i < len; i++) {
        const float keep = v[i];
        v[i] = keep + eps;
        double lp = objective(g);
        v[i] = keep - eps;
        double lm = objective(g);
        v[i] = keep;
        double num = (lp - lm) / (2.0 * (double)eps);
        double a = analytic[i];
        double tol = atol + rtol * fmax(fabs(a), fabs(num));
        if (fabs(a - num) > tol) {
            if (bad < 5)
                fprintf(stderr, "%s[%zu]: analytic %.6g numeric %.6g\n", what, i, a, num);
            bad++;
        }
    }
    return bad;
}

/* Runs the full check on layer l (ownership taken) with n samples. Returns the number of
 * mismatching elements over dx, dW and db. */
static int grad_check(struct nn_layer *l, int n, int away, float eps, double atol, double rtol)
{
    struct gc g = {.l = l, .n = n};
    const size_t in = (size_t)n * nn_layer_in_dim(l), out = (size_t)n * nn_layer_out_dim(l);
    const size_t np = nn_layer_num_params(l);
    ck_assert_int_eq(nn_layer_prepare(l, n), 0);
    g.x = away ? frand_away(in, 0.05f, 1.0f) : frand(in, -1.0f, 1.0f);
    g.params = frand(np, -0.5f, 0.5f);
    g.grads = calloc(np ? np : 1, sizeof(float));
    g.y = calloc(out, sizeof(float));
    g.r = frand(out, -1.0f, 1.0f);
    nn_layer_bind(l, g.params, g.grads);
    nn_layer_set_seed(l, 77, 3);
    objective(&g);
    float *dy = malloc(sizeof(float) * out);
    float *dx = malloc(sizeof(float) * in);
    memcpy(dy, g.r, sizeof(float) * out);
    const struct nn_layer_upd upd = {0, 1.0f, 0.0f};
    /* Poison the gradient array: beta = 0 must overwrite, not accumulate. */
    for (size_t i = 0; i < np; i++)
        g.grads[i] = 1e6f;
    nn_layer_backward(l, g.x, g.y, dy, dx, n, &upd);
    int bad = compare(&g, g.x, dx, in, eps, atol, rtol, "dx");
    if (np)
        bad += compare(&g, g.params, g.grads, np, eps, atol, rtol, "dparams");
    free(dy);
    free(dx);
    free(g.x);
    free(g.params);
    free(g.grads);
    free(g.y);
    free(g.r);
    nn_layer_free(l);
    return bad;
}

START_TEST(dense_linear_grad)
{
    ck_assert_int_eq(grad_check(nn_layer_new_dense(7, 5, 0), 4, 0, 1e-2f, 1e-4, 1e-3), 0);
    ck_assert_int_eq(grad_check(nn_layer_new_dense(33, 17, 0), 9, 0, 1e-2f, 1e-4, 1e-3), 0);
}
END_TEST

START_TEST(dense_relu_grad)
{
    /* Inputs far from zero and small weights keep most pre-activations off the kink; the
     * few that land near it may disagree, so allow a handful out of ~600 elements. */
    int bad = grad_check(nn_layer_new_dense(12, 10, 1), 6, 1, 1e-3f, 2e-3, 1e-2);
    ck_assert_int_le(bad, 3);
}
END_TEST

START_TEST(conv_grad_plain)
{
    /* stride 1, no padding, one channel in */
    ck_assert_int_eq(grad_check(nn_layer_new_conv(8, 8, 1, 3, 5, 1, 0, 0), 2, 0, 1e-2f, 1e-4,
                                1e-3), 0);
}
END_TEST

START_TEST(conv_grad_pad_multichannel)
{
    /* padding 2 (LeNet's first layer), several channels in and out, odd sizes */
    ck_assert_int_eq(grad_check(nn_layer_new_conv(7, 9, 3, 4, 5, 1, 2, 0), 3, 0, 1e-2f, 1e-4,
                                1e-3), 0);
    /* stride 2 with padding 1 and a 3x3 kernel */
    ck_assert_int_eq(grad_check(nn_layer_new_conv(9, 8, 2, 5, 3, 2, 1, 0), 2, 0, 1e-2f, 1e-4,
                                1e-3), 0);
}
END_TEST

START_TEST(conv_grad_many_chunks)
{
    /* More samples than one im2col block holds, so the block loop and the accumulation of
     * dW across blocks are exercised (28x28x1 with 5x5: 12 samples per block). */
    struct nn_conv_geom g;
    ck_assert_int_eq(nn_conv_geom_init(&g, 28, 28, 1, 2, 5, 1, 2), 0);
    ck_assert_int_lt(g.chunk, 20);
    struct nn_layer *l = nn_layer_new_conv(28, 28, 1, 2, 5, 1, 2, 0);
    ck_assert_ptr_nonnull(l);
    /* Check only the parameters here (dx over 20 x 784 inputs would be slow). */
    const int n = g.chunk + 3;
    struct gc gg = {.l = l, .n = n};
    const size_t in = (size_t)n * 784, out = (size_t)n * nn_layer_out_dim(l);
    const size_t np = nn_layer_num_params(l);
    ck_assert_int_eq(nn_layer_prepare(l, n), 0);
    gg.x = frand(in, -1.0f, 1.0f);
    gg.params = frand(np, -0.5f, 0.5f);
    gg.grads = calloc(np, sizeof(float));
    gg.y = calloc(out, sizeof(float));
    gg.r = frand(out, -1.0f, 1.0f);
    nn_layer_bind(l, gg.params, gg.grads);
    objective(&gg);
    float *dy = malloc(sizeof(float) * out);
    memcpy(dy, gg.r, sizeof(float) * out);
    const struct nn_layer_upd upd = {0, 1.0f, 0.0f};
    nn_layer_backward(l, gg.x, gg.y, dy, NULL, n, &upd);
    ck_assert_int_eq(compare(&gg, gg.params, gg.grads, np, 1e-2f, 1e-3, 1e-3, "dparams"), 0);
    free(dy);
    free(gg.x);
    free(gg.params);
    free(gg.grads);
    free(gg.y);
    free(gg.r);
    nn_layer_free(l);
}
END_TEST

START_TEST(conv_relu_grad)
{
    int bad = grad_check(nn_layer_new_conv(6, 6, 2, 3, 3, 1, 1, 1), 2, 1, 1e-3f, 2e-3, 1e-2);
    ck_assert_int_le(bad, 3);
}
END_TEST

START_TEST(maxpool_grad)
{
    /* Distinct, well separated inputs (a random permutation scaled) so that no window has
     * a near tie that a +-eps step could flip. */
    const int sizes[][5] = {{8, 8, 3, 2, 2}, {7, 9, 2, 2, 2}, {7, 7, 2, 3, 2}, {6, 6, 1, 3, 3}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        const int *s = sizes[t];
        struct nn_layer *l = nn_layer_new_maxpool(s[0], s[1], s[2], s[3], s[4]);
        ck_assert_ptr_nonnull(l);
        const int n = 2;
        const size_t in = (size_t)n * nn_layer_in_dim(l), out = (size_t)n * nn_layer_out_dim(l);
        struct gc g = {.l = l, .n = n};
        ck_assert_int_eq(nn_layer_prepare(l, n), 0);
        g.x = malloc(sizeof(float) * in);
        for (size_t i = 0; i < in; i++)
            g.x[i] = (float)i * 0.1f;
        for (size_t i = in; i > 1; i--) {
            size_t j = (size_t)(smlt_rand_unit(5, i) * (float)i);
            float tmp = g.x[i - 1];
            g.x[i - 1] = g.x[j];
            g.x[j] = tmp;
        }
        g.y = calloc(out, sizeof(float));
        g.r = frand(out, -1.0f, 1.0f);
        objective(&g);
        float *dy = malloc(sizeof(float) * out), *dx = malloc(sizeof(float) * in);
        memcpy(dy, g.r, sizeof(float) * out);
        for (size_t i = 0; i < in; i++)
            dx[i] = 1e6f; /* must be fully overwritten */
        const struct nn_layer_upd upd = {0, 1.0f, 0.0f};
        nn_layer_backward(l, g.x, g.y, dy, dx, n, &upd);
        ck_assert_int_eq(compare(&g, g.x, dx, in, 1e-2f, 1e-4, 1e-3, "pool dx"), 0);
        free(dy);
        free(dx);
        free(g.x);
        free(g.y);
        free(g.r);
        nn_layer_free(l);
    }
}
END_TEST

START_TEST(maxpool_values)
{
    /* 4x4x1 input, 2x2 windows: the maxima by hand. */
    const float x[16] = {1, 2, 5, 0, 3, 4, 1, 1, 0, 0, 9, 8, -1, 7, 6, 7};
    float y[4];
    struct nn_layer *l = nn_layer_new_maxpool(4, 4, 1, 2, 2);
    ck_assert_int_eq(nn_layer_prepare(l, 1), 0);
    nn_layer_forward(l, x, y, 1, 0);
    ck_assert_float_eq(y[0], 4);
    ck_assert_float_eq(y[1], 5);
    ck_assert_float_eq(y[2], 7);
    ck_assert_float_eq(y[3], 9);
    int h, w, c;
    nn_layer_out_shape(l, &h, &w, &c);
    ck_assert_int_eq(h, 2);
    ck_assert_int_eq(w, 2);
    ck_assert_int_eq(c, 1);
    nn_layer_free(l);
}
END_TEST

START_TEST(relu_dropout_flatten_grad)
{
    ck_assert_int_eq(grad_check(nn_layer_new_relu(10), 3, 1, 1e-3f, 1e-4, 1e-3), 0);
    ck_assert_int_eq(grad_check(nn_layer_new_dropout(20, 0.3f), 3, 0, 1e-2f, 1e-4, 1e-3), 0);
    ck_assert_int_eq(grad_check(nn_layer_new_flatten(2, 3, 2), 2, 0, 1e-2f, 1e-4, 1e-3), 0);
}
END_TEST

START_TEST(dropout_behaviour)
{
    const int n = 50, d = 40;
    struct nn_layer *l = nn_layer_new_dropout(d, 0.25f);
    ck_assert_int_eq(nn_layer_prepare(l, n), 0);
    float *x = frand((size_t)n * d, 0.5f, 1.0f);
    float *y1 = malloc(sizeof(float) * n * d), *y2 = malloc(sizeof(float) * n * d);
    /* inference: identity */
    nn_layer_forward(l, x, y1, n, 0);
    ck_assert_int_eq(memcmp(x, y1, sizeof(float) * n * d), 0);
    /* training: about a quarter dropped, survivors scaled by 4/3, reproducible per step */
    nn_layer_set_seed(l, 9, 1);
    nn_layer_forward(l, x, y1, n, 1);
    int zeros = 0;
    for (int i = 0; i < n * d; i++) {
        if (y1[i] == 0.0f)
            zeros++;
        else
            ck_assert_float_eq_tol(y1[i], x[i] / 0.75f, 1e-6f);
    }
    ck_assert_int_gt(zeros, n * d / 5);
    ck_assert_int_lt(zeros, n * d * 3 / 10);
    nn_layer_set_seed(l, 9, 1);
    nn_layer_forward(l, x, y2, n, 1);
    ck_assert_int_eq(memcmp(y1, y2, sizeof(float) * n * d), 0);
    nn_layer_set_seed(l, 9, 2);
    nn_layer_forward(l, x, y2, n, 1);
    ck_assert_int_ne(memcmp(y1, y2, sizeof(float) * n * d), 0);
    ck_assert_ptr_null(nn_layer_new_dropout(4, 1.0f));
    ck_assert_ptr_null(nn_layer_new_dropout(4, -0.1f));
    free(x);
    free(y1);
    free(y2);
    nn_layer_free(l);
}
END_TEST

START_TEST(im2col_adjoint)
{
    /* col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>. */
    struct nn_conv_geom g;
    ck_assert_int_eq(nn_conv_geom_init(&g, 7, 6, 3, 2, 3, 2, 1), 0);
    const int n = 2;
    const size_t in = (size_t)n * 7 * 6 * 3, cl = (size_t)n * g.oh * g.ow * g.kdim;
    float *x = frand(in, -1, 1), *c = frand(cl, -1, 1);
    float *cx = malloc(sizeof(float) * cl), *xc = calloc(in, sizeof(float));
    nn_conv_im2col(&g, x, n, cx);
    nn_conv_col2im(&g, c, n, xc);
    double a = 0, b = 0;
    for (size_t i = 0; i < cl; i++)
        a += (double)cx[i] * c[i];
    for (size_t i = 0; i < in; i++)
        b += (double)x[i] * xc[i];
    ck_assert_double_eq_tol(a, b, 1e-4 * fabs(a) + 1e-6);
    free(x);
    free(c);
    free(cx);
    free(xc);
}
END_TEST

START_TEST(conv_matches_direct)
{
    /* The im2col path against a direct 7-loop convolution. */
    const int H = 6, W = 5, C = 2, OC = 3, K = 3, S = 1, P = 1, n = 2;
    struct nn_layer *l = nn_layer_new_conv(H, W, C, OC, K, S, P, 0);
    ck_assert_int_eq(nn_layer_prepare(l, n), 0);
    const size_t np = nn_layer_num_params(l);
    float *w = frand(np, -1, 1), *g = calloc(np, sizeof(float));
    nn_layer_bind(l, w, g);
    float *x = frand((size_t)n * H * W * C, -1, 1);
    int oh, ow, oc;
    nn_layer_out_shape(l, &oh, &ow, &oc);
    ck_assert_int_eq(oh, 6);
    ck_assert_int_eq(ow, 5);
    float *y = malloc(sizeof(float) * n * oh * ow * oc);
    nn_layer_forward(l, x, y, n, 0);
    const float *bias = w + (size_t)K * K * C * OC;
    for (int s = 0; s < n; s++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
                for (int o = 0; o < OC; o++) {
                    double acc = bias[o];
                    for (int kh = 0; kh < K; kh++)
                        for (int kw = 0; kw < K; kw++)
                            for (int c = 0; c < C; c++) {
                                int ih = i * S - P + kh, iw = j * S - P + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                acc += (double)x[((size_t)s * H * W + ih * W + iw) * C + c] *
                                       w[((kh * K + kw) * C + c) * OC + o];
                            }
                    float got = y[(((size_t)s * oh + i) * ow + j) * OC + o];
                    ck_assert_float_eq_tol(got, (float)acc, 1e-5f);
                }
    free(w);
    free(g);
    free(x);
    free(y);
    nn_layer_free(l);
}
END_TEST

START_TEST(softmax_xent_values_and_grad)
{
    const int n = 4, k = 5;
    float z[20], d[20];
    int32_t lab[4] = {0, 4, 2, 2};
    for (int i = 0; i < n * k; i++)
        z[i] = urand(-3, 3);
    long correct = 0;
    double loss = nn_layer_softmax_xent(z, lab, n, k, d, &correct);
    /* loss by hand */
    double want = 0;
    long want_correct = 0;
    for (int i = 0; i < n; i++) {
        double s = 0, mx = -1e30;
        int am = 0;
        for (int j = 0; j < k; j++) {
            s += exp(z[i * k + j]);
            if (z[i * k + j] > mx) {
                mx = z[i * k + j];
                am = j;
            }
        }
        want += log(s) - z[i * k + lab[i]];
        want_correct += am == lab[i];
    }
    ck_assert_double_eq_tol(loss, want / n, 1e-5);
    ck_assert_int_eq(correct, want_correct);
    /* gradient by finite differences of the mean loss */
    for (int i = 0; i < n * k; i++) {
        float keep = z[i];
        z[i] = keep + 1e-2f;
        double lp = nn_layer_softmax_xent(z, lab, n, k, NULL, NULL);
        z[i] = keep - 1e-2f;
        double lm = nn_layer_softmax_xent(z, lab, n, k, NULL, NULL);
        z[i] = keep;
        ck_assert_double_eq_tol(d[i], (lp - lm) / 2e-2, 2e-4);
    }
    /* in place gives the same gradient */
    float zz[20];
    memcpy(zz, z, sizeof z);
    double loss2 = nn_layer_softmax_xent(zz, lab, n, k, zz, NULL);
    ck_assert_double_eq_tol(loss2, loss, 1e-9);
    for (int i = 0; i < n * k; i++)
        ck_assert_float_eq_tol(zz[i], d[i], 1e-7f);
    /* huge logits do not overflow */
    float big[5] = {1000, -1000, 999, 0, 3};
    int32_t y0 = 2;
    double lb = nn_layer_softmax_xent(big, &y0, 1, 5, NULL, NULL);
    ck_assert(isfinite(lb));
    ck_assert_double_eq_tol(lb, 1.0 + log(1 + exp(-1.0)), 1e-4);
}
END_TEST

/* The fused SGD mode gives the same parameters as gradient then p -= lr * g. */
static void fused_equals_plain(struct nn_layer *a, struct nn_layer *b, int n)
{
    const float lr = 0.1f;
    const size_t np = nn_layer_num_params(a);
    const size_t in = (size_t)n * nn_layer_in_dim(a), out = (size_t)n * nn_layer_out_dim(a);
    ck_assert_int_eq(nn_layer_prepare(a, n), 0);
    ck_assert_int_eq(nn_layer_prepare(b, n), 0);
    float *pa = frand(np, -0.5f, 0.5f), *pb = malloc(sizeof(float) * np);
    memcpy(pb, pa, sizeof(float) * np);
    float *ga = calloc(np, sizeof(float)), *gb = calloc(np, sizeof(float));
    nn_layer_bind(a, pa, ga);
    nn_layer_bind(b, pb, gb);
    float *x = frand(in, -1, 1), *r = frand(out, -1, 1);
    float *ya = malloc(sizeof(float) * out), *yb = malloc(sizeof(float) * out);
    float *dya = malloc(sizeof(float) * out), *dyb = malloc(sizeof(float) * out);
    float *dxa = malloc(sizeof(float) * in), *dxb = malloc(sizeof(float) * in);
    memcpy(dya, r, sizeof(float) * out);
    memcpy(dyb, r, sizeof(float) * out);
    nn_layer_forward(a, x, ya, n, 1);
    nn_layer_forward(b, x, yb, n, 1);
    const struct nn_layer_upd plain = {0, 1.0f, 0.0f}, fused = {1, -lr, 1.0f};
    nn_layer_backward(a, x, ya, dya, dxa, n, &plain);
    cblas_saxpy((int)np, -lr, ga, 1, pa, 1);
    nn_layer_backward(b, x, yb, dyb, dxb, n, &fused);
    for (size_t i = 0; i < np; i++)
        ck_assert_float_eq_tol(pa[i], pb[i], 1e-5f);
    for (size_t i = 0; i < in; i++)
        ck_assert_float_eq_tol(dxa[i], dxb[i], 1e-5f);
    for (size_t i = 0; i < np; i++)
        ck_assert_float_eq(gb[i], 0.0f); /* untouched */
    free(pa);
    free(pb);
    free(ga);
    free(gb);
    free(x);
    free(r);
    free(ya);
    free(yb);
    free(dya);
    free(dyb);
    free(dxa);
    free(dxb);
    nn_layer_free(a);
    nn_layer_free(b);
}

START_TEST(fused_sgd_dense_conv)
{
    fused_equals_plain(nn_layer_new_dense(20, 8, 1), nn_layer_new_dense(20, 8, 1), 5);
    fused_equals_plain(nn_layer_new_conv(12, 12, 2, 4, 5, 1, 2, 1),
                       nn_layer_new_conv(12, 12, 2, 4, 5, 1, 2, 1), 30);
}
END_TEST

START_TEST(gradient_accumulates_with_beta_one)
{
    struct nn_layer *l = nn_layer_new_dense(6, 4, 0);
    const int n = 3;
    ck_assert_int_eq(nn_layer_prepare(l, n), 0);
    const size_t np = nn_layer_num_params(l);
    float *p = frand(np, -1, 1), *g = calloc(np, sizeof(float)), *g1 = malloc(sizeof(float) * np);
    nn_layer_bind(l, p, g);
    float *x = frand(18, -1, 1), y[12], dy[12];
    nn_layer_forward(l, x, y, n, 1);
    for (int i = 0; i < 12; i++)
        dy[i] = 1.0f;
    const struct nn_layer_upd set = {0, 1.0f, 0.0f}, acc = {0, 1.0f, 1.0f};
    nn_layer_backward(l, x, y, dy, NULL, n, &set);
    memcpy(g1, g, sizeof(float) * np);
    for (int i = 0; i < 12; i++)
        dy[i] = 1.0f;
    nn_layer_backward(l, x, y, dy, NULL, n, &acc);
    for (size_t i = 0; i < np; i++)
        ck_assert_float_eq_tol(g[i], 2 * g1[i], 1e-6f);
    free(p);
    free(g);
    free(g1);
    free(x);
    nn_layer_free(l);
}
END_TEST

START_TEST(tensor_info_and_bad_geometry)
{
    struct nn_layer *l = nn_layer_new_dense(784, 256, 1);
    struct nn_spec_tensor ti;
    ck_assert_int_eq(nn_layer_num_tensors(l), 2);
    ck_assert_int_eq(nn_layer_num_params(l), 784 * 256 + 256);
    ck_assert_int_eq(nn_layer_tensor(l, 0, &ti), 0);
    ck_assert_str_eq(ti.name, "weight");
    ck_assert_int_eq(ti.ndim, 2);
    ck_assert_int_eq(ti.shape[0], 784);
    ck_assert_int_eq(ti.shape[1], 256);
    ck_assert_int_eq(ti.init, SMLT_INIT_UNIFORM);
    ck_assert_float_eq_tol(ti.scale, sqrtf(6.0f / 784), 1e-6f);
    ck_assert_int_eq(nn_layer_tensor(l, 1, &ti), 0);
    ck_assert_str_eq(ti.name, "bias");
    ck_assert_int_eq(ti.offset, 784 * 256);
    ck_assert_int_eq(ti.init, SMLT_INIT_ZERO);
    ck_assert_int_eq(nn_layer_tensor(l, 2, &ti), SMLT_ERANGE);
    nn_layer_free(l);

    l = nn_layer_new_conv(28, 28, 1, 6, 5, 1, 2, 1);
    ck_assert_int_eq(nn_layer_tensor(l, 0, &ti), 0);
    ck_assert_int_eq(ti.ndim, 4);
    ck_assert_int_eq(ti.shape[2], 1);
    ck_assert_int_eq(ti.shape[3], 6);
    ck_assert_int_eq(ti.length, 150);
    ck_assert_int_eq(nn_layer_out_dim(l), 28 * 28 * 6);
    nn_layer_free(l);
    l = nn_layer_new_relu(5);
    ck_assert_int_eq(nn_layer_num_tensors(l), 0);
    ck_assert(nn_layer_in_place(l));
    nn_layer_free(l);

    ck_assert_ptr_null(nn_layer_new_dense(0, 5, 0));
    ck_assert_ptr_null(nn_layer_new_dense(5, -1, 0));
    ck_assert_ptr_null(nn_layer_new_conv(4, 4, 1, 2, 5, 1, 0, 0)); /* kernel > input */
    ck_assert_ptr_null(nn_layer_new_conv(8, 8, 1, 2, 3, 0, 0, 0)); /* stride 0 */
    ck_assert_ptr_null(nn_layer_new_conv(8, 8, 1, 2, 3, 1, -1, 0));
    ck_assert_ptr_null(nn_layer_new_maxpool(1, 4, 1, 2, 2));
    ck_assert_ptr_null(nn_layer_new_maxpool(4, 4, 1, 2, 0));
    ck_assert_ptr_null(nn_layer_new_flatten(0, 1, 1));
    l = nn_layer_new_dense(3, 3, 0);
    ck_assert_int_eq(nn_layer_prepare(l, 0), SMLT_EINVAL);
    nn_layer_free(l);
    nn_layer_free(NULL);
}
END_TEST

static Suite *nn_layer_suite(void)
{
    Suite *s = suite_create("nn_layer");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, dense_linear_grad);
    tcase_add_test(tc, dense_relu_grad);
    tcase_add_test(tc, conv_grad_plain);
    tcase_add_test(tc, conv_grad_pad_multichannel);
    tcase_add_test(tc, conv_grad_many_chunks);
    tcase_add_test(tc, conv_relu_grad);
    tcase_add_test(tc, maxpool_grad);
    tcase_add_test(tc, maxpool_values);
    tcase_add_test(tc, relu_dropout_flatten_grad);
    tcase_add_test(tc, dropout_behaviour);
    tcase_add_test(tc, im2col_adjoint);
    tcase_add_test(tc, conv_matches_direct);
    tcase_add_test(tc, softmax_xent_values_and_grad);
    tcase_add_test(tc, fused_sgd_dense_conv);
    tcase_add_test(tc, gradient_accumulates_with_beta_one);
    tcase_add_test(tc, tensor_info_and_bad_geometry);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    openblas_set_num_threads(1);
    SRunner *sr = srunner_create(nn_layer_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
