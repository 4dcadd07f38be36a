/* ps_optim.c: fused optimizer updates.
 *
 * Why not plain BLAS for the updates: an out-of-place SGD step as BLAS calls is a copy then a
 * saxpy (two passes over 3 arrays); momentum and Adam need several more. Each loop below is a
 * single pass that the compiler vectorizes (AVX2 at -O3 with restrict), so the update runs at
 * memory bandwidth. Where BLAS is the right tool - summing gradients - we call it.
 *
 * dst may be src or grad itself (the shard writes the new parameters over the gradient buffer
 * it no longer needs). Every loop is element-wise - iteration i reads only index i of each
 * array before writing dst[i] - so such exact aliasing is safe; `#pragma GCC ivdep` tells the
 * compiler there is no loop-carried dependence so it vectorizes without alias versioning. */
#include "ps_optim.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smlt_error.h"

void ps_optim_conf_default(struct ps_optim_conf *c)
{
    memset(c, 0, sizeof *c);
    c->kind = SMLT_OPT_SGD;
    c->lr = 0.01f;
    c->momentum = 0.9f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
}

int ps_optim_state_per_param(enum smlt_optim k)
{
    switch (k) {
    case SMLT_OPT_MOMENTUM:
    case SMLT_OPT_ADAGRAD:
        return 1;
    case SMLT_OPT_ADAM:
        return 2;
    default:
        return 0;
    }
}

int ps_optim_conf_check(const struct ps_optim_conf *c, char *err, size_t errlen)
{
    const char *bad = NULL;
    if (c->kind < SMLT_OPT_SGD || c->kind > SMLT_OPT_ADAGRAD)
        bad = "optimizer: unknown kind";
    else if (!(c->lr >= 0.0f) || !isfinite(c->lr))
        bad = "lr: must be a finite number >= 0";
    else if (!(c->weight_decay >= 0.0f) || !isfinite(c->weight_decay))
        bad = "weight_decay: must be a finite number >= 0";
    else if (c->kind == SMLT_OPT_MOMENTUM && !(c->momentum >= 0.0f && c->momentum < 1.0f))
        bad = "momentum: must be in [0, 1)";
    else if (c->kind == SMLT_OPT_ADAM && !(c->beta1 >= 0.0f && c->beta1 < 1.0f))
        bad = "beta1: must be in [0, 1)";
    else if (c->kind == SMLT_OPT_ADAM && !(c->beta2 >= 0.0f && c->beta2 < 1.0f))
        bad = "beta2: must be in [0, 1)";
    else if ((c->kind == SMLT_OPT_ADAM || c->kind == SMLT_OPT_ADAGRAD) && !(c->eps > 0.0f))
        bad = "eps: must be > 0";
    if (bad) {
        if (err && errlen)
            snprintf(err, errlen, "%s", bad);
        return SMLT_EINVAL;
    }
    return 0;
}

static void apply_sgd(float lr, float wd, float *dst, const float *src,
                      const float *g, float scale, size_t n)
{
    /* dst and src may be the same array; the loop reads src[i] before writing dst[i]. */
    const float keep = 1.0f - lr * wd, step = lr * scale;
#pragma GCC ivdep
    for (size_t i = 0; i < n; i++)
        dst[i] = keep * src[i] - step * g[i];
}

static void apply_momentum(const struct ps_optim_conf *c, float *dst, const float *src,
                           const float *g, float scale, float *v, size_t n)
{
    const float lr = c->lr, mu = c->momentum, wd = c->weight_decay;
    if (c->nesterov) {
#pragma GCC ivdep
        for (size_t i = 0; i < n; i++) {
            float w = src[i];
            float gi = scale * g[i] + wd * w;
            float vi = mu * v[i] + gi;
            v[i] = vi;
            dst[i] = w - lr * (gi + mu * vi);
        }
    } else {
#pragma GCC ivdep
        for (size_t i = 0; i < n; i++) {
            float w = src[i];
            float vi = mu * v[i] + scale * g[i] + wd * w;
            v[i] = vi;
            dst[i] = w - lr * vi;
        }
    }
}

static void apply_adam(const struct ps_optim_conf *c, uint64_t t, float *dst, const float *src,
                       const float *g, float scale, float *m,
                       float *v, size_t n)
{
    const float b1 = c->beta1, b2 = c->beta2, eps = c->eps, wd = c->weight_decay;
    /* Bias corrections folded into the step size and epsilon, as in the Adam paper's sec. 2. */
    const double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    const float alpha = (float)(c->lr * sqrt(bc2) / bc1);
    const float epsh = (float)(eps * sqrt(bc2));
    const float l2 = c->decoupled ? 0.0f : wd;
    const float decay = c->decoupled ? c->lr * wd : 0.0f;
#pragma GCC ivdep
    for (size_t i = 0; i < n; i++) {
        float w = src[i];
        float gi = scale * g[i] + l2 * w;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        dst[i] = w - alpha * mi / (sqrtf(vi) + epsh) - decay * w;
    }
}

static void apply_adagrad(const struct ps_optim_conf *c, float *dst, const float *src,
                          const float *g, float scale, float *h, size_t n)
{
    const float lr = c->lr, eps = c->eps, wd = c->weight_decay;
#pragma GCC ivdep
    for (size_t i = 0; i < n; i++) {
        float w = src[i];
        float gi = scale * g[i] + wd * w;
        float hi = h[i] + gi * gi;
        h[i] = hi;
        dst[i] = w - lr * gi / (sqrtf(hi) + eps);
    }
}

void ps_optim_apply(const struct ps_optim_conf *c, uint64_t t, float *dst, const float *src,
                    const float *grad, float scale, float *state, size_t n)
{
    if (t == 0)
        t = 1;
    switch (c->kind) {
    case SMLT_OPT_SGD:
        apply_sgd(c->lr, c->weight_decay, dst, src, grad, scale, n);
        break;
    case SMLT_OPT_MOMENTUM:
        apply_momentum(c, dst, src, grad, scale, state, n);
        break;
    case SMLT_OPT_ADAM:
        apply_adam(c, t, dst, src, grad, scale, state, state + n, n);
        break;
    case SMLT_OPT_ADAGRAD:
        apply_adagrad(c, dst, src, grad, scale, state, n);
        break;
    }
}

void ps_optim_accumulate(float *acc, const float *g, size_t n)
{
    /* cblas takes int lengths: feed it in chunks below INT_MAX. */
    const size_t chunk = (size_t)1 << 30;
    while (n > 0) {
        size_t k = n < chunk ? n : chunk;
        cblas_saxpy((int)k, 1.0f, g, 1, acc, 1);
        acc += k;
        g += k;
        n -= k;
    }
}

double ps_optim_sumsq(const float *x, size_t n)
{
    /* Chunks small enough that a float partial sum keeps its precision. */
    const size_t chunk = (size_t)1 << 16;
    double total = 0;
    while (n > 0) {
        size_t k = n < chunk ? n : chunk;
        total += (double)cblas_sdot((int)k, x, 1, x, 1);
        x += k;
        n -= k;
    }
    return total;
}
