/* test_platforms.c: the demo job on the coordinator's network platform backends, end to end.
 *
 * The workers are real `smlt-worker --http` instances (two processes, --max-inflight 2 each,
 * on loopback port 0), the coordinator runs with `--platform openfaas` or `--platform
 * knative` (coordinator/coord_backend_http.c: libcurl on its loop), and the shards are its own
 * local smlt-ps processes:
 *   - openfaas: the coordinator posts to a gateway (tools/bench_gateway.c, the one
 *     `smlt-bench invoke --platform` runs) at POST /function/smlt-worker, which routes each
 *     invocation to an instance with a free slot and answers 429 when none has one (the
 *     platform's pushback, which the backend retries with backoff);
 *   - openfaas, asynchronously (--openfaas-async): the same gateway takes POST
 *     /async-function/smlt-worker as OpenFaaS's gateway and queue-worker do: 202 Accepted with
 *     an X-Call-Id at once (the first submission gets 503, which the backend retries), the
 *     invocation queued until an instance has a free slot, run there, and its response posted
 *     to the X-Callback-Url with X-Call-Id, X-Function-Status, X-Function-Name and
 *     X-Duration-Seconds. After the first result it sends that callback again (the coordinator
 *     must refuse it: 404) and once with a forged secret (403);
 *   - knative: the coordinator posts to the service URL, here the same gateway standing in for
 *     Knative's activator (POST /);
 *   - openfaas and knative again with the instances in podman containers of the worker image
 *     (host network, the datasets mounted read-only).
 * The demo job (the Fashion-MNIST MLP 784-256-128-10, 4 workers, 2 shards, BSP, momentum, a
 * target of 88% test accuracy; a 4 s function time limit, 1 s in the quick pass whose job is
 * shorter, so that slices end and warm instances serve the continuations) must succeed with
 * every step applied once by every shard; a job naming another platform is refused. In the
 * quick (sanitizer) pass the bar is 80% on a slice of the data.
 * Then a torch job ("model": "python:mlp.py", coord_test.h's ct_torch_job(): 2 workers, 1
 * shard, 10 epochs of Fashion-MNIST in 4 s slices) on openfaas with the instances of this build, and on knative with the
 * instances in containers of the smlt-worker-torch image: it must succeed past 70% with every
 * step applied once and warm continuations (the sanitizer build makes no Python package: those
 * two say so and return). Everything started is stopped by its pid, every container by its id. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_gateway.h"
#include "coord_test.h"
#include "rpc_conn.h"

#define NINST 2
#define SLOTS 2

static char root[256];
static char dataset[256];
static char data_dir[300];
static struct test_daemon coord;
static struct test_daemon inst[NINST];
static int inst_port[NINST]; /* where the router sends each instance's invocations */

/* ---- the router: the gateway (or activator) of the test's own --------------------------- */

struct router {
    struct bench_gateway *g;
    int port;
    struct bench_gateway_counts c; /* read after it stops */
};

/* async: OpenFaaS's /async-function, pushing back the first submission, replaying the first
 * callback taken, and watching for the admin token in callback URLs. */
static void router_start(struct router *r, const char *path, int async)
{
    char err[200];
    memset(r, 0, sizeof *r);
    struct bench_gateway_opts o = {.path = path, .ports = inst_port, .n = NINST, .slots = SLOTS,
                                   .async = async, .push_back_first = async,
                                   .replay_first = async, .watch = CT_ADMIN};
    r->g = bench_gateway_start(&o, err, sizeof err);
    ck_assert_msg(r->g != NULL, "%s", err);
    r->port = bench_gateway_port(r->g);
}

static void router_stop(struct router *r)
{
    bench_gateway_stop(r->g, &r->c);
    r->g = NULL;
}

/* Starts the router for platform (openfaas, asynchronously when async, or knative) and the
 * coordinator, with the platform's flags, pointed at it. */
static void platform_start(struct router *r, const char *platform, int async)
{
    const int openfaas = !strcmp(platform, "openfaas");
    router_start(r, openfaas ? (async ? "/async-function/smlt-worker" : "/function/smlt-worker")
                             : "/",
                 async);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", r->port, openfaas ? "" : "/");
    const char *ofx[] = {"--platform", "openfaas", "--gateway", url, "--function", "smlt-worker",
                         async ? "--openfaas-async" : NULL, NULL};
    const char *knx[] = {"--platform", "knative", "--function-url", url, NULL};
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, openfaas ? ofx : knx), 0);
}

/* ---- the test ---------------------------------------------------------------------------- */

static void setup(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    snprintf(data_dir, sizeof data_dir, "%s/data.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    char slots[8];
    snprintf(slots, sizeof slots, "%d", SLOTS);
    const char *args[] = {"--http", "--max-inflight", slots, NULL};
    for (int i = 0; i < NINST; i++) {
        ck_assert_int_eq(test_daemon_start(&inst[i], "smlt-worker", args, 600), 0);
        ct_note_dir(root, inst[i].dir);
        inst_port[i] = inst[i].port;
    }
}

static void containers_stop(void);

static void teardown(void)
{
    containers_stop();
    test_daemon_stop(&coord);
    for (int i = 0; i < NINST; i++)
        test_daemon_stop(&inst[i]);
    ct_rm_rf(data_dir);
}

/* The demo job on the running coordinator, to success; checks the shards' counters. label
 * names the case in what it prints. */
static void demo_job(const char *platform, const char *label)
{
    char spec[1024], err[512];
    json_t *j = ct_demo_job(&coord, platform, dataset);
    const json_t *inv = json_object_get(j, "invocations");
    /* The 4 s time limit cuts slices: continuations, served warm by the same instances. */
    ck_assert(ct_num(inv, "total") > 4 && ct_num(inv, "warm") > 0);
    fprintf(stderr, "test_platforms %s: %.2f%% test accuracy at step %.0f in %.1f s, %.0f "
                    "invocations (%.0f cold), $%.6f\n",
            label, 100 * ct_num(j, "test_accuracy"), ct_num(j, "step"), ct_num(j, "elapsed_s"),
            ct_num(inv, "total"), ct_num(inv, "cold"), ct_num(j, "cost_usd"));
    json_decref(j);
    /* A job for another platform is refused, naming the one served. */
    snprintf(spec, sizeof spec,
             "{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 1}", dataset);
    ck_assert_ptr_null(ct_submit(coord.port, spec, err, sizeof err));
    ck_assert_msg(strstr(err, "platform.kind") && strstr(err, platform), "%s", err);
}

START_TEST(demo_on_openfaas)
{
    struct router r;
    platform_start(&r, "openfaas", 0);
    demo_job("openfaas", "openfaas");
    router_stop(&r);
    fprintf(stderr, "test_platforms openfaas: the gateway routed %d invocations, pushed back %d "
                    "times\n",
            r.c.routed, r.c.pushed_back);
    ck_assert_int_gt(r.c.routed, 4);
    ck_assert_int_eq(r.c.refused, 0);
}
END_TEST

/* The value of a /metrics sample of the coordinator (-1 when absent). */
static double coord_metric(const char *name)
{
    char *body = NULL;
    ck_assert_int_eq(ct_http(coord.port, "GET", "/metrics", CT_ADMIN, NULL, &body), 200);
    double v = -1;
    char *save = NULL;
    for (char *line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if (!strncmp(line, name, strlen(name)) && line[strlen(name)] == ' ')
            v = atof(line + strlen(name) + 1);
    free(body);
    return v;
}

START_TEST(demo_on_openfaas_async)
{
    struct router r;
    platform_start(&r, "openfaas", 1);
    demo_job("openfaas", "openfaas async");
    double cbs = coord_metric("smlt_invocation_callbacks_total");
    double refused = coord_metric("smlt_invocation_callbacks_refused_total");
    router_stop(&r);
    const struct bench_gateway_counts *c = &r.c;
    fprintf(stderr, "test_platforms openfaas async: the gateway accepted %d invocations (after "
                    "pushing back %d), ran %d and called back %d: %d taken, %d refused; the "
                    "second callback refused %d, the forged secret refused %d; the coordinator "
                    "counted %.0f callbacks taken, %.0f refused\n",
            c->accepted, c->pushed_back, c->routed, c->called_back, c->cb_ok, c->cb_other,
            c->dup_refused, c->forged_refused, cbs, refused);
    ck_assert_int_gt(c->accepted, 4);
    ck_assert_int_eq(c->pushed_back, 1);
    ck_assert_int_eq(c->refused, 0);
    ck_assert_int_eq(c->watched, 0);          /* no admin token in a callback URL */
    ck_assert_int_eq(c->routed, c->accepted); /* each accepted invocation ran once */
    ck_assert_int_eq(c->cb_other, 0);
    ck_assert_int_eq(c->cb_ok, c->called_back);
    ck_assert_int_eq(c->dup_refused, 1);
    ck_assert_int_eq(c->forged_refused, 1);
    ck_assert_int_eq((int)cbs, c->cb_ok);
    ck_assert_int_eq((int)refused, 2);
}
END_TEST

START_TEST(demo_on_knative)
{
    struct router r;
    platform_start(&r, "knative", 0);
    demo_job("knative", "knative");
    router_stop(&r);
    ck_assert_int_gt(r.c.routed, 4);
    ck_assert_int_eq(r.c.refused, 0);
}
END_TEST

/* ---- the same in containers of the worker image ------------------------------------------ */

#define WORKER_IMAGE "localhost/smlt-worker:test" /* built by the deploy.images test */
#define TORCH_IMAGE "localhost/smlt-worker-torch:test" /* built by deploy.torch_images */

static char cids[NINST][80];

/* A free loopback port (bound, then let go). */
static int free_port(void)
{
    int port = 0, fd = rpc_net_listen("127.0.0.1:0", 1, &port);
    ck_assert_int_ge(fd, 0);
    close(fd);
    return port;
}

/* Starts instance i as a container of the worker image on the host's network (it reaches the
 * coordinator's RPC and the shards on loopback), with the datasets mounted read-only: Debian's
 * and the test's slice of it (the quick pass trains on the slice). */
static void container_start(int i, const char *image)
{
    inst_port[i] = free_port();
    char cmd[1600];
    snprintf(cmd, sizeof cmd,
             "podman run -d --rm --network host -v /usr/share/datasets:/usr/share/datasets:ro "
             "-v %s:%s:ro -v %s:%s:ro %s --http --listen 127.0.0.1:%d --max-inflight %d",
             root, root, dataset, dataset, image, inst_port[i], SLOTS);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    if (!fgets(cids[i], sizeof cids[i], p))
        cids[i][0] = '\0';
    pclose(p);
    cids[i][strcspn(cids[i], "\n")] = '\0';
    ck_assert_msg(strlen(cids[i]) >= 12, "podman run %s did not start", image);
    for (int t = 0; t < 300; t++) {
        char *body = NULL;
        long st = ct_http(inst_port[i], "GET", "/_/health", NULL, NULL, &body);
        free(body);
        if (st == 200)
            return;
        usleep(100 * 1000);
    }
    ck_abort_msg("the container %s never answered /_/health", cids[i]);
}

/* Removes the containers started, by their ids. */
static void containers_stop(void)
{
    for (int i = 0; i < NINST; i++) {
        if (!cids[i][0])
            continue;
        char cmd[200];
        snprintf(cmd, sizeof cmd, "podman rm -f -t 2 %s >/dev/null 2>&1", cids[i]);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove container %s\n", cids[i]);
        cids[i][0] = '\0';
    }
}

/* The demo on platform (openfaas or knative) with the instances in containers of the worker
 * image (the image deploy.images builds from this build's binaries). The sanitizer pass builds
 * no image (its binaries need the sanitizer runtimes): it uses the one the Release pass left,
 * and where there is none it says so and returns -1. 0 when it ran. */
static int demo_in_containers(const char *platform)
{
    if (system("podman image exists " WORKER_IMAGE " 2>/dev/null") != 0) {
        ck_assert_msg(ct_quick(), "no %s: the deploy.images test builds it (ctest runs it "
                                  "first: fixture smlt_images)", WORKER_IMAGE);
        fprintf(stderr, "test_platforms: SKIP the %s demo in containers: no %s in the sanitizer "
                        "pass (its binaries need the sanitizer runtimes)\n",
                platform, WORKER_IMAGE);
        return -1;
    }
    for (int i = 0; i < NINST; i++)
        container_start(i, WORKER_IMAGE);
    struct router r;
    platform_start(&r, platform, 0);
    char label[64];
    snprintf(label, sizeof label, "%s in containers", platform);
    demo_job(platform, label);
    router_stop(&r);
    containers_stop();
    ck_assert_int_gt(r.c.routed, 4);
    ck_assert_int_eq(r.c.refused, 0);
    return 0;
}

START_TEST(demo_on_knative_in_containers)
{
    demo_in_containers("knative");
}
END_TEST

START_TEST(demo_on_openfaas_in_containers)
{
    demo_in_containers("openfaas");
}
END_TEST

/* ---- torch jobs ---------------------------------------------------------------------------- */

/* What a torch job on a network platform shows: every invocation routed by the gateway, the 4 s
 * time limit cutting slices whose continuations warm instances served (their Python runners
 * kept up between slices). */
static void torch_job_check(const json_t *j, const struct router *r, const char *label)
{
    const json_t *inv = json_object_get(j, "invocations");
    fprintf(stderr, "test_platforms %s: torch job %s: %.2f%% test accuracy at step %.0f in "
                    "%.1f s, %.0f invocations (%.0f cold, %.0f warm), the gateway routed %d\n",
            label, ct_str(j, "id"), 100 * ct_num(j, "test_accuracy"), ct_num(j, "step"),
            ct_num(j, "elapsed_s"), ct_num(inv, "total"), ct_num(inv, "cold"),
            ct_num(inv, "warm"), r->c.routed);
    ck_assert(ct_num(inv, "total") > 2 && ct_num(inv, "warm") > 0);
    ck_assert_int_eq(r->c.routed, (int)ct_num(inv, "total"));
    ck_assert_int_eq(r->c.refused, 0);
}

/* A torch job ("model": "python:mlp.py") on OpenFaaS, the instances `smlt-worker --http` of
 * this build: each slot's bootstrap runs the training file in its Python child, which finds
 * the build's smlt package next to the binary (BIN/../python). */
START_TEST(torch_job_on_openfaas)
{
    if (ct_no_torch("test_platforms: torch_job_on_openfaas"))
        return;
    struct router r;
    platform_start(&r, "openfaas", 0);
    json_t *j = ct_torch_job(&coord, "openfaas", CT_FMNIST, 10, 4);
    router_stop(&r);
    torch_job_check(j, &r, "openfaas");
    json_decref(j);
}
END_TEST

/* The same on Knative, the instances containers of the smlt-worker-torch image in --http mode
 * (its own python3-torch and installed smlt package, as a cluster would run it). */
START_TEST(torch_job_on_knative_in_containers)
{
    if (ct_no_torch("test_platforms: torch_job_on_knative_in_containers"))
        return;
    ck_assert_msg(system("podman image exists " TORCH_IMAGE " 2>/dev/null") == 0,
                  "no %s: the deploy.torch_images test builds it (ctest runs it first: fixture "
                  "smlt_torch_images)", TORCH_IMAGE);
    for (int i = 0; i < NINST; i++)
        container_start(i, TORCH_IMAGE);
    struct router r;
    platform_start(&r, "knative", 0);
    json_t *j = ct_torch_job(&coord, "knative", CT_FMNIST, 10, 4);
    router_stop(&r);
    containers_stop();
    torch_job_check(j, &r, "knative in containers");
    json_decref(j);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("platforms");
    TCase *tc = tcase_create("platforms");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 700);
    tcase_add_test(tc, demo_on_openfaas);
    tcase_add_test(tc, demo_on_openfaas_async);
    tcase_add_test(tc, demo_on_knative);
    tcase_add_test(tc, demo_on_knative_in_containers);
    tcase_add_test(tc, demo_on_openfaas_in_containers);
    tcase_add_test(tc, torch_job_on_openfaas);
    tcase_add_test(tc, torch_job_on_knative_in_containers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ct_main("platforms", suite(), root, sizeof root, dataset, sizeof dataset, 6000, 1000);
}
