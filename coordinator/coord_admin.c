/* coord_admin.c: the asynchronous admin client (see coord_admin.h).
 *
 * A queue is a list of calls guarded by a mutex, one thread that takes them in order, and a
 * pipe whose read end is an event on the coordinator's loop: the thread writes a byte when a
 * call ends, and the loop delivers the ended calls' callbacks in order. The queue's shared
 * part (struct admin_q) is reference-counted between the loop and the thread, so that
 * coord_admin_free() never waits for a call that is stuck on a dead shard: it interrupts the
 * call, drops its reference and returns; the thread frees the rest when the call comes back. */
#include "coord_admin.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/thread.h>

#include "smlt_client_int.h"
#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_util.h"
#include "worker_py.h"
#include "worker_setup.h"

#define ADMIN_DEFAULT_TIMEOUT_MS 30000

struct call {
    uint64_t id;
    struct coord_admin_req req;
    struct coord_admin_res res;
    coord_admin_fn cb;
    void *arg;
    int canceled;
    struct call *next;
};

/* What the loop and the thread share (under mu). */
struct admin_q {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                  /* the loop's coord_admin and the thread */
    int closing;               /* coord_admin_free(): the thread exits when idle */
    int thread_started;
    struct call *queue, **queue_tail; /* waiting */
    struct call *running;
    struct smlt_client *client; /* the running call's client, for an interrupt */
    struct call *done, **done_tail;   /* ended, callbacks not yet delivered */
    int wake_w;                /* the pipe's write end (-1 once the loop side is gone) */
};

struct coord_admin {
    struct event_base *base;
    struct admin_q *q;
    int wake_r;
    struct event *wake_ev;
    uint64_t next_id;
    struct coord_admin_stats st;
};

static void call_free(struct call *k)
{
    free(k->req.hosts);
    free(k->res.stats);
    free(k->res.stats_rc);
    free(k->res.params);
    free(k->res.state);
    free(k);
}

static void q_unref(struct admin_q *q)
{
    pthread_mutex_lock(&q->mu);
    int left = --q->refs;
    pthread_mutex_unlock(&q->mu);
    if (left)
        return;
    while (q->queue) {
        struct call *k = q->queue;
        q->queue = k->next;
        call_free(k);
    }
    while (q->done) {
        struct call *k = q->done;
        q->done = k->next;
        call_free(k);
    }
    if (q->wake_w >= 0)
        close(q->wake_w);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

/* ---- the thread -------------------------------------------------------------------------- */

static void res_err(struct coord_admin_res *r, int rc, const char *msg)
{
    r->rc = rc;
    snprintf(r->err, sizeof r->err, "%s", msg && msg[0] ? msg : smlt_strerror(rc));
}

static void run_disconnect(struct admin_q *q, struct smlt_client *cl)
{
    pthread_mutex_lock(&q->mu);
    q->client = NULL;
    pthread_mutex_unlock(&q->mu);
    smlt_client_close(cl);
}

/* Connects the call's client, published first so that a cancel can interrupt the connecting
 * too. Returns it or NULL (res set). */
static struct smlt_client *run_connect(struct admin_q *q, struct call *k, const char *addrs)
{
    struct smlt_client_opts o = {.token = k->req.token,
                                 .admin = 1,
                                 .timeout_ms = k->req.timeout_ms,
                                 .retries = -1};
    char err[512] = "";
    struct smlt_client *cl = smlt_client_create(&o, err, sizeof err);
    if (!cl) {
        res_err(&k->res, SMLT_EINVAL, err);
        return NULL;
    }
    pthread_mutex_lock(&q->mu);
    int canceled = k->canceled;
    q->client = canceled ? NULL : cl;
    pthread_mutex_unlock(&q->mu);
    int rc = canceled ? SMLT_ECANCELED : smlt_client_open(cl, addrs, err, sizeof err);
    if (rc) {
        run_disconnect(q, cl);
        res_err(&k->res, rc, rc == SMLT_ECANCELED ? "canceled" : err);
        return NULL;
    }
    return cl;
}

static void run_stats(struct smlt_client *cl, struct call *k)
{
    uint32_t n = smlt_client_num_shards(cl);
    struct coord_admin_res *r = &k->res;
    r->stats = calloc(n ? n : 1, sizeof *r->stats);
    r->stats_rc = calloc(n ? n : 1, sizeof *r->stats_rc);
    if (!r->stats || !r->stats_rc) {
        res_err(r, SMLT_ENOMEM, NULL);
        return;
    }
    r->nshards = n;
    double t0 = smlt_now_mono();
    for (uint32_t i = 0; i < n; i++) {
        /* One dead shard costs one timeout; the call as a whole stops at its own bound. */
        if ((smlt_now_mono() - t0) * 1000 > k->req.timeout_ms) {
            r->stats_rc[i] = SMLT_EAGAIN; /* not asked: the call's time went to another */
            continue;
        }
        r->stats_rc[i] = smlt_shard_stats(cl, i, &r->stats[i]);
        if (r->stats_rc[i] == SMLT_ECANCELED) {
            res_err(r, SMLT_ECANCELED, "canceled");
            return;
        }
    }
}

static void run_export(struct smlt_client *cl, struct call *k)
{
    struct coord_admin_res *r = &k->res;
    uint64_t n = smlt_client_num_params(cl);
    r->params = malloc((n ? n : 1) * sizeof *r->params);
    r->state = malloc((n ? n : 1) * 2 * sizeof *r->state);
    if (!r->params || !r->state) {
        res_err(r, SMLT_ENOMEM, NULL);
        return;
    }
    r->nparams = n;
    int rc = smlt_export(cl, r->params, r->state, &r->nstate);
    if (rc)
        res_err(r, rc, smlt_client_errmsg(cl));
}

/* Hosts the shards placed on pool nodes (NodeHost), in order. Returns 0, or the first
 * refusal's code (res set). */
static int run_hosts(struct call *k)
{
    struct coord_admin_req *req = &k->req;
    for (uint32_t i = 0; i < req->nhosts; i++) {
        const struct coord_admin_host *h = &req->hosts[i];
        struct smlt_node_host nh = {.route = h->route, .job = h->job, .shard = h->shard,
                                    .token = req->job_token, .admin_token = req->token,
                                    .memory_bytes = h->memory_bytes, .backup = h->backup};
        char err[400] = "";
        int ms = req->timeout_ms < 10000 ? req->timeout_ms : 10000;
        int rc = smlt_node_host(h->node, req->pool_token, &nh, ms, err, sizeof err);
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "placing shard %u%s: %.400s", h->shard,
                     h->backup ? "'s backup" : "", err);
            res_err(&k->res, rc, msg);
            return rc;
        }
    }
    return 0;
}

static void run_call(struct admin_q *q, struct call *k)
{
    struct coord_admin_req *req = &k->req;
    struct coord_admin_res *r = &k->res;
    char err[512] = "";
    int rc = 0;
    r->op = req->op;
    if (req->nhosts && run_hosts(k) != 0)
        return;
    if (req->op == COORD_ADMIN_SETUP) {
        /* (The client smlt_job_setup() makes is not ours until it returns: bounded by the
         * timeout, not interruptible.) */
        req->conf.job = req->job;
        req->conf.checkpoint_dir = req->checkpoint_dir[0] ? req->checkpoint_dir : NULL;
        if (req->path[0])
            rc = worker_setup_python(req->addrs, req->token, req->path, &req->conf,
                                     &r->nparams, err, sizeof err);
        else
            rc = worker_setup_job(req->addrs, req->token, req->model, &req->conf, err,
                                  sizeof err);
        if (rc)
            res_err(r, rc, err);
        return;
    }
    struct smlt_client *cl = run_connect(q, k, req->addrs);
    if (!cl)
        return;
    switch (req->op) {
    case COORD_ADMIN_STATS:
        run_stats(cl, k);
        break;
    case COORD_ADMIN_FREEZE:
        rc = smlt_freeze_at_boundary(cl, req->base, req->align, &r->step);
        break;
    case COORD_ADMIN_UNFREEZE:
        rc = smlt_unfreeze(cl);
        break;
    case COORD_ADMIN_STOP_AT:
        rc = smlt_stop_at(cl, &r->step);
        break;
    case COORD_ADMIN_RESHARD:
        rc = smlt_reshard(cl, req->new_addrs, &r->step, err, sizeof err);
        break;
    case COORD_ADMIN_UPDATE_CONF:
        rc = smlt_update_conf(cl, NULL, NULL, &req->workers);
        break;
    case COORD_ADMIN_EXPORT:
        run_export(cl, k);
        break;
    case COORD_ADMIN_SAVE:
        rc = smlt_model_save(cl, req->path, req->step, err, sizeof err);
        break;
    case COORD_ADMIN_SHUTDOWN:
        rc = smlt_shutdown_shards(cl);
        break;
    case COORD_ADMIN_RESTORE:
        rc = smlt_restore(cl, req->step, &r->step);
        break;
    case COORD_ADMIN_CHECKPOINT_EVERY:
        rc = smlt_set_checkpoint_every(cl, req->step);
        break;
    case COORD_ADMIN_SET_BACKUP:
        rc = smlt_set_backup(cl, req->shard, req->new_addrs);
        break;
    case COORD_ADMIN_PROMOTE:
        rc = smlt_promote(cl, req->shard, req->new_addrs);
        break;
    case COORD_ADMIN_SETUP:
        break;
    }
    if (rc)
        res_err(r, rc, err[0] ? err : smlt_client_errmsg(cl));
    run_disconnect(q, cl);
}

static void *admin_thread(void *arg)
{
    struct admin_q *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->queue && !q->closing)
            pthread_cond_wait(&q->cv, &q->mu);
        if (!q->queue)
            break; /* closing and idle */
        struct call *k = q->queue;
        q->queue = k->next;
        if (!q->queue)
            q->queue_tail = &q->queue;
        k->next = NULL;
        q->running = k;
        int canceled = k->canceled;
        pthread_mutex_unlock(&q->mu);
        double t0 = smlt_now_mono();
        if (canceled)
            res_err(&k->res, SMLT_ECANCELED, "canceled");
        else
            run_call(q, k);
        k->res.seconds = smlt_now_mono() - t0;
        pthread_mutex_lock(&q->mu);
        q->running = NULL;
        *q->done_tail = k;
        q->done_tail = &k->next;
        if (q->wake_w >= 0) {
            char b = 1;
            ssize_t w = write(q->wake_w, &b, 1); /* a full pipe already wakes the loop */
            (void)w;
        }
    }
    pthread_mutex_unlock(&q->mu);
    q_unref(q);
    return NULL;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct coord_admin *a = arg;
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    struct admin_q *q = a->q;
    pthread_mutex_lock(&q->mu);
    struct call *list = q->done;
    q->done = NULL;
    q->done_tail = &q->done;
    pthread_mutex_unlock(&q->mu);
    while (list) {
        struct call *k = list;
        list = k->next;
        if (k->res.rc == SMLT_ECANCELED)
            a->st.canceled++;
        else if (k->res.rc)
            a->st.failed++;
        if (a->st.queued)
            a->st.queued--;
        if (k->cb)
            k->cb(&k->res, k->arg);
        call_free(k);
    }
}

struct coord_admin *coord_admin_new(struct event_base *base)
{
    /* The clients the thread makes must be safe to wake from the loop's thread. */
    static int threads_on;
    if (!threads_on && evthread_use_pthreads() == 0)
        threads_on = 1;
    struct coord_admin *a = calloc(1, sizeof *a);
    struct admin_q *q = calloc(1, sizeof *q);
    int p[2] = {-1, -1};
    if (!a || !q || pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(a);
        free(q);
        return NULL;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->refs = 1;
    q->queue_tail = &q->queue;
    q->done_tail = &q->done;
    q->wake_w = p[1];
    a->base = base;
    a->q = q;
    a->wake_r = p[0];
    a->wake_ev = event_new(base, p[0], EV_READ | EV_PERSIST, on_wake, a);
    if (!a->wake_ev || event_add(a->wake_ev, NULL) != 0) {
        coord_admin_free(a);
        return NULL;
    }
    return a;
}

uint64_t coord_admin_call(struct coord_admin *a, const struct coord_admin_req *req,
                          coord_admin_fn cb, void *arg)
{
    struct call *k = calloc(1, sizeof *k);
    if (!k)
        return 0;
    k->req = *req;
    k->res.op = req->op;
    if (k->req.timeout_ms <= 0)
        k->req.timeout_ms = ADMIN_DEFAULT_TIMEOUT_MS;
    k->cb = cb;
    k->arg = arg;
    k->id = ++a->next_id;
    struct admin_q *q = a->q;
    pthread_mutex_lock(&q->mu);
    if (!q->thread_started) {
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, admin_thread, q) != 0) {
            pthread_attr_destroy(&at);
            pthread_mutex_unlock(&q->mu);
            free(k);
            return 0;
        }
        pthread_attr_destroy(&at);
        q->thread_started = 1;
        q->refs++;
    }
    *q->queue_tail = k;
    q->queue_tail = &k->next;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    a->st.calls++;
    a->st.queued++;
    return k->id;
}

/* Marks k canceled; interrupts it if it is the running call. Under q->mu. */
static void cancel_locked(struct admin_q *q, struct call *k)
{
    k->canceled = 1;
    if (q->running == k && q->client)
        smlt_client_interrupt(q->client);
}

int coord_admin_cancel(struct coord_admin *a, uint64_t id)
{
    struct admin_q *q = a->q;
    int rc = SMLT_ENOTFOUND;
    pthread_mutex_lock(&q->mu);
    if (q->running && q->running->id == id) {
        cancel_locked(q, q->running);
        rc = 0;
    }
    for (struct call *k = q->queue; k && rc; k = k->next)
        if (k->id == id) {
            cancel_locked(q, k); /* the thread skips it and reports it canceled */
            rc = 0;
        }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void coord_admin_cancel_all(struct coord_admin *a)
{
    struct admin_q *q = a->q;
    pthread_mutex_lock(&q->mu);
    if (q->running)
        cancel_locked(q, q->running);
    for (struct call *k = q->queue; k; k = k->next)
        cancel_locked(q, k);
    pthread_mutex_unlock(&q->mu);
}

uint32_t coord_admin_pending(const struct coord_admin *a)
{
    return a->st.queued;
}

void coord_admin_stats(const struct coord_admin *a, struct coord_admin_stats *st)
{
    *st = a->st;
}

void coord_admin_free(struct coord_admin *a)
{
    if (!a)
        return;
    struct admin_q *q = a->q;
    if (q) {
        pthread_mutex_lock(&q->mu);
        if (q->running)
            cancel_locked(q, q->running);
        for (struct call *k = q->queue; k; k = k->next) {
            k->canceled = 1;
            k->cb = NULL;
        }
        for (struct call *k = q->done; k; k = k->next)
            k->cb = NULL;
        if (q->running)
            q->running->cb = NULL;
        q->closing = 1;
        if (q->wake_w >= 0)
            close(q->wake_w);
        q->wake_w = -1;
        pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
        q_unref(q);
    }
    if (a->wake_ev)
        event_free(a->wake_ev);
    if (a->wake_r >= 0)
        close(a->wake_r);
    free(a);
}
