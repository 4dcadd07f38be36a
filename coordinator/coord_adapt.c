/* coord_adapt.c: adaptation: what the coordinator feeds the scheduler at a decision point
 * (an epoch boundary, or the profile's end) and what it does with the answer, statistical
 * efficiency (epochs counted at a reference global batch by the measured gradient noise
 * scale), the noise figures from the shards' stats, and stragglers. Called from the phases
 * (coord_phase.c); no network here: the shards' stats come in as an admin call's result. */
#include "coord_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The compute and communication totals over every rank the job has had (one that left keeps
 * its sums, so a difference of two totals is the active ranks' work). */
void job_totals(const struct coord_job *j, double *compute, double *comm)
{
    *compute = *comm = 0;
    for (uint32_t k = 0; k < j->cap; k++) {
        *compute += j->ranks[k].tot.compute_s + j->ranks[k].cur.compute_s;
        *comm += j->ranks[k].tot.comm_s + j->ranks[k].cur.comm_s;
    }
}

/* Takes the shards' summed noise figures (n shards): returns 1 and sets j->noise_scale from
 * what they gathered since the baseline (B_simple = batch * sum of tr(Sigma)/b estimates /
 * sum of |G|^2 estimates), or 0 when they tell nothing new. */
int job_take_noise(struct coord_job *j, double g2, double sn, uint64_t steps, uint32_t n)
{
    if (j->ns_shards && n == j->ns_shards && steps >= j->ns_steps) {
        if (steps == j->ns_steps || !(g2 - j->ns_g2 > 0 && sn - j->ns_s > 0))
            return 0; /* nothing new, or |G|^2 lost in the noise: the baseline stays, so the
                       * next interval covers this one too (no bias toward large |G|^2) */
        j->noise_scale = (double)j->spec.batch_size * (sn - j->ns_s) / (g2 - j->ns_g2);
        j->ns_g2 = g2;
        j->ns_s = sn;
        j->ns_steps = steps;
        return 1;
    }
    /* A new baseline: the first sample (taken when the job starts, so shards that served
     * another job before do not count it), a reshard (the sums restart on new shards and
     * ranges move), or counters that went back (a restarted shard). */
    j->ns_g2 = g2;
    j->ns_s = sn;
    j->ns_steps = steps;
    j->ns_shards = n;
    return 0;
}

int job_take_stats(struct coord_job *j, const struct coord_admin_res *res, json_t *counters)
{
    if (res->rc || !res->nshards)
        return -1;
    double g2 = 0, sn = 0;
    uint64_t steps = 0;
    uint32_t n = res->nshards, got = 0;
    for (uint32_t k = 0; k < n; k++) {
        const struct smlt_shard_stats *st = &res->stats[k];
        if (res->stats_rc[k] != 0)
            continue;
        got++;
        g2 += st->noise_g2;
        sn += st->noise_s;
        steps += st->noise_steps;
        if (counters)
            json_array_append_new(
                counters,
                json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "shard",
                          (int)k, "version", (json_int_t)st->version, "clock",
                          (json_int_t)st->clock, "pushes_counted",
                          (json_int_t)st->pushes_counted, "pushes_duplicate",
                          (json_int_t)st->pushes_duplicate, "pushes_rejected",
                          (json_int_t)st->pushes_rejected, "updates_applied",
                          (json_int_t)st->updates_applied, "map_version",
                          (json_int_t)st->map_version, "checkpoints_written",
                          (json_int_t)st->checkpoints_written, "checkpoints_skipped",
                          (json_int_t)st->checkpoints_skipped, "checkpoint_last_step",
                          (json_int_t)st->checkpoint_last_step, "checkpoint_write_s",
                          st->checkpoint_write_seconds));
    }
    /* The noise figures need every shard. */
    return got == n ? job_take_noise(j, g2, sn, steps, n) : got ? 0 : -1;
}

/* Statistical efficiency: one reference epoch takes this many data epochs at `workers`. */
double job_epoch_factor(const struct coord_job *j, uint32_t workers)
{
    return sched_epoch_factor(j->spec.batch_size, j->ref_workers, workers, j->noise_scale);
}

/* Counts the data epochs trained since the last count, at the current fan-out and the noise
 * scale measured over them, as reference epochs. */
void job_account_ref(struct coord_job *j, uint32_t epoch)
{
    if (epoch <= j->ref_epoch)
        return;
    j->ref_done += (double)(epoch - j->ref_epoch) / job_epoch_factor(j, j->workers);
    j->ref_epoch = epoch;
}

/* The median of v[0..n) (n >= 1; sorts v in place). */
static double median(double *v, uint32_t n)
{
    for (uint32_t a = 1; a < n; a++)
        for (uint32_t b = a; b > 0 && v[b - 1] > v[b]; b--) {
            double x = v[b];
            v[b] = v[b - 1];
            v[b - 1] = x;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* A job whose ranks do not park: watches the current invocations' compute time per step and
 * sets a barrier when one rank is much slower than the others, so that job_check_stragglers()
 * can replace it at the boundary. At most once every 20 s. */
void job_watch_stragglers(struct coord_job *j, double t)
{
    if (j->parks || j->barrier_pending || j->workers < 2 || t - j->straggler_barrier_at < 20)
        return;
    double v[COORD_SPEC_MAX_WORKERS], slow = 0;
    uint32_t n = 0, who = 0;
    for (uint32_t k = 0; k < j->workers; k++) {
        struct rank *r = &j->ranks[k];
        if (!r->cur.id || r->cur.steps < 20)
            return;
        v[n++] = r->cur.compute_s / (double)r->cur.steps;
    }
    double med = median(v, n);
    for (uint32_t k = 0; k < j->workers; k++) {
        double cps = j->ranks[k].cur.compute_s / (double)j->ranks[k].cur.steps;
        if (cps > slow) {
            slow = cps;
            who = k;
        }
    }
    if (slow > 1.5 * med && slow - med > 0.002) {
        j->straggler_barrier_at = t;
        char why[96];
        snprintf(why, sizeof why, "a suspected straggler (rank %u)", who);
        job_request_barrier(j, why);
    }
}

/* Replaces the instances of ranks much slower than the others in BSP (measured: compute time
 * per step in their last invocation over the median of all). */
void job_check_stragglers(struct coord_job *j)
{
    if (j->workers < 2)
        return;
    double v[COORD_SPEC_MAX_WORKERS];
    uint32_t n = 0;
    for (uint32_t k = 0; k < j->workers; k++)
        if (j->ranks[k].last_cps > 0)
            v[n++] = j->ranks[k].last_cps;
    if (n < 2)
        return;
    double med = median(v, n);
    for (uint32_t k = 0; k < j->workers; k++) {
        struct rank *r = &j->ranks[k];
        if (r->last_cps > 1.5 * med && r->last_cps - med > 0.002) {
            r->replace_next = 1;
            job_event(j, "straggler",
                      "rank %u computes %.1f ms per step against a median of %.1f ms: its "
                      "instance (pid %d) is replaced",
                      k, r->last_cps * 1e3, med * 1e3, (int)r->cur.pid);
        }
        r->last_cps = 0;
    }
}

/* Epochs still expected for a job that trains to a target accuracy, from the trend of its
 * test accuracy: a least-squares fit of acc(e) = A - B / e over the recorded epochs (e from
 * 1), solved for the target. 0 when there is no target, too little history or no trend (the
 * scheduler then plans for the epoch bound). */
double job_epochs_left_hint(const struct coord_job *j, double done)
{
    double target = j->spec.target_accuracy;
    size_t n = json_array_size(j->series);
    if (target <= 0 || n < 3)
        return 0;
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    size_t from = n > 8 ? n - 8 : 0, m = 0;
    for (size_t i = from; i < n; i++) {
        json_t *e = json_array_get(j->series, i);
        double x = 1.0 / (double)(json_integer_value(json_object_get(e, "epoch")) + 1);
        double y = json_number_value(json_object_get(e, "test_accuracy"));
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
        m++;
    }
    double det = m * sxx - sx * sx;
    if (det <= 0)
        return 0;
    double slope = (m * sxy - sx * sy) / det; /* -B */
    double a = (sy - slope * sx) / m;
    if (slope >= 0 || a <= target)
        return 0; /* flat or falling, or the trend never gets there: plan for the bound */
    double e_star = -slope / (a - target); /* A - B / e = target */
    double left = e_star - done;
    double bound = j->epochs_target - done;
    if (left < 1)
        left = 1;
    return left < bound ? left : 0;
}

/* The profile's steady rates: per worker and step, compute and communication (and the slowest
 * worker's compute) over the steps after each rank's first, up to `at`. Returns 0 when fewer
 * than two steps per rank were seen that way, or a rank was invoked again in between. */
int job_profile_rates(const struct coord_job *j, uint64_t at, struct job_rates *pr)
{
    double compute = 0, comm = 0, steps = 0;
    memset(pr, 0, sizeof *pr);
    for (uint32_t k = 0; k < j->workers; k++) {
        const struct rank *r = &j->ranks[k];
        if (!r->pf_set || at < r->pf.step + 2 || r->tot.invocations != r->pf_invocations)
            return 0; /* (a rank re-invoked meanwhile: the others waited for its start) */
        double n = (double)(at - r->pf.step), c = r->tot.compute_s - r->pf.compute_s;
        compute += c;
        comm += r->tot.comm_s - r->pf.comm_s;
        steps += n;
        if (c / n > pr->slowest_s)
            pr->slowest_s = c / n;
    }
    if (steps <= 0)
        return 0;
    pr->compute_s = compute / steps;
    pr->comm_s = comm / steps;
    return 1;
}

/* A decision point at step `at` (every rank parked there): the steps since the last one and
 * the mean compute and communication per step and worker over them; the next interval starts
 * here. */
void job_decision_point(struct coord_job *j, uint64_t at, double *steps, double *dc,
                               double *dm)
{
    double compute, comm;
    job_totals(j, &compute, &comm);
    *steps = at > j->bd_step ? (double)(at - j->bd_step) : 0;
    double per = *steps * (j->workers ? j->workers : 1);
    *dc = per > 0 ? (compute - j->bd_compute) / per : 0;
    *dm = per > 0 ? (comm - j->bd_comm) / per : 0;
    j->bd_step = at;
    j->bd_compute = compute;
    j->bd_comm = comm;
}

/* Of the interval from t0 to t, the part before its last rank began training: the starts of
 * the invocations begun in it (after a change of fan-out; a torch runner's start, importing
 * torch and loading its data, takes seconds where a step takes milliseconds). The scheduler
 * counts starts apart (cold_start_s), so the step time it observes leaves them out. */
static double interval_start_lag(const struct coord_job *j, double t0, double t)
{
    double ready = t0;
    for (uint32_t k = 0; k < j->workers; k++) {
        const struct rank_inv *c = &j->ranks[k].cur;
        if (c->started >= t0 && c->ready_at > ready)
            ready = c->ready_at;
    }
    double lag = ready - t0, most = 0.9 * (t - t0);
    return lag < 0 ? 0 : lag > most ? most : lag;
}

/* What a cold start of one of the job's ranks takes, invocation to its first step, as
 * measured so far (the platform's start and the runner's own: a torch runner imports torch
 * and loads its data); dflt before any was measured. */
double job_start_estimate(const struct coord_job *j, double dflt)
{
    double cold = 0, ready = 0;
    uint64_t ncold = 0, nready = 0;
    for (uint32_t k = 0; k < j->cap; k++) {
        cold += j->ranks[k].tot.cold_start_s + j->ranks[k].tot.init_s;
        ncold += j->ranks[k].tot.cold_starts;
        ready += j->ranks[k].tot.ready_cold_s;
        nready += j->ranks[k].tot.ready_cold_n;
    }
    /* Invoke to first step, where measured: what a runner reports as its init leaves out its
     * own start (a torch runner's interpreter and `import torch`, seconds). */
    if (nready)
        return ready / (double)nready;
    return ncold ? cold / (double)ncold : dflt;
}

/* The budget guard of a decision: whatever runs next must be able to start and reach a halt
 * (JOB_BUDGET_MARGIN_S) within what is left, since ranks stop only at a step. A change that
 * adds workers starts cold instances; where what is left cannot pay for their start, the job
 * stops here, at the boundary where every rank already is. Returns 1 to stop. */
static int budget_allows(const struct coord_job *j, const struct sched_decision *d, double *start)
{
    *start = job_start_estimate(j, 1.0);
    if (!(j->spec.budget_usd > 0) || d->verdict != SCHED_CHANGE || d->next.workers <= j->workers)
        return 1;
    uint32_t mem = d->next.memory_mb ? d->next.memory_mb : j->memory_mb;
    return job_budget_fits(j, d->next.workers, mem,
                           j->shards.local ? d->next.shards : coord_shards_nodes(&j->shards),
                           *start);
}

/* The scheduler for the job, made at its first decision point from the spec's bounds and
 * prices and what the job measured of its cold starts. Returns 0 when it refused them. */
static int job_sched_new(struct coord_job *j)
{
    struct sched_job sj = {0};
    sj.model_bytes = j->spec.model_params * 4;
    sj.samples_per_epoch = j->spe * j->workers * j->spec.batch_size;
    sj.batch = j->spec.batch_size;
    sj.total_epochs = j->spec.max_epochs;
    sj.deadline_s = j->spec.deadline_s > 0
                        ? j->spec.deadline_s - (j->started_unix - j->submitted_unix)
                        : 0;
    sj.budget_usd = j->spec.budget_usd;
    sj.min_workers = j->spec.min_workers;
    sj.max_workers = j->cap;
    sj.min_shards = 1;
    sj.max_shards = j->shards.local ? j->spec.max_shards : j->shards.n;
    if (!j->shards.local)
        sj.min_shards = j->shards.n;
    /* Locally every instance gets the machine's CPU whatever its memory size: memory is a
     * knob only where the platform ties CPU and network to it (Lambda). */
    sj.memory_options[0] = j->memory_mb;
    sj.n_memory_options = 1;
    sj.time_limit_s = j->spec.platform.time_limit_s;
    sj.price_gb_s = j->spec.prices.gb_s;
    sj.price_request = j->spec.prices.request;
    sj.price_ps_node_hour = j->spec.prices.ps_node_hour;
    sj.cold_start_s = job_start_estimate(j, 1.0);
    if (j->spec.platform.kind == COORD_PLATFORM_LOCAL) {
        /* The local runtime's workers reach the shards over loopback: no per-function link
         * limit worth the name (the Lambda prior of 600 Mbit/s would make every
         * communication-bound job look link-bound, where more shards cannot help). */
        sj.link_mbps = 40000;
    }
    sj.reshard_s_per_gb = 2.0;
    if (j->spec.statistical_efficiency)
        sj.ref_workers = j->ref_workers;
    j->sched = sched_new(&sj);
    if (!j->sched)
        job_event(j, "schedule", "the scheduler refused the job's bounds; keeping %u workers, "
                                 "%u shards",
                  j->workers, j->shards.n);
    return j->sched != NULL;
}

/* Records a decision in the job's events and journal (what the dashboard annotates). */
static void job_record_decision(struct coord_job *j, uint32_t epoch, uint64_t at, int profile,
                                const struct sched_decision *dp)
{
    const struct sched_decision d = *dp;
    json_t *rec = json_pack("{s:i, s:I, s:b, s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:b, s:b, s:s}",
                            "epoch", (int)epoch, "step", (json_int_t)at, "profile", profile,
                            "verdict",
                            d.verdict == SCHED_CHANGE       ? "change"
                            : d.verdict == SCHED_STOP_BUDGET ? "stop"
                                                             : "keep",
                            "workers", (int)d.next.workers, "shards", (int)d.next.shards,
                            "memory_mb", (int)d.next.memory_mb, "predicted_step_s",
                            d.predicted_step_s, "predicted_finish_s", d.predicted_finish_s,
                            "predicted_cost_usd", d.predicted_cost_usd, "deadline_ok",
                            d.deadline_ok, "budget_ok", d.budget_ok, "reason", d.reason);
    if (rec) {
        json_object_set_new(rec, "at", json_real(smlt_now_unix()));
        json_object_set_new(rec, "kind", json_string("decision"));
        json_object_set_new(rec, "message", json_string(d.reason));
        job_event_add(j, rec);
        json_decref(rec);
    }
}

/* The adaptive scheduler at a decision point (an epoch boundary, or with pr the profile's
 * end and its steady rates): feeds it the interval's measurements and asks it for the next
 * configuration. Returns 1 when the budget forces the job to stop. */
int job_schedule(struct coord_job *j, uint32_t epoch, uint64_t at, const struct job_rates *pr, double t, uint32_t *nw, uint32_t *ns)
{
    int profile = pr != NULL;
    double steps, dc, dm, slowest = 0;
    job_decision_point(j, at, &steps, &dc, &dm);
    if (!(j->spec.deadline_s > 0 || j->spec.budget_usd > 0) || !j->spe || !steps)
        return 0;
    double epoch_s = t - j->boundary_at;
    if (!pr)
        epoch_s -= interval_start_lag(j, j->boundary_at, t);
    if (pr) {
        /* The profile: its steps after each worker's first (see job_profile_rates()). */
        dc = pr->compute_s;
        dm = pr->comm_s;
        slowest = pr->slowest_s;
    } else {
        for (uint32_t k = 0; k < j->workers; k++)
            if (j->ranks[k].last_cps > slowest)
                slowest = j->ranks[k].last_cps;
    }
    if (!j->sched && !job_sched_new(j))
        return 0;
    struct sched_obs o = {.workers = j->workers,
                          .shards = j->shards.n,
                          .memory_mb = j->memory_mb,
                          .steps = (uint64_t)steps,
                          /* The profile's few steps would be dwarfed by the workers' start:
                           * there the step is the workers' own (compute + communication). */
                          .step_s = profile ? dc + dm : epoch_s / steps,
                          .compute_s = dc,
                          .comm_s = dm,
                          .slowest_compute_s = slowest > 0 ? slowest : dc,
                          .noise_scale = j->ns_fresh ? j->noise_scale : 0};
    sched_observe(j->sched, &o);
    /* With statistical efficiency the scheduler plans in reference epochs (ref_done, kept by
     * job_boundary()); the accuracy curve's hint counts data epochs at the current fan-out. */
    double hint = job_epochs_left_hint(j, (double)epoch);
    if (j->spec.statistical_efficiency && hint > 0)
        hint /= job_epoch_factor(j, j->workers);
    struct sched_state st = {.elapsed_s = smlt_now_unix() - j->started_unix,
                             .epochs_done = j->spec.statistical_efficiency ? j->ref_done
                                                                           : (double)epoch,
                             .spent_usd = job_cost(j),
                             .workers = j->workers,
                             .shards = j->shards.n,
                             .memory_mb = j->memory_mb,
                             .since_change_s = t - (j->changed_at > 0 ? j->changed_at : j->t_start),
                             .epochs_left_hint = hint};
    struct sched_decision d;
    sched_decide(j->sched, &st, &d);
    job_record_decision(j, epoch, at, profile, &d);
    if (profile)
        job_log(j, "decision after the profile (step %llu): %s", (unsigned long long)at, d.reason);
    else
        job_log(j, "decision at epoch %u: %s", epoch, d.reason);
    double start;
    if (d.verdict == SCHED_CHANGE && !budget_allows(j, &d, &start)) {
        snprintf(j->reason, sizeof j->reason,
                 "budget of $%.6f: $%.6f spent at step %llu leaves too little to start %u more "
                 "workers (%.1f s each, as measured) and still stop within it: stopped here, "
                 "model saved",
                 j->spec.budget_usd, job_cost(j), (unsigned long long)at,
                 d.next.workers - j->workers, start);
        job_event(j, "budget", "%s", j->reason);
        j->stopping = 1;
        j->end_state = JOB_STOPPED;
        return 1;
    }
    if (d.verdict == SCHED_STOP_BUDGET) {
        snprintf(j->reason, sizeof j->reason, "%s", d.reason);
        j->stopping = 1;
        j->end_state = JOB_STOPPED;
        return 1;
    }
    if (d.verdict == SCHED_CHANGE) {
        *nw = d.next.workers;
        *ns = d.next.shards;
        if (d.next.memory_mb && d.next.memory_mb != j->memory_mb)
            j->memory_mb = d.next.memory_mb;
    }
    return 0;
}

/* Statistical efficiency, at an epoch boundary (data epoch `epoch`, the fan-out for the next
 * epochs already set): the data epochs that the reference epochs still to do take at the
 * current fan-out and measured noise scale, in whole epochs (rounded up, unless less than a
 * tenth of an epoch would be missing: a whole epoch more for a sliver of one costs more than
 * it buys). A change is journaled; when nothing is left the job ends here (returns 1). */

int job_retarget(struct coord_job *j, uint32_t epoch)
{
    double left = (double)j->spec.max_epochs - j->ref_done;
    double f = job_epoch_factor(j, j->workers);
    double want = left * f > JOB_EPOCH_SLACK ? ceil(left * f - JOB_EPOCH_SLACK) : 0;
    uint32_t target = epoch + (want < COORD_SPEC_MAX_EPOCHS ? (uint32_t)want : COORD_SPEC_MAX_EPOCHS);
    if (target != j->epochs_target) {
        job_event(j, "efficiency",
                  "epoch %u: %.2f of %u reference epochs (global batch %u) done; gradient noise "
                  "scale %.0f samples, so at %u workers (global batch %u) an epoch counts %.2f "
                  "of one: %u epochs in all instead of %u",
                  epoch, j->ref_done, j->spec.max_epochs, j->ref_workers * j->spec.batch_size,
                  j->noise_scale, j->workers, j->workers * j->spec.batch_size, 1.0 / f, target,
                  j->epochs_target);
        j->epochs_target = target;
        if (j->spe)
            j->total_steps = j->phase_step + j->spe * (target - j->phase_epoch);
    }
    if (target > epoch)
        return 0;
    for (uint32_t k = 0; k < j->workers; k++)
        j->ranks[k].finished = 1;
    job_check_done(j);
    return 1;
}
