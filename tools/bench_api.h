/* bench_api.h: `smlt-bench api`, the HTTP API's latency while a job's shard is stopped. */
#ifndef BENCH_API_H
#define BENCH_API_H

/* Runs the benchmark with the arguments after "api". Returns a process exit code. */
int bench_api_main(int argc, char **argv);

#endif
