/* bench_train_standalone.c: `smlt-bench-train [options]`, the train benchmark on its own
 * while tools/smlt_bench.c (which dispatches `smlt-bench train`) is being written. */
#include "bench_train.h"

int main(int argc, char **argv)
{
    return bench_train_main(argc, argv);
}
