/* test_platform_lambda.c: the demo job on --platform lambda, end to end, through a Lambda of
 * the project's own (tests/tools/lambda_emulator.py, run with /usr/bin/python3 for Debian's
 * botocore): the coordinator's real lambda backend (coordinator/coord_backend_lambda.c: the
 * Invoke API, SigV4 by libcurl, credentials from its environment) invokes it on loopback; it
 * checks every signature against botocore's, and runs each instance as Lambda runs a custom
 * runtime: the real bootstrap with AWS_LAMBDA_RUNTIME_API pointing at a Runtime API of its
 * own, kept warm between invocations. The shards are the coordinator's local smlt-ps.
 *
 * The bootstrap is the one of the Lambda zip that deploy/lambda/package.sh makes from this
 * build's smlt-worker, unzipped as Lambda unzips it (its loader and libraries bundled): made
 * once, before the tests, in about 7 s. The sanitizer pass runs build/bin/smlt-worker itself
 * as the bootstrap: its binaries need the sanitizer runtimes, and tests/deploy does not
 * package them either. Without zip or unzip the Release pass does the same, and says so.
 *
 *   - emulator_answers_as_lambda: what the other cases rely on, asked directly (signed by
 *     libcurl as the backend signs): a wrong secret is refused (403 InvalidSignatureException),
 *     an unknown function or qualifier is 404; the real bootstrap answers a malformed event
 *     with a function error (Smlt.InvalidEvent), its REPORT line has an Init Duration on the
 *     cold start only, from the same warm instance; an instance that stops answering is killed
 *     by its pid at the function's timeout ("Task timed out after 3.00 seconds").
 *   - demo_on_lambda: the demo job (the Fashion-MNIST MLP 784-256-128-10, 4 workers, 2
 *     shards, momentum lr 0.05, target 88%; 80% on a slice of the data in the quick pass)
 *     succeeds; slices of 4 s (1 s in the quick pass) make continuations, served warm: 4
 *     cold starts, every other invocation warm; every shard applied every step once; every
 *     request's signature was checked and passed; and the job's bill is what the REPORT lines
 *     billed: the same milliseconds, at the function's 2048 MB (not the job's 1769 MB).
 *   - wrong_credentials_fail_the_job: a coordinator whose secret is not the emulator's gets
 *     403s; the job fails naming InvalidSignatureException after a bounded number of tries,
 *     no instance ever starts, and the coordinator goes on serving.
 *   - throttles_are_retried: reserved concurrency 2 for a 2-worker job, all of it taken
 *     elsewhere when the job starts: its invocations get 429 TooManyRequestsException until
 *     it is freed; the backend retries them with backoff (no rank ever sees a failure), the
 *     job succeeds, never over the limit, on the alias it names (--qualifier live).
 * Every process the test starts is stopped by its pid; everything is on loopback. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "coord_test.h"
#include "rpc_conn.h"
#include "smlt_aws.h"
#include "smlt_proc.h"
#include "smlt_util.h"

#define FN "smlt-worker"
#define AK "AKIDSMLTLAMBDATEST01"
#define SK "smlt/lambda+Test/SECRETKEY0123456789abcdEF"
#define TOK "smlt-test-session-token/with+chars=="
#define FN_MEMORY 2048 /* the function's; the jobs ask for the default 1769 */

static char root[256];
static char dataset[256];
static char data_dir[300];
static char zip_dir[300];    /* where the zip was made and unzipped ("" when not) */
static char bootstrap[400];  /* what the emulator's instances run */
static struct test_daemon coord, emu;

static const char *const GOOD_ENV[] = {"AWS_ACCESS_KEY_ID=" AK, "AWS_SECRET_ACCESS_KEY=" SK,
                                       "AWS_SESSION_TOKEN=" TOK, NULL};
static const char *const BAD_ENV[] = {"AWS_ACCESS_KEY_ID=" AK,
                                      "AWS_SECRET_ACCESS_KEY=not-the-emulators-secret",
                                      "AWS_SESSION_TOKEN=" TOK, NULL};

/* ---- the emulator and the coordinator ------------------------------------------------- */

/* Starts the emulator for function FN with FN_MEMORY MB and extra options (NULL-terminated);
 * it accepts GOOD_ENV's credentials. */
static void emu_start(const char *const *extra)
{
    const char *src = getenv("SMLT_SOURCE_DIR");
    ck_assert_msg(src != NULL, "SMLT_SOURCE_DIR is not set (ctest sets it)");
    ck_assert_msg(system("/usr/bin/python3 -c 'import botocore' 2>/dev/null") == 0,
                  "Debian's python3-botocore is missing (tools/deps.sh installs it)");
    char script[600], mem[16];
    snprintf(script, sizeof script, "%s/tests/tools/lambda_emulator.py", src);
    snprintf(mem, sizeof mem, "%d", FN_MEMORY);
    const char *argv[40] = {"/usr/bin/python3", script, "--function", FN, "--bootstrap",
                            bootstrap, "--memory", mem, "--region", "us-east-1"};
    int n = 10;
    for (int i = 0; extra && extra[i] && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    ck_assert_int_eq(test_daemon_start_argv(&emu, argv, GOOD_ENV, 600), 0);
    ct_note_dir(root, emu.dir);
}

/* The emulator's counters (a new reference). */
static json_t *emu_stats(void)
{
    json_t *j = NULL;
    ck_assert_int_eq(ct_http_json(emu.port, "GET", "/_emulator/stats", NULL, NULL, &j), 200);
    ck_assert_ptr_nonnull(j);
    return j;
}

/* The coordinator on --platform lambda against the emulator, with env's credentials and
 * qualifier (NULL: none). */
static void coord_start(const char *const *env, const char *qualifier)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", emu.port);
    const char *extra[] = {"--platform", "lambda", "--function", FN, "--region", "us-east-1",
                           "--lambda-endpoint", url, qualifier ? "--qualifier" : NULL,
                           qualifier, NULL};
    ck_assert_int_eq(ct_coord_start_env(&coord, data_dir, extra, env), 0);
}

/* Stops the coordinator by its pid; it must exit 0 (a sanitizer report would not). */
static void coord_stop_clean(void)
{
    int st = smlt_proc_stop(coord.pid, 10000);
    coord.pid = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        test_daemon_dump_log(&coord);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the coordinator ended with status %d",
                  st);
    test_daemon_stop(&coord);
}

static void setup(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    snprintf(data_dir, sizeof data_dir, "%s/data.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
}

static void teardown(void)
{
    test_daemon_stop(&coord);
    test_daemon_stop(&emu);
    ct_rm_rf(data_dir);
}

/* The job's events of kind (a count). */
static int events_of(const json_t *job, const char *kind)
{
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(json_object_get(job, "events"), i, e)
        n += !strcmp(ct_str(e, "kind"), kind);
    return n;
}

/* The job's bill is the emulator's: as many invocations, the same billed ms and MB-ms (the
 * REPORT lines' Billed Duration at their Memory Size), and they are in its cost. */
static void check_billed_as_reported(const json_t *j, const json_t *e)
{
    const json_t *led = json_object_get(j, "ledger");
    ck_assert_int_eq((long long)ct_num(led, "invocations"), (long long)ct_num(e, "invocations"));
    ck_assert_int_eq((long long)ct_num(led, "billed_ms"), (long long)ct_num(e, "billed_ms"));
    ck_assert_int_eq((long long)ct_num(led, "mb_ms"), (long long)ct_num(e, "mb_ms"));
    double gb_s = ct_num(e, "mb_ms") / 1024.0 / 1000.0;
    ck_assert_msg(ct_num(led, "gb_s") > gb_s * 0.999999 && ct_num(led, "gb_s") < gb_s * 1.000001,
                  "ledger %.6f GB-s, REPORT lines %.6f", ct_num(led, "gb_s"), gb_s);
    ck_assert(ct_num(led, "function_usd") > 0);
    ck_assert(ct_num(j, "cost_usd") >=
              ct_num(led, "function_usd") + ct_num(led, "request_usd") - 1e-12);
}

/* ---- direct Invoke requests, signed as the backend signs them ------------------------- */

struct answer {
    long status;
    char ferr[64], etype[128], version[32];
    char log[8192];  /* the decoded X-Amz-Log-Result */
    char body[4096];
};

static void header_copy(const char *line, size_t n, const char *name, char *out, size_t len)
{
    size_t k = strlen(name);
    if (n <= k + 1 || strncasecmp(line, name, k) || line[k] != ':')
        return;
    const char *v = line + k + 1;
    while (*v == ' ')
        v++;
    size_t m = (size_t)(line + n - v);
    while (m && (v[m - 1] == '\r' || v[m - 1] == '\n'))
        m--;
    snprintf(out, len, "%.*s", (int)m, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t k = size * n;
    char b64[12000] = "";
    header_copy(p, k, "X-Amz-Function-Error", a->ferr, sizeof a->ferr);
    header_copy(p, k, "x-amzn-ErrorType", a->etype, sizeof a->etype);
    header_copy(p, k, "X-Amz-Executed-Version", a->version, sizeof a->version);
    header_copy(p, k, "X-Amz-Log-Result", b64, sizeof b64);
    if (b64[0] && smlt_base64_decode(b64, a->log, sizeof a->log) < 0)
        snprintf(a->log, sizeof a->log, "(bad base64)");
    return k;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t have = strlen(a->body), k = size * n;
    snprintf(a->body + have, sizeof a->body - have, "%.*s", (int)k, p);
    return k;
}

/* POSTs payload to the Invoke API at path (function and query), signed with AK and secret
 * and the session token TOK, asking for the log tail. Returns a->status (-1: no answer). */
static long invoke(const char *path, const char *secret, const char *payload, struct answer *a)
{
    memset(a, 0, sizeof *a);
    a->status = -1;
    char url[512], userpwd[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/2015-03-31/functions/%s", emu.port, path);
    snprintf(userpwd, sizeof userpwd, "%s:%s", AK, secret);
    CURL *h = curl_easy_init();
    ck_assert_ptr_nonnull(h);
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    hs = curl_slist_append(hs, "X-Amz-Invocation-Type: RequestResponse");
    hs = curl_slist_append(hs, "X-Amz-Log-Type: Tail");
    hs = curl_slist_append(hs, "x-amz-security-token: " TOK);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:lambda");
    curl_easy_setopt(h, CURLOPT_USERPWD, userpwd);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
    return a->status;
}

struct held {
    char payload[256];
    struct answer a;
};

static void *invoke_thread(void *arg)
{
    struct held *h = arg;
    invoke(FN "/invocations", SK, h->payload, &h->a);
    return NULL;
}

/* The pid of the emulator's instance in state (0: none). */
static pid_t instance_in(const char *state)
{
    json_t *e = emu_stats();
    size_t i;
    json_t *in;
    pid_t pid = 0;
    json_array_foreach(json_object_get(e, "instances"), i, in)
        if (!strcmp(ct_str(in, "state"), state))
            pid = (pid_t)ct_num(in, "pid");
    json_decref(e);
    return pid;
}

START_TEST(emulator_answers_as_lambda)
{
    const char *args[] = {"--timeout", "3", "--alias", "live=3", NULL};
    emu_start(args);
    struct answer a;
    /* Refusals: a wrong secret, an unknown function, an unknown qualifier. */
    ck_assert_int_eq(invoke(FN "/invocations", "wrong-secret", "{}", &a), 403);
    ck_assert_str_eq(a.etype, "InvalidSignatureException");
    ck_assert_ptr_nonnull(strstr(a.body, "signature we calculated does not match"));
    ck_assert_int_eq(invoke("no-such-fn/invocations", SK, "{}", &a), 404);
    ck_assert_str_eq(a.etype, "ResourceNotFoundException");
    ck_assert_int_eq(invoke(FN "/invocations?Qualifier=nope", SK, "{}", &a), 404);
    /* The real bootstrap answers a malformed event with a function error: cold, then warm
     * from the same instance; on the alias, its version runs. */
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(invoke(FN "/invocations?Qualifier=live", SK, "{\"x\": 1}", &a), 200);
        ck_assert_str_eq(a.ferr, "Unhandled");
        ck_assert_str_eq(a.version, "3");
        ck_assert_msg(strstr(a.body, "Smlt.InvalidEvent") != NULL, "%s", a.body);
        const char *rep = strstr(a.log, "\nREPORT RequestId: ");
        ck_assert_msg(rep && strstr(rep, "Billed Duration: ") && strstr(rep, "Memory Size: 2048 MB"),
                      "%s", a.log);
        ck_assert_msg((strstr(rep, "Init Duration: ") != NULL) == (k == 0), "%s", a.log);
    }
    json_t *e = emu_stats();
    ck_assert_int_eq((long long)ct_num(e, "cold_starts"), 1);
    ck_assert_int_eq((long long)ct_num(e, "warm_starts"), 1);
    ck_assert_int_eq((long long)ct_num(e, "signatures_refused"), 1);
    json_decref(e);
    /* An instance that stops answering (its coordinator never replies, and it is stopped
     * too) is killed by its pid when the 3 s timeout passes. */
    int port = 0, fd = rpc_net_listen("127.0.0.1:0", 4, &port);
    ck_assert_int_ge(fd, 0);
    struct held h;
    snprintf(h.payload, sizeof h.payload,
             "{\"coordinator\": \"127.0.0.1:%d\", \"invocation\": \"job-0001/0/1\", "
             "\"token\": \"t\"}", port);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, invoke_thread, &h), 0);
    pid_t pid = 0;
    for (int t = 0; t < 200 && !(pid = instance_in("busy")); t++)
        usleep(20 * 1000);
    ck_assert_int_gt(pid, 0);
    kill(pid, SIGSTOP);
    pthread_join(th, NULL);
    close(fd);
    ck_assert_int_eq(h.a.status, 200);
    ck_assert_str_eq(h.a.ferr, "Unhandled");
    ck_assert_msg(strstr(h.a.body, "Task timed out after 3.00 seconds") != NULL, "%s", h.a.body);
    const char *billed = strstr(h.a.log, "Billed Duration: ");
    ck_assert_msg(billed && atol(billed + strlen("Billed Duration: ")) >= 3000, "%s", h.a.log);
    for (int t = 0; t < 100 && smlt_proc_alive(pid); t++)
        usleep(20 * 1000);
    ck_assert_msg(!smlt_proc_alive(pid), "the timed-out instance %d still runs", (int)pid);
    e = emu_stats();
    ck_assert_int_eq((long long)ct_num(e, "timeouts"), 1);
    ck_assert_int_eq((long long)ct_num(e, "instances_killed"), 1);
    json_decref(e);
}
END_TEST

/* ---- the jobs --------------------------------------------------------------------------- */

START_TEST(demo_on_lambda)
{
    /* The function's timeout is above the job's slices, as a deployment sets it. */
    const char *args[] = {"--timeout", "60", NULL};
    emu_start(args);
    coord_start(GOOD_ENV, NULL);
    json_t *j = ct_demo_job(&coord, "lambda", dataset);
    const json_t *inv = json_object_get(j, "invocations");
    json_t *e = emu_stats();
    /* One cold start per worker; the continuations found their instances warm. */
    ck_assert_int_eq((long long)ct_num(inv, "cold"), 4);
    ck_assert(ct_num(inv, "warm") > 0);
    ck_assert_int_eq((long long)ct_num(inv, "total"), (long long)ct_num(e, "invocations"));
    ck_assert_int_eq((long long)ct_num(e, "cold_starts"), 4);
    ck_assert_int_eq((long long)ct_num(e, "warm_starts"), (long long)ct_num(inv, "warm"));
    ck_assert_int_eq((long long)ct_num(e, "responses"), (long long)ct_num(e, "invocations"));
    /* Every request was signed right, and nothing was throttled. */
    ck_assert_int_eq((long long)ct_num(e, "signatures_ok"), (long long)ct_num(e, "requests"));
    ck_assert_int_eq((long long)ct_num(e, "signatures_checked"), (long long)ct_num(e, "requests"));
    ck_assert_int_eq((long long)ct_num(e, "signatures_refused"), 0);
    ck_assert_int_eq((long long)ct_num(e, "requests"), (long long)ct_num(e, "invocations"));
    ck_assert_int_eq((long long)ct_num(e, "throttles"), 0);
    check_billed_as_reported(j, e);
    fprintf(stderr, "test_platform_lambda: %.2f%% test accuracy at step %.0f in %.1f s, %.0f "
                    "invocations (%.0f cold, %.0f warm), %.0f requests signed and checked, "
                    "%.0f ms billed at %d MB, $%.6f (bootstrap %s)\n",
            100 * ct_num(j, "test_accuracy"), ct_num(j, "step"), ct_num(j, "elapsed_s"),
            ct_num(inv, "total"), ct_num(inv, "cold"), ct_num(inv, "warm"),
            ct_num(e, "signatures_ok"), ct_num(e, "billed_ms"), FN_MEMORY, ct_num(j, "cost_usd"),
            bootstrap);
    json_decref(e);
    json_decref(j);
    coord_stop_clean();
}
END_TEST

START_TEST(wrong_credentials_fail_the_job)
{
    emu_start(NULL);
    coord_start(BAD_ENV, NULL);
    char spec[512], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 1, \"workers\": 2, "
             "\"shards\": 1, \"platform\": {\"kind\": \"lambda\", \"time_limit_s\": 4}}",
             dataset);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = ct_wait_job(coord.port, id, 120);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(!strcmp(ct_str(j, "state"), "failed"), "%s", ct_str(j, "state"));
    ck_assert_msg(strstr(ct_str(j, "error"), "InvalidSignatureException") &&
                      strstr(ct_str(j, "error"), "403"),
                  "%s", ct_str(j, "error"));
    json_t *e = emu_stats();
    long long refused = (long long)ct_num(e, "signatures_refused");
    ck_assert_int_gt(refused, 0);
    ck_assert_int_eq(refused, (long long)ct_num(e, "requests"));
    ck_assert_int_le(refused, 2 * 5); /* each rank tries a bounded number of times */
    ck_assert_int_eq((long long)ct_num(e, "invocations"), 0);
    ck_assert_int_eq(json_array_size(json_object_get(e, "instances")), 0);
    json_decref(e);
    /* No more tries once the job has failed, and the coordinator goes on serving. */
    sleep(2);
    e = emu_stats();
    ck_assert_int_eq((long long)ct_num(e, "requests"), refused);
    json_decref(e);
    ck_assert_int_eq(ct_http(coord.port, "GET", "/api/health", NULL, NULL, NULL), 200);
    json_t *list = NULL;
    ck_assert_int_eq(ct_http_json(coord.port, "GET", "/api/jobs", NULL, NULL, &list), 200);
    ck_assert_ptr_nonnull(list);
    json_decref(list);
    fprintf(stderr, "test_platform_lambda: wrong credentials: %lld requests refused; the job "
                    "failed: %s\n",
            refused, ct_str(j, "error"));
    json_decref(j);
    free(id);
    coord_stop_clean();
}
END_TEST

static int throttled_twice(void)
{
    json_t *e = emu_stats();
    int yes = ct_num(e, "throttles") >= 2;
    json_decref(e);
    return yes;
}

START_TEST(throttles_are_retried)
{
    const char *args[] = {"--timeout", "60", "--concurrency", "2", "--alias", "live=7", NULL};
    emu_start(args);
    coord_start(GOOD_ENV, "live");
    /* Callers elsewhere hold the function's whole reserved concurrency. */
    ck_assert_int_eq(ct_http(emu.port, "POST", "/_emulator/occupy", NULL, "{\"slots\": 2}", NULL),
                     200);
    char spec[512], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 2, \"workers\": 2, "
             "\"shards\": 1, \"platform\": {\"kind\": \"lambda\", \"time_limit_s\": 4}}",
             dataset);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    for (int t = 0; t < 600 && !throttled_twice(); t++)
        usleep(50 * 1000);
    ck_assert_msg(throttled_twice(), "the emulator throttled nothing in 30 s");
    usleep(300 * 1000);
    ck_assert_int_eq(ct_http(emu.port, "POST", "/_emulator/release", NULL, "{}", NULL), 200);
    json_t *j = ct_wait_job(coord.port, id, 300);
    ck_assert_ptr_nonnull(j);
    if (strcmp(ct_str(j, "state"), "succeeded"))
        test_daemon_dump_log(&coord);
    ck_assert_msg(!strcmp(ct_str(j, "state"), "succeeded"), "%s: %s", ct_str(j, "state"),
                  ct_str(j, "error"));
    ct_each_step_once(j, 1);
    /* The 429s were the backend's to retry: no rank saw an invocation fail. */
    ck_assert_int_eq(events_of(j, "retry"), 0);
    json_t *e = emu_stats();
    const json_t *inv = json_object_get(j, "invocations");
    ck_assert_int_eq((long long)ct_num(inv, "total"), (long long)ct_num(e, "invocations"));
    ck_assert_int_eq((long long)ct_num(inv, "lost"), 0);
    ck_assert_int_le((long long)ct_num(e, "peak_concurrency"), 2);
    ck_assert_int_eq((long long)ct_num(e, "signatures_refused"), 0);
    ck_assert_int_eq((long long)ct_num(e, "requests"),
                     (long long)ct_num(e, "invocations") + (long long)ct_num(e, "throttles"));
    ck_assert_int_eq((long long)ct_num(json_object_get(e, "executed_versions"), "7"),
                     (long long)ct_num(e, "invocations"));
    check_billed_as_reported(j, e);
    fprintf(stderr, "test_platform_lambda: throttled %.0f times at reserved concurrency 2; the "
                    "job succeeded with %.0f invocations on version 7 in %.1f s\n",
            ct_num(e, "throttles"), ct_num(inv, "total"), ct_num(j, "elapsed_s"));
    json_decref(e);
    json_decref(j);
    free(id);
    coord_stop_clean();
}
END_TEST

/* A torch job on Lambda: the bootstrap runs the training file in its Python child, inside the
 * instance, as on the container platforms. On AWS the function is the smlt-worker-torch
 * container image (Python, torch and the smlt package); here the zip's bootstrap finds the
 * build's package through SMLT_PYTHONPATH, which the emulator passes to its instances as
 * Lambda passes a function's environment. 2 workers, 1 shard, 3 epochs of a small torch MLP:
 * two cold starts, every step applied once, every request signed right. The sanitizer build
 * makes no Python package (its libsmlt would need the sanitizer runtime in python3): skipped
 * there, with this message. */
START_TEST(torch_job_on_lambda)
{
    if (ct_no_torch("test_platform_lambda: torch_job_on_lambda"))
        return;
    const char *bin = getenv("SMLT_BIN_DIR");
    ck_assert_msg(bin != NULL, "SMLT_BIN_DIR is not set (ctest sets it)");
    char pkg[600];
    snprintf(pkg, sizeof pkg, "%s/../python/smlt/__init__.py", bin);
    ck_assert_msg(access(pkg, R_OK) == 0, "no smlt package at %s (the build makes it with "
                  "python3-dev)", pkg);
    snprintf(pkg, sizeof pkg, "%s/../python", bin);
    setenv("SMLT_PYTHONPATH", pkg, 1);
    const char *args[] = {"--timeout", "120", NULL};
    emu_start(args);
    unsetenv("SMLT_PYTHONPATH");
    coord_start(GOOD_ENV, NULL);
    json_t *j = ct_torch_job(&coord, "lambda", dataset, 3, 0);
    const json_t *inv = json_object_get(j, "invocations");
    json_t *e = emu_stats();
    ck_assert_int_eq((long long)ct_num(inv, "cold"), 2);
    ck_assert_int_eq((long long)ct_num(e, "cold_starts"), 2);
    ck_assert_int_eq((long long)ct_num(inv, "total"), (long long)ct_num(e, "invocations"));
    ck_assert_int_eq((long long)ct_num(e, "signatures_ok"), (long long)ct_num(e, "requests"));
    check_billed_as_reported(j, e);
    fprintf(stderr, "test_platform_lambda: torch job %s on Lambda: %.2f%% test accuracy at step "
                    "%.0f in %.1f s, %.0f invocations, %.0f ms billed (bootstrap %s)\n",
            ct_str(j, "id"), 100 * ct_num(j, "test_accuracy"), ct_num(j, "step"),
            ct_num(j, "elapsed_s"), ct_num(inv, "total"), ct_num(e, "billed_ms"), bootstrap);
    json_decref(e);
    json_decref(j);
    coord_stop_clean();
}
END_TEST

/* ---- the bootstrap ----------------------------------------------------------------------- */

/* Sets bootstrap: the Lambda zip's, made and unzipped into zip_dir, or smlt-worker (see the
 * top of the file). Returns 0, or -1 when packaging failed. */
static int bootstrap_prepare(void)
{
    snprintf(bootstrap, sizeof bootstrap, "%s", test_bin("smlt-worker"));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    fprintf(stderr, "test_platform_lambda: the sanitizer pass runs %s as the bootstrap\n",
            bootstrap);
    return 0;
#else
    const char *src = getenv("SMLT_SOURCE_DIR"), *bin = getenv("SMLT_BIN_DIR");
    if (!src || !bin) {
        fprintf(stderr, "test_platform_lambda: SMLT_SOURCE_DIR and SMLT_BIN_DIR must be set "
                        "(ctest sets them)\n");
        return -1;
    }
    if (system("command -v zip >/dev/null && command -v unzip >/dev/null") != 0) {
        fprintf(stderr, "test_platform_lambda: NOTE: no zip or unzip (tools/deps.sh installs "
                        "them): running %s as the bootstrap, not the Lambda zip's\n", bootstrap);
        return 0;
    }
    snprintf(zip_dir, sizeof zip_dir, "/tmp/smlt-lambda-zip.XXXXXX");
    if (!mkdtemp(zip_dir)) {
        zip_dir[0] = '\0';
        return -1;
    }
    char cmd[2048];
    double t0 = smlt_now_mono();
    snprintf(cmd, sizeof cmd,
             "bash '%s/deploy/lambda/package.sh' --bin '%s' -o %s/smlt-worker-lambda.zip "
             ">%s/package.log 2>&1 && mkdir %s/task && cd %s/task && "
             "unzip -q ../smlt-worker-lambda.zip",
             src, bin, zip_dir, zip_dir, zip_dir, zip_dir);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof cmd, "cat %s/package.log >&2", zip_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no package.log)\n");
        fprintf(stderr, "test_platform_lambda: deploy/lambda/package.sh failed\n");
        return -1;
    }
    snprintf(bootstrap, sizeof bootstrap, "%s/task/bootstrap", zip_dir);
    fprintf(stderr, "test_platform_lambda: the Lambda zip made and unzipped in %.1f s: running "
                    "its bootstrap\n", smlt_now_mono() - t0);
    return 0;
#endif
}

static Suite *suite(void)
{
    Suite *s = suite_create("platform_lambda");
    TCase *tc = tcase_create("lambda");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 700);
    tcase_add_test(tc, emulator_answers_as_lambda);
    tcase_add_test(tc, demo_on_lambda);
    tcase_add_test(tc, wrong_credentials_fail_the_job);
    tcase_add_test(tc, throttles_are_retried);
    tcase_add_test(tc, torch_job_on_lambda);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int rc = bootstrap_prepare() == 0
                 ? ct_main("platform_lambda", suite(), root, sizeof root, dataset, sizeof dataset,
                           6000, 1000)
                 : 1;
    if (zip_dir[0])
        ct_rm_rf(zip_dir);
    return rc;
}
