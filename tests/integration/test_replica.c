/* test_replica.c: replicated shards between real smlt-ps processes.
 *
 * Two shards, each with a backup (four smlt-ps on loopback port 0), train BSP with two ranks
 * and Adam through libsmlt, with synthetic gradients that depend only on (rank, step). Shard
 * 1's backup is built before training; shard 0's is built from its running primary while the
 * ranks train (smlt_set_backup: freeze at a step boundary, export, import, forward). Then
 * shard 0's primary is killed with SIGKILL, by pid, mid-training, and its backup promoted
 * (smlt_promote). Checks:
 *   - the promoted backup's version is the last step the ranks had completed plus one: no
 *     acknowledged step is lost (and nothing was rolled back);
 *   - training goes on through the new map, and the final parameters and Adam state equal, bit
 *     for bit, those of a second, fault-free pair of shards trained on the same gradients;
 *   - every (rank, step) is counted once: the surviving primary counted 2 x STEPS pushes and
 *     forwarded as many, its backup acknowledged all of them, and no decision diverged. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "smlt.h"
#include "smlt_admin.h"
#include "smlt_error.h"

#define TOKEN "replica-token"
#define ADMIN "replica-admin"
#define STEPS 30
#define BUILD_AT 6  /* shard 0's backup is built from its running primary after this step */
#define KILL_AT 15  /* shard 0's primary is killed after this step */
#define WORKERS 2

/* 0, 1: primaries; 2, 3: their backups; 4, 5: the fault-free reference pair */
static struct test_daemon ps[6];

static void setup(void)
{
    const char *ids[6] = {"0", "1", "0", "1", "0", "1"};
    for (int i = 0; i < 6; i++) {
        const char *args[] = {"--shard", ids[i], "--token", TOKEN, "--admin-token", ADMIN,
                              "--log-level", "warn", NULL};
        ck_assert_int_eq(test_daemon_start(&ps[i], "smlt-ps", args, 240), 0);
    }
}

static void teardown(void)
{
    for (int i = 0; i < 6; i++)
        test_daemon_stop(&ps[i]);
}

static const uint64_t sizes[2] = {30011, 7001};

static struct smlt_client *setup_job(const char *addrs)
{
    struct smlt_tensor_def t[2] = {
        {.name = "w", .ndims = 1, .shape = &sizes[0], .init = SMLT_INIT_UNIFORM, .init_scale = 0.5f},
        {.name = "b", .ndims = 1, .shape = &sizes[1], .init = SMLT_INIT_NORMAL, .init_scale = 0.1f},
    };
    struct smlt_job_conf jc;
    smlt_job_conf_default(&jc);
    jc.job = "replica-job";
    jc.sync = SMLT_SYNC_BSP;
    jc.workers = WORKERS;
    jc.optim = SMLT_OPT_ADAM;
    jc.lr = 0.01f;
    jc.seed = 7;
    struct smlt_client_opts o = {.token = ADMIN, .admin = 1, .timeout_ms = 20000};
    struct smlt_client *c = NULL;
    char err[256];
    int rc = smlt_job_setup(&c, addrs, &o, t, 2, &jc, err, sizeof err);
    ck_assert_msg(rc == 0, "setup: %s", err);
    return c;
}

static void grad_of(float *g, uint64_t n, uint32_t rank, uint64_t step)
{
    for (uint64_t i = 0; i < n; i++)
        g[i] = sinf((float)(i * 7 + step * 13 + rank * 101)) * 0.1f;
}

struct trainer {
    pthread_t thr;
    uint32_t rank;
    const char *addrs;
    atomic_llong done;  /* last step whose smlt_sync returned 0, -1 before */
    atomic_int hold;    /* after a failed call: wait while set */
    int failures;       /* calls that failed and were retried */
    int rc;
};

static void *train(void *arg)
{
    struct trainer *t = arg;
    struct smlt_client_opts wo = {.token = TOKEN, .worker = t->rank, .timeout_ms = 20000};
    struct smlt_client *w = NULL;
    char err[256];
    t->rc = smlt_client_connect(&w, t->addrs, &wo, err, sizeof err);
    if (t->rc) {
        fprintf(stderr, "rank %u: connect: %s\n", t->rank, err);
        return NULL;
    }
    uint64_t n = smlt_client_num_params(w);
    float *g = malloc(n * sizeof *g), *model = malloc(n * sizeof *model);
    for (uint64_t s = 0; s < STEPS;) {
        grad_of(g, n, t->rank, s);
        uint64_t clock = 0;
        int rc = smlt_sync(w, s, g, model, &clock);
        if (rc == 0) {
            atomic_store(&t->done, (long long)s);
            s++;
            continue;
        }
        /* A shard is gone: what a worker does is try again (the same step: a push the shards
         * counted before is a duplicate), until the job's owner has promoted the backup. */
        if (++t->failures > 200) {
            fprintf(stderr, "rank %u step %llu: %s\n", t->rank, (unsigned long long)s,
                    smlt_client_errmsg(w));
            t->rc = rc;
            break;
        }
        while (atomic_load(&t->hold)) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
    }
    free(g);
    free(model);
    smlt_client_close(w);
    return NULL;
}

static void start_trainers(struct trainer *t, const char *addrs)
{
    for (uint32_t r = 0; r < WORKERS; r++) {
        t[r].rank = r;
        t[r].failures = 0;
        t[r].rc = 0;
        t[r].addrs = addrs;
        atomic_init(&t[r].done, -1);
        atomic_init(&t[r].hold, 0);
        ck_assert_int_eq(pthread_create(&t[r].thr, NULL, train, &t[r]), 0);
    }
}

static long long min_done(struct trainer *t)
{
    long long m = atomic_load(&t[0].done);
    for (uint32_t r = 1; r < WORKERS; r++)
        if (atomic_load(&t[r].done) < m)
            m = atomic_load(&t[r].done);
    return m;
}

static void wait_done(struct trainer *t, long long step)
{
    for (int k = 0; k < 6000 && min_done(t) < step; k++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_ge(min_done(t), step);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

START_TEST(kill_primary_and_promote)
{
    char ref_addrs[256], addrs[256];
    snprintf(ref_addrs, sizeof ref_addrs, "%s,%s", ps[4].addr, ps[5].addr);
    snprintf(addrs, sizeof addrs, "%s,%s", ps[0].addr, ps[1].addr);

    /* The fault-free reference. */
    struct smlt_client *ref = setup_job(ref_addrs);
    struct trainer rt[WORKERS];
    start_trainers(rt, ref_addrs);
    for (uint32_t r = 0; r < WORKERS; r++) {
        pthread_join(rt[r].thr, NULL);
        ck_assert_int_eq(rt[r].rc, 0);
        ck_assert_int_eq(rt[r].failures, 0);
    }
    uint64_t n = smlt_client_num_params(ref);
    float *want = malloc(n * sizeof *want), *want_st = malloc(2 * n * sizeof *want_st);
    float *got = malloc(n * sizeof *got), *got_st = malloc(2 * n * sizeof *got_st);
    uint32_t ns = 0;
    ck_assert_int_eq(smlt_export(ref, want, want_st, &ns), 0);
    ck_assert_int_eq(ns, 2);

    /* The replicated job: shard 1's backup before training. */
    struct smlt_client *adm = setup_job(addrs);
    int rc = smlt_set_backup(adm, 1, ps[3].addr);
    ck_assert_msg(rc == 0, "set_backup 1: %s", smlt_client_errmsg(adm));
    struct smlt_shard_stats st;
    ck_assert_int_eq(smlt_shard_stats(adm, 1, &st), 0);
    ck_assert_int_eq(st.role, SMLT_ROLE_PRIMARY);
    ck_assert_str_eq(st.backup_addr, ps[3].addr);

    struct trainer t[WORKERS];
    start_trainers(t, addrs);
    /* Shard 0's backup, built from the running primary. */
    wait_done(t, BUILD_AT);
    rc = smlt_set_backup(adm, 0, ps[2].addr);
    ck_assert_msg(rc == 0, "set_backup 0: %s", smlt_client_errmsg(adm));
    ck_assert_int_eq(smlt_shard_stats(adm, 0, &st), 0);
    ck_assert_int_eq(st.role, SMLT_ROLE_PRIMARY);

    /* Kill shard 0's primary mid-training. */
    wait_done(t, KILL_AT);
    for (uint32_t r = 0; r < WORKERS; r++)
        atomic_store(&t[r].hold, 1);
    ck_assert_int_eq(kill(ps[0].pid, SIGKILL), 0);
    int status = 0;
    ck_assert_int_eq(waitpid(ps[0].pid, &status, 0), ps[0].pid);
    ps[0].pid = 0;
    /* Nobody completes a step without shard 0: wait for the ranks to notice. */
    sleep_ms(300);
    long long last = -1;
    for (uint32_t r = 0; r < WORKERS; r++)
        if (atomic_load(&t[r].done) > last)
            last = atomic_load(&t[r].done);
    uint64_t mv = smlt_client_map_version(adm);
    rc = smlt_promote(adm, 0, ps[2].addr);
    ck_assert_msg(rc == 0, "promote: %s", smlt_client_errmsg(adm));
    ck_assert_uint_eq(smlt_client_map_version(adm), mv + 1);
    ck_assert_int_eq(smlt_shard_stats(adm, 0, &st), 0);
    ck_assert_int_eq(st.role, SMLT_ROLE_SOLO);
    /* Every completed step is there; at most the one in flight (pushed by both ranks and
     * acknowledged by the backup before the primary died) is further. */
    fprintf(stderr, "promoted at version %llu; last completed step %lld\n",
            (unsigned long long)st.version, last);
    ck_assert_uint_ge(st.version, (uint64_t)(last + 1));
    ck_assert_uint_le(st.version, (uint64_t)(last + 2));
    for (uint32_t r = 0; r < WORKERS; r++)
        atomic_store(&t[r].hold, 0);
    for (uint32_t r = 0; r < WORKERS; r++) {
        pthread_join(t[r].thr, NULL);
        ck_assert_msg(t[r].rc == 0, "rank %u failed", r);
        ck_assert_int_eq(atomic_load(&t[r].done), STEPS - 1);
    }

    /* Bit for bit what the fault-free shards computed. */
    memset(got, 0, n * sizeof *got);
    ck_assert_int_eq(smlt_export(adm, got, got_st, &ns), 0);
    ck_assert_int_eq(ns, 2);
    ck_assert_int_eq(memcmp(got, want, n * sizeof *got), 0);
    ck_assert_int_eq(memcmp(got_st, want_st, 2 * n * sizeof *got), 0);

    /* Exactly once. Shard 1's primary counted every (rank, step) once, after its backup. */
    ck_assert_int_eq(smlt_shard_stats(adm, 1, &st), 0);
    ck_assert_uint_eq(st.version, STEPS);
    ck_assert_uint_eq(st.pushes_counted, (uint64_t)WORKERS * STEPS);
    ck_assert_uint_eq(st.updates_applied, STEPS);
    ck_assert_uint_eq(st.backup_forwarded, (uint64_t)WORKERS * STEPS);
    ck_assert_uint_eq(st.backup_acks, (uint64_t)WORKERS * STEPS);
    ck_assert_uint_eq(st.backup_lag, 0);
    ck_assert_uint_eq(st.backup_diverged, 0);
    ck_assert_int_eq(st.role, SMLT_ROLE_PRIMARY);
    /* The promoted shard 0 applied each step after its build once. */
    ck_assert_int_eq(smlt_shard_stats(adm, 0, &st), 0);
    ck_assert_uint_eq(st.version, STEPS);
    ck_assert_uint_le(st.updates_applied, STEPS - BUILD_AT);

    free(want);
    free(want_st);
    free(got);
    free(got_st);
    smlt_client_close(adm);
    smlt_client_close(ref);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("replica");
    TCase *tc = tcase_create("failover");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, kill_primary_and_promote);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
