#!/bin/bash
# A real Prometheus Pushgateway (Debian's `prometheus-pushgateway`, 1.5.x) on loopback, for the tests of
# `--pushgateway` (issue 15).
#
#   testbed/pushgateway.sh start    apt install once if missing, start on a free loopback port (no-op when running)
#   testbed/pushgateway.sh stop     stop it (by recorded pid), remove the pid file
#   testbed/pushgateway.sh env      print `export CLBSYNC_TEST_PUSHGATEWAY=http://127.0.0.1:<port>` for a shell to eval
#   testbed/pushgateway.sh status   say whether it runs; exit 0 if ready, 1 if not
#
# State lives under $CLBSYNC_PUSHGATEWAY_TESTBED (default: $CARGO_TARGET_DIR/pushgateway, else
# <repo>/target/pushgateway). Nothing is persisted between starts (no --persistence.file).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-target}
[[ "$TARGET" = /* ]] || TARGET=$ROOT/$TARGET
D=${CLBSYNC_PUSHGATEWAY_TESTBED:-$TARGET/pushgateway}
BIN=/usr/bin/prometheus-pushgateway

log() { echo "pushgateway.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

install() {
  [ -x "$BIN" ] && return 0
  log "apt: installing prometheus-pushgateway"
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  # policy-rc.d 101: the package's service is not started; the tests start their own on loopback.
  local rc=/usr/sbin/policy-rc.d created=
  if [ ! -e "$rc" ]; then printf '#!/bin/sh\nexit 101\n' >"$rc"; chmod +x "$rc"; created=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
    prometheus-pushgateway >/dev/null
  [ -z "$created" ] || rm -f "$rc"
  [ -x "$BIN" ] || die "prometheus-pushgateway installed but $BIN is missing"
}

alive() {
  local pid
  [ -f "$D/pushgateway.pid" ] || return 1
  pid=$(cat "$D/pushgateway.pid")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- prometheus-pushgateway
}

ready() {
  [ -f "$D/port" ] || return 1
  curl -sf --max-time 2 "http://127.0.0.1:$(cat "$D/port")/-/ready" >/dev/null
}

free_port() {  # a loopback TCP port nobody listens on now
  local used port
  used=$(ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u)
  for _ in $(seq 1 200); do
    port=$(( 20000 + RANDOM % 40000 ))
    if ! grep -qx "$port" <<<"$used"; then echo "$port"; return 0; fi
  done
  die "no free port found"
}

stop() {
  local pid
  if alive; then
    pid=$(cat "$D/pushgateway.pid")
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "stopped (pid $pid)"
  fi
  rm -f "$D/pushgateway.pid" "$D/port"
}

start() {
  if alive && ready; then
    log "already running at http://127.0.0.1:$(cat "$D/port")"
    return 0
  fi
  stop
  install
  local port; port=$(free_port)
  "$BIN" --web.listen-address="127.0.0.1:$port" >"$D/pushgateway.log" 2>&1 </dev/null 9>&- &
  echo $! >"$D/pushgateway.pid"
  echo "$port" >"$D/port"
  # Up to 120 s while the process lives: on a 2-core machine whose disk is busy, the process was seen still in
  # disk sleep with 4 kB resident (its binary not yet read in) after 30 s; 10 s were not enough once in CI.
  # While its binary is being read in, /proc/PID/cmdline is still empty, so `alive` (which checks it, against a
  # reused pid) says no: here the pid just started is ours, and only its exit ends the wait early.
  local started; started=$(cat "$D/pushgateway.pid")
  for _ in $(seq 1 1200); do
    ready && break
    kill -0 "$started" 2>/dev/null || break
    sleep 0.1
  done
  if ! ready; then
    local pid; pid=$(cat "$D/pushgateway.pid")
    log "not ready after 120 s; process $pid: $(grep -E '^(State|VmRSS)' "/proc/$pid/status" 2>/dev/null | tr '\n\t' '  ' || echo gone); log:"
    cat "$D/pushgateway.log" >&2 || true
    stop
    die "the Pushgateway did not become ready, see $D/pushgateway.log"
  fi
  log "ready at http://127.0.0.1:$port ($("$BIN" --version 2>&1 | head -1), pid $(cat "$D/pushgateway.pid"))"
}

env_() {
  ready || die "not running: run testbed/pushgateway.sh start"
  echo "export CLBSYNC_TEST_PUSHGATEWAY=http://127.0.0.1:$(cat "$D/port")"
}

status() {
  if alive && ready; then
    echo "running: http://127.0.0.1:$(cat "$D/port") (pid $(cat "$D/pushgateway.pid"))"
  else
    echo "not running"
    return 1
  fi
}

# One invocation at a time per testbed directory.
mkdir -p "$D"
exec 9>"$D/.lock"
flock 9

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) env_ ;;
  status) status ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
