/* smlt_tls.c: see smlt_tls.h. */
#include "smlt_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdatomic.h>
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
