#!/bin/bash
# tests/deploy/lambda_zip.sh BIN_DIR: deploy/lambda/package.sh makes a Lambda zip of
# BIN_DIR/smlt-worker that
#   - is reproducible: two runs give the same bytes;
#   - has an executable bootstrap at its root, the worker and the loader;
#   - is complete: the bundled loader resolves every library of smlt-worker inside the zip
#     (none from the host), so glibc's version on Lambda does not matter;
#   - runs: the unzipped bootstrap runs smlt-worker --help through the bundled loader, with an
#     empty environment as Lambda's LAMBDA_TASK_ROOT sets it;
#   - is a custom runtime: started as Lambda starts it (no arguments, AWS_LAMBDA_RUNTIME_API),
#     it answers the invocation of a stub Runtime API (runtime_api.py), when smlt-worker has
#     that mode.
# Exit 77 (skipped) without zip/unzip.
set -e
SRC=${SMLT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${1:-${SMLT_BIN_DIR:-$SRC/build/bin}}
if ! command -v zip >/dev/null || ! command -v unzip >/dev/null; then
    echo "SKIP: zip or unzip is missing (tools/test.sh installs them)"
    exit 77
fi
# shellcheck source=tests/deploy/runtime_api.sh
. "$SRC/tests/deploy/runtime_api.sh"
tmp=$(mktemp -d)
wpid=""
cleanup() {
    [ -z "$wpid" ] || kill "$wpid" 2>/dev/null || true
    api_stop
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

bash "$SRC/deploy/lambda/package.sh" --bin "$BIN" -o "$tmp/a.zip"
bash "$SRC/deploy/lambda/package.sh" --bin "$BIN" -o "$tmp/b.zip" 2>/dev/null
cmp -s "$tmp/a.zip" "$tmp/b.zip" || fail "two runs of package.sh gave different zips"
echo "reproducible: $(sha256sum "$tmp/a.zip" | cut -c1-16)..."

mkdir "$tmp/task"
(cd "$tmp/task" && unzip -q "$tmp/a.zip")
cd "$tmp/task"
for f in bootstrap bin/smlt-worker lib/ld-linux-x86-64.so.2; do
    [ -x "$f" ] || fail "$f is missing or not executable"
done
head -1 bootstrap | grep -qx '#!/bin/sh' || fail "bootstrap is not a /bin/sh script"

# Every library the worker needs, resolved by the bundled loader, is one of the zip's.
list=$("$PWD/lib/ld-linux-x86-64.so.2" --library-path "$PWD/lib" --list ./bin/smlt-worker)
echo "$list" | grep -q "not found" && fail "libraries missing from the zip: $(echo "$list" | grep 'not found')"
outside=$(echo "$list" | awk '$2 == "=>" {print $3}' | grep -v "^$PWD/lib/" || true)
[ -z "$outside" ] || fail "libraries resolved outside the zip: $outside"
echo "complete: $(echo "$list" | grep -c '=>') libraries, all from lib/"

# The bootstrap, as Lambda starts it: from LAMBDA_TASK_ROOT, with nothing else set.
# shellcheck disable=SC2016  # expanded by the inner shell, from its own environment
out=$(env -i LAMBDA_TASK_ROOT="$PWD" /bin/sh -c 'cd / && "$LAMBDA_TASK_ROOT/bootstrap" --help') ||
    fail "bootstrap --help exited $?"
echo "$out" | grep -q "smlt-worker --invoke" || fail "bootstrap --help did not print smlt-worker's usage"
# And what runs is the bundled loader with the bundled libc: a worker serving --invoke waits on
# its stdin, long enough to read its /proc entries; it ends at the end of its input.
mkfifo "$tmp/in"
env -i LAMBDA_TASK_ROOT="$PWD" "$PWD/bootstrap" --invoke <"$tmp/in" >/dev/null 2>&1 &
pid=$!
exec 3>"$tmp/in"
for _ in $(seq 50); do
    grep -q "$PWD/lib/libc.so.6" "/proc/$pid/maps" 2>/dev/null && break
    sleep 0.1
done
exe=$(readlink "/proc/$pid/exe" || true)
libc=$(grep -c "$PWD/lib/libc.so.6" "/proc/$pid/maps" 2>/dev/null || true)
exec 3>&-
wait "$pid" 2>/dev/null || true
[ "$exe" = "$PWD/lib/ld-linux-x86-64.so.2" ] || fail "the worker ran on $exe, not the bundled loader"
[ "${libc:-0}" -gt 0 ] || fail "the worker did not map the bundled libc"
echo "runs on the bundled loader and libc"
# As Lambda starts it: no arguments, the Runtime API's address in the environment.
if env -i "$PWD/bootstrap" --help 2>&1 | grep -q AWS_LAMBDA_RUNTIME_API; then
    api_start "$tmp" || fail "cannot start the Runtime API stub"
    env -i LAMBDA_TASK_ROOT="$PWD" AWS_LAMBDA_RUNTIME_API="$API_ADDR" "$PWD/bootstrap" \
        >"$tmp/worker.log" 2>&1 &
    wpid=$!
    api_answered || { cat "$tmp/api.log" "$tmp/worker.log"; fail "the zip's bootstrap did not run the Runtime API loop"; }
    echo "custom runtime: $(grep -m1 '^POST' "$tmp/api.log" | cut -c1-120)"
    kill "$wpid" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true
    wpid=""
    api_stop
else
    echo "SKIPPED PART: smlt-worker has no Lambda Runtime API mode yet: the zip's loop check waits for it"
fi
echo "lambda zip: all checks passed"
