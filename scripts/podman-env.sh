# Sourced by the image scripts and tests: makes podman work in a sandbox without a registry or network
# namespaces. Points CONTAINERS_CONF at deploy/container/containers.conf (runc as the runtime, no
# network inside builds, ulimits the sandbox allows) unless the caller already set one.
# shellcheck shell=bash
_podman_env_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$_podman_env_root/deploy/container/containers.conf}"
unset _podman_env_root
