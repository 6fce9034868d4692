"""The watch cache against a scripted fake server: list, watch, resume, 410 relist, bookmarks,
write responses that never go backwards, bounded memory, RBAC fallback, clean stop; and the
Router over it (a stale cache costs one conflict, never a lost write)."""

from __future__ import annotations

import copy
import json
import queue
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from routers.cluster import (
    DEFAULT_TIMEOUTS,
    ApiStatus,
    Kube,
    ResourceInfo,
    Router,
    Timeouts,
    WatchCache,
    reconcile,
)
from routers.model import RoutingConfig, TrafficState
from routers.model.selectors import LabelSelector
from routers.planning.objects import JSON, ObjectRef, SelectorRef
from routers.registry import Registry
from tests.conftest import configmap_registry, eventually

CONFIGMAPS = ResourceInfo("", "v1", "configmaps", True)
NS = "shop"


def ref(name: str, ns: str = NS) -> ObjectRef:
    return ObjectRef("", "ConfigMap", ns, name, "v1")


_END = object()


class FakeStream:
    def __init__(self, rv: str, namespace: str | None = None, timeout: int = 0) -> None:
        self.rv = rv
        self.timeout = timeout
        self.namespace = namespace
        """What the watch is for: events of other namespaces are not sent to it."""
        self.q: queue.Queue[Any] = queue.Queue()
        self.stopped = False

    def push(self, item: Any) -> None:
        self.q.put(item)

    def __iter__(self) -> Iterator[JSON]:
        while True:
            item = self.q.get(timeout=10)  # a hung test fails, it does not hang
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopped = True
        self.q.put(_END)


class FakeServer:
    """Objects with etcd-like resourceVersions, served as paginated lists and watch streams."""

    def __init__(self) -> None:
        self.rv = 100
        self.objects: dict[tuple[str, str], JSON] = {}
        self.lock = threading.Lock()
        self.streams: list[FakeStream] = []
        self.lists: list[tuple[str | None, str | None]] = []
        self.list_errors: list[ApiStatus] = []
        self.page_size: int | None = None

    # -- changing the "cluster" -----------------------------------------------------------

    def put(
        self,
        name: str,
        data: dict[str, str],
        ns: str = NS,
        *,
        notify: bool = True,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> JSON:
        with self.lock:
            self.rv += 1
            kind = "MODIFIED" if (ns, name) in self.objects else "ADDED"
            obj = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "resourceVersion": str(self.rv),
                    "uid": f"uid-{name}",
                    "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {}}}],
                    **({"annotations": annotations} if annotations else {}),
                    **({"labels": labels} if labels else {}),
                },
                "data": data,
            }
            self.objects[(ns, name)] = obj
            if notify:
                self.broadcast({"type": kind, "object": copy.deepcopy(obj)})
            return copy.deepcopy(obj)

    def delete(self, name: str, ns: str = NS, *, notify: bool = True) -> None:
        with self.lock:
            self.rv += 1
            obj = self.objects.pop((ns, name))
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            if notify:
                self.broadcast({"type": "DELETED", "object": gone})

    def broadcast(self, event: Any) -> None:
        ns = event["object"]["metadata"].get("namespace")
        for s in self.streams:
            if not s.stopped and s.namespace in (None, ns):
                s.push(event)

    @property
    def stream(self) -> FakeStream:
        return self.streams[-1]

    # -- the Source protocol ------------------------------------------------------------------

    def list(
        self, info: ResourceInfo, namespace: str | None, *, limit: int, cont: str | None
    ) -> JSON:
        self.lists.append((namespace, cont))
        if self.list_errors:
            raise self.list_errors.pop(0)
        with self.lock:
            names = sorted(k for k in self.objects if namespace in (None, k[0]))
            size = self.page_size or limit
            start = int(cont or 0)
            items = []
            for k in names[start : start + size]:
                item = copy.deepcopy(self.objects[k])
                del item["apiVersion"], item["kind"]  # typed lists omit them
                items.append(item)
            more = start + size < len(names)
            meta = {"resourceVersion": str(self.rv)}
            if more:
                meta["continue"] = str(start + size)
            return {"kind": "ConfigMapList", "metadata": meta, "items": items}

    def watch(
        self, info: ResourceInfo, namespace: str | None, *, resource_version: str, timeout: int
    ) -> FakeStream:
        assert timeout > 0
        s = FakeStream(resource_version, namespace, timeout)
        self.streams.append(s)
        return s


class FakeKube(Kube):
    """Discovery and GETs answered from the fake server; JSON patches applied with RV checks."""

    def __init__(self, server: FakeServer) -> None:
        super().__init__(transport=SimpleNamespace(timeouts=DEFAULT_TIMEOUTS))  # type: ignore[arg-type]
        self.server = server
        self.gets: list[ObjectRef] = []
        self.lists: list[SelectorRef] = []
        self.patches: list[list[JSON]] = []

    def served_groups(self, *, refresh: bool = False) -> dict[str, tuple[str, ...]]:
        return {"": ("v1",)}

    def resource(self, ref: ObjectRef) -> ResourceInfo:
        if ref.kind != "ConfigMap":
            raise ApiStatus(404, "NotFound", f"kind {ref.kind} is not served")
        return CONFIGMAPS

    def get(self, ref: ObjectRef) -> JSON | None:
        self.gets.append(ref)
        obj = self.server.objects.get((ref.namespace or "default", ref.name))
        return copy.deepcopy(obj) if obj is not None else None

    def list_selected(self, selector: SelectorRef) -> list[JSON]:
        self.lists.append(selector)
        return [
            copy.deepcopy(o)
            for (ns, _), o in sorted(self.server.objects.items())
            if ns == selector.namespace
            and selector.selector.matches(o["metadata"].get("labels") or {})
        ]

    def json_patch(self, ref: ObjectRef, ops: Any, *, dry_run: bool = False) -> JSON:
        import jsonpatch

        self.patches.append(list(ops))
        current = self.server.objects[(ref.namespace or "default", ref.name)]
        try:
            after = jsonpatch.JsonPatch(list(ops)).apply(copy.deepcopy(current))
        except jsonpatch.JsonPatchTestFailed:
            raise ApiStatus(422, "Invalid", "the test operation failed") from None
        annotations = after["metadata"].get("annotations")
        return self.server.put(
            ref.name, after["data"], ref.namespace or "default", annotations=annotations
        )


@pytest.fixture
def server() -> FakeServer:
    s = FakeServer()
    s.put("web", {"weights.json": '{"web-canary": 0, "web-stable": 100}'})
    s.put("other", {"k": "v"})
    return s


@pytest.fixture
def cache(server: FakeServer) -> Iterator[WatchCache]:
    c = WatchCache(FakeKube(server), source=server, max_backoff=0.01, sync_timeout=5)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def watching(cache: WatchCache, server: FakeServer) -> WatchCache:
    """The cache after a first read: listed, and its watch open."""
    assert cache.get(ref("web")) is not None
    eventually("the watch", lambda: server.streams)
    return cache


def kube_of(cache: WatchCache) -> FakeKube:
    assert isinstance(cache.kube, FakeKube)
    return cache.kube


def rv_in_cache(cache: WatchCache, name: str) -> str | None:
    obj = cache.get(ref(name))
    return None if obj is None else str(obj["metadata"]["resourceVersion"])


# -- reading ----------------------------------------------------------------------------------


def test_first_read_lists_once_then_every_read_is_from_memory(
    cache: WatchCache, server: FakeServer
) -> None:
    web = cache.get(ref("web"))
    assert web is not None
    assert web["data"] == server.objects[(NS, "web")]["data"]
    assert (web["apiVersion"], web["kind"]) == ("v1", "ConfigMap")  # filled in for list items
    assert "managedFields" not in web["metadata"]  # never kept
    for _ in range(50):
        assert cache.get(ref("web")) is not None
        assert cache.get(ref("missing")) is None  # absent, known from the list: no GET
    assert server.lists == [(NS, None)]
    assert kube_of(cache).gets == []
    stats = cache.stats()
    assert (stats.informers, stats.synced, stats.objects, stats.hits) == (1, 1, 2, 101)


def test_every_read_is_an_independent_copy(cache: WatchCache) -> None:
    first = cache.get(ref("web"))
    assert first is not None
    first["data"]["weights.json"] = "mutated"
    again = cache.get(ref("web"))
    assert again is not None
    assert again["data"]["weights.json"] != "mutated"


def test_namespaces_are_watched_separately_or_together(server: FakeServer) -> None:
    server.put("web", {"a": "1"}, ns="other-ns")
    per_ns = WatchCache(FakeKube(server), source=server, max_backoff=0.01)
    try:
        assert per_ns.get(ref("web")) is not None
        assert per_ns.get(ref("web", "other-ns")) is not None
        assert sorted(ns or "" for ns, _ in server.lists) == sorted([NS, "other-ns"])
        assert per_ns.stats().informers == 2
    finally:
        per_ns.stop()
    server.lists.clear()
    wide = WatchCache(FakeKube(server), source=server, all_namespaces=True, max_backoff=0.01)
    try:
        assert wide.get(ref("web")) is not None
        assert wide.get(ref("web", "other-ns")) is not None
        assert server.lists == [(None, None)]
        assert wide.stats().informers == 1
    finally:
        wide.stop()


def test_a_kind_that_is_not_served_reads_as_absent(cache: WatchCache) -> None:
    assert cache.get(ObjectRef("example.com", "Nope", NS, "x", "v1")) is None
    assert cache.stats().informers == 0


def test_paginated_list_restarts_when_its_continue_token_expires(server: FakeServer) -> None:
    for i in range(7):
        server.put(f"cm-{i}", {"i": str(i)})
    server.page_size = 3
    server.list_errors = []
    real_list = server.list
    calls = 0

    def flaky(info: ResourceInfo, ns: str | None, *, limit: int, cont: str | None) -> JSON:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second page: the token expired (etcd compacted meanwhile)
            server.lists.append((ns, cont))
            raise ApiStatus(410, "Expired", "continue token expired")
        return real_list(info, ns, limit=limit, cont=cont)

    server.list = flaky  # type: ignore[method-assign,assignment]
    c = WatchCache(FakeKube(server), source=server, max_backoff=0.01)
    try:
        assert c.get(ref("cm-6")) is not None
        assert c.stats().objects == 9
        assert server.lists[:3] == [(NS, None), (NS, "3"), (NS, None)]
    finally:
        c.stop()


def test_list_and_watch_paths_of_one_namespace_and_of_all() -> None:
    assert CONFIGMAPS.collection(NS) == f"/api/v1/namespaces/{NS}/configmaps"
    assert CONFIGMAPS.collection(None) == "/api/v1/configmaps"
    routes = ResourceInfo("gateway.networking.k8s.io", "v1", "httproutes", True)
    assert (
        routes.collection("a/b") == "/apis/gateway.networking.k8s.io/v1/namespaces/a%2Fb/httproutes"
    )
    classes = ResourceInfo("gateway.networking.k8s.io", "v1", "gatewayclasses", False)
    assert classes.collection("ignored") == "/apis/gateway.networking.k8s.io/v1/gatewayclasses"


# -- watching ---------------------------------------------------------------------------------


def test_watches_end_within_the_transport_timeouts(server: FakeServer) -> None:
    """The server is asked to end each watch within Timeouts.watch_seconds (spread, so many
    informers do not re-open at once), and the client's read limit sits watch_slack above."""
    limits = Timeouts(watch_seconds=40, watch_slack=5)
    c = WatchCache(FakeKube(server), source=server, timeouts=limits, max_backoff=0.01)
    try:
        assert c.timeouts is limits
        assert c.get(ref("web")) is not None
        for i in range(1, 9):
            eventually(f"watch {i}", lambda: len(server.streams) >= i)  # noqa: B023
            server.streams[i - 1].push(_END)  # the server ended it: the informer resumes
        assert all(20 <= s.timeout <= 40 for s in server.streams), [
            s.timeout for s in server.streams
        ]
    finally:
        c.stop()
    assert WatchCache(FakeKube(server), source=server).timeouts is DEFAULT_TIMEOUTS
    assert limits.watch_for(33) == (limits.connect, 38)


def test_watch_events_update_and_delete(watching: WatchCache, server: FakeServer) -> None:
    assert server.stream.rv == str(server.rv)  # watching from the list's resourceVersion
    server.put("web", {"weights.json": "changed"})
    eventually(
        "MODIFIED", lambda: (watching.get(ref("web")) or {})["data"] == {"weights.json": "changed"}
    )
    server.put("new", {"a": "b"})
    eventually("ADDED", lambda: watching.get(ref("new")) is not None)
    server.delete("web")
    eventually("DELETED", lambda: watching.get(ref("web")) is None)
    assert kube_of(watching).gets == []


def test_broken_stream_resumes_from_the_last_resource_version_without_a_list(
    watching: WatchCache, server: FakeServer
) -> None:
    latest = server.put("web", {"x": "1"})["metadata"]["resourceVersion"]
    eventually("the event", lambda: rv_in_cache(watching, "web") == latest)
    server.stream.push(ApiStatus(0, "Unreachable", "connection reset"))
    eventually("a second watch", lambda: len(server.streams) == 2)
    assert server.stream.rv == latest
    assert server.lists == [(NS, None)], "a resumable watch must not relist"
    eventually("resume counted", lambda: watching.stats().resumes == 1)


def test_bookmarks_move_the_resume_point(watching: WatchCache, server: FakeServer) -> None:
    server.stream.push({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "5000"}}})
    eventually("bookmark", lambda: watching.stats().bookmarks == 1)
    server.stream.stop()  # the server's timeoutSeconds ended the watch normally
    eventually("a second watch", lambda: len(server.streams) == 2)
    assert server.stream.rv == "5000"


@pytest.mark.parametrize("how", ["error event", "status"])
def test_410_gone_relists_and_converges(cache: WatchCache, server: FakeServer, how: str) -> None:
    assert cache.get(ref("other")) is not None
    eventually("the watch", lambda: server.streams)
    # Changes the watch never delivered (it was down while etcd compacted them away):
    server.delete("other", notify=False)
    server.put("fresh", {"a": "1"}, notify=False)
    server.put("web", {"weights.json": "while away"}, notify=False)
    if how == "error event":
        gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
        server.stream.push({"type": "ERROR", "object": gone})
    else:
        server.stream.push(ApiStatus(410, "Expired", "too old resource version"))
    eventually("the relist", lambda: len(server.lists) == 2)
    eventually("convergence", lambda: cache.get(ref("fresh")) is not None)
    assert cache.get(ref("other")) is None
    assert (cache.get(ref("web")) or {})["data"] == {"weights.json": "while away"}
    stats = cache.stats()
    assert stats.relists == 1
    assert kube_of(cache).gets == []
    eventually("a watch from the relist", lambda: server.stream.rv == str(server.rv))


def test_an_event_that_breaks_the_cache_does_not_end_its_informer(
    watching: WatchCache, server: FakeServer
) -> None:
    """An unexpected error while handling an event (here a malformed object) once ended the
    informer's thread: its kind stayed cached and was never updated again. Now it is noted and
    the informer lists again, so later changes arrive."""
    server.stream.push({"type": "MODIFIED", "object": {"metadata": "not a mapping"}})
    eventually("the relist", lambda: len(server.lists) == 2)
    assert "AttributeError" in (watching.stats().last_error or "")
    server.put("web", {"weights.json": "after"})
    eventually(
        "a later change",
        lambda: (watching.get(ref("web")) or {}).get("data") == {"weights.json": "after"},
    )


def test_the_client_watch_yields_none_for_a_cut_line_and_it_is_skipped() -> None:
    """The official client's Watch yields None for a blank line or for the cut end of a line
    when the connection drops (JSONDecodeError); our stream skips it instead of failing on it
    (a TypeError that ended the informer's thread, seen when a cache stopped mid-event)."""
    from routers.cluster._watch import _ApiStream

    event = {"type": "ADDED", "raw_object": {"metadata": {"name": "a"}}}
    stream = _ApiStream.__new__(_ApiStream)
    stream._path, stream._rv, stream._timeout = "/api/v1/configmaps", "1", 5
    stream._watch = SimpleNamespace(stream=lambda *a, **k: iter([None, event, None]))
    assert list(stream) == [{"type": "ADDED", "object": {"metadata": {"name": "a"}}}]


@pytest.mark.parametrize(
    ("line", "rv"),
    [
        # A built-in kind: struct order, metadata right after kind and apiVersion.
        (
            '{"type":"MODIFIED","object":{"kind":"Ingress","apiVersion":"networking.k8s.io/v1",'
            '"metadata":{"name":"web","namespace":"a","uid":"u","resourceVersion":"812",'
            '"annotations":{"x":"{\\"resourceVersion\\":\\"1\\"}"}},"spec":{}}}',
            "812",
        ),
        # A custom kind: sorted keys; an annotation holding JSON has its quotes escaped.
        (
            '{"type":"MODIFIED","object":{"apiVersion":"x/v1","kind":"K","metadata":{'
            '"annotations":{"last":"{\\"metadata\\":{\\"resourceVersion\\":\\"7\\"}}"},'
            '"managedFields":[{"fieldsV1":{"f:spec":{"k:{\\"name\\":\\"a\\"}":{}}}}],'
            '"name":"n","namespace":"a","resourceVersion":"9001","uid":"u"},'
            '"spec":{"resourceVersion":"5"}}}',
            "9001",
        ),
        ('{"type":"BOOKMARK","object":{"kind":"K","metadata":{"resourceVersion":"44"}}}', "44"),
        ('{"type":"ERROR","object":{"kind":"Status","code":410}}', None),
    ],
)
def test_the_first_resource_version_of_an_event_line_is_its_objects(
    line: str, rv: str | None
) -> None:
    from routers.cluster._watch import first_resource_version

    assert json.loads(line)  # the samples are real JSON
    assert first_resource_version(line) == rv


def test_the_event_of_a_version_a_write_response_stored_is_not_decoded(
    watching: WatchCache, server: FakeServer
) -> None:
    """Our own write's response reaches the cache before its event: the event's line is
    recognised by its resourceVersion, once, and only moves the resume point."""
    from routers.cluster._watch import HELD, _Watch

    written = server.put("web", {"weights.json": "ours"}, notify=False)
    assert watching.record(written)
    event = {"type": "MODIFIED", "object": written}
    line = json.dumps(event, separators=(",", ":"))
    watch = _Watch(watching._held_line)
    held = watch.unmarshal_event(line, None)
    assert held["type"] == HELD
    assert held["raw_object"] == {
        "metadata": {"resourceVersion": written["metadata"]["resourceVersion"]}
    }
    again = watch.unmarshal_event(line, None)  # recognised once only
    assert again["type"] == "MODIFIED" and again["raw_object"] == written
    other = server.put("other", {"a": "1"}, notify=False)  # a version nobody stored
    assert (
        watch.unmarshal_event(json.dumps({"type": "ADDED", "object": other}), None)["type"]
        == "ADDED"
    )
    skipped = watching.stats().skipped
    server.stream.push({"type": HELD, "object": held["raw_object"]})
    server.stream.push(ApiStatus(0, "Unreachable", "connection reset"))
    eventually("a second watch", lambda: len(server.streams) == 2)
    assert server.stream.rv == written["metadata"]["resourceVersion"]
    assert watching.stats().skipped == skipped + 1
    assert (watching.get(ref("web")) or {})["data"] == {"weights.json": "ours"}


# -- label selectors ---------------------------------------------------------------------------


def selector(**labels: str) -> SelectorRef:
    return SelectorRef("", "ConfigMap", NS, LabelSelector(match_labels=labels), "v1")


def test_label_selectors_are_answered_from_the_informer(
    watching: WatchCache, server: FakeServer
) -> None:
    server.put("a", {}, labels={"app": "web"})
    server.put("b", {}, labels={"app": "web", "tier": "edge"})
    server.put("c", {}, labels={"app": "api"})
    server.put("d", {}, ns="elsewhere", labels={"app": "web"})
    eventually("the events", lambda: watching.stats().events == 3)
    names = [o["metadata"]["name"] for o in watching.select(selector(app="web"))]
    assert names == ["a", "b"]
    assert [o["metadata"]["name"] for o in watching.select(selector(tier="edge"))] == ["b"]
    server.put("c", {}, labels={"app": "web"})  # relabelled: now it matches
    eventually("the relabel", lambda: len(watching.select(selector(app="web"))) == 3)
    assert (kube_of(watching).gets, kube_of(watching).lists) == ([], [])


def test_label_selectors_list_from_the_server_when_the_kind_cannot_be_watched(
    server: FakeServer,
) -> None:
    server.list_errors = [ApiStatus(403, "Forbidden", "cannot list configmaps")]
    server.put("a", {}, labels={"app": "web"})
    c = WatchCache(FakeKube(server), source=server, max_backoff=0.01)
    try:
        assert [o["metadata"]["name"] for o in c.select(selector(app="web"))] == ["a"]
        assert len(kube_of(c).lists) == 1
    finally:
        c.stop()


def names(objs: list[JSON]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_label_selectors_see_deletions_and_only_their_namespace(server: FakeServer) -> None:
    server.put("a", {}, labels={"app": "web"})
    server.put("a", {}, ns="elsewhere", labels={"app": "web"})
    wide = WatchCache(FakeKube(server), source=server, all_namespaces=True, max_backoff=0.01)
    try:
        assert names(wide.select(selector(app="web"))) == ["a"]
        other = SelectorRef("", "ConfigMap", "elsewhere", LabelSelector(), "v1")
        assert [o["metadata"]["namespace"] for o in wide.select(other)] == ["elsewhere"]
        eventually("the watch", lambda: server.streams)
        server.delete("a")
        eventually("the deletion", lambda: wide.select(selector(app="web")) == [])
        assert server.lists == [(None, None)]
        assert kube_of(wide).lists == []
    finally:
        wide.stop()


def test_label_selectors_read_evicted_bodies_and_check_their_labels_again(
    server: FakeServer,
) -> None:
    server.put("a", {}, labels={"app": "web"})
    server.put("b", {}, labels={"app": "web"})
    c = WatchCache(FakeKube(server), source=server, max_bytes=0, max_backoff=0.01)
    try:
        assert names(c.select(selector(app="web"))) == ["a", "b"]
        assert [r.name for r in kube_of(c).gets] == ["a", "b"], "no body kept: one GET each"
        server.put("b", {}, labels={"app": "api"}, notify=False)  # relabelled, event not here
        assert names(c.select(selector(app="web"))) == ["a"]
    finally:
        c.stop()


def test_a_fresh_selector_list_goes_to_the_server_and_is_kept(
    watching: WatchCache, server: FakeServer
) -> None:
    server.put("a", {"v": "1"}, labels={"app": "web"}, notify=False)  # the watch lags
    assert watching.select(selector(app="web")) == []
    assert names(watching.select_fresh(selector(app="web"))) == ["a"]
    assert kube_of(watching).lists == [selector(app="web")]
    assert names(watching.select(selector(app="web"))) == ["a"]  # kept: no second LIST
    assert len(kube_of(watching).lists) == 1
    assert watching.stats().gets == 1


# -- write responses ---------------------------------------------------------------------------


def test_a_write_response_is_seen_at_once_and_never_replaced_by_an_older_event(
    watching: WatchCache, server: FakeServer
) -> None:
    older = server.put("web", {"v": "older"}, notify=False)
    ours = server.put("web", {"v": "ours"}, notify=False)
    assert watching.record(ours)
    assert (watching.get(ref("web")) or {})["data"] == {"v": "ours"}
    # The watch delivers the two events late, in order: neither may move the object back.
    server.stream.push({"type": "MODIFIED", "object": older})
    server.stream.push({"type": "MODIFIED", "object": ours})
    eventually("both events", lambda: watching.stats().skipped == 2)
    assert (watching.get(ref("web")) or {})["data"] == {"v": "ours"}
    assert not watching.record(older), "an older write response is refused too"
    newer = server.put("web", {"v": "newer"})
    eventually(
        "a newer event",
        lambda: rv_in_cache(watching, "web") == newer["metadata"]["resourceVersion"],
    )


def test_a_deleted_object_is_not_resurrected_by_a_late_event(
    watching: WatchCache, server: FakeServer
) -> None:
    stale = server.put("web", {"v": "before delete"}, notify=False)
    server.delete("web", notify=False)
    watching.record_deleted(ref("web"), str(server.rv))
    assert watching.get(ref("web")) is None
    server.stream.push({"type": "MODIFIED", "object": stale})
    eventually("the late event", lambda: watching.stats().skipped == 1)
    assert watching.get(ref("web")) is None
    again = server.put("web", {"v": "re-created"})  # a newer version is a re-creation
    eventually(
        "re-created", lambda: rv_in_cache(watching, "web") == again["metadata"]["resourceVersion"]
    )


def test_record_without_an_informer_is_ignored(cache: WatchCache, server: FakeServer) -> None:
    assert not cache.record(server.objects[(NS, "web")])
    assert cache.stats().informers == 0


# -- bounded memory -----------------------------------------------------------------------------


def test_memory_stays_within_max_bytes_and_evicted_bodies_are_read_again(
    server: FakeServer,
) -> None:
    for i in range(20):
        server.put(f"cm-{i:02d}", {"blob": "x" * 1000})
    one = len(json.dumps(server.objects[(NS, "cm-00")], separators=(",", ":")))
    c = WatchCache(FakeKube(server), source=server, max_bytes=5 * one, max_backoff=0.01)
    try:
        assert c.get(ref("cm-00")) is not None
        stats = c.stats()
        assert stats.objects == 22, "every object is known, body or not"
        assert stats.bytes <= 5 * one
        assert stats.bodies < 22
        # A cold object: one GET, then it is warm (and the least recently used one made room).
        gets = kube_of(c).gets
        before = len(gets)
        for i in range(20):
            assert c.get(ref(f"cm-{i:02d}")) is not None
            assert c.stats().bytes <= 5 * one
        assert len(gets) > before
        assert c.stats().evictions > 0
        warm = len(gets)
        assert c.get(ref("cm-19")) is not None  # the most recent: still in memory
        assert len(gets) == warm
        assert c.get(ref("nope")) is None  # absence is still known without a body
        assert len(gets) == warm
        # An event for an evicted object updates its version but does not push out warm ones.
        eventually("the watch", lambda: server.streams)
        before_bytes = c.stats().bytes
        server.put("cm-00", {"blob": "y" * 1000})
        eventually("the event", lambda: c.stats().events == 1)
        assert c.stats().bytes == before_bytes
    finally:
        c.stop()


def test_max_bytes_zero_keeps_only_names(server: FakeServer) -> None:
    c = WatchCache(FakeKube(server), source=server, max_bytes=0, max_backoff=0.01)
    try:
        assert c.get(ref("web")) is not None
        assert c.get(ref("missing")) is None
        assert [r.name for r in kube_of(c).gets] == ["web"]
        assert c.stats().bytes == 0
    finally:
        c.stop()


# -- failures and stopping ----------------------------------------------------------------------


def test_forbidden_list_falls_back_to_gets(server: FakeServer) -> None:
    server.list_errors = [ApiStatus(403, "Forbidden", "cannot list configmaps")] * 3
    c = WatchCache(FakeKube(server), source=server, max_backoff=0.01)
    try:
        assert c.get(ref("web")) is not None
        assert c.get(ref("web")) is not None
        assert len(kube_of(c).gets) == 2
        stats = c.stats()
        assert stats.gets == 2
        assert stats.synced == 0
        assert "cannot list configmaps" in (stats.last_error or "")
    finally:
        c.stop()


def test_stop_ends_every_watch_thread(server: FakeServer) -> None:
    before = set(threading.enumerate())
    c = WatchCache(FakeKube(server), source=server, max_backoff=0.01)
    c.get(ref("web"))
    c.get(ref("web", "elsewhere"))
    eventually("two watches", lambda: len(server.streams) == 2)
    c.stop(timeout=5)
    assert all(s.stopped for s in server.streams)
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []
    assert c.get(ref("web")) is not None  # still answers, from the server
    assert kube_of(c).gets == [ref("web")]


# -- the Router over the cache ------------------------------------------------------------------


@pytest.fixture
def registry() -> Iterator[Registry]:
    yield from configmap_registry()


def routing() -> RoutingConfig:
    return RoutingConfig.from_document(
        {
            "stableService": "web-stable",
            "canaryService": "web-canary",
            "namespace": NS,
            "plugins": {"example.com/configmap": {"configMap": "web"}},
        }
    )


def test_router_steps_read_nothing_and_verify_sees_its_own_write(
    cache: WatchCache, server: FakeServer, registry: Registry
) -> None:
    router = Router(routing(), cache=cache, registry=registry)
    router.facts()
    for w in (10, 20, 30):
        out = router.apply_state(TrafficState(weight=w))
        assert out.writes == 1
        assert router.verify(TrafficState(weight=w)).ok  # from the write response, no wait
    again = router.apply_state(TrafficState(weight=30))
    assert again.writes == 0
    assert kube_of(cache).gets == []
    # Only the resourceVersion guard and the edits went out.
    for ops in kube_of(cache).patches:
        tests = [op for op in ops if op["op"] == "test"]
        assert [t["path"] for t in tests] == ["/metadata/resourceVersion"]


def test_a_router_parses_an_object_once_per_version(
    watching: WatchCache, server: FakeServer, registry: Registry
) -> None:
    router = Router(routing(), cache=watching, registry=registry)
    router.apply_state(TrafficState(weight=10))
    parsed: list[ObjectRef] = []
    get = watching.get

    def counting(r: ObjectRef) -> JSON | None:
        parsed.append(r)
        return get(r)

    watching.get = counting  # type: ignore[method-assign]
    for w in (20, 30):  # its own writes: the parsed responses are reused
        router.apply_state(TrafficState(weight=w))
        assert router.verify(TrafficState(weight=w)).ok
    assert parsed == []
    # Someone else's write arrives through the watch: that version is parsed, once.
    current = server.objects[(NS, "web")]
    foreign = server.put(
        "web",
        {**current["data"], "foreign": "1"},
        annotations=current["metadata"].get("annotations"),
    )
    eventually("the event", lambda: watching.version(ref("web")) == rv_of(foreign))
    assert router.apply_state(TrafficState(weight=30)).writes == 0
    assert router.verify(TrafficState(weight=30)).ok
    assert parsed == [ref("web")]


def rv_of(obj: JSON) -> str:
    return str(obj["metadata"]["resourceVersion"])


def test_stale_cache_costs_one_conflict_and_loses_nothing(
    watching: WatchCache, server: FakeServer, registry: Registry
) -> None:
    router = Router(routing(), cache=watching, registry=registry)
    # A foreign write the watch has not delivered yet: the cache is stale.
    foreign = copy.deepcopy(server.objects[(NS, "web")]["data"])
    foreign["foreign"] = "kept"
    server.put("web", foreign, notify=False)
    out = reconcile(
        watching.kube,
        routing(),
        TrafficState(weight=40),
        registry=registry,
        cache=watching,
        sleep=lambda _: None,
    )
    assert out.attempts == 2, "one conflict, then a fresh read"
    assert [r.name for r in kube_of(watching).gets] == ["web"]
    data = server.objects[(NS, "web")]["data"]
    assert data["foreign"] == "kept"
    assert json.loads(data["weights.json"])["web-canary"] == 40
    assert router.verify(TrafficState(weight=40)).ok
    assert len(kube_of(watching).gets) == 1, "the fresh read refreshed the cache"


def test_rbac_for_a_watch_cache_adds_list_and_watch_where_get_is_granted(
    registry: Registry,
) -> None:
    from routers.cluster import rbac_manifests

    (plain,) = [m for m in rbac_manifests(routing(), registry=registry) if m["kind"] == "Role"]
    (watching,) = [
        m
        for m in rbac_manifests(routing(), registry=registry, watch_cache=True)
        if m["kind"] == "Role"
    ]
    for before, after in zip(plain["rules"], watching["rules"], strict=True):
        assert set(after["verbs"]) - set(before["verbs"]) == (
            {"list", "watch"} if "get" in before["verbs"] else set()
        )
    assert any("watch" in r["verbs"] for r in watching["rules"])
    # The Events the Argo plugin records are written, never cached: no list/watch on them.
    (both,) = [
        m
        for m in rbac_manifests(routing(), registry=registry, watch_cache=True, events=True)
        if m["kind"] == "Role"
    ]
    (events,) = [r for r in both["rules"] if r["resources"] == ["events"]]
    assert events["verbs"] == ["create", "get", "patch"]
