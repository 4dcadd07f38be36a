/* ps_node.c: see ps_node.h. */
#include "ps_node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "ps_server.h"
#include "rpc_conn.h"
#include "smlt.pb-c.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_tls.h"
#include "smlt_util.h"

#define ROUTE_MAX 40
#define JOB_MAX 64

static const struct rpc_limits lim_preauth = {SMLT_MAX_META_PREAUTH, SMLT_MAX_PAYLOAD_PREAUTH};
/* The node's own requests are small; none has a payload. */
static const struct rpc_limits lim_admin = {SMLT_MAX_META_PREAUTH, 0};

struct hosted {
    struct ps_node *node;
    char route[ROUTE_MAX + 1];
    char job[JOB_MAX + 1];
    uint32_t shard;
    int backup;
    uint64_t reserved;        /* bytes */
    char *token, *admin_token; /* as NodeHost gave them: a retry must match */
    char ckpt_dir[1100];      /* the node's DIR/<job> (the server borrows it) */
    struct ps_server *srv;
    struct event *drop_ev;    /* frees it, once dropped */
    struct hosted *next;
};

/* A connection before its Hello (or the node's own, after it). */
struct pend {
    struct ps_node *node;
    struct rpc_conn *conn;
    struct event *timer;       /* the handshake's 10 s */
    int admin;                 /* authenticated with the pool token */
    struct pend *next, *prev;
};

struct ps_node {
    struct event_base *base;
    struct ps_node_conf conf;
    char *name, *token, *ckpt_dir;
    struct evconnlistener *lis;
    int port;
    struct evhttp *http;
    int http_port;            /* /metrics and /healthz (0: not served) */
    struct hosted *shards;
    struct hosted *dropping;  /* dropped, freed by their drop_ev */
    struct pend *pends;
    uint64_t used, boot_id, refused, auth_failures, hosted_total, dropped_total;
    double started;
};

/* ---- helpers ----------------------------------------------------------------------------- */

static int valid_name(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || s[0] == '.')
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

static void reply_error(struct rpc_conn *c, uint64_t req_id, int code, const char *msg)
{
    Smlt__ErrorReply e = SMLT__ERROR_REPLY__INIT;
    e.code = code;
    e.message = (char *)(msg && msg[0] ? msg : smlt_strerror(code));
    rpc_conn_send(c, SMLT__MSG_TYPE__MSG_ERROR, req_id, &e.base, NULL, 0, 0, NULL, NULL);
}

static void reply_ok(struct rpc_conn *c, uint64_t req_id)
{
    Smlt__Ok ok = SMLT__OK__INIT;
    rpc_conn_send(c, SMLT__MSG_TYPE__MSG_OK, req_id, &ok.base, NULL, 0, 0, NULL, NULL);
}

static struct hosted *find(struct ps_node *n, const char *route)
{
    for (struct hosted *h = n->shards; h; h = h->next)
        if (!strcmp(h->route, route))
            return h;
    return NULL;
}

static uint64_t mib(uint64_t b)
{
    return (b + (1u << 20) - 1) >> 20;
}

static uint32_t total_conns(const struct ps_node *n)
{
    uint32_t c = 0;
    for (const struct pend *p = n->pends; p; p = p->next)
        c++;
    for (const struct hosted *h = n->shards; h; h = h->next) {
        int cf;
        uint64_t v;
        uint32_t k;
        ps_server_brief(h->srv, &cf, &v, &k);
        c += k;
    }
    return c;
}

/* ---- hosted shards ----------------------------------------------------------------------- */

static void hosted_free(struct hosted *h)
{
    if (h->srv)
        ps_server_free(h->srv);
    if (h->drop_ev)
        event_free(h->drop_ev);
    free(h->token);
    free(h->admin_token);
    free(h);
}

static void unlink_from(struct hosted **list, struct hosted *h)
{
    for (struct hosted **pp = list; *pp; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            return;
        }
    }
}

/* Frees a dropped shard from its own timer (not inside its server's callbacks): its
 * connections are aborted first, and it is freed once they are gone (their frees are deferred
 * events of this loop, which ps_server_free() must not run from inside it). */
static void on_drop(evutil_socket_t fd, short what, void *arg)
{
    struct hosted *h = arg;
    if (h->srv && !ps_server_idle(h->srv)) {
        ps_server_abort_conns(h->srv);
        struct timeval tv = {0, 20000};
        evtimer_add(h->drop_ev, &tv);
        return;
    }
    unlink_from(&h->node->dropping, h);
    hosted_free(h);
}

static void drop(struct ps_node *n, struct hosted *h, const char *why)
{
    unlink_from(&n->shards, h);
    h->next = n->dropping;
    n->dropping = h;
    n->used -= h->reserved;
    n->dropped_total++;
    log_info("node %s: dropped %s (job %s shard %u, %llu MiB): %s", n->name, h->route, h->job,
             h->shard, (unsigned long long)mib(h->reserved), why);
    struct timeval tv = {0, 100000}; /* a Shutdown's Ok goes out first */
    h->drop_ev = evtimer_new(n->base, on_drop, h);
    if (h->drop_ev)
        evtimer_add(h->drop_ev, &tv);
}

static void on_hosted_shutdown(struct ps_server *srv, void *arg)
{
    struct hosted *h = arg;
    drop(h->node, h, "its job asked it to shut down");
}

/* Configure's reservation: what the range takes, within what the node has free. */
static int on_reserve(void *arg, uint64_t bytes, char *err, size_t errlen)
{
    struct hosted *h = arg;
    struct ps_node *n = h->node;
    uint64_t free_b = n->conf.capacity_bytes - n->used;
    if (bytes > h->reserved && bytes - h->reserved > free_b) {
        n->refused++;
        snprintf(err, errlen,
                 "node %s: the shard's range needs %llu MiB; it has %llu MiB reserved and the "
                 "node %llu MiB free of %llu",
                 n->name, (unsigned long long)mib(bytes), (unsigned long long)mib(h->reserved),
                 (unsigned long long)mib(free_b),
                 (unsigned long long)mib(n->conf.capacity_bytes));
        return SMLT_ENOMEM;
    }
    n->used = n->used - h->reserved + bytes;
    h->reserved = bytes;
    return 0;
}

/* A NUL-terminated copy of n bytes (a protobuf bytes field has no NUL: strndup() would look
 * for one past its end). */
static char *dup_bytes(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static int host(struct ps_node *n, const Smlt__NodeHost *m, char *err, size_t errlen)
{
    if (!valid_name(m->route, ROUTE_MAX) || !valid_name(m->job, JOB_MAX)) {
        snprintf(err, errlen, "route and job: 1..%d and 1..%d of [A-Za-z0-9._-]", ROUTE_MAX,
                 JOB_MAX);
        return SMLT_EINVAL;
    }
    if (m->token.len == 0 || m->token.len > SMLT_MAX_TOKEN || m->admin_token.len > SMLT_MAX_TOKEN ||
        memchr(m->token.data, 0, m->token.len) ||
        (m->admin_token.len && memchr(m->admin_token.data, 0, m->admin_token.len))) {
        snprintf(err, errlen, "a job token of 1..%u bytes (no NUL) is required", SMLT_MAX_TOKEN);
        return SMLT_EINVAL;
    }
    if (m->shard >= SMLT_MAX_SHARDS) {
        snprintf(err, errlen, "shard %u: at most %u", m->shard, SMLT_MAX_SHARDS - 1);
        return SMLT_EINVAL;
    }
    struct hosted *h = find(n, m->route);
    if (h) {
        /* A retry of the same NodeHost is a success; anything else under the route is not. */
        int same = h->shard == m->shard && !strcmp(h->job, m->job) &&
                   strlen(h->token) == m->token.len &&
                   !memcmp(h->token, m->token.data, m->token.len);
        if (same)
            return 0;
        snprintf(err, errlen, "node %s: route %s is taken (job %s shard %u)", n->name, m->route,
                 h->job, h->shard);
        return SMLT_EINVAL;
    }
    uint64_t free_b = n->conf.capacity_bytes - n->used;
    if (m->memory_bytes > free_b) {
        n->refused++;
        snprintf(err, errlen, "node %s: cannot hold shard %u of job %s: it needs %llu MiB, the "
                              "node has %llu MiB free of %llu",
                 n->name, m->shard, m->job, (unsigned long long)mib(m->memory_bytes),
                 (unsigned long long)mib(free_b), (unsigned long long)mib(n->conf.capacity_bytes));
        return SMLT_ENOMEM;
    }
    h = calloc(1, sizeof *h);
    if (!h)
        return SMLT_ENOMEM;
    h->node = n;
    snprintf(h->route, sizeof h->route, "%s", m->route);
    snprintf(h->job, sizeof h->job, "%s", m->job);
    h->shard = m->shard;
    h->backup = m->has_backup && m->backup;
    h->token = dup_bytes(m->token.data, m->token.len);
    h->admin_token = m->admin_token.len ? dup_bytes(m->admin_token.data, m->admin_token.len) : NULL;
    char *ck = h->ckpt_dir;
    if (n->ckpt_dir) {
        snprintf(ck, sizeof h->ckpt_dir, "%s/%s", n->ckpt_dir, m->job);
        if (mkdir(ck, 0750) != 0 && errno != EEXIST)
            log_warn("node %s: cannot create %s: %s", n->name, ck, strerror(errno));
    }
    struct ps_server_conf sc = {
        .shard = m->shard,
        .token = h->token,
        .admin_token = h->admin_token,
        .checkpoint_dir = ck[0] ? ck : NULL,
        .tls = n->conf.tls,
        .tls_client = n->conf.tls_client,
        .hosted = 1,
        .on_shutdown = on_hosted_shutdown,
        .reserve = on_reserve,
        .cb_arg = h,
    };
    if (!h->token || (m->admin_token.len && !h->admin_token) ||
        !(h->srv = ps_server_new(n->base, &sc, err, errlen))) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        hosted_free(h);
        return SMLT_ENOMEM;
    }
    h->reserved = m->memory_bytes;
    n->used += h->reserved;
    h->next = n->shards;
    n->shards = h;
    n->hosted_total++;
    log_info("node %s: hosting %s (job %s shard %u%s, %llu MiB reserved; %llu of %llu MiB used)",
             n->name, h->route, h->job, h->shard, h->backup ? ", a backup" : "",
             (unsigned long long)mib(h->reserved), (unsigned long long)mib(n->used),
             (unsigned long long)mib(n->conf.capacity_bytes));
    return 0;
}

/* ---- the node's own requests ------------------------------------------------------------- */

static void send_info(struct ps_node *n, struct rpc_conn *c, uint64_t req_id)
{
    size_t k = 0, cnt = 0;
    for (struct hosted *h = n->shards; h; h = h->next)
        cnt++;
    Smlt__NodeShard *sh = calloc(cnt ? cnt : 1, sizeof *sh);
    Smlt__NodeShard **shp = calloc(cnt ? cnt : 1, sizeof *shp);
    if (!sh || !shp) {
        free(sh);
        free(shp);
        reply_error(c, req_id, SMLT_ENOMEM, "out of memory");
        return;
    }
    for (struct hosted *h = n->shards; h; h = h->next, k++) {
        Smlt__NodeShard *s = &sh[k];
        smlt__node_shard__init(s);
        int cf;
        s->route = h->route;
        s->job = h->job;
        s->has_shard = s->has_memory_bytes = s->has_version = s->has_connections = 1;
        s->has_configured = s->has_backup = 1;
        s->shard = h->shard;
        s->memory_bytes = h->reserved;
        ps_server_brief(h->srv, &cf, &s->version, &s->connections);
        s->configured = cf != 0;
        s->backup = h->backup != 0;
        shp[k] = s;
    }
    Smlt__NodeInfo info = SMLT__NODE_INFO__INIT;
    info.node = n->name;
    info.boot_id = n->boot_id;
    info.has_capacity_bytes = info.has_used_bytes = info.has_refused = info.has_uptime_s = 1;
    info.capacity_bytes = n->conf.capacity_bytes;
    info.used_bytes = n->used;
    info.refused = n->refused;
    info.uptime_s = smlt_now_mono() - n->started;
    info.has_metrics_port = n->http_port > 0;
    info.metrics_port = (uint32_t)n->http_port;
    info.n_shards = cnt;
    info.shards = shp;
    rpc_conn_send(c, SMLT__MSG_TYPE__MSG_NODE_INFO, req_id, &info.base, NULL, 0, 0, NULL, NULL);
    free(sh);
    free(shp);
}

static void admin_frame(struct pend *p, const struct rpc_frame_hdr *h, const uint8_t *meta)
{
    struct ps_node *n = p->node;
    char err[512] = "";
    if (h->type == SMLT__MSG_TYPE__MSG_PING) {
        Smlt__Ping pong = SMLT__PING__INIT;
        rpc_conn_send(p->conn, SMLT__MSG_TYPE__MSG_PONG, h->req_id, &pong.base, NULL, 0, 0, NULL,
                      NULL);
        return;
    }
    if (h->type == SMLT__MSG_TYPE__MSG_NODE_STATS) {
        send_info(n, p->conn, h->req_id);
        return;
    }
    if (h->type != SMLT__MSG_TYPE__MSG_NODE_HOST && h->type != SMLT__MSG_TYPE__MSG_NODE_DROP) {
        reply_error(p->conn, h->req_id, SMLT_EPROTO,
                    "a node's own connection takes NodeHost, NodeDrop, NodeStats and Ping");
        return;
    }
    ProtobufCMessage *msg = rpc_msg_unpack(h, meta);
    if (!msg) {
        reply_error(p->conn, h->req_id, SMLT_EPROTO, "malformed request");
        return;
    }
    int rc = 0;
    if (h->type == SMLT__MSG_TYPE__MSG_NODE_HOST) {
        rc = host(n, (Smlt__NodeHost *)msg, err, sizeof err);
    } else {
        struct hosted *x = find(n, ((Smlt__NodeDrop *)msg)->route);
        if (x)
            drop(n, x, "the coordinator dropped it");
    }
    if (rc) {
        log_warn("node %s: %s", n->name, err);
        reply_error(p->conn, h->req_id, rc, err);
    } else {
        reply_ok(p->conn, h->req_id);
    }
    protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- connections ------------------------------------------------------------------------- */

static void pend_unlink(struct pend *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        p->node->pends = p->next;
    if (p->next)
        p->next->prev = p->prev;
    if (p->timer)
        event_free(p->timer);
    free(p);
}

/* The first frame: a Hello for the node (pool token) or for one of its shards (route). */
static void on_hello(struct pend *p, const struct rpc_frame_hdr *h, const uint8_t *meta)
{
    struct ps_node *n = p->node;
    struct rpc_conn *c = p->conn;
    Smlt__Hello *m = (Smlt__Hello *)rpc_msg_unpack(h, meta);
    if (!m) {
        reply_error(c, h->req_id, SMLT_EPROTO, "malformed Hello");
        rpc_conn_close(c, SMLT_EPROTO);
        return;
    }
    const char *route = m->route ? m->route : "";
    if (route[0]) {
        struct hosted *x = find(n, route);
        if (!x) {
            char msg[160];
            snprintf(msg, sizeof msg, "node %s hosts no shard %.*s", n->name, ROUTE_MAX, route);
            log_info("%s: %s", rpc_conn_peer(c), msg);
            reply_error(c, h->req_id, SMLT_ENOTFOUND, msg);
            rpc_conn_close(c, SMLT_ENOTFOUND);
        } else {
            /* The shard's server takes the connection (and answers this Hello itself). */
            pend_unlink(p);
            if (ps_server_adopt(x->srv, c, h, meta) != 0) {
                reply_error(c, h->req_id, SMLT_ENOMEM, "out of memory");
                rpc_conn_set_arg(c, NULL);
                rpc_conn_close(c, SMLT_ENOMEM);
            }
        }
    } else if (m->proto_version != SMLT_PROTO_VERSION) {
        reply_error(c, h->req_id, SMLT_EVERSION, "protocol version not supported");
        rpc_conn_close(c, SMLT_EVERSION);
    } else if (!rpc_token_equal(m->token.data, m->token.len, n->token, strlen(n->token))) {
        n->auth_failures++;
        log_warn("node %s: %s: wrong pool token; closing", n->name, rpc_conn_peer(c));
        reply_error(c, h->req_id, SMLT_EAUTH, "wrong token");
        rpc_conn_close(c, SMLT_EAUTH);
    } else {
        p->admin = 1;
        if (p->timer) {
            event_free(p->timer);
            p->timer = NULL;
        }
        rpc_conn_set_limits(c, &lim_admin);
        Smlt__HelloOk ok = SMLT__HELLO_OK__INIT;
        ok.proto_version = SMLT_PROTO_VERSION;
        ok.shard = 0;
        ok.server = "smlt-ps node " SMLT_VERSION_STRING;
        rpc_conn_send(c, SMLT__MSG_TYPE__MSG_HELLO_OK, h->req_id, &ok.base, NULL, 0, 0, NULL,
                      NULL);
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void on_frame(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                     void *payload, void *arg)
{
    struct pend *p = arg;
    if (!p)
        return;
    if (p->admin) {
        admin_frame(p, h, meta);
    } else if (h->type == SMLT__MSG_TYPE__MSG_HELLO) {
        on_hello(p, h, meta);
    } else {
        p->node->auth_failures++;
        reply_error(c, h->req_id, SMLT_EAUTH, "send Hello first");
        rpc_conn_close(c, SMLT_EAUTH);
    }
}

static void on_close(struct rpc_conn *c, int err, void *arg)
{
    if (arg)
        pend_unlink(arg);
}

static const struct rpc_conn_handler node_handler = {
    .on_frame = on_frame,
    .on_close = on_close,
};

static void on_hs_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pend *p = arg;
    p->node->auth_failures++;
    log_warn("node %s: %s sent no Hello within %d s; closing", p->node->name,
             rpc_conn_peer(p->conn), SMLT_HANDSHAKE_TIMEOUT_S);
    reply_error(p->conn, 0, SMLT_ETIMEDOUT, "no Hello in time");
    rpc_conn_close(p->conn, SMLT_ETIMEDOUT);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct ps_node *n = arg;
    struct pend *p = calloc(1, sizeof *p);
    if (!p) {
        close(fd);
        return;
    }
    p->node = n;
    p->conn = rpc_conn_new_fd_tls(n->base, fd, n->conf.tls, &lim_preauth, &node_handler, p);
    if (!p->conn) {
        free(p);
        return;
    }
    p->next = n->pends;
    if (n->pends)
        n->pends->prev = p;
    n->pends = p;
    uint32_t max = n->conf.max_conns ? n->conf.max_conns : SMLT_MAX_CONNS;
    if (total_conns(n) > max) {
        log_warn("node %s: connection limit %u reached; refusing %s", n->name, max,
                 rpc_conn_peer(p->conn));
        reply_error(p->conn, 0, SMLT_EBUSY, "connection limit reached");
        rpc_conn_close(p->conn, SMLT_EBUSY);
        return;
    }
    p->timer = evtimer_new(n->base, on_hs_timeout, p);
    struct timeval tv = {SMLT_HANDSHAKE_TIMEOUT_S, 0};
    if (p->timer)
        evtimer_add(p->timer, &tv);
}

static void on_accept_error(struct evconnlistener *lis, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    log_warn("accept: %s", evutil_socket_error_to_string(e));
}

/* ---- /healthz and /metrics --------------------------------------------------------------- */

static void metric(struct evbuffer *b, const char *name, const char *type, const char *help,
                   double v)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name,
                        v);
}

static void on_http(struct evhttp_request *req, void *arg)
{
    struct ps_node *n = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_send_error(req, 405, NULL);
    } else if (!strcmp(uri, "/healthz")) {
        evbuffer_add_printf(b, "ok\n");
        evhttp_send_reply(req, 200, "OK", b);
    } else if (!strcmp(uri, "/metrics")) {
        uint32_t cnt = 0, conf = 0;
        for (struct hosted *h = n->shards; h; h = h->next) {
            int cf;
            uint64_t v;
            uint32_t k;
            ps_server_brief(h->srv, &cf, &v, &k);
            cnt++;
            conf += cf != 0;
        }
        metric(b, "smlt_ps_node_capacity_bytes", "gauge", "Memory the node may reserve (--memory-mb).",
               (double)n->conf.capacity_bytes);
        metric(b, "smlt_ps_node_reserved_bytes", "gauge", "Memory reserved by the shards hosted.",
               (double)n->used);
        metric(b, "smlt_ps_node_shards", "gauge", "Shards hosted.", cnt);
        metric(b, "smlt_ps_node_shards_configured", "gauge", "Shards hosted with a job configured.",
               conf);
        metric(b, "smlt_ps_node_connections", "gauge", "Connections open, over all shards.",
               total_conns(n));
        metric(b, "smlt_ps_node_hosted_total", "counter", "Shards hosted since start.",
               (double)n->hosted_total);
        metric(b, "smlt_ps_node_dropped_total", "counter", "Shards dropped since start.",
               (double)n->dropped_total);
        metric(b, "smlt_ps_node_refused_total", "counter",
               "Shards or configurations refused for memory.", (double)n->refused);
        metric(b, "smlt_ps_node_auth_failures_total", "counter",
               "Node connections refused for a wrong token or no Hello.", (double)n->auth_failures);
        metric(b, "smlt_ps_node_uptime_seconds", "gauge", "Seconds since the node started.",
               smlt_now_mono() - n->started);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; version=0.0.4");
        evhttp_send_reply(req, 200, "OK", b);
    } else {
        evhttp_send_error(req, 404, NULL);
    }
    evbuffer_free(b);
}

int ps_node_http(struct ps_node *n, const char *addr, char *err, size_t errlen)
{
    int port = 0;
    int fd = rpc_net_listen(addr, 64, &port);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr,
                 fd == SMLT_ESYS ? strerror(errno) : smlt_strerror(fd));
        return -1;
    }
    n->http = evhttp_new(n->base);
    if (!n->http || !evhttp_accept_socket_with_handle(n->http, fd)) {
        close(fd);
        snprintf(err, errlen, "cannot serve HTTP on %s", addr);
        return -1;
    }
    evhttp_set_max_headers_size(n->http, 8192);
    evhttp_set_max_body_size(n->http, 4096);
    evhttp_set_timeout(n->http, 10);
    evhttp_set_gencb(n->http, on_http, n);
    n->http_port = port;
    return port;
}

/* ---- the node ---------------------------------------------------------------------------- */

struct ps_node *ps_node_new(struct event_base *base, const struct ps_node_conf *conf, char *err,
                            size_t errlen)
{
    if (!conf->token || !conf->token[0] || strlen(conf->token) > SMLT_MAX_TOKEN) {
        snprintf(err, errlen, "a node needs a pool token of 1..%u bytes (--admin-token-file)",
                 SMLT_MAX_TOKEN);
        return NULL;
    }
    if (conf->tls && !conf->tls_client) {
        snprintf(err, errlen, "a TLS node needs a client context for its shards' backups");
        return NULL;
    }
    struct ps_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->base = base;
    n->conf = *conf;
    n->conf.tls = conf->tls ? smlt_tls_ref(conf->tls) : NULL;
    n->conf.tls_client = conf->tls_client ? smlt_tls_ref(conf->tls_client) : NULL;
    char host[256] = "node";
    if (!conf->name && gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "node");
    n->name = strdup(conf->name ? conf->name : host);
    n->token = strdup(conf->token);
    n->ckpt_dir = conf->checkpoint_dir ? strdup(conf->checkpoint_dir) : NULL;
    n->started = smlt_now_mono();
    FILE *ur = fopen("/dev/urandom", "rb");
    if (!ur || fread(&n->boot_id, sizeof n->boot_id, 1, ur) != 1)
        n->boot_id = (uint64_t)getpid() << 32 ^ (uint64_t)(smlt_now_unix() * 1e6);
    if (ur)
        fclose(ur);
    n->boot_id |= 1; /* never 0: "unknown" to the coordinator */
    if (!n->name || !n->token || (conf->checkpoint_dir && !n->ckpt_dir)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    int fd = rpc_net_listen(conf->listen ? conf->listen : "127.0.0.1:7000", 1024, &n->port);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", conf->listen ? conf->listen : "?",
                 fd == SMLT_ESYS ? strerror(errno) : smlt_strerror(fd));
        goto fail;
    }
    n->lis = evconnlistener_new(base, on_accept, n, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (!n->lis) {
        close(fd);
        snprintf(err, errlen, "cannot set up the listener");
        goto fail;
    }
    evconnlistener_set_error_cb(n->lis, on_accept_error);
    return n;
fail:
    ps_node_free(n);
    return NULL;
}

int ps_node_port(const struct ps_node *n)
{
    return n->port;
}

void ps_node_free(struct ps_node *n)
{
    if (!n)
        return;
    if (n->lis)
        evconnlistener_free(n->lis);
    if (n->http)
        evhttp_free(n->http);
    for (struct pend *p = n->pends; p; p = p->next)
        rpc_conn_abort(p->conn, SMLT_ECANCELED);
    while (n->pends)
        event_base_loop(n->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    for (struct hosted **list = &n->shards; list; list = list == &n->shards ? &n->dropping : NULL) {
        while (*list) {
            struct hosted *h = *list;
            *list = h->next;
            hosted_free(h);
        }
    }
    smlt_tls_free(n->conf.tls);
    smlt_tls_free(n->conf.tls_client);
    free(n->name);
    free(n->token);
    free(n->ckpt_dir);
    free(n);
}
