/* ps_server.c: connections, handshake and request dispatch of one shard (see ps_server.h).
 * Replicated shards (forwarding to a backup, SetBackup, Promote, SetMap) are in ps_replica.c;
 * the structs both share are in ps_server_int.h. */
#include "ps_server_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "part_map.h"
#include "ps_ckpt.h"
#include "ps_optim.h"
#include "ps_shard.h"
#include "rpc_conn.h"
#include "smlt.pb-c.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_mem.h"
#include "smlt_tls.h"
#include "smlt_util.h"

/* Pull replies smaller than this are copied into the output buffer; larger ones are sent by
 * reference to the parameter buffer, which the shard then keeps unchanged until written. */
#define PS_PULL_COPY_MAX (64u << 10)

static const struct rpc_limits lim_preauth = {SMLT_MAX_META_PREAUTH, SMLT_MAX_PAYLOAD_PREAUTH};
const struct rpc_limits ps_server__lim_authed = {SMLT_MAX_META_LEN, SMLT_MAX_PAYLOAD};

/* ---- replies ----------------------------------------------------------------------------- */

/* Sends an error reply; with SMLT_ESTALEMAP it carries the current map, with SMLT_ESTEP the
 * shard's version and clock, so the client can recover without another round trip. */
void ps_server__reply_error(struct ps_client *cl, uint64_t req_id, int code, const char *msg)
{
    struct ps_server *srv = cl->srv;
    Smlt__ErrorReply er = SMLT__ERROR_REPLY__INIT;
    Smlt__PartitionMap pm = SMLT__PARTITION_MAP__INIT;
    er.code = code;
    er.message = (char *)(msg && *msg ? msg : smlt_strerror(code));
    const struct part_map *map = ps_shard_map(srv->shard);
    int have_pm = 0;
    if (code == SMLT_ESTALEMAP && map && part_map_to_pb(map, &pm) == 0) {
        er.map = &pm;
        have_pm = 1;
        srv->stale_map_errors++;
    }
    if (code == SMLT_ESTEP || code == SMLT_ETIMEDOUT) {
        er.has_version = er.has_clock = 1;
        er.version = ps_shard_version(srv->shard);
        er.clock = ps_shard_clock(srv->shard);
    }
    rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_ERROR, req_id, &er.base, NULL, 0, 0, NULL, NULL);
    if (have_pm)
        part_map_pb_clear(&pm);
}

void ps_server__reply_ok(struct ps_client *cl, uint64_t req_id)
{
    Smlt__Ok ok = SMLT__OK__INIT;
    const struct part_map *map = ps_shard_map(cl->srv->shard);
    ok.has_version = 1;
    ok.version = ps_shard_version(cl->srv->shard);
    if (map) {
        ok.has_map_version = 1;
        ok.map_version = map->version;
    }
    rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_OK, req_id, &ok.base, NULL, 0, 0, NULL, NULL);
}

void ps_server__send_push_ack(struct ps_client *cl, uint64_t req_id, uint64_t step, int duplicate)
{
    struct ps_server *srv = cl->srv;
    Smlt__PushAck ack = SMLT__PUSH_ACK__INIT;
    ack.step = step;
    ack.has_duplicate = 1;
    ack.duplicate = duplicate;
    ack.has_version = ack.has_clock = 1;
    ack.version = ps_shard_version(srv->shard);
    ack.clock = ps_shard_clock(srv->shard);
    rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_PUSH_ACK, req_id, &ack.base, NULL, 0, 0, NULL, NULL);
}

static void on_params_sent(const void *data, size_t len, void *arg)
{
    ps_shard_params_unref(arg, data);
}

static void send_pull(struct ps_client *cl, uint64_t req_id, uint64_t lo, uint64_t hi,
                      int may_compress)
{
    struct ps_server *srv = cl->srv;
    uint64_t version, clock;
    const float *p = ps_shard_params_ref(srv->shard, &version, &clock);
    if (!p) {
        ps_server__reply_error(cl, req_id, SMLT_ENOTCONF, "no parameters");
        return;
    }
    Smlt__PullReply pr = SMLT__PULL_REPLY__INIT;
    pr.version = version;
    pr.clock = clock;
    pr.lo = lo;
    pr.hi = hi;
    const float *data = p + (lo - ps_shard_lo(srv->shard));
    size_t len = (size_t)(hi - lo) * sizeof(float);
    unsigned opts = (len > PS_PULL_COPY_MAX ? RPC_SEND_REF : RPC_SEND_COPY) |
                    (may_compress ? RPC_SEND_MAY_COMPRESS : 0);
    rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_PULL_REPLY, req_id, &pr.base, data, len, opts,
                  on_params_sent, srv->shard);
    srv->pulls_served++;
}

/* ---- waiting pulls and writes ------------------------------------------------------------ */

static void pull_wait_free(struct ps_server *srv, struct ps_pull_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        srv->pulls = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->cl->pulls_waiting--;
    event_free(w->timer);
    free(w);
}

static void on_pull_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct ps_pull_wait *w = arg;
    struct ps_server *srv = w->cl->srv;
    char msg[160];
    snprintf(msg, sizeof msg, "clock %llu not reached in time (shard %u at clock %llu)",
             (unsigned long long)w->min_clock, srv->conf.shard,
             (unsigned long long)ps_shard_clock(srv->shard));
    ps_server__reply_error(w->cl, w->req_id, SMLT_ETIMEDOUT, msg);
    srv->pulls_timed_out++;
    smlt_hist_observe(&srv->bsp_wait, smlt_now_mono() - w->since);
    pull_wait_free(srv, w);
}

static void on_shard_advance(struct ps_shard *sh, void *arg)
{
    struct ps_server *srv = arg;
    uint64_t clock = ps_shard_clock(sh);
    for (struct ps_pull_wait *w = srv->pulls, *next; w; w = next) {
        next = w->next;
        if (w->min_clock <= clock) {
            send_pull(w->cl, w->req_id, w->lo, w->hi, w->may_compress);
            smlt_hist_observe(&srv->bsp_wait, smlt_now_mono() - w->since);
            pull_wait_free(srv, w);
        }
    }
    ps_replica_try_build(srv);
    ps_replica_resume(srv);
    if (srv->freeze_client && ps_shard_frozen(sh)) {
        struct ps_client *fc = srv->freeze_client;
        srv->freeze_client = NULL;
        ps_server__reply_ok(fc, srv->freeze_req);
    }
    uint64_t done = ps_shard_seq_done(sh);
    for (struct ps_set_wait **pp = &srv->sets; *pp;) {
        struct ps_set_wait *w = *pp;
        if (w->seq <= done) {
            *pp = w->next;
            ps_server__reply_ok(w->cl, w->req_id);
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

static void on_shard_buffer_free(struct ps_shard *sh, void *arg)
{
    struct ps_server *srv = arg;
    /* Resumed oldest first: their deferred events run in this order, so the first of them take
     * the free buffers and the rest queue again behind each other in the same order. (A LIFO
     * here let the latest waiters win every time: under 256 pushing connections some waited
     * for a buffer longer than 30 s.) */
    struct ps_client *cl = srv->buf_waiters;
    srv->buf_waiters = srv->buf_waiters_tail = NULL;
    for (struct ps_client *next; cl; cl = next) {
        next = cl->wnext;
        cl->wnext = NULL;
        cl->waiting_buf = 0;
        rpc_conn_resume_dest(cl->conn);
    }
}

static void on_shard_configured(struct ps_shard *sh, int err, void *arg)
{
    struct ps_server *srv = arg;
    struct ps_client *cl = srv->conf_client;
    srv->conf_client = NULL;
    ps_replica_resume(srv);
    if (err == 0) {
        const struct part_map *m = ps_shard_map(sh);
        log_info("shard %u: configured: job \"%s\" map v%llu range [%llu, %llu) %s, %u workers, %s",
                 srv->conf.shard, m->job, (unsigned long long)m->version,
                 (unsigned long long)ps_shard_lo(sh), (unsigned long long)ps_shard_hi(sh),
                 smlt_enum_sync_name(ps_shard_conf(sh)->mode), ps_shard_conf(sh)->workers,
                 smlt_enum_optim_name(ps_shard_conf(sh)->optim.kind));
    }
    if (!cl)
        return;
    if (err)
        ps_server__reply_error(cl, srv->conf_req, err, "parameter initialization failed");
    else
        ps_server__reply_ok(cl, srv->conf_req);
}

/* ---- requests ---------------------------------------------------------------------------- */

static void handle_hello(struct ps_client *cl, const struct rpc_frame_hdr *h, const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    Smlt__Hello *m = (Smlt__Hello *)rpc_msg_unpack(h, meta);
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed Hello");
        rpc_conn_close(cl->conn, SMLT_EPROTO);
        return;
    }
    if (m->proto_version != SMLT_PROTO_VERSION) {
        char msg[96];
        snprintf(msg, sizeof msg, "protocol version %u not supported (server speaks %u)",
                 m->proto_version, SMLT_PROTO_VERSION);
        ps_server__reply_error(cl, h->req_id, SMLT_EVERSION, msg);
        rpc_conn_close(cl->conn, SMLT_EVERSION);
        goto out;
    }
    int is_admin_role = m->has_role && m->role == SMLT__ROLE__ROLE_ADMIN;
    const char *want = is_admin_role && srv->admin_token ? srv->admin_token : srv->token;
    if (!rpc_token_equal(m->token.data, m->token.len, want, strlen(want))) {
        srv->auth_failures++;
        log_warn("shard %u: %s: wrong token (%s role); closing", srv->conf.shard,
                 rpc_conn_peer(cl->conn), is_admin_role ? "admin" : "worker");
        ps_server__reply_error(cl, h->req_id, SMLT_EAUTH, "wrong token");
        rpc_conn_close(cl->conn, SMLT_EAUTH);
        goto out;
    }
    cl->authed = 1;
    cl->admin = is_admin_role;
    cl->worker = m->has_worker ? m->worker : 0;
    if (cl->hs_timer) {
        event_free(cl->hs_timer);
        cl->hs_timer = NULL;
    }
    rpc_conn_set_limits(cl->conn, &ps_server__lim_authed);
    Smlt__HelloOk ok = SMLT__HELLO_OK__INIT;
    ok.proto_version = SMLT_PROTO_VERSION;
    ok.shard = srv->conf.shard;
    const struct part_map *map = ps_shard_map(srv->shard);
    ok.has_map_version = 1;
    ok.map_version = map && ps_shard_ready(srv->shard) ? map->version : 0;
    ok.server = "smlt-ps " SMLT_VERSION_STRING;
    rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_HELLO_OK, h->req_id, &ok.base, NULL, 0, 0, NULL,
                  NULL);
    log_debug("shard %u: %s authenticated (%s, rank %u)", srv->conf.shard, rpc_conn_peer(cl->conn),
              cl->admin ? "admin" : "worker", cl->worker);
out:
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void handle_get_map(struct ps_client *cl, uint64_t req_id)
{
    const struct part_map *map = ps_shard_map(cl->srv->shard);
    if (!map || !ps_shard_ready(cl->srv->shard)) {
        ps_server__reply_error(cl, req_id, map ? SMLT_EAGAIN : SMLT_ENOTCONF,
                               map ? "shard initializing" : "shard has no job configured");
        return;
    }
    Smlt__PartitionMap pm = SMLT__PARTITION_MAP__INIT;
    if (part_map_to_pb(map, &pm) != 0) {
        ps_server__reply_error(cl, req_id, SMLT_ENOMEM, NULL);
        return;
    }
    rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_MAP, req_id, &pm.base, NULL, 0, 0, NULL, NULL);
    part_map_pb_clear(&pm);
}

static void handle_pull(struct ps_client *cl, const struct rpc_frame_hdr *h, const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    Smlt__PullReq *m = (Smlt__PullReq *)rpc_msg_unpack(h, meta);
    char err[256] = "";
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed PullReq");
        return;
    }
    int rc = ps_shard_pull_check(srv->shard, m->map_version, m->lo, m->hi, err, sizeof err);
    if (rc) {
        ps_server__reply_error(cl, h->req_id, rc, err);
        goto out;
    }
    int may_compress = !m->has_may_compress || m->may_compress;
    uint64_t min_clock = m->has_min_clock ? m->min_clock : 0;
    if (min_clock <= ps_shard_clock(srv->shard)) {
        send_pull(cl, h->req_id, m->lo, m->hi, may_compress);
        if (min_clock > 0) /* a barrier already passed: no wait */
            smlt_hist_observe(&srv->bsp_wait, 0);
        goto out;
    }
    uint32_t wait_ms = m->has_wait_ms ? m->wait_ms : 0;
    if (wait_ms == 0) {
        snprintf(err, sizeof err, "clock %llu not reached (shard at %llu) and no wait asked",
                 (unsigned long long)min_clock, (unsigned long long)ps_shard_clock(srv->shard));
        ps_server__reply_error(cl, h->req_id, SMLT_ETIMEDOUT, err);
        goto out;
    }
    if (cl->pulls_waiting >= SMLT_MAX_PENDING_PULLS) {
        ps_server__reply_error(cl, h->req_id, SMLT_EBUSY,
                               "too many waiting pulls on this connection");
        goto out;
    }
    if (wait_ms > SMLT_MAX_PULL_WAIT_MS)
        wait_ms = SMLT_MAX_PULL_WAIT_MS;
    struct ps_pull_wait *w = calloc(1, sizeof *w);
    if (!w) {
        ps_server__reply_error(cl, h->req_id, SMLT_ENOMEM, NULL);
        goto out;
    }
    w->cl = cl;
    w->req_id = h->req_id;
    w->lo = m->lo;
    w->hi = m->hi;
    w->min_clock = min_clock;
    w->may_compress = may_compress;
    w->since = smlt_now_mono();
    w->timer = evtimer_new(srv->base, on_pull_timeout, w);
    struct timeval tv = {wait_ms / 1000, (wait_ms % 1000) * 1000};
    evtimer_add(w->timer, &tv);
    w->next = srv->pulls;
    if (srv->pulls)
        srv->pulls->prev = w;
    srv->pulls = w;
    cl->pulls_waiting++;
out:
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void handle_push_done(struct ps_client *cl, const struct rpc_frame_hdr *h,
                             const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    Smlt__PushReq *m = (Smlt__PushReq *)rpc_msg_unpack(h, meta);
    float *buf = cl->recv_buf;
    cl->recv_buf = NULL;
    if (!m || !buf) {
        ps_shard_buf_put(srv->shard, buf);
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed PushReq");
        if (m)
            protobuf_c_message_free_unpacked(&m->base, NULL);
        return;
    }
    char err[256] = "";
    int rc;
    if ((srv->bk.state == BK_SYNCING || srv->bk.state == BK_ON) && srv->bk.conn && !srv->retired) {
        /* Replicated: the backup counts it first; it is counted here when the backup answers.
         * Checked again now: a resend may have been counted while this payload arrived. */
        const struct part_map *map = ps_shard_map(srv->shard);
        rc = ps_shard_push_check(srv->shard, map ? map->version : 0, m->worker, m->step, m->lo,
                                 m->hi, err, sizeof err);
        if (rc == 0) {
            ps_replica_forward(cl, h->req_id, m, buf);
        } else {
            ps_shard_buf_put(srv->shard, buf);
            if (rc == 1) {
                ps_shard_count_duplicate(srv->shard);
                ps_server__send_push_ack(cl, h->req_id, m->step, 1);
            } else {
                ps_server__reply_error(cl, h->req_id, rc, err);
            }
        }
        protobuf_c_message_free_unpacked(&m->base, NULL);
        return;
    }
    rc = ps_shard_push_commit(srv->shard, m->worker, m->step, buf, err, sizeof err);
    if (rc < 0)
        ps_server__reply_error(cl, h->req_id, rc, err);
    else
        ps_server__send_push_ack(cl, h->req_id, m->step, rc == 1);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static int fill_conf(const Smlt__ShardConfig *m, struct ps_shard_conf *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->mode = SMLT_SYNC_BSP;
    c->workers = 1;
    ps_optim_conf_default(&c->optim);
    if (m->sync) {
        if (m->sync->has_mode)
            c->mode = (enum smlt_sync)m->sync->mode;
        if (m->sync->has_workers)
            c->workers = m->sync->workers;
        if (m->sync->has_staleness)
            c->staleness = m->sync->staleness;
    }
    const Smlt__OptimConf *o = m->optim;
    if (o) {
        if (o->has_kind)
            c->optim.kind = (enum smlt_optim)o->kind;
        if (o->has_lr)
            c->optim.lr = o->lr;
        if (o->has_momentum)
            c->optim.momentum = o->momentum;
        if (o->has_nesterov)
            c->optim.nesterov = o->nesterov;
        if (o->has_beta1)
            c->optim.beta1 = o->beta1;
        if (o->has_beta2)
            c->optim.beta2 = o->beta2;
        if (o->has_eps)
            c->optim.eps = o->eps;
        if (o->has_weight_decay)
            c->optim.weight_decay = o->weight_decay;
        if (o->has_decoupled)
            c->optim.decoupled = o->decoupled;
    }
    if (c->mode < SMLT_SYNC_BSP || c->mode > SMLT_SYNC_ASP) {
        snprintf(err, errlen, "sync.mode: unknown value %d", (int)c->mode);
        return SMLT_EINVAL;
    }
    c->await_import = m->has_await_import && m->await_import;
    if (m->checkpoint_dir && strlen(m->checkpoint_dir) >= sizeof c->ckpt_dir) {
        snprintf(err, errlen, "checkpoint_dir: longer than %zu bytes", sizeof c->ckpt_dir - 1);
        return SMLT_EINVAL;
    }
    if (m->checkpoint_dir)
        snprintf(c->ckpt_dir, sizeof c->ckpt_dir, "%s", m->checkpoint_dir);
    c->ckpt_every = m->has_checkpoint_every_steps ? m->checkpoint_every_steps : 0;
    c->ckpt_keep = m->has_checkpoint_keep ? m->checkpoint_keep : 0;
    return 0;
}

void ps_server__conf_to_pb(const struct ps_shard_conf *sc, Smlt__SyncConf *sy, Smlt__OptimConf *oc)
{
    sy->has_mode = sy->has_workers = sy->has_staleness = 1;
    sy->mode = (Smlt__SyncMode)sc->mode;
    sy->workers = sc->workers;
    sy->staleness = sc->staleness;
    oc->has_kind = oc->has_lr = oc->has_momentum = oc->has_nesterov = oc->has_beta1 = 1;
    oc->has_beta2 = oc->has_eps = oc->has_weight_decay = oc->has_decoupled = 1;
    oc->kind = (Smlt__OptimKind)sc->optim.kind;
    oc->lr = sc->optim.lr;
    oc->momentum = sc->optim.momentum;
    oc->nesterov = sc->optim.nesterov;
    oc->beta1 = sc->optim.beta1;
    oc->beta2 = sc->optim.beta2;
    oc->eps = sc->optim.eps;
    oc->weight_decay = sc->optim.weight_decay;
    oc->decoupled = sc->optim.decoupled;
}

/* Answers every waiting pull with an error: the job they waited on changed. */
static void cancel_pulls(struct ps_server *srv, int code, const char *why)
{
    while (srv->pulls) {
        ps_server__reply_error(srv->pulls->cl, srv->pulls->req_id, code, why);
        pull_wait_free(srv, srv->pulls);
    }
}

static void handle_configure(struct ps_client *cl, const struct rpc_frame_hdr *h,
                             const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    char err[256] = "";
    Smlt__ShardConfig *m = (Smlt__ShardConfig *)rpc_msg_unpack(h, meta);
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed ShardConfig");
        return;
    }
    struct ps_shard_conf conf;
    struct part_map *map = NULL;
    int rc = 0;
    if (srv->conf_client) {
        snprintf(err, sizeof err, "another configuration is in progress");
        rc = SMLT_EBUSY;
    } else if ((rc = fill_conf(m, &conf, err, sizeof err)) == 0) {
        if (!conf.ckpt_dir[0] && srv->conf.checkpoint_dir)
            snprintf(conf.ckpt_dir, sizeof conf.ckpt_dir, "%s", srv->conf.checkpoint_dir);
        map = part_map_from_pb(m->map, err, sizeof err);
        if (!map)
            rc = SMLT_EINVAL;
    }
    if (rc == 0 && m->shard >= map->nshards) {
        snprintf(err, sizeof err, "shard id %u is not in the map (%u shards)", m->shard, map->nshards);
        rc = SMLT_EINVAL;
    }
    if (rc == 0 && ps_shard_id(srv->shard) != m->shard) {
        /* A process's id is its position in the map it serves; a reshard can move it. */
        if (srv->conf_client || ps_shard_ready(srv->shard) || !ps_shard_map(srv->shard))
            log_info("shard %u: now shard %u of map v%llu", srv->conf.shard, m->shard,
                     (unsigned long long)map->version);
        ps_shard_set_id(srv->shard, m->shard);
        srv->conf.shard = m->shard;
    }
    if (rc == 0 && srv->conf.reserve) {
        /* A node's shard: what the range takes must fit in what the node has. */
        uint64_t n = map->shards[m->shard].hi - map->shards[m->shard].lo;
        uint64_t need = smlt_shard_mem_bytes(n, (unsigned)ps_optim_state_per_param(conf.optim.kind),
                                             conf.workers, conf.ckpt_every && conf.ckpt_dir[0]);
        rc = srv->conf.reserve(srv->conf.cb_arg, need, err, sizeof err);
    }
    if (rc == 0) {
        rc = ps_shard_configure(srv->shard, map, &conf, err, sizeof err);
        map = NULL; /* taken */
    }
    if (rc) {
        part_map_free(map);
        log_warn("shard %u: configure refused: %s", srv->conf.shard, err);
        ps_server__reply_error(cl, h->req_id, rc, err);
    } else {
        /* Waiting pulls were for the old configuration: tell them the new map. */
        cancel_pulls(srv, SMLT_ESTALEMAP, "the shard was reconfigured with a new map");
        part_map_free(srv->retired);
        srv->retired = NULL;
        if (srv->bk.conn)
            ps_replica_fail(srv, SMLT_ECANCELED, "the shard was reconfigured");
        srv->bk.state = BK_NONE;
        if (srv->primary)
            srv->primary->is_primary = 0;
        srv->primary = NULL;
        srv->role = SMLT__SHARD_ROLE__SHARD_SOLO;
        if (m->has_backup && m->backup) {
            /* Until promoted, only this connection pushes, and the primary checkpoints. */
            srv->role = SMLT__SHARD_ROLE__SHARD_BACKUP;
            srv->primary = cl;
            cl->is_primary = 1;
            srv->backup_ckpt_every = conf.ckpt_every;
            if (conf.ckpt_every)
                ps_shard_set_checkpoint_every(srv->shard, 0, err, sizeof err);
            log_info("shard %u: a backup of %s", srv->conf.shard, rpc_conn_peer(cl->conn));
        }
        if (ps_shard_ready(srv->shard)) {
            ps_server__reply_ok(cl, h->req_id);
        } else {
            srv->conf_client = cl;
            srv->conf_req = h->req_id;
        }
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void handle_set_params_done(struct ps_client *cl, const struct rpc_frame_hdr *h,
                                   const uint8_t *meta, void *payload)
{
    struct ps_server *srv = cl->srv;
    Smlt__SetParams *m = (Smlt__SetParams *)rpc_msg_unpack(h, meta);
    float *owned = cl->recv_buf;
    cl->recv_buf = NULL;
    char err[256] = "";
    if (!m) {
        ps_shard_buf_put(srv->shard, owned);
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed SetParams");
        return;
    }
    uint64_t seq = 0;
    int reset = !m->has_reset_state || m->reset_state;
    int rc = ps_shard_set_params(srv->shard, m->map_version, m->lo, m->hi,
                                 owned ? owned : (float *)payload, owned != NULL, reset, &seq, err,
                                 sizeof err);
    if (rc) {
        ps_server__reply_error(cl, h->req_id, rc, err);
    } else if (seq <= ps_shard_seq_done(srv->shard)) {
        ps_server__reply_ok(cl, h->req_id);
    } else {
        struct ps_set_wait *w = calloc(1, sizeof *w);
        if (w) {
            w->cl = cl;
            w->req_id = h->req_id;
            w->seq = seq;
            w->next = srv->sets;
            srv->sets = w;
        } else {
            ps_server__reply_ok(cl, h->req_id);
        }
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void handle_update_conf(struct ps_client *cl, const struct rpc_frame_hdr *h,
                               const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    Smlt__UpdateConf *m = (Smlt__UpdateConf *)rpc_msg_unpack(h, meta);
    char err[256] = "";
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed UpdateConf");
        return;
    }
    if (!ps_shard_map(srv->shard)) {
        ps_server__reply_error(cl, h->req_id, SMLT_ENOTCONF, "shard has no job configured");
        goto out;
    }
    int rc = ps_shard_update(srv->shard, m->has_lr ? &m->lr : NULL,
                             m->has_weight_decay ? &m->weight_decay : NULL,
                             m->has_workers ? &m->workers : NULL,
                             m->has_staleness ? &m->staleness : NULL, err, sizeof err);
    if (!rc && m->has_checkpoint_every_steps)
        rc = ps_shard_set_checkpoint_every(srv->shard, m->checkpoint_every_steps, err, sizeof err);
    if (rc)
        ps_server__reply_error(cl, h->req_id, rc, err);
    else {
        log_info("shard %u: conf updated:%s%s%s%s", srv->conf.shard, m->has_lr ? " lr" : "",
                 m->has_weight_decay ? " weight_decay" : "", m->has_workers ? " workers" : "",
                 m->has_checkpoint_every_steps ? " checkpoint interval" : "");
        ps_server__reply_ok(cl, h->req_id);
    }
out:
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

void ps_server__traffic(const struct ps_server *srv, uint64_t *bytes_in, uint64_t *bytes_out,
                        uint64_t *frames_bad)
{
    *bytes_in = srv->bytes_in;
    *bytes_out = srv->bytes_out;
    *frames_bad = srv->frames_bad;
    for (const struct ps_client *x = srv->clients; x; x = x->next) {
        *bytes_in += rpc_conn_bytes_in(x->conn);
        *bytes_out += rpc_conn_bytes_out(x->conn);
        *frames_bad += rpc_conn_frames_bad(x->conn);
    }
}

static void handle_stats(struct ps_client *cl, uint64_t req_id)
{
    struct ps_server *srv = cl->srv;
    struct ps_shard_stats st;
    ps_shard_stats(srv->shard, &st);
    Smlt__ShardStats m = SMLT__SHARD_STATS__INIT;
    const struct part_map *map = ps_shard_map(srv->shard);
    const struct ps_shard_conf *c = ps_shard_conf(srv->shard);
    uint64_t bin, bout, bad;
    ps_server__traffic(srv, &bin, &bout, &bad);
    uint64_t waiting = 0;
    for (struct ps_pull_wait *w = srv->pulls; w; w = w->next)
        waiting++;
    m.shard = srv->conf.shard;
#define SET(f, v)                                                                                  \
    do {                                                                                           \
        m.has_##f = 1;                                                                             \
        m.f = (v);                                                                                 \
    } while (0)
    SET(map_version, map ? map->version : 0);
    SET(version, ps_shard_version(srv->shard));
    SET(clock, ps_shard_clock(srv->shard));
    SET(lo, ps_shard_lo(srv->shard));
    SET(hi, ps_shard_hi(srv->shard));
    SET(workers, c->workers);
    SET(mode, (Smlt__SyncMode)c->mode);
    SET(pushes_received, st.pushes_received);
    SET(pushes_counted, st.pushes_counted);
    SET(pushes_duplicate, st.pushes_duplicate);
    SET(pushes_rejected, st.pushes_rejected);
    SET(updates_applied, st.updates_applied);
    SET(pulls_served, srv->pulls_served);
    SET(pulls_waiting, waiting);
    SET(pulls_timed_out, srv->pulls_timed_out);
    SET(bytes_in, bin);
    SET(bytes_out, bout);
    SET(frames_bad, bad);
    SET(auth_failures, srv->auth_failures);
    SET(stale_map_errors, srv->stale_map_errors);
    SET(connections, srv->nconns);
    SET(apply_seconds, st.apply_seconds);
    SET(conns_refused, srv->conns_refused);
    SET(tls_failures, srv->tls_failures);
    SET(lr, c->optim.lr);
    SET(noise_g2, st.noise_g2);
    SET(noise_s, st.noise_s);
    SET(noise_steps, st.noise_steps);
    SET(checkpoints_written, st.ckpt_written);
    SET(checkpoints_failed, st.ckpt_failed);
    SET(checkpoints_skipped, st.ckpt_skipped);
    SET(checkpoints_corrupt, st.ckpt_corrupt);
    SET(checkpoint_last_step, st.ckpt_last_step);
    SET(checkpoint_copy_seconds, st.ckpt_copy_seconds);
    SET(checkpoint_write_seconds, st.ckpt_write_seconds);
    SET(checkpoint_bytes, st.ckpt_bytes);
    int role = srv->role;
    if (role == SMLT__SHARD_ROLE__SHARD_SOLO && srv->bk.state == BK_ON)
        role = SMLT__SHARD_ROLE__SHARD_PRIMARY;
    else if (role == SMLT__SHARD_ROLE__SHARD_SOLO && srv->bk.state != BK_NONE &&
             srv->bk.state != BK_LOST)
        role = SMLT__SHARD_ROLE__SHARD_BUILDING;
    SET(role, (Smlt__ShardRole)role);
    SET(backup_forwarded, srv->bk.forwarded);
    SET(backup_acks, srv->bk.acks);
    SET(backup_lag, srv->bk.lag);
    SET(backup_lost, srv->bk.lost);
    SET(backup_diverged, srv->bk.diverged);
    if (srv->bk.state != BK_NONE)
        m.backup_addr = srv->bk.addr;
#undef SET
    rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_STATS, req_id, &m.base, NULL, 0, 0, NULL, NULL);
}

/* ---- live resharding -------------------------------------------------------------------- */

static void handle_prepare(struct ps_client *cl, const struct rpc_frame_hdr *h, const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    Smlt__ReshardPrepare *m = (Smlt__ReshardPrepare *)rpc_msg_unpack(h, meta);
    char err[256] = "";
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed ReshardPrepare");
        return;
    }
    const struct part_map *map = ps_shard_map(srv->shard);
    if (!map || !ps_shard_ready(srv->shard)) {
        ps_server__reply_error(cl, h->req_id, map ? SMLT_EAGAIN : SMLT_ENOTCONF, "shard not ready");
        goto out;
    }
    if (m->map_version != map->version) {
        snprintf(err, sizeof err, "reshard of map %llu; shard has %llu",
                 (unsigned long long)m->map_version, (unsigned long long)map->version);
        ps_server__reply_error(cl, h->req_id, SMLT_ESTALEMAP, err);
        goto out;
    }
    uint64_t clock = m->has_freeze_clock ? m->freeze_clock : 0;
    int stop = m->has_stop && m->stop;
    uint64_t at = stop && clock != UINT64_MAX ? ps_shard_freeze_stop(srv->shard, clock)
                                              : ps_shard_freeze(srv->shard, clock);
    if (clock == UINT64_MAX) {
        log_info("shard %u: resharding called off; pushes accepted again", srv->conf.shard);
        ps_server__reply_ok(cl, h->req_id);
        goto out;
    }
    if (clock == 0 || stop) {
        /* Tentative (or a stop, which needs no wait): say where we freeze; the coordinator
         * picks the latest of all. */
        if (stop && clock)
            log_info("shard %u: the job stops at step %llu", srv->conf.shard, (unsigned long long)at);
        Smlt__Ok ok = SMLT__OK__INIT;
        ok.has_version = 1;
        ok.version = at;
        ok.has_map_version = 1;
        ok.map_version = map->version;
        rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_OK, h->req_id, &ok.base, NULL, 0, 0, NULL, NULL);
        goto out;
    }
    log_info("shard %u: freezing at clock %llu for resharding", srv->conf.shard,
             (unsigned long long)at);
    if (ps_shard_frozen(srv->shard)) {
        ps_server__reply_ok(cl, h->req_id);
    } else if (srv->freeze_client) {
        ps_server__reply_error(cl, h->req_id, SMLT_EBUSY, "another reshard is waiting for this shard");
    } else {
        srv->freeze_client = cl;
        srv->freeze_req = h->req_id;
    }
out:
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void handle_export(struct ps_client *cl, const struct rpc_frame_hdr *h, const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    Smlt__ExportReq *m = (Smlt__ExportReq *)rpc_msg_unpack(h, meta);
    char err[256] = "";
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed ExportReq");
        return;
    }
    struct ps_shard_export e;
    int rc = ps_shard_pull_check(srv->shard, m->map_version, m->lo, m->hi, err, sizeof err);
    if (!rc)
        rc = ps_shard_export(srv->shard, &e);
    if (rc) {
        ps_server__reply_error(cl, h->req_id, rc,
                               err[0] ? err : "updates in flight; export again shortly");
        goto out;
    }
    size_t n = (size_t)(m->hi - m->lo), off = (size_t)(m->lo - ps_shard_lo(srv->shard));
    size_t rn = (size_t)(ps_shard_hi(srv->shard) - ps_shard_lo(srv->shard));
    size_t bytes = (size_t)(1 + e.nstate) * n * sizeof(float);
    if (bytes > SMLT_MAX_PAYLOAD) {
        ps_server__reply_error(cl, h->req_id, SMLT_ETOOBIG,
                               "export larger than one frame; ask for less");
        goto out;
    }
    float *buf = malloc(bytes ? bytes : 1);
    if (!buf) {
        ps_server__reply_error(cl, h->req_id, SMLT_ENOMEM, NULL);
        goto out;
    }
    memcpy(buf, e.params + off, n * sizeof(float));
    for (uint32_t k = 0; k < e.nstate; k++)
        memcpy(buf + (size_t)(k + 1) * n, e.state + (size_t)k * rn + off, n * sizeof(float));
    Smlt__ExportReply r = SMLT__EXPORT_REPLY__INIT;
    r.lo = m->lo;
    r.hi = m->hi;
    r.version = e.version;
    r.clock = e.clock;
    r.updates = e.updates;
    r.nstate = e.nstate;
    r.n_last_counted = r.n_last_applied = e.nranks;
    r.last_counted = (uint64_t *)e.last_counted;
    r.last_applied = (uint64_t *)e.last_applied;
    const struct ps_shard_conf *sc = ps_shard_conf(srv->shard);
    Smlt__SyncConf sy = SMLT__SYNC_CONF__INIT;
    Smlt__OptimConf oc = SMLT__OPTIM_CONF__INIT;
    ps_server__conf_to_pb(sc, &sy, &oc);
    r.sync = &sy;
    r.optim = &oc;
    r.checkpoint_dir = sc->ckpt_dir[0] ? (char *)sc->ckpt_dir : NULL;
    r.has_checkpoint_every_steps = r.has_checkpoint_keep = 1;
    r.checkpoint_every_steps = sc->ckpt_every;
    r.checkpoint_keep = sc->ckpt_keep;
    rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_EXPORT_REPLY, h->req_id, &r.base, buf, bytes, 0,
                  NULL, NULL);
    srv->reshard_exports++;
    free(buf);
out:
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void handle_import(struct ps_client *cl, const struct rpc_frame_hdr *h, const uint8_t *meta,
                          void *payload)
{
    struct ps_server *srv = cl->srv;
    Smlt__ImportReq *m = (Smlt__ImportReq *)rpc_msg_unpack(h, meta);
    char err[256] = "";
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed ImportReq");
        return;
    }
    struct ps_shard_export e = {.version = m->version,
                                .clock = m->clock,
                                .updates = m->updates,
                                .nstate = m->nstate,
                                .last_counted = m->last_counted,
                                .last_applied = m->last_applied,
                                .nranks = (uint32_t)(m->n_last_counted < m->n_last_applied
                                                         ? m->n_last_counted
                                                         : m->n_last_applied)};
    int rc = 0;
    if (m->hi < m->lo || m->nstate > 4 ||
        h->raw_len != (uint64_t)(1 + m->nstate) * (m->hi - m->lo) * sizeof(float)) {
        snprintf(err, sizeof err, "import payload of %llu bytes does not hold %u arrays of %llu floats",
                 (unsigned long long)h->raw_len, 1 + m->nstate, (unsigned long long)(m->hi - m->lo));
        rc = SMLT_EPROTO;
    } else {
        rc = ps_shard_import(srv->shard, m->map_version, m->lo, m->hi, payload, &e,
                             m->has_final && m->final, err, sizeof err);
    }
    if (rc)
        ps_server__reply_error(cl, h->req_id, rc, err);
    else {
        if (m->has_final && m->final)
            log_info("shard %u: import complete at clock %llu; ready", srv->conf.shard,
                     (unsigned long long)m->clock);
        srv->reshard_imports++;
        ps_server__reply_ok(cl, h->req_id);
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

/* The directory a checkpoint request means: its own, the job's, or the daemon's default. */
static const char *ckpt_dir_of(struct ps_server *srv, const char *asked)
{
    if (asked && *asked)
        return asked;
    const struct ps_shard_conf *c = ps_shard_conf(srv->shard);
    if (ps_shard_map(srv->shard) && c->ckpt_dir[0])
        return c->ckpt_dir;
    return srv->conf.checkpoint_dir && *srv->conf.checkpoint_dir ? srv->conf.checkpoint_dir : NULL;
}

/* Reads and installs a checkpoint. The file is read and checked on the loop thread: a restore
 * is rare and the shard is not training while it happens. */
static void handle_restore(struct ps_client *cl, const struct rpc_frame_hdr *h, const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    Smlt__RestoreReq *m = (Smlt__RestoreReq *)rpc_msg_unpack(h, meta);
    char err[768] = "", report[1024] = "";
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed RestoreReq");
        return;
    }
    const char *dir = ckpt_dir_of(srv, m->dir);
    struct ps_ckpt *ck = NULL;
    uint32_t corrupt = 0;
    uint32_t id = ps_shard_id(srv->shard);
    int rc;
    if (!ps_shard_map(srv->shard)) {
        rc = SMLT_ENOTCONF;
        snprintf(err, sizeof err, "configure the shard with the job's map before restoring");
    } else if (!dir) {
        rc = SMLT_EINVAL;
        snprintf(err, sizeof err, "no checkpoint directory: name one, or start smlt-ps with "
                                  "--checkpoint-dir");
    } else {
        rc = ps_ckpt_find(dir, id, m->has_step ? m->step : 0, &ck, report, sizeof report, &corrupt,
                          err, sizeof err);
        ps_shard_count_corrupt(srv->shard, corrupt);
        if (rc == 0)
            rc = ps_shard_restore(srv->shard, ck, err, sizeof err);
    }
    if (rc) {
        if (rc != SMLT_EAGAIN)
            log_warn("shard %u: restore refused: %s", id, err);
        ps_server__reply_error(cl, h->req_id, rc, err);
    } else {
        cancel_pulls(srv, SMLT_EAGAIN, "the shard was restored from a checkpoint; pull again");
        Smlt__Ok ok = SMLT__OK__INIT;
        ok.has_version = 1;
        ok.version = ck->step;
        ok.has_map_version = 1;
        ok.map_version = ps_shard_map(srv->shard)->version;
        rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_OK, h->req_id, &ok.base, NULL, 0, 0, NULL, NULL);
    }
    ps_ckpt_free(ck);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* Lists the checkpoints that read back valid. Each file is read whole (every CRC checked) on
 * the loop thread, as a restore does. */
static void handle_list_ckpt(struct ps_client *cl, const struct rpc_frame_hdr *h,
                             const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    Smlt__ListCheckpoints *m = (Smlt__ListCheckpoints *)rpc_msg_unpack(h, meta);
    if (!m) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed ListCheckpoints");
        return;
    }
    const char *dir = ckpt_dir_of(srv, m->dir);
    char report[2048] = "";
    uint64_t *steps = NULL;
    size_t n = 0;
    uint32_t corrupt = 0;
    uint32_t id = ps_shard_id(srv->shard);
    int rc = dir ? ps_ckpt_valid_steps(dir, id, &steps, &n, report, sizeof report, &corrupt)
                 : SMLT_EINVAL;
    ps_shard_count_corrupt(srv->shard, corrupt);
    if (rc) {
        ps_server__reply_error(cl, h->req_id, rc,
                               dir ? "cannot list the checkpoint directory"
                                   : "no checkpoint directory: name one, or start "
                                     "smlt-ps with --checkpoint-dir");
    } else {
        Smlt__CheckpointList r = SMLT__CHECKPOINT_LIST__INIT;
        r.shard = id;
        r.n_steps = n;
        r.steps = steps;
        r.has_corrupt = 1;
        r.corrupt = corrupt;
        if (report[0])
            r.report = report;
        rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_CHECKPOINT_LIST, h->req_id, &r.base, NULL, 0,
                      0, NULL, NULL);
    }
    free(steps);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* Waiting pulls learn the new map with their answer. */
void ps_server__cancel_pulls_retired(struct ps_server *srv)
{
    while (srv->pulls) {
        ps_server__reply_retired(srv->pulls->cl, srv->pulls->req_id);
        pull_wait_free(srv, srv->pulls);
    }
}

/* ---- retiring ---------------------------------------------------------------------------- */

static void handle_retire(struct ps_client *cl, const struct rpc_frame_hdr *h, const uint8_t *meta)
{
    struct ps_server *srv = cl->srv;
    Smlt__Retire *m = (Smlt__Retire *)rpc_msg_unpack(h, meta);
    char err[256] = "";
    struct part_map *map = m ? part_map_from_pb(m->map, err, sizeof err) : NULL;
    if (!map) {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, m ? err : "malformed Retire");
        if (m)
            protobuf_c_message_free_unpacked(&m->base, NULL);
        return;
    }
    part_map_free(srv->retired);
    srv->retired = map;
    log_info("shard %u: retired; clients are sent to map v%llu", srv->conf.shard,
             (unsigned long long)map->version);
    ps_server__cancel_pulls_retired(srv);
    srv->reshard_retires++;
    ps_server__reply_ok(cl, h->req_id);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* A retired shard answers every data-plane request with the map that replaced it. */
void ps_server__reply_retired(struct ps_client *cl, uint64_t req_id)
{
    Smlt__ErrorReply er = SMLT__ERROR_REPLY__INIT;
    Smlt__PartitionMap pm = SMLT__PARTITION_MAP__INIT;
    er.code = SMLT_ESTALEMAP;
    er.message = "this shard is no longer part of the job: use the new partition map";
    if (part_map_to_pb(cl->srv->retired, &pm) == 0)
        er.map = &pm;
    cl->srv->stale_map_errors++;
    rpc_conn_send(cl->conn, SMLT__MSG_TYPE__MSG_ERROR, req_id, &er.base, NULL, 0, 0, NULL, NULL);
    part_map_pb_clear(&pm);
}

/* ---- connection callbacks ---------------------------------------------------------------- */

static int on_payload(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                      void **dest, void *arg)
{
    struct ps_client *cl = arg;
    struct ps_server *srv = cl->srv;
    char err[256] = "";
    int rc = 0;
    if (srv->retired && (h->type == SMLT__MSG_TYPE__MSG_PUSH || h->type == SMLT__MSG_TYPE__MSG_SET_PARAMS)) {
        ps_server__reply_retired(cl, h->req_id);
        return SMLT_ESTALEMAP;
    }
    if (h->type == SMLT__MSG_TYPE__MSG_IMPORT) {
        if (!cl->admin && srv->admin_token) {
            ps_server__reply_error(cl, h->req_id, SMLT_EPERM, "Import needs the admin token");
            return SMLT_EPERM;
        }
        return 0; /* into the connection's scratch; ps_shard_import() copies it */
    }
    if (h->type == SMLT__MSG_TYPE__MSG_PUSH) {
        Smlt__PushReq *m = (Smlt__PushReq *)rpc_msg_unpack(h, meta);
        if (!m) {
            ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed PushReq");
            return SMLT_EPROTO;
        }
        int forwarded = srv->role == SMLT__SHARD_ROLE__SHARD_BACKUP && cl->is_primary;
        if (srv->role == SMLT__SHARD_ROLE__SHARD_BACKUP && !cl->is_primary) {
            snprintf(err, sizeof err, "shard %u here is a backup: push to its primary",
                     srv->conf.shard);
            protobuf_c_message_free_unpacked(&m->base, NULL);
            ps_server__reply_error(cl, h->req_id, SMLT_EPERM, err);
            return SMLT_EPERM;
        }
        /* A backup takes its primary's pushes under whatever map the primary checked. */
        const struct part_map *own = ps_shard_map(srv->shard);
        rc = ps_shard_push_check(srv->shard, forwarded && own ? own->version : m->map_version,
                                 m->worker, m->step, m->lo, m->hi, err, sizeof err);
        if (forwarded && (rc == SMLT_EAGAIN ||
                          (rc == SMLT_ESTEP && (ps_shard_conf(srv->shard)->mode != SMLT_SYNC_BSP ||
                                                m->step >= ps_shard_version(srv->shard))))) {
            /* Ahead of this backup's own updates (still being applied): wait for them. The
             * connection stops reading, so later pushes keep their order behind this one. */
            cl->fwd_waiting = 1;
            protobuf_c_message_free_unpacked(&m->base, NULL);
            return RPC_CONN_WAIT;
        }
        if (rc == 0 && h->raw_len != (m->hi - m->lo) * sizeof(float)) {
            snprintf(err, sizeof err, "payload of %llu bytes for %llu floats",
                     (unsigned long long)h->raw_len, (unsigned long long)(m->hi - m->lo));
            rc = SMLT_EPROTO;
        }
        if (rc == 1) {
            /* A retried push already counted: acknowledge, drop the bytes, apply nothing. */
            Smlt__PushAck ack = SMLT__PUSH_ACK__INIT;
            ack.step = m->step;
            ack.has_duplicate = ack.duplicate = 1;
            ack.has_version = ack.has_clock = 1;
            ack.version = ps_shard_version(srv->shard);
            ack.clock = ps_shard_clock(srv->shard);
            rpc_conn_send(c, SMLT__MSG_TYPE__MSG_PUSH_ACK, h->req_id, &ack.base, NULL, 0, 0, NULL,
                          NULL);
            protobuf_c_message_free_unpacked(&m->base, NULL);
            ps_shard_count_duplicate(srv->shard);
            return SMLT_ECANCELED;
        }
        protobuf_c_message_free_unpacked(&m->base, NULL);
        if (rc < 0) {
            ps_server__reply_error(cl, h->req_id, rc, err);
            return rc;
        }
    } else if (h->type == SMLT__MSG_TYPE__MSG_SET_PARAMS) {
        if (!cl->admin && srv->admin_token) {
            ps_server__reply_error(cl, h->req_id, SMLT_EPERM, "SetParams needs the admin token");
            return SMLT_EPERM;
        }
        Smlt__SetParams *m = (Smlt__SetParams *)rpc_msg_unpack(h, meta);
        if (!m) {
            ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "malformed SetParams");
            return SMLT_EPROTO;
        }
        rc = ps_shard_pull_check(srv->shard, m->map_version, m->lo, m->hi, err, sizeof err);
        if (rc == 0 && h->raw_len != (m->hi - m->lo) * sizeof(float)) {
            snprintf(err, sizeof err, "payload of %llu bytes for %llu floats",
                     (unsigned long long)h->raw_len, (unsigned long long)(m->hi - m->lo));
            rc = SMLT_EPROTO;
        }
        int whole = m->lo == ps_shard_lo(srv->shard) && m->hi == ps_shard_hi(srv->shard);
        protobuf_c_message_free_unpacked(&m->base, NULL);
        if (rc) {
            ps_server__reply_error(cl, h->req_id, rc, err);
            return rc;
        }
        if (!whole)
            return 0; /* into the connection's scratch, copied by the shard */
    } else {
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "this message type carries no payload");
        return SMLT_EPROTO;
    }
    float *buf = ps_shard_buf_get(srv->shard);
    if (!buf) {
        if (!cl->waiting_buf) {
            cl->waiting_buf = 1;
            cl->wnext = NULL;
            if (srv->buf_waiters_tail)
                srv->buf_waiters_tail->wnext = cl;
            else
                srv->buf_waiters = cl;
            srv->buf_waiters_tail = cl;
        }
        return RPC_CONN_WAIT;
    }
    cl->recv_buf = buf;
    *dest = buf;
    return 0;
}

static void on_frame(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                     void *payload, void *arg)
{
    struct ps_client *cl = arg;
    struct ps_server *srv = cl->srv;
    if (!cl->authed) {
        if (h->type == SMLT__MSG_TYPE__MSG_HELLO) {
            handle_hello(cl, h, meta);
        } else {
            srv->auth_failures++;
            ps_server__reply_error(cl, h->req_id, SMLT_EAUTH,
                                   "send Hello with the job token first");
            rpc_conn_close(c, SMLT_EAUTH);
        }
        return;
    }
    int admin_ok = cl->admin || !srv->admin_token;
    if (srv->retired && (h->type == SMLT__MSG_TYPE__MSG_PULL || h->type == SMLT__MSG_TYPE__MSG_GET_MAP ||
                         h->type == SMLT__MSG_TYPE__MSG_PUSH)) {
        if (h->type == SMLT__MSG_TYPE__MSG_GET_MAP) {
            Smlt__PartitionMap pm = SMLT__PARTITION_MAP__INIT;
            if (part_map_to_pb(srv->retired, &pm) == 0)
                rpc_conn_send(c, SMLT__MSG_TYPE__MSG_MAP, h->req_id, &pm.base, NULL, 0, 0, NULL, NULL);
            part_map_pb_clear(&pm);
        } else if (h->type == SMLT__MSG_TYPE__MSG_PULL) {
            ps_server__reply_retired(cl, h->req_id);
        }
        return;
    }
    switch (h->type) {
    case SMLT__MSG_TYPE__MSG_PING: {
        Smlt__Ping *p = (Smlt__Ping *)rpc_msg_unpack(h, meta);
        Smlt__Ping pong = SMLT__PING__INIT;
        if (p && p->has_nonce) {
            pong.has_nonce = 1;
            pong.nonce = p->nonce;
        }
        if (p)
            protobuf_c_message_free_unpacked(&p->base, NULL);
        rpc_conn_send(c, SMLT__MSG_TYPE__MSG_PONG, h->req_id, &pong.base, NULL, 0, 0, NULL, NULL);
        break;
    }
    case SMLT__MSG_TYPE__MSG_GET_MAP:
        handle_get_map(cl, h->req_id);
        break;
    case SMLT__MSG_TYPE__MSG_PUSH:
        handle_push_done(cl, h, meta);
        break;
    case SMLT__MSG_TYPE__MSG_PULL:
        handle_pull(cl, h, meta);
        break;
    case SMLT__MSG_TYPE__MSG_GET_STATS:
        handle_stats(cl, h->req_id);
        break;
    case SMLT__MSG_TYPE__MSG_CONFIGURE:
    case SMLT__MSG_TYPE__MSG_SET_PARAMS:
    case SMLT__MSG_TYPE__MSG_UPDATE_CONF:
    case SMLT__MSG_TYPE__MSG_SHUTDOWN:
    case SMLT__MSG_TYPE__MSG_RESHARD_PREPARE:
    case SMLT__MSG_TYPE__MSG_EXPORT:
    case SMLT__MSG_TYPE__MSG_IMPORT:
    case SMLT__MSG_TYPE__MSG_RETIRE:
    case SMLT__MSG_TYPE__MSG_RESTORE:
    case SMLT__MSG_TYPE__MSG_LIST_CHECKPOINTS:
    case SMLT__MSG_TYPE__MSG_SET_BACKUP:
    case SMLT__MSG_TYPE__MSG_PROMOTE:
    case SMLT__MSG_TYPE__MSG_SET_MAP:
        if (!admin_ok) {
            ps_server__reply_error(cl, h->req_id, SMLT_EPERM, "this request needs the admin token");
            break;
        }
        if (h->type == SMLT__MSG_TYPE__MSG_RESHARD_PREPARE)
            handle_prepare(cl, h, meta);
        else if (h->type == SMLT__MSG_TYPE__MSG_EXPORT)
            handle_export(cl, h, meta);
        else if (h->type == SMLT__MSG_TYPE__MSG_IMPORT)
            handle_import(cl, h, meta, payload);
        else if (h->type == SMLT__MSG_TYPE__MSG_RETIRE)
            handle_retire(cl, h, meta);
        else if (h->type == SMLT__MSG_TYPE__MSG_RESTORE)
            handle_restore(cl, h, meta);
        else if (h->type == SMLT__MSG_TYPE__MSG_LIST_CHECKPOINTS)
            handle_list_ckpt(cl, h, meta);
        else if (h->type == SMLT__MSG_TYPE__MSG_SET_BACKUP)
            ps_replica_handle_set_backup(cl, h, meta);
        else if (h->type == SMLT__MSG_TYPE__MSG_PROMOTE)
            ps_replica_handle_promote(cl, h, meta);
        else if (h->type == SMLT__MSG_TYPE__MSG_SET_MAP)
            ps_replica_handle_set_map(cl, h, meta);
        else if (h->type == SMLT__MSG_TYPE__MSG_CONFIGURE)
            handle_configure(cl, h, meta);
        else if (h->type == SMLT__MSG_TYPE__MSG_SET_PARAMS)
            handle_set_params_done(cl, h, meta, payload);
        else if (h->type == SMLT__MSG_TYPE__MSG_UPDATE_CONF)
            handle_update_conf(cl, h, meta);
        else {
            log_info("shard %u: shutdown requested by %s", srv->conf.shard, rpc_conn_peer(c));
            ps_server__reply_ok(cl, h->req_id);
            srv->shutdown = 1;
            if (srv->conf.on_shutdown) {
                srv->conf.on_shutdown(srv, srv->conf.cb_arg);
            } else {
                struct timeval tv = {0, 100000}; /* let the reply go out */
                event_base_loopexit(srv->base, &tv);
            }
        }
        break;
    case SMLT__MSG_TYPE__MSG_HELLO:
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "already authenticated");
        break;
    default:
        /* A reply type sent to a server: a confused or hostile peer. */
        srv->frames_bad++;
        ps_server__reply_error(cl, h->req_id, SMLT_EPROTO, "unexpected message type for a shard");
        rpc_conn_close(c, SMLT_EPROTO);
        break;
    }
}

static void client_free(struct ps_client *cl)
{
    struct ps_server *srv = cl->srv;
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        srv->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    struct ps_client *prev_w = NULL;
    for (struct ps_client **pp = &srv->buf_waiters; *pp; prev_w = *pp, pp = &(*pp)->wnext) {
        if (*pp == cl) {
            *pp = cl->wnext;
            if (srv->buf_waiters_tail == cl)
                srv->buf_waiters_tail = prev_w;
            break;
        }
    }
    for (struct ps_pull_wait *w = srv->pulls, *next; w; w = next) {
        next = w->next;
        if (w->cl == cl)
            pull_wait_free(srv, w);
    }
    for (struct ps_set_wait **pp = &srv->sets; *pp;) {
        if ((*pp)->cl == cl) {
            struct ps_set_wait *w = *pp;
            *pp = w->next;
            free(w);
        } else {
            pp = &(*pp)->next;
        }
    }
    if (srv->conf_client == cl)
        srv->conf_client = NULL;
    for (struct ps_fwd *f = srv->bk.head; f; f = f->next)
        if (f->cl == cl)
            f->cl = NULL;
    if (srv->bk.admin == cl)
        srv->bk.admin = NULL;
    if (srv->primary == cl) {
        log_warn("shard %u: the primary's connection closed; waiting to be promoted or "
                 "configured again", srv->conf.shard);
        srv->primary = NULL;
    }
    if (srv->freeze_client == cl)
        srv->freeze_client = NULL;
    if (cl->recv_buf)
        ps_shard_buf_put(srv->shard, cl->recv_buf);
    if (cl->hs_timer)
        event_free(cl->hs_timer);
    srv->nconns--;
    free(cl);
}

static void on_close(struct rpc_conn *c, int err, void *arg)
{
    struct ps_client *cl = arg;
    if (!cl)
        return; /* never had a client (out of memory at accept) */
    struct ps_server *srv = cl->srv;
    srv->bytes_in += rpc_conn_bytes_in(c);
    srv->bytes_out += rpc_conn_bytes_out(c);
    srv->frames_bad += rpc_conn_frames_bad(c);
    if (err == SMLT_ETLS)
        srv->tls_failures++; /* rpc_conn logged why */
    log_debug("shard %u: %s closed: %s", srv->conf.shard, rpc_conn_peer(c), smlt_strerror(err));
    client_free(cl);
}

static void on_handshake_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct ps_client *cl = arg;
    cl->srv->auth_failures++;
    log_warn("shard %u: %s sent no Hello within %d s; closing", cl->srv->conf.shard,
             rpc_conn_peer(cl->conn), SMLT_HANDSHAKE_TIMEOUT_S);
    ps_server__reply_error(cl, 0, SMLT_ETIMEDOUT, "no Hello in time");
    rpc_conn_close(cl->conn, SMLT_ETIMEDOUT);
}

static const struct rpc_conn_handler ps_handler = {
    .on_payload = on_payload,
    .on_frame = on_frame,
    .on_close = on_close,
};

/* Adds a client for conn (rate-limited by the emulated card, if any). NULL: out of memory. */
static struct ps_client *client_new(struct ps_server *srv, struct rpc_conn *conn)
{
    struct ps_client *cl = calloc(1, sizeof *cl);
    if (!cl)
        return NULL;
    cl->srv = srv;
    cl->conn = conn;
    rpc_conn_set_backpressure(conn, 1);
    if (srv->nic && rpc_conn_set_rate(conn, srv->nic) != 0)
        log_warn("shard %u: %s is not rate-limited (out of memory)", srv->conf.shard,
                 rpc_conn_peer(conn));
    srv->nconns++;
    cl->next = srv->clients;
    if (srv->clients)
        srv->clients->prev = cl;
    srv->clients = cl;
    return cl;
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct ps_server *srv = arg;
    uint32_t max = srv->conf.max_conns ? srv->conf.max_conns : SMLT_MAX_CONNS;
    struct rpc_conn *conn =
        rpc_conn_new_fd_tls(srv->base, fd, srv->conf.tls, &lim_preauth, &ps_handler, NULL);
    if (!conn)
        return;
    struct ps_client *cl = client_new(srv, conn);
    if (!cl) {
        rpc_conn_abort(conn, SMLT_ENOMEM);
        return;
    }
    rpc_conn_set_arg(conn, cl);
    if (srv->nconns > max) {
        srv->conns_refused++;
        log_warn("shard %u: connection limit %u reached; refusing %s", srv->conf.shard, max,
                 rpc_conn_peer(cl->conn));
        ps_server__reply_error(cl, 0, SMLT_EBUSY, "connection limit reached");
        rpc_conn_close(cl->conn, SMLT_EBUSY);
        return;
    }
    srv->conns_accepted++;
    cl->hs_timer = evtimer_new(srv->base, on_handshake_timeout, cl);
    struct timeval tv = {SMLT_HANDSHAKE_TIMEOUT_S, 0};
    evtimer_add(cl->hs_timer, &tv);
}

int ps_server_adopt(struct ps_server *srv, struct rpc_conn *conn, const struct rpc_frame_hdr *h,
                    const uint8_t *meta)
{
    struct ps_client *cl = client_new(srv, conn);
    if (!cl)
        return SMLT_ENOMEM;
    srv->conns_accepted++;
    rpc_conn_set_handler(conn, &ps_handler, cl);
    handle_hello(cl, h, meta);
    return 0;
}

void ps_server_brief(const struct ps_server *s, int *configured, uint64_t *version,
                     uint32_t *conns)
{
    const struct part_map *map = ps_shard_map(s->shard);
    *configured = map && ps_shard_ready(s->shard);
    *version = ps_shard_version(s->shard);
    *conns = s->nconns;
}

static void on_accept_error(struct evconnlistener *lis, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    log_warn("accept: %s", evutil_socket_error_to_string(e));
}

struct ps_server *ps_server_new(struct event_base *base, const struct ps_server_conf *conf,
                                char *err, size_t errlen)
{
    if (!conf->token || !conf->token[0] || strlen(conf->token) > SMLT_MAX_TOKEN) {
        snprintf(err, errlen, "a job token of 1..%u bytes is required", SMLT_MAX_TOKEN);
        return NULL;
    }
    if (conf->admin_token && strlen(conf->admin_token) > SMLT_MAX_TOKEN) {
        snprintf(err, errlen, "admin token longer than %u bytes", SMLT_MAX_TOKEN);
        return NULL;
    }
    struct ps_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    srv->base = base;
    srv->conf = *conf;
    if (conf->tls && !conf->tls_client) {
        snprintf(err, errlen, "a TLS shard needs a client context for its backup connections");
        free(srv);
        return NULL;
    }
    srv->conf.tls = conf->tls ? smlt_tls_ref(conf->tls) : NULL;
    srv->conf.tls_client = conf->tls_client ? smlt_tls_ref(conf->tls_client) : NULL;
    srv->token = strdup(conf->token);
    srv->admin_token = conf->admin_token && conf->admin_token[0] ? strdup(conf->admin_token) : NULL;
    srv->conf.token = srv->token;
    srv->conf.admin_token = srv->admin_token;
    srv->conf.listen = NULL;
    struct ps_shard_cbs cbs = {
        .on_advance = on_shard_advance,
        .on_buffer_free = on_shard_buffer_free,
        .on_configured = on_shard_configured,
    };
    srv->fwd_ev = event_new(base, -1, 0, ps_replica_on_progress, srv);
    if (!srv->fwd_ev) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    srv->shard = ps_shard_new(conf->shard, base, &cbs, srv);
    if (!srv->shard) {
        snprintf(err, errlen, "cannot start the shard's apply thread");
        goto fail;
    }
    if (conf->nic_bytes_per_s && !(srv->nic = rpc_rate_new(base, conf->nic_bytes_per_s))) {
        snprintf(err, errlen, "cannot set up the emulated network card");
        goto fail;
    }
    if (conf->hosted)
        return srv;
    int fd = rpc_net_listen(conf->listen ? conf->listen : "127.0.0.1:0", 1024, &srv->port);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", conf->listen ? conf->listen : "?",
                 fd == SMLT_ESYS ? strerror(errno) : smlt_strerror(fd));
        goto fail;
    }
    srv->lis = evconnlistener_new(base, on_accept, srv, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (!srv->lis) {
        close(fd);
        snprintf(err, errlen, "cannot set up the listener");
        goto fail;
    }
    evconnlistener_set_error_cb(srv->lis, on_accept_error);
    return srv;
fail:
    ps_server_free(srv);
    return NULL;
}

int ps_server_port(const struct ps_server *s)
{
    return s->port;
}

int ps_server_shutdown_requested(const struct ps_server *s)
{
    return s->shutdown;
}

void ps_server_free(struct ps_server *srv)
{
    if (!srv)
        return;
    if (srv->lis)
        evconnlistener_free(srv->lis);
    /* Abort every connection and let their deferred frees run, so referenced parameter
     * buffers are released before the shard goes. */
    ps_server_abort_conns(srv);
    while (srv->clients || srv->bk.conn)
        event_base_loop(srv->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    while (srv->bk.head) {
        struct ps_fwd *f = srv->bk.head;
        srv->bk.head = f->next;
        if (srv->shard)
            ps_shard_buf_put(srv->shard, f->buf);
        free(f);
    }
    if (srv->fwd_ev)
        event_free(srv->fwd_ev);
    while (srv->sets) {
        struct ps_set_wait *w = srv->sets;
        srv->sets = w->next;
        free(w);
    }
    ps_shard_free(srv->shard);
    rpc_rate_free(srv->nic); /* every connection is gone */
    part_map_free(srv->retired);
    free(srv->token);
    free(srv->admin_token);
    smlt_tls_free(srv->conf.tls);
    smlt_tls_free(srv->conf.tls_client);
    free(srv);
}

void ps_server_abort_conns(struct ps_server *srv)
{
    for (struct ps_client *cl = srv->clients; cl; cl = cl->next)
        rpc_conn_abort(cl->conn, SMLT_ECANCELED);
    if (srv->bk.conn)
        rpc_conn_abort(srv->bk.conn, SMLT_ECANCELED);
}

int ps_server_idle(const struct ps_server *srv)
{
    return !srv->clients && !srv->bk.conn;
}

uint32_t ps_server_connections(const struct ps_server *s)
{
    return s->nconns;
}
