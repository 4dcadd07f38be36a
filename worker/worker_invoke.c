/* worker_invoke.c: see worker_invoke.h. */
#include "worker_invoke.h"
#include "worker_resp.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>
#include <event2/event.h>
#include <jansson.h>

#include "data_load.h"
#include "data_set.h"
#include "rpc_conn.h"
#include "smlt.pb-c.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_tls.h"
#include "smlt_util.h"
#include "worker_train.h"

/* The Assignment's dataset options are the loader's values. */
_Static_assert((int)SMLT__CSV_HEADER__HEADER_AUTO == DATA_LOAD_HEADER_AUTO &&
               (int)SMLT__CSV_HEADER__HEADER_YES == DATA_LOAD_HEADER_YES &&
               (int)SMLT__CSV_HEADER__HEADER_NO == DATA_LOAD_HEADER_NO, "CsvHeader");
_Static_assert((int)SMLT__FEATURE_SCALE__SCALE_NONE == DATA_SET_SCALE_NONE &&
               (int)SMLT__FEATURE_SCALE__SCALE_MINMAX == DATA_SET_SCALE_MINMAX &&
               (int)SMLT__FEATURE_SCALE__SCALE_STANDARD == DATA_SET_SCALE_STANDARD,
               "FeatureScale");

#define INVOKE_RPC_TIMEOUT_S 30
/* After losing the coordinator in the middle of an invocation: how often to dial it again,
 * and how long to keep trying to report the slice's end (a restarted coordinator takes a few
 * seconds to come back; one that does not come back must not keep the instance forever). */
#define INVOKE_REDIAL_S 1.0
#define INVOKE_DONE_RETRY_S 60
/* Once the platform wants the instance back (the stop flag): Done is retried this much longer
 * at most, and a hello's reply is not waited for. */
#define INVOKE_HALT_WAIT_S 5

/* The link to the coordinator for one invocation: a private loop and one connection. */
struct link {
    struct event_base *base;
    struct rpc_conn *conn;
    struct smlt_tls *tls;    /* borrowed from the instance: TLS to the coordinator, or NULL */
    char addr[SMLT_MAX_INVOCATION_FIELD + 1];
    uint64_t next_req;
    /* the reply being waited for */
    uint64_t want_req;
    int got;
    int err;
    char errmsg[512];
    Smlt__Assignment *assignment;
    int stop; /* a ProgressAck asked us to stop */
    int closed;
    /* The invocation being served, to say hello again on a new connection. */
    char inv[SMLT_MAX_INVOCATION_FIELD + 1];
    char token[SMLT_MAX_INVOCATION_FIELD + 1];
    int in_inv;           /* the Assignment came: a new connection resumes this invocation */
    uint64_t next_step;   /* where the slice is, for a resuming hello */
    uint64_t resume_req;  /* the resuming hello's request, 0 when none is outstanding */
    double next_dial;     /* not before this (CLOCK_MONOTONIC) */
    unsigned resumes;     /* resuming hellos accepted */
    int refused;          /* the coordinator answered the last call with an error */
    double respond_by;    /* the platform ends the invocation then (CLOCK_MONOTONIC): waiting
                             for a reply, and retrying Done, stop before it; 0: no limit */
    const atomic_int *halt; /* the platform wants the instance back (may be NULL) */
};

static int link_halted(const struct link *l)
{
    return l->halt && atomic_load(l->halt);
}

/* The earlier of now + s and the platform's limit. */
static double link_until(const struct link *l, double s)
{
    double until = smlt_now_mono() + s;
    return l->respond_by > 0 && l->respond_by < until ? l->respond_by : until;
}

static void on_frame(struct rpc_conn *c, const struct rpc_frame_hdr *h, const uint8_t *meta,
                     void *payload, void *arg)
{
    struct link *l = arg;
    if (!l)
        return;
    if (h->type == SMLT__MSG_TYPE__MSG_PROGRESS_ACK) {
        Smlt__ProgressAck *a = (Smlt__ProgressAck *)rpc_msg_unpack(h, meta);
        if (a && a->has_stop && a->stop)
            l->stop = 1;
        if (a)
            protobuf_c_message_free_unpacked(&a->base, NULL);
    } else if (h->type == SMLT__MSG_TYPE__MSG_ERROR && l->resume_req && h->req_id == l->resume_req) {
        /* The coordinator does not know this invocation any more (it restarted without it,
         * or the job moved on): the slice stops, and whoever runs the rank now goes on. */
        Smlt__ErrorReply *e = (Smlt__ErrorReply *)rpc_msg_unpack(h, meta);
        int again = e && e->code == SMLT_EAGAIN;
        if (again) {
            /* It has restarted and not yet resumed the job: dial again shortly. */
            log_info("invocation %s: %s", l->inv, e->message ? e->message : "not yet");
        } else {
            log_warn("invocation %s: the coordinator refused to resume it (%s); stopping the "
                     "slice",
                     l->inv, e && e->message ? e->message : "no reason");
            l->stop = 1;
            l->refused = 1;
        }
        if (e)
            protobuf_c_message_free_unpacked(&e->base, NULL);
        l->resume_req = 0;
        if (again && l->conn) {
            rpc_conn_set_arg(l->conn, NULL);
            rpc_conn_abort(l->conn, SMLT_ECANCELED);
            l->conn = NULL;
            l->closed = 1;
            l->next_dial = smlt_now_mono() + INVOKE_REDIAL_S / 2;
            if (!l->got) {
                l->err = SMLT_EAGAIN;
                snprintf(l->errmsg, sizeof l->errmsg, "coordinator %s: not ready", l->addr);
                l->got = 1;
            }
        }
    } else if (h->type == SMLT__MSG_TYPE__MSG_ASSIGNMENT && l->resume_req &&
               h->req_id == l->resume_req) {
        l->resume_req = 0; /* accepted; the slice goes on as assigned before */
        l->resumes++;
        log_info("invocation %s: resumed with the coordinator at %s", l->inv, l->addr);
    } else if (h->type == SMLT__MSG_TYPE__MSG_ERROR && h->req_id == l->want_req) {
        Smlt__ErrorReply *e = (Smlt__ErrorReply *)rpc_msg_unpack(h, meta);
        l->err = e && e->code < 0 ? e->code : SMLT_EPROTO;
        l->refused = 1;
        snprintf(l->errmsg, sizeof l->errmsg, "coordinator: %s",
                 e && e->message ? e->message : smlt_strerror(l->err));
        if (e)
            protobuf_c_message_free_unpacked(&e->base, NULL);
        l->got = 1;
    } else if (h->type == SMLT__MSG_TYPE__MSG_ASSIGNMENT && h->req_id == l->want_req) {
        l->assignment = (Smlt__Assignment *)rpc_msg_unpack(h, meta);
        if (!l->assignment) {
            l->err = SMLT_EPROTO;
            snprintf(l->errmsg, sizeof l->errmsg, "coordinator sent a malformed Assignment");
        }
        l->got = 1;
    } else if (h->type == SMLT__MSG_TYPE__MSG_OK && h->req_id == l->want_req) {
        l->got = 1;
    }
}

static void on_close(struct rpc_conn *c, int err, void *arg)
{
    struct link *l = arg;
    if (!l)
        return;
    l->conn = NULL;
    l->closed = 1;
    l->resume_req = 0;
    if (l->in_inv)
        l->next_dial = smlt_now_mono() + INVOKE_REDIAL_S;
    if (!l->got) {
        l->err = err ? err : SMLT_ECLOSED;
        const char *why = rpc_conn_errmsg(c);
        if (why[0])
            snprintf(l->errmsg, sizeof l->errmsg, "coordinator %s: %s", l->addr, why);
        else
            snprintf(l->errmsg, sizeof l->errmsg, "coordinator %s: connection lost (%s)",
                     l->addr, smlt_strerror(l->err));
        l->got = 1;
    }
}

static const struct rpc_conn_handler link_handler = {.on_frame = on_frame, .on_close = on_close};

/* Dials the coordinator when there is no connection. In the middle of an invocation (the
 * connection was lost: the coordinator restarted) at most once per INVOKE_REDIAL_S, and the
 * new connection first says hello again for the invocation, as a resume. */
static int link_dial(struct link *l)
{
    if (l->conn)
        return 0;
    if (l->in_inv && smlt_now_mono() < l->next_dial) {
        snprintf(l->errmsg, sizeof l->errmsg, "coordinator %s: connection lost", l->addr);
        return SMLT_ECLOSED;
    }
    int err = 0;
    static const struct rpc_limits lim = {SMLT_MAX_META_LEN, 0};
    l->closed = 0;
    l->conn = rpc_conn_connect_tls(l->base, l->addr, l->tls, &lim, &link_handler, l, &err);
    if (!l->conn) {
        l->next_dial = smlt_now_mono() + INVOKE_REDIAL_S;
        snprintf(l->errmsg, sizeof l->errmsg, "coordinator %s: %s", l->addr, smlt_strerror(err));
        return err;
    }
    if (!l->in_inv)
        return 0;
    Smlt__WorkerHello hello = SMLT__WORKER_HELLO__INIT;
    hello.proto_version = SMLT_PROTO_VERSION;
    hello.invocation = l->inv;
    hello.token.data = (uint8_t *)l->token;
    hello.token.len = strlen(l->token);
    hello.has_pid = hello.has_warm = hello.has_resume = hello.has_next_step = 1;
    hello.pid = (uint32_t)getpid();
    hello.warm = 1;
    hello.resume = 1;
    hello.next_step = l->next_step;
    l->resume_req = ++l->next_req;
    return rpc_conn_send(l->conn, SMLT__MSG_TYPE__MSG_WORKER_HELLO, l->resume_req, &hello.base,
                         NULL, 0, 0, NULL, NULL);
}

/* Sends a frame and, with wait, runs the loop until its reply (or an error) arrives. */
static int link_call(struct link *l, uint8_t type, const ProtobufCMessage *m, int wait)
{
    int drc = link_dial(l);
    if (drc)
        return drc;
    uint64_t req = ++l->next_req;
    if (wait) {
        l->want_req = req;
        l->got = 0;
        l->err = 0;
        l->refused = 0;
    }
    int rc = rpc_conn_send(l->conn, type, req, m, NULL, 0, 0, NULL, NULL);
    if (rc)
        return rc;
    if (!wait) {
        event_base_loop(l->base, EVLOOP_NONBLOCK);
        return 0;
    }
    double until = link_until(l, INVOKE_RPC_TIMEOUT_S);
    /* A stop flag is looked at ten times a second: a hello is not waited for once it is set. */
    struct timeval tv = {l->halt ? 0 : 1, l->halt ? 100000 : 0};
    while (!l->got && smlt_now_mono() < until && (l->in_inv || !link_halted(l))) {
        event_base_loopexit(l->base, &tv);
        event_base_loop(l->base, EVLOOP_ONCE);
    }
    if (!l->got && link_halted(l) && !l->in_inv) {
        snprintf(l->errmsg, sizeof l->errmsg, "the instance is stopping (SIGTERM)");
        return SMLT_ECANCELED;
    }
    if (!l->got) {
        snprintf(l->errmsg, sizeof l->errmsg, "coordinator %s: no reply in time", l->addr);
        return SMLT_ETIMEDOUT;
    }
    return l->err;
}

/* Reports the invocation's end. When the coordinator is away (it restarted), dials it again
 * until it answers, for at most INVOKE_DONE_RETRY_S (and not past the platform's limit): the
 * restarted coordinator adopts this invocation and needs its end to go on with the rank. */
static int link_done(struct link *l, Smlt__Done *d)
{
    double until = link_until(l, INVOKE_DONE_RETRY_S);
    for (;;) {
        int rc = link_call(l, SMLT__MSG_TYPE__MSG_DONE, &d->base, 1);
        if (link_halted(l) && smlt_now_mono() + INVOKE_HALT_WAIT_S < until)
            until = smlt_now_mono() + INVOKE_HALT_WAIT_S;
        if (rc == 0 || l->refused || !l->in_inv || smlt_now_mono() >= until)
            return rc;
        double wait = l->next_dial - smlt_now_mono();
        if (wait < 0.05)
            wait = 0.05;
        struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* ---- one invocation ---------------------------------------------------------------------- */

struct worker_invoke {
    struct worker *w;
    struct link l;
    unsigned served; /* invocations that reached the coordinator: the next hello says warm */
    /* TLS: the instance's files from its environment (SMLT_TLS_CA, SMLT_TLS_CERT,
     * SMLT_TLS_KEY; NULL when unset), the client context of the current settings, and those
     * settings (the invocation's CA text, or "" for none: tls_sig NULL means plain). */
    char *env_ca, *env_cert, *env_key;
    struct smlt_tls *tls;
    char *tls_sig;
};

struct worker_invoke *worker_invoke_new(void)
{
    struct worker_invoke *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->w = worker_new();
    s->l.base = event_base_new();
    const char *ev[] = {"SMLT_TLS_CA", "SMLT_TLS_CERT", "SMLT_TLS_KEY"};
    char **dst[] = {&s->env_ca, &s->env_cert, &s->env_key};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(ev[i]);
        *dst[i] = v && *v ? strdup(v) : NULL;
    }
    if (!s->w || !s->l.base) {
        worker_invoke_free(s);
        return NULL;
    }
    return s;
}

void worker_invoke_free(struct worker_invoke *s)
{
    if (!s)
        return;
    struct link *l = &s->l;
    if (l->conn) {
        rpc_conn_set_arg(l->conn, NULL);
        rpc_conn_abort(l->conn, SMLT_ECANCELED);
        event_base_loop(l->base, EVLOOP_NONBLOCK);
    }
    if (l->base)
        event_base_free(l->base);
    worker_free(s->w);
    smlt_tls_free(s->tls);
    free(s->tls_sig);
    free(s->env_ca);
    free(s->env_cert);
    free(s->env_key);
    free(s);
}

/* The fields of a payload, borrowed from its parsed JSON. */
struct payload {
    json_t *root;
    const char *coord, *inv, *token;
    int tls;            /* "tls": true: the coordinator and the shards speak TLS */
    const char *tls_ca; /* "tls_ca": the CA certificates to verify them (PEM text), or NULL */
};

static const char *const payload_shape =
    "invocation payload must be {\"coordinator\": \"host:port\", \"invocation\": \"ID\", "
    "\"token\": \"...\"}";

/* Parses a payload into p (release p->root with json_decref, also on failure). Returns 0, or
 * SMLT_EINVAL with a message in err: over SMLT_MAX_INVOCATION bytes, not JSON, not an object,
 * a field missing, not a string, empty or longer than SMLT_MAX_INVOCATION_FIELD. */
static int payload_parse(const char *text, struct payload *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    size_t n = text ? strlen(text) : 0;
    if (n > SMLT_MAX_INVOCATION) {
        smlt_set_err(err, errlen, "invocation payload of %zu bytes is over the limit of %u", n,
                     SMLT_MAX_INVOCATION);
        return SMLT_EINVAL;
    }
    json_error_t je;
    p->root = n ? json_loads(text, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!json_is_object(p->root)) {
        smlt_set_err(err, errlen, "%s; got %s%s", payload_shape,
                     !n        ? "an empty payload"
                     : p->root ? "JSON that is not an object"
                               : "invalid JSON: ",
                     n && !p->root ? je.text : "");
        return SMLT_EINVAL;
    }
    const char *names[] = {"coordinator", "invocation", "token"};
    const char **vals[] = {&p->coord, &p->inv, &p->token};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(p->root, names[i]);
        *vals[i] = json_string_value(v);
        size_t len = *vals[i] ? strlen(*vals[i]) : 0;
        if (!v || !*vals[i] || len == 0 || len > SMLT_MAX_INVOCATION_FIELD) {
            smlt_set_err(err, errlen, "%s; \"%s\" %s", payload_shape, names[i],
                         !v ? "is missing" : !*vals[i] ? "is not a string" :
                         len ? "is too long" : "is empty");
            return SMLT_EINVAL;
        }
    }
    /* Optional: TLS, and the CA to trust (a function instance has no file of its own). */
    json_t *tls = json_object_get(p->root, "tls"), *ca = json_object_get(p->root, "tls_ca");
    if (tls && !json_is_boolean(tls)) {
        smlt_set_err(err, errlen, "invocation payload: \"tls\" must be true or false");
        return SMLT_EINVAL;
    }
    if (ca && (!json_is_string(ca) || !json_string_length(ca) ||
               json_string_length(ca) > SMLT_MAX_TLS_CA_PEM)) {
        smlt_set_err(err, errlen,
                     "invocation payload: \"tls_ca\" must be the CA certificates as PEM text, "
                     "1 to %u bytes",
                     SMLT_MAX_TLS_CA_PEM);
        return SMLT_EINVAL;
    }
    p->tls = json_is_true(tls) || ca;
    p->tls_ca = ca ? json_string_value(ca) : NULL;
    return 0;
}

/* Makes the instance's link speak TLS as the payload says: a client context from the
 * invocation's CA text, or the SMLT_TLS_CA file, else the system's CAs, with the
 * SMLT_TLS_CERT / SMLT_TLS_KEY client certificate if set; kept while the settings stay the
 * same (warm invocations), and the connection dropped when they change. Returns 0, or
 * SMLT_EINVAL with a message in err. */
static int link_tls(struct worker_invoke *s, const struct payload *p, char *err, size_t errlen)
{
    const char *want = p->tls ? (p->tls_ca ? p->tls_ca : "") : NULL;
    if ((!want && !s->tls_sig) || (want && s->tls_sig && !strcmp(want, s->tls_sig)))
        return 0;
    struct link *l = &s->l;
    if (l->conn) {
        rpc_conn_set_arg(l->conn, NULL);
        rpc_conn_abort(l->conn, SMLT_ECANCELED);
        l->conn = NULL;
    }
    smlt_tls_free(s->tls);
    s->tls = NULL;
    l->tls = NULL;
    free(s->tls_sig);
    s->tls_sig = NULL;
    if (!want)
        return 0;
    struct smlt_tls_conf tc = {.ca = s->env_ca, .ca_pem = p->tls_ca, .cert = s->env_cert,
                               .key = s->env_key};
    char msg[512];
    if (smlt_tls_client_new(&s->tls, &tc, msg, sizeof msg) != 0) {
        smlt_set_err(err, errlen, "TLS: %s", msg);
        return SMLT_EINVAL;
    }
    s->tls_sig = strdup(want);
    l->tls = s->tls;
    return 0;
}

int worker_invoke_check(const char *payload, char *err, size_t errlen)
{
    struct payload p;
    int rc = payload_parse(payload, &p, err, errlen);
    json_decref(p.root);
    return rc;
}

struct run_ctx {
    struct link *l;
    const char *inv;
    double last_sent;
    double every_s;
    int sent;             /* reports sent in this invocation */
    int64_t last_eval;    /* the evaluation last reported */
    const atomic_int *stop; /* the platform wants the instance back (may be NULL) */
};

static void fill_progress(Smlt__Progress *p, const char *inv, const struct worker_report *r)
{
    p->invocation = (char *)inv;
    p->next_step = r->next_step;
    p->has_steps = p->has_samples = p->has_loss = p->has_compute_s = p->has_comm_s = 1;
    p->has_init_s = p->has_eval_s = p->has_elapsed_s = p->has_eval_epoch = 1;
    p->has_test_acc = p->has_test_loss = p->has_cold = p->has_steps_per_epoch = 1;
    p->steps = r->steps;
    p->samples = r->samples;
    p->loss = r->loss;
    p->compute_s = r->compute_s;
    p->comm_s = r->comm_s;
    p->init_s = r->init_s;
    p->eval_s = r->eval_s;
    p->elapsed_s = r->elapsed_s;
    p->eval_epoch = r->eval_epoch;
    p->test_acc = r->test_acc;
    p->test_loss = r->test_loss;
    p->cold = r->cold;
    p->steps_per_epoch = r->steps_per_epoch;
}

static int on_progress(const struct worker_report *r, void *arg)
{
    struct run_ctx *x = arg;
    double t = smlt_now_mono();
    x->l->next_step = r->next_step;
    /* Send at the configured pace, and at once when an evaluation result is new. The first
     * report goes after the first step: it tells the coordinator the steps per epoch, which
     * it needs before the workers pass the profile's end (see coord_job.c). */
    if (!x->sent || t - x->last_sent >= x->every_s || r->eval_epoch != x->last_eval) {
        x->last_eval = r->eval_epoch;
        Smlt__Progress p = SMLT__PROGRESS__INIT;
        fill_progress(&p, x->inv, r);
        link_call(x->l, SMLT__MSG_TYPE__MSG_PROGRESS, &p.base, 0);
        x->last_sent = t;
        x->sent++;
    } else {
        event_base_loop(x->l->base, EVLOOP_NONBLOCK);
    }
    return x->l->stop || (x->stop && atomic_load(x->stop));
}

static int done_status(const struct worker_report *r, int failed)
{
    if (failed)
        return SMLT__DONE_STATUS__DONE_FAILED;
    switch (r->status) {
    case WORKER_DONE:
        return SMLT__DONE_STATUS__DONE_FINISHED;
    case WORKER_SLICE_END:
        return SMLT__DONE_STATUS__DONE_SLICE;
    case WORKER_TIME_UP:
        return SMLT__DONE_STATUS__DONE_TIME_UP;
    default:
        return SMLT__DONE_STATUS__DONE_FAILED;
    }
}

/* Returns the response line for inv (NULL: a malformed payload) and r; err: a failure. */
static char *response(const char *inv, const struct worker_report *r, const char *err)
{
    struct worker_resp o = {.invocation = inv,
                            .status = done_status(r, err != NULL),
                            .next_step = r->next_step,
                            .steps = r->steps,
                            .samples = r->samples,
                            .loss = r->loss,
                            .elapsed_s = r->elapsed_s,
                            .init_s = r->init_s,
                            .cold = r->cold};
    if (err) {
        /* Cut to the field (a coordinator's message can be longer). */
        size_t n = strnlen(err, sizeof o.error - 1);
        memcpy(o.error, err, n);
        o.error[n] = '\0';
    }
    return worker_resp_format(&o);
}

/* Reports the invocation's end to the coordinator (failed: r->err says why). */
static void report_done(struct link *l, const char *inv, const struct worker_report *r,
                        int failed)
{
    Smlt__Done d = SMLT__DONE__INIT;
    Smlt__Progress p = SMLT__PROGRESS__INIT;
    fill_progress(&p, inv, r);
    d.invocation = (char *)inv;
    d.progress = &p;
    d.status = (Smlt__DoneStatus)done_status(r, failed);
    if (d.status == SMLT__DONE_STATUS__DONE_FAILED) {
        d.has_error_code = 1;
        d.error_code = r->err_code;
        d.error = (char *)r->err;
    }
    if (link_done(l, &d))
        log_warn("invocation %s: reporting Done: %s", inv, l->errmsg);
    l->in_inv = 0;
}

/* Says hello for the invocation p names and returns its Assignment (free it with
 * smlt__assignment__free_unpacked), or NULL with the reason in l->errmsg. */
static Smlt__Assignment *serve_hello(struct worker_invoke *s, const struct payload *p)
{
    struct link *l = &s->l;
    if (link_tls(s, p, l->errmsg, sizeof l->errmsg) != 0)
        return NULL;
    if (strcmp(l->addr, p->coord) != 0) {
        if (l->conn) {
            rpc_conn_set_arg(l->conn, NULL);
            rpc_conn_abort(l->conn, SMLT_ECANCELED);
            l->conn = NULL;
        }
        snprintf(l->addr, sizeof l->addr, "%s", p->coord);
    }
    l->stop = 0;
    l->in_inv = 0;
    l->errmsg[0] = '\0';
    Smlt__WorkerHello hello = SMLT__WORKER_HELLO__INIT;
    hello.proto_version = SMLT_PROTO_VERSION;
    hello.invocation = (char *)p->inv;
    hello.token.data = (uint8_t *)p->token;
    hello.token.len = strlen(p->token);
    hello.has_pid = hello.has_warm = 1;
    hello.pid = (uint32_t)getpid();
    hello.warm = s->served++ > 0;
    int rc = link_call(l, SMLT__MSG_TYPE__MSG_WORKER_HELLO, &hello.base, 1);
    if (rc || !l->assignment) {
        if (!l->errmsg[0] || !rc)
            snprintf(l->errmsg, sizeof l->errmsg, "%s", smlt_strerror(rc ? rc : SMLT_EPROTO));
        if (l->assignment)
            smlt__assignment__free_unpacked(l->assignment, NULL);
        l->assignment = NULL;
        return NULL;
    }
    Smlt__Assignment *a = l->assignment;
    l->assignment = NULL;
    /* From here a lost connection is dialled again and this invocation resumed. */
    snprintf(l->inv, sizeof l->inv, "%s", p->inv);
    snprintf(l->token, sizeof l->token, "%s", p->token);
    l->next_step = a->start_step;
    l->in_inv = 1;
    return a;
}

/* The task an Assignment describes (t borrows from a and ps_token). t_recv: when the
 * invocation arrived, which the Assignment's deadline counts from; deadline: the platform's
 * (0: none); the earlier of the two ends the slice. */
static void task_of(const Smlt__Assignment *a, double t_recv, double deadline,
                    struct worker_task *t, char ps_token[SMLT_MAX_TOKEN + 1])
{
    memset(t, 0, sizeof *t);
    t->job = a->job;
    t->model = a->model;
    t->model_source = a->model_source;
    t->data = a->dataset;
    t->cache_dir = a->cache_dir && a->cache_dir[0] ? a->cache_dir : NULL;
    t->batch = (int)a->batch;
    t->sync = (int)a->sync;
    t->staleness = a->staleness;
    t->rank = a->rank;
    t->workers = a->workers;
    t->seed = a->seed;
    t->ps_addrs = a->ps_addrs;
    size_t tl = a->ps_token.len < SMLT_MAX_TOKEN ? a->ps_token.len : SMLT_MAX_TOKEN;
    memcpy(ps_token, a->ps_token.data, tl);
    ps_token[tl] = '\0';
    t->token = ps_token;
    t->start_step = a->start_step;
    t->max_steps = a->max_steps;
    t->total_steps = a->total_steps;
    t->deadline = a->has_deadline_ms && a->deadline_ms ? t_recv + a->deadline_ms / 1000.0 : 0;
    if (deadline > 0 && (t->deadline == 0 || deadline < t->deadline))
        t->deadline = deadline;
    t->evaluate = a->has_evaluate && a->evaluate;
    t->timeout_ms = a->has_timeout_ms ? (int)a->timeout_ms : 0;
    t->step_base = a->has_step_base ? a->step_base : 0;
    t->epoch_base = a->has_epoch_base ? a->epoch_base : 0;
    t->stop_at_epoch_end = a->has_stop_at_epoch_end && a->stop_at_epoch_end;
    t->chaos_delay_us = a->has_chaos_delay_us ? a->chaos_delay_us : 0;
    t->data_opts.label_col = a->has_label_column ? a->label_column : 0;
    t->data_opts.header = a->has_header ? (int)a->header : DATA_LOAD_HEADER_AUTO;
    t->data_opts.scaling = a->has_scale ? (int)a->scale : DATA_SET_SCALE_NONE;
}

/* Without total_steps (epochs * steps per epoch: it needs the dataset's size, which the run
 * loads anyway) a first zero-step run prepares everything and reports steps_per_epoch; sets
 * t->total_steps from it. Returns 0, or the run's error (r says why). */
static int size_task(struct worker *w, const Smlt__Assignment *a, struct worker_task *t,
                     struct worker_report *r)
{
    if (t->total_steps)
        return 0;
    struct worker_task probe = *t;
    probe.total_steps = probe.start_step;
    probe.max_steps = 0;
    probe.stop_at_epoch_end = 0;
    int rc = worker_run(w, &probe, r, NULL, NULL);
    if (rc)
        return rc;
    uint32_t epochs = a->has_epochs ? a->epochs : 1;
    t->total_steps = t->step_base +
                     r->steps_per_epoch * (epochs > t->epoch_base ? epochs - t->epoch_base : 0);
    return 0;
}

/* Trains the assigned slice and reports Done. Returns the response line (or NULL). */
static char *serve_slice(struct worker_invoke *s, const struct payload *p, Smlt__Assignment *a,
                         double t_recv, const struct worker_invoke_opts *o)
{
    struct link *l = &s->l;
    struct worker_report r;
    memset(&r, 0, sizeof r);
    r.eval_epoch = -1;
    struct worker_task t;
    char ps_token[SMLT_MAX_TOKEN + 1];
    task_of(a, t_recv, o ? o->deadline : 0, &t, ps_token);
    if (a->has_ps_tls && a->ps_tls)
        t.tls = (struct worker_tls){.on = 1, .ca = s->env_ca, .ca_pem = p->tls_ca,
                                    .cert = s->env_cert, .key = s->env_key};
    int rc = size_task(s->w, a, &t, &r);
    if (rc) {
        report_done(l, p->inv, &r, 1);
        return response(p->inv, &r, r.err);
    }
    struct run_ctx x = {.l = l, .inv = p->inv, .last_sent = smlt_now_mono(),
                        .every_s = (a->has_progress_ms && a->progress_ms ? a->progress_ms : 1000) /
                                   1000.0,
                        .last_eval = -1, .stop = o ? o->stop : NULL};
    double init_before = r.init_s;
    int cold_before = r.cold;
    rc = worker_run(s->w, &t, &r, on_progress, &x);
    r.init_s += init_before;
    r.cold |= cold_before;
    report_done(l, p->inv, &r, rc != 0);
    return response(p->inv, &r, rc ? r.err : NULL);
}

int worker_invoke_serve(struct worker_invoke *s, const char *payload,
                     const struct worker_invoke_opts *o, char **resp, char *err, size_t errlen)
{
    struct worker_report r;
    memset(&r, 0, sizeof r);
    r.eval_epoch = -1;
    *resp = NULL;
    struct payload p;
    char msg[512];
    int rc = payload_parse(payload, &p, msg, sizeof msg);
    if (rc) {
        json_decref(p.root);
        smlt_set_err(err, errlen, "%s", msg);
        *resp = response(NULL, &r, msg);
        return *resp ? rc : SMLT_ENOMEM;
    }
    double t_recv = smlt_now_mono();
    s->l.respond_by = o ? o->respond_by : 0;
    s->l.halt = o ? o->stop : NULL;
    Smlt__Assignment *a = serve_hello(s, &p);
    if (!a)
        *resp = response(p.inv, &r, s->l.errmsg);
    else
        *resp = serve_slice(s, &p, a, t_recv, o);
    if (a)
        smlt__assignment__free_unpacked(a, NULL);
    s->l.respond_by = 0;
    s->l.halt = NULL;
    json_decref(p.root);
    return *resp ? 0 : SMLT_ENOMEM;
}

/* ---- the local runtime's pipe ------------------------------------------------------------ */

void worker_invoke_init_process(void)
{
    openblas_set_num_threads(1);
    /* The platform may go away while an invocation runs (the local runtime is the
     * coordinator): the response then goes nowhere, and the loop ends at end of input. */
    signal(SIGPIPE, SIG_IGN);
}

int worker_invoke_main(void)
{
    smlt_log_init("smlt-worker", SMLT_LOG_INFO);
    worker_invoke_init_process();
    struct worker_invoke *s = worker_invoke_new();
    char *line = malloc(SMLT_MAX_INVOCATION + 2);
    if (!s || !line) {
        fprintf(stderr, "smlt-worker: out of memory\n");
        worker_invoke_free(s);
        free(line);
        return 1;
    }
    while (fgets(line, SMLT_MAX_INVOCATION + 2, stdin)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n')
            line[--n] = '\0';
        if (!n)
            continue;
        char *resp = NULL, err[512];
        worker_invoke_serve(s, line, NULL, &resp, err, sizeof err);
        printf("%s\n", resp ? resp : "{\"status\":\"failed\",\"error\":\"out of memory\"}");
        fflush(stdout);
        free(resp);
    }
    free(line);
    worker_invoke_free(s);
    return 0;
}
