#!/usr/bin/env bash
# Re-pin the bridge to an argo-rollouts version: copy the k8s.io staging `replace` lines from
# that version's published go.mod (generated, never hand-copied), then `go get` + `go mod tidy`.
#
# Usage: ./gen-go-mod.sh [ARGO_VERSION]   (default: the version go.mod requires now)
#
# argo-rollouts requires k8s.io/kubernetes, whose go.mod asks for every staging module at the
# non-existent v0.0.0; argo's own replace block maps them, but replaces only apply in the main
# module, so ours must repeat them.
set -euo pipefail
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
cd "$(dirname "$0")"
source ../scripts/_limits.sh

cur=$(go mod edit -json | python3 -c 'import json,sys
d=json.load(sys.stdin)
print(next((r["Version"] for r in d.get("Require") or [] if r["Path"]=="github.com/argoproj/argo-rollouts"),""))')
ARGO_VERSION=${1:-$cur}
[[ -n $ARGO_VERSION ]] || { echo "usage: $0 ARGO_VERSION" >&2; exit 2; }

gomod=$(limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go mod download" go mod download -json "github.com/argoproj/argo-rollouts@${ARGO_VERSION}" | python3 -c 'import json,sys
d=json.load(sys.stdin)
if d.get("Error"): sys.exit(d["Error"])
print(d["GoMod"])')

for old in $(go mod edit -json | python3 -c 'import json,sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["Old"]["Path"].startswith("k8s.io/"): print(r["Old"]["Path"])'); do
  go mod edit -dropreplace="$old"
done
mapfile -t args < <(go mod edit -json "$gomod" | python3 -c 'import json,sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["Old"]["Path"].startswith("k8s.io/") and r["New"].get("Version"):
        print("-replace=%s=%s@%s" % (r["Old"]["Path"], r["New"]["Path"], r["New"]["Version"]))')
go mod edit "${args[@]}"
limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go get" go get "github.com/argoproj/argo-rollouts@${ARGO_VERSION}"
limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go mod tidy" go mod tidy
echo "go.mod pinned to argo-rollouts ${ARGO_VERSION} (${#args[@]} k8s.io replaces)" >&2
