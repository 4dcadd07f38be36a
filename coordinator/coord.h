/* coord.h: the coordinator: it owns jobs and runs them on function workers.
 *
 * For each job it starts (or is given) the parameter-server shards, configures them, invokes
 * one worker function per rank through the platform backend in slices that fit the function's
 * time limit, re-invokes continuations and failed invocations from the last reported data
 * cursor, aggregates progress, meters cost into the job's ledger, records everything in the
 * job's journal, saves the trained model, and stops the shards. The HTTP API (coord_http.c)
 * and the worker RPC (coord_rpc.c) call in here. Single-threaded: the event loop's thread,
 * which never waits on the network (calls to the shards run through coord_admin.h). */
#ifndef COORD_H
#define COORD_H

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "coord_backend.h"

struct coord;
struct smlt_tls;

struct coord_conf {
    const char *data_dir;    /* jobs/<id>/ journals, logs, models */
    const char *bin_dir;     /* where smlt-ps and smlt-worker are */
    const char *rpc_listen;  /* worker RPC address, default 127.0.0.1:0 */
    unsigned concurrency;    /* local backend: instances at once (default 64) */
    double keep_warm_s;      /* local backend: idle instance lifetime (default 60) */
    int no_memory_limit;     /* local backend: do not enforce memory_mb */
    /* The function platform: "local" (default), "openfaas", "knative" or "lambda" */
    const char *platform;
    const char *function;    /* openfaas, lambda: the function's name */
    const char *gateway;     /* openfaas: the gateway's URL */
    const char *function_url; /* knative: the service's URL */
    const char *region;      /* lambda: the AWS region (default: AWS_REGION, us-east-1) */
    const char *qualifier;   /* lambda: the version or alias invoked (default none: $LATEST) */
    const char *lambda_endpoint; /* lambda: the Invoke API's base URL (emulators) */
    int openfaas_async;      /* openfaas: POST /async-function/NAME, answered by callback */
    const char *callback_url; /* openfaas async: this coordinator's API as the gateway's
                                 queue-worker reaches it (NULL: coord_set_callback_base()) */
    const char *rpc_advertise; /* HOST:PORT workers dial for the RPC (default: where it listens) */
    const char *ps_listen_host;    /* local shards listen here (default 127.0.0.1) */
    const char *ps_advertise_host; /* and are dialled here (default: the listen host) */
    /* TLS (all unset: plain TCP everywhere). With tls_cert and tls_key, everything of the
     * coordinator is TLS: the HTTP API (coord_http_set_tls()), the worker RPC, the local
     * shards it starts (with the same certificate), its calls to the shards (trusting tls_ca,
     * presenting the same certificate for mutual TLS), and its invocations tell the workers
     * (the CA's PEM text travels in the payload). tls_verify_client: mutual TLS on its ports
     * and its shards' (clients need a certificate that tls_ca signs). */
    const char *tls_cert, *tls_key, *tls_ca;
    int tls_verify_client;
    /* The PS node pool (coord_pool.h): "host:port,..." or "dns:NAME:PORT", and its token.
     * NULL: local shards (processes the coordinator starts). */
    const char *ps_pool, *ps_pool_token;
};

/* Returns a coordinator on base, with the history of earlier jobs restored from their
 * journals, or NULL with a message in err. */
struct coord *coord_new(struct event_base *base, const struct coord_conf *conf, char *err,
                        size_t errlen);

/* Submits a job spec (JSON). Returns 0 and the new job's id in id, or a negative code with a
 * message in err that names the offending field. */
int coord_submit(struct coord *c, const char *json, size_t len, char *id, size_t idlen, char *err,
                 size_t errlen);

/* The jobs, newest first, as a JSON array of summaries (new reference). */
json_t *coord_jobs_json(struct coord *c);

/* One job in detail, with its time series and decisions (new reference), or NULL. */
json_t *coord_job_json(struct coord *c, const char *id);

/* Prometheus HTTP service discovery (new reference): a JSON array of target groups, one per
 * metrics endpoint of a starting or running job's local shards and their backups:
 * {"targets": ["127.0.0.1:P"], "labels": {"job_id": ID, "shard": "N", "role": "primary" or
 * "backup"}}. Shards of jobs that are not running are left out. */
json_t *coord_prometheus_targets(struct coord *c);

/* GET /api/nodes: {"mode": "local"|"pool", "pool": SPEC, "nodes": [...]}: each PS node of the
 * pool with its state (connecting, up, down), capacity, reservations, shards and what the
 * coordinator placed on it. */
json_t *coord_nodes_json(struct coord *c);

/* Tells the caller of an asynchronous request (coord_cancel(), coord_checkpoint()) that it is
 * done: rc 0 or a negative code with a message in err; path, when not NULL, is the job's
 * model file. Called on the loop, never from inside the call that started the request. */
typedef void (*coord_done_fn)(struct coord *c, const char *id, int rc, const char *path,
                              const char *err, void *arg);

/* Cancels a job: its invocations end, its model so far is saved and its shards stop, which
 * takes round trips to the shards, so the job ends later: returns 0 and cb follows once it
 * has (then coord_job_json() shows it canceled). Or SMLT_ENOTFOUND, SMLT_EINVAL (already
 * ended, or being stopped) with a message in err, and cb is not called. */
int coord_cancel(struct coord *c, const char *id, coord_done_fn cb, void *arg, char *err,
                 size_t errlen);

/* Manual override of a running job's worker count (0: unchanged) and shard count (0:
 * unchanged). Returns 0 or a negative code with a message in err. */
int coord_scale(struct coord *c, const char *id, unsigned workers, unsigned shards, char *err,
                size_t errlen);

/* Saves a running job's current model (pulled from its shards, off the loop): returns 0 and
 * cb follows with the file's path. A job that has ended: returns 1 with its saved model's path
 * in path (cb is not called). Or a negative code with a message in err. */
int coord_checkpoint(struct coord *c, const char *id, coord_done_fn cb, void *arg, char *path,
                     size_t pathlen, char *err, size_t errlen);

/* The path of the job's saved model file (may not exist yet) and of its log. NULL if no job. */
const char *coord_job_model_path(struct coord *c, const char *id);
const char *coord_job_log_path(struct coord *c, const char *id);

/* Appends Prometheus text exposition of the coordinator's metrics to out. */
void coord_metrics(struct coord *c, struct evbuffer *out);

/* An OpenFaaS queue-worker's callback (POST /api/callback/ID/SECRET) for an asynchronous
 * invocation: see coord_backend_callback(), whose codes it returns with a message in err. */
int coord_callback(struct coord *c, const struct coord_inv_callback *cb, char *err,
                   size_t errlen);

/* For openfaas_async without a callback_url: callbacks go to http://HOST:PORT, the API's own
 * address as the daemon bound it (listen "HOST:PORT", port the one bound). Returns 0 (also
 * when the platform takes no callbacks), or SMLT_EINVAL with a message when HOST is a
 * wildcard (0.0.0.0, ::, none), which a queue-worker cannot dial: --callback-url is needed. */
int coord_set_callback_base(struct coord *c, const char *listen, int port, char *err,
                            size_t errlen);

/* The worker RPC address (for logs). */
const char *coord_rpc_address(const struct coord *c);

/* The server TLS context of coord_conf's tls_* options (borrowed while c lives), or NULL
 * when the coordinator runs without TLS: for the HTTP API. */
struct smlt_tls *coord_tls_server(struct coord *c);

/* Cancels every running job (saving their models), stops shards and instances, frees c. */
void coord_free(struct coord *c);

#endif
