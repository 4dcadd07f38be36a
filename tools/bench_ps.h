/* bench_ps.h: `smlt-bench ps`, the parameter-server sync benchmark. */
#ifndef BENCH_PS_H
#define BENCH_PS_H

/* Runs the benchmark with the arguments after "ps". Returns a process exit code. */
int bench_ps_main(int argc, char **argv);

#endif
