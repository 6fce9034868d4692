"""Shared machinery of the API and throughput runs: one local apiserver, clients, seeding, and
the three ways of driving a rollout step that are compared.

* ``ours-read``  -- :class:`Router` reads the targets, plans, sends guarded JSON patches;
* ``ours-live``  -- the same with ``live=`` (an informer-like cache fed by write responses);
* ``ours-watch`` -- the same through one :class:`WatchCache` shared by every rollout of the run
  (list+watch, cluster-wide, as a controller's informers);
* ``get+put``    -- the incumbents' pattern (Argo Rollouts' Gateway API plugin, Flagger's
  ``SetRoutes``): GET every target, edit it, PUT the whole object back, unconditionally.

The baseline plans with the same plugin (pure, same CPU), so the comparison isolates the call
pattern: same objects, same edits, same transport, same run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration

from bench.scenarios import SPECS, Scenario, for_server
from e2e.cluster import ControlPlane
from routers.cluster import (
    ApiStatus,
    Kube,
    RequestRecord,
    Router,
    Transport,
    WatchCache,
    gather_facts,
    reader,
)
from routers.engine import Binding, bind, gather, plan_all
from routers.model import RoutingConfig, TrafficState
from routers.planning.objects import JSON, ObjectRef, resource_version
from routers.planning.offline import apply_plans
from routers.registry import Registry

__all__ = [
    "DRIVERS",
    "Baseline",
    "Capture",
    "Counter",
    "Driver",
    "OursLive",
    "OursRead",
    "OursWatch",
    "canary_steps",
    "client",
    "control_plane",
    "make_driver",
    "new_kube",
    "seed",
    "seed_many",
]

DRIVERS = ("ours-read", "ours-live", "ours-watch", "get+put")
MAX_ATTEMPTS = 8


def canary_steps() -> list[TrafficState]:
    """The 10-step canary: 10%, 20%, ... 100%; every step changes one weight."""
    return [TrafficState(weight=w) for w in range(10, 101, 10)]


def control_plane(plugins: Iterable[str]) -> ControlPlane:
    """One plane with every CRD set the plugins need (no audit log: it would cost server CPU)."""
    sets = sorted({s for p in plugins if (s := SPECS[p].crd_set) is not None})
    return ControlPlane(sets, audit=False)


def client(cp: ControlPlane, pool: int = 16) -> ApiClient:
    """A client as the ``routers`` user, with a connection pool sized for the thread count."""
    cfg = Configuration()
    kube_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cp.kubeconfig_for("routers")), client_configuration=cfg
    )
    cfg.connection_pool_maxsize = pool
    return ApiClient(cfg)


@dataclass
class Counter:
    """Thread-safe request tally fed by the transport hook; ``records`` keeps each request."""

    keep: bool = True
    records: list[RequestRecord] = field(default_factory=list)
    requests: int = 0
    writes: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests += 1
            self.writes += rec.is_write
            self.request_bytes += rec.request_bytes
            self.response_bytes += rec.response_bytes
            if self.keep:
                self.records.append(rec)

    def since(self, mark: int) -> list[RequestRecord]:
        with self._lock:
            return self.records[mark:]

    @property
    def mark(self) -> int:
        with self._lock:
            return len(self.records)


class Capture:
    """Records the requests a transport sends (method, path, query, body), unchanged, until
    :meth:`close`: the bench replays exactly what the Router sent."""

    def __init__(self, transport: Transport) -> None:
        self.sent: list[tuple[str, str, list[tuple[str, str]], Any]] = []
        self._transport = transport
        self._request: Callable[..., Any] = transport.request

        def request(method: str, path: str, **kw: Any) -> Any:
            self.sent.append((method, path, list(kw.get("query", ())), kw.get("body")))
            return self._request(method, path, **kw)

        transport.request = request  # type: ignore[method-assign]

    def close(self) -> None:
        self._transport.request = self._request  # type: ignore[method-assign]


def seed(cp: ControlPlane, kube: Kube, scenario: Scenario, namespace: str) -> dict[ObjectRef, JSON]:
    """Create the scenario's objects in ``namespace`` as admin; return what the server stored."""
    moved = scenario.with_namespace(namespace)
    out: dict[ObjectRef, JSON] = {}
    for obj in moved.objects:
        ref = ObjectRef.of(obj)
        path = kube.resource(ref).path(namespace)
        status, stored = cp.request(
            "POST", path, for_server(obj), params={"fieldValidation": "Strict"}
        )
        if status != 201:
            raise RuntimeError(f"seeding {ref} failed: {status} {stored}")
        out[ref] = stored
    return out


def seed_many(
    cp: ControlPlane, kube: Kube, scenario: Scenario, prefix: str, count: int
) -> list[tuple[str, dict[ObjectRef, JSON]]]:
    """``count`` namespaces, each with its own copy of the scenario (one rollout each)."""

    def one(i: int) -> tuple[str, dict[ObjectRef, JSON]]:
        ns = cp.new_namespace(prefix)
        return ns, seed(cp, kube, scenario, ns)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


class Driver(Protocol):
    def step(self, state: TrafficState) -> int:
        """Apply one state; return how many objects the step changed."""
        ...


class OursRead:
    """The Router as a controller without a cache uses it."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def step(self, state: TrafficState) -> int:
        return len({a.op.ref for a in self.router.apply_state(state).applied})


class OursLive:
    """The Router fed with live objects, kept fresh from its own write responses (an informer
    would deliver the same objects a moment later)."""

    def __init__(self, router: Router, live: dict[ObjectRef, JSON]) -> None:
        self.router = router
        self.cache: dict[ObjectRef, JSON | None] = dict(live)

    def step(self, state: TrafficState) -> int:
        outcome = self.router.apply_state(state, live=self.cache)
        # Everything known after the step, objects known to be absent included (as None).
        self.cache = outcome.result
        return len({a.op.ref for a in outcome.applied})


class OursWatch:
    """The Router over a watch cache shared with every other rollout of the run: the step
    reads from memory, and ``verify`` (what a controller does next) too."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.unverified = 0

    def step(self, state: TrafficState) -> int:
        outcome = self.router.apply_state(state)
        self.unverified += not self.router.verify(state).ok
        return len({a.op.ref for a in outcome.applied})


class Baseline:
    """GET every target, compute the edit with the same plugin, PUT the whole object back
    (also when nothing changed, as Argo's Gateway API plugin and Flagger do); retry on 409.

    Only objects the rollout writes are PUT (those some step's plan touched), not objects the
    plugin merely reads, such as the stable Ingress that nginx clones.
    """

    def __init__(self, kube: Kube, config: RoutingConfig, registry: Registry) -> None:
        self.kube = kube
        self.config = config
        self.bindings: Sequence[Binding] = bind(config, registry)
        self.facts = gather_facts(kube, self.bindings)
        self.written: set[ObjectRef] = set()

    def step(self, state: TrafficState) -> int:
        last: ApiStatus | None = None
        for _ in range(MAX_ATTEMPTS):
            snapshot = gather(self.bindings, reader(self.kube))
            plans = plan_all(self.bindings, snapshot, state, self.facts, routing=self.config)
            after = apply_plans(plans, snapshot)
            changed = {op.ref for plan in plans for op in plan}
            self.written |= changed
            try:
                for ref in sorted(self.written):
                    self._write(ref, snapshot.get(ref), after.get(ref))
            except ApiStatus as exc:
                if exc.code != 409:
                    raise
                last = exc
                continue
            return len(changed)
        raise RuntimeError(f"baseline gave up after {MAX_ATTEMPTS} conflicts: {last}")

    def _write(self, ref: ObjectRef, old: JSON | None, new: JSON | None) -> None:
        info = self.kube.resource(ref)
        request: Callable[..., object] = self.kube.transport.request
        if new is None:
            if old is not None:
                request("DELETE", info.path(ref.namespace, ref.name))
        elif old is None:
            request("POST", info.path(ref.namespace), body=new)
        else:
            # Update carries the resourceVersion that was read (apply_plans bumped its copy).
            body = {
                **new,
                "metadata": {**new["metadata"], "resourceVersion": resource_version(old)},
            }
            request("PUT", info.path(ref.namespace, ref.name), body=body)


def make_driver(
    kind: str,
    kube: Kube,
    scenario: Scenario,
    namespace: str,
    stored: dict[ObjectRef, JSON],
    registry: Registry,
    cache: WatchCache | None = None,
) -> Driver:
    """One rollout's driver; ``ours-watch`` needs the run's shared ``cache`` (over ``kube``)."""
    config = RoutingConfig.from_document(scenario.with_namespace(namespace).routing)
    if kind == "get+put":
        return Baseline(kube, config, registry)
    if kind == "ours-watch":
        if cache is None:
            raise ValueError("ours-watch needs a WatchCache")
        watching = Router(config, cache=cache, registry=registry)
        watching.facts()
        cache.prefetch(watching.targets(live=stored))  # the first list, outside any timing
        return OursWatch(watching)
    router = Router(config, kube=kube, registry=registry)
    router.facts()
    if kind == "ours-read":
        return OursRead(router)
    if kind == "ours-live":
        return OursLive(router, stored)
    raise ValueError(f"unknown driver {kind!r}")


def new_kube(api: ApiClient, counter: Counter) -> Kube:
    return Kube(Transport(api, on_request=counter))
