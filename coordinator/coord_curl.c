/* coord_curl.c: see coord_curl.h. The multi-socket API: curl asks (on_socket) for each of its
 * sockets to be watched for reading and/or writing and (on_timer_set) to be woken after a
 * delay; libevent's events call curl_multi_socket_action() back, and finished transfers are
 * collected with curl_multi_info_read(). */
#include "coord_curl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "smlt_log.h"

#define CURL_DEF_MAX_BODY (4u << 20)

struct sock_ctx {
    struct coord_curl *cc;
    struct event *ev;
};

struct creq {
    struct coord_curl *cc;
    uint64_t id;
    CURL *h;
    struct curl_slist *hdrs;
    char *out;
    size_t out_len, out_cap, max_body;
    char *keep_names[COORD_CURL_MAX_KEEP];
    char *keep_vals[COORD_CURL_MAX_KEEP];
    char errbuf[CURL_ERROR_SIZE];
    int too_big;
    coord_curl_fn fn;
    void *arg;
    struct creq *next, *prev;
};

struct coord_curl {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct creq *reqs;
    uint64_t next_id;
    unsigned running;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void creq_free(struct creq *q)
{
    if (q->h)
        curl_easy_cleanup(q->h);
    curl_slist_free_all(q->hdrs);
    free(q->out);
    for (int i = 0; i < COORD_CURL_MAX_KEEP; i++) {
        free(q->keep_names[i]);
        free(q->keep_vals[i]);
    }
    free(q);
}

static void creq_unlink(struct coord_curl *cc, struct creq *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        cc->reqs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    cc->running--;
}

/* A finished transfer: its callback, then it goes. */
static void finish(struct coord_curl *cc, struct creq *q, CURLcode code)
{
    struct coord_curl_resp r = {0};
    curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(q->h, CURLINFO_TOTAL_TIME, &r.total_s);
    if (code != CURLE_OK)
        r.status = 0;
    r.timed_out = code == CURLE_OPERATION_TIMEDOUT;
    r.body = q->out ? q->out : "";
    r.body_len = q->out_len;
    for (int i = 0; i < COORD_CURL_MAX_KEEP; i++)
        r.keep[i] = q->keep_vals[i];
    if (q->too_big)
        snprintf(q->errbuf, sizeof q->errbuf, "response body over %zu bytes", q->max_body);
    r.error = code == CURLE_OK ? "" : q->errbuf[0] ? q->errbuf : curl_easy_strerror(code);
    curl_multi_remove_handle(cc->multi, q->h);
    creq_unlink(cc, q);
    q->fn(&r, q->arg);
    creq_free(q);
}

static void check_done(struct coord_curl *cc)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(cc->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct creq *q = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&q);
        if (q)
            finish(cc, q, m->data.result);
    }
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct coord_curl *cc = ((struct sock_ctx *)arg)->cc; /* arg may go in the action */
    int action = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running = 0;
    curl_multi_socket_action(cc->multi, fd, action, &running);
    check_done(cc);
    if (running <= 0)
        evtimer_del(cc->timer);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct coord_curl *cc = arg;
    int running = 0;
    curl_multi_socket_action(cc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(cc);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct coord_curl *cc = userp;
    struct sock_ctx *sc = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            event_free(sc->ev);
            free(sc);
        }
        curl_multi_assign(cc->multi, s, NULL);
        return 0;
    }
    short kind = (short)((what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0) |
                         EV_PERSIST);
    if (!sc) {
        sc = calloc(1, sizeof *sc);
        if (!sc)
            return -1;
        sc->cc = cc;
        curl_multi_assign(cc->multi, s, sc);
    } else {
        event_free(sc->ev);
    }
    sc->ev = event_new(cc->base, s, kind, on_event, sc);
    return sc->ev && event_add(sc->ev, NULL) == 0 ? 0 : -1;
}

static int on_timer_set(CURLM *m, long timeout_ms, void *userp)
{
    struct coord_curl *cc = userp;
    if (timeout_ms < 0) {
        evtimer_del(cc->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(cc->timer, &tv);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct creq *q = arg;
    size_t len = size * n;
    if (q->out_len + len > q->max_body) {
        q->too_big = 1;
        return 0; /* the transfer fails */
    }
    if (q->out_len + len + 1 > q->out_cap) {
        size_t cap = q->out_cap ? q->out_cap : 4096;
        while (cap < q->out_len + len + 1)
            cap *= 2;
        char *g = realloc(q->out, cap);
        if (!g)
            return 0;
        q->out = g;
        q->out_cap = cap;
    }
    memcpy(q->out + q->out_len, data, len);
    q->out_len += len;
    q->out[q->out_len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct creq *q = arg;
    size_t len = size * n;
    const char *colon = memchr(data, ':', len);
    for (int i = 0; colon && i < COORD_CURL_MAX_KEEP && q->keep_names[i]; i++) {
        size_t nl = strlen(q->keep_names[i]);
        if ((size_t)(colon - data) != nl || strncasecmp(data, q->keep_names[i], nl))
            continue;
        const char *v = colon + 1, *end = data + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        free(q->keep_vals[i]);
        q->keep_vals[i] = strndup(v, (size_t)(end - v));
    }
    return len;
}

/* The easy handle's options for req. Returns 0 or -1. */
static int setup(struct creq *q, const struct coord_curl_req *req)
{
    CURL *h = q->h;
    int bad = 0;
    for (int i = 0; req->headers && req->headers[i]; i++) {
        struct curl_slist *n = curl_slist_append(q->hdrs, req->headers[i]);
        bad |= !n;
        q->hdrs = n ? n : q->hdrs;
    }
    if (!req->sigv4) {
        /* No 100-continue round trip. (Not on a signed request: curl would sign the "expect"
         * header it then leaves out, and AWS refuses the signature; the payloads are small.) */
        struct curl_slist *n = curl_slist_append(q->hdrs, "Expect:");
        bad |= !n;
        q->hdrs = n ? n : q->hdrs;
    }
    bad |= curl_easy_setopt(h, CURLOPT_URL, req->url) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, q->hdrs) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)q) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, q->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, q) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERDATA, q) != CURLE_OK;
    if (req->body) {
        bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)req->body_len) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, req->body) != CURLE_OK;
    }
    if (req->method && strcmp(req->method, req->body ? "POST" : "GET"))
        bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method) != CURLE_OK;
    if (req->sigv4) {
        bad |= curl_easy_setopt(h, CURLOPT_AWS_SIGV4, req->sigv4) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_USERNAME, req->access_key) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_PASSWORD, req->secret_key) != CURLE_OK;
    }
    for (int i = 0; i < COORD_CURL_MAX_KEEP && req->keep[i]; i++)
        bad |= !(q->keep_names[i] = strdup(req->keep[i]));
    return bad ? -1 : 0;
}

uint64_t coord_curl_request(struct coord_curl *cc, const struct coord_curl_req *req,
                            coord_curl_fn fn, void *arg)
{
    struct creq *q = calloc(1, sizeof *q);
    if (!q)
        return 0;
    q->cc = cc;
    q->fn = fn;
    q->arg = arg;
    q->max_body = req->max_body ? req->max_body : CURL_DEF_MAX_BODY;
    q->h = curl_easy_init();
    if (!q->h || setup(q, req) != 0 || curl_multi_add_handle(cc->multi, q->h) != CURLM_OK) {
        log_warn("http %s %s: cannot start the request", req->method ? req->method : "GET",
                 req->url);
        creq_free(q);
        return 0;
    }
    q->id = ++cc->next_id;
    q->next = cc->reqs;
    if (cc->reqs)
        cc->reqs->prev = q;
    cc->reqs = q;
    cc->running++;
    return q->id;
}

int coord_curl_cancel(struct coord_curl *cc, uint64_t id)
{
    for (struct creq *q = cc->reqs; q; q = q->next) {
        if (q->id != id)
            continue;
        curl_multi_remove_handle(cc->multi, q->h);
        creq_unlink(cc, q);
        creq_free(q);
        return 0;
    }
    return -1;
}

unsigned coord_curl_running(const struct coord_curl *cc)
{
    return cc->running;
}

struct coord_curl *coord_curl_new(struct event_base *base)
{
    pthread_once(&global_once, global_init);
    struct coord_curl *cc = calloc(1, sizeof *cc);
    if (!cc)
        return NULL;
    cc->base = base;
    cc->multi = curl_multi_init();
    cc->timer = evtimer_new(base, on_timeout, cc);
    if (!cc->multi || !cc->timer) {
        coord_curl_free(cc);
        return NULL;
    }
    curl_multi_setopt(cc->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(cc->multi, CURLMOPT_SOCKETDATA, cc);
    curl_multi_setopt(cc->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(cc->multi, CURLMOPT_TIMERDATA, cc);
    return cc;
}

void coord_curl_free(struct coord_curl *cc)
{
    if (!cc)
        return;
    while (cc->reqs)
        coord_curl_cancel(cc, cc->reqs->id);
    if (cc->multi)
        curl_multi_cleanup(cc->multi);
    if (cc->timer)
        event_free(cc->timer);
    free(cc);
}
