"""Builders shared by the nginx unit tests (objects as the API server returns them)."""

from __future__ import annotations

import copy
from typing import Any

from routers_nginx import Plugin
from routers_nginx.config import Config

from routers.contract import ClusterFacts
from routers.engine import bind, check_capabilities, plan_all
from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.planning.objects import JSON, LiveObjects
from routers.planning.offline import apply_plans
from routers.planning.plan import Plan

P = "nginx.ingress.kubernetes.io"
NS = "prod"
PLUGIN = Plugin()
FACTS = ClusterFacts()


def routing(nginx: dict[str, Any] | None = None) -> RoutingConfig:
    return RoutingConfig.from_document(
        {
            "stableService": "app-stable",
            "canaryService": "app-canary",
            "namespace": NS,
            "trafficRouting": {"nginx": nginx if nginx is not None else {"stableIngress": "app"}},
        }
    )


def config(nginx: dict[str, Any] | None = None) -> Config:
    r = routing(nginx)
    section = r.section("nginx")
    assert section is not None
    return PLUGIN.parse_config(section.body, r)


def path(p: str, svc: str = "app-stable", port: int | str = 80, ptype: str = "Prefix") -> JSON:
    port_obj: JSON = {"number": port} if isinstance(port, int) else {"name": port}
    return {"path": p, "pathType": ptype, "backend": {"service": {"name": svc, "port": port_obj}}}


def ingress(
    name: str = "app",
    paths: list[JSON] | None = None,
    *,
    host: str = "app.example.com",
    annotations: dict[str, str] | None = None,
    rv: str = "1001",
    uid: str | None = None,
) -> JSON:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": uid or f"uid-{name}",
            "resourceVersion": rv,
            "generation": 1,
            "annotations": dict(annotations or {"cert-manager.io/cluster-issuer": "letsencrypt"}),
        },
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": [host], "secretName": "app-tls"}],
            "rules": [{"host": host, "http": {"paths": paths or [path("/"), path("/api")]}}],
        },
    }


def service(ports: list[JSON]) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "app-canary",
            "namespace": NS,
            "uid": "uid-svc",
            "resourceVersion": "7",
        },
        "spec": {"ports": ports},
    }


def live(*objs: JSON) -> LiveObjects:
    return LiveObjects.from_manifests([copy.deepcopy(o) for o in objs], NS)


def state(**kw: Any) -> TrafficState:
    return TrafficState.parse(kw)


def header_route(name: str = "beta", *, header: str = "X-Canary", **match: Any) -> JSON:
    kind = match or {"exact": "always"}
    return {"name": name, "matches": [{"headers": [{"name": header, **kind}]}]}


def mirror_route(name: str = "shadow", prefix: str = "/", percentage: float = 100) -> JSON:
    return {"name": name, "matches": [{"path": {"prefix": prefix}}], "percentage": percentage}


def plan(cfg: Config, objs: LiveObjects, desired: Desired) -> Plan:
    """The plugin alone (no capability check): what plan() itself refuses."""
    return PLUGIN.plan(cfg, objs, desired, FACTS)


def engine_plan(r: RoutingConfig, objs: LiveObjects, desired: Desired) -> list[Plan]:
    """Through the engine, as users get it: capabilities first, then plan, then contract checks."""
    bindings = bind(r)
    for b in bindings:
        check_capabilities(b, desired, FACTS)
    return plan_all(bindings, objs, desired, FACTS, routing=r)


def apply(plans: Plan | list[Plan], objs: LiveObjects) -> LiveObjects:
    out = apply_plans([plans] if isinstance(plans, Plan) else plans, objs)
    return LiveObjects((ref, o) for ref, o in out.items() if o is not None)


def cleanup(restore: bool = True) -> Cleanup:
    return Cleanup(restore_stable=restore)
