/* bench_storm.c: `smlt-bench ps --storm` (see bench_storm.h): N clients x S shards connections
 * pushing whole-range gradients and pulling whole ranges for a fixed time, while the shards'
 * VmRSS is sampled and their connection counters are read.
 *
 * Why raw rpc_conn connections on one loop, not N libsmlt clients: a libsmlt call blocks on a
 * private event loop, so 256 clients would need 256 threads or processes. On 2 shared cores
 * those would measure the scheduler and the clients' own memory (each holding a model and a
 * gradient), and libsmlt's reconnects and retries would hide exactly the errors this is meant to
 * count. One thread driving N x S connection state machines speaks the same wire protocol, one
 * request in flight per connection, shares one read-only gradient and one pull sink per shard,
 * and leaves the CPU to the shards.
 *
 * Why ASP with workers = clients: every push is applied at once, so no client waits for another
 * (BSP with 256 ranks would be one long barrier driven by the slowest connection), while the
 * shard still takes a range-sized gradient buffer per push: 256 connections compete for its
 * SMLT_MAX_GRAD_BUFS buffers (the "wait for a buffer" path) and for parameter buffers pinned by
 * pull replies being written. That is the connection handling and buffering under test. */
#include "bench_storm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "rpc_conn.h"
#include "smlt.pb-c.h"
#include "smlt_admin.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_util.h"

#define STORM_CONNECT_S 15.0  /* every connection must finish its handshake within this */
#define STORM_TICK_MS 100

enum sc_state { SC_HELLO, SC_IDLE, SC_PUSH, SC_PULL };
enum storm_phase { PH_CONNECT, PH_LOAD, PH_DRAIN, PH_DONE };

struct storm;

struct sconn {
    struct storm *st;
    struct rpc_conn *conn; /* NULL once closed */
    uint32_t client, shard;
    enum sc_state state;
    uint64_t req_id, step;
    double sent_at;
    int ready;    /* handshake done */
    int expected; /* we closed it: its on_close is not an error */
};

struct storm {
    const struct bench_storm_conf *conf;
    struct bench_storm_result *res;
    struct event_base *base;
    struct event *tick;
    struct sconn *sc;
    uint32_t nsc, nready, nopen;
    uint32_t nshards;
    char addr[BENCH_STORM_MAX_SHARDS][64];
    uint64_t lo[BENCH_STORM_MAX_SHARDS], hi[BENCH_STORM_MAX_SHARDS], map_version;
    float *grad;                         /* shared, read-only: every push references it */
    float *sink[BENCH_STORM_MAX_SHARDS]; /* pull replies land here (contents unused) */
    enum storm_phase phase;
    double t_connect, t0, t_drain;
    atomic_int loaded;   /* set with t0 once the load starts */
    atomic_int finished; /* the load thread is done */
};

static const struct rpc_limits storm_lim = {SMLT_MAX_META_LEN, SMLT_MAX_PAYLOAD};

static void count_err(struct storm *st, int kind)
{
    st->res->errors[kind]++;
}

static size_t range_bytes(const struct storm *st, uint32_t shard)
{
    return (size_t)(st->hi[shard] - st->lo[shard]) * sizeof(float);
}

/* Closes a connection we have given up on (or are done with); on_close will not count it. */
static void sc_drop(struct sconn *sc)
{
    if (sc->conn && !sc->expected) {
        sc->expected = 1;
        rpc_conn_abort(sc->conn, SMLT_ECANCELED);
    }
}

/* Sends the next request: a push after a pull (or first), a pull after a push. */
static void sc_next(struct sconn *sc)
{
    struct storm *st = sc->st;
    if (!sc->conn || sc->expected)
        return;
    if (st->phase != PH_LOAD) {
        sc->state = SC_IDLE;
        return;
    }
    int rc;
    sc->req_id++;
    sc->sent_at = smlt_now_mono();
    if (sc->state != SC_PUSH) {
        Smlt__PushReq m = SMLT__PUSH_REQ__INIT;
        m.map_version = st->map_version;
        m.worker = sc->client;
        m.step = ++sc->step;
        m.lo = st->lo[sc->shard];
        m.hi = st->hi[sc->shard];
        sc->state = SC_PUSH;
        rc = rpc_conn_send(sc->conn, SMLT__MSG_TYPE__MSG_PUSH, sc->req_id, &m.base, st->grad,
                           range_bytes(st, sc->shard), RPC_SEND_REF, NULL, NULL);
    } else {
        Smlt__PullReq m = SMLT__PULL_REQ__INIT;
        m.map_version = st->map_version;
        m.lo = st->lo[sc->shard];
        m.hi = st->hi[sc->shard];
        m.has_may_compress = 1;
        m.may_compress = 0;
        sc->state = SC_PULL;
        rc = rpc_conn_send(sc->conn, SMLT__MSG_TYPE__MSG_PULL, sc->req_id, &m.base, NULL, 0, 0,
                           NULL, NULL);
    }
    if (rc) {
        count_err(st, STORM_ERR_CLOSED);
        sc_drop(sc);
    }
}

static int on_payload(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                      void **dest, void *arg)
{
    struct sconn *sc = arg;
    struct storm *st = sc->st;
    if (h->type == SMLT__MSG_TYPE__MSG_PULL_REPLY && sc->state == SC_PULL &&
        h->req_id == sc->req_id && h->raw_len == range_bytes(st, sc->shard)) {
        *dest = st->sink[sc->shard];
        return 0;
    }
    log_warn("storm: client %u shard %u: unexpected payload (type %u, %llu bytes)", sc->client,
             sc->shard, h->type, (unsigned long long)h->raw_len);
    count_err(st, STORM_ERR_PROTO);
    sc_drop(sc);
    return SMLT_EPROTO;
}

static void on_error_reply(struct sconn *sc, const struct rpc_frame_hdr *h, const uint8_t *meta)
{
    struct storm *st = sc->st;
    Smlt__ErrorReply *er = (Smlt__ErrorReply *)rpc_msg_unpack(h, meta);
    int code = er ? er->code : SMLT_EPROTO;
    int slot = code < 0 && code > -63 ? -code : 63;
    st->res->reply_codes[slot]++;
    count_err(st, sc->ready ? STORM_ERR_REPLY : STORM_ERR_CONNECT);
    /* One line per kind is enough to see what went wrong; the counts say how often. */
    if (st->res->reply_codes[slot] == 1)
        log_warn("storm: client %u shard %u: %s: %s", sc->client, sc->shard, smlt_strerror(code),
                 er && er->message ? er->message : "");
    if (er)
        protobuf_c_message_free_unpacked(&er->base, NULL);
}

static void on_frame(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                     void *payload, void *arg)
{
    struct sconn *sc = arg;
    struct storm *st = sc->st;
    if (h->req_id != sc->req_id || sc->state == SC_IDLE) {
        count_err(st, STORM_ERR_PROTO);
        sc_drop(sc);
        return;
    }
    if (h->type == SMLT__MSG_TYPE__MSG_ERROR) {
        on_error_reply(sc, h, meta);
        if (!sc->ready)
            sc_drop(sc);
        else
            sc_next(sc);
        return;
    }
    switch (sc->state) {
    case SC_HELLO: {
        Smlt__HelloOk *m = h->type == SMLT__MSG_TYPE__MSG_HELLO_OK
                               ? (Smlt__HelloOk *)rpc_msg_unpack(h, meta)
                               : NULL;
        int ok = m && m->shard == sc->shard;
        if (m)
            protobuf_c_message_free_unpacked(&m->base, NULL);
        if (!ok) {
            count_err(st, STORM_ERR_CONNECT);
            sc_drop(sc);
            return;
        }
        sc->ready = 1;
        sc->state = SC_IDLE;
        st->nready++;
        return;
    }
    case SC_PUSH: {
        Smlt__PushAck *m = h->type == SMLT__MSG_TYPE__MSG_PUSH_ACK
                               ? (Smlt__PushAck *)rpc_msg_unpack(h, meta)
                               : NULL;
        int ok = m && m->step == sc->step && !(m->has_duplicate && m->duplicate);
        if (m)
            protobuf_c_message_free_unpacked(&m->base, NULL);
        if (!ok) {
            count_err(st, STORM_ERR_PROTO);
            sc_drop(sc);
            return;
        }
        st->res->pushes++;
        st->res->bytes += range_bytes(st, sc->shard);
        break;
    }
    case SC_PULL:
        if (h->type != SMLT__MSG_TYPE__MSG_PULL_REPLY || !payload) {
            count_err(st, STORM_ERR_PROTO);
            sc_drop(sc);
            return;
        }
        st->res->pulls++;
        st->res->bytes += range_bytes(st, sc->shard);
        break;
    default:
        break;
    }
    sc_next(sc);
}

static void on_close(struct rpc_conn *c, int err, void *arg)
{
    struct sconn *sc = arg;
    struct storm *st = sc->st;
    sc->conn = NULL;
    st->nopen--;
    if (!sc->expected) {
        log_warn("storm: client %u shard %u: connection lost: %s", sc->client, sc->shard,
                 smlt_strerror(err));
        count_err(st, sc->ready ? STORM_ERR_CLOSED : STORM_ERR_CONNECT);
    }
    if (st->nopen == 0 && st->phase == PH_DONE)
        event_base_loopbreak(st->base);
}

static const struct rpc_conn_handler storm_handler = {
    .on_payload = on_payload,
    .on_frame = on_frame,
    .on_close = on_close,
};

static void storm_finish(struct storm *st)
{
    st->phase = PH_DONE;
    for (uint32_t i = 0; i < st->nsc; i++)
        sc_drop(&st->sc[i]);
    if (st->nopen == 0)
        event_base_loopbreak(st->base);
}

/* The storm's clock: starts the load once every connection is ready, ends it on time, enforces
 * the deadlines of the connect phase, of every request and of the drain. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct storm *st = arg;
    double now = smlt_now_mono();
    double tmo = st->conf->req_timeout_s ? st->conf->req_timeout_s : 30;
    switch (st->phase) {
    case PH_CONNECT:
        if (st->nready < st->nopen && now - st->t_connect < STORM_CONNECT_S)
            return;
        for (uint32_t i = 0; i < st->nsc; i++) {
            struct sconn *sc = &st->sc[i];
            if (sc->conn && !sc->ready) {
                count_err(st, STORM_ERR_CONNECT);
                sc_drop(sc);
            }
        }
        st->phase = PH_LOAD;
        st->t0 = now;
        atomic_store(&st->loaded, 1);
        for (uint32_t i = 0; i < st->nsc; i++)
            if (st->sc[i].ready)
                sc_next(&st->sc[i]);
        return;
    case PH_LOAD:
    case PH_DRAIN: {
        uint32_t busy = 0;
        for (uint32_t i = 0; i < st->nsc; i++) {
            struct sconn *sc = &st->sc[i];
            if (!sc->conn || sc->expected || sc->state == SC_IDLE)
                continue;
            if (now - sc->sent_at > tmo) {
                log_warn("storm: client %u shard %u: no reply in %.0f s", sc->client, sc->shard,
                         tmo);
                count_err(st, STORM_ERR_TIMEOUT);
                sc_drop(sc);
                continue;
            }
            busy++;
        }
        if (st->phase == PH_LOAD && now - st->t0 >= st->conf->seconds) {
            st->phase = PH_DRAIN;
            st->t_drain = now;
            st->res->seconds = now - st->t0;
        }
        if (st->phase == PH_DRAIN && busy == 0)
            storm_finish(st);
        return;
    }
    case PH_DONE:
        /* Aborted connections are freed from deferred events; this only guards the loop. */
        if (now - st->t_drain > tmo + 10)
            event_base_loopbreak(st->base);
        return;
    }
}

static void *storm_thread(void *arg)
{
    struct storm *st = arg;
    st->t_connect = smlt_now_mono();
    for (uint32_t i = 0; i < st->nsc; i++) {
        struct sconn *sc = &st->sc[i];
        int err = 0;
        sc->conn = rpc_conn_connect(st->base, st->addr[sc->shard], &storm_lim, &storm_handler, sc,
                                    &err);
        if (!sc->conn) {
            count_err(st, STORM_ERR_CONNECT);
            continue;
        }
        st->nopen++;
        Smlt__Hello hello = SMLT__HELLO__INIT;
        hello.proto_version = SMLT_PROTO_VERSION;
        hello.token.data = (uint8_t *)st->conf->token;
        hello.token.len = strlen(st->conf->token);
        hello.has_worker = 1;
        hello.worker = sc->client;
        hello.client = "smlt-bench storm";
        sc->req_id = 1;
        sc->state = SC_HELLO;
        sc->sent_at = st->t_connect;
        if (rpc_conn_send(sc->conn, SMLT__MSG_TYPE__MSG_HELLO, sc->req_id, &hello.base, NULL, 0, 0,
                          NULL, NULL) != 0) {
            count_err(st, STORM_ERR_CONNECT);
            sc_drop(sc);
        }
    }
    struct timeval tv = {0, STORM_TICK_MS * 1000};
    event_add(st->tick, &tv);
    event_base_dispatch(st->base);
    /* Freeing the base runs libevent's pending finalizers: that is when the sockets of the
     * aborted connections are closed, so the shards see them go now, not at our exit. */
    event_free(st->tick);
    st->tick = NULL;
    event_base_free(st->base);
    st->base = NULL;
    if (st->phase == PH_CONNECT)
        atomic_store(&st->loaded, 1);
    atomic_store(&st->finished, 1);
    return NULL;
}

/* ---- the monitor ------------------------------------------------------------------------- */

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* Sleeps until the monotonic time t or until the load thread has finished. */
static void sleep_until(const struct storm *st, double t)
{
    while (!atomic_load(&st->finished)) {
        double left = t - smlt_now_mono();
        if (left <= 0)
            return;
        if (left > 0.05)
            left = 0.05;
        struct timespec ts = {0, (long)(left * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static void sample_rss(struct storm *st, int k)
{
    for (uint32_t i = 0; i < st->nshards; i++)
        st->res->shard[i].rss_kb[k] = st->conf->pids ? rss_kb(st->conf->pids[i]) : -1;
}

/* Reads every shard's stats; with after, the counters that matter once the load is over. */
static void read_stats(struct storm *st, struct smlt_client *admin, int after)
{
    for (uint32_t i = 0; i < st->nshards; i++) {
        struct smlt_shard_stats ss;
        struct bench_storm_shard *s = &st->res->shard[i];
        if (smlt_shard_stats(admin, i, &ss) != 0) {
            log_warn("storm: stats of shard %u: %s", i, smlt_client_errmsg(admin));
            count_err(st, STORM_ERR_STATS);
            continue;
        }
        if (!after) {
            s->conns_load = ss.connections;
            continue;
        }
        s->conns_after = ss.connections;
        s->frames_bad = ss.frames_bad;
        s->auth_failures = ss.auth_failures;
        s->pushes_counted = ss.pushes_counted;
        s->pulls_served = ss.pulls_served;
    }
}

static int parse_addrs(struct storm *st, const char *addrs)
{
    const char *p = addrs;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (st->nshards >= BENCH_STORM_MAX_SHARDS || n >= sizeof st->addr[0] ||
            strncmp(p, "127.0.0.1:", 10) != 0) {
            log_error("storm: want up to %u shards at 127.0.0.1:PORT, got \"%s\"",
                      BENCH_STORM_MAX_SHARDS, addrs);
            return SMLT_EINVAL;
        }
        memcpy(st->addr[st->nshards], p, n);
        st->addr[st->nshards++][n] = '\0';
        p = e ? e + 1 : p + n;
    }
    return st->nshards ? 0 : SMLT_EINVAL;
}

static float *random_floats(size_t n)
{
    float *p = malloc(n * sizeof *p);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; p && i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (float)(int32_t)(x >> 32) * (1.0f / 2147483648.0f);
    }
    return p;
}

int bench_storm_run(const struct bench_storm_conf *conf, struct bench_storm_result *res)
{
    memset(res, 0, sizeof *res);
    if (!conf->addrs || !conf->token || conf->clients < 1 ||
        conf->clients > BENCH_STORM_MAX_CLIENTS || !(conf->seconds > 0) || conf->floats < 16 ||
        conf->floats > ((uint64_t)1 << 28))
        return SMLT_EINVAL;
    struct storm *st = calloc(1, sizeof *st);
    if (!st)
        return SMLT_ENOMEM;
    st->conf = conf;
    st->res = res;
    for (uint32_t i = 0; i < BENCH_STORM_MAX_SHARDS; i++)
        for (int k = 0; k < STORM_RSS_SAMPLES; k++)
            res->shard[i].rss_kb[k] = -1;
    struct smlt_client *admin = NULL;
    pthread_t th;
    int started = 0;
    int rc = parse_addrs(st, conf->addrs);
    if (rc)
        goto out;
    res->nshards = st->nshards;

    /* The job: ASP, one rank per client, plain SGD with a tiny rate so the model stays bounded. */
    uint64_t shape[1] = {conf->floats};
    struct smlt_tensor_def t = {.name = "storm", .ndims = 1, .shape = shape, .init = SMLT_INIT_ZERO};
    struct smlt_job_conf jc;
    smlt_job_conf_default(&jc);
    jc.job = "storm";
    jc.sync = SMLT_SYNC_ASP;
    jc.workers = conf->clients;
    jc.lr = 1e-9f;
    struct smlt_client_opts co = {.token = conf->admin_token ? conf->admin_token : conf->token,
                                  .admin = 1,
                                  .timeout_ms = 60000};
    char err[256];
    rc = smlt_job_setup(&admin, conf->addrs, &co, &t, 1, &jc, err, sizeof err);
    if (rc) {
        log_error("storm: job setup on %s: %s", conf->addrs, err);
        goto out;
    }
    st->map_version = smlt_client_map_version(admin);
    size_t maxr = 0;
    for (uint32_t i = 0; i < st->nshards; i++) {
        struct smlt_shard_stats ss;
        if ((rc = smlt_shard_stats(admin, i, &ss)) != 0 || ss.shard != i || ss.hi <= ss.lo) {
            log_error("storm: shard %u: no usable stats: %s", i, smlt_client_errmsg(admin));
            rc = rc ? rc : SMLT_EPROTO;
            goto out;
        }
        st->lo[i] = ss.lo;
        st->hi[i] = ss.hi;
        if (range_bytes(st, i) > maxr)
            maxr = range_bytes(st, i);
    }
    st->grad = random_floats(maxr / sizeof(float));
    for (uint32_t i = 0; i < st->nshards; i++)
        st->sink[i] = malloc(range_bytes(st, i));
    st->nsc = conf->clients * st->nshards;
    st->sc = calloc(st->nsc, sizeof *st->sc);
    st->base = event_base_new();
    st->tick = st->base ? event_new(st->base, -1, EV_PERSIST, on_tick, st) : NULL;
    rc = SMLT_ENOMEM;
    if (!st->grad || !st->sc || !st->tick)
        goto out;
    for (uint32_t i = 0; i < st->nshards; i++)
        if (!st->sink[i])
            goto out;
    for (uint32_t i = 0; i < st->nsc; i++)
        st->sc[i] = (struct sconn){.st = st, .client = i / st->nshards, .shard = i % st->nshards};
    res->conns = st->nsc;
    if (pthread_create(&th, NULL, storm_thread, st) != 0) {
        rc = SMLT_ESYS;
        goto out;
    }
    started = 1;
    rc = 0;

    /* Samples: after the first second of load, at the middle, just before the end (under load;
     * connection counters then too), then the counters once the storm's connections are gone. */
    while (!atomic_load(&st->loaded)) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    double t0 = smlt_now_mono(), T = conf->seconds;
    double at[STORM_RSS_SAMPLES] = {T < 2 ? T / 4 : 1, T / 2, T - (T < 2 ? T / 8 : 0.5)};
    for (int k = 0; k < STORM_RSS_SAMPLES && !atomic_load(&st->finished); k++) {
        sleep_until(st, t0 + at[k]);
        sample_rss(st, k);
    }
    if (!atomic_load(&st->finished))
        read_stats(st, admin, 0);
    pthread_join(th, NULL);
    started = 0;
    /* The shards see the storm's connections close as they read EOF: give them a moment. */
    for (int tries = 0; tries < 40; tries++) {
        read_stats(st, admin, 1);
        uint32_t extra = 0;
        for (uint32_t i = 0; i < st->nshards; i++)
            extra += res->shard[i].conns_after > 1;
        if (!extra || res->errors[STORM_ERR_STATS])
            break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (res->seconds == 0)
        res->seconds = smlt_now_mono() - t0;
out:
    if (started)
        pthread_join(th, NULL);
    smlt_client_close(admin);
    if (st->tick)
        event_free(st->tick);
    if (st->base)
        event_base_free(st->base);
    free(st->sc);
    free(st->grad);
    for (uint32_t i = 0; i < BENCH_STORM_MAX_SHARDS; i++)
        free(st->sink[i]);
    free(st);
    return rc;
}

uint64_t bench_storm_errors(const struct bench_storm_result *res)
{
    uint64_t n = 0;
    for (int k = 0; k < STORM_ERR_KINDS; k++)
        n += res->errors[k];
    return n;
}

int bench_storm_rss_grew(const struct bench_storm_result *res, uint32_t i)
{
    const struct bench_storm_shard *s = &res->shard[i];
    long first = s->rss_kb[0], peak = -1;
    for (int k = 1; k < STORM_RSS_SAMPLES; k++)
        if (s->rss_kb[k] > peak)
            peak = s->rss_kb[k];
    if (first < 0 || peak < 0)
        return 0;
    long bound = (long)STORM_RSS_GROWTH_MB * 1024;
    if (first * STORM_RSS_GROWTH_PCT / 100 > bound)
        bound = first * STORM_RSS_GROWTH_PCT / 100;
    return peak - first > bound;
}

const char *bench_storm_err_name(int kind)
{
    static const char *const names[STORM_ERR_KINDS] = {"connect", "closed", "reply", "proto",
                                                       "timeout", "stats"};
    return kind >= 0 && kind < STORM_ERR_KINDS ? names[kind] : "?";
}

static double mb(long kb)
{
    return kb < 0 ? -1 : kb / 1024.0;
}

void bench_storm_print(const struct bench_storm_conf *conf, const struct bench_storm_result *res,
                       int json)
{
    uint64_t req = res->pushes + res->pulls;
    double secs = res->seconds > 0 ? res->seconds : 1;
    if (json) {
        printf("{\"case\":\"storm\",\"clients\":%u,\"shards\":%u,\"connections\":%u,\"floats\":%llu,"
               "\"sync\":\"asp\",\"seconds\":%.3f,\"requests\":%llu,\"pushes\":%llu,\"pulls\":%llu,"
               "\"requests_per_s\":%.1f,\"gb_per_s\":%.3f,\"errors\":%llu,\"errors_by_kind\":{",
               conf->clients, res->nshards, res->conns, (unsigned long long)conf->floats, secs,
               (unsigned long long)req, (unsigned long long)res->pushes,
               (unsigned long long)res->pulls, req / secs, res->bytes / secs / 1e9,
               (unsigned long long)bench_storm_errors(res));
        for (int k = 0; k < STORM_ERR_KINDS; k++)
            printf("%s\"%s\":%llu", k ? "," : "", bench_storm_err_name(k),
                   (unsigned long long)res->errors[k]);
        printf("},\"reply_codes\":{");
        int first = 1;
        for (int i = 0; i < 64; i++)
            if (res->reply_codes[i]) {
                printf("%s\"%d\":%llu", first ? "" : ",", i == 63 ? 0 : -i,
                       (unsigned long long)res->reply_codes[i]);
                first = 0;
            }
        printf("},\"rss_bound_mb\":%d,\"rss_bound_pct\":%d,\"shard\":[", STORM_RSS_GROWTH_MB,
               STORM_RSS_GROWTH_PCT);
        for (uint32_t i = 0; i < res->nshards; i++) {
            const struct bench_storm_shard *s = &res->shard[i];
            printf("%s{\"shard\":%u,\"pid\":%d,\"rss_mb_start\":%.1f,\"rss_mb_mid\":%.1f,"
                   "\"rss_mb_end\":%.1f,\"rss_grew\":%s,\"connections_load\":%u,"
                   "\"connections_after\":%u,\"frames_bad\":%llu,\"auth_failures\":%llu,"
                   "\"pushes_counted\":%llu,\"pulls_served\":%llu}",
                   i ? "," : "", i, conf->pids ? (int)conf->pids[i] : 0, mb(s->rss_kb[0]),
                   mb(s->rss_kb[1]), mb(s->rss_kb[2]), bench_storm_rss_grew(res, i) ? "true" : "false",
                   s->conns_load, s->conns_after, (unsigned long long)s->frames_bad,
                   (unsigned long long)s->auth_failures, (unsigned long long)s->pushes_counted,
                   (unsigned long long)s->pulls_served);
        }
        printf("]}\n");
        fflush(stdout);
        return;
    }
    printf("storm: %u clients x %u shards = %u connections, ASP, %llu floats (%.1f MB), %.1f s\n",
           conf->clients, res->nshards, res->conns, (unsigned long long)conf->floats,
           conf->floats * 4 / 1e6, secs);
    printf("  requests %llu (pushes %llu, pulls %llu): %.0f requests/s, %.2f GB/s of payload\n",
           (unsigned long long)req, (unsigned long long)res->pushes,
           (unsigned long long)res->pulls, req / secs, res->bytes / secs / 1e9);
    printf("  errors %llu:", (unsigned long long)bench_storm_errors(res));
    for (int k = 0; k < STORM_ERR_KINDS; k++)
        printf(" %s %llu", bench_storm_err_name(k), (unsigned long long)res->errors[k]);
    for (int i = 0; i < 64; i++)
        if (res->reply_codes[i])
            printf(" [reply %s: %llu]", i == 63 ? "other" : smlt_strerror(-i),
                   (unsigned long long)res->reply_codes[i]);
    printf("\n");
    for (uint32_t i = 0; i < res->nshards; i++) {
        const struct bench_storm_shard *s = &res->shard[i];
        printf("  shard %u: RSS start %.1f MB, mid %.1f MB, end %.1f MB (%s; bound +max(%d MB, "
               "%d%%)) | connections %u under load, %u after | bad frames %llu, auth failures "
               "%llu | pushes counted %llu, pulls served %llu\n",
               i, mb(s->rss_kb[0]), mb(s->rss_kb[1]), mb(s->rss_kb[2]),
               bench_storm_rss_grew(res, i) ? "GREW" : "flat", STORM_RSS_GROWTH_MB,
               STORM_RSS_GROWTH_PCT, s->conns_load, s->conns_after,
               (unsigned long long)s->frames_bad, (unsigned long long)s->auth_failures,
               (unsigned long long)s->pushes_counted, (unsigned long long)s->pulls_served);
    }
    fflush(stdout);
}
