/* rpc_conn.h: one SMLT-C connection on libevent: frames in, frames out.
 *
 * Output goes through a bufferevent (its write side only). Input is read by one persistent
 * read event into an evbuffer for headers and metadata; tensor payloads do not go through it: a
 * payload of at least SMLT_DIRECT_READ_MIN bytes is read with recv(2) straight from the socket
 * into the buffer the handler names, and a payload being sent is added to the output by
 * reference (evbuffer_add_reference), so megabytes of floats are copied only by the kernel.
 * (Reading with the bufferevent itself would mean toggling its read event around every direct
 * read - four epoll_ctl calls per tensor - and an extra copy for everything else.)
 * lz4-compressed payloads land in a per-connection scratch buffer and are decoded into the
 * handler's buffer.
 *
 * TLS (rpc_conn_new_fd_tls(), rpc_conn_connect_tls() with a context from smlt_tls.h): an
 * openssl bufferevent runs the handshake and the output. After the handshake a TLS connection
 * reads as a plain one does, with its own read event, but with SSL_read() instead of recv(2):
 * a payload of at least SMLT_DIRECT_READ_MIN bytes is decrypted straight into the handler's
 * buffer. What the zero-copy receive cannot avoid there is OpenSSL's own copy (it decrypts a
 * record in its buffer and copies it out); recv(2) would return ciphertext. Sending is the
 * same on both: a referenced payload is encrypted from the caller's memory as it goes out
 * (OpenSSL copies it into its record buffer first), and the records are gathered into large
 * writes (smlt_tls_set_fd()) instead of one send(2) each. Plain connections keep the direct
 * recv(2) path; nothing on it changes with TLS compiled in. A TLS failure (handshake,
 * certificate, an alert) closes the connection with SMLT_ETLS and a line in words
 * (rpc_conn_errmsg()), and a plain connection whose peer answers with TLS records is closed
 * with SMLT_ETLS too, instead of "bad frame".
 *
 * Each connection is a state machine: HDR (waiting for header + metadata) -> DEST (waiting for
 * the handler to name a payload buffer) -> PAYLOAD (receiving, buffered or direct) -> HDR.
 * A frame the parser refuses gets an error reply, the connection is closed after that reply is
 * flushed, and a counter is bumped; nothing else is affected. Connections are freed from a
 * deferred event, never inside one of their own callbacks.
 *
 * Single-threaded: every function here runs on the thread of the connection's event_base. */
#ifndef RPC_CONN_H
#define RPC_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <event2/event.h>
#include <protobuf-c/protobuf-c.h>

#include "rpc_frame.h"

struct rpc_conn;
struct smlt_tls;

/* on_payload return value: no destination buffer available yet; stop reading this connection
 * until rpc_conn_resume_dest() is called, then on_payload is asked again. */
#define RPC_CONN_WAIT 1

struct rpc_conn_handler {
    /* A frame with a payload has its header and metadata in (meta: h->meta_len bytes, borrowed
     * for the call). Set *dest to a buffer of at least h->raw_len bytes that the payload should
     * be decoded into, or leave it NULL to have it held in the connection's scratch buffer.
     * Return 0 to receive it, RPC_CONN_WAIT to be asked again later, or a negative SMLT_E* code to
     * have the payload read and dropped (the handler has sent its error reply already); on_frame
     * is then not called. Optional: without it every payload goes to scratch. */
    int (*on_payload)(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                      void **dest, void *arg);
    /* A whole frame arrived. payload (h->raw_len decoded bytes) is the buffer named by
     * on_payload or scratch (borrowed for the call), NULL when raw_len is 0. */
    void (*on_frame)(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                     void *payload, void *arg);
    /* The connection is gone (err < 0: why; SMLT_ECLOSED for an orderly close by the peer or by
     * rpc_conn_close()). Called once, from a deferred event; the connection is freed right
     * after it returns. A payload destination handed out by on_payload is no longer used. */
    void (*on_close)(struct rpc_conn *c, int err, void *arg);
    /* Optional: an outgoing connection completed its TCP connect. */
    void (*on_connected)(struct rpc_conn *c, void *arg);
};

/* How rpc_conn_send() treats the payload. */
#define RPC_SEND_COPY 0x0u          /* copy the bytes into the output buffer now */
#define RPC_SEND_REF 0x1u           /* reference them until written; release() is called then */
#define RPC_SEND_MAY_COMPRESS 0x2u  /* lz4-compress if rpc_payload_should_compress() says so */

typedef void (*rpc_release_fn)(const void *data, size_t len, void *arg);

/* Returns a connection on an accepted, connected socket fd (which it takes over, made
 * non-blocking, TCP_NODELAY). lim: the limits enforced on incoming frames (copied; change them
 * with rpc_conn_set_limits() after the handshake). NULL on failure (fd is closed). */
struct rpc_conn *rpc_conn_new_fd(struct event_base *base, int fd, const struct rpc_limits *lim,
                                 const struct rpc_conn_handler *h, void *arg);

/* Returns a connection to addr ("host:port" or "[v6]:port"), connecting in the background;
 * frames sent before the connect completes are queued. NULL with *err set when addr does not
 * resolve or the socket cannot be made (getaddrinfo blocks: use numeric hosts on hot paths). */
struct rpc_conn *rpc_conn_connect(struct event_base *base, const char *addr,
                                  const struct rpc_limits *lim, const struct rpc_conn_handler *h,
                                  void *arg, int *err);

/* The same over TLS when tls is not NULL (a server context for an accepted socket, a client
 * context to connect; borrowed: it must outlive the connection, as contexts are reference-
 * counted its owner keeps one). An accepted connection runs the server's handshake before
 * its first frame; a connecting one verifies that the server's certificate names addr's host.
 * Frames sent before the handshake are queued. on_connected follows the handshake. tls NULL:
 * rpc_conn_new_fd() / rpc_conn_connect(). */
struct rpc_conn *rpc_conn_new_fd_tls(struct event_base *base, int fd, struct smlt_tls *tls,
                                     const struct rpc_limits *lim,
                                     const struct rpc_conn_handler *h, void *arg);
struct rpc_conn *rpc_conn_connect_tls(struct event_base *base, const char *addr,
                                      struct smlt_tls *tls, const struct rpc_limits *lim,
                                      const struct rpc_conn_handler *h, void *arg, int *err);

/* Sends one frame: type, request id, meta (packed with protobuf-c; NULL for none) and an
 * optional payload of len bytes treated per opts. With RPC_SEND_REF the bytes must stay valid
 * and unchanged until release(data, len, release_arg) is called (from this thread, when the
 * bytes are written, when they were compressed, or when the connection dies); with COPY or on
 * error release is called before returning, if given. Returns 0, SMLT_ECLOSED, SMLT_ETOOBIG. */
int rpc_conn_send(struct rpc_conn *c, uint8_t type, uint64_t req_id, const ProtobufCMessage *meta,
                  const void *payload, size_t len, unsigned opts, rpc_release_fn release,
                  void *release_arg);

/* Sends an ErrorReply{code, message} with the given request id. Returns as rpc_conn_send(). */
int rpc_conn_send_error(struct rpc_conn *c, uint64_t req_id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Stops reading, flushes what is queued (at most a few seconds), then closes; on_close follows
 * with err. Safe to call from any of the connection's callbacks, and more than once. */
void rpc_conn_close(struct rpc_conn *c, int err);

/* Closes at once without flushing; on_close follows from a deferred event. */
void rpc_conn_abort(struct rpc_conn *c, int err);

/* After on_payload returned RPC_CONN_WAIT: ask it again (from a deferred event). */
void rpc_conn_resume_dest(struct rpc_conn *c);

/* Pauses / resumes reading new frames, for the handler's own backpressure (counted). */
void rpc_conn_pause(struct rpc_conn *c);
void rpc_conn_resume(struct rpc_conn *c);

/* Backpressure for servers: with it on, a connection whose queued output holds more than
 * SMLT_OUTBUF_HIGH copied bytes (referenced payloads do not count: they pin memory that exists
 * anyway) stops reading new frames until that drops below half. Off by default: if both ends of
 * a connection did this while sending each other big frames, neither would read again. Our
 * clients always read, so a server may turn it on. */
void rpc_conn_set_backpressure(struct rpc_conn *c, int on);

/* A cap on the bytes per second that a set of connections moves in each direction: the
 * emulated network card of a small node (a local cluster's shards on loopback otherwise move
 * data at memory speed). Reading stops while the inbound bucket is empty and resumes when it
 * refills; writing goes through libevent's rate-limit group. bytes_per_s 0: no cap (NULL). */
struct rpc_rate;
struct rpc_rate *rpc_rate_new(struct event_base *base, uint64_t bytes_per_s);
/* Frees it; every connection given it must be gone. NULL is a no-op. */
void rpc_rate_free(struct rpc_rate *r);
/* Puts c under r (once, right after creating c). Returns 0 or SMLT_ENOMEM. */
int rpc_conn_set_rate(struct rpc_conn *c, struct rpc_rate *r);

/* Replaces the limits on incoming frames (e.g. after authentication). */
void rpc_conn_set_limits(struct rpc_conn *c, const struct rpc_limits *lim);

/* Bytes queued for output, including referenced payloads not yet written (TLS: and the
 * encrypted records gathered but not yet sent). */
size_t rpc_conn_outbuf_len(const struct rpc_conn *c);

/* Accessors. The peer string is "ip:port", valid while the connection lives. */
const char *rpc_conn_peer(const struct rpc_conn *c);
void *rpc_conn_arg(const struct rpc_conn *c);
void rpc_conn_set_arg(struct rpc_conn *c, void *arg);
/* Hands the connection to another owner: its callbacks and argument from the next event on
 * (callable from inside on_frame: the frames after the current one go to h). */
void rpc_conn_set_handler(struct rpc_conn *c, const struct rpc_conn_handler *h, void *arg);
int rpc_conn_is_closing(const struct rpc_conn *c);
uint64_t rpc_conn_bytes_in(const struct rpc_conn *c);
uint64_t rpc_conn_bytes_out(const struct rpc_conn *c);
/* Frames this connection refused (malformed, oversized). */
uint64_t rpc_conn_frames_bad(const struct rpc_conn *c);
/* 1 for a TLS connection. */
int rpc_conn_is_tls(const struct rpc_conn *c);
/* Why the connection failed, in words ("TLS handshake with 127.0.0.1:7000 failed: certificate
 * verify failed: unable to get local issuer certificate"); "" when the code says it all.
 * Valid while the connection lives (in on_close too). */
const char *rpc_conn_errmsg(const struct rpc_conn *c);

/* Returns the protobuf-c descriptor of type's metadata message, NULL for unknown types. */
const ProtobufCMessageDescriptor *rpc_msg_descriptor(uint8_t type);

/* Unpacks the metadata of a frame of type h->type. Returns the message (free it with
 * protobuf_c_message_free_unpacked(msg, NULL)), or NULL if it does not parse or lacks a
 * required field. */
ProtobufCMessage *rpc_msg_unpack(const struct rpc_frame_hdr *h, const uint8_t *meta);

/* A shard's address on a PS node is "host:port/route": the node listens on one port for all
 * the shards it hosts, and a client names the one it wants in its Hello (Hello.route). Returns
 * the route of addr (after the first '/'), or "" when it has none. */
const char *rpc_addr_route(const char *addr);

/* Resolves "host:port" / "[v6]:port" (a "/route" after it is ignored) into ss. Returns 0 or
 * SMLT_EINVAL. */
int rpc_net_resolve(const char *addr, struct sockaddr_storage *ss, int *sslen);

/* Opens a listening TCP socket on addr ("127.0.0.1:0" picks a free port). Returns the fd
 * (non-blocking, close-on-exec) and stores the bound port, or a negative SMLT_E* code. */
int rpc_net_listen(const char *addr, int backlog, int *port);

/* Compares two byte strings in time that depends only on their lengths. Returns 1 if equal. */
int rpc_token_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
