/* smlt_client_priv.h: libsmlt's private header, shared by smlt_client.c (the client, its links
 * and operations, sending them and reading the replies, running a batch, the data plane) and
 * smlt_admin.c (the calls of smlt_admin.h). Only libsmlt's own files include it; what the
 * project's other code may call beyond the public API is in smlt_client_int.h. Functions here
 * are smlt_client.c's, with a double underscore: internal, never exported from libsmlt.so.
 *
 * A client is single-threaded: everything here runs in the caller's thread, on the client's
 * private event loop (smlt_client_interrupt() is the one exception). */
#ifndef SMLT_CLIENT_PRIV_H
#define SMLT_CLIENT_PRIV_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "part_map.h"
#include "rpc_conn.h"
#include "smlt_admin.h"

enum op_kind {
    OP_MAP,
    OP_PUSH,
    OP_PULL,
    OP_CONF,
    OP_SET,
    OP_UPDATE,
    OP_STATS,
    OP_SHUTDOWN,
    OP_PREPARE,
    OP_EXPORT,
    OP_IMPORT,
    OP_RETIRE,
    OP_RESTORE,
    OP_LIST_CKPT,
    OP_SET_BACKUP,
    OP_PROMOTE,
    OP_SET_MAP
};

/* What an export brings back besides the floats. */
struct xmeta {
    uint64_t version, clock, updates;
    uint32_t nstate;
    uint64_t *last_counted, *last_applied; /* malloc'd, nranks each */
    uint32_t nranks;
    int have_conf;
    struct smlt_job_conf conf;
    char ckpt_dir[512]; /* conf.checkpoint_dir points here */
};

struct op {
    enum op_kind kind;
    uint32_t link;    /* index into c->links */
    uint64_t req_id;  /* of the latest send; 0 before */
    int sent;
    int done;
    int rc;
    int ref_out;      /* payload bytes still referenced by an output buffer */
    int duplicate;
    /* push / set */
    const float *src;
    uint64_t step;
    /* pull */
    float *dst;
    uint64_t lo, hi, min_clock;
    uint64_t version, clock;
    /* update */
    int has_lr, has_wd, has_workers, has_ckpt_every;
    uint64_t ckpt_every;
    float lr, wd;
    uint32_t workers;
    /* stats */
    struct smlt_shard_stats *stats;
    /* resharding */
    uint64_t freeze;          /* OP_PREPARE: 0 tentative, N freeze at N, UINT64_MAX call off */
    int stop;                 /* OP_PREPARE: the job stops there */
    float *xbuf;              /* OP_EXPORT: the payload (malloc'd on arrival) */
    size_t xlen;
    struct xmeta xm;          /* OP_EXPORT: what came back; OP_IMPORT: what to send */
    int final;                /* OP_IMPORT */
    int await_import;         /* OP_CONF */
    const struct part_map *retire_map; /* OP_RETIRE, OP_PROMOTE, OP_SET_MAP */
    const char *backup_addr;  /* OP_SET_BACKUP */
    /* checkpoints */
    const char *ckpt_dir;     /* OP_RESTORE, OP_LIST_CKPT: NULL for the shard's own */
    uint64_t *ck_steps;       /* OP_LIST_CKPT: malloc'd on arrival, newest first */
    size_t ck_n;
    uint32_t ck_corrupt;
    char *ck_report;          /* OP_LIST_CKPT: malloc'd, or NULL */
};

struct link {
    struct smlt_client *c;
    uint32_t idx;
    uint32_t shard; /* id in the map; UINT32_MAX for a bootstrap link */
    char *addr;
    struct rpc_conn *conn;
    uint64_t hello_req;
    int ready;
    int fatal;      /* authentication or TLS refused: do not retry */
    int fatal_rc;   /* what the fatal failure was (0: SMLT_EAUTH) */
    int attempts;   /* reconnects during the current call */
    struct event *retry_ev;
    uint64_t lo, hi;
};

struct smlt_client {
    struct event_base *base;
    struct smlt_client_opts opts; /* the TLS fields are NULL: they went into tls */
    struct smlt_tls *tls;         /* a client context: every link is TLS (NULL: plain) */
    char *token;
    struct part_map *map;
    struct part_map *new_map; /* from a stale-map reply, installed between attempts */
    struct link *links;
    uint32_t nlinks;
    uint64_t next_req;
    struct op *ops;
    size_t nops;
    struct event *timeout_ev;
    int timed_out;
    struct event *wake_ev;  /* made active by smlt_client_interrupt() from another thread */
    atomic_int interrupted;
    double deadline;      /* CLOCK_MONOTONIC; > 0: no wait goes past it (smlt_client__set_deadline) */
    struct smlt_job_conf job;
    char job_ckpt_dir[512]; /* job.checkpoint_dir points here (or is NULL) */
    char err[512];
};

/* Sets the message smlt_client_errmsg() returns. */
void smlt_client__seterr(struct smlt_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns a client with no links (free it with smlt_client_close()), or NULL with a message in
 * errmsg on bad options. */
struct smlt_client *smlt_client__new(const struct smlt_client_opts *opts, char *errmsg,
                                     size_t errlen);

/* Replaces c->links with n zeroed links (the old array is the caller's). 0 or SMLT_ENOMEM. */
int smlt_client__links_resize(struct smlt_client *c, uint32_t n);

/* Makes the links match map m, one per shard, keeping connections to the same addresses.
 * Takes m on success; on failure (a code) m is still the caller's. */
int smlt_client__install_map(struct smlt_client *c, struct part_map *m);

/* A link's retry timer (arg: the struct link): reconnects and resends its unsent operations.
 * A link made by hand needs it as its retry_ev. */
void smlt_client__on_retry(evutil_socket_t fd, short what, void *arg);

/* Frees the batch (and whatever its operations received). */
void smlt_client__ops_free(struct smlt_client *c);

/* Replaces the batch with n zeroed operations. 0 or SMLT_ENOMEM. */
int smlt_client__batch_alloc(struct smlt_client *c, size_t n);

/* Sends every operation of the batch and runs the loop until all are answered, failed or the
 * call's time is up. Returns 0 or the first failure's code (SMLT_ESTALEMAP first). */
int smlt_client__batch_run(struct smlt_client *c);

/* Fills the batch with one operation of kind per link. 0 or SMLT_ENOMEM. */
int smlt_client__fill_per_shard(struct smlt_client *c, enum op_kind kind);

/* Runs a call (fill fills the batch, with arg) and retries it after installing a newer map
 * when a shard said ours was stale or stayed unreachable. Returns 0 or a code. */
int smlt_client__call(struct smlt_client *c, int (*fill)(struct smlt_client *, void *), void *arg);

/* 0, or SMLT_ENOTCONF for a client without a map (or NULL). */
int smlt_client__need_map(struct smlt_client *c);

#endif
