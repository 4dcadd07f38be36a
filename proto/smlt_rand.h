/* smlt_rand.h: counter-based random numbers: the value at (seed, index) is fixed.
 *
 * Parameter initialization uses these so that an element's initial value depends only on the
 * job's seed and its global index: every shard, whatever the split, and a worker training
 * locally compute the same numbers (and a reshard cannot change them). splitmix64 mixing. */
#ifndef SMLT_RAND_H
#define SMLT_RAND_H

#include <math.h>
#include <stdint.h>

static inline uint64_t smlt_rand_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Uniform in [0, 1) from (seed, idx): 24 random bits. */
static inline float smlt_rand_unit(uint64_t seed, uint64_t idx)
{
    return (float)(smlt_rand_mix(seed ^ smlt_rand_mix(idx)) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform in [-scale, scale). */
static inline float smlt_rand_uniform(uint64_t seed, uint64_t idx, float scale)
{
    return (2.0f * smlt_rand_unit(seed, idx) - 1.0f) * scale;
}

/* Normal(0, scale^2), Box-Muller on two derived streams. */
static inline float smlt_rand_normal(uint64_t seed, uint64_t idx, float scale)
{
    uint64_t r = smlt_rand_mix(seed ^ smlt_rand_mix(idx ^ 0x5851f42d4c957f2dull));
    double u1 = ((double)(r >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(smlt_rand_mix(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2)) * scale;
}

#endif
