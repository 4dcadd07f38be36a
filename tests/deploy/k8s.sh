#!/bin/bash
# tests/deploy/k8s.sh: deploy/k8s's kustomize overlays (knative, openfaas, lambda):
#   - each renders with `kubectl kustomize`, with every kubectl given (SMLT_KUBECTL, a list;
#     default the one on PATH), and all of them render the same objects;
#   - the sources and each rendered overlay pass yamllint --strict (deploy/yamllint.yml);
#   - every rendered object passes its schema (npm kubernetes-models, @kubernetes-models/knative)
#     and each overlay the rules its objects keep together (check_manifests.mjs --cluster: the
#     StatefulSet, headless Service, PodDisruptionBudget and checkpoint volumes, the
#     coordinator's Deployment, Service and data volume, NetworkPolicies, ServiceAccounts and
#     Role, --memory-mb within the memory limit, the Lambda overlay's load balancers), with the
#     Secrets that deploy/k8s/make-secrets.sh makes, whose test certificate names every node;
#   - deploy/podman/k8s-overlay (the coordinator deploy/podman/cluster.sh plays) renders the
#     same with every kubectl, passes yamllint, and leaves out what podman kube play cannot run;
#   - broken overlays are refused: rendered ones changed in known ways (--cluster-negative,
#     --negative), and broken copies of the sources (a JSON patch to a rule that is not there,
#     --memory-mb past the limit, the NetworkPolicies left out, the coordinator's volumes
#     renamed under the podman overlay).
# Exit 77 (skipped) when kubectl, yamllint, openssl, node or the npm packages are missing:
# tools/test.sh installs them (Debian's kubernetes-client, kubectl 1.20 with kustomize v2, where
# no kubectl is installed).
set -eo pipefail
SRC=${SMLT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
NPM=${SMLT_NPM_DIR:-$HOME/.cache/smlt/npm}
export SMLT_NPM_DIR=$NPM
skip() { echo "SKIP: $*"; exit 77; }
command -v yamllint >/dev/null || skip "yamllint is missing (apt-get install yamllint; tools/test.sh does)"
command -v openssl >/dev/null || skip "openssl is missing (tools/test.sh installs it)"
command -v node >/dev/null || skip "node is missing (tools/test.sh installs it)"
for p in kubernetes-models @kubernetes-models/knative yaml; do
    [ -d "$NPM/node_modules/$p" ] || skip "npm $p is not in $NPM (bash tools/deps.sh test installs it)"
done
kubectls=()
for k in ${SMLT_KUBECTL:-kubectl}; do
    if command -v "$k" >/dev/null && "$k" kustomize --help >/dev/null 2>&1; then
        kubectls+=("$(command -v "$k")")
    else
        echo "note: $k cannot run kubectl kustomize; not used"
    fi
done
[ ${#kubectls[@]} -gt 0 ] ||
    skip "no kubectl that runs kustomize (apt-get install kubernetes-client; tools/test.sh does)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$SRC"
check() { node tests/deploy/check_manifests.mjs "$@"; }

# render KUBECTL DIR OUT: the overlay's objects into OUT. Kustomize v5 says that the v2 fields
# the overlays keep to are deprecated (deploy/k8s/base/kustomization.yaml says why): those
# notes are dropped, anything else it says is shown.
render() {
    if ! "$1" kustomize "$2" >"$3" 2>"$3.err"; then
        cat "$3.err" >&2
        return 1
    fi
    grep -v "^# Warning: '\(bases\|patchesStrategicMerge\|patchesJson6902\)' is deprecated" \
        "$3.err" >&2 || true
}

for k in "${kubectls[@]}"; do
    echo "kubectl: $k ($("$k" version --client 2>/dev/null | head -1))"
done

echo "== yamllint: the sources"
yamllint --strict -c deploy/yamllint.yml deploy/k8s deploy/knative

echo "== the Secrets (make-secrets.sh --dry-run with a test CA)"
# make-secrets.sh runs `kubectl`: the first one given.
PATH="$(dirname "${kubectls[0]}"):$PATH" deploy/k8s/make-secrets.sh -n smlt --test-ca "$tmp/certs" \
    --san ps-0.smlt.example --san ps-1.smlt.example --san ps-2.smlt.example \
    --san rpc.smlt.example --dry-run >"$tmp/secrets.yaml" 2>"$tmp/secrets.err" ||
    { cat "$tmp/secrets.err"; exit 1; }
# The names the workers and the coordinator dial, as the overlays give them (namespace smlt).
for n in smlt-ps-0.smlt-ps.smlt.svc.cluster.local smlt-ps-2.smlt-ps.smlt.svc.cluster.local \
    smlt-coordinator.smlt.svc.cluster.local ps-1.smlt.example rpc.smlt.example; do
    openssl x509 -in "$tmp/certs/server.pem" -noout -checkhost "$n" | grep -q "does match" ||
        { echo "FAIL: the test certificate does not name $n"; exit 1; }
done
if openssl x509 -in "$tmp/certs/server.pem" -noout -checkhost smlt-ps-0.other.svc.cluster.local |
    grep -q "does match"; then
    echo "FAIL: the test certificate names another namespace's nodes"
    exit 1
fi
echo "the test certificate names every node, the coordinator and the NLB names"

for dir in deploy/k8s/overlays/*/; do
    o=$(basename "$dir")
    echo "== overlay $o"
    i=0
    for k in "${kubectls[@]}"; do
        render "$k" "$dir" "$tmp/$o.$i.yaml"
        [ $i = 0 ] || check --same "$tmp/$o.0.yaml" "$tmp/$o.$i.yaml"
        i=$((i + 1))
    done
    yamllint --strict -c deploy/yamllint.yml "$tmp/$o.0.yaml"
    check --cluster "$o" "$tmp/$o.0.yaml" --secrets "$tmp/secrets.yaml"
    check --cluster-negative "$o" "$tmp/$o.0.yaml" --secrets "$tmp/secrets.yaml" | tail -1
    check --negative "$tmp/$o.0.yaml" | tail -1
done

echo "== deploy/podman/k8s-overlay (the coordinator that deploy/podman/cluster.sh plays)"
# The same objects with every kubectl, lint-clean, and in its Deployment none of what podman
# kube play cannot run (the overlay's coordinator.yaml says why for each): no probes, ports,
# downward-API env or secret volumes, and the base's command as it is.
i=0
for k in "${kubectls[@]}"; do
    render "$k" deploy/podman/k8s-overlay "$tmp/podman.$i.yaml"
    [ $i = 0 ] || check --same "$tmp/podman.0.yaml" "$tmp/podman.$i.yaml"
    i=$((i + 1))
done
yamllint --strict -c deploy/yamllint.yml "$tmp/podman.0.yaml"
sed -n '/^kind: Deployment/,/^---/p' "$tmp/podman.0.yaml" >"$tmp/podman-coordinator.yaml"
grep -q '^  name: smlt-coordinator$' "$tmp/podman-coordinator.yaml" ||
    { echo "FAIL: the podman overlay renders no coordinator Deployment"; exit 1; }
for bad in livenessProbe readinessProbe containerPort fieldRef 'secret:' 'dns:'; do
    if grep -q "$bad" "$tmp/podman-coordinator.yaml"; then
        echo "FAIL: the podman overlay's coordinator still has $bad, which podman kube play cannot run"
        exit 1
    fi
done
for want in '- /usr/local/bin/smlt-coordinator' '- /etc/smlt/tls/tls.crt' 'claimName: smlt-coordinator-data' \
    'readOnlyRootFilesystem: true' '@POOL@' '@SECRETS@/smlt-tls'; do
    grep -qF -- "$want" "$tmp/podman-coordinator.yaml" ||
        { echo "FAIL: the podman overlay's coordinator has no $want"; exit 1; }
done
echo "the podman overlay renders the base's coordinator with what podman cannot run patched out"

echo "== broken copies of the sources must be refused"
# A copy with deploy/'s layout (the Knative overlay reads ../../../knative).
fresh() {
    rm -rf "$tmp/src"
    mkdir -p "$tmp/src/deploy"
    cp -r deploy/k8s deploy/knative deploy/podman "$tmp/src/deploy/"
}
refused() { echo "refused as it should be: $*"; }
fresh
sed -i 's|/spec/ingress/1/from/-|/spec/ingress/7/from/-|' \
    "$tmp/src/deploy/k8s/overlays/openfaas/networkpolicy-coordinator.yaml"
if "${kubectls[0]}" kustomize "$tmp/src/deploy/k8s/overlays/openfaas" >/dev/null 2>&1; then
    echo "FAIL: a JSON patch to a NetworkPolicy rule that is not there rendered"
    exit 1
fi
refused "a JSON patch to a NetworkPolicy rule that is not there"
fresh
sed -i '/- --memory-mb/{n;s/"768"/"1000"/}' "$tmp/src/deploy/k8s/base/ps.yaml"
grep -q '"1000"' "$tmp/src/deploy/k8s/base/ps.yaml" || { echo "FAIL: could not break ps.yaml"; exit 1; }
render "${kubectls[0]}" "$tmp/src/deploy/k8s/overlays/knative" "$tmp/broken.yaml"
if check --cluster knative "$tmp/broken.yaml" 2>"$tmp/why" >/dev/null ||
    ! grep -q "more than 3/4" "$tmp/why"; then
    echo "FAIL: --memory-mb 1000 under a 1Gi limit was not refused"
    exit 1
fi
refused "--memory-mb 1000 under a 1Gi limit: $(grep -m1 "3/4" "$tmp/why")"
fresh
sed -i '/- networkpolicy.yaml/d' "$tmp/src/deploy/k8s/base/kustomization.yaml"
render "${kubectls[0]}" "$tmp/src/deploy/k8s/overlays/knative" "$tmp/broken.yaml"
if check --cluster knative "$tmp/broken.yaml" 2>"$tmp/why" >/dev/null ||
    ! grep -q "no NetworkPolicy selects the PS pods" "$tmp/why"; then
    echo "FAIL: the knative overlay without NetworkPolicies was not refused"
    exit 1
fi
refused "the NetworkPolicies left out: $(grep -m1 "NetworkPolicy" "$tmp/why")"
fresh
sed -i 's/- name: admin-token$/- name: admin-secret/' "$tmp/src/deploy/k8s/base/coordinator.yaml"
grep -q 'admin-secret' "$tmp/src/deploy/k8s/base/coordinator.yaml" ||
    { echo "FAIL: could not break coordinator.yaml"; exit 1; }
if "${kubectls[0]}" kustomize "$tmp/src/deploy/podman/k8s-overlay" >/dev/null 2>&1; then
    echo "FAIL: the podman overlay rendered over a base whose volumes are not where it tests them"
    exit 1
fi
refused "the podman overlay over a base with the coordinator's volumes renamed"
echo "k8s: all checks passed"
