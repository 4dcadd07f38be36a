/* test_coord_ledger.c: Check suite for coordinator/coord_ledger.c (default prices, Lambda's
 * duration rounding, invocation and PS charges against hand-computed values, JSON round trip). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "coord_ledger.h"
#include "smlt_error.h"

#define ck_assert_near(a, b, rel)                                                                  \
    ck_assert_msg(fabs((a) - (b)) <= (rel) * fabs(b) + 1e-300, "%.17g != %.17g", (double)(a),    \
                  (double)(b))

START_TEST(prices_default)
{
    struct coord_prices p;
    coord_prices_default(&p, "x86_64");
    ck_assert(p.gb_s == 0.0000166667);
    ck_assert(p.request == 0.0000002);
    ck_assert(p.ps_node_hour == 0.0208);
    coord_prices_default(&p, "arm64");
    ck_assert(p.gb_s == 0.0000133334);
    ck_assert(p.request == 0.0000002);
    coord_prices_default(&p, NULL);
    ck_assert(p.gb_s == 0.0000166667);
}
END_TEST

START_TEST(billed_ms_rounds_up)
{
    ck_assert_uint_eq(coord_ledger_billed_ms(2.0004), 2001);
    ck_assert_uint_eq(coord_ledger_billed_ms(2.001), 2001);
    ck_assert_uint_eq(coord_ledger_billed_ms(2.0010001), 2002);
    ck_assert_uint_eq(coord_ledger_billed_ms(0.003), 3); /* 0.003 * 1000 = 3.0000000000000004 */
    ck_assert_uint_eq(coord_ledger_billed_ms(0.0000001), 1);
    ck_assert_uint_eq(coord_ledger_billed_ms(0.0), 1);
    ck_assert_uint_eq(coord_ledger_billed_ms(-5.0), 1);
    ck_assert_uint_eq(coord_ledger_billed_ms(NAN), 1);
    ck_assert_uint_eq(coord_ledger_billed_ms(900.0), 900000);
    ck_assert(coord_ledger_billed_ms(INFINITY) > 0);
    /* Every whole ms is billed as itself, and 100 ns more as the next one. */
    for (uint64_t k = 1; k <= 200000; k++) {
        double d = (double)k / 1000.0;
        ck_assert_uint_eq(coord_ledger_billed_ms(d), k);
        ck_assert_uint_eq(coord_ledger_billed_ms(d + 1e-7), k + 1);
    }
}
END_TEST

START_TEST(invocation_cost_by_hand)
{
    struct coord_prices p;
    coord_prices_default(&p, "x86_64");
    /* 1769 MB for 2.0004 s: 2.001 s billed. */
    double gbs = 1769.0 / 1024.0 * 2.001;
    double want = gbs * 0.0000166667 + 0.0000002;
    ck_assert_near(coord_ledger_invocation_cost(&p, 1769, 2.0004), want, 1e-12);
    /* 1 GB for 1 s is one GB-second. */
    ck_assert_near(coord_ledger_invocation_cost(&p, 1024, 1.0), 0.0000166667 + 0.0000002, 1e-12);
    /* 128 MB for 10 us: the 1 ms minimum. */
    ck_assert_near(coord_ledger_invocation_cost(&p, 128, 0.00001),
                   0.125 * 0.001 * 0.0000166667 + 0.0000002, 1e-12);
    coord_prices_default(&p, "arm64");
    ck_assert_near(coord_ledger_invocation_cost(&p, 2048, 0.5), 1.0 * 0.0000133334 + 0.0000002,
                   1e-12);
    /* Free requests and free duration: zero. */
    struct coord_prices zero = {0, 0, 0};
    ck_assert(coord_ledger_invocation_cost(&zero, 10240, 900) == 0.0);
}
END_TEST

START_TEST(ledger_accumulates)
{
    struct coord_prices p;
    struct coord_ledger l;
    coord_prices_default(&p, "x86_64");
    coord_ledger_init(&l);
    ck_assert(coord_ledger_total(&l) == 0.0);
    coord_ledger_charge_invocation(&l, &p, 1769, 2.0004);
    coord_ledger_charge_invocation(&l, &p, 1024, 1.0);
    coord_ledger_charge_invocation(&l, &p, 128, 0.0);
    ck_assert_uint_eq(l.invocations, 3);
    ck_assert_uint_eq(l.billed_ms, 2001 + 1000 + 1);
    ck_assert_uint_eq(l.mb_ms, 1769ull * 2001 + 1024ull * 1000 + 128);
    ck_assert_near(l.duration_s, 3.0004, 1e-12);
    double gbs = 1769.0 / 1024.0 * 2.001 + 1.0 + 128.0 / 1024.0 * 0.001;
    ck_assert_near(l.gb_s, gbs, 1e-12);
    ck_assert_near(l.function_usd, gbs * 0.0000166667, 1e-12);
    ck_assert_near(l.request_usd, 3 * 0.0000002, 1e-12);
    /* PS: 2 nodes for 30 minutes is one node-hour; 3 nodes for 10 s more. */
    coord_ledger_charge_ps(&l, &p, 2, 1800.0);
    coord_ledger_charge_ps(&l, &p, 3, 10.0);
    coord_ledger_charge_ps(&l, &p, 3, -10.0); /* ignored */
    coord_ledger_charge_ps(&l, &p, 0, 10.0);  /* ignored */
    ck_assert_near(l.ps_node_s, 3630.0, 1e-12);
    ck_assert_near(l.ps_usd, 3630.0 / 3600.0 * 0.0208, 1e-12);
    ck_assert_near(coord_ledger_total(&l), l.function_usd + l.request_usd + l.ps_usd, 1e-15);
    ck_assert_near(coord_ledger_total(&l),
                   gbs * 0.0000166667 + 3 * 0.0000002 + 3630.0 / 3600.0 * 0.0208, 1e-12);
}
END_TEST

START_TEST(ledger_many_charges)
{
    /* A million invocations: the running sums stay within 1e-9 of the product. */
    struct coord_prices p;
    struct coord_ledger l;
    coord_prices_default(&p, "x86_64");
    coord_ledger_init(&l);
    for (int i = 0; i < 1000000; i++)
        coord_ledger_charge_invocation(&l, &p, 1769, 2.0004);
    ck_assert_uint_eq(l.invocations, 1000000);
    ck_assert_uint_eq(l.mb_ms, 1769ull * 2001 * 1000000);
    ck_assert_near(l.total_usd, 1e6 * coord_ledger_invocation_cost(&p, 1769, 2.0004), 1e-9);
}
END_TEST

START_TEST(ledger_json_round_trip)
{
    struct coord_prices p;
    struct coord_ledger l, back;
    coord_prices_default(&p, "arm64");
    coord_ledger_init(&l);
    coord_ledger_charge_invocation(&l, &p, 3008, 12.3456);
    coord_ledger_charge_ps(&l, &p, 4, 123.5);
    json_t *j = coord_ledger_to_json(&l);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "invocations")), 1);
    ck_assert(json_real_value(json_object_get(j, "total_usd")) == l.total_usd);
    char *text = json_dumps(j, 0);
    json_t *j2 = json_loads(text, 0, NULL);
    ck_assert_int_eq(coord_ledger_from_json(&back, j2), 0);
    ck_assert_uint_eq(back.invocations, l.invocations);
    ck_assert_uint_eq(back.billed_ms, l.billed_ms);
    ck_assert_uint_eq(back.mb_ms, l.mb_ms);
    ck_assert(back.duration_s == l.duration_s);
    ck_assert(back.gb_s == l.gb_s);
    ck_assert(back.function_usd == l.function_usd);
    ck_assert(back.request_usd == l.request_usd);
    ck_assert(back.ps_node_s == l.ps_node_s);
    ck_assert(back.ps_usd == l.ps_usd);
    ck_assert(back.total_usd == l.total_usd);
    /* Bad input: a missing field, a negative one, a string, not an object. */
    json_object_del(j2, "ps_usd");
    ck_assert_int_eq(coord_ledger_from_json(&back, j2), SMLT_EINVAL);
    ck_assert_uint_eq(back.invocations, 0);
    json_object_set_new(j2, "ps_usd", json_real(-1.0));
    ck_assert_int_eq(coord_ledger_from_json(&back, j2), SMLT_EINVAL);
    json_object_set_new(j2, "ps_usd", json_string("1"));
    ck_assert_int_eq(coord_ledger_from_json(&back, j2), SMLT_EINVAL);
    json_t *arr = json_array();
    ck_assert_int_eq(coord_ledger_from_json(&back, arr), SMLT_EINVAL);
    ck_assert_int_eq(coord_ledger_from_json(&back, NULL), SMLT_EINVAL);
    json_decref(arr);
    free(text);
    json_decref(j);
    json_decref(j2);

    json_t *pj = coord_prices_to_json(&p);
    ck_assert(json_real_value(json_object_get(pj, "gb_s")) == 0.0000133334);
    ck_assert(json_real_value(json_object_get(pj, "ps_node_hour")) == 0.0208);
    json_decref(pj);
}
END_TEST

static Suite *coord_ledger_suite(void)
{
    Suite *s = suite_create("coord_ledger");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, prices_default);
    tcase_add_test(tc, billed_ms_rounds_up);
    tcase_add_test(tc, invocation_cost_by_hand);
    tcase_add_test(tc, ledger_accumulates);
    tcase_add_test(tc, ledger_many_charges);
    tcase_add_test(tc, ledger_json_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(coord_ledger_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
