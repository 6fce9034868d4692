#!/usr/bin/env bash
# Build (or reuse) Traefik for e2e/test_traffic.py, from the Go module proxy (see go.mod).
#
# The binary lives outside the repo, keyed by sha256(go.mod + go.sum + ext stub + flags + go version):
#     ${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/traefik/<key>/bin/traefik
# A cache hit costs well under a second; a miss builds into a temp dir and renames it into
# place (atomic; concurrent callers are serialised with flock).
#
# go.sum is complete, so a build never consults the checksum database. When regenerating it
# (`go mod tidy` after a bump), the database lacks a few recent lego DNS-provider modules;
# tidy needs GONOSUMDB=github.com/yandex-cloud,github.com/nrdcg,github.com/go-acme,github.com/akamai
#
# The LAST line on stdout is the bin dir. Everything else goes to stderr.
# Env: ROUTERS_E2E_TRAEFIK_CACHE (default ${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/traefik),
#      ROUTERS_E2E_FORCE_BUILD=1 (ignore the cache), GOMODCACHE, GOCACHE,
#      ROUTERS_E2E_GO_TIMEOUT, ROUTERS_E2E_LOCK_TIMEOUT (scripts/_limits.sh).
set -euo pipefail
export GOTOOLCHAIN=local CGO_ENABLED=0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../scripts/_limits.sh"
cd "$here"

command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"; }
command -v go >/dev/null || { echo "build.sh: 'go' not found in PATH" >&2; exit 127; }

cache_root=${ROUTERS_E2E_TRAEFIK_CACHE:-${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/traefik}
mkdir -p "$cache_root"

pkg=github.com/traefik/traefik/v3
TRAEFIK_VERSION=$(limit "$ROUTERS_E2E_GO_TIMEOUT" "go list -m $pkg" go list -m -f '{{.Version}}' "$pkg")
LDFLAGS="-s -w -X $pkg/pkg/version.Version=${TRAEFIK_VERSION} -X $pkg/pkg/version.Codename=canary-routers-e2e"
BUILD_FLAGS=(-trimpath -p 2 -pgo=off)

key=$( {
  echo "format=1"
  cat go.mod go.sum ext/go.mod ext/*.go
  echo "CGO_ENABLED=$CGO_ENABLED GOOS=$(go env GOOS) GOARCH=$(go env GOARCH) GOAMD64=$(go env GOAMD64)"
  echo "flags=${BUILD_FLAGS[*]} GOFLAGS=$(go env GOFLAGS)"
  echo "ldflags=$LDFLAGS"
  go version
} | sha256sum | cut -c1-16)

final="$cache_root/$key"

if [[ ${ROUTERS_E2E_FORCE_BUILD:-} != 1 ]] && [[ -x "$final/bin/traefik" ]]; then
  echo "traefik: cache hit $final ($TRAEFIK_VERSION)" >&2
  echo "$final/bin"
  exit 0
fi

exec 9>"$cache_root/.build.lock"
lock_fd 9 "$cache_root/.build.lock"
if [[ ${ROUTERS_E2E_FORCE_BUILD:-} != 1 ]] && [[ -x "$final/bin/traefik" ]]; then
  echo "traefik: cache hit $final (built concurrently)" >&2
  echo "$final/bin"
  exit 0
fi

tmp=$(mktemp -d "$cache_root/.tmp.$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/bin"
echo "traefik: cache miss, building $TRAEFIK_VERSION into $final ($(go version))" >&2
start=$(date +%s)
limit "$ROUTERS_E2E_GO_TIMEOUT" "go build traefik" \
  go build "${BUILD_FLAGS[@]}" -ldflags "$LDFLAGS" -o "$tmp/bin/traefik" "$pkg/cmd/traefik" >&2
limit 120 "traefik version" "$tmp/bin/traefik" version >&2
cat > "$tmp/build-info.txt" <<INFO
$pkg $TRAEFIK_VERSION
$(go version)
build flags: CGO_ENABLED=$CGO_ENABLED ${BUILD_FLAGS[*]}
built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start ))s
INFO

rm -rf "$final"
mv "$tmp" "$final"
trap - EXIT
ls -1dt "$cache_root"/*/ 2>/dev/null | tail -n +4 | while read -r old; do
  echo "traefik: pruning old build $old" >&2
  rm -rf "$old"
done
echo "traefik: built in $(( $(date +%s) - start ))s -> $final" >&2
echo "$final/bin"
