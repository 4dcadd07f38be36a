/* test_coord_restore.c: journal replay (coordinator/coord_restore.c) without daemons: a job
 * that was running when the coordinator died comes back interrupted with the cost billed until
 * its last record (it read $0 and 0 GB-s once), its spec parsed as a live job's, and a job
 * whose recorded spec no longer parses still shows what was recorded. */
#include <math.h>

#include "coord_fake.h"

static const char *SPEC = "{\"model\": \"logreg:784-10\", \"dataset\": \"" FAKE_DATASET "\", "
                          "\"epochs\": 4, \"workers\": 2, \"shards\": 1, \"budget_usd\": 5}";

/* Appends rec (a new reference, taken) to the journal jr as a record of type. */
static void put(struct coord_journal *jr, const char *type, json_t *rec)
{
    ck_assert_ptr_nonnull(rec);
    coord_journal_append(jr, type, rec, 1);
    json_decref(rec);
}

/* The state record of a job that trained all its epochs. */
static json_t *succeeded(void)
{
    return json_pack("{s:s, s:s}", "state", "succeeded", "reason", "all epochs trained");
}

/* Records what a live job writes: submitted, starting, running, progress with a ledger. */
static void write_running_job(struct coord *c, const char *id, const struct coord_ledger *l)
{
    char err[256];
    struct coord_journal *jr = coord_journal_open(c->data_dir, id, err, sizeof err);
    ck_assert_ptr_nonnull(jr);
    json_t *spec = json_loads(SPEC, 0, NULL);
    json_t *rec = json_pack("{s:s, s:o, s:f}", "id", id, "spec", spec, "submitted", smlt_now_unix());
    put(jr, "submitted", rec);
    put(jr, "state", json_pack("{s:s}", "state", "starting"));
    put(jr, "state", json_pack("{s:s}", "state", "running"));
    rec = json_pack("{s:I, s:f, s:f, s:i, s:i, s:f, s:o}", "step", (json_int_t)120, "elapsed_s",
                    6.0, "train_loss", 0.7, "workers", 2, "shards", 1, "cost_usd",
                    coord_ledger_total(l), "ledger", coord_ledger_to_json(l));
    put(jr, "progress", rec);
    coord_journal_close(jr);
}

START_TEST(interrupted_job_keeps_its_cost)
{
    struct coord *c = fake_coord_new();
    struct coord_prices p;
    coord_prices_default(&p, NULL);
    struct coord_ledger l;
    coord_ledger_init(&l);
    coord_ledger_charge_invocation(&l, &p, 2048, 4.5);
    coord_ledger_charge_invocation(&l, &p, 2048, 4.4);
    coord_ledger_charge_ps(&l, &p, 1, 6.0);
    write_running_job(c, "job-0001", &l);

    struct coord_job *j = job_alloc(c, "job-0001");
    job_restore(c, j);
    ck_assert_int_eq(j->state, JOB_INTERRUPTED);
    ck_assert_int_eq(j->have_spec, 1); /* parsed as a live job's */
    ck_assert_str_eq(j->spec.model, "logreg:784-10");
    ck_assert(j->spec.budget_usd == 5);
    ck_assert_int_eq(j->step, 120);
    ck_assert(fabs(coord_ledger_total(&j->ledger) - coord_ledger_total(&l)) < 1e-12);
    ck_assert(j->ledger.gb_s > 17);
    json_t *o = coord_job_json(c, "job-0001");
    ck_assert(fabs(json_number_value(json_object_get(o, "cost_usd")) - coord_ledger_total(&l)) <
              1e-12);
    ck_assert(json_number_value(json_object_get(json_object_get(o, "ledger"), "gb_s")) > 17);
    ck_assert_str_eq(json_string_value(json_object_get(o, "state")), "interrupted");
    json_decref(o);
    /* The interrupted state was journaled with that ledger: a second restart agrees. */
    job_free(j);
    c->jobs = NULL;
    j = job_alloc(c, "job-0001");
    job_restore(c, j);
    ck_assert_int_eq(j->state, JOB_INTERRUPTED);
    ck_assert(fabs(coord_ledger_total(&j->ledger) - coord_ledger_total(&l)) < 1e-12);
    fake_coord_free(c);
}
END_TEST

START_TEST(spec_that_no_longer_parses)
{
    struct coord *c = fake_coord_new();
    char err[256];
    struct coord_journal *jr = coord_journal_open(c->data_dir, "job-0002", err, sizeof err);
    json_t *rec = json_pack("{s:s, s:{s:s, s:s, s:i, s:f, s:s, s:{s:s, s:s}}, s:f}", "id",
                            "job-0002", "spec", "model", "logreg:784-10", "dataset",
                            "/nonexistent/dir", "max_epochs", 7, "deadline_s", 60.0, "name",
                            "old", "ps", "addrs", "127.0.0.1:5", "token", "secret", "submitted",
                            smlt_now_unix());
    put(jr, "submitted", rec);
    put(jr, "state", succeeded());
    coord_journal_close(jr);
    struct coord_job *j = job_alloc(c, "job-0002");
    job_restore(c, j);
    ck_assert_int_eq(j->state, JOB_SUCCEEDED);
    ck_assert_int_eq(j->have_spec, 0);
    json_t *o = coord_job_json(c, "job-0002");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "max_epochs")), 7);
    ck_assert(json_number_value(json_object_get(o, "deadline_s")) == 60.0);
    ck_assert_str_eq(json_string_value(json_object_get(o, "name")), "old");
    /* Secrets stay masked. */
    json_t *ps = json_object_get(json_object_get(o, "spec"), "ps");
    ck_assert_str_eq(json_string_value(json_object_get(ps, "token")), "***");
    json_decref(o);
    fake_coord_free(c);
}
END_TEST

/* The shards record keeps each local shard's and backup's metrics address (for the job view
 * and Prometheus discovery after a restart): what job_journal_shards() writes, the replay
 * reads back. */
START_TEST(shard_metrics_addresses_replayed)
{
    struct coord *c = fake_coord_new();
    char err[256];
    struct coord_job *j = job_alloc(c, "job-0003");
    j->journal = coord_journal_open(c->data_dir, "job-0003", err, sizeof err);
    ck_assert_ptr_nonnull(j->journal);
    json_t *spec = json_loads(SPEC, 0, NULL);
    json_t *rec = json_pack("{s:s, s:o, s:f}", "id", "job-0003", "spec", spec, "submitted",
                            smlt_now_unix());
    put(j->journal, "submitted", rec);
    struct coord_shards *sh = &j->shards;
    sh->n = 2;
    sh->local = 1;
    sh->replicas = 2;
    snprintf(sh->addrs, sizeof sh->addrs, "127.0.0.1:7001,127.0.0.1:7002");
    snprintf(sh->token, sizeof sh->token, "tok");
    snprintf(sh->admin_token, sizeof sh->admin_token, "adm");
    snprintf(sh->maddr[0], sizeof sh->maddr[0], "127.0.0.1:9101");
    snprintf(sh->maddr[1], sizeof sh->maddr[1], "127.0.0.1:9102");
    snprintf(sh->baddr[1], sizeof sh->baddr[1], "127.0.0.1:7012");
    snprintf(sh->bmaddr[1], sizeof sh->bmaddr[1], "127.0.0.1:9112");
    sh->bpid[1] = 12345;
    job_journal_shards(j);
    put(j->journal, "state", succeeded());
    c->jobs = NULL;
    job_free(j);

    j = job_alloc(c, "job-0003");
    job_restore(c, j);
    ck_assert_int_eq(j->state, JOB_SUCCEEDED);
    ck_assert_str_eq(j->shards.maddr[0], "127.0.0.1:9101");
    ck_assert_str_eq(j->shards.maddr[1], "127.0.0.1:9102");
    ck_assert_str_eq(j->shards.bmaddr[0], "");
    ck_assert_str_eq(j->shards.bmaddr[1], "127.0.0.1:9112");
    json_t *o = coord_job_json(c, "job-0003");
    json_t *pm = json_object_get(o, "ps_metrics"), *bm = json_object_get(o, "ps_backup_metrics");
    ck_assert_str_eq(json_string_value(json_array_get(pm, 1)), "127.0.0.1:9102");
    ck_assert(json_is_null(json_array_get(bm, 0)));
    ck_assert_str_eq(json_string_value(json_array_get(bm, 1)), "127.0.0.1:9112");
    json_decref(o);
    /* An ended job is no Prometheus target. */
    o = coord_prometheus_targets(c);
    ck_assert_int_eq(json_array_size(o), 0);
    json_decref(o);
    fake_coord_free(c);
}
END_TEST

/* A torch job's size is learnt at its set-up, which a restart does not repeat: the params
 * record brings it back (the scheduler's model size and the job view's model_params). */
START_TEST(torch_job_size_replayed)
{
    struct coord *c = fake_coord_new();
    char err[256];
    struct coord_journal *jr = coord_journal_open(c->data_dir, "job-0004", err, sizeof err);
    ck_assert_ptr_nonnull(jr);
    json_t *spec = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i}", "model", "python:mlp.py",
                             "model_source", "def model():\n    pass\n", "dataset",
                             FAKE_DATASET, "epochs", 2, "workers", 1, "shards", 1);
    json_t *rec = json_pack("{s:s, s:o, s:f}", "id", "job-0004", "spec", spec, "submitted",
                            smlt_now_unix());
    put(jr, "submitted", rec);
    put(jr, "params", json_pack("{s:I}", "model_params", (json_int_t)50890));
    put(jr, "state", succeeded());
    coord_journal_close(jr);
    struct coord_job *j = job_alloc(c, "job-0004");
    job_restore(c, j);
    ck_assert_msg(j->state == JOB_SUCCEEDED, "state %d: %s", j->state, j->error);
    ck_assert_uint_eq(j->spec.model_params, 50890);
    json_t *o = coord_job_json(c, "job-0004");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "model_params")), 50890);
    json_decref(o);
    fake_coord_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("coord_restore");
    TCase *tc = tcase_create("replay");
    tcase_add_test(tc, interrupted_job_keeps_its_cost);
    tcase_add_test(tc, spec_that_no_longer_parses);
    tcase_add_test(tc, shard_metrics_addresses_replayed);
    tcase_add_test(tc, torch_job_size_replayed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
