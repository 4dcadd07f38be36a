/* smlt_hist.c: see smlt_hist.h. */
#include "smlt_hist.h"

#include <math.h>
#include <stdio.h>

/* From 1 us: a small shard's optimizer step takes a few microseconds. */
const double smlt_hist_le[SMLT_HIST_NLE] = {
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025,
    0.0005,   0.001,     0.0025,   0.005,   0.01,     0.025,   0.05,   0.1,
    0.25,     0.5,       1,        2.5,     5,        10,      25,     60};

uint32_t smlt_hist_bucket(double v)
{
    if (!(v > 0)) /* NaN too */
        v = 0;
    uint32_t i = 0;
    while (i < SMLT_HIST_NLE && v > smlt_hist_le[i])
        i++;
    return i;
}

void smlt_hist_observe_n(struct smlt_hist *h, double v, uint64_t n)
{
    if (!(v > 0))
        v = 0;
    if (isinf(v))
        v = smlt_hist_le[SMLT_HIST_NLE - 1] * 10; /* keeps the sum finite */
    h->counts[smlt_hist_bucket(v)] += n;
    h->count += n;
    h->sum += v * (double)n;
}

void smlt_hist_observe(struct smlt_hist *h, double v)
{
    smlt_hist_observe_n(h, v, 1);
}

void smlt_hist_head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void smlt_hist_sample(struct evbuffer *out, const char *name, const char *labels, double v)
{
    char num[32];
    if (isnan(v))
        snprintf(num, sizeof num, "NaN");
    else if (isinf(v))
        snprintf(num, sizeof num, "%sInf", v > 0 ? "+" : "-");
    else if (v == floor(v) && fabs(v) < 9007199254740992.0)
        snprintf(num, sizeof num, "%.0f", v);
    else
        snprintf(num, sizeof num, "%.9g", v);
    if (labels && labels[0])
        evbuffer_add_printf(out, "%s{%s} %s\n", name, labels, num);
    else
        evbuffer_add_printf(out, "%s %s\n", name, num);
}

void smlt_hist_write(struct evbuffer *out, const char *name, const char *labels,
                     const struct smlt_hist *h)
{
    const char *l = labels ? labels : "", *sep = l[0] ? "," : "";
    uint64_t cum = 0;
    for (uint32_t i = 0; i < SMLT_HIST_NLE; i++) {
        cum += h->counts[i];
        evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, l, sep,
                            smlt_hist_le[i], (unsigned long long)cum);
    }
    /* +Inf is the count itself (every observation is in some bucket). */
    evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, l, sep,
                        (unsigned long long)h->count);
    char series[256];
    snprintf(series, sizeof series, "%s_sum", name);
    smlt_hist_sample(out, series, l, h->sum);
    snprintf(series, sizeof series, "%s_count", name);
    smlt_hist_sample(out, series, l, (double)h->count);
}
