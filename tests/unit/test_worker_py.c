/* test_worker_py.c: torch jobs in the worker bootstrap (worker/worker_py.c) against a real
 * smlt-ps shard and the real Python runner (python3 -m smlt.job, Debian's python3-torch):
 * the training file kept by its text, set-up from the file's own model, slices trained and
 * reported step by step, a warm second slice, a stop request, the stop-by time, and a
 * training file that fails, whose Python error reaches the report. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smlt.h"
#include "smlt_admin.h"
#include "smlt_proc.h"
#include "smlt_util.h"
#include "worker_py.h"
#include "worker_train.h"

#define TINY                                                                                     \
    "import torch\n"                                                                             \
    "from torch import nn\n"                                                                     \
    "def model():\n"                                                                             \
    "    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))\n"                    \
    "def train_data(dataset):\n"                                                                 \
    "    g = torch.Generator().manual_seed(0)\n"                                                 \
    "    x = torch.randn(512, 4, generator=g)\n"                                                 \
    "    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()\n"                                \
    "def test_data(dataset):\n"                                                                  \
    "    return train_data(dataset)\n"

#define BAD                                                                                      \
    "def model():\n"                                                                             \
    "    raise RuntimeError('no model here')\n"                                                  \
    "def train_data(dataset):\n"                                                                 \
    "    return None\n"

static char tmpdir[256];
static pid_t shard_pid;
static char addr[64];

/* The smlt package: SMLT_PYTHONPATH as CTest sets it, else the build's (BIN/../python, or the
 * Release build's next to a sanitizer build). Not a skip: without it nothing here runs. */
static void find_package(void)
{
    if (getenv("SMLT_PYTHONPATH"))
        return;
    const char *self = smlt_proc_self_dir();
    const char *rel[] = {"../python", "../../python"};
    for (int i = 0; i < 2; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s/smlt/_smlt.cpython-311-x86_64-linux-gnu.so", self, rel[i]);
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/%s", self, rel[i]);
        struct stat sb;
        if (stat(dir, &sb) == 0 && access(p, R_OK) == 0) {
            setenv("SMLT_PYTHONPATH", dir, 1);
            return;
        }
    }
    ck_abort_msg("the smlt Python package is not built (the Release build makes build/python; "
                 "or set SMLT_PYTHONPATH)");
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/smlt-test-py.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    setenv("TMPDIR", tmpdir, 1);
    find_package();
    char ps_bin[1200], port_file[400], log_file[400];
    snprintf(ps_bin, sizeof ps_bin, "%s/../bin/smlt-ps", smlt_proc_self_dir());
    if (access(ps_bin, X_OK) != 0)
        snprintf(ps_bin, sizeof ps_bin, "%s/../../bin/smlt-ps", smlt_proc_self_dir());
    snprintf(port_file, sizeof port_file, "%s/port", tmpdir);
    snprintf(log_file, sizeof log_file, "%s/ps.log", tmpdir);
    const char *argv[] = {ps_bin, "--listen", "127.0.0.1:0", "--port-file", port_file,
                          "--token", "tok", "--log-level", "warn", NULL};
    struct smlt_proc_opts o = {.log_path = log_file, .watchdog_s = 300, .die_with_parent = 1};
    shard_pid = smlt_proc_spawn(argv, &o);
    ck_assert_int_gt(shard_pid, 0);
    int port = smlt_proc_wait_port(shard_pid, port_file, 10000);
    ck_assert_int_gt(port, 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
}

static void teardown(void)
{
    if (shard_pid > 0)
        smlt_proc_stop(shard_pid, 10000);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

static void job_conf(struct smlt_job_conf *c)
{
    smlt_job_conf_default(c);
    c->job = "py-test";
    c->sync = SMLT_SYNC_BSP;
    c->workers = 1;
    c->optim = SMLT_OPT_SGD;
    c->lr = 0.5f;
    c->seed = 3;
}

static void task(struct worker_task *t, const char *source, uint64_t start, uint64_t total)
{
    memset(t, 0, sizeof *t);
    t->job = "py-test";
    t->model = "python:tiny.py";
    t->model_source = source;
    t->data = "synthetic";
    t->batch = 32;
    t->sync = SMLT_SYNC_BSP;
    t->rank = 0;
    t->workers = 1;
    t->seed = 3;
    t->ps_addrs = addr;
    t->token = "tok";
    t->start_step = start;
    t->total_steps = total;
    t->evaluate = 1;
    t->timeout_ms = 20000;
}

struct prog {
    int calls;
    int stop_at; /* ask to stop at this call (0: never) */
    uint64_t last_next;
};

static int on_progress(const struct worker_report *r, void *arg)
{
    struct prog *p = arg;
    p->calls++;
    ck_assert_uint_ge(r->next_step, p->last_next);
    p->last_next = r->next_step;
    return p->stop_at && p->calls >= p->stop_at;
}

START_TEST(test_source_file)
{
    char a[4096], b[4096], c[4096], err[256];
    ck_assert_int_eq(worker_py_source_file("python:dir/tiny.py", TINY, a, sizeof a, err,
                                           sizeof err),
                     0);
    ck_assert_ptr_nonnull(strstr(a, tmpdir));
    ck_assert_str_eq(strrchr(a, '/'), "/tiny.py");
    size_t n = 0;
    char *text = smlt_file_read(a, 1 << 20, &n);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, TINY);
    free(text);
    /* the same text: the same file (a warm instance reuses it); another: another file */
    ck_assert_int_eq(worker_py_source_file("python:tiny.py", TINY, b, sizeof b, err, sizeof err), 0);
    ck_assert_str_eq(a, b);
    ck_assert_int_eq(worker_py_source_file("python:tiny.py", BAD, c, sizeof c, err, sizeof err), 0);
    ck_assert_str_ne(a, c);
    ck_assert_int_eq(worker_py_source_file("python:tiny.py", NULL, c, sizeof c, err, sizeof err),
                     SMLT_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "no training file"));
}
END_TEST

START_TEST(test_setup_train_warm_stop)
{
    char file[4096], err[512] = "";
    ck_assert_int_eq(worker_py_source_file("python:tiny.py", TINY, file, sizeof file, err,
                                           sizeof err),
                     0);
    struct smlt_job_conf conf;
    job_conf(&conf);
    uint64_t np = 0;
    int rc = worker_setup_python(addr, "tok", file, &conf, &np, err, sizeof err);
    ck_assert_msg(rc == 0, "setup: %s", err);
    ck_assert_uint_eq(np, 4 * 8 + 8 + 8 * 3 + 3);
    /* the shards hold the model's own initialization, not zeros */
    struct smlt_client_opts o = {.token = "tok", .timeout_ms = 10000};
    struct smlt_client *c = NULL;
    ck_assert_int_eq(smlt_client_connect(&c, addr, &o, err, sizeof err), 0);
    ck_assert_uint_eq(smlt_client_num_tensors(c), 4);
    struct smlt_tensor_info ti;
    smlt_client_tensor(c, 0, &ti);
    ck_assert_str_eq(ti.name, "0.weight");
    float init[67];
    ck_assert_int_eq(smlt_pull(c, 0, 1000, init, NULL), 0);
    int nonzero = 0;
    for (int i = 0; i < 32; i++)
        nonzero += init[i] != 0.0f;
    ck_assert_int_gt(nonzero, 16);

    /* a cold slice of 2 epochs (512 rows / batch 32 = 16 steps each), evaluated */
    struct worker *w = worker_new();
    struct worker_task t;
    struct worker_report r;
    struct prog p = {0};
    task(&t, TINY, 0, 32);
    rc = worker_run(w, &t, &r, on_progress, &p);
    ck_assert_msg(rc == 0, "run: %s", r.err);
    ck_assert_int_eq(r.status, WORKER_DONE);
    ck_assert_uint_eq(r.steps, 32);
    ck_assert_uint_eq(r.next_step, 32);
    ck_assert_uint_eq(r.steps_per_epoch, 16);
    ck_assert_int_eq(r.cold, 1);
    ck_assert_int_eq(p.calls, 32);
    ck_assert_int_eq(r.eval_epoch, 1);
    ck_assert_msg(r.test_acc > 0.6, "test accuracy %.3f after 2 epochs", r.test_acc);
    struct smlt_shard_stats st;
    ck_assert_int_eq(smlt_shard_stats(c, 0, &st), 0);
    ck_assert_uint_eq(st.pushes_counted, 32);
    ck_assert_uint_eq(st.clock, 32);

    /* a warm slice goes on from there, without starting Python again */
    memset(&p, 0, sizeof p);
    task(&t, TINY, 32, 64);
    t.max_steps = 8;
    rc = worker_run(w, &t, &r, on_progress, &p);
    ck_assert_msg(rc == 0, "warm run: %s", r.err);
    ck_assert_int_eq(r.status, WORKER_SLICE_END);
    ck_assert_int_eq(r.cold, 0);
    ck_assert_uint_eq(r.next_step, 40);

    /* asked to stop (the coordinator's stop, through the progress callback) */
    memset(&p, 0, sizeof p);
    p.stop_at = 3;
    task(&t, TINY, 40, 1000);
    rc = worker_run(w, &t, &r, on_progress, &p);
    ck_assert_msg(rc == 0, "stopped run: %s", r.err);
    ck_assert_int_eq(r.status, WORKER_SLICE_END);
    ck_assert_msg(r.steps >= 3 && r.steps <= 6, "%llu steps after a stop at the 3rd",
                  (unsigned long long)r.steps);

    /* the stop-by time: the slice ends cleanly before it, as timed out, and goes on later */
    memset(&p, 0, sizeof p);
    uint64_t from = r.next_step;
    task(&t, TINY, from, 100000);
    t.deadline = smlt_now_mono() + 1.5;
    rc = worker_run(w, &t, &r, on_progress, &p);
    ck_assert_msg(rc == 0, "deadline run: %s", r.err);
    ck_assert_int_eq(r.status, WORKER_TIME_UP);
    ck_assert_uint_gt(r.next_step, from);
    ck_assert_msg(smlt_now_mono() < t.deadline + 1.0, "returned %.2f s after the stop-by time",
                  smlt_now_mono() - t.deadline);
    ck_assert_int_eq(smlt_shard_stats(c, 0, &st), 0);
    ck_assert_uint_eq(st.pushes_counted, r.next_step); /* every step once */
    worker_free(w);
    smlt_client_close(c);
}
END_TEST

START_TEST(test_bad_training_file)
{
    char file[4096], err[512] = "";
    ck_assert_int_eq(worker_py_source_file("python:bad.py", BAD, file, sizeof file, err,
                                           sizeof err),
                     0);
    struct smlt_job_conf conf;
    job_conf(&conf);
    int rc = worker_setup_python(addr, "tok", file, &conf, NULL, err, sizeof err);
    ck_assert_int_eq(rc, SMLT_EINVAL);
    ck_assert_msg(strstr(err, "no model here"), "setup error: %s", err);
    /* a missing file */
    rc = worker_setup_python(addr, "tok", "/nonexistent/x.py", &conf, NULL, err, sizeof err);
    ck_assert_int_eq(rc, SMLT_EINVAL);
    /* in the bootstrap: the slice fails with the file's error, and the next slice (another
     * file) runs in the same Python child */
    char tiny[4096];
    ck_assert_int_eq(worker_py_source_file("python:tiny.py", TINY, tiny, sizeof tiny, err,
                                           sizeof err),
                     0);
    ck_assert_int_eq(worker_setup_python(addr, "tok", tiny, &conf, NULL, err, sizeof err), 0);
    struct worker *w = worker_new();
    struct worker_task t;
    struct worker_report r;
    task(&t, BAD, 0, 16);
    rc = worker_run(w, &t, &r, NULL, NULL);
    ck_assert_int_ne(rc, 0);
    ck_assert_int_eq(r.status, WORKER_FAILED);
    ck_assert_msg(strstr(r.err, "no model here"), "run error: %s", r.err);
    task(&t, TINY, 0, 4);
    rc = worker_run(w, &t, &r, NULL, NULL);
    ck_assert_msg(rc == 0, "run after a failed one: %s", r.err);
    ck_assert_uint_eq(r.next_step, 4);
    worker_free(w);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("worker_py");
    TCase *tc = tcase_create("python");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_source_file);
    tcase_add_test(tc, test_setup_train_warm_stop);
    tcase_add_test(tc, test_bad_training_file);
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
