/* fuzz_spec.c: libFuzzer target for the job spec parser (coordinator/coord_spec.c).
 *
 * Input: the bytes are a job spec as a client would POST it. Checks besides the sanitizers: a
 * refused spec gives a negative code and a message naming something; an accepted one survives
 * a round trip (its canonical JSON parses again to the same canonical JSON), so what the
 * coordinator journals and shows can always be read back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "coord_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct coord_spec *s = malloc(sizeof *s), *t = malloc(sizeof *t);
    if (!s || !t)
        abort();
    char err[512] = "";
    int rc = coord_spec_parse((const char *)data, size, s, err, sizeof err);
    if (rc) {
        if (rc > 0 || !err[0])
            abort();
        free(s);
        free(t);
        return 0;
    }
    json_t *a = coord_spec_to_json(s);
    char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    if (!text)
        abort();
    err[0] = 0;
    if (coord_spec_parse(text, strlen(text), t, err, sizeof err) != 0)
        abort(); /* the canonical form of an accepted spec is refused */
    json_t *b = coord_spec_to_json(t);
    if (!b || !json_equal(a, b))
        abort();
    json_decref(a);
    json_decref(b);
    free(text);
    free(s);
    free(t);
    return 0;
}
