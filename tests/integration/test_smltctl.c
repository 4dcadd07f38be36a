/* test_smltctl.c: the smltctl command against a real smlt-coordinator.
 *
 * Runs the built smltctl as a child process (stdout and stderr captured, $SMLT_HOME private)
 * and checks what it prints and its exit codes: submit (flags, dataset options, relative
 * dataset paths, spec files, refusals), status (table and --json), watch (exit code: 0 only for a job that
 * succeeded), model -o (read back with libsmlt), logs, cancel, checkpoint, scale, and the codes
 * 2 (usage), 3 (no such job) and 4 (unreachable). A second test runs up / status / submit /
 * watch / down on a private state directory; the coordinator `up` leaves behind is found
 * through cluster.json and, on every path, stopped by its pid. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "coord_test.h"
#include "smlt.h"

static char root[256];  /* everything a test writes goes under it; main() removes it */
static char dataset[256];
static char home[512];  /* $SMLT_HOME of every smltctl run */
static char work[512];  /* a scratch directory (model files) */
static char url[128];
static struct test_daemon coord;

/* ---- running smltctl ---------------------------------------------------------------------- */

struct run {
    int code;        /* exit code, or 128 + signal */
    char out[65536]; /* stdout */
    char err[16384]; /* stderr */
};

static void read_into(const char *path, char *buf, size_t n)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = '\0';
    fclose(f);
    unlink(path);
}

/* Runs smltctl with args (NULL-terminated) in directory cwd (NULL: work); stdin from in (NULL:
 * /dev/null). Fills r; returns r->code. */
static int ctl_in(struct run *r, const char *cwd, const char *in, const char *const *args)
{
    char outp[600], errp[600], inp[600];
    snprintf(outp, sizeof outp, "%s/.stdout", work);
    snprintf(errp, sizeof errp, "%s/.stderr", work);
    snprintf(inp, sizeof inp, "%s/.stdin", work);
    if (in) {
        FILE *f = fopen(inp, "w");
        ck_assert_ptr_nonnull(f);
        fputs(in, f);
        fclose(f);
    }
    const char *argv[40];
    int n = 0;
    argv[n++] = test_bin("smltctl");
    for (int i = 0; args[i] && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        int fi = open(in ? inp : "/dev/null", O_RDONLY);
        int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fi < 0 || fo < 0 || fe < 0 || chdir(cwd ? cwd : work) != 0)
            _exit(120);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        setenv("SMLT_HOME", home, 1);
        unsetenv("SMLT_URL");
        unsetenv("SMLT_TOKEN");
        alarm(240); /* watchdog */
        execv(argv[0], (char *const *)argv);
        _exit(121);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    read_into(outp, r->out, sizeof r->out);
    read_into(errp, r->err, sizeof r->err);
    if (in)
        unlink(inp);
    return r->code;
}

static int ctl(struct run *r, const char *const *args)
{
    return ctl_in(r, NULL, NULL, args);
}

#define CTL(r, ...) ctl((r), (const char *const[]){__VA_ARGS__, NULL})

/* Asserts an exit code, showing what smltctl said otherwise. */
#define EXPECT(r, want)                                                                            \
    ck_assert_msg((r)->code == (want), "exit %d (want %d)\nstdout: %s\nstderr: %s", (r)->code,     \
                  (want), (r)->out, (r)->err)

static void make_dirs(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    snprintf(home, sizeof home, "%s/home.XXXXXX", root);
    snprintf(work, sizeof work, "%s/work.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(home));
    ck_assert_ptr_nonnull(mkdtemp(work));
}

static char data_dir[300];

static void setup(void)
{
    make_dirs();
    snprintf(data_dir, sizeof data_dir, "%s/data.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, NULL), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", coord.port);
}

static void teardown(void)
{
    test_daemon_stop(&coord);
    ct_rm_rf(data_dir);
    ct_rm_rf(home);
    ct_rm_rf(work);
}

/* ---- against a coordinator ---------------------------------------------------------------- */

static int running_with_progress(const json_t *j)
{
    return !strcmp(ct_str(j, "state"), "running") && ct_num(j, "step") > 0;
}

START_TEST(jobs_through_smltctl)
{
    struct run *r = calloc(1, sizeof *r);
    char rel[256], parent[256], file[600], spec_path[600];
    snprintf(parent, sizeof parent, "%s", dataset);
    char *slash = strrchr(parent, '/');
    ck_assert_ptr_nonnull(slash);
    snprintf(rel, sizeof rel, "./%s", slash + 1);
    *slash = '\0';

    /* submit with flags and a dataset path relative to the working directory */
    const char *submit[] = {"--url", url, "--token", CT_ADMIN, "submit", "--model",
                            "logreg:784-10", "--data", rel, "--epochs", "2", "--workers", "2",
                            "--shards", "2", "--lr", "0.1", "--optimizer", "sgd", NULL};
    ctl_in(r, parent, NULL, submit);
    EXPECT(r, 0);
    ck_assert_str_eq(r->out, "job-0001\n");
    json_t *j = NULL;
    ck_assert_int_eq(ct_http_json(coord.port, "GET", "/api/jobs/job-0001", NULL, NULL, &j), 200);
    ck_assert_str_eq(ct_str(json_object_get(j, "spec"), "dataset"), dataset);
    json_decref(j);

    /* watch: plain lines (stdout is a file), a summary, exit 0 for success */
    CTL(r, "watch", "job-0001", "--url", url, "--interval", "0.2");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "job-0001 succeeded"));
    ck_assert_ptr_nonnull(strstr(r->out, "accuracy"));
    ck_assert_ptr_nonnull(strstr(r->out, "epoch 2 done"));
    ck_assert_ptr_null(strstr(r->out, "\033[")); /* no terminal codes into a file */

    /* status --json: the fields scripts rely on */
    CTL(r, "--url", url, "status", "job-0001", "--json");
    EXPECT(r, 0);
    json_error_t je;
    j = json_loads(r->out, 0, &je);
    ck_assert_msg(j != NULL, "status --json: %s", je.text);
    ck_assert_str_eq(ct_str(j, "state"), "succeeded");
    ck_assert_int_eq((long long)ct_num(j, "epoch"), 2);
    ck_assert(ct_num(j, "test_accuracy") > 0.5);
    ck_assert(ct_num(j, "cost_usd") > 0);
    ck_assert_int_eq((long long)ct_num(j, "workers"), 2);
    ck_assert_int_eq((long long)ct_num(j, "shards"), 2);
    json_decref(j);
    CTL(r, "--url", url, "status");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "job-0001"));
    ck_assert_ptr_nonnull(strstr(r->out, "succeeded"));
    CTL(r, "--url", url, "status", "job-0001");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "logreg:784-10"));
    CTL(r, "--url", url, "status", "--json");
    EXPECT(r, 0);
    j = json_loads(r->out, 0, &je);
    ck_assert_int_eq(json_array_size(json_object_get(j, "jobs")), 1);
    json_decref(j);

    /* model -o: downloaded, checked, listed, and readable by libsmlt */
    snprintf(file, sizeof file, "%s/model.smlt", work);
    CTL(r, "--url", url, "model", "job-0001", "-o", file);
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "fc1.weight"));
    ck_assert_ptr_nonnull(strstr(r->out, "7850 parameters"));
    struct smlt_model *m = NULL;
    char err[256];
    ck_assert_msg(smlt_model_read(file, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(smlt_model_num_params(m), 7850);
    ck_assert_int_eq(smlt_model_num_tensors(m), 2);
    ck_assert_int_ge(smlt_model_find(m, "fc1.bias"), 0);
    smlt_model_free(m);
    CTL(r, "--url", url, "model", "job-0001", "-o", file, "--json");
    EXPECT(r, 0);
    j = json_loads(r->out, 0, &je);
    ck_assert_int_eq((long long)ct_num(j, "params"), 7850);
    json_decref(j);

    /* logs */
    CTL(r, "--url", url, "logs", "job-0001", "--tail", "3");
    EXPECT(r, 0);
    int lines = 0;
    for (const char *p = r->out; *p; p++)
        lines += *p == '\n';
    ck_assert_int_eq(lines, 3);
    ck_assert_ptr_nonnull(strstr(r->out, "coordinator:"));

    /* a spec file, then cancel it while it runs: watch says 1 */
    snprintf(spec_path, sizeof spec_path, "%s/spec.json", work);
    FILE *f = fopen(spec_path, "w");
    fprintf(f, "{\"model\": \"mlp:784-256-128-10\", \"dataset\": \"%s\", \"epochs\": 50, "
               "\"workers\": 2, \"shards\": 1}\n", dataset);
    fclose(f);
    CTL(r, "--url", url, "--token", CT_ADMIN, "submit", spec_path);
    EXPECT(r, 0);
    ck_assert_str_eq(r->out, "job-0002\n");
    j = ct_wait_until(coord.port, "job-0002", 120, running_with_progress);
    ck_assert_str_eq(ct_str(j, "state"), "running");
    json_decref(j);
    CTL(r, "--url", url, "--token", CT_ADMIN, "checkpoint", "job-0002");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "model.smlt"));
    snprintf(file, sizeof file, "%s/running.smlt", work);
    CTL(r, "--url", url, "model", "job-0002", "-o", file);
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "235146 parameters"));
    CTL(r, "--url", url, "--token", CT_ADMIN, "scale", "job-0002", "--workers", "2");
    EXPECT(r, 0);
    CTL(r, "--url", url, "--token", CT_ADMIN, "scale", "job-0001", "--workers", "2");
    EXPECT(r, 1); /* it has ended */
    ck_assert_ptr_nonnull(strstr(r->err, "job-0001"));
    CTL(r, "--url", url, "--token", CT_ADMIN, "cancel", "job-0002");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "canceled job-0002"));
    CTL(r, "--url", url, "watch", "job-0002");
    EXPECT(r, 1);
    ck_assert_ptr_nonnull(strstr(r->out, "canceled"));
    CTL(r, "--url", url, "--token", CT_ADMIN, "cancel", "job-0002");
    EXPECT(r, 1); /* already ended */
    ck_assert_ptr_nonnull(strstr(r->err, "job-0002"));

    /* a spec on stdin, submitted and watched in one go */
    char spec[512];
    snprintf(spec, sizeof spec, "{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", "
                                "\"epochs\": 1, \"workers\": 1, \"shards\": 1}", dataset);
    ctl_in(r, NULL, spec, (const char *const[]){"--url", url, "--token", CT_ADMIN, "submit", "-",
                                                "--watch", NULL});
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "job-0003 succeeded"));

    /* refused specs: exit 1, the field named */
    CTL(r, "--url", url, "--token", CT_ADMIN, "submit", "--model", "logreg:784-10", "--data",
        dataset, "--epochs", "1", "--budget", "-2");
    EXPECT(r, 1);
    ck_assert_ptr_nonnull(strstr(r->err, "budget_usd"));
    CTL(r, "--url", url, "--token", CT_ADMIN, "submit", "--model", "nope:1", "--data", dataset,
        "--epochs", "1");
    EXPECT(r, 1);
    ck_assert_ptr_nonnull(strstr(r->err, "model"));
    CTL(r, "--url", url, "--token", "wrong", "submit", "--model", "logreg:784-10", "--data",
        dataset, "--epochs", "1");
    EXPECT(r, 1);
    ck_assert_ptr_nonnull(strstr(r->err, "token"));
    CTL(r, "--url", url, "submit", "--model", "logreg:784-10", "--data", dataset, "--epochs", "1");
    EXPECT(r, 1); /* no token at all */
    CTL(r, "--url", url, "--token", CT_ADMIN, "submit", "--model", "logreg:784-10", "--data",
        dataset, "--epochs", "1", "--label-column", "last");
    EXPECT(r, 1); /* an IDX dataset has no label column */
    ck_assert_ptr_nonnull(strstr(r->err, "dataset_options.label_column: only meaningful with a "
                                         "csv: dataset"));

    /* the dataset options as flags: a CSV with a header and the label in the first and last
     * column alike (the job trains whether or not the worker honours them) */
    char csv[600], data[640];
    snprintf(csv, sizeof csv, "%s/opts.csv", work);
    f = fopen(csv, "w");
    fputs("label,x,y,label\n", f);
    for (int i = 0; i < 64; i++)
        fprintf(f, "%d,%d,%d,%d\n", i % 2, 100 * (i % 2) + i % 7, i % 5, i % 2);
    fclose(f);
    snprintf(data, sizeof data, "csv:%s", csv);
    CTL(r, "--url", url, "--token", CT_ADMIN, "submit", "--model", "logreg:3-2", "--data", data,
        "--epochs", "1", "--workers", "1", "--shards", "1", "--header", "maybe");
    EXPECT(r, 1);
    ck_assert_ptr_nonnull(strstr(r->err, "dataset_options.header: must be \"auto\", true or "
                                         "false (got \"maybe\")"));
    CTL(r, "--url", url, "--token", CT_ADMIN, "submit", "--model", "logreg:3-2", "--data", data,
        "--epochs", "1", "--workers", "1", "--shards", "1", "--label-column", "last", "--header",
        "true", "--scale", "minmax", "--watch");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "job-0004 succeeded"));
    ck_assert_int_eq(ct_http_json(coord.port, "GET", "/api/jobs/job-0004", NULL, NULL, &j), 200);
    const json_t *dopt = json_object_get(json_object_get(j, "spec"), "dataset_options");
    ck_assert_str_eq(ct_str(dopt, "label_column"), "last");
    ck_assert(json_is_true(json_object_get(dopt, "header")));
    ck_assert_str_eq(ct_str(dopt, "scale"), "minmax");
    json_decref(j);

    /* 3: no such job, whatever the command */
    const char *notfound[][4] = {{"status", "job-9999", NULL}, {"watch", "job-9999", NULL},
                                 {"model", "job-9999", NULL},  {"logs", "job-9999", NULL},
                                 {"cancel", "job-9999", NULL}, {"checkpoint", "job-9999", NULL},
                                 {"status", "../etc", NULL}};
    for (size_t i = 0; i < sizeof notfound / sizeof notfound[0]; i++) {
        CTL(r, "--url", url, "--token", CT_ADMIN, notfound[i][0], notfound[i][1]);
        ck_assert_msg(r->code == 3, "%s %s: exit %d: %s", notfound[i][0], notfound[i][1], r->code,
                      r->err);
        ck_assert_ptr_nonnull(strstr(r->err, "no job"));
    }

    /* 4: nothing listening, or no cluster and no --url */
    CTL(r, "--url", "http://127.0.0.1:1", "status");
    EXPECT(r, 4);
    ck_assert_ptr_nonnull(strstr(r->err, "cannot reach the coordinator at http://127.0.0.1:1"));
    ck_assert_ptr_nonnull(strstr(r->err, "smltctl up"));
    CTL(r, "--url", "http://127.0.0.1:1", "watch", "job-0001");
    EXPECT(r, 4);
    CTL(r, "status");
    EXPECT(r, 4);
    ck_assert_ptr_nonnull(strstr(r->err, "smltctl up"));

    /* 2: usage */
    CTL(r, "frobnicate");
    EXPECT(r, 2);
    CTL(r, "--url", url, "status", "--bogus");
    EXPECT(r, 2);
    CTL(r, "--url", url, "submit", "--epochs", "many");
    EXPECT(r, 2);
    CTL(r, "--url", url, "watch");
    EXPECT(r, 2);
    CTL(r, "--url", url, "scale", "job-0001");
    EXPECT(r, 2);
    CTL(r, "submit", "--help");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "usage: smltctl submit"));
    CTL(r, "--help");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "4  cannot reach the coordinator"));
    free(r);
}
END_TEST

/* watch on a terminal: the two progress lines are redrawn in place, then the summary. */
START_TEST(watch_on_a_terminal)
{
    char spec[512], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-256-128-10\", \"dataset\": \"%s\", \"epochs\": 3, "
             "\"workers\": 2, \"shards\": 1, \"batch_size\": 16}", dataset);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    int master = -1;
    struct winsize ws = {.ws_row = 24, .ws_col = 120};
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        alarm(240);
        setenv("SMLT_HOME", home, 1);
        execl(test_bin("smltctl"), "smltctl", "--url", url, "watch", id, "--interval", "0.1",
              (char *)NULL);
        _exit(121);
    }
    size_t cap = 1 << 20, n = 0;
    char *out = malloc(cap);
    for (;;) {
        ssize_t k = read(master, out + n, cap - 1 - n);
        if (k <= 0)
            break; /* EIO once the child has exited and the pty is closed */
        n += (size_t)k;
        if (n >= cap - 1)
            break;
    }
    out[n] = '\0';
    close(master);
    int st = 0;
    waitpid(pid, &st, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "watch on a pty: status %d\n%s", st, out);
    ck_assert_ptr_nonnull(strstr(out, "\033[1A"));  /* redrawn in place */
    ck_assert_ptr_nonnull(strstr(out, "\033[2K"));
    ck_assert_ptr_nonnull(strstr(out, "epoch 3 done"));
    char done[64];
    snprintf(done, sizeof done, "%s succeeded", id);
    ck_assert_ptr_nonnull(strstr(out, done));
    /* The progress lines fit the terminal (a wrapped line would break the redraw). */
    size_t widest = 0;
    char line[1024];
    size_t col = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || out[i] == '\n' || out[i] == '\r') {
            line[col] = '\0';
            if ((!strncmp(line, id, strlen(id)) && line[strlen(id)] == ' ') ||
                !strncmp(line, "  loss ", 7))
                widest = col > widest ? col : widest;
            col = 0;
        } else if (out[i] == '\033') {
            while (i < n && !((out[i] >= 'A' && out[i] <= 'Z') || (out[i] >= 'a' && out[i] <= 'z')))
                i++;
        } else if (col < sizeof line - 1) {
            line[col++] = out[i];
        }
    }
    ck_assert_int_gt(widest, 40);
    ck_assert_int_le(widest, 120);
    free(out);
    free(id);
}
END_TEST

/* ---- up / down on a private state directory ------------------------------------------------- */

static pid_t up_pid;   /* the coordinator `smltctl up` started */
static pid_t guard;    /* kills it if this test process dies first */

static int is_coordinator(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, "smlt-coordinator") != NULL;
}

/* A child that waits (up to timeout_s) for SIGTERM from us; if instead we die (PDEATHSIG) or the
 * time runs out, it kills the coordinator by its pid. It leaves our process group, which Check
 * kills when a test ends. */
static pid_t guard_start(pid_t victim, unsigned timeout_s)
{
    pid_t parent = getpid();
    pid_t g = fork();
    if (g != 0)
        return g;
    setpgid(0, 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    prctl(PR_SET_PDEATHSIG, SIGUSR1);
    int sig = getppid() == parent ? -1 : SIGUSR1;
    struct timespec to = {(time_t)timeout_s, 0};
    if (sig < 0)
        sig = sigtimedwait(&set, NULL, &to);
    if (sig != SIGTERM && is_coordinator(victim))
        kill(victim, SIGKILL);
    _exit(0);
}

static void up_cleanup(void)
{
    if (up_pid > 0 && is_coordinator(up_pid)) {
        kill(up_pid, SIGTERM);
        for (int i = 0; i < 200 && is_coordinator(up_pid); i++) {
            int st;
            if (waitpid(up_pid, &st, WNOHANG) == up_pid)
                break;
            usleep(50000);
        }
        if (is_coordinator(up_pid))
            kill(up_pid, SIGKILL);
    }
    if (up_pid > 0)
        waitpid(up_pid, NULL, WNOHANG);
    if (guard > 0) {
        kill(guard, SIGTERM);
        waitpid(guard, NULL, 0);
        guard = 0;
    }
    up_pid = 0;
}

static void up_setup(void)
{
    make_dirs();
    /* The coordinator outlives smltctl (its own session); as a subreaper we inherit it and can
     * reap it after `down`. A failed check ends this process without the teardown: the guard
     * (guard_start) stops the coordinator then. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
}

static void up_teardown(void)
{
    up_cleanup();
    ct_rm_rf(home);
    ct_rm_rf(work);
}

#if defined(__SANITIZE_ADDRESS__)
#define UP "up", "--no-memory-limit" /* see ct_coord_start() */
#else
#define UP "up"
#endif

START_TEST(up_status_down)
{
    struct run *r = calloc(1, sizeof *r);
    CTL(r, UP);
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "/api"));
    ck_assert_ptr_nonnull(strstr(r->out, "coordinator.log"));
    char cj[600];
    snprintf(cj, sizeof cj, "%s/cluster.json", home);
    struct stat st;
    ck_assert_int_eq(stat(cj, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    json_error_t je;
    json_t *c = json_load_file(cj, 0, &je);
    ck_assert_ptr_nonnull(c);
    up_pid = (pid_t)ct_num(c, "pid");
    ck_assert_int_gt(up_pid, 0);
    guard = guard_start(up_pid, 300);
    ck_assert(is_coordinator(up_pid));
    ck_assert_int_ge(strlen(ct_str(c, "token")), 32);
    ck_assert_ptr_nonnull(strstr(ct_str(c, "url"), "http://127.0.0.1:"));
    ck_assert_ptr_nonnull(strstr(ct_str(c, "log"), home));
    ck_assert_ptr_nonnull(strstr(ct_str(c, "data_dir"), home));
    /* The token is not on the coordinator's command line. */
    char path[64], cmd[4096];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)up_pid);
    FILE *f = fopen(path, "r");
    size_t n = fread(cmd, 1, sizeof cmd - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        cmd[i] = cmd[i] ? cmd[i] : ' ';
    cmd[n] = '\0';
    ck_assert_ptr_null(strstr(cmd, ct_str(c, "token")));
    /* It is in its own session: smltctl's exit did not take it along. */
    ck_assert_int_eq(getsid(up_pid), up_pid);

    CTL(r, UP);
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "already up"));
    json_t *c2 = json_load_file(cj, 0, &je);
    ck_assert_int_eq((long long)ct_num(c2, "pid"), up_pid);
    json_decref(c2);

    /* Commands find it through cluster.json, token included. */
    CTL(r, "status");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "no jobs yet"));
    CTL(r, "submit", "--model", "logreg:784-10", "--data", dataset, "--epochs", "1",
        "--workers", "1", "--shards", "1");
    EXPECT(r, 0);
    ck_assert_str_eq(r->out, "job-0001\n");
    CTL(r, "watch", "job-0001");
    EXPECT(r, 0);
    /* The dashboard: its URL, and where the token is (printed only when asked). */
    CTL(r, "dashboard");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, ct_str(c, "url")));
    ck_assert_ptr_nonnull(strstr(r->out, "Admin token"));
    ck_assert_ptr_null(strstr(r->out, ct_str(c, "token")));
    CTL(r, "dashboard", "--show-token");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, ct_str(c, "token")));
    /* The token goes only to the cluster it belongs to. */
    CTL(r, "--url", "http://127.0.0.1:1", "cancel", "job-0001");
    EXPECT(r, 4);

    CTL(r, "down");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "stopped"));
    int wst = 0;
    ck_assert_int_eq(waitpid(up_pid, &wst, 0), up_pid); /* ours to reap, as the subreaper */
    ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);  /* it shut down cleanly on SIGTERM */
    up_pid = 0;
    ck_assert_int_ne(access(cj, F_OK), 0);
    CTL(r, "status");
    EXPECT(r, 4);
    CTL(r, "down");
    EXPECT(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "nothing to stop"));

    /* A stale cluster.json (its pid gone) does not stop a new `up`; the history is kept. */
    json_object_set_new(c, "pid", json_integer(999999));
    ck_assert_int_eq(json_dump_file(c, cj, 0), 0);
    CTL(r, UP);
    EXPECT(r, 0);
    c2 = json_load_file(cj, 0, &je);
    up_pid = (pid_t)ct_num(c2, "pid");
    json_decref(c2);
    kill(guard, SIGTERM);
    waitpid(guard, NULL, 0);
    guard = guard_start(up_pid, 300);
    CTL(r, "status", "job-0001", "--json");
    EXPECT(r, 0);
    json_t *j = json_loads(r->out, 0, &je);
    ck_assert_str_eq(ct_str(j, "state"), "succeeded");
    json_decref(j);
    CTL(r, "down");
    EXPECT(r, 0);
    waitpid(up_pid, NULL, 0);
    up_pid = 0;
    json_decref(c);
    free(r);
}
END_TEST

/* `up --platform`: the coordinator runs its workers on that platform (here a Knative URL where
 * nothing listens), so a job must name it, and a job that does not is refused for that. */
START_TEST(up_on_a_platform)
{
    struct run *r = calloc(1, sizeof *r);
    CTL(r, UP, "--platform", "knative", "--function-url", "http://127.0.0.1:1/");
    EXPECT(r, 0);
    char cj[600];
    snprintf(cj, sizeof cj, "%s/cluster.json", home);
    json_error_t je;
    json_t *c = json_load_file(cj, 0, &je);
    ck_assert_ptr_nonnull(c);
    up_pid = (pid_t)ct_num(c, "pid");
    json_decref(c);
    ck_assert_int_gt(up_pid, 0);
    guard = guard_start(up_pid, 300);
    CTL(r, "submit", "--model", "logreg:784-10", "--data", dataset, "--epochs", "1");
    EXPECT(r, 1);
    ck_assert_msg(strstr(r->err, "platform.kind") && strstr(r->err, "knative"), "%s", r->err);
    CTL(r, "submit", "--model", "logreg:784-10", "--data", dataset, "--epochs", "1",
        "--platform", "knative");
    EXPECT(r, 0);
    ck_assert_str_eq(r->out, "job-0001\n");
    CTL(r, "status", "job-0001", "--json");
    EXPECT(r, 0);
    json_t *j = json_loads(r->out, 0, &je);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(ct_str(json_object_get(json_object_get(j, "spec"), "platform"), "kind"),
                     "knative");
    json_decref(j);
    CTL(r, "cancel", "job-0001");
    EXPECT(r, 0);
    CTL(r, "down");
    EXPECT(r, 0);
    waitpid(up_pid, NULL, 0);
    up_pid = 0;
    free(r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("smltctl");
    TCase *tc = tcase_create("coordinator");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, jobs_through_smltctl);
    tcase_add_test(tc, watch_on_a_terminal);
    suite_add_tcase(s, tc);
    TCase *up = tcase_create("local cluster");
    tcase_add_checked_fixture(up, up_setup, up_teardown);
    tcase_set_timeout(up, 300);
    tcase_add_test(up, up_status_down);
    tcase_add_test(up, up_on_a_platform);
    suite_add_tcase(s, up);
    return s;
}

int main(void)
{
    return ct_main("smltctl", suite(), root, sizeof root, dataset, sizeof dataset, 12000, 2000);
}
