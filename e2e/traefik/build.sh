#!/usr/bin/env bash
# Build (or reuse) Traefik for the traffic e2e tests, from the Go module proxy (see go.mod).
#
# Cached by go.sum like the other e2e Go tools (see ../gobuild.sh):
#     ${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/traefik/<key>/bin/traefik
# The ./ext stand-in module (a local replace) is part of the key.
#
# go.sum is complete, so a build never consults the checksum database. When regenerating it
# (`go mod tidy` after a bump), the database lacks a few recent lego DNS-provider modules;
# tidy needs GONOSUMDB=github.com/yandex-cloud,github.com/nrdcg,github.com/go-acme,github.com/akamai
#
# The LAST line on stdout is the bin dir. Everything else goes to stderr.
# Env: ROUTERS_E2E_CACHE, ROUTERS_E2E_FORCE_BUILD=1 (ignore the cache), GOMODCACHE, GOCACHE,
#      ROUTERS_E2E_BUILD_TIMEOUT, ROUTERS_E2E_LOCK_TIMEOUT (scripts/_limits.sh).
set -euo pipefail
export GOTOOLCHAIN=local CGO_ENABLED=0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../scripts/_limits.sh"
cd "$here"

command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"; }
command -v go >/dev/null || { echo "build.sh: 'go' not found in PATH" >&2; exit 127; }

pkg=github.com/traefik/traefik/v3
version=$(limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go list -m $pkg" go list -m -f '{{.Version}}' "$pkg")
echo "traefik: $version" >&2
exec bash "$here/../gobuild.sh" traefik "$here" \
  "-s -w -X $pkg/pkg/version.Version=${version} -X $pkg/pkg/version.Codename=canary-routers-e2e" \
  "traefik=$pkg/cmd/traefik"
