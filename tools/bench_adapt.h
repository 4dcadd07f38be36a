/* bench_adapt.h: `smlt-bench adapt`, the adaptive scheduler on this machine. */
#ifndef BENCH_ADAPT_H
#define BENCH_ADAPT_H

/* Runs the scenarios with the arguments after "adapt". Returns a process exit code. */
int bench_adapt_main(int argc, char **argv);

#endif
