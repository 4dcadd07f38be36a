/* smlt_proc.c: see smlt_proc.h. */
#include "smlt_proc.h"

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
        if (!child && kill(pid, 0) != 0 && errno == ESRCH)
            return -1;
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
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
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
