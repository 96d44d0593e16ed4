#!/usr/bin/env bash
# No Docker engine runs here, so prove the Dockerfile's build stage the closest honest way: run its exact
# `RUN cargo build ...` command (read from the Dockerfile, not copied) and check that the binary works and
# needs nothing the runtime image (distroless/cc: glibc, libgcc, CA certificates) lacks. The dependency layer
# before it is checked for completeness against `cargo metadata`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# The dependency layer builds the workspace with empty stand-ins for its targets: every member manifest must
# be copied and every declared target stood in for, or `docker build` fails (or, worse, caches nothing).
cargo metadata --no-deps --locked --offline --format-version 1 | python3 -c '
import json, os, re, sys
meta = json.load(sys.stdin)
root = meta["workspace_root"]
dockerfile = open("Dockerfile").read()
loop = re.search(r"^RUN for f in (.*?); do", dockerfile, re.S | re.M)
stubs = set(re.findall(r"[\w./-]+\.rs", loop.group(1))) if loop else set()
missing = []
for pkg in meta["packages"]:
    manifest = os.path.relpath(pkg["manifest_path"], root)
    if not re.search(r"^COPY .*\b" + re.escape(manifest) + r"\b", dockerfile, re.M):
        missing.append("COPY of " + manifest)
    explicit = ("lib", "bin") if manifest != "Cargo.toml" else None  # the root package declares all its targets
    for t in pkg["targets"]:
        if explicit is None or any(k in explicit for k in t["kind"]):
            path = os.path.relpath(t["src_path"], root)
            if path not in stubs:
                missing.append("a stand-in for " + path)
if missing:
    sys.exit("dockerfile-build.sh: the Dockerfile dependency layer lacks " + ", ".join(missing))
print("dockerfile-build.sh: dependency layer covers %d manifests and %d stand-ins" % (len(meta["packages"]), len(stubs)))
'
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
