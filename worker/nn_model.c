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
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_set.h"
#include "smlt_error.h"
#include "smlt_rand.h"
#include "smlt_util.h"

/* Caps on what a spec may ask for: a layer width, and the parameter count (1 Gi floats). */
#define NN_MODEL_MAX_WIDTH (1 << 24)
#define NN_MODEL_MAX_PARAMS ((size_t)1 << 30)
#define NN_MODEL_MAX_INPUT (1 << 28) /* input values per sample (h x w x c) */

struct nn_model {
    char spec[NN_MODEL_MAX_SPEC];
    int nlayers;
    struct nn_layer *layers[NN_MODEL_MAX_LAYERS];
    int ntensors;
    struct nn_tensor_info tensors[2 * NN_MODEL_MAX_LAYERS];
    size_t nparams;
    float *params, *grads;
    float *eval_buf; /* one batch of inputs for nn_model_evaluate(), made on first use */
    int max_batch, input_dim, classes;
    float *acts[NN_MODEL_MAX_LAYERS + 1];
    int act_owned[NN_MODEL_MAX_LAYERS + 1];
    float *dacts[NN_MODEL_MAX_LAYERS + 1];
    float *dbuf[2];
    uint64_t drop_seed, step;
};

/* What the spec parser produces before any layer exists. */
struct model_plan {
    char kind[16];
    int sizes[NN_MODEL_MAX_LAYERS];
    int nsizes;
    float dropout;
    int pad, in_h, in_w, in_c, classes;
    int have_pad, have_in, have_classes;
};

/* Parses a decimal int in [lo, hi] spanning exactly [s, s + len). */
static int parse_int(const char *s, size_t len, long lo, long hi, int *out)
{
    if (len == 0 || len > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_sizes(struct model_plan *p, const char *tok, const char *spec, char *err,
                       size_t errlen)
{
    const char *s = tok;
    p->nsizes = 0;
    for (;;) {
        const char *dash = strchr(s, '-');
        size_t len = dash ? (size_t)(dash - s) : strlen(s);
        if (p->nsizes >= NN_MODEL_MAX_LAYERS) {
            smlt_set_err(err, errlen, "too many layers in '%s' (at most %d sizes)", spec,
                         NN_MODEL_MAX_LAYERS);
            return -1;
        }
        if (parse_int(s, len, 1, NN_MODEL_MAX_WIDTH, &p->sizes[p->nsizes]) < 0) {
            smlt_set_err(err, errlen, "bad layer size '%.*s' in '%s' (expected an integer 1..%d)",
                         (int)len, s, spec, NN_MODEL_MAX_WIDTH);
            return -1;
        }
        p->nsizes++;
        if (!dash)
            return 0;
        s = dash + 1;
    }
}

static int parse_option(struct model_plan *p, const char *tok, const char *spec, char *err,
                        size_t errlen)
{
    const char *eq = strchr(tok, '=');
    if (!eq) {
        smlt_set_err(err, errlen, "unexpected '%s' in '%s' (options are key=value)", tok, spec);
        return -1;
    }
    size_t klen = (size_t)(eq - tok);
    const char *v = eq + 1;
    int is_lenet = !strcmp(p->kind, "lenet5");
    if (klen == 7 && !strncmp(tok, "dropout", 7)) {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        /* (float)d must stay below 1 too: 0.99999999 rounds to 1.0f. */
        if (!*v || *end || errno || !(d >= 0.0 && d < 1.0) || !((float)d < 1.0f)) {
            smlt_set_err(err, errlen, "bad dropout '%s' in '%s' (expected 0 <= p < 1)", v, spec);
            return -1;
        }
        p->dropout = (float)d;
        return 0;
    }
    if (is_lenet && klen == 3 && !strncmp(tok, "pad", 3)) {
        if (parse_int(v, strlen(v), 0, 64, &p->pad) < 0) {
            smlt_set_err(err, errlen, "bad pad '%s' in '%s' (expected 0..64)", v, spec);
            return -1;
        }
        p->have_pad = 1;
        return 0;
    }
    if (is_lenet && klen == 7 && !strncmp(tok, "classes", 7)) {
        if (parse_int(v, strlen(v), 2, 1 << 20, &p->classes) < 0) {
            smlt_set_err(err, errlen, "bad classes '%s' in '%s' (expected 2..%d)", v, spec,
                         1 << 20);
            return -1;
        }
        p->have_classes = 1;
        return 0;
    }
    if (is_lenet && klen == 2 && !strncmp(tok, "in", 2)) {
        int dims[3], nd = 0;
        const char *s = v;
        for (;;) {
            const char *x = strchr(s, 'x');
            size_t len = x ? (size_t)(x - s) : strlen(s);
            if (nd == 3 || parse_int(s, len, 1, 4096, &dims[nd]) < 0) {
                smlt_set_err(err, errlen, "bad input shape '%s' in '%s' (expected HxWxC)", v, spec);
                return -1;
            }
            nd++;
            if (!x)
                break;
            s = x + 1;
        }
        if (nd != 3) {
            smlt_set_err(err, errlen, "bad input shape '%s' in '%s' (expected HxWxC)", v, spec);
            return -1;
        }
        p->in_h = dims[0];
        p->in_w = dims[1];
        p->in_c = dims[2];
        p->have_in = 1;
        return 0;
    }
    smlt_set_err(err, errlen, "unknown option '%.*s' for %s in '%s'", (int)klen, tok, p->kind,
                 spec);
    return -1;
}

static int parse_spec(struct model_plan *p, const char *spec, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->pad = 2;
    p->in_h = 28;
    p->in_w = 28;
    p->in_c = 1;
    p->classes = 10;
    if (!spec || !*spec) {
        smlt_set_err(err, errlen,
                     "empty model spec (expected logreg:IN-K, mlp:IN-H-...-K or lenet5)");
        return -1;
    }
    if (strlen(spec) >= NN_MODEL_MAX_SPEC) {
        smlt_set_err(err, errlen, "model spec too long (%zu bytes, at most %d)", strlen(spec),
                     NN_MODEL_MAX_SPEC - 1);
        return -1;
    }
    char buf[NN_MODEL_MAX_SPEC];
    strcpy(buf, spec);
    char *save = NULL;
    char *tok = strtok_r(buf, ":", &save);
    if (!tok || strlen(tok) >= sizeof p->kind ||
        (strcmp(tok, "logreg") && strcmp(tok, "mlp") && strcmp(tok, "lenet5"))) {
        smlt_set_err(err, errlen, "unknown model '%s' in '%s' (expected logreg, mlp or lenet5)",
                     tok ? tok : "", spec);
        return -1;
    }
    strcpy(p->kind, tok);
    int first = 1;
    while ((tok = strtok_r(NULL, ":", &save))) {
        if (first && strcmp(p->kind, "lenet5") && !strchr(tok, '=')) {
            if (parse_sizes(p, tok, spec, err, errlen) < 0)
                return -1;
        } else if (parse_option(p, tok, spec, err, errlen) < 0) {
            return -1;
        }
        first = 0;
    }
    if (!strcmp(p->kind, "logreg") && p->nsizes != 2) {
        smlt_set_err(err, errlen, "logreg needs exactly two sizes IN-K, got '%s'", spec);
        return -1;
    }
    if (!strcmp(p->kind, "mlp") && p->nsizes < 3) {
        smlt_set_err(err, errlen, "mlp needs IN-H...-K with at least one hidden layer, got '%s'",
                     spec);
        return -1;
    }
    if (p->nsizes >= 2 && p->sizes[p->nsizes - 1] < 2) {
        smlt_set_err(err, errlen, "the last size in '%s' is the number of classes: at least 2",
                     spec);
        return -1;
    }
    return 0;
}

static int model_add(struct nn_model *m, struct nn_layer *l, const char *name, char *err,
                     size_t errlen)
{
    if (!l) {
        smlt_set_err(err, errlen, "layer %s: bad geometry or out of memory", name ? name : "?");
        return -1;
    }
    if (m->nlayers >= NN_MODEL_MAX_LAYERS) {
        nn_layer_free(l);
        smlt_set_err(err, errlen, "too many layers (at most %d)", NN_MODEL_MAX_LAYERS);
        return -1;
    }
    if (m->nlayers > 0 && nn_layer_in_dim(l) != nn_layer_out_dim(m->layers[m->nlayers - 1])) {
        nn_layer_free(l);
        smlt_set_err(err, errlen, "layer %s: input size does not match the previous layer",
                     name ? name : "?");
        return -1;
    }
    for (int i = 0; i < nn_layer_num_tensors(l); i++) {
        struct nn_tensor_info *ti = &m->tensors[m->ntensors];
        char suffix[NN_TENSOR_NAME_MAX];
        nn_layer_tensor(l, i, ti);
        snprintf(suffix, sizeof suffix, "%s", ti->name);
        snprintf(ti->name, sizeof ti->name, "%.15s.%.7s", name, suffix);
        ti->offset += m->nparams;
        m->ntensors++;
    }
    m->nparams += nn_layer_num_params(l);
    m->layers[m->nlayers++] = l;
    if (m->nparams > NN_MODEL_MAX_PARAMS) {
        smlt_set_err(err, errlen, "model too large (more than %zu parameters)",
                     NN_MODEL_MAX_PARAMS);
        return -1;
    }
    return 0;
}

static int build_dense_stack(struct nn_model *m, const struct model_plan *p, const int *sizes,
                             int nsizes, int first_fc, char *err, size_t errlen)
{
    for (int i = 0; i + 1 < nsizes; i++) {
        char name[16];
        int relu = i + 2 < nsizes;
        snprintf(name, sizeof name, "fc%d", first_fc + i);
        if (model_add(m, nn_layer_new_dense(sizes[i], sizes[i + 1], relu), name, err, errlen))
            return -1;
        if (relu && p->dropout > 0.0f &&
            model_add(m, nn_layer_new_dropout(sizes[i + 1], p->dropout), "drop", err, errlen))
            return -1;
    }
    return 0;
}

static int build_layers(struct nn_model *m, const struct model_plan *p, char *err,
                        size_t errlen)
{
    if (strcmp(p->kind, "lenet5")) {
        m->input_dim = p->sizes[0];
        m->classes = p->sizes[p->nsizes - 1];
        return build_dense_stack(m, p, p->sizes, p->nsizes, 1, err, errlen);
    }
    int h = p->in_h, w = p->in_w, c = p->in_c;
    if ((long long)h * w * c > NN_MODEL_MAX_INPUT) {
        smlt_set_err(err, errlen, "input shape %dx%dx%d too large (at most %d values)", h, w, c,
                     NN_MODEL_MAX_INPUT);
        return -1;
    }
    m->input_dim = h * w * c;
    m->classes = p->classes;
    if (model_add(m, nn_layer_new_conv(h, w, c, 6, 5, 1, p->pad, 1), "conv1", err, errlen))
        return -1;
    nn_layer_out_shape(m->layers[m->nlayers - 1], &h, &w, &c);
    if (model_add(m, nn_layer_new_maxpool(h, w, c, 2, 2), "pool1", err, errlen))
        return -1;
    nn_layer_out_shape(m->layers[m->nlayers - 1], &h, &w, &c);
    if (model_add(m, nn_layer_new_conv(h, w, c, 16, 5, 1, 0, 1), "conv2", err, errlen))
        return -1;
    nn_layer_out_shape(m->layers[m->nlayers - 1], &h, &w, &c);
    if (model_add(m, nn_layer_new_maxpool(h, w, c, 2, 2), "pool2", err, errlen))
        return -1;
    nn_layer_out_shape(m->layers[m->nlayers - 1], &h, &w, &c);
    if (model_add(m, nn_layer_new_flatten(h, w, c), "flatten", err, errlen))
        return -1;
    int sizes[4] = {h * w * c, 120, 84, p->classes};
    return build_dense_stack(m, p, sizes, 4, 1, err, errlen);
}

static void canonical_spec(struct nn_model *m, const struct model_plan *p)
{
    char *s = m->spec;
    size_t cap = sizeof m->spec;
    int n = snprintf(s, cap, "%s", p->kind);
    for (int i = 0; i < p->nsizes && n > 0 && (size_t)n < cap; i++)
        n += snprintf(s + n, cap - (size_t)n, "%c%d", i ? '-' : ':', p->sizes[i]);
    if (p->have_in && (size_t)n < cap)
        n += snprintf(s + n, cap - (size_t)n, ":in=%dx%dx%d", p->in_h, p->in_w, p->in_c);
    if (p->have_pad && (size_t)n < cap)
        n += snprintf(s + n, cap - (size_t)n, ":pad=%d", p->pad);
    if (p->have_classes && (size_t)n < cap)
        n += snprintf(s + n, cap - (size_t)n, ":classes=%d", p->classes);
    if (p->dropout > 0.0f && (size_t)n < cap) {
        /* The shortest form that reads back as the same float (%g alone can round 0.99999994
         * up to "1", which the parser refuses); read back as the parser does. */
        char d[32];
        snprintf(d, sizeof d, "%g", (double)p->dropout);
        if ((float)strtod(d, NULL) != p->dropout)
            snprintf(d, sizeof d, "%.9g", (double)p->dropout);
        snprintf(s + n, cap - (size_t)n, ":dropout=%s", d);
    }
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
    m->params = alloc_floats(m->nparams);
    m->grads = alloc_floats(m->nparams);
    if (!m->params || !m->grads)
        return -1;
    size_t off = 0;
    size_t maxdim = (size_t)m->input_dim;
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
    struct model_plan plan;
    if (err && errlen)
        err[0] = '\0';
    if (parse_spec(&plan, spec, err, errlen) < 0)
        return NULL;
    if (max_batch < 1 || max_batch > 65536) {
        smlt_set_err(err, errlen, "bad max batch %d (expected 1..65536)", max_batch);
        return NULL;
    }
    struct nn_model *m = calloc(1, sizeof *m);
    if (!m) {
        smlt_set_err(err, errlen, "out of memory");
        return NULL;
    }
    m->max_batch = max_batch;
    if (build_layers(m, &plan, err, errlen) < 0)
        goto fail;
    canonical_spec(m, &plan);
    if (alloc_buffers(m) < 0) {
        smlt_set_err(err, errlen, "out of memory for model '%s' with batch %d", spec, max_batch);
        goto fail;
    }
    return m;
fail:
    nn_model_free(m);
    return NULL;
}

int nn_model_check(const char *spec, char *canon, size_t canonlen, size_t *nparams, char *err,
                   size_t errlen)
{
    struct model_plan plan;
    if (err && errlen)
        err[0] = '\0';
    if (parse_spec(&plan, spec, err, errlen) < 0)
        return -1;
    struct nn_model *m = calloc(1, sizeof *m);
    if (!m) {
        smlt_set_err(err, errlen, "out of memory");
        return -1;
    }
    m->max_batch = 1;
    int rc = build_layers(m, &plan, err, errlen);
    if (rc == 0) {
        canonical_spec(m, &plan);
        if (canon && canonlen)
            snprintf(canon, canonlen, "%s", m->spec);
        if (nparams)
            *nparams = m->nparams;
    }
    nn_model_free(m); /* layers only: the buffers were never made */
    return rc < 0 ? -1 : 0;
}

void nn_model_free(struct nn_model *m)
{
    if (!m)
        return;
    free(m->eval_buf);
    for (int i = 0; i < m->nlayers; i++)
        nn_layer_free(m->layers[i]);
    for (int i = 0; i <= NN_MODEL_MAX_LAYERS; i++)
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
    return m->spec;
}

int nn_model_input_dim(const struct nn_model *m)
{
    return m->input_dim;
}

int nn_model_num_classes(const struct nn_model *m)
{
    return m->classes;
}

int nn_model_max_batch(const struct nn_model *m)
{
    return m->max_batch;
}

size_t nn_model_num_params(const struct nn_model *m)
{
    return m->nparams;
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
    return m->ntensors;
}

const struct nn_tensor_info *nn_model_tensor(const struct nn_model *m, int i)
{
    return i >= 0 && i < m->ntensors ? &m->tensors[i] : NULL;
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
    for (int i = 0; i < m->ntensors; i++) {
        const struct nn_tensor_info *ti = &m->tensors[i];
        nn_model_init_fill(ti->init, ti->scale, seed, ti->offset, m->params + ti->offset,
                           ti->length);
    }
    memset(m->grads, 0, sizeof(float) * m->nparams);
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
        if (y[i] < 0 || y[i] >= m->classes)
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
    double l = nn_layer_softmax_xent(m->acts[L], y, n, m->classes, m->dacts[L], NULL);
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
    cblas_saxpy((int)m->nparams, -lr, m->grads, 1, m->params, 1);
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
    if (data_set_dim(ds) != m->input_dim || data_set_num_classes(ds) > m->classes)
        return SMLT_EINVAL;
    if (data_set_check(ds, NULL) < 0)
        return SMLT_EINVAL;
    const int32_t *y = data_set_y(ds);
    double lsum = 0.0;
    long correct = 0;
    /* Rows are read a batch at a time (a byte-valued set converts them on the way). The
     * buffer is made once per model, outside the training loop. */
    if (!m->eval_buf) {
        m->eval_buf = malloc(sizeof(float) * (size_t)m->max_batch * (size_t)m->input_dim);
        if (!m->eval_buf)
            return SMLT_ENOMEM;
    }
    for (size_t i = 0; i < total; i += (size_t)m->max_batch) {
        int n = total - i < (size_t)m->max_batch ? (int)(total - i) : m->max_batch;
        data_set_rows(ds, i, (size_t)n, m->eval_buf);
        model_forward(m, m->eval_buf, n, 0);
        lsum += n * nn_layer_softmax_xent(m->acts[m->nlayers], y + i, n, m->classes, NULL,
                                          &correct);
    }
    if (acc)
        *acc = total ? (double)correct / (double)total : 0.0;
    if (loss)
        *loss = total ? lsum / (double)total : 0.0;
    return 0;
}
