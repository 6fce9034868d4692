"""Minimal RBAC for a routing config: exactly the verbs each plugin declares, per resource."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from routers.engine import bind
from routers.model import RoutingConfig
from routers.registry import Registry

__all__ = ["rbac_manifests"]


def rbac_manifests(
    config: RoutingConfig,
    *,
    registry: Registry | None = None,
    name: str = "canary-routers",
    namespace: str | None = None,
    service_account: tuple[str, str] | None = None,
    watch_cache: bool = False,
    events: bool = False,
) -> list[dict[str, Any]]:
    """A namespaced Role with the plugins' permissions, and a ClusterRole that may read the CRDs
    whose facts the plugins use (optional: without it, plugins fall back to their config).

    With ``service_account`` (namespace, name), e.g. Argo Rollouts' controller running our
    plugin, a RoleBinding and a ClusterRoleBinding grant both to it. With ``watch_cache``, every
    resource that may be read may also be listed and watched (a :class:`WatchCache` does). With
    ``events``, the Role may also record Events (the Argo plugin's Warning Events on the Rollout:
    create, then get and patch to count repeats on the same Event).
    """
    bindings = bind(config, registry)
    verbs: dict[tuple[str, str], set[str]] = defaultdict(set)
    crds: set[str] = set()
    for b in bindings:
        for perm in b.plugin.permissions(b.config):
            verbs[(perm.group, perm.resource)].update(perm.verbs)
        crds.update(b.plugin.crds)
    if watch_cache:
        for granted in verbs.values():
            if "get" in granted:
                granted.update(("list", "watch"))
    if events:
        verbs[("", "events")].update(("create", "get", "patch"))
    rules = [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(v)}
        for (group, resource), v in sorted(verbs.items())
    ]
    ns = namespace or config.namespace or "default"
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": ns},
            "rules": rules,
        }
    ]
    if crds:
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": f"{name}-crd-facts"},
                "rules": [
                    {
                        "apiGroups": ["apiextensions.k8s.io"],
                        "resources": ["customresourcedefinitions"],
                        "resourceNames": sorted(crds),
                        "verbs": ["get"],
                    }
                ],
            }
        )
    if service_account is not None:
        sa_ns, sa_name = service_account
        subject = {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_ns}
        binding = f"{name}-{sa_ns}-{sa_name}"
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": binding, "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [subject],
            }
        )
        if crds:
            out.append(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": f"{binding}-crd-facts"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": f"{name}-crd-facts",
                    },
                    "subjects": [subject],
                }
            )
    return out
