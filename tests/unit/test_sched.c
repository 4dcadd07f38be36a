/* test_sched.c: Check suite for the adaptive scheduler (coordinator/sched*.c).
 *
 * The model tests feed measurements generated from a known ground truth written in the
 * model's own terms (so the fit can recover it): without noise the coefficients come back
 * within a few percent and predictions for configurations never measured match the truth;
 * with seeded noise the predictions stay close. The policy tests then let the scheduler see
 * such a truth and check its decisions against a brute-force search over the same truth:
 * deadline -> no more expensive than the cheapest configuration that meets it with room to
 * spare; budget -> within it and about as fast as the fastest within it; both in conflict ->
 * it says so and keeps the budget; noisy repeats -> no flapping; the minimum interval; the
 * budget stop; bounded moves; hostile inputs. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"
#include "sched_int.h"

/* ---- a ground truth in the model's terms -------------------------------------------------- */

struct truth {
    double t1, serial;   /* compute per step at 1 vCPU; the part more vCPUs do not speed up */
    double w1;           /* per-worker compute CV */
    double k0, klink, kshard;
    double restart_s;
};

static const struct truth TRUTH = {8.0, 0.3, 0.08, 0.02, 1.3, 2.0, 3.0};

static double t_compute(const struct sched *s, const struct truth *t, uint32_t mb)
{
    double cpu = sched__cpu(s, mb);
    return t->t1 * (t->serial / (cpu < 1 ? cpu : 1) + (1 - t->serial) / cpu);
}

/* The true step and its parts, as a coordinator would measure them. */
static double t_step(const struct sched *s, const struct truth *t, const struct sched_config *c,
                     double *compute, double *slowest, double *comm)
{
    double cmp = t_compute(s, t, c->memory_mb);
    double slow = cmp * (1 + t->w1 * sched__h(c->workers));
    double link = t->klink * sched__link_s(s, c->memory_mb);
    double shard = t->kshard * sched__shard_s(s, c->workers, c->shards);
    double x = t->k0 + (link > shard ? link : shard);
    double core = slow + x;
    if (compute)
        *compute = cmp;
    if (slowest)
        *slowest = slow;
    if (comm)
        *comm = core - cmp;
    return core * (1 + t->restart_s / s->job.time_limit_s);
}

static double t_time(const struct sched *s, const struct truth *t, const struct sched_config *c,
                     double epochs)
{
    double steps = epochs * (double)s->job.samples_per_epoch / ((double)c->workers * s->job.batch);
    return steps * t_step(s, t, c, NULL, NULL, NULL);
}

/* Deterministic noise: a 64-bit LCG and Box-Muller. */
static uint64_t rng_state = 42;
static double urand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void)
{
    return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand());
}

static void observe_truth(struct sched *s, const struct truth *t, const struct sched_config *c,
                          uint64_t steps, double noise)
{
    struct sched_obs o;
    memset(&o, 0, sizeof(o));
    o.workers = c->workers;
    o.shards = c->shards;
    o.memory_mb = c->memory_mb;
    o.steps = steps;
    double cmp, slow, comm;
    double step = t_step(s, t, c, &cmp, &slow, &comm);
    double f = noise > 0 ? exp(noise * nrand()) : 1.0;
    double g = noise > 0 ? exp(noise * nrand()) : 1.0;
    o.compute_s = cmp * f;
    o.slowest_compute_s = slow * f;
    o.comm_s = comm * g;
    o.step_s = step / (cmp + comm) * (o.compute_s + o.comm_s);
    sched_observe(s, &o);
}

static void job_init(struct sched_job *j)
{
    memset(j, 0, sizeof(*j));
    j->model_bytes = 100000000;
    j->samples_per_epoch = 1000000;
    j->batch = 32;
    j->total_epochs = 2;
    j->min_workers = 1;
    j->max_workers = 256;
    j->min_shards = 1;
    j->max_shards = 32;
    j->memory_options[0] = 1769;
    j->memory_options[1] = 3538;
    j->memory_options[2] = 7076;
    j->n_memory_options = 3;
    j->time_limit_s = 900;
    j->price_gb_s = 0.0000166667;
    j->price_request = 0.0000002;
    j->price_ps_node_hour = 0.0208;
    j->cold_start_s = 2.0;
}

static const uint32_t GW[] = {2, 8, 32, 128};
static const uint32_t GS[] = {1, 4, 16};

static void observe_grid(struct sched *s, const struct truth *t, double noise, int reps)
{
    for (int r = 0; r < reps; r++)
        for (size_t a = 0; a < 4; a++)
            for (size_t b = 0; b < 3; b++)
                for (uint32_t m = 0; m < s->job.n_memory_options; m++) {
                    struct sched_config c = {GW[a], GS[b], s->job.memory_options[m]};
                    observe_truth(s, t, &c, 50, noise);
                }
}

#define ck_assert_rel(a, b, tol)                                                                   \
    ck_assert_msg(fabs((a) - (b)) <= (tol) * fabs(b), "%s = %.6g, want %.6g within %.0f%%", #a,  \
                  (double)(a), (double)(b), 100.0 * (tol))

/* ---- NNLS --------------------------------------------------------------------------------- */

START_TEST(nnls_exact_and_clamped)
{
    /* Exact: A x = b with x = (1, 2, 3). */
    double A[] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1};
    double b[] = {1, 2, 3, 6};
    double x[3];
    ck_assert_int_eq(sched__nnls(A, 4, 3, b, x), 0);
    ck_assert(fabs(x[0] - 1) < 1e-9 && fabs(x[1] - 2) < 1e-9 && fabs(x[2] - 3) < 1e-9);
    /* Unconstrained least squares would make x1 negative: y = 2*a - 1*b fitted with a, b >= 0. */
    double A2[] = {1, 0, 0, 1, 1, 1};
    double b2[] = {2, -1, 1};
    ck_assert_int_eq(sched__nnls(A2, 3, 2, b2, x), 0);
    ck_assert(x[1] == 0.0);
    ck_assert(fabs(x[0] - 1.5) < 1e-9); /* min (a-2)^2 + 1 + (a-1)^2 */
    /* Bad sizes. */
    ck_assert_int_eq(sched__nnls(A, 0, 3, b, x), -1);
    ck_assert_int_eq(sched__nnls(A, 4, SCHED_NNLS_MAX_COLS + 1, b, x), -1);
    ck_assert_int_eq(sched__nnls(NULL, 4, 3, b, x), -1);
}
END_TEST

/* ---- the fit ------------------------------------------------------------------------------ */

START_TEST(fit_recovers_truth)
{
    struct sched_job j;
    job_init(&j);
    struct sched *s = sched_new(&j);
    ck_assert_ptr_nonnull(s);
    observe_grid(s, &TRUTH, 0, 1);
    const struct sched_fit *f = &s->fit;
    ck_assert(f->have_compute);
    ck_assert_rel(f->c_ser, TRUTH.t1 * TRUTH.serial, 0.05);
    ck_assert_rel(f->c_par, TRUTH.t1 * (1 - TRUTH.serial), 0.05);
    ck_assert_rel(f->w1 + f->w2 * log(128) / sched__h(128), TRUTH.w1, 0.05);
    ck_assert_rel(f->k_shard, TRUTH.kshard, 0.05);
    for (uint32_t m = 0; m < 3; m++)
        ck_assert_rel(f->k_link[m], TRUTH.klink, 0.05);
    ck_assert_rel(f->restart_s, TRUTH.restart_s, 0.1);
    ck_assert_uint_eq(sched_n_configs(s), 36);
    /* Configurations never measured: more workers, shards and memory than any seen. */
    struct sched_config unseen[] = {{512, 32, 3538}, {3, 2, 7076}, {200, 5, 1769}, {64, 32, 5000}};
    for (size_t i = 0; i < sizeof(unseen) / sizeof(unseen[0]); i++) {
        double want = t_step(s, &TRUTH, &unseen[i], NULL, NULL, NULL);
        double cmp, comm;
        double got = sched_predict_step(s, &unseen[i], &cmp, &comm);
        ck_assert_rel(got, want, 0.03);
        ck_assert_rel(cmp, t_compute(s, &TRUTH, unseen[i].memory_mb), 0.05);
    }
    char buf[1024];
    sched_describe(s, buf, sizeof(buf));
    ck_assert_ptr_nonnull(strstr(buf, "36 configurations"));
    sched_free(s);
}
END_TEST

START_TEST(fit_with_noise)
{
    struct sched_job j;
    job_init(&j);
    struct sched *s = sched_new(&j);
    rng_state = 7;
    observe_grid(s, &TRUTH, 0.05, 3); /* 5 % lognormal noise, three measurements each */
    struct sched_config probe[] = {{512, 32, 3538}, {3, 2, 7076}, {200, 5, 1769}, {8, 4, 3538}};
    for (size_t i = 0; i < sizeof(probe) / sizeof(probe[0]); i++) {
        double want = t_step(s, &TRUTH, &probe[i], NULL, NULL, NULL);
        ck_assert_rel(sched_predict_step(s, &probe[i], NULL, NULL), want, 0.08);
    }
    ck_assert_rel(s->fit.k_shard, TRUTH.kshard, 0.15);
    sched_free(s);
}
END_TEST

/* One measured configuration cannot split link from shard time; the priors do, and a second
 * configuration with more workers per shard corrects them (the profile's second probe). */
START_TEST(fit_profile_two_points)
{
    struct sched_job j;
    job_init(&j);
    struct sched *s = sched_new(&j);
    struct sched_config c0 = {4, 2, 1769}, next;
    uint32_t steps = 0;
    ck_assert_int_eq(sched_profile_next(s, &c0, &next, &steps), 1);
    ck_assert(next.workers == 4 && next.shards == 2 && next.memory_mb == 1769 && steps >= 2);
    observe_truth(s, &TRUTH, &next, steps, 0);
    /* the second probe: 4x the workers on a quarter of the shards, anchored at c0 whatever the
     * caller passes now */
    struct sched_config elsewhere = {100, 9, 7076};
    ck_assert_int_eq(sched_profile_next(s, &elsewhere, &next, &steps), 1);
    ck_assert(next.workers == 16 && next.shards == 1 && next.memory_mb == 1769);
    observe_truth(s, &TRUTH, &next, steps, 0);
    ck_assert_int_eq(sched_profile_next(s, &c0, &next, &steps), 1);
    ck_assert(next.workers == 4 && next.shards == 2 && next.memory_mb == 3538);
    observe_truth(s, &TRUTH, &next, steps, 0);
    ck_assert_int_eq(sched_profile_next(s, &c0, &next, &steps), 0);
    /* The shard coefficient was learnt from the 16-on-1 probe: a shard-bound configuration far
     * away is predicted within 15 %. */
    struct sched_config far = {128, 4, 1769};
    ck_assert_rel(sched_predict_step(s, &far, NULL, NULL),
                  t_step(s, &TRUTH, &far, NULL, NULL, NULL), 0.15);
    sched_free(s);
}
END_TEST

/* ---- the policy --------------------------------------------------------------------------- */

static struct sched *trained(struct sched_job *j)
{
    struct sched *s = sched_new(j);
    ck_assert_ptr_nonnull(s);
    rng_state = 11;
    observe_grid(s, &TRUTH, 0, 1);
    return s;
}

static void state_at(struct sched_state *st, const struct sched_config *c, double elapsed,
                     double spent)
{
    memset(st, 0, sizeof(*st));
    st->elapsed_s = elapsed;
    st->spent_usd = spent;
    st->workers = c->workers;
    st->shards = c->shards;
    st->memory_mb = c->memory_mb;
    st->since_change_s = 1e6;
}

/* Brute force over the truth: cheapest meeting `deadline` (seconds to go) or fastest within
 * `budget` ($ to come). */
static void brute(const struct sched *s, double epochs, double deadline, double budget,
                  struct sched_config *best, double *best_time, double *best_cost)
{
    int found = 0;
    for (uint32_t w = s->job.min_workers; w <= s->job.max_workers; w++)
        for (uint32_t sh = s->job.min_shards; sh <= s->job.max_shards; sh++)
            for (uint32_t m = 0; m < s->job.n_memory_options; m++) {
                struct sched_config c = {w, sh, s->job.memory_options[m]};
                double t = t_time(s, &TRUTH, &c, epochs), cost = sched__run_cost(s, &c, t);
                if (deadline > 0 && t > deadline)
                    continue;
                if (budget > 0 && cost > budget)
                    continue;
                int better = !found || (deadline > 0 ? cost < *best_cost : t < *best_time);
                if (better) {
                    *best = c;
                    *best_time = t;
                    *best_cost = cost;
                    found = 1;
                }
            }
    ck_assert_msg(found, "brute force found nothing");
}

START_TEST(policy_deadline_cheapest_meeting_it)
{
    struct sched_job j;
    job_init(&j);
    j.deadline_s = 4 * 3600;
    struct sched *s = trained(&j);
    struct sched_config cur = {2, 1, 1769};
    struct sched_state st;
    state_at(&st, &cur, 600, 1.0);
    struct sched_decision d;
    sched_decide(s, &st, &d);
    ck_assert_int_eq(d.verdict, SCHED_CHANGE);
    ck_assert_int_eq(d.deadline_ok, 1);
    double t = t_time(s, &TRUTH, &d.next, 2.0), cost = sched__run_cost(s, &d.next, t);
    ck_assert_msg(600 + t <= j.deadline_s, "true finish %.0f s misses the deadline", 600 + t);
    /* No more expensive than the cheapest configuration that meets it with 20 % to spare. */
    struct sched_config bc;
    double bt, bcost;
    brute(s, 2.0, (j.deadline_s - 600) / 1.2, 0, &bc, &bt, &bcost);
    ck_assert_msg(cost <= 1.02 * bcost, "chose %u/%u/%u at $%.2f; %u/%u/%u costs $%.2f",
                  d.next.workers, d.next.shards, d.next.memory_mb, cost, bc.workers, bc.shards,
                  bc.memory_mb, bcost);
    ck_assert_ptr_nonnull(strstr(d.reason, "deadline"));
    ck_assert_ptr_nonnull(strstr(d.reason, "workers"));
    ck_assert_rel(d.predicted_cost_usd, 1.0 + cost, 0.05);
    sched_free(s);
}
END_TEST

START_TEST(policy_budget_fastest_within_it)
{
    struct sched_job j;
    job_init(&j);
    struct sched *s0 = trained(&j);
    /* A budget 40 % above the cheapest configuration's cost. */
    struct sched_config cc;
    double ct, cheapest;
    brute(s0, 2.0, 1e12, 0, &cc, &ct, &cheapest);
    sched_free(s0);
    j.budget_usd = 1.4 * cheapest;
    struct sched *s = trained(&j);
    struct sched_config cur = {2, 1, 7076};
    struct sched_state st;
    state_at(&st, &cur, 100, 0.0);
    struct sched_decision d;
    sched_decide(s, &st, &d);
    ck_assert_int_eq(d.verdict, SCHED_CHANGE);
    ck_assert_int_eq(d.budget_ok, 1);
    double t = t_time(s, &TRUTH, &d.next, 2.0), cost = sched__run_cost(s, &d.next, t);
    ck_assert_msg(cost <= j.budget_usd, "true cost $%.2f over the $%.2f budget", cost,
                  j.budget_usd);
    struct sched_config bf;
    double bt, bcost;
    brute(s, 2.0, 0, j.budget_usd / 1.15, &bf, &bt, &bcost);
    ck_assert_msg(t <= 1.02 * bt, "chose %u/%u/%u: %.0f s; %u/%u/%u takes %.0f s",
                  d.next.workers, d.next.shards, d.next.memory_mb, t, bf.workers, bf.shards,
                  bf.memory_mb, bt);
    ck_assert_ptr_nonnull(strstr(d.reason, "budget"));
    sched_free(s);
}
END_TEST

START_TEST(policy_both_conflict_keeps_budget)
{
    struct sched_job j;
    job_init(&j);
    struct sched *s0 = trained(&j);
    /* The fastest possible finish, then a deadline at 1.5x it and a budget that only the
     * cheapest configurations fit. */
    struct sched_config fc;
    double ft, fcost;
    brute(s0, 2.0, 0, 1e9, &fc, &ft, &fcost);
    struct sched_config cc;
    double ct = 0, ccost = 0;
    brute(s0, 2.0, 1e12, 0, &cc, &ct, &ccost); /* cheapest of all */
    sched_free(s0);
    j.deadline_s = 1.5 * ft;
    j.budget_usd = 1.05 * ccost;
    struct sched *s = trained(&j);
    struct sched_config cur = {64, 8, 3538};
    struct sched_state st;
    state_at(&st, &cur, 0, 0);
    struct sched_decision d;
    sched_decide(s, &st, &d);
    ck_assert_int_ne(d.verdict, SCHED_STOP_BUDGET);
    ck_assert_int_eq(d.deadline_ok, 0);
    ck_assert_int_eq(d.budget_ok, 1);
    ck_assert_msg(strstr(d.reason, "cannot both be met") || strstr(d.reason, "no configuration"),
                  "reason: %s", d.reason);
    ck_assert_ptr_nonnull(strstr(d.reason, "finish late"));
    double t = t_time(s, &TRUTH, &d.next, 2.0);
    ck_assert(sched__run_cost(s, &d.next, t) <= j.budget_usd);
    sched_free(s);
}
END_TEST

START_TEST(policy_no_flapping_on_noise)
{
    struct sched_job j;
    job_init(&j);
    j.deadline_s = 4 * 3600;
    struct sched *s = trained(&j);
    struct sched_config cur = {2, 1, 1769};
    struct sched_state st;
    state_at(&st, &cur, 600, 1.0);
    struct sched_decision d;
    sched_decide(s, &st, &d);
    ck_assert_int_eq(d.verdict, SCHED_CHANGE);
    cur = d.next;
    /* Now run it: 40 noisy measurements (8 % lognormal), a decision after each, time and money
     * advancing as the truth says. */
    double elapsed = 600 + 5, spent = 1.0, since = 0, done = 0;
    int changes = 0;
    rng_state = 99;
    for (int i = 0; i < 40; i++) {
        uint64_t steps = 40;
        double step = t_step(s, &TRUTH, &cur, NULL, NULL, NULL);
        observe_truth(s, &TRUTH, &cur, steps, 0.08);
        elapsed += steps * step;
        since += steps * step;
        spent += sched__run_cost(s, &cur, steps * step);
        done += (double)steps * cur.workers * j.batch / j.samples_per_epoch;
        if (done >= j.total_epochs - 0.05)
            break;
        state_at(&st, &cur, elapsed, spent);
        st.epochs_done = done;
        st.since_change_s = since;
        sched_decide(s, &st, &d);
        ck_assert_int_ne(d.verdict, SCHED_STOP_BUDGET);
        if (d.verdict == SCHED_CHANGE) {
            changes++;
            cur = d.next;
            since = 0;
        }
    }
    ck_assert_msg(changes <= 1, "%d changes on noise alone", changes);
    ck_assert_msg(elapsed <= j.deadline_s, "finished at %.0f s, deadline %.0f", elapsed,
                  j.deadline_s);
    sched_free(s);
}
END_TEST

START_TEST(policy_min_interval_and_bounded_moves)
{
    struct sched_job j;
    job_init(&j);
    j.deadline_s = 100 * 3600; /* loose: any change is an optimization, not a rescue */
    struct sched *s = trained(&j);
    struct sched_config cur = {128, 1, 1769}; /* shard-bound: far from the cheapest */
    struct sched_state st;
    state_at(&st, &cur, 600, 1.0);
    struct sched_decision d;
    sched_decide(s, &st, &d); /* the first decision may move anywhere */
    cur = (struct sched_config){128, 1, 1769};
    /* A change made 10 s ago: the next optimization waits for the minimum interval. */
    state_at(&st, &cur, 700, 2.0);
    st.since_change_s = 10;
    sched_decide(s, &st, &d);
    ck_assert_int_eq(d.verdict, SCHED_KEEP);
    ck_assert_ptr_nonnull(strstr(d.reason, "holding"));
    /* After the interval it moves, but at most 4x in workers and shards. */
    st.since_change_s = 3600;
    sched_decide(s, &st, &d);
    ck_assert_int_eq(d.verdict, SCHED_CHANGE);
    ck_assert(d.next.workers * 4 >= cur.workers && d.next.workers <= cur.workers * 4);
    ck_assert(d.next.shards <= cur.shards * 4);
    sched_free(s);
}
END_TEST

START_TEST(policy_budget_stop)
{
    struct sched_job j;
    job_init(&j);
    j.budget_usd = 50;
    struct sched *s = trained(&j);
    struct sched_config cur = {32, 4, 1769};
    struct sched_state st;
    state_at(&st, &cur, 3600, 49.9); /* 10 cents left: not an epoch's worth */
    st.epochs_done = 1.0;
    struct sched_decision d;
    sched_decide(s, &st, &d);
    ck_assert_int_eq(d.verdict, SCHED_STOP_BUDGET);
    ck_assert_ptr_nonnull(strstr(d.reason, "stopping"));
    /* A single step (about $0.01 here) would still fit: the epoch-level verdict stops at the
     * epoch boundary, the step-level check only when not even a step is left. */
    ck_assert_int_eq(sched_step_affordable(s, &st), 1);
    st.spent_usd = 49.999;
    ck_assert_int_eq(sched_step_affordable(s, &st), 0);
    /* With room left the step goes ahead. */
    st.spent_usd = 10;
    ck_assert_int_eq(sched_step_affordable(s, &st), 1);
    /* The per-step check leaves exactly the reserve: a step is allowed while a step and a half
     * plus a checkpoint fit. */
    double step = sched_predict_step(s, &cur, NULL, NULL);
    double reserve = sched__run_cost(s, &cur, 1.5 * step);
    st.spent_usd = j.budget_usd - reserve * 0.99;
    ck_assert_int_eq(sched_step_affordable(s, &st), 0);
    sched_free(s);
    /* Without a budget, always affordable. */
    j.budget_usd = 0;
    s = trained(&j);
    state_at(&st, &cur, 3600, 1e6);
    ck_assert_int_eq(sched_step_affordable(s, &st), 1);
    sched_free(s);
}
END_TEST

/* ---- edges and hostile input -------------------------------------------------------------- */

START_TEST(bad_bounds_refused)
{
    struct sched_job j;
    job_init(&j);
    j.min_workers = 0;
    ck_assert_ptr_null(sched_new(&j));
    job_init(&j);
    j.min_workers = 300;
    ck_assert_ptr_null(sched_new(&j));
    job_init(&j);
    j.max_shards = 0;
    ck_assert_ptr_null(sched_new(&j));
    job_init(&j);
    j.n_memory_options = 0;
    ck_assert_ptr_null(sched_new(&j));
    job_init(&j);
    j.n_memory_options = SCHED_MAX_MEMORY_OPTIONS + 1;
    ck_assert_ptr_null(sched_new(&j));
    job_init(&j);
    j.memory_options[1] = 1000; /* not ascending */
    ck_assert_ptr_null(sched_new(&j));
    job_init(&j);
    j.model_bytes = 0;
    ck_assert_ptr_null(sched_new(&j));
    job_init(&j);
    j.deadline_s = NAN;
    ck_assert_ptr_null(sched_new(&j));
    job_init(&j);
    j.budget_usd = -1;
    ck_assert_ptr_null(sched_new(&j));
    ck_assert_ptr_null(sched_new(NULL));
    sched_free(NULL);
}
END_TEST

START_TEST(hostile_measurements_ignored)
{
    struct sched_job j;
    job_init(&j);
    j.deadline_s = 3600;
    struct sched *s = sched_new(&j);
    struct sched_config cur = {4, 2, 1769};
    struct sched_state st;
    state_at(&st, &cur, 0, 0);
    struct sched_decision d;
    sched_decide(s, &st, &d);
    ck_assert_int_eq(d.verdict, SCHED_KEEP);
    ck_assert_ptr_nonnull(strstr(d.reason, "no measurements"));
    struct sched_obs o = {4, 2, 1769, 10, NAN, 1, 1, 1, 0, 0};
    sched_observe(s, &o);
    o.step_s = INFINITY;
    sched_observe(s, &o);
    o.step_s = -1;
    sched_observe(s, &o);
    o.step_s = 1;
    o.steps = 0;
    sched_observe(s, &o);
    o.steps = 10;
    o.workers = 0;
    sched_observe(s, &o);
    sched_observe(s, NULL);
    sched_observe(NULL, &o);
    ck_assert_uint_eq(sched_n_configs(s), 0);
    /* NaN parts are dropped, the step is kept. */
    struct sched_obs ok = {4, 2, 1769, 10, 2.0, NAN, -3, INFINITY, NAN, 0};
    sched_observe(s, &ok);
    ck_assert_uint_eq(sched_n_configs(s), 1);
    ck_assert(isfinite(sched_predict_step(s, &cur, NULL, NULL)));
    /* A state with zeros, and a memory size outside the options, do not crash. */
    memset(&st, 0, sizeof(st));
    sched_decide(s, &st, &d);
    ck_assert(d.reason[0] != 0);
    struct sched_config odd = {3, 3, 999999};
    ck_assert(isfinite(sched_predict_step(s, &odd, NULL, NULL)));
    struct sched_config zero = {0, 0, 0};
    ck_assert(sched_predict_step(s, &zero, NULL, NULL) == 0);
    sched_decide(NULL, &st, &d);
    sched_decide(s, NULL, &d);
    sched_decide(s, &st, NULL);
    char tiny[8];
    sched_describe(s, tiny, sizeof(tiny));
    ck_assert(strlen(tiny) < sizeof(tiny));
    sched_describe(s, NULL, 0);
    /* More distinct configurations than it remembers: the oldest go. */
    for (uint32_t w = 1; w <= SCHED_MAX_GROUPS + 10; w++) {
        struct sched_obs q = {w, 1, 1769, 10, 1.0 + w * 0.01, 0.5, 0.5, 0.5, 0, 0};
        sched_observe(s, &q);
    }
    ck_assert_uint_eq(sched_n_configs(s), SCHED_MAX_GROUPS);
    sched_free(s);
}
END_TEST

START_TEST(done_job_keeps)
{
    struct sched_job j;
    job_init(&j);
    j.deadline_s = 3600;
    struct sched *s = trained(&j);
    struct sched_config cur = {4, 2, 1769};
    struct sched_state st;
    state_at(&st, &cur, 100, 1);
    st.epochs_done = 2.0;
    struct sched_decision d;
    sched_decide(s, &st, &d);
    ck_assert_int_eq(d.verdict, SCHED_KEEP);
    ck_assert_ptr_nonnull(strstr(d.reason, "done"));
    sched_free(s);
}
END_TEST

/* Statistical efficiency: with the epochs stated at a reference global batch and a measured
 * gradient noise scale, a larger fan-out needs more epochs; the policy must count them. */
START_TEST(policy_statistical_efficiency)
{
    ck_assert_double_eq(sched_epoch_factor(32, 2, 2, 2048), 1.0);
    ck_assert_double_eq(sched_epoch_factor(32, 0, 64, 2048), 1.0);
    ck_assert_double_eq(sched_epoch_factor(32, 2, 64, 0), 1.0);
    ck_assert_rel(sched_epoch_factor(32, 2, 64, 2048), 2.0 / (1.0 + 64.0 / 2048), 1e-12);
    ck_assert(sched_epoch_factor(32, 4, 2, 2048) < 1.0); /* a smaller batch needs fewer */

    struct sched_job j;
    job_init(&j);
    j.deadline_s = 12 * 3600;
    j.ref_workers = 2;
    struct sched *plain = trained(&j);
    struct sched *eff = trained(&j);
    /* The shards' estimates, noisy around 1024 samples: a global batch of 64 workers' is
     * worth a third of the reference's per sample. */
    const double ns = 1024;
    for (int i = 0; i < 8; i++) {
        struct sched_config c = {8, 4, 1769};
        struct sched_obs o;
        memset(&o, 0, sizeof(o));
        o.workers = c.workers;
        o.shards = c.shards;
        o.memory_mb = c.memory_mb;
        o.steps = 50;
        double cmp, slow, comm;
        o.step_s = t_step(eff, &TRUTH, &c, &cmp, &slow, &comm);
        o.compute_s = cmp;
        o.slowest_compute_s = slow;
        o.comm_s = comm;
        o.noise_scale = ns * exp(0.2 * nrand());
        sched_observe(eff, &o);
    }
    ck_assert_rel(sched_noise_scale(eff), ns, 0.25);
    ck_assert_double_eq(sched_noise_scale(plain), 0);
    struct sched_config cur = {2, 1, 1769};
    struct sched_state st;
    state_at(&st, &cur, 600, 1.0);
    struct sched_decision dp, de;
    sched_decide(plain, &st, &dp);
    sched_decide(eff, &st, &de);
    ck_assert_int_eq(de.verdict, SCHED_CHANGE);
    ck_assert_ptr_nonnull(strstr(de.reason, "noise scale"));
    ck_assert_ptr_null(strstr(dp.reason, "noise scale"));
    /* Counting the extra epochs makes large fan-out dearer: it runs fewer workers ... */
    ck_assert_msg(de.next.workers < dp.next.workers, "%u workers with the noise scale, %u without",
                  de.next.workers, dp.next.workers);
    /* ... and it is as cheap as the truth allows while meeting the deadline. */
    double best = INFINITY, cost_of_choice = 0, t_choice = 0;
    for (uint32_t w = j.min_workers; w <= j.max_workers; w++)
        for (uint32_t sh = j.min_shards; sh <= j.max_shards; sh++)
            for (uint32_t m = 0; m < j.n_memory_options; m++) {
                struct sched_config c = {w, sh, j.memory_options[m]};
                double f = sched_epoch_factor(j.batch, j.ref_workers, w, ns);
                double t = t_time(eff, &TRUTH, &c, 2.0 * f), cost = sched__run_cost(eff, &c, t);
                if (c.workers == de.next.workers && c.shards == de.next.shards &&
                    c.memory_mb == de.next.memory_mb)
                    cost_of_choice = cost, t_choice = t;
                if (600 + t * 1.2 <= j.deadline_s && cost < best)
                    best = cost;
            }
    ck_assert_msg(600 + t_choice <= j.deadline_s, "true finish %.0f s misses the deadline",
                  600 + t_choice);
    ck_assert_msg(cost_of_choice <= 1.03 * best, "chose $%.2f; $%.2f was possible", cost_of_choice,
                  best);
    sched_free(plain);
    sched_free(eff);
}
END_TEST

static Suite *sched_suite(void)
{
    Suite *su = suite_create("sched");
    TCase *tc = tcase_create("model");
    tcase_add_test(tc, nnls_exact_and_clamped);
    tcase_add_test(tc, fit_recovers_truth);
    tcase_add_test(tc, fit_with_noise);
    tcase_add_test(tc, fit_profile_two_points);
    suite_add_tcase(su, tc);
    tc = tcase_create("policy");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, policy_deadline_cheapest_meeting_it);
    tcase_add_test(tc, policy_budget_fastest_within_it);
    tcase_add_test(tc, policy_both_conflict_keeps_budget);
    tcase_add_test(tc, policy_no_flapping_on_noise);
    tcase_add_test(tc, policy_min_interval_and_bounded_moves);
    tcase_add_test(tc, policy_budget_stop);
    tcase_add_test(tc, policy_statistical_efficiency);
    suite_add_tcase(su, tc);
    tc = tcase_create("edges");
    tcase_add_test(tc, bad_bounds_refused);
    tcase_add_test(tc, hostile_measurements_ignored);
    tcase_add_test(tc, done_job_keeps);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(sched_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
