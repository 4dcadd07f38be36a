/* smlt_limits.h: every limit on what a peer may send or make us hold, in one place.
 *
 * Each size that arrives from the network is checked against one of these before anything is
 * allocated for it. Limits before authentication are much tighter than after it. A hostile-input
 * unit test exists for each (tests/unit/test_rpc_frame.c, test_ps_shard.c, test_part_map.c). */
#ifndef SMLT_LIMITS_H
#define SMLT_LIMITS_H

/* Wire protocol version carried in every frame header and in the handshake. */
#define SMLT_PROTO_VERSION 1

/* Frame: fixed header size (rpc_frame.h documents the layout). */
#define SMLT_FRAME_HDR_LEN 40

/* Protobuf metadata part of one frame, after / before the handshake. A partition map of
 * SMLT_MAX_TENSORS tensors with names fits in the former. */
#define SMLT_MAX_META_LEN (4u << 20)
#define SMLT_MAX_META_PREAUTH 4096u

/* Raw tensor payload of one frame (decoded size and bytes on the wire). 1 GiB = 256 M floats
 * per shard per message; larger models use more shards. No payload before the handshake. */
#define SMLT_MAX_PAYLOAD ((uint64_t)1 << 30)
#define SMLT_MAX_PAYLOAD_PREAUTH 0u

/* Payloads at least this big are read straight from the socket into their destination buffer
 * (no copy through the bufferevent's input buffer); smaller ones are copied out of it. */
#define SMLT_DIRECT_READ_MIN (256u << 10)

/* Payloads smaller than this are never considered for lz4 compression. */
#define SMLT_COMPRESS_MIN (8u << 10)

/* Partition map: tensors, shards, name length, dimensions per tensor. */
#define SMLT_MAX_TENSORS 65536u
#define SMLT_MAX_SHARDS 1024u
#define SMLT_MAX_NAME 256u
#define SMLT_MAX_DIMS 8u
/* Total model elements (float32) across all shards: 64 Gi floats = 256 GiB. */
#define SMLT_MAX_MODEL_ELEMS ((uint64_t)1 << 36)

/* Workers (ranks) one job may have, and the token length. */
#define SMLT_MAX_WORKERS 65536u
#define SMLT_MAX_TOKEN 256u

/* A shard's connections, and what one connection may have outstanding. */
#define SMLT_MAX_CONNS 4096u
#define SMLT_MAX_PENDING_PULLS 64u
/* Long-poll timeout a pull may ask for, in ms. */
#define SMLT_MAX_PULL_WAIT_MS 600000u

/* SO_SNDBUF / SO_RCVBUF of every connection (the kernel doubles it). */
#define SMLT_SOCK_BUF (4 << 20)

/* Frames a connection handles per wakeup before yielding to the others (memcached's budget). */
#define SMLT_FRAMES_PER_WAKEUP 32u
/* Bytes read straight from one socket per wakeup in direct-read mode before yielding. */
#define SMLT_DIRECT_READ_BUDGET (16u << 20)

/* Output watermark of a server connection (rpc_conn_set_backpressure()): with more copied
 * bytes queued than this (zero-copy tensor references excluded) it stops reading new frames
 * until the output drains below half. */
#define SMLT_OUTBUF_HIGH (8u << 20)

/* Gradient receive buffers a shard may hold at once (each the size of its key range). Pushes
 * beyond this wait, their connections unread, until a buffer frees. */
#define SMLT_MAX_GRAD_BUFS 16u

/* Seconds an unauthenticated connection may stay open before the handshake. */
#define SMLT_HANDSHAKE_TIMEOUT_S 10

/* A function invocation's payload, {"coordinator", "invocation", "token"} (a line on the local
 * runtime's pipe, a Lambda event, an HTTP request body), and the longest of its three fields. */
#define SMLT_MAX_INVOCATION 65536u
#define SMLT_MAX_INVOCATION_FIELD 255u

/* The CA certificates (PEM text) an invocation may carry in its "tls_ca" field, so that a
 * function instance verifies the coordinator and the shards without a file of its own. */
#define SMLT_MAX_TLS_CA_PEM (32u << 10)

/* Invocations one `smlt-worker --http` instance runs at once (--max-inflight). */
#define SMLT_MAX_INFLIGHT 64u

#endif
