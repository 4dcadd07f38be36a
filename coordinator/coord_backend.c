/* coord_backend.c: the coord_backend.h calls, dispatched to the platform's operations. */
#include "coord_backend.h"

#include <stdio.h>

#include "smlt_error.h"

int coord_backend_invoke(struct coord_backend *b, const struct coord_inv_req *req, coord_inv_fn cb,
                         void *arg, uint64_t *inv)
{
    return b->ops->invoke(b, req, cb, arg, inv);
}

int coord_backend_cancel(struct coord_backend *b, uint64_t inv)
{
    return b->ops->cancel(b, inv);
}

pid_t coord_backend_pid(struct coord_backend *b, uint64_t inv)
{
    return b->ops->pid ? b->ops->pid(b, inv) : 0;
}

void coord_backend_drop_function(struct coord_backend *b, const char *function)
{
    if (b->ops->drop_function)
        b->ops->drop_function(b, function);
}

void coord_backend_stats(const struct coord_backend *b, struct coord_backend_stats *st)
{
    b->ops->stats(b, st);
}

void coord_backend_free(struct coord_backend *b)
{
    if (b)
        b->ops->free(b);
}

int coord_backend_callback(struct coord_backend *b, const struct coord_inv_callback *cb, char *err,
                           size_t errlen)
{
    if (b->ops->callback)
        return b->ops->callback(b, cb, err, errlen);
    snprintf(err, errlen, "this coordinator's platform (%s) sends no callbacks", b->ops->name);
    return SMLT_ENOTFOUND;
}

int coord_backend_takes_callbacks(const struct coord_backend *b)
{
    return b->ops->callback != NULL;
}

int coord_backend_set_callback_base(struct coord_backend *b, const char *url, char *err,
                                    size_t errlen)
{
    if (b->ops->set_callback_base)
        return b->ops->set_callback_base(b, url, err, errlen);
    snprintf(err, errlen, "the %s platform takes no callbacks", b->ops->name);
    return SMLT_EINVAL;
}

const char *coord_backend_name(const struct coord_backend *b)
{
    return b->ops->name;
}
