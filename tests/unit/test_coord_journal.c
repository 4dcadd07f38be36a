/* test_coord_journal.c: Check suite for coordinator/coord_journal.c (layout and modes, append and
 * replay, job ids, a line cut by a crash, corrupt and overlong lines, early stop, listing, and
 * appends from several processes at once). */
#include <check.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coord_journal.h"
#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_util.h"

static char data_dir[256];

static void setup(void)
{
    snprintf(data_dir, sizeof data_dir, "/tmp/test_coord_journal.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    smlt_log_init("test_coord_journal", SMLT_LOG_ERROR); /* the skip warnings are expected */
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static struct coord_journal *open_ok(const char *id)
{
    char err[256] = "";
    struct coord_journal *j = coord_journal_open(data_dir, id, err, sizeof err);
    ck_assert_msg(j != NULL, "open %s: %s", id, err);
    return j;
}

static void journal_path(const char *id, char *out, size_t n)
{
    snprintf(out, n, "%s/jobs/%s/journal.jsonl", data_dir, id);
}

/* Appends raw bytes to a job's journal file, as a crash or a disk error would leave them. */
static void append_raw(const char *id, const char *bytes, size_t len)
{
    char path[512];
    journal_path(id, path, sizeof path);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, bytes, len), (ssize_t)len);
    close(fd);
}

/* Collects what replay hands over. */
struct seen {
    int n;
    int stop_at; /* return 7 after this many records; 0: never */
    char types[1024][16];
    int64_t t[1024];
    int64_t seq[1024];
};

static int collect(const char *type, json_t *rec, void *arg)
{
    struct seen *s = arg;
    ck_assert_str_eq(type, json_string_value(json_object_get(rec, "type")));
    if (s->n < 1024) {
        snprintf(s->types[s->n], sizeof s->types[0], "%s", type);
        s->t[s->n] = json_integer_value(json_object_get(rec, "t"));
        json_t *seq = json_object_get(rec, "seq");
        s->seq[s->n] = seq ? json_integer_value(seq) : -1;
    }
    s->n++;
    return s->stop_at && s->n == s->stop_at ? 7 : 0;
}

static void append_seq(struct coord_journal *j, const char *type, int64_t seq, int durable)
{
    json_t *f = json_pack("{s:I}", "seq", (json_int_t)seq);
    ck_assert_int_eq(coord_journal_append(j, type, f, durable), 0);
    json_decref(f);
}

START_TEST(layout_and_modes)
{
    struct coord_journal *j = open_ok("job-1");
    char want[512];
    snprintf(want, sizeof want, "%s/jobs/job-1", data_dir);
    ck_assert_str_eq(coord_journal_dir(j), want);
    struct stat st;
    ck_assert_int_eq(stat(want, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(st.st_mode & 0777, 0700);
    journal_path("job-1", want, sizeof want);
    ck_assert_int_eq(stat(want, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(st.st_size, 0);
    coord_journal_close(j);
    coord_journal_close(NULL);

    /* A data directory that does not exist yet is created, parents too. */
    char deep[400];
    snprintf(deep, sizeof deep, "%s/a/b/c", data_dir);
    char err[256];
    j = coord_journal_open(deep, "x", err, sizeof err);
    ck_assert_msg(j != NULL, "%s", err);
    coord_journal_close(j);

    /* A data directory that is a file is refused with the failing call. */
    snprintf(deep, sizeof deep, "%s/file", data_dir);
    FILE *f = fopen(deep, "w");
    fclose(f);
    ck_assert_ptr_null(coord_journal_open(deep, "x", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "mkdir"));
    ck_assert_ptr_null(coord_journal_open("", "x", err, sizeof err));
    ck_assert_ptr_null(coord_journal_open(NULL, "x", NULL, 0));
}
END_TEST

START_TEST(job_ids)
{
    static const char *const good[] = {"a", "job-1", "a.b_c-D9", ".hidden", "x.",
                                       "0123456789012345678901234567890123456789012345678901234567890123"};
    static const char *const bad[] = {"", ".", "..", "../x", "a/b", "a..b", "a b", "a\n", "caf\xc3\xa9",
                                      "x/..", "/abs",
                                      "01234567890123456789012345678901234567890123456789012345678901234"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ck_assert_msg(coord_journal_id_valid(good[i]), "%s refused", good[i]);
        coord_journal_close(open_ok(good[i]));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        ck_assert_msg(!coord_journal_id_valid(bad[i]), "%s accepted", bad[i]);
        ck_assert_ptr_null(coord_journal_open(data_dir, bad[i], err, sizeof err));
        ck_assert_ptr_nonnull(strstr(err, "bad job id"));
        ck_assert_int_eq(coord_journal_replay(data_dir, bad[i], collect, NULL), SMLT_EINVAL);
    }
    ck_assert(!coord_journal_id_valid(NULL));
    /* Nothing was created outside DATA_DIR/jobs. */
    struct stat st;
    char path[400];
    snprintf(path, sizeof path, "%s/x", data_dir);
    ck_assert_int_ne(stat(path, &st), 0);
}
END_TEST

START_TEST(append_and_replay)
{
    int64_t before = (int64_t)(smlt_now_unix() * 1e3);
    struct coord_journal *j = open_ok("j1");
    json_t *spec = json_pack("{s:s, s:i, s:s}", "model", "lenet5", "epochs", 3, "note",
                             "two\nlines");
    ck_assert_int_eq(coord_journal_append(j, "submit", spec, 1), 0);
    json_t *state = json_pack("{s:s}", "state", "running");
    ck_assert_int_eq(coord_journal_append(j, "state", state, 0), 0);
    json_decref(state);
    ck_assert_int_eq(coord_journal_append(j, "tick", NULL, 0), 0);
    for (int i = 0; i < 100; i++)
        append_seq(j, "progress", i, 0);
    coord_journal_close(j);
    json_decref(spec);
    int64_t after = (int64_t)(smlt_now_unix() * 1e3);

    /* One record per line: the newline in a string is escaped. */
    char path[512];
    journal_path("j1", path, sizeof path);
    FILE *f = fopen(path, "r");
    int lines = 0, ch;
    while ((ch = fgetc(f)) != EOF)
        lines += ch == '\n';
    fclose(f);
    ck_assert_int_eq(lines, 103);

    struct seen *s = calloc(1, sizeof *s);
    ck_assert_int_eq(coord_journal_replay(data_dir, "j1", collect, s), 0);
    ck_assert_int_eq(s->n, 103);
    ck_assert_str_eq(s->types[0], "submit");
    ck_assert_str_eq(s->types[1], "state");
    ck_assert_str_eq(s->types[2], "tick");
    for (int i = 0; i < 100; i++) {
        ck_assert_str_eq(s->types[3 + i], "progress");
        ck_assert_int_eq(s->seq[3 + i], i);
    }
    for (int i = 0; i < s->n; i++) {
        ck_assert_int_ge(s->t[i], before);
        ck_assert_int_le(s->t[i], after);
        if (i)
            ck_assert_int_ge(s->t[i], s->t[i - 1]);
    }
    free(s);
}
END_TEST

static int check_fields(const char *type, json_t *rec, void *arg)
{
    (void)arg;
    if (!strcmp(type, "submit")) {
        ck_assert_str_eq(json_string_value(json_object_get(rec, "model")), "lenet5");
        ck_assert_str_eq(json_string_value(json_object_get(rec, "note")), "two\nlines");
        ck_assert_int_eq(json_integer_value(json_object_get(rec, "epochs")), 3);
        ck_assert_int_eq(json_object_size(rec), 5);
    } else if (!strcmp(type, "tick")) {
        ck_assert_int_eq(json_object_size(rec), 2);
    }
    return 0;
}

START_TEST(fields_survive)
{
    struct coord_journal *j = open_ok("j2");
    json_t *spec = json_pack("{s:s, s:i, s:s}", "model", "lenet5", "epochs", 3, "note",
                             "two\nlines");
    ck_assert_int_eq(coord_journal_append(j, "submit", spec, 0), 0);
    ck_assert_int_eq(json_object_size(spec), 3); /* borrowed, unchanged */
    ck_assert_int_eq(coord_journal_append(j, "tick", NULL, 0), 0);
    coord_journal_close(j);
    json_decref(spec);
    ck_assert_int_eq(coord_journal_replay(data_dir, "j2", check_fields, NULL), 0);
}
END_TEST

START_TEST(append_refusals)
{
    struct coord_journal *j = open_ok("j3");
    json_t *with_t = json_pack("{s:i}", "t", 1);
    json_t *with_type = json_pack("{s:s}", "type", "x");
    json_t *arr = json_array();
    ck_assert_int_eq(coord_journal_append(j, "x", with_t, 0), SMLT_EINVAL);
    ck_assert_int_eq(coord_journal_append(j, "x", with_type, 0), SMLT_EINVAL);
    ck_assert_int_eq(coord_journal_append(j, "x", arr, 0), SMLT_EINVAL);
    ck_assert_int_eq(coord_journal_append(j, "", NULL, 0), SMLT_EINVAL);
    ck_assert_int_eq(coord_journal_append(j, NULL, NULL, 0), SMLT_EINVAL);
    ck_assert_int_eq(coord_journal_append(j, "a\nb", NULL, 0), SMLT_EINVAL);
    char longtype[80];
    memset(longtype, 't', sizeof longtype - 1);
    longtype[sizeof longtype - 1] = 0;
    ck_assert_int_eq(coord_journal_append(j, longtype, NULL, 0), SMLT_EINVAL);
    ck_assert_int_eq(coord_journal_append(NULL, "x", NULL, 0), SMLT_EINVAL);
    /* A record longer than a line may be. */
    char *big = malloc(COORD_JOURNAL_MAX_LINE);
    memset(big, 'b', COORD_JOURNAL_MAX_LINE - 1);
    big[COORD_JOURNAL_MAX_LINE - 1] = 0;
    json_t *huge = json_pack("{s:s}", "blob", big);
    ck_assert_int_eq(coord_journal_append(j, "x", huge, 0), SMLT_ETOOBIG);
    ck_assert_int_eq(coord_journal_append(j, "ok", NULL, 0), 0);
    coord_journal_close(j);
    json_decref(with_t);
    json_decref(with_type);
    json_decref(arr);
    json_decref(huge);
    free(big);
    /* Nothing refused reached the file. */
    struct seen *s = calloc(1, sizeof *s);
    ck_assert_int_eq(coord_journal_replay(data_dir, "j3", collect, s), 0);
    ck_assert_int_eq(s->n, 1);
    ck_assert_str_eq(s->types[0], "ok");
    free(s);
}
END_TEST

START_TEST(cut_last_line)
{
    struct coord_journal *j = open_ok("crash");
    for (int i = 0; i < 3; i++)
        append_seq(j, "progress", i, 0);
    coord_journal_close(j);
    /* A crash in the middle of the fourth write. */
    static const char cut[] = "{\"t\":1764000000000,\"type\":\"state\",\"sta";
    append_raw("crash", cut, sizeof cut - 1);
    struct seen *s = calloc(1, sizeof *s);
    ck_assert_int_eq(coord_journal_replay(data_dir, "crash", collect, s), 0);
    ck_assert_int_eq(s->n, 3);
    /* Reopening ends the cut line, so the next record is whole and found. */
    j = open_ok("crash");
    append_seq(j, "state", 99, 0);
    coord_journal_close(j);
    memset(s, 0, sizeof *s);
    ck_assert_int_eq(coord_journal_replay(data_dir, "crash", collect, s), 0);
    ck_assert_int_eq(s->n, 4);
    ck_assert_str_eq(s->types[3], "state");
    ck_assert_int_eq(s->seq[3], 99);
    /* A last record that lost only its newline still counts. */
    static const char whole[] = "{\"t\":1,\"type\":\"last\"}";
    append_raw("crash", whole, sizeof whole - 1);
    memset(s, 0, sizeof *s);
    ck_assert_int_eq(coord_journal_replay(data_dir, "crash", collect, s), 0);
    ck_assert_int_eq(s->n, 5);
    ck_assert_str_eq(s->types[4], "last");
    free(s);
}
END_TEST

START_TEST(corrupt_lines_skipped)
{
    struct coord_journal *j = open_ok("bad");
    append_seq(j, "first", 1, 0);
    coord_journal_close(j);
    static const char junk[] = "garbage\n"
                               "[1,2]\n"
                               "{\"type\":\"no-t\"}\n"
                               "{\"t\":1,\"type\":5}\n"
                               "{\"t\":\"1\",\"type\":\"x\"}\n"
                               "\n"
                               "{\"t\":1,\"type\":\"a\"}{\"t\":2,\"type\":\"b\"}\n"
                               "{\"t\":1,\"type\":\"nul\0inside\"}\n"
                               "\xff\xfe\n";
    append_raw("bad", junk, sizeof junk - 1);
    /* An overlong line (2 MiB, no newline for a long while) between good ones. */
    size_t big = 2u << 20;
    char *blob = malloc(big + 1);
    memset(blob, '{', big);
    blob[big] = '\n';
    append_raw("bad", blob, big + 1);
    free(blob);
    j = open_ok("bad");
    append_seq(j, "second", 2, 0);
    coord_journal_close(j);
    struct seen *s = calloc(1, sizeof *s);
    ck_assert_int_eq(coord_journal_replay(data_dir, "bad", collect, s), 0);
    ck_assert_int_eq(s->n, 2);
    ck_assert_str_eq(s->types[0], "first");
    ck_assert_str_eq(s->types[1], "second");
    free(s);

    /* An overlong cut last line is skipped too. */
    blob = malloc(big);
    memset(blob, 'x', big);
    append_raw("bad", blob, big);
    free(blob);
    s = calloc(1, sizeof *s);
    ck_assert_int_eq(coord_journal_replay(data_dir, "bad", collect, s), 0);
    ck_assert_int_eq(s->n, 2);
    free(s);
}
END_TEST

START_TEST(replay_stops_and_misses)
{
    struct coord_journal *j = open_ok("stop");
    for (int i = 0; i < 10; i++)
        append_seq(j, "progress", i, 0);
    coord_journal_close(j);
    struct seen *s = calloc(1, sizeof *s);
    s->stop_at = 4;
    ck_assert_int_eq(coord_journal_replay(data_dir, "stop", collect, s), 7);
    ck_assert_int_eq(s->n, 4);
    free(s);
    ck_assert_int_eq(coord_journal_replay(data_dir, "nosuchjob", collect, NULL), SMLT_ENOTFOUND);
    ck_assert_int_eq(coord_journal_replay(data_dir, "stop", NULL, NULL), SMLT_EINVAL);
    ck_assert_int_eq(coord_journal_replay(NULL, "stop", collect, NULL), SMLT_EINVAL);
    /* An empty journal replays nothing. */
    coord_journal_close(open_ok("empty"));
    s = calloc(1, sizeof *s);
    ck_assert_int_eq(coord_journal_replay(data_dir, "empty", collect, s), 0);
    ck_assert_int_eq(s->n, 0);
    free(s);
}
END_TEST

struct ids {
    int n, stop_at;
    char id[16][80];
};

static int list_cb(const char *id, void *arg)
{
    struct ids *l = arg;
    if (l->n < 16)
        snprintf(l->id[l->n], sizeof l->id[0], "%s", id);
    l->n++;
    return l->stop_at && l->n == l->stop_at ? 5 : 0;
}

START_TEST(list_jobs)
{
    struct ids l = {0};
    /* No jobs directory yet. */
    ck_assert_int_eq(coord_journal_list(data_dir, list_cb, &l), 0);
    ck_assert_int_eq(l.n, 0);
    coord_journal_close(open_ok("b-2"));
    coord_journal_close(open_ok("a-1"));
    coord_journal_close(open_ok("c-3"));
    coord_journal_close(open_ok("B-0"));
    char path[512];
    /* Not jobs: a directory without a journal, a stray file, a name that is not an id, a
     * journal that is a directory. */
    snprintf(path, sizeof path, "%s/jobs/nojournal", data_dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/jobs/stray", data_dir);
    fclose(fopen(path, "w"));
    snprintf(path, sizeof path, "%s/jobs/bad name", data_dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/jobs/bad name/journal.jsonl", data_dir);
    fclose(fopen(path, "w"));
    snprintf(path, sizeof path, "%s/jobs/weird", data_dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/jobs/weird/journal.jsonl", data_dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);

    memset(&l, 0, sizeof l);
    ck_assert_int_eq(coord_journal_list(data_dir, list_cb, &l), 0);
    ck_assert_int_eq(l.n, 4);
    ck_assert_str_eq(l.id[0], "B-0");
    ck_assert_str_eq(l.id[1], "a-1");
    ck_assert_str_eq(l.id[2], "b-2");
    ck_assert_str_eq(l.id[3], "c-3");
    memset(&l, 0, sizeof l);
    l.stop_at = 2;
    ck_assert_int_eq(coord_journal_list(data_dir, list_cb, &l), 5);
    ck_assert_int_eq(l.n, 2);
    ck_assert_int_eq(coord_journal_list(NULL, list_cb, &l), SMLT_EINVAL);
}
END_TEST

START_TEST(reopen_keeps_history)
{
    for (int round = 0; round < 5; round++) {
        struct coord_journal *j = open_ok("again");
        append_seq(j, "state", round, 0);
        coord_journal_close(j);
    }
    struct seen *s = calloc(1, sizeof *s);
    ck_assert_int_eq(coord_journal_replay(data_dir, "again", collect, s), 0);
    ck_assert_int_eq(s->n, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(s->seq[i], i);
    free(s);
}
END_TEST

START_TEST(appends_from_processes)
{
    /* Four processes append to one journal at once: every line stays whole. */
    enum { PROCS = 4, EACH = 200 };
    coord_journal_close(open_ok("shared"));
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        ck_assert_int_ge(pids[p], 0);
        if (pids[p] == 0) {
            struct coord_journal *j = coord_journal_open(data_dir, "shared", NULL, 0);
            if (!j)
                _exit(1);
            /* Records of different sizes, so interleaving would show. */
            char pad[600];
            memset(pad, 'a' + p, sizeof pad - 1);
            pad[(p + 1) * 100] = 0;
            for (int i = 0; i < EACH; i++) {
                json_t *f = json_pack("{s:I, s:s}", "seq", (json_int_t)(p * EACH + i), "pad", pad);
                if (coord_journal_append(j, "progress", f, i % 50 == 0) != 0)
                    _exit(2);
                json_decref(f);
            }
            coord_journal_close(j);
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int st;
        ck_assert_int_eq(waitpid(pids[p], &st, 0), pids[p]);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    struct seen *s = calloc(1, sizeof *s);
    ck_assert_int_eq(coord_journal_replay(data_dir, "shared", collect, s), 0);
    ck_assert_int_eq(s->n, PROCS * EACH);
    /* Each process's records in its own order, none missing. */
    int64_t last[PROCS];
    int count[PROCS] = {0};
    for (int p = 0; p < PROCS; p++)
        last[p] = -1;
    for (int i = 0; i < s->n; i++) {
        int p = (int)(s->seq[i] / EACH);
        ck_assert(p >= 0 && p < PROCS);
        ck_assert_int_gt(s->seq[i], last[p]);
        last[p] = s->seq[i];
        count[p]++;
    }
    for (int p = 0; p < PROCS; p++)
        ck_assert_int_eq(count[p], EACH);
    free(s);
}
END_TEST

static Suite *coord_journal_suite(void)
{
    Suite *s = suite_create("coord_journal");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, layout_and_modes);
    tcase_add_test(tc, job_ids);
    tcase_add_test(tc, append_and_replay);
    tcase_add_test(tc, fields_survive);
    tcase_add_test(tc, append_refusals);
    tcase_add_test(tc, cut_last_line);
    tcase_add_test(tc, corrupt_lines_skipped);
    tcase_add_test(tc, replay_stops_and_misses);
    tcase_add_test(tc, list_jobs);
    tcase_add_test(tc, reopen_keeps_history);
    tcase_add_test(tc, appends_from_processes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(coord_journal_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
