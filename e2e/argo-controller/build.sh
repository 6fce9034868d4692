#!/usr/bin/env bash
# Build (or reuse) the Argo Rollouts controller (cmd/rollouts-controller) from
# e2e/argo-controller/go.mod; the last stdout line is the bin dir.
# Cached by go.sum like the control plane (see ../gobuild.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../scripts/_limits.sh"
export GOTOOLCHAIN=local
command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"; }
cd "$here"
mod=github.com/argoproj/argo-rollouts
limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go mod download" go mod download "$mod" >&2
info=$(limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go list -m" go list -m -f '{{.Version}} {{.Time}}' "$mod")
read -r version time <<<"$info"
build_date=$(date -u -d "$time" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo 1970-01-01T00:00:00Z)
# Stamped like upstream's Makefile (utils/version); the proxy does not give the tag's commit, so
# the controller reports "v<version>+unknown".
exec bash "$here/../gobuild.sh" argo-controller "$here" \
  "-s -w -X $mod/utils/version.version=${version#v} -X $mod/utils/version.buildDate=${build_date}" \
  rollouts-controller=$mod/cmd/rollouts-controller
