/* coord_job.c: a job's state machine (see coord.h and coord_int.h).
 *
 * A job's life: QUEUED -> STARTING (shards started and configured) -> RUNNING (one worker
 * function per rank, invoked slice after slice: coord_rank.c) -> SUCCEEDED | FAILED |
 * CANCELED | STOPPED. A job that was running when the coordinator stopped is INTERRUPTED when
 * its journal is read back (coord_restore.c).
 *
 * Starting and finishing talk to the shards, so they are chains of admin calls
 * (coord_admin.h): start = shards up -> SETUP -> a first STATS (the noise baseline) -> the
 * ranks' first invocations; finish = cancel the invocations -> SAVE the model -> STATS (the
 * exactly-once counters) -> SHUTDOWN -> stop the local shards by pid -> the end state. While
 * a job finishes it keeps its state and j->finishing is set. Once a second, on_tick() checks
 * the shards, the budget, barriers to retry and the deadline. This file also keeps the job's
 * log, its events and its journal records, and its cost, which comes from its ledger. */
#include "coord_int.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord_pool.h"
#include "smlt_enum.h"
#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_mem.h"

const char *const job_state_names[JOB_NSTATES] = {"queued",  "starting",    "running",
                                                  "succeeded", "failed",   "canceled",
                                                  "interrupted", "stopped"};

/* ---- logs, events, journal ------------------------------------------------------------- */
void job_log(struct coord_job *j, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_info("job %s: %s", j->id, msg);
    if (j->log_fd >= 0) {
        char line[1200];
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02dZ coordinator: %s\n",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec, msg);
        ssize_t w = write(j->log_fd, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
        (void)w;
    }
}

void job_event_add(struct coord_job *j, json_t *e)
{
    if (json_array_size(j->events) >= JOB_EVENTS_MAX)
        json_array_remove(j->events, 0);
    json_array_append(j->events, e);
    if (j->journal)
        coord_journal_append(j->journal, "event", e, 0);
}

void job_event(struct coord_job *j, const char *kind, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:f, s:s, s:s}", "at", smlt_now_unix(), "kind", kind, "message", msg);
    if (!e)
        return;
    job_event_add(j, e);
    json_decref(e);
    job_log(j, "%s: %s", kind, msg);
}

void job_ledger_now(const struct coord_job *j, struct coord_ledger *l)
{
    *l = j->ledger;
    if (job_ended(j))
        return;
    double t = smlt_now_mono();
    for (uint32_t k = 0; j->ranks && k < j->workers; k++)
        if (j->ranks[k].cur.id && j->ranks[k].cur.started > 0)
            (j->ranks[k].cur.billed_before ? coord_ledger_extend_invocation
                                           : coord_ledger_charge_invocation)(
                l, &j->spec.prices, j->ranks[k].cur.memory_mb, t - j->ranks[k].cur.started);
    if (j->shards.n && j->ps_charged_at > 0)
        coord_ledger_charge_ps(l, &j->spec.prices, coord_shards_nodes(&j->shards),
                               t - j->ps_charged_at);
}

double job_cost(const struct coord_job *j)
{
    struct coord_ledger l;
    job_ledger_now(j, &l);
    return coord_ledger_total(&l);
}

void job_charge_ps(struct coord_job *j)
{
    double t = smlt_now_mono();
    if (j->shards.n && j->ps_charged_at > 0) {
        coord_ledger_charge_ps(&j->ledger, &j->spec.prices, coord_shards_nodes(&j->shards),
                               t - j->ps_charged_at);
        j->ps_charged_at = t;
    }
}

int job_checkpoints(const struct coord_job *j)
{
    return j->spec.checkpoint.every_steps > 0 || j->spec.checkpoint.every_s > 0;
}

void job_setup_req(const struct coord_job *j, struct coord_admin_req *req)
{
    coord_spec_job_conf(&j->spec, &req->conf);
    req->conf.workers = j->workers ? j->workers : j->spec.workers;
    snprintf(req->job, sizeof req->job, "%s", j->id);
    snprintf(req->model, sizeof req->model, "%s", j->spec.model);
    if (coord_spec_is_python(j->spec.model))
        snprintf(req->path, sizeof req->path, "%s/model.py", j->dir); /* job_keep_source() */
    if (job_checkpoints(j)) {
        /* Local shards write under the job's directory (a PersistentVolume on Kubernetes);
         * external ones to their own --checkpoint-dir. every_s becomes steps once the step
         * time is known (job_checkpoint_rate()); until then none are taken. */
        if (j->shards.local && !j->shards.pool)
            snprintf(req->checkpoint_dir, sizeof req->checkpoint_dir, "%s/checkpoints", j->dir);
        req->conf.checkpoint_every = j->spec.checkpoint.every_steps ? j->spec.checkpoint.every_steps
                                     : j->ckpt_every                 ? j->ckpt_every
                                                                     : JOB_CKPT_PROVISIONAL;
        req->conf.checkpoint_keep = j->spec.checkpoint.keep;
    }
}

struct coord_admin *job_admin(struct coord_job *j)
{
    if (!j->admin)
        j->admin = coord_admin_new(j->c->base);
    return j->admin;
}

static void on_admin_free(evutil_socket_t fd, short what, void *arg)
{
    struct coord_job *j = arg;
    struct coord_admin_stats st;
    job_admin_stats(j, &st);
    struct coord_admin_stats *d = &j->c->admin_done;
    d->calls += st.calls;
    d->failed += st.failed;
    d->canceled += st.canceled;
    coord_admin_free(j->admin);
    j->admin = NULL;
}

void job_release_admin(struct coord_job *j)
{
    if (!j->admin)
        return;
    if (!j->admin_free_ev)
        j->admin_free_ev = evtimer_new(j->c->base, on_admin_free, j);
    struct timeval now = {0, 0};
    if (j->admin_free_ev)
        evtimer_add(j->admin_free_ev, &now);
}

void job_admin_stats(const struct coord_job *j, struct coord_admin_stats *st)
{
    memset(st, 0, sizeof *st);
    if (j->admin)
        coord_admin_stats(j->admin, st);
}

void job_admin_target(const struct coord_job *j, struct coord_admin_req *req)
{
    snprintf(req->addrs, sizeof req->addrs, "%s", j->shards.addrs);
    snprintf(req->token, sizeof req->token, "%s",
             j->shards.admin_token[0] ? j->shards.admin_token : j->shards.token);
}

void job_journal_shards(struct coord_job *j)
{
    json_t *pids = json_array(), *bpids = json_array(), *baddrs = json_array();
    json_t *maddrs = json_array(), *bmaddrs = json_array();
    for (uint32_t i = 0; i < j->shards.n; i++) {
        json_array_append_new(pids, json_integer(j->shards.local ? j->shards.pid[i] : 0));
        json_array_append_new(bpids, json_integer(j->shards.bpid[i]));
        json_array_append_new(baddrs, json_string(j->shards.baddr[i]));
        json_array_append_new(maddrs, json_string(j->shards.maddr[i]));
        json_array_append_new(bmaddrs, json_string(j->shards.bmaddr[i]));
    }
    /* The tokens too: a restarted coordinator adopts the shards with them (the journal is
     * the owner's only, mode 0600). */
    json_t *rec = json_pack("{s:b, s:i, s:s, s:o, s:s, s:s, s:i}", "local", j->shards.local, "n",
                            (int)j->shards.n, "addrs", j->shards.addrs, "pids", pids, "token",
                            j->shards.token, "admin_token", j->shards.admin_token, "nic_mbps",
                            (int)j->shards.nic_mbps);
    if (rec) {
        json_object_set_new(rec, "map_version", json_integer((json_int_t)j->map_version));
        json_object_set(rec, "metrics_addrs", maddrs); /* their /metrics, for Prometheus */
    }
    if (rec && j->shards.pool) {
        /* Pool shards: their nodes are in their addresses; the boot ids say whether a node
         * still holds what it held (coord_shards_pool_adopt()). */
        json_t *boots = json_array(), *bboots = json_array();
        for (uint32_t i = 0; i < j->shards.n; i++) {
            json_array_append_new(boots, json_integer((json_int_t)(j->shards.boot[i] >> 1)));
            json_array_append_new(bboots, json_integer((json_int_t)(j->shards.bboot[i] >> 1)));
        }
        json_object_set_new(rec, "pool", json_true());
        json_object_set_new(rec, "pool_gen", json_integer(j->shards.gen));
        json_object_set_new(rec, "pool_mem", json_integer((json_int_t)j->shards.mem_bytes));
        json_object_set_new(rec, "boots", boots);
        json_object_set_new(rec, "backup_boots", bboots);
    }
    if (rec && j->shards.replicas > 1) {
        json_object_set_new(rec, "replicas", json_integer(j->shards.replicas));
        json_object_set(rec, "backup_pids", bpids);
        json_object_set(rec, "backup_addrs", baddrs);
        json_object_set(rec, "backup_metrics_addrs", bmaddrs);
    }
    json_decref(bpids);
    json_decref(baddrs);
    json_decref(maddrs);
    json_decref(bmaddrs);
    if (rec && j->journal)
        coord_journal_append(j->journal, "shards", rec, 1);
    json_decref(rec);
}

void job_journal_phase(struct coord_job *j)
{
    if (j->nphases < JOB_PHASES_MAX)
        j->phases[j->nphases++] = (struct job_phase_rec){j->phase_step, j->phase_epoch, j->workers};
    json_t *rec = json_pack("{s:I, s:i, s:i, s:i, s:i}", "phase_step", (json_int_t)j->phase_step,
                            "phase_epoch", (int)j->phase_epoch, "workers", (int)j->workers,
                            "memory_mb", (int)j->memory_mb, "epochs_target",
                            (int)j->epochs_target);
    if (rec && j->journal)
        coord_journal_append(j->journal, "phase", rec, 1);
    json_decref(rec);
}

void job_set_state(struct coord_job *j, enum job_state st, const char *why)
{
    j->state = st;
    if (why && st == JOB_FAILED)
        snprintf(j->error, sizeof j->error, "%s", why);
    json_t *rec = json_pack("{s:s}", "state", job_state_names[st]);
    if (rec && why)
        json_object_set_new(rec, st == JOB_FAILED ? "error" : "reason", json_string(why));
    if (rec && job_ended(j)) {
        json_object_set_new(rec, "ledger", coord_ledger_to_json(&j->ledger));
        json_object_set_new(rec, "step", json_integer((json_int_t)j->step));
        json_object_set_new(rec, "test_accuracy", json_real(j->test_acc));
        json_object_set_new(rec, "steps_per_epoch", json_integer((json_int_t)j->spe));
        json_object_set_new(rec, "total_steps", json_integer((json_int_t)j->total_steps));
        json_object_set_new(rec, "epochs_target", json_integer(j->epochs_target));
        json_object_set_new(rec, "reference_epochs_done", json_real(j->ref_done));
        if (j->noise_scale > 0)
            json_object_set_new(rec, "noise_scale", json_real(j->noise_scale));
        if (j->ps_stats)
            json_object_set(rec, "ps_stats", j->ps_stats);
    }
    if (j->journal && rec)
        coord_journal_append(j->journal, "state", rec, 1);
    json_decref(rec);
    job_log(j, "state %s%s%s", job_state_names[st], why ? ": " : "", why ? why : "");
    if (job_ended(j) && j->end_cb) {
        coord_done_fn cb = j->end_cb;
        j->end_cb = NULL;
        cb(j->c, j->id, 0, j->model_saved ? j->model_path : NULL, NULL, j->end_arg);
    }
}

/* ---- admin calls of the state machine ----------------------------------------------------- */

struct job_call {
    struct coord_job *j;
    job_step_fn fn;
};

static void on_job_call(const struct coord_admin_res *res, void *arg)
{
    struct job_call jc = *(struct job_call *)arg;
    free(arg);
    jc.fn(jc.j, res);
}

/* Shards placed on pool nodes since the last call go with this one (hosted first). */
static void job_attach_hosting(struct coord_job *j, struct coord_admin_req *req)
{
    coord_shards_take_hosting(&j->shards, &req->hosts, &req->nhosts);
    if (!req->nhosts)
        return;
    snprintf(req->job_token, sizeof req->job_token, "%s", j->shards.token);
    snprintf(req->pool_token, sizeof req->pool_token, "%s",
             coord_shards_pool() ? coord_pool_token(coord_shards_pool()) : "");
    /* (The node gets the job's admin token from req->token, the one every call presents.) */
    snprintf(req->token, sizeof req->token, "%s", j->shards.admin_token);
}

void job_call(struct coord_job *j, struct coord_admin_req *req, job_step_fn fn)
{
    struct job_call *jc = calloc(1, sizeof *jc);
    if (jc) {
        jc->j = j;
        jc->fn = fn;
        if (!req->addrs[0])
            job_admin_target(j, req);
        job_attach_hosting(j, req);
        if (job_admin(j) && coord_admin_call(j->admin, req, on_job_call, jc))
            return;
        free(req->hosts); /* (the shards placed fail at the next call, which finds none) */
        req->hosts = NULL;
        req->nhosts = 0;
        free(jc);
    }
    struct coord_admin_res res = {.op = req->op, .rc = SMLT_ENOMEM};
    snprintf(res.err, sizeof res.err, "out of memory");
    fn(j, &res);
}

/* ---- the model --------------------------------------------------------------------------- */

struct save_call {
    struct coord_job *j;
    uint64_t step;
    job_saved_fn cb;
    void *arg;
};

static void on_saved(const struct coord_admin_res *res, void *arg)
{
    struct save_call sc = *(struct save_call *)arg;
    free(arg);
    struct coord_job *j = sc.j;
    if (!res->rc) {
        j->model_saved = 1;
        j->model_step = sc.step;
        json_t *rec = json_pack("{s:s, s:I}", "path", j->model_path, "step", (json_int_t)sc.step);
        coord_journal_append(j->journal, "model", rec, 1);
        json_decref(rec);
    }
    if (sc.cb)
        sc.cb(j, res->rc, res->err, sc.arg);
}

void job_save_model(struct coord_job *j, job_saved_fn cb, void *arg)
{
    struct save_call *sc = calloc(1, sizeof *sc);
    struct coord_admin_req req = {.op = COORD_ADMIN_SAVE, .step = j->step};
    if (!sc || !j->shards.addrs[0]) {
        free(sc);
        if (cb)
            cb(j, j->shards.addrs[0] ? SMLT_ENOMEM : SMLT_ENOTCONF, "no shards", arg);
        return;
    }
    *sc = (struct save_call){j, j->step, cb, arg};
    snprintf(req.path, sizeof req.path, "%s", j->model_path);
    job_admin_target(j, &req);
    job_attach_hosting(j, &req);
    if (!job_admin(j) || !coord_admin_call(j->admin, &req, on_saved, sc)) {
        free(req.hosts);
        free(sc);
        if (cb)
            cb(j, SMLT_ENOMEM, "out of memory", arg);
    }
}

/* ---- finishing --------------------------------------------------------------------------- */

static void finish_stats(struct coord_job *j);
static void finish_stop(struct coord_job *j);
static void finish_done(struct coord_job *j);

static void on_finish_saved(struct coord_job *j, int rc, const char *err, void *arg)
{
    if (rc == 0)
        job_log(j, "model saved at step %llu to %s", (unsigned long long)j->model_step,
                j->model_path);
    else if (rc != SMLT_ENOTCONF)
        job_event(j, "model", "could not save the model: %s", err);
    finish_stats(j);
}

static void on_finish_stats(struct coord_job *j, const struct coord_admin_res *res)
{
    /* The shards' counters, sampled before they stop: every (rank, step) counted once is
     * visible as pushes_counted == workers * steps under BSP, retries as pushes_duplicate. */
    json_t *a = json_array();
    if (job_take_stats(j, res, a) < 0) {
        json_decref(a);
    } else {
        json_decref(j->ps_stats);
        j->ps_stats = a;
    }
    finish_stop(j);
}

static void finish_stats(struct coord_job *j)
{
    if (!j->shards.addrs[0]) {
        finish_stop(j);
        return;
    }
    struct coord_admin_req req = {.op = COORD_ADMIN_STATS, .timeout_ms = 5000};
    job_call(j, &req, on_finish_stats);
}

static void on_finish_shutdown(struct coord_job *j, const struct coord_admin_res *res)
{
    finish_done(j);
}

static void finish_stop(struct coord_job *j)
{
    if (j->spec.statistical_efficiency && j->spe && j->step > j->phase_step) {
        /* The epochs since the last boundary count too (at the fan-out they ran with). */
        uint32_t epoch = j->phase_epoch + (uint32_t)((j->step - j->phase_step) / j->spe);
        job_account_ref(j, epoch);
    }
    int alive = 0;
    for (uint32_t i = 0; j->shards.local && i < j->shards.n; i++)
        alive |= j->shards.pool ? coord_shards_up(&j->shards, i, 0) : j->shards.pid[i] > 0;
    if (!alive || !j->shards.addrs[0]) {
        finish_done(j);
        return;
    }
    /* Orderly first: every shard exits on an admin Shutdown; then by pid. */
    struct coord_admin_req req = {.op = COORD_ADMIN_SHUTDOWN, .timeout_ms = 2000};
    job_call(j, &req, on_finish_shutdown);
}

static void finish_done(struct coord_job *j)
{
    job_charge_ps(j);
    coord_shards_stop(&j->shards);
    coord_backend_drop_function(j->c->backend, j->id);
    j->ended_unix = smlt_now_unix();
    j->finishing = 0;
    job_release_admin(j); /* its thread and pipe are not needed any more */
    job_set_state(j, j->finish_state, j->finish_why[0] ? j->finish_why : NULL);
}

void job_finish(struct coord_job *j, enum job_state st, const char *why)
{
    if (job_ended(j) || j->finishing)
        return;
    j->finishing = 1;
    j->stopping = 1;
    j->finish_state = st;
    snprintf(j->finish_why, sizeof j->finish_why, "%s", why ? why : "");
    if (j->tick_ev)
        evtimer_del(j->tick_ev);
    for (uint32_t k = 0; j->ranks && k < j->cap; k++) {
        struct rank *r = &j->ranks[k];
        evtimer_del(r->retry_ev);
        rank_cancel(r);
    }
    /* Whatever the job was waiting for from its shards no longer matters. */
    if (j->admin)
        coord_admin_cancel_all(j->admin);
    /* The model first: a finished job is worth nothing if its model is lost. */
    if (j->state == JOB_RUNNING || j->state == JOB_STARTING)
        job_save_model(j, on_finish_saved, NULL);
    else if (j->state == JOB_QUEUED)
        finish_done(j);
    else
        finish_stats(j);
}

void job_check_done(struct coord_job *j)
{
    if (job_ended(j) || j->finishing)
        return;
    for (uint32_t k = 0; k < j->workers; k++)
        if (!j->ranks[k].finished)
            return;
    job_finish(j, j->end_state, j->reason[0] ? j->reason : "all epochs trained");
}

/* ---- the tick ---------------------------------------------------------------------------- */

static void on_heartbeat(struct coord_job *j, const struct coord_admin_res *res)
{
    j->hb_pending = 0;
    if (job_ended(j) || j->finishing || j->recovering || res->rc == SMLT_ECANCELED)
        return;
    if (res->rc || res->nshards != j->shards.n)
        return; /* no shard to blame (reaching none of them is the connections' business) */
    for (uint32_t k = 0; k < j->shards.n; k++) {
        if (res->stats_rc[k] == SMLT_EAGAIN)
            continue; /* not asked this time */
        int ok = res->stats_rc[k] == 0;
        j->hb_miss[k] = ok ? 0 : (uint8_t)(j->hb_miss[k] < 255 ? j->hb_miss[k] + 1 : 255);
        if (j->hb_miss[k] < JOB_HEARTBEAT_MISSES)
            continue;
        j->hb_miss[k] = 0;
        if (j->shards.local && (j->shards.pid[k] > 0 || j->shards.pool)) {
            /* Alive but not answering (hung, stopped): it is replaced like a dead one (the next
             * tick sees it gone). */
            job_event(j, "heartbeat", "shard %u (pid %d) missed %d heartbeats in a row: "
                                      "killing it, so that it is replaced",
                      k, (int)j->shards.pid[k], JOB_HEARTBEAT_MISSES);
            coord_shards_kill(&j->shards, k);
        } else {
            char msg[400];
            snprintf(msg, sizeof msg, "parameter-server shard %u missed %d heartbeats in a row "
                                      "(%.200s)",
                     k, JOB_HEARTBEAT_MISSES, smlt_strerror(res->stats_rc[k]));
            job_finish(j, JOB_FAILED, msg);
            return;
        }
    }
}

/* A STATS round to every shard every JOB_HEARTBEAT_S while the admin queue is idle: a shard
 * that stops answering is noticed even though its process runs. */
static void job_heartbeat(struct coord_job *j)
{
    double t = smlt_now_mono();
    if (j->hb_pending || t - j->hb_at < JOB_HEARTBEAT_S || (j->admin && coord_admin_pending(j->admin)))
        return;
    j->hb_at = t;
    j->hb_pending = 1;
    struct coord_admin_req req = {.op = COORD_ADMIN_STATS, .timeout_ms = 5000};
    job_call(j, &req, on_heartbeat);
}

int job_budget_fits(const struct coord_job *j, uint32_t workers, uint32_t memory_mb,
                    uint32_t nodes, double wait_s)
{
    double rate = coord_ledger_burn_rate(&j->spec.prices, workers, memory_mb, nodes);
    return job_cost(j) + rate * (wait_s + JOB_BUDGET_MARGIN_S) < j->spec.budget_usd;
}

/* The budget is a hard limit: stop while the workers' next progress reports (at most a couple
 * of seconds away) and the shutdown still fit in it. A rank still starting reaches the halt
 * only once started (a torch runner takes seconds): its expected rest of the start counts. */
static void job_check_budget(struct coord_job *j)
{
    double now = smlt_now_mono(), start = -1, wait = 0;
    for (uint32_t k = 0; k < j->workers; k++) {
        const struct rank_inv *c = &j->ranks[k].cur;
        if (!c->id || c->ready_at > 0)
            continue;
        if (start < 0)
            start = job_start_estimate(j, 0);
        double left = start - (now - c->started);
        if (left > wait)
            wait = left;
    }
    if (job_budget_fits(j, j->workers, j->memory_mb, coord_shards_nodes(&j->shards), wait))
        return;
    snprintf(j->reason, sizeof j->reason,
             "budget of $%.6f reached ($%.6f spent at step %llu): stopped after the current "
             "step, model saved",
             j->spec.budget_usd, job_cost(j), (unsigned long long)j->step);
    job_event(j, "budget", "%s", j->reason);
    j->stopping = 1;
    j->end_state = JOB_STOPPED;
    job_halt_workers(j);
    job_boundary(j); /* ranks already parked at a boundary end now */
}

void job_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct coord_job *j = arg;
    if (job_ended(j) || j->finishing)
        return;
    struct timeval tv = {(time_t)JOB_TICK_S, 0};
    job_adopted_check(j);
    if (job_ended(j) || j->finishing)
        return;
    int dead = j->recovering ? -1 : coord_shards_check(&j->shards);
    if (dead >= 0 && (job_failover(j, (uint32_t)dead, j->shards.dead_pid) == 0 ||
                      job_recover_shard(j, (uint32_t)dead, j->shards.dead_pid) == 0)) {
        evtimer_add(j->tick_ev, &tv);
        return;
    }
    int dead_backup = j->recovering ? -1 : coord_shards_check_backups(&j->shards);
    if (dead_backup >= 0)
        job_backup_lost(j, (uint32_t)dead_backup, j->shards.dead_pid);
    if (j->recovering) {
        job_charge_ps(j);
        evtimer_add(j->tick_ev, &tv);
        return;
    }
    if (dead >= 0) {
        char msg[1200];
        snprintf(msg, sizeof msg, "parameter-server shard %d exited (see %s/shards.log)", dead,
                 j->dir);
        job_finish(j, JOB_FAILED, msg);
        return;
    }
    job_charge_ps(j);
    job_heartbeat(j);
    if (j->spec.budget_usd > 0 && !j->stopping)
        job_check_budget(j);
    if (j->unfreeze_pending && !j->barrier_pending)
        job_retry_unfreeze(j);
    if (!j->stopping && j->barrier_pending) {
        job_boundary(j); /* a barrier that could not be lifted last time */
    } else if (!j->stopping && !j->parks) {
        if (j->pending_workers || j->pending_shards)
            job_request_barrier(j, "a manual scale");
        else
            job_watch_stragglers(j, smlt_now_mono());
    }
    if (j->spec.deadline_s > 0 && !j->deadline_warned &&
        smlt_now_unix() - j->submitted_unix > j->spec.deadline_s) {
        j->deadline_warned = 1;
        job_event(j, "deadline", "the deadline of %.0f s has passed at step %llu of %llu",
                  j->spec.deadline_s, (unsigned long long)j->step, (unsigned long long)j->total_steps);
    }
    evtimer_add(j->tick_ev, &tv);
}

/* ---- starting ---------------------------------------------------------------------------- */

/* Allocates the job's ranks (the most it may use) and decides whether they park at every
 * epoch boundary. Returns 0 or SMLT_ENOMEM. */
int job_ranks_new(struct coord_job *j)
{
    struct coord *c = j->c;
    j->cap = j->spec.max_workers > j->spec.workers ? j->spec.max_workers : j->spec.workers;
    j->ranks = calloc(j->cap, sizeof *j->ranks);
    if (!j->ranks)
        return SMLT_ENOMEM;
    for (uint32_t k = 0; k < j->cap; k++) {
        j->ranks[k].job = j;
        j->ranks[k].rank = k;
        j->ranks[k].retry_ev = evtimer_new(c->base, rank_on_retry, &j->ranks[k]);
    }
    /* Ranks park at every epoch boundary where a decision is made at every one (a deadline
     * or a budget) or where the shards cannot stop them at a step of our choosing (only BSP
     * shards can, and only for an admin). The others train on through boundaries in one
     * invocation, and the coordinator sets a barrier when it has a change to make. */
    j->parks = j->spec.deadline_s > 0 || j->spec.budget_usd > 0 ||
               j->spec.statistical_efficiency || j->spec.sync != SMLT_SYNC_BSP ||
               !j->shards.admin_token[0];
    return 0;
}

/* RUNNING: every active rank invoked, the tick started. */
void job_go(struct coord_job *j)
{
    job_set_state(j, JOB_RUNNING, NULL);
    j->epoch_started = j->boundary_at = smlt_now_mono();
    for (uint32_t k = 0; k < j->workers; k++)
        rank_invoke(&j->ranks[k]);
    if (!j->tick_ev)
        j->tick_ev = evtimer_new(j->c->base, job_on_tick, j);
    struct timeval tv = {(time_t)JOB_TICK_S, 0};
    evtimer_add(j->tick_ev, &tv);
}

/* The shards are configured and the noise baseline taken: the ranks' first invocations. */
static void job_run(struct coord_job *j)
{
    job_log(j, "%u shards at %s configured for %s (%llu parameters), %s, %s lr %g",
            j->shards.n, j->shards.addrs, j->spec.model, (unsigned long long)j->spec.model_params,
            coord_spec_sync_name(j->spec.sync), coord_spec_optim_name(j->spec.optimizer.kind),
            j->spec.optimizer.lr);
    j->workers = j->spec.workers;
    j->memory_mb = j->spec.platform.memory_mb;
    if (job_ranks_new(j) != 0) {
        job_finish(j, JOB_FAILED, "out of memory");
        return;
    }
    job_journal_phase(j);
    j->rp_done = 1;
    job_go(j);
}

static void on_start_baseline(struct coord_job *j, const struct coord_admin_res *res)
{
    if (job_ended(j) || j->finishing)
        return;
    job_take_stats(j, res, NULL); /* the baseline for the noise-scale figures */
    job_run(j);
}

/* The shards are configured (and, replicated, have their backups): the noise baseline. */
static void job_baseline(struct coord_job *j)
{
    if (job_ended(j) || j->finishing)
        return;
    struct coord_admin_req req = {.op = COORD_ADMIN_STATS, .timeout_ms = 5000};
    job_call(j, &req, on_start_baseline);
}

static void on_setup(struct coord_job *j, const struct coord_admin_res *res)
{
    if (job_ended(j) || j->finishing)
        return;
    if (res->rc) {
        char msg[600];
        snprintf(msg, sizeof msg, "configuring the shards: %s", res->err);
        job_finish(j, JOB_FAILED, msg);
        return;
    }
    if (coord_spec_is_python(j->spec.model) && res->nparams &&
        res->nparams != j->spec.model_params) {
        j->spec.model_params = res->nparams; /* a torch job's size, known now */
        json_t *rec = json_pack("{s:I}", "model_params", (json_int_t)res->nparams);
        if (rec && j->journal)
            coord_journal_append(j->journal, "params", rec, 1);
        json_decref(rec);
    }
    job_replicas_build(j, job_baseline);
}

/* What a shard reserves on a pool node: its range at the job's shard count, at the most
 * workers, with checkpoints (smlt_mem.h). A reshard to fewer shards grows the ranges: each
 * shard's node checks the new need at Configure. */
uint64_t job_shard_mem(const struct coord_job *j)
{
    uint64_t per = j->spec.model_params / (j->spec.shards ? j->spec.shards : 1) + 16;
    int k = j->spec.optimizer.kind;
    unsigned slots = k == SMLT_OPT_ADAM ? 2 : k == SMLT_OPT_SGD ? 0 : 1;
    uint32_t w = j->spec.max_workers > j->spec.workers ? j->spec.max_workers : j->spec.workers;
    return smlt_shard_mem_bytes(per, slots, w, job_checkpoints(j));
}

void job_on_start(evutil_socket_t fd, short what, void *arg)
{
    struct coord_job *j = arg;
    char err[512] = "";
    int rc;
    job_set_state(j, JOB_STARTING, NULL);
    j->t_start = smlt_now_mono();
    j->started_unix = smlt_now_unix();
    /* (Local shards are child processes: starting one waits for its port file, not for the
     * network.) */
    if (j->spec.ps.addrs[0])
        rc = coord_shards_external(&j->shards, j->spec.ps.addrs, j->spec.ps.token,
                                   j->spec.ps.admin_token[0] ? j->spec.ps.admin_token : NULL, err,
                                   sizeof err);
    else if (coord_shards_pool())
        rc = coord_shards_start_pool(&j->shards, j->spec.shards, j->id, job_shard_mem(j), err,
                                     sizeof err);
    else
        rc = coord_shards_start(&j->shards, j->spec.shards, j->spec.platform.ps_nic_mbps,
                                j->c->ps_bin, j->dir, err, sizeof err);
    if (rc) {
        job_finish(j, JOB_FAILED, err);
        return;
    }
    j->shards.replicas = j->spec.ps.replicas;
    j->ps_charged_at = smlt_now_mono();
    job_journal_shards(j);
    j->workers = j->spec.workers;
    j->map_version = 1;
    if (!j->spec.checkpoint.every_steps && j->spec.checkpoint.every_s > 0)
        j->ckpt_every = JOB_CKPT_PROVISIONAL;
    struct coord_admin_req req = {.op = COORD_ADMIN_SETUP, .timeout_ms = 60000};
    job_setup_req(j, &req);
    job_call(j, &req, on_setup);
}
