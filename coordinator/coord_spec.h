/* coord_spec.h: a training job's spec, parsed from JSON and validated into a plain struct.
 *
 * `smltctl submit` and the HTTP API hand the coordinator a JSON object; coord_spec_parse()
 * checks every field and fills a struct coord_spec with the values and every default spelled
 * out. Each refusal is one message that starts with the field it is about:
 *     budget_usd: must be a number > 0 (got -3)
 *     model: unknown model 'foo' in 'foo:1-2' (expected logreg, mlp or lenet5)
 *     optimizer.lr: must be a number > 0 (got a string)
 *     frobnicate: unknown field
 * Unknown fields are refused (a typo must not be silently ignored; a close known name is
 * suggested), so are duplicate keys, wrong JSON types and fields that only mean something
 * with another setting (staleness without sync "ssp", momentum with optimizer kind "adam").
 *
 * The JSON fields, their types and defaults (everything but model and dataset is optional):
 *   name        string, 1..127 bytes, no control characters [derived from model]
 *   model       string: a model spec (worker/nn_spec.h), checked without building it; the
 *               struct holds the canonical spec
 *   dataset     string: a local directory holding train-images-idx3-ubyte(.gz) and
 *               train-labels-idx1-ubyte(.gz), "file://DIR", an http(s):// URL prefix (syntax
 *               only), "s3://BUCKET/PREFIX" (syntax only; the workers GET the objects
 *               SigV4-signed, worker/data_fetch.c), or "csv:TRAIN[,TEST]" /
 *               "libsvm:TRAIN[,TEST]" naming local files.
 *               Relative paths are checked against the parser's working directory; smltctl
 *               makes them absolute before submitting
 *   dataset_options object {label_column integer 0..COORD_SPEC_MAX_LABEL_COLUMN or "last"
 *               [0], header "auto"|true|false ["auto": the first line is a header when one
 *               of its fields is not a number]: both only with a csv: dataset; scale
 *               "none"|"minmax"|"standard" ["none"]: fitted on the training set, applied to
 *               the test set alike}
 *   cache_dir   string [empty: the worker's default]
 *   sync        "bsp" | "ssp" | "asp" ["bsp"]
 *   staleness   integer 0..COORD_SPEC_MAX_STALENESS [2], only with sync "ssp"
 *   optimizer   object {kind "sgd"|"momentum"|"adam"|"adagrad" ["momentum"], lr > 0 [0.05],
 *               weight_decay >= 0 [0]; momentum in [0,1) [0.9] and nesterov [false] for
 *               "momentum"; beta1, beta2 in [0,1) [0.9, 0.999] and decoupled [false] for
 *               "adam"; eps > 0 [1e-8] for "adam" and "adagrad"}
 *   batch_size  integer 1..65536 [64]
 *   epochs      integer 1..10000        } at least one; with both, the job stops at
 *   target_accuracy number in (0, 1]    } whichever comes first
 *   max_epochs  integer 1..10000 [50]: bounds a job that gives only target_accuracy
 *   workers     integer 1..4096 [4]; min_workers [1] <= workers <= max_workers
 *               [min(4 * workers, 4096, platform.concurrency)], the scheduler's bounds
 *   shards      integer 1..256 [2, or the number of ps.addrs]; max_shards 1..256
 *               [max(8, shards), or shards with ps.addrs], >= shards
 *   deadline_s  number in (0, 31536000]: seconds after submission the job must finish by
 *   budget_usd  number in (0, 1e9]: the most the job may cost (leave it out for no budget)
 *   platform    object {kind "local"|"lambda"|"openfaas"|"knative" ["local"], memory_mb
 *               128..10240 [1769], time_limit_s 1..900 [900], concurrency 1..10000 [1000],
 *               region [a-z0-9-]{1,63} ["us-east-1"], arch "x86_64"|"arm64" ["x86_64"],
 *               ps_nic_mbps 0..400000 [0]: each local shard's emulated network card, Mbit/s
 *               each way (0: loopback speed; local platform only)};
 *               workers must not exceed concurrency
 *   prices      object {gb_s, request, ps_node_hour: numbers >= 0}, each defaulting to
 *               coord_prices_default(platform.arch)
 *   ps          object {addrs "host:port,..." (required), token (required), admin_token}:
 *               shards that run elsewhere; shards must equal the number of addresses
 *   seed        integer 0..2^63-1, or a decimal string for the whole uint64 range [1]
 *   evaluate_every_epochs integer 1..10000 [1]
 *   ps.replicas 1 or 2 [1]: with 2, every local shard has a backup that holds every
 *               acknowledged step (a dead primary costs no progress); local shards only, and
 *               the shard count stays fixed (max_shards = shards)
 *   checkpoint  object {every_steps integer 0..1e9 | every_s number 1..86400 [30], keep 1..100
 *               [3]}, or false: shard checkpoints (a dead shard is replaced from them)
 *   chaos       object {slow_rank integer, slow_ms number 0..60000 [20]}: fault injection for
 *               tests and demonstrations: the first instance that serves rank slow_rank is a
 *               slow host, every step there takes slow_ms longer
 *
 * Memory: struct coord_spec holds only fixed-size arrays (no heap), so it may be copied with
 * `=` or memcpy and needs no free. */
#ifndef COORD_SPEC_H
#define COORD_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "coord_ledger.h"
#include "smlt_admin.h"
#include "smlt_limits.h"

/* ---- limits, in one place ------------------------------------------------------------------ */
#define COORD_SPEC_MAX_JSON (64u << 10) /* bytes of spec JSON accepted */
#define COORD_SPEC_NAME_MAX 128         /* name: bytes including the NUL */
#define COORD_SPEC_MODEL_MAX 256        /* = NN_SPEC_MAX */
#define COORD_SPEC_SOURCE_MAX (48u << 10) /* a torch job's training file ("model_source") */
#define COORD_SPEC_PATH_MAX 1024        /* dataset, cache_dir */
#define COORD_SPEC_ADDRS_MAX 8192       /* ps.addrs */
#define COORD_SPEC_REGION_MAX 64
#define COORD_SPEC_TOKEN_MAX (SMLT_MAX_TOKEN + 1)

#define COORD_SPEC_MAX_LABEL_COLUMN (1 << 24) /* rows hold at most 2^24 features */
#define COORD_SPEC_MAX_STALENESS 1000000u
#define COORD_SPEC_MIN_BATCH 1u
#define COORD_SPEC_MAX_BATCH 65536u
#define COORD_SPEC_MAX_EPOCHS 10000u
#define COORD_SPEC_MIN_WORKERS 1u
#define COORD_SPEC_MAX_WORKERS 4096u
#define COORD_SPEC_MIN_SHARDS 1u
#define COORD_SPEC_MAX_SHARDS 256u
#define COORD_SPEC_MIN_MEMORY_MB 128u
#define COORD_SPEC_MAX_MEMORY_MB 10240u
#define COORD_SPEC_MAX_TIME_LIMIT_S 900u
#define COORD_SPEC_MAX_CONCURRENCY 10000u
#define COORD_SPEC_MAX_DEADLINE_S 31536000.0 /* one year */
#define COORD_SPEC_MAX_BUDGET_USD 1e9

/* ---- defaults ------------------------------------------------------------------------------ */
#define COORD_SPEC_DEF_STALENESS 2u
#define COORD_SPEC_DEF_LR 0.05
#define COORD_SPEC_DEF_MOMENTUM 0.9
#define COORD_SPEC_DEF_BETA1 0.9
#define COORD_SPEC_DEF_BETA2 0.999
#define COORD_SPEC_DEF_EPS 1e-8
#define COORD_SPEC_DEF_BATCH 64u
#define COORD_SPEC_DEF_MAX_EPOCHS 50u
#define COORD_SPEC_DEF_WORKERS 4u
#define COORD_SPEC_DEF_SHARDS 2u
#define COORD_SPEC_DEF_MAX_SHARDS 8u
#define COORD_SPEC_DEF_MEMORY_MB 1769u
#define COORD_SPEC_DEF_TIME_LIMIT_S 900u
#define COORD_SPEC_DEF_CONCURRENCY 1000u
#define COORD_SPEC_DEF_REGION "us-east-1"
#define COORD_SPEC_DEF_SEED 1u
#define COORD_SPEC_DEF_CHECKPOINT_S 30.0
#define COORD_SPEC_DEF_CHECKPOINT_KEEP 3u

enum coord_platform_kind {
    COORD_PLATFORM_LOCAL = 0,
    COORD_PLATFORM_LAMBDA = 1,
    COORD_PLATFORM_OPENFAAS = 2,
    COORD_PLATFORM_KNATIVE = 3
};
enum coord_arch { COORD_ARCH_X86_64 = 0, COORD_ARCH_ARM64 = 1 };

struct coord_spec_optim {
    int kind;               /* enum smlt_optim */
    double lr, momentum;
    int nesterov;
    double beta1, beta2, eps;
    double weight_decay;
    int decoupled;
};

struct coord_spec_platform {
    int kind;               /* enum coord_platform_kind */
    uint32_t memory_mb, time_limit_s, concurrency;
    uint32_t ps_nic_mbps;   /* local shards' emulated NIC, 0: none */
    char region[COORD_SPEC_REGION_MAX];
    int arch;               /* enum coord_arch */
};

/* How the worker reads the dataset; the values are proto/smlt.proto's (Assignment). */
struct coord_spec_dataset_opts {
    int label_column;       /* CSV: 0-based; -1: the last column */
    int header;             /* CSV: enum Smlt__CsvHeader: 0 auto, 1 true, 2 false */
    int scale;              /* enum Smlt__FeatureScale: 0 none, 1 minmax, 2 standard */
};

struct coord_spec_ps {
    char addrs[COORD_SPEC_ADDRS_MAX]; /* "" when the coordinator runs the shards itself */
    char token[COORD_SPEC_TOKEN_MAX];
    char admin_token[COORD_SPEC_TOKEN_MAX]; /* "" if not given */
    uint32_t replicas;   /* 1, or 2: every local shard has a backup (the shard count is fixed) */
};

struct coord_spec {
    char name[COORD_SPEC_NAME_MAX];
    char model[COORD_SPEC_MODEL_MAX];  /* canonical nn_model spec, or "python:FILE.py" (a torch
                                          job: its training file, worker/python/smlt/job.py) */
    uint64_t model_params;             /* derived: the model's parameter count (a torch job:
                                          0 until its shards are set up) */
    char dataset[COORD_SPEC_PATH_MAX];
    struct coord_spec_dataset_opts dataset_options;
    char cache_dir[COORD_SPEC_PATH_MAX]; /* "" = the worker's default */
    int sync;                          /* enum smlt_sync */
    uint32_t staleness;                /* COORD_SPEC_DEF_STALENESS for ssp, 0 otherwise */
    struct coord_spec_optim optimizer; /* every field set (defaults where not relevant) */
    uint32_t batch_size;
    uint32_t epochs;                   /* 0: not given (stop on target_accuracy) */
    double target_accuracy;            /* 0: not given */
    uint32_t max_epochs;               /* the job's epoch bound: epochs when given */
    uint32_t workers, min_workers, max_workers;
    uint32_t shards, max_shards;
    double deadline_s;                 /* 0: no deadline */
    double budget_usd;                 /* 0: no budget */
    struct coord_spec_platform platform;
    struct coord_prices prices;        /* defaults for platform.arch, then "prices" */
    struct coord_spec_ps ps;
    uint64_t seed;
    uint32_t evaluate_every_epochs;
    /* 1: the epochs (max_epochs) are stated at the starting global batch, workers x
     * batch_size; when the fan-out changes, the job trains as many data epochs as the
     * gradient noise scale the shards measure says match them (BSP only; docs/SCHEDULER.md) */
    int statistical_efficiency;
    struct {
        int slow_rank;     /* -1: none */
        double slow_ms;
    } chaos;               /* fault injection: the first instance serving slow_rank is slow */
    struct {
        uint64_t every_steps; /* the shards checkpoint at multiples of it (0: see every_s) */
        double every_s;       /* or about this often, once the step time is known (0: off) */
        uint32_t keep;        /* checkpoints kept per shard */
    } checkpoint;
};

/* Parses and validates len bytes of JSON (need not be NUL-terminated; borrowed for the call)
 * into *out, with every default filled in. Returns 0, or SMLT_EINVAL (bad spec; *out is
 * zeroed) / SMLT_ETOOBIG (more than COORD_SPEC_MAX_JSON bytes) / SMLT_ENOMEM with a message in
 * err (errlen bytes; may be NULL) that names the field. Checks the model spec's geometry
 * (nn_spec_check(): no buffers, so a large model is checked in microseconds) and stats the
 * dataset's local files. */
int coord_spec_parse(const char *json, size_t len, struct coord_spec *out, char *err,
                     size_t errlen);

/* Whether model (a spec's "model") names a torch job's training file ("python:FILE.py"). */
int coord_spec_is_python(const char *model);

/* Returns the canonical spec as a new JSON object (json_decref() it): every field with its
 * value or default, fields that do not apply left out (staleness without ssp, max_epochs with
 * epochs, the other optimizers' settings). It parses back to an equal struct. NULL when out of
 * memory. The ps tokens are included: use coord_spec_to_json_redacted() for anything shown to
 * users (dashboard, job listings). */
json_t *coord_spec_to_json(const struct coord_spec *s);

/* Same, with ps.token and ps.admin_token replaced by "***". */
json_t *coord_spec_to_json_redacted(const struct coord_spec *s);

/* Fills conf (a struct of libsmlt, worker/include/smlt_admin.h) for the PS shards from s: sync,
 * workers, staleness, optimizer, seed. conf->job is set to s->name (borrowed from s);
 * map_version is left 0. */
void coord_spec_job_conf(const struct coord_spec *s, struct smlt_job_conf *conf);

/* Names of the enum values as they appear in JSON ("bsp", "adam", "lambda", "arm64"); "?"
 * for values out of range. */
const char *coord_spec_sync_name(int sync);
const char *coord_spec_optim_name(int kind);
const char *coord_spec_platform_name(int kind);
const char *coord_spec_arch_name(int arch);
const char *coord_spec_scale_name(int scale);

#endif
