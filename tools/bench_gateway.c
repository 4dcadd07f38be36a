/* bench_gateway.c: see bench_gateway.h. Everything but start and stop runs on the gateway's
 * own event loop thread. */
#include "bench_gateway.h"

#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "rpc_conn.h"

#define GW_MAX_INST 16
#define GW_PATH_MAX 128
#define GW_URL_MAX 600
#define GW_TIMEOUT_S 900 /* the longest function time limit */
#define GW_STOP_WAIT_MS 5000

/* An asynchronous invocation accepted (202), queued or running. */
struct gw_job {
    struct bench_gateway *g;
    struct evbuffer *body;
    char callback[GW_URL_MAX], call_id[32];
    double t_run; /* when it went to an instance */
    int k;
    struct gw_job *next;
};

/* A callback posted (or to post again); on the live list until the coordinator answers. */
struct gw_cb {
    struct bench_gateway *g;
    int replay; /* 0: the result; 1: the same again; 2: with a forged secret */
    char url[GW_URL_MAX], call_id[32], status[8];
    char *body;
    size_t len;
    double dur_s;
    struct gw_cb *prev, *next;
};

struct bench_gateway {
    struct event_base *base;
    struct evhttp *http;
    char path[GW_PATH_MAX], function[64], watch[128];
    int port, n, slots, async, push_back_first, replay_first;
    int ports[GW_MAX_INST];
    char hosts[GW_MAX_INST][64];
    int busy[GW_MAX_INST];
    struct evhttp_connection **conns; /* every connection made: freed at the stop */
    int nconns, capconns;
    struct gw_job *qhead, *qtail;     /* async: waiting for a slot */
    struct gw_job *running;           /* async: at an instance (freed at the stop if still) */
    struct gw_cb *cbs;                /* callbacks awaiting the coordinator's answer */
    struct gw_fwd *fwds;              /* sync: invocations at an instance */
    atomic_int cb_pending;
    int replays;
    pthread_t th;
    int stop_fd[2];
    struct bench_gateway_counts counts;
};

/* A synchronous invocation at an instance; on the live list until it answers (or the stop
 * frees it with its connection). */
struct gw_fwd {
    struct bench_gateway *g;
    struct evhttp_request *req;
    int k;
    struct gw_fwd *prev, *next;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A new connection to host:port, kept for the stop. NULL when out of memory. */
static struct evhttp_connection *gw_connect(struct bench_gateway *g, const char *host, int port)
{
    if (g->nconns == g->capconns) {
        int cap = g->capconns ? 2 * g->capconns : 64;
        struct evhttp_connection **c = realloc(g->conns, (size_t)cap * sizeof *c);
        if (!c)
            return NULL;
        g->conns = c;
        g->capconns = cap;
    }
    struct evhttp_connection *conn =
        evhttp_connection_base_new(g->base, NULL, host, (unsigned short)port);
    if (!conn)
        return NULL;
    evhttp_connection_set_timeout(conn, GW_TIMEOUT_S);
    g->conns[g->nconns++] = conn;
    return conn;
}

/* The instance with the most free slots, or -1 when all are taken. */
static int gw_pick(const struct bench_gateway *g)
{
    int k = -1;
    for (int i = 0; i < g->n; i++)
        if (g->busy[i] < g->slots && (k < 0 || g->busy[i] < g->busy[k]))
            k = i;
    return k;
}

/* Posts body to instance k with cb(arg) for its answer. Returns 0, or -1 (nothing taken). */
static int gw_to_instance(struct bench_gateway *g, int k, struct evbuffer *body,
                          void (*cb)(struct evhttp_request *, void *), void *arg)
{
    struct evhttp_connection *conn = gw_connect(g, g->hosts[k], g->ports[k]);
    struct evhttp_request *out = conn ? evhttp_request_new(cb, arg) : NULL;
    if (!out)
        return -1;
    evbuffer_add_buffer(evhttp_request_get_output_buffer(out), body);
    struct evkeyvalq *h = evhttp_request_get_output_headers(out);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Host", g->hosts[k]);
    if (evhttp_make_request(conn, out, EVHTTP_REQ_POST, "/") != 0)
        return -1; /* libevent freed the request */
    g->busy[k]++;
    g->counts.routed++;
    return 0;
}

/* ---- synchronous ------------------------------------------------------------------------- */

static void fwd_unlink(struct gw_fwd *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        f->g->fwds = f->next;
    if (f->next)
        f->next->prev = f->prev;
}

static void on_backend(struct evhttp_request *resp, void *arg)
{
    struct gw_fwd *f = arg;
    fwd_unlink(f);
    f->g->busy[f->k]--;
    struct evbuffer *out = evbuffer_new();
    int code = resp ? evhttp_request_get_response_code(resp) : 502;
    if (resp && out)
        evbuffer_add_buffer(out, evhttp_request_get_input_buffer(resp));
    evhttp_send_reply(f->req, code ? code : 502, "routed", out);
    if (out)
        evbuffer_free(out);
    free(f);
}

static void on_sync(struct bench_gateway *g, struct evhttp_request *req)
{
    int k = gw_pick(g);
    if (k < 0) {
        g->counts.pushed_back++;
        evhttp_send_reply(req, 429, "every instance is busy", NULL);
        return;
    }
    struct gw_fwd *f = calloc(1, sizeof *f);
    if (f)
        *f = (struct gw_fwd){g, req, k, NULL, NULL};
    if (!f || gw_to_instance(g, k, evhttp_request_get_input_buffer(req), on_backend, f) != 0) {
        free(f);
        evhttp_send_reply(req, 502, "cannot reach the instance", NULL);
        return;
    }
    f->next = g->fwds;
    if (g->fwds)
        g->fwds->prev = f;
    g->fwds = f;
}

/* ---- asynchronous ------------------------------------------------------------------------ */

static void cb_post(struct gw_cb *x);

static void cb_unlink(struct gw_cb *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        x->g->cbs = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

static void cb_free(struct gw_cb *x)
{
    free(x->body);
    free(x);
}

static void on_callback_answer(struct evhttp_request *resp, void *arg)
{
    struct gw_cb *x = arg;
    struct bench_gateway *g = x->g;
    int code = resp ? evhttp_request_get_response_code(resp) : -1;
    cb_unlink(x);
    if (x->replay == 1)
        g->counts.dup_refused += code == 404;
    else if (x->replay == 2)
        g->counts.forged_refused += code == 403;
    else if (code == 200)
        g->counts.cb_ok++;
    else
        g->counts.cb_other++;
    if (g->replay_first && ((code == 200 && x->replay == 0 && !g->replays) || x->replay == 1)) {
        /* The first result taken: the same callback again, then with the last character of
         * its secret changed. The coordinator must refuse both. */
        g->replays = ++x->replay;
        if (x->replay == 2) {
            size_t n = strlen(x->url);
            x->url[n - 1] = x->url[n - 1] == 'a' ? 'b' : 'a';
        }
        cb_post(x);
    } else {
        cb_free(x);
    }
    atomic_fetch_sub(&g->cb_pending, 1);
}

/* Posts x to its URL; x goes on the live list until answered (or the stop frees it). */
static void cb_post(struct gw_cb *x)
{
    struct bench_gateway *g = x->g;
    struct evhttp_uri *u = evhttp_uri_parse(x->url);
    struct evhttp_connection *conn = NULL;
    struct evhttp_request *rq = NULL;
    if (u && evhttp_uri_get_host(u) && evhttp_uri_get_port(u) > 0)
        conn = gw_connect(g, evhttp_uri_get_host(u), evhttp_uri_get_port(u));
    if (conn)
        rq = evhttp_request_new(on_callback_answer, x);
    if (!rq) {
        fprintf(stderr, "bench_gateway: cannot post the callback to %s\n", x->url);
        g->counts.cb_other++;
        cb_free(x);
        if (u)
            evhttp_uri_free(u);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(rq);
    char dur[32];
    snprintf(dur, sizeof dur, "%f", x->dur_s);
    evhttp_add_header(h, "Host", evhttp_uri_get_host(u));
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "X-Call-Id", x->call_id);
    evhttp_add_header(h, "X-Function-Status", x->status);
    evhttp_add_header(h, "X-Function-Name", g->function);
    evhttp_add_header(h, "X-Duration-Seconds", dur);
    evbuffer_add(evhttp_request_get_output_buffer(rq), x->body, x->len);
    if (!x->replay)
        g->counts.called_back++;
    x->next = g->cbs;
    if (g->cbs)
        g->cbs->prev = x;
    g->cbs = x;
    atomic_fetch_add(&g->cb_pending, 1);
    const char *path = evhttp_uri_get_path(u);
    if (evhttp_make_request(conn, rq, EVHTTP_REQ_POST, path && *path ? path : "/") != 0) {
        cb_unlink(x);
        cb_free(x);
        g->counts.cb_other++;
        atomic_fetch_sub(&g->cb_pending, 1);
    }
    evhttp_uri_free(u);
}

static void dispatch(struct bench_gateway *g);

static void job_unlink_running(struct gw_job *p)
{
    struct gw_job **pp = &p->g->running;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    p->next = NULL;
}

/* An instance answered an asynchronous invocation: its slot is free, its result goes to the
 * callback URL. */
static void on_async_done(struct evhttp_request *resp, void *arg)
{
    struct gw_job *p = arg;
    struct bench_gateway *g = p->g;
    g->busy[p->k]--;
    job_unlink_running(p);
    int code = resp ? evhttp_request_get_response_code(resp) : 502;
    struct evbuffer *in = resp ? evhttp_request_get_input_buffer(resp) : NULL;
    size_t len = in ? evbuffer_get_length(in) : 0;
    struct gw_cb *x = calloc(1, sizeof *x);
    if (x && !(x->body = malloc(len + 1))) {
        free(x);
        x = NULL;
    }
    if (x) {
        x->g = g;
        snprintf(x->url, sizeof x->url, "%s", p->callback);
        snprintf(x->call_id, sizeof x->call_id, "%s", p->call_id);
        snprintf(x->status, sizeof x->status, "%d", code ? code : 502);
        x->len = len;
        if (len)
            evbuffer_remove(in, x->body, len);
        x->dur_s = mono_s() - p->t_run;
        cb_post(x);
    } else {
        fprintf(stderr, "bench_gateway: out of memory: the result of %s is lost\n", p->call_id);
    }
    evbuffer_free(p->body);
    free(p);
    dispatch(g);
}

/* The queue-worker: queued invocations to instances with a free slot, oldest first. */
static void dispatch(struct bench_gateway *g)
{
    int k;
    while (g->qhead && (k = gw_pick(g)) >= 0) {
        struct gw_job *p = g->qhead;
        g->qhead = p->next;
        if (!g->qhead)
            g->qtail = NULL;
        p->k = k;
        p->t_run = mono_s();
        p->next = g->running;
        g->running = p;
        if (gw_to_instance(g, k, p->body, on_async_done, p) != 0) {
            /* The instance cannot be reached: the function's failure goes back as such. */
            g->busy[k]++;
            on_async_done(NULL, p);
        }
    }
}

/* POST /async-function/NAME: 202 with an X-Call-Id at once, the invocation queued. */
static void on_async(struct bench_gateway *g, struct evhttp_request *req)
{
    const char *cb = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Callback-Url");
    if (!cb || strlen(cb) >= GW_URL_MAX) {
        g->counts.refused++;
        evhttp_send_reply(req, 400, "no X-Callback-Url", NULL);
        return;
    }
    if (g->push_back_first && g->counts.accepted == 0 && g->counts.pushed_back == 0) {
        g->counts.pushed_back++; /* the platform's pushback, once: the backend must retry */
        evhttp_send_reply(req, 503, "the queue is not ready", NULL);
        return;
    }
    struct gw_job *p = calloc(1, sizeof *p);
    if (!p || !(p->body = evbuffer_new())) {
        free(p);
        evhttp_send_reply(req, 503, "out of memory", NULL);
        return;
    }
    g->counts.watched += g->watch[0] && strstr(cb, g->watch) != NULL;
    p->g = g;
    evbuffer_add_buffer(p->body, evhttp_request_get_input_buffer(req));
    snprintf(p->callback, sizeof p->callback, "%s", cb);
    snprintf(p->call_id, sizeof p->call_id, "call-%04d", ++g->counts.accepted);
    if (g->qtail)
        g->qtail->next = p;
    else
        g->qhead = p;
    g->qtail = p;
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Call-Id", p->call_id);
    evhttp_send_reply(req, 202, "Accepted", NULL);
    dispatch(g);
}

/* ---- the gateway ------------------------------------------------------------------------- */

static void on_route(struct evhttp_request *req, void *arg)
{
    struct bench_gateway *g = arg;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST ||
        strcmp(evhttp_request_get_uri(req), g->path)) {
        g->counts.refused++;
        evhttp_send_reply(req, 404, "no such function", NULL);
        return;
    }
    if (g->async)
        on_async(g, req);
    else
        on_sync(g, req);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void *gw_run(void *arg)
{
    struct bench_gateway *g = arg;
    event_base_dispatch(g->base);
    return NULL;
}

static void job_list_free(struct gw_job *p)
{
    while (p) {
        struct gw_job *next = p->next;
        evbuffer_free(p->body);
        free(p);
        p = next;
    }
}

static void gw_free(struct bench_gateway *g)
{
    /* Freeing a connection frees its requests without their callbacks: what they pointed to
     * is freed here. */
    for (int i = 0; i < g->nconns; i++)
        evhttp_connection_free(g->conns[i]);
    free(g->conns);
    job_list_free(g->qhead);
    job_list_free(g->running);
    while (g->fwds) {
        struct gw_fwd *f = g->fwds;
        fwd_unlink(f);
        free(f);
    }
    while (g->cbs) {
        struct gw_cb *x = g->cbs;
        cb_unlink(x);
        cb_free(x);
    }
    if (g->http)
        evhttp_free(g->http);
    if (g->base)
        event_base_free(g->base);
    if (g->stop_fd[0] >= 0) {
        close(g->stop_fd[0]);
        close(g->stop_fd[1]);
    }
    free(g);
}

struct bench_gateway *bench_gateway_start(const struct bench_gateway_opts *o, char *err,
                                          size_t errlen)
{
    if (!o->path || o->n < 1 || o->n > GW_MAX_INST || o->slots < 1 ||
        strlen(o->path) >= GW_PATH_MAX) {
        snprintf(err, errlen, "gateway: 1 to %d instances, at least 1 slot, a path under %d "
                              "bytes", GW_MAX_INST, GW_PATH_MAX);
        return NULL;
    }
    struct bench_gateway *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "gateway: out of memory");
        return NULL;
    }
    g->stop_fd[0] = g->stop_fd[1] = -1;
    snprintf(g->path, sizeof g->path, "%s", o->path);
    snprintf(g->function, sizeof g->function, "%s", o->function ? o->function : "smlt-worker");
    snprintf(g->watch, sizeof g->watch, "%s", o->watch ? o->watch : "");
    g->n = o->n;
    g->slots = o->slots;
    g->async = o->async;
    g->push_back_first = o->push_back_first;
    g->replay_first = o->replay_first;
    memcpy(g->ports, o->ports, (size_t)o->n * sizeof *o->ports);
    for (int i = 0; i < o->n; i++)
        snprintf(g->hosts[i], sizeof g->hosts[i], "%s", o->hosts ? o->hosts[i] : "127.0.0.1");
    atomic_init(&g->cb_pending, 0);
    int fd = -1;
    if (!(g->base = event_base_new()) || !(g->http = evhttp_new(g->base)) ||
        pipe(g->stop_fd) != 0) {
        snprintf(err, errlen, "gateway: cannot set up its loop");
        goto fail;
    }
    evhttp_set_timeout(g->http, GW_TIMEOUT_S);
    const char *lis = o->listen ? o->listen : "127.0.0.1:0";
    if ((fd = rpc_net_listen(lis, 64, &g->port)) < 0 ||
        !evhttp_accept_socket_with_handle(g->http, fd)) {
        snprintf(err, errlen, "gateway: cannot listen on %s", lis);
        if (fd >= 0)
            close(fd);
        goto fail;
    }
    evhttp_set_gencb(g->http, on_route, g);
    if (event_base_once(g->base, g->stop_fd[0], EV_READ, on_stop, g->base, NULL) != 0 ||
        pthread_create(&g->th, NULL, gw_run, g) != 0) {
        snprintf(err, errlen, "gateway: cannot start its thread");
        goto fail;
    }
    return g;
fail:
    gw_free(g);
    return NULL;
}

int bench_gateway_port(const struct bench_gateway *g)
{
    return g->port;
}

void bench_gateway_stop(struct bench_gateway *g, struct bench_gateway_counts *c)
{
    if (!g)
        return;
    /* The coordinator's answers to the last callbacks may still be on their way. */
    for (int i = 0; i < GW_STOP_WAIT_MS / 50 && atomic_load(&g->cb_pending) > 0; i++)
        usleep(50 * 1000);
    while (write(g->stop_fd[1], "x", 1) != 1)
        usleep(1000);
    pthread_join(g->th, NULL);
    if (c)
        *c = g->counts;
    gw_free(g);
}

/* ---- smlt-bench gateway ------------------------------------------------------------------ */

static volatile sig_atomic_t gw_main_stop;

static void gw_main_signal(int sig)
{
    gw_main_stop = sig;
}

static void gw_main_usage(FILE *f)
{
    fprintf(f, "usage: smlt-bench gateway --instances HOST:PORT,... [--listen HOST:PORT]\n"
               "                          [--slots N] [--path P] [--async] [--port-file F]\n"
               "A function platform's front door (the Knative activator's POST /, or OpenFaaS's\n"
               "gateway with --path /function/NAME; --async adds its queue-worker) in front of\n"
               "smlt-worker --http instances, until SIGINT or SIGTERM. Default: listen on\n"
               "127.0.0.1:0, 1 slot per instance, path /.\n");
}

int bench_gateway_main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:0", *path = "/", *port_file = NULL, *instances = NULL;
    int slots = 1, async = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            gw_main_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--async")) {
            async = 1;
        } else if (v && !strcmp(a, "--listen")) {
            listen = argv[++i];
        } else if (v && !strcmp(a, "--path")) {
            path = argv[++i];
        } else if (v && !strcmp(a, "--port-file")) {
            port_file = argv[++i];
        } else if (v && !strcmp(a, "--instances")) {
            instances = argv[++i];
        } else if (v && !strcmp(a, "--slots")) {
            slots = atoi(argv[++i]);
        } else {
            fprintf(stderr, "smlt-bench gateway: unknown or incomplete option \"%s\"\n", a);
            gw_main_usage(stderr);
            return 2;
        }
    }
    int ports[GW_MAX_INST], n = 0;
    char hostbuf[GW_MAX_INST][64];
    const char *hosts[GW_MAX_INST];
    char *copy = instances ? strdup(instances) : NULL, *save = NULL;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save)) {
        char *c = strrchr(t, ':');
        if (n == GW_MAX_INST || !c || c == t || (size_t)(c - t) >= sizeof hostbuf[0] ||
            atoi(c + 1) <= 0 || atoi(c + 1) > 65535) {
            fprintf(stderr, "smlt-bench gateway: bad instance \"%s\" (HOST:PORT, at most %d)\n",
                    t, GW_MAX_INST);
            free(copy);
            return 2;
        }
        memcpy(hostbuf[n], t, (size_t)(c - t));
        hostbuf[n][c - t] = '\0';
        hosts[n] = hostbuf[n];
        ports[n++] = atoi(c + 1);
    }
    free(copy);
    if (n == 0 || slots < 1) {
        gw_main_usage(stderr);
        return 2;
    }
    struct bench_gateway_opts o = {.path = path, .ports = ports, .hosts = hosts, .n = n,
                                   .slots = slots, .async = async, .listen = listen};
    char err[256];
    struct bench_gateway *g = bench_gateway_start(&o, err, sizeof err);
    if (!g) {
        fprintf(stderr, "smlt-bench gateway: %s\n", err);
        return 1;
    }
    signal(SIGINT, gw_main_signal);
    signal(SIGTERM, gw_main_signal);
    fprintf(stderr, "smlt-bench gateway: port %d, %d instances, %d slots each\n",
            bench_gateway_port(g), n, slots);
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (!f || fprintf(f, "%d\n", bench_gateway_port(g)) < 0 || fclose(f) != 0) {
            fprintf(stderr, "smlt-bench gateway: cannot write %s\n", port_file);
            bench_gateway_stop(g, NULL);
            return 1;
        }
    }
    while (!gw_main_stop)
        pause();
    struct bench_gateway_counts c;
    bench_gateway_stop(g, &c);
    fprintf(stderr, "smlt-bench gateway: routed %d, pushed back %d, refused %d\n", c.routed,
            c.pushed_back, c.refused);
    return 0;
}
