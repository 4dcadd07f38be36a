/* worker_resp.h: the invocation response line, the one thing a worker function returns to its
 * platform (worker_invoke.c writes it; the coordinator's backends read it when the worker's
 * Done did not arrive over the RPC). One JSON object on one line:
 *   {"invocation": "ID", "status": "finished"|"slice"|"time_up"|"failed", "next_step": N,
 *    "steps": N, "samples": N, "loss": x, "elapsed_s": x, "init_s": x, "cold": true|false,
 *    "error": "..."}
 * Small enough to link anywhere: jansson and the proto's status enum only. */
#ifndef WORKER_RESP_H
#define WORKER_RESP_H

#include <stdint.h>

#define WORKER_RESP_ERR_MAX 256

struct worker_resp {
    const char *invocation; /* format: borrowed; parse: copied into inv_buf */
    char inv_buf[96];
    int status;             /* Smlt__DoneStatus */
    uint64_t next_step, steps, samples;
    double loss, elapsed_s, init_s;
    int cold;
    char error[WORKER_RESP_ERR_MAX];
};

/* Returns the line (no newline; free() it), or NULL when out of memory. */
char *worker_resp_format(const struct worker_resp *r);

/* Parses a response line into r. Returns 0, or SMLT_EPROTO when it is not a response (no
 * object, no known status); fields missing from a response read as 0. */
int worker_resp_parse(const char *line, struct worker_resp *r);

#endif
