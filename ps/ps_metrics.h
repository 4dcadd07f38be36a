/* ps_metrics.h: what smlt-ps shows Prometheus: a snapshot of one shard's counters, and its
 * rendering as text exposition format 0.0.4 (every family `smlt_ps_*`, with # HELP and # TYPE).
 *
 * The snapshot is taken on the shard's loop thread (ps_http.c, from the server and
 * ps_shard_stats()); rendering is a pure function of it, so the unit suite checks the text.
 * The families carry no labels: a scrape target is one shard, and its identity (job, shard,
 * role) comes from the target's labels (the coordinator's /api/prometheus/targets), which is
 * what Prometheus recommends; a shard label exposed here would be renamed exported_shard. */
#ifndef PS_METRICS_H
#define PS_METRICS_H

#include <stdint.h>

#include <event2/buffer.h>

#include "smlt_hist.h"

struct ps_metrics {
    uint32_t shard;                 /* its id in the partition map (a gauge) */
    int configured;                 /* a job is configured */
    /* connections and traffic (bytes of frames, on the wire) */
    uint32_t conns_open;
    uint64_t conns_accepted, conns_refused, auth_failures, frames_bad, tls_failures;
    uint64_t bytes_in, bytes_out;
    /* the data plane */
    uint64_t pushes_received, pushes_counted, pushes_duplicate, pushes_rejected;
    uint64_t pulls_served, pulls_waiting, pulls_timed_out, stale_map_errors;
    uint64_t updates_applied, version, clock, map_version;
    uint32_t workers;
    struct smlt_hist apply;         /* each update's optimizer step */
    struct smlt_hist bsp_wait;      /* BSP / SSP: each pull's wait for the clock it asked for */
    /* resharding: exports served, imports taken, retirements */
    uint64_t reshard_exports, reshard_imports, reshard_retires;
    /* checkpoints */
    uint64_t ckpt_written, ckpt_failed, ckpt_skipped, ckpt_corrupt, ckpt_last_step;
    double ckpt_write_seconds;      /* all writes so far */
    /* replication (a primary's view of its backup) */
    uint64_t backup_forwarded, backup_acks, backup_lag, backup_lost, backup_diverged;
    /* this endpoint: requests refused (wrong path or method) */
    uint64_t http_bad;
};

/* Appends m as Prometheus text to out. Never fails short of memory (evbuffer's own). */
void ps_metrics_render(struct evbuffer *out, const struct ps_metrics *m);

#endif
