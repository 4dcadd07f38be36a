/* bench_peers.c: the peers of `smlt-bench ps`, as described in bench_peers.h.
 *
 * Reading order: plumbing (clock, socket I/O, child processes, the start gate that lines up
 * several worker processes), then the TCP ceiling (an echo server and its client), then a small
 * raw-RESP client, the redis-server lifecycle, and the Redis sync that uses both.
 *
 * Process model: every child is forked from the calling thread with PR_SET_PDEATHSIG(SIGKILL),
 * exits with _exit() (no atexit handlers, no duplicated stdio buffers), and is reaped or killed
 * by the pid fork() returned, never by name. Every descriptor is O_CLOEXEC so that redis-server
 * inherits none of ours. Worker processes report to the parent through a private pipe each:
 * first an int32 "ready" (0, after the warm-up sync) or a negative SMLT_E* code, then, once the
 * parent has released everyone by closing the "go" pipe, an int32 status and `reps` doubles. */
#include "bench_peers.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_util.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* How long a finished child may take to exit before it is killed. */
#define BP_REAP_MS 10000
/* redis-server: time to answer PING after exec, time to exit after SIGTERM, start attempts. */
#define BP_REDIS_READY_MS 10000
#define BP_REDIS_STOP_MS 5000
#define BP_REDIS_ATTEMPTS 3
/* Longest temporary directory path for redis-server (leaves room for the file names in it). */
#define BP_DIR_MAX 1024
/* Longest RESP reply line the client accepts (a bulk header is "$536870912\r\n"). */
#define BP_RESP_LINE_MAX 512

/* ---- plumbing ------------------------------------------------------------------------------ */

/* Maps the errno of a failed socket call to an SMLT_E* code. */
static int bp_errno_code(int err)
{
    switch (err) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case ETIMEDOUT:
        return SMLT_ETIMEDOUT;
    case ECONNRESET:
    case EPIPE:
        return SMLT_ECLOSED;
    default:
        return SMLT_EIO;
    }
}

/* Sends all n bytes of buf (borrowed). Returns 0 or an I/O code; never raises SIGPIPE. */
static int io_send_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return bp_errno_code(errno);
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Sends iov[0..cnt) in full, straight from the caller's buffers. Consumes iov (advances it).
 * Returns 0 or an I/O code. */
static int io_sendv_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0 && iov->iov_len == 0) {
        iov++;
        cnt--;
    }
    while (cnt > 0) {
        struct msghdr mh;
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)cnt;
        ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return bp_errno_code(errno);
        }
        size_t left = (size_t)k;
        while (cnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Receives exactly n bytes into buf (borrowed). Returns 0, SMLT_ECLOSED or an I/O code. */
static int io_recv_all(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t k = recv(fd, p, n, 0);
        if (k == 0)
            return SMLT_ECLOSED;
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return bp_errno_code(errno);
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads exactly n bytes from a pipe, waiting at most timeout_ms (-1: no limit) for each chunk.
 * Returns 0, SMLT_ECLOSED (every writer is gone), SMLT_ETIMEDOUT or SMLT_EIO. */
static int pipe_read_all(int fd, void *buf, size_t n, int timeout_ms)
{
    char *p = buf;
    while (n > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int k = poll(&pfd, 1, timeout_ms);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return SMLT_EIO;
        }
        if (k == 0)
            return SMLT_ETIMEDOUT;
        ssize_t got = read(fd, p, n);
        if (got == 0)
            return SMLT_ECLOSED;
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return SMLT_EIO;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static int pipe_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return SMLT_EIO;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Returns a malloc'd buffer of n bytes with every page already touched (first-touch costs about
 * 11 us a page here, which must not land inside a timed sync), or NULL. Free with free(). */
static void *buf_new_prefaulted(size_t n, int byte)
{
    void *p = malloc(n);
    if (p)
        memset(p, byte, n);
    return p;
}

static void addr_loopback(struct sockaddr_in *a, int port)
{
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* Sets TCP_NODELAY and, if timeout_ms > 0, send and receive timeouts. Returns 0 or SMLT_ESYS. */
static int sock_tune(int fd, int timeout_ms)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return SMLT_ESYS;
    if (timeout_ms > 0) {
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
            return SMLT_ESYS;
    }
    return 0;
}

/* Connects to 127.0.0.1:port. Returns 0 and *fd_out (caller closes), or SMLT_EIO / SMLT_ESYS. */
static int sock_connect_loopback(int port, int timeout_ms, int *fd_out)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return SMLT_ESYS;
    addr_loopback(&a, port);
    int rc = sock_tune(fd, timeout_ms);
    if (rc == 0 && connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        rc = SMLT_EIO;
    if (rc) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* Binds 127.0.0.1 port 0 and, if backlog > 0, listens. Returns 0, *fd_out (caller closes) and
 * the port the kernel chose, or SMLT_ESYS. */
static int sock_bind_loopback(int backlog, int *fd_out, int *port_out)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return SMLT_ESYS;
    addr_loopback(&a, 0);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        (backlog > 0 && listen(fd, backlog) < 0) ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        log_error("bench_peers: bind/listen on 127.0.0.1:0: %s", strerror(errno));
        close(fd);
        return SMLT_ESYS;
    }
    *fd_out = fd;
    *port_out = ntohs(a.sin_port);
    return 0;
}

/* Forks. Returns 0 with *pid_out = the child's pid in the parent and 0 in the child, or
 * SMLT_ESYS. The child is SIGKILLed if the forking thread dies, so nothing outlives a crash. */
static int child_fork(pid_t *pid_out)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        log_error("bench_peers: fork: %s", strerror(errno));
        return SMLT_ESYS;
    }
    if (pid == 0 && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
        _exit(1);
    *pid_out = pid;
    return 0;
}

/* Waits up to timeout_ms for child pid to exit, then SIGKILLs that pid and reaps it.
 * timeout_ms = 0 kills at once. Returns the exit status, 128 + the signal that ended it, or -1
 * if it could not be waited for. */
static int child_reap(pid_t pid, int timeout_ms)
{
    int st = 0;
    double end = (smlt_now_mono() * 1e3) + timeout_ms;
    for (;;) {
        pid_t k = waitpid(pid, &st, WNOHANG);
        if (k == pid)
            break;
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if ((smlt_now_mono() * 1e3) >= end) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                    return -1;
            break;
        }
        usleep(1000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- worker processes and the start gate --------------------------------------------------- */

/* What a worker process holds to report to the parent. NULL when the worker runs in-process. */
struct peer_gate {
    int report_fd;
    int go_fd;
    int passed;
};

/* A worker: runs its warm-up sync, calls gate_pass(), then its timed syncs into ms[0..reps).
 * Returns 0 or a negative code. */
typedef int (*peer_worker_fn)(void *arg, int w, int reps, double *ms, struct peer_gate *gate);

/* Tells the parent this worker is warm, then blocks until the parent releases every worker at
 * once (by closing the go pipe). No-op for g == NULL. Returns 0 or SMLT_EIO. */
static int gate_pass(struct peer_gate *g)
{
    if (!g)
        return 0;
    int32_t ready = 0;
    int rc = pipe_write_all(g->report_fd, &ready, sizeof ready);
    if (rc)
        return rc;
    g->passed = 1;
    for (;;) {
        char c;
        ssize_t k = read(g->go_fd, &c, 1);
        if (k == 0)
            return 0;
        if (k < 0 && errno == EINTR)
            continue;
        return SMLT_EIO;
    }
}

/* Body of a worker process. Returns its exit status. */
static int worker_child_main(peer_worker_fn fn, void *arg, int w, int reps, int report_fd,
                             int go_fd)
{
    struct peer_gate g = {.report_fd = report_fd, .go_fd = go_fd, .passed = 0};
    double *ms = calloc((size_t)reps, sizeof *ms);
    int rc = ms ? fn(arg, w, reps, ms, &g) : SMLT_ENOMEM;
    if (rc == 0 && !g.passed)
        rc = SMLT_EINTERNAL;
    /* Before the gate this status is read as the "ready" message, after it as the final one. */
    int32_t st = rc;
    if (pipe_write_all(report_fd, &st, sizeof st) == 0 && rc == 0)
        pipe_write_all(report_fd, ms, (size_t)reps * sizeof *ms);
    free(ms);
    close(report_fd);
    close(go_fd);
    return rc ? 1 : 0;
}

/* Runs fn in `workers` forked processes, releases them together after every warm-up, and
 * gathers their samples into ms_out (worker-major). Kills and reaps every worker on every path.
 * Returns 0 or the first error seen. */
static int workers_run(int workers, int reps, double *ms_out, peer_worker_fn fn, void *arg,
                       const char *what)
{
    pid_t pids[BENCH_PEERS_MAX_WORKERS];
    int rfd[BENCH_PEERS_MAX_WORKERS];
    int go[2] = {-1, -1};
    int rc = 0;

    for (int w = 0; w < workers; w++) {
        pids[w] = 0;
        rfd[w] = -1;
    }
    if (pipe2(go, O_CLOEXEC) < 0) {
        log_error("bench_peers: pipe: %s", strerror(errno));
        return SMLT_ESYS;
    }
    for (int w = 0; w < workers; w++) {
        int p[2];
        pid_t pid;
        if (pipe2(p, O_CLOEXEC) < 0) {
            log_error("bench_peers: pipe: %s", strerror(errno));
            rc = SMLT_ESYS;
            goto out;
        }
        rc = child_fork(&pid);
        if (rc) {
            close(p[0]);
            close(p[1]);
            goto out;
        }
        if (pid == 0) {
            close(p[0]);
            close(go[1]);
            for (int j = 0; j < w; j++)
                close(rfd[j]);
            _exit(worker_child_main(fn, arg, w, reps, p[1], go[0]));
        }
        close(p[1]);
        rfd[w] = p[0];
        pids[w] = pid;
    }
    close(go[0]);
    go[0] = -1;

    for (int w = 0; w < workers; w++) {
        int32_t st;
        rc = pipe_read_all(rfd[w], &st, sizeof st, -1);
        if (rc == 0)
            rc = st;
        if (rc) {
            log_error("bench_peers: %s worker %d failed before its timed syncs: %s", what, w,
                      smlt_strerror(rc));
            goto out;
        }
    }
    close(go[1]); /* every worker is warm: release them all at once */
    go[1] = -1;
    for (int w = 0; w < workers; w++) {
        int32_t st;
        rc = pipe_read_all(rfd[w], &st, sizeof st, -1);
        if (rc == 0)
            rc = st;
        if (rc == 0)
            rc = pipe_read_all(rfd[w], ms_out + (size_t)w * (size_t)reps,
                               (size_t)reps * sizeof *ms_out, -1);
        if (rc) {
            log_error("bench_peers: %s worker %d failed: %s", what, w, smlt_strerror(rc));
            goto out;
        }
    }
    for (int w = 0; w < workers; w++) {
        int es = child_reap(pids[w], BP_REAP_MS);
        pids[w] = 0;
        if (es != 0 && rc == 0) {
            log_error("bench_peers: %s worker %d exited with status %d", what, w, es);
            rc = SMLT_EIO;
        }
    }
out:
    for (int w = 0; w < workers; w++) {
        if (pids[w] > 0)
            child_reap(pids[w], 0);
        if (rfd[w] >= 0)
            close(rfd[w]);
    }
    if (go[0] >= 0)
        close(go[0]);
    if (go[1] >= 0)
        close(go[1]);
    return rc;
}

/* ---- TCP ceiling ---------------------------------------------------------------------------- */

/* One connection of the echo server: its socket and its own pre-faulted buffer. */
struct tcp_echo {
    int fd;
    size_t bytes;
    char *buf;
    int rc;
    pthread_t th;
};

/* Serves syncs until the client closes: read `bytes`, write them back. Returns 0 on a clean
 * close between syncs, else an I/O code. */
static int tcp_echo_serve(struct tcp_echo *e)
{
    for (;;) {
        ssize_t k = recv(e->fd, e->buf, e->bytes, 0);
        if (k == 0)
            return 0;
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return bp_errno_code(errno);
        }
        int rc = io_recv_all(e->fd, e->buf + k, e->bytes - (size_t)k);
        if (rc == 0)
            rc = io_send_all(e->fd, e->buf, e->bytes);
        if (rc)
            return rc;
    }
}

static void *tcp_echo_thread(void *arg)
{
    struct tcp_echo *e = arg;
    e->rc = tcp_echo_serve(e);
    return NULL;
}

/* Body of the echo server process: pre-faults a buffer per connection, listens on a loopback
 * port, reports it (int32; negative = error) on report_fd, then serves `conns` connections
 * concurrently, one thread each. Returns its exit status. */
static int tcp_server_main(int report_fd, size_t bytes, int conns)
{
    struct tcp_echo *e = calloc((size_t)conns, sizeof *e);
    int lfd = -1, port = 0, started = 0, rc = e ? 0 : SMLT_ENOMEM;
    for (int i = 0; rc == 0 && i < conns; i++) {
        e[i].fd = -1;
        e[i].bytes = bytes;
        e[i].buf = buf_new_prefaulted(bytes, 0);
        if (!e[i].buf)
            rc = SMLT_ENOMEM;
    }
    if (rc == 0)
        rc = sock_bind_loopback(conns, &lfd, &port);
    int32_t msg = rc ? rc : port;
    pipe_write_all(report_fd, &msg, sizeof msg);
    close(report_fd);
    for (int i = 0; rc == 0 && i < conns; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) {
                i--;
                continue;
            }
            log_error("bench_peers: tcp server: accept: %s", strerror(errno));
            rc = SMLT_ESYS;
            break;
        }
        e[i].fd = fd;
        rc = sock_tune(fd, 0);
        if (rc)
            break;
        if (conns == 1) {
            e[i].rc = tcp_echo_serve(&e[i]);
            continue;
        }
        if (pthread_create(&e[i].th, NULL, tcp_echo_thread, &e[i]) != 0) {
            rc = SMLT_ESYS;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(e[i].th, NULL);
    for (int i = 0; e && i < conns; i++) {
        if (rc == 0 && e[i].rc) {
            log_error("bench_peers: tcp server: connection %d: %s", i, smlt_strerror(e[i].rc));
            rc = e[i].rc;
        }
        if (e[i].fd >= 0)
            close(e[i].fd);
        free(e[i].buf);
    }
    if (lfd >= 0)
        close(lfd);
    free(e);
    return rc ? 1 : 0;
}

/* Forks the echo server for `conns` connections. Returns 0, *pid_out (reap it with
 * child_reap()) and *port_out, or a negative code with nothing left running. */
static int tcp_server_start(size_t bytes, int conns, pid_t *pid_out, int *port_out)
{
    int p[2];
    pid_t pid;
    if (pipe2(p, O_CLOEXEC) < 0) {
        log_error("bench_peers: pipe: %s", strerror(errno));
        return SMLT_ESYS;
    }
    int rc = child_fork(&pid);
    if (rc) {
        close(p[0]);
        close(p[1]);
        return rc;
    }
    if (pid == 0) {
        close(p[0]);
        _exit(tcp_server_main(p[1], bytes, conns));
    }
    close(p[1]);
    /* No timeout: before it reports, the server only allocates, pre-faults and binds; if it
     * dies, the pipe reports end-of-file. */
    int32_t msg = 0;
    rc = pipe_read_all(p[0], &msg, sizeof msg, -1);
    close(p[0]);
    if (rc == 0 && msg <= 0)
        rc = msg < 0 ? msg : SMLT_EINTERNAL;
    if (rc) {
        log_error("bench_peers: tcp server did not start: %s", smlt_strerror(rc));
        child_reap(pid, 0);
        return rc;
    }
    *pid_out = pid;
    *port_out = msg;
    return 0;
}

struct tcp_job {
    int port;
    size_t bytes;
};

/* One TCP client (a peer_worker_fn): `reps` + 1 syncs against the echo server. */
static int tcp_client_worker(void *arg, int w, int reps, double *ms, struct peer_gate *gate)
{
    const struct tcp_job *job = arg;
    size_t n = job->bytes;
    unsigned char *out = buf_new_prefaulted(n, 0x5a);
    unsigned char *in = buf_new_prefaulted(n, 0);
    int fd = -1, rc = 0;
    if (!out || !in) {
        rc = SMLT_ENOMEM;
        goto out;
    }
    rc = sock_connect_loopback(job->port, BENCH_PEERS_IO_TIMEOUT_MS, &fd);
    if (rc) {
        log_error("bench_peers: tcp client %d: connect to 127.0.0.1:%d: %s", w, job->port,
                  smlt_strerror(rc));
        goto out;
    }
    for (int k = -1; k < reps; k++) {
        /* Mark both ends of this sync's message and poison the landing spots, so a short or
         * stale echo cannot pass. */
        out[n - 1] = (unsigned char)(k * 7 + 3);
        out[0] = (unsigned char)(k + 31 * w);
        in[0] = (unsigned char)~out[0];
        in[n - 1] = (unsigned char)~out[n - 1];
        double t0 = (smlt_now_mono() * 1e3);
        rc = io_send_all(fd, out, n);
        if (rc == 0)
            rc = io_recv_all(fd, in, n);
        double t1 = (smlt_now_mono() * 1e3);
        if (rc) {
            log_error("bench_peers: tcp client %d: sync %d: %s", w, k, smlt_strerror(rc));
            goto out;
        }
        if (in[0] != out[0] || in[n - 1] != out[n - 1]) {
            log_error("bench_peers: tcp client %d: sync %d: echo differs from what was sent", w,
                      k);
            rc = SMLT_ECORRUPT;
            goto out;
        }
        if (k < 0)
            rc = gate_pass(gate);
        else
            ms[k] = t1 - t0;
        if (rc)
            goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    free(out);
    free(in);
    return rc;
}

static int bp_check_args(size_t bytes, int workers, int reps, const double *ms_out)
{
    if (bytes == 0 || workers < 1 || reps < 1 || !ms_out)
        return SMLT_EINVAL;
    if (workers > BENCH_PEERS_MAX_WORKERS || bytes > BENCH_PEERS_MAX_BYTES)
        return SMLT_ETOOBIG;
    return 0;
}

int bench_peers_tcp_sync(size_t bytes, int reps, double *ms_out)
{
    pid_t spid;
    int port;
    int rc = bp_check_args(bytes, 1, reps, ms_out);
    if (rc)
        return rc;
    rc = tcp_server_start(bytes, 1, &spid, &port);
    if (rc)
        return rc;
    struct tcp_job job = {.port = port, .bytes = bytes};
    rc = tcp_client_worker(&job, 0, reps, ms_out, NULL);
    /* The client has closed its socket: the server exits on its own unless something failed. */
    int es = child_reap(spid, rc ? 0 : BP_REAP_MS);
    if (rc == 0 && es != 0) {
        log_error("bench_peers: tcp server exited with status %d", es);
        rc = SMLT_EIO;
    }
    return rc;
}

int bench_peers_tcp_sync_multi(size_t bytes, int workers, int reps, double *ms_out)
{
    pid_t spid;
    int port;
    int rc = bp_check_args(bytes, workers, reps, ms_out);
    if (rc)
        return rc;
    if (workers == 1)
        return bench_peers_tcp_sync(bytes, reps, ms_out);
    rc = tcp_server_start(bytes, workers, &spid, &port);
    if (rc)
        return rc;
    struct tcp_job job = {.port = port, .bytes = bytes};
    rc = workers_run(workers, reps, ms_out, tcp_client_worker, &job, "tcp");
    int es = child_reap(spid, rc ? 0 : BP_REAP_MS);
    if (rc == 0 && es != 0) {
        log_error("bench_peers: tcp server exited with status %d", es);
        rc = SMLT_EIO;
    }
    return rc;
}

/* ---- a raw RESP client ---------------------------------------------------------------------- */

/* A Redis connection with a small input buffer for reply lines. Bulk payloads never pass
 * through it: they are read straight into the caller's buffer (only the few bytes that arrived
 * together with the header line are copied). */
struct resp_conn {
    int fd;
    size_t off, len; /* unread bytes are in[off..len) */
    char in[BP_RESP_LINE_MAX];
};

static int resp_open(struct resp_conn *c, int port, int timeout_ms)
{
    c->fd = -1;
    c->off = c->len = 0;
    return sock_connect_loopback(port, timeout_ms, &c->fd);
}

static void resp_close(struct resp_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Moves the unread bytes to the front and reads once more into the buffer. Returns 0,
 * SMLT_EPROTO if the buffer is full, SMLT_ECLOSED or an I/O code. */
static int resp_fill(struct resp_conn *c)
{
    if (c->off > 0) {
        memmove(c->in, c->in + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == sizeof c->in)
        return SMLT_EPROTO;
    for (;;) {
        ssize_t k = recv(c->fd, c->in + c->len, sizeof c->in - c->len, 0);
        if (k > 0) {
            c->len += (size_t)k;
            return 0;
        }
        if (k == 0)
            return SMLT_ECLOSED;
        if (errno != EINTR)
            return bp_errno_code(errno);
    }
}

/* Reads one reply line. Returns 0 and *line (NUL-terminated, CRLF removed; borrowed from c
 * until the next read on c), SMLT_EPROTO if no CRLF comes within BP_RESP_LINE_MAX bytes, or an
 * I/O code. */
static int resp_read_line(struct resp_conn *c, char **line)
{
    for (;;) {
        char *s = c->in + c->off;
        size_t avail = c->len - c->off;
        char *cr = avail >= 2 ? memmem(s, avail, "\r\n", 2) : NULL;
        if (cr) {
            *cr = '\0';
            *line = s;
            c->off += (size_t)(cr - s) + 2;
            return 0;
        }
        int rc = resp_fill(c);
        if (rc)
            return rc;
    }
}

/* Reads a bulk payload of exactly n bytes into dst (borrowed), then its CRLF. */
static int resp_read_bulk_into(struct resp_conn *c, void *dst, size_t n)
{
    size_t avail = c->len - c->off;
    size_t take = avail < n ? avail : n;
    memcpy(dst, c->in + c->off, take);
    c->off += take;
    int rc = io_recv_all(c->fd, (char *)dst + take, n - take);
    while (rc == 0 && c->len - c->off < 2)
        rc = resp_fill(c);
    if (rc)
        return rc;
    if (memcmp(c->in + c->off, "\r\n", 2) != 0)
        return SMLT_EPROTO;
    c->off += 2;
    return 0;
}

/* Expects the simple-string reply `want` ("+OK"). Returns 0, SMLT_EPROTO or an I/O code. */
static int resp_expect(struct resp_conn *c, const char *want, const char *what)
{
    char *line;
    int rc = resp_read_line(c, &line);
    if (rc)
        return rc;
    if (strcmp(line, want) != 0) {
        log_error("bench_peers: redis %s: unexpected reply '%.100s'", what, line);
        return SMLT_EPROTO;
    }
    return 0;
}

/* Writes the header of "SET key <n bytes>" into hdr. Returns its length, or -1 if it does not
 * fit. */
static int resp_set_header(char *hdr, size_t cap, const char *key, size_t n)
{
    int hl = snprintf(hdr, cap, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n", strlen(key), key, n);
    return hl > 0 && (size_t)hl < cap ? hl : -1;
}

/* SET with the value sent straight from data (borrowed, n bytes): one writev of header,
 * payload and CRLF. Returns 0, SMLT_EPROTO or an I/O code. */
static int resp_set(struct resp_conn *c, const char *hdr, size_t hdr_len, const void *data,
                    size_t n)
{
    struct iovec iov[3] = {
        {.iov_base = (void *)hdr, .iov_len = hdr_len},
        {.iov_base = (void *)data, .iov_len = n},
        {.iov_base = (void *)"\r\n", .iov_len = 2},
    };
    int rc = io_sendv_all(c->fd, iov, 3);
    return rc ? rc : resp_expect(c, "+OK", "SET");
}

/* Sends the prepared GET command cmd and reads the value, which must be exactly n bytes, into
 * dst (borrowed). Returns 0, SMLT_ENOTFOUND (nil), SMLT_EPROTO (error reply, wrong type or
 * length) or an I/O code. */
static int resp_get_into(struct resp_conn *c, const char *cmd, size_t cmd_len, void *dst,
                         size_t n)
{
    char *line, *end;
    int rc = io_send_all(c->fd, cmd, cmd_len);
    if (rc == 0)
        rc = resp_read_line(c, &line);
    if (rc)
        return rc;
    if (strcmp(line, "$-1") == 0) {
        log_error("bench_peers: redis GET: no such key");
        return SMLT_ENOTFOUND;
    }
    if (line[0] != '$' || line[1] < '0' || line[1] > '9') {
        log_error("bench_peers: redis GET: unexpected reply '%.100s'", line);
        return SMLT_EPROTO;
    }
    errno = 0;
    unsigned long long len = strtoull(line + 1, &end, 10);
    if (errno || *end != '\0' || len != (unsigned long long)n) {
        log_error("bench_peers: redis GET: reply of '%.40s' bytes, expected %zu", line + 1, n);
        return SMLT_EPROTO;
    }
    return resp_read_bulk_into(c, dst, n);
}

/* ---- redis-server lifecycle ----------------------------------------------------------------- */

struct bench_redis {
    pid_t pid;
    int port;
    char dir[BP_DIR_MAX];
};

static int file_is_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Finds the redis-server binary (see bench_peers_redis_start()). Returns 0 and the path in
 * path[cap], or SMLT_ENOTFOUND (logged). */
static int redis_find(char *path, size_t cap)
{
    const char *env = getenv("SMLT_REDIS_SERVER");
    if (env && *env) {
        if (file_is_executable(env) && strlen(env) < cap) {
            snprintf(path, cap, "%s", env);
            return 0;
        }
        log_error("bench_peers: SMLT_REDIS_SERVER=%s is not an executable file", env);
        return SMLT_ENOTFOUND;
    }
    const char *p = getenv("PATH");
    while (p && *p) {
        const char *colon = strchr(p, ':');
        size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
        int k = dlen ? snprintf(path, cap, "%.*s/redis-server", (int)dlen, p)
                     : snprintf(path, cap, "./redis-server"); /* empty entry: the cwd */
        if (k > 0 && (size_t)k < cap && file_is_executable(path))
            return 0;
        p = colon ? colon + 1 : NULL;
    }
    if (file_is_executable("/usr/bin/redis-server") && cap > strlen("/usr/bin/redis-server")) {
        snprintf(path, cap, "/usr/bin/redis-server");
        return 0;
    }
    log_error("bench_peers: redis-server not found in PATH or /usr/bin (install the Debian "
              "package redis-server, or point SMLT_REDIS_SERVER at the binary)");
    return SMLT_ENOTFOUND;
}

/* Returns 0 and a loopback port that was free a moment ago, or SMLT_ESYS. The port is released
 * before redis-server binds it, so a caller must be ready for it to be taken meanwhile. */
static int port_pick_free(int *port_out)
{
    int fd;
    int rc = sock_bind_loopback(0, &fd, port_out);
    if (rc == 0)
        close(fd);
    return rc;
}

/* Removes dir and the files in it (redis.log, redis.out). */
static void dir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            char path[PATH_MAX];
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path ||
                unlink(path) < 0)
                log_warn("bench_peers: cannot remove %s/%s", dir, de->d_name);
        }
        closedir(d);
    }
    if (rmdir(dir) < 0)
        log_warn("bench_peers: cannot remove %s: %s", dir, strerror(errno));
}

/* Logs the last line of the server's log and of its stdout/stderr, to say why it failed. */
static void redis_log_tail(const char *dir)
{
    static const char *names[] = {"redis.log", "redis.out"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[PATH_MAX], buf[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        off_t size = lseek(fd, 0, SEEK_END);
        off_t from = size > (off_t)sizeof buf - 1 ? size - (off_t)sizeof buf + 1 : 0;
        ssize_t k = size > 0 ? pread(fd, buf, sizeof buf - 1, from) : 0;
        close(fd);
        if (k <= 0)
            continue;
        while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == '\r'))
            k--;
        buf[k] = '\0';
        char *last = strrchr(buf, '\n');
        log_error("bench_peers: redis-server %s: %s", names[i], last ? last + 1 : buf);
    }
}

/* Forks and execs redis-server on 127.0.0.1:port with its files in dir. Returns 0 and *pid_out
 * once the exec succeeded, SMLT_ENOTFOUND or SMLT_ESYS if it did not (nothing left running). */
static int redis_spawn(const char *bin, const char *dir, int port, pid_t *pid_out)
{
    char port_s[16], log_path[PATH_MAX], out_path[PATH_MAX];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(log_path, sizeof log_path, "%s/redis.log", dir);
    snprintf(out_path, sizeof out_path, "%s/redis.out", dir);
    char *argv[] = {(char *)bin,       "--port",     port_s, "--bind",  "127.0.0.1",
                    "--save",          "",           "--appendonly", "no",
                    "--protected-mode", "no",        "--daemonize", "no",
                    "--dir",           (char *)dir,  "--logfile", log_path, NULL};
    int ep[2]; /* exec-status pipe: closed by a successful exec, carries errno otherwise */
    pid_t pid;
    if (pipe2(ep, O_CLOEXEC) < 0) {
        log_error("bench_peers: pipe: %s", strerror(errno));
        return SMLT_ESYS;
    }
    int rc = child_fork(&pid);
    if (rc) {
        close(ep[0]);
        close(ep[1]);
        return rc;
    }
    if (pid == 0) {
        close(ep[0]);
        int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (in >= 0 && out >= 0 && dup2(in, 0) >= 0 && dup2(out, 1) >= 0 && dup2(out, 2) >= 0)
            execv(bin, argv);
        int err = errno;
        pipe_write_all(ep[1], &err, sizeof err);
        _exit(127);
    }
    close(ep[1]);
    int err = 0;
    rc = pipe_read_all(ep[0], &err, sizeof err, -1);
    close(ep[0]);
    if (rc == 0) {
        child_reap(pid, 0);
        log_error("bench_peers: cannot run %s: %s", bin, strerror(err));
        return err == ENOENT || err == EACCES || err == ENOEXEC ? SMLT_ENOTFOUND : SMLT_ESYS;
    }
    *pid_out = pid;
    return 0;
}

/* Returns 0 once a PING to the server answers +PONG, SMLT_EIO if it exited first (then it has
 * been reaped, *pid is set to 0 and *status holds its exit status), or SMLT_ETIMEDOUT after
 * timeout_ms (logged with its last answer, if any; the caller kills it). Until then a refused
 * connection or an unexpected answer (-LOADING ...) just means "not yet". */
static int redis_wait_ready(pid_t *pid, int port, int timeout_ms, int *status)
{
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    char last[128] = "";
    double end = (smlt_now_mono() * 1e3) + timeout_ms;
    for (;;) {
        int st;
        pid_t k = waitpid(*pid, &st, WNOHANG);
        if (k == *pid) {
            *pid = 0;
            *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return SMLT_EIO;
        }
        struct resp_conn c;
        if (resp_open(&c, port, 1000) == 0) {
            char *line;
            int rc = io_send_all(c.fd, ping, sizeof ping - 1);
            if (rc == 0)
                rc = resp_read_line(&c, &line);
            if (rc == 0 && strcmp(line, "+PONG") == 0) {
                resp_close(&c);
                return 0;
            }
            if (rc == 0)
                snprintf(last, sizeof last, "%s", line);
            resp_close(&c);
        }
        if ((smlt_now_mono() * 1e3) >= end) {
            log_error("bench_peers: redis-server did not answer PING with +PONG within %d ms%s%s",
                      timeout_ms, last[0] ? "; last answer: " : "", last);
            return SMLT_ETIMEDOUT;
        }
        usleep(10000);
    }
}

int bench_peers_redis_start(struct bench_redis **out)
{
    char bin[PATH_MAX];
    if (!out)
        return SMLT_EINVAL;
    *out = NULL;
    int rc = redis_find(bin, sizeof bin);
    if (rc)
        return rc;
    struct bench_redis *r = calloc(1, sizeof *r);
    if (!r)
        return SMLT_ENOMEM;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    if (snprintf(r->dir, sizeof r->dir, "%s/smlt-redis.XXXXXX", tmp) >= (int)sizeof r->dir ||
        !mkdtemp(r->dir)) {
        log_error("bench_peers: cannot create a directory under %s: %s", tmp, strerror(errno));
        free(r);
        return SMLT_ESYS;
    }
    for (int attempt = 1; attempt <= BP_REDIS_ATTEMPTS; attempt++) {
        pid_t pid = 0;
        int port = 0;
        rc = port_pick_free(&port);
        if (rc == 0)
            rc = redis_spawn(bin, r->dir, port, &pid);
        if (rc)
            break;
        int status = 0;
        rc = redis_wait_ready(&pid, port, BP_REDIS_READY_MS, &status);
        if (rc == 0) {
            r->pid = pid;
            r->port = port;
            *out = r;
            log_debug("bench_peers: redis-server pid %d on 127.0.0.1:%d, dir %s", (int)pid, port,
                      r->dir);
            return 0;
        }
        if (pid > 0)
            child_reap(pid, 0);
        if (rc == SMLT_ETIMEDOUT)
            break;
        /* Most likely the port was taken between port_pick_free() and its bind: try another. */
        log_warn("bench_peers: %s on port %d exited with status %d at start (attempt %d of %d)",
                 bin, port, status, attempt, BP_REDIS_ATTEMPTS);
    }
    redis_log_tail(r->dir);
    dir_remove(r->dir);
    free(r);
    return rc;
}

void bench_peers_redis_stop(struct bench_redis *r)
{
    if (!r)
        return;
    if (r->pid > 0) {
        int es = kill(r->pid, SIGTERM) == 0 ? child_reap(r->pid, BP_REDIS_STOP_MS)
                                            : child_reap(r->pid, 0);
        if (es != 0 && es != 128 + SIGTERM)
            log_warn("bench_peers: redis-server pid %d ended with status %d", (int)r->pid, es);
    }
    dir_remove(r->dir);
    free(r);
}

pid_t bench_peers_redis_pid(const struct bench_redis *r)
{
    return r ? r->pid : 0;
}

int bench_peers_redis_port(const struct bench_redis *r)
{
    return r ? r->port : 0;
}

/* ---- model sync through Redis --------------------------------------------------------------- */

/* The model blob's floats: exact in float32 and never negative, so a -1 poison stands out. */
static float model_value(size_t i)
{
    return (float)(i % 4093) * 0.25f + 1.0f;
}

struct redis_job {
    int port;
    size_t bytes;
};

/* Stores the model blob under key "model" once, before any timed sync. */
static int redis_seed(int port, size_t bytes)
{
    size_t nf = bytes / sizeof(float);
    char hdr[96];
    struct resp_conn c;
    int hl = resp_set_header(hdr, sizeof hdr, "model", bytes);
    float *m = malloc(bytes);
    if (!m)
        return SMLT_ENOMEM;
    for (size_t i = 0; i < nf; i++)
        m[i] = model_value(i);
    int rc = resp_open(&c, port, BENCH_PEERS_IO_TIMEOUT_MS);
    if (rc == 0) {
        rc = resp_set(&c, hdr, (size_t)hl, m, bytes);
        resp_close(&c);
    }
    if (rc)
        log_error("bench_peers: redis: seeding the model (%zu bytes): %s", bytes,
                  smlt_strerror(rc));
    free(m);
    return rc;
}

/* One Redis worker (a peer_worker_fn): `reps` + 1 syncs of SET grad:<w>, GET model. */
static int redis_worker(void *arg, int w, int reps, double *ms, struct peer_gate *gate)
{
    static const char get_cmd[] = "*2\r\n$3\r\nGET\r\n$5\r\nmodel\r\n";
    const struct redis_job *job = arg;
    size_t n = job->bytes, nf = n / sizeof(float);
    size_t probe[3] = {0, nf / 2, nf - 1};
    char key[32], hdr[96];
    struct resp_conn c = {.fd = -1};
    float *grad = buf_new_prefaulted(n, 0);
    float *model = buf_new_prefaulted(n, 0);
    int rc = 0;
    if (!grad || !model) {
        rc = SMLT_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nf; i++)
        grad[i] = (float)w + (float)(i % 1021) * 0.5f;
    snprintf(key, sizeof key, "grad:%d", w);
    int hl = resp_set_header(hdr, sizeof hdr, key, n);
    rc = resp_open(&c, job->port, BENCH_PEERS_IO_TIMEOUT_MS);
    if (rc) {
        log_error("bench_peers: redis worker %d: connect to 127.0.0.1:%d: %s", w, job->port,
                  smlt_strerror(rc));
        goto out;
    }
    for (int k = -1; k < reps; k++) {
        grad[0] = (float)k; /* a fresh gradient every step */
        for (int j = 0; j < 3; j++)
            model[probe[j]] = -1.0f; /* a GET that lands nothing fails the check below */
        double t0 = (smlt_now_mono() * 1e3);
        rc = resp_set(&c, hdr, (size_t)hl, grad, n);
        if (rc == 0)
            rc = resp_get_into(&c, get_cmd, sizeof get_cmd - 1, model, n);
        double t1 = (smlt_now_mono() * 1e3);
        if (rc) {
            log_error("bench_peers: redis worker %d: sync %d: %s", w, k, smlt_strerror(rc));
            goto out;
        }
        for (int j = 0; j < 3; j++) {
            if (model[probe[j]] != model_value(probe[j])) {
                log_error("bench_peers: redis worker %d: sync %d: model float %zu is %g, "
                          "expected %g",
                          w, k, probe[j], (double)model[probe[j]],
                          (double)model_value(probe[j]));
                rc = SMLT_ECORRUPT;
                goto out;
            }
        }
        if (k < 0)
            rc = gate_pass(gate);
        else
            ms[k] = t1 - t0;
        if (rc)
            goto out;
    }
out:
    resp_close(&c);
    free(grad);
    free(model);
    return rc;
}

int bench_peers_redis_sync(struct bench_redis *r, size_t bytes, int workers, int reps,
                           double *ms_out)
{
    if (!r || r->pid <= 0 || bytes < sizeof(float) || bytes % sizeof(float) != 0)
        return SMLT_EINVAL;
    int rc = bp_check_args(bytes, workers, reps, ms_out);
    if (rc)
        return rc;
    rc = redis_seed(r->port, bytes);
    if (rc)
        return rc;
    struct redis_job job = {.port = r->port, .bytes = bytes};
    if (workers == 1)
        return redis_worker(&job, 0, reps, ms_out, NULL);
    return workers_run(workers, reps, ms_out, redis_worker, &job, "redis");
}

/* ---- statistics ----------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_peers_percentile(double *v, int n, double p)
{
    if (!v || n < 1 || isnan(p))
        return NAN;
    if (p < 0)
        p = 0;
    if (p > 100)
        p = 100;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double rank = p / 100.0 * (double)(n - 1);
    int lo = (int)rank; /* rank >= 0: truncation is floor */
    int hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (v[hi] - v[lo]) * (rank - (double)lo);
}
