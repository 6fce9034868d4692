"""Builders shared by the gatewayapi unit tests: a plugin, configs, routes, plans applied in memory."""

from __future__ import annotations

import copy
from typing import Any

from routers_gatewayapi import Plugin
from routers_gatewayapi.config import Config

from routers.contract import ClusterFacts, CrdFacts
from routers.model import Cleanup, RoutingConfig, TrafficState
from routers.planning.objects import LiveObjects, ObjectRef
from routers.planning.offline import apply_plans
from routers.planning.plan import Plan

PLUGIN = Plugin()
NS = "shop"
NO_FACTS = ClusterFacts()


def config(section: dict[str, Any] | None = None, **routing: Any) -> Config:
    doc = {"stableService": "web-stable", "canaryService": "web-canary", "namespace": NS, **routing}
    return PLUGIN.parse_config(
        section if section is not None else {"httpRoute": "web"}, RoutingConfig.parse(doc)
    )


def ref(
    name: str = "web", port: int = 80, weight: int | None = None, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"group": "", "kind": "Service", "name": name, "port": port, **extra}
    if weight is not None:
        out["weight"] = weight
    return out


def rule(path: str = "/", *, stable: int = 100, canary: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": path}}],
        "backendRefs": [ref("web-stable", weight=stable), ref("web-canary", weight=canary)],
        **extra,
    }


def route(
    *rules: dict[str, Any], kind: str = "HTTPRoute", name: str = "web", **meta: Any
) -> dict[str, Any]:
    version = "v1alpha2" if kind in ("TCPRoute", "TLSRoute") else "v1"
    return {
        "apiVersion": f"gateway.networking.k8s.io/{version}",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": NS,
            "resourceVersion": "1",
            "uid": f"uid-{name}",
            "generation": 1,
            **meta,
        },
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
            "rules": list(rules) or [rule()],
        },
    }


def live(*objs: dict[str, Any]) -> LiveObjects:
    return LiveObjects.from_manifests([copy.deepcopy(o) for o in objs], NS)


def state(**kw: Any) -> TrafficState:
    return TrafficState.parse(kw)


def facts(bundle: str, channel: str = "standard") -> ClusterFacts:
    crds = {
        n: CrdFacts(n, ("v1",), bundle, channel)
        for n in ("httproutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io")
    }
    return ClusterFacts(crds=crds, source="cluster")


def plan(
    cfg: Config, objs: LiveObjects, desired: TrafficState | Cleanup, f: ClusterFacts = NO_FACTS
) -> Plan:
    return PLUGIN.plan(cfg, objs, desired, f)


def run(
    cfg: Config, objs: LiveObjects, desired: TrafficState | Cleanup, f: ClusterFacts = NO_FACTS
) -> LiveObjects:
    """Plan, apply in memory (guards checked), and assert that planning again changes nothing."""
    after = apply_plans([plan(cfg, objs, desired, f)], objs)
    result = LiveObjects((r, o) for r, o in after.items() if o is not None)
    again = plan(cfg, result, desired, f)
    assert again.empty, f"second plan not empty: {again.to_data()}"
    return result


def rules_of(objs: LiveObjects, name: str = "web", kind: str = "HTTPRoute") -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = objs[ObjectRef("gateway.networking.k8s.io", kind, NS, name)][
        "spec"
    ]["rules"]
    return rules


def obj_of(objs: LiveObjects, name: str = "web", kind: str = "HTTPRoute") -> dict[str, Any]:
    return objs[ObjectRef("gateway.networking.k8s.io", kind, NS, name)]


def weights_of(r: dict[str, Any]) -> dict[str, int]:
    return {b["name"]: b.get("weight", 1) for b in r["backendRefs"]}
