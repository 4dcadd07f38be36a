/* smltctl_cluster.c: `smltctl up`, `down` and `demo`: the local cluster.
 *
 * A local cluster is one smlt-coordinator process (found next to smltctl) that runs jobs on its
 * embedded function runtime. `up` starts it detached from the terminal (its own session, so it
 * survives smltctl and the shell), on 127.0.0.1 with a free port it reports through a port
 * file, with a fresh random admin token handed over in its environment (never on a command
 * line, where `ps` would show it), and records url, token, pid, log and data directory in
 * STATE_DIR/cluster.json (0600). `down` stops that pid (after checking through /proc that it
 * still is our coordinator) and removes the file. `demo` is up + submit + watch. */
#include "smltctl.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "smlt_proc.h"

#define UP_PORT_WAIT_MS 20000
#define UP_HEALTH_WAIT_MS 10000
#define DOWN_GRACE_MS 15000
#define DEMO_MODEL "mlp:784-256-128-10"
#define DEMO_WORKERS 4
#define DEMO_SHARDS 2
#define DEMO_BATCH 64
#define DEMO_LR 0.05
#define DEMO_MOMENTUM 0.9
#define DEMO_TARGET 0.88
#define DEMO_MAX_EPOCHS 30

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int mkdir_p(const char *path, mode_t mode)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return mkdir(p, mode) != 0 && errno != EEXIST ? -1 : 0;
}

/* 1 if url answers GET /api/health within wait_ms. */
static int health_ok(const char *url, int wait_ms)
{
    struct smltctl t = {.quiet_http = 1, .resolved = 1};
    snprintf(t.url, sizeof t.url, "%s", url);
    for (int waited = 0;; waited += 100) {
        long status = 0;
        struct smltctl_buf out = {0};
        int rc = smltctl_http(&t, "GET", "/api/health", NULL, 5, &status, &out, NULL);
        smltctl_buf_free(&out);
        if (rc == SMLTCTL_OK && status == 200)
            return 1;
        if (waited >= wait_ms)
            return 0;
        sleep_ms(100);
    }
}

/* Prints the last lines of a log file on stderr (after a failed start). */
static void print_log_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char ring[16][512];
    int n = 0;
    while (fgets(ring[n % 16], sizeof ring[0], f))
        n++;
    fclose(f);
    int from = n > lines ? n - lines : 0;
    if (from < n - 16)
        from = n - 16;
    for (int i = from; i < n; i++)
        fprintf(stderr, "  | %s", ring[i % 16]);
}

static void random_hex(char *out, size_t bytes)
{
    unsigned char r[64];
    if (bytes > sizeof r)
        bytes = sizeof r;
    size_t got = 0;
    while (got < bytes) {
        ssize_t n = getrandom(r + got, bytes - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            abort(); /* no kernel randomness: never fall back to a guessable token */
        got += (size_t)n;
    }
    for (size_t i = 0; i < bytes; i++)
        sprintf(out + 2 * i, "%02x", r[i]);
}

/* Forks the coordinator into its own session. Returns its pid or -1. */
static pid_t spawn_coordinator(const char *const *argv, const char *log, const char *token)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* The child: no controlling terminal, stdin from /dev/null, output to the log, nothing else
     * of ours open, default signal dispositions. */
    setsid();
    int in = open("/dev/null", O_RDONLY);
    int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in < 0 || out < 0)
        _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    alarm(0);
    setenv("SMLT_ADMIN_TOKEN", token, 1);
    execv(argv[0], (char *const *)argv);
    fprintf(stderr, "smltctl up: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int smltctl_cluster_up(struct smltctl *c, const char *const *extra, int quiet)
{
    struct smltctl_cluster cl;
    char cj[PATH_MAX + 64];
    snprintf(cj, sizeof cj, "%s", smltctl_state_path(c, "cluster.json"));
    int rc = smltctl_cluster_read(c, &cl);
    if (rc == SMLTCTL_ERR)
        return rc;
    if (rc == 0) {
        if (smltctl_coordinator_alive(cl.pid)) {
            if (!health_ok(cl.url, 3000)) {
                smltctl_err("a coordinator (pid %d) is running for %s but does not answer at %s; "
                            "see %s, or stop it with `smltctl down`",
                            (int)cl.pid, c->state_dir, cl.url, cl.log);
                return SMLTCTL_UNREACHABLE;
            }
            if (c->json) {
                json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:b}", "url", cl.url, "pid",
                                      (json_int_t)cl.pid, "log", cl.log, "data_dir", cl.data_dir,
                                      "already_up", 1);
                smltctl_print_json(o);
                json_decref(o);
            } else {
                printf("a local cluster is already up: API %s/api (coordinator pid %d, log %s)\n",
                       cl.url, (int)cl.pid, cl.log);
            }
            return SMLTCTL_OK;
        }
        if (!quiet)
            fprintf(stderr, "smltctl: the cluster recorded in %s is gone (pid %d); starting a new "
                            "one\n", cj, (int)cl.pid);
        unlink(cj);
    }
    if (mkdir_p(c->state_dir, 0700) != 0) {
        smltctl_err("cannot create the state directory %s: %s (set SMLT_HOME to another place)",
                    c->state_dir, strerror(errno));
        return SMLTCTL_ERR;
    }
    memset(&cl, 0, sizeof cl);
    snprintf(cl.log, sizeof cl.log, "%s", smltctl_state_path(c, "coordinator.log"));
    snprintf(cl.data_dir, sizeof cl.data_dir, "%s", smltctl_state_path(c, "data"));
    char port_file[PATH_MAX + 64], bin[PATH_MAX + 64];
    snprintf(port_file, sizeof port_file, "%s", smltctl_state_path(c, "coordinator.port"));
    snprintf(bin, sizeof bin, "%s/smlt-coordinator", smlt_proc_self_dir());
    if (access(bin, X_OK) != 0) {
        smltctl_err("cannot find the coordinator: %s is missing (smltctl runs the smlt-coordinator "
                    "that sits next to it; build both with `make -C build`)", bin);
        return SMLTCTL_ERR;
    }
    unlink(port_file);
    random_hex(cl.token, 32);
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    argv[n++] = "--data-dir";
    argv[n++] = cl.data_dir;
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = spawn_coordinator(argv, cl.log, cl.token);
    if (pid < 0) {
        smltctl_err("cannot start the coordinator: %s", strerror(errno));
        return SMLTCTL_ERR;
    }
    int port = smlt_proc_wait_port(pid, port_file, UP_PORT_WAIT_MS);
    if (port <= 0) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            smltctl_err("the coordinator did not report its port within %d s; its log %s ends:",
                        UP_PORT_WAIT_MS / 1000, cl.log);
        } else {
            smltctl_err("the coordinator exited while starting (%s %d); its log %s ends:",
                        WIFEXITED(st) ? "status" : "signal",
                        WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), cl.log);
        }
        print_log_tail(cl.log, 8);
        return SMLTCTL_ERR;
    }
    cl.pid = pid;
    snprintf(cl.url, sizeof cl.url, "http://127.0.0.1:%d", port);
    if (!health_ok(cl.url, UP_HEALTH_WAIT_MS)) {
        smlt_proc_stop(pid, 5000);
        smltctl_err("the coordinator started but %s/api/health does not answer; its log %s ends:",
                    cl.url, cl.log);
        print_log_tail(cl.log, 8);
        return SMLTCTL_ERR;
    }
    if (smltctl_cluster_write(c, &cl) != 0) {
        smlt_proc_stop(pid, 5000);
        return SMLTCTL_ERR;
    }
    if (c->json) {
        json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:b}", "url", cl.url, "pid", (json_int_t)pid,
                              "log", cl.log, "data_dir", cl.data_dir, "already_up", 0);
        smltctl_print_json(o);
        json_decref(o);
    } else if (quiet) {
        printf("started a local cluster: API %s/api, log %s\n", cl.url, cl.log);
    } else {
        printf("SMLT local cluster is up.\n"
               "  API        %s/api   (Prometheus metrics: %s/metrics)\n"
               "  log        %s\n"
               "  job data   %s   (journals, job logs, models)\n"
               "  pid        %d\n"
               "  token      in %s (mode 0600)\n"
               "Next: `smltctl demo`, or `smltctl submit SPEC.json`; `smltctl down` stops it.\n",
               cl.url, cl.url, cl.log, cl.data_dir, (int)pid, cj);
    }
    return SMLTCTL_OK;
}

int smltctl_cmd_up(struct smltctl *c, int argc, char **argv)
{
    const char *extra[24];
    int n = 0;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int r = smltctl_global_opt(c, argc, argv, &i);
        if (r < 0)
            return SMLTCTL_USAGE;
        if (r > 0)
            continue;
        if (!strcmp(argv[i], "--no-memory-limit") || !strcmp(argv[i], "--openfaas-async")) {
            extra[n++] = argv[i];
            continue;
        }
        /* The runtime's, and the platform's: they go to the coordinator as they are. */
        const char *flags[] = {"--concurrency", "--keep-warm",     "--log-level",
                               "--platform",    "--function",      "--gateway",
                               "--function-url", "--region",       "--qualifier",
                               "--lambda-endpoint", "--callback-url"};
        const int nflags = (int)(sizeof flags / sizeof flags[0]);
        int matched = 0;
        for (int k = 0; k < nflags && !matched && n < 22; k++) {
            r = smltctl_opt(argc, argv, &i, flags[k], &v);
            if (r < 0)
                return SMLTCTL_USAGE;
            if (r > 0) {
                extra[n++] = flags[k];
                extra[n++] = v;
                matched = 1;
            }
        }
        if (!matched)
            return smltctl_usage_error("up", "unexpected argument %s", argv[i]);
    }
    extra[n] = NULL;
    if (c->url_flag)
        return smltctl_usage_error("up", "--url names a coordinator elsewhere; `up` starts a "
                                         "local one");
    return smltctl_cluster_up(c, extra, 0);
}

int smltctl_cmd_down(struct smltctl *c, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        int r = smltctl_global_opt(c, argc, argv, &i);
        if (r < 0)
            return SMLTCTL_USAGE;
        if (r == 0)
            return smltctl_usage_error("down", "unexpected argument %s", argv[i]);
    }
    struct smltctl_cluster cl;
    char cj[PATH_MAX + 64];
    snprintf(cj, sizeof cj, "%s", smltctl_state_path(c, "cluster.json"));
    int rc = smltctl_cluster_read(c, &cl);
    if (rc == SMLTCTL_NOTFOUND) {
        printf("no local cluster is up (no %s); nothing to stop\n", cj);
        return SMLTCTL_OK;
    }
    if (rc)
        return rc;
    if (!smltctl_coordinator_alive(cl.pid)) {
        unlink(cj);
        printf("the local cluster's coordinator (pid %d) was not running any more; removed %s\n",
               (int)cl.pid, cj);
        return SMLTCTL_OK;
    }
    if (kill(cl.pid, SIGTERM) != 0) {
        smltctl_err("cannot stop the coordinator (pid %d): %s", (int)cl.pid, strerror(errno));
        return SMLTCTL_ERR;
    }
    /* It saves the models of running jobs on its way out: give it time, then insist. */
    int waited = 0;
    while (smltctl_coordinator_alive(cl.pid) && waited < DOWN_GRACE_MS) {
        sleep_ms(50);
        waited += 50;
    }
    int killed = 0;
    if (smltctl_coordinator_alive(cl.pid)) {
        kill(cl.pid, SIGKILL);
        killed = 1;
        for (waited = 0; smltctl_coordinator_alive(cl.pid) && waited < 5000; waited += 50)
            sleep_ms(50);
        if (smltctl_coordinator_alive(cl.pid)) {
            smltctl_err("the coordinator (pid %d) does not stop even on SIGKILL", (int)cl.pid);
            return SMLTCTL_ERR;
        }
    }
    unlink(cj);
    unlink(smltctl_state_path(c, "coordinator.port"));
    printf("stopped the local cluster (coordinator pid %d%s); its jobs' history stays in %s\n",
           (int)cl.pid, killed ? ", killed after 15 s" : "", cl.data_dir);
    return SMLTCTL_OK;
}

int smltctl_cmd_demo(struct smltctl *c, int argc, char **argv)
{
    const char *data = SMLTCTL_DEMO_DATA, *platform = NULL;
    long long max_epochs = DEMO_MAX_EPOCHS;
    double target = DEMO_TARGET;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int r = smltctl_global_opt(c, argc, argv, &i);
        if (r < 0)
            return SMLTCTL_USAGE;
        if (r > 0)
            continue;
        if ((r = smltctl_opt(argc, argv, &i, "--data", &v)) != 0) {
            if (r < 0)
                return SMLTCTL_USAGE;
            data = v;
        } else if ((r = smltctl_opt(argc, argv, &i, "--max-epochs", &v)) != 0) {
            if (r < 0 || smltctl_parse_long("--max-epochs", v, 1, 10000, &max_epochs))
                return SMLTCTL_USAGE;
        } else if ((r = smltctl_opt(argc, argv, &i, "--platform", &v)) != 0) {
            if (r < 0)
                return SMLTCTL_USAGE;
            platform = v;
        } else if ((r = smltctl_opt(argc, argv, &i, "--target", &v)) != 0) {
            if (r < 0 || smltctl_parse_double("--target", v, &target))
                return SMLTCTL_USAGE;
            if (target <= 0 || target > 1)
                return smltctl_usage_error("demo", "--target: want an accuracy in (0, 1]");
        } else {
            return smltctl_usage_error("demo", "unexpected argument %s", argv[i]);
        }
    }
    char abs_data[PATH_MAX];
    if (data[0] != '/' && !strstr(data, "://")) {
        if (!realpath(data, abs_data)) {
            smltctl_err("--data: %s: %s", data, strerror(errno));
            return SMLTCTL_ERR;
        }
        data = abs_data;
    }
    int local = !c->url_flag && !(getenv("SMLT_URL") && *getenv("SMLT_URL"));
    if (local && !strstr(data, "://")) {
        char f[PATH_MAX + 64], g[PATH_MAX + 64];
        snprintf(f, sizeof f, "%s/train-images-idx3-ubyte.gz", data);
        snprintf(g, sizeof g, "%s/train-images-idx3-ubyte", data);
        if (access(f, R_OK) != 0 && access(g, R_OK) != 0) {
            smltctl_err("Fashion-MNIST is not in %s: install it with `apt install "
                        "dataset-fashion-mnist`, or pass --data DIR",
                        data);
            return SMLTCTL_ERR;
        }
    }
    if (!c->json)
        printf("[1/3] local cluster\n");
    if (local) {
        int rc = smltctl_cluster_up(c, NULL, 1);
        if (rc)
            return rc;
    } else if (!c->json) {
        printf("using the coordinator at %s\n", c->url_flag ? c->url_flag : getenv("SMLT_URL"));
    }
    json_t *spec = json_pack("{s:s, s:s, s:s, s:i, s:i, s:s, s:i, s:{s:s, s:f, s:f}, s:f, s:I}",
                             "name", "fashion-mnist-mlp-demo", "model", DEMO_MODEL, "dataset", data,
                             "workers", DEMO_WORKERS, "shards", DEMO_SHARDS, "sync", "bsp",
                             "batch_size", DEMO_BATCH, "optimizer", "kind", "momentum", "lr",
                             DEMO_LR, "momentum", DEMO_MOMENTUM, "target_accuracy", target,
                             "max_epochs", (json_int_t)max_epochs);
    if (platform)
        json_object_set_new(spec, "platform", json_pack("{s:s}", "kind", platform));
    json_t *resp = NULL;
    int rc = smltctl_api(c, "POST", "/api/jobs", spec, &resp, NULL);
    json_decref(spec);
    if (rc)
        return rc;
    char id[128];
    snprintf(id, sizeof id, "%s", smltctl_jstr(resp, "id"));
    json_decref(resp);
    if (!c->json) {
        printf("[2/3] submitted %s: Fashion-MNIST MLP (%s) on %d function workers and %d "
               "parameter-server shards, BSP, momentum %.2g, lr %g, batch %d per worker; until "
               "%.1f%% test accuracy (at most %lld epochs)\n",
               id, DEMO_MODEL, DEMO_WORKERS, DEMO_SHARDS, DEMO_MOMENTUM, DEMO_LR, DEMO_BATCH,
               target * 100, max_epochs);
        printf("[3/3] watching %s (Ctrl-C stops watching, not the job)\n", id);
        fflush(stdout);
    }
    rc = smltctl_watch_job(c, id, 0.5);
    if (!c->json && rc != SMLTCTL_UNREACHABLE)
        printf("\nThe cluster keeps running. Next:\n"
               "  smltctl status %s          the job in detail (--json for scripts)\n"
               "  smltctl logs %s            what the coordinator and the workers did\n"
               "  smltctl model %s -o mlp.smlt   the trained model\n"
               "  smltctl down                    stop the cluster\n",
               id, id, id);
    return rc;
}

/* `smltctl dashboard`: where the dashboard is, and how to log in to it. */
int smltctl_cmd_dashboard(struct smltctl *c, int argc, char **argv)
{
    int show = 0;
    for (int i = 0; i < argc; i++) {
        int r = smltctl_global_opt(c, argc, argv, &i);
        if (r < 0)
            return SMLTCTL_USAGE;
        if (r == 1)
            continue;
        if (!strcmp(argv[i], "--show-token"))
            show = 1;
        else
            return smltctl_usage_error("dashboard", "unexpected argument %s", argv[i]);
    }
    int rc = smltctl_resolve(c);
    if (rc)
        return rc;
    json_t *h = NULL;
    rc = smltctl_api(c, "GET", "/api/health", NULL, &h, "the coordinator");
    json_decref(h);
    if (rc)
        return rc;
    struct smltctl_cluster cl;
    int local = smltctl_cluster_read(c, &cl) == 0 && c->token[0] && !strcmp(cl.token, c->token);
    if (c->json) {
        json_t *o = json_pack("{s:s, s:s, s:b}", "url", c->url, "login",
                              "paste the admin token into the page's \"Admin token\" field",
                              "token_known", c->token[0] != 0);
        if (o && show && c->token[0])
            json_object_set_new(o, "token", json_string(c->token));
        smltctl_print_json(o);
        json_decref(o);
        return SMLTCTL_OK;
    }
    printf("Open %s/ in a browser.\n\n", c->url);
    printf("Reading needs no login on loopback. To submit, cancel, scale, checkpoint or download\n"
           "models, log in with the admin token: paste it into the \"Admin token\" field at the\n"
           "top of the page. It stays in that browser tab only (never in a URL).\n");
    if (show && c->token[0])
        printf("\nThe admin token: %s\n", c->token);
    else if (local)
        printf("\nThis local cluster's token is \"token\" in %s (mode 0600);\n"
               "`smltctl dashboard --show-token` prints it.\n",
               smltctl_state_path(c, "cluster.json"));
    else if (c->token[0])
        printf("\nUse the token you passed with --token or SMLT_TOKEN.\n");
    else
        printf("\nAsk the coordinator's operator for its admin token (--admin-token-file, or\n"
               "DATA_DIR/admin-token where it generated one).\n");
    printf("\nFrom another machine, forward the port first: ssh -L PORT:127.0.0.1:PORT HOST.\n");
    return SMLTCTL_OK;
}
