/* bench_invoke.c: `smlt-bench invoke`: what it costs to run training on function invocations,
 * on each platform backend of the coordinator.
 *
 * Runs the system the way people do, through `smltctl` against a cluster it starts in a
 * private state directory (and stops, by the cluster's pid, through `smltctl down`):
 *   1. the demo job (Fashion-MNIST MLP to 88% on 4 workers and 2 shards), and reports the share
 *      of its time spent outside training steps (target: under 10%), with the cold and warm
 *      start latency of its invocations;
 *   2. the same model for 8 epochs with a 3 s function time limit, so every worker is cut and
 *      continued several times on warm instances: warm start latency over many invocations.
 * Cold start: from the coordinator invoking to the worker asking for its work (a new process),
 * plus the worker's initialization (loading the dataset, building the model, connecting).
 * Warm start: the same on an instance that kept all of that.
 *
 * --platform picks the backend (local, openfaas, openfaas-async, knative, lambda, or all of
 * them in one run).
 * Given a platform's endpoint (--gateway, --function-url, --lambda-endpoint), the bench drives
 * that deployment. Without one it runs the platform's stand-in on loopback, so that the
 * coordinator's real backend and the worker's real bootstrap mode are what is measured:
 *   - openfaas, knative: two `smlt-worker --http` instances (2 invocations at once each) behind
 *     tools/bench_gateway.c (POST /function/smlt-worker, /async-function/smlt-worker with
 *     callbacks to the coordinator, or POST /);
 *   - lambda: the project's Invoke API emulator (tests/tools/lambda_emulator.py, with Debian's
 *     python3-botocore), which checks each request's SigV4 signature and runs smlt-worker as
 *     the function's `bootstrap` through the Runtime API.
 * Everything started is stopped by its pid. */
#include "bench_invoke.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "bench_cluster.h"
#include "bench_gateway.h"
#include "smlt_proc.h"

#define STAND_IN_INST 2  /* worker instances behind the gateway */
#define STAND_IN_SLOTS 2 /* invocations each takes at once: the demo's 4 workers fit */
#define STAND_IN_WAIT_MS 30000
#define LAMBDA_FUNCTION "smlt-worker"
#define LAMBDA_REGION "us-east-1"

struct figures {
    char name[48];
    char id[64];
    double elapsed_s, overhead, cold_start_s, warm_start_s, init_s, acc, cost;
    long long total, cold, warm, lost, steps;
    int ok;
};

/* What the user gave about the platforms' endpoints (NULL: run the stand-in). */
struct endpoints {
    const char *gateway, *function, *function_url, *lambda_endpoint, *region, *qualifier;
};

/* The stand-in of one platform, while it runs. */
struct stand_in {
    char dir[64];
    pid_t inst[STAND_IN_INST];
    int ports[STAND_IN_INST];
    struct bench_gateway *gw;
    pid_t emu;
    char url[128];
};

static void take(const json_t *j, struct figures *f)
{
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
}

static void print(const struct figures *f, const char *platform, int json)
{
    if (json) {
        printf("{\"case\":\"invoke\",\"platform\":\"%s\",\"job\":\"%s\",\"succeeded\":%s,"
               "\"elapsed_s\":%.3f,\"overhead_share\":%.4f,\"invocations\":%lld,\"cold\":%lld,"
               "\"warm\":%lld,\"lost\":%lld,\"cold_start_s\":%.4f,\"cold_init_s\":%.4f,"
               "\"warm_start_s\":%.5f,\"test_accuracy\":%.4f,\"cost_usd\":%.6f,\"steps\":%lld}\n",
               platform, f->name, f->ok ? "true" : "false", f->elapsed_s, f->overhead, f->total,
               f->cold, f->warm, f->lost, f->cold_start_s, f->init_s, f->warm_start_s, f->acc,
               f->cost, f->steps);
    } else {
        printf("%-8s %-6s %s: %.1f s, %lld invocations (%lld cold, %lld warm, %lld lost); cold "
               "start %.1f ms + %.2f s init, warm start %.2f ms; outside training steps %.1f%%; "
               "test accuracy %.4f; $%.6f\n",
               platform, f->name, f->ok ? "ok" : "FAILED", f->elapsed_s, f->total, f->cold,
               f->warm, f->lost, f->cold_start_s * 1e3, f->init_s, f->warm_start_s * 1e3,
               100 * f->overhead, f->acc, f->cost);
    }
    fflush(stdout);
}

/* ---- stand-ins ---------------------------------------------------------------------------- */

static void stand_in_stop(struct stand_in *s)
{
    if (s->gw)
        bench_gateway_stop(s->gw, NULL);
    s->gw = NULL;
    for (int i = 0; i < STAND_IN_INST; i++)
        if (s->inst[i] > 0)
            smlt_proc_stop(s->inst[i], 5000);
    if (s->emu > 0)
        smlt_proc_stop(s->emu, 5000);
    memset(s->inst, 0, sizeof s->inst);
    s->emu = 0;
    if (s->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "smlt-bench invoke: could not remove %s\n", s->dir);
        s->dir[0] = '\0';
    }
}

/* Starts prog with args (argv[0] excluded, NULL-terminated) logging to DIR/log_name and waits
 * for the port it writes to DIR/port_name (the args name that file). Returns the pid (the port
 * in *port) or -1. */
static pid_t spawn_port(struct stand_in *s, const char *const *argv, const char *log_name,
                        const char *port_file, int *port)
{
    char log[128];
    snprintf(log, sizeof log, "%s/%s", s->dir, log_name);
    struct smlt_proc_opts o = {.log_path = log, .die_with_parent = 1};
    pid_t pid = smlt_proc_spawn(argv, &o);
    if (pid < 0) {
        fprintf(stderr, "smlt-bench invoke: cannot start %s\n", argv[0]);
        return -1;
    }
    *port = smlt_proc_wait_port(pid, port_file, STAND_IN_WAIT_MS);
    if (*port <= 0) {
        fprintf(stderr, "smlt-bench invoke: %s did not start (its log: %s)\n", argv[0], log);
        smlt_proc_stop(pid, 2000);
        return -1;
    }
    return pid;
}

/* The openfaas or knative stand-in: the worker instances and the gateway (async: OpenFaaS's
 * /async-function with its queue and callbacks). */
static int http_stand_in(struct stand_in *s, const char *path, int async)
{
    char worker[PATH_MAX], slots[8];
    snprintf(worker, sizeof worker, "%s/smlt-worker", smlt_proc_self_dir());
    snprintf(slots, sizeof slots, "%d", STAND_IN_SLOTS);
    for (int i = 0; i < STAND_IN_INST; i++) {
        char pf[128], log[32];
        snprintf(pf, sizeof pf, "%s/inst%d.port", s->dir, i);
        snprintf(log, sizeof log, "inst%d.log", i);
        const char *argv[] = {worker, "--http", "--listen", "127.0.0.1:0", "--port-file", pf,
                              "--max-inflight", slots, NULL};
        if ((s->inst[i] = spawn_port(s, argv, log, pf, &s->ports[i])) < 0)
            return -1;
    }
    char err[200];
    struct bench_gateway_opts o = {.path = path, .ports = s->ports, .n = STAND_IN_INST,
                                   .slots = STAND_IN_SLOTS, .async = async};
    s->gw = bench_gateway_start(&o, err, sizeof err);
    if (!s->gw) {
        fprintf(stderr, "smlt-bench invoke: %s\n", err);
        return -1;
    }
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", bench_gateway_port(s->gw));
    return 0;
}

/* The lambda stand-in: the project's emulator, with smlt-worker as the function's bootstrap,
 * and the credentials it checks signatures with (also the coordinator's: it inherits them). */
static int lambda_stand_in(struct stand_in *s)
{
    char script[PATH_MAX], worker[PATH_MAX], pf[128];
    const char *src = getenv("SMLT_SOURCE_DIR");
    snprintf(script, sizeof script, "%s/tests/tools/lambda_emulator.py",
             src && *src ? src : SMLT_SOURCE_DIR_DEFAULT);
    snprintf(worker, sizeof worker, "%s/smlt-worker", smlt_proc_self_dir());
    snprintf(pf, sizeof pf, "%s/emulator.port", s->dir);
    if (access(script, R_OK) != 0 || access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "smlt-bench invoke: the Lambda emulator needs %s and /usr/bin/python3 "
                        "with python3-botocore (or give --lambda-endpoint)\n", script);
        return -1;
    }
    setenv("AWS_ACCESS_KEY_ID", "AKIDSMLTBENCH", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "smlt-bench-secret", 1);
    unsetenv("AWS_SESSION_TOKEN");
    /* The emulator takes the credentials it checks from its environment, as the coordinator
     * takes the ones it signs with. */
    const char *argv[] = {"/usr/bin/python3", script, "--port-file", pf, "--bootstrap", worker,
                          "--function", LAMBDA_FUNCTION, "--region", LAMBDA_REGION, NULL};
    int port;
    if ((s->emu = spawn_port(s, argv, "emulator.log", pf, &port)) < 0)
        return -1;
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", port);
    return 0;
}

/* The `smltctl up` arguments for platform p, starting its stand-in where no endpoint is given.
 * Returns 0 or -1. */
static int platform_args(const char *p, const struct endpoints *e, struct stand_in *s,
                         const char **args)
{
    int n = 0;
    if (strcmp(p, "local")) {
        snprintf(s->dir, sizeof s->dir, "/tmp/smlt-bench-invoke.XXXXXX");
        if (!mkdtemp(s->dir)) {
            perror("mkdtemp");
            s->dir[0] = '\0';
            return -1;
        }
        args[n++] = "--platform";
        args[n++] = p;
    }
    if (!strcmp(p, "openfaas") || !strcmp(p, "openfaas-async")) {
        const int async = !strcmp(p, "openfaas-async");
        if (!e->gateway && http_stand_in(s, async ? "/async-function/smlt-worker"
                                                  : "/function/smlt-worker", async) != 0)
            return -1;
        args[1] = "openfaas";
        args[n++] = "--gateway";
        args[n++] = e->gateway ? e->gateway : s->url;
        args[n++] = "--function";
        args[n++] = e->function ? e->function : "smlt-worker";
        if (async) /* the callbacks come to the coordinator's --listen address */
            args[n++] = "--openfaas-async";
    } else if (!strcmp(p, "knative")) {
        if (!e->function_url && http_stand_in(s, "/", 0) != 0)
            return -1;
        if (!e->function_url)
            strncat(s->url, "/", sizeof s->url - strlen(s->url) - 1);
        args[n++] = "--function-url";
        args[n++] = e->function_url ? e->function_url : s->url;
    } else if (!strcmp(p, "lambda")) {
        if (!e->lambda_endpoint && lambda_stand_in(s) != 0)
            return -1;
        args[n++] = "--function";
        args[n++] = e->function ? e->function : LAMBDA_FUNCTION;
        args[n++] = "--region";
        args[n++] = e->region ? e->region : LAMBDA_REGION;
        if (e->qualifier) {
            args[n++] = "--qualifier";
            args[n++] = e->qualifier;
        }
        args[n++] = "--lambda-endpoint";
        args[n++] = e->lambda_endpoint ? e->lambda_endpoint : s->url;
    }
    args[n] = NULL;
    return 0;
}

/* ---- one platform ------------------------------------------------------------------------- */

/* The two jobs on platform p. Returns 0 when both succeeded. */
static int run_platform(const char *p, const char *data, const struct endpoints *e, int json,
                        struct figures *demo, struct figures *cut)
{
    snprintf(demo->name, sizeof demo->name, "demo");
    snprintf(cut->name, sizeof cut->name, "cut-3s");
    struct stand_in s = {0};
    const char *args[16];
    if (platform_args(p, e, &s, args) != 0) {
        stand_in_stop(&s);
        return 1;
    }
    struct bench_cluster cl;
    if (bench_cluster_up_with(&cl, args) != 0) {
        stand_in_stop(&s);
        return 1;
    }
    int rc = 1;
    const int local = !strcmp(p, "local");
    const char *kind = strncmp(p, "openfaas", 8) ? p : "openfaas"; /* the jobs' platform.kind */
    const char *dargs[] = {"demo", "--data", data, local ? NULL : "--platform", kind, NULL};
    int drc = bench_cluster_ctl(&cl, dargs, NULL);
    char *out = NULL;
    json_t *j = NULL;
    if (bench_cluster_newest(&cl, demo->id, sizeof demo->id) == 0) {
        const char *st[] = {"status", demo->id, "--json", NULL};
        if (bench_cluster_ctl(&cl, st, &out) == 0 && out) {
            json_error_t je;
            j = json_loads(out, 0, &je);
        }
        free(out);
    }
    if (!j) {
        fprintf(stderr, "smlt-bench invoke: %s: cannot read the demo job (smltctl demo exit %d)\n",
                p, drc);
        goto down;
    }
    take(j, demo);
    json_decref(j);
    print(demo, p, json);
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"name\":\"cut-3s\",\"model\":\"mlp:784-256-128-10\",\"dataset\":\"%s\","
             "\"epochs\":8,\"workers\":2,\"shards\":1,"
             "\"platform\":{\"kind\":\"%s\",\"time_limit_s\":3}}",
             data, kind);
    if (bench_cluster_submit(&cl, spec, cut->id, sizeof cut->id) != 0 ||
        !(j = bench_cluster_wait(&cl, cut->id))) {
        fprintf(stderr, "smlt-bench invoke: %s: the time-limited job did not run\n", p);
        goto down;
    }
    take(j, cut);
    json_decref(j);
    print(cut, p, json);
    rc = demo->ok && cut->ok ? 0 : 1;
down:
    bench_cluster_down(&cl);
    stand_in_stop(&s);
    return rc;
}

int bench_invoke_main(int argc, char **argv)
{
    static const struct option lo[] = {{"json", no_argument, 0, 'j'},
                                       {"data", required_argument, 0, 'd'},
                                       {"platform", required_argument, 0, 'p'},
                                       {"gateway", required_argument, 0, 'g'},
                                       {"function", required_argument, 0, 'f'},
                                       {"function-url", required_argument, 0, 'u'},
                                       {"lambda-endpoint", required_argument, 0, 'l'},
                                       {"region", required_argument, 0, 'r'},
                                       {"qualifier", required_argument, 0, 'q'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int json = 0, c;
    const char *data = "/usr/share/datasets/fashion-mnist", *which = "local";
    struct endpoints e = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'd': data = optarg; break;
        case 'p': which = optarg; break;
        case 'g': e.gateway = optarg; break;
        case 'f': e.function = optarg; break;
        case 'u': e.function_url = optarg; break;
        case 'l': e.lambda_endpoint = optarg; break;
        case 'r': e.region = optarg; break;
        case 'q': e.qualifier = optarg; break;
        case 'h':
            printf("usage: smlt-bench invoke [--json] [--data DIR] [--platform P]\n"
                   "                         [--gateway URL] [--function NAME] [--function-url URL]\n"
                   "                         [--lambda-endpoint URL] [--region R] [--qualifier Q]\n"
                   "Run the demo job and a job cut by a 3 s function time limit on a private\n"
                   "cluster; report cold vs warm start latency and the share of the job's time\n"
                   "spent outside training steps.\n"
                   "  --platform P   local (default), openfaas, openfaas-async (/async-function\n"
                   "                 with callbacks), knative, lambda, or all (each in turn, then\n"
                   "                 a table side by side)\n"
                   "Without an endpoint, each platform runs its stand-in on loopback: worker\n"
                   "--http instances behind a gateway (openfaas, knative), or the project's Lambda\n"
                   "emulator (tests/tools/lambda_emulator.py). With one, that deployment is used\n"
                   "(the coordinator's options of the same names; lambda credentials from the\n"
                   "environment).\n");
            return 0;
        default: return 2;
        }
    }
    static const char *const all[] = {"local", "openfaas", "openfaas-async", "knative",
                                      "lambda"};
    enum { NPLAT = sizeof all / sizeof all[0] };
    const char *list[NPLAT];
    int n = 0;
    if (!strcmp(which, "all")) {
        for (int i = 0; i < NPLAT; i++)
            list[n++] = all[i];
    } else {
        for (int i = 0; i < NPLAT; i++)
            if (!strcmp(which, all[i]))
                list[n++] = all[i];
        if (!n) {
            fprintf(stderr, "smlt-bench invoke: --platform: want local, openfaas, "
                            "openfaas-async, knative, lambda or all, not \"%s\"\n", which);
            return 2;
        }
    }
    struct figures demo[NPLAT], cut[NPLAT];
    int rc = 0;
    memset(demo, 0, sizeof demo);
    memset(cut, 0, sizeof cut);
    for (int i = 0; i < n; i++)
        if (run_platform(list[i], data, &e, json, &demo[i], &cut[i]) != 0)
            rc = 1;
    if (json)
        return rc;
    if (n > 1) {
        /* Cold starts from the demo job (its first invocations), warm ones from the cut job. */
        printf("\n| platform | cold start (demo) | cold init (demo) | warm start (cut-3s) | "
               "outside training steps (demo, cut-3s) | demo job |\n"
               "| --- | --- | --- | --- | --- | --- |\n");
        for (int i = 0; i < n; i++)
            printf("| %s | %.1f ms (%lld) | %.2f s | %.2f ms (%lld) | %.1f%%, %.1f%% | %.1f s%s "
                   "|\n",
                   list[i], demo[i].cold_start_s * 1e3, demo[i].cold, demo[i].init_s,
                   cut[i].warm_start_s * 1e3, cut[i].warm, 100 * demo[i].overhead,
                   100 * cut[i].overhead, demo[i].elapsed_s,
                   demo[i].ok && cut[i].ok ? "" : " (FAILED)");
    }
    for (int i = 0; i < n; i++)
        printf("target: the demo job on %s spends under 10%% of its time outside training "
               "steps: %s\n", list[i], demo[i].ok && demo[i].overhead < 0.10 ? "met" : "missed");
    return rc;
}
