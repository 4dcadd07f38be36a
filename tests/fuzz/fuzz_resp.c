/* fuzz_resp.c: libFuzzer target for the invocation response line (worker/worker_resp.c), which
 * the coordinator reads from a function's output: whatever it is given, the parser returns 0 or
 * SMLT_EPROTO, fills bounded fields, and what it accepts formats and parses back the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smlt_error.h"
#include "worker_resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    if (!line)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    struct worker_resp r, back;
    int rc = worker_resp_parse(line, &r);
    if (rc != 0 && rc != SMLT_EPROTO)
        abort();
    if (rc == 0) {
        if (strlen(r.error) >= sizeof r.error || strlen(r.inv_buf) >= sizeof r.inv_buf)
            abort();
        char *s = worker_resp_format(&r);
        if (s && (worker_resp_parse(s, &back) != 0 || back.status != r.status ||
                  back.next_step != r.next_step || strcmp(back.error, r.error)))
            abort();
        free(s);
    }
    free(line);
    return 0;
}
