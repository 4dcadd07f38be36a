/* bench_storm.h: `smlt-bench ps --storm`: many client connections pushing and pulling against
 * running shards for a fixed time, with the shards' memory and connection counters watched.
 *
 * The load runs on one thread with one event loop and raw proto/rpc_conn connections (not one
 * libsmlt client per connection: see bench_storm.c). Everything is bounded: the connection count,
 * the time, one request in flight per connection, a deadline per request. It only talks to
 * 127.0.0.1. bench_storm_run() is also what tests/integration/test_storm.c drives. */
#ifndef BENCH_STORM_H
#define BENCH_STORM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_STORM_MAX_SHARDS 8u
#define BENCH_STORM_MAX_CLIENTS 1024u
/* Error kinds counted (bench_storm_err_name() names them). */
enum bench_storm_err {
    STORM_ERR_CONNECT,  /* a connection failed before its handshake completed */
    STORM_ERR_CLOSED,   /* a connection was lost during the load */
    STORM_ERR_REPLY,    /* the shard answered with an ErrorReply (by code below) */
    STORM_ERR_PROTO,    /* an unexpected reply: type, request id, range or payload size */
    STORM_ERR_TIMEOUT,  /* a request not answered within its deadline */
    STORM_ERR_STATS,    /* the shards' stats could not be read */
    STORM_ERR_KINDS
};

/* RSS samples taken per shard: after the first second of load, at the middle, at the end. */
#define STORM_RSS_SAMPLES 3

struct bench_storm_conf {
    const char *addrs;        /* "127.0.0.1:P,127.0.0.1:Q": shard i at position i (borrowed) */
    const pid_t *pids;        /* the shards' pids for VmRSS, or NULL (not sampled) */
    const char *token;        /* job token */
    const char *admin_token;  /* admin token (NULL: the job token) */
    uint32_t clients;         /* 1..BENCH_STORM_MAX_CLIENTS; each connects to every shard */
    double seconds;           /* load time, > 0 */
    uint64_t floats;          /* model size in float32 elements */
    unsigned req_timeout_s;   /* a request's deadline (0: 30 s) */
};

struct bench_storm_shard {
    long rss_kb[STORM_RSS_SAMPLES]; /* -1: not sampled */
    uint32_t conns_load;            /* connections the shard counted at the end of the load */
    uint32_t conns_after;           /* ... and once the storm's connections were closed */
    uint64_t frames_bad, auth_failures, pushes_counted, pulls_served;
};

struct bench_storm_result {
    uint32_t nshards, conns;     /* connections opened: clients x shards */
    uint64_t pushes, pulls;      /* requests answered without error */
    uint64_t bytes;              /* payload bytes moved (both directions) */
    double seconds;              /* measured load time */
    uint64_t errors[STORM_ERR_KINDS];
    uint64_t reply_codes[64];    /* ErrorReply count by -code (the last slot: any other) */
    struct bench_storm_shard shard[BENCH_STORM_MAX_SHARDS];
};

/* Sets up an ASP job of conf->floats floats with conf->clients workers on the shards, runs the
 * storm and fills *res. Returns 0 when the storm ran (its errors are in res), or a negative
 * SMLT_E* code when it could not start (bad conf, a non-loopback address, job setup failed). */
int bench_storm_run(const struct bench_storm_conf *conf, struct bench_storm_result *res);

/* Total errors of every kind. */
uint64_t bench_storm_errors(const struct bench_storm_result *res);

/* Growth bound on a shard's RSS from the first sample to the largest later one: more than
 * max(STORM_RSS_GROWTH_MB, STORM_RSS_GROWTH_PCT % of the first) fails the benchmark. */
#define STORM_RSS_GROWTH_MB 64
#define STORM_RSS_GROWTH_PCT 20
/* 1 if shard i's RSS grew past the bound. */
int bench_storm_rss_grew(const struct bench_storm_result *res, uint32_t i);

const char *bench_storm_err_name(int kind);

/* Prints the report: text, or one JSON object per line with json. */
void bench_storm_print(const struct bench_storm_conf *conf, const struct bench_storm_result *res,
                       int json);

#endif
