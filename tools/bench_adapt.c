/* bench_adapt.c: `smlt-bench adapt`: the adaptive scheduler deciding a real job's fan-out and
 * shard count on a private local cluster (through smltctl), in three scenarios:
 *   deadline  LeNet-5 starts on 1 worker; its deadline needs more: the job scales out;
 *   budget    the MLP starts on 4 workers; its budget affords fewer: the job scales in;
 *   shards    an MLP on 2 workers and 1 shard whose node has a gigabit network card
 *             (emulated: platform.ps_nic_mbps), so the shard is the bottleneck: the job gets
 *             more shards (resharded live).
 * Each prints the scheduler's decisions as the job's journal records them (the same lines
 * `smltctl status JOB` shows) and whether the deadline / budget was kept. On a 2-core machine
 * shared with other work the outcome depends on the load: the thresholds can be moved with
 * --deadline-scale. */
#include "bench_adapt.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench_cluster.h"

struct scenario {
    const char *name;
    const char *what;
    const char *model;
    unsigned epochs, workers, shards, max_workers, max_shards;
    double deadline_s, budget_usd, lr;
    unsigned nic_mbps; /* the shards' emulated network card, 0: loopback speed */
};

static const struct scenario scenarios[] = {
    {"deadline", "starts on 1 worker; the deadline needs more", "lenet5", 8, 1, 1, 4, 2, 30.0, 0,
     0.02, 0},
    {"budget", "starts on 4 workers; the budget affords fewer", "mlp:784-256-128-10", 10, 4, 2, 4,
     2, 0, 0.0009, 0.05, 0},
    {"shards", "1 shard on a 1 Gbit/s node is the bottleneck", "mlp:784-512-256-10", 3, 2, 1, 2,
     4, 60.0, 0, 0.05, 1000},
};

static int run_one(struct bench_cluster *cl, const struct scenario *sc, const char *data,
                   double dscale, int json)
{
    char spec[2048];
    int n = snprintf(spec, sizeof spec,
                     "{\"name\":\"adapt-%s\",\"model\":\"%s\",\"dataset\":\"%s\",\"epochs\":%u,"
                     "\"workers\":%u,\"shards\":%u,\"max_workers\":%u,\"max_shards\":%u,"
                     "\"optimizer\":{\"kind\":\"momentum\",\"lr\":%g}",
                     sc->name, sc->model, data, sc->epochs, sc->workers, sc->shards,
                     sc->max_workers, sc->max_shards, sc->lr);
    if (sc->deadline_s > 0)
        n += snprintf(spec + n, sizeof spec - (size_t)n, ",\"deadline_s\":%.1f",
                      sc->deadline_s * dscale);
    if (sc->budget_usd > 0)
        n += snprintf(spec + n, sizeof spec - (size_t)n, ",\"budget_usd\":%g", sc->budget_usd);
    if (sc->nic_mbps)
        n += snprintf(spec + n, sizeof spec - (size_t)n, ",\"platform\":{\"ps_nic_mbps\":%u}",
                      sc->nic_mbps);
    snprintf(spec + n, sizeof spec - (size_t)n, "}");
    char id[64];
    json_t *j = NULL;
    if (bench_cluster_submit(cl, spec, id, sizeof id) != 0 || !(j = bench_cluster_wait(cl, id))) {
        fprintf(stderr, "smlt-bench adapt: scenario %s did not run\n", sc->name);
        return -1;
    }
    const char *state = json_string_value(json_object_get(j, "state"));
    double elapsed = json_number_value(json_object_get(j, "elapsed_s"));
    double cost = json_number_value(json_object_get(j, "cost_usd"));
    double acc = json_number_value(json_object_get(j, "test_accuracy"));
    json_t *series = json_object_get(j, "series");
    json_t *last = json_array_get(series, json_array_size(series) - 1);
    long long w_end = json_integer_value(json_object_get(j, "workers"));
    long long s_end = json_integer_value(json_object_get(j, "shards"));
    /* The deadline counts from submission; elapsed from the start: a start takes ~0.1 s. */
    double deadline = sc->deadline_s * dscale;
    int deadline_met = deadline <= 0 || elapsed <= deadline;
    int budget_kept = sc->budget_usd <= 0 || cost <= sc->budget_usd;
    int changed = 0;
    json_t *events = json_object_get(j, "events");
    if (!json)
        printf("\n== %s: %s (%s, %u epochs, %u workers x %u shards to start)\n", sc->name, sc->what,
               sc->model, sc->epochs, sc->workers, sc->shards);
    for (size_t i = 0; i < json_array_size(events); i++) {
        json_t *e = json_array_get(events, i);
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (kind && !strcmp(kind, "scale"))
            changed++;
        if (!json && kind && msg)
            printf("  %-9s %s\n", kind, msg);
    }
    if (!json) {
        for (size_t i = 0; i < json_array_size(series); i++) {
            json_t *e = json_array_get(series, i);
            printf("  epoch %lld: %.1f s on %lld workers x %lld shards, test accuracy %.4f\n",
                   json_integer_value(json_object_get(e, "epoch")) + 1,
                   json_number_value(json_object_get(e, "epoch_time_s")),
                   json_integer_value(json_object_get(e, "workers")),
                   json_integer_value(json_object_get(e, "shards")),
                   json_number_value(json_object_get(e, "test_accuracy")));
        }
        printf("  => %s in %.1f s%s, $%.6f%s, ended on %lld workers x %lld shards after %d changes\n",
               state ? state : "?", elapsed,
               deadline > 0 ? (deadline_met ? " (deadline kept)" : " (deadline MISSED)") : "",
               cost,
               sc->budget_usd > 0 ? (budget_kept ? " (within budget)" : " (OVER BUDGET)") : "",
               w_end, s_end, changed);
    } else {
        printf("{\"scenario\":\"%s\",\"job\":\"%s\",\"state\":\"%s\",\"elapsed_s\":%.2f,"
               "\"deadline_s\":%.1f,\"deadline_met\":%s,\"budget_usd\":%g,\"cost_usd\":%.6f,"
               "\"within_budget\":%s,\"workers_start\":%u,\"workers_end\":%lld,"
               "\"shards_start\":%u,\"shards_end\":%lld,\"changes\":%d,\"test_accuracy\":%.4f,"
               "\"last_epoch_s\":%.2f}\n",
               sc->name, id, state ? state : "?", elapsed, deadline,
               deadline_met ? "true" : "false", sc->budget_usd, cost,
               budget_kept ? "true" : "false", sc->workers, w_end, sc->shards, s_end, changed, acc,
               json_number_value(json_object_get(last, "epoch_time_s")));
    }
    fflush(stdout);
    json_decref(j);
    return 0;
}

int bench_adapt_main(int argc, char **argv)
{
    static const struct option lo[] = {{"json", no_argument, 0, 'j'},
                                       {"data", required_argument, 0, 'd'},
                                       {"only", required_argument, 0, 'o'},
                                       {"deadline-scale", required_argument, 0, 's'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int json = 0, c;
    const char *data = "/usr/share/datasets/fashion-mnist", *only = NULL;
    double dscale = 1.0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'd': data = optarg; break;
        case 'o': only = optarg; break;
        case 's':
            dscale = atof(optarg);
            if (dscale <= 0) {
                fprintf(stderr, "smlt-bench adapt: --deadline-scale wants a positive factor\n");
                return 2;
            }
            break;
        case 'h':
            printf("usage: smlt-bench adapt [--json] [--only deadline|budget|shards] "
                   "[--deadline-scale F] [--data DIR]\n"
                   "Run jobs whose deadline or budget forces the scheduler to change their\n"
                   "fan-out or shard count while they train, on a private local cluster, and\n"
                   "print its decisions and whether the deadline or budget was kept.\n");
            return 0;
        default: return 2;
        }
    }
    struct bench_cluster cl;
    if (bench_cluster_up(&cl) != 0)
        return 1;
    int rc = 0;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        if (only && strcmp(only, scenarios[i].name))
            continue;
        if (run_one(&cl, &scenarios[i], data, dscale, json) != 0)
            rc = 1;
    }
    bench_cluster_down(&cl);
    return rc;
}
