/* coord_backend_local.c: the embedded local function runtime.
 *
 * An instance is a worker bootstrap process (`smlt-worker --invoke`) started with a pipe on its
 * stdin and stdout: an invocation is one JSON line written to its stdin, its response one JSON
 * line read from its stdout; its stderr goes to the job's log. The runtime behaves like a FaaS
 * platform: at most `concurrency` instances busy (further invocations wait in FIFO order), the
 * memory size enforced with RLIMIT_AS, the time limit enforced by SIGKILL at the limit, and an
 * instance that finished is kept warm for `keep_warm_s` and reused for the next invocation of
 * the same function (same process: its loaded data, model buffers and shard connections survive,
 * so a warm start skips initialization). Instances are always stopped by pid. They do not die
 * with the coordinator: see coord_adopt.c. */
#include "coord_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_util.h"

#define LOCAL_MAX_LINE (1u << 20)  /* longest response line accepted from an instance */
#define LOCAL_FUNC_MAX 128

struct instance;

struct inv {
    struct local *b;
    uint64_t id;
    char function[LOCAL_FUNC_MAX];
    char *payload;
    char *log_path;
    uint32_t memory_mb, time_limit_s;
    pid_t avoid_pid;
    coord_inv_fn cb;
    void *arg;
    double t_queued, t_start;
    int cold;
    int at_limit, canceled;
    struct instance *inst;
    struct event *limit_ev;
    struct inv *next; /* wait queue */
};

enum inst_state { INST_BUSY, INST_IDLE };

struct instance {
    struct local *b;
    pid_t pid;
    int in_fd;
    struct bufferevent *out;
    char function[LOCAL_FUNC_MAX];
    uint32_t memory_mb;
    enum inst_state state;
    struct inv *cur;
    struct event *idle_ev;
    uint64_t served;
    struct instance *next, *prev;
};

struct local {
    struct coord_backend base_; /* first: a struct local is a struct coord_backend */
    struct event_base *base;
    struct coord_backend_local_conf conf;
    char *worker_bin;
    struct instance *insts;
    struct inv *wait_head, *wait_tail;
    uint64_t next_id;
    uint32_t busy;
    struct coord_backend_stats st;
};

static void inv_free(struct inv *v)
{
    if (v->limit_ev)
        event_free(v->limit_ev);
    free(v->payload);
    free(v->log_path);
    free(v);
}

/* Ends an invocation: bill it, call back, free it. */
static void inv_finish(struct local *b, struct inv *v, enum coord_inv_status st,
                       const char *response, int exit_status, const char *detail)
{
    struct coord_inv_result r = {0};
    double end = smlt_now_mono();
    r.status = st;
    r.response = response;
    r.duration_s = v->t_start > 0 ? end - v->t_start : 0;
    r.queued_s = (v->t_start > 0 ? v->t_start : end) - v->t_queued;
    r.cold = v->cold;
    r.pid = v->inst ? v->inst->pid : 0;
    r.exit_status = exit_status;
    snprintf(r.detail, sizeof r.detail, "%s", detail ? detail : "");
    b->st.gb_s += (double)v->memory_mb / 1024.0 * r.duration_s;
    if (st == COORD_INV_TIMEOUT)
        b->st.timeouts++;
    if (st == COORD_INV_CRASHED)
        b->st.crashes++;
    if (v->limit_ev)
        evtimer_del(v->limit_ev);
    coord_inv_fn cb = v->cb;
    void *arg = v->arg;
    uint64_t id = v->id;
    inv_free(v);
    cb(id, &r, arg);
}

static void start_waiting(struct local *b);

static void inst_unlink(struct local *b, struct instance *in)
{
    if (in->prev)
        in->prev->next = in->next;
    else
        b->insts = in->next;
    if (in->next)
        in->next->prev = in->prev;
    if (in->state == INST_IDLE)
        b->st.idle--;
}

/* The instance's process is gone (or must go): reap it, end its invocation, free it. */
static void inst_dead(struct instance *in, const char *why)
{
    struct local *b = in->b;
    int status = -1;
    /* Its stdout is closed: it has exited or is about to. Reap it if it is gone, else make
     * sure it goes (and then the signal in the status is ours). */
    int ours = 0;
    if (waitpid(in->pid, &status, WNOHANG) != in->pid) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL); /* an exiting process usually finishes within this */
        if (waitpid(in->pid, &status, WNOHANG) != in->pid) {
            kill(in->pid, SIGKILL);
            waitpid(in->pid, &status, 0);
            ours = 1;
        }
    }
    inst_unlink(b, in);
    struct inv *v = in->cur;
    in->cur = NULL;
    if (in->state == INST_BUSY)
        b->busy--;
    char detail[160];
    if (v) {
        enum coord_inv_status st = v->canceled   ? COORD_INV_CANCELED
                                   : v->at_limit ? COORD_INV_TIMEOUT
                                                 : COORD_INV_CRASHED;
        if (st == COORD_INV_TIMEOUT)
            snprintf(detail, sizeof detail, "killed at the %u s time limit", v->time_limit_s);
        else if (WIFSIGNALED(status) && !ours)
            snprintf(detail, sizeof detail, "instance died of signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
        else if (WIFEXITED(status))
            snprintf(detail, sizeof detail, "instance exited with status %d", WEXITSTATUS(status));
        else
            snprintf(detail, sizeof detail, "%s", why);
        v->inst = in;
        inv_finish(b, v, st, NULL, status, detail);
    }
    bufferevent_free(in->out);
    if (in->in_fd >= 0)
        close(in->in_fd);
    if (in->idle_ev)
        event_free(in->idle_ev);
    free(in);
    start_waiting(b);
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct instance *in = arg;
    /* Reclaimed like a platform reclaims an idle instance: close its stdin (the bootstrap
     * exits on end of input) and make sure with SIGTERM; EOF on stdout then frees it. */
    if (in->in_fd >= 0) {
        close(in->in_fd);
        in->in_fd = -1;
    }
    kill(in->pid, SIGTERM);
}

static void on_out_read(struct bufferevent *bev, void *arg)
{
    struct instance *in = arg;
    struct local *b = in->b;
    struct evbuffer *buf = bufferevent_get_input(bev);
    for (;;) {
        size_t n = 0;
        char *line = evbuffer_readln(buf, &n, EVBUFFER_EOL_LF);
        if (!line) {
            if (evbuffer_get_length(buf) > LOCAL_MAX_LINE) {
                log_warn("instance %d: response line over %u bytes; killing it", (int)in->pid,
                         LOCAL_MAX_LINE);
                kill(in->pid, SIGKILL);
            }
            return;
        }
        struct inv *v = in->cur;
        if (!v) {
            log_warn("instance %d: output with no invocation: %.80s", (int)in->pid, line);
            free(line);
            continue;
        }
        in->cur = NULL;
        in->state = INST_IDLE;
        in->served++;
        b->busy--;
        b->st.idle++;
        v->inst = in;
        struct timeval tv = {(time_t)b->conf.keep_warm_s,
                             (suseconds_t)((b->conf.keep_warm_s - (time_t)b->conf.keep_warm_s) * 1e6)};
        evtimer_add(in->idle_ev, &tv);
        inv_finish(b, v, COORD_INV_OK, line, -1, "");
        free(line);
        start_waiting(b);
        return; /* in may have been reused by start_waiting(); nothing more to read now */
    }
}

static void on_out_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        inst_dead(arg, "instance closed its output");
}

static void on_limit(evutil_socket_t fd, short what, void *arg)
{
    struct inv *v = arg;
    if (!v->inst)
        return;
    v->at_limit = 1;
    log_info("invocation %llu: time limit of %u s reached; killing instance %d",
             (unsigned long long)v->id, v->time_limit_s, (int)v->inst->pid);
    kill(v->inst->pid, SIGKILL);
}

static int write_line(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t k = write(fd, s, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        s += k;
        n -= (size_t)k;
    }
    return write(fd, "\n", 1) == 1 ? 0 : -1;
}

/* Starts a new instance for v. Returns it, or NULL (v is not touched). */
static struct instance *inst_spawn(struct local *b, const struct inv *v)
{
    int pin[2], pout[2];
    if (pipe2(pin, O_CLOEXEC) != 0)
        return NULL;
    if (pipe2(pout, O_CLOEXEC) != 0) {
        close(pin[0]);
        close(pin[1]);
        return NULL;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(pin[0]);
        close(pin[1]);
        close(pout[0]);
        close(pout[1]);
        return NULL;
    }
    if (pid == 0) {
        /* No parent-death signal: an instance in the middle of a slice outlives a crash of the
         * coordinator and finishes its slice for the restarted one (coord_adopt.c); an idle
         * one exits at the end of its input, which the crash closes. */
        setpgid(0, 0);
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        if (v->log_path) {
            int fd = open(v->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (fd >= 0)
                dup2(fd, 2);
        }
        if (b->conf.memory_limit) {
            /* The function's memory size as the address-space limit: allocations past it fail
             * in the worker (which reports it) instead of growing silently. */
            struct rlimit rl;
            rl.rlim_cur = rl.rlim_max = (rlim_t)v->memory_mb << 20;
            setrlimit(RLIMIT_AS, &rl);
        }
        signal(SIGPIPE, SIG_DFL);
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        execl(b->worker_bin, b->worker_bin, "--invoke", (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", b->worker_bin, strerror(errno));
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    struct instance *in = calloc(1, sizeof *in);
    if (in)
        in->out = bufferevent_socket_new(b->base, pout[0], BEV_OPT_CLOSE_ON_FREE);
    if (in)
        in->idle_ev = evtimer_new(b->base, on_idle_timeout, in);
    if (!in || !in->out || !in->idle_ev) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(pin[1]);
        if (in && in->out)
            bufferevent_free(in->out);
        else
            close(pout[0]);
        if (in && in->idle_ev)
            event_free(in->idle_ev);
        free(in);
        return NULL;
    }
    in->b = b;
    in->pid = pid;
    in->in_fd = pin[1];
    snprintf(in->function, sizeof in->function, "%s", v->function);
    in->memory_mb = v->memory_mb;
    bufferevent_setcb(in->out, on_out_read, NULL, on_out_event, in);
    bufferevent_enable(in->out, EV_READ);
    in->next = b->insts;
    if (b->insts)
        b->insts->prev = in;
    b->insts = in;
    in->state = INST_IDLE;
    b->st.idle++;
    return in;
}

/* Runs v now: on a warm instance of its function if one is idle, else on a new one. */
static void inv_start(struct local *b, struct inv *v)
{
    struct instance *in = NULL;
    for (struct instance *x = b->insts; x; x = x->next) {
        if (x->state != INST_IDLE || x->in_fd < 0)
            continue;
        if (v->avoid_pid && x->pid == v->avoid_pid) {
            /* A slow host: retire it rather than serve anything on it again. */
            evtimer_del(x->idle_ev);
            on_idle_timeout(-1, 0, x);
            continue;
        }
        if (x->memory_mb == v->memory_mb && !strcmp(x->function, v->function)) {
            in = x;
            break;
        }
    }
    v->cold = in == NULL;
    v->t_start = smlt_now_mono();
    if (!in)
        in = inst_spawn(b, v);
    if (!in) {
        v->t_start = 0;
        log_warn("invocation %llu: cannot start an instance of %s: %s", (unsigned long long)v->id,
                 b->worker_bin, strerror(errno));
        inv_finish(b, v, COORD_INV_FAILED, NULL, -1, "cannot start an instance");
        return;
    }
    evtimer_del(in->idle_ev);
    in->state = INST_BUSY;
    b->st.idle--;
    in->cur = v;
    v->inst = in;
    b->busy++;
    b->st.invocations++;
    if (v->cold)
        b->st.cold_starts++;
    else
        b->st.warm_starts++;
    struct timeval tv = {v->time_limit_s, 0};
    evtimer_add(v->limit_ev, &tv);
    if (write_line(in->in_fd, v->payload) != 0) {
        /* The instance is going away; its EOF ends the invocation as a crash. */
        log_warn("invocation %llu: instance %d does not take input", (unsigned long long)v->id,
                 (int)in->pid);
        kill(in->pid, SIGKILL);
    }
}

static void start_waiting(struct local *b)
{
    while (b->wait_head && b->busy < b->conf.concurrency) {
        struct inv *v = b->wait_head;
        b->wait_head = v->next;
        if (!b->wait_head)
            b->wait_tail = NULL;
        b->st.waiting--;
        inv_start(b, v);
    }
}

static int local_invoke(struct coord_backend *base_, const struct coord_inv_req *req,
                        coord_inv_fn cb, void *arg, uint64_t *inv);
static int local_cancel(struct coord_backend *base_, uint64_t inv);
static pid_t local_pid(struct coord_backend *base_, uint64_t inv);
static void local_drop_function(struct coord_backend *base_, const char *function);
static void local_stats(const struct coord_backend *base_, struct coord_backend_stats *st);
static void local_free(struct coord_backend *base_);

static const struct coord_backend_ops local_ops = {
    .name = "local", .invoke = local_invoke, .cancel = local_cancel, .pid = local_pid,
    .drop_function = local_drop_function, .stats = local_stats, .free = local_free};

struct coord_backend *coord_backend_local_new(struct event_base *base,
                                              const struct coord_backend_local_conf *conf)
{
    if (!conf || !conf->worker_bin)
        return NULL;
    struct local *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->base_.ops = &local_ops;
    b->base = base;
    b->conf = *conf;
    if (b->conf.concurrency == 0)
        b->conf.concurrency = 1000;
    if (b->conf.keep_warm_s <= 0)
        b->conf.keep_warm_s = 60;
    b->worker_bin = strdup(conf->worker_bin);
    b->conf.worker_bin = b->worker_bin;
    return &b->base_;
}

static void on_start_waiting(evutil_socket_t fd, short what, void *arg)
{
    start_waiting(arg);
}

static int local_invoke(struct coord_backend *base_, const struct coord_inv_req *req,
                        coord_inv_fn cb, void *arg, uint64_t *inv)
{
    struct local *b = (struct local *)base_;
    if (!req || !req->function || !req->payload || !cb || strchr(req->payload, '\n') ||
        strlen(req->function) >= LOCAL_FUNC_MAX || req->memory_mb < 128 || req->time_limit_s == 0)
        return SMLT_EINVAL;
    struct inv *v = calloc(1, sizeof *v);
    if (!v)
        return SMLT_ENOMEM;
    v->b = b;
    v->id = ++b->next_id;
    snprintf(v->function, sizeof v->function, "%s", req->function);
    v->payload = strdup(req->payload);
    v->log_path = req->log_path ? strdup(req->log_path) : NULL;
    v->memory_mb = req->memory_mb;
    v->time_limit_s = req->time_limit_s;
    v->avoid_pid = req->avoid_pid;
    v->cb = cb;
    v->arg = arg;
    v->t_queued = smlt_now_mono();
    v->limit_ev = evtimer_new(b->base, on_limit, v);
    if (!v->payload || !v->limit_ev) {
        inv_free(v);
        return SMLT_ENOMEM;
    }
    *inv = v->id;
    /* Always through the queue, then started from a deferred event: the callback must never
     * run inside this call. */
    v->next = NULL;
    if (b->wait_tail)
        b->wait_tail->next = v;
    else
        b->wait_head = v;
    b->wait_tail = v;
    b->st.waiting++;
    if (b->busy >= b->conf.concurrency)
        b->st.queued++;
    event_base_once(b->base, -1, EV_TIMEOUT, on_start_waiting, b, NULL);
    return 0;
}

static void on_deferred_cancel(evutil_socket_t fd, short what, void *arg)
{
    struct inv *v = arg;
    inv_finish(v->b, v, COORD_INV_CANCELED, NULL, -1, "canceled while queued");
}

static int local_cancel(struct coord_backend *base_, uint64_t inv)
{
    struct local *b = (struct local *)base_;
    for (struct instance *in = b->insts; in; in = in->next) {
        if (in->cur && in->cur->id == inv) {
            in->cur->canceled = 1;
            kill(in->pid, SIGKILL); /* EOF on its output ends the invocation */
            return 0;
        }
    }
    struct inv *prev = NULL;
    for (struct inv *v = b->wait_head; v; prev = v, v = v->next) {
        if (v->id != inv)
            continue;
        if (prev)
            prev->next = v->next;
        else
            b->wait_head = v->next;
        if (b->wait_tail == v)
            b->wait_tail = prev;
        b->st.waiting--;
        v->canceled = 1;
        event_base_once(b->base, -1, EV_TIMEOUT, on_deferred_cancel, v, NULL);
        return 0;
    }
    return SMLT_ENOTFOUND;
}

static pid_t local_pid(struct coord_backend *base_, uint64_t inv)
{
    struct local *b = (struct local *)base_;
    for (struct instance *in = b->insts; in; in = in->next)
        if (in->cur && in->cur->id == inv)
            return in->pid;
    return 0;
}

static void local_drop_function(struct coord_backend *base_, const char *function)
{
    struct local *b = (struct local *)base_;
    for (struct instance *in = b->insts; in; in = in->next) {
        if (in->state == INST_IDLE && !strcmp(in->function, function)) {
            evtimer_del(in->idle_ev);
            on_idle_timeout(-1, 0, in);
        }
    }
}

static void local_stats(const struct coord_backend *base_, struct coord_backend_stats *st)
{
    const struct local *b = (const struct local *)base_;
    *st = b->st;
    st->running = b->busy;
}

static void local_free(struct coord_backend *base_)
{
    struct local *b = (struct local *)base_;
    while (b->wait_head) {
        struct inv *v = b->wait_head;
        b->wait_head = v->next;
        inv_finish(b, v, COORD_INV_CANCELED, NULL, -1, "the runtime is shutting down");
    }
    b->wait_tail = NULL;
    while (b->insts) {
        struct instance *in = b->insts;
        if (in->cur)
            in->cur->canceled = 1;
        inst_dead(in, "the runtime is shutting down");
    }
    free(b->worker_bin);
    free(b);
}
