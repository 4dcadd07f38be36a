/* coord_rank.c: ranks and their invocations. Each rank has a data cursor (the global step its
 * next invocation starts at, from the worker's last Progress or Done). An invocation is a
 * slice; when it ends (rank_on_inv_end()) the rank goes on with a continuation, parks at an epoch
 * boundary or a barrier (coord_phase.c), finishes, or is re-invoked from its cursor after a
 * failure, with backoff. The worker RPC's handlers (hello: the Assignment; progress; done)
 * are here too. The parameter server counts each (rank, step) once, so steps a lost
 * invocation had already pushed are recognised as duplicates and not applied again. */
#include "coord_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_conn.h"
#include "smlt_error.h"
#include "worker_resp.h"

/* Marks where rank r is now. */
void rank_mark(struct rank_mark *m, const struct rank *r)
{
    m->compute_s = r->tot.compute_s + r->cur.compute_s;
    m->comm_s = r->tot.comm_s + r->cur.comm_s;
    m->step = r->next_step;
}

/* Rank 0 evaluated at an epoch's end: the epoch's record, and a reached target. */
static void job_take_eval(struct coord_job *j, const Smlt__Progress *p)
{
    double t = smlt_now_mono();
    j->epoch_done = p->eval_epoch;
    j->test_acc = p->test_acc;
    j->test_loss = p->test_loss;
    if (p->test_acc > j->best_acc)
        j->best_acc = p->test_acc;
    double ep_t = t - j->epoch_started;
    json_t *e = job_measure(j, p->next_step, t, "epoch_time_s");
    job_epoch_mark(j, p->next_step, t);
    if (e) {
        json_object_set_new(e, "epoch", json_integer((json_int_t)j->epoch_done));
        json_object_set_new(e, "train_loss", json_real(j->train_loss));
        json_object_set_new(e, "test_accuracy", json_real(p->test_acc));
        json_object_set_new(e, "test_loss", json_real(p->test_loss));
        json_array_append(j->series, e);
        coord_journal_append(j->journal, "epoch", e, 0);
        json_decref(e);
    }
    job_log(j, "epoch %lld: test accuracy %.4f, train loss %.4f, %.1f s, $%.5f",
            (long long)j->epoch_done + 1, p->test_acc, j->train_loss, ep_t, job_cost(j));
    if (j->spec.target_accuracy > 0 && p->test_acc >= j->spec.target_accuracy && !j->stopping) {
        snprintf(j->reason, sizeof j->reason, "target accuracy %.4f reached at epoch %lld (%.4f)",
                 j->spec.target_accuracy, (long long)j->epoch_done + 1, p->test_acc);
        job_event(j, "target", "%s", j->reason);
        j->stopping = 1;
        if (!j->parks)
            job_halt_workers(j); /* they would train on into the next epoch */
    }
}

/* Takes the figures of a Progress (or Done's progress) into the rank and the job. */
/* smlt_step_seconds: the steps this report adds to the invocation's, each at the interval's
 * mean step time (compute + communication), so that the histogram's sum over its count is the
 * mean step time and every step counts once. */
static void rank_count_steps(struct coord_job *j, struct rank *r, const Smlt__Progress *p)
{
    double s = p->compute_s + p->comm_s;
    if (p->steps > r->cur.rep_steps && s >= r->cur.rep_s) {
        uint64_t ds = p->steps - r->cur.rep_steps;
        smlt_hist_observe_n(&j->c->step_time, (s - r->cur.rep_s) / (double)ds, ds);
    }
    if (p->steps >= r->cur.rep_steps) {
        r->cur.rep_steps = p->steps;
        r->cur.rep_s = s;
    }
}

static void take_progress(struct coord_job *j, struct rank *r, const Smlt__Progress *p)
{
    rank_count_steps(j, r, p);
    if (p->next_step > r->next_step || (p->next_step < r->next_step && p->next_step > 0))
        r->next_step = p->next_step;
    r->cur.loss = p->loss;
    r->cur.compute_s = p->compute_s;
    r->cur.comm_s = p->comm_s;
    r->cur.init_s = p->init_s;
    r->cur.steps = p->steps;
    r->cur.cold = p->cold;
    if (!r->cur.ready_at && p->steps > 0) {
        r->cur.ready_at = smlt_now_mono() - (p->compute_s + p->comm_s);
        if (r->cur.cold && r->cur.ready_at > r->cur.started) {
            /* a cold start, invocation to first step, whatever the runner reports as init */
            r->tot.ready_cold_s += r->cur.ready_at - r->cur.started;
            r->tot.ready_cold_n++;
        }
    }
    if (p->has_steps_per_epoch && p->steps_per_epoch && !j->spe) {
        j->spe = p->steps_per_epoch;
        j->total_steps = j->phase_step + j->spe * (j->epochs_target - j->phase_epoch);
        job_log(j, "%llu steps per epoch, %llu steps in %u epochs", (unsigned long long)j->spe,
                (unsigned long long)j->total_steps, j->epochs_target);
    }
    if (j->profile_state != PROFILE_DONE && !r->pf_set && p->steps > 0) {
        r->pf_set = 1;
        rank_mark(&r->pf, r);
        r->pf_invocations = r->tot.invocations;
    }
    r->last_report = smlt_now_mono();
    job_checkpoint_rate(j, r);
    if (j->spe && j->profile_state == PROFILE_NONE)
        job_profile(j);
    uint64_t step = UINT64_MAX;
    double loss = 0;
    for (uint32_t k = 0; k < j->workers; k++) {
        if (j->ranks[k].next_step < step)
            step = j->ranks[k].next_step;
        loss += j->ranks[k].cur.loss;
    }
    j->step = step == UINT64_MAX ? 0 : step;
    j->train_loss = loss / (j->workers ? j->workers : 1);
    if (p->has_eval_epoch && p->eval_epoch > j->epoch_done && p->has_test_acc)
        job_take_eval(j, p);
    double t = smlt_now_mono();
    if (t - j->last_progress_journal >= JOB_PROGRESS_EVERY_S) {
        j->last_progress_journal = t;
        json_t *rec = json_pack("{s:I, s:f, s:f, s:i, s:i, s:f}", "step", (json_int_t)j->step,
                                "elapsed_s", t - j->t_start, "train_loss", j->train_loss, "workers",
                                (int)j->workers, "shards", (int)j->shards.n, "cost_usd", job_cost(j));
        /* The ledger too, so that the billed cost survives a crash of the coordinator. */
        struct coord_ledger now;
        job_ledger_now(j, &now);
        if (rec)
            json_object_set_new(rec, "ledger", coord_ledger_to_json(&now));
        if (rec)
            coord_journal_append(j->journal, "progress", rec, 0);
        json_decref(rec);
    }
}

static void rank_close_invocation(struct coord_job *j, struct rank *r)
{
    if (r->cur.steps > 0)
        r->last_cps = r->cur.compute_s / (double)r->cur.steps;
    r->tot.compute_s += r->cur.compute_s;
    r->tot.comm_s += r->cur.comm_s;
    r->tot.init_s += r->cur.init_s;
    r->cur.compute_s = r->cur.comm_s = r->cur.init_s = 0;
    r->cur.id = 0;
    r->cur.name[0] = '\0';
    r->cur.adopted = r->cur.resumed = r->cur.billed_before = 0;
}

/* An invocation ended without finishing its slice (failed, killed at the limit, crashed, or
 * trained no step): again from the last reported cursor after a backoff, or the job fails
 * after JOB_MAX_FAILURES in a row. */
static void rank_failed(struct rank *r, uint64_t inv, const struct coord_inv_result *res,
                        int status, const char *err)
{
    struct coord_job *j = r->job;
    if (r->failures == 0)
        r->steps_at_fail = r->next_step;
    r->failures++;
    r->tot.lost++;
    const char *why = status == SMLT__DONE_STATUS__DONE_FAILED && err[0] ? err : res->detail;
    char what[64];
    if (inv & RANK_INV_ADOPTED)
        snprintf(what, sizeof what, "its adopted invocation");
    else
        snprintf(what, sizeof what, "invocation %llu", (unsigned long long)inv);
    job_event(j, "retry", "rank %u: %s ended without finishing its slice (%s); "
                          "re-invoking from step %llu (failure %d of %d)",
              r->rank, what, why, (unsigned long long)r->next_step, r->failures,
              JOB_MAX_FAILURES);
    if (r->failures >= JOB_MAX_FAILURES) {
        char msg[512];
        if (res->status == COORD_INV_TIMEOUT && r->steps_at_fail == r->next_step)
            snprintf(msg, sizeof msg,
                     "rank %u made no progress in %d invocations: each was killed at the %u s "
                     "time limit before finishing a step (a worker's start - loading the data, "
                     "connecting - may take longer than that; raise platform.time_limit_s)",
                     r->rank, r->failures, j->spec.platform.time_limit_s);
        else
            snprintf(msg, sizeof msg, "rank %u failed %d times in a row; last: %s", r->rank,
                     r->failures, why);
        job_finish(j, JOB_FAILED, msg);
        return;
    }
    double delay = 0.1 * (1 << (r->failures < 6 ? r->failures : 6));
    struct timeval tv = {(time_t)delay, (suseconds_t)((delay - (time_t)delay) * 1e6)};
    evtimer_add(r->retry_ev, &tv);
}

/* The backend reports an invocation's end: bill it and decide what comes next for the rank. */
void rank_on_inv_end(uint64_t inv, const struct coord_inv_result *res, void *arg)
{
    struct rank *r = arg;
    struct coord_job *j = r->job;
    if (r->cur.id != inv)
        return;
    /* At the memory size the platform billed (a Lambda function's own, which the job's
     * platform.memory_mb does not set), else the one asked for. */
    if (res->memory_mb)
        r->cur.memory_mb = res->memory_mb;
    (r->cur.billed_before ? coord_ledger_extend_invocation : coord_ledger_charge_invocation)(
        &j->ledger, &j->spec.prices, r->cur.memory_mb, res->duration_s);
    rank_journal_invocation_end(j, r);
    r->tot.elapsed_s += res->duration_s;
    int status = -1; /* Smlt__DoneStatus, -1: unknown (lost) */
    char err[300] = "";
    if (r->cur.done_seen) {
        status = r->cur.done_status;
        snprintf(err, sizeof err, "%s", r->cur.done_error);
    } else if (res->status == COORD_INV_OK && res->response) {
        /* No Done over RPC (its connection failed): the response line says how it ended. */
        struct worker_resp wr;
        if (worker_resp_parse(res->response, &wr) == 0) {
            if (wr.next_step > r->next_step)
                r->next_step = wr.next_step;
            status = wr.status;
            snprintf(err, sizeof err, "%s", wr.error);
        }
    }
    rank_close_invocation(j, r);
    if (res->status == COORD_INV_CANCELED || job_ended(j))
        return;
    if (j->spec.statistical_efficiency && status != SMLT__DONE_STATUS__DONE_FAILED &&
        (status == SMLT__DONE_STATUS__DONE_FINISHED ||
         (j->spe && r->next_step >= j->total_steps))) {
        /* The epochs planned are trained, but the last ones' noise scale may show that they
         * were worth less than planned: the boundary decides (job_retarget()). A rank never
         * finishes on its own here: when the others go on, a finished rank would leave BSP
         * steps waiting; when the job is stopping, job_boundary() finishes every rank. */
        r->failures = 0;
        r->at_boundary = 1;
        job_boundary(j);
        return;
    }
    if (status == SMLT__DONE_STATUS__DONE_FINISHED ||
        (j->spe && r->next_step >= j->total_steps && status != SMLT__DONE_STATUS__DONE_FAILED)) {
        r->finished = 1;
        r->failures = 0;
        job_check_done(j);
        return;
    }
    if (j->stopping) {
        /* Stopping (target reached, budget): this rank is done, and so are those already
         * parked at the boundary (job_boundary() finishes them). */
        r->finished = 1;
        job_boundary(j);
        job_check_done(j);
        return;
    }
    if (status == SMLT__DONE_STATUS__DONE_SLICE || status == SMLT__DONE_STATUS__DONE_TIME_UP) {
        if (r->next_step > r->cur.from_step)
            r->failures = 0;
        if ((j->parks && j->spe && r->next_step > j->phase_step &&
             (r->next_step - j->phase_step) % j->spe == 0) ||
            (j->barrier_pending && r->next_step == j->barrier_step)) {
            /* At an epoch boundary, or at a barrier (an epoch's end, or the profile's inside
             * the first epoch): wait there for the other ranks (changes happen here). */
            r->at_boundary = 1;
            job_boundary(j);
            return;
        }
        if (r->next_step > r->cur.from_step) {
            rank_invoke(r); /* the continuation, from the reported cursor */
            return;
        }
        /* A slice that trained no step (refused by the shards at a barrier the coordinator
         * does not know of, or out of time before its first step): again, with backoff,
         * and the job fails if it keeps happening, rather than re-invoking at once forever. */
        snprintf(err, sizeof err, "its slice ended at step %llu without training a step",
                 (unsigned long long)r->next_step);
        status = SMLT__DONE_STATUS__DONE_FAILED;
    }
    rank_failed(r, inv, res, status, err);
}

/* The invocation's payload (malloc'd; NULL when out of memory): where the coordinator is,
 * which invocation and its token, and with TLS on, "tls": true and the CA certificates to
 * verify the coordinator and the shards with ("tls_ca", PEM text: a function instance needs
 * no file of its own). */
static char *invocation_payload(struct coord *c, const struct rank *r)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "coordinator",
                          c->rpc_advertise[0] ? c->rpc_advertise : coord_rpc_addr(c->rpc),
                          "invocation", r->cur.name, "token", r->cur.token);
    if (o && c->tls_client) {
        json_object_set_new(o, "tls", json_true());
        if (c->tls_ca_pem)
            json_object_set_new(o, "tls_ca", json_string(c->tls_ca_pem));
    }
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

void rank_invoke(struct rank *r)
{
    struct coord_job *j = r->job;
    struct coord *c = j->c;
    if (job_ended(j) || r->finished || r->cur.id)
        return;
    if (j->stopping) {
        r->finished = 1;
        job_check_done(j);
        return;
    }
    snprintf(r->cur.name, sizeof r->cur.name, "%s/%u/%llu", j->id, r->rank,
             (unsigned long long)(r->tot.invocations + 1));
    coord_random_hex(r->cur.token, 32);
    r->cur.done_seen = 0;
    r->cur.done_error[0] = '\0';
    r->cur.hello_at = 0;
    r->cur.ready_at = 0;
    char *payload = invocation_payload(c, r);
    if (!payload) {
        job_finish(j, JOB_FAILED, "out of memory for an invocation payload");
        return;
    }
    struct coord_inv_req req = {.function = j->id,
                                .payload = payload,
                                .memory_mb = j->memory_mb,
                                .time_limit_s = j->spec.platform.time_limit_s,
                                .log_path = j->log_path,
                                .avoid_pid = r->replace_next ? r->cur.pid : 0};
    r->replace_next = 0;
    r->cur.memory_mb = j->memory_mb;
    uint64_t inv = 0;
    int rc = coord_backend_invoke(c->backend, &req, rank_on_inv_end, r, &inv);
    free(payload);
    if (rc) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot invoke rank %u: %s", r->rank, smlt_strerror(rc));
        job_finish(j, JOB_FAILED, msg);
        return;
    }
    r->cur.id = inv;
    r->cur.from_step = r->next_step;
    r->cur.started = smlt_now_mono();
    r->cur.rep_steps = 0;
    r->cur.rep_s = 0;
    r->tot.invocations++;
}

void rank_on_retry(evutil_socket_t fd, short what, void *arg)
{
    rank_invoke(arg);
}

/* ---- worker RPC -------------------------------------------------------------------------- */

/* Finds the rank whose current invocation is inv ("JOB/RANK/SEQ"). */
static struct rank *rank_of_inv(struct coord *c, const char *inv, struct coord_job **jo)
{
    char id[JOB_ID_MAX];
    const char *slash = strchr(inv, '/');
    if (!slash || (size_t)(slash - inv) >= sizeof id)
        return NULL;
    memcpy(id, inv, (size_t)(slash - inv));
    id[slash - inv] = '\0';
    struct coord_job *j = job_find(c, id);
    if (!j || !j->ranks)
        return NULL;
    unsigned rk = (unsigned)strtoul(slash + 1, NULL, 10);
    if (rk >= j->workers || strcmp(j->ranks[rk].cur.name, inv))
        return NULL;
    *jo = j;
    return &j->ranks[rk];
}

/* Start latency: from invoking to the worker asking for its work. A cold start pays for
 * starting the process; loading data and connecting come after (init_s). */
static void rank_count_start(struct rank *r, int warm)
{
    r->cur.hello_at = smlt_now_mono();
    r->cur.warm = warm;
    double dt = r->cur.hello_at - r->cur.started;
    smlt_hist_observe(warm ? &r->job->c->start_warm : &r->job->c->start_cold, dt);
    if (warm) {
        r->tot.warm_starts++;
        r->tot.warm_start_s += dt;
    } else {
        r->tot.cold_starts++;
        r->tot.cold_start_s += dt;
    }
}

void rank_assignment(struct coord_job *j, struct rank *r, Smlt__Assignment *a)
{
    const struct coord_spec *s = &j->spec;
    static char ps_token[COORD_SPEC_TOKEN_MAX];
    snprintf(ps_token, sizeof ps_token, "%s", j->shards.token);
    a->job = j->id;
    a->invocation = r->cur.name;
    a->model = (char *)s->model;
    a->model_source = j->model_source; /* a torch job's training file, else NULL */
    a->dataset = (char *)s->dataset;
    a->batch = s->batch_size;
    a->sync = (Smlt__SyncMode)s->sync;
    a->has_staleness = 1;
    a->staleness = s->staleness;
    a->rank = r->rank;
    a->workers = j->workers;
    a->has_seed = 1;
    a->seed = s->seed;
    a->ps_addrs = j->shards.addrs;
    a->ps_token.data = (uint8_t *)ps_token;
    a->ps_token.len = strlen(ps_token);
    a->has_ps_tls = 1;
    a->ps_tls = j->c->tls_client != NULL;
    a->start_step = r->next_step;
    a->has_total_steps = 1;
    a->total_steps = j->total_steps;
    a->has_epochs = 1;
    a->epochs = j->epochs_target;
    /* Stop cleanly well inside the platform's limit, counted from the invocation's start. */
    double limit = s->platform.time_limit_s;
    double margin = limit * 0.1 > 0.5 ? limit * 0.1 : 0.5;
    if (margin > 10)
        margin = 10;
    double left = limit - (smlt_now_mono() - r->cur.started) - margin;
    a->has_deadline_ms = 1;
    a->deadline_ms = left > 0.2 ? (uint64_t)(left * 1000) : 200;
    a->has_evaluate = 1;
    a->evaluate = r->rank == 0;
    a->has_progress_ms = 1;
    a->progress_ms = 1000;
    a->has_timeout_ms = 1;
    a->timeout_ms = 120000;
    if (s->cache_dir[0])
        a->cache_dir = (char *)s->cache_dir;
    a->has_label_column = a->has_header = a->has_scale = 1;
    a->label_column = s->dataset_options.label_column;
    a->header = (Smlt__CsvHeader)s->dataset_options.header;
    a->scale = (Smlt__FeatureScale)s->dataset_options.scale;
    a->has_step_base = a->has_epoch_base = a->has_stop_at_epoch_end = 1;
    a->step_base = j->phase_step;
    a->epoch_base = j->phase_epoch;
    a->stop_at_epoch_end = j->parks;
}

static int rpc_hello(const Smlt__WorkerHello *m, Smlt__Assignment *a, char *err, size_t errlen,
                     void *arg)
{
    struct coord *c = arg;
    struct coord_job *j = NULL;
    struct rank *r = rank_of_inv(c, m->invocation, &j);
    if (!r && m->has_resume && m->resume && job_adopt_pending(c, m->invocation)) {
        snprintf(err, errlen, "the coordinator is resuming the job; try again");
        return SMLT_EAGAIN;
    }
    if (!r || !rpc_token_equal(m->token.data, m->token.len, r->cur.token, strlen(r->cur.token))) {
        snprintf(err, errlen, "unknown invocation or wrong token");
        return SMLT_EAUTH;
    }
    if (job_ended(j) || j->finishing) {
        snprintf(err, errlen, "job %s has ended", j->id);
        return SMLT_ECANCELED;
    }
    uint32_t pid = m->has_pid ? m->pid : 0;
    rank_assignment(j, r, a);
    if (m->has_resume && m->resume) {
        /* Back after a lost connection, to finish the slice it was given. */
        rank_resumed(r, pid);
        return 0;
    }
    const struct coord_spec *s = &j->spec;
    r->cur.pid = (pid_t)pid;
    if (s->chaos.slow_rank == (int)r->rank && pid) {
        if (!r->slow_pid)
            r->slow_pid = (pid_t)pid; /* the host this rank first landed on is the slow one */
        if (r->slow_pid == (pid_t)pid) {
            a->has_chaos_delay_us = 1;
            a->chaos_delay_us = (uint32_t)(s->chaos.slow_ms * 1000.0);
        }
    }
    rank_count_start(r, m->has_warm && m->warm);
    rank_journal_invocation(j, r, s->platform.time_limit_s);
    return 0;
}

static int rpc_progress(const char *inv, const Smlt__Progress *p, void *arg)
{
    struct coord *c = arg;
    struct coord_job *j = NULL;
    struct rank *r = rank_of_inv(c, inv, &j);
    if (!r)
        return 1;
    take_progress(j, r, p);
    /* Not j->stopping: under BSP the ranks must all end at the same step, which the shards
     * see to (smlt_stop_at()); a rank stopping on its own would leave the others waiting. */
    return job_ended(j);
}

static void rpc_done(const char *inv, const Smlt__Done *d, void *arg)
{
    struct coord *c = arg;
    struct coord_job *j = NULL;
    struct rank *r = rank_of_inv(c, inv, &j);
    if (!r)
        return;
    if (d->progress)
        take_progress(j, r, d->progress);
    r->cur.done_seen = 1;
    r->cur.done_status = d->status;
    snprintf(r->cur.done_error, sizeof r->cur.done_error, "%s", d->error ? d->error : "");
    rank_adopted_done(r); /* an adopted invocation ends with its Done */
    if (d->status == SMLT__DONE_STATUS__DONE_FAILED)
        job_log(j, "rank %u: worker failed: %s", r->rank, d->error ? d->error : "?");
}

const struct coord_rpc_handler coord_rank_rpc = {rpc_hello, rpc_progress, rpc_done};
