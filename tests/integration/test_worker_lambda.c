/* test_worker_lambda.c: smlt-worker as a Lambda custom runtime, driven through the Runtime API.
 *
 * The real smlt-worker binary runs with no arguments and AWS_LAMBDA_RUNTIME_API pointing at the
 * test's own Runtime API server (fn_test.h), which sends a real Lambda-Runtime-Deadline-Ms
 * (epoch milliseconds) and records every response and error. A real coordinator with real
 * smlt-ps shards runs the job: its local runtime's `smlt-worker --invoke` is a relay that hands
 * each invocation to the server as an event (fn_shim_main). Covered:
 *   - real training slices: a job trains to its accuracy bar in slices that Lambda's deadline
 *     (3 s) ends: each ends "time_up" with steps done, and its response is posted before the
 *     deadline, inside the margin (max(1 s, 5%));
 *   - a warm second invocation: the same process, cold=false and init_s about 0;
 *   - a deadline close to expiry (0.6 s, inside the margin): no step starts, the response is
 *     posted in time with status time_up, and the job goes on;
 *   - malformed events (not JSON, a field missing, empty, over the size limit, a NUL byte) get
 *     POST .../error with errorType Smlt.InvalidEvent and its header, and the loop goes on: a
 *     valid invocation the coordinator refuses gets a response ("failed"), and a job trains;
 *   - the process is the same throughout, and SIGTERM ends an idle one with 0;
 *   - init failures (a bad SMLT_LOG_LEVEL) go to .../init/error with exit 1; an unreachable
 *     Runtime API exits 1, an AWS_LAMBDA_RUNTIME_API that is not host:port exits 2. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coord_test.h"
#include "fn_test.h"
#include "smlt.pb-c.h"
#include "smlt_proc.h"
#include "smlt_util.h"
#include "worker_resp.h"

static char root[256];
static char dataset[256];
static char wdir[300];
static struct fn_coord fc;
static struct rapi *api;
static pid_t lambda_pid;

/* The Lambda worker: `smlt-worker` with no arguments, as a custom runtime's bootstrap. */
static pid_t start_lambda(void)
{
    char env[64], log[400];
    snprintf(env, sizeof env, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d", rapi_port(api));
    snprintf(log, sizeof log, "%s/lambda.log", wdir);
    const char *argv[] = {test_bin("smlt-worker"), NULL};
    const char *envs[] = {env, NULL};
    struct smlt_proc_opts o = {.log_path = log, .watchdog_s = 600, .die_with_parent = 1,
                               .env = envs};
    return smlt_proc_spawn(argv, &o);
}

static void dump_lambda_log(void)
{
    char path[400], line[1024];
    snprintf(path, sizeof path, "%s/lambda.log", wdir);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        fprintf(stderr, "lambda: %s", line);
    if (f)
        fclose(f);
}

static void setup(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    api = rapi_start(60);
    ck_assert_ptr_nonnull(api);
    snprintf(wdir, sizeof wdir, "%s/lambda.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(wdir));
    ct_note_dir(root, wdir);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/test/relay", rapi_port(api));
    ck_assert_int_eq(fn_coord_start(&fc, root, url), 0);
    lambda_pid = start_lambda();
    ck_assert_int_gt(lambda_pid, 0);
}

static void teardown(void)
{
    /* Idle on GET next: SIGTERM ends it at once, with 0. */
    int st = lambda_pid > 0 ? smlt_proc_stop(lambda_pid, 5000) : -1;
    lambda_pid = 0;
    fn_coord_stop(&fc);
    rapi_stop(api);
    ct_rm_rf(wdir);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the idle Lambda worker ended with "
                  "status %d", st);
}

/* A job of one worker whose epoch takes a few seconds: several 3 s Lambda slices. */
static char *submit(int epochs)
{
    char err[512];
    char *id = fn_submit(&fc, "mlp:784-512-512-10", dataset, epochs, 60, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    return id;
}

/* The response of record r, parsed. */
static void resp_of(const struct rapi_rec *r, struct worker_resp *o)
{
    ck_assert_msg(worker_resp_parse(r->body, o) == 0, "not a response line: %s", r->body);
}

/* Waits until the worker has posted n responses to relayed events. */
static int relayed_responses(void)
{
    int n = 0;
    for (int i = 0; i < rapi_count(api); i++) {
        const struct rapi_rec *r = rapi_rec(api, i);
        n += r->relayed && !strcmp(r->kind, "response");
    }
    return n;
}

static void wait_relayed(int n, double timeout_s)
{
    double until = smlt_now_mono() + timeout_s;
    while (relayed_responses() < n && smlt_now_mono() < until)
        usleep(20000);
}

/* Real slices ended by Lambda's deadline, warm invocations, and one deadline inside the
 * margin. */
START_TEST(lambda_trains_in_deadline_slices)
{
    rapi_set_deadline(api, 3.0, 0);
    char *id = submit(ct_quick() ? 2 : 3);
    /* After the first slice, one event gets a deadline 0.6 s away (the next continuation, or
     * the one after when the next was handed out first): a warm one. */
    wait_relayed(1, 120);
    rapi_set_deadline(api, 3.0, 0.6);
    json_t *j = fn_wait_succeeded(&fc, id, 0.70, dump_lambda_log);
    int n = 0, warm = 0, time_up = 0, close = 0;
    double min_lead = 1e9, warm_init = 0, steps = 0;
    for (int i = 0; i < rapi_count(api); i++) {
        const struct rapi_rec *r = rapi_rec(api, i);
        if (!r->relayed || strcmp(r->kind, "response"))
            continue;
        struct worker_resp o;
        resp_of(r, &o);
        double lead = r->deadline_ms / 1000.0 - r->at, given = r->deadline_ms / 1000.0 - r->handed;
        ck_assert_msg(lead > 0, "response %s posted %.3f s after its deadline", r->id, -lead);
        ck_assert_msg(o.status != SMLT__DONE_STATUS__DONE_FAILED, "%s", r->body);
        if (given < 1.0) {
            /* Inside the margin: no step starts; the response goes at once. */
            close++;
            ck_assert_int_eq(o.status, SMLT__DONE_STATUS__DONE_TIME_UP);
            ck_assert_int_eq((long long)o.steps, 0);
        } else if (o.status == SMLT__DONE_STATUS__DONE_TIME_UP) {
            time_up++;
            ck_assert_msg(o.steps > 0, "%s", r->body);
            /* The slice ended a margin (1 s) before the deadline, Done and the POST took the
             * rest. */
            ck_assert_msg(lead > 0.3, "response %s only %.3f s before its deadline", r->id, lead);
            min_lead = lead < min_lead ? lead : min_lead;
            steps += (double)o.steps;
        }
        if (n++ == 0) {
            ck_assert_msg(o.cold, "the first invocation is cold: %s", r->body);
        } else if (!o.cold) {
            warm++;
            warm_init = o.init_s > warm_init ? o.init_s : warm_init;
        }
    }
    fprintf(stderr, "lambda: %d invocations (%d warm, %d time_up with %.0f steps each on "
                    "average, %d inside the margin); responses posted at least %.3f s before "
                    "Lambda's deadline; warm init_s at most %.4f s; test accuracy %.4f\n",
            n, warm, time_up, time_up ? steps / time_up : 0, close, min_lead, warm_init,
            ct_num(j, "test_accuracy"));
    ck_assert_int_ge(time_up, 2);
    ck_assert_int_ge(warm, 2);
    ck_assert_int_eq(close, 1);
    ck_assert_msg(warm_init < 0.05, "a warm invocation spent %.3f s initializing", warm_init);
    ck_assert_int_eq(rapi_wait(api, "error", 0, 0), 0);
    ck_assert_int_eq(rapi_wait(api, "unknown_id", 0, 0), 0);
    ck_assert(smlt_proc_alive(lambda_pid)); /* one process served them all */
    json_decref(j);
    free(id);
}
END_TEST

/* Malformed events get errors and the loop goes on. */
START_TEST(lambda_malformed_events)
{
    static char big[70000];
    memset(big, ' ', sizeof big - 1);
    memcpy(big + sizeof big - 3, "{}", 2);
    const char *bad[] = {"not json", "{\"coordinator\": \"127.0.0.1:1\"}", "", "[1, 2]",
                         "{\"coordinator\": 5, \"invocation\": \"a\", \"token\": \"b\"}", big};
    int nbad = (int)(sizeof bad / sizeof bad[0]);
    for (int i = 0; i < nbad; i++)
        ck_assert_int_eq(rapi_push(api, bad[i]), 0);
    ck_assert_int_eq(rapi_wait(api, "error", nbad, 30), nbad);
    for (int i = 0; i < rapi_count(api); i++) {
        const struct rapi_rec *r = rapi_rec(api, i);
        ck_assert_str_eq(r->kind, "error");
        ck_assert_str_eq(r->error_type, "Smlt.InvalidEvent");
        json_error_t je;
        json_t *e = json_loads(r->body, 0, &je);
        ck_assert_msg(e != NULL, "error body is not JSON: %s", r->body);
        ck_assert_str_eq(ct_str(e, "errorType"), "Smlt.InvalidEvent");
        ck_assert_msg(strlen(ct_str(e, "errorMessage")) > 10, "%s", r->body);
        fprintf(stderr, "malformed event %d: %s\n", i, ct_str(e, "errorMessage"));
        json_decref(e);
    }
    /* A well-formed invocation the coordinator does not know: a response, "failed". */
    char inv[400], path[400], rpc[128] = "";
    snprintf(path, sizeof path, "%s/rpc.addr", fc.data_dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f && fgets(rpc, sizeof rpc, f), "no %s", path);
    fclose(f);
    rpc[strcspn(rpc, "\n")] = '\0';
    snprintf(inv, sizeof inv,
             "{\"coordinator\": \"%s\", \"invocation\": \"nojob/0/1\", \"token\": \"x\"}",
             rpc);
    ck_assert_int_eq(rapi_push(api, inv), 0);
    ck_assert_int_eq(rapi_wait(api, "response", 1, 30), 1);
    struct worker_resp o;
    resp_of(rapi_rec(api, nbad), &o);
    ck_assert_int_eq(o.status, SMLT__DONE_STATUS__DONE_FAILED);
    ck_assert_msg(strstr(o.error, "unknown invocation") != NULL, "%s", o.error);
    /* The loop goes on: the same process trains a job. */
    char *id = submit(1);
    json_t *j = fn_wait_succeeded(&fc, id, 0.70, dump_lambda_log);
    ck_assert_int_ge(relayed_responses(), 1);
    ck_assert_int_eq(rapi_wait(api, "init_error", 0, 0), 0);
    ck_assert(smlt_proc_alive(lambda_pid));
    json_decref(j);
    free(id);
}
END_TEST

/* Waits up to timeout_s for pid to exit; returns its wait status, or -1. */
static int wait_exit(pid_t pid, double timeout_s)
{
    double until = smlt_now_mono() + timeout_s;
    int st = 0;
    while (smlt_now_mono() < until) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return st;
        usleep(10000);
    }
    smlt_proc_stop(pid, 1000);
    return -1;
}

static pid_t spawn_env(const char *const *envs)
{
    char log[400];
    snprintf(log, sizeof log, "%s/init.log", root);
    const char *argv[] = {test_bin("smlt-worker"), NULL};
    struct smlt_proc_opts o = {.log_path = log, .watchdog_s = 60, .die_with_parent = 1,
                               .env = envs};
    pid_t pid = smlt_proc_spawn(argv, &o);
    ck_assert_int_gt(pid, 0);
    return pid;
}

/* Init failures go to init/error and the process exits 1; an AWS_LAMBDA_RUNTIME_API that is
 * not host:port ends it with 2 (there is nowhere to report it). */
START_TEST(lambda_init_failures)
{
    struct rapi *a = rapi_start(60);
    ck_assert_ptr_nonnull(a);
    char env[64];
    snprintf(env, sizeof env, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d", rapi_port(a));
    const char *bad_level[] = {env, "SMLT_LOG_LEVEL=chatty", NULL};
    int st = wait_exit(spawn_env(bad_level), 20);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "bad SMLT_LOG_LEVEL: status %d", st);
    ck_assert_int_eq(rapi_wait(a, "init_error", 1, 5), 1);
    const struct rapi_rec *r = rapi_rec(a, 0);
    ck_assert_str_eq(r->error_type, "Smlt.InitError");
    ck_assert_msg(strstr(r->body, "SMLT_LOG_LEVEL") && strstr(r->body, "\"errorType\""), "%s",
                  r->body);
    ck_assert_int_eq(rapi_handed(a), 0);
    rapi_stop(a);
    /* Nothing listens there: GET next fails, and so does reporting it; exit 1. */
    const char *unreachable[] = {"AWS_LAMBDA_RUNTIME_API=127.0.0.1:1", NULL};
    st = wait_exit(spawn_env(unreachable), 20);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "unreachable: status %d", st);
    const char *not_addr[] = {"AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:1/x", NULL};
    st = wait_exit(spawn_env(not_addr), 20);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "not host:port: status %d", st);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("worker_lambda");
    TCase *tc = tcase_create("runtime_api");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, lambda_trains_in_deadline_slices);
    tcase_add_test(tc, lambda_malformed_events);
    suite_add_tcase(s, tc);
    TCase *init = tcase_create("init");
    tcase_set_timeout(init, 120);
    tcase_add_test(init, lambda_init_failures);
    suite_add_tcase(s, init);
    return s;
}

int main(int argc, char **argv)
{
    /* Started by the coordinator's local runtime as its smlt-worker: the relay. */
    if (argc == 2 && !strcmp(argv[1], "--invoke"))
        return fn_shim_main();
    return ct_main("worker_lambda", suite(), root, sizeof root, dataset, sizeof dataset, 12000,
                   2000);
}
