"""Real Rollouts driven by the real Argo Rollouts controller, through canary-routers.

The environment (module fixture ``plane``): the local control plane with the Argo Rollouts,
Istio, Gateway API and SMI CRDs; kube-controller-manager + kube-scheduler + kwok, so Argo's
ReplicaSets get pods that are scheduled, get an address and become Ready; a network namespace
that owns the pods' CIDR and answers HTTP on every pod address, so a request through Traefik
names the pod that served it. The Argo controller runs as a local process (``ArgoRollouts``),
with the official ClusterRole, against that plane.

* ``test_plain_rollout_progresses_with_real_pods``: no traffic routing; proves the environment:
  ReplicaSets, pods Ready with addresses, a step walk, promote, the old ReplicaSet scaled down.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from e2e._traffic_client import TrafficClient, consistent, converge
from e2e._traffic_hosts import PORT, HostsUnavailable, PodNetwork
from e2e._traffic_traefik import Traefik, ensure_traefik
from e2e.argo_env import (
    ARGO_USER,
    ARGO_USERS,
    INSTANCE_LABEL,
    ROLLOUTS,
    ArgoRollouts,
    RolloutWatch,
    apply,
    argo_module_dir,
    ensure_argo_controller,
    ensure_bridge,
    install_rbac,
)
from e2e.cluster import BinariesUnavailable, ControlPlane, ensure_crds
from e2e.conftest import unavailable
from e2e.test_plugins_e2e import grant
from e2e.test_traffic import simulate
from e2e.workers import (
    WORKER_USERS,
    LocalProcess,
    Workers,
    ensure_kube_controllers,
    ensure_kwok,
    pod_ready,
    pods,
    summarize_pods,
    wait_for,
)
from routers.cluster import rbac_manifests
from routers.model import RoutingConfig
from routers.simulate import Outcome, Request

pytestmark = pytest.mark.e2e

CRDS = ("argo-rollouts", "istio", "gateway-standard-v1.6", "smi-sdk")
HASH_LABEL = "rollouts-pod-template-hash"
TIMEOUT = 120.0  # any single Rollout transition (pods, steps, weights) on a busy 2-core machine
# One walk (three or four revisions, ~10 pauses, ~4,000 requests through Traefik, process kills)
# measured 30-121 s at load average ~18 and 1.5-3 min at 19-27; the module's plane + workers +
# Argo (17-30 s) count against the first test. Above the 300 s default per test, as the Traefik
# walks of test_traffic.py (same figure, same reason).
WALK_TIMEOUT = 480


@dataclass
class Plane:
    cp: ControlPlane
    workers: Workers
    net: PodNetwork
    argo_bin: Path
    tmp: Path

    def procs(self, *more: LocalProcess | None) -> list[LocalProcess]:
        return [*self.workers.procs, *(p for p in more if p is not None)]


@pytest.fixture(scope="module")
def plane(control_plane_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    try:
        kube_bin = ensure_kube_controllers()
        kwok_bin = ensure_kwok()
        argo_bin = ensure_argo_controller()
        crds_root = ensure_crds(CRDS)
    except BinariesUnavailable as exc:
        unavailable(str(exc), "Argo Rollouts e2e")
    tmp = tmp_path_factory.mktemp("argo")
    with ExitStack() as stack:
        try:
            net = stack.enter_context(PodNetwork())
        except HostsUnavailable as exc:
            unavailable(str(exc), "Argo Rollouts e2e")
        cp = ControlPlane(CRDS, bin_dir=control_plane_bin_dir, users={**WORKER_USERS, **ARGO_USERS})
        stack.enter_context(cp)
        workers = stack.enter_context(
            Workers(
                cp,
                kube_bin=kube_bin,
                kwok_bin=kwok_bin,
                state_dir=tmp / "workers",
                pod_cidr=net.cidr,
                node_ip=net.gateway,
            )
        )
        install_rbac(cp, argo_module_dir(crds_root))
        yield Plane(cp, workers, net, argo_bin, tmp)


# -- Rollouts ----------------------------------------------------------------------------------


def rollout_manifest(
    name: str,
    namespace: str,
    instance: str,
    *,
    version: str,
    replicas: int,
    canary: Mapping[str, Any],
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace, "labels": {INSTANCE_LABEL: instance}},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "app",
                            "image": image(version),
                            "ports": [{"name": "http", "containerPort": PORT}],
                        }
                    ],
                },
            },
            "strategy": {"canary": dict(canary)},
        },
    }


def image(version: str) -> str:
    return f"registry.invalid/canary-routers/app:{version}"


def create(cp: ControlPlane, obj: Mapping[str, Any]) -> None:
    ns = obj["metadata"]["namespace"]
    status, data = cp.request("POST", ROLLOUTS.format(ns=ns), dict(obj))
    assert status == 201, f"creating Rollout: {status} {data}"


def set_version(cp: ControlPlane, ns: str, name: str, version: str) -> None:
    """A new pod template (the image), as `kubectl argo rollouts set image` does."""
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image(version)}]}}}
    }
    status, data = cp.request(
        "PATCH",
        f"{ROLLOUTS.format(ns=ns)}/{name}",
        json.dumps(patch),
        content_type="application/strategic-merge-patch+json",
    )
    if status == 415:  # custom resources take merge patches only: replace the container list
        rollout = get_rollout(cp, ns, name)
        containers = rollout["spec"]["template"]["spec"]["containers"]
        containers[0]["image"] = image(version)
        status, data = cp.request(
            "PATCH",
            f"{ROLLOUTS.format(ns=ns)}/{name}",
            {"spec": {"template": {"spec": {"containers": containers}}}},
            content_type="application/merge-patch+json",
        )
    assert status == 200, f"set image: {status} {data}"


def status_patch(cp: ControlPlane, ns: str, name: str, patch: Mapping[str, Any]) -> None:
    """A merge patch of the status subresource, exactly as the kubectl plugin sends it."""
    status, data = cp.request(
        "PATCH",
        f"{ROLLOUTS.format(ns=ns)}/{name}/status",
        {"status": dict(patch)},
        content_type="application/merge-patch+json",
    )
    assert status == 200, f"status patch {patch}: {status} {data}"


def promote(cp: ControlPlane, ns: str, name: str) -> None:
    """`kubectl argo rollouts promote`: clear the pause conditions of a paused step."""
    status_patch(cp, ns, name, {"pauseConditions": None})


def abort(cp: ControlPlane, ns: str, name: str) -> None:
    """`kubectl argo rollouts abort`."""
    status_patch(cp, ns, name, {"abort": True})


def get_rollout(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    status, data = cp.request("GET", f"{ROLLOUTS.format(ns=ns)}/{name}")
    assert status == 200, f"GET Rollout: {status} {data}"
    obj: dict[str, Any] = data
    return obj


def replica_sets(cp: ControlPlane, ns: str) -> dict[str, dict[str, Any]]:
    """ReplicaSets of the namespace by pod-template hash."""
    status, data = cp.request("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")
    assert status == 200, f"list ReplicaSets: {status} {data}"
    return {rs["metadata"]["labels"][HASH_LABEL]: rs for rs in data["items"]}


def phase(obj: Mapping[str, Any]) -> str:
    return str(obj.get("status", {}).get("phase", ""))


def step_index(obj: Mapping[str, Any]) -> int | None:
    idx = obj.get("status", {}).get("currentStepIndex")
    return int(idx) if idx is not None else None


def paused_at(index: int) -> Any:
    def pred(obj: Mapping[str, Any]) -> bool:
        st = obj.get("status", {})
        return bool(step_index(obj) == index and st.get("pauseConditions"))

    return pred


def healthy_on(hash_: str | None = None) -> Any:
    """Fully rolled out (on the pod-template hash ``hash_`` if given) and available."""

    def pred(obj: Mapping[str, Any]) -> bool:
        st = obj.get("status", {})
        if phase(obj) != "Healthy" or not st.get("stableRS"):
            return False
        if hash_ is not None and st["stableRS"] != hash_:
            return False
        return bool(st.get("stableRS") == st.get("currentPodHash"))

    return pred


def canary_weight(obj: Mapping[str, Any]) -> int | None:
    weights = obj.get("status", {}).get("canary", {}).get("weights") or {}
    w = weights.get("canary", {}).get("weight")
    return int(w) if w is not None else None


def ready_pods(plane: Plane, ns: str, hash_: str) -> list[dict[str, Any]]:
    return [p for p in pods(plane.cp, ns, f"{HASH_LABEL}={hash_}") if pod_ready(p)]


def assert_pods_served(plane: Plane, ns: str, hash_: str, count: int) -> list[str]:
    """``count`` Ready pods of ``hash_``, each with an address of the pod network; their IPs."""

    def enough() -> list[dict[str, Any]] | None:
        ready = ready_pods(plane, ns, hash_)
        return ready if len(ready) == count else None

    got = wait_for(f"{count} Ready pods of {hash_}", enough, TIMEOUT, procs=plane.workers.procs)
    cidr = ipaddress.ip_network(plane.net.cidr)
    ips = [p["status"]["podIP"] for p in got]
    assert all(ipaddress.ip_address(ip) in cidr for ip in ips), summarize_pods(got)
    assert all(p["spec"]["nodeName"] in plane.workers.node_names for p in got), summarize_pods(got)
    return ips


# -- the environment itself ---------------------------------------------------------------------


def test_plain_rollout_progresses_with_real_pods(plane: Plane, tmp_path: Path) -> None:
    """No traffic routing: a canary walk with replica-count steps, driven by the real controller."""
    cp = plane.cp
    ns = cp.new_namespace("plain")
    steps: Sequence[Mapping[str, Any]] = [
        {"setWeight": 34},
        {"pause": {}},
        {"setWeight": 67},
        {"pause": {"duration": "1s"}},
    ]
    with ArgoRollouts(
        cp, binary=plane.argo_bin, state_dir=tmp_path / "argo", instance_id="plain"
    ) as argo:
        procs = plane.procs(argo.process)
        watch = RolloutWatch(cp, ns, "web").start()
        try:
            create(
                cp,
                rollout_manifest(
                    "web", ns, "plain", version="v1", replicas=3, canary={"steps": steps}
                ),
            )
            _, obj = watch.wait("v1 Healthy", healthy_on(), TIMEOUT, procs=procs)
            v1 = obj["status"]["stableRS"]
            assert_pods_served(plane, ns, v1, 3)
            rs = replica_sets(cp, ns)
            assert rs[v1]["status"].get("readyReplicas") == 3, rs[v1]["status"]
            owner = rs[v1]["metadata"]["ownerReferences"][0]
            assert (owner["kind"], owner["name"]) == ("Rollout", "web")

            set_version(cp, ns, "web", "v2")
            _, obj = watch.wait("paused at step 1", paused_at(1), TIMEOUT, procs=procs)
            v2 = obj["status"]["currentPodHash"]
            assert v2 != v1 and obj["status"]["stableRS"] == v1
            rs = replica_sets(cp, ns)
            canary_replicas = rs[v2]["spec"]["replicas"]
            assert canary_replicas >= 1, rs[v2]["spec"]
            assert_pods_served(plane, ns, v2, canary_replicas)

            promote(cp, ns, "web")
            watch.wait("v2 Healthy", healthy_on(v2), TIMEOUT, procs=procs)
            assert_pods_served(plane, ns, v2, 3)
            wait_for(
                "v1 scaled down",
                lambda: (
                    replica_sets(cp, ns)[v1]["spec"]["replicas"] == 0
                    and not pods(cp, ns, f"{HASH_LABEL}={v1}")
                ),
                TIMEOUT,
                procs=procs,
            )
        finally:
            watch.stop()


# -- targets ------------------------------------------------------------------------------------

APP = "web"
HOST = "web.example.com"
HEADER_ROUTE = "canary-header"
MIRROR_ROUTE = "canary-mirror"
HEADER = ("X-Canary", "always")
SAMPLE = 200  # requests per weighted step through Traefik: 4 sigma at 30% is +-26
BATCH = 40  # requests per convergence probe: 30% and 60% are told apart
HEADER_SAMPLE = 40
POKES = 3  # reconciles forced at each pause, during which the plugin must not write
CONVERGE_TIMEOUT = 60.0  # Traefik picking a route change up (measured 1-3.3 s per step)
SEND_WITHIN = 120.0  # one sample through Traefik (200 requests take ~1 s on a quiet machine)


@dataclass(frozen=True)
class Target:
    name: str
    traffic: bool
    """Real traffic through Traefik (its kubernetesGateway / kubernetesIngressNGINX providers)."""
    header_with_weight: bool
    """A header route may stay while weight > 0 (SMI: only at weight 0, see its capabilities)."""
    mirror: tuple[int, str] | None
    """(percentage, path prefix) of a setMirrorRoute next to the header route; None: the
    target cannot have both."""
    mirror_alone: tuple[int, str] | None
    """A setMirrorRoute the target supports only as its one managed route (walked in v4)."""
    unsupported_mirror: tuple[int, str] | None
    """A setMirrorRoute the target cannot express, which must surface as an error (v4)."""

    @property
    def plugin(self) -> str:
        return f"canary-routers/{self.name}"


TARGETS = {
    t.name: t
    for t in (
        Target("istio", False, True, (50, "/api"), None, None),
        Target("gatewayapi", True, True, (50, "/api"), None, None),
        # ingress-nginx: one managed route at a time (header or mirror); it mirrors whole
        # locations, 100% or nothing.
        Target("nginx", True, True, None, (100, "/"), (50, "/")),
        Target("smi", False, False, None, None, (50, "/api")),
    )
}


def services(ns: str) -> list[dict[str, Any]]:
    """stable and canary Services; Argo adds the pod-template hash to their selectors."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "selector": {"app": APP},
                "ports": [{"name": "http", "port": 80, "targetPort": PORT}],
            },
        }
        for name in ("stable", "canary")
    ]


def route_objects(
    t: Target, ns: str, classes: Mapping[str, str], port: int
) -> list[dict[str, Any]]:
    """The objects a user has before adopting canary-routers (foreign fields included)."""
    if t.name == "istio":
        return [
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": APP, "namespace": ns},
                "spec": {
                    "hosts": [HOST],
                    "http": [
                        {
                            "name": "primary",
                            "retries": {"attempts": 3, "perTryTimeout": "2s"},
                            "route": [
                                {"destination": {"host": "stable"}, "weight": 100},
                                {"destination": {"host": "canary"}, "weight": 0},
                            ],
                        }
                    ],
                },
            }
        ]
    if t.name == "gatewayapi":
        return [
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "GatewayClass",
                "metadata": {"name": classes["gateway"]},
                "spec": {"controllerName": "traefik.io/gateway-controller"},
            },
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "public", "namespace": ns},
                "spec": {
                    "gatewayClassName": classes["gateway"],
                    "listeners": [{"name": "web", "port": port, "protocol": "HTTP"}],
                },
            },
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": APP, "namespace": ns},
                "spec": {
                    "parentRefs": [{"name": "public"}],
                    "hostnames": [HOST],
                    "rules": [
                        {
                            "name": "primary",
                            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                            "timeouts": {"request": "10s"},
                            "backendRefs": [
                                {"name": "stable", "port": 80, "weight": 100},
                                {"name": "canary", "port": 80, "weight": 0},
                            ],
                        }
                    ],
                },
            },
        ]
    if t.name == "nginx":
        return [
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IngressClass",
                "metadata": {"name": classes["ingress"]},
                "spec": {"controller": "k8s.io/ingress-nginx"},
            },
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    "name": APP,
                    "namespace": ns,
                    "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
                },
                "spec": {
                    "ingressClassName": classes["ingress"],
                    "rules": [
                        {
                            "host": HOST,
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": {
                                            "service": {"name": "stable", "port": {"name": "http"}}
                                        },
                                    }
                                ]
                            },
                        }
                    ],
                },
            },
        ]
    return []  # smi: the TrafficSplit is ours to create, as Argo's built-in router does


def plugin_config(t: Target, ns: str) -> dict[str, Any]:
    """The plugin block, in the shape of Argo's built-in one for the same target."""
    if t.name == "istio":
        return {"virtualService": {"name": APP, "routes": ["primary"]}}
    if t.name == "gatewayapi":
        return {"httpRoute": APP, "namespace": ns}
    if t.name == "nginx":
        return {"stableIngress": APP}
    return {"trafficSplitName": APP, "apiVersion": "v1alpha4"}


def canary_strategy(t: Target, ns: str, steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "stableService": "stable",
        "canaryService": "canary",
        "trafficRouting": {
            "managedRoutes": [{"name": HEADER_ROUTE}, {"name": MIRROR_ROUTE}],
            "plugins": {t.plugin: plugin_config(t, ns)},
        },
        "steps": list(steps),
    }


HEADER_STEP = {
    "setHeaderRoute": {
        "name": HEADER_ROUTE,
        "match": [{"headerName": HEADER[0], "headerValue": {"exact": HEADER[1]}}],
    }
}


def mirror_step(percentage: int, prefix: str) -> dict[str, Any]:
    return {
        "setMirrorRoute": {
            "name": MIRROR_ROUTE,
            "percentage": percentage,
            "match": [{"path": {"prefix": prefix}}],
        }
    }


@dataclass(frozen=True)
class Expect:
    weight: int
    header: bool = False
    mirror: tuple[int, str] | None = None  # (percentage, path prefix) in effect


@dataclass(frozen=True)
class Pause:
    """A pause step the walk stops at, and what the routes must say there."""

    index: int
    expect: Expect
    label: str


def walk_steps(t: Target) -> tuple[list[dict[str, Any]], list[Pause]]:
    """setHeaderRoute at weight 0, then weights with the header (and mirror) routes, pausing
    after each so the test can look; the last pause is at 100%.

    The canary keeps one pod from the start: a canary ReplicaSet with no available pod makes
    Argo call RemoveManagedRoutes (and never SetHeaderRoute again), so matching the pod count
    to the weight waits until the weight is above 0."""
    steps: list[dict[str, Any]] = [
        {"setCanaryScale": {"replicas": 1}},
        HEADER_STEP,
        {"pause": {}},
    ]
    pauses = [Pause(2, Expect(0, header=True), "header route at weight 0")]
    header = t.header_with_weight
    if not header:
        steps.append({"setHeaderRoute": {"name": HEADER_ROUTE}})  # no match: removes it
    mirror = t.mirror
    for weight in (30, 60, 100):
        steps.append({"setWeight": weight})
        if weight == 30:
            steps.append({"setCanaryScale": {"matchTrafficWeight": True}})
            if t.mirror is not None:
                steps.append(mirror_step(*t.mirror))
        steps.append({"pause": {}})
        label = (
            f"weight {weight}" + (" + header" if header else "") + (" + mirror" if mirror else "")
        )
        pauses.append(Pause(len(steps) - 1, Expect(weight, header, mirror), label))
    return steps, pauses


# -- one walk -----------------------------------------------------------------------------------

LIST_PATHS = {
    "istio": [("networking.istio.io/v1", "VirtualService", "virtualservices")],
    "gatewayapi": [("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes")],
    "nginx": [("networking.k8s.io/v1", "Ingress", "ingresses")],
    "smi": [
        ("split.smi-spec.io/v1alpha4", "TrafficSplit", "trafficsplits"),
        ("specs.smi-spec.io/v1alpha4", "HTTPRouteGroup", "httproutegroups"),
    ],
}
ROUTE_RESOURCES = frozenset(plural for paths in LIST_PATHS.values() for _, _, plural in paths)


def plugin_requests(cp: ControlPlane, since: int, *, writes: bool) -> list[dict[str, Any]]:
    """Requests the plugin sent: Argo's identity (the plugin inherits it) but not Argo's client."""
    events = (
        cp.write_requests(since, user=ARGO_USER)
        if writes
        else cp.audit_events(since, user=ARGO_USER)
    )
    return [e for e in events if not e.get("userAgent", "").startswith("rollouts-controller")]


@dataclass
class Walk:
    plane: Plane
    argo: ArgoRollouts
    t: Target
    ns: str
    watch: RolloutWatch
    report: Callable[[str], None]
    routing: RoutingConfig
    traefik: Traefik | None = None
    client: TrafficClient | None = None  # requests through ``traefik``
    revision_hash: str = ""
    last_traffic: Expect | None = None  # what the data plane was last seen doing

    @property
    def cp(self) -> ControlPlane:
        return self.plane.cp

    def procs(self) -> list[LocalProcess]:
        return self.plane.procs(self.argo.process)

    def say(self, line: str) -> None:
        self.report(f"{self.t.name}: {line}")

    # -- reading the routes ---------------------------------------------------------------------

    def objects(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for api_version, kind, plural in LIST_PATHS[self.t.name]:
            prefix = "/api/" if "/" not in api_version else "/apis/"
            status, data = self.cp.request(
                "GET", f"{prefix}{api_version}/namespaces/{self.ns}/{plural}"
            )
            assert status == 200, f"list {plural}: {status} {data}"
            out += [{"apiVersion": api_version, "kind": kind, **o} for o in data["items"]]
        return out

    def simulate(self, objs: Sequence[Mapping[str, Any]], request: Request) -> Outcome:
        """What the target plugin's own evaluator says the objects do with ``request``."""
        return simulate(self.routing, [dict(o) for o in objs], request)

    def managed_names(self, objs: Sequence[Mapping[str, Any]]) -> list[str]:
        """Names of the routes in the objects' ordered lists (where a duplicate could hide)."""
        names: list[str] = []
        for o in objs:
            spec = o.get("spec") or {}
            if o["kind"] == "VirtualService":
                names += [h.get("name", "") for h in spec.get("http") or []]
            elif o["kind"] == "HTTPRoute":
                names += [r.get("name", "") for r in spec.get("rules") or []]
            elif o["kind"] == "HTTPRouteGroup":
                names += [m.get("name", "") for m in spec.get("matches") or []]
        return names

    def check_routes(self, expect: Expect, label: str) -> list[dict[str, Any]]:
        """The route objects say exactly ``expect`` (simulated like the data plane reads them),
        with no managed route twice and the user's own fields intact."""
        objs = self.objects()
        plain = Request(headers=(("Host", HOST),))
        header = plain.with_headers(HEADER)
        want = Fraction(expect.weight, 100)
        got = self.simulate(objs, plain)
        assert got.share("canary") == want, f"{label}: plain request: {got.describe()}"
        got = self.simulate(objs, header)
        want_header = Fraction(1) if expect.header else want
        assert got.share("canary") == want_header, f"{label}: {HEADER}: {got.describe()}"
        for spec in (self.t.mirror, self.t.mirror_alone):
            if spec is None:
                continue
            percentage, prefix = spec
            req = Request(path=prefix.rstrip("/") + "/orders", headers=(("Host", HOST),))
            got = self.simulate(objs, req)
            on = expect.mirror == spec
            want_mirror = Fraction(percentage, 100) if on else Fraction(0)
            assert got.mirror("canary") == want_mirror, f"{label}: mirror: {got.describe()}"
        names = self.managed_names(objs)
        for name in (HEADER_ROUTE, MIRROR_ROUTE):
            assert names.count(name) <= 1, f"{label}: {name} repeated: {names}"
        self.check_foreign(objs, label)
        return objs

    def check_foreign(self, objs: Sequence[Mapping[str, Any]], label: str) -> None:
        by_kind = {o["kind"]: o for o in objs}
        if self.t.name == "istio":
            primary = [
                h for h in by_kind["VirtualService"]["spec"]["http"] if h.get("name") == "primary"
            ]
            assert primary and primary[0].get("retries") == {
                "attempts": 3,
                "perTryTimeout": "2s",
            }, f"{label}: the user's retries were lost: {primary}"
        elif self.t.name == "gatewayapi":
            primary = [
                r for r in by_kind["HTTPRoute"]["spec"]["rules"] if r.get("name") == "primary"
            ]
            assert primary and primary[0].get("timeouts") == {"request": "10s"}, (
                f"{label}: the user's timeouts were lost: {primary}"
            )
        elif self.t.name == "nginx":
            stable = next(o for o in objs if o["metadata"]["name"] == APP)
            ann = stable["metadata"].get("annotations") or {}
            assert ann.get("nginx.ingress.kubernetes.io/proxy-body-size") == "8m", (
                f"{label}: the user's annotation was lost: {ann}"
            )

    # -- traffic -----------------------------------------------------------------------------

    def versions_by_address(self) -> dict[str, str]:
        """Pod address -> "stable" / "canary" (by pod-template hash, from the Rollout's status)."""
        st = get_rollout(self.cp, self.ns, APP)["status"]
        stable, current = st.get("stableRS"), st.get("currentPodHash")
        out: dict[str, str] = {}
        for p in pods(self.cp, self.ns, f"app={APP}"):
            h = p["metadata"]["labels"].get(HASH_LABEL)
            ip = p.get("status", {}).get("podIP")
            if not ip:
                continue
            out[ip] = "stable" if h == stable else "canary" if h == current else f"other:{h}"
        return out

    def send(
        self, n: int, headers: Sequence[tuple[str, str]] = (), within: float = SEND_WITHIN
    ) -> Counter[str]:
        """``n`` requests through Traefik, counted by the version of the pod that answered
        (each bounded, retried a bounded number of times and counted: ``TrafficClient``)."""
        assert self.client is not None
        versions = self.versions_by_address()
        counts = self.client.send(HOST, n, dict(headers), within=within, what=f"{self.t.name}")
        out: Counter[str] = Counter()
        for backend, k in counts.items():
            out[versions.get(backend, backend)] += k
        return out

    def converge(self, headers: Sequence[tuple[str, str]], new: Fraction, old: Fraction) -> float:
        """Seconds until a probe batch fits the new share and (when they differ) not the old."""
        assert self.client is not None
        client = self.client

        def describe() -> str:
            return f"with headers {headers}; {client.tally.line()}\n{client.describe()}"

        return converge(
            lambda n, within: self.send(n, headers, within),
            new,
            old,
            batch=BATCH,
            timeout=CONVERGE_TIMEOUT,
            describe=describe,
        )

    def check_traffic(self, expect: Expect, label: str) -> str:
        """Requests through Traefik land on the pods in the expected shares (4 sigma)."""
        if self.client is None:
            return "no data plane here: objects and simulation only"
        old = self.last_traffic or expect
        want = Fraction(expect.weight, 100)
        want_header = Fraction(1) if expect.header else want
        took = max(
            self.converge((), want, Fraction(old.weight, 100)),
            self.converge(
                (HEADER,), want_header, Fraction(1) if old.header else Fraction(old.weight, 100)
            ),
        )
        counts = self.send(SAMPLE)
        assert counts["stable"] + counts["canary"] == SAMPLE, (
            f"{label}: {dict(counts)}\n{self.diagnose()}\n{self.traefik_state()}"
        )
        assert consistent(counts["canary"], SAMPLE, want), (
            f"{label}: canary {counts['canary']}/{SAMPLE}, want {want} (4 sigma)"
        )
        hdr = self.send(HEADER_SAMPLE, (HEADER,))
        assert hdr["stable"] + hdr["canary"] == HEADER_SAMPLE, f"{label}: {dict(hdr)}"
        assert consistent(hdr["canary"], HEADER_SAMPLE, want_header), (
            f"{label}: with {HEADER[0]}: {dict(hdr)}, want {want_header}"
        )
        self.last_traffic = expect
        return (
            f"Traefik: canary {counts['canary']}/{SAMPLE} (want {float(want):.2f}), "
            f"with {HEADER[0]} {hdr['canary']}/{HEADER_SAMPLE}, converged in {took:.1f}s"
        )

    # -- Argo -------------------------------------------------------------------------------

    def reconciles(self) -> int:
        needle = f"rollout={APP}"
        try:
            text = self.argo.log.read_text(errors="replace")
        except OSError:
            return 0
        return sum(
            1
            for line in text.splitlines()
            if 'msg="Reconciliation completed"' in line
            and needle in line
            and f"namespace={self.ns}" in line
        )

    def check_quiet_reconciles(self, label: str) -> str:
        """Forced reconciles (Argo calls SetWeight and VerifyWeight each time): zero writes."""
        mark = self.cp.audit_mark()
        before = self.reconciles()
        for i in range(POKES):
            status, data = self.cp.request(
                "PATCH",
                f"{ROLLOUTS.format(ns=self.ns)}/{APP}",
                {"metadata": {"annotations": {"e2e.canary-routers.io/poke": f"{label} {i}"}}},
                content_type="application/merge-patch+json",
            )
            assert status == 200, f"poke: {status} {data}"
            want = before + i + 1

            def reconciled(want: int = want) -> bool:
                return self.reconciles() >= want

            wait_for(f"reconcile {i + 1} after a poke", reconciled, TIMEOUT, procs=self.procs())
        writes = plugin_requests(self.cp, mark, writes=True)
        assert writes == [], (
            f"{label}: the plugin wrote on a plain reconcile: {self.cp.summarize(writes)}"
        )
        reads = plugin_requests(self.cp, mark, writes=False)
        return f"{POKES} reconciles: 0 writes, {len(reads)} plugin requests"

    def latency(self, since: float, pause: Pause, steps: Sequence[Mapping[str, Any]]) -> str:
        """Per setWeight step before ``pause``: from the step's start (Argo's status) to the
        weight in the status, to ``weights.verified`` true, to the step's end, from the watch."""
        out = []
        first = pause.index
        while first > 0 and "pause" not in steps[first - 1]:
            first -= 1
        for i in range(first, pause.index):
            weight = steps[i].get("setWeight")
            if weight is None:
                continue
            started = self.watch.first_time(lambda o, i=i: step_index(o) == i, since)
            if started is None:
                out.append(f"step {i} (setWeight {weight}): start not observed")
                continue

            def applied(o: Mapping[str, Any], w: int = weight) -> bool:
                return canary_weight(o) == w

            def verified(o: Mapping[str, Any], w: int = weight) -> bool:
                weights = o.get("status", {}).get("canary", {}).get("weights") or {}
                return canary_weight(o) == w and weights.get("verified") is True

            marks = {
                "weight set": self.watch.first_time(applied, started),
                "weight verified": self.watch.first_time(verified, started),
                "step done": self.watch.first_time(
                    lambda o, i=i: (step_index(o) or 0) > i, started
                ),
            }
            # weights.verified stays unset where VerifyWeight answered NotImplemented or failed.
            parts = [
                f"{k} +{t - started:.2f}s" if t is not None else f"{k}: not seen"
                for k, t in marks.items()
            ]
            if marks["weight verified"] is None and marks["step done"] is not None:
                parts[1] = f"weight verified: {self.verified_in_log(i, weight)}"
            out.append(f"step {i} setWeight {weight}: " + ", ".join(parts))
        return "; ".join(out)

    def verified_in_log(self, index: int, weight: int) -> str:
        """Why a finished step never showed ``weights.verified: true``, from Argo's log.

        When VerifyWeight first answers NotVerified (Gateway API: the route's status is not yet
        for its new generation), Argo persists ``verified: false``; a later reconcile whose
        SetWeight changes nothing reuses the stored weights *object* for the new status
        (controller.go ``newStatus.Canary.Weights = rollout.Status.Canary.Weights``), so setting
        ``Verified`` there changes both sides of the status diff and ``true`` is never written,
        while the step still completes on it (argo-rollouts v1.10.1)."""
        needle = f'"Desired weight (stepIdx: {index}) {weight} '
        where = f"namespace={self.ns} rollout={APP}"
        lines = [
            line
            for line in self.argo.log.read_text(errors="replace").splitlines()
            if needle in line and where in line
        ]
        waited = sum("not yet verified" in line for line in lines)
        if any(needle + 'verified"' in line for line in lines):
            return (
                f"in Argo's log after {waited} NotVerified (the status kept verified=false: "
                "Argo does not persist verified=true from a reconcile that changed no weight)"
            )
        return f"not seen, not in Argo's log either ({waited} NotVerified)"

    # -- driving the Rollout ---------------------------------------------------------------

    def at_pause(self, pause: Pause, steps: Sequence[Mapping[str, Any]], since: float) -> None:
        """Wait until Argo pauses at ``pause``; then routes, traffic, quiet reconciles, latency."""
        current = self.revision_hash

        def there(o: Mapping[str, Any]) -> bool:
            return bool(paused_at(pause.index)(o) and o["status"].get("currentPodHash") == current)

        self.watch.wait(pause.label, there, TIMEOUT, procs=self.procs(), diagnose=self.diagnose)
        self.check_routes(pause.expect, pause.label)
        traffic = self.check_traffic(pause.expect, pause.label)
        quiet = self.check_quiet_reconciles(pause.label)
        self.say(f"{pause.label}: routes ok; {traffic}; {quiet}")
        lat = self.latency(since, pause, steps)
        if lat:
            self.say(f"{pause.label}: Argo step latency: {lat}")

    def new_revision(self, version: str) -> float:
        before = get_rollout(self.cp, self.ns, APP)["status"].get("currentPodHash")
        since = time.monotonic()
        set_version(self.cp, self.ns, APP, version)
        _, obj = self.watch.wait(
            f"{version} ReplicaSet",
            lambda o: o.get("status", {}).get("currentPodHash") not in (None, before),
            TIMEOUT,
            procs=self.procs(),
        )
        self.revision_hash = obj["status"]["currentPodHash"]
        return since

    def promote(self) -> float:
        since = time.monotonic()
        promote(self.cp, self.ns, APP)
        return since

    def warnings(self) -> list[str]:
        """The Rollout's Warning events, as "reason: message (xcount)"."""
        _, evs = self.cp.request(
            "GET",
            f"/api/v1/namespaces/{self.ns}/events",
            params={"fieldSelector": f"involvedObject.name={APP},type=Warning"},
        )
        return [
            f"{e.get('reason')}: {e.get('message')} (x{e.get('count', 1)})"
            for e in (evs or {}).get("items", [])
        ]

    def traefik_state(self) -> str:
        """Traefik's view of this namespace (routers and services), for failures."""
        if self.traefik is None:
            return ""
        raw = self.traefik.rawdata()
        keep = {
            kind: {k: v for k, v in (raw.get(kind) or {}).items() if self.ns in k}
            for kind in ("routers", "services")
        }
        return "Traefik: " + json.dumps(keep, indent=1)[:8000]

    def diagnose(self) -> str:
        objs = json.dumps(self.objects(), indent=1)[:6000]
        return f"route objects: {objs}\nplugin processes: {self.argo.descendants()}"

    def plugin_pids(self) -> tuple[int | None, int | None]:
        """(bridge pid, Python pid) serving this target."""
        bridge = python = None
        for pid, cmd in self.argo.descendants():
            if self.t.plugin not in cmd:
                continue
            if "argo-plugin" in cmd:
                python = pid
            elif "plugin-bin" in cmd or "canary-routers-argo" in cmd:
                bridge = pid
        return bridge, python


def kill(pid: int | None, what: str) -> None:
    assert pid is not None, f"no {what} process found"
    os.kill(pid, signal.SIGKILL)  # a crash, not a shutdown


def run_walk(
    plane: Plane, argo: ArgoRollouts, t: Target, tmp: Path, report: Callable[[str], None]
) -> None:
    cp = plane.cp
    ns = cp.new_namespace(t.name)
    suffix = ns.rsplit("-", 1)[-1]
    classes = {"gateway": f"traefik-{suffix}", "ingress": f"nginx-{suffix}"}
    with ExitStack() as stack:
        traefik: Traefik | None = None
        if t.traffic:
            try:
                binary = ensure_traefik()
            except BinariesUnavailable as exc:
                unavailable(str(exc), "Argo Rollouts e2e")
            traefik = Traefik(binary, tmp / "traefik", cp.kubeconfig, ns, classes["ingress"])
            (tmp / "traefik").mkdir()
        port = traefik.port if traefik else 0
        apply(cp, *services(ns), *route_objects(t, ns, classes, port))
        stack.callback(
            cp.kubectl,
            "delete",
            "gatewayclass",
            classes["gateway"],
            "ingressclass",
            classes["ingress"],
            "--ignore-not-found",
            check=False,
        )
        client: TrafficClient | None = None
        if traefik is not None:
            stack.enter_context(traefik)
            client = stack.enter_context(TrafficClient(traefik.port, describe=traefik.logs))
        watch = RolloutWatch(cp, ns, APP).start()
        stack.callback(watch.stop)
        steps, pauses = walk_steps(t)
        rollout = rollout_manifest(
            APP,
            ns,
            argo.instance_id,
            version="v1",
            replicas=2,
            canary=canary_strategy(t, ns, steps),
        )
        routing = RoutingConfig.from_document(rollout)
        walk = Walk(plane, argo, t, ns, watch, report, routing, traefik, client)
        grant_plugin(cp, rollout)
        create(cp, rollout)
        _, obj = watch.wait(
            "v1 Healthy", healthy_on(), TIMEOUT, procs=walk.procs(), diagnose=walk.diagnose
        )
        walk.revision_hash = obj["status"]["stableRS"]
        walk.check_routes(Expect(0), "v1")
        walk.say(f"v1 healthy: {walk.check_traffic(Expect(0), 'v1')}")

        # Revision 2: header route at weight 0, weights with header (and mirror), then abort.
        since = walk.new_revision("v2")
        for i, pause in enumerate(pauses[:3]):
            if i:
                since = walk.promote()
            walk.at_pause(pause, steps, since)
        early = walk.warnings()
        assert early == [], f"Warning events before anything was killed: {early}"
        abort(cp, ns, APP)
        t0 = time.monotonic()
        _, obj = watch.wait(
            "abort: all traffic back on stable",
            lambda o: o.get("status", {}).get("abort") is True and canary_weight(o) == 0,
            TIMEOUT,
            procs=walk.procs(),
            diagnose=walk.diagnose,
        )
        walk.check_routes(Expect(0), "aborted")
        walk.say(
            f"abort: 100% stable after {time.monotonic() - t0:.2f}s; "
            f"{walk.check_traffic(Expect(0), 'aborted')}; {walk.check_quiet_reconciles('aborted')}"
        )

        # Revision 3: the whole walk; the Python side is killed after the first weighted pause,
        # the bridge after the second; Argo (re)starts them and the walk goes on.
        since = walk.new_revision("v3")
        for i, pause in enumerate(pauses):
            if i:
                since = walk.promote()
            walk.at_pause(pause, steps, since)
            if i == 1:
                bridge, python = walk.plugin_pids()
                kill(python, "routers argo-plugin")
                walk.say(f"killed the Python side (pid {python}) of bridge {bridge}")
            elif i == 2:
                bridge, python = walk.plugin_pids()
                kill(bridge, "bridge")
                walk.say(f"killed the bridge (pid {bridge}, Python pid {python})")
        new_bridge, new_python = walk.plugin_pids()
        walk.say(f"plugin processes now: bridge {new_bridge}, Python {new_python}")
        walk.promote()
        done = healthy_on(walk.revision_hash)
        _, obj = watch.wait(
            "v3 fully promoted, all traffic on it as the new stable",
            # Argo flips stableRS in one reconcile and sets the weight back to 0 (the stable
            # Service now selects the new pods) in the next.
            lambda o: done(o) and canary_weight(o) == 0,
            TIMEOUT,
            procs=walk.procs(),
            diagnose=walk.diagnose,
        )
        objs = walk.check_routes(Expect(0), "promoted")
        names = walk.managed_names(objs)
        assert HEADER_ROUTE not in names and MIRROR_ROUTE not in names, names
        walk.say(
            f"promoted: managed routes removed; {walk.check_traffic(Expect(0), 'promoted')}; "
            f"{walk.check_quiet_reconciles('promoted')}"
        )
        walk.say(f"Warning events on the Rollout: {walk.warnings() or 'none'}")
        if t.mirror_alone is not None or t.unsupported_mirror is not None:
            mirror_revision(walk)
        if client is not None:
            walk.say(f"requests through Traefik: {client.tally.line()}")


def mirror_revision(walk: Walk) -> None:
    """v4: a mirror route the target supports only alone (nginx), then one it cannot express
    (on SMI at weight 30), which must surface (Argo's controller log and our Warning Event on
    the Rollout, counted on one Event), write nothing and take no step; then an abort at that
    stuck step, which must still reach 100% stable (Argo: RemoveManagedRoutes, then SetWeight 0;
    removing routes never written must succeed)."""
    t, cp = walk.t, walk.cp
    steps: list[dict[str, Any]] = [{"setCanaryScale": {"replicas": 1}}]
    if t.mirror_alone is not None:
        steps += [mirror_step(*t.mirror_alone), {"pause": {}}]
    weight = 0 if t.mirror_alone is not None else 30
    if weight:
        steps.append({"setWeight": weight})
    stuck_at = len(steps)
    if t.unsupported_mirror is not None:
        steps += [mirror_step(*t.unsupported_mirror), {"pause": {}}]
    status, data = cp.request(
        "PATCH",
        f"{ROLLOUTS.format(ns=walk.ns)}/{APP}",
        {"spec": {"strategy": {"canary": {"steps": steps}}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, f"{status} {data}"
    since = walk.new_revision("v4")
    alone = Expect(0, mirror=t.mirror_alone)
    if t.mirror_alone is not None:
        walk.at_pause(Pause(2, alone, f"mirror {t.mirror_alone} alone"), steps, since)
        walk.promote()
    if t.unsupported_mirror is None:
        return
    walk.watch.wait(
        f"weight {weight} before the unsupported mirror step",
        lambda o: step_index(o) == stuck_at and canary_weight(o) == weight,
        TIMEOUT,
        procs=walk.procs(),
        diagnose=walk.diagnose,
    )
    stuck = Expect(weight, mirror=t.mirror_alone)
    before = walk.objects()
    mark = cp.audit_mark()
    log_mark = walk.argo.log.stat().st_size

    def logged(call: str, since: int) -> str | None:
        with open(walk.argo.log, errors="replace") as f:
            f.seek(since)
            for line in f:
                if call in line and walk.ns in line and "level=error" in line:
                    return line.strip()
        return None

    line = wait_for(
        "the SetMirrorRoute error",
        lambda: logged("SetMirrorRoute", log_mark),
        TIMEOUT,
        procs=walk.procs(),
    )
    obj = get_rollout(cp, walk.ns, APP)
    assert (step_index(obj) or 0) <= stuck_at, f"went past the mirror step: {obj['status']}"
    writes = [
        e
        for e in plugin_requests(cp, mark, writes=True)
        if (e.get("objectRef") or {}).get("resource") in ROUTE_RESOURCES
    ]
    assert writes == [], f"an unsupported mirror wrote: {cp.summarize(writes)}"
    assert [o.get("spec") for o in walk.objects()] == [o.get("spec") for o in before]
    walk.check_routes(stuck, "unsupported mirror refused")
    message = line.split('msg="', 1)[-1][:300]
    walk.say(f"unsupported setMirrorRoute {t.unsupported_mirror}: refused, no write: {message}")

    # Argo records an event for SetWeight and VerifyWeight errors only; for SetHeaderRoute,
    # SetMirrorRoute, RemoveManagedRoutes and UpdateHash our plugin records it, once per
    # message, counting Argo's retries on the same Event.
    def ours() -> list[dict[str, Any]]:
        _, evs = cp.request(
            "GET",
            f"/api/v1/namespaces/{walk.ns}/events",
            params={"fieldSelector": f"involvedObject.name={APP},reason=CanaryRoutersError"},
        )
        return list((evs or {}).get("items") or [])

    def counted() -> list[dict[str, Any]] | None:
        found = [e for e in ours() if "SetMirrorRoute" in e.get("message", "")]
        return found if found and max(e.get("count", 1) for e in found) >= 2 else None

    (event,) = wait_for("our Warning Event, counted twice", counted, TIMEOUT, procs=walk.procs())
    assert event["type"] == "Warning", event
    assert event["involvedObject"]["kind"] == "Rollout", event
    assert event["involvedObject"]["uid"] == obj["metadata"]["uid"], event
    assert event["source"]["component"] == t.plugin, event
    assert event["message"].startswith(f"{t.plugin}: Rollout {walk.ns}/{APP}: SetMirrorRoute"), (
        event
    )
    walk.say(
        f"Warning event on the Rollout: {event['reason']}: {event['message'][:200]} "
        f"(x{event['count']}, one Event)"
    )

    # Abort at the stuck step.
    abort_mark = walk.argo.log.stat().st_size
    t0 = time.monotonic()
    abort(cp, walk.ns, APP)
    walk.watch.wait(
        "abort at the unsupported mirror step: all traffic back on stable",
        lambda o: (
            o.get("status", {}).get("abort") is True
            and canary_weight(o) == 0
            and phase(o) == "Degraded"
        ),
        TIMEOUT,
        procs=walk.procs(),
        diagnose=walk.diagnose,
    )
    walk.check_routes(Expect(0), "aborted at the unsupported mirror")
    assert logged("RemoveManagedRoutes", abort_mark) is None, logged(
        "RemoveManagedRoutes", abort_mark
    )
    assert not [e for e in ours() if "RemoveManagedRoutes" in e.get("message", "")]
    walk.say(
        f"abort at the unsupported mirror step: 100% stable after {time.monotonic() - t0:.2f}s"
        f" (from weight {weight}); {walk.check_quiet_reconciles('aborted at the mirror')}"
    )


# -- the plugin's permissions, Argo with the bridge, the tests ----------------------------------


def grant_plugin(cp: ControlPlane, rollout: Mapping[str, Any]) -> None:
    """Exactly what `routers rbac --config <the Rollout>` generates, bound to Argo's identity
    (the plugin runs as the controller's service account)."""
    ns = rollout["metadata"]["namespace"]
    config = RoutingConfig.from_document(dict(rollout))
    grant(cp, rbac_manifests(config, events=True), ns, user=ARGO_USER)


@pytest.fixture(scope="module")
def argo(plane: Plane) -> Iterator[ArgoRollouts]:
    """The controller with the canary-routers bridge registered once per target."""
    try:
        bridge = ensure_bridge()
    except BinariesUnavailable as exc:
        unavailable(str(exc), "Argo Rollouts e2e")
    plugins = [
        {
            "name": t.plugin,
            "location": f"file://{bridge}",
            "args": ["--", sys.executable, "-m", "routers"],
        }
        for t in TARGETS.values()
    ]
    with ArgoRollouts(
        plane.cp,
        binary=plane.argo_bin,
        state_dir=plane.tmp / "argo-routers",
        instance_id="routers",
        plugins=plugins,
    ) as controller:
        yield controller


@pytest.mark.timeout(WALK_TIMEOUT)
@pytest.mark.parametrize("target", list(TARGETS))
def test_walk_through_canary_routers(
    plane: Plane,
    argo: ArgoRollouts,
    target: str,
    tmp_path: Path,
    e2e_report: Callable[[str], None],
) -> None:
    """A real Rollout per target, driven by the real controller through the bridge."""
    run_walk(plane, argo, TARGETS[target], tmp_path, e2e_report)
