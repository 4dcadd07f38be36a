/* coord_http.h: the coordinator's HTTP JSON API (libevent evhttp + jansson).
 *
 *   GET  /api/health                 {"ok": true, "version": ...}
 *   GET  /api/jobs                   {"jobs": [summary, ...]}
 *   POST /api/jobs                   body: job spec JSON -> 201 {"id": ...}
 *                                    | 400 {"error": "budget_usd: must be > 0"}
 *   GET  /api/jobs/ID                the job with its time series and decisions
 *   POST /api/jobs/ID/cancel         -> the job
 *   POST /api/jobs/ID/scale          body {"workers": N, "shards": M} -> the job
 *   POST /api/jobs/ID/checkpoint     save the model now -> {"path": ...}
 *   GET  /api/jobs/ID/model          the saved model file (application/octet-stream)
 *   GET  /api/jobs/ID/logs?tail=N    the job's log (text/plain), last N lines (default 200)
 *   GET  /metrics                    Prometheus text exposition
 *   POST /api/callback/ID/SECRET     an OpenFaaS queue-worker's result of an asynchronous
 *                                    invocation (--openfaas-async): 200, or 404 (unknown,
 *                                    ended, a second callback), 403 (wrong secret), 400 (no
 *                                    X-Function-Status), 413 (body over 64 KiB); no token:
 *                                    the secret is the invocation's own
 *
 *   GET  /                           the dashboard (coord_dash.h); /dashboard/NAME its files
 *
 * Mutating calls (POST) but callbacks need "Authorization: Bearer ADMIN_TOKEN"; a wrong or
 * missing token is 401. When the server listens on an address other than loopback, every call
 * but /api/health, callbacks and the dashboard's own files needs it too. Errors are
 * {"error": "..."} with 400, 401, 403, 404, 405, 409, 413 or 500. Request bodies are capped at
 * 1 MiB (callbacks' at 64 KiB). The server binds 127.0.0.1 unless told otherwise. */
#ifndef COORD_HTTP_H
#define COORD_HTTP_H

#include <event2/event.h>

#include "coord.h"

struct coord_http;

/* Listens on addr ("127.0.0.1:8080"; port 0 picks one). NULL with a message in err. */
struct coord_http *coord_http_new(struct event_base *base, struct coord *c, const char *addr,
                                  const char *admin_token, char *err, size_t errlen);

int coord_http_port(const struct coord_http *h);

/* Serves HTTPS with the server context tls (a reference is taken) on every connection
 * accepted from now on: call it right after coord_http_new(), before the loop runs. */
struct smlt_tls;
void coord_http_set_tls(struct coord_http *h, struct smlt_tls *tls);

void coord_http_free(struct coord_http *h);

#endif
