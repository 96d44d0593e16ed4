#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database with cargo-audit, offline:
#   testbed/supply-chain.sh            the database at $CLBSYNC_ADVISORY_DB (default target/advisory-db),
#                                      cloned first from the snapshot bundle if it is not there yet
#   testbed/supply-chain.sh --fresh    fetch the current database instead (needs network access)
# The snapshot bundle is $CLBSYNC_ADVISORY_BUNDLE (default: the project's shared reference folder beside the
# repository, where CI has it). Known advisories that do not apply are listed, each with its reason, in
# .cargo/audit.toml; anything else fails the check.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
db=${CLBSYNC_ADVISORY_DB:-$target/advisory-db}
bundle=${CLBSYNC_ADVISORY_BUNDLE:-$root/../shared/reference/rustsec-advisory-db.bundle}
say() { printf 'supply-chain.sh: %s\n' "$*"; }

if ! cargo audit --version >/dev/null 2>&1; then
  say "installing cargo-audit 0.22.2 (about 3 minutes on 2 cores, once)"
  cargo install cargo-audit --version 0.22.2 --locked --no-default-features --quiet
fi

if [ "${1:-}" = "--fresh" ]; then
  say "fetching the current RustSec advisory database"
  exec cargo audit --deny warnings
fi

if [ ! -d "$db/.git" ]; then
  if [ ! -f "$bundle" ]; then
    say "no advisory database at $db and no snapshot bundle at $bundle;"
    say "set CLBSYNC_ADVISORY_BUNDLE, or run 'testbed/supply-chain.sh --fresh' with network access"
    exit 1
  fi
  say "cloning the advisory database snapshot into $db"
  git -c init.defaultBranch=main clone --quiet "$bundle" "$db"
fi
say "advisory database of $(git -C "$db" log -1 --format=%cd --date=short)"
audit() { cargo audit --db "$db" --no-fetch --stale --deny warnings "$@"; }
# The check must be able to fail: a lock file with a listed version (smallvec 1.6.0) is refused.
canary=tests/fixtures/supply-chain/Cargo.lock
if audit --file "$canary" >/dev/null 2>&1; then
  say "cargo-audit accepted $canary, which holds a known advisory: the database or the tool is broken"
  exit 1
fi
audit
