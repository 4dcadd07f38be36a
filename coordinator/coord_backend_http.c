/* coord_backend_http.c: function platforms that run an invocation per HTTP request, and the
 * OpenFaaS (`POST GATEWAY/function/NAME`) and Knative (`POST SERVICE_URL`) platforms, whose
 * instances are `smlt-worker --http`: the request body is the invocation's payload, the
 * response body its response line. AWS Lambda (coord_backend_lambda.c) plugs into the same
 * engine (coord_backend_http_int.h).
 *
 * OpenFaaS asynchronously (conf.async): `POST GATEWAY/async-function/NAME` with
 * `X-Callback-Url: BASE/api/callback/ID/SECRET` (SECRET: 32 bytes from getrandom(), per
 * invocation; the URL is the only thing that authenticates the callback, and no other
 * credential ever goes into it). The gateway answers 202 Accepted (and X-Call-Id) and its
 * queue-worker runs the function, then posts the function's response body to that URL with
 * X-Function-Status and X-Duration-Seconds; the coordinator's HTTP API hands it to
 * hb_callback(), which ends the invocation as the synchronous answer would have ended it
 * (plain_interpret() reads both). Until then the invocation holds its concurrency slot; no
 * callback by the time limit (plus the grace) is a timeout, and a callback after that, a
 * second one, or one with another secret is refused and changes nothing.
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

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "rpc_conn.h"
#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_rand.h"
#include "smlt_util.h"

#define HTTP_GRACE_S 10.0        /* over the time limit before the request is abandoned */
#define HTTP_BACKOFF_BASE_S 0.2
#define HTTP_BACKOFF_MAX_S 20.0
#define HTTP_NOT_READY_S 0.2     /* the platform cannot make the request yet: again after this */
#define HTTP_SUBMIT_TIMEOUT_MS 30000L  /* async: the gateway only queues the invocation */
#define HTTP_SUBMIT_MAX_BODY (64u << 10)
#define HTTP_CALLBACK_BASE_MAX 512

/* 32 bytes of the kernel's CSPRNG, in hex, into out (COORD_CALLBACK_SECRET_HEX + 1 bytes).
 * Returns 0, or -1: there is no weaker fallback for a secret. */
static int make_secret(char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[COORD_CALLBACK_SECRET_HEX / 2];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[COORD_CALLBACK_SECRET_HEX] = '\0';
    explicit_bzero(raw, sizeof raw);
    return 0;
}

static void hinv_free(struct hinv *v)
{
    if (v->retry_ev)
        event_free(v->retry_ev);
    if (v->deadline_ev)
        event_free(v->deadline_ev);
    free(v->payload);
    explicit_bzero(v->secret, sizeof v->secret);
    free(v);
}

/* Remembers why an invocation answered by callback ended, so that a late or second callback
 * is told (HB_ENDED of them; an older one is just unknown). */
static void remember_end(struct hb *b, const struct hinv *v, enum coord_inv_status st)
{
    if (!v->secret[0])
        return;
    struct hended *e = &b->ended[b->n_ended++ % HB_ENDED];
    e->id = v->id;
    memcpy(e->secret, v->secret, sizeof e->secret);
    snprintf(e->why, sizeof e->why, "%s",
             v->answered                ? "its result came by an earlier callback"
             : st == COORD_INV_TIMEOUT  ? "no callback came within its time limit"
             : st == COORD_INV_CANCELED ? "it was canceled"
                                        : "it failed before any callback");
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
    remember_end(b, v, st);
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

static void on_no_callback(evutil_socket_t fd, short what, void *arg)
{
    struct hinv *v = arg;
    char d[160];
    snprintf(d, sizeof d, "no callback within the %u s time limit (call %s)", v->time_limit_s,
             v->call_id[0] ? v->call_id : "without an id");
    hinv_finish(v->b, v, COORD_INV_TIMEOUT, NULL, smlt_now_mono() - v->t_start, 0, d);
}

/* What an answer (a response to v's request, or a callback's) means for v: accepted (the
 * callback is awaited until the time limit), pushback (again after a backoff), or v's end.
 * o->response stays the caller's to free. */
static void conclude(struct hb *b, struct hinv *v, const struct coord_curl_resp *r,
                     struct houtcome *o)
{
    if (o->accepted) {
        snprintf(v->call_id, sizeof v->call_id, "%s", o->call_id);
        double left = v->t_deadline - smlt_now_mono();
        if (left < 0)
            left = 0;
        struct timeval tv = {(time_t)left, (suseconds_t)((left - (time_t)left) * 1e6)};
        evtimer_add(v->deadline_ev, &tv);
        log_debug("%s: invocation %llu accepted (call %s); its callback is awaited",
                  b->name, (unsigned long long)v->id, v->call_id);
        return;
    }
    if (o->retry && retry_later(b, v, o->detail))
        return;
    if (o->retry) /* out of retries or time: the last pushback ends it */
        o->status = r->timed_out ? COORD_INV_TIMEOUT : COORD_INV_FAILED;
    v->billed_mb = o->billed_mb;
    hinv_finish(b, v, o->status, o->response, o->billed_s >= 0 ? o->billed_s : r->total_s,
                o->cold, o->detail);
}

static void on_response(const struct coord_curl_resp *r, void *arg)
{
    struct hinv *v = arg;
    struct hb *b = v->b;
    v->req = 0;
    struct houtcome o = {.status = COORD_INV_FAILED, .billed_s = -1};
    b->plat->interpret(b, r, &o);
    conclude(b, v, r, &o);
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
    if (b->plat->interpret_callback && !v->secret[0] && make_secret(v->secret) != 0) {
        hinv_finish(b, v, COORD_INV_FAILED, NULL, 0, 0,
                    "no randomness from the kernel for the callback's secret");
        return;
    }
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
    v->answered = 0;
    v->t_sent = smlt_now_mono();
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
        v->t_deadline = v->t_start + v->time_limit_s + b->grace_s;
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
    v->deadline_ev = evtimer_new(b->base, on_no_callback, v);
    if (!v->payload || !v->retry_ev || !v->deadline_ev) {
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
        if (v->canceled)
            return 0; /* its end is on the way already */
        if (v->req)
            coord_curl_cancel(b->cc, v->req);
        v->req = 0;
        v->canceled = 1; /* a callback from now on is refused */
        evtimer_del(v->retry_ev);
        evtimer_del(v->deadline_ev);
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
    free(b->callback_base);
    free(b->function);
    explicit_bzero(b->ended, sizeof b->ended);
    explicit_bzero(b->cb_hdr, sizeof b->cb_hdr);
    free(b);
}

void hb_free_op(struct coord_backend *base_)
{
    hb_free((struct hb *)base_);
}

/* ---- callbacks ---------------------------------------------------------------------------- */

static struct hinv *find_running(struct hb *b, uint64_t id)
{
    for (struct hinv *v = b->run; v; v = v->next)
        if (v->id == id)
            return v;
    return NULL;
}

static const struct hended *find_ended(const struct hb *b, uint64_t id)
{
    unsigned n = b->n_ended < HB_ENDED ? b->n_ended : HB_ENDED;
    for (unsigned i = 0; i < n; i++)
        if (b->ended[i].id == id)
            return &b->ended[i];
    return NULL;
}

/* Splits "ID/SECRET" (ID a positive decimal, SECRET at most COORD_CALLBACK_SECRET_HEX
 * characters, no further '/'). Returns 0, or -1 when target is not of that shape. */
static int parse_target(const char *t, uint64_t *id, const char **secret)
{
    if (!t || !isdigit((unsigned char)t[0]))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(t, &end, 10);
    if (errno || v == 0 || *end != '/')
        return -1;
    *id = v;
    *secret = end + 1;
    return strlen(*secret) > COORD_CALLBACK_SECRET_HEX || strchr(*secret, '/') ? -1 : 0;
}

/* X-Function-Status: an HTTP status, 100-599. Returns it, or -1. */
static long parse_status(const char *s)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -1;
    char *end;
    long v = strtol(s, &end, 10);
    while (*end == ' ')
        end++;
    return *end || v < 100 || v > 599 ? -1 : v;
}

/* X-Duration-Seconds (absent: -1). A value that is not a duration is said and ignored: the
 * result still counts, billed by the coordinator's clock. */
static double parse_duration(struct hb *b, uint64_t id, const char *s)
{
    if (!s || !s[0])
        return -1;
    char *end;
    double d = strtod(s, &end);
    if (end != s && !*end && isfinite(d) && d >= 0)
        return d;
    log_warn("%s: invocation %llu: X-Duration-Seconds \"%.40s\" is not a duration; billing "
             "the time until its callback", b->name, (unsigned long long)id, s);
    return -1;
}

/* The checks of hb_callback(), in the order that leaks nothing to whoever lacks the secret.
 * Returns v (authenticated, running, awaiting its answer), or NULL with rc and err set. */
static struct hinv *callback_target(struct hb *b, const struct coord_inv_callback *cb, int *rc,
                                    char *err, size_t errlen)
{
    uint64_t id = 0;
    const char *secret = NULL;
    *rc = SMLT_ENOTFOUND;
    if (parse_target(cb->target, &id, &secret) != 0) {
        snprintf(err, errlen, "no such callback: its path is /api/callback/ID/SECRET");
        return NULL;
    }
    struct hinv *v = find_running(b, id);
    const struct hended *e = NULL;
    const char *want = v && v->secret[0] ? v->secret : (e = find_ended(b, id)) ? e->secret : NULL;
    if (!want) {
        snprintf(err, errlen, "no invocation %llu awaits a callback", (unsigned long long)id);
        return NULL;
    }
    if (!rpc_token_equal(want, strlen(want), secret, strlen(secret))) {
        *rc = SMLT_EPERM;
        snprintf(err, errlen, "wrong secret for invocation %llu", (unsigned long long)id);
        return NULL;
    }
    if (e || v->canceled) {
        snprintf(err, errlen, "invocation %llu has ended (%s): this callback is ignored",
                 (unsigned long long)id, e ? e->why : "it was canceled");
        return NULL;
    }
    long fs = parse_status(cb->function_status);
    if (fs < 0) {
        *rc = SMLT_EINVAL;
        snprintf(err, errlen, "invocation %llu: X-Function-Status must be the function's HTTP "
                              "status (100-599), not \"%.40s\"",
                 (unsigned long long)id, cb->function_status ? cb->function_status : "(none)");
        return NULL;
    }
    if (!cb->body || cb->body_len > COORD_CALLBACK_MAX_BODY) {
        *rc = SMLT_ETOOBIG;
        snprintf(err, errlen, "invocation %llu: a callback's body is at most %u bytes",
                 (unsigned long long)id, COORD_CALLBACK_MAX_BODY);
        return NULL;
    }
    *rc = 0;
    return v;
}

int hb_callback(struct coord_backend *base_, const struct coord_inv_callback *cb, char *err,
                size_t errlen)
{
    struct hb *b = (struct hb *)base_;
    int rc;
    struct hinv *v = callback_target(b, cb, &rc, err, errlen);
    if (!v) {
        b->st.callbacks_refused++;
        log_warn("%s: callback refused: %s", b->name, err);
        return rc;
    }
    double now = smlt_now_mono();
    double dur = parse_duration(b, v->id, cb->duration_s);
    if (dur > now - v->t_start)
        dur = now - v->t_start; /* it cannot have run longer than it has been invoked */
    if (cb->function_name && b->function && strcmp(cb->function_name, b->function))
        log_warn("%s: invocation %llu: the callback names function \"%.64s\", not \"%s\"",
                 b->name, (unsigned long long)v->id, cb->function_name, b->function);
    /* The answer may overtake the gateway's 202 (or a resubmission's backoff): it wins. */
    if (v->req)
        coord_curl_cancel(b->cc, v->req);
    v->req = 0;
    evtimer_del(v->retry_ev);
    evtimer_del(v->deadline_ev);
    v->answered = 1;
    b->st.callbacks++;
    struct coord_curl_resp r = {.status = parse_status(cb->function_status), .body = cb->body,
                                .body_len = cb->body_len, .error = "", .total_s = now - v->t_sent};
    struct houtcome o = {.status = COORD_INV_FAILED, .billed_s = -1};
    b->plat->interpret_callback(b, &r, &o);
    o.accepted = 0;
    if (dur >= 0)
        o.billed_s = dur;
    log_debug("%s: invocation %llu: callback, function status %ld, %zu bytes", b->name,
              (unsigned long long)v->id, r.status, r.body_len);
    conclude(b, v, &r, &o); /* may end v: its callback runs now */
    free(o.response);
    return 0;
}

int hb_set_callback_base(struct coord_backend *base_, const char *url, char *err, size_t errlen)
{
    struct hb *b = (struct hb *)base_;
    size_t n = url ? strlen(url) : 0;
    while (n && url[n - 1] == '/')
        n--;
    if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) || n <= 8) {
        snprintf(err, errlen, "--callback-url: an http:// or https:// URL is needed");
        return SMLT_EINVAL;
    }
    if (n > HTTP_CALLBACK_BASE_MAX) {
        snprintf(err, errlen, "--callback-url: at most %d characters", HTTP_CALLBACK_BASE_MAX);
        return SMLT_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        /* It goes into a header: no spaces, no control characters, no query or fragment. */
        unsigned char ch = (unsigned char)url[i];
        if (ch <= ' ' || ch >= 0x7f || ch == '?' || ch == '#') {
            snprintf(err, errlen, "--callback-url: no spaces, control characters, '?' or '#'");
            return SMLT_EINVAL;
        }
    }
    char *u = strndup(url, n);
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return SMLT_ENOMEM;
    }
    free(b->callback_base);
    b->callback_base = u;
    return 0;
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
    b->grace_s = HTTP_GRACE_S;
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

static const struct hplat plain_plat = {"http", plain_prepare, plain_interpret, NULL, NULL};

/* OpenFaaS async: the submission (POST /async-function/NAME) with the callback URL. */
static int async_prepare(struct hb *b, struct hinv *v, struct coord_curl_req *q, char *detail,
                         size_t len)
{
    if (!b->callback_base) {
        snprintf(detail, len, "no callback URL is set (smlt-coordinator --callback-url)");
        return -1;
    }
    snprintf(b->cb_hdr, sizeof b->cb_hdr, "X-Callback-Url: %s/api/callback/%llu/%s",
             b->callback_base, (unsigned long long)v->id, v->secret);
    b->hdrs[0] = "Content-Type: application/json";
    b->hdrs[1] = b->cb_hdr;
    b->hdrs[2] = NULL;
    q->url = b->url;
    q->headers = b->hdrs;
    q->keep[0] = "X-Call-Id";
    q->max_body = HTTP_SUBMIT_MAX_BODY;
    if (q->timeout_ms > HTTP_SUBMIT_TIMEOUT_MS)
        q->timeout_ms = HTTP_SUBMIT_TIMEOUT_MS;
    return 0;
}

/* The gateway's answer to a submission: 202 is accepted (the answer comes by callback); the
 * pushback statuses and no answer are retried as on the synchronous path (the callback URL
 * stays the same, so a submission the gateway did queue after all answers it just once). */
static void async_interpret(struct hb *b, const struct coord_curl_resp *r, struct houtcome *o)
{
    if (r->status == 202) {
        o->accepted = 1;
        snprintf(o->call_id, sizeof o->call_id, "%.95s", r->keep[0] ? r->keep[0] : "");
        return;
    }
    if (r->timed_out) {
        o->retry = 1;
        snprintf(o->detail, sizeof o->detail, "the gateway did not take the invocation within "
                                              "%ld s", HTTP_SUBMIT_TIMEOUT_MS / 1000);
        return;
    }
    if (r->status >= 200 && r->status < 300) {
        o->status = COORD_INV_FAILED;
        snprintf(o->detail, sizeof o->detail, "HTTP %ld from %s: an asynchronous invocation "
                                              "is answered 202 Accepted", r->status, b->url);
        return;
    }
    plain_interpret(b, r, o);
    if (o->status == COORD_INV_CRASHED) /* the gateway failed, not an instance */
        o->status = COORD_INV_FAILED;
}

static const struct hplat async_plat = {"openfaas-async", async_prepare, async_interpret, NULL,
                                        plain_interpret};

static const struct coord_backend_ops openfaas_ops = {
    .name = "openfaas", .invoke = hb_invoke, .cancel = hb_cancel, .stats = hb_stats,
    .free = hb_free_op};
static const struct coord_backend_ops openfaas_async_ops = {
    .name = "openfaas", .invoke = hb_invoke, .cancel = hb_cancel, .stats = hb_stats,
    .free = hb_free_op, .callback = hb_callback, .set_callback_base = hb_set_callback_base};
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
    if (conf->knative && conf->async) {
        snprintf(err, errlen, "asynchronous invocations are OpenFaaS's (--platform openfaas)");
        return NULL;
    }
    const struct coord_backend_ops *ops = conf->knative ? &knative_ops
                                          : conf->async ? &openfaas_async_ops
                                                        : &openfaas_ops;
    struct hb *b = hb_new(base, ops, conf->async ? &async_plat : &plain_plat, conf->concurrency,
                          conf->max_retries);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (conf->grace_s > 0)
        b->grace_s = conf->grace_s;
    size_t n = strlen(conf->url);
    while (n && conf->url[n - 1] == '/')
        n--;
    if (conf->knative)
        b->url = strndup(conf->url, n);
    else if (asprintf(&b->url, "%.*s/%s/%s", (int)n, conf->url,
                      conf->async ? "async-function" : "function", conf->function) < 0)
        b->url = NULL;
    if (!b->url || (!conf->knative && !(b->function = strdup(conf->function)))) {
        hb_free(b);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (conf->async && conf->callback_url &&
        hb_set_callback_base(&b->base_, conf->callback_url, err, errlen) != 0) {
        hb_free(b);
        return NULL;
    }
    return &b->base_;
}
