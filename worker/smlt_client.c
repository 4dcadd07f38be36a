/* smlt_client.c: libsmlt, the client side of the parameter server (see include/smlt.h).
 *
 * A client keeps one connection per shard on a private event loop. Every public call builds a
 * batch of operations (one or two per shard), sends them all, and runs the loop until each has
 * its reply, so all shards work in parallel. Pull replies are read straight into the caller's
 * model buffer and pushes are sent by reference from the caller's gradient: no copies.
 *
 * Failures: a broken connection is re-established with backoff and its unanswered operations
 * are resent (a push carries (rank, step), which the shard counts once, so a resend is safe); a
 * "stale map" reply carries the new map, which is installed before the whole call is retried;
 * a shard that is still initializing ("try again") is asked again after a short pause.
 *
 * This file holds the client, its links, sending operations and reading the replies, running a
 * batch, and the data plane of smlt.h; the calls of smlt_admin.h are in smlt_admin.c, and the
 * structs both share in smlt_client_priv.h. */
#include "smlt_admin.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "part_map.h"
#include "rpc_conn.h"
#include "smlt.pb-c.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_tls.h"
#include "smlt_util.h"
#include "smlt_client_int.h"
#include "smlt_client_priv.h"

#define CLIENT_DEFAULT_TIMEOUT_MS 60000
#define CLIENT_DEFAULT_RETRIES 5
#define CLIENT_MAP_RETRIES 4
#define CLIENT_BACKOFF_MS 50

static const struct rpc_limits client_limits = {SMLT_MAX_META_LEN, SMLT_MAX_PAYLOAD};

void smlt_client__seterr(struct smlt_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

static void link_connect(struct link *l);
static void send_op(struct smlt_client *c, struct op *o);

/* ---- operations -------------------------------------------------------------------------- */

static struct op *op_find(struct smlt_client *c, uint32_t link, uint64_t req_id)
{
    for (size_t i = 0; i < c->nops; i++)
        if (c->ops[i].link == link && c->ops[i].req_id == req_id && c->ops[i].sent)
            return &c->ops[i];
    return NULL;
}

static void op_finish(struct smlt_client *c, struct op *o, int rc)
{
    if (o->done)
        return;
    o->done = 1;
    o->rc = rc;
}

static int op_complete(const struct op *o)
{
    return o->done && o->ref_out == 0;
}

static void on_payload_released(const void *data, size_t len, void *arg)
{
    struct op *o = arg;
    o->ref_out--;
}

/* ---- connection callbacks ---------------------------------------------------------------- */

static void handle_error_reply(struct smlt_client *c, struct link *l, const struct rpc_frame_hdr *h,
                               const uint8_t *meta)
{
    Smlt__ErrorReply *er = (Smlt__ErrorReply *)rpc_msg_unpack(h, meta);
    int code = er && er->code < 0 && er->code >= SMLT_ERR_MIN ? er->code : SMLT_EPROTO;
    const char *msg = er && er->message ? er->message : smlt_strerror(code);
    if (code == SMLT_ESTALEMAP && er && er->map) {
        char e[256];
        struct part_map *m = part_map_from_pb(er->map, e, sizeof e);
        if (m && (!c->new_map || m->version > c->new_map->version) &&
            (!c->map || m->version > c->map->version)) {
            part_map_free(c->new_map);
            c->new_map = m;
        } else {
            part_map_free(m);
        }
    }
    if (h->req_id == l->hello_req || (code == SMLT_ETLS && h->req_id == 0)) {
        /* The handshake failed (a TLS shard tells a plaintext client so with request id 0):
         * every operation waiting on this shard fails with it. */
        if (code == SMLT_EAUTH || code == SMLT_EVERSION || code == SMLT_ETLS)
            l->fatal = 1;
        if (code == SMLT_ETLS)
            l->fatal_rc = SMLT_ETLS;
        smlt_client__seterr(c, "shard %s: %s", l->addr, msg);
        for (size_t i = 0; i < c->nops; i++)
            if (c->ops[i].link == l->idx && !c->ops[i].done)
                op_finish(c, &c->ops[i], code);
    } else {
        struct op *o = op_find(c, l->idx, h->req_id);
        if (o && !o->done) {
            if (code == SMLT_EAGAIN || (code == SMLT_ENOTCONF && c->map && c->map->version > 1)) {
                /* Shard initializing, frozen, or (during a reshard) not configured yet: ask
                 * again shortly, within the call's deadline. */
                o->sent = 0;
                struct timeval tv = {0, 20000};
                evtimer_add(l->retry_ev, &tv);
            } else {
                smlt_client__seterr(c, "shard %s: %s", l->addr, msg);
                op_finish(c, o, code);
            }
        } else if (!o) {
            log_debug("client: shard %s: error for unknown request %llu: %s", l->addr,
                      (unsigned long long)h->req_id, msg);
            if (h->req_id == 0)
                smlt_client__seterr(c, "shard %s: %s", l->addr, msg);
        }
    }
    if (er)
        protobuf_c_message_free_unpacked(&er->base, NULL);
}

static void fill_stats(struct smlt_shard_stats *o, const Smlt__ShardStats *m)
{
    memset(o, 0, sizeof *o);
    o->shard = m->shard;
    o->map_version = m->map_version;
    o->version = m->version;
    o->clock = m->clock;
    o->lo = m->lo;
    o->hi = m->hi;
    o->workers = m->workers;
    o->pushes_received = m->pushes_received;
    o->pushes_counted = m->pushes_counted;
    o->pushes_duplicate = m->pushes_duplicate;
    o->pushes_rejected = m->pushes_rejected;
    o->updates_applied = m->updates_applied;
    o->pulls_served = m->pulls_served;
    o->pulls_waiting = m->pulls_waiting;
    o->pulls_timed_out = m->pulls_timed_out;
    o->bytes_in = m->bytes_in;
    o->bytes_out = m->bytes_out;
    o->frames_bad = m->frames_bad;
    o->auth_failures = m->auth_failures;
    o->tls_failures = m->tls_failures;
    o->stale_map_errors = m->stale_map_errors;
    o->connections = m->connections;
    o->apply_seconds = m->apply_seconds;
    o->lr = m->lr;
    o->noise_g2 = m->noise_g2;
    o->noise_s = m->noise_s;
    o->noise_steps = m->noise_steps;
    o->checkpoints_written = m->checkpoints_written;
    o->checkpoints_failed = m->checkpoints_failed;
    o->checkpoints_skipped = m->checkpoints_skipped;
    o->checkpoints_corrupt = m->checkpoints_corrupt;
    o->checkpoint_last_step = m->checkpoint_last_step;
    o->checkpoint_bytes = m->checkpoint_bytes;
    o->role = m->has_role ? (int)m->role : 0;
    o->backup_forwarded = m->backup_forwarded;
    o->backup_acks = m->backup_acks;
    o->backup_lag = m->backup_lag;
    o->backup_lost = m->backup_lost;
    o->backup_diverged = m->backup_diverged;
    snprintf(o->backup_addr, sizeof o->backup_addr, "%s", m->backup_addr ? m->backup_addr : "");
    o->checkpoint_copy_seconds = m->checkpoint_copy_seconds;
    o->checkpoint_write_seconds = m->checkpoint_write_seconds;
}

static int on_payload(struct rpc_conn *conn, const struct rpc_frame_hdr *h, const uint8_t *meta,
                      void **dest, void *arg)
{
    struct link *l = arg;
    if (!l)
        return SMLT_ECANCELED; /* a connection being dropped (see link_close()) */
    struct smlt_client *c = l->c;
    if (h->type == SMLT__MSG_TYPE__MSG_EXPORT_REPLY) {
        struct op *xo = op_find(c, l->idx, h->req_id);
        if (!xo || xo->kind != OP_EXPORT || xo->done)
            return SMLT_EPROTO;
        free(xo->xbuf);
        xo->xbuf = malloc(h->raw_len ? (size_t)h->raw_len : 1);
        if (!xo->xbuf) {
            op_finish(c, xo, SMLT_ENOMEM);
            return SMLT_ENOMEM;
        }
        xo->xlen = (size_t)h->raw_len;
        *dest = xo->xbuf;
        return 0;
    }
    if (h->type != SMLT__MSG_TYPE__MSG_PULL_REPLY)
        return SMLT_EPROTO;
    struct op *o = op_find(c, l->idx, h->req_id);
    Smlt__PullReply *r = (Smlt__PullReply *)rpc_msg_unpack(h, meta);
    int rc = 0;
    if (!o || o->kind != OP_PULL || o->done || !r) {
        rc = SMLT_EPROTO; /* a reply nobody waits for (an earlier, timed-out call): drop it */
    } else if (r->lo != o->lo || r->hi != o->hi ||
               h->raw_len != (r->hi - r->lo) * sizeof(float)) {
        smlt_client__seterr(c, "shard %s: pull reply for [%llu, %llu) does not match the request",
                            l->addr, (unsigned long long)r->lo, (unsigned long long)r->hi);
        op_finish(c, o, SMLT_EPROTO);
        rc = SMLT_EPROTO;
    } else {
        *dest = o->dst;
    }
    if (r)
        protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}

static void on_frame(struct rpc_conn *conn, const struct rpc_frame_hdr *h, const uint8_t *meta,
                     void *payload, void *arg)
{
    struct link *l = arg;
    if (!l)
        return;
    struct smlt_client *c = l->c;
    if (h->type == SMLT__MSG_TYPE__MSG_ERROR) {
        handle_error_reply(c, l, h, meta);
        return;
    }
    if (h->type == SMLT__MSG_TYPE__MSG_HELLO_OK) {
        l->ready = 1;
        return;
    }
    struct op *o = op_find(c, l->idx, h->req_id);
    if (!o || o->done)
        return; /* late reply to an operation that already failed or timed out */
    ProtobufCMessage *m = rpc_msg_unpack(h, meta);
    if (!m) {
        smlt_client__seterr(c, "shard %s: malformed reply", l->addr);
        op_finish(c, o, SMLT_EPROTO);
        return;
    }
    int rc = 0;
    switch (h->type) {
    case SMLT__MSG_TYPE__MSG_PUSH_ACK: {
        Smlt__PushAck *a = (Smlt__PushAck *)m;
        if (o->kind != OP_PUSH)
            rc = SMLT_EPROTO;
        o->duplicate = a->has_duplicate && a->duplicate;
        o->clock = a->clock;
        break;
    }
    case SMLT__MSG_TYPE__MSG_PULL_REPLY: {
        Smlt__PullReply *r = (Smlt__PullReply *)m;
        if (o->kind != OP_PULL)
            rc = SMLT_EPROTO;
        o->version = r->version;
        o->clock = r->clock;
        break;
    }
    case SMLT__MSG_TYPE__MSG_MAP: {
        char e[256];
        struct part_map *map = part_map_from_pb((Smlt__PartitionMap *)m, e, sizeof e);
        if (!map) {
            smlt_client__seterr(c, "shard %s sent a bad map: %s", l->addr, e);
            rc = SMLT_EPROTO;
        } else if (!c->new_map || map->version > c->new_map->version) {
            part_map_free(c->new_map);
            c->new_map = map; /* the newest of the maps the shards know */
        } else {
            part_map_free(map);
        }
        break;
    }
    case SMLT__MSG_TYPE__MSG_OK: {
        Smlt__Ok *ok = (Smlt__Ok *)m;
        if (ok->has_version)
            o->clock = ok->version;
        break;
    }
    case SMLT__MSG_TYPE__MSG_EXPORT_REPLY: {
        Smlt__ExportReply *x = (Smlt__ExportReply *)m;
        uint32_t nr = (uint32_t)(x->n_last_counted < x->n_last_applied ? x->n_last_counted
                                                                       : x->n_last_applied);
        if (o->kind != OP_EXPORT || x->lo != o->lo || x->hi != o->hi || nr > SMLT_MAX_WORKERS ||
            x->nstate > 4 || o->xlen != (size_t)(1 + x->nstate) * (x->hi - x->lo) * sizeof(float)) {
            rc = SMLT_EPROTO;
            break;
        }
        o->xm.version = x->version;
        o->xm.clock = x->clock;
        o->xm.updates = x->updates;
        o->xm.nstate = x->nstate;
        o->xm.nranks = nr;
        o->xm.last_counted = malloc(sizeof(uint64_t) * (nr ? nr : 1));
        o->xm.last_applied = malloc(sizeof(uint64_t) * (nr ? nr : 1));
        if (!o->xm.last_counted || !o->xm.last_applied) {
            rc = SMLT_ENOMEM;
            break;
        }
        memcpy(o->xm.last_counted, x->last_counted, sizeof(uint64_t) * nr);
        memcpy(o->xm.last_applied, x->last_applied, sizeof(uint64_t) * nr);
        if (x->sync && x->optim) {
            struct smlt_job_conf *jc = &o->xm.conf;
            smlt_job_conf_default(jc);
            jc->sync = x->sync->mode;
            jc->workers = x->sync->workers;
            jc->staleness = x->sync->staleness;
            jc->optim = x->optim->kind;
            jc->lr = x->optim->lr;
            jc->momentum = x->optim->momentum;
            jc->nesterov = x->optim->nesterov;
            jc->beta1 = x->optim->beta1;
            jc->beta2 = x->optim->beta2;
            jc->eps = x->optim->eps;
            jc->weight_decay = x->optim->weight_decay;
            jc->decoupled = x->optim->decoupled;
            if (x->checkpoint_dir) {
                snprintf(o->xm.ckpt_dir, sizeof o->xm.ckpt_dir, "%s", x->checkpoint_dir);
                jc->checkpoint_dir = o->xm.ckpt_dir;
            }
            jc->checkpoint_every = x->checkpoint_every_steps;
            jc->checkpoint_keep = x->checkpoint_keep;
            o->xm.have_conf = 1;
        }
        break;
    }
    case SMLT__MSG_TYPE__MSG_CHECKPOINT_LIST: {
        Smlt__CheckpointList *cl = (Smlt__CheckpointList *)m;
        if (o->kind != OP_LIST_CKPT || cl->n_steps > SMLT_MAX_META_LEN / 8) {
            rc = SMLT_EPROTO;
            break;
        }
        free(o->ck_steps);
        free(o->ck_report);
        o->ck_report = NULL;
        o->ck_steps = malloc(sizeof(uint64_t) * (cl->n_steps ? cl->n_steps : 1));
        if (!o->ck_steps) {
            rc = SMLT_ENOMEM;
            break;
        }
        if (cl->n_steps)
            memcpy(o->ck_steps, cl->steps, sizeof(uint64_t) * cl->n_steps);
        o->ck_n = cl->n_steps;
        o->ck_corrupt = cl->corrupt;
        if (cl->report)
            o->ck_report = strdup(cl->report);
        break;
    }
    case SMLT__MSG_TYPE__MSG_STATS:
        if (o->stats)
            fill_stats(o->stats, (Smlt__ShardStats *)m);
        break;
    default:
        rc = SMLT_EPROTO;
        break;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    op_finish(c, o, rc);
}

static void on_close(struct rpc_conn *conn, int err, void *arg)
{
    struct link *l = arg;
    if (!l)
        return; /* detached by link_close() or smlt_client__install_map() */
    struct smlt_client *c = l->c;
    l->conn = NULL;
    l->ready = 0;
    int pending = 0;
    for (size_t i = 0; i < c->nops; i++) {
        struct op *o = &c->ops[i];
        if (o->link == l->idx && !o->done) {
            o->sent = 0;
            pending = 1;
        }
    }
    if (!pending)
        return;
    if (err == SMLT_ETLS) {
        /* A certificate refused (by either end) or TLS on one end only: a reconnect would
         * fail the same way. */
        const char *why = rpc_conn_errmsg(conn);
        l->fatal = 1;
        l->fatal_rc = SMLT_ETLS;
        smlt_client__seterr(c, "shard %s: %s", l->addr, why[0] ? why : smlt_strerror(err));
    }
    int max = c->opts.retries == 0 ? CLIENT_DEFAULT_RETRIES : c->opts.retries < 0 ? 0 : c->opts.retries;
    if (l->fatal || l->attempts >= max) {
        if (!l->fatal)
            smlt_client__seterr(c, "shard %s: connection lost (%s) after %d reconnects", l->addr,
                                smlt_strerror(err), l->attempts);
        for (size_t i = 0; i < c->nops; i++)
            if (c->ops[i].link == l->idx && !c->ops[i].done)
                op_finish(c, &c->ops[i],
                          !l->fatal       ? SMLT_EIO
                          : c->ops[i].rc  ? c->ops[i].rc
                          : l->fatal_rc   ? l->fatal_rc
                                          : SMLT_EAUTH);
        return;
    }
    /* Reconnect after a backoff that grows with each attempt; unanswered operations follow. */
    int ms = CLIENT_BACKOFF_MS << (l->attempts < 6 ? l->attempts : 6);
    l->attempts++;
    log_debug("client: shard %s: connection lost (%s); reconnect %d in %d ms", l->addr,
              smlt_strerror(err), l->attempts, ms);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(l->retry_ev, &tv);
}

static const struct rpc_conn_handler client_handler = {
    .on_payload = on_payload,
    .on_frame = on_frame,
    .on_close = on_close,
};

void smlt_client__on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct link *l = arg;
    struct smlt_client *c = l->c;
    if (!l->conn)
        link_connect(l);
    if (!l->conn)
        return;
    for (size_t i = 0; i < c->nops; i++)
        if (c->ops[i].link == l->idx && !c->ops[i].done && !c->ops[i].sent)
            send_op(c, &c->ops[i]);
}

/* ---- links ------------------------------------------------------------------------------- */

static void link_connect(struct link *l)
{
    struct smlt_client *c = l->c;
    int err = 0;
    l->ready = 0;
    l->conn = rpc_conn_connect_tls(c->base, l->addr, c->tls, &client_limits, &client_handler, l,
                                   &err);
    if (!l->conn) {
        smlt_client__seterr(c, "shard %s: %s", l->addr, smlt_strerror(err));
        l->fatal = 1;
        for (size_t i = 0; i < c->nops; i++)
            if (c->ops[i].link == l->idx && !c->ops[i].done)
                op_finish(c, &c->ops[i], err);
        return;
    }
    /* Requests may follow the Hello at once: the shard handles frames in order. */
    Smlt__Hello hello = SMLT__HELLO__INIT;
    hello.proto_version = SMLT_PROTO_VERSION;
    hello.token.data = (uint8_t *)c->token;
    hello.token.len = strlen(c->token);
    hello.has_role = 1;
    hello.role = c->opts.admin ? SMLT__ROLE__ROLE_ADMIN : SMLT__ROLE__ROLE_WORKER;
    hello.has_worker = 1;
    hello.worker = c->opts.worker;
    hello.client = "libsmlt " SMLT_VERSION;
    hello.route = (char *)rpc_addr_route(l->addr); /* a shard on a PS node */
    l->hello_req = ++c->next_req;
    rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_HELLO, l->hello_req, &hello.base, NULL, 0, 0, NULL,
                  NULL);
}

static void link_close(struct link *l)
{
    if (l->conn) {
        rpc_conn_set_arg(l->conn, NULL);
        rpc_conn_abort(l->conn, SMLT_ECANCELED);
    }
    if (l->retry_ev)
        event_free(l->retry_ev);
    free(l->addr);
    memset(l, 0, sizeof *l);
}

int smlt_client__links_resize(struct smlt_client *c, uint32_t n)
{
    struct link *nl = calloc(n ? n : 1, sizeof *nl);
    if (!nl)
        return SMLT_ENOMEM;
    c->links = nl;
    c->nlinks = n;
    return 0;
}

/* Makes the links match map m: one per shard; connections to an address already open are kept. */
int smlt_client__install_map(struct smlt_client *c, struct part_map *m)
{
    struct link *old = c->links;
    uint32_t nold = c->nlinks;
    if (smlt_client__links_resize(c, m->nshards) != 0) {
        c->links = old;
        c->nlinks = nold;
        return SMLT_ENOMEM;
    }
    for (uint32_t i = 0; i < m->nshards; i++) {
        struct link *l = &c->links[i];
        l->c = c;
        l->idx = i;
        l->shard = m->shards[i].id;
        l->lo = m->shards[i].lo;
        l->hi = m->shards[i].hi;
        for (uint32_t k = 0; k < nold; k++) {
            if (old[k].addr && old[k].conn && !strcmp(old[k].addr, m->shards[i].addr)) {
                l->conn = old[k].conn;
                l->ready = old[k].ready;
                l->hello_req = old[k].hello_req;
                old[k].conn = NULL;
                rpc_conn_set_arg(l->conn, l);
                break;
            }
        }
        l->addr = strdup(m->shards[i].addr);
        l->retry_ev = evtimer_new(c->base, smlt_client__on_retry, l);
    }
    for (uint32_t k = 0; k < nold; k++) {
        if (old[k].conn) {
            /* No longer a shard of the job: close it quietly. */
            rpc_conn_set_arg(old[k].conn, NULL);
            rpc_conn_abort(old[k].conn, SMLT_ECANCELED);
        }
        old[k].conn = NULL;
        link_close(&old[k]);
    }
    free(old);
    if (c->map != m)
        part_map_free(c->map);
    c->map = m;
    return 0;
}

/* ---- sending ----------------------------------------------------------------------------- */

static void fill_optim(const struct smlt_job_conf *j, Smlt__OptimConf *o)
{
    o->has_kind = 1;
    o->kind = (Smlt__OptimKind)j->optim;
    o->has_lr = 1;
    o->lr = j->lr;
    o->has_momentum = 1;
    o->momentum = j->momentum;
    o->has_nesterov = 1;
    o->nesterov = j->nesterov;
    o->has_beta1 = 1;
    o->beta1 = j->beta1;
    o->has_beta2 = 1;
    o->beta2 = j->beta2;
    o->has_eps = 1;
    o->eps = j->eps;
    o->has_weight_decay = 1;
    o->weight_decay = j->weight_decay;
    o->has_decoupled = 1;
    o->decoupled = j->decoupled;
}


/* How long a call may wait now: the client's timeout, or less when the deadline
 * (smlt_client__set_deadline()) comes first (*by_deadline, if given, says which). */
static int wait_ms(const struct smlt_client *c, int *by_deadline)
{
    int w = c->opts.timeout_ms > 0 ? c->opts.timeout_ms : CLIENT_DEFAULT_TIMEOUT_MS;
    double left = c->deadline > 0 ? (c->deadline - smlt_now_mono()) * 1000 : w;
    if (by_deadline)
        *by_deadline = left < w;
    return left < w ? (left > 1 ? (int)left : 1) : w;
}

static void send_op(struct smlt_client *c, struct op *o)
{
    struct link *l = &c->links[o->link];
    if (!l->conn) {
        if (!evtimer_pending(l->retry_ev, NULL))
            link_connect(l);
        if (!l->conn)
            return;
    }
    uint64_t mv = c->map ? c->map->version : 0;
    o->req_id = ++c->next_req;
    o->sent = 1;
    int rc = 0;
    switch (o->kind) {
    case OP_MAP: {
        Smlt__GetMap g = SMLT__GET_MAP__INIT;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_GET_MAP, o->req_id, &g.base, NULL, 0, 0,
                           NULL, NULL);
        break;
    }
    case OP_PUSH: {
        Smlt__PushReq p = SMLT__PUSH_REQ__INIT;
        p.map_version = mv;
        p.worker = c->opts.worker;
        p.step = o->step;
        p.lo = l->lo;
        p.hi = l->hi;
        o->ref_out++;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_PUSH, o->req_id, &p.base, o->src + l->lo,
                           (size_t)(l->hi - l->lo) * sizeof(float),
                           RPC_SEND_REF | (c->opts.no_compress ? 0 : RPC_SEND_MAY_COMPRESS),
                           on_payload_released, o);
        break;
    }
    case OP_PULL: {
        Smlt__PullReq p = SMLT__PULL_REQ__INIT;
        p.map_version = mv;
        p.lo = o->lo;
        p.hi = o->hi;
        if (o->min_clock) {
            p.has_min_clock = 1;
            p.min_clock = o->min_clock;
            p.has_wait_ms = 1;
            p.wait_ms = (uint32_t)wait_ms(c, NULL);
        }
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_PULL, o->req_id, &p.base, NULL, 0, 0, NULL,
                           NULL);
        break;
    }
    case OP_CONF: {
        Smlt__ShardConfig sc = SMLT__SHARD_CONFIG__INIT;
        Smlt__PartitionMap pm = SMLT__PARTITION_MAP__INIT;
        Smlt__SyncConf sy = SMLT__SYNC_CONF__INIT;
        Smlt__OptimConf oc = SMLT__OPTIM_CONF__INIT;
        if (part_map_to_pb(c->map, &pm) != 0) {
            rc = SMLT_ENOMEM;
            break;
        }
        sc.map = &pm;
        sc.shard = l->shard;
        sy.has_mode = sy.has_workers = sy.has_staleness = 1;
        sy.mode = (Smlt__SyncMode)c->job.sync;
        sy.workers = c->job.workers;
        sy.staleness = c->job.staleness;
        sc.sync = &sy;
        fill_optim(&c->job, &oc);
        sc.optim = &oc;
        if (o->await_import) {
            sc.has_await_import = 1;
            sc.await_import = 1;
        }
        sc.checkpoint_dir = (char *)c->job.checkpoint_dir;
        if (c->job.checkpoint_every) {
            sc.has_checkpoint_every_steps = 1;
            sc.checkpoint_every_steps = c->job.checkpoint_every;
        }
        if (c->job.checkpoint_keep) {
            sc.has_checkpoint_keep = 1;
            sc.checkpoint_keep = c->job.checkpoint_keep;
        }
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_CONFIGURE, o->req_id, &sc.base, NULL, 0, 0,
                           NULL, NULL);
        part_map_pb_clear(&pm);
        break;
    }
    case OP_SET: {
        Smlt__SetParams sp = SMLT__SET_PARAMS__INIT;
        sp.map_version = mv;
        sp.lo = l->lo;
        sp.hi = l->hi;
        o->ref_out++;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_SET_PARAMS, o->req_id, &sp.base,
                           o->src + l->lo, (size_t)(l->hi - l->lo) * sizeof(float), RPC_SEND_REF,
                           on_payload_released, o);
        break;
    }
    case OP_UPDATE: {
        Smlt__UpdateConf u = SMLT__UPDATE_CONF__INIT;
        u.has_lr = o->has_lr;
        u.lr = o->lr;
        u.has_weight_decay = o->has_wd;
        u.weight_decay = o->wd;
        u.has_workers = o->has_workers;
        u.workers = o->workers;
        u.has_checkpoint_every_steps = o->has_ckpt_every;
        u.checkpoint_every_steps = o->ckpt_every;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_UPDATE_CONF, o->req_id, &u.base, NULL, 0, 0,
                           NULL, NULL);
        break;
    }
    case OP_STATS: {
        Smlt__GetStats g = SMLT__GET_STATS__INIT;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_GET_STATS, o->req_id, &g.base, NULL, 0, 0,
                           NULL, NULL);
        break;
    }
    case OP_SHUTDOWN: {
        Smlt__Shutdown s = SMLT__SHUTDOWN__INIT;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_SHUTDOWN, o->req_id, &s.base, NULL, 0, 0,
                           NULL, NULL);
        break;
    }
    case OP_PREPARE: {
        Smlt__ReshardPrepare p = SMLT__RESHARD_PREPARE__INIT;
        p.map_version = mv;
        p.has_freeze_clock = 1;
        p.freeze_clock = o->freeze;
        if (o->stop) {
            p.has_stop = 1;
            p.stop = 1;
        }
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_RESHARD_PREPARE, o->req_id, &p.base, NULL,
                           0, 0, NULL, NULL);
        break;
    }
    case OP_EXPORT: {
        Smlt__ExportReq x = SMLT__EXPORT_REQ__INIT;
        x.map_version = mv;
        x.lo = o->lo;
        x.hi = o->hi;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_EXPORT, o->req_id, &x.base, NULL, 0, 0,
                           NULL, NULL);
        break;
    }
    case OP_IMPORT: {
        Smlt__ImportReq x = SMLT__IMPORT_REQ__INIT;
        x.map_version = mv;
        x.lo = o->lo;
        x.hi = o->hi;
        x.version = o->xm.version;
        x.clock = o->xm.clock;
        x.updates = o->xm.updates;
        x.nstate = o->xm.nstate;
        x.n_last_counted = x.n_last_applied = o->xm.nranks;
        x.last_counted = o->xm.last_counted;
        x.last_applied = o->xm.last_applied;
        x.has_final = 1;
        x.final = o->final;
        o->ref_out++;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_IMPORT, o->req_id, &x.base, o->src,
                           (size_t)(1 + o->xm.nstate) * (size_t)(o->hi - o->lo) * sizeof(float),
                           RPC_SEND_REF, on_payload_released, o);
        break;
    }
    case OP_RESTORE: {
        Smlt__RestoreReq r = SMLT__RESTORE_REQ__INIT;
        r.has_step = 1;
        r.step = o->step;
        r.dir = (char *)o->ckpt_dir;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_RESTORE, o->req_id, &r.base, NULL, 0, 0,
                           NULL, NULL);
        break;
    }
    case OP_LIST_CKPT: {
        Smlt__ListCheckpoints r = SMLT__LIST_CHECKPOINTS__INIT;
        r.dir = (char *)o->ckpt_dir;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_LIST_CHECKPOINTS, o->req_id, &r.base, NULL,
                           0, 0, NULL, NULL);
        break;
    }
    case OP_SET_BACKUP: {
        Smlt__SetBackup b = SMLT__SET_BACKUP__INIT;
        b.addr = (char *)o->backup_addr;
        b.map_version = mv;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_SET_BACKUP, o->req_id, &b.base, NULL, 0, 0,
                           NULL, NULL);
        break;
    }
    case OP_PROMOTE:
    case OP_SET_MAP: {
        Smlt__Promote pr = SMLT__PROMOTE__INIT;
        Smlt__SetMap sm = SMLT__SET_MAP__INIT;
        Smlt__PartitionMap pm = SMLT__PARTITION_MAP__INIT;
        if (part_map_to_pb(o->retire_map, &pm) != 0) {
            rc = SMLT_ENOMEM;
            break;
        }
        pr.map = sm.map = &pm;
        if (o->kind == OP_PROMOTE)
            rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_PROMOTE, o->req_id, &pr.base, NULL, 0,
                               0, NULL, NULL);
        else
            rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_SET_MAP, o->req_id, &sm.base, NULL, 0,
                               0, NULL, NULL);
        part_map_pb_clear(&pm);
        break;
    }
    case OP_RETIRE: {
        Smlt__Retire r = SMLT__RETIRE__INIT;
        Smlt__PartitionMap pm = SMLT__PARTITION_MAP__INIT;
        if (part_map_to_pb(o->retire_map, &pm) != 0) {
            rc = SMLT_ENOMEM;
            break;
        }
        r.map = &pm;
        rc = rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_RETIRE, o->req_id, &r.base, NULL, 0, 0,
                           NULL, NULL);
        part_map_pb_clear(&pm);
        break;
    }
    }
    if (rc == SMLT_ECLOSED)
        o->sent = 0; /* the connection is going; on_close schedules the resend */
    else if (rc)
        op_finish(c, o, rc);
}

/* ---- running a batch --------------------------------------------------------------------- */

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct smlt_client *c = arg;
    c->timed_out = 1;
}

/* Nothing to do: waking the loop is enough, smlt_client__batch_run() sees the flag. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
}

void smlt_client_interrupt(struct smlt_client *c)
{
    atomic_store(&c->interrupted, 1);
    if (c->wake_ev)
        event_active(c->wake_ev, EV_READ, 0);
}

void smlt_client__ops_free(struct smlt_client *c)
{
    for (size_t i = 0; i < c->nops; i++) {
        free(c->ops[i].xbuf);
        if (c->ops[i].kind == OP_EXPORT) {
            free(c->ops[i].xm.last_counted);
            free(c->ops[i].xm.last_applied);
        }
        free(c->ops[i].ck_steps);
        free(c->ops[i].ck_report);
    }
    free(c->ops);
    c->ops = NULL;
    c->nops = 0;
}

int smlt_client__batch_alloc(struct smlt_client *c, size_t n)
{
    smlt_client__ops_free(c);
    c->ops = calloc(n ? n : 1, sizeof *c->ops);
    c->nops = c->ops ? n : 0;
    return c->ops ? 0 : SMLT_ENOMEM;
}

/* Sends every operation of the batch and runs the loop until all are answered, failed or the
 * call's time is up. Returns 0 or the first failure's code (stale map first, so the caller can
 * refresh and retry). */
int smlt_client__batch_run(struct smlt_client *c)
{
    if (atomic_load(&c->interrupted)) {
        smlt_client__seterr(c, "interrupted");
        return SMLT_ECANCELED;
    }
    int by_deadline = 0;
    int timeout = wait_ms(c, &by_deadline);
    struct timeval tv = {timeout / 1000, (timeout % 1000) * 1000};
    c->timed_out = 0;
    c->err[0] = '\0';
    for (uint32_t i = 0; i < c->nlinks; i++) {
        c->links[i].attempts = 0;
        c->links[i].fatal = 0;
        c->links[i].fatal_rc = 0;
    }
    evtimer_add(c->timeout_ev, &tv);
    for (size_t i = 0; i < c->nops; i++)
        send_op(c, &c->ops[i]);
    for (;;) {
        int all = 1, failed = 0;
        for (size_t i = 0; i < c->nops; i++) {
            all &= op_complete(&c->ops[i]);
            failed |= c->ops[i].done && c->ops[i].rc != 0;
        }
        /* One failure decides the call: do not sit out the others (a pull may be waiting for
         * a clock that the failed push would have brought). Late replies to the operations
         * left behind are recognised by their request ids and dropped. */
        if (all || failed || c->timed_out || atomic_load(&c->interrupted))
            break;
        event_base_loop(c->base, EVLOOP_ONCE);
    }
    evtimer_del(c->timeout_ev);
    for (uint32_t i = 0; i < c->nlinks; i++)
        evtimer_del(c->links[i].retry_ev);
    int rc = 0, stale = 0;
    for (size_t i = 0; i < c->nops; i++) {
        struct op *o = &c->ops[i];
        if (!o->done) {
            op_finish(c, o, c->timed_out ? SMLT_ETIMEDOUT : SMLT_ECANCELED);
            if (!c->err[0] && !c->timed_out && atomic_load(&c->interrupted))
                smlt_client__seterr(c, "interrupted");
            if (!c->err[0] && c->timed_out && by_deadline)
                smlt_client__seterr(c, "shard %s: no reply before the slice's time was up",
                                    c->links[o->link].addr);
            else if (!c->err[0] && c->timed_out)
                smlt_client__seterr(c, "shard %s: no reply within %d ms", c->links[o->link].addr,
                                    timeout);
        }
        if (o->rc == SMLT_ESTALEMAP)
            stale = 1;
        if (o->rc && (!rc || rc == SMLT_ECANCELED))
            rc = o->rc;
    }
    /* Payloads still referenced (a timed-out push): drop those connections so no output buffer
     * points into the caller's memory after we return. */
    for (size_t i = 0; i < c->nops; i++) {
        struct op *o = &c->ops[i];
        if (o->ref_out > 0 && c->links[o->link].conn) {
            rpc_conn_abort(c->links[o->link].conn, SMLT_ECANCELED);
        }
    }
    for (;;) {
        int refs = 0;
        for (size_t i = 0; i < c->nops; i++)
            refs += c->ops[i].ref_out;
        if (!refs)
            break;
        event_base_loop(c->base, EVLOOP_ONCE);
    }
    return stale ? SMLT_ESTALEMAP : rc;
}

/* After a shard stayed unreachable: asks the shards still connected for their map. Returns 1
 * with c->new_map newer than ours, else 0 (the call's error message is kept). */
static int map_from_others(struct smlt_client *c)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->nlinks; i++)
        n += c->links[i].conn != NULL && c->links[i].ready;
    if (n == 0 || !c->map)
        return 0;
    char saved[sizeof c->err];
    memcpy(saved, c->err, sizeof saved);
    if (smlt_client__batch_alloc(c, n))
        return 0;
    for (uint32_t i = 0, k = 0; i < c->nlinks; i++) {
        if (c->links[i].conn && c->links[i].ready) {
            c->ops[k].kind = OP_MAP;
            c->ops[k++].link = i;
        }
    }
    smlt_client__batch_run(c);
    memcpy(c->err, saved, sizeof saved);
    if (c->new_map && c->new_map->version > c->map->version)
        return 1;
    part_map_free(c->new_map);
    c->new_map = NULL;
    return 0;
}

/* Runs a call (a function that fills the batch) and retries it after installing a newer map
 * when a shard said ours was stale. */
int smlt_client__call(struct smlt_client *c, int (*fill)(struct smlt_client *, void *), void *arg)
{
    int rc = 0;
    for (int attempt = 0; attempt <= CLIENT_MAP_RETRIES; attempt++) {
        rc = fill(c, arg);
        if (rc)
            return rc;
        rc = smlt_client__batch_run(c);
        if (rc == SMLT_EIO && attempt < CLIENT_MAP_RETRIES && map_from_others(c)) {
            /* A shard stayed unreachable, and the others know a newer map: it was replaced
             * (a promoted backup). Go on with the new map. */
        } else if (rc != SMLT_ESTALEMAP) {
            return rc;
        }
        if (!c->new_map) {
            /* Told "stale" without a newer map attached: ask every shard for its map. */
            int mrc = smlt_client__fill_per_shard(c, OP_MAP);
            if (!mrc)
                smlt_client__batch_run(c);
            if (!c->new_map || (c->map && c->new_map->version <= c->map->version)) {
                part_map_free(c->new_map);
                c->new_map = NULL;
                return rc;
            }
        }
        struct part_map *m = c->new_map;
        c->new_map = NULL;
        log_debug("client: installing partition map v%llu", (unsigned long long)m->version);
        if ((rc = smlt_client__install_map(c, m)) != 0) {
            part_map_free(m);
            return rc;
        }
    }
    return rc;
}

/* ---- public API -------------------------------------------------------------------------- */

/* smlt_client_set_default_tls()'s context. */
static pthread_mutex_t default_tls_mu = PTHREAD_MUTEX_INITIALIZER;
static struct smlt_tls *default_tls;

void smlt_client_set_default_tls(struct smlt_tls *tls)
{
    pthread_mutex_lock(&default_tls_mu);
    smlt_tls_free(default_tls);
    default_tls = tls ? smlt_tls_ref(tls) : NULL;
    pthread_mutex_unlock(&default_tls_mu);
}

void smlt_client__set_deadline(struct smlt_client *c, double t)
{
    c->deadline = t;
}

struct smlt_tls *smlt_client__default_tls(void)
{
    pthread_mutex_lock(&default_tls_mu);
    struct smlt_tls *t = default_tls ? smlt_tls_ref(default_tls) : NULL;
    pthread_mutex_unlock(&default_tls_mu);
    return t;
}

struct smlt_client *smlt_client__new(const struct smlt_client_opts *opts, char *errmsg,
                                     size_t errlen)
{
    if (!opts || !opts->token || !opts->token[0] || strlen(opts->token) > SMLT_MAX_TOKEN) {
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "a token of 1..%u bytes is required", SMLT_MAX_TOKEN);
        return NULL;
    }
    /* A write to a connection the peer has closed must come back as an error, not kill the
     * process: ignore SIGPIPE unless the application has its own handler. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    struct smlt_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->opts = *opts;
    c->opts.tls_ca = c->opts.tls_ca_pem = c->opts.tls_cert = c->opts.tls_key = NULL;
    if (opts->tls || opts->tls_ca || opts->tls_ca_pem || opts->tls_cert || opts->tls_key) {
        struct smlt_tls_conf tc = {.ca = opts->tls_ca, .ca_pem = opts->tls_ca_pem,
                                   .cert = opts->tls_cert, .key = opts->tls_key};
        char err[512];
        if (smlt_tls_client_new(&c->tls, &tc, err, sizeof err) != 0) {
            if (errmsg && errlen)
                snprintf(errmsg, errlen, "TLS: %s", err);
            free(c);
            return NULL;
        }
    } else {
        pthread_mutex_lock(&default_tls_mu);
        c->tls = default_tls ? smlt_tls_ref(default_tls) : NULL;
        pthread_mutex_unlock(&default_tls_mu);
    }
    c->token = strdup(opts->token);
    c->opts.token = c->token;
    c->base = event_base_new();
    if (!c->base || !c->token) {
        smlt_client_close(c);
        return NULL;
    }
    c->timeout_ev = evtimer_new(c->base, on_timeout, c);
    c->wake_ev = event_new(c->base, -1, 0, on_wake, NULL);
    atomic_init(&c->interrupted, 0);
    return c;
}

static int fill_map_op(struct smlt_client *c, void *arg)
{
    if (smlt_client__batch_alloc(c, 1))
        return SMLT_ENOMEM;
    c->ops[0].kind = OP_MAP;
    c->ops[0].link = 0;
    return 0;
}

struct smlt_client *smlt_client_create(const struct smlt_client_opts *opts, char *errmsg,
                                       size_t errlen)
{
    return smlt_client__new(opts, errmsg, errlen);
}

int smlt_client_open(struct smlt_client *c, const char *addrs, char *errmsg, size_t errlen)
{
    if (!addrs || !addrs[0]) {
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "no shard address given");
        return SMLT_EINVAL;
    }
    char *list = strdup(addrs), *save = NULL;
    int rc = SMLT_EINVAL;
    for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        while (*a == ' ')
            a++;
        /* A bootstrap link to this address; smlt_client__install_map() keeps its connection if
         * the map names the same address. */
        free(c->links);
        c->links = NULL;
        if (smlt_client__links_resize(c, 1) != 0) {
            rc = SMLT_ENOMEM;
            break;
        }
        c->links[0] = (struct link){.c = c, .idx = 0, .shard = UINT32_MAX, .addr = strdup(a)};
        c->links[0].retry_ev = evtimer_new(c->base, smlt_client__on_retry, &c->links[0]);
        rc = fill_map_op(c, NULL);
        if (!rc)
            rc = smlt_client__batch_run(c);
        if (rc == 0 && c->new_map) {
            struct part_map *m = c->new_map;
            c->new_map = NULL;
            rc = smlt_client__install_map(c, m);
            break;
        }
        if (rc == SMLT_EAUTH || rc == SMLT_ENOTCONF || rc == SMLT_ECANCELED)
            break;
        link_close(&c->links[0]);
    }
    free(list);
    if (rc == 0 && !c->map)
        rc = SMLT_EIO;
    if (rc && errmsg && errlen)
        snprintf(errmsg, errlen, "%s", c->err[0] ? c->err : smlt_strerror(rc));
    return rc;
}

int smlt_client_connect(struct smlt_client **out, const char *addrs,
                        const struct smlt_client_opts *opts, char *errmsg, size_t errlen)
{
    *out = NULL;
    if (!addrs || !addrs[0]) {
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "no shard address given");
        return SMLT_EINVAL;
    }
    struct smlt_client *c = smlt_client__new(opts, errmsg, errlen);
    if (!c)
        return SMLT_EINVAL;
    int rc = smlt_client_open(c, addrs, errmsg, errlen);
    if (rc) {
        smlt_client_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

int smlt_client__fill_per_shard(struct smlt_client *c, enum op_kind kind)
{
    if (smlt_client__batch_alloc(c, c->nlinks))
        return SMLT_ENOMEM;
    for (uint32_t i = 0; i < c->nlinks; i++) {
        c->ops[i].kind = kind;
        c->ops[i].link = i;
    }
    return 0;
}

void smlt_client_close(struct smlt_client *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i < c->nlinks; i++) {
        if (c->links[i].conn)
            rpc_conn_abort(c->links[i].conn, SMLT_ECANCELED);
    }
    /* Let the deferred frees run (they call on_close with the links still valid). */
    if (c->base) {
        smlt_client__ops_free(c);
        for (;;) {
            int open = 0;
            for (uint32_t i = 0; i < c->nlinks; i++)
                open |= c->links[i].conn != NULL;
            if (!open)
                break;
            event_base_loop(c->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        }
    }
    for (uint32_t i = 0; i < c->nlinks; i++)
        link_close(&c->links[i]);
    /* Connections detached by link_close() (here, or after a failed connect attempt) are freed
     * from a deferred event: run it before the base goes. */
    if (c->base)
        event_base_loop(c->base, EVLOOP_NONBLOCK);
    free(c->links);
    smlt_client__ops_free(c);
    if (c->timeout_ev)
        event_free(c->timeout_ev);
    if (c->wake_ev)
        event_free(c->wake_ev);
    if (c->base)
        event_base_free(c->base);
    part_map_free(c->map);
    part_map_free(c->new_map);
    smlt_tls_free(c->tls);
    free(c->token);
    free(c);
}

const char *smlt_client_errmsg(const struct smlt_client *c)
{
    return c && c->err[0] ? c->err : "";
}

uint64_t smlt_client_num_params(const struct smlt_client *c)
{
    return c->map ? c->map->total : 0;
}

uint32_t smlt_client_num_tensors(const struct smlt_client *c)
{
    return c->map ? c->map->ntensors : 0;
}

int smlt_client_tensor(const struct smlt_client *c, uint32_t i, struct smlt_tensor_info *out)
{
    if (!c->map || i >= c->map->ntensors)
        return SMLT_ERANGE;
    const struct part_map_tensor *t = &c->map->tensors[i];
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->ndims = t->ndims;
    for (uint32_t d = 0; d < t->ndims && d < 8; d++)
        out->shape[d] = t->shape[d];
    out->offset = t->offset;
    out->length = t->length;
    return 0;
}

uint32_t smlt_client_num_shards(const struct smlt_client *c)
{
    return c->map ? c->map->nshards : 0;
}

uint64_t smlt_client_map_version(const struct smlt_client *c)
{
    return c->map ? c->map->version : 0;
}

struct xfer_args {
    uint64_t step;
    const float *grad;
    float *out;        /* pull destination, for the element range [lo, hi) */
    uint64_t lo, hi;
    uint64_t min_clock;
    int push, pull;
};

/* Fills the batch for pushes and/or pulls over the current map: one push per shard (the
 * whole range), one pull per shard overlapping [lo, hi). Pushes go first on each connection. */
static int fill_xfer(struct smlt_client *c, void *arg)
{
    struct xfer_args *x = arg;
    if (smlt_client__batch_alloc(c, (size_t)c->nlinks * 2))
        return SMLT_ENOMEM;
    size_t n = 0;
    for (uint32_t i = 0; i < c->nlinks; i++) {
        struct link *l = &c->links[i];
        if (x->push) {
            struct op *o = &c->ops[n++];
            o->kind = OP_PUSH;
            o->link = i;
            o->src = x->grad;
            o->step = x->step;
        }
        if (x->pull) {
            uint64_t a = x->lo > l->lo ? x->lo : l->lo, b = x->hi < l->hi ? x->hi : l->hi;
            if (a >= b)
                continue;
            struct op *o = &c->ops[n++];
            o->kind = OP_PULL;
            o->link = i;
            o->lo = a;
            o->hi = b;
            o->dst = x->out + (a - x->lo);
            o->min_clock = x->min_clock;
        }
    }
    c->nops = n;
    return 0;
}

static uint64_t min_pull_clock(const struct smlt_client *c)
{
    uint64_t m = UINT64_MAX;
    for (size_t i = 0; i < c->nops; i++)
        if (c->ops[i].kind == OP_PULL && c->ops[i].clock < m)
            m = c->ops[i].clock;
    return m == UINT64_MAX ? 0 : m;
}

int smlt_client__need_map(struct smlt_client *c)
{
    if (!c || !c->map)
        return SMLT_ENOTCONF;
    return 0;
}

int smlt_push(struct smlt_client *c, uint64_t step, const float *grad)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    struct xfer_args x = {.step = step, .grad = grad, .push = 1};
    return smlt_client__call(c, fill_xfer, &x);
}

int smlt_pull_range(struct smlt_client *c, uint64_t lo, uint64_t hi, uint64_t min_clock,
                    int wait_ms, float *out, uint64_t *clock)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    if (lo > hi || hi > c->map->total) {
        smlt_client__seterr(c, "range [%llu, %llu) outside the model's %llu elements",
                            (unsigned long long)lo, (unsigned long long)hi,
                            (unsigned long long)c->map->total);
        return SMLT_ERANGE;
    }
    int saved = c->opts.timeout_ms;
    if (min_clock && wait_ms > 0)
        c->opts.timeout_ms = wait_ms;
    struct xfer_args x = {.out = out, .lo = lo, .hi = hi, .min_clock = min_clock, .pull = 1};
    rc = smlt_client__call(c, fill_xfer, &x);
    c->opts.timeout_ms = saved;
    if (clock)
        *clock = min_pull_clock(c);
    return rc;
}

int smlt_pull(struct smlt_client *c, uint64_t min_clock, int wait_ms, float *model, uint64_t *clock)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    return smlt_pull_range(c, 0, c->map->total, min_clock, wait_ms, model, clock);
}

int smlt_sync(struct smlt_client *c, uint64_t step, const float *grad, float *model,
              uint64_t *clock)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    struct xfer_args x = {.step = step,
                          .grad = grad,
                          .out = model,
                          .lo = 0,
                          .hi = c->map->total,
                          .min_clock = step + 1,
                          .push = 1,
                          .pull = 1};
    rc = smlt_client__call(c, fill_xfer, &x);
    if (clock)
        *clock = min_pull_clock(c);
    return rc;
}

struct stats_args {
    uint32_t shard;
    struct smlt_shard_stats *out;
};

static int fill_stats_op(struct smlt_client *c, void *arg)
{
    struct stats_args *s = arg;
    if (s->shard >= c->nlinks)
        return SMLT_ERANGE;
    if (smlt_client__batch_alloc(c, 1))
        return SMLT_ENOMEM;
    c->ops[0].kind = OP_STATS;
    c->ops[0].link = s->shard;
    c->ops[0].stats = s->out;
    return 0;
}

int smlt_shard_stats(struct smlt_client *c, uint32_t shard, struct smlt_shard_stats *out)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    struct stats_args s = {shard, out};
    return smlt_client__call(c, fill_stats_op, &s);
}
