/* test_worker_resp.c: the invocation response line (worker/worker_resp.c), the one parser the
 * worker bootstrap and the coordinator share: every status round-trips, fields absent read 0,
 * and what is not a response (not JSON, not an object, no or an unknown status) is refused
 * without touching more than the struct. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smlt.pb-c.h"
#include "smlt_error.h"
#include "worker_resp.h"

START_TEST(round_trip)
{
    static const int st[] = {SMLT__DONE_STATUS__DONE_FINISHED, SMLT__DONE_STATUS__DONE_SLICE,
                             SMLT__DONE_STATUS__DONE_TIME_UP, SMLT__DONE_STATUS__DONE_FAILED};
    for (size_t i = 0; i < 4; i++) {
        struct worker_resp r = {.invocation = "job-0001/1/7", .status = st[i], .next_step = 1234,
                                .steps = 40, .samples = 1280, .loss = 0.25, .elapsed_s = 1.5,
                                .init_s = 0.125, .cold = 1};
        snprintf(r.error, sizeof r.error, "%s", i == 3 ? "out of memory" : "");
        char *line = worker_resp_format(&r);
        ck_assert_ptr_nonnull(line);
        ck_assert_ptr_null(strchr(line, '\n'));
        struct worker_resp b;
        ck_assert_int_eq(worker_resp_parse(line, &b), 0);
        ck_assert_int_eq(b.status, st[i]);
        ck_assert_str_eq(b.invocation, "job-0001/1/7");
        ck_assert(b.next_step == 1234 && b.steps == 40 && b.samples == 1280);
        ck_assert(b.loss == 0.25 && b.elapsed_s == 1.5 && b.init_s == 0.125 && b.cold == 1);
        ck_assert_str_eq(b.error, r.error);
        free(line);
    }
}
END_TEST

START_TEST(refused)
{
    static const char *bad[] = {"", "not json", "[1,2]", "{}", "{\"status\":\"done\"}",
                                "{\"status\":7}", "{\"status\":\"slice\"", NULL};
    struct worker_resp r;
    for (size_t i = 0; bad[i]; i++)
        ck_assert_msg(worker_resp_parse(bad[i], &r) == SMLT_EPROTO, "%s", bad[i]);
    ck_assert_int_eq(worker_resp_parse(NULL, &r), SMLT_EPROTO);
}
END_TEST

START_TEST(partial_and_hostile)
{
    struct worker_resp r;
    ck_assert_int_eq(worker_resp_parse("{\"status\":\"slice\"}", &r), 0);
    ck_assert(r.next_step == 0 && r.steps == 0 && r.error[0] == '\0');
    /* negative or wrong-typed numbers read as 0; a long error is cut, not overrun */
    char line[2048];
    char big[1200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    snprintf(line, sizeof line, "{\"status\":\"failed\",\"next_step\":-5,\"steps\":\"9\",\"error\":\"%s\"}",
             big);
    ck_assert_int_eq(worker_resp_parse(line, &r), 0);
    ck_assert(r.next_step == 0 && r.steps == 0);
    ck_assert_uint_eq(strlen(r.error), WORKER_RESP_ERR_MAX - 1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("worker_resp");
    TCase *tc = tcase_create("line");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, refused);
    tcase_add_test(tc, partial_and_hostile);
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
