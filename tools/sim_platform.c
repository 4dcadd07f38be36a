/* sim_platform.c: the simulated platform and job runs of `smlt-sim` (see sim_platform.h).
 *
 * A run advances one BSP step at a time. A step is the slowest worker's compute (W workers
 * with lognormal jitter, sampled as the maximum directly, plus a rare straggler) followed by the
 * push and the pull: each moves the whole model through the worker's link while each shard
 * moves W slices of model/S bytes through its node's NIC, so a phase takes the longer of the
 * two. Around the steps: cold starts when workers are added (or all, when memory changes),
 * restarts before the time limit, shard state moved when the shard count changes. Billing:
 * every worker for every second (waiting included), one request per invocation, every PS node
 * for every second. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "coord_prices.h"
#include "sim_bo.h"
#include "sim_platform.h"

/* ---- seeded randomness -------------------------------------------------------------------- */

struct rng {
    uint64_t s[4];
};

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* Uniform in (0, 1). */
static double rng_u(struct rng *r)
{
    return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

/* Inverse standard normal CDF (Acklam). */
static double norm_q(double p)
{
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                               2.445134137142996e+00, 3.754408661907416e+00};
    if (p < 0.02425) {
        double q = sqrt(-2 * log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    if (p > 1 - 0.02425) {
        double q = sqrt(-2 * log(1 - p));
        return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

static double rng_normal(struct rng *r)
{
    return norm_q(rng_u(r));
}

/* ---- the platform and the jobs ------------------------------------------------------------ */

void sim_platform_default(struct sim_platform *p)
{
    memset(p, 0, sizeof(*p));
    /* smlt-bench train, mlp:784-256-128-10, batch 64, 1 thread, this machine: 48.7k samples/s
     * x 6 x 235,146 FLOP = 68.6 GFLOP/s (72 % of the 96 GFLOP/s sgemm of shared/bench). */
    p->gflops_per_vcpu = 68.6;
    p->mb_per_vcpu = 1769; /* AWS Lambda documentation */
    p->max_vcpus = 6;
    /* Per-function throughput by memory size, read off published Lambda measurements (roughly
     * 80 Mbit/s for the smallest functions, 500-600 Mbit/s from about 1.8 GB up). */
    static const double mb[] = {128, 512, 1024, 1769, 3008, 10240};
    static const double mbps[] = {80, 200, 350, 550, 600, 600};
    p->n_link = 6;
    for (int i = 0; i < p->n_link; i++) {
        p->link_mb[i] = mb[i];
        p->link_mbps[i] = mbps[i];
    }
    p->ps_net_bytes_per_s = 5e9 / 8;  /* t3.small: "up to 5 Gigabit" (taken as sustained) */
    p->ps_cpu_bytes_per_s = 1.19e9;   /* smlt-bench ps: 1 shard, 100 MB push+pull in 168 ms */
    p->apply_bytes_per_s = 5e9;       /* optimizer pass, memory bound (memcpy is 15 GB/s here) */
    p->rtt_s = 0.0005;
    p->per_shard_s = 50e-6;
    p->cold_start_s = 1.0;            /* runtime init + worker bootstrap; the model pull is added */
    p->cold_jitter = 0.3;
    p->warm_restart_s = 0.3;
    p->p_cold_restart = 0.02;
    p->time_limit_s = 900;            /* AWS Lambda */
    p->restart_margin_s = 2.0;
    p->compute_cv = 0.06;
    p->p_straggler = 0.0005;
    p->straggler_lo = 1.5;
    p->straggler_hi = 3.0;
    p->net_epoch_cv = 0.10;
    p->net_step_cv = 0.05;
    p->price_gb_s = COORD_PRICE_GB_S_X86_64;
    p->price_request = COORD_PRICE_REQUEST;
    p->price_ps_node_hour = COORD_PRICE_PS_NODE_HOUR;
    p->max_workers = 1000;            /* Lambda's default concurrency */
    p->max_shards = 32;
}

static void mem_options(struct sim_job *j)
{
    static const uint32_t opts[] = {2048, 3008, 4096, 5120, 6144, 8192, 10240};
    j->n_mem = sizeof(opts) / sizeof(opts[0]);
    memcpy(j->mem_options, opts, sizeof(opts));
    j->mem_default = 3008;
}

int sim_job_named(const char *name, struct sim_job *j)
{
    memset(j, 0, sizeof(*j));
    if (!strcmp(name, "resnet50")) {
        /* ResNet-50 on ImageNet-1k: 25.6 M parameters, 1,281,167 images, 4.1 GMAC forward =
         * 8.2 GFLOP, x3 for forward + backward. Momentum SGD: two floats of state per
         * parameter. Batch 32 per worker needs about 2 GB. */
        snprintf(j->name, sizeof(j->name), "resnet50");
        j->params = 25557032;
        j->samples = 1281167;
        j->flops_per_sample = 3 * 8.2e9;
        j->batch = 32;
        j->epochs = 3;
        j->serial_frac = 0.15;
        j->state_factor = 2;
        /* Epochs as at the usual global batch of 256. Goyal et al. (2017) train to the same
         * accuracy in the same epochs up to a global batch of 8k and lose accuracy beyond:
         * a noise scale of 32k (8k needs 1.24x the epochs, 32k 1.98x). */
        j->ref_workers = 8;
        j->noise_scale = 32768;
    } else if (!strcmp(name, "bert-small")) {
        /* A 66 M-parameter BERT (DistilBERT-sized) fine-tuned on an MNLI-sized set (392,702
         * pairs) at sequence length 128: 6 x 66 M x 128 FLOP per sample. Adam: three floats of
         * state per parameter. */
        snprintf(j->name, sizeof(j->name), "bert-small");
        j->params = 66362880;
        j->samples = 392702;
        j->flops_per_sample = 6 * 66362880.0 * 128;
        j->batch = 16;
        j->epochs = 3;
        j->serial_frac = 0.12;
        j->state_factor = 3;
        /* Fine-tuning is done at global batches of 16-32 (Devlin et al. 2019) and degrades
         * at large ones much sooner than pre-training: a noise scale of 4k (4k needs 1.98x
         * the epochs of 32, 16k 4.9x). */
        j->ref_workers = 2;
        j->noise_scale = 4096;
    } else {
        return -1;
    }
    mem_options(j);
    return 0;
}

static double link_bytes_per_s(const struct sim_platform *p, uint32_t memory_mb)
{
    double m = memory_mb;
    double mbps = p->link_mbps[p->n_link - 1];
    if (m <= p->link_mb[0]) {
        mbps = p->link_mbps[0];
    } else {
        for (int i = 1; i < p->n_link; i++)
            if (m <= p->link_mb[i]) {
                double f = (m - p->link_mb[i - 1]) / (p->link_mb[i] - p->link_mb[i - 1]);
                mbps = p->link_mbps[i - 1] + f * (p->link_mbps[i] - p->link_mbps[i - 1]);
                break;
            }
    }
    return mbps * 1e6 / 8;
}

void sim_sched_job(const struct sim_platform *p, const struct sim_job *j, double deadline_s,
                   double budget_usd, struct sched_job *o)
{
    memset(o, 0, sizeof(*o));
    o->model_bytes = (uint64_t)(4 * j->params);
    o->samples_per_epoch = (uint64_t)j->samples;
    o->batch = j->batch;
    o->total_epochs = j->epochs;
    o->deadline_s = deadline_s;
    o->budget_usd = budget_usd;
    o->min_workers = 1;
    o->max_workers = p->max_workers;
    o->min_shards = 1;
    o->max_shards = p->max_shards;
    memcpy(o->memory_options, j->mem_options, sizeof(j->mem_options));
    o->n_memory_options = j->n_mem;
    o->time_limit_s = p->time_limit_s;
    o->price_gb_s = p->price_gb_s;
    o->price_request = p->price_request;
    o->price_ps_node_hour = p->price_ps_node_hour;
    /* What a coordinator knows before it has measured anything: a guess at the cold start
     * (replaced by measurements) and the scheduler's own default for resharding. */
    o->cold_start_s = 2.0;
    o->reshard_s_per_gb = 0;
    o->ref_workers = j->noise_scale > 0 ? j->ref_workers : 0;
}

/* ---- one run ------------------------------------------------------------------------------ */

struct run {
    const struct sim_platform *p;
    const struct sim_job *j;
    struct rng rng;
    double P;                 /* model bytes */
    struct sched_config c;
    double t, spent, samples, total_samples;
    double inv_start;         /* when the current invocations started */
    double net;               /* this epoch's network factor */
    uint64_t epoch;           /* epochs begun, for the drift */
    double last_step;
    /* measured since the last observation */
    uint64_t n;
    double sum_step, sum_cmean, sum_cmax, sum_comm, overhead;
    double cold_sum, cold_n;
    double steps;
    uint32_t peak;
    double ns_est;            /* what the baseline scheduler knows of the noise scale */
};

/* One epoch at the reference batch takes this many at W workers, in truth. */
static double true_factor(const struct sim_job *j, uint32_t workers)
{
    return sched_epoch_factor(j->batch, j->ref_workers, workers, j->noise_scale);
}

static double compute_base(const struct run *r, uint32_t memory_mb)
{
    const struct sim_platform *p = r->p;
    double cpu = memory_mb / p->mb_per_vcpu;
    if (cpu > p->max_vcpus)
        cpu = p->max_vcpus;
    double t1 = r->j->batch * r->j->flops_per_sample / (p->gflops_per_vcpu * 1e9);
    double s = r->j->serial_frac;
    return t1 * (s / (cpu < 1 ? cpu : 1) + (1 - s) / cpu);
}

/* Bills dt seconds of the current configuration. */
static void advance(struct run *r, double dt)
{
    const struct sim_platform *p = r->p;
    r->spent += dt * ((double)r->c.workers * r->c.memory_mb / 1024.0 * p->price_gb_s +
                      (double)r->c.shards * p->price_ps_node_hour / 3600.0);
    r->t += dt;
}

/* n new invocations that start cold: the step waits for the slowest; returns its latency. */
static double cold_starts(struct run *r, uint32_t n, uint32_t memory_mb)
{
    const struct sim_platform *p = r->p;
    double base = p->cold_start_s + r->P / link_bytes_per_s(p, memory_mb); /* + first pull */
    double umax = pow(rng_u(&r->rng), 1.0 / n);
    double slowest = base * (1 + p->cold_jitter * (2 * umax - 1));
    double mean = base * (1 + p->cold_jitter * (2 * rng_u(&r->rng) - 1) / sqrt((double)n));
    r->spent += n * p->price_request;
    r->cold_sum += mean;
    r->cold_n += 1;
    return slowest;
}

static void new_epoch_if_due(struct run *r)
{
    uint64_t e = (uint64_t)floor(r->samples / r->j->samples);
    while (r->epoch <= e) {
        r->net = exp(r->p->net_epoch_cv * rng_normal(&r->rng) - 0.5 * r->p->net_epoch_cv * r->p->net_epoch_cv);
        r->epoch++;
    }
}

/* Restarts every worker at a step boundary before the time limit cuts it. */
static void maybe_restart(struct run *r)
{
    const struct sim_platform *p = r->p;
    if (p->time_limit_s <= 0)
        return;
    if (r->t - r->inv_start + r->last_step + p->restart_margin_s <= p->time_limit_s)
        return;
    uint32_t W = r->c.workers;
    double p_any_cold = 1 - pow(1 - p->p_cold_restart, W);
    double dt = p->warm_restart_s;
    r->spent += W * p->price_request;
    if (rng_u(&r->rng) < p_any_cold) {
        r->spent -= W * p->price_request; /* cold_starts() bills the requests */
        dt = cold_starts(r, W, r->c.memory_mb);
    }
    advance(r, dt);
    r->overhead += dt;
    r->inv_start = r->t;
}

static void step(struct run *r)
{
    const struct sim_platform *p = r->p;
    uint32_t W = r->c.workers, S = r->c.shards;
    new_epoch_if_due(r);
    maybe_restart(r);
    double C = compute_base(r, r->c.memory_mb), sg = p->compute_cv;
    double cmean = C * (1 + sg * rng_normal(&r->rng) / sqrt((double)W));
    double zmax = W > 1 ? norm_q(pow(rng_u(&r->rng), 1.0 / W)) : rng_normal(&r->rng);
    double cmax = C * exp(sg * zmax - 0.5 * sg * sg);
    if (rng_u(&r->rng) < 1 - pow(1 - p->p_straggler, W)) {
        double f = p->straggler_lo + (p->straggler_hi - p->straggler_lo) * rng_u(&r->rng);
        if (C * f > cmax)
            cmax = C * f;
        cmean += C * (f - 1) / W;
    }
    if (cmax < cmean)
        cmax = cmean;
    double link = link_bytes_per_s(p, r->c.memory_mb) * r->net *
                  exp(p->net_step_cv * rng_normal(&r->rng));
    double ps = p->ps_net_bytes_per_s < p->ps_cpu_bytes_per_s ? p->ps_net_bytes_per_s
                                                              : p->ps_cpu_bytes_per_s;
    double worker_phase = r->P / link, shard_phase = (double)W * r->P / S / ps;
    double phase = (worker_phase > shard_phase ? worker_phase : shard_phase) + p->rtt_s;
    double comm = 2 * phase + r->P / S / p->apply_bytes_per_s + p->per_shard_s * S;
    double dt = cmax + comm;
    advance(r, dt);
    /* Progress in samples at the reference batch: a larger global batch does less per sample. */
    r->samples += (double)W * r->j->batch / true_factor(r->j, W);
    r->last_step = dt;
    r->n++;
    r->steps += 1;
    r->sum_step += dt;
    r->sum_cmean += cmean;
    r->sum_cmax += cmax;
    r->sum_comm += dt - cmean;
}

/* Moves to configuration c: cold starts for new workers (all of them for a new memory size)
 * and shard state moved between PS nodes, overlapping; everyone waits and is billed. */
static void reconfigure(struct run *r, const struct sched_config *c)
{
    const struct sim_platform *p = r->p;
    struct sched_config old = r->c;
    double t_cold = 0, t_rs = 0;
    if (c->memory_mb != old.memory_mb)
        t_cold = cold_starts(r, c->workers, c->memory_mb);
    else if (c->workers > old.workers)
        t_cold = cold_starts(r, c->workers - old.workers, c->memory_mb);
    if (c->shards != old.shards) {
        double ps = p->ps_net_bytes_per_s < p->ps_cpu_bytes_per_s ? p->ps_net_bytes_per_s
                                                                  : p->ps_cpu_bytes_per_s;
        uint32_t lo = c->shards < old.shards ? c->shards : old.shards;
        t_rs = r->j->state_factor * r->P / (ps * lo) + 1.0 + 2 * p->rtt_s;
    }
    double dt = t_cold > t_rs ? t_cold : t_rs;
    r->c.workers = c->workers > old.workers ? c->workers : old.workers;
    r->c.shards = c->shards > old.shards ? c->shards : old.shards;
    r->c.memory_mb = c->memory_mb > old.memory_mb ? c->memory_mb : old.memory_mb;
    advance(r, dt); /* the larger of both is up during the move */
    r->c = *c;
    if (c->memory_mb != old.memory_mb)
        r->inv_start = r->t;
    if (c->workers > r->peak)
        r->peak = c->workers;
}

static void run_init(struct run *r, const struct sim_platform *p, const struct sim_job *j,
                     const struct sched_config *c, uint64_t seed)
{
    memset(r, 0, sizeof(*r));
    r->p = p;
    r->j = j;
    uint64_t mix = seed ^ ((uint64_t)c->workers << 40) ^ ((uint64_t)c->shards << 24) ^ c->memory_mb;
    rng_seed(&r->rng, mix);
    r->P = 4 * j->params;
    r->c = *c;
    r->total_samples = j->epochs * j->samples;
    r->peak = c->workers;
    new_epoch_if_due(r);
    double dt = cold_starts(r, c->workers, c->memory_mb); /* every worker starts cold */
    advance(r, dt);
    r->inv_start = r->t;
    r->last_step = 0;
}

static void take_obs(struct run *r, struct sched_obs *o)
{
    memset(o, 0, sizeof(*o));
    o->workers = r->c.workers;
    o->shards = r->c.shards;
    o->memory_mb = r->c.memory_mb;
    o->steps = r->n;
    if (r->n) {
        double n = (double)r->n;
        o->step_s = (r->sum_step + r->overhead) / n;
        o->compute_s = r->sum_cmean / n;
        o->comm_s = r->sum_comm / n;
        o->slowest_compute_s = r->sum_cmax / n;
    }
    o->cold_start_s = r->cold_n > 0 ? r->cold_sum / r->cold_n : 0;
    /* The shards' estimate of the noise scale from the interval's W gradients and their sum:
     * unbiased in the log, with a relative error that shrinks with the gradients seen (they
     * measure one step in four). One worker gives no estimate (it needs two batch sizes). */
    if (r->j->noise_scale > 0 && r->c.workers > 1 && r->n > 0) {
        double sd = 3.0 / sqrt((double)r->n * (r->c.workers - 1));
        if (sd > 0.5)
            sd = 0.5;
        o->noise_scale = r->j->noise_scale * exp(sd * rng_normal(&r->rng));
    }
    r->n = 0;
    r->sum_step = r->sum_cmean = r->sum_cmax = r->sum_comm = r->overhead = 0;
    r->cold_sum = r->cold_n = 0;
}

/* The end of a run, however it ends: the final checkpoint (shard state to storage through
 * the PS nodes' NICs) while everything is still up and billed. */
static void finish(struct run *r)
{
    const struct sim_platform *p = r->p;
    double ps = p->ps_net_bytes_per_s < p->ps_cpu_bytes_per_s ? p->ps_net_bytes_per_s
                                                              : p->ps_cpu_bytes_per_s;
    advance(r, r->j->state_factor * r->P / (ps * r->c.shards) + 1.0);
}

static void result(const struct run *r, struct sim_result *res)
{
    res->finish_s = r->t;
    res->cost_usd = r->spent;
    res->epochs_done = r->samples / r->j->samples;
    res->completed = r->samples >= r->total_samples * (1 - 1e-12);
    res->final = r->c;
    res->peak_workers = r->peak;
    res->steps = r->steps;
}

void sim_run_fixed(const struct sim_platform *p, const struct sim_job *j,
                   const struct sched_config *c, uint64_t seed, struct sim_result *res)
{
    struct run r;
    memset(res, 0, sizeof(*res));
    run_init(&r, p, j, c, seed);
    while (r.samples < r.total_samples)
        step(&r);
    finish(&r);
    result(&r, res);
}

void sim_run_adaptive(const struct sim_platform *p, const struct sim_job *j,
                      const struct sched_config *start, double deadline_s, double budget_usd,
                      double decide_every, uint64_t seed, sim_trace_fn trace, void *trace_arg,
                      struct sim_result *res)
{
    struct sched_job sj;
    struct run r;
    memset(res, 0, sizeof(*res));
    sim_sched_job(p, j, deadline_s, budget_usd, &sj);
    struct sched *s = sched_new(&sj);
    if (!s)
        return;
    run_init(&r, p, j, start, seed ^ 0x5eedull);
    double last_change = 0;
    struct sched_obs o;
    struct sched_state st;
    struct sched_decision d;
    int stop = 0;

#define STATE()                                                                                    \
    do {                                                                                           \
        memset(&st, 0, sizeof(st));                                                                \
        st.elapsed_s = r.t;                                                                        \
        st.epochs_done = r.samples / j->samples;                                                   \
        st.spent_usd = r.spent;                                                                    \
        st.workers = r.c.workers;                                                                  \
        st.shards = r.c.shards;                                                                    \
        st.memory_mb = r.c.memory_mb;                                                              \
        st.since_change_s = r.t - last_change;                                                     \
    } while (0)

    /* The profile: a few steps at each probe, counted as training. */
    struct sched_config next;
    uint32_t nsteps;
    while (!stop && r.samples < r.total_samples &&
           sched_profile_next(s, &r.c, &next, &nsteps)) {
        if (next.workers != r.c.workers || next.shards != r.c.shards ||
            next.memory_mb != r.c.memory_mb) {
            reconfigure(&r, &next);
            last_change = r.t;
        }
        for (uint32_t i = 0; i < nsteps && r.samples < r.total_samples; i++) {
            STATE();
            if (!sched_step_affordable(s, &st)) {
                stop = 1;
                break;
            }
            step(&r);
        }
        take_obs(&r, &o);
        sched_observe(s, &o);
    }
    res->profile_s = r.t;
    int first = 1;
    double every = decide_every > 0 && decide_every <= 1 ? decide_every : 1.0;
    double next_at = (floor(r.samples / (every * j->samples)) + 1) * every * j->samples;
    double recheck_at = INFINITY;
    while (!stop && r.samples < r.total_samples) {
        if (first || r.samples >= next_at || r.t >= recheck_at) {
            if (!first) {
                take_obs(&r, &o);
                sched_observe(s, &o);
                next_at = (floor(r.samples / (every * j->samples)) + 1) * every * j->samples;
            }
            STATE();
            sched_decide(s, &st, &d);
            if (trace) {
                char model[768];
                sched_describe(s, model, sizeof(model));
                struct sim_trace_row row = {st.epochs_done, r.t, r.spent, r.c, o.step_s,
                                            d.verdict, d.next, d.reason, model,
                                            d.predicted_step_s};
                trace(trace_arg, &row);
            }
            if (d.verdict == SCHED_STOP_BUDGET) {
                stop = 1;
                res->stopped_budget = 1;
                break;
            }
            if (d.verdict == SCHED_CHANGE) {
                reconfigure(&r, &d.next);
                last_change = r.t;
                if (!first)
                    res->changes++;
            }
            recheck_at = d.recheck_s > 0 ? r.t + d.recheck_s : INFINITY;
            first = 0;
        }
        STATE();
        if (!sched_step_affordable(s, &st)) {
            res->stopped_budget = 1;
            break;
        }
        step(&r);
    }
#undef STATE
    if (stop)
        res->stopped_budget = 1;
    finish(&r);
    result(&r, res);
    sched_free(s);
}

#define SIM_BO_MAX_CAND 1024
#define SIM_BO_PROBES 10       /* SMLT profiles for about 10 % of the job; 10 short probes */
#define SIM_BO_PROBE_STEPS 4   /* as long as each of our profile's probes */

/* ---- the SMLT-style baseline: Bayesian optimisation over whole intervals -------------------- */

/* What the BO scheduler minimises for a configuration measured at step_s, given where the job
 * is: with a deadline, the cost of the rest; with only a budget, its time; in the log (which
 * the GP models), plus a steep penalty for projected lateness and overspend. */
static double bo_objective(const struct sim_platform *p, const struct sim_job *j,
                           const struct sched_config *c, double step_s, double epochs_left,
                           double noise_scale, double elapsed, double spent, double deadline_s,
                           double budget_usd)
{
    double steps = epochs_left * sched_epoch_factor(j->batch, j->ref_workers, c->workers,
                                                    noise_scale) *
                   j->samples / ((double)c->workers * j->batch);
    double t = steps * step_s;
    double cost = t * ((double)c->workers * c->memory_mb / 1024.0 * p->price_gb_s +
                       (double)c->shards * p->price_ps_node_hour / 3600.0) +
                  (double)c->workers * t / p->time_limit_s * p->price_request;
    double late = deadline_s > 0 ? (elapsed + t) / deadline_s - 1 : 0;
    double over = budget_usd > 0 ? (spent + cost) / budget_usd - 1 : 0;
    double f = deadline_s > 0 || budget_usd <= 0 ? cost : t;
    /* In the log: 10 % late or over adds 10 ln 2 (a factor 1024), so a configuration that
     * breaks a constraint loses to any that keeps it; growing only logarithmically beyond, so
     * that hopeless probes (a week late) do not flatten everything else for the GP. */
    return log(f > 1e-12 ? f : 1e-12) + 10 * log1p(10 * (late > 0 ? late : 0)) +
           10 * log1p(10 * (over > 0 ? over : 0));
}

void sim_run_bo(const struct sim_platform *p, const struct sim_job *j,
                const struct sched_config *start, double deadline_s, double budget_usd,
                double decide_every, uint64_t seed, struct sim_result *res)
{
    struct run r;
    memset(res, 0, sizeof(*res));
    run_init(&r, p, j, start, seed ^ 0xb0b0ull);
    /* The candidates: the fixed grid's workers and shards, every memory option. */
    static struct sched_config cand[SIM_BO_MAX_CAND];
    static double cx[SIM_BO_MAX_CAND][SIM_BO_DIM];
    int nc = 0;
    double lw = log2((double)p->max_workers), ls = log2((double)p->max_shards);
    for (uint32_t w = 1;; w *= 2) {
        uint32_t W = w < p->max_workers ? w : p->max_workers;
        for (uint32_t sh = 1;; sh *= 2) {
            uint32_t S = sh < p->max_shards ? sh : p->max_shards;
            for (uint32_t m = 0; m < j->n_mem && nc < SIM_BO_MAX_CAND; m++) {
                cand[nc] = (struct sched_config){W, S, j->mem_options[m]};
                cx[nc][0] = lw > 0 ? log2((double)W) / lw : 0;
                cx[nc][1] = ls > 0 ? log2((double)S) / ls : 0;
                cx[nc][2] = j->n_mem > 1 ? (double)m / (j->n_mem - 1) : 0;
                nc++;
            }
            if (S == p->max_shards)
                break;
        }
        if (W == p->max_workers)
            break;
    }
    /* Measured configurations: their last interval's mean step time. */
    static struct sched_config seen[SIM_BO_MAX_OBS];
    static double sx[SIM_BO_MAX_OBS][SIM_BO_DIM], step_of[SIM_BO_MAX_OBS], y[SIM_BO_MAX_OBS];
    int ns = 0, probes = 0;
    double every = decide_every > 0 && decide_every <= 1 ? decide_every : 1.0;
    /* Probes are counted in steps (progress per step shrinks with the batch's efficiency). */
    double next_at = r.samples + (double)SIM_BO_PROBE_STEPS * start->workers * j->batch /
                                     true_factor(j, start->workers);
    struct sched_obs o;
    while (r.samples < r.total_samples) {
        if (r.samples >= next_at) {
            take_obs(&r, &o);
            int k = 0;
            while (k < ns && !(seen[k].workers == r.c.workers && seen[k].shards == r.c.shards &&
                               seen[k].memory_mb == r.c.memory_mb))
                k++;
            if (k == ns && ns < SIM_BO_MAX_OBS) {
                seen[ns] = r.c;
                uint32_t mi = 0;
                while (mi + 1 < j->n_mem && j->mem_options[mi] < r.c.memory_mb)
                    mi++;
                sx[ns][0] = lw > 0 ? log2((double)r.c.workers) / lw : 0;
                sx[ns][1] = ls > 0 ? log2((double)r.c.shards) / ls : 0;
                sx[ns][2] = j->n_mem > 1 ? (double)mi / (j->n_mem - 1) : 0;
                ns++;
            }
            if (k < SIM_BO_MAX_OBS)
                step_of[k] = o.step_s;
            if (o.noise_scale > 0) /* the same measurement and smoothing as ours */
                r.ns_est = sched_noise_smooth(r.ns_est, o.noise_scale);
            double left = j->epochs - r.samples / j->samples;
            for (int i = 0; i < ns; i++)
                y[i] = bo_objective(p, j, &seen[i], step_of[i], left, r.ns_est, r.t, r.spent,
                                    deadline_s, budget_usd);
            /* Profiling: SIM_BO_PROBES short probes picked by the lower confidence bound
             * (exploration); afterwards every decision runs the incumbent: the measured
             * configuration with the best objective as of now. */
            int profiling = probes < SIM_BO_PROBES;
            int pick = -1;
            if (profiling) {
                pick = sim_bo_suggest((const double (*)[SIM_BO_DIM])sx, y, ns,
                                      (const double (*)[SIM_BO_DIM])cx, nc, 0.25, 0.01, 2.0);
            } else {
                int inc = 0;
                for (int i = 1; i < ns; i++)
                    if (y[i] < y[inc])
                        inc = i;
                for (int c = 0; c < nc; c++)
                    if (cand[c].workers == seen[inc].workers &&
                        cand[c].shards == seen[inc].shards &&
                        cand[c].memory_mb == seen[inc].memory_mb)
                        pick = c;
            }
            if (!profiling && probes == SIM_BO_PROBES) {
                res->profile_s = r.t;
                probes++;
            }
            if (pick >= 0 && (cand[pick].workers != r.c.workers ||
                              cand[pick].shards != r.c.shards ||
                              cand[pick].memory_mb != r.c.memory_mb)) {
                reconfigure(&r, &cand[pick]);
                if (!profiling)
                    res->changes++;
            }
            if (profiling) {
                probes++;
                next_at = r.samples + (double)SIM_BO_PROBE_STEPS * r.c.workers * j->batch /
                                          true_factor(j, r.c.workers);
            } else {
                next_at = (floor(r.samples / (every * j->samples)) + 1) * every * j->samples;
            }
        }
        /* The same hard stop as ours: no step unless a step and a half more fit. */
        if (budget_usd > 0 && r.last_step > 0) {
            double rate = (double)r.c.workers * r.c.memory_mb / 1024.0 * p->price_gb_s +
                          (double)r.c.shards * p->price_ps_node_hour / 3600.0;
            if (r.spent + 2.5 * r.last_step * rate > budget_usd) {
                res->stopped_budget = 1;
                break;
            }
        }
        step(&r);
    }
    finish(&r);
    result(&r, res);
}

/* ---- model accuracy ------------------------------------------------------------------------ */

double sim_mean_step(const struct sim_platform *p, const struct sim_job *j,
                     const struct sched_config *c, uint64_t seed, uint32_t nsteps)
{
    struct run r;
    run_init(&r, p, j, c, seed ^ 0xacc0ull);
    double sum = 0;
    r.total_samples = INFINITY;
    for (uint32_t i = 0; i < nsteps; i++) {
        r.epoch = 1; /* no per-epoch network drift: the platform's average */
        r.net = 1.0;
        step(&r);
        sum += r.last_step;
    }
    return nsteps ? sum / nsteps : 0;
}

struct sched *sim_profiled_sched(const struct sim_platform *p, const struct sim_job *j,
                                 const struct sched_config *start, uint64_t seed)
{
    struct sched_job sj;
    sim_sched_job(p, j, 0, 0, &sj);
    struct sched *s = sched_new(&sj);
    if (!s)
        return NULL;
    struct run r;
    run_init(&r, p, j, start, seed ^ 0x5eedull);
    struct sched_config next;
    uint32_t nsteps;
    struct sched_obs o;
    while (sched_profile_next(s, &r.c, &next, &nsteps)) {
        if (next.workers != r.c.workers || next.shards != r.c.shards ||
            next.memory_mb != r.c.memory_mb)
            reconfigure(&r, &next);
        take_obs(&r, &o); /* drop the reconfiguration's cold starts from the steps */
        for (uint32_t i = 0; i < nsteps; i++)
            step(&r);
        take_obs(&r, &o);
        sched_observe(s, &o);
    }
    return s;
}
