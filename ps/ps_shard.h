/* ps_shard.h: one shard's state and semantics, without the network.
 *
 * A shard holds the parameters of its key range [lo, hi) of the partition map, the optimizer
 * state for them, and the aggregation of pushed gradients under the job's sync mode:
 *   BSP  pushes of step s (s == version) from ranks 0..workers-1 are summed; when `workers` of
 *        them are in, their average is applied once, version and clock advance to s+1.
 *   SSP  every push is applied as it comes; a rank may push step s only while
 *        s <= clock + staleness, where clock is the slowest rank's count of pushes.
 *   ASP  every push is applied as it comes, with no bound.
 * Exactly once: each (rank, step) is counted at most once. A retried push is recognised from
 * the rank's last counted step and acknowledged as a duplicate without being applied again.
 *
 * Memory: every buffer of range size (parameters, gradients) comes from one pool of
 * pre-faulted buffers, allocated once and reused. Parameters are double-buffered: an update
 * reads the current buffer and writes a free one, then the two swap, so pulls are served from
 * memory no update is writing (a pull sends its bytes by reference and holds the buffer until
 * they are written). Heavy math (initialization, summing, optimizer steps) runs on the shard's
 * apply thread; the event loop only hands jobs over and takes the results back.
 *
 * Threading: every function here must be called from the event loop thread (or, with a NULL
 * event base, the only thread: jobs then run inline, which the unit tests use). */
#ifndef PS_SHARD_H
#define PS_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "part_map.h"
#include "ps_optim.h"
#include "smlt_enum.h"
#include "smlt_hist.h"

struct ps_shard_conf {
    enum smlt_sync mode;
    uint32_t workers;    /* BSP: pushes per step; SSP: ranks whose clocks bound the others */
    uint32_t staleness;  /* SSP bound */
    struct ps_optim_conf optim;
    int await_import;    /* resharding: not ready until ps_shard_import(..., final = 1) */
    /* Checkpoints (ps_ckpt.h): when an update brings the version to a multiple of ckpt_every
     * (BSP: every shard of the job checkpoints the same step), the range, its optimizer state
     * and the exactly-once tables are copied on the apply thread (in order with updates) and
     * written to ckpt_dir by the shard's writer thread; pushes and pulls never wait for the
     * write. A checkpoint due while the previous one is still being written is skipped and
     * counted. ckpt_every 0 or ckpt_dir "": none. ckpt_keep 0: PS_CKPT_DEFAULT_KEEP. */
    char ckpt_dir[512];
    uint64_t ckpt_every;
    uint32_t ckpt_keep;
};

/* A range's state as it moves between shards when the shard count changes. */
struct ps_shard_export {
    uint64_t version, clock, updates;
    uint32_t nstate;              /* optimizer state arrays per parameter */
    const uint64_t *last_counted; /* per rank (UINT64_MAX: none), nranks entries */
    const uint64_t *last_applied;
    uint32_t nranks;
    const float *params;          /* the whole range: hi - lo floats */
    const float *state;           /* nstate arrays of hi - lo floats, back to back */
};

struct ps_shard_stats {
    uint64_t pushes_received, pushes_counted, pushes_duplicate, pushes_rejected;
    uint64_t updates_applied;
    double apply_seconds;
    struct smlt_hist apply_hist; /* each update's optimizer step (its share of apply_seconds) */
    uint32_t bufs_allocated;
    /* Gradient noise scale (BSP): sums over sampled steps (every PS_NOISE_EVERY-th version,
     * the same steps on every shard) with W >= 2 pushes of unbiased
     * estimates, over this shard's range, of |G|^2 (noise_g2) and of tr(Sigma) / b (noise_s),
     * from the mean |g_i|^2 of the workers' gradients (batch b each) and |mean g_i|^2 (batch
     * W b) (McCandlish et al. 2018, appendix A.1). Squared norms add over disjoint ranges: the
     * coordinator sums the shards' sums, and b * noise_s / noise_g2 is B_simple in samples. */
    double noise_g2, noise_s;
    uint64_t noise_steps;
    /* checkpoints: written, failed (write error), skipped (the previous one still being
     * written), corrupt files found by restores and listings; the last one written: its step,
     * the seconds its copy took (on the apply thread: what the data path paid) and its write
     * (on the writer thread), its size in bytes */
    uint64_t ckpt_written, ckpt_failed, ckpt_skipped, ckpt_corrupt;
    uint64_t ckpt_last_step, ckpt_bytes;
    double ckpt_copy_seconds, ckpt_write_seconds;
    double ckpt_write_seconds_total; /* every write so far */
};

struct ps_shard;

struct ps_shard_cbs {
    /* The version or clock advanced (an update was applied). Optional. */
    void (*on_advance)(struct ps_shard *s, void *arg);
    /* A range-sized buffer became free: pushes that were told to wait may retry. Optional. */
    void (*on_buffer_free)(struct ps_shard *s, void *arg);
    /* Configuration finished (parameters initialized): err 0 or a negative code. Optional. */
    void (*on_configured)(struct ps_shard *s, int err, void *arg);
};

/* Returns a new, unconfigured shard with id `id`. base: the event loop whose thread calls in;
 * the shard starts its apply thread and registers a wakeup event on base. base NULL: no thread,
 * jobs run inline. NULL on failure. */
struct ps_shard *ps_shard_new(uint32_t id, struct event_base *base, const struct ps_shard_cbs *cbs,
                              void *arg);

/* Stops the apply thread (after its current job) and frees everything. Buffers still referenced
 * by pulls in flight must have been released (free the connections first). */
void ps_shard_free(struct ps_shard *s);

/* Configures the shard for a job: takes map (owned by the shard now, also on failure), serves
 * range map->shards[id]. Parameters are initialized from the map's per-tensor init on the apply
 * thread; until on_configured fires, ps_shard_ready() is 0 and requests get SMLT_EAGAIN.
 * Returns 0, or SMLT_EINVAL / SMLT_EBUSY (jobs in flight) with a message in err. */
int ps_shard_configure(struct ps_shard *s, struct part_map *map, const struct ps_shard_conf *conf,
                       char *err, size_t errlen);

/* Gives the shard a new id (its position in the map it is configured with next: resharding
 * moves processes between positions). Only between jobs or before ps_shard_configure(). */
void ps_shard_set_id(struct ps_shard *s, uint32_t id);

/* 1 when configured and initialized. */
int ps_shard_ready(const struct ps_shard *s);

/* Changes settings while training; NULL pointers leave a setting as it is. A lower worker
 * count completes a BSP step that already has enough pushes. Returns 0 or SMLT_EINVAL. */
int ps_shard_update(struct ps_shard *s, const float *lr, const float *weight_decay,
                    const uint32_t *workers, const uint32_t *staleness, char *err, size_t errlen);

/* Checkpoints from now on at multiples of every (0: none). SMLT_EINVAL when the shard was
 * configured without a checkpoint directory and interval (its copy buffers were not made).
 * Loop thread. */
int ps_shard_set_checkpoint_every(struct ps_shard *s, uint64_t every, char *err, size_t errlen);

/* Checks a push before its payload is read. Returns 0 (receive it), 1 (a duplicate: drop it and
 * acknowledge), or SMLT_ENOTCONF, SMLT_EAGAIN, SMLT_ESTALEMAP, SMLT_ERANGE (must be the whole
 * range), SMLT_EINVAL (rank out of range), SMLT_ESTEP (with a message in err). */
int ps_shard_push_check(struct ps_shard *s, uint64_t map_version, uint32_t worker, uint64_t step,
                        uint64_t lo, uint64_t hi, char *err, size_t errlen);

/* Returns a free range-sized buffer to receive a push into, or NULL when the pool is exhausted
 * (on_buffer_free fires when one frees; more are allocated in the background up to the cap). */
float *ps_shard_buf_get(struct ps_shard *s);

/* Gives back a buffer from ps_shard_buf_get() that was not committed (connection died). */
void ps_shard_buf_put(struct ps_shard *s, float *buf);

/* Counts a fully received push; takes buf. Re-checks exactly-once (another connection may
 * have counted the same (worker, step) meanwhile). Returns 0 (counted), 1 (duplicate, dropped)
 * or a negative code as ps_shard_push_check() (buf is then returned to the pool). */
int ps_shard_push_commit(struct ps_shard *s, uint32_t worker, uint64_t step, float *buf,
                         char *err, size_t errlen);

/* Counts a push that ps_shard_push_check() found to be a duplicate and that was dropped
 * unread (for the exactly-once counters). */
void ps_shard_count_duplicate(struct ps_shard *s);

/* Checks a pull of [lo, hi). Returns 0, SMLT_ENOTCONF, SMLT_EAGAIN, SMLT_ESTALEMAP, SMLT_ERANGE. */
int ps_shard_pull_check(struct ps_shard *s, uint64_t map_version, uint64_t lo, uint64_t hi,
                        char *err, size_t errlen);

/* Returns the current parameters (the range's first element) and takes a reference that keeps
 * them unchanged until ps_shard_params_unref(s, p). Stores version and clock. */
const float *ps_shard_params_ref(struct ps_shard *s, uint64_t *version, uint64_t *clock);
void ps_shard_params_unref(struct ps_shard *s, const float *p);

/* Writes [lo, hi) of the parameters from vals (borrowed for the call unless owned_buf: then vals
 * is a buffer from ps_shard_buf_get() covering the whole range, which is taken and installed
 * without a copy). reset_state zeroes the optimizer state of the range. The write is applied
 * in order with updates; returns 0 or a negative code (as ps_shard_pull_check()). */
int ps_shard_set_params(struct ps_shard *s, uint64_t map_version, uint64_t lo, uint64_t hi,
                        float *vals, int owned_buf, int reset_state, uint64_t *seq, char *err,
                        size_t errlen);

/* Live resharding. ps_shard_freeze() stops accepting pushes for steps >= clock (BSP; clock 0
 * means "the step after the one now open", which it returns) or every push (SSP, ASP); such
 * pushes get SMLT_EAGAIN. A later call may move the BSP freeze point forward, never back;
 * UINT64_MAX lifts the freeze. Returns the freeze clock in use. */
uint64_t ps_shard_freeze(struct ps_shard *s, uint64_t clock);

/* Like ps_shard_freeze(), for a job that is stopping: pushes from the freeze clock on are
 * refused with SMLT_ECANCELED (the workers end there) instead of SMLT_EAGAIN. */
uint64_t ps_shard_freeze_stop(struct ps_shard *s, uint64_t clock);

/* 1 when frozen: every step before the freeze clock applied (BSP), nothing in flight. */
int ps_shard_frozen(const struct ps_shard *s);

/* Fills e with the shard's whole range, borrowed until the next call that changes the shard.
 * Returns 0, or SMLT_EAGAIN while updates are in flight, SMLT_ENOTCONF. */
int ps_shard_export(struct ps_shard *s, struct ps_shard_export *e);

/* Writes [lo, hi) of a range exported elsewhere into this shard (configured with
 * await_import): data holds (1 + nstate) * (hi - lo) floats (parameters, then each state array);
 * the counters and exactly-once tables are merged (versions and clocks must agree). final makes
 * the shard ready. Returns 0 or SMLT_EINVAL / SMLT_ERANGE / SMLT_ESTALEMAP with a message. */
int ps_shard_import(struct ps_shard *s, uint64_t map_version, uint64_t lo, uint64_t hi,
                    const float *data, const struct ps_shard_export *meta, int final, char *err,
                    size_t errlen);

struct ps_ckpt;

/* Installs a checkpoint of this shard's range (borrowed): parameters, optimizer state and step
 * count, version and clock, and the exactly-once tables (replaced, not merged: a push of a step
 * the checkpoint had counted is a duplicate again, one after it is accepted again). A step
 * partly pushed is dropped. The checkpoint must be of this shard id and range, the same job
 * name and model, and the same optimizer. Returns 0, SMLT_EAGAIN (updates in flight or no free
 * buffer: again shortly), SMLT_ENOTCONF, SMLT_EINVAL / SMLT_ERANGE with a message in err. */
int ps_shard_restore(struct ps_shard *s, const struct ps_ckpt *c, char *err, size_t errlen);

/* Counts corrupt checkpoint files found (for the stats). */
void ps_shard_count_corrupt(struct ps_shard *s, uint32_t n);

/* Blocks until a checkpoint being written has been written. For tests and shutdown. */
void ps_shard_ckpt_wait(struct ps_shard *s);

/* Parameter writes (updates and ps_shard_set_params()) are numbered in submission order:
 * ps_shard_set_params() returns 0 and the number of its write in *seq if seq is non-NULL;
 * ps_shard_seq_done() is the number of the last write whose result is visible to pulls. */
uint64_t ps_shard_seq_done(const struct ps_shard *s);

/* Replication and failover: installs map (taken, also on failure) in place of the current one
 * without touching parameters, state or tables. The map must be of the same model, give this
 * shard id the same range, and not be older (an equal version is a no-op). Pushes and pulls
 * naming the old version get SMLT_ESTALEMAP with the new map from then on. Returns 0,
 * SMLT_ENOTCONF / SMLT_EAGAIN (not ready), SMLT_ESTALEMAP (older), SMLT_EINVAL. */
int ps_shard_set_map(struct ps_shard *s, struct part_map *map, char *err, size_t errlen);

/* Accessors. map: NULL before configure. */
const struct part_map *ps_shard_map(const struct ps_shard *s);
uint32_t ps_shard_id(const struct ps_shard *s);
uint64_t ps_shard_version(const struct ps_shard *s);
uint64_t ps_shard_clock(const struct ps_shard *s);
uint64_t ps_shard_lo(const struct ps_shard *s);
uint64_t ps_shard_hi(const struct ps_shard *s);
const struct ps_shard_conf *ps_shard_conf(const struct ps_shard *s);
void ps_shard_stats(const struct ps_shard *s, struct ps_shard_stats *st);

/* Blocks until every job handed to the apply thread has finished and its completion ran
 * (runs the completions itself). For tests and shutdown. */
void ps_shard_drain(struct ps_shard *s);

#endif
