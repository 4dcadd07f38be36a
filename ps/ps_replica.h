/* ps_replica.h: replicated shards, inside smlt-ps (docs/ARCHITECTURE.md, "Replicated shards").
 *
 * A primary keeps one connection to its backup and forwards every push it has checked on it; it
 * counts the push and answers the worker only once the backup has answered. SetBackup builds a
 * backup from the running primary (freeze at a step boundary, configure it, send the range as
 * one Import, forward from then on); Promote makes a backup the primary of a new map and SetMap
 * installs that map on every shard. ps_server.c owns the connections and the dispatch and calls
 * in here; the state lives in struct ps_server (ps_server_int.h): `bk` on a primary, `role`,
 * `primary` and `backup_ckpt_every` on a backup. Everything runs on the shard's loop thread. */
#ifndef PS_REPLICA_H
#define PS_REPLICA_H

#include <stdint.h>

#include <event2/event.h>

#include "rpc_conn.h"
#include "smlt.pb-c.h"

struct ps_client;
struct ps_server;

/* Replication, primary side: a push forwarded to the backup. It is counted here, and the
 * worker acknowledged, only once the backup has answered (or was lost) and the backup
 * connection no longer references the gradient; entries finish strictly in order. */
struct ps_fwd {
    struct ps_server *srv;
    struct ps_client *cl; /* the pushing connection; NULL once it closed */
    uint64_t req_id;      /* the worker's request id */
    uint64_t fwd_id;      /* the request id on the backup connection */
    uint32_t worker;
    uint64_t step;
    float *buf;           /* the gradient (a shard buffer), referenced by the backup's output */
    int released;         /* the backup connection is done with buf */
    int answered;         /* the backup's answer is in, or the backup is gone */
    int backup_rc;        /* 0 counted, 1 duplicate, FWD_LOST, or a negative code */
    struct ps_fwd *next;
};

#define FWD_LOST 2

enum bk_state {
    BK_NONE,     /* no backup */
    BK_FREEZING, /* SetBackup: waiting for a step boundary */
    BK_CONFIG,   /* frozen; the backup is being configured */
    BK_SYNCING,  /* the range is on its way (Import); pushes are forwarded behind it */
    BK_ON,       /* the backup is in sync: every counted push was counted there first */
    BK_LOST      /* the backup's connection broke: this shard goes on alone */
};

struct ps_backup {
    enum bk_state state;
    char addr[256];
    struct rpc_conn *conn;
    struct ps_client *admin;   /* the SetBackup waiting for the build, or NULL */
    uint64_t admin_req;
    uint64_t next_id, conf_id, import_id;
    struct ps_fwd *head, *tail;
    uint64_t forwarded, acks, lag, lost, diverged;
};

/* Primary: forwards a push received and checked on cl (takes buf, a shard buffer) to the
 * backup; it is counted here and cl answered when the backup has answered (or is lost). */
void ps_replica_forward(struct ps_client *cl, uint64_t req_id, const Smlt__PushReq *m, float *buf);

/* Primary: finishes the forwarded pushes that are answered and released, in order. The
 * callback of srv->fwd_ev (arg: the server), made active instead of finishing in callbacks. */
void ps_replica_on_progress(evutil_socket_t fd, short what, void *arg);

/* Primary: connects to and configures the backup of a SetBackup once the shard is frozen at a
 * step boundary; does nothing before. Called whenever the shard advances. */
void ps_replica_try_build(struct ps_server *srv);

/* Primary: ends a build that failed or drops the backup (the SetBackup gets code and msg,
 * pushes are accepted again, the backup connection is closed). */
void ps_replica_fail(struct ps_server *srv, int code, const char *msg);

/* Backup: lets a forwarded push that waited for this shard's updates be read now. */
void ps_replica_resume(struct ps_server *srv);

/* The admin requests (the caller checked the admin token): SetBackup to a primary, SetMap to
 * every shard, Promote to a backup. Each answers on cl, now or later. */
void ps_replica_handle_set_backup(struct ps_client *cl, const struct rpc_frame_hdr *h,
                                  const uint8_t *meta);
void ps_replica_handle_set_map(struct ps_client *cl, const struct rpc_frame_hdr *h,
                               const uint8_t *meta);
void ps_replica_handle_promote(struct ps_client *cl, const struct rpc_frame_hdr *h,
                               const uint8_t *meta);

#endif
