#!/bin/bash
# deploy/podman/cluster.sh: a small SMLT-C cluster on one machine, each part in a podman
# container with its own network namespace and address on a podman network of its own:
#   - a coordinator at .10, with the PS pool --ps-pool: the coordinator Deployment and its
#     data PersistentVolumeClaim of deploy/k8s/base (the YAML a Kubernetes cluster takes),
#     rendered through the overlay deploy/podman/k8s-overlay (which patches only what podman
#     cannot do: the pool's addresses instead of cluster DNS, no probes or host ports, the
#     Secrets as files) and run by `podman kube play`;
#   - three PS nodes (localhost/smlt-ps, `smlt-ps --node`) at .11 .. .13, sharing one
#     checkpoint volume (so that a lost node's shards are restored on another), with
#     `podman run` (podman does not play the base's StatefulSet);
#   - worker function instances (localhost/smlt-worker, `smlt-worker --http`, two invocations
#     each) at .21 .. (4 by default: twice the demo's ranks, so that the slices of a job being
#     restored fit beside the ones still ending, as a platform's scale-out would make them),
#     started from a Kubernetes Deployment with `podman kube play` (deploy/podman/workers.yaml);
#   - the platform's front door in front of them, a Knative activator stand-in
#     (`smlt-bench gateway`), on the host at the network's gateway address .1.
# TLS is on everywhere (a test CA from tools/make-test-certs.sh naming every address). The
# Secrets are deploy/k8s/make-secrets.sh's (--dry-run: the pool token, the API's admin token,
# the certificate), written to files that the containers mount read-only.
#
#   deploy/podman/cluster.sh up   [--tag TAG] [--name NAME] [--subnet A.B.C] [--workers N]
#                                 [--bins DIR] [--state DIR]
#   deploy/podman/cluster.sh demo [--kill-node-at STEP] [--target ACC] [--dataset DIR] ...
#   deploy/podman/cluster.sh status | logs | down   [--name NAME] [--state DIR]
#
# up: builds nothing (deploy/build-images.sh makes the images; --tag picks them, default
# 0.1.0); creates the network NAME (default smlt-cluster, subnet 10.89.77.0/24) and starts the
# containers; waits until the coordinator sees its three nodes up. demo: trains the
# Fashion-MNIST MLP to --target (default 0.88) on 2 shards and 4 workers through the cluster
# and prints the result; with --kill-node-at STEP it kills the node container holding shard 0
# once the job passes STEP, and the job must still succeed with that shard on another node.
# Slices are 6 s (--slice-s).
# down: removes the pods and containers (by the ids and YAML files up recorded), the
# coordinator's data volume, the network and the gateway (by its pid). Everything up made is
# recorded in --state (default ~/.cache/smlt/cluster-NAME).
# Needs podman (deploy/podman-setup.sh installs and configures it), kubectl (its kustomize and
# `create secret --dry-run`; no cluster) and, on the host, the build's smlt-bench and smltctl
# (--bins, default build/bin).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
cmd=${1:-}
[ -n "$cmd" ] && shift
NAME=smlt-cluster TAG=0.1.0 SUBNET=10.89.77 WORKERS=4 BINS=$SRC/build/bin STATE=
KILL_AT=0 TARGET=0.88 DATASET=/usr/share/datasets/fashion-mnist EPOCHS=30 SLICE_S=6
while [ $# -gt 0 ]; do
    case $1 in
    --name) NAME=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --subnet) SUBNET=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --bins) BINS=$(cd "$2" && pwd); shift 2 ;;
    --state) STATE=$2; shift 2 ;;
    --kill-node-at) KILL_AT=$2; shift 2 ;;
    --target) TARGET=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --slice-s) SLICE_S=$2; shift 2 ;;
    --dataset) DATASET=$2; shift 2 ;;
    -h | --help) sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
STATE=${STATE:-$HOME/.cache/smlt/cluster-$NAME}
# The other commands work on the cluster up made: its subnet is in the state.
[ "$cmd" != up ] && [ -s "$STATE/subnet" ] && SUBNET=$(cat "$STATE/subnet")
COORD_IP=$SUBNET.10
GW_IP=$SUBNET.1
NODES=3
say() { echo "cluster.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# The API as the host reaches it (the coordinator's address on the network), with the admin
# token of make-secrets.sh's smlt-admin-token.
ADMIN_TOKEN=$STATE/secrets/smlt-admin-token/token
api_url() { echo "https://$COORD_IP:8080"; }
ctl() {
    SMLT_URL=$(api_url) SMLT_TOKEN=$(cat "$ADMIN_TOKEN") SMLT_CACERT=$STATE/certs/ca.pem \
        "$BINS/smltctl" "$@"
}
# One API GET as JSON on stdout.
api_get() {
    curl -sS --max-time 10 --cacert "$STATE/certs/ca.pem" \
        -H "Authorization: Bearer $(cat "$ADMIN_TOKEN")" "$(api_url)$1"
}

# secret_files SECRETS_YAML DIR: what the kubelet does for a pod's secret volumes, for the
# Secrets that `make-secrets.sh --dry-run` prints: each key of each Secret becomes the file
# DIR/SECRET/KEY with the decoded value, mode 0440 and group 10001 (the pods' defaultMode 288
# and fsGroup). Only that output's layout is read (`kubectl create secret -o yaml`: a `data:`
# map of one-line base64 values, and `metadata.name`), so no YAML library is needed.
secret_files() {
    python3 - "$1" "$2" <<'EOF'
import base64, os, sys
src, out = sys.argv[1], sys.argv[2]
for doc in open(src).read().split("\n---\n"):
    name, data, section = None, {}, None
    for line in doc.splitlines():
        if line and not line.startswith(" "):
            section = line.rstrip(":")
        elif section == "data" and line.startswith("  ") and ": " in line:
            k, v = line.strip().split(": ", 1)
            data[k] = base64.b64decode(v)
        elif section == "metadata" and line.startswith("  name: "):
            name = line.split(": ", 1)[1].strip()
    if not name:
        continue
    if not data:
        sys.exit("cluster.sh: Secret %s has no data" % name)
    os.makedirs(os.path.join(out, name), mode=0o755)
    for k, v in data.items():
        path = os.path.join(out, name, k)
        with open(path, "wb") as f:
            f.write(v)
        os.chown(path, 0, 10001)
        os.chmod(path, 0o440)
EOF
}

# kube_objects FILE KIND...: the documents of a `kubectl kustomize` render whose kind is one
# of KIND (the ones podman kube play runs), on stdout.
kube_objects() {
    python3 - "$@" <<'EOF'
import sys
docs = open(sys.argv[1]).read().split("\n---\n")
keep = [d.strip("\n") for d in docs
        if any(l == "kind: " + k for l in d.splitlines() for k in sys.argv[2:])]
print("\n---\n".join(keep))
EOF
}

# The coordinator: deploy/k8s/base's Deployment and PersistentVolumeClaim, through
# deploy/podman/k8s-overlay, as a kustomization of this cluster's own in $STATE/kube that
# prefixes the names with the cluster's (pods and volumes are the host's: two clusters must
# not share them) and picks the image tag. $1 is the pool and $2 the function URL. Played at
# the coordinator's address on the network.
play_coordinator() {
    local k=$STATE/kube yml=$STATE/coordinator.yaml rel
    mkdir -p "$k"
    rel=$(realpath --relative-to="$k" "$SRC/deploy/podman/k8s-overlay")
    cat >"$k/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
bases:
  - $rel
namePrefix: $NAME-
images:
  - name: localhost/smlt-coordinator
    newTag: "$TAG"
EOF
    # Kustomize v5 says that the v2 fields the overlays keep to are deprecated: those notes
    # are dropped (as tests/deploy/k8s.sh does), anything else it says is shown.
    kubectl kustomize "$k" >"$k/rendered.yaml" 2>"$k/err" ||
        { cat "$k/err" >&2; die "kubectl kustomize $k failed"; }
    grep -v "^# Warning: '\(bases\|patchesStrategicMerge\|patchesJson6902\)' is deprecated" \
        "$k/err" >&2 || true
    kube_objects "$k/rendered.yaml" Deployment PersistentVolumeClaim |
        sed -e "s|@POOL@|$1|" -e "s|@COORD_IP@|$COORD_IP|" -e "s|@FUNCTION_URL@|$2|" \
            -e "s|@DATASETS@|$(dirname "$DATASET")|" -e "s|@SECRETS@|$STATE/secrets|" >"$yml"
    # podman 4.3 makes the pod's emptyDir `tmp` a volume named `tmp`, host-wide (removed with
    # the pod): this cluster's gets a name of its own, so that two clusters do not share one.
    sed -i "s|^\( *-\{0,1\} *\)name: tmp$|\1name: $NAME-tmp|" "$yml"
    [ "$(grep -c "name: $NAME-tmp$" "$yml")" = 2 ] || die "$yml: the tmp volume was not renamed"
    if grep -q '@[A-Z_]*@' "$yml"; then
        die "$yml: a placeholder is left: $(grep -m1 '@[A-Z_]*@' "$yml")"
    fi
    if ! grep -q "^kind: Deployment" "$yml" || ! grep -q "^kind: PersistentVolumeClaim" "$yml"; then
        die "$k/rendered.yaml has no coordinator Deployment or PersistentVolumeClaim"
    fi
    # Recorded before it runs, so that down removes what a failed play left.
    echo "kube $yml" >>"$STATE/ids"
    echo "volume $NAME-smlt-coordinator-data" >>"$STATE/ids"
    podman kube play --network "$NAME" --ip "$COORD_IP" "$yml" >/dev/null
    local id
    id=$(podman ps -a --filter "pod=$NAME-smlt-coordinator-pod-0" \
        --filter "name=$NAME-smlt-coordinator-pod-0-coordinator" --format '{{.ID}}')
    [ -n "$id" ] || die "podman kube play started no coordinator container"
    echo "podctr $id coordinator $COORD_IP" >>"$STATE/ids"
}

cmd_up() {
    command -v podman >/dev/null || die "podman is not installed (deploy/podman-setup.sh)"
    command -v kubectl >/dev/null ||
        die "kubectl is not installed (apt-get install kubernetes-client): it renders deploy/k8s"
    for x in smltctl smlt-bench; do
        [ -x "$BINS/$x" ] || die "$BINS/$x is missing (build first, or give --bins)"
    done
    for i in ps worker coordinator; do
        podman image exists "localhost/smlt-$i:$TAG" ||
            die "image localhost/smlt-$i:$TAG is missing (deploy/build-images.sh --tag $TAG)"
    done
    [ -e "$STATE/ids" ] && die "a cluster is up already (state in $STATE): down first"
    mkdir -p "$STATE"
    : >"$STATE/ids"
    echo "$SUBNET" >"$STATE/subnet"
    # The certificate (test material only) names every address, and make-secrets.sh makes the
    # Secrets of deploy/k8s from it: smlt-tls (tls.crt, tls.key, ca.crt), smlt-pool-token and
    # smlt-admin-token (random tokens, key `token`), as files the containers (user 10001) read.
    local names=("$COORD_IP") i
    for ((i = 0; i < NODES; i++)); do names+=("$SUBNET.$((11 + i))"); done
    bash "$SRC/tools/make-test-certs.sh" "$STATE/certs" "${names[@]}" >/dev/null
    chmod 0644 "$STATE"/certs/*
    bash "$SRC/deploy/k8s/make-secrets.sh" --tls-dir "$STATE/certs" --dry-run \
        >"$STATE/secrets.yaml" 2>"$STATE/secrets.err" || { cat "$STATE/secrets.err" >&2; exit 1; }
    secret_files "$STATE/secrets.yaml" "$STATE/secrets"
    mkdir -p "$STATE/checkpoints"
    chown 10001:10001 "$STATE/checkpoints"
    chmod 0755 "$STATE/checkpoints" "$STATE/certs" "$STATE/secrets"
    if ! podman network exists "$NAME"; then
        podman network create --subnet "$SUBNET.0/24" --gateway "$GW_IP" "$NAME" >/dev/null
        echo "network $NAME" >>"$STATE/ids"
    fi
    # The PS nodes: the Secrets where deploy/k8s/base/ps.yaml mounts them.
    local pool="" id
    for ((i = 0; i < NODES; i++)); do
        local ip=$SUBNET.$((11 + i))
        id=$(podman run -d --name "$NAME-ps-$i" --hostname "ps-$i" --network "$NAME" --ip "$ip" \
            -v "$STATE/secrets/smlt-tls:/etc/smlt/tls:ro" \
            -v "$STATE/secrets/smlt-pool-token:/etc/smlt/pool:ro" \
            -v "$STATE/checkpoints:/var/lib/smlt/checkpoints" \
            "localhost/smlt-ps:$TAG" --node --listen 0.0.0.0:7000 --memory-mb 512 --name "ps-$i" \
            --admin-token-file /etc/smlt/pool/token --checkpoint-dir /var/lib/smlt/checkpoints \
            --metrics-listen 0.0.0.0:9100 --tls-cert /etc/smlt/tls/tls.crt \
            --tls-key /etc/smlt/tls/tls.key --tls-ca /etc/smlt/tls/ca.crt)
        echo "container $id ps-$i $ip" >>"$STATE/ids"
        pool+="${pool:+,}$ip:7000"
    done
    # The worker instances: a Deployment, run by podman kube play (the same YAML a cluster
    # would take, with this network's addresses filled in).
    local wips="" winst=""
    for ((i = 0; i < WORKERS; i++)); do
        wips+="${wips:+,}$SUBNET.$((21 + i))"
        winst+="${winst:+,}$SUBNET.$((21 + i)):8080"
    done
    sed -e "s|localhost/smlt-worker:0.1.0|localhost/smlt-worker:$TAG|" \
        -e "s|@DATASETS@|$(dirname "$DATASET")|" \
        "$SRC/deploy/podman/workers.yaml" >"$STATE/workers.yaml"
    for ((i = 0; i < WORKERS; i++)); do
        local yml=$STATE/worker-$i.yaml
        sed -e "s|name: smlt-worker$|name: $NAME-worker-$i|" "$STATE/workers.yaml" >"$yml"
        podman kube play --network "$NAME" --ip "$SUBNET.$((21 + i))" "$yml" >/dev/null
        echo "kube $yml" >>"$STATE/ids"
    done
    # The front door, on the host at the network's gateway address.
    "$BINS/smlt-bench" gateway --listen "$GW_IP:0" --instances "$winst" --slots 2 \
        --port-file "$STATE/gateway.port" </dev/null >"$STATE/gateway.log" 2>&1 &
    echo "pid $!" >>"$STATE/ids"
    for _ in $(seq 50); do [ -s "$STATE/gateway.port" ] && break; sleep 0.1; done
    [ -s "$STATE/gateway.port" ] || die "the gateway did not start (see $STATE/gateway.log)"
    # The coordinator.
    play_coordinator "$pool" "http://$GW_IP:$(cat "$STATE/gateway.port")/"
    # Ready: the API answers and sees every node up.
    local up=0
    for _ in $(seq 150); do
        up=$(api_get /api/nodes 2>/dev/null | python3 -c \
            'import json,sys; print(sum(n["state"]=="up" for n in json.load(sys.stdin)["nodes"]))' \
            2>/dev/null || echo 0)
        [ "$up" = "$NODES" ] && break
        sleep 0.2
    done
    [ "$up" = "$NODES" ] || { cmd_logs; die "the coordinator does not see $NODES nodes up"; }
    say "up: coordinator $(api_url) (pod $NAME-smlt-coordinator-pod-0), $NODES PS nodes ($pool)," \
        "$WORKERS worker instances ($wips) behind the gateway $GW_IP:$(cat "$STATE/gateway.port")"
    say "try: SMLT_URL=$(api_url) SMLT_TOKEN=\$(cat $ADMIN_TOKEN)" \
        "SMLT_CACERT=$STATE/certs/ca.pem $BINS/smltctl status"
}

# The container id of node k (ps-k).
node_id() {
    awk -v n="ps-$1" '$1 == "container" && $3 == n { print $2 }' "$STATE/ids"
}

cmd_demo() {
    [ -e "$STATE/ids" ] || die "no cluster is up (state in $STATE)"
    local spec
    spec=$(printf '{"name": "cluster-demo", "model": "mlp:784-256-128-10", "dataset": "%s",
        "workers": 4, "shards": 2, "max_epochs": %s, "target_accuracy": %s,
        "optimizer": {"kind": "momentum", "lr": 0.05},
        "checkpoint": {"every_steps": 50, "keep": 3},
        "platform": {"kind": "knative", "time_limit_s": %s}}' \
        "$DATASET" "$EPOCHS" "$TARGET" "$SLICE_S")
    local id
    id=$(echo "$spec" | ctl submit -)
    say "submitted $id"
    if [ "$KILL_AT" -gt 0 ]; then
        local step=0 node=""
        for _ in $(seq 1200); do
            local view
            view=$(api_get "/api/jobs/$id")
            step=$(echo "$view" | python3 -c 'import json,sys; print(int(json.load(sys.stdin).get("step", 0)))')
            node=$(echo "$view" | python3 -c \
                'import json,sys; n=json.load(sys.stdin).get("ps_nodes") or [{}]; print(n[0].get("node",""))')
            [ "$step" -ge "$KILL_AT" ] && [ -n "$node" ] && break
            sleep 0.2
        done
        [ "$step" -ge "$KILL_AT" ] || die "$id did not reach step $KILL_AT"
        local host=${node%:*} cid
        local k=$((${host##*.} - 11))
        cid=$(node_id "$k")
        say "step $step: killing node ps-$k ($node, container ${cid:0:12}), which holds shard 0"
        podman kill "$cid" >/dev/null
        echo "$node" >"$STATE/killed"
    fi
    local rc=0
    ctl watch "$id" >&2 || rc=$?
    api_get "/api/jobs/$id" >"$STATE/last-job.json"
    python3 - "$STATE/last-job.json" "$TARGET" "${node:-}" <<'EOF' || rc=1
import json, sys
j = json.load(open(sys.argv[1]))
target, killed = float(sys.argv[2]), sys.argv[3]
nodes = [n.get("node") for n in j.get("ps_nodes", [])]
print("job %s: %s, test accuracy %.4f, %d steps, shards on %s" % (
    j["id"], j["state"], j.get("test_accuracy") or 0, j.get("step", 0), ", ".join(nodes)))
for e in j.get("events", []):
    if e.get("kind") in ("fault", "failover"):
        print("  %s: %s" % (e["kind"], e["message"]))
ok = j["state"] == "succeeded" and (j.get("test_accuracy") or 0) >= target
ok = ok and len(set(nodes)) == len(nodes)  # spread over nodes
if killed:
    ok = ok and killed not in nodes and any(e.get("kind") == "fault" for e in j.get("events", []))
sys.exit(0 if ok else 1)
EOF
    return $rc
}

cmd_status() {
    [ -e "$STATE/ids" ] || die "no cluster is up (state in $STATE)"
    podman ps -a --filter "network=$NAME" --format '{{.ID}} {{.Names}} {{.Status}}'
    ctl status
}

cmd_logs() {
    [ -e "$STATE/ids" ] || return 0
    local id name
    while read -r kind id name _; do
        [ "$kind" = container ] || [ "$kind" = podctr ] || continue
        echo "---- $name ($id) ----"
        podman logs --tail 40 "$id" 2>&1 || true
    done <"$STATE/ids"
    echo "---- gateway ----"
    tail -n 20 "$STATE/gateway.log" 2>/dev/null || true
}

cmd_down() {
    [ -e "$STATE/ids" ] || { say "no cluster is up (state in $STATE)"; return 0; }
    local kind a
    # Containers and pods first (by id), then the gateway (by pid), then the volumes and the
    # network. A podctr is in a kube pod: `kube down` removes it.
    while read -r kind a _; do
        case $kind in
        container) podman rm -f -t 2 "$a" >/dev/null 2>&1 || true ;;
        kube) podman kube down "$a" >/dev/null 2>&1 || true ;;
        pid) kill "$a" 2>/dev/null || true ;;
        esac
    done <"$STATE/ids"
    while read -r kind a _; do
        case $kind in
        volume) podman volume rm -f "$a" >/dev/null 2>&1 || true ;;
        esac
    done <"$STATE/ids"
    while read -r kind a _; do
        [ "$kind" = network ] && { podman network rm -f "$a" >/dev/null 2>&1 || true; }
    done <"$STATE/ids"
    rm -rf "$STATE"
    say "down"
}

case $cmd in
up) cmd_up ;;
demo) cmd_demo ;;
status) cmd_status ;;
logs) cmd_logs ;;
down) cmd_down ;;
*) sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
