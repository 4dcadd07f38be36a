/* coord_admin.h: the coordinator's asynchronous admin client to one job's shards.
 *
 * Every call the coordinator makes to a job's shards (setup, stats, freeze / unfreeze /
 * stop_at, reshard, update_conf, export, model save, shutdown) goes through here, so that a
 * slow or dead shard never blocks the coordinator's event loop: the HTTP API, the worker RPC
 * and the other jobs go on. A call is queued on the job's admin queue and run by the queue's
 * own thread with libsmlt's blocking client (its private event loop); its result comes back
 * on the coordinator's loop through a callback. Calls on one queue run one at a time, in the
 * order they were made (a barrier is set before it is lifted, a reshard before the worker
 * count changes), so the job's state machine never sees two of its admin calls overlap.
 *
 * Timeouts: every network wait of a call is bounded by req->timeout_ms, and a call that has
 * run that long in all is not started on another round. Cancel: coord_admin_cancel() takes a
 * queued call off the queue, or interrupts a running one (smlt_client_interrupt()); either
 * way its callback follows with SMLT_ECANCELED. The callback is never called from inside
 * coord_admin_call() or coord_admin_cancel(), and never after coord_admin_free().
 *
 * This is libuv's work-queue pattern (uv_queue_work) with one worker thread per job. The
 * thread touches nothing of the coordinator's: a request carries copies of what it needs
 * (addresses, tokens, paths), and a result is read only on the loop. */
#ifndef COORD_ADMIN_H
#define COORD_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "coord_shards.h"
#include "smlt.h"
#include "smlt_admin.h"

enum coord_admin_op {
    COORD_ADMIN_SETUP,       /* configure a new job on the shards (model, job conf) */
    COORD_ADMIN_STATS,       /* every shard's counters */
    COORD_ADMIN_FREEZE,      /* a barrier at base + k * align (smlt_freeze_at_boundary) */
    COORD_ADMIN_UNFREEZE,    /* lift any freeze */
    COORD_ADMIN_STOP_AT,     /* stop every worker at one step (smlt_stop_at) */
    COORD_ADMIN_RESHARD,     /* live reshard to new_addrs */
    COORD_ADMIN_UPDATE_CONF, /* the expected worker count */
    COORD_ADMIN_EXPORT,      /* the whole model with its optimizer state */
    COORD_ADMIN_SAVE,        /* pull the model and write it to path (model file format) */
    COORD_ADMIN_SHUTDOWN,    /* ask every shard process to exit */
    COORD_ADMIN_RESTORE,     /* every shard restores the checkpoint of `step` (0: the newest
                                step every shard has) */
    COORD_ADMIN_CHECKPOINT_EVERY, /* checkpoints at multiples of `step` from now on */
    COORD_ADMIN_SET_BACKUP,  /* shard `shard` makes new_addrs its backup (smlt_set_backup) */
    COORD_ADMIN_PROMOTE      /* shard `shard`'s backup at new_addrs takes over (smlt_promote) */
};

#define COORD_ADMIN_ADDRS_MAX (COORD_SHARDS_MAX * COORD_ADDR_LEN)
#define COORD_ADMIN_MODEL_MAX 256

struct coord_admin_req {
    enum coord_admin_op op;
    char addrs[COORD_ADMIN_ADDRS_MAX]; /* the shards to connect to ("host:port,...") */
    char token[65];                    /* the admin token (or the job token) */
    int timeout_ms;                    /* each network wait, and the call in all; 0: 30000 */
    /* arguments */
    uint64_t base, align;              /* FREEZE */
    char new_addrs[COORD_ADMIN_ADDRS_MAX]; /* RESHARD */
    uint32_t workers;                  /* UPDATE_CONF */
    uint32_t shard;                    /* SET_BACKUP, PROMOTE */
    char path[1100];                   /* SAVE; SETUP: a torch job's training file ("": none) */
    uint64_t step;                     /* SAVE: the step recorded in the file; RESTORE */
    char model[COORD_ADMIN_MODEL_MAX]; /* SETUP: the model spec */
    char job[64];                      /* SETUP: the job's name for the shards' logs */
    struct smlt_job_conf conf;         /* SETUP (conf.job is replaced by job, and
                                          conf.checkpoint_dir by checkpoint_dir) */
    char checkpoint_dir[1100];         /* SETUP: "" for the shards' own --checkpoint-dir */
    /* Any call: shards placed on pool nodes (coord_shards_take_hosting()) that the thread
     * hosts (NodeHost with pool_token) before it does the call; one refused fails the call
     * with the node's message. Malloc'd, taken by coord_admin_call(). */
    struct coord_admin_host *hosts;
    uint32_t nhosts;
    char job_token[65];                /* hosts: the shards' job token */
    char pool_token[256];
};

struct coord_admin_res {
    enum coord_admin_op op;
    int rc;                 /* 0 or a negative SMLT_E* code */
    char err[512];          /* what failed, in words */
    double seconds;         /* how long the call ran */
    uint64_t step;          /* FREEZE, STOP_AT, RESHARD, RESTORE: the step it happened at */
    /* STATS: per shard, stats_rc[k] is 0 when stats[k] was read, SMLT_EAGAIN when the shard
     * was not asked (the call's time was spent on others), else why it did not answer */
    uint32_t nshards;
    struct smlt_shard_stats *stats;
    int *stats_rc;
    /* EXPORT; SETUP of a torch job: its parameter count */
    uint64_t nparams;
    float *params, *state;  /* state: nstate arrays of nparams floats */
    uint32_t nstate;
};

/* Called on the loop when a call ends (res is borrowed for the callback). */
typedef void (*coord_admin_fn)(const struct coord_admin_res *res, void *arg);

struct coord_admin_stats {
    uint64_t calls, failed, canceled;
    uint32_t queued;        /* waiting or running now */
};

struct coord_admin;

/* Returns a queue whose callbacks run on base, or NULL. Its thread starts with the first
 * call. Enables libevent's pthread support (evthread_use_pthreads()) if it is not yet. */
struct coord_admin *coord_admin_new(struct event_base *base);

/* Queues a call (req is copied). Returns its id (> 0), or 0 when out of memory (cb is then
 * never called). */
uint64_t coord_admin_call(struct coord_admin *a, const struct coord_admin_req *req,
                          coord_admin_fn cb, void *arg);

/* Cancels call id: its callback follows with SMLT_ECANCELED (or with its result, if it had
 * ended already). Returns 0, or SMLT_ENOTFOUND when no such call is queued or running. */
int coord_admin_cancel(struct coord_admin *a, uint64_t id);

/* Cancels every call. */
void coord_admin_cancel_all(struct coord_admin *a);

/* Calls queued or running. */
uint32_t coord_admin_pending(const struct coord_admin *a);

void coord_admin_stats(const struct coord_admin *a, struct coord_admin_stats *st);

/* Cancels every call without calling back, and frees a. A call still running ends in the
 * background (interrupted) and its thread exits after it. NULL is fine. */
void coord_admin_free(struct coord_admin *a);

#endif
