#!/bin/bash
# The real kube-controller-manager (v1.20.2, built by testbed/kube-apiserver.sh from the same Debian source tree),
# running only the Deployment and ReplicaSet controllers against the test API server, for the rollout simulator
# (testbed/rollout). No scheduler and no kubelet run: the simulator binds pods and plays the kubelet.
#
#   testbed/kube-controller-manager.sh start   build if needed, start the test API server if needed, then start
#   testbed/kube-controller-manager.sh stop    stop it (by recorded pid)
#   testbed/kube-controller-manager.sh status  exit 0 if it runs
#
# `start` on a running controller-manager is a no-op. Its log: <testbed>/run/kube-controller-manager.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-target}
[[ "$TARGET" = /* ]] || TARGET=$ROOT/$TARGET
K8S=${CLBSYNC_KUBE_TESTBED:-$TARGET/kube-testbed}
BIN=${CLBSYNC_KUBE_BIN_DIR:-$K8S/bin}/kube-controller-manager
R=$K8S/run
PID=$R/kube-controller-manager.pid

log() { echo "kube-controller-manager.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

alive() {
  local pid
  [ -f "$PID" ] || return 1
  pid=$(cat "$PID")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- kube-controller-manager
}

stop() {
  local pid
  if alive; then
    pid=$(cat "$PID")
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "stopped (pid $pid)"
  fi
  rm -f "$PID"
}

start() {
  "$ROOT/testbed/kube-apiserver.sh" build kube-apiserver kube-controller-manager  # once (a no-op when cached)
  "$ROOT/testbed/kube-apiserver.sh" start
  if alive; then
    log "already running (pid $(cat "$PID"))"
    return 0
  fi
  [ -x "$BIN" ] || die "$BIN missing: run testbed/kube-apiserver.sh build"
  mkdir -p "$R"
  # --secure-port=0 --port=0: no serving at all (1.20 would open 10257 and an insecure 10252).
  "$BIN" --kubeconfig "$K8S/kubeconfig" --controllers=deployment,replicaset \
    --leader-elect=false --use-service-account-credentials=false --secure-port=0 --port=0 \
    --concurrent-deployment-syncs=5 --concurrent-replicaset-syncs=5 \
    >"$R/kube-controller-manager.log" 2>&1 </dev/null 9>&- &
  echo $! > "$PID"
  sleep 1
  alive || die "kube-controller-manager exited at once, see $R/kube-controller-manager.log"
  log "started (pid $(cat "$PID")), log $R/kube-controller-manager.log"
}

mkdir -p "$K8S"
exec 9>"$K8S/.kcm.lock"
flock 9

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if alive; then echo "running (pid $(cat "$PID"))"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
