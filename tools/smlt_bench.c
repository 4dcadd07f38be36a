/* smlt_bench.c: `smlt-bench`, the benchmark command: dispatches to its subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_adapt.h"
#include "bench_api.h"
#include "bench_chaos.h"
#include "bench_gateway.h"
#include "bench_invoke.h"
#include "bench_ps.h"
#ifdef SMLT_HAVE_BENCH_TRAIN
#include "bench_train.h"
#endif
#include "smlt_log.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: smlt-bench COMMAND [options]\n\n"
               "  ps      parameter-server sync: push+pull through smlt-ps shards, vs Redis and raw TCP\n"
               "  gateway a function platform's front door for smlt-worker --http instances\n"
               "  invoke  function invocation overhead: cold vs warm starts, time outside training\n"
               "  adapt   the scheduler on real jobs: scale out for a deadline, in for a budget,\n"
               "          more shards for a shard bottleneck\n"
               "  api     the coordinator's HTTP API latency while one job's shard is stopped\n"
               "  chaos   a real job with a worker, a shard or the coordinator killed: recovery,\n"
               "          steps redone, accuracy, time and cost against a clean run\n"
#ifdef SMLT_HAVE_BENCH_TRAIN
               "  train   training throughput (samples/s) of the models vs PyTorch\n"
#endif
               "\n`smlt-bench COMMAND --help` for a command's options.\n");
}

int main(int argc, char **argv)
{
    smlt_log_init("smlt-bench", getenv("SMLT_LOG_LEVEL") ? smlt_log_parse_level(getenv("SMLT_LOG_LEVEL")) : SMLT_LOG_WARN);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "ps"))
        return bench_ps_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "invoke"))
        return bench_invoke_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "gateway"))
        return bench_gateway_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "adapt"))
        return bench_adapt_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "api"))
        return bench_api_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "chaos"))
        return bench_chaos_main(argc - 1, argv + 1);
#ifdef SMLT_HAVE_BENCH_TRAIN
    if (!strcmp(argv[1], "train"))
        return bench_train_main(argc - 1, argv + 1);
#endif
    fprintf(stderr, "smlt-bench: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
