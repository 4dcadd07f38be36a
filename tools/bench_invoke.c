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

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench_cluster.h"

struct figures {
    const char *name;
    char id[64];
    double elapsed_s, overhead, cold_start_s, warm_start_s, init_s, acc, cost;
    long long total, cold, warm, lost, steps;
    int ok;
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
    struct bench_cluster cl;
    if (bench_cluster_up(&cl) != 0)
        return 1;
    int rc = 1;
    struct figures demo = {.name = "demo"}, cut = {.name = "cut-3s"};
    const char *dargs[] = {"demo", "--data", data, NULL};
    int drc = bench_cluster_ctl(&cl, dargs, NULL);
    char *out = NULL;
    json_t *j = NULL;
    if (bench_cluster_newest(&cl, demo.id, sizeof demo.id) == 0) {
        const char *st[] = {"status", demo.id, "--json", NULL};
        if (bench_cluster_ctl(&cl, st, &out) == 0 && out) {
            json_error_t je;
            j = json_loads(out, 0, &je);
        }
        free(out);
    }
    if (!j) {
        fprintf(stderr, "smlt-bench invoke: cannot read the demo job (smltctl demo exit %d)\n", drc);
        goto down;
    }
    take(j, &demo);
    json_decref(j);
    print(&demo, json);
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"name\":\"cut-3s\",\"model\":\"mlp:784-256-128-10\",\"dataset\":\"%s\","
             "\"epochs\":3,\"workers\":2,\"shards\":1,\"platform\":{\"time_limit_s\":3}}",
             data);
    if (bench_cluster_submit(&cl, spec, cut.id, sizeof cut.id) != 0 ||
        !(j = bench_cluster_wait(&cl, cut.id))) {
        fprintf(stderr, "smlt-bench invoke: the time-limited job did not run\n");
        goto down;
    }
    take(j, &cut);
    json_decref(j);
    print(&cut, json);
    if (!json)
        printf("target: the demo job spends under 10%% of its time outside training steps: %s\n",
               demo.overhead < 0.10 ? "met" : "missed");
    rc = demo.ok && cut.ok ? 0 : 1;
down:
    bench_cluster_down(&cl);
    return rc;
}
