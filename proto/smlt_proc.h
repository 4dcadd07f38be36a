/* smlt_proc.h: starting and stopping SMLT-C daemons as child processes.
 *
 * Used by everything that runs shards or workers locally (smlt-bench, the coordinator's local
 * backend, the integration tests). A daemon child listens on port 0 and writes the port it
 * bound to a port file; the parent waits for that file. Children are always stopped by their
 * process id (SIGTERM, a grace period, SIGKILL) and reaped; nothing is killed by name. */
#ifndef SMLT_PROC_H
#define SMLT_PROC_H

#include <sys/types.h>

struct smlt_proc_opts {
    const char *log_path;   /* stderr (and stdout) of the child go here; NULL: inherited */
    unsigned watchdog_s;    /* alarm(2) in the child before exec (survives exec); 0: none */
    int die_with_parent;    /* PR_SET_PDEATHSIG(SIGTERM) in the child */
    int new_pgrp;           /* put the child in its own process group */
    const char *const *env; /* NAME=VALUE strings added to the child's environment (secrets go
                               here, not on a command line other users can read) */
};

/* Forks and execs argv[0] with argv (NULL-terminated; argv[0] a path). Returns the pid, or a
 * negative SMLT_E* code. */
pid_t smlt_proc_spawn(const char *const *argv, const struct smlt_proc_opts *o);

/* Waits up to timeout_ms for path to hold a port number (written by the child with
 * --port-file), while checking that pid is still alive. Returns the port, SMLT_ETIMEDOUT, or
 * SMLT_ECLOSED if the child exited first. */
int smlt_proc_wait_port(pid_t pid, const char *path, int timeout_ms);

/* Stops pid: SIGTERM, up to grace_ms for it to exit, then SIGKILL; reaps it. Returns the wait
 * status, or -1 if it was not our child. */
int smlt_proc_stop(pid_t pid, int grace_ms);

/* Returns the directory holding the running executable (static buffer), for finding sibling
 * programs such as smlt-ps next to smlt-bench. */
const char *smlt_proc_self_dir(void);

/* 1 while process pid runs: a child is reaped when it has exited (then 0); any other process
 * is looked for by its pid (a zombie, killed but not yet reaped, runs no more). */
int smlt_proc_alive(pid_t pid);

/* What /proc tells of a process: its parent, its state letter ('Z' a zombie), and its command
 * line, the arguments NUL-separated in args (argc of them; the last ones cut when they do not
 * fit) and joined by spaces in line. */
struct smlt_proc_info {
    pid_t pid, ppid;
    char state;
    int argc;
    char args[4096];
    char line[4096];
    const char *base;       /* argv[0]'s base name (points into args) */
};

/* Reads pid's entry. Returns 0, or -1 when there is no such process. */
int smlt_proc_info(pid_t pid, struct smlt_proc_info *out);

/* The argument after `flag` on pid's command line ("--shard 3" -> "3"), copied to out; NULL
 * when absent. */
const char *smlt_proc_arg(const struct smlt_proc_info *p, const char *flag, char *out,
                          size_t len);

/* Finds running processes (not zombies, not this one): argv[0]'s base name is prog (NULL:
 * any), the parent is ppid (0: any), and the joined command line contains every non-NULL
 * needle (needles: up to 2). Stores up to max pids in out; returns how many. */
int smlt_proc_find(const char *prog, pid_t ppid, const char *needle1, const char *needle2,
                   pid_t *out, int max);

#endif
