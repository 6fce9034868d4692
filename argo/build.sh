#!/usr/bin/env bash
# Build (or reuse) canary-routers-argo, the Argo Rollouts traffic-router plugin bridge.
#
#     argo/build.sh           the bridge (what Argo Rollouts runs as a trafficRouterPlugins entry)
#     argo/build.sh driver    argo-driver: Argo's own plugin client, for e2e/test_argo_protocol.py
#
# The binary lives outside the repo, keyed by sha256(target + go.mod + go.sum + Go sources + flags +
# go version):
#     ${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/argo-<target>/<key>/bin/<binary>
# A cache hit costs well under a second; a miss builds into a temp dir and renames it into
# place (atomic; concurrent callers are serialised with flock). GOMODCACHE/GOCACHE are the
# machine defaults, shared with the other Go builds of this repository.
#
# The LAST line on stdout is the path of the binary. Everything else goes to stderr.
# Env: ROUTERS_E2E_CACHE, ROUTERS_E2E_FORCE_BUILD=1 (ignore the cache),
#      ROUTERS_E2E_BUILD_TIMEOUT (seconds one go command may take: a cold build downloads the
#      modules), ROUTERS_E2E_LOCK_TIMEOUT (seconds to wait for a concurrent build), as in
#      ../scripts/_limits.sh.
set -euo pipefail
export GOTOOLCHAIN=local CGO_ENABLED=0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../scripts/_limits.sh"
cd "$here"

command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"; }
command -v go >/dev/null || { echo "build.sh: 'go' not found in PATH" >&2; exit 127; }

target=${1:-bridge}
case "$target" in
  bridge) bin=canary-routers-argo pkg=. sources=(. ./internal) ;;
  driver) bin=argo-driver pkg=./cmd/argo-driver sources=(./cmd/argo-driver) ;;
  *) echo "usage: $0 [bridge|driver]" >&2; exit 64 ;;
esac
cache_root=${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/argo-$target
mkdir -p "$cache_root"

BUILD_FLAGS=(-trimpath -p 2 -pgo=off)
LDFLAGS="-s -w"

key=$( {
  echo "format=1 target=$target"
  cat go.mod go.sum
  for dir in "${sources[@]}"; do
    if [[ $dir == . ]]; then find . -maxdepth 1 -name '*.go' -not -name '*_test.go'; else find "$dir" -name '*.go' -not -name '*_test.go'; fi
  done | LC_ALL=C sort | xargs cat
  echo "CGO_ENABLED=$CGO_ENABLED GOOS=$(go env GOOS) GOARCH=$(go env GOARCH) GOAMD64=$(go env GOAMD64)"
  echo "flags=${BUILD_FLAGS[*]} GOFLAGS=$(go env GOFLAGS)"
  echo "ldflags=$LDFLAGS"
  go version
} | sha256sum | cut -c1-16)

final="$cache_root/$key"

if [[ ${ROUTERS_E2E_FORCE_BUILD:-} != 1 ]] && [[ -x "$final/bin/$bin" ]]; then
  echo "argo-$target: cache hit $final" >&2
  echo "$final/bin/$bin"
  exit 0
fi

exec 9>"$cache_root/.build.lock"
lock_fd 9 "$cache_root/.build.lock"
if [[ ${ROUTERS_E2E_FORCE_BUILD:-} != 1 ]] && [[ -x "$final/bin/$bin" ]]; then
  echo "argo-$target: cache hit $final (built concurrently)" >&2
  echo "$final/bin/$bin"
  exit 0
fi

tmp=$(mktemp -d "$cache_root/.tmp.$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/bin"
echo "argo-$target: cache miss, building into $final ($(go version))" >&2
start=$(date +%s)
limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go build $bin" \
  go build "${BUILD_FLAGS[@]}" -ldflags "$LDFLAGS" -o "$tmp/bin/$bin" "$pkg" >&2
[[ $target != bridge ]] || limit 30 "$bin --version" "$tmp/bin/$bin" --version >&2
cat > "$tmp/build-info.txt" <<INFO
$target: $([[ $target != bridge ]] || limit 30 "$bin --version" "$tmp/bin/$bin" --version)
$(go version)
build flags: CGO_ENABLED=$CGO_ENABLED ${BUILD_FLAGS[*]} -ldflags "$LDFLAGS"
built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start ))s
INFO

rm -rf "$final"
mv "$tmp" "$final"
trap - EXIT
ls -1dt "$cache_root"/*/ 2>/dev/null | tail -n +4 | while read -r old; do
  echo "argo-$target: pruning old build $old" >&2
  rm -rf "$old"
done
echo "argo-$target: built in $(( $(date +%s) - start ))s -> $final" >&2
echo "$final/bin/$bin"
