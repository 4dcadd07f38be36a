/* fuzz_csv.c: libFuzzer target for the CSV loader (worker/data_load.c, data_load_csv).
 *
 * Input: byte 0 chooses the options (bits 0-1: header detect, none, skip the first line, or
 * detect in a training set, which refuses one class; bits 2-3: label column 0, 1, last, or 3;
 * bit 4: num_classes 10 instead of inferred; bit 5: dim 4 checked; bit 6: scale 1/255; bit 7:
 * max_rows 5), the rest is the file, read
 * from a memfd (fuzz_file.h), plain or gzip as the bytes say. Checks besides the sanitizers:
 * a set that loads has labels in range and finite features; a failure gives a negative code
 * and a message. */
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
    static const int header[4] = {DATA_LOAD_HEADER_AUTO, DATA_LOAD_HEADER_NO,
                                  DATA_LOAD_HEADER_YES, DATA_LOAD_HEADER_AUTO};
    static const int label_col[4] = {0, 1, -1, 3};
    struct data_load_opts o;
    data_load_opts_init(&o);
    o.header = header[data[0] & 3];
    o.train = (data[0] & 3) == 3;
    o.label_col = label_col[(data[0] >> 2) & 3];
    o.num_classes = (data[0] & 16) ? 10 : 0;
    o.dim = (data[0] & 32) ? 4 : 0;
    o.scale = (data[0] & 64) ? 1.0f / 255.0f : 1.0f;
    o.max_rows = (data[0] & 128) ? 5 : 0;
    char path[64];
    fuzz_file_put(0, data + 1, size - 1, path);
    struct data_set *ds = NULL;
    char err[256] = "";
    int rc = data_load_csv(path, &o, &ds, err, sizeof err);
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
