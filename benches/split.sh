#!/usr/bin/env bash
# Traffic splitting (issue 28), BENCHMARKS.md "Traffic splitting": the rollout simulator's split scenario three
# times (seeds 1, 2, 3) in the recommended mode (watch + gate + preStop), the load average before each run and
# its wall time, then the table of medians (min–max) of the delivered splits and the calls each edit cost.
#   benches/split.sh
# Starts the test API server and the controller-manager if needed (as testbed/rollout-matrix.sh does; with
# CLBSYNC_KUBE_TESTBED, on that testbed) and stops the controller-manager again if it started it. Writes
# $SPLIT_OUT (default target/bench-split): seed-N/outcomes.json, runs.txt, table.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${SPLIT_OUT:-target/bench-split}
testbed=${CLBSYNC_KUBE_TESTBED:-target/kube-testbed}
mkdir -p "$out"

testbed/kube-controller-manager.sh status >/dev/null 2>&1 || trap 'testbed/kube-controller-manager.sh stop' EXIT
testbed/kube-controller-manager.sh start
cargo build --locked --bin clbsync
cargo build --locked -p clbsync-rollout

: >"$out/runs.txt"
for seed in 1 2 3; do
  load=$(uptime)
  start=$(date +%s%N)
  target/debug/clbsync-rollout --scenario split --mode watch-gate-pre-stop --seed "$seed" \
    --kubeconfig "$testbed/kubeconfig" --out "$out/seed-$seed" --timeout 120 >/dev/null
  echo "seed $seed: $(( ($(date +%s%N) - start) / 1000000 )) ms; before it:$load" | tee -a "$out/runs.txt" >&2
done
target/debug/clbsync-rollout --split-table "$out"/seed-*/outcomes.json | tee "$out/table.md"
