/* test_ps_cluster.c: two real smlt-ps shards on loopback, driven through libsmlt.
 *
 * Trains a least-squares model to its known solution under BSP, SSP and ASP with two worker
 * threads; checks exactly-once application when an acknowledgement is lost (a proxy cuts the
 * connection right after the shard counted a push); refreshes a stale partition map; refuses
 * wrong tokens and hostile bytes while other clients go on. Every shard is stopped by its pid. */
#include <arpa/inet.h>
#include <check.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "rpc_frame.h"
#include "smlt_admin.h"
#include "smlt.pb-c.h"

#define TOKEN "test-job-token"
#define ADMIN "test-admin-token"
#define D 64
#define N 256

static struct test_daemon shard[2];
static char addrs[160];

static void start_shards(void)
{
    for (int i = 0; i < 2; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        const char *args[] = {"--shard", id, "--token", TOKEN, "--admin-token", ADMIN,
                              "--log-level", "warn", NULL};
        ck_assert_int_eq(test_daemon_start(&shard[i], "smlt-ps", args, 120), 0);
    }
    snprintf(addrs, sizeof addrs, "%s,%s", shard[0].addr, shard[1].addr);
}

static void stop_shards(void)
{
    for (int i = 0; i < 2; i++)
        test_daemon_stop(&shard[i]);
}

/* ---- the least-squares problem ---------------------------------------------------------- */

static float X[N][D], Y[N], WSTAR[D + 1];

static void make_problem(void)
{
    unsigned s = 12345;
    for (int j = 0; j <= D; j++) {
        s = s * 1103515245u + 12345u;
        WSTAR[j] = (float)((s >> 8) % 2000) / 1000.0f - 1.0f;
    }
    for (int i = 0; i < N; i++) {
        double y = WSTAR[D];
        for (int j = 0; j < D; j++) {
            s = s * 1103515245u + 12345u;
            /* roughly N(0,1) from a sum of uniforms */
            double u = 0;
            for (int k = 0; k < 3; k++) {
                s = s * 1103515245u + 12345u;
                u += (double)((s >> 8) % 10000) / 10000.0 - 0.5;
            }
            X[i][j] = (float)(u * 2.0);
            y += X[i][j] * WSTAR[j];
        }
        Y[i] = (float)y;
    }
}

/* Gradient of 0.5 * mean (x.w + b - y)^2 over rows [r0, r1). */
static void lsq_grad(const float *w, int r0, int r1, float *g)
{
    memset(g, 0, sizeof(float) * (D + 1));
    for (int i = r0; i < r1; i++) {
        double e = w[D] - Y[i];
        for (int j = 0; j < D; j++)
            e += X[i][j] * w[j];
        for (int j = 0; j < D; j++)
            g[j] += (float)(e * X[i][j]);
        g[D] += (float)e;
    }
    for (int j = 0; j <= D; j++)
        g[j] /= (float)(r1 - r0);
}

static double max_err(const float *w)
{
    double m = 0;
    for (int j = 0; j <= D; j++)
        m = fmax(m, fabs(w[j] - WSTAR[j]));
    return m;
}

static void setup_job(int sync, uint32_t workers, float lr, uint64_t map_version)
{
    uint64_t wshape[1] = {D}, bshape[1] = {1};
    struct smlt_tensor_def t[2] = {
        {.name = "w", .ndims = 1, .shape = wshape, .init = SMLT_INIT_UNIFORM, .init_scale = 0.1f},
        {.name = "b", .ndims = 1, .shape = bshape, .init = SMLT_INIT_ZERO},
    };
    struct smlt_job_conf jc;
    smlt_job_conf_default(&jc);
    jc.job = "lsq";
    jc.sync = sync;
    jc.workers = workers;
    jc.staleness = 2;
    jc.lr = lr;
    jc.seed = 7;
    jc.map_version = map_version;
    struct smlt_client_opts o = {.token = ADMIN, .admin = 1, .timeout_ms = 10000};
    struct smlt_client *c = NULL;
    char err[256];
    int rc = smlt_job_setup(&c, addrs, &o, t, 2, &jc, err, sizeof err);
    ck_assert_msg(rc == 0, "setup: %s", err);
    ck_assert_int_eq(smlt_client_num_params(c), D + 1);
    ck_assert_int_eq(smlt_client_num_shards(c), 2);
    smlt_client_close(c);
}

struct worker_arg {
    int rank, workers, steps, sync;
    int rc;
    float w[D + 1];
};

static void *worker_main(void *p)
{
    struct worker_arg *a = p;
    struct smlt_client_opts o = {.token = TOKEN, .worker = (uint32_t)a->rank, .timeout_ms = 20000};
    struct smlt_client *c = NULL;
    char err[256];
    a->rc = smlt_client_connect(&c, addrs, &o, err, sizeof err);
    if (a->rc) {
        fprintf(stderr, "worker %d: connect: %s\n", a->rank, err);
        return NULL;
    }
    float g[D + 1];
    int rows = N / a->workers, r0 = a->rank * rows;
    uint64_t clock = 0;
    a->rc = smlt_pull(c, 0, 0, a->w, &clock);
    for (int s = 0; s < a->steps && !a->rc; s++) {
        lsq_grad(a->w, r0, r0 + rows, g);
        if (a->sync == SMLT_SYNC_BSP) {
            a->rc = smlt_sync(c, (uint64_t)s, g, a->w, &clock);
        } else {
            a->rc = smlt_push(c, (uint64_t)s, g);
            /* SSP: wait until the slowest worker is at most 2 steps behind our next one. */
            uint64_t need = a->sync == SMLT_SYNC_SSP && s + 1 > 2 ? (uint64_t)s + 1 - 2 : 0;
            if (!a->rc)
                a->rc = smlt_pull(c, need, 20000, a->w, &clock);
        }
        if (a->rc)
            fprintf(stderr, "worker %d step %d: %s\n", a->rank, s, smlt_client_errmsg(c));
    }
    if (!a->rc)
        a->rc = smlt_pull(c, 0, 0, a->w, &clock);
    smlt_client_close(c);
    return NULL;
}

static void train(int sync, int steps, float lr)
{
    setup_job(sync, 2, lr, 1);
    pthread_t th[2];
    struct worker_arg a[2];
    for (int r = 0; r < 2; r++) {
        a[r] = (struct worker_arg){.rank = r, .workers = 2, .steps = steps, .sync = sync};
        pthread_create(&th[r], NULL, worker_main, &a[r]);
    }
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < 2; r++)
        ck_assert_msg(a[r].rc == 0, "worker %d failed: %s", r, smlt_strerror(a[r].rc));
    double e = max_err(a[0].w);
    ck_assert_msg(e < 1e-3, "%s did not converge: max |w - w*| = %g", sync == 0 ? "BSP" : sync == 1 ? "SSP" : "ASP", e);
}

START_TEST(bsp_least_squares)
{
    train(SMLT_SYNC_BSP, 300, 0.3f);
    /* Exactly once under BSP: each shard applied one update per step from 2 pushes each. */
    struct smlt_client_opts o = {.token = TOKEN};
    struct smlt_client *c;
    char err[256];
    ck_assert_int_eq(smlt_client_connect(&c, addrs, &o, err, sizeof err), 0);
    for (uint32_t s = 0; s < 2; s++) {
        struct smlt_shard_stats st;
        ck_assert_int_eq(smlt_shard_stats(c, s, &st), 0);
        ck_assert_int_eq(st.updates_applied, 300);
        ck_assert_int_eq(st.pushes_counted, 600);
        ck_assert_int_eq(st.clock, 300);
    }
    smlt_client_close(c);
}
END_TEST

START_TEST(ssp_least_squares)
{
    train(SMLT_SYNC_SSP, 400, 0.15f);
}
END_TEST

START_TEST(asp_least_squares)
{
    train(SMLT_SYNC_ASP, 400, 0.15f);
}
END_TEST

/* ---- exactly once across a lost acknowledgement ------------------------------------------ */

struct proxy {
    int lfd, port;
    char upstream[64];
    volatile int cut_next_ack; /* drop the connection instead of forwarding the next PushAck */
    volatile int cuts;
    volatile int stop;
    pthread_t th;
};

static int tcp_connect(const char *addr)
{
    char host[64];
    snprintf(host, sizeof host, "%s", addr);
    char *colon = strrchr(host, ':');
    *colon = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Forwards one client connection at a time; parses the shard's frames so it can cut the
 * connection right before a PushAck would reach the client. */
static void *proxy_main(void *p)
{
    struct proxy *px = p;
    static uint8_t sbuf[1 << 20];
    while (!px->stop) {
        struct pollfd lp = {px->lfd, POLLIN, 0};
        if (poll(&lp, 1, 100) <= 0)
            continue;
        int cfd = accept(px->lfd, NULL, NULL);
        if (cfd < 0)
            continue;
        int ufd = tcp_connect(px->upstream);
        if (ufd < 0) {
            close(cfd);
            continue;
        }
        size_t have = 0; /* bytes of the shard's stream buffered, not yet forwarded */
        int alive = 1;
        while (alive && !px->stop) {
            struct pollfd fds[2] = {{cfd, POLLIN, 0}, {ufd, POLLIN, 0}};
            if (poll(fds, 2, 100) <= 0)
                continue;
            if (fds[0].revents) {
                static uint8_t b[1 << 16];
                ssize_t n = read(cfd, b, sizeof b);
                if (n <= 0 || write(ufd, b, (size_t)n) != n)
                    alive = 0;
            }
            if (alive && fds[1].revents) {
                ssize_t n = read(ufd, sbuf + have, sizeof sbuf - have);
                if (n <= 0) {
                    alive = 0;
                    break;
                }
                have += (size_t)n;
                /* Forward whole frames (replies here are small: acks and errors; pulls of 65
                 * floats). */
                for (;;) {
                    struct rpc_frame f;
                    size_t used;
                    struct rpc_limits lim = {1 << 20, 1 << 20};
                    if (rpc_frame_parse(sbuf, have, &lim, &f, &used, NULL) != RPC_FRAME_COMPLETE)
                        break;
                    if (f.hdr.type == SMLT__MSG_TYPE__MSG_PUSH_ACK && px->cut_next_ack) {
                        px->cut_next_ack = 0;
                        px->cuts++;
                        alive = 0;
                        break;
                    }
                    if (write(cfd, sbuf, used) != (ssize_t)used) {
                        alive = 0;
                        break;
                    }
                    memmove(sbuf, sbuf + used, have - used);
                    have -= used;
                }
            }
        }
        close(cfd);
        close(ufd);
    }
    return NULL;
}

static void proxy_start(struct proxy *px, const char *upstream)
{
    memset(px, 0, sizeof *px);
    snprintf(px->upstream, sizeof px->upstream, "%s", upstream);
    px->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ck_assert_int_eq(bind(px->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(px->lfd, 8), 0);
    socklen_t sl = sizeof sa;
    getsockname(px->lfd, (struct sockaddr *)&sa, &sl);
    px->port = ntohs(sa.sin_port);
    pthread_create(&px->th, NULL, proxy_main, px);
}

static void proxy_stop(struct proxy *px)
{
    px->stop = 1;
    pthread_join(px->th, NULL);
    close(px->lfd);
}

START_TEST(exactly_once_lost_ack)
{
    struct proxy px;
    proxy_start(&px, shard[0].addr);
    /* The job's map names the proxy for shard 0, so clients reach shard 0 through it. */
    snprintf(addrs, sizeof addrs, "127.0.0.1:%d,%s", px.port, shard[1].addr);
    setup_job(SMLT_SYNC_ASP, 1, 1.0f, 1);
    struct smlt_client_opts o = {.token = TOKEN, .timeout_ms = 10000};
    struct smlt_client *c;
    char err[256];
    ck_assert_int_eq(smlt_client_connect(&c, addrs, &o, err, sizeof err), 0);
    float w0[D + 1], w1[D + 1], g[D + 1];
    ck_assert_int_eq(smlt_pull(c, 0, 0, w0, NULL), 0);
    for (int j = 0; j <= D; j++)
        g[j] = 0.25f * (float)(j + 1);
    px.cut_next_ack = 1;
    /* The shard counts and applies the push, the ack is lost with the connection; the client
     * reconnects and resends; the shard must recognise (rank 0, step 0) and not apply it again. */
    ck_assert_int_eq(smlt_push(c, 0, g), 0);
    ck_assert_int_eq(px.cuts, 1);
    ck_assert_int_eq(smlt_pull(c, 0, 0, w1, NULL), 0);
    for (int j = 0; j <= D; j++)
        ck_assert_msg(fabsf(w1[j] - (w0[j] - g[j])) < 1e-6f, "element %d applied %g times", j,
                      (double)((w0[j] - w1[j]) / g[j]));
    struct smlt_shard_stats st;
    ck_assert_int_eq(smlt_shard_stats(c, 0, &st), 0);
    ck_assert_int_eq(st.updates_applied, 1);
    ck_assert_int_eq(st.pushes_counted, 1);
    ck_assert_int_eq(st.pushes_duplicate, 1);
    /* An explicit retry of the same step is a duplicate too; the next step applies. */
    ck_assert_int_eq(smlt_push(c, 0, g), 0);
    ck_assert_int_eq(smlt_push(c, 1, g), 0);
    ck_assert_int_eq(smlt_shard_stats(c, 1, &st), 0);
    ck_assert_int_eq(st.updates_applied, 2);
    ck_assert_int_eq(st.pushes_duplicate, 1);
    smlt_client_close(c);
    proxy_stop(&px);
}
END_TEST

/* ---- maps, tokens, hostile peers --------------------------------------------------------- */

START_TEST(stale_map_refresh)
{
    setup_job(SMLT_SYNC_ASP, 1, 0.1f, 1);
    struct smlt_client_opts o = {.token = TOKEN, .timeout_ms = 10000};
    struct smlt_client *c;
    char err[256];
    ck_assert_int_eq(smlt_client_connect(&c, addrs, &o, err, sizeof err), 0);
    ck_assert_int_eq(smlt_client_map_version(c), 1);
    /* The job is re-published with map version 2: the client's next call is told its map is
     * stale, installs the new one from the error reply and succeeds. */
    setup_job(SMLT_SYNC_ASP, 1, 0.1f, 2);
    float w[D + 1];
    ck_assert_int_eq(smlt_pull(c, 0, 0, w, NULL), 0);
    ck_assert_int_eq(smlt_client_map_version(c), 2);
    struct smlt_shard_stats st;
    ck_assert_int_eq(smlt_shard_stats(c, 0, &st), 0);
    ck_assert_int_ge(st.stale_map_errors, 1);
    smlt_client_close(c);
}
END_TEST

START_TEST(wrong_token_refused)
{
    setup_job(SMLT_SYNC_BSP, 1, 0.1f, 1);
    struct smlt_client_opts bad = {.token = "not-the-token", .timeout_ms = 5000};
    struct smlt_client *c = NULL;
    char err[256];
    ck_assert_int_eq(smlt_client_connect(&c, addrs, &bad, err, sizeof err), SMLT_EAUTH);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "token"), "message: %s", err);
    /* The job token is not the admin token: configuration is refused, data plane allowed. */
    struct smlt_client_opts worker = {.token = TOKEN, .timeout_ms = 5000};
    ck_assert_int_eq(smlt_client_connect(&c, addrs, &worker, err, sizeof err), 0);
    float lr = 0.5f;
    ck_assert_int_eq(smlt_update_conf(c, &lr, NULL, NULL), SMLT_EPERM);
    float w[D + 1];
    ck_assert_int_eq(smlt_pull(c, 0, 0, w, NULL), 0);
    struct smlt_shard_stats st;
    ck_assert_int_eq(smlt_shard_stats(c, 0, &st), 0);
    ck_assert_int_ge(st.auth_failures, 1);
    smlt_client_close(c);
}
END_TEST

/* Reads frames from a raw socket until an ErrorReply arrives; returns its code (0 if none
 * before EOF). */
static int read_error_reply(int fd)
{
    static uint8_t buf[1 << 16];
    size_t have = 0;
    for (;;) {
        struct rpc_frame f;
        size_t used;
        struct rpc_limits lim = {1 << 16, 0};
        if (rpc_frame_parse(buf, have, &lim, &f, &used, NULL) == RPC_FRAME_COMPLETE) {
            if (f.hdr.type == SMLT__MSG_TYPE__MSG_ERROR) {
                Smlt__ErrorReply *er = smlt__error_reply__unpack(NULL, f.hdr.meta_len, f.meta);
                int code = er ? er->code : 1;
                if (er)
                    smlt__error_reply__free_unpacked(er, NULL);
                return code;
            }
            memmove(buf, buf + used, have - used);
            have -= used;
            continue;
        }
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0)
            return 0;
        have += (size_t)n;
    }
}

static int read_eof(int fd)
{
    char b[256];
    struct pollfd p = {fd, POLLIN, 0};
    for (int i = 0; i < 50; i++) {
        if (poll(&p, 1, 100) > 0) {
            ssize_t n = read(fd, b, sizeof b);
            if (n == 0)
                return 1;
            if (n < 0)
                return 1;
        }
    }
    return 0;
}

START_TEST(hostile_bytes_refused)
{
    setup_job(SMLT_SYNC_BSP, 1, 0.1f, 1);
    /* 1. garbage */
    int fd = tcp_connect(shard[0].addr);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    ck_assert_int_eq(read_error_reply(fd), -5 /* SMLT_EPROTO */);
    ck_assert(read_eof(fd));
    close(fd);
    /* 2. a header announcing 512 MiB before the handshake: refused from the header alone */
    fd = tcp_connect(shard[0].addr);
    uint8_t hb[SMLT_FRAME_HDR_LEN];
    struct rpc_frame_hdr h = {.version = SMLT_PROTO_VERSION,
                              .type = SMLT__MSG_TYPE__MSG_PUSH,
                              .req_id = 9,
                              .meta_len = 10,
                              .payload_len = 512u << 20,
                              .raw_len = 512u << 20};
    rpc_frame_hdr_encode(hb, &h);
    ck_assert_int_eq(write(fd, hb, sizeof hb), (ssize_t)sizeof hb);
    ck_assert_int_eq(read_error_reply(fd), SMLT_ETOOBIG);
    ck_assert(read_eof(fd));
    close(fd);
    /* 3. a request before Hello */
    fd = tcp_connect(shard[1].addr);
    struct rpc_frame_hdr g = {.version = SMLT_PROTO_VERSION, .type = SMLT__MSG_TYPE__MSG_GET_MAP,
                              .req_id = 1};
    rpc_frame_hdr_encode(hb, &g);
    ck_assert_int_eq(write(fd, hb, sizeof hb), (ssize_t)sizeof hb);
    ck_assert_int_eq(read_error_reply(fd), SMLT_EAUTH);
    ck_assert(read_eof(fd));
    close(fd);
    /* The shards go on serving well-behaved clients. */
    struct smlt_client_opts o = {.token = TOKEN, .timeout_ms = 5000};
    struct smlt_client *c;
    char err[256];
    ck_assert_int_eq(smlt_client_connect(&c, addrs, &o, err, sizeof err), 0);
    float w[D + 1], gr[D + 1] = {0};
    ck_assert_int_eq(smlt_sync(c, 0, gr, w, NULL), 0);
    struct smlt_shard_stats st;
    ck_assert_int_eq(smlt_shard_stats(c, 0, &st), 0);
    ck_assert_int_ge(st.frames_bad, 2);
    smlt_client_close(c);
}
END_TEST

START_TEST(long_poll_times_out)
{
    setup_job(SMLT_SYNC_BSP, 2, 0.1f, 1);
    struct smlt_client_opts o = {.token = TOKEN, .timeout_ms = 5000};
    struct smlt_client *c;
    char err[256];
    ck_assert_int_eq(smlt_client_connect(&c, addrs, &o, err, sizeof err), 0);
    float w[D + 1], g[D + 1] = {0};
    /* Only one of the two expected workers pushes: clock 1 never comes. */
    ck_assert_int_eq(smlt_push(c, 0, g), 0);
    uint64_t clock = 99;
    ck_assert_int_eq(smlt_pull(c, 1, 300, w, &clock), SMLT_ETIMEDOUT);
    /* Lowering the expected worker count to 1 completes the step. */
    smlt_client_close(c);
    struct smlt_client_opts a = {.token = ADMIN, .admin = 1, .timeout_ms = 5000};
    ck_assert_int_eq(smlt_client_connect(&c, addrs, &a, err, sizeof err), 0);
    uint32_t one = 1;
    ck_assert_int_eq(smlt_update_conf(c, NULL, NULL, &one), 0);
    ck_assert_int_eq(smlt_pull(c, 1, 2000, w, &clock), 0);
    ck_assert_int_eq(clock, 1);
    smlt_client_close(c);
}
END_TEST

START_TEST(set_params_roundtrip)
{
    setup_job(SMLT_SYNC_BSP, 1, 0.1f, 1);
    struct smlt_client_opts a = {.token = ADMIN, .admin = 1, .timeout_ms = 5000};
    struct smlt_client *c;
    char err[256];
    ck_assert_int_eq(smlt_client_connect(&c, addrs, &a, err, sizeof err), 0);
    float w[D + 1], r[D + 1];
    for (int j = 0; j <= D; j++)
        w[j] = (float)j * 0.5f - 3.0f;
    ck_assert_int_eq(smlt_set_params(c, w), 0);
    ck_assert_int_eq(smlt_pull(c, 0, 0, r, NULL), 0);
    ck_assert_mem_eq(w, r, sizeof w);
    float part[3];
    ck_assert_int_eq(smlt_pull_range(c, 30, 33, 0, 0, part, NULL), 0);
    ck_assert_mem_eq(part, w + 30, sizeof part);
    ck_assert_int_eq(smlt_pull_range(c, 60, 70, 0, 0, part, NULL), SMLT_ERANGE);
    smlt_client_close(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ps_cluster");
    TCase *tc = tcase_create("cluster");
    tcase_add_checked_fixture(tc, start_shards, stop_shards);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, bsp_least_squares);
    tcase_add_test(tc, ssp_least_squares);
    tcase_add_test(tc, asp_least_squares);
    tcase_add_test(tc, exactly_once_lost_ack);
    tcase_add_test(tc, stale_map_refresh);
    tcase_add_test(tc, wrong_token_refused);
    tcase_add_test(tc, hostile_bytes_refused);
    tcase_add_test(tc, long_poll_times_out);
    tcase_add_test(tc, set_params_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    make_problem();
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
