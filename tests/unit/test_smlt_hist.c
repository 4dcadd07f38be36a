/* test_smlt_hist.c: Check suite for proto/smlt_hist.c (bucketing, observing, and the
 * Prometheus text it writes). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "smlt_hist.h"

/* The evbuffer's text as a NUL-terminated string (malloc'd). */
static char *text_of(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    evbuffer_copyout(b, s, n);
    s[n] = '\0';
    return s;
}

START_TEST(bounds_ascend)
{
    for (uint32_t i = 1; i < SMLT_HIST_NLE; i++)
        ck_assert(smlt_hist_le[i] > smlt_hist_le[i - 1]);
    ck_assert(smlt_hist_le[0] <= 0.000001);
    ck_assert(smlt_hist_le[SMLT_HIST_NLE - 1] >= 60);
}
END_TEST

START_TEST(bucket_edges_are_inclusive)
{
    /* le is "less than or equal": a value on a bound belongs to that bound's bucket. */
    for (uint32_t i = 0; i < SMLT_HIST_NLE; i++) {
        ck_assert_uint_eq(smlt_hist_bucket(smlt_hist_le[i]), i);
        ck_assert_uint_eq(smlt_hist_bucket(nextafter(smlt_hist_le[i], 1e9)), i + 1);
    }
    ck_assert_uint_eq(smlt_hist_bucket(0), 0);
    ck_assert_uint_eq(smlt_hist_bucket(-3), 0);
    ck_assert_uint_eq(smlt_hist_bucket(NAN), 0);
    ck_assert_uint_eq(smlt_hist_bucket(1e6), SMLT_HIST_NLE);
    ck_assert_uint_eq(smlt_hist_bucket(INFINITY), SMLT_HIST_NLE);
    ck_assert_uint_eq(smlt_hist_bucket(0.003), 11); /* (0.0025, 0.005] */
}
END_TEST

START_TEST(observe_counts_and_sums)
{
    struct smlt_hist h = {0};
    smlt_hist_observe(&h, 0.003);
    smlt_hist_observe(&h, 0.004);
    smlt_hist_observe(&h, 2.0);
    smlt_hist_observe(&h, -1); /* a clock that stepped back counts as 0 */
    smlt_hist_observe_n(&h, 0.02, 10);
    ck_assert_uint_eq(h.count, 14);
    ck_assert_uint_eq(h.counts[smlt_hist_bucket(0.003)], 2);
    ck_assert_uint_eq(h.counts[11], 2);
    ck_assert_uint_eq(h.counts[19], 1); /* (1, 2.5] */
    ck_assert_uint_eq(h.counts[0], 1);
    ck_assert_uint_eq(h.counts[13], 10); /* (0.01, 0.025] */
    ck_assert_double_eq_tol(h.sum, 0.003 + 0.004 + 2.0 + 0.2, 1e-12);
    smlt_hist_observe(&h, INFINITY);
    ck_assert_uint_eq(h.counts[SMLT_HIST_NLE], 1);
    ck_assert(isfinite(h.sum));
    uint64_t total = 0;
    for (uint32_t i = 0; i <= SMLT_HIST_NLE; i++)
        total += h.counts[i];
    ck_assert_uint_eq(total, h.count);
}
END_TEST

START_TEST(write_is_cumulative_with_labels)
{
    struct smlt_hist h = {0};
    smlt_hist_observe(&h, 0.003);
    smlt_hist_observe(&h, 0.004);
    smlt_hist_observe(&h, 30);
    struct evbuffer *b = evbuffer_new();
    smlt_hist_head(b, "smlt_x_seconds", "histogram", "Test.");
    smlt_hist_write(b, "smlt_x_seconds", "start=\"cold\"", &h);
    char *s = text_of(b);
    ck_assert_ptr_eq(strstr(s, "# HELP smlt_x_seconds Test.\n# TYPE smlt_x_seconds histogram\n"),
                     s);
    ck_assert_ptr_nonnull(strstr(s, "smlt_x_seconds_bucket{start=\"cold\",le=\"0.0025\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(s, "smlt_x_seconds_bucket{start=\"cold\",le=\"0.005\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(s, "smlt_x_seconds_bucket{start=\"cold\",le=\"25\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(s, "smlt_x_seconds_bucket{start=\"cold\",le=\"60\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(s, "smlt_x_seconds_bucket{start=\"cold\",le=\"+Inf\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(s, "smlt_x_seconds_sum{start=\"cold\"} 30.007\n"));
    ck_assert_ptr_nonnull(strstr(s, "smlt_x_seconds_count{start=\"cold\"} 3\n"));
    /* One line per bound, +Inf, sum and count, after the two header lines. */
    int lines = 0;
    for (const char *p = s; *p; p++)
        lines += *p == '\n';
    ck_assert_int_eq(lines, 2 + SMLT_HIST_NLE + 3);
    free(s);
    evbuffer_free(b);
}
END_TEST

START_TEST(sample_values)
{
    struct evbuffer *b = evbuffer_new();
    smlt_hist_sample(b, "a_total", NULL, 123456789012345.0);
    smlt_hist_sample(b, "b", "job_id=\"job-0001\"", 0.8656);
    smlt_hist_sample(b, "c", NULL, 0.1 + 0.2);
    smlt_hist_sample(b, "d", "", NAN);
    smlt_hist_sample(b, "e", NULL, -INFINITY);
    smlt_hist_sample(b, "f", NULL, 1e300);
    char *s = text_of(b);
    ck_assert_str_eq(s, "a_total 123456789012345\nb{job_id=\"job-0001\"} 0.8656\nc 0.3\n"
                        "d NaN\ne -Inf\nf 1e+300\n");
    free(s);
    evbuffer_free(b);
}
END_TEST

START_TEST(write_without_labels)
{
    struct smlt_hist h = {0};
    struct evbuffer *b = evbuffer_new();
    smlt_hist_write(b, "smlt_y_seconds", NULL, &h);
    char *s = text_of(b);
    ck_assert_ptr_nonnull(strstr(s, "smlt_y_seconds_bucket{le=\"1e-06\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(s, "smlt_y_seconds_bucket{le=\"1e-05\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(s, "smlt_y_seconds_bucket{le=\"+Inf\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(s, "\nsmlt_y_seconds_sum 0\nsmlt_y_seconds_count 0\n"));
    free(s);
    evbuffer_free(b);
}
END_TEST

static Suite *smlt_hist_suite(void)
{
    Suite *s = suite_create("smlt_hist");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, bounds_ascend);
    tcase_add_test(tc, bucket_edges_are_inclusive);
    tcase_add_test(tc, observe_counts_and_sums);
    tcase_add_test(tc, write_is_cumulative_with_labels);
    tcase_add_test(tc, sample_values);
    tcase_add_test(tc, write_without_labels);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(smlt_hist_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
