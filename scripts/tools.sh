#!/usr/bin/env bash
# Builds the envtest control plane and cluster tools from source through the Go module proxy
# (no prebuilt downloads): kube-apiserver, kubectl and etcd from the pinned module in
# test/envtest/, helm with `go install`. Each binary is built once into a cache keyed by its
# version and linked into bin/. A second run only checks the stamps and relinks.
#
#   scripts/tools.sh [etcd|kube-apiserver|kubectl|helm ...]   (default: all four)
#
# Env: MAILPLANE_TOOLS_DIR (cache dir, default ~/.cache/mailplane/tools/<k8s-version>),
#      HELM_VERSION (default below), GO (go binary).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOD="$ROOT/test/envtest"
HELM_VERSION=${HELM_VERSION:-v3.19.5} # the helm 3 line built against k8s.io/client-go 0.34

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$GO" ] || { echo "tools.sh: go not found (set GO=/path/to/go)" >&2; exit 1; }

# Versions come from the wrapper module's go.mod, so bumping a version there is all it takes.
modver() { awk -v m="$1" '{ for (i = 1; i < NF; i++) if ($i == m) { print $(i + 1); exit } }' "$MOD/go.mod"; }
K8S_VERSION=$(modver k8s.io/kubernetes)
ETCD_VERSION=$(modver go.etcd.io/etcd/server/v3)
if [ -z "$K8S_VERSION" ] || [ -z "$ETCD_VERSION" ]; then
  echo "tools.sh: cannot read versions from $MOD/go.mod" >&2
  exit 1
fi

TOOLS_DIR=${MAILPLANE_TOOLS_DIR:-$HOME/.cache/mailplane/tools/$K8S_VERSION}
mkdir -p "$TOOLS_DIR/.stamps" "$ROOT/bin"
exec 9>"$TOOLS_DIR/.lock"
flock 9 # one build at a time per cache dir

# A binary is rebuilt when its stamp (version + hash of the pinned go.sum) changes.
SUM_HASH=$(sha256sum "$MOD/go.sum" | cut -c1-12)
k8s_minor=${K8S_VERSION#v1.}
k8s_minor=${k8s_minor%%.*}
K8S_LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done
HELM_LDFLAGS="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  HELM_LDFLAGS+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

export GOFLAGS="-trimpath -buildvcs=false" CGO_ENABLED=0

stamp_of() {
  case $1 in
    etcd) echo "etcd $ETCD_VERSION $SUM_HASH" ;;
    kube-apiserver | kubectl) echo "$1 $K8S_VERSION $SUM_HASH" ;;
    helm) echo "helm $HELM_VERSION" ;;
    *) echo "tools.sh: unknown tool '$1'" >&2; return 1 ;;
  esac
}

build() { # build <name> <output file>
  case $1 in
    etcd) (cd "$MOD" && nice -n 10 "$GO" build -ldflags "-s -w" -o "$2" ./cmd/etcd) ;;
    kube-apiserver | kubectl)
      (cd "$MOD" && nice -n 10 "$GO" build -ldflags "-s -w $K8S_LDFLAGS" -o "$2" "k8s.io/kubernetes/cmd/$1") ;;
    helm)
      local gobin="$TOOLS_DIR/.gobin"
      rm -rf "$gobin" && mkdir -p "$gobin"
      (cd "$TOOLS_DIR" && GOBIN="$gobin" nice -n 10 "$GO" install -ldflags "-s -w $HELM_LDFLAGS" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") && mv "$gobin/helm" "$2" && rm -rf "$gobin" ;;
  esac
}

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(etcd kube-apiserver kubectl helm)
total_start=$SECONDS
for t in "${tools[@]}"; do
  want=$(stamp_of "$t")
  bin="$TOOLS_DIR/$t"
  if [ -x "$bin" ] && [ "$(cat "$TOOLS_DIR/.stamps/$t" 2>/dev/null)" = "$want" ]; then
    echo "tools: $want: cached"
  else
    echo "tools: $want: building..."
    start=$SECONDS
    rm -f "$bin.tmp"
    if ! build "$t" "$bin.tmp"; then
      rm -f "$bin.tmp"
      echo "tools: $t: build FAILED" >&2
      exit 1
    fi
    mv -f "$bin.tmp" "$bin"
    echo "$want" >"$TOOLS_DIR/.stamps/$t"
    echo "tools: $want: built in $(fmt_secs $((SECONDS - start)))"
  fi
  ln -sfn "$bin" "$ROOT/bin/$t"
done
echo "tools: ready in $(fmt_secs $((SECONDS - total_start))): $TOOLS_DIR ($(du -sh "$TOOLS_DIR" | cut -f1)), linked into bin/"
