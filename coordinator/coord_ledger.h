/* coord_ledger.h: the platform's cost model and a job's running bill.
 *
 * The coordinator charges every function invocation it makes (memory size and measured
 * duration) and the parameter-server nodes it keeps (node count and seconds) to the job's
 * ledger, and asks coord_ledger_invocation_cost() what an invocation would cost when it
 * plans fan-out against a budget. Prices are per job (coord_spec's "prices" overrides the
 * defaults), so every charge names the price table it uses.
 *
 * Billing follows AWS Lambda: duration rounded up to the next 1 ms (at least 1 ms), memory in
 * MB / 1024 GB, a flat price per request. PS nodes are billed per second with no minimum: the
 * coordinator charges the interval since its last charge while nodes are up.
 *
 * Both structs are plain values owned by the caller; nothing here allocates except
 * coord_ledger_to_json(). A ledger is not locked: one thread charges it. */
#ifndef COORD_LEDGER_H
#define COORD_LEDGER_H

#include <stdint.h>

#include <jansson.h>

#include "coord_prices.h" /* the default prices, COORD_PRICE_* */

struct coord_prices {
    double gb_s;         /* $ per GB-second of function duration */
    double request;      /* $ per invocation */
    double ps_node_hour; /* $ per PS node-hour */
};

struct coord_ledger {
    uint64_t invocations;
    uint64_t billed_ms;   /* sum of billed durations (rounded up per invocation) */
    uint64_t mb_ms;       /* sum of memory_mb * billed ms: exact function usage */
    double duration_s;    /* sum of measured durations, before rounding */
    double gb_s;          /* function GB-seconds billed (mb_ms / 1024 / 1000) */
    double function_usd;  /* duration cost */
    double request_usd;   /* request cost */
    double ps_node_s;     /* PS node-seconds */
    double ps_usd;
    double total_usd;     /* function_usd + request_usd + ps_usd */
};

/* Fills p with the default prices for arch ("x86_64" or "arm64"; NULL or anything else means
 * x86_64). */
void coord_prices_default(struct coord_prices *p, const char *arch);

/* Zeroes l. */
void coord_ledger_init(struct coord_ledger *l);

/* Returns the milliseconds Lambda bills for a run of duration_s seconds: rounded up to the
 * next ms, at least 1 (negative or NaN durations count as 0). A duration within 1 ns above a
 * whole ms counts as that ms, so 0.003 s is 3 ms despite binary floating point. */
uint64_t coord_ledger_billed_ms(double duration_s);

/* Returns what one invocation of memory_mb MB running duration_s seconds costs, requests
 * included, in $. */
double coord_ledger_invocation_cost(const struct coord_prices *p, uint32_t memory_mb,
                                    double duration_s);

/* Charges one invocation to l. Borrows p for the call. */
void coord_ledger_charge_invocation(struct coord_ledger *l, const struct coord_prices *p,
                                    uint32_t memory_mb, double duration_s);

/* Charges more time of an invocation already charged (its request and count included): one
 * that was running when a ledger was recorded and went on after (an adopted invocation). */
void coord_ledger_extend_invocation(struct coord_ledger *l, const struct coord_prices *p,
                                    uint32_t memory_mb, double duration_s);

/* Charges `nodes` PS nodes for `seconds` (negative or NaN seconds charge nothing). */
void coord_ledger_charge_ps(struct coord_ledger *l, const struct coord_prices *p, uint32_t nodes,
                            double seconds);

/* Returns the total spent, in $. */
double coord_ledger_total(const struct coord_ledger *l);

/* Returns a new JSON object with every field of l under its field name (json_decref() it), or
 * NULL when out of memory. */
json_t *coord_ledger_to_json(const struct coord_ledger *l);

/* Restores l from an object made by coord_ledger_to_json() (borrowed), e.g. from the journal
 * after a coordinator restart. Returns 0, or SMLT_EINVAL when a field is missing or has the
 * wrong type (l is then zeroed). */
int coord_ledger_from_json(struct coord_ledger *l, const json_t *j);

/* Returns what `nodes` PS nodes cost for `seconds` (negative or NaN: 0), in $, without
 * charging it (a running bill's open interval). */
double coord_ledger_ps_cost(const struct coord_prices *p, uint32_t nodes, double seconds);

/* Returns the $ per second that `workers` functions of memory_mb MB and `nodes` PS nodes burn
 * while they run (requests aside). */
double coord_ledger_burn_rate(const struct coord_prices *p, uint32_t workers, uint32_t memory_mb,
                              uint32_t nodes);

/* Returns a new JSON object {"gb_s", "request", "ps_node_hour"}, or NULL when out of memory. */
json_t *coord_prices_to_json(const struct coord_prices *p);

#endif
