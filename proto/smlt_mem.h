/* smlt_mem.h: what a shard's range costs in memory, for a PS node's bound (smlt-ps --node
 * --memory-mb) and the coordinator's placement by free memory.
 *
 * A shard of n parameters holds n floats of parameters, `slots` arrays of optimizer state
 * (SGD 0, momentum 1, Adam 2), the gradient buffers of one step's pushes (ps_shard.c starts
 * with min(workers, 4) + 2 and may grow by 2 more before it waits for one to free), and, when
 * it checkpoints, a copy of parameters and state for the writer. One MiB more covers the maps,
 * the per-rank tables and the connections' buffers. An estimate that errs high: the node
 * refuses rather than be killed for memory. */
#ifndef SMLT_MEM_H
#define SMLT_MEM_H

#include <stdint.h>

static inline uint64_t smlt_shard_mem_bytes(uint64_t n, unsigned slots, uint32_t workers,
                                            int checkpoints)
{
    uint64_t bufs = (uint64_t)(workers < 4 ? workers : 4) + 2 + 2;
    uint64_t arrays = 1 + slots + bufs + (checkpoints ? 1 + slots : 0);
    return n * sizeof(float) * arrays + (1u << 20);
}

#endif
