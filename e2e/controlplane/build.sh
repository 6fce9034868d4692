#!/usr/bin/env bash
# Build (or reuse) kube-apiserver, kubectl and etcd for the e2e control plane, and on request
# kube-controller-manager and kube-scheduler (same module, same flags):
#     build.sh                                          # kube-apiserver kubectl etcd
#     build.sh kube-controller-manager kube-scheduler   # only these (added to the same dir)
#
# Binaries live outside the repo, keyed by sha256(go.mod + go.sum + build flags + go version):
#     ${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/controlplane/<key>/bin/
# A cache hit costs well under a second; a miss builds the missing binaries into a temp dir and
# renames each into place (atomic; concurrent callers are serialised with flock). GOMODCACHE/GOCACHE are the
# machine defaults so a rebuild after a go.sum change reuses compiled packages.
#
# The LAST line on stdout is the bin dir. Everything else goes to stderr.
# Env: ROUTERS_E2E_CACHE, ROUTERS_E2E_FORCE_BUILD=1 (ignore the cache),
#      ROUTERS_E2E_BUILD_TIMEOUT (seconds per go build, default 1800).
set -euo pipefail
export GOTOOLCHAIN=local CGO_ENABLED=0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

# The Go toolchain may be installed outside a minimal PATH (e.g. /usr/local/go/bin).
command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"; }
command -v go >/dev/null || { echo "build.sh: 'go' not found in PATH" >&2; exit 127; }

cache_root=${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/controlplane
mkdir -p "$cache_root"

# Versions come from go.mod (module cache metadata; no network needed on a warm machine).
modver() { go list -m -f '{{.Version}}' "$1"; }
modinfo() { # prints "<commit time> <origin commit hash or empty>" of a required module
  go list -m -json "$1" | python3 -c 'import json,sys
d=json.load(sys.stdin)
print(d.get("Time") or "1970-01-01T00:00:00Z", (d.get("Origin") or {}).get("Hash", ""))'
}
# go list -m needs the module metadata; download once up front (no-op when cached).
go mod download k8s.io/kubernetes go.etcd.io/etcd/server/v3 >&2

K8S_VERSION=$(modver k8s.io/kubernetes)
ETCD_VERSION=$(modver go.etcd.io/etcd/server/v3)
[[ $K8S_VERSION =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || { echo "unexpected k8s version $K8S_VERSION" >&2; exit 1; }
K8S_MAJOR=${BASH_REMATCH[1]} K8S_MINOR=${BASH_REMATCH[2]}
read -r K8S_TIME K8S_COMMIT < <(modinfo k8s.io/kubernetes)
read -r _ ETCD_COMMIT < <(modinfo go.etcd.io/etcd/server/v3)
K8S_TIME=${K8S_TIME:-1970-01-01T00:00:00Z}
# Normalise to the format hack/lib/version.sh uses (seconds, Z).
K8S_BUILD_DATE=$(date -u -d "$K8S_TIME" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo "$K8S_TIME")

ldx=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldx+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
  ldx+=" -X ${pkg}.gitMajor=${K8S_MAJOR}"
  ldx+=" -X ${pkg}.gitMinor=${K8S_MINOR}"
  ldx+=" -X ${pkg}.gitCommit=${K8S_COMMIT}"
  ldx+=" -X ${pkg}.gitTreeState=clean"
  ldx+=" -X ${pkg}.buildDate=${K8S_BUILD_DATE}"
done
K8S_LDFLAGS="-s -w${ldx}"
ETCD_LDFLAGS="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_COMMIT:-${ETCD_VERSION}}"
BUILD_FLAGS=(-trimpath -p 2 -pgo=off)

key=$( {
  echo "format=1"
  cat go.mod go.sum
  echo "CGO_ENABLED=$CGO_ENABLED GOOS=$(go env GOOS) GOARCH=$(go env GOARCH) GOAMD64=$(go env GOAMD64)"
  echo "flags=${BUILD_FLAGS[*]} GOFLAGS=$(go env GOFLAGS)"
  echo "k8s-ldflags=$K8S_LDFLAGS"
  echo "etcd-ldflags=$ETCD_LDFLAGS"
  go version
} | sha256sum | cut -c1-16)

final="$cache_root/$key"
# Binary -> Go package. The default set is what every e2e test needs; the controllers are only
# built when asked for (the Argo Rollouts e2e needs them), into the same key dir.
declare -A pkgs=(
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [etcd]=go.etcd.io/etcd/server/v3
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
)
bins=("$@")
[[ ${#bins[@]} -gt 0 ]] || bins=(kube-apiserver kubectl etcd)
for b in "${bins[@]}"; do
  [[ -n ${pkgs[$b]:-} ]] || { echo "build.sh: unknown binary '$b' (known: ${!pkgs[*]})" >&2; exit 64; }
done
# Seconds one `go build` may take before it is killed (a cold kube-apiserver takes ~4 min here).
build_timeout=${ROUTERS_E2E_BUILD_TIMEOUT:-1800}

missing() { local b; for b in "${bins[@]}"; do [[ -x "$final/bin/$b" ]] || echo "$b"; done; }

if [[ ${ROUTERS_E2E_FORCE_BUILD:-} != 1 ]] && [[ -z $(missing) ]]; then
  echo "controlplane: cache hit $final (k8s $K8S_VERSION, etcd $ETCD_VERSION)" >&2
  echo "$final/bin"
  exit 0
fi

exec 9>"$cache_root/.build.lock"
flock 9
# Someone else may have finished the build while we waited for the lock.
if [[ ${ROUTERS_E2E_FORCE_BUILD:-} == 1 ]]; then
  todo=("${bins[@]}")
else
  mapfile -t todo < <(missing)
fi
if [[ ${#todo[@]} -eq 0 ]]; then
  echo "controlplane: cache hit $final (built concurrently)" >&2
  echo "$final/bin"
  exit 0
fi

tmp=$(mktemp -d "$cache_root/.tmp.$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/bin"
echo "controlplane: cache miss, building ${todo[*]} (k8s $K8S_VERSION, etcd $ETCD_VERSION) into $final ($(go version))" >&2
start=$(date +%s)
for b in "${todo[@]}"; do
  ldflags=$K8S_LDFLAGS
  [[ $b == etcd ]] && ldflags=$ETCD_LDFLAGS
  timeout "$build_timeout" go build "${BUILD_FLAGS[@]}" -ldflags "$ldflags" -o "$tmp/bin/$b" "${pkgs[$b]}" >&2
  # Sanity check before publishing.
  case $b in
    kubectl) timeout 30 "$tmp/bin/$b" version --client >&2 ;;
    *) timeout 30 "$tmp/bin/$b" --version >&2 ;;
  esac
  echo "controlplane: $b built after $(( $(date +%s) - start ))s" >&2
done

mkdir -p "$final/bin"
chmod 755 "$final"
for b in "${todo[@]}"; do mv -f "$tmp/bin/$b" "$final/bin/$b"; done  # one atomic rename each
touch "$final"  # newest: survives the pruning below
cat >> "$final/build-info.txt" <<INFO
k8s.io/kubernetes $K8S_VERSION
go.etcd.io/etcd/server/v3 $ETCD_VERSION
$(go version)
build flags: CGO_ENABLED=$CGO_ENABLED ${BUILD_FLAGS[*]}
built ${todo[*]}: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start ))s
INFO
# Prune old builds (other go.sum / flags): keep the 3 most recent.
ls -1dt "$cache_root"/*/ 2>/dev/null | tail -n +4 | while read -r old; do
  echo "controlplane: pruning old build $old" >&2
  rm -rf "$old"
done
echo "controlplane: built in $(( $(date +%s) - start ))s -> $final" >&2
echo "$final/bin"
