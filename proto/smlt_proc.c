/* smlt_proc.c: see smlt_proc.h. */
#include "smlt_proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "smlt_error.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

pid_t smlt_proc_spawn(const char *const *argv, const struct smlt_proc_opts *o)
{
    if (!argv || !argv[0])
        return SMLT_EINVAL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return SMLT_ESYS;
    if (pid == 0) {
        if (o && o->die_with_parent) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(1);
        }
        if (o && o->new_pgrp)
            setpgid(0, 0);
        if (o && o->log_path) {
            int fd = open(o->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        signal(SIGPIPE, SIG_DFL);
        for (int i = 0; o && o->env && o->env[i]; i++)
            putenv((char *)o->env[i]);
        if (o && o->watchdog_s)
            alarm(o->watchdog_s);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

int smlt_proc_wait_port(pid_t pid, const char *path, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        FILE *f = fopen(path, "r");
        if (f) {
            int port = 0;
            int ok = fscanf(f, "%d", &port) == 1;
            fclose(f);
            if (ok && port > 0 && port < 65536)
                return port;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return SMLT_ECLOSED;
        sleep_ms(5);
    }
    return SMLT_ETIMEDOUT;
}

int smlt_proc_stop(pid_t pid, int grace_ms)
{
    int status = -1;
    if (pid <= 0)
        return -1;
    if (kill(pid, SIGTERM) != 0 && errno == ESRCH) {
        waitpid(pid, &status, WNOHANG);
        return status;
    }
    for (int waited = 0;; waited += 5) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        /* Not our child (a process adopted from an earlier run): watch it by its pid. */
        int child = !(r < 0 && errno == ECHILD);
        if (r < 0 && child)
            return -1;
        if (!child && !smlt_proc_alive(pid))
            return -1; /* gone, or a zombie its new parent has not reaped yet */
        if (waited >= grace_ms) {
            kill(pid, SIGKILL);
            if (child)
                waitpid(pid, &status, 0);
            return status;
        }
        sleep_ms(5);
    }
}

int smlt_proc_alive(pid_t pid)
{
    if (pid <= 0)
        return 0;
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
        return 0; /* our child, and it has exited (now reaped) */
    if (r == 0)
        return 1;
    if (kill(pid, 0) != 0 && errno != EPERM)
        return 0;
    /* Killed but not yet reaped by its (new) parent: a zombie runs no more. */
    struct smlt_proc_info p;
    if (smlt_proc_info(pid, &p) != 0)
        return 1; /* (unreadable: it exists) */
    return p.state != 'Z' && p.state != 'X';
}

/* Reads a whole small /proc file into buf (NUL-terminated). Returns its length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t k = read(fd, buf, len - 1);
    close(fd);
    if (k < 0)
        return -1;
    buf[k] = '\0';
    return k;
}

int smlt_proc_info(pid_t pid, struct smlt_proc_info *out)
{
    char path[64], stat[512];
    memset(out, 0, sizeof *out);
    out->pid = pid;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_small(path, stat, sizeof stat) <= 0)
        return -1;
    /* "PID (comm) S PPID ...": comm may hold spaces and parentheses, so from the last ')'. */
    const char *rp = strrchr(stat, ')');
    int ppid = 0;
    if (!rp || sscanf(rp + 1, " %c %d", &out->state, &ppid) != 2)
        return -1;
    out->ppid = (pid_t)ppid;
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    ssize_t k = read_small(path, out->args, sizeof out->args);
    if (k < 0)
        return -1;
    for (ssize_t i = 0; i < k; i += (ssize_t)strlen(out->args + i) + 1)
        out->argc++;
    memcpy(out->line, out->args, (size_t)k + 1);
    for (ssize_t i = 0; i + 1 < k; i++)
        if (!out->line[i])
            out->line[i] = ' ';
    const char *slash = strrchr(out->args, '/');
    out->base = slash ? slash + 1 : out->args;
    return 0;
}

const char *smlt_proc_arg(const struct smlt_proc_info *p, const char *flag, char *out,
                          size_t len)
{
    const char *a = p->args;
    for (int i = 0; i + 1 < p->argc; i++, a += strlen(a) + 1)
        if (!strcmp(a, flag)) {
            snprintf(out, len, "%s", a + strlen(a) + 1);
            return out;
        }
    return NULL;
}

int smlt_proc_find(const char *prog, pid_t ppid, const char *needle1, const char *needle2,
                   pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    struct smlt_proc_info p;
    while ((e = readdir(d)) && n < max) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == getpid() || smlt_proc_info((pid_t)pid, &p) != 0)
            continue;
        if (p.state == 'Z' || p.state == 'X' || (ppid > 0 && p.ppid != ppid) ||
            (prog && strcmp(p.base, prog)) || (needle1 && !strstr(p.line, needle1)) ||
            (needle2 && !strstr(p.line, needle2)))
            continue;
        out[n++] = (pid_t)pid;
    }
    closedir(d);
    return n;
}

const char *smlt_proc_self_dir(void)
{
    static char dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0)
        return ".";
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    return dir;
}
