/* test_rpc_conn.c: Check suite for proto/rpc_conn.c (frames over a libevent connection).
 *
 * Two rpc_conns on one event_base talk over a socketpair(AF_UNIX) or a loopback TCP pair; for
 * hostile input one end is a raw fd the test writes bytes to and reads the ErrorReply from.
 * Loops run until a condition holds, under a 20 s watchdog that only guards against hangs (no
 * timing is asserted). "Nothing happened" is checked after the sender's output has drained into
 * the socket and the loop has run a few non-blocking rounds. SIGPIPE is ignored, as the daemons
 * do. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <event2/event.h>

#include "rpc_conn.h"
#include "rpc_frame.h"
#include "smlt.pb-c.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_util.h"

static const struct rpc_limits lim_full = {SMLT_MAX_META_LEN, SMLT_MAX_PAYLOAD};
static const struct rpc_limits lim_preauth = {SMLT_MAX_META_PREAUTH, SMLT_MAX_PAYLOAD_PREAUTH};

/* A check for hot loops: Check's ck_assert_* record a checkpoint per call (a pipe write each),
 * which makes element-wise asserts over large arrays slow; this one costs nothing on success. */
#define REQUIRE(expr, ...)                                                                         \
    do {                                                                                           \
        if (!(expr))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

/* ---- loop helpers ----------------------------------------------------------------------------- */

static int g_timed_out;

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    g_timed_out = 1;
}

#define WAIT_UNTIL(base, cond) WAIT_UNTIL_S(base, cond, 20)
#define WAIT_UNTIL_S(base, cond, secs)                                                             \
    do {                                                                                           \
        struct event *wd_ = evtimer_new(base, on_watchdog, NULL);                                  \
        struct timeval tv_ = {secs, 0};                                                            \
        g_timed_out = 0;                                                                           \
        evtimer_add(wd_, &tv_);                                                                    \
        while (!(cond) && !g_timed_out)                                                            \
            event_base_loop(base, EVLOOP_ONCE);                                                    \
        event_free(wd_);                                                                           \
        ck_assert_msg(!g_timed_out, "timed out waiting for %s", #cond);                            \
    } while (0)

static void spin(struct event_base *base, int rounds)
{
    for (int i = 0; i < rounds; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

/* ---- a recording handler ---------------------------------------------------------------------- */

struct rec {
    uint8_t type;
    uint16_t flags;
    uint64_t req_id, payload_len, raw_len;
    uint32_t meta_len;
    uint8_t *meta;
    uint8_t *payload; /* a copy */
    void *payload_ptr;
};

enum pmode { P_SCRATCH, P_DEST, P_WAIT_THEN_DEST, P_REJECT_ODD };

struct peer {
    struct rpc_conn *c;
    enum pmode mode;
    void *dest;
    size_t dest_cap;
    int waits; /* RPC_CONN_WAIT answers given */
    int payload_calls;
    uint64_t last_payload_req;
    struct rec *recs;
    int nrecs, cap;
    int closes;
    int close_err;
    uint64_t bad_at_close;
    int close_on_frame;
    int pause_on_frame;
};

static int h_payload(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                     void **dest, void *arg)
{
    struct peer *p = arg;
    p->payload_calls++;
    p->last_payload_req = h->req_id;
    ck_assert_ptr_eq(c, p->c);
    ck_assert_uint_gt(h->raw_len, 0);
    switch (p->mode) {
    case P_SCRATCH:
        return 0;
    case P_DEST:
        ck_assert_uint_le(h->raw_len, p->dest_cap);
        *dest = p->dest;
        return 0;
    case P_WAIT_THEN_DEST:
        if (p->waits == 0) {
            p->waits = 1;
            return RPC_CONN_WAIT;
        }
        *dest = p->dest;
        return 0;
    case P_REJECT_ODD:
        return h->req_id % 2 ? SMLT_EINVAL : 0;
    }
    return 0;
}

static void h_frame(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                    void *payload, void *arg)
{
    struct peer *p = arg;
    if (p->nrecs == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->recs = realloc(p->recs, (size_t)p->cap * sizeof *p->recs);
    }
    struct rec *r = &p->recs[p->nrecs++];
    memset(r, 0, sizeof *r);
    r->type = h->type;
    r->flags = h->flags;
    r->req_id = h->req_id;
    r->payload_len = h->payload_len;
    r->raw_len = h->raw_len;
    r->meta_len = h->meta_len;
    r->meta = malloc(h->meta_len + 1);
    memcpy(r->meta, meta, h->meta_len);
    r->payload_ptr = payload;
    if (payload) {
        r->payload = malloc(h->raw_len);
        memcpy(r->payload, payload, h->raw_len);
    } else {
        ck_assert_uint_eq(h->raw_len, 0);
    }
    if (p->close_on_frame)
        rpc_conn_close(c, SMLT_ECANCELED);
    if (p->pause_on_frame) {
        p->pause_on_frame = 0;
        rpc_conn_pause(c);
    }
}

static void h_close(struct rpc_conn *c, int err, void *arg)
{
    struct peer *p = arg;
    p->closes++;
    p->close_err = err;
    p->bad_at_close = rpc_conn_frames_bad(c);
    p->c = NULL;
}

static const struct rpc_conn_handler handler = {h_payload, h_frame, h_close, NULL};
static const struct rpc_conn_handler handler_nopayload = {NULL, h_frame, h_close, NULL};

static void peer_free(struct peer *p)
{
    for (int i = 0; i < p->nrecs; i++) {
        free(p->recs[i].meta);
        free(p->recs[i].payload);
    }
    free(p->recs);
    memset(p, 0, sizeof *p);
}

static void pair_unix(int fds[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
}

static void pair_tcp(int fds[2])
{
    int port = 0;
    int l = rpc_net_listen("127.0.0.1:0", 4, &port);
    ck_assert_int_ge(l, 0);
    ck_assert_int_gt(port, 0);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(s, (struct sockaddr *)&sa, sizeof sa), 0);
    struct pollfd pfd = {.fd = l, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
    int a = accept(l, NULL, NULL);
    ck_assert_int_ge(a, 0);
    close(l);
    fds[0] = s;
    fds[1] = a;
}

/* Connects two rpc_conns over fds; a is the sender, b the receiver (both record). */
static void conns_new(struct event_base *base, int fds[2], struct peer *a, struct peer *b,
                      const struct rpc_conn_handler *hb)
{
    a->c = rpc_conn_new_fd(base, fds[0], &lim_full, &handler, a);
    b->c = rpc_conn_new_fd(base, fds[1], &lim_full, hb, b);
    ck_assert_ptr_nonnull(a->c);
    ck_assert_ptr_nonnull(b->c);
}

static void conns_close(struct event_base *base, struct peer *a, struct peer *b)
{
    if (a->c)
        rpc_conn_close(a->c, SMLT_ECLOSED);
    if (b->c)
        rpc_conn_close(b->c, SMLT_ECLOSED);
    WAIT_UNTIL(base, a->closes && b->closes);
    spin(base, 3);
    ck_assert_int_eq(a->closes, 1);
    ck_assert_int_eq(b->closes, 1);
}

static uint8_t *pattern(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 23);
    }
    return p;
}

/* Mostly zero floats: compressible. */
static float *sparse(size_t n)
{
    float *f = calloc(n, sizeof *f);
    for (size_t i = 0; i < n; i += 37)
        f[i] = (float)i * 0.25f;
    return f;
}

/* release callback bookkeeping */
struct rel {
    int calls;
    const void *data;
    size_t len;
};

static void on_release(const void *data, size_t len, void *arg)
{
    struct rel *r = arg;
    r->calls++;
    r->data = data;
    r->len = len;
}

/* Packs a whole frame into a malloc'd buffer (for raw writes). */
static uint8_t *frame_build(uint8_t type, uint16_t flags, uint64_t req, const ProtobufCMessage *meta,
                            const void *payload, uint64_t plen, uint64_t rlen, size_t *len)
{
    size_t ml = meta ? protobuf_c_message_get_packed_size(meta) : 0;
    *len = SMLT_FRAME_HDR_LEN + ml + (size_t)plen;
    uint8_t *b = malloc(*len);
    struct rpc_frame_hdr h = {.version = SMLT_PROTO_VERSION,
                              .type = type,
                              .flags = flags,
                              .req_id = req,
                              .meta_len = (uint32_t)ml,
                              .payload_len = plen,
                              .raw_len = rlen};
    rpc_frame_hdr_encode(b, &h);
    if (ml)
        protobuf_c_message_pack(meta, b + SMLT_FRAME_HDR_LEN);
    if (plen)
        memcpy(b + SMLT_FRAME_HDR_LEN + ml, payload, (size_t)plen);
    return b;
}

/* Writes all of buf to a non-blocking raw fd, running the loop while the socket is full. Stops
 * early (returns the bytes written) if the other side closed. */
static size_t raw_write(struct event_base *base, int fd, const void *buf, size_t len)
{
    size_t off = 0;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int rounds = 0;
    while (off < len) {
        ssize_t n = send(fd, (const uint8_t *)buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            break;
        event_base_loop(base, EVLOOP_NONBLOCK);
        ck_assert_msg(++rounds < 10000000, "raw write stuck");
    }
    fcntl(fd, F_SETFL, fl);
    return off;
}

/* Reads everything until EOF (or reset) from a raw fd into a malloc'd buffer. */
static uint8_t *raw_read_all(int fd, size_t *len, int *reset)
{
    size_t cap = 4096, n = 0;
    uint8_t *b = malloc(cap);
    *reset = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ck_assert_msg(poll(&pfd, 1, 20000) == 1, "raw fd: nothing to read");
        if (n == cap)
            b = realloc(b, cap *= 2);
        ssize_t r = recv(fd, b + n, cap - n, 0);
        if (r == 0)
            break;
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            *reset = errno;
            break;
        }
        n += (size_t)r;
    }
    *len = n;
    return b;
}

/* Parses what a closed connection sent back: exactly one frame, an ErrorReply. */
static Smlt__ErrorReply *expect_error_reply(int fd, uint64_t *req_id)
{
    size_t len;
    int reset;
    uint8_t *b = raw_read_all(fd, &len, &reset);
    struct rpc_frame f;
    size_t used = 0;
    enum rpc_frame_status st = rpc_frame_parse(b, len, &lim_full, &f, &used, NULL);
    ck_assert_msg(st == RPC_FRAME_COMPLETE, "no complete frame back (%zu bytes, %s, errno %d)",
                  len, rpc_frame_status_str(st), reset);
    ck_assert_uint_eq(f.hdr.type, SMLT__MSG_TYPE__MSG_ERROR);
    ck_assert_uint_eq(f.hdr.payload_len, 0);
    ck_assert_msg(used == len, "%zu bytes after the error reply", len - used);
    Smlt__ErrorReply *er = smlt__error_reply__unpack(NULL, f.hdr.meta_len, f.meta);
    ck_assert_ptr_nonnull(er);
    *req_id = f.hdr.req_id;
    free(b);
    return er;
}

/* ---- frames ----------------------------------------------------------------------------------- */

static void basic_exchange(int tcp)
{
    struct event_base *base = event_base_new();
    int fds[2];
    if (tcp)
        pair_tcp(fds);
    else
        pair_unix(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler);
    if (tcp) {
        const char *peer = rpc_conn_peer(b.c);
        ck_assert_msg(!strncmp(peer, "127.0.0.1:", 10), "peer \"%s\"", peer);
    }
    ck_assert_ptr_eq(rpc_conn_arg(b.c), &b);
    Smlt__Ping ping = SMLT__PING__INIT;
    ping.has_nonce = 1;
    ping.nonce = 0x1122334455ull;
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PING, 1, &ping.base, NULL, 0, 0, NULL,
                                   NULL),
                     0);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_GET_MAP, 2, NULL, NULL, 0, 0, NULL,
                                   NULL),
                     0);
    Smlt__PushReq pr = SMLT__PUSH_REQ__INIT;
    pr.map_version = 3;
    pr.worker = 1;
    pr.step = 8;
    pr.lo = 0;
    pr.hi = 250;
    uint8_t *small = pattern(1000, 1);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 3, &pr.base, small, 1000,
                                   RPC_SEND_COPY, NULL, NULL),
                     0);
    memset(small, 0, 1000); /* copied at send: changing it now must not matter */
    free(small);
    small = pattern(1000, 1);
    ck_assert_int_eq(rpc_conn_send_error(a.c, 4, SMLT_ESTEP, "step %d not open", 17), 0);
    WAIT_UNTIL(base, b.nrecs == 4);
    ck_assert_uint_eq(b.recs[0].type, SMLT__MSG_TYPE__MSG_PING);
    ck_assert_uint_eq(b.recs[0].req_id, 1);
    ck_assert_ptr_null(b.recs[0].payload_ptr);
    Smlt__Ping *up = smlt__ping__unpack(NULL, b.recs[0].meta_len, b.recs[0].meta);
    ck_assert_ptr_nonnull(up);
    ck_assert_uint_eq(up->nonce, 0x1122334455ull);
    smlt__ping__free_unpacked(up, NULL);
    ck_assert_uint_eq(b.recs[1].type, SMLT__MSG_TYPE__MSG_GET_MAP);
    ck_assert_uint_eq(b.recs[1].meta_len, 0);
    ck_assert_uint_eq(b.recs[1].req_id, 2);
    ck_assert_uint_eq(b.recs[2].type, SMLT__MSG_TYPE__MSG_PUSH);
    ck_assert_uint_eq(b.recs[2].raw_len, 1000);
    ck_assert_uint_eq(b.recs[2].flags, 0);
    ck_assert_mem_eq(b.recs[2].payload, small, 1000);
    struct rpc_frame_hdr hh = {.type = SMLT__MSG_TYPE__MSG_PUSH, .meta_len = b.recs[2].meta_len};
    Smlt__PushReq *upr = (Smlt__PushReq *)rpc_msg_unpack(&hh, b.recs[2].meta);
    ck_assert_ptr_nonnull(upr);
    ck_assert_uint_eq(upr->step, 8);
    ck_assert_uint_eq(upr->hi, 250);
    protobuf_c_message_free_unpacked(&upr->base, NULL);
    ck_assert_uint_eq(b.recs[3].type, SMLT__MSG_TYPE__MSG_ERROR);
    ck_assert_uint_eq(b.recs[3].req_id, 4);
    Smlt__ErrorReply *er = smlt__error_reply__unpack(NULL, b.recs[3].meta_len, b.recs[3].meta);
    ck_assert_ptr_nonnull(er);
    ck_assert_int_eq(er->code, SMLT_ESTEP);
    ck_assert_str_eq(er->message, "step 17 not open");
    smlt__error_reply__free_unpacked(er, NULL);
    /* no payload handler call for frames without a payload */
    ck_assert_int_eq(b.payload_calls, 1);
    /* both ends count the same bytes */
    ck_assert_uint_eq(rpc_conn_bytes_out(a.c), rpc_conn_bytes_in(b.c));
    ck_assert_uint_gt(rpc_conn_bytes_in(b.c), 4 * SMLT_FRAME_HDR_LEN + 1000);
    ck_assert_uint_eq(rpc_conn_frames_bad(b.c), 0);
    ck_assert_int_eq(rpc_conn_is_closing(b.c), 0);
    /* and the other way */
    ck_assert_int_eq(rpc_conn_send(b.c, SMLT__MSG_TYPE__MSG_PONG, 1, &ping.base, NULL, 0, 0, NULL,
                                   NULL),
                     0);
    WAIT_UNTIL(base, a.nrecs == 1);
    ck_assert_uint_eq(a.recs[0].type, SMLT__MSG_TYPE__MSG_PONG);
    free(small);
    conns_close(base, &a, &b);
    ck_assert_int_eq(a.close_err, SMLT_ECLOSED);
    ck_assert_int_eq(b.close_err, SMLT_ECLOSED);
    peer_free(&a);
    peer_free(&b);
    event_base_free(base);
}

START_TEST(test_basic_unix)
{
    basic_exchange(0);
}
END_TEST

START_TEST(test_basic_tcp)
{
    basic_exchange(1);
}
END_TEST

static void large_direct(int tcp)
{
    struct event_base *base = event_base_new();
    int fds[2];
    if (tcp)
        pair_tcp(fds);
    else
        pair_unix(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler);
    const size_t n = 8u << 20;
    ck_assert_uint_ge(n, SMLT_DIRECT_READ_MIN);
    uint8_t *data = pattern(n, 7);
    b.mode = P_DEST;
    b.dest_cap = n;
    b.dest = malloc(n);
    struct rel rel = {0};
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PULL_REPLY, 11, NULL, data, n,
                                   RPC_SEND_REF, on_release, &rel),
                     0);
    /* referenced: nothing is written before the loop runs, so not released yet */
    ck_assert_int_eq(rel.calls, 0);
    ck_assert_uint_ge(rpc_conn_outbuf_len(a.c), n);
    /* a small frame right behind it must come out after it, intact */
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH_ACK, 12, NULL, data + 5, 300,
                                   RPC_SEND_COPY, NULL, NULL),
                     0);
    WAIT_UNTIL(base, b.nrecs == 2);
    ck_assert_uint_eq(b.recs[0].req_id, 11);
    ck_assert_uint_eq(b.recs[0].raw_len, n);
    ck_assert_ptr_eq(b.recs[0].payload_ptr, b.dest);
    ck_assert_msg(memcmp(b.recs[0].payload, data, n) == 0, "8 MB payload differs");
    ck_assert_uint_eq(b.recs[1].req_id, 12);
    ck_assert_ptr_eq(b.recs[1].payload_ptr, b.dest);
    ck_assert_mem_eq(b.recs[1].payload, data + 5, 300);
    /* the bytes are written (the peer has them all): released exactly once, with the data */
    WAIT_UNTIL(base, rel.calls >= 1);
    ck_assert_int_eq(rel.calls, 1);
    ck_assert_ptr_eq(rel.data, data);
    ck_assert_uint_eq(rel.len, n);
    ck_assert_uint_eq(rpc_conn_outbuf_len(a.c), 0);
    conns_close(base, &a, &b);
    ck_assert_int_eq(rel.calls, 1);
    free(b.dest);
    free(data);
    peer_free(&a);
    peer_free(&b);
    event_base_free(base);
}

START_TEST(test_large_direct_unix)
{
    large_direct(0);
}
END_TEST

START_TEST(test_large_direct_tcp)
{
    large_direct(1);
}
END_TEST

/* The emulated network card: both directions of a rate-limited connection move their bytes
 * intact and no faster than the rate (a lower bound only: a slow machine only adds time). */
START_TEST(test_rate_cap)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_tcp(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler);
    const uint64_t rate = 16u << 20; /* bytes/s each way */
    struct rpc_rate *r = rpc_rate_new(base, rate);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_null(rpc_rate_new(base, 0));
    ck_assert_int_eq(rpc_conn_set_rate(b.c, r), 0); /* b is "the shard" */
    const size_t n = 6u << 20;
    uint8_t *data = pattern(n, 3);
    b.mode = P_DEST;
    b.dest_cap = n;
    b.dest = malloc(n);
    a.mode = P_DEST;
    a.dest_cap = n;
    a.dest = malloc(n);
    /* inbound to b: a big frame read directly into its destination, and a small one behind */
    double t0 = smlt_now_mono();
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 1, NULL, data, n, RPC_SEND_COPY,
                                   NULL, NULL),
                     0);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 2, NULL, data + 9, 1000,
                                   RPC_SEND_COPY, NULL, NULL),
                     0);
    WAIT_UNTIL(base, b.nrecs == 2);
    double in_s = smlt_now_mono() - t0;
    ck_assert_msg(memcmp(b.recs[0].payload, data, n) == 0, "rate-limited payload differs");
    ck_assert_mem_eq(b.recs[1].payload, data + 9, 1000);
    /* outbound from b */
    t0 = smlt_now_mono();
    ck_assert_int_eq(rpc_conn_send(b.c, SMLT__MSG_TYPE__MSG_PULL_REPLY, 3, NULL, data, n,
                                   RPC_SEND_COPY, NULL, NULL),
                     0);
    WAIT_UNTIL(base, a.nrecs == 1);
    double out_s = smlt_now_mono() - t0;
    ck_assert_msg(memcmp(a.recs[0].payload, data, n) == 0, "rate-limited reply differs");
    /* 6 MiB at 16 MiB/s is 0.375 s; the bucket's burst is a few milliseconds' worth. */
    double floor_s = 0.8 * (double)n / (double)rate;
    fprintf(stderr, "rate cap 16 MiB/s: 6 MiB in %.3f s, out %.3f s\n", in_s, out_s);
    ck_assert_msg(in_s >= floor_s, "6 MiB in %.3f s: faster than the 16 MiB/s cap", in_s);
    ck_assert_msg(out_s >= floor_s, "6 MiB out %.3f s: faster than the 16 MiB/s cap", out_s);
    conns_close(base, &a, &b);
    rpc_rate_free(r);
    free(a.dest);
    free(b.dest);
    free(data);
    peer_free(&a);
    peer_free(&b);
    event_base_free(base);
}
END_TEST

/* Payloads of every size class into scratch: below and above the direct-read size. */
START_TEST(test_scratch_sizes)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_unix(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler_nopayload);
    const size_t sizes[] = {1, 3, 4096, SMLT_DIRECT_READ_MIN - 1, SMLT_DIRECT_READ_MIN,
                            SMLT_DIRECT_READ_MIN + 1, 3u << 20, 17};
    uint8_t *data[8];
    for (int i = 0; i < 8; i++) {
        data[i] = pattern(sizes[i], (uint32_t)i + 100);
        ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, (uint64_t)i, NULL, data[i],
                                       sizes[i], RPC_SEND_COPY, NULL, NULL),
                         0);
    }
    WAIT_UNTIL(base, b.nrecs == 8);
    for (int i = 0; i < 8; i++) {
        ck_assert_uint_eq(b.recs[i].req_id, (uint64_t)i);
        ck_assert_uint_eq(b.recs[i].raw_len, sizes[i]);
        ck_assert_msg(memcmp(b.recs[i].payload, data[i], sizes[i]) == 0, "payload %d differs", i);
        free(data[i]);
    }
    conns_close(base, &a, &b);
    peer_free(&a);
    peer_free(&b);
    event_base_free(base);
}
END_TEST

START_TEST(test_compressed)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_unix(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler);
    const size_t nf = 512u << 10; /* 2 MiB of mostly-zero floats */
    float *sp = sparse(nf);
    ck_assert_int_eq(rpc_payload_should_compress(sp, nf * 4), 1);
    struct rel rel = {0};
    uint64_t out0 = rpc_conn_bytes_out(a.c);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PULL_REPLY, 21, NULL, sp, nf * 4,
                                   RPC_SEND_REF | RPC_SEND_MAY_COMPRESS, on_release, &rel),
                     0);
    /* compressed into a buffer of its own: the caller's bytes are free at once */
    ck_assert_int_eq(rel.calls, 1);
    ck_assert_uint_lt(rpc_conn_bytes_out(a.c) - out0, nf * 4 / 4);
    /* a second one into the handler's buffer */
    b.mode = P_SCRATCH;
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PULL_REPLY, 22, NULL, sp, nf * 4,
                                   RPC_SEND_MAY_COMPRESS, NULL, NULL),
                     0);
    /* random data is not compressed even when allowed */
    uint8_t *rnd = pattern(1u << 20, 3);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PULL_REPLY, 23, NULL, rnd, 1u << 20,
                                   RPC_SEND_MAY_COMPRESS, NULL, NULL),
                     0);
    WAIT_UNTIL(base, b.nrecs == 3);
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_eq(b.recs[i].req_id, 21u + (unsigned)i);
        ck_assert_uint_eq(b.recs[i].flags & RPC_FLAG_LZ4, RPC_FLAG_LZ4);
        ck_assert_uint_eq(b.recs[i].raw_len, nf * 4);
        ck_assert_uint_lt(b.recs[i].payload_len, nf * 4 / 4);
        ck_assert_msg(memcmp(b.recs[i].payload, sp, nf * 4) == 0, "decoded payload %d differs", i);
    }
    ck_assert_uint_eq(b.recs[2].flags & RPC_FLAG_LZ4, 0);
    ck_assert_mem_eq(b.recs[2].payload, rnd, 1u << 20);
    /* into a named buffer */
    b.mode = P_DEST;
    b.dest_cap = nf * 4;
    b.dest = malloc(nf * 4);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PULL_REPLY, 24, NULL, sp, nf * 4,
                                   RPC_SEND_MAY_COMPRESS, NULL, NULL),
                     0);
    WAIT_UNTIL(base, b.nrecs == 4);
    ck_assert_ptr_eq(b.recs[3].payload_ptr, b.dest);
    ck_assert(memcmp(b.dest, sp, nf * 4) == 0);
    conns_close(base, &a, &b);
    ck_assert_int_eq(rel.calls, 1);
    free(b.dest);
    free(sp);
    free(rnd);
    peer_free(&a);
    peer_free(&b);
    event_base_free(base);
}
END_TEST

/* on_payload < 0: the payload is read and dropped, on_frame not called, the next frame fine. */
START_TEST(test_payload_rejected)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_unix(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler);
    b.mode = P_REJECT_ODD;
    const size_t sizes[] = {100, 100, 2u << 20, 2u << 20, 50000, 7};
    uint8_t *data[6];
    for (int i = 0; i < 6; i++) {
        data[i] = pattern(sizes[i], (uint32_t)i);
        /* req ids 1..6: odd ones are refused */
        ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, (uint64_t)i + 1, NULL,
                                       data[i], sizes[i], RPC_SEND_COPY, NULL, NULL),
                         0);
        if (i == 2) /* a compressed one refused too */
            ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 99, NULL,
                                           (float[4096]){0}, 4096 * 4, RPC_SEND_MAY_COMPRESS, NULL,
                                           NULL),
                             0);
    }
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PING, 8, NULL, NULL, 0, 0, NULL, NULL),
                     0);
    WAIT_UNTIL(base, b.nrecs == 4);
    spin(base, 5);
    ck_assert_int_eq(b.nrecs, 4);
    ck_assert_int_eq(b.payload_calls, 7);
    const uint64_t want[4] = {2, 4, 6, 8};
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(b.recs[i].req_id, want[i]);
    ck_assert(memcmp(b.recs[0].payload, data[1], sizes[1]) == 0);
    ck_assert(memcmp(b.recs[1].payload, data[3], sizes[3]) == 0);
    ck_assert(memcmp(b.recs[2].payload, data[5], sizes[5]) == 0);
    ck_assert_uint_eq(rpc_conn_frames_bad(b.c), 0);
    ck_assert_int_eq(b.closes, 0);
    for (int i = 0; i < 6; i++)
        free(data[i]);
    conns_close(base, &a, &b);
    peer_free(&a);
    peer_free(&b);
    event_base_free(base);
}
END_TEST

/* RPC_CONN_WAIT holds the frame (and those behind it) until rpc_conn_resume_dest(). */
static void wait_resume(size_t size)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_unix(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler);
    b.mode = P_WAIT_THEN_DEST;
    b.dest_cap = size;
    b.dest = malloc(size);
    uint8_t *data = pattern(size, 9);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 31, NULL, data, size,
                                   RPC_SEND_COPY, NULL, NULL),
                     0);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PING, 32, NULL, NULL, 0, 0, NULL, NULL),
                     0);
    WAIT_UNTIL(base, b.payload_calls == 1);
    /* let everything that can be written be written; nothing may be delivered */
    for (int i = 0; i < 50 && rpc_conn_outbuf_len(a.c) > 0; i++)
        spin(base, 1);
    spin(base, 5);
    ck_assert_int_eq(b.nrecs, 0);
    ck_assert_int_eq(b.payload_calls, 1);
    rpc_conn_resume_dest(b.c);
    WAIT_UNTIL(base, b.nrecs == 2);
    ck_assert_int_eq(b.payload_calls, 2);
    ck_assert_uint_eq(b.last_payload_req, 31);
    ck_assert_uint_eq(b.recs[0].req_id, 31);
    ck_assert_ptr_eq(b.recs[0].payload_ptr, b.dest);
    ck_assert_msg(memcmp(b.recs[0].payload, data, size) == 0, "payload after resume differs");
    ck_assert_uint_eq(b.recs[1].req_id, 32);
    /* resume_dest when nothing waits is harmless */
    rpc_conn_resume_dest(b.c);
    spin(base, 3);
    ck_assert_int_eq(b.nrecs, 2);
    conns_close(base, &a, &b);
    free(b.dest);
    free(data);
    peer_free(&a);
    peer_free(&b);
    event_base_free(base);
}

START_TEST(test_wait_resume_small)
{
    wait_resume(1000);
}
END_TEST

START_TEST(test_wait_resume_large)
{
    wait_resume(6u << 20);
}
END_TEST

START_TEST(test_pause_resume)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_unix(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler);
    rpc_conn_pause(b.c);
    rpc_conn_pause(b.c);
    for (uint64_t i = 0; i < 3; i++)
        ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PING, i, NULL, NULL, 0, 0, NULL,
                                       NULL),
                         0);
    WAIT_UNTIL(base, rpc_conn_outbuf_len(a.c) == 0);
    spin(base, 5);
    ck_assert_int_eq(b.nrecs, 0);
    rpc_conn_resume(b.c); /* paused twice: still paused */
    spin(base, 5);
    ck_assert_int_eq(b.nrecs, 0);
    rpc_conn_resume(b.c);
    WAIT_UNTIL(base, b.nrecs == 3);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(b.recs[i].req_id, (uint64_t)i);
    rpc_conn_resume(b.c); /* unbalanced resume is harmless */
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PING, 3, NULL, NULL, 0, 0, NULL, NULL),
                     0);
    WAIT_UNTIL(base, b.nrecs == 4);
    conns_close(base, &a, &b);
    peer_free(&a);
    peer_free(&b);
    event_base_free(base);
}
END_TEST

/* Pausing from inside on_frame holds the frames already read in behind it. */
START_TEST(test_pause_in_on_frame)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_unix(fds);
    struct peer b = {0};
    b.c = rpc_conn_new_fd(base, fds[1], &lim_full, &handler, &b);
    ck_assert_ptr_nonnull(b.c);
    b.pause_on_frame = 1;
    uint8_t buf[4 * 64];
    size_t all = 0;
    for (uint64_t i = 0; i < 4; i++) {
        size_t fl;
        uint8_t *f = frame_build(SMLT__MSG_TYPE__MSG_PING, 0, i, NULL, "pay", 3, 3, &fl);
        memcpy(buf + all, f, fl);
        all += fl;
        free(f);
    }
    ck_assert_uint_eq(raw_write(base, fds[0], buf, all), all);
    WAIT_UNTIL(base, b.nrecs >= 1);
    spin(base, 5);
    ck_assert_int_eq(b.nrecs, 1);
    rpc_conn_resume(b.c);
    WAIT_UNTIL(base, b.nrecs == 4);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(b.recs[i].req_id, (uint64_t)i);
    close(fds[0]);
    WAIT_UNTIL(base, b.closes == 1);
    peer_free(&b);
    event_base_free(base);
}
END_TEST

/* Many frames in one write: the per-wakeup budget must defer, never drop. */
START_TEST(test_many_frames_one_write)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_unix(fds);
    struct peer b = {0};
    b.c = rpc_conn_new_fd(base, fds[1], &lim_full, &handler, &b);
    ck_assert_ptr_nonnull(b.c);
    const int nframes = 1000;
    size_t cap = 1 << 20, len = 0;
    uint8_t *all = malloc(cap);
    for (int i = 0; i < nframes; i++) {
        Smlt__Ping ping = SMLT__PING__INIT;
        ping.has_nonce = 1;
        ping.nonce = (uint64_t)i * 3;
        uint8_t pl[24];
        memset(pl, i & 0xff, sizeof pl);
        size_t fl;
        int with = i % 3 == 0;
        uint8_t *f = frame_build(SMLT__MSG_TYPE__MSG_PING, 0, (uint64_t)i, &ping.base,
                                 with ? pl : NULL, with ? sizeof pl : 0, with ? sizeof pl : 0, &fl);
        ck_assert_uint_le(len + fl, cap);
        memcpy(all + len, f, fl);
        len += fl;
        free(f);
    }
    ck_assert_uint_eq(raw_write(base, fds[0], all, len), len);
    WAIT_UNTIL(base, b.nrecs == nframes);
    spin(base, 3);
    ck_assert_int_eq(b.nrecs, nframes);
    for (int i = 0; i < nframes; i++) {
        REQUIRE(b.recs[i].req_id == (uint64_t)i, "frame %d has id %llu", i,
                (unsigned long long)b.recs[i].req_id);
        Smlt__Ping *p = smlt__ping__unpack(NULL, b.recs[i].meta_len, b.recs[i].meta);
        REQUIRE(p != NULL, "frame %d: meta does not unpack", i);
        REQUIRE(p->nonce == (uint64_t)i * 3, "frame %d: nonce %llu", i,
                (unsigned long long)p->nonce);
        smlt__ping__free_unpacked(p, NULL);
        if (i % 3 == 0)
            REQUIRE(b.recs[i].raw_len == 24 && b.recs[i].payload[23] == (uint8_t)(i & 0xff),
                    "frame %d: payload", i);
        else
            REQUIRE(b.recs[i].raw_len == 0, "frame %d: payload", i);
    }
    ck_assert_uint_eq(rpc_conn_bytes_in(b.c), len);
    /* and a frame dribbled in byte by byte */
    Smlt__Ping ping = SMLT__PING__INIT;
    size_t fl;
    uint8_t pl[5] = {1, 2, 3, 4, 5};
    uint8_t *f = frame_build(SMLT__MSG_TYPE__MSG_PING, 0, 5000, &ping.base, pl, 5, 5, &fl);
    for (size_t i = 0; i < fl; i++) {
        ck_assert_uint_eq(raw_write(base, fds[0], f + i, 1), 1);
        spin(base, 2);
        ck_assert_int_eq(b.nrecs, i + 1 < fl ? nframes : nframes + 1);
    }
    ck_assert_mem_eq(b.recs[nframes].payload, pl, 5);
    free(f);
    free(all);
    close(fds[0]);
    WAIT_UNTIL(base, b.closes == 1);
    ck_assert_int_eq(b.close_err, SMLT_ECLOSED);
    peer_free(&b);
    event_base_free(base);
}
END_TEST

/* Both ends send a big frame to each other at once (a pull reply crossing the next push): each
 * has more than SMLT_OUTBUF_HIGH queued, and both must still get the other's frame. */
START_TEST(test_crossing_big_frames)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_unix(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler);
    const size_t n = 12u << 20;
    ck_assert_uint_gt(n, SMLT_OUTBUF_HIGH);
    uint8_t *da = pattern(n, 1), *db = pattern(n, 2);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 1, NULL, da, n, RPC_SEND_REF,
                                   NULL, NULL),
                     0);
    ck_assert_int_eq(rpc_conn_send(b.c, SMLT__MSG_TYPE__MSG_PULL_REPLY, 2, NULL, db, n,
                                   RPC_SEND_REF, NULL, NULL),
                     0);
    /* BUG (rpc_conn.c, output watermark): each side stops reading new frames while its own
     * output is over SMLT_OUTBUF_HIGH, and its output only drains when the other side reads:
     * when both are over it at once neither reads again. The loop then has nothing to do and
     * the watchdog fires. */
    WAIT_UNTIL_S(base, a.nrecs == 1 && b.nrecs == 1, 10);
    ck_assert(memcmp(b.recs[0].payload, da, n) == 0);
    ck_assert(memcmp(a.recs[0].payload, db, n) == 0);
    conns_close(base, &a, &b);
    free(da);
    free(db);
    peer_free(&a);
    peer_free(&b);
    event_base_free(base);
}
END_TEST

/* A frame queued behind a referenced payload costs its own few bytes, not a copy of the
 * payload's size: libevent 2.1's evbuffer_add() sizes a new chain like the last chain holding
 * data, so writing the next header that way malloc'd (and freed) 512 KiB per frame. Measured
 * with glibc's mallinfo2(); where malloc is not glibc's (a sanitizer's), the size check is
 * left out and said so. */
static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd; /* the heap's blocks in use and the mmap'd ones */
}

START_TEST(test_header_after_reference)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_unix(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler);
    const size_t n = 430u << 10; /* half of a 215k-parameter model: one shard's push */
    uint8_t *data = pattern(n, 3);
    size_t before = heap_in_use();
    char *volatile probe = malloc(1u << 20); /* volatile: the pair is not optimized away */
    int counted = probe && heap_in_use() >= before + (1u << 20);
    free(probe);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 1, NULL, data, n, RPC_SEND_REF,
                                   NULL, NULL),
                     0);
    Smlt__PullReq pr = SMLT__PULL_REQ__INIT;
    pr.lo = 1;
    pr.hi = 2;
    before = heap_in_use();
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PULL, 2, &pr.base, NULL, 0, 0, NULL,
                                   NULL),
                     0);
    size_t grew = heap_in_use() - before;
    if (counted)
        ck_assert_msg(grew < (16u << 10), "queuing a pull request behind a %zu-byte reference "
                      "allocated %zu bytes", n, grew);
    else
        fprintf(stderr, "test_header_after_reference: malloc is not glibc's here (a "
                        "sanitizer's): the allocation size is not checked\n");
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH_ACK, 3, NULL, data + 9, 100,
                                   RPC_SEND_COPY, NULL, NULL),
                     0);
    WAIT_UNTIL(base, b.nrecs == 3);
    ck_assert_uint_eq(b.recs[0].raw_len, n);
    ck_assert(memcmp(b.recs[0].payload, data, n) == 0);
    ck_assert_uint_eq(b.recs[1].req_id, 2);
    ck_assert_uint_eq(b.recs[1].type, SMLT__MSG_TYPE__MSG_PULL);
    ck_assert_uint_eq(b.recs[2].req_id, 3);
    ck_assert_mem_eq(b.recs[2].payload, data + 9, 100);
    conns_close(base, &a, &b);
    free(data);
    peer_free(&a);
    peer_free(&b);
    event_base_free(base);
}
END_TEST

/* Metadata much larger than the input buffer's initial size (a big partition map). */
START_TEST(test_large_meta)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_unix(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler);
    Smlt__ErrorReply er = SMLT__ERROR_REPLY__INIT;
    er.code = SMLT_ESTALEMAP;
    size_t ml = 3u << 20;
    char *msg = malloc(ml + 1);
    for (size_t i = 0; i < ml; i++)
        msg[i] = (char)('a' + i % 26);
    msg[ml] = 0;
    er.message = msg;
    ck_assert_uint_le(protobuf_c_message_get_packed_size(&er.base), SMLT_MAX_META_LEN);
    uint8_t *data = pattern(5000, 4);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_ERROR, 1, &er.base, data, 5000,
                                   RPC_SEND_COPY, NULL, NULL),
                     0);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_ERROR, 2, &er.base, NULL, 0, 0, NULL,
                                   NULL),
                     0);
    WAIT_UNTIL(base, b.nrecs == 2);
    for (int i = 0; i < 2; i++) {
        Smlt__ErrorReply *u = smlt__error_reply__unpack(NULL, b.recs[i].meta_len, b.recs[i].meta);
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(u->code, SMLT_ESTALEMAP);
        ck_assert_str_eq(u->message, msg);
        smlt__error_reply__free_unpacked(u, NULL);
    }
    ck_assert_mem_eq(b.recs[0].payload, data, 5000);
    conns_close(base, &a, &b);
    free(msg);
    free(data);
    peer_free(&a);
    peer_free(&b);
    event_base_free(base);
}
END_TEST

/* ---- hostile peers ---------------------------------------------------------------------------- */

struct hostile {
    struct event_base *base;
    int raw;
    struct peer b;
};

static void hostile_new(struct hostile *h, const struct rpc_limits *lim, int tcp)
{
    memset(h, 0, sizeof *h);
    h->base = event_base_new();
    int fds[2];
    if (tcp)
        pair_tcp(fds);
    else
        pair_unix(fds);
    h->raw = fds[0];
    h->b.c = rpc_conn_new_fd(h->base, fds[1], lim, &handler, &h->b);
    ck_assert_ptr_nonnull(h->b.c);
}

/* Writes bytes, waits for the close, checks the error reply and on_close. */
static void hostile_expect(struct hostile *h, const void *bytes, size_t len, int code,
                           uint64_t req_id)
{
    raw_write(h->base, h->raw, bytes, len);
    WAIT_UNTIL(h->base, h->b.closes > 0);
    spin(h->base, 5);
    ck_assert_int_eq(h->b.closes, 1);
    ck_assert_int_eq(h->b.close_err, code);
    ck_assert_uint_eq(h->b.bad_at_close, 1);
    uint64_t rid = 12345;
    Smlt__ErrorReply *er = expect_error_reply(h->raw, &rid);
    ck_assert_int_eq(er->code, code);
    ck_assert_msg(er->message && er->message[0], "error reply without a message");
    ck_assert_msg(rid == req_id, "error reply request id %llu, want %llu",
                  (unsigned long long)rid, (unsigned long long)req_id);
    smlt__error_reply__free_unpacked(er, NULL);
}

static void hostile_free(struct hostile *h)
{
    close(h->raw);
    peer_free(&h->b);
    event_base_free(h->base);
}

START_TEST(test_hostile_garbage)
{
    struct hostile h;
    hostile_new(&h, &lim_preauth, 0);
    const char g[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    hostile_expect(&h, g, sizeof g - 1, SMLT_EPROTO, 0);
    ck_assert_int_eq(h.b.nrecs, 0);
    hostile_free(&h);
    /* a single wrong byte is enough */
    hostile_new(&h, &lim_full, 0);
    hostile_expect(&h, "X", 1, SMLT_EPROTO, 0);
    hostile_free(&h);
}
END_TEST

/* Over TCP, with far more garbage than the receiver reads before it closes: the error reply must
 * still reach the client. */
START_TEST(test_hostile_garbage_tcp)
{
    struct hostile h;
    hostile_new(&h, &lim_full, 1);
    size_t n = 1u << 20;
    uint8_t *g = pattern(n, 5);
    g[0] = 'G';
    hostile_expect(&h, g, n, SMLT_EPROTO, 0);
    free(g);
    hostile_free(&h);
}
END_TEST

START_TEST(test_hostile_oversized)
{
    struct hostile h;
    size_t fl;
    uint8_t *f;
    /* metadata over the pre-auth limit, announced in the header alone */
    hostile_new(&h, &lim_preauth, 0);
    struct rpc_frame_hdr hd = {.type = SMLT__MSG_TYPE__MSG_HELLO,
                               .req_id = 4242,
                               .meta_len = SMLT_MAX_META_PREAUTH + 1};
    uint8_t hb[SMLT_FRAME_HDR_LEN];
    rpc_frame_hdr_encode(hb, &hd);
    hostile_expect(&h, hb, sizeof hb, SMLT_ETOOBIG, 4242);
    hostile_free(&h);
    /* any payload before the handshake */
    hostile_new(&h, &lim_preauth, 0);
    f = frame_build(SMLT__MSG_TYPE__MSG_HELLO, 0, 4243, NULL, "x", 1, 1, &fl);
    hostile_expect(&h, f, fl, SMLT_ETOOBIG, 4243);
    free(f);
    hostile_free(&h);
    /* a payload over the full limit, header only */
    hostile_new(&h, &lim_full, 0);
    struct rpc_frame_hdr hp = {.type = SMLT__MSG_TYPE__MSG_PUSH,
                               .req_id = 4244,
                               .payload_len = SMLT_MAX_PAYLOAD + 1,
                               .raw_len = SMLT_MAX_PAYLOAD + 1};
    rpc_frame_hdr_encode(hb, &hp);
    hostile_expect(&h, hb, sizeof hb, SMLT_ETOOBIG, 4244);
    hostile_free(&h);
    /* an lz4 frame whose decoded size is over the limit */
    hostile_new(&h, &lim_full, 0);
    hp.flags = RPC_FLAG_LZ4;
    hp.payload_len = 1000;
    hp.raw_len = SMLT_MAX_PAYLOAD + 1;
    hp.req_id = 4245;
    rpc_frame_hdr_encode(hb, &hp);
    hostile_expect(&h, hb, sizeof hb, SMLT_ETOOBIG, 4245);
    hostile_free(&h);
}
END_TEST

START_TEST(test_hostile_set_limits)
{
    /* after the handshake the same frame is fine */
    struct hostile h;
    hostile_new(&h, &lim_preauth, 0);
    rpc_conn_set_limits(h.b.c, &lim_full);
    size_t fl;
    uint8_t *f = frame_build(SMLT__MSG_TYPE__MSG_PUSH, 0, 5, NULL, "abc", 3, 3, &fl);
    raw_write(h.base, h.raw, f, fl);
    WAIT_UNTIL(h.base, h.b.nrecs == 1);
    ck_assert_mem_eq(h.b.recs[0].payload, "abc", 3);
    /* and tightening them applies to the next frame */
    rpc_conn_set_limits(h.b.c, &lim_preauth);
    hostile_expect(&h, f, fl, SMLT_ETOOBIG, 5);
    free(f);
    hostile_free(&h);
}
END_TEST

START_TEST(test_hostile_bad_lz4)
{
    struct hostile h;
    hostile_new(&h, &lim_full, 0);
    uint8_t *junk = pattern(3000, 11);
    size_t fl;
    uint8_t *f = frame_build(SMLT__MSG_TYPE__MSG_PUSH, RPC_FLAG_LZ4, 777, NULL, junk, 3000, 65536,
                             &fl);
    hostile_expect(&h, f, fl, SMLT_EPROTO, 777);
    ck_assert_int_eq(h.b.nrecs, 0);
    free(f);
    hostile_free(&h);
    /* a good block announcing more bytes than it decodes to */
    hostile_new(&h, &lim_full, 0);
    float *sp = sparse(16384);
    size_t cap = rpc_payload_bound(16384 * 4);
    uint8_t *z = malloc(cap);
    size_t zl = rpc_payload_compress(sp, 16384 * 4, z, cap);
    ck_assert_uint_gt(zl, 0);
    f = frame_build(SMLT__MSG_TYPE__MSG_PUSH, RPC_FLAG_LZ4, 778, NULL, z, zl, 16384 * 4 + 4, &fl);
    hostile_expect(&h, f, fl, SMLT_EPROTO, 778);
    free(f);
    free(z);
    free(sp);
    free(junk);
    hostile_free(&h);
}
END_TEST

START_TEST(test_hostile_bad_header_after_good)
{
    /* a good frame with id 77, then a header whose check fails: the reply must not carry the
     * previous frame's id (which may belong to a request still pending on the client) */
    struct hostile h;
    hostile_new(&h, &lim_full, 0);
    size_t fl;
    uint8_t *f = frame_build(SMLT__MSG_TYPE__MSG_PING, 0, 77, NULL, NULL, 0, 0, &fl);
    raw_write(h.base, h.raw, f, fl);
    WAIT_UNTIL(h.base, h.b.nrecs == 1);
    uint8_t *g = frame_build(SMLT__MSG_TYPE__MSG_PING, 0, 78, NULL, NULL, 0, 0, &fl);
    g[12] ^= 1; /* req id byte: check mismatch */
    /* BUG (rpc_conn.c conn_process -> conn_bad_frame): for a header refused before its fields
     * are decoded (bad check, or bad magic with 40 bytes in), c->cur still holds the previous
     * frame and its req_id (77) is echoed. Expected 0. */
    hostile_expect(&h, g, fl, SMLT_EPROTO, 0);
    free(g);
    hostile_free(&h);
    /* same with 40 bytes of garbage after a good frame */
    hostile_new(&h, &lim_full, 0);
    raw_write(h.base, h.raw, f, fl);
    WAIT_UNTIL(h.base, h.b.nrecs == 1);
    uint8_t junk[SMLT_FRAME_HDR_LEN];
    memset(junk, 'z', sizeof junk);
    hostile_expect(&h, junk, sizeof junk, SMLT_EPROTO, 0);
    free(f);
    hostile_free(&h);
}
END_TEST

START_TEST(test_hostile_bad_fields)
{
    /* each refused header field, with a valid check, on a fresh connection */
    struct {
        uint8_t version, type;
        uint16_t flags;
        uint64_t plen, rlen;
    } cases[] = {
        {SMLT_PROTO_VERSION + 1, SMLT__MSG_TYPE__MSG_PING, 0, 0, 0},
        {SMLT_PROTO_VERSION, 0, 0, 0, 0}, /* MSG_NONE */
        {SMLT_PROTO_VERSION, 255, 0, 0, 0},
        {SMLT_PROTO_VERSION, SMLT__MSG_TYPE__MSG_PING, 0x8000, 0, 0},
        {SMLT_PROTO_VERSION, SMLT__MSG_TYPE__MSG_PUSH, 0, 10, 11},
        {SMLT_PROTO_VERSION, SMLT__MSG_TYPE__MSG_PUSH, RPC_FLAG_LZ4, 0, 0},
    };
    ck_assert_ptr_null(protobuf_c_enum_descriptor_get_value(&smlt__msg_type__descriptor, 255));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct hostile h;
        hostile_new(&h, &lim_full, 0);
        struct rpc_frame_hdr hd = {.version = cases[i].version,
                                   .type = cases[i].type,
                                   .flags = cases[i].flags,
                                   .req_id = 900 + i,
                                   .payload_len = cases[i].plen,
                                   .raw_len = cases[i].rlen};
        uint8_t hb[SMLT_FRAME_HDR_LEN];
        rpc_frame_hdr_encode(hb, &hd);
        hostile_expect(&h, hb, sizeof hb, SMLT_EPROTO, 900 + i);
        hostile_free(&h);
    }
}
END_TEST

/* ---- closing ---------------------------------------------------------------------------------- */

START_TEST(test_close_paths)
{
    struct event_base *base = event_base_new();
    int fds[2];
    pair_unix(fds);
    struct peer a = {0}, b = {0};
    conns_new(base, fds, &a, &b, &handler);
    /* b closes from inside on_frame: its on_close carries the code, a sees an orderly close */
    b.close_on_frame = 1;
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PING, 1, NULL, NULL, 0, 0, NULL, NULL),
                     0);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PING, 2, NULL, NULL, 0, 0, NULL, NULL),
                     0);
    WAIT_UNTIL(base, b.closes == 1 && a.closes == 1);
    spin(base, 5);
    ck_assert_int_eq(b.nrecs, 1); /* nothing delivered after the close */
    ck_assert_int_eq(b.close_err, SMLT_ECANCELED);
    ck_assert_int_eq(a.close_err, SMLT_ECLOSED);
    ck_assert_int_eq(b.closes, 1);
    ck_assert_int_eq(a.closes, 1);
    peer_free(&a);
    peer_free(&b);

    /* a referenced payload queued on a connection that is aborted: released once, on free */
    pair_unix(fds);
    conns_new(base, fds, &a, &b, &handler);
    uint8_t *data = pattern(1u << 20, 1);
    struct rel rel = {0};
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 1, NULL, data, 1u << 20,
                                   RPC_SEND_REF, on_release, &rel),
                     0);
    rpc_conn_abort(a.c, SMLT_EIO);
    rpc_conn_abort(a.c, SMLT_EINVAL); /* twice: harmless, first code wins */
    rpc_conn_close(a.c, SMLT_EINVAL);
    ck_assert_int_eq(rpc_conn_is_closing(a.c), 1);
    ck_assert_int_eq(a.closes, 0); /* deferred */
    /* sends on a closing connection fail and release at once */
    struct rel rel2 = {0};
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 2, NULL, data, 100, RPC_SEND_REF,
                                   on_release, &rel2),
                     SMLT_ECLOSED);
    ck_assert_int_eq(rel2.calls, 1);
    WAIT_UNTIL(base, a.closes == 1 && b.closes == 1);
    spin(base, 5);
    ck_assert_int_eq(a.closes, 1);
    ck_assert_int_eq(a.close_err, SMLT_EIO);
    ck_assert_int_eq(rel.calls, 1);
    ck_assert_int_eq(rel2.calls, 1);
    peer_free(&a);
    peer_free(&b);

    /* too big to send: refused, released */
    pair_unix(fds);
    conns_new(base, fds, &a, &b, &handler);
    struct rel rel3 = {0};
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 3, NULL, data,
                                   (size_t)SMLT_MAX_PAYLOAD + 1, RPC_SEND_REF, on_release, &rel3),
                     SMLT_ETOOBIG);
    ck_assert_int_eq(rel3.calls, 1);
    /* with COPY the release runs before returning */
    struct rel rel4 = {0};
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 4, NULL, data, 10, RPC_SEND_COPY,
                                   on_release, &rel4),
                     0);
    ck_assert_int_eq(rel4.calls, 1);
    WAIT_UNTIL(base, b.nrecs == 1);
    ck_assert_mem_eq(b.recs[0].payload, data, 10);
    /* the peer's fd going away closes the other side once, as ECLOSED */
    rpc_conn_abort(a.c, SMLT_ECANCELED);
    WAIT_UNTIL(base, a.closes == 1 && b.closes == 1);
    spin(base, 5);
    ck_assert_int_eq(b.closes, 1);
    ck_assert_int_eq(b.close_err, SMLT_ECLOSED);
    ck_assert_int_eq(a.close_err, SMLT_ECANCELED);
    peer_free(&a);
    peer_free(&b);
    free(data);
    event_base_free(base);
}
END_TEST

static void h_connected(struct rpc_conn *c, void *arg)
{
    ((struct peer *)arg)->waits = 100; /* marks "connected" */
}

START_TEST(test_connect)
{
    struct event_base *base = event_base_new();
    int port = 0;
    int l = rpc_net_listen("127.0.0.1:0", 4, &port);
    ck_assert_int_ge(l, 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    struct rpc_conn_handler hc = handler;
    hc.on_connected = h_connected;
    struct peer a = {0}, b = {0};
    int err = 0;
    a.c = rpc_conn_connect(base, addr, &lim_full, &hc, &a, &err);
    ck_assert_ptr_nonnull(a.c);
    /* queued before the connect completes */
    uint8_t *data = pattern(300000, 2);
    ck_assert_int_eq(rpc_conn_send(a.c, SMLT__MSG_TYPE__MSG_PUSH, 1, NULL, data, 300000,
                                   RPC_SEND_COPY, NULL, NULL),
                     0);
    WAIT_UNTIL(base, a.waits == 100);
    struct pollfd pfd = {.fd = l, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
    int s = accept(l, NULL, NULL);
    ck_assert_int_ge(s, 0);
    b.c = rpc_conn_new_fd(base, s, &lim_full, &handler, &b);
    WAIT_UNTIL(base, b.nrecs == 1);
    ck_assert(memcmp(b.recs[0].payload, data, 300000) == 0);
    conns_close(base, &a, &b);
    peer_free(&a);
    peer_free(&b);
    /* a closed port: the connection dies, on_close tells */
    close(l);
    a.c = rpc_conn_connect(base, addr, &lim_full, &hc, &a, &err);
    ck_assert_ptr_nonnull(a.c);
    WAIT_UNTIL(base, a.closes == 1);
    ck_assert_int_lt(a.close_err, 0);
    /* BUG (rpc_conn.c): on_connected fires for the refused connect, on a connection already
     * closing. on_read's recv() takes the pending ECONNREFUSED (clearing SO_ERROR) and aborts;
     * libevent keeps its write event while connecting, then finds SO_ERROR 0 and reports
     * BEV_EVENT_CONNECTED, which on_bev_event passes on without checking c->closing. */
    ck_assert_msg(a.waits != 100, "on_connected called for a refused connection");
    peer_free(&a);
    /* an address that does not parse: NULL, no callback */
    err = 0;
    ck_assert_ptr_null(rpc_conn_connect(base, "127.0.0.1:", &lim_full, &hc, &a, &err));
    ck_assert_int_eq(err, SMLT_EINVAL);
    spin(base, 3);
    ck_assert_int_eq(a.closes, 0);
    free(data);
    event_base_free(base);
}
END_TEST

static Suite *rpc_conn_suite(void)
{
    Suite *s = suite_create("rpc_conn");
    TCase *tc = tcase_create("frames");
    tcase_add_test(tc, test_basic_unix);
    tcase_add_test(tc, test_basic_tcp);
    tcase_add_test(tc, test_large_direct_unix);
    tcase_add_test(tc, test_large_direct_tcp);
    tcase_add_test(tc, test_rate_cap);
    tcase_add_test(tc, test_scratch_sizes);
    tcase_add_test(tc, test_compressed);
    tcase_add_test(tc, test_payload_rejected);
    tcase_add_test(tc, test_wait_resume_small);
    tcase_add_test(tc, test_wait_resume_large);
    tcase_add_test(tc, test_pause_resume);
    tcase_add_test(tc, test_pause_in_on_frame);
    tcase_add_test(tc, test_many_frames_one_write);
    tcase_add_test(tc, test_large_meta);
    tcase_add_test(tc, test_crossing_big_frames);
    tcase_add_test(tc, test_header_after_reference);
    suite_add_tcase(s, tc);
    tc = tcase_create("hostile");
    tcase_add_test(tc, test_hostile_garbage);
    tcase_add_test(tc, test_hostile_garbage_tcp);
    tcase_add_test(tc, test_hostile_oversized);
    tcase_add_test(tc, test_hostile_set_limits);
    tcase_add_test(tc, test_hostile_bad_lz4);
    tcase_add_test(tc, test_hostile_bad_header_after_good);
    tcase_add_test(tc, test_hostile_bad_fields);
    suite_add_tcase(s, tc);
    tc = tcase_create("close");
    tcase_add_test(tc, test_close_paths);
    tcase_add_test(tc, test_connect);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    SRunner *sr = srunner_create(rpc_conn_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
