/* coord_phase.c: phases. Changes (worker count, shard count, straggler replacement) happen
 * with every rank parked at one epoch boundary. Jobs with a deadline or a budget park at every
 * boundary (the scheduler decides at each), and once inside epoch 1, at the end of a short
 * profiling phase (job_profile()); the others train through boundaries and get a barrier from
 * the shards (smlt_freeze_at_boundary()) only when there is a change to make. A stop that
 * cannot wait for a boundary (the budget, a reached target) halts every rank at one step
 * (job_halt_workers()).
 *
 * Every call to the shards goes through the job's admin queue (coord_admin.h) and continues in
 * its callback, so a boundary is a small state machine (j->bd.stage): lift the barrier, sample
 * the noise figures, decide, reshard, take a new noise baseline, change the worker count,
 * invoke the next phase. While a stage waits, the loop serves everything else; a boundary in
 * progress is not started again, and a job that ends meanwhile drops it. */
#include "coord_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smlt_error.h"

#define PROFILE_SHARE 10
#define PROFILE_MIN_STEPS 4

/* Whether an admin call's result still matters: not when the job ended or is ending. */
static int job_gone(const struct coord_job *j)
{
    return job_ended(j) || j->finishing || j->recovering;
}

/* The next epoch's figures (job_measure()) start at `step`, time t. */
void job_epoch_mark(struct coord_job *j, uint64_t step, double t)
{
    for (uint32_t k = 0; k < j->cap; k++)
        rank_mark(&j->ranks[k].ep, &j->ranks[k]);
    job_totals(j, &j->compute_at_epoch, &j->comm_at_epoch);
    j->epoch_started = t;
    j->epoch_step0 = step;
}

/* Ranks with no invocation whose cursor is at a barrier just set (their slice ended there, or
 * was refused there while the barrier was being set) count as arrived. */
static void job_mark_parked(struct coord_job *j, uint64_t at)
{
    for (uint32_t k = 0; k < j->workers; k++) {
        struct rank *r = &j->ranks[k];
        if (!r->cur.id && !r->finished && r->next_step == at) {
            evtimer_del(r->retry_ev);
            r->failures = 0;
            r->at_boundary = 1;
        }
    }
}

/* ---- barriers ---------------------------------------------------------------------------- */

static void on_unfrozen_late(struct coord_job *j, const struct coord_admin_res *res)
{
    j->unfreezing = 0;
    j->unfreeze_pending = res->rc != 0 && !job_gone(j);
    if (j->unfreeze_pending)
        job_log(j, "could not call off a barrier that failed to set (%s); trying again",
                res->err);
}

/* After a barrier could not be set: some shards may have taken it (a shard failed to answer
 * the second round); call it off, so they do not refuse the step to ranks that will not park
 * there. on_tick() calls again while that fails. */
void job_retry_unfreeze(struct coord_job *j)
{
    if (j->unfreezing || job_gone(j))
        return;
    j->unfreezing = 1;
    struct coord_admin_req req = {.op = COORD_ADMIN_UNFREEZE};
    job_call(j, &req, on_unfrozen_late);
}

static void on_barrier_set(struct coord_job *j, const struct coord_admin_res *res)
{
    j->barrier_setting = 0;
    if (job_gone(j))
        return;
    if (res->rc) {
        /* Quiet when a shard was just passing the step: on_tick() asks again. */
        if (res->rc != SMLT_EAGAIN) {
            job_log(j, "could not set a barrier (%s); trying again", res->err);
            job_retry_unfreeze(j);
        }
        return;
    }
    uint64_t at = res->step;
    j->barrier_pending = 1;
    j->barrier_step = at;
    job_log(j, "barrier at step %llu (epoch %llu's end)", (unsigned long long)at,
            (unsigned long long)(j->phase_epoch + (at - j->phase_step) / j->spe));
    job_mark_parked(j, at);
    job_boundary(j);
}

/* Asks the shards to stop every rank at the next epoch boundary, where job_boundary() makes
 * a change (a job whose ranks do not park at every boundary). Quiet when it cannot be set yet
 * (steps per epoch unknown, a shard just passing the step): on_tick() asks again. */
void job_request_barrier(struct coord_job *j, const char *why)
{
    if (j->parks || j->barrier_pending || j->barrier_setting || !j->spe || j->stopping ||
        job_gone(j))
        return;
    j->barrier_setting = 1;
    job_log(j, "asking the shards for a barrier at the next epoch boundary for %s", why);
    struct coord_admin_req req = {.op = COORD_ADMIN_FREEZE, .base = j->phase_step, .align = j->spe};
    job_call(j, &req, on_barrier_set);
}

/* ---- the profile ------------------------------------------------------------------------- */

static void on_profile_lifted(struct coord_job *j, const struct coord_admin_res *res)
{
    if (job_gone(j))
        return;
    if (res->rc) {
        /* It stays where it is, as the profile's end. */
        j->profile_state = PROFILE_SET;
        j->barrier_pending = 1;
        job_mark_parked(j, j->profile_step);
        job_boundary(j);
        return;
    }
    j->profile_state = PROFILE_DONE;
    job_log(j, "no profiling phase: the workers are at step %llu of %llu in epoch 1 already; "
               "the first decision comes at its end",
            (unsigned long long)j->profile_step, (unsigned long long)j->spe);
}

static void on_profile_set(struct coord_job *j, const struct coord_admin_res *res)
{
    if (job_gone(j))
        return;
    if (res->rc) {
        if (res->rc == SMLT_EAGAIN) {
            j->profile_state = PROFILE_NONE; /* tried again at the next report */
            return;
        }
        job_log(j, "no profiling phase: could not set its barrier (%s)", res->err);
        j->profile_state = PROFILE_DONE;
        job_retry_unfreeze(j);
        return;
    }
    uint64_t at = res->step;
    j->profile_step = at;
    if (at * 4 >= j->spe) {
        struct coord_admin_req req = {.op = COORD_ADMIN_UNFREEZE};
        job_call(j, &req, on_profile_lifted);
        return;
    }
    j->profile_state = PROFILE_SET;
    j->barrier_pending = 1;
    j->barrier_step = at;
    job_log(j, "profiling: %u workers, %u shards train to step %llu of the %llu in epoch 1; "
               "the scheduler decides there",
            j->workers, j->shards.n, (unsigned long long)at, (unsigned long long)j->spe);
    job_mark_parked(j, at);
    job_boundary(j);
}

/* The profiling phase of a job with a deadline or a budget: its first configuration trains
 * the first tenth of epoch 1 (at least PROFILE_MIN_STEPS, or up to where the shards are when
 * the first progress report tells the steps per epoch), and every rank stops at a barrier
 * there, where job_boundary() gives the scheduler its first measurement and asks for a
 * decision, instead of waiting for the epoch's end. A change there starts a new phase at that
 * step: epoch 1 begins again over the new partitions, and the profile's steps count as extra
 * training. Skipped (the first decision comes at epoch 1's end) when the barrier would fall
 * past the first quarter of the epoch (short epochs), or where the shards cannot stop every
 * rank at a step of our choosing (not BSP, or no admin token). Tried again at the next report
 * when a shard passed the step while the barrier was being set. */
void job_profile(struct coord_job *j)
{
    if (j->profile_state != PROFILE_NONE || job_gone(j) || j->stopping || !j->spe)
        return;
    if (!(j->spec.deadline_s > 0 || j->spec.budget_usd > 0) || j->spec.sync != SMLT_SYNC_BSP ||
        !j->shards.admin_token[0] || j->phase_step || j->phase_epoch || j->barrier_pending ||
        j->barrier_setting || j->step * 4 >= j->spe) {
        j->profile_state = PROFILE_DONE;
        return;
    }
    uint64_t want = (j->spe + PROFILE_SHARE - 1) / PROFILE_SHARE;
    if (want < PROFILE_MIN_STEPS)
        want = PROFILE_MIN_STEPS;
    j->profile_state = PROFILE_SETTING;
    /* Aligned to 1 from `want`: the barrier is at `want`, or where the shards already are. */
    struct coord_admin_req req = {.op = COORD_ADMIN_FREEZE, .base = want, .align = 1};
    job_call(j, &req, on_profile_set);
}

/* At the profile's end (step `at`, time t): records its measurements (the view's and the
 * journal's `profile`) and returns 1 with its steady rates in *rates when they are fit for a
 * decision, which `decision` says is made there. */
static int job_profile_end(struct coord_job *j, uint64_t at, double t, int decision,
                           struct job_rates *rates)
{
    int ok = job_profile_rates(j, at, rates);
    json_decref(j->profile);
    j->profile = job_measure(j, at, t, "time_s");
    if (!j->profile)
        return ok;
    json_object_set_new(j->profile, "decision", json_boolean(ok && decision));
    if (ok) {
        /* What the scheduler is given: after each worker's first step, per step. */
        json_object_set_new(j->profile, "steady_step_s",
                            json_real(rates->compute_s + rates->comm_s));
        json_object_set_new(j->profile, "steady_compute_s", json_real(rates->compute_s));
        json_object_set_new(j->profile, "steady_comm_s", json_real(rates->comm_s));
    }
    coord_journal_append(j->journal, "profile", j->profile, 0);
    return ok;
}

/* ---- halting at one step ----------------------------------------------------------------- */

/* Whether no active rank can have reached the pending barrier: each has reported within its
 * current invocation, and from its last reported step, at its step time, cannot have come
 * within two steps of the barrier since (with a second to spare). */
static int job_barrier_far(const struct coord_job *j)
{
    double t = smlt_now_mono();
    for (uint32_t k = 0; k < j->workers; k++) {
        const struct rank *r = &j->ranks[k];
        if (r->finished)
            continue;
        if (r->at_boundary || !r->cur.id || r->cur.steps == 0 || r->last_report < r->cur.started)
            return 0;
        double step_s = (r->cur.compute_s + r->cur.comm_s) / (double)r->cur.steps;
        if (step_s <= 0)
            return 0;
        double reach = (double)r->next_step + (t - r->last_report + 1.0) / step_s + 2.0;
        if (reach >= (double)j->barrier_step)
            return 0;
    }
    return 1;
}

static void on_profile_barrier_lifted(struct coord_job *j, const struct coord_admin_res *res)
{
    if (res->rc == 0 && !job_gone(j)) {
        j->barrier_pending = 0;
        j->profile_state = PROFILE_DONE;
    }
}

static void on_stopped_at(struct coord_job *j, const struct coord_admin_res *res)
{
    j->halting = 0;
    if (job_gone(j))
        return;
    if (res->rc)
        job_log(j, "could not stop the shards at one step (%s); workers stop on their own",
                res->err);
    else
        job_log(j, "the workers stop at step %llu", (unsigned long long)res->step);
}

/* Stops every rank at one step (BSP needs them to end together; the shards refuse the next
 * step to all). For a stop that cannot wait for a boundary: the budget, a reached target. */
void job_halt_workers(struct coord_job *j)
{
    if (j->halting || job_gone(j))
        return;
    j->halting = 1;
    /* The profile's barrier, set ahead, would hold the stop until the ranks reach it: the
     * shards only ever move a freeze later. Lift it first, so they stop where they are, when
     * no rank can have reached it yet (one refused there would never push that step, and the
     * others would wait for it). Otherwise the stop lands on it. The queue runs the two calls
     * in order. */
    if (j->barrier_pending && j->profile_state == PROFILE_SET && job_barrier_far(j)) {
        struct coord_admin_req lift = {.op = COORD_ADMIN_UNFREEZE};
        job_call(j, &lift, on_profile_barrier_lifted);
    }
    struct coord_admin_req req = {.op = COORD_ADMIN_STOP_AT};
    job_call(j, &req, on_stopped_at);
}

/* ---- epoch boundaries -------------------------------------------------------------------- */

static void boundary_decide(struct coord_job *j);
static void boundary_apply(struct coord_job *j);
static void boundary_workers(struct coord_job *j);
static void boundary_resume(struct coord_job *j);

static void on_bd_lifted(struct coord_job *j, const struct coord_admin_res *res)
{
    j->bd.stage = BD_IDLE;
    if (job_gone(j))
        return;
    if (res->rc) {
        /* on_tick() tries again: invoked now, the ranks would be refused at once. */
        job_log(j, "could not lift the barrier at step %llu (%s); trying again",
                (unsigned long long)j->barrier_step, res->err);
        return;
    }
    j->barrier_pending = 0;
    boundary_decide(j);
}

/* Every active rank is parked at the epoch boundary (or at a barrier): apply changes, start
 * the next phase. Called whenever a rank parks, and by on_tick() while a barrier is pending. */
void job_boundary(struct coord_job *j)
{
    if (job_gone(j) || !j->ranks || j->bd.stage != BD_IDLE)
        return;
    for (uint32_t k = 0; k < j->workers; k++)
        if (!j->ranks[k].at_boundary && !j->ranks[k].finished)
            return;
    if (j->stopping) {
        for (uint32_t k = 0; k < j->workers; k++)
            j->ranks[k].finished = 1;
        job_check_done(j);
        return;
    }
    if (!j->barrier_pending) {
        boundary_decide(j);
        return;
    }
    j->bd.stage = BD_LIFT;
    struct coord_admin_req req = {.op = COORD_ADMIN_UNFREEZE};
    job_call(j, &req, on_bd_lifted);
}

static void on_bd_noise(struct coord_job *j, const struct coord_admin_res *res)
{
    if (job_gone(j)) {
        j->bd.stage = BD_IDLE;
        return;
    }
    j->ns_fresh = job_take_stats(j, res, NULL) > 0;
    boundary_apply(j);
}

/* The boundary's step, epoch and kind (the profile's end or an epoch's), the profile's
 * record; then the shards' noise figures since the last sample (one round trip per shard),
 * for the scheduler, the epoch accounting and the view. */
static void boundary_decide(struct coord_job *j)
{
    uint64_t at = j->ranks[0].next_step;
    uint32_t epoch = j->phase_epoch + (uint32_t)((at - j->phase_step) / (j->spe ? j->spe : 1));
    double t = smlt_now_mono();
    /* The profile's end, inside epoch 1 (see job_profile()). */
    int profile = j->profile_state == PROFILE_SET && at == j->profile_step && j->spe &&
                  (at - j->phase_step) % j->spe != 0;
    if (j->profile_state == PROFILE_SET && at >= j->profile_step)
        j->profile_state = PROFILE_DONE;
    int manual = j->pending_workers || j->pending_shards;
    j->bd.at = at;
    j->bd.epoch = epoch;
    j->bd.t = t;
    j->bd.profile = profile;
    j->bd.decide = 1;
    j->bd.rates_ok = 0;
    if (profile) {
        /* At the profile's end: a decision only on its steady rates (else at epoch 1's end). */
        j->bd.rates_ok = job_profile_end(j, at, t, !manual, &j->bd.rates);
        j->bd.decide = manual || j->bd.rates_ok;
    }
    snprintf(j->bd.when, sizeof j->bd.when, profile ? "after the profile" : "epoch %u", epoch);
    j->bd.stage = BD_NOISE;
    struct coord_admin_req req = {.op = COORD_ADMIN_STATS, .timeout_ms = 5000};
    job_call(j, &req, on_bd_noise);
}

static void on_bd_baseline(struct coord_job *j, const struct coord_admin_res *res)
{
    if (job_gone(j)) {
        j->bd.stage = BD_IDLE;
        return;
    }
    job_take_stats(j, res, NULL); /* a new baseline on the new shards */
    boundary_workers(j);
}

static void on_bd_resharded(struct coord_job *j, const struct coord_admin_res *res)
{
    uint32_t before = j->bd.shards_before, ns = j->bd.ns;
    if (res->rc) {
        if (ns > before)
            coord_shards_shrink(&j->shards, before);
        snprintf(j->shards.addrs, sizeof j->shards.addrs, "%s", j->bd.old_addrs);
    } else {
        job_charge_ps(j);
        if (ns < before)
            coord_shards_shrink(&j->shards, ns);
        coord_shards_addrs(&j->shards, ns, j->shards.addrs, sizeof j->shards.addrs);
        j->map_version++; /* a reshard publishes the map at the next version */
        job_journal_shards(j);
    }
    if (job_gone(j)) {
        j->bd.stage = BD_IDLE;
        return;
    }
    if (res->rc) {
        job_event(j, "scale", "resharding %u -> %u at step %llu failed (%s); keeping %u",
                  before, ns, (unsigned long long)j->bd.at, res->err, before);
        boundary_workers(j);
        return;
    }
    job_log(j, "resharded %u -> %u shards at step %llu in %.3f s", before, ns,
            (unsigned long long)res->step, res->seconds);
    job_event(j, "scale", "%s: %u -> %u shards at step %llu", j->bd.when, before, ns,
              (unsigned long long)j->bd.at);
    j->bd.stage = BD_BASELINE;
    struct coord_admin_req req = {.op = COORD_ADMIN_STATS, .timeout_ms = 5000};
    job_call(j, &req, on_bd_baseline);
}

/* Moves the job to bd.ns shards (live reshard): starts the new local shards, then has the
 * shards of the current map move their ranges. */
static void boundary_reshard(struct coord_job *j)
{
    uint32_t old = j->shards.n, shards = j->bd.ns;
    char err[512] = "";
    int rc = 0;
    j->bd.shards_before = old;
    snprintf(j->bd.old_addrs, sizeof j->bd.old_addrs, "%s", j->shards.addrs);
    if (!j->shards.local) {
        snprintf(err, sizeof err, "the shards run elsewhere (spec \"ps\"): their count is fixed");
        rc = SMLT_EINVAL;
    } else if (shards > old) {
        rc = coord_shards_grow(&j->shards, shards, j->c->ps_bin, j->dir, err, sizeof err);
    }
    if (rc) {
        job_event(j, "scale", "resharding %u -> %u at step %llu failed (%s); keeping %u", old,
                  shards, (unsigned long long)j->bd.at, err, old);
        boundary_workers(j);
        return;
    }
    j->bd.stage = BD_RESHARD;
    struct coord_admin_req req = {.op = COORD_ADMIN_RESHARD, .timeout_ms = 120000};
    coord_shards_addrs(&j->shards, shards, req.new_addrs, sizeof req.new_addrs);
    job_admin_target(j, &req); /* (the token; job_call() keeps addresses already set) */
    /* The admin client must know the old map's shards only: connect before the new ones join. */
    coord_shards_addrs(&j->shards, old, req.addrs, sizeof req.addrs);
    job_call(j, &req, on_bd_resharded);
}

/* After the decision: statistical efficiency's count, the scheduler (or a manual scale), the
 * stragglers; then the shard count and the worker count change if they must. */
static void boundary_apply(struct coord_job *j)
{
    uint64_t at = j->bd.at;
    uint32_t epoch = j->bd.epoch;
    if (j->spec.statistical_efficiency) {
        job_account_ref(j, epoch);
        if (((double)j->spec.max_epochs - j->ref_done) * job_epoch_factor(j, j->workers) <=
            JOB_EPOCH_SLACK) {
            /* Every reference epoch is trained: nothing to change, the job is done. */
            j->bd.stage = BD_IDLE;
            job_retarget(j, epoch);
            return;
        }
    }
    int manual = j->pending_workers || j->pending_shards;
    uint32_t nw = j->pending_workers ? j->pending_workers : j->workers;
    uint32_t ns = j->pending_shards ? j->pending_shards : j->shards.n;
    j->pending_workers = j->pending_shards = 0;
    if (!j->bd.decide) {
        job_log(j, "the profile's steps do not measure the configuration cleanly (a rank was "
                   "invoked again); the first decision comes at epoch 1's end");
    } else if (manual) {
        double steps, dc, dm;
        job_decision_point(j, at, &steps, &dc, &dm); /* the next interval starts here */
    } else if (job_schedule(j, epoch, at, j->bd.profile ? &j->bd.rates : NULL, j->bd.t, &nw,
                            &ns)) {
        /* The budget does not allow another epoch: end here, model saved. */
        j->bd.stage = BD_IDLE;
        for (uint32_t k = 0; k < j->workers; k++)
            j->ranks[k].finished = 1;
        job_check_done(j);
        return;
    }
    /* After the scheduler has the last invocations' compute per step (the slowest rank's). */
    job_check_stragglers(j);
    if (j->bd.decide)
        j->boundary_at = j->bd.t; /* the next interval starts here */
    if (nw != j->workers || ns != j->shards.n)
        j->changed_at = j->bd.t;
    j->bd.nw = nw;
    j->bd.ns = ns;
    if (ns != j->shards.n)
        boundary_reshard(j);
    else
        boundary_workers(j);
}

/* A new phase: partitions of the data over nw ranks from this epoch on (after the profile,
 * from this epoch's start: its first steps were extra training). */
static void job_new_phase(struct coord_job *j, uint32_t nw)
{
    uint64_t at = j->bd.at;
    double tu = smlt_now_unix();
    j->worker_s += j->workers * (tu - (j->workers_since > 0 ? j->workers_since : j->started_unix));
    j->workers_since = tu;
    j->phase_step = at;
    j->phase_epoch = j->bd.epoch;
    j->spe = 0;
    j->total_steps = 0;
    for (uint32_t k = 0; k < nw; k++) {
        struct rank *r = &j->ranks[k];
        if (k >= j->workers) {
            r->finished = 0;
            r->failures = 0;
            r->cur.loss = 0;
        }
        r->next_step = at;
        if (k >= j->workers)
            rank_mark(&r->ep, r); /* its epoch figures start here */
    }
    j->workers = nw;
    j->ckpt_rate_set = 0; /* the step time changes with the fan-out */
    if (j->bd.profile)
        job_epoch_mark(j, at, smlt_now_mono());
    job_journal_phase(j);
}

static void on_bd_workers(struct coord_job *j, const struct coord_admin_res *res)
{
    if (job_gone(j)) {
        j->bd.stage = BD_IDLE;
        return;
    }
    uint32_t nw = j->bd.nw;
    if (res->rc) {
        job_event(j, "scale", "changing to %u workers failed (%s); keeping %u", nw, res->err,
                  j->workers);
    } else {
        job_event(j, "scale", "%s: %u -> %u workers at step %llu%s", j->bd.when, j->workers, nw,
                  (unsigned long long)j->bd.at,
                  j->bd.profile ? " (epoch 1 starts again over the new partitions)" : "");
        job_new_phase(j, nw);
    }
    boundary_resume(j);
}

/* Changes BSP's expected worker count on the shards when the fan-out changes. */
static void boundary_workers(struct coord_job *j)
{
    if (j->bd.nw == j->workers) {
        boundary_resume(j);
        return;
    }
    j->bd.stage = BD_WORKERS;
    struct coord_admin_req req = {.op = COORD_ADMIN_UPDATE_CONF, .workers = j->bd.nw};
    job_call(j, &req, on_bd_workers);
}

/* The boundary is done: the next phase's invocations. */
static void boundary_resume(struct coord_job *j)
{
    j->bd.stage = BD_IDLE;
    if (j->spec.statistical_efficiency && job_retarget(j, j->bd.epoch))
        return; /* the reference epochs are done */
    for (uint32_t k = 0; k < j->workers; k++) {
        j->ranks[k].at_boundary = 0;
        rank_invoke(&j->ranks[k]);
    }
}
