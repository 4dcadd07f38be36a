/* coord_view.c: what the coordinator shows of its jobs: the measurements of an epoch or of
 * the profile (job_measure(), recorded in the series and the journal), the JSON views of the
 * HTTP API (GET /api/jobs, GET /api/jobs/ID) and the Prometheus exposition of /metrics. A live
 * job and one restored from its journal have the same representation, so one code path shows
 * both. */
#include "coord_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_pool.h"
#include "smlt_tls.h"

/* A rank's compute and communication per step in the interval since its epoch mark (from the
 * same reports as its step count), or, when it has not reported in the interval, over its
 * current invocation. Returns 0 when it has no figures at all. */
static int rank_step_rates(const struct rank *r, double *compute, double *comm)
{
    struct rank_mark now;
    rank_mark(&now, r);
    uint64_t ds = now.step > r->ep.step ? now.step - r->ep.step : 0;
    if (ds) {
        *compute = (now.compute_s - r->ep.compute_s) / (double)ds;
        *comm = (now.comm_s - r->ep.comm_s) / (double)ds;
        return 1;
    }
    if (r->cur.steps) {
        *compute = r->cur.compute_s / (double)r->cur.steps;
        *comm = r->cur.comm_s / (double)r->cur.steps;
        return 1;
    }
    return 0;
}

/* The measurements of the interval since the current epoch began (job_epoch_mark()), up to
 * `step` at time t: its wall time (under time_key), what a mean worker did in it, the step
 * time, the throughput, each active rank's step time, the configuration and the cost so far.
 *
 * The wall time is split four ways that add up to it: compute, communication and waiting for
 * the slowest worker's compute (a mean worker's per-step rates, from each rank's own reports,
 * times the interval's steps; under BSP a worker counts the wait in its push + pull), and
 * other_s, the rest: starting and loading, evaluation, slices ending and being invoked again.
 * Reports come about once a second, so a rank's rates are over the steps it reported in the
 * interval, or over its current invocation when none came (its step time is then null). */
json_t *job_measure(const struct coord_job *j, uint64_t step, double t, const char *time_key)
{
    double cmax = 0, csum = 0, msum = 0;
    uint32_t nc = 0;
    json_t *wst = json_array();
    uint64_t steps = step > j->epoch_step0 ? step - j->epoch_step0 : 0;
    for (uint32_t k = 0; k < j->workers; k++) {
        const struct rank *r = &j->ranks[k];
        double dc, dm;
        int fresh = r->next_step > r->ep.step;
        if (!rank_step_rates(r, &dc, &dm)) {
            json_array_append_new(wst, json_null());
            continue;
        }
        json_array_append_new(wst, fresh ? json_real(dc + dm) : json_null());
        csum += dc;
        msum += dm;
        nc++;
        if (dc > cmax)
            cmax = dc;
    }
    double w = j->workers ? j->workers : 1, dt = t - j->epoch_started;
    double compute = nc ? csum / nc * (double)steps : 0;
    double wait = nc ? (cmax - csum / nc) * (double)steps : 0;
    double comm = nc ? msum / nc * (double)steps : 0;
    comm = comm > wait ? comm - wait : 0.0;
    double sum = compute + comm + wait, other = dt - sum;
    if (other < 0 && sum > 0) {
        /* Rates from reports that straddle the interval's ends overshoot it a little. */
        double f = dt > 0 ? dt / sum : 0;
        compute *= f;
        comm *= f;
        wait *= f;
        other = 0;
    }
    /* The invocations so far, cold and warm (the dashboard draws them over the epochs). */
    uint64_t cold = 0, warm = 0;
    for (uint32_t k = 0; j->ranks && k < j->cap; k++) {
        cold += j->ranks[k].tot.cold_starts;
        warm += j->ranks[k].tot.warm_starts;
    }
    json_t *m = json_pack("{s:I, s:I}", "cold_starts", (json_int_t)cold, "warm_starts",
                          (json_int_t)warm);
    json_t *o = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o, s:i, s:i, s:f}", "step",
                     (json_int_t)step, "elapsed_s", t - j->t_start, time_key, dt, "compute_s",
                     compute, "comm_s", comm, "wait_s", wait, "other_s", other < 0 ? 0.0 : other,
                     "step_s", steps ? dt / (double)steps : 0.0, "samples_per_s",
                     dt > 0 ? (double)steps * w * j->spec.batch_size / dt : 0.0,
                     "worker_step_s", wst, "workers", (int)j->workers, "shards",
                     (int)j->shards.n, "cost_usd", job_cost(j));
    if (o && m)
        json_object_update(o, m);
    json_decref(m);
    return o;
}

/* ---- views ------------------------------------------------------------------------------- */

json_t *job_summary(struct coord_job *j, double cost)
{
    double el = 0;
    if (j->started_unix > 0)
        el = (j->ended_unix > 0 ? j->ended_unix : smlt_now_unix()) - j->started_unix;
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:i, s:i, s:f, s:f, s:f}", "id",
                     j->id, "name", j->spec.name, "state", job_state_names[j->state],
                     "epoch", (json_int_t)(j->epoch_done + 1), "step", (json_int_t)j->step,
                     "total_steps", (json_int_t)j->total_steps, "train_loss", j->train_loss,
                     "test_accuracy", j->test_acc, "cost_usd", cost, "workers",
                     (int)j->workers, "shards", (int)j->shards.n, "elapsed_s", el, "submitted",
                     j->submitted_unix, "started", j->started_unix);
    if (o) {
        json_object_set_new(o, "budget_usd", json_real(j->spec.budget_usd));
        json_object_set_new(o, "deadline_s", json_real(j->spec.deadline_s));
        if (job_ended(j) && (j->error[0] || j->reason[0]))
            json_object_set_new(o, j->state == JOB_FAILED ? "error" : "reason",
                                json_string(j->state == JOB_FAILED ? j->error : j->reason));
    }
    return o;
}

json_t *coord_jobs_json(struct coord *c)
{
    json_t *a = json_array();
    for (struct coord_job *j = c->jobs; j; j = j->next)
        json_array_append_new(a, job_summary(j, job_cost(j)));
    return a;
}

/* The job's ranks (those it ever used) and their invocations' totals, into o. */
static void job_ranks_json(const struct coord_job *j, json_t *o, double *compute, double *comm)
{
    uint64_t inv = 0, cold = 0, warm = 0, lost = 0, running = 0;
    double init = 0, busy = 0, cold_s = 0, warm_s = 0;
    *compute = *comm = 0;
    json_t *ranks = json_array();
    for (uint32_t k = 0; j->ranks && k < j->cap; k++) {
        const struct rank *r = &j->ranks[k];
        if (k >= j->workers && !r->tot.invocations)
            continue; /* never used */
        inv += r->tot.invocations;
        cold += r->tot.cold_starts;
        warm += r->tot.warm_starts;
        cold_s += r->tot.cold_start_s;
        warm_s += r->tot.warm_start_s;
        lost += r->tot.lost;
        running += r->cur.id != 0;
        *compute += r->tot.compute_s + r->cur.compute_s;
        *comm += r->tot.comm_s + r->cur.comm_s;
        init += r->tot.init_s + r->cur.init_s;
        busy += r->tot.elapsed_s;
        /* Ranks past the current worker count left at a scale-in; they stay in the view
         * (their invocations and spending are part of the job) marked "active": false. */
        json_array_append_new(ranks, json_pack("{s:i, s:b, s:I, s:b, s:b, s:i, s:I}", "rank",
                                               (int)k, "active", k < j->workers, "next_step",
                                               (json_int_t)r->next_step, "running", r->cur.id != 0,
                                               "finished", r->finished, "failures", r->failures,
                                               "invocations", (json_int_t)r->tot.invocations));
    }
    json_object_set_new(o, "ranks", ranks);
    json_object_set_new(o, "invocations",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f}",
                                  "total", (json_int_t)inv, "cold", (json_int_t)cold, "warm",
                                  (json_int_t)warm, "lost", (json_int_t)lost, "running",
                                  (json_int_t)running, "compute_s", *compute, "comm_s", *comm,
                                  "init_s", init, "billed_s", busy, "cold_start_s",
                                  cold ? cold_s / (double)cold : 0.0, "warm_start_s",
                                  warm ? warm_s / (double)warm : 0.0));
}

/* Local shards' (or their backups') metrics addresses in shard order, null where none is
 * known; [] for shards started elsewhere. */
static json_t *shard_metrics_json(const struct coord_shards *sh, int backups)
{
    json_t *a = json_array();
    for (uint32_t i = 0; sh->local && i < sh->n; i++) {
        const char *m = backups ? sh->bmaddr[i] : sh->maddr[i];
        json_array_append_new(a, m[0] ? json_string(m) : json_null());
    }
    return a;
}

/* Node v's GET /metrics address: its host with the metrics port it reported ("host:port",
 * "[v6]:port"). Returns 0, or -1 when it serves none (or has not answered). */
static int node_metrics_addr(const struct coord_pool_node *v, char *out, size_t len)
{
    const char *colon = strrchr(v->addr, ':');
    if (!v->metrics_port || !colon)
        return -1;
    snprintf(out, len, "%.*s:%u", (int)(colon - v->addr), v->addr, v->metrics_port);
    return 0;
}

/* The pool's nodes as the monitor last saw them (malloc'd, *n of them; NULL when no pool or
 * out of memory). */
static struct coord_pool_node *pool_nodes(struct coord *c, uint32_t *n)
{
    *n = 0;
    struct coord_pool_node *v = c->pool ? calloc(COORD_POOL_MAX, sizeof *v) : NULL;
    if (v) {
        *n = coord_pool_nodes(c->pool, v, COORD_POOL_MAX);
        if (*n > COORD_POOL_MAX)
            *n = COORD_POOL_MAX;
    }
    return v;
}

json_t *coord_nodes_json(struct coord *c)
{
    json_t *a = json_array();
    if (!c->pool)
        return json_pack("{s:s, s:o}", "mode", "local", "nodes", a);
    uint32_t n;
    struct coord_pool_node *v = pool_nodes(c, &n);
    static const char *const state[] = {"connecting", "up", "down"};
    for (uint32_t i = 0; i < n; i++) {
        /* The jobs' shards and backups on it, as the coordinator placed them. */
        json_t *held = json_array();
        for (const struct coord_job *j = c->jobs; j; j = j->next) {
            if (job_ended(j) || !j->shards.pool)
                continue;
            for (uint32_t k = 0; k < j->shards.n; k++) {
                if (j->shards.node[k] == (int)i)
                    json_array_append_new(held, json_pack("{s:s, s:i, s:s}", "job", j->id,
                                                          "shard", (int)k, "role", "primary"));
                if (j->shards.bnode[k] == (int)i)
                    json_array_append_new(held, json_pack("{s:s, s:i, s:s}", "job", j->id,
                                                          "shard", (int)k, "role", "backup"));
            }
        }
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:i, s:i, s:I, s:o}", "addr",
                              v[i].addr, "name", v[i].name, "state", state[v[i].state % 3],
                              "capacity_bytes", (json_int_t)v[i].capacity_bytes, "used_bytes",
                              (json_int_t)v[i].used_bytes, "free_bytes",
                              (json_int_t)(v[i].capacity_bytes > v[i].used_bytes
                                               ? v[i].capacity_bytes - v[i].used_bytes
                                               : 0),
                              "shards", (int)v[i].shards, "configured", (int)v[i].configured,
                              "connections", (int)v[i].connections, "refused",
                              (json_int_t)v[i].refused, "placed", held);
        json_object_set_new(o, "since_ok_s",
                            v[i].since_ok_s < 0 ? json_null() : json_real(v[i].since_ok_s));
        char maddr[96];
        json_object_set_new(o, "metrics_addr",
                            node_metrics_addr(&v[i], maddr, sizeof maddr) == 0
                                ? json_string(maddr)
                                : json_null());
        if (v[i].err[0])
            json_object_set_new(o, "error", json_string(v[i].err));
        json_array_append_new(a, o);
    }
    free(v);
    return json_pack("{s:s, s:s, s:o}", "mode", "pool", "pool", coord_pool_spec(c->pool),
                     "nodes", a);
}

/* A pool job's shards' nodes in shard order ("host:port"; backups' in "backup"). */
static json_t *shard_nodes_json(const struct coord_job *j)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < j->shards.n; i++) {
        char addr[COORD_ADDR_LEN], b[COORD_ADDR_LEN] = "";
        coord_shards_addr(&j->shards, i, addr, sizeof addr);
        addr[strcspn(addr, "/")] = '\0';
        json_t *o = json_pack("{s:i, s:s, s:b}", "shard", (int)i, "node", addr, "up",
                              coord_shards_up(&j->shards, i, 0));
        if (coord_shards_has_backup(&j->shards, i)) {
            snprintf(b, sizeof b, "%s", j->shards.baddr[i]);
            b[strcspn(b, "/")] = '\0';
            json_object_set_new(o, "backup_node", json_string(b));
        }
        json_array_append_new(a, o);
    }
    return a;
}

json_t *coord_job_json(struct coord *c, const char *id)
{
    struct coord_job *j = job_find(c, id);
    if (!j)
        return NULL;
    struct coord_ledger led;
    job_ledger_now(j, &led); /* one reading: its parts add up to cost_usd */
    json_t *o = job_summary(j, coord_ledger_total(&led));
    json_object_set_new(o, "best_accuracy", json_real(j->best_acc));
    json_object_set_new(o, "test_loss", json_real(j->test_loss));
    json_object_set_new(o, "steps_per_epoch", json_integer((json_int_t)j->spe));
    json_object_set_new(o, "error", json_string(j->error));
    json_object_set_new(o, "reason", json_string(j->reason));
    if (j->spec_json)
        json_object_set(o, "spec", j->spec_json);
    json_object_set_new(o, "ledger", coord_ledger_to_json(&led));
    /* The data epochs the job will train (more than max_epochs when statistical efficiency
     * counts a larger global batch's epochs for less; 0 in journals from before it). */
    if (j->epochs_target)
        json_object_set_new(o, "epochs_target", json_integer(j->epochs_target));
    if (j->epochs_target && j->spec.statistical_efficiency)
        json_object_set_new(o, "reference_epochs_done", json_real(j->ref_done));
    json_object_set_new(o, "model_params", json_integer((json_int_t)j->spec.model_params));
    json_object_set_new(o, "max_epochs", json_integer(j->spec.max_epochs));
    json_object_set_new(o, "target_accuracy", json_real(j->spec.target_accuracy));
    if (j->spec.deadline_s > 0 && !job_ended(j))
        json_object_set_new(o, "deadline_in_s",
                            json_real(j->spec.deadline_s - (smlt_now_unix() - j->submitted_unix)));
    double compute, comm;
    job_ranks_json(j, o, &compute, &comm);
    /* B_simple measured by the shards (BSP with 2+ workers), at the last epoch boundary the
     * scheduler saw or at the end: the global batch beyond which more workers buy less. */
    json_object_set_new(o, "noise_scale", j->noise_scale > 0 ? json_real(j->noise_scale)
                                                             : json_null());
    /* The share of the job's time its workers spent outside training steps (starting,
     * loading, evaluating, waiting for invocations): 1 - (compute + communication) over
     * worker-seconds since the job started (workers x time, phase by phase). */
    if (j->workers && j->started_unix > 0 && j->ranks) { /* (restored jobs have no ranks) */
        double since = j->workers_since > 0 ? j->workers_since : j->started_unix;
        double end = j->ended_unix > 0 ? j->ended_unix : smlt_now_unix();
        double ws = j->worker_s + j->workers * (end - since);
        json_object_set_new(o, "overhead_share",
                            json_real(ws > 0 ? fmax(0.0, 1.0 - (compute + comm) / ws) : 0.0));
    }
    /* The profiling phase's measurements (the first steps of epoch 1 at the first
     * configuration; null when the job had none: see job_profile()). */
    json_object_set_new(o, "profile", j->profile ? json_incref(j->profile) : json_null());
    json_object_set(o, "series", j->series);
    json_object_set(o, "events", j->events);
    json_object_set_new(o, "model", j->model_saved ? json_string(j->model_path) : json_null());
    json_object_set_new(o, "model_step", json_integer((json_int_t)j->model_step));
    json_object_set_new(o, "ps_addrs", json_string(j->shards.addrs));
    if (j->shards.pool)
        json_object_set_new(o, "ps_nodes", shard_nodes_json(j));
    json_object_set_new(o, "ps_metrics", shard_metrics_json(&j->shards, 0));
    if (j->shards.replicas > 1)
        json_object_set_new(o, "ps_backup_metrics", shard_metrics_json(&j->shards, 1));
    if (j->ps_stats)
        json_object_set(o, "ps_stats", j->ps_stats);
    return o;
}

/* The value of metrics_running_jobs()' family f for job j. */
static double job_gauge(const struct coord_job *j, size_t f)
{
    switch (f) {
    case 0: return (double)j->step;
    case 1: return (double)j->workers;
    case 2: return (double)j->shards.n;
    case 3: return job_cost(j);
    default: return isfinite(j->test_acc) ? j->test_acc : 0.0;
    }
}

/* Gauges of the RUNNING jobs, one series each (label job_id: not "job", which Prometheus
 * keeps for the scrape job and would rename exported_job). Jobs that are not running have
 * none, so the series are as many as the jobs running at once. */
static void metrics_running_jobs(struct coord *c, struct evbuffer *out)
{
    static const struct {
        const char *name, *help;
    } fam[] = {
        {"smlt_job_step", "The step every rank of a running job has reached."},
        {"smlt_job_workers", "Workers (ranks) of a running job in its current phase."},
        {"smlt_job_shards", "Parameter-server shards of a running job."},
        {"smlt_job_cost_usd", "Spend of a running job so far, in US dollars."},
        {"smlt_job_test_accuracy", "Test accuracy of a running job at its last evaluation."},
    };
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        smlt_hist_head(out, fam[f].name, "gauge", fam[f].help);
        for (struct coord_job *j = c->jobs; j; j = j->next) {
            if (j->state != JOB_RUNNING)
                continue;
            char label[JOB_ID_MAX + 16];
            snprintf(label, sizeof label, "job_id=\"%s\"", j->id);
            smlt_hist_sample(out, fam[f].name, label, job_gauge(j, f));
        }
    }
}

static void metrics_histograms(struct coord *c, struct evbuffer *out)
{
    smlt_hist_head(out, "smlt_invocation_start_seconds", "histogram",
                   "Time from invoking a worker function to its worker's hello, by cold or warm "
                   "instance.");
    smlt_hist_write(out, "smlt_invocation_start_seconds", "start=\"cold\"", &c->start_cold);
    smlt_hist_write(out, "smlt_invocation_start_seconds", "start=\"warm\"", &c->start_warm);
    smlt_hist_head(out, "smlt_step_seconds", "histogram",
                   "Each rank's training step time (compute and communication), each step of "
                   "a progress report's interval at the interval's mean.");
    smlt_hist_write(out, "smlt_step_seconds", NULL, &c->step_time);
}

/* One target group of Prometheus HTTP service discovery: the metrics address of a shard (or
 * its backup) of job j, with labels that are strings. */
static json_t *prometheus_target(const struct coord_job *j, uint32_t shard, const char *addr,
                                 const char *role)
{
    char id[16];
    snprintf(id, sizeof id, "%u", shard);
    return json_pack("{s:[s], s:{s:s, s:s, s:s}}", "targets", addr, "labels", "job_id", j->id,
                     "shard", id, "role", role);
}

json_t *coord_prometheus_targets(struct coord *c)
{
    json_t *a = json_array();
    for (struct coord_job *j = c->jobs; j; j = j->next) {
        if ((j->state != JOB_STARTING && j->state != JOB_RUNNING) || !j->shards.local)
            continue;
        for (uint32_t i = 0; i < j->shards.n; i++) {
            if (j->shards.maddr[i][0])
                json_array_append_new(a, prometheus_target(j, i, j->shards.maddr[i], "primary"));
            if (j->shards.bmaddr[i][0])
                json_array_append_new(a, prometheus_target(j, i, j->shards.bmaddr[i], "backup"));
        }
    }
    /* The pool's nodes that serve /metrics (smlt-ps --node --metrics-listen), up or not: a
     * node down shows as a target down. */
    uint32_t n;
    struct coord_pool_node *v = pool_nodes(c, &n);
    for (uint32_t i = 0; i < n; i++) {
        char maddr[96];
        if (node_metrics_addr(&v[i], maddr, sizeof maddr) == 0)
            json_array_append_new(a, json_pack("{s:[s], s:{s:s, s:s}}", "targets", maddr,
                                               "labels", "role", "node", "node",
                                               v[i].name[0] ? v[i].name : v[i].addr));
    }
    free(v);
    return a;
}

void coord_metrics(struct coord *c, struct evbuffer *out)
{
    unsigned counts[JOB_NSTATES] = {0};
    double cost = 0, gb_s = 0;
    struct coord_admin_stats admin = c->admin_done;
    for (struct coord_job *j = c->jobs; j; j = j->next) {
        counts[j->state]++;
        struct coord_admin_stats as;
        job_admin_stats(j, &as);
        admin.calls += as.calls;
        admin.failed += as.failed;
        admin.canceled += as.canceled;
        admin.queued += as.queued;
        struct coord_ledger led;
        job_ledger_now(j, &led);
        cost += coord_ledger_total(&led);
        gb_s += led.gb_s;
    }
    struct coord_backend_stats bs;
    coord_backend_stats(c->backend, &bs);
    struct coord_rpc_stats rs;
    coord_rpc_stats(c->rpc, &rs);
    evbuffer_add_printf(out, "# HELP smlt_jobs Jobs known to the coordinator, by state.\n"
                             "# TYPE smlt_jobs gauge\n");
    for (int s = 0; s < JOB_NSTATES; s++)
        evbuffer_add_printf(out, "smlt_jobs{state=\"%s\"} %u\n", job_state_names[s], counts[s]);
#define COUNTER(name, help, v)                                                                     \
    evbuffer_add_printf(out, "# HELP smlt_" name " " help "\n# TYPE smlt_" name " counter\nsmlt_" name " %llu\n", \
                        (unsigned long long)(v))
#define GAUGE(name, help, fmt, v)                                                                  \
    evbuffer_add_printf(out, "# HELP smlt_" name " " help "\n# TYPE smlt_" name " gauge\nsmlt_" name " " fmt "\n", (v))
    COUNTER("jobs_submitted_total", "Jobs accepted.", c->submitted);
    COUNTER("jobs_refused_total", "Job specs refused as invalid.", c->refused);
    COUNTER("invocations_total", "Function invocations started.", bs.invocations);
    COUNTER("cold_starts_total", "Invocations served by a new instance.", bs.cold_starts);
    COUNTER("warm_starts_total", "Invocations served by a warm instance.", bs.warm_starts);
    COUNTER("invocation_timeouts_total", "Invocations killed at the time limit.", bs.timeouts);
    COUNTER("invocation_crashes_total", "Invocations whose instance died.", bs.crashes);
    COUNTER("invocation_callbacks_total", "Asynchronous invocations' results taken by callback.",
            bs.callbacks);
    COUNTER("invocation_callbacks_refused_total",
            "Callbacks refused: unknown or ended invocation, wrong secret, malformed.",
            bs.callbacks_refused + c->callbacks_unserved);
    COUNTER("rpc_connections_total", "Worker RPC connections accepted.", rs.conns);
    COUNTER("rpc_auth_failures_total", "Worker RPC handshakes refused.", rs.auth_failures);
    COUNTER("rpc_frames_bad_total", "Malformed frames on the worker RPC.", rs.frames_bad);
    COUNTER("rpc_tls_failures_total",
            "Worker RPC connections closed because TLS failed (refused handshakes).",
            rs.tls_failures);
    COUNTER("http_tls_failures_total", "HTTPS connections whose TLS handshake failed.",
            c->tls_server ? smlt_tls_handshake_failures(c->tls_server) : 0ull);
    GAUGE("invocations_running", "Invocations running now.", "%u", bs.running);
    GAUGE("invocations_waiting", "Invocations waiting for a concurrency slot.", "%u", bs.waiting);
    GAUGE("instances_idle", "Warm instances kept for reuse.", "%u", bs.idle);
    /* (promtool refuses abbreviated units such as "gb" in a name.) */
    evbuffer_add_printf(out, "# HELP smlt_function_gigabyte_seconds_total Function memory "
                             "size times duration billed, in GB-seconds.\n"
                             "# TYPE smlt_function_gigabyte_seconds_total counter\n"
                             "smlt_function_gigabyte_seconds_total %.6f\n",
                        gb_s);
    COUNTER("admin_calls_total", "Calls to the shards made by the coordinator.", admin.calls);
    COUNTER("admin_call_failures_total", "Calls to the shards that failed.", admin.failed);
    COUNTER("admin_calls_canceled_total", "Calls to the shards canceled.", admin.canceled);
    GAUGE("admin_calls_pending", "Calls to the shards queued or running now.", "%u",
          admin.queued);
    evbuffer_add_printf(out, "# HELP smlt_cost_usd Spend of all jobs so far, in US dollars.\n"
                             "# TYPE smlt_cost_usd gauge\nsmlt_cost_usd %.6f\n",
                        cost);
#undef COUNTER
#undef GAUGE
    metrics_histograms(c, out);
    metrics_running_jobs(c, out);
}
