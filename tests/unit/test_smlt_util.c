/* test_smlt_util.c: Check suite for proto/smlt_util.c (error messages, clocks, atomic file
 * writes, token files). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "smlt_limits.h"
#include "smlt_util.h"

static char dir[256];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_smlt_util.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Number of entries in dir besides . and .. */
static int entries(void)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(set_err_formats_truncates_and_takes_null)
{
    char err[8];
    smlt_set_err(err, sizeof err, "code %d: %s", 42, "too long for the buffer");
    ck_assert_str_eq(err, "code 42");
    smlt_set_err(NULL, 10, "x %d", 1);
    err[0] = 'q';
    smlt_set_err(err, 0, "x %d", 1);
    ck_assert_int_eq(err[0], 'q');
    errno = EPIPE;
    smlt_set_err(err, sizeof err, "%s", "e");
    ck_assert_int_eq(errno, EPIPE);
}
END_TEST

START_TEST(clocks)
{
    double a = smlt_now_mono();
    usleep(2000);
    double b = smlt_now_mono();
    ck_assert(b - a >= 0.0015 && b - a < 5.0);
    double u = smlt_now_unix();
    ck_assert(u > 1.6e9); /* after 2020 */
    ck_assert(u - (double)time(NULL) < 2.0 && (double)time(NULL) - u < 2.0);
}
END_TEST

START_TEST(write_atomic_replaces_with_mode)
{
    char path[300];
    snprintf(path, sizeof path, "%s/f", dir);
    ck_assert_int_eq(smlt_write_file_atomic(path, "old\n", 4, 0), 0);
    ck_assert_int_eq(smlt_write_file_atomic(path, "secret\n", 7, 0600), 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(st.st_size, 7);
    ck_assert_int_eq(entries(), 1); /* no temporary file left */
    /* a directory that does not exist: -1 with errno, nothing created */
    snprintf(path, sizeof path, "%s/no/f", dir);
    ck_assert_int_eq(smlt_write_file_atomic(path, "x", 1, 0), -1);
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

START_TEST(atomic_steps_commit_and_abort)
{
    char path[300], tmp[400];
    snprintf(path, sizeof path, "%s/m", dir);
    int fd = smlt_atomic_open(path, 0, tmp, sizeof tmp);
    ck_assert_int_ge(fd, 0);
    ck_assert(strncmp(tmp, path, strlen(path)) == 0 && strstr(tmp, ".tmp."));
    ck_assert_int_eq(write(fd, "abc", 3), 3);
    ck_assert_int_ne(access(path, F_OK), 0); /* not there before the commit */
    ck_assert_int_eq(smlt_atomic_commit(fd, tmp, path, NULL), 0);
    ck_assert_int_eq(access(path, F_OK), 0);
    fd = smlt_atomic_open(path, 0, tmp, sizeof tmp);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "zz", 2), 2);
    smlt_atomic_abort(fd, tmp);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 3); /* the old file is untouched */
    ck_assert_int_eq(entries(), 1);
    /* a name that does not fit */
    char small[8];
    ck_assert_int_eq(smlt_atomic_open(path, 0, small, sizeof small), -1);
    ck_assert_int_eq(errno, ENAMETOOLONG);
}
END_TEST

START_TEST(token_files)
{
    char path[300];
    snprintf(path, sizeof path, "%s/t", dir);
    put(path, "s3cret \r\nsecond line\n");
    char *t = smlt_token_read(path);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t, "s3cret");
    free(t);
    put(path, "no-newline");
    t = smlt_token_read(path);
    ck_assert_str_eq(t, "no-newline");
    free(t);
    put(path, "\n");
    ck_assert_ptr_null(smlt_token_read(path));
    ck_assert_int_eq(errno, ENODATA);
    char big[SMLT_MAX_TOKEN + 10];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    put(path, big);
    ck_assert_ptr_null(smlt_token_read(path));
    ck_assert_int_eq(errno, E2BIG);
    big[SMLT_MAX_TOKEN] = '\0'; /* exactly at the limit */
    put(path, big);
    t = smlt_token_read(path);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(strlen(t), SMLT_MAX_TOKEN);
    free(t);
    snprintf(path, sizeof path, "%s/missing", dir);
    ck_assert_ptr_null(smlt_token_read(path));
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

static Suite *smlt_util_suite(void)
{
    Suite *s = suite_create("smlt_util");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, set_err_formats_truncates_and_takes_null);
    tcase_add_test(tc, clocks);
    tcase_add_test(tc, write_atomic_replaces_with_mode);
    tcase_add_test(tc, atomic_steps_commit_and_abort);
    tcase_add_test(tc, token_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(smlt_util_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
