"""Small builders shared by the unit tests."""

from __future__ import annotations

import copy
from typing import Any

from routers_istio import Plugin
from routers_istio.config import IstioConfig

from routers.contract import ClusterFacts
from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.planning.objects import JSON, LiveObjects, ObjectRef
from routers.planning.offline import apply_plans
from routers.planning.plan import Plan

PLUGIN = Plugin()
FACTS = ClusterFacts()


def routing(istio: dict[str, Any], **common: Any) -> RoutingConfig:
    doc = {"namespace": "app", "stableService": "svc", "canaryService": "svc-canary", **common}
    doc["trafficRouting"] = {**doc.get("trafficRouting", {}), "istio": istio}
    return RoutingConfig.parse(doc)


def config(istio: dict[str, Any], **common: Any) -> IstioConfig:
    r = routing(istio, **common)
    section = r.section("istio")
    assert section is not None
    return PLUGIN.parse_config(section.body, r)


def dest(
    host: str, weight: int | None = None, subset: str | None = None, port: int | None = None
) -> JSON:
    d: JSON = {"destination": {"host": host}}
    if subset:
        d["destination"]["subset"] = subset
    if port:
        d["destination"]["port"] = {"number": port}
    if weight is not None:
        d["weight"] = weight
    return d


def route(name: str | None, *dests: JSON, **extra: Any) -> JSON:
    r: JSON = {"name": name} if name else {}
    r.update(extra)
    r["route"] = list(dests)
    return r


def vs(
    name: str = "app",
    *http: JSON,
    namespace: str = "app",
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> JSON:
    meta: JSON = {
        "name": name,
        "namespace": namespace,
        "resourceVersion": "10",
        "uid": f"uid-{name}",
        "generation": 1,
    }
    if annotations:
        meta["annotations"] = annotations
    body: JSON = {"hosts": [name]} if http or spec else {}
    if http:
        body["http"] = list(http)
    body.update(spec)
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta,
        "spec": body,
    }


def dr(
    name: str = "app",
    host: str = "svc",
    subsets: tuple[str, ...] = ("stable", "canary"),
    namespace: str = "app",
    **meta_extra: Any,
) -> JSON:
    meta: JSON = {
        "name": name,
        "namespace": namespace,
        "resourceVersion": "20",
        "uid": f"uid-dr-{name}",
        **meta_extra,
    }
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": meta,
        "spec": {"host": host, "subsets": [{"name": s, "labels": {"app": "svc"}} for s in subsets]},
    }


def simple_vs(*extra: JSON, **kw: Any) -> JSON:
    return vs("app", *extra, route("primary", dest("svc", 100), dest("svc-canary", 0)), **kw)


def live(*docs: JSON) -> LiveObjects:
    return LiveObjects.from_manifests([copy.deepcopy(d) for d in docs], "app")


def state(**kw: Any) -> TrafficState:
    return TrafficState.parse(kw)


def plan(cfg: IstioConfig, objs: LiveObjects, desired: Desired) -> Plan:
    return PLUGIN.plan(cfg, objs, desired, FACTS)


def run(cfg: IstioConfig, objs: LiveObjects, desired: Desired) -> LiveObjects:
    """Plan, apply in memory, assert the second plan is empty; return the result."""
    p = plan(cfg, objs, desired)
    after = apply_plans([p], objs)
    result = LiveObjects((r, o) for r, o in after.items() if o is not None)
    again = plan(cfg, result, desired)
    assert again.empty, [op.ops if hasattr(op, "ops") else op for op in again]
    return result


def get(
    objs: LiveObjects, kind: str = "VirtualService", name: str = "app", namespace: str = "app"
) -> JSON:
    return objs[ObjectRef("networking.istio.io", kind, namespace, name)]


def http_names(obj: JSON) -> list[str | None]:
    return [r.get("name") for r in obj["spec"]["http"]]


def weights_of(r: JSON) -> list[int | None]:
    return [d.get("weight") for d in r["route"]]


CLEANUP = Cleanup()
