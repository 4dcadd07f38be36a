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
 * that closes its end must give an error, not end the process).
 *
 * This header is the data plane. Setting up and steering a job (smlt_job_setup(),
 * smlt_update_conf(), smlt_reshard(), ...) is in smlt_admin.h. */
#ifndef SMLT_H
#define SMLT_H

#include <stddef.h>
#include <stdint.h>

#include "smlt_enum.h"
#include "smlt_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SMLT_VERSION "0.1.0"

/* Sync modes, optimizers and parameter initializations: enum smlt_sync, smlt_optim and
 * smlt_init in smlt_enum.h (the wire's values, checked at compile time). */

struct smlt_client;

struct smlt_client_opts {
    const char *token;   /* the job token (required) */
    int admin;           /* present it as the admin token: needed to configure shards */
    uint32_t worker;     /* this worker's rank (0..workers-1) */
    int timeout_ms;      /* per call; 0 means 60000 */
    int retries;         /* reconnects per shard per call after a broken connection; 0 means 5,
                            negative means none */
    int no_compress;     /* never lz4-compress pushes (by default: when a sample says it pays) */
    /* TLS to the shards (all unset: plain TCP). Any of these turns it on. Each shard's
     * certificate must be signed by a CA of tls_ca (a PEM file) or tls_ca_pem (PEM text; a
     * function instance gets it in its invocation), or with only `tls` set by one of the
     * system's CAs, and must name the host or IP address the client dials. tls_cert and
     * tls_key (PEM files) are presented to shards that require client certificates (mutual
     * TLS). The files and text are read when the client is created. A TLS failure (a
     * certificate refused either way, TLS on one end only) is SMLT_ETLS, not retried, and
     * smlt_client_errmsg() / errmsg give OpenSSL's reason. */
    int tls;
    const char *tls_ca;
    const char *tls_ca_pem;
    const char *tls_cert;
    const char *tls_key;
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
    /* gradient noise scale statistics: B_simple = batch * noise_s / noise_g2, summed over the
     * shards (see ps/ps_shard.h) */
    double noise_g2, noise_s;
    uint64_t noise_steps;
    /* shard checkpoints: written, failed, skipped (the previous one still being written),
     * corrupt files found; the last one's step, copy seconds (what the data path paid), write
     * seconds (on the shard's writer thread) and bytes */
    uint64_t checkpoints_written, checkpoints_failed, checkpoints_skipped, checkpoints_corrupt;
    uint64_t checkpoint_last_step, checkpoint_bytes;
    double checkpoint_copy_seconds, checkpoint_write_seconds;
    /* replicated shards (smlt_set_backup()): role (SMLT_ROLE_*), the backup's address, pushes
     * forwarded to the backup, its acknowledgements, forwarded and not yet acknowledged (the
     * lag), backups lost (the primary went on alone), decisions that differed (must be 0) */
    int role;
    char backup_addr[64];
    uint64_t backup_forwarded, backup_acks, backup_lag, backup_lost, backup_diverged;
    /* connections closed because TLS failed (a refused handshake, TLS on one end only) */
    uint64_t tls_failures;
};

/* struct smlt_shard_stats.role */
#define SMLT_ROLE_SOLO 0     /* no backup */
#define SMLT_ROLE_PRIMARY 1  /* a backup in sync: every acknowledged push is on both */
#define SMLT_ROLE_BACKUP 2   /* applies its primary's pushes; refuses workers' pushes */
#define SMLT_ROLE_BUILDING 3 /* a primary building its backup */

/* Connects to a configured job through any of its shards: addrs is a comma-separated list of
 * "host:port" (one is enough; the partition map names the rest). Returns 0 and *out, or a
 * negative code (SMLT_ENOTCONF if no job is set up on the shard yet, SMLT_EAUTH for a wrong
 * token); *out is then NULL and errmsg (if non-NULL, errlen bytes) says why. */
SMLT_API int smlt_client_connect(struct smlt_client **out, const char *addrs,
                                 const struct smlt_client_opts *opts, char *errmsg, size_t errlen);

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

/* Reads one shard's counters. */
SMLT_API int smlt_shard_stats(struct smlt_client *c, uint32_t shard, struct smlt_shard_stats *out);

/* ==== Model files (worker/smlt_model.c) ======================================================
 *
 * A trained model on disk, as `smltctl model JOB -o FILE` downloads it: the tensors' names and
 * shapes, the job's name and the step it was saved at, and the float32 values. All integers
 * and floats are little-endian.
 *
 *   0  magic "SMLTMODL"            8  format version (u32, 1)     12  flags (u32, 0)
 *  16  tensor count (u32)         20  job name length (u32)
 *  24  total elements (u64)       32  step (u64)
 *  40  index length (u64): bytes of the index that follows the header
 *  48  data offset (u64): 64 + index length rounded up to a multiple of 64
 *  56  index CRC32 (u32)          60  header CRC32 (u32) of bytes 0..59
 *  64  index: the job name, then per tensor: name length (u32), name, ndims (u32),
 *      shape (ndims x u64), offset (u64, in elements)
 *      zero padding up to the data offset
 *      values: total elements x float32
 *      CRC32 (u32) of every byte before it
 *
 * CRCs are zlib's crc32. Tensors are back to back in order (each offset is the sum of the
 * lengths before it) and their lengths add up to the total. Readers check the header CRC and
 * every count against proto/smlt_limits.h (SMLT_MAX_TENSORS, SMLT_MAX_NAME, SMLT_MAX_DIMS,
 * SMLT_MAX_MODEL_ELEMS) and the file size against the sizes the header gives before
 * allocating anything, so a corrupt or truncated file is refused with a message. */

struct smlt_model;

/* Writes a model file: ntensors tensors (names, ndims, shapes; init fields ignored) laid back
 * to back over values (n floats, the sum of the tensors' lengths), the job's name (NULL: "";
 * at most SMLT_MAX_NAME bytes) and the step it was saved at. Writes PATH.tmp.PID.N, fsyncs it,
 * renames it to path (then fsyncs the directory), so a reader never sees a partial file.
 * Borrows everything for the call. Returns 0, SMLT_EINVAL (bad arguments) or SMLT_ESYS, with
 * a message in err (errlen bytes; may be NULL). */
SMLT_API int smlt_model_write(const char *path, const struct smlt_tensor_def *t,
                              size_t ntensors, const float *values, uint64_t n, const char *job,
                              uint64_t step, char *err, size_t errlen);

/* Reads and checks a model file. Returns 0 and *out (free it with smlt_model_free()), or
 * SMLT_ENOTFOUND (no such file), SMLT_EPROTO (not a model file), SMLT_EVERSION (a newer
 * format), SMLT_ECORRUPT (a CRC mismatch, truncated, inconsistent), SMLT_ETOOBIG (a count
 * beyond the limits), SMLT_ENOMEM or SMLT_ESYS, with a message in err; *out is then NULL. */
SMLT_API int smlt_model_read(const char *path, struct smlt_model **out, char *err,
                             size_t errlen);

SMLT_API uint32_t smlt_model_num_tensors(const struct smlt_model *m);
/* Describes tensor i (out->name is valid until smlt_model_free()). Returns 0 or SMLT_ERANGE. */
SMLT_API int smlt_model_tensor(const struct smlt_model *m, uint32_t i,
                               struct smlt_tensor_info *out);
/* The flat values (smlt_model_num_params() floats; borrowed until smlt_model_free()). */
SMLT_API const float *smlt_model_values(const struct smlt_model *m);
SMLT_API uint64_t smlt_model_num_params(const struct smlt_model *m);
/* The job's name ("" if none; borrowed) and the step the model was saved at. */
SMLT_API const char *smlt_model_job(const struct smlt_model *m);
SMLT_API uint64_t smlt_model_step(const struct smlt_model *m);
/* Returns the index of the tensor called name, or -1. */
SMLT_API int smlt_model_find(const struct smlt_model *m, const char *name);
/* Frees m. NULL is a no-op. */
SMLT_API void smlt_model_free(struct smlt_model *m);

/* Pulls the whole current model through c (smlt_pull, min_clock 0, no wait) and writes it to
 * path with the partition map's tensor names and shapes, recording `step`. The job name in
 * the file is empty (the client does not expose it; use smlt_model_write() to record one).
 * Returns 0 or a negative SMLT_E* code with a message in err. */
SMLT_API int smlt_model_save(struct smlt_client *c, const char *path, uint64_t step, char *err,
                             size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
