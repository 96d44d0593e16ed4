#!/bin/bash
# The fleet benchmark, in one command: builds clbsync and the bench in release, makes sure the test
# kube-apiserver runs, then runs every size × scenario against clb-emulator (20 req/s per action, 20 ms latency,
# 450 ms tasks; --task-ms to change) and writes target/bench/results.json. Takes about 2–3 minutes once the pods are seeded (the
# first run seeds 2,010 pods into the test kube-apiserver). Any extra arguments go to clbsync-bench, e.g.
#   benches/run.sh --size medium --scenario rollout
# Set CLBSYNC_KUBE_TESTBED=/path/to/kube-testbed to reuse a testbed built elsewhere.
# The planner micro-benchmark is separate: cargo bench --bench planner
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --workspace --bins
testbed/kube-apiserver.sh start
eval "$(testbed/kube-apiserver.sh env)"
exec "${CARGO_TARGET_DIR:-target}/release/clbsync-bench" "$@"
