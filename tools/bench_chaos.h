/* bench_chaos.h: `smlt-bench chaos`, a real job with worker, shard and coordinator kills. */
#ifndef BENCH_CHAOS_H
#define BENCH_CHAOS_H

/* Runs the benchmark with the arguments after "chaos". Returns a process exit code: 0 when
 * every faulted job succeeded within 0.5 points of the clean run's accuracy with consistent
 * shard counters, 1 otherwise, 2 on usage. */
int bench_chaos_main(int argc, char **argv);

#endif
