/* sched_model.c: the scheduler's performance model (sched_int.h has the formula): the
 * measured configurations, the non-negative least-squares fit of the model's coefficients to
 * them, and the predictions of step time, run time and cost that sched_policy.c decides with.
 *
 * The fit is redone from every remembered configuration on each sched_observe(): at most
 * SCHED_MAX_GROUPS rows and a few dozen columns, microseconds of work. Measurements of the same
 * configuration are merged (step-weighted means), so a long run at one configuration does not
 * outweigh the few others that tell the terms apart; older configurations count a little less
 * so the model can follow a platform whose speed drifts. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"

/* ---- features --------------------------------------------------------------------------- */

double sched__cpu(const struct sched *s, uint32_t memory_mb)
{
    double c = (double)memory_mb / s->job.mb_per_vcpu;
    return c < s->job.max_vcpus ? c : s->job.max_vcpus;
}

/* Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9). */
static double norm_quantile(double p)
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
    if (p <= 0)
        return -INFINITY;
    if (p >= 1)
        return INFINITY;
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

/* The expected maximum of W standard normal variables (Blom's approximation; 0 for W = 1):
 * how far above the mean the slowest of W workers computes, in standard deviations. */
double sched__h(uint32_t workers)
{
    if (workers <= 1)
        return 0.0;
    double w = (double)workers;
    return norm_quantile((w - 0.375) / (w + 0.25));
}

double sched__link_s(const struct sched *s, uint32_t memory_mb)
{
    double share = sched__cpu(s, memory_mb);
    if (share > 1.0)
        share = 1.0;
    if (share < 0.01)
        share = 0.01;
    return 2.0 * 8.0 * (double)s->job.model_bytes / (s->job.link_mbps * 1e6 * share);
}

double sched__shard_s(const struct sched *s, uint32_t workers, uint32_t shards)
{
    if (shards == 0)
        shards = 1;
    return 2.0 * (double)workers * ((double)s->job.model_bytes / shards) / s->job.ps_bytes_per_s;
}

uint32_t sched__mem_idx(const struct sched *s, uint32_t memory_mb)
{
    uint32_t best = 0;
    double bd = INFINITY;
    for (uint32_t i = 0; i < s->job.n_memory_options; i++) {
        double dd = fabs(log((double)memory_mb / s->job.memory_options[i]));
        if (dd < bd) {
            bd = dd;
            best = i;
        }
    }
    return best;
}

/* ---- non-negative least squares ----------------------------------------------------------- */

/* Solves the normal equations of A restricted to the columns in `in` (Cholesky with a tiny
 * ridge); columns not in the set get 0. Returns 0, or -1 if the system is singular. */
static int ls_subset(const double *A, int m, int n, const double *b, const int *in, double *z)
{
    int idx[SCHED_NNLS_MAX_COLS], k = 0;
    for (int j = 0; j < n; j++) {
        z[j] = 0;
        if (in[j])
            idx[k++] = j;
    }
    if (k == 0)
        return 0;
    double G[SCHED_NNLS_MAX_COLS][SCHED_NNLS_MAX_COLS], r[SCHED_NNLS_MAX_COLS];
    double maxd = 0;
    for (int p = 0; p < k; p++) {
        for (int q = 0; q <= p; q++) {
            double acc = 0;
            for (int i = 0; i < m; i++)
                acc += A[i * n + idx[p]] * A[i * n + idx[q]];
            G[p][q] = G[q][p] = acc;
        }
        double acc = 0;
        for (int i = 0; i < m; i++)
            acc += A[i * n + idx[p]] * b[i];
        r[p] = acc;
        if (G[p][p] > maxd)
            maxd = G[p][p];
    }
    if (maxd <= 0)
        return -1;
    for (int p = 0; p < k; p++)
        G[p][p] += 1e-12 * maxd;
    /* Cholesky: G = L L^T in the lower triangle. */
    for (int p = 0; p < k; p++) {
        for (int q = 0; q <= p; q++) {
            double acc = G[p][q];
            for (int t = 0; t < q; t++)
                acc -= G[p][t] * G[q][t];
            if (p == q) {
                if (acc <= 0)
                    return -1;
                G[p][p] = sqrt(acc);
            } else {
                G[p][q] = acc / G[q][q];
            }
        }
    }
    double y[SCHED_NNLS_MAX_COLS];
    for (int p = 0; p < k; p++) {
        double acc = r[p];
        for (int t = 0; t < p; t++)
            acc -= G[p][t] * y[t];
        y[p] = acc / G[p][p];
    }
    for (int p = k - 1; p >= 0; p--) {
        double acc = y[p];
        for (int t = p + 1; t < k; t++)
            acc -= G[t][p] * z[idx[t]];
        z[idx[p]] = acc / G[p][p];
    }
    return 0;
}

int sched__nnls(const double *A, int m, int n, const double *b, double *x)
{
    if (!A || !b || !x || m <= 0 || n <= 0 || n > SCHED_NNLS_MAX_COLS)
        return -1;
    int in[SCHED_NNLS_MAX_COLS] = {0};
    double w[SCHED_NNLS_MAX_COLS], z[SCHED_NNLS_MAX_COLS];
    for (int j = 0; j < n; j++)
        x[j] = 0;
    double bnorm = 0;
    for (int i = 0; i < m; i++)
        bnorm += b[i] * b[i];
    double tol = 1e-12 * (bnorm > 0 ? sqrt(bnorm) : 1.0);
    for (int outer = 0; outer < 3 * n + 10; outer++) {
        /* w = A^T (b - A x): the gradient; a zero-set column with w > 0 would lower the error. */
        for (int j = 0; j < n; j++)
            w[j] = 0;
        for (int i = 0; i < m; i++) {
            double res = b[i];
            for (int j = 0; j < n; j++)
                res -= A[i * n + j] * x[j];
            for (int j = 0; j < n; j++)
                w[j] += A[i * n + j] * res;
        }
        int jmax = -1;
        double wmax = tol;
        for (int j = 0; j < n; j++)
            if (!in[j] && w[j] > wmax) {
                wmax = w[j];
                jmax = j;
            }
        if (jmax < 0)
            break;
        in[jmax] = 1;
        for (int inner = 0; inner < 3 * n + 10; inner++) {
            if (ls_subset(A, m, n, b, in, z) != 0) {
                in[jmax] = 0; /* a dependent column: leave it out */
                break;
            }
            int allpos = 1;
            for (int j = 0; j < n; j++)
                if (in[j] && z[j] <= 0)
                    allpos = 0;
            if (allpos) {
                memcpy(x, z, sizeof(double) * (size_t)n);
                break;
            }
            double alpha = 1.0;
            for (int j = 0; j < n; j++)
                if (in[j] && z[j] <= 0) {
                    double a = x[j] / (x[j] - z[j]);
                    if (a < alpha)
                        alpha = a;
                }
            for (int j = 0; j < n; j++) {
                x[j] += alpha * (z[j] - x[j]);
                if (in[j] && x[j] <= 1e-15) {
                    in[j] = 0;
                    x[j] = 0;
                }
            }
        }
    }
    for (int j = 0; j < n; j++)
        if (!(x[j] >= 0) || !isfinite(x[j]))
            x[j] = 0;
    return 0;
}

/* ---- the fit ------------------------------------------------------------------------------ */

/* How much one remembered configuration counts: more steps average out more noise (up to
 * 10), and each newer measurement elsewhere ages it a little, down to half: the platform may
 * drift, but old configurations are what tells the terms apart. */
static double group_weight(const struct sched *s, const struct sched_group *g)
{
    double w = sqrt(g->steps / 10.0);
    if (w > 1.0)
        w = 1.0;
    double age = (double)(s->seq - g->last_seq);
    double r = pow(0.95, age);
    return w * (r > 0.5 ? r : 0.5);
}

static double g_mean(const struct sched_group *g, double sum)
{
    return g->steps > 0 ? sum / g->steps : 0.0;
}

static void fit_compute(struct sched *s)
{
    struct sched_fit *f = &s->fit;
    const double s0 = SCHED_PRIOR_SERIAL;
    double tw = 0, tsum = 0;
    for (uint32_t i = 0; i < s->n_groups; i++) {
        const struct sched_group *g = &s->g[i];
        double y = g_mean(g, g->compute_s);
        if (y <= 0)
            continue;
        double cpu = sched__cpu(s, g->c.memory_mb);
        double fs = 1.0 / (cpu < 1 ? cpu : 1), fp = 1.0 / cpu;
        double gw = group_weight(s, g);
        tw += gw;
        tsum += gw * y / (s0 * fs + (1 - s0) * fp);
    }
    if (tw <= 0) {
        f->have_compute = 0;
        f->c_ser = f->c_par = 0;
        return;
    }
    double T = tsum / tw; /* the 1-vCPU step compute the measurements imply under the prior split */
    double A[SCHED_NNLS_MAX_ROWS * 2], b[SCHED_NNLS_MAX_ROWS], x[2];
    int m = 0;
    for (uint32_t i = 0; i < s->n_groups; i++) {
        const struct sched_group *g = &s->g[i];
        double y = g_mean(g, g->compute_s);
        if (y <= 0)
            continue;
        double cpu = sched__cpu(s, g->c.memory_mb);
        double fs = 1.0 / (cpu < 1 ? cpu : 1), fp = 1.0 / cpu;
        double a = group_weight(s, g) / y;
        A[m * 2 + 0] = a * fs * s0 * T;
        A[m * 2 + 1] = a * fp * (1 - s0) * T;
        b[m++] = a * y;
    }
    A[m * 2 + 0] = SCHED_LAMBDA;
    A[m * 2 + 1] = 0;
    b[m++] = SCHED_LAMBDA;
    A[m * 2 + 0] = 0;
    A[m * 2 + 1] = SCHED_LAMBDA;
    b[m++] = SCHED_LAMBDA;
    sched__nnls(A, m, 2, b, x);
    f->have_compute = 1;
    f->c_ser = x[0] * s0 * T;
    f->c_par = x[1] * (1 - s0) * T;
}

static double compute_of(const struct sched *s, uint32_t memory_mb)
{
    double cpu = sched__cpu(s, memory_mb);
    return s->fit.c_ser / (cpu < 1 ? cpu : 1) + s->fit.c_par / cpu;
}

static void fit_wait(struct sched *s)
{
    struct sched_fit *f = &s->fit;
    double A[SCHED_NNLS_MAX_ROWS * 2], b[SCHED_NNLS_MAX_ROWS], x[2];
    int m = 0;
    for (uint32_t i = 0; i < s->n_groups; i++) {
        const struct sched_group *g = &s->g[i];
        double cmp = g_mean(g, g->compute_s), slow = g_mean(g, g->slowest_s);
        if (g->c.workers < 2 || cmp <= 0 || slow <= 0)
            continue;
        double y = (slow > cmp ? slow - cmp : 0) / cmp;
        double h = sched__h(g->c.workers), l = log((double)g->c.workers);
        /* residuals relative to the prior's prediction (plus a floor), like the other fits */
        double a = group_weight(s, g) / (SCHED_PRIOR_WAIT_CV * h + 0.01);
        A[m * 2 + 0] = a * SCHED_PRIOR_WAIT_CV * h;
        A[m * 2 + 1] = a * SCHED_SCALE_WAIT_LOG * l;
        b[m++] = a * y;
    }
    A[m * 2 + 0] = SCHED_LAMBDA;
    A[m * 2 + 1] = 0;
    b[m++] = SCHED_LAMBDA;
    A[m * 2 + 0] = 0;
    A[m * 2 + 1] = SCHED_LAMBDA;
    b[m++] = 0;
    sched__nnls(A, m, 2, b, x);
    f->w1 = x[0] * SCHED_PRIOR_WAIT_CV;
    f->w2 = x[1] * SCHED_SCALE_WAIT_LOG;
}

static double wait_of(const struct sched *s, uint32_t workers, double compute_s)
{
    if (workers < 2)
        return 0;
    return compute_s * (s->fit.w1 * sched__h(workers) + s->fit.w2 * log((double)workers));
}

/* Push + pull: X = k0 + max(k_link[M] * L(M), k_shard * H(W, S)). Every worker pushes to
 * (and then pulls from) all shards at once, so a phase lasts as long as the slower side needs:
 * the worker's link moving the whole model, or the busiest shard's NIC moving W slices. A
 * measured configuration tells the coefficient of the side that was the bottleneck there, so
 * the fit alternates: assign each configuration to its bottleneck under the current
 * coefficients, fit those rows by NNLS (with the priors), repeat until the assignment holds. */
/* One NNLS fit of the comm rows with each configuration assigned to a bottleneck (1: shard).
 * Returns the penalized squared error; x gets the coefficients. */
static double fit_comm_once(const struct sched *s, const int *shard_bound, double *x)
{
    const uint32_t nm = s->job.n_memory_options;
    const int n = 3 + (int)nm; /* k0, link shared, link per memory size, shard */
    const int c_k0 = 0, c_sh = 1, c_m0 = 2, c_shard = 2 + (int)nm;
    double A[SCHED_NNLS_MAX_ROWS * SCHED_NNLS_MAX_COLS], b[SCHED_NNLS_MAX_ROWS];
    int m = 0;
    memset(A, 0, sizeof(A));
    for (uint32_t i = 0; i < s->n_groups; i++) {
        const struct sched_group *g = &s->g[i];
        double cmp = g_mean(g, g->compute_s), comm = g_mean(g, g->comm_s);
        double slow = g_mean(g, g->slowest_s);
        if (slow < cmp)
            slow = cmp;
        double y = cmp + comm - slow; /* push + pull, without waiting for the slowest */
        if (y < 1e-4)
            y = 1e-4;
        double a = group_weight(s, g) / y;
        A[m * n + c_k0] = a * SCHED_PRIOR_K0_S;
        if (shard_bound[i])
            A[m * n + c_shard] = a * sched__shard_s(s, g->c.workers, g->c.shards);
        else
            A[m * n + c_m0 + (int)g->mem_idx] = a * sched__link_s(s, g->c.memory_mb);
        b[m++] = a * y;
    }
    A[m * n + c_k0] = SCHED_LAMBDA;
    b[m++] = SCHED_LAMBDA;
    A[m * n + c_sh] = SCHED_LAMBDA;
    b[m++] = SCHED_LAMBDA;
    for (uint32_t k = 0; k < nm; k++) {
        A[m * n + c_m0 + (int)k] = SCHED_LAMBDA_LINK_TIE;
        A[m * n + c_sh] = -SCHED_LAMBDA_LINK_TIE;
        b[m++] = 0;
    }
    A[m * n + c_shard] = SCHED_LAMBDA;
    b[m++] = SCHED_LAMBDA;
    sched__nnls(A, m, n, b, x);
    double err = 0;
    for (int i = 0; i < m; i++) {
        double r = -b[i];
        for (int jj = 0; jj < n; jj++)
            r += A[i * n + jj] * x[jj];
        err += r * r;
    }
    return err;
}

/* Push + pull: X = k0 + max(k_link[M] * L(M), k_shard * H(W, S)). Every worker pushes to
 * (and then pulls from) all shards at once, so a phase lasts as long as the slower side needs:
 * the worker's link moving the whole model, or the busiest shard's NIC moving W slices. A
 * measured configuration tells the coefficient of the side that was the bottleneck there, so
 * the fit alternates: assign each configuration to its bottleneck under the current
 * coefficients, fit those rows by NNLS (with the priors), repeat until the assignment holds.
 * Configurations that all share one workers-per-shard ratio cannot tell the two apart, so the
 * alternation starts three times (from the priors' view, all link-bound, all shard-bound) and
 * the best penalized fit wins. */
static void fit_comm(struct sched *s)
{
    struct sched_fit *f = &s->fit;
    const uint32_t nm = s->job.n_memory_options;
    const int c_k0 = 0, c_sh = 1, c_m0 = 2, c_shard = 2 + (int)nm;
    double x[SCHED_NNLS_MAX_COLS], bx[SCHED_NNLS_MAX_COLS];
    double best = INFINITY;
    int sb[SCHED_MAX_GROUPS];
    for (int start = 0; start < 3; start++) {
        for (uint32_t i = 0; i < s->n_groups; i++)
            sb[i] = start == 0 ? sched__shard_s(s, s->g[i].c.workers, s->g[i].c.shards) >
                                     sched__link_s(s, s->g[i].c.memory_mb)
                               : start == 2;
        double err = INFINITY;
        for (int iter = 0; iter < 8; iter++) {
            err = fit_comm_once(s, sb, x);
            int changed = 0;
            for (uint32_t i = 0; i < s->n_groups; i++) {
                const struct sched_group *g = &s->g[i];
                int v = x[c_shard] * sched__shard_s(s, g->c.workers, g->c.shards) >
                        x[c_m0 + (int)g->mem_idx] * sched__link_s(s, g->c.memory_mb);
                if (v != sb[i]) {
                    sb[i] = v;
                    changed = 1;
                }
            }
            if (!changed)
                break;
        }
        if (err < best) {
            best = err;
            memcpy(bx, x, sizeof(x));
        }
        if (s->n_groups == 0)
            break;
    }
    f->k0 = bx[c_k0] * SCHED_PRIOR_K0_S;
    f->k_link_shared = bx[c_sh];
    for (uint32_t k = 0; k < nm; k++)
        f->k_link[k] = bx[c_m0 + (int)k];
    f->k_shard = bx[c_shard];
}

static void fit_restart(struct sched *s)
{
    double limit = s->job.time_limit_s;
    double w = 1.0, sum = sched_cold_start(s);
    if (limit > 0) {
        for (uint32_t i = 0; i < s->n_groups; i++) {
            const struct sched_group *g = &s->g[i];
            double step = g_mean(g, g->step_s);
            double core = g_mean(g, g->compute_s) + g_mean(g, g->comm_s);
            if (core <= 0 || step <= 0)
                continue;
            double over = step > core ? step - core : 0;
            double periods = g->steps * step / limit; /* restarts this group could have seen */
            double gw = (periods < 5 ? periods : 5) * group_weight(s, g);
            sum += gw * over / core * limit;
            w += gw;
        }
    }
    s->fit.restart_s = sum / w;
}

static double model_step(const struct sched *s, const struct sched_config *c, double *compute_s,
                         double *wait_s, double *comm_s);

static void refit(struct sched *s)
{
    fit_compute(s);
    fit_wait(s);
    fit_comm(s);
    fit_restart(s);
    double sw = 0, sr = 0;
    for (uint32_t i = 0; i < s->n_groups; i++) {
        struct sched_group *g = &s->g[i];
        double m = model_step(s, &g->c, NULL, NULL, NULL), y = g_mean(g, g->step_s);
        g->resid = m > 0 && y > 0 ? log(y / m) : 0;
        double w = group_weight(s, g);
        g->weight = w;
        g->lw = log((double)g->c.workers);
        g->ls = log((double)g->c.shards);
        g->lm = log((double)g->c.memory_mb);
        sw += w;
        sr += w * g->resid * g->resid;
    }
    s->resid_var = sw > 0 ? sr / sw : 0;
}

#define SCHED_RESID_LEN 0.6931471805599453 /* ln 2: a residual counts e^-1 at twice the workers */
#define SCHED_RESID_SHRINK 0.1             /* pseudo-weight of "no correction" */

/* One pass over the measured configurations: the log residual correction for c (a kernel
 * average in log space: |ln W/W'| + |ln S/S'| + |ln M/M'|) and the distance to the nearest. */
static double correction(const struct sched *s, const struct sched_config *c, double *nearest)
{
    double lw = log((double)c->workers), ls = log((double)c->shards);
    double lm = log((double)c->memory_mb);
    double sw = 0, sr = 0, best = INFINITY;
    for (uint32_t i = 0; i < s->n_groups; i++) {
        const struct sched_group *g = &s->g[i];
        double d = fabs(lw - g->lw) + fabs(ls - g->ls) + fabs(lm - g->lm);
        if (d < best)
            best = d;
        d /= SCHED_RESID_LEN;
        if (d > 4)
            continue;
        double w = g->weight * exp(-d * d);
        sw += w;
        sr += w * g->resid;
    }
    if (nearest)
        *nearest = best;
    return sr / (sw + SCHED_RESID_SHRINK);
}

/* ---- public: life cycle and measurements --------------------------------------------------- */

struct sched *sched_new(const struct sched_job *job)
{
    if (!job || job->model_bytes == 0 || job->samples_per_epoch == 0 || job->batch == 0)
        return NULL;
    if (job->min_workers == 0 || job->min_workers > job->max_workers)
        return NULL;
    if (job->min_shards == 0 || job->min_shards > job->max_shards)
        return NULL;
    if (job->n_memory_options == 0 || job->n_memory_options > SCHED_MAX_MEMORY_OPTIONS)
        return NULL;
    for (uint32_t i = 0; i < job->n_memory_options; i++)
        if (job->memory_options[i] == 0 ||
            (i > 0 && job->memory_options[i] <= job->memory_options[i - 1]))
            return NULL;
    if (!(job->total_epochs >= 0) || !(job->deadline_s >= 0) || !(job->budget_usd >= 0) ||
        !(job->time_limit_s >= 0) || !(job->price_gb_s >= 0) || !(job->price_request >= 0) ||
        !(job->price_ps_node_hour >= 0) || !(job->cold_start_s >= 0) ||
        !(job->reshard_s_per_gb >= 0))
        return NULL;
    struct sched *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->job = *job;
    struct sched_job *j = &s->job;
    if (!(j->mb_per_vcpu > 0))
        j->mb_per_vcpu = SCHED_DEF_MB_PER_VCPU;
    if (!(j->max_vcpus > 0))
        j->max_vcpus = SCHED_DEF_MAX_VCPUS;
    if (!(j->link_mbps > 0))
        j->link_mbps = SCHED_DEF_LINK_MBPS;
    if (!(j->ps_bytes_per_s > 0))
        j->ps_bytes_per_s = SCHED_DEF_PS_BYTES_PER_S;
    if (!(j->reshard_s_per_gb > 0))
        j->reshard_s_per_gb = SCHED_DEF_RESHARD_S_PER_GB;
    if (!(j->min_change_interval_s > 0)) {
        double iv = 10.0 * j->cold_start_s;
        j->min_change_interval_s = iv > 60.0 ? iv : 60.0;
    }
    if (!(j->hysteresis > 0))
        j->hysteresis = 0.05;
    if (!(j->max_change_factor >= 1.0))
        j->max_change_factor = 4.0;
    refit(s);
    return s;
}

void sched_free(struct sched *s)
{
    free(s);
}

/* The measurements of configuration c, or NULL when it was never measured. */
static struct sched_group *group_find(struct sched *s, const struct sched_config *c)
{
    struct sched_group *g = NULL;
    for (uint32_t i = 0; i < s->n_groups; i++)
        if (s->g[i].c.workers == c->workers && s->g[i].c.shards == c->shards &&
            s->g[i].c.memory_mb == c->memory_mb)
            g = &s->g[i];
    return g;
}

/* How wrong was the model about step_s on c? Errors on configurations already measured
 * (known) size the margins; on new ones, the error per unit of novelty is the track record of
 * extrapolating. */
static void track_error(struct sched *s, const struct sched_config *c, double step_s, int known)
{
    double pred = sched__predict(s, c, NULL, NULL, NULL);
    double u = known ? 0 : sched__novelty(s, c);
    if (!(pred > 0))
        return;
    double e = (step_s - pred) / pred;
    if (e > 0.5)
        e = 0.5;
    if (e < -0.5)
        e = -0.5;
    if (known) {
        s->err_var = s->n_err == 0 ? e * e : 0.7 * s->err_var + 0.3 * e * e;
        s->n_err++;
    } else if (u > 0.02) {
        double r = e / u;
        if (r > 3)
            r = 3;
        if (r < -3)
            r = -3;
        s->ext_var = s->n_ext == 0 ? r * r : 0.7 * s->ext_var + 0.3 * r * r;
        s->n_ext++;
    }
}

void sched_observe(struct sched *s, const struct sched_obs *o)
{
    if (!s || !o || o->steps == 0 || !(o->step_s > 0) || !isfinite(o->step_s))
        return;
    if (o->workers == 0 || o->shards == 0 || o->memory_mb == 0)
        return;
    struct sched_config c = {o->workers, o->shards, o->memory_mb};
    if (o->noise_scale > 0 && isfinite(o->noise_scale))
        s->noise_scale = sched_noise_smooth(s->noise_scale, o->noise_scale);
    /* How wrong was the model about a configuration it had already measured? That error
     * (noise, drift, misfit) sizes the margins; the error of extrapolating to a configuration
     * never measured is the novelty term's business, not this one's. */
    struct sched_group *g = group_find(s, &c);
    if (s->fit.have_compute)
        track_error(s, &c, o->step_s, g != NULL);
    if (o->cold_start_s > 0 && isfinite(o->cold_start_s)) {
        s->cold_sum += o->cold_start_s;
        s->cold_n += 1;
    }
    if (s->seq == 0)
        s->anchor = c;
    s->seq++;
    if (!g) {
        if (s->n_groups < SCHED_MAX_GROUPS) {
            g = &s->g[s->n_groups++];
        } else {
            g = &s->g[0];
            for (uint32_t i = 1; i < s->n_groups; i++)
                if (s->g[i].last_seq < g->last_seq)
                    g = &s->g[i];
        }
        memset(g, 0, sizeof(*g));
        g->c = c;
        g->mem_idx = sched__mem_idx(s, c.memory_mb);
    }
    double n = (double)o->steps;
    double cmp = o->compute_s > 0 && isfinite(o->compute_s) ? o->compute_s : 0;
    double comm = o->comm_s > 0 && isfinite(o->comm_s) ? o->comm_s : 0;
    double slow = o->slowest_compute_s > 0 && isfinite(o->slowest_compute_s)
                      ? o->slowest_compute_s : cmp;
    if (cmp == 0 && comm == 0)
        comm = o->step_s; /* nothing split out: all of it is "communication" to the model */
    g->steps += n;
    g->step_s += n * o->step_s;
    g->compute_s += n * cmp;
    g->comm_s += n * comm;
    g->slowest_s += n * slow;
    g->last_seq = s->seq;
    s->last = *o;
    s->have_last = 1;
    refit(s);
}

/* ---- public: predictions ------------------------------------------------------------------- */

double sched__predict(const struct sched *s, const struct sched_config *c, double *compute_s,
                      double *wait_s, double *comm_s)
{
    double f = exp(correction(s, c, NULL));
    double step = model_step(s, c, compute_s, wait_s, comm_s) * f;
    if (compute_s)
        *compute_s *= f;
    if (wait_s)
        *wait_s *= f;
    if (comm_s)
        *comm_s *= f;
    return step;
}

static double model_step(const struct sched *s, const struct sched_config *c, double *compute_s,
                         double *wait_s, double *comm_s)
{
    const struct sched_fit *f = &s->fit;
    double cmp = compute_of(s, c->memory_mb);
    double wt = wait_of(s, c->workers, cmp);
    uint32_t mi = sched__mem_idx(s, c->memory_mb);
    double link = f->k_link[mi] * sched__link_s(s, c->memory_mb);
    double shard = f->k_shard * sched__shard_s(s, c->workers, c->shards);
    double x = f->k0 + (link > shard ? link : shard);
    double core = cmp + wt + x;
    double step = core;
    if (s->job.time_limit_s > 0)
        step *= 1.0 + f->restart_s / s->job.time_limit_s;
    if (compute_s)
        *compute_s = cmp;
    if (wait_s)
        *wait_s = wt;
    if (comm_s)
        *comm_s = x;
    return step;
}

double sched_predict_step(const struct sched *s, const struct sched_config *c, double *compute_s,
                          double *comm_s)
{
    if (!s || !c || c->workers == 0 || c->shards == 0 || c->memory_mb == 0) {
        if (compute_s)
            *compute_s = 0;
        if (comm_s)
            *comm_s = 0;
        return 0;
    }
    double wt, x;
    double step = sched__predict(s, c, compute_s, &wt, &x);
    if (comm_s)
        *comm_s = wt + x; /* as sched_obs.comm_s: push + pull including waiting */
    return step;
}

double sched__run_cost(const struct sched *s, const struct sched_config *c, double run_s)
{
    const struct sched_job *j = &s->job;
    double fn = (double)c->workers * c->memory_mb / 1024.0 * run_s * j->price_gb_s;
    double invocations = j->time_limit_s > 0 ? run_s / j->time_limit_s : 0;
    double req = (double)c->workers * invocations * j->price_request;
    double ps = (double)c->shards * run_s / 3600.0 * j->price_ps_node_hour;
    return fn + req + ps;
}

double sched_epoch_factor(uint32_t batch, uint32_t ref_workers, uint32_t workers,
                          double noise_scale)
{
    if (ref_workers == 0 || workers == 0 || !(noise_scale > 0))
        return 1.0;
    return (1.0 + (double)workers * batch / noise_scale) /
           (1.0 + (double)ref_workers * batch / noise_scale);
}

double sched__epoch_factor(const struct sched *s, uint32_t workers)
{
    return sched_epoch_factor(s->job.batch, s->job.ref_workers, workers, s->noise_scale);
}

double sched_noise_scale(const struct sched *s)
{
    return s ? s->noise_scale : 0;
}

double sched_noise_smooth(double prev, double measured)
{
    /* The estimate is noisy and drifts as training goes on (it grows as the loss falls): an
     * exponential average in the log, weighted toward the recent intervals. */
    return prev > 0 ? exp(0.7 * log(prev) + 0.3 * log(measured)) : measured;
}

void sched_predict_run(const struct sched *s, const struct sched_config *c, double epochs,
                       double *time_s, double *cost_usd)
{
    double t = 0, cost = 0;
    if (s && c && c->workers > 0 && c->shards > 0 && epochs > 0) {
        double steps = epochs * sched__epoch_factor(s, c->workers) *
                       (double)s->job.samples_per_epoch / ((double)c->workers * s->job.batch);
        t = steps * sched__predict(s, c, NULL, NULL, NULL);
        cost = sched__run_cost(s, c, t);
    }
    if (time_s)
        *time_s = t;
    if (cost_usd)
        *cost_usd = cost;
}

static double novelty_of(double nearest)
{
    double u = nearest / log(8.0);
    return u < 1.0 ? u : 1.0;
}

double sched__novelty(const struct sched *s, const struct sched_config *c)
{
    double nearest;
    correction(s, c, &nearest);
    return novelty_of(nearest);
}

double sched__predict_nov(const struct sched *s, const struct sched_config *c, double *novelty)
{
    double nearest;
    double f = exp(correction(s, c, &nearest));
    if (novelty)
        *novelty = novelty_of(nearest);
    return model_step(s, c, NULL, NULL, NULL) * f;
}

uint32_t sched_n_configs(const struct sched *s)
{
    return s ? s->n_groups : 0;
}

double sched_cold_start(const struct sched *s)
{
    if (!s)
        return 0;
    return s->cold_n > 0 ? s->cold_sum / s->cold_n : s->job.cold_start_s;
}

void sched_describe(const struct sched *s, char *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    if (!s) {
        snprintf(buf, len, "no scheduler");
        return;
    }
    const struct sched_fit *f = &s->fit;
    double steps = 0;
    for (uint32_t i = 0; i < s->n_groups; i++)
        steps += s->g[i].steps;
    int n = snprintf(buf, len,
                     "model from %u configuration%s (%.0f steps): compute %.3g s/step at 1 vCPU "
                     "(serial %.0f%%), wait %.3g*h(W)+%.3g*ln(W) of compute, comm %.3g s + "
                     "%.3g x link(%.0f Mbit/s) + %.3g x shard(%.3g GB/s), restart %.3g s, "
                     "prediction error %.1f%%",
                     s->n_groups, s->n_groups == 1 ? "" : "s", steps, f->c_ser + f->c_par,
                     f->c_ser + f->c_par > 0 ? 100.0 * f->c_ser / (f->c_ser + f->c_par) : 0.0,
                     f->w1, f->w2, f->k0, f->k_link_shared, s->job.link_mbps, f->k_shard,
                     s->job.ps_bytes_per_s / 1e9, f->restart_s, 100.0 * sqrt(s->err_var));
    if (n < 0 || (size_t)n >= len || s->job.n_memory_options < 2)
        return;
    size_t off = (size_t)n;
    for (uint32_t k = 0; k < s->job.n_memory_options && off < len; k++) {
        n = snprintf(buf + off, len - off, "%s%u MB %.3g", k == 0 ? "; link by memory: " : ", ",
                     s->job.memory_options[k], f->k_link[k]);
        if (n < 0)
            return;
        off += (size_t)n;
    }
}
