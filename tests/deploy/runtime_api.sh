#!/bin/bash
# tests/deploy/runtime_api.sh: sourced by the deploy tests to run runtime_api.py, a Lambda
# Runtime API stub on 127.0.0.1 that hands out one malformed invocation.
#   api_start DIR     starts it (its log in DIR/api.log); sets API_PID and API_ADDR (host:port)
#   api_answered      waits up to 30 s for smlt-worker to answer that invocation (a POST to
#                     its /response or /error); 0 when it did
#   api_stop          stops it, by its pid
# shellcheck disable=SC2034  # API_ADDR is read by the scripts that source this
API_DIR="" API_PID="" API_ADDR=""

api_start() {
    API_DIR=$1
    rm -f "$API_DIR/api.port" "$API_DIR/api.log"
    /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/runtime_api.py" "$API_DIR/api.port" \
        >"$API_DIR/api.log" 2>&1 &
    API_PID=$!
    for _ in $(seq 50); do
        [ -s "$API_DIR/api.port" ] && break
        sleep 0.1
    done
    [ -s "$API_DIR/api.port" ] || { echo "the Runtime API stub did not start:"; cat "$API_DIR/api.log"; return 1; }
    API_ADDR=127.0.0.1:$(cat "$API_DIR/api.port")
}

api_answered() {
    for _ in $(seq 300); do
        grep -q "^POST /2018-06-01/runtime/invocation/deploy-test-1/" "$API_DIR/api.log" && return 0
        sleep 0.1
    done
    return 1
}

api_stop() {
    if [ -n "$API_PID" ]; then kill "$API_PID" 2>/dev/null; wait "$API_PID" 2>/dev/null || true; fi
    API_PID=""
}
