/* smlt.h: libsmlt, the SMLT-C client library.
 *
 * A worker (ours, or a binding for another framework) links libsmlt to train through a sharded
 * parameter server: it connects to the shards named by the job's partition map, pushes a whole
 * gradient and pulls a whole model with every shard in flight at once, refreshes the map when
 * a shard says it is stale, and reconnects and resends when a connection breaks (a resent push
 * is never applied twice: shards count each (rank, step) once).
 *
 * The model is a flat array of float32 (every tensor back to back, in the job's tensor order);
 * smlt_client_num_params() gives its length. Every call blocks until done or timed out.
 * Errors: 0 or a negative SMLT_E* code (smlt_strerror()); smlt_client_errmsg() tells the
 * details of the last failure. A client is not thread-safe: use one per thread.
 * Creating a client sets SIGPIPE to be ignored if it still has the default action (a peer
 * that closes its end must give an error, not end the process). */
#ifndef SMLT_H
#define SMLT_H

#include <stddef.h>
#include <stdint.h>

#include "smlt_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SMLT_VERSION "0.1.0"

/* Sync modes, optimizers and parameter initializations (values match smlt.proto). */
enum smlt_sync { SMLT_SYNC_BSP = 0, SMLT_SYNC_SSP = 1, SMLT_SYNC_ASP = 2 };
enum smlt_optim { SMLT_OPT_SGD = 0, SMLT_OPT_MOMENTUM = 1, SMLT_OPT_ADAM = 2, SMLT_OPT_ADAGRAD = 3 };
enum smlt_init { SMLT_INIT_ZERO = 0, SMLT_INIT_UNIFORM = 1, SMLT_INIT_NORMAL = 2, SMLT_INIT_CONST = 3 };

struct smlt_client;

struct smlt_client_opts {
    const char *token;   /* the job token (required) */
    int admin;           /* present it as the admin token: needed to configure shards */
    uint32_t worker;     /* this worker's rank (0..workers-1) */
    int timeout_ms;      /* per call; 0 means 60000 */
    int retries;         /* reconnects per shard per call after a broken connection; 0 means 5,
                            negative means none */
    int no_compress;     /* never lz4-compress pushes (by default: when a sample says it pays) */
};

/* A tensor of the model, for smlt_job_setup() and smlt_client_tensor(). */
struct smlt_tensor_def {
    const char *name;
    uint32_t ndims;
    const uint64_t *shape;
    int init;          /* enum smlt_init */
    float init_scale;  /* uniform: the bound; normal: the standard deviation; const: the value */
};

struct smlt_tensor_info {
    const char *name;  /* valid until the map changes or the client is closed */
    uint32_t ndims;
    uint64_t shape[8];
    uint64_t offset, length;
};

/* How the shards aggregate and apply updates. Zero-initialize, then set what you need;
 * smlt_job_conf_default() gives the defaults spelled out. */
struct smlt_job_conf {
    const char *job;      /* a name for logs */
    int sync;             /* enum smlt_sync */
    uint32_t workers;     /* pushes per BSP step / ranks */
    uint32_t staleness;   /* SSP bound */
    int optim;            /* enum smlt_optim */
    float lr, momentum;
    int nesterov;
    float beta1, beta2, eps;
    float weight_decay;
    int decoupled;
    uint64_t seed;        /* for random initializations */
    uint64_t map_version; /* version of the partition map to publish; 0 means 1. Reconfiguring a
                             running job with a higher version makes clients refresh their map */
};

struct smlt_shard_stats {
    uint32_t shard;
    uint64_t map_version, version, clock, lo, hi;
    uint32_t workers;
    uint64_t pushes_received, pushes_counted, pushes_duplicate, pushes_rejected;
    uint64_t updates_applied, pulls_served, pulls_waiting, pulls_timed_out;
    uint64_t bytes_in, bytes_out, frames_bad, auth_failures, stale_map_errors;
    uint32_t connections;
    double apply_seconds;
    float lr;
};

SMLT_API void smlt_job_conf_default(struct smlt_job_conf *conf);

/* Connects to a configured job through any of its shards: addrs is a comma-separated list of
 * "host:port" (one is enough; the partition map names the rest). Returns 0 and *out, or a
 * negative code (SMLT_ENOTCONF if no job is set up on the shard yet, SMLT_EAUTH for a wrong
 * token); *out is then NULL and errmsg (if non-NULL, errlen bytes) says why. */
SMLT_API int smlt_client_connect(struct smlt_client **out, const char *addrs,
                                 const struct smlt_client_opts *opts, char *errmsg, size_t errlen);

/* Sets up a job on every shard: addrs lists all shard addresses, in shard order. Builds the
 * partition map (tensors back to back, balanced contiguous ranges), configures each shard
 * (which initializes its parameters) and returns a connected admin client. */
SMLT_API int smlt_job_setup(struct smlt_client **out, const char *addrs,
                            const struct smlt_client_opts *opts, const struct smlt_tensor_def *t,
                            size_t ntensors, const struct smlt_job_conf *conf, char *errmsg,
                            size_t errlen);

/* Closes every connection and frees the client. NULL is fine. */
SMLT_API void smlt_client_close(struct smlt_client *c);

/* The details of the last failure of a call on c ("shard 1 (127.0.0.1:4100): ..."). */
SMLT_API const char *smlt_client_errmsg(const struct smlt_client *c);

/* The model's layout from the current map. */
SMLT_API uint64_t smlt_client_num_params(const struct smlt_client *c);
SMLT_API uint32_t smlt_client_num_tensors(const struct smlt_client *c);
SMLT_API int smlt_client_tensor(const struct smlt_client *c, uint32_t i,
                                struct smlt_tensor_info *out);
SMLT_API uint32_t smlt_client_num_shards(const struct smlt_client *c);
SMLT_API uint64_t smlt_client_map_version(const struct smlt_client *c);

/* Pushes a whole gradient (smlt_client_num_params() floats, borrowed for the call) for `step`
 * to every shard at once. Under BSP, step is the model clock the gradient was computed on.
 * Returns 0 when every shard has counted it (or had counted it before: a retry). */
SMLT_API int smlt_push(struct smlt_client *c, uint64_t step, const float *grad);

/* Pulls the whole model into model (smlt_client_num_params() floats) from every shard at once,
 * waiting up to wait_ms for each shard's clock to reach min_clock (0: no wait). Stores the
 * lowest clock seen in *clock if non-NULL. SMLT_ETIMEDOUT if the clock was not reached. */
SMLT_API int smlt_pull(struct smlt_client *c, uint64_t min_clock, int wait_ms, float *model,
                       uint64_t *clock);

/* Pulls elements [lo, hi) of the model into out (hi - lo floats), from the shards holding them. */
SMLT_API int smlt_pull_range(struct smlt_client *c, uint64_t lo, uint64_t hi, uint64_t min_clock,
                             int wait_ms, float *out, uint64_t *clock);

/* One synchronous-training step's exchange: pushes grad for step and pulls the model of clock
 * step + 1 (waiting for it), with the pushes and pulls of all shards in flight together.
 * This is a BSP worker's whole communication per step. */
SMLT_API int smlt_sync(struct smlt_client *c, uint64_t step, const float *grad, float *model,
                       uint64_t *clock);

/* Administration (admin token). Writes the whole model's values (optimizer state reset). */
SMLT_API int smlt_set_params(struct smlt_client *c, const float *model);

/* Changes the learning rate, weight decay and/or the worker count on every shard; NULL leaves
 * a setting unchanged. */
SMLT_API int smlt_update_conf(struct smlt_client *c, const float *lr, const float *weight_decay,
                              const uint32_t *workers);

/* Reads one shard's counters. */
SMLT_API int smlt_shard_stats(struct smlt_client *c, uint32_t shard, struct smlt_shard_stats *out);

/* Asks every shard process to exit. */
SMLT_API int smlt_shutdown_shards(struct smlt_client *c);

#ifdef __cplusplus
}
#endif
#endif
