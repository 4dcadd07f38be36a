/* rpc_frame.h: the SMLT-C frame: header layout, a pure incremental parser, the payload codec.
 *
 * Every message on every SMLT-C connection is one frame:
 *
 *   offset size field
 *   0      4    magic "SMLT"
 *   4      1    protocol version (SMLT_PROTO_VERSION)
 *   5      1    type (smlt.MsgType)
 *   6      2    flags (RPC_FLAG_*)
 *   8      8    request id (a reply echoes its request's id)
 *   16     4    meta_len: bytes of the protobuf-c metadata message
 *   20     4    check: FNV-1a 32 of the other 36 header bytes
 *   24     8    payload_len: payload bytes on the wire
 *   32     8    raw_len: payload bytes after decoding (== payload_len unless RPC_FLAG_LZ4)
 *   40     meta_len bytes of metadata, then payload_len bytes of payload
 *
 * All integers little-endian. The parser below is a pure function over a byte buffer so that
 * it can be unit-tested and fuzzed; rpc_conn.c drives it from a bufferevent. */
#ifndef RPC_FRAME_H
#define RPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "smlt_limits.h"

#define RPC_FLAG_LZ4 0x0001u   /* payload is one lz4 block of raw_len bytes */
#define RPC_FLAGS_KNOWN RPC_FLAG_LZ4

enum rpc_frame_status {
    RPC_FRAME_COMPLETE = 0,   /* what was asked for is all there and valid */
    RPC_FRAME_NEED_MORE = 1,  /* valid so far; more bytes needed */
    RPC_FRAME_TOO_BIG = 2,    /* a length exceeds the limits in force */
    RPC_FRAME_CORRUPT = 3     /* bad magic, checksum, version, type, flags or lengths */
};

struct rpc_frame_hdr {
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint64_t req_id;
    uint32_t meta_len;
    uint64_t payload_len;  /* on the wire */
    uint64_t raw_len;      /* decoded */
};

struct rpc_limits {
    uint32_t max_meta;
    uint64_t max_payload;
};

/* A whole frame found in a buffer: pointers borrow from that buffer. */
struct rpc_frame {
    struct rpc_frame_hdr hdr;
    const uint8_t *meta;
    const uint8_t *payload;
};

/* Returns 1 if type is a message type this protocol version knows. */
int rpc_frame_type_known(uint8_t type);

/* Writes a header for the given fields into out[SMLT_FRAME_HDR_LEN]. */
void rpc_frame_hdr_encode(uint8_t out[SMLT_FRAME_HDR_LEN], const struct rpc_frame_hdr *h);

/* Parses a frame header from buf (len bytes available, may be fewer than a header).
 * Returns RPC_FRAME_NEED_MORE while len < SMLT_FRAME_HDR_LEN; otherwise validates magic, check,
 * version, type, flags and lengths against lim and returns COMPLETE, TOO_BIG or CORRUPT.
 * Oversized lengths are refused here, before any byte of the body has arrived. On failure
 * *why (if non-NULL) points at a static explanation. Pure: no allocation, no state. */
enum rpc_frame_status rpc_frame_parse_hdr(const uint8_t *buf, size_t len,
                                          const struct rpc_limits *lim, struct rpc_frame_hdr *h,
                                          const char **why);

/* Parses one whole frame at the start of buf: header, then meta_len + payload_len bytes.
 * Returns as rpc_frame_parse_hdr(), NEED_MORE until the whole frame is there. On COMPLETE,
 * f->meta and f->payload borrow from buf and *used (if non-NULL) is the frame's total length. */
enum rpc_frame_status rpc_frame_parse(const uint8_t *buf, size_t len, const struct rpc_limits *lim,
                                      struct rpc_frame *f, size_t *used, const char **why);

/* Decodes a payload of h->payload_len wire bytes in src into dst (room for h->raw_len bytes).
 * Uncompressed payloads are copied. Returns 0 or SMLT_ECORRUPT (bad or truncated lz4 block, or
 * one that does not decode to exactly raw_len bytes). Never writes past dst + raw_len. */
int rpc_payload_decode(const struct rpc_frame_hdr *h, const void *src, void *dst);

/* Decides whether lz4 pays for these n bytes, by compressing a few samples spread over them:
 * dense float gradients barely compress and are sent raw; sparse or repetitive ones compress.
 * Returns 1 to compress. Cost: at most four 16 KiB sample compressions. */
int rpc_payload_should_compress(const void *raw, size_t n);

/* Compresses n bytes into dst (capacity cap, at least rpc_payload_bound(n)).
 * Returns the compressed length, or 0 if it did not fit or n is too large for one lz4 block. */
size_t rpc_payload_compress(const void *raw, size_t n, void *dst, size_t cap);

/* Returns the worst-case compressed size of n bytes, or 0 if n is too big for lz4. */
size_t rpc_payload_bound(size_t n);

/* Returns a static name for a frame status, for logs. */
const char *rpc_frame_status_str(enum rpc_frame_status st);

#endif
