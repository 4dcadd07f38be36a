/* part_map.c: building, validating, encoding and querying partition maps. */
#include "part_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smlt_rand.h"
#include "smlt_util.h"

void part_map_split(uint64_t total, uint32_t nshards, uint64_t *lo, uint64_t *hi)
{
    uint64_t prev = 0;
    for (uint32_t i = 0; i < nshards; i++) {
        uint64_t end;
        if (i + 1 == nshards) {
            end = total;
        } else if (total < (uint64_t)nshards * SMLT_PART_MAP_ALIGN) {
            /* A model too small for aligned cuts: the ideal cuts themselves, so that no shard
             * is left empty (an empty range cannot take a push) while total >= nshards. */
            end = (uint64_t)((unsigned __int128)total * (i + 1) / nshards);
        } else {
            /* Ideal cut at total*(i+1)/nshards, rounded to the alignment (never past total). */
            unsigned __int128 cut = (unsigned __int128)total * (i + 1) / nshards;
            end = (uint64_t)cut + SMLT_PART_MAP_ALIGN / 2;
            end -= end % SMLT_PART_MAP_ALIGN;
            if (end < prev)
                end = prev;
            if (end > total)
                end = total;
        }
        lo[i] = prev;
        hi[i] = end;
        prev = end;
    }
}

void part_map_free(struct part_map *m)
{
    if (!m)
        return;
    for (uint32_t i = 0; i < m->ntensors; i++)
        free(m->tensors[i].name);
    for (uint32_t i = 0; i < m->nshards; i++)
        free(m->shards[i].addr);
    free(m->tensors);
    free(m->shards);
    free(m->job);
    free(m);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int name_dup_check(const struct part_map *m, char *err, size_t errlen)
{
    /* Sort pointers by name and compare neighbours: O(n log n) for up to 64 Ki tensors. */
    if (m->ntensors < 2)
        return 0;
    const char **names = malloc(sizeof *names * m->ntensors);
    if (!names)
        return -1;
    for (uint32_t i = 0; i < m->ntensors; i++)
        names[i] = m->tensors[i].name;
    qsort(names, m->ntensors, sizeof *names, name_cmp);
    int rc = 0;
    for (uint32_t i = 1; i < m->ntensors; i++) {
        if (!strcmp(names[i - 1], names[i])) {
            smlt_set_err(err, errlen, "tensor name \"%s\" appears twice", names[i]);
            rc = -1;
            break;
        }
    }
    free(names);
    return rc;
}

static int set_shards(struct part_map *m, uint32_t nshards, const char *const *addrs, char *err,
                      size_t errlen)
{
    if (nshards == 0 || nshards > SMLT_MAX_SHARDS) {
        smlt_set_err(err, errlen, "shard count %u outside 1..%u", nshards, SMLT_MAX_SHARDS);
        return -1;
    }
    m->shards = calloc(nshards, sizeof *m->shards);
    uint64_t *lo = malloc(sizeof *lo * nshards), *hi = malloc(sizeof *hi * nshards);
    if (!m->shards || !lo || !hi) {
        free(lo);
        free(hi);
        smlt_set_err(err, errlen, "out of memory");
        return -1;
    }
    m->nshards = nshards;
    part_map_split(m->total, nshards, lo, hi);
    for (uint32_t i = 0; i < nshards; i++) {
        m->shards[i].id = i;
        m->shards[i].lo = lo[i];
        m->shards[i].hi = hi[i];
        m->shards[i].addr = strdup(addrs && addrs[i] ? addrs[i] : "");
    }
    free(lo);
    free(hi);
    return 0;
}

struct part_map *part_map_build(const struct part_map_spec *t, uint32_t ntensors, uint32_t nshards,
                            const char *const *addrs, uint64_t version, uint64_t seed,
                            const char *job, char *err, size_t errlen)
{
    if (!t || ntensors == 0 || ntensors > SMLT_MAX_TENSORS) {
        smlt_set_err(err, errlen, "tensor count %u outside 1..%u", ntensors, SMLT_MAX_TENSORS);
        return NULL;
    }
    struct part_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->version = version;
    m->seed = seed;
    m->job = strdup(job ? job : "");
    m->tensors = calloc(ntensors, sizeof *m->tensors);
    if (!m->tensors)
        goto fail;
    m->ntensors = ntensors;
    uint64_t off = 0;
    for (uint32_t i = 0; i < ntensors; i++) {
        struct part_map_tensor *x = &m->tensors[i];
        if (!t[i].name || !t[i].name[0] || strlen(t[i].name) >= SMLT_MAX_NAME) {
            smlt_set_err(err, errlen, "tensor %u: name missing or longer than %u", i,
                         SMLT_MAX_NAME - 1);
            goto fail;
        }
        if (t[i].ndims == 0 || t[i].ndims > SMLT_MAX_DIMS) {
            smlt_set_err(err, errlen, "tensor %s: %u dimensions, want 1..%u", t[i].name, t[i].ndims,
                         SMLT_MAX_DIMS);
            goto fail;
        }
        uint64_t len = 1;
        for (uint32_t d = 0; d < t[i].ndims; d++) {
            if (t[i].shape[d] == 0 || len > SMLT_MAX_MODEL_ELEMS / t[i].shape[d]) {
                smlt_set_err(err, errlen, "tensor %s: bad shape", t[i].name);
                goto fail;
            }
            len *= t[i].shape[d];
            x->shape[d] = t[i].shape[d];
        }
        if (off + len > SMLT_MAX_MODEL_ELEMS) {
            smlt_set_err(err, errlen, "model larger than %llu elements",
                         (unsigned long long)SMLT_MAX_MODEL_ELEMS);
            goto fail;
        }
        x->name = strdup(t[i].name);
        x->ndims = t[i].ndims;
        x->offset = off;
        x->length = len;
        x->init = t[i].init;
        x->init_scale = t[i].init_scale;
        off += len;
    }
    m->total = off;
    if (name_dup_check(m, err, errlen))
        goto fail;
    if (set_shards(m, nshards, addrs, err, errlen))
        goto fail;
    return m;
fail:
    part_map_free(m);
    return NULL;
}

struct part_map *part_map_dup(const struct part_map *m)
{
    struct part_map *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    *d = *m;
    d->job = strdup(m->job ? m->job : "");
    d->tensors = calloc(m->ntensors, sizeof *d->tensors);
    d->shards = calloc(m->nshards, sizeof *d->shards);
    if (!d->tensors || !d->shards) {
        d->ntensors = d->nshards = 0;
        part_map_free(d);
        return NULL;
    }
    for (uint32_t i = 0; i < m->ntensors; i++) {
        d->tensors[i] = m->tensors[i];
        d->tensors[i].name = strdup(m->tensors[i].name);
    }
    for (uint32_t i = 0; i < m->nshards; i++) {
        d->shards[i] = m->shards[i];
        d->shards[i].addr = strdup(m->shards[i].addr ? m->shards[i].addr : "");
    }
    return d;
}

struct part_map *part_map_reshard(const struct part_map *m, uint32_t nshards,
                                  const char *const *addrs, char *err, size_t errlen)
{
    struct part_map *d = part_map_dup(m);
    if (!d)
        return NULL;
    for (uint32_t i = 0; i < d->nshards; i++)
        free(d->shards[i].addr);
    free(d->shards);
    d->shards = NULL;
    d->nshards = 0;
    d->version = m->version + 1;
    if (set_shards(d, nshards, addrs, err, errlen)) {
        part_map_free(d);
        return NULL;
    }
    return d;
}

struct part_map *part_map_from_pb(const Smlt__PartitionMap *pb, char *err, size_t errlen)
{
    if (!pb) {
        smlt_set_err(err, errlen, "no map");
        return NULL;
    }
    if (pb->n_tensors == 0 || pb->n_tensors > SMLT_MAX_TENSORS) {
        smlt_set_err(err, errlen, "map has %zu tensors, want 1..%u", pb->n_tensors,
                     SMLT_MAX_TENSORS);
        return NULL;
    }
    if (pb->n_shards == 0 || pb->n_shards > SMLT_MAX_SHARDS) {
        smlt_set_err(err, errlen, "map has %zu shards, want 1..%u", pb->n_shards, SMLT_MAX_SHARDS);
        return NULL;
    }
    if (pb->total == 0 || pb->total > SMLT_MAX_MODEL_ELEMS) {
        smlt_set_err(err, errlen, "map total %llu outside 1..%llu", (unsigned long long)pb->total,
                     (unsigned long long)SMLT_MAX_MODEL_ELEMS);
        return NULL;
    }
    struct part_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->version = pb->version;
    m->total = pb->total;
    m->seed = pb->has_seed ? pb->seed : 0;
    m->job = strdup(pb->job ? pb->job : "");
    m->tensors = calloc(pb->n_tensors, sizeof *m->tensors);
    m->shards = calloc(pb->n_shards, sizeof *m->shards);
    if (!m->tensors || !m->shards || !m->job) {
        smlt_set_err(err, errlen, "out of memory");
        goto fail;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < pb->n_tensors; i++) {
        const Smlt__TensorInfo *t = pb->tensors[i];
        struct part_map_tensor *x = &m->tensors[i];
        m->ntensors = (uint32_t)i + 1;
        if (!t->name || !t->name[0] || strnlen(t->name, SMLT_MAX_NAME) >= SMLT_MAX_NAME) {
            smlt_set_err(err, errlen, "tensor %zu: name missing or longer than %u", i,
                         SMLT_MAX_NAME - 1);
            goto fail;
        }
        x->name = strdup(t->name);
        if (t->n_shape == 0 || t->n_shape > SMLT_MAX_DIMS) {
            smlt_set_err(err, errlen, "tensor %s: %zu dimensions, want 1..%u", t->name, t->n_shape,
                         SMLT_MAX_DIMS);
            goto fail;
        }
        uint64_t len = 1;
        for (size_t d = 0; d < t->n_shape; d++) {
            if (t->shape[d] == 0 || len > SMLT_MAX_MODEL_ELEMS / t->shape[d]) {
                smlt_set_err(err, errlen, "tensor %s: bad shape", t->name);
                goto fail;
            }
            len *= t->shape[d];
            x->shape[d] = t->shape[d];
        }
        x->ndims = (uint32_t)t->n_shape;
        if (len != t->length) {
            smlt_set_err(err, errlen, "tensor %s: shape holds %llu elements, length says %llu",
                         t->name, (unsigned long long)len, (unsigned long long)t->length);
            goto fail;
        }
        if (t->offset != off) {
            smlt_set_err(err, errlen,
                         "tensor %s: offset %llu, expected %llu (tensors must tile the model)",
                         t->name, (unsigned long long)t->offset, (unsigned long long)off);
            goto fail;
        }
        if (t->has_init &&
            (t->init < SMLT__INIT_KIND__INIT_ZERO || t->init > SMLT__INIT_KIND__INIT_CONST)) {
            smlt_set_err(err, errlen, "tensor %s: unknown init kind %d", t->name, (int)t->init);
            goto fail;
        }
        x->offset = off;
        x->length = len;
        x->init = t->has_init ? (int)t->init : 0;
        x->init_scale = t->has_init_scale ? t->init_scale : 0.0f;
        off += len;
        if (off > m->total) {
            smlt_set_err(err, errlen, "tensors hold more than the map's total of %llu elements",
                         (unsigned long long)m->total);
            goto fail;
        }
    }
    if (off != m->total) {
        smlt_set_err(err, errlen, "tensors hold %llu elements, map total says %llu",
                     (unsigned long long)off, (unsigned long long)m->total);
        goto fail;
    }
    uint64_t prev = 0;
    for (size_t i = 0; i < pb->n_shards; i++) {
        const Smlt__ShardInfo *s = pb->shards[i];
        struct part_map_range *r = &m->shards[i];
        m->nshards = (uint32_t)i + 1;
        if (s->id != i) {
            smlt_set_err(err, errlen, "shard %zu has id %u; ids must be 0..n-1 in order", i, s->id);
            goto fail;
        }
        if (s->lo != prev || s->hi < s->lo || s->hi > m->total) {
            smlt_set_err(err, errlen, "shard %zu range [%llu, %llu) does not continue at %llu", i,
                         (unsigned long long)s->lo, (unsigned long long)s->hi,
                         (unsigned long long)prev);
            goto fail;
        }
        if (!s->addr || strnlen(s->addr, SMLT_MAX_NAME) >= SMLT_MAX_NAME) {
            smlt_set_err(err, errlen, "shard %zu: address missing or too long", i);
            goto fail;
        }
        r->id = s->id;
        r->lo = s->lo;
        r->hi = s->hi;
        r->addr = strdup(s->addr);
        prev = s->hi;
    }
    if (prev != m->total) {
        smlt_set_err(err, errlen, "shard ranges end at %llu, model has %llu elements",
                     (unsigned long long)prev, (unsigned long long)m->total);
        goto fail;
    }
    if (name_dup_check(m, err, errlen))
        goto fail;
    return m;
fail:
    part_map_free(m);
    return NULL;
}

int part_map_to_pb(const struct part_map *m, Smlt__PartitionMap *pb)
{
    pb->version = m->version;
    pb->total = m->total;
    pb->has_seed = 1;
    pb->seed = m->seed;
    pb->job = m->job;
    pb->n_tensors = m->ntensors;
    pb->n_shards = m->nshards;
    /* One allocation for the tensor messages and their pointer array, one for the shards. */
    Smlt__TensorInfo **tp = calloc(m->ntensors, sizeof *tp + sizeof(Smlt__TensorInfo));
    Smlt__ShardInfo **sp = calloc(m->nshards, sizeof *sp + sizeof(Smlt__ShardInfo));
    if (!tp || !sp) {
        free(tp);
        free(sp);
        pb->tensors = NULL;
        pb->shards = NULL;
        pb->n_tensors = pb->n_shards = 0;
        return -1;
    }
    Smlt__TensorInfo *tv = (Smlt__TensorInfo *)(tp + m->ntensors);
    for (uint32_t i = 0; i < m->ntensors; i++) {
        const struct part_map_tensor *x = &m->tensors[i];
        Smlt__TensorInfo ti = SMLT__TENSOR_INFO__INIT;
        ti.name = x->name;
        ti.n_shape = x->ndims;
        ti.shape = (uint64_t *)x->shape;
        ti.offset = x->offset;
        ti.length = x->length;
        ti.has_init = 1;
        ti.init = (Smlt__InitKind)x->init;
        ti.has_init_scale = 1;
        ti.init_scale = x->init_scale;
        tv[i] = ti;
        tp[i] = &tv[i];
    }
    Smlt__ShardInfo *sv = (Smlt__ShardInfo *)(sp + m->nshards);
    for (uint32_t i = 0; i < m->nshards; i++) {
        Smlt__ShardInfo si = SMLT__SHARD_INFO__INIT;
        si.id = m->shards[i].id;
        si.addr = m->shards[i].addr;
        si.lo = m->shards[i].lo;
        si.hi = m->shards[i].hi;
        sv[i] = si;
        sp[i] = &sv[i];
    }
    pb->tensors = tp;
    pb->shards = sp;
    return 0;
}

void part_map_pb_clear(Smlt__PartitionMap *pb)
{
    free(pb->tensors);
    free(pb->shards);
    pb->tensors = NULL;
    pb->shards = NULL;
    pb->n_tensors = pb->n_shards = 0;
}

int part_map_shard_of(const struct part_map *m, uint64_t idx)
{
    if (idx >= m->total || m->nshards == 0)
        return -1;
    uint32_t a = 0, b = m->nshards;
    while (b - a > 1) {
        uint32_t mid = (a + b) / 2;
        if (m->shards[mid].lo <= idx)
            a = mid;
        else
            b = mid;
    }
    /* Empty ranges share their lo with the next one; step over them. */
    while (a + 1 < m->nshards && m->shards[a].hi <= idx)
        a++;
    return (int)a;
}

const struct part_map_tensor *part_map_tensor(const struct part_map *m, const char *name)
{
    for (uint32_t i = 0; i < m->ntensors; i++)
        if (!strcmp(m->tensors[i].name, name))
            return &m->tensors[i];
    return NULL;
}

int part_map_same_model(const struct part_map *a, const struct part_map *b)
{
    if (a->total != b->total || a->ntensors != b->ntensors)
        return 0;
    for (uint32_t i = 0; i < a->ntensors; i++) {
        const struct part_map_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (strcmp(x->name, y->name) || x->ndims != y->ndims || x->offset != y->offset ||
            x->length != y->length || memcmp(x->shape, y->shape, sizeof x->shape[0] * x->ndims))
            return 0;
    }
    return 1;
}

void part_map_init_values(const struct part_map *m, uint64_t lo, uint64_t hi, float *out)
{
    for (uint32_t i = 0; i < m->ntensors && lo < hi; i++) {
        const struct part_map_tensor *t = &m->tensors[i];
        uint64_t a = t->offset, b = t->offset + t->length;
        if (b <= lo || a >= hi)
            continue;
        if (a < lo)
            a = lo;
        if (b > hi)
            b = hi;
        float *o = out + (a - lo);
        uint64_t n = b - a;
        switch (t->init) {
        case SMLT__INIT_KIND__INIT_UNIFORM:
            for (uint64_t k = 0; k < n; k++)
                o[k] = smlt_rand_uniform(m->seed, a + k, t->init_scale);
            break;
        case SMLT__INIT_KIND__INIT_NORMAL:
            for (uint64_t k = 0; k < n; k++)
                o[k] = smlt_rand_normal(m->seed, a + k, t->init_scale);
            break;
        case SMLT__INIT_KIND__INIT_CONST:
            for (uint64_t k = 0; k < n; k++)
                o[k] = t->init_scale;
            break;
        default:
            memset(o, 0, n * sizeof *o);
            break;
        }
    }
}
