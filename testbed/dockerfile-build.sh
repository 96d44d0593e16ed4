#!/usr/bin/env bash
# No Docker engine runs here, so prove the Dockerfile's build stage the closest honest way: run its exact
# `RUN cargo build ...` command (read from the Dockerfile, not copied) and check that the binary works and
# needs nothing the runtime image (distroless/cc: glibc, libgcc, CA certificates) lacks.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cmd=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' Dockerfile)
[ -n "$cmd" ] || { echo "dockerfile-build.sh: no 'RUN cargo build' line in the Dockerfile" >&2; exit 1; }
echo "dockerfile-build.sh: $cmd"
t0=$(date +%s)
$cmd
bin=${CARGO_TARGET_DIR:-target}/release/clbsync   # cargo, run from the repository root, writes here
"$bin" --version
"$bin" validate --rules rules.yaml
echo "dockerfile-build.sh: built in $(( $(date +%s) - t0 )) s; $(stat -c %s "$bin") bytes ($(( $(stat -c %s "$bin") / 1024 / 1024 )) MiB)"
libs=$(ldd "$bin" | awk '{print $1}' | grep -v -E '^(linux-vdso|/lib64/ld-linux)' | sort | tr '\n' ' ')
echo "dockerfile-build.sh: dynamic libraries: $libs"
for lib in $libs; do
  case "$lib" in
    libc.so.*|libm.so.*|libgcc_s.so.*|libpthread.so.*|libdl.so.*|librt.so.*) ;;
    *) echo "dockerfile-build.sh: $lib is not in distroless/cc" >&2; exit 1 ;;
  esac
done
