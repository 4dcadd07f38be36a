/* sim_platform.h: the simulated serverless platform behind `smlt-sim`: function workers whose
 * CPU share and link bandwidth follow their memory size, cold starts, a time limit per
 * invocation with restarts, parameter-server shards on nodes with a fixed NIC, the price table,
 * and seeded noise (per-worker compute jitter, stragglers, network drift). It runs one training
 * job either with a fixed configuration or under the real scheduler (coordinator/sched.h),
 * which sees only what a coordinator would measure: per-interval step, compute, wait and
 * communication times and cold-start latencies, never the platform's parameters.
 *
 * Every constant is documented in docs/SCHEDULER.md with where it comes from (measured on this
 * machine, platform documentation, or a published measurement). Deterministic: a run depends
 * only on its inputs and seed. */
#ifndef SIM_PLATFORM_H
#define SIM_PLATFORM_H

#include <stdint.h>
#include <stdio.h>

#include "sched.h"

#define SIM_MAX_LINK_POINTS 8

struct sim_job {
    char name[32];
    double params;            /* model parameters (float32) */
    double samples;           /* per epoch */
    double flops_per_sample;  /* training: forward + backward */
    uint32_t batch;           /* per worker */
    double epochs;
    double serial_frac;       /* the part of a step's compute that extra vCPUs do not speed up */
    double state_factor;      /* bytes of shard state moved per model byte when resharding */
    /* Statistical efficiency: epochs are stated at the global batch ref_workers * batch, and
     * at a global batch B the job needs (1 + B / noise_scale) / (1 + B_ref / noise_scale) as
     * many (sched_epoch_factor()). noise_scale 0: epochs are passes over the data whatever
     * the batch (fan-out changes only speed and cost). */
    double noise_scale;       /* the true gradient noise scale, samples */
    uint32_t ref_workers;
    uint32_t mem_default;     /* the memory size fixed configurations use */
    uint32_t mem_options[SCHED_MAX_MEMORY_OPTIONS];
    uint32_t n_mem;
};

struct sim_platform {
    double gflops_per_vcpu;   /* effective training GFLOP/s of one vCPU */
    double mb_per_vcpu, max_vcpus;
    double link_mb[SIM_MAX_LINK_POINTS], link_mbps[SIM_MAX_LINK_POINTS];
    int n_link;               /* per-function bandwidth by memory: piecewise linear */
    double ps_net_bytes_per_s; /* a PS node's NIC, each direction */
    double ps_cpu_bytes_per_s; /* a shard's receive/sum/send rate when its NIC is not the limit */
    double apply_bytes_per_s; /* optimizer pass over a shard's range */
    double rtt_s;             /* one request/reply */
    double per_shard_s;       /* client work per shard connection per step */
    double cold_start_s, cold_jitter; /* median cold start, +- uniform fraction */
    double warm_restart_s;    /* re-invocation landing on a warm container */
    double p_cold_restart;    /* a restart landing on a cold container, per worker */
    double time_limit_s;
    double restart_margin_s;  /* workers stop this long before the limit */
    double compute_cv;        /* per-worker per-step lognormal sigma */
    double p_straggler, straggler_lo, straggler_hi; /* per worker-step; slowdown range */
    double net_epoch_cv;      /* per-epoch lognormal drift of every link */
    double net_step_cv;       /* per-step jitter */
    double price_gb_s, price_request, price_ps_node_hour;
    uint32_t max_workers, max_shards;
};

/* One row of an adaptive run's schedule: a decision. */
struct sim_trace_row {
    double epoch, t, spent;
    struct sched_config cur;
    double step_s;            /* measured over the last interval */
    enum sched_verdict verdict;
    struct sched_config next;
    const char *reason;       /* borrowed for the callback */
    const char *model;        /* sched_describe() after the last measurement; borrowed */
    double pred_step_s;       /* the model's step time for next */
};
typedef void (*sim_trace_fn)(void *arg, const struct sim_trace_row *row);

struct sim_result {
    double finish_s, cost_usd, epochs_done;
    int completed;            /* all epochs trained */
    int stopped_budget;       /* ended by the budget stop */
    struct sched_config final;
    uint32_t peak_workers;
    uint32_t changes;         /* reconfigurations after the profile */
    double profile_s;         /* time from start to the first decision */
    double steps;
};

/* Fills p with the platform documented in docs/SCHEDULER.md (AWS Lambda-like functions,
 * t3.small-priced PS nodes with 5 Gbit/s, this machine's measured compute and shard rates). */
void sim_platform_default(struct sim_platform *p);

/* Known jobs: "resnet50", "bert-small". Returns 0, or -1 for an unknown name. */
int sim_job_named(const char *name, struct sim_job *j);

/* Runs the job with configuration c for the whole job (no scheduler). */
void sim_run_fixed(const struct sim_platform *p, const struct sim_job *j,
                   const struct sched_config *c, uint64_t seed, struct sim_result *r);

/* Runs the job under the scheduler: starts at `start`, profiles with sched_profile_next(),
 * then decides every `decide_every` epochs (in (0, 1]; anything else: every epoch), and
 * sooner when a decision asks for it (sched_decision.recheck_s), and checks
 * sched_step_affordable() before every step. deadline_s / budget_usd 0 mean none. trace (may
 * be NULL) sees every decision. */
void sim_run_adaptive(const struct sim_platform *p, const struct sim_job *j,
                      const struct sched_config *start, double deadline_s, double budget_usd,
                      double decide_every, uint64_t seed, sim_trace_fn trace, void *trace_arg,
                      struct sim_result *r);

/* Runs the job under the SMLT-style baseline (sim_bo.h) over the grid's workers and shards
 * and every memory size: a profile of 10 probes of 4 steps each, each picked by a GP lower
 * confidence bound (kappa 2) on what was measured so far, then every decide_every epochs the
 * incumbent: the measured configuration with the best objective as of then. The objective is the projected cost of the
 * rest (deadline; lateness penalised) or its time (budget; overspend penalised), from the
 * measured step times and the prices. The same budget hard stop as the adaptive run. */
void sim_run_bo(const struct sim_platform *p, const struct sim_job *j,
                const struct sched_config *start, double deadline_s, double budget_usd,
                double decide_every, uint64_t seed, struct sim_result *r);

/* The platform's mean step time for c (nsteps simulated steps without the per-epoch network
 * drift): the truth the model's predictions are scored against. */
double sim_mean_step(const struct sim_platform *p, const struct sim_job *j,
                     const struct sched_config *c, uint64_t seed, uint32_t nsteps);

/* A scheduler (sched_free() it) that has seen only the profile, run from start. */
struct sched *sim_profiled_sched(const struct sim_platform *p, const struct sim_job *j,
                                 const struct sched_config *start, uint64_t seed);

/* The sched_job a coordinator would hand the scheduler for this job on this platform: sizes,
 * bounds, prices and the time limit (public facts), no measured platform parameter. */
void sim_sched_job(const struct sim_platform *p, const struct sim_job *j, double deadline_s,
                   double budget_usd, struct sched_job *out);

#endif
