/* ps_http.h: smlt-ps's HTTP endpoint for Prometheus (--metrics-listen).
 *
 * An evhttp server on the shard's own event loop that answers GET /metrics with the shard's
 * counters (ps_metrics.h), read on the loop thread where they are kept, so a scrape takes no
 * lock the data path holds (ps_shard_stats() takes the checkpoint writer's mutex for a copy).
 * Any other path gets 404, any other method on /metrics 405; each is counted and the shard
 * goes on. Requests are capped (headers 8 KiB, a body 4 KiB) and time out after 10 s. */
#ifndef PS_HTTP_H
#define PS_HTTP_H

#include <stddef.h>

#include <event2/event.h>

struct ps_http;
struct ps_server;

/* Returns an endpoint listening on addr ("HOST:PORT", port 0 picks one) on base, serving srv's
 * metrics (borrowed: free the endpoint before the server). NULL with a message in err. */
struct ps_http *ps_http_new(struct event_base *base, struct ps_server *srv, const char *addr,
                            char *err, size_t errlen);

/* The bound TCP port. */
int ps_http_port(const struct ps_http *h);

/* Closes the listener and every HTTP connection; frees h. NULL is fine. */
void ps_http_free(struct ps_http *h);

#endif
