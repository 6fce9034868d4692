"""Property: N owners (2-5) share the objects of one target and apply random states in random
order; afterwards each owner's cleanup leaves exactly the others' routes, and the last one the
original objects, foreign fields included (issue 13, part 1).

Every plan is applied by the offline applier (routers.planning.offline), which checks every
guard. Route names are drawn partly from a pool all owners share, and SMI/ConfigMap owners
partly name the same TrafficSplit/key, so claims collide: a colliding plan must fail with a
typed error and change nothing. Along the way:

* a successful plan, planned again, is empty (declarative, per owner, whatever the others did);
* every route/rule/object we added is listed under some owner (nothing orphaned);
* each owner's verify passes against its own last applied state and sees none of the others';
* after an owner's cleanup, no ledger lists it and every other owner's plan is still empty.

Bounded: ``ROUTERS_OWNERS_EXAMPLES`` examples per target (default 12); the case counts are
printed.
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routers.contract import ClusterFacts
from routers.engine import bind, gather, observe_all, verify
from routers.errors import (
    LimitExceededError,
    OwnershipConflictError,
    RoutersError,
    UnsupportedError,
    WeightFitError,
)
from routers.model import Cleanup, RoutingConfig, TrafficState
from routers.planning.objects import JSON, LiveObjects
from routers.planning.ownership import Ledger, is_created_by_us
from routers.registry import Registry
from tests.conftest import configmap_registry
from tests.ownership.owners import World

EXAMPLES = int(os.environ.get("ROUTERS_OWNERS_EXAMPLES", "12"))
NS = "shop"
SHARED_NAMES = ("shared-x", "shared-y")
"""Route names every owner may draw: collisions must be refused."""
COUNTS: dict[str, Counter[str]] = {}


@pytest.fixture(scope="module")
def cm_reg() -> Iterator[Registry]:
    yield from configmap_registry()


# -- targets: shared live objects, one config per owner, states within what they express --------


@dataclass(frozen=True)
class Target:
    name: str
    live: Callable[[int], list[JSON]]
    config: Callable[[int, Any], dict[str, Any]]
    """Owner i's routing config document (``Any``: the example's draws, e.g. the split name)."""
    owner_draw: Callable[[int], st.SearchStrategy[Any]]
    state: Callable[[int, Any], st.SearchStrategy[TrafficState]]
    orphans: Callable[[World, World], list[str]]
    """What was added but is listed under no owner (must be empty)."""


def _header(owner: int, name: str) -> dict[str, Any]:
    return {"name": name, "matches": [{"headers": [{"name": f"x-o{owner}", "exact": name}]}]}


def _mirror(owner: int, name: str, pct: float) -> dict[str, Any]:
    return {
        "name": name,
        "percentage": pct,
        "matches": [{"headers": [{"name": f"x-m{owner}", "exact": "1"}]}],
    }


def _names(owner: int) -> st.SearchStrategy[list[str]]:
    pool = [*SHARED_NAMES, f"o{owner}-a", f"o{owner}-b"]
    return st.lists(st.sampled_from(pool), max_size=2, unique=True)


@st.composite
def _mesh_state(
    draw: st.DrawFn, owner: int, *, mirror_pct: bool, extra: bool, max_routes: int = 3
) -> TrafficState:
    weight = draw(st.integers(0, 100))
    doc: dict[str, Any] = {"weight": weight}
    if extra and weight < 100 and draw(st.booleans()):
        doc["additionalDestinations"] = [
            {"service": f"app{owner}-exp", "weight": draw(st.integers(0, 100 - weight))}
        ]
    headers = draw(_names(owner))
    doc["headerRoutes"] = [_header(owner, n) for n in headers]
    if len(headers) < max_routes and draw(st.booleans()):
        name = draw(st.sampled_from([f"o{owner}-m", SHARED_NAMES[0]]))
        if name not in headers:
            pct = draw(st.sampled_from([100.0, 50.0, 12.5])) if mirror_pct else 100.0
            doc["mirrorRoutes"] = [_mirror(owner, name, pct)]
    return TrafficState.parse(doc)


def _added_route_names(world: World, original: World, kind: str, key: str) -> list[str]:
    out: list[str] = []
    for ref, obj in world.objects.items():
        if ref.kind != kind:
            continue
        book = Ledger.of(obj)
        listed = {n for e in book.owners.values() for n in e.get(key) or []}
        before = original.objects.get(ref)
        known = {r.get("name") for r in (before or {}).get("spec", {}).get("http") or []}
        out += [
            f"{ref.name}: {r.get('name')}"
            for r in obj["spec"].get("http") or []
            if r.get("name") not in known and r.get("name") not in listed
        ]
    return out


def _istio_live(n: int) -> list[JSON]:
    http = [
        {
            "name": f"app{i}-primary",
            "match": [{"uri": {"prefix": f"/app{i}"}}],
            "retries": {"attempts": i + 1},
            "route": [
                {"destination": {"host": f"app{i}-stable"}, "weight": 100},
                {"destination": {"host": f"app{i}-canary"}, "weight": 0},
            ],
        }
        for i in range(n)
    ]
    http.insert(
        1,
        {
            "name": "legacy",
            "match": [{"uri": {"prefix": "/old"}}],
            "route": [{"destination": {"host": "old"}}],
        },
    )
    http.append({"name": "rest", "route": [{"destination": {"host": "rest"}}]})
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {
                "name": "shop",
                "namespace": NS,
                "resourceVersion": "1",
                "generation": 1,
                "annotations": {"team.example.com/owner": "platform"},
                "labels": {"app": "shop"},
            },
            "spec": {"hosts": ["shop.example.com"], "gateways": ["public"], "http": http},
        }
    ]


ISTIO = Target(
    "istio",
    _istio_live,
    lambda i, _: {
        "namespace": NS,
        "stableService": f"app{i}-stable",
        "canaryService": f"app{i}-canary",
        "rollout": {"name": f"app{i}"},
        "istio": {"virtualService": {"name": "shop", "routes": [f"app{i}-primary"]}},
    },
    lambda i: st.just(None),
    lambda i, _: _mesh_state(i, mirror_pct=True, extra=True),
    lambda world, original: _added_route_names(world, original, "VirtualService", "routes"),
)


def _gw_rule(i: int, port: int, match: dict[str, Any]) -> dict[str, Any]:
    refs = [
        {"group": "", "kind": "Service", "name": f"app{i}-stable", "port": port, "weight": 100},
        {"group": "", "kind": "Service", "name": f"app{i}-canary", "port": port, "weight": 0},
    ]
    if i % 2:
        refs.append({"group": "", "kind": "Service", "name": "legacy", "port": port, "weight": 10})
    return {"matches": [match], "backendRefs": refs}


def _gateway_live(n: int) -> list[JSON]:
    http_rules = [
        _gw_rule(i, 8080, {"path": {"type": "PathPrefix", "value": f"/app{i}"}}) for i in range(n)
    ]
    http_rules.append(
        {
            "backendRefs": [
                {"group": "", "kind": "Service", "name": "rest", "port": 8080, "weight": 1}
            ]
        }
    )
    grpc_rules = [
        _gw_rule(i, 9090, {"method": {"type": "Exact", "service": f"shop.app{i}.v1.Api"}})
        for i in range(n)
    ]
    meta = {"namespace": NS, "resourceVersion": "1", "generation": 1, "labels": {"team": "x"}}
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "shop", **copy.deepcopy(meta)},
            "spec": {
                "parentRefs": [
                    {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}
                ],
                "hostnames": ["shop.example.com"],
                "rules": http_rules,
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GRPCRoute",
            "metadata": {"name": "shop-grpc", **copy.deepcopy(meta)},
            "spec": {
                "parentRefs": [{"group": "", "kind": "Service", "name": "shop-grpc"}],
                "rules": grpc_rules,
            },
        },
    ]


def _gateway_orphans(world: World, original: World) -> list[str]:
    out = []
    for ref, obj in world.objects.items():
        listed = sum(len(e.get("rules") or {}) for e in Ledger.of(obj).owners.values())
        added = len(obj["spec"]["rules"]) - len(original.objects[ref]["spec"]["rules"])
        if added != listed:
            out.append(f"{ref}: {added} rules added, {listed} listed")
    return out


GATEWAY = Target(
    "gatewayapi",
    _gateway_live,
    lambda i, bundle: {
        "namespace": NS,
        "stableService": f"app{i}-stable",
        "canaryService": f"app{i}-canary",
        **({"rollout": {"name": f"app{i}"}} if i % 2 else {}),
        "plugins": {
            "argoproj-labs/gatewayAPI": {
                "httpRoutes": [{"name": "shop", "useHeaderRoutes": True}],
                "grpcRoutes": [{"name": "shop-grpc", "useHeaderRoutes": True}],
                "crdBundleVersion": bundle,
            }
        },
    },
    lambda i: st.sampled_from(["v1.2.1", "v1.4.0"]),
    lambda i, bundle: _mesh_state(i, mirror_pct=bundle != "v1.2.1", extra=True, max_routes=2),
    _gateway_orphans,
)


def _nginx_live(n: int) -> list[JSON]:
    paths = [
        {
            "path": f"/app{i}",
            "pathType": "Prefix",
            "backend": {"service": {"name": f"app{i}-stable", "port": {"number": 80}}},
        }
        for i in range(n)
    ]
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "shop",
                "namespace": NS,
                "resourceVersion": "1",
                "generation": 1,
                "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
            },
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": "shop.example.com", "http": {"paths": paths}}],
            },
        }
    ]


def _nginx_orphans(world: World, original: World) -> list[str]:
    stable = next(o for r, o in world.objects.items() if r.name == "shop")
    claimed = {n for e in Ledger.of(stable).owners.values() for n in e.get("canaryIngress") or []}
    created = {r.name for r, o in world.objects.items() if is_created_by_us(o, "nginx")}
    # A claim may precede its canary Ingress (claimed first, released last); never the reverse.
    unclaimed = sorted(created - claimed)
    return (
        [f"canary Ingresses {unclaimed} are not claimed on the stable Ingress"] if unclaimed else []
    )


NGINX = Target(
    "nginx",
    _nginx_live,
    lambda i, _: {
        "namespace": NS,
        "stableService": f"app{i}-stable",
        "canaryService": f"app{i}-canary",
        "rollout": {"name": f"app{i}"},
        "nginx": {"stableIngress": "shop"},
    },
    lambda i: st.just(None),
    lambda i, _: st.builds(
        lambda w, h: TrafficState.parse(
            {"weight": w, "headerRoutes": [_header(i, h)] if h else []}
        ),
        st.integers(0, 100),
        st.sampled_from([None, f"o{i}-a", SHARED_NAMES[0]]),
    ),
    _nginx_orphans,
)


def _smi_live(n: int) -> list[JSON]:
    return [
        {
            "apiVersion": "split.smi-spec.io/v1alpha4",
            "kind": "TrafficSplit",
            "metadata": {
                "name": "platform",
                "namespace": NS,
                "resourceVersion": "1",
                "generation": 1,
            },
            "spec": {"service": "platform", "backends": [{"service": "platform-v1", "weight": 1}]},
        }
    ]


def _smi_orphans(world: World, original: World) -> list[str]:
    out = []
    for ref, obj in world.objects.items():
        if is_created_by_us(obj, "smi") and not Ledger.of(obj).owners:
            out.append(f"{ref} was created but no owner lists anything in it")
    return out


SMI = Target(
    "smi",
    _smi_live,
    lambda i, split: {
        "namespace": NS,
        "stableService": f"app{i}-stable",
        "canaryService": f"app{i}-canary",
        "smi": {"trafficSplitName": split, "apiVersion": "v1alpha4"},
    },
    lambda i: st.sampled_from([f"split{i}", "split-shared"]),
    lambda i, _: st.one_of(
        st.builds(lambda w: TrafficState(weight=w), st.integers(0, 100)),
        st.builds(
            lambda h: TrafficState.parse({"weight": 0, "headerRoutes": [_header(i, h)]}),
            st.sampled_from([f"o{i}-a", SHARED_NAMES[0]]),
        ),
    ),
    _smi_orphans,
)


def _cm_orphans(world: World, original: World) -> list[str]:
    out = []
    for ref, obj in world.objects.items():
        claimed = {k for e in Ledger.of(obj).owners.values() for k in e.get("keys") or []}
        if is_created_by_us(obj, "configmap") and not claimed:
            out.append(f"{ref} was created but no owner holds a key in it")
    return out


CONFIGMAP = Target(
    "configmap",
    lambda n: [],
    lambda i, key: {
        "namespace": NS,
        "stableService": "web",
        "canaryService": f"app{i}-canary",
        "plugins": {"example.com/configmap": {"configMap": "weights", "key": key}},
    },
    lambda i: st.sampled_from([f"app{i}.json", "shared.json"]),
    lambda i, _: st.builds(lambda w: TrafficState(weight=w), st.integers(0, 100)),
    _cm_orphans,
)


def _traefik_live(n: int) -> list[JSON]:
    def ts(name: str, services: list[dict[str, Any]]) -> JSON:
        return {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "TraefikService",
            "metadata": {
                "name": name,
                "namespace": NS,
                "resourceVersion": "1",
                "labels": {"t": "x"},
            },
            "spec": {"weighted": {"services": services, "sticky": {"cookie": {"name": "lb"}}}},
        }

    def entry(name: str, weight: int) -> dict[str, Any]:
        return {"name": name, "port": 80, "weight": weight}

    # Stable weights of 100 (the state's total): cleanup's 100% to stable is then the original
    # number too. In the shared round robin the other apps' entries keep their share: a canary
    # weight that does not fit beside them is refused (WeightFitError), and entries rescaled
    # for an exact split get their weights back on cleanup.
    shared = [entry(f"app{i}-stable", 100) for i in range(n)] + [entry("platform", 3)]
    return [
        ts("shared", shared),
        *(ts(f"web{i}", [entry(f"app{i}-stable", 100)]) for i in range(n)),
    ]


def _traefik_orphans(world: World, original: World) -> list[str]:
    out = []
    for ref, obj in world.objects.items():
        listed = {n for e in Ledger.of(obj).owners.values() for n in e.get("services") or []}
        before = {e["name"] for e in original.objects[ref]["spec"]["weighted"]["services"]}
        added = {e["name"] for e in obj["spec"]["weighted"]["services"]} - before
        if added - listed:
            out.append(f"{ref}: entries {sorted(added - listed)} added but listed by no owner")
    return out


TRAEFIK = Target(
    "traefik",
    _traefik_live,
    lambda i, name: {
        "namespace": NS,
        "stableService": f"app{i}-stable",
        "canaryService": f"app{i}-canary",
        "traefik": {"weightedTraefikServiceName": name},
    },
    lambda i: st.sampled_from([f"web{i}", "shared"]),
    lambda i, _: _mesh_state(i, mirror_pct=False, extra=True, max_routes=0).map(
        lambda s: TrafficState(
            weight=s.weight, total=s.total, additional_destinations=s.additional_destinations
        )
    ),
    _traefik_orphans,
)

TARGETS = {t.name: t for t in (ISTIO, GATEWAY, NGINX, SMI, TRAEFIK, CONFIGMAP)}


# -- the property ---------------------------------------------------------------------------------


def _plan_is_empty(world: World, routing: RoutingConfig, desired: Any) -> None:
    plans = world.plan(routing, desired)
    assert all(p.empty for p in plans), [p.to_data() for p in plans]


def _verify(world: World, routing: RoutingConfig, desired: TrafficState, others: set[str]) -> None:
    bindings = bind(routing, world.registry)
    live = gather(bindings, LiveObjects(world.objects.items()).get)
    observations = observe_all(bindings, live, ClusterFacts())
    report = verify(bindings, observations, desired, ClusterFacts())
    assert report.ok, report.mismatches
    seen = {n for o in observations for n in (*o.header_routes, *o.mirror_routes)}
    assert not (seen & others), f"sees other owners' routes {sorted(seen & others)}"


def exercise(target: Target, data: st.DataObject, registry: Registry | None) -> None:
    counts = COUNTS.setdefault(target.name, Counter())
    n = data.draw(st.integers(2, 5), label="owners")
    draws = [data.draw(target.owner_draw(i), label=f"owner {i}") for i in range(n)]
    configs = [RoutingConfig.from_document(target.config(i, draws[i])) for i in range(n)]
    steps = data.draw(
        st.lists(st.integers(0, n - 1), min_size=1, max_size=3 * n), label="writers in order"
    )
    original = World(target.live(n), registry=registry)
    world = World(target.live(n), registry=registry)
    applied: dict[int, TrafficState] = {}
    counts["examples"] += 1
    counts[f"{n} owners"] += 1
    for i in steps:
        desired = data.draw(target.state(i, draws[i]), label=f"state of owner {i}")
        before = copy.deepcopy(world.objects)
        try:
            world.run(configs[i], desired)
        except (
            OwnershipConflictError,
            UnsupportedError,
            LimitExceededError,
            WeightFitError,
        ) as exc:
            assert world.objects == before, "a refused plan changed something"
            counts[type(exc).__name__] += 1
            continue
        counts["plans applied"] += 1
        applied[i] = desired
        _plan_is_empty(world, configs[i], desired)
        assert target.orphans(world, original) == []
    for i, desired in applied.items():
        others = {r for j, s in applied.items() if j != i for r in s.route_names}
        _plan_is_empty(world, configs[i], desired)
        _verify(world, configs[i], desired, others - set(desired.route_names))
    order = data.draw(st.permutations(range(n)), label="cleanup order")
    for i in order:
        world.run(configs[i], Cleanup())
        applied.pop(i, None)
        counts["cleanups"] += 1
        owner = configs[i].owner_key()
        for obj in world.objects.values():
            assert owner not in Ledger.of(obj).owners, f"{owner} still listed after its cleanup"
        for j, desired in applied.items():
            _plan_is_empty(world, configs[j], desired)
        assert target.orphans(world, original) == []
    assert world.snapshot() == original.snapshot(), "the last cleanup left a difference"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_owners_share_objects(
    name: str, cm_reg: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    target = TARGETS[name]
    registry = cm_reg if name == "configmap" else None

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        try:
            exercise(target, data, registry)
        except RoutersError as exc:  # anything else typed is a finding: show the example
            raise AssertionError(f"unexpected {type(exc).__name__}: {exc}") from exc

    run()
    counts = COUNTS.get(name, Counter())
    with capsys.disabled():
        print(f"\n{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    assert counts["examples"] >= EXAMPLES
    assert counts["plans applied"] > 0
