/* coord_spec.c: parsing and validation of job specs (see coord_spec.h for the fields), and
 * the names of their enums. Writing a parsed spec back out is coord_spec_json.c's.
 *
 * The parser walks the fields in a fixed order and stops at the first problem, so a message
 * always names one field. Unknown keys are looked for first, at every level, so a typo is
 * reported as such rather than as the missing field it was meant to be. JSON null counts as
 * "not given". Checking a dataset's files or URL and a list of shard addresses is
 * coord_spec_source.c's. */
#include "coord_spec.h"
#include "coord_spec_int.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn_spec.h"
#include "smlt.pb-c.h"
#include "smlt_error.h"

_Static_assert(COORD_SPEC_MODEL_MAX == NN_SPEC_MAX, "model spec sizes differ");

int coord_spec__fail(struct pctx *c, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return SMLT_EINVAL;
}

/* ---- names --------------------------------------------------------------------------------- */

static const char *const sync_names[] = {"bsp", "ssp", "asp"};
static const char *const optim_names[] = {"sgd", "momentum", "adam", "adagrad"};
static const char *const platform_names[] = {"local", "lambda", "openfaas", "knative"};
static const char *const arch_names[] = {"x86_64", "arm64"};
static const char *const scale_names[] = {"none", "minmax", "standard"};
#define NNAMES(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *name_of(const char *const *names, int n, int v)
{
    return v >= 0 && v < n ? names[v] : "?";
}

const char *coord_spec_sync_name(int sync)
{
    return name_of(sync_names, NNAMES(sync_names), sync);
}

const char *coord_spec_optim_name(int kind)
{
    return name_of(optim_names, NNAMES(optim_names), kind);
}

const char *coord_spec_platform_name(int kind)
{
    return name_of(platform_names, NNAMES(platform_names), kind);
}

const char *coord_spec_arch_name(int arch)
{
    return name_of(arch_names, NNAMES(arch_names), arch);
}

const char *coord_spec_scale_name(int scale)
{
    return name_of(scale_names, NNAMES(scale_names), scale);
}

/* ---- describing values in messages ---------------------------------------------------------- */

/* Shortest %g form that reads back as the same double. */
static void fmt_double(double v, char *buf, size_t n)
{
    snprintf(buf, n, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, n, "%.17g", v);
}

/* Writes at most max bytes of s to buf, control and non-ASCII bytes as '?', with "..." when
 * cut. buf must hold max + 4 bytes. */
void coord_spec__fmt_clean(const char *s, size_t len, size_t max, char *buf)
{
    size_t i, o = 0;
    for (i = 0; i < len && i < max; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[o++] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
    }
    if (i < len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
}

/* What the user gave, for "(got X)": the value for numbers and short strings, else its type. */
static void describe(const json_t *v, char *buf, size_t n)
{
    char tmp[80];
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        snprintf(buf, n, "an object");
        break;
    case JSON_ARRAY:
        snprintf(buf, n, "an array");
        break;
    case JSON_STRING:
        coord_spec__fmt_clean(json_string_value(v), json_string_length(v), 48, tmp);
        snprintf(buf, n, "\"%s\"", tmp);
        break;
    case JSON_INTEGER:
        snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        fmt_double(json_real_value(v), buf, n);
        break;
    case JSON_TRUE:
        snprintf(buf, n, "true");
        break;
    case JSON_FALSE:
        snprintf(buf, n, "false");
        break;
    default:
        snprintf(buf, n, "null");
        break;
    }
}

static int bad(struct pctx *c, const char *path, const char *want, const json_t *v)
{
    char got[96];
    describe(v, got, sizeof got);
    return coord_spec__fail(c, "%s: must be %s (got %s)", path, want, got);
}

/* ---- unknown keys -------------------------------------------------------------------------- */

static const char *const top_keys[] = {
    "name", "model", "dataset", "cache_dir", "sync", "staleness", "optimizer", "batch_size",
    "epochs", "target_accuracy", "max_epochs", "workers", "min_workers", "max_workers", "shards",
    "max_shards", "deadline_s", "budget_usd", "platform", "prices", "ps", "seed",
    "evaluate_every_epochs", "chaos", "statistical_efficiency", "dataset_options", "checkpoint",
    "model_source", NULL};
static const char *const checkpoint_keys[] = {"every_steps", "every_s", "keep", NULL};
static const char *const dataset_opt_keys[] = {"label_column", "header", "scale", NULL};
static const char *const optim_keys[] = {"kind", "lr", "momentum", "nesterov", "beta1", "beta2",
                                         "eps", "weight_decay", "decoupled", NULL};
static const char *const platform_keys[] = {"kind", "memory_mb", "time_limit_s", "concurrency",
                                            "region", "arch", "ps_nic_mbps", NULL};
static const char *const prices_keys[] = {"gb_s", "request", "ps_node_hour", NULL};
static const char *const ps_keys[] = {"addrs", "token", "admin_token", "replicas", NULL};
static const char *const chaos_keys[] = {"slow_rank", "slow_ms", NULL};

static const struct {
    const char *name;
    const char *const *keys;
} nested[] = {{"optimizer", optim_keys}, {"platform", platform_keys}, {"prices", prices_keys},
              {"ps", ps_keys}, {"chaos", chaos_keys}, {"dataset_options", dataset_opt_keys},
              {"checkpoint", checkpoint_keys}};

/* Levenshtein distance, capped: anything above 3 is reported as 4. */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40 || (la > lb ? la - lb : lb - la) > 3)
        return 4;
    int row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb] > 3 ? 4 : row[lb];
}

static int known(const char *const *keys, const char *k)
{
    for (int i = 0; keys[i]; i++)
        if (!strcmp(keys[i], k))
            return 1;
    return 0;
}

/* Refuses the first key of obj that is not in keys. prefix is "" or "optimizer." etc. */
static int check_keys(struct pctx *c, json_t *obj, const char *prefix, const char *const *keys)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        if (known(keys, k))
            continue;
        char clean[80], hint[96] = "";
        coord_spec__fmt_clean(k, strlen(k), 64, clean);
        int best = 4;
        for (int i = 0; keys[i]; i++) {
            int d = distance(k, keys[i]);
            /* A short key needs a closer match: "lr" is not a typo of "eps". */
            if (d < best && d <= (strlen(keys[i]) > 4 ? 2 : 1)) {
                best = d;
                snprintf(hint, sizeof hint, " (did you mean \"%s%s\"?)", prefix, keys[i]);
            }
        }
        /* A known key with a unit or qualifier left off: "budget" for "budget_usd". */
        size_t kl = strlen(k);
        for (int i = 0; keys[i] && !hint[0]; i++)
            if (kl >= 3 && !strncmp(keys[i], k, kl) && keys[i][kl] == '_')
                snprintf(hint, sizeof hint, " (did you mean \"%s%s\"?)", prefix, keys[i]);
        if (!hint[0] && known(keys, "lr") && !strcmp(k, "learning_rate"))
            snprintf(hint, sizeof hint, " (did you mean \"%slr\"?)", prefix);
        if (!hint[0] && !prefix[0]) {
            /* A nested field given at the top level: "memory_mb" for "platform.memory_mb". */
            for (size_t n = 0; n < sizeof nested / sizeof nested[0] && !hint[0]; n++)
                if (known(nested[n].keys, k) && strcmp(k, "kind"))
                    snprintf(hint, sizeof hint, " (did you mean \"%s.%s\"?)", nested[n].name, k);
        }
        return coord_spec__fail(c, "%s%s: unknown field%s", prefix, clean, hint);
    }
    return 0;
}

/* ---- typed getters: return 1 (given), 0 (absent or null) or SMLT_EINVAL -------------------- */

static json_t *field(json_t *obj, const char *key)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_null(v) ? NULL : v;
}

static int get_int(struct pctx *c, json_t *obj, const char *key, const char *path, int64_t lo,
                   int64_t hi, int64_t *out)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    char want[96];
    snprintf(want, sizeof want, "an integer in %" PRId64 "..%" PRId64, lo, hi);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return bad(c, path, want, v);
    *out = json_integer_value(v);
    return 1;
}

static int get_u32(struct pctx *c, json_t *obj, const char *key, const char *path, uint32_t lo,
                   uint32_t hi, uint32_t *out)
{
    int64_t v;
    int rc = get_int(c, obj, key, path, lo, hi, &v);
    if (rc == 1)
        *out = (uint32_t)v;
    return rc;
}

enum { OPEN_LO = 1, OPEN_HI = 2 };

/* A number in the interval lo..hi (inclusive unless flagged open); hi may be INFINITY. */
static int get_num(struct pctx *c, json_t *obj, const char *key, const char *path, double lo,
                   double hi, int open, double *out)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    char want[96], a[32], b[32];
    fmt_double(lo, a, sizeof a);
    fmt_double(hi, b, sizeof b);
    if (isinf(hi))
        snprintf(want, sizeof want, "a number %s %s", (open & OPEN_LO) ? ">" : ">=", a);
    else if (lo == 0.0 && !(open & OPEN_LO) && hi == 1.0 && (open & OPEN_HI))
        snprintf(want, sizeof want, "a number in [0, 1)");
    else
        snprintf(want, sizeof want, "a number in %s%s, %s%s", (open & OPEN_LO) ? "(" : "[", a, b,
                 (open & OPEN_HI) ? ")" : "]");
    if (!json_is_number(v))
        return bad(c, path, want, v);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi || ((open & OPEN_LO) && x == lo) ||
        ((open & OPEN_HI) && x == hi))
        return bad(c, path, want, v);
    *out = x;
    return 1;
}

static int get_bool(struct pctx *c, json_t *obj, const char *key, const char *path, int *out)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return bad(c, path, "true or false", v);
    *out = json_is_true(v);
    return 1;
}

/* A string of 1..dstsz-1 bytes without control characters or NULs, copied into dst. */
static int get_str(struct pctx *c, json_t *obj, const char *key, const char *path, char *dst,
                   size_t dstsz)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_string(v))
        return bad(c, path, "a string", v);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0)
        return coord_spec__fail(c, "%s: must not be empty", path);
    if (len >= dstsz)
        return coord_spec__fail(c, "%s: too long (%zu bytes, at most %zu)", path, len, dstsz - 1);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return coord_spec__fail(c, "%s: must not contain control characters", path);
    memcpy(dst, s, len + 1);
    return 1;
}

static int get_enum(struct pctx *c, json_t *obj, const char *key, const char *path,
                    const char *const *names, int n, int *out)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (json_is_string(v))
        for (int i = 0; i < n; i++)
            if (!strcmp(json_string_value(v), names[i])) {
                *out = i;
                return 1;
            }
    char want[128] = "one of ";
    for (int i = 0; i < n; i++) {
        size_t l = strlen(want);
        snprintf(want + l, sizeof want - l, "%s\"%s\"", i ? ", " : "", names[i]);
    }
    return bad(c, path, want, v);
}

/* Returns 1 and *out for an object, 0 when absent, SMLT_EINVAL for another type; checks the
 * object's keys against keys. */
static int get_obj(struct pctx *c, json_t *obj, const char *key, const char *const *keys,
                   json_t **out)
{
    json_t *v = field(obj, key);
    *out = NULL;
    if (!v)
        return 0;
    if (!json_is_object(v))
        return bad(c, key, "an object", v);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.", key);
    int rc = check_keys(c, v, prefix, keys);
    if (rc)
        return rc;
    *out = v;
    return 1;
}

/* ---- dataset options ------------------------------------------------------------------------ */

/* dataset_options: how the worker reads the files. label_column and header only mean something
 * for a CSV file. */
static int parse_dataset_options(struct pctx *c, json_t *root, struct coord_spec *s)
{
    struct coord_spec_dataset_opts *d = &s->dataset_options;
    d->label_column = 0;
    d->header = SMLT__CSV_HEADER__HEADER_AUTO;
    d->scale = SMLT__FEATURE_SCALE__SCALE_NONE;
    json_t *obj;
    int rc = get_obj(c, root, "dataset_options", dataset_opt_keys, &obj);
    if (rc <= 0)
        return rc;
    int csv = !strncmp(s->dataset, "csv:", 4);
    json_t *v = field(obj, "label_column");
    if (v) {
        char want[96];
        snprintf(want, sizeof want, "an integer in 0..%d or \"last\"",
                 COORD_SPEC_MAX_LABEL_COLUMN);
        if (json_is_string(v) && !strcmp(json_string_value(v), "last"))
            d->label_column = -1;
        else if (json_is_integer(v) && json_integer_value(v) >= 0 &&
                 json_integer_value(v) <= COORD_SPEC_MAX_LABEL_COLUMN)
            d->label_column = (int)json_integer_value(v);
        else
            return bad(c, "dataset_options.label_column", want, v);
        if (!csv)
            return coord_spec__fail(c, "dataset_options.label_column: only meaningful with a csv: dataset "
                           "(LIBSVM and IDX files say which value is the label)");
    }
    if ((v = field(obj, "header"))) {
        if (json_is_string(v) && !strcmp(json_string_value(v), "auto"))
            d->header = SMLT__CSV_HEADER__HEADER_AUTO;
        else if (json_is_boolean(v))
            d->header = json_is_true(v) ? SMLT__CSV_HEADER__HEADER_YES
                                        : SMLT__CSV_HEADER__HEADER_NO;
        else
            return bad(c, "dataset_options.header", "\"auto\", true or false", v);
        if (!csv)
            return coord_spec__fail(c, "dataset_options.header: only meaningful with a csv: dataset");
    }
    if ((rc = get_enum(c, obj, "scale", "dataset_options.scale", scale_names,
                       NNAMES(scale_names), &d->scale)) < 0)
        return rc;
    return 0;
}

/* ---- the parser ---------------------------------------------------------------------------- */

static void derive_name(const char *model, char *name, size_t n)
{
    size_t o = 0;
    for (const char *p = model; *p && o + 1 < n && o < 64; p++) {
        char ch = *p;
        int keep = ('a' <= ch && ch <= 'z') || ('A' <= ch && ch <= 'Z') ||
                   ('0' <= ch && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        name[o++] = keep ? ch : '-';
    }
    name[o] = 0;
}

int coord_spec_is_python(const char *model)
{
    return model && !strncmp(model, "python:", 7);
}

/* "python:FILE.py": a torch job. The file's text comes as model_source (smltctl reads it), or
 * the coordinator reads FILE itself when it has no model_source (coord_submit()); its tensors
 * are known once the shards are set up (smlt.job describe). */
static int parse_python_model(struct pctx *c, json_t *root, const char *given,
                              struct coord_spec *s)
{
    const char *file = given + 7;
    size_t n = strlen(file);
    if (n < 4 || strcmp(file + n - 3, ".py") || file[n - 4] == '/')
        return coord_spec__fail(c, "model: \"%s\": a torch job names its training file as "
                                   "python:FILE.py", given);
    for (const char *p = file; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return coord_spec__fail(c, "model: control characters in the file name");
    json_t *src = json_object_get(root, "model_source");
    if (src && !json_is_string(src))
        return bad(c, "model_source", "the training file's text (a string)", src);
    if (src && json_string_length(src) > COORD_SPEC_SOURCE_MAX)
        return coord_spec__fail(c, "model_source: %zu bytes, at most %u",
                                json_string_length(src), COORD_SPEC_SOURCE_MAX);
    if (src && (json_string_length(src) == 0 ||
                strlen(json_string_value(src)) != json_string_length(src)))
        return coord_spec__fail(c, "model_source: empty, or holds a NUL character");
    snprintf(s->model, sizeof s->model, "%s", given);
    s->model_params = 0;
    return 0;
}

static int parse_model(struct pctx *c, json_t *root, struct coord_spec *s)
{
    char given[COORD_SPEC_MODEL_MAX], nerr[256] = "";
    json_t *v = field(root, "model");
    if (!v)
        return coord_spec__fail(c, "model: required (a model spec such as \"mlp:784-128-10\" or \"lenet5\")");
    if (json_is_string(v) && json_string_length(v) >= sizeof given)
        return coord_spec__fail(c, "model: too long (%zu bytes, at most %zu)", json_string_length(v),
                    sizeof given - 1);
    int rc = get_str(c, root, "model", "model", given, sizeof given);
    if (rc < 0)
        return rc;
    size_t np = 0;
    if (coord_spec_is_python(given))
        return parse_python_model(c, root, given, s);
    if (json_object_get(root, "model_source"))
        return coord_spec__fail(c, "model_source: only with a \"python:FILE.py\" model");
    if (nn_spec_check(given, s->model, sizeof s->model, &np, nerr, sizeof nerr) != 0)
        return coord_spec__fail(c, "model: %s", nerr[0] ? nerr : "invalid model spec");
    s->model_params = np;
    return 0;
}

static int parse_optimizer(struct pctx *c, json_t *root, struct coord_spec *s)
{
    struct coord_spec_optim *o = &s->optimizer;
    o->kind = SMLT_OPT_MOMENTUM;
    o->lr = COORD_SPEC_DEF_LR;
    o->momentum = COORD_SPEC_DEF_MOMENTUM;
    o->nesterov = 0;
    o->beta1 = COORD_SPEC_DEF_BETA1;
    o->beta2 = COORD_SPEC_DEF_BETA2;
    o->eps = COORD_SPEC_DEF_EPS;
    o->weight_decay = 0.0;
    o->decoupled = 0;
    json_t *obj;
    int rc = get_obj(c, root, "optimizer", optim_keys, &obj);
    if (rc <= 0)
        return rc;
    if ((rc = get_enum(c, obj, "kind", "optimizer.kind", optim_names, NNAMES(optim_names),
                       &o->kind)) < 0 ||
        (rc = get_num(c, obj, "lr", "optimizer.lr", 0.0, INFINITY, OPEN_LO, &o->lr)) < 0 ||
        (rc = get_num(c, obj, "momentum", "optimizer.momentum", 0.0, 1.0, OPEN_HI,
                      &o->momentum)) < 0 ||
        (rc = get_bool(c, obj, "nesterov", "optimizer.nesterov", &o->nesterov)) < 0 ||
        (rc = get_num(c, obj, "beta1", "optimizer.beta1", 0.0, 1.0, OPEN_HI, &o->beta1)) < 0 ||
        (rc = get_num(c, obj, "beta2", "optimizer.beta2", 0.0, 1.0, OPEN_HI, &o->beta2)) < 0 ||
        (rc = get_num(c, obj, "eps", "optimizer.eps", 0.0, INFINITY, OPEN_LO, &o->eps)) < 0 ||
        (rc = get_num(c, obj, "weight_decay", "optimizer.weight_decay", 0.0, INFINITY, 0,
                      &o->weight_decay)) < 0 ||
        (rc = get_bool(c, obj, "decoupled", "optimizer.decoupled", &o->decoupled)) < 0)
        return rc;
    /* The shards compute in float32: a value float cannot hold would silently become 0 or inf. */
    static const struct {
        const char *key;
        size_t off;
    } f32[] = {{"lr", offsetof(struct coord_spec_optim, lr)},
               {"eps", offsetof(struct coord_spec_optim, eps)},
               {"weight_decay", offsetof(struct coord_spec_optim, weight_decay)}};
    for (size_t i = 0; i < sizeof f32 / sizeof f32[0]; i++) {
        double x = *(const double *)((const char *)o + f32[i].off);
        if (x > FLT_MAX || (x > 0.0 && x < FLT_MIN))
            return coord_spec__fail(c, "optimizer.%s: %g is out of float32 range", f32[i].key, x);
    }
    /* Settings of another optimizer are a mistake, not something to ignore. */
    static const struct {
        const char *key;
        unsigned kinds; /* bit per enum smlt_optim */
        const char *which;
    } only[] = {{"momentum", 1u << SMLT_OPT_MOMENTUM, "\"momentum\""},
                {"nesterov", 1u << SMLT_OPT_MOMENTUM, "\"momentum\""},
                {"beta1", 1u << SMLT_OPT_ADAM, "\"adam\""},
                {"beta2", 1u << SMLT_OPT_ADAM, "\"adam\""},
                {"decoupled", 1u << SMLT_OPT_ADAM, "\"adam\""},
                {"eps", (1u << SMLT_OPT_ADAM) | (1u << SMLT_OPT_ADAGRAD),
                 "\"adam\" or \"adagrad\""}};
    for (size_t i = 0; i < sizeof only / sizeof only[0]; i++)
        if (field(obj, only[i].key) && !(only[i].kinds & (1u << o->kind)))
            return coord_spec__fail(c, "optimizer.%s: only meaningful with kind %s (kind is \"%s\")",
                        only[i].key, only[i].which, optim_names[o->kind]);
    return 0;
}

static int parse_platform(struct pctx *c, json_t *root, struct coord_spec *s)
{
    struct coord_spec_platform *p = &s->platform;
    p->kind = COORD_PLATFORM_LOCAL;
    p->memory_mb = COORD_SPEC_DEF_MEMORY_MB;
    p->time_limit_s = COORD_SPEC_DEF_TIME_LIMIT_S;
    p->concurrency = COORD_SPEC_DEF_CONCURRENCY;
    snprintf(p->region, sizeof p->region, "%s", COORD_SPEC_DEF_REGION);
    p->arch = COORD_ARCH_X86_64;
    json_t *obj;
    int rc = get_obj(c, root, "platform", platform_keys, &obj);
    if (rc <= 0)
        return rc;
    if ((rc = get_enum(c, obj, "kind", "platform.kind", platform_names, NNAMES(platform_names),
                       &p->kind)) < 0)
        return rc;
    /* Give the range in the message as "64 is outside 128..10240" for the sizes people tune. */
    json_t *mem = field(obj, "memory_mb");
    if (json_is_integer(mem) && (json_integer_value(mem) < COORD_SPEC_MIN_MEMORY_MB ||
                                 json_integer_value(mem) > COORD_SPEC_MAX_MEMORY_MB))
        return coord_spec__fail(c, "platform.memory_mb: %" JSON_INTEGER_FORMAT " is outside %u..%u",
                    json_integer_value(mem), COORD_SPEC_MIN_MEMORY_MB, COORD_SPEC_MAX_MEMORY_MB);
    if ((rc = get_u32(c, obj, "memory_mb", "platform.memory_mb", COORD_SPEC_MIN_MEMORY_MB,
                      COORD_SPEC_MAX_MEMORY_MB, &p->memory_mb)) < 0 ||
        (rc = get_u32(c, obj, "time_limit_s", "platform.time_limit_s", 1,
                      COORD_SPEC_MAX_TIME_LIMIT_S, &p->time_limit_s)) < 0 ||
        (rc = get_u32(c, obj, "concurrency", "platform.concurrency", 1,
                      COORD_SPEC_MAX_CONCURRENCY, &p->concurrency)) < 0 ||
        (rc = get_str(c, obj, "region", "platform.region", p->region, sizeof p->region)) < 0 ||
        (rc = get_enum(c, obj, "arch", "platform.arch", arch_names, NNAMES(arch_names),
                       &p->arch)) < 0 ||
        (rc = get_u32(c, obj, "ps_nic_mbps", "platform.ps_nic_mbps", 0, 400000,
                      &p->ps_nic_mbps)) < 0)
        return rc;
    if (p->ps_nic_mbps && p->kind != COORD_PLATFORM_LOCAL)
        return coord_spec__fail(c, "platform.ps_nic_mbps: only the local platform emulates a shard's "
                       "network card");
    for (const char *q = p->region; *q; q++)
        if (!(('a' <= *q && *q <= 'z') || ('0' <= *q && *q <= '9') || *q == '-'))
            return coord_spec__fail(c, "platform.region: '%s' must be lower-case letters, digits and '-'",
                        p->region);
    return 0;
}

static int parse_prices(struct pctx *c, json_t *root, struct coord_spec *s)
{
    coord_prices_default(&s->prices, coord_spec_arch_name(s->platform.arch));
    json_t *obj;
    int rc = get_obj(c, root, "prices", prices_keys, &obj);
    if (rc <= 0)
        return rc;
    if ((rc = get_num(c, obj, "gb_s", "prices.gb_s", 0.0, INFINITY, 0, &s->prices.gb_s)) < 0 ||
        (rc = get_num(c, obj, "request", "prices.request", 0.0, INFINITY, 0,
                      &s->prices.request)) < 0 ||
        (rc = get_num(c, obj, "ps_node_hour", "prices.ps_node_hour", 0.0, INFINITY, 0,
                      &s->prices.ps_node_hour)) < 0)
        return rc;
    return 0;
}

/* Fault injection for tests and demonstrations: the first instance that serves rank slow_rank
 * is a slow host (every step takes slow_ms longer there). */
static int parse_chaos(struct pctx *c, json_t *root, struct coord_spec *s)
{
    json_t *obj;
    s->chaos.slow_rank = -1;
    int rc = get_obj(c, root, "chaos", chaos_keys, &obj);
    if (rc <= 0)
        return rc;
    uint32_t r = 0;
    if ((rc = get_u32(c, obj, "slow_rank", "chaos.slow_rank", 0, COORD_SPEC_MAX_WORKERS - 1, &r)) < 0)
        return rc;
    if (rc == 0)
        return coord_spec__fail(c, "chaos.slow_rank: required with \"chaos\"");
    s->chaos.slow_rank = (int)r;
    if ((rc = get_num(c, obj, "slow_ms", "chaos.slow_ms", 0.0, 60000.0, 0, &s->chaos.slow_ms)) < 0)
        return rc;
    if (rc == 0)
        s->chaos.slow_ms = 20;
    return 0;
}

/* Shard checkpoints: every_steps (the shards' version, the same steps on every shard) or
 * every_s (turned into steps once the step time is measured), the newest `keep` kept;
 * "checkpoint": false or every_steps 0 turns them off. */
static int parse_checkpoint(struct pctx *c, json_t *root, struct coord_spec *s)
{
    s->checkpoint.every_s = COORD_SPEC_DEF_CHECKPOINT_S;
    s->checkpoint.keep = COORD_SPEC_DEF_CHECKPOINT_KEEP;
    json_t *v = field(root, "checkpoint");
    if (v && json_is_false(v)) {
        s->checkpoint.every_s = 0;
        return 0;
    }
    json_t *obj;
    int rc = get_obj(c, root, "checkpoint", checkpoint_keys, &obj);
    if (rc <= 0)
        return rc;
    int64_t steps = 0;
    int has_steps = get_int(c, obj, "every_steps", "checkpoint.every_steps", 0, 1000000000, &steps);
    if (has_steps < 0)
        return has_steps;
    double secs = 0;
    int has_s = get_num(c, obj, "every_s", "checkpoint.every_s", 1.0, 86400.0, 0, &secs);
    if (has_s < 0)
        return has_s;
    if (has_steps && has_s)
        return coord_spec__fail(c, "checkpoint: give every_steps or every_s, not both");
    if (has_steps) {
        s->checkpoint.every_steps = (uint64_t)steps;
        s->checkpoint.every_s = 0;
    } else if (has_s) {
        s->checkpoint.every_s = secs;
    }
    if ((rc = get_u32(c, obj, "keep", "checkpoint.keep", 1, 100, &s->checkpoint.keep)) < 0)
        return rc;
    return 0;
}

/* Replicated shards keep their count: a reshard of a replicated job is not supported. */
static int parse_replicas(struct pctx *c, json_t *root, struct coord_spec *s)
{
    if (s->ps.replicas < 2)
        return 0;
    if (field(root, "max_shards") && s->max_shards != s->shards)
        return coord_spec__fail(c, "max_shards: must equal shards with ps.replicas 2 (a replicated job keeps "
                       "its shard count)");
    s->max_shards = s->shards;
    return 0;
}

/* Returns the number of external shards (0 without "ps") or SMLT_EINVAL. */
static int parse_ps(struct pctx *c, json_t *root, struct coord_spec *s)
{
    json_t *obj;
    s->ps.replicas = 1;
    int rc = get_obj(c, root, "ps", ps_keys, &obj);
    if (rc <= 0)
        return rc;
    if ((rc = get_u32(c, obj, "replicas", "ps.replicas", 1, 2, &s->ps.replicas)) < 0)
        return rc;
    if ((rc = get_str(c, obj, "addrs", "ps.addrs", s->ps.addrs, sizeof s->ps.addrs)) < 0)
        return rc;
    if (rc == 0 && field(obj, "replicas") && json_object_size(obj) == 1)
        return 0; /* local shards, replicated */
    if (rc == 0)
        return coord_spec__fail(c, "ps.addrs: required with \"ps\" (\"host:port,...\", one per shard)");
    if (s->ps.replicas > 1)
        return coord_spec__fail(c, "ps.replicas: 2 needs local shards (the coordinator starts the backups); "
                       "drop ps.addrs");
    if ((rc = get_str(c, obj, "token", "ps.token", s->ps.token, sizeof s->ps.token)) < 0)
        return rc;
    if (rc == 0)
        return coord_spec__fail(c, "ps.token: required with \"ps\" (the job token the shards expect)");
    if ((rc = get_str(c, obj, "admin_token", "ps.admin_token", s->ps.admin_token,
                      sizeof s->ps.admin_token)) < 0)
        return rc;
    return coord_spec__count_addrs(c, s->ps.addrs);
}

static int parse_seed(struct pctx *c, json_t *root, struct coord_spec *s)
{
    json_t *v = field(root, "seed");
    s->seed = COORD_SPEC_DEF_SEED;
    if (!v)
        return 0;
    static const char want[] = "an integer >= 0 or a decimal string of one";
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0)
            return bad(c, "seed", want, v);
        s->seed = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return bad(c, "seed", want, v);
    /* Beyond 2^63 - 1 JSON integers do not fit jansson's int64: a string carries the rest. */
    const char *str = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0 || len > 20 || strspn(str, "0123456789") != len)
        return bad(c, "seed", want, v);
    errno = 0;
    unsigned long long x = strtoull(str, NULL, 10);
    if (errno == ERANGE)
        return coord_spec__fail(c, "seed: %s is more than 2^64 - 1", str);
    s->seed = x;
    return 0;
}

/* model, name, dataset, dataset_options and cache_dir: what to train, on what. */
static int parse_source(struct pctx *c, json_t *root, struct coord_spec *s)
{
    int rc;
    if ((rc = parse_model(c, root, s)))
        return rc;
    if ((rc = get_str(c, root, "name", "name", s->name, sizeof s->name)) < 0)
        return rc;
    if (rc == 0)
        derive_name(s->model, s->name, sizeof s->name);

    if ((rc = get_str(c, root, "dataset", "dataset", s->dataset, sizeof s->dataset)) < 0)
        return rc;
    if (rc == 0)
        return coord_spec__fail(c, "dataset: required (a directory of IDX files, an http(s):// URL, "
                       "csv:PATH or libsvm:PATH)");
    /* A torch job's dataset is its training file's to read (train_data(dataset)). */
    if (!coord_spec_is_python(s->model) && (rc = coord_spec__check_dataset(c, s->dataset)))
        return rc;
    if ((rc = parse_dataset_options(c, root, s)))
        return rc;
    if ((rc = get_str(c, root, "cache_dir", "cache_dir", s->cache_dir, sizeof s->cache_dir)) < 0)
        return rc;
    return 0;
}

/* sync and staleness: a staleness bound only with "ssp", which has a default one. */
static int parse_sync(struct pctx *c, json_t *root, struct coord_spec *s)
{
    int rc;
    s->sync = SMLT_SYNC_BSP;
    if ((rc = get_enum(c, root, "sync", "sync", sync_names, NNAMES(sync_names), &s->sync)) < 0)
        return rc;
    if ((rc = get_u32(c, root, "staleness", "staleness", 0, COORD_SPEC_MAX_STALENESS,
                      &s->staleness)) < 0)
        return rc;
    if (rc == 1 && s->sync != SMLT_SYNC_SSP)
        return coord_spec__fail(c, "staleness: only meaningful with sync \"ssp\" (sync is \"%s\")",
                    sync_names[s->sync]);
    if (rc == 0)
        s->staleness = s->sync == SMLT_SYNC_SSP ? COORD_SPEC_DEF_STALENESS : 0;
    return 0;
}

/* How long: epochs, target_accuracy or both; max_epochs bounds a target-only job. */
static int parse_length(struct pctx *c, json_t *root, struct coord_spec *s)
{
    int have_epochs, have_target, have_max;
    if ((have_epochs = get_u32(c, root, "epochs", "epochs", 1, COORD_SPEC_MAX_EPOCHS,
                               &s->epochs)) < 0)
        return have_epochs;
    if ((have_target = get_num(c, root, "target_accuracy", "target_accuracy", 0.0, 1.0, OPEN_LO,
                               &s->target_accuracy)) < 0)
        return have_target;
    if (!have_epochs && !have_target)
        return coord_spec__fail(c, "epochs: give epochs or target_accuracy (or both: the job stops at "
                       "whichever comes first)");
    s->max_epochs = COORD_SPEC_DEF_MAX_EPOCHS;
    if ((have_max = get_u32(c, root, "max_epochs", "max_epochs", 1, COORD_SPEC_MAX_EPOCHS,
                            &s->max_epochs)) < 0)
        return have_max;
    if (have_max && have_epochs)
        return coord_spec__fail(c, "max_epochs: only meaningful without epochs (epochs already bounds the "
                       "job)");
    if (have_epochs)
        s->max_epochs = s->epochs;
    return 0;
}

/* The training settings: sync, optimizer, batch_size and how long. */
static int parse_training(struct pctx *c, json_t *root, struct coord_spec *s)
{
    int rc;
    if ((rc = parse_sync(c, root, s)))
        return rc;
    if ((rc = parse_optimizer(c, root, s)))
        return rc;
    s->batch_size = COORD_SPEC_DEF_BATCH;
    if ((rc = get_u32(c, root, "batch_size", "batch_size", COORD_SPEC_MIN_BATCH,
                      COORD_SPEC_MAX_BATCH, &s->batch_size)) < 0)
        return rc;
    return parse_length(c, root, s);
}

/* The platform, then whether the model fits its functions. */
static int parse_platform_fit(struct pctx *c, json_t *root, struct coord_spec *s)
{
    int rc;
    if ((rc = parse_platform(c, root, s)))
        return rc;
    /* A worker holds the parameters and their gradients (4 bytes each) at the least: a model
     * that cannot fit the function's memory would only fail on every worker. */
    if ((double)s->model_params * 8.0 > (double)s->platform.memory_mb * 1048576.0)
        return coord_spec__fail(c, "model: %" PRIu64 " parameters need at least %.0f MB in each worker "
                       "(parameters and gradients); platform.memory_mb is %u",
                    s->model_params, (double)s->model_params * 8.0 / 1048576.0,
                    s->platform.memory_mb);
    return 0;
}

/* Workers and the scheduler's bounds, within platform.concurrency. */
static int parse_workers(struct pctx *c, json_t *root, struct coord_spec *s)
{
    int rc;
    s->workers = COORD_SPEC_DEF_WORKERS < s->platform.concurrency ? COORD_SPEC_DEF_WORKERS
                                                                  : s->platform.concurrency;
    if ((rc = get_u32(c, root, "workers", "workers", COORD_SPEC_MIN_WORKERS,
                      COORD_SPEC_MAX_WORKERS, &s->workers)) < 0)
        return rc;
    if (s->workers > s->platform.concurrency)
        return coord_spec__fail(c, "workers: %u is more than platform.concurrency (%u)", s->workers,
                    s->platform.concurrency);
    s->min_workers = 1;
    if ((rc = get_u32(c, root, "min_workers", "min_workers", COORD_SPEC_MIN_WORKERS,
                      COORD_SPEC_MAX_WORKERS, &s->min_workers)) < 0)
        return rc;
    if (s->min_workers > s->workers)
        return coord_spec__fail(c, "min_workers: %u is more than workers (%u)", s->min_workers, s->workers);
    uint64_t defmax = 4ull * s->workers;
    if (defmax > COORD_SPEC_MAX_WORKERS)
        defmax = COORD_SPEC_MAX_WORKERS;
    if (defmax > s->platform.concurrency)
        defmax = s->platform.concurrency;
    s->max_workers = (uint32_t)defmax;
    if ((rc = get_u32(c, root, "max_workers", "max_workers", COORD_SPEC_MIN_WORKERS,
                      COORD_SPEC_MAX_WORKERS, &s->max_workers)) < 0)
        return rc;
    if (s->max_workers < s->workers)
        return coord_spec__fail(c, "max_workers: %u is less than workers (%u)", s->max_workers, s->workers);
    if (s->max_workers > s->platform.concurrency)
        return coord_spec__fail(c, "max_workers: %u is more than platform.concurrency (%u)", s->max_workers,
                    s->platform.concurrency);
    return 0;
}

/* Shards and max_shards; nps external shards (ps.addrs, 0 for none) fix the count. */
static int parse_shards(struct pctx *c, json_t *root, struct coord_spec *s, int nps)
{
    int rc;
    s->shards = nps > 0 ? (uint32_t)nps : COORD_SPEC_DEF_SHARDS;
    if ((rc = get_u32(c, root, "shards", "shards", COORD_SPEC_MIN_SHARDS, COORD_SPEC_MAX_SHARDS,
                      &s->shards)) < 0)
        return rc;
    if (nps > 0 && s->shards != (uint32_t)nps)
        return coord_spec__fail(c, "shards: %u, but ps.addrs names %d shard%s", s->shards, nps,
                    nps == 1 ? "" : "s");
    if (nps > 0 && s->platform.ps_nic_mbps)
        return coord_spec__fail(c, "platform.ps_nic_mbps: the shards of ps.addrs run elsewhere, on their "
                       "own network");
    s->max_shards = nps > 0 ? s->shards
                            : (s->shards > COORD_SPEC_DEF_MAX_SHARDS ? s->shards
                                                                     : COORD_SPEC_DEF_MAX_SHARDS);
    if ((rc = get_u32(c, root, "max_shards", "max_shards", COORD_SPEC_MIN_SHARDS,
                      COORD_SPEC_MAX_SHARDS, &s->max_shards)) < 0)
        return rc;
    if (s->max_shards < s->shards)
        return coord_spec__fail(c, "max_shards: %u is less than shards (%u)", s->max_shards, s->shards);
    return 0;
}

/* Deadline and budget: either, both or neither. */
static int parse_constraints(struct pctx *c, json_t *root, struct coord_spec *s)
{
    int rc;
    if ((rc = get_num(c, root, "deadline_s", "deadline_s", 0.0, COORD_SPEC_MAX_DEADLINE_S,
                      OPEN_LO, &s->deadline_s)) < 0)
        return rc;
    /* 0 is not "no budget": that is leaving the field out; a given budget must allow spending. */
    json_t *budget = field(root, "budget_usd");
    if (json_is_number(budget) && json_number_value(budget) <= 0.0) {
        char got[64];
        describe(budget, got, sizeof got);
        return coord_spec__fail(c, "budget_usd: must be > 0 (got %s); leave it out for no budget", got);
    }
    if ((rc = get_num(c, root, "budget_usd", "budget_usd", 0.0, COORD_SPEC_MAX_BUDGET_USD,
                      OPEN_LO, &s->budget_usd)) < 0)
        return rc;
    return 0;
}

/* evaluate_every_epochs and statistical_efficiency (which needs "bsp"). */
static int parse_evaluation(struct pctx *c, json_t *root, struct coord_spec *s)
{
    int rc;
    int64_t i64;
    s->evaluate_every_epochs = 1;
    if ((rc = get_int(c, root, "evaluate_every_epochs", "evaluate_every_epochs", 1,
                      COORD_SPEC_MAX_EPOCHS, &i64)) < 0)
        return rc;
    if (rc == 1)
        s->evaluate_every_epochs = (uint32_t)i64;
    if ((rc = get_bool(c, root, "statistical_efficiency", "statistical_efficiency",
                       &s->statistical_efficiency)) < 0)
        return rc;
    if (s->statistical_efficiency && s->sync != SMLT_SYNC_BSP)
        return coord_spec__fail(c, "statistical_efficiency: needs sync \"bsp\" (the shards measure the "
                       "gradient noise scale from each step's gradients and their sum; sync is "
                       "\"%s\")", sync_names[s->sync]);
    return 0;
}

/* The sections in the order their fields are checked: the first refusal wins, and a later
 * section may depend on an earlier one (the workers on the platform, the shards on ps). */
static int parse_root(struct pctx *c, json_t *root, struct coord_spec *s)
{
    int rc;
    if ((rc = check_keys(c, root, "", top_keys)) || (rc = parse_source(c, root, s)) ||
        (rc = parse_training(c, root, s)) || (rc = parse_platform_fit(c, root, s)))
        return rc;
    int nps = parse_ps(c, root, s);
    if (nps < 0)
        return nps;
    if ((rc = parse_chaos(c, root, s)) || (rc = parse_workers(c, root, s)) ||
        (rc = parse_shards(c, root, s, nps)) || (rc = parse_replicas(c, root, s)) ||
        (rc = parse_constraints(c, root, s)) ||
        (rc = parse_prices(c, root, s)) || (rc = parse_seed(c, root, s)) ||
        (rc = parse_evaluation(c, root, s)) || (rc = parse_checkpoint(c, root, s)))
        return rc;
    return 0;
}

int coord_spec_parse(const char *json, size_t len, struct coord_spec *out, char *err,
                     size_t errlen)
{
    struct pctx c = {err, errlen};
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = 0;
    if (!json || len == 0)
        return coord_spec__fail(&c, "spec: empty (expected a JSON object)");
    if (len > COORD_SPEC_MAX_JSON) {
        coord_spec__fail(&c, "spec: %zu bytes, at most %u", len, COORD_SPEC_MAX_JSON);
        return SMLT_ETOOBIG;
    }
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return coord_spec__fail(&c, "spec: invalid JSON at line %d, column %d: %s", je.line, je.column,
                    je.text);
    int rc;
    if (!json_is_object(root))
        rc = bad(&c, "spec", "a JSON object", root);
    else
        rc = parse_root(&c, root, out);
    json_decref(root);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}
