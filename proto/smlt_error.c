/* smlt_error.c: names and descriptions of the SMLT_E* codes. */
#include "smlt_error.h"

static const struct {
    const char *name;
    const char *desc;
} smlt_errtab[] = {
    {"SMLT_OK", "success"},
    {"SMLT_EINVAL", "invalid argument"},
    {"SMLT_ENOMEM", "out of memory"},
    {"SMLT_EIO", "connection or I/O error"},
    {"SMLT_ETIMEDOUT", "timed out"},
    {"SMLT_EPROTO", "malformed frame or message"},
    {"SMLT_EAUTH", "authentication failed (wrong or missing token)"},
    {"SMLT_ESTALEMAP", "stale partition map"},
    {"SMLT_ERANGE", "key range out of bounds"},
    {"SMLT_ETOOBIG", "size exceeds a limit"},
    {"SMLT_ENOTCONF", "shard not configured"},
    {"SMLT_ESTEP", "push step not accepted by the sync mode"},
    {"SMLT_ECLOSED", "connection closed by peer"},
    {"SMLT_EVERSION", "unsupported protocol version"},
    {"SMLT_EBUSY", "too busy (connection or request limit)"},
    {"SMLT_ENOTFOUND", "not found"},
    {"SMLT_ECORRUPT", "corrupt data"},
    {"SMLT_EPERM", "operation not permitted with this token"},
    {"SMLT_ECANCELED", "canceled"},
    {"SMLT_EINTERNAL", "internal error"},
    {"SMLT_ESYS", "system call failed"},
    {"SMLT_EAGAIN", "temporarily unavailable, try again"},
    {"SMLT_ETLS", "TLS failed (handshake, certificate, or TLS on one end only)"},
};

const char *smlt_strerror(int code)
{
    if (code > 0 || code < SMLT_ERR_MIN)
        return "unknown error";
    return smlt_errtab[-code].desc;
}

const char *smlt_errname(int code)
{
    if (code > 0 || code < SMLT_ERR_MIN)
        return "SMLT_E?";
    return smlt_errtab[-code].name;
}
