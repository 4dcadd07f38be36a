/* bench_chaos.c: `smlt-bench chaos`: what a fault costs a real job (issue 11 item 5).
 *
 * Every run is one job on its own private local cluster (`smltctl up` in a fresh SMLT_HOME,
 * `smltctl down` at the end): the Fashion-MNIST MLP on 4 workers and 2 shards, BSP, a fixed
 * number of epochs, shard checkpoints every 50 steps, the same spec seed every time.
 *   1. A clean run, no faults: its accuracy, time and cost are the reference, and the span from
 *      its first reported step to its end is the job's expected duration D.
 *   2. One run per fault kind, with N kills (SIGKILL) at moments drawn uniformly in [0, 0.9 D)
 *      after the first reported step, from --seed:
 *        worker       a `smlt-worker` child of the coordinator (found through /proc: its
 *                     parent pid and its command line);
 *        shard        an `smlt-ps` whose command line names the job's directory in our
 *                     private state directory;
 *        coordinator  the coordinator's pid from cluster.json; the bench then runs `smltctl up`
 *                     on the same state directory at once, which adopts the shards
 *                     (coordinator/coord_resume.c).
 *      A kill waits until the job has caught up after the one before it.
 * The job is polled through GET /api/jobs/ID every 100 ms (the body of `smltctl status ID
 * --json`). The job's step there is the lowest cursor any rank reported (workers report about
 * once a second), so the figures per kill are:
 *   detect         the job's "fault", "resume" or "retry" event time minus the kill time;
 *   training again the kill to the first poll, after that event, whose step is past the step
 *                  the event says the job goes on from (a replacement trained and reported);
 *   caught up      the kill to the first poll whose step is past the step seen at the kill;
 *   steps redone   the highest cursor any rank reported between the kill and the job going
 *                  back minus the step it went on from, or a shard fault event's "steps lost"
 *                  if more (an estimate: cursors are reported about once a second; for a
 *                  worker kill the shards' pushes_duplicate counts the pushes made twice,
 *                  for a shard kill a surviving shard's updates_applied - version counts the
 *                  steps applied twice).
 * At the end: the job's state, test accuracy, time, cost and the shards' exactly-once counters
 * (`ps_stats`: every shard at the same version; updates_applied == version on every shard of
 * a job that restored no checkpoint, >= version on a shard that was restored but not replaced;
 * pushes_duplicate reported). Every wait is bounded; the cluster is always stopped and any of
 * its processes still running (command line naming the private state directory) killed by pid. */
#include "bench_chaos.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "bench_cluster.h"
#include "smlt_rand.h"
#include "smlt_util.h"
#include "smlt_proc.h"

#define CHAOS_MAX_KILLS 3
#define CHAOS_MAX_SHARDS 16
#define CHAOS_POLL_MS 100
#define CHAOS_START_LIMIT_S 120.0 /* submit to the first reported step */
#define CHAOS_RECOVER_LIMIT_S 120.0 /* a kill to the job caught up */
#define CHAOS_EXIT_LIMIT_S 10.0 /* a killed coordinator to its process gone */
#define CHAOS_ACC_POINTS 0.005 /* 0.5 points of accuracy */

enum fault { FAULT_CLEAN, FAULT_WORKER, FAULT_SHARD, FAULT_COORD, FAULT_N };
static const char *const fault_name[FAULT_N] = {"clean", "worker", "shard", "coordinator"};

struct kill_rec {
    double plan_s; /* drawn offset from the first reported step */
    double at_s; /* actual offset */
    double t_kill; /* monotonic */
    double kill_unix;
    double restart_s; /* coordinator: `smltctl up` took this long */
    long long step; /* the job's step at the kill (last poll) */
    long long hi; /* highest rank cursor seen from the kill to the recovery */
    int pid;
    char event[16]; /* "fault", "resume", "retry" or "" */
    char message[512]; /* the event's message */
    double detect_s, again_s, caught_s; /* -1: not seen */
    long long from; /* the step the job went on from, -1 unknown */
    long long lost; /* from the fault event, -1 unknown */
};

struct shard_stat {
    long long version, applied, dup, counted;
};

struct run {
    enum fault f;
    char id[64];
    int nplan, nkills;
    struct kill_rec k[CHAOS_MAX_KILLS];
    double span_s; /* first reported step to the end (observed) */
    char state[32];
    char reason[512];
    double acc, elapsed, cost;
    long long step;
    int nsh;
    struct shard_stat sh[CHAOS_MAX_SHARDS];
    unsigned replaced; /* shards replaced (bit mask, from the fault events) */
    int restored; /* a checkpoint was restored */
    int consistent;
    int acc_ok, ok;
    char saved_log[128]; /* coordinator log kept after a failure */
};

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the job through the HTTP API ------------------------------------------------------ */

struct body {
    char *p;
    size_t n;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t add = size * n;
    if (b->n + add > (16u << 20))
        return 0;
    char *np = realloc(b->p, b->n + add + 1);
    if (!np)
        return 0;
    memcpy(np + b->n, p, add);
    b->p = np;
    b->n += add;
    b->p[b->n] = '\0';
    return add;
}

/* GET /api/jobs/ID. Returns the job (new reference) or NULL (the coordinator is away). */
static json_t *job_get(const char *url, const char *id)
{
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/api/jobs/%s", url, id);
    struct body b = {0};
    curl_easy_setopt(h, CURLOPT_URL, path);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 5L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 2L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    long status = 0;
    json_t *j = NULL;
    if (curl_easy_perform(h) == CURLE_OK &&
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200 && b.p) {
        json_error_t je;
        j = json_loads(b.p, 0, &je);
    }
    free(b.p);
    curl_easy_cleanup(h);
    return j;
}

static int state_ended(const char *st)
{
    static const char *const ended[] = {"succeeded", "failed", "canceled", "stopped",
                                        "interrupted", NULL};
    for (int i = 0; st && ended[i]; i++)
        if (!strcmp(st, ended[i]))
            return 1;
    return 0;
}

static long long ranks_max_cursor(const json_t *j)
{
    long long hi = -1;
    json_t *ranks = json_object_get(j, "ranks");
    for (size_t i = 0; i < json_array_size(ranks); i++) {
        json_t *r = json_array_get(ranks, i);
        if (!json_is_true(json_object_get(r, "active")))
            continue;
        long long s = json_integer_value(json_object_get(r, "next_step"));
        if (s > hi)
            hi = s;
    }
    return hi;
}

/* The number after `key` in msg, or -1. */
static long long number_after(const char *msg, const char *key)
{
    const char *p = msg ? strstr(msg, key) : NULL;
    if (!p)
        return -1;
    char *end;
    unsigned long long v = strtoull(p + strlen(key), &end, 10);
    return end == p + strlen(key) ? -1 : (long long)v;
}

/* Gives kill k the first fault/resume/retry event at or after it that no earlier kill took;
 * *taken is the time of the last event taken. */
static void take_event(const json_t *j, struct kill_rec *k, double *taken, struct run *r)
{
    json_t *ev = json_object_get(j, "events");
    for (size_t i = 0; i < json_array_size(ev) && !k->event[0]; i++) {
        json_t *e = json_array_get(ev, i);
        double at = json_number_value(json_object_get(e, "at"));
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (!kind || at < k->kill_unix - 0.05 || at <= *taken)
            continue;
        if (strcmp(kind, "fault") && strcmp(kind, "resume") && strcmp(kind, "retry"))
            continue;
        snprintf(k->event, sizeof k->event, "%s", kind);
        snprintf(k->message, sizeof k->message, "%s", msg ? msg : "");
        k->detect_s = at - k->kill_unix;
        *taken = at;
        if (!strcmp(kind, "fault")) {
            k->from = number_after(msg, "checkpoint of step ");
            k->lost = number_after(msg, ": ");
            long long sh = number_after(msg, "parameter-server shard ");
            if (sh >= 0 && sh < 32)
                r->replaced |= 1u << sh;
            r->restored = 1;
        } else if (!strcmp(kind, "resume")) {
            k->from = number_after(msg, "goes on from step ");
        } else {
            k->from = number_after(msg, "re-invoking from step ");
        }
    }
}

/* ---- processes, through /proc ------------------------------------------------------------ */

/* ---- one run ----------------------------------------------------------------------------- */

struct opts {
    const char *data;
    uint64_t seed;
    int kills, epochs, json;
};

static void spec_text(const struct opts *o, enum fault f, char *out, size_t len)
{
    snprintf(out, len,
             "{\"name\":\"chaos-%s\",\"model\":\"mlp:784-256-128-10\",\"dataset\":\"%s\","
             "\"epochs\":%d,\"workers\":4,\"shards\":2,\"batch_size\":64,\"sync\":\"bsp\","
             "\"optimizer\":{\"kind\":\"momentum\",\"lr\":0.05,\"momentum\":0.9},"
             "\"seed\":%llu,\"checkpoint\":{\"every_steps\":50}}",
             fault_name[f], o->data, o->epochs, (unsigned long long)o->seed);
}

/* Kills one target of the run's kind. Returns the pid killed or -1 (none found). */
static int kill_one(struct bench_cluster *cl, struct run *r, uint64_t seed, int idx, int coord_pid,
                    char *url, size_t ulen, int *coord_pid_out, double *restart_s)
{
    int pids[64], n = 0;
    char needle[128];
    switch (r->f) {
    case FAULT_WORKER:
        n = smlt_proc_find("smlt-worker", (pid_t)coord_pid, NULL, NULL, pids, 64);
        break;
    case FAULT_SHARD:
        snprintf(needle, sizeof needle, "/jobs/%s/", r->id);
        n = smlt_proc_find("smlt-ps", 0, cl->home, needle, pids, 64);
        break;
    case FAULT_COORD:
        if (smlt_proc_alive((pid_t)coord_pid)) {
            pids[0] = coord_pid;
            n = 1;
        }
        break;
    default: break;
    }
    if (n == 0)
        return -1;
    int pid = pids[smlt_rand_mix(seed ^ smlt_rand_mix(0x6b696c6cull + (uint64_t)idx)) % (uint64_t)n];
    if (kill(pid, SIGKILL) != 0)
        return -1;
    if (r->f == FAULT_COORD) {
        double t0 = smlt_now_mono();
        while (smlt_proc_alive((pid_t)pid) && smlt_now_mono() - t0 < CHAOS_EXIT_LIMIT_S)
            sleep_ms(20);
        const char *up[] = {"up", NULL};
        if (bench_cluster_ctl(cl, up, NULL) != 0)
            fprintf(stderr, "smlt-bench chaos: smltctl up after the coordinator's kill failed\n");
        *restart_s = smlt_now_mono() - t0;
        bench_cluster_info(cl, url, ulen, coord_pid_out);
    }
    return pid;
}

static void take_final(const json_t *j, struct run *r)
{
    snprintf(r->state, sizeof r->state, "%s",
             json_string_value(json_object_get(j, "state")) ?: "?");
    snprintf(r->reason, sizeof r->reason, "%s",
             json_string_value(json_object_get(j, "reason")) ?: "");
    r->acc = json_number_value(json_object_get(j, "test_accuracy"));
    r->elapsed = json_number_value(json_object_get(j, "elapsed_s"));
    r->cost = json_number_value(json_object_get(j, "cost_usd"));
    r->step = json_integer_value(json_object_get(j, "step"));
    json_t *ps = json_object_get(j, "ps_stats");
    r->nsh = 0;
    for (size_t i = 0; i < json_array_size(ps) && r->nsh < CHAOS_MAX_SHARDS; i++) {
        json_t *s = json_array_get(ps, i);
        struct shard_stat *x = &r->sh[r->nsh++];
        x->version = json_integer_value(json_object_get(s, "version"));
        x->applied = json_integer_value(json_object_get(s, "updates_applied"));
        x->dup = json_integer_value(json_object_get(s, "pushes_duplicate"));
        x->counted = json_integer_value(json_object_get(s, "pushes_counted"));
    }
    /* Every shard at one version; a shard that restored nothing applied each step once; one
     * that was restored but not replaced applied the steps after the checkpoint twice. */
    r->consistent = r->nsh > 0;
    for (int i = 0; i < r->nsh; i++) {
        const struct shard_stat *x = &r->sh[i];
        if (x->version != r->sh[0].version)
            r->consistent = 0;
        if (r->replaced & (1u << i))
            continue;
        if (r->restored ? x->applied < x->version : x->applied != x->version)
            r->consistent = 0;
    }
}

/* Runs one job on its own cluster. D is the expected duration (0 for the clean run, which
 * measures it into r->span_s). Returns 0 when the run was carried out (whatever the job did),
 * -1 when the cluster or the job could not start. */
static int run_one(const struct opts *o, struct run *r, double D)
{
    struct bench_cluster cl;
    if (bench_cluster_up(&cl) != 0)
        return -1;
    int rc = -1, coord_pid = 0;
    char url[256], spec[1024];
    json_t *j = NULL;
    if (bench_cluster_info(&cl, url, sizeof url, &coord_pid) != 0) {
        fprintf(stderr, "smlt-bench chaos: cannot read the cluster's state\n");
        goto down;
    }
    spec_text(o, r->f, spec, sizeof spec);
    if (bench_cluster_submit(&cl, spec, r->id, sizeof r->id) != 0) {
        fprintf(stderr, "smlt-bench chaos: the job was refused\n");
        goto down;
    }
    /* The moments, drawn from the seed and the fault kind, sorted. */
    r->nplan = r->f == FAULT_CLEAN ? 0 : o->kills;
    for (int i = 0; i < r->nplan; i++) {
        uint64_t x = smlt_rand_mix(o->seed ^ smlt_rand_mix(((uint64_t)r->f << 8) + (uint64_t)i));
        r->k[i].plan_s = 0.9 * D * (double)(x >> 11) * (1.0 / 9007199254740992.0);
    }
    for (int a = 1; a < r->nplan; a++)
        for (int b = a; b > 0 && r->k[b].plan_s < r->k[b - 1].plan_s; b--) {
            double t = r->k[b].plan_s;
            r->k[b].plan_s = r->k[b - 1].plan_s;
            r->k[b - 1].plan_s = t;
        }
    double t_sub = smlt_now_mono(), t0 = 0, taken = 0, limit = 120.0 + 10.0 * (D > 0 ? D : 30.0);
    long long last_step = 0;
    int next = 0, away = 0;
    for (;;) {
        double now = smlt_now_mono();
        if (now - t_sub > limit) {
            fprintf(stderr, "smlt-bench chaos: %s: the job did not end within %.0f s; "
                            "canceling it\n", fault_name[r->f], limit);
            const char *cancel[] = {"cancel", r->id, NULL};
            bench_cluster_ctl(&cl, cancel, NULL);
            break;
        }
        json_decref(j);
        j = job_get(url, r->id);
        if (!j) {
            if (++away * CHAOS_POLL_MS > 30000) {
                fprintf(stderr, "smlt-bench chaos: %s: the coordinator has not answered for 30 s\n",
                        fault_name[r->f]);
                break;
            }
            sleep_ms(CHAOS_POLL_MS);
            continue;
        }
        away = 0;
        const char *st = json_string_value(json_object_get(j, "state"));
        long long step = json_integer_value(json_object_get(j, "step"));
        if (t0 == 0 && step > 0)
            t0 = now;
        if (t0 == 0 && now - t_sub > CHAOS_START_LIMIT_S && !state_ended(st)) {
            fprintf(stderr, "smlt-bench chaos: %s: no step within %.0f s\n", fault_name[r->f],
                    CHAOS_START_LIMIT_S);
            const char *cancel[] = {"cancel", r->id, NULL};
            bench_cluster_ctl(&cl, cancel, NULL);
            break;
        }
        /* The kills so far: their events and recoveries. */
        for (int i = 0; i < r->nkills; i++) {
            struct kill_rec *k = &r->k[i];
            if (k->caught_s >= 0)
                continue;
            take_event(j, k, &taken, r);
            long long hi = ranks_max_cursor(j);
            if (k->again_s < 0 && hi > k->hi)
                k->hi = hi;
            if (k->again_s < 0 && (k->event[0] ? step > k->from : step > k->step))
                k->again_s = now - k->t_kill;
            if (k->again_s >= 0 && step > k->step && step > k->from)
                k->caught_s = now - k->t_kill;
        }
        if (state_ended(st))
            break;
        last_step = step;
        /* The next kill: at its moment, once the one before has caught up (or given up). */
        if (t0 > 0 && next < r->nplan && now - t0 >= r->k[next].plan_s) {
            struct kill_rec *p = next ? &r->k[next - 1] : NULL;
            int ready = !p || (p->caught_s >= 0 && now - p->t_kill >= p->caught_s + 0.3) ||
                        now - p->t_kill > CHAOS_RECOVER_LIMIT_S;
            if (ready) {
                struct kill_rec *k = &r->k[next];
                k->detect_s = k->again_s = k->caught_s = -1;
                k->from = k->lost = -1;
                k->step = last_step;
                k->hi = ranks_max_cursor(j);
                k->t_kill = smlt_now_mono();
                k->kill_unix = now_unix();
                k->at_s = k->t_kill - t0;
                k->pid = kill_one(&cl, r, o->seed, next, coord_pid, url, sizeof url, &coord_pid,
                                  &k->restart_s);
                next++;
                if (k->pid > 0) {
                    r->nkills++;
                    if (!o->json)
                        fprintf(stderr, "smlt-bench chaos: %s: killed pid %d at %.2f s, step %lld\n",
                                fault_name[r->f], k->pid, k->at_s, k->step);
                } else {
                    fprintf(stderr, "smlt-bench chaos: %s: nothing to kill at %.2f s\n",
                            fault_name[r->f], k->at_s);
                    /* The slot is reused by the next moment. */
                    memmove(k, k + 1, sizeof *k * (size_t)(r->nplan - next));
                    r->nplan--;
                    next--;
                }
            }
        }
        sleep_ms(CHAOS_POLL_MS);
    }
    r->span_s = t0 > 0 ? smlt_now_mono() - t0 : 0;
    json_decref(j);
    j = NULL;
    /* The final figures, as `smltctl status --json` prints them. */
    char *out = NULL;
    const char *status[] = {"status", r->id, "--json", NULL};
    if (bench_cluster_ctl(&cl, status, &out) == 0 && out) {
        json_error_t je;
        j = json_loads(out, 0, &je);
    }
    free(out);
    if (j) {
        double dummy = 0;
        for (int i = 0; i < r->nkills; i++)
            if (!r->k[i].event[0])
                take_event(j, &r->k[i], &dummy, r);
        take_final(j, r);
    } else {
        snprintf(r->state, sizeof r->state, "unknown");
    }
    rc = 0;
down:
    if (rc == 0 && strcmp(r->state, "succeeded")) {
        /* Keep the evidence: the cluster's directory goes with `down`. */
        snprintf(r->saved_log, sizeof r->saved_log, "/tmp/smlt-chaos-%s-%llu.log",
                 fault_name[r->f], (unsigned long long)o->seed);
        char cmd[512];
        snprintf(cmd, sizeof cmd, "cat '%s/coordinator.log' '%s'/data/jobs/*/job.log > '%s' 2>/dev/null",
                 cl.home, cl.home, r->saved_log);
        if (system(cmd) != 0)
            snprintf(cmd, sizeof cmd, "cp '%s/coordinator.log' '%s'", cl.home, r->saved_log),
                (void)!system(cmd);
    }
    json_decref(j);
    const char *down[] = {"down", NULL};
    bench_cluster_ctl(&cl, down, NULL);
    /* Anything of ours still running (a shard of an interrupted job, say): by pid. */
    int left[64];
    int n = smlt_proc_find(NULL, 0, cl.home, NULL, left, 64);
    for (int i = 0; i < n; i++) {
        fprintf(stderr, "smlt-bench chaos: stopping pid %d, left running\n", left[i]);
        kill(left[i], SIGKILL);
    }
    bench_cluster_down(&cl); /* removes the state directory (the coordinator is already down) */
    return rc;
}

/* ---- report ------------------------------------------------------------------------------- */

/* The larger of the event's "steps lost" (measured from the job's step, which lags) and the
 * highest cursor a rank reported before the job went back minus where it went on from. */
static long long steps_redone(const struct kill_rec *k)
{
    long long seen = k->from >= 0 && k->hi > k->from ? k->hi - k->from : 0;
    return k->lost > seen ? k->lost : seen;
}

static void fmt_list(char *out, size_t len, const struct run *r, int what)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < r->nkills && o + 16 < len; i++) {
        const struct kill_rec *k = &r->k[i];
        double v = what == 0 ? k->detect_s : what == 1 ? k->again_s : k->caught_s;
        if (what == 3)
            o += (size_t)snprintf(out + o, len - o, "%s%lld", i ? "," : "", steps_redone(k));
        else if (what == 4)
            o += (size_t)snprintf(out + o, len - o, "%s%.1f", i ? "," : "", k->at_s);
        else if (v >= 0)
            o += (size_t)snprintf(out + o, len - o, "%s%.2f", i ? "," : "", v);
        else
            o += (size_t)snprintf(out + o, len - o, "%s-", i ? "," : "");
    }
    if (!out[0])
        snprintf(out, len, "-");
}

static void print_json(const struct run *r, const struct run *clean, const struct opts *o)
{
    printf("{\"case\":\"chaos\",\"fault\":\"%s\",\"seed\":%llu,\"job\":\"%s\",\"state\":\"%s\","
           "\"succeeded\":%s,\"kills\":[",
           fault_name[r->f], (unsigned long long)o->seed, r->id, r->state,
           !strcmp(r->state, "succeeded") ? "true" : "false");
    for (int i = 0; i < r->nkills; i++) {
        const struct kill_rec *k = &r->k[i];
        json_t *ms = json_string(k->message);
        char *m = json_dumps(ms, JSON_ENCODE_ANY);
        json_decref(ms);
        printf("%s{\"at_s\":%.3f,\"pid\":%d,\"step\":%lld,\"event\":\"%s\",\"detect_s\":%.3f,"
               "\"training_again_s\":%.3f,\"caught_up_s\":%.3f,\"from_step\":%lld,"
               "\"steps_redone\":%lld,\"restart_s\":%.3f,\"message\":%s}",
               i ? "," : "", k->at_s, k->pid, k->step, k->event, k->detect_s, k->again_s,
               k->caught_s, k->from, steps_redone(k), r->f == FAULT_COORD ? k->restart_s : 0.0, m);
        free(m);
    }
    printf("],\"test_accuracy\":%.4f,\"clean_accuracy\":%.4f,\"elapsed_s\":%.3f,"
           "\"clean_elapsed_s\":%.3f,\"cost_usd\":%.6f,\"clean_cost_usd\":%.6f,\"step\":%lld,"
           "\"shards\":[",
           r->acc, clean->acc, r->elapsed, clean->elapsed, r->cost, clean->cost, r->step);
    for (int i = 0; i < r->nsh; i++)
        printf("%s{\"version\":%lld,\"updates_applied\":%lld,\"pushes_counted\":%lld,"
               "\"pushes_duplicate\":%lld,\"replaced\":%s}",
               i ? "," : "", r->sh[i].version, r->sh[i].applied, r->sh[i].counted, r->sh[i].dup,
               r->replaced & (1u << i) ? "true" : "false");
    printf("],\"exactly_once\":%s,\"accuracy_ok\":%s,\"ok\":%s}\n", r->consistent ? "true" : "false",
           r->acc_ok ? "true" : "false", r->ok ? "true" : "false");
    fflush(stdout);
}

static void print_table(const struct run *runs, int n, const struct opts *o)
{
    const struct run *clean = &runs[0];
    printf("smlt-bench chaos: seed %llu; mlp:784-256-128-10, %d epochs, 4 workers x 2 shards, BSP, "
           "checkpoints every 50 steps; kills drawn in [0, 0.9 x %.1f s) after the first step\n\n",
           (unsigned long long)o->seed, o->epochs, clean->span_s);
    printf("%-12s %-10s %-11s %-11s %-13s %-11s %-9s %-17s %-16s %-20s %-14s %-14s %s\n", "fault",
           "state", "killed at s", "detect s", "training again", "caught up s", "redone",
           "accuracy (clean)", "time s (clean)", "cost $ (clean)", "versions", "applied",
           "duplicates");
    for (int i = 0; i < n; i++) {
        const struct run *r = &runs[i];
        char at[64], det[64], again[64], caught[64], red[64], acc[32], tm[32], cost[48];
        char ver[64] = "", app[64] = "", dup[64] = "";
        fmt_list(at, sizeof at, r, 4);
        fmt_list(det, sizeof det, r, 0);
        fmt_list(again, sizeof again, r, 1);
        fmt_list(caught, sizeof caught, r, 2);
        fmt_list(red, sizeof red, r, 3);
        snprintf(acc, sizeof acc, "%.2f%% (%.2f%%)", 100 * r->acc, 100 * clean->acc);
        snprintf(tm, sizeof tm, "%.1f (%.1f)", r->elapsed, clean->elapsed);
        snprintf(cost, sizeof cost, "%.5f (%.5f)", r->cost, clean->cost);
        for (int s = 0; s < r->nsh; s++) {
            size_t a = strlen(ver), b = strlen(app), c = strlen(dup);
            snprintf(ver + a, sizeof ver - a, "%s%lld", s ? "/" : "", r->sh[s].version);
            snprintf(app + b, sizeof app - b, "%s%lld%s", s ? "/" : "", r->sh[s].applied,
                     r->replaced & (1u << s) ? "r" : "");
            snprintf(dup + c, sizeof dup - c, "%s%lld", s ? "/" : "", r->sh[s].dup);
        }
        printf("%-12s %-10s %-11s %-11s %-13s %-11s %-9s %-17s %-16s %-20s %-14s %-14s %s\n",
               fault_name[r->f], r->state, at, det, again, caught, red,
               r->f == FAULT_CLEAN ? "-" : acc, r->f == FAULT_CLEAN ? tm : tm,
               cost, ver[0] ? ver : "-", app[0] ? app : "-", dup[0] ? dup : "-");
    }
    printf("\n(applied: updates_applied per shard, \"r\" on a replaced shard; a row is ok when the "
           "job succeeded, lost at most %.1f points of the clean run's accuracy and its shards' "
           "counters are consistent)\n",
           100 * CHAOS_ACC_POINTS);
    for (int i = 1; i < n; i++) {
        const struct run *r = &runs[i];
        printf("%-12s %s%s%s%s%s%s\n", fault_name[r->f], r->ok ? "ok" : "NOT OK",
               !strcmp(r->state, "succeeded") ? "" : ": the job did not succeed: ",
               !strcmp(r->state, "succeeded") ? "" : r->reason,
               r->acc_ok ? "" : "; accuracy target missed", r->consistent ? "" : "; counters inconsistent",
               r->saved_log[0] ? "" : "");
        if (r->saved_log[0])
            printf("             coordinator and job logs kept in %s\n", r->saved_log);
    }
    fflush(stdout);
}

static int parse_faults(const char *s, int *want)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int f;
        for (f = FAULT_WORKER; f < FAULT_N && strcmp(t, fault_name[f]); f++)
            ;
        if (f == FAULT_N)
            return -1;
        want[f] = 1;
    }
    return 0;
}

int bench_chaos_main(int argc, char **argv)
{
    static const struct option lo[] = {{"seed", required_argument, 0, 's'},
                                       {"faults", required_argument, 0, 'f'},
                                       {"kills", required_argument, 0, 'k'},
                                       {"epochs", required_argument, 0, 'e'},
                                       {"data", required_argument, 0, 'd'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    struct opts o = {.data = "/usr/share/datasets/fashion-mnist", .seed = 1, .kills = 2,
                     .epochs = 6};
    int want[FAULT_N] = {0, 1, 1, 1}, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 's': o.seed = strtoull(optarg, NULL, 10); break;
        case 'f':
            memset(want, 0, sizeof want);
            if (parse_faults(optarg, want) != 0) {
                fprintf(stderr, "smlt-bench chaos: --faults takes worker,shard,coordinator\n");
                return 2;
            }
            break;
        case 'k':
            o.kills = atoi(optarg);
            if (o.kills < 1 || o.kills > CHAOS_MAX_KILLS) {
                fprintf(stderr, "smlt-bench chaos: --kills takes 1 to %d\n", CHAOS_MAX_KILLS);
                return 2;
            }
            break;
        case 'e':
            o.epochs = atoi(optarg);
            if (o.epochs < 1 || o.epochs > 100) {
                fprintf(stderr, "smlt-bench chaos: --epochs takes 1 to 100\n");
                return 2;
            }
            break;
        case 'd': o.data = optarg; break;
        case 'j': o.json = 1; break;
        case 'h':
            printf("usage: smlt-bench chaos [--seed N] [--faults worker,shard,coordinator] "
                   "[--kills 1-3]\n"
                   "                        [--epochs N] [--data DIR] [--json]\n"
                   "Train the Fashion-MNIST MLP (4 workers x 2 shards, checkpoints every 50 "
                   "steps) on a private local\n"
                   "cluster once without faults, then once per fault kind with N SIGKILLs at "
                   "moments drawn from the seed\n"
                   "(a worker instance, a shard, the coordinator: restarted with `smltctl up`). "
                   "Report the recovery time,\n"
                   "the steps redone, accuracy, time and cost against the clean run, and the "
                   "shards' exactly-once counters.\n"
                   "Exit 1 when a faulted job did not succeed, lost more than 0.5 points of "
                   "accuracy or has inconsistent counters.\n");
            return 0;
        default: return 2;
        }
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct run runs[FAULT_N];
    memset(runs, 0, sizeof runs);
    int n = 0, rc = 0;
    runs[n].f = FAULT_CLEAN;
    if (!o.json)
        fprintf(stderr, "smlt-bench chaos: the clean run\n");
    if (run_one(&o, &runs[n], 0) != 0 || strcmp(runs[n].state, "succeeded") || runs[n].span_s <= 0) {
        fprintf(stderr, "smlt-bench chaos: the clean run did not succeed (%s)\n", runs[n].state);
        curl_global_cleanup();
        return 1;
    }
    runs[n].ok = runs[n].acc_ok = 1;
    if (o.json)
        print_json(&runs[n], &runs[0], &o);
    n++;
    for (int f = FAULT_WORKER; f < FAULT_N; f++) {
        if (!want[f])
            continue;
        struct run *r = &runs[n];
        r->f = (enum fault)f;
        if (!o.json)
            fprintf(stderr, "smlt-bench chaos: %s kills\n", fault_name[f]);
        if (run_one(&o, r, runs[0].span_s) != 0)
            snprintf(r->state, sizeof r->state, "not run");
        r->acc_ok = runs[0].acc - r->acc <= CHAOS_ACC_POINTS;
        r->ok = !strcmp(r->state, "succeeded") && r->acc_ok && r->consistent && r->nkills > 0;
        if (!r->ok)
            rc = 1;
        if (o.json)
            print_json(r, &runs[0], &o);
        n++;
    }
    if (!o.json)
        print_table(runs, n, &o);
    curl_global_cleanup();
    return rc;
}
