/* smlt_client_int.h: what the project's own code may call on a libsmlt client beyond the
 * public API (not exported from libsmlt.so). */
#ifndef SMLT_CLIENT_INT_H
#define SMLT_CLIENT_INT_H

struct smlt_client;

/* Makes the call running on c (in another thread) return SMLT_ECANCELED as soon as its event
 * loop wakes, and every later call on c too. The one function of a client that another thread
 * may call while c is in use; it needs libevent's thread support (evthread_use_pthreads())
 * enabled before c was created, and c must stay alive for the call (the caller's lock). */
void smlt_client_interrupt(struct smlt_client *c);

#endif
