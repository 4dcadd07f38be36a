/* coord_spec_int.h: what the spec parser's files (coord_spec.c, coord_spec_source.c) share. */
#ifndef COORD_SPEC_INT_H
#define COORD_SPEC_INT_H

#include <stddef.h>

#include "coord_spec.h"

/* Where the parser writes its one message. */
struct pctx {
    char *err;
    size_t errlen;
};

/* Writes the message and returns SMLT_EINVAL. */
int coord_spec__fail(struct pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes at most max bytes of s to buf, control and non-ASCII bytes as '?', with "..." when
 * cut. buf must hold max + 4 bytes. */
void coord_spec__fmt_clean(const char *s, size_t len, size_t max, char *buf);

/* Checks a dataset as the spec names it (coord_spec.h). Returns 0 or SMLT_EINVAL. */
int coord_spec__check_dataset(struct pctx *c, const char *d);

/* Checks "host:port,..." and returns the number of addresses, or SMLT_EINVAL. */
int coord_spec__count_addrs(struct pctx *c, const char *addrs);

#endif
