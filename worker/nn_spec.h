/* nn_spec.h: model spec strings without the engine: the parser, the canonical form, the layer
 * plan, the flat parameter layout and the checks.
 *
 * Specs (sizes are decimal, options are ":key=value" after the model part):
 *   logreg:IN-K              softmax regression, IN inputs, K classes
 *   mlp:IN-H1-...-K          dense layers with ReLU between them (at least one hidden layer)
 *   lenet5                   LeNet-5 on 28x28x1 images: conv 5x5x6 (padding 2, as classic
 *                            LeNet-5 on MNIST and the PyTorch peer) + ReLU, maxpool 2,
 *                            conv 5x5x16 + ReLU, maxpool 2, fc 120 + ReLU, fc 84 + ReLU, fc 10
 *   options: dropout=P       dropout after every hidden ReLU of the dense part (0 <= P < 1)
 *            pad=N           lenet5 only: padding of the first convolution (default 2)
 *            in=HxWxC        lenet5 only: input image shape (default 28x28x1)
 *            classes=K       lenet5 only: number of classes (default 10)
 *
 * Flat layout: the tensors of the layers in order, each weight then its bias, back to back.
 * A dense weight is in x out, a conv weight kh x kw x in_c x out_c. Weights are drawn uniform:
 * He (sqrt(6 / fan_in)) before a ReLU, Glorot (sqrt(6 / (fan_in + fan_out))) otherwise;
 * biases start at zero.
 *
 * This is the one parser: the training engine (nn_model.c) builds its layers from this plan,
 * and the coordinator validates job specs and sets up a job's shards with it without linking
 * the engine (no OpenBLAS, no buffers: a 200 M-parameter model is planned in microseconds).
 * Plain data, no allocation; safe on any thread. */
#ifndef NN_SPEC_H
#define NN_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "smlt_enum.h"

struct smlt_tensor_def;

#define NN_SPEC_MAX 256          /* bytes of a spec string, with its terminating NUL */
#define NN_SPEC_MAX_LAYERS 32
#define NN_SPEC_MAX_TENSORS (2 * NN_SPEC_MAX_LAYERS)
#define NN_SPEC_NAME_MAX 32      /* bytes of a tensor name, with its NUL */
#define NN_SPEC_MAX_DIMS 4
/* Caps on what a spec may ask for. */
#define NN_SPEC_MAX_WIDTH (1 << 24)            /* a dense layer's width */
#define NN_SPEC_MAX_PARAMS ((size_t)1 << 30)   /* parameters of the whole model */
#define NN_SPEC_MAX_INPUT (1 << 28)            /* input values per sample (h x w x c) */
/* Caps on a layer's geometry, which the engine relies on: they keep every size_t product of
 * sizes and batch far from overflow and every int product of conv sizes in range. */
#define NN_SPEC_MAX_DIM (1 << 26)              /* features per sample into or out of a layer */
#define NN_SPEC_MAX_DENSE (4LL * NN_SPEC_MAX_DIM) /* a dense layer's in x out */
#define NN_SPEC_MAX_SIDE 16384                 /* conv / pool: any one size */
#define NN_SPEC_MAX_ELEMS (1 << 28)            /* conv / pool: an image, a filter bank */
#define NN_SPEC_MAX_POOL 15                    /* pool: window side */

enum nn_spec_layer_kind {
    NN_SPEC_DENSE = 0,
    NN_SPEC_CONV,
    NN_SPEC_MAXPOOL,
    NN_SPEC_DROPOUT,
    NN_SPEC_FLATTEN
};

/* One layer of the plan. Shapes are per sample, HWC; a dense layer's are 1 x 1 x features. */
struct nn_spec_layer {
    enum nn_spec_layer_kind kind;
    char name[16];          /* "fc1", "conv2", "pool1", "drop", "flatten" */
    int h, w, c;            /* input shape */
    int oh, ow, oc;         /* output shape */
    int k, stride, pad;     /* conv, maxpool */
    int relu;               /* dense, conv: a fused ReLU on the output */
    float dropout;          /* dropout: the probability */
    int in_dim, out_dim;    /* h * w * c, oh * ow * oc */
    size_t nparams;         /* weight and bias elements (dense, conv), else 0 */
};

/* One parameter tensor in the flat array. */
struct nn_spec_tensor {
    char name[NN_SPEC_NAME_MAX];   /* "fc1.weight", "conv2.bias" */
    int ndim;
    int shape[NN_SPEC_MAX_DIMS];
    size_t offset;                 /* first element in the flat array */
    size_t length;                 /* elements (product of shape) */
    enum smlt_init init;
    float scale;
};

/* A parsed spec: the canonical string, the layers and the layout (about 10 KB). */
struct nn_spec {
    char canon[NN_SPEC_MAX];
    int input_dim, classes;
    int nlayers;
    struct nn_spec_layer layers[NN_SPEC_MAX_LAYERS];
    int ntensors;
    struct nn_spec_tensor tensors[NN_SPEC_MAX_TENSORS];
    size_t nparams;
};

/* Parses and plans spec (borrowed) into *out. Returns 0, or SMLT_EINVAL with a message in err
 * (errlen bytes; may be NULL) naming the bad part: syntax, an unknown model or option, a size
 * out of range, a layer whose geometry does not work, too many layers or parameters. */
int nn_spec_parse(struct nn_spec *out, const char *spec, char *err, size_t errlen);

/* Checks a spec: returns 0 and the canonical spec (canon, canonlen bytes; may be NULL) and the
 * parameter count (nparams may be NULL), or SMLT_EINVAL with nn_spec_parse()'s message. */
int nn_spec_check(const char *spec, char *canon, size_t canonlen, size_t *nparams, char *err,
                  size_t errlen);

/* Describes s's tensors for smlt_job_setup(): fills defs[0, s->ntensors) and shapes
 * (NN_SPEC_MAX_DIMS per tensor: room for 4 * s->ntensors). defs borrow their names from s and
 * their shapes from shapes: keep both alive while defs are in use. Returns s->ntensors. */
int nn_spec_tensor_defs(const struct nn_spec *s, struct smlt_tensor_def *defs, uint64_t *shapes);

/* The scale of a weight's uniform initialization: He before a ReLU, Glorot otherwise. */
float nn_spec_init_scale(int relu, double fan_in, double fan_out);

/* The output size of a convolution (oc filters k x k, stride, zero padding) over h x w x c, in
 * *oh and *ow. Returns 0, or SMLT_EINVAL when the geometry is invalid or beyond the caps. */
int nn_spec_conv_out(int h, int w, int c, int oc, int k, int stride, int pad, int *oh, int *ow);

/* The output size of a max-pooling (k x k windows, stride, no padding) over h x w x c.
 * Returns 0 or SMLT_EINVAL, as nn_spec_conv_out(). */
int nn_spec_pool_out(int h, int w, int c, int k, int stride, int *oh, int *ow);

#endif
