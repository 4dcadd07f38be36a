/* coord.c: the coordinator's API (coord.h) and its list of jobs: submitting, cancelling,
 * scaling and checkpointing a job, the paths of its files, and making and freeing the
 * coordinator (which restores the history of earlier jobs: coord_restore.c). */
#include "coord_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord_pool.h"
#include "smlt_client_int.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_tls.h"

struct coord_job *job_find(struct coord *c, const char *id)
{
    for (struct coord_job *j = c->jobs; j; j = j->next)
        if (!strcmp(j->id, id))
            return j;
    return NULL;
}

struct coord_job *job_alloc(struct coord *c, const char *id)
{
    struct coord_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->c = c;
    snprintf(j->id, sizeof j->id, "%s", id);
    j->epoch_done = -1;
    j->log_fd = -1;
    j->end_state = JOB_SUCCEEDED;
    j->series = json_array();
    j->events = json_array();
    j->state = JOB_QUEUED;
    snprintf(j->dir, sizeof j->dir, "%s/jobs/%s", c->data_dir, id);
    snprintf(j->model_path, sizeof j->model_path, "%s/model.smlt", j->dir);
    snprintf(j->log_path, sizeof j->log_path, "%s/job.log", j->dir);
    j->next = c->jobs;
    c->jobs = j;
    return j;
}

void job_free(struct coord_job *j)
{
    for (uint32_t k = 0; j->ranks && k < j->cap; k++) {
        if (j->ranks[k].retry_ev)
            event_free(j->ranks[k].retry_ev);
        if (j->ranks[k].end_ev)
            event_free(j->ranks[k].end_ev);
    }
    free(j->ranks);
    if (j->tick_ev)
        event_free(j->tick_ev);
    if (j->start_ev)
        event_free(j->start_ev);
    if (j->admin_free_ev)
        event_free(j->admin_free_ev);
    coord_admin_free(j->admin);
    sched_free(j->sched);
    coord_journal_close(j->journal);
    if (j->log_fd >= 0)
        close(j->log_fd);
    json_decref(j->series);
    json_decref(j->profile);
    json_decref(j->events);
    json_decref(j->ps_stats);
    json_decref(j->spec_json);
    json_decref(j->adopt);
    free(j->model_source);
    free(j);
}

/* A torch job's training file: the spec's model_source, else the file its model names (read
 * here, on the coordinator's machine: a small local file). Returns it (free() it), or NULL
 * with a message in err. */
static char *job_source(const struct coord_spec *spec, const char *json, size_t len, char *err,
                        size_t errlen)
{
    json_t *root = json_loadb(json, len, 0, NULL);
    const char *src = json_string_value(json_object_get(root, "model_source"));
    char *text = src ? strdup(src) : NULL;
    int given = src != NULL;
    json_decref(root);
    if (given) {
        if (!text)
            snprintf(err, errlen, "out of memory");
        return text;
    }
    const char *file = spec->model + 7;
    if (!(text = smlt_file_read(file, COORD_SPEC_SOURCE_MAX, NULL)))
        snprintf(err, errlen, "model: cannot read the training file %s: %s (give its text as "
                 "model_source, as `smltctl submit --model python:FILE.py` does)", file,
                 errno == E2BIG ? "larger than 48 KiB" : strerror(errno));
    return text;
}

int coord_submit(struct coord *c, const char *json, size_t len, char *id, size_t idlen, char *err,
                 size_t errlen)
{
    struct coord_spec *spec = malloc(sizeof *spec);
    if (!spec)
        return SMLT_ENOMEM;
    int rc = coord_spec_parse(json, len, spec, err, errlen);
    if (rc) {
        c->refused++;
        free(spec);
        return rc == SMLT_ETOOBIG ? SMLT_EINVAL : rc;
    }
    char *source = NULL;
    if (coord_spec_is_python(spec->model) && !(source = job_source(spec, json, len, err, errlen))) {
        c->refused++;
        free(spec);
        return SMLT_EINVAL;
    }
    if (spec->platform.kind != c->platform) {
        snprintf(err, errlen, "platform.kind: \"%s\" is not served by this coordinator, which "
                              "runs its workers on \"%s\" (smlt-coordinator --platform)",
                 coord_spec_platform_name(spec->platform.kind), coord_spec_platform_name(c->platform));
        c->refused++;
        free(spec);
        free(source);
        return SMLT_EINVAL;
    }
    char jid[JOB_ID_MAX];
    snprintf(jid, sizeof jid, "job-%04u", ++c->next_seq);
    struct coord_job *j = job_alloc(c, jid);
    if (!j) {
        free(spec);
        free(source);
        return SMLT_ENOMEM;
    }
    j->model_source = source; /* job_free() frees it */
    j->spec = *spec;
    free(spec);
    j->have_spec = 1;
    j->epochs_target = j->spec.max_epochs;
    j->ref_workers = j->spec.workers;
    j->spec_json = coord_spec_to_json_redacted(&j->spec);
    coord_ledger_init(&j->ledger);
    j->journal = coord_journal_open(c->data_dir, jid, err, errlen);
    if (!j->journal) {
        c->jobs = j->next;
        job_free(j);
        return SMLT_EIO;
    }
    if (j->model_source) {
        /* Kept with the job: its shards are set up from it, and a restarted coordinator
         * reads it back (coord_restore.c). */
        char path[1200];
        snprintf(path, sizeof path, "%s/model.py", j->dir);
        if (smlt_write_file_atomic(path, j->model_source, strlen(j->model_source), 0644) != 0) {
            snprintf(err, errlen, "cannot keep the training file in %s: %s", path,
                     strerror(errno));
            c->jobs = j->next;
            job_free(j);
            return SMLT_EIO;
        }
    }
    j->log_fd = open(j->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    j->submitted_unix = smlt_now_unix();
    json_t *full = coord_spec_to_json(&j->spec);
    json_t *rec = json_pack("{s:s, s:o, s:f}", "id", jid, "spec", full, "submitted", j->submitted_unix);
    coord_journal_append(j->journal, "submitted", rec, 1);
    json_decref(rec);
    job_log(j, "submitted: %s on %s, %u workers, %u shards%s%s", j->spec.model, j->spec.dataset,
            j->spec.workers, j->spec.shards, j->spec.deadline_s > 0 ? ", with a deadline" : "",
            j->spec.budget_usd > 0 ? ", with a budget" : "");
    c->submitted++;
    j->start_ev = evtimer_new(c->base, job_on_start, j);
    struct timeval tv = {0, 0};
    evtimer_add(j->start_ev, &tv);
    snprintf(id, idlen, "%s", jid);
    return 0;
}

int coord_cancel(struct coord *c, const char *id, coord_done_fn cb, void *arg, char *err,
                 size_t errlen)
{
    struct coord_job *j = job_find(c, id);
    if (!j) {
        snprintf(err, errlen, "no job %s", id);
        return SMLT_ENOTFOUND;
    }
    if (job_ended(j)) {
        snprintf(err, errlen, "job %s has already ended (%s)", id, job_state_names[j->state]);
        return SMLT_EINVAL;
    }
    if (j->finishing || j->end_cb) {
        snprintf(err, errlen, "job %s is already being stopped", id);
        return SMLT_EINVAL;
    }
    if (j->state == JOB_QUEUED && j->start_ev)
        evtimer_del(j->start_ev);
    j->end_cb = cb;
    j->end_arg = arg;
    job_event(j, "cancel", "canceled on request at step %llu", (unsigned long long)j->step);
    job_finish(j, JOB_CANCELED, "canceled on request");
    return 0;
}

int coord_scale(struct coord *c, const char *id, unsigned workers, unsigned shards, char *err,
                size_t errlen)
{
    struct coord_job *j = job_find(c, id);
    if (!j) {
        snprintf(err, errlen, "no job %s", id);
        return SMLT_ENOTFOUND;
    }
    if (j->state != JOB_RUNNING) {
        snprintf(err, errlen, "job %s is %s, not running", id, job_state_names[j->state]);
        return SMLT_EINVAL;
    }
    if (workers && (workers < 1 || workers > j->cap)) {
        snprintf(err, errlen, "workers: %u is outside 1..%u (the job's max_workers)", workers,
                 j->cap);
        return SMLT_EINVAL;
    }
    if (shards && (shards > j->spec.max_shards || shards > COORD_SHARDS_MAX)) {
        snprintf(err, errlen, "shards: %u is more than the job's max_shards (%u)", shards,
                 j->spec.max_shards);
        return SMLT_EINVAL;
    }
    if (shards && shards != j->shards.n && !j->shards.local) {
        snprintf(err, errlen, "shards: the job's shards run elsewhere; their count is fixed");
        return SMLT_EINVAL;
    }
    if (workers)
        j->pending_workers = workers;
    if (shards)
        j->pending_shards = shards;
    job_event(j, "scale", "manual override: %u workers, %u shards requested; applied at the next "
                          "epoch boundary",
              workers ? workers : j->workers, shards ? shards : j->shards.n);
    job_request_barrier(j, "a manual scale");
    return 0;
}

struct checkpoint_call {
    coord_done_fn cb;
    void *arg;
};

static void on_checkpoint_saved(struct coord_job *j, int rc, const char *err, void *arg)
{
    struct checkpoint_call cc = *(struct checkpoint_call *)arg;
    free(arg);
    cc.cb(j->c, j->id, rc, rc ? NULL : j->model_path, rc ? err : NULL, cc.arg);
}

int coord_checkpoint(struct coord *c, const char *id, coord_done_fn cb, void *arg, char *path,
                     size_t pathlen, char *err, size_t errlen)
{
    struct coord_job *j = job_find(c, id);
    if (!j) {
        snprintf(err, errlen, "no job %s", id);
        return SMLT_ENOTFOUND;
    }
    if (j->state != JOB_RUNNING || j->finishing) {
        if (j->model_saved && job_ended(j)) {
            snprintf(path, pathlen, "%s", j->model_path);
            return 1;
        }
        snprintf(err, errlen, "job %s is %s and has no saved model", id,
                 j->finishing ? "ending" : job_state_names[j->state]);
        return SMLT_EINVAL;
    }
    struct checkpoint_call *cc = malloc(sizeof *cc);
    if (!cc) {
        snprintf(err, errlen, "out of memory");
        return SMLT_ENOMEM;
    }
    *cc = (struct checkpoint_call){cb, arg};
    job_save_model(j, on_checkpoint_saved, cc);
    return 0;
}

const char *coord_job_model_path(struct coord *c, const char *id)
{
    struct coord_job *j = job_find(c, id);
    return j ? j->model_path : NULL;
}

const char *coord_job_log_path(struct coord *c, const char *id)
{
    struct coord_job *j = job_find(c, id);
    return j ? j->log_path : NULL;
}

const char *coord_rpc_address(const struct coord *c)
{
    return coord_rpc_addr(c->rpc);
}

/* The worker RPC's listener. Where its port is left to us (":0"), it is the one used before a
 * restart when that one is free again: worker instances that outlived the old coordinator
 * dial that address to finish their slices (coord_adopt.c). The port is kept in
 * DATA_DIR/rpc.addr. */
static struct coord_rpc *rpc_listen(struct coord *c, const char *want, char *err, size_t errlen)
{
    char path[1100], addr[160];
    snprintf(path, sizeof path, "%s/rpc.addr", c->data_dir);
    const char *colon = strrchr(want, ':');
    struct coord_rpc *r = NULL;
    if (colon && !strcmp(colon + 1, "0")) {
        char *prev = smlt_token_read(path);
        const char *pc = prev ? strrchr(prev, ':') : NULL;
        if (pc && atoi(pc + 1) > 0) {
            snprintf(addr, sizeof addr, "%.*s:%d", (int)(colon - want), want, atoi(pc + 1));
            r = coord_rpc_new(c->base, addr, &coord_rank_rpc, c, err, errlen);
            if (!r)
                log_warn("worker RPC: the port used before the restart is taken (%s); worker "
                         "instances still running from before cannot reconnect, and their "
                         "ranks are invoked again",
                         err);
        }
        free(prev);
    }
    if (!r)
        r = coord_rpc_new(c->base, want, &coord_rank_rpc, c, err, errlen);
    if (!r)
        return NULL;
    const char *port = strrchr(coord_rpc_addr(r), ':');
    snprintf(addr, sizeof addr, "%.*s%s\n", colon ? (int)(colon - want) : 0, want,
             port ? port : ":0");
    if (smlt_write_file_atomic(path, addr, strlen(addr), 0644) != 0)
        log_warn("cannot write %s: %s", path, strerror(errno));
    return r;
}

/* Reads the CA file for the invocations (at most SMLT_MAX_TLS_CA_PEM bytes). Returns 0 or
 * SMLT_EINVAL with a message in err. */
static int read_ca_pem(struct coord *c, const char *path, char *err, size_t errlen)
{
    size_t n = 0;
    char *buf = smlt_file_read(path, SMLT_MAX_TLS_CA_PEM, &n);
    if (!buf || n == 0) {
        snprintf(err, errlen, "--tls-ca %s: %s", path,
                 buf ? "the file is empty"
                 : errno == E2BIG ? "over 32 KiB (workers get it in every invocation)"
                                  : strerror(errno));
        free(buf);
        return SMLT_EINVAL;
    }
    c->tls_ca_pem = buf;
    return 0;
}

/* The TLS contexts of conf's tls_* options (none given: plain TCP, nothing to do). Returns 0
 * or SMLT_EINVAL with a message in err that names the option or the file. */
static int tls_setup(struct coord *c, const struct coord_conf *conf, char *err, size_t errlen)
{
    if (!conf->tls_cert && !conf->tls_key && !conf->tls_ca && !conf->tls_verify_client)
        return 0;
    if (!conf->tls_cert || !conf->tls_key) {
        snprintf(err, errlen, "TLS needs both --tls-cert and --tls-key (--tls-ca and "
                              "--tls-verify-client go with them)");
        return SMLT_EINVAL;
    }
    char msg[512];
    struct smlt_tls_conf sc = {.cert = conf->tls_cert, .key = conf->tls_key, .ca = conf->tls_ca,
                               .verify_client = conf->tls_verify_client};
    /* As a client of its shards it presents the same certificate (mutual TLS). */
    struct smlt_tls_conf cc = {.cert = conf->tls_cert, .key = conf->tls_key, .ca = conf->tls_ca};
    if (smlt_tls_server_new(&c->tls_server, &sc, msg, sizeof msg) != 0 ||
        smlt_tls_client_new(&c->tls_client, &cc, msg, sizeof msg) != 0) {
        snprintf(err, errlen, "TLS: %s", msg);
        return SMLT_EINVAL;
    }
    if (conf->tls_ca && read_ca_pem(c, conf->tls_ca, err, errlen) != 0)
        return SMLT_EINVAL;
    if (coord_shards_set_tls(conf->tls_cert, conf->tls_key, conf->tls_ca, conf->tls_verify_client,
                             err, errlen) != 0)
        return SMLT_EINVAL;
    /* Every call to the shards (the admin queues, job setup) goes through libsmlt clients:
     * they all speak TLS now. */
    smlt_client_set_default_tls(c->tls_client);
    return 0;
}

struct smlt_tls *coord_tls_server(struct coord *c)
{
    return c->tls_server;
}

/* The function platform conf names: the embedded runtime, or a backend over the network. */
static struct coord_backend *backend_new(struct coord *c, const struct coord_conf *conf, char *err,
                                         size_t errlen)
{
    const char *p = conf->platform ? conf->platform : "local";
    unsigned conc = conf->concurrency ? conf->concurrency : 64;
    struct coord_backend *b = NULL;
    c->platform = -1;
    for (int k = COORD_PLATFORM_LOCAL; k <= COORD_PLATFORM_KNATIVE; k++)
        if (!strcmp(p, coord_spec_platform_name(k)))
            c->platform = k;
    if (c->platform == COORD_PLATFORM_LOCAL) {
        struct coord_backend_local_conf bc = {.worker_bin = c->worker_bin, .concurrency = conc,
                                              .keep_warm_s = conf->keep_warm_s > 0 ? conf->keep_warm_s : 60,
                                              .memory_limit = !conf->no_memory_limit};
        b = coord_backend_local_new(c->base, &bc);
        if (!b)
            snprintf(err, errlen, "cannot create the local function runtime");
    } else if (c->platform == COORD_PLATFORM_OPENFAAS || c->platform == COORD_PLATFORM_KNATIVE) {
        int kn = c->platform == COORD_PLATFORM_KNATIVE;
        struct coord_backend_http_conf hc = {.knative = kn,
                                             .url = kn ? conf->function_url : conf->gateway,
                                             .function = conf->function, .concurrency = conc,
                                             .async = conf->openfaas_async,
                                             .callback_url = conf->callback_url};
        b = coord_backend_http_new(c->base, &hc, err, errlen);
    } else if (c->platform == COORD_PLATFORM_LAMBDA) {
        struct coord_backend_lambda_conf lc = {.function = conf->function, .region = conf->region,
                                               .qualifier = conf->qualifier,
                                               .endpoint = conf->lambda_endpoint,
                                               .concurrency = conc};
        b = coord_backend_lambda_new(c->base, &lc, err, errlen);
    } else {
        snprintf(err, errlen, "--platform: \"%s\" is not one of local, lambda, openfaas, knative", p);
    }
    return b;
}

int coord_callback(struct coord *c, const struct coord_inv_callback *cb, char *err,
                   size_t errlen)
{
    int rc = coord_backend_callback(c->backend, cb, err, errlen);
    if (rc && !coord_backend_takes_callbacks(c->backend))
        c->callbacks_unserved++; /* (a backend that takes callbacks counts its refusals) */
    return rc;
}

int coord_set_callback_base(struct coord *c, const char *listen, int port, char *err,
                            size_t errlen)
{
    if (!coord_backend_takes_callbacks(c->backend))
        return 0;
    const char *colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
    static const char *const wild[] = {"", "0.0.0.0", "[::]", "::", "*", "[::0]", NULL};
    for (int i = 0; wild[i]; i++) {
        if (n == strlen(wild[i]) && !strncmp(listen, wild[i], n)) {
            snprintf(err, errlen, "--openfaas-async: --listen %s is a wildcard address, which the "
                                  "gateway's queue-worker cannot call back: give --callback-url "
                                  "http://ADDRESS:PORT that it can reach", listen);
            return SMLT_EINVAL;
        }
    }
    char url[600];
    /* The API's own scheme: HTTPS when it serves TLS. */
    snprintf(url, sizeof url, "http%s://%.*s:%d", coord_tls_server(c) ? "s" : "", (int)n, listen,
             port);
    int rc = coord_backend_set_callback_base(c->backend, url, err, errlen);
    if (rc == 0)
        log_info("openfaas: asynchronous invocations, called back at %s/api/callback/", url);
    return rc;
}

struct coord *coord_new(struct event_base *base, const struct coord_conf *conf, char *err,
                        size_t errlen)
{
    struct coord *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base = base;
    c->data_dir = strdup(conf->data_dir ? conf->data_dir : "/tmp/smlt");
    const char *bin = conf->bin_dir ? conf->bin_dir : ".";
    snprintf(c->ps_bin, sizeof c->ps_bin, "%s/smlt-ps", bin);
    snprintf(c->worker_bin, sizeof c->worker_bin, "%s/smlt-worker", bin);
    if (access(c->ps_bin, X_OK) != 0 || access(c->worker_bin, X_OK) != 0) {
        snprintf(err, errlen, "smlt-ps and smlt-worker must be executables in %s", bin);
        goto fail;
    }
    char jobs[1100];
    snprintf(jobs, sizeof jobs, "%s/jobs", c->data_dir);
    if ((mkdir(c->data_dir, 0755) != 0 && errno != EEXIST) ||
        (mkdir(jobs, 0755) != 0 && errno != EEXIST)) {
        snprintf(err, errlen, "cannot create %s: %s", jobs, strerror(errno));
        goto fail;
    }
    if (coord_shards_set_hosts(conf->ps_listen_host, conf->ps_advertise_host, err, errlen) != 0)
        goto fail;
    if (conf->openfaas_async && (!conf->platform || strcmp(conf->platform, "openfaas"))) {
        snprintf(err, errlen, "--openfaas-async: only with --platform openfaas");
        goto fail;
    }
    if (conf->callback_url && !conf->openfaas_async) {
        snprintf(err, errlen, "--callback-url: only with --openfaas-async");
        goto fail;
    }
    if (tls_setup(c, conf, err, errlen) != 0)
        goto fail;
    /* The pool before the journal: jobs adopted from it find their nodes. */
    if (conf->ps_pool) {
        if (coord_pool_new(&c->pool, conf->ps_pool, conf->ps_pool_token, err, errlen) != 0)
            goto fail;
        coord_shards_set_pool(c->pool);
    }
    c->backend = backend_new(c, conf, err, errlen);
    if (!c->backend)
        goto fail;
    if (conf->rpc_advertise)
        snprintf(c->rpc_advertise, sizeof c->rpc_advertise, "%s", conf->rpc_advertise);
    c->rpc = rpc_listen(c, conf->rpc_listen ? conf->rpc_listen : "127.0.0.1:0", err, errlen);
    if (!c->rpc)
        goto fail;
    if (c->tls_server)
        coord_rpc_set_tls(c->rpc, c->tls_server);
    /* The history of earlier jobs, newest last in the list walk (jobs are prepended). */
    coord_restore_all(c);
    return c;
fail:
    coord_free(c);
    return NULL;
}

/* Whether a job is still saving its model or stopping its shards. */
static int coord_finishing(const struct coord *c)
{
    for (const struct coord_job *j = c->jobs; j; j = j->next)
        if (j->finishing)
            return 1;
    return 0;
}

void coord_free(struct coord *c)
{
    if (!c)
        return;
    for (struct coord_job *j = c->jobs; j; j = j->next) {
        if (!job_ended(j) && j->state != JOB_QUEUED)
            job_finish(j, JOB_INTERRUPTED, "the coordinator was stopped");
        else if (j->state == JOB_QUEUED)
            job_set_state(j, JOB_CANCELED, "the coordinator was stopped before the job started");
    }
    /* Running jobs save their models and stop their shards (admin calls, answered on the
     * loop): run the loop until they are done, for at most a minute. */
    double until = smlt_now_mono() + 60;
    while (coord_finishing(c) && smlt_now_mono() < until) {
        struct timeval tv = {0, 100000};
        event_base_loopexit(c->base, &tv);
        event_base_dispatch(c->base);
    }
    coord_backend_free(c->backend);
    coord_rpc_free(c->rpc);
    while (c->jobs) {
        struct coord_job *j = c->jobs;
        c->jobs = j->next;
        job_free(j);
    }
    if (c->pool) {
        coord_shards_set_pool(NULL);
        coord_pool_free(c->pool); /* after the drops the jobs' ends queued */
    }
    if (c->tls_client) {
        smlt_client_set_default_tls(NULL);
        coord_shards_set_tls(NULL, NULL, NULL, 0, NULL, 0);
    }
    smlt_tls_free(c->tls_server);
    smlt_tls_free(c->tls_client);
    free(c->tls_ca_pem);
    free(c->data_dir);
    free(c);
}
