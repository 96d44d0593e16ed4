#!/bin/bash
# A real kube-apiserver (v1.20.2, built from Debian bookworm's `kubernetes` source package) plus etcd on
# loopback, for clbsync's integration tests. See testbed/README.md: everything needed is in this script and
# that file (the method comes from the team's runbook "kube-apiserver from Debian", not kept in this repository).
#
#   testbed/kube-apiserver.sh start    build kube-apiserver once (cached), certs once, start etcd + apiserver
#   testbed/kube-apiserver.sh stop     stop both (by recorded pid), remove pid files
#   testbed/kube-apiserver.sh env      print `export KUBECONFIG=...` (and the port) for a shell to eval
#   testbed/kube-apiserver.sh status   say whether it runs; exit 0 if ready, 1 if not
#   testbed/kube-apiserver.sh build [CMD...]
#                                      only install + build the binaries that are missing: kube-apiserver and
#                                      kube-controller-manager by default (the test suite needs both; building
#                                      them together shares one source tree and Go cache)
#
# Everything lives under $CLBSYNC_KUBE_TESTBED (default: $CARGO_TARGET_DIR/kube-testbed, else
# <repo>/target/kube-testbed; a relative CARGO_TARGET_DIR is taken from the repository root). The binaries live in
# $CLBSYNC_KUBE_BIN_DIR (default: <testbed>/bin), so a second testbed (the sandbox's) uses the binaries already
# built for the tests instead of building its own. Ports are picked free at start and recorded in run/ports.env,
# so two checkouts can run side by side. `start` on a running testbed is a no-op. Set KEEP_SRC=1 to keep the
# 1.8 GB source + Go cache tree after the build (default: deleted).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-target}
[[ "$TARGET" = /* ]] || TARGET=$ROOT/$TARGET
K8S=${CLBSYNC_KUBE_TESTBED:-$TARGET/kube-testbed}
BIN_DIR=${CLBSYNC_KUBE_BIN_DIR:-$K8S/bin}
BIN=$BIN_DIR/kube-apiserver
P=$K8S/pki
R=$K8S/run
ADMIN_TOKEN=test-admin-token

log() { echo "kube-apiserver.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# apt_install build|run: installs only the packages whose command/file is missing, for building the binaries
# (Go, the reflect2 fix, the source package) or for running them (etcd, openssl, curl).
apt_install() {
  local missing=()
  if [ "$1" = build ]; then
    command -v go >/dev/null || missing+=(golang-go)
    command -v rsync >/dev/null || missing+=(rsync)
    [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || missing+=(golang-github-modern-go-reflect2-dev)
    if [ ! -f /etc/apt/sources.list.d/debian-src.sources ]; then
      # The image's apt sources are binary-only; `apt-get source` needs a deb-src entry.
      cat > /etc/apt/sources.list.d/debian-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
      APT_UPDATE=1
    fi
  fi
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -gt 0 ] || [ -n "${APT_UPDATE:-}" ]; then
    log "apt: updating package lists"
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
}

# build [CMD...]: builds the missing ones of CMD (default: both binaries), from one source tree.
build() {
  local want=("$@") missing=() cmd
  [ ${#want[@]} -gt 0 ] || want=(kube-apiserver kube-controller-manager)
  for cmd in "${want[@]}"; do
    case "$cmd" in kube-apiserver|kube-controller-manager) ;; *) die "build: unknown binary $cmd" ;; esac
    [ -x "$BIN_DIR/$cmd" ] || missing+=("$cmd")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  # Two testbeds sharing the bin dir (the tests', the sandbox's) build it one at a time, and only once.
  mkdir -p "$BIN_DIR" "$K8S/src"
  exec 8>"$BIN_DIR/.build.lock"
  flock 8
  local still=()
  for cmd in "${missing[@]}"; do [ -x "$BIN_DIR/$cmd" ] || still+=("$cmd"); done
  [ ${#still[@]} -gt 0 ] || return 0
  missing=("${still[@]}")
  apt_install build
  local t0; t0=$(date +%s%N)
  (
    cd "$K8S/src"
    ls -d kubernetes-*/ >/dev/null 2>&1 || apt-get source -q kubernetes >/dev/null
    cd "$K8S"/src/kubernetes-*/
    # Vendored reflect2 v1.0.1 segfaults the apiserver under Go >= 1.18 whenever it pretty-prints JSON
    # (curl User-Agent, ?pretty=true). Debian's 1.0.2 has the same API and is fixed.
    local d=vendor/github.com/modern-go/reflect2 s=/usr/share/gocode/src/github.com/modern-go/reflect2
    rm -f "$d"/*.go "$d"/*.s
    cp "$s"/*.go "$s"/*.s "$d"/
    # GOPATH-mode build like debian/rules; it also generates zz_generated.openapi.go. No network needed.
    # One source tree and one Go cache for both binaries: the second build reuses most of the first.
    for cmd in "${missing[@]}"; do
      log "building $cmd (kube-apiserver about 200 s cold on 2 cores, kube-controller-manager about 200 s more)"
      CGO_ENABLED=0 GOPROXY=off GOFLAGS= GO111MODULE=off make WHAT=cmd/$cmd >"$K8S/build-$cmd.log" 2>&1 \
        || die "building $cmd failed, see $K8S/build-$cmd.log"
      cp "_output/bin/$cmd" "$BIN_DIR/$cmd.tmp"
      mv "$BIN_DIR/$cmd.tmp" "$BIN_DIR/$cmd"
    done
  )
  [ -n "${KEEP_SRC:-}" ] || rm -rf "$K8S/src"
  log "built ${missing[*]} in $(ms_since "$t0") ms into $BIN_DIR"
}

certs() {
  if [ -f "$P/tokens.csv" ]; then return 0; fi
  mkdir -p "$P"
  (
    cd "$P"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -keyout ca.key -out ca.crt \
      -subj "/CN=clbsync-test-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc" \
      > apiserver.ext
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=clientAuth" > admin.ext
    # O=system:masters => cluster-admin through RBAC's bootstrap roles.
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
      -extfile admin.ext -out admin.crt 2>/dev/null
    # Service-account signing keys: required flags in 1.20, and they make TokenRequest work.
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # token,user,uid,"groups": the viewer authenticates but has no grants (403 on everything).
    printf '%s\n' "$ADMIN_TOKEN,admin,admin-uid,\"system:masters\"" 'test-viewer-token,viewer,viewer-uid' > tokens.csv.tmp
    rm -f ./*.csr ./*.ext
    openssl verify -CAfile ca.crt apiserver.crt admin.crt >/dev/null
    mv tokens.csv.tmp tokens.csv
  )
}

# The pid in run/$1.pid is alive and still runs $1 (not a reused pid).
alive() {
  local pid
  [ -f "$R/$1.pid" ] || return 1
  pid=$(cat "$R/$1.pid")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$1"
}

ready() {
  [ -f "$R/ports.env" ] || return 1
  # shellcheck source=/dev/null
  . "$R/ports.env"
  curl -sf --max-time 2 --cacert "$P/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null
}

free_port() {  # a loopback TCP port nobody listens on now, and not already handed out by this script
  local used port
  used=$(ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u)
  for _ in $(seq 1 200); do
    port=$(( 20000 + RANDOM % 40000 ))
    if ! grep -qx "$port" <<<"$used" && [[ " ${TAKEN:-} " != *" $port "* ]]; then
      TAKEN="${TAKEN:-} $port"
      echo "$port"
      return 0
    fi
  done
  die "no free port found"
}

stop() {
  local n pid
  for n in kube-apiserver etcd; do
    [ -f "$R/$n.pid" ] || continue
    pid=$(cat "$R/$n.pid")
    if alive "$n"; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      log "stopped $n (pid $pid)"
    fi
    rm -f "$R/$n.pid"
  done
  rm -f "$R/ports.env"
}

write_kubeconfig() {
  local b64ca; b64ca=$(base64 -w0 "$P/ca.crt")
  cat > "$K8S/kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $b64ca
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
- name: admin-cert
  user:
    client-certificate-data: $(base64 -w0 "$P/admin.crt")
    client-key-data: $(base64 -w0 "$P/admin.key")
- name: viewer
  user:
    token: test-viewer-token
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
- name: test-cert
  context: {cluster: test, user: admin-cert, namespace: default}
- name: test-viewer
  context: {cluster: test, user: viewer, namespace: default}
current-context: test
EOF
  mv "$K8S/kubeconfig.tmp" "$K8S/kubeconfig"
}

start() {
  # Both alive but not answering within curl's 2 s (a loaded machine, a large list in flight): wait for it rather
  # than restart a server other test runs may be using.
  local i
  for i in $(seq 1 30); do
    alive kube-apiserver && alive etcd || break
    if ready; then
      log "already running at https://127.0.0.1:$API_PORT"
      return 0
    fi
    [ "$i" -eq 1 ] && log "running but not ready: waiting up to 60 s before restarting it"
    sleep 2
  done
  stop  # half-started leftovers (one process dead, stale pid files)
  build kube-apiserver   # the controller-manager only when its own script asks for it
  apt_install run
  certs
  mkdir -p "$R"
  local t0 etcd_port etcd_peer_port
  t0=$(date +%s%N)
  etcd_port=$(free_port); etcd_peer_port=$(free_port); API_PORT=$(free_port)
  # The etcd data survives restarts (reset: stop, then rm -rf target/kube-testbed/etcd-data).
  etcd --name test-etcd --data-dir "$K8S/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "test-etcd=http://127.0.0.1:$etcd_peer_port" \
    >"$R/etcd.log" 2>&1 </dev/null 9>&- &
  echo $! > "$R/etcd.pid"
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null || { stop; die "etcd did not become healthy, see $R/etcd.log"; }
  # --insecure-port=0: 1.20 would otherwise open an unauthenticated 127.0.0.1:8080.
  # No kubelet/controllers run, so no `default` ServiceAccount exists: disable that admission plugin.
  "$BIN" \
    --bind-address=127.0.0.1 --secure-port="$API_PORT" --insecure-port=0 \
    --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
    --client-ca-file="$P/ca.crt" --token-auth-file="$P/tokens.csv" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range=10.96.0.0/24 \
    --disable-admission-plugins=ServiceAccount \
    >"$R/kube-apiserver.log" 2>&1 </dev/null 9>&- &
  echo $! > "$R/kube-apiserver.pid"
  printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPI_PORT=%s\n' "$etcd_port" "$etcd_peer_port" "$API_PORT" > "$R/ports.env"
  for _ in $(seq 1 600); do
    ready && break
    alive kube-apiserver || break
    sleep 0.1
  done
  ready || { stop; die "kube-apiserver did not become ready, see $R/kube-apiserver.log"; }
  write_kubeconfig
  log "ready after $(ms_since "$t0") ms at https://127.0.0.1:$API_PORT (etcd pid $(cat "$R/etcd.pid"), apiserver pid $(cat "$R/kube-apiserver.pid"))"
}

env_() {
  ready || die "not running: run testbed/kube-apiserver.sh start"
  echo "export KUBECONFIG=$K8S/kubeconfig"
  echo "export CLBSYNC_TEST_KUBECONFIG=$K8S/kubeconfig"
  echo "export CLBSYNC_KUBE_API_PORT=$API_PORT"
}

status() {
  if alive kube-apiserver && alive etcd && ready; then
    echo "running: https://127.0.0.1:$API_PORT (apiserver pid $(cat "$R/kube-apiserver.pid"), etcd pid $(cat "$R/etcd.pid"))"
  else
    echo "not running"
    return 1
  fi
}

# One invocation at a time per testbed directory (parallel CI steps may all call `start`).
mkdir -p "$K8S"
exec 9>"$K8S/.lock"
flock 9

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) env_ ;;
  status) status ;;
  build) shift; build "$@" ;;
  *) echo "usage: $0 start|stop|env|status|build [kube-apiserver|kube-controller-manager]..." >&2; exit 2 ;;
esac
