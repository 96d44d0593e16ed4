#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database with cargo-audit:
#   testbed/supply-chain.sh            the database at $CLBSYNC_ADVISORY_DB (default target/advisory-db); when it is
#                                      not there yet, cloned from the snapshot bundle $CLBSYNC_ADVISORY_BUNDLE
#                                      (default: the project's shared reference folder beside the repository, where
#                                      CI has it), else fetched from GitHub as cargo-audit does
#   testbed/supply-chain.sh --fresh    fetch the current database instead (needs network access)
# With no database to be had (no bundle, no network) the check is skipped with a warning, except with CI=true:
# CI must never pass without it. Known advisories that do not apply are listed, each with its reason, in
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

upstream=${CLBSYNC_ADVISORY_UPSTREAM:-https://github.com/rustsec/advisory-db.git}   # what cargo-audit fetches
if [ ! -d "$db/.git" ]; then
  if [ -f "$bundle" ]; then
    say "cloning the advisory database snapshot $bundle into $db"
    git -c init.defaultBranch=main clone --quiet "$bundle" "$db"
  else
    say "no snapshot bundle at $bundle: fetching the advisory database from $upstream (60 s at most)"
    rm -rf "$db.tmp"
    if timeout 60 git clone --quiet --depth 1 "$upstream" "$db.tmp" 2>/dev/null; then
      mv "$db.tmp" "$db"
    else
      rm -rf "$db.tmp"
      if [ "${CI:-}" = true ]; then
        say "error: no advisory database: no bundle at $bundle and $upstream is not reachable;"
        say "CI=true makes this check mandatory: set CLBSYNC_ADVISORY_BUNDLE to a snapshot bundle"
        exit 1
      fi
      printf '\n%s\n%s\n%s\n\n' \
        "supply-chain.sh: WARNING: SKIPPED the advisory check: no bundle at $bundle and $upstream not reachable." \
        "supply-chain.sh: WARNING: Cargo.lock was NOT checked for known vulnerabilities. Set CLBSYNC_ADVISORY_BUNDLE" \
        "supply-chain.sh: WARNING: to a snapshot bundle or allow the fetch (in CI, with CI=true, this fails instead)." >&2
      exit 0
    fi
  fi
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
