/* test_coord_pool.c: a coordinator placing its jobs' shards on a pool of three real PS nodes
 * (smlt-ps --node), each on loopback port 0, sharing one checkpoint directory.
 *
 *   - pool_demo: the demo job trains to its target through shards on the nodes: its two
 *     shards are on two different nodes, GET /api/nodes shows three nodes up with their
 *     capacity, and once the job ends the nodes hold nothing;
 *   - pool_node_lost_restore: the node holding shard 0 of a checkpointing job is killed by its
 *     pid mid-job: the coordinator sees the node down, places the shard on another node,
 *     restores every shard from the checkpoints (which the nodes share) and the job succeeds,
 *     each step after the restore applied once;
 *   - pool_node_lost_replica: with ps.replicas 2 every backup is on another node than its
 *     primary; the node of shard 0's primary is killed, the backup takes over with 0 steps
 *     lost, and the job succeeds;
 *   - pool_reshard: a job scaled from 1 to 3 shards mid-job gets its new shards on the other
 *     nodes (one per node), reshards live and succeeds;
 *   - pool_too_big: a job whose shards fit on no node fails with the pool's message, and the
 *     coordinator and the nodes go on;
 *   - pool_bad_options: --ps-pool without a token, or with a malformed list, is refused.
 * Everything started is stopped by its pid. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coord_test.h"

#define POOL "test-pool-token"
#define NODES 3

static char root[256], dataset[256], data_dir[300], ckpt_dir[300], token_file[300];
static struct test_daemon coord, node[NODES];

static void nodes_start(const char *mb)
{
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/ckpt", root);
    mkdir(ckpt_dir, 0755);
    for (int i = 0; i < NODES; i++) {
        char name[16];
        snprintf(name, sizeof name, "node-%d", i);
        const char *args[] = {"--node", "--admin-token", POOL, "--memory-mb", mb, "--name", name,
                              "--checkpoint-dir", ckpt_dir, "--log-level", "info", NULL};
        ck_assert_int_eq(test_daemon_start(&node[i], "smlt-ps", args, 900), 0);
        ct_note_dir(root, node[i].dir);
    }
}

static void setup_mb(const char *mb)
{
    signal(SIGTERM, SIG_DFL);
    nodes_start(mb);
    snprintf(token_file, sizeof token_file, "%s/pool-token", root);
    FILE *f = fopen(token_file, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", POOL);
    fclose(f);
    char pool[256];
    snprintf(pool, sizeof pool, "%s,%s,%s", node[0].addr, node[1].addr, node[2].addr);
    snprintf(data_dir, sizeof data_dir, "%s/data.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    const char *extra[] = {"--ps-pool", pool, "--ps-pool-token-file", token_file, NULL};
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, extra), 0);
}

static void setup(void)
{
    setup_mb("256");
}

static void teardown(void)
{
    test_daemon_stop(&coord);
    for (int i = 0; i < NODES; i++)
        test_daemon_stop(&node[i]);
    ct_rm_rf(data_dir);
    ct_rm_rf(ckpt_dir);
}

/* GET /api/nodes. */
static json_t *nodes_view(void)
{
    json_t *o = NULL;
    ck_assert_int_eq(ct_http_json(coord.port, "GET", "/api/nodes", CT_ADMIN, NULL, &o), 200);
    return o;
}

/* The node index (into node[]) whose address is the host:port part of addr. */
static int node_index(const char *addr)
{
    for (int i = 0; i < NODES; i++)
        if (!strncmp(addr, node[i].addr, strlen(node[i].addr)) &&
            addr[strlen(node[i].addr)] == '/')
            return i;
    return -1;
}

/* The node of shard k in the job view (ps_nodes), as an index into node[]. */
static int shard_node(const json_t *j, int k, const char *key)
{
    const json_t *e = json_array_get(json_object_get(j, "ps_nodes"), (size_t)k);
    ck_assert_ptr_nonnull(e);
    char a[160];
    snprintf(a, sizeof a, "%s/", ct_str(e, key));
    return node_index(a);
}

/* Shards held by all nodes now (their NodeInfo, through /api/nodes). */
static int shards_held(void)
{
    json_t *o = nodes_view();
    size_t i;
    json_t *n;
    int held = 0;
    json_array_foreach(json_object_get(o, "nodes"), i, n)
    held += (int)ct_num(n, "shards");
    json_decref(o);
    return held;
}

START_TEST(pool_demo)
{
    json_t *o = nodes_view();
    ck_assert_str_eq(ct_str(o, "mode"), "pool");
    ck_assert_int_eq(json_array_size(json_object_get(o, "nodes")), NODES);
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(o, "nodes"), i, n)
    {
        ck_assert_str_eq(ct_str(n, "state"), "up");
        ck_assert_int_eq((long long)ct_num(n, "capacity_bytes"), 256ll << 20);
    }
    json_decref(o);
    json_t *j = ct_demo_job(&coord, "local", dataset);
    int a = shard_node(j, 0, "node"), b = shard_node(j, 1, "node");
    ck_assert_msg(a >= 0 && b >= 0 && a != b, "shards on nodes %d and %d", a, b);
    json_decref(j);
    /* The job's end dropped its shards from the nodes (the monitor sees it within seconds). */
    int held = -1;
    for (int t = 0; t < 50 && held != 0; t++) {
        held = shards_held();
        if (held)
            usleep(200000);
    }
    ck_assert_int_eq(held, 0);
}
END_TEST

static uint64_t past_step;
static int past(const json_t *j)
{
    return !strcmp(ct_str(j, "state"), "running") && ct_num(j, "step") >= (double)past_step;
}

static const json_t *event_of(const json_t *j, const char *kind)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "events"), i, e)
    if (!strcmp(ct_str(e, "kind"), kind))
        return e;
    return NULL;
}

static char *submit(int replicas)
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-64-10\", \"dataset\": \"%s\", \"epochs\": %d, \"workers\": 2, "
             "\"shards\": 2, %s, \"optimizer\": {\"kind\": \"adam\", \"lr\": 0.001}}",
             dataset, ct_quick() ? 30 : 60,
             replicas ? "\"ps\": {\"replicas\": 2}, \"checkpoint\": false"
                      : "\"checkpoint\": {\"every_steps\": 20, \"keep\": 4}");
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    return id;
}

/* Runs the job past step 120, kills the node of shard 0, waits for the end. */
static json_t *kill_node_mid_job(const char *id, int *victim, int *backup_node)
{
    past_step = 120;
    json_t *j = ct_wait_until(coord.port, id, 120, past);
    ck_assert_str_eq(ct_str(j, "state"), "running");
    *victim = shard_node(j, 0, "node");
    ck_assert_int_ge(*victim, 0);
    if (backup_node) {
        *backup_node = shard_node(j, 0, "backup_node");
        int other = shard_node(j, 1, "backup_node");
        ck_assert_msg(*backup_node >= 0 && *backup_node != *victim, "backup of 0 on node %d",
                      *backup_node);
        ck_assert_msg(other >= 0 && other != shard_node(j, 1, "node"), "backup of 1 on its node");
    }
    json_decref(j);
    fprintf(stderr, "killing node %d (pid %d), holding shard 0\n", *victim, (int)node[*victim].pid);
    ck_assert_int_eq(kill(node[*victim].pid, SIGKILL), 0);
    j = ct_wait_job(coord.port, id, 400);
    ck_assert_ptr_nonnull(j);
    if (strcmp(ct_str(j, "state"), "succeeded"))
        test_daemon_dump_log(&coord);
    ck_assert_msg(!strcmp(ct_str(j, "state"), "succeeded"), "%s: %s", ct_str(j, "state"),
                  ct_str(j, "error"));
    /* Shard 0 lives on another node now, and the pool says the killed one is down. */
    int now = shard_node(j, 0, "node");
    ck_assert_msg(now >= 0 && now != *victim, "shard 0 on node %d after node %d died", now,
                  *victim);
    json_t *o = nodes_view();
    ck_assert_str_eq(ct_str(json_array_get(json_object_get(o, "nodes"), (size_t)*victim), "state"),
                     "down");
    json_decref(o);
    return j;
}

START_TEST(pool_node_lost_restore)
{
    char *id = submit(0);
    int victim;
    json_t *j = kill_node_mid_job(id, &victim, NULL);
    const json_t *e = event_of(j, "fault");
    ck_assert_ptr_nonnull(e);
    fprintf(stderr, "pool_node_lost_restore: %s\n", ct_str(e, "message"));
    const char *m = strstr(ct_str(e, "message"), "checkpoint of step ");
    ck_assert_ptr_nonnull(m);
    long long restored = strtoll(m + strlen("checkpoint of step "), NULL, 10);
    ck_assert(restored >= 100 && restored % 20 == 0);
    /* Every shard ends at one version; shard 0, placed anew, applied each step after the
     * restore once. */
    size_t i;
    json_t *st;
    long long final = -1;
    json_array_foreach(json_object_get(j, "ps_stats"), i, st)
    {
        long long v = (long long)ct_num(st, "version");
        if (final < 0)
            final = v;
        ck_assert_int_eq(v, final);
        if (ct_num(st, "shard") == 0)
            ck_assert_int_eq((long long)ct_num(st, "updates_applied"), v - restored);
    }
    json_decref(j);
    free(id);
}
END_TEST

START_TEST(pool_node_lost_replica)
{
    char *id = submit(1);
    int victim, bnode;
    json_t *j = kill_node_mid_job(id, &victim, &bnode);
    const json_t *f = event_of(j, "failover");
    ck_assert_ptr_nonnull(f);
    fprintf(stderr, "pool_node_lost_replica: %s\n", ct_str(f, "message"));
    ck_assert_ptr_nonnull(strstr(ct_str(f, "message"), "0 steps lost"));
    ck_assert_ptr_null(event_of(j, "fault")); /* no restore */
    ck_assert_int_eq(shard_node(j, 0, "node"), bnode);
    json_decref(j);
    free(id);
}
END_TEST

static int epoch_done(const json_t *j)
{
    return !strcmp(ct_str(j, "state"), "running") && ct_num(j, "epoch") >= 1;
}

START_TEST(pool_reshard)
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-64-10\", \"dataset\": \"%s\", \"epochs\": 4, \"workers\": 2, "
             "\"shards\": 1, \"max_shards\": 3, \"batch_size\": 32, "
             "\"optimizer\": {\"kind\": \"momentum\", \"lr\": 0.05}}",
             dataset);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = ct_wait_until(coord.port, id, 120, epoch_done);
    ck_assert_str_eq(ct_str(j, "state"), "running");
    json_decref(j);
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s/scale", id);
    ck_assert_int_eq(ct_http(coord.port, "POST", path, CT_ADMIN, "{\"shards\": 3}", NULL), 200);
    j = ct_wait_job(coord.port, id, 300);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(!strcmp(ct_str(j, "state"), "succeeded"), "%s: %s", ct_str(j, "state"),
                  ct_str(j, "error"));
    ck_assert_int_eq((int)ct_num(j, "shards"), 3);
    int seen[NODES] = {0};
    for (int k = 0; k < 3; k++) {
        int n = shard_node(j, k, "node");
        ck_assert_int_ge(n, 0);
        seen[n]++;
    }
    for (int n = 0; n < NODES; n++)
        ck_assert_msg(seen[n] == 1, "node %d holds %d of the 3 shards", n, seen[n]);
    ck_assert_int_eq((long long)ct_num(j, "step"), (long long)ct_num(j, "total_steps"));
    json_decref(j);
    free(id);
}
END_TEST

START_TEST(pool_too_big)
{
    char spec[512], err[512];
    /* 8 x 2^22 floats = 128 MiB of parameters, 4 shards: 32 MiB each, ~250 MiB with Adam and
     * the buffers: no 256 MiB node has room for it with one shard there already. */
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-40000-10\", \"dataset\": \"%s\", \"epochs\": 1, "
             "\"workers\": 8, \"shards\": 1, \"optimizer\": {\"kind\": \"adam\", \"lr\": 0.001}}",
             dataset);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = ct_wait_job(coord.port, id, 120);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(ct_str(j, "state"), "failed");
    fprintf(stderr, "pool_too_big: %s\n", ct_str(j, "error"));
    ck_assert_msg(strstr(ct_str(j, "error"), "no PS node can take a shard"), "%s",
                  ct_str(j, "error"));
    json_decref(j);
    free(id);
    /* The coordinator and the nodes go on (the other cases show it in the sanitizer's quick
     * pass, where a second demo here would not fit). */
    if (!ct_quick())
        json_decref(ct_demo_job(&coord, "local", dataset));
}
END_TEST

START_TEST(pool_bad_options)
{
    /* (The fixture's coordinator runs; these are new ones that must not start.) */
    struct test_daemon d;
    char dd[320];
    snprintf(dd, sizeof dd, "%s/bad.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(dd));
    const char *no_token[] = {"--ps-pool", node[0].addr, NULL};
    ck_assert_int_ne(ct_coord_start(&d, dd, no_token), 0);
    const char *bad_list[] = {"--ps-pool", "nohostport", "--ps-pool-token-file", token_file, NULL};
    ck_assert_int_ne(ct_coord_start(&d, dd, bad_list), 0);
    ct_rm_rf(dd);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("coord_pool");
    TCase *tc = tcase_create("pool");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, pool_demo);
    tcase_add_test(tc, pool_node_lost_restore);
    tcase_add_test(tc, pool_node_lost_replica);
    tcase_add_test(tc, pool_reshard);
    tcase_add_test(tc, pool_too_big);
    tcase_add_test(tc, pool_bad_options);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ct_main("coord_pool", suite(), root, sizeof root, dataset, sizeof dataset, 6000, 1000);
}
