/* coord_test.h: what the coordinator and smltctl integration tests share.
 *
 * A small Fashion-MNIST (the first N training and test images of the Debian package, written
 * uncompressed so that a worker loads it in milliseconds), an smlt-coordinator started on
 * loopback port 0 with its own data directory (daemon.h: stopped by pid), a blocking HTTP
 * client for its JSON API (libcurl, jansson), and /proc helpers that find the coordinator's
 * worker processes by their parent pid. */
#ifndef TEST_COORD_TEST_H
#define TEST_COORD_TEST_H

#include <stddef.h>
#include <sys/types.h>

#include <check.h>
#include <jansson.h>

#include "daemon.h"

#define CT_ADMIN "test-coordinator-admin-token"
#define CT_FMNIST "/usr/share/datasets/fashion-mnist"

/* 1 when SMLT_TEST_QUICK is set (the sanitizer run): tests use fewer epochs. */
int ct_quick(void);

/* Writes train-{images,labels}-idx?-ubyte with the first ntrain training examples of
 * Fashion-MNIST and t10k-* with the first ntest test examples into a new temporary directory,
 * stored in dir. Returns 0 or -1. */
int ct_subset_dataset(char *dir, size_t dirlen, unsigned ntrain, unsigned ntest);

/* Removes a directory tree (only paths under /tmp/). */
void ct_rm_rf(const char *dir);

/* A failed Check test ends its process without running its teardown. ct_note_dir() records a
 * directory (such as a test_daemon's) in ROOT/.dirs from the test's process; ct_clean_noted()
 * removes every recorded directory, from main() after the run. */
void ct_note_dir(const char *root, const char *dir);
void ct_clean_noted(const char *root);

/* Starts smlt-coordinator with --data-dir data_dir and the admin token CT_ADMIN (plus extra
 * args, NULL-terminated, may be NULL; in a sanitizer build also --no-memory-limit), and notes
 * the daemon's directory (ct_note_dir) in data_dir's parent, the test's root. Returns 0 or
 * -1. */
int ct_coord_start(struct test_daemon *d, const char *data_dir, const char *const *extra);

/* The same with env (NAME=VALUE strings, NULL-terminated, may be NULL) added to the
 * coordinator's environment (credentials, say). */
int ct_coord_start_env(struct test_daemon *d, const char *data_dir, const char *const *extra,
                       const char *const *env);

/* The fixture of a test against one coordinator: the default SIGTERM and SIGALRM actions (a
 * daemon test's process may have inherited others), a new directory ROOT/data.XXXXXX in
 * data_dir (len bytes), and a coordinator on it (ct_coord_start()). Fails the test on error.
 * ct_fixture_teardown() stops the coordinator by its pid and removes data_dir. */
void ct_fixture_setup(struct test_daemon *coord, const char *root, char *data_dir, size_t len);
void ct_fixture_teardown(struct test_daemon *coord, const char *data_dir);

/* From now on ct_http() speaks HTTPS and trusts the CA certificates in cafile, presenting
 * the client certificate cert with its key when given (paths kept as given; cafile NULL:
 * plain HTTP again). */
void ct_use_tls(const char *cafile, const char *cert, const char *key);

/* One HTTP request to 127.0.0.1:port. token: sent as a bearer token (NULL: none). body: sent
 * with POST (NULL: none). Returns the HTTP status, or -1 if the request failed; the body
 * (malloc'd, NUL-terminated) goes to *out when out is not NULL. */
long ct_http(int port, const char *method, const char *path, const char *token, const char *body,
             char **out);

/* The same, parsing the answer as JSON (*json: a new reference or NULL). */
long ct_http_json(int port, const char *method, const char *path, const char *token,
                  const char *body, json_t **json);

/* Submits a spec (JSON text) with the admin token; returns the job id (malloc'd) or NULL with
 * the error in err. */
char *ct_submit(int port, const char *spec, char *err, size_t errlen);

/* Polls GET /api/jobs/ID until the job has ended or timeout_s passed; returns the last job
 * object (a new reference) or NULL. */
json_t *ct_wait_job(int port, const char *id, double timeout_s);

/* Polls until fn(job) returns non-zero or the job ends or timeout_s passes; returns the job. */
json_t *ct_wait_until(int port, const char *id, double timeout_s, int (*fn)(const json_t *job));

/* Makes a test CA and certificates (tools/make-test-certs.sh of SMLT_SOURCE_DIR) in a new
 * directory /tmp/smlt-test-certs.XXXXXX, whose path goes to dir. Returns 0, or -1 with a
 * message on stderr. ct_test_certs_remove() removes it. */
int ct_test_certs_make(char *dir, size_t dirlen);
void ct_test_certs_remove(const char *dir);

/* Asserts that the job's shards (as many as shards) are at one version and that each applied
 * every step once (updates_applied == version > 0). */
void ct_each_step_once(const json_t *job, size_t shards);

/* The demo job on platform (platform.kind) through the coordinator coord: the Fashion-MNIST MLP
 * 784-256-128-10 on 4 workers and 2 shards, BSP, momentum, to 88% test accuracy within 30
 * epochs with a 4 s function time limit (slices end, and continuations run); in the quick pass
 * 80% within 10 epochs on the slice quick_dataset with 1 s slices. Asserts that it succeeded
 * (the coordinator's log is printed when not), its accuracy, and each step applied once.
 * Returns the job (a new reference). */
json_t *ct_demo_job(struct test_daemon *coord, const char *platform, const char *quick_dataset);

/* A pool of PS nodes for a coordinator (--ps-pool). ct_pool_start() starts n smlt-ps --node
 * processes (pool token CT_POOL, --memory-mb mb, --name node-I, plus node_extra: NULL-
 * terminated, may be NULL), notes their directories in data_dir's parent, writes the token to
 * data_dir/pool-token, and starts coord on data_dir with --ps-pool naming them. Fails the test
 * on error; the caller stops the nodes (test_daemon_stop()). */
#define CT_POOL "test-pool-token"
void ct_pool_start(struct test_daemon *coord, const char *data_dir, struct test_daemon *node,
                   int n, const char *mb, const char *const *node_extra);

/* 1 when this build has no smlt Python package for torch jobs: the sanitizer build (its libsmlt
 * would need the sanitizer runtime inside python3). Prints why, naming the test (label), and
 * the caller returns: the Release pass runs it. */
int ct_no_torch(const char *label);

/* A torch job on platform (platform.kind) through coord: "model": "python:mlp.py" with its
 * source in the spec (a torch MLP 784-64-10 on dataset, smlt.data's IDX splits), epochs
 * epochs, 2 workers, 1 shard, momentum; time_limit_s > 0 sets the function time limit, so that
 * slices end and the warm Python runners serve the continuations. Asserts that it succeeded
 * (the coordinator's log is printed when not), past 70% test accuracy, with each step applied
 * once. Returns the job (a new reference). */
json_t *ct_torch_job(struct test_daemon *coord, const char *platform, const char *dataset,
                     int epochs, int time_limit_s);

/* For ct_wait_until(): the job runs and has trained 3 steps or more. */
int ct_running_with_progress(const json_t *job);

/* 1 if the state names a job that has ended. */
int ct_job_over(const char *state);

/* The pids of the processes whose parent is ppid and whose command line is `prog ARG`
 * (argv[0]'s base name prog, then exactly arg; arg NULL: any), up to max. Returns the count. */
int ct_children(pid_t ppid, const char *prog, const char *arg, pid_t *out, int max);

/* main() of a coordinator integration test: makes root (/tmp/smlt-test-NAME.XXXXXX, rootlen
 * bytes), and with dataset (else NULL) a slice of ntrain and ntest Fashion-MNIST examples in
 * it; runs the suite; removes what it made, the directories the tests noted too (a failed
 * test ends its process without its teardown). Returns the process exit code. */
int ct_main(const char *name, Suite *suite, char *root, size_t rootlen, char *dataset,
            size_t dslen, unsigned ntrain, unsigned ntest);

/* Values from a JSON object; 0 / "" when absent. */
double ct_num(const json_t *o, const char *key);
const char *ct_str(const json_t *o, const char *key);

#endif
