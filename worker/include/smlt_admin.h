/* smlt_admin.h: libsmlt's job administration: setting up a job on its shards and changing it.
 *
 * The data plane (connecting, pushing, pulling, the layout, shard counters, model files) is in
 * smlt.h, which every worker needs; these calls are for whoever owns the job (the coordinator,
 * smlt-worker --setup, tools and tests). They configure or steer the shards, so the shards
 * refuse them unless the client presented the admin token (struct smlt_client_opts.admin) when
 * the shards have one. Errors, threading and blocking are as in smlt.h. */
#ifndef SMLT_ADMIN_H
#define SMLT_ADMIN_H

#include "smlt.h"

#ifdef __cplusplus
extern "C" {
#endif

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
    /* Shard checkpoints: each shard writes checkpoint_dir/shard-<id>/ckpt-<step>.smltck when
     * its version reaches a multiple of checkpoint_every (0: no checkpoints; under BSP every
     * shard checkpoints the same steps) and keeps the newest checkpoint_keep (0: 3). NULL dir:
     * the shard's --checkpoint-dir. */
    const char *checkpoint_dir;
    uint64_t checkpoint_every;
    uint32_t checkpoint_keep;
};

SMLT_API void smlt_job_conf_default(struct smlt_job_conf *conf);

/* Sets up a job on every shard: addrs lists all shard addresses, in shard order. Builds the
 * partition map (tensors back to back, balanced contiguous ranges), configures each shard
 * (which initializes its parameters) and returns a connected admin client. */
SMLT_API int smlt_job_setup(struct smlt_client **out, const char *addrs,
                            const struct smlt_client_opts *opts, const struct smlt_tensor_def *t,
                            size_t ntensors, const struct smlt_job_conf *conf, char *errmsg,
                            size_t errlen);

/* Writes the whole model's values (optimizer state reset). */
SMLT_API int smlt_set_params(struct smlt_client *c, const float *model);

/* Changes the learning rate, weight decay and/or the worker count on every shard; NULL leaves
 * a setting unchanged. */
SMLT_API int smlt_update_conf(struct smlt_client *c, const float *lr, const float *weight_decay,
                              const uint32_t *workers);

/* Asks every shard process to exit. */
SMLT_API int smlt_shutdown_shards(struct smlt_client *c);

/* Live resharding (admin): moves the job to the shards at new_addrs (comma-separated, in shard
 * order; addresses of current shards may reappear: those shards are kept and reconfigured) at a
 * step boundary, with no parameter, optimizer state or exactly-once record lost. Every shard is
 * frozen at the same step (two rounds: each says where it can freeze, then all freeze at the
 * latest), every range is exported with its optimizer state, the new map (version + 1, ranges
 * rebalanced) is configured on the new shards, the ranges are imported, and shards that are
 * not in the new map are retired (they tell clients the new map until they are stopped).
 * Workers see "try again" while frozen and "stale map" afterwards, and carry on. On return
 * the client uses the new map. *clock (if non-NULL) gets the step the move happened at. */
SMLT_API int smlt_reshard(struct smlt_client *c, const char *new_addrs, uint64_t *clock,
                          char *err, size_t errlen);

/* Stops the job's training at one step for every worker (admin): the shards agree on the first
 * step they will not accept (the step after any that is partly pushed), then refuse pushes
 * from it with SMLT_ECANCELED, so every worker ends at that same step (under BSP a worker
 * stopping alone would leave the others waiting). *step gets that step. Returns at once. */
SMLT_API int smlt_stop_at(struct smlt_client *c, uint64_t *step);

/* A barrier at a step boundary (admin): like smlt_stop_at(), but the step is the first one
 * at or after where the shards are now that lies on the grid base + k * align (an epoch
 * boundary: base the phase's first step, align its steps per epoch). Every worker ends its slice
 * exactly there; smlt_unfreeze() lets training go on. *step gets the step. SMLT_EAGAIN if a
 * shard had already passed it (call again). */
SMLT_API int smlt_freeze_at_boundary(struct smlt_client *c, uint64_t base, uint64_t align,
                                     uint64_t *step);

/* Lifts a freeze set by smlt_stop_at() or smlt_freeze_at_boundary(). */
SMLT_API int smlt_unfreeze(struct smlt_client *c);

/* Reads the whole model with its optimizer state (admin): params gets smlt_client_num_params()
 * floats; state, if non-NULL, gets *nstate arrays of as many floats back to back (room for 2:
 * Adam keeps 2, momentum and AdaGrad 1, SGD 0). For checkpoints and checks. */
SMLT_API int smlt_export(struct smlt_client *c, float *params, float *state, uint32_t *nstate);

/* Changes how often every shard checkpoints, from now on: at multiples of every_steps (0:
 * none). The shards must have been configured with a checkpoint directory and an interval
 * (struct smlt_job_conf). (admin) */
SMLT_API int smlt_set_checkpoint_every(struct smlt_client *c, uint64_t every_steps);

/* Lists shard `shard`'s checkpoints that read back valid (every CRC checked), newest first:
 * up to cap steps into steps, their count in *n (which may exceed cap). Corrupt files are
 * skipped; *corrupt (if non-NULL) gets how many, and report (if non-NULL, reportlen bytes)
 * what was wrong with each. dir NULL: the shard's configured directory. (admin) */
SMLT_API int smlt_checkpoint_list(struct smlt_client *c, uint32_t shard, const char *dir,
                                  uint64_t *steps, size_t cap, size_t *n, uint32_t *corrupt,
                                  char *report, size_t reportlen);

/* Restores every shard of the job from its checkpoint of one step (admin): step 0 means the
 * newest step for which every shard has a valid checkpoint (asked with ListCheckpoints first;
 * corrupt files are skipped, so a corrupt newest one makes it the previous good step). The
 * shards must be configured with the job's map (smlt_job_setup(), also onto a replacement
 * process). Each installs parameters, optimizer state, version, clock and its exactly-once
 * tables: pushes of steps before the restored one are duplicates again, pulls see the restored
 * model. *restored (if non-NULL) gets the step. SMLT_ENOTFOUND when no step is common to all
 * shards; smlt_client_errmsg() says which shard lacks what. Checkpoints are read from each
 * shard's configured directory (smlt_restore_from() names one). */
SMLT_API int smlt_restore(struct smlt_client *c, uint64_t step, uint64_t *restored);
SMLT_API int smlt_restore_from(struct smlt_client *c, const char *dir, uint64_t step,
                               uint64_t *restored);

/* Replicated shards (admin). Gives shard `shard` (its primary, as the map names it) a backup:
 * backup_addr is a running smlt-ps started with the same job and admin tokens, configured or
 * not. The primary builds it: it freezes at the next step boundary (pushes of later steps get
 * SMLT_EAGAIN and clients retry them), configures the backup with the job's settings and map,
 * sends it its range, optimizer state and exactly-once tables, and from then on forwards every
 * push it counts, in order, acknowledging a worker only after the backup acknowledged. Returns
 * 0 once the backup is in sync. If the backup is later lost, the primary goes on alone
 * (ShardStats.backup_lost) and this may be called again with a new backup. */
SMLT_API int smlt_set_backup(struct smlt_client *c, uint32_t shard, const char *backup_addr);

/* Failover (admin): makes the backup at backup_addr the primary of shard `shard`. It gets a
 * new map (c's version + 1, shard's address = backup_addr) with a Promote, then every shard of
 * that map installs it, so clients holding the old map are told "stale map" and move; c holds
 * the new map afterwards. The old primary must be gone (killed); if it is alive, its next
 * forwarded push is refused by the promoted backup and it retires itself. No step is lost: the
 * backup had counted every push that was acknowledged. Returns 0, or a negative code (the
 * backup refused: not a backup, or it was promoted with another map). */
SMLT_API int smlt_promote(struct smlt_client *c, uint32_t shard, const char *backup_addr);

#ifdef __cplusplus
}
#endif
#endif
