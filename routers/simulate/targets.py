"""Route one request through a bag of objects: pick the evaluator by kind, group like the data
plane does (VirtualServices one by one, Gateway API routes per parent, Ingresses per class,
TrafficSplits per root Service), and say which object group each outcome belongs to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routers.simulate.gatewayapi import simulate_grpc_routes, simulate_http_routes
from routers.simulate.istio import simulate_virtual_service
from routers.simulate.nginx import simulate_ingress_nginx
from routers.simulate.outcome import Outcome
from routers.simulate.request import Request
from routers.simulate.smi import simulate_traffic_split

__all__ = ["Simulated", "parent_key", "simulate_objects"]

JSON = Mapping[str, Any]

_GW = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class Simulated:
    scope: str
    """The group evaluated together, e.g. ``HTTPRoutes on Gateway infra/public``."""
    outcome: Outcome


def _group(obj: JSON) -> str:
    return str(obj.get("apiVersion", "")).rpartition("/")[0]


def _meta(obj: JSON) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def parent_key(ref: JSON, namespace: str | None) -> str:
    """A parentRef as ``Kind ns/name`` (defaults: Gateway of the route's namespace)."""
    kind = ref.get("kind") or "Gateway"
    ns = ref.get("namespace") or namespace
    return f"{kind} {ns}/{ref.get('name')}"


def _by_parent(routes: Sequence[JSON]) -> dict[str, list[JSON]]:
    out: dict[str, list[JSON]] = {}
    for r in routes:
        ns = _meta(r).get("namespace")
        parents = (r.get("spec") or {}).get("parentRefs") or [{"name": "(none)"}]
        for key in dict.fromkeys(parent_key(p, ns) for p in parents if isinstance(p, Mapping)):
            out.setdefault(key, []).append(r)
    return out


def simulate_objects(objects: Sequence[JSON], request: Request) -> list[Simulated]:
    """Every routing decision ``objects`` make for ``request``, one per independent scope."""
    out: list[Simulated] = []
    vss = [o for o in objects if o.get("kind") == "VirtualService"]
    delegates = {
        f"{_meta(v).get('namespace')}/{_meta(v).get('name')}": v
        for v in vss
        if not (v.get("spec") or {}).get("hosts")
    }
    for vs in vss:
        if (vs.get("spec") or {}).get("hosts"):
            name = f"{_meta(vs).get('namespace')}/{_meta(vs).get('name')}"
            out.append(
                Simulated(
                    f"VirtualService {name}",
                    simulate_virtual_service(vs, request, delegates=delegates),
                )
            )
    for kind, fn in (("HTTPRoute", simulate_http_routes), ("GRPCRoute", simulate_grpc_routes)):
        routes = [o for o in objects if o.get("kind") == kind and _group(o) == _GW]
        for parent, group in _by_parent(routes).items():
            out.append(Simulated(f"{kind}s on {parent}", fn(group, request)))
    ingresses = [o for o in objects if o.get("kind") == "Ingress"]
    classes: dict[str, list[JSON]] = {}
    for ing in ingresses:
        cls = (ing.get("spec") or {}).get("ingressClassName") or _meta(ing).get(
            "annotations", {}
        ).get("kubernetes.io/ingress.class", "")
        classes.setdefault(str(cls), []).append(ing)
    for cls, group in classes.items():
        out.append(
            Simulated(
                f"Ingresses of class {cls or '(default)'}", simulate_ingress_nginx(group, request)
            )
        )
    splits = [o for o in objects if o.get("kind") == "TrafficSplit"]
    groups = {str(_meta(g).get("name")): g for g in objects if g.get("kind") == "HTTPRouteGroup"}
    roots = dict.fromkeys(str((s.get("spec") or {}).get("service", "")) for s in splits)
    for root in roots:
        short = root.split(".")[0]
        out.append(
            Simulated(
                f"Service {short} (TrafficSplit)",
                simulate_traffic_split(splits, request, service=short, groups=groups),
            )
        )
    return out
