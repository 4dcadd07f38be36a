/* rpc_frame.c: frame header encoding and parsing, and the lz4 payload codec.
 * Nothing here touches a socket or allocates; rpc_conn.c feeds it bytes. */
#include "rpc_frame.h"

#include <lz4.h>
#include <string.h>

#include "smlt.pb-c.h"
#include "smlt_error.h"

static const uint8_t rpc_magic[4] = {'S', 'M', 'L', 'T'};

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* FNV-1a over the header without its check field (bytes 20..23). */
static uint32_t hdr_check(const uint8_t *p)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < SMLT_FRAME_HDR_LEN; i++) {
        if (i >= 20 && i < 24)
            continue;
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

int rpc_frame_type_known(uint8_t type)
{
    switch (type) {
    case SMLT__MSG_TYPE__MSG_HELLO:
    case SMLT__MSG_TYPE__MSG_HELLO_OK:
    case SMLT__MSG_TYPE__MSG_ERROR:
    case SMLT__MSG_TYPE__MSG_PING:
    case SMLT__MSG_TYPE__MSG_PONG:
    case SMLT__MSG_TYPE__MSG_GET_MAP:
    case SMLT__MSG_TYPE__MSG_MAP:
    case SMLT__MSG_TYPE__MSG_PUSH:
    case SMLT__MSG_TYPE__MSG_PUSH_ACK:
    case SMLT__MSG_TYPE__MSG_PULL:
    case SMLT__MSG_TYPE__MSG_PULL_REPLY:
    case SMLT__MSG_TYPE__MSG_CONFIGURE:
    case SMLT__MSG_TYPE__MSG_SET_PARAMS:
    case SMLT__MSG_TYPE__MSG_UPDATE_CONF:
    case SMLT__MSG_TYPE__MSG_OK:
    case SMLT__MSG_TYPE__MSG_GET_STATS:
    case SMLT__MSG_TYPE__MSG_STATS:
    case SMLT__MSG_TYPE__MSG_SHUTDOWN:
    case SMLT__MSG_TYPE__MSG_WORKER_HELLO:
    case SMLT__MSG_TYPE__MSG_ASSIGNMENT:
    case SMLT__MSG_TYPE__MSG_PROGRESS:
    case SMLT__MSG_TYPE__MSG_PROGRESS_ACK:
    case SMLT__MSG_TYPE__MSG_DONE:
    case SMLT__MSG_TYPE__MSG_RESHARD_PREPARE:
    case SMLT__MSG_TYPE__MSG_EXPORT:
    case SMLT__MSG_TYPE__MSG_EXPORT_REPLY:
    case SMLT__MSG_TYPE__MSG_IMPORT:
    case SMLT__MSG_TYPE__MSG_RETIRE:
    case SMLT__MSG_TYPE__MSG_RESTORE:
    case SMLT__MSG_TYPE__MSG_LIST_CHECKPOINTS:
    case SMLT__MSG_TYPE__MSG_CHECKPOINT_LIST:
    case SMLT__MSG_TYPE__MSG_SET_BACKUP:
    case SMLT__MSG_TYPE__MSG_PROMOTE:
    case SMLT__MSG_TYPE__MSG_SET_MAP:
    case SMLT__MSG_TYPE__MSG_NODE_HOST:
    case SMLT__MSG_TYPE__MSG_NODE_DROP:
    case SMLT__MSG_TYPE__MSG_NODE_STATS:
    case SMLT__MSG_TYPE__MSG_NODE_INFO:
        return 1;
    default:
        return 0;
    }
}

void rpc_frame_hdr_encode(uint8_t out[SMLT_FRAME_HDR_LEN], const struct rpc_frame_hdr *h)
{
    memcpy(out, rpc_magic, 4);
    out[4] = h->version ? h->version : SMLT_PROTO_VERSION;
    out[5] = h->type;
    put_u16(out + 6, h->flags);
    put_u64(out + 8, h->req_id);
    put_u32(out + 16, h->meta_len);
    put_u32(out + 20, 0);
    put_u64(out + 24, h->payload_len);
    put_u64(out + 32, h->raw_len);
    put_u32(out + 20, hdr_check(out));
}

enum rpc_frame_status rpc_frame_parse_hdr(const uint8_t *buf, size_t len,
                                          const struct rpc_limits *lim, struct rpc_frame_hdr *h,
                                          const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    /* Reject a wrong magic as soon as its bytes are in, so garbage is refused fast. */
    size_t m = len < 4 ? len : 4;
    if (memcmp(buf, rpc_magic, m) != 0) {
        *why = "bad magic (not an SMLT-C frame)";
        return RPC_FRAME_CORRUPT;
    }
    if (len < SMLT_FRAME_HDR_LEN)
        return RPC_FRAME_NEED_MORE;
    if (get_u32(buf + 20) != hdr_check(buf)) {
        *why = "header checksum mismatch";
        return RPC_FRAME_CORRUPT;
    }
    h->version = buf[4];
    h->type = buf[5];
    h->flags = get_u16(buf + 6);
    h->req_id = get_u64(buf + 8);
    h->meta_len = get_u32(buf + 16);
    h->payload_len = get_u64(buf + 24);
    h->raw_len = get_u64(buf + 32);
    if (h->version != SMLT_PROTO_VERSION) {
        *why = "unsupported protocol version";
        return RPC_FRAME_CORRUPT;
    }
    if (!rpc_frame_type_known(h->type)) {
        *why = "unknown message type";
        return RPC_FRAME_CORRUPT;
    }
    if (h->flags & ~RPC_FLAGS_KNOWN) {
        *why = "unknown header flags";
        return RPC_FRAME_CORRUPT;
    }
    if (h->meta_len > lim->max_meta) {
        *why = "metadata length over the limit";
        return RPC_FRAME_TOO_BIG;
    }
    if (h->payload_len > lim->max_payload || h->raw_len > lim->max_payload) {
        *why = "payload length over the limit";
        return RPC_FRAME_TOO_BIG;
    }
    if (h->flags & RPC_FLAG_LZ4) {
        /* An lz4 block never grows past its bound, and one holds at most LZ4_MAX_INPUT_SIZE. */
        /* lz4 expands at most about 255:1, so a tiny body cannot claim a huge raw size (the
         * receiver sizes its buffer from raw_len before the body is in). */
        if (h->raw_len == 0 || h->raw_len > LZ4_MAX_INPUT_SIZE ||
            h->payload_len > (uint64_t)LZ4_compressBound((int)h->raw_len) || h->payload_len == 0 ||
            h->raw_len > h->payload_len * 255 + 64) {
            *why = "compressed payload lengths inconsistent";
            return RPC_FRAME_CORRUPT;
        }
    } else if (h->payload_len != h->raw_len) {
        *why = "payload lengths differ on an uncompressed frame";
        return RPC_FRAME_CORRUPT;
    }
    return RPC_FRAME_COMPLETE;
}

enum rpc_frame_status rpc_frame_parse(const uint8_t *buf, size_t len, const struct rpc_limits *lim,
                                      struct rpc_frame *f, size_t *used, const char **why)
{
    enum rpc_frame_status st = rpc_frame_parse_hdr(buf, len, lim, &f->hdr, why);
    if (st != RPC_FRAME_COMPLETE)
        return st;
    uint64_t total = SMLT_FRAME_HDR_LEN + (uint64_t)f->hdr.meta_len + f->hdr.payload_len;
    if ((uint64_t)len < total)
        return RPC_FRAME_NEED_MORE;
    f->meta = buf + SMLT_FRAME_HDR_LEN;
    f->payload = f->meta + f->hdr.meta_len;
    if (used)
        *used = (size_t)total;
    return RPC_FRAME_COMPLETE;
}

int rpc_payload_decode(const struct rpc_frame_hdr *h, const void *src, void *dst)
{
    if (!(h->flags & RPC_FLAG_LZ4)) {
        if (h->payload_len != h->raw_len)
            return SMLT_ECORRUPT;
        if (src != dst && h->raw_len)
            memcpy(dst, src, h->raw_len);
        return 0;
    }
    if (h->payload_len > LZ4_MAX_INPUT_SIZE || h->raw_len > LZ4_MAX_INPUT_SIZE)
        return SMLT_ECORRUPT;
    int n = LZ4_decompress_safe(src, dst, (int)h->payload_len, (int)h->raw_len);
    if (n < 0 || (uint64_t)n != h->raw_len)
        return SMLT_ECORRUPT;
    return 0;
}

size_t rpc_payload_bound(size_t n)
{
    if (n > LZ4_MAX_INPUT_SIZE)
        return 0;
    return (size_t)LZ4_compressBound((int)n);
}

size_t rpc_payload_compress(const void *raw, size_t n, void *dst, size_t cap)
{
    if (n == 0 || n > LZ4_MAX_INPUT_SIZE)
        return 0;
    int c = LZ4_compress_default(raw, dst, (int)n, cap > (size_t)INT32_MAX ? INT32_MAX : (int)cap);
    return c > 0 ? (size_t)c : 0;
}

int rpc_payload_should_compress(const void *raw, size_t n)
{
    enum { SAMPLE = 16 << 10, NSAMPLES = 4, PROBES = 1024 };
    if (n < SMLT_COMPRESS_MIN || n > LZ4_MAX_INPUT_SIZE)
        return 0;
    /* Stage 1, nearly free: probe 1024 32-bit words spread over the payload. Dense float data
     * (gradients, parameters) has almost no zero words and no word equal to its neighbour; only
     * when a quarter of the probes are zeros or repeats is lz4 worth a sample. */
    const unsigned char *w = raw; /* any alignment: words are read with memcpy */
    size_t nw = n / 4, stride = nw / PROBES ? nw / PROBES : 1, hits = 0, probes = 0;
    for (size_t i = 0; i + 1 < nw && probes < PROBES; i += stride, probes++) {
        uint32_t a, b;
        memcpy(&a, w + 4 * i, 4);
        memcpy(&b, w + 4 * (i + 1), 4);
        hits += a == 0 || a == b;
    }
    if (hits * 4 < probes)
        return 0;
    /* Stage 2: compress four samples spread over the payload, each at most 1/16 of it. */
    char out[LZ4_COMPRESSBOUND(SAMPLE)];
    size_t each = n / (NSAMPLES * 16);
    if (each > SAMPLE)
        each = SAMPLE;
    if (each < 256)
        each = n / NSAMPLES < 256 ? n / NSAMPLES : 256;
    size_t in_total = 0, out_total = 0;
    for (int i = 0; i < NSAMPLES; i++) {
        size_t off = (n - each) / (NSAMPLES - 1) * (size_t)i;
        int c = LZ4_compress_fast((const char *)raw + off, out, (int)each, (int)sizeof out, 1);
        if (c <= 0)
            return 0;
        in_total += each;
        out_total += (size_t)c;
    }
    /* Compress when the samples shrink to under half: at loopback speeds (about 2.5 GB/s) and
     * lz4's 0.7-4 GB/s, less saving than that costs more CPU time than it saves on the wire. */
    return out_total * 2 < in_total;
}

const char *rpc_frame_status_str(enum rpc_frame_status st)
{
    switch (st) {
    case RPC_FRAME_COMPLETE:
        return "complete";
    case RPC_FRAME_NEED_MORE:
        return "need more";
    case RPC_FRAME_TOO_BIG:
        return "too big";
    case RPC_FRAME_CORRUPT:
        return "corrupt";
    }
    return "?";
}
