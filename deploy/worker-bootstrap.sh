#!/bin/sh
# bootstrap: the entrypoint of the worker function image (deploy/Containerfile installs it as
# /usr/local/bin/bootstrap). One image, every platform:
#   AWS Lambda    no arguments, AWS_LAMBDA_RUNTIME_API set: smlt-worker runs the Runtime API loop
#   OpenFaaS,     no arguments: smlt-worker --http on 0.0.0.0:$PORT (8080 unless set). The
#   Knative,      function serves HTTP itself (/, /_/health, /_/ready): no of-watchdog in front
#   podman run
#   anything else arguments go to smlt-worker as they are (--version, --http --listen ..., --invoke)
# In a container the listener must be on every address, so the HTTP mode names 0.0.0.0 here.
set -e
WORKER=/usr/local/bin/smlt-worker
if [ $# -gt 0 ]; then
    exec "$WORKER" "$@"
fi
if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
    exec "$WORKER"
fi
exec "$WORKER" --http --listen "0.0.0.0:${PORT:-8080}"
