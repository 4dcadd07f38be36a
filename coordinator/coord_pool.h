/* coord_pool.h: the coordinator's pool of PS nodes (smlt-coordinator --ps-pool).
 *
 * The nodes are `smlt-ps --node` processes on persistent machines (a Kubernetes StatefulSet
 * behind a headless Service, or VMs). The pool knows them from a list ("host:port,...") or
 * from a DNS name that resolves to every node ("dns:NAME:PORT": the headless Service's name;
 * resolved again every 5 s, so nodes that come are added). A monitor thread asks every node
 * for its NodeInfo once a second (libsmlt's node requests, with the pool token, over the
 * coordinator's TLS context when it has one): capacity, reservations, shards, and its boot id.
 * A node that fails twice in a row is down; one whose boot id changed has lost its shards.
 * The coordinator's loop only reads the monitor's snapshot (under a mutex) and queues drops
 * for the thread: nothing here blocks the loop but coord_pool_new(), which polls every node
 * once before the coordinator serves.
 *
 * Placement (coord_pool_place()): among the nodes up, not the one to avoid (a replica's
 * primary's), with room for the shard, the one with the fewest of this job's shards, then the
 * most memory free: a job's shards spread over the nodes, and the emptiest fills first.
 * Reservations placed since the node's last answer count against it. */
#ifndef COORD_POOL_H
#define COORD_POOL_H

#include <stddef.h>
#include <stdint.h>

#define COORD_POOL_MAX 64

enum coord_node_state { COORD_NODE_CONNECTING, COORD_NODE_UP, COORD_NODE_DOWN };

/* A node as the monitor last saw it. */
struct coord_pool_node {
    char addr[72];             /* "host:port" */
    char name[128];            /* its --name ("" before it answered) */
    int state;                 /* enum coord_node_state */
    uint64_t boot_id;          /* 0 before it answered */
    uint64_t capacity_bytes, used_bytes, refused;
    uint32_t shards, configured, connections;
    uint32_t metrics_port;     /* its GET /metrics port on the same host (0: none) */
    double since_ok_s;         /* since its last answer (-1: never answered) */
    char err[200];             /* why its last poll failed ("" when it answered) */
};

struct coord_pool;

/* Parses spec ("host:port,..." or "dns:NAME:PORT"), polls every node once, starts the monitor.
 * token: the pool token the nodes were started with. Returns 0, or SMLT_EINVAL / SMLT_ENOMEM
 * with a message in err (no node at all is an error; nodes down are not). */
int coord_pool_new(struct coord_pool **out, const char *spec, const char *token, char *err,
                   size_t errlen);

/* Stops the monitor (after the drops it has queued) and frees p. NULL is fine. */
void coord_pool_free(struct coord_pool *p);

const char *coord_pool_token(const struct coord_pool *p);
const char *coord_pool_spec(const struct coord_pool *p);

/* Copies up to max nodes' snapshots into out; returns how many nodes there are. */
uint32_t coord_pool_nodes(struct coord_pool *p, struct coord_pool_node *out, uint32_t max);

/* The node at addr ("host:port"), added if unknown (a journal naming it). -1: the pool is
 * full or addr is too long. */
int coord_pool_find(struct coord_pool *p, const char *addr);

/* Node idx's address ("host:port"), copied into out. */
void coord_pool_addr(struct coord_pool *p, int idx, char *out, size_t len);

/* Node idx's state (enum coord_node_state); *boot_id (if not NULL) its boot id (0: unknown). */
int coord_pool_state(struct coord_pool *p, int idx, uint64_t *boot_id);

/* Picks a node for a shard of bytes (see above); load[k] (may be NULL) is how many of the
 * job's shards node k holds; avoid: a node not to use (-1: none). Counts the reservation
 * against the node until it answers again. Returns the node, or -1 with a message in err. */
int coord_pool_place(struct coord_pool *p, uint64_t bytes, const uint32_t *load, int avoid,
                     char *err, size_t errlen);

/* Asks node idx, from the monitor thread, to drop route (a shard's end, or one lost). */
void coord_pool_drop(struct coord_pool *p, int idx, const char *route);

#endif
