/* worker_lambda.h: smlt-worker as an AWS Lambda custom runtime (the `bootstrap` of a zip or
 * container image), speaking the Lambda Runtime API at $AWS_LAMBDA_RUNTIME_API (host:port).
 *
 * The loop, with libcurl, blocking (one invocation at a time), under /2018-06-01/runtime:
 *   - GET invocation/next, with no timeout. Headers: Lambda-Runtime-Aws-Request-Id,
 *     Lambda-Runtime-Deadline-Ms (epoch ms), Lambda-Runtime-Trace-Id (to _X_AMZN_TRACE_ID).
 *   - POST invocation/ID/response: the response line (worker_invoke.h).
 *   - POST invocation/ID/error for a malformed event: {"errorMessage": "...", "errorType":
 *     "Smlt.InvalidEvent"} and the header Lambda-Runtime-Function-Error-Type; the loop goes on.
 *   - POST init/error before the loop: out of memory, a bad $SMLT_LOG_LEVEL, the Runtime API
 *     unreachable; then the process exits 1.
 * The event is the invocation payload. A valid invocation always gets /response, whatever came
 * of it (its "status" says: a coordinator that refuses it is "failed", not a function error).
 *
 * Deadline: the slice ends by the earlier of the Assignment's deadline and Lambda's deadline
 * minus a margin, max(1 s, 5% of the time left), and reports where it got to ("time_up"); the
 * response is posted in the margin. A deadline header that is not an epoch time in ms (before
 * 2001, such as @vercel/fun's constant 5000) is ignored with a warning.
 *
 * The instance stays warm between invocations (worker_invoke.h). SIGTERM (Lambda's shutdown
 * when extensions are registered) ends the process at once when idle; in the middle of a slice
 * it ends the slice after its current step, posts the response, and exits 0. */
#ifndef WORKER_LAMBDA_H
#define WORKER_LAMBDA_H

/* Runs the Runtime API loop against api ("host:port"; NULL: $AWS_LAMBDA_RUNTIME_API).
 * Returns the process exit code: 1 after an init failure or when the Runtime API goes away, 2
 * when api is missing or not host:port. */
int worker_lambda_main(const char *api);

#endif
