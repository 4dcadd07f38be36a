/* daemon.c: see daemon.h. Process handling is proto/smlt_proc.c's. */
#include "daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smlt_proc.h"

const char *test_bin(const char *name)
{
    static char buf[4][1024];
    static int slot;
    const char *dir = getenv("SMLT_BIN_DIR");
    char *b = buf[slot++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir ? dir : ".", name);
    return b;
}

int test_daemon_start(struct test_daemon *d, const char *name, const char *const *args,
                      unsigned watchdog_s)
{
    const char *argv[60];
    int n = 0;
    argv[n++] = test_bin(name);
    for (int i = 0; args && args[i] && n < 59; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return test_daemon_start_argv(d, argv, NULL, watchdog_s);
}

int test_daemon_start_argv(struct test_daemon *d, const char *const *args,
                           const char *const *env, unsigned watchdog_s)
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
    int has_listen = 0;
    for (int i = 0; args[i] && n < 58; i++) {
        has_listen |= !strcmp(args[i], "--listen");
        argv[n++] = args[i];
    }
    if (!has_listen) { /* loopback unless the test gives its own (in its own namespace) */
        argv[n++] = "--listen";
        argv[n++] = "127.0.0.1:0";
    }
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    argv[n] = NULL;
    struct smlt_proc_opts o = {.log_path = log_file,
                               .watchdog_s = watchdog_s ? watchdog_s : 300,
                               .die_with_parent = 1,
                               .env = env};
    d->pid = smlt_proc_spawn(argv, &o);
    if (d->pid <= 0) {
        d->pid = 0;
        return -1;
    }
    int port = smlt_proc_wait_port(d->pid, port_file, 10000);
    if (port <= 0) {
        test_daemon_dump_log(d);
        test_daemon_stop(d);
        return -1;
    }
    d->port = port;
    snprintf(d->addr, sizeof d->addr, "127.0.0.1:%d", d->port);
    return 0;
}

int test_daemon_stop(struct test_daemon *d)
{
    int status = -1;
    if (d->pid > 0)
        status = smlt_proc_stop(d->pid, 5000);
    d->pid = 0;
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
