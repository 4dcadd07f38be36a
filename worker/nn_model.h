/* nn_model.h: a trainable model built from a spec string, with all parameters in one flat
 * float array.
 *
 * The spec strings, their canonical form, the layers and the flat layout are nn_spec.h's:
 * nn_model_new() parses the spec with nn_spec_parse() and makes the engine's layers from that
 * plan. nn_model_tensor() describes each tensor (name, shape, offset, length, init kind and
 * scale); the gradient array has the same layout. The parameter server splits this flat index
 * space into shard ranges and initializes its ranges with nn_model_init_fill(), which gives
 * element i a value that depends only on (seed, i) and the tensor's (kind, scale).
 *
 * Inputs are n x input_dim floats, row-major (images HWC), labels int32 in [0, classes).
 * Every buffer is allocated by nn_model_new() for max_batch samples; training and evaluation
 * never allocate. A model is a single-threaded object. */
#ifndef NN_MODEL_H
#define NN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "nn_layer.h"
#include "nn_spec.h"

struct data_set;
struct nn_model;

/* The longest spec string, with its NUL (coordinator/coord_spec.c asserts its own size). */
#define NN_MODEL_MAX_SPEC NN_SPEC_MAX

/* Returns a model for spec with buffers for batches of up to max_batch samples, parameters
 * zero (call nn_model_init_params()). NULL on a bad spec (nn_spec_parse()) or max_batch, with
 * a message naming the bad part in err (errlen bytes, may be NULL); NULL with "out of memory"
 * likewise. */
struct nn_model *nn_model_new(const char *spec, int max_batch, char *err, size_t errlen);

/* Frees m and every buffer it owns. NULL is a no-op. */
void nn_model_free(struct nn_model *m);

/* Returns the canonical spec (borrowed, valid until nn_model_free()). */
const char *nn_model_spec(const struct nn_model *m);
int nn_model_input_dim(const struct nn_model *m);
int nn_model_num_classes(const struct nn_model *m);
int nn_model_max_batch(const struct nn_model *m);
size_t nn_model_num_params(const struct nn_model *m);
int nn_model_num_layers(const struct nn_model *m);
/* Returns layer i (borrowed) or NULL when out of range. */
const struct nn_layer *nn_model_layer(const struct nn_model *m, int i);

int nn_model_num_tensors(const struct nn_model *m);
/* Returns tensor i's description (borrowed, valid until nn_model_free()) or NULL. */
const struct nn_spec_tensor *nn_model_tensor(const struct nn_model *m, int i);

/* Returns the flat parameter / gradient array (nn_model_num_params() floats, borrowed for the
 * model's life; the caller may read and write them, e.g. to copy a pulled model in). */
float *nn_model_params(struct nn_model *m);
float *nn_model_grads(struct nn_model *m);

/* Fills out[0, n) with the initial values of flat elements [first, first + n) of a tensor of
 * the given kind and scale: element i gets smlt_rand_uniform(seed, i, scale) (uniform),
 * smlt_rand_normal(seed, i, scale) (normal), scale (const) or 0 (zero). Borrows out. */
void nn_model_init_fill(enum smlt_init kind, float scale, uint64_t seed, uint64_t first,
                        float *out, size_t n);

/* Initializes every parameter from seed with nn_model_init_fill() per tensor; zeroes the
 * gradients. Also seeds the dropout stream. */
void nn_model_init_params(struct nn_model *m, uint64_t seed);

/* Forward and backward on a batch (x: n x input_dim, y: n labels; borrowed for the call) in
 * training mode. Overwrites the gradient array with the gradient of the mean loss over the
 * batch; stores the mean loss in *loss unless loss is NULL. Returns 0 or -SMLT_EINVAL (n < 1,
 * n > max_batch, a label out of range). */
int nn_model_train_batch(struct nn_model *m, const float *x, const int32_t *y, int n,
                         float *loss);

/* Adds grads * (-lr) to params: one plain SGD step with the gradients of the last
 * nn_model_train_batch(). */
void nn_model_sgd(struct nn_model *m, float lr);

/* One fused SGD step: the same result as nn_model_train_batch() then nn_model_sgd(m, lr),
 * but each layer's update is written straight into the parameters by the backward pass, so
 * the gradient array is neither written nor read (it is left unchanged). Returns as
 * nn_model_train_batch(). */
int nn_model_train_step(struct nn_model *m, const float *x, const int32_t *y, int n, float lr,
                        float *loss);

/* Inference forward pass over n <= max_batch samples. Returns the logits (n x classes,
 * borrowed, valid until the next call on m) or NULL when n is out of range. */
const float *nn_model_forward(struct nn_model *m, const float *x, int n);

/* Evaluates the model on all of ds in batches of max_batch: fills *acc (fraction correct) and
 * *loss (mean cross-entropy) when not NULL. Returns 0, or -SMLT_EINVAL when the dimensions or
 * classes do not match the model or a label is out of range. An empty set gives 0 and 0. */
int nn_model_evaluate(struct nn_model *m, const struct data_set *ds, double *acc, double *loss);

#endif
