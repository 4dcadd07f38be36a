#!/bin/bash
# tools/quickstart.sh: the main job, from a fresh Debian 12 machine (as root): installs what is
# missing, builds into build/, and runs the parameter-server benchmark against Redis and the
# raw-TCP ceiling. (The Fashion-MNIST training job replaces this once the training engine and the
# coordinator land.)
set -e
SMLT_ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/deps.sh
. "$SMLT_ROOT/tools/deps.sh"
# shellcheck disable=SC2086
smlt_install_deps $SMLT_BUILD_PKGS $SMLT_TEST_PKGS
smlt_build "$SMLT_ROOT/build" -DCMAKE_BUILD_TYPE=Release
exec "$SMLT_ROOT/build/bin/smlt-bench" ps --vs-redis --vs-tcp --latency "$@"
