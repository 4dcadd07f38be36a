/* bench_gateway.c: see bench_gateway.h. Everything but start and stop runs on the gateway's
 * own event loop thread. */
#include "bench_gateway.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "rpc_conn.h"

#define GW_MAX_INST 16
#define GW_PATH_MAX 128
#define GW_TIMEOUT_S 900 /* the longest function time limit */

struct bench_gateway {
    struct event_base *base;
    struct evhttp *http;
    char path[GW_PATH_MAX];
    int port;
    int n, slots;
    int ports[GW_MAX_INST];
    int busy[GW_MAX_INST];
    struct evhttp_connection **conns; /* every connection made: freed at the stop */
    int nconns, capconns;
    pthread_t th;
    int stop_fd[2];
    struct bench_gateway_counts counts;
};

struct gw_fwd {
    struct bench_gateway *g;
    struct evhttp_request *req;
    int k;
};

static void on_backend(struct evhttp_request *resp, void *arg)
{
    struct gw_fwd *f = arg;
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

/* A new connection to instance k, kept for the stop. NULL when out of memory. */
static struct evhttp_connection *gw_connect(struct bench_gateway *g, int k)
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
        evhttp_connection_base_new(g->base, NULL, "127.0.0.1", (unsigned short)g->ports[k]);
    if (!conn)
        return NULL;
    evhttp_connection_set_timeout(conn, GW_TIMEOUT_S);
    g->conns[g->nconns++] = conn;
    return conn;
}

static void on_route(struct evhttp_request *req, void *arg)
{
    struct bench_gateway *g = arg;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST ||
        strcmp(evhttp_request_get_uri(req), g->path)) {
        g->counts.refused++;
        evhttp_send_reply(req, 404, "no such function", NULL);
        return;
    }
    int k = -1;
    for (int i = 0; i < g->n; i++)
        if (g->busy[i] < g->slots && (k < 0 || g->busy[i] < g->busy[k]))
            k = i;
    if (k < 0) {
        g->counts.pushed_back++;
        evhttp_send_reply(req, 429, "every instance is busy", NULL);
        return;
    }
    struct gw_fwd *f = calloc(1, sizeof *f);
    struct evhttp_connection *conn = f ? gw_connect(g, k) : NULL;
    struct evhttp_request *out = conn ? evhttp_request_new(on_backend, f) : NULL;
    if (!out) {
        free(f);
        evhttp_send_reply(req, 503, "out of memory", NULL);
        return;
    }
    *f = (struct gw_fwd){g, req, k};
    evbuffer_add_buffer(evhttp_request_get_output_buffer(out),
                        evhttp_request_get_input_buffer(req));
    struct evkeyvalq *h = evhttp_request_get_output_headers(out);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Host", "127.0.0.1");
    g->busy[k]++;
    g->counts.routed++;
    if (evhttp_make_request(conn, out, EVHTTP_REQ_POST, "/") != 0) {
        g->busy[k]--;
        evhttp_send_reply(req, 502, "cannot reach the instance", NULL);
        free(f);
    }
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

static void gw_free(struct bench_gateway *g)
{
    for (int i = 0; i < g->nconns; i++)
        evhttp_connection_free(g->conns[i]);
    free(g->conns);
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

struct bench_gateway *bench_gateway_start(const char *path, const int *ports, int n, int slots,
                                          char *err, size_t errlen)
{
    if (n < 1 || n > GW_MAX_INST || slots < 1 || strlen(path) >= GW_PATH_MAX) {
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
    snprintf(g->path, sizeof g->path, "%s", path);
    g->n = n;
    g->slots = slots;
    memcpy(g->ports, ports, (size_t)n * sizeof *ports);
    int fd = -1;
    if (!(g->base = event_base_new()) || !(g->http = evhttp_new(g->base)) ||
        pipe(g->stop_fd) != 0) {
        snprintf(err, errlen, "gateway: cannot set up its loop");
        goto fail;
    }
    evhttp_set_timeout(g->http, GW_TIMEOUT_S);
    if ((fd = rpc_net_listen("127.0.0.1:0", 64, &g->port)) < 0 ||
        !evhttp_accept_socket_with_handle(g->http, fd)) {
        snprintf(err, errlen, "gateway: cannot listen on 127.0.0.1");
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
    if (write(g->stop_fd[1], "x", 1) == 1)
        pthread_join(g->th, NULL);
    if (c)
        *c = g->counts;
    gw_free(g);
}
