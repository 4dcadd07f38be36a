/* smlt_tls.c: see smlt_tls.h. */
#include "smlt_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_util.h"

/* TLS 1.2: ECDHE key exchange and AEAD ciphers only. TLS 1.3: every suite is AEAD; AES-128-GCM
 * first (the fastest with AES-NI: a 100 MB tensor is encrypted once and decrypted once). */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

struct smlt_tls {
    SSL_CTX *ctx;
    int server;
    atomic_int refs;
    atomic_ullong hs_failures; /* watched sessions whose handshake failed */
};

/* ---- watched sessions (smlt_tls_watch()) --------------------------------------------------- */

struct watch {
    struct smlt_tls *t; /* a reference */
    char what[16], peer[64], alert[80];
    int done;
};

static int watch_idx = -1;
static pthread_once_t watch_once = PTHREAD_ONCE_INIT;

/* The session is being freed: a handshake that never completed is a failure. */
static void on_watch_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    struct watch *w = ptr;
    if (!w)
        return;
    /* A connection that sent nothing is a port probe, not a refusal. */
    BIO *rb = parent ? SSL_get_rbio(parent) : NULL;
    if (!w->done && rb && BIO_number_read(rb) > 0) {
        atomic_fetch_add(&w->t->hs_failures, 1);
        log_warn("%s %s: TLS handshake failed: %s", w->what, w->peer[0] ? w->peer : "?",
                 w->alert[0] ? w->alert : "no TLS from the peer, or it hung up");
    }
    smlt_tls_free(w->t);
    free(w);
}

static void watch_init(void)
{
    watch_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, on_watch_free);
}

/* Records the peer (while the socket is there), an alert, the handshake's end. */
static void on_watch_info(const SSL *ssl, int where, int ret)
{
    struct watch *w = SSL_get_ex_data(ssl, watch_idx);
    if (!w)
        return;
    if (!w->peer[0]) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char host[INET6_ADDRSTRLEN] = "";
        int fd = SSL_get_fd(ssl);
        if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
            int port = 0;
            if (ss.ss_family == AF_INET) {
                inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
                port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            } else if (ss.ss_family == AF_INET6) {
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
                port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            }
            snprintf(w->peer, sizeof w->peer, "%s:%d", host, port);
        }
    }
    if (where & SSL_CB_HANDSHAKE_DONE)
        w->done = 1;
    if ((where & SSL_CB_ALERT) && !w->alert[0])
        snprintf(w->alert, sizeof w->alert, "%s alert: %s",
                 (where & SSL_CB_READ) ? "the peer sent an" : "sent an",
                 SSL_alert_desc_string_long(ret));
}

int smlt_tls_watch(struct ssl_st *ssl, struct smlt_tls *t, const char *what)
{
    pthread_once(&watch_once, watch_init);
    struct watch *w = watch_idx >= 0 ? calloc(1, sizeof *w) : NULL;
    if (!w)
        return SMLT_ENOMEM;
    w->t = smlt_tls_ref(t);
    snprintf(w->what, sizeof w->what, "%s", what);
    if (SSL_set_ex_data(ssl, watch_idx, w) != 1) {
        smlt_tls_free(w->t);
        free(w);
        return SMLT_ENOMEM;
    }
    SSL_set_info_callback(ssl, on_watch_info);
    return 0;
}

unsigned long long smlt_tls_handshake_failures(const struct smlt_tls *t)
{
    return atomic_load(&((struct smlt_tls *)t)->hs_failures);
}

const char *smlt_tls_errors(char *buf, size_t len)
{
    size_t off = 0;
    unsigned long e;
    if (len)
        buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        const char *r = ERR_reason_error_string(e);
        char code[32];
        if (!r) {
            snprintf(code, sizeof code, "error %lx", e);
            r = code;
        }
        if (off < len) {
            int n = snprintf(buf + off, len - off, "%s%s", off ? "; " : "", r);
            off += n > 0 ? (size_t)n : 0;
        }
    }
    return buf;
}

const char *smlt_tls_describe(const struct ssl_st *ssl, unsigned long err, char *buf, size_t len)
{
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    const char *reason = err ? ERR_reason_error_string(err) : NULL;
    if (vr != X509_V_OK)
        snprintf(buf, len, "%s: %s", reason ? reason : "certificate verify failed",
                 X509_verify_cert_error_string(vr));
    else if (reason)
        snprintf(buf, len, "%s", reason);
    else if (err)
        snprintf(buf, len, "OpenSSL error %lx", err);
    else
        snprintf(buf, len, "the peer closed the connection during the handshake");
    return buf;
}

/* 0 when path can be opened for reading, else a message in err naming what it is. */
static int check_readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        smlt_set_err(err, errlen, "%s %s: cannot read it: %s", what, path, strerror(errno));
        return SMLT_EINVAL;
    }
    fclose(f);
    return 0;
}

/* Frees ctx and sets err to the message, with OpenSSL's reasons after it. SMLT_EINVAL. */
static int fail(SSL_CTX *ctx, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(SSL_CTX *ctx, char *err, size_t errlen, const char *fmt, ...)
{
    char why[256];
    smlt_tls_errors(why, sizeof why);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (why[0])
        smlt_set_err(err, errlen, "%s (%s)", msg, why);
    else
        smlt_set_err(err, errlen, "%s", msg);
    SSL_CTX_free(ctx);
    return SMLT_EINVAL;
}

/* Adds every certificate of PEM text to ctx's trust store. Returns how many, or -1. */
static int add_ca_pem(SSL_CTX *ctx, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!b)
        return -1;
    X509_STORE *st = SSL_CTX_get_cert_store(ctx);
    int n = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(st, x) == 1)
            n++;
        X509_free(x);
    }
    BIO_free(b);
    /* The read past the last certificate leaves "no start line" on the queue. */
    if (n > 0)
        ERR_clear_error();
    return n;
}

/* The settings every context shares. Returns the context or NULL (err set). */
static SSL_CTX *ctx_base(int server, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) {
        char why[256];
        smlt_set_err(err, errlen, "cannot create a TLS context (%s)",
                     smlt_tls_errors(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS);
    SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES);
    /* A peer that closes without close_notify ends the stream (libevent then reports an end
     * of file, not an error): every frame is length-prefixed, so a cut frame is seen as cut
     * anyway, and neither rpc_conn nor evhttp sends close_notify. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
    return ctx;
}

/* Loads cert and key into ctx and checks that they belong together. 0 or SMLT_EINVAL (ctx
 * freed, err set). */
static int load_identity(SSL_CTX *ctx, const char *cert, const char *key, char *err,
                         size_t errlen)
{
    if (check_readable("certificate file", cert, err, errlen) ||
        check_readable("key file", key, err, errlen)) {
        SSL_CTX_free(ctx);
        return SMLT_EINVAL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        return fail(ctx, err, errlen, "certificate file %s: no PEM certificate in it", cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            return fail(ctx, err, errlen, "key file %s does not match certificate file %s", key,
                        cert);
        return fail(ctx, err, errlen, "key file %s: no PEM private key in it", key);
    }
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail(ctx, err, errlen, "key file %s does not match certificate file %s", key, cert);
    return 0;
}

/* Loads the trust store from a file and / or PEM text. 0 or SMLT_EINVAL (ctx freed). */
static int load_ca(SSL_CTX *ctx, const char *ca, const char *ca_pem, char *err, size_t errlen)
{
    if (ca) {
        if (check_readable("CA file", ca, err, errlen)) {
            SSL_CTX_free(ctx);
            return SMLT_EINVAL;
        }
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
            return fail(ctx, err, errlen, "CA file %s: no PEM certificate in it", ca);
    }
    if (ca_pem && add_ca_pem(ctx, ca_pem) <= 0)
        return fail(ctx, err, errlen, "the CA certificates given as text: no PEM certificate in "
                                       "them");
    return 0;
}

static struct smlt_tls *wrap(SSL_CTX *ctx, int server)
{
    struct smlt_tls *t = calloc(1, sizeof *t);
    if (!t) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    t->ctx = ctx;
    t->server = server;
    atomic_init(&t->refs, 1);
    atomic_init(&t->hs_failures, 0);
    return t;
}

int smlt_tls_server_new(struct smlt_tls **out, const struct smlt_tls_conf *conf, char *err,
                        size_t errlen)
{
    *out = NULL;
    if (!conf || !conf->cert || !conf->cert[0] || !conf->key || !conf->key[0]) {
        smlt_set_err(err, errlen, "a TLS server needs a certificate and its key");
        return SMLT_EINVAL;
    }
    if (conf->verify_client && (!conf->ca || !conf->ca[0])) {
        smlt_set_err(err, errlen, "verifying clients needs a CA file to verify them against");
        return SMLT_EINVAL;
    }
    SSL_CTX *ctx = ctx_base(1, err, errlen);
    if (!ctx)
        return SMLT_EINVAL;
    int rc = load_identity(ctx, conf->cert, conf->key, err, errlen);
    if (rc)
        return rc;
    /* A session cache with client certificates needs a context id, or resumption fails. */
    static const unsigned char sid[] = "smlt";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    if (conf->ca && conf->ca[0]) {
        if ((rc = load_ca(ctx, conf->ca, NULL, err, errlen)) != 0)
            return rc;
        if (conf->verify_client) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(conf->ca);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
            ERR_clear_error();
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    }
    *out = wrap(ctx, 1);
    if (!*out) {
        smlt_set_err(err, errlen, "out of memory");
        return SMLT_ENOMEM;
    }
    return 0;
}

int smlt_tls_client_new(struct smlt_tls **out, const struct smlt_tls_conf *conf, char *err,
                        size_t errlen)
{
    *out = NULL;
    struct smlt_tls_conf none = {0};
    if (!conf)
        conf = &none;
    int have_cert = conf->cert && conf->cert[0], have_key = conf->key && conf->key[0];
    if (have_cert != have_key) {
        smlt_set_err(err, errlen, "a client certificate needs its key, and a key its certificate");
        return SMLT_EINVAL;
    }
    SSL_CTX *ctx = ctx_base(0, err, errlen);
    if (!ctx)
        return SMLT_EINVAL;
    int rc;
    if (have_cert && (rc = load_identity(ctx, conf->cert, conf->key, err, errlen)) != 0)
        return rc;
    const char *ca = conf->ca && conf->ca[0] ? conf->ca : NULL;
    const char *pem = conf->ca_pem && conf->ca_pem[0] ? conf->ca_pem : NULL;
    if (ca || pem) {
        if ((rc = load_ca(ctx, ca, pem, err, errlen)) != 0)
            return rc;
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return fail(ctx, err, errlen, "cannot load the system's CA certificates");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    *out = wrap(ctx, 0);
    if (!*out) {
        smlt_set_err(err, errlen, "out of memory");
        return SMLT_ENOMEM;
    }
    return 0;
}

struct smlt_tls *smlt_tls_ref(struct smlt_tls *t)
{
    atomic_fetch_add(&t->refs, 1);
    return t;
}

void smlt_tls_free(struct smlt_tls *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

int smlt_tls_is_server(const struct smlt_tls *t)
{
    return t->server;
}

struct ssl_ctx_st *smlt_tls_ctx(struct smlt_tls *t)
{
    return t->ctx;
}

/* The host part of "host:port", "[v6]:port" or a bare host, into out. */
static void peer_host(const char *peer, char *out, size_t len)
{
    const char *b = peer, *e = peer + strlen(peer);
    if (*peer == '[') {
        const char *r = strchr(peer, ']');
        b = peer + 1;
        e = r ? r : e;
    } else {
        const char *c = strrchr(peer, ':');
        if (c && c == strchr(peer, ':')) /* one colon: host:port (more: a bare IPv6 address) */
            e = c;
    }
    size_t n = (size_t)(e - b) < len - 1 ? (size_t)(e - b) : len - 1;
    memcpy(out, b, n);
    out[n] = '\0';
}

struct ssl_st *smlt_tls_ssl_new(struct smlt_tls *t, const char *peer, char *err, size_t errlen)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl) {
        char why[256];
        smlt_set_err(err, errlen, "cannot create a TLS session (%s)",
                     smlt_tls_errors(why, sizeof why));
        return NULL;
    }
    if (t->server || !peer)
        return ssl;
    char host[256];
    peer_host(peer, host, sizeof host);
    unsigned char bin[16];
    int is_ip = inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1;
    X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(p, host)
                   : X509_VERIFY_PARAM_set1_host(p, host, 0) &&
                         SSL_set_tlsext_host_name(ssl, host);
    if (ok != 1) {
        char why[256];
        smlt_set_err(err, errlen, "cannot check the server's name %s (%s)", host,
                     smlt_tls_errors(why, sizeof why));
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

/* ---- the gathering write BIO (smlt_tls_set_fd()) ------------------------------------------ */

/* Why: OpenSSL 3.0 hands each record to its write BIO separately, and over a socket BIO every
 * record is one send(2) of 16 KiB: one trip through the TCP stack and one wakeup of the
 * receiver per record. On loopback, 100 MB sent in 16 KiB writes cost the sender 54-66 ms of
 * CPU and the receiver 42-43 ms, against 16-26 and 12 ms in 256 KiB writes. Copying the
 * records, which AES-GCM has just written and which are still in the cache, costs far less
 * (about 5 ms per 100 MB). */
#define WBIO_MIN (64u << 10)
#define WBIO_MAX (256u << 10)

struct wbio {
    int fd;
    uint8_t *buf;
    size_t cap, off, len; /* [off, len) not yet sent */
    int err;              /* errno of a failed send: every later write fails with it */
};

static BIO_METHOD *wbio_meth;
static int wbio_type;
static pthread_once_t wbio_once = PTHREAD_ONCE_INIT;

/* Sends [off, len). 0: all of it; 1: the socket is full; -1: failed (w->err). */
static int wbio_send(struct wbio *w)
{
    if (w->err)
        return -1;
    while (w->off < w->len) {
        ssize_t k = send(w->fd, w->buf + w->off, w->len - w->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            w->off += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        w->err = k < 0 ? errno : EPIPE;
        return -1;
    }
    w->off = w->len = 0;
    return 0;
}

/* Takes as much of a record as fits; makes room by growing, then by sending. A full buffer
 * on a full socket is a retry: OpenSSL keeps the record and writes it again. */
static int wbio_write(BIO *b, const char *in, int inl)
{
    struct wbio *w = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (inl <= 0)
        return 0;
    if (w->err) {
        errno = w->err;
        return -1;
    }
    size_t n = (size_t)inl;
    if (w->cap - w->len < n && w->cap < WBIO_MAX) {
        size_t cap = w->cap ? w->cap * 2 : WBIO_MIN;
        while (cap < w->len + n && cap < WBIO_MAX)
            cap *= 2;
        if (cap > WBIO_MAX)
            cap = WBIO_MAX;
        uint8_t *p = realloc(w->buf, cap);
        if (!p) {
            errno = ENOMEM;
            return -1;
        }
        w->buf = p;
        w->cap = cap;
    }
    if (w->cap - w->len < n) {
        if (wbio_send(w) < 0) {
            errno = w->err;
            return -1;
        }
        if (w->off > 0) {
            memmove(w->buf, w->buf + w->off, w->len - w->off);
            w->len -= w->off;
            w->off = 0;
        }
        if (w->len == w->cap) {
            BIO_set_retry_write(b);
            return -1;
        }
    }
    if (n > w->cap - w->len)
        n = w->cap - w->len;
    memcpy(w->buf + w->len, in, n);
    w->len += n;
    return (int)n;
}

static long wbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct wbio *w = BIO_get_data(b);
    switch (cmd) {
    case BIO_C_GET_FD: /* libevent learns the socket (and closes it) through this */
        if (ptr)
            *(int *)ptr = w->fd;
        return w->fd;
    case BIO_CTRL_GET_CLOSE:
        return BIO_get_shutdown(b);
    case BIO_CTRL_SET_CLOSE: /* the socket is never closed here either way */
        BIO_set_shutdown(b, (int)num);
        return 1;
    case BIO_CTRL_FLUSH: {
        BIO_clear_retry_flags(b);
        int r = wbio_send(w);
        if (r > 0)
            BIO_set_retry_write(b);
        return r == 0 ? 1 : r > 0 ? 0 : -1;
    }
    case BIO_CTRL_WPENDING:
        return (long)(w->len - w->off);
    case BIO_CTRL_DUP:
        return 1;
    default:
        return 0;
    }
}

static int wbio_create(BIO *b)
{
    BIO_set_data(b, NULL);
    BIO_set_init(b, 0);
    return 1;
}

static int wbio_destroy(BIO *b)
{
    struct wbio *w = BIO_get_data(b);
    if (w) {
        free(w->buf);
        free(w);
    }
    BIO_set_data(b, NULL);
    return 1;
}

static void wbio_init(void)
{
    int type = BIO_get_new_index();
    BIO_METHOD *m = type > 0 ? BIO_meth_new(type | BIO_TYPE_SOURCE_SINK, "smlt gather") : NULL;
    if (m && BIO_meth_set_write(m, wbio_write) && BIO_meth_set_ctrl(m, wbio_ctrl) &&
        BIO_meth_set_create(m, wbio_create) && BIO_meth_set_destroy(m, wbio_destroy)) {
        wbio_type = type | BIO_TYPE_SOURCE_SINK;
        wbio_meth = m;
    } else {
        BIO_meth_free(m);
    }
}

/* The gathering BIO of ssl, or NULL. */
static struct wbio *wbio_of(const SSL *ssl)
{
    BIO *b = ssl ? SSL_get_wbio(ssl) : NULL;
    return b && wbio_meth && BIO_method_type(b) == wbio_type ? BIO_get_data(b) : NULL;
}

int smlt_tls_set_fd(struct ssl_st *ssl, int fd)
{
    pthread_once(&wbio_once, wbio_init);
    BIO *rb = BIO_new_socket(fd, BIO_NOCLOSE);
    BIO *wb = wbio_meth ? BIO_new(wbio_meth) : NULL;
    struct wbio *w = calloc(1, sizeof *w);
    if (!rb || !wb || !w) {
        BIO_free(rb);
        BIO_free(wb);
        free(w);
        return SMLT_ENOMEM;
    }
    w->fd = fd;
    BIO_set_data(wb, w);
    BIO_set_init(wb, 1);
    BIO_set_shutdown(wb, BIO_NOCLOSE);
    SSL_set_bio(ssl, rb, wb);
    return 0;
}

int smlt_tls_flush(struct ssl_st *ssl)
{
    struct wbio *w = wbio_of(ssl);
    if (!w)
        return 0;
    int r = wbio_send(w);
    if (r < 0) {
        errno = w->err;
        return SMLT_EIO;
    }
    return r;
}

size_t smlt_tls_unsent(const struct ssl_st *ssl)
{
    const struct wbio *w = wbio_of(ssl);
    return w ? w->len - w->off : 0;
}
