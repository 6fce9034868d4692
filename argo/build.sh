#!/usr/bin/env bash
# Build (or reuse) canary-routers-argo, the Argo Rollouts traffic-router plugin bridge.
#
#     argo/build.sh           the bridge (what Argo Rollouts runs as a trafficRouterPlugins entry)
#     argo/build.sh driver    argo-driver: Argo's own plugin client, for e2e/test_argo_protocol.py
#
# The cached-build rule lives in one place, ../e2e/gobuild.sh (key = sha256(go.mod + go.sum + the
# module's Go sources + flags + go version), flock, atomic rename, the 3 newest keys kept, every
# go command limited by scripts/_limits.sh); this script names the binary and prints its path:
#     ${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/argo/<key>/bin/<binary>
#
# The LAST line on stdout is the path of the binary. Everything else goes to stderr.
# Env: as ../e2e/gobuild.sh (ROUTERS_E2E_CACHE, ROUTERS_E2E_FORCE_BUILD=1,
#      ROUTERS_E2E_BUILD_TIMEOUT, ROUTERS_E2E_LOCK_TIMEOUT).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../scripts/_limits.sh"

case "${1:-bridge}" in
  bridge) bin=canary-routers-argo pkg=. ;;
  driver) bin=argo-driver pkg=./cmd/argo-driver ;;
  *) echo "usage: $0 [bridge|driver]" >&2; exit 64 ;;
esac
dir=$(bash "$here/../e2e/gobuild.sh" argo "$here" "-s -w" "$bin=$pkg" | tail -n1)
[[ $bin != canary-routers-argo ]] || limit 30 "$bin --version" "$dir/$bin" --version >&2
echo "$dir/$bin"
