/* coord_spec_json.c: a parsed job spec written back out (see coord_spec.h).
 *
 * The other half of coord_spec.c: that file turns the user's JSON into a struct coord_spec,
 * this one turns the struct into the canonical JSON the journal keeps and the API shows (every
 * default filled in, fields that do not apply left out, in a fixed key order), and into the
 * PS shards' job configuration. The name tables it uses are coord_spec.c's. */
#include "coord_spec.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "smlt.pb-c.h"

/* Sets key to val (taken) and counts failures, so a chain of sets is checked once at the end. */
static void put(json_t *obj, const char *key, json_t *val, int *bad_count)
{
    if (!obj || !val || json_object_set_new(obj, key, val) < 0)
        (*bad_count)++;
}

/* The dataset_options object: label_column and header only for a csv: dataset. */
static json_t *dataset_options_json(const struct coord_spec *s, int *nbad)
{
    const struct coord_spec_dataset_opts *d = &s->dataset_options;
    json_t *dopt = json_object();
    if (!strncmp(s->dataset, "csv:", 4)) {
        put(dopt, "label_column", d->label_column < 0 ? json_string("last")
                                                      : json_integer(d->label_column), nbad);
        put(dopt, "header", d->header == SMLT__CSV_HEADER__HEADER_AUTO
                                ? json_string("auto")
                                : json_boolean(d->header == SMLT__CSV_HEADER__HEADER_YES),
            nbad);
    }
    put(dopt, "scale", json_string(coord_spec_scale_name(d->scale)), nbad);
    return dopt;
}

/* The optimizer object: only the settings of its kind. */
static json_t *optimizer_json(const struct coord_spec_optim *op, int *nbad)
{
    json_t *opt = json_object();
    put(opt, "kind", json_string(coord_spec_optim_name(op->kind)), nbad);
    put(opt, "lr", json_real(op->lr), nbad);
    if (op->kind == SMLT_OPT_MOMENTUM) {
        put(opt, "momentum", json_real(op->momentum), nbad);
        put(opt, "nesterov", json_boolean(op->nesterov), nbad);
    }
    if (op->kind == SMLT_OPT_ADAM) {
        put(opt, "beta1", json_real(op->beta1), nbad);
        put(opt, "beta2", json_real(op->beta2), nbad);
    }
    if (op->kind == SMLT_OPT_ADAM || op->kind == SMLT_OPT_ADAGRAD)
        put(opt, "eps", json_real(op->eps), nbad);
    put(opt, "weight_decay", json_real(op->weight_decay), nbad);
    if (op->kind == SMLT_OPT_ADAM)
        put(opt, "decoupled", json_boolean(op->decoupled), nbad);
    return opt;
}

/* batch_size, how long, and the scheduler's bounds and limits, in that order. */
static void training_json(json_t *o, const struct coord_spec *s, int *nbad)
{
    put(o, "batch_size", json_integer(s->batch_size), nbad);
    if (s->epochs)
        put(o, "epochs", json_integer(s->epochs), nbad);
    if (s->target_accuracy > 0.0)
        put(o, "target_accuracy", json_real(s->target_accuracy), nbad);
    if (!s->epochs)
        put(o, "max_epochs", json_integer(s->max_epochs), nbad);
    put(o, "workers", json_integer(s->workers), nbad);
    put(o, "min_workers", json_integer(s->min_workers), nbad);
    put(o, "max_workers", json_integer(s->max_workers), nbad);
    put(o, "shards", json_integer(s->shards), nbad);
    put(o, "max_shards", json_integer(s->max_shards), nbad);
    if (s->deadline_s > 0.0)
        put(o, "deadline_s", json_real(s->deadline_s), nbad);
    if (s->budget_usd > 0.0)
        put(o, "budget_usd", json_real(s->budget_usd), nbad);
}

static json_t *platform_json(const struct coord_spec_platform *pl, int *nbad)
{
    json_t *plat = json_object();
    put(plat, "kind", json_string(coord_spec_platform_name(pl->kind)), nbad);
    put(plat, "memory_mb", json_integer(pl->memory_mb), nbad);
    put(plat, "time_limit_s", json_integer(pl->time_limit_s), nbad);
    put(plat, "concurrency", json_integer(pl->concurrency), nbad);
    put(plat, "region", json_string(pl->region), nbad);
    put(plat, "arch", json_string(coord_spec_arch_name(pl->arch)), nbad);
    if (pl->ps_nic_mbps)
        put(plat, "ps_nic_mbps", json_integer(pl->ps_nic_mbps), nbad);
    return plat;
}

/* The external shards (tokens in clear), only when the spec names them. */
static void ps_json(json_t *o, const struct coord_spec *s, int *nbad)
{
    if (!s->ps.addrs[0]) {
        if (s->ps.replicas > 1) {
            json_t *ps = json_object();
            put(ps, "replicas", json_integer(s->ps.replicas), nbad);
            put(o, "ps", ps, nbad);
        }
        return;
    }
    json_t *ps = json_object();
    put(ps, "addrs", json_string(s->ps.addrs), nbad);
    put(ps, "token", json_string(s->ps.token), nbad);
    if (s->ps.admin_token[0])
        put(ps, "admin_token", json_string(s->ps.admin_token), nbad);
    put(o, "ps", ps, nbad);
}

/* Beyond 2^63 - 1 a seed does not fit a JSON integer: it goes out as a decimal string. */
static void seed_json(json_t *o, uint64_t seed, int *nbad)
{
    if (seed <= (uint64_t)INT64_MAX) {
        put(o, "seed", json_integer((json_int_t)seed), nbad);
    } else {
        char buf[24];
        snprintf(buf, sizeof buf, "%" PRIu64, seed);
        put(o, "seed", json_string(buf), nbad);
    }
}

json_t *coord_spec_to_json(const struct coord_spec *s)
{
    int nbad = 0;
    json_t *o = json_object();
    put(o, "name", json_string(s->name), &nbad);
    put(o, "model", json_string(s->model), &nbad);
    put(o, "dataset", json_string(s->dataset), &nbad);
    put(o, "dataset_options", dataset_options_json(s, &nbad), &nbad);
    if (s->cache_dir[0])
        put(o, "cache_dir", json_string(s->cache_dir), &nbad);
    put(o, "sync", json_string(coord_spec_sync_name(s->sync)), &nbad);
    if (s->sync == SMLT_SYNC_SSP)
        put(o, "staleness", json_integer(s->staleness), &nbad);
    put(o, "optimizer", optimizer_json(&s->optimizer, &nbad), &nbad);
    training_json(o, s, &nbad);
    put(o, "platform", platform_json(&s->platform, &nbad), &nbad);
    put(o, "prices", coord_prices_to_json(&s->prices), &nbad);
    if (s->statistical_efficiency)
        put(o, "statistical_efficiency", json_true(), &nbad);
    ps_json(o, s, &nbad);
    seed_json(o, s->seed, &nbad);
    put(o, "evaluate_every_epochs", json_integer(s->evaluate_every_epochs), &nbad);
    json_t *ck = json_object();
    if (s->checkpoint.every_steps)
        put(ck, "every_steps", json_integer((json_int_t)s->checkpoint.every_steps), &nbad);
    else
        put(ck, "every_s", json_real(s->checkpoint.every_s), &nbad);
    put(ck, "keep", json_integer(s->checkpoint.keep), &nbad);
    if (!s->checkpoint.every_steps && s->checkpoint.every_s <= 0) {
        json_decref(ck);
        put(o, "checkpoint", json_false(), &nbad);
    } else {
        put(o, "checkpoint", ck, &nbad);
    }
    if (s->chaos.slow_rank >= 0) {
        json_t *ch = json_object();
        put(ch, "slow_rank", json_integer(s->chaos.slow_rank), &nbad);
        put(ch, "slow_ms", json_real(s->chaos.slow_ms), &nbad);
        put(o, "chaos", ch, &nbad);
    }
    if (nbad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *coord_spec_to_json_redacted(const struct coord_spec *s)
{
    json_t *o = coord_spec_to_json(s);
    json_t *ps = o ? json_object_get(o, "ps") : NULL;
    int nbad = 0;
    if (ps) {
        if (json_object_get(ps, "token"))
            put(ps, "token", json_string("***"), &nbad);
        if (json_object_get(ps, "admin_token"))
            put(ps, "admin_token", json_string("***"), &nbad);
    }
    if (nbad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void coord_spec_job_conf(const struct coord_spec *s, struct smlt_job_conf *conf)
{
    memset(conf, 0, sizeof *conf);
    conf->job = s->name;
    conf->sync = s->sync;
    conf->workers = s->workers;
    conf->staleness = s->staleness;
    conf->optim = s->optimizer.kind;
    conf->lr = (float)s->optimizer.lr;
    conf->momentum = (float)s->optimizer.momentum;
    conf->nesterov = s->optimizer.nesterov;
    conf->beta1 = (float)s->optimizer.beta1;
    conf->beta2 = (float)s->optimizer.beta2;
    conf->eps = (float)s->optimizer.eps;
    conf->weight_decay = (float)s->optimizer.weight_decay;
    conf->decoupled = s->optimizer.decoupled;
    conf->seed = s->seed;
}
