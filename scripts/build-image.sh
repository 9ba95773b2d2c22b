#!/usr/bin/env bash
# Builds the otel-leakproc container image with podman, offline.
#
#   1. wheels for the package and its dependencies, built on the host (python3 -m pip wheel): the
#      container build has no network, so it installs only from build/image/wheels;
#   2. the base image, when missing (scripts/build-base-image.sh, debootstrap, about 2 minutes);
#   3. podman build --pull=never (docker format, so the HEALTHCHECK is kept).
#
# Usage: scripts/build-image.sh [TAG]        (default TAG: localhost/otel-leakproc:dev)
# Env:   PYTHON (default python3; must be the base image's Python minor version, 3.11),
#        BASE_IMAGE (default localhost/debian-python:bookworm).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG="${1:-localhost/otel-leakproc:dev}"
PYTHON="${PYTHON:-python3}"
BASE_IMAGE="${BASE_IMAGE:-localhost/debian-python:bookworm}"
WHEELS=build/image/wheels

# shellcheck source=scripts/podman-env.sh
. scripts/podman-env.sh

py_minor=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ "$py_minor" != "3.11" ]; then
  echo "build-image: $PYTHON is Python $py_minor; the wheels must match the image's Python 3.11" >&2
  exit 2
fi

start=$(date +%s)
rm -rf "$WHEELS"
mkdir -p "$WHEELS"
# Binary wheels only for the dependencies: the image has no compiler. The package itself is built here,
# with its C extension (needs gcc and the Python headers on this host).
# The image's Python is Debian's 3.11.2, the host's may be newer: dependencies that only an older 3.11 needs
# (redis wants async-timeout below 3.11.3) are not resolved here, so they are named explicitly.
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$WHEELS" \
  --only-binary=:all: --no-binary=otel-leakproc . 'async-timeout>=4.0.3' 
echo "wheels: $(ls "$WHEELS" | wc -l) in $WHEELS"

BASE_IMAGE="$BASE_IMAGE" scripts/build-base-image.sh

version=$("$PYTHON" -c 'import re,sys; print(re.search(r"__version__ = \"([^\"]+)\"", open("src/otel_leakproc/__init__.py").read()).group(1))')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
podman build --pull=never --format docker \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --tag "$TAG" .
podman image ls "$TAG"
echo "build-image: $TAG built in $(( $(date +%s) - start ))s"
