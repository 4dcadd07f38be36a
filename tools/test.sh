#!/bin/bash
# tools/test.sh: the whole test suite, from a fresh Debian 12 machine (as root): installs what is
# missing, builds the Release build into build/ and the AddressSanitizer + UndefinedBehavior-
# Sanitizer build into build/asan/, and runs every Check suite and integration test in both.
#   --no-asan   skip the sanitizer build
set -e
SMLT_ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/deps.sh
. "$SMLT_ROOT/tools/deps.sh"
ASAN=1
for a in "$@"; do
    case $a in
    --no-asan) ASAN=0 ;;
    *) echo "usage: tools/test.sh [--no-asan]" >&2; exit 2 ;;
    esac
done
# shellcheck disable=SC2086
smlt_install_deps $SMLT_BUILD_PKGS $SMLT_TEST_PKGS
smlt_install_npm_test
export SMLT_NPM_DIR
start=$(date +%s)
echo "== Release build (build/)"
smlt_build "$SMLT_ROOT/build" -DCMAKE_BUILD_TYPE=Release -DSMLT_TESTS=ON
(cd "$SMLT_ROOT/build" && ctest --output-on-failure --timeout 900)
if [ $ASAN = 1 ]; then
    echo "== ASan+UBSan build (build/asan/)"
    smlt_build "$SMLT_ROOT/build/asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSMLT_SANITIZE=ON -DSMLT_TESTS=ON
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    (cd "$SMLT_ROOT/build/asan" && SMLT_TEST_QUICK=1 ctest --output-on-failure --timeout 900)
fi
echo "== all tests passed in $(( $(date +%s) - start )) s"
