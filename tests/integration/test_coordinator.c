/* test_coordinator.c: smlt-coordinator end to end on loopback, through its HTTP JSON API.
 *
 * Every test starts its own coordinator (port 0, a private data directory) that runs jobs on
 * the embedded local function runtime with real smlt-ps shards and smlt-worker processes, on
 * a 12,000-image slice of Fashion-MNIST:
 *   - a function time limit of 2 s cuts every worker's invocation; the job is continued slice
 *     after slice and still reaches a test accuracy a broken continuation would miss;
 *   - a worker process killed by its pid in mid-slice is re-invoked from its last reported
 *     cursor and the job completes every step once, to the same accuracy bar;
 *   - wrong specs are refused with 400 and the field named, and the daemon goes on serving;
 *   - the journal gives a finished job's history back after a restart on the same data dir;
 *   - POSTs without the admin token get 401 and change nothing.
 * Everything started is stopped by its pid. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "coord_test.h"
#include "smlt.h"

#define ACC_BAR 0.80 /* an untrained or broken model scores about 0.10 */

static char root[256];    /* everything a test writes goes under it; main() removes it */
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

static void dump(const json_t *j)
{
    char *s = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
    fprintf(stderr, "job: %s\n", s ? s : "(none)");
    free(s);
}

/* Checks a finished job: succeeded, every step trained, accuracy over the bar. */
static void check_completed(const json_t *j)
{
    if (!j || strcmp(ct_str(j, "state"), "succeeded")) {
        dump(j);
        test_daemon_dump_log(&coord);
    }
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(ct_str(j, "state"), "succeeded");
    long long total = (long long)ct_num(j, "total_steps");
    ck_assert_int_gt(total, 0);
    ck_assert_int_eq((long long)ct_num(j, "step"), total);
    const json_t *ranks = json_object_get(j, "ranks");
    size_t i;
    const json_t *r;
    json_array_foreach(ranks, i, r)
    {
        ck_assert_int_eq((long long)ct_num(r, "next_step"), total);
        ck_assert(json_is_true(json_object_get(r, "finished")));
    }
    ck_assert_msg(ct_num(j, "test_accuracy") >= ACC_BAR, "test accuracy %.4f < %.2f",
                  ct_num(j, "test_accuracy"), ACC_BAR);
    ck_assert(ct_num(j, "cost_usd") > 0);
    ck_assert(json_is_string(json_object_get(j, "model")));
    /* "ps_stats" (per shard, sampled when the job ended), where the coordinator reports it:
     * each rank's pushes counted exactly once per step. */
    const json_t *ps = json_object_get(j, "ps_stats");
    const json_t *s;
    json_array_foreach(ps, i, s)
    {
        ck_assert_int_eq((long long)ct_num(s, "pushes_counted"),
                         total * (long long)ct_num(j, "workers"));
        ck_assert_int_eq((long long)ct_num(s, "version"), total);
    }
}

/* The job of (a) and (b): an MLP big enough that an epoch of its 12,000 images takes seconds
 * of compute (well over the 1.5 s a 2 s time limit leaves an invocation). With no deadline
 * or budget its ranks train through epoch boundaries: only the limit ends an invocation. */
static void big_spec(char *spec, size_t n, int epochs, int shards, const char *platform)
{
    snprintf(spec, n,
             "{\"model\": \"mlp:784-1024-1024-10\", \"dataset\": \"%s\", \"epochs\": %d, "
             "\"workers\": 2, \"shards\": %d, \"batch_size\": 32, \"optimizer\": {\"lr\": 0.02}%s%s}",
             dataset, epochs, shards, platform ? ", \"platform\": " : "", platform ? platform : "");
}

/* (a) Every invocation is cut by a 2 s function time limit; the job goes on from the reported
 * cursor in continuation after continuation. */
START_TEST(time_limit_cuts_and_continues)
{
    char spec[1024], err[512];
    int epochs = ct_quick() ? 1 : 2;
    big_spec(spec, sizeof spec, epochs, 2, "{\"time_limit_s\": 2}");
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = ct_wait_job(coord.port, id, 240);
    check_completed(j);
    const json_t *inv = json_object_get(j, "invocations");
    fprintf(stderr, "time limit 2 s: %s in %.1f s, %.0f invocations (%.0f warm, %.0f lost), "
                    "test accuracy %.4f\n",
            ct_str(j, "state"), ct_num(j, "elapsed_s"), ct_num(inv, "total"),
            ct_num(inv, "warm"), ct_num(inv, "lost"), ct_num(j, "test_accuracy"));
    ck_assert_int_gt((long long)ct_num(inv, "total"), 2);
    /* Only the time limit ends a rank's invocations before the last: epochs + 2 of them
     * means the limit cut every rank more than once per epoch. */
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(j, "ranks"), i, r)
        ck_assert_msg(ct_num(r, "invocations") >= epochs + 2, "rank %zu: %.0f invocations in %d "
                      "epochs", i, ct_num(r, "invocations"), epochs);
    /* Continuations ran on warm instances (the same process, its data kept). */
    ck_assert_int_gt((long long)ct_num(inv, "warm"), 0);
    ck_assert_int_eq((long long)ct_num(json_object_get(j, "ledger"), "invocations"),
                     (long long)ct_num(inv, "total"));
    json_decref(j);
    free(id);
}
END_TEST

/* Running, and between 20% and 70% into an epoch: every rank is in mid-slice. */
static int mid_epoch(const json_t *j)
{
    double spe = ct_num(j, "steps_per_epoch"), step = ct_num(j, "step");
    if (strcmp(ct_str(j, "state"), "running") || spe <= 0 || step <= 0)
        return 0;
    double f = fmod(step, spe) / spe;
    return f >= 0.2 && f <= 0.7 && step < ct_num(j, "total_steps") - spe * 0.3;
}

static long long cpu_ticks(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* Downloads a job's model and reads it with libsmlt. */
static struct smlt_model *fetch_model(const char *id)
{
    char url[256], file[] = "/tmp/smlt-model.XXXXXX";
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/jobs/%s/model", coord.port, id);
    int fd = mkstemp(file);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "wb");
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    long code = 0;
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    fclose(f);
    ck_assert_int_eq(code, 200);
    struct smlt_model *m = NULL;
    char err[256];
    int rc = smlt_model_read(file, &m, err, sizeof err);
    unlink(file);
    ck_assert_msg(rc == 0, "model of %s: %s", id, err);
    return m;
}

/* (b) A worker process killed by its pid in mid-slice is re-invoked; the job completes with
 * every step trained once: its model is bit for bit the model of the same job run without the
 * kill (BSP sums two gradients, which commutes; data order is a function of seed, epoch and
 * step), where a step applied twice or skipped would change it.
 * One shard: with several, a worker killed between its pushes to two shards leaves the step
 * applied on one of them, and its re-invocation computes that step's gradient again from the
 * half-updated model it pulls; each shard still applies it once, but the bits differ. */
START_TEST(killed_worker_is_reinvoked)
{
    char spec[1024], err[512];
    big_spec(spec, sizeof spec, 1, 1, NULL);
    char *ref = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(ref != NULL, "submit: %s", err);
    json_t *j = ct_wait_job(coord.port, ref, 240);
    check_completed(j);
    json_decref(j);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    j = ct_wait_until(coord.port, id, 120, mid_epoch);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(mid_epoch(j), "the job never was in mid-epoch: %s at step %.0f",
                  ct_str(j, "state"), ct_num(j, "step"));
    long long killed_at = (long long)ct_num(j, "step");
    json_decref(j);
    /* The coordinator's function instances; the one training (using CPU) is in mid-slice. */
    pid_t w[16];
    int n = ct_children(coord.pid, "smlt-worker", "--invoke", w, 16);
    ck_assert_int_ge(n, 1);
    long long t0[16], best = -1;
    int victim = 0;
    for (int k = 0; k < n; k++)
        t0[k] = cpu_ticks(w[k]);
    struct timespec ts = {0, 200 * 1000000L};
    nanosleep(&ts, NULL);
    for (int k = 0; k < n; k++) {
        long long d = cpu_ticks(w[k]) - t0[k];
        if (t0[k] >= 0 && d > best) {
            best = d;
            victim = k;
        }
    }
    ck_assert_int_eq(kill(w[victim], SIGKILL), 0);
    j = ct_wait_job(coord.port, id, 240);
    const json_t *inv = json_object_get(j, "invocations");
    fprintf(stderr, "killed worker pid %d (1 of %d instances) at step %lld: %s, step %.0f/%.0f, "
                    "%.0f invocations (%.0f lost), test accuracy %.4f\n",
            (int)w[victim], n, killed_at, ct_str(j, "state"), ct_num(j, "step"),
            ct_num(j, "total_steps"), ct_num(inv, "total"), ct_num(inv, "lost"),
            ct_num(j, "test_accuracy"));
    check_completed(j);
    ck_assert_int_ge((long long)ct_num(inv, "lost"), 1);
    ck_assert_int_ge((long long)ct_num(inv, "total"), 3);
    int retry = 0;
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(j, "events"), i, e)
        retry += !strcmp(ct_str(e, "kind"), "retry");
    ck_assert_int_ge(retry, 1);
    json_decref(j);
    struct smlt_model *a = fetch_model(ref), *b = fetch_model(id);
    ck_assert_int_eq(smlt_model_num_params(a), smlt_model_num_params(b));
    ck_assert_int_eq(smlt_model_step(a), smlt_model_step(b));
    const float *va = smlt_model_values(a), *vb = smlt_model_values(b);
    uint64_t differ = 0;
    double maxd = 0;
    for (uint64_t k = 0; k < smlt_model_num_params(a); k++) {
        if (va[k] != vb[k]) {
            differ++;
            maxd = fmax(maxd, fabs((double)va[k] - (double)vb[k]));
        }
    }
    ck_assert_msg(differ == 0, "%llu of %llu parameters differ from the uninterrupted run "
                  "(max %g)", (unsigned long long)differ,
                  (unsigned long long)smlt_model_num_params(a), maxd);
    smlt_model_free(a);
    smlt_model_free(b);
    free(ref);
    free(id);
}
END_TEST

/* (c) Wrong specs: 400 with the field named first; the daemon goes on. */
START_TEST(bad_specs_refused)
{
    struct {
        const char *spec, *field;
    } bad[] = {
        {"{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 1, \"budget_usd\": -3}",
         "budget_usd"},
        {"{\"model\": \"resnet:50\", \"dataset\": \"%s\", \"epochs\": 1}", "model"},
        {"{\"model\": \"logreg:784-10\", \"epochs\": 1}", "dataset"},
        {"{\"model\": \"logreg:784-10\", \"dataset\": \"%s/nowhere\", \"epochs\": 1}", "dataset"},
        {"{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 1, \"frobnicate\": 1}",
         "frobnicate"},
        {"{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 1, \"workers\": 8, "
         "\"platform\": {\"concurrency\": 4}}",
         "workers"},
        {"{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 0}", "epochs"},
        {"{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 1, \"sync\": \"bsp\", "
         "\"staleness\": 3}",
         "staleness"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char spec[1024];
        snprintf(spec, sizeof spec, bad[i].spec, dataset);
        json_t *o = NULL;
        long code = ct_http_json(coord.port, "POST", "/api/jobs", CT_ADMIN, spec, &o);
        ck_assert_msg(code == 400, "spec %zu: HTTP %ld", i, code);
        const char *msg = ct_str(o, "error");
        ck_assert_msg(!strncmp(msg, bad[i].field, strlen(bad[i].field)),
                      "spec %zu: \"%s\" does not start with %s", i, msg, bad[i].field);
        json_decref(o);
    }
    /* Not JSON, not an object, empty, over 1 MiB. */
    const char *junk[] = {"{\"model\": ", "[1, 2]", "", "\x01\x02\xff"};
    for (size_t i = 0; i < 4; i++) {
        long code = ct_http(coord.port, "POST", "/api/jobs", CT_ADMIN, junk[i], NULL);
        ck_assert_msg(code == 400, "junk %zu: HTTP %ld", i, code);
    }
    size_t big = (1u << 20) + 100;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    huge[big] = '\0';
    long code = ct_http(coord.port, "POST", "/api/jobs", CT_ADMIN, huge, NULL);
    free(huge);
    ck_assert_msg(code == 413 || code == 400, "1 MiB body: HTTP %ld", code);
    /* Still serving, nothing was created, and the refusals were counted. */
    json_t *o = NULL;
    ck_assert_int_eq(ct_http_json(coord.port, "GET", "/api/health", NULL, NULL, &o), 200);
    ck_assert(json_is_true(json_object_get(o, "ok")));
    json_decref(o);
    ck_assert_int_eq(ct_http_json(coord.port, "GET", "/api/jobs", NULL, NULL, &o), 200);
    ck_assert_int_eq(json_array_size(json_object_get(o, "jobs")), 0);
    json_decref(o);
    char *m = NULL;
    ck_assert_int_eq(ct_http(coord.port, "GET", "/metrics", NULL, NULL, &m), 200);
    const char *r = strstr(m, "\nsmlt_jobs_refused_total ");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_ge(atoi(r + strlen("\nsmlt_jobs_refused_total ")), 8);
    free(m);
    /* Unknown jobs and resources. */
    ck_assert_int_eq(ct_http(coord.port, "GET", "/api/jobs/job-9999", NULL, NULL, NULL), 404);
    ck_assert_int_eq(ct_http(coord.port, "GET", "/api/jobs/job-9999/model", NULL, NULL, NULL), 404);
    ck_assert_int_eq(ct_http(coord.port, "POST", "/api/jobs/job-9999/cancel", CT_ADMIN, NULL, NULL),
                     404);
    ck_assert_int_eq(ct_http(coord.port, "GET", "/nothing", NULL, NULL, NULL), 404);
}
END_TEST

/* 1 if the arrays of records a and b have the same length and every field of each record of a
 * has the same value in b's (restored records may carry more: the journal's "t" and "type"). */
static int same_records(const json_t *a, const json_t *b)
{
    if (!json_is_array(a) || !json_is_array(b) || json_array_size(a) != json_array_size(b))
        return 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        const json_t *ra = json_array_get(a, i), *rb = json_array_get(b, i);
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)ra, k, v)
        {
            if (!json_equal(v, json_object_get(rb, k))) {
                fprintf(stderr, "record %zu: field %s differs\n", i, k);
                dump(ra);
                dump(rb);
                return 0;
            }
        }
    }
    return 1;
}

/* (d) A finished job's history comes back from its journal after a restart. */
START_TEST(journal_restores_history)
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 3, "
             "\"workers\": 2, \"shards\": 2, \"optimizer\": {\"kind\": \"sgd\", \"lr\": 0.1}}",
             dataset);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *before = ct_wait_job(coord.port, id, 120);
    ck_assert_ptr_nonnull(before);
    if (strcmp(ct_str(before, "state"), "succeeded"))
        dump(before);
    ck_assert_str_eq(ct_str(before, "state"), "succeeded");
    ck_assert_int_eq(json_array_size(json_object_get(before, "series")), 3);
    char path[256];
    snprintf(path, sizeof path, "/api/jobs/%s/model", id);
    char *model_before = NULL;
    ck_assert_int_eq(ct_http(coord.port, "GET", path, NULL, NULL, &model_before), 200);

    /* Stop by pid, start again on the same data directory. */
    int st = test_daemon_stop(&coord);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, NULL), 0);
    json_t *after = NULL;
    snprintf(path, sizeof path, "/api/jobs/%s", id);
    ck_assert_int_eq(ct_http_json(coord.port, "GET", path, NULL, NULL, &after), 200);
    ck_assert_str_eq(ct_str(after, "state"), "succeeded");
    ck_assert(same_records(json_object_get(before, "series"), json_object_get(after, "series")));
    ck_assert(ct_num(after, "test_accuracy") == ct_num(before, "test_accuracy"));
    ck_assert_int_eq((long long)ct_num(after, "step"), (long long)ct_num(before, "step"));
    ck_assert(fabs(ct_num(after, "cost_usd") - ct_num(before, "cost_usd")) < 1e-9);
    /* How long it ran, from the journal's times (it read 0 once: the time was dropped). */
    ck_assert_msg(ct_num(after, "elapsed_s") > 0 &&
                      fabs(ct_num(after, "elapsed_s") - ct_num(before, "elapsed_s")) < 0.5,
                  "elapsed %.3f s after the restart, %.3f s before", ct_num(after, "elapsed_s"),
                  ct_num(before, "elapsed_s"));
    /* Its workers' figures are not kept: no overhead share (it read 100 % once), rather than
     * a wrong one. */
    ck_assert(json_object_get(before, "overhead_share") != NULL);
    ck_assert_ptr_null(json_object_get(after, "overhead_share"));
    ck_assert_int_eq((long long)ct_num(after, "workers"), 2);
    ck_assert_int_eq((long long)ct_num(after, "shards"), 2);
    ck_assert(same_records(json_object_get(before, "events"), json_object_get(after, "events")));
    ck_assert_str_eq(ct_str(json_object_get(after, "spec"), "model"), "logreg:784-10");
    /* The model file and the listing survive too; new jobs get new ids. */
    snprintf(path, sizeof path, "/api/jobs/%s/model", id);
    char *model_after = NULL;
    ck_assert_int_eq(ct_http(coord.port, "GET", path, NULL, NULL, &model_after), 200);
    ck_assert_str_eq(model_before, model_after);
    free(model_before);
    free(model_after);
    json_t *list = NULL;
    ck_assert_int_eq(ct_http_json(coord.port, "GET", "/api/jobs", NULL, NULL, &list), 200);
    ck_assert_int_eq(json_array_size(json_object_get(list, "jobs")), 1);
    json_decref(list);
    snprintf(spec, sizeof spec,
             "{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 1, \"workers\": 1, "
             "\"shards\": 1}",
             dataset);
    char *id2 = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id2 != NULL, "submit: %s", err);
    ck_assert_str_ne(id2, id);
    json_t *j2 = ct_wait_job(coord.port, id2, 120);
    ck_assert_str_eq(ct_str(j2, "state"), "succeeded");
    json_decref(j2);
    json_decref(before);
    json_decref(after);
    free(id);
    free(id2);
}
END_TEST

/* (e) Mutating calls need the admin token: 401 without it or with a wrong one. */
START_TEST(admin_token_required)
{
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 1}", dataset);
    const char *tokens[] = {NULL, "wrong-token", "", CT_ADMIN "x", "test-coordinator-admin-toke"};
    for (int i = 0; i < 5; i++) {
        json_t *o = NULL;
        long code = ct_http_json(coord.port, "POST", "/api/jobs", tokens[i], spec, &o);
        ck_assert_msg(code == 401, "token %d: HTTP %ld", i, code);
        ck_assert_ptr_nonnull(strstr(ct_str(o, "error"), "token"));
        json_decref(o);
    }
    char err[512];
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    char path[256];
    const char *subs[] = {"cancel", "scale", "checkpoint"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "/api/jobs/%s/%s", id, subs[i]);
        ck_assert_int_eq(ct_http(coord.port, "POST", path, NULL, "{\"workers\": 2}", NULL), 401);
        ck_assert_int_eq(ct_http(coord.port, "POST", path, "nope", "{\"workers\": 2}", NULL), 401);
    }
    /* Only the one job with the right token exists, and it was not canceled. */
    json_t *list = NULL;
    ck_assert_int_eq(ct_http_json(coord.port, "GET", "/api/jobs", NULL, NULL, &list), 200);
    ck_assert_int_eq(json_array_size(json_object_get(list, "jobs")), 1);
    json_decref(list);
    json_t *j = ct_wait_job(coord.port, id, 120);
    ck_assert_str_eq(ct_str(j, "state"), "succeeded");
    json_decref(j);
    /* Reads need no token. */
    snprintf(path, sizeof path, "/api/jobs/%s/logs?tail=5", id);
    ck_assert_int_eq(ct_http(coord.port, "GET", path, NULL, NULL, NULL), 200);
    free(id);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("coordinator");
    TCase *tc = tcase_create("jobs");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, bad_specs_refused);
    tcase_add_test(tc, admin_token_required);
    tcase_add_test(tc, journal_restores_history);
    tcase_add_test(tc, time_limit_cuts_and_continues);
    tcase_add_test(tc, killed_worker_is_reinvoked);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ct_main("coordinator", suite(), root, sizeof root, dataset, sizeof dataset, 12000, 2000);
}
