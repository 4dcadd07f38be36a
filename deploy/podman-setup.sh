#!/bin/bash
# deploy/podman-setup.sh: makes podman work on this kind of machine (Debian 12, root, no Docker
# engine, no registry). Installs the container packages of tools/deps.sh (SMLT_CONTAINER_PKGS)
# that are missing and writes /etc/containers/containers.conf with the two settings podman needs
# here, then checks that `podman info` answers. Idempotent: a second run changes nothing.
# Used by deploy/build-images.sh and the image tests (tests/deploy/images.sh).
#
# Why the configuration: the default runtime (crun) refuses the machine's hybrid cgroups, and no
# runtime may raise the open-files limit to podman's default, so containers get runc and
# ulimits the sandbox allows.
#   --check   install and write nothing; exit 0 when podman is ready, 1 when not
set -e
SMLT_ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/deps.sh
. "$SMLT_ROOT/tools/deps.sh"

CONF=${SMLT_CONTAINERS_CONF:-/etc/containers/containers.conf}
MARK="# written by SMLT-C deploy/podman-setup.sh"

conf_ok() {
    [ -f "$CONF" ] && grep -Eq '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"runc"' "$CONF" &&
        grep -q 'nofile=1024:1024' "$CONF"
}

if [ "${1:-}" = --check ]; then
    # shellcheck disable=SC2086  # a word list on purpose
    [ -z "$(smlt_missing_pkgs $SMLT_CONTAINER_PKGS)" ] && conf_ok && podman info >/dev/null 2>&1
    exit
fi

# shellcheck disable=SC2086
smlt_install_deps $SMLT_CONTAINER_PKGS

if ! conf_ok; then
    mkdir -p "$(dirname "$CONF")"
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        # Someone else's configuration: keep it beside ours, said out loud.
        cp -p "$CONF" "$CONF.before-smlt"
        echo "smlt: saved the previous $CONF as $CONF.before-smlt" >&2
    fi
    cat >"$CONF.tmp" <<EOF
$MARK
# crun refuses this machine's hybrid cgroups; runc works. No runtime may raise the open-files
# limit past the sandbox's, so containers start with these.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
runtime = "runc"
EOF
    mv "$CONF.tmp" "$CONF"
    echo "smlt: wrote $CONF (runtime runc, ulimits nofile 1024, nproc 1000)" >&2
fi

if ! out=$(podman info 2>&1); then
    echo "smlt: podman does not work here:" >&2
    echo "$out" | tail -5 >&2
    exit 1
fi
