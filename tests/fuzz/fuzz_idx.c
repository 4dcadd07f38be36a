/* fuzz_idx.c: libFuzzer target for the IDX loader (worker/data_load.c, data_load_idx).
 *
 * Input: byte 0 chooses the options (bit 0: num_classes 10 instead of inferred; bit 1: dim
 * 784 checked; bits 2-3: max_rows 0, 1, 7 or 64), bytes 1-2 (little-endian) the length of
 * the labels file, then the labels file and, after it, the images file. Both go through
 * memfds (fuzz_file.h), plain or gzip as the bytes say: zlib passes plain bytes through.
 * Checks besides the sanitizers: a load that succeeds gives a set whose labels are in range
 * and whose pixels lie in [0, 1]; a failure returns a negative code and says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data_load.h"
#include "data_set.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    static const size_t rows[4] = {0, 1, 7, 64};
    struct data_load_opts o;
    data_load_opts_init(&o);
    o.num_classes = (data[0] & 1) ? 10 : 0;
    o.dim = (data[0] & 2) ? 784 : 0;
    o.max_rows = rows[(data[0] >> 2) & 3];
    size_t nl = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (nl > size)
        nl = size;
    char lpath[64], ipath[64];
    fuzz_file_put(0, data, nl, lpath);
    fuzz_file_put(1, data + nl, size - nl, ipath);
    struct data_set *ds = NULL;
    char err[256] = "";
    int rc = data_load_idx(ipath, lpath, &o, &ds, err, sizeof err);
    if (rc) {
        if (!err[0] || rc > 0)
            abort();
        return 0;
    }
    if (!ds || data_set_check(ds, NULL) != 0)
        abort();
    const float *x = data_set_x(ds);
    size_t n = data_set_size(ds) * (size_t)data_set_dim(ds);
    for (size_t i = 0; i < n; i++)
        if (!(x[i] >= 0.0f && x[i] <= 1.0f))
            abort();
    data_set_free(ds);
    return 0;
}
