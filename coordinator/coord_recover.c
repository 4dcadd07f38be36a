/* coord_recover.c: a dead shard is replaced and the job goes on (issue 11 item 2).
 *
 * When a local shard's process exits (on_tick() sees it by its pid), a job that takes
 * checkpoints (spec "checkpoint", on by default) does not fail:
 *   1. every running invocation is canceled (the local runtime kills its instance, so no push
 *      from before the restore can arrive after it) and the job's warm instances are dropped
 *      (they hold connections to the old map);
 *   2. a new smlt-ps takes the dead one's place, with the job's tokens, on a new port;
 *   3. every shard is configured again with the job's map at a higher version (the new
 *      address in it), which is what makes a client that still holds the old map refresh it,
 *      and with the worker count of the phase the checkpoint belongs to;
 *   4. every shard restores the newest step for which every shard has a valid checkpoint
 *      (smlt_restore(): parameters, optimizer state, version, clock and the exactly-once
 *      tables, so a step counted before that checkpoint is a duplicate again and a step after
 *      it is trained again, once);
 *   5. every rank is invoked from that step, in the phase it belongs to.
 * The journal records the fault ("fault" event: which shard, where the job was, the step
 * restored and the steps lost). Without checkpoints, or when no step is common to every
 * shard, the job fails as before, saying why. While it recovers, j->recovering keeps the
 * phases' and the state machine's callbacks off the job. */
#include "coord_int.h"

#include <stdio.h>
#include <string.h>

#include "smlt_error.h"
#include "smlt_proc.h"

/* The phase a step belongs to (the latest recorded phase that starts at or before it). */
static const struct job_phase_rec *phase_of(const struct coord_job *j, uint64_t step)
{
    const struct job_phase_rec *p = NULL;
    for (uint32_t i = 0; i < j->nphases; i++)
        if (j->phases[i].phase_step <= step)
            p = &j->phases[i];
    return p;
}

static void recover_failed(struct coord_job *j, const char *what)
{
    char msg[1300];
    snprintf(msg, sizeof msg, "parameter-server shard %u exited and could not be replaced: %s",
             j->rc_shard, what);
    j->recovering = 0;
    job_finish(j, JOB_FAILED, msg);
}

static void recover_resume(struct coord_job *j);

static void on_recover_workers(struct coord_job *j, const struct coord_admin_res *res)
{
    if (res->rc) {
        char what[700];
        snprintf(what, sizeof what, "setting the restored phase's %u workers: %s", j->workers,
                 res->err);
        recover_failed(j, what);
        return;
    }
    recover_resume(j);
}

static void on_recover_restored(struct coord_job *j, const struct coord_admin_res *res)
{
    if (res->rc) {
        char what[700];
        snprintf(what, sizeof what, "restoring the checkpoint: %s", res->err);
        recover_failed(j, what);
        return;
    }
    uint64_t at = res->step;
    const struct job_phase_rec *p = phase_of(j, at);
    uint32_t workers = p ? p->workers : j->workers;
    if (p && (p->phase_step != j->phase_step || p->workers != j->workers)) {
        j->phase_step = p->phase_step;
        j->phase_epoch = p->phase_epoch;
        j->spe = 0; /* the first report of the restored phase tells it */
        j->total_steps = 0;
    }
    uint64_t was = j->rc_was;
    if (workers > j->cap)
        workers = j->cap;
    j->workers = workers;
    for (uint32_t k = 0; k < j->cap; k++) {
        struct rank *r = &j->ranks[k];
        r->next_step = at;
        r->at_boundary = 0;
        r->failures = 0;
        r->finished = k >= workers;
    }
    j->step = at;
    if (j->spe)
        j->epoch_done = (int64_t)(j->phase_epoch + (at - j->phase_step) / j->spe) - 1;
    j->barrier_pending = j->barrier_setting = 0;
    j->unfreeze_pending = j->unfreezing = 0;
    j->pending_workers = j->pending_shards = 0;
    j->ns_shards = 0; /* the next noise sample is a baseline */
    j->bd_step = at;
    job_epoch_mark(j, at, smlt_now_mono());
    if (j->shards.pool) {
        char addr[COORD_ADDR_LEN];
        coord_shards_addr(&j->shards, j->rc_shard, addr, sizeof addr);
        addr[strcspn(addr, "/")] = '\0';
        job_event(j, "fault",
                  "parameter-server shard %u was lost with its PS node at step %llu; placed "
                  "again on node %s and every shard restored to the checkpoint of step %llu: "
                  "%llu steps lost, trained again from there by %u workers",
                  j->rc_shard, (unsigned long long)was, addr, (unsigned long long)at,
                  (unsigned long long)(was > at ? was - at : 0), workers);
    } else {
        job_event(j, "fault",
                  "parameter-server shard %u (pid %d) exited at step %llu; replaced by pid %d "
                  "and every shard restored to the checkpoint of step %llu: %llu steps lost, "
                  "trained again from there by %u workers",
                  j->rc_shard, (int)j->rc_pid, (unsigned long long)was,
                  (int)j->shards.pid[j->rc_shard], (unsigned long long)at,
                  (unsigned long long)(was > at ? was - at : 0), workers);
    }
    if (workers != j->rc_conf_workers) {
        /* The shards were configured with the current phase's count. */
        struct coord_admin_req req = {.op = COORD_ADMIN_UPDATE_CONF, .workers = workers};
        job_call(j, &req, on_recover_workers);
        return;
    }
    recover_resume(j);
}

static void recover_invoke(struct coord_job *j)
{
    j->recovering = 0;
    for (uint32_t k = 0; k < j->workers; k++)
        rank_invoke(&j->ranks[k]);
}

/* Replicated shards get their backups back first: the restore's configuration dropped them. */
static void recover_resume(struct coord_job *j)
{
    job_replicas_rebuild(j, recover_invoke);
}

static void on_recover_setup(struct coord_job *j, const struct coord_admin_res *res)
{
    if (res->rc) {
        char what[700];
        snprintf(what, sizeof what, "configuring the shards again: %s", res->err);
        recover_failed(j, what);
        return;
    }
    struct coord_admin_req req = {.op = COORD_ADMIN_RESTORE, .step = 0, .timeout_ms = 60000};
    job_call(j, &req, on_recover_restored);
}

static void on_checkpoint_every(struct coord_job *j, const struct coord_admin_res *res)
{
    if (res->rc)
        job_log(j, "could not change the checkpoint interval: %s", res->err);
}

void job_checkpoint_rate(struct coord_job *j, const struct rank *r)
{
    if (j->ckpt_rate_set || j->spec.checkpoint.every_steps || j->spec.checkpoint.every_s <= 0 ||
        r->cur.steps < 5 || j->recovering)
        return;
    double step_s = (r->cur.compute_s + r->cur.comm_s) / (double)r->cur.steps;
    if (!(step_s > 0))
        return;
    j->ckpt_rate_set = 1;
    double want = j->spec.checkpoint.every_s / step_s;
    uint64_t every = want < 1 ? 1 : want > 1e9 ? 1000000000 : (uint64_t)(want + 0.5);
    if (every == j->ckpt_every)
        return;
    job_log(j, "checkpoints every %llu steps (about %.0f s at %.1f ms per step)",
            (unsigned long long)every, j->spec.checkpoint.every_s, step_s * 1e3);
    j->ckpt_every = every;
    struct coord_admin_req req = {.op = COORD_ADMIN_CHECKPOINT_EVERY, .step = every};
    job_call(j, &req, on_checkpoint_every);
}

static void on_recover_progress(struct coord_job *j, const struct coord_admin_res *res);

int job_recover_shard(struct coord_job *j, uint32_t shard, pid_t pid)
{
    if (!job_checkpoints(j) || !j->shards.local || !j->ranks || j->recovering)
        return -1;
    j->recovering = 1;
    j->rc_shard = shard;
    j->rc_pid = pid;
    job_log(j, "shard %u (pid %d) exited: replacing it and restoring the newest checkpoint",
            shard, (int)pid);
    /* Nothing from before the restore may reach the shards after it. */
    for (uint32_t k = 0; k < j->cap; k++) {
        struct rank *r = &j->ranks[k];
        evtimer_del(r->retry_ev);
        rank_cancel(r);
    }
    coord_backend_drop_function(j->c->backend, j->id);
    if (j->admin)
        coord_admin_cancel_all(j->admin);
    j->bd.stage = BD_IDLE;
    /* Where the shards that live got to: the steps lost are counted from there (the job's own
     * step, from the workers' reports, trails them). */
    j->rc_was = j->step;
    struct coord_admin_req req = {.op = COORD_ADMIN_STATS, .timeout_ms = 5000};
    job_call(j, &req, on_recover_progress);
    return 0;
}

/* Replaces the dead shards, configures every shard again and restores (recovery, step 2). */
static void recover_replace(struct coord_job *j)
{
    uint32_t shard = j->rc_shard;
    char err[512] = "";
    if (coord_shards_replace(&j->shards, shard, j->c->ps_bin, j->dir, err, sizeof err) != 0) {
        recover_failed(j, err);
        return;
    }
    /* Any other shard that died meanwhile is replaced too: the restore needs them all. */
    for (uint32_t k = 0; k < j->shards.n; k++) {
        if (k == shard || coord_shards_up(&j->shards, k, 0))
            continue;
        job_log(j, "shard %u (pid %d) has exited too: replacing it", k, (int)j->shards.pid[k]);
        if (coord_shards_replace(&j->shards, k, j->c->ps_bin, j->dir, err, sizeof err) != 0) {
            recover_failed(j, err);
            return;
        }
    }
    job_journal_shards(j);
    struct coord_admin_req req = {.op = COORD_ADMIN_SETUP, .timeout_ms = 60000};
    job_setup_req(j, &req);
    j->rc_conf_workers = req.conf.workers;
    /* A higher map version: clients holding the old map (and the old address) refresh it. */
    j->map_version++;
    req.conf.map_version = j->map_version;
    job_call(j, &req, on_recover_setup);
}

static void on_recover_progress(struct coord_job *j, const struct coord_admin_res *res)
{
    for (uint32_t k = 0; !res->rc && k < res->nshards; k++)
        if (res->stats_rc[k] == 0 && res->stats[k].version > j->rc_was)
            j->rc_was = res->stats[k].version;
    recover_replace(j);
}
