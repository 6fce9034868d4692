#!/usr/bin/env bash
# Build (or reuse) kube-apiserver, kubectl and etcd for the e2e control plane, and on request
# kube-controller-manager and kube-scheduler (same module, same flags):
#     build.sh                                          # kube-apiserver kubectl etcd
#     build.sh kube-controller-manager kube-scheduler   # only these (added to the same dir)
#
# Binaries live outside the repo, keyed by sha256(go.mod + go.sum + build flags + go version),
# in ${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/controlplane/<key>/bin/ (cache, flock and
# atomic publishing: ../gobuild.sh).
#
# The LAST line on stdout is the bin dir. Everything else goes to stderr.
# Env: ROUTERS_E2E_CACHE, ROUTERS_E2E_FORCE_BUILD=1 (ignore the cache),
#      ROUTERS_E2E_BUILD_TIMEOUT (seconds per go command), ROUTERS_E2E_LOCK_TIMEOUT (scripts/_limits.sh).
set -euo pipefail
export GOTOOLCHAIN=local CGO_ENABLED=0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../scripts/_limits.sh"
cd "$here"

# The Go toolchain may be installed outside a minimal PATH (e.g. /usr/local/go/bin).
command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"; }
command -v go >/dev/null || { echo "build.sh: 'go' not found in PATH" >&2; exit 127; }

# Versions come from go.mod (module cache metadata; no network needed on a warm machine).
modver() { limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go list -m $1" go list -m -f '{{.Version}}' "$1"; }
modinfo() { # prints "<commit time> <origin commit hash or empty>" of a required module
  limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go list -m $1" go list -m -json "$1" | python3 -c 'import json,sys
d=json.load(sys.stdin)
print(d.get("Time") or "1970-01-01T00:00:00Z", (d.get("Origin") or {}).get("Hash", ""))'
}
# go list -m needs the module metadata; download once up front (no-op when cached).
limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go mod download" go mod download k8s.io/kubernetes go.etcd.io/etcd/server/v3 >&2

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
# Binary -> Go package (etcd with its own version stamp). The default set is what every e2e test
# needs; the controllers are only built when asked for (the Argo Rollouts e2e needs them).
declare -A pkgs=(
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [etcd]="go.etcd.io/etcd/server/v3|$ETCD_LDFLAGS"
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
)
bins=("$@")
[[ ${#bins[@]} -gt 0 ]] || bins=(kube-apiserver kubectl etcd)
specs=()
for b in "${bins[@]}"; do
  [[ -n ${pkgs[$b]:-} ]] || { echo "build.sh: unknown binary '$b' (known: ${!pkgs[*]})" >&2; exit 64; }
  specs+=("$b=${pkgs[$b]}")
done
echo "controlplane: k8s $K8S_VERSION, etcd $ETCD_VERSION" >&2
exec bash "$here/../gobuild.sh" controlplane "$here" "$K8S_LDFLAGS" "${specs[@]}"
