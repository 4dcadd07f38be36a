/* smlt_node.c: requests to a PS node (smlt_client_int.h): NodeHost, NodeDrop, NodeStats.
 *
 * Each request opens a connection of its own on a private event loop: Hello with no route and
 * the pool token, then the request, then the answer or the deadline. The coordinator makes
 * them from threads (its pool's monitor, a job's admin queue), never on its loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "rpc_conn.h"
#include "smlt.pb-c.h"
#include "smlt_client_int.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_tls.h"
#include "smlt_util.h"

static const struct rpc_limits node_limits = {SMLT_MAX_META_LEN, 0};

struct node_call {
    struct event_base *base;
    int done;
    int rc;
    int hello_ok;
    int closed;      /* on_close ran: the connection frees itself */
    char *err;
    size_t errlen;
    struct smlt_node_info *info; /* NodeStats */
};

static void finish(struct node_call *k, int rc, const char *msg)
{
    if (k->done)
        return;
    k->done = 1;
    k->rc = rc;
    if (rc && k->err && k->errlen)
        snprintf(k->err, k->errlen, "%s", msg && msg[0] ? msg : smlt_strerror(rc));
    event_base_loopbreak(k->base);
}

static void take_info(struct node_call *k, const Smlt__NodeInfo *m)
{
    struct smlt_node_info *o = k->info;
    snprintf(o->node, sizeof o->node, "%s", m->node);
    o->boot_id = m->boot_id;
    o->capacity_bytes = m->capacity_bytes;
    o->used_bytes = m->used_bytes;
    o->refused = m->refused;
    o->uptime_s = m->uptime_s;
    o->metrics_port = m->has_metrics_port ? m->metrics_port : 0;
    o->shards = calloc(m->n_shards ? m->n_shards : 1, sizeof *o->shards);
    if (!o->shards)
        return;
    o->nshards = (uint32_t)m->n_shards;
    for (size_t i = 0; i < m->n_shards; i++) {
        const Smlt__NodeShard *s = m->shards[i];
        struct smlt_node_shard *d = &o->shards[i];
        snprintf(d->route, sizeof d->route, "%s", s->route);
        snprintf(d->job, sizeof d->job, "%s", s->job ? s->job : "");
        d->shard = s->shard;
        d->connections = s->connections;
        d->memory_bytes = s->memory_bytes;
        d->version = s->version;
        d->configured = s->configured;
        d->backup = s->backup;
    }
}

static void on_frame(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                     void *payload, void *arg)
{
    struct node_call *k = arg;
    if (h->type == SMLT__MSG_TYPE__MSG_ERROR) {
        Smlt__ErrorReply *e = (Smlt__ErrorReply *)rpc_msg_unpack(h, meta);
        finish(k, e && e->code < 0 ? e->code : SMLT_EPROTO, e ? e->message : "malformed error");
        if (e)
            protobuf_c_message_free_unpacked(&e->base, NULL);
    } else if (h->req_id == 1 && h->type == SMLT__MSG_TYPE__MSG_HELLO_OK) {
        k->hello_ok = 1;
    } else if (h->req_id == 2 && h->type == SMLT__MSG_TYPE__MSG_OK && k->hello_ok) {
        finish(k, 0, NULL);
    } else if (h->req_id == 2 && h->type == SMLT__MSG_TYPE__MSG_NODE_INFO && k->info &&
               k->hello_ok) {
        Smlt__NodeInfo *m = (Smlt__NodeInfo *)rpc_msg_unpack(h, meta);
        if (m) {
            take_info(k, m);
            protobuf_c_message_free_unpacked(&m->base, NULL);
        }
        finish(k, m ? 0 : SMLT_EPROTO, "malformed NodeInfo");
    } else {
        finish(k, SMLT_EPROTO, "unexpected answer from the node");
    }
}

static void on_close(struct rpc_conn *c, int err, void *arg)
{
    struct node_call *k = arg;
    char msg[256];
    k->closed = 1;
    const char *why = rpc_conn_errmsg(c);
    snprintf(msg, sizeof msg, "connection closed: %s", why[0] ? why : smlt_strerror(err));
    finish(k, err ? err : SMLT_ECLOSED, msg);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    finish(arg, SMLT_ETIMEDOUT, "no answer in time");
}

static const struct rpc_conn_handler node_handler = {.on_frame = on_frame, .on_close = on_close};

/* Sends Hello and the request (type, msg), runs the loop until the answer. */
static int node_call(const char *addr, const char *token, int timeout_ms, uint8_t type,
                     const ProtobufCMessage *msg, struct smlt_node_info *info, char *err,
                     size_t errlen)
{
    char e2[512] = "";
    if (!err || !errlen) {
        err = e2;
        errlen = sizeof e2;
    }
    err[0] = '\0';
    if (!addr || !token || !*token) {
        snprintf(err, errlen, "a node address and the pool token are required");
        return SMLT_EINVAL;
    }
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    struct node_call k = {.err = err, .errlen = errlen, .info = info};
    k.base = event_base_new();
    if (!k.base)
        return SMLT_ENOMEM;
    struct smlt_tls *tls = smlt_client__default_tls();
    int cerr = 0;
    struct rpc_conn *c = rpc_conn_connect_tls(k.base, addr, tls, &node_limits, &node_handler, &k,
                                              &cerr);
    if (!c) {
        snprintf(err, errlen, "node %s: %s", addr, smlt_strerror(cerr));
        smlt_tls_free(tls);
        event_base_free(k.base);
        return cerr ? cerr : SMLT_EIO;
    }
    Smlt__Hello hello = SMLT__HELLO__INIT;
    hello.proto_version = SMLT_PROTO_VERSION;
    hello.token.data = (uint8_t *)token;
    hello.token.len = strlen(token);
    hello.has_role = 1;
    hello.role = SMLT__ROLE__ROLE_ADMIN;
    hello.client = "libsmlt pool";
    rpc_conn_send(c, SMLT__MSG_TYPE__MSG_HELLO, 1, &hello.base, NULL, 0, 0, NULL, NULL);
    rpc_conn_send(c, type, 2, msg, NULL, 0, 0, NULL, NULL);
    struct event *t = evtimer_new(k.base, on_timeout, &k);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (t)
        evtimer_add(t, &tv);
    while (!k.done && t)
        event_base_dispatch(k.base);
    if (!t)
        finish(&k, SMLT_ENOMEM, "out of memory");
    if (!k.closed) {
        rpc_conn_set_handler(c, &(struct rpc_conn_handler){0}, NULL);
        rpc_conn_abort(c, SMLT_ECANCELED);
    }
    event_base_loop(k.base, EVLOOP_NONBLOCK); /* the deferred free */
    if (t)
        event_free(t);
    event_base_free(k.base);
    smlt_tls_free(tls);
    if (k.rc && !strstr(err, addr)) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", err);
        snprintf(err, errlen, "node %s: %s", addr, tmp);
    }
    return k.rc;
}

int smlt_node_host(const char *addr, const char *pool_token, const struct smlt_node_host *h,
                   int timeout_ms, char *err, size_t errlen)
{
    Smlt__NodeHost m = SMLT__NODE_HOST__INIT;
    m.route = (char *)h->route;
    m.job = (char *)h->job;
    m.shard = h->shard;
    m.token.data = (uint8_t *)h->token;
    m.token.len = h->token ? strlen(h->token) : 0;
    if (h->admin_token) {
        m.has_admin_token = 1;
        m.admin_token.data = (uint8_t *)h->admin_token;
        m.admin_token.len = strlen(h->admin_token);
    }
    m.memory_bytes = h->memory_bytes;
    m.has_backup = 1;
    m.backup = h->backup != 0;
    return node_call(addr, pool_token, timeout_ms, SMLT__MSG_TYPE__MSG_NODE_HOST, &m.base, NULL,
                     err, errlen);
}

int smlt_node_drop(const char *addr, const char *pool_token, const char *route, int timeout_ms,
                   char *err, size_t errlen)
{
    Smlt__NodeDrop m = SMLT__NODE_DROP__INIT;
    m.route = (char *)route;
    return node_call(addr, pool_token, timeout_ms, SMLT__MSG_TYPE__MSG_NODE_DROP, &m.base, NULL,
                     err, errlen);
}

int smlt_node_stats(const char *addr, const char *pool_token, int timeout_ms,
                    struct smlt_node_info *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    Smlt__NodeStatsReq m = SMLT__NODE_STATS_REQ__INIT;
    int rc = node_call(addr, pool_token, timeout_ms, SMLT__MSG_TYPE__MSG_NODE_STATS, &m.base, out,
                       err, errlen);
    if (rc)
        smlt_node_info_free(out);
    return rc;
}

void smlt_node_info_free(struct smlt_node_info *info)
{
    if (!info)
        return;
    free(info->shards);
    info->shards = NULL;
    info->nshards = 0;
}
