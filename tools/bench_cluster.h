/* bench_cluster.h: driving a private local cluster through `smltctl` from a benchmark.
 *
 * Benchmarks that measure the whole system run it the way people do: `smltctl up` in a private
 * state directory, jobs submitted and watched with smltctl, figures read from `smltctl status
 * --json`, and `smltctl down` (which stops the coordinator by its pid) at the end. */
#ifndef BENCH_CLUSTER_H
#define BENCH_CLUSTER_H

#include <stddef.h>

#include <jansson.h>

struct bench_cluster {
    char home[64]; /* SMLT_HOME of the private cluster */
    char ctl[1024]; /* the smltctl next to this program */
};

/* Makes a state directory and runs `smltctl up` there. Returns 0 or -1 (with a message). */
int bench_cluster_up(struct bench_cluster *c);

/* The same with more arguments for `smltctl up` (NULL-terminated; NULL for none), such as
 * --platform and its options. */
int bench_cluster_up_with(struct bench_cluster *c, const char *const *extra);

/* Runs `smltctl down` and removes the state directory. */
void bench_cluster_down(struct bench_cluster *c);

/* Runs smltctl with args (NULL-terminated) in the cluster's state directory; its stdout is
 * captured into *out (malloc'd) unless out is NULL (then it goes to our stderr). Returns the
 * exit status. */
int bench_cluster_ctl(struct bench_cluster *c, const char *const *args, char **out);

/* Submits a spec (JSON text) and returns the job id in id. Returns 0 or -1. */
int bench_cluster_submit(struct bench_cluster *c, const char *spec, char *id, size_t idlen);

/* `smltctl watch ID` (progress to stderr) then `smltctl status ID --json`: returns the job as a
 * new JSON reference, or NULL. */
json_t *bench_cluster_wait(struct bench_cluster *c, const char *id);

/* The cluster's API URL and coordinator pid, from `smltctl up`'s cluster.json (they change when
 * the coordinator is started again). Returns 0 or -1. */
int bench_cluster_info(struct bench_cluster *c, char *url, size_t ulen, int *pid);

/* The id of the newest job, or -1. */
int bench_cluster_newest(struct bench_cluster *c, char *id, size_t idlen);

#endif
