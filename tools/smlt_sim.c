/* smlt_sim.c: `smlt-sim`, the scale simulator: runs the coordinator's scheduler
 * (coordinator/sched.h) against a simulated serverless platform (tools/sim_platform.c) of up
 * to thousands of function workers, and compares what it chose with fixed configurations.
 *
 * For each scenario (a job with a deadline and/or a budget) it runs:
 *   adaptive     the scheduler: profile, then a decision after every epoch
 *   fixed        every configuration of a grid (W = 1, 2, 4, ..., max; S = 1, 2, 4, ..., max)
 *                at the job's default memory size, for the whole job
 *   best_fixed   the grid's best in hindsight: the cheapest that met the deadline (and the
 *                budget), or with only a budget the fastest within it
 *   max_fanout   the naive choice: the most workers and the most shards
 *   smlt_bo      an SMLT-style Bayesian-optimisation scheduler (sim_bo.h), for comparison
 * and checks the targets: the deadline met whenever the best fixed configuration meets it, cost
 * within 15 % of the best fixed configuration's (with only a budget: finish time within 15 %),
 * and at least 2x cheaper than max fan-out.
 *
 * Without arguments (or with --all) it runs several scenarios for both jobs and prints a
 * summary table; `--json` prints one object per line per scenario and configuration. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_platform.h"

#define MAX_GRID 256
#define MAX_SCEN 16

struct grid {
    struct sched_config c[MAX_GRID];
    struct sim_result r[MAX_GRID];
    int n;
};

struct scen {
    char name[48];
    double deadline_s, budget_usd;
};

struct opts {
    int json, verbose, all, model, accuracy;
    uint64_t seed;
    const char *job;
    double deadline_s, budget_usd, decide_every;
    double params, samples, flops, epochs;
    uint32_t batch;
    double noise_scale;   /* < 0: the job's own */
    uint32_t ref_workers; /* 0: the job's own */
    struct sched_config start;
    uint32_t max_workers, max_shards;
};

struct outcome {
    struct sim_result ad, bf, mf, bo;
    int bf_idx;
    int t_deadline, t_cost, t_fanout; /* 1 met, 0 missed, -1 not applicable */
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smlt-sim [options]\n"
            "Runs the adaptive scheduler against a simulated serverless platform and compares it\n"
            "with fixed configurations, the best fixed one in hindsight, max fan-out and an\n"
            "SMLT-style Bayesian-optimisation scheduler (docs/SCHEDULER.md).\n\n"
            "  --all                  several scenarios for both jobs and a summary (default)\n"
            "  --job NAME             resnet50 (25.6 M params, 1.28 M samples) | bert-small (66 M)\n"
            "  --params N --samples N --flops-per-sample X --epochs E --batch B\n"
            "                         a job of your own (or overrides of the named one)\n"
            "  --noise-scale N        the job's gradient noise scale in samples; a global\n"
            "                         batch B needs (1+B/N)/(1+B_ref/N) the epochs; 0: epochs\n"
            "                         are data passes whatever the batch [resnet50 32768,\n"
            "                         bert-small 4096]\n"
            "  --ref-workers N        the epochs are stated at N workers' global batch\n"
            "                         [resnet50 8 (256), bert-small 2 (32)]\n"
            "  --deadline T           seconds, or with units: 90m, 2h, 1h30m\n"
            "  --budget USD           a hard budget\n"
            "  --start W,S,MB         the configuration the adaptive run starts from [4,2,default]\n"
            "  --decide-every E       epochs between decisions, in (0, 1] [0.25]\n"
            "  --max-workers N        the platform's concurrency [1000]\n"
            "  --max-shards N         PS shards available [32]\n"
            "  --seed N               noise seed [1]\n"
            "  --json                 one JSON object per line per scenario and configuration\n"
            "  -v, --verbose          with --all: also every adaptive schedule\n"
            "  --model                with each decision, the fitted model (sched_describe)\n"
            "  --accuracy             how well the model predicts every grid configuration at\n"
            "                         every memory size after the profile alone, per job\n");
}

/* "5400", "90m", "1h30m", "2h", "45s": seconds, or -1. */
static double parse_time(const char *s)
{
    double total = 0;
    int parts = 0;
    while (*s) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || !(v >= 0))
            return -1;
        double unit = 1;
        if (*end == 'h')
            unit = 3600, end++;
        else if (*end == 'm')
            unit = 60, end++;
        else if (*end == 's')
            end++;
        else if (*end)
            return -1;
        total += v * unit;
        parts++;
        s = end;
    }
    return parts && total > 0 ? total : -1;
}

static void fmt_t(char *b, size_t n, double s)
{
    if (s < 3600)
        snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else if (s < 86400 * 3)
        snprintf(b, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else
        snprintf(b, n, "%.1fd", s / 86400);
}

/* ---- the grid and the best fixed configuration -------------------------------------------- */

static void run_grid(const struct sim_platform *p, const struct sim_job *j, uint64_t seed,
                     struct grid *g)
{
    g->n = 0;
    for (uint32_t w = 1;; w *= 2) {
        uint32_t W = w < p->max_workers ? w : p->max_workers;
        for (uint32_t sh = 1;; sh *= 2) {
            uint32_t S = sh < p->max_shards ? sh : p->max_shards;
            if (g->n < MAX_GRID) {
                g->c[g->n] = (struct sched_config){W, S, j->mem_default};
                sim_run_fixed(p, j, &g->c[g->n], seed, &g->r[g->n]);
                g->n++;
            }
            if (S == p->max_shards)
                break;
        }
        if (W == p->max_workers)
            break;
    }
}

static int met_deadline(const struct sim_result *r, const struct scen *sc)
{
    return r->completed && (sc->deadline_s <= 0 || r->finish_s <= sc->deadline_s);
}

static int met_budget(const struct sim_result *r, const struct scen *sc)
{
    return sc->budget_usd <= 0 || r->cost_usd <= sc->budget_usd;
}

/* Cheapest meeting every constraint with a deadline; fastest within the budget with only a
 * budget (and with both when none meets both). -1 when nothing qualifies. */
static int best_fixed(const struct grid *g, const struct scen *sc)
{
    int best = -1;
    if (sc->deadline_s > 0) {
        for (int i = 0; i < g->n; i++)
            if (met_deadline(&g->r[i], sc) && met_budget(&g->r[i], sc) &&
                (best < 0 || g->r[i].cost_usd < g->r[best].cost_usd))
                best = i;
        if (best >= 0 || sc->budget_usd <= 0)
            return best;
    }
    for (int i = 0; i < g->n; i++)
        if (met_budget(&g->r[i], sc) &&
            (best < 0 || g->r[i].finish_s < g->r[best].finish_s))
            best = i;
    return best;
}

/* ---- output ------------------------------------------------------------------------------- */

static void json_line(const char *job, const struct scen *sc, const char *policy,
                      const struct sched_config *c, const struct sim_result *r)
{
    printf("{\"job\":\"%s\",\"scenario\":\"%s/%s\",\"policy\":\"%s\",\"workers\":%u,"
           "\"shards\":%u,\"memory_mb\":%u,\"finish_s\":%.1f,\"cost_usd\":%.4f,"
           "\"epochs_done\":%.4f,\"completed\":%s,",
           job, job, sc->name, policy, c->workers, c->shards, c->memory_mb, r->finish_s,
           r->cost_usd, r->epochs_done, r->completed ? "true" : "false");
    if (sc->deadline_s > 0)
        printf("\"deadline_s\":%.0f,\"deadline_met\":%s,", sc->deadline_s,
               met_deadline(r, sc) ? "true" : "false");
    else
        printf("\"deadline_s\":null,\"deadline_met\":null,");
    if (sc->budget_usd > 0)
        printf("\"budget_usd\":%.2f,\"budget_met\":%s", sc->budget_usd,
               met_budget(r, sc) ? "true" : "false");
    else
        printf("\"budget_usd\":null,\"budget_met\":null");
    if (!strcmp(policy, "adaptive"))
        printf(",\"peak_workers\":%u,\"changes\":%u,\"profile_s\":%.1f,\"stopped_budget\":%s",
               r->peak_workers, r->changes, r->profile_s, r->stopped_budget ? "true" : "false");
    printf("}\n");
}

struct trace_ctx {
    int print, model;
};

static void on_trace(void *arg, const struct sim_trace_row *row)
{
    struct trace_ctx *t = arg;
    if (!t->print)
        return;
    char tm[32];
    fmt_t(tm, sizeof(tm), row->t);
    const char *v = row->verdict == SCHED_CHANGE ? "CHANGE"
                    : row->verdict == SCHED_STOP_BUDGET ? "STOP" : "keep";
    printf("  %5.2f %8s %5u %3u %6u %8.2f %9.2f  %-6s -> %u x %u x %u MB\n", row->epoch, tm,
           row->cur.workers, row->cur.shards, row->cur.memory_mb, row->step_s, row->spent, v,
           row->next.workers, row->next.shards, row->next.memory_mb);
    printf("        %s\n", row->reason);
    if (t->model)
        printf("        [%s; predicted step %.2f s]\n", row->model, row->pred_step_s);
}

static void print_result(const char *label, const struct sched_config *c,
                         const struct sim_result *r, const struct scen *sc)
{
    char tm[32];
    fmt_t(tm, sizeof(tm), r->finish_s);
    printf("  %-11s %4u x %2u x %5u MB  finish %9s  $%9.2f  %s%s%s\n", label, c->workers,
           c->shards, c->memory_mb, tm, r->cost_usd,
           sc->deadline_s > 0 ? (met_deadline(r, sc) ? "deadline met " : "deadline MISSED ")
                              : "",
           sc->budget_usd > 0 ? (met_budget(r, sc) ? "budget kept" : "over budget") : "",
           r->completed ? "" : " (stopped before the end)");
}

/* ---- scenarios ---------------------------------------------------------------------------- */

static void run_scenario(const struct sim_platform *p, const struct sim_job *j,
                         const struct grid *g, const struct scen *sc, const struct opts *o,
                         int detail, struct outcome *out)
{
    struct trace_ctx tc = {detail && !o->json, o->model};
    struct sched_config start = o->start;
    if (start.memory_mb == 0)
        start.memory_mb = j->mem_default;
    if (tc.print) {
        char d[32] = "none", b[32] = "none";
        if (sc->deadline_s > 0)
            fmt_t(d, sizeof(d), sc->deadline_s);
        if (sc->budget_usd > 0)
            snprintf(b, sizeof(b), "$%.2f", sc->budget_usd);
        printf("\n== %s / %s: deadline %s, budget %s ==\n", j->name, sc->name, d, b);
        printf("  adaptive schedule (a decision after the profile and every %.2g epoch):\n",
               o->decide_every);
        printf("  epoch     time     W   S    MB   step_s     spent  decision\n");
    }
    sim_run_adaptive(p, j, &start, sc->deadline_s, sc->budget_usd, o->decide_every, o->seed,
                     on_trace, &tc, &out->ad);
    sim_run_bo(p, j, &start, sc->deadline_s, sc->budget_usd, o->decide_every, o->seed, &out->bo);
    out->bf_idx = best_fixed(g, sc);
    int mf = g->n - 1; /* the grid ends with (max workers, max shards) */
    out->mf = g->r[mf];
    if (out->bf_idx >= 0)
        out->bf = g->r[out->bf_idx];
    const struct sim_result *a = &out->ad;
    out->t_deadline = -1;
    out->t_cost = -1;
    out->t_fanout = out->mf.cost_usd >= 2 * a->cost_usd;
    if (out->bf_idx >= 0) {
        const struct sim_result *bf = &out->bf;
        if (sc->deadline_s > 0 && met_deadline(bf, sc))
            out->t_deadline = met_deadline(a, sc);
        if (sc->deadline_s > 0 && met_deadline(bf, sc))
            out->t_cost = a->completed && met_budget(a, sc) && a->cost_usd <= 1.15 * bf->cost_usd;
        else /* fastest within the budget: compare times; the budget must hold */
            out->t_cost = a->completed && met_budget(a, sc) && a->finish_s <= 1.15 * bf->finish_s;
    }
    if (o->json) {
        json_line(j->name, sc, "adaptive", &a->final, a);
        for (int i = 0; i < g->n; i++)
            json_line(j->name, sc, "fixed", &g->c[i], &g->r[i]);
        if (out->bf_idx >= 0)
            json_line(j->name, sc, "best_fixed", &g->c[out->bf_idx], &out->bf);
        json_line(j->name, sc, "max_fanout", &g->c[mf], &out->mf);
        json_line(j->name, sc, "smlt_bo", &out->bo.final, &out->bo);
        return;
    }
    if (!tc.print)
        return;
    char pt[32];
    fmt_t(pt, sizeof(pt), a->profile_s);
    printf("  profile took %s; %u change%s after it; peak %u workers\n", pt, a->changes,
           a->changes == 1 ? "" : "s", a->peak_workers);
    print_result("adaptive", &a->final, a, sc);
    if (out->bf_idx >= 0)
        print_result("best fixed", &g->c[out->bf_idx], &out->bf, sc);
    else
        printf("  best fixed  none of the grid qualifies\n");
    print_result("max fan-out", &g->c[mf], &out->mf, sc);
    print_result("SMLT-BO", &out->bo.final, &out->bo, sc);
}

static void print_grid(const struct sim_job *j, const struct grid *g, const struct sim_platform *p)
{
    printf("\n== %s: fixed configurations at %u MB (finish time / cost) ==\n", j->name,
           j->mem_default);
    printf("  %5s", "W\\S");
    int ns = 0;
    for (int i = 0; i < g->n && g->c[i].workers == g->c[0].workers; i++, ns++)
        printf(" %18u", g->c[i].shards);
    printf("\n");
    for (int i = 0; i < g->n; i += ns) {
        printf("  %5u", g->c[i].workers);
        for (int k = 0; k < ns && i + k < g->n; k++) {
            char tm[32], cell[40];
            fmt_t(tm, sizeof(tm), g->r[i + k].finish_s);
            snprintf(cell, sizeof(cell), "%s/$%.1f", tm, g->r[i + k].cost_usd);
            printf(" %18s", cell);
        }
        printf("\n");
    }
    (void)p;
}

static const char *mark(int t)
{
    return t < 0 ? "n/a" : t ? "yes" : "NO";
}

/* Round to a "nice" value: 2 significant digits. */
static double nice(double v)
{
    double e = pow(10, floor(log10(v)) - 1);
    return ceil(v / e) * e;
}

static int make_scenarios(const struct grid *g, struct scen *sc)
{
    double tmin = INFINITY, cmin = INFINITY;
    for (int i = 0; i < g->n; i++) {
        if (g->r[i].finish_s < tmin)
            tmin = g->r[i].finish_s;
        if (g->r[i].cost_usd < cmin)
            cmin = g->r[i].cost_usd;
    }
    /* Deadlines as multiples of the fastest fixed configuration's time, rounded up to 5 min;
     * budgets as multiples of the cheapest fixed configuration's cost. */
    double d_tight = ceil(1.5 * tmin / 300) * 300, d_med = ceil(3 * tmin / 300) * 300;
    double d_loose = ceil(8 * tmin / 300) * 300;
    int n = 0;
    sc[n++] = (struct scen){"deadline-tight", d_tight, 0};
    sc[n++] = (struct scen){"deadline-medium", d_med, 0};
    sc[n++] = (struct scen){"deadline-loose", d_loose, 0};
    sc[n++] = (struct scen){"budget-low", 0, nice(1.05 * cmin)};
    sc[n++] = (struct scen){"budget-high", 0, nice(1.3 * cmin)};
    sc[n++] = (struct scen){"both-feasible", d_med, nice(1.3 * cmin)};
    sc[n++] = (struct scen){"both-conflict", d_tight, nice(1.02 * cmin)};
    return n;
}

static void print_summary_head(void)
{
    printf("\n| job | scenario | deadline | budget | adaptive: finish, cost | best fixed (W x S): "
           "finish, cost | max fan-out: finish, cost | SMLT-style BO: finish, cost | "
           "adaptive / best | fan-out / adaptive | fan-out / best fixed | deadline met | "
           "within 15%% | 2x cheaper |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
}

static void print_summary_row(const struct sim_job *j, const struct grid *g, const struct scen *sc,
                              const struct outcome *o)
{
    char d[32] = "-", b[32] = "-", at[32], bt[32], mt[32], ratio[48] = "-";
    if (sc->deadline_s > 0)
        fmt_t(d, sizeof(d), sc->deadline_s);
    if (sc->budget_usd > 0)
        snprintf(b, sizeof(b), "$%.0f", sc->budget_usd);
    fmt_t(at, sizeof(at), o->ad.finish_s);
    fmt_t(mt, sizeof(mt), o->mf.finish_s);
    char bf[64] = "none";
    if (o->bf_idx >= 0) {
        fmt_t(bt, sizeof(bt), o->bf.finish_s);
        snprintf(bf, sizeof(bf), "%u x %u: %s, $%.2f", g->c[o->bf_idx].workers,
                 g->c[o->bf_idx].shards, bt, o->bf.cost_usd);
        if (sc->deadline_s > 0 && met_deadline(&o->bf, sc))
            snprintf(ratio, sizeof(ratio), "cost %.2f", o->ad.cost_usd / o->bf.cost_usd);
        else
            snprintf(ratio, sizeof(ratio), "time %.2f", o->ad.finish_s / o->bf.finish_s);
    }
    char bound[16] = "-";
    if (o->bf_idx >= 0)
        snprintf(bound, sizeof(bound), "%.2f", o->mf.cost_usd / o->bf.cost_usd);
    char bo[64], bot[32];
    fmt_t(bot, sizeof(bot), o->bo.finish_s);
    snprintf(bo, sizeof(bo), "%s, $%.2f%s%s", bot, o->bo.cost_usd,
             sc->deadline_s > 0 && !met_deadline(&o->bo, sc) ? " (late)" : "",
             o->bo.completed ? "" : " (stopped)");
    printf("| %s | %s | %s | %s | %s, $%.2f%s%s | %s | %s, $%.2f | %s | %s | %.2f | %s | %s | %s "
           "| %s |\n",
           j->name, sc->name, d, b, at, o->ad.cost_usd,
           sc->deadline_s > 0 && !met_deadline(&o->ad, sc) ? " (late)" : "",
           o->ad.completed ? "" : " (stopped)", bf, mt, o->mf.cost_usd, bo, ratio,
           o->mf.cost_usd / o->ad.cost_usd, bound, mark(o->t_deadline), mark(o->t_cost),
           mark(o->t_fanout));
}

static int apply_overrides(const struct opts *o, struct sim_job *j)
{
    if (o->params > 0)
        j->params = o->params;
    if (o->samples > 0)
        j->samples = o->samples;
    if (o->flops > 0)
        j->flops_per_sample = o->flops;
    if (o->epochs > 0)
        j->epochs = o->epochs;
    if (o->batch > 0)
        j->batch = o->batch;
    if (o->noise_scale >= 0)
        j->noise_scale = o->noise_scale;
    if (o->ref_workers > 0)
        j->ref_workers = o->ref_workers;
    if (j->noise_scale > 0 && j->ref_workers == 0)
        j->ref_workers = 1;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* After the three-probe profile only: the model's step-time error over the whole grid (every
 * W, S and memory size), against the platform's mean step. */
static void accuracy(const struct sim_platform *p, const struct sim_job *j,
                     const struct opts *o)
{
    struct sched_config start = o->start;
    if (start.memory_mb == 0)
        start.memory_mb = j->mem_default;
    struct sched *s = sim_profiled_sched(p, j, &start, o->seed);
    if (!s)
        return;
    static double err[4096];
    int n = 0, within10 = 0;
    for (uint32_t w = 1;; w *= 2) {
        uint32_t W = w < p->max_workers ? w : p->max_workers;
        for (uint32_t sh = 1;; sh *= 2) {
            uint32_t S = sh < p->max_shards ? sh : p->max_shards;
            for (uint32_t m = 0; m < j->n_mem && n < 4096; m++) {
                struct sched_config c = {W, S, j->mem_options[m]};
                double truth = sim_mean_step(p, j, &c, o->seed, 200);
                double pred = sched_predict_step(s, &c, NULL, NULL);
                err[n] = fabs(pred - truth) / truth;
                within10 += err[n] <= 0.10;
                n++;
            }
            if (S == p->max_shards)
                break;
        }
        if (W == p->max_workers)
            break;
    }
    qsort(err, (size_t)n, sizeof(err[0]), cmp_double);
    char desc[768];
    sched_describe(s, desc, sizeof(desc));
    printf("%s: after a profile of %u configurations (12 steps), step-time error over %d "
           "configurations: median %.1f%%, 90th percentile %.1f%%, max %.1f%%; within 10%%: %d\n"
           "  %s\n",
           j->name, sched_n_configs(s), n, 100 * err[n / 2], 100 * err[(n * 9) / 10],
           100 * err[n - 1], within10, desc);
    sched_free(s);
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    o.noise_scale = -1;
    o.seed = 1;
    o.decide_every = 0.25;
    o.start = (struct sched_config){4, 2, 0};
    int named_run = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                                                     \
    do {                                                                                           \
        if (!v) {                                                                                  \
            fprintf(stderr, "smlt-sim: %s needs a value\n", a);                                    \
            return 2;                                                                              \
        }                                                                                          \
        i++;                                                                                       \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--all")) {
            o.all = 1;
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o.verbose = 1;
        } else if (!strcmp(a, "--model")) {
            o.model = 1;
        } else if (!strcmp(a, "--accuracy")) {
            o.accuracy = 1;
        } else if (!strcmp(a, "--job")) {
            NEED();
            o.job = v;
            named_run = 1;
        } else if (!strcmp(a, "--deadline")) {
            NEED();
            if ((o.deadline_s = parse_time(v)) < 0) {
                fprintf(stderr, "smlt-sim: --deadline: not a duration: %s\n", v);
                return 2;
            }
            named_run = 1;
        } else if (!strcmp(a, "--budget")) {
            NEED();
            o.budget_usd = strtod(v, NULL);
            if (!(o.budget_usd > 0)) {
                fprintf(stderr, "smlt-sim: --budget: must be > 0: %s\n", v);
                return 2;
            }
            named_run = 1;
        } else if (!strcmp(a, "--params") || !strcmp(a, "--samples") ||
                   !strcmp(a, "--flops-per-sample") || !strcmp(a, "--epochs") ||
                   !strcmp(a, "--batch")) {
            NEED();
            double x = strtod(v, NULL);
            if (!(x > 0)) {
                fprintf(stderr, "smlt-sim: %s: must be > 0: %s\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--params"))
                o.params = x;
            else if (!strcmp(a, "--samples"))
                o.samples = x;
            else if (!strcmp(a, "--flops-per-sample"))
                o.flops = x;
            else if (!strcmp(a, "--epochs"))
                o.epochs = x;
            else
                o.batch = (uint32_t)x;
            named_run = 1;
        } else if (!strcmp(a, "--noise-scale") || !strcmp(a, "--ref-workers")) {
            NEED();
            char *end;
            double x = strtod(v, &end);
            int ref = !strcmp(a, "--ref-workers");
            if (*end || !(ref ? x >= 1 && x <= 100000 : x >= 0 && x <= 1e9)) {
                fprintf(stderr, "smlt-sim: %s: %s\n", a,
                        ref ? "a worker count of at least 1" : "samples, at least 0");
                return 2;
            }
            if (ref)
                o.ref_workers = (uint32_t)x;
            else
                o.noise_scale = x;
        } else if (!strcmp(a, "--decide-every")) {
            NEED();
            o.decide_every = strtod(v, NULL);
            if (!(o.decide_every > 0 && o.decide_every <= 1)) {
                fprintf(stderr, "smlt-sim: --decide-every: epochs in (0, 1]: %s\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--max-workers") || !strcmp(a, "--max-shards")) {
            NEED();
            unsigned long x = strtoul(v, NULL, 10);
            if (x < 1 || x > (!strcmp(a, "--max-workers") ? 10000ul : 256ul)) {
                fprintf(stderr, "smlt-sim: %s: out of range: %s\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--max-workers"))
                o.max_workers = (uint32_t)x;
            else
                o.max_shards = (uint32_t)x;
        } else if (!strcmp(a, "--seed")) {
            NEED();
            o.seed = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--start")) {
            NEED();
            unsigned w, s, m = 0;
            if (sscanf(v, "%u,%u,%u", &w, &s, &m) < 2 || w == 0 || s == 0) {
                fprintf(stderr, "smlt-sim: --start: expected W,S[,MB]: %s\n", v);
                return 2;
            }
            o.start = (struct sched_config){w, s, m};
        } else {
            fprintf(stderr, "smlt-sim: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
#undef NEED
    }
    if (!named_run)
        o.all = 1;

    struct sim_platform p;
    sim_platform_default(&p);
    if (o.max_workers)
        p.max_workers = o.max_workers;
    if (o.max_shards)
        p.max_shards = o.max_shards;
    if (o.start.workers > p.max_workers || o.start.shards > p.max_shards) {
        fprintf(stderr, "smlt-sim: --start beyond the platform's bounds (%u workers, %u shards)\n",
                p.max_workers, p.max_shards);
        return 2;
    }
    static struct grid g;
    struct sim_job j;
    if (o.accuracy) {
        static const char *names[] = {"resnet50", "bert-small"};
        for (int k = 0; k < 2; k++) {
            if (o.job && strcmp(o.job, names[k]))
                continue;
            sim_job_named(names[k], &j);
            apply_overrides(&o, &j);
            accuracy(&p, &j, &o);
        }
        return 0;
    }
    if (!o.all) {
        const char *name = o.job ? o.job : "resnet50";
        if (sim_job_named(name, &j) != 0) {
            if (!(o.params > 0 && o.samples > 0 && o.flops > 0)) {
                fprintf(stderr, "smlt-sim: unknown job %s (resnet50, bert-small, or give "
                        "--params, --samples and --flops-per-sample)\n", name);
                return 2;
            }
            sim_job_named("resnet50", &j);
            snprintf(j.name, sizeof(j.name), "%s", name);
        }
        apply_overrides(&o, &j);
        run_grid(&p, &j, o.seed, &g);
        struct scen sc = {"custom", o.deadline_s, o.budget_usd};
        if (!o.json)
            print_grid(&j, &g, &p);
        struct outcome out;
        run_scenario(&p, &j, &g, &sc, &o, 1, &out);
        if (!o.json) {
            print_summary_head();
            print_summary_row(&j, &g, &sc, &out);
        }
        return 0;
    }

    static const char *jobs[] = {"resnet50", "bert-small"};
    static struct outcome outs[2][MAX_SCEN];
    static struct scen scs[2][MAX_SCEN];
    static struct grid grids[2];
    int nsc[2];
    int n_t[3] = {0}, met_t[3] = {0}, fanout_unreachable = 0;
    int bo_n = 0, bo_worse = 0, bo_missed = 0, ad_missed = 0, bo_total = 0, bo_stopped = 0;
    double bo_ratio_sum = 0;
    for (int ji = 0; ji < 2; ji++) {
        struct sim_job jj;
        sim_job_named(jobs[ji], &jj);
        apply_overrides(&o, &jj);
        run_grid(&p, &jj, o.seed, &grids[ji]);
        nsc[ji] = make_scenarios(&grids[ji], scs[ji]);
        if (!o.json && o.verbose)
            print_grid(&jj, &grids[ji], &p);
        for (int k = 0; k < nsc[ji]; k++) {
            run_scenario(&p, &jj, &grids[ji], &scs[ji][k], &o, o.verbose, &outs[ji][k]);
            const struct outcome *oc = &outs[ji][k];
            int t[3] = {oc->t_deadline, oc->t_cost, oc->t_fanout};
            for (int q = 0; q < 3; q++)
                if (t[q] >= 0) {
                    n_t[q]++;
                    met_t[q] += t[q];
                }
            /* Against the SMLT-style BO: the deadline (where anything could meet it) and the
             * cost (deadline scenarios) or time (budget only). */
            const struct scen *sc = &scs[ji][k];
            if (oc->bf_idx >= 0 && sc->deadline_s > 0 && met_deadline(&oc->bf, sc)) {
                bo_missed += !met_deadline(&oc->bo, sc);
                ad_missed += !met_deadline(&oc->ad, sc);
            }
            double ra = sc->deadline_s > 0 || sc->budget_usd <= 0
                            ? oc->bo.cost_usd / oc->ad.cost_usd
                            : oc->bo.finish_s / oc->ad.finish_s;
            if (oc->bo.completed) {
                bo_n++;
                bo_ratio_sum += ra;
            }
            bo_worse += ra > 1.0 || !oc->bo.completed;
            bo_total++;
            bo_stopped += !oc->bo.completed;
            /* A 2x miss no fixed configuration in hindsight could have avoided either. */
            if (oc->t_fanout == 0 && oc->bf_idx >= 0 && oc->mf.cost_usd < 2 * oc->bf.cost_usd)
                fanout_unreachable++;
        }
    }
    if (o.json)
        return 0;
    printf("\nsmlt-sim: %u function workers at most, %u shards at most, time limit %.0f s, "
           "seed %llu\n", p.max_workers, p.max_shards, p.time_limit_s,
           (unsigned long long)o.seed);
    print_summary_head();
    for (int ji = 0; ji < 2; ji++) {
        struct sim_job jj;
        sim_job_named(jobs[ji], &jj);
        for (int k = 0; k < nsc[ji]; k++)
            print_summary_row(&jj, &grids[ji], &scs[ji][k], &outs[ji][k]);
    }
    printf("\ntargets: deadline met where the best fixed configuration meets it: %d of %d; "
           "within 15%% of the best fixed configuration (cost, or time with only a budget): "
           "%d of %d; at least 2x cheaper than max fan-out: %d of %d",
           met_t[0], n_t[0], met_t[1], n_t[1], met_t[2], n_t[2]);
    if (n_t[2] > met_t[2])
        printf(" (in %d of the %d misses even the best fixed configuration is not 2x cheaper "
               "than max fan-out)", fanout_unreachable, n_t[2] - met_t[2]);
    printf("\n");
    printf("SMLT-style BO on the same platform: worse than adaptive in %d of %d scenarios; "
           "stopped by the budget before the end in %d; where it finished, BO/adaptive cost "
           "(or time with only a budget) %.2f on average; deadlines missed where the best "
           "fixed configuration meets them: BO %d, adaptive %d\n",
           bo_worse, bo_total, bo_stopped, bo_n ? bo_ratio_sum / bo_n : 0.0, bo_missed,
           ad_missed);
    return 0;
}
