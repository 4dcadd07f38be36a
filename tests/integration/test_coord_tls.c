/* test_coord_tls.c: a coordinator with TLS on every channel, end to end.
 *
 * Certificates come from tools/make-test-certs.sh. smlt-coordinator runs with --tls-cert,
 * --tls-key and --tls-ca: its API is HTTPS, its worker RPC and the local shards it starts
 * are TLS, and the invocations carry the CA to the workers. A job trains to the end through
 * all of it (a Fashion-MNIST slice). Meanwhile a plaintext client is refused by a shard of
 * the job and by the worker RPC (each counted, the job going on), a plain HTTP request by
 * the API. Under mutual TLS the workers present the client certificate of SMLT_TLS_CERT and
 * SMLT_TLS_KEY (inherited through the coordinator) and the job trains the same. smltctl
 * reaches the API with --cacert (or SMLT_CACERT) and is refused, with a hint, without it or
 * with the wrong CA. Every process is stopped by its pid. */
#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coord_test.h"
#include "rpc_frame.h"
#include "smlt.h"
#include "smlt.pb-c.h"
#include "smlt_limits.h"
#include "smlt_proc.h"

static char root[256], dataset[512], certs[512];

static const char *certf(const char *name)
{
    static char buf[16][600];
    static int slot;
    char *p = buf[slot++ % 16];
    snprintf(p, 600, "%s/%s", certs, name);
    return p;
}

/* Starts a coordinator with TLS (mutual: --tls-verify-client) in a new data directory. */
static void start_tls_coord(struct test_daemon *coord, char *data_dir, size_t len, int mutual)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    snprintf(data_dir, len, "%s/data.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    const char *extra[] = {"--tls-cert", certf("server.pem"), "--tls-key", certf("server.key"),
                           "--tls-ca", certf("ca.pem"), mutual ? "--tls-verify-client" : NULL,
                           NULL};
    ck_assert_int_eq(ct_coord_start(coord, data_dir, extra), 0);
    ct_use_tls(certf("ca.pem"), NULL, NULL);
}

/* A Prometheus counter's value in the coordinator's /metrics (-1: not there). */
static double metric(int port, const char *name)
{
    char *text = NULL;
    ck_assert_int_eq(ct_http(port, "GET", "/metrics", NULL, NULL, &text), 200);
    double v = -1;
    for (char *l = text; l && *l;) {
        char *nl = strchr(l, '\n');
        if (!strncmp(l, name, strlen(name)) && l[strlen(name)] == ' ')
            v = atof(l + strlen(name) + 1);
        l = nl ? nl + 1 : NULL;
    }
    free(text);
    return v;
}

/* Speaks the wire protocol in plaintext to addr ("127.0.0.1:P"): a Hello frame, then reads
 * what comes back. Returns the type of the frame that came back, -1 when none did, -2 when
 * nothing listens there. */
static int plaintext_hello(const char *addr)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_port = htons((uint16_t)atoi(strrchr(addr, ':') + 1));
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -2;
    }
    Smlt__Hello hello = SMLT__HELLO__INIT;
    hello.proto_version = SMLT_PROTO_VERSION;
    hello.token.data = (uint8_t *)"x";
    hello.token.len = 1;
    uint8_t buf[SMLT_FRAME_HDR_LEN + 64];
    size_t mlen = protobuf_c_message_pack(&hello.base, buf + SMLT_FRAME_HDR_LEN);
    struct rpc_frame_hdr h = {.version = SMLT_PROTO_VERSION, .type = SMLT__MSG_TYPE__MSG_HELLO,
                              .req_id = 1, .meta_len = (uint32_t)mlen};
    rpc_frame_hdr_encode(buf, &h);
    ssize_t len = (ssize_t)(SMLT_FRAME_HDR_LEN + mlen);
    ck_assert_int_eq(write(fd, buf, (size_t)len), len);
    uint8_t in[SMLT_FRAME_HDR_LEN];
    size_t got = 0;
    struct pollfd p = {fd, POLLIN, 0};
    while (got < sizeof in && poll(&p, 1, 5000) == 1) {
        ssize_t k = read(fd, in + got, sizeof in - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    if (got < sizeof in || memcmp(in, "SMLT", 4))
        return -1;
    return in[5];
}

/* Runs smltctl with args (NULL-terminated) and SMLT_CACERT set to cacert_env (NULL: unset);
 * returns its exit code and its stderr in err. */
static int run_smltctl(const char *const *args, const char *cacert_env, char *err, size_t len)
{
    char errf[600];
    snprintf(errf, sizeof errf, "%s/smltctl.err", root);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        int nul = open("/dev/null", O_WRONLY);
        dup2(nul, 1);
        if (cacert_env)
            setenv("SMLT_CACERT", cacert_env, 1);
        else
            unsetenv("SMLT_CACERT");
        setenv("SMLT_HOME", root, 1);
        const char *argv[16];
        int n = 0;
        argv[n++] = "smltctl";
        for (int i = 0; args[i] && n < 15; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(test_bin("smltctl"), (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    FILE *f = fopen(errf, "r");
    size_t n = f ? fread(err, 1, len - 1, f) : 0;
    err[n] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int job_running(struct test_daemon *coord, const char *id)
{
    char path[256];
    snprintf(path, sizeof path, "/api/jobs/%s", id);
    json_t *j = NULL;
    ct_http_json(coord->port, "GET", path, NULL, NULL, &j);
    int running = j && !strcmp(ct_str(j, "state"), "running");
    json_decref(j);
    return running;
}

/* Submits a small job and checks, while it trains, that its shards speak TLS only; returns
 * the ended job. */
static json_t *train_over_tls(struct test_daemon *coord, const char *data_dir, const char *model)
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"%s\", \"dataset\": \"%s\", \"epochs\": %d, \"workers\": 2, "
             "\"shards\": 2, \"batch_size\": 32, \"optimizer\": {\"lr\": 0.05}}",
             model, dataset, ct_quick() ? 2 : 3);
    char *id = ct_submit(coord->port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit over HTTPS: %s", err);
    json_t *run = ct_wait_until(coord->port, id, 120, ct_running_with_progress);
    ck_assert_ptr_nonnull(run);
    if (!strcmp(ct_str(run, "state"), "running")) {
        /* The job's shards run with the coordinator's certificate ... */
        pid_t ps[8];
        int n = ct_children(coord->pid, "smlt-ps", NULL, ps, 8);
        for (int i = 0; i < n; i++) {
            struct smlt_proc_info info;
            /* (one exiting has no command line any more) */
            if (smlt_proc_info(ps[i], &info) == 0 && info.state != 'Z' && info.line[0])
                ck_assert_msg(strstr(info.line, "--tls-cert"), "shard without TLS: %s", info.line);
        }
        /* ... and a plaintext client of one is told so, in plaintext, while the job goes on */
        char addr[64];
        snprintf(addr, sizeof addr, "%s", ct_str(run, "ps_addrs"));
        char *comma = strchr(addr, ',');
        if (comma)
            *comma = '\0';
        int type = plaintext_hello(addr);
        struct smlt_client *c = NULL;
        struct smlt_client_opts o = {.token = "x", .timeout_ms = 5000};
        int rc = smlt_client_connect(&c, addr, &o, err, sizeof err);
        if ((type != SMLT__MSG_TYPE__MSG_ERROR || rc != SMLT_ETLS) && !job_running(coord, id)) {
            /* The job ended (and its shards with it) since it was seen running. */
            fprintf(stderr, "the job ended before its shard %s could be tried in plaintext\n",
                    addr);
            goto done;
        }
        ck_assert_int_eq(type, SMLT__MSG_TYPE__MSG_ERROR);
        ck_assert_int_eq(rc, SMLT_ETLS);
        ck_assert_msg(strstr(err, "speaks TLS"), "%s", err);
        fprintf(stderr, "shard %s refused a plaintext client while the job trained: %s\n", addr,
                err);
    }
done:
    json_decref(run);
    json_t *j = ct_wait_job(coord->port, id, 300);
    ck_assert_ptr_nonnull(j);
    /* Every shard the job had served TLS (their log says so at start) */
    char path[1200], line[1024];
    snprintf(path, sizeof path, "%s/jobs/%s/shards.log", data_dir, id);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    int listening = 0, tls = 0;
    while (fgets(line, sizeof line, f)) {
        listening += strstr(line, "listening on port") != NULL;
        tls += strstr(line, "listening on port") && strstr(line, "(TLS");
    }
    fclose(f);
    ck_assert_int_ge(listening, 2);
    ck_assert_int_eq(tls, listening);
    free(id);
    return j;
}

START_TEST(job_over_tls)
{
    struct test_daemon coord;
    char data_dir[512];
    start_tls_coord(&coord, data_dir, sizeof data_dir, 0);
    json_t *j = train_over_tls(&coord, data_dir, "mlp:784-64-10");
    ck_assert_msg(!strcmp(ct_str(j, "state"), "succeeded"), "job %s: %s", ct_str(j, "state"),
                  ct_str(j, "error"));
    ck_assert_msg(ct_num(j, "test_accuracy") > 0.6, "accuracy %.3f", ct_num(j, "test_accuracy"));
    fprintf(stderr, "TLS job: %s, test accuracy %.4f in %.1f s\n", ct_str(j, "state"),
            ct_num(j, "test_accuracy"), ct_num(j, "elapsed_s"));
    json_decref(j);
    /* The worker RPC refuses a plaintext client (and counts it); the API goes on over HTTPS. */
    char path[600];
    snprintf(path, sizeof path, "%s/rpc.addr", data_dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char rpc[128] = "";
    ck_assert_ptr_nonnull(fgets(rpc, sizeof rpc, f));
    fclose(f);
    rpc[strcspn(rpc, "\n")] = '\0';
    double before = metric(coord.port, "smlt_rpc_tls_failures_total");
    ck_assert_int_eq(plaintext_hello(rpc), SMLT__MSG_TYPE__MSG_ERROR);
    for (int i = 0; i < 50 && metric(coord.port, "smlt_rpc_tls_failures_total") < before + 1; i++)
        usleep(20000);
    ck_assert(metric(coord.port, "smlt_rpc_tls_failures_total") >= before + 1);
    /* Plain HTTP on the HTTPS port: no answer, and counted; HTTPS right after: answered. */
    double http_before = metric(coord.port, "smlt_http_tls_failures_total");
    ct_use_tls(NULL, NULL, NULL);
    ck_assert_int_eq(ct_http(coord.port, "GET", "/api/health", NULL, NULL, NULL), -1);
    ct_use_tls(certf("ca.pem"), NULL, NULL);
    ck_assert_int_eq(ct_http(coord.port, "GET", "/api/health", NULL, NULL, NULL), 200);
    for (int i = 0; i < 50 && metric(coord.port, "smlt_http_tls_failures_total") < http_before + 1;
         i++)
        usleep(20000);
    ck_assert(metric(coord.port, "smlt_http_tls_failures_total") >= http_before + 1);
    ct_use_tls(NULL, NULL, NULL);
    ct_fixture_teardown(&coord, data_dir);
}
END_TEST

START_TEST(job_over_mutual_tls)
{
    /* The workers inherit these through the coordinator's local runtime. */
    setenv("SMLT_TLS_CERT", certf("client.pem"), 1);
    setenv("SMLT_TLS_KEY", certf("client.key"), 1);
    struct test_daemon coord;
    char data_dir[512];
    start_tls_coord(&coord, data_dir, sizeof data_dir, 1);
    unsetenv("SMLT_TLS_CERT");
    unsetenv("SMLT_TLS_KEY");
    /* The API wants a client certificate now: without one, refused; with it, served */
    ck_assert_int_eq(ct_http(coord.port, "GET", "/api/health", NULL, NULL, NULL), -1);
    ct_use_tls(certf("ca.pem"), certf("client.pem"), certf("client.key"));
    ck_assert_int_eq(ct_http(coord.port, "GET", "/api/health", NULL, NULL, NULL), 200);
    /* A job: the coordinator presents its own certificate to its shards, the workers
     * SMLT_TLS_CERT's */
    json_t *j = train_over_tls(&coord, data_dir, "mlp:784-64-10");
    ck_assert_msg(!strcmp(ct_str(j, "state"), "succeeded"), "job %s: %s", ct_str(j, "state"),
                  ct_str(j, "error"));
    json_decref(j);
    /* smltctl with its own client certificate */
    char url[128], err[4096];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", coord.port);
    const char *with[] = {"--url", url, "--cacert", certf("ca.pem"), "--cert", certf("client.pem"),
                          "--key", certf("client.key"), "status", NULL};
    ck_assert_msg(run_smltctl(with, NULL, err, sizeof err) == 0, "smltctl: %s", err);
    const char *without[] = {"--url", url, "--cacert", certf("ca.pem"), "status", NULL};
    ck_assert_int_eq(run_smltctl(without, NULL, err, sizeof err), 4);
    ct_fixture_teardown(&coord, data_dir);
    ct_use_tls(NULL, NULL, NULL);
}
END_TEST

START_TEST(smltctl_over_https)
{
    struct test_daemon coord;
    char data_dir[512];
    start_tls_coord(&coord, data_dir, sizeof data_dir, 0);
    char url[128], err[4096];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", coord.port);
    const char *with[] = {"--url", url, "--cacert", certf("ca.pem"), "status", NULL};
    ck_assert_msg(run_smltctl(with, NULL, err, sizeof err) == 0, "smltctl: %s", err);
    const char *env_only[] = {"--url", url, "status", NULL};
    ck_assert_msg(run_smltctl(env_only, certf("ca.pem"), err, sizeof err) == 0, "%s", err);
    /* without the CA: unreachable (4), with the hint */
    ck_assert_int_eq(run_smltctl(env_only, NULL, err, sizeof err), 4);
    ck_assert_msg(strstr(err, "--cacert"), "no hint in: %s", err);
    const char *wrong[] = {"--url", url, "--cacert", certf("wrong-ca.pem"), "status", NULL};
    ck_assert_int_eq(run_smltctl(wrong, NULL, err, sizeof err), 4);
    /* http:// to the HTTPS port: told it may serve HTTPS */
    snprintf(url, sizeof url, "http://127.0.0.1:%d", coord.port);
    ck_assert_int_eq(run_smltctl(env_only, NULL, err, sizeof err), 4);
    ck_assert_msg(strstr(err, "HTTPS"), "no hint in: %s", err);
    ct_fixture_teardown(&coord, data_dir);
    ct_use_tls(NULL, NULL, NULL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("coord_tls");
    TCase *tc = tcase_create("tls");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, job_over_tls);
    tcase_add_test(tc, job_over_mutual_tls);
    tcase_add_test(tc, smltctl_over_https);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (ct_test_certs_make(certs, sizeof certs) != 0)
        return 1;
    int rc = ct_main("coord_tls", suite(), root, sizeof root, dataset, sizeof dataset, 12000,
                     2000);
    ct_test_certs_remove(certs);
    return rc;
}
