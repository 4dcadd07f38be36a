/* test_coord_phase.c: phases (coordinator/coord_phase.c) without daemons. The job's shards
 * are an address where nothing listens, so every admin call fails at once: the boundary
 * starts only when every active rank is parked, a barrier that cannot be lifted keeps the
 * ranks parked (on_tick() tries again) instead of invoking them into a refusal, a barrier
 * that cannot be set is called off, and a stop at one step clears its flag when it fails. */
#include "coord_fake.h"

static const char *SPEC = "{\"model\": \"logreg:784-10\", \"dataset\": \"" FAKE_DATASET "\", "
                          "\"epochs\": 3, \"workers\": 2, \"shards\": 1}";

START_TEST(boundary_waits_for_every_rank)
{
    struct coord *c = fake_coord_new();
    struct coord_job *j = fake_job(c, "job-0001", SPEC);
    j->spe = 10;
    j->barrier_pending = 1;
    j->barrier_step = 10;
    j->ranks[0].next_step = 10;
    j->ranks[0].at_boundary = 1;
    job_boundary(j);
    ck_assert_int_eq(j->bd.stage, BD_IDLE);
    struct coord_admin_stats st;
    job_admin_stats(j, &st);
    ck_assert_int_eq(st.calls, 0);
    fake_coord_free(c);
}
END_TEST

START_TEST(barrier_not_lifted_keeps_ranks_parked)
{
    struct coord *c = fake_coord_new();
    struct coord_job *j = fake_job(c, "job-0001", SPEC);
    j->spe = 10;
    j->barrier_pending = 1;
    j->barrier_step = 10;
    for (uint32_t k = 0; k < 2; k++) {
        j->ranks[k].next_step = 10;
        j->ranks[k].at_boundary = 1;
    }
    job_boundary(j);
    ck_assert_int_eq(j->bd.stage, BD_LIFT); /* waiting for the shards, the loop free */
    job_boundary(j);                        /* a second park meanwhile starts nothing */
    struct coord_admin_stats st;
    job_admin_stats(j, &st);
    ck_assert_int_eq(st.calls, 1);
    fake_settle(c, j);
    ck_assert_int_eq(j->bd.stage, BD_IDLE);
    ck_assert_int_eq(j->barrier_pending, 1);
    for (uint32_t k = 0; k < 2; k++) {
        ck_assert_int_eq(j->ranks[k].at_boundary, 1);
        ck_assert(j->ranks[k].cur.id == 0); /* not invoked into a refusal */
    }
    job_admin_stats(j, &st);
    ck_assert_int_eq(st.failed, 1);
    fake_coord_free(c);
}
END_TEST

START_TEST(barrier_that_fails_is_called_off)
{
    struct coord *c = fake_coord_new();
    struct coord_job *j = fake_job(c, "job-0001", SPEC);
    j->spe = 10;
    j->parks = 0;
    job_request_barrier(j, "a test");
    ck_assert_int_eq(j->barrier_setting, 1);
    job_request_barrier(j, "a test"); /* one at a time */
    fake_settle(c, j);
    ck_assert_int_eq(j->barrier_setting, 0);
    ck_assert_int_eq(j->barrier_pending, 0);
    /* The freeze failed; the call-off failed too: it stays pending for on_tick(). */
    ck_assert_int_eq(j->unfreeze_pending, 1);
    struct coord_admin_stats st;
    job_admin_stats(j, &st);
    ck_assert_int_eq(st.calls, 2);
    /* A parking job never asks for one. */
    j->parks = 1;
    job_request_barrier(j, "a test");
    ck_assert_int_eq(j->barrier_setting, 0);
    fake_coord_free(c);
}
END_TEST

START_TEST(halt_clears_when_it_fails)
{
    struct coord *c = fake_coord_new();
    struct coord_job *j = fake_job(c, "job-0001", SPEC);
    job_halt_workers(j);
    ck_assert_int_eq(j->halting, 1);
    job_halt_workers(j);
    fake_settle(c, j);
    ck_assert_int_eq(j->halting, 0);
    struct coord_admin_stats st;
    job_admin_stats(j, &st);
    ck_assert_int_eq(st.calls, 1);
    fake_coord_free(c);
}
END_TEST

START_TEST(epoch_mark_starts_the_figures)
{
    struct coord *c = fake_coord_new();
    struct coord_job *j = fake_job(c, "job-0001", SPEC);
    j->ranks[0].tot.compute_s = 1.0;
    j->ranks[0].cur.compute_s = 0.5;
    j->ranks[1].tot.comm_s = 0.25;
    j->ranks[0].next_step = 40;
    job_epoch_mark(j, 40, 123.0);
    ck_assert(j->ranks[0].ep.compute_s == 1.5);
    ck_assert_int_eq(j->ranks[0].ep.step, 40);
    ck_assert(j->compute_at_epoch == 1.5 && j->comm_at_epoch == 0.25);
    ck_assert(j->epoch_started == 123.0 && j->epoch_step0 == 40);
    fake_coord_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("coord_phase");
    TCase *tc = tcase_create("phases");
    tcase_add_test(tc, boundary_waits_for_every_rank);
    tcase_add_test(tc, barrier_not_lifted_keeps_ranks_parked);
    tcase_add_test(tc, barrier_that_fails_is_called_off);
    tcase_add_test(tc, halt_clears_when_it_fails);
    tcase_add_test(tc, epoch_mark_starts_the_figures);
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
