/* test_ps_metrics.c: Check suite for ps/ps_metrics.c: the shard's Prometheus text from a
 * snapshot (values, histogram bucketing, and the format rules promtool checks: a HELP and a
 * TYPE before each family, once; counters end in _total; the smlt_ps_ prefix). The text of a
 * real shard goes through promtool in tests/integration/test_coord_async.c. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "ps_metrics.h"

static char *render(const struct ps_metrics *m)
{
    struct evbuffer *b = evbuffer_new();
    ps_metrics_render(b, m);
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    evbuffer_copyout(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

/* The value of the sample line that starts with `series ` ("name" or "name{labels}"). */
static double sample(const char *text, const char *series)
{
    char pat[256];
    snprintf(pat, sizeof pat, "\n%s ", series);
    const char *p = strstr(text, pat);
    ck_assert_msg(p != NULL, "no sample %s", series);
    return strtod(p + strlen(pat), NULL);
}

static struct ps_metrics filled(void)
{
    struct ps_metrics m = {.shard = 3, .configured = 1, .conns_open = 5, .conns_accepted = 9,
                           .bytes_in = 123456789012ull, .bytes_out = 42,
                           .pushes_counted = 1000, .pushes_duplicate = 2, .pushes_rejected = 7,
                           .pulls_served = 1001, .updates_applied = 500, .version = 500,
                           .reshard_exports = 1, .reshard_imports = 2, .reshard_retires = 3,
                           .ckpt_written = 4, .ckpt_skipped = 1, .ckpt_last_step = 400,
                           .ckpt_write_seconds = 0.75, .backup_forwarded = 11,
                           .backup_acks = 10, .backup_lost = 1, .http_bad = 6};
    return m;
}

START_TEST(values_are_rendered)
{
    struct ps_metrics m = filled();
    char *s = render(&m);
    ck_assert_double_eq(sample(s, "smlt_ps_shard_id"), 3);
    ck_assert_double_eq(sample(s, "smlt_ps_connections_open"), 5);
    ck_assert_double_eq(sample(s, "smlt_ps_connections_accepted_total"), 9);
    /* Large counters print in full, not rounded to 6 digits. */
    ck_assert_ptr_nonnull(strstr(s, "\nsmlt_ps_received_bytes_total 123456789012\n"));
    ck_assert_double_eq(sample(s, "smlt_ps_sent_bytes_total"), 42);
    ck_assert_double_eq(sample(s, "smlt_ps_pushes_total"), 1000);
    ck_assert_double_eq(sample(s, "smlt_ps_pushes_duplicate_total"), 2);
    ck_assert_double_eq(sample(s, "smlt_ps_pushes_rejected_total"), 7);
    ck_assert_double_eq(sample(s, "smlt_ps_pulls_total"), 1001);
    ck_assert_double_eq(sample(s, "smlt_ps_updates_total"), 500);
    ck_assert_double_eq(sample(s, "smlt_ps_version"), 500);
    ck_assert_double_eq(sample(s, "smlt_ps_reshard_exports_total"), 1);
    ck_assert_double_eq(sample(s, "smlt_ps_reshard_imports_total"), 2);
    ck_assert_double_eq(sample(s, "smlt_ps_reshard_retires_total"), 3);
    ck_assert_double_eq(sample(s, "smlt_ps_checkpoints_written_total"), 4);
    ck_assert_double_eq(sample(s, "smlt_ps_checkpoints_skipped_total"), 1);
    ck_assert_double_eq(sample(s, "smlt_ps_checkpoint_last_step"), 400);
    ck_assert_double_eq(sample(s, "smlt_ps_checkpoint_write_seconds_total"), 0.75);
    ck_assert_double_eq(sample(s, "smlt_ps_backup_forwarded_total"), 11);
    ck_assert_double_eq(sample(s, "smlt_ps_backup_acked_total"), 10);
    ck_assert_double_eq(sample(s, "smlt_ps_backup_lost_total"), 1);
    ck_assert_double_eq(sample(s, "smlt_ps_http_bad_requests_total"), 6);
    free(s);
}
END_TEST

START_TEST(histograms_bucket_apply_and_wait)
{
    struct ps_metrics m = filled();
    smlt_hist_observe(&m.apply, 0.00003);  /* (25 us, 50 us] */
    smlt_hist_observe(&m.apply, 0.00004);
    smlt_hist_observe(&m.apply, 0.002);    /* (1 ms, 2.5 ms] */
    smlt_hist_observe(&m.bsp_wait, 0);     /* a barrier already passed */
    smlt_hist_observe(&m.bsp_wait, 0.3);   /* (0.25, 0.5] */
    char *s = render(&m);
    ck_assert_double_eq(sample(s, "smlt_ps_apply_seconds_bucket{le=\"2.5e-05\"}"), 0);
    ck_assert_double_eq(sample(s, "smlt_ps_apply_seconds_bucket{le=\"5e-05\"}"), 2);
    ck_assert_double_eq(sample(s, "smlt_ps_apply_seconds_bucket{le=\"0.001\"}"), 2);
    ck_assert_double_eq(sample(s, "smlt_ps_apply_seconds_bucket{le=\"0.0025\"}"), 3);
    ck_assert_double_eq(sample(s, "smlt_ps_apply_seconds_bucket{le=\"+Inf\"}"), 3);
    ck_assert_double_eq(sample(s, "smlt_ps_apply_seconds_count"), 3);
    ck_assert_double_eq_tol(sample(s, "smlt_ps_apply_seconds_sum"), 0.00207, 1e-9);
    ck_assert_double_eq(sample(s, "smlt_ps_bsp_wait_seconds_bucket{le=\"1e-05\"}"), 1);
    ck_assert_double_eq(sample(s, "smlt_ps_bsp_wait_seconds_bucket{le=\"0.25\"}"), 1);
    ck_assert_double_eq(sample(s, "smlt_ps_bsp_wait_seconds_bucket{le=\"0.5\"}"), 2);
    ck_assert_double_eq(sample(s, "smlt_ps_bsp_wait_seconds_count"), 2);
    ck_assert_ptr_nonnull(strstr(s, "# TYPE smlt_ps_apply_seconds histogram\n"));
    ck_assert_ptr_nonnull(strstr(s, "# TYPE smlt_ps_bsp_wait_seconds histogram\n"));
    free(s);
}
END_TEST

/* 1 when a sample named `name` belongs to family fam of type type. */
static int in_family(const char *name, const char *fam, const char *type)
{
    if (!strcmp(name, fam))
        return strcmp(type, "histogram") != 0;
    size_t f = strlen(fam);
    if (strcmp(type, "histogram") || strncmp(name, fam, f))
        return 0;
    return !strcmp(name + f, "_bucket") || !strcmp(name + f, "_sum") || !strcmp(name + f, "_count");
}

START_TEST(format_rules_hold)
{
    struct ps_metrics m = filled();
    smlt_hist_observe(&m.apply, 0.001);
    char *s = render(&m);
    char seen[8192] = "\n", cur[256] = "", type[32] = "";
    int samples = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        ck_assert_msg(!strncmp(line, "smlt_ps_", 8) || !strncmp(line, "# HELP smlt_ps_", 15) ||
                          !strncmp(line, "# TYPE smlt_ps_", 15),
                      "unprefixed line: %s", line);
        if (!strncmp(line, "# HELP ", 7)) {
            snprintf(cur, sizeof cur, "%.*s", (int)strcspn(line + 7, " "), line + 7);
            char key[300];
            snprintf(key, sizeof key, "\n%s\n", cur);
            ck_assert_msg(!strstr(seen, key), "family %s twice", cur);
            strncat(seen, key + 1, sizeof seen - strlen(seen) - 1);
            type[0] = '\0';
            continue;
        }
        if (!strncmp(line, "# TYPE ", 7)) {
            char name[256];
            ck_assert_int_eq(sscanf(line + 7, "%255s %31s", name, type), 2);
            ck_assert_str_eq(name, cur); /* TYPE right after its HELP */
            size_t n = strlen(name);
            if (!strcmp(type, "counter"))
                ck_assert_msg(n > 6 && !strcmp(name + n - 6, "_total"),
                              "counter %s does not end in _total", name);
            else
                ck_assert_msg(!strcmp(type, "gauge") || !strcmp(type, "histogram"), "%s", type);
            continue;
        }
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(line, "{ "), line);
        ck_assert_msg(type[0] && in_family(name, cur, type), "sample %s outside family %s (%s)",
                      line, cur, type);
        samples++;
    }
    ck_assert_int_gt(samples, 40);
    free(s);
}
END_TEST

static Suite *ps_metrics_suite(void)
{
    Suite *s = suite_create("ps_metrics");
    TCase *tc = tcase_create("render");
    tcase_add_test(tc, values_are_rendered);
    tcase_add_test(tc, histograms_bucket_apply_and_wait);
    tcase_add_test(tc, format_rules_hold);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ps_metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
