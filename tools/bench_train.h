/* bench_train.h: `smlt-bench train`: training throughput of the engine on Fashion-MNIST,
 * compute only and through local smlt-ps shards, against PyTorch on the CPU
 * (tools/peer_torch_fmnist.py), same models, batch size and thread count, in the same run
 * (bench_train.c); and with --accuracy, time to a test accuracy with smlt-worker processes
 * and shards under BSP against PyTorch DDP (tools/peer_torch_ddp_fmnist.py)
 * (bench_train_ps.c); and with --torch, the torch binding (worker/python) against PyTorch
 * DDP (time to accuracy) and against the C client (cost per sync) (bench_train_torch.c). */
#ifndef BENCH_TRAIN_H
#define BENCH_TRAIN_H

/* Runs the benchmark. argv[0] is the subcommand's name ("train"), options follow; "--help"
 * lists them, "--accuracy" selects the accuracy mode. Prints a table (or one JSON object per
 * model with --json) on stdout. Returns the process exit status: 0, 1 on a failure, 2 on bad
 * usage. */
int bench_train_main(int argc, char **argv);

/* The accuracy mode (bench_train_ps.c); called by bench_train_main() for --accuracy. Returns
 * an exit status: 0, 1 when a run failed or missed its target accuracy, 2 on bad usage. */
int bench_train_accuracy_main(int argc, char **argv);

/* The torch mode (bench_train_torch.c); called by bench_train_main() for --torch. Returns an
 * exit status: 0, 1 when a part failed or the target accuracy was not reached, 2 on bad
 * usage. */
int bench_train_torch_main(int argc, char **argv);

struct bench_ps_rate_opts {
    const char *spec;    /* model spec */
    const char *data;    /* dataset source, as smlt-worker --data */
    int batch;
    int shards;          /* local smlt-ps shards to start (1..8) */
    int warmup, batches, reps;
    float lr;            /* plain SGD on the shards */
};

struct bench_ps_rate {
    double samples_per_s, best;   /* median and best of the timed slices */
    double compute_ms, comm_ms;   /* per step, medians */
    double loss;
};

/* Samples/s of one worker (worker_run() in this process, BSP, 1 rank) training through
 * o->shards local smlt-ps shards started (and stopped, by pid) for the call: a cold slice of
 * o->warmup steps, then o->reps warm slices of o->batches steps. Needs smlt-ps next to the
 * running binary. Returns 0 or a negative SMLT_E* code (logged). */
int bench_train_ps_rate(const struct bench_ps_rate_opts *o, struct bench_ps_rate *out);

#endif
