/* bench_peers.h: the peers that `smlt-bench ps` measures SMLT-C's push+pull against.
 *
 *   - the loopback TCP ceiling for one sync: a client writes N bytes, an echo server reads them
 *     all and writes N bytes back, both sides using pre-allocated, pre-faulted buffers;
 *   - model sync through a store, as SMLT, LambdaML and MLLess do it: each worker SETs its
 *     gradient into a private redis-server on loopback and GETs the model back, with a raw-RESP
 *     client that writes from and reads into pre-faulted float buffers (the peer's best honest
 *     client: no copies, no reply objects).
 *
 * Every function here starts its own processes (an echo server, worker processes, redis-server),
 * talks to them on 127.0.0.1 only, and stops every one of them by pid on every path, errors
 * included. Children are forked from the calling thread and carry PR_SET_PDEATHSIG, so they also
 * die if the caller dies: call these functions from a thread that outlives the measurement
 * (normally the main thread).
 *
 * Timings are wall-clock milliseconds (CLOCK_MONOTONIC) per sync; every function runs one
 * untimed warm-up sync per worker first. With several workers, all of them finish their warm-up
 * before any starts its timed syncs. Sample arrays are worker-major: sample r of worker w is
 * ms_out[w * reps + r]. */
#ifndef BENCH_PEERS_H
#define BENCH_PEERS_H

#include <stddef.h>
#include <sys/types.h>

/* Largest blob the peers accept: Redis refuses bulk strings over 512 MiB (proto-max-bulk-len). */
#define BENCH_PEERS_MAX_BYTES ((size_t)512 << 20)
/* Most worker processes one call starts. */
#define BENCH_PEERS_MAX_WORKERS 64
/* A blocking socket call that makes no progress for this long fails with SMLT_ETIMEDOUT. */
#define BENCH_PEERS_IO_TIMEOUT_MS 60000

/* TCP ceiling, one connection. Forks an echo server listening on 127.0.0.1 port 0 (the port
 * comes back through a pipe); the calling process is the client. One sync = write `bytes`, then
 * read `bytes` back. Runs one untimed warm-up sync, then `reps` timed ones into ms_out[0..reps).
 * Takes bytes in [1, BENCH_PEERS_MAX_BYTES], reps >= 1; borrows ms_out (reps doubles).
 * Returns 0, SMLT_EINVAL, SMLT_ETOOBIG, SMLT_ENOMEM, SMLT_ESYS, SMLT_EIO, SMLT_ECLOSED,
 * SMLT_ETIMEDOUT or SMLT_ECORRUPT (the echo came back wrong). Memory: 2 * bytes here, bytes in
 * the server. */
int bench_peers_tcp_sync(size_t bytes, int reps, double *ms_out);

/* TCP ceiling, `workers` client processes, each with its own connection to one server process
 * that serves them concurrently (a thread per connection). Each client times its own syncs;
 * ms_out holds workers * reps samples, worker-major. With workers > 1 the clients and the server
 * share the machine's cores, so the figures are informative only.
 * Takes workers in [1, BENCH_PEERS_MAX_WORKERS]; otherwise as bench_peers_tcp_sync().
 * Memory: 2 * bytes per client process, bytes per connection in the server. */
int bench_peers_tcp_sync_multi(size_t bytes, int workers, int reps, double *ms_out);

/* A private redis-server on loopback (no persistence, its own temporary directory). */
struct bench_redis;

/* Starts redis-server as a child: $SMLT_REDIS_SERVER if set (no search then), else redis-server
 * from PATH, else /usr/bin/redis-server. Binds 127.0.0.1 on a free port, no snapshots, no AOF,
 * in a fresh directory under $TMPDIR (or /tmp), and waits (10 s at most) until PING answers
 * +PONG. Retries with another port if the first one was taken meanwhile.
 * Returns 0 and *out (free with bench_peers_redis_stop()), or SMLT_ENOTFOUND (no executable
 * redis-server; logged with a hint), SMLT_ETIMEDOUT, SMLT_EIO (redis-server exited; the tail of
 * its log is logged), SMLT_ESYS, SMLT_ENOMEM or SMLT_EINVAL. On failure nothing is left running
 * and the directory is removed. */
int bench_peers_redis_start(struct bench_redis **out);

/* Stops the server: SIGTERM to its pid, waits up to 5 s, then SIGKILL to that pid; reaps it,
 * removes its directory and frees r. NULL is a no-op. */
void bench_peers_redis_stop(struct bench_redis *r);

/* Returns the server's pid (for tests that check it is gone) or its TCP port on 127.0.0.1. */
pid_t bench_peers_redis_pid(const struct bench_redis *r);
int bench_peers_redis_port(const struct bench_redis *r);

/* Model sync through Redis. Seeds key "model" with a `bytes` float32 blob once, then each of
 * `workers` workers (forked processes; with one worker the calling process itself) runs one
 * sync per rep: SET grad:<w> <its gradient, bytes> then GET model into its model buffer,
 * checking a few floats of what arrived. One untimed warm-up sync per worker, then `reps` timed
 * ones; ms_out holds workers * reps samples, worker-major.
 * Borrows r for the call. Takes bytes a multiple of 4 in [4, BENCH_PEERS_MAX_BYTES], workers in
 * [1, BENCH_PEERS_MAX_WORKERS], reps >= 1. Returns 0, SMLT_EINVAL, SMLT_ETOOBIG, SMLT_ENOMEM,
 * SMLT_ESYS, SMLT_EIO, SMLT_ECLOSED, SMLT_ETIMEDOUT, SMLT_EPROTO (unexpected reply) or
 * SMLT_ECORRUPT (the model came back wrong). Memory: 2 * bytes per worker process here, about
 * (workers + 1) * bytes in redis-server. */
int bench_peers_redis_sync(struct bench_redis *r, size_t bytes, int workers, int reps,
                           double *ms_out);

/* Returns the p-th percentile (p in [0, 100], clamped) of v[0..n) by linear interpolation
 * between closest ranks (the numpy default: rank = p/100 * (n-1)); p = 50 is the median.
 * Sorts v in place (borrowed). Returns NaN if n < 1, v is NULL or p is NaN. */
double bench_peers_percentile(double *v, int n, double p);

#endif
