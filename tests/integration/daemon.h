/* daemon.h: starting and stopping real SMLT-C daemons from integration tests.
 *
 * A daemon is started as a child process listening on 127.0.0.1 port 0; it reports the port it
 * bound through a --port-file. Every child gets a watchdog (alarm(2), which survives exec) so a
 * hung daemon dies on its own. Stopping is always by process id: SIGTERM, a grace period, then
 * SIGKILL. Nothing is ever killed by name. */
#ifndef TEST_DAEMON_H
#define TEST_DAEMON_H

#include <sys/types.h>

struct test_daemon {
    pid_t pid;
    int port;
    char addr[64]; /* "127.0.0.1:PORT" */
    char dir[256]; /* a private temporary directory (port file, logs) */
};

/* Returns the path of a built program (from $SMLT_BIN_DIR), in a static buffer per call slot. */
const char *test_bin(const char *name);

/* Starts `name` (looked up with test_bin()) with args (NULL-terminated, may be NULL) plus
 * "--listen 127.0.0.1:0 --port-file DIR/port"; stderr goes to DIR/log. Waits up to 10 s for the
 * port. Returns 0, or -1 (the child, if any, is stopped). watchdog_s: seconds before the child
 * is killed by SIGALRM. */
int test_daemon_start(struct test_daemon *d, const char *name, const char *const *args,
                      unsigned watchdog_s);

/* The same for a program that is not one of the build's: argv[0] is its path (a script's
 * interpreter, say), then its arguments (NULL-terminated); env (NAME=VALUE, NULL-terminated,
 * may be NULL) is added to its environment. "--listen 127.0.0.1:0" (unless argv has
 * --listen) and "--port-file DIR/port" are appended. */
int test_daemon_start_argv(struct test_daemon *d, const char *const *argv,
                           const char *const *env, unsigned watchdog_s);

/* Stops the daemon by its pid and removes its directory. Returns the exit status as waitpid
 * reports it (or -1). Safe to call twice. */
int test_daemon_stop(struct test_daemon *d);

/* Prints the daemon's log to stderr (for failed tests). */
void test_daemon_dump_log(const struct test_daemon *d);

#endif
