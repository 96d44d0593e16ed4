#!/usr/bin/env bash
# The rollout simulator's full matrix (issue 13): every scenario × every mode, every delay divided by 5.
#   testbed/rollout-matrix.sh [clbsync-rollout options, e.g. --scenario rolling --mode cron,watch]
# Starts the test API server and the controller-manager (building them once), builds clbsync and the simulator,
# runs them, writes outcomes.json and table.md (the BENCHMARKS.md table) to $ROLLOUT_OUT (default
# target/rollout) and draws docs/rollout-simulator.png (matplotlib in the repository's .venv, installed here if missing).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${ROLLOUT_OUT:-target/rollout}
mkdir -p "$out"

# Stopped again at the end if started here: while it runs, the test suite's Deployments would get pods.
testbed/kube-controller-manager.sh status >/dev/null 2>&1 || trap 'testbed/kube-controller-manager.sh stop' EXIT
testbed/kube-controller-manager.sh start
cargo build --locked --bin clbsync
cargo build --locked -p clbsync-rollout
target/debug/clbsync-rollout --out "$out" "$@" | tee "$out/table.md"

testbed/python-sdk.sh >/dev/null
.venv/bin/python -c 'import matplotlib' 2>/dev/null || .venv/bin/pip install -q matplotlib==3.9.2
if grep -q '"mode": "watch-gate-pre-stop"' "$out/outcomes.json"; then good=watch-gate-pre-stop; else good=watch-pre-stop; fi
if grep -q "\"mode\": \"$good\"" "$out/outcomes.json" && grep -q '"mode": "cron"' "$out/outcomes.json"; then
  mkdir -p docs
  .venv/bin/python testbed/rollout/plot.py "$out/outcomes.json" docs/rollout-simulator.png rolling cron "$good"
  echo "rollout-matrix.sh: wrote docs/rollout-simulator.png" >&2
fi
