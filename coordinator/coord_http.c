/* coord_http.c: see coord_http.h. */
#include "coord_http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>

#include "coord_dash.h"
#include "rpc_conn.h"
#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_tls.h"

#define HTTP_MAX_BODY (1u << 20)
#define HTTP_MAX_TAIL 100000

struct coord_http {
    struct evhttp *http;
    struct coord *c;
    char *admin_token;
    int port;
    int reads_need_token; /* listening beyond loopback: reads need the token too */
    struct smlt_tls *tls; /* HTTPS: the server context (coord_http_set_tls()), or NULL */
};

static void send_json(struct evhttp_request *req, int code, json_t *body)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    evbuffer_add_printf(out, "%s\n", s ? s : "{}");
    free(s);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, code == 200 ? "OK" : code == 201 ? "Created" : "Error", out);
}

static void send_error(struct evhttp_request *req, int code, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    send_json(req, code, o);
    json_decref(o);
}

static int authorized(struct coord_http *h, struct evhttp_request *req)
{
    const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!a || strncmp(a, "Bearer ", 7))
        return 0;
    return rpc_token_equal(a + 7, strlen(a + 7), h->admin_token, strlen(h->admin_token));
}

/* Reads the request body (capped). Returns a NUL-terminated copy or NULL (replied already). */
static char *read_body(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n > HTTP_MAX_BODY) {
        send_error(req, 413, "request body over 1 MiB");
        return NULL;
    }
    char *b = malloc(n + 1);
    if (!b) {
        send_error(req, 500, "out of memory");
        return NULL;
    }
    evbuffer_remove(in, b, n);
    b[n] = '\0';
    *len = n;
    return b;
}

static void send_file(struct evhttp_request *req, const char *path, const char *ctype, int tail)
{
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        send_error(req, 404, "not saved yet");
        return;
    }
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    off_t start = 0;
    if (tail > 0 && st.st_size > 0) {
        /* The last `tail` lines: scan back from the end in chunks. */
        char buf[8192];
        int lines = 0;
        off_t pos = st.st_size;
        while (pos > 0 && lines <= tail) {
            size_t k = pos > (off_t)sizeof buf ? sizeof buf : (size_t)pos;
            pos -= (off_t)k;
            if (pread(fd, buf, k, pos) != (ssize_t)k)
                break;
            for (size_t i = k; i-- > 0;) {
                if (buf[i] == '\n' && pos + (off_t)i != st.st_size - 1 && ++lines >= tail) {
                    start = pos + (off_t)i + 1;
                    break;
                }
            }
        }
    }
    /* evbuffer_add_file takes the fd and sends the file without copying it through us. */
    if (evbuffer_add_file(out, fd, start, st.st_size - start) != 0) {
        close(fd);
        send_error(req, 500, "cannot read the file");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, 200, "OK", out);
}

static int error_status(int rc)
{
    return rc == SMLT_ENOTFOUND ? 404 : rc == SMLT_EINVAL ? 409 : 500;
}

/* The deferred replies of calls that wait for the shards. libevent keeps an unanswered request
 * until it is answered; when its client goes away first, the request is detached from the
 * connection and evhttp_send_reply() just frees it. */
static void on_canceled(struct coord *c, const char *id, int rc, const char *path,
                        const char *err, void *arg)
{
    struct evhttp_request *req = arg;
    json_t *o = coord_job_json(c, id);
    send_json(req, 200, o);
    json_decref(o);
}

static void on_checkpointed(struct coord *c, const char *id, int rc, const char *path,
                            const char *err, void *arg)
{
    struct evhttp_request *req = arg;
    if (rc) {
        send_error(req, error_status(rc), err && err[0] ? err : smlt_strerror(rc));
        return;
    }
    json_t *o = json_pack("{s:s}", "path", path);
    send_json(req, 200, o);
    json_decref(o);
}

/* Returns 1 when req carries the admin token, else replies 401 and returns 0. */
static int require_admin(struct coord_http *h, struct evhttp_request *req)
{
    if (authorized(h, req))
        return 1;
    send_error(req, 401, "this call needs the admin token (Authorization: Bearer ...)");
    return 0;
}

/* The reply of a call that is answered now: the job's view, or the error rc with err. */
static void reply_job(struct coord_http *h, struct evhttp_request *req, const char *id, int rc,
                      const char *err)
{
    if (rc) {
        send_error(req, error_status(rc), err[0] ? err : smlt_strerror(rc));
        return;
    }
    json_t *o = coord_job_json(h->c, id);
    send_json(req, 200, o);
    json_decref(o);
}

/* ---- one handler per resource; each replies (or arranges a deferred reply) ---------------- */

static void serve_health(struct coord_http *h, struct evhttp_request *req)
{
    json_t *o = json_pack("{s:b, s:s, s:s}", "ok", 1, "version", SMLT_VERSION_STRING, "rpc",
                          coord_rpc_address(h->c));
    send_json(req, 200, o);
    json_decref(o);
}

/* /metrics: Prometheus text. */
static void serve_metrics(struct coord_http *h, struct evhttp_request *req, int is_get)
{
    if (!is_get) {
        send_error(req, 405, "use GET");
        return;
    }
    struct evbuffer *o = evhttp_request_get_output_buffer(req);
    coord_metrics(h->c, o);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", o);
}

/* GET /api/prometheus/targets: Prometheus HTTP service discovery of the jobs' shards. */
static void serve_prometheus_targets(struct coord_http *h, struct evhttp_request *req, int is_get)
{
    if (!is_get) {
        send_error(req, 405, "use GET");
        return;
    }
    json_t *o = coord_prometheus_targets(h->c);
    send_json(req, 200, o);
    json_decref(o);
}

/* GET /api/nodes: the PS nodes of the pool (coord_nodes_json()). */
static void serve_nodes(struct coord_http *h, struct evhttp_request *req, int is_get)
{
    if (!is_get) {
        send_error(req, 405, "use GET");
        return;
    }
    json_t *o = coord_nodes_json(h->c);
    send_json(req, 200, o);
    json_decref(o);
}

/* POST /api/jobs: a new job from the spec in the body; 201 with its id. */
static void submit_job(struct coord_http *h, struct evhttp_request *req)
{
    if (!require_admin(h, req))
        return;
    size_t len;
    char *body = read_body(req, &len);
    if (!body)
        return;
    char jid[128], err[512] = "";
    int rc = coord_submit(h->c, body, len, jid, sizeof jid, err, sizeof err);
    free(body);
    if (rc) {
        send_error(req, rc == SMLT_EINVAL ? 400 : 500, err[0] ? err : smlt_strerror(rc));
        return;
    }
    json_t *o = json_pack("{s:s}", "id", jid);
    send_json(req, 201, o);
    json_decref(o);
}

/* /api/jobs: GET lists the jobs, POST submits one. */
static void serve_jobs(struct coord_http *h, struct evhttp_request *req, int is_get,
                       int is_post)
{
    if (is_get) {
        json_t *o = json_pack("{s:o}", "jobs", coord_jobs_json(h->c));
        send_json(req, 200, o);
        json_decref(o);
    } else if (is_post) {
        submit_job(h, req);
    } else {
        send_error(req, 405, "use GET or POST");
    }
}

/* GET /api/jobs/ID: the job's view. */
static void serve_job(struct coord_http *h, struct evhttp_request *req, const char *id,
                      int is_get)
{
    if (!is_get) {
        send_error(req, 405, "use GET");
        return;
    }
    json_t *o = coord_job_json(h->c, id);
    if (!o)
        send_error(req, 404, "no such job");
    else
        send_json(req, 200, o);
    json_decref(o);
}

/* The ?tail=N of a log download: 200 lines unless given, at most HTTP_MAX_TAIL. */
static int log_tail(const struct evhttp_uri *u)
{
    struct evkeyvalq q;
    int tail = 200;
    if (evhttp_parse_query_str(evhttp_uri_get_query(u) ? evhttp_uri_get_query(u) : "", &q) == 0) {
        const char *t = evhttp_find_header(&q, "tail");
        if (t)
            tail = atoi(t);
        evhttp_clear_headers(&q);
    }
    if (tail < 0 || tail > HTTP_MAX_TAIL)
        tail = HTTP_MAX_TAIL;
    return tail;
}

/* GET /api/jobs/ID/model (the saved model) or /api/jobs/ID/logs (the log's last lines). */
static void serve_job_file(struct coord_http *h, struct evhttp_request *req,
                           const struct evhttp_uri *u, const char *id, int model, int is_get)
{
    if (!is_get) {
        send_error(req, 405, "use GET");
        return;
    }
    const char *p = model ? coord_job_model_path(h->c, id) : coord_job_log_path(h->c, id);
    if (!p) {
        send_error(req, 404, "no such job");
        return;
    }
    int tail = model ? 0 : log_tail(u);
    send_file(req, p, model ? "application/octet-stream" : "text/plain; charset=utf-8", tail);
}

static void post_cancel(struct coord_http *h, struct evhttp_request *req, const char *id)
{
    char err[512] = "";
    int rc = coord_cancel(h->c, id, on_canceled, req, err, sizeof err);
    /* On success on_canceled replies when the job has ended; a client gone by then leaves
     * libevent's request detached (evcon NULL), and the reply only frees it. */
    if (rc)
        reply_job(h, req, id, rc, err);
}

/* The body is {"workers": N, "shards": M}, either optional, 0 meaning unchanged. */
static void post_scale(struct coord_http *h, struct evhttp_request *req, const char *id)
{
    size_t len;
    char *body = read_body(req, &len);
    if (!body)
        return;
    json_error_t je;
    json_t *b = json_loads(body, 0, &je);
    free(body);
    json_int_t w = 0, s = 0;
    if (!b || json_unpack_ex(b, &je, JSON_STRICT, "{s?I, s?I}", "workers", &w, "shards", &s) ||
        w < 0 || s < 0 || w > 1000000 || s > 1000000) {
        json_decref(b);
        send_error(req, 400, "body must be {\"workers\": N, \"shards\": M} with N, M >= 0");
        return;
    }
    json_decref(b);
    char err[512] = "";
    int rc = coord_scale(h->c, id, (unsigned)w, (unsigned)s, err, sizeof err);
    reply_job(h, req, id, rc, err);
}

static void post_checkpoint(struct coord_http *h, struct evhttp_request *req, const char *id)
{
    char p[1024], err[512] = "";
    int rc = coord_checkpoint(h->c, id, on_checkpointed, req, p, sizeof p, err, sizeof err);
    if (rc == 0)
        return; /* replied when the model is written (see post_cancel) */
    if (rc == 1)
        on_checkpointed(h->c, id, 0, p, NULL, req); /* the job has ended: its saved model */
    else
        reply_job(h, req, id, rc, err);
}

/* POST /api/callback/ID/SECRET: an OpenFaaS queue-worker's result of an asynchronous
 * invocation (coord_backend_callback()). No admin token: the secret in the path is the
 * invocation's own, and it is checked before anything else the request says. */
static void serve_callback(struct coord_http *h, struct evhttp_request *req, const char *target,
                           int is_post)
{
    if (!is_post) {
        send_error(req, 405, "use POST");
        return;
    }
    struct evkeyvalq *hd = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *body = NULL;
    if (n <= COORD_CALLBACK_MAX_BODY) { /* a longer one is refused, after the secret */
        body = malloc(n + 1);
        if (!body) {
            send_error(req, 500, "out of memory");
            return;
        }
        evbuffer_remove(in, body, n);
        body[n] = '\0';
    }
    struct coord_inv_callback cb = {.target = target, .body = body, .body_len = n,
                                    .call_id = evhttp_find_header(hd, "X-Call-Id"),
                                    .function_status = evhttp_find_header(hd, "X-Function-Status"),
                                    .function_name = evhttp_find_header(hd, "X-Function-Name"),
                                    .duration_s = evhttp_find_header(hd, "X-Duration-Seconds")};
    char err[256] = "";
    int rc = coord_callback(h->c, &cb, err, sizeof err);
    free(body);
    if (rc) {
        send_error(req, rc == SMLT_EPERM ? 403 : rc == SMLT_EINVAL ? 400 : rc == SMLT_ETOOBIG ? 413
                                                                                             : 404,
                   err[0] ? err : smlt_strerror(rc));
        return;
    }
    json_t *o = json_pack("{s:b}", "ok", 1);
    send_json(req, 200, o);
    json_decref(o);
}

/* POST /api/jobs/ID/{cancel,scale,checkpoint}, with the admin token. */
static void serve_job_action(struct coord_http *h, struct evhttp_request *req, const char *id,
                             const char *sub, int is_post)
{
    if (!is_post) {
        send_error(req, 405, "use POST");
        return;
    }
    if (!require_admin(h, req))
        return;
    if (!strcmp(sub, "cancel"))
        post_cancel(h, req, id);
    else if (!strcmp(sub, "scale"))
        post_scale(h, req, id);
    else if (!strcmp(sub, "checkpoint"))
        post_checkpoint(h, req, id);
    else
        send_error(req, 404, "no such resource");
}

/* The router: every request is answered by exactly one handler (or the deferred reply it
 * arranges). */
static void on_request(struct evhttp_request *req, void *arg)
{
    struct coord_http *h = arg;
    struct evhttp_uri *u = evhttp_uri_parse(evhttp_request_get_uri(req));
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    int is_get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD, is_post = cmd == EVHTTP_REQ_POST;
    char id[128] = "", sub[32] = "";
    if (!path)
        send_error(req, 400, "bad request URI");
    else if (!strcmp(path, "/api/health"))
        serve_health(h, req);
    else if (coord_dash_serve(req, path, is_get))
        ; /* the dashboard's page and files (they hold no job data) */
    else if (!strncmp(path, "/api/callback/", 14))
        serve_callback(h, req, path + 14, is_post); /* its own secret, not the admin token */
    else if (h->reads_need_token && !authorized(h, req))
        send_error(req, 401, "this coordinator listens beyond loopback: every call needs the "
                             "admin token (Authorization: Bearer ...)");
    else if (!strcmp(path, "/metrics"))
        serve_metrics(h, req, is_get);
    else if (!strcmp(path, "/api/prometheus/targets"))
        serve_prometheus_targets(h, req, is_get);
    else if (!strcmp(path, "/api/nodes"))
        serve_nodes(h, req, is_get);
    else if (!strcmp(path, "/api/jobs") || !strcmp(path, "/api/jobs/"))
        serve_jobs(h, req, is_get, is_post);
    else if (strncmp(path, "/api/jobs/", 10) || sscanf(path + 10, "%127[^/]/%31s", id, sub) < 1)
        send_error(req, 404, "no such resource"); /* not /api/jobs/ID[/sub] */
    else if (!sub[0])
        serve_job(h, req, id, is_get);
    else if (!strcmp(sub, "model") || !strcmp(sub, "logs"))
        serve_job_file(h, req, u, id, !strcmp(sub, "model"), is_get);
    else
        serve_job_action(h, req, id, sub, is_post);
    if (u)
        evhttp_uri_free(u);
}

/* 1 when addr ("HOST:PORT") binds a loopback address only. */
static int addr_is_loopback(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    size_t n = colon ? (size_t)(colon - addr) : strlen(addr);
    if (n >= 4 && !strncmp(addr, "127.", 4))
        return 1;
    return (n == 5 && !strncmp(addr, "[::1]", 5)) || (n == 9 && !strncmp(addr, "localhost", 9));
}

struct coord_http *coord_http_new(struct event_base *base, struct coord *c, const char *addr,
                                  const char *admin_token, char *err, size_t errlen)
{
    if (!admin_token || !admin_token[0]) {
        snprintf(err, errlen, "an admin token is required");
        return NULL;
    }
    struct coord_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->c = c;
    h->admin_token = strdup(admin_token);
    h->http = evhttp_new(base);
    if (!h->http) {
        coord_http_free(h);
        snprintf(err, errlen, "cannot create the HTTP server");
        return NULL;
    }
    evhttp_set_max_body_size(h->http, HTTP_MAX_BODY + 1);
    evhttp_set_timeout(h->http, 60);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(h->http, on_request, h);
    h->reads_need_token = !addr_is_loopback(addr);
    int fd = rpc_net_listen(addr, 128, &h->port);
    if (fd < 0 || !evhttp_accept_socket_with_handle(h->http, fd)) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, fd < 0 ? smlt_strerror(fd) : "accept");
        if (fd >= 0)
            close(fd);
        coord_http_free(h);
        return NULL;
    }
    return h;
}

int coord_http_port(const struct coord_http *h)
{
    return h->port;
}

void coord_http_free(struct coord_http *h)
{
    if (!h)
        return;
    if (h->http)
        evhttp_free(h->http);
    smlt_tls_free(h->tls);
    free(h->admin_token);
    free(h);
}

/* HTTPS: evhttp asks for each accepted connection's bufferevent; it is an openssl one that
 * runs the server's handshake first (evhttp sets its socket). A plaintext or refused client
 * fails the handshake and is closed by evhttp; the server goes on. */
static struct bufferevent *on_https_bev(struct event_base *base, void *arg)
{
    struct coord_http *h = arg;
    char err[256];
    SSL *ssl = smlt_tls_ssl_new(h->tls, NULL, err, sizeof err);
    struct bufferevent *bev =
        ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE)
            : NULL;
    if (bev && smlt_tls_watch(ssl, h->tls, "HTTPS") != 0)
        log_warn("HTTPS: out of memory: a failed handshake will not be counted");
    if (!bev) {
        /* Only out of memory gets here. NULL would make evhttp serve this connection in
         * plaintext, so the daemon stops instead (it may abort on out-of-memory for its own
         * allocations). */
        log_error("HTTPS: %s", ssl ? "cannot create a bufferevent" : err);
        abort();
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void coord_http_set_tls(struct coord_http *h, struct smlt_tls *tls)
{
    smlt_tls_free(h->tls);
    h->tls = smlt_tls_ref(tls);
    evhttp_set_bevcb(h->http, on_https_bev, h);
}
