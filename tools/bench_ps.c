/* bench_ps.c: `smlt-bench ps`: one BSP sync (push a full gradient + pull the full updated model)
 * through S real smlt-ps shards by W worker processes, for models of several sizes; optionally
 * side by side with the same bytes through a private redis-server (SET gradient, GET model, the
 * store sync of SMLT, LambdaML and MLLess) and over one raw loopback TCP connection (the
 * ceiling). Also the latency of small pulls while a big push is in flight on the same shards.
 *
 * Gradients are random floats (incompressible, as dense gradients are), so lz4 stays off and
 * the figures are those of the data plane itself. With --tls every case runs twice in one
 * run, through plaintext shards and through TLS shards (certificates from
 * tools/make-test-certs.sh in a temporary directory), and prints both and their ratio. Every
 * process this starts is stopped by pid. */
#include "bench_ps.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_peers.h"
#include "bench_storm.h"
#include "smlt_admin.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_proc.h"
#include "smlt_util.h"

#define BENCH_TOKEN "smlt-bench-token"
#define BENCH_MAX_SIZES 8
#define BENCH_MAX_WLIST 8

struct bench_opts {
    uint32_t shards;
    uint32_t workers[BENCH_MAX_WLIST];
    int nworkers;
    size_t sizes[BENCH_MAX_SIZES];
    int nsizes;
    int reps; /* 0: by size */
    int vs_redis, vs_tcp, latency, json;
    const char *addrs; /* use running shards instead of starting them */
    const char *token, *admin_token;
    const char *ps_bin;
    int storm;              /* --storm: many connections for a while, memory watched */
    double storm_seconds;
    uint32_t storm_clients;
    uint64_t storm_floats;
    uint32_t replicas[2];   /* --replicas: 1 (none) and/or 2 (a backup per shard) */
    int nreplicas;
    char backups[SMLT_MAX_SHARDS > 64 ? 64 : SMLT_MAX_SHARDS][24]; /* started backups' addrs */
    int tls;                /* --tls: each case also through TLS shards */
    char certs[128];        /* their certificates (make-test-certs.sh's files) */
    const char *tls_ca;     /* the case running now is TLS: its clients trust this CA file */
    int tls_shards;         /* shards_start() starts TLS shards */
    uint32_t nic_mbps;      /* the shards' emulated network card (0: none) */
};

struct shard_procs {
    pid_t pid[SMLT_MAX_SHARDS];
    uint32_t n;
    char addrs[SMLT_MAX_SHARDS * 24];
    char dir[128];
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smlt-bench ps [options]\n"
            "Time one BSP sync (push a full gradient + pull the full model) through smlt-ps shards.\n\n"
            "  --shards S        shards to start (default 2)\n"
            "  --workers LIST    worker process counts to run, e.g. 1,4 (default 1,4)\n"
            "  --sizes LIST      model sizes, e.g. 1MB,10MB,100MB (default; MB = 10^6 bytes)\n"
            "  --reps N          timed syncs per worker (default: 100 / 30 / 11 for <=1 / <=10 / more MB)\n"
            "  --vs-redis        also sync the same bytes through a private redis-server (raw RESP)\n"
            "  --vs-tcp          also push+pull the same bytes over one raw loopback TCP connection\n"
            "  --latency         p50/p99 of 4 KB pulls, idle and while a 100 MB push is in flight\n"
            "  --all             --vs-redis --vs-tcp --latency\n"
            "  --addrs LIST      use running shards (host:port,...) instead of starting them\n"
            "  --token T         job token for --addrs shards (default: %s)\n"
            "  --admin-token T   admin token for --addrs shards (default: the job token)\n"
            "  --ps-bin PATH     smlt-ps to start (default: next to smlt-bench)\n"
            "  --replicas LIST   1 (no backup) and/or 2 (a backup per shard, smlt_set_backup), e.g.\n"
            "                    1,2 to time both and print the ratio (default 1)\n"
            "  --tls             run each case through plaintext shards and through TLS shards\n"
            "                    (certificates from tools/make-test-certs.sh) and print the ratio\n"
            "  --nic-mbps N      each shard started gets an emulated network card of N Mbit/s each\n"
            "                    way (smlt-ps --nic-mbps: a small node's link; default: none)\n"
            "  --json            one JSON object per line per measured case\n\n"
            "  --storm           instead: N clients, each connected to every shard, push and pull\n"
            "                    (ASP) for S seconds; report requests, errors by kind, requests/s and\n"
            "                    each shard's VmRSS after 1 s, at the middle and at the end. Exits 1 on\n"
            "                    any error or an RSS growth over max(%d MB, %d%%)\n"
            "  --storm-seconds S load time (default 60)\n"
            "  --storm-clients N clients (default 256; 1..%u)\n"
            "  --storm-floats N  model size in floats (default 1000000)\n",
            BENCH_TOKEN, STORM_RSS_GROWTH_MB, STORM_RSS_GROWTH_PCT, BENCH_STORM_MAX_CLIENTS);
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0)
        return -1;
    double mul = 1;
    if (!strcasecmp(end, "MB") || !strcasecmp(end, "M"))
        mul = 1e6;
    else if (!strcasecmp(end, "KB") || !strcasecmp(end, "K"))
        mul = 1e3;
    else if (!strcasecmp(end, "GB") || !strcasecmp(end, "G"))
        mul = 1e9;
    else if (*end && strcasecmp(end, "B"))
        return -1;
    size_t b = (size_t)(v * mul);
    b -= b % 4;
    if (b < 4 || b > BENCH_PEERS_MAX_BYTES)
        return -1;
    *out = b;
    return 0;
}

/* ---- shards ------------------------------------------------------------------------------ */

static void shards_stop(struct shard_procs *sp)
{
    for (uint32_t i = 0; i < sp->n; i++)
        if (sp->pid[i] > 0)
            smlt_proc_stop(sp->pid[i], 3000);
    sp->n = 0;
    if (sp->dir[0]) {
        char cmd[256];
        for (uint32_t i = 0; i < SMLT_MAX_SHARDS; i++) {
            snprintf(cmd, sizeof cmd, "%s/port%u", sp->dir, i);
            if (unlink(cmd) != 0 && errno == ENOENT && i > 8)
                break;
        }
        snprintf(cmd, sizeof cmd, "%s/ps.log", sp->dir);
        unlink(cmd);
        rmdir(sp->dir);
    }
}

static int shards_start(struct shard_procs *sp, const struct bench_opts *o)
{
    memset(sp, 0, sizeof *sp);
    snprintf(sp->dir, sizeof sp->dir, "/tmp/smlt-bench.XXXXXX");
    if (!mkdtemp(sp->dir)) {
        sp->dir[0] = '\0';
        return SMLT_ESYS;
    }
    char bin[1024], log[256];
    if (o->ps_bin)
        snprintf(bin, sizeof bin, "%s", o->ps_bin);
    else
        snprintf(bin, sizeof bin, "%s/smlt-ps", smlt_proc_self_dir());
    snprintf(log, sizeof log, "%s/ps.log", sp->dir);
    size_t off = 0;
    uint32_t procs = o->shards;
    for (int r = 0; r < o->nreplicas; r++)
        if (o->replicas[r] == 2)
            procs = 2 * o->shards; /* then the backups: one per shard */
    for (uint32_t i = 0; i < procs; i++) {
        char id[16], pf[256];
        snprintf(id, sizeof id, "%u", i % o->shards);
        snprintf(pf, sizeof pf, "%s/port%u", sp->dir, i);
        char cert[192], key[192];
        snprintf(cert, sizeof cert, "%s/server.pem", o->certs);
        snprintf(key, sizeof key, "%s/server.key", o->certs);
        char nic[16];
        snprintf(nic, sizeof nic, "%u", o->nic_mbps);
        const char *argv[] = {bin, "--shard", id, "--token", BENCH_TOKEN, "--listen", "127.0.0.1:0",
                              "--port-file", pf, "--log-level", "warn", "--nic-mbps", nic,
                              o->tls_shards ? "--tls-cert" : NULL, cert, "--tls-key", key, NULL};
        struct smlt_proc_opts po = {.log_path = log, .die_with_parent = 1, .watchdog_s = 3600};
        pid_t pid = smlt_proc_spawn(argv, &po);
        if (pid <= 0) {
            shards_stop(sp);
            return SMLT_ESYS;
        }
        sp->pid[sp->n++] = pid;
        int port = smlt_proc_wait_port(pid, pf, 10000);
        if (port <= 0) {
            log_error("smlt-ps %s did not start (see %s)", bin, log);
            shards_stop(sp);
            return port;
        }
        if (i >= o->shards)
            snprintf(((struct bench_opts *)o)->backups[i - o->shards], sizeof o->backups[0],
                     "127.0.0.1:%d", port);
        else
            off += (size_t)snprintf(sp->addrs + off, sizeof sp->addrs - off, "%s127.0.0.1:%d",
                                    i ? "," : "", port);
    }
    return 0;
}

/* ---- a job of `bytes` bytes ---------------------------------------------------------------- */

static int job_setup(const char *addrs, const struct bench_opts *o, size_t bytes, uint32_t workers,
                     int sync, uint32_t replicas)
{
    uint64_t shape[1] = {bytes / 4};
    struct smlt_tensor_def t = {.name = "blob", .ndims = 1, .shape = shape, .init = SMLT_INIT_ZERO};
    struct smlt_job_conf jc;
    smlt_job_conf_default(&jc);
    jc.job = "bench";
    jc.sync = sync;
    jc.workers = workers;
    jc.lr = 1e-6f; /* plain SGD; tiny so the model stays bounded over many steps */
    struct smlt_client_opts co = {.token = o->admin_token ? o->admin_token : o->token,
                                  .admin = 1,
                                  .timeout_ms = 120000,
                                  .tls_ca = o->tls_ca};
    struct smlt_client *c = NULL;
    char err[256];
    int rc = smlt_job_setup(&c, addrs, &co, &t, 1, &jc, err, sizeof err);
    if (rc)
        log_error("job setup on %s: %s", addrs, err);
    for (uint32_t i = 0; !rc && replicas == 2 && i < o->shards; i++) {
        rc = smlt_set_backup(c, i, o->backups[i]);
        if (rc)
            log_error("backup of shard %u at %s: %s", i, o->backups[i], smlt_client_errmsg(c));
    }
    smlt_client_close(c);
    return rc;
}

static float *prefaulted(size_t bytes, unsigned seed)
{
    float *p = malloc(bytes);
    if (!p)
        return NULL;
    size_t n = bytes / 4;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (float)(int32_t)(x >> 32) * (1.0f / 2147483648.0f);
    }
    return p;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t k = read(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* A worker process: connect, warm up, say ready, wait for go, time reps syncs, send them. */
static void sync_worker(const char *addrs, const struct bench_opts *o, uint32_t rank, size_t bytes,
                        int reps, int ready_fd, int go_fd, int out_fd)
{
    struct smlt_client_opts co = {.token = o->token, .worker = rank, .timeout_ms = 120000,
                                  .tls_ca = o->tls_ca};
    struct smlt_client *c = NULL;
    char err[256];
    int rc = smlt_client_connect(&c, addrs, &co, err, sizeof err);
    double *ms = calloc((size_t)reps, sizeof *ms);
    float *g = prefaulted(bytes, rank + 1), *m = prefaulted(bytes, 99);
    if (rc || !ms || !g || !m) {
        log_error("worker %u: %s", rank, rc ? err : "out of memory");
        _exit(1);
    }
    uint64_t step = 0, clock;
    rc = smlt_pull(c, 0, 0, m, &clock); /* step = the shards' clock, in case of earlier runs */
    step = clock;
    if (!rc)
        rc = smlt_sync(c, step++, g, m, &clock); /* warm-up: connections, page tables */
    char r = rc ? 'x' : 'r';
    if (write_all(ready_fd, &r, 1) || read_all(go_fd, &r, 1) || rc) {
        log_error("worker %u: warm-up: %s", rank, smlt_client_errmsg(c));
        _exit(1);
    }
    for (int i = 0; i < reps; i++) {
        double t0 = (smlt_now_mono() * 1e3);
        rc = smlt_sync(c, step++, g, m, &clock);
        ms[i] = (smlt_now_mono() * 1e3) - t0;
        if (rc) {
            log_error("worker %u: sync: %s: %s", rank, smlt_strerror(rc), smlt_client_errmsg(c));
            _exit(1);
        }
    }
    write_all(out_fd, ms, sizeof *ms * (size_t)reps);
    smlt_client_close(c);
    _exit(0);
}

/* Runs W worker processes doing reps syncs each; fills ms (W * reps, worker-major). */
static int run_syncs(const char *addrs, const struct bench_opts *o, size_t bytes, uint32_t W,
                     int reps, double *ms)
{
    pid_t pids[BENCH_PEERS_MAX_WORKERS];
    int ready[BENCH_PEERS_MAX_WORKERS], go[BENCH_PEERS_MAX_WORKERS], out[BENCH_PEERS_MAX_WORKERS];
    int rc = 0;
    uint32_t started = 0;
    for (uint32_t w = 0; w < W; w++) {
        int pr[2], pg[2], po[2];
        if (pipe(pr) || pipe(pg) || pipe(po)) {
            rc = SMLT_ESYS;
            break;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(pr[0]);
            close(pg[1]);
            close(po[0]);
            sync_worker(addrs, o, w, bytes, reps, pr[1], pg[0], po[1]);
        }
        close(pr[1]);
        close(pg[0]);
        close(po[1]);
        if (pid < 0) {
            close(pr[0]);
            close(pg[1]);
            close(po[0]);
            rc = SMLT_ESYS;
            break;
        }
        pids[w] = pid;
        ready[w] = pr[0];
        go[w] = pg[1];
        out[w] = po[0];
        started++;
    }
    /* All warmed up, then all go together. */
    for (uint32_t w = 0; w < started && !rc; w++) {
        char r;
        if (read_all(ready[w], &r, 1) || r != 'r')
            rc = SMLT_EIO;
    }
    for (uint32_t w = 0; w < started; w++) {
        char g = 'g';
        if (!rc)
            write_all(go[w], &g, 1);
        close(go[w]);
    }
    for (uint32_t w = 0; w < started; w++) {
        if (!rc && read_all(out[w], ms + (size_t)w * reps, sizeof *ms * (size_t)reps))
            rc = SMLT_EIO;
        close(out[w]);
        close(ready[w]);
    }
    for (uint32_t w = 0; w < started; w++) {
        int st;
        if (rc)
            kill(pids[w], SIGTERM);
        waitpid(pids[w], &st, 0);
        if (!rc && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            rc = SMLT_EIO;
    }
    return rc;
}

/* ---- small pulls while a big push is in flight ------------------------------------------ */

#define LAT_PULL_FLOATS 1024 /* 4 KB */

/* Times 4 KB pulls. With progress_fd >= 0, keeps going until at least n pulls are done and the
 * pusher has reported min_pushes more completed pushes on progress_fd (one byte each), up to
 * max pulls; returns the count in *done. */
static int measure_pulls(const char *addrs, const struct bench_opts *o, int n, int max,
                         int progress_fd, int min_pushes, double *ms, int *done)
{
    struct smlt_client_opts co = {.token = o->token, .worker = 1, .timeout_ms = 60000};
    struct smlt_client *c = NULL;
    char err[256];
    int rc = smlt_client_connect(&c, addrs, &co, err, sizeof err);
    if (rc) {
        log_error("latency client: %s", err);
        return rc;
    }
    float buf[LAT_PULL_FLOATS];
    int i = 0, pushes = 0;
    while (!rc && i < max) {
        if (i >= n && (progress_fd < 0 || pushes >= min_pushes))
            break;
        double t0 = (smlt_now_mono() * 1e3);
        rc = smlt_pull_range(c, 4096, 4096 + LAT_PULL_FLOATS, 0, 0, buf, NULL);
        ms[i++] = (smlt_now_mono() * 1e3) - t0;
        if (progress_fd >= 0) {
            char b[64];
            struct pollfd p = {progress_fd, POLLIN, 0};
            while (poll(&p, 1, 0) > 0) {
                ssize_t k = read(progress_fd, b, sizeof b);
                if (k <= 0)
                    break;
                pushes += (int)k;
            }
        }
    }
    if (rc)
        log_error("latency client: pull: %s", smlt_client_errmsg(c));
    *done = i;
    smlt_client_close(c);
    return rc;
}

static int bench_latency(const char *addrs, const struct bench_opts *o)
{
    const size_t bytes = 100000000;
    const int n = 2000, max = 1000000;
    int rc = job_setup(addrs, o, bytes, 1, SMLT_SYNC_ASP, 1);
    if (rc)
        return rc;
    double *idle = calloc(n, sizeof *idle), *busy = calloc(max, sizeof *busy);
    if (!idle || !busy)
        return SMLT_ENOMEM;
    int nidle = 0, nbusy = 0, pushes_seen = 0;
    rc = measure_pulls(addrs, o, n, n, -1, 0, idle, &nidle);
    /* A pusher process sends 100 MB gradients back to back (ASP: each is applied at once) and
     * reports each completed push; pulls are timed from its first push until it has completed
     * at least 5 more. */
    int stop[2], prog[2];
    if (!rc && pipe(stop) == 0 && pipe(prog) == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            close(stop[1]);
            close(prog[0]);
            struct smlt_client_opts co = {.token = o->token, .worker = 0, .timeout_ms = 60000};
            struct smlt_client *c = NULL;
            char err[256];
            float *g = prefaulted(bytes, 5);
            if (!g || smlt_client_connect(&c, addrs, &co, err, sizeof err)) {
                log_error("pusher: %s", g ? err : "out of memory");
                _exit(1);
            }
            struct pollfd p = {stop[0], POLLIN, 0};
            uint64_t step = 0;
            while (poll(&p, 1, 0) == 0) {
                int prc = smlt_push(c, step++, g);
                if (prc) {
                    log_error("pusher: push: %s", smlt_client_errmsg(c));
                    _exit(1);
                }
                if (write(prog[1], "p", 1) != 1)
                    break;
            }
            smlt_client_close(c);
            _exit(0);
        }
        close(stop[0]);
        close(prog[1]);
        char b;
        if (read_all(prog[0], &b, 1) == 0) { /* the first push is through: shards are busy */
            rc = measure_pulls(addrs, o, n, max, prog[0], 5, busy, &nbusy);
            pushes_seen = 1;
        } else {
            rc = SMLT_EIO;
        }
        write_all(stop[1], "s", 1);
        close(stop[1]);
        close(prog[0]);
        int st;
        waitpid(pid, &st, 0);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            log_error("pusher process failed (%s %d)", WIFSIGNALED(st) ? "signal" : "exit status",
                      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            if (!rc)
                rc = SMLT_EIO;
        }
    }
    if (!rc && pushes_seen) {
        double ip50 = bench_peers_percentile(idle, nidle, 50), ip99 = bench_peers_percentile(idle, nidle, 99);
        double bp50 = bench_peers_percentile(busy, nbusy, 50), bp99 = bench_peers_percentile(busy, nbusy, 99);
        if (o->json)
            printf("{\"case\":\"pull_latency\",\"pull_bytes\":%d,\"push_bytes\":%zu,\"shards\":%u,"
                   "\"pulls_idle\":%d,\"pulls_loaded\":%d,\"idle_ms_p50\":%.4f,\"idle_ms_p99\":%.4f,"
                   "\"loaded_ms_p50\":%.4f,\"loaded_ms_p99\":%.4f}\n",
                   LAT_PULL_FLOATS * 4, bytes, o->shards, nidle, nbusy, ip50, ip99, bp50, bp99);
        else
            printf("4 KB pull latency: idle p50 %.3f ms p99 %.3f ms (%d pulls) | while 100 MB pushes "
                   "stream in: p50 %.3f ms p99 %.3f ms (%d pulls)\n",
                   ip50, ip99, nidle, bp50, bp99, nbusy);
        fflush(stdout);
    }
    free(idle);
    free(busy);
    return rc;
}

/* ---- the storm --------------------------------------------------------------------------- */

/* Runs the storm (bench_storm.c) against the shards, prints the report and stops the shards.
 * Returns the exit status: 1 on any error or an RSS growth past the bound. */
static int bench_storm_main(const char *addrs, const struct bench_opts *o, struct shard_procs *sp)
{
    if (o->shards > BENCH_STORM_MAX_SHARDS) {
        fprintf(stderr, "smlt-bench ps: --storm: at most %u shards\n", BENCH_STORM_MAX_SHARDS);
        shards_stop(sp);
        return 2;
    }
    struct bench_storm_conf sc = {.addrs = addrs,
                                  .pids = sp->n ? sp->pid : NULL,
                                  .token = o->token,
                                  .admin_token = o->admin_token,
                                  .clients = o->storm_clients,
                                  .seconds = o->storm_seconds,
                                  .floats = o->storm_floats};
    struct bench_storm_result *res = calloc(1, sizeof *res);
    int rc = res ? bench_storm_run(&sc, res) : SMLT_ENOMEM;
    int status = 0;
    if (rc) {
        fprintf(stderr, "smlt-bench ps --storm: cannot run: %s\n", smlt_strerror(rc));
        status = 1;
    } else {
        bench_storm_print(&sc, res, o->json);
        if (bench_storm_errors(res))
            status = 1;
        for (uint32_t i = 0; i < res->nshards; i++)
            if (bench_storm_rss_grew(res, i))
                status = 1;
    }
    free(res);
    shards_stop(sp);
    return status;
}

/* ---- TLS shards ------------------------------------------------------------------------- */

/* --tls: makes test certificates (tools/make-test-certs.sh) in a temporary directory and
 * starts a second set of shards with them. Returns 0, or a code (said on stderr). */
static int tls_shards_start(struct shard_procs *sp, struct bench_opts *o)
{
    snprintf(o->certs, sizeof o->certs, "/tmp/smlt-bench-certs.XXXXXX");
    if (!mkdtemp(o->certs)) {
        o->certs[0] = '\0';
        fprintf(stderr, "smlt-bench ps: --tls: cannot make a directory: %s\n", strerror(errno));
        return SMLT_ESYS;
    }
    const char *src = getenv("SMLT_SOURCE_DIR");
#ifdef SMLT_SOURCE_DIR_DEFAULT
    if (!src || !*src)
        src = SMLT_SOURCE_DIR_DEFAULT;
#endif
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/tools/make-test-certs.sh' '%s' >/dev/null",
             src ? src : ".", o->certs);
    if (system(cmd) != 0) {
        fprintf(stderr, "smlt-bench ps: --tls: %s failed (set SMLT_SOURCE_DIR to the source "
                        "tree; openssl must be installed)\n", cmd);
        return SMLT_ESYS;
    }
    o->tls_shards = 1;
    int rc = shards_start(sp, o);
    o->tls_shards = 0;
    if (rc)
        fprintf(stderr, "smlt-bench ps: cannot start %u TLS shards: %s\n", o->shards,
                smlt_strerror(rc));
    return rc;
}

static void tls_shards_stop(struct shard_procs *sp, struct bench_opts *o)
{
    shards_stop(sp);
    if (o->certs[0]) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", o->certs);
        if (system(cmd) != 0)
            log_warn("cannot remove %s", o->certs);
        o->certs[0] = '\0';
    }
}

/* ---- main -------------------------------------------------------------------------------- */

static int reps_for(const struct bench_opts *o, size_t bytes)
{
    if (o->reps > 0)
        return o->reps;
    return bytes <= 1000000 ? 100 : bytes <= 10000000 ? 30 : 11;
}

/* Times one case. base_p50: in, R=1's p50 (NAN when not run yet); out, set on R=1. With
 * o->tls_ca (a TLS case) plain_p50 is the same case's plaintext p50, to compare with. */
static int bench_case(const char *addrs, const struct bench_opts *o, struct bench_redis *redis,
                      size_t bytes, uint32_t W, uint32_t R, double *base_p50, double *plain_p50)
{
    int tls = o->tls_ca != NULL;
    int reps = reps_for(o, bytes);
    size_t n = (size_t)W * (size_t)reps;
    double *ms = calloc(n, sizeof *ms), *peer = calloc(n, sizeof *peer);
    if (!ms || !peer)
        return SMLT_ENOMEM;
    int rc = job_setup(addrs, o, bytes, W, SMLT_SYNC_BSP, R);
    if (!rc)
        rc = run_syncs(addrs, o, bytes, W, reps, ms);
    if (rc) {
        log_error("sync benchmark %zu bytes x %u workers failed: %s", bytes, W, smlt_strerror(rc));
        free(ms);
        free(peer);
        return rc;
    }
    double p50 = bench_peers_percentile(ms, (int)n, 50), p99 = bench_peers_percentile(ms, (int)n, 99);
    double gbps = 2.0 * (double)bytes / (p50 * 1e-3) / 1e9;
    double rp50 = NAN, rp99 = NAN, tp50 = NAN, tp99 = NAN;
    double vs_r1 = R == 1 || isnan(*base_p50) ? NAN : p50 / *base_p50;
    double vs_plain = tls && !isnan(*plain_p50) ? p50 / *plain_p50 : NAN;
    if (R == 1)
        *base_p50 = p50;
    if (!tls)
        *plain_p50 = p50;
    if (redis && R == 1 && !tls) {
        int prc = bench_peers_redis_sync(redis, bytes, (int)W, reps, peer);
        if (prc == 0) {
            rp50 = bench_peers_percentile(peer, (int)n, 50);
            rp99 = bench_peers_percentile(peer, (int)n, 99);
        } else {
            log_warn("redis peer failed: %s", smlt_strerror(prc));
        }
    }
    if (o->vs_tcp && R == 1 && !tls) {
        int prc = W == 1 ? bench_peers_tcp_sync(bytes, reps, peer)
                         : bench_peers_tcp_sync_multi(bytes, (int)W, reps, peer);
        if (prc == 0) {
            tp50 = bench_peers_percentile(peer, (int)n, 50);
            tp99 = bench_peers_percentile(peer, (int)n, 99);
        } else {
            log_warn("tcp peer failed: %s", smlt_strerror(prc));
        }
    }
    if (o->json) {
        printf("{\"case\":\"sync\",\"size_bytes\":%zu,\"workers\":%u,\"shards\":%u,\"reps\":%d,"
               "\"replicas\":%u,\"tls\":%s,\"sync_ms_p50\":%.4f,\"sync_ms_p99\":%.4f,"
               "\"gb_per_s\":%.3f",
               bytes, W, o->shards, reps, R, tls ? "true" : "false", p50, p99, gbps);
        if (!isnan(vs_plain))
            printf(",\"vs_plain\":%.3f", vs_plain);
        if (!isnan(vs_r1))
            printf(",\"vs_replicas_1\":%.3f", vs_r1);
        if (!isnan(rp50))
            printf(",\"redis_sync_ms_p50\":%.4f,\"redis_sync_ms_p99\":%.4f,\"vs_redis\":%.3f", rp50,
                   rp99, rp50 / p50);
        if (!isnan(tp50))
            printf(",\"tcp_sync_ms_p50\":%.4f,\"tcp_sync_ms_p99\":%.4f,\"vs_tcp\":%.3f", tp50, tp99,
                   p50 / tp50);
        printf("}\n");
    } else {
        printf("%7.1f MB  W=%-2u S=%-2u R=%u%s  sync p50 %9.3f ms  p99 %9.3f ms  %6.2f GB/s",
               bytes / 1e6, W, o->shards, R, !o->tls ? "" : tls ? " TLS  " : " plain", p50, p99,
               gbps);
        if (!isnan(vs_plain))
            printf(" | x%.2f of plain", vs_plain);
        if (!isnan(vs_r1))
            printf(" | x%.2f of R=1", vs_r1);
        if (!isnan(tp50))
            printf(" | tcp %9.3f ms (x%.2f)", tp50, p50 / tp50);
        if (!isnan(rp50))
            printf(" | redis %9.3f ms (%.1fx faster)", rp50, rp50 / p50);
        printf("\n");
    }
    fflush(stdout);
    free(ms);
    free(peer);
    return 0;
}

int bench_ps_main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"shards", required_argument, 0, 's'},   {"workers", required_argument, 0, 'w'},
        {"sizes", required_argument, 0, 'z'},    {"reps", required_argument, 0, 'r'},
        {"vs-redis", no_argument, 0, 'R'},       {"vs-tcp", no_argument, 0, 'T'},
        {"latency", no_argument, 0, 'L'},        {"all", no_argument, 0, 'A'},
        {"addrs", required_argument, 0, 'a'},    {"token", required_argument, 0, 't'},
        {"admin-token", required_argument, 0, 'k'}, {"ps-bin", required_argument, 0, 'p'},
        {"json", no_argument, 0, 'j'},           {"help", no_argument, 0, 'h'},
        {"storm", no_argument, 0, 'S'},          {"storm-seconds", required_argument, 0, 'D'},
        {"storm-clients", required_argument, 0, 'C'}, {"storm-floats", required_argument, 0, 'F'},
        {"replicas", required_argument, 0, 'P'}, {"tls", no_argument, 0, 'X'},
        {"nic-mbps", required_argument, 0, 'N'},
        {0, 0, 0, 0}};
    struct bench_opts o = {.shards = 2, .workers = {1, 4}, .nworkers = 2, .token = BENCH_TOKEN,
                           .storm_seconds = 60, .storm_clients = 256, .storm_floats = 1000000,
                           .replicas = {1}, .nreplicas = 1};
    o.sizes[0] = 1000000;
    o.sizes[1] = 10000000;
    o.sizes[2] = 100000000;
    o.nsizes = 3;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 's': {
            long v = atol(optarg);
            if (v < 1 || v > 64) {
                fprintf(stderr, "smlt-bench ps: --shards: want 1..64\n");
                return 2;
            }
            o.shards = (uint32_t)v;
            break;
        }
        case 'w': {
            o.nworkers = 0;
            char *save = NULL, *list = strdup(optarg);
            for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                long v = atol(t);
                if (v < 1 || v > BENCH_PEERS_MAX_WORKERS || o.nworkers >= BENCH_MAX_WLIST) {
                    fprintf(stderr, "smlt-bench ps: --workers: want up to %d counts in 1..%d\n",
                            BENCH_MAX_WLIST, BENCH_PEERS_MAX_WORKERS);
                    free(list);
                    return 2;
                }
                o.workers[o.nworkers++] = (uint32_t)v;
            }
            free(list);
            break;
        }
        case 'z': {
            o.nsizes = 0;
            char *save = NULL, *list = strdup(optarg);
            for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (o.nsizes >= BENCH_MAX_SIZES || parse_size(t, &o.sizes[o.nsizes])) {
                    fprintf(stderr, "smlt-bench ps: --sizes: bad size \"%s\" (e.g. 10MB; at most %d)\n",
                            t, BENCH_MAX_SIZES);
                    free(list);
                    return 2;
                }
                o.nsizes++;
            }
            free(list);
            break;
        }
        case 'r':
            o.reps = atoi(optarg);
            if (o.reps < 1) {
                fprintf(stderr, "smlt-bench ps: --reps: want >= 1\n");
                return 2;
            }
            break;
        case 'R':
            o.vs_redis = 1;
            break;
        case 'T':
            o.vs_tcp = 1;
            break;
        case 'L':
            o.latency = 1;
            break;
        case 'A':
            o.vs_redis = o.vs_tcp = o.latency = 1;
            break;
        case 'a':
            o.addrs = optarg;
            break;
        case 't':
            o.token = optarg;
            break;
        case 'k':
            o.admin_token = optarg;
            break;
        case 'p':
            o.ps_bin = optarg;
            break;
        case 'P': {
            o.nreplicas = 0;
            char *save = NULL, *list = strdup(optarg);
            for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if ((strcmp(t, "1") && strcmp(t, "2")) || o.nreplicas >= 2) {
                    fprintf(stderr, "smlt-bench ps: --replicas: want 1, 2 or 1,2\n");
                    free(list);
                    return 2;
                }
                o.replicas[o.nreplicas++] = (uint32_t)atoi(t);
            }
            free(list);
            if (!o.nreplicas) {
                fprintf(stderr, "smlt-bench ps: --replicas: want 1, 2 or 1,2\n");
                return 2;
            }
            break;
        }
        case 'j':
            o.json = 1;
            break;
        case 'X':
            o.tls = 1;
            break;
        case 'N':
            o.nic_mbps = (uint32_t)atoi(optarg);
            if (atoi(optarg) < 1 || atoi(optarg) > 400000) {
                fprintf(stderr, "smlt-bench ps: --nic-mbps: want 1..400000\n");
                return 2;
            }
            break;
        case 'S':
            o.storm = 1;
            break;
        case 'D':
            o.storm_seconds = atof(optarg);
            if (!(o.storm_seconds >= 1 && o.storm_seconds <= 3600)) {
                fprintf(stderr, "smlt-bench ps: --storm-seconds: want 1..3600\n");
                return 2;
            }
            break;
        case 'C': {
            long v = atol(optarg);
            if (v < 1 || v > (long)BENCH_STORM_MAX_CLIENTS) {
                fprintf(stderr, "smlt-bench ps: --storm-clients: want 1..%u\n",
                        BENCH_STORM_MAX_CLIENTS);
                return 2;
            }
            o.storm_clients = (uint32_t)v;
            break;
        }
        case 'F': {
            long long v = atoll(optarg);
            if (v < 1024 || v > (1ll << 28)) {
                fprintf(stderr, "smlt-bench ps: --storm-floats: want 1024..%lld\n", 1ll << 28);
                return 2;
            }
            o.storm_floats = (uint64_t)v;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    struct shard_procs sp = {0};
    const char *addrs = o.addrs;
    int rc = 0;
    if (addrs && (o.nreplicas > 1 || o.replicas[0] == 2)) {
        fprintf(stderr, "smlt-bench ps: --replicas 2 starts its own shards and backups: no --addrs\n");
        return 2;
    }
    if (o.shards > 64 && (o.nreplicas > 1 || o.replicas[0] == 2)) {
        fprintf(stderr, "smlt-bench ps: --replicas 2: at most 64 shards\n");
        return 2;
    }
    if (o.tls && (addrs || o.storm || o.nreplicas > 1 || o.replicas[0] == 2)) {
        fprintf(stderr, "smlt-bench ps: --tls starts its own shards (no --addrs, --storm or "
                        "--replicas 2)\n");
        return 2;
    }
    struct shard_procs sp_tls = {0};
    if (o.tls && (rc = tls_shards_start(&sp_tls, &o)) != 0)
        return 1;
    if (addrs) {
        o.shards = 1;
        for (const char *p = addrs; *p; p++)
            o.shards += *p == ',';
    } else {
        if ((rc = shards_start(&sp, &o)) != 0) {
            fprintf(stderr, "smlt-bench ps: cannot start %u shards: %s\n", o.shards, smlt_strerror(rc));
            tls_shards_stop(&sp_tls, &o);
            return 1;
        }
        addrs = sp.addrs;
    }
    if (o.storm)
        return bench_storm_main(addrs, &o, &sp);
    struct bench_redis *redis = NULL;
    if (o.vs_redis) {
        rc = bench_peers_redis_start(&redis);
        if (rc) {
            fprintf(stderr, "smlt-bench ps: --vs-redis: cannot start redis-server: %s\n",
                    smlt_strerror(rc));
            shards_stop(&sp);
            tls_shards_stop(&sp_tls, &o);
            return 1;
        }
    }
    if (!o.json)
        printf("smlt-bench ps: %u shards at %s%s%s; BSP, plain SGD, random (incompressible) "
               "gradients\n",
               o.shards, addrs, o.tls ? ", TLS shards at " : "", o.tls ? sp_tls.addrs : "");
    char ca[192];
    snprintf(ca, sizeof ca, "%s/ca.pem", o.certs);
    for (int wi = 0; wi < o.nworkers && !rc; wi++)
        for (int si = 0; si < o.nsizes && !rc; si++) {
            double base = NAN, plain = NAN;
            for (int ri = 0; ri < o.nreplicas && !rc; ri++) {
                o.tls_ca = NULL;
                rc = bench_case(addrs, &o, redis, o.sizes[si], o.workers[wi], o.replicas[ri],
                                &base, &plain);
                if (rc || !o.tls)
                    continue;
                /* The same case through the TLS shards, right after, in the same run. */
                double tls_base = NAN;
                o.tls_ca = ca;
                rc = bench_case(sp_tls.addrs, &o, NULL, o.sizes[si], o.workers[wi],
                                o.replicas[ri], &tls_base, &plain);
                o.tls_ca = NULL;
            }
        }
    if (!rc && o.latency)
        rc = bench_latency(addrs, &o);
    bench_peers_redis_stop(redis);
    shards_stop(&sp);
    tls_shards_stop(&sp_tls, &o);
    if (rc) {
        fprintf(stderr, "smlt-bench ps: failed: %s\n", smlt_strerror(rc));
        return 1;
    }
    return 0;
}
