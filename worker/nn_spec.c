/* nn_spec.c: the model spec parser, the layer plan and the flat layout (nn_spec.h).
 *
 * Parsing fills a struct plan (the model kind, sizes and options); planning turns it into the
 * layers with their shapes and checks each layer's geometry against the caps the engine relies
 * on (nn_layer.c, nn_conv.c build exactly these layers); the layout follows from the layers. */
#include "nn_spec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smlt.h"
#include "smlt_error.h"
#include "smlt_util.h"

/* What the parser produces before any layer is planned. */
struct plan {
    char kind[16];
    int sizes[NN_SPEC_MAX_LAYERS];
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

static int parse_sizes(struct plan *p, const char *tok, const char *spec, char *err,
                       size_t errlen)
{
    const char *s = tok;
    p->nsizes = 0;
    for (;;) {
        const char *dash = strchr(s, '-');
        size_t len = dash ? (size_t)(dash - s) : strlen(s);
        if (p->nsizes >= NN_SPEC_MAX_LAYERS) {
            smlt_set_err(err, errlen, "too many layers in '%s' (at most %d sizes)", spec,
                         NN_SPEC_MAX_LAYERS);
            return -1;
        }
        if (parse_int(s, len, 1, NN_SPEC_MAX_WIDTH, &p->sizes[p->nsizes]) < 0) {
            smlt_set_err(err, errlen, "bad layer size '%.*s' in '%s' (expected an integer 1..%d)",
                         (int)len, s, spec, NN_SPEC_MAX_WIDTH);
            return -1;
        }
        p->nsizes++;
        if (!dash)
            return 0;
        s = dash + 1;
    }
}

static int parse_option(struct plan *p, const char *tok, const char *spec, char *err,
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

static int parse_spec(struct plan *p, const char *spec, char *err, size_t errlen)
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
    if (strlen(spec) >= NN_SPEC_MAX) {
        smlt_set_err(err, errlen, "model spec too long (%zu bytes, at most %d)", strlen(spec),
                     NN_SPEC_MAX - 1);
        return -1;
    }
    char buf[NN_SPEC_MAX];
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

static void canonical_spec(struct nn_spec *sp, const struct plan *p)
{
    char *s = sp->canon;
    size_t cap = sizeof sp->canon;
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

float nn_spec_init_scale(int relu, double fan_in, double fan_out)
{
    /* Both keep the activations' variance roughly constant through the stack. */
    return (float)(relu ? sqrt(6.0 / fan_in) : sqrt(6.0 / (fan_in + fan_out)));
}

int nn_spec_conv_out(int h, int w, int c, int oc, int k, int stride, int pad, int *oh, int *ow)
{
    if (h < 1 || w < 1 || c < 1 || oc < 1 || k < 1 || stride < 1 || pad < 0)
        return SMLT_EINVAL;
    if (h > NN_SPEC_MAX_SIDE || w > NN_SPEC_MAX_SIDE || c > NN_SPEC_MAX_SIDE ||
        oc > NN_SPEC_MAX_SIDE || k > NN_SPEC_MAX_SIDE || pad > k - 1 || k > h + 2 * pad ||
        k > w + 2 * pad)
        return SMLT_EINVAL;
    if ((long long)h * w * c > NN_SPEC_MAX_ELEMS || (long long)k * k * c > NN_SPEC_MAX_ELEMS ||
        (long long)k * k * c * oc > NN_SPEC_MAX_ELEMS)
        return SMLT_EINVAL;
    int y = (h + 2 * pad - k) / stride + 1, x = (w + 2 * pad - k) / stride + 1;
    if ((long long)y * x * oc > NN_SPEC_MAX_ELEMS)
        return SMLT_EINVAL;
    *oh = y;
    *ow = x;
    return 0;
}

int nn_spec_pool_out(int h, int w, int c, int k, int stride, int *oh, int *ow)
{
    if (h < 1 || w < 1 || c < 1 || k < 1 || stride < 1 || k > h || k > w || k > NN_SPEC_MAX_POOL)
        return SMLT_EINVAL;
    if (h > NN_SPEC_MAX_SIDE || w > NN_SPEC_MAX_SIDE || (long long)h * w * c > NN_SPEC_MAX_ELEMS)
        return SMLT_EINVAL;
    *oh = (h - k) / stride + 1;
    *ow = (w - k) / stride + 1;
    return 0;
}

/* Appends tensor `suffix` of layer l (shape given) to the layout. */
static void add_tensor(struct nn_spec *sp, const struct nn_spec_layer *l, const char *suffix,
                       int ndim, const int *shape, enum smlt_init init, float scale)
{
    struct nn_spec_tensor *t = &sp->tensors[sp->ntensors++];
    snprintf(t->name, sizeof t->name, "%.15s.%.7s", l->name, suffix);
    t->ndim = ndim;
    t->length = 1;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->length *= (size_t)shape[d];
    }
    t->offset = sp->nparams;
    t->init = init;
    t->scale = scale;
    sp->nparams += t->length;
}

/* Checks layer l's geometry (its input shape, kind and parameters are set), fills its output
 * shape and parameter count, and appends it and its tensors. Returns 0 or SMLT_EINVAL. */
static int add_layer(struct nn_spec *sp, struct nn_spec_layer *l, char *err, size_t errlen)
{
    int ok = 1;
    l->in_dim = l->h * l->w * l->c; /* each side is capped by the parser or an earlier layer */
    l->oh = l->h;
    l->ow = l->w;
    if (l->kind != NN_SPEC_DENSE && l->kind != NN_SPEC_CONV)
        l->oc = l->c; /* dense and conv layers are given their output channels */
    switch (l->kind) {
    case NN_SPEC_DENSE:
        ok = (long long)l->in_dim * l->oc <= NN_SPEC_MAX_DENSE;
        break;
    case NN_SPEC_CONV:
        ok = nn_spec_conv_out(l->h, l->w, l->c, l->oc, l->k, l->stride, l->pad, &l->oh,
                              &l->ow) == 0;
        break;
    case NN_SPEC_MAXPOOL:
        ok = nn_spec_pool_out(l->h, l->w, l->c, l->k, l->stride, &l->oh, &l->ow) == 0;
        break;
    case NN_SPEC_FLATTEN:
        l->oh = l->ow = 1;
        l->oc = l->in_dim;
        break;
    case NN_SPEC_DROPOUT:
        ok = l->dropout >= 0.0f && l->dropout < 1.0f;
        break;
    }
    if (ok) {
        long long out = (long long)l->oh * l->ow * l->oc;
        ok = l->in_dim >= 1 && l->in_dim <= NN_SPEC_MAX_DIM && out >= 1 && out <= NN_SPEC_MAX_DIM;
        l->out_dim = (int)out;
    }
    if (!ok) {
        smlt_set_err(err, errlen, "layer %s: bad geometry", l->name);
        return SMLT_EINVAL;
    }
    if (sp->nlayers >= NN_SPEC_MAX_LAYERS) {
        smlt_set_err(err, errlen, "too many layers (at most %d)", NN_SPEC_MAX_LAYERS);
        return SMLT_EINVAL;
    }
    sp->layers[sp->nlayers++] = *l;
    if (l->kind == NN_SPEC_DENSE || l->kind == NN_SPEC_CONV) {
        size_t before = sp->nparams;
        if (l->kind == NN_SPEC_DENSE) {
            int shape[2] = {l->in_dim, l->oc};
            add_tensor(sp, l, "weight", 2, shape, SMLT_INIT_UNIFORM,
                       nn_spec_init_scale(l->relu, l->in_dim, l->oc));
        } else {
            int shape[4] = {l->k, l->k, l->c, l->oc};
            add_tensor(sp, l, "weight", 4, shape, SMLT_INIT_UNIFORM,
                       nn_spec_init_scale(l->relu, (double)l->k * l->k * l->c,
                                          (double)l->k * l->k * l->oc));
        }
        add_tensor(sp, l, "bias", 1, &l->oc, SMLT_INIT_ZERO, 0.0f);
        sp->layers[sp->nlayers - 1].nparams = sp->nparams - before;
    }
    if (sp->nparams > NN_SPEC_MAX_PARAMS) {
        smlt_set_err(err, errlen, "model too large (more than %zu parameters)",
                     NN_SPEC_MAX_PARAMS);
        return SMLT_EINVAL;
    }
    return 0;
}

/* The dense layers from sizes[0] to sizes[nsizes - 1], a ReLU (and the plan's dropout) after
 * each hidden one. */
static int plan_dense_stack(struct nn_spec *sp, const struct plan *p, const int *sizes,
                            int nsizes, char *err, size_t errlen)
{
    for (int i = 0; i + 1 < nsizes; i++) {
        int relu = i + 2 < nsizes;
        struct nn_spec_layer l = {.kind = NN_SPEC_DENSE, .h = 1, .w = 1, .c = sizes[i],
                                  .oc = sizes[i + 1], .relu = relu};
        snprintf(l.name, sizeof l.name, "fc%d", i + 1);
        if (add_layer(sp, &l, err, errlen))
            return SMLT_EINVAL;
        if (relu && p->dropout > 0.0f) {
            struct nn_spec_layer d = {.kind = NN_SPEC_DROPOUT, .name = "drop", .h = 1, .w = 1,
                                      .c = sizes[i + 1], .dropout = p->dropout};
            if (add_layer(sp, &d, err, errlen))
                return SMLT_EINVAL;
        }
    }
    return 0;
}

/* Appends a layer that takes the previous layer's output shape. */
static int add_next(struct nn_spec *sp, struct nn_spec_layer l, char *err, size_t errlen)
{
    const struct nn_spec_layer *prev = &sp->layers[sp->nlayers - 1];
    l.h = prev->oh;
    l.w = prev->ow;
    l.c = prev->oc;
    return add_layer(sp, &l, err, errlen);
}

static int plan_layers(struct nn_spec *sp, const struct plan *p, char *err, size_t errlen)
{
    if (strcmp(p->kind, "lenet5")) {
        sp->input_dim = p->sizes[0];
        sp->classes = p->sizes[p->nsizes - 1];
        return plan_dense_stack(sp, p, p->sizes, p->nsizes, err, errlen);
    }
    int h = p->in_h, w = p->in_w, c = p->in_c;
    if ((long long)h * w * c > NN_SPEC_MAX_INPUT) {
        smlt_set_err(err, errlen, "input shape %dx%dx%d too large (at most %d values)", h, w, c,
                     NN_SPEC_MAX_INPUT);
        return SMLT_EINVAL;
    }
    sp->input_dim = h * w * c;
    sp->classes = p->classes;
    struct nn_spec_layer conv1 = {.kind = NN_SPEC_CONV, .name = "conv1", .h = h, .w = w, .c = c,
                                  .oc = 6, .k = 5, .stride = 1, .pad = p->pad, .relu = 1};
    if (add_layer(sp, &conv1, err, errlen) ||
        add_next(sp, (struct nn_spec_layer){.kind = NN_SPEC_MAXPOOL, .name = "pool1", .k = 2,
                                            .stride = 2}, err, errlen) ||
        add_next(sp, (struct nn_spec_layer){.kind = NN_SPEC_CONV, .name = "conv2", .oc = 16,
                                            .k = 5, .stride = 1, .relu = 1}, err, errlen) ||
        add_next(sp, (struct nn_spec_layer){.kind = NN_SPEC_MAXPOOL, .name = "pool2", .k = 2,
                                            .stride = 2}, err, errlen) ||
        add_next(sp, (struct nn_spec_layer){.kind = NN_SPEC_FLATTEN, .name = "flatten"}, err,
                 errlen))
        return SMLT_EINVAL;
    int sizes[4] = {sp->layers[sp->nlayers - 1].out_dim, 120, 84, p->classes};
    return plan_dense_stack(sp, p, sizes, 4, err, errlen);
}

int nn_spec_parse(struct nn_spec *out, const char *spec, char *err, size_t errlen)
{
    struct plan p;
    if (err && errlen)
        err[0] = '\0';
    memset(out, 0, sizeof *out);
    if (parse_spec(&p, spec, err, errlen) < 0 || plan_layers(out, &p, err, errlen) < 0) {
        memset(out, 0, sizeof *out);
        return SMLT_EINVAL;
    }
    canonical_spec(out, &p);
    return 0;
}

int nn_spec_check(const char *spec, char *canon, size_t canonlen, size_t *nparams, char *err,
                  size_t errlen)
{
    struct nn_spec *sp = malloc(sizeof *sp);
    if (!sp) {
        smlt_set_err(err, errlen, "out of memory");
        return SMLT_ENOMEM;
    }
    int rc = nn_spec_parse(sp, spec, err, errlen);
    if (rc == 0) {
        if (canon && canonlen)
            snprintf(canon, canonlen, "%s", sp->canon);
        if (nparams)
            *nparams = sp->nparams;
    }
    free(sp);
    return rc;
}

int nn_spec_tensor_defs(const struct nn_spec *s, struct smlt_tensor_def *defs, uint64_t *shapes)
{
    for (int i = 0; i < s->ntensors; i++) {
        const struct nn_spec_tensor *t = &s->tensors[i];
        uint64_t *sh = shapes + NN_SPEC_MAX_DIMS * i;
        for (int d = 0; d < t->ndim; d++)
            sh[d] = (uint64_t)t->shape[d];
        defs[i] = (struct smlt_tensor_def){.name = t->name, .ndims = (uint32_t)t->ndim,
                                           .shape = sh, .init = (int)t->init,
                                           .init_scale = t->scale};
    }
    return s->ntensors;
}
