/* coord_backend_http_int.h: the request-per-invocation engine of coord_backend_http.c (a
 * queue under a concurrency limit, retries with backoff and jitter, the time limit, cancel,
 * stats) and what a platform plugs into it: how to make an invocation's request, and how to
 * read its answer. OpenFaaS and Knative (coord_backend_http.c) and AWS Lambda
 * (coord_backend_lambda.c) are such platforms.
 *
 * A platform may answer later, by callback (OpenFaaS async): its request is only accepted
 * (houtcome.accepted), the invocation stays running, and the answer comes to hb_callback(),
 * authenticated by a secret of the invocation's own, where the platform's interpret_callback()
 * reads it as interpret() reads a synchronous answer. Private to the coordinator. */
#ifndef COORD_BACKEND_HTTP_INT_H
#define COORD_BACKEND_HTTP_INT_H

#include "coord_backend.h"
#include "coord_curl.h"

struct hb;
struct hinv;

/* What an answer means. */
struct houtcome {
    enum coord_inv_status status;
    int retry;              /* the platform pushed back: try again after a backoff */
    char *response;         /* COORD_INV_OK: the response line (malloc'd; taken) */
    double billed_s;        /* what the platform billed (< 0: it did not say; the duration) */
    uint32_t billed_mb;     /* the memory size it billed at (0: it did not say; as asked) */
    int cold;               /* a new instance served it */
    int accepted;           /* queued by the platform: the answer comes by callback */
    char call_id[96];       /* with accepted: the platform's id of the call, if it gave one */
    char detail[160];
};

struct hplat {
    const char *name;
    /* Fills q (its strings must live until the next call on this hb) for v's request.
     * Returns 0, 1 when it cannot be made yet (credentials are being fetched: the engine
     * asks again shortly), or -1 with a message in detail. */
    int (*prepare)(struct hb *b, struct hinv *v, struct coord_curl_req *q, char *detail,
                   size_t len);
    void (*interpret)(struct hb *b, const struct coord_curl_resp *r, struct houtcome *o);
    void (*free)(struct hb *b);
    /* Platforms answered by callback: reads the callback (r: the function's status and body)
     * as interpret() reads a synchronous answer. NULL: the platform sends no callbacks. */
    void (*interpret_callback)(struct hb *b, const struct coord_curl_resp *r,
                               struct houtcome *o);
};

#define HB_ENDED 512 /* invocations remembered after their end, to say why a callback is late */

/* An ended invocation of a platform answered by callback. */
struct hended {
    uint64_t id;
    char secret[COORD_CALLBACK_SECRET_HEX + 1];
    char why[48];
};

struct hinv {
    struct hb *b;
    uint64_t id, req;
    char *payload;
    uint32_t memory_mb, time_limit_s;
    uint32_t billed_mb;     /* the memory size the platform billed at, once it said (0: unknown) */
    coord_inv_fn cb;
    void *arg;
    double t_queued, t_start, t_deadline;
    double t_sent;             /* the last request's start */
    int attempts;
    struct event *retry_ev;
    struct hinv *next, *prev; /* the queue, or the running list */
    int running;
    int canceled;              /* its end is on the way (hb_cancel's deferred event) */
    /* Answered by callback: */
    char secret[COORD_CALLBACK_SECRET_HEX + 1]; /* its callback URL's ("" until first sent) */
    int answered;              /* a callback brought its result */
    char call_id[96];          /* the platform's id of the call (X-Call-Id), if it gave one */
    struct event *deadline_ev; /* the time limit, while the callback is awaited */
};

struct hb {
    struct coord_backend base_;
    const struct hplat *plat;
    void *plat_state;          /* the platform's own (credentials, ...) */
    struct event_base *base;
    uint32_t concurrency;
    int max_retries;
    char *url;                 /* where invocations go */
    char name[16];
    struct coord_curl *cc;
    struct hinv *wait_head, *wait_tail, *run;
    uint64_t next_id;
    uint32_t busy;
    uint64_t rng;
    double grace_s;            /* past the time limit before an invocation is given up */
    struct coord_backend_stats st;
    /* Answered by callback: */
    char *callback_base;       /* BASE of BASE/api/callback/ID/SECRET (NULL: not known yet) */
    char *function;            /* the function's name, to check X-Function-Name against */
    char cb_hdr[1024];         /* the X-Callback-Url header of the request being made */
    const char *hdrs[3];
    struct hended ended[HB_ENDED];
    unsigned n_ended;          /* entries written (the ring's next is n_ended % HB_ENDED) */
};

/* The engine on base for platform plat (ops: the backend's operations with its name).
 * Returns NULL when out of memory. */
struct hb *hb_new(struct event_base *base, const struct coord_backend_ops *ops,
                  const struct hplat *plat, uint32_t concurrency, int max_retries);

/* Frees what hb_new() made (the platform's free() first). */
void hb_free(struct hb *b);

/* The operations every such backend shares (its coord_backend_ops point here). */
int hb_invoke(struct coord_backend *b, const struct coord_inv_req *req, coord_inv_fn cb,
              void *arg, uint64_t *inv);
int hb_cancel(struct coord_backend *b, uint64_t inv);
void hb_stats(const struct coord_backend *b, struct coord_backend_stats *st);
void hb_free_op(struct coord_backend *b);
int hb_callback(struct coord_backend *b, const struct coord_inv_callback *cb, char *err,
                size_t errlen);
int hb_set_callback_base(struct coord_backend *b, const char *url, char *err, size_t errlen);

/* The worker's response line says whether its instance started cold. */
int hb_resp_cold(const char *body);

#endif
