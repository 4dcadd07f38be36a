/* coord_fake.h: a coordinator without daemons, for the unit suites of the job modules
 * (test_coord_view.c, test_coord_restore.c, test_coord_phase.c): an event base, a data
 * directory, the local backend (it starts no process until an invocation), and jobs built
 * from a spec in memory, whose shards are an address where nothing listens. Header only:
 * each suite is one executable. */
#ifndef TEST_COORD_FAKE_H
#define TEST_COORD_FAKE_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "coord_int.h"

/* Nothing listens on port 1 of the loopback address: a call there fails at once. */
#define FAKE_DEAD_SHARD "127.0.0.1:1"

static inline struct coord *fake_coord_new(void)
{
    struct coord *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    c->base = event_base_new();
    char dir[] = "/tmp/smlt-test-coord.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    c->data_dir = strdup(dir);
    char jobs[300];
    snprintf(jobs, sizeof jobs, "%s/jobs", dir);
    ck_assert_int_eq(mkdir(jobs, 0755), 0);
    struct coord_backend_local_conf bc = {.worker_bin = "/bin/false", .concurrency = 4,
                                          .keep_warm_s = 1, .memory_limit = 0};
    c->backend = coord_backend_local_new(c->base, &bc);
    ck_assert_ptr_nonnull(c->backend);
    return c;
}

static inline void fake_coord_free(struct coord *c)
{
    while (c->jobs) {
        struct coord_job *j = c->jobs;
        c->jobs = j->next;
        job_free(j);
    }
    coord_backend_free(c->backend);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->data_dir);
    if (!strncmp(c->data_dir, "/tmp/smlt-test-coord.", 21))
        ck_assert_int_eq(system(cmd), 0);
    free(c->data_dir);
    event_base_free(c->base);
    free(c);
}

/* A job from spec (JSON), as submitted, with its ranks allocated and `workers` of them
 * active, its shards at FAKE_DEAD_SHARD: RUNNING, its journal open. */
static inline struct coord_job *fake_job(struct coord *c, const char *id, const char *spec)
{
    struct coord_job *j = job_alloc(c, id);
    ck_assert_ptr_nonnull(j);
    char err[512];
    int rc = coord_spec_parse(spec, strlen(spec), &j->spec, err, sizeof err);
    ck_assert_msg(rc == 0, "spec: %s", err);
    j->have_spec = 1;
    j->epochs_target = j->spec.max_epochs;
    j->ref_workers = j->spec.workers;
    j->spec_json = coord_spec_to_json_redacted(&j->spec);
    coord_ledger_init(&j->ledger);
    j->journal = coord_journal_open(c->data_dir, id, err, sizeof err);
    ck_assert_msg(j->journal != NULL, "journal: %s", err);
    snprintf(j->shards.addrs, sizeof j->shards.addrs, "%s", FAKE_DEAD_SHARD);
    snprintf(j->shards.token, sizeof j->shards.token, "job-token");
    snprintf(j->shards.admin_token, sizeof j->shards.admin_token, "admin-token");
    j->shards.n = 1;
    j->workers = j->spec.workers;
    j->cap = j->spec.max_workers > j->spec.workers ? j->spec.max_workers : j->spec.workers;
    j->memory_mb = j->spec.platform.memory_mb;
    j->ranks = calloc(j->cap, sizeof *j->ranks);
    for (uint32_t k = 0; k < j->cap; k++) {
        j->ranks[k].job = j;
        j->ranks[k].rank = k;
        j->ranks[k].retry_ev = evtimer_new(c->base, rank_on_retry, &j->ranks[k]);
    }
    j->submitted_unix = j->started_unix = smlt_now_unix();
    j->t_start = smlt_now_mono();
    j->state = JOB_RUNNING;
    return j;
}

/* Runs c's loop until the job's admin calls are all answered (at most 20 s). */
static inline void fake_settle(struct coord *c, struct coord_job *j)
{
    double until = smlt_now_mono() + 20;
    while (j->admin && coord_admin_pending(j->admin) && smlt_now_mono() < until)
        event_base_loop(c->base, EVLOOP_ONCE);
    ck_assert(!j->admin || coord_admin_pending(j->admin) == 0);
}

/* A dataset the spec parser accepts without touching the disk. */
#define FAKE_DATASET "http://127.0.0.1:9/data.csv"

#endif
