/* ps_server.h: the network side of one smlt-ps shard.
 *
 * Accepts connections, runs the handshake (job token, compared in constant time; an optional
 * admin token for configuration), and serves the data plane on a ps_shard: pushes are read
 * straight into the shard's gradient buffers, pulls are answered from the current parameters
 * by reference, long-polling pulls wait for the clock they ask for. One event loop thread; the
 * shard's apply thread does the math.
 *
 * Per-connection state machine: NEW (only Hello accepted, tight limits, 10 s to send it) ->
 * READY (every request). A request that is wrong gets an ErrorReply and the connection goes on;
 * a frame that is malformed gets an ErrorReply and closes that connection only. */
#ifndef PS_SERVER_H
#define PS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

struct ps_server;
struct smlt_tls;

struct ps_server_conf {
    const char *listen;      /* "127.0.0.1:0" */
    uint32_t shard;          /* this shard's id in the partition map */
    const char *token;       /* the job token every client presents */
    const char *admin_token; /* if set, needed for configuration; else the job token is enough */
    uint32_t max_conns;      /* 0: SMLT_MAX_CONNS */
    uint64_t nic_bytes_per_s; /* an emulated network card: bytes/s each way over all
                               * connections (0: none; see rpc_rate_new()) */
    const char *checkpoint_dir; /* default checkpoint directory of jobs that name none (NULL) */
    struct smlt_tls *tls;     /* a server context: every connection is TLS (NULL: plain TCP).
                                 The server takes a reference */
    struct smlt_tls *tls_client; /* a client context for its own connections (to a backup);
                                 with tls, required. The server takes a reference */
    /* A shard hosted by a PS node (ps_node.h): no listener of its own; the node hands it the
     * connections whose Hello names its route (ps_server_adopt()). */
    int hosted;
    /* Called (on the loop) when an admin Shutdown asked this shard to go, after the reply is
     * queued; NULL: the loop exits, as a one-shard process does. */
    void (*on_shutdown)(struct ps_server *srv, void *arg);
    /* Called by Configure with the bytes the configured range will take
     * (smlt_shard_mem_bytes()); non-zero refuses the configuration with the message in err.
     * NULL: no bound. */
    int (*reserve)(void *arg, uint64_t bytes, char *err, size_t errlen);
    void *cb_arg;
};

/* Returns a server listening on conf->listen on base, or NULL with a message in err. */
struct ps_server *ps_server_new(struct event_base *base, const struct ps_server_conf *conf,
                                char *err, size_t errlen);

/* Takes over conn, accepted by a PS node, whose first frame (h, meta) is a Hello naming this
 * shard: the server answers it as its own listener's connections' (token check and all) and
 * serves the connection from then on. Call from inside the node's on_frame. Returns 0, or
 * SMLT_ENOMEM (conn untouched). */
struct rpc_conn;
struct rpc_frame_hdr;
int ps_server_adopt(struct ps_server *srv, struct rpc_conn *conn, const struct rpc_frame_hdr *h,
                    const uint8_t *meta);

/* The shard's state for a node's NodeInfo: configured, its version, its connections. */
void ps_server_brief(const struct ps_server *s, int *configured, uint64_t *version,
                     uint32_t *conns);

/* The bound TCP port (0 when hosted). */
int ps_server_port(const struct ps_server *s);

/* 1 once a client asked the server to shut down (the loop has been told to exit). */
int ps_server_shutdown_requested(const struct ps_server *s);

/* The connections open now. */
uint32_t ps_server_connections(const struct ps_server *s);

/* Aborts every connection (each is freed from a deferred event). A hosted shard is freed from
 * inside its node's loop, where ps_server_free() cannot run the loop to let them go: the node
 * aborts them, waits on its loop until ps_server_idle(), then frees the server. */
void ps_server_abort_conns(struct ps_server *srv);
int ps_server_idle(const struct ps_server *srv);

/* Closes every connection and the listener, stops the shard's thread, frees everything (when
 * connections are open, it runs the loop until they are gone: not from inside the loop). */
void ps_server_free(struct ps_server *s);

#endif
