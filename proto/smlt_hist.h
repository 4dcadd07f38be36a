/* smlt_hist.h: a duration histogram for the Prometheus text exposition (format 0.0.4), shared
 * by smlt-ps (ps_metrics.c) and smlt-coordinator (coord_view.c).
 *
 * Every histogram has the same fixed buckets, 1 us to 60 s in 1-2.5-5 steps (smlt_hist_le),
 * so a histogram is plain data: an all-zero struct is an empty histogram, it is copied with
 * `=`, and two are merged by adding. Observing is a short loop and a few additions: cheap
 * enough for the data path, and it never allocates. Not thread-safe: each histogram belongs to
 * one thread (or to whoever holds the lock that guards it). */
#ifndef SMLT_HIST_H
#define SMLT_HIST_H

#include <stdint.h>

#include <event2/buffer.h>

/* The buckets' upper bounds (le), in seconds, and their count; one more bucket, +Inf, follows. */
#define SMLT_HIST_NLE 24
extern const double smlt_hist_le[SMLT_HIST_NLE];

struct smlt_hist {
    uint64_t counts[SMLT_HIST_NLE + 1]; /* per bucket, not cumulative; the last is +Inf */
    uint64_t count;
    double sum;
};

/* The index of the bucket v falls in: the first whose bound is >= v (Prometheus' le is
 * inclusive), SMLT_HIST_NLE for +Inf. NaN and negative values count as 0. */
uint32_t smlt_hist_bucket(double v);

/* Counts one observation of v seconds. */
void smlt_hist_observe(struct smlt_hist *h, double v);

/* Counts n observations of v seconds each (the n steps of an interval, at its mean). */
void smlt_hist_observe_n(struct smlt_hist *h, double v, uint64_t n);

/* Writes a metric family's header: "# HELP name help" and "# TYPE name type" (type "counter",
 * "gauge" or "histogram"). help must not hold a newline or a backslash. */
void smlt_hist_head(struct evbuffer *out, const char *name, const char *type, const char *help);

/* Writes one sample line, "name{labels} value" (labels as below). An integer value below 2^53
 * prints in full, any other with 9 significant digits; NaN and infinities as Prometheus spells
 * them. */
void smlt_hist_sample(struct evbuffer *out, const char *name, const char *labels, double v);

/* Writes h's series: name_bucket (cumulative, one per bound and +Inf), name_sum, name_count.
 * labels: NULL or "" for none, else `key="value"` pairs joined by commas, without braces
 * (the caller keeps them few and bounded). The header goes before, once per family. */
void smlt_hist_write(struct evbuffer *out, const char *name, const char *labels,
                     const struct smlt_hist *h);

#endif
