/* worker_http.c: the HTTP function server (see worker_http.h).
 *
 * Threads: the loop thread owns libevent (the server, every request, the signal events); a slot
 * thread per --max-inflight runs worker_invoke_serve() for one request at a time. A slot is
 * handed its payload under its mutex, and hands its response back the same way, then writes
 * its index to a pipe the loop watches; only the loop thread touches a request. */
#include "worker_http.h"
#include "worker_invoke.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_util.h"

#define HTTP_DEFAULT_PORT 8080
/* Idle keep-alive connections close after this (a request being served is not idle). */
#define HTTP_IDLE_TIMEOUT_S 120
/* After SIGTERM and the last slice's answer: how long its bytes may take to go out. */
#define HTTP_DRAIN_FLUSH_S 3

struct server;

struct slot {
    struct server *srv;
    unsigned idx;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct worker_invoke *inv; /* the slot thread's, warm across requests */
    /* under mu: */
    char *payload;             /* the request to serve; NULL: nothing to do */
    char *resp;                /* its response line, once done */
    int rc;
    char err[512];
    int done, quit;
    /* loop thread only: */
    struct evhttp_request *req;
};

struct server {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct slot *slots;
    unsigned nslots, busy;
    int wake[2];               /* slot threads -> loop: one byte, the slot's index */
    struct event *wake_ev, *term_ev, *int_ev, *flush_ev;
    atomic_int stop;           /* SIGTERM: slices end after their current step */
    int draining;
    unsigned unsent;           /* slice answers handed to libevent, not yet written out */
    /* counters, logged at exit */
    unsigned long long served, busy_refused, bad_refused;
};

/* ---- slot threads ------------------------------------------------------------------------ */

static void *slot_main(void *arg)
{
    struct slot *s = arg;
    struct worker_invoke_opts o = {.stop = &s->srv->stop};
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->payload && !s->quit)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->quit)
            break;
        char *payload = s->payload;
        pthread_mutex_unlock(&s->mu);
        char *resp = NULL, err[512] = "";
        int rc = worker_invoke_serve(s->inv, payload, &o, &resp, err, sizeof err);
        pthread_mutex_lock(&s->mu);
        free(s->payload);
        s->payload = NULL;
        s->resp = resp;
        s->rc = rc;
        snprintf(s->err, sizeof s->err, "%s", err);
        s->done = 1;
        unsigned char b = (unsigned char)s->idx;
        /* The pipe holds far more than SMLT_MAX_INFLIGHT bytes: it never blocks. */
        if (write(s->srv->wake[1], &b, 1) != 1)
            log_error("slot %u: cannot wake the loop: %s", s->idx, strerror(errno));
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int slots_start(struct server *srv, unsigned n)
{
    srv->slots = calloc(n, sizeof *srv->slots);
    if (!srv->slots)
        return SMLT_ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        struct slot *s = &srv->slots[i];
        s->srv = srv;
        s->idx = i;
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        if (!(s->inv = worker_invoke_new()))
            return SMLT_ENOMEM;
        if (pthread_create(&s->th, NULL, slot_main, s) != 0) {
            worker_invoke_free(s->inv);
            s->inv = NULL;
            return SMLT_ESYS;
        }
        srv->nslots++;
    }
    return 0;
}

static void slots_stop(struct server *srv)
{
    for (unsigned i = 0; i < srv->nslots; i++) {
        struct slot *s = &srv->slots[i];
        pthread_mutex_lock(&s->mu);
        s->quit = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
        worker_invoke_free(s->inv);
        free(s->payload);
        free(s->resp);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
    }
    free(srv->slots);
}

/* ---- replies ----------------------------------------------------------------------------- */

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *body)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    evbuffer_add(out, body, strlen(body));
    evbuffer_add(out, "\n", 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, reason, out);
}

/* Replies {key: msg}. */
static void reply_json(struct evhttp_request *req, int code, const char *reason, const char *key,
                       const char *msg)
{
    json_t *o = json_pack("{s:s}", key, msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    reply_text(req, code, reason, s ? s : "{}");
    free(s);
    json_decref(o);
}

/* Ends the loop once draining and nothing is left to answer or to write out. */
static void drain_check(struct server *srv)
{
    if (!srv->draining || srv->busy)
        return;
    if (!srv->unsent) {
        event_base_loopexit(srv->base, NULL);
        return;
    }
    /* A client that went away mid-write never completes: do not wait for it forever. */
    struct timeval tv = {HTTP_DRAIN_FLUSH_S, 0};
    if (!evtimer_pending(srv->flush_ev, NULL))
        evtimer_add(srv->flush_ev, &tv);
}

static void on_flush_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    log_warn("shutting down with %u answers not written out", srv->unsent);
    event_base_loopexit(srv->base, NULL);
}

static void on_complete(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;
    if (srv->unsent)
        srv->unsent--;
    drain_check(srv);
}

/* A slot has finished: answer its request and free the slot. */
static void slot_reply(struct server *srv, struct slot *s)
{
    pthread_mutex_lock(&s->mu);
    char *resp = s->resp;
    int rc = s->rc;
    char err[512];
    snprintf(err, sizeof err, "%s", s->err);
    s->resp = NULL;
    s->done = 0;
    pthread_mutex_unlock(&s->mu);
    struct evhttp_request *req = s->req;
    s->req = NULL;
    srv->busy--;
    srv->served++;
    /* When its client has gone, the request is detached and sending just frees it. */
    if (evhttp_request_get_connection(req)) {
        evhttp_request_set_on_complete_cb(req, on_complete, srv);
        srv->unsent++;
    }
    if (rc == SMLT_EINVAL)
        reply_json(req, 400, "Bad Request", "error", err);
    else if (!resp)
        reply_json(req, 500, "Internal Server Error", "error", "out of memory");
    else
        reply_text(req, 200, "OK", resp);
    free(resp);
    drain_check(srv);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    unsigned char b[64];
    ssize_t n = read(fd, b, sizeof b);
    for (ssize_t i = 0; i < n; i++)
        if (b[i] < srv->nslots && srv->slots[b[i]].req)
            slot_reply(srv, &srv->slots[b[i]]);
}

/* ---- requests ---------------------------------------------------------------------------- */

/* The body of req as a string (malloc'd), or NULL with the status to answer in *code. */
static char *read_body(struct evhttp_request *req, int *code, char *err, size_t errlen)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n > SMLT_MAX_INVOCATION) {
        *code = 413;
        smlt_set_err(err, errlen, "invocation payload of %zu bytes is over the limit of %u", n,
                     SMLT_MAX_INVOCATION);
        return NULL;
    }
    char *s = malloc(n + 1);
    if (!s) {
        *code = 500;
        smlt_set_err(err, errlen, "out of memory");
        return NULL;
    }
    evbuffer_copyout(in, s, n);
    s[n] = '\0';
    if (memchr(s, '\0', n)) {
        free(s);
        *code = 400;
        smlt_set_err(err, errlen, "invocation payload holds a NUL byte");
        return NULL;
    }
    return s;
}

static void serve_invoke(struct server *srv, struct evhttp_request *req)
{
    char err[512];
    int code = 400;
    if (srv->draining) {
        reply_json(req, 503, "Service Unavailable", "error", "shutting down");
        return;
    }
    char *payload = read_body(req, &code, err, sizeof err);
    if (payload && worker_invoke_check(payload, err, sizeof err) != 0) {
        free(payload);
        payload = NULL;
        code = 400;
    }
    if (!payload) {
        srv->bad_refused++;
        log_warn("POST /: %d: %s", code, err);
        reply_json(req, code, code == 413 ? "Payload Too Large" : code == 500 ? "Error" :
                   "Bad Request", "error", err);
        return;
    }
    struct slot *s = NULL;
    for (unsigned i = 0; i < srv->nslots && !s; i++)
        if (!srv->slots[i].req)
            s = &srv->slots[i];
    if (!s) {
        srv->busy_refused++;
        free(payload);
        smlt_set_err(err, sizeof err, "busy: %u invocations already run here (--max-inflight)",
                     srv->nslots);
        reply_json(req, 429, "Too Many Requests", "error", err);
        return;
    }
    s->req = req;
    srv->busy++;
    pthread_mutex_lock(&s->mu);
    s->payload = payload;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evhttp_uri *u = evhttp_uri_parse(uri);
    const char *path = u && evhttp_uri_get_path(u) ? evhttp_uri_get_path(u) : "";
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    int get = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
    if (!strcmp(path, "/_/health") && get)
        reply_json(req, 200, "OK", "status", "ok");
    else if (!strcmp(path, "/_/ready") && get)
        reply_json(req, srv->draining ? 503 : 200, srv->draining ? "Service Unavailable" : "OK",
                   "status", srv->draining ? "draining" : "ready");
    else if ((!strcmp(path, "/") || !path[0]) && m == EVHTTP_REQ_POST)
        serve_invoke(srv, req);
    else if (!strcmp(path, "/") || !strcmp(path, "/_/health") || !strcmp(path, "/_/ready"))
        reply_json(req, 405, "Method Not Allowed", "error",
                   "POST / runs an invocation; GET /_/health, /_/ready");
    else
        reply_json(req, 404, "Not Found", "error", "no such path");
    evhttp_uri_free(u);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    if (srv->draining)
        return;
    log_info("%s: draining (%u invocations running)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
             srv->busy);
    srv->draining = 1;
    atomic_store(&srv->stop, 1);
    if (srv->sock) {
        evhttp_del_accept_socket(srv->http, srv->sock);
        srv->sock = NULL;
    }
    drain_check(srv);
}

/* ---- setup ------------------------------------------------------------------------------- */

struct http_conf {
    char host[256];
    int port;
    unsigned inflight;
    const char *port_file;
    int level;
};

/* Splits "HOST:PORT" (IPv6 hosts in brackets). Returns 0 or -1. */
static int parse_listen(const char *s, struct http_conf *c)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (hl == 0 || hl >= sizeof c->host || !colon[1] || *end || p < 0 || p > 65535)
        return -1;
    memcpy(c->host, s, hl);
    c->host[hl] = '\0';
    c->port = (int)p;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: smlt-worker --http [--listen HOST:PORT] [--max-inflight N] "
               "[--port-file F] [--log-level L]\n"
               "Serve invocations over HTTP (OpenFaaS, Knative): POST / with the payload,\n"
               "GET /_/health and /_/ready. Listens on --listen, else 0.0.0.0:$PORT, else\n"
               "127.0.0.1:%d. --max-inflight (default 1, at most %u): invocations at once;\n"
               "more get 429. SIGTERM drains and exits 0.\n",
            HTTP_DEFAULT_PORT, SMLT_MAX_INFLIGHT);
}

/* Reads the options into c. Returns 0, 1 for --help (usage printed), or 2 (message printed). */
static int parse_args(int argc, char **argv, struct http_conf *c)
{
    static const struct option lo[] = {
        {"http", no_argument, 0, 'H'},           {"listen", required_argument, 0, 'l'},
        {"max-inflight", required_argument, 0, 'n'}, {"port-file", required_argument, 0, 'p'},
        {"log-level", required_argument, 0, 'L'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *listen = NULL, *env_port = getenv("PORT");
    memset(c, 0, sizeof *c);
    c->inflight = 1;
    c->level = SMLT_LOG_INFO;
    char *end;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'H': break;
        case 'l': listen = optarg; break;
        case 'p': c->port_file = optarg; break;
        case 'n': {
            unsigned long n = strtoul(optarg, &end, 10);
            if (*end || n < 1 || n > SMLT_MAX_INFLIGHT) {
                fprintf(stderr, "smlt-worker: --max-inflight must be 1 to %u\n", SMLT_MAX_INFLIGHT);
                return 2;
            }
            c->inflight = (unsigned)n;
            break;
        }
        case 'L':
            if ((c->level = smlt_log_parse_level(optarg)) < 0) {
                fprintf(stderr, "smlt-worker: --log-level: want error, warn, info or debug\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "smlt-worker: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    char from_env[300];
    if (!listen && env_port && env_port[0]) {
        snprintf(from_env, sizeof from_env, "0.0.0.0:%s", env_port);
        listen = from_env;
    }
    if (parse_listen(listen ? listen : "127.0.0.1:8080", c)) {
        fprintf(stderr, "smlt-worker: %s \"%s\" is not HOST:PORT\n",
                listen == from_env ? "$PORT" : "--listen", listen == from_env ? env_port : listen);
        return 2;
    }
    return 0;
}

static int write_port_file(const char *path, int port)
{
    char text[16];
    int n = snprintf(text, sizeof text, "%d\n", port);
    return smlt_write_file_atomic(path, text, (size_t)n, 0);
}

/* The port the socket is bound to (the one asked for unless it was 0). */
static int bound_port(struct evhttp_bound_socket *sock)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Builds the loop, the server and its events. Returns 0 or 1 (logged). */
static int server_open(struct server *srv, const struct http_conf *c)
{
    srv->wake[0] = srv->wake[1] = -1;
    if (!(srv->base = event_base_new()) || !(srv->http = evhttp_new(srv->base)) ||
        pipe2(srv->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        log_error("cannot set the server up: %s", strerror(errno));
        return 1;
    }
    evhttp_set_max_body_size(srv->http, SMLT_MAX_INVOCATION + 1);
    evhttp_set_timeout(srv->http, HTTP_IDLE_TIMEOUT_S);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(srv->http, on_request, srv);
    srv->wake_ev = event_new(srv->base, srv->wake[0], EV_READ | EV_PERSIST, on_wake, srv);
    srv->term_ev = evsignal_new(srv->base, SIGTERM, on_signal, srv);
    srv->int_ev = evsignal_new(srv->base, SIGINT, on_signal, srv);
    srv->flush_ev = evtimer_new(srv->base, on_flush_timeout, srv);
    if (!srv->wake_ev || !srv->term_ev || !srv->int_ev || !srv->flush_ev ||
        event_add(srv->wake_ev, NULL) || event_add(srv->term_ev, NULL) ||
        event_add(srv->int_ev, NULL)) {
        log_error("cannot set the server's events up");
        return 1;
    }
    srv->sock = evhttp_bind_socket_with_handle(srv->http, c->host, (ev_uint16_t)c->port);
    if (!srv->sock) {
        log_error("cannot listen on %s:%d: %s", c->host, c->port, strerror(errno));
        return 1;
    }
    int port = bound_port(srv->sock);
    if (c->port_file && write_port_file(c->port_file, port) != 0) {
        log_error("cannot write the port file %s", c->port_file);
        return 1;
    }
    log_info("serving invocations over HTTP on %s:%d (at most %u at once)", c->host, port,
             c->inflight);
    return 0;
}

static void server_close(struct server *srv)
{
    if (srv->http)
        evhttp_free(srv->http); /* closes the connections; their requests are answered */
    struct event *evs[] = {srv->wake_ev, srv->term_ev, srv->int_ev, srv->flush_ev};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    if (srv->base)
        event_base_free(srv->base);
    for (int i = 0; i < 2; i++)
        if (srv->wake[i] >= 0)
            close(srv->wake[i]);
}

int worker_http_main(int argc, char **argv)
{
    struct http_conf c;
    int prc = parse_args(argc, argv, &c);
    if (prc)
        return prc == 1 ? 0 : 2;
    smlt_log_init("smlt-worker", c.level);
    worker_invoke_init_process();
    /* The loop takes SIGTERM and SIGINT (evsignal); no slot thread may be chosen to take
     * them, so they are blocked there (the threads inherit this mask). */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    struct server srv;
    memset(&srv, 0, sizeof srv);
    int code = server_open(&srv, &c);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    int src = code ? 0 : slots_start(&srv, c.inflight);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (src) {
        log_error("cannot start %u invocation threads: %s", c.inflight, smlt_strerror(src));
        code = 1;
    }
    if (!code) {
        event_base_dispatch(srv.base);
        log_info("stopped: %llu invocations served, %llu refused busy, %llu refused malformed",
                 srv.served, srv.busy_refused, srv.bad_refused);
    }
    /* Slots still busy here only on a failed start; a drained server has none. */
    atomic_store(&srv.stop, 1);
    slots_stop(&srv);
    server_close(&srv);
    return code;
}
