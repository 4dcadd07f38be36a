/* coord_int.h: the coordinator's private header: a job, its ranks, the coordinator, and the
 * functions the job modules call in each other. Nothing outside coordinator/ includes it.
 *
 * The job code is split by concern (docs/ARCHITECTURE.md, "Reading the coordinator"):
 *   coord.c          the API of coord.h and the job list: submit, cancel, scale, checkpoint,
 *                    coord_new / coord_free
 *   coord_job.c      the job state machine: start, tick, finish, events, the journal, cost
 *   coord_rank.c     ranks and invocations: invoke, invocation end, the worker RPC handlers,
 *                    progress
 *   coord_phase.c    phases: barriers, the profile, epoch boundaries, resharding, halting
 *   coord_adapt.c    adaptation: the scheduler's feed, statistical efficiency, the gradient
 *                    noise scale, stragglers
 *   coord_view.c     the JSON views and /metrics
 *   coord_restore.c  journal replay after a restart (coord_resume.c: the job goes on;
 *                    coord_adopt.c: its worker instances that outlived the coordinator)
 *   coord_admin.c    the asynchronous admin client every call to the shards goes through
 *
 * Everything here runs on the coordinator's event loop thread; nothing blocks it on the
 * network (coord_admin.c runs the shards' admin calls off the loop and reports back on it). */
#ifndef COORD_INT_H
#define COORD_INT_H

#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>
#include <jansson.h>

#include "coord.h"
#include "coord_admin.h"
#include "coord_backend.h"
#include "coord_journal.h"
#include "coord_ledger.h"
#include "coord_rpc.h"
#include "coord_shards.h"
#include "coord_spec.h"
#include "sched.h"
#include "smlt.pb-c.h"
#include "smlt_hist.h"
#include "smlt_util.h"

#define JOB_ID_MAX 64
#define INV_ID_MAX 96
#define JOB_MAX_FAILURES 5        /* consecutive failed invocations of one rank before giving up */
#define JOB_EVENTS_MAX 200        /* events kept in memory per job */
#define JOB_PROGRESS_EVERY_S 5.0  /* journal a progress record at most this often */
#define JOB_TICK_S 1.0
#define JOB_EPOCH_SLACK 0.1       /* statistical efficiency: a sliver of an epoch not trained */
#define JOB_HEARTBEAT_S 10.0      /* a STATS round to every shard this often, when idle */
#define JOB_BUDGET_MARGIN_S 3.0   /* the budget stop: time for the next reports and the halt */
#define JOB_HEARTBEAT_MISSES 3    /* missed in a row: the shard is taken for dead */
#define JOB_CKPT_PROVISIONAL 200  /* checkpoint.every_s: steps between checkpoints until the
                                     step time is measured */

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

extern const char *const job_state_names[JOB_NSTATES];

struct coord_job;

/* A rank's compute and communication totals and its reported step at some moment: the start
 * of an interval that its figures are measured over. */
struct rank_mark {
    double compute_s, comm_s;
    uint64_t step;
};

/* The rank's current invocation (or its last one: id is 0 once it ended). */
struct rank_inv {
    uint64_t id;            /* backend invocation, 0 when none */
    char name[INV_ID_MAX];  /* "JOB/RANK/SEQ", what the worker says hello with */
    char token[65];
    double started;         /* CLOCK_MONOTONIC */
    uint64_t from_step;     /* the cursor when it began */
    uint32_t memory_mb;     /* the memory size it runs with */
    int done_seen;          /* Done arrived */
    int done_status;        /* Smlt__DoneStatus */
    char done_error[256];
    /* its progress, from the worker's reports */
    double loss, compute_s, comm_s, init_s;
    uint64_t steps;
    int cold;
    uint64_t rep_steps;     /* steps and compute + comm seconds at its previous report */
    double rep_s;           /* (for the smlt_step_seconds histogram) */
    double hello_at;        /* when its worker said hello */
    double ready_at;        /* when it began training (its first report with steps, less the
                             * seconds of those steps); 0 before */
    int warm;               /* its instance had served before */
    pid_t pid;              /* the instance serving it */
    /* Adopted after a restart of the coordinator (coord_adopt.c): its instance was started by
     * the coordinator before, so the backend does not know it; its end comes from its Done,
     * or from its process's end, or from the time limit kept here. */
    int adopted;
    int resumed;            /* adopted, and its worker has said hello again */
    double limit_at;        /* adopted: the platform's time limit (CLOCK_MONOTONIC) */
    int billed_before;      /* adopted, and running when the restored ledger was recorded
                               (which charged its request and its time up to then) */
};

/* A rank's totals over the job (closed invocations; add cur for the running one). */
struct rank_totals {
    uint64_t invocations, cold_starts, warm_starts, lost;
    double cold_start_s, warm_start_s; /* invoke -> Assignment handed out */
    double compute_s, comm_s, init_s, elapsed_s;
    double ready_cold_s;    /* cold invocations' time from invoke to their first step */
    uint64_t ready_cold_n;
};

struct rank {
    struct coord_job *job;
    uint32_t rank;
    uint64_t next_step;     /* the cursor */
    int finished;
    int at_boundary;        /* parked at the epoch boundary, waiting for the others */
    int failures;
    uint64_t steps_at_fail; /* the cursor when the current run of failures began */
    struct event *retry_ev;
    struct event *end_ev;   /* an adopted invocation's end, deferred out of the RPC handler */
    pid_t slow_pid;         /* chaos: the slow host this rank first ran on */
    int replace_next;       /* a straggler: its next invocation avoids the current instance */
    double last_cps;        /* compute seconds per step in its last invocation */
    double last_report;     /* when its last Progress (or Done) came */
    struct rank_inv cur;
    struct rank_totals tot;
    /* marks */
    struct rank_mark ep;    /* when the current epoch began */
    /* After its first step in the profiling phase (its first report): the profile's steady
     * rates leave out the start (the first pull waits for the last rank to start). */
    struct rank_mark pf;
    uint64_t pf_invocations; /* its invocations then: another since makes the rates unfit */
    int pf_set;
};

/* The profile's steady rates per worker and step (job_profile_rates()). */
struct job_rates {
    double compute_s, comm_s, slowest_s;
};

/* What an epoch boundary is doing while it waits for the shards (coord_phase.c). */
enum boundary_stage {
    BD_IDLE,     /* no boundary in progress */
    BD_LIFT,     /* lifting the barrier */
    BD_NOISE,    /* sampling the noise figures */
    BD_RESHARD,  /* moving to a new shard count */
    BD_BASELINE, /* a new noise baseline on the new shards */
    BD_WORKERS   /* changing the shards' expected worker count */
};

/* A phase as recorded: where it starts and with how many workers (coord_recover.c restores
 * the phase of a checkpoint's step). */
struct job_phase_rec {
    uint64_t phase_step;
    uint32_t phase_epoch, workers;
};

#define JOB_PHASES_MAX 256

struct coord_job {
    struct coord *c;
    char id[JOB_ID_MAX];
    struct coord_spec spec;
    int have_spec;          /* 0 only for a restored job whose recorded spec no longer parses */
    json_t *spec_json;      /* canonical, tokens redacted: what the API shows */
    enum job_state state;
    char error[1300];
    char reason[SCHED_REASON_MAX + 64];       /* why it ended (target accuracy reached, ...) */
    struct coord_journal *journal;
    char dir[1024], model_path[1100], log_path[1100];
    char *model_source;   /* a torch job's training file (kept in dir/model.py), or NULL */
    int log_fd;
    struct coord_ledger ledger;
    double submitted_unix, started_unix, ended_unix;
    double t_start;         /* CLOCK_MONOTONIC */
    struct coord_shards shards;
    struct coord_admin *admin; /* the asynchronous admin client to the shards (job_admin()),
                                  made at the first call, freed once the job has ended */
    struct event *admin_free_ev;
    uint32_t workers;       /* ranks active in this phase */
    uint32_t cap;           /* ranks allocated (the most the job may use) */
    struct rank *ranks;
    uint32_t memory_mb;     /* function memory size now (the scheduler may change it) */
    /* The phase: since phase_step (the first step of epoch phase_epoch) `workers` ranks run. */
    uint64_t phase_step;
    uint32_t phase_epoch;
    uint32_t pending_workers, pending_shards; /* a manual scale, applied at the next boundary */
    int parks;              /* every rank parks at every epoch boundary (see job_start()) */
    int barrier_pending;    /* the shards stop every rank at barrier_step for a change */
    int barrier_setting;    /* a freeze is being set (admin call in flight) */
    uint64_t barrier_step;
    int unfreeze_pending;   /* a barrier that failed to set may hold some shards: call it off */
    int unfreezing;         /* that call is in flight */
    /* The epoch boundary in progress (coord_phase.c): its stage and what it decided. */
    struct {
        enum boundary_stage stage;
        uint64_t at;
        uint32_t epoch, nw, ns, shards_before;
        int profile, decide, rates_ok;
        struct job_rates rates;
        double t;
        char when[48];
        char old_addrs[COORD_SHARDS_MAX * COORD_ADDR_LEN];
    } bd;
    /* The profiling phase of a scheduled job: the first steps of epoch 1, after which the
     * scheduler makes its first decision (see job_profile()). */
    enum { PROFILE_NONE, PROFILE_SETTING, PROFILE_SET, PROFILE_DONE } profile_state;
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
    int halting;            /* a stop at one step (smlt_stop_at) is being set */
    int finishing;          /* job_finish() is saving the model and stopping the shards */
    enum job_state finish_state;
    char finish_why[1300];
    double resume_from_unix; /* a resumed job: when it was last heard of before the restart */
    double ledger_unix;      /* when the restored ledger was recorded */
    json_t *adopt;           /* restored: each rank's last invocation ("0": its journal record,
                                with "ended" once it ended), for coord_adopt.c */
    /* Recovery from a dead shard (coord_recover.c). */
    struct job_phase_rec phases[JOB_PHASES_MAX];
    uint32_t nphases;
    uint64_t map_version;   /* of the shards' partition map */
    int recovering;
    uint64_t ckpt_every;    /* the checkpoint interval the shards have, in steps */
    int ckpt_rate_set;      /* every_s was turned into steps for this phase */
    /* Replicated shards (coord_replica.c): the backups being built, one after another. */
    uint32_t rp_shard;
    int rp_pending, rp_done;
    uint8_t rp_built[COORD_SHARDS_MAX];
    void (*rp_then)(struct coord_job *j);
    void (*rp_after)(struct coord_job *j); /* job_replicas_rebuild()'s then */
    double hb_at;           /* the last heartbeat (a STATS round) sent */
    int hb_pending;
    uint8_t hb_miss[COORD_SHARDS_MAX]; /* heartbeats each shard missed in a row */
    uint32_t rc_shard, rc_conf_workers;
    uint64_t rc_was;        /* the furthest step a surviving shard had reached */
    pid_t rc_pid;
    coord_done_fn end_cb;   /* coord_cancel()'s caller, told when the job has ended */
    void *end_arg;
    int model_saved;
    uint64_t model_step;
    struct coord_job *next;
};

struct coord {
    struct event_base *base;
    char *data_dir;
    char ps_bin[1024], worker_bin[1024];
    struct coord_backend *backend;
    int platform;            /* enum coord_platform_kind the backend serves */
    char rpc_advertise[128]; /* what workers dial ("" : the RPC's own address) */
    struct coord_rpc *rpc;
    struct coord_job *jobs;
    unsigned next_seq;
    unsigned long long submitted, refused;
    unsigned long long callbacks_unserved; /* callbacks refused by a platform that takes none */
    struct coord_admin_stats admin_done; /* the admin queues of jobs that have ended */
    /* /metrics histograms: invoke -> worker hello, by cold or warm instance; each rank's step
     * time (compute + communication) from its reports */
    struct smlt_hist start_cold, start_warm, step_time;
    /* TLS (coord_conf's tls_*; all NULL without): the server context of the RPC and the HTTP
     * API, the client context of every call to the shards, and the CA certificates as PEM
     * text for the invocations (NULL: workers trust the system's CAs). */
    struct smlt_tls *tls_server, *tls_client;
    struct coord_pool *pool;         /* --ps-pool, or NULL */
    char *tls_ca_pem;
};

static inline int job_ended(const struct coord_job *j)
{
    return j->state >= JOB_SUCCEEDED && j->state < JOB_NSTATES;
}

/* ---- coord.c ---- */
struct coord_job *job_find(struct coord *c, const char *id);
struct coord_job *job_alloc(struct coord *c, const char *id);
void job_free(struct coord_job *j);

/* ---- coord_job.c: the state machine ---- */
void job_log(struct coord_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records an event (a decision, a failure, a restart) in memory and in the journal. */
void job_event(struct coord_job *j, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends a ready-made event record (takes nothing: e is borrowed). */
void job_event_add(struct coord_job *j, json_t *e);
/* The job's ledger as if charged this instant: its running invocations and its PS nodes'
 * open interval charged up to now (what a platform would bill if it all stopped now). */
void job_ledger_now(const struct coord_job *j, struct coord_ledger *l);
/* The cost so far: job_ledger_now()'s total. */
double job_cost(const struct coord_job *j);
/* 1 while the budget pays for workers instances of memory_mb and nodes PS nodes running wait_s
 * more seconds and then JOB_BUDGET_MARGIN_S to reach a halt (ranks stop only at a step). */
int job_budget_fits(const struct coord_job *j, uint32_t workers, uint32_t memory_mb,
                    uint32_t nodes, double wait_s);
void job_set_state(struct coord_job *j, enum job_state st, const char *why);
void job_charge_ps(struct coord_job *j);
void job_on_start(evutil_socket_t fd, short what, void *arg);
void job_on_tick(evutil_socket_t fd, short what, void *arg);
/* Allocates the ranks (spec.max_workers) and sets j->parks. Returns 0 or SMLT_ENOMEM. */
int job_ranks_new(struct coord_job *j);
/* RUNNING: invokes the active ranks and starts the tick. */
void job_go(struct coord_job *j);
/* Journal records a restarted coordinator resumes from: the shards (addresses, pids,
 * tokens), and each phase (its first step and epoch, the workers, the memory size). */
void job_journal_shards(struct coord_job *j);
void job_journal_phase(struct coord_job *j);
/* Ends the job: cancels its invocations, saves the model, reads the shards' counters, stops
 * the shards, then sets state st. The last three wait for the shards (off the loop); the
 * state is set when they are done (job->finishing meanwhile). */
void job_finish(struct coord_job *j, enum job_state st, const char *why);
void job_check_done(struct coord_job *j);
/* Saves the model now (asynchronously); cb (may be NULL) gets 0 or a code and a message. */
typedef void (*job_saved_fn)(struct coord_job *j, int rc, const char *err, void *arg);
void job_save_model(struct coord_job *j, job_saved_fn cb, void *arg);
/* The job's admin queue, made at the first call (a restored job never needs one). NULL only
 * when out of memory. */
struct coord_admin *job_admin(struct coord_job *j);
/* Folds the job's admin queue's counters into j->c->admin_done and frees it, from a
 * deferred event (this may run inside one of its callbacks). */
void job_release_admin(struct coord_job *j);
/* The job's admin counters (0 when it has no queue). */
void job_admin_stats(const struct coord_job *j, struct coord_admin_stats *st);
/* Queues req on the job's shards (their addresses and token, unless req names addresses
 * already); fn gets the result on the loop, at once when it could not be queued. */
typedef void (*job_step_fn)(struct coord_job *j, const struct coord_admin_res *res);
void job_call(struct coord_job *j, struct coord_admin_req *req, job_step_fn fn);
/* The admin client's connection settings for this job's shards. */
void job_admin_target(const struct coord_job *j, struct coord_admin_req *req);

/* ---- coord_rank.c: ranks and invocations ---- */
void rank_invoke(struct rank *r);
/* The end of rank r's invocation inv (the backend's callback; coord_adopt.c calls it for an
 * adopted one). */
void rank_on_inv_end(uint64_t inv, const struct coord_inv_result *res, void *arg);
/* Fills a's fields (borrowed from j and r) for rank r's current invocation. */
void rank_assignment(struct coord_job *j, struct rank *r, Smlt__Assignment *a);

/* ---- coord_adopt.c: worker instances that outlived a coordinator ---- */
#define RANK_INV_ADOPTED (1ull << 63) /* an adopted invocation's id: this bit, and the rank */
/* Replay of "invocation" and "invocation_end" records into j->adopt. */
void job_adopt_replay(struct coord_job *j, const char *type, json_t *rec);
/* Resuming job j: gives each active rank whose last invocation's instance still runs that
 * invocation back (the worker reconnects and finishes its slice). Returns how many. Also
 * continues each rank's invocation numbering. */
uint32_t job_adopt(struct coord_job *j);
/* 1 while the job of invocation inv ("JOB/RANK/SEQ") is being resumed and has not yet taken
 * its invocations back (a worker saying hello again then is told to try again). */
int job_adopt_pending(struct coord *c, const char *inv);
/* Journal: an invocation began (its worker said hello) or ended. */
void rank_journal_invocation(struct coord_job *j, const struct rank *r, double limit_s);
void rank_journal_invocation_end(struct coord_job *j, const struct rank *r);
/* A worker said hello again for r's current invocation (its connection was lost). */
void rank_resumed(struct rank *r, uint32_t pid);
/* r's adopted invocation reported Done: it ends (deferred). */
void rank_adopted_done(struct rank *r);
/* The tick: adopted instances that died or ran past their time limit. */
void job_adopted_check(struct coord_job *j);
/* Ends r's running invocation now (canceled), adopted or not. */
void rank_cancel(struct rank *r);
/* The pid of the instance running r's invocation, or 0. */
pid_t rank_pid(const struct rank *r);
void rank_on_retry(evutil_socket_t fd, short what, void *arg);
void rank_mark(struct rank_mark *m, const struct rank *r);
extern const struct coord_rpc_handler coord_rank_rpc;

/* ---- coord_phase.c: phases ---- */
void job_boundary(struct coord_job *j);
void job_request_barrier(struct coord_job *j, const char *why);
void job_profile(struct coord_job *j);
void job_halt_workers(struct coord_job *j);
void job_retry_unfreeze(struct coord_job *j);
void job_epoch_mark(struct coord_job *j, uint64_t step, double t);

/* ---- coord_adapt.c: adaptation ---- */
void job_totals(const struct coord_job *j, double *compute, double *comm);
int job_take_noise(struct coord_job *j, double g2, double sn, uint64_t steps, uint32_t n);
/* Takes a shard stats round (coord_admin's ADMIN_STATS result) into the noise figures:
 * returns 1 when j->noise_scale was measured anew, 0 if not, -1 when some shard did not
 * answer. With counters, appends each shard's exactly-once counters to it. */
int job_take_stats(struct coord_job *j, const struct coord_admin_res *res, json_t *counters);
double job_epoch_factor(const struct coord_job *j, uint32_t workers);
void job_account_ref(struct coord_job *j, uint32_t epoch);
int job_retarget(struct coord_job *j, uint32_t epoch);
void job_watch_stragglers(struct coord_job *j, double t);
void job_check_stragglers(struct coord_job *j);
double job_epochs_left_hint(const struct coord_job *j, double done);
int job_profile_rates(const struct coord_job *j, uint64_t at, struct job_rates *pr);
void job_decision_point(struct coord_job *j, uint64_t at, double *steps, double *dc, double *dm);
double job_start_estimate(const struct coord_job *j, double dflt);
int job_schedule(struct coord_job *j, uint32_t epoch, uint64_t at, const struct job_rates *pr,
                 double t, uint32_t *nw, uint32_t *ns);

/* ---- coord_view.c: views and metrics ---- */
json_t *job_measure(const struct coord_job *j, uint64_t step, double t, const char *time_key);
/* The job's summary, with its cost so far (job_cost(), or a ledger read just before). */
json_t *job_summary(struct coord_job *j, double cost);

/* ---- coord_restore.c ---- */
/* Restores every job recorded under c->data_dir (coord_new()). */
void coord_restore_all(struct coord *c);
/* Replays one job's journal into j (for coord_restore_all() and the unit suite); a job that
 * had not ended is resumed (job_resume()). */
void job_restore(struct coord *c, struct coord_job *j);

/* ---- coord_recover.c ---- */
/* 1 when the job's shards take checkpoints (spec "checkpoint"). */
int job_checkpoints(const struct coord_job *j);
uint64_t job_shard_mem(const struct coord_job *j);

/* Local shard `shard` (pid) has exited: replaces it and restores every shard from the newest
 * common checkpoint, then goes on (asynchronously). Returns 0 when recovery started (or
 * failed the job itself), -1 when the job cannot recover that way (no checkpoints, not local
 * shards, already recovering): the caller fails it. */
int job_recover_shard(struct coord_job *j, uint32_t shard, pid_t pid);
/* Fills an admin SETUP request from the job: model, conf (sync, optimizer, workers now),
 * checkpoint directory, interval and keep. */
void job_setup_req(const struct coord_job *j, struct coord_admin_req *req);
/* spec checkpoint.every_s: once a rank's step time is known (in this phase), sets the shards'
 * interval to the steps that take about every_s. */
void job_checkpoint_rate(struct coord_job *j, const struct rank *r);

/* ---- coord_replica.c ---- */
/* ps.replicas 2: starts a backup for every shard that has none and has its primary build it,
 * one after another, then calls then (also at once when the job is not replicated). */
void job_replicas_build(struct coord_job *j, void (*then)(struct coord_job *j));
/* A replicated shard's primary (pid) has exited: its backup takes over. Returns 0 when that
 * started, -1 when the shard has no backup in sync (the caller recovers otherwise). */
int job_failover(struct coord_job *j, uint32_t shard, pid_t pid);
/* A backup (pid) has exited: a new one is built. */
void job_backup_lost(struct coord_job *j, uint32_t shard, pid_t pid);
/* After a restore of every shard: builds every backup again from its restored primary (a new
 * process for one that is gone), then calls then (at once when the job is not replicated). */
void job_replicas_rebuild(struct coord_job *j, void (*then)(struct coord_job *j));

/* ---- coord_resume.c ---- */
/* A job that had not ended when the coordinator went away: a queued one starts; a running one
 * adopts its shards (after checking their processes, their tokens and their step) and goes on
 * from the shards' step, the ledger continuing; otherwise it is INTERRUPTED with the reason. */
void job_resume(struct coord_job *j, int have_shards);
/* The bookkeeping a resumed job needs before it runs (ranks, phase, clock, the nodes billed
 * for the downtime). Returns 0 or SMLT_ENOMEM. */
int job_resume_setup(struct coord_job *j);

#endif
