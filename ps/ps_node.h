/* ps_node.h: a PS node (smlt-ps --node): one process, one port, the shards of many jobs.
 *
 * On a cluster the shards run on a few small persistent nodes (a Kubernetes StatefulSet, or
 * VMs) that the coordinator finds in its pool (coordinator --ps-pool). A node listens on one
 * address; every connection's Hello names the shard it is for by route (a shard's address is
 * "host:port/route"), and the node hands the connection to that shard's server
 * (ps_server_adopt()), which checks the job's token as a one-shard smlt-ps does. A Hello with
 * no route is for the node itself and must carry the pool token: the coordinator's
 * NodeHost (a new, unconfigured shard with its job's tokens and a memory reservation),
 * NodeDrop and NodeStats (-> NodeInfo) come that way.
 *
 * Memory is bounded: the node holds at most --memory-mb of reservations. NodeHost reserves
 * what the coordinator estimates, Configure what the configured range takes
 * (smlt_shard_mem_bytes()); either is refused with SMLT_ENOMEM and a message naming what was
 * asked and what is free, and the node and its other shards go on. An admin Shutdown of a
 * hosted shard drops that shard only. Checkpoints go to DIR/<job>/shard-<id>/ under
 * --checkpoint-dir, so a shard restored on another node that shares DIR finds them.
 *
 * With a metrics address the node serves GET /healthz (200 "ok" while it serves) and
 * GET /metrics (the node's capacity, reservations and shards, Prometheus text); NodeInfo
 * reports that port (metrics_port), so that the coordinator lists the node for Prometheus. */
#ifndef PS_NODE_H
#define PS_NODE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

struct ps_node;
struct smlt_tls;

struct ps_node_conf {
    const char *listen;        /* "0.0.0.0:7000" */
    const char *name;          /* in NodeInfo and logs (NULL: the host name) */
    const char *token;         /* the pool token NodeHost / NodeDrop / NodeStats need */
    uint64_t capacity_bytes;   /* reservations are bounded by this */
    const char *checkpoint_dir; /* DIR/<job>/ is each job's default (NULL: none) */
    uint32_t max_conns;        /* over all shards (0: SMLT_MAX_CONNS) */
    struct smlt_tls *tls;      /* server context (NULL: plain TCP); referenced */
    struct smlt_tls *tls_client; /* with tls: for the shards' connections to their backups */
};

/* Returns a node listening on conf->listen on base, or NULL with a message in err. */
struct ps_node *ps_node_new(struct event_base *base, const struct ps_node_conf *conf, char *err,
                            size_t errlen);

/* The bound TCP port. */
int ps_node_port(const struct ps_node *n);

/* Serves /healthz and /metrics on addr ("HOST:PORT", port 0 picks one). Returns the port, or
 * -1 with a message in err. */
int ps_node_http(struct ps_node *n, const char *addr, char *err, size_t errlen);

/* Closes the listeners and every connection, drops every shard, frees n. NULL is fine. */
void ps_node_free(struct ps_node *n);

#endif
