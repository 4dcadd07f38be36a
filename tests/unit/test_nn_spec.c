/* test_nn_spec.c: Check suite for worker/nn_spec.c (model specs without the engine): the plan
 * and layout agree with the engine's model for every kind of model, the tensor definitions
 * for smlt_job_setup, refusals with a message, and the guards against sizes that overflow. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_model.h"
#include "nn_spec.h"
#include "smlt.h"
#include "smlt_error.h"

static struct nn_spec *parse_ok(const char *spec)
{
    struct nn_spec *sp = malloc(sizeof *sp);
    char err[256] = "";
    ck_assert_ptr_nonnull(sp);
    ck_assert_msg(nn_spec_parse(sp, spec, err, sizeof err) == 0, "'%s': %s", spec, err);
    return sp;
}

/* The plan's layout is the engine's: same canonical spec, sizes, tensors (name, shape,
 * offset, length, init) as nn_model_new() gives, and as the engine's layers describe. */
static void check_agrees_with_model(const char *spec)
{
    struct nn_spec *sp = parse_ok(spec);
    char err[256] = "";
    struct nn_model *m = nn_model_new(spec, 2, err, sizeof err);
    ck_assert_msg(m != NULL, "'%s': %s", spec, err);
    ck_assert_str_eq(sp->canon, nn_model_spec(m));
    ck_assert_int_eq(sp->input_dim, nn_model_input_dim(m));
    ck_assert_int_eq(sp->classes, nn_model_num_classes(m));
    ck_assert_uint_eq(sp->nparams, nn_model_num_params(m));
    ck_assert_int_eq(sp->ntensors, nn_model_num_tensors(m));
    ck_assert_int_eq(sp->nlayers, nn_model_num_layers(m));
    size_t off = 0;
    int t = 0;
    for (int i = 0; i < sp->nlayers; i++) {
        const struct nn_layer *l = nn_model_layer(m, i);
        ck_assert_int_eq(sp->layers[i].in_dim, nn_layer_in_dim(l));
        ck_assert_int_eq(sp->layers[i].out_dim, nn_layer_out_dim(l));
        ck_assert_uint_eq(sp->layers[i].nparams, nn_layer_num_params(l));
        size_t base = off;
        for (int k = 0; k < nn_layer_num_tensors(l); k++, t++) {
            struct nn_spec_tensor lt;
            const struct nn_spec_tensor *a = &sp->tensors[t], *b = nn_model_tensor(m, t);
            ck_assert_int_eq(nn_layer_tensor(l, k, &lt), 0);
            ck_assert_str_eq(a->name, b->name);
            ck_assert_ptr_nonnull(strstr(a->name, lt.name)); /* "fc1.weight" ends in "weight" */
            ck_assert_uint_eq(a->offset, off);
            ck_assert_uint_eq(a->offset, b->offset);
            ck_assert_uint_eq(a->offset - base, lt.offset);
            ck_assert_uint_eq(a->length, lt.length);
            ck_assert_int_eq(a->ndim, lt.ndim);
            size_t prod = 1;
            for (int d = 0; d < a->ndim; d++) {
                ck_assert_int_eq(a->shape[d], lt.shape[d]);
                prod *= (size_t)a->shape[d];
            }
            ck_assert_uint_eq(prod, a->length);
            ck_assert_int_eq(a->init, lt.init);
            ck_assert(a->scale == lt.scale);
            off += a->length;
        }
    }
    ck_assert_int_eq(t, sp->ntensors);
    ck_assert_uint_eq(off, sp->nparams);
    nn_model_free(m);
    free(sp);
}

START_TEST(layout_agrees_with_the_engine)
{
    static const char *specs[] = {
        "logreg:784-10", "mlp:784-128-10",
        "mlp:10-5-4-3:dropout=0.25", "lenet5",
        "lenet5:pad=0", "lenet5:in=32x32x3:classes=7:dropout=0.5",
        "logreg:1-2",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        check_agrees_with_model(specs[i]);
}
END_TEST

START_TEST(lenet5_plan)
{
    struct nn_spec *sp = parse_ok("lenet5");
    ck_assert_str_eq(sp->canon, "lenet5");
    ck_assert_int_eq(sp->input_dim, 784);
    ck_assert_int_eq(sp->classes, 10);
    /* conv 5x5x1x6, conv 5x5x6x16, fc 400-120, 120-84, 84-10 */
    ck_assert_uint_eq(sp->nparams, 156 + 2416 + 48120 + 10164 + 850);
    ck_assert_int_eq(sp->ntensors, 10);
    ck_assert_str_eq(sp->tensors[0].name, "conv1.weight");
    ck_assert_int_eq(sp->tensors[0].ndim, 4);
    ck_assert_int_eq(sp->tensors[2].shape[2], 6);
    ck_assert_str_eq(sp->tensors[9].name, "fc3.bias");
    ck_assert_int_eq(sp->tensors[9].init, SMLT_INIT_ZERO);
    ck_assert_int_eq(sp->tensors[8].init, SMLT_INIT_UNIFORM);
    ck_assert_int_eq(sp->layers[0].kind, NN_SPEC_CONV);
    ck_assert_int_eq(sp->layers[0].oh, 28); /* padding 2 keeps 28 x 28 */
    ck_assert_int_eq(sp->layers[4].kind, NN_SPEC_FLATTEN);
    ck_assert_int_eq(sp->layers[4].out_dim, 400);
    free(sp);
    sp = parse_ok("mlp:10-5-4-3:dropout=0.25");
    ck_assert_int_eq(sp->nlayers, 5); /* fc1 drop fc2 drop fc3 */
    ck_assert_int_eq(sp->layers[1].kind, NN_SPEC_DROPOUT);
    ck_assert(sp->layers[1].dropout == 0.25f);
    ck_assert_int_eq(sp->layers[0].relu, 1);
    ck_assert_int_eq(sp->layers[4].relu, 0);
    free(sp);
}
END_TEST

START_TEST(tensor_defs_for_job_setup)
{
    struct nn_spec *sp = parse_ok("mlp:6-4-3");
    struct smlt_tensor_def defs[NN_SPEC_MAX_TENSORS];
    uint64_t shapes[NN_SPEC_MAX_TENSORS * NN_SPEC_MAX_DIMS];
    ck_assert_int_eq(nn_spec_tensor_defs(sp, defs, shapes), 4);
    ck_assert_str_eq(defs[0].name, "fc1.weight");
    ck_assert_uint_eq(defs[0].ndims, 2);
    ck_assert_uint_eq(defs[0].shape[0], 6);
    ck_assert_uint_eq(defs[0].shape[1], 4);
    ck_assert_int_eq(defs[0].init, SMLT_INIT_UNIFORM);
    ck_assert(defs[0].init_scale == sp->tensors[0].scale && defs[0].init_scale > 0.0f);
    ck_assert_str_eq(defs[3].name, "fc2.bias");
    ck_assert_uint_eq(defs[3].ndims, 1);
    ck_assert_uint_eq(defs[3].shape[0], 3);
    ck_assert_int_eq(defs[3].init, SMLT_INIT_ZERO);
    free(sp);
}
END_TEST

START_TEST(check_gives_canon_and_count)
{
    char canon[NN_SPEC_MAX], err[256];
    size_t np = 0;
    ck_assert_int_eq(nn_spec_check("mlp:784-128-10:dropout=0.5", canon, sizeof canon, &np, err,
                                   sizeof err),
                     0);
    ck_assert_str_eq(canon, "mlp:784-128-10:dropout=0.5");
    ck_assert_uint_eq(np, 784 * 128 + 128 + 128 * 10 + 10);
    ck_assert_int_eq(nn_spec_check("logreg:4-2", NULL, 0, NULL, NULL, 0), 0);
    char small[6];
    ck_assert_int_eq(nn_spec_check("logreg:4-2", small, sizeof small, NULL, NULL, 0), 0);
    ck_assert_str_eq(small, "logre"); /* truncated, terminated */
    /* A 1 G-parameter model is planned without allocating it. */
    ck_assert_int_eq(nn_spec_check("mlp:16384-16384-16384-16384-10", NULL, 0, &np, err,
                                   sizeof err),
                     0);
    ck_assert_uint_eq(np, 3 * (16384ull * 16384 + 16384) + 16384 * 10 + 10);
}
END_TEST

static void expect_bad(const char *spec, const char *needle)
{
    struct nn_spec *sp = malloc(sizeof *sp);
    char err[256] = "";
    ck_assert_int_eq(nn_spec_parse(sp, spec, err, sizeof err), SMLT_EINVAL);
    ck_assert_msg(strstr(err, needle) != NULL, "spec '%s': message '%s' lacks '%s'",
                  spec ? spec : "(null)", err, needle);
    ck_assert_int_eq(sp->nlayers, 0); /* nothing half-planned is left */
    ck_assert_int_eq(nn_spec_parse(sp, spec, NULL, 0), SMLT_EINVAL); /* no message buffer */
    free(sp);
}

START_TEST(bad_specs_refused_with_a_message)
{
    expect_bad(NULL, "empty");
    expect_bad("", "empty");
    expect_bad("resnet50", "'resnet50'");
    expect_bad("mlp:3-2", "hidden");
    expect_bad("logreg:3-4-5", "two sizes");
    expect_bad("mlp:784-x-10", "'x'");
    expect_bad("mlp:784-128-10:dropout=1", "dropout '1'");
    expect_bad("logreg:784-10:pad=1", "unknown option 'pad'");
    expect_bad("lenet5:in=0x28x1", "input shape");
    expect_bad("lenet5:classes=1", "classes '1'");
    expect_bad("lenet5:pad=65", "pad '65'");
    expect_bad("lenet5:in=4x4x1", "conv2");  /* the second convolution does not fit */
    expect_bad("lenet5:in=4x4x1:pad=0", "conv1"); /* a 5 x 5 filter on 4 x 4 */
}
END_TEST

START_TEST(overflow_guards)
{
    /* a dense layer of 2^24 x 2^24 weights: over the engine's cap, refused before any math */
    expect_bad("mlp:16777216-16777216-10", "fc1");
    /* a width past the parser's cap */
    expect_bad("mlp:16777217-2-2", "'16777217'");
    /* a number that would overflow an int */
    expect_bad("mlp:99999999999-2-2", "'99999999999'");
    /* over 2^30 parameters in total */
    expect_bad("mlp:16384-16384-16384-16384-16384-10", "too large");
    /* an input of 2^28 values is allowed, conv1's 6 output channels are not */
    expect_bad("lenet5:in=4096x4096x16", "conv1");
    expect_bad("lenet5:in=4096x4096x4096", "too large");
    /* more layers than the plan holds: 32 sizes make 31 dense layers and 30 dropouts */
    char spec[NN_SPEC_MAX] = "mlp:2";
    for (int i = 0; i < 31; i++)
        strcat(spec, "-2");
    strcat(spec, ":dropout=0.5");
    expect_bad(spec, "too many layers");
    /* 33 sizes: refused by the parser */
    char many[NN_SPEC_MAX] = "mlp:2";
    for (int i = 0; i < 32; i++)
        strcat(many, "-2");
    expect_bad(many, "too many layers");
    /* a spec longer than NN_SPEC_MAX */
    char longspec[NN_SPEC_MAX + 20];
    memset(longspec, '1', sizeof longspec - 1);
    longspec[sizeof longspec - 1] = '\0';
    memcpy(longspec, "mlp:", 4);
    expect_bad(longspec, "too long");
}
END_TEST

START_TEST(geometry)
{
    int oh, ow;
    ck_assert_int_eq(nn_spec_conv_out(28, 28, 1, 6, 5, 1, 2, &oh, &ow), 0);
    ck_assert_int_eq(oh, 28);
    ck_assert_int_eq(ow, 28);
    ck_assert_int_eq(nn_spec_conv_out(10, 12, 3, 4, 3, 2, 0, &oh, &ow), 0);
    ck_assert_int_eq(oh, 4);
    ck_assert_int_eq(ow, 5);
    ck_assert_int_eq(nn_spec_conv_out(4, 4, 1, 1, 5, 1, 0, &oh, &ow), SMLT_EINVAL); /* k > h */
    ck_assert_int_eq(nn_spec_conv_out(8, 8, 1, 1, 3, 1, 3, &oh, &ow), SMLT_EINVAL); /* pad > k-1 */
    ck_assert_int_eq(nn_spec_conv_out(8, 8, 1, 1, 3, 0, 0, &oh, &ow), SMLT_EINVAL);
    ck_assert_int_eq(nn_spec_conv_out(16385, 1, 1, 1, 1, 1, 0, &oh, &ow), SMLT_EINVAL);
    ck_assert_int_eq(nn_spec_conv_out(1024, 1024, 1024, 1, 1, 1, 0, &oh, &ow), SMLT_EINVAL);
    ck_assert_int_eq(nn_spec_pool_out(28, 28, 6, 2, 2, &oh, &ow), 0);
    ck_assert_int_eq(oh, 14);
    ck_assert_int_eq(nn_spec_pool_out(28, 28, 6, 16, 1, &oh, &ow), SMLT_EINVAL); /* k > 15 */
    ck_assert_int_eq(nn_spec_pool_out(1, 1, 1, 2, 2, &oh, &ow), SMLT_EINVAL);
    ck_assert(nn_spec_init_scale(1, 6.0, 1.0) == 1.0f);
    ck_assert(nn_spec_init_scale(0, 3.0, 3.0) == 1.0f);
}
END_TEST

static Suite *nn_spec_suite(void)
{
    Suite *s = suite_create("nn_spec");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, layout_agrees_with_the_engine);
    tcase_add_test(tc, lenet5_plan);
    tcase_add_test(tc, tensor_defs_for_job_setup);
    tcase_add_test(tc, check_gives_canon_and_count);
    tcase_add_test(tc, bad_specs_refused_with_a_message);
    tcase_add_test(tc, overflow_guards);
    tcase_add_test(tc, geometry);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(nn_spec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
