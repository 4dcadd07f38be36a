#!/bin/bash
# tests/deploy/cluster.sh BIN_DIR: the multi-node cluster of deploy/podman/cluster.sh, here:
# a coordinator (deploy/k8s/base's Deployment and PersistentVolumeClaim, rendered through
# deploy/podman/k8s-overlay and run by podman kube play), three PS node containers and worker
# instances (deploy/podman/workers.yaml, podman kube play) on a podman network of the test's
# own, TLS on everywhere, with the Secrets of deploy/k8s/make-secrets.sh. The demo trains the
# Fashion-MNIST MLP to 88%; a second run kills the PS node container holding shard 0
# mid-job, and the job must still reach 88% with that shard restored on another node from
# the checkpoints the nodes share. Everything the test started is removed at the end (by
# the ids, YAML files, volume names and pid cluster.sh recorded), also when it fails. Exit 77
# (skipped) only when podman cannot run containers here or kubectl is missing; the images
# come from the deploy.images test (its fixture).
set -euo pipefail
SRC=${SMLT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=$(cd "${1:-$SRC/build/bin}" && pwd)
TAG=${SMLT_IMAGE_TAG:-test}
skip() { echo "SKIP: $*"; exit 77; }
command -v podman >/dev/null || skip "podman is not installed (tools/test.sh installs it)"
command -v kubectl >/dev/null ||
    skip "kubectl is missing: it renders deploy/k8s (tools/test.sh installs kubernetes-client)"
podman image exists "localhost/smlt-ps:$TAG" ||
    { echo "FAIL: localhost/smlt-ps:$TAG is missing (the deploy.images test builds it)"; exit 1; }
[ -d /usr/share/datasets/fashion-mnist ] || skip "Debian's fashion-mnist dataset is missing"
# A network and state of this run's own: a subnet of 10.89.100-199 that no podman network
# uses yet.
NAME=smlt-test-$$
STATE=$(mktemp -d /tmp/smlt-cluster.XXXXXX)
used=$(podman network inspect $(podman network ls -q) 2>/dev/null | grep -o '"subnet": "10\.89\.[0-9]*' |
    sed 's/.*10\.89\.//' || true)
SUBNET=
for o in $(seq 100 199 | shuf); do
    echo "$used" | grep -qx "$o" || { SUBNET=10.89.$o; break; }
done
[ -n "$SUBNET" ] || { echo "FAIL: no free 10.89.x.0/24 subnet"; exit 1; }
C=(bash "$SRC/deploy/podman/cluster.sh")
O=(--name "$NAME" --state "$STATE/cluster" --bins "$BIN")
finish() {
    rc=$?
    [ $rc -ne 0 ] && "${C[@]}" logs "${O[@]}" 2>&1 | tail -n 80
    "${C[@]}" down "${O[@]}" || true
    rm -rf "$STATE"
    exit $rc
}
trap finish EXIT
echo "== up ($SUBNET.0/24)"
"${C[@]}" up "${O[@]}" --tag "$TAG" --subnet "$SUBNET"
echo "== the demo to 88%, TLS on"
"${C[@]}" demo "${O[@]}" --target 0.88 | tail -n 3
echo "== again, with the node of shard 0 killed mid-job"
"${C[@]}" demo "${O[@]}" --target 0.88 --kill-node-at 300 | tail -n 4
echo "cluster: all checks passed"
