/* fn_test.h: the function-platform tests' kit (test_worker_lambda.c, test_worker_http.c).
 *
 * A real coordinator drives a real smlt-worker in a platform mode through a relay. The test
 * gives the coordinator a --bin-dir where `smlt-worker` is the test binary itself: the local
 * runtime starts it as `smlt-worker --invoke`, and fn_shim_main() then hands each invocation line
 * on to $SMLT_TEST_RELAY_URL with an HTTP POST (no timeout) and prints the answer's body as the
 * response line. The URL is either smlt-worker --http's `POST /`, or the test's own Lambda
 * Runtime API server below (/test/relay), which queues the event for the smlt-worker that
 * polls it and answers the relay with what that worker posts back. Each answer is also appended
 * to $SMLT_TEST_RELAY_LOG ("STATUS BODY" lines) when it is set.
 *
 * The Runtime API server (struct rapi) serves, on 127.0.0.1 port 0 from a thread of the test
 * process:
 *   GET  /2018-06-01/runtime/invocation/next         held until an event is queued; headers
 *        Lambda-Runtime-Aws-Request-Id, Lambda-Runtime-Deadline-Ms (REAL epoch milliseconds:
 *        now + the configured deadline when the event is handed out), Lambda-Runtime-Trace-Id,
 *        Lambda-Runtime-Invoked-Function-Arn
 *   POST /2018-06-01/runtime/invocation/ID/response  recorded; 202 (an unknown ID: 400)
 *   POST /2018-06-01/runtime/invocation/ID/error     recorded with its
 *        Lambda-Runtime-Function-Error-Type header; 202
 *   POST /2018-06-01/runtime/init/error               recorded; 202
 *   POST /test/relay   (the shim) queues the body as an event and answers once it is answered
 *   POST /test/push    (the test) queues the body as an event and answers 202 at once
 * Everything it records stays readable until rapi_stop(). */
#ifndef TEST_FN_TEST_H
#define TEST_FN_TEST_H

#include <stddef.h>

#include "coord_test.h"

/* The relay's main(), for a test binary started as `smlt-worker --invoke`. Returns the exit
 * code (1 when the relay URL cannot be reached). */
int fn_shim_main(void);

/* Makes DIR under root holding smlt-ps (a link to the built one) and smlt-worker (a link to
 * this test binary), for the coordinator's --bin-dir. Returns 0 or -1. */
int fn_bin_dir(const char *root, char *dir, size_t dirlen);

/* Removes what fn_bin_dir() made. */
void fn_bin_dir_rm(const char *dir);

/* A coordinator whose local runtime relays to relay_url: fn_bin_dir() and a new data directory
 * under root, $SMLT_TEST_RELAY_URL set (the coordinator's workers inherit it), smlt-coordinator
 * started on them (ct_coord_start). */
struct fn_coord {
    struct test_daemon d;
    char bin_dir[300], data_dir[300];
};

/* Returns 0 or -1. */
int fn_coord_start(struct fn_coord *c, const char *root, const char *relay_url);

/* Stops the coordinator by its pid and removes its directories. Safe to call twice. */
void fn_coord_stop(struct fn_coord *c);

/* Submits a job of one worker and one shard: model on dataset, batch 32, lr 0.05, the given
 * epochs and function time limit. Returns its id (malloc'd), or NULL with the refusal in err. */
char *fn_submit(const struct fn_coord *c, const char *model, const char *dataset, int epochs,
                int time_limit_s, char *err, size_t errlen);

/* Waits up to 300 s for job id to end and checks (Check assertions) that it succeeded with
 * every step trained and a test accuracy of bar or more; on failure the job and the
 * coordinator's log are printed first, and dump() is called when not NULL. Returns the job (a
 * new reference). */
json_t *fn_wait_succeeded(struct fn_coord *c, const char *id, double bar, void (*dump)(void));

struct rapi;

struct rapi_rec {
    char kind[16];                 /* "response", "error", "init_error", "unknown_id" */
    char id[64];                   /* the event's request id */
    char error_type[64];           /* the Lambda-Runtime-Function-Error-Type header */
    char *body;
    double at;                     /* when it arrived (Unix seconds) */
    double handed;                 /* when its event was handed out (Unix seconds) */
    unsigned long long deadline_ms; /* the deadline its event was handed out with */
    int relayed;                   /* the event came from the coordinator through the shim */
};

/* Starts the server; events get a deadline deadline_s after they are handed out. Returns
 * NULL on failure. */
struct rapi *rapi_start(double deadline_s);
int rapi_port(const struct rapi *a);

/* The deadline of events handed out from now on; once_s > 0: the next event only gets once_s. */
void rapi_set_deadline(struct rapi *a, double deadline_s, double once_s);

/* Queues an event (body as is) from the test. Returns 0 or -1. */
int rapi_push(struct rapi *a, const char *body);

/* Waits up to timeout_s for n records of kind (NULL: any). Returns how many there are. */
int rapi_wait(struct rapi *a, const char *kind, int n, double timeout_s);

/* The i-th record (borrowed until rapi_stop), or NULL; and the count. */
const struct rapi_rec *rapi_rec(struct rapi *a, int i);
int rapi_count(struct rapi *a);

/* Events handed out to GET next so far. */
int rapi_handed(struct rapi *a);

void rapi_stop(struct rapi *a);

#endif
