/* fuzz_ckpt.c: libFuzzer target for the shard checkpoint reader (ps/ps_ckpt.c ps_ckpt_parse()).
 *
 * The input's first byte steers the run; the rest is a checkpoint file:
 *   bit 0  set the header's file length to the input's and recompute the header CRC, so the
 *          fuzzer reaches the count and size checks behind it (a random CRC passes once in 2^32)
 *   bit 1  recompute the tables' CRC as well
 *   bit 2  recompute every float block's CRC that lies inside the input
 * Besides "no crash, no sanitizer report" it checks the contract: a refusal leaves *out NULL
 * and says why; an accepted file decodes to counts within the limits.
 *
 * Build and run: tools/fuzz.sh (clang -fsanitize=fuzzer,address,undefined). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "ps_ckpt.h"
#include "smlt_limits.h"

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void fix(uint8_t *b, size_t len, int flags)
{
    if (len < PS_CKPT_HDR_LEN)
        return;
    if (flags & 1) {
        for (int i = 0; i < 8; i++)
            b[56 + i] = (uint8_t)((uint64_t)len >> (8 * i));
        put32(b + 100, (uint32_t)crc32(0, b, 100));
    }
    uint64_t nranks = get32(b + 48), joblen = get32(b + 64), maplen = get32(b + 52);
    uint64_t mlen = nranks * 16 + joblen + maplen;
    if (mlen + 4 > len - PS_CKPT_HDR_LEN)
        return;
    uint8_t *m = b + PS_CKPT_HDR_LEN;
    if (flags & 2)
        put32(m + mlen, (uint32_t)crc32(0, m, (uInt)mlen));
    if (!(flags & 4))
        return;
    size_t off = PS_CKPT_HDR_LEN + (size_t)mlen + 4;
    while (len - off >= 8) {
        uint32_t stored = get32(b + off);
        if (stored > len - off - 8)
            break;
        uLong c = crc32(0, b + off, 4);
        put32(b + off + 4, (uint32_t)crc32(c, b + off + 8, stored));
        off += 8 + stored;
    }
    (void)get64;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int flags = data[0];
    size_t len = size - 1;
    uint8_t *b = malloc(len ? len : 1);
    if (!b)
        return 0;
    memcpy(b, data + 1, len);
    fix(b, len, flags);
    struct ps_ckpt *c = (struct ps_ckpt *)1;
    char err[512];
    err[0] = 0;
    int rc = ps_ckpt_parse(b, len, &c, err, sizeof err);
    if (rc) {
        if (c != NULL || err[0] == 0)
            abort();
    } else {
        if (!c || c->hi < c->lo || c->nstate > PS_CKPT_MAX_STATE ||
            c->nranks > SMLT_MAX_WORKERS || c->map_len > SMLT_MAX_META_LEN)
            abort();
        /* Touch every decoded value so the sanitizer sees any short allocation. */
        volatile float sink = 0;
        uint64_t n = c->hi - c->lo;
        for (uint64_t i = 0; i < n; i++)
            sink += c->params[i];
        for (uint64_t i = 0; i < n * c->nstate; i++)
            sink += c->state[i];
        (void)sink;
        ps_ckpt_free(c);
    }
    free(b);
    return 0;
}
