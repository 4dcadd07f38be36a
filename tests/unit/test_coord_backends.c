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
 *     an ARN as the function name is refused with the reason;
 *   - OpenFaaS asynchronously (--openfaas-async): POST /async-function/NAME with an
 *     X-Callback-Url of a per-invocation secret, 202 Accepted (429, 502 and 503 retried with
 *     the same URL); the invocation runs until its callback, which ends it like a synchronous
 *     answer and bills X-Duration-Seconds; a wrong secret, an unknown invocation, no
 *     X-Function-Status or an oversized body are refused and change nothing; a second
 *     callback, a late one (after the time limit) and one after a cancel are refused;
 *     X-Function-Status 500 is a crash, 400 a failure, 503 pushback (submitted again); the
 *     same through the coordinator's HTTP API (coord_http.c), the gateway calling back as
 *     OpenFaaS's queue-worker does; the default callback base from --listen, a wildcard
 *     refused. */
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
#include "coord_fake.h"
#include "coord_http.h"
#include "rpc_conn.h"
#include "smlt_error.h"

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
    /* Calling back as OpenFaaS's queue-worker does, after a 202 (when cb_status is set): the
     * result, then the same again, then with a forged secret; the coordinator's answers. */
    const char *cb_status, *cb_body, *cb_duration;
    int cb_codes[4];
    int n_cb;
    char cb_url[512];
    struct evhttp_connection *cb_conns[4];
};

static void send_callback(struct fake *f);

static void on_callback_answer(struct evhttp_request *resp, void *arg)
{
    struct fake *f = arg;
    f->cb_codes[f->n_cb++] = resp ? evhttp_request_get_response_code(resp) : -1;
    if (f->n_cb < 3)
        send_callback(f);
}

/* The next callback of the plan to f->cb_url (the third with its secret's last digit
 * changed). */
static void send_callback(struct fake *f)
{
    char url[512];
    snprintf(url, sizeof url, "%s", f->cb_url);
    if (f->n_cb == 2)
        url[strlen(url) - 1] = url[strlen(url) - 1] == '0' ? '1' : '0';
    struct evhttp_uri *u = evhttp_uri_parse(url);
    ck_assert_ptr_nonnull(u);
    struct evhttp_connection *conn = evhttp_connection_base_new(
        f->base, NULL, evhttp_uri_get_host(u), (unsigned short)evhttp_uri_get_port(u));
    f->cb_conns[f->n_cb] = conn;
    struct evhttp_request *rq = evhttp_request_new(on_callback_answer, f);
    struct evkeyvalq *h = evhttp_request_get_output_headers(rq);
    evhttp_add_header(h, "Host", evhttp_uri_get_host(u));
    evhttp_add_header(h, "X-Call-Id", "call-0001");
    evhttp_add_header(h, "X-Function-Status", f->cb_status);
    evhttp_add_header(h, "X-Function-Name", "smlt-worker");
    evhttp_add_header(h, "X-Duration-Seconds", f->cb_duration);
    evbuffer_add_printf(evhttp_request_get_output_buffer(rq), "%s", f->cb_body);
    ck_assert_int_eq(evhttp_make_request(conn, rq, EVHTTP_REQ_POST, evhttp_uri_get_path(u)), 0);
    evhttp_uri_free(u);
}

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

static void on_function_ran(evutil_socket_t fd, short what, void *arg)
{
    send_callback(arg);
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
    const char *cb = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Callback-Url");
    if (f->codes[k] == 202 && f->cb_status && cb && !f->cb_url[0]) {
        snprintf(f->cb_url, sizeof f->cb_url, "%s", cb);
        reply(req, f, k);
        /* The queue-worker runs the function (for 0.3 s), then calls back. */
        struct timeval tv = {0, 300000};
        event_base_once(f->base, -1, EV_TIMEOUT, on_function_ran, f, &tv);
        return;
    }
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
    for (int i = 0; i < 4; i++)
        if (f->cb_conns[i])
            evhttp_connection_free(f->cb_conns[i]);
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

/* ---- OpenFaaS asynchronously ---------------------------------------------------------------- */

static void run_ms(struct event_base *base, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Starts an invocation on b and runs the loop until the gateway has seen `requests` requests
 * in all, then `settle_ms` more; it must still run. Returns its id. */
static uint64_t invoke_async(struct event_base *base, struct coord_backend *b, struct fake *f,
                             struct done *d, uint32_t limit_s, int requests, int settle_ms)
{
    memset(d, 0, sizeof *d);
    struct coord_inv_req req = {.function = "job-0001", .payload = "{\"invocation\":\"job-0001/0/1\"}",
                                .memory_mb = 2048, .time_limit_s = limit_s};
    uint64_t id = 0;
    ck_assert_int_eq(coord_backend_invoke(b, &req, on_end, d, &id), 0);
    for (int i = 0; i < 1000 && f->nseen < requests; i++)
        run_ms(base, 10);
    ck_assert_int_eq(f->nseen, requests);
    run_ms(base, settle_ms);
    ck_assert_int_eq(d->n, 0); /* accepted: running until its callback */
    return id;
}

/* The "ID/SECRET" of request i's X-Callback-Url (after BASE/api/callback/). */
static const char *cb_target(const struct fake *f, int i, const char *base_url)
{
    const char *u = json_string_value(json_object_get(f->seen[i].headers, "X-Callback-Url"));
    ck_assert_ptr_nonnull(u);
    size_t n = strlen(base_url);
    ck_assert_msg(!strncmp(u, base_url, n) && !strncmp(u + n, "/api/callback/", 14), "%s", u);
    return u + n + 14;
}

static int cb(struct coord_backend *b, const char *target, const char *status, const char *body,
              const char *duration, char *err, size_t len)
{
    struct coord_inv_callback c = {.target = target, .body = body,
                                   .body_len = body ? strlen(body) : 0, .call_id = "call-1",
                                   .function_status = status, .function_name = "smlt-worker",
                                   .duration_s = duration};
    err[0] = '\0';
    return coord_backend_callback(b, &c, err, len);
}

#define CB_BASE "http://127.0.0.1:9"

static struct coord_backend *async_backend(struct event_base *base, const struct fake *f,
                                           double grace_s)
{
    char url[64], err[256] = "";
    snprintf(url, sizeof url, "http://127.0.0.1:%d", f->port);
    struct coord_backend_http_conf hc = {.url = url, .function = "smlt-worker", .async = 1,
                                         .callback_url = CB_BASE "/", .grace_s = grace_s};
    struct coord_backend *b = coord_backend_http_new(base, &hc, err, sizeof err);
    ck_assert_msg(b != NULL, "%s", err);
    return b;
}

START_TEST(openfaas_async_callback_completes_exactly_once)
{
    struct event_base *base = event_base_new();
    struct fake f = {.codes = {429, 502, 503, 202}, .bodies = {"slow down", "bad gateway", "busy", ""},
                     .hdr_name = {NULL, NULL, NULL, "X-Call-Id"},
                     .hdr_value = {NULL, NULL, NULL, "call-0001"}, .n_answers = 4};
    fake_start(&f, base);
    struct coord_backend *b = async_backend(base, &f, 0);
    ck_assert_str_eq(coord_backend_name(b), "openfaas");
    ck_assert(coord_backend_takes_callbacks(b));
    struct done d;
    uint64_t id = invoke_async(base, b, &f, &d, 30, 4, 200);
    /* Every submission went to /async-function/NAME with the payload and the same callback
     * URL: BASE/api/callback/ID/SECRET, 64 hex digits of secret. */
    char target[128];
    snprintf(target, sizeof target, "%s", cb_target(&f, 0, CB_BASE));
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(f.seen[i].uri, "/async-function/smlt-worker");
        ck_assert_str_eq(f.seen[i].body, "{\"invocation\":\"job-0001/0/1\"}");
        ck_assert_str_eq(cb_target(&f, i, CB_BASE), target);
    }
    char want_id[32];
    snprintf(want_id, sizeof want_id, "%llu/", (unsigned long long)id);
    ck_assert_msg(!strncmp(target, want_id, strlen(want_id)), "%s", target);
    const char *secret = target + strlen(want_id);
    ck_assert_uint_eq(strlen(secret), 64);
    ck_assert_uint_eq(strspn(secret, "0123456789abcdef"), 64);
    struct coord_backend_stats st;
    coord_backend_stats(b, &st);
    ck_assert_uint_eq(st.running, 1); /* it holds its concurrency slot */

    /* Refused, and nothing changes: a wrong secret, an unknown invocation, a malformed path,
     * no X-Function-Status, a body over the cap. */
    char err[256], bad[128];
    snprintf(bad, sizeof bad, "%s%s", want_id, "00");
    ck_assert_int_eq(cb(b, bad, "200", RESP, NULL, err, sizeof err), SMLT_EPERM);
    ck_assert_ptr_nonnull(strstr(err, "wrong secret"));
    snprintf(bad, sizeof bad, "%llu/%s", (unsigned long long)id + 7, secret);
    ck_assert_int_eq(cb(b, bad, "200", RESP, NULL, err, sizeof err), SMLT_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err, "no invocation"));
    ck_assert_int_eq(cb(b, "x/../1", "200", RESP, NULL, err, sizeof err), SMLT_ENOTFOUND);
    ck_assert_int_eq(cb(b, target, NULL, RESP, NULL, err, sizeof err), SMLT_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "X-Function-Status"));
    ck_assert_int_eq(cb(b, target, "2OO", RESP, NULL, err, sizeof err), SMLT_EINVAL);
    char *big = malloc(COORD_CALLBACK_MAX_BODY + 2);
    memset(big, 'x', COORD_CALLBACK_MAX_BODY + 1);
    big[COORD_CALLBACK_MAX_BODY + 1] = '\0';
    ck_assert_int_eq(cb(b, target, "200", big, NULL, err, sizeof err), SMLT_ETOOBIG);
    free(big);
    run_ms(base, 50);
    ck_assert_int_eq(d.n, 0);

    /* The result: it ends now, as a synchronous answer, billed what the function ran. */
    char line[256];
    snprintf(line, sizeof line, "%s\n", RESP);
    ck_assert_int_eq(cb(b, target, "200", line, "0.125000", err, sizeof err), 0);
    ck_assert_int_eq(d.n, 1);
    ck_assert_int_eq(d.r.status, COORD_INV_OK);
    ck_assert_str_eq(d.response, RESP);
    ck_assert_int_eq(d.r.cold, 1);
    ck_assert_msg(d.r.duration_s > 0.124999 && d.r.duration_s < 0.125001, "%f", d.r.duration_s);
    /* Once: the same callback again is refused, and nothing happens. */
    ck_assert_int_eq(cb(b, target, "200", line, "0.125000", err, sizeof err), SMLT_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err, "earlier callback"));
    run_ms(base, 50);
    ck_assert_int_eq(d.n, 1);
    coord_backend_stats(b, &st);
    ck_assert_uint_eq(st.callbacks, 1);
    ck_assert_uint_eq(st.callbacks_refused, 7);
    ck_assert_uint_eq(st.running, 0);
    ck_assert_uint_eq(st.cold_starts, 1);
    ck_assert_int_eq(f.nseen, 4);
    coord_backend_free(b);
    fake_stop(&f);
    event_base_free(base);
}
END_TEST

START_TEST(openfaas_async_failures_timeouts_and_late_callbacks)
{
    struct event_base *base = event_base_new();
    struct fake f = {.codes = {202}, .bodies = {""}, .n_answers = 1};
    fake_start(&f, base);
    struct coord_backend *b = async_backend(base, &f, 0.3);
    struct done d;
    char err[256], target[128];

    /* X-Function-Status 500: the function failed (a crash, as on the synchronous path). */
    invoke_async(base, b, &f, &d, 30, 1, 0);
    snprintf(target, sizeof target, "%s", cb_target(&f, 0, CB_BASE));
    ck_assert_int_eq(cb(b, target, "500", "worker exploded", "0.5", err, sizeof err), 0);
    ck_assert_int_eq(d.r.status, COORD_INV_CRASHED);
    ck_assert_ptr_nonnull(strstr(d.r.detail, "HTTP 500"));
    ck_assert_ptr_nonnull(strstr(d.r.detail, "worker exploded"));
    /* 400: refused by the function, a failure. */
    f.nseen = 0;
    invoke_async(base, b, &f, &d, 30, 1, 0);
    snprintf(target, sizeof target, "%s", cb_target(&f, 0, CB_BASE));
    ck_assert_int_eq(cb(b, target, "400", "{\"error\":\"malformed\"}", NULL, err, sizeof err), 0);
    ck_assert_int_eq(d.r.status, COORD_INV_FAILED);
    /* 503: the platform's pushback: submitted again (same URL), then answered. */
    f.nseen = 0;
    invoke_async(base, b, &f, &d, 30, 1, 0);
    snprintf(target, sizeof target, "%s", cb_target(&f, 0, CB_BASE));
    ck_assert_int_eq(cb(b, target, "503", "no replicas", NULL, err, sizeof err), 0);
    ck_assert_int_eq(d.n, 0);
    for (int i = 0; i < 300 && f.nseen < 2; i++)
        run_ms(base, 10);
    ck_assert_int_eq(f.nseen, 2);
    ck_assert_str_eq(cb_target(&f, 1, CB_BASE), target);
    run_ms(base, 20);
    ck_assert_int_eq(cb(b, target, "200", RESP, NULL, err, sizeof err), 0);
    ck_assert_int_eq(d.r.status, COORD_INV_OK);

    /* No callback: a timeout at the time limit (1 s + 0.3 s grace); a late one is refused. */
    f.nseen = 0;
    invoke_async(base, b, &f, &d, 1, 1, 0);
    snprintf(target, sizeof target, "%s", cb_target(&f, 0, CB_BASE));
    for (int i = 0; i < 300 && !d.n; i++)
        run_ms(base, 10);
    ck_assert_int_eq(d.n, 1);
    ck_assert_int_eq(d.r.status, COORD_INV_TIMEOUT);
    ck_assert_ptr_nonnull(strstr(d.r.detail, "no callback within"));
    ck_assert(d.r.duration_s >= 1.2);
    ck_assert_int_eq(cb(b, target, "200", RESP, NULL, err, sizeof err), SMLT_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err, "time limit"));
    ck_assert_int_eq(d.n, 1);

    /* Canceled: a callback right after the cancel, and after its end, is refused. */
    f.nseen = 0;
    uint64_t id = invoke_async(base, b, &f, &d, 30, 1, 0);
    snprintf(target, sizeof target, "%s", cb_target(&f, 0, CB_BASE));
    ck_assert_int_eq(coord_backend_cancel(b, id), 0);
    ck_assert_int_eq(cb(b, target, "200", RESP, NULL, err, sizeof err), SMLT_ENOTFOUND);
    run_ms(base, 20);
    ck_assert_int_eq(d.n, 1);
    ck_assert_int_eq(d.r.status, COORD_INV_CANCELED);
    ck_assert_int_eq(cb(b, target, "200", RESP, NULL, err, sizeof err), SMLT_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err, "canceled"));
    ck_assert_int_eq(d.n, 1);

    /* The gateway refuses the submission (400): failed, not retried; a 200 is not an
     * asynchronous answer. */
    f.nseen = 0;
    f.codes[0] = 400;
    invoke(base, b, &d, 30);
    ck_assert_int_eq(d.r.status, COORD_INV_FAILED);
    ck_assert_int_eq(f.nseen, 1);
    f.codes[0] = 200;
    f.bodies[0] = RESP;
    invoke(base, b, &d, 30);
    ck_assert_int_eq(d.r.status, COORD_INV_FAILED);
    ck_assert_ptr_nonnull(strstr(d.r.detail, "202"));
    struct coord_backend_stats st;
    coord_backend_stats(b, &st);
    ck_assert_uint_eq(st.timeouts, 1);
    ck_assert_uint_eq(st.crashes, 1);
    ck_assert_uint_eq(st.callbacks, 4);
    ck_assert_uint_eq(st.callbacks_refused, 3);
    coord_backend_free(b);

    /* Asynchronous invocations are OpenFaaS's; the callback URL must be one. */
    char err2[256];
    struct coord_backend_http_conf hc = {.knative = 1, .url = "http://127.0.0.1:9", .async = 1};
    ck_assert_ptr_null(coord_backend_http_new(base, &hc, err2, sizeof err2));
    hc = (struct coord_backend_http_conf){.url = "http://127.0.0.1:9", .function = "f",
                                          .async = 1, .callback_url = "ftp://x"};
    ck_assert_ptr_null(coord_backend_http_new(base, &hc, err2, sizeof err2));
    ck_assert_ptr_nonnull(strstr(err2, "--callback-url"));
    hc.callback_url = "http://a b/";
    ck_assert_ptr_null(coord_backend_http_new(base, &hc, err2, sizeof err2));
    fake_stop(&f);
    event_base_free(base);
}
END_TEST

/* Through the coordinator's API: the gateway calls back over HTTP as OpenFaaS's queue-worker
 * does; the default base comes from the API's address. */
START_TEST(openfaas_async_through_the_api)
{
    struct coord *c = fake_coord_new();
    struct fake f = {.codes = {202}, .bodies = {""}, .hdr_name = {"X-Call-Id"},
                     .hdr_value = {"call-0001"}, .n_answers = 1, .cb_status = "200",
                     .cb_duration = "0.250000"};
    char line[256];
    snprintf(line, sizeof line, "%s\n", RESP);
    f.cb_body = line;
    fake_start(&f, c->base);
    char url[64], err[256] = "";
    snprintf(url, sizeof url, "http://127.0.0.1:%d", f.port);
    struct coord_backend_http_conf hc = {.url = url, .function = "smlt-worker", .async = 1};
    coord_backend_free(c->backend);
    c->backend = coord_backend_http_new(c->base, &hc, err, sizeof err);
    ck_assert_msg(c->backend != NULL, "%s", err);
    struct coord_http *h = coord_http_new(c->base, c, "127.0.0.1:0", "admin-secret", err,
                                          sizeof err);
    ck_assert_msg(h != NULL, "%s", err);
    /* No callback base yet: the invocation cannot be made, and says why. */
    struct done d;
    invoke(c->base, c->backend, &d, 30);
    ck_assert_int_eq(d.r.status, COORD_INV_FAILED);
    ck_assert_ptr_nonnull(strstr(d.r.detail, "callback URL"));
    ck_assert_int_eq(f.nseen, 0);
    /* A wildcard --listen cannot be called back; the API's loopback address can. */
    ck_assert_int_eq(coord_set_callback_base(c, "0.0.0.0:8080", 8080, err, sizeof err), SMLT_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "--callback-url"));
    ck_assert_int_eq(coord_set_callback_base(c, "[::]:0", 80, err, sizeof err), SMLT_EINVAL);
    ck_assert_int_eq(coord_set_callback_base(c, "127.0.0.1:0", coord_http_port(h), err, sizeof err), 0);
    invoke(c->base, c->backend, &d, 30);
    ck_assert_msg(d.r.status == COORD_INV_OK, "%d %s", d.r.status, d.r.detail);
    ck_assert_str_eq(d.response, RESP);
    ck_assert(d.r.duration_s > 0.249999 && d.r.duration_s < 0.250001);
    char base_url[64];
    snprintf(base_url, sizeof base_url, "http://127.0.0.1:%d", coord_http_port(h));
    cb_target(&f, 0, base_url);
    ck_assert_ptr_null(strstr(f.cb_url, "admin-secret")); /* no token in a URL */
    /* The API answered the result 200, the same again 404, a forged secret 403. */
    for (int i = 0; i < 200 && f.n_cb < 3; i++)
        run_ms(c->base, 10);
    ck_assert_int_eq(f.n_cb, 3);
    ck_assert_int_eq(f.cb_codes[0], 200);
    ck_assert_int_eq(f.cb_codes[1], 404);
    ck_assert_int_eq(f.cb_codes[2], 403);
    struct coord_backend_stats st;
    coord_backend_stats(c->backend, &st);
    ck_assert_uint_eq(st.callbacks, 1);
    ck_assert_uint_eq(st.callbacks_refused, 2);
    coord_http_free(h);
    fake_stop(&f);
    fake_coord_free(c);
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
    tcase_add_test(tc, openfaas_async_callback_completes_exactly_once);
    tcase_add_test(tc, openfaas_async_failures_timeouts_and_late_callbacks);
    tcase_add_test(tc, openfaas_async_through_the_api);
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
