#!/usr/bin/env bash
# A local Kubernetes control plane the way controller-runtime's envtest runs one: a real etcd and
# kube-apiserver (no kubelet, no controller-manager, no scheduler), RBAC enforced, the admin
# authenticated by a client certificate in group system:masters.
#
#   scripts/envtest.sh up      start (or reuse) it, wait for /readyz, print `export KUBECONFIG=...`
#   scripts/envtest.sh down    stop it and remove its state (certs, logs, etcd data)
#   scripts/envtest.sh env     print the export line of the running control plane
#   scripts/envtest.sh status  say whether it runs
#
# Only the export line goes to stdout, so `eval "$(scripts/envtest.sh up)"` works.
# Env: MAILPLANE_ENVTEST_DIR (state: certs, logs, pids, kubeconfig; default ~/.cache/mailplane/envtest),
#      MAILPLANE_ENVTEST_TIMEOUT (seconds to wait for readiness, default 120).
# Binaries come from bin/: `up` runs scripts/tools.sh first, which builds them once and links them there.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/bin"
STATE=${MAILPLANE_ENVTEST_DIR:-$HOME/.cache/mailplane/envtest}
CERTS="$STATE/certs"
KUBECONFIG_PATH="$STATE/kubeconfig"
TIMEOUT=${MAILPLANE_ENVTEST_TIMEOUT:-120}

log() { echo "envtest: $*" >&2; }
die() { log "$*"; exit 1; }

# --- processes -------------------------------------------------------------------------------
# Each process is recorded as "<pid> <marker>"; the marker (a path only this instance uses) must
# appear in /proc/<pid>/cmdline, so a recycled pid is never mistaken for ours.
proc_alive() { # proc_alive <name>
  local f="$STATE/$1.pid" pid marker
  [ -f "$f" ] || return 1
  read -r pid marker <"$f" || return 1
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

proc_start() { # proc_start <name> <marker> <cmd...>; detached, logs in $STATE/<name>.log
  local name=$1 marker=$2
  shift 2
  rm -f "$STATE/$name.pid.tmp"
  # bash writes its own pid, then execs the server: the pid is the server's even if setsid forks.
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c 'echo "$$" >"$0"; exec "$@"' "$STATE/$name.pid.tmp" "$@" \
    >"$STATE/$name.log" 2>&1 </dev/null &
  for _ in $(seq 50); do [ -s "$STATE/$name.pid.tmp" ] && break; sleep 0.1; done
  [ -s "$STATE/$name.pid.tmp" ] || die "$name did not start (see $STATE/$name.log)"
  echo "$(cat "$STATE/$name.pid.tmp") $marker" >"$STATE/$name.pid"
  rm -f "$STATE/$name.pid.tmp"
}

proc_gone() { # proc_gone <pid>: exited (or a zombie waiting to be reaped)
  ! kill -0 "$1" 2>/dev/null || [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" = Z ]
}

proc_stop() { # proc_stop <name>: SIGTERM, then SIGKILL after 15 s
  local pid marker
  proc_alive "$1" || return 0
  read -r pid marker <"$STATE/$1.pid"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do proc_gone "$pid" && return 0; sleep 0.1; done
  log "$1 (pid $pid) ignored SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 50); do proc_gone "$pid" && return 0; sleep 0.1; done
}

# A free 127.0.0.1 port below the usual ephemeral range (32768+), not already picked by this run.
PICKED=" "
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    case $PICKED in *" $p "*) continue ;; esac
    if command -v ss >/dev/null; then
      [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] || continue
    elif (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      continue
    fi
    PICKED+="$p "
    echo "$p"
    return 0
  done
  die "no free port found"
}

# --- certificates (openssl) ------------------------------------------------------------------
gen_certs() {
  mkdir -p "$CERTS"
  local cnf="$CERTS/openssl.cnf"
  cat >"$cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  ca() { # ca <file prefix> <CN>
    openssl req -x509 -new -config "$cnf" -extensions ca "${ec[@]}" -keyout "$CERTS/$1.key" \
      -out "$CERTS/$1.crt" -days 3650 -subj "/CN=$2" 2>/dev/null
  }
  leaf() { # leaf <file prefix> <signing CA prefix> <extensions> <subject>
    openssl req -new -config "$cnf" "${ec[@]}" -keyout "$CERTS/$1.key" -subj "$4" 2>/dev/null |
      openssl x509 -req -CA "$CERTS/$2.crt" -CAkey "$CERTS/$2.key" -set_serial "0x$(openssl rand -hex 16)" \
        -days 365 -extfile "$cnf" -extensions "$3" -out "$CERTS/$1.crt" 2>/dev/null
  }
  ca ca mailplane-envtest-serving-ca
  leaf apiserver ca server /CN=kube-apiserver
  ca client-ca mailplane-envtest-client-ca
  leaf admin client-ca client "/O=system:masters/CN=envtest-admin"
  # service-account token signing key pair
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$CERTS/sa.key" 2>/dev/null
  openssl pkey -in "$CERTS/sa.key" -pubout -out "$CERTS/sa.pub"
  chmod 600 "$CERTS"/*.key
}

b64() { base64 <"$1" | tr -d '\n'; }

write_kubeconfig() { # write_kubeconfig <apiserver port>
  umask 077
  cat >"$KUBECONFIG_PATH" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: envtest
    cluster:
      server: https://127.0.0.1:$1
      certificate-authority-data: $(b64 "$CERTS/ca.crt")
users:
  - name: envtest-admin
    user:
      client-certificate-data: $(b64 "$CERTS/admin.crt")
      client-key-data: $(b64 "$CERTS/admin.key")
contexts:
  - name: envtest
    context:
      cluster: envtest
      user: envtest-admin
current-context: envtest
EOF
}

# --- readiness -------------------------------------------------------------------------------
wait_for() { # wait_for <name> <deadline (SECONDS)> <command...>: until the command succeeds
  local name=$1 deadline=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    proc_alive "$name" || { tail -n 30 "$STATE/$name.log" >&2; die "$name exited (log: $STATE/$name.log)"; }
    [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$STATE/$name.log" >&2; die "$name not ready after ${TIMEOUT}s"; }
    sleep 0.2
  done
}

etcd_healthy() { curl -sf "http://127.0.0.1:$1/health" | grep -q '"health":"true"'; }
apiserver_ready() { [ "$(curl -s --max-time 5 --cacert "$CERTS/ca.crt" "https://127.0.0.1:$1/readyz")" = ok ]; }

apiserver_port() { sed -n 's#^ *server: https://127.0.0.1:\([0-9]*\)$#\1#p' "$KUBECONFIG_PATH" 2>/dev/null; }
running() { # both processes alive and the API server ready
  proc_alive etcd && proc_alive kube-apiserver && [ -f "$KUBECONFIG_PATH" ] && apiserver_ready "$(apiserver_port)"
}

# --- commands --------------------------------------------------------------------------------
down() {
  proc_stop kube-apiserver
  proc_stop etcd
  local data
  data=$(cat "$STATE/etcd-data-dir" 2>/dev/null || true)
  case $data in */mailplane-envtest-etcd.*) rm -rf "$data" ;; esac
  # only what up wrote: MAILPLANE_ENVTEST_DIR may point at a directory that holds other things
  rm -rf "$CERTS"
  rm -f "$STATE"/{etcd,kube-apiserver}.{pid,pid.tmp,log} "$STATE/etcd-data-dir" "$KUBECONFIG_PATH"
  rmdir "$STATE" 2>/dev/null || true
}

up() {
  if running; then
    log "already running ($STATE)"
    echo "export KUBECONFIG=$KUBECONFIG_PATH"
    return 0
  fi
  [ ! -e "$STATE" ] || { log "cleaning up a stale control plane in $STATE"; down; }
  # builds what is missing or out of date, else only checks stamps (milliseconds)
  "$ROOT/scripts/tools.sh" etcd kube-apiserver kubectl >&2
  command -v openssl >/dev/null || die "openssl is needed (apt-get install openssl)"
  local start=$SECONDS deadline=$((SECONDS + TIMEOUT))
  umask 077 # the state holds keys
  mkdir -p "$STATE"
  gen_certs

  local etcd_port peer_port api_port data
  etcd_port=$(free_port)
  peer_port=$(free_port)
  api_port=$(free_port)
  data=$(mktemp -d "${TMPDIR:-/tmp}/mailplane-envtest-etcd.XXXXXX")
  echo "$data" >"$STATE/etcd-data-dir"

  proc_start etcd "$data" "$BIN/etcd" \
    --name=envtest \
    --data-dir="$data" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="envtest=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync=true
  wait_for etcd "$deadline" etcd_healthy "$etcd_port"
  log "etcd ready on 127.0.0.1:$etcd_port after $((SECONDS - start))s"

  # The flags are controller-runtime envtest's defaults (pkg/internal/testing/controlplane).
  proc_start kube-apiserver "$CERTS" "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --cert-dir="$CERTS" \
    --tls-cert-file="$CERTS/apiserver.crt" \
    --tls-private-key-file="$CERTS/apiserver.key" \
    --client-ca-file="$CERTS/client-ca.crt" \
    --bind-address=127.0.0.1 \
    --secure-port="$api_port" \
    --service-account-issuer="https://127.0.0.1:$api_port/" \
    --service-account-key-file="$CERTS/sa.pub" \
    --service-account-signing-key-file="$CERTS/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --authorization-mode=RBAC \
    --allow-privileged=true \
    --disable-admission-plugins=ServiceAccount
  wait_for kube-apiserver "$deadline" apiserver_ready "$api_port"
  write_kubeconfig "$api_port"
  log "kube-apiserver ready on https://127.0.0.1:$api_port after $((SECONDS - start))s (state: $STATE)"
  echo "export KUBECONFIG=$KUBECONFIG_PATH"
}

case ${1:-} in
  up) up ;;
  down)
    down
    log "stopped"
    ;;
  env)
    running || die "not running (scripts/envtest.sh up)"
    echo "export KUBECONFIG=$KUBECONFIG_PATH"
    ;;
  status)
    if running; then log "running: https://127.0.0.1:$(apiserver_port) (state: $STATE)"; else
      log "not running"
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 up|down|env|status" >&2
    exit 2
    ;;
esac
