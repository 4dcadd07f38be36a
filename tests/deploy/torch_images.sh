#!/bin/bash
# tests/deploy/torch_images.sh BIN_DIR: the torch variants of the images (deploy/build-images.sh
# --only worker-torch,coordinator-torch) build from BIN_DIR's binaries and the build's smlt
# Python package, and run a torch job:
#   - the worker image's Python imports smlt and smlt.torch, and `python3 -m smlt.job describe`
#     builds worker/python/examples/fmnist_cnn.py's model (what the bootstrap's runner needs);
#   - the coordinator image, on the host's loopback (--network host, 127.0.0.1 only), with
#     Fashion-MNIST mounted read-only, takes `smltctl submit --model python:fmnist_cnn.py` from
#     the host: it sets up the shard from the file's model and its local runtime's worker trains
#     one epoch in the container, past 80% test accuracy.
# Every container is removed by its id. Exit 77 (skipped) when podman cannot run here.
set -e
SRC=${SMLT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${1:-${SMLT_BIN_DIR:-$SRC/build/bin}}
TAG="test"
DATA=/usr/share/datasets/fashion-mnist
EX=$SRC/worker/python/examples/fmnist_cnn.py
fail() { echo "FAIL: $*"; exit 1; }

if ! bash "$SRC/deploy/podman-setup.sh" --check; then
    if [ "$(id -u)" = 0 ]; then
        bash "$SRC/deploy/podman-setup.sh" || { echo "SKIP: podman cannot run here (above)"; exit 77; }
    else
        echo "SKIP: podman is not set up, and setting it up needs root (deploy/podman-setup.sh)"
        exit 77
    fi
fi
[ -d "$DATA" ] || fail "$DATA is missing (apt-get install dataset-fashion-mnist)"

start=$(date +%s)
bash "$SRC/deploy/build-images.sh" --bins "$BIN" --tag $TAG --only worker-torch,coordinator-torch
echo "torch images built in $(( $(date +%s) - start )) s"

ids=()
tmp=$(mktemp -d)
cleanup() {
    for id in "${ids[@]}"; do podman rm -f -t 2 "$id" >/dev/null 2>&1 || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

out=$(podman run --rm -v "$EX:/job/fmnist_cnn.py:ro" --entrypoint python3 \
      localhost/smlt-worker-torch:$TAG -m smlt.job describe /job/fmnist_cnn.py /tmp/m.smlt) ||
    fail "describe in the worker image: $out"
echo "$out" | grep -q '"params": 215' || fail "describe printed: $out"
echo "smlt-worker-torch: smlt.job describe: $out"

token=torch-image-test
id=$(podman run -d --network host -v "$DATA:/data:ro" localhost/smlt-coordinator-torch:$TAG \
     --listen 127.0.0.1:0 --port-file /tmp/port --rpc-listen 127.0.0.1:0 \
     --data-dir /var/lib/smlt --admin-token "$token")
ids+=("$id")
port=""
for _ in $(seq 100); do
    port=$(podman exec "$id" cat /tmp/port 2>/dev/null || true)
    [ -n "$port" ] && break
    sleep 0.2
done
[ -n "$port" ] || { podman logs "$id" | tail -20; fail "the coordinator did not start"; }
url=http://127.0.0.1:$port
ctl() { "$BIN/smltctl" --url "$url" --token "$token" "$@"; }
job=$(ctl submit --model "python:$EX" --data /data --workers 1 --shards 1 --epochs 1 --batch 64 \
      --optimizer momentum --lr 0.05 --momentum 0.9) || fail "submit refused"
echo "submitted $job to the coordinator image"
state=""
for _ in $(seq 600); do
    state=$(ctl --json status "$job" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["state"], j.get("best_accuracy") or 0)')
    case $state in succeeded* | failed* | canceled*) break ;; esac
    sleep 1
done
echo "job $job: $state"
case $state in
succeeded*) ;;
*) ctl logs "$job" --tail 30 || true; fail "the torch job in the coordinator image ended: $state" ;;
esac
acc=${state#succeeded }
python3 -c "import sys; sys.exit(0 if float('$acc') >= 0.8 else 1)" ||
    fail "test accuracy $acc after one epoch (want >= 0.8)"
echo "torch images: ok ($(( $(date +%s) - start )) s; one epoch to $acc in the coordinator image)"
