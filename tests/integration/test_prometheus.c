/* test_prometheus.c: SMLT-C scraped by a real Prometheus server, as an operator runs it.
 *
 * A coordinator on loopback port 0 runs a real job (an MLP on a Fashion-MNIST slice, two
 * workers, two shards). Debian's /usr/bin/prometheus is started on a free loopback port with
 * deploy/prometheus/prometheus.yml, the coordinator's real address put in place of
 * 127.0.0.1:8080, so that it scrapes the coordinator's /metrics and finds the shards through
 * the coordinator's /api/prometheus/targets. The test then asks Prometheus's HTTP API that the
 * coordinator target and the job's shard targets are up, and that smlt_ps_pushes_total of the
 * job and the coordinator's smlt_step_seconds_count have samples above 0. A second case runs the
 * coordinator with a pool of two PS nodes (smlt-ps --node --metrics-listen 127.0.0.1:0) and a
 * job on them: Prometheus finds both nodes through the same discovery (role "node"), scrapes
 * them up, and reads the shards they host from smlt_ps_node_shards.
 *
 * Without /usr/bin/prometheus (Debian package prometheus; `tools/deps.sh test` installs it)
 * the test says so and exits 77, which CTest reports as skipped. Everything started is stopped
 * by its pid (Prometheus also gets SIGTERM when the test's process dies). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord_test.h"
#include "rpc_conn.h"
#include "smlt_proc.h"
#include "smlt_util.h"

#define PROMETHEUS "/usr/bin/prometheus"
#define DEPLOY_ADDR "127.0.0.1:8080" /* the coordinator's address in the shipped config */

static char root[256];
static char dataset[256];
static char data_dir[300];
static struct test_daemon coord;
#define NODES 2
static struct test_daemon node[NODES]; /* the pool case's */
static pid_t prom;
static char prom_log[400];

/* Stops Prometheus by its pid; with why (a failure), shows its log's end first. A failed
 * check ends the test's process without its teardown, so this runs before the check. */
static void prom_stop(const char *why)
{
    if (why) {
        char cmd[512];
        fprintf(stderr, "%s; Prometheus's log:\n", why);
        snprintf(cmd, sizeof cmd, "tail -n 30 '%s' >&2", prom_log);
        if (system(cmd) != 0)
            fprintf(stderr, "(no Prometheus log at %s)\n", prom_log);
    }
    if (prom > 0)
        smlt_proc_stop(prom, 10000);
    prom = 0;
}

static void setup(void)
{
    ct_fixture_setup(&coord, root, data_dir, sizeof data_dir);
}

static void teardown(void)
{
    prom_stop(NULL);
    ct_fixture_teardown(&coord, data_dir);
    for (int i = 0; i < NODES; i++)
        test_daemon_stop(&node[i]);
}

/* Writes path: the shipped deploy/prometheus/prometheus.yml with the coordinator's address
 * (127.0.0.1:coord_port) wherever it names 127.0.0.1:8080: the scrape target and the service
 * discovery URL, so at least two places. */
static void write_config(const char *path, int coord_port)
{
    char src[512], addr[32];
    const char *dir = getenv("SMLT_SOURCE_DIR");
    snprintf(src, sizeof src, "%s/deploy/prometheus/prometheus.yml", dir ? dir : ".");
    FILE *in = fopen(src, "r"), *out = fopen(path, "w");
    ck_assert_msg(in != NULL, "cannot read %s", src);
    ck_assert_ptr_nonnull(out);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", coord_port);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, in)) {
        char *at = strstr(line, DEPLOY_ADDR);
        if (at && strncmp(line + strspn(line, " "), "#", 1)) {
            fprintf(out, "%.*s%s%s", (int)(at - line), line, addr, at + strlen(DEPLOY_ADDR));
            n++;
        } else {
            fputs(line, out);
        }
    }
    fclose(in);
    fclose(out);
    ck_assert_msg(n >= 2, "%s names %s in %d settings; want the target and the SD url", src,
                  DEPLOY_ADDR, n);
}

/* A loopback port that was free a moment ago (bound, then closed). */
static int free_port(void)
{
    int port = 0, fd = rpc_net_listen("127.0.0.1:0", 1, &port);
    ck_assert_int_ge(fd, 0);
    close(fd);
    return port;
}

/* Starts Prometheus with config on 127.0.0.1:port, its data under data_dir, and waits up to
 * 60 s for /-/ready. */
static void prom_start(const char *config, int port)
{
    char cfg[512], tsdb[512], listen[64];
    snprintf(cfg, sizeof cfg, "--config.file=%s", config);
    snprintf(tsdb, sizeof tsdb, "--storage.tsdb.path=%s/tsdb", data_dir);
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", port);
    snprintf(prom_log, sizeof prom_log, "%s/prometheus.log", data_dir);
    const char *argv[] = {PROMETHEUS, cfg, tsdb, listen, NULL};
    struct smlt_proc_opts o = {.log_path = prom_log, .die_with_parent = 1};
    prom = smlt_proc_spawn(argv, &o);
    ck_assert_int_gt(prom, 0);
    double until = smlt_now_mono() + 60;
    while (ct_http(port, "GET", "/-/ready", NULL, NULL, NULL) != 200) {
        if (!smlt_proc_alive(prom) || smlt_now_mono() > until) {
            prom_stop("not ready");
            ck_abort_msg("Prometheus did not get ready on port %d", port);
        }
        usleep(200 * 1000);
    }
}

/* How many active targets of scrape job `job` Prometheus has up with label role = role (when
 * not NULL) and job_id = id (when not NULL). */
static int targets_up(const json_t *targets, const char *job, const char *role, const char *id)
{
    json_t *act = json_object_get(json_object_get(targets, "data"), "activeTargets");
    int n = 0;
    for (size_t i = 0; i < json_array_size(act); i++) {
        json_t *t = json_array_get(act, i), *l = json_object_get(t, "labels");
        if (strcmp(ct_str(l, "job"), job) || strcmp(ct_str(t, "health"), "up"))
            continue;
        n += (!role || !strcmp(ct_str(l, "role"), role)) && (!id || !strcmp(ct_str(l, "job_id"), id));
    }
    return n;
}

/* The largest value Prometheus has now for the metric `name` (of job job_id when not NULL),
 * or -1 when it has none. */
static double query_max(int port, const char *name, const char *job_id)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v1/query?query=%s", name);
    json_t *r = NULL;
    double best = -1;
    if (ct_http_json(port, "GET", path, NULL, NULL, &r) != 200 || !r)
        goto out;
    json_t *res = json_object_get(json_object_get(r, "data"), "result");
    for (size_t i = 0; i < json_array_size(res); i++) {
        json_t *s = json_array_get(res, i);
        if (job_id && strcmp(ct_str(json_object_get(s, "metric"), "job_id"), job_id))
            continue;
        const char *v = json_string_value(json_array_get(json_object_get(s, "value"), 1));
        if (v && atof(v) > best)
            best = atof(v);
    }
out:
    json_decref(r);
    return best;
}

/* Submits a long MLP job on workers workers and 2 shards, waits until it trains, and starts
 * Prometheus with the shipped config pointed at the coordinator; returns the job id
 * (malloc'd) and Prometheus's port in *port. */
static char *job_and_prometheus(int workers, int *port)
{
    char spec[1024], err[512], config[400];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-64-10\", \"dataset\": \"%s\", \"epochs\": 5000, "
             "\"workers\": %d, \"shards\": 2}",
             dataset, workers);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_decref(ct_wait_until(coord.port, id, 120, ct_running_with_progress));
    snprintf(config, sizeof config, "%s/prometheus.yml", data_dir);
    write_config(config, coord.port);
    *port = free_port();
    prom_start(config, *port);
    return id;
}

/* Cancels job id (and frees it). */
static void job_cancel(char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s/cancel", id);
    ck_assert_int_eq(ct_http(coord.port, "POST", path, CT_ADMIN, "", NULL), 200);
    free(id);
}

START_TEST(prometheus_scrapes_coordinator_and_shards)
{
    int port;
    char *id = job_and_prometheus(2, &port);
    /* Every target is scraped within one scrape interval (5 s) of being discovered. */
    int coord_up = 0, shard_up = 0;
    double pushes = -1, steps = -1, until = smlt_now_mono() + 90;
    while (smlt_now_mono() < until && (!coord_up || !shard_up || pushes <= 0 || steps <= 0)) {
        json_t *t = NULL;
        if (ct_http_json(port, "GET", "/api/v1/targets", NULL, NULL, &t) == 200) {
            coord_up = targets_up(t, "smlt-coordinator", NULL, NULL) > 0;
            shard_up = targets_up(t, "smlt-ps", "primary", id) > 0;
        }
        json_decref(t);
        pushes = query_max(port, "smlt_ps_pushes_total", id);
        steps = query_max(port, "smlt_step_seconds_count", NULL);
        usleep(500 * 1000);
    }
    prom_stop(!coord_up || !shard_up || pushes <= 0 || steps <= 0 ? "not scraped" : NULL);
    ck_assert_msg(coord_up, "the coordinator target is not up in Prometheus");
    ck_assert_msg(shard_up, "no shard target of %s is up in Prometheus", id);
    ck_assert_msg(pushes > 0, "smlt_ps_pushes_total of %s: %g", id, pushes);
    ck_assert_msg(steps > 0, "smlt_step_seconds_count: %g", steps);
    fprintf(stderr, "prometheus: both targets up; smlt_ps_pushes_total %.0f, "
                    "smlt_step_seconds_count %.0f\n", pushes, steps);
    job_cancel(id);
}
END_TEST


/* For ct_wait_until() on GET /api/nodes: every node up with its metrics address. */
static int nodes_with_metrics(int port)
{
    json_t *o = NULL;
    int n = 0;
    if (ct_http_json(port, "GET", "/api/nodes", CT_ADMIN, NULL, &o) == 200) {
        json_t *a = json_object_get(o, "nodes");
        for (size_t i = 0; i < json_array_size(a); i++) {
            json_t *v = json_array_get(a, i);
            n += !strcmp(ct_str(v, "state"), "up") && ct_str(v, "metrics_addr")[0];
        }
    }
    json_decref(o);
    return n;
}

START_TEST(prometheus_scrapes_pool_nodes)
{
    /* This case's coordinator runs the pool. */
    test_daemon_stop(&coord);
    const char *metrics[] = {"--metrics-listen", "127.0.0.1:0", NULL};
    ct_pool_start(&coord, data_dir, node, NODES, "64", metrics);
    double until = smlt_now_mono() + 30;
    while (nodes_with_metrics(coord.port) < NODES && smlt_now_mono() < until)
        usleep(200 * 1000);
    ck_assert_msg(nodes_with_metrics(coord.port) == NODES,
                  "GET /api/nodes does not show both nodes up with their metrics address");
    int port;
    char *id = job_and_prometheus(1, &port);
    int up = 0;
    double shards = -1;
    until = smlt_now_mono() + 90;
    while (smlt_now_mono() < until && (up < NODES || shards < 1)) {
        json_t *t = NULL;
        if (ct_http_json(port, "GET", "/api/v1/targets", NULL, NULL, &t) == 200)
            up = targets_up(t, "smlt-ps", "node", NULL);
        json_decref(t);
        shards = query_max(port, "smlt_ps_node_shards", NULL);
        usleep(500 * 1000);
    }
    prom_stop(up < NODES || shards < 1 ? "nodes not scraped" : NULL);
    job_cancel(id);
    for (int i = 0; i < NODES; i++)
        test_daemon_stop(&node[i]);
    ck_assert_msg(up == NODES, "%d of the %d pool nodes are up as Prometheus targets", up, NODES);
    ck_assert_msg(shards >= 1, "smlt_ps_node_shards: %g", shards);
    fprintf(stderr, "prometheus: %d pool nodes up as targets (role node); smlt_ps_node_shards "
                    "max %.0f\n", up, shards);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("prometheus");
    TCase *tc = tcase_create("scrape");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 400);
    tcase_add_test(tc, prometheus_scrapes_coordinator_and_shards);
    tcase_add_test(tc, prometheus_scrapes_pool_nodes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (access(PROMETHEUS, X_OK) != 0) {
        fprintf(stderr, "test_prometheus: SKIPPED: %s is missing (Debian package prometheus; "
                        "`bash tools/deps.sh test` installs it)\n", PROMETHEUS);
        return 77;
    }
    return ct_main("prometheus", suite(), root, sizeof root, dataset, sizeof dataset, 6000, 1000);
}
