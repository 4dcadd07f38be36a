/* coord_rpc.c: see coord_rpc.h. */
#include "coord_rpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "rpc_conn.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_tls.h"

#define RPC_INV_MAX 64

struct wconn {
    struct coord_rpc *r;
    struct rpc_conn *conn;
    char inv[RPC_INV_MAX]; /* bound invocation, "" before WorkerHello */
    struct event *hs_timer;
    struct wconn *next, *prev;
};

struct coord_rpc {
    struct event_base *base;
    struct evconnlistener *lis;
    struct coord_rpc_handler h;
    void *arg;
    char addr[96];
    struct wconn *conns;
    unsigned nconns;
    struct coord_rpc_stats st;
    struct smlt_tls *tls; /* a server context: TLS on every connection, or NULL */
};

static const struct rpc_limits lim_pre = {SMLT_MAX_META_PREAUTH, 0};
/* Worker messages are small; no payloads on this channel. */
static const struct rpc_limits lim_post = {64u << 10, 0};

static void reply_err(struct wconn *w, uint64_t req, int code, const char *msg)
{
    rpc_conn_send_error(w->conn, req, code, "%s", msg);
}

static void handle_hello(struct wconn *w, const struct rpc_frame_hdr *h, const uint8_t *meta)
{
    struct coord_rpc *r = w->r;
    Smlt__WorkerHello *m = (Smlt__WorkerHello *)rpc_msg_unpack(h, meta);
    if (!m) {
        reply_err(w, h->req_id, SMLT_EPROTO, "malformed WorkerHello");
        rpc_conn_close(w->conn, SMLT_EPROTO);
        return;
    }
    if (m->proto_version != SMLT_PROTO_VERSION || strlen(m->invocation) >= RPC_INV_MAX) {
        reply_err(w, h->req_id, SMLT_EVERSION, "unsupported protocol version or invocation id");
        rpc_conn_close(w->conn, SMLT_EVERSION);
        goto out;
    }
    Smlt__Assignment a = SMLT__ASSIGNMENT__INIT;
    char err[256] = "";
    int rc = r->h.hello(m, &a, err, sizeof err, r->arg);
    if (rc) {
        if (rc == SMLT_EAUTH)
            r->st.auth_failures++;
        log_warn("rpc %s: invocation %s refused: %s", rpc_conn_peer(w->conn), m->invocation, err);
        reply_err(w, h->req_id, rc, err[0] ? err : smlt_strerror(rc));
        if (rc == SMLT_EAUTH)
            rpc_conn_close(w->conn, rc);
        goto out;
    }
    snprintf(w->inv, sizeof w->inv, "%s", m->invocation);
    if (w->hs_timer) {
        event_free(w->hs_timer);
        w->hs_timer = NULL;
    }
    rpc_conn_set_limits(w->conn, &lim_post);
    rpc_conn_send(w->conn, SMLT__MSG_TYPE__MSG_ASSIGNMENT, h->req_id, &a.base, NULL, 0, 0, NULL, NULL);
out:
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void on_frame(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                     void *payload, void *arg)
{
    struct wconn *w = arg;
    struct coord_rpc *r = w->r;
    if (h->type == SMLT__MSG_TYPE__MSG_WORKER_HELLO) {
        handle_hello(w, h, meta);
        return;
    }
    if (!w->inv[0]) {
        r->st.auth_failures++;
        reply_err(w, h->req_id, SMLT_EAUTH, "send WorkerHello first");
        rpc_conn_close(c, SMLT_EAUTH);
        return;
    }
    if (h->type == SMLT__MSG_TYPE__MSG_PROGRESS) {
        Smlt__Progress *p = (Smlt__Progress *)rpc_msg_unpack(h, meta);
        if (!p || strcmp(p->invocation, w->inv)) {
            reply_err(w, h->req_id, SMLT_EPROTO, p ? "progress for another invocation" : "malformed Progress");
            if (p)
                protobuf_c_message_free_unpacked(&p->base, NULL);
            return;
        }
        r->st.progress++;
        Smlt__ProgressAck ack = SMLT__PROGRESS_ACK__INIT;
        ack.has_stop = 1;
        ack.stop = r->h.progress(w->inv, p, r->arg) != 0;
        protobuf_c_message_free_unpacked(&p->base, NULL);
        rpc_conn_send(c, SMLT__MSG_TYPE__MSG_PROGRESS_ACK, h->req_id, &ack.base, NULL, 0, 0, NULL,
                      NULL);
        return;
    }
    if (h->type == SMLT__MSG_TYPE__MSG_DONE) {
        Smlt__Done *d = (Smlt__Done *)rpc_msg_unpack(h, meta);
        if (!d || strcmp(d->invocation, w->inv)) {
            reply_err(w, h->req_id, SMLT_EPROTO, d ? "done for another invocation" : "malformed Done");
            if (d)
                protobuf_c_message_free_unpacked(&d->base, NULL);
            return;
        }
        r->st.done++;
        r->h.done(w->inv, d, r->arg);
        protobuf_c_message_free_unpacked(&d->base, NULL);
        w->inv[0] = '\0'; /* free for the instance's next invocation */
        Smlt__Ok ok = SMLT__OK__INIT;
        rpc_conn_send(c, SMLT__MSG_TYPE__MSG_OK, h->req_id, &ok.base, NULL, 0, 0, NULL, NULL);
        return;
    }
    reply_err(w, h->req_id, SMLT_EPROTO, "unexpected message type for the coordinator");
    rpc_conn_close(c, SMLT_EPROTO);
}

static void on_close(struct rpc_conn *c, int err, void *arg)
{
    struct wconn *w = arg;
    struct coord_rpc *r = w->r;
    r->st.frames_bad += rpc_conn_frames_bad(c);
    if (err == SMLT_ETLS)
        r->st.tls_failures++; /* rpc_conn logged why */
    if (w->prev)
        w->prev->next = w->next;
    else
        r->conns = w->next;
    if (w->next)
        w->next->prev = w->prev;
    if (w->hs_timer)
        event_free(w->hs_timer);
    r->nconns--;
    free(w);
}

static void on_hs_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct wconn *w = arg;
    w->r->st.auth_failures++;
    reply_err(w, 0, SMLT_ETIMEDOUT, "no WorkerHello in time");
    rpc_conn_close(w->conn, SMLT_ETIMEDOUT);
}

static const struct rpc_conn_handler rpc_handler = {.on_frame = on_frame, .on_close = on_close};

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int sl,
                      void *arg)
{
    struct coord_rpc *r = arg;
    if (r->nconns >= SMLT_MAX_CONNS) {
        close(fd);
        return;
    }
    struct wconn *w = calloc(1, sizeof *w);
    if (!w) {
        close(fd);
        return;
    }
    w->r = r;
    w->conn = rpc_conn_new_fd_tls(r->base, fd, r->tls, &lim_pre, &rpc_handler, w);
    if (!w->conn) {
        free(w);
        return;
    }
    r->st.conns++;
    r->nconns++;
    w->next = r->conns;
    if (r->conns)
        r->conns->prev = w;
    r->conns = w;
    w->hs_timer = evtimer_new(r->base, on_hs_timeout, w);
    struct timeval tv = {SMLT_HANDSHAKE_TIMEOUT_S, 0};
    evtimer_add(w->hs_timer, &tv);
}

struct coord_rpc *coord_rpc_new(struct event_base *base, const char *addr,
                                const struct coord_rpc_handler *h, void *arg, char *err,
                                size_t errlen)
{
    struct coord_rpc *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->base = base;
    r->h = *h;
    r->arg = arg;
    int port = 0;
    int fd = rpc_net_listen(addr, 256, &port);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, smlt_strerror(fd));
        free(r);
        return NULL;
    }
    r->lis = evconnlistener_new(base, on_accept, r, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (!r->lis) {
        close(fd);
        free(r);
        snprintf(err, errlen, "cannot set up the listener");
        return NULL;
    }
    /* Workers dial the address we bound; a wildcard bind is dialled on loopback. */
    char host[64];
    snprintf(host, sizeof host, "%s", addr);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    if (!host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "*"))
        snprintf(host, sizeof host, "127.0.0.1");
    snprintf(r->addr, sizeof r->addr, "%s:%d", host, port);
    return r;
}

void coord_rpc_set_tls(struct coord_rpc *r, struct smlt_tls *tls)
{
    smlt_tls_free(r->tls);
    r->tls = tls ? smlt_tls_ref(tls) : NULL;
}

const char *coord_rpc_addr(const struct coord_rpc *r)
{
    return r->addr;
}

void coord_rpc_stats(const struct coord_rpc *r, struct coord_rpc_stats *st)
{
    *st = r->st;
}

void coord_rpc_free(struct coord_rpc *r)
{
    if (!r)
        return;
    if (r->lis)
        evconnlistener_free(r->lis);
    for (struct wconn *w = r->conns; w; w = w->next)
        rpc_conn_abort(w->conn, SMLT_ECANCELED);
    while (r->conns)
        event_base_loop(r->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    smlt_tls_free(r->tls);
    free(r);
}
