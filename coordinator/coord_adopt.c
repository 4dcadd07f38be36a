/* coord_adopt.c: worker instances that outlive their coordinator (issue 11, "the coordinator
 * can die at any moment").
 *
 * The local runtime's instances no longer die with the coordinator: an instance in the middle
 * of a slice goes on training against the shards, and its worker dials the coordinator again
 * (worker_invoke.c) at the same address (the RPC port is kept across restarts, coord.c). The
 * journal records each invocation when its worker says hello (its name, token, pid, start and
 * time limit) and when it ends. A restarted coordinator, resuming a job (coord_resume.c),
 * gives each rank whose last invocation never ended, and whose instance is still a running
 * smlt-worker, that invocation back instead of invoking it again:
 *   - the worker says hello again with `resume`; the token proves it is the same invocation;
 *   - its Progress and Done are taken as any invocation's; its Done ends it (the response
 *     line went to the old coordinator's pipe, which is gone);
 *   - its process ending without a Done ends it as a crash, and the platform's time limit is
 *     kept here (SIGKILL by pid, once the pid is checked to still be a worker);
 *   - the ledger bills it from the later of its start and the last recorded ledger.
 * A rank whose instance is gone (or was never recorded) is invoked again from the shards'
 * step, as before. */
#include "coord_int.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smlt_proc.h"

#define ADOPT_LIMIT_GRACE_S 2.0 /* past the time limit before the kill (the worker ends first) */

/* 1 when pid is a running worker instance (not a zombie, not a reused pid). */
static int is_worker(pid_t pid)
{
    struct smlt_proc_info pi;
    if (pid <= 0 || smlt_proc_info(pid, &pi) != 0 || pi.state == 'Z' || !pi.base)
        return 0;
    if (strcmp(pi.base, "smlt-worker") != 0)
        return 0;
    for (int i = 1, off = 0; i < pi.argc; i++) {
        off += (int)strlen(pi.args + off) + 1;
        if (!strcmp(pi.args + off, "--invoke"))
            return 1;
    }
    return 0;
}

void job_adopt_replay(struct coord_job *j, const char *type, json_t *rec)
{
    json_t *rk = json_object_get(rec, "rank");
    const char *name = json_string_value(json_object_get(rec, "name"));
    if (!json_is_integer(rk) || !name)
        return;
    if (!j->adopt)
        j->adopt = json_object();
    char key[16];
    snprintf(key, sizeof key, "%lld", (long long)json_integer_value(rk));
    if (!strcmp(type, "invocation")) {
        json_object_set(j->adopt, key, rec);
        return;
    }
    json_t *cur = json_object_get(j->adopt, key);
    const char *cn = json_string_value(json_object_get(cur, "name"));
    if (cn && !strcmp(cn, name)) {
        json_t *ended = json_copy(cur);
        json_object_set_new(ended, "ended", json_true());
        json_object_set_new(j->adopt, key, ended);
    }
}

/* Takes rank r's recorded invocation back when its instance still runs it. */
static int adopt_rank(struct coord_job *j, struct rank *r, json_t *rec)
{
    const char *name = json_string_value(json_object_get(rec, "name"));
    const char *token = json_string_value(json_object_get(rec, "token"));
    pid_t pid = (pid_t)json_integer_value(json_object_get(rec, "pid"));
    double started = json_number_value(json_object_get(rec, "started"));
    double limit_s = json_number_value(json_object_get(rec, "limit_s"));
    if (!name || !token || strlen(name) >= sizeof r->cur.name ||
        strlen(token) >= sizeof r->cur.token || json_is_true(json_object_get(rec, "ended")))
        return 0;
    if (!is_worker(pid))
        return 0;
    double now_u = smlt_now_unix(), now_m = smlt_now_mono();
    double billed_from = started > j->ledger_unix ? started : j->ledger_unix;
    snprintf(r->cur.name, sizeof r->cur.name, "%s", name);
    snprintf(r->cur.token, sizeof r->cur.token, "%s", token);
    r->cur.id = RANK_INV_ADOPTED | r->rank;
    r->cur.pid = pid;
    r->cur.started = now_m - (now_u - billed_from);
    r->cur.limit_at = now_m - (now_u - started) + limit_s + ADOPT_LIMIT_GRACE_S;
    r->cur.from_step = r->next_step;
    r->cur.memory_mb = (uint32_t)json_integer_value(json_object_get(rec, "memory_mb"));
    if (!r->cur.memory_mb)
        r->cur.memory_mb = j->memory_mb;
    r->cur.adopted = 1;
    r->cur.billed_before = started < j->ledger_unix;
    r->cur.resumed = 0;
    r->cur.done_seen = 0;
    r->cur.done_error[0] = '\0';
    r->last_report = now_m;
    return 1;
}

uint32_t job_adopt(struct coord_job *j)
{
    uint32_t n = 0;
    for (uint32_t k = 0; j->adopt && k < j->cap; k++) {
        char key[16];
        snprintf(key, sizeof key, "%u", k);
        json_t *rec = json_object_get(j->adopt, key);
        const char *name = json_string_value(json_object_get(rec, "name"));
        const char *seq = name ? strrchr(name, '/') : NULL;
        struct rank *r = &j->ranks[k];
        if (seq)
            r->tot.invocations = strtoull(seq + 1, NULL, 10); /* names go on from there */
        if (k < j->workers && rec && adopt_rank(j, r, rec)) {
            n++;
            job_log(j, "rank %u: adopted invocation %s, still running in instance %d", k,
                    r->cur.name, (int)r->cur.pid);
        }
    }
    json_decref(j->adopt);
    j->adopt = NULL;
    return n;
}

int job_adopt_pending(struct coord *c, const char *inv)
{
    char id[JOB_ID_MAX];
    const char *slash = strchr(inv, '/');
    if (!slash || (size_t)(slash - inv) >= sizeof id)
        return 0;
    memcpy(id, inv, (size_t)(slash - inv));
    id[slash - inv] = '\0';
    struct coord_job *j = job_find(c, id);
    return j && j->adopt && !job_ended(j);
}

void rank_journal_invocation(struct coord_job *j, const struct rank *r, double limit_s)
{
    double now_u = smlt_now_unix();
    json_t *rec = json_pack("{s:i, s:s, s:s, s:i, s:f, s:f, s:i, s:I}", "rank", (int)r->rank,
                            "name", r->cur.name, "token", r->cur.token, "pid", (int)r->cur.pid,
                            "started", now_u - (smlt_now_mono() - r->cur.started), "limit_s",
                            limit_s, "memory_mb", (int)r->cur.memory_mb, "from_step",
                            (json_int_t)r->cur.from_step);
    if (rec)
        coord_journal_append(j->journal, "invocation", rec, 0);
    json_decref(rec);
}

void rank_journal_invocation_end(struct coord_job *j, const struct rank *r)
{
    json_t *rec = json_pack("{s:i, s:s}", "rank", (int)r->rank, "name", r->cur.name);
    if (rec)
        coord_journal_append(j->journal, "invocation_end", rec, 0);
    json_decref(rec);
}

void rank_resumed(struct rank *r, uint32_t pid)
{
    struct coord_job *j = r->job;
    if (r->cur.adopted && !r->cur.resumed) {
        r->cur.resumed = 1;
        r->cur.hello_at = smlt_now_mono();
        if (pid)
            r->cur.pid = (pid_t)pid;
        job_event(j, "adopt", "rank %u: the worker of invocation %s (pid %d) reconnected after "
                              "the restart and finishes its slice",
                  r->rank, r->cur.name, (int)r->cur.pid);
    } else {
        job_log(j, "rank %u: the worker of invocation %s reconnected", r->rank, r->cur.name);
    }
    r->last_report = smlt_now_mono();
}

/* Ends r's adopted invocation with status st (the backend's result, made here). */
static void adopted_end(struct rank *r, enum coord_inv_status st, const char *detail)
{
    struct coord_inv_result res = {0};
    res.status = st;
    res.duration_s = smlt_now_mono() - r->cur.started;
    if (res.duration_s < 0)
        res.duration_s = 0;
    res.pid = r->cur.pid;
    res.exit_status = -1;
    snprintf(res.detail, sizeof res.detail, "%s", detail);
    uint64_t id = r->cur.id;
    r->cur.adopted = r->cur.resumed = 0;
    rank_on_inv_end(id, &res, r);
}

static void on_adopted_done(evutil_socket_t fd, short what, void *arg)
{
    struct rank *r = arg;
    if (r->cur.adopted && r->cur.done_seen)
        adopted_end(r, COORD_INV_OK, "");
}

void rank_adopted_done(struct rank *r)
{
    if (!r->cur.adopted)
        return;
    if (!r->end_ev)
        r->end_ev = evtimer_new(r->job->c->base, on_adopted_done, r);
    struct timeval now = {0, 0};
    if (r->end_ev)
        evtimer_add(r->end_ev, &now);
}

void job_adopted_check(struct coord_job *j)
{
    double t = smlt_now_mono();
    for (uint32_t k = 0; j->ranks && k < j->cap; k++) {
        struct rank *r = &j->ranks[k];
        if (!r->cur.adopted || r->cur.done_seen)
            continue;
        char detail[160];
        if (!is_worker(r->cur.pid)) {
            snprintf(detail, sizeof detail, "the instance adopted after the restart (pid %d) "
                                            "ended without reporting its slice's end",
                     (int)r->cur.pid);
            adopted_end(r, COORD_INV_CRASHED, detail);
        } else if (t >= r->cur.limit_at) {
            kill(r->cur.pid, SIGKILL);
            snprintf(detail, sizeof detail, "killed at the %u s time limit",
                     j->spec.platform.time_limit_s);
            adopted_end(r, COORD_INV_TIMEOUT, detail);
        }
        if (job_ended(j) || j->finishing)
            return;
    }
}

void rank_cancel(struct rank *r)
{
    if (!r->cur.id)
        return;
    if (!r->cur.adopted) {
        coord_backend_cancel(r->job->c->backend, r->cur.id);
        return;
    }
    /* Stopped like the runtime stops an instance it cancels: nothing more from it may reach
     * the shards after this. Its end follows at once (there is no callback to wait for). */
    if (is_worker(r->cur.pid))
        kill(r->cur.pid, SIGKILL);
    if (r->end_ev)
        evtimer_del(r->end_ev);
    adopted_end(r, COORD_INV_CANCELED, "canceled");
}

pid_t rank_pid(const struct rank *r)
{
    if (!r->cur.id)
        return 0;
    return r->cur.adopted ? r->cur.pid : coord_backend_pid(r->job->c->backend, r->cur.id);
}
