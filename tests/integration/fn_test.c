/* fn_test.c: see fn_test.h. */
#include "fn_test.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>

#include "daemon.h"
#include "smlt_util.h"

#define RAPI_PREFIX "/2018-06-01/runtime"
#define RAPI_MAX_RECS 512
#define RAPI_MAX_EVENTS 256
#define RAPI_MAX_WAITERS 8

/* ---- the relay (the coordinator's `smlt-worker --invoke`) -------------------------------- */

struct buf {
    char *p;
    size_t n;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    char *q = realloc(b->p, b->n + size * n + 1);
    if (!q)
        return 0;
    memcpy(q + b->n, p, size * n);
    b->p = q;
    b->n += size * n;
    b->p[b->n] = '\0';
    return size * n;
}

/* POSTs line to url; returns the HTTP status (-1: no answer) and the body in *b. */
static long relay_post(CURL *h, const char *url, const char *line, struct buf *b)
{
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    hs = curl_slist_append(hs, "Expect:");
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, line);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    long code = -1;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hs);
    return code;
}

int fn_shim_main(void)
{
    const char *url = getenv("SMLT_TEST_RELAY_URL"), *log = getenv("SMLT_TEST_RELAY_LOG");
    if (!url) {
        fprintf(stderr, "relay: SMLT_TEST_RELAY_URL is not set\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *h = curl_easy_init();
    static char line[70000];
    while (h && fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        struct buf b = {0};
        long code = relay_post(h, url, line, &b);
        if (code < 0) {
            fprintf(stderr, "relay: %s cannot be reached\n", url);
            return 1;
        }
        char *body = b.p ? b.p : "";
        body[strcspn(body, "\n")] = '\0';
        FILE *f = log ? fopen(log, "a") : NULL;
        if (f) {
            fprintf(f, "%ld %s\n", code, body);
            fclose(f);
        }
        if (code == 200)
            printf("%s\n", body);
        else
            printf("{\"status\":\"failed\",\"error\":\"relay: HTTP %ld\"}\n", code);
        fflush(stdout);
        free(b.p);
    }
    curl_easy_cleanup(h);
    return 0;
}

int fn_bin_dir(const char *root, char *dir, size_t dirlen)
{
    char self[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    snprintf(dir, dirlen, "%s/bin.XXXXXX", root);
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/smlt-worker", dir);
    if (symlink(self, path) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/smlt-ps", dir);
    return symlink(test_bin("smlt-ps"), path);
}

void fn_bin_dir_rm(const char *dir)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/smlt-worker", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/smlt-ps", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- the coordinator --------------------------------------------------------------------- */

int fn_coord_start(struct fn_coord *c, const char *root, const char *relay_url)
{
    memset(c, 0, sizeof *c);
    if (fn_bin_dir(root, c->bin_dir, sizeof c->bin_dir) != 0)
        return -1;
    setenv("SMLT_TEST_RELAY_URL", relay_url, 1);
    snprintf(c->data_dir, sizeof c->data_dir, "%s/data.XXXXXX", root);
    if (!mkdtemp(c->data_dir))
        return -1;
    const char *extra[] = {"--bin-dir", c->bin_dir, NULL};
    return ct_coord_start(&c->d, c->data_dir, extra);
}

void fn_coord_stop(struct fn_coord *c)
{
    test_daemon_stop(&c->d);
    if (c->bin_dir[0])
        fn_bin_dir_rm(c->bin_dir);
    if (c->data_dir[0])
        ct_rm_rf(c->data_dir);
    c->bin_dir[0] = c->data_dir[0] = '\0';
}

char *fn_submit(const struct fn_coord *c, const char *model, const char *dataset, int epochs,
                int time_limit_s, char *err, size_t errlen)
{
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"model\": \"%s\", \"dataset\": \"%s\", \"epochs\": %d, \"workers\": 1, "
             "\"shards\": 1, \"batch_size\": 32, \"optimizer\": {\"lr\": 0.05}, "
             "\"platform\": {\"time_limit_s\": %d}}",
             model, dataset, epochs, time_limit_s);
    return ct_submit(c->d.port, spec, err, errlen);
}

json_t *fn_wait_succeeded(struct fn_coord *c, const char *id, double bar, void (*dump)(void))
{
    json_t *j = ct_wait_job(c->d.port, id, 300);
    if (!j || strcmp(ct_str(j, "state"), "succeeded") != 0) {
        char *s = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
        fprintf(stderr, "job: %s\n", s ? s : "(none)");
        free(s);
        test_daemon_dump_log(&c->d);
        if (dump)
            dump();
    }
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(ct_str(j, "state"), "succeeded");
    ck_assert_int_eq((long long)ct_num(j, "step"), (long long)ct_num(j, "total_steps"));
    ck_assert_msg(ct_num(j, "test_accuracy") >= bar, "test accuracy %.4f < %.2f",
                  ct_num(j, "test_accuracy"), bar);
    return j;
}

/* ---- the Runtime API server -------------------------------------------------------------- */

struct rapi_event {
    char id[64];
    char *body;
    struct evhttp_request *relay; /* the shim's request to answer; NULL: pushed by the test */
    double handed;
    unsigned long long deadline_ms;
    int used;
};

struct rapi {
    struct event_base *base;
    struct evhttp *http;
    int port;
    pthread_t th;
    pthread_mutex_t mu;
    /* under mu */
    struct rapi_rec recs[RAPI_MAX_RECS];
    int nrecs, handed;
    double deadline_s, once_s;
    /* loop thread only */
    struct rapi_event events[RAPI_MAX_EVENTS]; /* queued (handed == 0) and in flight */
    unsigned next_id;
    struct evhttp_request *waiters[RAPI_MAX_WAITERS];
    int nwaiters;
};

static void reply(struct evhttp_request *req, int code, const char *body)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    evbuffer_add(out, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, code < 300 ? "OK" : "Error", out);
}

static char *body_of(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    evbuffer_copyout(in, s, n);
    s[n] = '\0';
    return s;
}

/* Hands queued events to waiting GET next requests. */
static void rapi_dispatch(struct rapi *a)
{
    for (int i = 0; i < RAPI_MAX_EVENTS && a->nwaiters > 0; i++) {
        struct rapi_event *e = &a->events[i];
        if (!e->used || e->handed > 0)
            continue;
        struct evhttp_request *req = a->waiters[0];
        memmove(a->waiters, a->waiters + 1, (size_t)--a->nwaiters * sizeof a->waiters[0]);
        pthread_mutex_lock(&a->mu);
        double dl = a->once_s > 0 ? a->once_s : a->deadline_s;
        a->once_s = 0;
        a->handed++;
        pthread_mutex_unlock(&a->mu);
        e->handed = smlt_now_unix();
        e->deadline_ms = (unsigned long long)((e->handed + dl) * 1000.0);
        char v[64];
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Lambda-Runtime-Aws-Request-Id", e->id);
        snprintf(v, sizeof v, "%llu", e->deadline_ms);
        evhttp_add_header(h, "Lambda-Runtime-Deadline-Ms", v);
        evhttp_add_header(h, "Lambda-Runtime-Invoked-Function-Arn",
                          "arn:aws:lambda:us-east-1:000000000000:function:smlt-test");
        snprintf(v, sizeof v, "Root=1-00000000-%s", e->id);
        evhttp_add_header(h, "Lambda-Runtime-Trace-Id", v);
        reply(req, 200, e->body);
    }
}

static void rapi_queue(struct rapi *a, struct evhttp_request *req, int relay)
{
    struct rapi_event *e = NULL;
    for (int i = 0; i < RAPI_MAX_EVENTS && !e; i++)
        if (!a->events[i].used)
            e = &a->events[i];
    char *body = body_of(req);
    if (!e || !body) {
        free(body);
        reply(req, 503, "{\"error\":\"queue full\"}");
        return;
    }
    memset(e, 0, sizeof *e);
    e->used = 1;
    snprintf(e->id, sizeof e->id, "8476a536-e9f4-11e8-9739-%012u", ++a->next_id);
    e->body = body;
    e->relay = relay ? req : NULL;
    if (!relay)
        reply(req, 202, "{}");
    rapi_dispatch(a);
}

static struct rapi_event *event_find(struct rapi *a, const char *id, size_t idlen)
{
    for (int i = 0; i < RAPI_MAX_EVENTS; i++) {
        struct rapi_event *e = &a->events[i];
        if (e->used && e->handed > 0 && strlen(e->id) == idlen && !strncmp(e->id, id, idlen))
            return e;
    }
    return NULL;
}

static void record(struct rapi *a, const char *kind, const struct rapi_event *e,
                   struct evhttp_request *req, char *body)
{
    pthread_mutex_lock(&a->mu);
    if (a->nrecs < RAPI_MAX_RECS) {
        struct rapi_rec *r = &a->recs[a->nrecs];
        memset(r, 0, sizeof *r);
        snprintf(r->kind, sizeof r->kind, "%s", kind);
        const char *t = evhttp_find_header(evhttp_request_get_input_headers(req),
                                           "Lambda-Runtime-Function-Error-Type");
        snprintf(r->error_type, sizeof r->error_type, "%s", t ? t : "");
        r->body = body;
        r->at = smlt_now_unix();
        if (e) {
            snprintf(r->id, sizeof r->id, "%s", e->id);
            r->handed = e->handed;
            r->deadline_ms = e->deadline_ms;
            r->relayed = e->relay != NULL;
        }
        a->nrecs++;
        body = NULL;
    }
    pthread_mutex_unlock(&a->mu);
    free(body);
}

/* POST .../invocation/ID/response or /error. */
static void rapi_answer(struct rapi *a, struct evhttp_request *req, const char *rest)
{
    const char *slash = strchr(rest, '/');
    struct rapi_event *e = slash ? event_find(a, rest, (size_t)(slash - rest)) : NULL;
    int is_err = slash && !strcmp(slash, "/error");
    if (!e || (!is_err && strcmp(slash, "/response") != 0)) {
        record(a, "unknown_id", NULL, req, body_of(req));
        reply(req, 400,
              "{\"errorMessage\":\"Invalid request ID\",\"errorType\":\"InvalidRequestID\"}");
        return;
    }
    char *body = body_of(req);
    if (e->relay) {
        char line[1024];
        if (is_err)
            snprintf(line, sizeof line, "{\"status\":\"failed\",\"error\":\"function error\"}");
        reply(e->relay, 200, is_err ? line : body ? body : "");
    }
    record(a, is_err ? "error" : "response", e, req, body);
    free(e->body);
    memset(e, 0, sizeof *e);
    reply(req, 202, "{\"status\":\"OK\"}");
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct rapi *a = arg;
    const char *uri = evhttp_request_get_uri(req);
    int post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
    const char *inv = RAPI_PREFIX "/invocation/";
    if (!strcmp(uri, RAPI_PREFIX "/invocation/next")) {
        if (a->nwaiters >= RAPI_MAX_WAITERS) {
            reply(req, 503, "{}");
            return;
        }
        a->waiters[a->nwaiters++] = req;
        rapi_dispatch(a);
    } else if (post && !strncmp(uri, inv, strlen(inv))) {
        rapi_answer(a, req, uri + strlen(inv));
    } else if (post && !strcmp(uri, RAPI_PREFIX "/init/error")) {
        record(a, "init_error", NULL, req, body_of(req));
        reply(req, 202, "{\"status\":\"OK\"}");
    } else if (post && (!strcmp(uri, "/test/relay") || !strcmp(uri, "/test/push"))) {
        rapi_queue(a, req, !strcmp(uri, "/test/relay"));
    } else {
        reply(req, 404, "{}");
    }
}

static void *rapi_main(void *arg)
{
    struct rapi *a = arg;
    event_base_dispatch(a->base);
    return NULL;
}

struct rapi *rapi_start(double deadline_s)
{
    evthread_use_pthreads();
    struct rapi *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    pthread_mutex_init(&a->mu, NULL);
    a->deadline_s = deadline_s;
    a->base = event_base_new();
    a->http = a->base ? evhttp_new(a->base) : NULL;
    struct evhttp_bound_socket *s =
        a->http ? evhttp_bind_socket_with_handle(a->http, "127.0.0.1", 0) : NULL;
    if (!s) {
        rapi_stop(a);
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &sl);
    a->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    evhttp_set_gencb(a->http, on_request, a);
    if (pthread_create(&a->th, NULL, rapi_main, a) != 0) {
        rapi_stop(a);
        return NULL;
    }
    return a;
}

int rapi_port(const struct rapi *a)
{
    return a->port;
}

void rapi_set_deadline(struct rapi *a, double deadline_s, double once_s)
{
    pthread_mutex_lock(&a->mu);
    a->deadline_s = deadline_s;
    a->once_s = once_s;
    pthread_mutex_unlock(&a->mu);
}

int rapi_push(struct rapi *a, const char *body)
{
    CURL *h = curl_easy_init();
    struct buf b = {0};
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/test/push", a->port);
    long code = h ? relay_post(h, url, body, &b) : -1;
    free(b.p);
    if (h)
        curl_easy_cleanup(h);
    return code == 202 ? 0 : -1;
}

int rapi_count(struct rapi *a)
{
    pthread_mutex_lock(&a->mu);
    int n = a->nrecs;
    pthread_mutex_unlock(&a->mu);
    return n;
}

int rapi_handed(struct rapi *a)
{
    pthread_mutex_lock(&a->mu);
    int n = a->handed;
    pthread_mutex_unlock(&a->mu);
    return n;
}

const struct rapi_rec *rapi_rec(struct rapi *a, int i)
{
    return i >= 0 && i < rapi_count(a) ? &a->recs[i] : NULL;
}

int rapi_wait(struct rapi *a, const char *kind, int n, double timeout_s)
{
    double until = smlt_now_mono() + timeout_s;
    for (;;) {
        int have = 0, total = rapi_count(a);
        for (int i = 0; i < total; i++)
            have += !kind || !strcmp(a->recs[i].kind, kind);
        if (have >= n || smlt_now_mono() >= until)
            return have;
        struct timespec ts = {0, 20000000L};
        nanosleep(&ts, NULL);
    }
}

void rapi_stop(struct rapi *a)
{
    if (!a)
        return;
    if (a->th) {
        event_base_loopexit(a->base, NULL);
        pthread_join(a->th, NULL);
    }
    if (a->http)
        evhttp_free(a->http);
    if (a->base)
        event_base_free(a->base);
    for (int i = 0; i < RAPI_MAX_EVENTS; i++)
        free(a->events[i].body);
    for (int i = 0; i < a->nrecs; i++)
        free(a->recs[i].body);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
