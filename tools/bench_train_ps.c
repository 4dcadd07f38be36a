/* bench_train_ps.c: the parts of `smlt-bench train` that train through real smlt-ps shards.
 *
 * Throughput (bench_train_ps_rate): one worker (worker_run() in this process, exactly the
 * worker's loop: gradient with nn_model_train_batch, then one BSP smlt_sync per step) trains
 * through 1 or 2 local shards; samples/s beside the compute-only figure of bench_train.c.
 *
 * Accuracy (`smlt-bench train --accuracy`, bench_train_accuracy_main): S shards and W
 * smlt-worker processes (fork+exec, as deployed) train under BSP with momentum SGD and an
 * optional step decay of the learning rate; every rank evaluates the test set every
 * --eval-every steps (so no rank trains while another evaluates, as the peer's barriers do),
 * and rank 0's "eval" events give the training time (evaluation and setup excluded) at which
 * the target accuracy was first seen. Then, in the same run, tools/peer_torch_ddp_fmnist.py
 * trains the same model with PyTorch DDP (gloo, W processes, 1 thread each) with the same
 * global batch, optimizer, schedule and evaluation cadence, and the ratio of the two times
 * is printed. The worker's report splits each step into compute (forward + backward) and
 * communication (push + pull, including waiting for the other ranks), which is printed too.
 *
 * Every process started here is stopped by its pid (proto/smlt_proc.h); its output goes to a
 * private temporary directory that is removed at the end (kept with --keep-logs). */
#include "bench_train.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cblas.h>

#include "smlt_admin.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_proc.h"
#include "smlt_util.h"
#include "worker_train.h"

#define BTP_TOKEN "smlt-bench-train-token"
#define BTP_MAX_SHARDS 8
#define BTP_MAX_WORKERS 8
#define BTP_MAX_SHARD_LIST 4
#define BTP_MAX_EVALS 4096

/* ---- child processes ------------------------------------------------------------------- */

struct btp_dir {
    char path[64];
};

static int dir_make(struct btp_dir *d)
{
    snprintf(d->path, sizeof d->path, "/tmp/smlt-bench-train.XXXXXX");
    if (!mkdtemp(d->path)) {
        d->path[0] = '\0';
        return SMLT_ESYS;
    }
    return 0;
}

/* Removes the files this module writes into the directory, then the directory. */
static void dir_remove(struct btp_dir *d)
{
    if (!d->path[0])
        return;
    char p[128];
    for (int i = 0; i < BTP_MAX_SHARDS; i++) {
        snprintf(p, sizeof p, "%s/port%d", d->path, i);
        unlink(p);
        snprintf(p, sizeof p, "%s/ps%d.log", d->path, i);
        unlink(p);
    }
    for (int i = 0; i < BTP_MAX_WORKERS; i++) {
        snprintf(p, sizeof p, "%s/worker%d.log", d->path, i);
        unlink(p);
    }
    rmdir(d->path);
    d->path[0] = '\0';
}

struct btp_shards {
    int n;
    pid_t pid[BTP_MAX_SHARDS];
    char addrs[BTP_MAX_SHARDS * 32];
};

static void shards_stop(struct btp_shards *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->pid[i] > 0)
            smlt_proc_stop(s->pid[i], 3000);
    s->n = 0;
}

/* Starts n smlt-ps shards (the binary next to this one) on 127.0.0.1 port 0. */
static int shards_start(struct btp_shards *s, int n, const struct btp_dir *d)
{
    memset(s, 0, sizeof *s);
    char bin[PATH_MAX];
    snprintf(bin, sizeof bin, "%s/smlt-ps", smlt_proc_self_dir());
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        char id[16], pf[128], log[128];
        snprintf(id, sizeof id, "%d", i);
        snprintf(pf, sizeof pf, "%s/port%d", d->path, i);
        snprintf(log, sizeof log, "%s/ps%d.log", d->path, i);
        const char *argv[] = {bin, "--shard", id, "--token", BTP_TOKEN, "--listen", "127.0.0.1:0",
                              "--port-file", pf, "--log-level", "warn", NULL};
        struct smlt_proc_opts po = {.log_path = log, .die_with_parent = 1, .watchdog_s = 7200};
        pid_t pid = smlt_proc_spawn(argv, &po);
        if (pid <= 0) {
            log_error("cannot start %s", bin);
            shards_stop(s);
            return SMLT_ESYS;
        }
        s->pid[s->n++] = pid;
        int port = smlt_proc_wait_port(pid, pf, 10000);
        if (port <= 0) {
            log_error("smlt-ps %s did not start (see %s)", bin, log);
            shards_stop(s);
            return port < 0 ? port : SMLT_ESYS;
        }
        off += (size_t)snprintf(s->addrs + off, sizeof s->addrs - off, "%s127.0.0.1:%d",
                                i ? "," : "", port);
    }
    return 0;
}

static int job_setup(const struct btp_shards *s, const char *spec, int workers, int optim,
                     float lr, float momentum, uint64_t seed)
{
    struct smlt_job_conf jc;
    smlt_job_conf_default(&jc);
    jc.job = "bench-train";
    jc.sync = SMLT_SYNC_BSP;
    jc.workers = (uint32_t)workers;
    jc.optim = optim;
    jc.lr = lr;
    jc.momentum = momentum;
    jc.seed = seed;
    char err[256];
    int rc = worker_setup_job(s->addrs, BTP_TOKEN, spec, &jc, err, sizeof err);
    if (rc)
        log_error("job setup for %s on %s: %s", spec, s->addrs, err);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- throughput through the PS ------------------------------------------------------------ */

int bench_train_ps_rate(const struct bench_ps_rate_opts *o, struct bench_ps_rate *out)
{
    memset(out, 0, sizeof *out);
    if (o->shards < 1 || o->shards > BTP_MAX_SHARDS || o->reps < 1 || o->reps > 100 ||
        o->batches < 1)
        return SMLT_EINVAL;
    struct btp_dir d;
    struct btp_shards s = {0};
    struct worker *w = NULL;
    double rates[100], comp[100], comm[100];
    int rc = dir_make(&d);
    if (rc)
        return rc;
    if ((rc = shards_start(&s, o->shards, &d)) != 0)
        goto out;
    /* Plain SGD on the shards: the same update as the compute-only "grads+sgd" figure. */
    if ((rc = job_setup(&s, o->spec, 1, SMLT_OPT_SGD, o->lr, 0.0f, 1)) != 0)
        goto out;
    w = worker_new();
    if (!w) {
        rc = SMLT_ENOMEM;
        goto out;
    }
    struct worker_task t = {
        .job = "bench-train", .model = o->spec, .data = o->data, .batch = o->batch,
        .sync = SMLT_SYNC_BSP, .rank = 0, .workers = 1, .seed = 1, .ps_addrs = s.addrs,
        .token = BTP_TOKEN, .start_step = 0, .max_steps = (uint64_t)(o->warmup > 0 ? o->warmup : 1),
        .total_steps = (uint64_t)(o->warmup > 0 ? o->warmup : 1) +
                       (uint64_t)o->reps * (uint64_t)o->batches,
        .evaluate = 0, .timeout_ms = 60000};
    struct worker_report r;
    /* The first (cold) slice loads the data, builds the model and connects; the timed slices
     * after it are warm, like later invocations of a function. */
    if ((rc = worker_run(w, &t, &r, NULL, NULL)) != 0) {
        log_error("worker: %s", r.err);
        goto out;
    }
    for (int i = 0; i < o->reps; i++) {
        t.start_step = r.next_step;
        t.max_steps = (uint64_t)o->batches;
        if ((rc = worker_run(w, &t, &r, NULL, NULL)) != 0) {
            log_error("worker: %s", r.err);
            goto out;
        }
        rates[i] = r.elapsed_s > 0 ? (double)r.samples / r.elapsed_s : 0;
        comp[i] = r.steps ? 1e3 * r.compute_s / (double)r.steps : 0;
        comm[i] = r.steps ? 1e3 * r.comm_s / (double)r.steps : 0;
        out->best = rates[i] > out->best ? rates[i] : out->best;
    }
    qsort(rates, (size_t)o->reps, sizeof rates[0], cmp_double);
    qsort(comp, (size_t)o->reps, sizeof comp[0], cmp_double);
    qsort(comm, (size_t)o->reps, sizeof comm[0], cmp_double);
    out->samples_per_s = rates[o->reps / 2];
    out->compute_ms = comp[o->reps / 2];
    out->comm_ms = comm[o->reps / 2];
    out->loss = r.loss;
out:
    worker_free(w);
    shards_stop(&s);
    dir_remove(&d);
    return rc;
}

/* ---- accuracy: options -------------------------------------------------------------------- */

struct acc_opts {
    int do_mlp, do_cnn;
    const char *mlp_spec, *cnn_spec;
    int workers;
    int shards[BTP_MAX_SHARD_LIST], nshards;
    int batch;
    int epochs_mlp, epochs_cnn;
    float lr, momentum, lr_decay;
    int decay_mlp, decay_cnn;   /* epochs between decays; 0: constant rate */
    float target_mlp, target_cnn;
    int eval_every_mlp, eval_every_cnn;
    int eval_every;               /* the current model's */
    uint64_t seed;
    const char *data, *python, *script;
    int json, torch, keep_logs;
    int rounds;
};

static void acc_usage(FILE *f)
{
    fprintf(f,
            "usage: smlt-bench train --accuracy [options]\n"
            "Trains to a test accuracy through smlt-ps shards with smlt-worker processes (BSP),\n"
            "then the same with PyTorch DDP (gloo), and prints the time to the target of both.\n\n"
            "  --model mlp|cnn|all     models (default all)\n"
            "  --mlp-spec SPEC         (default mlp:784-256-128-10)\n"
            "  --cnn-spec SPEC         (default lenet5)\n"
            "  --workers N             worker processes / DDP ranks (default 2)\n"
            "  --shards N[,N...]       shard counts to run, one run each (default 2)\n"
            "  --batch N               batch per worker (default 64; global = workers x batch)\n"
            "  --epochs N              epochs (default mlp 8, cnn 15; both if given)\n"
            "  --lr X --momentum M     SGD with momentum (default 0.05, 0.9)\n"
            "  --lr-decay-epochs N     multiply the rate by --lr-decay every N epochs (default\n"
            "                          mlp 4, cnn 8; 0: constant)\n"
            "  --lr-decay F            (default 0.1)\n"
            "  --target A              accuracy to time (default mlp 0.88, cnn 0.90)\n"
            "  --eval-every N          evaluate every N steps on both sides (default mlp 50,\n"
            "                          cnn 100)\n"
            "  --seed S                (default 1)\n"
            "  --rounds N              repeat everything N times, each round with its own DDP\n"
            "                          run and ratio (default 1)\n"
            "  --data DIR              Fashion-MNIST (default /usr/share/datasets/fashion-mnist)\n"
            "  --no-torch              skip the DDP peer\n"
            "  --ddp-script PATH       the peer (default tools/peer_torch_ddp_fmnist.py)\n"
            "  --python PATH           interpreter for the peer (default /usr/bin/python3)\n"
            "  --keep-logs             keep the shards' and workers' logs (path printed)\n"
            "  --json                  one JSON object per model and shard count\n");
}

static int parse_int(const char *name, const char *v, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "smlt-bench train: %s needs an integer in [%d, %d], got '%s'\n", name,
                lo, hi, v ? v : "");
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_float(const char *name, const char *v, float lo, float hi, float *out)
{
    char *end;
    float x = v ? strtof(v, &end) : 0;
    if (!v || !*v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "smlt-bench train: %s needs a number in [%g, %g], got '%s'\n", name,
                (double)lo, (double)hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

static int acc_parse(int argc, char **argv, struct acc_opts *o)
{
    memset(o, 0, sizeof *o);
    o->do_mlp = o->do_cnn = 1;
    o->mlp_spec = "mlp:784-256-128-10";
    o->cnn_spec = "lenet5";
    o->workers = 2;
    o->shards[0] = 2;
    o->nshards = 1;
    o->batch = 64;
    o->epochs_mlp = 8;
    o->epochs_cnn = 15;
    o->lr = 0.05f;
    o->momentum = 0.9f;
    o->lr_decay = 0.1f;
    o->decay_mlp = 4;
    o->decay_cnn = 8;
    o->target_mlp = 0.88f;
    o->target_cnn = 0.90f;
    o->eval_every_mlp = 50;
    o->eval_every_cnn = 100;
    o->seed = 1;
    o->data = "/usr/share/datasets/fashion-mnist";
    o->python = "/usr/bin/python3";
    o->torch = 1;
    o->rounds = 1;
    for (int i = 1; i < argc; i++) {
        char key[64];
        const char *a = argv[i], *val = NULL, *eq = strchr(a, '=');
        if (eq && (size_t)(eq - a) < sizeof key) {
            memcpy(key, a, (size_t)(eq - a));
            key[eq - a] = '\0';
            val = eq + 1;
        } else {
            snprintf(key, sizeof key, "%s", a);
        }
        if (!strcmp(key, "--help") || !strcmp(key, "-h")) {
            acc_usage(stdout);
            return 1;
        }
        if (!strcmp(key, "--accuracy"))
            continue;
        if (!strcmp(key, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(key, "--no-torch")) {
            o->torch = 0;
            continue;
        }
        if (!strcmp(key, "--keep-logs")) {
            o->keep_logs = 1;
            continue;
        }
        static const char *valued[] = {
            "--model", "--mlp-spec", "--cnn-spec", "--workers", "--shards", "--batch",
            "--epochs", "--lr", "--momentum", "--lr-decay-epochs", "--lr-decay", "--target",
            "--eval-every", "--seed", "--data", "--ddp-script", "--python", "--rounds"};
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
            known |= !strcmp(key, valued[k]);
        if (!known) {
            fprintf(stderr, "smlt-bench train --accuracy: unknown option '%s'\n", key);
            acc_usage(stderr);
            return -1;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "smlt-bench train: %s needs a value\n", key);
                return -1;
            }
            val = argv[++i];
        }
        int rc = 0, v = 0;
        float f = 0;
        if (!strcmp(key, "--model")) {
            o->do_mlp = !strcmp(val, "mlp") || !strcmp(val, "all");
            o->do_cnn = !strcmp(val, "cnn") || !strcmp(val, "all");
            if (!o->do_mlp && !o->do_cnn) {
                fprintf(stderr, "smlt-bench train: --model mlp, cnn or all, not '%s'\n", val);
                return -1;
            }
        } else if (!strcmp(key, "--mlp-spec")) {
            o->mlp_spec = val;
        } else if (!strcmp(key, "--cnn-spec")) {
            o->cnn_spec = val;
        } else if (!strcmp(key, "--workers")) {
            rc = parse_int(key, val, 1, BTP_MAX_WORKERS, &o->workers);
        } else if (!strcmp(key, "--shards")) {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", val);
            o->nshards = 0;
            for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && rc == 0;
                 tok = strtok_r(NULL, ",", &save)) {
                if (o->nshards == BTP_MAX_SHARD_LIST) {
                    fprintf(stderr, "smlt-bench train: at most %d shard counts\n",
                            BTP_MAX_SHARD_LIST);
                    return -1;
                }
                rc = parse_int(key, tok, 1, BTP_MAX_SHARDS, &o->shards[o->nshards++]);
            }
            if (o->nshards == 0)
                rc = parse_int(key, "", 1, BTP_MAX_SHARDS, &v);
        } else if (!strcmp(key, "--batch")) {
            rc = parse_int(key, val, 1, 4096, &o->batch);
        } else if (!strcmp(key, "--epochs")) {
            rc = parse_int(key, val, 1, 1000, &v);
            o->epochs_mlp = o->epochs_cnn = v;
        } else if (!strcmp(key, "--lr")) {
            rc = parse_float(key, val, 1e-6f, 10.0f, &o->lr);
        } else if (!strcmp(key, "--momentum")) {
            rc = parse_float(key, val, 0.0f, 0.999f, &o->momentum);
        } else if (!strcmp(key, "--lr-decay-epochs")) {
            rc = parse_int(key, val, 0, 1000, &v);
            o->decay_mlp = o->decay_cnn = v;
        } else if (!strcmp(key, "--lr-decay")) {
            rc = parse_float(key, val, 1e-6f, 1.0f, &o->lr_decay);
        } else if (!strcmp(key, "--target")) {
            rc = parse_float(key, val, 0.0f, 1.0f, &f);
            o->target_mlp = o->target_cnn = f;
        } else if (!strcmp(key, "--eval-every")) {
            rc = parse_int(key, val, 1, 1 << 24, &o->eval_every_mlp);
            o->eval_every_cnn = o->eval_every_mlp;
        } else if (!strcmp(key, "--seed")) {
            rc = parse_int(key, val, 0, INT_MAX, &v);
            o->seed = (uint64_t)v;
        } else if (!strcmp(key, "--rounds")) {
            rc = parse_int(key, val, 1, 20, &o->rounds);
        } else if (!strcmp(key, "--data")) {
            o->data = val;
        } else if (!strcmp(key, "--ddp-script")) {
            o->script = val;
        } else if (!strcmp(key, "--python")) {
            o->python = val;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ---- accuracy: our side ------------------------------------------------------------------- */

struct acc_eval {
    uint64_t step;
    double acc, train_s;
};

struct acc_result {
    int ok;
    double acc, best;             /* last and best test accuracy of rank 0 */
    double time_to, steps_to;     /* < 0: not reached */
    double train_s;               /* rank 0's training time (evaluation, setup excluded) */
    uint64_t steps, samples;      /* rank 0's */
    double compute_ms, comm_ms;   /* per step, rank 0; and the mean over all ranks */
    double compute_ms_all, comm_ms_all;
    double init_s, wall_s;
    uint64_t updates_applied;     /* shard 0's count: one per BSP step */
};

/* Reads a number after "key": in a JSON line; 0 when absent. */
static double jnum(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p ? strtod(p + strlen(pat), NULL) : 0;
}

/* Parses one worker's log: its "eval" events (rank 0) and its "done" line. */
static int read_worker_log(const char *path, int rank, double target, struct acc_result *res)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return SMLT_ENOTFOUND;
    char line[4096];
    int done = 0;
    while (fgets(line, sizeof line, f)) {
        if (rank == 0 && strstr(line, "{\"event\":\"eval\"")) {
            double acc = jnum(line, "test_accuracy");
            res->acc = acc;
            res->best = acc > res->best ? acc : res->best;
            if (res->time_to < 0 && acc >= target) {
                res->time_to = jnum(line, "train_s");
                res->steps_to = jnum(line, "step");
            }
        } else if (strstr(line, "{\"event\":\"done\"")) {
            double steps = jnum(line, "steps");
            double comp = steps > 0 ? 1e3 * jnum(line, "compute_s") / steps : 0;
            double comm = steps > 0 ? 1e3 * jnum(line, "comm_s") / steps : 0;
            res->compute_ms_all += comp;
            res->comm_ms_all += comm;
            if (rank == 0) {
                res->steps = (uint64_t)steps;
                res->samples = (uint64_t)jnum(line, "samples");
                res->compute_ms = comp;
                res->comm_ms = comm;
                res->init_s = jnum(line, "init_s");
                res->train_s = jnum(line, "elapsed_s") - res->init_s - jnum(line, "eval_s");
            }
            done = 1;
        }
    }
    fclose(f);
    return done ? 0 : SMLT_EIO;
}

static void dump_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[1024];
    fprintf(stderr, "---- %s ----\n", path);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

static int run_ours(const struct acc_opts *o, const char *spec, int epochs, int decay_epochs,
                    double target, int nshards, struct acc_result *res)
{
    memset(res, 0, sizeof *res);
    res->time_to = res->steps_to = -1;
    struct btp_dir d;
    struct btp_shards s = {0};
    pid_t pid[BTP_MAX_WORKERS] = {0};
    int rc = dir_make(&d);
    if (rc)
        return rc;
    double t0 = smlt_now_mono();
    if ((rc = shards_start(&s, nshards, &d)) != 0)
        goto out;
    if ((rc = job_setup(&s, spec, o->workers, SMLT_OPT_MOMENTUM, o->lr, o->momentum,
                        o->seed)) != 0)
        goto out;
    char bin[PATH_MAX], ep[16], wk[16], bs[16], ev[16], sd[32], lr[32], de[16], df[32];
    snprintf(bin, sizeof bin, "%s/smlt-worker", smlt_proc_self_dir());
    snprintf(ep, sizeof ep, "%d", epochs);
    snprintf(wk, sizeof wk, "%d", o->workers);
    snprintf(bs, sizeof bs, "%d", o->batch);
    snprintf(ev, sizeof ev, "%d", o->eval_every);
    snprintf(sd, sizeof sd, "%llu", (unsigned long long)o->seed);
    snprintf(lr, sizeof lr, "%.9g", (double)o->lr);
    snprintf(de, sizeof de, "%d", decay_epochs);
    snprintf(df, sizeof df, "%.9g", (double)o->lr_decay);
    for (int r = 0; r < o->workers; r++) {
        char rk[16], log[128];
        snprintf(rk, sizeof rk, "%d", r);
        snprintf(log, sizeof log, "%s/worker%d.log", d.path, r);
        const char *argv[40] = {bin, "--ps", s.addrs, "--token", BTP_TOKEN, "--model", spec,
                                "--data", o->data, "--rank", rk, "--workers", wk,
                                "--batch", bs, "--epochs", ep, "--seed", sd, "--eval-every",
                                ev, "--json", "--log-level", "warn", "--lr", lr};
        int n = 26;
        if (decay_epochs > 0) {
            argv[n++] = "--lr-decay-epochs";
            argv[n++] = de;
            argv[n++] = "--lr-decay";
            argv[n++] = df;
        }
        argv[n] = NULL;
        struct smlt_proc_opts po = {.log_path = log, .die_with_parent = 1, .watchdog_s = 7200};
        pid[r] = smlt_proc_spawn(argv, &po);
        if (pid[r] <= 0) {
            pid[r] = 0;
            rc = SMLT_ESYS;
            goto out;
        }
    }
    /* Reap the ranks as they end; when one fails, the others would only wait for it at the
     * next barrier until their calls time out: stop them (below, by pid). */
    for (int left = o->workers; left > 0 && rc == 0;) {
        int progressed = 0;
        for (int r = 0; r < o->workers && rc == 0; r++) {
            int st = 0;
            if (pid[r] <= 0)
                continue;
            pid_t got = waitpid(pid[r], &st, WNOHANG);
            if (got == 0)
                continue;
            pid[r] = 0;
            left--;
            progressed = 1;
            if (got < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                char log[128];
                snprintf(log, sizeof log, "%s/worker%d.log", d.path, r);
                log_error("smlt-worker rank %d failed", r);
                dump_file(log);
                rc = SMLT_EINTERNAL;
            }
        }
        if (!progressed)
            usleep(20000);
    }
    if (rc)
        goto out;
    res->wall_s = smlt_now_mono() - t0;
    for (int r = 0; r < o->workers && rc == 0; r++) {
        char log[128];
        snprintf(log, sizeof log, "%s/worker%d.log", d.path, r);
        if ((rc = read_worker_log(log, r, target, res)) != 0)
            log_error("no report in %s", log);
    }
    res->compute_ms_all /= o->workers;
    res->comm_ms_all /= o->workers;
    /* The shard's own count of applied BSP steps, as a check that every step was one update. */
    struct smlt_client_opts co = {.token = BTP_TOKEN, .admin = 1, .timeout_ms = 10000};
    struct smlt_client *c = NULL;
    char err[256];
    if (rc == 0 && smlt_client_connect(&c, s.addrs, &co, err, sizeof err) == 0) {
        struct smlt_shard_stats st;
        if (smlt_shard_stats(c, 0, &st) == 0)
            res->updates_applied = st.updates_applied;
        smlt_client_close(c);
    }
    res->ok = rc == 0;
out:
    for (int r = 0; r < o->workers; r++)
        if (pid[r] > 0)
            smlt_proc_stop(pid[r], 3000);
    shards_stop(&s);
    if (o->keep_logs)
        fprintf(stderr, "smlt-bench train: logs kept in %s\n", d.path);
    else
        dir_remove(&d);
    return rc;
}

/* ---- accuracy: the DDP peer --------------------------------------------------------------- */

struct ddp_result {
    int ok;
    double acc, best, time_to, train_s, samples_per_s;
    double steps_to;
};

static const char *find_ddp_script(const struct acc_opts *o, char *buf, size_t len)
{
    if (o->script)
        return access(o->script, R_OK) == 0 ? o->script : NULL;
    const char *name = "peer_torch_ddp_fmnist.py";
    const char *src = getenv("SMLT_SOURCE_DIR");
    const char *bases[3] = {src, NULL, NULL};
    char up[PATH_MAX];
    snprintf(up, sizeof up, "%s/../..", smlt_proc_self_dir());
    bases[1] = up;
#ifdef SMLT_SOURCE_DIR_DEFAULT
    bases[2] = SMLT_SOURCE_DIR_DEFAULT;
#endif
    for (int i = 0; i < 3; i++) {
        if (!bases[i] || !bases[i][0])
            continue;
        snprintf(buf, len, "%s/tools/%s", bases[i], name);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    return NULL;
}

/* Runs the peer with our settings and reads its JSON line from its stdout. */
static int run_ddp(const struct acc_opts *o, const char *script, const char *model, int epochs,
                   int decay_epochs, double target, struct ddp_result *res)
{
    memset(res, 0, sizeof *res);
    res->time_to = res->steps_to = -1;
    char wk[16], bs[16], ep[16], lr[32], mo[32], de[16], df[32], ev[16], tg[32], sd[32];
    snprintf(wk, sizeof wk, "%d", o->workers);
    snprintf(bs, sizeof bs, "%d", o->batch);
    snprintf(ep, sizeof ep, "%d", epochs);
    snprintf(lr, sizeof lr, "%.9g", (double)o->lr);
    snprintf(mo, sizeof mo, "%.9g", (double)o->momentum);
    snprintf(de, sizeof de, "%d", decay_epochs);
    snprintf(df, sizeof df, "%.9g", (double)o->lr_decay);
    snprintf(ev, sizeof ev, "%d", o->eval_every);
    snprintf(tg, sizeof tg, "%.4g", target);
    snprintf(sd, sizeof sd, "%llu", (unsigned long long)o->seed);
    const char *argv[] = {o->python, script, "--model", model, "--world", wk, "--threads", "1",
                          "--per-worker-batch", bs, "--epochs", ep, "--lr", lr, "--momentum", mo,
                          "--lr-decay-epochs", de, "--lr-decay", df, "--eval-every", ev,
                          "--target", tg, "--seed", sd, "--data", o->data, "--json", NULL};
    int fds[2];
    if (pipe(fds) < 0)
        return SMLT_ESYS;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return SMLT_ESYS;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(o->python, (char *const *)argv);
        fprintf(stderr, "smlt-bench train: cannot run %s: %s\n", o->python, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[8192];
    int found = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (!strstr(line, "\"time_to\":"))
            continue;
        res->acc = jnum(line, "test_accuracy");
        res->best = jnum(line, "best_test_accuracy");
        res->train_s = jnum(line, "train_s");
        res->samples_per_s = jnum(line, "samples_per_s");
        /* "time_to": {"0.88": 12.3} (or null) and the same for "steps_to". */
        const char *p = strstr(line, "\"time_to\": {");
        const char *q = p ? strchr(p + 12, ':') : NULL;
        if (q && strncmp(q + 1, " null", 5))
            res->time_to = strtod(q + 1, NULL);
        p = strstr(line, "\"steps_to\": {");
        q = p ? strchr(p + 13, ':') : NULL;
        if (q && strncmp(q + 1, " null", 5))
            res->steps_to = strtod(q + 1, NULL);
        found = 1;
    }
    if (f)
        fclose(f);
    else
        close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!found || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "smlt-bench train: the DDP peer (%s %s --model %s) failed\n", o->python,
                script, model);
        return SMLT_EINTERNAL;
    }
    res->ok = 1;
    return 0;
}

/* ---- accuracy: report ---------------------------------------------------------------------- */

static void print_num(const char *key, double v, int valid, int last)
{
    if (valid)
        printf("\"%s\":%.4f%s", key, v, last ? "" : ",");
    else
        printf("\"%s\":null%s", key, last ? "" : ",");
}

static void acc_print(const struct acc_opts *o, const char *name, const char *spec, int epochs,
                      int decay_epochs, double target, int nshards, int rnd,
                      const struct acc_result *r, const struct ddp_result *p)
{
    const int hit = r->time_to >= 0, phit = p->ok && p->time_to >= 0;
    const double sps = r->train_s > 0 ? (double)r->samples * o->workers / r->train_s : 0;
    char tkey[48], dkey[64];
    snprintf(tkey, sizeof tkey, "time_to_%g_s", round(1000 * target) / 10); /* time_to_88_s */
    snprintf(dkey, sizeof dkey, "ddp_%s", tkey);
    if (o->json) {
        printf("{\"mode\":\"accuracy\",\"model\":\"%s\",\"spec\":\"%s\",\"workers\":%d,"
               "\"shards\":%d,\"sync\":\"bsp\",\"batch\":%d,\"global_batch\":%d,\"epochs\":%d,"
               "\"optim\":\"momentum\",\"lr\":%g,\"momentum\":%g,\"lr_decay_epochs\":%d,"
               "\"lr_decay\":%g,\"eval_every\":%d,\"target\":%.4g,\"round\":%d,",
               name, spec, o->workers, nshards, o->batch, o->batch * o->workers, epochs,
               (double)o->lr, (double)o->momentum, decay_epochs, (double)o->lr_decay,
               o->eval_every, target, rnd);
        printf("\"test_accuracy\":%.4f,\"best_test_accuracy\":%.4f,", r->acc, r->best);
        print_num("time_to_target_s", r->time_to, hit, 0);
        print_num(tkey, r->time_to, hit, 0);
        print_num("steps_to_target", r->steps_to, hit, 0);
        printf("\"train_s\":%.3f,\"samples_per_s\":%.1f,\"steps\":%llu,"
               "\"compute_ms_per_step\":%.4f,\"comm_ms_per_step\":%.4f,"
               "\"compute_ms_per_step_all\":%.4f,\"comm_ms_per_step_all\":%.4f,"
               "\"updates_applied\":%llu,\"wall_s\":%.2f,",
               r->train_s, sps, (unsigned long long)r->steps, r->compute_ms, r->comm_ms,
               r->compute_ms_all, r->comm_ms_all, (unsigned long long)r->updates_applied,
               r->wall_s);
        print_num("ddp_test_accuracy", p->acc, p->ok, 0);
        print_num("ddp_time_to_target_s", p->time_to, phit, 0);
        print_num(dkey, p->time_to, phit, 0);
        print_num("ddp_steps_to_target", p->steps_to, phit, 0);
        print_num("ddp_samples_per_s", p->samples_per_s, p->ok, 0);
        /* ratio > 1: we reached the target that many times sooner than DDP. */
        print_num("ratio", hit && phit ? p->time_to / r->time_to : 0, hit && phit, 1);
        printf("}\n");
    } else {
        printf("%-5s %-20s %d workers %d shard(s): test accuracy %.4f (best %.4f); ", name, spec,
               o->workers, nshards, r->acc, r->best);
        if (hit)
            printf("%.1f%% after %.2f s of training (step %.0f)\n", 100 * target, r->time_to,
                   r->steps_to);
        else
            printf("%.1f%% not reached\n", 100 * target);
        printf("      per step (rank 0): compute %.3f ms, communication %.3f ms (push + pull, "
               "waiting for the other ranks included); all ranks: %.3f / %.3f ms; %.0f samples/s\n",
               r->compute_ms, r->comm_ms, r->compute_ms_all, r->comm_ms_all, sps);
        if (p->ok) {
            printf("      PyTorch DDP gloo %d x 1 thread: test accuracy %.4f (best %.4f); ",
                   o->workers, p->acc, p->best);
            if (phit)
                printf("%.1f%% after %.2f s (step %.0f); %.0f samples/s\n", 100 * target,
                       p->time_to, p->steps_to, p->samples_per_s);
            else
                printf("%.1f%% not reached; %.0f samples/s\n", 100 * target, p->samples_per_s);
            if (hit && phit)
                printf("      ratio (DDP time / ours): %.2fx\n", p->time_to / r->time_to);
        }
    }
    fflush(stdout);
}

int bench_train_accuracy_main(int argc, char **argv)
{
    struct acc_opts o;
    int rc = acc_parse(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    char sbuf[PATH_MAX + 64];
    const char *script = NULL;
    if (o.torch && !(script = find_ddp_script(&o, sbuf, sizeof sbuf))) {
        fprintf(stderr, "smlt-bench train: cannot find peer_torch_ddp_fmnist.py (use "
                        "--ddp-script PATH, set SMLT_SOURCE_DIR, or --no-torch)\n");
        return 1;
    }
    openblas_set_num_threads(1);
    if (!o.json)
        printf("smlt-bench train --accuracy: BSP, %d smlt-worker processes x batch %d, momentum "
               "SGD lr %g momentum %g, x%g every %d (mlp) / %d (cnn) epochs; evaluation every "
               "%d / %d steps, training clocks stopped around it\n",
               o.workers, o.batch, (double)o.lr, (double)o.momentum, (double)o.lr_decay,
               o.decay_mlp, o.decay_cnn, o.eval_every_mlp, o.eval_every_cnn);
    int failed = 0;
    for (int m = 0; m < 2; m++) {
        if (!(m == 0 ? o.do_mlp : o.do_cnn))
            continue;
        const char *name = m == 0 ? "mlp" : "cnn";
        const char *spec = m == 0 ? o.mlp_spec : o.cnn_spec;
        int epochs = m == 0 ? o.epochs_mlp : o.epochs_cnn;
        int decay = m == 0 ? o.decay_mlp : o.decay_cnn;
        double target = m == 0 ? o.target_mlp : o.target_cnn;
        o.eval_every = m == 0 ? o.eval_every_mlp : o.eval_every_cnn;
        for (int round = 0; round < o.rounds; round++) {
            struct ddp_result p = {0};
            int have_ddp = 0;
            for (int k = 0; k < o.nshards; k++) {
                struct acc_result r;
                if (run_ours(&o, spec, epochs, decay, target, o.shards[k], &r) != 0) {
                    failed = 1;
                    continue;
                }
                /* The peer runs once per model and round, right after our first run. */
                if (script && !have_ddp) {
                    have_ddp = 1;
                    if (run_ddp(&o, script, name, epochs, decay, target, &p) != 0)
                        failed = 1;
                }
                acc_print(&o, name, spec, epochs, decay, target, o.shards[k], round, &r, &p);
                if (r.best < target)
                    failed = 1;
            }
        }
    }
    return failed;
}
