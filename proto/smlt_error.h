/* smlt_error.h: the error codes every SMLT-C module and the wire use.
 *
 * Functions return 0 or a negative SMLT_E* code; smlt_strerror() names it. The same numbers
 * (negated) travel in ErrorReply.code on the wire, so a client sees the server's code as is.
 * This header is part of the public client API (worker/include/smlt.h includes it). */
#ifndef SMLT_ERROR_H
#define SMLT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions libsmlt exports; everything else is built with -fvisibility=hidden. */
#ifndef SMLT_API
#define SMLT_API __attribute__((visibility("default")))
#endif

enum smlt_err {
    SMLT_OK = 0,
    SMLT_EINVAL = -1,      /* invalid argument */
    SMLT_ENOMEM = -2,      /* out of memory */
    SMLT_EIO = -3,         /* connection or I/O error */
    SMLT_ETIMEDOUT = -4,   /* timed out */
    SMLT_EPROTO = -5,      /* malformed frame or message */
    SMLT_EAUTH = -6,       /* wrong or missing token */
    SMLT_ESTALEMAP = -7,   /* the request named an old partition map */
    SMLT_ERANGE = -8,      /* key range outside the shard or model */
    SMLT_ETOOBIG = -9,     /* exceeds a limit */
    SMLT_ENOTCONF = -10,   /* shard has no job configured yet */
    SMLT_ESTEP = -11,      /* push step is behind or ahead of what the sync mode allows */
    SMLT_ECLOSED = -12,    /* peer closed the connection */
    SMLT_EVERSION = -13,   /* unsupported protocol version */
    SMLT_EBUSY = -14,      /* too many connections or requests */
    SMLT_ENOTFOUND = -15,  /* no such object */
    SMLT_ECORRUPT = -16,   /* corrupt data: bad checksum, bad lz4 block */
    SMLT_EPERM = -17,      /* operation needs the admin token */
    SMLT_ECANCELED = -18,  /* canceled */
    SMLT_EINTERNAL = -19,  /* internal error (a bug) */
    SMLT_ESYS = -20,       /* system call failed (see errno in the message) */
    SMLT_EAGAIN = -21,     /* try again later (e.g. shard resharding) */
    SMLT_ETLS = -22,       /* TLS handshake or certificate verification failed, or one end
                              speaks TLS and the other does not */
    SMLT_ERR_MIN = -22
};

/* Returns a static, human-readable description of code (0 or a negative SMLT_E*). Never NULL. */
SMLT_API const char *smlt_strerror(int code);

/* Returns the short symbolic name of code ("SMLT_ESTALEMAP"); "SMLT_E?" for unknown codes. */
SMLT_API const char *smlt_errname(int code);

#ifdef __cplusplus
}
#endif
#endif
