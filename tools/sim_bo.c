/* sim_bo.c: Gaussian-process lower-confidence-bound suggestion for the SMLT-style baseline
 * scheduler of smlt-sim (see sim_bo.h). Exact GP regression by Cholesky; at most
 * SIM_BO_MAX_OBS points, so O(n^3) is nothing. */
#include <math.h>
#include <string.h>

#include "sim_bo.h"

static double kern(const double *a, const double *b, double len)
{
    double d2 = 0;
    for (int k = 0; k < SIM_BO_DIM; k++)
        d2 += (a[k] - b[k]) * (a[k] - b[k]);
    return exp(-d2 / (2 * len * len));
}

int sim_bo_suggest(const double (*x)[SIM_BO_DIM], const double *y, int n,
                   const double (*cand)[SIM_BO_DIM], int n_cand, double len, double noise,
                   double kappa)
{
    if (n <= 0 || n_cand <= 0)
        return -1;
    int off = 0;
    if (n > SIM_BO_MAX_OBS) {
        off = n - SIM_BO_MAX_OBS;
        n = SIM_BO_MAX_OBS;
    }
    x += off;
    y += off;
    /* Standardize y. */
    double mu = 0, sd = 0;
    for (int i = 0; i < n; i++)
        mu += y[i];
    mu /= n;
    for (int i = 0; i < n; i++)
        sd += (y[i] - mu) * (y[i] - mu);
    sd = n > 1 ? sqrt(sd / (n - 1)) : 1.0;
    if (!(sd > 1e-12))
        sd = 1.0;
    static double L[SIM_BO_MAX_OBS][SIM_BO_MAX_OBS];
    double alpha[SIM_BO_MAX_OBS], z[SIM_BO_MAX_OBS];
    for (int i = 0; i < n; i++)
        for (int k = 0; k <= i; k++)
            L[i][k] = kern(x[i], x[k], len) + (i == k ? noise : 0);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k <= i; k++) {
            double acc = L[i][k];
            for (int t = 0; t < k; t++)
                acc -= L[i][t] * L[k][t];
            if (i == k)
                L[i][i] = sqrt(acc > 1e-12 ? acc : 1e-12);
            else
                L[i][k] = acc / L[k][k];
        }
    }
    /* alpha = K^-1 (y - mu) / sd */
    for (int i = 0; i < n; i++) {
        double acc = (y[i] - mu) / sd;
        for (int t = 0; t < i; t++)
            acc -= L[i][t] * z[t];
        z[i] = acc / L[i][i];
    }
    for (int i = n - 1; i >= 0; i--) {
        double acc = z[i];
        for (int t = i + 1; t < n; t++)
            acc -= L[t][i] * alpha[t];
        alpha[i] = acc / L[i][i];
    }
    int best = -1;
    double best_v = INFINITY;
    double kv[SIM_BO_MAX_OBS];
    for (int c = 0; c < n_cand; c++) {
        double m = 0;
        for (int i = 0; i < n; i++) {
            kv[i] = kern(cand[c], x[i], len);
            m += kv[i] * alpha[i];
        }
        /* variance: k(c,c) - v^T v with L v = k */
        double vv = 0;
        for (int i = 0; i < n; i++) {
            double acc = kv[i];
            for (int t = 0; t < i; t++)
                acc -= L[i][t] * z[t];
            z[i] = acc / L[i][i];
            vv += z[i] * z[i];
        }
        double var = 1.0 - vv;
        double s = var > 0 ? sqrt(var) : 0;
        double lcb = m - kappa * s;
        if (lcb < best_v) {
            best_v = lcb;
            best = c;
        }
    }
    return best;
}
