/* test_coord_view.c: the coordinator's views (coordinator/coord_view.c) without daemons: an
 * epoch's time split adds up to its wall time (it covered a fraction of it once), the job
 * view's ledger adds up to its cost with invocations running, and /metrics names. */
#include <math.h>

#include <event2/buffer.h>

#include "coord_fake.h"

static const char *SPEC = "{\"model\": \"logreg:784-10\", \"dataset\": \"" FAKE_DATASET "\", "
                          "\"epochs\": 3, \"workers\": 2, \"shards\": 1, \"batch_size\": 32}";

static double split_sum(const json_t *e)
{
    return json_number_value(json_object_get(e, "compute_s")) +
           json_number_value(json_object_get(e, "comm_s")) +
           json_number_value(json_object_get(e, "wait_s")) +
           json_number_value(json_object_get(e, "other_s"));
}

static void check_parts(const json_t *e)
{
    static const char *keys[] = {"compute_s", "comm_s", "wait_s", "other_s"};
    for (size_t i = 0; i < 4; i++) {
        json_t *v = json_object_get(e, keys[i]);
        ck_assert_msg(json_is_number(v) && json_number_value(v) >= 0, "%s", keys[i]);
    }
}

/* Two ranks that reported 10 steps each since the epoch began 2 s ago: rank 0 50 ms compute
 * and 30 ms communication per step, rank 1 80 and 10. */
START_TEST(epoch_split_adds_up)
{
    struct coord *c = fake_coord_new();
    struct coord_job *j = fake_job(c, "job-0001", SPEC);
    double t = smlt_now_mono();
    job_epoch_mark(j, 0, t - 2.0);
    j->ranks[0].next_step = j->ranks[1].next_step = 10;
    j->ranks[0].cur = (struct rank_inv){.compute_s = 0.5, .comm_s = 0.3, .steps = 10};
    j->ranks[1].cur = (struct rank_inv){.compute_s = 0.8, .comm_s = 0.1, .steps = 10};
    json_t *e = job_measure(j, 10, t, "epoch_time_s");
    ck_assert_ptr_nonnull(e);
    check_parts(e);
    double dt = json_number_value(json_object_get(e, "epoch_time_s"));
    ck_assert(fabs(dt - 2.0) < 1e-9);
    ck_assert_msg(fabs(split_sum(e) - dt) < 1e-9, "split %.6f of %.6f", split_sum(e), dt);
    /* Per worker: mean compute 65 ms x 10 steps, the wait the slowest's 15 ms more per step,
     * the rest of communication (mean 20 ms) less the wait, the remainder named. */
    ck_assert(fabs(json_number_value(json_object_get(e, "compute_s")) - 0.65) < 1e-9);
    ck_assert(fabs(json_number_value(json_object_get(e, "wait_s")) - 0.15) < 1e-9);
    ck_assert(fabs(json_number_value(json_object_get(e, "comm_s")) - 0.05) < 1e-9);
    ck_assert(fabs(json_number_value(json_object_get(e, "other_s")) - 1.15) < 1e-9);
    json_t *ws = json_object_get(e, "worker_step_s");
    ck_assert(fabs(json_number_value(json_array_get(ws, 0)) - 0.08) < 1e-9);
    json_decref(e);
    fake_coord_free(c);
}
END_TEST

/* Reports that straddle the interval's ends: the rates over-cover a short epoch. The split is
 * scaled to it, nothing negative. */
START_TEST(epoch_split_scaled_when_rates_overshoot)
{
    struct coord *c = fake_coord_new();
    struct coord_job *j = fake_job(c, "job-0001", SPEC);
    double t = smlt_now_mono();
    job_epoch_mark(j, 0, t - 0.5);
    j->ranks[0].next_step = j->ranks[1].next_step = 20;
    j->ranks[0].cur = (struct rank_inv){.compute_s = 0.6, .comm_s = 0.4, .steps = 20};
    j->ranks[1].cur = (struct rank_inv){.compute_s = 0.6, .comm_s = 0.4, .steps = 20};
    json_t *e = job_measure(j, 20, t, "epoch_time_s");
    check_parts(e);
    double dt = json_number_value(json_object_get(e, "epoch_time_s"));
    ck_assert(fabs(split_sum(e) - dt) < 1e-9);
    ck_assert(json_number_value(json_object_get(e, "other_s")) == 0);
    json_decref(e);
    fake_coord_free(c);
}
END_TEST

/* No report in the interval yet (reports come about once a second; the demo's epochs take
 * 0.8 s): the current invocation's rates stand in, and the worker's step time is null. */
START_TEST(epoch_split_without_a_report)
{
    struct coord *c = fake_coord_new();
    struct coord_job *j = fake_job(c, "job-0001", SPEC);
    for (uint32_t k = 0; k < 2; k++) {
        j->ranks[k].next_step = 30;
        j->ranks[k].cur = (struct rank_inv){.compute_s = 0.3, .comm_s = 0.1, .steps = 30};
    }
    double t = smlt_now_mono();
    job_epoch_mark(j, 30, t - 0.8);
    json_t *e = job_measure(j, 40, t, "epoch_time_s");
    check_parts(e);
    ck_assert(fabs(json_number_value(json_object_get(e, "compute_s")) - 0.1) < 1e-9);
    ck_assert(fabs(split_sum(e) - 0.8) < 1e-6);
    ck_assert(json_is_null(json_array_get(json_object_get(e, "worker_step_s"), 0)));
    json_decref(e);
    fake_coord_free(c);
}
END_TEST

/* With an invocation running, cost_usd includes it up to now, and so do the ledger's parts. */
START_TEST(ledger_adds_up_to_cost)
{
    struct coord *c = fake_coord_new();
    struct coord_job *j = fake_job(c, "job-0001", SPEC);
    coord_ledger_charge_invocation(&j->ledger, &j->spec.prices, 1024, 2.0);
    j->ranks[0].cur.id = 7;
    j->ranks[0].cur.started = smlt_now_mono() - 1.5;
    j->ranks[0].cur.memory_mb = 2048;
    j->ps_charged_at = smlt_now_mono() - 3;
    json_t *o = coord_job_json(c, "job-0001");
    ck_assert_ptr_nonnull(o);
    json_t *l = json_object_get(o, "ledger");
    double cost = json_number_value(json_object_get(o, "cost_usd"));
    ck_assert(fabs(json_number_value(json_object_get(l, "total_usd")) - cost) < 1e-9);
    ck_assert(json_number_value(json_object_get(l, "gb_s")) > 2.0 + 2.0 * 1.5 - 0.01);
    ck_assert(json_number_value(json_object_get(l, "ps_node_s")) > 2.9);
    ck_assert_int_eq(json_integer_value(json_object_get(l, "invocations")), 2);
    /* Charged only as of now: the job's own ledger is unchanged. */
    ck_assert_int_eq(j->ledger.invocations, 1);
    ck_assert(json_integer_value(json_object_get(o, "max_epochs")) == 3);
    json_decref(o);
    fake_coord_free(c);
}
END_TEST

START_TEST(metrics_names)
{
    struct coord *c = fake_coord_new();
    fake_job(c, "job-0001", SPEC);
    c->rpc = coord_rpc_new(c->base, "127.0.0.1:0", &coord_rank_rpc, c, NULL, 0);
    ck_assert_ptr_nonnull(c->rpc);
    struct evbuffer *b = evbuffer_new();
    coord_metrics(c, b);
    size_t n = evbuffer_get_length(b);
    char *s = calloc(1, n + 1);
    evbuffer_remove(b, s, n);
    ck_assert_ptr_nonnull(strstr(s, "smlt_function_gigabyte_seconds_total "));
    ck_assert_ptr_null(strstr(s, "gb_seconds"));
    ck_assert_ptr_nonnull(strstr(s, "# TYPE smlt_admin_calls_total counter"));
    ck_assert_ptr_nonnull(strstr(s, "smlt_jobs{state=\"running\"} 1"));
    free(s);
    evbuffer_free(b);
    coord_rpc_free(c->rpc);
    fake_coord_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("coord_view");
    TCase *tc = tcase_create("views");
    tcase_add_test(tc, epoch_split_adds_up);
    tcase_add_test(tc, epoch_split_scaled_when_rates_overshoot);
    tcase_add_test(tc, epoch_split_without_a_report);
    tcase_add_test(tc, ledger_adds_up_to_cost);
    tcase_add_test(tc, metrics_names);
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
