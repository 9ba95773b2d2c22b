#!/usr/bin/env bash
# Builds the image's base, localhost/debian-python:bookworm, from Debian packages with debootstrap.
#
# Used where no image registry is reachable (CI, air-gapped hosts): Debian 12 minbase plus python3 and
# python3-venv, imported into podman. Where a registry is reachable you can skip this and build the image
# with `--build-arg BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm` instead.
#
# Usage: scripts/build-base-image.sh [--force]   (needs root, debootstrap and podman; about 2 minutes)
# Env:   BASE_IMAGE (default localhost/debian-python:bookworm), DEBIAN_MIRROR (default: the host's apt mirror),
#        WORK_DIR (default build/base-image, inside the repository and ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE="${BASE_IMAGE:-localhost/debian-python:bookworm}"
WORK_DIR="${WORK_DIR:-build/base-image}"
force=false
[ "${1:-}" = "--force" ] && force=true

# shellcheck source=scripts/podman-env.sh
. scripts/podman-env.sh

if ! $force && podman image exists "$BASE_IMAGE"; then
  echo "base image $BASE_IMAGE exists (use --force to rebuild)"
  exit 0
fi

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  # The first Debian mirror apt is configured with (deb822 .sources or a one-line sources.list).
  mirror=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
    | grep -v security | head -n1 || true)
  if [ -z "$mirror" ]; then
    mirror=$(grep -hoE '^deb +(\[[^]]*\] +)?[^ ]+' /etc/apt/sources.list 2>/dev/null | awk '{print $NF}' | head -n1 || true)
  fi
  mirror="${mirror:-http://deb.debian.org/debian}"
fi

rootfs="$WORK_DIR/rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs"
echo "debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$mirror" >"$WORK_DIR/debootstrap.log" 2>&1 || {
  tail -n 30 "$WORK_DIR/debootstrap.log" >&2
  exit 1
}
# Nothing of the build host or the package cache goes into the image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" -c . | podman import \
  --change 'CMD ["/usr/bin/python3"]' \
  --change 'ENV LANG=C.UTF-8' \
  - "$BASE_IMAGE"
rm -rf "$rootfs"
podman image ls "$BASE_IMAGE"
