/* test_storm.c: the storm path of `smlt-bench ps --storm` (tools/bench_storm.c), briefly.
 *
 * Two real smlt-ps shards on loopback port 0; 32 clients, each connected to both shards, push
 * and pull (ASP) for 3 seconds. Asserts that no request failed in any way and that the shards
 * still answer afterwards with only the test's own connection left. Figures (requests/s, RSS)
 * belong to the benchmark, not here. Every shard is stopped by its pid. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "bench_storm.h"
#include "daemon.h"
#include "smlt_admin.h"

#define TOKEN "test-storm-token"
#define ADMIN "test-storm-admin"

START_TEST(storm_no_errors)
{
    struct test_daemon shard[2];
    pid_t pids[2];
    char addrs[160];
    for (int i = 0; i < 2; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        const char *args[] = {"--shard", id, "--token", TOKEN, "--admin-token", ADMIN,
                              "--log-level", "warn", NULL};
        ck_assert_int_eq(test_daemon_start(&shard[i], "smlt-ps", args, 120), 0);
        pids[i] = shard[i].pid;
    }
    snprintf(addrs, sizeof addrs, "%s,%s", shard[0].addr, shard[1].addr);

    struct bench_storm_conf conf = {.addrs = addrs,
                                    .pids = pids,
                                    .token = TOKEN,
                                    .admin_token = ADMIN,
                                    .clients = 32,
                                    .seconds = 3,
                                    .floats = 1 << 18};
    static struct bench_storm_result res;
    int rc = bench_storm_run(&conf, &res);
    if (rc || bench_storm_errors(&res)) {
        bench_storm_print(&conf, &res, 0);
        for (int i = 0; i < 2; i++)
            test_daemon_dump_log(&shard[i]);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(res.conns, 64);
    for (int k = 0; k < STORM_ERR_KINDS; k++)
        ck_assert_msg(res.errors[k] == 0, "%llu %s errors", (unsigned long long)res.errors[k],
                      bench_storm_err_name(k));
    ck_assert_uint_gt(res.pushes, 0);
    ck_assert_uint_gt(res.pulls, 0);

    /* The shards still answer, every storm connection is gone, and each counted every push. */
    struct smlt_client_opts co = {.token = ADMIN, .admin = 1, .timeout_ms = 10000};
    struct smlt_client *c = NULL;
    char err[256];
    ck_assert_int_eq(smlt_client_connect(&c, addrs, &co, err, sizeof err), 0);
    uint64_t counted = 0;
    for (uint32_t i = 0; i < 2; i++) {
        struct smlt_shard_stats st;
        ck_assert_int_eq(smlt_shard_stats(c, i, &st), 0);
        ck_assert_uint_eq(st.connections, 1);
        ck_assert_uint_eq(st.frames_bad, 0);
        ck_assert_uint_eq(st.auth_failures, 0);
        counted += st.pushes_counted;
    }
    ck_assert_uint_eq(counted, res.pushes);
    float part[64];
    ck_assert_int_eq(smlt_pull_range(c, 0, 64, 0, 0, part, NULL), 0);
    smlt_client_close(c);
    for (int i = 0; i < 2; i++)
        test_daemon_stop(&shard[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("storm");
    TCase *tc = tcase_create("storm");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, storm_no_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
