/* coord_restore.c: the history of earlier jobs, read back from their journals when the
 * coordinator starts (coord_journal.h). A restored job has the same representation as a live
 * one: its spec is parsed again from the one recorded at submission, its ledger is the last
 * one recorded (progress records carry it, so the billed cost survives a crash of
 * the coordinator), and its series, profile, events and model come back as they were. A job
 * that was running when the coordinator went away is resumed (coord_resume.c): its shards and
 * the worker instances still running its invocations are adopted (coord_adopt.c). */
#include "coord_int.h"
#include "smlt_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The spec recorded at submission: parsed as a live job's, or, when it no longer parses (a
 * dataset since removed, an older format), the fields the views show taken as recorded. */
static void restore_spec(struct coord_job *j, json_t *spec)
{
    char *text = json_dumps(spec, JSON_COMPACT);
    char err[512];
    memset(&j->spec, 0, sizeof j->spec);
    j->have_spec = text && coord_spec_parse(text, strlen(text), &j->spec, err, sizeof err) == 0;
    free(text);
    json_decref(j->spec_json);
    if (j->have_spec) {
        j->spec_json = coord_spec_to_json_redacted(&j->spec);
        if (coord_spec_is_python(j->spec.model) && !j->model_source) {
            /* the training file job_keep_source() kept (a job that runs on needs it) */
            char path[1200];
            snprintf(path, sizeof path, "%s/model.py", j->dir);
            if (!(j->model_source = smlt_file_read(path, COORD_SPEC_SOURCE_MAX, NULL)))
                log_warn("job %s: cannot read its training file %s: %s", j->id, path,
                         strerror(errno));
        }
        return;
    }
    memset(&j->spec, 0, sizeof j->spec);
    /* Shown as recorded; secrets are masked like coord_spec_to_json_redacted(). */
    j->spec_json = json_deep_copy(spec);
    json_t *ps = json_object_get(j->spec_json, "ps");
    if (ps && json_object_get(ps, "token"))
        json_object_set_new(ps, "token", json_string("***"));
    if (ps && json_object_get(ps, "admin_token"))
        json_object_set_new(ps, "admin_token", json_string("***"));
    const char *name = json_string_value(json_object_get(spec, "name"));
    snprintf(j->spec.name, sizeof j->spec.name, "%s", name ? name : "");
    json_t *ep = json_object_get(spec, "max_epochs");
    if (!ep)
        ep = json_object_get(spec, "epochs");
    j->spec.max_epochs = (uint32_t)json_integer_value(ep);
    j->spec.budget_usd = json_number_value(json_object_get(spec, "budget_usd"));
    j->spec.deadline_s = json_number_value(json_object_get(spec, "deadline_s"));
    j->spec.target_accuracy = json_number_value(json_object_get(spec, "target_accuracy"));
    j->spec.statistical_efficiency = json_is_true(json_object_get(spec, "statistical_efficiency"));
    j->spec.workers = (uint32_t)json_integer_value(json_object_get(spec, "workers"));
}

/* A ledger recorded with a record, when there is one. */
static void restore_ledger(struct coord_job *j, json_t *rec, double rec_t)
{
    json_t *l = json_object_get(rec, "ledger");
    struct coord_ledger led;
    if (l && coord_ledger_from_json(&led, l) == 0) {
        j->ledger = led;
        j->ledger_unix = rec_t;
    }
}

static void replay_state(struct coord_job *j, json_t *rec, double rec_t)
{
    const char *st = json_string_value(json_object_get(rec, "state"));
    for (int s = 0; st && s < JOB_NSTATES; s++)
        if (!strcmp(st, job_state_names[s]))
            j->state = (enum job_state)s;
    const char *e = json_string_value(json_object_get(rec, "error"));
    const char *why = json_string_value(json_object_get(rec, "reason"));
    if (e)
        snprintf(j->error, sizeof j->error, "%s", e);
    if (why)
        snprintf(j->reason, sizeof j->reason, "%s", why);
    restore_ledger(j, rec, rec_t);
    if (json_object_get(rec, "step"))
        j->step = (uint64_t)json_integer_value(json_object_get(rec, "step"));
    if (st && !strcmp(st, "starting"))
        j->started_unix = rec_t; /* as job_on_start() takes it */
    if (job_ended(j))
        j->ended_unix = rec_t;
    if (json_object_get(rec, "steps_per_epoch"))
        j->spe = (uint64_t)json_integer_value(json_object_get(rec, "steps_per_epoch"));
    if (json_object_get(rec, "total_steps"))
        j->total_steps = (uint64_t)json_integer_value(json_object_get(rec, "total_steps"));
    if (json_is_integer(json_object_get(rec, "epochs_target")))
        j->epochs_target = (uint32_t)json_integer_value(json_object_get(rec, "epochs_target"));
    if (json_is_number(json_object_get(rec, "reference_epochs_done")))
        j->ref_done = json_number_value(json_object_get(rec, "reference_epochs_done"));
    if (json_is_number(json_object_get(rec, "noise_scale")))
        j->noise_scale = json_number_value(json_object_get(rec, "noise_scale"));
    json_t *ps = json_object_get(rec, "ps_stats");
    if (ps) {
        json_decref(j->ps_stats);
        j->ps_stats = json_incref(ps);
    }
}

static void replay_epoch(struct coord_job *j, json_t *rec)
{
    json_array_append(j->series, rec);
    j->epoch_done = json_integer_value(json_object_get(rec, "epoch"));
    j->test_acc = json_real_value(json_object_get(rec, "test_accuracy"));
    j->test_loss = json_real_value(json_object_get(rec, "test_loss"));
    j->train_loss = json_real_value(json_object_get(rec, "train_loss"));
    if (j->test_acc > j->best_acc)
        j->best_acc = j->test_acc;
    j->step = (uint64_t)json_integer_value(json_object_get(rec, "step"));
    j->workers = (uint32_t)json_integer_value(json_object_get(rec, "workers"));
    j->shards.n = (uint32_t)json_integer_value(json_object_get(rec, "shards"));
}

struct replay_ctx {
    struct coord_job *j;
    double last_t; /* the last record's time, an "interrupted" state aside */
    int have_shards;
};

/* Addresses recorded one per shard (n of them; a missing or overlong one stays ""). */
static void replay_addrs(char (*out)[24], uint32_t n, const json_t *a)
{
    for (uint32_t i = 0; i < n && i < json_array_size(a); i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (s && strlen(s) < sizeof out[i])
            snprintf(out[i], sizeof out[i], "%s", s);
    }
}

/* The job's shards as recorded (addresses, pids, tokens): a restarted coordinator adopts them. */
static void replay_shards(struct coord_job *j, json_t *rec)
{
    struct coord_shards *sh = &j->shards;
    const char *addrs = json_string_value(json_object_get(rec, "addrs"));
    const char *tok = json_string_value(json_object_get(rec, "token"));
    const char *adm = json_string_value(json_object_get(rec, "admin_token"));
    json_t *pids = json_object_get(rec, "pids");
    json_int_t n = json_integer_value(json_object_get(rec, "n"));
    memset(sh, 0, sizeof *sh);
    if (!addrs || !tok || n < 1 || n > COORD_SHARDS_MAX || strlen(addrs) >= sizeof sh->addrs ||
        strlen(tok) >= sizeof sh->token || (adm && strlen(adm) >= sizeof sh->admin_token))
        return;
    sh->n = (uint32_t)n;
    sh->local = json_is_true(json_object_get(rec, "local"));
    snprintf(sh->addrs, sizeof sh->addrs, "%s", addrs);
    snprintf(sh->token, sizeof sh->token, "%s", tok);
    snprintf(sh->admin_token, sizeof sh->admin_token, "%s", adm ? adm : "");
    sh->nic_mbps = (uint32_t)json_integer_value(json_object_get(rec, "nic_mbps"));
    for (uint32_t i = 0; i < sh->n && i < json_array_size(pids); i++)
        sh->pid[i] = (pid_t)json_integer_value(json_array_get(pids, i));
    sh->replicas = json_integer_value(json_object_get(rec, "replicas")) == 2 ? 2 : 1;
    if (json_integer_value(json_object_get(rec, "map_version")) > 0)
        j->map_version = (uint64_t)json_integer_value(json_object_get(rec, "map_version"));
    replay_addrs(sh->maddr, sh->n, json_object_get(rec, "metrics_addrs"));
    replay_addrs(sh->bmaddr, sh->n, json_object_get(rec, "backup_metrics_addrs"));
    json_t *bpids = json_object_get(rec, "backup_pids"), *baddrs = json_object_get(rec, "backup_addrs");
    for (uint32_t i = 0; sh->replicas > 1 && i < sh->n && i < json_array_size(bpids); i++) {
        const char *a = json_string_value(json_array_get(baddrs, i));
        if (!a || strlen(a) >= sizeof sh->baddr[i])
            continue;
        sh->bpid[i] = (pid_t)json_integer_value(json_array_get(bpids, i));
        snprintf(sh->baddr[i], sizeof sh->baddr[i], "%s", a);
    }
    if (json_is_true(json_object_get(rec, "pool"))) {
        /* Boot ids are journaled halved (JSON integers are signed); a node's is odd. */
        json_t *boots = json_object_get(rec, "boots"), *bboots = json_object_get(rec, "backup_boots");
        sh->pool = 1;
        sh->gen = (uint32_t)json_integer_value(json_object_get(rec, "pool_gen"));
        sh->mem_bytes = (uint64_t)json_integer_value(json_object_get(rec, "pool_mem"));
        snprintf(sh->job, sizeof sh->job, "%.39s", j->id);
        for (uint32_t i = 0; i < sh->n; i++) {
            json_int_t b = json_integer_value(json_array_get(boots, i));
            json_int_t bb = json_integer_value(json_array_get(bboots, i));
            sh->boot[i] = b ? (uint64_t)b << 1 | 1 : 0;
            sh->bboot[i] = bb ? (uint64_t)bb << 1 | 1 : 0;
        }
        coord_shards_pool_adopt(sh);
    }
}

static int on_replay(const char *type, json_t *rec, void *arg)
{
    struct replay_ctx *x = arg;
    struct coord_job *j = x->j;
    /* The journal's own keys are not part of what was recorded (but its time is when). */
    double rec_t = json_number_value(json_object_get(rec, "t")) / 1000.0;
    json_t *copy = json_copy(rec);
    json_object_del(copy, "t");
    json_object_del(copy, "type");
    rec = copy;
    if (!strcmp(type, "submitted")) {
        json_t *spec = json_object_get(rec, "spec");
        j->submitted_unix = json_real_value(json_object_get(rec, "submitted"));
        if (spec) {
            restore_spec(j, spec);
            j->workers = j->spec.workers;
            j->epochs_target = j->spec.max_epochs;
        }
    } else if (!strcmp(type, "state")) {
        replay_state(j, rec, rec_t);
    } else if (!strcmp(type, "epoch")) {
        replay_epoch(j, rec);
    } else if (!strcmp(type, "shards")) {
        replay_shards(j, rec);
        x->have_shards = j->shards.n > 0;
    } else if (!strcmp(type, "params")) {
        /* a torch job's size, learnt at its set-up (which a restart does not repeat) */
        json_int_t np = json_integer_value(json_object_get(rec, "model_params"));
        if (np > 0 && coord_spec_is_python(j->spec.model))
            j->spec.model_params = (uint64_t)np;
    } else if (!strcmp(type, "phase")) {
        j->phase_step = (uint64_t)json_integer_value(json_object_get(rec, "phase_step"));
        j->phase_epoch = (uint32_t)json_integer_value(json_object_get(rec, "phase_epoch"));
        j->workers = (uint32_t)json_integer_value(json_object_get(rec, "workers"));
        j->memory_mb = (uint32_t)json_integer_value(json_object_get(rec, "memory_mb"));
        if (json_integer_value(json_object_get(rec, "epochs_target")) > 0)
            j->epochs_target = (uint32_t)json_integer_value(json_object_get(rec, "epochs_target"));
        if (j->nphases < JOB_PHASES_MAX)
            j->phases[j->nphases++] =
                (struct job_phase_rec){j->phase_step, j->phase_epoch, j->workers};
    } else if (!strcmp(type, "profile")) {
        json_decref(j->profile);
        j->profile = json_incref(rec);
    } else if (!strcmp(type, "progress")) {
        j->step = (uint64_t)json_integer_value(json_object_get(rec, "step"));
        j->train_loss = json_real_value(json_object_get(rec, "train_loss"));
        restore_ledger(j, rec, rec_t);
    } else if (!strcmp(type, "event")) {
        if (json_array_size(j->events) >= JOB_EVENTS_MAX)
            json_array_remove(j->events, 0);
        json_array_append(j->events, rec);
    } else if (!strcmp(type, "invocation") || !strcmp(type, "invocation_end")) {
        job_adopt_replay(j, type, rec);
    } else if (!strcmp(type, "model")) {
        j->model_saved = 1;
        j->model_step = (uint64_t)json_integer_value(json_object_get(rec, "step"));
    }
    if (j->state != JOB_INTERRUPTED)
        x->last_t = rec_t;
    json_decref(copy);
    return 0;
}

void job_restore(struct coord *c, struct coord_job *j)
{
    struct replay_ctx x = {.j = j};
    coord_journal_replay(c->data_dir, j->id, on_replay, &x);
    if (!job_ended(j)) {
        /* It was running (or waiting to) when the coordinator went away: adopt its shards and
         * go on from their step, or say why it cannot. */
        char err[256];
        j->journal = coord_journal_open(c->data_dir, j->id, err, sizeof err);
        j->log_fd = open(j->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        j->resume_from_unix = x.last_t;
        job_resume(j, x.have_shards);
    }
    if (job_ended(j)) {
        json_decref(j->adopt); /* only a resumed job takes its invocations back */
        j->adopt = NULL;
    }
    if (j->state == JOB_INTERRUPTED && x.last_t > 0)
        j->ended_unix = x.last_t; /* last heard of, not when the coordinator came back */
}

static int on_list(const char *job_id, void *arg)
{
    struct coord *c = arg;
    struct coord_job *j = job_alloc(c, job_id);
    if (!j)
        return 0;
    job_restore(c, j);
    unsigned seq = 0;
    if (sscanf(job_id, "job-%u", &seq) == 1 && seq > c->next_seq)
        c->next_seq = seq;
    return 0;
}

void coord_restore_all(struct coord *c)
{
    /* The history of earlier jobs, newest last in the list walk (jobs are prepended). */
    coord_journal_list(c->data_dir, on_list, c);
}
