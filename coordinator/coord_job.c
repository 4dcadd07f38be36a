/* coord_job.c: jobs: their lifecycle, invocations, progress, cost and history (see coord.h).
 *
 * A job's life: QUEUED -> STARTING (shards started and configured) -> RUNNING (one worker
 * function per rank, invoked slice after slice) -> SUCCEEDED | FAILED | CANCELED. A job that was
 * running when the coordinator stopped is INTERRUPTED when its journal is read back.
 *
 * Each rank has a data cursor: the global step its next invocation starts at, taken from the
 * worker's last Progress or Done. A continuation (the worker stopped at its slice's end or
 * before the time limit) is invoked at once; an invocation that ended without reporting (killed
 * at the limit, crashed) is re-invoked from the last reported cursor after a short backoff. The
 * parameter server counts each (rank, step) once, so steps the lost invocation had already
 * pushed are recognised as duplicates and not applied again.
 *
 * Changes (worker count, shard count, straggler replacement) happen with every rank parked at
 * one epoch boundary. Jobs with a deadline or a budget park at every boundary (the scheduler
 * decides at each), and once inside epoch 1, at the end of a short profiling phase
 * (job_profile()); the others train through boundaries and get a barrier from the shards
 * (smlt_freeze_at_boundary()) only when there is a change to make. */
#include "coord.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "coord_backend.h"
#include "coord_journal.h"
#include "coord_ledger.h"
#include "coord_rpc.h"
#include "coord_shards.h"
#include "coord_spec.h"
#include "rpc_conn.h"
#include "sched.h"
#include "smlt.h"
#include "smlt_error.h"
#include "smlt_log.h"
#include "worker_train.h"

#define JOB_ID_MAX 64
#define INV_ID_MAX 96
#define JOB_MAX_FAILURES 5        /* consecutive failed invocations of one rank before giving up */
#define JOB_EVENTS_MAX 200        /* events kept in memory per job */
#define JOB_PROGRESS_EVERY_S 5.0  /* journal a progress record at most this often */
#define JOB_TICK_S 1.0

enum job_state {
    JOB_QUEUED,
    JOB_STARTING,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELED,
    JOB_INTERRUPTED,
    JOB_STOPPED, /* stopped early on purpose: the budget ran out */
    JOB_NSTATES
};

static const char *state_names[] = {"queued",   "starting", "running",     "succeeded",
                                    "failed",   "canceled", "interrupted", "stopped"};

struct coord_job;

/* A rank's compute and communication totals and its reported step at some moment: the start
 * of an interval that its figures are measured over. */
struct rank_mark {
    double compute_s, comm_s;
    uint64_t step;
};

struct rank {
    struct coord_job *job;
    uint32_t rank;
    uint64_t next_step;     /* the cursor */
    int finished;
    uint64_t inv;           /* backend invocation, 0 when none */
    char inv_id[INV_ID_MAX];
    char inv_token[65];
    double inv_started;
    uint64_t inv_step;      /* the cursor when the current invocation began */
    int done_seen;          /* Done arrived for the current invocation */
    int done_status;        /* Smlt__DoneStatus */
    char done_error[256];
    int failures;
    uint64_t steps_at_fail; /* the cursor when the current run of failures began */
    struct event *retry_ev;
    /* the current invocation's progress */
    double loss, compute_s, comm_s, init_s;
    uint64_t steps;
    int cold;
    double hello_at;        /* when the current invocation's worker said hello */
    int warm;               /* its instance had served before */
    pid_t pid;              /* the instance serving the current (or last) invocation */
    uint32_t inv_mb;        /* memory size the current invocation runs with */
    pid_t slow_pid;         /* chaos: the slow host this rank first ran on */
    int at_boundary;        /* parked at the epoch boundary, waiting for the others */
    int replace_next;       /* a straggler: its next invocation avoids the current instance */
    double last_cps;        /* compute seconds per step in its last invocation */
    /* over the job */
    uint64_t invocations, cold_starts, warm_starts, lost;
    double sum_cold_start_s, sum_warm_start_s; /* invoke -> Assignment handed out */
    double sum_compute_s, sum_comm_s, sum_init_s, sum_elapsed_s;
    struct rank_mark ep;    /* when the current epoch began */
    /* After its first step in the profiling phase (its first report): the profile's steady
     * rates leave out the start (the first pull waits for the last rank to start). */
    struct rank_mark pf;
    uint64_t pf_invocations; /* its invocations then: another since makes the rates unfit */
    int pf_set;
    double last_report;      /* when its last Progress (or Done) came */
};

struct coord_job {
    struct coord *c;
    char id[JOB_ID_MAX];
    struct coord_spec spec;
    int have_spec;          /* restored jobs may only have spec_json */
    json_t *spec_json;      /* canonical, tokens redacted: what the API shows */
    enum job_state state;
    char error[1300];
    char reason[SCHED_REASON_MAX + 64];       /* why it ended (target accuracy reached, ...) */
    struct coord_journal *journal;
    char dir[1024], model_path[1100], log_path[1100];
    int log_fd;
    struct coord_ledger ledger;
    double submitted_unix, started_unix, ended_unix;
    double t_start, deadline_mono; /* CLOCK_MONOTONIC */
    struct coord_shards shards;
    uint32_t workers;       /* ranks active in this phase */
    uint32_t cap;           /* ranks allocated (the most the job may use) */
    struct rank *ranks;
    uint32_t memory_mb;     /* function memory size now (the scheduler may change it) */
    /* The phase: since phase_step (the first step of epoch phase_epoch) `workers` ranks run. */
    uint64_t phase_step;
    uint32_t phase_epoch;
    uint32_t pending_workers, pending_shards; /* a manual scale, applied at the next boundary */
    int parks;              /* every rank parks at every epoch boundary (see job_parks()) */
    int barrier_pending;    /* the shards stop every rank at barrier_step for a change */
    uint64_t barrier_step;
    int unfreeze_pending;   /* a barrier that failed to set may hold some shards: call it off */
    /* The profiling phase of a scheduled job: the first steps of epoch 1, after which the
     * scheduler makes its first decision (see job_profile()). */
    enum { PROFILE_NONE, PROFILE_SET, PROFILE_DONE } profile_state;
    uint64_t profile_step;  /* where it ends (a barrier) */
    json_t *profile;        /* its measurements (job_measure()), once taken */
    double straggler_barrier_at; /* when a suspected straggler last asked for a barrier */
    enum job_state end_state;  /* what stopping leads to (JOB_STOPPED on budget) */
    int deadline_warned;
    double boundary_at;     /* when the last epoch boundary was passed */
    double bd_compute, bd_comm; /* rank sums of compute / communication at that boundary */
    uint64_t bd_step;       /* and the step (a decision point: an epoch's end or the profile's) */
    struct sched *sched;    /* with a deadline or a budget: the adaptive scheduler */
    double changed_at;      /* when the configuration last changed */
    double worker_s;        /* workers x seconds before the last change of the worker count */
    double workers_since;   /* unix time of that change (0: the job's start) */
    double cold_start_s;    /* measured: a cold start plus initialization */
    uint64_t spe, total_steps, step;
    int64_t epoch_done;
    double train_loss, test_acc, test_loss, best_acc;
    double epoch_started;
    double compute_at_epoch, comm_at_epoch; /* rank sums when the epoch started */
    uint64_t epoch_step0;   /* the step the current epoch started at */
    json_t *series, *events;
    json_t *ps_stats;       /* the shards' counters at the end (exactly-once evidence) */
    /* Gradient noise scale: the shards' cumulative sums when last sampled (ns_shards shards),
     * and the estimate over the interval since the sample before (0: none yet). */
    double ns_g2, ns_s, noise_scale;
    uint64_t ns_steps;
    uint32_t ns_shards;
    int ns_fresh;           /* noise_scale was measured at this boundary */
    /* The data epochs the job trains: spec.max_epochs, or with spec.statistical_efficiency as
     * many as match them at the current fan-out (ref_done reference epochs were done by data
     * epoch ref_epoch; the reference is ref_workers' global batch). */
    uint32_t epochs_target;
    double ref_done;
    uint32_t ref_epoch, ref_workers;
    double ps_charged_at;
    double last_progress_journal;
    struct event *tick_ev, *start_ev;
    int stopping;
    int model_saved;
    uint64_t model_step;
    struct coord_job *next;
};

struct coord {
    struct event_base *base;
    char *data_dir;
    char ps_bin[1024], worker_bin[1024];
    struct coord_backend *backend;
    struct coord_rpc *rpc;
    struct coord_job *jobs;
    unsigned next_seq;
    unsigned long long submitted, refused;
};

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int job_ended(const struct coord_job *j)
{
    return j->state >= JOB_SUCCEEDED && j->state < JOB_NSTATES;
}

/* ---- logs, events, journal ------------------------------------------------------------- */

static void job_log(struct coord_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_log(struct coord_job *j, const char *fmt, ...)
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

/* Records an event (a decision, a failure, a restart) in memory and in the journal. */
static void job_event(struct coord_job *j, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_event(struct coord_job *j, const char *kind, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:f, s:s, s:s}", "at", now_unix(), "kind", kind, "message", msg);
    if (!e)
        return;
    if (json_array_size(j->events) >= JOB_EVENTS_MAX)
        json_array_remove(j->events, 0);
    json_array_append(j->events, e);
    if (j->journal)
        coord_journal_append(j->journal, "event", e, 0);
    json_decref(e);
    job_log(j, "%s: %s", kind, msg);
}

/* The cost so far, with invocations still running charged up to now. */
static double job_cost(const struct coord_job *j)
{
    double c = coord_ledger_total(&j->ledger);
    if (!j->have_spec)
        return c;
    double t = now_mono();
    for (uint32_t r = 0; r < j->workers; r++)
        if (j->ranks[r].inv && j->ranks[r].inv_started > 0)
            c += coord_ledger_invocation_cost(&j->spec.prices, j->ranks[r].inv_mb,
                                              t - j->ranks[r].inv_started);
    if (j->shards.n && !job_ended(j) && j->ps_charged_at > 0)
        c += (t - j->ps_charged_at) / 3600.0 * j->spec.prices.ps_node_hour * j->shards.n;
    return c;
}

static void job_set_state(struct coord_job *j, enum job_state st, const char *why)
{
    j->state = st;
    if (why && st == JOB_FAILED)
        snprintf(j->error, sizeof j->error, "%s", why);
    json_t *rec = json_pack("{s:s}", "state", state_names[st]);
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
    job_log(j, "state %s%s%s", state_names[st], why ? ": " : "", why ? why : "");
}

/* ---- invocations ------------------------------------------------------------------------- */

static void rank_invoke(struct rank *r);
static void job_finish(struct coord_job *j, enum job_state st, const char *why);
static void job_check_done(struct coord_job *j);
static void job_boundary(struct coord_job *j);
static void job_halt_workers(struct coord_job *j);
static int job_sample_noise(struct coord_job *j, json_t *counters);
static int job_take_noise(struct coord_job *j, double g2, double sn, uint64_t steps, uint32_t n);
static void job_account_ref(struct coord_job *j, uint32_t epoch);
static void job_profile(struct coord_job *j);

static struct coord_job *job_find(struct coord *c, const char *id)
{
    for (struct coord_job *j = c->jobs; j; j = j->next)
        if (!strcmp(j->id, id))
            return j;
    return NULL;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    rank_invoke(arg);
}

static void charge_ps(struct coord_job *j)
{
    double t = now_mono();
    if (j->shards.n && j->ps_charged_at > 0 && j->have_spec) {
        coord_ledger_charge_ps(&j->ledger, &j->spec.prices, j->shards.n, t - j->ps_charged_at);
        j->ps_charged_at = t;
    }
}

/* Marks where rank r is now. */
static void rank_mark(struct rank_mark *m, const struct rank *r)
{
    m->compute_s = r->sum_compute_s + r->compute_s;
    m->comm_s = r->sum_comm_s + r->comm_s;
    m->step = r->next_step;
}

/* The compute and communication totals over every rank the job has had (one that left keeps
 * its sums, so a difference of two totals is the active ranks' work). */
static void job_totals(const struct coord_job *j, double *compute, double *comm)
{
    *compute = *comm = 0;
    for (uint32_t k = 0; k < j->cap; k++) {
        *compute += j->ranks[k].sum_compute_s + j->ranks[k].compute_s;
        *comm += j->ranks[k].sum_comm_s + j->ranks[k].comm_s;
    }
}

/* The measurements of the interval since the current epoch began (job_epoch_mark()), up to
 * `step` at time t: its wall time (under time_key), per worker the mean compute,
 * communication and waiting for the slowest worker, the step time, the throughput, each
 * active rank's step time, the configuration and the cost so far.
 *
 * Per active rank, its step time over the steps it reported in the interval (each rank
 * reports about once a second, so its figures and step count come from the same report; null
 * when none came); the wait is how long the mean rank waited each step for the slowest one's
 * compute (under BSP the workers count it in their push + pull). */
static json_t *job_measure(const struct coord_job *j, uint64_t step, double t,
                           const char *time_key)
{
    double compute, comm, cmax = 0, csum = 0;
    uint32_t nc = 0;
    job_totals(j, &compute, &comm);
    json_t *wst = json_array();
    uint64_t steps = step > j->epoch_step0 ? step - j->epoch_step0 : 0;
    for (uint32_t k = 0; k < j->workers; k++) {
        struct rank_mark now;
        rank_mark(&now, &j->ranks[k]);
        const struct rank_mark *m = &j->ranks[k].ep;
        uint64_t ds = now.step > m->step ? now.step - m->step : 0;
        double dc = ds ? (now.compute_s - m->compute_s) / (double)ds : 0;
        json_array_append_new(wst, ds ? json_real(dc + (now.comm_s - m->comm_s) / (double)ds)
                                      : json_null());
        if (ds) {
            csum += dc;
            nc++;
            if (dc > cmax)
                cmax = dc;
        }
    }
    double w = j->workers ? j->workers : 1, dt = t - j->epoch_started;
    double wait = nc ? (cmax - csum / nc) * (double)steps : 0;
    double dcomm = (comm - j->comm_at_epoch) / w;
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o, s:i, s:i, s:f}", "step",
                     (json_int_t)step, "elapsed_s", t - j->t_start, time_key, dt, "compute_s",
                     (compute - j->compute_at_epoch) / w, "comm_s",
                     dcomm > wait ? dcomm - wait : 0.0, "wait_s", wait, "step_s",
                     steps ? dt / (double)steps : 0.0, "samples_per_s",
                     dt > 0 ? (double)steps * w * j->spec.batch_size / dt : 0.0,
                     "worker_step_s", wst, "workers", (int)j->workers, "shards",
                     (int)j->shards.n, "cost_usd", job_cost(j));
}

/* The next epoch's figures (job_measure()) start at `step`, time t. */
static void job_epoch_mark(struct coord_job *j, uint64_t step, double t)
{
    for (uint32_t k = 0; k < j->cap; k++)
        rank_mark(&j->ranks[k].ep, &j->ranks[k]);
    job_totals(j, &j->compute_at_epoch, &j->comm_at_epoch);
    j->epoch_started = t;
    j->epoch_step0 = step;
}

/* Takes the figures of a Progress (or Done's progress) into the rank and the job. */
static void take_progress(struct coord_job *j, struct rank *r, const Smlt__Progress *p)
{
    if (p->next_step > r->next_step || (p->next_step < r->next_step && p->next_step > 0))
        r->next_step = p->next_step;
    r->loss = p->loss;
    r->compute_s = p->compute_s;
    r->comm_s = p->comm_s;
    r->init_s = p->init_s;
    r->steps = p->steps;
    r->cold = p->cold;
    if (p->has_steps_per_epoch && p->steps_per_epoch && !j->spe) {
        j->spe = p->steps_per_epoch;
        j->total_steps = j->phase_step + j->spe * (j->epochs_target - j->phase_epoch);
        job_log(j, "%llu steps per epoch, %llu steps in %u epochs", (unsigned long long)j->spe,
                (unsigned long long)j->total_steps, j->epochs_target);
    }
    if (j->profile_state != PROFILE_DONE && !r->pf_set && p->steps > 0) {
        r->pf_set = 1;
        rank_mark(&r->pf, r);
        r->pf_invocations = r->invocations;
    }
    r->last_report = now_mono();
    if (j->spe && j->profile_state == PROFILE_NONE)
        job_profile(j);
    uint64_t step = UINT64_MAX;
    double loss = 0;
    for (uint32_t k = 0; k < j->workers; k++) {
        if (j->ranks[k].next_step < step)
            step = j->ranks[k].next_step;
        loss += j->ranks[k].loss;
    }
    j->step = step == UINT64_MAX ? 0 : step;
    j->train_loss = loss / (j->workers ? j->workers : 1);
    if (p->has_eval_epoch && p->eval_epoch > j->epoch_done && p->has_test_acc) {
        double t = now_mono();
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
    double t = now_mono();
    if (t - j->last_progress_journal >= JOB_PROGRESS_EVERY_S) {
        j->last_progress_journal = t;
        json_t *rec = json_pack("{s:I, s:f, s:f, s:i, s:i, s:f}", "step", (json_int_t)j->step,
                                "elapsed_s", t - j->t_start, "train_loss", j->train_loss, "workers",
                                (int)j->workers, "shards", (int)j->shards.n, "cost_usd", job_cost(j));
        if (rec)
            coord_journal_append(j->journal, "progress", rec, 0);
        json_decref(rec);
    }
}

static void rank_close_invocation(struct coord_job *j, struct rank *r)
{
    if (r->steps > 0)
        r->last_cps = r->compute_s / (double)r->steps;
    r->sum_compute_s += r->compute_s;
    r->sum_comm_s += r->comm_s;
    r->sum_init_s += r->init_s;
    r->compute_s = r->comm_s = r->init_s = 0;
    r->inv = 0;
    r->inv_id[0] = '\0';
}

/* The backend reports an invocation's end: bill it and decide what comes next for the rank. */
static void on_inv_end(uint64_t inv, const struct coord_inv_result *res, void *arg)
{
    struct rank *r = arg;
    struct coord_job *j = r->job;
    if (r->inv != inv)
        return;
    coord_ledger_charge_invocation(&j->ledger, &j->spec.prices, r->inv_mb,
                                   res->duration_s);
    r->sum_elapsed_s += res->duration_s;
    int status = -1; /* Smlt__DoneStatus, -1: unknown (lost) */
    char err[300] = "";
    if (r->done_seen) {
        status = r->done_status;
        snprintf(err, sizeof err, "%s", r->done_error);
    } else if (res->status == COORD_INV_OK && res->response) {
        /* No Done over RPC (its connection failed): the response line says how it ended. */
        json_error_t je;
        json_t *o = json_loads(res->response, 0, &je);
        const char *st = o ? json_string_value(json_object_get(o, "status")) : NULL;
        json_int_t next = o ? json_integer_value(json_object_get(o, "next_step")) : 0;
        const char *e = o ? json_string_value(json_object_get(o, "error")) : NULL;
        if (st && next > 0 && (uint64_t)next > r->next_step)
            r->next_step = (uint64_t)next;
        status = !st                         ? -1
                 : !strcmp(st, "finished")   ? SMLT__DONE_STATUS__DONE_FINISHED
                 : !strcmp(st, "slice")      ? SMLT__DONE_STATUS__DONE_SLICE
                 : !strcmp(st, "time_up")    ? SMLT__DONE_STATUS__DONE_TIME_UP
                                             : SMLT__DONE_STATUS__DONE_FAILED;
        snprintf(err, sizeof err, "%s", e ? e : "");
        json_decref(o);
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
        if (r->next_step > r->inv_step)
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
        if (r->next_step > r->inv_step) {
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
    /* Failed, killed at the limit, crashed: again from the last reported cursor. */
    if (r->failures == 0)
        r->steps_at_fail = r->next_step;
    r->failures++;
    r->lost++;
    const char *why = status == SMLT__DONE_STATUS__DONE_FAILED && err[0] ? err : res->detail;
    job_event(j, "retry", "rank %u: invocation %llu ended without finishing its slice (%s); "
                          "re-invoking from step %llu (failure %d of %d)",
              r->rank, (unsigned long long)inv, why, (unsigned long long)r->next_step, r->failures,
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

static void rank_invoke(struct rank *r)
{
    struct coord_job *j = r->job;
    struct coord *c = j->c;
    if (job_ended(j) || r->finished || r->inv)
        return;
    if (j->stopping) {
        r->finished = 1;
        job_check_done(j);
        return;
    }
    snprintf(r->inv_id, sizeof r->inv_id, "%s/%u/%llu", j->id, r->rank,
             (unsigned long long)(r->invocations + 1));
    coord_random_hex(r->inv_token, 32);
    r->done_seen = 0;
    r->done_error[0] = '\0';
    char payload[512];
    snprintf(payload, sizeof payload,
             "{\"coordinator\":\"%s\",\"invocation\":\"%s\",\"token\":\"%s\"}", coord_rpc_addr(c->rpc),
             r->inv_id, r->inv_token);
    struct coord_inv_req req = {.function = j->id,
                                .payload = payload,
                                .memory_mb = j->memory_mb,
                                .time_limit_s = j->spec.platform.time_limit_s,
                                .log_path = j->log_path,
                                .avoid_pid = r->replace_next ? r->pid : 0};
    r->replace_next = 0;
    r->inv_mb = j->memory_mb;
    uint64_t inv = 0;
    int rc = coord_backend_invoke(c->backend, &req, on_inv_end, r, &inv);
    if (rc) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot invoke rank %u: %s", r->rank, smlt_strerror(rc));
        job_finish(j, JOB_FAILED, msg);
        return;
    }
    r->inv = inv;
    r->inv_step = r->next_step;
    r->inv_started = now_mono();
    r->invocations++;
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
    if (rk >= j->workers || strcmp(j->ranks[rk].inv_id, inv))
        return NULL;
    *jo = j;
    return &j->ranks[rk];
}

static int rpc_hello(const char *inv, const uint8_t *token, size_t toklen, int warm, uint32_t pid,
                     Smlt__Assignment *a, char *err, size_t errlen, void *arg)
{
    struct coord *c = arg;
    struct coord_job *j = NULL;
    struct rank *r = rank_of_inv(c, inv, &j);
    if (!r || !rpc_token_equal(token, toklen, r->inv_token, strlen(r->inv_token))) {
        snprintf(err, errlen, "unknown invocation or wrong token");
        return SMLT_EAUTH;
    }
    if (job_ended(j)) {
        snprintf(err, errlen, "job %s has ended", j->id);
        return SMLT_ECANCELED;
    }
    const struct coord_spec *s = &j->spec;
    static char ps_token[COORD_SPEC_TOKEN_MAX];
    snprintf(ps_token, sizeof ps_token, "%s", j->shards.token);
    a->job = j->id;
    a->invocation = r->inv_id;
    a->model = (char *)s->model;
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
    double left = limit - (now_mono() - r->inv_started) - margin;
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
    a->has_step_base = a->has_epoch_base = a->has_stop_at_epoch_end = 1;
    a->step_base = j->phase_step;
    a->epoch_base = j->phase_epoch;
    a->stop_at_epoch_end = j->parks;
    r->pid = (pid_t)pid;
    if (s->chaos.slow_rank == (int)r->rank && pid) {
        if (!r->slow_pid)
            r->slow_pid = (pid_t)pid; /* the host this rank first landed on is the slow one */
        if (r->slow_pid == (pid_t)pid) {
            a->has_chaos_delay_us = 1;
            a->chaos_delay_us = (uint32_t)(s->chaos.slow_ms * 1000.0);
        }
    }
    /* Start latency: from invoking to the worker asking for its work. A cold start pays for
     * starting the process; loading data and connecting come after (init_s). */
    r->hello_at = now_mono();
    r->warm = warm;
    if (warm) {
        r->warm_starts++;
        r->sum_warm_start_s += r->hello_at - r->inv_started;
    } else {
        r->cold_starts++;
        r->sum_cold_start_s += r->hello_at - r->inv_started;
    }
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
    r->done_seen = 1;
    r->done_status = d->status;
    snprintf(r->done_error, sizeof r->done_error, "%s", d->error ? d->error : "");
    if (d->status == SMLT__DONE_STATUS__DONE_FAILED)
        job_log(j, "rank %u: worker failed: %s", r->rank, d->error ? d->error : "?");
}

/* ---- lifecycle --------------------------------------------------------------------------- */

/* Saves the model from the shards to the job's model file. Returns 0 or a negative code. */
static int job_save_model(struct coord_job *j, char *err, size_t errlen)
{
    if (!j->shards.addrs[0])
        return SMLT_ENOTCONF;
    struct smlt_client_opts o = {.token = j->shards.admin_token[0] ? j->shards.admin_token
                                                                    : j->shards.token,
                                 .admin = 1,
                                 .timeout_ms = 30000};
    struct smlt_client *cl = NULL;
    int rc = smlt_client_connect(&cl, j->shards.addrs, &o, err, errlen);
    if (!rc)
        rc = smlt_model_save(cl, j->model_path, j->step, err, errlen);
    smlt_client_close(cl);
    if (!rc) {
        j->model_saved = 1;
        j->model_step = j->step;
        json_t *rec = json_pack("{s:s, s:I}", "path", j->model_path, "step", (json_int_t)j->step);
        coord_journal_append(j->journal, "model", rec, 1);
        json_decref(rec);
    }
    return rc;
}

/* A client for reading the shards' stats: short timeouts and no retries, since a shard that
 * does not answer must not hold up the coordinator's loop for long. NULL if none. */
static struct smlt_client *stats_client(struct coord_job *j)
{
    struct smlt_client_opts o = {.token = j->shards.admin_token[0] ? j->shards.admin_token
                                                                    : j->shards.token,
                                 .admin = 1, .timeout_ms = 5000, .retries = -1};
    struct smlt_client *cl = NULL;
    char err[256];
    if (!j->shards.addrs[0] || smlt_client_connect(&cl, j->shards.addrs, &o, err, sizeof err) != 0)
        return NULL;
    return cl;
}

/* The shards' counters, sampled before they stop: every (rank, step) counted once is visible
 * as pushes_counted == workers * steps under BSP, retries as pushes_duplicate. */
static void job_collect_ps_stats(struct coord_job *j)
{
    if (j->state == JOB_QUEUED)
        return;
    json_t *a = json_array();
    if (job_sample_noise(j, a) < 0) {
        json_decref(a);
        return;
    }
    json_decref(j->ps_stats);
    j->ps_stats = a;
}

static void job_finish(struct coord_job *j, enum job_state st, const char *why)
{
    if (job_ended(j))
        return;
    struct coord *c = j->c;
    j->stopping = 1;
    if (j->tick_ev)
        evtimer_del(j->tick_ev);
    for (uint32_t k = 0; j->ranks && k < j->cap; k++) {
        struct rank *r = &j->ranks[k];
        evtimer_del(r->retry_ev);
        if (r->inv)
            coord_backend_cancel(c->backend, r->inv);
    }
    /* The model first: a finished job is worth nothing if its model is lost. */
    char err[256] = "";
    if (j->state == JOB_RUNNING || j->state == JOB_STARTING) {
        int rc = job_save_model(j, err, sizeof err);
        if (rc == 0)
            job_log(j, "model saved at step %llu to %s", (unsigned long long)j->step, j->model_path);
        else if (rc != SMLT_ENOTCONF)
            job_event(j, "model", "could not save the model: %s", err);
    }
    charge_ps(j);
    job_collect_ps_stats(j);
    if (j->spec.statistical_efficiency && j->spe && j->step > j->phase_step) {
        /* The epochs since the last boundary count too (at the fan-out they ran with). */
        uint32_t epoch = j->phase_epoch + (uint32_t)((j->step - j->phase_step) / j->spe);
        job_account_ref(j, epoch);
    }
    coord_shards_stop(&j->shards);
    coord_backend_drop_function(c->backend, j->id);
    j->ended_unix = now_unix();
    job_set_state(j, st, why);
}

static void job_check_done(struct coord_job *j)
{
    if (job_ended(j))
        return;
    for (uint32_t k = 0; k < j->workers; k++)
        if (!j->ranks[k].finished)
            return;
    job_finish(j, j->end_state, j->reason[0] ? j->reason : "all epochs trained");
}

/* An admin client for the job's shards (NULL with a message in err). */
static struct smlt_client *admin_client(struct coord_job *j, char *err, size_t errlen)
{
    struct smlt_client_opts o = {.token = j->shards.admin_token[0] ? j->shards.admin_token
                                                                    : j->shards.token,
                                 .admin = 1,
                                 .timeout_ms = 120000};
    struct smlt_client *c = NULL;
    if (smlt_client_connect(&c, j->shards.addrs, &o, err, errlen) != 0)
        return NULL;
    return c;
}

/* Takes the shards' summed noise figures (n shards): returns 1 and sets j->noise_scale from
 * what they gathered since the baseline (B_simple = batch * sum of tr(Sigma)/b estimates /
 * sum of |G|^2 estimates), or 0 when they tell nothing new. */
static int job_take_noise(struct coord_job *j, double g2, double sn, uint64_t steps, uint32_t n)
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

/* Samples the shards' stats (a blocking round trip to each) and takes their noise figures
 * (job_take_noise()): returns 1 when j->noise_scale was measured anew, 0 if not, -1 when the
 * shards could not be reached. With `counters`, appends each shard's exactly-once counters to
 * it. */
static int job_sample_noise(struct coord_job *j, json_t *counters)
{
    struct smlt_client *cl = stats_client(j);
    if (!cl)
        return -1;
    double g2 = 0, sn = 0;
    uint64_t steps = 0;
    uint32_t n = smlt_client_num_shards(cl), got = 0;
    for (uint32_t k = 0; k < n; k++) {
        struct smlt_shard_stats st;
        if (smlt_shard_stats(cl, k, &st) != 0) {
            if (!counters)
                break; /* the noise figures need every shard */
            continue;
        }
        got++;
        g2 += st.noise_g2;
        sn += st.noise_s;
        steps += st.noise_steps;
        if (counters)
            json_array_append_new(
                counters,
                json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "shard", (int)k, "version",
                          (json_int_t)st.version, "clock", (json_int_t)st.clock, "pushes_counted",
                          (json_int_t)st.pushes_counted, "pushes_duplicate",
                          (json_int_t)st.pushes_duplicate, "pushes_rejected",
                          (json_int_t)st.pushes_rejected, "updates_applied",
                          (json_int_t)st.updates_applied, "map_version",
                          (json_int_t)st.map_version));
    }
    smlt_client_close(cl);
    return got == n ? job_take_noise(j, g2, sn, steps, n) : 0;
}

/* Statistical efficiency: one reference epoch takes this many data epochs at `workers`. */
static double job_epoch_factor(const struct coord_job *j, uint32_t workers)
{
    return sched_epoch_factor(j->spec.batch_size, j->ref_workers, workers, j->noise_scale);
}

/* Counts the data epochs trained since the last count, at the current fan-out and the noise
 * scale measured over them, as reference epochs. */
static void job_account_ref(struct coord_job *j, uint32_t epoch)
{
    if (epoch <= j->ref_epoch)
        return;
    j->ref_done += (double)(epoch - j->ref_epoch) / job_epoch_factor(j, j->workers);
    j->ref_epoch = epoch;
}

/* Moves the job to `shards` shards (live reshard). Returns 0 or a negative code. */
static int job_reshard(struct coord_job *j, uint32_t shards, char *err, size_t errlen)
{
    struct coord *c = j->c;
    if (!j->shards.local) {
        snprintf(err, errlen, "the shards run elsewhere (spec \"ps\"): their count is fixed");
        return SMLT_EINVAL;
    }
    uint32_t old = j->shards.n;
    int rc = 0;
    if (shards > old && (rc = coord_shards_grow(&j->shards, shards, c->ps_bin, j->dir, err, errlen)))
        return rc;
    char addrs[sizeof j->shards.addrs], all[sizeof j->shards.addrs];
    snprintf(all, sizeof all, "%s", j->shards.addrs);
    coord_shards_addrs(&j->shards, shards, addrs, sizeof addrs);
    /* The admin client must know the old map's shards only: connect before the new ones join. */
    char old_addrs[sizeof j->shards.addrs];
    coord_shards_addrs(&j->shards, old, old_addrs, sizeof old_addrs);
    snprintf(j->shards.addrs, sizeof j->shards.addrs, "%s", old_addrs);
    struct smlt_client *cl = admin_client(j, err, errlen);
    snprintf(j->shards.addrs, sizeof j->shards.addrs, "%s", all);
    if (!cl) {
        if (shards > old)
            coord_shards_shrink(&j->shards, old);
        return SMLT_EIO;
    }
    uint64_t at = 0;
    double t0 = now_mono();
    rc = smlt_reshard(cl, addrs, &at, err, errlen);
    smlt_client_close(cl);
    if (rc) {
        if (shards > old)
            coord_shards_shrink(&j->shards, old);
        return rc;
    }
    charge_ps(j);
    if (shards < old)
        coord_shards_shrink(&j->shards, shards);
    snprintf(j->shards.addrs, sizeof j->shards.addrs, "%s", addrs);
    job_log(j, "resharded %u -> %u shards at step %llu in %.3f s", old, shards,
            (unsigned long long)at, now_mono() - t0);
    return 0;
}

/* Asks every shard to lift any freeze. Returns 0 or a negative code (err says why). */
static int job_unfreeze(struct coord_job *j, char *err, size_t errlen)
{
    struct smlt_client *cl = admin_client(j, err, errlen);
    int rc = cl ? smlt_unfreeze(cl) : SMLT_EIO;
    if (rc && cl)
        snprintf(err, errlen, "%s", smlt_client_errmsg(cl));
    smlt_client_close(cl);
    return rc;
}

/* After a barrier could not be set: some shards may have taken it (a shard failed to answer
 * the second round); call it off, so they do not refuse the step to ranks that will not
 * park there. */
static void job_barrier_failed(struct coord_job *j)
{
    char err[256] = "";
    j->unfreeze_pending = job_unfreeze(j, err, sizeof err) != 0;
    if (j->unfreeze_pending)
        job_log(j, "could not call off a barrier that failed to set (%s); trying again", err);
}

/* Asks the shards to stop every rank at the next epoch boundary, where job_boundary() makes
 * a change (a job whose ranks do not park at every boundary). Quiet when it cannot be set yet
 * (steps per epoch unknown, a shard just passing the step): on_tick() asks again. */
static void job_request_barrier(struct coord_job *j, const char *why)
{
    if (j->parks || j->barrier_pending || !j->spe || j->stopping || job_ended(j))
        return;
    char err[256] = "";
    struct smlt_client *cl = admin_client(j, err, sizeof err);
    uint64_t at = 0;
    int rc = cl ? smlt_freeze_at_boundary(cl, j->phase_step, j->spe, &at) : SMLT_EIO;
    if (rc && cl)
        snprintf(err, sizeof err, "%s", smlt_client_errmsg(cl));
    smlt_client_close(cl);
    if (rc) {
        if (rc != SMLT_EAGAIN) {
            job_log(j, "could not set a barrier (%s); trying again", err);
            job_barrier_failed(j);
        }
        return;
    }
    j->barrier_pending = 1;
    j->barrier_step = at;
    job_log(j, "barrier at step %llu (epoch %llu's end) for %s", (unsigned long long)at,
            (unsigned long long)(j->phase_epoch + (at - j->phase_step) / j->spe), why);
    /* Ranks already parked there (their slice ended at that very step) count as arrived. */
    for (uint32_t k = 0; k < j->workers; k++) {
        struct rank *r = &j->ranks[k];
        if (!r->inv && !r->finished && r->next_step == at && !evtimer_pending(r->retry_ev, NULL))
            r->at_boundary = 1;
    }
    job_boundary(j);
}

/* Lifts the barrier before the next phase starts. Returns 0 or a negative code. */
static int job_lift_barrier(struct coord_job *j)
{
    if (!j->barrier_pending)
        return 0;
    char err[256] = "";
    int rc = job_unfreeze(j, err, sizeof err);
    if (rc) {
        job_log(j, "could not lift the barrier at step %llu (%s); trying again",
                (unsigned long long)j->barrier_step, err);
        return rc;
    }
    j->barrier_pending = 0;
    return 0;
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
#define PROFILE_SHARE 10
#define PROFILE_MIN_STEPS 4

static void job_profile(struct coord_job *j)
{
    if (j->profile_state != PROFILE_NONE || job_ended(j) || j->stopping || !j->spe)
        return;
    if (!(j->spec.deadline_s > 0 || j->spec.budget_usd > 0) || j->spec.sync != SMLT_SYNC_BSP ||
        !j->shards.admin_token[0] || j->phase_step || j->phase_epoch || j->barrier_pending ||
        j->step * 4 >= j->spe) {
        j->profile_state = PROFILE_DONE;
        return;
    }
    uint64_t want = (j->spe + PROFILE_SHARE - 1) / PROFILE_SHARE;
    if (want < PROFILE_MIN_STEPS)
        want = PROFILE_MIN_STEPS;
    char err[256] = "";
    struct smlt_client *cl = admin_client(j, err, sizeof err);
    uint64_t at = 0;
    /* Aligned to 1 from `want`: the barrier is at `want`, or where the shards already are. */
    int rc = cl ? smlt_freeze_at_boundary(cl, want, 1, &at) : SMLT_EIO;
    if (rc && cl)
        snprintf(err, sizeof err, "%s", smlt_client_errmsg(cl));
    if (!rc && at * 4 >= j->spe && smlt_unfreeze(cl) == 0) {
        /* (When it cannot be lifted, the barrier stays where it is, as the profile's end.) */
        smlt_client_close(cl);
        j->profile_state = PROFILE_DONE;
        job_log(j, "no profiling phase: the workers are at step %llu of %llu in epoch 1 "
                   "already; the first decision comes at its end",
                (unsigned long long)at, (unsigned long long)j->spe);
        return;
    }
    smlt_client_close(cl);
    if (rc) {
        if (rc != SMLT_EAGAIN) {
            job_log(j, "no profiling phase: could not set its barrier (%s)", err);
            j->profile_state = PROFILE_DONE;
            job_barrier_failed(j);
        }
        return;
    }
    j->profile_state = PROFILE_SET;
    j->profile_step = at;
    j->barrier_pending = 1;
    j->barrier_step = at;
    job_log(j, "profiling: %u workers, %u shards train to step %llu of the %llu in epoch 1; "
               "the scheduler decides there",
            j->workers, j->shards.n, (unsigned long long)at, (unsigned long long)j->spe);
}

/* Whether no active rank can have reached the pending barrier: each has reported within its
 * current invocation, and from its last reported step, at its step time, cannot have come
 * within two steps of the barrier since (with a second to spare). */
static int job_barrier_far(const struct coord_job *j)
{
    double t = now_mono();
    for (uint32_t k = 0; k < j->workers; k++) {
        const struct rank *r = &j->ranks[k];
        if (r->finished)
            continue;
        if (r->at_boundary || !r->inv || r->steps == 0 || r->last_report < r->inv_started)
            return 0;
        double step_s = (r->compute_s + r->comm_s) / (double)r->steps;
        if (step_s <= 0)
            return 0;
        double reach = (double)r->next_step + (t - r->last_report + 1.0) / step_s + 2.0;
        if (reach >= (double)j->barrier_step)
            return 0;
    }
    return 1;
}

/* Stops every rank at one step (BSP needs them to end together; the shards refuse the next
 * step to all). For a stop that cannot wait for a boundary: the budget, a reached target. */
static void job_halt_workers(struct coord_job *j)
{
    /* The profile's barrier, set ahead, would hold the stop until the ranks reach it: the
     * shards only ever move a freeze later. Lift it first, so they stop where they are, when
     * no rank can have reached it yet (one refused there would never push that step, and the
     * others would wait for it). Otherwise the stop lands on it. */
    if (j->barrier_pending && j->profile_state == PROFILE_SET && job_barrier_far(j) &&
        job_lift_barrier(j) == 0)
        j->profile_state = PROFILE_DONE;
    char err[256] = "";
    struct smlt_client *cl = admin_client(j, err, sizeof err);
    uint64_t at = 0;
    if (!cl || smlt_stop_at(cl, &at) != 0)
        job_log(j, "could not stop the shards at one step (%s); workers stop on their own",
                cl ? smlt_client_errmsg(cl) : err);
    else
        job_log(j, "the workers stop at step %llu", (unsigned long long)at);
    smlt_client_close(cl);
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
static void job_watch_stragglers(struct coord_job *j, double t)
{
    if (j->parks || j->barrier_pending || j->workers < 2 || t - j->straggler_barrier_at < 20)
        return;
    double v[COORD_SPEC_MAX_WORKERS], slow = 0;
    uint32_t n = 0, who = 0;
    for (uint32_t k = 0; k < j->workers; k++) {
        struct rank *r = &j->ranks[k];
        if (!r->inv || r->steps < 20)
            return;
        v[n++] = r->compute_s / (double)r->steps;
    }
    double med = median(v, n);
    for (uint32_t k = 0; k < j->workers; k++) {
        double cps = j->ranks[k].compute_s / (double)j->ranks[k].steps;
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
static void job_check_stragglers(struct coord_job *j)
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
                      k, r->last_cps * 1e3, med * 1e3, (int)r->pid);
        }
        r->last_cps = 0;
    }
}

/* Epochs still expected for a job that trains to a target accuracy, from the trend of its
 * test accuracy: a least-squares fit of acc(e) = A - B / e over the recorded epochs (e from
 * 1), solved for the target. 0 when there is no target, too little history or no trend (the
 * scheduler then plans for the epoch bound). */
static double job_epochs_left_hint(const struct coord_job *j, double done)
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
struct job_rates {
    double compute_s, comm_s, slowest_s;
};

static int job_profile_rates(const struct coord_job *j, uint64_t at, struct job_rates *pr)
{
    double compute = 0, comm = 0, steps = 0;
    memset(pr, 0, sizeof *pr);
    for (uint32_t k = 0; k < j->workers; k++) {
        const struct rank *r = &j->ranks[k];
        if (!r->pf_set || at < r->pf.step + 2 || r->invocations != r->pf_invocations)
            return 0; /* (a rank re-invoked meanwhile: the others waited for its start) */
        double n = (double)(at - r->pf.step), c = r->sum_compute_s - r->pf.compute_s;
        compute += c;
        comm += r->sum_comm_s - r->pf.comm_s;
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
static void job_decision_point(struct coord_job *j, uint64_t at, double *steps, double *dc,
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

/* The adaptive scheduler at a decision point (an epoch boundary, or with pr the profile's
 * end and its steady rates): feeds it the interval's measurements and asks it for the next
 * configuration. Returns 1 when the budget forces the job to stop. */
static int job_schedule(struct coord_job *j, uint32_t epoch, uint64_t at,
                        const struct job_rates *pr, double t, uint32_t *nw, uint32_t *ns)
{
    int profile = pr != NULL;
    double steps, dc, dm, slowest = 0;
    job_decision_point(j, at, &steps, &dc, &dm);
    if (!(j->spec.deadline_s > 0 || j->spec.budget_usd > 0) || !j->spe || !steps)
        return 0;
    double epoch_s = t - j->boundary_at;
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
    if (!j->sched) {
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
        double cold = 0;
        uint64_t ncold = 0;
        for (uint32_t k = 0; k < j->cap; k++) {
            cold += j->ranks[k].sum_cold_start_s + j->ranks[k].sum_init_s;
            ncold += j->ranks[k].cold_starts;
        }
        sj.cold_start_s = ncold ? cold / (double)ncold : 1.0;
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
        if (!j->sched) {
            job_event(j, "schedule", "the scheduler refused the job's bounds; keeping %u workers, "
                                     "%u shards",
                      j->workers, j->shards.n);
            return 0;
        }
    }
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
    struct sched_state st = {.elapsed_s = now_unix() - j->started_unix,
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
        json_object_set_new(rec, "at", json_real(now_unix()));
        json_object_set_new(rec, "kind", json_string("decision"));
        json_object_set_new(rec, "message", json_string(d.reason));
        if (json_array_size(j->events) >= JOB_EVENTS_MAX)
            json_array_remove(j->events, 0);
        json_array_append(j->events, rec);
        coord_journal_append(j->journal, "event", rec, 0);
        json_decref(rec);
    }
    if (profile)
        job_log(j, "decision after the profile (step %llu): %s", (unsigned long long)at, d.reason);
    else
        job_log(j, "decision at epoch %u: %s", epoch, d.reason);
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
#define JOB_EPOCH_SLACK 0.1

static int job_retarget(struct coord_job *j, uint32_t epoch)
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

/* Every active rank is parked at the epoch boundary: apply changes, start the next epoch. */
static void job_boundary(struct coord_job *j)
{
    if (job_ended(j) || !j->ranks)
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
    if (j->barrier_pending && job_lift_barrier(j) != 0)
        return; /* on_tick() tries again: invoked now, the ranks would be refused at once */
    uint64_t at = j->ranks[0].next_step;
    uint32_t epoch = j->phase_epoch + (uint32_t)((at - j->phase_step) / (j->spe ? j->spe : 1));
    double t = now_mono();
    /* The profile's end, inside epoch 1 (see job_profile()). */
    int profile = j->profile_state == PROFILE_SET && at == j->profile_step && j->spe &&
                  (at - j->phase_step) % j->spe != 0;
    if (j->profile_state == PROFILE_SET && at >= j->profile_step)
        j->profile_state = PROFILE_DONE;
    char when[48];
    struct job_rates rates;
    int manual = j->pending_workers || j->pending_shards;
    /* At the profile's end: a decision only on its steady rates (else at epoch 1's end). */
    int fit = profile && job_profile_end(j, at, t, !manual, &rates);
    int decide = !profile || manual || fit;
    snprintf(when, sizeof when, profile ? "after the profile" : "epoch %u", epoch);
    /* The shards' noise-scale figures since the last sample (one round trip per shard), for
     * the scheduler, the epoch accounting below and the view. */
    j->ns_fresh = job_sample_noise(j, NULL) > 0;
    if (j->spec.statistical_efficiency) {
        job_account_ref(j, epoch);
        if (((double)j->spec.max_epochs - j->ref_done) * job_epoch_factor(j, j->workers) <=
            JOB_EPOCH_SLACK) {
            /* Every reference epoch is trained: nothing to change, the job is done. */
            job_retarget(j, epoch);
            return;
        }
    }
    uint32_t nw = j->pending_workers ? j->pending_workers : j->workers;
    uint32_t ns = j->pending_shards ? j->pending_shards : j->shards.n;
    j->pending_workers = j->pending_shards = 0;
    if (!decide) {
        job_log(j, "the profile's steps do not measure the configuration cleanly (a rank was "
                   "invoked again); the first decision comes at epoch 1's end");
    } else if (manual) {
        double steps, dc, dm;
        job_decision_point(j, at, &steps, &dc, &dm); /* the next interval starts here */
    } else if (job_schedule(j, epoch, at, profile ? &rates : NULL, t, &nw, &ns)) {
        /* The budget does not allow another epoch: end here, model saved. */
        for (uint32_t k = 0; k < j->workers; k++)
            j->ranks[k].finished = 1;
        job_check_done(j);
        return;
    }
    /* After the scheduler has the last invocations' compute per step (the slowest rank's). */
    job_check_stragglers(j);
    if (decide)
        j->boundary_at = t; /* the next interval starts here */
    if (nw != j->workers || ns != j->shards.n)
        j->changed_at = t;
    char err[512] = "";
    if (ns != j->shards.n) {
        uint32_t before = j->shards.n;
        int rc = job_reshard(j, ns, err, sizeof err);
        if (rc)
            job_event(j, "scale", "resharding %u -> %u at step %llu failed (%s); keeping %u",
                      before, ns, (unsigned long long)at, err, before);
        else
            job_event(j, "scale", "%s: %u -> %u shards at step %llu", when, before, ns,
                      (unsigned long long)at);
        if (!rc)
            job_sample_noise(j, NULL); /* a new baseline on the new shards */
    }
    if (nw != j->workers) {
        struct smlt_client *cl = admin_client(j, err, sizeof err);
        int rc = cl ? smlt_update_conf(cl, NULL, NULL, &nw) : SMLT_EIO;
        if (rc && cl)
            snprintf(err, sizeof err, "%s", smlt_client_errmsg(cl));
        smlt_client_close(cl);
        if (rc) {
            job_event(j, "scale", "changing to %u workers failed (%s); keeping %u", nw, err,
                      j->workers);
        } else {
            job_event(j, "scale", "%s: %u -> %u workers at step %llu%s", when, j->workers, nw,
                      (unsigned long long)at,
                      profile ? " (epoch 1 starts again over the new partitions)" : "");
            /* A new phase: partitions of the data over nw ranks from this epoch on (after the
             * profile, from this epoch's start: its first steps were extra training). */
            double tu = now_unix();
            j->worker_s += j->workers * (tu - (j->workers_since > 0 ? j->workers_since
                                                                    : j->started_unix));
            j->workers_since = tu;
            j->phase_step = at;
            j->phase_epoch = epoch;
            j->spe = 0;
            j->total_steps = 0;
            for (uint32_t k = 0; k < nw; k++) {
                struct rank *r = &j->ranks[k];
                if (k >= j->workers) {
                    r->finished = 0;
                    r->failures = 0;
                    r->loss = 0;
                }
                r->next_step = at;
                if (k >= j->workers)
                    rank_mark(&r->ep, r); /* its epoch figures start here */
            }
            j->workers = nw;
            if (profile)
                job_epoch_mark(j, at, now_mono());
        }
    }
    if (j->spec.statistical_efficiency && job_retarget(j, epoch))
        return; /* the reference epochs are done */
    for (uint32_t k = 0; k < j->workers; k++) {
        j->ranks[k].at_boundary = 0;
        rank_invoke(&j->ranks[k]);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct coord_job *j = arg;
    if (job_ended(j))
        return;
    int dead = coord_shards_check(&j->shards);
    if (dead >= 0) {
        char msg[1200];
        snprintf(msg, sizeof msg, "parameter-server shard %d exited (see %s/shards.log)", dead,
                 j->dir);
        job_finish(j, JOB_FAILED, msg);
        return;
    }
    charge_ps(j);
    if (j->spec.budget_usd > 0 && !j->stopping) {
        /* The budget is a hard limit: stop while the workers' next progress reports (at most
         * a couple of seconds away) and the shutdown still fit in it. */
        double rate = j->workers * (j->memory_mb / 1024.0) * j->spec.prices.gb_s +
                      j->shards.n * j->spec.prices.ps_node_hour / 3600.0;
        double spent = job_cost(j);
        if (spent + rate * 3.0 >= j->spec.budget_usd) {
            snprintf(j->reason, sizeof j->reason,
                     "budget of $%.6f reached ($%.6f spent at step %llu): stopped after the "
                     "current step, model saved",
                     j->spec.budget_usd, spent, (unsigned long long)j->step);
            job_event(j, "budget", "%s", j->reason);
            j->stopping = 1;
            j->end_state = JOB_STOPPED;
            job_halt_workers(j);
            job_boundary(j); /* ranks already parked at a boundary end now */
        }
    }
    if (j->unfreeze_pending && !j->barrier_pending) {
        char err[256] = "";
        j->unfreeze_pending = job_unfreeze(j, err, sizeof err) != 0;
    }
    if (!j->stopping && j->barrier_pending) {
        job_boundary(j); /* a barrier that could not be lifted last time */
    } else if (!j->stopping && !j->parks) {
        if (j->pending_workers || j->pending_shards)
            job_request_barrier(j, "a manual scale");
        else
            job_watch_stragglers(j, now_mono());
    }
    if (j->spec.deadline_s > 0 && !j->deadline_warned &&
        now_unix() - j->submitted_unix > j->spec.deadline_s) {
        j->deadline_warned = 1;
        job_event(j, "deadline", "the deadline of %.0f s has passed at step %llu of %llu",
                  j->spec.deadline_s, (unsigned long long)j->step, (unsigned long long)j->total_steps);
    }
    struct timeval tv = {(time_t)JOB_TICK_S, 0};
    evtimer_add(j->tick_ev, &tv);
}

static void job_start(evutil_socket_t fd, short what, void *arg)
{
    struct coord_job *j = arg;
    struct coord *c = j->c;
    char err[512] = "";
    int rc;
    job_set_state(j, JOB_STARTING, NULL);
    j->t_start = now_mono();
    j->started_unix = now_unix();
    if (j->spec.deadline_s > 0)
        j->deadline_mono = j->t_start - (j->started_unix - j->submitted_unix) + j->spec.deadline_s;
    if (j->spec.ps.addrs[0])
        rc = coord_shards_external(&j->shards, j->spec.ps.addrs, j->spec.ps.token,
                                   j->spec.ps.admin_token[0] ? j->spec.ps.admin_token : NULL, err,
                                   sizeof err);
    else
        rc = coord_shards_start(&j->shards, j->spec.shards, j->spec.platform.ps_nic_mbps,
                                c->ps_bin, j->dir, err, sizeof err);
    if (rc) {
        job_finish(j, JOB_FAILED, err);
        return;
    }
    j->ps_charged_at = now_mono();
    struct smlt_job_conf conf;
    coord_spec_job_conf(&j->spec, &conf);
    conf.job = j->id;
    rc = worker_setup_job(j->shards.addrs, j->shards.admin_token[0] ? j->shards.admin_token
                                                                     : j->shards.token,
                          j->spec.model, &conf, err, sizeof err);
    if (rc) {
        char msg[600];
        snprintf(msg, sizeof msg, "configuring the shards: %s", err);
        job_finish(j, JOB_FAILED, msg);
        return;
    }
    job_sample_noise(j, NULL); /* the baseline for the noise-scale figures */
    job_log(j, "%u shards at %s configured for %s (%llu parameters), %s, %s lr %g",
            j->shards.n, j->shards.addrs, j->spec.model, (unsigned long long)j->spec.model_params,
            coord_spec_sync_name(j->spec.sync), coord_spec_optim_name(j->spec.optimizer.kind),
            j->spec.optimizer.lr);
    j->workers = j->spec.workers;
    j->cap = j->spec.max_workers > j->spec.workers ? j->spec.max_workers : j->spec.workers;
    j->memory_mb = j->spec.platform.memory_mb;
    j->ranks = calloc(j->cap, sizeof *j->ranks);
    if (!j->ranks) {
        job_finish(j, JOB_FAILED, "out of memory");
        return;
    }
    for (uint32_t k = 0; k < j->cap; k++) {
        j->ranks[k].job = j;
        j->ranks[k].rank = k;
        j->ranks[k].retry_ev = evtimer_new(c->base, on_retry, &j->ranks[k]);
    }
    /* Ranks park at every epoch boundary where a decision is made at every one (a deadline
     * or a budget) or where the shards cannot stop them at a step of our choosing (only BSP
     * shards can, and only for an admin). The others train on through boundaries in one
     * invocation, and the coordinator sets a barrier when it has a change to make. */
    j->parks = j->spec.deadline_s > 0 || j->spec.budget_usd > 0 ||
               j->spec.statistical_efficiency || j->spec.sync != SMLT_SYNC_BSP ||
               !j->shards.admin_token[0];
    job_set_state(j, JOB_RUNNING, NULL);
    j->epoch_started = j->boundary_at = now_mono();
    for (uint32_t k = 0; k < j->workers; k++)
        rank_invoke(&j->ranks[k]);
    j->tick_ev = evtimer_new(c->base, on_tick, j);
    struct timeval tv = {(time_t)JOB_TICK_S, 0};
    evtimer_add(j->tick_ev, &tv);
}

static struct coord_job *job_alloc(struct coord *c, const char *id)
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

static void job_free(struct coord_job *j)
{
    for (uint32_t k = 0; j->ranks && k < j->cap; k++)
        if (j->ranks[k].retry_ev)
            event_free(j->ranks[k].retry_ev);
    free(j->ranks);
    if (j->tick_ev)
        event_free(j->tick_ev);
    if (j->start_ev)
        event_free(j->start_ev);
    sched_free(j->sched);
    coord_journal_close(j->journal);
    if (j->log_fd >= 0)
        close(j->log_fd);
    json_decref(j->series);
    json_decref(j->profile);
    json_decref(j->events);
    json_decref(j->ps_stats);
    json_decref(j->spec_json);
    free(j);
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
    if (spec->platform.kind != COORD_PLATFORM_LOCAL) {
        snprintf(err, errlen, "platform.kind: \"%s\" is not available from this coordinator; "
                              "use \"local\"", coord_spec_platform_name(spec->platform.kind));
        c->refused++;
        free(spec);
        return SMLT_EINVAL;
    }
    char jid[JOB_ID_MAX];
    snprintf(jid, sizeof jid, "job-%04u", ++c->next_seq);
    struct coord_job *j = job_alloc(c, jid);
    if (!j) {
        free(spec);
        return SMLT_ENOMEM;
    }
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
    j->log_fd = open(j->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    j->submitted_unix = now_unix();
    json_t *full = coord_spec_to_json(&j->spec);
    json_t *rec = json_pack("{s:s, s:o, s:f}", "id", jid, "spec", full, "submitted", j->submitted_unix);
    coord_journal_append(j->journal, "submitted", rec, 1);
    json_decref(rec);
    job_log(j, "submitted: %s on %s, %u workers, %u shards%s%s", j->spec.model, j->spec.dataset,
            j->spec.workers, j->spec.shards, j->spec.deadline_s > 0 ? ", with a deadline" : "",
            j->spec.budget_usd > 0 ? ", with a budget" : "");
    c->submitted++;
    j->start_ev = evtimer_new(c->base, job_start, j);
    struct timeval tv = {0, 0};
    evtimer_add(j->start_ev, &tv);
    snprintf(id, idlen, "%s", jid);
    return 0;
}

/* ---- views ------------------------------------------------------------------------------- */

static json_t *job_summary(struct coord_job *j)
{
    double el = 0;
    if (j->started_unix > 0)
        el = (j->ended_unix > 0 ? j->ended_unix : now_unix()) - j->started_unix;
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:i, s:i, s:f, s:f}", "id",
                     j->id, "name", j->have_spec ? j->spec.name : "", "state", state_names[j->state],
                     "epoch", (json_int_t)(j->epoch_done + 1), "step", (json_int_t)j->step,
                     "total_steps", (json_int_t)j->total_steps, "train_loss", j->train_loss,
                     "test_accuracy", j->test_acc, "cost_usd", job_cost(j), "workers",
                     (int)j->workers, "shards", (int)j->shards.n, "elapsed_s", el, "submitted",
                     j->submitted_unix);
}

json_t *coord_jobs_json(struct coord *c)
{
    json_t *a = json_array();
    for (struct coord_job *j = c->jobs; j; j = j->next)
        json_array_append_new(a, job_summary(j));
    return a;
}

json_t *coord_job_json(struct coord *c, const char *id)
{
    struct coord_job *j = job_find(c, id);
    if (!j)
        return NULL;
    json_t *o = job_summary(j);
    json_object_set_new(o, "best_accuracy", json_real(j->best_acc));
    json_object_set_new(o, "test_loss", json_real(j->test_loss));
    json_object_set_new(o, "steps_per_epoch", json_integer((json_int_t)j->spe));
    json_object_set_new(o, "error", json_string(j->error));
    json_object_set_new(o, "reason", json_string(j->reason));
    if (j->spec_json)
        json_object_set(o, "spec", j->spec_json);
    json_object_set_new(o, "ledger", coord_ledger_to_json(&j->ledger));
    if (!j->have_spec && j->spec_json) {
        /* A restored job: its settings as the spec recorded them. */
        static const char *keys[] = {"budget_usd", "deadline_s", "max_epochs", "target_accuracy"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            json_t *v = json_object_get(j->spec_json, keys[k]);
            json_object_set(o, keys[k], v ? v : json_real(0));
        }
        json_t *ep = json_object_get(j->spec_json, "epochs");
        if (ep && !json_object_get(j->spec_json, "max_epochs"))
            json_object_set(o, "max_epochs", ep);
    }
    /* The data epochs the job will train (more than max_epochs when statistical efficiency
     * counts a larger global batch's epochs for less; 0 in journals from before it). */
    int se = j->have_spec ? j->spec.statistical_efficiency
                          : json_is_true(json_object_get(j->spec_json, "statistical_efficiency"));
    if (j->epochs_target)
        json_object_set_new(o, "epochs_target", json_integer(j->epochs_target));
    if (j->epochs_target && se)
        json_object_set_new(o, "reference_epochs_done", json_real(j->ref_done));
    if (j->have_spec) {
        json_object_set_new(o, "budget_usd", json_real(j->spec.budget_usd));
        json_object_set_new(o, "deadline_s", json_real(j->spec.deadline_s));
        json_object_set_new(o, "max_epochs", json_integer(j->spec.max_epochs));
        json_object_set_new(o, "target_accuracy", json_real(j->spec.target_accuracy));
        if (j->spec.deadline_s > 0 && !job_ended(j))
            json_object_set_new(o, "deadline_in_s",
                                json_real(j->spec.deadline_s - (now_unix() - j->submitted_unix)));
    }
    uint64_t inv = 0, cold = 0, warm = 0, lost = 0, running = 0;
    double compute = 0, comm = 0, init = 0, busy = 0, cold_s = 0, warm_s = 0;
    json_t *ranks = json_array();
    for (uint32_t k = 0; j->ranks && k < j->cap; k++) {
        struct rank *r = &j->ranks[k];
        if (k >= j->workers && !r->invocations)
            continue; /* never used */
        inv += r->invocations;
        cold += r->cold_starts;
        warm += r->warm_starts;
        cold_s += r->sum_cold_start_s;
        warm_s += r->sum_warm_start_s;
        lost += r->lost;
        running += r->inv != 0;
        compute += r->sum_compute_s + r->compute_s;
        comm += r->sum_comm_s + r->comm_s;
        init += r->sum_init_s + r->init_s;
        busy += r->sum_elapsed_s;
        /* Ranks past the current worker count left at a scale-in; they stay in the view
         * (their invocations and spending are part of the job) marked "active": false. */
        json_array_append_new(ranks, json_pack("{s:i, s:b, s:I, s:b, s:b, s:i, s:I}", "rank",
                                               (int)k, "active", k < j->workers, "next_step",
                                               (json_int_t)r->next_step, "running", r->inv != 0,
                                               "finished", r->finished, "failures", r->failures,
                                               "invocations", (json_int_t)r->invocations));
    }
    json_object_set_new(o, "ranks", ranks);
    json_object_set_new(o, "invocations",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f}",
                                  "total", (json_int_t)inv, "cold", (json_int_t)cold, "warm",
                                  (json_int_t)warm, "lost", (json_int_t)lost, "running",
                                  (json_int_t)running, "compute_s", compute, "comm_s", comm,
                                  "init_s", init, "billed_s", busy, "cold_start_s",
                                  cold ? cold_s / (double)cold : 0.0, "warm_start_s",
                                  warm ? warm_s / (double)warm : 0.0));
    /* B_simple measured by the shards (BSP with 2+ workers), at the last epoch boundary the
     * scheduler saw or at the end: the global batch beyond which more workers buy less. */
    json_object_set_new(o, "noise_scale", j->noise_scale > 0 ? json_real(j->noise_scale)
                                                             : json_null());
    /* The share of the job's time its workers spent outside training steps (starting,
     * loading, evaluating, waiting for invocations): 1 - (compute + communication) over
     * worker-seconds since the job started (workers x time, phase by phase). */
    if (j->workers && j->started_unix > 0 && j->ranks) { /* (restored jobs have no ranks) */
        double since = j->workers_since > 0 ? j->workers_since : j->started_unix;
        double end = j->ended_unix > 0 ? j->ended_unix : now_unix();
        double ws = j->worker_s + j->workers * (end - since);
        json_object_set_new(o, "overhead_share",
                            json_real(ws > 0 ? fmax(0.0, 1.0 - (compute + comm) / ws) : 0.0));
    }
    /* The profiling phase's measurements (the first steps of epoch 1 at the first
     * configuration; null when the job had none: see job_profile()). */
    json_object_set_new(o, "profile", j->profile ? json_incref(j->profile) : json_null());
    json_object_set(o, "series", j->series);
    json_object_set(o, "events", j->events);
    json_object_set_new(o, "model", j->model_saved ? json_string(j->model_path) : json_null());
    json_object_set_new(o, "model_step", json_integer((json_int_t)j->model_step));
    json_object_set_new(o, "ps_addrs", json_string(j->shards.addrs));
    if (j->ps_stats)
        json_object_set(o, "ps_stats", j->ps_stats);
    return o;
}

int coord_cancel(struct coord *c, const char *id, char *err, size_t errlen)
{
    struct coord_job *j = job_find(c, id);
    if (!j) {
        snprintf(err, errlen, "no job %s", id);
        return SMLT_ENOTFOUND;
    }
    if (job_ended(j)) {
        snprintf(err, errlen, "job %s has already ended (%s)", id, state_names[j->state]);
        return SMLT_EINVAL;
    }
    if (j->state == JOB_QUEUED && j->start_ev)
        evtimer_del(j->start_ev);
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
        snprintf(err, errlen, "job %s is %s, not running", id, state_names[j->state]);
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

int coord_checkpoint(struct coord *c, const char *id, char *path, size_t pathlen, char *err,
                     size_t errlen)
{
    struct coord_job *j = job_find(c, id);
    if (!j) {
        snprintf(err, errlen, "no job %s", id);
        return SMLT_ENOTFOUND;
    }
    if (j->state != JOB_RUNNING) {
        if (j->model_saved) {
            snprintf(path, pathlen, "%s", j->model_path);
            return 0;
        }
        snprintf(err, errlen, "job %s is %s and has no saved model", id, state_names[j->state]);
        return SMLT_EINVAL;
    }
    int rc = job_save_model(j, err, errlen);
    if (!rc)
        snprintf(path, pathlen, "%s", j->model_path);
    return rc;
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

void coord_metrics(struct coord *c, struct evbuffer *out)
{
    unsigned counts[JOB_NSTATES] = {0};
    double cost = 0, gb_s = 0;
    for (struct coord_job *j = c->jobs; j; j = j->next) {
        counts[j->state]++;
        cost += job_cost(j);
        gb_s += j->ledger.gb_s;
    }
    struct coord_backend_stats bs;
    coord_backend_stats(c->backend, &bs);
    struct coord_rpc_stats rs;
    coord_rpc_stats(c->rpc, &rs);
    evbuffer_add_printf(out, "# HELP smlt_jobs Jobs known to the coordinator, by state.\n"
                             "# TYPE smlt_jobs gauge\n");
    for (int s = 0; s < JOB_NSTATES; s++)
        evbuffer_add_printf(out, "smlt_jobs{state=\"%s\"} %u\n", state_names[s], counts[s]);
#define COUNTER(name, help, v)                                                                     \
    evbuffer_add_printf(out, "# HELP smlt_" name " " help "\n# TYPE smlt_" name " counter\nsmlt_" name " %llu\n", \
                        (unsigned long long)(v))
#define GAUGE(name, help, fmt, v)                                                                  \
    evbuffer_add_printf(out, "# HELP smlt_" name " " help "\n# TYPE smlt_" name " gauge\nsmlt_" name " " fmt "\n", (v))
    COUNTER("jobs_submitted_total", "Jobs accepted.", c->submitted);
    COUNTER("jobs_refused_total", "Job specs refused as invalid.", c->refused);
    COUNTER("invocations_total", "Function invocations started.", bs.invocations);
    COUNTER("cold_starts_total", "Invocations served by a new instance.", bs.cold_starts);
    COUNTER("warm_starts_total", "Invocations served by a warm instance.", bs.warm_starts);
    COUNTER("invocation_timeouts_total", "Invocations killed at the time limit.", bs.timeouts);
    COUNTER("invocation_crashes_total", "Invocations whose instance died.", bs.crashes);
    COUNTER("rpc_connections_total", "Worker RPC connections accepted.", rs.conns);
    COUNTER("rpc_auth_failures_total", "Worker RPC handshakes refused.", rs.auth_failures);
    COUNTER("rpc_frames_bad_total", "Malformed frames on the worker RPC.", rs.frames_bad);
    GAUGE("invocations_running", "Invocations running now.", "%u", bs.running);
    GAUGE("invocations_waiting", "Invocations waiting for a concurrency slot.", "%u", bs.waiting);
    GAUGE("instances_idle", "Warm instances kept for reuse.", "%u", bs.idle);
    evbuffer_add_printf(out, "# HELP smlt_function_gb_seconds_total Function GB-seconds used.\n"
                             "# TYPE smlt_function_gb_seconds_total counter\n"
                             "smlt_function_gb_seconds_total %.6f\n",
                        gb_s);
    evbuffer_add_printf(out, "# HELP smlt_cost_usd Spend of all jobs so far, in US dollars.\n"
                             "# TYPE smlt_cost_usd gauge\nsmlt_cost_usd %.6f\n",
                        cost);
#undef COUNTER
#undef GAUGE
}

/* ---- restoring history ------------------------------------------------------------------- */

struct replay_ctx {
    struct coord_job *j;
    double last_t; /* the last record's time, an "interrupted" state aside */
};

static int on_replay(const char *type, json_t *rec, void *arg)
{
    struct replay_ctx *x = arg;
    struct coord_job *j = x->j;
    /* The journal's own keys are not part of what was recorded (but its time is when). */
    double rec_t = json_number_value(json_object_get(rec, "t")) / 1000.0;
    json_t *copy = json_copy(rec);
    json_object_del(copy, "t");
    json_object_del(copy, "type");
    rec = copy;
    if (!strcmp(type, "submitted")) {
        json_t *spec = json_object_get(rec, "spec");
        j->submitted_unix = json_real_value(json_object_get(rec, "submitted"));
        if (spec) {
            /* Shown as recorded; secrets are masked like coord_spec_to_json_redacted(). */
            j->spec_json = json_deep_copy(spec);
            json_t *ps = json_object_get(j->spec_json, "ps");
            if (ps && json_object_get(ps, "token"))
                json_object_set_new(ps, "token", json_string("***"));
            if (ps && json_object_get(ps, "admin_token"))
                json_object_set_new(ps, "admin_token", json_string("***"));
            json_t *w = json_object_get(spec, "workers");
            j->workers = w ? (uint32_t)json_integer_value(w) : 0;
        }
    } else if (!strcmp(type, "state")) {
        const char *st = json_string_value(json_object_get(rec, "state"));
        for (int s = 0; st && s < JOB_NSTATES; s++)
            if (!strcmp(st, state_names[s]))
                j->state = (enum job_state)s;
        const char *e = json_string_value(json_object_get(rec, "error"));
        const char *why = json_string_value(json_object_get(rec, "reason"));
        if (e)
            snprintf(j->error, sizeof j->error, "%s", e);
        if (why)
            snprintf(j->reason, sizeof j->reason, "%s", why);
        json_t *l = json_object_get(rec, "ledger");
        if (l) {
            j->ledger.total_usd = json_real_value(json_object_get(l, "total_usd"));
            j->ledger.function_usd = json_real_value(json_object_get(l, "function_usd"));
            j->ledger.request_usd = json_real_value(json_object_get(l, "request_usd"));
            j->ledger.ps_usd = json_real_value(json_object_get(l, "ps_usd"));
            j->ledger.gb_s = json_real_value(json_object_get(l, "gb_s"));
            j->ledger.invocations = (uint64_t)json_integer_value(json_object_get(l, "invocations"));
        }
        if (json_object_get(rec, "step"))
            j->step = (uint64_t)json_integer_value(json_object_get(rec, "step"));
        if (st && !strcmp(st, "starting"))
            j->started_unix = rec_t; /* as job_start() takes it */
        if (job_ended(j))
            j->ended_unix = rec_t;
        if (json_object_get(rec, "steps_per_epoch"))
            j->spe = (uint64_t)json_integer_value(json_object_get(rec, "steps_per_epoch"));
        if (json_object_get(rec, "total_steps"))
            j->total_steps = (uint64_t)json_integer_value(json_object_get(rec, "total_steps"));
        if (json_is_integer(json_object_get(rec, "epochs_target")))
            j->epochs_target = (uint32_t)json_integer_value(json_object_get(rec, "epochs_target"));
        if (json_is_number(json_object_get(rec, "reference_epochs_done")))
            j->ref_done = json_number_value(json_object_get(rec, "reference_epochs_done"));
        if (json_is_number(json_object_get(rec, "noise_scale")))
            j->noise_scale = json_number_value(json_object_get(rec, "noise_scale"));
        json_t *ps = json_object_get(rec, "ps_stats");
        if (ps) {
            json_decref(j->ps_stats);
            j->ps_stats = json_incref(ps);
        }
    } else if (!strcmp(type, "epoch")) {
        json_array_append(j->series, rec);
        j->epoch_done = json_integer_value(json_object_get(rec, "epoch"));
        j->test_acc = json_real_value(json_object_get(rec, "test_accuracy"));
        j->test_loss = json_real_value(json_object_get(rec, "test_loss"));
        j->train_loss = json_real_value(json_object_get(rec, "train_loss"));
        if (j->test_acc > j->best_acc)
            j->best_acc = j->test_acc;
        j->step = (uint64_t)json_integer_value(json_object_get(rec, "step"));
        j->workers = (uint32_t)json_integer_value(json_object_get(rec, "workers"));
        j->shards.n = (uint32_t)json_integer_value(json_object_get(rec, "shards"));
    } else if (!strcmp(type, "profile")) {
        json_decref(j->profile);
        j->profile = json_incref(rec);
    } else if (!strcmp(type, "progress")) {
        j->step = (uint64_t)json_integer_value(json_object_get(rec, "step"));
        j->train_loss = json_real_value(json_object_get(rec, "train_loss"));
    } else if (!strcmp(type, "event")) {
        if (json_array_size(j->events) >= JOB_EVENTS_MAX)
            json_array_remove(j->events, 0);
        json_array_append(j->events, rec);
    } else if (!strcmp(type, "model")) {
        j->model_saved = 1;
        j->model_step = (uint64_t)json_integer_value(json_object_get(rec, "step"));
    }
    if (j->state != JOB_INTERRUPTED)
        x->last_t = rec_t;
    json_decref(copy);
    return 0;
}

static int on_list(const char *job_id, void *arg)
{
    struct coord *c = arg;
    struct coord_job *j = job_alloc(c, job_id);
    if (!j)
        return 0;
    struct replay_ctx x = {.j = j};
    coord_journal_replay(c->data_dir, job_id, on_replay, &x);
    unsigned seq = 0;
    if (sscanf(job_id, "job-%u", &seq) == 1 && seq > c->next_seq)
        c->next_seq = seq;
    if (!job_ended(j)) {
        /* It was running when the coordinator went away; its shards and workers went with it
         * (they die with their parent). Its history stays; it does not run again. */
        char err[256];
        j->journal = coord_journal_open(c->data_dir, job_id, err, sizeof err);
        j->log_fd = open(j->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        job_set_state(j, JOB_INTERRUPTED, "the coordinator restarted while the job ran");
    }
    if (j->state == JOB_INTERRUPTED && x.last_t > 0)
        j->ended_unix = x.last_t; /* last heard of, not when the coordinator came back */
    return 0;
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
    struct coord_backend_local_conf bc = {.worker_bin = c->worker_bin,
                                          .concurrency = conf->concurrency ? conf->concurrency : 64,
                                          .keep_warm_s = conf->keep_warm_s > 0 ? conf->keep_warm_s : 60,
                                          .memory_limit = !conf->no_memory_limit};
    c->backend = coord_backend_local_new(base, &bc);
    if (!c->backend) {
        snprintf(err, errlen, "cannot create the local function runtime");
        goto fail;
    }
    static const struct coord_rpc_handler h = {rpc_hello, rpc_progress, rpc_done};
    c->rpc = coord_rpc_new(base, conf->rpc_listen ? conf->rpc_listen : "127.0.0.1:0", &h, c, err,
                           errlen);
    if (!c->rpc)
        goto fail;
    /* The history of earlier jobs, newest last in the list walk (jobs are prepended). */
    coord_journal_list(c->data_dir, on_list, c);
    return c;
fail:
    coord_free(c);
    return NULL;
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
    coord_backend_free(c->backend);
    coord_rpc_free(c->rpc);
    while (c->jobs) {
        struct coord_job *j = c->jobs;
        c->jobs = j->next;
        job_free(j);
    }
    free(c->data_dir);
    free(c);
}
