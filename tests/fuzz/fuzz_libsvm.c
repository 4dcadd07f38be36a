/* fuzz_libsvm.c: libFuzzer target for the LIBSVM loader (worker/data_load.c,
 * data_load_libsvm).
 *
 * Input: byte 0 chooses the options (bits 0-2: dim 0 (the largest index), 1, 2, 5, 16, 64,
 * 300 or 4096; bit 3: num_classes 10 instead of inferred; bit 4: scale 0.5; bits 5-6:
 * max_rows 0, 1, 3 or 8), the rest is the file, read from a memfd (fuzz_file.h), plain or gzip
 * as the bytes say. With dim 0 the loader densifies every row to the largest index, which may
 * legitimately be 2^24, so those runs read at most 8 rows to keep within the fuzzer's memory
 * limit (the loader's own cap, 2^32 elements, is far above it). Checks besides the
 * sanitizers: a set that loads has labels in range, the promised dimension and finite
 * features; a failure gives a negative code and a message. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "data_load.h"
#include "data_set.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const int dims[8] = {0, 1, 2, 5, 16, 64, 300, 4096};
    static const size_t rows[4] = {0, 1, 3, 8};
    struct data_load_opts o;
    data_load_opts_init(&o);
    o.dim = dims[data[0] & 7];
    o.num_classes = (data[0] & 8) ? 10 : 0;
    o.scale = (data[0] & 16) ? 0.5f : 1.0f;
    o.max_rows = rows[(data[0] >> 5) & 3];
    if (o.dim == 0 && (o.max_rows == 0 || o.max_rows > 8))
        o.max_rows = 8;
    char path[64];
    fuzz_file_put(0, data + 1, size - 1, path);
    struct data_set *ds = NULL;
    char err[256] = "";
    int rc = data_load_libsvm(path, &o, &ds, err, sizeof err);
    if (rc) {
        if (rc > 0 || !err[0] || ds)
            abort();
        return 0;
    }
    if (!ds || data_set_check(ds, NULL) != 0 || (o.dim && data_set_dim(ds) != o.dim) ||
        (o.max_rows && data_set_size(ds) > o.max_rows))
        abort();
    const float *x = data_set_x(ds);
    size_t n = data_set_size(ds) * (size_t)data_set_dim(ds);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            abort();
    data_set_free(ds);
    return 0;
}
