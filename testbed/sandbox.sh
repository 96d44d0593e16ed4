#!/usr/bin/env bash
# The clbsync sandbox: a real kube-apiserver + etcd and the CLB emulator on loopback, a small seeded world,
# and the real clbsync binary run against it:
#
#   testbed/sandbox.sh          diff --dry-run, reconcile, diff again; then stop everything
#   testbed/sandbox.sh --keep   the same, then stay up and print the environment to use clbsync by hand
#
# First run: compiles clbsync and the emulator, installs Debian packages and builds kube-apiserver once
# (minutes, see testbed/README.md "Costs"; cached under target/, or $CARGO_TARGET_DIR when set).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
keep=
case "${1:-}" in
  --keep) keep=1 ;;
  "") ;;
  -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: testbed/sandbox.sh [--keep]" >&2; exit 64 ;;
esac

target=${CARGO_TARGET_DIR:-target}    # where cargo (run from the repository root) writes
[[ "$target" = /* ]] || target=$root/$target
work=$target/sandbox
kube=$work/kube                       # the sandbox's own API server state, separate from the tests'
# The binary the tests use too (testbed/kube-apiserver.sh builds it there once): never a second build.
export CLBSYNC_KUBE_BIN_DIR=${CLBSYNC_KUBE_BIN_DIR:-$target/kube-testbed/bin}
emu_pid=

# Step headers in bold on a terminal only (a log file or CI gets plain text).
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
else
  say() { printf '\n%s\n' "$*"; }
fi
cleanup() {
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null || true
  CLBSYNC_KUBE_TESTBED=$kube testbed/kube-apiserver.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'echo; echo "interrupted: stopping the sandbox"; exit 130' INT TERM

say "1/5 Building clbsync and clb-emulator"
bin=$target/debug
if [ ! -x "$bin/clbsync" ] || [ ! -x "$bin/clb-emulator" ]; then
  echo "First run: compiling clbsync, clb-emulator and their dependencies (debug) into $target."
  echo "This takes several minutes on 2 cores (testbed/README.md, \"Costs\"); later runs take seconds."
fi
cargo build --quiet --locked -p clbsync -p clb-emulator --bins

say "2/5 Starting kube-apiserver + etcd on loopback"
if [ ! -x "$CLBSYNC_KUBE_BIN_DIR/kube-apiserver" ]; then
  echo "First run: building kube-apiserver (only it) from Debian's source package, once (about 200 s on idle"
  echo "cores, longer when they are busy; testbed/README.md); cached in $CLBSYNC_KUBE_BIN_DIR for the tests too."
fi
CLBSYNC_KUBE_TESTBED=$kube testbed/kube-apiserver.sh stop >/dev/null 2>&1 || true
rm -rf "$kube/etcd-data"                 # a fresh world every run
CLBSYNC_KUBE_TESTBED=$kube testbed/kube-apiserver.sh start
# shellcheck disable=SC1091
. "$kube/run/ports.env"
api=https://127.0.0.1:$API_PORT
k() {  # k METHOD PATH [JSON] [CONTENT-TYPE]: one call to the API server as the sandbox admin
  curl -sS --fail-with-body -A clbsync-sandbox --cacert "$kube/pki/ca.crt" -H "Authorization: Bearer test-admin-token" \
    -X "$1" -H "Content-Type: ${4:-application/json}" ${3:+--data "$3"} "$api$2" >/dev/null
}

say "3/5 Seeding Kubernetes: namespaces shop and cache, deployments web, api and redis, their pods"
for ns in shop cache; do k POST /api/v1/namespaces "{\"metadata\":{\"name\":\"$ns\"}}"; done
deployment() {  # deployment NS NAME PORT-NAME PORT
  k POST "/apis/apps/v1/namespaces/$1/deployments" "{\"metadata\":{\"name\":\"$2\"},\"spec\":{\"replicas\":3,
    \"selector\":{\"matchLabels\":{\"app\":\"$2\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"$2\"}},
    \"spec\":{\"containers\":[{\"name\":\"$2\",\"image\":\"example/$2:1\",\"ports\":[{\"name\":\"$3\",\"containerPort\":$4}]}]}}}}"
}
pod() {  # pod NS NAME APP PORT-NAME PORT IP READY [finalizer]
  local fin=""; [ -n "${8:-}" ] && fin=",\"finalizers\":[\"sandbox.clbsync.dev/hold\"]"
  k POST "/api/v1/namespaces/$1/pods" "{\"metadata\":{\"name\":\"$2\",\"labels\":{\"app\":\"$3\"}$fin},
    \"spec\":{\"containers\":[{\"name\":\"$3\",\"image\":\"example/$3:1\",\"ports\":[{\"name\":\"$4\",\"containerPort\":$5}]}]}}"
  local status
  if [ "$6" = none ]; then
    status='{"status":{"phase":"Pending","conditions":[{"type":"PodScheduled","status":"False","reason":"Unschedulable"}]}}'
  else
    status="{\"status\":{\"phase\":\"Running\",\"podIP\":\"$6\",\"podIPs\":[{\"ip\":\"$6\"}],
      \"conditions\":[{\"type\":\"Ready\",\"status\":\"$7\"}]}}"
  fi
  k PATCH "/api/v1/namespaces/$1/pods/$2/status" "$status" application/merge-patch+json
}
deployment shop web http 8080
pod shop web-1 web http 8080 10.244.1.11 True
pod shop web-2 web http 8080 10.244.1.12 True
pod shop web-3 web http 8080 10.244.1.13 False          # running, not ready: not a target
deployment shop api api 9090
pod shop api-1 api api 9090 10.244.2.21 True
pod shop api-2 api api 9090 10.244.2.22 True
pod shop api-3 api api 9090 none False                   # pending, no IP yet
pod shop api-old api api 9090 10.244.2.29 True hold
k DELETE /api/v1/namespaces/shop/pods/api-old            # terminating: the finalizer keeps it around
deployment cache redis redis 6379
pod cache redis-0 redis redis 6379 10.244.3.31 True
pod cache redis-1 redis redis 6379 10.244.3.32 True
echo "shop: web-1, web-2 ready; web-3 not ready; api-1, api-2 ready; api-3 pending; api-old terminating"
echo "cache: redis-0, redis-1 ready"

say "4/5 Starting the CLB emulator (testbed/sandbox/state.yaml: 2 load balancers, stale targets, a CVM backend)"
mkdir -p "$work"
cp testbed/sandbox/rules.yaml "$work/rules.yaml"
"$bin/clb-emulator" --listen 127.0.0.1:0 --state testbed/sandbox/state.yaml --task-delay-ms 300 \
  >"$work/emulator.out" 2>"$work/emulator.log" &
emu_pid=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/emulator.out" 2>/dev/null && break; sleep 0.05; done
endpoint=$(sed -n 's/^clb-emulator listening on //p' "$work/emulator.out")
[ -n "$endpoint" ] || { cat "$work/emulator.log" >&2; echo "the emulator did not start" >&2; exit 1; }

export CLBSYNC_RULES=$work/rules.yaml CLBSYNC_ENDPOINT=$endpoint TENCENT_REGION=ap-guangzhou
export KUBECONFIG=$kube/kubeconfig
export TENCENTCLOUD_SECRET_ID=AKIDclbsyncEMULATOR000000000000000
export TENCENTCLOUD_SECRET_KEY=clbsyncEmulatorSecretKey0000000000

say "5/5 Running clbsync"
run() { printf '\n$ clbsync %s\n' "$*"; "$bin/clbsync" "$@" || echo "(exit $?)"; }
run diff --dry-run
run reconcile
run diff --detailed-exitcode

if [ -n "$keep" ]; then
  say "The sandbox is up. In another shell, paste:"
  # The emulator's key is public (clb-emulator's default credentials), so it is printed as it is.
  cat <<ENV
export PATH=$bin:\$PATH
export CLBSYNC_RULES=$CLBSYNC_RULES
export CLBSYNC_ENDPOINT=$CLBSYNC_ENDPOINT
export TENCENT_REGION=$TENCENT_REGION
export KUBECONFIG=$KUBECONFIG
export TENCENTCLOUD_SECRET_ID=$TENCENTCLOUD_SECRET_ID
export TENCENTCLOUD_SECRET_KEY=$TENCENTCLOUD_SECRET_KEY
clbsync diff --show-unchanged
curl -s $CLBSYNC_ENDPOINT/_emulator/state   # what the CLB holds now
ENV
  echo "Press Ctrl-C to stop."
  while kill -0 "$emu_pid" 2>/dev/null; do sleep 1; done
fi
