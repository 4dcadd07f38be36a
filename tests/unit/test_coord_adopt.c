/* test_coord_adopt.c: worker instances that outlive the coordinator (coordinator/
 * coord_adopt.c) without a coordinator process: the journal's invocation records give a rank
 * its invocation back only when that invocation never ended and its pid is still a running
 * `smlt-worker --invoke` (not a reused pid, not a zombie); the numbering of invocations goes
 * on; the adopted invocation is billed without its request twice; its process's end ends it as
 * a crash and the rank is invoked again; a cancel kills it by its pid. */
#include <math.h>
#include <signal.h>
#include <sys/wait.h>

#include "coord_fake.h"
#include "smlt_proc.h"

static const char *SPEC = "{\"model\": \"logreg:784-10\", \"dataset\": \"" FAKE_DATASET "\", "
                          "\"epochs\": 4, \"workers\": 3, \"shards\": 1}";

/* A real worker bootstrap waiting for its first invocation on a pipe (as the local runtime
 * starts one); *in gets the pipe's write end. */
static pid_t start_worker(int *in)
{
    char bin[1100];
    snprintf(bin, sizeof bin, "%s/../bin/smlt-worker", smlt_proc_self_dir());
    ck_assert_msg(access(bin, X_OK) == 0, "%s is missing: build smlt-worker", bin);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(p[0], 0);
        close(p[1]);
        execl(bin, bin, "--invoke", (char *)NULL);
        _exit(127);
    }
    close(p[0]);
    *in = p[1];
    /* Until it has exec'd (its command line is then the worker's). */
    struct smlt_proc_info pi;
    for (int t = 0; t < 200; t++) {
        if (smlt_proc_info(pid, &pi) == 0 && pi.base && !strcmp(pi.base, "smlt-worker"))
            break;
        usleep(10000);
    }
    return pid;
}

static void stop_worker(pid_t pid, int in)
{
    if (in >= 0)
        close(in); /* end of input: it exits */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void add_inv(struct coord_job *j, int rank, const char *name, pid_t pid, double started)
{
    json_t *rec = json_pack("{s:i, s:s, s:s, s:i, s:f, s:f, s:i, s:i}", "rank", rank, "name", name,
                            "token", "0123abcd", "pid", (int)pid, "started", started, "limit_s",
                            900.0, "memory_mb", 1024, "from_step", 0);
    job_adopt_replay(j, "invocation", rec);
    json_decref(rec);
}

static void end_inv(struct coord_job *j, int rank, const char *name)
{
    json_t *rec = json_pack("{s:i, s:s}", "rank", rank, "name", name);
    job_adopt_replay(j, "invocation_end", rec);
    json_decref(rec);
}

START_TEST(only_live_unended_worker_invocations_are_adopted)
{
    struct coord *c = fake_coord_new();
    struct coord_job *j = fake_job(c, "job-0001", SPEC);
    int in = -1;
    pid_t w = start_worker(&in);
    double now = smlt_now_unix();
    j->ledger_unix = now - 5;
    /* rank 0: its last invocation runs in a live worker: adopted */
    add_inv(j, 0, "job-0001/0/3", w, now - 20);
    /* rank 1: its invocation ended (the same pid served it before rank 0's): not adopted */
    add_inv(j, 1, "job-0001/1/2", w, now - 30);
    end_inv(j, 1, "job-0001/1/2");
    /* rank 2: its pid is not a worker (this test process): not adopted */
    add_inv(j, 2, "job-0001/2/7", getpid(), now - 1);
    /* An end for an older invocation of rank 0 changes nothing. */
    end_inv(j, 0, "job-0001/0/2");

    ck_assert_uint_eq(job_adopt(j), 1);
    struct rank *r0 = &j->ranks[0], *r1 = &j->ranks[1], *r2 = &j->ranks[2];
    ck_assert(r0->cur.adopted);
    ck_assert(r0->cur.id & RANK_INV_ADOPTED);
    ck_assert_str_eq(r0->cur.name, "job-0001/0/3");
    ck_assert_str_eq(r0->cur.token, "0123abcd");
    ck_assert_int_eq(r0->cur.pid, w);
    ck_assert_uint_eq(r0->cur.memory_mb, 1024);
    /* Running when the ledger was recorded: billed from then, without a second request. */
    ck_assert(r0->cur.billed_before);
    ck_assert(fabs((smlt_now_mono() - r0->cur.started) - 5.0) < 0.5);
    ck_assert_int_eq(rank_pid(r0), w);
    ck_assert(!r1->cur.adopted && r1->cur.id == 0);
    ck_assert(!r2->cur.adopted && r2->cur.id == 0);
    /* Invocation names go on from the recorded ones. */
    ck_assert_uint_eq(r0->tot.invocations, 3);
    ck_assert_uint_eq(r1->tot.invocations, 2);
    ck_assert_uint_eq(r2->tot.invocations, 7);
    ck_assert_ptr_null(j->adopt);

    /* A running adopted invocation is in the live ledger as time only: no second request. */
    struct coord_ledger l;
    job_ledger_now(j, &l);
    ck_assert_uint_eq(l.invocations, 0);
    ck_assert(l.request_usd == 0 && l.gb_s > 4.0);

    /* The job is canceled: the adopted instance is killed by its pid and its end charged. */
    rank_cancel(r0);
    ck_assert_uint_eq(r0->cur.id, 0);
    ck_assert(!r0->cur.adopted);
    int st = 0;
    ck_assert_int_eq(waitpid(w, &st, 0), w);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ck_assert_uint_eq(j->ledger.invocations, 0);
    ck_assert(j->ledger.gb_s > 4.0 && j->ledger.request_usd == 0);
    close(in);
    fake_coord_free(c);
}
END_TEST

/* An adopted instance that dies without reporting its end: the rank's invocation ends as a
 * crash at the next check, and the rank is invoked again from its cursor (after a backoff). */
START_TEST(adopted_instance_that_dies_is_replaced)
{
    struct coord *c = fake_coord_new();
    struct coord_job *j = fake_job(c, "job-0001", SPEC);
    int in = -1;
    pid_t w = start_worker(&in);
    double now = smlt_now_unix();
    j->ledger_unix = now - 1;
    add_inv(j, 0, "job-0001/0/1", w, now - 0.5); /* began after the ledger's record */
    ck_assert_uint_eq(job_adopt(j), 1);
    struct rank *r = &j->ranks[0];
    ck_assert(!r->cur.billed_before);
    r->next_step = 40;
    job_adopted_check(j); /* alive: nothing */
    ck_assert(r->cur.adopted);
    stop_worker(w, in);
    job_adopted_check(j);
    ck_assert(!r->cur.adopted);
    ck_assert_uint_eq(r->cur.id, 0);
    ck_assert_int_eq(r->failures, 1);
    ck_assert_uint_eq(r->tot.lost, 1);
    ck_assert(evtimer_pending(r->retry_ev, NULL)); /* invoked again after the backoff */
    /* Began after the ledger's record: charged as a whole invocation. */
    ck_assert_uint_eq(j->ledger.invocations, 1);
    ck_assert(j->ledger.request_usd > 0);
    evtimer_del(r->retry_ev);
    fake_coord_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("coord_adopt");
    TCase *tc = tcase_create("adopt");
    tcase_add_test(tc, only_live_unended_worker_invocations_are_adopted);
    tcase_add_test(tc, adopted_instance_that_dies_is_replaced);
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
