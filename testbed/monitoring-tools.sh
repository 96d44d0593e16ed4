#!/usr/bin/env bash
# What the monitoring tests need (tests/it/monitoring.rs, tests/it/packaging.rs):
#   - promtool, from Debian's `prometheus` package (`promtool check rules`, `test rules`, `check metrics`). The
#     package also ships a Prometheus service: it is not started (policy-rc.d 101 while installing) and the tests
#     never start it;
#   - the Prometheus Operator's CRD schemas as validators: the npm package @kubernetes-models/prometheus-operator
#     (pinned in testbed/prometheus-operator-schemas/package-lock.json) under .venv/prometheus-operator-schemas.
# Idempotent: does nothing when both are there.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "monitoring-tools.sh: $*" >&2; }

if ! command -v promtool >/dev/null; then
  log "apt: installing prometheus (for promtool)"
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  rc=/usr/sbin/policy-rc.d created=
  if [ ! -e "$rc" ]; then printf '#!/bin/sh\nexit 101\n' >"$rc"; chmod +x "$rc"; created=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
    prometheus >/dev/null
  [ -z "$created" ] || rm -f "$rc"
fi
log "$(promtool --version 2>&1 | head -1)"

src=$root/testbed/prometheus-operator-schemas
dest=$root/.venv/prometheus-operator-schemas
if ! cmp -s "$src/package-lock.json" "$dest/package-lock.json" || [ ! -d "$dest/node_modules" ]; then
  log "npm: installing the Prometheus Operator's schemas into $dest"
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$src/package.json" "$src/package-lock.json" "$dest/"
  # The package asks for Node.js 22 (engines); its validators run on Debian's Node.js 20 (the test checks them).
  (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error --engine-strict=false)
fi
log "ready: promtool $(command -v promtool), schemas $dest/node_modules"
