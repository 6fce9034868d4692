"""The watch cache against a real kube-apiserver: many Routers sharing one cache send no GET in a
steady state (the audit log says so), a stale cache costs one conflict and never a lost write,
an apiserver restart under an active watch is ridden out (resumed, or re-listed after etcd
compacted the watch's resourceVersion away), the generated RBAC is enough for it, and the
server's event lines start their object's resourceVersion where HELD events look for it.

Uses the example third-party ConfigMap plugin (built-in kinds only).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import config as kube_config

from e2e.cluster import ControlPlane
from routers.cluster import (
    CacheStats,
    Kube,
    RequestRecord,
    Router,
    Transport,
    WatchCache,
    rbac_manifests,
)
from routers.cluster._kube import ResourceInfo
from routers.cluster._watch import EventStream, Source
from routers.model import RoutingConfig, TrafficState
from routers.planning.objects import JSON, ObjectRef
from routers.registry import Registry
from tests.conftest import eventually

pytestmark = pytest.mark.e2e

USER = "routers"


@pytest.fixture(scope="module")
def registry(configmap_plugins: Registry) -> Registry:
    return configmap_plugins


@pytest.fixture(scope="module")
def cp(control_plane: Callable[..., ControlPlane]) -> ControlPlane:
    return control_plane(())


def kube_for(
    cp: ControlPlane, user: str = USER, records: list[RequestRecord] | None = None
) -> Kube:
    client = kube_config.new_client_from_config(config_file=str(cp.kubeconfig_for(user)))  # type: ignore[no-untyped-call]
    return Kube(Transport(client, on_request=records.append if records is not None else None))


def routing(ns: str, name: str) -> RoutingConfig:
    return RoutingConfig.from_document(
        {
            "stableService": "web-stable",
            "canaryService": "web-canary",
            "namespace": ns,
            "plugins": {"example.com/configmap": {"configMap": name}},
        }
    )


def seed(cp: ControlPlane, ns: str, name: str) -> JSON:
    status, obj = cp.request(
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "annotations": {"team": "payments"}},
            "data": {"other": "keep"},
        },
    )
    assert status == 201, obj
    return obj  # type: ignore[no-any-return]


def server_object(cp: ControlPlane, ns: str, name: str) -> JSON:
    status, obj = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{name}")
    assert status == 200, obj
    return obj  # type: ignore[no-any-return]


def canary(obj: JSON) -> int:
    return int(json.loads(obj["data"]["weights.json"])["web-canary"])


def foreign_write(cp: ControlPlane, ns: str, name: str, value: str) -> JSON:
    status, obj = cp.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/{name}",
        {"data": {"foreign": value}},
        user="foreign-writer",
        content_type="application/merge-patch+json",
    )
    assert status == 200, obj
    return obj  # type: ignore[no-any-return]


def verbs(cp: ControlPlane, since: int, user: str = USER, **filters: Any) -> list[str]:
    return [e["verb"] for e in cp.audit_events(since, user=user, **filters)]


# -- steady state -----------------------------------------------------------------------------


@pytest.mark.parametrize("all_namespaces", [False, True], ids=["per-namespace", "cluster-wide"])
def test_many_routers_on_one_cache_send_no_get_in_a_steady_state(
    cp: ControlPlane, registry: Registry, all_namespaces: bool
) -> None:
    """Six rollouts in two namespaces, one cache: after the first list (of each namespace, or
    of the whole cluster), every step is exactly one PATCH per rollout, every verify and every
    no-op reconcile is free."""
    namespaces = [cp.new_namespace("wc-steady"), cp.new_namespace("wc-steady")]
    rollouts = [(ns, f"weights-{i}") for ns in namespaces for i in range(3)]
    for ns, name in rollouts:
        seed(cp, ns, name)
    records: list[RequestRecord] = []
    with WatchCache(kube_for(cp, records=records), all_namespaces=all_namespaces) as cache:
        routers = [
            Router(routing(ns, name), cache=cache, registry=registry) for ns, name in rollouts
        ]
        for r in routers:  # warm-up: discovery, facts, the first list(s)
            r.apply_state(TrafficState(weight=0))
        lists = 1 if all_namespaces else 2
        assert (cache.stats().informers, cache.stats().lists) == (lists, lists)
        mark = cp.audit_mark()
        records.clear()
        weights = list(range(10, 101, 10))
        for w in weights:
            for r in routers:
                out = r.apply_state(TrafficState(weight=w))
                assert out.writes == 1
                assert r.verify(TrafficState(weight=w)).ok
        for r in routers:  # the no-op reconcile a controller runs on every resync
            assert r.apply_state(TrafficState(weight=100)).writes == 0
            assert r.verify().ok
        seen = [v for v in verbs(cp, mark) if v != "watch"]
        assert seen == ["patch"] * len(weights) * len(routers), seen
        assert {r.method for r in records} == {"PATCH"}
        stats = cache.stats()
        assert stats.gets == 0
        assert stats.lists == lists
    for ns, name in rollouts:
        obj = server_object(cp, ns, name)
        assert canary(obj) == 100
        assert obj["data"]["other"] == "keep"


# -- stale cache ------------------------------------------------------------------------------


class _Gate:
    """Holds back the events of a real watch until opened: a lagging watch, on demand."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()


class _GatedStream:
    def __init__(self, inner: EventStream, gate: _Gate) -> None:
        self.inner = inner
        self.gate = gate

    def __iter__(self) -> Iterator[JSON]:
        for event in self.inner:
            assert self.gate.open.wait(120), "the gate was never opened"
            yield event

    def stop(self) -> None:
        self.gate.open.set()
        self.inner.stop()


class _GatedSource:
    def __init__(self, inner: Source, gate: _Gate) -> None:
        self.inner = inner
        self.gate = gate

    def list(
        self, info: ResourceInfo, namespace: str | None, *, limit: int, cont: str | None
    ) -> JSON:
        return self.inner.list(info, namespace, limit=limit, cont=cont)

    def watch(
        self, info: ResourceInfo, namespace: str | None, *, resource_version: str, timeout: int
    ) -> EventStream:
        stream = self.inner.watch(
            info, namespace, resource_version=resource_version, timeout=timeout
        )
        return _GatedStream(stream, self.gate)


def test_a_stale_cache_costs_one_conflict_and_loses_nothing(
    cp: ControlPlane, registry: Registry
) -> None:
    ns = cp.new_namespace("wc-stale")
    seed(cp, ns, "weights")
    gate = _Gate()
    with WatchCache(kube_for(cp)) as cache:
        cache._source = _GatedSource(cache._source, gate)
        router = Router(routing(ns, "weights"), cache=cache, registry=registry)
        router.set_weight(10)
        gate.open.clear()  # from here the watch lags: the cache will not see the next write
        foreign = foreign_write(cp, ns, "weights", "1")
        mark = cp.audit_mark()
        out = router.set_weight(40)
        assert out.attempts == 2, "one rejected patch, then a fresh read"
        events = cp.audit_events(mark, user=USER)
        assert [(e["verb"], e["responseStatus"]["code"]) for e in events] == [
            ("patch", 422),  # the resourceVersion guard refused the stale plan
            ("get", 200),  # the fresh read (which refreshed the cache)
            ("patch", 200),
        ], cp.summarize(events)
        now = server_object(cp, ns, "weights")
        assert now["data"]["foreign"] == "1", "the foreign write survived"
        assert canary(now) == 40
        assert int(now["metadata"]["resourceVersion"]) > int(foreign["metadata"]["resourceVersion"])
        mark = cp.audit_mark()
        assert router.verify(TrafficState(weight=40)).ok  # from the cache: our write response
        skipped = cache.stats().skipped
        gate.open.set()  # the late events arrive: the foreign write's, then ours
        eventually("the late events", lambda: cache.stats().skipped >= skipped + 2)
        cached = cache.get(ObjectRef("", "ConfigMap", ns, "weights", "v1"))
        assert cached is not None
        assert cached["metadata"]["resourceVersion"] == now["metadata"]["resourceVersion"]
        assert router.apply_state(router.state).writes == 0
        assert [v for v in verbs(cp, mark) if v != "watch"] == []


# -- apiserver restart ------------------------------------------------------------------------


@pytest.mark.parametrize("compacted", [False, True], ids=["resumed", "compacted-410-relist"])
def test_an_apiserver_restart_under_an_active_watch(
    cp: ControlPlane, registry: Registry, compacted: bool
) -> None:
    ns = cp.new_namespace("wc-restart")
    seed(cp, ns, "weights")
    with WatchCache(kube_for(cp), max_backoff=1.0) as cache:
        router = Router(routing(ns, "weights"), cache=cache, registry=registry)
        router.set_weight(10)
        before: CacheStats = cache.stats()
        assert before.synced == 1
        cp.kill_apiserver()
        if compacted:
            # etcd compacts past the watch's resourceVersion while the server is down: the
            # restarted server answers the resumed watch with 410 Gone.
            cp.compact_etcd()
        time.sleep(1.0)  # the watch notices the dead connection and starts backing off
        cp.start_apiserver()
        foreign_write(cp, ns, "weights", "after-restart")
        ref = ObjectRef("", "ConfigMap", ns, "weights", "v1")
        eventually(
            "the cache to see a write made after the restart",
            lambda: ((cache.get(ref) or {}).get("data") or {}).get("foreign") == "after-restart",
        )
        after = cache.stats()
        assert after.watches > before.watches
        if compacted:
            assert after.relists >= 1, after
        # Back to a steady state: a step is one PATCH, a repeat is nothing.
        mark = cp.audit_mark()
        router.set_weight(20)
        assert router.verify(TrafficState(weight=20)).ok
        assert router.apply_state(router.state).writes == 0
        assert [v for v in verbs(cp, mark) if v != "watch"] == ["patch"]
        now = server_object(cp, ns, "weights")
        assert canary(now) == 20
        assert now["data"]["foreign"] == "after-restart"
    assert not [t for t in threading.enumerate() if t.name.startswith("watch-")]


# -- RBAC -------------------------------------------------------------------------------------


def _bind(cp: ControlPlane, ns: str, role: dict[str, Any], user: str) -> None:
    status, body = cp.request(
        "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", role
    )
    assert status == 201, body
    status, body = cp.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": role["metadata"]["name"]},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": role["metadata"]["name"],
            },
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    assert status == 201, body


@pytest.mark.parametrize("watch", [True, False], ids=["role-with-watch", "role-without-watch"])
def test_generated_rbac_serves_the_cache_or_it_falls_back_to_gets(
    cp: ControlPlane, registry: Registry, watch: bool
) -> None:
    ns = cp.new_namespace("wc-rbac")
    seed(cp, ns, "weights")
    config = routing(ns, "weights")
    (role,) = [
        m
        for m in rbac_manifests(config, registry=registry, watch_cache=watch)
        if m["kind"] == "Role"
    ]
    user = "routers-limited"
    _bind(cp, ns, role, user)
    eventually(
        "the binding to take effect",
        lambda: (
            cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/weights", user=user)[0] == 200
        ),
    )
    with WatchCache(kube_for(cp, user)) as cache:
        router = Router(config, cache=cache, registry=registry)
        for w in (10, 20, 30):
            router.set_weight(w)
            assert router.verify(TrafficState(weight=w)).ok
        stats = cache.stats()
    assert canary(server_object(cp, ns, "weights")) == 30
    if watch:
        assert (stats.synced, stats.gets) == (1, 0), stats
    else:  # no list/watch: every read is a GET, and the work is done all the same
        assert stats.synced == 0
        assert stats.gets >= 3
        assert "forbidden" in (stats.last_error or "").lower()


# -- the watch's wire format --------------------------------------------------------------------


def test_the_first_resource_version_of_a_real_event_line_is_its_objects(
    control_plane: Callable[..., ControlPlane],
) -> None:
    """HELD events (a version a write response stored is not decoded again) read the first
    ``"resourceVersion":"..."`` of the raw line. The real API server's output is what makes that
    the object's own: a built-in kind (struct order) and a custom one (sorted keys, managedFields
    before resourceVersion), each with an annotation holding JSON that names a resourceVersion."""
    from routers.cluster._watch import first_resource_version

    cp = control_plane(("istio",))
    kube = kube_for(cp, "admin")
    ns = cp.new_namespace("wire")
    decoy = json.dumps({"metadata": {"resourceVersion": "1"}, "resourceVersion": "2"})
    vs = ObjectRef("networking.istio.io", "VirtualService", ns, "web")
    cm = ObjectRef("", "ConfigMap", ns, "web")
    paths = {ref.kind: kube.resource(ref).path(ns) for ref in (vs, cm)}
    start = {
        kind: cp.request("GET", path)[1]["metadata"]["resourceVersion"]
        for kind, path in paths.items()
    }
    bodies = {
        "VirtualService": {
            "apiVersion": f"networking.istio.io/{kube.resource(vs).version}",
            "kind": "VirtualService",
            "metadata": {"name": "web", "annotations": {"last": decoy}},
            "spec": {
                "hosts": ["web"],
                "http": [{"route": [{"destination": {"host": "web-stable"}, "weight": 100}]}],
            },
        },
        "ConfigMap": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web", "annotations": {"last": decoy}},
            "data": {"resourceVersion": "3"},
        },
    }
    for kind, path in paths.items():
        status, obj = cp.request("POST", path, bodies[kind])
        assert status == 201, obj
        for i in range(2):  # MODIFIED events, each with a managedFields entry of another manager
            status, obj = cp.request(
                "PATCH",
                f"{path}/web",
                {"metadata": {"annotations": {"n": str(i)}}},
                params={"fieldManager": "another-writer"},
                content_type="application/merge-patch+json",
            )
            assert status == 200, obj
    for kind, path in paths.items():
        raw = kube.transport.open_stream(
            path, query=[("watch", "true"), ("resourceVersion", start[kind])], seconds=2
        )
        try:
            text = b"".join(raw.stream(65536)).decode()
        finally:
            raw.release_conn()
        events = [line for line in text.splitlines() if line.strip()]
        assert len(events) == 3, (kind, events)
        for line in events:
            event = json.loads(line)
            assert event["object"]["metadata"]["managedFields"], line
            assert first_resource_version(line) == event["object"]["metadata"]["resourceVersion"]
