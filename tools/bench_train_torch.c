/* bench_train_torch.c: `smlt-bench train --torch`: the torch binding (worker/python, the
 * `smlt` package) against PyTorch DDP and against libsmlt's C client, in one run.
 *
 * (a) Time to a test accuracy (default 90%) of a torch training file (default
 *     worker/python/examples/fmnist_cnn.py) trained through S local smlt-ps shards by W
 *     `python3 -m smlt.job serve` ranks (tools/bench_torch_smlt.py drives them: the runner a
 *     worker function runs, BSP, momentum SGD on the shards), then by PyTorch DDP with gloo,
 *     W processes (tools/peer_torch_ddp_job.py): same initial model, same batches step for
 *     step, same optimizer and rate, same evaluation cadence, training clocks stopped around
 *     evaluation on both sides; 1 torch thread per process, OPENBLAS_NUM_THREADS=1.
 * (b) The binding's own cost per step: on the same shards, a job with the training file's
 *     tensors (one worker, BSP), R rounds of N syncs from Python (smlt.Client.sync on
 *     smlt.torch's flat torch buffers; tools/bench_torch_sync.py) interleaved with R rounds
 *     of N smlt_sync calls from C in this process and with R rounds of N syncs from Python
 *     through ctypes (libsmlt's smlt_sync on the same torch buffers: the binding the package
 *     could have used instead of its extension), same sizes, dense data every way, each
 *     round's three parts back to back. The median over the rounds of the ratio to the
 *     round's C part (Python / C, ctypes / C) is each binding's overhead.
 *
 * The Python processes run with PYTHONPATH=<this binary's dir>/../python (build/python) in
 * front, and the interpreter given by --python (default /usr/bin/python3, Debian's, which
 * sees python3-torch). Every process is started on loopback port 0 where it listens, and
 * stopped by its pid; logs go to a private temporary directory, removed at the end unless
 * --keep-logs. */
#include "bench_train.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "smlt.h"
#include "smlt_log.h"
#include "smlt_proc.h"
#include "smlt_util.h"

#define BTT_TOKEN "smlt-bench-torch-token"
#define BTT_ADMIN "smlt-bench-torch-admin"
#define BTT_MAX_SHARDS 8
#define BTT_MAX_WORKERS 8
#define BTT_MAX_ROUNDS 50

struct btt_opts {
    const char *model_file; /* NULL: the source tree's examples/fmnist_cnn.py */
    int workers, shards, batch, epochs, eval_every, seed;
    float lr, momentum, target;
    int sync_steps, sync_rounds;
    int do_acc, do_ddp, do_sync;
    const char *data, *python;
    int json, keep_logs;
};

static void btt_usage(FILE *f)
{
    fprintf(f,
            "usage: smlt-bench train --torch [options]\n"
            "The torch binding: (a) time to a test accuracy of a torch training file through\n"
            "smlt-ps shards (`python3 -m smlt.job serve` ranks, BSP) vs PyTorch DDP (gloo), same\n"
            "model, batches, optimizer and evaluation cadence; (b) the binding's cost per BSP\n"
            "sync: smlt.Client.sync on torch buffers vs smlt_sync from C, same shards and sizes,\n"
            "and vs smlt_sync called through ctypes from Python on the same buffers.\n\n"
            "  --model-file PATH    training file (default worker/python/examples/fmnist_cnn.py)\n"
            "  --workers N          ranks on both sides (default 2)\n"
            "  --shards N           local smlt-ps shards (default 2)\n"
            "  --batch N            batch per rank (default 64)\n"
            "  --epochs N           epochs on both sides (default 5)\n"
            "  --lr X --momentum M  momentum SGD (default 0.05, 0.9)\n"
            "  --target A           test accuracy to time (default 0.90)\n"
            "  --eval-every N       evaluate every N steps and at epoch ends (default 100)\n"
            "  --seed S             initial model and batch order (default 1)\n"
            "  --sync-steps N       syncs per round in (b) (default 400)\n"
            "  --sync-rounds R      rounds per side in (b), interleaved (default 15)\n"
            "  --no-accuracy        skip (a); --no-ddp: (a) without the DDP peer\n"
            "  --no-sync            skip (b)\n"
            "  --data DIR           Fashion-MNIST (default /usr/share/datasets/fashion-mnist)\n"
            "  --python PATH        interpreter (default /usr/bin/python3)\n"
            "  --keep-logs          keep the processes' logs (path printed)\n"
            "  --json               one JSON object on stdout\n");
}

static int btt_int(const char *name, const char *v, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "smlt-bench train --torch: %s needs an integer in [%d, %d], got '%s'\n",
                name, lo, hi, v ? v : "");
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int btt_float(const char *name, const char *v, float lo, float hi, float *out)
{
    char *end;
    float x = v ? strtof(v, &end) : 0;
    if (!v || !*v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "smlt-bench train --torch: %s needs a number in [%g, %g], got '%s'\n",
                name, (double)lo, (double)hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

/* Returns 0, 1 after --help, -1 on bad usage. */
static int btt_parse(int argc, char **argv, struct btt_opts *o)
{
    memset(o, 0, sizeof *o);
    o->workers = 2;
    o->shards = 2;
    o->batch = 64;
    o->epochs = 5;
    o->eval_every = 100;
    o->seed = 1;
    o->lr = 0.05f;
    o->momentum = 0.9f;
    o->target = 0.90f;
    o->sync_steps = 400;
    o->sync_rounds = 15;
    o->do_acc = o->do_ddp = o->do_sync = 1;
    o->data = "/usr/share/datasets/fashion-mnist";
    o->python = "/usr/bin/python3";
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
            btt_usage(stdout);
            return 1;
        }
        if (!strcmp(key, "--torch"))
            continue;
        int *flag = !strcmp(key, "--json")          ? &o->json
                    : !strcmp(key, "--keep-logs")   ? &o->keep_logs
                    : !strcmp(key, "--no-accuracy") ? &o->do_acc
                    : !strcmp(key, "--no-ddp")      ? &o->do_ddp
                    : !strcmp(key, "--no-sync")     ? &o->do_sync
                                                    : NULL;
        if (flag) {
            *flag = !strncmp(key, "--no-", 5) ? 0 : 1;
            continue;
        }
        static const char *valued[] = {"--model-file", "--workers", "--shards", "--batch",
                                       "--epochs", "--lr", "--momentum", "--target",
                                       "--eval-every", "--seed", "--sync-steps",
                                       "--sync-rounds", "--data", "--python"};
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
            known |= !strcmp(key, valued[k]);
        if (!known) {
            fprintf(stderr, "smlt-bench train --torch: unknown option '%s'\n", key);
            btt_usage(stderr);
            return -1;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "smlt-bench train --torch: %s needs a value\n", key);
                return -1;
            }
            val = argv[++i];
        }
        int rc = 0;
        if (!strcmp(key, "--model-file"))
            o->model_file = val;
        else if (!strcmp(key, "--workers"))
            rc = btt_int(key, val, 1, BTT_MAX_WORKERS, &o->workers);
        else if (!strcmp(key, "--shards"))
            rc = btt_int(key, val, 1, BTT_MAX_SHARDS, &o->shards);
        else if (!strcmp(key, "--batch"))
            rc = btt_int(key, val, 1, 4096, &o->batch);
        else if (!strcmp(key, "--epochs"))
            rc = btt_int(key, val, 1, 1000, &o->epochs);
        else if (!strcmp(key, "--lr"))
            rc = btt_float(key, val, 1e-6f, 10.0f, &o->lr);
        else if (!strcmp(key, "--momentum"))
            rc = btt_float(key, val, 0.0f, 0.999f, &o->momentum);
        else if (!strcmp(key, "--target"))
            rc = btt_float(key, val, 0.0f, 1.0f, &o->target);
        else if (!strcmp(key, "--eval-every"))
            rc = btt_int(key, val, 1, 1 << 24, &o->eval_every);
        else if (!strcmp(key, "--seed"))
            rc = btt_int(key, val, 0, INT_MAX, &o->seed);
        else if (!strcmp(key, "--sync-steps"))
            rc = btt_int(key, val, 1, 1 << 20, &o->sync_steps);
        else if (!strcmp(key, "--sync-rounds"))
            rc = btt_int(key, val, 1, BTT_MAX_ROUNDS, &o->sync_rounds);
        else if (!strcmp(key, "--data"))
            o->data = val;
        else if (!strcmp(key, "--python"))
            o->python = val;
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ---- files and processes ------------------------------------------------------------------ */

/* Finds rel under $SMLT_SOURCE_DIR, two levels above this binary (build/bin -> the tree), or
 * the source tree this was built from. Returns buf or NULL. */
static const char *find_source(const char *rel, char *buf, size_t len)
{
    const char *bases[3] = {getenv("SMLT_SOURCE_DIR"), NULL, NULL};
    char up[PATH_MAX];
    snprintf(up, sizeof up, "%s/../..", smlt_proc_self_dir());
    bases[1] = up;
#ifdef SMLT_SOURCE_DIR_DEFAULT
    bases[2] = SMLT_SOURCE_DIR_DEFAULT;
#endif
    for (int i = 0; i < 3; i++) {
        if (!bases[i] || !bases[i][0])
            continue;
        snprintf(buf, len, "%s/%s", bases[i], rel);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    return NULL;
}

struct btt_run {
    char dir[64];
    int nshards;
    pid_t shard[BTT_MAX_SHARDS];
    char addrs[BTT_MAX_SHARDS * 32];
    char pypath[PATH_MAX + 64];   /* PYTHONPATH for the children */
};

static void run_cleanup(struct btt_run *r, int keep)
{
    for (int i = 0; i < r->nshards; i++)
        if (r->shard[i] > 0)
            smlt_proc_stop(r->shard[i], 3000);
    r->nshards = 0;
    if (!r->dir[0])
        return;
    if (keep) {
        fprintf(stderr, "smlt-bench train --torch: logs kept in %s\n", r->dir);
        return;
    }
    static const char *names[] = {"smlt.log", "ddp.log", "sync.log"};
    char p[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", r->dir, names[i]);
        unlink(p);
    }
    for (int i = 0; i < BTT_MAX_SHARDS; i++) {
        snprintf(p, sizeof p, "%s/port%d", r->dir, i);
        unlink(p);
        snprintf(p, sizeof p, "%s/ps%d.log", r->dir, i);
        unlink(p);
    }
    rmdir(r->dir);
}

static int shards_start(struct btt_run *r, int n)
{
    char bin[PATH_MAX];
    snprintf(bin, sizeof bin, "%s/smlt-ps", smlt_proc_self_dir());
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        char id[16], pf[128], log[128];
        snprintf(id, sizeof id, "%d", i);
        snprintf(pf, sizeof pf, "%s/port%d", r->dir, i);
        snprintf(log, sizeof log, "%s/ps%d.log", r->dir, i);
        const char *argv[] = {bin, "--shard", id, "--token", BTT_TOKEN, "--admin-token",
                              BTT_ADMIN, "--listen", "127.0.0.1:0", "--port-file", pf,
                              "--log-level", "warn", NULL};
        struct smlt_proc_opts po = {.log_path = log, .die_with_parent = 1, .watchdog_s = 7200};
        pid_t pid = smlt_proc_spawn(argv, &po);
        if (pid <= 0) {
            log_error("cannot start %s", bin);
            return SMLT_ESYS;
        }
        r->shard[r->nshards++] = pid;
        int port = smlt_proc_wait_port(pid, pf, 10000);
        if (port <= 0) {
            log_error("smlt-ps did not start (see %s)", log);
            return port < 0 ? port : SMLT_ESYS;
        }
        off += (size_t)snprintf(r->addrs + off, sizeof r->addrs - off, "%s127.0.0.1:%d",
                                i ? "," : "", port);
    }
    return 0;
}

/* A Python child: argv[0] is the interpreter. Its stdout is a pipe (*out_fd), its stdin a
 * pipe (*in_fd) if in_fd is non-NULL, else /dev/null; stderr goes to log. One torch and
 * OpenBLAS thread, PYTHONPATH with build/python in front. Returns the pid or -1. */
static pid_t py_spawn(const struct btt_run *r, const char *const *argv, const char *log,
                      int *in_fd, int *out_fd)
{
    int po[2] = {-1, -1}, pi[2] = {-1, -1};
    if (pipe(po) < 0)
        return -1;
    if (in_fd && pipe(pi) < 0) {
        close(po[0]);
        close(po[1]);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(po[0]);
        close(po[1]);
        if (in_fd) {
            close(pi[0]);
            close(pi[1]);
        }
        return -1;
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        dup2(po[1], STDOUT_FILENO);
        if (in_fd) {
            dup2(pi[0], STDIN_FILENO);
        } else if ((fd = open("/dev/null", O_RDONLY)) >= 0) {
            dup2(fd, STDIN_FILENO);
            close(fd);
        }
        close(po[0]);
        close(po[1]);
        if (in_fd) {
            close(pi[0]);
            close(pi[1]);
        }
        setenv("PYTHONPATH", r->pypath, 1);
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        setenv("OMP_NUM_THREADS", "1", 1);
        setenv("SMLT_TORCH_THREADS", "1", 1);
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]);
    *out_fd = po[0];
    if (in_fd) {
        close(pi[0]);
        *in_fd = pi[1];
    }
    return pid;
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

/* Reads one line of JSON from f; NULL at the end or on a line that is not an object. */
static json_t *read_json_line(FILE *f)
{
    char line[65536];
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (j && json_is_object(j))
            return j;
        json_decref(j);
    }
    return NULL;
}

/* Runs a Python script to its end and returns the last JSON object it printed (the caller
 * json_decref()s it), or NULL (its log dumped). */
static json_t *py_run(const struct btt_run *r, const char *const *argv, const char *log)
{
    int out = -1;
    pid_t pid = py_spawn(r, argv, log, NULL, &out);
    if (pid < 0)
        return NULL;
    FILE *f = fdopen(out, "r");
    json_t *last = NULL, *j;
    while (f && (j = read_json_line(f)) != NULL) {
        json_decref(last);
        last = j;
    }
    if (f)
        fclose(f);
    else
        close(out);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!last || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        log_error("%s failed (exit %d)", argv[1], WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        dump_file(log);
        json_decref(last);
        return NULL;
    }
    return last;
}

static double jd(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : -1;
}

/* ---- (b): the binding's cost per sync ------------------------------------------------------ */

/* One phase of (b): rounds of syncs from Python (the extension), C and ctypes, each round's
 * three parts back to back. */
struct btt_phase {
    double py_ms[BTT_MAX_ROUNDS], c_ms[BTT_MAX_ROUNDS], ct_ms[BTT_MAX_ROUNDS];
    double py_med, c_med, ct_med;
    double ratio;    /* the median over the rounds of (Python / C) of the round's parts */
    double ct_ratio; /* the same of (ctypes / C) */
};

/* (b) runs two phases. A process that has freed a large block (every Python process that
 * built a torch model has) runs with glibc's mmap and trim thresholds raised; a fresh C
 * process has them at their defaults, where any large block malloc'd and freed per call goes
 * back to the kernel each time (brk/munmap, then page faults). Phase 0 is the C client as a
 * fresh C process has it; phase 1 raises this process's thresholds (mallopt) to where the
 * Python process's are: that ratio is the binding's own cost. The two agree while libsmlt
 * allocates nothing large per call; a gap between them says it does again (it did, until
 * rpc_conn_send() stopped libevent from sizing each header's chain like the payload queued
 * before it). */
struct btt_sync {
    int ok;
    uint64_t params;
    int tensors;
    double wrap_us;   /* the Python layer's work per sync without the network; < 0: unknown */
    struct btt_phase ph[2];
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_of(const double *v, int n)
{
    double s[BTT_MAX_ROUNDS];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof s[0], cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* n BSP syncs from C from the current clock; returns seconds, or < 0. */
static double c_round(struct smlt_client *c, int n, const float *grad, float *model)
{
    uint64_t clock = 0;
    if (smlt_pull(c, 0, 0, model, &clock) != 0) {
        log_error("pull: %s", smlt_client_errmsg(c));
        return -1;
    }
    double t0 = smlt_now_mono();
    for (int i = 0; i < n; i++) {
        if (smlt_sync(c, clock, grad, model, &clock) != 0) {
            log_error("sync: %s", smlt_client_errmsg(c));
            return -1;
        }
    }
    return smlt_now_mono() - t0;
}

/* Asks the Python child for n syncs (verb "run": the extension, "ctypes": through ctypes);
 * returns its seconds, or < 0. */
static double py_round(FILE *in, FILE *out, const char *verb, int n)
{
    fprintf(in, "%s %d\n", verb, n);
    fflush(in);
    json_t *j = read_json_line(out);
    double s = j ? jd(j, "s") : -1;
    json_decref(j);
    return s;
}

static int run_sync(const struct btt_opts *o, struct btt_run *r, const char *script,
                    const char *model_file, struct btt_sync *res)
{
    memset(res, 0, sizeof *res);
    char log[128];
    snprintf(log, sizeof log, "%s/sync.log", r->dir);
    const char *argv[] = {o->python, script, "--model-file", model_file, "--addrs", r->addrs,
                          "--token", BTT_TOKEN, "--admin-token", BTT_ADMIN, NULL};
    int in_fd = -1, out_fd = -1, rc = SMLT_EINTERNAL;
    struct smlt_client *c = NULL;
    float *grad = NULL, *model = NULL;
    pid_t pid = py_spawn(r, argv, log, &in_fd, &out_fd);
    if (pid < 0)
        return SMLT_ESYS;
    FILE *in = fdopen(in_fd, "w"), *out = fdopen(out_fd, "r");
    json_t *ready = in && out ? read_json_line(out) : NULL;
    if (!ready || jd(ready, "ready") != 1) {
        log_error("%s did not start", script);
        json_decref(ready);
        goto out;
    }
    res->params = (uint64_t)jd(ready, "params");
    res->tensors = (int)jd(ready, "tensors");
    res->wrap_us = jd(ready, "wrap_us");
    json_decref(ready);
    struct smlt_client_opts co = {.token = BTT_TOKEN, .worker = 0, .timeout_ms = 60000};
    char err[256];
    if (smlt_client_connect(&c, r->addrs, &co, err, sizeof err) != 0) {
        log_error("connect %s: %s", r->addrs, err);
        goto out;
    }
    uint64_t n = smlt_client_num_params(c);
    if (n != res->params) {
        log_error("the job has %llu parameters, the Python side %llu", (unsigned long long)n,
                  (unsigned long long)res->params);
        goto out;
    }
    /* 64-byte aligned, as torch's CPU allocator aligns the Python side's flat buffers (and
     * malloc's 16 would make the kernel's copies of these megabytes slower). */
    if (posix_memalign((void **)&grad, 64, sizeof(float) * n) != 0 ||
        posix_memalign((void **)&model, 64, sizeof(float) * n) != 0)
        goto out;
    /* Dense noise of the Python side's scale (a gradient of zeros would be lz4-compressed). */
    uint64_t x = 88172645463325252ull;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        grad[i] = 1e-3f * (float)((double)(x >> 11) / 9007199254740992.0 * 3.4641 - 1.7320);
    }
    /* A warm-up round each (connections, page faults), then the timed rounds, alternating
     * which side goes first so a drift in the machine's load falls on both. */
    int warm = o->sync_steps / 5 > 0 ? o->sync_steps / 5 : 1;
    for (int phase = 0; phase < 2; phase++) {
        struct btt_phase *ph = &res->ph[phase];
        if (phase == 1) {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 64 << 20);
        }
        if (c_round(c, warm, grad, model) < 0 || py_round(in, out, "run", warm) < 0 ||
            py_round(in, out, "ctypes", warm) < 0)
            goto out;
        for (int i = 0; i < o->sync_rounds; i++) {
            /* The three parts in turn: C first in one round, Python in the next, ctypes in
             * the one after. */
            double *ms[3] = {ph->c_ms, ph->py_ms, ph->ct_ms};
            for (int k = 0; k < 3; k++) {
                int which = (i + k) % 3;
                double t = which == 0   ? c_round(c, o->sync_steps, grad, model)
                           : which == 1 ? py_round(in, out, "run", o->sync_steps)
                                        : py_round(in, out, "ctypes", o->sync_steps);
                if (t < 0)
                    goto out;
                ms[which][i] = 1e3 * t / o->sync_steps;
            }
        }
        ph->c_med = median_of(ph->c_ms, o->sync_rounds);
        ph->py_med = median_of(ph->py_ms, o->sync_rounds);
        ph->ct_med = median_of(ph->ct_ms, o->sync_rounds);
        /* Each round's parts ran back to back: their ratio cancels slower drifts. */
        double pair[BTT_MAX_ROUNDS], ct_pair[BTT_MAX_ROUNDS];
        for (int i = 0; i < o->sync_rounds; i++) {
            pair[i] = ph->c_ms[i] > 0 ? ph->py_ms[i] / ph->c_ms[i] : 0;
            ct_pair[i] = ph->c_ms[i] > 0 ? ph->ct_ms[i] / ph->c_ms[i] : 0;
        }
        ph->ratio = median_of(pair, o->sync_rounds);
        ph->ct_ratio = median_of(ct_pair, o->sync_rounds);
    }
    res->ok = 1;
    rc = 0;
out:
    smlt_client_close(c);
    free(grad);
    free(model);
    if (in)
        fclose(in); /* the child ends at the end of its input */
    else if (in_fd >= 0)
        close(in_fd);
    if (out)
        fclose(out);
    else if (out_fd >= 0)
        close(out_fd);
    /* It ends at the end of its input: give it a few seconds before stopping it by pid. */
    int st = -1;
    for (int i = 0; i < 250; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            break;
        st = -1;
        usleep(20000);
    }
    if (st == -1)
        st = smlt_proc_stop(pid, 3000);
    if (rc == 0 && (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0))
        log_warn("%s ended with status %d", script, st);
    if (rc)
        dump_file(log);
    return rc;
}

/* ---- report ----------------------------------------------------------------------------- */

static void jnum_or_null(const char *key, double v, int last)
{
    if (v >= 0)
        printf("\"%s\":%.4f%s", key, v, last ? "" : ",");
    else
        printf("\"%s\":null%s", key, last ? "" : ",");
}

static void print_report(const struct btt_opts *o, const char *model_file, const json_t *ours,
                         const json_t *ddp, const struct btt_sync *sy)
{
    double t_ours = ours ? jd(ours, "time_to_target_s") : -1;
    double t_ddp = ddp ? jd(ddp, "time_to_target_s") : -1;
    double ratio = t_ours > 0 && t_ddp > 0 ? t_ours / t_ddp : -1;
    const char *base = strrchr(model_file, '/') ? strrchr(model_file, '/') + 1 : model_file;
    if (o->json) {
        printf("{\"mode\":\"torch\",\"model_file\":\"%s\",\"workers\":%d,\"shards\":%d,"
               "\"sync\":\"bsp\",\"batch\":%d,\"epochs\":%d,\"optim\":\"momentum\",\"lr\":%g,"
               "\"momentum\":%g,\"eval_every\":%d,\"target\":%.4g,",
               base, o->workers, o->shards, o->batch, o->epochs, (double)o->lr,
               (double)o->momentum, o->eval_every, (double)o->target);
        char *s = ours ? json_dumps(ours, JSON_COMPACT) : NULL;
        printf("\"smlt\":%s,", s ? s : "null");
        free(s);
        s = ddp ? json_dumps(ddp, JSON_COMPACT) : NULL;
        printf("\"ddp\":%s,", s ? s : "null");
        free(s);
        jnum_or_null("time_to_target_s", t_ours, 0);
        jnum_or_null("ddp_time_to_target_s", t_ddp, 0);
        jnum_or_null("time_ratio", ratio, 0); /* ours / DDP: <= 1 is at most DDP's time */
        if (sy && sy->ok) {
            printf("\"binding\":{\"params\":%llu,\"tensors\":%d,\"steps_per_round\":%d,"
                   "\"rounds\":%d,", (unsigned long long)sy->params, sy->tensors,
                   o->sync_steps, o->sync_rounds);
            static const char *pname[2] = {"c_default_malloc", "c_same_malloc"};
            for (int k = 0; k < 2; k++) {
                const struct btt_phase *ph = &sy->ph[k];
                printf("\"%s\":{\"py_ms_per_sync\":%.4f,\"c_ms_per_sync\":%.4f,"
                       "\"ratio\":%.4f,\"overhead_pct\":%.2f,\"ctypes_ms_per_sync\":%.4f,"
                       "\"ctypes_ratio\":%.4f,\"py_ms\":[", pname[k], ph->py_med, ph->c_med,
                       ph->ratio, 100 * (ph->ratio - 1), ph->ct_med, ph->ct_ratio);
                for (int i = 0; i < o->sync_rounds; i++)
                    printf("%s%.4f", i ? "," : "", ph->py_ms[i]);
                printf("],\"c_ms\":[");
                for (int i = 0; i < o->sync_rounds; i++)
                    printf("%s%.4f", i ? "," : "", ph->c_ms[i]);
                printf("],\"ctypes_ms\":[");
                for (int i = 0; i < o->sync_rounds; i++)
                    printf("%s%.4f", i ? "," : "", ph->ct_ms[i]);
                printf("]},");
            }
            /* the binding's own cost: against the C client in the same allocator state */
            jnum_or_null("py_wrapper_us_per_sync", sy->wrap_us, 0);
            printf("\"ratio\":%.4f,\"overhead_pct\":%.2f,\"ctypes_ratio\":%.4f}}\n",
                   sy->ph[1].ratio, 100 * (sy->ph[1].ratio - 1), sy->ph[1].ct_ratio);
        } else {
            printf("\"binding\":null}\n");
        }
        fflush(stdout);
        return;
    }
    printf("smlt-bench train --torch: %s, %d ranks x batch %d, %d shard(s), BSP, momentum SGD "
           "lr %g momentum %g, %d epochs, evaluation every %d steps (clocks stopped around "
           "it), 1 torch thread per process\n", base, o->workers, o->batch, o->shards,
           (double)o->lr, (double)o->momentum, o->epochs, o->eval_every);
    if (ours || ddp) {
        printf("%-28s %10s %8s %10s %10s %10s %12s\n", "", "params", "steps", "train s",
               "best acc", "to target", "samples/s");
        const json_t *side[2] = {ours, ddp};
        const char *name[2] = {"smlt (smlt.job serve + PS)", "PyTorch DDP gloo"};
        for (int k = 0; k < 2; k++) {
            if (!side[k])
                continue;
            double t = jd(side[k], "time_to_target_s");
            char to[48];
            if (t >= 0)
                snprintf(to, sizeof to, "%.2f s", t);
            else
                snprintf(to, sizeof to, "not reached");
            printf("%-28s %10.0f %8.0f %10.2f %10.4f %10s %12.0f\n", name[k],
                   jd(side[k], "params"), jd(side[k], "steps"), jd(side[k], "train_s"),
                   jd(side[k], "best_test_accuracy"), to, jd(side[k], "samples_per_s"));
        }
        if (ours) {
            const json_t *cm = json_object_get(ours, "compute_ms_per_step");
            const json_t *co = json_object_get(ours, "comm_ms_per_step");
            printf("  smlt per step (rank 0): compute %.2f ms, push+pull %.2f ms (waiting for "
                   "the other ranks included); steps to %.0f%%: %.0f\n",
                   json_number_value(json_array_get(cm, 0)),
                   json_number_value(json_array_get(co, 0)), 100 * (double)o->target,
                   jd(ours, "steps_to_target"));
        }
        if (ddp)
            printf("  DDP steps to %.0f%%: %.0f\n", 100 * (double)o->target,
                   jd(ddp, "steps_to_target"));
        if (ratio > 0)
            printf("  time to %.0f%%: smlt %.2f s, DDP %.2f s: smlt / DDP = %.3f (%s)\n",
                   100 * (double)o->target, t_ours, t_ddp, ratio,
                   ratio <= 1 ? "at most DDP's time" : "slower than DDP");
    }
    if (sy && sy->ok) {
        printf("binding cost per BSP sync (%llu parameters in %d tensors, 1 worker, %d shard(s); "
               "%d interleaved rounds of %d syncs each, medians):\n",
               (unsigned long long)sy->params, sy->tensors, o->shards, o->sync_rounds,
               o->sync_steps);
        static const char *what[2] = {"C with glibc's default malloc thresholds",
                                      "C with the thresholds raised as in Python"};
        for (int k = 0; k < 2; k++) {
            const struct btt_phase *ph = &sy->ph[k];
            printf("  %-42s Python %.4f ms, C %.4f ms; Python / C per round %.4f (%+.2f%%)\n"
                   "  %-42s ctypes %.4f ms; ctypes / C per round %.4f (%+.2f%%)\n",
                   what[k], ph->py_med, ph->c_med, ph->ratio, 100 * (ph->ratio - 1), "",
                   ph->ct_med, ph->ct_ratio, 100 * (ph->ct_ratio - 1));
        }
        printf("  the binding's own cost (same allocator state): %+.2f%% per sync (through "
               "ctypes instead: %+.2f%%)",
               100 * (sy->ph[1].ratio - 1), 100 * (sy->ph[1].ct_ratio - 1));
        if (sy->wrap_us >= 0)
            printf("; of it, the Python layer's buffer conversion %.1f us per sync", sy->wrap_us);
        printf("\n");
    }
    fflush(stdout);
}

int bench_train_torch_main(int argc, char **argv)
{
    struct btt_opts o;
    int rc = btt_parse(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    char mbuf[PATH_MAX + 64], s1[PATH_MAX + 64], s2[PATH_MAX + 64], s3[PATH_MAX + 64];
    const char *model_file = o.model_file;
    if (!model_file)
        model_file = find_source("worker/python/examples/fmnist_cnn.py", mbuf, sizeof mbuf);
    if (!model_file || access(model_file, R_OK) != 0) {
        fprintf(stderr, "smlt-bench train --torch: no training file %s (use --model-file or "
                "SMLT_SOURCE_DIR)\n", model_file ? model_file : "examples/fmnist_cnn.py");
        return 1;
    }
    const char *smlt_script = find_source("tools/bench_torch_smlt.py", s1, sizeof s1);
    const char *ddp_script = find_source("tools/peer_torch_ddp_job.py", s2, sizeof s2);
    const char *sync_script = find_source("tools/bench_torch_sync.py", s3, sizeof s3);
    if (!smlt_script || !ddp_script || !sync_script) {
        fprintf(stderr, "smlt-bench train --torch: cannot find tools/bench_torch_smlt.py, "
                "peer_torch_ddp_job.py and bench_torch_sync.py (set SMLT_SOURCE_DIR)\n");
        return 1;
    }
    struct btt_run r;
    memset(&r, 0, sizeof r);
    char pkg[PATH_MAX], init_py[PATH_MAX + 32];
    snprintf(pkg, sizeof pkg, "%s/../python", smlt_proc_self_dir());
    snprintf(init_py, sizeof init_py, "%s/smlt/__init__.py", pkg);
    if (access(init_py, R_OK) != 0) {
        fprintf(stderr, "smlt-bench train --torch: no smlt package in %s (built with "
                "python3-dev?)\n", pkg);
        return 1;
    }
    const char *pp = getenv("PYTHONPATH");
    snprintf(r.pypath, sizeof r.pypath, "%s%s%s", pkg, pp && *pp ? ":" : "", pp ? pp : "");
    snprintf(r.dir, sizeof r.dir, "/tmp/smlt-bench-torch.XXXXXX");
    if (!mkdtemp(r.dir)) {
        fprintf(stderr, "smlt-bench train --torch: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    json_t *ours = NULL, *ddp = NULL;
    struct btt_sync sy = {0};
    int failed = 0;
    if ((rc = shards_start(&r, o.shards)) != 0) {
        failed = 1;
        goto out;
    }
    char wk[16], bs[16], ep[16], lr[32], mo[32], ev[16], tg[32], sd[16], log[128];
    snprintf(wk, sizeof wk, "%d", o.workers);
    snprintf(bs, sizeof bs, "%d", o.batch);
    snprintf(ep, sizeof ep, "%d", o.epochs);
    snprintf(lr, sizeof lr, "%g", (double)o.lr);
    snprintf(mo, sizeof mo, "%g", (double)o.momentum);
    snprintf(ev, sizeof ev, "%d", o.eval_every);
    snprintf(tg, sizeof tg, "%.6g", (double)o.target);
    snprintf(sd, sizeof sd, "%d", o.seed);
    if (o.do_acc) {
        if (!o.json)
            fprintf(stderr, "smlt-bench train --torch: training through %d shard(s) at %s ...\n",
                    o.shards, r.addrs);
        snprintf(log, sizeof log, "%s/smlt.log", r.dir);
        const char *a1[] = {o.python, smlt_script, "--model-file", model_file, "--addrs",
                            r.addrs, "--token", BTT_TOKEN, "--admin-token", BTT_ADMIN,
                            "--workers", wk, "--batch", bs, "--epochs", ep, "--lr", lr,
                            "--momentum", mo, "--eval-every", ev, "--target", tg, "--seed", sd,
                            "--data", o.data, NULL};
        if (!(ours = py_run(&r, a1, log)))
            failed = 1;
        if (o.do_ddp) {
            if (!o.json)
                fprintf(stderr, "smlt-bench train --torch: PyTorch DDP ...\n");
            snprintf(log, sizeof log, "%s/ddp.log", r.dir);
            const char *a2[] = {o.python, ddp_script, "--model-file", model_file, "--world", wk,
                                "--threads", "1", "--per-worker-batch", bs, "--epochs", ep,
                                "--lr", lr, "--momentum", mo, "--eval-every", ev, "--target",
                                tg, "--seed", sd, "--data", o.data, "--json", NULL};
            if (!(ddp = py_run(&r, a2, log)))
                failed = 1;
        }
    }
    if (o.do_sync) {
        if (!o.json)
            fprintf(stderr, "smlt-bench train --torch: syncs from Python (the extension, ctypes) and from C ...\n");
        if (run_sync(&o, &r, sync_script, model_file, &sy) != 0)
            failed = 1;
    }
    print_report(&o, model_file, ours, ddp, o.do_sync ? &sy : NULL);
    if (ours && jd(ours, "time_to_target_s") < 0)
        failed = 1; /* the target was not reached */
out:
    json_decref(ours);
    json_decref(ddp);
    run_cleanup(&r, o.keep_logs);
    return failed;
}
