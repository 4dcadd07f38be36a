/* test_fault.c: a parameter-server shard dies mid-job and the job goes on (issue 11 item 2).
 *
 * A real coordinator runs an MLP on 2 workers and 2 local shards that checkpoint every 20
 * steps. Each test kills one shard with SIGKILL by its pid once the job is well past a
 * checkpoint:
 *   - shard_killed_mid_job: the coordinator replaces the shard, restores every shard to the
 *     newest common checkpoint and the job succeeds; the journal's "fault" event names the
 *     shard and the steps lost; the replacement applied every step after the checkpoint once
 *     (its updates_applied is the final version minus the restored step), and every shard
 *     ends at the same version;
 *   - hung_shard_is_replaced: a shard stopped with SIGSTOP misses its heartbeats and is
 *     killed and replaced the same way;
 *   - replica_primary_killed: with ps.replicas 2, a primary killed mid-job is replaced by its
 *     backup with no step lost and no restore;
 *   - corrupt_checkpoint_falls_back: the dead shard's newest checkpoint is damaged right after
 *     the kill: the restore uses the previous good step, and the job still succeeds.
 * Everything started is stopped by its pid. */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "coord_test.h"
#include "smlt_proc.h"

static char root[256];
static char dataset[256];
static char data_dir[300];
static struct test_daemon coord;

static void setup(void)
{
    ct_fixture_setup(&coord, root, data_dir, sizeof data_dir);
}

static void teardown(void)
{
    ct_fixture_teardown(&coord, data_dir);
}

static uint64_t past_step;
static int past(const json_t *j)
{
    return !strcmp(ct_str(j, "state"), "running") && ct_num(j, "step") >= (double)past_step;
}

/* The job's first event of kind whose message contains needle (NULL: any), or NULL. */
static const json_t *event_of(const json_t *j, const char *kind, const char *needle)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "events"), i, e)
    if (!strcmp(ct_str(e, "kind"), kind) && (!needle || strstr(ct_str(e, "message"), needle)))
        return e;
    return NULL;
}

static const json_t *fault_event(const json_t *j)
{
    return event_of(j, "fault", NULL);
}

/* The newest checkpoint file of a shard (by name: ckpt-<step>.smltck), or "" . */
static void newest_checkpoint(const char *id, int shard, char *out, size_t len)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/jobs/%s/checkpoints/shard-%d", data_dir, id, shard);
    out[0] = '\0';
    DIR *d = opendir(dir);
    if (!d)
        return;
    unsigned long long best = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned long long step;
        if (sscanf(e->d_name, "ckpt-%llu.smltck", &step) == 1 && step >= best) {
            best = step;
            snprintf(out, len, "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
}

/* The shard id of an smlt-ps process, from its command line (--shard N). */
static int shard_of(pid_t pid)
{
    struct smlt_proc_info p;
    char id[16];
    ck_assert_int_eq(smlt_proc_info(pid, &p), 0);
    return smlt_proc_arg(&p, "--shard", id, sizeof id) ? atoi(id) : -1;
}

static unsigned long long corrupted_step;

static json_t *run_and_kill(const char *id, int corrupt)
{
    past_step = 120;
    json_t *j = ct_wait_until(coord.port, id, 120, past);
    ck_assert_str_eq(ct_str(j, "state"), "running");
    json_decref(j);
    pid_t ps[8];
    ck_assert_int_eq(ct_children(coord.pid, "smlt-ps", NULL, ps, 8), 2);
    int victim = shard_of(ps[1]);
    ck_assert(victim == 0 || victim == 1);
    ck_assert_int_eq(kill(ps[1], SIGKILL), 0);
    if (corrupt) {
        /* Its newest checkpoint damaged (it writes no more): that step is no longer one every
         * shard has, and the restore must take the one before. (The coordinator notices the
         * death at its next tick, up to a second later.) */
        char f[900];
        newest_checkpoint(id, victim, f, sizeof f);
        ck_assert_msg(f[0], "no checkpoint of shard %d yet", victim);
        ck_assert_int_eq(sscanf(strrchr(f, '/'), "/ckpt-%llu.smltck", &corrupted_step), 1);
        FILE *fp = fopen(f, "r+b");
        ck_assert_ptr_nonnull(fp);
        fseek(fp, 40, SEEK_SET);
        int c = fgetc(fp);
        fseek(fp, 40, SEEK_SET);
        fputc(c ^ 0x55, fp);
        fclose(fp);
    }
    j = ct_wait_job(coord.port, id, 300);
    ck_assert_ptr_nonnull(j);
    if (strcmp(ct_str(j, "state"), "succeeded")) {
        char *d = json_dumps(j, JSON_INDENT(1));
        fprintf(stderr, "%s\n", d);
        free(d);
    }
    ck_assert_str_eq(ct_str(j, "state"), "succeeded");
    return j;
}

static char *submit(void)
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-64-10\", \"dataset\": \"%s\", \"epochs\": %d, \"workers\": 2, "
             "\"shards\": 2, \"checkpoint\": {\"every_steps\": 20, \"keep\": 4}, "
             "\"optimizer\": {\"kind\": \"adam\", \"lr\": 0.001}}",
             dataset, ct_quick() ? 40 : 60);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    return id;
}

static void check_counters(const json_t *j, uint64_t restored, int killed)
{
    long long final = -1;
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(j, "ps_stats"), i, st)
    {
        long long v = (long long)ct_num(st, "version");
        if (final < 0)
            final = v;
        ck_assert_int_eq(v, final); /* every shard at the same step */
        if (ct_num(st, "shard") == killed) /* the replacement applied each step after it once */
            ck_assert_int_eq((long long)ct_num(st, "updates_applied"), v - (long long)restored);
    }
    ck_assert_int_eq(json_array_size(json_object_get(j, "ps_stats")), 2);
    ck_assert(final >= (long long)ct_num(j, "step"));
}

/* The shard the fault event says died. */
static int killed_shard(const json_t *e)
{
    const char *m = strstr(ct_str(e, "message"), "parameter-server shard ");
    ck_assert_ptr_nonnull(m);
    return atoi(m + strlen("parameter-server shard "));
}

/* The step the fault event says the shards were restored to. */
static uint64_t restored_step(const json_t *e)
{
    const char *m = strstr(ct_str(e, "message"), "checkpoint of step ");
    ck_assert_ptr_nonnull(m);
    return strtoull(m + strlen("checkpoint of step "), NULL, 10);
}

START_TEST(shard_killed_mid_job)
{
    char *id = submit();
    json_t *j = run_and_kill(id, 0);
    const json_t *e = fault_event(j);
    ck_assert_ptr_nonnull(e);
    fprintf(stderr, "shard_killed_mid_job: %s\n", ct_str(e, "message"));
    ck_assert_ptr_nonnull(strstr(ct_str(e, "message"), "steps lost"));
    uint64_t r = restored_step(e);
    ck_assert(r >= 100 && r % 20 == 0);
    check_counters(j, r, killed_shard(e));
    ck_assert(ct_num(j, "test_accuracy") > 0.7);
    json_decref(j);
    free(id);
}
END_TEST

START_TEST(corrupt_checkpoint_falls_back)
{
    char *id = submit();
    json_t *j = run_and_kill(id, 1);
    const json_t *e = fault_event(j);
    ck_assert_ptr_nonnull(e);
    fprintf(stderr, "corrupt_checkpoint_falls_back: %s\n", ct_str(e, "message"));
    uint64_t r = restored_step(e);
    ck_assert(r % 20 == 0);
    ck_assert_msg(r < corrupted_step, "restored step %llu, the damaged one was %llu",
                  (unsigned long long)r, corrupted_step);
    check_counters(j, r, killed_shard(e));
    json_decref(j);
    free(id);
}
END_TEST

/* A shard that hangs (SIGSTOP) answers no heartbeat: after three missed in a row (about 30 s)
 * the coordinator kills it, and it is replaced like a dead one. */
START_TEST(hung_shard_is_replaced)
{
    char *id = submit();
    past_step = 120;
    json_t *j = ct_wait_until(coord.port, id, 120, past);
    ck_assert_str_eq(ct_str(j, "state"), "running");
    json_decref(j);
    pid_t ps[8];
    ck_assert_int_eq(ct_children(coord.pid, "smlt-ps", NULL, ps, 8), 2);
    ck_assert_int_eq(kill(ps[0], SIGSTOP), 0);
    j = ct_wait_job(coord.port, id, 300);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(!strcmp(ct_str(j, "state"), "succeeded"), "%s: %s", ct_str(j, "state"),
                  ct_str(j, "error"));
    int heartbeat = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "events"), i, e)
    heartbeat |= !strcmp(ct_str(e, "kind"), "heartbeat");
    ck_assert(heartbeat);
    const json_t *f = fault_event(j);
    ck_assert_ptr_nonnull(f);
    fprintf(stderr, "hung_shard_is_replaced: %s\n", ct_str(f, "message"));
    check_counters(j, restored_step(f), killed_shard(f));
    json_decref(j);
    kill(ps[0], SIGKILL); /* (killed already, by the coordinator) */
    free(id);
}
END_TEST

/* The pid of the coordinator's smlt-ps child whose command line names `what` (its port file:
 * "/shard0.port" for shard 0's primary, "/backup0.port" for its backup), or 0. */
static pid_t ps_with(const char *what)
{
    pid_t p = 0;
    return smlt_proc_find("smlt-ps", coord.pid, what, NULL, &p, 1) == 1 ? p : 0;
}

/* ps.replicas 2: a primary killed mid-job; its backup takes over with every acknowledged step
 * (no rollback: every shard applied every step once), a new backup is built, the job succeeds. */
START_TEST(replica_primary_killed)
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-64-10\", \"dataset\": \"%s\", \"epochs\": %d, \"workers\": 2, "
             "\"shards\": 2, \"ps\": {\"replicas\": 2}, \"checkpoint\": false, "
             "\"optimizer\": {\"kind\": \"adam\", \"lr\": 0.001}}",
             dataset, ct_quick() ? 40 : 60);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    past_step = 120;
    json_t *j = ct_wait_until(coord.port, id, 120, past);
    ck_assert_str_eq(ct_str(j, "state"), "running");
    json_decref(j);
    ck_assert(ps_with("/backup0.port") > 0 && ps_with("/backup1.port") > 0);
    pid_t primary = ps_with("/shard0.port");
    ck_assert(primary > 0);
    ck_assert_int_eq(kill(primary, SIGKILL), 0);
    j = ct_wait_job(coord.port, id, 300);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(!strcmp(ct_str(j, "state"), "succeeded"), "%s: %s", ct_str(j, "state"),
                  ct_str(j, "error"));
    const json_t *f = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "events"), i, e)
    if (!strcmp(ct_str(e, "kind"), "failover") && !f)
        f = e;
    ck_assert_ptr_nonnull(f);
    fprintf(stderr, "replica_primary_killed: %s\n", ct_str(f, "message"));
    ck_assert_ptr_nonnull(strstr(ct_str(f, "message"), "0 steps lost"));
    ck_assert_ptr_null(fault_event(j)); /* no restore */
    json_t *st;
    long long final = -1;
    json_array_foreach(json_object_get(j, "ps_stats"), i, st)
    {
        long long v = (long long)ct_num(st, "version");
        if (final < 0)
            final = v;
        ck_assert_int_eq(v, final);
        /* Each primary (the promoted backup too: it applied every step as a backup) applied
         * every step once. */
        ck_assert_int_eq((long long)ct_num(st, "updates_applied"), v);
    }
    json_decref(j);
    free(id);
}
END_TEST

static int replicas_back(const json_t *j)
{
    return !strcmp(ct_str(j, "state"), "running") && event_of(j, "replicas", NULL) != NULL;
}

/* ps.replicas 2 with checkpoints: a primary and its backup are both killed. Nothing can be
 * promoted, so the job restores the checkpoints, then builds every backup again (the lost one
 * in a new process) before the ranks go on. Then the other shard's primary is killed, and its
 * rebuilt backup takes over with 0 steps lost. The job succeeds, each step applied once. */
START_TEST(replica_pair_killed)
{
    char spec[1024], err[512];
    snprintf(spec, sizeof spec,
             "{\"model\": \"mlp:784-64-10\", \"dataset\": \"%s\", \"epochs\": %d, \"workers\": 2, "
             "\"shards\": 2, \"ps\": {\"replicas\": 2}, "
             "\"checkpoint\": {\"every_steps\": 20, \"keep\": 4}, "
             "\"optimizer\": {\"kind\": \"adam\", \"lr\": 0.001}}",
             dataset, ct_quick() ? 40 : 60);
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    past_step = 120;
    json_t *j = ct_wait_until(coord.port, id, 120, past);
    ck_assert_str_eq(ct_str(j, "state"), "running");
    json_decref(j);
    pid_t primary = ps_with("/shard0.port"), backup = ps_with("/backup0.port");
    ck_assert(primary > 0 && backup > 0);
    ck_assert_int_eq(kill(backup, SIGKILL), 0);
    ck_assert_int_eq(kill(primary, SIGKILL), 0);
    j = ct_wait_until(coord.port, id, 120, replicas_back);
    ck_assert_msg(replicas_back(j), "%s: %s", ct_str(j, "state"), ct_str(j, "error"));
    const json_t *e = fault_event(j);
    ck_assert_ptr_nonnull(e);
    fprintf(stderr, "replica_pair_killed: %s\n", ct_str(e, "message"));
    ck_assert_int_eq(killed_shard(e), 0);
    uint64_t restored = restored_step(e);
    const char *at = strstr(ct_str(e, "message"), "exited at step ");
    ck_assert_ptr_nonnull(at);
    long long was = strtoll(at + strlen("exited at step "), NULL, 10);
    json_decref(j);
    ck_assert(ps_with("/backup0.port") > 0 && ps_with("/backup0.port") != backup);

    /* The rebuilt backups are in sync: shard 1's primary is lost without a rollback. */
    pid_t p1 = ps_with("/shard1.port");
    ck_assert(p1 > 0);
    ck_assert_int_eq(kill(p1, SIGKILL), 0);
    j = ct_wait_job(coord.port, id, 300);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(!strcmp(ct_str(j, "state"), "succeeded"), "%s: %s", ct_str(j, "state"),
                  ct_str(j, "error"));
    const json_t *f = event_of(j, "failover", "shard 1");
    ck_assert_ptr_nonnull(f);
    size_t i;
    json_t *ev;
    fprintf(stderr, "replica_pair_killed: %s\n", ct_str(f, "message"));
    ck_assert_ptr_nonnull(strstr(ct_str(f, "message"), "0 steps lost"));
    /* One restore only (the second loss cost nothing), and each step applied once: shard 0's
     * replacement from the restored step; shard 1 (its counters carried over to the backup
     * built from it) also applied the steps lost once more after the restore. */
    int faults = 0;
    json_array_foreach(json_object_get(j, "events"), i, ev)
    faults += !strcmp(ct_str(ev, "kind"), "fault");
    ck_assert_int_eq(faults, 1);
    long long final = -1;
    json_t *st;
    json_array_foreach(json_object_get(j, "ps_stats"), i, st)
    {
        long long v = (long long)ct_num(st, "version");
        if (final < 0)
            final = v;
        ck_assert_int_eq(v, final);
        long long want = ct_num(st, "shard") == 0 ? v - (long long)restored
                                                  : v + (was - (long long)restored);
        ck_assert_int_eq((long long)ct_num(st, "updates_applied"), want);
    }
    json_decref(j);
    free(id);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("shard");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 400);
    tcase_add_test(tc, shard_killed_mid_job);
    tcase_add_test(tc, corrupt_checkpoint_falls_back);
    tcase_add_test(tc, hung_shard_is_replaced);
    tcase_add_test(tc, replica_primary_killed);
    tcase_add_test(tc, replica_pair_killed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ct_main("fault", suite(), root, sizeof root, dataset, sizeof dataset, 6000, 1000);
}
