/* coord_backend_lambda.c: AWS Lambda through its Invoke API, on the request engine of
 * coord_backend_http.c.
 *
 *   POST {endpoint}/2015-03-31/functions/{name}/invocations[?Qualifier=Q]
 *   X-Amz-Invocation-Type: RequestResponse, X-Amz-Log-Type: Tail
 *
 * signed with SigV4 by libcurl (CURLOPT_AWS_SIGV4 "aws:amz:REGION:lambda"), a session token in
 * x-amz-security-token. The function is named by its plain name, with the version or alias
 * as Qualifier: libcurl signs an ARN in the path differently from AWS (it does not encode it
 * twice), so ARNs are refused with that reason. Credentials: smlt_aws.h.
 *
 * The answer: 200 is the function's response (the worker's response line), unless
 * X-Amz-Function-Error says the function failed ("Task timed out" is the time limit). 429
 * (TooManyRequestsException) and 5xx are the platform's pushback, retried by the engine; other
 * 4xx are refusals (a bad signature, no such function), which no retry mends. What Lambda
 * billed comes from the tail of the log it returns (X-Amz-Log-Result, base64): the REPORT
 * line's "Billed Duration" at its "Memory Size" (the function's, whatever the job's
 * platform.memory_mb says), and "Init Duration" only on a cold start. */
#include "coord_backend_http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "smlt_aws.h"
#include "smlt_log.h"
#include "smlt_util.h"

#define LAMBDA_REFRESH_S 300.0 /* refetch container credentials this long before they expire */

struct lam {
    struct smlt_aws_creds creds;
    int have_creds;
    uint64_t fetching;          /* the container endpoint request running, 0 when none */
    char cont_url[512], cont_auth[1024];
    char cont_hdr[1100];
    char sigv4[160];
    char tok_hdr[2100];
    const char *hdrs[6];
    char err[900];
};

static void on_creds(const struct coord_curl_resp *r, void *arg)
{
    struct hb *b = arg;
    struct lam *l = b->plat_state;
    l->fetching = 0;
    struct smlt_aws_creds c;
    char err[256] = "";
    if (r->status != 200 || smlt_aws_parse_container(r->body, &c, err, sizeof err) != 0) {
        snprintf(l->err, sizeof l->err, "container credentials endpoint %s: %s", l->cont_url,
                 r->status != 200 ? (r->status ? "an HTTP error" : r->error) : err);
        log_warn("lambda: %s", l->err);
        return;
    }
    l->creds = c;
    l->have_creds = 1;
    l->err[0] = '\0';
    log_info("lambda: credentials from the container endpoint, expiring in %.0f s",
             c.expires_unix > 0 ? c.expires_unix - smlt_now_unix() : -1.0);
}

static void fetch_creds(struct hb *b)
{
    struct lam *l = b->plat_state;
    if (l->fetching || !l->cont_url[0])
        return;
    const char *hdrs[] = {l->cont_auth[0] ? l->cont_hdr : NULL, NULL};
    struct coord_curl_req q = {.method = "GET", .url = l->cont_url, .headers = hdrs,
                               .timeout_ms = 5000, .max_body = 65536};
    l->fetching = coord_curl_request(b->cc, &q, on_creds, b);
}

static int lambda_prepare(struct hb *b, struct hinv *v, struct coord_curl_req *q, char *detail,
                          size_t len)
{
    struct lam *l = b->plat_state;
    double now = smlt_now_unix();
    if (l->cont_url[0] && (!l->have_creds || (l->creds.expires_unix > 0 &&
                                              l->creds.expires_unix - now < LAMBDA_REFRESH_S)))
        fetch_creds(b);
    if (!l->have_creds || (l->creds.expires_unix > 0 && l->creds.expires_unix <= now)) {
        if (l->err[0])
            snprintf(detail, len, "%s", l->err);
        return 1; /* being fetched */
    }
    int n = 0;
    l->hdrs[n++] = "Content-Type: application/json";
    l->hdrs[n++] = "X-Amz-Invocation-Type: RequestResponse";
    l->hdrs[n++] = "X-Amz-Log-Type: Tail";
    if (l->creds.session_token[0]) {
        snprintf(l->tok_hdr, sizeof l->tok_hdr, "x-amz-security-token: %s", l->creds.session_token);
        l->hdrs[n++] = l->tok_hdr;
    }
    l->hdrs[n] = NULL;
    q->url = b->url;
    q->headers = l->hdrs;
    q->sigv4 = l->sigv4;
    q->access_key = l->creds.access_key;
    q->secret_key = l->creds.secret_key;
    q->keep[0] = "X-Amz-Function-Error";
    q->keep[1] = "X-Amz-Log-Result";
    q->keep[2] = "x-amzn-ErrorType";
    return 0;
}

/* The REPORT line of the log tail (base64): billed seconds (or -1), the memory size billed at
 * (*mb, 0 when absent), and whether it was a cold start. The tail holds the function's own
 * output too, which may say anything: the REPORT line is the last line that starts with
 * "REPORT RequestId:", and its fields are read up to its end. */
static double billed_from_log(const char *b64, int *cold, uint32_t *mb)
{
    char log[8192];
    *cold = 0;
    *mb = 0;
    if (!b64 || smlt_base64_decode(b64, log, sizeof log) < 0)
        return -1;
    char *rep = NULL;
    for (char *p = log; (p = strstr(p, "REPORT RequestId:")); p++)
        if (p == log || p[-1] == '\n')
            rep = p;
    if (!rep)
        return -1;
    rep[strcspn(rep, "\n")] = '\0';
    *cold = strstr(rep, "Init Duration:") != NULL;
    const char *ms = strstr(rep, "Memory Size:");
    long m = ms ? strtol(ms + strlen("Memory Size:"), NULL, 10) : 0;
    *mb = m >= 128 && m <= 10240 ? (uint32_t)m : 0; /* Lambda's range */
    const char *bd = strstr(rep, "Billed Duration:");
    return bd ? atof(bd + strlen("Billed Duration:")) / 1000.0 : -1;
}

static void lambda_interpret(struct hb *b, const struct coord_curl_resp *r, struct houtcome *o)
{
    const char *ferr = r->keep[0], *etype = r->keep[2];
    int log_cold = 0;
    o->billed_s = billed_from_log(r->keep[1], &log_cold, &o->billed_mb);
    if (r->status == 200 && !ferr) {
        char *line = strndup(r->body, r->body_len);
        size_t n = line ? strlen(line) : 0;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        o->status = COORD_INV_OK;
        o->response = line;
        o->cold = log_cold || (line && hb_resp_cold(line));
        return;
    }
    if (r->status == 200) {
        json_t *e = json_loads(r->body, 0, NULL);
        const char *msg = json_string_value(json_object_get(e, "errorMessage"));
        const char *typ = json_string_value(json_object_get(e, "errorType"));
        int timeout = msg && strstr(msg, "Task timed out");
        o->status = timeout ? COORD_INV_TIMEOUT : COORD_INV_CRASHED;
        snprintf(o->detail, sizeof o->detail, "function error (%s%s%s): %.100s", ferr,
                 typ ? ", " : "", typ ? typ : "", msg ? msg : r->body);
        json_decref(e);
        return;
    }
    if (r->timed_out) {
        o->status = COORD_INV_TIMEOUT;
        snprintf(o->detail, sizeof o->detail, "no answer from Lambda within the time limit");
        return;
    }
    int throttled = r->status == 429 || (etype && strstr(etype, "TooManyRequests"));
    if (r->status)
        snprintf(o->detail, sizeof o->detail, "%s HTTP %ld%s%s: %.100s",
                 throttled ? "throttled:" : "Invoke:", r->status, etype ? " " : "",
                 etype ? etype : "", r->body);
    else
        snprintf(o->detail, sizeof o->detail, "Invoke: no answer: %.130s", r->error);
    o->retry = throttled || r->status == 0 || r->status >= 500;
    o->status = COORD_INV_FAILED;
}

static void lambda_free(struct hb *b)
{
    free(b->plat_state);
    b->plat_state = NULL;
}

static const struct hplat lambda_plat = {"lambda", lambda_prepare, lambda_interpret, lambda_free,
                                          NULL};

static const struct coord_backend_ops lambda_ops = {
    .name = "lambda", .invoke = hb_invoke, .cancel = hb_cancel, .stats = hb_stats,
    .free = hb_free_op};

/* The Invoke URL for conf. Returns a new string or NULL with a message in err. */
static char *invoke_url(const struct coord_backend_lambda_conf *conf, const char *region,
                        char *err, size_t errlen)
{
    if (!conf->function || !conf->function[0] || strchr(conf->function, ':') ||
        strchr(conf->function, '/')) {
        snprintf(err, errlen, "lambda: --function must be the function's plain name (an ARN in "
                              "the path is signed wrongly by libcurl; give the version or alias "
                              "with --qualifier)");
        return NULL;
    }
    char base[512];
    if (conf->endpoint && conf->endpoint[0])
        snprintf(base, sizeof base, "%s", conf->endpoint);
    else
        snprintf(base, sizeof base, "https://lambda.%s.amazonaws.com", region);
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        base[--n] = '\0';
    char *url = NULL;
    int rc = conf->qualifier && conf->qualifier[0]
                 ? asprintf(&url, "%s/2015-03-31/functions/%s/invocations?Qualifier=%s", base,
                            conf->function, conf->qualifier)
                 : asprintf(&url, "%s/2015-03-31/functions/%s/invocations", base, conf->function);
    return rc < 0 ? NULL : url;
}

struct coord_backend *coord_backend_lambda_new(struct event_base *base,
                                               const struct coord_backend_lambda_conf *conf,
                                               char *err, size_t errlen)
{
    char region[64];
    smlt_aws_region(conf->region, region, sizeof region);
    char *url = invoke_url(conf, region, err, errlen);
    if (!url)
        return NULL;
    struct lam *l = calloc(1, sizeof *l);
    struct hb *b = l ? hb_new(base, &lambda_ops, &lambda_plat, conf->concurrency, 0) : NULL;
    if (!b) {
        free(l);
        free(url);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->url = url;
    b->plat_state = l;
    snprintf(l->sigv4, sizeof l->sigv4, "aws:amz:%s:lambda", region);
    if (smlt_aws_static_creds(&l->creds) == 0) {
        l->have_creds = 1;
    } else if (smlt_aws_container_endpoint(l->cont_url, sizeof l->cont_url, l->cont_auth,
                                            sizeof l->cont_auth)) {
        snprintf(l->cont_hdr, sizeof l->cont_hdr, "Authorization: %s", l->cont_auth);
        fetch_creds(b);
    } else {
        hb_free(b);
        snprintf(err, errlen, "lambda: no AWS credentials: set AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials "
                              "(AWS_PROFILE), or run where the container credentials endpoint "
                              "is set (AWS_CONTAINER_CREDENTIALS_*_URI)");
        return NULL;
    }
    log_info("lambda: invoking %s in %s (credentials: %s)", url, region,
             l->have_creds ? l->creds.source : "container endpoint, being fetched");
    return &b->base_;
}
