/* smlt_client_int.h: what the project's own code may call on a libsmlt client beyond the
 * public API (not exported from libsmlt.so). */
#ifndef SMLT_CLIENT_INT_H
#define SMLT_CLIENT_INT_H

#include <stddef.h>

struct smlt_client;
struct smlt_client_opts;

/* smlt_client_connect() in two halves, so that another thread can interrupt the connecting:
 * create returns an unconnected client (NULL with a message on bad options); open connects it
 * to the job through addrs (0 or a code with a message; the client is then still to be
 * closed with smlt_client_close()). */
struct smlt_client *smlt_client_create(const struct smlt_client_opts *opts, char *errmsg,
                                       size_t errlen);
int smlt_client_open(struct smlt_client *c, const char *addrs, char *errmsg, size_t errlen);

/* A TLS client context that every client of this process created without TLS options
 * uses (a reference is taken; NULL: plain TCP again): how a daemon with TLS options talks
 * TLS to all of its shards (the coordinator's admin calls and job setup). Set it before the
 * threads that create clients start; clients already made keep what they had. */
struct smlt_tls;
void smlt_client_set_default_tls(struct smlt_tls *tls);

/* Makes the call running on c (in another thread) return SMLT_ECANCELED as soon as its event
 * loop wakes, and every later call on c too. The one function of a client that another thread
 * may call while c is in use; it needs libevent's thread support (evthread_use_pthreads())
 * enabled before c was created, and c must stay alive for the call (the caller's lock). */
void smlt_client_interrupt(struct smlt_client *c);

#endif
