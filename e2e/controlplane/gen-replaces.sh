#!/usr/bin/env bash
# Regenerate go.mod for the control-plane tools module.
#
# k8s.io/kubernetes requires every staging module (k8s.io/api, k8s.io/apiserver, ...)
# at the non-existent version v0.0.0 and maps them to ./staging/... with replace
# directives that are ignored for dependencies. This script reads the published
# go.mod of k8s.io/kubernetes@<version>, and adds one
#     replace k8s.io/<x> => k8s.io/<x> v0.<minor>.<patch>
# line per staging module (generated, never hand-copied), then resolves
# k8s.io/kubernetes, etcd and tidies.
#
# Usage: ./gen-replaces.sh [K8S_VERSION] [ETCD_VERSION]
#        (defaults: the versions currently required in go.mod)
set -euo pipefail
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
cd "$(dirname "$0")"
source ../../scripts/_limits.sh

cur() { go mod edit -json | python3 -c 'import json,sys
d=json.load(sys.stdin)
print(next((r["Version"] for r in d.get("Require") or [] if r["Path"]==sys.argv[1]),""))' "$1"; }

K8S_VERSION=${1:-$(cur k8s.io/kubernetes)}
ETCD_VERSION=${2:-$(cur go.etcd.io/etcd/server/v3)}
[[ $K8S_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "bad k8s version '$K8S_VERSION'" >&2; exit 2; }
STAGING_VERSION="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

gomod=$(limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go mod download k8s.io/kubernetes" \
  go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | python3 -c 'import json,sys
d=json.load(sys.stdin)
if d.get("Error"): sys.exit(d["Error"])
print(d["GoMod"])')

mapfile -t staging < <(go mod edit -json "$gomod" | python3 -c 'import json,sys
d=json.load(sys.stdin)
for r in d.get("Require") or []:
    if r["Version"] == "v0.0.0":
        print(r["Path"])')
echo "k8s.io/kubernetes ${K8S_VERSION}: ${#staging[@]} staging modules -> ${STAGING_VERSION}" >&2

# Drop k8s.io replaces that are no longer staging modules; (re)set the others in place, so a
# re-run with the same version leaves go.mod byte-identical.
for old in $(go mod edit -json | python3 -c 'import json,sys
keep=set(sys.argv[1:])
d=json.load(sys.stdin)
for r in d.get("Replace") or []:
    p=r["Old"]["Path"]
    if p.startswith("k8s.io/") and p not in keep: print(p)' "${staging[@]}"); do
  go mod edit -dropreplace="$old"
done
args=()
for m in "${staging[@]}"; do args+=("-replace=${m}=${m}@${STAGING_VERSION}"); done
go mod edit "${args[@]}"

# Only now can k8s.io/kubernetes be resolved.
limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go get" \
  go get "k8s.io/kubernetes@${K8S_VERSION}" "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
limit "$ROUTERS_E2E_BUILD_TIMEOUT" "go mod tidy" go mod tidy
echo "go.mod regenerated for k8s.io/kubernetes ${K8S_VERSION}, etcd ${ETCD_VERSION}" >&2
