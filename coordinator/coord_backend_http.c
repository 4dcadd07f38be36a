/* coord_backend_http.c: function platforms that run an invocation per HTTP request, and the
 * OpenFaaS (`POST GATEWAY/function/NAME`) and Knative (`POST SERVICE_URL`) platforms, whose
 * instances are `smlt-worker --http`: the request body is the invocation's payload, the
 * response body its response line. AWS Lambda (coord_backend_lambda.c) plugs into the same
 * engine (coord_backend_http_int.h).
 *
 * Like a platform's client: at most `concurrency` requests at once (more wait in FIFO order),
 * the function's time limit as the request's timeout (plus a grace for the network), and the
 * platform's pushback (429, 502, 503, 504, throttling, or no connection) retried with
 * exponential backoff and full jitter until the retries or the time limit run out. OpenFaaS
 * and Knative do not report what they bill, so the ledger's estimate (memory x duration of the
 * request that ran) stands. An invocation canceled while its request runs is only abandoned
 * here: the instance goes on until its slice ends, and its worker is told to stop at its next
 * progress report (the coordinator no longer knows its invocation). */
#include "coord_backend_http_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_rand.h"
#include "smlt_util.h"

#define HTTP_GRACE_S 10.0        /* over the time limit before the request is abandoned */
#define HTTP_BACKOFF_BASE_S 0.2
#define HTTP_BACKOFF_MAX_S 20.0
#define HTTP_NOT_READY_S 0.2     /* the platform cannot make the request yet: again after this */

static void hinv_free(struct hinv *v)
{
    if (v->retry_ev)
        event_free(v->retry_ev);
    free(v->payload);
    free(v);
}

static void run_unlink(struct hb *b, struct hinv *v)
{
    if (v->prev)
        v->prev->next = v->next;
    else
        b->run = v->next;
    if (v->next)
        v->next->prev = v->prev;
    v->next = v->prev = NULL;
    if (v->running)
        b->busy--;
    v->running = 0;
}

static void start_waiting(struct hb *b);

static void hinv_finish(struct hb *b, struct hinv *v, enum coord_inv_status st, const char *resp,
                        double ran_s, int cold, const char *detail)
{
    struct coord_inv_result r = {0};
    double end = smlt_now_mono();
    r.status = st;
    r.response = resp;
    r.duration_s = ran_s;
    r.queued_s = (v->t_start > 0 ? v->t_start : end) - v->t_queued;
    r.cold = cold;
    r.exit_status = -1;
    snprintf(r.detail, sizeof r.detail, "%s", detail ? detail : "");
    r.memory_mb = v->billed_mb;
    b->st.gb_s += (double)(v->billed_mb ? v->billed_mb : v->memory_mb) / 1024.0 * ran_s;
    if (st == COORD_INV_TIMEOUT)
        b->st.timeouts++;
    if (st == COORD_INV_CRASHED)
        b->st.crashes++;
    if (st == COORD_INV_OK)
        cold ? b->st.cold_starts++ : b->st.warm_starts++;
    run_unlink(b, v);
    coord_inv_fn cb = v->cb;
    void *arg = v->arg;
    uint64_t id = v->id;
    hinv_free(v);
    cb(id, &r, arg);
    start_waiting(b);
}

static void hinv_send(struct hb *b, struct hinv *v);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct hinv *v = arg;
    hinv_send(v->b, v);
}

static void again_in(struct hinv *v, double delay)
{
    struct timeval tv = {(time_t)delay, (suseconds_t)((delay - (time_t)delay) * 1e6)};
    evtimer_add(v->retry_ev, &tv);
}

/* The platform pushed back (or could not be reached): again after a jittered backoff, unless
 * the retries or the time limit are used up. Returns 1 when a retry is scheduled. */
static int retry_later(struct hb *b, struct hinv *v, const char *why)
{
    double cap = HTTP_BACKOFF_BASE_S * pow(2.0, v->attempts);
    if (cap > HTTP_BACKOFF_MAX_S)
        cap = HTTP_BACKOFF_MAX_S;
    double u = (double)(smlt_rand_mix(b->rng++) >> 11) * (1.0 / 9007199254740992.0);
    double delay = cap * u; /* full jitter */
    if (v->attempts > b->max_retries || smlt_now_mono() + delay >= v->t_deadline)
        return 0;
    log_info("%s: invocation %llu: %s; retrying in %.2f s (attempt %d)", b->name,
             (unsigned long long)v->id, why, delay, v->attempts + 1);
    b->st.queued++;
    again_in(v, delay);
    return 1;
}

int hb_resp_cold(const char *body)
{
    json_t *o = json_loads(body, JSON_DECODE_ANY, NULL);
    int cold = json_is_true(json_object_get(o, "cold"));
    json_decref(o);
    return cold;
}

static void on_response(const struct coord_curl_resp *r, void *arg)
{
    struct hinv *v = arg;
    struct hb *b = v->b;
    v->req = 0;
    struct houtcome o = {.status = COORD_INV_FAILED, .billed_s = -1};
    b->plat->interpret(b, r, &o);
    if (o.retry && retry_later(b, v, o.detail)) {
        free(o.response);
        return;
    }
    if (o.retry) /* out of retries or time: the last pushback ends it */
        o.status = r->timed_out ? COORD_INV_TIMEOUT : COORD_INV_FAILED;
    v->billed_mb = o.billed_mb;
    hinv_finish(b, v, o.status, o.response, o.billed_s >= 0 ? o.billed_s : r->total_s, o.cold,
                o.detail);
    free(o.response);
}

static void hinv_send(struct hb *b, struct hinv *v)
{
    double left_ms = (v->t_deadline - smlt_now_mono()) * 1000.0;
    struct coord_curl_req q = {.method = "POST", .body = v->payload,
                               .body_len = strlen(v->payload),
                               .timeout_ms = left_ms > 1000 ? (long)left_ms : 1000,
                               .max_body = 1u << 20};
    char detail[160] = "";
    int rc = b->plat->prepare(b, v, &q, detail, sizeof detail);
    if (rc == 1 && smlt_now_mono() + HTTP_NOT_READY_S < v->t_deadline) {
        again_in(v, HTTP_NOT_READY_S);
        return;
    }
    if (rc != 0) {
        hinv_finish(b, v, COORD_INV_FAILED, NULL, 0, 0, detail[0] ? detail : "not ready in time");
        return;
    }
    v->attempts++;
    v->req = coord_curl_request(b->cc, &q, on_response, v);
    if (!v->req)
        hinv_finish(b, v, COORD_INV_FAILED, NULL, 0, 0, "cannot start the request");
}

static void start_waiting(struct hb *b)
{
    while (b->wait_head && b->busy < b->concurrency) {
        struct hinv *v = b->wait_head;
        b->wait_head = v->next;
        if (!b->wait_head)
            b->wait_tail = NULL;
        b->st.waiting--;
        v->next = b->run;
        v->prev = NULL;
        if (b->run)
            b->run->prev = v;
        b->run = v;
        v->running = 1;
        b->busy++;
        b->st.invocations++;
        v->t_start = smlt_now_mono();
        v->t_deadline = v->t_start + v->time_limit_s + HTTP_GRACE_S;
        hinv_send(b, v);
    }
}

static void on_start_waiting(evutil_socket_t fd, short what, void *arg)
{
    start_waiting(arg);
}

int hb_invoke(struct coord_backend *base_, const struct coord_inv_req *req, coord_inv_fn cb,
              void *arg, uint64_t *inv)
{
    struct hb *b = (struct hb *)base_;
    if (!req || !req->function || !req->payload || !cb || req->time_limit_s == 0)
        return SMLT_EINVAL;
    struct hinv *v = calloc(1, sizeof *v);
    if (!v)
        return SMLT_ENOMEM;
    v->b = b;
    v->id = ++b->next_id;
    v->payload = strdup(req->payload);
    v->memory_mb = req->memory_mb;
    v->time_limit_s = req->time_limit_s;
    v->cb = cb;
    v->arg = arg;
    v->t_queued = smlt_now_mono();
    v->retry_ev = evtimer_new(b->base, on_retry, v);
    if (!v->payload || !v->retry_ev) {
        hinv_free(v);
        return SMLT_ENOMEM;
    }
    *inv = v->id;
    if (b->wait_tail)
        b->wait_tail->next = v;
    else
        b->wait_head = v;
    b->wait_tail = v;
    b->st.waiting++;
    event_base_once(b->base, -1, EV_TIMEOUT, on_start_waiting, b, NULL);
    return 0;
}

static void on_deferred_cancel(evutil_socket_t fd, short what, void *arg)
{
    struct hinv *v = arg;
    hinv_finish(v->b, v, COORD_INV_CANCELED, NULL, v->t_start > 0 ? smlt_now_mono() - v->t_start : 0,
                0, "canceled");
}

int hb_cancel(struct coord_backend *base_, uint64_t inv)
{
    struct hb *b = (struct hb *)base_;
    for (struct hinv *v = b->run; v; v = v->next) {
        if (v->id != inv)
            continue;
        if (v->req)
            coord_curl_cancel(b->cc, v->req);
        v->req = 0;
        evtimer_del(v->retry_ev);
        event_base_once(b->base, -1, EV_TIMEOUT, on_deferred_cancel, v, NULL);
        return 0;
    }
    struct hinv *prev = NULL;
    for (struct hinv *v = b->wait_head; v; prev = v, v = v->next) {
        if (v->id != inv)
            continue;
        if (prev)
            prev->next = v->next;
        else
            b->wait_head = v->next;
        if (b->wait_tail == v)
            b->wait_tail = prev;
        v->next = NULL;
        b->st.waiting--;
        event_base_once(b->base, -1, EV_TIMEOUT, on_deferred_cancel, v, NULL);
        return 0;
    }
    return SMLT_ENOTFOUND;
}

void hb_stats(const struct coord_backend *base_, struct coord_backend_stats *st)
{
    const struct hb *b = (const struct hb *)base_;
    *st = b->st;
    st->running = b->busy;
}

void hb_free(struct hb *b)
{
    while (b->wait_head) {
        struct hinv *v = b->wait_head;
        b->wait_head = v->next;
        v->next = NULL;
        hinv_finish(b, v, COORD_INV_CANCELED, NULL, 0, 0, "the coordinator is shutting down");
    }
    while (b->run) {
        struct hinv *v = b->run;
        if (v->req)
            coord_curl_cancel(b->cc, v->req);
        hinv_finish(b, v, COORD_INV_CANCELED, NULL, smlt_now_mono() - v->t_start, 0,
                    "the coordinator is shutting down");
    }
    if (b->plat && b->plat->free)
        b->plat->free(b);
    coord_curl_free(b->cc);
    free(b->url);
    free(b);
}

void hb_free_op(struct coord_backend *base_)
{
    hb_free((struct hb *)base_);
}

struct hb *hb_new(struct event_base *base, const struct coord_backend_ops *ops,
                  const struct hplat *plat, uint32_t concurrency, int max_retries)
{
    struct hb *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->base_.ops = ops;
    b->plat = plat;
    b->base = base;
    b->concurrency = concurrency ? concurrency : 64;
    b->max_retries = max_retries > 0 ? max_retries : 8;
    snprintf(b->name, sizeof b->name, "%s", ops->name);
    b->rng = (uint64_t)(smlt_now_unix() * 1e6) ^ (uint64_t)(uintptr_t)b;
    b->cc = coord_curl_new(base);
    if (!b->cc) {
        free(b);
        return NULL;
    }
    return b;
}

/* ---- OpenFaaS and Knative ---------------------------------------------------------------- */

static int plain_prepare(struct hb *b, struct hinv *v, struct coord_curl_req *q, char *detail,
                         size_t len)
{
    static const char *const hdrs[] = {"Content-Type: application/json", NULL};
    q->url = b->url;
    q->headers = hdrs;
    return 0;
}

static void plain_interpret(struct hb *b, const struct coord_curl_resp *r, struct houtcome *o)
{
    if (r->status == 200) {
        char *line = strndup(r->body, r->body_len);
        size_t n = line ? strlen(line) : 0;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        o->status = COORD_INV_OK;
        o->response = line;
        o->cold = line && hb_resp_cold(line);
        return;
    }
    if (r->timed_out) {
        o->status = COORD_INV_TIMEOUT;
        snprintf(o->detail, sizeof o->detail, "no answer within the time limit");
        return;
    }
    if (r->status)
        snprintf(o->detail, sizeof o->detail, "HTTP %ld: %.120s", r->status, r->body);
    else
        snprintf(o->detail, sizeof o->detail, "no answer: %.140s", r->error);
    o->retry = r->status == 0 || r->status == 429 || r->status == 502 || r->status == 503 ||
               r->status == 504;
    /* 4xx: the platform refused the request (no instance ran it); 5xx: the instance failed. */
    o->status = r->status >= 500 ? COORD_INV_CRASHED : COORD_INV_FAILED;
}

static const struct hplat plain_plat = {"http", plain_prepare, plain_interpret, NULL};

static const struct coord_backend_ops openfaas_ops = {
    .name = "openfaas", .invoke = hb_invoke, .cancel = hb_cancel, .stats = hb_stats,
    .free = hb_free_op};
static const struct coord_backend_ops knative_ops = {
    .name = "knative", .invoke = hb_invoke, .cancel = hb_cancel, .stats = hb_stats,
    .free = hb_free_op};

struct coord_backend *coord_backend_http_new(struct event_base *base,
                                             const struct coord_backend_http_conf *conf,
                                             char *err, size_t errlen)
{
    if (!conf->url || strncmp(conf->url, "http", 4)) {
        snprintf(err, errlen, "%s: an http:// or https:// URL is needed",
                 conf->knative ? "--function-url" : "--gateway");
        return NULL;
    }
    if (!conf->knative && (!conf->function || !conf->function[0])) {
        snprintf(err, errlen, "openfaas: --function NAME is needed");
        return NULL;
    }
    struct hb *b = hb_new(base, conf->knative ? &knative_ops : &openfaas_ops, &plain_plat,
                          conf->concurrency, conf->max_retries);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t n = strlen(conf->url);
    while (n && conf->url[n - 1] == '/')
        n--;
    if (conf->knative)
        b->url = strndup(conf->url, n);
    else if (asprintf(&b->url, "%.*s/function/%s", (int)n, conf->url, conf->function) < 0)
        b->url = NULL;
    if (!b->url) {
        hb_free(b);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return &b->base_;
}
