/* test_tls.c: real smlt-ps shards with TLS, driven through libsmlt.
 *
 * Certificates come from tools/make-test-certs.sh. A job trained through two TLS shards ends
 * bit for bit where the same job ends through two plaintext shards (4 MB of parameters, so
 * every payload takes the drained path); mutual TLS admits the CA's client certificate only.
 * Refusals, each with the shard still serving a good client afterwards and counting it in
 * tls_failures (a port probe that sends nothing is not one): a plaintext client on the TLS
 * port, a client whose CA did not sign the shard's certificate, a TLS client on a plaintext
 * port, and under mutual TLS a client with no certificate or one from another CA. Every shard
 * is stopped by its pid. */
#include <arpa/inet.h>
#include <check.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord_test.h"
#include "daemon.h"
#include "smlt_admin.h"

#define TOKEN "test-tls-token"
#define ADMIN "test-tls-admin"
#define NPARAMS (1u << 20) /* 4 MB: 2 MB per shard, over the direct-read threshold */
#define STEPS 6

static char g_certs[256];

static const char *certf(const char *name)
{
    static char buf[16][512];
    static int slot;
    char *p = buf[slot++ % 16];
    snprintf(p, 512, "%s/%s", g_certs, name);
    return p;
}

/* Two shards; tls 0: plain, 1: TLS, 2: mutual TLS. */
struct cluster {
    struct test_daemon shard[2];
    char addrs[160];
};

static void cluster_start(struct cluster *cl, int tls)
{
    for (int i = 0; i < 2; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        const char *args[20] = {"--shard", id, "--token", TOKEN, "--admin-token", ADMIN,
                                "--log-level", "warn"};
        int n = 8;
        if (tls) {
            args[n++] = "--tls-cert";
            args[n++] = certf("server.pem");
            args[n++] = "--tls-key";
            args[n++] = certf("server.key");
        }
        if (tls == 2) {
            args[n++] = "--tls-ca";
            args[n++] = certf("ca.pem");
            args[n++] = "--tls-verify-client";
        }
        args[n] = NULL;
        ck_assert_int_eq(test_daemon_start(&cl->shard[i], "smlt-ps", args, 120), 0);
    }
    snprintf(cl->addrs, sizeof cl->addrs, "%s,%s", cl->shard[0].addr, cl->shard[1].addr);
}

static void cluster_stop(struct cluster *cl)
{
    for (int i = 0; i < 2; i++)
        test_daemon_stop(&cl->shard[i]);
}

/* Client options: the CA (NULL: none), a client certificate and key (NULL: none). */
static struct smlt_client_opts opts(const char *token, int admin, const char *ca,
                                    const char *crt, const char *key)
{
    struct smlt_client_opts o = {.token = token, .admin = admin, .timeout_ms = 20000,
                                 .tls_ca = ca ? certf(ca) : NULL,
                                 .tls_cert = crt ? certf(crt) : NULL,
                                 .tls_key = key ? certf(key) : NULL};
    return o;
}

static void setup_job(const struct cluster *cl, const struct smlt_client_opts *o)
{
    uint64_t shape[1] = {NPARAMS};
    struct smlt_tensor_def t = {.name = "w", .ndims = 1, .shape = shape,
                                .init = SMLT_INIT_UNIFORM, .init_scale = 0.5f};
    struct smlt_job_conf jc;
    smlt_job_conf_default(&jc);
    jc.job = "tls";
    jc.workers = 1;
    jc.lr = 0.1f;
    jc.seed = 11;
    struct smlt_client *c = NULL;
    char err[512];
    int rc = smlt_job_setup(&c, cl->addrs, o, &t, 1, &jc, err, sizeof err);
    ck_assert_msg(rc == 0, "setup: %s", err);
    smlt_client_close(c);
}

/* Trains STEPS BSP steps of a gradient that depends on the model; *model: the final one. */
static void train(const struct cluster *cl, const struct smlt_client_opts *o, float *model)
{
    struct smlt_client *c = NULL;
    char err[512];
    ck_assert_msg(smlt_client_connect(&c, cl->addrs, o, err, sizeof err) == 0, "connect: %s",
                  err);
    ck_assert_uint_eq(smlt_client_num_params(c), NPARAMS);
    float *g = malloc(sizeof(float) * NPARAMS);
    uint64_t clock = 0;
    ck_assert_int_eq(smlt_pull(c, 0, 0, model, &clock), 0);
    for (int s = 0; s < STEPS; s++) {
        for (uint32_t i = 0; i < NPARAMS; i++)
            g[i] = model[i] * 0.5f + (float)((i * 2654435761u + (uint32_t)s) % 1000) / 1000.0f;
        int rc = smlt_sync(c, (uint64_t)s, g, model, &clock);
        ck_assert_msg(rc == 0, "step %d: %s", s, smlt_client_errmsg(c));
    }
    ck_assert_uint_eq(clock, STEPS);
    free(g);
    smlt_client_close(c);
}

/* Connects with o and expects SMLT_ETLS with want in the message. */
static void expect_refused(const struct cluster *cl, const struct smlt_client_opts *o,
                           const char *want)
{
    struct smlt_client *c = NULL;
    char err[512] = "";
    int rc = smlt_client_connect(&c, cl->addrs, o, err, sizeof err);
    ck_assert_msg(rc == SMLT_ETLS, "connect gave %s (%s), not SMLT_ETLS", smlt_errname(rc), err);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, want), "\"%s\" lacks \"%s\"", err, want);
}

/* Shard 0's tls_failures counter, read through a client with options o. */
static uint64_t tls_failures(const struct cluster *cl, const struct smlt_client_opts *o)
{
    struct smlt_client *c = NULL;
    char err[512];
    ck_assert_msg(smlt_client_connect(&c, cl->addrs, o, err, sizeof err) == 0, "%s", err);
    struct smlt_shard_stats st;
    ck_assert_int_eq(smlt_shard_stats(c, 0, &st), 0);
    smlt_client_close(c);
    return st.tls_failures;
}

/* Connects to 127.0.0.1:port and hangs up without a byte, as a load balancer's check does. */
static void probe(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
}

START_TEST(tls_same_as_plain)
{
    float *plain = malloc(sizeof(float) * NPARAMS), *tls = malloc(sizeof(float) * NPARAMS);
    struct cluster cl;
    cluster_start(&cl, 0);
    struct smlt_client_opts a = opts(ADMIN, 1, NULL, NULL, NULL);
    struct smlt_client_opts w = opts(TOKEN, 0, NULL, NULL, NULL);
    setup_job(&cl, &a);
    train(&cl, &w, plain);
    cluster_stop(&cl);

    cluster_start(&cl, 1);
    a = opts(ADMIN, 1, "ca.pem", NULL, NULL);
    w = opts(TOKEN, 0, "ca.pem", NULL, NULL);
    setup_job(&cl, &a);
    train(&cl, &w, tls);
    ck_assert_msg(memcmp(plain, tls, sizeof(float) * NPARAMS) == 0,
                  "the model trained over TLS differs from the one over plain TCP");
    ck_assert_uint_eq(tls_failures(&cl, &w), 0);
    /* the CA as PEM text (what an invocation carries) works as the file does */
    FILE *f = fopen(certf("ca.pem"), "r");
    char pem[8192];
    size_t n = fread(pem, 1, sizeof pem - 1, f);
    fclose(f);
    pem[n] = '\0';
    struct smlt_client_opts t = {.token = TOKEN, .timeout_ms = 20000, .tls_ca_pem = pem};
    ck_assert_uint_eq(tls_failures(&cl, &t), 0);
    cluster_stop(&cl);
    free(plain);
    free(tls);
}
END_TEST

START_TEST(tls_refusals)
{
    struct cluster cl;
    cluster_start(&cl, 1);
    struct smlt_client_opts good = opts(TOKEN, 0, "ca.pem", NULL, NULL);
    setup_job(&cl, &(struct smlt_client_opts){.token = ADMIN, .admin = 1, .timeout_ms = 20000,
                                              .tls_ca = certf("ca.pem")});
    /* a port probe (connect, hang up) is no refusal: not counted below */
    probe(cl.shard[0].port);
    /* a plaintext client on the TLS port */
    struct smlt_client_opts plain = opts(TOKEN, 0, NULL, NULL, NULL);
    expect_refused(&cl, &plain, "speaks TLS");
    /* a client that trusts another CA */
    struct smlt_client_opts wrong = opts(TOKEN, 0, "wrong-ca.pem", NULL, NULL);
    expect_refused(&cl, &wrong, "certificate verify failed");
    /* the shard goes on: a good client trains, and the two refusals were counted */
    float *m = malloc(sizeof(float) * NPARAMS);
    train(&cl, &good, m);
    ck_assert_uint_eq(tls_failures(&cl, &good), 2);
    cluster_stop(&cl);
    /* a TLS client on a plaintext port */
    cluster_start(&cl, 0);
    setup_job(&cl, &(struct smlt_client_opts){.token = ADMIN, .admin = 1, .timeout_ms = 20000});
    expect_refused(&cl, &good, "TLS handshake");
    ck_assert_uint_eq(tls_failures(&cl, &plain), 1);
    cluster_stop(&cl);
    free(m);
}
END_TEST

START_TEST(tls_mutual)
{
    struct cluster cl;
    cluster_start(&cl, 2);
    struct smlt_client_opts a = opts(ADMIN, 1, "ca.pem", "client.pem", "client.key");
    setup_job(&cl, &a);
    struct smlt_client_opts good = opts(TOKEN, 0, "ca.pem", "client.pem", "client.key");
    float *m = malloc(sizeof(float) * NPARAMS);
    train(&cl, &good, m);
    /* no client certificate; a certificate another CA signed */
    struct smlt_client_opts anon = opts(TOKEN, 0, "ca.pem", NULL, NULL);
    expect_refused(&cl, &anon, "certificate required");
    struct smlt_client_opts wrong = opts(TOKEN, 0, "ca.pem", "wrong.pem", "wrong.key");
    expect_refused(&cl, &wrong, "unknown ca");
    train(&cl, &good, m);
    ck_assert_uint_eq(tls_failures(&cl, &good), 2);
    /* bad client options are refused before anything is sent */
    struct smlt_client *c = NULL;
    char err[512];
    struct smlt_client_opts nokey = opts(TOKEN, 0, "ca.pem", "client.pem", NULL);
    ck_assert_int_ne(smlt_client_connect(&c, cl.addrs, &nokey, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "needs its key"), "%s", err);
    cluster_stop(&cl);
    free(m);
}
END_TEST

START_TEST(tls_bad_options)
{
    /* smlt-ps refuses half a TLS configuration and files it cannot use, with a message */
    struct test_daemon d;
    const char *half[] = {"--token", TOKEN, "--tls-cert", certf("server.pem"), NULL};
    ck_assert_int_ne(test_daemon_start(&d, "smlt-ps", half, 30), 0);
    const char *missing[] = {"--token", TOKEN, "--tls-cert", "/nonexistent.pem", "--tls-key",
                             certf("server.key"), NULL};
    ck_assert_int_ne(test_daemon_start(&d, "smlt-ps", missing, 30), 0);
    const char *mismatch[] = {"--token", TOKEN, "--tls-cert", certf("server.pem"), "--tls-key",
                              certf("client.key"), NULL};
    ck_assert_int_ne(test_daemon_start(&d, "smlt-ps", mismatch, 30), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("shards");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, tls_same_as_plain);
    tcase_add_test(tc, tls_refusals);
    tcase_add_test(tc, tls_mutual);
    tcase_add_test(tc, tls_bad_options);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (ct_test_certs_make(g_certs, sizeof g_certs) != 0)
        return 1;
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    ct_test_certs_remove(g_certs);
    return failed ? 1 : 0;
}
