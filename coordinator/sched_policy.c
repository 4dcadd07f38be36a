/* sched_policy.c: the scheduler's decisions on top of the model of sched_model.c.
 *
 * Every decision evaluates a grid of configurations (workers on a ~6 % geometric grid, every
 * shard count up to 64 then a ~10 % grid, every memory option) for the rest of the job:
 * predicted time and cost, including the reconfiguration itself (cold starts of new workers,
 * moving shard state). Then:
 *   deadline            the cheapest configuration predicted to finish in time
 *   budget              the fastest configuration predicted to stay within it
 *   both                the cheapest that honours both; if none does, the budget wins (it is a
 *                       hard limit) and the reason says which constraint will be missed
 *   neither             the cheapest configuration that is not slower than the current one
 * "Predicted to" means with a safety margin: a base, plus the model's measured prediction
 * error, plus more for configurations far from anything measured.
 *
 * Damping, so noisy measurements do not make it flap:
 *   - the current configuration is kept while it satisfies the constraints with half the
 *     margin a new one needs (a band, not a threshold);
 *   - a change made only to save money or time needs a gain above `hysteresis` of what is
 *     left plus the reconfiguration's own cost, and waits min_change_interval_s after the last
 *     change; a change needed to keep the deadline or the budget does not wait;
 *   - after the first decision, workers and shards move at most by max_change_factor and
 *     memory by two options per decision;
 *   - a move to a configuration dearer per second keeps 1 % of the budget back besides its
 *     margin (see eval()).
 * The budget is a hard limit: SCHED_STOP_BUDGET as soon as even the cheapest configuration
 * cannot pay for the next epoch, and sched_step_affordable() for the step-by-step stop. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"

#define MARGIN_BASE_DEADLINE 0.05
#define MARGIN_BASE_BUDGET 0.03
#define MARGIN_NOISE 0.05     /* prior relative noise of a measured interval (1 sd) */
#define MARGIN_EXTRAP 0.17    /* prior relative error 8x away from any measurement (1 sd) */
#define MARGIN_ERR_MAX 0.35
#define TIE 0.01              /* within 1 % of the cheapest, the fastest is the cheapest */
#define MAX_LIST 192
#define PROFILE_STEPS 4u

struct cand {
    struct sched_config c;
    double step_s;
    double time_s;   /* reconfiguration + run, seconds from now */
    double cost;     /* $ from now: reconfiguration + run */
    double next_cost; /* $ for the next epoch (or what is left of the job, if less) */
    double next_e;    /* that interval in reference epochs: one data epoch at this batch */
    double reserve;  /* $ kept back for stopping: 1.5 steps and a checkpoint */
    double buffer;   /* $ a change keeps back besides (0 for the current configuration) */
    double m_d, m_b; /* margins a new configuration must meet the deadline / budget with */
    int in_hood;     /* within the bounded change from the current configuration */
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void fmt_dur(char *b, size_t n, double s)
{
    if (!isfinite(s)) {
        snprintf(b, n, "never");
        return;
    }
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(b, n, "%.1fs", s);
    else if (s < 3600)
        snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(b, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void fmt_cfg(char *b, size_t n, const struct sched_config *c)
{
    snprintf(b, n, "%u workers x %u shards x %u MB", c->workers, c->shards, c->memory_mb);
}

static int cfg_eq(const struct sched_config *a, const struct sched_config *b)
{
    return a->workers == b->workers && a->shards == b->shards && a->memory_mb == b->memory_mb;
}

/* Writes (put) or appends (cat) to a bounded string; both truncate silently: a reason is a
 * journal line, and SCHED_REASON_MAX bounds it. */
static void put(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static void cat(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cat(char *buf, size_t len, const char *fmt, ...)
{
    size_t off = strlen(buf);
    if (off + 1 >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + off, len - off, fmt, ap);
    va_end(ap);
}

/* Values in [lo, hi]: all of them up to `dense`, then a geometric grid of `ratio`; plus `must`
 * when it is in range. Sorted, unique. Returns the count. */
static int build_list(uint32_t lo, uint32_t hi, double ratio, uint32_t dense, uint32_t must,
                      uint32_t *out)
{
    int n = 0;
    uint64_t v = lo;
    while (v <= hi && n < MAX_LIST - 2) {
        out[n++] = (uint32_t)v;
        uint64_t nx = v < dense ? v + 1 : (uint64_t)floor((double)v * ratio);
        v = nx > v ? nx : v + 1;
    }
    if (n == 0 || out[n - 1] != hi)
        out[n++] = hi;
    if (must >= lo && must <= hi) {
        int at = 0;
        while (at < n && out[at] < must)
            at++;
        if (at == n || out[at] != must) {
            memmove(out + at + 1, out + at, sizeof(*out) * (size_t)(n - at));
            out[at] = must;
            n++;
        }
    }
    return n;
}

/* The margin for how wrong a prediction at novelty u (0: measured, 1: far from anything
 * measured) may be: 1.5 standard deviations of the noise seen when configurations were
 * measured again, plus, away from the measurements, the structured model's misfit where it
 * was measured (the residual correction fades with distance) and the error per unit of
 * novelty seen when new configurations were first measured. Both track records start from a
 * prior worth one measurement (5 % noise, 17 % at u = 1). */
static double margin_err(const struct sched *s, double u)
{
    double n = s->n_err, ne = s->n_ext;
    double noise = (n * s->err_var + MARGIN_NOISE * MARGIN_NOISE) / (n + 1);
    double ext = (ne * s->ext_var + MARGIN_EXTRAP * MARGIN_EXTRAP) / (ne + 1);
    double var = noise + u * s->resid_var + ext * u * u;
    double e = 1.5 * sqrt(var);
    return e < MARGIN_ERR_MAX ? e : MARGIN_ERR_MAX;
}

/* The time and $ a move from cur to c costs by itself: new workers' cold starts (all of them
 * when the memory size changes) and moving shard state, which overlap; everyone already
 * running waits and is billed meanwhile. */
static void reconfig(const struct sched *s, const struct sched_config *cur,
                     const struct sched_config *c, double *t_s, double *usd)
{
    const struct sched_job *j = &s->job;
    double t_cold = 0, t_rs = 0;
    if (c->memory_mb != cur->memory_mb || c->workers > cur->workers)
        t_cold = sched_cold_start(s);
    if (c->shards != cur->shards)
        t_rs = j->reshard_s_per_gb * SCHED_STATE_PER_PARAM_BYTES * (double)j->model_bytes / 1e9 +
               SCHED_RESHARD_FIXED_S;
    double t = t_cold > t_rs ? t_cold : t_rs;
    struct sched_config mx = {c->workers > cur->workers ? c->workers : cur->workers,
                              c->shards > cur->shards ? c->shards : cur->shards,
                              c->memory_mb > cur->memory_mb ? c->memory_mb : cur->memory_mb};
    *t_s = t;
    *usd = t > 0 ? sched__run_cost(s, &mx, t) : 0;
}

/* The $ kept back so the hard stop can always finish its step and checkpoint: a step and a
 * half (a step may run long) and the checkpoint. sched_step_affordable() lets a step start
 * while this much is left, and plans keep it unspent, so a plan that holds never trips it. */
static double stop_reserve(const struct sched *s, const struct sched_config *c, double step_s)
{
    double ckpt_s = SCHED_STATE_PER_PARAM_BYTES * (double)s->job.model_bytes /
                        (s->job.ps_bytes_per_s * c->shards) + SCHED_RESHARD_FIXED_S;
    return sched__run_cost(s, c, 1.5 * step_s + ckpt_s);
}

static void eval(const struct sched *s, const struct sched_config *cur,
                 const struct sched_config *c, double epochs, struct cand *k)
{
    const struct sched_job *j = &s->job;
    k->c = *c;
    double u;
    k->step_s = sched__predict_nov(s, c, &u);
    double f = sched__epoch_factor(s, c->workers);
    double steps = epochs * f * (double)j->samples_per_epoch / ((double)c->workers * j->batch);
    /* The next decision comes after one data epoch: 1/f reference epochs at c's batch (or the
     * rest of the job, if less); f is 1 unless the epochs are stated at a reference batch. */
    k->next_e = fmin(1.0 / f, epochs);
    double run = steps * k->step_s;
    double rc_t, rc_usd;
    reconfig(s, cur, c, &rc_t, &rc_usd);
    double run_cost = sched__run_cost(s, c, run);
    k->time_s = rc_t + run;
    k->cost = rc_usd + run_cost;
    k->next_cost = rc_usd + (epochs > 0 ? run_cost * k->next_e / epochs : 0);
    k->reserve = stop_reserve(s, c, k->step_s);
    /* A move to a configuration dearer per second keeps 1 % of the budget back: its own costs
     * (cold starts, resharding, a new configuration's first measurements) are the least
     * certain part of a plan, and late in a job the relative margins shrink with the cost to
     * come until a last speed-up can spend the budget before the last step (seen in smlt-sim:
     * stopped at 99.9 % of the work). Moves to cheaper configurations keep no more than the
     * current one. */
    int up = sched__run_cost(s, c, 1.0) > sched__run_cost(s, cur, 1.0); /* dearer per second */
    k->buffer = up ? 0.01 * j->budget_usd : 0;
    double e = margin_err(s, u);
    k->m_d = MARGIN_BASE_DEADLINE + e;
    k->m_b = MARGIN_BASE_BUDGET + e;
}

/* ---- the decision ------------------------------------------------------------------------- */

/* One decision's inputs, shared by the functions below. */
struct ctx {
    const struct sched *s;
    const struct sched_state *st;
    struct sched_config cur; /* the current configuration (defaults filled in) */
    int first;         /* the first decision with measurements: the whole space is in reach */
    int has_d, has_b;
    double E;          /* epochs left */
    double cheap_epoch; /* $ per epoch of the cheapest configuration, with its margin */
};

static int ok_deadline(const struct ctx *x, const struct cand *k, double m)
{
    return !x->has_d || x->st->elapsed_s + k->time_s * (1.0 + m) <= x->s->job.deadline_s;
}

/* Within the budget, two ways:
 *  - the whole plan, with the margin for noise only: after the next interval the
 *    configuration will have been measured, and every later decision re-plans with what it
 *    really cost, so the extrapolation part of the margin is paid once, not on every epoch;
 *  - a recoverable next epoch: if it costs its full margin m more than predicted, the cheapest
 *    configuration (with its own margin) still pays for the rest.
 * On the last epoch the second one is the whole plan with the full margin. */
static int ok_budget(const struct ctx *x, const struct cand *k, double m)
{
    if (!x->has_b)
        return 1;
    double left = x->s->job.budget_usd - x->st->spent_usd - k->reserve - k->buffer;
    double m_plan = MARGIN_BASE_BUDGET / 3 + margin_err(x->s, 0);
    if (m_plan > m)
        m_plan = m;
    if (k->cost * (1.0 + m_plan) > left)
        return 0;
    double rest = x->E - k->next_e;
    return k->next_cost * (1.0 + m) + x->cheap_epoch * (rest > 0 ? rest : 0) <= left;
}

/* The objective: $ to come with a deadline or with no constraint, time to go with only a
 * budget. */
static double objective(const struct ctx *x, const struct cand *k)
{
    return (x->has_b && !x->has_d) ? k->time_s : k->cost;
}

static void describe_measurement(const struct sched *s, const struct sched_state *st, char *buf,
                                 size_t len)
{
    buf[0] = 0;
    if (!s->have_last)
        return;
    const struct sched_obs *o = &s->last;
    double wait = o->slowest_compute_s > o->compute_s ? o->slowest_compute_s - o->compute_s : 0;
    double comm = o->comm_s - wait;
    if (comm < 0)
        comm = 0;
    char cfg[96], took[32];
    struct sched_config c = {o->workers, o->shards, o->memory_mb};
    fmt_cfg(cfg, sizeof(cfg), &c);
    fmt_dur(took, sizeof(took), (double)o->steps * o->step_s);
    if (s->n_decisions == 0 && st->epochs_done < 0.5)
        put(buf, len, "profiling: %llu steps at %s took %s (step %.3f s: compute %.3f, "
                 "wait %.3f, comm %.3f)", (unsigned long long)o->steps, cfg, took, o->step_s,
                 o->compute_s, wait, comm);
    else
        put(buf, len, "at epoch %.2f: the last %llu steps at %s took %s (step %.3f s: "
                 "compute %.3f, wait %.3f, comm %.3f)", st->epochs_done, (unsigned long long)o->steps,
                 cfg, took, o->step_s, o->compute_s, wait, comm);
}

static void describe_change(const struct sched_config *a, const struct sched_config *b, char *buf,
                            size_t len)
{
    buf[0] = 0;
    if (b->workers != a->workers)
        cat(buf, len, "%s%+d workers", buf[0] ? ", " : "", (int)b->workers - (int)a->workers);
    if (b->shards != a->shards)
        cat(buf, len, "%s%+d shards", buf[0] ? ", " : "", (int)b->shards - (int)a->shards);
    if (b->memory_mb != a->memory_mb)
        cat(buf, len, "%smemory %u -> %u MB", buf[0] ? ", " : "", a->memory_mb, b->memory_mb);
}

/* "finish at 52m10s, $1.84 in total" for candidate k. */
static void describe_pred(const struct ctx *x, const struct cand *k, char *buf, size_t len)
{
    char t[32];
    fmt_dur(t, sizeof(t), x->st->elapsed_s + k->time_s);
    snprintf(buf, len, "finish at %s, $%.4g in total", t, x->st->spent_usd + k->cost);
}

static void fill(struct sched_decision *d, const struct ctx *x, const struct cand *k,
                 enum sched_verdict v)
{
    d->verdict = v;
    d->next = k->c;
    d->predicted_step_s = k->step_s;
    d->predicted_finish_s = k->time_s;
    d->predicted_cost_usd = x->st->spent_usd + k->cost;
    d->deadline_ok = ok_deadline(x, k, 0.0);
    d->budget_ok = !x->has_b || x->st->spent_usd + k->cost <= x->s->job.budget_usd;
    /* An extrapolation is worth checking soon: after a minimum interval or 20 steps. */
    d->recheck_s = 0;
    if (sched__novelty(x->s, &k->c) > 0.05) {
        double r = 20 * k->step_s;
        d->recheck_s = r > x->s->job.min_change_interval_s ? r : x->s->job.min_change_interval_s;
    }
}

/* The bounded neighbourhood of the current configuration and the grid the search walks. */
struct grid {
    uint32_t wl[MAX_LIST], sl[MAX_LIST]; /* worker and shard counts, ascending */
    int nw, ns;
    uint32_t hw_lo, hw_hi, hs_lo, hs_hi; /* the reach of one decision: workers, shards */
    uint32_t mi_cur;                     /* the current memory option's index */
};

/* Fills g for a decision from x->cur: the whole space on the first decision, else workers and
 * shards within max_change_factor of the current ones. Both lists cover the job's whole
 * bounds and include the current values. */
static void grid_init(const struct ctx *x, struct grid *g)
{
    const struct sched_job *j = &x->s->job;
    const struct sched_config *cur = &x->cur;
    double F = j->max_change_factor;
    uint32_t wlo = j->min_workers, whi = j->max_workers, slo = j->min_shards, shi = j->max_shards;
    g->hw_lo = wlo;
    g->hw_hi = whi;
    g->hs_lo = slo;
    g->hs_hi = shi;
    g->mi_cur = sched__mem_idx(x->s, cur->memory_mb);
    if (!x->first) {
        double a = ceil(cur->workers / F), b = floor(cur->workers * F);
        g->hw_lo = a > wlo ? (uint32_t)a : wlo;
        g->hw_hi = b < whi ? (uint32_t)b : whi;
        a = ceil(cur->shards / F);
        b = floor(cur->shards * F);
        g->hs_lo = a > slo ? (uint32_t)a : slo;
        g->hs_hi = b < shi ? (uint32_t)b : shi;
    }
    g->nw = build_list(wlo, whi, 1.06, 16, cur->workers, g->wl);
    g->ns = build_list(slo, shi, 1.10, 16, cur->shards, g->sl);
}

/* Returns the $ one epoch costs, with its budget margin, with the configuration of g's grid
 * (every memory option) that makes it cheapest, each evaluated as if already running: the
 * floor ok_budget() assumes for the epochs after the next. */
static double cheapest_epoch(const struct sched *s, const struct grid *g)
{
    const struct sched_job *j = &s->job;
    double best = INFINITY;
    struct cand k;
    for (uint32_t mi = 0; mi < j->n_memory_options; mi++)
        for (int a = 0; a < g->nw; a++)
            for (int b = 0; b < g->ns; b++) {
                struct sched_config c = {g->wl[a], g->sl[b], j->memory_options[mi]};
                eval(s, &c, &c, 1.0, &k);
                double v = k.cost * (1.0 + k.m_b);
                if (v < best)
                    best = v;
            }
    return best;
}

/* What search() found. "full": over the whole grid; "hood": within reach of one decision.
 * Each candidate is valid only when its have_* flag is set. */
struct found {
    struct cand kc;            /* the current configuration */
    struct cand best;          /* in reach and honours every constraint: the objective's best */
    struct cand fast_hood;     /* the fastest in reach */
    struct cand cheap_hood;    /* the fastest in reach within TIE of its cheapest cost */
    struct cand aff_fast;      /* the fastest in reach within the budget */
    struct cand dl_cheap_full; /* the cheapest meeting the deadline */
    struct cand fast_full;     /* the fastest */
    struct cand cheap_full;    /* the cheapest */
    struct cand both_full;     /* the cheapest honouring both constraints */
    int have_best;             /* 1; 2 while pass 1 holds a stash (see visit_pass1()) */
    int have_fh, have_ch, have_af, have_dl, have_ff, have_cf, have_both;
    int have_aff_full;         /* something in the grid is within the budget */
    double cheapest_next;      /* the least $ any configuration needs for the next epoch */
    double m_keep_d, m_keep_b; /* the margins the current configuration is kept with */
    double best_obj;           /* pass 0: the best objective in reach honouring everything */
    double cheap_cost;         /* pass 0: the least cost in reach */
};

/* Pass 0 for candidate k; okd, okb: k meets the deadline, the budget with a new
 * configuration's margins; okn: without constraints, k is no slower than now. Records the
 * optima over the whole grid and, in reach, the fastest, the cheapest cost, the fastest
 * affordable and the best objective of those that honour every constraint. */
static void visit_pass0(const struct ctx *x, const struct cand *k, int okd, int okb, int okn,
                        struct found *f)
{
    if (k->next_cost < f->cheapest_next)
        f->cheapest_next = k->next_cost;
    if (!f->have_ff || k->time_s < f->fast_full.time_s)
        f->fast_full = *k, f->have_ff = 1;
    if (!f->have_cf || k->cost < f->cheap_full.cost)
        f->cheap_full = *k, f->have_cf = 1;
    if (okd && (!f->have_dl || k->cost < f->dl_cheap_full.cost))
        f->dl_cheap_full = *k, f->have_dl = 1;
    if (okd && okb && (!f->have_both || k->cost < f->both_full.cost))
        f->both_full = *k, f->have_both = 1;
    if (okb)
        f->have_aff_full = 1;
    if (!k->in_hood)
        return;
    if (!f->have_fh || k->time_s < f->fast_hood.time_s)
        f->fast_hood = *k, f->have_fh = 1;
    if (k->cost < f->cheap_cost)
        f->cheap_cost = k->cost;
    if (okb && (!f->have_af || k->time_s < f->aff_fast.time_s))
        f->aff_fast = *k, f->have_af = 1;
    if (okd && okb && okn && objective(x, k) < f->best_obj)
        f->best_obj = objective(x, k);
}

/* Pass 1 for candidate k (flags as for visit_pass0()), in reach only: breaks near-ties toward
 * speed. The fastest within TIE of the cheapest cost; the fastest within TIE of pass 0's best
 * objective that honours every constraint; and, when nothing in reach fits the budget with a
 * new configuration's margin, a stash (have_best 2) of the fastest that fits it with the
 * current configuration's margin, which search() then resolves. */
static void visit_pass1(const struct ctx *x, const struct cand *k, int okd, int okb, int okn,
                        struct found *f)
{
    int cost_mode = !(x->has_b && !x->has_d);
    if (!k->in_hood)
        return;
    if (k->cost <= f->cheap_cost * (1 + TIE) &&
        (!f->have_ch || k->time_s < f->cheap_hood.time_s))
        f->cheap_hood = *k, f->have_ch = 1;
    if (!f->have_af && ok_budget(x, k, f->m_keep_b) &&
        (!f->have_best || k->time_s < f->best.time_s))
        f->best = *k, f->have_best = 2; /* stash: relaxed-margin affordable */
    if (okd && okb && okn && f->have_best != 2 &&
        objective(x, k) <= f->best_obj * (cost_mode ? 1 + TIE : 1) &&
        (!f->have_best || k->time_s < f->best.time_s))
        f->best = *k, f->have_best = 1;
}

/* Evaluates the current configuration and every configuration of g for the epochs left, in
 * two passes, into f (overwritten). x->cheap_epoch must be set when there is a budget. On
 * return have_best is 0 or 1: 1 when f->best honours every constraint. */
static void search(const struct ctx *x, const struct grid *g, struct found *f)
{
    const struct sched *s = x->s;
    const struct sched_job *j = &s->job;
    memset(f, 0, sizeof(*f));
    f->cheapest_next = INFINITY;
    eval(s, &x->cur, &x->cur, x->E, &f->kc);
    f->kc.in_hood = 1;
    f->m_keep_d = MARGIN_BASE_DEADLINE / 2 + margin_err(s, 0) / 2;
    f->m_keep_b = MARGIN_BASE_BUDGET / 2 + margin_err(s, 0) / 2;
    /* Pass 0 finds the optima; pass 1 breaks near-ties toward speed: among configurations
     * within TIE of the cheapest cost, the fastest (it buys margin for free). When nothing in
     * reach is within the budget with a new configuration's margin, pass 1 also looks for the
     * fastest within the budget with the current configuration's (smaller) margin, before
     * falling back to the cheapest. */
    f->best_obj = INFINITY;
    f->cheap_cost = INFINITY;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t mi = 0; mi < j->n_memory_options; mi++) {
            int mhood = x->first || (mi + 2 >= g->mi_cur && mi <= g->mi_cur + 2);
            for (int a = 0; a < g->nw; a++) {
                for (int b = 0; b < g->ns; b++) {
                    struct sched_config c = {g->wl[a], g->sl[b], j->memory_options[mi]};
                    struct cand k;
                    eval(s, &x->cur, &c, x->E, &k);
                    k.in_hood = mhood && c.workers >= g->hw_lo && c.workers <= g->hw_hi &&
                                c.shards >= g->hs_lo && c.shards <= g->hs_hi;
                    int okd = ok_deadline(x, &k, k.m_d), okb = ok_budget(x, &k, k.m_b);
                    /* Without constraints, never slower than now. */
                    int okn = x->has_d || x->has_b || k.time_s <= f->kc.time_s;
                    if (pass == 0)
                        visit_pass0(x, &k, okd, okb, okn, f);
                    else
                        visit_pass1(x, &k, okd, okb, okn, f);
                }
            }
        }
    }
    if (f->have_best == 2) {
        /* Nothing in reach fits the budget with a new configuration's margin, but this one
         * fits with the current one's: treat it as the budget's fastest (and only) choice. */
        f->aff_fast = f->best;
        f->have_af = 1;
        f->have_best = 0;
        if (ok_deadline(x, &f->aff_fast, f->aff_fast.m_d))
            f->have_best = 1; /* it honours every constraint after all */
    }
}

/* The hard stop: when not even the cheapest configuration pays for the next epoch, fills d
 * with SCHED_STOP_BUDGET and a reason that starts with meas, and returns 1. Else returns 0
 * and leaves d alone. */
static int stop_at_budget(const struct ctx *x, const struct found *f, const char *meas,
                          struct sched_decision *d)
{
    const struct sched_job *j = &x->s->job;
    const struct sched_state *st = x->st;
    double next_e = x->E < 1.0 ? x->E : 1.0; /* data epochs to the next decision (for reasons) */
    if (x->has_b && st->spent_usd + f->cheapest_next * (1.0 + MARGIN_BASE_BUDGET) +
                            f->cheap_full.reserve > j->budget_usd) {
        fill(d, x, &f->kc, SCHED_STOP_BUDGET);
        put(d->reason, sizeof(d->reason),
                 "%s; spent $%.4g of the $%.4g budget and even the cheapest configuration needs "
                 "$%.4g for the next %.2g epoch: stopping at the budget (finish the step, "
                 "checkpoint, end) with %.2f of %.2f epochs done",
                 meas, st->spent_usd, j->budget_usd, f->cheapest_next, next_e, st->epochs_done,
                 j->total_epochs);
        return 1;
    }
    return 0;
}

/* Writes what the search aimed at, for the constraints x has, into goal. */
static void describe_goal(const struct ctx *x, char *goal, size_t len)
{
    const struct sched_job *j = &x->s->job;
    char t1[32];
    fmt_dur(t1, sizeof(t1), j->deadline_s);
    if (x->has_d && x->has_b)
        put(goal, len, "the cheapest configuration predicted to meet the "
                 "deadline at %s within the $%.4g budget", t1, j->budget_usd);
    else if (x->has_d)
        put(goal, len, "the cheapest configuration predicted to meet the "
                 "deadline at %s", t1);
    else if (x->has_b)
        put(goal, len, "the fastest configuration predicted to stay within "
                 "the $%.4g budget", j->budget_usd);
    else
        put(goal, len, "no deadline or budget: the cheapest configuration "
                 "no slower than now");
}

/* The decision when f->best honours every constraint: keep the current configuration (it
 * still suffices and the gain is below the threshold), hold (a change to save money or time
 * within min_change_interval_s of the last), or change (worth it, or the current one no
 * longer suffices). Writes why into what, sets *v; returns the choice (borrowed from f). */
static const struct cand *decide_fit(const struct ctx *x, const struct found *f, char *what,
                                     size_t len, enum sched_verdict *v)
{
    const struct sched *s = x->s;
    const struct sched_job *j = &s->job;
    const struct sched_state *st = x->st;
    const struct cand *kc = &f->kc, *best = &f->best;
    int cur_ok = ok_deadline(x, kc, f->m_keep_d) && ok_budget(x, kc, f->m_keep_b);
    char goal[160], cfgs[96], pred[96], cur_pred[96], t2[32];
    describe_goal(x, goal, sizeof(goal));
    fmt_cfg(cfgs, sizeof(cfgs), &best->c);
    describe_pred(x, best, pred, sizeof(pred));
    *v = SCHED_KEEP;
    if (cur_ok && !x->first && st->since_change_s < j->min_change_interval_s &&
        !cfg_eq(&best->c, &x->cur)) {
        fmt_dur(t2, sizeof(t2), j->min_change_interval_s - st->since_change_s);
        put(what, len, "%s is %s (%s) but the last change was %.0f s ago; "
                 "holding for %s", goal, cfgs, pred, st->since_change_s, t2);
        return kc;
    }
    if (!cur_ok) {
        *v = SCHED_CHANGE;
        describe_pred(x, kc, cur_pred, sizeof(cur_pred));
        put(what, len, "the current configuration would %s (%s); %s is %s (%s)",
                 !ok_deadline(x, kc, f->m_keep_d) ? "miss the deadline" : "exceed the budget",
                 cur_pred, goal, cfgs, pred);
        return best;
    }
    double oc = objective(x, kc), ob = objective(x, best);
    /* Worth it: more than `hysteresis` of what is left, and more than half a minimum
     * interval's worth (of time, or of the current configuration's spending). */
    double floor_v = (x->has_b && !x->has_d)
                         ? j->min_change_interval_s / 2
                         : sched__run_cost(s, &x->cur, j->min_change_interval_s / 2);
    double thr = j->hysteresis * oc > floor_v ? j->hysteresis * oc : floor_v;
    if (cfg_eq(&best->c, &x->cur) || oc - ob <= thr) {
        describe_pred(x, kc, cur_pred, sizeof(cur_pred));
        if (cfg_eq(&best->c, &x->cur))
            put(what, len, "the current configuration is %s (%s)", goal,
                     cur_pred);
        else if (oc - ob <= 0)
            /* It fits only within the band kept for the current configuration; the
             * best that fits with a new one's margin is worse. */
            put(what, len, "the current configuration still suffices "
                     "(%s); nothing in reach does better (the best that fits with a new "
                     "configuration's margin, %s, is %.1f%% worse)", cur_pred, cfgs,
                     oc > 0 ? 100.0 * (ob - oc) / oc : 0.0);
        else
            put(what, len, "the current configuration still suffices "
                     "(%s); %s would save only %.1f%% (threshold %.1f%%)", cur_pred,
                     cfgs, oc > 0 ? 100.0 * (oc - ob) / oc : 0.0,
                     oc > 0 ? 100.0 * thr / oc : 0.0);
        return kc;
    }
    *v = SCHED_CHANGE;
    put(what, len, "%s is %s (%s; saves %.0f%% %s)", goal, cfgs, pred,
             100.0 * (oc - ob) / oc, (x->has_b && !x->has_d) ? "of the time left"
                                                              : "of the cost to come");
    return best;
}

/* Writes what the job does when not every constraint can be met, running pick, into act. */
static void describe_action(const struct ctx *x, const struct found *f, const struct cand *pick,
                            char *act, size_t len)
{
    const struct sched_job *j = &x->s->job;
    char cfgs[96], pred[96];
    fmt_cfg(cfgs, sizeof(cfgs), &pick->c);
    describe_pred(x, pick, pred, sizeof(pred));
    if (x->has_b && !f->have_af) {
        double afford = f->cheap_full.cost > 0
                            ? x->E * (j->budget_usd - x->st->spent_usd) / f->cheap_full.cost : 0;
        put(act, len, "running the cheapest in reach, %s (%s); the job will stop "
            "when the budget is spent, after about %.2f more epochs", cfgs, pred,
            afford < x->E ? afford : x->E);
    } else if (x->has_b) {
        put(act, len, "running the fastest it affords, %s (%s)", cfgs, pred);
    } else {
        put(act, len, "running the fastest in reach, %s (%s)", cfgs, pred);
    }
}

/* The decision when nothing in reach honours every constraint: move toward the budget's
 * fastest (or, when nothing in reach is affordable, its cheapest) or, without a budget, the
 * fastest, if the move is needed or saves half a `hysteresis`. Writes what cannot be met and
 * what the job does into what, sets *v; returns the choice (borrowed from f). */
static const struct cand *decide_unmet(const struct ctx *x, const struct found *f, char *what,
                                       size_t len, enum sched_verdict *v)
{
    const struct sched_job *j = &x->s->job;
    const struct sched_state *st = x->st;
    const struct cand *kc = &f->kc, *pick = kc, *target;
    double F = j->max_change_factor;
    *v = SCHED_KEEP;
    if (x->has_b)
        target = f->have_af ? &f->aff_fast : &f->cheap_hood;
    else
        target = &f->fast_hood;
    double ot = x->has_b && !f->have_af ? target->cost : target->time_s;
    double oc = x->has_b && !f->have_af ? kc->cost : kc->time_s;
    /* Leaving a configuration that breaks the budget for one that keeps it is never held
     * back. Any other move must save half a `hysteresis` - also when nothing in reach
     * keeps the budget and the move is between two that break it (else a noisy tiny job
     * hops from one cheapest-by-a-hair configuration to the next at every epoch). */
    int must = x->has_b && f->have_af && !ok_budget(x, kc, f->m_keep_b);
    if (!cfg_eq(&target->c, &x->cur) && (must || oc - ot > j->hysteresis / 2 * oc)) {
        pick = target;
        *v = SCHED_CHANGE;
    }
    /* What cannot be met, then what the job does about it. */
    char act[320], t1[32], t2[32];
    describe_action(x, f, pick, act, sizeof(act));
    fmt_dur(t1, sizeof(t1), j->deadline_s);
    fmt_dur(t2, sizeof(t2), st->elapsed_s + f->fast_full.time_s);
    if (x->has_d && x->has_b && f->have_both)
        put(what, len, "a configuration meeting the deadline at %s within the "
            "budget is more than %.0fx away; moving toward it: %s", t1, F, act);
    else if (x->has_d && x->has_b && f->have_dl)
        put(what, len, "the deadline at %s and the $%.4g budget cannot both be "
            "met: meeting the deadline needs $%.4g; the budget is a hard limit, so the job "
            "keeps to it and will finish late: %s", t1, j->budget_usd,
            st->spent_usd + f->dl_cheap_full.cost, act);
    else if (x->has_d && x->has_b)
        put(what, len, "no configuration can meet the deadline at %s (the fastest "
            "finishes at %s); the budget is a hard limit, so the job keeps to it: %s", t1,
            t2, act);
    else if (x->has_d && f->have_dl)
        put(what, len, "the configuration that meets the deadline at %s is more "
            "than %.0fx away; moving toward it: %s", t1, F, act);
    else if (x->has_d)
        put(what, len, "no configuration can meet the deadline at %s (the fastest "
            "finishes at %s, late by %.0f s): %s", t1, t2,
            st->elapsed_s + f->fast_full.time_s - j->deadline_s, act);
    else if (f->have_aff_full)
        put(what, len, "the fastest configuration within the $%.4g budget is more "
            "than %.0fx away; moving toward it: %s", j->budget_usd, F, act);
    else
        put(what, len, "the $%.4g budget cannot pay for the %.2f epochs left (the "
            "cheapest configuration needs $%.4g more): %s", j->budget_usd, x->E,
            f->cheap_full.cost, act);
    return pick;
}

/* Fills d with the choice pick and verdict v, and its reason: meas (appended to, meas_len
 * bytes), the gradient noise scale when statistical efficiency shaped the choice, what, and
 * the change or "keeping it". */
static void finish_decision(const struct ctx *x, const struct cand *pick, enum sched_verdict v,
                            char *meas, size_t meas_len, const char *what,
                            struct sched_decision *d)
{
    const struct sched *s = x->s;
    const struct sched_job *j = &s->job;
    fill(d, x, pick, v);
    if (j->ref_workers > 0 && s->noise_scale > 0) {
        /* Statistical efficiency shaped the choice: say by how much. */
        uint32_t w = pick->c.workers;
        cat(meas, meas_len, "; gradient noise scale %.0f samples: a global batch of %u "
            "needs %.2fx the epochs of the reference %u", s->noise_scale, w * j->batch,
            sched__epoch_factor(s, w), j->ref_workers * j->batch);
    }
    if (v == SCHED_CHANGE) {
        char chg[96];
        describe_change(&x->cur, &pick->c, chg, sizeof(chg));
        put(d->reason, sizeof(d->reason), "%s; %s; %s", meas, what, chg);
    } else {
        put(d->reason, sizeof(d->reason), "%s; %s; keeping it", meas, what);
    }
}

void sched_decide(struct sched *s, const struct sched_state *st, struct sched_decision *d)
{
    if (!d)
        return;
    memset(d, 0, sizeof(*d));
    d->verdict = SCHED_KEEP;
    d->deadline_ok = d->budget_ok = 1;
    if (!s || !st) {
        put(d->reason, sizeof(d->reason), "no scheduler state");
        return;
    }
    const struct sched_job *j = &s->job;
    struct sched_config cur = {st->workers, st->shards, st->memory_mb};
    if (cur.workers == 0)
        cur.workers = j->min_workers;
    if (cur.shards == 0)
        cur.shards = j->min_shards;
    if (cur.memory_mb == 0)
        cur.memory_mb = j->memory_options[0];
    d->next = cur;
    char cfgs[96], meas[400], what[640];
    fmt_cfg(cfgs, sizeof(cfgs), &cur);
    if (!s->fit.have_compute) {
        put(d->reason, sizeof(d->reason), "no measurements yet; keeping %s", cfgs);
        return;
    }
    struct ctx x = {.s = s, .st = st, .has_d = j->deadline_s > 0, .has_b = j->budget_usd > 0,
                    .cur = cur};
    x.E = st->epochs_left_hint > 0 ? st->epochs_left_hint : j->total_epochs - st->epochs_done;
    describe_measurement(s, st, meas, sizeof(meas));
    if (!(x.E > 0)) {
        put(d->reason, sizeof(d->reason), "%s; the job's epochs are done; keeping %s", meas,
                 cfgs);
        return;
    }
    x.first = s->n_decisions == 0;
    s->n_decisions++;

    struct grid g;
    struct found f;
    grid_init(&x, &g);
    if (x.has_b)
        x.cheap_epoch = cheapest_epoch(s, &g);
    search(&x, &g, &f);
    if (stop_at_budget(&x, &f, meas, d))
        return;
    enum sched_verdict v;
    const struct cand *pick;
    what[0] = 0;
    if (f.have_best)
        pick = decide_fit(&x, &f, what, sizeof(what), &v);
    else
        pick = decide_unmet(&x, &f, what, sizeof(what), &v);
    finish_decision(&x, pick, v, meas, sizeof(meas), what, d);
}

/* ---- profiling and the per-step budget check --------------------------------------------- */

static int measured(const struct sched *s, const struct sched_config *c)
{
    for (uint32_t i = 0; i < s->n_groups; i++)
        if (cfg_eq(&s->g[i].c, c) && s->g[i].steps >= 2)
            return 1;
    return 0;
}

int sched_profile_next(const struct sched *s, const struct sched_config *cur,
                       struct sched_config *next, uint32_t *steps)
{
    if (!s || !cur || !next)
        return 0;
    const struct sched_job *j = &s->job;
    struct sched_config p[3];
    int n = 0;
    if (s->seq > 0)
        cur = &s->anchor; /* the plan is relative to where the profile began */
    p[n++] = *cur;
    /* 4x the workers on a quarter of the shards: 16x the traffic per shard, so the shard term
     * shows even where a shard's NIC is idle enough to hide behind the workers' links at the
     * starting point; more workers also show how the slowest one pulls away. */
    struct sched_config q = *cur;
    uint64_t up = (uint64_t)cur->workers * 4;
    q.workers = up <= j->max_workers ? (uint32_t)up : j->max_workers;
    if (q.workers == cur->workers)
        q.workers = cur->workers / 4 >= j->min_workers ? cur->workers / 4 : j->min_workers;
    q.shards = cur->shards / 4 >= j->min_shards ? cur->shards / 4 : j->min_shards;
    if (q.workers != cur->workers || q.shards != cur->shards)
        p[n++] = q;
    if (j->n_memory_options > 1) {
        uint32_t mi = sched__mem_idx(s, cur->memory_mb), alt = mi;
        double want = 2.0 * cur->memory_mb, bd = INFINITY;
        for (uint32_t k = 0; k < j->n_memory_options; k++) {
            double dd = fabs(log(j->memory_options[k] / want));
            if (k != mi && dd < bd) {
                bd = dd;
                alt = k;
            }
        }
        q = *cur;
        q.memory_mb = j->memory_options[alt];
        if (q.memory_mb != cur->memory_mb)
            p[n++] = q;
    }
    for (int i = 0; i < n; i++)
        if (!measured(s, &p[i])) {
            *next = p[i];
            if (steps)
                *steps = PROFILE_STEPS;
            return 1;
        }
    return 0;
}

int sched_step_affordable(const struct sched *s, const struct sched_state *st)
{
    if (!s || !st || !(s->job.budget_usd > 0))
        return 1;
    struct sched_config c = {st->workers, st->shards, st->memory_mb};
    if (c.workers == 0 || c.shards == 0 || c.memory_mb == 0)
        return 1;
    double step = s->fit.have_compute ? sched__predict(s, &c, NULL, NULL, NULL) : 0;
    if (s->have_last && s->last.workers == c.workers && s->last.shards == c.shards &&
        s->last.memory_mb == c.memory_mb && s->last.step_s > step)
        step = s->last.step_s;
    return st->spent_usd + stop_reserve(s, &c, step) <= s->job.budget_usd;
}
