/* daemon.c: see daemon.h. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *test_bin(const char *name)
{
    static char buf[4][1024];
    static int slot;
    const char *dir = getenv("SMLT_BIN_DIR");
    char *b = buf[slot++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir ? dir : ".", name);
    return b;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int test_daemon_start(struct test_daemon *d, const char *name, const char *const *args,
                      unsigned watchdog_s)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "/tmp/smlt-test.XXXXXX");
    if (!mkdtemp(d->dir))
        return -1;
    char port_file[300], log_file[300];
    snprintf(port_file, sizeof port_file, "%s/port", d->dir);
    snprintf(log_file, sizeof log_file, "%s/log", d->dir);
    const char *argv[64];
    int n = 0;
    argv[n++] = test_bin(name);
    for (int i = 0; args && args[i] && n < 58; i++)
        argv[n++] = args[i];
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        alarm(watchdog_s ? watchdog_s : 300);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    d->pid = pid;
    for (int waited = 0; waited < 10000; waited += 10) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", &d->port) == 1;
            fclose(f);
            if (ok && d->port > 0) {
                snprintf(d->addr, sizeof d->addr, "127.0.0.1:%d", d->port);
                return 0;
            }
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = 0;
            test_daemon_dump_log(d);
            return -1;
        }
        sleep_ms(10);
    }
    test_daemon_stop(d);
    return -1;
}

int test_daemon_stop(struct test_daemon *d)
{
    int status = -1;
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        int waited = 0;
        for (;;) {
            pid_t r = waitpid(d->pid, &status, WNOHANG);
            if (r == d->pid || (r < 0 && errno == ECHILD))
                break;
            if (waited >= 5000) {
                kill(d->pid, SIGKILL);
                waitpid(d->pid, &status, 0);
                break;
            }
            sleep_ms(10);
            waited += 10;
        }
        d->pid = 0;
    }
    if (d->dir[0]) {
        char path[300];
        snprintf(path, sizeof path, "%s/port", d->dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/log", d->dir);
        unlink(path);
        rmdir(d->dir);
        d->dir[0] = '\0';
    }
    return status;
}

void test_daemon_dump_log(const struct test_daemon *d)
{
    char path[300];
    snprintf(path, sizeof path, "%s/log", d->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[1024];
    fprintf(stderr, "---- log of %s ----\n", d->addr);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}
