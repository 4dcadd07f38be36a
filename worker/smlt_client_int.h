/* smlt_client_int.h: what the project's own code may call on a libsmlt client beyond the
 * public API (not exported from libsmlt.so). */
#ifndef SMLT_CLIENT_INT_H
#define SMLT_CLIENT_INT_H

#include <stddef.h>

struct smlt_client;
struct smlt_client_opts;

/* smlt_client_connect() in two halves, so that another thread can interrupt the connecting:
 * create returns an unconnected client (NULL with a message on bad options); open connects it
 * to the job through addrs (0 or a code with a message; the client is then still to be
 * closed with smlt_client_close()). */
struct smlt_client *smlt_client_create(const struct smlt_client_opts *opts, char *errmsg,
                                       size_t errlen);
int smlt_client_open(struct smlt_client *c, const char *addrs, char *errmsg, size_t errlen);

/* A TLS client context that every client of this process created without TLS options
 * uses (a reference is taken; NULL: plain TCP again): how a daemon with TLS options talks
 * TLS to all of its shards (the coordinator's admin calls and job setup). Set it before the
 * threads that create clients start; clients already made keep what they had. */
struct smlt_tls;
void smlt_client_set_default_tls(struct smlt_tls *tls);

/* Makes the call running on c (in another thread) return SMLT_ECANCELED as soon as its event
 * loop wakes, and every later call on c too. The one function of a client that another thread
 * may call while c is in use; it needs libevent's thread support (evthread_use_pthreads())
 * enabled before c was created, and c must stay alive for the call (the caller's lock). */
void smlt_client_interrupt(struct smlt_client *c);

/* From now on no network wait of c's goes past t (CLOCK_MONOTONIC seconds; 0: none): a
 * function's slice bounds its calls by its stop-by time, so that an instance whose shard has
 * gone is free again soon after its time limit instead of after the client's timeout. A call
 * that runs into it fails with SMLT_ETIMEDOUT ("the slice's time is up"). */
void smlt_client__set_deadline(struct smlt_client *c, double t);

/* The default TLS context (a new reference, or NULL): for the project's other clients. */
struct smlt_tls *smlt_client__default_tls(void);

/* ---- PS nodes (smlt-ps --node; smlt_node.c) ---------------------------------------------
 * One blocking request on a connection of its own to the node at addr ("host:port"), with the
 * pool token, over the default TLS context; every wait is bounded by timeout_ms. Each returns
 * 0, or a negative SMLT_E* code with a message in err (the node's own when it refused). */
struct smlt_node_host {
    const char *route;        /* the shard's route on the node */
    const char *job;
    uint32_t shard;
    const char *token, *admin_token;
    uint64_t memory_bytes;    /* reserved on the node */
    int backup;
};
struct smlt_node_shard {
    char route[48], job[72];
    uint32_t shard, connections;
    uint64_t memory_bytes, version;
    int configured, backup;
};
struct smlt_node_info {
    char node[128];
    uint64_t boot_id, capacity_bytes, used_bytes, refused;
    double uptime_s;
    uint32_t metrics_port; /* its GET /metrics port (0: none) */
    uint32_t nshards;
    struct smlt_node_shard *shards; /* malloc'd: smlt_node_info_free() */
};
int smlt_node_host(const char *addr, const char *pool_token, const struct smlt_node_host *h,
                   int timeout_ms, char *err, size_t errlen);
int smlt_node_drop(const char *addr, const char *pool_token, const char *route, int timeout_ms,
                   char *err, size_t errlen);
int smlt_node_stats(const char *addr, const char *pool_token, int timeout_ms,
                    struct smlt_node_info *out, char *err, size_t errlen);
void smlt_node_info_free(struct smlt_node_info *info);

#endif
