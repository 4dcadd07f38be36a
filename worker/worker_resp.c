/* worker_resp.c: the invocation response line (see worker_resp.h). */
#include "worker_resp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "smlt.pb-c.h"
#include "smlt_error.h"

static const struct {
    int status;
    const char *name;
} names[] = {{SMLT__DONE_STATUS__DONE_FINISHED, "finished"},
             {SMLT__DONE_STATUS__DONE_SLICE, "slice"},
             {SMLT__DONE_STATUS__DONE_TIME_UP, "time_up"},
             {SMLT__DONE_STATUS__DONE_FAILED, "failed"}};

char *worker_resp_format(const struct worker_resp *r)
{
    const char *st = "failed";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].status == r->status)
            st = names[i].name;
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:b}", "invocation",
                          r->invocation ? r->invocation : "", "status", st, "next_step",
                          (json_int_t)r->next_step, "steps", (json_int_t)r->steps, "samples",
                          (json_int_t)r->samples, "loss", r->loss, "elapsed_s", r->elapsed_s,
                          "init_s", r->init_s, "cold", r->cold);
    if (o && r->error[0])
        json_object_set_new(o, "error", json_string(r->error));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static uint64_t get_u64(json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    return v > 0 ? (uint64_t)v : 0;
}

int worker_resp_parse(const char *line, struct worker_resp *r)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    json_error_t je;
    json_t *o = line ? json_loads(line, 0, &je) : NULL;
    const char *st = json_is_object(o) ? json_string_value(json_object_get(o, "status")) : NULL;
    for (size_t i = 0; st && i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(st, names[i].name))
            r->status = names[i].status;
    if (r->status < 0) {
        json_decref(o);
        return SMLT_EPROTO;
    }
    const char *inv = json_string_value(json_object_get(o, "invocation"));
    const char *e = json_string_value(json_object_get(o, "error"));
    snprintf(r->inv_buf, sizeof r->inv_buf, "%s", inv ? inv : "");
    r->invocation = r->inv_buf;
    snprintf(r->error, sizeof r->error, "%s", e ? e : "");
    r->next_step = get_u64(o, "next_step");
    r->steps = get_u64(o, "steps");
    r->samples = get_u64(o, "samples");
    r->loss = json_number_value(json_object_get(o, "loss"));
    r->elapsed_s = json_number_value(json_object_get(o, "elapsed_s"));
    r->init_s = json_number_value(json_object_get(o, "init_s"));
    r->cold = json_is_true(json_object_get(o, "cold"));
    json_decref(o);
    return 0;
}
