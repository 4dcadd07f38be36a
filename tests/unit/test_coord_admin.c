/* test_coord_admin.c: the asynchronous admin client (coordinator/coord_admin.c) against a
 * dead address and a silent listener (it accepts, then never answers): results come back on
 * the loop, never from inside the call; a call's timeout holds; a cancel interrupts a call
 * stuck on a silent shard, connecting or not; a queued call canceled never runs; calls run
 * and report in order; nothing is called back after coord_admin_free(). */
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "coord_admin.h"
#include "smlt_error.h"
#include "smlt_util.h"

struct got {
    int n;
    int rc[8];
    enum coord_admin_op op[8];
    double at[8];
    int inside; /* set while coord_admin_call() runs */
    int called_inside;
};

static void on_result(const struct coord_admin_res *res, void *arg)
{
    struct got *g = arg;
    if (g->inside)
        g->called_inside = 1;
    if (g->n < 8) {
        g->rc[g->n] = res->rc;
        g->op[g->n] = res->op;
        g->at[g->n] = smlt_now_mono();
    }
    g->n++;
}

static void wait_for(struct event_base *base, struct got *g, int n, double limit_s)
{
    double until = smlt_now_mono() + limit_s;
    while (g->n < n && smlt_now_mono() < until) {
        struct timeval tv = {0, 50000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

/* A listener on loopback port 0 that accepts (in the kernel's backlog) and never answers. */
static int silent_listener(char *addr, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    snprintf(addr, len, "127.0.0.1:%u", ntohs(sa.sin_port));
    return fd;
}

static struct coord_admin_req req_for(enum coord_admin_op op, const char *addr, int timeout_ms)
{
    struct coord_admin_req r = {.op = op, .timeout_ms = timeout_ms};
    snprintf(r.addrs, sizeof r.addrs, "%s", addr);
    snprintf(r.token, sizeof r.token, "token");
    return r;
}

START_TEST(dead_address_fails_on_the_loop)
{
    struct event_base *base = event_base_new();
    struct coord_admin *a = coord_admin_new(base);
    struct got g = {0};
    struct coord_admin_req r = req_for(COORD_ADMIN_STATS, "127.0.0.1:1", 2000);
    g.inside = 1;
    ck_assert(coord_admin_call(a, &r, on_result, &g) > 0);
    g.inside = 0;
    ck_assert_int_eq(g.n, 0);
    ck_assert_int_eq(coord_admin_pending(a), 1);
    wait_for(base, &g, 1, 10);
    ck_assert_int_eq(g.n, 1);
    ck_assert_int_eq(g.called_inside, 0);
    ck_assert_int_ne(g.rc[0], 0);
    ck_assert_int_eq(coord_admin_pending(a), 0);
    struct coord_admin_stats st;
    coord_admin_stats(a, &st);
    ck_assert(st.calls == 1 && st.failed == 1);
    coord_admin_free(a);
    event_base_free(base);
}
END_TEST

START_TEST(timeout_holds_on_a_silent_shard)
{
    char addr[64];
    int lfd = silent_listener(addr, sizeof addr);
    struct event_base *base = event_base_new();
    struct coord_admin *a = coord_admin_new(base);
    struct got g = {0};
    struct coord_admin_req r = req_for(COORD_ADMIN_UNFREEZE, addr, 300);
    double t0 = smlt_now_mono();
    coord_admin_call(a, &r, on_result, &g);
    wait_for(base, &g, 1, 20);
    ck_assert_int_eq(g.n, 1);
    ck_assert_int_eq(g.rc[0], SMLT_ETIMEDOUT);
    ck_assert(g.at[0] - t0 < 15); /* bounded by the call's own timeout, not a default */
    coord_admin_free(a);
    event_base_free(base);
    close(lfd);
}
END_TEST

/* A call stuck on a silent shard (a 60 s timeout) is canceled: its callback follows with
 * SMLT_ECANCELED long before the timeout, and the call queued behind it was never run. */
START_TEST(cancel_interrupts_a_stuck_call)
{
    char addr[64];
    int lfd = silent_listener(addr, sizeof addr);
    struct event_base *base = event_base_new();
    struct coord_admin *a = coord_admin_new(base);
    struct got g = {0};
    struct coord_admin_req r = req_for(COORD_ADMIN_FREEZE, addr, 60000);
    uint64_t stuck = coord_admin_call(a, &r, on_result, &g);
    struct coord_admin_req r2 = req_for(COORD_ADMIN_STOP_AT, addr, 60000);
    uint64_t queued = coord_admin_call(a, &r2, on_result, &g);
    ck_assert_int_eq(coord_admin_pending(a), 2);
    /* Let the first call get going (connecting, then waiting for the handshake). */
    wait_for(base, &g, 1, 0.5);
    ck_assert_int_eq(g.n, 0);
    double t0 = smlt_now_mono();
    ck_assert_int_eq(coord_admin_cancel(a, queued), 0);
    ck_assert_int_eq(coord_admin_cancel(a, stuck), 0);
    ck_assert_int_eq(coord_admin_cancel(a, 12345), SMLT_ENOTFOUND);
    ck_assert_int_eq(g.n, 0); /* never from inside the cancel */
    wait_for(base, &g, 2, 30);
    ck_assert_int_eq(g.n, 2);
    ck_assert_int_eq(g.rc[0], SMLT_ECANCELED);
    ck_assert_int_eq(g.op[0], COORD_ADMIN_FREEZE); /* in order */
    ck_assert_int_eq(g.rc[1], SMLT_ECANCELED);
    ck_assert_int_eq(g.op[1], COORD_ADMIN_STOP_AT);
    ck_assert_msg(g.at[1] - t0 < 20, "cancel took %.1f s", g.at[1] - t0);
    struct coord_admin_stats st;
    coord_admin_stats(a, &st);
    ck_assert(st.canceled == 2 && st.queued == 0);
    coord_admin_free(a);
    event_base_free(base);
    close(lfd);
}
END_TEST

/* Freed with a call stuck on a silent shard: it returns at once and calls nothing back. */
START_TEST(free_drops_callbacks)
{
    char addr[64];
    int lfd = silent_listener(addr, sizeof addr);
    struct event_base *base = event_base_new();
    struct coord_admin *a = coord_admin_new(base);
    struct got g = {0};
    struct coord_admin_req r = req_for(COORD_ADMIN_STATS, addr, 60000);
    coord_admin_call(a, &r, on_result, &g);
    coord_admin_call(a, &r, on_result, &g);
    wait_for(base, &g, 1, 0.3);
    double t0 = smlt_now_mono();
    coord_admin_free(a);
    ck_assert(smlt_now_mono() - t0 < 5);
    wait_for(base, &g, 1, 1.0);
    ck_assert_int_eq(g.n, 0);
    event_base_free(base);
    close(lfd);
    usleep(200 * 1000); /* the interrupted thread exits */
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("coord_admin");
    TCase *tc = tcase_create("queue");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, dead_address_fails_on_the_loop);
    tcase_add_test(tc, timeout_holds_on_a_silent_shard);
    tcase_add_test(tc, cancel_interrupts_a_stuck_call);
    tcase_add_test(tc, free_drops_callbacks);
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
