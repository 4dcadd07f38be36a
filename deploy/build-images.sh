#!/bin/bash
# deploy/build-images.sh: builds SMLT-C's images with podman from the local Debian base, and
# prints their sizes:
#   localhost/smlt-base:bookworm-1     deploy/base-image.sh (cached in ~/.cache/smlt/images)
#   localhost/smlt-builder:TAG         the build stage (kept so that a rebuild reuses it)
#   localhost/smlt-ps:TAG, localhost/smlt-worker:TAG, localhost/smlt-coordinator:TAG
#   localhost/smlt-worker-torch:TAG, localhost/smlt-coordinator-torch:TAG  (--only
#                                      worker-torch,coordinator-torch: torch jobs; 0.9 GB more)
# TAG is the project's version (CMakeLists.txt) unless --tag says otherwise. Idempotent: podman's
# layer cache makes a second run take seconds when nothing changed.
#
#   --bins DIR     take smlt-ps, smlt-worker, smlt-coordinator and smltctl from DIR (a build
#                  tree's bin/, built on Debian 12) instead of building them in the builder
#                  stage; they are stripped into a temporary folder first
#   --tag TAG      tag the images TAG
#   --only LIST    build only these of ps,worker,coordinator,worker-torch,coordinator-torch
#                  (default: the first three); with --bins DIR, the torch ones take the smlt
#                  Python package from DIR/../python and libsmlt from DIR/../lib
#   --quiet        print the sizes only
# Needs root; installs and configures podman first (deploy/podman-setup.sh).
set -e
SMLT_ROOT=$(cd "$(dirname "$0")/.." && pwd)
usage() {
    echo "usage: deploy/build-images.sh [--bins DIR] [--tag TAG] [--only ps,worker,coordinator,worker-torch,coordinator-torch] [--quiet]" >&2
    exit 2
}
bins="" only="ps,worker,coordinator" quiet=0
tag=$(sed -n 's/.*SMLT_VERSION_STRING="\([^"]*\)".*/\1/p' "$SMLT_ROOT/CMakeLists.txt")
while [ $# -gt 0 ]; do
    case $1 in
    --bins) [ $# -ge 2 ] || usage; bins=$2; shift ;;
    --tag) [ $# -ge 2 ] || usage; tag=$2; shift ;;
    --only) [ $# -ge 2 ] || usage; only=$2; shift ;;
    --quiet) quiet=1 ;;
    *) usage ;;
    esac
    shift
done
[ -n "$tag" ] || { echo "smlt: no version in CMakeLists.txt: give --tag" >&2; exit 2; }
for img in ${only//,/ }; do
    case $img in
    ps | worker | coordinator | worker-torch | coordinator-torch) ;;
    *) echo "smlt: --only: unknown image $img (want ps, worker, coordinator, worker-torch," \
            "coordinator-torch)" >&2; exit 2 ;;
    esac
done

say() { [ $quiet = 1 ] || echo "$@" >&2; }
log=$(mktemp)
tmp=""
cleanup() { rm -f "$log"; [ -z "$tmp" ] || rm -rf "$tmp"; }
trap cleanup EXIT

podman info >/dev/null 2>&1 || bash "$SMLT_ROOT/deploy/podman-setup.sh"
base=$(bash "$SMLT_ROOT/deploy/base-image.sh")

args=(--file "$SMLT_ROOT/deploy/Containerfile" --build-arg "BASE=$base" --layers)
if [ -n "$bins" ]; then
    tmp=$(mktemp -d)
    for b in smlt-ps smlt-worker smlt-coordinator smltctl; do
        [ -x "$bins/$b" ] || { echo "smlt: $bins/$b is missing: build the project first" >&2; exit 1; }
        strip -o "$tmp/$b" "$bins/$b"
    done
    args+=(--build-context "bins=$tmp")
    if [[ ,$only, == *-torch,* ]]; then
        py=$(cd "$bins/.." && pwd)
        [ -f "$py/python/smlt/__init__.py" ] && [ -f "$py/lib/libsmlt.so.0" ] ||
            { echo "smlt: $py/python/smlt or $py/lib/libsmlt.so.0 is missing: build the project" \
                   "(with python3-dev) first" >&2; exit 1; }
        mkdir -p "$tmp/py"
        cp -r "$py/python/smlt" "$tmp/py/"
        rm -rf "$tmp/py/smlt/__pycache__"
        cp "$py/lib/libsmlt.so.0" "$tmp/py/"
        strip "$tmp/py/libsmlt.so.0" "$tmp/py/smlt/"_smlt*.so
        args+=(--build-context "py=$tmp/py")
    fi
else
    say "== smlt-builder:$tag (the project, Release, built inside the base)"
    start=$(date +%s)
    podman build "${args[@]}" --target builder --tag "localhost/smlt-builder:$tag" "$SMLT_ROOT" \
        >"$log" 2>&1 || { tail -40 "$log" >&2; exit 1; }
    say "   built in $(( $(date +%s) - start )) s"
fi

sizes=""
for img in ${only//,/ }; do
    name=localhost/smlt-$img:$tag
    say "== $name"
    start=$(date +%s)
    # WORKER_RUNTIME is always given: podman resolves a stage named through a build argument
    # only when the argument is passed (its default alone reads as an image name).
    target=$img extra=(--build-arg WORKER_RUNTIME=runtime-worker)
    if [ "${img%-torch}" != "$img" ]; then
        target=${img%-torch}
        extra=(--build-arg WORKER_RUNTIME=runtime-torch)
    fi
    podman build "${args[@]}" "${extra[@]}" --target "$target" --tag "$name" "$SMLT_ROOT" >"$log" 2>&1 ||
        { tail -40 "$log" >&2; exit 1; }
    say "   built in $(( $(date +%s) - start )) s"
    bytes=$(podman image inspect --format '{{.Size}}' "$name")
    sizes="$sizes$(printf '%-36s %6.1f MB' "$name" "$(echo "$bytes" | awk '{print $1 / 1e6}')")"$'\n'
done
bytes=$(podman image inspect --format '{{.Size}}' "$base")
printf '%-36s %6.1f MB  (the base every image starts from)\n' "$base" \
    "$(echo "$bytes" | awk '{print $1 / 1e6}')"
printf '%s' "$sizes"
