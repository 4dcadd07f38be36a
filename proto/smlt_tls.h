/* smlt_tls.h: TLS for SMLT-C's connections: OpenSSL contexts made from PEM files.
 *
 * Every channel that crosses a network (the PS data plane, the worker RPC, the coordinator's
 * HTTP API) may run over TLS. A daemon given a certificate and key serves TLS on all of its
 * ports; a client given a CA (a file, or the PEM text itself, which is how a function instance
 * gets it in its invocation) verifies the server's certificate and the host name or IP
 * address it dialled. Mutual TLS is optional: a server with verify_client requires a client
 * certificate signed by its CA, and a client given a certificate and key presents them.
 * Without any TLS option every channel is plain TCP (loopback).
 *
 * Policy, the same everywhere: TLS 1.2 and 1.3 only; AEAD ciphers with forward secrecy
 * (AES-GCM, ChaCha20-Poly1305), AES-128-GCM first because it is the fastest with AES-NI and
 * tensors are large; no renegotiation; peer verification on (a client with neither ca nor
 * ca_pem trusts the system's CA store).
 *
 * The connections themselves are rpc_conn's (rpc_conn_new_fd_tls(), rpc_conn_connect_tls())
 * and evhttp's: this module makes the SSL_CTX and the per-connection SSL, gives rpc_conn's
 * sessions their socket BIOs (smlt_tls_set_fd(): records are gathered into large writes),
 * and turns OpenSSL's error queue and verify results into one line of words.
 *
 * A context is reference-counted (smlt_tls_ref / smlt_tls_free) and may be shared by threads:
 * OpenSSL's SSL_CTX is thread-safe once set up, and nothing here changes it afterwards. */
#ifndef SMLT_TLS_H
#define SMLT_TLS_H

#include <stddef.h>

struct ssl_st;     /* OpenSSL's SSL */
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

struct smlt_tls;

struct smlt_tls_conf {
    const char *cert;  /* PEM file: the certificate (chain, leaf first). Required for a server;
                          a client presents it for mutual TLS */
    const char *key;   /* PEM file: its private key (required with cert) */
    const char *ca;    /* PEM file of CA certificates: what a client trusts for servers, and
                          what a server with verify_client trusts for clients */
    const char *ca_pem; /* the same as PEM text (a client; instead of, or besides, ca) */
    int verify_client; /* server: require a client certificate that ca signs (mutual TLS) */
};

/* Returns 0 and *out, a server context (free it with smlt_tls_free()), or SMLT_EINVAL with
 * a message in err that names the option and the file: no certificate or key given, a file
 * that cannot be read (with errno's words), a file without a PEM certificate or key in it, a
 * key that does not match the certificate, verify_client without a CA. */
int smlt_tls_server_new(struct smlt_tls **out, const struct smlt_tls_conf *conf, char *err,
                        size_t errlen);

/* Returns 0 and *out, a client context, or SMLT_EINVAL with a message in err as above (a
 * certificate without its key, or the reverse; a CA file or text without a certificate). */
int smlt_tls_client_new(struct smlt_tls **out, const struct smlt_tls_conf *conf, char *err,
                        size_t errlen);

/* Takes another reference to t (returned). */
struct smlt_tls *smlt_tls_ref(struct smlt_tls *t);

/* Drops a reference; the last one frees t. NULL is a no-op. */
void smlt_tls_free(struct smlt_tls *t);

/* 1 for a server context. */
int smlt_tls_is_server(const struct smlt_tls *t);

/* OpenSSL's context (borrowed while t lives), for evhttp's bufferevent callback. */
struct ssl_ctx_st *smlt_tls_ctx(struct smlt_tls *t);

/* Returns a new SSL for one connection (the caller, or the bufferevent it is given to, frees
 * it), or NULL with a message in err. For a client, peer is the host the connection dials
 * ("host:port", "[v6]:port" or a bare host): the server's certificate must name it, as a DNS
 * name (also sent as SNI) or an IP address. Ignored for a server. */
struct ssl_st *smlt_tls_ssl_new(struct smlt_tls *t, const char *peer, char *err, size_t errlen);

/* Sets ssl up to run over the connected socket fd (borrowed: closing it stays the caller's):
 * a plain socket BIO reads, and a gathering BIO writes. OpenSSL writes every record (at most
 * 16 KiB) to its BIO on its own, which over a socket BIO is one send(2) per record; the
 * gathering BIO copies records into a buffer (64 KiB, growing to 256 KiB while a bulk send
 * fills it) and sends it when full, when OpenSSL flushes (the handshake, alerts), and when
 * smlt_tls_flush() is called. The caller must call that after each batch of SSL_write()s.
 * BIO_get_fd() of the write BIO gives fd, so libevent's bufferevent_openssl_socket_new()
 * takes the session as it is. Returns 0 or SMLT_ENOMEM. */
int smlt_tls_set_fd(struct ssl_st *ssl, int fd);

/* Sends what the gathering BIO of ssl holds. Returns 0 when all of it is out, 1 when the
 * socket took only part (call again once it is writable), SMLT_EIO with errno set when the
 * socket failed (the session's next write fails the same way). 0 for a session without a
 * gathering BIO. */
int smlt_tls_flush(struct ssl_st *ssl);

/* Bytes the gathering BIO of ssl holds, not yet sent (0 without one). */
size_t smlt_tls_unsent(const struct ssl_st *ssl);

/* For sessions whose I/O someone else runs (evhttp's): counts and logs their failed
 * handshakes. When ssl (a session of server context t) is freed before its handshake
 * completed, t's counter (smlt_tls_handshake_failures()) goes up by one and one line is
 * logged: what ("HTTPS"), the peer, and the alert sent or received if there was one ("no TLS
 * from the peer" when none: a plaintext client). Returns 0, or SMLT_ENOMEM (not watched). */
int smlt_tls_watch(struct ssl_st *ssl, struct smlt_tls *t, const char *what);

/* The failed handshakes of t's watched sessions so far. Any thread. */
unsigned long long smlt_tls_handshake_failures(const struct smlt_tls *t);

/* Writes why a TLS connection failed into buf (len bytes) as words: OpenSSL's reason for err
 * (an ERR_get_error() value, e.g. from bufferevent_get_openssl_error(); 0: none), with the
 * certificate verification result of ssl when a verification failed ("certificate verify
 * failed: unable to get local issuer certificate"). With neither, "the peer closed the
 * connection during the handshake". Returns buf. ssl may be NULL. */
const char *smlt_tls_describe(const struct ssl_st *ssl, unsigned long err, char *buf,
                              size_t len);

/* Takes every error on this thread's OpenSSL error queue (oldest first) and writes their
 * reasons, joined by "; ", into buf (len bytes); "" when the queue is empty. Returns buf. */
const char *smlt_tls_errors(char *buf, size_t len);

#endif
