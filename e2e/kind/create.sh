#!/usr/bin/env bash
# For users with Docker: a kind cluster carrying the same official CRDs the e2e suite uses.
# (CI here has no Docker engine and uses the local control plane in e2e/controlplane instead.)
#   e2e/kind/create.sh [CLUSTER_NAME] [CRD_SET ...]
# CRD sets: istio gateway-standard-v1.6 gateway-experimental-v1.6 gateway-standard-v1.2
#           smi-sdk smi-linkerd   (one Gateway API set and one SMI set per cluster)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../../scripts/_limits.sh"
name="${1:-canary-routers}"
shift || true
sets=("$@")
[[ ${#sets[@]} -gt 0 ]] || sets=(istio gateway-standard-v1.6 smi-sdk)

for tool in kind kubectl docker go python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 1; }
done
limit 60 "docker info" docker info >/dev/null 2>&1 || { echo "error: no Docker engine is running" >&2; exit 1; }

crds_root="$(bash "$here/../controlplane/crds.sh" "${sets[@]}" | tail -n 1)"
if ! limit 60 "kind get clusters" kind get clusters | grep -qx "$name"; then
  # Pulling the node image is the slow part on a cold machine.
  limit 1200 "kind create cluster" kind create cluster --name "$name" --wait 120s
fi
ctx="kind-$name"
for set in "${sets[@]}"; do
  echo "installing CRD set $set" >&2
  kubectl --context "$ctx" --request-timeout=60s apply --server-side \
    --field-manager=routers-e2e-crds -f "$crds_root/$set"
done
kubectl --context "$ctx" --request-timeout=60s wait --for condition=established --timeout=120s crd --all
echo "ready: use --context $ctx with routers apply/diff/status/run" >&2
