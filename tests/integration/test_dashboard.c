/* test_dashboard.c: the coordinator's dashboard as people use it, in headless Chromium.
 *
 * A coordinator on loopback port 0 runs a real job (an MLP on a Fashion-MNIST slice, 2
 * workers, 2 shards, several epochs); the job is scaled by hand mid-run (a "scale" event) and
 * runs to the end. Then tests/browser/dashboard.cjs drives Debian's Chromium through npm
 * playwright-core (both installed by tools/test.sh; playwright-core in ~/.cache/smlt/npm):
 * the job list, logging in through the form, the job page's charts (one point per epoch the
 * API reports, the scale annotated), a refused spec shown next to its field, a narrow screen,
 * the nodes page in local mode, and no console errors. A second run of the browser, against a
 * coordinator with a pool of two PS nodes (smlt-ps --node) and a job running on it, checks the
 * nodes page: each node up, its memory, and the job's shards where the API places them. Also
 * here, without a browser: the page and its files are served,
 * Chart.js from Debian's libjs-chart.js, and a coordinator listening beyond loopback wants the
 * token for reads too (but not for the page itself). Everything started is stopped by pid. */
#include <check.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coord_test.h"
#include "smlt_proc.h"

static char root[256];
static char dataset[256];
static char data_dir[300];
static struct test_daemon coord;
#define NODES 2
static struct test_daemon node[NODES];

static void setup(void)
{
    signal(SIGTERM, SIG_DFL);
    snprintf(data_dir, sizeof data_dir, "%s/data.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
}

static void teardown(void)
{
    test_daemon_stop(&coord);
    for (int i = 0; i < NODES; i++)
        test_daemon_stop(&node[i]);
    ct_rm_rf(data_dir);
}

static int past_first_epoch(const json_t *j)
{
    return !strcmp(ct_str(j, "state"), "running") &&
           json_array_size(json_object_get(j, "series")) >= 1;
}

/* The page, its scripts and Chart.js are served; the token is not needed for them. */
START_TEST(page_and_files_are_served)
{
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, NULL), 0);
    const char *paths[] = {"/", "/dashboard/app.js", "/dashboard/charts.js", "/dashboard/app.css",
                           "/dashboard/chart.min.js", NULL};
    for (int i = 0; paths[i]; i++) {
        char *body = NULL;
        long st = ct_http(coord.port, "GET", paths[i], NULL, NULL, &body);
        ck_assert_msg(st == 200, "GET %s: %ld %s", paths[i], st, body ? body : "");
        ck_assert(body && strlen(body) > 100);
        free(body);
    }
    char *body = NULL;
    ck_assert_int_eq(ct_http(coord.port, "GET", "/dashboard/nope.js", NULL, NULL, &body), 404);
    free(body);
    body = NULL;
    ck_assert_int_eq(ct_http(coord.port, "POST", "/", NULL, "", &body), 405);
    free(body);
}
END_TEST

/* This test process (Check runs each test in its own) moves to a network namespace of its
 * own, which has only a loopback interface: listening on every address there reaches nothing
 * else. Returns 0, or -1 with errno. */
static int private_network(void)
{
    if (unshare(CLONE_NEWNET) != 0)
        return -1;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    int rc = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 ? 0 : -1;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (rc == 0)
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Listening on every address: reads need the token too; the page and /api/health do not.
 * (In a network namespace of the test's own, so that "every address" is loopback only.) */
START_TEST(reads_need_the_token_beyond_loopback)
{
    ck_assert_msg(private_network() == 0, "cannot make a network namespace: %s (the test runs "
                                          "as root in CI)",
                  strerror(errno));
    const char *extra[] = {"--listen", "0.0.0.0:0", NULL};
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, extra), 0);
    char *body = NULL;
    ck_assert_int_eq(ct_http(coord.port, "GET", "/api/jobs", NULL, NULL, &body), 401);
    ck_assert_ptr_nonnull(strstr(body, "admin token"));
    free(body);
    body = NULL;
    ck_assert_int_eq(ct_http(coord.port, "GET", "/metrics", "wrong", NULL, &body), 401);
    free(body);
    body = NULL;
    ck_assert_int_eq(ct_http(coord.port, "GET", "/api/jobs", CT_ADMIN, NULL, &body), 200);
    free(body);
    body = NULL;
    ck_assert_int_eq(ct_http(coord.port, "GET", "/", NULL, NULL, &body), 200);
    free(body);
    body = NULL;
    ck_assert_int_eq(ct_http(coord.port, "GET", "/api/health", NULL, NULL, &body), 200);
    free(body);
}
END_TEST

/* Runs the browser script (nodes > 0: its nodes page check against a pool of that many);
 * returns its exit status (or -1). */
static int run_browser(const char *id, const char *shot, int nodes)
{
    char url[64], script[1100];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", coord.port);
    const char *src = getenv("SMLT_SOURCE_DIR");
    snprintf(script, sizeof script, "%s/tests/browser/dashboard.cjs", src ? src : ".");
    char n[16];
    snprintf(n, sizeof n, "%d", nodes);
    const char *argv[] = {"/usr/bin/node", script, "--url", url, "--token", CT_ADMIN, "--job", id,
                          "--screenshot", shot, nodes > 0 ? "--nodes" : NULL, n, NULL};
    struct smlt_proc_opts o = {.watchdog_s = 240};
    pid_t pid = smlt_proc_spawn(argv, &o);
    if (pid <= 0)
        return -1;
    int st = 0;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Submits an MLP (784-64-10) on the slice for epochs epochs, on workers workers and 2 shards
 * (more: more of the spec, starting with a comma, or ""), and waits until ready(job); returns
 * its id (malloc'd). */
static char *mlp_job(int epochs, int workers, const char *more, int (*ready)(const json_t *))
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-64-10\", \"dataset\": \"%s\", \"epochs\": %d, "
             "\"workers\": %d, \"shards\": 2%s}",
             dataset, epochs, workers, more);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = ct_wait_until(coord.port, id, 120, ready);
    ck_assert_msg(ready(j), "job %s is %s, not yet where the test needs it", id, ct_str(j, "state"));
    json_decref(j);
    return id;
}

START_TEST(browser_shows_the_job)
{
    ck_assert_msg(access("/usr/bin/chromium", X_OK) == 0,
                  "Debian's chromium is missing (tools/test.sh installs it)");
    ck_assert_msg(access("/usr/bin/node", X_OK) == 0, "node is missing (tools/test.sh installs it)");
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, NULL), 0);
    char *id = mlp_job(ct_quick() ? 4 : 6, 2, ", \"max_workers\": 3", past_first_epoch);
    json_t *j;
    char path[160];
    snprintf(path, sizeof path, "/api/jobs/%s/scale", id);
    ck_assert_int_eq(ct_http_json(coord.port, "POST", path, CT_ADMIN, "{\"workers\": 3}", &j), 200);
    json_decref(j);
    j = ct_wait_job(coord.port, id, 300);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(ct_str(j, "state"), "succeeded");
    json_decref(j);
    char shot[400];
    snprintf(shot, sizeof shot, "%s/dashboard.png", root);
    int rc = run_browser(id, shot, 0);
    ck_assert_msg(rc == 0, "the browser test failed (exit %d; its message is above)", rc);
    ck_assert_int_eq(access(shot, R_OK), 0);
    free(id);
}
END_TEST

/* The nodes page: a coordinator with a pool of two PS nodes, and a job whose two shards it
 * placed there, running while the browser looks (canceled after). */
START_TEST(browser_shows_the_nodes)
{
    ck_assert_msg(access("/usr/bin/chromium", X_OK) == 0,
                  "Debian's chromium is missing (tools/test.sh installs it)");
    ct_pool_start(&coord, data_dir, node, NODES, "64", NULL);
    char *id = mlp_job(500, 1, "", ct_running_with_progress);
    json_t *j;
    char shot[400];
    snprintf(shot, sizeof shot, "%s/nodes.png", root);
    int rc = run_browser(id, shot, NODES);
    char path[160];
    snprintf(path, sizeof path, "/api/jobs/%s/cancel", id);
    ck_assert_int_eq(ct_http_json(coord.port, "POST", path, CT_ADMIN, "{}", &j), 200);
    json_decref(j);
    free(id);
    ck_assert_msg(rc == 0, "the browser test of the nodes page failed (exit %d; its message is "
                  "above)", rc);
    ck_assert_int_eq(access(shot, R_OK), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("dashboard");
    TCase *tc = tcase_create("dashboard");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 400);
    tcase_add_test(tc, page_and_files_are_served);
    tcase_add_test(tc, reads_need_the_token_beyond_loopback);
    tcase_add_test(tc, browser_shows_the_job);
    tcase_add_test(tc, browser_shows_the_nodes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ct_main("dashboard", suite(), root, sizeof root, dataset, sizeof dataset, 6000, 1000);
}
