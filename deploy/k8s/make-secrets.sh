#!/bin/bash
# deploy/k8s/make-secrets.sh: creates the three Secrets that deploy/k8s's pods mount, once, in
# one namespace (kubectl create: an existing Secret is left alone and reported):
#
#   smlt-pool-token    key `token`: the PS nodes' pool token (smlt-ps --admin-token-file and
#                      smlt-coordinator --ps-pool-token-file); 32 random bytes, hex
#   smlt-admin-token   key `token`: the coordinator's API admin token (smltctl --token)
#   smlt-tls           type kubernetes.io/tls: tls.crt, tls.key and ca.crt, the certificate
#                      that the nodes and the coordinator present, and the CA they trust
#
# usage: deploy/k8s/make-secrets.sh [-n NAMESPACE] [--dry-run]
#            (--tls-dir DIR | --test-ca DIR [--san NAME]... | --tokens-only)
#   -n NAMESPACE   default smlt (the overlays' namespace)
#   --tls-dir DIR  your certificate: DIR/tls.crt, DIR/tls.key, DIR/ca.crt (as cert-manager
#                  writes them), or server.pem, server.key, ca.pem (as make-test-certs.sh does)
#   --test-ca DIR  makes a test CA and certificate in DIR with tools/make-test-certs.sh, naming
#                  the in-cluster names of the coordinator and of every PS node in NAMESPACE
#                  (smlt-coordinator.NAMESPACE.svc..., *.smlt-ps.NAMESPACE.svc.cluster.local),
#                  plus each --san NAME (the Lambda overlay's NLB names). For trying out only.
#   --tokens-only  the two token Secrets only: smlt-tls comes from elsewhere, such as a
#                  cert-manager Certificate with secretName smlt-tls (it writes the same three
#                  keys; docs/DEPLOY.md shows one)
#   --dry-run      prints the Secrets as YAML instead of creating them (needs no cluster)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ns=smlt tls_dir="" test_ca="" dry=0 tokens_only=0
sans=()
usage() { sed -n '/^# usage/,/^# *--dry-run/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    -n) ns=${2:?}; shift 2 ;;
    --tls-dir) tls_dir=${2:?}; shift 2 ;;
    --test-ca) test_ca=${2:?}; shift 2 ;;
    --san) sans+=("${2:?}"); shift 2 ;;
    --dry-run) dry=1; shift ;;
    --tokens-only) tokens_only=1; shift ;;
    -h | --help) usage ;;
    *) echo "make-secrets: unknown argument $1" >&2; usage ;;
    esac
done
[ -n "$tls_dir$test_ca" ] || [ $tokens_only = 1 ] ||
    { echo "make-secrets: --tls-dir, --test-ca or --tokens-only is needed" >&2; usage; }
command -v kubectl >/dev/null || { echo "make-secrets: kubectl is not installed" >&2; exit 1; }
command -v openssl >/dev/null || { echo "make-secrets: openssl is not installed" >&2; exit 1; }

if [ $tokens_only = 1 ]; then
    :
elif [ -n "$test_ca" ]; then
    svc=smlt-coordinator
    "$here/../../tools/make-test-certs.sh" "$test_ca" "$svc" "$svc.$ns" "$svc.$ns.svc" \
        "$svc.$ns.svc.cluster.local" "smlt-ps.$ns.svc.cluster.local" \
        "*.smlt-ps.$ns.svc.cluster.local" "${sans[@]}" >&2
    tls_dir=$test_ca
fi
if [ $tokens_only = 0 ]; then
    if [ -f "$tls_dir/tls.crt" ]; then
        crt=$tls_dir/tls.crt key=$tls_dir/tls.key ca=$tls_dir/ca.crt
    else
        crt=$tls_dir/server.pem key=$tls_dir/server.key ca=$tls_dir/ca.pem
    fi
    for f in "$crt" "$key" "$ca"; do
        [ -r "$f" ] || { echo "make-secrets: cannot read $f" >&2; exit 1; }
    done
    # The CA must sign the certificate: a mismatch would only show as refused handshakes.
    openssl verify -CAfile "$ca" "$crt" >/dev/null ||
        { echo "make-secrets: $ca does not sign $crt" >&2; exit 1; }
fi

# create NAME ARGS...: kubectl create secret, or its YAML with --dry-run.
create() {
    local name=$1
    shift
    if [ $dry = 1 ]; then
        echo "---"
        kubectl create secret "$@" "$name" -n "$ns" --dry-run=client -o yaml
    elif kubectl get secret "$name" -n "$ns" >/dev/null 2>&1; then
        echo "make-secrets: $ns/$name exists; left as it is (delete it to make a new one)" >&2
    else
        kubectl create secret "$@" "$name" -n "$ns" >&2
    fi
}
create smlt-pool-token generic --from-literal=token="$(openssl rand -hex 32)"
create smlt-admin-token generic --from-literal=token="$(openssl rand -hex 32)"
[ $tokens_only = 1 ] || create smlt-tls generic --type=kubernetes.io/tls \
    --from-file=tls.crt="$crt" --from-file=tls.key="$key" --from-file=ca.crt="$ca"
