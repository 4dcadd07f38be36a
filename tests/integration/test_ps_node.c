/* test_ps_node.c: a real smlt-ps --node hosting the shards of two jobs on one port.
 *
 * Through libsmlt and the node requests (smlt_client_int.h): two jobs, each with its own
 * tokens, train side by side through shards of the one node (routes in their addresses), and
 * neither job's token opens the other's shard. The memory bound refuses a NodeHost and a
 * Configure that do not fit, with a message, and the node goes on. A wrong pool token, an
 * unknown route and a malformed NodeHost are refused, the node goes on. A job's Shutdown
 * drops its shards only, with a worker of that job still connected. NodeInfo shows capacity, reservations and shards; /healthz and
 * /metrics answer. The same over TLS. The node is stopped by its pid. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord_test.h"
#include "daemon.h"
#include "smlt_admin.h"
#include "smlt_client_int.h"
#include "smlt_error.h"
#include "smlt_tls.h"

#define POOL "test-pool-token"
#define NPARAMS 4096u

static struct test_daemon g_node;
static char g_certs[256];

static void node_start(int tls, const char *mb)
{
    const char *args[24] = {"--node", "--admin-token", POOL, "--memory-mb", mb, "--name",
                            "node-a", "--log-level", "info", "--metrics-listen", "127.0.0.1:0"};
    int n = 11;
    char crt[300], key[300];
    if (tls) {
        snprintf(crt, sizeof crt, "%s/server.pem", g_certs);
        snprintf(key, sizeof key, "%s/server.key", g_certs);
        args[n++] = "--tls-cert";
        args[n++] = crt;
        args[n++] = "--tls-key";
        args[n++] = key;
    }
    args[n] = NULL;
    ck_assert_int_eq(test_daemon_start(&g_node, "smlt-ps", args, 120), 0);
}

static void host(const char *route, const char *job, uint32_t shard, const char *token,
                 const char *admin, uint64_t mem, int want)
{
    struct smlt_node_host h = {.route = route, .job = job, .shard = shard, .token = token,
                               .admin_token = admin, .memory_bytes = mem};
    char err[512] = "";
    int rc = smlt_node_host(g_node.addr, POOL, &h, 5000, err, sizeof err);
    ck_assert_msg(rc == want, "host %s: %s (%s), wanted %s", route, smlt_errname(rc), err,
                  smlt_errname(want));
}

static void addrs_of(char *out, size_t len, const char *r0, const char *r1)
{
    if (r1)
        snprintf(out, len, "%s/%s,%s/%s", g_node.addr, r0, g_node.addr, r1);
    else
        snprintf(out, len, "%s/%s", g_node.addr, r0);
}

static struct smlt_client_opts opts(const char *token, int admin, int tls)
{
    static char ca[300];
    snprintf(ca, sizeof ca, "%s/ca.pem", g_certs);
    struct smlt_client_opts o = {.token = token, .admin = admin, .timeout_ms = 10000,
                                 .tls_ca = tls ? ca : NULL};
    return o;
}

/* Sets up a job of n parameters on addrs; returns the setup's code (err filled). */
static int setup(const char *addrs, const char *admin, uint64_t n, int tls, char *err,
                 size_t errlen)
{
    uint64_t shape[1] = {n};
    struct smlt_tensor_def t = {.name = "w", .ndims = 1, .shape = shape,
                                .init = SMLT_INIT_UNIFORM, .init_scale = 0.5f};
    struct smlt_job_conf jc;
    smlt_job_conf_default(&jc);
    jc.job = "node-test";
    jc.workers = 1;
    jc.lr = 0.1f;
    jc.seed = 5;
    struct smlt_client *c = NULL;
    struct smlt_client_opts o = opts(admin, 1, tls);
    int rc = smlt_job_setup(&c, addrs, &o, &t, 1, &jc, err, errlen);
    smlt_client_close(c);
    return rc;
}

/* Trains steps BSP steps through addrs; returns the final clock. */
static uint64_t train(const char *addrs, const char *token, int steps, int tls)
{
    struct smlt_client *c = NULL;
    char err[512];
    struct smlt_client_opts o = opts(token, 0, tls);
    ck_assert_msg(smlt_client_connect(&c, addrs, &o, err, sizeof err) == 0, "connect %s: %s",
                  addrs, err);
    uint64_t np = smlt_client_num_params(c), clock = 0;
    float *m = malloc(np * sizeof *m), *g = malloc(np * sizeof *g);
    ck_assert_int_eq(smlt_pull(c, 0, 0, m, &clock), 0);
    uint64_t start = clock;
    for (int s = 0; s < steps; s++) {
        for (uint64_t i = 0; i < np; i++)
            g[i] = m[i] * 0.5f;
        ck_assert_msg(smlt_sync(c, start + (uint64_t)s, g, m, &clock) == 0, "step %d: %s", s,
                      smlt_client_errmsg(c));
    }
    free(m);
    free(g);
    smlt_client_close(c);
    return clock;
}

static void node_info(struct smlt_node_info *info)
{
    char err[512] = "";
    ck_assert_msg(smlt_node_stats(g_node.addr, POOL, 5000, info, err, sizeof err) == 0, "%s",
                  err);
}

static void two_jobs(int tls)
{
    char a[256], b[256], err[512] = "";
    host("ja.0.1", "ja", 0, "tok-a", "adm-a", 2u << 20, 0);
    host("ja.1.2", "ja", 1, "tok-a", "adm-a", 2u << 20, 0);
    host("jb.0.1", "jb", 0, "tok-b", "adm-b", 2u << 20, 0);
    host("ja.0.1", "ja", 0, "tok-a", "adm-a", 2u << 20, 0);                /* a retry */
    host("ja.0.1", "jx", 0, "tok-x", "adm-x", 2u << 20, SMLT_EINVAL);      /* taken */
    addrs_of(a, sizeof a, "ja.0.1", "ja.1.2");
    addrs_of(b, sizeof b, "jb.0.1", NULL);
    ck_assert_msg(setup(a, "adm-a", NPARAMS, tls, err, sizeof err) == 0, "setup a: %s", err);
    ck_assert_msg(setup(b, "adm-b", NPARAMS * 2, tls, err, sizeof err) == 0, "setup b: %s", err);
    ck_assert_uint_eq(train(a, "tok-a", 3, tls), 3);
    ck_assert_uint_eq(train(b, "tok-b", 5, tls), 5);
    ck_assert_uint_eq(train(a, "tok-a", 2, tls), 5);
    /* One job's token does not open the other's shard. */
    struct smlt_client *c = NULL;
    struct smlt_client_opts o = opts("tok-a", 0, tls);
    int rc = smlt_client_connect(&c, b, &o, err, sizeof err);
    ck_assert_msg(rc == SMLT_EAUTH, "job a's token on job b: %s (%s)", smlt_errname(rc), err);
    struct smlt_node_info info;
    node_info(&info);
    ck_assert_str_eq(info.node, "node-a");
    ck_assert_uint_eq(info.nshards, 3);
    ck_assert_uint_eq(info.capacity_bytes, 64u << 20);
    ck_assert_uint_ge(info.used_bytes, 3u << 20);
    ck_assert_uint_ne(info.boot_id, 0);
    for (uint32_t i = 0; i < info.nshards; i++)
        ck_assert_msg(info.shards[i].configured, "%s not configured", info.shards[i].route);
    smlt_node_info_free(&info);
}

START_TEST(node_two_jobs)
{
    node_start(0, "64");
    two_jobs(0);
    test_daemon_stop(&g_node);
}
END_TEST

START_TEST(node_memory_bound)
{
    char err[512] = "", a[256];
    node_start(0, "64");
    /* A reservation over what is free is refused with what was asked and what is free. */
    struct smlt_node_host h = {.route = "big.0.1", .job = "big", .token = "t",
                               .memory_bytes = 100u << 20};
    int rc = smlt_node_host(g_node.addr, POOL, &h, 5000, err, sizeof err);
    ck_assert_int_eq(rc, SMLT_ENOMEM);
    ck_assert_msg(strstr(err, "needs 100 MiB") && strstr(err, "free of 64"), "%s", err);
    /* A small reservation whose configured range needs more than the node has: the
     * Configure is refused, the shard stays unconfigured. */
    host("big.0.2", "big", 0, "tok-big", "adm-big", 1u << 20, 0);
    addrs_of(a, sizeof a, "big.0.2", NULL);
    rc = setup(a, "adm-big", 8u << 20 /* 32 MB of floats: ~200 MB with buffers */, 0, err,
               sizeof err);
    ck_assert_msg(rc == SMLT_ENOMEM, "setup: %s (%s)", smlt_errname(rc), err);
    ck_assert_msg(strstr(err, "MiB free of 64"), "%s", err);
    ck_assert_int_eq(smlt_node_drop(g_node.addr, POOL, "big.0.2", 5000, err, sizeof err), 0);
    /* The node goes on: a job that fits trains. */
    two_jobs(0);
    struct smlt_node_info info;
    node_info(&info);
    ck_assert_uint_ge(info.refused, 2);
    smlt_node_info_free(&info);
    test_daemon_stop(&g_node);
}
END_TEST

START_TEST(node_refusals)
{
    char err[512] = "", a[256];
    node_start(0, "64");
    struct smlt_node_info info;
    int rc = smlt_node_stats(g_node.addr, "wrong-token", 5000, &info, err, sizeof err);
    ck_assert_msg(rc == SMLT_EAUTH, "wrong pool token: %s (%s)", smlt_errname(rc), err);
    host("../etc", "j", 0, "t", NULL, 1u << 20, SMLT_EINVAL);
    host("ok.0.1", "j/../x", 0, "t", NULL, 1u << 20, SMLT_EINVAL);
    host("ok.0.1", "j", 0, "", NULL, 1u << 20, SMLT_EINVAL);
    /* A route the node does not host. */
    addrs_of(a, sizeof a, "nobody.0.1", NULL);
    struct smlt_client *c = NULL;
    struct smlt_client_opts o = opts("t", 0, 0);
    rc = smlt_client_connect(&c, a, &o, err, sizeof err);
    ck_assert_msg(rc == SMLT_ENOTFOUND && strstr(err, "hosts no shard"), "%s (%s)",
                  smlt_errname(rc), err);
    /* A shard address without a route reaches the node itself: a job token is refused. */
    rc = smlt_client_connect(&c, g_node.addr, &o, err, sizeof err);
    ck_assert_msg(rc == SMLT_EAUTH, "no route: %s (%s)", smlt_errname(rc), err);
    /* Plain HTTP endpoints. */
    char *body = NULL;
    int mport = 0;
    FILE *f = NULL;
    char lp[300];
    snprintf(lp, sizeof lp, "%s/log", g_node.dir);
    f = fopen(lp, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    while (fgets(line, sizeof line, f))
        if (strstr(line, "/healthz and /metrics on port "))
            mport = atoi(strstr(line, "on port ") + 8);
    fclose(f);
    ck_assert_int_gt(mport, 0);
    /* NodeInfo reports that port (the coordinator lists it for Prometheus). */
    node_info(&info);
    ck_assert_int_eq((int)info.metrics_port, mport);
    smlt_node_info_free(&info);
    ck_assert_int_eq(ct_http(mport, "GET", "/healthz", NULL, NULL, &body), 200);
    ck_assert_str_eq(body, "ok\n");
    free(body);
    ck_assert_int_eq(ct_http(mport, "GET", "/metrics", NULL, NULL, &body), 200);
    ck_assert_msg(strstr(body, "smlt_ps_node_capacity_bytes 67108864"), "%s", body);
    ck_assert_msg(strstr(body, "smlt_ps_node_auth_failures_total"), "%s", body);
    free(body);
    /* The node goes on. */
    two_jobs(0);
    test_daemon_stop(&g_node);
}
END_TEST

START_TEST(node_shutdown_drops_one_job)
{
    char a[256], b[256], err[512] = "";
    node_start(0, "64");
    two_jobs(0);
    addrs_of(a, sizeof a, "ja.0.1", "ja.1.2");
    addrs_of(b, sizeof b, "jb.0.1", NULL);
    struct smlt_client *c = NULL, *w = NULL;
    struct smlt_client_opts o = opts("adm-b", 1, 0), wo = opts("tok-b", 0, 0);
    /* A worker of job b stays connected through the drop (a warm instance does): the node
     * frees the shard from its loop without spinning on it, and goes on. */
    ck_assert_msg(smlt_client_connect(&w, b, &wo, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(smlt_client_connect(&c, b, &o, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(smlt_shutdown_shards(c), 0);
    smlt_client_close(c);
    usleep(300000);
    smlt_client_close(w);
    struct smlt_node_info info;
    node_info(&info);
    ck_assert_uint_eq(info.nshards, 2);
    for (uint32_t i = 0; i < info.nshards; i++)
        ck_assert_str_eq(info.shards[i].job, "ja");
    smlt_node_info_free(&info);
    ck_assert_uint_eq(train(a, "tok-a", 1, 0), 6);
    /* NodeDrop frees the rest; the route is free for another job. */
    ck_assert_int_eq(smlt_node_drop(g_node.addr, POOL, "ja.1.2", 5000, err, sizeof err), 0);
    host("ja.1.2", "jc", 0, "tok-c", NULL, 1u << 20, 0);
    node_info(&info);
    ck_assert_uint_eq(info.nshards, 2);
    smlt_node_info_free(&info);
    test_daemon_stop(&g_node);
}
END_TEST

START_TEST(node_tls)
{
    ck_assert_int_eq(ct_test_certs_make(g_certs, sizeof g_certs), 0);
    node_start(1, "64");
    char err[512];
    struct smlt_tls *t = NULL;
    char ca[300];
    snprintf(ca, sizeof ca, "%s/ca.pem", g_certs);
    struct smlt_tls_conf tc = {.ca = ca};
    ck_assert_msg(smlt_tls_client_new(&t, &tc, err, sizeof err) == 0, "%s", err);
    smlt_client_set_default_tls(t); /* the node requests' context */
    two_jobs(1);
    /* A plaintext pool client on the TLS port is refused; the node goes on. */
    smlt_client_set_default_tls(NULL);
    struct smlt_node_info info;
    int rc = smlt_node_stats(g_node.addr, POOL, 5000, &info, err, sizeof err);
    ck_assert_msg(rc == SMLT_ETLS, "plaintext on TLS: %s (%s)", smlt_errname(rc), err);
    smlt_client_set_default_tls(t);
    node_info(&info);
    ck_assert_uint_eq(info.nshards, 3);
    smlt_node_info_free(&info);
    smlt_client_set_default_tls(NULL);
    smlt_tls_free(t);
    test_daemon_stop(&g_node);
    ct_test_certs_remove(g_certs);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ps_node");
    TCase *tc = tcase_create("node");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, node_two_jobs);
    tcase_add_test(tc, node_memory_bound);
    tcase_add_test(tc, node_refusals);
    tcase_add_test(tc, node_shutdown_drops_one_job);
    tcase_add_test(tc, node_tls);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
