/* sched_int.h: what sched_model.c and sched_policy.c share and nobody else sees: the
 * scheduler's state, the model's features and its fitted coefficients.
 *
 * The model (docs/SCHEDULER.md has the derivation and where every prior comes from):
 *
 *   step(W,S,M) = (C(M) + wait(W,M) + X(W,S,M)) * (1 + R / time_limit)
 *   C(M)        = c_ser / min(cpu(M), 1) + c_par / cpu(M)          compute, Amdahl over vCPUs
 *   wait(W,M)   = C(M) * (w1 * h(W) + w2 * ln W)                   the slowest of W workers
 *   X(W,S,M)    = k0 + max(k_link[M] * L(M), k_shard * H(W,S))    push + pull
 *   L(M)        = 2 * 8 * model_bytes / (link_mbps * 1e6 * min(cpu(M), 1))
 *   H(W,S)      = 2 * W * (model_bytes / S) / ps_bytes_per_s
 *   R           = the seconds lost per restart at the time limit
 *
 * cpu(M) = min(M / mb_per_vcpu, max_vcpus) and h(W) = E[max of W standard normals] are known
 * functions; L and H are in seconds at the prior rates, so k_link and k_shard are
 * dimensionless (1 = the prior was right). Each coefficient is fitted as prior * phi with phi
 * >= 0 by non-negative least squares on relative residuals, with pseudo-rows that pull phi
 * toward its prior (a ridge toward the prior: with one measured configuration the priors
 * split what was measured among the terms; with several, the measurements decide). */
#ifndef SCHED_INT_H
#define SCHED_INT_H

#include "sched.h"

#define SCHED_MAX_GROUPS 64       /* distinct configurations remembered (oldest evicted) */
#define SCHED_NNLS_MAX_COLS 24
#define SCHED_NNLS_MAX_ROWS (SCHED_MAX_GROUPS + SCHED_NNLS_MAX_COLS)

/* Priors measured on this machine or taken from platform documentation (docs/SCHEDULER.md). */
#define SCHED_DEF_MB_PER_VCPU 1769.0    /* AWS Lambda: 1,769 MB = 1 vCPU */
#define SCHED_DEF_MAX_VCPUS 6.0         /* AWS Lambda: 6 vCPUs at 10,240 MB */
#define SCHED_DEF_LINK_MBPS 600.0       /* published Lambda per-function throughput */
#define SCHED_DEF_PS_BYTES_PER_S 1.19e9 /* smlt-bench ps: 1 shard, 1 worker, 100 MB: 168 ms */
#define SCHED_PRIOR_SERIAL 0.20         /* smlt-bench train --threads 2: 1.65x over 1 thread */
#define SCHED_PRIOR_K0_S 0.005          /* fixed per-step latency: a few RTTs + barrier */
#define SCHED_PRIOR_WAIT_CV 0.05        /* w1: per-worker compute time CV */
#define SCHED_SCALE_WAIT_LOG 0.02       /* w2's scale (prior 0: no heavy straggler tail) */
#define SCHED_DEF_RESHARD_S_PER_GB 2.0
#define SCHED_RESHARD_FIXED_S 1.0       /* map change, shard start-up, client refresh */
#define SCHED_STATE_PER_PARAM_BYTES 3.0 /* parameters + up to two optimizer moments, per model byte */

/* Prior weights: how many relative errors of 100 % in a coefficient cost as much as one
 * measured configuration off by 100 %. */
#define SCHED_LAMBDA 0.1
#define SCHED_LAMBDA_LINK_TIE 1.0 /* per-memory link coefficients tied to their shared one */

/* One distinct configuration and what was measured with it (step-weighted sums). */
struct sched_group {
    struct sched_config c;
    uint32_t mem_idx;   /* index into job.memory_options (the nearest size) */
    double steps;       /* total steps measured */
    double step_s, compute_s, comm_s, slowest_s; /* sums of per-step value * steps */
    uint64_t last_seq;  /* sched_observe() call count when last updated */
    double resid;       /* ln(measured step / the fitted model's step): the model's misfit here */
    double lw, ls, lm;  /* ln of workers, shards, memory: for distances */
    double weight;      /* group_weight() as of the last refit */
};

struct sched_fit {
    int have_compute;
    double c_ser, c_par;          /* seconds per step at 1 vCPU: serial and parallel parts */
    double w1, w2;                /* wait coefficients (dimensionless) */
    double k0;                    /* seconds */
    double k_link_shared;         /* dimensionless */
    double k_link[SCHED_MAX_MEMORY_OPTIONS];
    double k_shard;               /* dimensionless */
    double restart_s;             /* R */
};

struct sched {
    struct sched_job job;         /* with every default filled in */
    struct sched_group g[SCHED_MAX_GROUPS];
    uint32_t n_groups;
    uint64_t seq;                 /* sched_observe() calls */
    struct sched_fit fit;
    double cold_sum, cold_n;      /* measured cold starts */
    double noise_scale;           /* smoothed sched_obs.noise_scale (0: none yet) */
    double err_var;               /* EWMA of squared relative step-time prediction errors
                                   * at configurations measured before (noise and drift) */
    double resid_var;             /* weighted mean squared log misfit of the structured model
                                   * over the measured configurations */
    double ext_var;               /* EWMA of (relative error / novelty)^2 of first predictions
                                   * for configurations never measured before */
    uint32_t n_ext;
    uint32_t n_err;
    struct sched_obs last;        /* the last measurement, for reasons */
    int have_last;
    uint32_t n_decisions;         /* decisions made with measurements behind them */
    struct sched_config anchor;   /* the first configuration measured: the profile's origin */
};

/* Model features: known functions of the configuration. */
double sched__cpu(const struct sched *s, uint32_t memory_mb);
double sched__h(uint32_t workers);
double sched__link_s(const struct sched *s, uint32_t memory_mb);
double sched__shard_s(const struct sched *s, uint32_t workers, uint32_t shards);
uint32_t sched__mem_idx(const struct sched *s, uint32_t memory_mb);

/* Predicted step parts with the current fit; every pointer may be NULL. Returns step_s.
 * The structured model's prediction is corrected by the misfit measured at nearby
 * configurations (a kernel average of the groups' log residuals, shrunk toward 0 away from
 * them), so a configuration that was measured is predicted as measured, and the structure
 * decides only where nothing was measured. */
double sched__predict(const struct sched *s, const struct sched_config *c, double *compute_s,
                      double *wait_s, double *comm_s);

/* log-space distance in [0, 1] from c to the nearest measured configuration: 0 measured,
 * 1 at least 8x away in workers, shards or memory combined. */
double sched__novelty(const struct sched *s, const struct sched_config *c);

/* sched__predict() and sched__novelty() in one pass over the measured configurations. */
double sched__predict_nov(const struct sched *s, const struct sched_config *c, double *novelty);

/* sched_epoch_factor() with the job's batch and reference and the smoothed noise scale. */
double sched__epoch_factor(const struct sched *s, uint32_t workers);

/* Cost of running c for run_s seconds (functions, requests, PS nodes), in $. */
double sched__run_cost(const struct sched *s, const struct sched_config *c, double run_s);

/* Solves min ||A x - b|| subject to x >= 0 (Lawson-Hanson). A is m x n, row-major, borrowed.
 * Returns 0, or -1 on bad sizes. Exposed for the unit tests. */
int sched__nnls(const double *A, int m, int n, const double *b, double *x);

#endif
