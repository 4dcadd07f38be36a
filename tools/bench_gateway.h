/* bench_gateway.h: a function platform's front door, on loopback, in front of
 * `smlt-worker --http` instances. It stands in for the OpenFaaS gateway (POST /function/NAME,
 * or POST /async-function/NAME with its queue-worker) or the Knative activator (POST /) in
 * `smlt-bench invoke --platform` and in tests/integration/test_platforms.c:
 *   - each invocation goes to the instance with the most free slots, on a connection of its
 *     own (one HTTP/1.1 connection runs its requests one after another, and a slice waiting
 *     under BSP for a rank queued behind it would wait forever);
 *   - synchronous: when every slot is taken it answers 429, the platform's pushback, which the
 *     coordinator's backend retries with backoff;
 *   - asynchronous (OpenFaaS's gateway and queue-worker): 202 Accepted with an X-Call-Id at
 *     once, the invocation queued until an instance has a free slot, run there, and its
 *     response posted to the request's X-Callback-Url with X-Call-Id, X-Function-Status,
 *     X-Function-Name and X-Duration-Seconds;
 *   - any other method or path is answered 404.
 * It runs on a thread of its own. */
#ifndef BENCH_GATEWAY_H
#define BENCH_GATEWAY_H

#include <stddef.h>

struct bench_gateway;

struct bench_gateway_opts {
    const char *path;     /* what invocations are posted to */
    const int *ports;     /* the instances' ports */
    const char *const *hosts; /* their hosts (IP addresses; NULL: all 127.0.0.1) */
    const char *listen;   /* where the gateway listens (NULL: "127.0.0.1:0") */
    int n;                /* how many (1..16) */
    int slots;            /* invocations each takes at once */
    int async;            /* OpenFaaS's /async-function: 202, queue, callback */
    const char *function; /* X-Function-Name of the callbacks (default "smlt-worker") */
    /* For tests of the coordinator's callback route: */
    int push_back_first;  /* async: answer the first submission 503 (the backend retries) */
    int replay_first;     /* async: after the first callback taken, post it again, then with
                             its URL's last character changed (a forged secret) */
    const char *watch;    /* async: count callback URLs that contain this string */
};

struct bench_gateway_counts {
    int routed;         /* invocations sent to an instance */
    int pushed_back;    /* answered 429 (sync) or 503 (async) */
    int refused;        /* answered 404 or 400 */
    int accepted;       /* async: answered 202 */
    int called_back;    /* async: results posted to their callback URL */
    int cb_ok, cb_other; /* the coordinator's answers to them: 200, anything else */
    int dup_refused;    /* replay_first: the repeated callback answered 404 */
    int forged_refused; /* replay_first: the forged one answered 403 */
    int watched;        /* callback URLs containing opts.watch */
};

/* Starts a gateway (on 127.0.0.1, port 0, unless o->listen says otherwise). Returns NULL with
 * a message in err. */
struct bench_gateway *bench_gateway_start(const struct bench_gateway_opts *o, char *err,
                                          size_t errlen);

/* The port it listens on. */
int bench_gateway_port(const struct bench_gateway *g);

/* Waits up to 5 s for the answers to the callbacks posted, stops its thread, closes every
 * connection and frees it; its counts go to *c (may be NULL). */
void bench_gateway_stop(struct bench_gateway *g, struct bench_gateway_counts *c);

/* `smlt-bench gateway`: a gateway in front of instances elsewhere (deploy/podman/cluster.sh's
 * function platform), until SIGINT or SIGTERM. */
int bench_gateway_main(int argc, char **argv);

#endif
