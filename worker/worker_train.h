/* worker_train.h: a worker's training loop against the parameter server.
 *
 * One invocation trains a slice of a job: from global step `start_step` for at most
 * `max_steps` steps, stopping cleanly before `deadline` (the function platform's time limit),
 * and reports where it got to. The same `struct worker` serves many invocations: a warm start
 * keeps the loaded dataset, the model and its buffers, and the shard connections, so only a
 * cold start pays for initialization.
 *
 * Steps and data: every rank runs the same number of steps per epoch,
 * steps_per_epoch = floor(floor(N / workers) / batch), and step s reads batch
 * (s - step_base) mod spe of epoch epoch_base + (s - step_base) / spe of its partition
 * (data_set_iter; deterministic in (rank, workers, seed, epoch)), so the data cursor is the
 * step itself: a replacement worker given start_step continues with exactly the batches its
 * predecessor would have seen. When the coordinator changes the worker count it does so at an
 * epoch boundary and starts a new phase there (step_base, epoch_base).
 *
 * Per step: BSP pushes the gradient of step s and pulls the model of clock s+1 in one
 * exchange (smlt_sync); SSP pushes then pulls waiting until the slowest rank is within the
 * staleness bound; ASP pushes then pulls without waiting. The model's flat parameter array is
 * the pull destination and its gradient array the push source: no copies. */
#ifndef WORKER_TRAIN_H
#define WORKER_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "smlt.h"
#include "worker_setup.h" /* worker_setup_job(), which callers used to find here */

struct data_set;
struct nn_model;

/* How a dataset's files are read: the job spec's dataset_options. All zero: the defaults
 * (label in column 0, header detected, no scaling). */
struct worker_data_opts {
    int label_col;          /* CSV: the label's column, 0-based; -1: the last */
    int header;             /* CSV: enum data_load_header */
    int scaling;            /* enum data_set_scaling: fitted on the training file, applied to
                               the training and test files alike */
};

struct worker_task {
    const char *job;        /* job id, for logs */
    const char *model;      /* model spec (nn_model.h), or "python:FILE.py" (worker_py.h) */
    const char *model_source; /* a python: model's training file (its text) */
    const char *data;       /* dataset: a directory or http(s) URL holding the IDX files
                               (train-*, t10k-*), or "csv:TRAIN[,TEST]" / "libsvm:TRAIN[,TEST]" */
    const char *cache_dir;  /* for URL datasets; NULL: default */
    struct worker_data_opts data_opts;
    int batch;
    int sync;               /* SMLT_SYNC_* */
    uint32_t staleness;
    uint32_t rank, workers;
    uint64_t seed;
    const char *ps_addrs;   /* any shard(s) of the job: "host:port,..." */
    const char *token;
    uint64_t start_step;    /* global step this slice starts at */
    uint64_t max_steps;     /* steps in this slice; 0: until total_steps */
    uint64_t total_steps;   /* the job ends at this step (epochs * steps_per_epoch) */
    double deadline;        /* CLOCK_MONOTONIC seconds by which to return; 0: none */
    int evaluate;           /* evaluate on the test set at the end of every epoch */
    int timeout_ms;         /* per PS call; 0: 60000 */
    uint64_t eval_every;    /* with evaluate: also evaluate after every step s with
                               s % eval_every == 0; 0: at epoch ends only */
    uint64_t lr_decay_step; /* step learning-rate schedule, kept by rank 0: before step s with
                               s % lr_decay_step == 0 (and when a slice starts past one) it sets
                               the job's rate to lr * lr_decay^(s / lr_decay_step) on the shards
                               (smlt_update_conf: shards without an admin token); 0: none */
    float lr, lr_decay;
    /* The job's current phase: since step_base (the first step of epoch epoch_base) it runs
     * with `workers` ranks. 0, 0 for a job that never changed its worker count. */
    uint64_t step_base;
    uint32_t epoch_base;
    int stop_at_epoch_end;  /* end the slice at the next epoch boundary (WORKER_SLICE_END) */
    uint32_t chaos_delay_us; /* fault injection: every step takes this much longer (a slow host) */
    /* TLS to the shards (all zero: plain TCP): as smlt_client_opts' tls fields (borrowed) */
    struct worker_tls {
        int on;              /* the shards speak TLS */
        const char *ca;      /* CA file (PEM) */
        const char *ca_pem;  /* or the CA certificates as PEM text (from the invocation) */
        const char *cert, *key; /* a client certificate and key for mutual TLS (PEM files) */
    } tls;
};

enum worker_status {
    WORKER_DONE = 0,      /* reached total_steps */
    WORKER_SLICE_END = 1, /* ran max_steps */
    WORKER_TIME_UP = 2,   /* stopped before the deadline; continue from next_step */
    WORKER_FAILED = 3     /* error: see err */
};

struct worker_report {
    enum worker_status status;
    int err_code;
    char err[256];
    uint64_t next_step;     /* the cursor: where the next invocation starts */
    uint64_t steps;         /* steps done in this invocation */
    uint64_t samples;
    double loss;            /* mean training loss over this slice's steps of the current epoch
                             * (of the last epoch until a tenth of this one is done) */
    double compute_s;       /* forward + backward */
    double comm_s;          /* push + pull, including waiting for other ranks */
    double init_s;          /* loading data, building the model, connecting (0 when warm) */
    double eval_s;
    double elapsed_s;
    int cold;               /* 1 if this invocation had to initialize */
    int64_t eval_epoch;     /* last epoch evaluated in this invocation, -1 if none */
    double test_acc, test_loss;
    uint64_t steps_per_epoch;
    uint64_t eval_step;     /* global step after which the last evaluation ran; 0 if none */
};

/* Progress callback, called after every step (and after evaluations) with the report so far.
 * Returning nonzero asks the worker to stop after this step (status WORKER_SLICE_END). */
typedef int (*worker_progress_fn)(const struct worker_report *r, void *arg);

struct worker;

/* Returns a new worker (no data, model or connections yet), or NULL. */
struct worker *worker_new(void);
void worker_free(struct worker *w);

/* Trains the slice described by t (borrowed for the call), filling r. progress may be NULL.
 * Returns 0 (r->status says how it ended) or a negative code (r->status WORKER_FAILED, r->err
 * says why). */
int worker_run(struct worker *w, const struct worker_task *t, struct worker_report *r,
               worker_progress_fn progress, void *arg);

/* The model and data of the last run (borrowed; NULL before the first), for evaluation. */
struct nn_model *worker_model(struct worker *w);
const struct data_set *worker_test_set(const struct worker *w);

/* Steps per epoch for a dataset of n rows split over `workers` ranks with this batch size. */
uint64_t worker_steps_per_epoch(size_t n, uint32_t workers, int batch);

/* Loads a dataset source (as worker_task.data) into train and test sets (test may come back
 * NULL when the source has none), read as o says (NULL: the defaults). Either pointer may be
 * NULL to skip that split; the training file is read either way, for its shape and its
 * scaling statistics. Refuses a training set whose labels are all one class. Returns 0 or a
 * negative code with a message in err. */
int worker_load_data(const char *source, const char *cache_dir, const struct worker_data_opts *o,
                     struct data_set **train, struct data_set **test, char *err,
                     size_t errlen);

/* Sets one of o's fields from its command-line or spec spelling: key "label_column" (an
 * integer >= 0 or "last"), "header" ("auto", "true" or "false") or "scale" ("none",
 * "minmax" or "standard"). Returns 0, or -SMLT_EINVAL with a message in err naming key. */
int worker_data_opts_set(struct worker_data_opts *o, const char *key, const char *val,
                         char *err, size_t errlen);

/* Checks that model m (spec names it in messages) takes ds's rows and covers its labels.
 * Returns 0 or -SMLT_EINVAL with a message in err. */
int worker_check_fit(const struct nn_model *m, const char *spec, const struct data_set *ds,
                     char *err, size_t errlen);

#endif
