/* test_worker_http.c: `smlt-worker --http`, the OpenFaaS / Knative function server.
 *
 * The real binary listens on loopback port 0 (--max-inflight 1). A real coordinator with real
 * smlt-ps shards runs the job: its local runtime's `smlt-worker --invoke` is a relay that POSTs
 * each invocation to the server and prints the answer (fn_shim_main), logging every answer.
 * Covered:
 *   - /_/health and /_/ready; malformed bodies (not JSON, a field missing, empty, over the size
 *     limit) get 400/413 with {"error": ...} and the server goes on; a job then trains to its
 *     accuracy bar in slices (a 3 s function time limit cuts them) through POST /, every slice
 *     after the first warm (cold=false, init_s about 0);
 *   - while a slice trains: another POST gets 429 with {"error": ...}, and /_/health and
 *     /_/ready answer at once (the loop is free);
 *   - SIGTERM while a slice trains: the slice ends after its step with status "slice" and steps
 *     done, its request is answered, and the process exits 0. */
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
#include "smlt_util.h"
#include "worker_resp.h"

static char root[256];
static char dataset[256];
static char relay_log[300];
static struct test_daemon worker;
static struct fn_coord fc;

static int running_with_steps(const json_t *j)
{
    return !strcmp(ct_str(j, "state"), "running") && ct_num(j, "step") >= 20;
}

static void setup(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    const char *args[] = {"--http", "--max-inflight", "1", NULL};
    ck_assert_int_eq(test_daemon_start(&worker, "smlt-worker", args, 600), 0);
    ct_note_dir(root, worker.dir);
    snprintf(relay_log, sizeof relay_log, "%s/relay.log", worker.dir);
    setenv("SMLT_TEST_RELAY_LOG", relay_log, 1);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", worker.port);
    ck_assert_int_eq(fn_coord_start(&fc, root, url), 0);
}

static void teardown(void)
{
    fn_coord_stop(&fc);
    unlink(relay_log);
    test_daemon_stop(&worker);
}

static void dump_worker_log(void)
{
    test_daemon_dump_log(&worker);
}

/* Submits a job of epochs; with wait_running, returns once it has trained 20 steps (its first
 * slice is then running). */
static char *submit(int epochs, int time_limit_s, int wait_running)
{
    char err[512];
    char *id = fn_submit(&fc, "mlp:784-512-512-10", dataset, epochs, time_limit_s, err,
                         sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    if (wait_running) {
        json_t *j = ct_wait_until(fc.d.port, id, 120, running_with_steps);
        ck_assert_msg(j && running_with_steps(j), "the job never trained");
        json_decref(j);
    }
    return id;
}

/* The relay's answers so far: their HTTP status and parsed bodies, up to max. */
static int relay_answers(long *codes, struct worker_resp *out, int max)
{
    FILE *f = fopen(relay_log, "r");
    static char line[8192];
    int n = 0;
    while (f && n < max && fgets(line, sizeof line, f)) {
        char *body = NULL;
        codes[n] = strtol(line, &body, 10);
        line[strcspn(line, "\n")] = '\0';
        if (worker_resp_parse(body, &out[n]) != 0)
            memset(&out[n], 0, sizeof out[n]);
        n++;
    }
    if (f)
        fclose(f);
    return n;
}

/* POST / with body; returns the status and checks the JSON error of a refusal. */
static long post_refused(const char *body, long want)
{
    json_t *o = NULL;
    long code = ct_http_json(worker.port, "POST", "/", NULL, body, &o);
    ck_assert_msg(code == want, "POST / %.40s: %ld, not %ld", body, code, want);
    ck_assert_msg(o && strlen(ct_str(o, "error")) > 5, "a refusal without an error message");
    json_decref(o);
    return code;
}


/* Health, readiness, malformed bodies, then a job in warm slices through POST /. */
START_TEST(http_serves_slices)
{
    char *out = NULL;
    ck_assert_int_eq(ct_http(worker.port, "GET", "/_/health", NULL, NULL, &out), 200);
    free(out);
    ck_assert_int_eq(ct_http(worker.port, "GET", "/_/ready", NULL, NULL, &out), 200);
    free(out);
    post_refused("not json", 400);
    post_refused("{\"coordinator\": \"127.0.0.1:1\", \"token\": \"t\"}", 400);
    post_refused("", 400);
    post_refused("{\"coordinator\": \"\", \"invocation\": \"a\", \"token\": \"b\"}", 400);
    static char big[70000];
    memset(big, ' ', sizeof big - 1);
    ck_assert_int_eq(ct_http(worker.port, "POST", "/", NULL, big, &out), 413);
    free(out);
    ck_assert_int_eq(ct_http(worker.port, "GET", "/", NULL, NULL, &out), 405);
    free(out);
    /* The server goes on: a job trains through it, its slices cut by a 3 s time limit. */
    char *id = submit(ct_quick() ? 1 : 2, 3, 0);
    json_t *j = fn_wait_succeeded(&fc, id, 0.70, dump_worker_log);
    long codes[256];
    static struct worker_resp r[256];
    int n = relay_answers(codes, r, 256), warm = 0, slices = 0;
    double warm_init = 0;
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(codes[i], 200);
        ck_assert_int_ne(r[i].status, SMLT__DONE_STATUS__DONE_FAILED);
        slices += r[i].steps > 0;
        if (i == 0) {
            ck_assert(r[i].cold);
        } else {
            ck_assert(!r[i].cold);
            warm++;
            warm_init = r[i].init_s > warm_init ? r[i].init_s : warm_init;
        }
    }
    fprintf(stderr, "http: %d invocations through POST / (%d warm, init_s at most %.4f s), "
                    "test accuracy %.4f\n",
            n, warm, warm_init, ct_num(j, "test_accuracy"));
    ck_assert_int_ge(n, 2);
    ck_assert_int_eq(slices, n);
    ck_assert_msg(warm_init < 0.05, "a warm invocation spent %.3f s initializing", warm_init);
    ck_assert_int_eq(ct_http(worker.port, "GET", "/_/health", NULL, NULL, &out), 200);
    free(out);
    json_decref(j);
    free(id);
}
END_TEST

/* While a slice trains: 429 beyond --max-inflight, health and readiness at once. */
START_TEST(http_busy_while_training)
{
    char *id = submit(ct_quick() ? 1 : 2, 120, 1);
    char inv[300];
    snprintf(inv, sizeof inv,
             "{\"coordinator\": \"%s\", \"invocation\": \"%s/0/99\", \"token\": \"x\"}",
             fc.d.addr, id);
    post_refused(inv, 429);
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        char *out = NULL;
        double t0 = smlt_now_mono();
        ck_assert_int_eq(ct_http(worker.port, "GET", i % 2 ? "/_/ready" : "/_/health", NULL,
                                 NULL, &out), 200);
        double dt = smlt_now_mono() - t0;
        worst = dt > worst ? dt : worst;
        free(out);
    }
    json_t *j = fn_wait_succeeded(&fc, id, 0.70, dump_worker_log);
    fprintf(stderr, "http: health and readiness while a slice trained: at most %.1f ms\n",
            worst * 1000);
    ck_assert_msg(worst < 0.5, "the loop was busy for %.3f s", worst);
    json_decref(j);
    free(id);
}
END_TEST

/* SIGTERM while a slice trains: answered with where it got to, exit 0. */
START_TEST(http_sigterm_drains)
{
    char *id = submit(ct_quick() ? 2 : 4, 120, 1);
    long codes[16];
    struct worker_resp r[16];
    ck_assert_int_eq(relay_answers(codes, r, 16), 0); /* the first slice still runs */
    double t0 = smlt_now_mono();
    ck_assert_int_eq(kill(worker.pid, SIGTERM), 0);
    int st = 0;
    pid_t got = 0;
    while ((got = waitpid(worker.pid, &st, WNOHANG)) == 0 && smlt_now_mono() - t0 < 60)
        usleep(10000);
    double dt = smlt_now_mono() - t0;
    ck_assert_int_eq(got, worker.pid);
    worker.pid = 0;
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    int n = relay_answers(codes, r, 16);
    ck_assert_int_ge(n, 1);
    ck_assert_int_eq(codes[0], 200);
    ck_assert_int_eq(r[0].status, SMLT__DONE_STATUS__DONE_SLICE);
    ck_assert_int_gt((long long)r[0].steps, 0);
    fprintf(stderr, "http: SIGTERM mid-slice: answered (status slice, %llu steps, next step "
                    "%llu) and exited 0 in %.3f s\n",
            (unsigned long long)r[0].steps, (unsigned long long)r[0].next_step, dt);
    free(id);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("worker_http");
    TCase *tc = tcase_create("http");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, http_serves_slices);
    tcase_add_test(tc, http_busy_while_training);
    tcase_add_test(tc, http_sigterm_drains);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    /* Started by the coordinator's local runtime as its smlt-worker: the relay. */
    if (argc == 2 && !strcmp(argv[1], "--invoke"))
        return fn_shim_main();
    return ct_main("worker_http", suite(), root, sizeof root, dataset, sizeof dataset, 12000,
                   2000);
}
