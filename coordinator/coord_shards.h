/* coord_shards.h: the parameter-server shards of one job.
 *
 * Locally the coordinator starts one `smlt-ps` child per shard on 127.0.0.1 (or the host
 * coord_shards_set_hosts() gives) port 0 (each
 * writes its port to a file in the job's directory), with a random job token and a random
 * admin token, and supervises them: a shard that exits is noticed by its pid. Each local shard
 * also serves Prometheus metrics on a loopback port of its own (smlt-ps --metrics-listen),
 * recorded in maddr / bmaddr for the job view and /api/prometheus/targets. Elsewhere
 * (Kubernetes, given addresses) it only records the addresses and tokens it was given. Local
 * shards are stopped by pid (after the job's admin Shutdown). Nothing here talks to a shard. */
#ifndef COORD_SHARDS_H
#define COORD_SHARDS_H

#include <stdint.h>
#include <sys/types.h>

#define COORD_SHARDS_MAX 256
/* A shard's address: "host:port", or on a pool node "host:port/route" (a node's DNS name in a
 * cluster is long: smlt-ps-0.smlt-ps.NAMESPACE.svc.cluster.local:7000). */
#define COORD_ADDR_LEN 128

struct coord_pool;

/* A shard placed on a pool node and not yet hosted there: the job's next admin call sends the
 * node its NodeHost first (coord_admin.c), so that whatever the call does finds it. */
struct coord_admin_host {
    char node[72];      /* "host:port" */
    char route[48];
    char job[48];
    uint32_t shard;
    int backup;
    uint64_t memory_bytes;
};
/* A local shard whose coordinator has died exits after this many seconds with no connection,
 * unless a restarted coordinator adopts it first (smlt-ps --orphan-exit). */
#define COORD_SHARDS_ORPHAN_EXIT_S "300"

struct coord_shards {
    uint32_t n;
    int local;                       /* started by us */
    pid_t pid[COORD_SHARDS_MAX];     /* local shards; 0 once reaped */
    char addrs[COORD_SHARDS_MAX * COORD_ADDR_LEN]; /* "host:port[/route],..." in shard order */
    char token[65], admin_token[65];
    double started;                  /* CLOCK_MONOTONIC seconds */
    uint32_t nic_mbps;               /* local shards' emulated network card (0: none) */
    pid_t dead_pid;                  /* the last shard coord_shards_check() found gone */
    /* ps.replicas 2: each local shard's backup process, and its address ("" when none). */
    uint32_t replicas;
    pid_t bpid[COORD_SHARDS_MAX];
    char baddr[COORD_SHARDS_MAX][COORD_ADDR_LEN];
    /* Local shards' and backups' metrics addresses ("127.0.0.1:PORT"; "" when not known). */
    char maddr[COORD_SHARDS_MAX][24];
    char bmaddr[COORD_SHARDS_MAX][24];
    /* On the pool (coord_shards_set_pool(); local is 1 too: the coordinator manages them, but
     * there are no pids): the node of each shard and backup (-1: none), its boot id when the
     * shard was placed (0: not known yet: the first seen), and the shards placed but not yet
     * hosted. */
    int pool;
    int node[COORD_SHARDS_MAX], bnode[COORD_SHARDS_MAX];
    uint64_t boot[COORD_SHARDS_MAX], bboot[COORD_SHARDS_MAX];
    uint8_t lost[COORD_SHARDS_MAX];  /* dropped for not answering: dead at the next check */
    uint32_t gen;                    /* routes made so far (each route is new) */
    char job[40];
    uint64_t mem_bytes;              /* reserved per shard on its node */
    struct coord_admin_host *hosting; /* malloc'd */
    uint32_t nhosting;
};

/* The coordinator's pool (NULL: none, shards are local processes). For every job of the
 * process, before any starts. Borrowed. */
void coord_shards_set_pool(struct coord_pool *pool);
struct coord_pool *coord_shards_pool(void);

/* Places n shards of job on the pool's nodes, each reserving mem_bytes (new tokens, one route
 * each; the hosting goes with the job's next admin call: coord_shards_take_hosting()).
 * Returns 0 or a negative code with a message in err. */
int coord_shards_start_pool(struct coord_shards *s, uint32_t n, const char *job,
                            uint64_t mem_bytes, char *err, size_t errlen);

/* Moves the shards placed but not yet hosted into *hosts (malloc'd; NULL and 0 when none). */
void coord_shards_take_hosting(struct coord_shards *s, struct coord_admin_host **hosts,
                               uint32_t *n);

/* Re-reads the pool nodes of the shards and backups from their addresses (a journal replay);
 * boot ids as recorded. */
void coord_shards_pool_adopt(struct coord_shards *s);

/* Shard i (backup: its backup) runs: a local process that is alive, or a pool shard whose node
 * is not down and has not restarted. */
int coord_shards_up(const struct coord_shards *s, uint32_t i, int backup);

/* Shard i has a backup (started, maybe not in sync yet). */
int coord_shards_has_backup(const struct coord_shards *s, uint32_t i);

/* Forgets shard i's backup (dropping it from its node on the pool). */
void coord_shards_forget_backup(struct coord_shards *s, uint32_t i);

/* Gets rid of shard i, which does not answer: SIGKILL to a local one; a pool one is dropped
 * from its node and counts as dead at the next coord_shards_check(). */
void coord_shards_kill(struct coord_shards *s, uint32_t i);

/* Shard i's process id for logs (0 on the pool). */
#define coord_shards_pid(s, i) ((s)->pid[i])

/* Local shards started from now on serve TLS with this certificate and key (and --tls-ca,
 * --tls-verify-client; NULL cert: plain again). The paths are made absolute. Returns 0 or
 * SMLT_EINVAL with a message in err (a path that does not resolve). */
int coord_shards_set_tls(const char *cert, const char *key, const char *ca, int verify_client,
                         char *err, size_t errlen);

/* Starts n local shards with `ps_bin`, ports and logs under dir, each with an emulated network
 * card of nic_mbps Mbit/s (0: none). Returns 0 or a negative code with a message in err
 * (shards already started are stopped). */
int coord_shards_start(struct coord_shards *s, uint32_t n, uint32_t nic_mbps, const char *ps_bin,
                       const char *dir, char *err, size_t errlen);

/* Records shards started elsewhere. */
int coord_shards_external(struct coord_shards *s, const char *addrs, const char *token,
                          const char *admin_token, char *err, size_t errlen);

/* Starts more local shards so there are n (same tokens); their addresses are appended.
 * Returns 0 or a negative code with a message in err. */
int coord_shards_grow(struct coord_shards *s, uint32_t n, const char *ps_bin, const char *dir,
                      char *err, size_t errlen);

/* Starts a new local shard in place of shard i (same tokens, a new port; on the pool, a new
 * route on another node that is up, not its backup's): its pid and its address in addrs
 * change. Returns 0 or a negative code with a message in err. */
int coord_shards_replace(struct coord_shards *s, uint32_t i, const char *ps_bin, const char *dir,
                         char *err, size_t errlen);

/* Starts a backup process for shard i (ps.replicas 2; same tokens, a new port): bpid[i] and
 * baddr[i]. The primary makes it its backup (smlt_set_backup()). Returns 0 or a negative
 * code with a message in err. */
int coord_shards_start_backup(struct coord_shards *s, uint32_t i, const char *ps_bin,
                              const char *dir, char *err, size_t errlen);

/* Shard i's backup is its primary now (after smlt_promote()): pid and address move over, and
 * shard i has no backup until another is started. */
void coord_shards_promote(struct coord_shards *s, uint32_t i);

/* Returns the index of a shard whose backup process has exited (and forgets it), or -1. */
int coord_shards_check_backups(struct coord_shards *s);

/* The PS nodes the job runs (a backup is a node too): what is billed. */
uint32_t coord_shards_nodes(const struct coord_shards *s);

/* Keeps the first n local shards and stops the others by pid (after they were retired by a
 * reshard). */
void coord_shards_shrink(struct coord_shards *s, uint32_t n);

/* Shard i's address into out ("" when there is no shard i). */
void coord_shards_addr(const struct coord_shards *s, uint32_t i, char *out, size_t len);

/* Writes the addresses of the first n shards to out ("host:port,..."). */
void coord_shards_addrs(const struct coord_shards *s, uint32_t n, char *out, size_t len);

/* Returns the index of a local shard that has exited (and reaps it), or -1 if all are up. */
int coord_shards_check(struct coord_shards *s);

/* Stops local shards by pid (SIGTERM, then SIGKILL after 3 s). The orderly way first asks
 * them to exit over the wire (an admin Shutdown: coord_admin.h), which the job does before. */
void coord_shards_stop(struct coord_shards *s);

/* Local shards listen on bind (default 127.0.0.1; "0.0.0.0" for workers elsewhere) and are
 * named by adv in the addresses workers get (default: bind, or 127.0.0.1 for a wildcard).
 * For every job of the process, before any starts. Returns 0, or SMLT_EINVAL with a message
 * in err (adv too long for an address). */
int coord_shards_set_hosts(const char *bind, const char *adv, char *err, size_t errlen);

/* Fills buf with n random hex characters (from /dev/urandom) and a NUL. */
void coord_random_hex(char *buf, size_t n);

#endif
