/* smltctl_jobs.c: the job commands of smltctl: submit, status, watch, cancel, scale, logs,
 * model and checkpoint.
 *
 * Each is one or a few calls of the coordinator's JSON API (coordinator/coord_http.h) and a
 * rendering of the answer; `watch` polls GET /api/jobs/ID and redraws a two-line progress
 * display in place on a terminal (plain lines when stdout is not one). `model` checks the
 * downloaded file with libsmlt's smlt_model_read() before it takes the name it was asked for. */
#include "smltctl.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "smlt.h"
#include "smlt_util.h"

#define WATCH_GIVE_UP_S 15.0  /* the coordinator unreachable this long ends `watch` */
#define WATCH_PLAIN_EVERY_S 5.0
#define WATCH_BAR 24

/* Job ids go into URL paths: only the characters the coordinator's ids are made of. */
static int check_job_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 100 || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789._-") != n || id[0] == '.') {
        smltctl_err("no job \"%s\": job ids look like job-0001 (see `smltctl status`)", id);
        return SMLTCTL_NOTFOUND;
    }
    return 0;
}

/* Parses "CMD JOB [global flags]" for the commands that take only a job. */
static int parse_job_only(struct smltctl *c, const char *cmd, int argc, char **argv,
                          const char **job)
{
    *job = NULL;
    for (int i = 0; i < argc; i++) {
        int r = smltctl_global_opt(c, argc, argv, &i);
        if (r < 0)
            return SMLTCTL_USAGE;
        if (r > 0)
            continue;
        if (argv[i][0] == '-' || *job)
            return smltctl_usage_error(cmd, "unexpected argument %s", argv[i]);
        *job = argv[i];
    }
    if (!*job)
        return smltctl_usage_error(cmd, "which job? (see `smltctl status`)");
    return check_job_id(*job);
}

static void fmt_duration(char *out, size_t n, double s)
{
    if (s < 0)
        s = 0;
    if (s < 100)
        snprintf(out, n, "%.1fs", s);
    else if (s < 3600)
        snprintf(out, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(out, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void fmt_usd(char *out, size_t n, double v)
{
    if (v == 0)
        snprintf(out, n, "$0");
    else if (v < 0.01)
        snprintf(out, n, "$%.6f", v);
    else if (v < 100)
        snprintf(out, n, "$%.4f", v);
    else
        snprintf(out, n, "$%.2f", v);
}

/* ---- submit ------------------------------------------------------------------------------ */

/* Makes one local path absolute (relative to the working directory). */
static int abs_path(const char *p, char *out, size_t n)
{
    if (p[0] == '/' || !p[0]) {
        snprintf(out, n, "%s", p);
        return 0;
    }
    char rp[PATH_MAX];
    if (realpath(p, rp)) {
        snprintf(out, n, "%s", rp);
        return 0;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return -1;
    /* A path that does not exist stays as given, made absolute: the coordinator says it is
     * missing, naming the field. */
    int w = snprintf(out, n, "%s/%s", cwd, p[0] == '.' && p[1] == '/' ? p + 2 : p);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* The dataset as the coordinator wants it: URLs as they are, local paths absolute, also inside
 * "csv:TRAIN[,TEST]" and "libsvm:TRAIN[,TEST]". */
static int abs_dataset(const char *ds, char *out, size_t n)
{
    if (strstr(ds, "://")) {
        snprintf(out, n, "%s", ds);
        return 0;
    }
    const char *prefix = "";
    if (!strncmp(ds, "csv:", 4))
        prefix = "csv:";
    else if (!strncmp(ds, "libsvm:", 7))
        prefix = "libsvm:";
    if (!*prefix)
        return abs_path(ds, out, n);
    const char *rest = ds + strlen(prefix);
    char first[PATH_MAX], a[PATH_MAX], b[PATH_MAX];
    const char *comma = strchr(rest, ',');
    size_t fl = comma ? (size_t)(comma - rest) : strlen(rest);
    if (fl >= sizeof first)
        return -1;
    memcpy(first, rest, fl);
    first[fl] = '\0';
    if (abs_path(first, a, sizeof a) != 0)
        return -1;
    if (comma && abs_path(comma + 1, b, sizeof b) != 0)
        return -1;
    int w = snprintf(out, n, "%s%s%s%s", prefix, a, comma ? "," : "", comma ? b : "");
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* Sets obj[key] (key may be "a.b": the nested object is created). Takes v. */
static void spec_set(json_t *spec, const char *key, json_t *v)
{
    const char *dot = strchr(key, '.');
    if (!dot) {
        json_object_set_new(spec, key, v);
        return;
    }
    char outer[64];
    snprintf(outer, sizeof outer, "%.*s", (int)(dot - key), key);
    json_t *o = json_object_get(spec, outer);
    if (!json_is_object(o)) {
        o = json_object();
        json_object_set_new(spec, outer, o);
    }
    json_object_set_new(o, dot + 1, v);
}

/* F_COL: an integer or "last"; F_BOOL: "true"/"false" as JSON booleans, anything else as a
 * string (the coordinator names what it accepts). */
enum flag_kind { F_STR, F_INT, F_NUM, F_DUR, F_USD, F_COL, F_BOOL };

struct spec_flag {
    const char *flag, *key;
    enum flag_kind kind;
};

static const struct spec_flag spec_flags[] = {
    {"--model", "model", F_STR},
    {"--data", "dataset", F_STR},
    {"--dataset", "dataset", F_STR},
    {"--name", "name", F_STR},
    {"--epochs", "epochs", F_INT},
    {"--max-epochs", "max_epochs", F_INT},
    {"--target-accuracy", "target_accuracy", F_NUM},
    {"--workers", "workers", F_INT},
    {"--shards", "shards", F_INT},
    {"--batch", "batch_size", F_INT},
    {"--sync", "sync", F_STR},
    {"--optimizer", "optimizer.kind", F_STR},
    {"--lr", "optimizer.lr", F_NUM},
    {"--momentum", "optimizer.momentum", F_NUM},
    {"--deadline", "deadline_s", F_DUR},
    {"--budget", "budget_usd", F_USD},
    {"--time-limit", "platform.time_limit_s", F_DUR},
    {"--memory", "platform.memory_mb", F_INT},
    {"--platform", "platform.kind", F_STR},
    {"--seed", "seed", F_INT},
    {"--label-column", "dataset_options.label_column", F_COL},
    {"--header", "dataset_options.header", F_BOOL},
    {"--scale", "dataset_options.scale", F_STR},
    {NULL, NULL, F_STR}};

/* Converts a flag's value into the JSON the spec wants. NULL after a usage message. */
static json_t *flag_value(const struct spec_flag *f, const char *v)
{
    long long i;
    double d;
    switch (f->kind) {
    case F_STR:
        return json_string(v);
    case F_INT:
        /* The range is the coordinator's to check (it names the field); only the syntax here. */
        return smltctl_parse_long(f->flag, v, -(1LL << 62), 1LL << 62, &i) ? NULL : json_integer(i);
    case F_NUM:
        return smltctl_parse_double(f->flag, v, &d) ? NULL : json_real(d);
    case F_DUR:
        if (smltctl_parse_duration(f->flag, v, &d))
            return NULL;
        /* time_limit_s is a whole number of seconds */
        return !strcmp(f->key, "platform.time_limit_s") && d == floor(d) && fabs(d) < 1e15
                   ? json_integer((json_int_t)d)
                   : json_real(d);
    case F_USD:
        return smltctl_parse_double(f->flag, v[0] == '$' ? v + 1 : v, &d) ? NULL : json_real(d);
    case F_COL:
        if (!strcmp(v, "last"))
            return json_string(v);
        return smltctl_parse_long(f->flag, v, -(1LL << 62), 1LL << 62, &i) ? NULL : json_integer(i);
    case F_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "false"))
            return json_boolean(!strcmp(v, "true"));
        return json_string(v);
    }
    return NULL;
}

static json_t *load_spec(const char *path)
{
    json_error_t je;
    json_t *o = !strcmp(path, "-") ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &je)
                                   : json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    const char *name = !strcmp(path, "-") ? "the spec on stdin" : path;
    if (!o) {
        if (strcmp(path, "-") && access(path, R_OK) != 0)
            smltctl_err("cannot read %s: %s", path, strerror(errno));
        else
            smltctl_err("%s is not valid JSON: %s (line %d, column %d)", name, je.text, je.line,
                        je.column);
        return NULL;
    }
    if (!json_is_object(o)) {
        smltctl_err("%s must be a JSON object (see coordinator/coord_spec.h for its fields)", name);
        json_decref(o);
        return NULL;
    }
    return o;
}

/* A torch job ("model": "python:FILE.py"): the coordinator may run on another machine, so the
 * training file travels in the spec (model_source), read here; the model keeps FILE's base
 * name. Returns 0, or -1 after saying why. */
static int attach_source(json_t *spec)
{
    const char *model = json_string_value(json_object_get(spec, "model"));
    if (!model || strncmp(model, "python:", 7) || json_object_get(spec, "model_source"))
        return 0;
    const char *file = model + 7;
    size_t n = 0;
    char *text = smlt_file_read(file, 48u << 10, &n);
    if (!text) {
        smltctl_err("%s: %s", file, errno == E2BIG ? "larger than 48 KiB" : strerror(errno));
        return -1;
    }
    const char *base = strrchr(file, '/');
    char name[512];
    snprintf(name, sizeof name, "python:%s", base ? base + 1 : file);
    json_object_set_new(spec, "model_source", json_stringn(text, n));
    json_object_set_new(spec, "model", json_string(name));
    free(text);
    if (!json_is_string(json_object_get(spec, "model_source"))) {
        smltctl_err("%s: not UTF-8 text", file);
        return -1;
    }
    return 0;
}

int smltctl_cmd_submit(struct smltctl *c, int argc, char **argv)
{
    const char *file = NULL;
    int watch = 0;
    json_t *flags = json_object();
    for (int i = 0; i < argc; i++) {
        const char *v;
        int r = smltctl_global_opt(c, argc, argv, &i);
        if (r < 0)
            goto usage;
        if (r > 0)
            continue;
        if (!strcmp(argv[i], "--watch")) {
            watch = 1;
            continue;
        }
        const struct spec_flag *f;
        for (f = spec_flags; f->flag; f++) {
            r = smltctl_opt(argc, argv, &i, f->flag, &v);
            if (r)
                break;
        }
        if (r < 0)
            goto usage;
        if (f->flag) {
            json_t *jv = flag_value(f, v);
            if (!jv)
                goto usage;
            spec_set(flags, f->key, jv);
            continue;
        }
        if ((argv[i][0] == '-' && argv[i][1]) || file) {
            json_decref(flags);
            return smltctl_usage_error("submit", "unexpected argument %s", argv[i]);
        }
        file = argv[i];
    }
    json_t *spec = file ? load_spec(file) : json_object();
    if (!spec) {
        json_decref(flags);
        return SMLTCTL_ERR;
    }
    if (!file && !json_object_size(flags)) {
        json_decref(flags);
        json_decref(spec);
        return smltctl_usage_error("submit", "give a spec file (or - for stdin), or flags such as "
                                             "--model and --data");
    }
    /* Flags over the file's fields; nested objects (optimizer, platform) are merged. */
    const char *k;
    json_t *v;
    json_object_foreach(flags, k, v)
    {
        json_t *cur = json_object_get(spec, k);
        if (json_is_object(v) && json_is_object(cur))
            json_object_update(cur, v);
        else
            json_object_set(spec, k, v);
    }
    json_decref(flags);
    const char *path_keys[] = {"dataset", "cache_dir"};
    for (int i = 0; i < 2; i++) {
        const char *p = json_string_value(json_object_get(spec, path_keys[i]));
        char out[PATH_MAX + 16];
        if (p && *p) {
            if (abs_dataset(p, out, sizeof out) != 0) {
                smltctl_err("%s: path too long: %s", path_keys[i], p);
                json_decref(spec);
                return SMLTCTL_ERR;
            }
            json_object_set_new(spec, path_keys[i], json_string(out));
        }
    }
    if (attach_source(spec) != 0) {
        json_decref(spec);
        return SMLTCTL_ERR;
    }
    json_t *resp = NULL;
    char err[1024];
    long status = 0;
    int rc = smltctl_api_quiet(c, "POST", "/api/jobs", spec, &resp, &status, err, sizeof err);
    json_decref(spec);
    if (rc) {
        if (status == 400)
            smltctl_err("the coordinator refused the job: %s", err);
        else if (status == 401)
            smltctl_err("the coordinator at %s refused the admin token (%s); pass --token, or use "
                        "the local cluster's (`smltctl up`)",
                        c->url, c->token[0] ? "wrong token" : "none was given");
        else if (status)
            smltctl_err("the coordinator could not take the job: %s", err);
        else if (err[0])
            smltctl_err("%s", err);
        return rc == SMLTCTL_NOTFOUND ? SMLTCTL_ERR : rc;
    }
    const char *id = smltctl_jstr(resp, "id");
    if (c->json && !watch)
        smltctl_print_json(resp);
    else
        printf("%s\n", id);
    fflush(stdout);
    if (watch) {
        char jid[128];
        snprintf(jid, sizeof jid, "%s", id);
        json_decref(resp);
        return smltctl_watch_job(c, jid, 0.5);
    }
    json_decref(resp);
    return SMLTCTL_OK;
usage:
    json_decref(flags);
    return SMLTCTL_USAGE;
}

/* ---- status ------------------------------------------------------------------------------ */

static void print_table(const json_t *jobs)
{
    if (!json_array_size(jobs)) {
        printf("no jobs yet: submit one with `smltctl submit`, or try `smltctl demo`\n");
        return;
    }
    printf("%-10s %-11s %5s %13s %8s %8s %11s %3s %3s %8s  %s\n", "JOB", "STATE", "EPOCH", "STEP",
           "ACCURACY", "LOSS", "COST", "W", "S", "ELAPSED", "NAME");
    size_t i;
    const json_t *j;
    json_array_foreach(jobs, i, j)
    {
        char step[40], cost[32], el[32], acc[16], loss[16];
        long long total = smltctl_jint(j, "total_steps");
        if (total > 0)
            snprintf(step, sizeof step, "%lld/%lld", smltctl_jint(j, "step"), total);
        else
            snprintf(step, sizeof step, "%lld", smltctl_jint(j, "step"));
        fmt_usd(cost, sizeof cost, smltctl_jnum(j, "cost_usd"));
        fmt_duration(el, sizeof el, smltctl_jnum(j, "elapsed_s"));
        double a = smltctl_jnum(j, "test_accuracy"), l = smltctl_jnum(j, "train_loss");
        snprintf(acc, sizeof acc, a > 0 ? "%.4f" : "-", a);
        snprintf(loss, sizeof loss, l > 0 ? "%.4f" : "-", l);
        printf("%-10s %-11s %5lld %13s %8s %8s %11s %3lld %3lld %8s  %s\n", smltctl_jstr(j, "id"),
               smltctl_jstr(j, "state"), smltctl_jint(j, "epoch"), step, acc, loss, cost,
               smltctl_jint(j, "workers"), smltctl_jint(j, "shards"), el, smltctl_jstr(j, "name"));
    }
}

static void print_event(const json_t *e)
{
    time_t t = (time_t)smltctl_jnum(e, "at");
    struct tm tm;
    localtime_r(&t, &tm);
    printf("  %02d:%02d:%02d %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec, smltctl_jstr(e, "kind"),
           smltctl_jstr(e, "message"));
}

/* The PS pool's nodes under the jobs' table (nothing in local mode, or from a coordinator
 * without /api/nodes). */
static void print_nodes(struct smltctl *c)
{
    json_t *resp = NULL;
    long status = 0;
    char err[256];
    if (smltctl_api_quiet(c, "GET", "/api/nodes", NULL, &resp, &status, err, sizeof err) != 0 ||
        status != 200 || strcmp(smltctl_jstr(resp, "mode"), "pool")) {
        json_decref(resp);
        return;
    }
    printf("\nPS nodes (pool %s):\n", smltctl_jstr(resp, "pool"));
    printf("  %-24s %-12s %-11s %9s %9s %7s %6s\n", "NODE", "NAME", "STATE", "CAPACITY", "FREE",
           "SHARDS", "CONNS");
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(resp, "nodes"), i, n)
    {
        printf("  %-24s %-12s %-11s %7.0f M %7.0f M %7lld %6lld\n", smltctl_jstr(n, "addr"),
               smltctl_jstr(n, "name"), smltctl_jstr(n, "state"),
               smltctl_jnum(n, "capacity_bytes") / 1048576.0,
               smltctl_jnum(n, "free_bytes") / 1048576.0, smltctl_jint(n, "shards"),
               smltctl_jint(n, "connections"));
        if (*smltctl_jstr(n, "error") && strcmp(smltctl_jstr(n, "state"), "up"))
            printf("    %s\n", smltctl_jstr(n, "error"));
    }
    json_decref(resp);
}

static void print_job(const json_t *j)
{
    const json_t *spec = json_object_get(j, "spec");
    const json_t *opt = json_object_get(spec, "optimizer");
    const json_t *ledger = json_object_get(j, "ledger");
    const json_t *inv = json_object_get(j, "invocations");
    const char *state = smltctl_jstr(j, "state");
    const char *why = *smltctl_jstr(j, "error") ? smltctl_jstr(j, "error") : smltctl_jstr(j, "reason");
    char a[64], b[64], d[64];
    printf("%s  %s  %s%s%s%s\n", smltctl_jstr(j, "id"), smltctl_jstr(j, "name"), state,
           *why ? " (" : "", why, *why ? ")" : "");
    if (spec)
        printf("  job          %s on %s; %s, %s lr %g, batch %lld per worker\n",
               smltctl_jstr(spec, "model"), smltctl_jstr(spec, "dataset"),
               smltctl_jstr(spec, "sync"), smltctl_jstr(opt, "kind"), smltctl_jnum(opt, "lr"),
               smltctl_jint(spec, "batch_size"));
    long long step = smltctl_jint(j, "step"), total = smltctl_jint(j, "total_steps");
    long long spe = smltctl_jint(j, "steps_per_epoch"), maxe = smltctl_jint(j, "max_epochs");
    long long tgt = smltctl_jint(j, "epochs_target");
    printf("  progress     %lld epochs done", smltctl_jint(j, "epoch"));
    if (tgt > 0 && tgt != maxe)
        printf(" of at most %lld (%lld stated at the starting batch; %.2f of them done)", tgt,
               maxe, smltctl_jnum(j, "reference_epochs_done"));
    else if (maxe > 0)
        printf(" of at most %lld", maxe);
    if (total > 0)
        printf("; step %lld of %lld (%.0f%%), %lld steps per epoch", step, total,
               100.0 * (double)step / (double)total, spe);
    else
        printf("; step %lld", step);
    printf("\n");
    double acc = smltctl_jnum(j, "test_accuracy"), target = smltctl_jnum(j, "target_accuracy");
    if (acc > 0 || target > 0) {
        printf("  accuracy     ");
        if (acc > 0)
            printf("%.4f test (best %.4f), train loss %.4f, test loss %.4f", acc,
                   smltctl_jnum(j, "best_accuracy"), smltctl_jnum(j, "train_loss"),
                   smltctl_jnum(j, "test_loss"));
        else
            printf("not evaluated yet");
        if (target > 0)
            printf("; target %.4f", target);
        printf("\n");
    }
    fmt_usd(a, sizeof a, smltctl_jnum(j, "cost_usd"));
    printf("  cost         %s", a);
    if (ledger) {
        fmt_usd(a, sizeof a, smltctl_jnum(ledger, "function_usd"));
        fmt_usd(b, sizeof b, smltctl_jnum(ledger, "request_usd"));
        fmt_usd(d, sizeof d, smltctl_jnum(ledger, "ps_usd"));
        printf(" (billed so far: functions %s for %.1f GB-s, requests %s, PS nodes %s)", a,
               smltctl_jnum(ledger, "gb_s"), b, d);
    }
    double budget = smltctl_jnum(j, "budget_usd");
    if (budget > 0) {
        fmt_usd(a, sizeof a, budget);
        printf("; budget %s (%.1f%% spent)", a, 100.0 * smltctl_jnum(j, "cost_usd") / budget);
    }
    printf("\n");
    fmt_duration(a, sizeof a, smltctl_jnum(j, "elapsed_s"));
    printf("  time         %s", a);
    double dl = smltctl_jnum(j, "deadline_s");
    if (dl > 0) {
        fmt_duration(b, sizeof b, dl);
        printf("; deadline %s after submission", b);
        if (json_object_get(j, "deadline_in_s")) {
            fmt_duration(d, sizeof d, smltctl_jnum(j, "deadline_in_s"));
            printf(" (%s left)", d);
        }
    }
    printf("\n");
    printf("  fan-out      %lld workers, %lld shards", smltctl_jint(j, "workers"),
           smltctl_jint(j, "shards"));
    if (*smltctl_jstr(j, "ps_addrs"))
        printf(" at %s", smltctl_jstr(j, "ps_addrs"));
    printf("\n");
    /* On a PS pool: the node of each shard (and of its backup). */
    size_t k;
    json_t *pn;
    json_array_foreach(json_object_get(j, "ps_nodes"), k, pn)
    {
        printf("  shard %-6lld on node %s%s", smltctl_jint(pn, "shard"), smltctl_jstr(pn, "node"),
               json_is_true(json_object_get(pn, "up")) ? "" : " (down)");
        if (*smltctl_jstr(pn, "backup_node"))
            printf(", backup on %s", smltctl_jstr(pn, "backup_node"));
        printf("\n");
    }
    if (inv && smltctl_jint(inv, "total") > 0) {
        double busy = smltctl_jnum(inv, "billed_s");
        double comp = smltctl_jnum(inv, "compute_s"), comm = smltctl_jnum(inv, "comm_s");
        double init = smltctl_jnum(inv, "init_s");
        printf("  invocations  %lld (%lld cold, %lld warm, %lld lost, %lld running); start "
               "%.2f s cold, %.2f s warm\n",
               smltctl_jint(inv, "total"), smltctl_jint(inv, "cold"), smltctl_jint(inv, "warm"),
               smltctl_jint(inv, "lost"), smltctl_jint(inv, "running"),
               smltctl_jnum(inv, "cold_start_s"), smltctl_jnum(inv, "warm_start_s"));
        if (busy > 0)
            printf("  worker time  %.1f s billed: compute %.0f%%, communication %.0f%%, "
                   "initialization %.0f%%\n",
                   busy, 100 * comp / busy, 100 * comm / busy, 100 * init / busy);
    }
    if (json_object_get(j, "overhead_share"))
        printf("  overhead     %.1f%% of the job's time outside training steps\n",
               100 * smltctl_jnum(j, "overhead_share"));
    if (json_is_number(json_object_get(j, "noise_scale")))
        printf("  noise scale  %.0f samples (gradient noise scale measured by the shards: "
               "global batches well above it need more epochs)\n",
               smltctl_jnum(j, "noise_scale"));
    const json_t *prof = json_object_get(j, "profile");
    if (json_is_object(prof)) {
        /* The steady figures (after each worker's first step) are what the scheduler used. */
        printf("  profile      first %lld steps on %lld workers x %lld shards in %.1fs, %.0f "
               "samples/s; ",
               smltctl_jint(prof, "step"), smltctl_jint(prof, "workers"),
               smltctl_jint(prof, "shards"), smltctl_jnum(prof, "time_s"),
               smltctl_jnum(prof, "samples_per_s"));
        if (json_object_get(prof, "steady_step_s"))
            printf("after each worker's first step, step %.1f ms (compute %.1f, comm %.1f ms)",
                   smltctl_jnum(prof, "steady_step_s") * 1e3,
                   smltctl_jnum(prof, "steady_compute_s") * 1e3,
                   smltctl_jnum(prof, "steady_comm_s") * 1e3);
        else
            printf("step %.1f ms with the start", smltctl_jnum(prof, "step_s") * 1e3);
        printf(json_is_true(json_object_get(prof, "decision"))
                   ? "; the scheduler's first decision came there\n"
                   : "; no decision there (a manual scale, or no clean measurement)\n");
    }
    const json_t *model = json_object_get(j, "model");
    if (json_is_string(model))
        printf("  model        saved at step %lld: `smltctl model %s -o FILE`\n",
               smltctl_jint(j, "model_step"), smltctl_jstr(j, "id"));
    const json_t *series = json_object_get(j, "series");
    if (json_array_size(series)) {
        printf("  epochs       %5s %7s %8s %8s %8s %8s %8s %8s %8s %9s %11s\n", "EPOCH", "STEP",
               "TIME", "ACC", "LOSS", "COMPUTE", "COMM", "WAIT", "OTHER", "SAMPLES/S", "COST");
        size_t i;
        const json_t *e;
        size_t n = json_array_size(series);
        json_array_foreach(series, i, e)
        {
            if (n > 12 && i >= 5 && i + 5 < n) {
                if (i == 5)
                    printf("               %5s\n", "...");
                continue;
            }
            fmt_duration(a, sizeof a, smltctl_jnum(e, "elapsed_s"));
            fmt_usd(b, sizeof b, smltctl_jnum(e, "cost_usd"));
            /* Numbered from 1, as `watch` and the "epoch" count of the job say it. */
            printf("               %5lld %7lld %8s %8.4f %8.4f %7.2fs %7.2fs %7.2fs %7.2fs %9.0f "
                   "%11s\n",
                   smltctl_jint(e, "epoch") + 1, smltctl_jint(e, "step"), a,
                   smltctl_jnum(e, "test_accuracy"), smltctl_jnum(e, "train_loss"),
                   smltctl_jnum(e, "compute_s"), smltctl_jnum(e, "comm_s"),
                   smltctl_jnum(e, "wait_s"), smltctl_jnum(e, "other_s"),
                   smltctl_jnum(e, "samples_per_s"), b);
        }
    }
    const json_t *events = json_object_get(j, "events");
    size_t ne = json_array_size(events);
    if (ne) {
        printf("  events%s\n", ne > 8 ? " (last 8)" : "");
        for (size_t i = ne > 8 ? ne - 8 : 0; i < ne; i++)
            print_event(json_array_get(events, i));
    }
}

int smltctl_cmd_status(struct smltctl *c, int argc, char **argv)
{
    const char *job = NULL;
    for (int i = 0; i < argc; i++) {
        int r = smltctl_global_opt(c, argc, argv, &i);
        if (r < 0)
            return SMLTCTL_USAGE;
        if (r > 0)
            continue;
        if (argv[i][0] == '-' || job)
            return smltctl_usage_error("status", "unexpected argument %s", argv[i]);
        job = argv[i];
    }
    if (job && check_job_id(job))
        return SMLTCTL_NOTFOUND;
    char path[256], what[160];
    snprintf(path, sizeof path, job ? "/api/jobs/%s" : "/api/jobs", job ? job : "");
    snprintf(what, sizeof what, "job %s", job ? job : "");
    json_t *resp = NULL;
    int rc = smltctl_api(c, "GET", path, NULL, &resp, what);
    if (rc)
        return rc;
    if (c->json)
        smltctl_print_json(resp);
    else if (job)
        print_job(resp);
    else
        print_table(json_object_get(resp, "jobs"));
    json_decref(resp);
    if (!job && !c->json)
        print_nodes(c);
    return SMLTCTL_OK;
}

/* ---- watch ------------------------------------------------------------------------------- */

static volatile sig_atomic_t watch_interrupted;

static void on_sigint(int sig)
{
    watch_interrupted = 1;
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

static int job_over(const char *state)
{
    return !strcmp(state, "succeeded") || !strcmp(state, "failed") ||
           !strcmp(state, "canceled") || !strcmp(state, "interrupted") ||
           !strcmp(state, "stopped");
}

/* The two progress lines of a job. */
static void render(const json_t *j, char *l1, size_t n1, char *l2, size_t n2)
{
    const char *state = smltctl_jstr(j, "state");
    long long step = smltctl_jint(j, "step"), total = smltctl_jint(j, "total_steps");
    long long spe = smltctl_jint(j, "steps_per_epoch"), maxe = smltctl_jint(j, "max_epochs");
    if (smltctl_jint(j, "epochs_target") > 0)
        maxe = smltctl_jint(j, "epochs_target");
    char bar[WATCH_BAR + 3];
    double frac = total > 0 ? (double)step / (double)total : 0;
    if (frac > 1)
        frac = 1;
    int fill = (int)(frac * WATCH_BAR + 0.5);
    bar[0] = '[';
    for (int i = 0; i < WATCH_BAR; i++)
        bar[1 + i] = i < fill ? '=' : (i == fill && fill < WATCH_BAR && total > 0 ? '>' : ' ');
    bar[WATCH_BAR + 1] = ']';
    bar[WATCH_BAR + 2] = '\0';
    if (total > 0) {
        double ep = spe > 0 ? (double)step / (double)spe : 0;
        snprintf(l1, n1, "%s %-9s %s %3.0f%%  epoch %.1f/%lld  step %lld/%lld",
                 smltctl_jstr(j, "id"), state, bar, frac * 100, ep, maxe, step, total);
    } else {
        snprintf(l1, n1, "%s %-9s %s  %s", smltctl_jstr(j, "id"), state, bar,
                 !strcmp(state, "running") || !strcmp(state, "starting")
                     ? "workers starting (loading data)"
                     : "");
    }
    char loss[32], acc[64], cost[32], budget[48], el[32], dl[64];
    double l = smltctl_jnum(j, "train_loss"), a = smltctl_jnum(j, "test_accuracy");
    double target = smltctl_jnum(j, "target_accuracy");
    snprintf(loss, sizeof loss, l > 0 ? "%.4f" : "-", l);
    if (a > 0)
        snprintf(acc, sizeof acc, "%.4f", a);
    else
        snprintf(acc, sizeof acc, "-");
    if (target > 0)
        snprintf(acc + strlen(acc), sizeof acc - strlen(acc), " (target %.4g)", target);
    fmt_usd(cost, sizeof cost, smltctl_jnum(j, "cost_usd"));
    double bu = smltctl_jnum(j, "budget_usd");
    if (bu > 0) {
        char b[32];
        fmt_usd(b, sizeof b, bu);
        snprintf(budget, sizeof budget, "of %s", b);
    } else {
        snprintf(budget, sizeof budget, "(no budget)");
    }
    fmt_duration(el, sizeof el, smltctl_jnum(j, "elapsed_s"));
    double d = smltctl_jnum(j, "deadline_s");
    if (d > 0) {
        char b[32];
        fmt_duration(b, sizeof b, d);
        snprintf(dl, sizeof dl, "of %s deadline", b);
    } else {
        snprintf(dl, sizeof dl, "(no deadline)");
    }
    snprintf(l2, n2, "  loss %s  acc %s  spend %s %s  time %s %s  workers %lld  shards %lld", loss,
             acc, cost, budget, el, dl, smltctl_jint(j, "workers"), smltctl_jint(j, "shards"));
}

struct watch_state {
    int tty, drawn, width;
    double last_plain;
    long long last_series;  /* series entries printed */
    double last_event_at;   /* newest event printed */
    char last_key[256];     /* state/step/epoch of the last --json line */
};

static void clear_drawn(struct watch_state *w)
{
    if (w->tty && w->drawn) {
        fputs("\r\033[2K\033[1A\033[2K", stdout);
        w->drawn = 0;
    }
}

static void draw(struct watch_state *w, const json_t *j)
{
    char l1[512], l2[512];
    render(j, l1, sizeof l1, l2, sizeof l2);
    if (w->tty) {
        clear_drawn(w);
        int max = w->width - 1;
        printf("%.*s\n%.*s", max, l1, max, l2);
        w->drawn = 1;
    } else {
        printf("%s\n%s\n", l1, l2);
    }
    fflush(stdout);
}

/* Prints what happened since the last poll (epochs, events) above the progress lines. */
static void print_news(struct watch_state *w, const json_t *j)
{
    const json_t *series = json_object_get(j, "series");
    const json_t *events = json_object_get(j, "events");
    size_t ns = json_array_size(series), ne = json_array_size(events);
    int any = (long long)ns > w->last_series;
    for (size_t i = 0; i < ne && !any; i++)
        any = smltctl_jnum(json_array_get(events, i), "at") > w->last_event_at;
    if (!any)
        return;
    clear_drawn(w);
    for (size_t i = (size_t)(w->last_series > 0 ? w->last_series : 0); i < ns; i++) {
        const json_t *e = json_array_get(series, i);
        char t[32], cost[32];
        fmt_duration(t, sizeof t, smltctl_jnum(e, "elapsed_s"));
        fmt_usd(cost, sizeof cost, smltctl_jnum(e, "cost_usd"));
        printf("epoch %lld done at %s: test accuracy %.4f, train loss %.4f, took %.1f s "
               "(a worker: %.2f s compute, %.2f s comm, %.2f s waiting for the slowest, %.2f s "
               "other; %.0f samples/s), %s\n",
               smltctl_jint(e, "epoch") + 1, t, smltctl_jnum(e, "test_accuracy"),
               smltctl_jnum(e, "train_loss"), smltctl_jnum(e, "epoch_time_s"),
               smltctl_jnum(e, "compute_s"), smltctl_jnum(e, "comm_s"),
               smltctl_jnum(e, "wait_s"), smltctl_jnum(e, "other_s"),
               smltctl_jnum(e, "samples_per_s"), cost);
    }
    w->last_series = (long long)ns;
    for (size_t i = 0; i < ne; i++) {
        const json_t *e = json_array_get(events, i);
        double at = smltctl_jnum(e, "at");
        if (at > w->last_event_at) {
            print_event(e);
            w->last_event_at = at;
        }
    }
}

static void print_summary(const json_t *j)
{
    const char *state = smltctl_jstr(j, "state");
    const char *id = smltctl_jstr(j, "id");
    const char *why = *smltctl_jstr(j, "error") ? smltctl_jstr(j, "error") : smltctl_jstr(j, "reason");
    const json_t *ledger = json_object_get(j, "ledger");
    char el[32], cost[32], fn[32], ps[32];
    printf("\n%s %s%s%s\n", id, state, *why ? ": " : "", why);
    fmt_duration(el, sizeof el, smltctl_jnum(j, "elapsed_s"));
    double acc = smltctl_jnum(j, "test_accuracy");
    if (acc > 0)
        printf("  accuracy  %.4f test (best %.4f) after %lld epochs; train loss %.4f\n", acc,
               smltctl_jnum(j, "best_accuracy"), smltctl_jint(j, "epoch"),
               smltctl_jnum(j, "train_loss"));
    printf("  time      %s; step %lld of %lld; %lld workers, %lld shards", el,
           smltctl_jint(j, "step"), smltctl_jint(j, "total_steps"), smltctl_jint(j, "workers"),
           smltctl_jint(j, "shards"));
    if (json_object_get(j, "overhead_share"))
        printf("; %.1f%% of the time outside training steps",
               100 * smltctl_jnum(j, "overhead_share"));
    printf("\n");
    fmt_usd(cost, sizeof cost, smltctl_jnum(j, "cost_usd"));
    fmt_usd(fn, sizeof fn, smltctl_jnum(ledger, "function_usd"));
    fmt_usd(ps, sizeof ps, smltctl_jnum(ledger, "ps_usd"));
    printf("  cost      %s: functions %s (%.1f GB-s in %lld invocations), PS nodes %s", cost, fn,
           smltctl_jnum(ledger, "gb_s"), smltctl_jint(ledger, "invocations"), ps);
    double bu = smltctl_jnum(j, "budget_usd");
    if (bu > 0) {
        char b[32];
        fmt_usd(b, sizeof b, bu);
        printf("; budget %s", b);
    }
    printf("\n");
    if (json_is_string(json_object_get(j, "model")))
        printf("  model     saved at step %lld: `smltctl model %s -o model.smlt`\n",
               smltctl_jint(j, "model_step"), id);
    if (strcmp(state, "succeeded"))
        printf("  see       `smltctl logs %s`\n", id);
}

static void print_json_line(struct watch_state *w, const json_t *j, int force)
{
    char key[256];
    snprintf(key, sizeof key, "%s/%lld/%lld/%zu", smltctl_jstr(j, "state"),
             smltctl_jint(j, "step"), smltctl_jint(j, "epoch"),
             json_array_size(json_object_get(j, "events")));
    if (!force && !strcmp(key, w->last_key))
        return;
    snprintf(w->last_key, sizeof w->last_key, "%s", key);
    static const char *keys[] = {"id", "state", "epoch", "max_epochs", "step", "total_steps",
                                 "train_loss", "test_accuracy", "best_accuracy", "cost_usd",
                                 "budget_usd", "elapsed_s", "deadline_s", "workers", "shards",
                                 "reason", "error", NULL};
    json_t *o = json_object();
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(j, keys[i]);
        if (v)
            json_object_set(o, keys[i], v);
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(o);
    fflush(stdout);
}

int smltctl_watch_job(struct smltctl *c, const char *id, double interval_s)
{
    char path[256], err[1024];
    snprintf(path, sizeof path, "/api/jobs/%s", id);
    int rc = smltctl_resolve(c);
    if (rc)
        return rc;
    struct watch_state w = {.tty = isatty(STDOUT_FILENO) && !c->json, .last_series = 0};
    w.width = w.tty ? term_width() : 1 << 20;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    watch_interrupted = 0;
    double lost_since = 0;
    int first = 1;
    json_t *j = NULL;
    for (;;) {
        long status = 0;
        json_decref(j);
        j = NULL;
        c->quiet_http = 1;
        rc = smltctl_api_quiet(c, "GET", path, NULL, &j, &status, err, sizeof err);
        c->quiet_http = 0;
        if (rc == SMLTCTL_UNREACHABLE) {
            /* A busy or restarting coordinator gets a grace period. */
            double t = smlt_now_mono();
            if (!lost_since)
                lost_since = t;
            if (first || t - lost_since >= WATCH_GIVE_UP_S) {
                clear_drawn(&w);
                long st;
                struct smltctl_buf b = {0};
                if (smltctl_http(c, "GET", path, NULL, 5, &st, &b, NULL) == SMLTCTL_OK)
                    smltctl_err("the coordinator at %s stopped answering for a while", c->url);
                smltctl_buf_free(&b);
                break;
            }
        } else if (rc) {
            clear_drawn(&w);
            if (status == 404)
                smltctl_err("no job %s at %s (see `smltctl status`)", id, c->url);
            else
                smltctl_err("%s", err);
            break;
        } else {
            lost_since = 0;
            if (first) {
                /* History from before we started watching: the last few events only. */
                const json_t *ev = json_object_get(j, "events");
                size_t ne = json_array_size(ev);
                if (ne > 5)
                    w.last_event_at = smltctl_jnum(json_array_get(ev, ne - 6), "at");
                first = 0;
            }
            const char *state = smltctl_jstr(j, "state");
            int over = job_over(state);
            if (c->json) {
                print_json_line(&w, j, over);
            } else {
                print_news(&w, j);
                double t = smlt_now_mono();
                if (w.tty || over || t - w.last_plain >= WATCH_PLAIN_EVERY_S) {
                    if (!w.tty || !over)
                        draw(&w, j);
                    w.last_plain = t;
                }
            }
            if (over) {
                if (!c->json) {
                    if (w.tty) {
                        draw(&w, j);
                        printf("\n");
                    }
                    print_summary(j);
                }
                rc = !strcmp(state, "succeeded") ? SMLTCTL_OK : SMLTCTL_ERR;
                break;
            }
        }
        if (watch_interrupted)
            break;
        struct timespec ts = {(time_t)interval_s, (long)((interval_s - (time_t)interval_s) * 1e9)};
        nanosleep(&ts, NULL);
        if (watch_interrupted)
            break;
    }
    if (watch_interrupted) {
        if (w.tty && w.drawn)
            printf("\n");
        fprintf(stderr, "smltctl: stopped watching; %s goes on (`smltctl watch %s` to look again, "
                        "`smltctl cancel %s` to stop it)\n",
                id, id, id);
        rc = 130;
    }
    fflush(stdout);
    sigaction(SIGINT, &old, NULL);
    json_decref(j);
    return rc;
}

int smltctl_cmd_watch(struct smltctl *c, int argc, char **argv)
{
    const char *job = NULL;
    double interval = 0.5;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int r = smltctl_global_opt(c, argc, argv, &i);
        if (r < 0)
            return SMLTCTL_USAGE;
        if (r > 0)
            continue;
        if ((r = smltctl_opt(argc, argv, &i, "--interval", &v)) != 0) {
            if (r < 0 || smltctl_parse_double("--interval", v, &interval))
                return SMLTCTL_USAGE;
            if (interval < 0.05 || interval > 3600)
                return smltctl_usage_error("watch", "--interval: want 0.05..3600 seconds");
            continue;
        }
        if (argv[i][0] == '-' || job)
            return smltctl_usage_error("watch", "unexpected argument %s", argv[i]);
        job = argv[i];
    }
    if (!job)
        return smltctl_usage_error("watch", "which job? (see `smltctl status`)");
    if (check_job_id(job))
        return SMLTCTL_NOTFOUND;
    return smltctl_watch_job(c, job, interval);
}

/* ---- cancel, scale, checkpoint --------------------------------------------------------------- */

int smltctl_cmd_cancel(struct smltctl *c, int argc, char **argv)
{
    const char *job;
    int rc = parse_job_only(c, "cancel", argc, argv, &job);
    if (rc)
        return rc;
    char path[256], what[160];
    snprintf(path, sizeof path, "/api/jobs/%s/cancel", job);
    snprintf(what, sizeof what, "job %s", job);
    json_t *j = NULL;
    rc = smltctl_api(c, "POST", path, NULL, &j, what);
    if (rc)
        return rc;
    if (c->json) {
        smltctl_print_json(j);
    } else {
        printf("canceled %s at step %lld", job, smltctl_jint(j, "step"));
        if (json_is_string(json_object_get(j, "model")))
            printf("; its model is saved: `smltctl model %s -o FILE`", job);
        printf("\n");
    }
    json_decref(j);
    return SMLTCTL_OK;
}

int smltctl_cmd_scale(struct smltctl *c, int argc, char **argv)
{
    const char *job = NULL;
    long long workers = -1, shards = -1;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int r = smltctl_global_opt(c, argc, argv, &i);
        if (r < 0)
            return SMLTCTL_USAGE;
        if (r > 0)
            continue;
        if ((r = smltctl_opt(argc, argv, &i, "--workers", &v)) != 0) {
            if (r < 0 || smltctl_parse_long("--workers", v, 1, 1000000, &workers))
                return SMLTCTL_USAGE;
        } else if ((r = smltctl_opt(argc, argv, &i, "--shards", &v)) != 0) {
            if (r < 0 || smltctl_parse_long("--shards", v, 1, 1000000, &shards))
                return SMLTCTL_USAGE;
        } else if (argv[i][0] == '-' || job) {
            return smltctl_usage_error("scale", "unexpected argument %s", argv[i]);
        } else {
            job = argv[i];
        }
    }
    if (!job)
        return smltctl_usage_error("scale", "which job? (see `smltctl status`)");
    if (workers < 0 && shards < 0)
        return smltctl_usage_error("scale", "give --workers N and/or --shards M");
    if (check_job_id(job))
        return SMLTCTL_NOTFOUND;
    json_t *body = json_object();
    if (workers > 0)
        json_object_set_new(body, "workers", json_integer(workers));
    if (shards > 0)
        json_object_set_new(body, "shards", json_integer(shards));
    char path[256], what[160];
    snprintf(path, sizeof path, "/api/jobs/%s/scale", job);
    snprintf(what, sizeof what, "job %s", job);
    json_t *j = NULL;
    int rc = smltctl_api(c, "POST", path, body, &j, what);
    json_decref(body);
    if (rc)
        return rc;
    if (c->json) {
        smltctl_print_json(j);
    } else {
        printf("%s: asked for", job);
        if (workers > 0)
            printf(" %lld workers", workers);
        if (shards > 0)
            printf("%s %lld shards", workers > 0 ? "," : "", shards);
        printf("; running now with %lld workers, %lld shards\n", smltctl_jint(j, "workers"),
               smltctl_jint(j, "shards"));
        /* The coordinator's own account of the decision, when it made one. */
        const json_t *ev = json_object_get(j, "events");
        for (size_t i = json_array_size(ev); i-- > 0;) {
            const json_t *e = json_array_get(ev, i);
            if (!strcmp(smltctl_jstr(e, "kind"), "scale")) {
                printf("  %s\n", smltctl_jstr(e, "message"));
                break;
            }
        }
    }
    json_decref(j);
    return SMLTCTL_OK;
}

int smltctl_cmd_checkpoint(struct smltctl *c, int argc, char **argv)
{
    const char *job;
    int rc = parse_job_only(c, "checkpoint", argc, argv, &job);
    if (rc)
        return rc;
    char path[256], what[160];
    snprintf(path, sizeof path, "/api/jobs/%s/checkpoint", job);
    snprintf(what, sizeof what, "job %s", job);
    json_t *j = NULL;
    rc = smltctl_api(c, "POST", path, NULL, &j, what);
    if (rc)
        return rc;
    if (c->json)
        smltctl_print_json(j);
    else
        printf("saved %s's model on the coordinator as %s; fetch it with `smltctl model %s -o "
               "FILE`\n",
               job, smltctl_jstr(j, "path"), job);
    json_decref(j);
    return SMLTCTL_OK;
}

/* ---- logs -------------------------------------------------------------------------------- */

/* The 404 of the file endpoints means either "no such job" or "no file yet". */
static int file_not_found(struct smltctl *c, const char *job, const struct smltctl_buf *body,
                          const char *what_missing)
{
    json_error_t je;
    json_t *o = body->data ? json_loadb(body->data, body->len, 0, &je) : NULL;
    const char *msg = o ? json_string_value(json_object_get(o, "error")) : NULL;
    int no_job = msg && strstr(msg, "no such job");
    json_decref(o);
    if (no_job) {
        smltctl_err("no job %s at %s (see `smltctl status`)", job, c->url);
        return SMLTCTL_NOTFOUND;
    }
    smltctl_err("%s", what_missing);
    return SMLTCTL_ERR;
}

static int http_error(const struct smltctl_buf *body, long status)
{
    json_error_t je;
    json_t *o = body->data ? json_loadb(body->data, body->len, 0, &je) : NULL;
    const char *msg = o ? json_string_value(json_object_get(o, "error")) : NULL;
    smltctl_err("the coordinator answered HTTP %ld: %s", status, msg ? msg : "(no message)");
    json_decref(o);
    return SMLTCTL_ERR;
}

int smltctl_cmd_logs(struct smltctl *c, int argc, char **argv)
{
    const char *job = NULL;
    long long tail = 200;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int r = smltctl_global_opt(c, argc, argv, &i);
        if (r < 0)
            return SMLTCTL_USAGE;
        if (r > 0)
            continue;
        if ((r = smltctl_opt(argc, argv, &i, "--tail", &v)) != 0) {
            if (r < 0 || smltctl_parse_long("--tail", v, 0, 100000, &tail))
                return SMLTCTL_USAGE;
        } else if (argv[i][0] == '-' || job) {
            return smltctl_usage_error("logs", "unexpected argument %s", argv[i]);
        } else {
            job = argv[i];
        }
    }
    if (!job)
        return smltctl_usage_error("logs", "which job? (see `smltctl status`)");
    if (check_job_id(job))
        return SMLTCTL_NOTFOUND;
    int rc = smltctl_resolve(c);
    if (rc)
        return rc;
    char path[256];
    snprintf(path, sizeof path, "/api/jobs/%s/logs?tail=%lld", job, tail);
    struct smltctl_buf out = {0};
    long status = 0;
    rc = smltctl_http(c, "GET", path, NULL, 60, &status, &out, NULL);
    if (rc == SMLTCTL_OK) {
        if (status == 200) {
            /* The last `tail` lines, whether the coordinator sent exactly those or more. */
            size_t from = 0;
            if (tail > 0 && out.len) {
                long long lines = 0;
                for (size_t i = out.len - 1; i-- > 0;) {
                    if (out.data[i] == '\n' && ++lines == tail) {
                        from = i + 1;
                        break;
                    }
                }
            }
            if (out.len > from && fwrite(out.data + from, 1, out.len - from, stdout) != out.len - from)
                rc = SMLTCTL_ERR;
        } else if (status == 404) {
            char msg[300];
            snprintf(msg, sizeof msg, "job %s has no log yet", job);
            rc = file_not_found(c, job, &out, msg);
        } else {
            rc = http_error(&out, status);
        }
    }
    smltctl_buf_free(&out);
    return rc;
}

/* ---- model ------------------------------------------------------------------------------- */

static void print_model(struct smltctl *c, const char *file, const struct smlt_model *m,
                        long long bytes)
{
    uint32_t nt = smlt_model_num_tensors(m);
    if (c->json) {
        json_t *ts = json_array();
        for (uint32_t i = 0; i < nt; i++) {
            struct smlt_tensor_info t;
            if (smlt_model_tensor(m, i, &t))
                continue;
            json_t *shape = json_array();
            for (uint32_t d = 0; d < t.ndims; d++)
                json_array_append_new(shape, json_integer((json_int_t)t.shape[d]));
            json_array_append_new(ts, json_pack("{s:s, s:o, s:I, s:I}", "name", t.name, "shape",
                                                shape, "offset", (json_int_t)t.offset, "length",
                                                (json_int_t)t.length));
        }
        json_t *o = json_pack("{s:s, s:I, s:s, s:I, s:I, s:o}", "file", file, "bytes",
                              (json_int_t)bytes, "job", smlt_model_job(m), "step",
                              (json_int_t)smlt_model_step(m), "params",
                              (json_int_t)smlt_model_num_params(m), "tensors", ts);
        smltctl_print_json(o);
        json_decref(o);
        return;
    }
    printf("saved %s (%lld bytes, checked): %s%s%sstep %llu, %llu parameters in %u tensors\n", file,
           bytes, *smlt_model_job(m) ? "job " : "", smlt_model_job(m),
           *smlt_model_job(m) ? ", " : "", (unsigned long long)smlt_model_step(m),
           (unsigned long long)smlt_model_num_params(m), nt);
    for (uint32_t i = 0; i < nt; i++) {
        struct smlt_tensor_info t;
        if (smlt_model_tensor(m, i, &t))
            continue;
        char shape[160] = "";
        size_t k = 0;
        for (uint32_t d = 0; d < t.ndims && k < sizeof shape - 24; d++)
            k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%llu", d ? " x " : "",
                                  (unsigned long long)t.shape[d]);
        printf("  %-24s %-20s %llu\n", t.name, shape, (unsigned long long)t.length);
    }
}

int smltctl_cmd_model(struct smltctl *c, int argc, char **argv)
{
    const char *job = NULL, *file = NULL;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int r = smltctl_global_opt(c, argc, argv, &i);
        if (r < 0)
            return SMLTCTL_USAGE;
        if (r > 0)
            continue;
        if ((r = smltctl_opt(argc, argv, &i, "-o", &v)) != 0 ||
            (r = smltctl_opt(argc, argv, &i, "--output", &v)) != 0) {
            if (r < 0)
                return SMLTCTL_USAGE;
            file = v;
        } else if (argv[i][0] == '-' || job) {
            return smltctl_usage_error("model", "unexpected argument %s", argv[i]);
        } else {
            job = argv[i];
        }
    }
    if (!job)
        return smltctl_usage_error("model", "which job? (see `smltctl status`)");
    if (check_job_id(job))
        return SMLTCTL_NOTFOUND;
    char def[160];
    if (!file) {
        snprintf(def, sizeof def, "%s.smlt", job);
        file = def;
    }
    if (!*file || !strcmp(file, "-"))
        return smltctl_usage_error("model", "-o: give a file name (the model is binary)");
    int rc = smltctl_resolve(c);
    if (rc)
        return rc;
    /* Download next to the destination, check, then rename: FILE is never a partial or corrupt
     * model. */
    char part[PATH_MAX + 32];
    snprintf(part, sizeof part, "%s.part.%d", file, (int)getpid());
    FILE *f = fopen(part, "wb");
    if (!f) {
        smltctl_err("cannot write %s: %s", part, strerror(errno));
        return SMLTCTL_ERR;
    }
    char path[256];
    snprintf(path, sizeof path, "/api/jobs/%s/model", job);
    struct smltctl_buf out = {0};
    long status = 0;
    rc = smltctl_http(c, "GET", path, NULL, 600, &status, &out, f);
    if (fclose(f) != 0 && rc == SMLTCTL_OK) {
        smltctl_err("cannot write %s: %s", part, strerror(errno));
        rc = SMLTCTL_ERR;
    }
    if (rc == SMLTCTL_OK && status != 200) {
        if (status == 404) {
            char msg[400];
            snprintf(msg, sizeof msg, "job %s has no saved model yet: it is saved when the job "
                                      "ends, or now with `smltctl checkpoint %s`",
                     job, job);
            rc = file_not_found(c, job, &out, msg);
        } else {
            rc = http_error(&out, status);
        }
    }
    smltctl_buf_free(&out);
    if (rc) {
        unlink(part);
        return rc;
    }
    struct smlt_model *m = NULL;
    char err[512] = "";
    int mrc = smlt_model_read(part, &m, err, sizeof err);
    if (mrc) {
        smltctl_err("the model downloaded from %s is not a valid model file: %s", c->url,
                    err[0] ? err : smlt_strerror(mrc));
        unlink(part);
        return SMLTCTL_ERR;
    }
    struct stat st;
    long long bytes = stat(part, &st) == 0 ? (long long)st.st_size : -1;
    if (rename(part, file) != 0) {
        smltctl_err("cannot rename %s to %s: %s", part, file, strerror(errno));
        unlink(part);
        smlt_model_free(m);
        return SMLTCTL_ERR;
    }
    print_model(c, file, m, bytes);
    smlt_model_free(m);
    return SMLTCTL_OK;
}
