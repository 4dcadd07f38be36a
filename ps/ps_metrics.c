/* ps_metrics.c: see ps_metrics.h. */
#include "ps_metrics.h"

/* One metric family with one sample and no labels. */
struct ps_family {
    const char *name, *type, *help;
    double v;
};

static void render_families(struct evbuffer *out, const struct ps_family *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        smlt_hist_head(out, f[i].name, f[i].type, f[i].help);
        smlt_hist_sample(out, f[i].name, NULL, f[i].v);
    }
}

/* Connections, traffic and the data plane. */
static void render_traffic(struct evbuffer *out, const struct ps_metrics *m)
{
    const struct ps_family f[] = {
        {"smlt_ps_shard_id", "gauge", "This shard's id in the partition map.", m->shard},
        {"smlt_ps_configured", "gauge", "1 when a job is configured on the shard.",
         m->configured},
        {"smlt_ps_connections_open", "gauge", "Connections open now.", m->conns_open},
        {"smlt_ps_connections_accepted_total", "counter", "Connections accepted.",
         (double)m->conns_accepted},
        {"smlt_ps_connections_refused_total", "counter",
         "Connections refused at the connection limit.", (double)m->conns_refused},
        {"smlt_ps_auth_failures_total", "counter",
         "Handshakes refused (wrong token) or not made in time.", (double)m->auth_failures},
        {"smlt_ps_frames_bad_total", "counter", "Malformed frames (each closed its connection).",
         (double)m->frames_bad},
        {"smlt_ps_tls_failures_total", "counter",
         "Connections closed because TLS failed: refused handshakes (plaintext clients on a "
         "TLS port, certificates the CA does not sign) and TLS clients on a plaintext port.",
         (double)m->tls_failures},
        {"smlt_ps_received_bytes_total", "counter", "Bytes received on every connection.",
         (double)m->bytes_in},
        {"smlt_ps_sent_bytes_total", "counter", "Bytes sent on every connection.",
         (double)m->bytes_out},
        {"smlt_ps_pushes_received_total", "counter", "Gradient pushes received.",
         (double)m->pushes_received},
        {"smlt_ps_pushes_total", "counter",
         "Gradient pushes counted into an update (each rank and step once).",
         (double)m->pushes_counted},
        {"smlt_ps_pushes_duplicate_total", "counter",
         "Retried pushes recognised as duplicates and not applied again.",
         (double)m->pushes_duplicate},
        {"smlt_ps_pushes_rejected_total", "counter",
         "Pushes refused (wrong step, stale map, not ready).", (double)m->pushes_rejected},
        {"smlt_ps_pulls_total", "counter", "Pulls answered with parameters.",
         (double)m->pulls_served},
        {"smlt_ps_pulls_waiting", "gauge", "Pulls waiting for the clock they asked for.",
         (double)m->pulls_waiting},
        {"smlt_ps_pulls_timed_out_total", "counter",
         "Pulls whose clock was not reached in time.", (double)m->pulls_timed_out},
        {"smlt_ps_stale_map_errors_total", "counter",
         "Requests answered with a newer partition map.", (double)m->stale_map_errors},
        {"smlt_ps_updates_total", "counter", "Updates applied to the parameters.",
         (double)m->updates_applied},
        {"smlt_ps_version", "gauge", "Updates applied in the current job (the model version).",
         (double)m->version},
        {"smlt_ps_clock", "gauge", "The step every rank has pushed (BSP: the version).",
         (double)m->clock},
        {"smlt_ps_map_version", "gauge", "Version of the partition map the shard serves.",
         (double)m->map_version},
        {"smlt_ps_workers", "gauge", "Workers the shard expects per step.", m->workers},
    };
    render_families(out, f, sizeof f / sizeof f[0]);
}

/* Resharding, checkpoints and replication. */
static void render_state(struct evbuffer *out, const struct ps_metrics *m)
{
    const struct ps_family f[] = {
        {"smlt_ps_reshard_exports_total", "counter", "Ranges exported to a new shard layout.",
         (double)m->reshard_exports},
        {"smlt_ps_reshard_imports_total", "counter", "Range imports taken from another shard.",
         (double)m->reshard_imports},
        {"smlt_ps_reshard_retires_total", "counter", "Times the shard was retired by a reshard.",
         (double)m->reshard_retires},
        {"smlt_ps_checkpoints_written_total", "counter", "Checkpoints written.",
         (double)m->ckpt_written},
        {"smlt_ps_checkpoints_failed_total", "counter", "Checkpoints that failed to be written.",
         (double)m->ckpt_failed},
        {"smlt_ps_checkpoints_skipped_total", "counter",
         "Checkpoints skipped because the previous one was still being written.",
         (double)m->ckpt_skipped},
        {"smlt_ps_checkpoints_corrupt_total", "counter", "Corrupt checkpoint files found.",
         (double)m->ckpt_corrupt},
        {"smlt_ps_checkpoint_write_seconds_total", "counter",
         "Time the writer thread spent writing checkpoints.", m->ckpt_write_seconds},
        {"smlt_ps_checkpoint_last_step", "gauge", "Step of the last checkpoint written.",
         (double)m->ckpt_last_step},
        {"smlt_ps_backup_forwarded_total", "counter", "Pushes a primary forwarded to its backup.",
         (double)m->backup_forwarded},
        {"smlt_ps_backup_acked_total", "counter", "Forwarded pushes the backup acknowledged.",
         (double)m->backup_acks},
        {"smlt_ps_backup_lag", "gauge", "Forwarded pushes not yet acknowledged by the backup.",
         (double)m->backup_lag},
        {"smlt_ps_backup_lost_total", "counter", "Times a primary lost its backup.",
         (double)m->backup_lost},
        {"smlt_ps_backup_diverged_total", "counter",
         "Forwarded pushes the primary counted differently from its backup (stays 0).",
         (double)m->backup_diverged},
        {"smlt_ps_http_bad_requests_total", "counter",
         "Requests to this endpoint refused (a path other than /metrics, or a method other than "
         "GET).",
         (double)m->http_bad},
    };
    render_families(out, f, sizeof f / sizeof f[0]);
}

void ps_metrics_render(struct evbuffer *out, const struct ps_metrics *m)
{
    render_traffic(out, m);
    smlt_hist_head(out, "smlt_ps_apply_seconds", "histogram",
                   "Time of each update's optimizer step on the shard.");
    smlt_hist_write(out, "smlt_ps_apply_seconds", NULL, &m->apply);
    smlt_hist_head(out, "smlt_ps_bsp_wait_seconds", "histogram",
                   "Time a pull waited for the step barrier (BSP) or staleness bound (SSP); "
                   "0 when it was already passed.");
    smlt_hist_write(out, "smlt_ps_bsp_wait_seconds", NULL, &m->bsp_wait);
    render_state(out, m);
}
