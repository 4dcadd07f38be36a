/* coord_resume.c: a job goes on after its coordinator died (issue 11, "the coordinator can
 * die at any moment").
 *
 * Local shards are persistent nodes: they outlive the coordinator (coord_shards.c starts them
 * without a parent-death signal, with smlt-ps --orphan-exit as the last resort), and the
 * journal records their addresses, pids and tokens ("shards") and each phase of the job
 * ("phase": its first step and epoch, the workers, the memory size). When the coordinator
 * comes back, coord_restore.c replays the journal and calls job_resume() for every job that
 * had not ended:
 *   - a queued job starts as if just submitted;
 *   - a running one adopts its shards: every local shard's process must still run, every
 *     shard must accept the recorded admin token (its identity: tokens are random per job),
 *     any barrier or stop left on them is lifted, and their step is read (the lowest version);
 *     then the worker instances still running their invocations are adopted (coord_adopt.c:
 *     they reconnect and finish their slices), and every other rank is invoked from that
 *     step, in the recorded phase; a step a lost worker had half pushed is pushed again by
 *     its replacement, and the shards count each (rank, step) once. The ledger continues
 *     from its last record, and the PS nodes are billed for the time the coordinator was
 *     away;
 *   - anything else is INTERRUPTED with the reason it cannot go on. */
#include "coord_int.h"

#include <stdio.h>
#include <string.h>

#include "smlt_error.h"
#include "smlt_proc.h"

static void job_cannot_resume(struct coord_job *j, const char *why)
{
    char msg[1100];
    snprintf(msg, sizeof msg, "the coordinator restarted while the job ran, and it cannot "
                              "resume: %s",
             why);
    if (j->resume_from_unix > 0)
        j->ended_unix = j->resume_from_unix; /* last heard of */
    snprintf(j->reason, sizeof j->reason, "%.*s", (int)sizeof j->reason - 1, msg);
    job_set_state(j, JOB_INTERRUPTED, msg);
}

/* What a resumed job needs before it runs again: its ranks, the recorded phase's workers and
 * memory size, its clock, and the PS nodes billed for the time it was away. Returns 0 or
 * SMLT_ENOMEM. */
int job_resume_setup(struct coord_job *j)
{
    if (!j->ranks && job_ranks_new(j) != 0)
        return SMLT_ENOMEM;
    if (!j->workers || j->workers > j->cap)
        j->workers = j->spec.workers;
    if (!j->memory_mb)
        j->memory_mb = j->spec.platform.memory_mb;
    j->spe = 0; /* the first report tells it again */
    j->total_steps = 0;
    double now_u = smlt_now_unix(), now_m = smlt_now_mono();
    /* Elapsed time goes on from the job's start; the PS nodes ran while nobody watched. */
    j->t_start = now_m - (now_u - j->started_unix);
    /* The PS nodes from when the restored ledger was recorded (it charged them up to then). */
    double billed_to = j->ledger_unix > 0 ? j->ledger_unix : j->resume_from_unix;
    if (billed_to > 0)
        coord_ledger_charge_ps(&j->ledger, &j->spec.prices, coord_shards_nodes(&j->shards),
                               now_u - billed_to);
    j->resume_from_unix = 0;
    j->ps_charged_at = now_m;
    j->epoch_started = j->boundary_at = now_m;
    j->rp_done = 1;
    return 0;
}

static void on_resume_stats(struct coord_job *j, const struct coord_admin_res *res)
{
    char why[700];
    if (res->rc || res->nshards != j->shards.n) {
        snprintf(why, sizeof why, "reading the shards' step: %s",
                 res->rc ? res->err : "a different shard count than recorded");
        job_cannot_resume(j, why);
        return;
    }
    uint64_t step = UINT64_MAX;
    for (uint32_t k = 0; k < res->nshards; k++) {
        if (res->stats_rc[k]) {
            snprintf(why, sizeof why, "shard %u did not report its step (%s)", k,
                     smlt_strerror(res->stats_rc[k]));
            job_cannot_resume(j, why);
            return;
        }
        if (res->stats[k].version < step)
            step = res->stats[k].version;
        if (res->stats[k].map_version > j->map_version)
            j->map_version = res->stats[k].map_version;
    }
    job_take_stats(j, res, NULL); /* the noise baseline */
    if (job_resume_setup(j) != 0) {
        job_cannot_resume(j, "out of memory");
        return;
    }
    for (uint32_t k = 0; k < j->workers; k++)
        j->ranks[k].next_step = step;
    j->step = step;
    uint32_t adopted = job_adopt(j);
    if (j->profile || j->phase_step || step > 0)
        j->profile_state = PROFILE_DONE;
    j->bd_step = step;
    job_epoch_mark(j, step, smlt_now_mono());
    job_event(j, "resume",
              "the coordinator restarted: adopted %u shard%s at %s and %u running worker "
              "instance%s; the other ranks go on from step %llu (the shards' step), %u workers, "
              "phase from step %llu",
              j->shards.n, j->shards.n == 1 ? "" : "s", j->shards.addrs, adopted,
              adopted == 1 ? "" : "s", (unsigned long long)step, j->workers,
              (unsigned long long)j->phase_step);
    job_go(j);
}

static void on_resume_unfrozen(struct coord_job *j, const struct coord_admin_res *res)
{
    if (res->rc) {
        char why[1000];
        snprintf(why, sizeof why, "its shards at %.120s did not accept the recorded admin token "
                                  "or did not answer (%s)",
                 j->shards.addrs, res->err);
        job_cannot_resume(j, why);
        return;
    }
    struct coord_admin_req req = {.op = COORD_ADMIN_STATS, .timeout_ms = 10000};
    job_call(j, &req, on_resume_stats);
}

void job_resume(struct coord_job *j, int have_shards)
{
    if (j->state == JOB_QUEUED && j->have_spec) {
        job_event(j, "resume", "the coordinator restarted before the job started: starting it");
        j->start_ev = evtimer_new(j->c->base, job_on_start, j);
        struct timeval now = {0, 0};
        evtimer_add(j->start_ev, &now);
        return;
    }
    if (!j->have_spec) {
        job_cannot_resume(j, "its recorded spec no longer parses");
        return;
    }
    if (!have_shards || !j->shards.admin_token[0]) {
        job_cannot_resume(j, "the journal has no record of its shards (a journal from before "
                             "shards were recorded, or the job died while starting them)");
        return;
    }
    /* (Pool shards are checked by their nodes' state from the first tick on.) */
    for (uint32_t i = 0; j->shards.local && !j->shards.pool && i < j->shards.n; i++) {
        if (!smlt_proc_alive(j->shards.pid[i])) {
            pid_t gone = j->shards.pid[i];
            if (job_checkpoints(j) && job_resume_setup(j) == 0) {
                /* Its running instances are taken back first, so that the recovery stops
                 * them with the others: nothing from before the restore may reach it. */
                job_adopt(j);
                /* A shard died while the coordinator was away: it is replaced from the
                 * checkpoints, as if it had died now (coord_recover.c). */
                job_event(j, "resume", "the coordinator restarted and shard %u (pid %d) had "
                                       "died meanwhile: replacing it from the checkpoints",
                          i, (int)gone);
                job_set_state(j, JOB_RUNNING, NULL);
                j->tick_ev = evtimer_new(j->c->base, job_on_tick, j);
                struct timeval sec = {(time_t)JOB_TICK_S, 0};
                evtimer_add(j->tick_ev, &sec);
                if (job_recover_shard(j, i, gone) == 0)
                    return;
            }
            char why[300];
            snprintf(why, sizeof why, "its shard %u (pid %d) is gone%s", i, (int)gone,
                     job_checkpoints(j) ? "" : " and the job takes no checkpoints");
            j->shards.pid[i] = 0;
            job_cannot_resume(j, why);
            return;
        }
    }
    /* In memory only (a journaled "starting" would move the job's start time). */
    j->state = JOB_STARTING;
    job_log(j, "the coordinator restarted: adopting %u shards at %s", j->shards.n,
            j->shards.addrs);
    /* A barrier or a stop the old coordinator left on them would refuse the next step. */
    struct coord_admin_req req = {.op = COORD_ADMIN_UNFREEZE, .timeout_ms = 10000};
    job_call(j, &req, on_resume_unfrozen);
}
