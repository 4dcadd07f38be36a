/* test_nn_model.c: model specs, the flat parameter layout, initialization by (seed, index),
 * whole-model gradients against finite differences, fused SGD, evaluation, and a reference
 * training run on Fashion-MNIST (MLP >= 85% test accuracy after 2 epochs of plain SGD; a
 * short LeNet-5 run must learn too). Fashion-MNIST comes from Debian's dataset-fashion-mnist
 * under /usr/share/datasets/fashion-mnist. SMLT_TEST_QUICK=1 shortens the training runs. */
#include <check.h>
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data_fetch.h"
#include "data_load.h"
#include "data_set.h"
#include "nn_model.h"
#include "smlt_error.h"
#include "smlt_rand.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static int quick(void)
{
    const char *q = getenv("SMLT_TEST_QUICK");
    return q && *q && strcmp(q, "0");
}

static void check_agrees(const char *spec);

START_TEST(spec_good)
{
    char err[256];
    struct nn_model *m = nn_model_new("logreg:784-10", 8, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_int_eq(nn_model_num_params(m), 7850);
    ck_assert_int_eq(nn_model_num_tensors(m), 2);
    ck_assert_int_eq(nn_model_input_dim(m), 784);
    ck_assert_int_eq(nn_model_num_classes(m), 10);
    ck_assert_str_eq(nn_model_spec(m), "logreg:784-10");
    nn_model_free(m);

    m = nn_model_new("mlp:784-256-128-10", 64, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_int_eq(nn_model_num_params(m), 235146); /* same as torch's MLP */
    ck_assert_int_eq(nn_model_num_tensors(m), 6);
    ck_assert_int_eq(nn_model_num_layers(m), 3); /* ReLUs fused */
    nn_model_free(m);

    m = nn_model_new("lenet5", 64, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_int_eq(nn_model_num_params(m), 61706); /* same as torch's LeNet-5 (pad 2) */
    ck_assert_int_eq(nn_model_num_tensors(m), 10);
    ck_assert_str_eq(nn_model_tensor(m, 0)->name, "conv1.weight");
    ck_assert_str_eq(nn_model_tensor(m, 3)->name, "conv2.bias");
    ck_assert_str_eq(nn_model_tensor(m, 9)->name, "fc3.bias");
    ck_assert_int_eq(nn_model_tensor(m, 4)->shape[0], 400);
    ck_assert_int_eq(nn_model_tensor(m, 4)->shape[1], 120);
    nn_model_free(m);

    m = nn_model_new("lenet5:pad=0:in=32x32x3:classes=7:dropout=0.5", 4, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_int_eq(nn_model_input_dim(m), 32 * 32 * 3);
    ck_assert_int_eq(nn_model_num_classes(m), 7);
    ck_assert_str_eq(nn_model_spec(m), "lenet5:in=32x32x3:pad=0:classes=7:dropout=0.5");
    nn_model_free(m);

    m = nn_model_new("mlp:10-5-3:dropout=0.2", 4, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_int_eq(nn_model_num_layers(m), 3); /* fc1+relu, dropout, fc2 */
    ck_assert_str_eq(nn_model_spec(m), "mlp:10-5-3:dropout=0.2");
    nn_model_free(m);

    static const char *const specs[] = {"logreg:784-10", "mlp:784-256-128-10", "lenet5",
                                        "lenet5:pad=0:in=32x32x3:classes=7:dropout=0.5",
                                        "mlp:10-5-3:dropout=0.2"};
    /* The canonical form of a dropout just below 1 reads back as the same model. */
    m = nn_model_new("mlp:10-5-3:dropout=0.99999994", 4, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    char canon[NN_SPEC_MAX];
    snprintf(canon, sizeof canon, "%s", nn_model_spec(m));
    nn_model_free(m);
    m = nn_model_new(canon, 4, err, sizeof err);
    ck_assert_msg(m != NULL, "canonical '%s' refused: %s", canon, err);
    ck_assert_str_eq(nn_model_spec(m), canon);
    nn_model_free(m);
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        check_agrees(specs[i]);
    /* A 225 M-parameter model is checked without its 1.8 GB of buffers. */
    size_t np = 0;
    ck_assert_int_eq(nn_spec_check("mlp:784-15000-15000-10", NULL, 0, &np, err, sizeof err), 0);
    ck_assert_uint_eq(np, (size_t)784 * 15000 + 15000 + (size_t)15000 * 15000 + 15000 +
                              15000 * 10 + 10);
}
END_TEST

/* nn_spec_check() says what nn_model_new() would: the same canonical spec and parameter
 * count, or the same refusal. */
static void check_agrees(const char *spec)
{
    char err1[256] = "", err2[256] = "", canon[NN_SPEC_MAX] = "";
    size_t np = 0;
    struct nn_model *m = nn_model_new(spec, 8, err1, sizeof err1);
    int rc = nn_spec_check(spec, canon, sizeof canon, &np, err2, sizeof err2);
    if (m) {
        ck_assert_int_eq(rc, 0);
        ck_assert_str_eq(canon, nn_model_spec(m));
        ck_assert_uint_eq(np, nn_model_num_params(m));
        nn_model_free(m);
    } else {
        ck_assert_int_eq(rc, SMLT_EINVAL);
        ck_assert_str_eq(err2, err1);
    }
}

static void expect_bad(const char *spec, const char *needle)
{
    char err[256] = "";
    struct nn_model *m = nn_model_new(spec, 8, err, sizeof err);
    ck_assert_msg(m == NULL, "spec '%s' was accepted", spec ? spec : "(null)");
    ck_assert_msg(strstr(err, needle) != NULL, "spec '%s': message '%s' lacks '%s'",
                  spec ? spec : "(null)", err, needle);
    check_agrees(spec);
}

START_TEST(spec_bad)
{
    expect_bad("mlp:784-abc-10", "'abc'");
    expect_bad("mlp:784--10", "''");
    expect_bad("mlp:784-10", "hidden");
    expect_bad("logreg:784", "two sizes");
    expect_bad("resnet50", "'resnet50'");
    expect_bad("", "empty");
    expect_bad(NULL, "empty");
    expect_bad("mlp:784-0-10", "'0'");
    expect_bad("mlp:784-256-1", "classes");
    expect_bad("mlp:784-256-10:dropout=1.5", "dropout '1.5'");
    expect_bad("mlp:784-256-10:dropout=", "dropout ''");
    expect_bad("mlp:784-256-10:foo=1", "unknown option 'foo'");
    expect_bad("mlp:784-256-10:pad=2", "unknown option 'pad'");
    expect_bad("lenet5:pad=x", "pad 'x'");
    expect_bad("lenet5:in=28x28", "input shape '28x28'");
    expect_bad("lenet5:in=4x4x1", "conv2");
    expect_bad("lenet5:784", "unexpected '784'");
    expect_bad("mlp:99999999999-10-10", "'99999999999'");
    expect_bad("lenet5:in=4096x4096x4096", "too large");
    expect_bad("mlp:10-5-3:dropout=0.99999999", "dropout '0.99999999'"); /* 1.0f as a float */
    char longspec[400];
    memset(longspec, '1', sizeof longspec - 1);
    longspec[sizeof longspec - 1] = '\0';
    memcpy(longspec, "mlp:", 4);
    expect_bad(longspec, "too long");
    char err[128];
    ck_assert_ptr_null(nn_model_new("mlp:4-4-2", 0, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "batch"));
    ck_assert_ptr_null(nn_model_new("mlp:4-4-2", 0, NULL, 0)); /* no message buffer */
}
END_TEST

START_TEST(flat_layout_and_init)
{
    struct nn_model *m = nn_model_new("lenet5", 4, NULL, 0);
    ck_assert_ptr_nonnull(m);
    size_t off = 0;
    for (int i = 0; i < nn_model_num_tensors(m); i++) {
        const struct nn_spec_tensor *t = nn_model_tensor(m, i);
        ck_assert_int_eq(t->offset, off); /* back to back, in order */
        size_t prod = 1;
        for (int d = 0; d < t->ndim; d++)
            prod *= (size_t)t->shape[d];
        ck_assert_int_eq(prod, t->length);
        off += t->length;
        if (strstr(t->name, ".bias"))
            ck_assert_int_eq(t->init, SMLT_INIT_ZERO);
        else
            ck_assert(t->init == SMLT_INIT_UNIFORM && t->scale > 0.0f && t->scale < 1.0f);
    }
    ck_assert_int_eq(off, nn_model_num_params(m));
    ck_assert_ptr_null(nn_model_tensor(m, -1));
    ck_assert_ptr_null(nn_model_tensor(m, nn_model_num_tensors(m)));

    nn_model_init_params(m, 42);
    const float *p = nn_model_params(m);
    /* Element i depends only on (seed, i) and its tensor's (kind, scale). */
    for (int i = 0; i < nn_model_num_tensors(m); i++) {
        const struct nn_spec_tensor *t = nn_model_tensor(m, i);
        for (size_t j = 0; j < t->length; j += 7) {
            float want = t->init == SMLT_INIT_UNIFORM
                             ? smlt_rand_uniform(42, t->offset + j, t->scale)
                             : 0.0f;
            ck_assert_float_eq(p[t->offset + j], want);
            ck_assert(fabsf(p[t->offset + j]) <= t->scale);
        }
    }
    /* A shard initializing any sub-range gets the same numbers. */
    const struct nn_spec_tensor *t = nn_model_tensor(m, 4);
    float part[100];
    nn_model_init_fill(t->init, t->scale, 42, t->offset + 1000, part, 100);
    ck_assert_int_eq(memcmp(part, p + t->offset + 1000, sizeof part), 0);
    /* Other kinds. */
    nn_model_init_fill(SMLT_INIT_CONST, 0.5f, 1, 0, part, 10);
    ck_assert_float_eq(part[9], 0.5f);
    nn_model_init_fill(SMLT_INIT_NORMAL, 2.0f, 1, 5, part, 10);
    ck_assert_float_eq(part[0], smlt_rand_normal(1, 5, 2.0f));
    nn_model_init_fill(SMLT_INIT_ZERO, 2.0f, 1, 5, part, 10);
    ck_assert_float_eq(part[3], 0.0f);
    /* A different seed gives different weights. */
    float w0 = p[0];
    nn_model_init_params(m, 43);
    ck_assert_float_ne(nn_model_params(m)[0], w0);
    nn_model_free(m);
}
END_TEST

/* Mean loss of the model on (x, y) in double, through the inference path. */
static double model_loss(struct nn_model *m, const float *x, const int32_t *y, int n)
{
    const float *z = nn_model_forward(m, x, n);
    const int k = nn_model_num_classes(m);
    double s = 0;
    for (int i = 0; i < n; i++) {
        double mx = -1e30, sum = 0;
        for (int j = 0; j < k; j++)
            mx = fmax(mx, z[i * k + j]);
        for (int j = 0; j < k; j++)
            sum += exp(z[i * k + j] - mx);
        s += log(sum) - (z[i * k + y[i]] - mx);
    }
    return s / n;
}

static void model_grad_check(const char *spec, int n, int probes)
{
    char err[256];
    struct nn_model *m = nn_model_new(spec, n, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    nn_model_init_params(m, 5);
    const int d = nn_model_input_dim(m), k = nn_model_num_classes(m);
    float *x = malloc(sizeof(float) * n * d);
    int32_t *y = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n * d; i++)
        x[i] = smlt_rand_unit(3, (uint64_t)i);
    for (int i = 0; i < n; i++)
        y[i] = (int32_t)(smlt_rand_mix((uint64_t)i) % (uint64_t)k);
    float loss;
    ck_assert_int_eq(nn_model_train_batch(m, x, y, n, &loss), 0);
    ck_assert_double_eq_tol(loss, model_loss(m, x, y, n), 1e-5);
    const size_t np = nn_model_num_params(m);
    float *g = malloc(sizeof(float) * np);
    memcpy(g, nn_model_grads(m), sizeof(float) * np);
    float *p = nn_model_params(m);
    /* Probe a spread of parameters in every tensor. ReLU and max-pooling make the loss
     * piecewise smooth: a probe whose +-eps step crosses a kink (a pooling winner or a ReLU
     * sign flips) is detected by comparing the differences at eps and eps/2, and skipped. */
    int bad = 0, total = 0, skipped = 0;
    double num2 = 0, diff2 = 0;
    for (int t = 0; t < nn_model_num_tensors(m); t++) {
        const struct nn_spec_tensor *ti = nn_model_tensor(m, t);
        for (int q = 0; q < probes; q++) {
            size_t i = ti->offset + (size_t)(smlt_rand_mix((uint64_t)(t * 1000 + q)) % ti->length);
            const float keep = p[i];
            double nd[2];
            for (int h = 0; h < 2; h++) {
                const float eps = h ? 5e-4f : 1e-3f;
                p[i] = keep + eps;
                double lp = model_loss(m, x, y, n);
                p[i] = keep - eps;
                double lm = model_loss(m, x, y, n);
                p[i] = keep;
                nd[h] = (lp - lm) / (2.0 * eps);
            }
            const double num = nd[0];
            total++;
            if (fabs(nd[0] - nd[1]) > 2e-4 + 1e-2 * fmax(fabs(nd[0]), fabs(nd[1]))) {
                skipped++;
                continue;
            }
            num2 += num * num;
            diff2 += (num - g[i]) * (num - g[i]);
            if (fabs(num - g[i]) > 5e-4 + 2e-2 * fmax(fabs(num), fabs(g[i]))) {
                fprintf(stderr, "%s %s[%zu]: analytic %.6g numeric %.6g\n", spec, ti->name,
                        i - ti->offset, g[i], num);
                bad++;
            }
        }
    }
    ck_assert_msg(skipped <= total / 4, "%s: %d of %d probes not smooth", spec, skipped, total);
    ck_assert_int_le(bad, total / 100);
    ck_assert_msg(sqrt(diff2) <= 1e-2 * sqrt(num2), "relative gradient error %g",
                  sqrt(diff2 / num2));
    free(g);
    free(x);
    free(y);
    nn_model_free(m);
}

START_TEST(model_gradients)
{
    model_grad_check("logreg:20-4", 6, 20);
    model_grad_check("mlp:30-16-12-5", 8, 25);
    model_grad_check("lenet5:in=14x14x2:classes=6", 5, 25);
}
END_TEST

START_TEST(fused_step_equals_train_then_sgd)
{
    const char *specs[] = {"mlp:40-32-16-10", "lenet5:in=16x16x1"};
    for (int s = 0; s < 2; s++) {
        const int n = 9;
        struct nn_model *a = nn_model_new(specs[s], n, NULL, 0);
        struct nn_model *b = nn_model_new(specs[s], n, NULL, 0);
        nn_model_init_params(a, 11);
        nn_model_init_params(b, 11);
        const int d = nn_model_input_dim(a);
        float *x = malloc(sizeof(float) * n * d);
        int32_t y[9];
        for (int i = 0; i < n * d; i++)
            x[i] = smlt_rand_unit(8, (uint64_t)i);
        for (int i = 0; i < n; i++)
            y[i] = i % 10;
        for (int step = 0; step < 3; step++) {
            float la, lb;
            ck_assert_int_eq(nn_model_train_batch(a, x, y, n, &la), 0);
            nn_model_sgd(a, 0.05f);
            ck_assert_int_eq(nn_model_train_step(b, x, y, n, 0.05f, &lb), 0);
            ck_assert_float_eq_tol(la, lb, 1e-5f);
        }
        const size_t np = nn_model_num_params(a);
        for (size_t i = 0; i < np; i++)
            ck_assert_float_eq_tol(nn_model_params(a)[i], nn_model_params(b)[i], 1e-5f);
        free(x);
        nn_model_free(a);
        nn_model_free(b);
    }
}
END_TEST

START_TEST(bad_batches)
{
    struct nn_model *m = nn_model_new("mlp:4-3-3", 2, NULL, 0);
    nn_model_init_params(m, 1);
    float x[12] = {0};
    int32_t y[3] = {0, 1, 2};
    float loss = -1;
    ck_assert_int_eq(nn_model_train_batch(m, x, y, 3, &loss), SMLT_EINVAL); /* > max_batch */
    ck_assert_int_eq(nn_model_train_batch(m, x, y, 0, &loss), SMLT_EINVAL);
    int32_t bad[2] = {0, 3};
    ck_assert_int_eq(nn_model_train_batch(m, x, bad, 2, &loss), SMLT_EINVAL);
    bad[1] = -1;
    ck_assert_int_eq(nn_model_train_step(m, x, bad, 2, 0.1f, &loss), SMLT_EINVAL);
    ck_assert_ptr_null(nn_model_forward(m, x, 3));
    ck_assert_int_eq(nn_model_train_batch(m, x, y, 2, NULL), 0);
    struct data_set *ds = data_set_new(5, 5, 3); /* wrong dim */
    double acc;
    ck_assert_int_eq(nn_model_evaluate(m, ds, &acc, NULL), SMLT_EINVAL);
    data_set_free(ds);
    nn_model_free(m);
}
END_TEST

START_TEST(dropout_model)
{
    const int n = 16;
    struct nn_model *m = nn_model_new("mlp:8-32-4:dropout=0.5", n, NULL, 0);
    nn_model_init_params(m, 2);
    float x[16 * 8];
    int32_t y[16];
    for (int i = 0; i < n * 8; i++)
        x[i] = smlt_rand_unit(1, (uint64_t)i);
    for (int i = 0; i < n; i++)
        y[i] = i % 4;
    /* Inference is deterministic; training-mode losses differ from step to step. */
    double l1 = model_loss(m, x, y, n), l2 = model_loss(m, x, y, n);
    ck_assert_double_eq(l1, l2);
    float a, b;
    nn_model_train_batch(m, x, y, n, &a);
    nn_model_train_batch(m, x, y, n, &b);
    ck_assert_float_ne(a, b);
    /* Re-initializing restarts the dropout stream. */
    nn_model_init_params(m, 2);
    float c;
    nn_model_train_batch(m, x, y, n, &c);
    ck_assert_float_eq(a, c);
    nn_model_free(m);
}
END_TEST

START_TEST(evaluate_matches_forward)
{
    const int n = 37;
    struct nn_model *m = nn_model_new("mlp:6-8-3", 10, NULL, 0); /* 4 batches, last partial */
    nn_model_init_params(m, 4);
    struct data_set *ds = data_set_new(n, 6, 3);
    float *x = data_set_x_mut(ds);
    int32_t *y = data_set_y_mut(ds);
    for (int i = 0; i < n * 6; i++)
        x[i] = smlt_rand_unit(6, (uint64_t)i) - 0.5f;
    for (int i = 0; i < n; i++)
        y[i] = i % 3;
    double acc, loss, lsum = 0;
    int correct = 0;
    ck_assert_int_eq(nn_model_evaluate(m, ds, &acc, &loss), 0);
    for (int i = 0; i < n; i++) {
        lsum += model_loss(m, x + i * 6, y + i, 1);
        const float *z = nn_model_forward(m, x + i * 6, 1);
        int am = 0;
        for (int j = 1; j < 3; j++)
            if (z[j] > z[am])
                am = j;
        correct += am == y[i];
    }
    ck_assert_double_eq_tol(loss, lsum / n, 1e-5);
    ck_assert_double_eq_tol(acc, (double)correct / n, 1e-12);
    struct data_set *empty = data_set_new(0, 6, 3);
    ck_assert_int_eq(nn_model_evaluate(m, empty, &acc, &loss), 0);
    ck_assert_double_eq(acc, 0.0);
    data_set_free(empty);
    data_set_free(ds);
    nn_model_free(m);
}
END_TEST

static void load_fmnist(struct data_set **tr, struct data_set **te)
{
    char err[512];
    ck_assert_msg(data_fetch_idx(FMNIST_DIR, "train", NULL, NULL, tr, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_msg(data_fetch_idx(FMNIST_DIR, "t10k", NULL, NULL, te, err, sizeof err) == 0,
                  "%s", err);
}

/* Trains spec with plain SGD; returns the test accuracy. */
static double train_run(const char *spec, struct data_set *tr, struct data_set *te, int batch,
                        const float *lrs, int epochs, size_t max_train)
{
    char err[256];
    struct nn_model *m = nn_model_new(spec, batch, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    nn_model_init_params(m, 1);
    struct data_set *sub = max_train ? data_set_slice(tr, 0, max_train) : NULL;
    struct data_set_iter *it = data_set_iter_new(sub ? sub : tr, 0, 1, 7, batch, 0);
    ck_assert_ptr_nonnull(it);
    float *x = malloc(sizeof(float) * (size_t)batch * nn_model_input_dim(m));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    double first = 0, last = 0;
    for (int e = 0; e < epochs; e++) {
        const int64_t nb = data_set_iter_batches_per_epoch(it);
        double lsum = 0;
        for (int64_t b = 0; b < nb; b++) {
            int n = data_set_iter_next(it, x, y, NULL);
            ck_assert_int_gt(n, 0);
            float loss;
            ck_assert_int_eq(nn_model_train_step(m, x, y, n, lrs[e], &loss), 0);
            ck_assert(isfinite(loss));
            lsum += loss;
            if (e == 0 && b < 20)
                first += loss / 20;
        }
        last = lsum / (double)nb;
    }
    ck_assert_msg(last < first, "training loss did not fall: %g -> %g", first, last);
    double acc, loss;
    ck_assert_int_eq(nn_model_evaluate(m, te, &acc, &loss), 0);
    fprintf(stderr, "%s: %d epoch(s) on %zu samples: test accuracy %.4f, loss %.4f\n", spec,
            epochs, sub ? data_set_size(sub) : data_set_size(tr), acc, loss);
    free(x);
    free(y);
    data_set_iter_free(it);
    data_set_free(sub);
    nn_model_free(m);
    return acc;
}

START_TEST(reference_mlp_fmnist)
{
    struct data_set *tr, *te;
    load_fmnist(&tr, &te);
    ck_assert_int_eq(data_set_size(tr), 60000);
    /* Two epochs of plain SGD, batch 32, lr 0.1 then 0.02 (about 1.5 s in a Release build).
     * Published MLP baselines reach 88-89% after many epochs. */
    const float lrs[2] = {0.1f, 0.02f};
    double acc;
    if (quick())
        acc = train_run("mlp:784-256-128-10", tr, te, 32, lrs + 0, 1, 20000);
    else
        acc = train_run("mlp:784-256-128-10", tr, te, 32, lrs, 2, 0);
    ck_assert_msg(acc >= (quick() ? 0.80 : 0.85), "MLP test accuracy %.4f", acc);
    data_set_free(tr);
    data_set_free(te);
}
END_TEST

START_TEST(reference_lenet5_fmnist)
{
    struct data_set *tr, *te;
    load_fmnist(&tr, &te);
    /* A third of an epoch is enough to show that the convolutional path learns. */
    const float lrs[1] = {0.05f};
    double acc = train_run("lenet5", tr, te, 32, lrs, 1, quick() ? 6000 : 20000);
    ck_assert_msg(acc >= (quick() ? 0.65 : 0.75), "LeNet-5 test accuracy %.4f", acc);
    data_set_free(tr);
    data_set_free(te);
}
END_TEST

static Suite *nn_model_suite(void)
{
    Suite *s = suite_create("nn_model");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, spec_good);
    tcase_add_test(tc, spec_bad);
    tcase_add_test(tc, flat_layout_and_init);
    tcase_add_test(tc, model_gradients);
    tcase_add_test(tc, fused_step_equals_train_then_sgd);
    tcase_add_test(tc, bad_batches);
    tcase_add_test(tc, dropout_model);
    tcase_add_test(tc, evaluate_matches_forward);
    suite_add_tcase(s, tc);
    TCase *ref = tcase_create("reference");
    tcase_set_timeout(ref, 240);
    tcase_add_test(ref, reference_mlp_fmnist);
    tcase_add_test(ref, reference_lenet5_fmnist);
    suite_add_tcase(s, ref);
    return s;
}

int main(void)
{
    openblas_set_num_threads(1);
    SRunner *sr = srunner_create(nn_model_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
