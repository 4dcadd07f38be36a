/* nn_conv.c: convolution (im2col + sgemm) and max-pooling kernels on HWC images.
 *
 * Sits under nn_layer.c, which owns the scratch buffers and calls these with a batch at a time.
 * The batch is cut into blocks of g->chunk samples so that a block's im2col matrix (the
 * biggest temporary) stays in L2 while sgemm reads it; because samples are stored NHWC, a
 * block's output rows are contiguous and one sgemm call covers the whole block. */
#include "nn_conv.h"

#include <cblas.h>
#include <string.h>

#include "nn_spec.h"
#include "smlt_error.h"

/* Target size of one block's im2col matrix: about a quarter of a 512 KiB L2, leaving room
 * for the weights, the output block and the sgemm packing buffers. */
#define NN_CONV_COLS_BYTES (128u << 10)

#define NN_INLINE static inline __attribute__((always_inline))

int nn_conv_geom_init(struct nn_conv_geom *g, int h, int w, int c, int oc, int k, int stride,
                      int pad)
{
    int oh, ow;
    if (!g || nn_spec_conv_out(h, w, c, oc, k, stride, pad, &oh, &ow) != 0)
        return SMLT_EINVAL;
    memset(g, 0, sizeof *g);
    g->h = h;
    g->w = w;
    g->c = c;
    g->oc = oc;
    g->k = k;
    g->stride = stride;
    g->pad = pad;
    g->oh = oh;
    g->ow = ow;
    g->kdim = k * k * c;
    size_t per_sample = (size_t)g->oh * g->ow * g->kdim * sizeof(float);
    size_t chunk = NN_CONV_COLS_BYTES / per_sample;
    g->chunk = chunk < 1 ? 1 : chunk > 64 ? 64 : (int)chunk;
    return 0;
}

size_t nn_conv_cols_len(const struct nn_conv_geom *g)
{
    /* One-channel inputs use the planar path, which also needs the transposed output block. */
    const size_t rows = (size_t)g->chunk * g->oh * g->ow;
    return rows * (size_t)g->kdim + (g->c == 1 ? rows * (size_t)g->oc : 0);
}

/* ---- the planar path for one-channel inputs (a network's first layer on grey images) ----
 * With c = 1 an im2col row holds only k floats per window row, so the [P x K] layout costs a
 * scalar copy per element. Transposed, colsT[K x P] is k*k shifted copies of the image, one
 * contiguous run per output row, and the forward product colsT^T-shaped sgemm (W^T * colsT)
 * is also the faster orientation for oc < 8 (measured 52 vs 35 GFLOP/s for LeNet's conv1).
 * The output block comes out as [oc x P] and is transposed into HWC with the bias and ReLU. */
static void im2row_planar(const struct nn_conv_geom *g, const float *x, int n, float *colsT)
{
    const int H = g->h, W = g->w, K = g->k, S = g->stride, PD = g->pad;
    const int OH = g->oh, OW = g->ow;
    const size_t plane = (size_t)OH * OW, P = (size_t)n * plane;
    for (int kh = 0; kh < K; kh++) {
        for (int kw = 0; kw < K; kw++) {
            float *row = colsT + (size_t)(kh * K + kw) * P;
            /* output columns whose input column lies inside the image */
            int lo = 0, hi = OW;
            while (lo < OW && lo * S - PD + kw < 0)
                lo++;
            while (hi > lo && (hi - 1) * S - PD + kw >= W)
                hi--;
            for (int s = 0; s < n; s++) {
                const float *xs = x + (size_t)s * H * W;
                for (int oh = 0; oh < OH; oh++) {
                    float *d = row + (size_t)s * plane + (size_t)oh * OW;
                    const int ih = oh * S - PD + kh;
                    if (ih < 0 || ih >= H) {
                        memset(d, 0, sizeof(float) * (size_t)OW);
                        continue;
                    }
                    const float *src = xs + (size_t)ih * W - PD + kw;
                    for (int ow = 0; ow < lo; ow++)
                        d[ow] = 0.0f;
                    if (S == 1)
                        memcpy(d + lo, src + lo, sizeof(float) * (size_t)(hi - lo));
                    else
                        for (int ow = lo; ow < hi; ow++)
                            d[ow] = src[(size_t)ow * S];
                    for (int ow = hi; ow < OW; ow++)
                        d[ow] = 0.0f;
                }
            }
        }
    }
}

/* The adjoint of im2row_planar: dx += row2im(colsT). */
static void row2im_planar(const struct nn_conv_geom *g, const float *colsT, int n, float *dx)
{
    const int H = g->h, W = g->w, K = g->k, S = g->stride, PD = g->pad;
    const int OH = g->oh, OW = g->ow;
    const size_t plane = (size_t)OH * OW, P = (size_t)n * plane;
    for (int kh = 0; kh < K; kh++) {
        for (int kw = 0; kw < K; kw++) {
            const float *row = colsT + (size_t)(kh * K + kw) * P;
            for (int s = 0; s < n; s++) {
                float *xs = dx + (size_t)s * H * W;
                for (int oh = 0; oh < OH; oh++) {
                    const int ih = oh * S - PD + kh;
                    if (ih < 0 || ih >= H)
                        continue;
                    const float *d = row + (size_t)s * plane + (size_t)oh * OW;
                    float *dst = xs + (size_t)ih * W;
                    for (int ow = 0; ow < OW; ow++) {
                        const int iw = ow * S - PD + kw;
                        if (iw >= 0 && iw < W)
                            dst[iw] += d[ow];
                    }
                }
            }
        }
    }
}

/* y[p][o] = act(outT[o][p] + b[o]) for p < P: the transpose back to HWC. */
NN_INLINE void untranspose_body(float *restrict y, const float *restrict outT,
                                const float *restrict b, size_t P, const int OC, int relu)
{
    for (size_t p0 = 0; p0 < P; p0 += 64) {
        const size_t pn = P - p0 < 64 ? P - p0 : 64;
        for (int o = 0; o < OC; o++) {
            const float *src = outT + (size_t)o * P + p0;
            float *dst = y + p0 * (size_t)OC + o;
            const float bo = b[o];
            for (size_t p = 0; p < pn; p++) {
                float v = src[p] + bo;
                dst[p * (size_t)OC] = relu && v < 0.0f ? 0.0f : v;
            }
        }
    }
}

static void untranspose(float *y, const float *outT, const float *b, size_t P, int OC, int relu)
{
    if (OC == 6)
        untranspose_body(y, outT, b, P, 6, relu);
    else
        untranspose_body(y, outT, b, P, OC, relu);
}

/* The kernels below are written once as always-inline bodies whose innermost length (k * c
 * for im2col, c for pooling, oc for the bias passes) is a parameter, and instantiated with
 * constants for the common shapes (LeNet's 5x5x1, 5x5x6, 6 and 16 channels, 3x3 kernels) so
 * that the compiler unrolls and vectorizes those loops; other shapes take the generic copy. */

/* The range [lo, hi) of output columns whose whole k-wide window lies inside the input row;
 * the columns outside it touch the zero padding and go through the slow path. */
static void interior_cols(const struct nn_conv_geom *g, int *lo, int *hi)
{
    const int S = g->stride, PD = g->pad;
    int l = (PD + S - 1) / S;
    int h = g->w + PD - g->k >= 0 ? (g->w + PD - g->k) / S + 1 : 0;
    if (l > g->ow)
        l = g->ow;
    if (h > g->ow)
        h = g->ow;
    if (h < l)
        h = l;
    *lo = l;
    *hi = h;
}

NN_INLINE void im2col_body(const struct nn_conv_geom *g, const float *x, int n, float *cols,
                           const int KC)
{
    const int H = g->h, W = g->w, C = g->c, K = g->k, S = g->stride, PD = g->pad;
    const int OH = g->oh, OW = g->ow, kdim = g->kdim;
    const size_t in_sz = (size_t)H * W * C;
    int lo, hi;
    interior_cols(g, &lo, &hi);
    for (int s = 0; s < n; s++) {
        const float *xs = x + (size_t)s * in_sz;
        for (int oh = 0; oh < OH; oh++) {
            float *base = cols + ((size_t)s * OH + oh) * OW * (size_t)kdim;
            for (int kh = 0; kh < K; kh++) {
                const int ih = oh * S - PD + kh;
                float *dst = base + (size_t)kh * KC;
                if (ih < 0 || ih >= H) {
                    for (int ow = 0; ow < OW; ow++)
                        memset(dst + (size_t)ow * kdim, 0, sizeof(float) * (size_t)KC);
                    continue;
                }
                const float *src = xs + (size_t)ih * W * C;
                for (int ow = lo; ow < hi; ow++) {
                    float *restrict d = dst + (size_t)ow * kdim;
                    const float *restrict q = src + (size_t)(ow * S - PD) * C;
                    for (int i = 0; i < KC; i++)
                        d[i] = q[i];
                }
                for (int ow = 0; ow < OW; ow++) {
                    if (ow == lo) {
                        ow = hi - 1;
                        continue;
                    }
                    float *d = dst + (size_t)ow * kdim;
                    for (int kw = 0; kw < K; kw++) {
                        const int iw = ow * S - PD + kw;
                        if (iw < 0 || iw >= W)
                            memset(d + kw * C, 0, sizeof(float) * (size_t)C);
                        else
                            for (int c = 0; c < C; c++)
                                d[kw * C + c] = src[(size_t)iw * C + c];
                    }
                }
            }
        }
    }
}

NN_INLINE void col2im_body(const struct nn_conv_geom *g, const float *cols, int n, float *dx,
                           const int KC)
{
    const int H = g->h, W = g->w, C = g->c, K = g->k, S = g->stride, PD = g->pad;
    const int OH = g->oh, OW = g->ow, kdim = g->kdim;
    const size_t in_sz = (size_t)H * W * C;
    int lo, hi;
    interior_cols(g, &lo, &hi);
    for (int s = 0; s < n; s++) {
        float *xs = dx + (size_t)s * in_sz;
        for (int oh = 0; oh < OH; oh++) {
            const float *base = cols + ((size_t)s * OH + oh) * OW * (size_t)kdim;
            for (int kh = 0; kh < K; kh++) {
                const int ih = oh * S - PD + kh;
                if (ih < 0 || ih >= H)
                    continue;
                const float *row = base + (size_t)kh * KC;
                float *dst = xs + (size_t)ih * W * C;
                /* Windows overlap, so the adds of neighbouring columns must stay in order. */
                for (int ow = 0; ow < OW; ow++) {
                    const float *r = row + (size_t)ow * kdim;
                    if (ow >= lo && ow < hi) {
                        float *d = dst + (size_t)(ow * S - PD) * C;
                        for (int i = 0; i < KC; i++)
                            d[i] += r[i];
                        continue;
                    }
                    for (int kw = 0; kw < K; kw++) {
                        const int iw = ow * S - PD + kw;
                        if (iw >= 0 && iw < W)
                            for (int c = 0; c < C; c++)
                                dst[(size_t)iw * C + c] += r[kw * C + c];
                    }
                }
            }
        }
    }
}

void nn_conv_im2col(const struct nn_conv_geom *g, const float *x, int n, float *cols)
{
    switch (g->k * g->c) {
    case 3: im2col_body(g, x, n, cols, 3); break;
    case 5: im2col_body(g, x, n, cols, 5); break;
    case 9: im2col_body(g, x, n, cols, 9); break;
    case 15: im2col_body(g, x, n, cols, 15); break;
    case 30: im2col_body(g, x, n, cols, 30); break;
    default: im2col_body(g, x, n, cols, g->k * g->c); break;
    }
}

void nn_conv_col2im(const struct nn_conv_geom *g, const float *cols, int n, float *dx)
{
    switch (g->k * g->c) {
    case 5: col2im_body(g, cols, n, dx, 5); break;
    case 30: col2im_body(g, cols, n, dx, 30); break;
    default: col2im_body(g, cols, n, dx, g->k * g->c); break;
    }
}

/* rows x cols matrix y (row-major): y += b per row, then ReLU if asked. */
NN_INLINE void bias_act_body(float *restrict y, const float *restrict b, size_t rows,
                             const int cols, int relu)
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

static void bias_act(float *y, const float *b, size_t rows, int cols, int relu)
{
    switch (cols) {
    case 6: bias_act_body(y, b, rows, 6, relu); break;
    case 16: bias_act_body(y, b, rows, 16, relu); break;
    default: bias_act_body(y, b, rows, cols, relu); break;
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
        if (g->c == 1) {
            float *outT = cols + (size_t)g->chunk * g->oh * g->ow * g->kdim;
            im2row_planar(g, x + (size_t)s0 * in_sz, cn, cols);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->oc, P, g->kdim, 1.0f, W,
                        g->oc, cols, P, 0.0f, outT, P);
            untranspose(ys, outT, b, (size_t)P, g->oc, relu);
            continue;
        }
        nn_conv_im2col(g, x + (size_t)s0 * in_sz, cn, cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, P, g->oc, g->kdim, 1.0f, cols,
                    g->kdim, W, g->oc, 0.0f, ys, g->oc);
        bias_act(ys, b, (size_t)P, g->oc, relu);
    }
}

/* dy *= (y > 0) when relu, and gb (cols floats) += column sums of dy. Rows are taken R at a
 * time so that the inner loop runs over R * cols contiguous floats (a multiple of the vector
 * width for cols = 6 with R = 4), which the compiler vectorizes; the R partial sums of each
 * column are folded at the end. */
NN_INLINE void mask_colsum_body(float *restrict dy, const float *restrict y, size_t rows,
                                const int cols, int relu, float *restrict gb, const int R)
{
    enum { ACC_MAX = 64 };
    float acc[ACC_MAX];
    /* wide rows sum straight into gb, one row at a time */
    float *sum = R * cols <= ACC_MAX ? acc : gb;
    const int blk = R * cols <= ACC_MAX ? R : 1;
    if (sum == acc)
        memset(acc, 0, sizeof(float) * (size_t)(blk * cols));
    size_t i = 0;
    for (; i + (size_t)blk <= rows; i += (size_t)blk) {
        float *restrict d = dy + i * (size_t)cols;
        const float *restrict o = y + i * (size_t)cols;
        for (int j = 0; j < blk * cols; j++) {
            float v = relu && !(o[j] > 0.0f) ? 0.0f : d[j];
            d[j] = v;
            sum[j] += v;
        }
    }
    for (; i < rows; i++) {
        float *d = dy + i * (size_t)cols;
        const float *o = y + i * (size_t)cols;
        for (int j = 0; j < cols; j++) {
            float v = relu && !(o[j] > 0.0f) ? 0.0f : d[j];
            d[j] = v;
            sum[j] += v;
        }
    }
    if (sum == acc)
        for (int r = 0; r < blk; r++)
            for (int j = 0; j < cols; j++)
                gb[j] += acc[r * cols + j];
}

static void mask_colsum(float *dy, const float *y, size_t rows, int cols, int relu, float *gb)
{
    switch (cols) {
    case 6: mask_colsum_body(dy, y, rows, 6, relu, gb, 4); break;
    case 16: mask_colsum_body(dy, y, rows, 16, relu, gb, 1); break;
    default: mask_colsum_body(dy, y, rows, cols, relu, gb, 1); break;
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
        if (g->c == 1) {
            /* planar: dW[K x oc] = colsT[K x P] * dY[P x oc]; dcolsT = W * dY^T */
            im2row_planar(g, x + (size_t)s0 * in_sz, cn, cols);
            if (fused)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->kdim, g->oc, P, 1.0f,
                            cols, P, dys, g->oc, s0 == 0 ? 0.0f : 1.0f, gW, g->oc);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->kdim, g->oc, P, alpha,
                            cols, P, dys, g->oc, s0 == 0 ? beta : 1.0f, tW, g->oc);
            if (dx) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->kdim, P, g->oc, 1.0f, W,
                            g->oc, dys, g->oc, 0.0f, cols, P);
                float *dxs = dx + (size_t)s0 * in_sz;
                memset(dxs, 0, sizeof(float) * in_sz * (size_t)cn);
                row2im_planar(g, cols, cn, dxs);
            }
            continue;
        }
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
    int oh, ow;
    if (!p || nn_spec_pool_out(h, w, c, k, stride, &oh, &ow) != 0)
        return SMLT_EINVAL;
    memset(p, 0, sizeof *p);
    p->h = h;
    p->w = w;
    p->c = c;
    p->k = k;
    p->stride = stride;
    p->oh = oh;
    p->ow = ow;
    return 0;
}

/* The common case, 2 x 2 windows with stride 2: fixed window, branch-free selects over the
 * channels (vectorized by the compiler), no inner window loops. */
NN_INLINE void pool2_forward_body(const struct nn_conv_pool *p, const float *x, int n,
                                  float *y, uint8_t *arg, const int C)
{
    const int W = p->w, OH = p->oh, OW = p->ow;
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

NN_INLINE void pool2_backward_body(const struct nn_conv_pool *p, const float *dy,
                                   const uint8_t *arg, int n, float *dx, const int C)
{
    const int W = p->w, OH = p->oh, OW = p->ow;
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

static void pool2_forward(const struct nn_conv_pool *p, const float *x, int n, float *y,
                          uint8_t *arg)
{
    switch (p->c) {
    case 6: pool2_forward_body(p, x, n, y, arg, 6); break;
    case 16: pool2_forward_body(p, x, n, y, arg, 16); break;
    default: pool2_forward_body(p, x, n, y, arg, p->c); break;
    }
}

static void pool2_backward(const struct nn_conv_pool *p, const float *dy, const uint8_t *arg,
                           int n, float *dx)
{
    switch (p->c) {
    case 6: pool2_backward_body(p, dy, arg, n, dx, 6); break;
    case 16: pool2_backward_body(p, dy, arg, n, dx, 16); break;
    default: pool2_backward_body(p, dy, arg, n, dx, p->c); break;
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
