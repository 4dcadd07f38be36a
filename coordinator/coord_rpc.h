/* coord_rpc.h: the coordinator's protobuf-c RPC endpoint for worker invocations.
 *
 * A worker bootstrap connects, proves which invocation it is with WorkerHello (the invocation's
 * id and its random token, compared in constant time), gets its Assignment, sends Progress
 * (answered with ProgressAck, which can ask it to stop) and finally Done (answered with Ok).
 * A connection is bound to one invocation at a time; a warm instance sends a new WorkerHello
 * for its next invocation, and a worker whose connection was lost says hello again on a new
 * one, with resume set, to finish its invocation (after a restart of the coordinator, which
 * adopts it). Anything else is refused with an error, and a malformed frame
 * closes that connection only. */
#ifndef COORD_RPC_H
#define COORD_RPC_H

#include <stddef.h>

#include <event2/event.h>

#include "smlt.pb-c.h"

struct coord_rpc;

struct coord_rpc_handler {
    /* A worker claims invocation m->invocation with m->token (m->resume: it lost its
     * connection mid-invocation and is back to finish the slice). Returns 0 and fills *a (the
     * strings it points at must stay valid until the call returns), or a negative code with
     * a message in err (SMLT_EAUTH for an unknown invocation or a wrong token). */
    int (*hello)(const Smlt__WorkerHello *m, Smlt__Assignment *a, char *err, size_t errlen,
                 void *arg);
    /* Progress of a claimed invocation. Returns 1 to ask the worker to stop. */
    int (*progress)(const char *inv, const Smlt__Progress *p, void *arg);
    /* The invocation's end as the worker reports it. */
    void (*done)(const char *inv, const Smlt__Done *d, void *arg);
};

/* Listens on addr ("127.0.0.1:0") on base. Returns NULL with a message in err. */
struct coord_rpc *coord_rpc_new(struct event_base *base, const char *addr,
                                const struct coord_rpc_handler *h, void *arg, char *err,
                                size_t errlen);

/* "host:port" workers should dial (static per server). */
const char *coord_rpc_addr(const struct coord_rpc *r);

/* Serves TLS with the server context tls on every connection accepted from now on (a
 * reference is taken; call it right after coord_rpc_new(), before the loop runs). */
struct smlt_tls;
void coord_rpc_set_tls(struct coord_rpc *r, struct smlt_tls *tls);

/* Counters for /metrics. */
struct coord_rpc_stats {
    unsigned long long conns, auth_failures, frames_bad, progress, done;
    unsigned long long tls_failures; /* connections closed because TLS failed */
};
void coord_rpc_stats(const struct coord_rpc *r, struct coord_rpc_stats *st);

void coord_rpc_free(struct coord_rpc *r);

#endif
