#!/bin/bash
# shellcheck disable=SC2034  # the package lists are used by the scripts that source this
# tools/deps.sh: installs the Debian packages SMLT-C needs that are missing (sourced by
# tools/quickstart.sh and tools/test.sh). Runs apt-get update at most once, only when
# something is missing. Needs root (or sudo) on Debian 12.

# Build and library dependencies (see README: Dependencies).
SMLT_BUILD_PKGS="gcc make cmake pkg-config libevent-dev libprotobuf-c-dev protobuf-c-compiler python3-dev
  libopenblas-dev liblz4-dev check zlib1g-dev libcurl4-openssl-dev libjansson-dev libssl-dev"
# What the tests and benchmarks run against: Redis (the store peer), Fashion-MNIST, promtool
# and the Prometheus server (Debian prometheus), headless Chromium for the dashboard's browser
# test (driven by npm playwright-core: smlt_install_npm_test below), botocore (Debian's signer,
# against which the lambda backend's SigV4 is checked), openssl (test certificates and an HTTPS
# server).
SMLT_TEST_PKGS="redis-server dataset-fashion-mnist prometheus chromium python3-botocore openssl"
# The smlt Python package's tests (tests/python/): torch and numpy buffers, and a venv into which
# `pip install worker/python` installs offline.
SMLT_TEST_PKGS="$SMLT_TEST_PKGS python3-torch python3-numpy python3-venv python3-pip python3-setuptools"
# Containers and function packages (deploy/): podman with runc (deploy/podman-setup.sh writes its
# configuration), mmdebstrap for the local Debian base image, zip for the Lambda package,
# yamllint for the manifests (their schemas are checked with npm kubernetes-models below).
SMLT_CONTAINER_PKGS="podman buildah runc fuse-overlayfs slirp4netns uidmap
  containernetworking-plugins catatonit mmdebstrap zip unzip"
SMLT_TEST_PKGS="$SMLT_TEST_PKGS $SMLT_CONTAINER_PKGS yamllint"
# kubectl renders deploy/k8s's kustomize overlays (tests/deploy/k8s.sh): Debian's
# kubernetes-client (kubectl 1.20, kustomize v2), unless a kubectl is installed already. Another
# package then owns /usr/bin/kubectl (a vendor's kubectl, kustomize v5), and installing Debian's
# over it would fail; the overlays render the same with both.
command -v kubectl >/dev/null || SMLT_TEST_PKGS="$SMLT_TEST_PKGS kubernetes-client"
# The dashboard's charts: Chart.js, served by the coordinator from this package.
SMLT_BUILD_PKGS="$SMLT_BUILD_PKGS libjs-chart.js"
# Test-only npm packages, kept outside the build tree (slow to fetch again).
SMLT_NPM_DIR=${SMLT_NPM_DIR:-$HOME/.cache/smlt/npm}
# playwright-core drives Chromium for the dashboard's test; kubernetes-models,
# @kubernetes-models/knative and the CloudFormation specification of @aws-cdk/cfnspec check
# deploy/'s manifests (tests/deploy/check_manifests.mjs), read by yaml; @vercel/fun runs the
# Lambda bootstrap through its Runtime API (test_worker_fun).
SMLT_NPM_TEST="playwright-core@1.65.2 kubernetes-models@5.1.0 @kubernetes-models/knative@4.0.0
  @aws-cdk/cfnspec@2.72.1 yaml@2.9.1 @vercel/fun@1.3.6"
# The PyTorch peer of the training benchmark (large: only for the main job / benchmarks).
SMLT_BENCH_PKGS="python3-torch python3-numpy"

smlt_missing_pkgs() {
    local missing=""
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing="$missing $p"
        fi
    done
    echo "$missing"
}

# smlt_install_deps PKG...: installs the given packages if any is missing.
smlt_install_deps() {
    local missing
    missing=$(smlt_missing_pkgs "$@")
    [ -z "$missing" ] && return 0
    local SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then SUDO=sudo; else
            echo "smlt: missing packages:$missing (run as root to install them)" >&2
            return 1
        fi
    fi
    echo "smlt: installing:$missing" >&2
    $SUDO apt-get update -qq || return 1
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing \
        >/dev/null || return 1
}

# smlt_install_npm_test: node and npm (Debian's, when the machine has none), then the
# test-only npm packages into $SMLT_NPM_DIR unless they are there already.
smlt_install_npm_test() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        smlt_install_deps nodejs npm || return 1
    fi
    local p missing=0
    for p in $SMLT_NPM_TEST; do
        # The name without its version (a scoped name starts with @).
        [ -d "$SMLT_NPM_DIR/node_modules/${p%@*}" ] || missing=1
    done
    [ $missing = 0 ] && return 0
    echo "smlt: installing the test-only npm packages into $SMLT_NPM_DIR" >&2
    mkdir -p "$SMLT_NPM_DIR" || return 1
    # shellcheck disable=SC2086
    npm install --prefix "$SMLT_NPM_DIR" --no-audit --no-fund --loglevel=error $SMLT_NPM_TEST \
        >/dev/null || return 1
}

# smlt_build DIR [cmake args...]: configures and builds into DIR.
smlt_build() {
    local dir=$1 rc=0
    shift
    mkdir -p "$dir"
    cmake -S "$SMLT_ROOT" -B "$dir" "$@" >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; return 1; }
    cmake --build "$dir" -j "$(nproc)" >"$dir/build.log" 2>&1 || rc=$?
    # Show warnings and errors only; the whole log stays in $dir/build.log.
    grep -E -A3 "warning:|error:|Error " "$dir/build.log" || true
    return $rc
}

# Run as a command: `bash tools/deps.sh [build|test|bench]...` installs those groups.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    # shellcheck disable=SC2086  # the package lists are word lists on purpose
    for group in "${@:-build}"; do
        case $group in
        build) smlt_install_deps $SMLT_BUILD_PKGS ;;
        test) smlt_install_deps $SMLT_BUILD_PKGS $SMLT_TEST_PKGS && smlt_install_npm_test ;;
        bench) smlt_install_deps $SMLT_BUILD_PKGS $SMLT_TEST_PKGS $SMLT_BENCH_PKGS ;;
        *) echo "usage: bash tools/deps.sh [build|test|bench]..." >&2; exit 2 ;;
        esac
    done
fi
