/* smltctl.h: what the smltctl command's files share.
 *
 * smltctl is the command line people use: it starts and stops a local cluster (a detached
 * smlt-coordinator), submits jobs, shows and watches them, and fetches their models. It talks
 * only to the coordinator's HTTP JSON API (coordinator/coord_http.h); it holds no training logic.
 *
 *   smltctl.c          main, global flags, help, the state directory and cluster.json, HTTP
 *                      (libcurl) and the API calls with their error mapping
 *   smltctl_cluster.c  up, down, demo
 *   smltctl_jobs.c     submit, status, watch, cancel, scale, logs, model, checkpoint
 *
 * Every command returns one of the exit codes below, and prints its errors in plain words on
 * stderr, prefixed "smltctl: ". */
#ifndef SMLTCTL_H
#define SMLTCTL_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

/* Exit codes (documented in `smltctl --help`; scripts rely on them). */
enum {
    SMLTCTL_OK = 0,
    SMLTCTL_ERR = 1,         /* the job failed, a request was refused, an I/O error */
    SMLTCTL_USAGE = 2,       /* bad command line */
    SMLTCTL_NOTFOUND = 3,    /* no such job */
    SMLTCTL_UNREACHABLE = 4  /* cannot reach the coordinator (or no cluster is up) */
};

#define SMLTCTL_URL_MAX 512
#define SMLTCTL_TOKEN_MAX 256
#define SMLTCTL_MAX_BODY (256u << 20) /* largest HTTP response kept in memory */
#define SMLTCTL_DEMO_DATA "/usr/share/datasets/fashion-mnist"

/* The command line's global settings and where to find the coordinator. */
struct smltctl {
    const char *url_flag, *token_flag; /* --url, --token (NULL: not given) */
    const char *cacert_flag;           /* --cacert (NULL: not given) */
    const char *cert_flag, *key_flag;  /* --cert, --key: a client certificate (mutual TLS) */
    int json;                          /* --json */
    char state_dir[PATH_MAX];          /* $SMLT_HOME or ~/.smlt */
    char url[SMLTCTL_URL_MAX];         /* resolved by smltctl_resolve(); no trailing slash */
    char token[SMLTCTL_TOKEN_MAX];     /* "" when none is known */
    int resolved;
    int quiet_http;                    /* smltctl_http() prints nothing when unreachable */
};

/* A local cluster as `smltctl up` records it in STATE_DIR/cluster.json. */
struct smltctl_cluster {
    char url[SMLTCTL_URL_MAX];
    char token[SMLTCTL_TOKEN_MAX];
    pid_t pid;
    char log[PATH_MAX];
    char data_dir[PATH_MAX];
};

/* A growable byte buffer (always NUL-terminated when data is not NULL). */
struct smltctl_buf {
    char *data;
    size_t len, cap;
};

void smltctl_buf_free(struct smltctl_buf *b);

/* ---- messages -------------------------------------------------------------------------- */

/* Prints "smltctl: MESSAGE\n" on stderr. */
void smltctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- command-line parsing ---------------------------------------------------------------- */

/* If argv[*i] is `name` ("--name VALUE" or "--name=VALUE"), stores the value in *val, advances
 * *i past it and returns 1; returns -1 (after a usage message) when the value is missing, 0 when
 * argv[*i] is another argument. */
int smltctl_opt(int argc, char **argv, int *i, const char *name, const char **val);

/* Consumes a global flag (--url, --token, --json) at argv[*i]: 1 if it was one, -1 on a usage
 * error, 0 otherwise. Commands call it so global flags may follow the command's name. */
int smltctl_global_opt(struct smltctl *c, int argc, char **argv, int *i);

/* Strict number parsing for flags: 0, or SMLTCTL_USAGE after a message naming the flag. */
int smltctl_parse_long(const char *flag, const char *s, long long lo, long long hi, long long *out);
int smltctl_parse_double(const char *flag, const char *s, double *out);
/* "90", "90s", "15m", "2h", "1.5h" -> seconds. */
int smltctl_parse_duration(const char *flag, const char *s, double *out);

/* An unknown option or surplus argument: prints the message and the command's usage line;
 * returns SMLTCTL_USAGE. */
int smltctl_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the state directory and the local cluster ------------------------------------------ */

/* Fills c->state_dir from $SMLT_HOME, else $HOME/.smlt, else the passwd entry's home. */
int smltctl_state_init(struct smltctl *c);

/* Path of a file in the state directory (static buffer per slot; 4 slots). */
const char *smltctl_state_path(const struct smltctl *c, const char *name);

/* Reads STATE_DIR/cluster.json. Returns 0, SMLTCTL_NOTFOUND (no file) or SMLTCTL_ERR (unreadable
 * or malformed, with a message). */
int smltctl_cluster_read(const struct smltctl *c, struct smltctl_cluster *out);

/* Writes STATE_DIR/cluster.json atomically with mode 0600. Returns 0 or SMLTCTL_ERR. */
int smltctl_cluster_write(const struct smltctl *c, const struct smltctl_cluster *cl);

/* 1 if pid is alive and runs smlt-coordinator (not a zombie; checked through /proc so that a
 * reused pid is never taken for our coordinator), else 0. */
int smltctl_coordinator_alive(pid_t pid);

/* ---- talking to the coordinator --------------------------------------------------------- */

/* Decides the coordinator's URL and token: --url, $SMLT_URL, cluster.json's; --token,
 * $SMLT_TOKEN, cluster.json's (only sent to the cluster's own URL). Returns 0, or
 * SMLTCTL_UNREACHABLE with a message when there is no URL at all. */
int smltctl_resolve(struct smltctl *c);

/* One HTTP request to c->url + path. body (may be NULL) is sent with POST. The response body goes
 * to `to` when the status is 2xx and `to` is not NULL, else into out (which may be NULL to drop
 * it). The admin token is sent with every POST. timeout_s: for the whole transfer. Returns
 * SMLTCTL_OK with *status set, or SMLTCTL_UNREACHABLE after printing why in plain words. */
int smltctl_http(struct smltctl *c, const char *method, const char *path, const char *body,
                 long timeout_s, long *status, struct smltctl_buf *out, FILE *to);

/* A JSON API call: method and path as above, body (borrowed; may be NULL). On 2xx returns
 * SMLTCTL_OK and *resp (a new reference; may be NULL when not wanted). Otherwise prints the
 * coordinator's error and returns SMLTCTL_NOTFOUND (404; `what` names the thing not found, such
 * as "job job-0001"), SMLTCTL_ERR (400, 401, 409, 5xx) or SMLTCTL_UNREACHABLE. */
int smltctl_api(struct smltctl *c, const char *method, const char *path, json_t *body,
                json_t **resp, const char *what);

/* Same without printing: the coordinator's error message (or "") in err; for callers that
 * want to word it themselves. *http_status is set when the coordinator answered. */
int smltctl_api_quiet(struct smltctl *c, const char *method, const char *path, json_t *body,
                      json_t **resp, long *http_status, char *err, size_t errlen);

/* ---- JSON helpers ----------------------------------------------------------------------- */

double smltctl_jnum(const json_t *o, const char *key);          /* 0 if absent */
long long smltctl_jint(const json_t *o, const char *key);       /* 0 if absent */
const char *smltctl_jstr(const json_t *o, const char *key);     /* "" if absent */

/* Prints v as indented JSON on stdout, with a newline. */
void smltctl_print_json(const json_t *v);

/* ---- commands (each returns an exit code) ------------------------------------------------ */

int smltctl_cmd_up(struct smltctl *c, int argc, char **argv);
int smltctl_cmd_down(struct smltctl *c, int argc, char **argv);
int smltctl_cmd_demo(struct smltctl *c, int argc, char **argv);
int smltctl_cmd_submit(struct smltctl *c, int argc, char **argv);
int smltctl_cmd_status(struct smltctl *c, int argc, char **argv);
int smltctl_cmd_watch(struct smltctl *c, int argc, char **argv);
int smltctl_cmd_cancel(struct smltctl *c, int argc, char **argv);
int smltctl_cmd_scale(struct smltctl *c, int argc, char **argv);
int smltctl_cmd_logs(struct smltctl *c, int argc, char **argv);
int smltctl_cmd_model(struct smltctl *c, int argc, char **argv);
int smltctl_cmd_checkpoint(struct smltctl *c, int argc, char **argv);
int smltctl_cmd_dashboard(struct smltctl *c, int argc, char **argv);

/* Used by demo: starts the local cluster unless one is up (quiet: one line). */
int smltctl_cluster_up(struct smltctl *c, const char *const *extra_args, int quiet);

/* Used by submit --watch and demo: watches a job until it ends. */
int smltctl_watch_job(struct smltctl *c, const char *id, double interval_s);

/* The help text of a command (NULL if there is no such command). */
const char *smltctl_help_text(const char *cmd);

#endif
