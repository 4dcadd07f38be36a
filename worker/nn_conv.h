/* nn_conv.h: the arithmetic of 2-D convolution and max-pooling on HWC images.
 *
 * nn_layer.c wraps these kernels into layers; they are exported so that the unit tests can
 * check them in isolation. Convolution is im2col + OpenBLAS sgemm, done a few samples at a time
 * so that the column buffer stays in the L2 cache:
 *   forward   Y[P x oc]  = cols[P x K] * W[K x oc] + b      (P = samples * oh * ow, K = k*k*c)
 *   backward  dW[K x oc] += cols^T * dY,  dcols = dY * W^T, dx = col2im(dcols)
 * Images are stored per sample as h x w x c (channels fastest). Nothing here allocates. */
#ifndef NN_CONV_H
#define NN_CONV_H

#include <stddef.h>
#include <stdint.h>

/* Geometry of one convolution. Filled by nn_conv_geom_init(). */
struct nn_conv_geom {
    int h, w, c;      /* input */
    int oc, k, stride, pad;
    int oh, ow;       /* output */
    int kdim;         /* k * k * c: one im2col row */
    int chunk;        /* samples per im2col block */
};

/* Geometry of one max-pooling (no padding). Filled by nn_conv_pool_init(). */
struct nn_conv_pool {
    int h, w, c, k, stride;
    int oh, ow;
};

/* Fills g for an h x w x c input and oc filters of k x k. Returns 0 or -SMLT_EINVAL (a size
 * below 1, a negative pad, a filter larger than the padded input, or a size past the limits). */
int nn_conv_geom_init(struct nn_conv_geom *g, int h, int w, int c, int oc, int k, int stride,
                      int pad);

/* Returns the floats of column scratch nn_conv_forward/backward need (any batch size). */
size_t nn_conv_cols_len(const struct nn_conv_geom *g);

/* Writes the im2col rows of n samples of x (n x h*w*c) to cols (n*oh*ow rows of kdim). */
void nn_conv_im2col(const struct nn_conv_geom *g, const float *x, int n, float *cols);

/* Adds the columns back into image space: dx (n x h*w*c) += col2im(cols). */
void nn_conv_col2im(const struct nn_conv_geom *g, const float *cols, int n, float *dx);

/* y (n x oh*ow*oc) = conv(x, W) + b, then ReLU when relu != 0. W is kdim x oc, b is oc.
 * cols is scratch of nn_conv_cols_len() floats. */
void nn_conv_forward(const struct nn_conv_geom *g, const float *x, int n, const float *W,
                     const float *b, int relu, float *y, float *cols);

/* Backward of nn_conv_forward over the same x, y. dy is overwritten (masked by the ReLU when
 * relu != 0). Writes dx unless NULL. Weight and bias gradients go to tW/tb (kdim x oc, oc) as
 * t = beta t + alpha g; tW may be W itself (fused SGD) because in that case the gradient
 * is accumulated in the scratch gW (kdim*oc + oc floats, also used for the bias sums) and
 * applied after the last dx block. cols is scratch as above. */
void nn_conv_backward(const struct nn_conv_geom *g, const float *x, const float *y, float *dy,
                      float *dx, int n, int relu, const float *W, float *tW, float *tb,
                      float *gW, float alpha, float beta, float *cols);

/* Fills p for k x k windows with the given stride over h x w x c. Returns 0 or -SMLT_EINVAL. */
int nn_conv_pool_init(struct nn_conv_pool *p, int h, int w, int c, int k, int stride);

/* y (n x oh*ow*c) = window maxima of x; arg (n x oh*ow*c bytes) records the winner's position
 * inside its window (row-major, < k*k <= 255) for the backward pass. */
void nn_conv_pool_forward(const struct nn_conv_pool *p, const float *x, int n, float *y,
                          uint8_t *arg);

/* dx (n x h*w*c) = the pooling gradient: each dy goes to its window's winner, the rest is 0. */
void nn_conv_pool_backward(const struct nn_conv_pool *p, const float *dy, const uint8_t *arg,
                           int n, float *dx);

#endif
