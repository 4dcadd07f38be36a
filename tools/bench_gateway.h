/* bench_gateway.h: a function platform's front door, on loopback, in front of
 * `smlt-worker --http` instances. It stands in for the OpenFaaS gateway (POST /function/NAME)
 * or the Knative activator (POST /) in `smlt-bench invoke --platform` and in
 * tests/integration/test_platforms.c:
 *   - each invocation goes to the instance with the most free slots, on a connection of its
 *     own (one HTTP/1.1 connection runs its requests one after another, and a slice waiting
 *     under BSP for a rank queued behind it would wait forever);
 *   - when every slot is taken it answers 429, the platform's pushback, which the
 *     coordinator's backend retries with backoff;
 *   - any other method or path is answered 404.
 * It runs on a thread of its own. */
#ifndef BENCH_GATEWAY_H
#define BENCH_GATEWAY_H

#include <stddef.h>

struct bench_gateway;

struct bench_gateway_counts {
    int routed;      /* invocations sent to an instance */
    int pushed_back; /* answered 429 */
    int refused;     /* answered 404 */
};

/* Starts a gateway on 127.0.0.1, port 0, that routes POST path to the instances listening on
 * 127.0.0.1 at ports[0..n) (n <= 16), each taking slots invocations at once. Returns NULL
 * with a message in err. */
struct bench_gateway *bench_gateway_start(const char *path, const int *ports, int n, int slots,
                                          char *err, size_t errlen);

/* The port it listens on. */
int bench_gateway_port(const struct bench_gateway *g);

/* Stops its thread, closes every connection and frees it; its counts go to *c (may be NULL). */
void bench_gateway_stop(struct bench_gateway *g, struct bench_gateway_counts *c);

#endif
