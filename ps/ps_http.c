/* ps_http.c: see ps_http.h. It reads the server's counters through ps_server_int.h, as
 * ps_replica.c does: everything here runs on the shard's loop thread. */
#include "ps_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "ps_metrics.h"
#include "ps_server_int.h"
#include "ps_shard.h"
#include "rpc_conn.h"
#include "smlt_error.h"

#define PS_HTTP_MAX_HEADERS 8192
#define PS_HTTP_TIMEOUT_S 10
#define PS_HTTP_MAX_BODY 4096 /* read and dropped: no request here has one */

struct ps_http {
    struct evhttp *http;
    struct ps_server *srv;
    int port;
    uint64_t bad; /* requests refused */
};

/* The server's counters, its shard's and its backup's, now. */
static void snapshot(const struct ps_http *h, struct ps_metrics *m)
{
    const struct ps_server *srv = h->srv;
    struct ps_shard_stats st;
    ps_shard_stats(srv->shard, &st);
    const struct part_map *map = ps_shard_map(srv->shard);
    memset(m, 0, sizeof *m);
    m->shard = srv->conf.shard;
    m->configured = map != NULL;
    m->conns_open = srv->nconns;
    m->conns_accepted = srv->conns_accepted;
    m->conns_refused = srv->conns_refused;
    m->auth_failures = srv->auth_failures;
    m->tls_failures = srv->tls_failures;
    ps_server__traffic(srv, &m->bytes_in, &m->bytes_out, &m->frames_bad);
    m->pushes_received = st.pushes_received;
    m->pushes_counted = st.pushes_counted;
    m->pushes_duplicate = st.pushes_duplicate;
    m->pushes_rejected = st.pushes_rejected;
    m->pulls_served = srv->pulls_served;
    for (const struct ps_pull_wait *w = srv->pulls; w; w = w->next)
        m->pulls_waiting++;
    m->pulls_timed_out = srv->pulls_timed_out;
    m->stale_map_errors = srv->stale_map_errors;
    m->updates_applied = st.updates_applied;
    m->version = ps_shard_version(srv->shard);
    m->clock = ps_shard_clock(srv->shard);
    m->map_version = map ? map->version : 0;
    m->workers = map ? ps_shard_conf(srv->shard)->workers : 0;
    m->apply = st.apply_hist;
    m->bsp_wait = srv->bsp_wait;
    m->reshard_exports = srv->reshard_exports;
    m->reshard_imports = srv->reshard_imports;
    m->reshard_retires = srv->reshard_retires;
    m->ckpt_written = st.ckpt_written;
    m->ckpt_failed = st.ckpt_failed;
    m->ckpt_skipped = st.ckpt_skipped;
    m->ckpt_corrupt = st.ckpt_corrupt;
    m->ckpt_last_step = st.ckpt_last_step;
    m->ckpt_write_seconds = st.ckpt_write_seconds_total;
    m->backup_forwarded = srv->bk.forwarded;
    m->backup_acks = srv->bk.acks;
    m->backup_lag = srv->bk.lag;
    m->backup_lost = srv->bk.lost;
    m->backup_diverged = srv->bk.diverged;
    m->http_bad = h->bad;
}

static void send_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    evbuffer_add(out, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, code, reason, out);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct ps_http *h = arg;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!path || strcmp(path, "/metrics")) {
        h->bad++;
        send_text(req, 404, "Not Found", "not found: this shard serves GET /metrics only\n");
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        h->bad++;
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        send_text(req, 405, "Method Not Allowed", "use GET\n");
        return;
    }
    struct ps_metrics m;
    snapshot(h, &m);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    ps_metrics_render(out, &m);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", out);
}

struct ps_http *ps_http_new(struct event_base *base, struct ps_server *srv, const char *addr,
                            char *err, size_t errlen)
{
    struct ps_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->srv = srv;
    h->http = evhttp_new(base);
    if (!h->http) {
        snprintf(err, errlen, "cannot create the metrics HTTP server");
        ps_http_free(h);
        return NULL;
    }
    evhttp_set_max_headers_size(h->http, PS_HTTP_MAX_HEADERS);
    evhttp_set_max_body_size(h->http, PS_HTTP_MAX_BODY);
    evhttp_set_timeout(h->http, PS_HTTP_TIMEOUT_S);
    /* Every method reaches on_request, which answers 405 itself (libevent would say 501). */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(h->http, on_request, h);
    int fd = rpc_net_listen(addr, 64, &h->port);
    if (fd < 0 || !evhttp_accept_socket_with_handle(h->http, fd)) {
        snprintf(err, errlen, "--metrics-listen: cannot listen on %s: %s", addr,
                 fd < 0 ? smlt_strerror(fd) : "accept");
        if (fd >= 0)
            close(fd);
        ps_http_free(h);
        return NULL;
    }
    return h;
}

int ps_http_port(const struct ps_http *h)
{
    return h->port;
}

void ps_http_free(struct ps_http *h)
{
    if (!h)
        return;
    if (h->http)
        evhttp_free(h->http);
    free(h);
}
