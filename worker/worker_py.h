/* worker_py.h: torch jobs ("model": "python:FILE.py") in the worker bootstrap and at set-up.
 *
 * A torch job's training file defines its model and data in Python (worker/python/smlt/job.py
 * says how). The C side keeps everything else:
 *
 * - Set-up (worker_setup_python(), run by the coordinator's admin thread and smlt-worker
 *   --setup): `python3 -m smlt.job describe FILE OUT` builds the model once and writes its
 *   tensors and initial values as a model file; the shards are set up with those tensors and
 *   then given those values (smlt_set_params()), so every rank starts from torch's own
 *   initialization.
 * - Training (worker_py_run(), called by worker_run() for these models): the bootstrap runs
 *   one `python3 -m smlt.job serve` child per function instance and hands it each slice as a
 *   JSON line (rank, start step, stop-by time, the job's settings). The child trains through
 *   the shards with libsmlt (the smlt package) and reports every step as a JSON line; the
 *   bootstrap turns those into its usual progress reports, asks the child to stop when the
 *   coordinator does, and owns the time limit: a child still busy 5 s after the slice's
 *   stop-by time is killed and the slice ends as timed out at the last step it reported
 *   (the shards count every (rank, step) once, so the next slice resumes there). The child
 *   stays up between slices: a warm start keeps the interpreter, the model, the data and
 *   the connections.
 *
 * The interpreter is $SMLT_PYTHON (default /usr/bin/python3). It finds the smlt package on
 * $SMLT_PYTHONPATH, else in the build tree next to the binary (BIN/../python), else where
 * pip installed it. */
#ifndef WORKER_PY_H
#define WORKER_PY_H

#include <stddef.h>
#include <stdint.h>

#include "smlt_admin.h"

struct worker_task;
struct worker_report;
struct worker_py;

/* Sets up a torch job on the shards at addrs (all of them, in shard order) with the admin
 * token from the training file at path: its tensors and initial values (model built with
 * conf->seed). Stores the parameter count in *nparams (may be NULL). Returns 0 or a negative
 * SMLT_E* code with a message in err (the training file's own error, when it failed). */
int worker_setup_python(const char *addrs, const char *admin_token, const char *path,
                        const struct smlt_job_conf *conf, uint64_t *nparams, char *err,
                        size_t errlen);

/* Writes source (a torch job's training file) as DIR/smlt-py-<uid>/<hash>/NAME (NAME from
 * the model "python:NAME" or "python:DIR/NAME"), unless it is there already, and puts its path
 * in out. Returns 0 or SMLT_ESYS / SMLT_EINVAL with a message in err. */
int worker_py_source_file(const char *model, const char *source, char *out, size_t outlen,
                          char *err, size_t errlen);

/* worker_run() for a torch job: trains the slice t with the training file at file through
 * the child *py (started when NULL or gone; freed and NULLed when it dies). progress and arg
 * as for worker_run(). Returns 0 (r->status says how it ended) or a negative code. */
typedef int (*worker_py_progress_fn)(const struct worker_report *r, void *arg);
int worker_py_run(struct worker_py **py, const struct worker_task *t, const char *file,
                  struct worker_report *r, worker_py_progress_fn progress, void *arg);

/* Stops the child (closing its stdin, then SIGKILL if it lingers) and frees py. NULL is
 * fine. */
void worker_py_free(struct worker_py *py);

#endif
