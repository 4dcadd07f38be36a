/* coord_backend.h: the function platform a coordinator invokes workers on.
 *
 * A backend runs invocations of a function: it is given a payload (a JSON line the worker
 * bootstrap reads) and, when the invocation ends, reports how: the function's response (a
 * JSON line), a kill at the time limit, a crash, or a failure to start; and what to bill: the
 * duration and the memory size. Like real platforms it enforces a concurrency limit (excess
 * invocations queue), a memory limit and a time limit, and may serve an invocation from a warm
 * instance that already ran the same function (keeping its process state: data, buffers,
 * connections) instead of a cold start.
 *
 * The embedded local backend (coord_backend_local.c) runs worker processes on this machine; the
 * HTTP backends (coord_backend_http.c: OpenFaaS, Knative) and AWS Lambda
 * (coord_backend_lambda.c) implement the same operations over the network. The functions
 * below dispatch to them (coord_backend.c).
 * Single-threaded: call from the coordinator's event loop thread; callbacks come from it. */
#ifndef COORD_BACKEND_H
#define COORD_BACKEND_H

#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>

enum coord_inv_status {
    COORD_INV_OK = 0,       /* the function returned a response */
    COORD_INV_TIMEOUT = 1,  /* killed at the time limit */
    COORD_INV_CRASHED = 2,  /* the instance died (signal, exit, out of memory) */
    COORD_INV_CANCELED = 3, /* coord_backend_cancel() */
    COORD_INV_FAILED = 4    /* could not be started */
};

struct coord_inv_req {
    const char *function;   /* warm instances are reused only for the same function name */
    const char *payload;    /* one line of JSON, no newline (copied) */
    uint32_t memory_mb;
    uint32_t time_limit_s;
    const char *log_path;   /* the instance's stderr is appended here (NULL: inherited) */
    pid_t avoid_pid;        /* do not serve this invocation on that instance, and retire it
                               (a straggler's host); 0: any warm instance will do */
};

struct coord_inv_result {
    enum coord_inv_status status;
    const char *response;   /* the response line (borrowed for the callback), or NULL */
    double duration_s;      /* wall time from start (cold: including the process start) to end */
    double queued_s;        /* time spent waiting for a concurrency slot */
    int cold;               /* served by a new instance */
    pid_t pid;
    int exit_status;        /* waitpid status when the instance ended, else -1 */
    char detail[160];       /* plain words: "killed at the 10 s time limit", "exit status 1" */
    uint32_t memory_mb;     /* the memory size the platform says it billed duration_s at (Lambda's
                               REPORT line: the function's configured size); 0: the size asked
                               for in the request */
};

/* Called once per invocation when it ends (never from inside coord_backend_invoke()). */
typedef void (*coord_inv_fn)(uint64_t inv, const struct coord_inv_result *r, void *arg);

struct coord_backend_stats {
    uint64_t invocations, cold_starts, warm_starts, timeouts, crashes, queued;
    uint64_t callbacks;          /* results that came by callback (OpenFaaS async) */
    uint64_t callbacks_refused;  /* callbacks refused: unknown or ended, wrong secret, malformed */
    uint32_t running, idle, waiting;
    double gb_s;
};

/* What an asynchronous invocation's callback brought (OpenFaaS's queue-worker posts it to
 * BASE/api/callback/ID/SECRET): every string borrowed for the call, NULL when absent. */
#define COORD_CALLBACK_MAX_BODY (64u << 10) /* a response line is under 1 KiB */
#define COORD_CALLBACK_SECRET_HEX 64        /* 32 random bytes, in hex */
struct coord_inv_callback {
    const char *target;          /* "ID/SECRET": the callback URL's path after /api/callback/ */
    const char *body;            /* the function's response body, NUL-terminated */
    size_t body_len;             /* over COORD_CALLBACK_MAX_BODY: refused (body may be NULL) */
    const char *call_id;         /* X-Call-Id */
    const char *function_status; /* X-Function-Status: the function's HTTP status (required) */
    const char *function_name;   /* X-Function-Name */
    const char *duration_s;      /* X-Duration-Seconds: what the function ran (billed from it) */
};

/* A backend: its operations, first in every implementation's struct. */
struct coord_backend;
struct coord_backend_ops {
    const char *name; /* "local", "lambda", "openfaas", "knative" */
    int (*invoke)(struct coord_backend *b, const struct coord_inv_req *req, coord_inv_fn cb,
                  void *arg, uint64_t *inv);
    int (*cancel)(struct coord_backend *b, uint64_t inv);
    pid_t (*pid)(struct coord_backend *b, uint64_t inv);
    void (*drop_function)(struct coord_backend *b, const char *function);
    void (*stats)(const struct coord_backend *b, struct coord_backend_stats *st);
    void (*free)(struct coord_backend *b);
    /* Platforms answered by callback (NULL for the others). */
    int (*callback)(struct coord_backend *b, const struct coord_inv_callback *cb, char *err,
                    size_t errlen);
    int (*set_callback_base)(struct coord_backend *b, const char *url, char *err, size_t errlen);
};
struct coord_backend {
    const struct coord_backend_ops *ops;
};

struct coord_backend_local_conf {
    const char *worker_bin;  /* the worker bootstrap executable (smlt-worker) */
    uint32_t concurrency;    /* instances running at once; further invocations queue */
    double keep_warm_s;      /* an idle instance is kept this long for reuse, then stopped */
    int memory_limit;        /* enforce memory_mb with RLIMIT_AS (default on) */
};

/* OpenFaaS (POST GATEWAY/function/NAME) or Knative (POST URL) instances of smlt-worker --http
 * (coord_backend_http.c). With async, OpenFaaS runs each invocation asynchronously: POST
 * GATEWAY/async-function/NAME with X-Callback-Url: CALLBACK_URL/api/callback/ID/SECRET, 202
 * Accepted, and the result comes to coord_backend_callback(). */
struct coord_backend_http_conf {
    int knative;             /* 1: url is the Knative service's; 0: OpenFaaS gateway + function */
    const char *url;         /* the gateway (http://host:8080) or the service URL */
    const char *function;    /* OpenFaaS: the function's name */
    uint32_t concurrency;    /* requests at once; more wait (default 64) */
    int max_retries;         /* 429/502/503/504/unreachable retried this often (default 8) */
    int async;               /* OpenFaaS: asynchronous invocations answered by callback */
    const char *callback_url; /* async: the coordinator's API as the queue-worker reaches it
                                 (NULL: set later with coord_backend_set_callback_base()) */
    double grace_s;          /* past the time limit before an invocation is given up (0: 10) */
};

/* Returns the HTTP backend (copies conf), or NULL with a message in err. */
struct coord_backend *coord_backend_http_new(struct event_base *base,
                                             const struct coord_backend_http_conf *conf,
                                             char *err, size_t errlen);

/* AWS Lambda's Invoke API, SigV4-signed (coord_backend_lambda.c). */
struct coord_backend_lambda_conf {
    const char *function;    /* the function's plain name (not an ARN) */
    const char *region;      /* NULL: AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config, us-east-1 */
    const char *qualifier;   /* version or alias (NULL: $LATEST) */
    const char *endpoint;    /* NULL: https://lambda.REGION.amazonaws.com (an emulator's URL) */
    uint32_t concurrency;    /* Invokes at once (default 64) */
};

/* Returns the lambda backend, or NULL with a message in err (no function, an ARN, no
 * credentials anywhere). */
struct coord_backend *coord_backend_lambda_new(struct event_base *base,
                                               const struct coord_backend_lambda_conf *conf,
                                               char *err, size_t errlen);

/* Returns the local backend on base (copies conf), or NULL. */
struct coord_backend *coord_backend_local_new(struct event_base *base,
                                              const struct coord_backend_local_conf *conf);

/* Starts (or queues) an invocation; *inv gets its id. cb is called when it ends. Returns 0 or a
 * negative code (then cb is never called). */
int coord_backend_invoke(struct coord_backend *b, const struct coord_inv_req *req, coord_inv_fn cb,
                         void *arg, uint64_t *inv);

/* Ends a running or queued invocation now (the instance is killed); its callback follows with
 * COORD_INV_CANCELED. Returns 0 or SMLT_ENOTFOUND. */
int coord_backend_cancel(struct coord_backend *b, uint64_t inv);

/* The pid of the instance running invocation inv, or 0 (queued / unknown / not on this
 * machine). For tests that kill a worker mid-slice, and for logs. */
pid_t coord_backend_pid(struct coord_backend *b, uint64_t inv);

/* Stops the idle instances of a function (its job ended). */
void coord_backend_drop_function(struct coord_backend *b, const char *function);

void coord_backend_stats(const struct coord_backend *b, struct coord_backend_stats *st);

/* Kills every instance (by pid), fails queued invocations with COORD_INV_CANCELED, frees b. */
void coord_backend_free(struct coord_backend *b);

/* A callback's result for an asynchronous invocation (OpenFaaS async): the invocation that
 * cb->target names ends as its synchronous answer would have (its callback runs before this
 * returns), unless the function's status is pushback (429, 502, 503, 504: submitted again,
 * with backoff). Returns 0; or, with a message in err and nothing changed: SMLT_ENOTFOUND (no
 * such invocation awaits a callback: unknown, ended or timed out, a duplicate; or a platform
 * without callbacks), SMLT_EPERM (the wrong secret), SMLT_EINVAL (no valid X-Function-Status),
 * SMLT_ETOOBIG (body over COORD_CALLBACK_MAX_BODY). The secret is checked before anything else
 * is looked at. Every refusal is counted (callbacks_refused). */
int coord_backend_callback(struct coord_backend *b, const struct coord_inv_callback *cb, char *err,
                           size_t errlen);

/* 1 when b's invocations are answered by callback. */
int coord_backend_takes_callbacks(const struct coord_backend *b);

/* Sets the base URL ("http://host:port", no trailing slash needed) callbacks are sent to, on a
 * backend that takes them. Returns 0, or SMLT_EINVAL with a message (not http:// or https://,
 * too long, or a backend without callbacks). */
int coord_backend_set_callback_base(struct coord_backend *b, const char *url, char *err,
                                    size_t errlen);

/* The platform's name ("local", ...). */
const char *coord_backend_name(const struct coord_backend *b);

#endif
