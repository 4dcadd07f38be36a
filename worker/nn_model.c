/* nn_model.c: models from spec strings; the flat parameter layout; training and evaluation.
 *
 * A model is a stack of nn_layer objects (nn_layer.c) plus the buffers that connect them,
 * all allocated here once for max_batch samples:
 *   acts[i]  input of layer i (acts[0] is the caller's batch, never written), acts[L] = logits;
 *            an in-place layer (ReLU, dropout, flatten) shares its input's buffer;
 *   dacts[i] gradient with respect to acts[i]; two ping-pong buffers suffice because each
 *            backward step only needs its own input and output gradients.
 * ReLUs that follow a dense or conv layer are fused into it by the spec builder.
 * Sits under the worker's training loop and the smlt-bench train tool. */
#include "nn_model.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_set.h"
#include "smlt_error.h"
#include "smlt_rand.h"
#include "smlt_util.h"

struct nn_model {
    struct nn_spec plan;  /* the canonical spec, the layers' plan and the flat layout */
    int nlayers;
    struct nn_layer *layers[NN_SPEC_MAX_LAYERS];
    float *params, *grads;
    float *eval_buf; /* one batch of inputs for nn_model_evaluate(), made on first use */
    int max_batch;
    float *acts[NN_SPEC_MAX_LAYERS + 1];
    int act_owned[NN_SPEC_MAX_LAYERS + 1];
    float *dacts[NN_SPEC_MAX_LAYERS + 1];
    float *dbuf[2];
    uint64_t drop_seed, step;
};

/* Returns the engine's layer for one layer of the plan, or NULL (out of memory: the plan has
 * checked the geometry against the engine's caps). */
static struct nn_layer *layer_new(const struct nn_spec_layer *l)
{
    switch (l->kind) {
    case NN_SPEC_DENSE: return nn_layer_new_dense(l->in_dim, l->out_dim, l->relu);
    case NN_SPEC_CONV:
        return nn_layer_new_conv(l->h, l->w, l->c, l->oc, l->k, l->stride, l->pad, l->relu);
    case NN_SPEC_MAXPOOL: return nn_layer_new_maxpool(l->h, l->w, l->c, l->k, l->stride);
    case NN_SPEC_DROPOUT: return nn_layer_new_dropout(l->in_dim, l->dropout);
    case NN_SPEC_FLATTEN: return nn_layer_new_flatten(l->h, l->w, l->c);
    }
    return NULL;
}

/* Returns 1 if layer x describes the same sizes and tensors as the plan's layer l whose first
 * tensor is the plan's tensor t0: the plan is what the shards are set up with, the layer is
 * what binds to the flat array, and the two must never drift apart. */
static int layer_matches(const struct nn_spec *sp, const struct nn_spec_layer *l, int t0,
                         const struct nn_layer *x)
{
    if (nn_layer_in_dim(x) != l->in_dim || nn_layer_out_dim(x) != l->out_dim ||
        nn_layer_num_params(x) != l->nparams || t0 + nn_layer_num_tensors(x) > sp->ntensors)
        return 0;
    for (int i = 0; i < nn_layer_num_tensors(x); i++) {
        struct nn_spec_tensor ti;
        const struct nn_spec_tensor *t = &sp->tensors[t0 + i];
        nn_layer_tensor(x, i, &ti);
        if (ti.ndim != t->ndim || ti.length != t->length || ti.init != t->init ||
            ti.scale != t->scale || t->offset - sp->tensors[t0].offset != ti.offset ||
            memcmp(ti.shape, t->shape, sizeof ti.shape) ||
            strcmp(strchr(t->name, '.') + 1, ti.name))
            return 0;
    }
    return 1;
}

/* Makes the engine's layers for m->plan. Returns 0 or -1 with a message in err. */
static int build_layers(struct nn_model *m, char *err, size_t errlen)
{
    const struct nn_spec *sp = &m->plan;
    int t0 = 0;
    for (int i = 0; i < sp->nlayers; i++) {
        const struct nn_spec_layer *l = &sp->layers[i];
        struct nn_layer *x = layer_new(l);
        if (!x) {
            smlt_set_err(err, errlen, "layer %s: out of memory", l->name);
            return -1;
        }
        m->layers[m->nlayers++] = x;
        if (!layer_matches(sp, l, t0, x)) {
            smlt_set_err(err, errlen, "layer %s: the engine's layer differs from the plan",
                         l->name);
            return -1;
        }
        t0 += nn_layer_num_tensors(x);
    }
    return 0;
}

/* Returns zeroed, pre-faulted memory for len floats (at least one), 64-byte aligned. */
static float *alloc_floats(size_t len)
{
    size_t bytes = (len ? len : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static int alloc_buffers(struct nn_model *m)
{
    m->params = alloc_floats(m->plan.nparams);
    m->grads = alloc_floats(m->plan.nparams);
    if (!m->params || !m->grads)
        return -1;
    size_t off = 0;
    size_t maxdim = (size_t)m->plan.input_dim;
    for (int i = 0; i < m->nlayers; i++) {
        struct nn_layer *l = m->layers[i];
        nn_layer_bind(l, m->params + off, m->grads + off);
        off += nn_layer_num_params(l);
        if (nn_layer_prepare(l, m->max_batch) < 0)
            return -1;
        size_t od = (size_t)nn_layer_out_dim(l);
        if (od > maxdim)
            maxdim = od;
        /* Dropout may share its input's buffer even after a dense or conv layer with a fused
         * ReLU: their backward only reads the sign of the output, which the survivors'
         * positive scale keeps and the dropped elements' zero gradient makes moot. The first
         * layer never runs in place because acts[0] is the caller's read-only batch. */
        if (i > 0 && nn_layer_in_place(l)) {
            m->acts[i + 1] = m->acts[i];
        } else {
            m->acts[i + 1] = alloc_floats((size_t)m->max_batch * od);
            if (!m->acts[i + 1])
                return -1;
            m->act_owned[i + 1] = 1;
        }
    }
    for (int b = 0; b < 2; b++) {
        m->dbuf[b] = alloc_floats((size_t)m->max_batch * maxdim);
        if (!m->dbuf[b])
            return -1;
    }
    int cur = 0;
    m->dacts[m->nlayers] = m->dbuf[cur];
    for (int i = m->nlayers - 1; i >= 1; i--) {
        if (!nn_layer_in_place(m->layers[i]))
            cur ^= 1;
        m->dacts[i] = m->dbuf[cur];
    }
    m->dacts[0] = NULL;
    return 0;
}

struct nn_model *nn_model_new(const char *spec, int max_batch, char *err, size_t errlen)
{
    struct nn_model *m = calloc(1, sizeof *m);
    if (!m) {
        smlt_set_err(err, errlen, "out of memory");
        return NULL;
    }
    if (nn_spec_parse(&m->plan, spec, err, errlen) != 0) {
        free(m);
        return NULL;
    }
    if (max_batch < 1 || max_batch > 65536) {
        smlt_set_err(err, errlen, "bad max batch %d (expected 1..65536)", max_batch);
        free(m);
        return NULL;
    }
    m->max_batch = max_batch;
    if (build_layers(m, err, errlen) < 0)
        goto fail;
    if (alloc_buffers(m) < 0) {
        smlt_set_err(err, errlen, "out of memory for model '%s' with batch %d", spec, max_batch);
        goto fail;
    }
    return m;
fail:
    nn_model_free(m);
    return NULL;
}

void nn_model_free(struct nn_model *m)
{
    if (!m)
        return;
    free(m->eval_buf);
    for (int i = 0; i < m->nlayers; i++)
        nn_layer_free(m->layers[i]);
    for (int i = 0; i <= NN_SPEC_MAX_LAYERS; i++)
        if (m->act_owned[i])
            free(m->acts[i]);
    free(m->dbuf[0]);
    free(m->dbuf[1]);
    free(m->params);
    free(m->grads);
    free(m);
}

const char *nn_model_spec(const struct nn_model *m)
{
    return m->plan.canon;
}

int nn_model_input_dim(const struct nn_model *m)
{
    return m->plan.input_dim;
}

int nn_model_num_classes(const struct nn_model *m)
{
    return m->plan.classes;
}

int nn_model_max_batch(const struct nn_model *m)
{
    return m->max_batch;
}

size_t nn_model_num_params(const struct nn_model *m)
{
    return m->plan.nparams;
}

int nn_model_num_layers(const struct nn_model *m)
{
    return m->nlayers;
}

const struct nn_layer *nn_model_layer(const struct nn_model *m, int i)
{
    return i >= 0 && i < m->nlayers ? m->layers[i] : NULL;
}

int nn_model_num_tensors(const struct nn_model *m)
{
    return m->plan.ntensors;
}

const struct nn_spec_tensor *nn_model_tensor(const struct nn_model *m, int i)
{
    return i >= 0 && i < m->plan.ntensors ? &m->plan.tensors[i] : NULL;
}

float *nn_model_params(struct nn_model *m)
{
    return m->params;
}

float *nn_model_grads(struct nn_model *m)
{
    return m->grads;
}

void nn_model_init_fill(enum smlt_init kind, float scale, uint64_t seed, uint64_t first,
                        float *out, size_t n)
{
    switch (kind) {
    case SMLT_INIT_UNIFORM:
        for (size_t i = 0; i < n; i++)
            out[i] = smlt_rand_uniform(seed, first + i, scale);
        break;
    case SMLT_INIT_NORMAL:
        for (size_t i = 0; i < n; i++)
            out[i] = smlt_rand_normal(seed, first + i, scale);
        break;
    case SMLT_INIT_CONST:
        for (size_t i = 0; i < n; i++)
            out[i] = scale;
        break;
    case SMLT_INIT_ZERO:
    default:
        memset(out, 0, sizeof(float) * n);
        break;
    }
}

void nn_model_init_params(struct nn_model *m, uint64_t seed)
{
    for (int i = 0; i < m->plan.ntensors; i++) {
        const struct nn_spec_tensor *ti = &m->plan.tensors[i];
        nn_model_init_fill(ti->init, ti->scale, seed, ti->offset, m->params + ti->offset,
                           ti->length);
    }
    memset(m->grads, 0, sizeof(float) * m->plan.nparams);
    m->drop_seed = smlt_rand_mix(seed ^ 0x64726f706f7574ull);
    m->step = 0;
}

static void model_forward(struct nn_model *m, const float *x, int n, int train)
{
    m->acts[0] = (float *)x; /* never written: layer 0 does not run in place */
    for (int i = 0; i < m->nlayers; i++) {
        struct nn_layer *l = m->layers[i];
        if (train && nn_layer_kind(l) == NN_LAYER_DROPOUT)
            nn_layer_set_seed(l, m->drop_seed ^ (uint64_t)i, m->step);
        nn_layer_forward(l, m->acts[i], m->acts[i + 1], n, train);
    }
    if (train)
        m->step++;
}

static int check_batch(const struct nn_model *m, const int32_t *y, int n)
{
    if (n < 1 || n > m->max_batch)
        return SMLT_EINVAL;
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= m->plan.classes)
            return SMLT_EINVAL;
    return 0;
}

static int model_step(struct nn_model *m, const float *x, const int32_t *y, int n,
                      const struct nn_layer_upd *upd, float *loss)
{
    int rc = check_batch(m, y, n);
    if (rc < 0)
        return rc;
    model_forward(m, x, n, 1);
    const int L = m->nlayers;
    double l = nn_layer_softmax_xent(m->acts[L], y, n, m->plan.classes, m->dacts[L], NULL);
    for (int i = L - 1; i >= 0; i--)
        nn_layer_backward(m->layers[i], m->acts[i], m->acts[i + 1], m->dacts[i + 1], m->dacts[i],
                          n, upd);
    if (loss)
        *loss = (float)l;
    return 0;
}

int nn_model_train_batch(struct nn_model *m, const float *x, const int32_t *y, int n,
                         float *loss)
{
    const struct nn_layer_upd upd = {0, 1.0f, 0.0f};
    return model_step(m, x, y, n, &upd, loss);
}

void nn_model_sgd(struct nn_model *m, float lr)
{
    cblas_saxpy((int)m->plan.nparams, -lr, m->grads, 1, m->params, 1);
}

int nn_model_train_step(struct nn_model *m, const float *x, const int32_t *y, int n, float lr,
                        float *loss)
{
    const struct nn_layer_upd upd = {1, -lr, 1.0f};
    return model_step(m, x, y, n, &upd, loss);
}

const float *nn_model_forward(struct nn_model *m, const float *x, int n)
{
    if (n < 1 || n > m->max_batch)
        return NULL;
    model_forward(m, x, n, 0);
    return m->acts[m->nlayers];
}

int nn_model_evaluate(struct nn_model *m, const struct data_set *ds, double *acc, double *loss)
{
    const size_t total = data_set_size(ds);
    if (data_set_dim(ds) != m->plan.input_dim || data_set_num_classes(ds) > m->plan.classes)
        return SMLT_EINVAL;
    if (data_set_check(ds, NULL) < 0)
        return SMLT_EINVAL;
    const int32_t *y = data_set_y(ds);
    double lsum = 0.0;
    long correct = 0;
    /* Rows are read a batch at a time (a byte-valued set converts them on the way). The
     * buffer is made once per model, outside the training loop. */
    if (!m->eval_buf) {
        m->eval_buf = malloc(sizeof(float) * (size_t)m->max_batch * (size_t)m->plan.input_dim);
        if (!m->eval_buf)
            return SMLT_ENOMEM;
    }
    for (size_t i = 0; i < total; i += (size_t)m->max_batch) {
        int n = total - i < (size_t)m->max_batch ? (int)(total - i) : m->max_batch;
        data_set_rows(ds, i, (size_t)n, m->eval_buf);
        model_forward(m, m->eval_buf, n, 0);
        lsum += n * nn_layer_softmax_xent(m->acts[m->nlayers], y + i, n, m->plan.classes, NULL,
                                          &correct);
    }
    if (acc)
        *acc = total ? (double)correct / (double)total : 0.0;
    if (loss)
        *loss = total ? lsum / (double)total : 0.0;
    return 0;
}
