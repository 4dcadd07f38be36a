/* worker_train.c: the training loop of a worker (see worker_train.h). */
#include "worker_train.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data_fetch.h"
#include "data_load.h"
#include "data_set.h"
#include "nn_model.h"
#include "smlt_admin.h"
#include "smlt_client_int.h"
#include "smlt_log.h"
#include "smlt_util.h"
#include "worker_py.h"

#define WORKER_EVAL_BATCH 512

struct worker {
    char *data_src;
    struct worker_data_opts data_opts;
    struct data_set *train, *test;
    int test_loaded;         /* the test split was asked for (test may still be NULL: none) */
    char *model_spec;
    int batch;
    struct nn_model *m;
    struct data_set_iter *it;
    uint32_t it_rank, it_workers;
    uint64_t it_seed;
    char *ps_addrs, *token;
    char *tls_sig;           /* the TLS settings the client was made with (tls_signature()) */
    uint32_t client_rank;
    struct smlt_client *c;
    float *xb;
    int32_t *yb;
    struct worker_py *py;    /* a torch job's Python runner (warm between slices) */
};

static void rep_err(struct worker_report *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rep_err(struct worker_report *r, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    r->err_code = code;
    r->status = WORKER_FAILED;
}

static int streq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* The TLS settings as one string (malloc'd; NULL when out of memory), to tell whether a warm
 * client was made with the settings a task asks for. */
static char *tls_signature(const struct worker_tls *t)
{
    const char *f[] = {t->ca, t->cert, t->key, t->ca_pem};
    size_t n = 8;
    for (int i = 0; i < 4; i++)
        n += (f[i] ? strlen(f[i]) : 0) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%d|%s|%s|%s|%s", t->on, f[0] ? f[0] : "", f[1] ? f[1] : "",
                 f[2] ? f[2] : "", f[3] ? f[3] : "");
    return s;
}

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

struct worker *worker_new(void)
{
    return calloc(1, sizeof(struct worker));
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    smlt_client_close(w->c);
    worker_py_free(w->py);
    data_set_iter_free(w->it);
    nn_model_free(w->m);
    data_set_free(w->train);
    data_set_free(w->test);
    free(w->data_src);
    free(w->model_spec);
    free(w->ps_addrs);
    free(w->token);
    free(w->tls_sig);
    free(w->xb);
    free(w->yb);
    free(w);
}

struct nn_model *worker_model(struct worker *w)
{
    return w->m;
}

const struct data_set *worker_test_set(const struct worker *w)
{
    return w->test;
}

uint64_t worker_steps_per_epoch(size_t n, uint32_t workers, int batch)
{
    if (workers == 0 || batch <= 0)
        return 0;
    return (uint64_t)(n / workers) / (uint64_t)batch;
}

/* Resolves a path or http(s) URL to a local file (downloading URLs into the cache). */
static int local_file(const char *path, const char *cache_dir, char *out, size_t outlen, char *err,
                      size_t errlen)
{
    const char *slash = strrchr(path, '/');
    if (strncmp(path, "http://", 7) && strncmp(path, "https://", 8)) {
        snprintf(out, outlen, "%s", path);
        return 0;
    }
    if (!slash || !slash[1]) {
        snprintf(err, errlen, "%s: not a file URL", path);
        return SMLT_EINVAL;
    }
    char dir[2048];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    return data_fetch_file(dir, slash + 1, cache_dir, out, outlen, err, errlen);
}

static int load_text(int csv, const char *path, const struct data_load_opts *o,
                     struct data_set **out, char *err, size_t errlen)
{
    return csv ? data_load_csv(path, o, out, err, errlen)
               : data_load_libsvm(path, o, out, err, errlen);
}

int worker_load_data(const char *source, const char *cache_dir, const struct worker_data_opts *d,
                     struct data_set **train, struct data_set **test, char *err, size_t errlen)
{
    static const struct worker_data_opts defaults;
    struct data_set *tr = NULL, *te = NULL;
    int rc = 0;
    if (!d)
        d = &defaults;
    if (train)
        *train = NULL;
    if (test)
        *test = NULL;
    if (!source || !source[0]) {
        snprintf(err, errlen, "no dataset given");
        return SMLT_EINVAL;
    }
    struct data_load_opts o;
    data_load_opts_init(&o);
    o.label_col = d->label_col;
    o.header = d->header;
    o.train = 1;
    int csv = !strncmp(source, "csv:", 4), svm = !strncmp(source, "libsvm:", 7);
    if (!csv && !svm) {
        /* Without scaling a test split alone needs nothing from the training split. */
        if (train || d->scaling != DATA_SET_SCALE_NONE)
            rc = data_fetch_idx(source, "train", cache_dir, &o, &tr, err, errlen);
        if (!rc && test) {
            o.train = 0;
            rc = data_fetch_idx(source, "t10k", cache_dir, &o, &te, err, errlen);
            if (rc == SMLT_ENOTFOUND)
                rc = 0; /* a source without a test split: no evaluation */
        }
    } else {
        char list[4096], file[4096];
        snprintf(list, sizeof list, "%s", source + (csv ? 4 : 7));
        char *comma = strchr(list, ',');
        if (comma)
            *comma = '\0';
        rc = local_file(list, cache_dir, file, sizeof file, err, errlen);
        if (!rc)
            rc = load_text(csv, file, &o, &tr, err, errlen);
        if (!rc && comma && test) {
            /* The test file must match the training set's shape. */
            o.train = 0;
            o.dim = data_set_dim(tr);
            o.num_classes = data_set_num_classes(tr);
            rc = local_file(comma + 1, cache_dir, file, sizeof file, err, errlen);
            if (!rc)
                rc = load_text(csv, file, &o, &te, err, errlen);
        }
    }
    if (!rc && tr && (rc = data_set_scale(tr, te, d->scaling)) < 0)
        snprintf(err, errlen, "scaling the features: %s", smlt_strerror(rc));
    if (rc) {
        data_set_free(tr);
        data_set_free(te);
        return rc;
    }
    if (train)
        *train = tr;
    else
        data_set_free(tr);
    if (test)
        *test = te;
    else
        data_set_free(te);
    return 0;
}

int worker_data_opts_set(struct worker_data_opts *o, const char *key, const char *val,
                         char *err, size_t errlen)
{
    static const char *const headers[] = {"auto", "true", "false"};   /* enum data_load_header */
    static const char *const scales[] = {"none", "minmax", "standard"}; /* data_set_scaling */
    const char *const *names = NULL;
    int *dst = NULL;
    if (!strcmp(key, "label_column")) {
        if (!strcmp(val, "last")) {
            o->label_col = -1;
            return 0;
        }
        char *end;
        long v = strtol(val, &end, 10);
        if (end != val && !*end && v >= 0 && v < DATA_SET_MAX_DIM) {
            o->label_col = (int)v;
            return 0;
        }
        snprintf(err, errlen, "label_column: must be a column index >= 0 or \"last\" (got "
                 "\"%.40s\")", val);
        return SMLT_EINVAL;
    }
    if (!strcmp(key, "header")) {
        names = headers;
        dst = &o->header;
    } else if (!strcmp(key, "scale")) {
        names = scales;
        dst = &o->scaling;
    } else {
        snprintf(err, errlen, "%.40s: unknown dataset option", key);
        return SMLT_EINVAL;
    }
    for (int i = 0; i < 3; i++)
        if (!strcmp(val, names[i])) {
            *dst = i;
            return 0;
        }
    snprintf(err, errlen, "%s: must be \"%s\", \"%s\" or \"%s\" (got \"%.40s\")", key,
             names[0], names[1], names[2], val);
    return SMLT_EINVAL;
}

int worker_check_fit(const struct nn_model *m, const char *spec, const struct data_set *ds,
                     char *err, size_t errlen)
{
    int dim = data_set_dim(ds), classes = data_set_num_classes(ds);
    if (dim != nn_model_input_dim(m)) {
        snprintf(err, errlen, "model %s takes %d features, the dataset's rows have %d", spec,
                 nn_model_input_dim(m), dim);
        return SMLT_EINVAL;
    }
    if (classes > nn_model_num_classes(m)) {
        int top = 0;
        const int32_t *y = data_set_y(ds);
        for (size_t i = 0; i < data_set_size(ds); i++)
            top = y[i] > top ? y[i] : top;
        snprintf(err, errlen, "model %s has %d outputs (classes 0..%d), but the dataset's labels "
                 "run up to %d: the model needs at least %d outputs", spec,
                 nn_model_num_classes(m), nn_model_num_classes(m) - 1, top, classes);
        return SMLT_EINVAL;
    }
    return 0;
}

/* Checks that the job on the shards is this model: same tensors, same layout. */
static int check_layout(struct worker *w, struct worker_report *r)
{
    size_t n = nn_model_num_params(w->m);
    if (smlt_client_num_params(w->c) != n) {
        rep_err(r, SMLT_EINVAL, "the job on the shards has %llu parameters, model %s has %zu",
                (unsigned long long)smlt_client_num_params(w->c), w->model_spec, n);
        return SMLT_EINVAL;
    }
    uint32_t nt = smlt_client_num_tensors(w->c);
    if ((int)nt != nn_model_num_tensors(w->m)) {
        rep_err(r, SMLT_EINVAL, "the job on the shards has %u tensors, the model %d", nt,
                nn_model_num_tensors(w->m));
        return SMLT_EINVAL;
    }
    for (uint32_t i = 0; i < nt; i++) {
        struct smlt_tensor_info ti;
        const struct nn_spec_tensor *mi = nn_model_tensor(w->m, (int)i);
        smlt_client_tensor(w->c, i, &ti);
        if (strcmp(ti.name, mi->name) || ti.offset != mi->offset || ti.length != mi->length) {
            rep_err(r, SMLT_EINVAL, "tensor %u is %s on the shards, %s in the model", i, ti.name,
                    mi->name);
            return SMLT_EINVAL;
        }
    }
    return 0;
}

/* Makes data, model, iterator and connection match the task, reusing what it can. */
static int prepare(struct worker *w, const struct worker_task *t, struct worker_report *r)
{
    char err[256] = "";
    int rc;
    if (!w->train || !streq(w->data_src, t->data) ||
        memcmp(&w->data_opts, &t->data_opts, sizeof w->data_opts)) {
        data_set_free(w->train);
        data_set_free(w->test);
        w->train = w->test = NULL;
        w->test_loaded = 0;
        data_set_iter_free(w->it);
        w->it = NULL;
        r->cold = 1;
        /* The test split only where this task evaluates (rank 0): the others skip it. */
        rc = worker_load_data(t->data, t->cache_dir, &t->data_opts, &w->train,
                              t->evaluate ? &w->test : NULL, err, sizeof err);
        if (rc) {
            rep_err(r, rc, "dataset: %s", err); /* err names the file */
            return rc;
        }
        w->test_loaded = t->evaluate;
        set_str(&w->data_src, t->data);
        w->data_opts = t->data_opts;
    }
    if (t->evaluate && !w->test_loaded) {
        rc = worker_load_data(t->data, t->cache_dir, &t->data_opts, NULL, &w->test, err,
                              sizeof err);
        if (rc) {
            rep_err(r, rc, "dataset: %s", err);
            return rc;
        }
        w->test_loaded = 1;
    }
    if (!w->m || !streq(w->model_spec, t->model) || w->batch != t->batch) {
        nn_model_free(w->m);
        data_set_iter_free(w->it);
        w->it = NULL;
        r->cold = 1;
        /* Buffers for batches of up to 512: training uses t->batch of them, evaluation all
         * (a pass over the test set in big batches is several times faster, and rank 0's
         * evaluation is time the other ranks wait for at an epoch's end). */
        w->m = nn_model_new(t->model, t->batch > WORKER_EVAL_BATCH ? t->batch : WORKER_EVAL_BATCH,
                            err, sizeof err);
        if (!w->m) {
            rep_err(r, SMLT_EINVAL, "model %s: %s", t->model, err);
            return SMLT_EINVAL;
        }
        set_str(&w->model_spec, t->model);
        w->batch = t->batch;
        free(w->xb);
        free(w->yb);
        w->xb = malloc(sizeof *w->xb * (size_t)t->batch * (size_t)nn_model_input_dim(w->m));
        w->yb = malloc(sizeof *w->yb * (size_t)t->batch);
        if (!w->xb || !w->yb) {
            rep_err(r, SMLT_ENOMEM, "out of memory for batch buffers");
            return SMLT_ENOMEM;
        }
    }
    if (worker_check_fit(w->m, t->model, w->train, err, sizeof err) < 0) {
        rep_err(r, SMLT_EINVAL, "%s", err);
        return SMLT_EINVAL;
    }
    if (!w->it || w->it_rank != t->rank || w->it_workers != t->workers || w->it_seed != t->seed) {
        data_set_iter_free(w->it);
        w->it = data_set_iter_new(w->train, (int)t->rank, (int)t->workers, t->seed, t->batch,
                                  DATA_SET_DROP_LAST);
        if (!w->it) {
            rep_err(r, SMLT_EINVAL, "cannot split %zu rows into %u partitions of batches of %d",
                    data_set_size(w->train), t->workers, t->batch);
            return SMLT_EINVAL;
        }
        w->it_rank = t->rank;
        w->it_workers = t->workers;
        w->it_seed = t->seed;
    }
    char *sig = tls_signature(&t->tls);
    if (!sig) {
        rep_err(r, SMLT_ENOMEM, "out of memory");
        return SMLT_ENOMEM;
    }
    if (!w->c || !streq(w->ps_addrs, t->ps_addrs) || !streq(w->token, t->token) ||
        w->client_rank != t->rank || !streq(w->tls_sig, sig)) {
        smlt_client_close(w->c);
        w->c = NULL;
        r->cold = 1;
        struct smlt_client_opts o = {.token = t->token, .worker = t->rank,
                                     .timeout_ms = t->timeout_ms, .tls = t->tls.on,
                                     .tls_ca = t->tls.ca, .tls_ca_pem = t->tls.ca_pem,
                                     .tls_cert = t->tls.cert, .tls_key = t->tls.key};
        rc = smlt_client_connect(&w->c, t->ps_addrs, &o, err, sizeof err);
        if (rc) {
            free(sig);
            rep_err(r, rc, "parameter server %s: %s", t->ps_addrs, err);
            return rc;
        }
        set_str(&w->ps_addrs, t->ps_addrs);
        set_str(&w->token, t->token);
        free(w->tls_sig);
        w->tls_sig = sig;
        sig = NULL;
        w->client_rank = t->rank;
        if ((rc = check_layout(w, r)) != 0) {
            smlt_client_close(w->c);
            w->c = NULL;
            return rc;
        }
    }
    free(sig); /* NULL when the client took it */
    return 0;
}

/* The step schedule's learning rate for step s (worker_task.lr_decay_step). */
static float scheduled_lr(const struct worker_task *t, uint64_t s)
{
    float lr = t->lr;
    for (uint64_t k = s / t->lr_decay_step; k > 0; k--)
        lr *= t->lr_decay;
    return lr;
}

/* The clock a pull must wait for before computing step s. */
static uint64_t need_clock(const struct worker_task *t, uint64_t s)
{
    if (t->sync == SMLT_SYNC_BSP)
        return s;
    if (t->sync == SMLT_SYNC_SSP)
        return s > t->staleness ? s - t->staleness : 0;
    return 0;
}

/* A call that failed with SMLT_ETIMEDOUT because the slice's stop-by time (plus the second
 * smlt_client__set_deadline() adds) came: the slice is over, which is not an error. */
static int slice_over(const struct worker_task *t, int rc)
{
    return rc == SMLT_ETIMEDOUT && t->deadline > 0 && smlt_now_mono() >= t->deadline;
}

int worker_run(struct worker *w, const struct worker_task *t, struct worker_report *r,
               worker_progress_fn progress, void *arg)
{
    double t0 = smlt_now_mono();
    memset(r, 0, sizeof *r);
    r->eval_epoch = -1;
    r->next_step = t->start_step;
    if (!t->model || !t->data || !t->ps_addrs || !t->token || t->batch < 1 || t->workers < 1 ||
        t->rank >= t->workers || t->sync < SMLT_SYNC_BSP || t->sync > SMLT_SYNC_ASP) {
        rep_err(r, SMLT_EINVAL, "task needs model, data, PS addresses, token, batch >= 1, "
                                "rank < workers and a sync mode");
        return SMLT_EINVAL;
    }
    if (!strncmp(t->model, "python:", 7)) {
        /* A torch job: its training file runs in the Python child (worker_py.h). */
        char file[4096];
        int rc = worker_py_source_file(t->model, t->model_source, file, sizeof file, r->err,
                                       sizeof r->err);
        if (rc) {
            r->status = WORKER_FAILED;
            r->err_code = rc;
            return rc;
        }
        return worker_py_run(&w->py, t, file, r, progress, arg);
    }
    if (w->c)
        smlt_client__set_deadline(w->c, 0); /* a warm client: the last slice's is over */
    int rc = prepare(w, t, r);
    r->init_s = smlt_now_mono() - t0;
    /* No call of the slice waits past its stop-by time (and a second for the report): a shard
     * that has gone must not hold the instance until the client's own timeout. */
    if (!rc && w->c && t->deadline > 0)
        smlt_client__set_deadline(w->c, t->deadline + 1.0);
    if (rc) {
        r->elapsed_s = smlt_now_mono() - t0;
        return rc;
    }
    uint64_t spe = worker_steps_per_epoch(data_set_size(w->train), t->workers, t->batch);
    r->steps_per_epoch = spe;
    if (spe == 0) {
        rep_err(r, SMLT_EINVAL, "%zu rows over %u workers give no full batch of %d",
                data_set_size(w->train), t->workers, t->batch);
        return SMLT_EINVAL;
    }
    if (t->start_step < t->step_base) {
        rep_err(r, SMLT_EINVAL, "start step %llu is before the phase's first step %llu",
                (unsigned long long)t->start_step, (unsigned long long)t->step_base);
        return SMLT_EINVAL;
    }
    uint64_t s = t->start_step;
    uint64_t end = t->total_steps;
    if (t->max_steps && s + t->max_steps < end)
        end = s + t->max_steps;
    float *params = nn_model_params(w->m), *grads = nn_model_grads(w->m);
    uint64_t clock = 0;
    int wait_ms = t->timeout_ms > 0 ? t->timeout_ms : 60000;
    double tc = smlt_now_mono();
    rc = smlt_pull(w->c, need_clock(t, s), wait_ms, params, &clock);
    r->comm_s += smlt_now_mono() - tc;
    if (slice_over(t, rc)) {
        /* Its peers had not got there before its time was up: a slice of no steps. */
        r->elapsed_s = smlt_now_mono() - t0;
        r->next_step = s;
        r->status = WORKER_TIME_UP;
        return 0;
    }
    if (rc) {
        rep_err(r, rc, "initial pull: %s", smlt_client_errmsg(w->c));
        r->elapsed_s = smlt_now_mono() - t0;
        return rc;
    }
    double loss_sum = 0, step_ema = 0;
    uint64_t loss_n = 0;
    double prev_loss = -1;
    int time_up = 0, stop = 0;
    while (s < end && !stop) {
        double ts = smlt_now_mono();
        /* Stop cleanly while there is surely time for one more step and the report. */
        if (t->deadline > 0 && ts + 2.0 * step_ema + 0.05 > t->deadline) {
            time_up = 1;
            break;
        }
        /* Rank 0 sets the schedule's rate before pushing step s, and step s cannot be applied
         * without that push, so every update from step s on uses it. Idempotent: a replacement
         * rank 0 that starts mid-schedule sets the same value again. */
        if (t->lr_decay_step && t->rank == 0 && s >= t->lr_decay_step &&
            (s % t->lr_decay_step == 0 || s == t->start_step)) {
            float lr = scheduled_lr(t, s);
            if ((rc = smlt_update_conf(w->c, &lr, NULL, NULL)) != 0) {
                rep_err(r, rc, "step %llu: setting the learning rate: %s", (unsigned long long)s,
                        smlt_client_errmsg(w->c));
                break;
            }
        }
        uint64_t local = s - t->step_base;
        int64_t e = (int64_t)(t->epoch_base + local / spe), b = (int64_t)(local % spe), ce, cb;
        data_set_iter_cursor(w->it, &ce, &cb);
        if ((ce != e || cb != b) && (rc = data_set_iter_seek(w->it, e, b)) != 0) {
            rep_err(r, rc, "cannot seek the data to epoch %lld batch %lld", (long long)e, (long long)b);
            break;
        }
        int n = data_set_iter_next(w->it, w->xb, w->yb, NULL);
        if (n < 1) {
            rep_err(r, n, "no batch at epoch %lld batch %lld", (long long)e, (long long)b);
            rc = n;
            break;
        }
        float loss = 0;
        rc = nn_model_train_batch(w->m, w->xb, w->yb, n, &loss);
        if (t->chaos_delay_us) {
            struct timespec d = {t->chaos_delay_us / 1000000, (long)(t->chaos_delay_us % 1000000) * 1000};
            nanosleep(&d, NULL);
        }
        double tb = smlt_now_mono();
        r->compute_s += tb - ts;
        if (rc) {
            rep_err(r, rc, "training step failed");
            break;
        }
        if (t->sync == SMLT_SYNC_BSP) {
            rc = smlt_sync(w->c, s, grads, params, &clock);
        } else {
            rc = smlt_push(w->c, s, grads);
            if (!rc)
                rc = smlt_pull(w->c, need_clock(t, s + 1), wait_ms, params, &clock);
        }
        double tn = smlt_now_mono();
        r->comm_s += tn - tb;
        if (rc == SMLT_ECANCELED) {
            /* The job stops here (the shards refuse this step for every worker): a clean end
             * of the slice at step s, which is not done. The refused step's time is not a
             * step's (compute and communication are reported per step trained): take it out,
             * so it counts as time outside training steps. */
            r->compute_s -= tb - ts;
            r->comm_s -= tn - tb;
            log_info("worker %u: the shards end this slice at step %llu (the job stops or "
                     "changes there)",
                     t->rank, (unsigned long long)s);
            rc = 0;
            break;
        }
        if (slice_over(t, rc)) {
            /* The slice's time ran out inside the step (waiting for the slowest rank, or for
             * a shard that has gone): it ends at step s, not done. Its push, if the shard
             * counted it, is acknowledged as a duplicate when the next slice pushes s again. */
            r->compute_s -= tb - ts;
            r->comm_s -= tn - tb;
            time_up = 1;
            rc = 0;
            break;
        }
        if (rc == SMLT_ESTEP) {
            /* The step closed without us (the job moved on, e.g. the worker count changed):
             * catch up with the current model and continue from its clock. */
            rc = smlt_pull(w->c, 0, wait_ms, params, &clock);
            if (!rc && clock > s) {
                log_info("worker %u: step %llu closed without us; continuing at %llu", t->rank,
                         (unsigned long long)s, (unsigned long long)clock);
                s = clock;
                continue;
            }
            rc = rc ? rc : SMLT_ESTEP;
        }
        if (rc) {
            rep_err(r, rc, "step %llu: %s", (unsigned long long)s, smlt_client_errmsg(w->c));
            break;
        }
        s++;
        r->steps++;
        r->samples += (uint64_t)n;
        /* The mean over this epoch's steps so far (a slice may span epochs); the last epoch's
         * until a tenth of this one is done, so a report just past a boundary is not one
         * step's loss. */
        loss_sum += loss;
        loss_n++;
        if (prev_loss < 0 || loss_n * 10 >= spe)
            r->loss = loss_sum / (double)loss_n;
        double dt = smlt_now_mono() - ts;
        step_ema = step_ema == 0 ? dt : 0.8 * step_ema + 0.2 * dt;
        r->next_step = s;
        int epoch_end = (s - t->step_base) % spe == 0;
        if (t->evaluate && w->test &&
            (epoch_end || (t->eval_every && s % t->eval_every == 0))) {
            double te = smlt_now_mono();
            rc = nn_model_evaluate(w->m, w->test, &r->test_acc, &r->test_loss);
            r->eval_s += smlt_now_mono() - te;
            if (rc) {
                rep_err(r, rc, "evaluation failed");
                break;
            }
            r->eval_step = s;
            if (epoch_end)
                r->eval_epoch = (int64_t)(t->epoch_base + (s - t->step_base) / spe) - 1;
        }
        if (epoch_end) {
            prev_loss = loss_sum / (double)loss_n;
            r->loss = prev_loss;
            loss_sum = 0;
            loss_n = 0;
        }
        if (t->stop_at_epoch_end && epoch_end)
            stop = 1;
        r->elapsed_s = smlt_now_mono() - t0;
        if (progress && progress(r, arg))
            stop = 1;
    }
    r->elapsed_s = smlt_now_mono() - t0;
    r->next_step = s;
    if (r->status == WORKER_FAILED)
        return r->err_code;
    r->status = s >= t->total_steps ? WORKER_DONE : time_up ? WORKER_TIME_UP : WORKER_SLICE_END;
    return 0;
}
