/* sched.h: the adaptive scheduler: a performance model of a job's training step fitted online
 * to what was measured, a cost model on top of it, and the policy that picks the worker
 * fan-out, the shard count and the function memory size so the job meets its deadline and/or
 * stays within its budget.
 *
 * The same code runs inside the coordinator (coord_job.c feeds it measurements after the
 * profiling phase and after every epoch, and applies its decisions) and inside the simulator
 * `smlt-sim` (tools/), which feeds it measurements from a simulated platform of up to
 * thousands of functions. It does no I/O, keeps no clock and allocates only in sched_new():
 * every input comes through these calls. Not thread-safe; one per job.
 *
 * Vocabulary: a configuration is (workers W, shards S, memory M MB). A step is one BSP step:
 * every worker processes one batch of B samples, so a step covers W*B samples, and an epoch of
 * N samples takes N / (W*B) steps. */
#ifndef SCHED_H
#define SCHED_H

#include <stddef.h>
#include <stdint.h>

#define SCHED_MAX_MEMORY_OPTIONS 16
#define SCHED_REASON_MAX 768

/* What does not change while the job runs. */
struct sched_job {
    uint64_t model_bytes;        /* parameters * 4 */
    uint64_t samples_per_epoch;  /* N */
    uint32_t batch;              /* B, per worker */
    double total_epochs;         /* the job's work: epochs to train */
    double deadline_s;           /* seconds after the job's start it must end by; 0: none */
    double budget_usd;           /* 0: none */
    /* bounds */
    uint32_t min_workers, max_workers;
    uint32_t min_shards, max_shards;
    uint32_t memory_options[SCHED_MAX_MEMORY_OPTIONS]; /* MB sizes allowed, ascending */
    uint32_t n_memory_options;   /* 1: memory is not a knob */
    double time_limit_s;         /* per invocation */
    /* prices */
    double price_gb_s, price_request, price_ps_node_hour;
    /* reconfiguration costs the policy must pay for (measured defaults are fine) */
    double cold_start_s;         /* a new worker's start: process + data load + connect */
    double reshard_s_per_gb;     /* moving parameters and optimizer state between shards */
    /* Optional (added with the scheduler; 0 means the default in brackets). Platform hints
     * that shape the priors the model starts from before it has measured enough: */
    double mb_per_vcpu;          /* memory per vCPU: CPU share grows with memory [1769: Lambda] */
    double max_vcpus;            /* the CPU share stops growing here [6: Lambda at 10240 MB] */
    double link_mbps;            /* one worker's link at >= 1 vCPU, Mbit/s; smaller functions
                                  * get a proportional share [600: published Lambda figures] */
    double ps_bytes_per_s;       /* one shard's push+pull throughput per direction, bytes/s
                                  * [1.19e9: `smlt-bench ps`, 1 shard, 100 MB, this machine] */
    /* Damping: */
    double min_change_interval_s; /* between two changes made to save money or time
                                   * [max(60, 10 * cold_start_s)]; a change needed to keep the
                                   * deadline or the budget is not held back by it */
    double hysteresis;           /* change only when the predicted gain exceeds this fraction
                                  * of what is left to spend (or of the time left) plus the
                                  * reconfiguration's own cost [0.05] */
    double max_change_factor;    /* after the first decision, W and S move at most by this
                                  * factor per decision, memory by at most two options [4] */
    /* Statistical efficiency (optional): when non-zero, total_epochs is stated at the global
     * batch ref_workers * batch (the configuration the user asked for), and a larger global
     * batch needs more epochs to the same loss, as sched_epoch_factor() says once the
     * gradient noise scale is measured (sched_obs.noise_scale). 0: epochs are passes over the
     * data whatever the batch, and fan-out changes only speed and cost. */
    uint32_t ref_workers;
};

/* One measurement: the mean over `steps` steps run with configuration (W, S, M). */
struct sched_obs {
    uint32_t workers, shards, memory_mb;
    uint64_t steps;
    double step_s;     /* wall time per step (what the job experiences) */
    double compute_s;  /* per step, forward + backward on one worker (mean over workers) */
    double comm_s;     /* per step, push + pull including waiting for the other workers */
    double slowest_compute_s; /* per step, the slowest worker's compute (stragglers) */
    /* Optional (added with the scheduler; 0: not measured): the mean latency of the cold
     * starts seen in this interval (new workers, restarts on a cold container). It replaces
     * sched_job.cold_start_s as the price of adding workers once measured. */
    double cold_start_s;
    /* Optional (0: not measured): the gradient noise scale B_simple = tr(Sigma) / |G|^2, in
     * samples, estimated over this interval from the workers' gradients and their sum (the
     * shards see both: McCandlish et al. 2018, appendix A.1). The scheduler keeps a smoothed
     * value; it matters only with sched_job.ref_workers. */
    double noise_scale;
};

/* How many epochs one epoch stated at the reference global batch (ref_workers * batch) takes
 * at `workers` workers, for a gradient noise scale of noise_scale samples: the examples needed
 * to reach a loss grow as (1 + B / B_noise) with the global batch B (McCandlish et al. 2018,
 * "An Empirical Model of Large-Batch Training"). 1 when ref_workers or noise_scale is 0. */
double sched_epoch_factor(uint32_t batch, uint32_t ref_workers, uint32_t workers,
                          double noise_scale);

/* Where the job is now. */
struct sched_state {
    double elapsed_s;        /* since the job started */
    double epochs_done;      /* fractional */
    double spent_usd;        /* from the ledger, running invocations included */
    uint32_t workers, shards, memory_mb; /* current configuration */
    double since_change_s;   /* seconds since the configuration last changed */
    /* optional: convergence-driven jobs (target accuracy): epochs still expected, estimated
     * by the caller from the accuracy curve; 0 means use total_epochs - epochs_done. With
     * sched_job.ref_workers, epochs_done and the hint count reference epochs (each step at W
     * workers adds W * batch / N / sched_epoch_factor(W)). */
    double epochs_left_hint;
};

struct sched_config {
    uint32_t workers, shards, memory_mb;
};

enum sched_verdict {
    SCHED_KEEP = 0,          /* no change: the current configuration is the choice */
    SCHED_CHANGE = 1,        /* change to decision.next */
    SCHED_STOP_BUDGET = 2    /* the budget does not allow another epoch: stop (checkpoint) */
};

struct sched_decision {
    enum sched_verdict verdict;
    struct sched_config next;
    double predicted_step_s;     /* of next */
    double predicted_finish_s;   /* seconds from now to the end, with next */
    double predicted_cost_usd;   /* total at the end (spent + to come), with next */
    int deadline_ok;             /* 1 if next is predicted to meet the deadline (or none) */
    int budget_ok;               /* likewise the budget */
    /* One or two sentences, for the journal and `smltctl status`, naming the measurement and
     * the reason, e.g. "epoch 3 took 41.0 s (step 0.35 s: compute 0.21, comm 0.14); 12 workers
     * needed to meet the deadline at 14:20 (predicted 13:58, $1.84); +4 workers". When a
     * constraint cannot be met it says so plainly and what the job will do instead. */
    char reason[SCHED_REASON_MAX];
    /* Added with the implementation: when next is a configuration never measured, the model's
     * prediction for it is an extrapolation; it asks to be called again (with a measurement
     * of next) after this many seconds instead of waiting for the end of the epoch. 0: no
     * request. */
    double recheck_s;
};

struct sched;

/* Returns a scheduler for job (copied), or NULL on bad bounds. */
struct sched *sched_new(const struct sched_job *job);
void sched_free(struct sched *s);

/* Feeds one measurement into the performance model (refits it). */
void sched_observe(struct sched *s, const struct sched_obs *o);

/* The model's prediction of the step time (seconds) for a configuration; also of its
 * compute and communication parts if the pointers are non-NULL. */
double sched_predict_step(const struct sched *s, const struct sched_config *c, double *compute_s,
                          double *comm_s);

/* Predicted time (s) and cost ($) to train `epochs` more epochs with configuration c (reference
 * epochs with sched_job.ref_workers: the statistical efficiency of c's global batch counts). */
void sched_predict_run(const struct sched *s, const struct sched_config *c, double epochs,
                       double *time_s, double *cost_usd);

/* Decides the configuration for the rest of the job. Damped: it changes only when the
 * predicted gain is worth the reconfiguration and not sooner than a minimum interval after the
 * last change, so it does not flap. Also says when the budget forces a stop. */
void sched_decide(struct sched *s, const struct sched_state *st, struct sched_decision *d);

/* A short human-readable summary of the fitted model (coefficients and how many measurements
 * it rests on), for logs. */
void sched_describe(const struct sched *s, char *buf, size_t len);

/* ---- added with the implementation -------------------------------------------------------- */

/* The profiling phase (optional; a caller may instead run its first configuration for a while
 * and call sched_decide()). Starting from cur, the configuration the job starts with (once
 * something was measured, the plan stays anchored to the first measured one), returns 1
 * and fills *next and *steps with the next configuration to run for `steps` steps and report
 * with sched_observe(), or 0 when the profile is complete (or there is nothing to vary) and
 * the caller should call sched_decide(). The plan is at most three short probes: cur, then
 * 4x (or 1/4) the workers on a quarter of the shards (at least min_shards), then another
 * memory size when memory is a knob. Two points with different workers-per-shard separate the
 * link term from the shard term, which one point cannot. */
int sched_profile_next(const struct sched *s, const struct sched_config *cur,
                       struct sched_config *next, uint32_t *steps);

/* The hard budget stop inside an epoch: returns 1 when one more step with st's configuration
 * (predicted by the model, or as last measured if that was slower), half a step more for a
 * slow one, and a checkpoint still fit in the budget; 0 when the caller should stop starting
 * steps, checkpoint and end. Always 1 without a budget. Cheap enough to call before every
 * step. sched_decide() plans keep this reserve, so a plan that holds never trips it. */
int sched_step_affordable(const struct sched *s, const struct sched_state *st);

/* The number of distinct configurations measured so far (the model's support). */
uint32_t sched_n_configs(const struct sched *s);

/* The cold-start latency the policy charges for adding workers: the measured mean once
 * sched_obs.cold_start_s was reported, else sched_job.cold_start_s. */
double sched_cold_start(const struct sched *s);

/* The smoothed gradient noise scale the scheduler plans with (samples; 0: none measured). */
double sched_noise_scale(const struct sched *s);

/* The smoothing sched_observe() applies to noise-scale measurements: the new smoothed value
 * from the previous one (0: none yet) and a measurement (> 0). For other planners fed the
 * same measurements (the simulator's Bayesian optimisation). */
double sched_noise_smooth(double prev, double measured);

#endif
