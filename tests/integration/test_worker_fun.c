/* test_worker_fun.c: smlt-worker as a `provided` Lambda function under npm @vercel/fun, a third
 * party's Runtime API (its deadline header is a constant 5000, which the worker ignores: the
 * coordinator's deadline applies). tests/lambda/fun_relay.cjs runs the function behind a small
 * HTTP relay; a real coordinator and shards drive it through fn_test.h's relay. Covered: a
 * malformed event comes back as a function error (Handled, errorType Smlt.InvalidEvent), and a
 * job trains through it. Skipped, with a message, when node or @vercel/fun is missing
 * (npm install --prefix ~/.cache/smlt/npm @vercel/fun). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coord_test.h"
#include "fn_test.h"
#include "smlt_proc.h"

static char root[256];
static char dataset[256];
static char code_dir[300], fun_dir[1024];
static struct fn_coord fc;
static pid_t relay_pid;
static int relay_port;

/* Where npm @vercel/fun is, in fun_dir; 0 when it is there. */
static int find_fun(void)
{
    const char *npm = getenv("SMLT_NPM_DIR"), *home = getenv("HOME");
    if (npm && npm[0])
        snprintf(fun_dir, sizeof fun_dir, "%s/node_modules/@vercel/fun", npm);
    else
        snprintf(fun_dir, sizeof fun_dir, "%s/.cache/smlt/npm/node_modules/@vercel/fun",
                 home ? home : "/root");
    char pkg[1100];
    snprintf(pkg, sizeof pkg, "%s/package.json", fun_dir);
    return access("/usr/bin/node", X_OK) == 0 && access(pkg, R_OK) == 0 ? 0 : -1;
}

static void setup(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    snprintf(code_dir, sizeof code_dir, "%s/code.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(code_dir));
    ct_note_dir(root, code_dir);
    char boot[400], port_file[400], log[400], script[1100];
    snprintf(boot, sizeof boot, "%s/bootstrap", code_dir);
    ck_assert_int_eq(symlink(test_bin("smlt-worker"), boot), 0);
    snprintf(port_file, sizeof port_file, "%s/port", code_dir);
    snprintf(log, sizeof log, "%s/relay.log", code_dir);
    const char *src = getenv("SMLT_SOURCE_DIR");
    snprintf(script, sizeof script, "%s/tests/lambda/fun_relay.cjs", src ? src : ".");
    const char *argv[] = {"/usr/bin/node", script, "--fun", fun_dir, "--code", code_dir,
                          "--port-file", port_file, NULL};
    struct smlt_proc_opts o = {.log_path = log, .watchdog_s = 600, .die_with_parent = 1};
    relay_pid = smlt_proc_spawn(argv, &o);
    ck_assert_int_gt(relay_pid, 0);
    relay_port = smlt_proc_wait_port(relay_pid, port_file, 30000);
    ck_assert_msg(relay_port > 0, "fun_relay.cjs did not start (see %s)", log);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/relay", relay_port);
    ck_assert_int_eq(fn_coord_start(&fc, root, url), 0);
}

static void teardown(void)
{
    fn_coord_stop(&fc);
    if (relay_pid > 0)
        smlt_proc_stop(relay_pid, 5000); /* fun destroys its bootstrap process */
    relay_pid = 0;
    ct_rm_rf(code_dir);
}

START_TEST(fun_smoke)
{
    json_t *r = NULL;
    long code = ct_http_json(relay_port, "POST", "/invoke", NULL, "not json", &r);
    ck_assert_int_eq(code, 200);
    ck_assert_str_eq(ct_str(r, "FunctionError"), "Handled");
    json_error_t je;
    json_t *e = json_loads(ct_str(r, "Payload"), 0, &je);
    ck_assert_msg(e != NULL, "%s", ct_str(r, "Payload"));
    ck_assert_str_eq(ct_str(e, "errorType"), "Smlt.InvalidEvent");
    json_decref(e);
    json_decref(r);
    char err[512];
    char *id = fn_submit(&fc, "mlp:784-256-256-10", dataset, 1, 60, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = fn_wait_succeeded(&fc, id, 0.70, NULL);
    fprintf(stderr, "@vercel/fun: the job trained to %.4f in %.1f s\n",
            ct_num(j, "test_accuracy"), ct_num(j, "elapsed_s"));
    json_decref(j);
    free(id);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("worker_fun");
    TCase *tc = tcase_create("fun");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 400);
    tcase_add_test(tc, fun_smoke);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    /* Started by the coordinator's local runtime as its smlt-worker: the relay. */
    if (argc == 2 && !strcmp(argv[1], "--invoke"))
        return fn_shim_main();
    if (find_fun() != 0) {
        printf("test_worker_fun: skipped: needs /usr/bin/node and npm @vercel/fun in %s "
               "(npm install --prefix ~/.cache/smlt/npm @vercel/fun)\n", fun_dir);
        return 0;
    }
    return ct_main("worker_fun", suite(), root, sizeof root, dataset, sizeof dataset, 12000,
                   2000);
}
