/* part_map.h: the versioned partition map: named float32 tensors in one global index space,
 * split into one contiguous key range per shard.
 *
 * Tensors are laid out back to back (tensor i occupies [offset, offset+length)); the shards'
 * ranges [lo, hi) are contiguous, in shard-id order, and together cover [0, total). Ranges are
 * balanced by size, not by tensor: a boundary may cut through a tensor. Boundaries are rounded to
 * SMLT_PART_MAP_ALIGN elements so that every shard's slice starts 64-byte aligned, except in a
 * model of fewer than nshards * SMLT_PART_MAP_ALIGN elements, whose cuts are unaligned so that
 * no shard's range is empty while there is an element for each (a shard with an empty range
 * cannot take a push: only a model with fewer elements than shards has one).
 *
 * A map is plain data owned by whoever built or decoded it (part_map_free()). It is shared by the
 * shard daemon, the client library and the coordinator. Not thread-safe; copy it to share. */
#ifndef PART_MAP_H
#define PART_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "smlt.pb-c.h"
#include "smlt_limits.h"

#define SMLT_PART_MAP_ALIGN 16u

struct part_map_tensor {
    char *name;
    uint32_t ndims;
    uint64_t shape[SMLT_MAX_DIMS];
    uint64_t offset;
    uint64_t length;
    int init;          /* Smlt__InitKind */
    float init_scale;
};

struct part_map_range {
    uint32_t id;
    char *addr;        /* "host:port" */
    uint64_t lo, hi;
};

struct part_map {
    uint64_t version;
    uint64_t total;
    uint64_t seed;
    char *job;
    uint32_t ntensors;
    struct part_map_tensor *tensors;
    uint32_t nshards;
    struct part_map_range *shards;
};

/* A tensor description for part_map_build(): name and shape (borrowed), init kind and scale. */
struct part_map_spec {
    const char *name;
    uint32_t ndims;
    const uint64_t *shape;
    int init;
    float init_scale;
};

/* Returns a new map (version given) laying out the tensors in order and splitting them into
 * nshards balanced ranges; addrs[i] (borrowed, copied; may be NULL) is shard i's address.
 * NULL with a message in err on a bad argument (no tensors, a zero-sized or unnamed tensor,
 * a duplicate name, too many tensors or shards, total over SMLT_MAX_MODEL_ELEMS). */
struct part_map *part_map_build(const struct part_map_spec *t, uint32_t ntensors, uint32_t nshards,
                            const char *const *addrs, uint64_t version, uint64_t seed,
                            const char *job, char *err, size_t errlen);

/* Returns a copy of m with the same tensors split into nshards ranges (addresses from addrs,
 * borrowed), version m->version + 1. NULL with err set on bad arguments. */
struct part_map *part_map_reshard(const struct part_map *m, uint32_t nshards,
                                  const char *const *addrs, char *err, size_t errlen);

/* Computes the balanced split of total elements into nshards aligned ranges: lo[i], hi[i]. */
void part_map_split(uint64_t total, uint32_t nshards, uint64_t *lo, uint64_t *hi);

/* Decodes and validates a map received from the network (borrowed). Returns a new map, or NULL
 * with a message in err naming what is wrong: counts over the limits, tensors that do not tile
 * [0, total), shape products that differ from lengths, shard ranges that are not contiguous or do
 * not cover [0, total), names missing, too long or repeated. */
struct part_map *part_map_from_pb(const Smlt__PartitionMap *pb, char *err, size_t errlen);

/* Fills pb (initialized by the caller with SMLT__PARTITION_MAP__INIT) from m. pb borrows m's
 * strings; arrays are allocated: release them with part_map_pb_clear(pb) while m is alive. */
int part_map_to_pb(const struct part_map *m, Smlt__PartitionMap *pb);
void part_map_pb_clear(Smlt__PartitionMap *pb);

/* Returns a deep copy of m, or NULL on out-of-memory. */
struct part_map *part_map_dup(const struct part_map *m);

void part_map_free(struct part_map *m);

/* Returns the index of the shard whose range holds element idx (binary search), or -1. */
int part_map_shard_of(const struct part_map *m, uint64_t idx);

/* Returns the tensor named name, or NULL. */
const struct part_map_tensor *part_map_tensor(const struct part_map *m, const char *name);

/* Returns 1 if a and b have the same tensors (names, shapes, layout) — a reshard or an address
 * change keeps them, a different model does not. */
int part_map_same_model(const struct part_map *a, const struct part_map *b);

/* Writes the initial values of elements [lo, hi) into out (hi-lo floats), per tensor init kind,
 * from (seed, global index) only, so any split computes the same values. */
void part_map_init_values(const struct part_map *m, uint64_t lo, uint64_t hi, float *out);

#endif
