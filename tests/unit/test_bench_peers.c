/* test_bench_peers.c: Check suite for tools/bench_peers.c (the TCP ceiling and Redis peers).
 *
 * Small sizes and few reps: these tests check that the functions work and that they leave no
 * process and no directory behind, on success and on failure. No timing is asserted.
 *
 * Hostile replies come from a fake redis-server: this same binary, started through
 * SMLT_REDIS_SERVER. When run as "test_bench_peers --port P ..." it serves PING, SET and GET on
 * 127.0.0.1:P and answers GET the way $FAKE_REDIS_MODE says (wrong length, error, nil, endless
 * line, truncated payload, wrong bytes, bad terminator) or never answers PING with +PONG. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "bench_peers.h"
#include "smlt_error.h"

#define MB 1000000u

/* ---- helpers -------------------------------------------------------------------------------- */

/* Asserts this process has no child left, running or unreaped. */
static void assert_no_children(void)
{
    errno = 0;
    ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
    ck_assert_int_eq(errno, ECHILD);
}

static int dir_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* Points TMPDIR at a fresh directory so a test can see what redis start/stop leave there. */
static char test_tmp[64];

static void tmpdir_private(void)
{
    snprintf(test_tmp, sizeof test_tmp, "/tmp/test_bench_peers.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(test_tmp));
    setenv("TMPDIR", test_tmp, 1);
}

static void tmpdir_check_empty_and_remove(void)
{
    ck_assert_int_eq(dir_entries(test_tmp), 0);
    ck_assert_int_eq(rmdir(test_tmp), 0);
    unsetenv("TMPDIR");
}

static void use_fake_redis(const char *mode)
{
    static char self[4096];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert_int_gt(k, 0);
    self[k] = '\0';
    setenv("SMLT_REDIS_SERVER", self, 1);
    setenv("FAKE_REDIS_MODE", mode, 1);
}

static void assert_positive(const double *v, int n)
{
    for (int i = 0; i < n; i++)
        ck_assert(v[i] > 0.0 && isfinite(v[i]));
}

/* ---- percentile ----------------------------------------------------------------------------- */

START_TEST(test_percentile_values)
{
    double v[] = {4.0, 1.0, 3.0, 2.0};
    ck_assert_double_eq_tol(bench_peers_percentile(v, 4, 50), 2.5, 1e-12);
    ck_assert_double_eq(v[0], 1.0); /* sorted in place */
    ck_assert_double_eq(v[3], 4.0);
    ck_assert_double_eq_tol(bench_peers_percentile(v, 4, 0), 1.0, 1e-12);
    ck_assert_double_eq_tol(bench_peers_percentile(v, 4, 100), 4.0, 1e-12);
    ck_assert_double_eq_tol(bench_peers_percentile(v, 4, 25), 1.75, 1e-12);
    double odd[] = {5.0, 9.0, 1.0};
    ck_assert_double_eq_tol(bench_peers_percentile(odd, 3, 50), 5.0, 1e-12);
    double one[] = {7.0};
    ck_assert_double_eq_tol(bench_peers_percentile(one, 1, 90), 7.0, 1e-12);
}
END_TEST

START_TEST(test_percentile_edges)
{
    double v[] = {2.0, 1.0};
    ck_assert(isnan(bench_peers_percentile(v, 0, 50)));
    ck_assert(isnan(bench_peers_percentile(NULL, 2, 50)));
    ck_assert(isnan(bench_peers_percentile(v, 2, NAN)));
    ck_assert_double_eq_tol(bench_peers_percentile(v, 2, -5), 1.0, 1e-12);
    ck_assert_double_eq_tol(bench_peers_percentile(v, 2, 250), 2.0, 1e-12);
}
END_TEST

/* ---- TCP ------------------------------------------------------------------------------------ */

START_TEST(test_tcp_sync_small)
{
    double ms[5];
    ck_assert_int_eq(bench_peers_tcp_sync(1 * MB, 5, ms), 0);
    assert_positive(ms, 5);
    assert_no_children();
}
END_TEST

START_TEST(test_tcp_sync_odd_sizes)
{
    double ms[2];
    ck_assert_int_eq(bench_peers_tcp_sync(1, 2, ms), 0);
    assert_positive(ms, 2);
    ck_assert_int_eq(bench_peers_tcp_sync(MB + 3, 2, ms), 0);
    assert_positive(ms, 2);
    assert_no_children();
}
END_TEST

START_TEST(test_tcp_sync_bad_args)
{
    double ms[2];
    ck_assert_int_eq(bench_peers_tcp_sync(0, 2, ms), SMLT_EINVAL);
    ck_assert_int_eq(bench_peers_tcp_sync(MB, 0, ms), SMLT_EINVAL);
    ck_assert_int_eq(bench_peers_tcp_sync(MB, 2, NULL), SMLT_EINVAL);
    ck_assert_int_eq(bench_peers_tcp_sync(BENCH_PEERS_MAX_BYTES + 1, 2, ms), SMLT_ETOOBIG);
    ck_assert_int_eq(bench_peers_tcp_sync_multi(MB, 0, 2, ms), SMLT_EINVAL);
    ck_assert_int_eq(bench_peers_tcp_sync_multi(MB, BENCH_PEERS_MAX_WORKERS + 1, 2, ms),
                     SMLT_ETOOBIG);
    assert_no_children();
}
END_TEST

START_TEST(test_tcp_sync_multi)
{
    enum { W = 3, R = 3 };
    double ms[W * R];
    ck_assert_int_eq(bench_peers_tcp_sync_multi(1 * MB, W, R, ms), 0);
    assert_positive(ms, W * R);
    ck_assert_int_eq(bench_peers_tcp_sync_multi(1 * MB, 1, R, ms), 0);
    assert_positive(ms, R);
    assert_no_children();
}
END_TEST

/* ---- Redis ---------------------------------------------------------------------------------- */

START_TEST(test_redis_start_stop)
{
    struct bench_redis *r = NULL;
    tmpdir_private();
    unsetenv("SMLT_REDIS_SERVER");
    ck_assert_int_eq(bench_peers_redis_start(&r), 0);
    ck_assert_ptr_nonnull(r);
    pid_t pid = bench_peers_redis_pid(r);
    ck_assert_int_gt(pid, 0);
    ck_assert_int_gt(bench_peers_redis_port(r), 0);
    ck_assert_int_eq(kill(pid, 0), 0);
    ck_assert_int_eq(dir_entries(test_tmp), 1); /* its working directory */
    bench_peers_redis_stop(r);
    errno = 0;
    ck_assert_int_eq(kill(pid, 0), -1);
    ck_assert_int_eq(errno, ESRCH);
    assert_no_children();
    tmpdir_check_empty_and_remove();
    bench_peers_redis_stop(NULL);
}
END_TEST

START_TEST(test_redis_sync_small)
{
    struct bench_redis *r = NULL;
    double ms[6];
    unsetenv("SMLT_REDIS_SERVER");
    ck_assert_int_eq(bench_peers_redis_start(&r), 0);
    ck_assert_int_eq(bench_peers_redis_sync(r, 1 * MB, 1, 3, ms), 0);
    assert_positive(ms, 3);
    ck_assert_int_eq(bench_peers_redis_sync(r, 1 * MB, 2, 3, ms), 0);
    assert_positive(ms, 6);
    ck_assert_int_eq(bench_peers_redis_sync(r, 4, 1, 2, ms), 0); /* one float */
    assert_positive(ms, 2);
    ck_assert_int_eq(bench_peers_redis_sync(r, MB + 2, 1, 2, ms), SMLT_EINVAL);
    ck_assert_int_eq(bench_peers_redis_sync(r, 0, 1, 2, ms), SMLT_EINVAL);
    ck_assert_int_eq(bench_peers_redis_sync(r, MB, 0, 2, ms), SMLT_EINVAL);
    ck_assert_int_eq(bench_peers_redis_sync(r, MB, 1, 0, ms), SMLT_EINVAL);
    ck_assert_int_eq(bench_peers_redis_sync(NULL, MB, 1, 2, ms), SMLT_EINVAL);
    ck_assert_int_eq(bench_peers_redis_sync(r, BENCH_PEERS_MAX_BYTES + 4, 1, 2, ms),
                     SMLT_ETOOBIG);
    pid_t pid = bench_peers_redis_pid(r);
    bench_peers_redis_stop(r);
    ck_assert_int_eq(kill(pid, 0), -1);
    assert_no_children();
}
END_TEST

START_TEST(test_redis_missing_binary)
{
    struct bench_redis *r = (struct bench_redis *)&r;
    setenv("SMLT_REDIS_SERVER", "/nonexistent", 1);
    ck_assert_int_eq(bench_peers_redis_start(&r), SMLT_ENOTFOUND);
    ck_assert_ptr_null(r);
    /* A file without execute permission, then one that has it but is no program: the second
     * gets as far as exec(), which fails in the child; the child is reaped. */
    char path[] = "/tmp/test_bench_peers_bin.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "not a program\n", 14), 14);
    close(fd);
    ck_assert_int_eq(chmod(path, 0644), 0);
    setenv("SMLT_REDIS_SERVER", path, 1);
    ck_assert_int_eq(bench_peers_redis_start(&r), SMLT_ENOTFOUND);
    ck_assert_int_eq(chmod(path, 0755), 0);
    tmpdir_private();
    ck_assert_int_eq(bench_peers_redis_start(&r), SMLT_ENOTFOUND);
    ck_assert_ptr_null(r);
    tmpdir_check_empty_and_remove();
    unlink(path);
    ck_assert_int_eq(bench_peers_redis_start(NULL), SMLT_EINVAL);
    assert_no_children();
}
END_TEST

START_TEST(test_redis_exits_at_start)
{
    struct bench_redis *r = NULL;
    tmpdir_private();
    setenv("SMLT_REDIS_SERVER", "/bin/false", 1);
    ck_assert_int_eq(bench_peers_redis_start(&r), SMLT_EIO);
    ck_assert_ptr_null(r);
    assert_no_children();
    tmpdir_check_empty_and_remove();
}
END_TEST

/* A server that never answers PING with +PONG: start gives up after its 10 s and kills it. */
START_TEST(test_redis_never_ready)
{
    struct bench_redis *r = NULL;
    tmpdir_private();
    use_fake_redis("nopong");
    ck_assert_int_eq(bench_peers_redis_start(&r), SMLT_ETIMEDOUT);
    ck_assert_ptr_null(r);
    assert_no_children();
    tmpdir_check_empty_and_remove();
}
END_TEST

static const struct {
    const char *mode;
    int want;
} hostile[] = {
    {"badlen", SMLT_EPROTO},    {"error", SMLT_EPROTO},      {"nil", SMLT_ENOTFOUND},
    {"longline", SMLT_EPROTO},  {"truncate", SMLT_ECLOSED},  {"corrupt", SMLT_ECORRUPT},
    {"badcrlf", SMLT_EPROTO},   {"notbulk", SMLT_EPROTO},
};

START_TEST(test_redis_hostile_get)
{
    struct bench_redis *r = NULL;
    double ms[4];
    use_fake_redis(hostile[_i].mode);
    ck_assert_int_eq(bench_peers_redis_start(&r), 0);
    ck_assert_int_eq(bench_peers_redis_sync(r, 4096, 1, 2, ms), hostile[_i].want);
    /* The same through forked workers: the parent sees the failure and reaps them all. */
    ck_assert_int_eq(bench_peers_redis_sync(r, 4096, 2, 2, ms), hostile[_i].want);
    pid_t pid = bench_peers_redis_pid(r);
    bench_peers_redis_stop(r);
    ck_assert_int_eq(kill(pid, 0), -1);
    assert_no_children();
}
END_TEST

START_TEST(test_redis_fake_good)
{
    /* The fake answers correctly in mode "good": this checks the fake itself, so the hostile
     * cases above fail for the reason they name. */
    struct bench_redis *r = NULL;
    double ms[4];
    use_fake_redis("good");
    ck_assert_int_eq(bench_peers_redis_start(&r), 0);
    ck_assert_int_eq(bench_peers_redis_sync(r, 4096, 2, 2, ms), 0);
    assert_positive(ms, 4);
    bench_peers_redis_stop(r);
    assert_no_children();
}
END_TEST

/* ---- the fake redis-server ------------------------------------------------------------------ */

static int fake_read(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t k = read(fd, p, n);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int fake_write(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int fake_line(int fd, char *buf, size_t cap)
{
    size_t i = 0;
    for (;;) {
        char ch;
        if (read(fd, &ch, 1) != 1)
            return -1;
        if (ch == '\n') {
            if (i > 0 && buf[i - 1] == '\r')
                i--;
            buf[i] = '\0';
            return 0;
        }
        if (i + 1 < cap)
            buf[i++] = ch;
    }
}

/* Reads one command; keeps its first two arguments (if short) and the last one's length. */
static int fake_command(int fd, char *cmd, char *key, size_t *last_len)
{
    char line[64], scratch[65536];
    if (fake_line(fd, line, sizeof line) < 0 || line[0] != '*')
        return -1;
    int argc = atoi(line + 1);
    cmd[0] = key[0] = '\0';
    for (int i = 0; i < argc; i++) {
        if (fake_line(fd, line, sizeof line) < 0 || line[0] != '$')
            return -1;
        size_t len = strtoull(line + 1, NULL, 10), left = len + 2;
        if (i < 2 && len < 64) {
            char *dst = i == 0 ? cmd : key;
            if (fake_read(fd, dst, len) < 0)
                return -1;
            dst[len] = '\0';
            left = 2;
        }
        while (left > 0) {
            size_t k = left < sizeof scratch ? left : sizeof scratch;
            if (fake_read(fd, scratch, k) < 0)
                return -1;
            left -= k;
        }
        *last_len = len;
    }
    return argc;
}

/* Answers GET model as the mode says. Returns 1 to drop the connection afterwards. */
static int fake_get_reply(int fd, const char *mode, size_t n)
{
    char hdr[64];
    int hl = snprintf(hdr, sizeof hdr, "$%zu\r\n", n);
    float *body = calloc(n / 4 + 1, sizeof *body);
    int drop = 0;
    if (strcmp(mode, "good") == 0 || strcmp(mode, "badcrlf") == 0) {
        for (size_t i = 0; i < n / 4; i++)
            body[i] = (float)(i % 4093) * 0.25f + 1.0f; /* what bench_peers seeds */
    }
    if (strcmp(mode, "badlen") == 0) {
        fake_write(fd, "$7\r\nabcdefg\r\n", 13);
    } else if (strcmp(mode, "error") == 0) {
        fake_write(fd, "-ERR fake failure\r\n", 19);
    } else if (strcmp(mode, "nil") == 0) {
        fake_write(fd, "$-1\r\n", 5);
    } else if (strcmp(mode, "notbulk") == 0) {
        fake_write(fd, ":42\r\n", 5);
    } else if (strcmp(mode, "longline") == 0) {
        char x[1000];
        memset(x, 'x', sizeof x);
        fake_write(fd, "$", 1);
        fake_write(fd, x, sizeof x);
    } else if (strcmp(mode, "truncate") == 0) {
        fake_write(fd, hdr, (size_t)hl);
        fake_write(fd, body, n / 2);
        drop = 1;
    } else {
        fake_write(fd, hdr, (size_t)hl);
        fake_write(fd, body, n);
        fake_write(fd, strcmp(mode, "badcrlf") == 0 ? "XY" : "\r\n", 2);
    }
    free(body);
    return drop;
}

/* Serves one connection: the GET reply's size is the size of this connection's last SET (each
 * bench_peers worker SETs its gradient, of the model's size, before it GETs the model). */
static void fake_serve(int fd, const char *mode)
{
    size_t set_len = 0;
    for (;;) {
        char cmd[64], key[64];
        size_t last = 0;
        if (fake_command(fd, cmd, key, &last) < 0)
            return;
        if (strcasecmp(cmd, "PING") == 0) {
            const char *rep = strcmp(mode, "nopong") == 0 ? "-ERR not yet\r\n" : "+PONG\r\n";
            fake_write(fd, rep, strlen(rep));
        } else if (strcasecmp(cmd, "SET") == 0) {
            set_len = last;
            fake_write(fd, "+OK\r\n", 5);
        } else if (strcasecmp(cmd, "GET") == 0) {
            if (fake_get_reply(fd, mode, set_len))
                return;
        } else {
            fake_write(fd, "-ERR unknown command\r\n", 22);
        }
    }
}

/* Serves connections concurrently, a forked child each (they die with the fake), until killed:
 * bench_peers_redis_stop() sends SIGTERM. */
static int fake_redis_main(int port)
{
    const char *mode = getenv("FAKE_REDIS_MODE");
    struct sockaddr_in a;
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!mode)
        mode = "good";
    signal(SIGCHLD, SIG_IGN); /* connection children reap themselves */
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 16) < 0)
        return 1;
    for (;;) {
        int fd = accept(l, NULL, NULL);
        if (fd < 0)
            continue;
        pid_t pid = fork();
        if (pid == 0) {
            close(l);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            fake_serve(fd, mode);
            _exit(0);
        }
        close(fd);
    }
}

/* ---- suite ---------------------------------------------------------------------------------- */

static Suite *bench_peers_suite(void)
{
    Suite *s = suite_create("bench_peers");
    TCase *tc = tcase_create("stats");
    tcase_add_test(tc, test_percentile_values);
    tcase_add_test(tc, test_percentile_edges);
    suite_add_tcase(s, tc);

    tc = tcase_create("tcp");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_tcp_sync_small);
    tcase_add_test(tc, test_tcp_sync_odd_sizes);
    tcase_add_test(tc, test_tcp_sync_bad_args);
    tcase_add_test(tc, test_tcp_sync_multi);
    suite_add_tcase(s, tc);

    tc = tcase_create("redis");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_redis_start_stop);
    tcase_add_test(tc, test_redis_sync_small);
    tcase_add_test(tc, test_redis_missing_binary);
    tcase_add_test(tc, test_redis_exits_at_start);
    tcase_add_test(tc, test_redis_never_ready);
    tcase_add_test(tc, test_redis_fake_good);
    tcase_add_loop_test(tc, test_redis_hostile_get, 0, (int)(sizeof hostile / sizeof hostile[0]));
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--port") == 0)
        return fake_redis_main(atoi(argv[2]));
    SRunner *sr = srunner_create(bench_peers_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
