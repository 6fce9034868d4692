#!/usr/bin/env bash
# Build (or reuse) kwok from e2e/kwok/go.mod; the last stdout line is the bin dir.
# Cached by go.sum like the control plane (see ../gobuild.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../scripts/_limits.sh"
export GOTOOLCHAIN=local
command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"; }
cd "$here"
limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go mod download" go mod download sigs.k8s.io/kwok >&2
version=$(limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go list -m" go list -m -f '{{.Version}}' sigs.k8s.io/kwok)
exec bash "$here/../gobuild.sh" kwok "$here" \
  "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${version#v}" \
  kwok=sigs.k8s.io/kwok/cmd/kwok
