/* ps_server_int.h: smlt-ps's private header: the server, its connections and what they wait
 * for, shared by ps_server.c (connections, handshake, dispatch, the data plane, resharding,
 * checkpoints) and ps_replica.c (replicated shards). Nothing outside ps/ includes it; the
 * daemon's API is ps_server.h. Functions here with a double underscore are ps_server.c's,
 * callable from ps_replica.c only. Everything runs on the shard's loop thread. */
#ifndef PS_SERVER_INT_H
#define PS_SERVER_INT_H

#include <stdint.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "ps_replica.h"
#include "ps_server.h"
#include "ps_shard.h"
#include "rpc_conn.h"
#include "smlt.pb-c.h"
#include "smlt_hist.h"

struct ps_client;

struct ps_pull_wait {
    struct ps_client *cl;
    uint64_t req_id;
    uint64_t lo, hi, min_clock;
    int may_compress;
    struct event *timer;
    double since;         /* when it began to wait (CLOCK_MONOTONIC), for the bsp_wait histogram */
    struct ps_pull_wait *next, *prev;
};

struct ps_set_wait {
    struct ps_client *cl;
    uint64_t req_id;
    uint64_t seq;
    struct ps_set_wait *next;
};

struct ps_client {
    struct ps_server *srv;
    struct rpc_conn *conn;
    int authed;
    int admin;
    uint32_t worker;
    struct event *hs_timer;
    float *recv_buf;     /* a shard buffer the current payload is being read into */
    int waiting_buf;     /* on the server's list of connections waiting for a buffer */
    uint32_t pulls_waiting;
    int is_primary;      /* a backup's connection from its primary: forwarded pushes */
    int fwd_waiting;     /* its forwarded push waits for this shard's updates to catch up */
    struct ps_client *next, *prev;
    struct ps_client *wnext;
};

struct ps_server {
    struct event_base *base;
    struct evconnlistener *lis;
    struct ps_shard *shard;
    struct ps_server_conf conf;
    char *token;
    char *admin_token;
    int port;
    uint32_t nconns;
    struct ps_client *clients;
    struct ps_client *buf_waiters; /* FIFO: the longest waiting gets the next buffer first */
    struct ps_client *buf_waiters_tail;
    struct ps_pull_wait *pulls;
    struct ps_set_wait *sets;
    struct ps_client *conf_client; /* a Configure waiting for initialization to finish */
    uint64_t conf_req;
    struct ps_client *freeze_client; /* a ReshardPrepare waiting for the shard to freeze */
    uint64_t freeze_req;
    struct part_map *retired;          /* not in the job's map any more: every request is told so */
    struct rpc_rate *nic;            /* the emulated network card, or NULL */
    int shutdown;
    /* replication */
    int role;                        /* Smlt__ShardRole: SOLO, PRIMARY (bk), BACKUP */
    struct ps_client *primary;       /* a backup: the connection of its primary */
    uint64_t backup_ckpt_every;      /* a backup: its checkpoint interval, off until promoted */
    struct ps_backup bk;             /* a primary: its backup */
    struct event *fwd_ev;            /* finishes forwarded pushes (deferred, not in callbacks) */
    /* counters for /stats (connections add theirs when they close) */
    uint64_t pulls_served, pulls_timed_out, bytes_in, bytes_out, frames_bad, auth_failures;
    uint64_t stale_map_errors, conns_refused, payloads_compressed;
    uint64_t tls_failures; /* connections closed with SMLT_ETLS */
    /* for /metrics (ps_http.c) */
    uint64_t conns_accepted, reshard_exports, reshard_imports, reshard_retires;
    struct smlt_hist bsp_wait;       /* each pull's wait for its clock (0: none needed) */
};

/* The frame limits once a connection has authenticated (also those of the backup connection). */
extern const struct rpc_limits ps_server__lim_authed;

/* The traffic of every connection so far: closed ones' and the open ones' (bytes in and out,
 * bad frames). */
void ps_server__traffic(const struct ps_server *srv, uint64_t *bytes_in, uint64_t *bytes_out,
                        uint64_t *frames_bad);

/* Sends an ErrorReply; with SMLT_ESTALEMAP it carries the current map, with SMLT_ESTEP and
 * SMLT_ETIMEDOUT the shard's version and clock. msg NULL or "": smlt_strerror(code). */
void ps_server__reply_error(struct ps_client *cl, uint64_t req_id, int code, const char *msg);

/* Sends Ok with the shard's version and map version. */
void ps_server__reply_ok(struct ps_client *cl, uint64_t req_id);

/* Sends a PushAck for step with the shard's version and clock. */
void ps_server__send_push_ack(struct ps_client *cl, uint64_t req_id, uint64_t step, int duplicate);

/* A retired shard's answer: "stale map" with the map that replaced it (srv->retired). */
void ps_server__reply_retired(struct ps_client *cl, uint64_t req_id);

/* Answers every waiting pull with ps_server__reply_retired(). */
void ps_server__cancel_pulls_retired(struct ps_server *srv);

/* Fills the wire's sync and optimizer settings (every field set) from a shard's. */
void ps_server__conf_to_pb(const struct ps_shard_conf *sc, Smlt__SyncConf *sy,
                           Smlt__OptimConf *oc);

#endif
