/* worker_invoke.h: one function invocation, served by smlt-worker in any of its platform modes.
 *
 * An invocation's payload is a JSON object:
 *   {"coordinator": "host:port", "invocation": "ID", "token": "..."}
 * and, from a coordinator with TLS, "tls": true and "tls_ca": the CA certificates as PEM text
 * (at most SMLT_MAX_TLS_CA_PEM bytes): the worker then speaks TLS to the coordinator and to
 * the shards (the Assignment's ps_tls), trusting that CA and the file of SMLT_TLS_CA (or the
 * system's CAs with neither), and presents SMLT_TLS_CERT / SMLT_TLS_KEY for mutual TLS.
 * The worker connects to the coordinator over the protobuf-c RPC, proves the invocation with
 * its token, receives its Assignment (what to train, where the shards are, from which step, for
 * how long), trains it with worker_run() while sending Progress, reports Done, and answers with
 * its response line (worker_resp.h):
 *   {"invocation": "ID", "status": "finished"|"slice"|"time_up"|"failed", "next_step": N,
 *    "steps": N, "samples": N, "loss": x, "elapsed_s": x, "init_s": x, "cold": true|false,
 *    "error": "..."}
 * A warm instance (struct worker_invoke) keeps its data, model and shard connections, and its
 * connection to the coordinator, from one invocation to the next.
 *
 * The platform modes all call worker_invoke_serve():
 *   - `smlt-worker --invoke` (here): one payload per line of standard input, one response line
 *     per invocation on standard output; end of input ends the process. The coordinator's
 *     local runtime starts it so.
 *   - the Lambda Runtime API loop (worker_lambda.h);
 *   - an HTTP server for OpenFaaS and Knative (worker_http.h).
 *
 * The coordinator may die in the middle of an invocation (it restarts on the same RPC
 * address). The slice goes on against the shards; the worker dials the coordinator again once
 * a second and, on a new connection, says hello again for the invocation with `resume` set,
 * then goes on reporting. A refused resume stops the slice. Done is retried for up to 60 s
 * while the coordinator is away (never past the platform's limit, respond_by). The response
 * may then go nowhere (SIGPIPE is ignored). */
#ifndef WORKER_INVOKE_H
#define WORKER_INVOKE_H

#include <stdatomic.h>
#include <stddef.h>

/* One warm function instance: the worker and its link to the coordinator. Not thread-safe:
 * one thread serves its invocations, one at a time. */
struct worker_invoke;

/* What the platform says about one invocation. All zero (or a NULL pointer): no limits. */
struct worker_invoke_opts {
    double deadline;        /* CLOCK_MONOTONIC seconds by which the slice must end (the
                               platform's limit minus its margin); the earlier of it and the
                               Assignment's deadline applies; 0: the Assignment's alone */
    double respond_by;      /* CLOCK_MONOTONIC seconds: waiting for the coordinator (its
                               replies, retrying Done) stops before it; 0: no limit */
    const atomic_int *stop; /* borrowed; when set (from any thread), the slice ends after the
                               step in progress, reporting where it got to (status "slice");
                               a hello's reply is no longer waited for, and Done is retried
                               for 5 s more at most */
};

/* Returns a new instance with nothing loaded, or NULL when out of memory. */
struct worker_invoke *worker_invoke_new(void);
void worker_invoke_free(struct worker_invoke *s);

/* Checks that payload is an invocation: a JSON object of at most SMLT_MAX_INVOCATION bytes with
 * the three string fields, each 1 to SMLT_MAX_INVOCATION_FIELD characters, and, if present, a
 * boolean "tls" and a "tls_ca" string of 1 to SMLT_MAX_TLS_CA_PEM bytes (other fields are
 * ignored). Returns 0 or SMLT_EINVAL with a message in err. */
int worker_invoke_check(const char *payload, char *err, size_t errlen);

/* Serves one invocation from payload (borrowed; o may be NULL). *resp gets the response line
 * (no newline; free() it), also for a malformed payload (status "failed", as --invoke writes
 * it). Returns 0 when the payload was an invocation (whatever came of it: the status says),
 * SMLT_EINVAL when it was not (err says why, as worker_invoke_check()), or SMLT_ENOMEM with
 * *resp NULL. Blocks for the whole slice. */
int worker_invoke_serve(struct worker_invoke *s, const char *payload,
                        const struct worker_invoke_opts *o, char **resp, char *err,
                        size_t errlen);

/* Process settings every mode makes once: OpenBLAS on one thread, SIGPIPE ignored. */
void worker_invoke_init_process(void);

/* `smlt-worker --invoke`: serves invocations from stdin until it closes. Returns the process
 * exit code. */
int worker_invoke_main(void);

#endif
