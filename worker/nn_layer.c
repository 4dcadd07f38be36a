/* nn_layer.c: layer objects (dense, conv, max-pool, ReLU, dropout, flatten) and the softmax
 * cross-entropy loss.
 *
 * nn_model.c builds a stack of these from a spec string and owns the activation buffers; the
 * convolution and pooling arithmetic is in nn_conv.c. Dense layers are one sgemm each way with
 * the bias and the ReLU fused into a single pass over the (cache-resident) output block.
 * Weight layout for dense layers is in x out, so the forward product is X * W without a
 * transpose (measured a few percent faster than torch's out x in layout with OpenBLAS). */
#include "nn_layer.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_conv.h"
#include "smlt_error.h"
#include "smlt_rand.h"

/* Largest batch accepted; with the caps of nn_spec.h on feature counts (NN_SPEC_MAX_DIM) it
 * keeps every size_t product of them far from overflow and every allocation sane. */
#define NN_LAYER_MAX_BATCH 65536

struct nn_layer {
    enum nn_layer_kind kind;
    int in_dim, out_dim;
    int oh, ow, oc;           /* output shape (dense: 1 x 1 x out) */
    int relu;                 /* fused ReLU (dense, conv) */
    float drop_p;             /* dropout probability */
    struct nn_conv_geom conv;
    struct nn_conv_pool pool;
    float *params, *grads;    /* borrowed slices of the model's flat arrays */
    int max_batch;            /* scratch is sized for this */
    float *cols;              /* conv: im2col block */
    float *gscratch;          /* conv: weight + bias gradient accumulator */
    uint8_t *bytes;           /* pool: argmax; dropout: keep mask */
    uint64_t seed, step;      /* dropout stream */
    int last_train;           /* dropout: mask valid for backward */
};

static struct nn_layer *layer_alloc(enum nn_layer_kind kind, int in_dim, int out_dim)
{
    if (in_dim < 1 || out_dim < 1 || in_dim > NN_SPEC_MAX_DIM || out_dim > NN_SPEC_MAX_DIM)
        return NULL;
    struct nn_layer *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->kind = kind;
    l->in_dim = in_dim;
    l->out_dim = out_dim;
    l->oh = 1;
    l->ow = 1;
    l->oc = out_dim;
    return l;
}

struct nn_layer *nn_layer_new_dense(int in, int out, int relu)
{
    if ((long long)in * out > NN_SPEC_MAX_DENSE)
        return NULL;
    struct nn_layer *l = layer_alloc(NN_LAYER_DENSE, in, out);
    if (l)
        l->relu = relu != 0;
    return l;
}

struct nn_layer *nn_layer_new_conv(int h, int w, int c, int oc, int k, int stride, int pad,
                                   int relu)
{
    struct nn_conv_geom g;
    if (nn_conv_geom_init(&g, h, w, c, oc, k, stride, pad) < 0)
        return NULL;
    struct nn_layer *l = layer_alloc(NN_LAYER_CONV, h * w * c, g.oh * g.ow * oc);
    if (!l)
        return NULL;
    l->conv = g;
    l->oh = g.oh;
    l->ow = g.ow;
    l->oc = oc;
    l->relu = relu != 0;
    return l;
}

struct nn_layer *nn_layer_new_maxpool(int h, int w, int c, int k, int stride)
{
    struct nn_conv_pool p;
    if (nn_conv_pool_init(&p, h, w, c, k, stride) < 0)
        return NULL;
    struct nn_layer *l = layer_alloc(NN_LAYER_MAXPOOL, h * w * c, p.oh * p.ow * c);
    if (!l)
        return NULL;
    l->pool = p;
    l->oh = p.oh;
    l->ow = p.ow;
    l->oc = c;
    return l;
}

struct nn_layer *nn_layer_new_relu(int dim)
{
    return layer_alloc(NN_LAYER_RELU, dim, dim);
}

struct nn_layer *nn_layer_new_dropout(int dim, float p)
{
    if (!(p >= 0.0f && p < 1.0f))
        return NULL;
    struct nn_layer *l = layer_alloc(NN_LAYER_DROPOUT, dim, dim);
    if (l)
        l->drop_p = p;
    return l;
}

struct nn_layer *nn_layer_new_flatten(int h, int w, int c)
{
    if (h < 1 || w < 1 || c < 1 || (long long)h * w * c > NN_SPEC_MAX_DIM)
        return NULL;
    return layer_alloc(NN_LAYER_FLATTEN, h * w * c, h * w * c);
}

void nn_layer_free(struct nn_layer *l)
{
    if (!l)
        return;
    free(l->cols);
    free(l->gscratch);
    free(l->bytes);
    free(l);
}

enum nn_layer_kind nn_layer_kind(const struct nn_layer *l)
{
    return l->kind;
}

const char *nn_layer_kind_name(enum nn_layer_kind kind)
{
    switch (kind) {
    case NN_LAYER_DENSE: return "dense";
    case NN_LAYER_CONV: return "conv";
    case NN_LAYER_MAXPOOL: return "maxpool";
    case NN_LAYER_RELU: return "relu";
    case NN_LAYER_DROPOUT: return "dropout";
    case NN_LAYER_FLATTEN: return "flatten";
    }
    return "?";
}

int nn_layer_in_dim(const struct nn_layer *l)
{
    return l->in_dim;
}

int nn_layer_out_dim(const struct nn_layer *l)
{
    return l->out_dim;
}

void nn_layer_out_shape(const struct nn_layer *l, int *h, int *w, int *c)
{
    if (h)
        *h = l->oh;
    if (w)
        *w = l->ow;
    if (c)
        *c = l->oc;
}

int nn_layer_in_place(const struct nn_layer *l)
{
    return l->kind == NN_LAYER_RELU || l->kind == NN_LAYER_DROPOUT ||
           l->kind == NN_LAYER_FLATTEN;
}

int nn_layer_num_tensors(const struct nn_layer *l)
{
    return l->kind == NN_LAYER_DENSE || l->kind == NN_LAYER_CONV ? 2 : 0;
}

/* Weight elements (the bias follows the weight). */
static size_t layer_wlen(const struct nn_layer *l)
{
    if (l->kind == NN_LAYER_DENSE)
        return (size_t)l->in_dim * l->out_dim;
    if (l->kind == NN_LAYER_CONV)
        return (size_t)l->conv.kdim * l->conv.oc;
    return 0;
}

size_t nn_layer_num_params(const struct nn_layer *l)
{
    size_t w = layer_wlen(l);
    return w ? w + (size_t)l->oc : 0;
}

int nn_layer_tensor(const struct nn_layer *l, int i, struct nn_spec_tensor *ti)
{
    if (!ti || i < 0 || i >= nn_layer_num_tensors(l))
        return SMLT_ERANGE;
    memset(ti, 0, sizeof *ti);
    if (i == 1) {
        strcpy(ti->name, "bias");
        ti->ndim = 1;
        ti->shape[0] = l->oc;
        ti->offset = layer_wlen(l);
        ti->length = (size_t)l->oc;
        ti->init = SMLT_INIT_ZERO;
        ti->scale = 0.0f;
        return 0;
    }
    double fan_in, fan_out;
    strcpy(ti->name, "weight");
    if (l->kind == NN_LAYER_DENSE) {
        ti->ndim = 2;
        ti->shape[0] = l->in_dim;
        ti->shape[1] = l->out_dim;
        fan_in = l->in_dim;
        fan_out = l->out_dim;
    } else {
        ti->ndim = 4;
        ti->shape[0] = l->conv.k;
        ti->shape[1] = l->conv.k;
        ti->shape[2] = l->conv.c;
        ti->shape[3] = l->conv.oc;
        fan_in = (double)l->conv.kdim;
        fan_out = (double)l->conv.k * l->conv.k * l->conv.oc;
    }
    ti->offset = 0;
    ti->length = layer_wlen(l);
    ti->init = SMLT_INIT_UNIFORM;
    ti->scale = nn_spec_init_scale(l->relu, fan_in, fan_out);
    return 0;
}

void nn_layer_bind(struct nn_layer *l, float *params, float *grads)
{
    l->params = params;
    l->grads = grads;
}

int nn_layer_prepare(struct nn_layer *l, int max_batch)
{
    if (max_batch < 1 || max_batch > NN_LAYER_MAX_BATCH)
        return SMLT_EINVAL;
    if (max_batch <= l->max_batch)
        return 0;
    if (l->kind == NN_LAYER_CONV) {
        /* Column scratch does not depend on the batch size (it holds one block). */
        if (!l->cols) {
            l->cols = malloc(sizeof(float) * nn_conv_cols_len(&l->conv));
            l->gscratch = malloc(sizeof(float) * (layer_wlen(l) + (size_t)l->oc));
            if (!l->cols || !l->gscratch)
                return SMLT_ENOMEM;
            /* Touch them now so the first batch does not pay the page faults. */
            memset(l->cols, 0, sizeof(float) * nn_conv_cols_len(&l->conv));
        }
    } else if (l->kind == NN_LAYER_MAXPOOL || l->kind == NN_LAYER_DROPOUT) {
        size_t len = (size_t)max_batch * l->out_dim;
        uint8_t *b = realloc(l->bytes, len);
        if (!b)
            return SMLT_ENOMEM;
        memset(b, 0, len);
        l->bytes = b;
    }
    l->max_batch = max_batch;
    return 0;
}

void nn_layer_set_seed(struct nn_layer *l, uint64_t seed, uint64_t step)
{
    l->seed = seed;
    l->step = step;
}

/* y (n x out) += b per row, then ReLU when relu. */
static void dense_bias_act(float *restrict y, const float *restrict b, int n, int out, int relu)
{
    for (int i = 0; i < n; i++) {
        float *r = y + (size_t)i * out;
        if (relu) {
            for (int j = 0; j < out; j++) {
                float v = r[j] + b[j];
                r[j] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int j = 0; j < out; j++)
                r[j] += b[j];
        }
    }
}

static void dense_forward(struct nn_layer *l, const float *x, float *y, int n)
{
    const int in = l->in_dim, out = l->out_dim;
    const float *W = l->params, *b = l->params + (size_t)in * out;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, out, in, 1.0f, x, in, W, out, 0.0f,
                y, out);
    dense_bias_act(y, b, n, out, l->relu);
}

/* Masks dy by the ReLU (when relu) and applies the bias gradient (column sums of dy) to tb as
 * tb = beta tb + alpha sum. The sums go through a small stack buffer in blocks of columns so
 * that the pass over dy is a single one. */
static void dense_mask_bias(float *restrict dy, const float *restrict y, int n, int out, int relu,
                            float *restrict tb, float alpha, float beta)
{
    enum { BLK = 256 };
    float acc[BLK];
    for (int j0 = 0; j0 < out; j0 += BLK) {
        const int m = out - j0 < BLK ? out - j0 : BLK;
        memset(acc, 0, sizeof(float) * (size_t)m);
        for (int i = 0; i < n; i++) {
            float *restrict d = dy + (size_t)i * out + j0;
            const float *restrict o = y + (size_t)i * out + j0;
            if (relu) {
                for (int j = 0; j < m; j++) {
                    float v = o[j] > 0.0f ? d[j] : 0.0f;
                    d[j] = v;
                    acc[j] += v;
                }
            } else {
                for (int j = 0; j < m; j++)
                    acc[j] += d[j];
            }
        }
        float *t = tb + j0;
        if (beta == 0.0f)
            for (int j = 0; j < m; j++)
                t[j] = alpha * acc[j];
        else
            for (int j = 0; j < m; j++)
                t[j] = beta * t[j] + alpha * acc[j];
    }
}

static void dense_backward(struct nn_layer *l, const float *x, const float *y, float *dy,
                           float *dx, int n, const struct nn_layer_upd *upd)
{
    const int in = l->in_dim, out = l->out_dim;
    const size_t wlen = (size_t)in * out;
    const float *W = l->params;
    float *t = upd->to_params ? l->params : l->grads;
    dense_mask_bias(dy, y, n, out, l->relu, t + wlen, upd->alpha, upd->beta);
    /* dx first: with fused SGD it must see the weights of the forward pass. */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, in, out, 1.0f, dy, out, W, out,
                    0.0f, dx, in);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in, out, n, upd->alpha, x, in, dy, out,
                upd->beta, t, out);
}

static void relu_forward(const float *restrict x, float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* dx = dy * (y > 0); dx may equal dy, so no restrict here. */
static void relu_backward(const float *y, const float *dy, float *dx, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

static void dropout_forward(struct nn_layer *l, const float *x, float *y, int n, int train)
{
    const size_t len = (size_t)n * l->out_dim;
    l->last_train = train && l->drop_p > 0.0f;
    if (!l->last_train) {
        if (y != x)
            memcpy(y, x, sizeof(float) * len);
        return;
    }
    const uint64_t stream = smlt_rand_mix(l->seed ^ smlt_rand_mix(l->step));
    const float p = l->drop_p, scale = 1.0f / (1.0f - p);
    uint8_t *mask = l->bytes;
    for (size_t i = 0; i < len; i++) {
        uint8_t keep = smlt_rand_unit(stream, i) >= p;
        mask[i] = keep;
        y[i] = keep ? x[i] * scale : 0.0f;
    }
}

static void dropout_backward(struct nn_layer *l, const float *dy, float *dx, int n)
{
    const size_t len = (size_t)n * l->out_dim;
    if (!l->last_train) {
        if (dx != dy)
            memcpy(dx, dy, sizeof(float) * len);
        return;
    }
    const float scale = 1.0f / (1.0f - l->drop_p);
    const uint8_t *mask = l->bytes;
    for (size_t i = 0; i < len; i++)
        dx[i] = mask[i] ? dy[i] * scale : 0.0f;
}

void nn_layer_forward(struct nn_layer *l, const float *x, float *y, int n, int train)
{
    const size_t len = (size_t)n * l->out_dim;
    switch (l->kind) {
    case NN_LAYER_DENSE:
        dense_forward(l, x, y, n);
        break;
    case NN_LAYER_CONV:
        nn_conv_forward(&l->conv, x, n, l->params, l->params + layer_wlen(l), l->relu, y,
                        l->cols);
        break;
    case NN_LAYER_MAXPOOL:
        nn_conv_pool_forward(&l->pool, x, n, y, l->bytes);
        break;
    case NN_LAYER_RELU:
        relu_forward(x, y, len);
        break;
    case NN_LAYER_DROPOUT:
        dropout_forward(l, x, y, n, train);
        break;
    case NN_LAYER_FLATTEN:
        if (y != x)
            memcpy(y, x, sizeof(float) * len);
        break;
    }
}

void nn_layer_backward(struct nn_layer *l, const float *x, const float *y, float *dy, float *dx,
                       int n, const struct nn_layer_upd *upd)
{
    switch (l->kind) {
    case NN_LAYER_DENSE:
        dense_backward(l, x, y, dy, dx, n, upd);
        break;
    case NN_LAYER_CONV: {
        float *t = upd->to_params ? l->params : l->grads;
        nn_conv_backward(&l->conv, x, y, dy, dx, n, l->relu, l->params, t, t + layer_wlen(l),
                         l->gscratch, upd->alpha, upd->beta, l->cols);
        break;
    }
    case NN_LAYER_MAXPOOL:
        if (dx)
            nn_conv_pool_backward(&l->pool, dy, l->bytes, n, dx);
        break;
    case NN_LAYER_RELU:
        if (dx)
            relu_backward(y, dy, dx, (size_t)n * l->out_dim);
        break;
    case NN_LAYER_DROPOUT:
        if (dx)
            dropout_backward(l, dy, dx, n);
        break;
    case NN_LAYER_FLATTEN:
        if (dx && dx != dy)
            memcpy(dx, dy, sizeof(float) * (size_t)n * l->out_dim);
        break;
    }
}

double nn_layer_softmax_xent(const float *logits, const int32_t *labels, int n, int k,
                             float *dlogits, long *correct)
{
    double total = 0.0;
    const float inv_n = 1.0f / (float)n;
    long hits = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        int best = 0;
        float mx = z[0];
        for (int j = 1; j < k; j++) {
            if (z[j] > mx) {
                mx = z[j];
                best = j;
            }
        }
        const int yi = labels[i];
        /* Read the label's logit before d (which may alias z) is overwritten. */
        const float zy = z[yi];
        hits += best == yi;
        float sum = 0.0f;
        if (dlogits) {
            float *d = dlogits + (size_t)i * k;
            for (int j = 0; j < k; j++) {
                d[j] = expf(z[j] - mx);
                sum += d[j];
            }
            total += log((double)sum) - (double)(zy - mx);
            const float inv = inv_n / sum;
            for (int j = 0; j < k; j++)
                d[j] *= inv;
            d[yi] -= inv_n;
        } else {
            for (int j = 0; j < k; j++)
                sum += expf(z[j] - mx);
            total += log((double)sum) - (double)(zy - mx);
        }
    }
    if (correct)
        *correct += hits;
    return n > 0 ? total / n : 0.0;
}
