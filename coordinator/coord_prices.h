/* coord_prices.h: the platform's default prices (header only).
 *
 * The coordinator's ledger (coord_ledger.h, which includes this) bills jobs with them unless a
 * job spec overrides them, and the scheduler's simulator (tools/sim_platform.c) prices its
 * simulated platform with the same numbers without linking the coordinator. */
#ifndef COORD_PRICES_H
#define COORD_PRICES_H

/* Default prices: AWS us-east-1. Lambda duration per GB-s (x86_64, arm64) and per request. */
#define COORD_PRICE_GB_S_X86_64 0.0000166667
#define COORD_PRICE_GB_S_ARM64 0.0000133334
#define COORD_PRICE_REQUEST 0.0000002 /* $0.20 per million requests */
/* A parameter-server node: a small persistent VM. This is a setting (prices.ps_node_hour in a
 * job spec), not a fact: we default to an AWS EC2 t3.small (2 vCPU, 2 GiB) on demand in
 * us-east-1, $0.0208 per hour, the smallest instance that holds a few shards comfortably. */
#define COORD_PRICE_PS_NODE_HOUR 0.0208

#endif
