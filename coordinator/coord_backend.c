/* coord_backend.c: the coord_backend.h calls, dispatched to the platform's operations. */
#include "coord_backend.h"

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

const char *coord_backend_name(const struct coord_backend *b)
{
    return b->ops->name;
}
