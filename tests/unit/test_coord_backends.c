/* test_coord_backends.c: the coordinator's network platform backends (coord_backend_http.c,
 * coord_backend_lambda.c) against endpoints of the test's own on loopback port 0, in this
 * process's event loop:
 *   - OpenFaaS: POST /function/NAME carries the payload; the response line comes back; 429
 *     and 503 are retried (with backoff) until an answer; a 400 is a refusal, not retried;
 *   - Knative: POST to the service URL;
 *   - Lambda: the Invoke API path with Qualifier and headers; the SigV4 Authorization header
 *     is checked against botocore's signer (Debian python3-botocore, tests/tools/
 *     sigv4_check.py) with a session token; the billed duration and a cold start are read
 *     from the log tail (its last REPORT line, at the Memory Size it names); a throttle (429 TooManyRequestsException) is retried, a function
 *     error is a crash, "Task timed out" a timeout, a 403 a refusal; credentials from the
 *     container endpoint (with its Authorization header) when the environment has none;
 *     an ARN as the function name is refused with the reason. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "coord_backend.h"
#include "rpc_conn.h"

/* ---- the endpoint of the test's own ---------------------------------------------------- */

#define MAX_SEEN 16

struct seen {
    char method[8], uri[512], body[1024];
    json_t *headers; /* name -> value */
};

struct fake {
    struct event_base *base;
    struct evhttp *http;
    int port;
    /* the answers, one per request in order (the last repeats) */
    int codes[8];
    const char *bodies[8];
    const char *hdr_name[8], *hdr_value[8];
    const char *hdr2_name[8], *hdr2_value[8];
    int delay_ms[8];
    int n_answers;
    struct seen seen[MAX_SEEN];
    int nseen;
    int creds_calls;
    char creds_auth[256];
};

static void reply(struct evhttp_request *req, struct fake *f, int k)
{
    struct evbuffer *out = evbuffer_new();
    evbuffer_add_printf(out, "%s", f->bodies[k] ? f->bodies[k] : "");
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (f->hdr_name[k])
        evhttp_add_header(h, f->hdr_name[k], f->hdr_value[k]);
    if (f->hdr2_name[k])
        evhttp_add_header(h, f->hdr2_name[k], f->hdr2_value[k]);
    evhttp_send_reply(req, f->codes[k], "x", out);
    evbuffer_free(out);
}

struct later {
    struct evhttp_request *req;
    struct fake *f;
    int k;
};

static void on_later(evutil_socket_t fd, short what, void *arg)
{
    struct later *l = arg;
    reply(l->req, l->f, l->k);
    free(l);
}

static void on_req(struct evhttp_request *req, void *arg)
{
    struct fake *f = arg;
    const char *uri = evhttp_request_get_uri(req);
    if (!strncmp(uri, "/creds", 6)) {
        f->creds_calls++;
        const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
        snprintf(f->creds_auth, sizeof f->creds_auth, "%s", a ? a : "");
        struct evbuffer *out = evbuffer_new();
        evbuffer_add_printf(out, "{\"AccessKeyId\": \"ASIACONTAINER\", \"SecretAccessKey\": "
                                 "\"containersecret\", \"Token\": \"containertoken\", "
                                 "\"Expiration\": \"2099-01-01T00:00:00Z\"}");
        evhttp_send_reply(req, 200, "OK", out);
        evbuffer_free(out);
        return;
    }
    if (f->nseen < MAX_SEEN) {
        struct seen *s = &f->seen[f->nseen];
        enum evhttp_cmd_type c = evhttp_request_get_command(req);
        snprintf(s->method, sizeof s->method, "%s", c == EVHTTP_REQ_POST ? "POST" : "GET");
        snprintf(s->uri, sizeof s->uri, "%s", uri);
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(in);
        if (n >= sizeof s->body)
            n = sizeof s->body - 1;
        evbuffer_copyout(in, s->body, n);
        s->body[n] = '\0';
        json_decref(s->headers); /* (a test may count requests afresh) */
        s->headers = json_object();
        struct evkeyval *kv;
        TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next)
        json_object_set_new(s->headers, kv->key, json_string(kv->value));
    }
    int k = f->nseen < f->n_answers ? f->nseen : f->n_answers - 1;
    f->nseen++;
    if (f->delay_ms[k]) {
        struct later *l = calloc(1, sizeof *l);
        *l = (struct later){req, f, k};
        struct timeval tv = {f->delay_ms[k] / 1000, (f->delay_ms[k] % 1000) * 1000};
        event_base_once(f->base, -1, EV_TIMEOUT, on_later, l, &tv);
        return;
    }
    reply(req, f, k);
}

static void fake_start(struct fake *f, struct event_base *base)
{
    f->base = base;
    f->http = evhttp_new(base);
    int fd = rpc_net_listen("127.0.0.1:0", 16, &f->port);
    ck_assert_int_ge(fd, 0);
    ck_assert_ptr_nonnull(evhttp_accept_socket_with_handle(f->http, fd));
    evhttp_set_gencb(f->http, on_req, f);
}

static void fake_stop(struct fake *f)
{
    for (int i = 0; i < MAX_SEEN; i++)
        json_decref(f->seen[i].headers);
    evhttp_free(f->http);
}

/* ---- running invocations ------------------------------------------------------------- */

struct done {
    int n;
    struct coord_inv_result r;
    char response[1024];
};

static void on_end(uint64_t inv, const struct coord_inv_result *r, void *arg)
{
    struct done *d = arg;
    d->n++;
    d->r = *r;
    snprintf(d->response, sizeof d->response, "%s", r->response ? r->response : "");
}

/* Invokes once on b and runs the loop until the end (at most 30 s). */
static void invoke(struct event_base *base, struct coord_backend *b, struct done *d,
                   uint32_t limit_s)
{
    memset(d, 0, sizeof *d);
    struct coord_inv_req req = {.function = "job-0001", .payload = "{\"invocation\":\"job-0001/0/1\"}",
                                .memory_mb = 2048, .time_limit_s = limit_s};
    uint64_t id = 0;
    ck_assert_int_eq(coord_backend_invoke(b, &req, on_end, d, &id), 0);
    ck_assert_int_eq(d->n, 0); /* never from inside the call */
    for (int i = 0; i < 3000 && !d->n; i++) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    ck_assert_int_eq(d->n, 1);
}

static const char *RESP = "{\"invocation\":\"job-0001/0/1\",\"status\":\"slice\",\"cold\":true}";

START_TEST(openfaas_posts_and_retries_pushback)
{
    struct event_base *base = event_base_new();
    struct fake f = {.codes = {429, 503, 200}, .bodies = {"slow down", "busy", RESP},
                     .n_answers = 3};
    fake_start(&f, base);
    char url[64], err[256] = "";
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", f.port);
    struct coord_backend_http_conf hc = {.url = url, .function = "smlt-worker"};
    struct coord_backend *b = coord_backend_http_new(base, &hc, err, sizeof err);
    ck_assert_msg(b != NULL, "%s", err);
    ck_assert_str_eq(coord_backend_name(b), "openfaas");
    struct done d;
    invoke(base, b, &d, 30);
    ck_assert_int_eq(d.r.status, COORD_INV_OK);
    ck_assert_str_eq(d.response, RESP);
    ck_assert_int_eq(d.r.cold, 1);
    ck_assert_int_eq(f.nseen, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(f.seen[i].uri, "/function/smlt-worker");
        ck_assert_str_eq(f.seen[i].method, "POST");
        ck_assert_str_eq(f.seen[i].body, "{\"invocation\":\"job-0001/0/1\"}");
    }
    /* A refusal (400) is not retried. */
    f.nseen = 0;
    f.codes[0] = 400;
    f.bodies[0] = "{\"error\": \"malformed\"}";
    f.n_answers = 1;
    invoke(base, b, &d, 30);
    ck_assert_int_eq(d.r.status, COORD_INV_FAILED);
    ck_assert_ptr_nonnull(strstr(d.r.detail, "HTTP 400"));
    ck_assert_int_eq(f.nseen, 1);
    struct coord_backend_stats st;
    coord_backend_stats(b, &st);
    ck_assert_uint_eq(st.invocations, 2);
    ck_assert_uint_eq(st.cold_starts, 1);
    coord_backend_free(b);
    fake_stop(&f);
    event_base_free(base);
}
END_TEST

START_TEST(knative_posts_to_the_service)
{
    struct event_base *base = event_base_new();
    struct fake f = {.codes = {200}, .bodies = {RESP}, .n_answers = 1};
    fake_start(&f, base);
    char url[64], err[256] = "";
    snprintf(url, sizeof url, "http://127.0.0.1:%d/svc", f.port);
    struct coord_backend_http_conf hc = {.knative = 1, .url = url};
    struct coord_backend *b = coord_backend_http_new(base, &hc, err, sizeof err);
    ck_assert_msg(b != NULL, "%s", err);
    struct done d;
    invoke(base, b, &d, 30);
    ck_assert_int_eq(d.r.status, COORD_INV_OK);
    ck_assert_str_eq(f.seen[0].uri, "/svc");
    coord_backend_free(b);
    fake_stop(&f);
    event_base_free(base);
}
END_TEST

/* The log tail Lambda returns: a cold start billed 1,235 ms. */
static const char *LOG_B64 =
    "U1RBUlQgUmVxdWVzdElkOiAxClJFUE9SVCBSZXF1ZXN0SWQ6IDEJRHVyYXRpb246IDEyMzQuNSBtcwlCaWxsZWQg"
    "RHVyYXRpb246IDEyMzUgbXMJTWVtb3J5IFNpemU6IDIwNDggTUIJTWF4IE1lbW9yeSBVc2VkOiAxMDAgTUIJSW5p"
    "dCBEdXJhdGlvbjogMjAwLjAgbXMK";

/* Runs tests/tools/sigv4_check.py on request s; returns its first output line. */
static void sigv4_check(const struct seen *s, int port, const char *ak, const char *sk,
                        const char *tok, char *out, size_t len)
{
    char url[700];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, s->uri);
    json_t *o = json_pack("{s:s, s:s, s:O, s:s, s:s, s:s, s:s, s:s}", "method", s->method, "url",
                          url, "headers", s->headers, "body", s->body, "access_key", ak,
                          "secret_key", sk, "region", "eu-west-1", "service", "lambda");
    if (tok)
        json_object_set_new(o, "session_token", json_string(tok));
    char path[1200], cmd[1400];
    const char *src = getenv("SMLT_SOURCE_DIR");
    snprintf(path, sizeof path, "/tmp/smlt-sigv4-%d.json", (int)getpid());
    json_dump_file(o, path, 0);
    json_decref(o);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/tools/sigv4_check.py < %s",
             src ? src : ".", path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    if (!fgets(out, (int)len, p))
        snprintf(out, len, "(no output)");
    pclose(p);
    if (getenv("SMLT_KEEP_SIGV4"))
        return;
    unlink(path);
}

START_TEST(lambda_signs_bills_and_tells_errors_apart)
{
    ck_assert_msg(system("/usr/bin/python3 -c 'import botocore' 2>/dev/null") == 0,
                  "Debian's python3-botocore is missing (tools/test.sh installs it)");
    struct event_base *base = event_base_new();
    struct fake f = {.codes = {200, 429, 200, 200, 200, 403},
                     .bodies = {RESP, "{\"message\":\"Rate exceeded\"}", RESP,
                                "{\"errorMessage\":\"boom\",\"errorType\":\"Runtime.ExitError\"}",
                                "{\"errorMessage\":\"2026-12-03 Task timed out after 3.00 seconds\"}",
                                "{\"message\":\"The request signature we calculated does not match\"}"},
                     .hdr_name = {"X-Amz-Log-Result", "x-amzn-ErrorType", NULL,
                                  "X-Amz-Function-Error", "X-Amz-Function-Error", NULL},
                     .hdr_value = {LOG_B64, "TooManyRequestsException", NULL, "Unhandled",
                                   "Unhandled", NULL},
                     .n_answers = 6};
    fake_start(&f, base);
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", 1);
    setenv("AWS_SESSION_TOKEN", "sessiontoken123", 1);
    char ep[64], err[256] = "";
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f.port);
    struct coord_backend_lambda_conf lc = {.function = "smlt-worker", .region = "eu-west-1",
                                           .qualifier = "live", .endpoint = ep};
    struct coord_backend *b = coord_backend_lambda_new(base, &lc, err, sizeof err);
    ck_assert_msg(b != NULL, "%s", err);
    struct done d;
    invoke(base, b, &d, 60);
    ck_assert_int_eq(d.r.status, COORD_INV_OK);
    ck_assert_str_eq(d.response, RESP);
    ck_assert(d.r.duration_s > 1.2349 && d.r.duration_s < 1.2351); /* billed, from the log */
    ck_assert_int_eq(d.r.memory_mb, 2048);
    ck_assert_int_eq(d.r.cold, 1);
    const struct seen *s = &f.seen[0];
    ck_assert_str_eq(s->uri, "/2015-03-31/functions/smlt-worker/invocations?Qualifier=live");
    ck_assert_str_eq(json_string_value(json_object_get(s->headers, "X-Amz-Invocation-Type")),
                     "RequestResponse");
    ck_assert_str_eq(json_string_value(json_object_get(s->headers, "x-amz-security-token")),
                     "sessiontoken123");
    char ok[512];
    sigv4_check(s, f.port, "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "sessiontoken123", ok, sizeof ok);
    ck_assert_msg(!strncmp(ok, "ok", 2), "SigV4 against botocore: %s", ok);
    /* A throttle, then the answer: retried. */
    invoke(base, b, &d, 60);
    ck_assert_int_eq(d.r.status, COORD_INV_OK);
    ck_assert_int_eq(f.nseen, 3);
    /* A function error, a timeout, a refusal. */
    invoke(base, b, &d, 60);
    ck_assert_int_eq(d.r.status, COORD_INV_CRASHED);
    ck_assert_ptr_nonnull(strstr(d.r.detail, "boom"));
    invoke(base, b, &d, 60);
    ck_assert_int_eq(d.r.status, COORD_INV_TIMEOUT);
    invoke(base, b, &d, 60);
    ck_assert_int_eq(d.r.status, COORD_INV_FAILED);
    ck_assert_ptr_nonnull(strstr(d.r.detail, "403"));
    ck_assert_int_eq(f.nseen, 6); /* the refusal was not retried */
    coord_backend_free(b);
    /* An ARN is refused with the reason. */
    lc.function = "arn:aws:lambda:eu-west-1:123456789012:function:smlt-worker";
    ck_assert_ptr_null(coord_backend_lambda_new(base, &lc, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "plain name"));
    fake_stop(&f);
    event_base_free(base);
}
END_TEST

/* A warm invocation whose log tail holds lines of the function's own that look like REPORT
 * lines: only Lambda's last line counts. The function has 3008 MB whatever was asked. */
static const char *LOG_WARM_B64 =
    "U1RBUlQgUmVxdWVzdElkOiAyIFZlcnNpb246IDEKd29ya2VyIHNheXM6IFJFUE9SVCBSZXF1ZXN0SWQ6IDIJQmls"
    "bGVkIER1cmF0aW9uOiA3IG1zClJFUE9SVCBSZXF1ZXN0SWQ6IGZha2UJQmlsbGVkIER1cmF0aW9uOiA1IG1zCU1l"
    "bW9yeSBTaXplOiAxMjggTUIKRU5EIFJlcXVlc3RJZDogMgpSRVBPUlQgUmVxdWVzdElkOiAyCUR1cmF0aW9uOiA5"
    "OS41MCBtcwlCaWxsZWQgRHVyYXRpb246IDEwMCBtcwlNZW1vcnkgU2l6ZTogMzAwOCBNQglNYXggTWVtb3J5IFVz"
    "ZWQ6IDYwIE1CCQo=";

START_TEST(lambda_bills_the_report_line_at_its_memory_size)
{
    struct event_base *base = event_base_new();
    struct fake f = {.codes = {200},
                     .bodies = {"{\"invocation\":\"job-0001/0/1\",\"status\":\"slice\",\"cold\":false}"},
                     .hdr_name = {"X-Amz-Log-Result"}, .hdr_value = {LOG_WARM_B64},
                     .n_answers = 1};
    fake_start(&f, base);
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", 1);
    unsetenv("AWS_SESSION_TOKEN");
    char ep[64], err[256] = "";
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f.port);
    struct coord_backend_lambda_conf lc = {.function = "smlt-worker", .region = "eu-west-1",
                                           .endpoint = ep};
    struct coord_backend *b = coord_backend_lambda_new(base, &lc, err, sizeof err);
    ck_assert_msg(b != NULL, "%s", err);
    struct done d;
    invoke(base, b, &d, 60); /* asks for 2048 MB */
    ck_assert_int_eq(d.r.status, COORD_INV_OK);
    ck_assert_msg(d.r.duration_s > 0.0999 && d.r.duration_s < 0.1001, "%f", d.r.duration_s);
    ck_assert_int_eq(d.r.memory_mb, 3008);
    ck_assert_int_eq(d.r.cold, 0);
    struct coord_backend_stats st;
    coord_backend_stats(b, &st);
    ck_assert_msg(st.gb_s > 3008 / 1024.0 * 0.0999 && st.gb_s < 3008 / 1024.0 * 0.1001, "%f",
                  st.gb_s);
    ck_assert_int_eq(st.warm_starts, 1);
    coord_backend_free(b);
    fake_stop(&f);
    event_base_free(base);
}
END_TEST

START_TEST(lambda_credentials_from_the_container_endpoint)
{
    struct event_base *base = event_base_new();
    struct fake f = {.codes = {200}, .bodies = {RESP}, .n_answers = 1};
    fake_start(&f, base);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent", 1);
    char ep[64], creds[96], err[256] = "";
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f.port);
    snprintf(creds, sizeof creds, "http://127.0.0.1:%d/creds", f.port);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", creds, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-auth", 1);
    struct coord_backend_lambda_conf lc = {.function = "smlt-worker", .region = "eu-west-1",
                                           .endpoint = ep};
    struct coord_backend *b = coord_backend_lambda_new(base, &lc, err, sizeof err);
    ck_assert_msg(b != NULL, "%s", err);
    struct done d;
    invoke(base, b, &d, 60);
    ck_assert_int_eq(d.r.status, COORD_INV_OK);
    ck_assert_int_eq(f.creds_calls, 1);
    ck_assert_str_eq(f.creds_auth, "container-auth");
    const char *auth = json_string_value(json_object_get(f.seen[0].headers, "Authorization"));
    ck_assert_ptr_nonnull(strstr(auth, "Credential=ASIACONTAINER/"));
    ck_assert_str_eq(json_string_value(json_object_get(f.seen[0].headers, "x-amz-security-token")),
                     "containertoken");
    coord_backend_free(b);
    /* No credentials anywhere: refused with where it looked. */
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    ck_assert_ptr_null(coord_backend_lambda_new(base, &lc, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "no AWS credentials"));
    fake_stop(&f);
    event_base_free(base);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("coord_backends");
    TCase *tc = tcase_create("backends");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, openfaas_posts_and_retries_pushback);
    tcase_add_test(tc, knative_posts_to_the_service);
    tcase_add_test(tc, lambda_signs_bills_and_tells_errors_apart);
    tcase_add_test(tc, lambda_bills_the_report_line_at_its_memory_size);
    tcase_add_test(tc, lambda_credentials_from_the_container_endpoint);
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
