/* coord_ledger.c: the cost model and a job's running bill (see coord_ledger.h). */
#include "coord_ledger.h"

#include <math.h>
#include <string.h>

#include "smlt_error.h"

/* Durations above this (about 31 years) are clamped: keeps the ms count far from overflow. */
#define COORD_LEDGER_MAX_MS 1000000000000000.0

void coord_prices_default(struct coord_prices *p, const char *arch)
{
    p->gb_s = (arch && !strcmp(arch, "arm64")) ? COORD_PRICE_GB_S_ARM64 : COORD_PRICE_GB_S_X86_64;
    p->request = COORD_PRICE_REQUEST;
    p->ps_node_hour = COORD_PRICE_PS_NODE_HOUR;
}

void coord_ledger_init(struct coord_ledger *l)
{
    memset(l, 0, sizeof *l);
}

uint64_t coord_ledger_billed_ms(double duration_s)
{
    if (!(duration_s > 0.0))
        return 1;
    double ms = duration_s * 1000.0;
    if (ms > COORD_LEDGER_MAX_MS)
        ms = COORD_LEDGER_MAX_MS;
    /* 1e-6 ms of slack: x * 1000 for an x that is a whole ms in decimal may land a few ulps
     * above the integer (0.003 * 1000 = 3.0000000000000004), which must not bill 4 ms. */
    double billed = ceil(ms - 1e-6);
    return billed < 1.0 ? 1 : (uint64_t)billed;
}

static double gb_seconds(uint32_t memory_mb, uint64_t ms)
{
    return (double)memory_mb / 1024.0 * ((double)ms / 1000.0);
}

double coord_ledger_invocation_cost(const struct coord_prices *p, uint32_t memory_mb,
                                    double duration_s)
{
    return gb_seconds(memory_mb, coord_ledger_billed_ms(duration_s)) * p->gb_s + p->request;
}

static void update_total(struct coord_ledger *l)
{
    l->total_usd = l->function_usd + l->request_usd + l->ps_usd;
}

void coord_ledger_charge_invocation(struct coord_ledger *l, const struct coord_prices *p,
                                    uint32_t memory_mb, double duration_s)
{
    coord_ledger_extend_invocation(l, p, memory_mb, duration_s);
    l->invocations++;
    l->request_usd += p->request;
    update_total(l);
}

void coord_ledger_extend_invocation(struct coord_ledger *l, const struct coord_prices *p,
                                    uint32_t memory_mb, double duration_s)
{
    uint64_t ms = coord_ledger_billed_ms(duration_s);
    double gbs = gb_seconds(memory_mb, ms);
    l->billed_ms += ms;
    l->mb_ms += (uint64_t)memory_mb * ms;
    if (duration_s > 0.0 && isfinite(duration_s))
        l->duration_s += duration_s;
    l->gb_s += gbs;
    l->function_usd += gbs * p->gb_s;
    update_total(l);
}

void coord_ledger_charge_ps(struct coord_ledger *l, const struct coord_prices *p, uint32_t nodes,
                            double seconds)
{
    if (!(seconds > 0.0) || !isfinite(seconds) || nodes == 0)
        return;
    double node_s = (double)nodes * seconds;
    l->ps_node_s += node_s;
    l->ps_usd += node_s / 3600.0 * p->ps_node_hour;
    update_total(l);
}

double coord_ledger_total(const struct coord_ledger *l)
{
    return l->total_usd;
}

json_t *coord_ledger_to_json(const struct coord_ledger *l)
{
    return json_pack("{s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
                     "invocations", (json_int_t)l->invocations,
                     "billed_ms", (json_int_t)l->billed_ms,
                     "mb_ms", (json_int_t)l->mb_ms,
                     "duration_s", l->duration_s,
                     "gb_s", l->gb_s,
                     "function_usd", l->function_usd,
                     "request_usd", l->request_usd,
                     "ps_node_s", l->ps_node_s,
                     "ps_usd", l->ps_usd,
                     "total_usd", l->total_usd);
}

static int get_u64(const json_t *j, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_num(const json_t *j, const char *key, double *out)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return isfinite(*out) && *out >= 0.0 ? 0 : -1;
}

int coord_ledger_from_json(struct coord_ledger *l, const json_t *j)
{
    coord_ledger_init(l);
    if (!json_is_object(j) || get_u64(j, "invocations", &l->invocations) ||
        get_u64(j, "billed_ms", &l->billed_ms) || get_u64(j, "mb_ms", &l->mb_ms) ||
        get_num(j, "duration_s", &l->duration_s) || get_num(j, "gb_s", &l->gb_s) ||
        get_num(j, "function_usd", &l->function_usd) ||
        get_num(j, "request_usd", &l->request_usd) || get_num(j, "ps_node_s", &l->ps_node_s) ||
        get_num(j, "ps_usd", &l->ps_usd)) {
        coord_ledger_init(l);
        return SMLT_EINVAL;
    }
    /* The total is derived, never trusted from the file. */
    update_total(l);
    return 0;
}

json_t *coord_prices_to_json(const struct coord_prices *p)
{
    return json_pack("{s:f, s:f, s:f}", "gb_s", p->gb_s, "request", p->request, "ps_node_hour",
                     p->ps_node_hour);
}

double coord_ledger_ps_cost(const struct coord_prices *p, uint32_t nodes, double seconds)
{
    if (!(seconds > 0))
        return 0;
    return seconds / 3600.0 * p->ps_node_hour * nodes;
}

double coord_ledger_burn_rate(const struct coord_prices *p, uint32_t workers, uint32_t memory_mb,
                              uint32_t nodes)
{
    return workers * (memory_mb / 1024.0) * p->gb_s + coord_ledger_ps_cost(p, nodes, 1.0);
}
