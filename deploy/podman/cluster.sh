#!/bin/bash
# deploy/podman/cluster.sh: a small SMLT-C cluster on one machine, each part in a podman
# container with its own network namespace and address on a podman network of its own:
#   - a coordinator (localhost/smlt-coordinator) at .10, with the PS pool --ps-pool;
#   - three PS nodes (localhost/smlt-ps, `smlt-ps --node`) at .11 .. .13, sharing one
#     checkpoint volume (so that a lost node's shards are restored on another);
#   - worker function instances (localhost/smlt-worker, `smlt-worker --http`, two invocations
#     each) at .21 .. (4 by default: twice the demo's ranks, so that the slices of a job being
#     restored fit beside the ones still ending, as a platform's scale-out would make them),
#     started from a Kubernetes Deployment with `podman kube play` (deploy/podman/workers.yaml);
#   - the platform's front door in front of them, a Knative activator stand-in
#     (`smlt-bench gateway`), on the host at the network's gateway address .1.
# TLS is on everywhere (a test CA from tools/make-test-certs.sh naming every address), and
# the pool token and the API's admin token are files the containers mount read-only.
#
#   deploy/podman/cluster.sh up   [--tag TAG] [--name NAME] [--subnet A.B.C] [--workers N]
#                                 [--bins DIR] [--state DIR] [--no-tls]
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
# down: removes the containers (by the ids up recorded), the network and the gateway (by its
# pid). Everything up made is recorded in --state (default ~/.cache/smlt/cluster-NAME).
# Needs podman (deploy/podman-setup.sh installs and configures it) and, on the host, the
# build's smlt-bench and smltctl (--bins, default build/bin).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
cmd=${1:-}
[ -n "$cmd" ] && shift
NAME=smlt-cluster TAG=0.1.0 SUBNET=10.89.77 WORKERS=4 BINS=$SRC/build/bin TLS=1 STATE=
KILL_AT=0 TARGET=0.88 DATASET=/usr/share/datasets/fashion-mnist EPOCHS=30 SLICE_S=6
while [ $# -gt 0 ]; do
    case $1 in
    --name) NAME=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --subnet) SUBNET=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --bins) BINS=$(cd "$2" && pwd); shift 2 ;;
    --state) STATE=$2; shift 2 ;;
    --no-tls) TLS=0; shift ;;
    --kill-node-at) KILL_AT=$2; shift 2 ;;
    --target) TARGET=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --slice-s) SLICE_S=$2; shift 2 ;;
    --dataset) DATASET=$2; shift 2 ;;
    -h | --help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# The API as the host reaches it (the coordinator's address on the network).
api_url() {
    if [ "$(cat "$STATE/tls")" = 1 ]; then echo "https://$COORD_IP:8080"; else echo "http://$COORD_IP:8080"; fi
}
ctl() {
    SMLT_URL=$(api_url) SMLT_TOKEN=$(cat "$STATE/admin-token") SMLT_CACERT=$STATE/certs/ca.pem \
        "$BINS/smltctl" "$@"
}
# One API GET as JSON on stdout.
api_get() {
    curl -sS --max-time 10 --cacert "$STATE/certs/ca.pem" \
        -H "Authorization: Bearer $(cat "$STATE/admin-token")" "$(api_url)$1"
}

cmd_up() {
    command -v podman >/dev/null || die "podman is not installed (deploy/podman-setup.sh)"
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
    echo "$TLS" >"$STATE/tls"
    echo "$SUBNET" >"$STATE/subnet"
    # Tokens and certificates: files the containers (user 10001) read. Test material only.
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/pool-token"
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/admin-token"
    local names=("$COORD_IP") i
    for ((i = 0; i < NODES; i++)); do names+=("$SUBNET.$((11 + i))"); done
    bash "$SRC/tools/make-test-certs.sh" "$STATE/certs" "${names[@]}" >/dev/null
    chmod 0644 "$STATE"/certs/* "$STATE/pool-token" "$STATE/admin-token"
    mkdir -p "$STATE/checkpoints" "$STATE/data"
    chown 10001:10001 "$STATE/checkpoints" "$STATE/data"
    chmod 0755 "$STATE/checkpoints" "$STATE/data" "$STATE/certs"
    if ! podman network exists "$NAME"; then
        podman network create --subnet "$SUBNET.0/24" --gateway "$GW_IP" "$NAME" >/dev/null
        echo "network $NAME" >>"$STATE/ids"
    fi
    local tlsopt=()
    [ "$TLS" = 1 ] && tlsopt=(--tls-cert /etc/smlt/tls/server.pem --tls-key /etc/smlt/tls/server.key
        --tls-ca /etc/smlt/tls/ca.pem)
    local mounts=(-v "$STATE/certs:/etc/smlt/tls:ro" -v "$STATE/pool-token:/etc/smlt/pool/token:ro")
    # The PS nodes.
    local pool="" id
    for ((i = 0; i < NODES; i++)); do
        local ip=$SUBNET.$((11 + i))
        id=$(podman run -d --name "$NAME-ps-$i" --hostname "ps-$i" --network "$NAME" --ip "$ip" \
            "${mounts[@]}" -v "$STATE/checkpoints:/var/lib/smlt/checkpoints" \
            "localhost/smlt-ps:$TAG" --node --listen 0.0.0.0:7000 --memory-mb 512 --name "ps-$i" \
            --admin-token-file /etc/smlt/pool/token --checkpoint-dir /var/lib/smlt/checkpoints \
            --metrics-listen 0.0.0.0:9100 "${tlsopt[@]}")
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
    id=$(podman run -d --name "$NAME-coordinator" --hostname coordinator --network "$NAME" \
        --ip "$COORD_IP" "${mounts[@]}" -v "$STATE/admin-token:/etc/smlt/admin/token:ro" \
        -v "$STATE/data:/var/lib/smlt" -v "$(dirname "$DATASET"):$(dirname "$DATASET"):ro" \
        "localhost/smlt-coordinator:$TAG" --listen 0.0.0.0:8080 --rpc-listen 0.0.0.0:7070 \
        --rpc-advertise "$COORD_IP:7070" --data-dir /var/lib/smlt \
        --admin-token-file /etc/smlt/admin/token --platform knative \
        --function-url "http://$GW_IP:$(cat "$STATE/gateway.port")/" \
        --ps-pool "$pool" --ps-pool-token-file /etc/smlt/pool/token "${tlsopt[@]}")
    echo "container $id coordinator $COORD_IP" >>"$STATE/ids"
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
    say "up: coordinator $(api_url), $NODES PS nodes ($pool), $WORKERS worker instances ($wips)" \
        "behind the gateway $GW_IP:$(cat "$STATE/gateway.port")"
    say "try: SMLT_URL=$(api_url) SMLT_TOKEN=\$(cat $STATE/admin-token)" \
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
        [ "$kind" = container ] || continue
        echo "---- $name ($id) ----"
        podman logs --tail 40 "$id" 2>&1 || true
    done <"$STATE/ids"
    echo "---- gateway ----"
    tail -n 20 "$STATE/gateway.log" 2>/dev/null || true
}

cmd_down() {
    [ -e "$STATE/ids" ] || { say "no cluster is up (state in $STATE)"; return 0; }
    local kind a
    # Containers and pods first (by id), then the gateway (by pid), then the network.
    while read -r kind a _; do
        case $kind in
        container) podman rm -f -t 2 "$a" >/dev/null 2>&1 || true ;;
        kube) podman kube down "$a" >/dev/null 2>&1 || true ;;
        pid) kill "$a" 2>/dev/null || true ;;
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
*) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
