/* test_adaptive.c: a running job changes shape, through a real coordinator.
 *
 * Live fan-out: a job asked (mid-run, by the scale API) to go from 2 to 3 workers and 1 to 2
 * shards does so at the next epoch boundary (where the coordinator sets a barrier: otherwise
 * its ranks train through boundaries, one invocation each); it finishes every step of every
 * epoch, its shards' counters show every (rank, step) counted exactly once (BSP: pushes
 * counted = workers x steps per shard over the phases), and it reaches an accuracy it could
 * miss.
 * Profile: a job with a deadline gets its first decision a few steps into epoch 1, scales out
 * there, and starts epoch 1 again over the new partitions, every step counted once.
 * Budget hard stop: a job whose budget cannot pay for its epochs stops on its own before
 * spending past it, with every worker at the same step, its model saved, state "stopped".
 * Straggler: a rank whose first instance is slow (chaos) in a job that trains through epoch
 * boundaries gets a barrier and a fresh instance, with every step counted once.
 * Statistical efficiency: epochs stated at the starting batch grow in number after a scale-out.
 * All use a small uncompressed Fashion-MNIST subset so workers start in milliseconds. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord_test.h"
#include "smlt.h"

#define TRAIN_ROWS 6000 /* the subset's training images */

static char root[256], data[512];
static struct test_daemon coord;

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/smlt-test-adaptive.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    char dd[600];
    snprintf(dd, sizeof dd, "%s/data", root);
    ck_assert_int_eq(ct_subset_dataset(data, sizeof data, TRAIN_ROWS, 2000), 0);
    ct_note_dir(root, data);
    ck_assert_int_eq(ct_coord_start(&coord, dd, NULL), 0);
}

static void teardown(void)
{
    test_daemon_stop(&coord);
    ct_rm_rf(data);
    ct_rm_rf(root);
}

static int epoch_done(const json_t *job)
{
    return ct_num(job, "epoch") >= 1;
}

/* Submits spec; returns the job's id (free it). */
static char *submit(const char *spec)
{
    char err[512];
    char *id = ct_submit(coord.port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    return id;
}

/* Waits up to timeout_s for job id to end, in `state`; returns its view. */
static json_t *wait_end(const char *id, double timeout_s, const char *state)
{
    json_t *j = ct_wait_job(coord.port, id, timeout_s);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(!strcmp(ct_str(j, "state"), state), "state %s (%s)", ct_str(j, "state"),
                  ct_str(j, "error"));
    return j;
}

/* Every step trained once: the job got to total_steps, and shard 0 (there from the start)
 * applied each step once and counted no push twice; with pushes >= 0, it counted that many. */
static void check_once(const json_t *j, long long pushes)
{
    long long total = (long long)ct_num(j, "total_steps");
    ck_assert_int_eq((long long)ct_num(j, "step"), total);
    json_t *x = json_array_get(json_object_get(j, "ps_stats"), 0);
    if (pushes >= 0)
        ck_assert_int_eq((long long)ct_num(x, "pushes_counted"), pushes);
    ck_assert_int_eq((long long)ct_num(x, "pushes_duplicate"), 0);
    ck_assert_int_eq((long long)ct_num(x, "updates_applied"), total);
}

/* The number of the job's events of `kind`; each one's message must contain `text`. */
static int events_of(const json_t *j, const char *kind, const char *text)
{
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "events"), i, e)
        if (!strcmp(ct_str(e, "kind"), kind)) {
            n++;
            ck_assert_msg(strstr(ct_str(e, "message"), text) != NULL, "%s", ct_str(e, "message"));
        }
    return n;
}

START_TEST(live_fanout_and_shards)
{
    int epochs = ct_quick() ? 3 : 4;
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"model\":\"mlp:784-64-10\",\"dataset\":\"%s\",\"epochs\":%d,\"workers\":2,"
             "\"shards\":1,\"max_workers\":4,\"max_shards\":2,\"batch_size\":32,"
             "\"optimizer\":{\"kind\":\"momentum\",\"lr\":0.05}}",
             data, epochs);
    char *id = submit(spec);
    /* Once the first epoch is done, ask for 3 workers and 2 shards. */
    json_t *j = ct_wait_until(coord.port, id, 120, epoch_done);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(ct_str(j, "state"), "running");
    json_decref(j);
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s/scale", id);
    ck_assert_int_eq(ct_http(coord.port, "POST", path, CT_ADMIN, "{\"workers\":3,\"shards\":2}", NULL),
                     200);
    j = wait_end(id, 240, "succeeded");
    ck_assert_int_eq((int)ct_num(j, "workers"), 3);
    ck_assert_int_eq((int)ct_num(j, "shards"), 2);
    ck_assert_int_eq((int)ct_num(j, "epoch"), epochs);
    ck_assert_int_eq((long long)ct_num(j, "step"), (long long)ct_num(j, "total_steps"));
    /* One invocation per rank and phase (2, then 3), besides any lost and re-invoked. */
    json_t *inv = json_object_get(j, "invocations");
    ck_assert_int_eq((long long)(ct_num(inv, "total") - ct_num(inv, "lost")), 5);
    ck_assert_msg(ct_num(j, "test_accuracy") >= 0.75, "accuracy %.4f", ct_num(j, "test_accuracy"));
    /* The series shows both shapes: 2 workers x 1 shard, then 3 x 2. */
    json_t *series = json_object_get(j, "series");
    ck_assert_int_eq((int)json_array_size(series), epochs);
    json_t *first = json_array_get(series, 0), *last = json_array_get(series, epochs - 1);
    ck_assert_int_eq((int)ct_num(first, "workers"), 2);
    ck_assert_int_eq((int)ct_num(first, "shards"), 1);
    ck_assert_int_eq((int)ct_num(last, "workers"), 3);
    ck_assert_int_eq((int)ct_num(last, "shards"), 2);
    /* Every epoch's time is split into compute, communication and waiting, with the step time
     * of each worker and the throughput. */
    size_t si;
    json_t *ep;
    json_array_foreach(series, si, ep) {
        ck_assert(ct_num(ep, "compute_s") > 0 && ct_num(ep, "comm_s") >= 0 &&
                  ct_num(ep, "wait_s") >= 0);
        ck_assert(ct_num(ep, "samples_per_s") > 0 && ct_num(ep, "step_s") > 0);
        json_t *ws = json_object_get(ep, "worker_step_s");
        ck_assert_int_eq((int)json_array_size(ws), (int)ct_num(ep, "workers"));
        /* null for a rank that sent no report within the epoch (they report once a second) */
        for (size_t w = 0; w < json_array_size(ws); w++)
            ck_assert(json_is_null(json_array_get(ws, w)) ||
                      json_real_value(json_array_get(ws, w)) > 0);
        ck_assert(json_is_real(json_array_get(ws, 0))); /* rank 0 reports at every epoch end */
    }
    /* Exactly once: the shards at the end counted every push once and none twice. Shard 0 is
     * the process kept from the first phase (its counters cover every step); shard 1 joined at
     * the reshard. Steps per phase: (step at the change) * 2 workers + the rest * 3. */
    json_t *ps = json_object_get(j, "ps_stats");
    ck_assert_int_eq((int)json_array_size(ps), 2);
    long long total = (long long)ct_num(j, "total_steps");
    for (int s = 0; s < 2; s++) {
        json_t *x = json_array_get(ps, s);
        ck_assert_int_eq((long long)ct_num(x, "clock"), total);
        ck_assert_int_eq((long long)ct_num(x, "pushes_duplicate"), 0);
        ck_assert_int_eq((int)ct_num(x, "map_version"), 2);
    }
    /* The change waits for a barrier at an epoch's end: shard 0 refuses that step's push of
     * each of the 2 ranks at most once (they stop there); shard 1 came after it. */
    ck_assert_int_le((long long)ct_num(json_array_get(ps, 0), "pushes_rejected"), 2);
    ck_assert_int_eq((long long)ct_num(json_array_get(ps, 1), "pushes_rejected"), 0);
    /* The shards measured the gradient noise scale (BSP, 2+ workers): a positive number of
     * samples, within what a small MLP on Fashion-MNIST can have. */
    double ns = ct_num(j, "noise_scale");
    ck_assert_msg(ns > 1 && ns < 1e6, "noise scale %g", ns);
    json_t *s0 = json_array_get(ps, 0), *s1 = json_array_get(ps, 1);
    long long applied1 = (long long)ct_num(s1, "updates_applied");
    long long at = total - applied1; /* the step of the reshard */
    ck_assert_int_gt(at, 0);
    ck_assert_int_eq((long long)ct_num(s0, "updates_applied"), total);
    ck_assert_int_eq((long long)ct_num(s1, "pushes_counted"), applied1 * 3);
    ck_assert_int_eq((long long)ct_num(s0, "pushes_counted"), at * 2 + applied1 * 3);
    json_decref(j);
    free(id);
}
END_TEST

START_TEST(profile_then_scale_out)
{
    /* A deadline no configuration can meet, on 1 worker of at most 4: the scheduler decides
     * first after the profiling phase, a few steps into epoch 1, not at its end; it scales out
     * (to the fastest it can), epoch 1 starts again over the new partitions, and every step
     * of every phase is counted once. */
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"model\":\"lenet5\",\"dataset\":\"%s\",\"epochs\":3,\"workers\":1,"
             "\"shards\":1,\"max_workers\":4,\"batch_size\":32,\"deadline_s\":0.5,"
             "\"optimizer\":{\"kind\":\"momentum\",\"lr\":0.02}}",
             data);
    char *id = submit(spec);
    json_t *j = wait_end(id, 240, "succeeded");
    /* The profile: the first configuration's first steps, within the first quarter of an
     * epoch of 6000 / 32 = 187 steps, measured like an epoch. */
    json_t *prof = json_object_get(j, "profile");
    ck_assert_msg(json_is_object(prof), "no profile");
    long long at = (long long)ct_num(prof, "step");
    ck_assert_int_gt(at, 0);
    ck_assert_int_le(at * 4, 187);
    ck_assert_int_eq((int)ct_num(prof, "workers"), 1);
    ck_assert(ct_num(prof, "compute_s") > 0 && ct_num(prof, "step_s") > 0 &&
              ct_num(prof, "samples_per_s") > 0);
    ck_assert_int_eq((int)json_array_size(json_object_get(prof, "worker_step_s")), 1);
    ck_assert(json_is_true(json_object_get(prof, "decision")));
    ck_assert(ct_num(prof, "steady_step_s") > 0 && ct_num(prof, "steady_compute_s") > 0);
    /* The first decision is the profile's, and it scales out. Then the phases, from the scale
     * events ("...: A -> B workers at step N"). */
    json_t *first = NULL, *e;
    size_t i;
    long long pushes = 0, from = 0, epochs_done = 0;
    unsigned w = 1, changes = 0;
    json_array_foreach(json_object_get(j, "events"), i, e) {
        if (!first && !strcmp(ct_str(e, "kind"), "decision"))
            first = e;
        const char *m = ct_str(e, "message");
        unsigned a, b;
        long long step;
        if (!strcmp(ct_str(e, "kind"), "scale") &&
            sscanf(m, "%*[^:]: %u -> %u workers at step %lld", &a, &b, &step) == 3) {
            ck_assert_int_eq(a, w);
            if (changes++ == 0) {
                ck_assert_int_eq(step, at);
                ck_assert_msg(strstr(m, "after the profile") != NULL, "%s", m);
            } else {
                /* A later change comes at an epoch boundary of the phase it ends: whole
                 * epochs of that phase's steps per epoch since the phase began. */
                long long spe = (TRAIN_ROWS / w) / 32;
                ck_assert_msg((step - from) % spe == 0, "%s: %lld steps since step %lld are "
                              "not whole epochs of %lld", m, step - from, from, spe);
                epochs_done += (step - from) / spe;
            }
            pushes += (step - from) * w;
            from = step;
            w = b;
        }
    }
    ck_assert_ptr_nonnull(first);
    ck_assert_msg(json_is_true(json_object_get(first, "profile")), "first decision: %s",
                  ct_str(first, "message"));
    ck_assert_int_eq((long long)ct_num(first, "step"), at);
    ck_assert_msg(!strcmp(ct_str(first, "verdict"), "change"), "first decision: %s",
                  ct_str(first, "message"));
    ck_assert_int_gt((int)ct_num(first, "workers"), 1);
    ck_assert_msg(strstr(ct_str(first, "message"), "profiling") != NULL, "%s",
                  ct_str(first, "message"));
    ck_assert_uint_ge(changes, 1);
    ck_assert_int_eq((int)ct_num(j, "workers"), (int)w);
    /* All 3 epochs were trained after the profile's extra steps (the last phase's epochs
     * end at total_steps), each recorded once, the first already on the new fan-out. */
    long long total = (long long)ct_num(j, "total_steps");
    ck_assert_int_eq((int)ct_num(j, "epoch"), 3);
    json_t *series = json_object_get(j, "series");
    ck_assert_int_eq((int)json_array_size(series), 3);
    ck_assert_int_gt((int)ct_num(json_array_get(series, 0), "workers"), 1);
    /* The profile's steps came on top: from the profile on, the phases trained exactly the 3
     * epochs, the last phase the epochs the earlier ones left, at its own steps per epoch. */
    long long spe_last = (TRAIN_ROWS / w) / 32;
    ck_assert_int_eq((long long)ct_num(j, "steps_per_epoch"), spe_last);
    ck_assert_int_lt(epochs_done, 3);
    ck_assert_int_eq(total, from + (3 - epochs_done) * spe_last);
    /* Exactly once over the phases. */
    check_once(j, pushes + (total - from) * w);
    /* The profile's record comes back from the journal after a restart. */
    ck_assert_int_eq(test_daemon_stop(&coord), 0);
    char dd[600], path[128];
    snprintf(dd, sizeof dd, "%s/data", root);
    ck_assert_int_eq(ct_coord_start(&coord, dd, NULL), 0);
    json_t *after = NULL;
    snprintf(path, sizeof path, "/api/jobs/%s", id);
    ck_assert_int_eq(ct_http_json(coord.port, "GET", path, NULL, NULL, &after), 200);
    json_t *p2 = json_object_get(after, "profile");
    ck_assert_msg(json_is_object(p2), "no profile after the restart");
    ck_assert_int_eq((long long)ct_num(p2, "step"), at);
    ck_assert(ct_num(p2, "compute_s") == ct_num(prof, "compute_s"));
    json_decref(after);
    json_decref(j);
    free(id);
}
END_TEST

START_TEST(budget_hard_stop)
{
    /* 4 workers at 1769 MB cost about $0.00012 a second: a $0.0004 budget lasts a few seconds
     * of a job that would need far more. */
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"model\":\"mlp:784-256-128-10\",\"dataset\":\"%s\",\"epochs\":200,\"workers\":4,"
             "\"shards\":2,\"min_workers\":4,\"batch_size\":16,\"budget_usd\":0.0004}",
             data);
    char *id = submit(spec);
    json_t *j = wait_end(id, 180, "stopped");
    double cost = ct_num(j, "cost_usd");
    ck_assert_msg(cost > 0 && cost <= 0.0004, "cost $%.6f past the $0.0004 budget", cost);
    ck_assert_msg(strstr(ct_str(j, "reason"), "budget") != NULL, "reason: %s", ct_str(j, "reason"));
    ck_assert_msg(ct_num(j, "step") < ct_num(j, "total_steps") || ct_num(j, "total_steps") == 0,
                  "the job should have stopped early");
    /* Every worker ended at the same step, and the model of that step was saved. Ranks that
     * left at a scale-in (the scheduler may move within its bounds) stopped there: earlier,
     * or at the same step when the budget stop came before the next step was trained. */
    json_t *ranks = json_object_get(j, "ranks");
    long long step0 = (long long)ct_num(json_array_get(ranks, 0), "next_step");
    ck_assert_int_eq(step0, (long long)ct_num(j, "step"));
    int active = 0;
    for (size_t r = 0; r < json_array_size(ranks); r++) {
        json_t *x = json_array_get(ranks, r);
        if (!json_is_true(json_object_get(x, "active"))) {
            ck_assert_int_le((long long)ct_num(x, "next_step"), step0);
            continue;
        }
        active++;
        ck_assert_int_eq((long long)ct_num(x, "next_step"), step0);
    }
    ck_assert_int_eq(active, (int)ct_num(j, "workers"));
    ck_assert(json_is_string(json_object_get(j, "model")));
    const char *mp = ct_str(j, "model");
    struct smlt_model *m = NULL;
    char err[512];
    ck_assert_int_eq(smlt_model_read(mp, &m, err, sizeof err), 0);
    ck_assert_int_eq(smlt_model_step(m), (uint64_t)step0);
    smlt_model_free(m);
    json_decref(j);
    free(id);
}
END_TEST

START_TEST(budget_stop_inside_profile)
{
    /* 50 ms a step (chaos), 750 steps an epoch: the profile's barrier is at step 75, 3.75 s
     * away, but three seconds of burn ($0.000035 a second) already reach the budget at the
     * first tick. The stop must not wait for the profile's barrier (the shards only ever move
     * a freeze later): the job stops where it is, within its budget. */
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"model\":\"mlp:784-64-10\",\"dataset\":\"%s\",\"epochs\":2,\"workers\":1,"
             "\"shards\":1,\"batch_size\":8,\"budget_usd\":0.0001,"
             "\"chaos\":{\"slow_rank\":0,\"slow_ms\":50}}",
             data);
    char *id = submit(spec);
    json_t *j = wait_end(id, 120, "stopped");
    double cost = ct_num(j, "cost_usd");
    ck_assert_msg(cost > 0 && cost <= 0.0001, "cost $%.6f past the $0.0001 budget", cost);
    ck_assert_msg(json_is_null(json_object_get(j, "profile")), "the profile ran to its end");
    ck_assert_int_lt((long long)ct_num(j, "step"), 75);
    ck_assert(json_is_string(json_object_get(j, "model")));
    json_decref(j);
    free(id);
}
END_TEST

START_TEST(straggler_replaced)
{
    /* Rank 1's first instance is a slow host (10 ms more per step). The job has no deadline
     * or budget, so its ranks do not stop at boundaries: the coordinator must notice the
     * straggler from the progress reports, set a barrier and replace the instance there. */
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"model\":\"mlp:784-64-10\",\"dataset\":\"%s\",\"epochs\":4,\"workers\":2,"
             "\"shards\":1,\"batch_size\":32,\"optimizer\":{\"kind\":\"momentum\",\"lr\":0.05},"
             "\"chaos\":{\"slow_rank\":1,\"slow_ms\":10}}",
             data);
    char *id = submit(spec);
    json_t *j = wait_end(id, 240, "succeeded");
    ck_assert_msg(events_of(j, "straggler", "rank 1") >= 1, "no straggler event");
    /* Rank 1 ran on a second instance; rank 0 kept its one invocation. */
    json_t *ranks = json_object_get(j, "ranks");
    ck_assert_int_ge((long long)ct_num(json_array_get(ranks, 1), "invocations"), 2);
    /* Nothing lost or doubled through the barrier. */
    check_once(j, 2 * (long long)ct_num(j, "total_steps"));
    json_decref(j);
    free(id);
}
END_TEST

START_TEST(statistical_efficiency)
{
    /* 5 epochs stated at 2 workers x 32; after the first (or the next boundary after the
     * request: epochs take a fraction of a second, hence 5, not 3), 8 workers (a 4x larger
     * global batch):
     * with the noise scale the shards measure, each epoch now counts for less, so the job
     * trains more than 5 data epochs, says why, and still counts every push once. */
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"model\":\"mlp:784-64-10\",\"dataset\":\"%s\",\"epochs\":5,\"workers\":2,"
             "\"shards\":1,\"max_workers\":8,\"batch_size\":32,\"statistical_efficiency\":true,"
             "\"optimizer\":{\"kind\":\"momentum\",\"lr\":0.05}}",
             data);
    char *id = submit(spec);
    json_t *j = ct_wait_until(coord.port, id, 120, epoch_done);
    ck_assert_ptr_nonnull(j);
    json_decref(j);
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s/scale", id);
    ck_assert_int_eq(ct_http(coord.port, "POST", path, CT_ADMIN, "{\"workers\":8}", NULL), 200);
    j = wait_end(id, 240, "succeeded");
    ck_assert_int_eq((int)ct_num(j, "workers"), 8);
    int target = (int)ct_num(j, "epochs_target");
    ck_assert_msg(target > 5, "trained %d epochs; a 4x batch needs more than 5", target);
    ck_assert_int_eq((int)ct_num(j, "epoch"), target);
    ck_assert_int_eq((int)ct_num(j, "max_epochs"), 5);
    /* Counted in reference epochs, the job did its 5 (the last count may use a newer noise
     * estimate than the plan did, so allow a little either way). */
    double ref = ct_num(j, "reference_epochs_done");
    ck_assert_msg(ref > 4.5 && ref < 6.0, "reference epochs done %.3f", ref);
    ck_assert_msg(ct_num(j, "noise_scale") > 0, "no noise scale");
    ck_assert_int_ge(events_of(j, "efficiency", "noise scale"), 1);
    check_once(j, -1);
    json_decref(j);
    free(id);
}
END_TEST

START_TEST(statistical_efficiency_target)
{
    /* The target is reached at the last planned epoch: rank 0 reports it after the other rank
     * has parked at the boundary; the job must end there, not wait for it forever. */
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"model\":\"mlp:784-64-10\",\"dataset\":\"%s\",\"epochs\":1,\"workers\":2,"
             "\"shards\":1,\"batch_size\":32,\"statistical_efficiency\":true,"
             "\"target_accuracy\":0.05,\"optimizer\":{\"kind\":\"momentum\",\"lr\":0.05}}",
             data);
    char *id = submit(spec);
    json_t *j = wait_end(id, 60, "succeeded");
    ck_assert_int_eq((int)ct_num(j, "epoch"), 1);
    json_decref(j);
    free(id);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("adaptive");
    TCase *tc = tcase_create("adaptive");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 400);
    tcase_add_test(tc, live_fanout_and_shards);
    tcase_add_test(tc, profile_then_scale_out);
    tcase_add_test(tc, budget_hard_stop);
    tcase_add_test(tc, budget_stop_inside_profile);
    tcase_add_test(tc, straggler_replaced);
    tcase_add_test(tc, statistical_efficiency);
    tcase_add_test(tc, statistical_efficiency_target);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
