#!/bin/bash
# deploy/base-image.sh: the Debian base every SMLT-C image starts FROM, made here from Debian's
# archive (no registry is reachable, and none is needed): `mmdebstrap --variant=apt bookworm`
# into a root file system tarball, then `podman import` as localhost/smlt-base:$SMLT_BASE_TAG.
#
# The slow part is cached outside the build tree: nothing is done when the image is in podman's
# store; when only the tarball is (in $SMLT_CACHE_DIR/images, default ~/.cache/smlt/images),
# it is imported again in a few seconds. Prints the image's name on stdout.
#   --rebuild   make the tarball and the image again
#
# The recipe: apt and the essential packages, no recommends, merged /usr made by mmdebstrap's
# hook (the usrmerge package would bring perl, 30 MB), and no documentation, manual pages
# or translations (dpkg path excludes that stay in the image, so the packages the Containerfiles
# install later leave them out too). Change the recipe, bump SMLT_BASE_TAG.
set -e
SMLT_ROOT=$(cd "$(dirname "$0")/.." && pwd)
SMLT_BASE_TAG=${SMLT_BASE_TAG:-bookworm-1}
SMLT_BASE_IMAGE=localhost/smlt-base:$SMLT_BASE_TAG
SMLT_CACHE_DIR=${SMLT_CACHE_DIR:-$HOME/.cache/smlt}
SMLT_DEBIAN_MIRROR=${SMLT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SMLT_DEBIAN_SECURITY=${SMLT_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
tar=$SMLT_CACHE_DIR/images/smlt-base-$SMLT_BASE_TAG.tar

rebuild=0
case ${1:-} in
"") ;;
--rebuild) rebuild=1 ;;
*) echo "usage: deploy/base-image.sh [--rebuild]" >&2; exit 2 ;;
esac

if [ $rebuild = 0 ] && podman image exists "$SMLT_BASE_IMAGE"; then
    echo "$SMLT_BASE_IMAGE"
    exit 0
fi
if [ $rebuild = 1 ] || [ ! -s "$tar" ]; then
    command -v mmdebstrap >/dev/null || bash "$SMLT_ROOT/deploy/podman-setup.sh"
    mkdir -p "$(dirname "$tar")"
    echo "smlt: building the Debian base ($tar) with mmdebstrap" >&2
    start=$(date +%s)
    # Written next to its final name, so an interrupted run never leaves a half tarball cached.
    mmdebstrap --variant=apt --format=tar --quiet \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        bookworm "$tar.part" \
        "deb $SMLT_DEBIAN_MIRROR bookworm main" \
        "deb $SMLT_DEBIAN_MIRROR bookworm-updates main" \
        "deb $SMLT_DEBIAN_SECURITY bookworm-security main" >&2
    mv "$tar.part" "$tar"
    echo "smlt: base tarball $(du -h "$tar" | cut -f1) in $(( $(date +%s) - start )) s" >&2
fi
podman import --quiet --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
    --message "mmdebstrap --variant=apt bookworm (SMLT-C deploy/base-image.sh)" \
    "$tar" "$SMLT_BASE_IMAGE" >/dev/null
echo "smlt: imported $SMLT_BASE_IMAGE" >&2
echo "$SMLT_BASE_IMAGE"
