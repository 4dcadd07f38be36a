/* bench_invoke.h: `smlt-bench invoke`, the invocation-overhead benchmark. */
#ifndef BENCH_INVOKE_H
#define BENCH_INVOKE_H

/* Runs the benchmark with the arguments after "invoke". Returns a process exit code. */
int bench_invoke_main(int argc, char **argv);

#endif
