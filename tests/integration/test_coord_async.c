/* test_coord_async.c: the coordinator's loop never waits on a shard, and what it billed
 * survives a crash.
 *
 *   - One job's shard is stopped with SIGSTOP, and the job is asked for a change (a manual
 *     scale: a barrier, an admin call to every shard) and a checkpoint (a model pull) that
 *     cannot finish while the shard is stopped. Meanwhile the HTTP API answers every request
 *     within a second (a generous bound: it answers in milliseconds; the latency is measured
 *     by `smlt-bench api`), and a second job on its own shards trains to the end. With SIGCONT
 *     the first job goes on, the checkpoint is answered, and a cancel ends it.
 *   - The coordinator is killed with SIGKILL while a job runs: its shards and its worker
 *     instances live on, the restarted coordinator adopts them (an instance lost meanwhile is
 *     invoked again from the shards' step) and the job goes on, every step applied once, the
 *     cost billed before the crash still billed (it read $0 once).
 *   - A job whose shard died meanwhile goes on from the checkpoints (the dead shard replaced);
 *     without checkpoints it is interrupted, and says why.
 *   - /metrics passes `promtool check metrics` (it failed on an abbreviated unit once), the
 *     coordinator's and a shard's (smlt-ps --metrics-listen, found through the job view and
 *     /api/prometheus/targets), with samples in their histograms; a shard refuses other
 *     paths and methods and goes on.
 * Everything started is stopped by its pid. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "coord_test.h"
#include "smlt_proc.h"
#include "smlt_util.h"

static char root[256];
static char dataset[256];
static char data_dir[300];
static struct test_daemon coord;

static void setup(void)
{
    ct_fixture_setup(&coord, root, data_dir, sizeof data_dir);
}

static void teardown(void)
{
    ct_fixture_teardown(&coord, data_dir);
}

/* A request that waits for the shards, made from its own thread. */
struct slow_call {
    char path[128];
    long status;
    char *body;
};

static void *slow_call_run(void *arg)
{
    struct slow_call *s = arg;
    s->status = ct_http(coord.port, "POST", s->path, CT_ADMIN, "", &s->body);
    return NULL;
}

START_TEST(api_answers_while_a_shard_is_stopped)
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-64-10\", \"dataset\": \"%s\", \"epochs\": 5000, "
             "\"workers\": 2, \"shards\": 2, \"max_workers\": 3}",
             dataset);
    char *a = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(a != NULL, "submit: %s", err);
    json_t *j = ct_wait_until(coord.port, a, 120, ct_running_with_progress);
    ck_assert_str_eq(ct_str(j, "state"), "running");
    json_decref(j);
    /* The job's shards are the coordinator's smlt-ps children: stop one. */
    pid_t ps[8];
    int n = ct_children(coord.pid, "smlt-ps", NULL, ps, 8);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(kill(ps[0], SIGSTOP), 0);
    /* A change (the barrier's freeze waits for the stopped shard) and a checkpoint (its pull
     * waits too), both from the API. */
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s/scale", a);
    ck_assert_int_eq(ct_http(coord.port, "POST", path, CT_ADMIN, "{\"workers\": 3}", NULL), 200);
    struct slow_call ck = {.status = -1};
    snprintf(ck.path, sizeof ck.path, "/api/jobs/%s/checkpoint", a);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_call_run, &ck), 0);
    usleep(300 * 1000);
    /* A second job on its own shards, while the first one's shard stays stopped. */
    snprintf(spec, sizeof spec,
             "{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 1, \"workers\": 1, "
             "\"shards\": 1}",
             dataset);
    char *b = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(b != NULL, "submit: %s", err);
    double worst = 0, t_end = smlt_now_mono() + 6;
    int requests = 0, b_done = 0;
    char bpath[128], apath[128];
    snprintf(apath, sizeof apath, "/api/jobs/%s", a);
    snprintf(bpath, sizeof bpath, "/api/jobs/%s", b);
    while (smlt_now_mono() < t_end || (!b_done && smlt_now_mono() < t_end + 120)) {
        const char *paths[] = {"/api/jobs", apath, bpath, "/metrics"};
        for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
            double t0 = smlt_now_mono();
            json_t *o = NULL;
            long st = k == 3 ? ct_http(coord.port, "GET", paths[k], NULL, NULL, NULL)
                             : ct_http_json(coord.port, "GET", paths[k], NULL, NULL, &o);
            double dt = smlt_now_mono() - t0;
            if (dt > worst)
                worst = dt;
            requests++;
            ck_assert_msg(st == 200, "GET %s: %ld", paths[k], st);
            ck_assert_msg(dt < 1.0, "GET %s took %.3f s while a shard was stopped", paths[k], dt);
            if (k == 2 && ct_job_over(ct_str(o, "state"))) {
                ck_assert_str_eq(ct_str(o, "state"), "succeeded");
                b_done = 1;
            }
            if (k == 1)
                ck_assert_str_eq(ct_str(o, "state"), "running");
            json_decref(o);
        }
        usleep(100 * 1000);
    }
    ck_assert_msg(b_done, "the second job did not finish while the first one's shard was stopped");
    fprintf(stderr, "api_answers_while_a_shard_is_stopped: %d requests, slowest %.1f ms\n",
            requests, worst * 1e3);
    ck_assert_int_eq(ck.status, -1); /* still waiting for the stopped shard */
    /* Back: the checkpoint is answered, and a cancel ends the job with its model saved. */
    ck_assert_int_eq(kill(ps[0], SIGCONT), 0);
    pthread_join(th, NULL);
    ck_assert_msg(ck.status == 200, "checkpoint: %ld %s", ck.status, ck.body ? ck.body : "");
    ck_assert_ptr_nonnull(strstr(ck.body, "model.smlt"));
    free(ck.body);
    snprintf(path, sizeof path, "/api/jobs/%s/cancel", a);
    json_t *c = NULL;
    ck_assert_int_eq(ct_http_json(coord.port, "POST", path, CT_ADMIN, "", &c), 200);
    /* The reply comes once the job has ended. */
    ck_assert_str_eq(ct_str(c, "state"), "canceled");
    ck_assert(json_is_string(json_object_get(c, "model")));
    json_decref(c);
    free(a);
    free(b);
}
END_TEST

/* The shards' pids, as the coordinator's children (before it dies). */
static int shard_pids(pid_t *ps, int max)
{
    return ct_children(coord.pid, "smlt-ps", NULL, ps, max);
}

static void kill_coordinator(void)
{
    ck_assert_int_eq(kill(coord.pid, SIGKILL), 0);
    int st;
    waitpid(coord.pid, &st, 0);
    coord.pid = 0;
    test_daemon_stop(&coord); /* (its directory) */
}

static int has_event(const json_t *j, const char *kind)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "events"), i, e)
    if (!strcmp(ct_str(e, "kind"), kind))
        return 1;
    return 0;
}

/* kill -9 of the coordinator mid-job: its shards and worker instances live on; one instance
 * is then lost. The restarted coordinator adopts the shards and the surviving instance (its
 * worker reconnects and finishes its slice), invokes the lost one's rank from the shards'
 * step, every step is applied once, and what was billed before the crash stays billed (it
 * read $0 once). */
START_TEST(coordinator_killed_job_resumes)
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-64-10\", \"dataset\": \"%s\", \"epochs\": %d, "
             "\"workers\": 2, \"shards\": 2, \"optimizer\": {\"kind\": \"adam\", \"lr\": 0.001}}",
             dataset, 5000);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = ct_wait_until(coord.port, id, 120, ct_running_with_progress);
    ck_assert_str_eq(ct_str(j, "state"), "running");
    json_decref(j);
    sleep(2);
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s", id);
    ck_assert_int_eq(ct_http_json(coord.port, "GET", path, NULL, NULL, &j), 200);
    ck_assert_str_eq(ct_str(j, "state"), "running");
    double step_before = ct_num(j, "step");
    json_decref(j);
    pid_t ps[8], ws[8];
    ck_assert_int_eq(shard_pids(ps, 8), 2);
    ck_assert_int_eq(ct_children(coord.pid, "smlt-worker", "--invoke", ws, 8), 2);
    kill_coordinator();
    for (int k = 0; k < 2; k++)
        ck_assert_msg(kill(ps[k], 0) == 0, "shard %d died with the coordinator", k);
    /* Its worker instances live on too; one of them is then lost while the coordinator is
     * away: the restarted one adopts the other, which finishes its slice, and invokes the
     * lost one's rank again from the shards' step. */
    usleep(300 * 1000);
    ck_assert_msg(smlt_proc_alive(ws[0]) && smlt_proc_alive(ws[1]),
                  "a worker instance died with the coordinator");
    ck_assert_int_eq(kill(ws[1], SIGKILL), 0);

    ck_assert_int_eq(ct_coord_start(&coord, data_dir, NULL), 0);
    /* It trains on from the shards' step: well past where it was. */
    j = NULL;
    for (int t = 0; t < 600; t++) {
        json_decref(j);
        j = NULL;
        ck_assert_int_eq(ct_http_json(coord.port, "GET", path, NULL, NULL, &j), 200);
        if (!strcmp(ct_str(j, "state"), "running") && ct_num(j, "step") > step_before + 100 &&
            has_event(j, "adopt"))
            break; /* (the adopted worker reconnects within a few seconds) */
        ck_assert_msg(!ct_job_over(ct_str(j, "state")), "the job ended: %s %s",
                      ct_str(j, "state"), ct_str(j, "reason"));
        usleep(100 * 1000);
    }
    ck_assert(has_event(j, "resume"));
    ck_assert_msg(has_event(j, "adopt"), "no worker instance was adopted");
    ck_assert(ct_num(j, "step") > step_before + 100);
    ck_assert_msg(smlt_proc_alive(ws[0]), "the adopted instance is gone");
    /* The adopted instance runs its rank's invocation: the new coordinator invoked one
     * instance only, for the lost one's rank. */
    pid_t now[8];
    int n = ct_children(coord.pid, "smlt-worker", "--invoke", now, 8);
    ck_assert_msg(n == 1, "%d worker instances started by the restarted coordinator", n);
    json_decref(j);
    snprintf(path, sizeof path, "/api/jobs/%s/cancel", id);
    ck_assert_int_eq(ct_http_json(coord.port, "POST", path, CT_ADMIN, "", &j), 200);
    ck_assert_str_eq(ct_str(j, "state"), "canceled");
    const json_t *l = json_object_get(j, "ledger");
    fprintf(stderr, "coordinator_killed_job_resumes: killed at step %.0f of %.0f; $%.6f, %.3f GB-s "
                    "in %.0f invocations\n",
            step_before, ct_num(j, "step"), ct_num(j, "cost_usd"), ct_num(l, "gb_s"),
            ct_num(l, "invocations"));
    ck_assert(ct_num(l, "gb_s") > 0 && ct_num(l, "ps_node_s") > 0);
    /* Exactly once: each shard applied every step once, whatever was pushed twice (a step
     * the cancel cut may have one rank's push counted). */
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(j, "ps_stats"), i, st)
    {
        long long v = (long long)ct_num(st, "version");
        ck_assert(v > step_before + 100);
        ck_assert_int_eq((long long)ct_num(st, "updates_applied"), v);
        long long counted = (long long)ct_num(st, "pushes_counted");
        ck_assert_msg(counted == 2 * v || counted == 2 * v + 1, "counted %lld at version %lld",
                      counted, v);
    }
    ck_assert_int_eq(json_array_size(json_object_get(j, "ps_stats")), 2);
    json_decref(j);
    /* The adopted shards were stopped at the end like any others. */
    for (int t = 0; t < 100 && (kill(ps[0], 0) == 0 || kill(ps[1], 0) == 0); t++)
        usleep(100 * 1000);
    ck_assert(kill(ps[0], 0) != 0 && kill(ps[1], 0) != 0);
    /* And the adopted instance was stopped with its job's cancel. */
    for (int t = 0; t < 100 && smlt_proc_alive(ws[0]); t++)
        usleep(100 * 1000);
    ck_assert(!smlt_proc_alive(ws[0]));
    free(id);
}
END_TEST

/* A job whose shard died while the coordinator was away cannot go on from its shards: it is
 * interrupted, and says why. */
START_TEST(job_that_cannot_resume_says_why)
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-64-10\", \"dataset\": \"%s\", \"epochs\": 5000, "
             "\"workers\": 2, \"shards\": 2, \"checkpoint\": false}",
             dataset);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = ct_wait_until(coord.port, id, 120, ct_running_with_progress);
    json_decref(j);
    pid_t ps[8];
    ck_assert_int_eq(shard_pids(ps, 8), 2);
    kill_coordinator();
    ck_assert_int_eq(kill(ps[1], SIGKILL), 0);
    usleep(200 * 1000);
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, NULL), 0);
    /* (Its shard's pid may still be a zombie for a moment, or answer nothing: either way the
     * job ends interrupted.) */
    j = ct_wait_job(coord.port, id, 60);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(ct_str(j, "state"), "interrupted");
    ck_assert_msg(strstr(ct_str(j, "reason"), "cannot resume") &&
                      strstr(ct_str(j, "reason"), "shard 1"),
                  "reason: %s", ct_str(j, "reason"));
    ck_assert(ct_num(j, "cost_usd") > 0); /* what was billed stays billed */
    json_decref(j);
    /* The surviving shard is not ours to kill (its identity was not checked): it exits on
     * its own (--orphan-exit); the test stops it by its pid. */
    kill(ps[0], SIGTERM);
    free(id);
}
END_TEST

/* The coordinator and then one of the shards are killed: the restarted coordinator adopts
 * the surviving shard, replaces the dead one from the checkpoints, and the job succeeds. */
START_TEST(shard_died_while_coordinator_away)
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-64-10\", \"dataset\": \"%s\", \"epochs\": %d, "
             "\"workers\": 2, \"shards\": 2, \"checkpoint\": {\"every_steps\": 20}}",
             dataset, ct_quick() ? 30 : 50);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = NULL;
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s", id);
    for (int t = 0; t < 600; t++) {
        json_decref(j);
        j = NULL;
        ck_assert_int_eq(ct_http_json(coord.port, "GET", path, NULL, NULL, &j), 200);
        if (ct_num(j, "step") >= 100)
            break;
        usleep(50 * 1000);
    }
    ck_assert_str_eq(ct_str(j, "state"), "running");
    json_decref(j);
    pid_t ps[8];
    ck_assert_int_eq(shard_pids(ps, 8), 2);
    kill_coordinator();
    ck_assert_int_eq(kill(ps[0], SIGKILL), 0);
    usleep(200 * 1000);
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, NULL), 0);
    j = ct_wait_job(coord.port, id, 300);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(!strcmp(ct_str(j, "state"), "succeeded"), "%s: %s %s", ct_str(j, "state"),
                  ct_str(j, "error"), ct_str(j, "reason"));
    ck_assert(has_event(j, "resume") && has_event(j, "fault"));
    size_t i;
    json_t *st;
    long long final = -1;
    json_array_foreach(json_object_get(j, "ps_stats"), i, st)
    {
        long long v = (long long)ct_num(st, "version");
        if (final < 0)
            final = v;
        ck_assert_int_eq(v, final);
    }
    json_decref(j);
    free(id);
}
END_TEST

/* Runs `promtool check metrics` (0 clean, 3 lint problems, 1 unparsable) on text, through a
 * file in data_dir. Returns its exit status (-1 if it did not run) and its output in out. */
static int promtool_check(const char *text, const char *name, char *out, size_t outlen)
{
    char file[400], cmd[900];
    snprintf(file, sizeof file, "%s/%s.txt", data_dir, name);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s 2>&1", file);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The value of the sample `series` ("name" or "name{labels}") in Prometheus text; -1 when
 * there is none. */
static double metric(const char *text, const char *series)
{
    char pat[256];
    snprintf(pat, sizeof pat, "\n%s ", series);
    const char *p = strstr(text, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

/* The shard's /metrics (its address from the job view): promtool, samples in the histograms,
 * and bad requests refused and counted while the shard goes on. */
static void check_shard_metrics(const char *id)
{
    char path[128], out[4096] = "", *body = NULL;
    snprintf(path, sizeof path, "/api/jobs/%s", id);
    json_t *j = NULL;
    ck_assert_int_eq(ct_http_json(coord.port, "GET", path, NULL, NULL, &j), 200);
    const char *a = json_string_value(json_array_get(json_object_get(j, "ps_metrics"), 0));
    char addr[64];
    snprintf(addr, sizeof addr, "%s", a ? a : "none");
    json_decref(j);
    ck_assert_msg(!strncmp(addr, "127.0.0.1:", 10), "ps_metrics: %s", addr);
    int port = atoi(addr + 10);
    ck_assert_int_eq(ct_http(port, "GET", "/metrics", NULL, NULL, &body), 200);
    int st = promtool_check(body, "shard-metrics", out, sizeof out);
    ck_assert_msg(st == 0, "promtool check metrics (shard): exit %d: %s\n%s", st, out, body);
    ck_assert_double_gt(metric(body, "smlt_ps_pushes_total"), 0);
    ck_assert_double_gt(metric(body, "smlt_ps_pulls_total"), 0);
    ck_assert_double_gt(metric(body, "smlt_ps_received_bytes_total"), 0);
    ck_assert_double_ge(metric(body, "smlt_ps_connections_open"), 2); /* two workers */
    ck_assert_double_gt(metric(body, "smlt_ps_apply_seconds_count"), 0);
    ck_assert_double_gt(metric(body, "smlt_ps_bsp_wait_seconds_count"), 0);
    ck_assert_double_eq(metric(body, "smlt_ps_apply_seconds_bucket{le=\"+Inf\"}"),
                        metric(body, "smlt_ps_apply_seconds_count"));
    free(body);
    ck_assert_int_eq(ct_http(port, "POST", "/metrics", NULL, "x", NULL), 405);
    ck_assert_int_eq(ct_http(port, "GET", "/", NULL, NULL, NULL), 404);
    char big[8192]; /* over the endpoint's 4 KiB cap on a body: refused by libevent */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ck_assert_int_eq(ct_http(port, "POST", "/metrics", NULL, big, NULL), 413);
    ck_assert_int_eq(ct_http(port, "GET", "/metrics", NULL, NULL, &body), 200);
    ck_assert_double_eq(metric(body, "smlt_ps_http_bad_requests_total"), 2);
    free(body);
    /* Prometheus service discovery names the same address. */
    ck_assert_int_eq(ct_http_json(coord.port, "GET", "/api/prometheus/targets", NULL, NULL, &j),
                     200);
    json_t *t = json_array_get(j, 0);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(t, "targets"), 0)), addr);
    ck_assert_str_eq(ct_str(json_object_get(t, "labels"), "job_id"), id);
    ck_assert_str_eq(ct_str(json_object_get(t, "labels"), "shard"), "0");
    ck_assert_str_eq(ct_str(json_object_get(t, "labels"), "role"), "primary");
    json_decref(j);
}

/* /metrics of the coordinator and of a shard, while a job runs, as Prometheus's own linter
 * reads them. */
START_TEST(metrics_pass_promtool)
{
    ck_assert_msg(access("/usr/bin/promtool", X_OK) == 0,
                  "promtool is missing: install Debian's prometheus (tools/test.sh does)");
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 5000, "
             "\"workers\": 2, \"shards\": 1}",
             dataset);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = ct_wait_until(coord.port, id, 120, ct_running_with_progress);
    json_decref(j);
    char *body = NULL, out[4096] = "", series[128];
    ck_assert_int_eq(ct_http(coord.port, "GET", "/metrics", NULL, NULL, &body), 200);
    ck_assert_ptr_nonnull(strstr(body, "smlt_function_gigabyte_seconds_total"));
    ck_assert_ptr_nonnull(strstr(body, "smlt_admin_calls_total"));
    int st = promtool_check(body, "metrics", out, sizeof out);
    ck_assert_msg(st == 0, "promtool check metrics: exit %d: %s\n%s", st, out, body);
    ck_assert_double_ge(metric(body, "smlt_invocation_start_seconds_count{start=\"cold\"}"), 2);
    ck_assert_double_gt(metric(body, "smlt_step_seconds_count"), 0);
    snprintf(series, sizeof series, "smlt_job_workers{job_id=\"%s\"}", id);
    ck_assert_double_eq(metric(body, series), 2);
    free(body);
    check_shard_metrics(id);
    snprintf(series, sizeof series, "/api/jobs/%s/cancel", id);
    ck_assert_int_eq(ct_http(coord.port, "POST", series, CT_ADMIN, "", NULL), 200);
    /* A job that is not running has no gauges and no shard targets. */
    j = ct_wait_job(coord.port, id, 60);
    ck_assert_str_eq(ct_str(j, "state"), "canceled");
    json_decref(j);
    ck_assert_int_eq(ct_http(coord.port, "GET", "/metrics", NULL, NULL, &body), 200);
    snprintf(series, sizeof series, "job_id=\"%s\"", id);
    ck_assert_ptr_null(strstr(body, series));
    free(body);
    ck_assert_int_eq(ct_http(coord.port, "GET", "/api/prometheus/targets", NULL, NULL, &body),
                     200);
    ck_assert_str_eq(body, "[]\n");
    free(body);
    free(id);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("coord_async");
    TCase *tc = tcase_create("loop");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 400);
    tcase_add_test(tc, api_answers_while_a_shard_is_stopped);
    tcase_add_test(tc, coordinator_killed_job_resumes);
    tcase_add_test(tc, job_that_cannot_resume_says_why);
    tcase_add_test(tc, shard_died_while_coordinator_away);
    tcase_add_test(tc, metrics_pass_promtool);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ct_main("coord-async", suite(), root, sizeof root, dataset, sizeof dataset, 6000, 1000);
}
