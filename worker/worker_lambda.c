/* worker_lambda.c: the Lambda Runtime API loop (see worker_lambda.h). */
#include "worker_lambda.h"
#include "worker_invoke.h"

#include <ctype.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_util.h"

#define LAMBDA_PREFIX "/2018-06-01/runtime"
/* Lambda's own cap on a synchronous event: bodies up to it are read (and refused when over
 * SMLT_MAX_INVOCATION), anything past it is dropped unread. */
#define LAMBDA_MAX_EVENT (6u << 20)
#define LAMBDA_POST_TIMEOUT_S 30
/* GET next failures in a row (connection refused, a 5xx) before the loop gives up. */
#define LAMBDA_NEXT_TRIES 5
/* Of Lambda's time, kept for posting the response. */
#define LAMBDA_POST_RESERVE_S 0.25
/* A deadline header below this (2001-09-09 in epoch ms) is not an epoch time. */
#define LAMBDA_MIN_EPOCH_MS 1000000000000ull

/* Set by SIGTERM; 1 while an invocation runs (the signal then stops the slice, not the
 * process). */
static atomic_int lambda_stop;
static atomic_int lambda_busy;

struct lambda {
    CURL *h;
    char base[320];     /* http://HOST:PORT */
    char *body;         /* the last response body, NUL-terminated */
    size_t len, cap;
    int too_big;        /* the body went past SMLT_MAX_INVOCATION (the rest was dropped) */
    int has_nul;        /* the body holds a NUL byte */
    char req_id[128];   /* the last GET next's headers ("" when absent) */
    char deadline[32];
    char trace[512];
    int warned_deadline;
};

static void on_sigterm(int sig)
{
    (void)sig;
    if (!atomic_load(&lambda_busy))
        _exit(0);
    atomic_store(&lambda_stop, 1);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct lambda *L = arg;
    size_t k = size * n;
    if (memchr(p, '\0', k))
        L->has_nul = 1;
    if (L->len + k > SMLT_MAX_INVOCATION) {
        L->too_big = 1;
        return L->len + k > LAMBDA_MAX_EVENT ? 0 : k;
    }
    memcpy(L->body + L->len, p, k);
    L->len += k;
    L->body[L->len] = '\0';
    return k;
}

/* Copies a header's value (trimmed) into out when the line is "name: value". */
static void header_take(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (n <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return;
    const char *v = line + nl + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    size_t k = (size_t)(end - v) < outlen - 1 ? (size_t)(end - v) : outlen - 1;
    memcpy(out, v, k);
    out[k] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct lambda *L = arg;
    size_t k = size * n;
    header_take(p, k, "Lambda-Runtime-Aws-Request-Id", L->req_id, sizeof L->req_id);
    header_take(p, k, "Lambda-Runtime-Deadline-Ms", L->deadline, sizeof L->deadline);
    header_take(p, k, "Lambda-Runtime-Trace-Id", L->trace, sizeof L->trace);
    return k;
}

/* One request to the Runtime API: GET when body is NULL, else POST it with the extra header
 * hdr (may be NULL). timeout_s 0: none. Returns the HTTP status, or -1 with a message in err. */
static long lambda_call(struct lambda *L, const char *path, const char *body, const char *hdr,
                        long timeout_s, char *err, size_t errlen)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", L->base, path);
    L->len = 0;
    L->body[0] = '\0';
    L->too_big = L->has_nul = 0;
    L->req_id[0] = L->deadline[0] = L->trace[0] = '\0';
    curl_easy_reset(L->h);
    curl_easy_setopt(L->h, CURLOPT_URL, url);
    curl_easy_setopt(L->h, CURLOPT_NOPROXY, "*"); /* the Runtime API is local to the sandbox */
    curl_easy_setopt(L->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(L->h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(L->h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(L->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(L->h, CURLOPT_WRITEDATA, L);
    curl_easy_setopt(L->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(L->h, CURLOPT_HEADERDATA, L);
    struct curl_slist *hs = NULL;
    if (body) {
        hs = curl_slist_append(hs, "Content-Type: application/json");
        hs = curl_slist_append(hs, "Expect:"); /* no 100-continue round trip */
        if (hdr)
            hs = curl_slist_append(hs, hdr);
        curl_easy_setopt(L->h, CURLOPT_HTTPHEADER, hs);
        curl_easy_setopt(L->h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(L->h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode cc = curl_easy_perform(L->h);
    curl_slist_free_all(hs);
    long status = -1;
    if (cc == CURLE_OK)
        curl_easy_getinfo(L->h, CURLINFO_RESPONSE_CODE, &status);
    else
        smlt_set_err(err, errlen, "%s %s: %s", body ? "POST" : "GET", url,
                     curl_easy_strerror(cc));
    return status;
}

/* {"errorMessage": msg, "errorType": type}; NULL when out of memory. */
static char *error_body(const char *type, const char *msg)
{
    json_t *o = json_pack("{s:s, s:s}", "errorMessage", msg, "errorType", type);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* POSTs an error of type (msg says what) to path. Returns the HTTP status or -1. */
static long lambda_post_error(struct lambda *L, const char *path, const char *type,
                              const char *msg)
{
    char *body = error_body(type, msg), hdr[160], err[512];
    snprintf(hdr, sizeof hdr, "Lambda-Runtime-Function-Error-Type: %s", type);
    long st = lambda_call(L, path, body ? body : "{}", hdr, LAMBDA_POST_TIMEOUT_S, err,
                          sizeof err);
    if (st < 0)
        log_error("%s", err);
    else if (st != 202)
        log_warn("POST %s: the Runtime API answered %ld", path, st);
    free(body);
    return st;
}

/* An init failure: reported to init/error (best effort) and logged. Returns 1, the exit code. */
static int lambda_init_failed(struct lambda *L, const char *msg)
{
    log_error("init: %s", msg);
    if (L->h)
        lambda_post_error(L, LAMBDA_PREFIX "/init/error", "Smlt.InitError", msg);
    return 1;
}

/* 1 when s is host:port with a numeric port and nothing that would change the URL. */
static int api_valid(const char *s)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || colon == s || strlen(s) > 255 || !colon[1])
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-:[]", *p))
            return 0;
    for (const char *p = colon + 1; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    return 1;
}

/* 1 when id can go into a URL path as is (Lambda's are UUIDs). */
static int req_id_valid(const char *id)
{
    if (!id[0])
        return 0;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
            return 0;
    return 1;
}

/* The platform's limits for the event just received (o zeroed when it sent no usable
 * deadline). */
static void lambda_limits(struct lambda *L, struct worker_invoke_opts *o)
{
    memset(o, 0, sizeof *o);
    o->stop = &lambda_stop;
    char *end = NULL;
    unsigned long long ms = L->deadline[0] ? strtoull(L->deadline, &end, 10) : 0;
    if (!ms || !end || *end || ms < LAMBDA_MIN_EPOCH_MS) {
        if (!L->warned_deadline++)
            log_warn("invocation %s: Lambda-Runtime-Deadline-Ms \"%s\" is not an epoch time in "
                     "ms; only the coordinator's deadline applies",
                     L->req_id, L->deadline);
        return;
    }
    double now = smlt_now_mono();
    double left = (double)ms / 1000.0 - smlt_now_unix();
    double margin = left * 0.05 > 1.0 ? left * 0.05 : 1.0;
    /* Too close already: no step starts, the response goes at once ("time_up"). Waiting for
     * the coordinator (its hello, retrying Done) may use the margin but for the time the
     * response's POST takes. */
    double post = margin / 2 < LAMBDA_POST_RESERVE_S ? margin / 2 : LAMBDA_POST_RESERVE_S;
    o->deadline = left > margin ? now + left - margin : now;
    o->respond_by = left > post ? now + left - post : now;
}

/* Serves the event just received and posts its response or error. Returns 0, or 1 when the
 * Runtime API said to stop (a 500: its state cannot be recovered). */
static int lambda_serve(struct lambda *L, struct worker_invoke *inv)
{
    char req[sizeof L->req_id], path[256], err[512];
    snprintf(req, sizeof req, "%s", L->req_id);
    struct worker_invoke_opts o;
    lambda_limits(L, &o);
    if (L->trace[0])
        setenv("_X_AMZN_TRACE_ID", L->trace, 1);
    else
        unsetenv("_X_AMZN_TRACE_ID");
    long st;
    char *resp = NULL;
    int rc = SMLT_EINVAL;
    if (L->too_big)
        smlt_set_err(err, sizeof err, "invocation payload is over the limit of %u bytes",
                     SMLT_MAX_INVOCATION);
    else if (L->has_nul)
        smlt_set_err(err, sizeof err, "invocation payload holds a NUL byte");
    else
        rc = worker_invoke_serve(inv, L->body, &o, &resp, err, sizeof err);
    if (rc == SMLT_EINVAL || !resp) {
        log_warn("invocation %s: %s", req, rc == SMLT_EINVAL ? err : "out of memory");
        snprintf(path, sizeof path, LAMBDA_PREFIX "/invocation/%s/error", req);
        int bad = rc == SMLT_EINVAL;
        st = lambda_post_error(L, path, bad ? "Smlt.InvalidEvent" : "Smlt.OutOfMemory",
                               bad ? err : "out of memory");
    } else {
        snprintf(path, sizeof path, LAMBDA_PREFIX "/invocation/%s/response", req);
        st = lambda_call(L, path, resp, NULL, LAMBDA_POST_TIMEOUT_S, err, sizeof err);
        if (st < 0)
            log_error("invocation %s: %s", req, err);
        else if (st != 202)
            log_warn("invocation %s: the Runtime API answered %ld to the response", req, st);
    }
    free(resp);
    return st == 500;
}

/* Waits for the next event (GET next, no timeout). Returns 0 with the event in L, or 1 when
 * the Runtime API cannot be reached or keeps failing (err says why). */
static int lambda_next(struct lambda *L, char *err, size_t errlen)
{
    for (int tries = 1;; tries++) {
        long st = lambda_call(L, LAMBDA_PREFIX "/invocation/next", NULL, NULL, 0, err, errlen);
        if (st == 200 && req_id_valid(L->req_id))
            return 0;
        if (st == 200)
            smlt_set_err(err, errlen, "GET next: an event without a usable "
                         "Lambda-Runtime-Aws-Request-Id (\"%s\")", L->req_id);
        else if (st >= 0)
            smlt_set_err(err, errlen, "GET next: the Runtime API answered %ld", st);
        if (st == 500 || tries >= LAMBDA_NEXT_TRIES)
            return 1;
        log_warn("%s; trying again", err);
        struct timespec ts = {0, 100000000L * tries};
        nanosleep(&ts, NULL);
    }
}

static int lambda_open(struct lambda *L, const char *api)
{
    snprintf(L->base, sizeof L->base, "http://%s", api);
    L->body = malloc(SMLT_MAX_INVOCATION + 1);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !L->body)
        return -1;
    L->h = curl_easy_init();
    return L->h ? 0 : -1;
}

static void lambda_close(struct lambda *L)
{
    if (L->h)
        curl_easy_cleanup(L->h);
    free(L->body);
}

/* The loop: init, then event after event. Returns the exit code. */
static int lambda_loop(struct lambda *L, struct worker_invoke *inv, const char *init_err)
{
    char err[512];
    if (init_err)
        return lambda_init_failed(L, init_err);
    if (lambda_next(L, err, sizeof err))
        return lambda_init_failed(L, err);
    for (unsigned served = 1;; served++) {
        atomic_store(&lambda_busy, 1);
        int over = lambda_serve(L, inv);
        atomic_store(&lambda_busy, 0);
        if (atomic_load(&lambda_stop)) {
            log_info("SIGTERM: exiting after %u invocations", served);
            return 0;
        }
        if (over) {
            log_error("the Runtime API answered 500: exiting");
            return 1;
        }
        if (lambda_next(L, err, sizeof err)) {
            log_error("%s; exiting", err);
            return 1;
        }
    }
}

int worker_lambda_main(const char *api)
{
    const char *lvl = getenv("SMLT_LOG_LEVEL");
    int level = lvl && lvl[0] ? smlt_log_parse_level(lvl) : SMLT_LOG_INFO;
    smlt_log_init("smlt-worker", level < 0 ? SMLT_LOG_INFO : level);
    if (!api)
        api = getenv("AWS_LAMBDA_RUNTIME_API");
    if (!api_valid(api)) {
        fprintf(stderr, "smlt-worker: --lambda needs AWS_LAMBDA_RUNTIME_API=host:port (got "
                        "\"%s\")\n", api ? api : "");
        return 2;
    }
    worker_invoke_init_process();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigterm;
    sigaction(SIGTERM, &sa, NULL);
    struct lambda L;
    memset(&L, 0, sizeof L);
    struct worker_invoke *inv = NULL;
    const char *init_err = NULL;
    if (lambda_open(&L, api))
        init_err = "out of memory (the HTTP client)";
    else if (level < 0)
        init_err = "SMLT_LOG_LEVEL must be error, warn, info or debug";
    else if (!(inv = worker_invoke_new()))
        init_err = "out of memory (the worker)";
    else
        log_info("serving the Lambda Runtime API at %s", api);
    int code = lambda_loop(&L, inv, init_err);
    worker_invoke_free(inv);
    lambda_close(&L);
    return code;
}
