/* smlt_enum.h: the sync modes, optimizers and parameter initializations, defined once.
 *
 * These are the values of the wire (smlt.proto's SyncMode, OptimKind and InitKind): the public
 * client header (smlt.h) includes this file, the shard (ps/) and the training engine use the
 * same enums, and smlt_enum.c checks at compile time that every value equals the protoc-c
 * generated one. The names are the job spec's and the command lines' ("bsp", "adam"). */
#ifndef SMLT_ENUM_H
#define SMLT_ENUM_H

#ifdef __cplusplus
extern "C" {
#endif

enum smlt_sync { SMLT_SYNC_BSP = 0, SMLT_SYNC_SSP = 1, SMLT_SYNC_ASP = 2 };
enum smlt_optim {
    SMLT_OPT_SGD = 0,
    SMLT_OPT_MOMENTUM = 1,
    SMLT_OPT_ADAM = 2,
    SMLT_OPT_ADAGRAD = 3
};
enum smlt_init {
    SMLT_INIT_ZERO = 0,
    SMLT_INIT_UNIFORM = 1, /* in [-scale, scale) */
    SMLT_INIT_NORMAL = 2,  /* N(0, scale^2) */
    SMLT_INIT_CONST = 3    /* every element = scale */
};

/* The names, for the project's own code: these are not exported by libsmlt.so.
 * Returns the name of a sync mode ("bsp", "ssp", "asp") or "?" (static). */
const char *smlt_enum_sync_name(int mode);
/* Parses a sync mode name, case-insensitive. Returns 0 and *mode, or SMLT_EINVAL. */
int smlt_enum_sync_parse(const char *s, enum smlt_sync *mode);
/* Returns the name of an optimizer ("sgd", "momentum", "adam", "adagrad") or "?" (static). */
const char *smlt_enum_optim_name(int kind);
/* Parses an optimizer name, case-insensitive. Returns 0 and *kind, or SMLT_EINVAL. */
int smlt_enum_optim_parse(const char *s, enum smlt_optim *kind);

#ifdef __cplusplus
}
#endif
#endif
