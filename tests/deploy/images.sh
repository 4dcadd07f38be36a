#!/bin/bash
# tests/deploy/images.sh BIN_DIR: the images of deploy/Containerfile build with podman from the
# cached Debian base, and each one runs:
#   - smlt-ps and smlt-coordinator print their version; smlt-worker too (its --help until it has
#     a --version); all three run as the unprivileged user smlt;
#   - the worker image, started with no arguments as OpenFaaS and Knative start it, serves
#     `smlt-worker --http` on 8080: /_/health answers 200 through `podman run -p 127.0.0.1:H:8080`
#     (when BIN_DIR's smlt-worker has --http; said and skipped when it has not);
#   - the worker image, started with no arguments and AWS_LAMBDA_RUNTIME_API set as Lambda
#     starts it, runs the Runtime API loop: it answers the invocation of a stub Runtime API
#     (runtime_api.py, on 127.0.0.1 with --network host) (when smlt-worker has that mode);
#   - the coordinator image answers /api/health, serves Chart.js from libjs-chart.js for its
#     dashboard, and refuses a read without the admin token it generated;
#   - the worker image holds no compiler or -dev package.
# The images are built from BIN_DIR's binaries (deploy/build-images.sh --bins): the builder
# stage compiles the whole project again in about two minutes, which CI spends once already;
# deploy/build-images.sh without --bins builds them from source.
# Exit 77 (skipped) when podman cannot run here; deploy/podman-setup.sh installs it (as root).
set -e
SRC=${SMLT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${1:-${SMLT_BIN_DIR:-$SRC/build/bin}}
TAG="test"
fail() { echo "FAIL: $*"; exit 1; }
# shellcheck source=tests/deploy/runtime_api.sh
. "$SRC/tests/deploy/runtime_api.sh"

if ! bash "$SRC/deploy/podman-setup.sh" --check; then
    if [ "$(id -u)" = 0 ]; then
        bash "$SRC/deploy/podman-setup.sh" || { echo "SKIP: podman cannot run here (above)"; exit 77; }
    else
        echo "SKIP: podman is not set up, and setting it up needs root (deploy/podman-setup.sh)"
        exit 77
    fi
fi

start=$(date +%s)
bash "$SRC/deploy/build-images.sh" --bins "$BIN" --tag $TAG
echo "images built in $(( $(date +%s) - start )) s"

ids=()
tmp=$(mktemp -d)
cleanup() {
    for id in "${ids[@]}"; do podman rm -f -t 2 "$id" >/dev/null 2>&1 || true; done
    api_stop
    rm -rf "$tmp"
}
trap cleanup EXIT

for img in ps coordinator; do
    out=$(podman run --rm "localhost/smlt-$img:$TAG" --version) || fail "smlt-$img --version exited $?"
    echo "$out" | grep -q "^smlt-$img [0-9]" || fail "smlt-$img --version printed: $out"
    echo "smlt-$img image: $out"
done
if out=$(podman run --rm localhost/smlt-worker:$TAG --version 2>/dev/null); then
    echo "smlt-worker image: $out"
else
    out=$(podman run --rm localhost/smlt-worker:$TAG --help) || fail "smlt-worker --help exited $?"
    echo "$out" | grep -q "^usage: smlt-worker" || fail "smlt-worker --help printed: $out"
    echo "smlt-worker image: runs (--help; the worker has no --version yet)"
fi
for img in ps worker coordinator; do
    user=$(podman run --rm --entrypoint /usr/bin/id "localhost/smlt-$img:$TAG" -un)
    [ "$user" = smlt ] || fail "smlt-$img runs as $user, not smlt"
done
dev=$(podman run --rm --entrypoint /usr/bin/dpkg-query localhost/smlt-worker:$TAG -W -f '${Package}\n' |
    grep -E -- '-dev$|^(gcc|cpp|g\+\+|cmake|make|binutils)(-[0-9]+)?$' || true)
[ -z "$dev" ] || fail "the worker image holds build packages: $dev"

# A free loopback port for podman to publish on (the kernel picks it; podman binds it again).
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $(( 20000 + RANDOM % 20000 ))
}
# http_code PORT PATH [TOKEN]: the status of GET http://127.0.0.1:PORT/PATH, polling up to 30 s
# while nothing answers.
http_code() {
    local code auth=()
    [ -n "${3:-}" ] && auth=(-H "Authorization: Bearer $3")
    for _ in $(seq 60); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${auth[@]}" "http://127.0.0.1:$1$2" || true)
        [ "$code" != 000 ] && { echo "$code"; return; }
        sleep 0.5
    done
    echo 000
}

# The coordinator: dashboard, token, and a job on its local runtime (smlt-worker and smlt-ps
# next to it) when Fashion-MNIST is here to mount.
port=$(free_port)
data=/usr/share/datasets/fashion-mnist
mount=()
[ -f "$data/train-images-idx3-ubyte.gz" ] && mount=(-v "$data:/data:ro")
id=$(podman run -d -p "127.0.0.1:$port:8080" "${mount[@]}" localhost/smlt-coordinator:$TAG)
ids+=("$id")
code=$(http_code "$port" /api/health)
[ "$code" = 200 ] || { podman logs "$id" | tail -20; fail "coordinator /api/health: $code"; }
code=$(http_code "$port" /dashboard/chart.min.js)
[ "$code" = 200 ] || fail "coordinator /dashboard/chart.min.js: $code (libjs-chart.js)"
code=$(http_code "$port" /api/jobs)
[ "$code" = 401 ] || fail "coordinator /api/jobs without the token: $code, want 401"
token=$(podman exec "$id" cat /var/lib/smlt/admin-token)
code=$(http_code "$port" /api/jobs "$token")
[ "$code" = 200 ] || fail "coordinator /api/jobs with its token: $code"
echo "smlt-coordinator image: API, dashboard (Chart.js) and token on 127.0.0.1:$port"
if [ ${#mount[@]} -gt 0 ]; then
    ctl=("$BIN/smltctl" --url "http://127.0.0.1:$port" --token "$token")
    job=$("${ctl[@]}" submit --model mlp:784-64-10 --data /data --epochs 1 --workers 2 --shards 1) ||
        fail "submit to the coordinator image: $job"
    timeout 120 "${ctl[@]}" watch "$job" >/dev/null || { podman logs "$id" | tail -20; fail "job $job did not succeed"; }
    acc=$("${ctl[@]}" --json status "$job" | grep -o '"test_accuracy": *[0-9.]*' | head -1 | grep -o '[0-9.]*$')
    echo "smlt-coordinator image: $job trained on its local runtime (2 workers, 1 shard), test accuracy $acc"
else
    echo "SKIPPED PART: no Fashion-MNIST in $data: no job run in the coordinator image"
fi

# The worker as a function: no arguments, HTTP on 8080.
if "$BIN/smlt-worker" --help 2>&1 | grep -q -- "--http"; then
    port=$(free_port)
    id=$(podman run -d -p "127.0.0.1:$port:8080" localhost/smlt-worker:$TAG)
    ids+=("$id")
    code=$(http_code "$port" /_/health)
    [ "$code" = 200 ] || { podman logs "$id" | tail -20; fail "worker /_/health: $code"; }
    code=$(http_code "$port" /_/ready)
    [ "$code" = 200 ] || fail "worker /_/ready: $code"
    echo "smlt-worker image: --http answers /_/health and /_/ready on 127.0.0.1:$port"
else
    echo "SKIPPED PART: $BIN/smlt-worker has no --http mode yet: the function image's HTTP check waits for it"
fi
# The worker as a Lambda container image: no arguments, AWS_LAMBDA_RUNTIME_API set.
if "$BIN/smlt-worker" --help 2>&1 | grep -q AWS_LAMBDA_RUNTIME_API; then
    api_start "$tmp" || fail "cannot start the Runtime API stub"
    id=$(podman run -d --network host -e AWS_LAMBDA_RUNTIME_API="$API_ADDR" localhost/smlt-worker:$TAG)
    ids+=("$id")
    api_answered || { cat "$tmp/api.log"; podman logs "$id" | tail -20; fail "the worker image did not run the Lambda Runtime API loop"; }
    echo "smlt-worker image: Lambda mode: $(grep -m1 '^POST' "$tmp/api.log" | cut -c1-120)"
    api_stop
else
    echo "SKIPPED PART: $BIN/smlt-worker has no Lambda Runtime API mode yet: the image's Lambda check waits for it"
fi
echo "images: all checks passed"
