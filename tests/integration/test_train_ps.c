/* test_train_ps.c: real training through real shards, end to end.
 *
 * Two smlt-ps shards and two smlt-worker processes (the binaries as deployed, started and
 * stopped by pid) train softmax regression (logreg:784-10) under BSP on a Fashion-MNIST subset
 * that the test writes as IDX files into a private directory: 6,000 training rows, 2,000 test
 * rows, batch 32 per worker, 4 epochs = 372 steps (2 epochs with SMLT_TEST_QUICK). Then the
 * test pulls the trained model itself and evaluates it on the test subset: it must reach 75%
 * (softmax regression gets about 80% here; the untrained model about 10%, which is checked
 * too, so the threshold is one the run could fail). The shards' counters must show every
 * (rank, step) applied exactly once: one update per step, two counted pushes per step, no
 * rejected push, clock = steps. A second test restarts rank 1 mid-job from its cursor and
 * checks the same counts, so a replaced worker neither skips nor repeats a step. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "data_load.h"
#include "data_set.h"
#include "nn_model.h"
#include "smlt_admin.h"
#include "smlt_proc.h"

#define TOKEN "train-ps-token"
#define SPEC "logreg:784-10"
#define FMNIST "/usr/share/datasets/fashion-mnist"
#define N_TRAIN 6000
#define N_TEST 2000
#define BATCH 32
#define WORKERS 2

static struct test_daemon shard[2];
static char addrs[160];
static char data_dir[64];
static struct data_set *test_set;
static int epochs;
static uint64_t spe;

/* ---- the dataset subset ------------------------------------------------------------------ */

static void put_be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    ck_assert_int_eq(fwrite(b, 1, 4, f), 4);
}

/* Writes rows [0, n) of ds as an uncompressed IDX pair <dir>/<split>-{images-idx3,labels-idx1}
 * -ubyte (pixels back to the bytes they were loaded from). */
static void write_idx(const struct data_set *ds, size_t n, const char *split)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", data_dir, split);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    const unsigned char magic_img[4] = {0, 0, 8, 3}, magic_lab[4] = {0, 0, 8, 1};
    ck_assert_int_eq(fwrite(magic_img, 1, 4, f), 4);
    put_be32(f, (uint32_t)n);
    put_be32(f, 28);
    put_be32(f, 28);
    const float *x = data_set_x(ds);
    unsigned char row[784];
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < 784; j++)
            row[j] = (unsigned char)(x[i * 784 + (size_t)j] * 255.0f + 0.5f);
        ck_assert_int_eq(fwrite(row, 1, 784, f), 784);
    }
    ck_assert_int_eq(fclose(f), 0);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", data_dir, split);
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(magic_lab, 1, 4, f), 4);
    put_be32(f, (uint32_t)n);
    const int32_t *y = data_set_y(ds);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(fputc(y[i], f), y[i]);
    ck_assert_int_eq(fclose(f), 0);
}

static void make_subset(void)
{
    snprintf(data_dir, sizeof data_dir, "/tmp/smlt-train-ps.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    struct data_set *train = NULL, *test = NULL;
    char err[256];
    char img[128], lab[128];
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", FMNIST);
    snprintf(lab, sizeof lab, "%s/train-labels-idx1-ubyte.gz", FMNIST);
    struct data_load_opts o;
    data_load_opts_init(&o);
    o.max_rows = N_TRAIN;
    ck_assert_msg(data_load_idx(img, lab, &o, &train, err, sizeof err) == 0, "%s", err);
    snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz", FMNIST);
    snprintf(lab, sizeof lab, "%s/t10k-labels-idx1-ubyte.gz", FMNIST);
    o.max_rows = N_TEST;
    ck_assert_msg(data_load_idx(img, lab, &o, &test, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(data_set_size(train), N_TRAIN);
    ck_assert_uint_eq(data_set_size(test), N_TEST);
    write_idx(train, N_TRAIN, "train");
    write_idx(test, N_TEST, "t10k");
    data_set_free(train);
    test_set = test;
}

static void remove_subset(void)
{
    const char *names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    char path[160];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", data_dir, names[i]);
        unlink(path);
    }
    rmdir(data_dir);
    data_set_free(test_set);
    test_set = NULL;
}

/* ---- shards and the job ------------------------------------------------------------------ */

static void setup(void)
{
    epochs = getenv("SMLT_TEST_QUICK") ? 2 : 4;
    spe = (N_TRAIN / WORKERS) / BATCH;
    make_subset();
    for (int i = 0; i < 2; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        const char *args[] = {"--shard", id, "--token", TOKEN, "--log-level", "warn", NULL};
        ck_assert_int_eq(test_daemon_start(&shard[i], "smlt-ps", args, 300), 0);
    }
    snprintf(addrs, sizeof addrs, "%s,%s", shard[0].addr, shard[1].addr);
}

static void teardown(void)
{
    for (int i = 0; i < 2; i++)
        test_daemon_stop(&shard[i]);
    remove_subset();
}

/* Sets the job up on both shards from the model's own tensor list (as smlt-worker --setup
 * does): BSP over WORKERS ranks, SGD with momentum. Returns an admin client. */
static struct smlt_client *setup_job(void)
{
    char err[256];
    struct nn_model *m = nn_model_new(SPEC, 1, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    int n = nn_model_num_tensors(m);
    struct smlt_tensor_def defs[8];
    uint64_t shapes[8][4];
    ck_assert_int_le(n, 8);
    for (int i = 0; i < n; i++) {
        const struct nn_spec_tensor *ti = nn_model_tensor(m, i);
        for (int d = 0; d < ti->ndim && d < 4; d++)
            shapes[i][d] = (uint64_t)ti->shape[d];
        defs[i] = (struct smlt_tensor_def){.name = ti->name, .ndims = (uint32_t)ti->ndim,
                                           .shape = shapes[i], .init = (int)ti->init,
                                           .init_scale = ti->scale};
    }
    struct smlt_job_conf jc;
    smlt_job_conf_default(&jc);
    jc.job = "train-ps";
    jc.sync = SMLT_SYNC_BSP;
    jc.workers = WORKERS;
    jc.optim = SMLT_OPT_MOMENTUM;
    jc.lr = 0.05f;
    jc.momentum = 0.9f;
    jc.seed = 3;
    struct smlt_client_opts o = {.token = TOKEN, .admin = 1, .timeout_ms = 30000};
    struct smlt_client *c = NULL;
    int rc = smlt_job_setup(&c, addrs, &o, defs, (size_t)n, &jc, err, sizeof err);
    nn_model_free(m);
    ck_assert_msg(rc == 0, "setup: %s", err);
    ck_assert_uint_eq(smlt_client_num_shards(c), 2);
    return c;
}

/* The current model's accuracy on the test subset, pulled through c. */
static double model_accuracy(struct smlt_client *c)
{
    char err[256];
    struct nn_model *m = nn_model_new(SPEC, 256, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_uint_eq(smlt_client_num_params(c), nn_model_num_params(m));
    uint64_t clock = 0;
    ck_assert_int_eq(smlt_pull(c, 0, 0, nn_model_params(m), &clock), 0);
    double acc = 0;
    ck_assert_int_eq(nn_model_evaluate(m, test_set, &acc, NULL), 0);
    nn_model_free(m);
    return acc;
}

/* ---- the workers ------------------------------------------------------------------------- */

struct worker_proc {
    pid_t pid;
    char log[128];
};

/* Starts smlt-worker rank r for `ep` epochs of the job (stdout and stderr to a log file in the
 * data directory). */
static void worker_start(struct worker_proc *w, int r, int ep)
{
    char rank[12], wk[12], bs[12], e[12]; /* any int */
    snprintf(rank, sizeof rank, "%d", r);
    snprintf(wk, sizeof wk, "%d", WORKERS);
    snprintf(bs, sizeof bs, "%d", BATCH);
    snprintf(e, sizeof e, "%d", ep);
    snprintf(w->log, sizeof w->log, "%s/worker%d.log", data_dir, r);
    const char *argv[] = {test_bin("smlt-worker"), "--ps", addrs, "--token", TOKEN,
                          "--model", SPEC, "--data", data_dir, "--rank", rank, "--workers", wk,
                          "--batch", bs, "--epochs", e, "--seed", "3", "--json", "--log-level",
                          "warn", NULL};
    struct smlt_proc_opts o = {.log_path = w->log, .watchdog_s = 300, .die_with_parent = 1};
    w->pid = smlt_proc_spawn(argv, &o);
    ck_assert_int_gt(w->pid, 0);
}

static void dump(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    if (!f)
        return;
    fprintf(stderr, "---- %s ----\n", path);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

/* Waits for the worker; returns its exit status (dumping its log when it is not 0). */
static int worker_wait(struct worker_proc *w)
{
    int st = 0;
    ck_assert_int_eq(waitpid(w->pid, &st, 0), w->pid);
    w->pid = 0;
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (code != 0)
        dump(w->log);
    return code;
}

/* Reads "steps" from the worker's final JSON line. */
static long worker_steps(const struct worker_proc *w)
{
    FILE *f = fopen(w->log, "r");
    ck_assert_ptr_nonnull(f);
    char line[2048];
    long steps = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "{\"event\":\"done\"");
        if (p && (p = strstr(p, "\"steps\":")))
            steps = strtol(p + 8, NULL, 10);
    }
    fclose(f);
    return steps;
}

/* Every (rank, step) applied exactly once on both shards. */
static void check_exactly_once(struct smlt_client *c, uint64_t steps)
{
    for (uint32_t s = 0; s < 2; s++) {
        struct smlt_shard_stats st;
        ck_assert_int_eq(smlt_shard_stats(c, s, &st), 0);
        ck_assert_msg(st.updates_applied == steps, "shard %u applied %llu updates for %llu steps",
                      s, (unsigned long long)st.updates_applied, (unsigned long long)steps);
        ck_assert_msg(st.pushes_counted == WORKERS * steps,
                      "shard %u counted %llu pushes for %llu steps of %d workers", s,
                      (unsigned long long)st.pushes_counted, (unsigned long long)steps, WORKERS);
        ck_assert_uint_eq(st.pushes_rejected, 0);
        ck_assert_uint_eq(st.clock, steps);
    }
}

/* ---- tests ------------------------------------------------------------------------------- */

START_TEST(softmax_regression_two_shards)
{
    struct smlt_client *c = setup_job();
    double acc0 = model_accuracy(c);
    ck_assert_msg(acc0 < 0.5, "the untrained model already scores %.3f", acc0);
    struct worker_proc w[WORKERS];
    for (int r = 0; r < WORKERS; r++)
        worker_start(&w[r], r, epochs);
    int failed = 0;
    for (int r = 0; r < WORKERS; r++)
        failed |= worker_wait(&w[r]) != 0;
    ck_assert_msg(!failed, "a worker failed (log above)");
    const uint64_t steps = spe * (uint64_t)epochs;
    for (int r = 0; r < WORKERS; r++)
        ck_assert_int_eq(worker_steps(&w[r]), (long)steps);
    check_exactly_once(c, steps);
    double acc = model_accuracy(c);
    fprintf(stderr, "softmax regression through 2 shards: %llu steps, test accuracy %.4f "
                    "(untrained %.4f)\n", (unsigned long long)steps, acc, acc0);
    ck_assert_msg(acc >= 0.75, "test accuracy %.4f is below 0.75", acc);
    smlt_client_close(c);
}
END_TEST

/* Rank 1 is stopped (SIGKILL) mid-job and a new process takes its place; it resumes from the
 * shards' clock (the data cursor is the step), so the job still applies every step once. */
START_TEST(replaced_worker_resumes)
{
    struct smlt_client *c = setup_job();
    struct worker_proc w[WORKERS];
    for (int r = 0; r < WORKERS; r++)
        worker_start(&w[r], r, epochs);
    /* Let the job get going, then kill rank 1 while rank 0 waits for it inside a step. */
    struct smlt_shard_stats st;
    for (int i = 0; i < 2000; i++) {
        ck_assert_int_eq(smlt_shard_stats(c, 0, &st), 0);
        if (st.clock >= spe / 2)
            break;
        usleep(5000);
    }
    ck_assert_uint_ge(st.clock, spe / 2);
    kill(w[1].pid, SIGKILL);
    int st1 = 0;
    ck_assert_int_eq(waitpid(w[1].pid, &st1, 0), w[1].pid);
    ck_assert(WIFSIGNALED(st1));
    /* A replacement smlt-worker starts at step 0 of its own accounting; smlt-worker has no
     * --start-step, so it learns where the job is from the shards: its first push of an old
     * step is refused (SMLT_ESTEP) and it continues at the shards' clock. */
    worker_start(&w[1], 1, epochs);
    int failed = 0;
    for (int r = 0; r < WORKERS; r++)
        failed |= worker_wait(&w[r]) != 0;
    ck_assert_msg(!failed, "a worker failed (log above)");
    const uint64_t steps = spe * (uint64_t)epochs;
    check_exactly_once(c, steps);
    ck_assert_msg(model_accuracy(c) >= 0.75, "test accuracy below 0.75 after a replacement");
    smlt_client_close(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("train_ps");
    TCase *tc = tcase_create("train");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, softmax_regression_two_shards);
    tcase_add_test(tc, replaced_worker_resumes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
