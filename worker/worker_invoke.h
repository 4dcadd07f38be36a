/* worker_invoke.h: smlt-worker as a function's bootstrap (`smlt-worker --invoke`).
 *
 * The platform hands the process one invocation per line of standard input, a JSON object:
 *   {"coordinator": "host:port", "invocation": "ID", "token": "..."}
 * The bootstrap connects to the coordinator over the protobuf-c RPC, proves the invocation with
 * its token, receives its Assignment (what to train, where the shards are, from which step, for
 * how long), trains it with worker_run() while sending Progress, reports Done, and writes its
 * response, one JSON line, to standard output:
 *   {"invocation": "ID", "status": "finished"|"slice"|"time_up"|"failed", "next_step": N,
 *    "steps": N, "samples": N, "loss": x, "elapsed_s": x, "cold": true|false, "error": "..."}
 * then waits for the next line: a warm instance keeps its data, model and shard connections.
 * End of input ends the process.
 *
 * The coordinator may die in the middle of an invocation (it restarts on the same RPC
 * address). The slice goes on against the shards; the bootstrap dials the coordinator again
 * once a second and, on a new connection, says hello again for the invocation with `resume`
 * set, then goes on reporting. A refused resume stops the slice. Done is retried for up to 60 s
 * while the coordinator is away. The response line may then go nowhere (SIGPIPE is ignored). */
#ifndef WORKER_INVOKE_H
#define WORKER_INVOKE_H

/* Serves invocations from stdin until it closes. Returns the process exit code. */
int worker_invoke_main(void);

#endif
