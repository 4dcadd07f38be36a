/* test_dataset_options.c: a CSV job's dataset_options end to end, through smlt-coordinator, its
 * local function runtime, smlt-ps and smlt-worker (the defect of issue 10 item 4: a CSV whose
 * label is in the last column trained a one-class problem and reported 100% accuracy).
 *
 * The files: three classes, four features, the label last, a header line, as scikit-learn and
 * the UCI repository lay them out. The first feature is a constant 1, an integer, so a worker
 * that reads the label from column 0 sees one class. The second feature is in the thousands,
 * the others near 1: the job scales them ("standard").
 *   - label_column "last", header true, scale "standard": the job succeeds above 90%;
 *   - the same files without dataset_options: the job fails, and its error names the column
 *     and the one class;
 *   - a model with 2 outputs on labels 0..2: the job fails, and its error says how many
 *     outputs the labels need.
 * The first case needs the coordinator to pass the spec's dataset_options in the Assignment
 * (coord_job.c rpc_hello); the other two hold either way. Everything started is stopped by its
 * pid. */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "coord_test.h"

static char root[256];
static char data_dir[300];
static char train_last[400], test_last[400], train_first[400];
static struct test_daemon coord;

/* Deterministic noise in [-0.5, 0.5). */
static double noise(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 - 0.5;
}

/* Writes n rows of the three-class data to path, the label last (with a header line) or
 * first (without one). */
static void write_csv(const char *path, int n, uint64_t seed, int label_last)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    if (label_last)
        fputs("bias,width,ratio,depth,label\n", f);
    for (int i = 0; i < n; i++) {
        int c = i % 3;
        double a = 1000.0 * c + 200.0 * noise(&seed), b = 0.5 * c + 0.2 * noise(&seed),
               d = 2.0 * noise(&seed);
        if (label_last)
            fprintf(f, "1,%.3f,%.4f,%.4f,%d\n", a, b, d, c);
        else
            fprintf(f, "%d,%.4f,%.4f,%.4f,%.4f\n", c, a / 1000.0, b, d, 1.0);
    }
    fclose(f);
}

static void setup(void)
{
    signal(SIGTERM, SIG_DFL);
    snprintf(data_dir, sizeof data_dir, "%s/data.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    snprintf(train_last, sizeof train_last, "%s/train.csv", data_dir);
    snprintf(test_last, sizeof test_last, "%s/test.csv", data_dir);
    snprintf(train_first, sizeof train_first, "%s/first.csv", data_dir);
    write_csv(train_last, 600, 1, 1);
    write_csv(test_last, 150, 2, 1);
    write_csv(train_first, 300, 3, 0);
    ck_assert_int_eq(ct_coord_start(&coord, data_dir, NULL), 0);
}

static void teardown(void)
{
    test_daemon_stop(&coord);
    ct_rm_rf(data_dir);
}

/* Submits spec and waits for the job to end; returns the job (a new reference). */
static json_t *run_job(const char *spec)
{
    char err[512] = "";
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit refused: %s\n%s", err, spec);
    json_t *j = ct_wait_job(coord.port, id, 240);
    free(id);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(ct_job_over(ct_str(j, "state")), "the job has not ended: %s",
                  ct_str(j, "state"));
    return j;
}

/* Fails with the job and the coordinator's log when the job is not in state want. */
static void expect_state(json_t *j, const char *want)
{
    if (strcmp(ct_str(j, "state"), want)) {
        char *s = json_dumps(j, JSON_INDENT(1));
        fprintf(stderr, "job: %s\n", s ? s : "?");
        free(s);
        test_daemon_dump_log(&coord);
    }
    ck_assert_str_eq(ct_str(j, "state"), want);
}

#define JOB_FMT                                                                                 \
    "{\"model\": \"%s\", \"dataset\": \"csv:%s%s%s\", \"epochs\": %d, \"workers\": 1, "        \
    "\"shards\": 1, \"batch_size\": 16, \"optimizer\": {\"kind\": \"sgd\", \"lr\": 0.1}%s}"

/* Needs coord_job.c's rpc_hello to fill the Assignment's label_column, header and scale. */
START_TEST(label_last_column_trains)
{
    char spec[2048];
    snprintf(spec, sizeof spec, JOB_FMT, "logreg:4-3", train_last, ",", test_last, 8,
             ", \"dataset_options\": {\"label_column\": \"last\", \"header\": true, "
             "\"scale\": \"standard\"}");
    json_t *j = run_job(spec);
    expect_state(j, "succeeded");
    double acc = ct_num(j, "test_accuracy");
    ck_assert_msg(acc >= 0.9, "test accuracy %.4f < 0.9", acc);
    const json_t *d = json_object_get(json_object_get(j, "spec"), "dataset_options");
    ck_assert_str_eq(ct_str(d, "label_column"), "last");
    ck_assert(json_is_true(json_object_get(d, "header")));
    ck_assert_str_eq(ct_str(d, "scale"), "standard");
    json_decref(j);
}
END_TEST

START_TEST(one_class_and_small_model_refused)
{
    /* The label read from column 0, where every row holds 1. */
    char spec[2048];
    snprintf(spec, sizeof spec, JOB_FMT, "logreg:4-3", train_last, ",", test_last, 2, "");
    json_t *j = run_job(spec);
    expect_state(j, "failed");
    const char *e = ct_str(j, "error");
    ck_assert_msg(strstr(e, "every label (label_column 0 of columns 0..4) is 1") &&
                  strstr(e, "at least two classes"), "error: %s", e);
    json_decref(j);
    /* Labels 0..2 (in column 0, the default) and a model with 2 outputs. */
    snprintf(spec, sizeof spec, JOB_FMT, "logreg:4-2", train_first, "", "", 2, "");
    j = run_job(spec);
    expect_state(j, "failed");
    e = ct_str(j, "error");
    ck_assert_msg(strstr(e, "model logreg:4-2 has 2 outputs (classes 0..1), but the dataset's "
                            "labels run up to 2: the model needs at least 3 outputs"),
                  "error: %s", e);
    json_decref(j);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("dataset_options");
    TCase *tc = tcase_create("jobs");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, one_class_and_small_model_refused);
    tcase_add_test(tc, label_last_column_trains);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ct_main("dsopt", suite(), root, sizeof root, NULL, 0, 0, 0);
}
