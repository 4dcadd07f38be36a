/* ps_replica.c: replicated shards, both sides of the primary/backup pair (see ps_replica.h).
 *
 * The primary forwards each push to its backup (ps_replica_forward) and counts it when the
 * backup has answered; it builds a backup from its running state (SetBackup: freeze, configure,
 * Import, forward); a backup is promoted (Promote) and every shard takes the new map (SetMap).
 * ps_server.c owns the connections and the dispatch and calls in here; the server's structs and
 * the replies this file sends are in ps_server_int.h. */
#include "ps_replica.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "part_map.h"
#include "ps_server_int.h"
#include "ps_shard.h"
#include "rpc_conn.h"
#include "smlt.pb-c.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_log.h"


/* Primary and backup, not a chain: with two copies a chain is the same thing with the pulls
 * moved to the tail, and pulls stay on the primary here (it has every counted push first). The
 * primary forwards each push it is about to count over one connection to its backup, so the
 * backup counts in the primary's order (the same sums, bit for bit) with the same exactly-once
 * tables; the primary counts the push and acknowledges the worker only after the backup's ack.
 * An acknowledged step is therefore on both, and a promoted backup loses none. */

static void on_fwd_released(const void *data, size_t len, void *arg)
{
    struct ps_fwd *f = arg;
    f->released = 1;
    event_active(f->srv->fwd_ev, EV_READ, 0);
}

/* Ends a build of the backup that failed: the SetBackup gets the error, pushes are accepted
 * again, the backup connection is dropped. */
void ps_replica_fail(struct ps_server *srv, int code, const char *msg)
{
    struct ps_backup *bk = &srv->bk;
    log_warn("shard %u: backup %s: %s", srv->conf.shard, bk->addr, msg);
    if (bk->state == BK_FREEZING || bk->state == BK_CONFIG)
        ps_shard_freeze(srv->shard, UINT64_MAX);
    if (bk->admin)
        ps_server__reply_error(bk->admin, bk->admin_req, code, msg);
    bk->admin = NULL;
    bk->state = bk->state == BK_ON || bk->state == BK_SYNCING ? BK_LOST : BK_NONE;
    if (bk->conn) {
        rpc_conn_close(bk->conn, code);
        /* pending forwards are finished by bk_on_close */
    }
}

/* Counts a forwarded push here once its backup answered, and answers the worker. */
static void fwd_finish(struct ps_server *srv, struct ps_fwd *f)
{
    char err[256] = "";
    struct ps_backup *bk = &srv->bk;
    if (srv->retired) {
        /* The backup was promoted: this push belongs to the new primary. */
        ps_shard_buf_put(srv->shard, f->buf);
        if (f->cl)
            ps_server__reply_retired(f->cl, f->req_id);
    } else if (f->backup_rc < 0) {
        ps_shard_buf_put(srv->shard, f->buf);
        if (f->cl)
            ps_server__reply_error(f->cl, f->req_id, f->backup_rc, "the backup refused this push");
    } else {
        int rc = ps_shard_push_commit(srv->shard, f->worker, f->step, f->buf, err, sizeof err);
        if (f->backup_rc != FWD_LOST && rc != f->backup_rc) {
            bk->diverged++;
            log_warn("shard %u: push (rank %u, step %llu): backup %s, primary %d (%s)",
                     srv->conf.shard, f->worker, (unsigned long long)f->step,
                     f->backup_rc ? "duplicate" : "counted", rc, err);
        }
        if (f->cl) {
            if (rc < 0)
                ps_server__reply_error(f->cl, f->req_id, rc, err);
            else
                ps_server__send_push_ack(f->cl, f->req_id, f->step, rc == 1);
        }
    }
}

void ps_replica_on_progress(evutil_socket_t fd, short what, void *arg)
{
    struct ps_server *srv = arg;
    struct ps_backup *bk = &srv->bk;
    struct ps_fwd *f;
    while ((f = bk->head) && f->answered && f->released) {
        bk->head = f->next;
        if (!bk->head)
            bk->tail = NULL;
        bk->lag--;
        fwd_finish(srv, f);
        free(f);
    }
}

/* Forwards a received push (takes buf) to the backup; counted here when it answers. */
void ps_replica_forward(struct ps_client *cl, uint64_t req_id, const Smlt__PushReq *m, float *buf)
{
    struct ps_server *srv = cl->srv;
    struct ps_backup *bk = &srv->bk;
    struct ps_fwd *f = calloc(1, sizeof *f);
    if (!f) {
        ps_shard_buf_put(srv->shard, buf);
        ps_server__reply_error(cl, req_id, SMLT_ENOMEM, NULL);
        return;
    }
    f->srv = srv;
    f->cl = cl;
    f->req_id = req_id;
    f->fwd_id = ++bk->next_id;
    f->worker = m->worker;
    f->step = m->step;
    f->buf = buf;
    if (bk->tail)
        bk->tail->next = f;
    else
        bk->head = f;
    bk->tail = f;
    bk->lag++;
    bk->forwarded++;
    Smlt__PushReq p = *m;
    size_t bytes = (size_t)(m->hi - m->lo) * sizeof(float);
    int rc = rpc_conn_send(bk->conn, SMLT__MSG_TYPE__MSG_PUSH, f->fwd_id, &p.base, buf, bytes,
                           RPC_SEND_REF, on_fwd_released, f);
    if (rc) {
        /* The connection is going: bk_on_close finishes this one alone. */
        log_debug("shard %u: forwarding to the backup failed: %s", srv->conf.shard,
                  smlt_strerror(rc));
    }
}

static void on_import_sent(const void *data, size_t len, void *arg)
{
    free((void *)data);
}

static void bk_send_import(struct ps_server *srv)
{
    struct ps_backup *bk = &srv->bk;
    struct ps_shard_export e;
    int rc = ps_shard_export(srv->shard, &e);
    if (rc) {
        ps_replica_fail(srv, rc, "cannot export the range for the backup");
        return;
    }
    size_t n = (size_t)(ps_shard_hi(srv->shard) - ps_shard_lo(srv->shard));
    size_t bytes = (size_t)(1 + e.nstate) * n * sizeof(float);
    if (bytes > SMLT_MAX_PAYLOAD) {
        ps_replica_fail(srv, SMLT_ETOOBIG, "the range and its optimizer state exceed one frame");
        return;
    }
    /* Copied (the shard is frozen, so this is the state at the step boundary), then sent by
     * reference and freed when written: pushes may go on as soon as it is queued, since
     * forwarded pushes follow it on the same connection. */
    float *x = malloc(bytes ? bytes : 1);
    if (!x) {
        ps_replica_fail(srv, SMLT_ENOMEM, "out of memory for the backup's import");
        return;
    }
    memcpy(x, e.params, n * sizeof(float));
    if (e.nstate)
        memcpy(x + n, e.state, (size_t)e.nstate * n * sizeof(float));
    Smlt__ImportReq im = SMLT__IMPORT_REQ__INIT;
    im.map_version = ps_shard_map(srv->shard)->version;
    im.lo = ps_shard_lo(srv->shard);
    im.hi = ps_shard_hi(srv->shard);
    im.version = e.version;
    im.clock = e.clock;
    im.updates = e.updates;
    im.nstate = e.nstate;
    im.n_last_counted = im.n_last_applied = e.nranks;
    im.last_counted = (uint64_t *)e.last_counted;
    im.last_applied = (uint64_t *)e.last_applied;
    im.has_final = im.final = 1;
    bk->import_id = ++bk->next_id;
    bk->state = BK_SYNCING;
    rpc_conn_send(bk->conn, SMLT__MSG_TYPE__MSG_IMPORT, bk->import_id, &im.base, x, bytes,
                  RPC_SEND_REF, on_import_sent, NULL);
    ps_shard_freeze(srv->shard, UINT64_MAX);
    log_info("shard %u: backup %s: range sent at step %llu; forwarding pushes", srv->conf.shard,
             bk->addr, (unsigned long long)e.version);
}

/* Replies on the connection to the backup. */
static void bk_on_frame(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                        void *payload, void *arg)
{
    struct ps_server *srv = arg;
    struct ps_backup *bk = &srv->bk;
    struct ps_fwd *f = NULL;
    if (h->type == SMLT__MSG_TYPE__MSG_PUSH_ACK || h->type == SMLT__MSG_TYPE__MSG_ERROR)
        for (f = bk->head; f && f->fwd_id != h->req_id; f = f->next)
            ;
    switch (h->type) {
    case SMLT__MSG_TYPE__MSG_HELLO_OK:
        break;
    case SMLT__MSG_TYPE__MSG_OK:
        if (h->req_id == bk->conf_id && bk->state == BK_CONFIG) {
            bk_send_import(srv);
        } else if (h->req_id == bk->import_id && bk->state == BK_SYNCING) {
            bk->state = BK_ON;
            log_info("shard %u: backup %s in sync", srv->conf.shard, bk->addr);
            if (bk->admin)
                ps_server__reply_ok(bk->admin, bk->admin_req);
            bk->admin = NULL;
        }
        break;
    case SMLT__MSG_TYPE__MSG_PUSH_ACK: {
        Smlt__PushAck *a = (Smlt__PushAck *)rpc_msg_unpack(h, meta);
        if (f && !f->answered) {
            f->answered = 1;
            f->backup_rc = a && a->has_duplicate && a->duplicate ? 1 : 0;
            bk->acks++;
            event_active(srv->fwd_ev, EV_READ, 0);
        }
        if (a)
            protobuf_c_message_free_unpacked(&a->base, NULL);
        break;
    }
    case SMLT__MSG_TYPE__MSG_ERROR: {
        Smlt__ErrorReply *er = (Smlt__ErrorReply *)rpc_msg_unpack(h, meta);
        int code = er && er->code < 0 ? er->code : SMLT_EPROTO;
        char msg[320];
        snprintf(msg, sizeof msg, "%s", er && er->message ? er->message : smlt_strerror(code));
        if (code == SMLT_ESTALEMAP && er && er->map && !srv->retired) {
            /* Our backup was promoted: a newer primary serves this range. Fence ourselves. */
            char e[256];
            struct part_map *m = part_map_from_pb(er->map, e, sizeof e);
            if (m && (!ps_shard_map(srv->shard) || m->version > ps_shard_map(srv->shard)->version)) {
                log_warn("shard %u: the backup %s was promoted (map v%llu); retiring",
                         srv->conf.shard, bk->addr, (unsigned long long)m->version);
                srv->retired = m;
                ps_server__cancel_pulls_retired(srv);
            } else {
                part_map_free(m);
            }
        }
        if (f) {
            if (!f->answered) {
                f->answered = 1;
                f->backup_rc = code;
                event_active(srv->fwd_ev, EV_READ, 0);
            }
        } else if (h->req_id == bk->conf_id || h->req_id == bk->import_id || h->req_id == 1) {
            ps_replica_fail(srv, code, msg);
        } else {
            log_warn("shard %u: backup %s: %s", srv->conf.shard, bk->addr, msg);
        }
        if (er)
            protobuf_c_message_free_unpacked(&er->base, NULL);
        break;
    }
    default:
        log_warn("shard %u: backup %s sent message type %u", srv->conf.shard, bk->addr, h->type);
        break;
    }
}

static void bk_on_close(struct rpc_conn *c, int err, void *arg)
{
    struct ps_server *srv = arg;
    struct ps_backup *bk = &srv->bk;
    if (bk->conn != c)
        return;
    bk->conn = NULL;
    if (bk->state != BK_NONE && bk->state != BK_LOST) {
        bk->lost++;
        log_warn("shard %u: lost the backup %s (%s); going on alone", srv->conf.shard, bk->addr,
                 smlt_strerror(err));
        if (bk->admin)
            ps_server__reply_error(bk->admin, bk->admin_req, err, "the backup's connection broke");
        bk->admin = NULL;
        if (bk->state == BK_CONFIG)
            ps_shard_freeze(srv->shard, UINT64_MAX);
        bk->state = bk->state == BK_CONFIG ? BK_NONE : BK_LOST;
    }
    /* Whatever the backup did not answer, this shard decides alone. The connection is freed
     * right after this: every referenced payload has been released. */
    for (struct ps_fwd *f = bk->head; f; f = f->next) {
        if (!f->answered) {
            f->answered = 1;
            f->backup_rc = FWD_LOST;
        }
    }
    /* The payload references are released when the connection is freed, right after this. */
    event_active(srv->fwd_ev, EV_READ, 0);
}

static const struct rpc_conn_handler bk_handler = {
    .on_frame = bk_on_frame,
    .on_close = bk_on_close,
};

/* Connects to the backup and configures it as ours; called once the shard is frozen at a step
 * boundary (the range is exported when the backup is configured). */
void ps_replica_try_build(struct ps_server *srv)
{
    struct ps_backup *bk = &srv->bk;
    if (bk->state != BK_FREEZING || !ps_shard_frozen(srv->shard))
        return;
    int err = 0;
    bk->conn =
        rpc_conn_connect_tls(srv->base, bk->addr, srv->conf.tls_client, &ps_server__lim_authed,
                             &bk_handler, srv, &err);
    if (!bk->conn) {
        ps_replica_fail(srv, err, "cannot connect to the backup");
        return;
    }
    bk->state = BK_CONFIG;
    Smlt__Hello hello = SMLT__HELLO__INIT;
    const char *tok = srv->admin_token ? srv->admin_token : srv->token;
    hello.proto_version = SMLT_PROTO_VERSION;
    hello.token.data = (uint8_t *)tok;
    hello.token.len = strlen(tok);
    hello.has_role = 1;
    hello.role = SMLT__ROLE__ROLE_ADMIN;
    hello.client = "smlt-ps primary";
    hello.route = (char *)rpc_addr_route(bk->addr); /* a backup on a PS node */
    bk->next_id = 1; /* the Hello is request 1 */
    rpc_conn_send(bk->conn, SMLT__MSG_TYPE__MSG_HELLO, 1, &hello.base, NULL, 0, 0, NULL, NULL);
    const struct ps_shard_conf *sc = ps_shard_conf(srv->shard);
    Smlt__ShardConfig cf = SMLT__SHARD_CONFIG__INIT;
    Smlt__PartitionMap pm = SMLT__PARTITION_MAP__INIT;
    Smlt__SyncConf sy = SMLT__SYNC_CONF__INIT;
    Smlt__OptimConf oc = SMLT__OPTIM_CONF__INIT;
    if (part_map_to_pb(ps_shard_map(srv->shard), &pm) != 0) {
        ps_replica_fail(srv, SMLT_ENOMEM, "out of memory");
        return;
    }
    ps_server__conf_to_pb(sc, &sy, &oc);
    cf.map = &pm;
    cf.shard = ps_shard_id(srv->shard);
    cf.sync = &sy;
    cf.optim = &oc;
    cf.has_await_import = cf.await_import = 1;
    cf.has_backup = cf.backup = 1;
    cf.checkpoint_dir = sc->ckpt_dir[0] ? (char *)sc->ckpt_dir : NULL;
    cf.has_checkpoint_every_steps = cf.has_checkpoint_keep = 1;
    cf.checkpoint_every_steps = sc->ckpt_every;
    cf.checkpoint_keep = sc->ckpt_keep;
    bk->conf_id = ++bk->next_id;
    rpc_conn_send(bk->conn, SMLT__MSG_TYPE__MSG_CONFIGURE, bk->conf_id, &cf.base, NULL, 0, 0, NULL,
                  NULL);
    part_map_pb_clear(&pm);
}

void ps_replica_handle_set_backup(struct ps_client *cl, const struct rpc_frame_hdr *h,
                                  const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    struct ps_backup *bk = &srv->bk;
    Smlt__SetBackup *m = (Smlt__SetBackup *)rpc_msg_unpack(h, meta);
    char err[320] = "";
    int rc = 0;
    const struct part_map *map = ps_shard_map(srv->shard);
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed SetBackup");
        return;
    }
    if (!map || !ps_shard_ready(srv->shard)) {
        rc = map ? SMLT_EAGAIN : SMLT_ENOTCONF;
        snprintf(err, sizeof err, "shard not ready");
    } else if (m->map_version != map->version) {
        rc = SMLT_ESTALEMAP;
        snprintf(err, sizeof err, "SetBackup for map %llu; shard has %llu",
                 (unsigned long long)m->map_version, (unsigned long long)map->version);
    } else if (srv->role == SMLT__SHARD_ROLE__SHARD_BACKUP) {
        rc = SMLT_EINVAL;
        snprintf(err, sizeof err, "shard %u is itself a backup", srv->conf.shard);
    } else if (bk->state != BK_NONE && bk->state != BK_LOST) {
        rc = SMLT_EBUSY;
        snprintf(err, sizeof err, "shard %u already has a backup (%s)", srv->conf.shard, bk->addr);
    } else if (bk->conn || bk->head) {
        rc = SMLT_EAGAIN;
        snprintf(err, sizeof err, "the previous backup's connection is still closing");
    } else if (srv->freeze_client) {
        rc = SMLT_EBUSY;
        snprintf(err, sizeof err, "a reshard is freezing this shard");
    } else if (!m->addr[0] || strlen(m->addr) >= sizeof bk->addr) {
        rc = SMLT_EINVAL;
        snprintf(err, sizeof err, "backup address of %zu bytes", strlen(m->addr));
    }
    if (rc) {
        ps_server__reply_error(cl, h->req_id, rc, err);
        goto out;
    }
    snprintf(bk->addr, sizeof bk->addr, "%s", m->addr);
    bk->state = BK_FREEZING;
    bk->admin = cl;
    bk->admin_req = h->req_id;
    uint64_t at = ps_shard_freeze(srv->shard, 0);
    log_info("shard %u: building the backup %s from step %llu", srv->conf.shard, bk->addr,
             (unsigned long long)at);
    ps_replica_try_build(srv);
out:
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* A map change that only moves addresses: SetMap on every shard, Promote on a backup. */
static int install_map_msg(struct ps_server *srv, const Smlt__PartitionMap *pb, char *err,
                           size_t errlen)
{
    struct part_map *map = part_map_from_pb(pb, err, errlen);
    if (!map)
        return SMLT_EINVAL;
    return ps_shard_set_map(srv->shard, map, err, errlen);
}

void ps_replica_handle_set_map(struct ps_client *cl, const struct rpc_frame_hdr *h,
                               const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    Smlt__SetMap *m = (Smlt__SetMap *)rpc_msg_unpack(h, meta);
    char err[320] = "";
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed SetMap");
        return;
    }
    int rc = install_map_msg(srv, m->map, err, sizeof err);
    if (rc) {
        ps_server__reply_error(cl, h->req_id, rc, err);
    } else {
        log_info("shard %u: map v%llu installed", srv->conf.shard,
                 (unsigned long long)ps_shard_map(srv->shard)->version);
        ps_server__reply_ok(cl, h->req_id);
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

void ps_replica_handle_promote(struct ps_client *cl, const struct rpc_frame_hdr *h,
                               const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    Smlt__Promote *m = (Smlt__Promote *)rpc_msg_unpack(h, meta);
    char err[320] = "";
    int rc = 0;
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed Promote");
        return;
    }
    const struct part_map *cur = ps_shard_map(srv->shard);
    if (srv->role != SMLT__SHARD_ROLE__SHARD_BACKUP) {
        /* Promoted already (a retried call, maybe with a newer map): the map is all that is
         * left to install. */
        rc = install_map_msg(srv, m->map, err, sizeof err);
        if (rc)
            ps_server__reply_error(cl, h->req_id, rc, err);
        else
            ps_server__reply_ok(cl, h->req_id);
        goto out;
    } else if (!cur || m->map->version <= cur->version) {
        rc = SMLT_ESTALEMAP;
        snprintf(err, sizeof err, "Promote needs a map newer than v%llu",
                 (unsigned long long)(cur ? cur->version : 0));
    } else {
        rc = install_map_msg(srv, m->map, err, sizeof err);
    }
    if (rc) {
        ps_server__reply_error(cl, h->req_id, rc, err);
        goto out;
    }
    /* From now on the old primary's connection is an ordinary one: its forwarded pushes name
     * the old map and are told "stale map" with the new one, which fences the old primary. */
    srv->role = SMLT__SHARD_ROLE__SHARD_SOLO;
    struct ps_client *p = srv->primary;
    srv->primary = NULL;
    if (p) {
        p->is_primary = 0;
        if (p->fwd_waiting) {
            p->fwd_waiting = 0;
            rpc_conn_resume_dest(p->conn);
        }
    }
    if (srv->backup_ckpt_every &&
        ps_shard_set_checkpoint_every(srv->shard, srv->backup_ckpt_every, err, sizeof err) != 0)
        log_warn("shard %u: checkpoints stay off: %s", srv->conf.shard, err);
    log_info("shard %u: promoted to primary at step %llu (map v%llu)", srv->conf.shard,
             (unsigned long long)ps_shard_version(srv->shard),
             (unsigned long long)ps_shard_map(srv->shard)->version);
    ps_server__reply_ok(cl, h->req_id);
out:
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* A backup: a forwarded push that waited for this shard's updates may be taken now. */
void ps_replica_resume(struct ps_server *srv)
{
    struct ps_client *p = srv->primary;
    if (p && p->fwd_waiting) {
        p->fwd_waiting = 0;
        rpc_conn_resume_dest(p->conn);
    }
}
