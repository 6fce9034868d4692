#!/usr/bin/env bash
# (Re)generate go.mod/go.sum of the Argo Rollouts controller tools module for a version.
#
# github.com/argoproj/argo-rollouts requires k8s.io/kubernetes, whose staging modules are
# required at the non-existent v0.0.0; upstream's go.mod fixes that with a replace block, which
# is ignored for a dependency. This script copies upstream's replace directives (facts, read
# from the published go.mod with `go mod edit -json`, never hand-copied), then resolves the
# module and tidies.
#
# Usage: ./gen.sh [VERSION]   (default: the version currently required in go.mod)
# Keep VERSION equal to the bridge's (argo/go.mod): the e2e runs the bridge under this controller.
set -euo pipefail
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
cd "$(dirname "$0")"
source ../../scripts/_limits.sh
mod=github.com/argoproj/argo-rollouts

cur=$(go mod edit -json | python3 -c 'import json,sys
d=json.load(sys.stdin)
print(next((r["Version"] for r in d.get("Require") or [] if r["Path"]==sys.argv[1]),""))' "$mod")
VERSION=${1:-$cur}
[[ $VERSION =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "bad version '$VERSION'" >&2; exit 2; }

gomod=$(limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go mod download" go mod download -json "$mod@$VERSION" | python3 -c 'import json,sys
d=json.load(sys.stdin)
if d.get("Error"): sys.exit(d["Error"])
print(d["GoMod"])')

# Drop every replace, then add upstream's.
for old in $(go mod edit -json | python3 -c 'import json,sys
for r in json.load(sys.stdin).get("Replace") or []: print(r["Old"]["Path"])'); do
  go mod edit -dropreplace="$old"
done
mapfile -t args < <(go mod edit -json "$gomod" | python3 -c 'import json,sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]
    if "Version" not in new: sys.exit(f"local replace {r} cannot be copied")
    print(f"-replace={r['"'"'Old'"'"']['"'"'Path'"'"']}={new['"'"'Path'"'"']}@{new['"'"'Version'"'"']}")')
go mod edit "${args[@]}"
echo "$mod $VERSION: ${#args[@]} replace directives copied" >&2

limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go get" go get "$mod@$VERSION"
limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go mod tidy" go mod tidy
echo "go.mod regenerated for $mod $VERSION" >&2
