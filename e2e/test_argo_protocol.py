"""The Argo Rollouts plugin protocol, call by call, against a real kube-apiserver.

Argo's own client code drives the bridge (argo/cmd/argo-driver: the controller's
argo-rollouts-config reading, plugin install into plugin-bin/, go-plugin client and plugin
Reconciler); the bridge runs ``routers argo-plugin``, which runs as the controller's
ServiceAccount with exactly the RBAC ``routers rbac --service-account`` prints. After every call
the objects are read back raw (not through our plugins) and the audit log counts the plugin's
writes: repeated reconciles write nothing, a killed Python side or bridge continues with every
route in place, and refused instructions reach the server not at all.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import statistics
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e._argo import Driver, build, wait_gone
from e2e.cluster import BinariesUnavailable, ControlPlane
from e2e.conftest import unavailable
from e2e.workers import wait_for
from routers.argo import RECORD_PREFIX
from routers.io import load_documents, load_one

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CRDS = ("gateway-standard-v1.6", "istio", "smi-sdk", "traefik")
TARGETS = ("istio", "gatewayapi", "nginx", "smi", "traefik")
SA = "argo-rollouts"
HEADER = [{"headerName": "X-Canary", "headerValue": {"exact": "always"}}]
MIRROR = [{"method": {"exact": "GET"}, "path": {"prefix": "/api"}}]
# What each target refuses, with the reason the step's error must carry (None: it can).
HEADER_REFUSED = {"traefik": "header-based routing is not supported"}
MIRROR_REFUSED = {
    "smi": "traffic mirroring is not supported",
    "nginx": "at most 1 managed route",  # one route at a time, and the header route is active
}
# Traefik mirrors every request its mirroring TraefikService serves: the match must say so.
MIRROR_MATCH = {"traefik": [{"path": {"prefix": "/"}}]}


@pytest.fixture(scope="module")
def binaries() -> tuple[Path, Path]:
    try:
        return build("bridge"), build("driver")
    except BinariesUnavailable as exc:
        unavailable(str(exc), "argo bridge/driver")


@dataclass
class Harness:
    cp: ControlPlane
    driver: Driver
    controller_ns: str
    user: str

    def __post_init__(self) -> None:
        self.call = self.driver.call
        self.ok = self.driver.ok

    def writes(self, since: int) -> list[str]:
        """The plugin's writes since ``since``, except its Warning Events (best effort, written
        in the background: checked by :meth:`warnings`)."""
        return self.cp.summarize(
            e
            for e in self.cp.write_requests(since=since, user=self.user, include_system=True)
            if (e.get("objectRef") or {}).get("resource") != "events"
        )

    def warnings(self, t: Target, text: str) -> dict[str, Any]:
        """Our Warning Event on ``t``'s Rollout whose message holds ``text`` (waited for)."""

        def found() -> dict[str, Any] | None:
            _, evs = self.cp.request(
                "GET",
                f"/api/v1/namespaces/{t.namespace}/events",
                params={"fieldSelector": "reason=CanaryRoutersError,type=Warning"},
            )
            hits = [e for e in (evs or {}).get("items") or [] if text in e.get("message", "")]
            assert len(hits) <= 1, hits
            return hits[0] if hits else None

        return wait_for(f"the Warning Event naming {text!r}", found, 30)


def _plugin_kubeconfig(cp: ControlPlane, namespace: str, path: Path) -> None:
    """A kubeconfig holding a token of the controller's ServiceAccount (TokenRequest API)."""
    status, body = cp.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA}},
    )
    assert status in (201, 409), body
    status, body = cp.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{SA}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 7200},
        },
    )
    assert status == 201, body
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "e2e", "cluster": {"server": cp.server, "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": SA, "user": {"token": body["status"]["token"]}}],
        "contexts": [{"name": SA, "context": {"cluster": "e2e", "user": SA}}],
        "current-context": SA,
    }
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)


@pytest.fixture(scope="module")
def argo(
    binaries: tuple[Path, Path],
    control_plane: Callable[..., ControlPlane],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Harness]:
    bridge, driver_bin = binaries
    cp = control_plane(CRDS)
    work = tmp_path_factory.mktemp("argo")
    controller_ns = cp.new_namespace("argo-rollouts")
    plugin_kubeconfig = work / "plugin-kubeconfig"
    _plugin_kubeconfig(cp, controller_ns, plugin_kubeconfig)
    # The recipe of argo/README.md: one entry per target, file:// location, args for the bridge.
    entries = [
        {
            "name": f"canary-routers/{t}",
            "location": f"file://{bridge}",
            "args": [
                f"--kubeconfig={plugin_kubeconfig}",
                "--timeout=90s",
                "--",
                sys.executable,
                "-m",
                "routers",
            ],
        }
        for t in TARGETS
    ]
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "argo-rollouts-config", "namespace": controller_ns},
        "data": {"trafficRouterPlugins": yaml.safe_dump(entries)},
    }
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump(config_map))
    driver = Driver(
        driver_bin,
        kubeconfig=cp.kubeconfig,
        namespace=controller_ns,
        workdir=work,
        log=work / "driver.log",
    )
    harness = Harness(cp, driver, controller_ns, f"system:serviceaccount:{controller_ns}:{SA}")
    try:
        yield harness
    finally:
        driver.close()
        for method, values in sorted(driver.latencies.items()):
            print(
                f"\nargo plugin call latency {method}: median {statistics.median(values)} ms, "
                f"max {max(values)} ms over {len(values)} calls"
            )


# -- the targets: the examples/ objects and routing blocks, moved into a Rollout ---------------


@dataclass
class Target:
    name: str
    namespace: str
    rollout: dict[str, Any]
    managed: list[str]
    objects: list[dict[str, Any]]

    @property
    def plugin(self) -> str:
        return f"canary-routers/{self.name}"


def _rollout_for(name: str, namespace: str) -> tuple[dict[str, Any], list[str]]:
    doc = load_one(str(ROOT / "examples" / name / "routing.yaml"))
    routing = dict(doc.get("trafficRouting") or {})
    for key in ("managedRoutes", "maxTrafficWeight"):
        if key in doc:
            routing[key] = doc[key]
    blocks = {k: v for k, v in routing.items() if k not in ("managedRoutes", "maxTrafficWeight")}
    if "plugins" in blocks:
        ((_, block),) = blocks.pop("plugins").items()
    else:
        ((_, block),) = blocks.items()
    managed = [r["name"] for r in routing.get("managedRoutes") or []]
    traffic = {"plugins": {f"canary-routers/{name}": block}}
    if managed:
        traffic["managedRoutes"] = [{"name": n} for n in managed]
    rollout = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "checkout", "namespace": namespace, "uid": str(uuid.uuid4())},
        "spec": {
            "strategy": {
                "canary": {
                    "stableService": doc["stableService"],
                    "canaryService": doc["canaryService"],
                    "trafficRouting": traffic,
                    "steps": [{"setWeight": 20}, {"pause": {}}],
                }
            }
        },
        "status": {},
    }
    return rollout, managed


def setup_target(h: Harness, name: str, *, watch_cache: bool = False) -> Target:
    cp = h.cp
    ns = cp.new_namespace(f"argo-{name}")
    rollout, managed = _rollout_for(name, ns)
    objects = []
    for obj in load_documents([str(ROOT / "examples" / name / "live.yaml")]):
        if obj.get("kind") == "CustomResourceDefinition":
            continue
        body = copy.deepcopy(obj)
        body.pop("status", None)
        meta = body["metadata"]
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            meta.pop(key, None)
        meta["namespace"] = ns
        objects.append(body)
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    # RBAC exactly as the README says: `routers rbac --config rollout.yaml --service-account ...`
    path = Path(cp.state_dir or "/tmp") / f"rollout-{ns}.yaml"
    path.write_text(yaml.safe_dump(rollout))
    rbac = subprocess.run(
        [
            sys.executable,
            "-m",
            "routers",
            "rbac",
            "--config",
            str(path),
            "--service-account",
            f"{h.controller_ns}/{SA}",
            "--name",
            f"canary-routers-{name}",
            *(["--watch-cache"] if watch_cache else []),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    cp.kubectl("apply", "-f", "-", input=rbac.stdout)
    return Target(name, ns, rollout, managed, objects)


# -- reading the objects raw (independent of the plugins under test) ------------------------


def get(cp: ControlPlane, path: str) -> dict[str, Any] | None:
    status, body = cp.request("GET", path)
    if status == 404:
        return None
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def _dest_weight(
    route: dict[str, Any], *, subset: str | None = None, host: str | None = None
) -> int:
    for d in route.get("route") or []:
        dest = d.get("destination") or {}
        if (subset is None or dest.get("subset") == subset) and (
            host is None or dest.get("host", "").split(".")[0] == host
        ):
            return int(d.get("weight", 0))
    raise AssertionError(f"no destination {subset or host} in {route}")


@dataclass
class View:
    canary: int
    stable: int
    headers: set[str]
    mirrors: set[str]
    holder: dict[str, Any]


def view(cp: ControlPlane, t: Target) -> View:
    ns = t.namespace
    if t.name == "istio":
        vs = get(cp, f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/checkout")
        assert vs is not None
        http = {r.get("name"): r for r in vs["spec"]["http"]}
        primary = http["primary"]
        # every weighted route says the same
        assert _dest_weight(http["mobile"], subset="canary") == _dest_weight(
            primary, subset="canary"
        )
        return View(
            _dest_weight(primary, subset="canary"),
            _dest_weight(primary, subset="stable"),
            {
                n
                for n, r in http.items()
                if n in t.managed
                and r.get("match")
                and not r.get("mirror")
                and not r.get("mirrors")
            },
            {
                n
                for n, r in http.items()
                if n in t.managed and (r.get("mirror") or r.get("mirrors"))
            },
            vs,
        )
    if t.name == "gatewayapi":
        route = get(cp, f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/checkout")
        assert route is not None
        rules = route["spec"]["rules"]
        api = next(r for r in rules if r.get("name") == "api")
        weights = {b["name"]: b.get("weight", 1) for b in api["backendRefs"]}
        ours = [r for r in rules if str(r.get("name", "")).split("-")[0] == "canary"]
        headers = {
            m
            for r in ours
            for m in t.managed
            if str(r.get("name", "")).startswith(m)
            and not any(f.get("type") == "RequestMirror" for f in r.get("filters") or [])
        }
        mirrors = {
            m
            for r in ours
            for m in t.managed
            if str(r.get("name", "")).startswith(m)
            and any(f.get("type") == "RequestMirror" for f in r.get("filters") or [])
        }
        return View(weights["checkout-canary"], weights["checkout-stable"], headers, mirrors, route)
    if t.name == "nginx":
        stable = get(cp, f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/shop")
        # Argo's name for the canary Ingress: <rollout>-<stable ingress>-canary
        canary = get(
            cp, f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/checkout-shop-canary"
        )
        assert stable is not None
        ann = (canary or {}).get("metadata", {}).get("annotations") or {}
        weight = int(ann.get("nginx.ingress.kubernetes.io/canary-weight", "0")) if canary else 0
        total = int(ann.get("nginx.ingress.kubernetes.io/canary-weight-total", "100"))
        headers = (
            {t.managed[0]}
            if any(k.startswith("nginx.ingress.kubernetes.io/canary-by-header") for k in ann)
            else set()
        )
        mirror_ann = stable["metadata"].get("annotations") or {}
        mirrors = (
            {t.managed[1]} if "nginx.ingress.kubernetes.io/mirror-target" in mirror_ann else set()
        )
        return View(weight, total - weight, headers, mirrors, stable)
    if t.name == "traefik":
        base = f"/apis/traefik.io/v1alpha1/namespaces/{ns}/traefikservices"
        wrr = get(cp, f"{base}/shop-wrr")
        front = get(cp, f"{base}/shop")
        assert wrr is not None and front is not None
        w = {x["name"]: x.get("weight", 1) for x in wrr["spec"]["weighted"]["services"]}
        mirrors = {m["name"] for m in front["spec"]["mirroring"].get("mirrors") or []}
        return View(
            w["shop-canary"],
            w["shop-stable"],
            set(),
            {t.managed[0]} if "shop-canary" in mirrors else set(),
            wrr,
        )
    split = get(cp, f"/apis/split.smi-spec.io/v1alpha4/namespaces/{ns}/trafficsplits/checkout")
    assert split is not None
    backends = {b["service"]: b["weight"] for b in split["spec"]["backends"]}
    groups = [m.get("name") for m in split["spec"].get("matches") or [] if m.get("name")]
    if groups:
        # With matches, the backends split only the matched requests (all to the canary); the
        # rest goes to the root Service, i.e. stable: the weight is 0.
        assert backends == {"checkout-canary": 100, "checkout-stable": 0}, backends
        return View(0, 100, {t.managed[0]}, set(), split)
    return View(backends["checkout-canary"], backends["checkout-stable"], set(), set(), split)


def records(v: View) -> dict[str, Any]:
    ann = v.holder["metadata"].get("annotations") or {}
    return {k: json.loads(val) for k, val in ann.items() if k.startswith(RECORD_PREFIX)}


def set_gateway_status(cp: ControlPlane, t: Target) -> None:
    """What Gateway/mesh controllers do: accept each route's current generation (the readiness
    VerifyWeight waits for)."""
    for path in (
        f"/apis/gateway.networking.k8s.io/v1/namespaces/{t.namespace}/httproutes/checkout",
        f"/apis/gateway.networking.k8s.io/v1/namespaces/{t.namespace}/grpcroutes/checkout-grpc",
    ):
        route = get(cp, path)
        assert route is not None
        gen = route["metadata"]["generation"]
        conds = [
            {
                "type": c,
                "status": "True",
                "reason": c,
                "message": "",
                "observedGeneration": gen,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
            for c in ("Accepted", "ResolvedRefs")
        ]
        route["status"] = {
            "parents": [
                {"parentRef": parent, "controllerName": "example.com/gateway", "conditions": conds}
                for parent in route["spec"]["parentRefs"]
            ]
        }
        status, body = cp.request("PUT", path + "/status", route)
        assert status == 200, body


# -- the walk ---------------------------------------------------------------------------------


def set_weight(h: Harness, t: Target, weight: int, hashes: tuple[str, str] = ("c1", "s1")) -> None:
    """SetWeight, then what Argo does after it succeeds: record the weights in the Rollout's
    status (``status.canary.weights``), which the next reconcile's calls carry."""
    h.ok(t.plugin, "SetWeight", t.rollout, desiredWeight=weight, additionalDestinations=[])
    canary = t.rollout["spec"]["strategy"]["canary"]
    t.rollout["status"] = {
        "canary": {
            "weights": {
                "canary": {
                    "weight": weight,
                    "serviceName": canary["canaryService"],
                    "podTemplateHash": hashes[0],
                },
                "stable": {
                    "weight": 100 - weight,
                    "serviceName": canary["stableService"],
                    "podTemplateHash": hashes[1],
                },
            }
        }
    }


def reconcile(
    h: Harness, t: Target, weight: int, *, hashes: tuple[str, str] = ("c1", "s1")
) -> bool | None:
    """What Argo sends on every reconcile of a rollout at a setWeight step."""
    ro = t.rollout
    h.ok(
        t.plugin,
        "UpdateHash",
        ro,
        canaryHash=hashes[0],
        stableHash=hashes[1],
        additionalDestinations=[],
    )
    set_weight(h, t, weight, hashes)
    verified: bool | None = h.ok(
        t.plugin, "VerifyWeight", ro, desiredWeight=weight, additionalDestinations=[]
    ).get("verified")
    return verified


def assert_no_writes(h: Harness, since: int, what: str) -> None:
    writes = h.writes(since)
    assert writes == [], f"{what}: " + "; ".join(writes)


@pytest.mark.parametrize("name", TARGETS)
def test_argo_calls_one_by_one(name: str, argo: Harness) -> None:
    h, cp = argo, argo.cp
    t = setup_target(h, name)
    ro = t.rollout
    plugin = t.plugin

    # The controller's client starts the bridge, which starts the Python side (InitPlugin).
    h.ok(plugin, "Connect")
    assert h.ok(plugin, "Type")["type"] == plugin
    first_python = h.driver.python_pid(plugin)

    # The first call (UpdateHash) applies the whole state: Istio's DestinationRule subsets
    # follow the ReplicaSets, ingress-nginx's canary Ingress exists from now on (at 0), Traefik's
    # unweighted round robin gets explicit weights, and each target's ownership ledger names this
    # Rollout. The same call again writes nothing.
    mark = cp.audit_mark()
    h.ok(plugin, "UpdateHash", ro, canaryHash="c1", stableHash="s1", additionalDestinations=[])
    first = h.writes(mark)
    if name == "istio":
        dr = get(
            cp, f"/apis/networking.istio.io/v1/namespaces/{t.namespace}/destinationrules/checkout"
        )
        assert dr is not None
        labels = {
            s["name"]: s["labels"].get("rollouts-pod-template-hash") for s in dr["spec"]["subsets"]
        }
        assert labels == {"stable": "s1", "canary": "c1", "legacy": None}
    if name == "nginx":
        assert any(" create " in w and "/ingresses checkout-shop-canary" in w for w in first), first
    v = view(cp, t)
    assert (v.canary, v.stable) == (0, 100)
    mark = cp.audit_mark()
    h.ok(plugin, "UpdateHash", ro, canaryHash="c1", stableHash="s1", additionalDestinations=[])
    assert_no_writes(h, mark, "the same UpdateHash again")

    # SetWeight: 20% to the canary.
    if name == "smi":
        # SMI header routes need all weighted traffic on stable: walk headers at weight 0 first.
        set_weight(h, t, 0)
    else:
        set_weight(h, t, 20)
        v = view(cp, t)
        assert (v.canary, v.stable) == (20, 80)
    weight = 0 if name == "smi" else 20

    # VerifyWeight: read back; Gateway API also waits for the data plane (route conditions).
    if name == "gatewayapi":
        assert (
            h.ok(plugin, "VerifyWeight", ro, desiredWeight=20, additionalDestinations=[])[
                "verified"
            ]
            is False
        )
        set_gateway_status(cp, t)
    assert (
        h.ok(plugin, "VerifyWeight", ro, desiredWeight=weight, additionalDestinations=[])[
            "verified"
        ]
        is True
    )
    assert (
        h.ok(plugin, "VerifyWeight", ro, desiredWeight=weight + 10, additionalDestinations=[])[
            "verified"
        ]
        is False
    )

    # Every reconcile repeats UpdateHash + SetWeight + VerifyWeight: zero writes.
    mark = cp.audit_mark()
    for _ in range(3):
        assert reconcile(h, t, weight) is True
    assert_no_writes(h, mark, "repeated reconciles")

    # SetHeaderRoute (at weight 0 for SMI): the route appears, recorded on the holder.
    header = t.managed[0]
    headers = set() if name in HEADER_REFUSED else {header}
    mark = cp.audit_mark()
    answer = h.call(plugin, "SetHeaderRoute", ro, setHeaderRoute={"name": header, "match": HEADER})
    if name in HEADER_REFUSED:
        assert HEADER_REFUSED[name] in (answer["error"] or ""), answer
        assert_no_writes(h, mark, "refused SetHeaderRoute")
        assert records(view(cp, t)) == {}
    else:
        assert answer["error"] is None, answer["error"]
        v = view(cp, t)
        assert v.headers == headers
        (record,) = records(v).values()
        assert record["uid"] == ro["metadata"]["uid"]
        assert [r["name"] for r in record["headerRoutes"]] == [header]

    # Kill the Python side: the bridge starts a new one, which rebuilds the state from the
    # Rollout and the record: the next reconcile writes nothing and the header route stays.
    os.kill(first_python, signal.SIGKILL)
    assert wait_gone(first_python)
    if name == "gatewayapi":
        set_gateway_status(cp, t)  # our header rule bumped the generation
    mark = cp.audit_mark()
    assert reconcile(h, t, weight) is True
    assert_no_writes(h, mark, "reconcile after the Python side was killed")
    assert h.driver.python_pid(plugin) != first_python
    assert view(cp, t).headers == headers

    # SetMirrorRoute where the target can mirror 50%; an explicit error where it cannot.
    mirror = t.managed[{"gatewayapi": 2, "traefik": 0}.get(name, 1)]
    mark = cp.audit_mark()
    answer = h.call(
        plugin,
        "SetMirrorRoute",
        ro,
        setMirrorRoute={
            "name": mirror,
            "match": MIRROR_MATCH.get(name, MIRROR),
            "percentage": 50,
        },
    )
    mirrored = name not in MIRROR_REFUSED
    if mirrored:
        assert answer["error"] is None, answer["error"]
        assert view(cp, t).mirrors == {mirror}
    else:
        error = answer["error"] or ""
        assert error.startswith("failed to set mirror route via plugin: "), error
        assert plugin in error and "SetMirrorRoute" in error
        assert MIRROR_REFUSED[name] in error, error
        assert_no_writes(h, mark, "refused SetMirrorRoute")
        assert view(cp, t).headers == headers

    # Kill the bridge itself: Argo's client sees the plugin exited and starts a new one; the old
    # Python side ends with it (stdin closed); weight changes, routes stay.
    old_bridge = h.driver.bridge_pid(plugin)
    old_python = h.driver.python_pid(plugin)
    os.kill(old_bridge, signal.SIGKILL)
    assert wait_gone(old_bridge)
    assert wait_gone(old_python), "the Python side outlived its bridge"
    # Argo's client pings before each use: a dead plugin fails that reconcile ("could not ping
    # plugin ... restart it next reconcile") unless go-plugin already saw the exit; either way
    # the next call starts a new bridge.
    answer = h.call(plugin, "Type")
    if answer["error"] is not None:
        assert "restart it next reconcile" in answer["error"], answer
        answer = h.call(plugin, "Type")
    assert answer["error"] is None and answer["type"] == plugin, answer
    assert h.driver.bridge_pid(plugin) != old_bridge
    if name != "smi":
        set_weight(h, t, 40)
        weight = 40
    else:
        set_weight(h, t, 0)
    v = view(cp, t)
    assert (v.canary, v.stable) == (weight, 100 - weight)
    assert v.headers == headers
    assert v.mirrors == ({mirror} if mirrored else set())

    # SetHeaderRoute with an empty match removes that route only.
    if name not in HEADER_REFUSED:
        h.ok(plugin, "SetHeaderRoute", ro, setHeaderRoute={"name": header})
        v = view(cp, t)
        assert v.headers == set()
        assert v.mirrors == ({mirror} if mirrored else set())

    # A route not listed in managedRoutes is refused before any write.
    mark = cp.audit_mark()
    answer = h.call(
        plugin, "SetHeaderRoute", ro, setHeaderRoute={"name": "unlisted", "match": HEADER}
    )
    assert "not listed in managedRoutes" in (answer["error"] or ""), answer
    assert_no_writes(h, mark, "refused SetHeaderRoute")
    # Argo only logs this error: the plugin records it on the Rollout, and a repeat counts on
    # the same Event.
    event = h.warnings(t, "'unlisted'")
    assert event["involvedObject"]["uid"] == ro["metadata"]["uid"], event
    assert event["source"]["component"] == plugin, event
    assert event["message"] in answer["error"], (event, answer)
    h.call(plugin, "SetHeaderRoute", ro, setHeaderRoute={"name": "unlisted", "match": HEADER})
    wait_for(
        "the repeated error counted on the same Event",
        lambda: (h.warnings(t, "'unlisted'").get("count") or 0) >= 2,
        30,
    )

    # RemoveManagedRoutes: every managed route goes, the weight stays, the record goes.
    h.ok(plugin, "RemoveManagedRoutes", ro)
    v = view(cp, t)
    assert (v.headers, v.mirrors) == (set(), set())
    assert (v.canary, v.stable) == (weight, 100 - weight)
    assert records(v) == {}

    # Back to stable; repeated reconciles of a finished rollout (RemoveManagedRoutes each time).
    set_weight(h, t, 0)
    if name == "gatewayapi":
        set_gateway_status(cp, t)
    mark = cp.audit_mark()
    for _ in range(2):
        h.ok(plugin, "RemoveManagedRoutes", ro)
        assert reconcile(h, t, 0) is True
    assert_no_writes(h, mark, "reconciles of a promoted rollout")
    v = view(cp, t)
    assert (v.canary, v.stable) == (0, 100)


def test_the_bridge_serves_from_a_watch_cache(
    argo: Harness, binaries: tuple[Path, Path], tmp_path: Path
) -> None:
    """CANARY_ROUTERS_WATCH_CACHE=1 in the controller's environment reaches the Python side
    through the bridge: with the ``routers rbac --watch-cache`` Role, after the first list the
    reconciles Argo sends (UpdateHash, SetWeight, VerifyWeight) read nothing from the server,
    and each step is one PATCH, verified from its own write response."""
    h, cp = argo, argo.cp
    t = setup_target(h, "istio", watch_cache=True)
    driver = Driver(
        binaries[1],
        kubeconfig=cp.kubeconfig,
        namespace=h.controller_ns,
        workdir=tmp_path,
        log=tmp_path / "driver.log",
        env={"CANARY_ROUTERS_WATCH_CACHE": "1"},
    )
    try:
        cached = Harness(cp, driver, h.controller_ns, h.user)
        cached.ok(t.plugin, "Connect")
        assert reconcile(cached, t, 0) is True  # warm-up: discovery, CRD facts, the lists
        mark = cp.audit_mark()
        for weight in (10, 20, 30):
            assert reconcile(cached, t, weight) is True
        events = cp.audit_events(mark, user=h.user, include_system=True)
        seen = [e["verb"] for e in events if e["verb"] != "watch"]
        assert seen == ["patch"] * 3, cp.summarize(events)
        v = view(cp, t)
        assert (v.canary, v.stable) == (30, 70)
    finally:
        driver.close()
