/* test_smlt_tls.c: Check suite for proto/smlt_tls.c and rpc_conn's TLS mode.
 *
 * Certificates come from tools/make-test-certs.sh (run once into a temporary directory): a
 * test CA, a server certificate for 127.0.0.1 / localhost, a client certificate, and a second
 * CA with a certificate of its own. Contexts: every bad file or combination is refused with a
 * message that names it. Connections: two rpc_conns on one event loop over loopback TCP, one
 * accepted (server context) and one connecting (client context); frames, payloads read into a
 * named destination, compressed payloads, a destination that makes the connection wait, a
 * sender stalled on a full socket (its records gathered and waiting), and every refusal: a
 * plaintext client on a TLS port, a TLS client on a plaintext port, a server certificate from
 * another CA, a certificate that does not name the address dialled, and under mutual TLS no
 * client certificate or one from another CA. A 20 s watchdog guards the loops. */
#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "rpc_conn.h"
#include "smlt.pb-c.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_tls.h"
#include "smlt_util.h"

static const struct rpc_limits lim_full = {SMLT_MAX_META_LEN, SMLT_MAX_PAYLOAD};

static char g_dir[256]; /* the certificates */

static const char *cert(const char *name)
{
    static char buf[8][512];
    static int slot;
    char *p = buf[slot++ % 8];
    snprintf(p, 512, "%s/%s", g_dir, name);
    return p;
}

/* A file of junk, for the parsers to refuse. */
static const char *junk_file(void)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/junk.pem", g_dir);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not PEM\n", f);
    fclose(f);
    return p;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char *t = calloc(1, 65536);
    size_t n = fread(t, 1, 65535, f);
    t[n] = '\0';
    fclose(f);
    return t;
}

/* ---- contexts ------------------------------------------------------------------------------ */

/* Creates a server (server 1) or client context from conf; expects failure with a message
 * containing want1 and want2 (NULL: anything). */
static void expect_refused(int server, const struct smlt_tls_conf *conf, const char *want1,
                           const char *want2)
{
    struct smlt_tls *t = (struct smlt_tls *)1;
    char err[512] = "";
    int rc = server ? smlt_tls_server_new(&t, conf, err, sizeof err)
                    : smlt_tls_client_new(&t, conf, err, sizeof err);
    ck_assert_msg(rc == SMLT_EINVAL, "not refused: server %d, cert %s, key %s, ca %s", server,
                  conf->cert, conf->key, conf->ca);
    ck_assert_ptr_null(t);
    ck_assert_msg(!want1 || strstr(err, want1), "message \"%s\" lacks \"%s\"", err, want1);
    ck_assert_msg(!want2 || strstr(err, want2), "message \"%s\" lacks \"%s\"", err, want2);
}

START_TEST(test_ctx_errors)
{
    const char *junk = junk_file();
    /* a server needs both files */
    expect_refused(1, &(struct smlt_tls_conf){0}, "certificate and its key", NULL);
    expect_refused(1, &(struct smlt_tls_conf){.cert = cert("server.pem")}, "its key", NULL);
    /* missing files: named, with errno's words */
    expect_refused(1,
                   &(struct smlt_tls_conf){.cert = "/nonexistent/server.pem",
                                           .key = cert("server.key")},
                   "certificate file /nonexistent/server.pem", "No such file");
    expect_refused(1,
                   &(struct smlt_tls_conf){.cert = cert("server.pem"),
                                           .key = "/nonexistent/server.key"},
                   "key file /nonexistent/server.key", "No such file");
    /* garbage */
    expect_refused(1, &(struct smlt_tls_conf){.cert = junk, .key = cert("server.key")},
                   "no PEM certificate", junk);
    expect_refused(1, &(struct smlt_tls_conf){.cert = cert("server.pem"), .key = junk},
                   "no PEM private key", junk);
    /* a key of another certificate */
    expect_refused(1,
                   &(struct smlt_tls_conf){.cert = cert("server.pem"), .key = cert("client.key")},
                   "does not match", "server.pem");
    /* mutual TLS without a CA to check clients against; a CA file that holds none */
    expect_refused(1,
                   &(struct smlt_tls_conf){.cert = cert("server.pem"), .key = cert("server.key"),
                                           .verify_client = 1},
                   "CA file", NULL);
    expect_refused(1,
                   &(struct smlt_tls_conf){.cert = cert("server.pem"), .key = cert("server.key"),
                                           .ca = junk},
                   "CA file", junk);
    expect_refused(1,
                   &(struct smlt_tls_conf){.cert = cert("server.pem"), .key = cert("server.key"),
                                           .ca = "/nonexistent/ca.pem", .verify_client = 1},
                   "CA file /nonexistent/ca.pem", "No such file");
    /* clients: a certificate without its key, a bad CA file, CA text that is not PEM */
    expect_refused(0, &(struct smlt_tls_conf){.cert = cert("client.pem")}, "needs its key", NULL);
    expect_refused(0, &(struct smlt_tls_conf){.key = cert("client.key")}, "needs its key", NULL);
    expect_refused(0, &(struct smlt_tls_conf){.ca = junk}, "no PEM certificate", junk);
    expect_refused(0, &(struct smlt_tls_conf){.ca = "/nonexistent/ca.pem"}, "No such file",
                   NULL);
    expect_refused(0, &(struct smlt_tls_conf){.ca_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n"},
                   "given as text", NULL);
    expect_refused(0,
                   &(struct smlt_tls_conf){.ca = cert("ca.pem"), .cert = cert("client.pem"),
                                           .key = cert("server.key")},
                   "does not match", NULL);
}
END_TEST

START_TEST(test_ctx_good)
{
    char err[512] = "";
    struct smlt_tls *t = NULL;
    ck_assert_int_eq(smlt_tls_server_new(&t,
                                         &(struct smlt_tls_conf){.cert = cert("server.pem"),
                                                                 .key = cert("server.key"),
                                                                 .ca = cert("ca.pem"),
                                                                 .verify_client = 1},
                                         err, sizeof err),
                     0);
    ck_assert(smlt_tls_is_server(t));
    ck_assert_ptr_nonnull(smlt_tls_ctx(t));
    /* references: the second free frees it (LeakSanitizer would tell otherwise) */
    ck_assert_ptr_eq(smlt_tls_ref(t), t);
    smlt_tls_free(t);
    smlt_tls_free(t);
    char *pem = read_text(cert("ca.pem"));
    ck_assert_int_eq(
        smlt_tls_client_new(&t, &(struct smlt_tls_conf){.ca_pem = pem}, err, sizeof err), 0);
    ck_assert(!smlt_tls_is_server(t));
    smlt_tls_free(t);
    free(pem);
    /* no CA at all: the system's store */
    ck_assert_int_eq(smlt_tls_client_new(&t, NULL, err, sizeof err), 0);
    smlt_tls_free(t);
    smlt_tls_free(NULL);
    /* descriptions never come back empty */
    char d[160];
    ck_assert_str_eq(smlt_tls_describe(NULL, 0, d, sizeof d),
                     "the peer closed the connection during the handshake");
    ck_assert_str_eq(smlt_tls_errors(d, sizeof d), "");
}
END_TEST

/* ---- connections --------------------------------------------------------------------------- */

static int g_timed_out;

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    g_timed_out = 1;
}

#define WAIT_UNTIL(base, cond)                                                                     \
    do {                                                                                           \
        struct event *wd_ = evtimer_new(base, on_watchdog, NULL);                                  \
        struct timeval tv_ = {20, 0};                                                              \
        g_timed_out = 0;                                                                           \
        evtimer_add(wd_, &tv_);                                                                    \
        while (!(cond) && !g_timed_out)                                                            \
            event_base_loop(base, EVLOOP_ONCE);                                                    \
        event_free(wd_);                                                                           \
        ck_assert_msg(!g_timed_out, "timed out waiting for %s", #cond);                            \
    } while (0)

struct peer {
    struct rpc_conn *c;
    uint8_t *dest;
    size_t dest_cap;
    int wait_once; /* answer RPC_CONN_WAIT to the next payload, then take it */
    int waited;
    int frames;
    uint8_t last_type;
    uint64_t last_len;
    uint8_t *last; /* a copy of the last payload */
    int connected, closes, close_err;
    char why[256];
};

static int h_payload(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                     void **dest, void *arg)
{
    struct peer *p = arg;
    if (p->wait_once) {
        p->wait_once = 0;
        p->waited = 1;
        return RPC_CONN_WAIT;
    }
    if (p->dest && h->raw_len <= p->dest_cap)
        *dest = p->dest;
    return 0;
}

static void h_frame(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                    void *payload, void *arg)
{
    struct peer *p = arg;
    p->frames++;
    p->last_type = h->type;
    p->last_len = h->raw_len;
    free(p->last);
    p->last = NULL;
    if (payload) {
        p->last = malloc(h->raw_len);
        memcpy(p->last, payload, h->raw_len);
    }
}

static void h_close(struct rpc_conn *c, int err, void *arg)
{
    struct peer *p = arg;
    p->closes++;
    p->close_err = err;
    snprintf(p->why, sizeof p->why, "%s", rpc_conn_errmsg(c));
    p->c = NULL;
}

static void h_connected(struct rpc_conn *c, void *arg)
{
    ((struct peer *)arg)->connected = 1;
}

static const struct rpc_conn_handler handler = {
    .on_payload = h_payload, .on_frame = h_frame, .on_close = h_close,
    .on_connected = h_connected};

static struct smlt_tls *server_ctx(int verify_client)
{
    struct smlt_tls *t;
    char err[512];
    struct smlt_tls_conf conf = {.cert = cert("server.pem"), .key = cert("server.key"),
                                 .ca = verify_client ? cert("ca.pem") : NULL,
                                 .verify_client = verify_client};
    ck_assert_msg(smlt_tls_server_new(&t, &conf, err, sizeof err) == 0, "%s", err);
    return t;
}

static struct smlt_tls *client_ctx(const char *ca, const char *crt, const char *key)
{
    struct smlt_tls *t;
    char err[512];
    struct smlt_tls_conf conf = {.ca = ca ? cert(ca) : NULL, .cert = crt ? cert(crt) : NULL,
                                 .key = key ? cert(key) : NULL};
    ck_assert_msg(smlt_tls_client_new(&t, &conf, err, sizeof err) == 0, "%s", err);
    return t;
}

/* A client (context cli, NULL: plain) dialling host:port of a listener, and the server end
 * (context srv, NULL: plain) accepted from it. */
struct pair {
    struct event_base *base;
    int lfd, port;
    struct peer a, b; /* a: the client, b: the server */
};

static void pair_open(struct pair *p, const char *host, struct smlt_tls *cli, struct smlt_tls *srv)
{
    memset(p, 0, sizeof *p);
    p->base = event_base_new();
    char bind[64];
    snprintf(bind, sizeof bind, "%s:0", strcmp(host, "localhost") ? host : "127.0.0.1");
    p->lfd = rpc_net_listen(bind, 4, &p->port);
    ck_assert_int_ge(p->lfd, 0);
    char addr[128];
    snprintf(addr, sizeof addr, "%s:%d", host, p->port);
    int err = 0;
    p->a.c = rpc_conn_connect_tls(p->base, addr, cli, &lim_full, &handler, &p->a, &err);
    ck_assert_ptr_nonnull(p->a.c);
    ck_assert_int_eq(rpc_conn_is_tls(p->a.c), cli != NULL);
    struct pollfd pfd = {.fd = p->lfd, .events = POLLIN};
    while (poll(&pfd, 1, 0) == 0)
        event_base_loop(p->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    int s = accept(p->lfd, NULL, NULL);
    ck_assert_int_ge(s, 0);
    p->b.c = rpc_conn_new_fd_tls(p->base, s, srv, &lim_full, &handler, &p->b);
    ck_assert_ptr_nonnull(p->b.c);
}

static void peer_clear(struct peer *p)
{
    free(p->last);
    free(p->dest);
}

static void pair_close(struct pair *p)
{
    if (p->a.c)
        rpc_conn_abort(p->a.c, SMLT_ECANCELED);
    if (p->b.c)
        rpc_conn_abort(p->b.c, SMLT_ECANCELED);
    WAIT_UNTIL(p->base, !p->a.c && !p->b.c);
    close(p->lfd);
    peer_clear(&p->a);
    peer_clear(&p->b);
    event_base_free(p->base);
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *d = malloc(n);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        d[i] = (uint8_t)(x >> 24);
    }
    return d;
}

static int send_payload(struct rpc_conn *c, uint64_t id, const void *data, size_t n,
                        unsigned opts)
{
    Smlt__Ping ping = SMLT__PING__INIT;
    return rpc_conn_send(c, SMLT__MSG_TYPE__MSG_PUSH, id, &ping.base, data, n, opts, NULL, NULL);
}

START_TEST(test_tls_frames)
{
    struct smlt_tls *srv = server_ctx(0), *cli = client_ctx("ca.pem", NULL, NULL);
    struct pair p;
    pair_open(&p, "127.0.0.1", cli, srv);
    /* frames sent before the handshake are queued and go out after it */
    Smlt__Ping ping = SMLT__PING__INIT;
    ck_assert_int_eq(rpc_conn_send(p.a.c, SMLT__MSG_TYPE__MSG_PING, 1, &ping.base, NULL, 0, 0,
                                   NULL, NULL),
                     0);
    WAIT_UNTIL(p.base, p.b.frames == 1);
    ck_assert(p.a.connected && p.b.connected);
    /* 8 MB into a named destination: the drained path, by reference from the sender */
    size_t big = 8u << 20;
    uint8_t *data = pattern(big, 1);
    p.b.dest = calloc(1, big);
    p.b.dest_cap = big;
    ck_assert_int_eq(send_payload(p.a.c, 2, data, big, RPC_SEND_REF), 0);
    WAIT_UNTIL(p.base, p.b.frames == 2);
    ck_assert_uint_eq(p.b.last_len, big);
    ck_assert(memcmp(p.b.dest, data, big) == 0);
    /* the server answers with a referenced payload; the client holds it in scratch */
    ck_assert_int_eq(send_payload(p.b.c, 3, data, 3u << 20, RPC_SEND_REF), 0);
    WAIT_UNTIL(p.base, p.a.frames == 1);
    ck_assert(memcmp(p.a.last, data, 3u << 20) == 0);
    /* a compressible payload goes out lz4'd and comes back whole */
    uint8_t *zeros = calloc(1, 1u << 20);
    zeros[12345] = 7;
    ck_assert_int_eq(send_payload(p.a.c, 4, zeros, 1u << 20, RPC_SEND_MAY_COMPRESS), 0);
    WAIT_UNTIL(p.base, p.b.frames == 3);
    ck_assert(memcmp(p.b.dest, zeros, 1u << 20) == 0);
    /* a destination that is not there yet: reading stops, and resumes with what the
     * bufferevent had already decrypted */
    p.b.wait_once = 1;
    memset(p.b.dest, 0, big);
    ck_assert_int_eq(send_payload(p.a.c, 5, data, big, RPC_SEND_REF), 0);
    ck_assert_int_eq(send_payload(p.a.c, 6, NULL, 0, 0), 0);
    WAIT_UNTIL(p.base, p.b.waited);
    for (int i = 0; i < 50; i++)
        event_base_loop(p.base, EVLOOP_NONBLOCK);
    ck_assert_int_eq(p.b.frames, 3);
    rpc_conn_resume_dest(p.b.c);
    WAIT_UNTIL(p.base, p.b.frames == 5);
    ck_assert(memcmp(p.b.dest, data, big) == 0);
    ck_assert_uint_eq(rpc_conn_bytes_in(p.b.c), rpc_conn_bytes_out(p.a.c));
    /* an orderly close reaches the other end as a close, not an error */
    rpc_conn_close(p.a.c, SMLT_ECLOSED);
    WAIT_UNTIL(p.base, p.b.closes == 1);
    ck_assert_int_eq(p.b.close_err, SMLT_ECLOSED);
    free(zeros);
    free(data);
    pair_close(&p);
    smlt_tls_free(srv);
    smlt_tls_free(cli);
}
END_TEST

/* A payload far larger than both socket buffers while the receiver does not read: the
 * sender's gathered records wait for the socket (and count in rpc_conn_outbuf_len()), then
 * go out whole and in order once the receiver reads again; so does a large reply. */
START_TEST(test_tls_full_socket)
{
    struct smlt_tls *srv = server_ctx(0), *cli = client_ctx("ca.pem", NULL, NULL);
    struct pair p;
    pair_open(&p, "127.0.0.1", cli, srv);
    size_t big = 48u << 20, reply = 40u << 20;
    uint8_t *data = pattern(big, 3);
    p.b.dest = calloc(1, big);
    p.b.dest_cap = big;
    p.b.wait_once = 1;
    ck_assert_int_eq(send_payload(p.a.c, 1, data, big, RPC_SEND_REF), 0);
    ck_assert_int_eq(send_payload(p.a.c, 2, NULL, 0, 0), 0);
    WAIT_UNTIL(p.base, p.b.waited);
    /* run the loop until the sender's queue stops shrinking: the socket is full */
    size_t q = rpc_conn_outbuf_len(p.a.c), prev;
    do {
        prev = q;
        for (int i = 0; i < 50; i++)
            event_base_loop(p.base, EVLOOP_NONBLOCK);
        q = rpc_conn_outbuf_len(p.a.c);
    } while (q != prev);
    ck_assert_uint_gt(q, 0);
    ck_assert_int_eq(p.b.frames, 0);
    rpc_conn_resume_dest(p.b.c);
    WAIT_UNTIL(p.base, p.b.frames == 2);
    ck_assert_uint_eq(p.b.last_len, 0);
    ck_assert(memcmp(p.b.dest, data, big) == 0);
    WAIT_UNTIL(p.base, rpc_conn_outbuf_len(p.a.c) == 0);
    ck_assert_int_eq(send_payload(p.b.c, 3, data, reply, RPC_SEND_REF), 0);
    WAIT_UNTIL(p.base, p.a.frames == 1);
    ck_assert_uint_eq(p.a.last_len, reply);
    ck_assert(memcmp(p.a.last, data, reply) == 0);
    ck_assert_uint_eq(rpc_conn_bytes_in(p.b.c), rpc_conn_bytes_out(p.a.c));
    ck_assert_uint_eq(rpc_conn_bytes_in(p.a.c), rpc_conn_bytes_out(p.b.c));
    free(data);
    pair_close(&p);
    smlt_tls_free(srv);
    smlt_tls_free(cli);
}
END_TEST

/* The emulated network card on a TLS connection: a referenced reply (a pull's tensor) goes
 * out no faster than the cap (the openssl bufferevent writes whole evbuffer chains, so it is
 * queued in pieces), arrives whole, and is released once; the capped end's inbound is capped
 * too. A lower bound only: a slow machine only adds time. */
static int g_released;

static void on_release(const void *data, size_t len, void *arg)
{
    g_released++;
    ck_assert_ptr_eq(data, arg);
    ck_assert_uint_eq(len, 6u << 20);
}

START_TEST(test_tls_rate_cap)
{
    struct smlt_tls *srv = server_ctx(0), *cli = client_ctx("ca.pem", NULL, NULL);
    struct pair p;
    pair_open(&p, "127.0.0.1", cli, srv);
    const uint64_t rate = 16u << 20; /* bytes/s each way */
    struct rpc_rate *r = rpc_rate_new(p.base, rate);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(rpc_conn_set_rate(p.b.c, r), 0); /* b is "the shard" */
    const size_t n = 6u << 20;
    uint8_t *data = pattern(n, 5);
    p.b.dest = calloc(1, n);
    p.b.dest_cap = n;
    double floor_s = 0.8 * (double)n / (double)rate;
    double t0 = smlt_now_mono();
    ck_assert_int_eq(send_payload(p.a.c, 1, data, n, RPC_SEND_REF), 0);
    WAIT_UNTIL(p.base, p.b.frames == 1);
    double in_s = smlt_now_mono() - t0;
    ck_assert(memcmp(p.b.dest, data, n) == 0);
    g_released = 0;
    t0 = smlt_now_mono();
    Smlt__Ping ping = SMLT__PING__INIT;
    ck_assert_int_eq(rpc_conn_send(p.b.c, SMLT__MSG_TYPE__MSG_PULL_REPLY, 2, &ping.base, data,
                                   n, RPC_SEND_REF, on_release, data),
                     0);
    WAIT_UNTIL(p.base, p.a.frames == 1);
    double out_s = smlt_now_mono() - t0;
    ck_assert_uint_eq(p.a.last_len, n);
    ck_assert(memcmp(p.a.last, data, n) == 0);
    WAIT_UNTIL(p.base, g_released == 1);
    ck_assert_uint_eq(rpc_conn_outbuf_len(p.b.c), 0);
    fprintf(stderr, "TLS rate cap 16 MiB/s: 6 MiB in %.3f s, out %.3f s\n", in_s, out_s);
    ck_assert_msg(in_s >= floor_s, "6 MiB in %.3f s: faster than the 16 MiB/s cap", in_s);
    ck_assert_msg(out_s >= floor_s, "6 MiB out %.3f s: faster than the 16 MiB/s cap", out_s);
    /* a referenced reply still queued when the connection goes is released once, too */
    g_released = 0;
    ck_assert_int_eq(rpc_conn_send(p.b.c, SMLT__MSG_TYPE__MSG_PULL_REPLY, 3, &ping.base, data,
                                   n, RPC_SEND_REF, on_release, data),
                     0);
    for (int i = 0; i < 5; i++)
        event_base_loop(p.base, EVLOOP_NONBLOCK);
    rpc_conn_abort(p.b.c, SMLT_ECANCELED);
    WAIT_UNTIL(p.base, g_released == 1);
    pair_close(&p);
    rpc_rate_free(r);
    free(data);
    smlt_tls_free(srv);
    smlt_tls_free(cli);
}
END_TEST

/* Both ends of a refused connection close; the server's with SMLT_ETLS and a reason. */
static void expect_refusal(struct pair *p, const char *server_why, const char *client_why)
{
    Smlt__Ping ping = SMLT__PING__INIT;
    if (p->a.c)
        rpc_conn_send(p->a.c, SMLT__MSG_TYPE__MSG_PING, 1, &ping.base, NULL, 0, 0, NULL, NULL);
    WAIT_UNTIL(p->base, p->a.closes == 1 && p->b.closes == 1);
    ck_assert_int_eq(p->b.frames, 0);
    ck_assert_int_eq(p->b.close_err, SMLT_ETLS);
    ck_assert_msg(strstr(p->b.why, server_why), "server: \"%s\" lacks \"%s\"", p->b.why,
                  server_why);
    if (client_why) {
        ck_assert_int_eq(p->a.close_err, SMLT_ETLS);
        ck_assert_msg(strstr(p->a.why, client_why), "client: \"%s\" lacks \"%s\"", p->a.why,
                      client_why);
    }
}

START_TEST(test_tls_refusals)
{
    struct smlt_tls *srv = server_ctx(0), *cli = client_ctx("ca.pem", NULL, NULL);
    struct smlt_tls *wrong = client_ctx("wrong-ca.pem", NULL, NULL);
    struct pair p;
    /* a plaintext client on a TLS port */
    pair_open(&p, "127.0.0.1", NULL, srv);
    expect_refusal(&p, "wrong version number", NULL);
    ck_assert_int_lt(p.a.close_err, 0);
    /* OpenSSL sends no alert to what is no TLS at all: the server says it in plaintext */
    ck_assert_int_eq(p.a.frames, 1);
    ck_assert_int_eq(p.a.last_type, SMLT__MSG_TYPE__MSG_ERROR);
    pair_close(&p);
    /* a TLS client on a plaintext port: the server says what it saw */
    pair_open(&p, "127.0.0.1", cli, NULL);
    WAIT_UNTIL(p.base, p.a.closes == 1 && p.b.closes == 1);
    ck_assert_int_eq(p.b.close_err, SMLT_ETLS);
    ck_assert_msg(strstr(p.b.why, "speaks TLS"), "%s", p.b.why);
    ck_assert_int_eq(p.a.close_err, SMLT_ETLS);
    pair_close(&p);
    /* a server whose certificate another CA signed */
    pair_open(&p, "127.0.0.1", wrong, srv);
    expect_refusal(&p, "alert", "certificate verify failed");
    ck_assert_int_eq(p.a.frames, 0);
    pair_close(&p);
    /* a server whose certificate does not name the address dialled (127.0.0.2, loopback
     * too, is not among its names) */
    pair_open(&p, "127.0.0.2", cli, srv);
    expect_refusal(&p, "alert", "IP address mismatch");
    pair_close(&p);
    /* ... and localhost, a name the server certificate carries, is fine */
    pair_open(&p, "localhost", cli, srv);
    WAIT_UNTIL(p.base, p.a.connected && p.b.connected);
    pair_close(&p);
    smlt_tls_free(wrong);
    smlt_tls_free(cli);
    smlt_tls_free(srv);
}
END_TEST

START_TEST(test_tls_mutual)
{
    struct smlt_tls *srv = server_ctx(1);
    struct smlt_tls *anon = client_ctx("ca.pem", NULL, NULL);
    struct smlt_tls *good = client_ctx("ca.pem", "client.pem", "client.key");
    struct smlt_tls *wrong = client_ctx("ca.pem", "wrong.pem", "wrong.key");
    struct pair p;
    /* with the CA's client certificate: frames flow */
    pair_open(&p, "127.0.0.1", good, srv);
    Smlt__Ping ping = SMLT__PING__INIT;
    rpc_conn_send(p.a.c, SMLT__MSG_TYPE__MSG_PING, 1, &ping.base, NULL, 0, 0, NULL, NULL);
    WAIT_UNTIL(p.base, p.b.frames == 1);
    pair_close(&p);
    /* without a certificate; with one another CA signed: the server refuses, and the client
     * learns it (in TLS 1.3, from the alert after its own handshake ended) */
    pair_open(&p, "127.0.0.1", anon, srv);
    expect_refusal(&p, "certificate", "alert");
    pair_close(&p);
    pair_open(&p, "127.0.0.1", wrong, srv);
    expect_refusal(&p, "certificate verify failed", "alert");
    pair_close(&p);
    smlt_tls_free(wrong);
    smlt_tls_free(good);
    smlt_tls_free(anon);
    smlt_tls_free(srv);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("smlt_tls");
    TCase *tc = tcase_create("tls");
    tcase_add_test(tc, test_ctx_errors);
    tcase_add_test(tc, test_ctx_good);
    tcase_add_test(tc, test_tls_frames);
    tcase_add_test(tc, test_tls_full_socket);
    tcase_add_test(tc, test_tls_rate_cap);
    tcase_add_test(tc, test_tls_refusals);
    tcase_add_test(tc, test_tls_mutual);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *src = getenv("SMLT_SOURCE_DIR");
    snprintf(g_dir, sizeof g_dir, "/tmp/smlt-test-tls.XXXXXX");
    if (!src || !mkdtemp(g_dir)) {
        fprintf(stderr, "test_smlt_tls: needs SMLT_SOURCE_DIR and /tmp\n");
        return EXIT_FAILURE;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/tools/make-test-certs.sh' '%s' >/dev/null", src, g_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_smlt_tls: %s failed\n", cmd);
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(tls_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_smlt_tls: could not remove %s\n", g_dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
