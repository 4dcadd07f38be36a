/* test_platforms.c: the demo job on the coordinator's network platform backends, end to end.
 *
 * The workers are real `smlt-worker --http` instances (two processes, --max-inflight 2 each,
 * on loopback port 0), the coordinator runs with `--platform openfaas` or `--platform
 * knative` (coordinator/coord_backend_http.c: libcurl on its loop), and the shards are its own
 * local smlt-ps processes:
 *   - openfaas: the coordinator posts to a gateway of the test's own
 *     (POST /function/smlt-worker), which routes each invocation to an instance with a free
 *     slot and answers 429 when none has one (the platform's pushback, which the backend
 *     retries with backoff);
 *   - openfaas, asynchronously (--openfaas-async): the gateway of the test's own takes POST
 *     /async-function/smlt-worker as OpenFaaS's gateway and queue-worker do: 202 Accepted with
 *     an X-Call-Id at once (the first submission gets 503, which the backend retries), the
 *     invocation queued until an instance has a free slot, run there, and its response posted
 *     to the X-Callback-Url with X-Call-Id, X-Function-Status, X-Function-Name and
 *     X-Duration-Seconds. After the first result it sends that callback again (the coordinator
 *     must refuse it: 404) and once with a forged secret (403);
 *   - knative: the coordinator posts to the service URL, here the same router standing in for
 *     Knative's activator (POST /).
 * The demo job (the Fashion-MNIST MLP 784-256-128-10, 4 workers, 2 shards, BSP, momentum, a
 * target of 88% test accuracy; a 4 s function time limit, 1 s in the quick pass whose job is
 * shorter, so that slices end and warm instances serve the continuations) must succeed with every step applied once by every
 * shard; a job naming another platform is refused. In the quick (sanitizer) pass the bar is 80% on a
 * slice of the data. Everything started is stopped by its pid. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "coord_test.h"
#include "rpc_conn.h"

#define NINST 2
#define SLOTS 2

static char root[256];
static char dataset[256];
static char data_dir[300];
static struct test_daemon coord;
static struct test_daemon inst[NINST];
static int inst_port[NINST]; /* where the router sends each instance's invocations */

/* ---- the router: the gateway (or activator) of the test's own ---------------------------- */

/* An asynchronous invocation the router has accepted (202), waiting for a free slot. */
struct pending {
    struct evbuffer *body;
    char callback[600], call_id[32];
    double t_run;            /* when it went to an instance */
    struct router *r;
    int k;
    struct pending *next;
};

struct router {
    struct event_base *base;
    struct evhttp *http;
    int busy[NINST];
    int port;
    pthread_t th;
    int stop_fd[2];
    const char *path;        /* what the coordinator must POST to */
    int async;               /* OpenFaaS's /async-function: 202, queue, callback */
    struct evhttp_connection **conns; /* every connection made, freed when the router stops */
    int nconns;
    struct pending *qhead, *qtail;
    int replays;             /* the first result taken was sent again (1), then forged (2) */
    atomic_int cb_pending;   /* callbacks posted, not answered yet */
    /* counters (loop thread; read after it stops) */
    int routed, pushed_back, refused;
    int accepted, called_back, cb_ok, cb_other, dup_refused, forged_refused, token_in_url;
};

struct fwd {
    struct router *r;
    struct evhttp_request *req;
    int k;
};

static void on_backend(struct evhttp_request *resp, void *arg)
{
    struct fwd *f = arg;
    struct router *r = f->r;
    r->busy[f->k]--;
    struct evbuffer *out = evbuffer_new();
    int code = resp ? evhttp_request_get_response_code(resp) : 502;
    if (resp)
        evbuffer_add_buffer(out, evhttp_request_get_input_buffer(resp));
    evhttp_send_reply(f->req, code ? code : 502, "routed", out);
    evbuffer_free(out);
    free(f);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A connection from the router's loop, freed when the router stops. */
static struct evhttp_connection *router_conn(struct router *r, const char *host, int port)
{
    struct evhttp_connection *conn =
        evhttp_connection_base_new(r->base, NULL, host, (unsigned short)port);
    evhttp_connection_set_timeout(conn, 900);
    r->conns = realloc(r->conns, (size_t)(r->nconns + 1) * sizeof *r->conns);
    ck_assert_ptr_nonnull(r->conns);
    r->conns[r->nconns++] = conn;
    return conn;
}

/* A callback the router posts, as the queue-worker does: the coordinator's answer to it is
 * checked by kind (0: a result; 1: the same result again; 2: with a forged secret). */
struct cb {
    struct router *r;
    int replay;
    char url[600], call_id[32], status[8];
    char *body;
    size_t len;
    double dur_s;
};

static void cb_post(struct cb *x);

static void on_callback_answer(struct evhttp_request *resp, void *arg)
{
    struct cb *x = arg;
    struct router *r = x->r;
    int code = resp ? evhttp_request_get_response_code(resp) : -1;
    atomic_fetch_sub(&r->cb_pending, 1);
    if (x->replay == 1)
        r->dup_refused += code == 404;
    else if (x->replay == 2)
        r->forged_refused += code == 403;
    else
        code == 200 ? r->cb_ok++ : r->cb_other++;
    if ((code == 200 && x->replay == 0 && !r->replays) || x->replay == 1) {
        /* The first result taken: the same callback again, then with its secret's last digit
         * changed. The coordinator must refuse both. */
        r->replays = ++x->replay;
        if (x->replay == 2) {
            size_t n = strlen(x->url);
            x->url[n - 1] = x->url[n - 1] == 'a' ? 'b' : 'a';
        }
        cb_post(x);
        return;
    }
    free(x->body);
    free(x);
}

/* Posts x (taken) to its URL. */
static void cb_post(struct cb *x)
{
    struct router *r = x->r;
    struct evhttp_uri *u = evhttp_uri_parse(x->url);
    ck_assert_msg(u && evhttp_uri_get_host(u) && evhttp_uri_get_port(u) > 0, "%s", x->url);
    struct evhttp_connection *conn = router_conn(r, evhttp_uri_get_host(u), evhttp_uri_get_port(u));
    struct evhttp_request *rq = evhttp_request_new(on_callback_answer, x);
    struct evkeyvalq *h = evhttp_request_get_output_headers(rq);
    char dur[32];
    snprintf(dur, sizeof dur, "%f", x->dur_s);
    evhttp_add_header(h, "Host", evhttp_uri_get_host(u));
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "X-Call-Id", x->call_id);
    evhttp_add_header(h, "X-Function-Status", x->status);
    evhttp_add_header(h, "X-Function-Name", "smlt-worker");
    evhttp_add_header(h, "X-Duration-Seconds", dur);
    evbuffer_add(evhttp_request_get_output_buffer(rq), x->body, x->len);
    if (!x->replay)
        r->called_back++;
    atomic_fetch_add(&r->cb_pending, 1);
    ck_assert_int_eq(evhttp_make_request(conn, rq, EVHTTP_REQ_POST, evhttp_uri_get_path(u)), 0);
    evhttp_uri_free(u);
}

static void dispatch(struct router *r);

/* An instance answered an asynchronous invocation: its slot is free, and its result goes to
 * the callback URL. */
static void on_async_done(struct evhttp_request *resp, void *arg)
{
    struct pending *p = arg;
    struct router *r = p->r;
    r->busy[p->k]--;
    int code = resp ? evhttp_request_get_response_code(resp) : 502;
    struct evbuffer *in = resp ? evhttp_request_get_input_buffer(resp) : NULL;
    size_t len = in ? evbuffer_get_length(in) : 0;
    struct cb *x = calloc(1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    x->r = r;
    snprintf(x->url, sizeof x->url, "%s", p->callback);
    snprintf(x->call_id, sizeof x->call_id, "%s", p->call_id);
    snprintf(x->status, sizeof x->status, "%d", code ? code : 502);
    x->body = malloc(len + 1);
    ck_assert_ptr_nonnull(x->body);
    x->len = len;
    if (len)
        evbuffer_remove(in, x->body, len);
    x->dur_s = mono_s() - p->t_run;
    cb_post(x);
    evbuffer_free(p->body);
    free(p);
    dispatch(r);
}

/* The queue-worker: queued invocations to instances with a free slot, oldest first. */
static void dispatch(struct router *r)
{
    while (r->qhead) {
        int k = -1;
        for (int i = 0; i < NINST; i++)
            if (r->busy[i] < SLOTS && (k < 0 || r->busy[i] < r->busy[k]))
                k = i;
        if (k < 0)
            return;
        struct pending *p = r->qhead;
        r->qhead = p->next;
        if (!r->qhead)
            r->qtail = NULL;
        p->k = k;
        p->t_run = mono_s();
        struct evhttp_request *out = evhttp_request_new(on_async_done, p);
        evbuffer_add_buffer(evhttp_request_get_output_buffer(out), p->body);
        evhttp_add_header(evhttp_request_get_output_headers(out), "Content-Type",
                          "application/json");
        evhttp_add_header(evhttp_request_get_output_headers(out), "Host", "127.0.0.1");
        r->busy[k]++;
        r->routed++;
        struct evhttp_connection *conn = router_conn(r, "127.0.0.1", inst_port[k]);
        ck_assert_int_eq(evhttp_make_request(conn, out, EVHTTP_REQ_POST, "/"), 0);
    }
}

/* POST /async-function/NAME: 202 with an X-Call-Id at once, the invocation queued. */
static void on_async(struct router *r, struct evhttp_request *req)
{
    const char *cb = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Callback-Url");
    if (!cb || strlen(cb) >= sizeof ((struct pending *)0)->callback) {
        r->refused++;
        evhttp_send_reply(req, 400, "no X-Callback-Url", NULL);
        return;
    }
    if (r->accepted == 0 && r->pushed_back == 0) {
        r->pushed_back++; /* the platform's pushback, once: the backend must retry */
        evhttp_send_reply(req, 503, "the queue is not ready", NULL);
        return;
    }
    r->token_in_url += strstr(cb, CT_ADMIN) != NULL;
    struct pending *p = calloc(1, sizeof *p);
    ck_assert_ptr_nonnull(p);
    p->r = r;
    p->body = evbuffer_new();
    evbuffer_add_buffer(p->body, evhttp_request_get_input_buffer(req));
    snprintf(p->callback, sizeof p->callback, "%s", cb);
    snprintf(p->call_id, sizeof p->call_id, "call-%04d", ++r->accepted);
    if (r->qtail)
        r->qtail->next = p;
    else
        r->qhead = p;
    r->qtail = p;
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Call-Id", p->call_id);
    evhttp_send_reply(req, 202, "Accepted", NULL);
    dispatch(r);
}

static void on_route(struct evhttp_request *req, void *arg)
{
    struct router *r = arg;
    const char *uri = evhttp_request_get_uri(req);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST || strcmp(uri, r->path)) {
        r->refused++;
        evhttp_send_reply(req, 404, "no such function", NULL);
        return;
    }
    if (r->async) {
        on_async(r, req);
        return;
    }
    int k = -1;
    for (int i = 0; i < NINST; i++)
        if (r->busy[i] < SLOTS && (k < 0 || r->busy[i] < r->busy[k]))
            k = i;
    if (k < 0) {
        r->pushed_back++;
        evhttp_send_reply(req, 429, "every instance is busy", NULL);
        return;
    }
    struct fwd *f = calloc(1, sizeof *f);
    *f = (struct fwd){r, req, k};
    struct evhttp_request *out = evhttp_request_new(on_backend, f);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    evbuffer_add_buffer(evhttp_request_get_output_buffer(out), in);
    evhttp_add_header(evhttp_request_get_output_headers(out), "Content-Type", "application/json");
    evhttp_add_header(evhttp_request_get_output_headers(out), "Host", "127.0.0.1");
    r->busy[k]++;
    r->routed++;
    /* A connection per invocation: one HTTP/1.1 connection runs its requests one after another,
     * and a slice waiting under BSP for a rank queued behind it would wait forever. */
    struct evhttp_connection *conn = router_conn(r, "127.0.0.1", inst_port[k]);
    if (evhttp_make_request(conn, out, EVHTTP_REQ_POST, "/") != 0) {
        r->busy[k]--;
        evhttp_send_reply(req, 502, "cannot reach the instance", NULL);
        free(f);
    }
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static void *router_run(void *arg)
{
    struct router *r = arg;
    event_base_dispatch(r->base);
    return NULL;
}

static void router_start(struct router *r, const char *path, int async)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    r->async = async;
    atomic_init(&r->cb_pending, 0);
    r->base = event_base_new();
    r->http = evhttp_new(r->base);
    evhttp_set_timeout(r->http, 900);
    int fd = rpc_net_listen("127.0.0.1:0", 64, &r->port);
    ck_assert_int_ge(fd, 0);
    ck_assert_ptr_nonnull(evhttp_accept_socket_with_handle(r->http, fd));
    evhttp_set_gencb(r->http, on_route, r);
    ck_assert_int_eq(pipe(r->stop_fd), 0);
    event_base_once(r->base, r->stop_fd[0], EV_READ, on_stop, r->base, NULL);
    ck_assert_int_eq(pthread_create(&r->th, NULL, router_run, r), 0);
}

static void router_stop(struct router *r)
{
    /* The coordinator's answers to the last callbacks may still be on their way. */
    for (int i = 0; i < 100 && atomic_load(&r->cb_pending) > 0; i++)
        usleep(50 * 1000);
    ck_assert_int_eq(write(r->stop_fd[1], "x", 1), 1);
    pthread_join(r->th, NULL);
    for (int i = 0; i < r->nconns; i++)
        evhttp_connection_free(r->conns[i]);
    free(r->conns);
    while (r->qhead) {
        struct pending *p = r->qhead;
        r->qhead = p->next;
        evbuffer_free(p->body);
        free(p);
    }
    evhttp_free(r->http);
    event_base_free(r->base);
    close(r->stop_fd[0]);
    close(r->stop_fd[1]);
}

/* ---- the test ---------------------------------------------------------------------------- */

static void setup(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    snprintf(data_dir, sizeof data_dir, "%s/data.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    char slots[8];
    snprintf(slots, sizeof slots, "%d", SLOTS);
    const char *args[] = {"--http", "--max-inflight", slots, NULL};
    for (int i = 0; i < NINST; i++) {
        ck_assert_int_eq(test_daemon_start(&inst[i], "smlt-worker", args, 600), 0);
        ct_note_dir(root, inst[i].dir);
        inst_port[i] = inst[i].port;
    }
}

static void containers_stop(void);

static void teardown(void)
{
    containers_stop();
    test_daemon_stop(&coord);
    for (int i = 0; i < NINST; i++)
        test_daemon_stop(&inst[i]);
    ct_rm_rf(data_dir);
}

/* The demo job on the running coordinator, to success; checks the shards' counters. label
 * names the case in what it prints. */
static void demo_job(const char *platform, const char *label)
{
    char spec[1024], err[512];
    int quick = ct_quick();
    snprintf(spec, sizeof spec,
             "{\"name\": \"demo-%s\", \"model\": \"mlp:784-256-128-10\", \"dataset\": \"%s\", "
             "\"workers\": 4, \"shards\": 2, \"max_epochs\": %d, \"target_accuracy\": %.2f, "
             "\"optimizer\": {\"kind\": \"momentum\", \"lr\": 0.05}, "
             "\"platform\": {\"kind\": \"%s\", \"time_limit_s\": %d}}",
             platform, quick ? dataset : CT_FMNIST, quick ? 10 : 30, quick ? 0.80 : 0.88,
             platform, quick ? 1 : 4);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = ct_wait_job(coord.port, id, 600);
    ck_assert_ptr_nonnull(j);
    if (strcmp(ct_str(j, "state"), "succeeded"))
        test_daemon_dump_log(&coord);
    ck_assert_msg(!strcmp(ct_str(j, "state"), "succeeded"), "%s: %s %s", ct_str(j, "state"),
                  ct_str(j, "error"), ct_str(j, "reason"));
    ck_assert_msg(ct_num(j, "test_accuracy") >= (quick ? 0.80 : 0.88), "accuracy %.4f",
                  ct_num(j, "test_accuracy"));
    size_t i;
    json_t *st;
    long long v0 = -1;
    json_array_foreach(json_object_get(j, "ps_stats"), i, st)
    {
        long long v = (long long)ct_num(st, "version");
        if (v0 < 0)
            v0 = v;
        ck_assert_int_eq(v, v0);
        ck_assert_int_eq((long long)ct_num(st, "updates_applied"), v); /* each step once */
    }
    ck_assert_int_eq(json_array_size(json_object_get(j, "ps_stats")), 2);
    const json_t *inv = json_object_get(j, "invocations");
    /* The 4 s time limit cuts slices: continuations, served warm by the same instances. */
    ck_assert(ct_num(inv, "total") > 4 && ct_num(inv, "warm") > 0);
    fprintf(stderr, "test_platforms %s: %.2f%% test accuracy at step %.0f in %.1f s, %.0f "
                    "invocations (%.0f cold), $%.6f\n",
            label, 100 * ct_num(j, "test_accuracy"), ct_num(j, "step"), ct_num(j, "elapsed_s"),
            ct_num(inv, "total"), ct_num(inv, "cold"), ct_num(j, "cost_usd"));
    json_decref(j);
    /* A job for another platform is refused, naming the one served. */
    snprintf(spec, sizeof spec,
             "{\"model\": \"logreg:784-10\", \"dataset\": \"%s\", \"epochs\": 1}", dataset);
    ck_assert_ptr_null(ct_submit(coord.port, spec, err, sizeof err));
    ck_assert_msg(strstr(err, "platform.kind") && strstr(err, platform), "%s", err);
    free(id);
}

START_TEST(demo_on_openfaas)
{
    struct router r;
    router_start(&r, "/function/smlt-worker", 0);
    char gw[64];
    snprintf(gw, sizeof gw, "http://127.0.0.1:%d", r.port);
    const char *extra[] = {"--platform", "openfaas", "--gateway", gw, "--function", "smlt-worker",
                           NULL};
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, extra), 0);
    demo_job("openfaas", "openfaas");
    router_stop(&r);
    fprintf(stderr, "test_platforms openfaas: the gateway routed %d invocations, pushed back %d "
                    "times\n",
            r.routed, r.pushed_back);
    ck_assert_int_gt(r.routed, 4);
    ck_assert_int_eq(r.refused, 0);
}
END_TEST

/* The value of a /metrics sample of the coordinator (-1 when absent). */
static double coord_metric(const char *name)
{
    char *body = NULL;
    ck_assert_int_eq(ct_http(coord.port, "GET", "/metrics", CT_ADMIN, NULL, &body), 200);
    double v = -1;
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n"))
        if (!strncmp(line, name, strlen(name)) && line[strlen(name)] == ' ')
            v = atof(line + strlen(name) + 1);
    free(body);
    return v;
}

START_TEST(demo_on_openfaas_async)
{
    struct router r;
    router_start(&r, "/async-function/smlt-worker", 1);
    char gw[64];
    snprintf(gw, sizeof gw, "http://127.0.0.1:%d", r.port);
    const char *extra[] = {"--platform", "openfaas", "--gateway", gw, "--function", "smlt-worker",
                           "--openfaas-async", NULL};
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, extra), 0);
    demo_job("openfaas", "openfaas async");
    double cbs = coord_metric("smlt_invocation_callbacks_total");
    double refused = coord_metric("smlt_invocation_callbacks_refused_total");
    router_stop(&r);
    fprintf(stderr, "test_platforms openfaas async: the gateway accepted %d invocations (after "
                    "pushing back %d), ran %d and called back %d: %d taken, %d refused; the "
                    "second callback refused %d, the forged secret refused %d; the coordinator "
                    "counted %.0f callbacks taken, %.0f refused\n",
            r.accepted, r.pushed_back, r.routed, r.called_back, r.cb_ok, r.cb_other,
            r.dup_refused, r.forged_refused, cbs, refused);
    ck_assert_int_gt(r.accepted, 4);
    ck_assert_int_eq(r.pushed_back, 1);
    ck_assert_int_eq(r.refused, 0);
    ck_assert_int_eq(r.token_in_url, 0);
    ck_assert_int_eq(r.routed, r.accepted); /* each accepted invocation ran once */
    ck_assert_int_eq(r.cb_other, 0);
    ck_assert_int_eq(r.cb_ok, r.called_back);
    ck_assert_int_eq(r.dup_refused, 1);
    ck_assert_int_eq(r.forged_refused, 1);
    ck_assert_int_eq((int)cbs, r.cb_ok);
    ck_assert_int_eq((int)refused, 2);
}
END_TEST

START_TEST(demo_on_knative)
{
    struct router r;
    router_start(&r, "/", 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", r.port);
    const char *extra[] = {"--platform", "knative", "--function-url", url, NULL};
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, extra), 0);
    demo_job("knative", "knative");
    router_stop(&r);
    ck_assert_int_gt(r.routed, 4);
    ck_assert_int_eq(r.refused, 0);
}
END_TEST

/* ---- the same in containers of the worker image ------------------------------------------ */

#define WORKER_IMAGE "localhost/smlt-worker:test" /* built by the deploy.images test */

static char cids[NINST][80];

/* A free loopback port (bound, then let go). */
static int free_port(void)
{
    int port = 0, fd = rpc_net_listen("127.0.0.1:0", 1, &port);
    ck_assert_int_ge(fd, 0);
    close(fd);
    return port;
}

/* Starts instance i as a container of the worker image on the host's network (it reaches the
 * coordinator's RPC and the shards on loopback), with the datasets mounted read-only: Debian's
 * and the test's slice of it (the quick pass trains on the slice). */
static void container_start(int i)
{
    inst_port[i] = free_port();
    char cmd[1600];
    snprintf(cmd, sizeof cmd,
             "podman run -d --rm --network host -v /usr/share/datasets:/usr/share/datasets:ro "
             "-v %s:%s:ro -v %s:%s:ro %s --http --listen 127.0.0.1:%d --max-inflight %d",
             root, root, dataset, dataset, WORKER_IMAGE, inst_port[i], SLOTS);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    if (!fgets(cids[i], sizeof cids[i], p))
        cids[i][0] = '\0';
    pclose(p);
    cids[i][strcspn(cids[i], "\n")] = '\0';
    ck_assert_msg(strlen(cids[i]) >= 12, "podman run %s did not start", WORKER_IMAGE);
    for (int t = 0; t < 300; t++) {
        char *body = NULL;
        long st = ct_http(inst_port[i], "GET", "/_/health", NULL, NULL, &body);
        free(body);
        if (st == 200)
            return;
        usleep(100 * 1000);
    }
    ck_abort_msg("the container %s never answered /_/health", cids[i]);
}

/* Removes the containers started, by their ids. */
static void containers_stop(void)
{
    for (int i = 0; i < NINST; i++) {
        if (!cids[i][0])
            continue;
        char cmd[200];
        snprintf(cmd, sizeof cmd, "podman rm -f -t 2 %s >/dev/null 2>&1", cids[i]);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove container %s\n", cids[i]);
        cids[i][0] = '\0';
    }
}

/* The demo on --platform knative with the workers in containers of the worker image (the
 * image deploy.images builds from this build's binaries). The sanitizer pass builds no image
 * (its binaries need the sanitizer runtimes): it uses the one the Release pass left, and where
 * there is none it says so and returns. */
START_TEST(demo_on_knative_in_containers)
{
    if (system("podman image exists " WORKER_IMAGE " 2>/dev/null") != 0) {
        ck_assert_msg(ct_quick(), "no %s: the deploy.images test builds it (ctest runs it "
                                  "first: fixture smlt_images)", WORKER_IMAGE);
        fprintf(stderr, "test_platforms: SKIP demo_on_knative_in_containers: no %s in the "
                        "sanitizer pass (its binaries need the sanitizer runtimes)\n",
                WORKER_IMAGE);
        return;
    }
    for (int i = 0; i < NINST; i++)
        container_start(i);
    struct router r;
    router_start(&r, "/", 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", r.port);
    const char *extra[] = {"--platform", "knative", "--function-url", url, NULL};
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, extra), 0);
    demo_job("knative", "knative");
    router_stop(&r);
    containers_stop();
    ck_assert_int_gt(r.routed, 4);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("platforms");
    TCase *tc = tcase_create("platforms");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 700);
    tcase_add_test(tc, demo_on_openfaas);
    tcase_add_test(tc, demo_on_openfaas_async);
    tcase_add_test(tc, demo_on_knative);
    tcase_add_test(tc, demo_on_knative_in_containers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ct_main("platforms", suite(), root, sizeof root, dataset, sizeof dataset, 6000, 1000);
}
