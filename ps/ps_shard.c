/* ps_shard.c: a shard's parameters, aggregation and apply thread (see ps_shard.h). */
#include "ps_shard.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ps_ckpt.h"
#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_util.h"

/* Jobs on ranges up to this many elements run on the loop thread itself: their math takes tens
 * of microseconds, less than handing them to the apply thread and back (two context switches, a
 * futex and an eventfd on a VM). Larger ones go to the apply thread so the loop never stalls. */
#define PS_INLINE_MAX_ELEMS (256u << 10)

/* Buffers of range size the pool may hold: gradients in flight plus parameters. */
#define PS_POOL_CAP (SMLT_MAX_GRAD_BUFS + 4u)
#define NO_STEP UINT64_MAX

struct ps_buf {
    float *data;
    size_t bytes;
    int refs;    /* holders: current params, accumulator, a receiving connection, a job, pulls */
    int retired; /* from an earlier configuration: unmap when the last holder lets go */
};

enum job_kind { JOB_INIT, JOB_ALLOC, JOB_ACCUM, JOB_APPLY, JOB_SET, JOB_CKPT };

/* A checkpoint on its way to disk: the copy of the range (buffers kept and reused between
 * checkpoints, so their pages are faulted in once) and what goes with it. Owned by the shard;
 * the writer thread holds it while ck_busy. */
struct ckpt_task {
    struct ps_ckpt c; /* borrows the buffers below */
    float *params, *state;
    size_t pbytes, sbytes;
    uint64_t *tables;
    uint32_t tcap;
    char job[SMLT_MAX_NAME + 1];
    char dir[512];
    uint32_t keep;
};

struct ps_job {
    enum job_kind kind;
    struct ps_job *next;
    /* apply / set / accum */
    float *dst;
    float *src;
    float *grad;
    float scale;
    uint64_t t;
    struct ps_optim_conf optim;
    float *state;
    size_t n;
    /* apply bookkeeping for the completion: which rank's step this was (SSP/ASP) */
    uint32_t worker;
    uint64_t step;
    int bsp;
    uint64_t seq;
    /* set */
    float *vals; /* malloc'd copy of a partial range, or NULL */
    size_t off, len;
    int reset_state;
    size_t state_floats;
    /* init / alloc: buffers made on the thread */
    struct part_map *map;
    uint64_t lo;
    size_t nbufs;
    float *bufs[PS_POOL_CAP];
    size_t buf_bytes;
    float *new_state;
    size_t new_state_bytes;
    int err;
    double secs;
    /* accum: gradient noise statistics (PS_NOISE_*): squared norms of the sum before this
     * push (the step's first gradient), of this push, and of the sum after it (the last) */
    int noise;
    uint32_t pushes; /* pushes in the step once this one is added */
    double sq_acc, sq_g, sq_sum;
    /* ckpt: the copy to fill (src: the parameters, state: the optimizer state) */
    struct ckpt_task *ck;
};

#define PS_NOISE_FIRST 1 /* the sum so far is the step's first gradient: its norm too */
#define PS_NOISE_LAST 2  /* the step's last push: the norm of the whole sum */
#define PS_NOISE_ON 4
/* The noise statistics are measured on one step in this many (each costs two or three extra
 * reads of the range). Every shard samples the same steps (by version, which BSP keeps equal
 * across shards), so the coordinator can add the shards' sums. */
#define PS_NOISE_EVERY 4

struct ps_shard {
    uint32_t id;
    struct event_base *base;
    struct ps_shard_cbs cbs;
    void *arg;

    /* configuration */
    struct part_map *map;
    struct ps_shard_conf conf;
    uint64_t lo, hi;
    size_t n;
    int ready;
    int configuring;

    /* buffers */
    struct ps_buf pool[PS_POOL_CAP * 2];
    uint32_t npool;
    uint32_t allocating;
    float *cur;  /* published parameters */
    float *head; /* parameters after every submitted job ran (== cur when idle) */
    float *state;
    size_t state_bytes;

    /* resharding */
    uint64_t freeze_at;    /* UINT64_MAX: not frozen */
    int freeze_stop;       /* frozen because the job stops: pushes get SMLT_ECANCELED */
    int importing;         /* configured with await_import, final import not yet in */

    /* aggregation */
    uint64_t version, clock;
    uint64_t updates_submitted;
    uint64_t seq_submitted, seq_done; /* parameter writes: submitted, visible */
    float *accum;
    uint32_t count;    /* BSP: pushes counted into this step */
    int step_closed;   /* BSP: apply for `version` submitted */
    int noise_step;         /* BSP: this step's gradient norms are measured */
    double noise_small;     /* sum of the step's per-push squared norms so far */
    uint64_t *last_counted; /* per rank, NO_STEP if none */
    uint64_t *last_applied; /* per rank (SSP clock) */
    uint32_t nranks;

    struct ps_shard_stats st;

    /* apply thread */
    pthread_t thr;
    int have_thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ps_job *q_head, *q_tail;     /* to the thread */
    struct ps_job *done_head, *done_tail; /* back from it */
    int busy;
    int stop;
    int efd;
    struct event *wake_ev;
    int pumping;
    unsigned jobs_out;   /* submitted, not completed */
    unsigned inline_out; /* of which queued to run inline */
    struct ps_job *l_head, *l_tail; /* inline queue */

    /* checkpoints: the task and the writer thread (started at the first checkpoint) */
    struct ckpt_task *ck;
    pthread_t ck_thr;
    int ck_have_thr;
    pthread_mutex_t ck_mu; /* guards the fields below and the writer's counters in st */
    pthread_cond_t ck_cv;
    int ck_busy, ck_go, ck_stop;
};

/* ---- memory ------------------------------------------------------------------------------ */

/* Maps and pre-faults a buffer (huge pages where the kernel allows: first touch of fresh pages
 * costs about 11 us per 4 KiB page on these machines, so it is paid once, on the apply thread). */
static float *big_alloc(size_t bytes)
{
    if (bytes == 0)
        bytes = 64;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    memset(p, 0, bytes);
    return p;
}

static void big_free(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes ? bytes : 64);
}

static struct ps_buf *pool_find(struct ps_shard *s, const float *p)
{
    for (uint32_t i = 0; i < s->npool; i++)
        if (s->pool[i].data && p >= s->pool[i].data &&
            (const char *)p < (const char *)s->pool[i].data + (s->pool[i].bytes ? s->pool[i].bytes : 64))
            return &s->pool[i];
    return NULL;
}

static void pool_add(struct ps_shard *s, float *data, size_t bytes, int refs)
{
    if (s->npool >= sizeof s->pool / sizeof s->pool[0]) {
        big_free(data, bytes);
        return;
    }
    s->pool[s->npool++] = (struct ps_buf){.data = data, .bytes = bytes, .refs = refs};
    s->st.bufs_allocated++;
}

static void buf_ref(struct ps_shard *s, float *p)
{
    struct ps_buf *b = pool_find(s, p);
    if (b)
        b->refs++;
}

static void buf_unref(struct ps_shard *s, const float *p)
{
    if (!p)
        return;
    struct ps_buf *b = pool_find(s, p);
    if (!b || b->refs <= 0) {
        log_error("shard %u: unref of a buffer not held (%p)", s->id, (const void *)p);
        return;
    }
    if (--b->refs > 0)
        return;
    if (b->retired || s->npool > PS_POOL_CAP) {
        big_free(b->data, b->bytes);
        s->st.bufs_allocated--;
        *b = s->pool[--s->npool];
        return;
    }
    if (s->cbs.on_buffer_free)
        s->cbs.on_buffer_free(s, s->arg);
}

/* ---- the apply thread -------------------------------------------------------------------- */

/* Sizes a checkpoint's copy buffers (apply thread; pre-faulted once, then reused). */
static int ckpt_bufs(struct ckpt_task *t, size_t pb, size_t sb)
{
    if (t->pbytes != pb || !t->params) {
        big_free(t->params, t->pbytes);
        t->params = big_alloc(pb);
        t->pbytes = pb;
    }
    if (t->sbytes != sb || (sb && !t->state)) {
        big_free(t->state, t->sbytes);
        t->state = sb ? big_alloc(sb) : NULL;
        t->sbytes = sb;
    }
    return !t->params || (sb && !t->state) ? SMLT_ENOMEM : 0;
}

static void job_run(struct ps_job *j)
{
    double t0 = smlt_now_mono();
    switch (j->kind) {
    case JOB_INIT: {
        size_t bytes = j->n * sizeof(float);
        j->bufs[0] = big_alloc(bytes);
        j->new_state = j->new_state_bytes ? big_alloc(j->new_state_bytes) : NULL;
        if (!j->bufs[0] || (j->new_state_bytes && !j->new_state)) {
            j->err = SMLT_ENOMEM;
            break;
        }
        part_map_init_values(j->map, j->lo, j->lo + j->n, j->bufs[0]);
        /* A job that checkpoints gets its copy buffers now: faulting in a 25M-float range's
         * copy on the first checkpoint took 0.5 s of the apply thread. Failure is not fatal:
         * the checkpoint tries again. */
        if (j->ck)
            ckpt_bufs(j->ck, bytes, j->new_state_bytes);
        for (size_t i = 1; i < j->nbufs; i++)
            if (!(j->bufs[i] = big_alloc(bytes)))
                break;
        j->buf_bytes = bytes;
        break;
    }
    case JOB_ALLOC:
        for (size_t i = 0; i < j->nbufs; i++)
            if (!(j->bufs[i] = big_alloc(j->buf_bytes)))
                break;
        break;
    case JOB_ACCUM:
        if (j->noise & PS_NOISE_FIRST)
            j->sq_acc = ps_optim_sumsq(j->dst, j->n);
        if (j->noise & PS_NOISE_ON)
            j->sq_g = ps_optim_sumsq(j->grad, j->n);
        ps_optim_accumulate(j->dst, j->grad, j->n);
        if (j->noise & PS_NOISE_LAST)
            j->sq_sum = ps_optim_sumsq(j->dst, j->n);
        break;
    case JOB_APPLY:
        ps_optim_apply(&j->optim, j->t, j->dst, j->src, j->grad, j->scale, j->state, j->n);
        break;
    case JOB_CKPT: {
        struct ckpt_task *t = j->ck;
        size_t pb = j->n * sizeof(float), sb = j->state_floats * j->n * sizeof(float);
        if (ckpt_bufs(t, pb, sb) != 0) {
            j->err = SMLT_ENOMEM;
            break;
        }
        memcpy(t->params, j->src, pb);
        if (sb)
            memcpy(t->state, j->state, sb);
        t->c.params = t->params;
        t->c.state = t->state;
        break;
    }
    case JOB_SET:
        if (j->vals) {
            if (j->dst != j->src)
                memcpy(j->dst, j->src, j->n * sizeof(float));
            memcpy(j->dst + j->off, j->vals, j->len * sizeof(float));
        }
        if (j->reset_state && j->state) {
            for (size_t k = 0; k < j->state_floats; k++)
                memset(j->state + k * j->n + j->off, 0, j->len * sizeof(float));
        }
        break;
    }
    j->secs = smlt_now_mono() - t0;
}

static void *apply_thread(void *arg)
{
    struct ps_shard *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->q_head && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->q_head && s->stop)
            break;
        struct ps_job *j = s->q_head;
        s->q_head = j->next;
        if (!s->q_head)
            s->q_tail = NULL;
        s->busy = 1;
        pthread_mutex_unlock(&s->mu);
        job_run(j);
        pthread_mutex_lock(&s->mu);
        s->busy = 0;
        j->next = NULL;
        if (s->done_tail)
            s->done_tail->next = j;
        else
            s->done_head = j;
        s->done_tail = j;
        uint64_t one = 1;
        ssize_t w = write(s->efd, &one, sizeof one);
        (void)w;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void job_complete(struct ps_shard *s, struct ps_job *j);

/* Runs completions of finished jobs (loop thread). */
static void run_done(struct ps_shard *s)
{
    pthread_mutex_lock(&s->mu);
    struct ps_job *j = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (j) {
        struct ps_job *next = j->next;
        job_complete(s, j);
        j = next;
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct ps_shard *s = arg;
    uint64_t v;
    ssize_t r = read(s->efd, &v, sizeof v);
    (void)r;
    run_done(s);
}

static void submit(struct ps_shard *s, struct ps_job *j)
{
    j->next = NULL;
    /* Small jobs run inline (from pump()) unless the thread still has work: order is kept. */
    int inline_ok = !s->have_thr || s->inline_out > 0 ||
                    (s->jobs_out == 0 && j->n <= PS_INLINE_MAX_ELEMS && j->kind != JOB_INIT &&
                     j->kind != JOB_ALLOC);
    s->jobs_out++;
    if (inline_ok) {
        s->inline_out++;
        if (s->l_tail)
            s->l_tail->next = j;
        else
            s->l_head = j;
        s->l_tail = j;
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (s->q_tail)
        s->q_tail->next = j;
    else
        s->q_head = j;
    s->q_tail = j;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Runs the jobs queued to run inline, and their completions. Called at the end of public
 * functions, once the shard's state is consistent. */
static void pump(struct ps_shard *s)
{
    if (s->pumping)
        return;
    s->pumping = 1;
    while (s->l_head) {
        struct ps_job *j = s->l_head;
        s->l_head = j->next;
        if (!s->l_head)
            s->l_tail = NULL;
        job_run(j);
        s->inline_out--;
        job_complete(s, j);
    }
    s->pumping = 0;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

struct ps_shard *ps_shard_new(uint32_t id, struct event_base *base, const struct ps_shard_cbs *cbs,
                              void *arg)
{
    struct ps_shard *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->id = id;
    s->base = base;
    s->freeze_at = UINT64_MAX;
    if (cbs)
        s->cbs = *cbs;
    s->arg = arg;
    s->efd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->ck_mu, NULL);
    pthread_cond_init(&s->ck_cv, NULL);
    if (base) {
        s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->efd < 0)
            goto fail;
        s->wake_ev = event_new(base, s->efd, EV_READ | EV_PERSIST, on_wake, s);
        if (!s->wake_ev || event_add(s->wake_ev, NULL) != 0)
            goto fail;
        if (pthread_create(&s->thr, NULL, apply_thread, s) != 0)
            goto fail;
        s->have_thr = 1;
    }
    return s;
fail:
    ps_shard_free(s);
    return NULL;
}

void ps_shard_drain(struct ps_shard *s)
{
    pump(s);
    if (!s->have_thr)
        return;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->q_head || s->busy)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        run_done(s);
        pthread_mutex_lock(&s->mu);
        int idle = !s->q_head && !s->busy && !s->done_head;
        pthread_mutex_unlock(&s->mu);
        if (idle)
            break;
    }
}

void ps_shard_free(struct ps_shard *s)
{
    if (!s)
        return;
    if (s->have_thr) {
        ps_shard_drain(s);
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thr, NULL);
    }
    if (s->ck_have_thr) {
        pthread_mutex_lock(&s->ck_mu);
        s->ck_stop = 1;
        pthread_cond_broadcast(&s->ck_cv);
        pthread_mutex_unlock(&s->ck_mu);
        pthread_join(s->ck_thr, NULL); /* after the write in progress, if any */
    }
    if (s->ck) {
        big_free(s->ck->params, s->ck->pbytes);
        big_free(s->ck->state, s->ck->sbytes);
        free(s->ck->tables);
        free(s->ck->c.map_pb);
        free(s->ck);
    }
    if (s->wake_ev)
        event_free(s->wake_ev);
    if (s->efd >= 0)
        close(s->efd);
    for (uint32_t i = 0; i < s->npool; i++)
        big_free(s->pool[i].data, s->pool[i].bytes);
    big_free(s->state, s->state_bytes);
    free(s->last_counted);
    free(s->last_applied);
    part_map_free(s->map);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->ck_mu);
    pthread_cond_destroy(&s->ck_cv);
    free(s);
}

static int ranks_resize(struct ps_shard *s, uint32_t n)
{
    if (n <= s->nranks)
        return 0;
    uint64_t *a = realloc(s->last_counted, sizeof *a * n);
    if (!a)
        return SMLT_ENOMEM;
    s->last_counted = a;
    uint64_t *b = realloc(s->last_applied, sizeof *b * n);
    if (!b)
        return SMLT_ENOMEM;
    s->last_applied = b;
    for (uint32_t i = s->nranks; i < n; i++)
        s->last_counted[i] = s->last_applied[i] = NO_STEP;
    s->nranks = n;
    return 0;
}

static int conf_check(const struct ps_shard_conf *c, char *err, size_t errlen)
{
    if (c->mode < SMLT_SYNC_BSP || c->mode > SMLT_SYNC_ASP) {
        smlt_set_err(err, errlen, "sync: unknown mode %d", (int)c->mode);
        return SMLT_EINVAL;
    }
    if (c->workers == 0 || c->workers > SMLT_MAX_WORKERS) {
        smlt_set_err(err, errlen, "workers: %u outside 1..%u", c->workers, SMLT_MAX_WORKERS);
        return SMLT_EINVAL;
    }
    return ps_optim_conf_check(&c->optim, err, errlen);
}

int ps_shard_configure(struct ps_shard *s, struct part_map *map, const struct ps_shard_conf *conf,
                       char *err, size_t errlen)
{
    int rc;
    if (!map || s->id >= map->nshards) {
        smlt_set_err(err, errlen, "shard id %u not in the map (%u shards)", s->id,
                     map ? map->nshards : 0);
        rc = SMLT_EINVAL;
        goto fail;
    }
    if ((rc = conf_check(conf, err, errlen)) != 0)
        goto fail;
    if (s->jobs_out || s->configuring) {
        smlt_set_err(err, errlen, "shard busy applying updates; configure again when idle");
        rc = SMLT_EBUSY;
        goto fail;
    }
    /* Retire the old configuration's buffers; those still sending to clients go when done. */
    for (uint32_t i = 0; i < s->npool;) {
        struct ps_buf *b = &s->pool[i];
        if (b->data == s->cur || b->data == s->accum) {
            b->refs--;
        }
        if (b->refs <= 0) {
            big_free(b->data, b->bytes);
            s->st.bufs_allocated--;
            *b = s->pool[--s->npool];
            continue;
        }
        b->retired = 1;
        i++;
    }
    big_free(s->state, s->state_bytes);
    s->state = NULL;
    s->state_bytes = 0;
    s->cur = s->head = s->accum = NULL;
    part_map_free(s->map);
    s->map = map;
    s->conf = *conf;
    s->lo = map->shards[s->id].lo;
    s->hi = map->shards[s->id].hi;
    s->n = (size_t)(s->hi - s->lo);
    s->version = s->clock = 0;
    s->updates_submitted = 0;
    s->seq_submitted = s->seq_done = 0;
    s->count = 0;
    s->step_closed = 0;
    for (uint32_t i = 0; i < s->nranks; i++)
        s->last_counted[i] = s->last_applied[i] = NO_STEP;
    if ((rc = ranks_resize(s, conf->workers)) != 0)
        return rc;
    s->ready = 0;
    s->configuring = 1;
    s->freeze_at = UINT64_MAX;
    s->freeze_stop = 0;
    s->importing = conf->await_import;

    struct ps_job *j = calloc(1, sizeof *j);
    if (!j)
        return SMLT_ENOMEM;
    j->kind = JOB_INIT;
    j->map = map;
    j->lo = s->lo;
    j->n = s->n;
    /* Parameters plus buffers for one step's pushes, so the first steps do not wait. */
    size_t want = 1 + (conf->workers < 4 ? conf->workers : 4) + 1;
    j->nbufs = want;
    j->new_state_bytes = (size_t)ps_optim_state_per_param(conf->optim.kind) * s->n * sizeof(float);
    if (conf->ckpt_every && conf->ckpt_dir[0]) {
        pthread_mutex_lock(&s->ck_mu);
        int busy = s->ck_busy; /* the writer holds the copy: leave it to the first checkpoint */
        pthread_mutex_unlock(&s->ck_mu);
        if (!busy && (s->ck || (s->ck = calloc(1, sizeof *s->ck))))
            j->ck = s->ck;
    }
    submit(s, j);
    pump(s);
    return 0;
fail:
    part_map_free(map);
    return rc;
}

void ps_shard_set_id(struct ps_shard *s, uint32_t id)
{
    s->id = id;
}

int ps_shard_ready(const struct ps_shard *s)
{
    return s->ready;
}

/* ---- aggregation ------------------------------------------------------------------------- */

static uint64_t ssp_clock(const struct ps_shard *s)
{
    uint64_t c = UINT64_MAX;
    for (uint32_t r = 0; r < s->conf.workers && r < s->nranks; r++) {
        uint64_t v = s->last_applied[r] == NO_STEP ? 0 : s->last_applied[r] + 1;
        if (v < c)
            c = v;
    }
    return c == UINT64_MAX ? 0 : c;
}

static void submit_apply(struct ps_shard *s, float *grad, float scale, uint32_t worker,
                         uint64_t step, int bsp)
{
    struct ps_job *j = calloc(1, sizeof *j);
    if (!j) {
        log_error("shard %u: out of memory for an update; dropping it", s->id);
        buf_unref(s, grad);
        return;
    }
    j->kind = JOB_APPLY;
    j->src = s->head;
    j->dst = grad; /* the new parameters overwrite the gradient buffer */
    j->grad = grad;
    j->scale = scale;
    j->optim = s->conf.optim;
    j->t = ++s->updates_submitted; /* Adam's step count: updates in the order they apply */
    j->seq = ++s->seq_submitted;
    j->state = s->state;
    j->n = s->n;
    j->worker = worker;
    j->step = step;
    j->bsp = bsp;
    buf_ref(s, j->src);
    s->head = grad;
    submit(s, j);
}

/* BSP: the step has all its pushes; apply their average once the sums are in (FIFO). */
static void bsp_close_step(struct ps_shard *s)
{
    if (s->step_closed || !s->accum || s->count == 0)
        return;
    s->step_closed = 1;
    float *acc = s->accum;
    s->accum = NULL;
    submit_apply(s, acc, 1.0f / (float)s->count, 0, s->version, 1);
}

/* ---- checkpoints ------------------------------------------------------------------------- */

/* Writes a copied checkpoint (writer thread, or the only thread) and rotates old ones. */
static void ckpt_write(struct ps_shard *s, struct ckpt_task *t)
{
    double t0 = smlt_now_mono();
    char err[512] = "";
    uint64_t bytes = 0;
    int rc = ps_ckpt_write(t->dir, &t->c, &bytes, err, sizeof err);
    if (rc == 0)
        ps_ckpt_prune(t->dir, t->c.shard, t->keep);
    double secs = smlt_now_mono() - t0;
    if (rc)
        log_warn("shard %u: checkpoint of step %llu failed: %s", t->c.shard,
                 (unsigned long long)t->c.step, err);
    else
        log_debug("shard %u: checkpoint of step %llu written: %llu bytes in %.3f s", t->c.shard,
                  (unsigned long long)t->c.step, (unsigned long long)bytes, secs);
    pthread_mutex_lock(&s->ck_mu);
    if (rc == 0) {
        s->st.ckpt_written++;
        s->st.ckpt_last_step = t->c.step;
        s->st.ckpt_bytes = bytes;
        s->st.ckpt_write_seconds = secs;
        s->st.ckpt_write_seconds_total += secs;
    } else {
        s->st.ckpt_failed++;
    }
    s->ck_busy = 0;
    pthread_cond_broadcast(&s->ck_cv);
    pthread_mutex_unlock(&s->ck_mu);
}

static void *ckpt_thread(void *arg)
{
    struct ps_shard *s = arg;
    pthread_mutex_lock(&s->ck_mu);
    for (;;) {
        while (!s->ck_go && !s->ck_stop)
            pthread_cond_wait(&s->ck_cv, &s->ck_mu);
        if (s->ck_go) {
            s->ck_go = 0;
            struct ckpt_task *t = s->ck; /* only replaced while no write is in progress */
            pthread_mutex_unlock(&s->ck_mu);
            ckpt_write(s, t);
            pthread_mutex_lock(&s->ck_mu);
            continue;
        }
        break;
    }
    pthread_mutex_unlock(&s->ck_mu);
    return NULL;
}

/* Packs the map into t (malloc'd, replacing the previous one). */
static int ckpt_pack_map(const struct part_map *m, struct ckpt_task *t)
{
    Smlt__PartitionMap pm = SMLT__PARTITION_MAP__INIT;
    if (part_map_to_pb(m, &pm) != 0)
        return SMLT_ENOMEM;
    size_t len = smlt__partition_map__get_packed_size(&pm);
    uint8_t *b = malloc(len ? len : 1);
    if (b)
        smlt__partition_map__pack(&pm, b);
    part_map_pb_clear(&pm);
    if (!b)
        return SMLT_ENOMEM;
    free(t->c.map_pb);
    t->c.map_pb = b;
    t->c.map_len = len;
    return 0;
}

static void submit(struct ps_shard *s, struct ps_job *j);
static void pump(struct ps_shard *s);

/* After an update (loop thread): takes a checkpoint if the version is on the grid. The copy is
 * a job on the apply thread, queued now, so it runs before any later update touches the
 * optimizer state, and it holds the current parameter buffer, which nothing writes while held. */
static void ckpt_take(struct ps_shard *s)
{
    const struct ps_shard_conf *c = &s->conf;
    if (!c->ckpt_every || !c->ckpt_dir[0] || s->version == 0 || s->version % c->ckpt_every)
        return;
    pthread_mutex_lock(&s->ck_mu);
    int busy = s->ck_busy;
    pthread_mutex_unlock(&s->ck_mu);
    if (busy || s->seq_done != s->seq_submitted) {
        s->st.ckpt_skipped++;
        log_warn("shard %u: checkpoint of step %llu skipped: the previous one is still being "
                 "written", s->id, (unsigned long long)s->version);
        return;
    }
    if (s->have_thr && !s->ck_have_thr) {
        if (pthread_create(&s->ck_thr, NULL, ckpt_thread, s) != 0) {
            s->st.ckpt_failed++;
            log_error("shard %u: cannot start the checkpoint writer thread", s->id);
            return;
        }
        s->ck_have_thr = 1;
    }
    struct ckpt_task *t = s->ck;
    if (!t && !(t = s->ck = calloc(1, sizeof *t)))
        goto nomem;
    if (t->tcap < s->nranks) {
        uint64_t *x = realloc(t->tables, sizeof *x * 2 * s->nranks);
        if (!x)
            goto nomem;
        t->tables = x;
        t->tcap = s->nranks;
    }
    struct ps_job *j = calloc(1, sizeof *j);
    if (!j || ckpt_pack_map(s->map, t) != 0) {
        free(j);
        goto nomem;
    }
    snprintf(t->job, sizeof t->job, "%s", s->map->job ? s->map->job : "");
    snprintf(t->dir, sizeof t->dir, "%s", c->ckpt_dir);
    t->keep = c->ckpt_keep;
    t->c.shard = s->id;
    t->c.step = t->c.version = s->version;
    t->c.clock = s->clock;
    t->c.updates = s->updates_submitted;
    t->c.lo = s->lo;
    t->c.hi = s->hi;
    t->c.optim = (uint32_t)c->optim.kind;
    t->c.nstate = (uint32_t)ps_optim_state_per_param(c->optim.kind);
    t->c.nranks = s->nranks;
    t->c.last_counted = t->tables;
    t->c.last_applied = t->tables + s->nranks;
    memcpy(t->c.last_counted, s->last_counted, sizeof(uint64_t) * s->nranks);
    memcpy(t->c.last_applied, s->last_applied, sizeof(uint64_t) * s->nranks);
    t->c.job = t->job;
    pthread_mutex_lock(&s->ck_mu);
    s->ck_busy = 1;
    pthread_mutex_unlock(&s->ck_mu);
    j->kind = JOB_CKPT;
    j->ck = t;
    j->src = s->cur;
    j->state = s->state;
    j->n = s->n;
    j->state_floats = t->c.nstate;
    buf_ref(s, j->src);
    submit(s, j);
    pump(s);
    return;
nomem:
    s->st.ckpt_failed++;
    log_error("shard %u: out of memory for the checkpoint of step %llu", s->id,
              (unsigned long long)s->version);
}

void ps_shard_ckpt_wait(struct ps_shard *s)
{
    ps_shard_drain(s);
    pthread_mutex_lock(&s->ck_mu);
    while (s->ck_busy)
        pthread_cond_wait(&s->ck_cv, &s->ck_mu);
    pthread_mutex_unlock(&s->ck_mu);
}

static void job_complete(struct ps_shard *s, struct ps_job *j)
{
    s->jobs_out--;
    switch (j->kind) {
    case JOB_INIT:
        s->configuring = 0;
        if (j->err) {
            log_error("shard %u: configure failed: %s", s->id, smlt_strerror(j->err));
            for (size_t i = 0; i < j->nbufs; i++)
                big_free(j->bufs[i], j->buf_bytes);
            big_free(j->new_state, j->new_state_bytes);
            if (s->cbs.on_configured)
                s->cbs.on_configured(s, j->err, s->arg);
            break;
        }
        pool_add(s, j->bufs[0], j->buf_bytes, 1);
        s->cur = s->head = j->bufs[0];
        for (size_t i = 1; i < j->nbufs; i++)
            if (j->bufs[i])
                pool_add(s, j->bufs[i], j->buf_bytes, 0);
        s->state = j->new_state;
        s->state_bytes = j->new_state_bytes;
        s->ready = !s->importing;
        if (s->cbs.on_configured)
            s->cbs.on_configured(s, 0, s->arg);
        if (s->cbs.on_buffer_free)
            s->cbs.on_buffer_free(s, s->arg);
        break;
    case JOB_ALLOC:
        s->allocating = 0;
        for (size_t i = 0; i < j->nbufs; i++) {
            if (!j->bufs[i])
                continue;
            if (j->buf_bytes == s->n * sizeof(float))
                pool_add(s, j->bufs[i], j->buf_bytes, 0);
            else
                big_free(j->bufs[i], j->buf_bytes);
        }
        if (s->cbs.on_buffer_free)
            s->cbs.on_buffer_free(s, s->arg);
        break;
    case JOB_ACCUM:
        buf_unref(s, j->grad);
        if (j->noise & PS_NOISE_ON) {
            s->noise_small += j->sq_g + ((j->noise & PS_NOISE_FIRST) ? j->sq_acc : 0);
            if ((j->noise & PS_NOISE_LAST) && j->pushes >= 2) {
                /* W gradients of batch b and their sum: |mean g_i|^2 estimates
                 * |G|^2 + tr(Sigma) / (W b), the mean |g_i|^2 estimates |G|^2 + tr(Sigma) / b. */
                double W = (double)j->pushes;
                double small = s->noise_small / W, big = j->sq_sum / (W * W);
                s->st.noise_g2 += (W * big - small) / (W - 1);
                s->st.noise_s += W * (small - big) / (W - 1);
                s->st.noise_steps++;
            }
        }
        break;
    case JOB_APPLY:
    case JOB_SET: {
        /* New parameters: dst becomes current; the job's hold on src and the current role's
         * hold on the old buffer go (pulls still sending it keep it alive). */
        float *old = s->cur;
        s->cur = j->dst;
        s->seq_done = j->seq;
        buf_unref(s, j->src);
        if (old)
            buf_unref(s, old);
        if (j->kind == JOB_APPLY) {
            s->version++;
            s->st.updates_applied++;
            s->st.apply_seconds += j->secs;
            smlt_hist_observe(&s->st.apply_hist, j->secs);
            if (j->bsp) {
                s->count = 0;
                s->step_closed = 0;
                s->clock = s->version;
            } else {
                if (j->worker < s->nranks &&
                    (s->last_applied[j->worker] == NO_STEP || j->step > s->last_applied[j->worker]))
                    s->last_applied[j->worker] = j->step;
                s->clock = ssp_clock(s);
            }
        }
        free(j->vals);
        if (s->cbs.on_advance)
            s->cbs.on_advance(s, s->arg);
        if (j->kind == JOB_APPLY)
            ckpt_take(s);
        break;
    }
    case JOB_CKPT:
        buf_unref(s, j->src);
        s->st.ckpt_copy_seconds = j->secs;
        if (j->err) {
            log_error("shard %u: no memory for the checkpoint of step %llu", s->id,
                      (unsigned long long)j->ck->c.step);
            pthread_mutex_lock(&s->ck_mu);
            s->st.ckpt_failed++;
            s->ck_busy = 0;
            pthread_mutex_unlock(&s->ck_mu);
        } else if (s->ck_have_thr) {
            pthread_mutex_lock(&s->ck_mu);
            s->ck_go = 1;
            pthread_cond_signal(&s->ck_cv);
            pthread_mutex_unlock(&s->ck_mu);
        } else {
            ckpt_write(s, j->ck); /* no threads (unit tests): write it now */
        }
        break;
    }
    free(j);
}

static int range_check(struct ps_shard *s, uint64_t map_version, char *err, size_t errlen)
{
    if (!s->map && !s->configuring) {
        smlt_set_err(err, errlen, "shard %u has no job configured", s->id);
        return SMLT_ENOTCONF;
    }
    if (!s->ready) {
        smlt_set_err(err, errlen, "shard %u is initializing its parameters", s->id);
        return SMLT_EAGAIN;
    }
    if (map_version != s->map->version) {
        smlt_set_err(err, errlen, "partition map version %llu is stale; current is %llu",
                     (unsigned long long)map_version, (unsigned long long)s->map->version);
        return SMLT_ESTALEMAP;
    }
    return 0;
}

int ps_shard_push_check(struct ps_shard *s, uint64_t map_version, uint32_t worker, uint64_t step,
                        uint64_t lo, uint64_t hi, char *err, size_t errlen)
{
    int rc = range_check(s, map_version, err, errlen);
    if (rc)
        return rc;
    if (lo != s->lo || hi != s->hi) {
        smlt_set_err(err, errlen, "push range [%llu, %llu) is not shard %u's range [%llu, %llu)",
                     (unsigned long long)lo, (unsigned long long)hi, s->id,
                     (unsigned long long)s->lo, (unsigned long long)s->hi);
        return SMLT_ERANGE;
    }
    if (worker >= s->conf.workers) {
        smlt_set_err(err, errlen, "worker rank %u outside 0..%u", worker, s->conf.workers - 1);
        return SMLT_EINVAL;
    }
    uint64_t last = s->last_counted[worker];
    if (last != NO_STEP && step <= last)
        return 1;
    if (s->freeze_at != UINT64_MAX && (s->conf.mode != SMLT_SYNC_BSP || step >= s->freeze_at)) {
        if (s->freeze_stop) {
            smlt_set_err(err, errlen, "the job is stopping at step %llu",
                         (unsigned long long)s->freeze_at);
            return SMLT_ECANCELED;
        }
        smlt_set_err(err, errlen, "shard %u is frozen for resharding; push again shortly", s->id);
        return SMLT_EAGAIN;
    }
    switch (s->conf.mode) {
    case SMLT_SYNC_BSP:
        if (step != s->version || s->step_closed) {
            smlt_set_err(err, errlen, "BSP step %llu not open: shard %u is at step %llu%s",
                         (unsigned long long)step, s->id, (unsigned long long)s->version,
                         s->step_closed ? " (being applied)" : "");
            return SMLT_ESTEP;
        }
        break;
    case SMLT_SYNC_SSP:
        if (step > s->clock + s->conf.staleness) {
            smlt_set_err(err, errlen, "SSP step %llu too far ahead: clock %llu, staleness %u",
                         (unsigned long long)step, (unsigned long long)s->clock, s->conf.staleness);
            return SMLT_ESTEP;
        }
        break;
    case SMLT_SYNC_ASP:
        break;
    }
    return 0;
}

float *ps_shard_buf_get(struct ps_shard *s)
{
    if (!s->ready)
        return NULL;
    size_t bytes = s->n * sizeof(float);
    for (uint32_t i = 0; i < s->npool; i++) {
        struct ps_buf *b = &s->pool[i];
        if (b->refs == 0 && !b->retired && b->bytes == bytes) {
            b->refs = 1;
            return b->data;
        }
    }
    if (!s->allocating && s->npool < PS_POOL_CAP) {
        struct ps_job *j = calloc(1, sizeof *j);
        if (j) {
            j->kind = JOB_ALLOC;
            j->buf_bytes = bytes;
            j->nbufs = PS_POOL_CAP - s->npool < 2 ? PS_POOL_CAP - s->npool : 2;
            s->allocating = 1;
            submit(s, j);
            pump(s);
            /* Inline mode allocated already: try once more. */
            if (!s->have_thr) {
                for (uint32_t i = 0; i < s->npool; i++) {
                    struct ps_buf *b = &s->pool[i];
                    if (b->refs == 0 && !b->retired && b->bytes == bytes) {
                        b->refs = 1;
                        return b->data;
                    }
                }
            }
        }
    }
    return NULL;
}

void ps_shard_buf_put(struct ps_shard *s, float *buf)
{
    if (buf)
        buf_unref(s, buf);
}

int ps_shard_push_commit(struct ps_shard *s, uint32_t worker, uint64_t step, float *buf,
                         char *err, size_t errlen)
{
    s->st.pushes_received++;
    int rc = ps_shard_push_check(s, s->map ? s->map->version : 0, worker, step, s->lo, s->hi,
                                 err, errlen);
    /* A push read into a buffer of an earlier configuration (the shard was reconfigured or
     * resharded while its payload arrived) belongs to a range that no longer exists here. */
    struct ps_buf *b = buf ? pool_find(s, buf) : NULL;
    if (rc == 0 && (!b || b->retired || b->bytes != s->n * sizeof(float))) {
        smlt_set_err(err, errlen, "shard %u was reconfigured while this push arrived; push again",
                     s->id);
        rc = SMLT_ESTALEMAP;
    }
    if (rc != 0) {
        buf_unref(s, buf);
        if (rc == 1)
            s->st.pushes_duplicate++;
        else
            s->st.pushes_rejected++;
        return rc;
    }
    s->last_counted[worker] = step;
    s->st.pushes_counted++;
    if (s->conf.mode == SMLT_SYNC_BSP) {
        if (!s->accum) {
            s->accum = buf; /* the first push of a step becomes the sum: no copy */
            s->noise_step = s->conf.workers >= 2 && s->version % PS_NOISE_EVERY == 0;
            s->noise_small = 0;
        } else {
            struct ps_job *j = calloc(1, sizeof *j);
            if (!j) {
                buf_unref(s, buf);
                s->last_counted[worker] = step ? step - 1 : NO_STEP;
                s->st.pushes_counted--;
                return SMLT_ENOMEM;
            }
            j->kind = JOB_ACCUM;
            j->dst = s->accum;
            j->grad = buf;
            j->n = s->n;
            j->pushes = s->count + 1;
            if (s->noise_step)
                j->noise = PS_NOISE_ON | (s->count == 1 ? PS_NOISE_FIRST : 0) |
                           (s->count + 1 >= s->conf.workers ? PS_NOISE_LAST : 0);
            submit(s, j);
        }
        s->count++;
        if (s->count >= s->conf.workers)
            bsp_close_step(s);
    } else {
        submit_apply(s, buf, 1.0f, worker, step, 0);
    }
    pump(s);
    return 0;
}

void ps_shard_count_duplicate(struct ps_shard *s)
{
    s->st.pushes_received++;
    s->st.pushes_duplicate++;
}

int ps_shard_pull_check(struct ps_shard *s, uint64_t map_version, uint64_t lo, uint64_t hi,
                        char *err, size_t errlen)
{
    int rc = range_check(s, map_version, err, errlen);
    if (rc)
        return rc;
    if (lo < s->lo || hi > s->hi || lo > hi) {
        smlt_set_err(err, errlen, "range [%llu, %llu) outside shard %u's [%llu, %llu)",
                     (unsigned long long)lo, (unsigned long long)hi, s->id,
                     (unsigned long long)s->lo, (unsigned long long)s->hi);
        return SMLT_ERANGE;
    }
    return 0;
}

const float *ps_shard_params_ref(struct ps_shard *s, uint64_t *version, uint64_t *clock)
{
    if (version)
        *version = s->version;
    if (clock)
        *clock = s->clock;
    if (!s->cur)
        return NULL;
    buf_ref(s, s->cur);
    return s->cur;
}

void ps_shard_params_unref(struct ps_shard *s, const float *p)
{
    if (p)
        buf_unref(s, p);
}

int ps_shard_set_params(struct ps_shard *s, uint64_t map_version, uint64_t lo, uint64_t hi,
                        float *vals, int owned_buf, int reset_state, uint64_t *seq, char *err,
                        size_t errlen)
{
    int rc = ps_shard_pull_check(s, map_version, lo, hi, err, errlen);
    if (rc) {
        if (owned_buf)
            buf_unref(s, vals);
        return rc;
    }
    struct ps_job *j = calloc(1, sizeof *j);
    if (!j) {
        if (owned_buf)
            buf_unref(s, vals);
        return SMLT_ENOMEM;
    }
    j->kind = JOB_SET;
    j->src = s->head;
    j->n = s->n;
    j->off = (size_t)(lo - s->lo);
    j->len = (size_t)(hi - lo);
    j->reset_state = reset_state;
    j->state = s->state;
    j->state_floats = (size_t)ps_optim_state_per_param(s->conf.optim.kind);
    if (owned_buf && lo == s->lo && hi == s->hi) {
        j->dst = vals; /* install the received buffer as the parameters */
    } else {
        /* A partial write: copy the current parameters into a free buffer, then the values. */
        j->dst = ps_shard_buf_get(s);
        j->vals = j->dst ? malloc(j->len * sizeof(float) + 1) : NULL;
        if (!j->vals) {
            if (j->dst)
                buf_unref(s, j->dst);
            free(j);
            if (owned_buf)
                buf_unref(s, vals);
            smlt_set_err(err, errlen, "no free buffer for a partial parameter write; retry");
            return SMLT_EAGAIN;
        }
        memcpy(j->vals, vals, j->len * sizeof(float));
        if (owned_buf)
            buf_unref(s, vals);
    }
    buf_ref(s, j->src);
    s->head = j->dst;
    j->seq = ++s->seq_submitted;
    if (seq)
        *seq = j->seq;
    submit(s, j);
    pump(s);
    return 0;
}

int ps_shard_update(struct ps_shard *s, const float *lr, const float *weight_decay,
                    const uint32_t *workers, const uint32_t *staleness, char *err, size_t errlen)
{
    struct ps_shard_conf c = s->conf;
    if (lr)
        c.optim.lr = *lr;
    if (weight_decay)
        c.optim.weight_decay = *weight_decay;
    if (workers)
        c.workers = *workers;
    if (staleness)
        c.staleness = *staleness;
    int rc = conf_check(&c, err, errlen);
    if (rc)
        return rc;
    if ((rc = ranks_resize(s, c.workers)) != 0)
        return rc;
    s->conf = c;
    if (s->ready && c.mode == SMLT_SYNC_BSP && s->count >= c.workers)
        bsp_close_step(s);
    else if (s->ready && c.mode == SMLT_SYNC_SSP) {
        uint64_t old = s->clock;
        s->clock = ssp_clock(s);
        if (s->clock != old && s->cbs.on_advance)
            s->cbs.on_advance(s, s->arg);
    }
    pump(s);
    return 0;
}

int ps_shard_set_checkpoint_every(struct ps_shard *s, uint64_t every, char *err, size_t errlen)
{
    if (!s->conf.ckpt_dir[0] || (every && !s->ck)) {
        snprintf(err, errlen, "the shard was configured without checkpoints");
        return SMLT_EINVAL;
    }
    s->conf.ckpt_every = every;
    return 0;
}

/* ---- replication ------------------------------------------------------------------------- */

int ps_shard_set_map(struct ps_shard *s, struct part_map *map, char *err, size_t errlen)
{
    int rc = 0;
    if (!s->map || !s->ready) {
        smlt_set_err(err, errlen, "shard %u is not configured and ready", s->id);
        rc = s->map ? SMLT_EAGAIN : SMLT_ENOTCONF;
    } else if (map->version < s->map->version) {
        smlt_set_err(err, errlen, "map v%llu is older than the shard's v%llu",
                     (unsigned long long)map->version, (unsigned long long)s->map->version);
        rc = SMLT_ESTALEMAP;
    } else if (s->id >= map->nshards || map->shards[s->id].lo != s->lo ||
               map->shards[s->id].hi != s->hi || !part_map_same_model(s->map, map)) {
        smlt_set_err(err, errlen, "map v%llu does not give shard %u its range [%llu, %llu) of "
                     "the same model", (unsigned long long)map->version, s->id,
                     (unsigned long long)s->lo, (unsigned long long)s->hi);
        rc = SMLT_EINVAL;
    }
    if (rc || map->version == s->map->version) {
        part_map_free(map);
        return rc;
    }
    part_map_free(s->map);
    s->map = map;
    return 0;
}

/* ---- accessors --------------------------------------------------------------------------- */

const struct part_map *ps_shard_map(const struct ps_shard *s)
{
    return s->map;
}

uint32_t ps_shard_id(const struct ps_shard *s)
{
    return s->id;
}

uint64_t ps_shard_version(const struct ps_shard *s)
{
    return s->version;
}

uint64_t ps_shard_freeze_stop(struct ps_shard *s, uint64_t clock)
{
    uint64_t at = ps_shard_freeze(s, clock);
    s->freeze_stop = at != UINT64_MAX;
    return at;
}

uint64_t ps_shard_freeze(struct ps_shard *s, uint64_t clock)
{
    if (clock == UINT64_MAX) {
        s->freeze_at = UINT64_MAX;
        s->freeze_stop = 0;
        return UINT64_MAX;
    }
    if (s->conf.mode != SMLT_SYNC_BSP) {
        s->freeze_at = 0;
        return 0;
    }
    /* A step that has pushes already completes; nothing after it is accepted. With no step
     * open the shard freezes where it is (workers stopped at a boundary never have to push
     * again for the move to happen). */
    uint64_t open = s->count > 0 || s->step_closed ? 1 : 0;
    uint64_t at = clock ? clock : s->version + open;
    if (at < s->version + open)
        at = s->version + open;
    if (s->freeze_at == UINT64_MAX || at > s->freeze_at)
        s->freeze_at = at;
    return s->freeze_at;
}

int ps_shard_frozen(const struct ps_shard *s)
{
    if (s->freeze_at == UINT64_MAX || !s->ready || s->jobs_out)
        return 0;
    if (s->conf.mode == SMLT_SYNC_BSP)
        return s->version >= s->freeze_at && s->count == 0 && !s->step_closed;
    return 1;
}

int ps_shard_export(struct ps_shard *s, struct ps_shard_export *e)
{
    if (!s->map)
        return SMLT_ENOTCONF;
    if (!s->ready || s->jobs_out || (s->conf.mode == SMLT_SYNC_BSP && s->count > 0))
        return SMLT_EAGAIN;
    memset(e, 0, sizeof *e);
    e->version = s->version;
    e->clock = s->clock;
    e->updates = s->updates_submitted;
    e->nstate = (uint32_t)ps_optim_state_per_param(s->conf.optim.kind);
    e->last_counted = s->last_counted;
    e->last_applied = s->last_applied;
    e->nranks = s->nranks;
    e->params = s->cur;
    e->state = s->state;
    return 0;
}

int ps_shard_import(struct ps_shard *s, uint64_t map_version, uint64_t lo, uint64_t hi,
                    const float *data, const struct ps_shard_export *m, int final, char *err,
                    size_t errlen)
{
    if (!s->map || s->configuring) {
        smlt_set_err(err, errlen, "shard %u has no job configured yet", s->id);
        return s->map ? SMLT_EAGAIN : SMLT_ENOTCONF;
    }
    if (!s->importing) {
        smlt_set_err(err, errlen, "shard %u was not configured to await an import", s->id);
        return SMLT_EINVAL;
    }
    if (map_version != s->map->version) {
        smlt_set_err(err, errlen, "import for map version %llu; shard has %llu",
                     (unsigned long long)map_version, (unsigned long long)s->map->version);
        return SMLT_ESTALEMAP;
    }
    if (lo < s->lo || hi > s->hi || lo > hi) {
        smlt_set_err(err, errlen, "import range [%llu, %llu) outside [%llu, %llu)",
                     (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)s->lo,
                     (unsigned long long)s->hi);
        return SMLT_ERANGE;
    }
    if (m->nstate != (uint32_t)ps_optim_state_per_param(s->conf.optim.kind)) {
        smlt_set_err(err, errlen, "import carries %u optimizer state arrays; %s keeps %d",
                     m->nstate, smlt_enum_optim_name(s->conf.optim.kind),
                     ps_optim_state_per_param(s->conf.optim.kind));
        return SMLT_EINVAL;
    }
    if (m->nranks > SMLT_MAX_WORKERS) {
        smlt_set_err(err, errlen, "import names %u ranks, over %u", m->nranks, SMLT_MAX_WORKERS);
        return SMLT_EINVAL;
    }
    int rc = ranks_resize(s, m->nranks);
    if (rc)
        return rc;
    size_t n = (size_t)(hi - lo), off = (size_t)(lo - s->lo);
    memcpy(s->cur + off, data, n * sizeof(float));
    for (uint32_t k = 0; k < m->nstate; k++)
        memcpy(s->state + (size_t)k * s->n + off, data + (size_t)(k + 1) * n, n * sizeof(float));
    /* Every source range was frozen at the same step: take the counters as they are, and the
     * latest of every rank's steps, so a retried push of an old step stays a duplicate. */
    s->version = m->version;
    s->clock = m->clock;
    s->updates_submitted = m->updates;
    for (uint32_t r = 0; r < m->nranks; r++) {
        uint64_t c = m->last_counted[r], a = m->last_applied[r];
        if (c != NO_STEP && (s->last_counted[r] == NO_STEP || c > s->last_counted[r]))
            s->last_counted[r] = c;
        if (a != NO_STEP && (s->last_applied[r] == NO_STEP || a > s->last_applied[r]))
            s->last_applied[r] = a;
    }
    if (final) {
        s->importing = 0;
        s->ready = 1;
        if (s->cbs.on_advance)
            s->cbs.on_advance(s, s->arg);
    }
    return 0;
}

uint64_t ps_shard_seq_done(const struct ps_shard *s)
{
    return s->seq_done;
}

uint64_t ps_shard_clock(const struct ps_shard *s)
{
    return s->clock;
}

uint64_t ps_shard_lo(const struct ps_shard *s)
{
    return s->lo;
}

uint64_t ps_shard_hi(const struct ps_shard *s)
{
    return s->hi;
}

const struct ps_shard_conf *ps_shard_conf(const struct ps_shard *s)
{
    return &s->conf;
}

void ps_shard_stats(const struct ps_shard *s, struct ps_shard_stats *st)
{
    pthread_mutex_t *mu = (pthread_mutex_t *)&s->ck_mu; /* the writer's counters */
    pthread_mutex_lock(mu);
    *st = s->st;
    pthread_mutex_unlock(mu);
}

void ps_shard_count_corrupt(struct ps_shard *s, uint32_t n)
{
    s->st.ckpt_corrupt += n;
}

int ps_shard_restore(struct ps_shard *s, const struct ps_ckpt *c, char *err, size_t errlen)
{
    if (!s->map || s->configuring || !s->ready) {
        smlt_set_err(err, errlen, "shard %u has no job configured and initialized", s->id);
        return s->map || s->configuring ? SMLT_EAGAIN : SMLT_ENOTCONF;
    }
    if (s->jobs_out || s->step_closed) {
        smlt_set_err(err, errlen, "shard %u has updates in flight; restore again shortly", s->id);
        return SMLT_EAGAIN;
    }
    if (c->shard != s->id) {
        smlt_set_err(err, errlen, "the checkpoint is of shard %u; this is shard %u", c->shard,
                     s->id);
        return SMLT_EINVAL;
    }
    if (c->lo != s->lo || c->hi != s->hi) {
        smlt_set_err(err, errlen, "the checkpoint holds range [%llu, %llu); shard %u serves "
                     "[%llu, %llu)", (unsigned long long)c->lo, (unsigned long long)c->hi, s->id,
                     (unsigned long long)s->lo, (unsigned long long)s->hi);
        return SMLT_ERANGE;
    }
    const char *job = s->map->job ? s->map->job : "";
    if (strcmp(c->job ? c->job : "", job) != 0) {
        smlt_set_err(err, errlen, "the checkpoint is of job \"%s\"; this shard serves \"%s\"",
                     c->job ? c->job : "", job);
        return SMLT_EINVAL;
    }
    int nstate = ps_optim_state_per_param(s->conf.optim.kind);
    if (c->optim != (uint32_t)s->conf.optim.kind || c->nstate != (uint32_t)nstate) {
        smlt_set_err(err, errlen, "the checkpoint was taken with optimizer %u (%u state arrays); "
                     "this shard runs %s", c->optim, c->nstate,
                     smlt_enum_optim_name(s->conf.optim.kind));
        return SMLT_EINVAL;
    }
    if (c->nranks > SMLT_MAX_WORKERS) {
        smlt_set_err(err, errlen, "the checkpoint names %u ranks", c->nranks);
        return SMLT_EINVAL;
    }
    Smlt__PartitionMap *pm = smlt__partition_map__unpack(NULL, c->map_len, c->map_pb);
    char e[256] = "";
    struct part_map *m = pm ? part_map_from_pb(pm, e, sizeof e) : NULL;
    if (pm)
        smlt__partition_map__free_unpacked(pm, NULL);
    int same = m && part_map_same_model(m, s->map);
    part_map_free(m);
    if (!same) {
        smlt_set_err(err, errlen, "the checkpoint's model differs from the configured one%s%s",
                     e[0] ? ": " : "", e);
        return SMLT_EINVAL;
    }
    int rc = ranks_resize(s, c->nranks);
    if (rc)
        return rc;
    float *buf = ps_shard_buf_get(s);
    if (!buf) {
        smlt_set_err(err, errlen, "no free buffer on shard %u; restore again shortly", s->id);
        return SMLT_EAGAIN;
    }
    memcpy(buf, c->params, s->n * sizeof(float));
    if (nstate)
        memcpy(s->state, c->state, (size_t)nstate * s->n * sizeof(float));
    if (s->accum) { /* a step partly pushed belongs to the timeline being left */
        buf_unref(s, s->accum);
        s->accum = NULL;
    }
    s->count = 0;
    s->step_closed = 0;
    s->noise_step = 0;
    float *old = s->cur;
    s->cur = s->head = buf; /* buf_get's reference is the current role's */
    buf_unref(s, old);
    s->seq_done = ++s->seq_submitted;
    s->version = c->version;
    s->clock = c->clock;
    s->updates_submitted = c->updates;
    for (uint32_t r = 0; r < s->nranks; r++) {
        s->last_counted[r] = r < c->nranks ? c->last_counted[r] : NO_STEP;
        s->last_applied[r] = r < c->nranks ? c->last_applied[r] : NO_STEP;
    }
    log_info("shard %u: restored the checkpoint of step %llu", s->id, (unsigned long long)c->step);
    if (s->cbs.on_advance)
        s->cbs.on_advance(s, s->arg);
    return 0;
}
