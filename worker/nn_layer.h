/* nn_layer.h: the layers of the training engine, each with a forward and a backward pass.
 *
 * A layer maps a batch of n samples, each a row of in_dim floats, to n rows of out_dim floats.
 * Image-shaped data is stored per sample as height x width x channels (HWC, channels fastest),
 * so a batch is NHWC and flattening an image into a feature vector costs nothing.
 *
 * A layer does not own its parameters: nn_model lays all tensors of all layers back to back in
 * one flat float array (and the gradients in a second array of the same layout) and binds each
 * layer to its slice with nn_layer_bind(). All scratch memory (im2col columns, dropout masks,
 * pooling argmax) is allocated once by nn_layer_prepare() for a maximum batch size; forward and
 * backward never allocate. Matrix products go to OpenBLAS (cblas_sgemm).
 *
 * Backward writes parameter gradients as target = beta * target + alpha * grad, where target
 * is the layer's slice of the gradient array or, for fused SGD, of the parameter array itself
 * (alpha = -lr, beta = 1): see struct nn_layer_upd.
 *
 * Layers are single-threaded objects; one model (and its layers) belongs to one thread. */
#ifndef NN_LAYER_H
#define NN_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "nn_spec.h"

/* A parameter tensor is described by struct nn_spec_tensor (nn_spec.h): name, shape
 * (dense weight: {in, out}; conv weight: {kh, kw, in_c, out_c}), offset, length, init. */

enum nn_layer_kind {
    NN_LAYER_DENSE = 0,
    NN_LAYER_CONV,
    NN_LAYER_MAXPOOL,
    NN_LAYER_RELU,
    NN_LAYER_DROPOUT,
    NN_LAYER_FLATTEN
};

/* Where backward() puts parameter gradients: target = beta * target + alpha * grad.
 * to_params = 0: target is the bound gradient slice (alpha = 1, beta = 0 overwrites it;
 * beta = 1 accumulates). to_params = 1: target is the parameter slice (fused SGD step). */
struct nn_layer_upd {
    int to_params;
    float alpha;
    float beta;
};

struct nn_layer;

/* Returns a fully connected layer in -> out (y = x W + b, W stored in x out row-major), with a
 * fused ReLU on the output when relu != 0. NULL on bad sizes or out of memory. Free with
 * nn_layer_free(). */
struct nn_layer *nn_layer_new_dense(int in, int out, int relu);

/* Returns a 2-D convolution over h x w x c inputs with oc filters of k x k, the given stride and
 * zero padding, and an optional fused ReLU. Weight layout: kh x kw x c x oc. Output size
 * oh = (h + 2 pad - k) / stride + 1 (likewise ow). NULL on bad geometry or out of memory. */
struct nn_layer *nn_layer_new_conv(int h, int w, int c, int oc, int k, int stride, int pad,
                                   int relu);

/* Returns a max-pooling layer (k x k windows, stride) over h x w x c inputs, no padding;
 * oh = (h - k) / stride + 1. NULL on bad geometry. */
struct nn_layer *nn_layer_new_maxpool(int h, int w, int c, int k, int stride);

/* Returns an element-wise ReLU over dim features. Runs in place. */
struct nn_layer *nn_layer_new_relu(int dim);

/* Returns inverted dropout with drop probability p in [0, 1): at training time each element is
 * zeroed with probability p and the survivors scaled by 1 / (1 - p); at inference the identity.
 * Runs in place. */
struct nn_layer *nn_layer_new_dropout(int dim, float p);

/* Returns a flatten layer for h x w x c images: with HWC storage it is the identity on the
 * data and only changes the shape the next layer sees. Runs in place. */
struct nn_layer *nn_layer_new_flatten(int h, int w, int c);

/* Frees l and its scratch memory (never the bound parameter arrays). NULL is a no-op. */
void nn_layer_free(struct nn_layer *l);

enum nn_layer_kind nn_layer_kind(const struct nn_layer *l);
/* Returns a short static name of the kind ("dense", "conv", ...). */
const char *nn_layer_kind_name(enum nn_layer_kind kind);
int nn_layer_in_dim(const struct nn_layer *l);
int nn_layer_out_dim(const struct nn_layer *l);
/* Fills the output's per-sample shape (h, w, c); dense layers report 1 x 1 x out. */
void nn_layer_out_shape(const struct nn_layer *l, int *h, int *w, int *c);
/* Returns nonzero when the layer may run with y == x and dx == dy (ReLU, dropout, flatten). */
int nn_layer_in_place(const struct nn_layer *l);

/* Returns the number of parameter tensors (0 or 2: weight and bias). */
int nn_layer_num_tensors(const struct nn_layer *l);
/* Returns the number of parameters, all tensors together. */
size_t nn_layer_num_params(const struct nn_layer *l);
/* Fills ti for tensor i with name suffix ("weight"/"bias"), shape, length, init kind and scale;
 * ti->offset is relative to the layer's first parameter. Returns 0 or -SMLT_ERANGE. */
int nn_layer_tensor(const struct nn_layer *l, int i, struct nn_spec_tensor *ti);

/* Binds the layer to its parameter slice and gradient slice (both borrowed for the layer's
 * life, nn_layer_num_params() floats each, tensors in nn_layer_tensor() order). */
void nn_layer_bind(struct nn_layer *l, float *params, float *grads);

/* Allocates the layer's scratch memory for batches of up to max_batch samples (again with a
 * larger size if needed). Returns 0, -SMLT_EINVAL or -SMLT_ENOMEM. */
int nn_layer_prepare(struct nn_layer *l, int max_batch);

/* Sets the dropout stream: the mask of the next forward pass depends only on (seed, step) and
 * the element index. No-op for other kinds. */
void nn_layer_set_seed(struct nn_layer *l, uint64_t seed, uint64_t step);

/* Forward pass over n <= max_batch samples: reads x (n x in_dim), writes y (n x out_dim).
 * train selects the training behaviour of dropout. y may equal x for in-place layers.
 * Borrows x and y for the call. */
void nn_layer_forward(struct nn_layer *l, const float *x, float *y, int n, int train);

/* Backward pass for the last forward over the same x and y (both borrowed, unchanged since).
 * Reads dy (n x out_dim, dLoss/dy) and may overwrite it as scratch; writes dx (n x in_dim,
 * dLoss/dx) unless dx is NULL (first layer: not needed); dx may equal dy for in-place layers.
 * Parameter gradients go where upd says; for fused SGD the input gradient is computed from the
 * weights before they change, so the step equals plain SGD. */
void nn_layer_backward(struct nn_layer *l, const float *x, const float *y, float *dy, float *dx,
                       int n, const struct nn_layer_upd *upd);

/* Softmax cross-entropy over n rows of k logits with integer labels (each in [0, k), checked by
 * the caller). Returns the mean loss over the n rows. When dlogits is not NULL writes the
 * gradient of the mean loss, (softmax - onehot) / n, to it (it may equal logits). When correct
 * is not NULL adds the number of rows whose arg-max equals the label. */
double nn_layer_softmax_xent(const float *logits, const int32_t *labels, int n, int k,
                             float *dlogits, long *correct);

#endif
