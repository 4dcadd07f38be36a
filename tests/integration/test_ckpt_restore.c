/* test_ckpt_restore.c: shard checkpoints between real smlt-ps processes.
 *
 * Two shards train BSP steps (Adam) through libsmlt with checkpoints every 4 steps: files
 * appear on every shard at the same steps. One shard is killed with SIGKILL and a new process
 * takes its place; the job is configured again onto the new addresses (smlt_job_setup) and
 * restored with smlt_restore(): parameters and Adam state equal, bit for bit, what they were at
 * the restored step, and a replayed push of an old step is a duplicate, not applied twice.
 * Then the newest checkpoint of one shard is corrupted: smlt_restore() picks the previous step
 * every shard has valid, and the corruption is reported. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "smlt.h"
#include "smlt_admin.h"

#define TOKEN "ckpt-token"
#define ADMIN "ckpt-admin"
#define EVERY 4
#define STEPS 20

static struct test_daemon ps[3];
static char ckdir[256];

static void start_one(int i, const char *shard)
{
    const char *args[] = {"--shard", shard, "--token", TOKEN, "--admin-token", ADMIN,
                          "--checkpoint-dir", ckdir, "--log-level", "warn", NULL};
    ck_assert_int_eq(test_daemon_start(&ps[i], "smlt-ps", args, 180), 0);
}

static void setup(void)
{
    snprintf(ckdir, sizeof ckdir, "/tmp/test_ckpt_restore.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(ckdir));
    start_one(0, "0");
    start_one(1, "1");
}

static void teardown(void)
{
    for (int i = 0; i < 3; i++)
        test_daemon_stop(&ps[i]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ckdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", ckdir);
}

static const uint64_t sizes[2] = {10007, 4099};

static struct smlt_client *setup_job(const char *addrs, uint64_t map_version)
{
    struct smlt_tensor_def t[2] = {
        {.name = "w", .ndims = 1, .shape = &sizes[0], .init = SMLT_INIT_UNIFORM, .init_scale = 0.5f},
        {.name = "b", .ndims = 1, .shape = &sizes[1], .init = SMLT_INIT_NORMAL, .init_scale = 0.1f},
    };
    struct smlt_job_conf jc;
    smlt_job_conf_default(&jc);
    jc.job = "ckpt-job";
    jc.sync = SMLT_SYNC_BSP;
    jc.workers = 1;
    jc.optim = SMLT_OPT_ADAM;
    jc.lr = 0.01f;
    jc.seed = 11;
    jc.map_version = map_version;
    jc.checkpoint_every = EVERY;
    jc.checkpoint_keep = 10;
    struct smlt_client_opts o = {.token = ADMIN, .admin = 1, .timeout_ms = 20000};
    struct smlt_client *c = NULL;
    char err[256];
    int rc = smlt_job_setup(&c, addrs, &o, t, 2, &jc, err, sizeof err);
    ck_assert_msg(rc == 0, "setup: %s", err);
    return c;
}

static struct smlt_client *worker(const char *addrs)
{
    struct smlt_client_opts wo = {.token = TOKEN, .worker = 0, .timeout_ms = 20000};
    struct smlt_client *w = NULL;
    char err[256];
    ck_assert_msg(smlt_client_connect(&w, addrs, &wo, err, sizeof err) == 0, "connect: %s", err);
    return w;
}

static void grad_of(float *g, uint64_t n, uint64_t step)
{
    for (uint64_t i = 0; i < n; i++)
        g[i] = sinf((float)(i * 7 + step * 13)) * 0.1f;
}

/* Waits until shard s has written `count` checkpoints (the write is on its writer thread). */
static void wait_written(struct smlt_client *adm, uint32_t s, uint64_t count)
{
    struct smlt_shard_stats st;
    for (int k = 0; k < 1000; k++) {
        ck_assert_int_eq(smlt_shard_stats(adm, s, &st), 0);
        if (st.checkpoints_written >= count)
            return;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    ck_abort_msg("shard %u wrote %llu checkpoints, want %llu", s,
                 (unsigned long long)st.checkpoints_written, (unsigned long long)count);
}

static void corrupt_byte(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, at, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(ch ^ 0x10, f);
    fclose(f);
}

START_TEST(kill_and_restore)
{
    char a01[256], a02[256];
    snprintf(a01, sizeof a01, "%s,%s", ps[0].addr, ps[1].addr);
    struct smlt_client *adm = setup_job(a01, 1);
    struct smlt_client *w = worker(a01);
    uint64_t n = smlt_client_num_params(adm);
    float *g = malloc(n * sizeof *g), *model = malloc(n * sizeof *model);
    float *p16 = malloc(n * sizeof *p16), *s16 = malloc(2 * n * sizeof *s16);
    float *p20 = malloc(n * sizeof *p20), *s20 = malloc(2 * n * sizeof *s20);
    float *p = malloc(n * sizeof *p), *st = malloc(2 * n * sizeof *st);
    uint32_t ns = 0;
    for (uint64_t s = 0; s < STEPS; s++) {
        grad_of(g, n, s);
        uint64_t clock = 0;
        ck_assert_int_eq(smlt_sync(w, s, g, model, &clock), 0);
        ck_assert_uint_eq(clock, s + 1);
        if ((s + 1) % EVERY == 0) {
            for (uint32_t k = 0; k < 2; k++)
                wait_written(adm, k, (s + 1) / EVERY);
        }
        if (s + 1 == 16)
            ck_assert_int_eq(smlt_export(adm, p16, s16, &ns), 0);
    }
    ck_assert_int_eq(smlt_export(adm, p20, s20, &ns), 0);
    ck_assert_int_eq(ns, 2);
    ck_assert(memcmp(p16, p20, n * sizeof *p16) != 0);

    /* Every shard checkpointed the same steps. */
    for (uint32_t k = 0; k < 2; k++) {
        uint64_t steps[16];
        size_t cnt = 0;
        uint32_t corrupt = 9;
        ck_assert_int_eq(smlt_checkpoint_list(adm, k, NULL, steps, 16, &cnt, &corrupt, NULL, 0), 0);
        ck_assert_uint_eq(cnt, STEPS / EVERY);
        ck_assert_uint_eq(corrupt, 0);
        for (size_t i = 0; i < cnt; i++)
            ck_assert_uint_eq(steps[i], STEPS - EVERY * i);
        struct smlt_shard_stats ss;
        ck_assert_int_eq(smlt_shard_stats(adm, k, &ss), 0);
        ck_assert_uint_eq(ss.checkpoints_written, STEPS / EVERY);
        ck_assert_uint_eq(ss.checkpoints_failed, 0);
        ck_assert_uint_eq(ss.checkpoint_last_step, STEPS);
        ck_assert_uint_gt(ss.checkpoint_bytes, 0);
        char path[512];
        snprintf(path, sizeof path, "%s/shard-%u/ckpt-%d.smltck", ckdir, k, STEPS);
        ck_assert_int_eq(access(path, R_OK), 0);
    }
    smlt_client_close(w);
    smlt_client_close(adm);

    /* Shard 1 dies; a new process takes its place. */
    ck_assert_int_eq(kill(ps[1].pid, SIGKILL), 0);
    int status;
    ck_assert_int_eq(waitpid(ps[1].pid, &status, 0), ps[1].pid);
    ps[1].pid = 0;
    start_one(2, "1");
    snprintf(a02, sizeof a02, "%s,%s", ps[0].addr, ps[2].addr);
    adm = setup_job(a02, 2); /* the job's map again, on the new addresses: fresh parameters */
    ck_assert_int_eq(smlt_export(adm, p, NULL, NULL), 0);
    ck_assert(memcmp(p, p20, n * sizeof *p) != 0);
    uint64_t restored = 0;
    ck_assert_msg(smlt_restore(adm, 0, &restored) == 0, "restore: %s", smlt_client_errmsg(adm));
    ck_assert_uint_eq(restored, STEPS);
    ck_assert_int_eq(smlt_export(adm, p, st, &ns), 0);
    ck_assert_mem_eq(p, p20, n * sizeof *p);
    ck_assert_mem_eq(st, s20, 2 * n * sizeof *st);
    struct smlt_shard_stats ss;
    for (uint32_t k = 0; k < 2; k++) {
        ck_assert_int_eq(smlt_shard_stats(adm, k, &ss), 0);
        ck_assert_uint_eq(ss.version, STEPS);
        ck_assert_uint_eq(ss.clock, STEPS);
    }

    /* A worker replaying its last step: a duplicate on both shards, nothing applied. */
    w = worker(a02);
    grad_of(g, n, STEPS - 1);
    ck_assert_int_eq(smlt_push(w, STEPS - 1, g), 0);
    ck_assert_int_eq(smlt_export(adm, p, st, &ns), 0);
    ck_assert_mem_eq(p, p20, n * sizeof *p);
    ck_assert_mem_eq(st, s20, 2 * n * sizeof *st);
    for (uint32_t k = 0; k < 2; k++) {
        ck_assert_int_eq(smlt_shard_stats(adm, k, &ss), 0);
        ck_assert_uint_ge(ss.pushes_duplicate, 1);
        ck_assert_uint_eq(ss.version, STEPS);
    }
    /* Pulls see the restored model; the next step trains on. */
    uint64_t clock = 0;
    ck_assert_int_eq(smlt_pull(w, 0, 0, model, &clock), 0);
    ck_assert_uint_eq(clock, STEPS);
    ck_assert_mem_eq(model, p20, n * sizeof *model);
    grad_of(g, n, STEPS);
    ck_assert_int_eq(smlt_sync(w, STEPS, g, model, &clock), 0);
    ck_assert_uint_eq(clock, STEPS + 1);

    /* The newest checkpoint of shard 1 is corrupt: the restore goes back to step 16 on both
     * shards, and the corruption is reported. */
    char path[512];
    snprintf(path, sizeof path, "%s/shard-1/ckpt-%d.smltck", ckdir, STEPS);
    corrupt_byte(path, 4000);
    uint64_t steps[16];
    size_t cnt = 0;
    uint32_t corrupt = 0;
    char report[512] = "";
    ck_assert_int_eq(smlt_checkpoint_list(adm, 1, NULL, steps, 16, &cnt, &corrupt, report,
                                          sizeof report), 0);
    ck_assert_uint_eq(cnt, STEPS / EVERY - 1);
    ck_assert_uint_eq(steps[0], 16);
    ck_assert_uint_eq(corrupt, 1);
    ck_assert_msg(strstr(report, "ckpt-20") != NULL, "report: %s", report);
    ck_assert_msg(smlt_restore(adm, 0, &restored) == 0, "restore: %s", smlt_client_errmsg(adm));
    ck_assert_uint_eq(restored, 16);
    ck_assert_int_eq(smlt_export(adm, p, st, &ns), 0);
    ck_assert_mem_eq(p, p16, n * sizeof *p);
    ck_assert_mem_eq(st, s16, 2 * n * sizeof *st);
    ck_assert_int_eq(smlt_shard_stats(adm, 1, &ss), 0);
    ck_assert_uint_ge(ss.checkpoints_corrupt, 1);
    ck_assert_uint_eq(ss.version, 16);
    /* Restoring an explicit corrupt step is refused with the reason. */
    ck_assert_int_lt(smlt_restore(adm, STEPS, &restored), 0);
    ck_assert_msg(strstr(smlt_client_errmsg(adm), "CRC") != NULL, "%s", smlt_client_errmsg(adm));

    smlt_client_close(w);
    smlt_client_close(adm);
    free(g);
    free(model);
    free(p16);
    free(s16);
    free(p20);
    free(s20);
    free(p);
    free(st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ckpt_restore");
    TCase *tc = tcase_create("ckpt");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, kill_and_restore);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
