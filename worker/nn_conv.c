/* nn_conv.c: convolution (im2col + sgemm) and max-pooling kernels on HWC images.
 *
 * Sits under nn_layer.c, which owns the scratch buffers and calls these with a batch at a time.
 * The batch is cut into blocks of g->chunk samples so that a block's im2col matrix (the
 * biggest temporary) stays in L2 while sgemm reads it; because samples are stored NHWC, a
 * block's output rows are contiguous and one sgemm call covers the whole block. */
#include "nn_conv.h"

#include <cblas.h>
#include <string.h>

#include "smlt_error.h"

/* Target size of one block's im2col matrix: about a quarter of a 512 KiB L2, leaving room
 * for the weights, the output block and the sgemm packing buffers. */
#define NN_CONV_COLS_BYTES (128u << 10)
/* Per-dimension cap so that every product below fits comfortably in an int. */
#define NN_CONV_MAX_SIDE 16384
#define NN_CONV_MAX_ELEMS (1 << 28)

int nn_conv_geom_init(struct nn_conv_geom *g, int h, int w, int c, int oc, int k, int stride,
                      int pad)
{
    if (!g || h < 1 || w < 1 || c < 1 || oc < 1 || k < 1 || stride < 1 || pad < 0)
        return SMLT_EINVAL;
    if (h > NN_CONV_MAX_SIDE || w > NN_CONV_MAX_SIDE || c > NN_CONV_MAX_SIDE ||
        oc > NN_CONV_MAX_SIDE || k > NN_CONV_MAX_SIDE || pad > k - 1 || k > h + 2 * pad ||
        k > w + 2 * pad)
        return SMLT_EINVAL;
    if ((long long)h * w * c > NN_CONV_MAX_ELEMS || (long long)k * k * c > NN_CONV_MAX_ELEMS ||
        (long long)k * k * c * oc > NN_CONV_MAX_ELEMS)
        return SMLT_EINVAL;
    memset(g, 0, sizeof *g);
    g->h = h;
    g->w = w;
    g->c = c;
    g->oc = oc;
    g->k = k;
    g->stride = stride;
    g->pad = pad;
    g->oh = (h + 2 * pad - k) / stride + 1;
    g->ow = (w + 2 * pad - k) / stride + 1;
    if ((long long)g->oh * g->ow * oc > NN_CONV_MAX_ELEMS)
        return SMLT_EINVAL;
    g->kdim = k * k * c;
    size_t per_sample = (size_t)g->oh * g->ow * g->kdim * sizeof(float);
    size_t chunk = NN_CONV_COLS_BYTES / per_sample;
    g->chunk = chunk < 1 ? 1 : chunk > 64 ? 64 : (int)chunk;
    return 0;
}

size_t nn_conv_cols_len(const struct nn_conv_geom *g)
{
    return (size_t)g->chunk * g->oh * g->ow * g->kdim;
}

/* Copies len floats; a plain loop because len is a handful (k * c) and a call to memcpy for
 * 5 floats costs more than the copy. */
static inline void copy_floats(float *restrict dst, const float *restrict src, int len)
{
    for (int i = 0; i < len; i++)
        dst[i] = src[i];
}

static inline void add_floats(float *restrict dst, const float *restrict src, int len)
{
    for (int i = 0; i < len; i++)
        dst[i] += src[i];
}

void nn_conv_im2col(const struct nn_conv_geom *g, const float *x, int n, float *cols)
{
    const int H = g->h, W = g->w, C = g->c, K = g->k, S = g->stride, PD = g->pad;
    const int KC = K * C;
    const size_t in_sz = (size_t)H * W * C;
    float *row = cols;
    for (int s = 0; s < n; s++) {
        const float *xs = x + (size_t)s * in_sz;
        for (int oh = 0; oh < g->oh; oh++) {
            const int ih0 = oh * S - PD;
            for (int ow = 0; ow < g->ow; ow++) {
                const int iw0 = ow * S - PD;
                const int inside = iw0 >= 0 && iw0 + K <= W;
                for (int kh = 0; kh < K; kh++, row += KC) {
                    const int ih = ih0 + kh;
                    if (ih < 0 || ih >= H) {
                        memset(row, 0, sizeof(float) * (size_t)KC);
                        continue;
                    }
                    const float *src = xs + ((size_t)ih * W + iw0) * C;
                    if (inside) {
                        copy_floats(row, src, KC);
                        continue;
                    }
                    for (int kw = 0; kw < K; kw++) {
                        const int iw = iw0 + kw;
                        if (iw < 0 || iw >= W)
                            memset(row + kw * C, 0, sizeof(float) * (size_t)C);
                        else
                            copy_floats(row + kw * C, src + (size_t)kw * C, C);
                    }
                }
            }
        }
    }
}

void nn_conv_col2im(const struct nn_conv_geom *g, const float *cols, int n, float *dx)
{
    const int H = g->h, W = g->w, C = g->c, K = g->k, S = g->stride, PD = g->pad;
    const int KC = K * C;
    const size_t in_sz = (size_t)H * W * C;
    const float *row = cols;
    for (int s = 0; s < n; s++) {
        float *xs = dx + (size_t)s * in_sz;
        for (int oh = 0; oh < g->oh; oh++) {
            const int ih0 = oh * S - PD;
            for (int ow = 0; ow < g->ow; ow++) {
                const int iw0 = ow * S - PD;
                const int inside = iw0 >= 0 && iw0 + K <= W;
                for (int kh = 0; kh < K; kh++, row += KC) {
                    const int ih = ih0 + kh;
                    if (ih < 0 || ih >= H)
                        continue;
                    float *dst = xs + ((size_t)ih * W + iw0) * C;
                    if (inside) {
                        add_floats(dst, row, KC);
                        continue;
                    }
                    for (int kw = 0; kw < K; kw++) {
                        const int iw = iw0 + kw;
                        if (iw >= 0 && iw < W)
                            add_floats(dst + (size_t)kw * C, row + kw * C, C);
                    }
                }
            }
        }
    }
}

/* rows x cols matrix y (row-major): y += b per row, then ReLU if asked. */
static void bias_act(float *restrict y, const float *restrict b, size_t rows, int cols, int relu)
{
    for (size_t i = 0; i < rows; i++) {
        float *r = y + i * (size_t)cols;
        if (relu) {
            for (int j = 0; j < cols; j++) {
                float v = r[j] + b[j];
                r[j] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int j = 0; j < cols; j++)
                r[j] += b[j];
        }
    }
}

void nn_conv_forward(const struct nn_conv_geom *g, const float *x, int n, const float *W,
                     const float *b, int relu, float *y, float *cols)
{
    const size_t in_sz = (size_t)g->h * g->w * g->c;
    const size_t out_sz = (size_t)g->oh * g->ow * g->oc;
    for (int s0 = 0; s0 < n; s0 += g->chunk) {
        const int cn = n - s0 < g->chunk ? n - s0 : g->chunk;
        const int P = cn * g->oh * g->ow;
        float *ys = y + (size_t)s0 * out_sz;
        nn_conv_im2col(g, x + (size_t)s0 * in_sz, cn, cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, P, g->oc, g->kdim, 1.0f, cols,
                    g->kdim, W, g->oc, 0.0f, ys, g->oc);
        bias_act(ys, b, (size_t)P, g->oc, relu);
    }
}

/* dy *= (y > 0) when relu, and gb (cols floats) += column sums of dy. */
static void mask_colsum(float *restrict dy, const float *restrict y, size_t rows, int cols,
                        int relu, float *restrict gb)
{
    for (size_t i = 0; i < rows; i++) {
        float *d = dy + i * (size_t)cols;
        const float *o = y + i * (size_t)cols;
        if (relu)
            for (int j = 0; j < cols; j++)
                d[j] = o[j] > 0.0f ? d[j] : 0.0f;
        for (int j = 0; j < cols; j++)
            gb[j] += d[j];
    }
}

void nn_conv_backward(const struct nn_conv_geom *g, const float *x, const float *y, float *dy,
                      float *dx, int n, int relu, const float *W, float *tW, float *tb,
                      float *gW, float alpha, float beta, float *cols)
{
    const size_t in_sz = (size_t)g->h * g->w * g->c;
    const size_t out_sz = (size_t)g->oh * g->ow * g->oc;
    const int fused = tW == W;
    const size_t wlen = (size_t)g->kdim * g->oc;
    /* The bias gradient is summed in the last oc floats of the scratch. */
    float *gb = gW + wlen;
    memset(gb, 0, sizeof(float) * (size_t)g->oc);
    for (int s0 = 0; s0 < n; s0 += g->chunk) {
        const int cn = n - s0 < g->chunk ? n - s0 : g->chunk;
        const int P = cn * g->oh * g->ow;
        float *dys = dy + (size_t)s0 * out_sz;
        mask_colsum(dys, y + (size_t)s0 * out_sz, (size_t)P, g->oc, relu, gb);
        nn_conv_im2col(g, x + (size_t)s0 * in_sz, cn, cols);
        if (fused)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->kdim, g->oc, P, 1.0f, cols,
                        g->kdim, dys, g->oc, s0 == 0 ? 0.0f : 1.0f, gW, g->oc);
        else
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->kdim, g->oc, P, alpha, cols,
                        g->kdim, dys, g->oc, s0 == 0 ? beta : 1.0f, tW, g->oc);
        if (dx) {
            /* The columns are no longer needed: reuse the buffer for their gradient. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, P, g->kdim, g->oc, 1.0f, dys,
                        g->oc, W, g->oc, 0.0f, cols, g->kdim);
            float *dxs = dx + (size_t)s0 * in_sz;
            memset(dxs, 0, sizeof(float) * in_sz * (size_t)cn);
            nn_conv_col2im(g, cols, cn, dxs);
        }
    }
    if (fused) {
        for (size_t i = 0; i < wlen; i++)
            tW[i] = beta * tW[i] + alpha * gW[i];
    }
    for (int j = 0; j < g->oc; j++)
        tb[j] = (beta == 0.0f ? 0.0f : beta * tb[j]) + alpha * gb[j];
}

int nn_conv_pool_init(struct nn_conv_pool *p, int h, int w, int c, int k, int stride)
{
    if (!p || h < 1 || w < 1 || c < 1 || k < 1 || stride < 1 || k > h || k > w || k > 15)
        return SMLT_EINVAL;
    if (h > NN_CONV_MAX_SIDE || w > NN_CONV_MAX_SIDE || (long long)h * w * c > NN_CONV_MAX_ELEMS)
        return SMLT_EINVAL;
    memset(p, 0, sizeof *p);
    p->h = h;
    p->w = w;
    p->c = c;
    p->k = k;
    p->stride = stride;
    p->oh = (h - k) / stride + 1;
    p->ow = (w - k) / stride + 1;
    return 0;
}

/* The common case, 2 x 2 windows with stride 2: fixed window, branch-free selects over the
 * channels (vectorized by the compiler), no inner window loops. */
static void pool2_forward(const struct nn_conv_pool *p, const float *x, int n, float *y,
                          uint8_t *arg)
{
    const int W = p->w, C = p->c, OH = p->oh, OW = p->ow;
    const size_t row = (size_t)W * C;
    const size_t in_sz = (size_t)p->h * row, out_sz = (size_t)OH * OW * C;
    for (int s = 0; s < n; s++) {
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = x + (size_t)s * in_sz + (size_t)(2 * oh) * row;
            const float *r1 = r0 + row;
            float *restrict yo = y + (size_t)s * out_sz + (size_t)oh * OW * C;
            uint8_t *restrict ao = arg + (size_t)s * out_sz + (size_t)oh * OW * C;
            for (int ow = 0; ow < OW; ow++) {
                const float *a = r0 + (size_t)(2 * ow) * C, *b = a + C;
                const float *c0 = r1 + (size_t)(2 * ow) * C, *d = c0 + C;
                for (int c = 0; c < C; c++) {
                    float m = a[c];
                    uint8_t k = 0;
                    k = b[c] > m ? 1 : k;
                    m = b[c] > m ? b[c] : m;
                    k = c0[c] > m ? 2 : k;
                    m = c0[c] > m ? c0[c] : m;
                    k = d[c] > m ? 3 : k;
                    m = d[c] > m ? d[c] : m;
                    yo[(size_t)ow * C + c] = m;
                    ao[(size_t)ow * C + c] = k;
                }
            }
        }
    }
}

static void pool2_backward(const struct nn_conv_pool *p, const float *dy, const uint8_t *arg,
                           int n, float *dx)
{
    const int W = p->w, C = p->c, OH = p->oh, OW = p->ow;
    const size_t row = (size_t)W * C;
    const size_t in_sz = (size_t)p->h * row, out_sz = (size_t)OH * OW * C;
    for (int s = 0; s < n; s++) {
        for (int oh = 0; oh < OH; oh++) {
            float *r0 = dx + (size_t)s * in_sz + (size_t)(2 * oh) * row;
            float *r1 = r0 + row;
            const float *restrict d = dy + (size_t)s * out_sz + (size_t)oh * OW * C;
            const uint8_t *restrict ao = arg + (size_t)s * out_sz + (size_t)oh * OW * C;
            for (int ow = 0; ow < OW; ow++) {
                float *restrict a = r0 + (size_t)(2 * ow) * C, *restrict b = a + C;
                float *restrict c0 = r1 + (size_t)(2 * ow) * C, *restrict e = c0 + C;
                const float *dd = d + (size_t)ow * C;
                const uint8_t *aa = ao + (size_t)ow * C;
                for (int c = 0; c < C; c++) {
                    const float v = dd[c];
                    const uint8_t k = aa[c];
                    a[c] = k == 0 ? v : 0.0f;
                    b[c] = k == 1 ? v : 0.0f;
                    c0[c] = k == 2 ? v : 0.0f;
                    e[c] = k == 3 ? v : 0.0f;
                }
            }
        }
    }
}

void nn_conv_pool_forward(const struct nn_conv_pool *p, const float *x, int n, float *y,
                          uint8_t *arg)
{
    if (p->k == 2 && p->stride == 2) {
        pool2_forward(p, x, n, y, arg);
        return;
    }
    const int W = p->w, C = p->c, K = p->k, S = p->stride;
    const size_t in_sz = (size_t)p->h * W * C;
    const size_t out_sz = (size_t)p->oh * p->ow * C;
    for (int s = 0; s < n; s++) {
        const float *xs = x + (size_t)s * in_sz;
        for (int oh = 0; oh < p->oh; oh++) {
            for (int ow = 0; ow < p->ow; ow++) {
                const size_t o = (size_t)s * out_sz + ((size_t)oh * p->ow + ow) * C;
                float *restrict yo = y + o;
                uint8_t *restrict ao = arg + o;
                const float *x0 = xs + ((size_t)oh * S * W + (size_t)ow * S) * C;
                for (int c = 0; c < C; c++) {
                    yo[c] = x0[c];
                    ao[c] = 0;
                }
                for (int kh = 0; kh < K; kh++) {
                    for (int kw = 0; kw < K; kw++) {
                        if (!kh && !kw)
                            continue;
                        const float *restrict xp = x0 + ((size_t)kh * W + kw) * C;
                        const uint8_t pos = (uint8_t)(kh * K + kw);
                        for (int c = 0; c < C; c++) {
                            const int gt = xp[c] > yo[c];
                            yo[c] = gt ? xp[c] : yo[c];
                            ao[c] = gt ? pos : ao[c];
                        }
                    }
                }
            }
        }
    }
}

void nn_conv_pool_backward(const struct nn_conv_pool *p, const float *dy, const uint8_t *arg,
                           int n, float *dx)
{
    const int W = p->w, C = p->c, K = p->k, S = p->stride;
    const size_t in_sz = (size_t)p->h * W * C;
    const size_t out_sz = (size_t)p->oh * p->ow * C;
    /* Non-overlapping windows that tile the input: every input element is written exactly
     * once, so no clearing pass is needed. Otherwise clear and accumulate. */
    const int tiles = S == K && p->oh * K == p->h && p->ow * K == W;
    if (tiles && K == 2) {
        pool2_backward(p, dy, arg, n, dx);
        return;
    }
    if (!tiles)
        memset(dx, 0, sizeof(float) * in_sz * (size_t)n);
    for (int s = 0; s < n; s++) {
        float *xs = dx + (size_t)s * in_sz;
        for (int oh = 0; oh < p->oh; oh++) {
            for (int ow = 0; ow < p->ow; ow++) {
                const size_t o = (size_t)s * out_sz + ((size_t)oh * p->ow + ow) * C;
                const float *restrict d = dy + o;
                const uint8_t *restrict a = arg + o;
                float *x0 = xs + ((size_t)oh * S * W + (size_t)ow * S) * C;
                for (int kh = 0; kh < K; kh++) {
                    for (int kw = 0; kw < K; kw++) {
                        float *restrict xp = x0 + ((size_t)kh * W + kw) * C;
                        const uint8_t pos = (uint8_t)(kh * K + kw);
                        if (tiles)
                            for (int c = 0; c < C; c++)
                                xp[c] = a[c] == pos ? d[c] : 0.0f;
                        else
                            for (int c = 0; c < C; c++)
                                xp[c] += a[c] == pos ? d[c] : 0.0f;
                    }
                }
            }
        }
    }
}
