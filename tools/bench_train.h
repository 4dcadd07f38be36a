/* bench_train.h: `smlt-bench train`, compute-only training throughput of the engine against
 * PyTorch on the CPU (tools/peer_torch_fmnist.py), on Fashion-MNIST, same models, same batch
 * size, same thread count, in the same run. */
#ifndef BENCH_TRAIN_H
#define BENCH_TRAIN_H

/* Runs the benchmark. argv[0] is the subcommand's name ("train"), options follow; "--help"
 * lists them. Prints a table (or one JSON object per model with --json) on stdout.
 * Returns the process exit status: 0, 1 on a failure, 2 on bad usage. */
int bench_train_main(int argc, char **argv);

#endif
