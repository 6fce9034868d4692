#!/usr/bin/env bash
# Fetch the official CRD sets (gateway-standard-v1.6, gateway-experimental-v1.6,
# gateway-standard-v1.2, istio, smi-sdk, smi-linkerd, traefik) from their Go modules with
# `go mod download` into ${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}/crds/<set>/.
# Idempotent and fast when cached. Usage: crds.sh [SET ...] | crds.sh --list
# The last stdout line is the crds root directory. Needs go and python3 with PyYAML
# (set PYTHON to choose the interpreter).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=local
command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"; }
command -v go >/dev/null || { echo "crds.sh: 'go' not found in PATH" >&2; exit 127; }
exec "${PYTHON:-python3}" "$here/crds.py" "$@"
