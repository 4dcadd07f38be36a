/* test_worker_invoke.c: one invocation as every platform mode serves it (worker/worker_invoke.c),
 * without a coordinator: the payload's shape and limits (hostile payloads are refused with a
 * message naming what is wrong, and still get a "failed" response line, as --invoke writes it);
 * fields at their limit pass and one character more does not; and respond_by bounds the wait
 * for a coordinator that accepts the connection but never answers (the Lambda deadline's job),
 * and so does the stop flag (SIGTERM). The optional TLS fields are checked too. */
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "smlt.pb-c.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_util.h"
#include "worker_invoke.h"
#include "worker_resp.h"

/* A payload whose three fields are coord, inv and token. */
static char *payload(const char *coord, const char *inv, const char *token)
{
    size_t n = strlen(coord) + strlen(inv) + strlen(token) + 80;
    char *s = malloc(n);
    snprintf(s, n, "{\"coordinator\": \"%s\", \"invocation\": \"%s\", \"token\": \"%s\"}", coord,
             inv, token);
    return s;
}

START_TEST(shapes_refused)
{
    static const struct {
        const char *text, *says;
    } bad[] = {
        {"", "empty"},
        {"not json", "invalid JSON"},
        {"[1, 2]", "not an object"},
        {"\"a string\"", "invalid JSON"},
        {"{}", "\"coordinator\" is missing"},
        {"{\"coordinator\": \"h:1\", \"invocation\": \"i\"}", "\"token\" is missing"},
        {"{\"coordinator\": 7, \"invocation\": \"i\", \"token\": \"t\"}", "not a string"},
        {"{\"coordinator\": \"h:1\", \"invocation\": null, \"token\": \"t\"}", "not a string"},
        {"{\"coordinator\": \"\", \"invocation\": \"i\", \"token\": \"t\"}", "is empty"},
        {"{\"coordinator\": \"h:1\", \"coordinator\": \"h:2\", \"invocation\": \"i\", "
         "\"token\": \"t\"}", "duplicate"},
        {"{\"coordinator\": \"h:1\", \"invocation\": \"i\", \"token\": \"t\"", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[512] = "";
        ck_assert_int_eq(worker_invoke_check(bad[i].text, err, sizeof err), SMLT_EINVAL);
        ck_assert_msg(strstr(err, bad[i].says), "%s: %s", bad[i].text, err);
    }
    ck_assert_int_eq(worker_invoke_check(NULL, NULL, 0), SMLT_EINVAL);
}
END_TEST

START_TEST(limits)
{
    char err[512];
    char *at = malloc(SMLT_MAX_INVOCATION_FIELD + 2);
    memset(at, 'a', SMLT_MAX_INVOCATION_FIELD + 1);
    at[SMLT_MAX_INVOCATION_FIELD] = '\0';
    char *p = payload("127.0.0.1:1", at, at);
    ck_assert_int_eq(worker_invoke_check(p, err, sizeof err), 0);
    free(p);
    at[SMLT_MAX_INVOCATION_FIELD] = 'a';
    at[SMLT_MAX_INVOCATION_FIELD + 1] = '\0';
    const char *which[] = {"coordinator", "invocation", "token"};
    for (int i = 0; i < 3; i++) {
        p = payload(i == 0 ? at : "h:1", i == 1 ? at : "i", i == 2 ? at : "t");
        ck_assert_int_eq(worker_invoke_check(p, err, sizeof err), SMLT_EINVAL);
        ck_assert_msg(strstr(err, which[i]) && strstr(err, "too long"), "%s", err);
        free(p);
    }
    free(at);
    /* The whole payload: SMLT_MAX_INVOCATION bytes at most (padding is whitespace). */
    size_t n = SMLT_MAX_INVOCATION + 1;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[n] = '\0';
    const char *ok = "{\"coordinator\": \"h:1\", \"invocation\": \"i\", \"token\": \"t\"}";
    memcpy(big, ok, strlen(ok));
    ck_assert_int_eq(worker_invoke_check(big, err, sizeof err), SMLT_EINVAL);
    ck_assert_msg(strstr(err, "over the limit"), "%s", err);
    big[n - 1] = '\0';
    ck_assert_int_eq(worker_invoke_check(big, err, sizeof err), 0);
    free(big);
}
END_TEST

/* The optional TLS fields: "tls" a boolean, "tls_ca" PEM text of 1..SMLT_MAX_TLS_CA_PEM
 * bytes; CA text that is no certificate fails the invocation with OpenSSL's words, before
 * anything is dialled. */
START_TEST(tls_fields)
{
    static const struct {
        const char *extra, *says;
    } bad[] = {
        {"\"tls\": \"yes\"", "\"tls\" must be true or false"},
        {"\"tls\": 1", "\"tls\" must be true or false"},
        {"\"tls_ca\": 7", "\"tls_ca\" must be"},
        {"\"tls_ca\": \"\"", "\"tls_ca\" must be"},
    };
    char text[512], err[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text,
                 "{\"coordinator\": \"h:1\", \"invocation\": \"i\", \"token\": \"t\", %s}",
                 bad[i].extra);
        ck_assert_int_eq(worker_invoke_check(text, err, sizeof err), SMLT_EINVAL);
        ck_assert_msg(strstr(err, bad[i].says), "%s: %s", text, err);
    }
    /* at the limit, and one byte over */
    size_t n = SMLT_MAX_TLS_CA_PEM + 200;
    char *big = malloc(n), *ca = malloc(SMLT_MAX_TLS_CA_PEM + 2);
    memset(ca, 'A', SMLT_MAX_TLS_CA_PEM + 1);
    ca[SMLT_MAX_TLS_CA_PEM] = '\0';
    snprintf(big, n, "{\"coordinator\": \"h:1\", \"invocation\": \"i\", \"token\": \"t\", "
                     "\"tls\": true, \"tls_ca\": \"%s\"}", ca);
    ck_assert_int_eq(worker_invoke_check(big, err, sizeof err), 0);
    ca[SMLT_MAX_TLS_CA_PEM] = 'A';
    ca[SMLT_MAX_TLS_CA_PEM + 1] = '\0';
    snprintf(big, n, "{\"coordinator\": \"h:1\", \"invocation\": \"i\", \"token\": \"t\", "
                     "\"tls_ca\": \"%s\"}", ca);
    ck_assert_int_eq(worker_invoke_check(big, err, sizeof err), SMLT_EINVAL);
    ck_assert_msg(strstr(err, "tls_ca"), "%s", err);
    free(ca);
    free(big);
    /* served: the CA text is no certificate, the invocation fails saying so */
    struct worker_invoke *s = worker_invoke_new();
    char *resp = NULL;
    const char *p = "{\"coordinator\": \"127.0.0.1:1\", \"invocation\": \"j/0/1\", "
                    "\"token\": \"t\", \"tls\": true, \"tls_ca\": \"not a certificate\"}";
    ck_assert_int_eq(worker_invoke_serve(s, p, NULL, &resp, err, sizeof err), 0);
    struct worker_resp r;
    ck_assert_int_eq(worker_resp_parse(resp, &r), 0);
    ck_assert_int_eq(r.status, SMLT__DONE_STATUS__DONE_FAILED);
    ck_assert_msg(strstr(r.error, "TLS") && strstr(r.error, "no PEM certificate"), "%s", r.error);
    free(resp);
    worker_invoke_free(s);
}
END_TEST

/* A malformed payload served: SMLT_EINVAL, the message, and the failed response line. */
START_TEST(serve_malformed)
{
    struct worker_invoke *s = worker_invoke_new();
    ck_assert_ptr_nonnull(s);
    char *resp = NULL, err[512];
    ck_assert_int_eq(worker_invoke_serve(s, "{\"token\": 1}", NULL, &resp, err, sizeof err),
                     SMLT_EINVAL);
    ck_assert_ptr_nonnull(resp);
    struct worker_resp r;
    ck_assert_int_eq(worker_resp_parse(resp, &r), 0);
    ck_assert_int_eq(r.status, SMLT__DONE_STATUS__DONE_FAILED);
    ck_assert_str_eq(r.error, err);
    ck_assert_str_eq(r.invocation, "");
    free(resp);
    worker_invoke_free(s);
}
END_TEST

/* A coordinator that takes connections and says nothing: a listening socket on loopback port
 * 0, its address in coord. Returns the socket. */
static int silent_coordinator(char *coord, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    snprintf(coord, len, "127.0.0.1:%d", ntohs(a.sin_port));
    return fd;
}

/* A coordinator that never answers: respond_by ends the wait. */
START_TEST(respond_by_bounds_the_wait)
{
    char coord[64];
    int fd = silent_coordinator(coord, sizeof coord);
    char *p = payload(coord, "job/0/1", "token");
    struct worker_invoke *s = worker_invoke_new();
    double t0 = smlt_now_mono();
    struct worker_invoke_opts o = {.deadline = t0 + 0.2, .respond_by = t0 + 0.5};
    char *resp = NULL, err[512];
    ck_assert_int_eq(worker_invoke_serve(s, p, &o, &resp, err, sizeof err), 0);
    double dt = smlt_now_mono() - t0;
    struct worker_resp r;
    ck_assert_int_eq(worker_resp_parse(resp, &r), 0);
    ck_assert_int_eq(r.status, SMLT__DONE_STATUS__DONE_FAILED);
    ck_assert_str_eq(r.invocation, "job/0/1");
    ck_assert_msg(strstr(r.error, "no reply in time"), "%s", r.error);
    ck_assert_msg(dt >= 0.45 && dt < 2.0, "answered after %.3f s", dt);
    free(resp);
    free(p);
    worker_invoke_free(s);
    close(fd);
}
END_TEST

/* The stop flag set (SIGTERM): the hello's reply is not waited for. */
START_TEST(stop_ends_the_wait)
{
    char coord[64];
    int fd = silent_coordinator(coord, sizeof coord);
    char *p = payload(coord, "job/0/1", "token");
    struct worker_invoke *s = worker_invoke_new();
    atomic_int stop = 1;
    struct worker_invoke_opts o = {.stop = &stop};
    char *resp = NULL, err[512];
    double t0 = smlt_now_mono();
    ck_assert_int_eq(worker_invoke_serve(s, p, &o, &resp, err, sizeof err), 0);
    double dt = smlt_now_mono() - t0;
    struct worker_resp r;
    ck_assert_int_eq(worker_resp_parse(resp, &r), 0);
    ck_assert_int_eq(r.status, SMLT__DONE_STATUS__DONE_FAILED);
    ck_assert_msg(strstr(r.error, "stopping"), "%s", r.error);
    ck_assert_msg(dt < 1.0, "answered after %.3f s", dt);
    free(resp);
    free(p);
    worker_invoke_free(s);
    close(fd);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("worker_invoke");
    TCase *tc = tcase_create("payload");
    tcase_add_test(tc, shapes_refused);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, serve_malformed);
    tcase_add_test(tc, tls_fields);
    tcase_add_test(tc, respond_by_bounds_the_wait);
    tcase_add_test(tc, stop_ends_the_wait);
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
