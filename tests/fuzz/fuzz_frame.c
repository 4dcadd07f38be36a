/* fuzz_frame.c: libFuzzer target for the wire parser (proto/rpc_frame.c): the header parser,
 * the whole-frame parser, the payload codec and the protobuf metadata of every message type.
 *
 * The input's first byte steers the run; the rest is a byte stream as a peer would send it:
 *   bit 0  recompute each header's FNV-1a check before parsing it, so the fuzzer reaches the
 *          length, type and codec checks behind it (a random check passes once in 2^32)
 *   bit 1  parse with the pre-handshake limits instead of the post-handshake ones
 * Frames are parsed back to back, as rpc_conn.c consumes its input buffer. Besides "no crash,
 * no sanitizer report", it checks the parser's contract: NEED_MORE on every strict prefix of
 * a header, a complete frame's size is its header's, a strict prefix of a complete frame is
 * NEED_MORE, and decoding never writes past raw_len (the output buffer is exactly that big).
 *
 * Build and run: tools/fuzz.sh (clang -fsanitize=fuzzer,address,undefined). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "rpc_conn.h"
#include "rpc_frame.h"
#include "smlt_limits.h"

/* The post-handshake limits scaled down so a decoded payload stays small in the fuzzer; the
 * parser treats them exactly as the real ones. */
static const struct rpc_limits lim_auth = {64u << 10, 1u << 20};
static const struct rpc_limits lim_preauth = {SMLT_MAX_META_PREAUTH, SMLT_MAX_PAYLOAD_PREAUTH};

/* FNV-1a 32 over header bytes 0..19 and 24..39, written here independently of the parser. */
static void fix_check(uint8_t *h)
{
    uint32_t c = 0x811c9dc5u;
    for (int i = 0; i < SMLT_FRAME_HDR_LEN; i++) {
        if (i >= 20 && i < 24)
            continue;
        c ^= h[i];
        c *= 0x01000193u;
    }
    for (int i = 0; i < 4; i++)
        h[20 + i] = (uint8_t)(c >> (8 * i));
}

static void check_meta(const struct rpc_frame *f)
{
    const ProtobufCMessageDescriptor *d = rpc_msg_descriptor(f->hdr.type);
    if (!d)
        return;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, f->hdr.meta_len, f->meta);
    if (m) {
        /* A message that unpacked must pack again within the bound it reports. */
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *out = malloc(n ? n : 1);
        if (out && protobuf_c_message_pack(m, out) != n)
            abort();
        free(out);
        protobuf_c_message_free_unpacked(m, NULL);
    }
}

static void check_payload(const struct rpc_frame *f)
{
    const struct rpc_frame_hdr *h = &f->hdr;
    /* Exactly raw_len bytes, so ASan catches a write past the end. */
    uint8_t *dst = malloc(h->raw_len ? h->raw_len : 1);
    if (!dst)
        return;
    int rc = rpc_payload_decode(h, f->payload, dst);
    if (rc == 0 && !(h->flags & RPC_FLAG_LZ4) && h->raw_len &&
        memcmp(dst, f->payload, h->raw_len) != 0)
        abort();
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const int fix = data[0] & 1;
    const struct rpc_limits *lim = (data[0] & 2) ? &lim_preauth : &lim_auth;
    size_t len = size - 1;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, len);

    size_t off = 0;
    while (off < len) {
        uint8_t *p = buf + off;
        size_t left = len - off;
        if (fix && left >= SMLT_FRAME_HDR_LEN)
            fix_check(p);
        struct rpc_frame_hdr h;
        for (size_t k = 0; k < SMLT_FRAME_HDR_LEN && k < left; k++) {
            enum rpc_frame_status st = rpc_frame_parse_hdr(p, k, lim, &h, NULL);
            if (st != RPC_FRAME_NEED_MORE && st != RPC_FRAME_CORRUPT)
                abort();
        }
        struct rpc_frame f;
        size_t used = 0;
        const char *why = NULL;
        enum rpc_frame_status st = rpc_frame_parse(p, left, lim, &f, &used, &why);
        if (st == RPC_FRAME_CORRUPT || st == RPC_FRAME_TOO_BIG) {
            if (!why)
                abort(); /* every refusal says why */
            break;
        }
        if (st != RPC_FRAME_COMPLETE)
            break;
        if (used != SMLT_FRAME_HDR_LEN + f.hdr.meta_len + f.hdr.payload_len || used > left ||
            f.meta != p + SMLT_FRAME_HDR_LEN || f.payload != f.meta + f.hdr.meta_len)
            abort();
        if (used > SMLT_FRAME_HDR_LEN) {
            struct rpc_frame g;
            if (rpc_frame_parse(p, used - 1, lim, &g, NULL, NULL) != RPC_FRAME_NEED_MORE)
                abort();
        }
        check_meta(&f);
        check_payload(&f);
        off += used;
    }
    free(buf);
    return 0;
}
