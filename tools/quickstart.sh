#!/bin/bash
# tools/quickstart.sh: the main job, from a fresh Debian 12 machine (as root): installs what is
# missing, builds into build/, starts a local cluster (the coordinator with its embedded
# function runtime) and trains the Fashion-MNIST MLP to 88% test accuracy on 4 function
# workers and 2 parameter-server shards, watching it live (`smltctl demo`). The cluster keeps
# running afterwards for `build/bin/smltctl status`; stop it with `build/bin/smltctl down`.
# Arguments are passed to `smltctl demo` (see `build/bin/smltctl demo --help`).
set -e
SMLT_ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/deps.sh
. "$SMLT_ROOT/tools/deps.sh"
# shellcheck disable=SC2086
smlt_install_deps $SMLT_BUILD_PKGS dataset-fashion-mnist
smlt_build "$SMLT_ROOT/build" -DCMAKE_BUILD_TYPE=Release
exec "$SMLT_ROOT/build/bin/smltctl" demo "$@"
