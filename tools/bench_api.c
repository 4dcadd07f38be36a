/* bench_api.c: `smlt-bench api`: how fast the coordinator's HTTP API answers while one job's
 * shard does not (issue 10: the loop never waits on the network).
 *
 * On a private local cluster (`smltctl up`, stopped by its pid with `smltctl down`), one job
 * trains a small MLP on 2 workers and 2 shards. The benchmark times GET /api/jobs, GET
 * /api/jobs/ID and GET /metrics, N rounds each (and for at least 5 s), twice in the same run:
 *   1. with every shard running;
 *   2. with one of the job's shards stopped by SIGSTOP, after asking the job for a change (a
 *      manual scale: a barrier, an admin call to every shard) and a checkpoint (a model pull),
 *      both of which wait for the stopped shard.
 * It prints the median, 99th percentile and worst latency of each phase and their ratio, then
 * resumes the shard (SIGCONT), checks that the checkpoint is answered, and cancels the job.
 * Before the coordinator's admin calls moved off its loop, phase 2's requests waited for the
 * shard's timeout (up to 120 s). */
#include "bench_api.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "bench_cluster.h"
#include "smlt_util.h"
#include "smlt_proc.h"

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    *(size_t *)arg += size * n;
    return size * n;
}

/* One request; returns its HTTP status (or -1) and its time in *dt. */
static long http(const char *url, const char *method, const char *token, const char *body,
                 long timeout_s, double *dt)
{
    CURL *h = curl_easy_init();
    if (!h)
        return -1;
    struct curl_slist *hdrs = NULL;
    char auth[300];
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    size_t got = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    double t0 = smlt_now_mono();
    CURLcode rc = curl_easy_perform(h);
    if (dt)
        *dt = smlt_now_mono() - t0;
    long status = -1;
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return status;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct lat {
    double p50, p99, max;
    int n, failed;
};

/* At least `rounds` rounds of the three GETs, for at least min_s seconds. */
static struct lat measure(const char *url, const char *id, int rounds, double min_s)
{
    char paths[3][400];
    snprintf(paths[0], sizeof paths[0], "%s/api/jobs", url);
    snprintf(paths[1], sizeof paths[1], "%s/api/jobs/%s", url, id);
    snprintf(paths[2], sizeof paths[2], "%s/metrics", url);
    size_t cap = (size_t)rounds * 3;
    double *v = calloc(cap, sizeof *v);
    struct lat l = {0};
    double until = smlt_now_mono() + min_s;
    for (int r = 0; r < rounds || smlt_now_mono() < until; r++) {
        if ((size_t)l.n + 3 > cap) {
            cap *= 2;
            v = realloc(v, cap * sizeof *v);
        }
        for (int k = 0; k < 3; k++) {
            double dt = 0;
            if (http(paths[k], "GET", NULL, NULL, 30, &dt) != 200)
                l.failed++;
            v[l.n++] = dt;
        }
        usleep(10 * 1000);
    }
    qsort(v, (size_t)l.n, sizeof *v, cmp_double);
    l.p50 = v[l.n / 2];
    l.p99 = v[(size_t)(l.n * 0.99) < (size_t)l.n ? (size_t)(l.n * 0.99) : (size_t)l.n - 1];
    l.max = v[l.n - 1];
    free(v);
    return l;
}

/* The pids of `smlt-ps` processes whose command line names the job's directory. */
static int job_shards(const char *id, pid_t *out, int max)
{
    char needle[96];
    snprintf(needle, sizeof needle, "/jobs/%s/", id);
    return smlt_proc_find("smlt-ps", 0, needle, NULL, out, max);
}

struct slow {
    char url[800];
    const char *token;
    long status;
    double dt;
};

static void *slow_run(void *arg)
{
    struct slow *s = arg;
    s->status = http(s->url, "POST", s->token, "", 300, &s->dt);
    return NULL;
}

/* The cluster's URL and admin token, from `smltctl up`'s state file. */
static int cluster_access(struct bench_cluster *c, char *url, size_t ulen, char *token,
                          size_t tlen)
{
    char path[128];
    snprintf(path, sizeof path, "%s/cluster.json", c->home);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    const char *u = json_string_value(json_object_get(o, "url"));
    const char *t = json_string_value(json_object_get(o, "token"));
    int ok = u && t;
    if (ok) {
        snprintf(url, ulen, "%s", u);
        snprintf(token, tlen, "%s", t);
    }
    json_decref(o);
    return ok ? 0 : -1;
}

static int wait_running(const char *url, const char *id, double limit_s)
{
    char path[400];
    snprintf(path, sizeof path, "%s/api/jobs/%s", url, id);
    double until = smlt_now_mono() + limit_s;
    while (smlt_now_mono() < until) {
        /* (The body is not kept: a GET that answers 200 while the job trains is enough; the
         * state is read through smltctl below.) */
        if (http(path, "GET", NULL, NULL, 10, NULL) == 200)
            return 0;
        usleep(200 * 1000);
    }
    return -1;
}

int bench_api_main(int argc, char **argv)
{
    int rounds = 100, json = 0;
    static const struct option opts[] = {{"rounds", required_argument, 0, 'r'},
                                         {"json", no_argument, 0, 'j'},
                                         {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "r:j", opts, NULL)) != -1) {
        if (ch == 'r')
            rounds = atoi(optarg) > 0 ? atoi(optarg) : 100;
        else if (ch == 'j')
            json = 1;
        else {
            fprintf(stderr, "usage: smlt-bench api [--rounds N] [--json]\n");
            return 2;
        }
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct bench_cluster c;
    if (bench_cluster_up(&c) != 0)
        return 1;
    int rc = 1;
    char url[256], token[128], id[64];
    pthread_t th;
    int started = 0;
    struct slow ck = {.status = -1};
    pid_t ps[8];
    int nps = 0;
    if (cluster_access(&c, url, sizeof url, token, sizeof token) != 0) {
        fprintf(stderr, "smlt-bench api: cannot read the cluster's state\n");
        goto out;
    }
    if (bench_cluster_submit(&c,
                             "{\"model\": \"mlp:784-128-10\", \"dataset\": "
                             "\"/usr/share/datasets/fashion-mnist\", \"epochs\": 50, "
                             "\"workers\": 2, \"shards\": 2, \"max_workers\": 3}",
                             id, sizeof id) != 0 ||
        wait_running(url, id, 60) != 0) {
        fprintf(stderr, "smlt-bench api: the job did not start\n");
        goto out;
    }
    sleep(3); /* past the workers' start: they train */
    struct lat healthy = measure(url, id, rounds, 5.0);
    nps = job_shards(id, ps, 8);
    if (nps < 1) {
        fprintf(stderr, "smlt-bench api: cannot find the job's shards\n");
        goto out;
    }
    kill(ps[0], SIGSTOP);
    char path[800];
    snprintf(path, sizeof path, "%s/api/jobs/%s/scale", url, id);
    long st = http(path, "POST", token, "{\"workers\": 3}", 30, NULL);
    snprintf(ck.url, sizeof ck.url, "%s/api/jobs/%s/checkpoint", url, id);
    ck.token = token;
    started = pthread_create(&th, NULL, slow_run, &ck) == 0;
    usleep(300 * 1000);
    struct lat stopped = measure(url, id, rounds, 5.0);
    long ck_before = ck.status;
    kill(ps[0], SIGCONT);
    if (started)
        pthread_join(th, NULL);
    snprintf(path, sizeof path, "%s/api/jobs/%s/cancel", url, id);
    http(path, "POST", token, "", 120, NULL);
    if (json) {
        printf("{\"case\":\"api\",\"rounds\":%d,\"healthy\":{\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"max_ms\":%.3f,\"failed\":%d},\"shard_stopped\":{\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"max_ms\":%.3f,\"failed\":%d},\"scale_status\":%ld,\"checkpoint_status\":%ld,"
               "\"checkpoint_s\":%.3f}\n",
               rounds, healthy.p50 * 1e3, healthy.p99 * 1e3, healthy.max * 1e3, healthy.failed,
               stopped.p50 * 1e3, stopped.p99 * 1e3, stopped.max * 1e3, stopped.failed, st,
               ck.status, ck.dt);
    } else {
        printf("HTTP API latency, GET /api/jobs, /api/jobs/ID and /metrics (%d and %d requests, "
               "5 s or more each):\n",
               healthy.n, stopped.n);
        printf("  %-34s %9s %9s %9s %7s\n", "", "p50 ms", "p99 ms", "max ms", "failed");
        printf("  %-34s %9.2f %9.2f %9.2f %7d\n", "every shard running", healthy.p50 * 1e3,
               healthy.p99 * 1e3, healthy.max * 1e3, healthy.failed);
        printf("  %-34s %9.2f %9.2f %9.2f %7d\n", "one shard stopped (SIGSTOP)",
               stopped.p50 * 1e3, stopped.p99 * 1e3, stopped.max * 1e3, stopped.failed);
        printf("  stopped / running: p50 %.2fx, p99 %.2fx\n",
               healthy.p50 > 0 ? stopped.p50 / healthy.p50 : 0,
               healthy.p99 > 0 ? stopped.p99 / healthy.p99 : 0);
        printf("  the scale request answered %ld at once; the checkpoint was %s while the shard "
               "was stopped and answered %ld after %.1f s, once it resumed\n",
               st, ck_before == -1 ? "pending" : "answered", ck.status, ck.dt);
    }
    rc = healthy.failed || stopped.failed || ck.status != 200 ? 1 : 0;
out:
    bench_cluster_down(&c);
    curl_global_cleanup();
    return rc;
}
