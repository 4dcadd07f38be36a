/* worker_py.c: torch jobs' set-up and training through a Python child (worker_py.h). */
#include "worker_py.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "smlt.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_util.h"
#include "worker_train.h"

extern char **environ;

#define PY_READY_S 120        /* the child's start: importing torch, loading nothing yet */
#define PY_DESCRIBE_S 300     /* describe: importing torch and building the model once */
#define PY_GRACE_S 5.0        /* past the slice's stop-by time before the child is killed */
#define PY_LINE_MAX (1u << 20) /* a report line */

struct worker_py {
    pid_t pid;
    int fd;          /* our end of the socketpair: the child's stdin and stdout */
    char *buf;       /* what the child sent that is not a whole line yet */
    size_t len, cap;
};

static const char *py_interp(void)
{
    const char *p = getenv("SMLT_PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

/* The environment for the child: ours, with the smlt package's directory first on
 * PYTHONPATH ($SMLT_PYTHONPATH, else BIN/../python when it holds the package). Returns a new
 * NULL-terminated array whose one new string is its last allocation (free_env()). */
static char **py_env(void)
{
    char dir[PATH_MAX + 32] = "";
    const char *given = getenv("SMLT_PYTHONPATH");
    if (given && *given) {
        snprintf(dir, sizeof dir, "%s", given);
    } else {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = '\0';
            char *slash = strrchr(exe, '/');
            if (slash) {
                *slash = '\0';
                char probe[PATH_MAX + 64];
                snprintf(probe, sizeof probe, "%s/../python/smlt/__init__.py", exe);
                if (access(probe, R_OK) == 0)
                    snprintf(dir, sizeof dir, "%s/../python", exe);
            }
        }
    }
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 3, sizeof *env);
    if (!env)
        return NULL;
    const char *old = getenv("PYTHONPATH");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "PYTHONPATH=", 11) || !dir[0])
            env[k++] = environ[i];
    if (dir[0]) {
        size_t len = strlen(dir) + (old ? strlen(old) : 0) + 16;
        char *pp = malloc(len);
        if (!pp) {
            free(env);
            return NULL;
        }
        snprintf(pp, len, "PYTHONPATH=%s%s%s", dir, old && *old ? ":" : "", old ? old : "");
        env[k++] = pp;
        env[k + 1] = pp; /* remembered past the terminator for free_env() */
    }
    env[k] = NULL;
    return env;
}

static void free_env(char **env)
{
    if (!env)
        return;
    size_t k = 0;
    while (env[k])
        k++;
    free(env[k + 1]);
    free(env);
}

/* Starts `python3 -m smlt.job ARGS...` with stdin/stdout on in_out (or /dev/null: -1) and
 * stdout on out_fd when >= 0, stderr on err_fd when >= 0 (else ours). Returns the pid or -1
 * with errno. */
static pid_t py_spawn(const char *const *args, int in_out, int out_fd, int err_fd)
{
    const char *argv[16];
    size_t n = 0;
    argv[n++] = py_interp();
    argv[n++] = "-m";
    argv[n++] = "smlt.job";
    for (; args && *args && n < 15; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (in_out >= 0) {
        posix_spawn_file_actions_adddup2(&fa, in_out, 0);
        posix_spawn_file_actions_adddup2(&fa, in_out, 1);
    } else {
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    if (out_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    if (err_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    char **env = py_env();
    pid_t pid = -1;
    int rc = env ? posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, env) : ENOMEM;
    posix_spawn_file_actions_destroy(&fa);
    free_env(env);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return pid;
}

/* Waits up to timeout_s for pid; kills it after that. Returns its wait status, or -1 when it
 * had to be killed. */
static int py_wait(pid_t pid, double timeout_s)
{
    double end = smlt_now_mono() + timeout_s;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return -1;
        if (smlt_now_mono() > end) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            return -1;
        }
        struct timespec d = {0, 20 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
}

/* The last lines of a file (the child's stderr: a traceback ends with its error), into out. */
static void tail_of(const char *path, char *out, size_t outlen)
{
    size_t n = 0;
    char *text = smlt_file_read(path, 1u << 20, &n);
    out[0] = '\0';
    if (!text)
        return;
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
        text[--n] = '\0';
    /* the last line, which names the exception */
    char *last = strrchr(text, '\n');
    snprintf(out, outlen, "%s", last ? last + 1 : text);
    free(text);
}

int worker_setup_python(const char *addrs, const char *admin_token, const char *path,
                        const struct smlt_job_conf *conf, uint64_t *nparams, char *err,
                        size_t errlen)
{
    char dir[] = "/tmp/smlt-describe.XXXXXX";
    if (!mkdtemp(dir)) {
        smlt_set_err(err, errlen, "mkdtemp: %s", strerror(errno));
        return SMLT_ESYS;
    }
    char out[64], errf[64], seed[32];
    snprintf(out, sizeof out, "%s/model.smlt", dir);
    snprintf(errf, sizeof errf, "%s/stderr", dir);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)(conf && conf->seed ? conf->seed : 1));
    int efd = open(errf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int nfd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    const char *args[] = {"describe", path, out, seed, NULL};
    pid_t pid = efd >= 0 && nfd >= 0 ? py_spawn(args, -1, nfd, efd) : -1;
    int spawn_errno = errno;
    if (efd >= 0)
        close(efd);
    if (nfd >= 0)
        close(nfd);
    int rc = 0;
    struct smlt_model *m = NULL;
    if (pid < 0) {
        smlt_set_err(err, errlen, "cannot run %s: %s", py_interp(), strerror(spawn_errno));
        rc = SMLT_ESYS;
        goto out;
    }
    int st = py_wait(pid, PY_DESCRIBE_S);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char why[400];
        tail_of(errf, why, sizeof why);
        smlt_set_err(err, errlen, "the training file: %s",
                     st < 0 ? "building the model took over 300 s"
                     : why[0] ? why
                              : "python3 -m smlt.job describe failed (is the smlt package "
                                "installed? SMLT_PYTHONPATH)");
        rc = SMLT_EINVAL;
        goto out;
    }
    if ((rc = smlt_model_read(out, &m, err, errlen)) != 0)
        goto out;
    uint32_t nt = smlt_model_num_tensors(m);
    struct smlt_tensor_def *defs = calloc(nt ? nt : 1, sizeof *defs);
    struct smlt_tensor_info *ti = calloc(nt ? nt : 1, sizeof *ti);
    if (!defs || !ti) {
        free(defs);
        free(ti);
        rc = SMLT_ENOMEM;
        smlt_set_err(err, errlen, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < nt; i++) {
        smlt_model_tensor(m, i, &ti[i]);
        defs[i] = (struct smlt_tensor_def){.name = ti[i].name, .ndims = ti[i].ndims,
                                           .shape = ti[i].shape, .init = SMLT_INIT_ZERO};
    }
    struct smlt_client_opts o = {.token = admin_token, .admin = 1, .timeout_ms = 60000};
    struct smlt_client *c = NULL;
    rc = smlt_job_setup(&c, addrs, &o, defs, nt, conf, err, errlen);
    if (!rc && (rc = smlt_set_params(c, smlt_model_values(m))) != 0)
        smlt_set_err(err, errlen, "writing the initial model: %s", smlt_client_errmsg(c));
    if (!rc && nparams)
        *nparams = smlt_model_num_params(m);
    smlt_client_close(c);
    free(defs);
    free(ti);
out:
    smlt_model_free(m);
    unlink(out);
    unlink(errf);
    rmdir(dir);
    return rc;
}

int worker_py_source_file(const char *model, const char *source, char *out, size_t outlen,
                          char *err, size_t errlen)
{
    if (!source || !*source) {
        smlt_set_err(err, errlen, "model %s: the invocation carries no training file (an older "
                     "coordinator?)", model);
        return SMLT_EINVAL;
    }
    const char *name = strrchr(model, '/');
    name = name ? name + 1 : model + 7;
    uint64_t h = 1469598103934665603ull; /* FNV-1a: a cache key, not a security boundary */
    for (const char *p = source; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/smlt-py-%u", tmp && *tmp ? tmp : "/tmp", (unsigned)getuid());
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        smlt_set_err(err, errlen, "mkdir %s: %s", dir, strerror(errno));
        return SMLT_ESYS;
    }
    size_t dl = strlen(dir);
    snprintf(dir + dl, sizeof dir - dl, "/%016llx", (unsigned long long)h);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        smlt_set_err(err, errlen, "mkdir %s: %s", dir, strerror(errno));
        return SMLT_ESYS;
    }
    if ((size_t)snprintf(out, outlen, "%s/%s", dir, name) >= outlen) {
        smlt_set_err(err, errlen, "training file path too long");
        return SMLT_EINVAL;
    }
    struct stat sb;
    size_t len = strlen(source);
    if (stat(out, &sb) == 0 && (size_t)sb.st_size == len)
        return 0; /* a warm instance's, or another's with the same text */
    if (smlt_write_file_atomic(out, source, len, 0600) != 0) {
        smlt_set_err(err, errlen, "writing %s: %s", out, strerror(errno));
        return SMLT_ESYS;
    }
    return 0;
}

void worker_py_free(struct worker_py *py)
{
    if (!py)
        return;
    if (py->fd >= 0)
        close(py->fd); /* the child reads EOF on stdin and exits */
    if (py->pid > 0 && py_wait(py->pid, 2.0) < 0)
        log_warn("the Python runner (pid %d) did not exit: killed", (int)py->pid);
    free(py->buf);
    free(py);
}

/* Reads the child's next line (NUL-terminated, in py->buf up to *used), waiting until
 * until (CLOCK_MONOTONIC; 0: forever). Returns 1 with a line, 0 on timeout, -1 when the
 * child has gone (or sent a line too long). */
static int py_line(struct worker_py *py, double until, size_t *used)
{
    for (;;) {
        char *nl = py->len ? memchr(py->buf, '\n', py->len) : NULL;
        if (nl) {
            *nl = '\0';
            *used = (size_t)(nl - py->buf) + 1;
            return 1;
        }
        if (py->len >= PY_LINE_MAX)
            return -1;
        int ms = -1;
        if (until > 0) {
            double left = until - smlt_now_mono();
            if (left <= 0)
                return 0;
            ms = (int)(left * 1000) + 1;
        }
        struct pollfd p = {.fd = py->fd, .events = POLLIN};
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return 0;
        if (py->cap - py->len < 65536) {
            size_t cap = py->cap ? py->cap * 2 : 131072;
            char *b = realloc(py->buf, cap);
            if (!b)
                return -1;
            py->buf = b;
            py->cap = cap;
        }
        ssize_t n = recv(py->fd, py->buf + py->len, py->cap - py->len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        py->len += (size_t)n;
    }
}

static void py_consume(struct worker_py *py, size_t used)
{
    memmove(py->buf, py->buf + used, py->len - used);
    py->len -= used;
}

static int py_send(struct worker_py *py, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = send(py->fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

static int py_start(struct worker_py **out, char *err, size_t errlen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        smlt_set_err(err, errlen, "socketpair: %s", strerror(errno));
        return SMLT_ESYS;
    }
    const char *args[] = {"serve", NULL};
    pid_t pid = py_spawn(args, sv[1], -1, -1);
    int e = errno;
    close(sv[1]);
    struct worker_py *py = calloc(1, sizeof *py);
    if (pid < 0 || !py) {
        close(sv[0]);
        free(py);
        if (pid > 0)
            py_wait(pid, 0);
        smlt_set_err(err, errlen, "cannot run %s: %s", py_interp(), pid < 0 ? strerror(e)
                                                                              : "out of memory");
        return SMLT_ESYS;
    }
    py->pid = pid;
    py->fd = sv[0];
    size_t used;
    int r = py_line(py, smlt_now_mono() + PY_READY_S, &used);
    if (r != 1 || !strstr(py->buf, "\"ready\"")) {
        smlt_set_err(err, errlen, "the Python runner (%s -m smlt.job serve) %s", py_interp(),
                     r == 0 ? "did not start in 120 s"
                            : "exited at start (is the smlt package installed? SMLT_PYTHONPATH; "
                              "see its stderr)");
        worker_py_free(py);
        return SMLT_ESYS;
    }
    py_consume(py, used);
    *out = py;
    return 0;
}

static json_t *task_json(const struct worker_task *t, const char *file)
{
    json_t *o = json_object();
    json_t *tls = json_object();
    json_object_set_new(tls, "on", json_boolean(t->tls.on));
    if (t->tls.ca)
        json_object_set_new(tls, "ca", json_string(t->tls.ca));
    if (t->tls.ca_pem)
        json_object_set_new(tls, "ca_pem", json_string(t->tls.ca_pem));
    if (t->tls.cert)
        json_object_set_new(tls, "cert", json_string(t->tls.cert));
    if (t->tls.key)
        json_object_set_new(tls, "key", json_string(t->tls.key));
    json_object_set_new(o, "tls", tls);
    json_object_set_new(o, "model_file", json_string(file));
    json_object_set_new(o, "job", json_string(t->job ? t->job : ""));
    json_object_set_new(o, "data", json_string(t->data));
    json_object_set_new(o, "batch", json_integer(t->batch));
    json_object_set_new(o, "sync", json_integer(t->sync));
    json_object_set_new(o, "staleness", json_integer(t->staleness));
    json_object_set_new(o, "rank", json_integer(t->rank));
    json_object_set_new(o, "workers", json_integer(t->workers));
    json_object_set_new(o, "seed", json_integer((json_int_t)(t->seed ? t->seed : 1)));
    json_object_set_new(o, "ps_addrs", json_string(t->ps_addrs));
    json_object_set_new(o, "token", json_string(t->token));
    json_object_set_new(o, "start_step", json_integer((json_int_t)t->start_step));
    json_object_set_new(o, "max_steps", json_integer((json_int_t)t->max_steps));
    json_object_set_new(o, "total_steps", json_integer((json_int_t)t->total_steps));
    json_object_set_new(o, "deadline", json_real(t->deadline));
    json_object_set_new(o, "evaluate", json_boolean(t->evaluate));
    json_object_set_new(o, "timeout_ms", json_integer(t->timeout_ms));
    json_object_set_new(o, "eval_every", json_integer((json_int_t)t->eval_every));
    json_object_set_new(o, "lr_decay_step", json_integer((json_int_t)t->lr_decay_step));
    json_object_set_new(o, "lr", json_real(t->lr));
    json_object_set_new(o, "lr_decay", json_real(t->lr_decay));
    json_object_set_new(o, "step_base", json_integer((json_int_t)t->step_base));
    json_object_set_new(o, "epoch_base", json_integer(t->epoch_base));
    json_object_set_new(o, "stop_at_epoch_end", json_boolean(t->stop_at_epoch_end));
    json_object_set_new(o, "chaos_delay_us", json_integer(t->chaos_delay_us));
    return o;
}

static double jnum(const json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static uint64_t juint(const json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    return v > 0 ? (uint64_t)v : 0;
}

/* A report line's fields into r (the child's time measures; cold as ours says too). */
static void rep_from(const json_t *o, struct worker_report *r)
{
    int cold = r->cold;
    r->status = (enum worker_status)json_integer_value(json_object_get(o, "status"));
    r->err_code = (int)json_integer_value(json_object_get(o, "err_code"));
    snprintf(r->err, sizeof r->err, "%s",
             json_string_value(json_object_get(o, "err")) ? json_string_value(json_object_get(o, "err"))
                                                          : "");
    r->next_step = juint(o, "next_step");
    r->steps = juint(o, "steps");
    r->samples = juint(o, "samples");
    r->loss = jnum(o, "loss");
    r->compute_s = jnum(o, "compute_s");
    r->comm_s = jnum(o, "comm_s");
    r->init_s = jnum(o, "init_s");
    r->eval_s = jnum(o, "eval_s");
    r->elapsed_s = jnum(o, "elapsed_s");
    r->cold = cold || json_integer_value(json_object_get(o, "cold"));
    r->eval_epoch = json_integer_value(json_object_get(o, "eval_epoch"));
    r->test_acc = jnum(o, "test_acc");
    r->test_loss = jnum(o, "test_loss");
    r->steps_per_epoch = juint(o, "steps_per_epoch");
    r->eval_step = juint(o, "eval_step");
}

/* The child has gone, or must go: ends the slice at the last step it reported. */
static int py_lost(struct worker_py **py, struct worker_report *r, const struct worker_task *t,
                   int killed, double t0)
{
    struct worker_py *p = *py;
    *py = NULL;
    int st = 0;
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    if (killed)
        kill(p->pid, SIGKILL);
    st = py_wait(p->pid, killed ? 5.0 : 2.0);
    p->pid = 0;
    worker_py_free(p);
    r->elapsed_s = smlt_now_mono() - t0;
    if (killed) {
        /* Past the time limit: what it trained is on the shards; the next slice goes on. */
        log_warn("worker %u: the Python runner was still busy %.0f s after the slice's stop-by "
                 "time: killed; the slice ends at step %llu", t->rank, PY_GRACE_S,
                 (unsigned long long)r->next_step);
        r->status = WORKER_TIME_UP;
        return 0;
    }
    r->status = WORKER_FAILED;
    r->err_code = SMLT_EIO;
    if (st >= 0 && WIFSIGNALED(st))
        snprintf(r->err, sizeof r->err, "the Python runner died of signal %d at step %llu",
                 WTERMSIG(st), (unsigned long long)r->next_step);
    else
        snprintf(r->err, sizeof r->err, "the Python runner exited (status %d) at step %llu",
                 st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                 (unsigned long long)r->next_step);
    return SMLT_EIO;
}

int worker_py_run(struct worker_py **py, const struct worker_task *t, const char *file,
                  struct worker_report *r, worker_py_progress_fn progress, void *arg)
{
    double t0 = smlt_now_mono();
    memset(r, 0, sizeof *r);
    r->eval_epoch = -1;
    r->next_step = t->start_step;
    int rc;
    if (!*py) {
        r->cold = 1;
        if ((rc = py_start(py, r->err, sizeof r->err)) != 0) {
            r->status = WORKER_FAILED;
            r->err_code = rc;
            return rc;
        }
    }
    json_t *task = task_json(t, file);
    char *line = task ? json_dumps(task, JSON_COMPACT) : NULL;
    json_decref(task);
    if (!line) {
        r->status = WORKER_FAILED;
        r->err_code = SMLT_ENOMEM;
        snprintf(r->err, sizeof r->err, "out of memory");
        return SMLT_ENOMEM;
    }
    size_t ll = strlen(line);
    line[ll] = '\n'; /* json_dumps' NUL becomes the line end; send ll + 1 bytes */
    int sent = py_send(*py, line, ll + 1);
    free(line);
    if (sent != 0)
        return py_lost(py, r, t, 0, t0);
    int stop_sent = 0;
    for (;;) {
        size_t used = 0;
        double until = t->deadline > 0 ? t->deadline + PY_GRACE_S : 0;
        int got = py_line(*py, until, &used);
        if (got <= 0)
            return py_lost(py, r, t, got == 0, t0);
        json_t *msg = json_loads((*py)->buf, 0, NULL);
        py_consume(*py, used);
        json_t *o;
        if (msg && (o = json_object_get(msg, "progress"))) {
            rep_from(o, r);
            if (progress && progress(r, arg) && !stop_sent) {
                stop_sent = 1;
                if (py_send(*py, "stop\n", 5) != 0) {
                    json_decref(msg);
                    return py_lost(py, r, t, 0, t0);
                }
            }
        } else if (msg && (o = json_object_get(msg, "done"))) {
            rep_from(o, r);
            json_decref(msg);
            if (r->status == WORKER_FAILED)
                return r->err_code ? r->err_code : SMLT_EINVAL;
            return 0;
        }
        json_decref(msg);
    }
}
