/* smlt_enum.c: names of the sync modes and optimizers, and the compile-time proof that the
 * enums of smlt_enum.h are the wire's (protoc-c's SMLT__*). */
#include "smlt_enum.h"

#include <strings.h>

#include "smlt.pb-c.h"
#include "smlt_error.h"

/* As ints: the two sides are different enum types (-Wenum-compare). */
#define SAME(a, b) ((int)(a) == (int)(b))

_Static_assert(SAME(SMLT_SYNC_BSP, SMLT__SYNC_MODE__SYNC_BSP), "sync: BSP differs from smlt.proto");
_Static_assert(SAME(SMLT_SYNC_SSP, SMLT__SYNC_MODE__SYNC_SSP), "sync: SSP differs from smlt.proto");
_Static_assert(SAME(SMLT_SYNC_ASP, SMLT__SYNC_MODE__SYNC_ASP), "sync: ASP differs from smlt.proto");
_Static_assert(SAME(SMLT_OPT_SGD, SMLT__OPTIM_KIND__OPT_SGD), "optim: SGD differs from smlt.proto");
_Static_assert(SAME(SMLT_OPT_MOMENTUM, SMLT__OPTIM_KIND__OPT_MOMENTUM),
               "optim: momentum differs from smlt.proto");
_Static_assert(SAME(SMLT_OPT_ADAM, SMLT__OPTIM_KIND__OPT_ADAM),
               "optim: Adam differs from smlt.proto");
_Static_assert(SAME(SMLT_OPT_ADAGRAD, SMLT__OPTIM_KIND__OPT_ADAGRAD),
               "optim: AdaGrad differs from smlt.proto");
_Static_assert(SAME(SMLT_INIT_ZERO, SMLT__INIT_KIND__INIT_ZERO),
               "init: zero differs from smlt.proto");
_Static_assert(SAME(SMLT_INIT_UNIFORM, SMLT__INIT_KIND__INIT_UNIFORM),
               "init: uniform differs from smlt.proto");
_Static_assert(SAME(SMLT_INIT_NORMAL, SMLT__INIT_KIND__INIT_NORMAL),
               "init: normal differs from smlt.proto");
_Static_assert(SAME(SMLT_INIT_CONST, SMLT__INIT_KIND__INIT_CONST),
               "init: const differs from smlt.proto");

static const char *const sync_names[] = {"bsp", "ssp", "asp"};
static const char *const optim_names[] = {"sgd", "momentum", "adam", "adagrad"};

#define NNAMES(a) ((int)(sizeof(a) / sizeof(a)[0]))

static int lookup(const char *const *names, int n, const char *s)
{
    for (int i = 0; s && i < n; i++)
        if (!strcasecmp(s, names[i]))
            return i;
    return -1;
}

const char *smlt_enum_sync_name(int mode)
{
    return mode >= 0 && mode < NNAMES(sync_names) ? sync_names[mode] : "?";
}

int smlt_enum_sync_parse(const char *s, enum smlt_sync *mode)
{
    int i = lookup(sync_names, NNAMES(sync_names), s);
    if (i < 0)
        return SMLT_EINVAL;
    *mode = (enum smlt_sync)i;
    return 0;
}

const char *smlt_enum_optim_name(int kind)
{
    return kind >= 0 && kind < NNAMES(optim_names) ? optim_names[kind] : "?";
}

int smlt_enum_optim_parse(const char *s, enum smlt_optim *kind)
{
    int i = lookup(optim_names, NNAMES(optim_names), s);
    if (i < 0)
        return SMLT_EINVAL;
    *kind = (enum smlt_optim)i;
    return 0;
}
