#!/bin/bash
# tests/deploy/manifests.sh: deploy/'s YAML files pass yamllint (deploy/yamllint.yml), the
# platform manifests (knative/, lambda/, openfaas/) their schema checks (check_manifests.mjs),
# and every broken copy of them that check_manifests.mjs --negative makes is refused. The
# kustomize files (deploy/k8s/, kustomization.yaml) are linted here and rendered and checked by
# tests/deploy/k8s.sh. Exit 77 (skipped) when yamllint, node or the npm packages are missing:
# tools/test.sh installs them.
set -e
SRC=${SMLT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
NPM=${SMLT_NPM_DIR:-$HOME/.cache/smlt/npm}
skip() { echo "SKIP: $*"; exit 77; }
command -v yamllint >/dev/null || skip "yamllint is missing (apt-get install yamllint; tools/test.sh does)"
command -v node >/dev/null || skip "node is missing (tools/test.sh installs it)"
for p in kubernetes-models @kubernetes-models/knative @aws-cdk/cfnspec yaml; do
    [ -d "$NPM/node_modules/$p" ] || skip "npm $p is not in $NPM (bash tools/deps.sh test installs it)"
done
cd "$SRC"
# yamllint reads every YAML file here; the schemas are the platform manifests'.
files=$(find deploy -name '*.yaml' -o -name '*.yml' | grep -v 'deploy/yamllint.yml' | LC_ALL=C sort)
manifests=$(find deploy/knative deploy/lambda deploy/openfaas \( -name '*.yaml' -o -name '*.yml' \) \
    ! -name kustomization.yaml | LC_ALL=C sort)
[ -n "$manifests" ] || { echo "FAIL: no manifests under deploy/"; exit 1; }
echo "== yamllint"
# shellcheck disable=SC2086  # a list of paths without spaces
yamllint --strict -c deploy/yamllint.yml $files
echo "== schemas"
# shellcheck disable=SC2086
SMLT_NPM_DIR=$NPM node tests/deploy/check_manifests.mjs $manifests
echo "== broken copies must be refused"
# shellcheck disable=SC2086
SMLT_NPM_DIR=$NPM node tests/deploy/check_manifests.mjs --negative $manifests
# yamllint itself must catch what it is there for.
bad=$(mktemp)
trap 'rm -f "$bad"' EXIT
printf 'a: 1\na: 2\nb:   [1,2]\n' >"$bad"
if yamllint -c deploy/yamllint.yml "$bad" >/dev/null; then
    echo "FAIL: yamllint accepted a duplicated key"
    exit 1
fi
echo "manifests: all checks passed"
