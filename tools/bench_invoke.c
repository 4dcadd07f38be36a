/* bench_invoke.c: `smlt-bench invoke`: what it costs to run training on function invocations.
 *
 * Runs the system the way people do, through `smltctl` against a local cluster it starts in a
 * private state directory (and stops, by the cluster's pid, through `smltctl down`):
 *   1. the demo job (Fashion-MNIST MLP to 88% on 4 workers and 2 shards), and reports the share
 *      of its time spent outside training steps (target: under 10%), with the cold and warm
 *      start latency of its invocations;
 *   2. the same model with a 3 s function time limit, so every worker is cut and continued many
 *      times on warm instances: warm start latency over many invocations.
 * Cold start: from the coordinator invoking to the worker asking for its work (a new process),
 * plus the worker's initialization (loading the dataset, building the model, connecting).
 * Warm start: the same on an instance that kept all of that. */
#include "bench_invoke.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "smlt_log.h"
#include "smlt_proc.h"

#define OUT_MAX (4u << 20)

/* Runs argv with SMLT_HOME=home; stdout captured into *out (malloc'd, NUL-terminated) unless
 * out is NULL (then it goes to stderr, so progress stays visible). Returns the exit status. */
static int run(const char *home, const char *const *argv, char **out)
{
    int p[2] = {-1, -1};
    if (out && pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setenv("SMLT_HOME", home, 1);
        if (out) {
            dup2(p[1], 1);
            close(p[0]);
            close(p[1]);
        } else {
            dup2(2, 1);
        }
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (out) {
        close(p[1]);
        size_t cap = 65536, len = 0;
        char *b = malloc(cap);
        for (;;) {
            if (len + 4096 > cap && cap < OUT_MAX) {
                cap *= 2;
                b = realloc(b, cap);
            }
            ssize_t k = b ? read(p[0], b + len, cap - len - 1) : -1;
            if (k <= 0)
                break;
            len += (size_t)k;
        }
        close(p[0]);
        if (b)
            b[len] = '\0';
        *out = b;
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

struct figures {
    const char *name;
    char id[64];
    double elapsed_s, overhead, cold_start_s, warm_start_s, init_s, acc, cost;
    long long total, cold, warm, lost, steps;
    int ok;
};

static int job_figures(const char *home, const char *ctl, const char *id, struct figures *f)
{
    char *out = NULL;
    const char *argv[] = {ctl, "status", id, "--json", NULL};
    if (run(home, argv, &out) != 0 || !out) {
        free(out);
        return -1;
    }
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    free(out);
    if (!j)
        return -1;
    json_t *inv = json_object_get(j, "invocations");
    f->elapsed_s = json_number_value(json_object_get(j, "elapsed_s"));
    f->overhead = json_number_value(json_object_get(j, "overhead_share"));
    f->acc = json_number_value(json_object_get(j, "test_accuracy"));
    f->cost = json_number_value(json_object_get(j, "cost_usd"));
    f->steps = json_integer_value(json_object_get(j, "step"));
    f->total = json_integer_value(json_object_get(inv, "total"));
    f->cold = json_integer_value(json_object_get(inv, "cold"));
    f->warm = json_integer_value(json_object_get(inv, "warm"));
    f->lost = json_integer_value(json_object_get(inv, "lost"));
    f->cold_start_s = json_number_value(json_object_get(inv, "cold_start_s"));
    f->warm_start_s = json_number_value(json_object_get(inv, "warm_start_s"));
    double init = json_number_value(json_object_get(inv, "init_s"));
    f->init_s = f->cold ? init / (double)f->cold : 0;
    const char *st = json_string_value(json_object_get(j, "state"));
    f->ok = st && !strcmp(st, "succeeded");
    json_decref(j);
    return 0;
}

/* The id of the newest job. */
static int newest_job(const char *home, const char *ctl, char *id, size_t len)
{
    char *out = NULL;
    const char *argv[] = {ctl, "status", "--json", NULL};
    if (run(home, argv, &out) != 0 || !out) {
        free(out);
        return -1;
    }
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    free(out);
    json_t *jobs = json_is_array(j) ? j : json_object_get(j, "jobs");
    const char *best = NULL;
    for (size_t i = 0; i < json_array_size(jobs); i++) {
        const char *x = json_string_value(json_object_get(json_array_get(jobs, i), "id"));
        if (x && (!best || strcmp(x, best) > 0))
            best = x;
    }
    if (best)
        snprintf(id, len, "%s", best);
    json_decref(j);
    return best ? 0 : -1;
}

static void print(const struct figures *f, int json)
{
    if (json) {
        printf("{\"case\":\"invoke\",\"job\":\"%s\",\"succeeded\":%s,\"elapsed_s\":%.3f,"
               "\"overhead_share\":%.4f,\"invocations\":%lld,\"cold\":%lld,\"warm\":%lld,"
               "\"lost\":%lld,\"cold_start_s\":%.4f,\"cold_init_s\":%.4f,\"warm_start_s\":%.5f,"
               "\"test_accuracy\":%.4f,\"cost_usd\":%.6f,\"steps\":%lld}\n",
               f->name, f->ok ? "true" : "false", f->elapsed_s, f->overhead, f->total, f->cold,
               f->warm, f->lost, f->cold_start_s, f->init_s, f->warm_start_s, f->acc, f->cost,
               f->steps);
    } else {
        printf("%-10s %s: %.1f s, %lld invocations (%lld cold, %lld warm, %lld lost); cold start "
               "%.1f ms + %.2f s init, warm start %.2f ms; outside training steps %.1f%%; test "
               "accuracy %.4f; $%.6f\n",
               f->name, f->ok ? "ok" : "FAILED", f->elapsed_s, f->total, f->cold, f->warm,
               f->lost, f->cold_start_s * 1e3, f->init_s, f->warm_start_s * 1e3,
               100 * f->overhead, f->acc, f->cost);
    }
    fflush(stdout);
}

int bench_invoke_main(int argc, char **argv)
{
    static const struct option lo[] = {{"json", no_argument, 0, 'j'},
                                       {"data", required_argument, 0, 'd'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int json = 0, c;
    const char *data = "/usr/share/datasets/fashion-mnist";
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'd': data = optarg; break;
        case 'h':
            printf("usage: smlt-bench invoke [--json] [--data DIR]\n"
                   "Run the demo job and a job cut by a 3 s function time limit on a private local\n"
                   "cluster; report cold vs warm start latency and the share of the job's time\n"
                   "spent outside training steps.\n");
            return 0;
        default: return 2;
        }
    }
    char home[] = "/tmp/smlt-bench-invoke.XXXXXX";
    if (!mkdtemp(home)) {
        perror("mkdtemp");
        return 1;
    }
    char ctl[1024];
    snprintf(ctl, sizeof ctl, "%s/smltctl", smlt_proc_self_dir());
    int rc = 1;
    const char *up[] = {ctl, "up", NULL};
    if (run(home, up, NULL) != 0) {
        fprintf(stderr, "smlt-bench invoke: smltctl up failed\n");
        goto out;
    }
    struct figures demo = {.name = "demo"}, cut = {.name = "cut-3s"};
    const char *demo_argv[] = {ctl, "demo", "--data", data, NULL};
    int drc = run(home, demo_argv, NULL);
    if (newest_job(home, ctl, demo.id, sizeof demo.id) || job_figures(home, ctl, demo.id, &demo)) {
        fprintf(stderr, "smlt-bench invoke: cannot read the demo job (smltctl demo exit %d)\n", drc);
        goto down;
    }
    print(&demo, json);
    char *out = NULL;
    const char *sub[] = {ctl, "submit", "--model", "mlp:784-256-128-10", "--data", data,
                         "--epochs", "3", "--workers", "2", "--shards", "1", "--time-limit", "3",
                         NULL};
    if (run(home, sub, &out) != 0 || !out) {
        fprintf(stderr, "smlt-bench invoke: submit failed\n");
        free(out);
        goto down;
    }
    snprintf(cut.id, sizeof cut.id, "%.*s", (int)strcspn(out, "\r\n"), out);
    free(out);
    const char *watch[] = {ctl, "watch", cut.id, NULL};
    run(home, watch, NULL);
    if (job_figures(home, ctl, cut.id, &cut)) {
        fprintf(stderr, "smlt-bench invoke: cannot read job %s\n", cut.id);
        goto down;
    }
    print(&cut, json);
    if (!json)
        printf("target: the demo job spends under 10%% of its time outside training steps: %s\n",
               demo.overhead < 0.10 ? "met" : "missed");
    rc = demo.ok && cut.ok ? 0 : 1;
down:;
    const char *dn[] = {ctl, "down", NULL};
    run(home, dn, NULL);
out:;
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    if (system(cmd) != 0)
        fprintf(stderr, "smlt-bench invoke: could not remove %s\n", home);
    return rc;
}
