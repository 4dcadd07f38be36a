/* rpc_conn.c: the connection state machine described in rpc_conn.h. */
#include "rpc_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "smlt.pb-c.h"
#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_tls.h"
#include "smlt_util.h"

enum conn_state { ST_HDR, ST_DEST, ST_PAYLOAD, ST_DISCARD };

#define DEFER_PROCESS 0x1u
#define DEFER_FREE 0x2u

/* Largest single read/write the bufferevent does per call: big enough that a referenced tensor
 * goes out in few writev calls, bounded so one connection cannot hog a wakeup. */
#define RPC_MAX_SINGLE_IO (4u << 20)
#define RPC_FLUSH_TIMEOUT_S 5
/* TLS read-ahead: OpenSSL fills a buffer this big with one recv(2) and decrypts records out
 * of it, instead of two recv(2) calls per 16 KiB record (see tls_kick()). */
#define RPC_TLS_READ_AHEAD (256u << 10)

struct rpc_conn {
    struct event_base *base;
    struct bufferevent *bev; /* output only, its reading is never enabled; TLS: an openssl
                                bufferevent, which also runs the handshake */
    int tls;                 /* TLS: input is SSL_read() from the socket after the handshake */
    int tls_up;              /* TLS: the handshake completed */
    int tls_starved;         /* TLS: the last SSL_read() wanted bytes the socket did not have */
    int tls_eof;             /* TLS: the stream ended (or failed, with close_err set) after
                                the bytes tls_read() returned last */
    struct evbuffer_cb_entry *out_cb; /* TLS: on_out_drained() */
    struct event *flush_ev;  /* TLS: sends the gathered records once the socket takes them */
    int accepted;            /* the server's end of the connection */
    char why[256];           /* what went wrong, in words (rpc_conn_errmsg()) */
    uint8_t *ib;             /* input buffer: headers, metadata, small payloads; bytes */
    size_t ib_cap, ib_head, ib_tail; /* [ib_head, ib_tail) not yet consumed */
    struct event *read_ev;   /* the one read event on the socket */
    int read_on;             /* read_ev is added */
    struct event *defer_ev;  /* deferred processing and freeing */
    struct rpc_conn_handler h;
    void *arg;
    struct rpc_limits lim;

    enum conn_state st;
    struct rpc_frame_hdr cur;
    uint8_t *meta;
    size_t meta_cap;
    void *dest;       /* decoded payload destination */
    uint8_t *wire;    /* where wire bytes go: dest, or zbuf when compressed */
    uint64_t got;     /* wire bytes of the current payload received */
    int direct;       /* the rest of the payload is read with recv() straight into wire */
    uint8_t *scratch; /* payloads with no destination named */
    size_t scratch_cap;
    uint8_t *zbuf; /* compressed wire bytes */
    size_t zbuf_cap;

    unsigned pauses;   /* rpc_conn_pause() count */
    int out_paused;    /* copied output over the high watermark (with backpressure on) */
    int backpressure;  /* rpc_conn_set_backpressure() */
    size_t ref_bytes;  /* queued output that references memory instead of copying it */
    struct ref_ctx *refs; /* their contexts (orphaned when the connection goes first) */
    int closing;
    int freeing;
    int close_err;
    unsigned defer_flags;

    uint64_t bytes_in, bytes_out, frames_bad;
    char peer[64];

    struct rpc_rate *rate;  /* the inbound/outbound cap, or NULL */
    struct event *rate_ev;  /* resumes reading once the inbound bucket has refilled */
    int rate_wait;          /* reading stopped until then */
};

/* Inbound: a token bucket of bytes checked before every recv(). Outbound: libevent's group. */
struct rpc_rate {
    double rate, burst, tokens, last;
    struct ev_token_bucket_cfg *cfg;
    struct bufferevent_rate_limit_group *out;
    unsigned members;
};

#define RATE_TICK_MS 5
#define RATE_MIN_READ (16u << 10) /* wait for this much credit rather than read in dribbles */
#define RPC_RATE_PIECE (64u << 10) /* a capped TLS connection's referenced output, per chain */

struct ref_ctx {
    struct rpc_conn *c; /* to count referenced bytes; NULL once the connection is freed */
    rpc_release_fn fn;
    void *arg;
    const void *data; /* the whole payload (queued in pieces on a capped TLS connection) */
    size_t len;
    struct ref_ctx *next, *prev; /* the connection's outstanding references */
};

static void conn_process(struct rpc_conn *c);
static void conn_update_read(struct rpc_conn *c);
static void conn_tls_drain(struct rpc_conn *c);
static void tls_kick(struct rpc_conn *c);
static void tls_flush(struct rpc_conn *c);
static int conn_tls_fail(struct rpc_conn *c, unsigned long e, int sock);
static int conn_arm_read(struct rpc_conn *c, int fd);
static size_t tls_unsent(const struct rpc_conn *c);
static size_t copied_out(const struct rpc_conn *c);

static void conn_defer(struct rpc_conn *c, unsigned flag)
{
    c->defer_flags |= flag;
    event_active(c->defer_ev, EV_TIMEOUT, 0);
}

/* TLS, a refused handshake: reads and drops what the peer sent that OpenSSL did not read (a
 * plaintext client's Hello, a TLS 1.3 client's first frames), so that closing the socket
 * sends a FIN after our last bytes, not a reset that could overtake them. Bounded. */
static void tls_drain_socket(struct rpc_conn *c)
{
    int fd = bufferevent_getfd(c->bev);
    char sink[4096];
    for (int i = 0; fd >= 0 && i < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
}

static void conn_free(struct rpc_conn *c)
{
    if (c->h.on_close)
        c->h.on_close(c, c->close_err ? c->close_err : SMLT_ECLOSED, c->arg);
    if (c->tls && !c->tls_up && c->accepted)
        tls_drain_socket(c);
    if (c->read_ev)
        event_free(c->read_ev);
    if (c->rate_ev)
        event_free(c->rate_ev);
    if (c->flush_ev)
        event_free(c->flush_ev);
    if (c->rate) {
        /* Leave the group now: the bufferevent may be finalized later, and the group freed
         * before that. */
        bufferevent_remove_from_rate_limit_group(c->bev);
        c->rate->members--;
    }
    event_free(c->defer_ev);
    free(c->ib);
    /* Drop what is still queued now: that runs the release callbacks of referenced payloads
     * while the connection exists (bufferevent_free() may finalize the buffer later, from the
     * loop, after c is gone). */
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->out_cb)
        evbuffer_remove_cb_entry(out, c->out_cb);
    evbuffer_drain(out, evbuffer_get_length(out));
    /* Any reference libevent still holds (it may finalize buffers from the loop later) must
     * not reach back into this connection. */
    for (struct ref_ctx *r = c->refs; r; r = r->next)
        r->c = NULL;
    c->refs = NULL;
    bufferevent_free(c->bev);
    free(c->meta);
    free(c->scratch);
    free(c->zbuf);
    free(c);
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct rpc_conn *c = arg;
    unsigned flags = c->defer_flags;
    c->defer_flags = 0;
    if (flags & DEFER_FREE) {
        conn_free(c);
        return;
    }
    if ((flags & DEFER_PROCESS) && !c->closing) {
        conn_process(c);
        if (c->tls)
            conn_tls_drain(c);
    }
}

void rpc_conn_abort(struct rpc_conn *c, int err)
{
    if (c->freeing)
        return;
    c->freeing = 1;
    c->closing = 1;
    if (!c->close_err)
        c->close_err = err;
    bufferevent_disable(c->bev, EV_WRITE);
    if (c->flush_ev)
        event_del(c->flush_ev);
    conn_update_read(c);
    c->direct = 0;
    conn_defer(c, DEFER_FREE);
}

void rpc_conn_close(struct rpc_conn *c, int err)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_err = err;
    conn_update_read(c);
    c->direct = 0;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && tls_unsent(c) == 0) {
        rpc_conn_abort(c, err);
        return;
    }
    /* Flush what is queued (the error reply, typically), then free from the write callback
     * (TLS: or from on_flush(), when the last records wait in the gathering BIO). */
    struct timeval tv = {RPC_FLUSH_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, NULL, &tv);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_WRITE);
    if (tls_unsent(c))
        tls_flush(c);
}

/* 1 when the connection's first bytes are a TLS record (handshake 0x16 or alert 0x15, then
 * major version 3): its peer speaks TLS and this end does not. */
static int looks_like_tls(const struct rpc_conn *c)
{
    const uint8_t *b = c->ib + c->ib_head;
    return !c->tls && c->bytes_in == 0 && c->ib_tail - c->ib_head >= 2 &&
           (b[0] == 0x16 || b[0] == 0x15) && b[1] == 0x03;
}

static void conn_bad_frame(struct rpc_conn *c, enum rpc_frame_status st, const char *why,
                           uint64_t req_id)
{
    if (looks_like_tls(c)) {
        /* A TLS client on a plaintext port, or a plaintext client of a TLS server (whose
         * alert this is): say so, once, instead of "bad magic". */
        c->frames_bad++;
        snprintf(c->why, sizeof c->why,
                 "the peer speaks TLS and this end does not (check the TLS options of both)");
        log_warn("conn %s: %s; closing", c->peer, c->why);
        rpc_conn_send_error(c, req_id, SMLT_ETLS, "%s", c->why);
        rpc_conn_close(c, SMLT_ETLS);
        return;
    }
    int code = st == RPC_FRAME_TOO_BIG ? SMLT_ETOOBIG : SMLT_EPROTO;
    c->frames_bad++;
    log_warn("conn %s: bad frame (%s): %s; closing", c->peer, rpc_frame_status_str(st),
             why ? why : "?");
    rpc_conn_send_error(c, req_id, code, "bad frame (%s): %s", rpc_frame_status_str(st),
                        why ? why : "?");
    rpc_conn_close(c, code);
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return 0;
    uint8_t *p = realloc(*buf, need);
    if (!p)
        return SMLT_ENOMEM;
    *buf = p;
    *cap = need;
    return 0;
}

static void conn_deliver(struct rpc_conn *c, void *payload)
{
    c->st = ST_HDR;
    if (c->h.on_frame)
        c->h.on_frame(c, &c->cur, c->meta, payload, c->arg);
}

/* The payload's wire bytes are all in: decode and deliver, or drop a discarded one. */
static void conn_finish_payload(struct rpc_conn *c)
{
    if (c->st == ST_DISCARD) {
        c->st = ST_HDR;
        return;
    }
    if (c->cur.flags & RPC_FLAG_LZ4) {
        if (rpc_payload_decode(&c->cur, c->zbuf, c->dest) != 0) {
            conn_bad_frame(c, RPC_FRAME_CORRUPT, "lz4 payload does not decode", c->cur.req_id);
            return;
        }
    }
    conn_deliver(c, c->dest);
}

/* The input buffer: allocated once per connection, consumed from the front, compacted when the
 * free room at the end runs low. It grows only to hold a whole header + metadata (at most
 * SMLT_MAX_META_LEN past the header). */
#define RPC_IB_INIT (128u << 10)

static size_t ib_len(const struct rpc_conn *c)
{
    return c->ib_tail - c->ib_head;
}

/* Makes room at the end for at least a read's worth. Returns 0 or SMLT_ENOMEM. */
static int ib_room(struct rpc_conn *c)
{
    if (c->ib_head == c->ib_tail)
        c->ib_head = c->ib_tail = 0;
    if (c->ib_cap - c->ib_tail >= RPC_IB_INIT / 4)
        return 0;
    if (c->ib_head > 0) {
        memmove(c->ib, c->ib + c->ib_head, ib_len(c));
        c->ib_tail -= c->ib_head;
        c->ib_head = 0;
        if (c->ib_cap - c->ib_tail >= RPC_IB_INIT / 4)
            return 0;
    }
    size_t cap = c->ib_cap ? c->ib_cap * 2 : RPC_IB_INIT;
    if (cap > SMLT_FRAME_HDR_LEN + SMLT_MAX_META_LEN + RPC_IB_INIT)
        cap = SMLT_FRAME_HDR_LEN + SMLT_MAX_META_LEN + RPC_IB_INIT;
    if (cap <= c->ib_cap)
        return 0; /* full at the largest size: a frame's header + metadata always fit */
    uint8_t *p = realloc(c->ib, cap);
    if (!p)
        return SMLT_ENOMEM;
    c->ib = p;
    c->ib_cap = cap;
    return 0;
}

/* How many of want bytes c may read now: all of them without a cap; else the inbound
 * bucket's credit, and 0 (reading stopped, a timer set) when it has too little. */
static size_t rate_allow(struct rpc_conn *c, size_t want)
{
    struct rpc_rate *r = c->rate;
    if (!r || want == 0)
        return want;
    double t = smlt_now_mono();
    r->tokens += (t - r->last) * r->rate;
    if (r->tokens > r->burst)
        r->tokens = r->burst;
    r->last = t;
    double need = want < RATE_MIN_READ ? (double)want : RATE_MIN_READ;
    if (r->tokens >= need)
        return r->tokens < (double)want ? (size_t)r->tokens : want;
    double wait = (need - r->tokens) / r->rate;
    struct timeval tv = {(time_t)wait, (suseconds_t)((wait - (time_t)wait) * 1e6) + 1};
    c->rate_wait = 1;
    evtimer_add(c->rate_ev, &tv);
    conn_update_read(c);
    return 0;
}

static void rate_spend(struct rpc_conn *c, size_t n)
{
    if (c->rate)
        c->rate->tokens -= (double)n;
}

static void on_rate(evutil_socket_t fd, short what, void *arg)
{
    struct rpc_conn *c = arg;
    c->rate_wait = 0;
    conn_update_read(c);
    if (c->tls)
        conn_tls_drain(c);
}

/* TLS: SSL_read()s up to len bytes of plaintext straight into buf, record after record
 * (OpenSSL gives one record per call, decrypted in its own buffer and copied out). Returns
 * as recv(2) does: bytes, 0 at the end of the stream, or -1 with errno (EAGAIN: the socket
 * has no more now). The end or a failure met after some bytes comes on the next call. A TLS
 * failure (an alert, a bad record) sets c->why and c->close_err (SMLT_ETLS) and is EPROTO. */
static ssize_t tls_read(struct rpc_conn *c, uint8_t *buf, size_t len)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    size_t got = 0;
    c->tls_starved = 0;
    while (got < len && !c->tls_eof) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(ssl, buf + got, len - got, &n);
        if (r == 1) {
            got += n;
            continue;
        }
        int sys = errno, e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            /* (WANT_WRITE: only a renegotiation could ask for it, and it is off.) */
            c->tls_starved = 1;
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 &&
                                           sys == 0)) {
            c->tls_eof = 1; /* close_notify, or a hang-up (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            c->tls_eof = -sys; /* a socket error: what it would be without TLS */
        } else {
            c->close_err = conn_tls_fail(c, ERR_get_error(), 0);
            ERR_clear_error();
            c->tls_eof = -EPROTO;
        }
    }
    if (got)
        return (ssize_t)got;
    if (c->tls_eof < 0) {
        errno = -c->tls_eof;
        return -1;
    }
    if (c->tls_eof)
        return 0;
    errno = EAGAIN;
    return -1;
}

/* recv(2) for both kinds of connection. Plain: from the socket. TLS: first what the openssl
 * bufferevent decrypted into its input evbuffer itself (only when a write of its own waited
 * for a read, i.e. never without renegotiation), then SSL_read() from the socket. */
static ssize_t conn_recv(struct rpc_conn *c, int fd, void *buf, size_t len)
{
    if (!c->tls)
        return recv(fd, buf, len, 0);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in) > 0)
        return evbuffer_remove(in, buf, len);
    return tls_read(c, buf, len);
}

/* Reads the rest of the current payload straight into its buffer. Returns 0 to go on reading
 * frames, 1 if the payload is still incomplete (or the connection died). */
static int conn_read_direct(struct rpc_conn *c, int fd)
{
    uint8_t sink[64 << 10];
    size_t budget = SMLT_DIRECT_READ_BUDGET;
    while (c->got < c->cur.payload_len && budget > 0) {
        size_t want = (size_t)(c->cur.payload_len - c->got);
        if (want > budget)
            want = budget;
        uint8_t *to = c->wire + c->got;
        if (c->st == ST_DISCARD) {
            to = sink;
            if (want > sizeof sink)
                want = sizeof sink;
        }
        if ((want = rate_allow(c, want)) == 0)
            return 1; /* on_rate() resumes reading */
        ssize_t n = conn_recv(c, fd, to, want);
        if (n > 0) {
            rate_spend(c, (size_t)n);
            c->got += (uint64_t)n;
            c->bytes_in += (uint64_t)n;
            budget -= (size_t)n;
            continue;
        }
        if (n == 0) {
            rpc_conn_abort(c, SMLT_ECLOSED);
            return 1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        log_debug("conn %s: recv: %s", c->peer, strerror(errno));
        rpc_conn_abort(c, SMLT_EIO);
        return 1;
    }
    if (c->got < c->cur.payload_len)
        return 1; /* the persistent read event fires again when more arrives */
    c->direct = 0;
    conn_finish_payload(c);
    return c->closing;
}

/* The socket is readable (plain), or the openssl bufferevent has plaintext for us (TLS): a
 * payload in direct mode is read into its buffer; otherwise bytes go into the input buffer and
 * whole frames are handled from there. */
static void conn_read(struct rpc_conn *c, int fd)
{
    if (c->closing)
        return;
    if (c->direct) {
        if (conn_read_direct(c, fd))
            return;
    } else {
        if (ib_room(c) != 0) {
            rpc_conn_abort(c, SMLT_ENOMEM);
            return;
        }
        if (c->ib_tail == c->ib_cap) {
            /* Full and nothing consumable: cannot happen for valid frames (a header and its
             * metadata always fit); process what is there rather than read 0 bytes. */
            conn_process(c);
            return;
        }
        size_t want = rate_allow(c, c->ib_cap - c->ib_tail);
        if (want == 0)
            return; /* on_rate() resumes reading */
        ssize_t n = conn_recv(c, fd, c->ib + c->ib_tail, want);
        if (n == 0) {
            rpc_conn_abort(c, SMLT_ECLOSED);
            return;
        }
        if (n > 0)
            rate_spend(c, (size_t)n);
        if (n < 0) {
            int e = errno;
            if (e == EINTR || e == EAGAIN || e == EWOULDBLOCK)
                return;
            log_debug("conn %s: read: %s", c->peer, strerror(e));
            rpc_conn_abort(c, e == ECONNREFUSED || e == ECONNRESET ? SMLT_ECLOSED : SMLT_EIO);
            return;
        }
        c->ib_tail += (size_t)n;
    }
    conn_process(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct rpc_conn *c = arg;
    conn_read(c, fd);
    tls_kick(c); /* a direct read may have stopped at its budget */
}

/* TLS with read-ahead: OpenSSL holds bytes it has read off the socket and not yet decrypted
 * or returned, which epoll does not see. When reading stopped with some there (the input
 * buffer or a direct read's budget was full, or reading was off), no read event would come
 * for them until the peer sent more: make the read event active, so that they are read on
 * the next turn of the loop. Not when the last SSL_read() found only part of a record: the
 * rest comes from the socket. */
static void tls_kick(struct rpc_conn *c)
{
    if (c->tls && c->read_on && !c->closing && !c->tls_starved &&
        SSL_has_pending(bufferevent_openssl_get_ssl(c->bev)))
        event_active(c->read_ev, EV_READ, 1);
}

/* TLS: takes what the openssl bufferevent decrypted into its input itself (see conn_recv()),
 * as conn_read() takes bytes from a socket, until none is left, reading stops (paused,
 * waiting for a destination, out of rate credit, closing) or the frame budget defers the
 * rest. libevent calls back only when new plaintext arrives, so what is left here is taken
 * again when reading resumes (on_defer(), on_rate()). */
static void conn_tls_drain(struct rpc_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t left;
    while ((left = evbuffer_get_length(in)) > 0 && c->read_on && !c->closing &&
           !(c->defer_flags & DEFER_PROCESS)) {
        conn_read(c, -1);
        if (evbuffer_get_length(in) == left)
            break; /* nothing taken: no room or no credit; a timer or event resumes it */
    }
    tls_kick(c);
}

static void on_bev_read(struct bufferevent *bev, void *arg)
{
    conn_tls_drain(arg);
}

/* Asks the handler where the current frame's payload goes and sets up receiving it.
 * Returns 0 to go on, 1 to stop processing (waiting for a destination, or closing). */
static int conn_pick_dest(struct rpc_conn *c)
{
    void *dest = NULL;
    int rc = c->h.on_payload ? c->h.on_payload(c, &c->cur, c->meta, &dest, c->arg) : 0;
    if (c->closing)
        return 1;
    if (rc == RPC_CONN_WAIT) {
        c->st = ST_DEST;
        conn_update_read(c);
        return 1;
    }
    c->got = 0;
    if (rc < 0) {
        c->st = ST_DISCARD;
        return 0;
    }
    if (!dest) {
        if (grow(&c->scratch, &c->scratch_cap, (size_t)c->cur.raw_len) != 0) {
            rpc_conn_send_error(c, c->cur.req_id, SMLT_ENOMEM, "no memory for a payload of %llu bytes",
                                (unsigned long long)c->cur.raw_len);
            c->st = ST_DISCARD;
            return 0;
        }
        dest = c->scratch;
    }
    c->dest = dest;
    c->wire = dest;
    if (c->cur.flags & RPC_FLAG_LZ4) {
        if (grow(&c->zbuf, &c->zbuf_cap, (size_t)c->cur.payload_len) != 0) {
            rpc_conn_send_error(c, c->cur.req_id, SMLT_ENOMEM, "no memory for a payload");
            c->st = ST_DISCARD;
            return 0;
        }
        c->wire = c->zbuf;
    }
    c->st = ST_PAYLOAD;
    return 0;
}

static void conn_process(struct rpc_conn *c)
{
    unsigned frames = 0;
    while (!c->closing && !c->direct) {
        if (frames >= SMLT_FRAMES_PER_WAKEUP) {
            /* Yield to the other connections; come back from a deferred event. */
            if (ib_len(c) > 0)
                conn_defer(c, DEFER_PROCESS);
            break;
        }
        if (c->st == ST_HDR) {
            if (c->pauses || c->out_paused)
                break;
            size_t len = ib_len(c);
            if (len == 0)
                break;
            const uint8_t *hb = c->ib + c->ib_head;
            size_t n = len < SMLT_FRAME_HDR_LEN ? len : SMLT_FRAME_HDR_LEN;
            const char *why = NULL;
            /* Parsed into a fresh header: on a refusal its request id is the refused frame's
             * (when the header's check passed) or 0, never the previous frame's. */
            struct rpc_frame_hdr fh = {0};
            enum rpc_frame_status st = rpc_frame_parse_hdr(hb, n, &c->lim, &fh, &why);
            if (st == RPC_FRAME_NEED_MORE)
                break;
            if (st != RPC_FRAME_COMPLETE) {
                conn_bad_frame(c, st, why, fh.req_id);
                return;
            }
            c->cur = fh;
            if (len < SMLT_FRAME_HDR_LEN + (size_t)c->cur.meta_len) {
                /* Make sure the whole header + metadata can sit in the buffer. */
                if (grow(&c->ib, &c->ib_cap,
                         c->ib_head + SMLT_FRAME_HDR_LEN + (size_t)c->cur.meta_len) != 0) {
                    rpc_conn_abort(c, SMLT_ENOMEM);
                    return;
                }
                break;
            }
            if (grow(&c->meta, &c->meta_cap, c->cur.meta_len ? c->cur.meta_len : 1) != 0) {
                rpc_conn_abort(c, SMLT_ENOMEM);
                return;
            }
            memcpy(c->meta, hb + SMLT_FRAME_HDR_LEN, c->cur.meta_len);
            c->ib_head += SMLT_FRAME_HDR_LEN + (size_t)c->cur.meta_len;
            c->bytes_in += SMLT_FRAME_HDR_LEN + (uint64_t)c->cur.meta_len;
            if (c->cur.payload_len == 0) {
                frames++;
                conn_deliver(c, NULL);
                continue;
            }
            c->st = ST_DEST;
        }
        if (c->st == ST_DEST) {
            if (conn_pick_dest(c))
                break;
        }
        /* ST_PAYLOAD or ST_DISCARD: first what the input buffer already holds. */
        size_t avail = ib_len(c);
        uint64_t need = c->cur.payload_len - c->got;
        size_t take = avail < need ? avail : (size_t)need;
        if (take) {
            if (c->st != ST_DISCARD)
                memcpy(c->wire + c->got, c->ib + c->ib_head, take);
            c->ib_head += take;
            c->got += take;
            c->bytes_in += take;
        }
        if (c->got < c->cur.payload_len) {
            if (c->cur.payload_len - c->got >= SMLT_DIRECT_READ_MIN)
                c->direct = 1;
            break;
        }
        frames++;
        conn_finish_payload(c);
    }
    conn_update_read(c);
}

/* Adds or removes the read event (TLS: there is one from the end of the handshake on). */
static void conn_update_read(struct rpc_conn *c)
{
    int want = !c->closing && c->read_ev && c->st != ST_DEST && !c->rate_wait &&
               !((c->pauses || c->out_paused) && c->st == ST_HDR);
    if (want && !c->read_on)
        event_add(c->read_ev, NULL);
    else if (!want && c->read_on)
        event_del(c->read_ev);
    c->read_on = want;
    tls_kick(c);
}

static void on_bev_write(struct bufferevent *bev, void *arg)
{
    struct rpc_conn *c = arg;
    size_t len = evbuffer_get_length(bufferevent_get_output(bev));
    if (c->closing) {
        if (len == 0 && tls_unsent(c) == 0)
            rpc_conn_abort(c, c->close_err);
        return;
    }
    (void)len;
    if (c->out_paused && copied_out(c) <= SMLT_OUTBUF_HIGH / 2) {
        c->out_paused = 0;
        conn_update_read(c);
        conn_defer(c, DEFER_PROCESS);
    }
}

/* TLS, the server's end: the first bytes were no TLS record, so the client most likely
 * speaks our protocol in plaintext. OpenSSL sends no alert then ("doesn't look like TLS"),
 * so the client would only see the connection close and try again: tell it, in plaintext,
 * with an ErrorReply it can read (request id 0). Written straight to the socket, best
 * effort. */
static void tls_tell_plain_peer(struct rpc_conn *c)
{
    int fd = bufferevent_getfd(c->bev);
    Smlt__ErrorReply er = SMLT__ERROR_REPLY__INIT;
    er.code = SMLT_ETLS;
    er.message = "this port speaks TLS: connect with TLS (trust the server's CA)";
    uint8_t buf[SMLT_FRAME_HDR_LEN + 256];
    size_t mlen = protobuf_c_message_get_packed_size(&er.base);
    if (fd < 0 || mlen > sizeof buf - SMLT_FRAME_HDR_LEN)
        return;
    struct rpc_frame_hdr h = {.version = SMLT_PROTO_VERSION,
                              .type = SMLT__MSG_TYPE__MSG_ERROR,
                              .meta_len = (uint32_t)mlen};
    rpc_frame_hdr_encode(buf, &h);
    protobuf_c_message_pack(&er.base, buf + SMLT_FRAME_HDR_LEN);
    tls_drain_socket(c);
    if (send(fd, buf, SMLT_FRAME_HDR_LEN + mlen, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("conn %s: cannot tell the plaintext peer: %s", c->peer, strerror(errno));
}

/* TLS: the connection failed: an OpenSSL error e (the handshake, a certificate, an alert from
 * the peer, a bad record) is SMLT_ETLS, said in c->why and logged; a plain socket error (sock,
 * an errno) is what it would be without TLS. */
static int conn_tls_fail(struct rpc_conn *c, unsigned long e, int sock)
{
    if (!e && sock && sock != EAGAIN && sock != EWOULDBLOCK) {
        snprintf(c->why, sizeof c->why, "connection with %s: %s", c->peer, strerror(sock));
        log_debug("conn %s: %s", c->peer, c->why);
        return sock == ECONNREFUSED || sock == ECONNRESET || sock == EPIPE ? SMLT_ECLOSED
                                                                            : SMLT_EIO;
    }
    char d[160];
    smlt_tls_describe(bufferevent_openssl_get_ssl(c->bev), e, d, sizeof d);
    const char *what = c->tls_up ? "connection" : "handshake";
    if (c->accepted && !c->tls_up && ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER)
        tls_tell_plain_peer(c);
    snprintf(c->why, sizeof c->why, "TLS %s with %s failed: %s", what, c->peer, d);
    log_warn("conn %s: TLS %s failed: %s", c->peer, what, d);
    return SMLT_ETLS;
}

/* The same for a failure the openssl bufferevent reports (the handshake, a write). */
static int conn_tls_failed(struct rpc_conn *c)
{
    unsigned long e = bufferevent_get_openssl_error(c->bev);
    while (bufferevent_get_openssl_error(c->bev) != 0)
        ; /* the first error is the cause; later ones repeat it */
    return conn_tls_fail(c, e, EVUTIL_SOCKET_ERROR());
}

static size_t tls_unsent(const struct rpc_conn *c)
{
    return c->tls ? smlt_tls_unsent(bufferevent_openssl_get_ssl(c->bev)) : 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct rpc_conn *c = arg;
    if (what & EV_TIMEOUT) {
        log_debug("conn %s: the last bytes were not taken in %d s", c->peer,
                  RPC_FLUSH_TIMEOUT_S);
        rpc_conn_abort(c, SMLT_ETIMEDOUT);
        return;
    }
    tls_flush(c);
}

/* TLS: sends what the gathering BIO holds (smlt_tls_set_fd()). When the socket takes only
 * part, flush_ev sends the rest once it is writable (with the flush timeout when closing);
 * a closing connection whose output is all out is freed. */
static void tls_flush(struct rpc_conn *c)
{
    if (!c->tls || c->freeing)
        return;
    int r = smlt_tls_flush(bufferevent_openssl_get_ssl(c->bev));
    if (r < 0) {
        int e = errno;
        log_debug("conn %s: send: %s", c->peer, strerror(e));
        rpc_conn_abort(c, e == ECONNRESET || e == EPIPE ? SMLT_ECLOSED : SMLT_EIO);
        return;
    }
    if (r > 0) {
        if (!c->flush_ev)
            c->flush_ev = event_new(c->base, bufferevent_getfd(c->bev), EV_WRITE, on_flush, c);
        struct timeval tv = {RPC_FLUSH_TIMEOUT_S, 0};
        if (!c->flush_ev || event_add(c->flush_ev, c->closing ? &tv : NULL) != 0)
            rpc_conn_abort(c, SMLT_ENOMEM);
        return;
    }
    if (c->closing && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        rpc_conn_abort(c, c->close_err);
}

/* TLS: the bufferevent has encrypted a batch of output into the gathering BIO (and drained
 * its plaintext): send it now, not when the BIO fills. */
static void on_out_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    if (info->n_deleted)
        tls_flush(arg);
}

static void on_bev_event(struct bufferevent *bev, short what, void *arg)
{
    struct rpc_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        /* A refused connect can be seen first by our read (which takes the socket error and
         * aborts); libevent then reports "connected": ignore it on a closing connection. TLS:
         * both ends get this once the handshake is through. */
        c->tls_up = c->tls;
        if (c->closing)
            return;
        if (c->tls) {
            /* From here on this connection reads the socket itself (SSL_read() into the
             * input buffer or straight into a payload's destination), as a plain one does;
             * the bufferevent writes. Arming the read event also kicks it for the first
             * frames the handshake may have read ahead into OpenSSL. */
            bufferevent_disable(bev, EV_READ);
            int fd = bufferevent_getfd(bev);
            if (fd < 0 || conn_arm_read(c, fd) != 0) {
                rpc_conn_abort(c, SMLT_ENOMEM);
                return;
            }
        }
        if (c->h.on_connected)
            c->h.on_connected(c, c->arg);
        return;
    }
    if (c->tls && (what & BEV_EVENT_EOF) && !c->tls_up) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (c->accepted && ssl && BIO_number_read(SSL_get_rbio(ssl)) == 0) {
            /* Connected and hung up without a byte: a port probe (a load balancer's, a
             * Kubernetes tcpSocket check), not a refusal. */
            log_debug("conn %s: closed before the TLS handshake", c->peer);
            rpc_conn_abort(c, SMLT_ECLOSED);
            return;
        }
        /* The peer hung up in the handshake: it refused our certificate or is no TLS peer. */
        snprintf(c->why, sizeof c->why, "TLS handshake with %s failed: %s", c->peer,
                 "the peer closed the connection");
        log_warn("conn %s: TLS handshake failed: the peer closed the connection", c->peer);
        rpc_conn_abort(c, SMLT_ETLS);
        return;
    }
    if (c->tls && (what & BEV_EVENT_ERROR)) {
        rpc_conn_abort(c, conn_tls_failed(c));
        return;
    }
    if (what & BEV_EVENT_EOF) {
        /* TLS: frames decrypted before the end (an error reply, typically) come first. */
        if (c->tls)
            conn_tls_drain(c);
        rpc_conn_abort(c, SMLT_ECLOSED);
    } else if (what & BEV_EVENT_TIMEOUT) {
        rpc_conn_abort(c, SMLT_ETIMEDOUT);
    } else if (what & BEV_EVENT_ERROR) {
        int e = EVUTIL_SOCKET_ERROR();
        log_debug("conn %s: %s", c->peer, evutil_socket_error_to_string(e));
        rpc_conn_abort(c, e == ECONNREFUSED ? SMLT_ECLOSED : SMLT_EIO);
    }
}

static struct rpc_conn *conn_alloc(struct event_base *base, struct bufferevent *bev, int tls,
                                   const struct rpc_limits *lim, const struct rpc_conn_handler *h,
                                   void *arg)
{
    struct rpc_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->defer_ev = event_new(base, -1, 0, on_defer, c);
    if (!c->defer_ev) {
        free(c);
        return NULL;
    }
    c->base = base;
    c->bev = bev;
    c->h = *h;
    c->arg = arg;
    c->lim = *lim;
    c->st = ST_HDR;
    c->tls = tls;
    bufferevent_set_max_single_write(bev, RPC_MAX_SINGLE_IO);
    if (tls) {
        /* A peer that closes without close_notify is an end of stream, not an error: frames
         * are length-prefixed, so a cut one is seen as cut anyway. */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), on_out_drained, c);
        if (!c->out_cb) {
            event_free(c->defer_ev);
            free(c);
            return NULL;
        }
    }
    bufferevent_setcb(bev, tls ? on_bev_read : NULL, on_bev_write, on_bev_event, c);
    bufferevent_setwatermark(bev, EV_WRITE, SMLT_OUTBUF_HIGH / 2, 0);
    bufferevent_enable(bev, EV_WRITE);
    return c;
}

/* Creates the read event once the socket exists. Returns 0 or SMLT_ENOMEM. */
static int conn_arm_read(struct rpc_conn *c, int fd)
{
    c->read_ev = event_new(c->base, fd, EV_READ | EV_PERSIST, on_read, c);
    if (!c->read_ev)
        return SMLT_ENOMEM;
    conn_update_read(c);
    return 0;
}

static void fd_tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Socket buffers big enough that a tensor of a few megabytes crosses in one write and one
 * wakeup of the receiver, instead of a refill round trip per default-sized buffer (16 KiB send
 * buffer at first). Set before connect() / listen() so the window scale is negotiated. */
static void fd_bufs(int fd)
{
    int sz = SMLT_SOCK_BUF;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
}

static void peer_name(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
        snprintf(out, cap, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        port = ntohs(s6->sin6_port);
        snprintf(out, cap, "[%s]:%d", host, port);
    } else {
        snprintf(out, cap, "?");
    }
}

/* Read-ahead for rpc_conn's own sessions only (evhttp's bufferevents would stall on it: they
 * have no tls_kick()). */
static void tls_read_ahead(SSL *ssl)
{
    SSL_set_read_ahead(ssl, 1);
    SSL_set_default_read_buffer_len(ssl, RPC_TLS_READ_AHEAD);
}

/* The bufferevent of a new connection on fd: plain, or TLS when tls is set (host: the name
 * the server's certificate must carry, for a connection we dial; NULL when we accepted it).
 * NULL with *why SMLT_ETLS (logged) or SMLT_ENOMEM; fd stays the caller's to close then. */
static struct bufferevent *bev_new(struct event_base *base, int fd, struct smlt_tls *tls,
                                   const char *host, int *why)
{
    *why = SMLT_ENOMEM;
    if (!tls)
        return bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    char msg[256];
    SSL *ssl = smlt_tls_ssl_new(tls, host, msg, sizeof msg);
    if (!ssl) {
        if (host)
            log_warn("conn %s: %s", host, msg);
        else
            log_warn("conn fd%d: %s", fd, msg);
        *why = SMLT_ETLS;
        return NULL;
    }
    tls_read_ahead(ssl);
    if (smlt_tls_set_fd(ssl, fd) != 0) {
        SSL_free(ssl);
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, fd, ssl, host ? BUFFEREVENT_SSL_CONNECTING : BUFFEREVENT_SSL_ACCEPTING,
        BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        SSL_free(ssl);
    return bev;
}

struct rpc_conn *rpc_conn_new_fd_tls(struct event_base *base, int fd, struct smlt_tls *tls,
                                     const struct rpc_limits *lim,
                                     const struct rpc_conn_handler *h, void *arg)
{
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    fd_tune(fd);
    int why;
    struct bufferevent *bev = bev_new(base, fd, tls, NULL, &why);
    if (!bev) {
        close(fd);
        return NULL;
    }
    struct rpc_conn *c = conn_alloc(base, bev, tls != NULL, lim, h, arg);
    if (!c) {
        bufferevent_free(bev);
        return NULL;
    }
    c->accepted = 1;
    if (!tls && conn_arm_read(c, fd) != 0) {
        c->h.on_close = NULL; /* the caller learns of the failure from the NULL return */
        conn_free(c);
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        peer_name((struct sockaddr *)&ss, c->peer, sizeof c->peer);
    else
        snprintf(c->peer, sizeof c->peer, "fd%d", fd);
    return c;
}

struct rpc_conn *rpc_conn_new_fd(struct event_base *base, int fd, const struct rpc_limits *lim,
                                 const struct rpc_conn_handler *h, void *arg)
{
    return rpc_conn_new_fd_tls(base, fd, NULL, lim, h, arg);
}

struct rpc_conn *rpc_conn_connect_tls(struct event_base *base, const char *addr,
                                      struct smlt_tls *tls, const struct rpc_limits *lim,
                                      const struct rpc_conn_handler *h, void *arg, int *err)
{
    struct sockaddr_storage ss;
    int sl;
    int rc = rpc_net_resolve(addr, &ss, &sl);
    if (rc) {
        *err = rc;
        return NULL;
    }
    int sfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sfd < 0) {
        *err = SMLT_ESYS;
        return NULL;
    }
    fd_bufs(sfd);
    /* The server's certificate must name the host dialled (a name or an IP address). */
    struct bufferevent *bev = bev_new(base, sfd, tls, addr, err);
    if (!bev) {
        close(sfd);
        return NULL;
    }
    struct rpc_conn *c = conn_alloc(base, bev, tls != NULL, lim, h, arg);
    if (!c) {
        bufferevent_free(bev);
        *err = SMLT_ENOMEM;
        return NULL;
    }
    snprintf(c->peer, sizeof c->peer, "%s", addr);
    if (bufferevent_socket_connect(bev, (struct sockaddr *)&ss, sl) != 0) {
        /* libevent reports an immediate failure through the event callback as well; treat it
         * as a dead connection that the caller learns of from on_close. */
        rpc_conn_abort(c, SMLT_EIO);
        return c;
    }
    int fd = bufferevent_getfd(bev);
    /* TLS: libevent's connect gave the session a socket BIO of its own (the handshake has not
     * begun): the gathering one again. The read event comes with the handshake's end. */
    if (fd < 0 || (tls && smlt_tls_set_fd(bufferevent_openssl_get_ssl(bev), fd) != 0) ||
        (!tls && conn_arm_read(c, fd) != 0)) {
        rpc_conn_abort(c, SMLT_EIO);
        return c;
    }
    fd_tune(fd);
    evutil_make_socket_closeonexec(fd);
    return c;
}

struct rpc_conn *rpc_conn_connect(struct event_base *base, const char *addr,
                                  const struct rpc_limits *lim, const struct rpc_conn_handler *h,
                                  void *arg, int *err)
{
    return rpc_conn_connect_tls(base, addr, NULL, lim, h, arg, err);
}

static void on_ref_cleanup(const void *data, size_t len, void *extra)
{
    struct ref_ctx *r = extra;
    data = r->data;
    len = r->len;
    if (r->c) {
        r->c->ref_bytes -= len;
        if (r->prev)
            r->prev->next = r->next;
        else
            r->c->refs = r->next;
        if (r->next)
            r->next->prev = r->prev;
    }
    if (r->fn)
        r->fn(data, len, r->arg);
    free(r);
}

static void free_zdata(const void *data, size_t len, void *arg)
{
    free((void *)data);
}

/* Queues len bytes at data by reference; r (filled in but for data, len and the list) is
 * called back once all of them are out. A TLS connection with an emulated card gets them
 * in pieces: the openssl bufferevent hands SSL_write() whole chains whatever its rate limit
 * allows (evbuffer_peek()'s last extent runs to the chain's end), so one chain of 100 MB
 * would go out at once, around the cap. Only the last piece calls back. */
static void add_ref(struct rpc_conn *c, struct evbuffer *out, const void *data, size_t len,
                    struct ref_ctx *r)
{
    r->data = data;
    r->len = len;
    if (c->refs)
        c->refs->prev = r;
    c->refs = r;
    c->ref_bytes += len;
    const uint8_t *p = data;
    if (c->tls && c->rate) {
        for (; len > RPC_RATE_PIECE; p += RPC_RATE_PIECE, len -= RPC_RATE_PIECE)
            evbuffer_add_reference(out, p, RPC_RATE_PIECE, NULL, NULL);
    }
    evbuffer_add_reference(out, p, len, on_ref_cleanup, r);
}

/* Queued output the connection holds a copy of (references pin memory that exists anyway). */
static size_t copied_out(const struct rpc_conn *c)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
    return n > c->ref_bytes ? n - c->ref_bytes : 0;
}

int rpc_conn_send(struct rpc_conn *c, uint8_t type, uint64_t req_id, const ProtobufCMessage *meta,
                  const void *payload, size_t len, unsigned opts, rpc_release_fn release,
                  void *release_arg)
{
    int rc = 0;
    int released = 0;
    if (c->closing && !(type == SMLT__MSG_TYPE__MSG_ERROR && !c->freeing)) {
        rc = SMLT_ECLOSED;
        goto out;
    }
    size_t mlen = meta ? protobuf_c_message_get_packed_size(meta) : 0;
    if (mlen > SMLT_MAX_META_LEN || len > SMLT_MAX_PAYLOAD) {
        rc = SMLT_ETOOBIG;
        goto out;
    }
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct rpc_frame_hdr h = {.version = SMLT_PROTO_VERSION,
                              .type = type,
                              .req_id = req_id,
                              .meta_len = (uint32_t)mlen,
                              .payload_len = len,
                              .raw_len = len};
    void *zdata = NULL;
    if (len && (opts & RPC_SEND_MAY_COMPRESS) && rpc_payload_should_compress(payload, len)) {
        size_t bound = rpc_payload_bound(len);
        zdata = bound ? malloc(bound) : NULL;
        size_t zlen = zdata ? rpc_payload_compress(payload, len, zdata, bound) : 0;
        if (zlen && zlen < len) {
            h.flags |= RPC_FLAG_LZ4;
            h.payload_len = zlen;
        } else {
            free(zdata);
            zdata = NULL;
        }
    }
    uint8_t hb[SMLT_FRAME_HDR_LEN];
    rpc_frame_hdr_encode(hb, &h);
    /* Header and metadata go into space reserved in one piece. Not evbuffer_add(): libevent
     * 2.1 appends to the last chain holding data, and when that is a referenced payload it
     * makes a new chain as large as that payload (hundreds of KiB malloc'd and freed per
     * frame, which glibc hands back to the kernel each time); reserving space skips the
     * reference and uses or makes a chain of the size asked. */
    struct evbuffer_iovec vec;
    if (evbuffer_reserve_space(out, (ev_ssize_t)(sizeof hb + mlen), &vec, 1) < 1) {
        free(zdata);
        rc = SMLT_ENOMEM;
        goto out;
    }
    memcpy(vec.iov_base, hb, sizeof hb);
    if (mlen)
        protobuf_c_message_pack(meta, (uint8_t *)vec.iov_base + sizeof hb);
    vec.iov_len = sizeof hb + mlen;
    evbuffer_commit_space(out, &vec, 1);
    if (zdata) {
        struct ref_ctx *r = malloc(sizeof *r);
        if (!r) {
            free(zdata);
            rc = SMLT_ENOMEM;
            goto out;
        }
        *r = (struct ref_ctx){.c = c, .fn = free_zdata, .arg = NULL, .next = c->refs};
        add_ref(c, out, zdata, (size_t)h.payload_len, r);
    } else if (len && (opts & RPC_SEND_REF)) {
        struct ref_ctx *r = malloc(sizeof *r);
        if (!r) {
            rc = SMLT_ENOMEM;
            goto out;
        }
        *r = (struct ref_ctx){.c = c, .fn = release, .arg = release_arg, .next = c->refs};
        add_ref(c, out, payload, len, r);
        released = 1; /* release now belongs to the evbuffer */
    } else if (len) {
        if (evbuffer_reserve_space(out, (ev_ssize_t)len, &vec, 1) == 1) { /* as above */
            memcpy(vec.iov_base, payload, len);
            vec.iov_len = len;
            evbuffer_commit_space(out, &vec, 1);
        } else {
            evbuffer_add(out, payload, len);
        }
    }
    c->bytes_out += SMLT_FRAME_HDR_LEN + mlen + h.payload_len;
    if (c->backpressure && !c->out_paused && copied_out(c) > SMLT_OUTBUF_HIGH)
        c->out_paused = 1;
out:
    if (!released && release)
        release(payload, len, release_arg);
    return rc;
}

int rpc_conn_send_error(struct rpc_conn *c, uint64_t req_id, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    Smlt__ErrorReply er = SMLT__ERROR_REPLY__INIT;
    er.code = code;
    er.message = msg;
    return rpc_conn_send(c, SMLT__MSG_TYPE__MSG_ERROR, req_id, &er.base, NULL, 0, 0, NULL, NULL);
}

void rpc_conn_resume_dest(struct rpc_conn *c)
{
    if (c->st == ST_DEST && !c->closing)
        conn_defer(c, DEFER_PROCESS);
}

void rpc_conn_pause(struct rpc_conn *c)
{
    c->pauses++;
    conn_update_read(c);
}

void rpc_conn_resume(struct rpc_conn *c)
{
    if (c->pauses && --c->pauses == 0 && !c->closing) {
        conn_update_read(c);
        conn_defer(c, DEFER_PROCESS);
    }
}

void rpc_conn_set_backpressure(struct rpc_conn *c, int on)
{
    c->backpressure = on;
    if (!on && c->out_paused) {
        c->out_paused = 0;
        conn_update_read(c);
        conn_defer(c, DEFER_PROCESS);
    }
}

void rpc_conn_set_limits(struct rpc_conn *c, const struct rpc_limits *lim)
{
    c->lim = *lim;
}

size_t rpc_conn_outbuf_len(const struct rpc_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev)) + tls_unsent(c);
}

const char *rpc_conn_peer(const struct rpc_conn *c)
{
    return c->peer;
}

void *rpc_conn_arg(const struct rpc_conn *c)
{
    return c->arg;
}

void rpc_conn_set_arg(struct rpc_conn *c, void *arg)
{
    c->arg = arg;
}

void rpc_conn_set_handler(struct rpc_conn *c, const struct rpc_conn_handler *h, void *arg)
{
    c->h = *h;
    c->arg = arg;
}

int rpc_conn_is_closing(const struct rpc_conn *c)
{
    return c->closing;
}

uint64_t rpc_conn_bytes_in(const struct rpc_conn *c)
{
    return c->bytes_in;
}

uint64_t rpc_conn_bytes_out(const struct rpc_conn *c)
{
    return c->bytes_out;
}

uint64_t rpc_conn_frames_bad(const struct rpc_conn *c)
{
    return c->frames_bad;
}

int rpc_conn_is_tls(const struct rpc_conn *c)
{
    return c->tls;
}

const char *rpc_conn_errmsg(const struct rpc_conn *c)
{
    return c->why;
}

const ProtobufCMessageDescriptor *rpc_msg_descriptor(uint8_t type)
{
    switch (type) {
    case SMLT__MSG_TYPE__MSG_HELLO:
        return &smlt__hello__descriptor;
    case SMLT__MSG_TYPE__MSG_HELLO_OK:
        return &smlt__hello_ok__descriptor;
    case SMLT__MSG_TYPE__MSG_ERROR:
        return &smlt__error_reply__descriptor;
    case SMLT__MSG_TYPE__MSG_PING:
    case SMLT__MSG_TYPE__MSG_PONG:
        return &smlt__ping__descriptor;
    case SMLT__MSG_TYPE__MSG_GET_MAP:
        return &smlt__get_map__descriptor;
    case SMLT__MSG_TYPE__MSG_MAP:
        return &smlt__partition_map__descriptor;
    case SMLT__MSG_TYPE__MSG_PUSH:
        return &smlt__push_req__descriptor;
    case SMLT__MSG_TYPE__MSG_PUSH_ACK:
        return &smlt__push_ack__descriptor;
    case SMLT__MSG_TYPE__MSG_PULL:
        return &smlt__pull_req__descriptor;
    case SMLT__MSG_TYPE__MSG_PULL_REPLY:
        return &smlt__pull_reply__descriptor;
    case SMLT__MSG_TYPE__MSG_CONFIGURE:
        return &smlt__shard_config__descriptor;
    case SMLT__MSG_TYPE__MSG_SET_PARAMS:
        return &smlt__set_params__descriptor;
    case SMLT__MSG_TYPE__MSG_UPDATE_CONF:
        return &smlt__update_conf__descriptor;
    case SMLT__MSG_TYPE__MSG_OK:
        return &smlt__ok__descriptor;
    case SMLT__MSG_TYPE__MSG_GET_STATS:
        return &smlt__get_stats__descriptor;
    case SMLT__MSG_TYPE__MSG_STATS:
        return &smlt__shard_stats__descriptor;
    case SMLT__MSG_TYPE__MSG_SHUTDOWN:
        return &smlt__shutdown__descriptor;
    case SMLT__MSG_TYPE__MSG_WORKER_HELLO:
        return &smlt__worker_hello__descriptor;
    case SMLT__MSG_TYPE__MSG_ASSIGNMENT:
        return &smlt__assignment__descriptor;
    case SMLT__MSG_TYPE__MSG_PROGRESS:
        return &smlt__progress__descriptor;
    case SMLT__MSG_TYPE__MSG_PROGRESS_ACK:
        return &smlt__progress_ack__descriptor;
    case SMLT__MSG_TYPE__MSG_DONE:
        return &smlt__done__descriptor;
    case SMLT__MSG_TYPE__MSG_RESHARD_PREPARE:
        return &smlt__reshard_prepare__descriptor;
    case SMLT__MSG_TYPE__MSG_EXPORT:
        return &smlt__export_req__descriptor;
    case SMLT__MSG_TYPE__MSG_EXPORT_REPLY:
        return &smlt__export_reply__descriptor;
    case SMLT__MSG_TYPE__MSG_IMPORT:
        return &smlt__import_req__descriptor;
    case SMLT__MSG_TYPE__MSG_RETIRE:
        return &smlt__retire__descriptor;
    case SMLT__MSG_TYPE__MSG_RESTORE:
        return &smlt__restore_req__descriptor;
    case SMLT__MSG_TYPE__MSG_LIST_CHECKPOINTS:
        return &smlt__list_checkpoints__descriptor;
    case SMLT__MSG_TYPE__MSG_CHECKPOINT_LIST:
        return &smlt__checkpoint_list__descriptor;
    case SMLT__MSG_TYPE__MSG_SET_BACKUP:
        return &smlt__set_backup__descriptor;
    case SMLT__MSG_TYPE__MSG_PROMOTE:
        return &smlt__promote__descriptor;
    case SMLT__MSG_TYPE__MSG_SET_MAP:
        return &smlt__set_map__descriptor;
    case SMLT__MSG_TYPE__MSG_NODE_HOST:
        return &smlt__node_host__descriptor;
    case SMLT__MSG_TYPE__MSG_NODE_DROP:
        return &smlt__node_drop__descriptor;
    case SMLT__MSG_TYPE__MSG_NODE_STATS:
        return &smlt__node_stats_req__descriptor;
    case SMLT__MSG_TYPE__MSG_NODE_INFO:
        return &smlt__node_info__descriptor;
    default:
        return NULL;
    }
}

ProtobufCMessage *rpc_msg_unpack(const struct rpc_frame_hdr *h, const uint8_t *meta)
{
    const ProtobufCMessageDescriptor *d = rpc_msg_descriptor(h->type);
    if (!d)
        return NULL;
    return protobuf_c_message_unpack(d, NULL, h->meta_len, meta);
}

const char *rpc_addr_route(const char *addr)
{
    const char *r = addr ? strchr(addr, '/') : NULL;
    return r ? r + 1 : "";
}

int rpc_net_resolve(const char *addr, struct sockaddr_storage *ss, int *sslen)
{
    char host[256], hp[320];
    const char *port;
    if (!addr)
        return SMLT_EINVAL;
    size_t hpl = strcspn(addr, "/"); /* "host:port/route": the route is not dialled */
    if (hpl >= sizeof hp)
        return SMLT_EINVAL;
    memcpy(hp, addr, hpl);
    hp[hpl] = '\0';
    addr = hp;
    if (addr[0] == '[') {
        const char *e = strchr(addr, ']');
        if (!e || e[1] != ':' || (size_t)(e - addr - 1) >= sizeof host)
            return SMLT_EINVAL;
        memcpy(host, addr + 1, (size_t)(e - addr - 1));
        host[e - addr - 1] = '\0';
        port = e + 2;
    } else {
        const char *e = strrchr(addr, ':');
        if (!e || (size_t)(e - addr) >= sizeof host)
            return SMLT_EINVAL;
        memcpy(host, addr, (size_t)(e - addr));
        host[e - addr] = '\0';
        port = e + 1;
    }
    if (!*port)
        return SMLT_EINVAL;
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            return SMLT_EINVAL;
    if (atol(port) > 65535)
        return SMLT_EINVAL;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (host[0] ? 0 : AI_PASSIVE);
    if (getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, port, &hints, &res) != 0 || !res)
        return SMLT_EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = (int)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int rpc_net_listen(const char *addr, int backlog, int *port)
{
    struct sockaddr_storage ss;
    int sl;
    int rc = rpc_net_resolve(addr, &ss, &sl);
    if (rc)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return SMLT_ESYS;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    fd_bufs(fd); /* accepted sockets inherit the buffer sizes */
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) != 0 || listen(fd, backlog) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return SMLT_ESYS;
    }
    struct sockaddr_storage b;
    socklen_t bl = sizeof b;
    getsockname(fd, (struct sockaddr *)&b, &bl);
    if (port)
        *port = ntohs(b.ss_family == AF_INET ? ((struct sockaddr_in *)&b)->sin_port
                                             : ((struct sockaddr_in6 *)&b)->sin6_port);
    return fd;
}

int rpc_token_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const unsigned char *x = a, *y = b;
    size_t n = alen > blen ? alen : blen;
    volatile unsigned char d = (unsigned char)(alen != blen);
    for (size_t i = 0; i < n; i++) {
        unsigned char xa = i < alen ? x[i] : 0;
        unsigned char yb = i < blen ? y[i] : 0;
        d |= (unsigned char)(xa ^ yb);
    }
    return d == 0;
}

struct rpc_rate *rpc_rate_new(struct event_base *base, uint64_t bytes_per_s)
{
    if (!bytes_per_s)
        return NULL;
    struct rpc_rate *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->rate = (double)bytes_per_s;
    /* A few milliseconds' worth of burst: enough for large reads, small enough that the
     * average holds over a step. */
    r->burst = r->rate * RATE_TICK_MS * 2 / 1000.0;
    if (r->burst < 2.0 * RATE_MIN_READ)
        r->burst = 2.0 * RATE_MIN_READ;
    r->tokens = r->burst;
    r->last = smlt_now_mono();
    struct timeval tick = {0, RATE_TICK_MS * 1000};
    size_t per_tick = (size_t)(r->rate * RATE_TICK_MS / 1000.0);
    if (per_tick < 1)
        per_tick = 1;
    r->cfg = ev_token_bucket_cfg_new(EV_RATE_LIMIT_MAX, EV_RATE_LIMIT_MAX, per_tick,
                                     (size_t)r->burst, &tick);
    r->out = r->cfg ? bufferevent_rate_limit_group_new(base, r->cfg) : NULL;
    if (!r->out) {
        rpc_rate_free(r);
        return NULL;
    }
    return r;
}

void rpc_rate_free(struct rpc_rate *r)
{
    if (!r)
        return;
    if (r->out)
        bufferevent_rate_limit_group_free(r->out);
    if (r->cfg)
        ev_token_bucket_cfg_free(r->cfg);
    free(r);
}

int rpc_conn_set_rate(struct rpc_conn *c, struct rpc_rate *r)
{
    if (!r || c->rate)
        return 0;
    c->rate_ev = evtimer_new(c->base, on_rate, c);
    if (!c->rate_ev || bufferevent_add_to_rate_limit_group(c->bev, r->out) != 0) {
        if (c->rate_ev)
            event_free(c->rate_ev);
        c->rate_ev = NULL;
        return SMLT_ENOMEM;
    }
    c->rate = r;
    r->members++;
    return 0;
}
