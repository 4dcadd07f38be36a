/* worker_http.h: smlt-worker as an HTTP function (OpenFaaS, Knative): `smlt-worker --http`.
 *
 * A libevent evhttp server on one loop thread; each invocation trains on a slot thread of its
 * own, so the loop keeps answering while slices run:
 *   POST /          the body is the invocation payload (worker_invoke.h); 200 with the response
 *                   line as the body once the slice has ended (whatever its status), 400 with
 *                   {"error": "..."} for a malformed payload, 429 with {"error": "..."} when
 *                   --max-inflight invocations already run, 413 past SMLT_MAX_INVOCATION bytes,
 *                   503 while shutting down
 *   GET /_/health   200 {"status": "ok"} while the process serves
 *   GET /_/ready    200 {"status": "ready"}, or 503 {"status": "draining"} after SIGTERM
 * Each slot keeps its warm state (data, model, shard and coordinator connections) from one
 * invocation to the next; the first free slot takes a request, so with --max-inflight 1 (the
 * default, like Knative's containerConcurrency 1) every invocation finds the same warm worker.
 *
 * Where it listens: --listen HOST:PORT; else 0.0.0.0:$PORT when the platform sets $PORT
 * (Knative does; set it for OpenFaaS, or pass --listen 0.0.0.0:8080); else 127.0.0.1:8080.
 *
 * SIGTERM (or SIGINT) drains: the listener closes, /_/ready answers 503, running slices end
 * after their current step and report where they got to (status "slice", as Done to the
 * coordinator and as the HTTP response), every answer is written out, and the process exits 0. */
#ifndef WORKER_HTTP_H
#define WORKER_HTTP_H

/* `smlt-worker --http [--listen HOST:PORT] [--max-inflight N] [--port-file F]
 * [--log-level L]`. Returns the process exit code (2 on bad options, 1 when it cannot listen). */
int worker_http_main(int argc, char **argv);

#endif
