/* smlt_admin.c: libsmlt's job administration, the calls of include/smlt_admin.h: setting up
 * a job, setting parameters and updating its configuration, shutting the shards down, live
 * resharding (freeze, export, import, retire), stopping at a step, checkpoints and restoring
 * them, and replicated shards (building a backup, promoting it).
 *
 * Each call fills a batch of operations and runs it with the machinery of smlt_client.c
 * (smlt_client_priv.h), which also sends the operations and reads their replies. */
#include "smlt_admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "part_map.h"
#include "smlt_client_priv.h"
#include "smlt_limits.h"

void smlt_job_conf_default(struct smlt_job_conf *j)
{
    memset(j, 0, sizeof *j);
    j->job = "job";
    j->sync = SMLT_SYNC_BSP;
    j->workers = 1;
    j->optim = SMLT_OPT_SGD;
    j->lr = 0.01f;
    j->momentum = 0.9f;
    j->beta1 = 0.9f;
    j->beta2 = 0.999f;
    j->eps = 1e-8f;
}

/* Keeps a job's settings for later configurations (a reshard configures new shards), with its
 * own copy of the checkpoint directory. */
static void job_conf_set(struct smlt_client *c, const struct smlt_job_conf *conf)
{
    c->job = *conf;
    if (conf->checkpoint_dir) {
        snprintf(c->job_ckpt_dir, sizeof c->job_ckpt_dir, "%s", conf->checkpoint_dir);
        c->job.checkpoint_dir = c->job_ckpt_dir;
    }
}

static int fill_conf(struct smlt_client *c, void *arg)
{
    return smlt_client__fill_per_shard(c, OP_CONF);
}

int smlt_job_setup(struct smlt_client **out, const char *addrs, const struct smlt_client_opts *opts,
                   const struct smlt_tensor_def *t, size_t ntensors, const struct smlt_job_conf *conf,
                   char *errmsg, size_t errlen)
{
    *out = NULL;
    if (!addrs || !t || !conf || ntensors == 0 || ntensors > SMLT_MAX_TENSORS) {
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "addresses, tensors (1..%u) and a job configuration are required",
                     SMLT_MAX_TENSORS);
        return SMLT_EINVAL;
    }
    struct smlt_client *c = smlt_client__new(opts, errmsg, errlen);
    if (!c)
        return SMLT_EINVAL;
    char *list = strdup(addrs), *save = NULL;
    const char *addr[SMLT_MAX_SHARDS];
    uint32_t n = 0;
    for (char *a = strtok_r(list, ",", &save); a && n < SMLT_MAX_SHARDS; a = strtok_r(NULL, ",", &save)) {
        while (*a == ' ')
            a++;
        addr[n++] = a;
    }
    struct part_map_spec *spec = calloc(ntensors, sizeof *spec);
    int rc = 0;
    char e[256] = "";
    if (!spec) {
        rc = SMLT_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < ntensors; i++) {
        spec[i].name = t[i].name;
        spec[i].ndims = t[i].ndims;
        spec[i].shape = t[i].shape;
        spec[i].init = t[i].init;
        spec[i].init_scale = t[i].init_scale;
    }
    struct part_map *m = part_map_build(spec, (uint32_t)ntensors, n, addr,
                                    conf->map_version ? conf->map_version : 1, conf->seed, conf->job, e,
                                    sizeof e);
    if (!m) {
        snprintf(c->err, sizeof c->err, "%s", e);
        rc = SMLT_EINVAL;
        goto out;
    }
    job_conf_set(c, conf);
    if ((rc = smlt_client__install_map(c, m)) != 0)
        goto out;
    rc = fill_conf(c, NULL);
    if (!rc)
        rc = smlt_client__batch_run(c);
out:
    free(spec);
    free(list);
    if (rc) {
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "%s", c->err[0] ? c->err : smlt_strerror(rc));
        smlt_client_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

static int fill_set(struct smlt_client *c, void *arg)
{
    int rc = smlt_client__fill_per_shard(c, OP_SET);
    for (size_t i = 0; !rc && i < c->nops; i++)
        c->ops[i].src = arg;
    return rc;
}

int smlt_set_params(struct smlt_client *c, const float *model)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    return smlt_client__call(c, fill_set, (void *)model);
}

struct update_args {
    const float *lr, *wd;
    const uint32_t *workers;
    const uint64_t *ckpt_every;
};

static int fill_update(struct smlt_client *c, void *arg)
{
    struct update_args *u = arg;
    int rc = smlt_client__fill_per_shard(c, OP_UPDATE);
    for (size_t i = 0; !rc && i < c->nops; i++) {
        struct op *o = &c->ops[i];
        if (u->lr) {
            o->has_lr = 1;
            o->lr = *u->lr;
        }
        if (u->wd) {
            o->has_wd = 1;
            o->wd = *u->wd;
        }
        if (u->workers) {
            o->has_workers = 1;
            o->workers = *u->workers;
        }
        if (u->ckpt_every) {
            o->has_ckpt_every = 1;
            o->ckpt_every = *u->ckpt_every;
        }
    }
    return rc;
}

int smlt_update_conf(struct smlt_client *c, const float *lr, const float *weight_decay,
                     const uint32_t *workers)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    struct update_args u = {lr, weight_decay, workers, NULL};
    return smlt_client__call(c, fill_update, &u);
}

int smlt_set_checkpoint_every(struct smlt_client *c, uint64_t every_steps)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    struct update_args u = {NULL, NULL, NULL, &every_steps};
    return smlt_client__call(c, fill_update, &u);
}

static int fill_shutdown(struct smlt_client *c, void *arg)
{
    return smlt_client__fill_per_shard(c, OP_SHUTDOWN);
}

int smlt_shutdown_shards(struct smlt_client *c)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    return smlt_client__call(c, fill_shutdown, NULL);
}

/* ---- live resharding ------------------------------------------------------------------- */

static int fill_prepare(struct smlt_client *c, uint64_t freeze)
{
    int rc = smlt_client__fill_per_shard(c, OP_PREPARE);
    for (size_t i = 0; !rc && i < c->nops; i++)
        c->ops[i].freeze = freeze;
    return rc;
}

static int fill_export(struct smlt_client *c)
{
    int rc = smlt_client__fill_per_shard(c, OP_EXPORT);
    for (size_t i = 0; !rc && i < c->nops; i++) {
        c->ops[i].lo = c->links[i].lo;
        c->ops[i].hi = c->links[i].hi;
    }
    return rc;
}

/* Exports every shard's range into params (total floats) and state (nstate arrays of total),
 * merging the counters into *m (arrays malloc'd). state may be NULL to get only params and
 * the metadata. Runs with the current map; the shards need not be frozen (each export is a
 * consistent cut of its shard: nothing in flight). */
static int export_all(struct smlt_client *c, float *params, float **state_out, struct xmeta *m)
{
    int rc = fill_export(c);
    if (!rc)
        rc = smlt_client__batch_run(c);
    if (rc)
        return rc;
    uint64_t total = c->map->total;
    memset(m, 0, sizeof *m);
    m->nstate = c->ops[0].xm.nstate;
    for (size_t i = 0; i < c->nops; i++) {
        struct op *o = &c->ops[i];
        if (o->xm.nstate != m->nstate) {
            smlt_client__seterr(c, "shards disagree on the optimizer state (%u vs %u arrays)",
                                o->xm.nstate, m->nstate);
            return SMLT_EPROTO;
        }
        if (o->xm.nranks > m->nranks)
            m->nranks = o->xm.nranks;
        if (o->xm.have_conf && !m->have_conf) {
            m->conf = o->xm.conf;
            memcpy(m->ckpt_dir, o->xm.ckpt_dir, sizeof m->ckpt_dir);
            if (m->conf.checkpoint_dir)
                m->conf.checkpoint_dir = m->ckpt_dir;
            m->have_conf = 1;
        }
    }
    float *state = NULL;
    if (state_out) {
        state = malloc(sizeof(float) * (size_t)total * (m->nstate ? m->nstate : 1));
        if (!state)
            return SMLT_ENOMEM;
        *state_out = state;
    }
    m->last_counted = malloc(sizeof(uint64_t) * (m->nranks ? m->nranks : 1));
    m->last_applied = malloc(sizeof(uint64_t) * (m->nranks ? m->nranks : 1));
    if (!m->last_counted || !m->last_applied)
        return SMLT_ENOMEM;
    for (uint32_t r = 0; r < m->nranks; r++)
        m->last_counted[r] = m->last_applied[r] = UINT64_MAX;
    for (size_t i = 0; i < c->nops; i++) {
        struct op *o = &c->ops[i];
        size_t n = (size_t)(o->hi - o->lo);
        memcpy(params + o->lo, o->xbuf, n * sizeof(float));
        for (uint32_t k = 0; state && k < m->nstate; k++)
            memcpy(state + (size_t)k * total + o->lo, o->xbuf + (size_t)(k + 1) * n,
                   n * sizeof(float));
        /* Frozen shards agree on these; ASP shards may not: the latest of each is kept. */
        if (o->xm.version > m->version)
            m->version = o->xm.version;
        if (o->xm.clock > m->clock)
            m->clock = o->xm.clock;
        if (o->xm.updates > m->updates)
            m->updates = o->xm.updates;
        for (uint32_t r = 0; r < o->xm.nranks; r++) {
            uint64_t a = o->xm.last_counted[r], b = o->xm.last_applied[r];
            if (a != UINT64_MAX && (m->last_counted[r] == UINT64_MAX || a > m->last_counted[r]))
                m->last_counted[r] = a;
            if (b != UINT64_MAX && (m->last_applied[r] == UINT64_MAX || b > m->last_applied[r]))
                m->last_applied[r] = b;
        }
    }
    return 0;
}

int smlt_export(struct smlt_client *c, float *params, float *state, uint32_t *nstate)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    struct xmeta m;
    float *st = NULL;
    rc = export_all(c, params, state ? &st : NULL, &m);
    if (!rc && state && st)
        memcpy(state, st, sizeof(float) * (size_t)c->map->total * m.nstate);
    if (!rc && nstate)
        *nstate = m.nstate;
    free(st);
    free(m.last_counted);
    free(m.last_applied);
    return rc;
}

/* Sends Retire{map} to the shards at addrs through a short-lived client of their own (they are
 * not in c's map any more). Returns 0 or the first failure. */
static int retire_shards(struct smlt_client *c, char **addrs, uint32_t n,
                         const struct part_map *map)
{
    char e[256];
    struct smlt_client *t = smlt_client__new(&c->opts, e, sizeof e);
    if (!t)
        return SMLT_ENOMEM;
    int rc = smlt_client__links_resize(t, n);
    for (uint32_t i = 0; !rc && i < n; i++) {
        t->links[i] = (struct link){.c = t, .idx = i, .shard = UINT32_MAX, .addr = strdup(addrs[i])};
        t->links[i].retry_ev = evtimer_new(t->base, smlt_client__on_retry, &t->links[i]);
    }
    if (!rc)
        rc = smlt_client__fill_per_shard(t, OP_RETIRE);
    for (size_t i = 0; !rc && i < t->nops; i++)
        t->ops[i].retire_map = map;
    if (!rc)
        rc = smlt_client__batch_run(t);
    if (rc)
        smlt_client__seterr(c, "retiring the old shards: %s",
                            t->err[0] ? t->err : smlt_strerror(rc));
    smlt_client_close(t);
    return rc;
}

int smlt_freeze_at_boundary(struct smlt_client *c, uint64_t base, uint64_t align, uint64_t *step)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    if ((rc = fill_prepare(c, 0)) || (rc = smlt_client__batch_run(c)))
        return rc;
    uint64_t at = 0;
    for (size_t i = 0; i < c->nops; i++)
        if (c->ops[i].clock > at)
            at = c->ops[i].clock;
    uint64_t b = at <= base || !align ? (at > base ? at : base)
                                      : base + (at - base + align - 1) / align * align;
    if (b == 0)
        b = align ? base + align : 1;
    if ((rc = fill_prepare(c, b)))
        return rc;
    for (size_t i = 0; i < c->nops; i++)
        c->ops[i].stop = 1;
    if ((rc = smlt_client__batch_run(c)))
        return rc;
    for (size_t i = 0; i < c->nops; i++) {
        if (c->ops[i].clock != b) {
            /* A shard moved past the boundary between the two rounds: call it off. */
            if (!fill_prepare(c, UINT64_MAX))
                smlt_client__batch_run(c);
            smlt_client__seterr(c, "a shard passed step %llu before the barrier was set",
                                (unsigned long long)b);
            return SMLT_EAGAIN;
        }
    }
    if (step)
        *step = b;
    return 0;
}

int smlt_unfreeze(struct smlt_client *c)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    if ((rc = fill_prepare(c, UINT64_MAX)))
        return rc;
    return smlt_client__batch_run(c);
}

int smlt_stop_at(struct smlt_client *c, uint64_t *step)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    if ((rc = fill_prepare(c, 0)) || (rc = smlt_client__batch_run(c)))
        return rc;
    uint64_t at = 1;
    for (size_t i = 0; i < c->nops; i++)
        if (c->ops[i].clock > at)
            at = c->ops[i].clock;
    if ((rc = fill_prepare(c, at)))
        return rc;
    for (size_t i = 0; i < c->nops; i++)
        c->ops[i].stop = 1;
    if ((rc = smlt_client__batch_run(c)))
        return rc;
    if (step)
        *step = at;
    return 0;
}

int smlt_reshard(struct smlt_client *c, const char *new_addrs, uint64_t *clock, char *err,
                 size_t errlen)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    const char *addr[SMLT_MAX_SHARDS];
    uint32_t n = 0;
    char *list = strdup(new_addrs ? new_addrs : ""), *save = NULL;
    for (char *a = strtok_r(list, ",", &save); a && n < SMLT_MAX_SHARDS; a = strtok_r(NULL, ",", &save)) {
        while (*a == ' ')
            a++;
        if (*a)
            addr[n++] = a;
    }
    float *params = NULL, *state = NULL, *slice = NULL;
    struct xmeta m = {0};
    struct part_map *nm = NULL;
    char *retired[SMLT_MAX_SHARDS];
    uint32_t nret = 0;
    uint64_t total = c->map->total;
    int frozen = 0;
    if (n == 0) {
        smlt_client__seterr(c, "no shard addresses for the new map");
        rc = SMLT_EINVAL;
        goto out;
    }
    /* 1. Where can every shard freeze? Then all freeze at the latest of those steps. */
    if ((rc = fill_prepare(c, 0)) || (rc = smlt_client__batch_run(c)))
        goto out;
    uint64_t at = 1;
    for (size_t i = 0; i < c->nops; i++)
        if (c->ops[i].clock > at)
            at = c->ops[i].clock;
    frozen = 1;
    if ((rc = fill_prepare(c, at)) || (rc = smlt_client__batch_run(c)))
        goto out;
    /* 2. Everything the shards hold. */
    params = malloc(sizeof(float) * (size_t)total);
    if (!params) {
        rc = SMLT_ENOMEM;
        goto out;
    }
    if ((rc = export_all(c, params, &state, &m)))
        goto out;
    if (!m.have_conf) {
        smlt_client__seterr(c, "the shards did not say how the job is configured");
        rc = SMLT_EPROTO;
        goto out;
    }
    /* 3. The new map, and the shards leaving it told where to send their clients. */
    char e[256];
    nm = part_map_reshard(c->map, n, addr, e, sizeof e);
    if (!nm) {
        smlt_client__seterr(c, "%s", e);
        rc = SMLT_EINVAL;
        goto out;
    }
    /* The shards leaving are told only at the end, once the new map's shards are ready:
     * telling them sends their clients to the new map. */
    for (uint32_t i = 0; i < c->nlinks; i++) {
        int kept = 0;
        for (uint32_t q = 0; q < n && !kept; q++)
            kept = !strcmp(c->links[i].addr, addr[q]);
        if (!kept)
            retired[nret++] = strdup(c->links[i].addr);
    }
    /* 4. The new shards: configured to wait for their ranges, then given them. */
    struct part_map *keep = nm;
    nm = NULL;
    if ((rc = smlt_client__install_map(c, keep))) {
        part_map_free(keep);
        goto out;
    }
    frozen = 0; /* the old map's shards are reconfigured or retired from here on */
    job_conf_set(c, &m.conf);
    c->job.job = c->map->job;
    if ((rc = smlt_client__fill_per_shard(c, OP_CONF)))
        goto out;
    for (size_t i = 0; i < c->nops; i++)
        c->ops[i].await_import = 1;
    if ((rc = smlt_client__batch_run(c)))
        goto out;
    size_t maxn = 0;
    for (uint32_t i = 0; i < c->nlinks; i++)
        if (c->links[i].hi - c->links[i].lo > maxn)
            maxn = (size_t)(c->links[i].hi - c->links[i].lo);
    slice = malloc(sizeof(float) * (1 + m.nstate) * (maxn ? maxn : 1) * c->nlinks);
    if (!slice || (rc = smlt_client__fill_per_shard(c, OP_IMPORT))) {
        rc = rc ? rc : SMLT_ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < c->nlinks; i++) {
        struct op *o = &c->ops[i];
        size_t len = (size_t)(c->links[i].hi - c->links[i].lo);
        float *dst = slice + (size_t)i * (1 + m.nstate) * (maxn ? maxn : 1);
        memcpy(dst, params + c->links[i].lo, len * sizeof(float));
        for (uint32_t k = 0; k < m.nstate; k++)
            memcpy(dst + (size_t)(k + 1) * len, state + (size_t)k * total + c->links[i].lo,
                   len * sizeof(float));
        o->lo = c->links[i].lo;
        o->hi = c->links[i].hi;
        o->src = dst;
        o->xm = m;
        o->final = 1;
    }
    if ((rc = smlt_client__batch_run(c)))
        goto out;
    if (nret && (rc = retire_shards(c, retired, nret, c->map)) != 0)
        goto out;
    if (clock)
        *clock = m.clock;
out:
    for (uint32_t i = 0; i < nret; i++)
        free(retired[i]);
    if (rc && frozen) {
        /* Call the move off: the old shards take pushes again. */
        int saved = rc;
        char msg[sizeof c->err];
        snprintf(msg, sizeof msg, "%s", c->err);
        if (!fill_prepare(c, UINT64_MAX))
            smlt_client__batch_run(c);
        rc = saved;
        snprintf(c->err, sizeof c->err, "%s", msg);
    }
    if (rc && err && errlen)
        snprintf(err, errlen, "%s", c->err[0] ? c->err : smlt_strerror(rc));
    /* The import ops borrowed m's arrays and slice: drop the batch before freeing them. */
    smlt_client__ops_free(c);
    free(list);
    free(params);
    free(state);
    free(slice);
    free(m.last_counted);
    free(m.last_applied);
    part_map_free(nm);
    return rc;
}

/* ---- checkpoints ----------------------------------------------------------------------- */

struct ckpt_args {
    const char *dir;
    int one;          /* list: only shard `shard` */
    uint32_t shard;
    int restore;
    uint64_t step;
};

static int fill_ckpt(struct smlt_client *c, void *arg)
{
    struct ckpt_args *a = arg;
    int rc;
    if (a->one) {
        if (a->shard >= c->nlinks)
            return SMLT_ERANGE;
        if ((rc = smlt_client__batch_alloc(c, 1)))
            return rc;
        c->ops[0].kind = OP_LIST_CKPT;
        c->ops[0].link = a->shard;
    } else if ((rc = smlt_client__fill_per_shard(c, a->restore ? OP_RESTORE : OP_LIST_CKPT))) {
        return rc;
    }
    for (size_t i = 0; i < c->nops; i++) {
        c->ops[i].ckpt_dir = a->dir;
        c->ops[i].step = a->step;
    }
    return 0;
}

int smlt_checkpoint_list(struct smlt_client *c, uint32_t shard, const char *dir, uint64_t *steps,
                         size_t cap, size_t *n, uint32_t *corrupt, char *report, size_t reportlen)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    struct ckpt_args a = {.dir = dir, .one = 1, .shard = shard};
    if ((rc = smlt_client__call(c, fill_ckpt, &a)))
        return rc;
    const struct op *o = &c->ops[0];
    for (size_t i = 0; i < o->ck_n && i < cap; i++)
        steps[i] = o->ck_steps[i];
    if (n)
        *n = o->ck_n;
    if (corrupt)
        *corrupt = o->ck_corrupt;
    if (report && reportlen)
        snprintf(report, reportlen, "%s", o->ck_report ? o->ck_report : "");
    return 0;
}

/* The newest step in every shard's list (each newest first). */
static uint64_t newest_common(const struct smlt_client *c)
{
    const struct op *first = &c->ops[0];
    for (size_t k = 0; k < first->ck_n; k++) {
        uint64_t s = first->ck_steps[k];
        int everywhere = 1;
        for (size_t i = 1; i < c->nops && everywhere; i++) {
            int found = 0;
            for (size_t j = 0; j < c->ops[i].ck_n && !found; j++)
                found = c->ops[i].ck_steps[j] == s;
            everywhere = found;
        }
        if (everywhere)
            return s;
    }
    return 0;
}

int smlt_restore_from(struct smlt_client *c, const char *dir, uint64_t step, uint64_t *restored)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    struct ckpt_args a = {.dir = dir, .step = step};
    if (!step) {
        if ((rc = smlt_client__call(c, fill_ckpt, &a)))
            return rc;
        a.step = newest_common(c);
        if (!a.step) {
            size_t off = 0;
            off += (size_t)snprintf(c->err, sizeof c->err, "no checkpoint step is valid on every shard:");
            for (size_t i = 0; i < c->nops && off < sizeof c->err; i++)
                off += (size_t)snprintf(c->err + off, sizeof c->err - off, " shard %u has %zu%s%s",
                                        (unsigned)i, c->ops[i].ck_n,
                                        c->ops[i].ck_report ? " (" : "",
                                        c->ops[i].ck_report ? "corrupt ones skipped)" : "");
            return SMLT_ENOTFOUND;
        }
    }
    a.restore = 1;
    if ((rc = smlt_client__call(c, fill_ckpt, &a)))
        return rc;
    if (restored)
        *restored = a.step;
    return 0;
}

int smlt_restore(struct smlt_client *c, uint64_t step, uint64_t *restored)
{
    return smlt_restore_from(c, NULL, step, restored);
}

/* ---- replicated shards ------------------------------------------------------------------- */

struct backup_args {
    uint32_t shard;
    const char *addr;
};

static int fill_set_backup(struct smlt_client *c, void *arg)
{
    struct backup_args *a = arg;
    if (a->shard >= c->nlinks) {
        smlt_client__seterr(c, "shard %u is not in the map (%u shards)", a->shard, c->nlinks);
        return SMLT_EINVAL;
    }
    if (smlt_client__batch_alloc(c, 1))
        return SMLT_ENOMEM;
    c->ops[0].kind = OP_SET_BACKUP;
    c->ops[0].link = a->shard;
    c->ops[0].backup_addr = a->addr;
    return 0;
}

int smlt_set_backup(struct smlt_client *c, uint32_t shard, const char *backup_addr)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    if (!backup_addr || !*backup_addr) {
        smlt_client__seterr(c, "no backup address");
        return SMLT_EINVAL;
    }
    struct backup_args a = {shard, backup_addr};
    return smlt_client__call(c, fill_set_backup, &a);
}

int smlt_promote(struct smlt_client *c, uint32_t shard, const char *backup_addr)
{
    int rc = smlt_client__need_map(c);
    if (rc)
        return rc;
    if (shard >= c->map->nshards || !backup_addr || !*backup_addr) {
        smlt_client__seterr(c, "promote: shard %u of %u, address \"%s\"", shard, c->map->nshards,
                            backup_addr ? backup_addr : "");
        return SMLT_EINVAL;
    }
    struct part_map *nm = part_map_dup(c->map);
    char *addr = strdup(backup_addr);
    struct smlt_client *t = NULL;
    char e[256];
    if (!nm || !addr) {
        free(addr);
        rc = SMLT_ENOMEM;
        goto out;
    }
    nm->version++;
    free(nm->shards[shard].addr);
    nm->shards[shard].addr = addr;
    /* 1. The backup becomes the primary of its range under the new map. */
    if (!(t = smlt_client__new(&c->opts, e, sizeof e))) {
        rc = SMLT_ENOMEM;
        goto out;
    }
    if ((rc = smlt_client__links_resize(t, 1)))
        goto out;
    t->links[0] = (struct link){.c = t, .idx = 0, .shard = shard, .addr = strdup(backup_addr)};
    t->links[0].retry_ev = evtimer_new(t->base, smlt_client__on_retry, &t->links[0]);
    if ((rc = smlt_client__batch_alloc(t, 1)))
        goto out;
    t->ops[0].kind = OP_PROMOTE;
    t->ops[0].retire_map = nm;
    if ((rc = smlt_client__batch_run(t))) {
        smlt_client__seterr(c, "promote %s: %s", backup_addr,
                            t->err[0] ? t->err : smlt_strerror(rc));
        goto out;
    }
    /* 2. Every shard of the new map installs it: clients holding the old one are told "stale
     *    map" with it and go to the new primary. (The promoted one has it already: a no-op.) */
    struct part_map *mine = part_map_dup(nm);
    if (!mine || (rc = smlt_client__install_map(c, mine))) {
        part_map_free(mine);
        rc = rc ? rc : SMLT_ENOMEM;
        goto out;
    }
    if ((rc = smlt_client__fill_per_shard(c, OP_SET_MAP)))
        goto out;
    for (size_t i = 0; i < c->nops; i++)
        c->ops[i].retire_map = c->map;
    rc = smlt_client__batch_run(c);
out:
    smlt_client_close(t);
    part_map_free(nm);
    return rc;
}
