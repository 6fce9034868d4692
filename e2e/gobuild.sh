#!/usr/bin/env bash
# Build (or reuse) Go binaries of one e2e tools module, cached outside the repo.
#
#   gobuild.sh NAME MODULE_DIR LDFLAGS BIN=PACKAGE[|BIN_LDFLAGS] [...]
#
# Binaries live in ${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/NAME/<key>/bin/, with
# <key> = sha256(MODULE_DIR/go.mod + go.sum + any Go sources/nested go.mod under MODULE_DIR +
# build flags + LDFLAGS + go env + go version).
# BIN_LDFLAGS (after a |) replaces LDFLAGS for one binary; like LDFLAGS it must follow from
# go.mod/go.sum (version stamps), since only LDFLAGS is part of the key. Binaries are built on
# request: asking for more adds them to the same key dir. A hit costs well under a second; a
# miss builds the missing binaries into a temp dir and renames each into place (atomic;
# concurrent callers are serialised with flock; the 3 newest keys are kept).
# GOMODCACHE/GOCACHE stay at Go's defaults, so a rebuild after a go.sum change reuses compiled
# packages. Used by e2e/controlplane/build.sh, e2e/kwok/build.sh, e2e/argo-controller/build.sh,
# e2e/traefik/build.sh, argo/build.sh. Every go command and the lock wait are limited (scripts/_limits.sh).
#
# The LAST line on stdout is the bin dir; everything else goes to stderr.
# Env: ROUTERS_E2E_CACHE, ROUTERS_E2E_FORCE_BUILD=1 (ignore the cache),
#      ROUTERS_E2E_BUILD_TIMEOUT (seconds one go command may take), ROUTERS_E2E_LOCK_TIMEOUT
#      (seconds to wait for a concurrent build of the same cache): scripts/_limits.sh.
set -euo pipefail
export GOTOOLCHAIN=local CGO_ENABLED=0
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/_limits.sh"
[[ $# -ge 4 ]] || { echo "usage: gobuild.sh NAME MODULE_DIR LDFLAGS BIN=PACKAGE[|LDFLAGS]..." >&2; exit 64; }
name=$1 module_dir=$(cd "$2" && pwd) ldflags=$3
shift 3
command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"; }
command -v go >/dev/null || { echo "gobuild.sh: 'go' not found in PATH" >&2; exit 127; }
cd "$module_dir"

declare -A pkgs=() bin_ldflags=()
bins=()
for spec in "$@"; do
  [[ $spec == *=* ]] || { echo "gobuild.sh: expected BIN=PACKAGE, got '$spec'" >&2; exit 64; }
  b=${spec%%=*} rest=${spec#*=}
  pkgs[$b]=${rest%%|*}
  bin_ldflags[$b]=$ldflags
  [[ $rest == *"|"* ]] && bin_ldflags[$b]=${rest#*|}
  bins+=("$b")
done
BUILD_FLAGS=(-trimpath -p 2 -pgo=off)

cache_root=${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/$name
mkdir -p "$cache_root"
key=$( {
  echo "format=1"
  cat go.mod go.sum
  # Go sources inside MODULE_DIR (a local replace such as traefik's ./ext stand-in) are built too.
  find . \( -name '*.go' -not -name '*_test.go' \) -o \( -mindepth 2 -name go.mod \) | LC_ALL=C sort | xargs -r cat
  echo "CGO_ENABLED=$CGO_ENABLED GOOS=$(go env GOOS) GOARCH=$(go env GOARCH) GOAMD64=$(go env GOAMD64)"
  echo "flags=${BUILD_FLAGS[*]} GOFLAGS=$(go env GOFLAGS)"
  echo "ldflags=$ldflags"
  go version
} | sha256sum | cut -c1-16)
final="$cache_root/$key"

missing() { local b; for b in "${bins[@]}"; do [[ -x "$final/bin/$b" ]] || echo "$b"; done; }

if [[ ${ROUTERS_E2E_FORCE_BUILD:-} != 1 ]] && [[ -z $(missing) ]]; then
  echo "$name: cache hit $final" >&2
  echo "$final/bin"
  exit 0
fi

exec 9>"$cache_root/.build.lock"
lock_fd 9 "$cache_root/.build.lock"
if [[ ${ROUTERS_E2E_FORCE_BUILD:-} == 1 ]]; then
  todo=("${bins[@]}")
else
  mapfile -t todo < <(missing)  # someone may have built them while we waited
fi
if [[ ${#todo[@]} -eq 0 ]]; then
  echo "$name: cache hit $final (built concurrently)" >&2
  echo "$final/bin"
  exit 0
fi

tmp=$(mktemp -d "$cache_root/.tmp.$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
echo "$name: cache miss, building ${todo[*]} into $final ($(go version))" >&2
start=$(date +%s)
# Module downloads first, bounded on their own (the proxy is the only network used).
limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go mod download ($name)" go mod download >&2
for b in "${todo[@]}"; do
  limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go build $b" \
    go build "${BUILD_FLAGS[@]}" -ldflags "${bin_ldflags[$b]}" -o "$tmp/bin/$b" "${pkgs[$b]}" >&2
  limit 30 "$b --help" "$tmp/bin/$b" --help >/dev/null 2>&1 || { echo "$name: $b --help failed" >&2; exit 1; }
  echo "$name: $b built after $(( $(date +%s) - start ))s" >&2
done

mkdir -p "$final/bin"
chmod 755 "$final" "$final/bin"
for b in "${todo[@]}"; do mv -f "$tmp/bin/$b" "$final/bin/$b"; done  # one atomic rename each
cat >> "$final/build-info.txt" <<INFO
module $(limit 120 "go list -m" go list -m) (go.sum sha256 $(sha256sum go.sum | cut -c1-16))
$(go version)
build flags: CGO_ENABLED=$CGO_ENABLED ${BUILD_FLAGS[*]} -ldflags '$ldflags'
built ${todo[*]}: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start ))s
INFO
touch "$final"  # newest: survives the pruning below
ls -1dt "$cache_root"/*/ 2>/dev/null | tail -n +4 | while read -r old; do
  echo "$name: pruning old build $old" >&2
  rm -rf "$old"
done
echo "$name: built in $(( $(date +%s) - start ))s -> $final" >&2
echo "$final/bin"
