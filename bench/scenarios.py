"""Benchmark inputs: routing configs and live objects in each target's real schema.

Objects are generated, not loaded from examples, so sizes are exact and the same generator feeds
planning (offline), the API runs (created on a real apiserver) and the memory child. Every object
is valid for its official CRD (the API bench creates them with strict field validation).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from e2e.cluster import cache_root
from routers.contract import ClusterFacts
from routers.engine import facts_from_manifests
from routers.errors import PluginError
from routers.io import load_documents
from routers.registry import GROUP, Registry

__all__ = [
    "CONFIGMAP",
    "SPECS",
    "Scenario",
    "TargetSpec",
    "available",
    "bench_registry",
    "crd_facts",
    "for_server",
]

ROOT = Path(__file__).resolve().parent.parent
THIRDPARTY = ROOT / "tests" / "fixtures" / "thirdparty"
CONFIGMAP = "configmap"
STABLE = "web-stable"
CANARY = "web-canary"

JSON = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    """One routing config plus the live objects it targets (as the server would return them)."""

    plugin: str
    label: str
    routing: JSON
    objects: tuple[JSON, ...]
    size: int = 1

    def with_namespace(self, namespace: str) -> Scenario:
        """The same scenario moved to ``namespace`` (the API bench gives each rollout its own)."""
        routing = {**self.routing, "namespace": namespace}
        objects = tuple(
            {**o, "metadata": {**o["metadata"], "namespace": namespace}} for o in self.objects
        )
        return Scenario(self.plugin, self.label, routing, objects, self.size)


Builder = Callable[[int], Scenario]


@dataclass(frozen=True)
class TargetSpec:
    """What to measure for one plugin; each builder takes a size and returns a scenario."""

    plugin: str
    crd_set: str | None
    """CRD set (e2e/controlplane/crds.sh) the API bench installs; ``None`` = built-in kinds."""
    typical: Scenario
    large: tuple[Scenario, ...]
    curves: tuple[tuple[str, Builder], ...]
    """(what grows, builder) -- planned at 10, 100 and 1000."""
    api: tuple[Scenario, ...]
    """Objects for the API and throughput runs (the first one is used for throughput)."""


def _meta(name: str, namespace: str = "bench") -> JSON:
    return {
        "name": name,
        "namespace": namespace,
        "resourceVersion": "1000",
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}")),
        "generation": 1,
        "labels": {"app.kubernetes.io/name": "web"},
    }


def for_server(obj: JSON) -> JSON:
    """A copy without server-owned metadata, ready for a POST."""
    meta = {
        k: v
        for k, v in obj["metadata"].items()
        if k not in ("resourceVersion", "uid", "generation", "creationTimestamp", "managedFields")
    }
    return {**obj, "metadata": meta}


# -- Istio: VirtualService (networking.istio.io/v1) -------------------------------------------


def _vs_route(i: int, weighted: bool) -> JSON:
    route: JSON = {
        "name": f"route-{i:04d}",
        "match": [
            {"uri": {"prefix": f"/svc-{i:04d}/"}},
            {"headers": {"x-tenant": {"exact": f"tenant-{i:04d}"}}},
        ],
        "timeout": "10s",
        "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset"},
    }
    if weighted:
        route["route"] = [
            {"destination": {"host": STABLE, "port": {"number": 8080}}, "weight": 100},
            {"destination": {"host": CANARY, "port": {"number": 8080}}, "weight": 0},
        ]
    else:
        route["route"] = [{"destination": {"host": f"other-{i:04d}", "port": {"number": 8080}}}]
    return route


def istio(routes: int, *, all_weighted: bool = False) -> Scenario:
    """``routes`` http routes; the last (catch-all) one is weighted, or all of them are."""
    http = [_vs_route(i, all_weighted) for i in range(routes - 1)]
    last = _vs_route(routes - 1, True)
    last["match"] = [{"uri": {"prefix": "/"}}]
    http.append(last)
    weighted = [r["name"] for r in http if len(r["route"]) == 2]
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": _meta("web"),
        "spec": {"hosts": ["web.example.com"], "gateways": ["istio-system/public"], "http": http},
    }
    routing = {
        "namespace": "bench",
        "stableService": STABLE,
        "canaryService": CANARY,
        "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": weighted}}},
    }
    label = f"VirtualService {routes} http routes, {len(weighted)} weighted"
    return Scenario("istio", label, routing, (vs,), routes)


# -- Gateway API: HTTPRoute (gateway.networking.k8s.io/v1) ------------------------------------


def _backends() -> list[JSON]:
    return [
        {"group": "", "kind": "Service", "name": STABLE, "port": 8080, "weight": 100},
        {"group": "", "kind": "Service", "name": CANARY, "port": 8080, "weight": 0},
    ]


def _httproute(name: str, rules: int, matches: int) -> JSON:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(name),
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "public",
                    "namespace": "gateway-system",
                }
            ],
            "hostnames": ["web.example.com"],
            "rules": [
                {
                    "name": f"rule-{r:02d}",
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": f"/r{r:02d}/m{m}"},
                            "headers": [{"type": "Exact", "name": "x-tenant", "value": f"t{m}"}],
                        }
                        for m in range(matches)
                    ],
                    "timeouts": {"request": "10s"},
                    "backendRefs": _backends(),
                }
                for r in range(rules)
            ],
        },
    }


def gatewayapi(rules: int, matches: int) -> Scenario:
    """One HTTPRoute, every rule split between stable and canary."""
    routing = {
        "namespace": "bench",
        "stableService": STABLE,
        "canaryService": CANARY,
        "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}}},
    }
    label = f"HTTPRoute {rules} rules x {matches} matches"
    return Scenario(
        "gatewayapi", label, routing, (_httproute("web", rules, matches),), rules * matches
    )


def gatewayapi_routes(count: int) -> Scenario:
    """``count`` HTTPRoute objects of one rule each (the schema caps rules per route at 16)."""
    names = [f"web-{i:04d}" for i in range(count)]
    routing = {
        "namespace": "bench",
        "stableService": STABLE,
        "canaryService": CANARY,
        "trafficRouting": {
            "plugins": {"argoproj-labs/gatewayAPI": {"httpRoutes": [{"name": n} for n in names]}}
        },
    }
    objects = tuple(_httproute(n, 1, 1) for n in names)
    return Scenario("gatewayapi", f"{count} HTTPRoutes x 1 rule", routing, objects, count)


# -- NGINX: Ingress (networking.k8s.io/v1) ----------------------------------------------------


def nginx(paths: int) -> Scenario:
    """The stable Ingress with ``paths`` paths to the stable Service (Argo clones it)."""
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            **_meta("web"),
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
        },
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "web.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": f"/p{i:04d}",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": STABLE, "port": {"number": 80}}},
                            }
                            for i in range(paths)
                        ]
                    },
                }
            ],
        },
    }
    routing = {
        "namespace": "bench",
        "stableService": STABLE,
        "canaryService": CANARY,
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
    }
    return Scenario("nginx", f"Ingress {paths} paths", routing, (ingress,), paths)


# -- SMI: TrafficSplit (split.smi-spec.io/v1alpha4, the version the SMI SDK CRD serves) -----


def smi(backends: int) -> Scenario:
    """A TrafficSplit with stable, canary and ``backends - 2`` other weighted backends."""
    others = [{"service": f"other-{i:04d}", "weight": 1} for i in range(max(0, backends - 2))]
    split = {
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": _meta("web"),
        "spec": {
            "service": "web",
            "backends": [
                {"service": STABLE, "weight": 100},
                {"service": CANARY, "weight": 0},
                *others,
            ],
        },
    }
    routing = {
        "namespace": "bench",
        "stableService": STABLE,
        "canaryService": CANARY,
        "trafficRouting": {"smi": {"rootService": "web", "trafficSplitName": "web"}},
        # The other backends stand for list length, not for traffic: with weights as shares of
        # all traffic (the default), 998 of them at weight 1 would leave no room for 20%.
        "weightScope": "ours",
    }
    return Scenario("smi", f"TrafficSplit {backends} backends", routing, (split,), backends)


# -- Traefik: TraefikService weighted round robin (traefik.io/v1alpha1) ---------------------


def traefik(services: int) -> Scenario:
    """A weighted TraefikService: stable, canary and ``services - 2`` other weighted services."""
    others = [
        {"name": f"other-{i:04d}", "port": 80, "weight": 1} for i in range(max(0, services - 2))
    ]
    wrr = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TraefikService",
        "metadata": _meta("web-wrr"),
        "spec": {
            "weighted": {
                "services": [
                    {"name": STABLE, "port": 80, "weight": 100},
                    {"name": CANARY, "port": 80, "weight": 0},
                    *others,
                ]
            }
        },
    }
    routing = {
        "namespace": "bench",
        "stableService": STABLE,
        "canaryService": CANARY,
        "trafficRouting": {"traefik": {"weightedTraefikServiceName": "web-wrr"}},
        "weightScope": "ours",  # as for SMI: the other services stand for list length
    }
    return Scenario("traefik", f"TraefikService {services} services", routing, (wrr,), services)


# -- the example third-party plugin: ConfigMap ------------------------------------------------


def configmap(keys: int = 1) -> Scenario:
    """The weights ConfigMap with ``keys - 1`` unrelated data keys the plugin must keep."""
    data = {f"setting-{i:04d}": "x" * 64 for i in range(max(0, keys - 1))}
    data["weights.json"] = '{"web-canary": 0, "web-stable": 100}'
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("proxy-weights"), "data": data}
    routing = {
        "namespace": "bench",
        "stableService": STABLE,
        "canaryService": CANARY,
        "plugins": {"example.com/configmap": {"configMap": "proxy-weights"}},
    }
    return Scenario(CONFIGMAP, f"ConfigMap {keys} data keys", routing, (cm,), keys)


SPECS: dict[str, TargetSpec] = {
    spec.plugin: spec
    for spec in (
        TargetSpec(
            CONFIGMAP,
            None,
            configmap(1),
            (configmap(300),),
            (("data keys", configmap),),
            (configmap(1),),
        ),
        TargetSpec(
            "istio",
            "istio",
            istio(5),
            (istio(500), istio(500, all_weighted=True)),
            (
                ("http routes, 1 weighted", istio),
                ("http routes, all weighted", lambda n: istio(n, all_weighted=True)),
            ),
            (istio(50), istio(50, all_weighted=True)),
        ),
        TargetSpec(
            "gatewayapi",
            "gateway-standard-v1.6",
            gatewayapi(3, 1),
            (gatewayapi(16, 8),),
            (("HTTPRoute objects", gatewayapi_routes),),
            (gatewayapi(16, 8), gatewayapi(3, 1)),
        ),
        TargetSpec(
            "nginx", None, nginx(3), (nginx(300),), (("Ingress paths", nginx),), (nginx(300),)
        ),
        TargetSpec("smi", "smi-sdk", smi(2), (smi(20),), (("backends", smi),), (smi(20),)),
        TargetSpec(
            "traefik",
            "traefik",
            traefik(2),
            (traefik(50),),
            (("weighted services", traefik),),
            (traefik(20),),
        ),
    )
}


def bench_registry() -> Registry:
    """Installed plugins plus the example ConfigMap plugin, injected as its tests do."""
    if str(THIRDPARTY) not in sys.path:
        sys.path.insert(0, str(THIRDPARTY))
    extra = EntryPoint(CONFIGMAP, "routers_example_configmap:ConfigMapPlugin", GROUP)

    def source() -> Iterable[EntryPoint]:
        return [*entry_points(group=GROUP), extra]

    return Registry(source, disabled=())


def available(
    registry: Registry, only: Iterable[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """Plugins that load and have a spec, and why each other one is skipped."""
    wanted = set(only) if only is not None else None
    ok: list[str] = []
    skipped: dict[str, str] = {}
    names = sorted(set(registry.names()) | set(SPECS))
    for name in names:
        if wanted is not None and name not in wanted:
            continue
        if name not in SPECS:
            skipped[name] = "no benchmark scenario for this plugin"
            continue
        try:
            registry.load(name)
        except PluginError as exc:
            skipped[name] = f"does not load: {exc.cause}"
            continue
        ok.append(name)
    order = list(SPECS)
    return sorted(ok, key=order.index), skipped


def crd_facts(crd_set: str | None) -> ClusterFacts:
    """Facts as a cluster with this CRD set would report them, so offline planning takes the
    same version decisions as the API runs (no CRD facts when the set was never fetched)."""
    base = ClusterFacts(served={"": ("v1",), "networking.k8s.io": ("v1",)}, source="cluster")
    if crd_set is None:
        return base
    root = os.environ.get("ROUTERS_E2E_CRDS_DIR")
    directory = (Path(root) if root else cache_root() / "crds") / crd_set
    paths = [str(p) for p in sorted(directory.glob("*.yaml"))]
    return facts_from_manifests(load_documents(paths), base) if paths else base
