#!/usr/bin/env bash
# Build (or reuse) kube-apiserver, kubectl and etcd for the e2e control plane.
#
# Binaries live outside the repo, keyed by sha256(go.mod + go.sum + build flags + go version):
#     ${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/controlplane/<key>/bin/
# A cache hit costs well under a second; a miss builds into a temp dir and renames it into
# place (atomic; concurrent callers are serialised with flock). GOMODCACHE/GOCACHE are Go's
# (the machine defaults unless set) so a rebuild after a go.sum change reuses compiled packages.
# Every go command runs under an explicit limit (scripts/_limits.sh).
#
# The LAST line on stdout is the bin dir. Everything else goes to stderr.
# Env: ROUTERS_E2E_CACHE, ROUTERS_E2E_FORCE_BUILD=1 (ignore the cache), GOMODCACHE, GOCACHE,
#      ROUTERS_E2E_GO_TIMEOUT, ROUTERS_E2E_LOCK_TIMEOUT.
set -euo pipefail
export GOTOOLCHAIN=local CGO_ENABLED=0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../scripts/_limits.sh"
cd "$here"

# The Go toolchain may be installed outside a minimal PATH (e.g. /usr/local/go/bin).
command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"; }
command -v go >/dev/null || { echo "build.sh: 'go' not found in PATH" >&2; exit 127; }

cache_root=${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/controlplane
mkdir -p "$cache_root"

# Versions come from go.mod (module cache metadata; no network needed on a warm machine).
modver() { limit "$ROUTERS_E2E_GO_TIMEOUT" "go list -m $1" go list -m -f '{{.Version}}' "$1"; }
modinfo() { # prints "<commit time> <origin commit hash or empty>" of a required module
  limit "$ROUTERS_E2E_GO_TIMEOUT" "go list -m $1" go list -m -json "$1" | python3 -c 'import json,sys
d=json.load(sys.stdin)
print(d.get("Time") or "1970-01-01T00:00:00Z", (d.get("Origin") or {}).get("Hash", ""))'
}
# go list -m needs the module metadata; download once up front (no-op when cached).
limit "$ROUTERS_E2E_GO_TIMEOUT" "go mod download" go mod download k8s.io/kubernetes go.etcd.io/etcd/server/v3 >&2

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
bins=(kube-apiserver kubectl etcd)

have_all() { local b; for b in "${bins[@]}"; do [[ -x "$1/bin/$b" ]] || return 1; done; }

if [[ ${ROUTERS_E2E_FORCE_BUILD:-} != 1 ]] && have_all "$final"; then
  echo "controlplane: cache hit $final (k8s $K8S_VERSION, etcd $ETCD_VERSION)" >&2
  echo "$final/bin"
  exit 0
fi

exec 9>"$cache_root/.build.lock"
lock_fd 9 "$cache_root/.build.lock"
# Someone else may have finished the build while we waited for the lock.
if [[ ${ROUTERS_E2E_FORCE_BUILD:-} != 1 ]] && have_all "$final"; then
  echo "controlplane: cache hit $final (built concurrently)" >&2
  echo "$final/bin"
  exit 0
fi

tmp=$(mktemp -d "$cache_root/.tmp.$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/bin"
echo "controlplane: cache miss, building k8s $K8S_VERSION + etcd $ETCD_VERSION into $final ($(go version))" >&2
start=$(date +%s)
limit "$ROUTERS_E2E_GO_TIMEOUT" "go build kube-apiserver" \
  go build "${BUILD_FLAGS[@]}" -ldflags "$K8S_LDFLAGS" -o "$tmp/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
echo "controlplane: kube-apiserver built after $(( $(date +%s) - start ))s" >&2
limit "$ROUTERS_E2E_GO_TIMEOUT" "go build kubectl" \
  go build "${BUILD_FLAGS[@]}" -ldflags "$K8S_LDFLAGS" -o "$tmp/bin/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
echo "controlplane: kubectl built after $(( $(date +%s) - start ))s" >&2
limit "$ROUTERS_E2E_GO_TIMEOUT" "go build etcd" \
  go build "${BUILD_FLAGS[@]}" -ldflags "$ETCD_LDFLAGS" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3 >&2
echo "controlplane: etcd built after $(( $(date +%s) - start ))s" >&2

# Sanity check before publishing.
limit 120 "kube-apiserver --version" "$tmp/bin/kube-apiserver" --version >&2
limit 120 "kubectl version" "$tmp/bin/kubectl" version --client >&2
limit 120 "etcd --version" "$tmp/bin/etcd" --version >&2
cat > "$tmp/build-info.txt" <<INFO
k8s.io/kubernetes $K8S_VERSION
go.etcd.io/etcd/server/v3 $ETCD_VERSION
$(go version)
build flags: CGO_ENABLED=$CGO_ENABLED ${BUILD_FLAGS[*]}
built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start ))s
INFO

rm -rf "$final"
mv "$tmp" "$final"
trap - EXIT
# Prune old builds (other go.sum / flags): keep the 3 most recent.
ls -1dt "$cache_root"/*/ 2>/dev/null | tail -n +4 | while read -r old; do
  echo "controlplane: pruning old build $old" >&2
  rm -rf "$old"
done
echo "controlplane: built in $(( $(date +%s) - start ))s -> $final" >&2
echo "$final/bin"
