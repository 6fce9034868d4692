"""The Python side of the Argo Rollouts bridge: reading Rollouts, per-Rollout state rebuilt from
calls + status + the record on the holder, and the JSON-lines protocol loop.

The cluster is an in-memory fake (JSON patches with their ``test`` guards, resourceVersions);
the real API server and Argo's own client are in e2e/test_argo_protocol.py.
"""

from __future__ import annotations

import copy
import io
import json
import threading
import time
from typing import Any

import jsonpatch
import pytest

from routers.argo import RECORD_PREFIX, ArgoPlugin, CallError, routing_document, serve
from routers.argo.rollout import RolloutView, destinations, status_weights
from routers.cluster import DEFAULT_TIMEOUTS, ApiStatus, Kube, ResourceInfo, WatchCache
from routers.errors import ConfigError
from routers.model import WEIGHT_SCOPE_ANNOTATION
from routers.planning.objects import ObjectRef
from routers.planning.patch import apply_ops

PLUGIN = "canary-routers/istio"
NS = "shop"

KINDS = {
    ("networking.istio.io", "VirtualService"): ResourceInfo(
        "networking.istio.io", "v1", "virtualservices", True
    ),
    ("networking.istio.io", "DestinationRule"): ResourceInfo(
        "networking.istio.io", "v1", "destinationrules", True
    ),
}


class FakeKube:
    """Objects by ref; JSON patches applied with their guards, as the API server does."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects: dict[ObjectRef, dict[str, Any]] = {}
        self.writes: list[tuple[str, ObjectRef, Any]] = []
        self.gets = 0
        self.rv = 100
        for obj in objects:
            self.put(obj)

    def put(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[ObjectRef.of(obj)] = obj

    def served_groups(self, *, refresh: bool = False) -> dict[str, tuple[str, ...]]:
        return {"": ("v1",), "networking.istio.io": ("v1",)}

    def crd(self, name: str) -> None:
        return None

    def resource(self, ref: ObjectRef) -> ResourceInfo:
        return KINDS[(ref.group, ref.kind)]

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        self.gets += 1
        obj = self.objects.get(ref)
        return copy.deepcopy(obj) if obj is not None else None

    def json_patch(self, ref: ObjectRef, ops: Any, *, dry_run: bool = False) -> dict[str, Any]:
        current = self.objects.get(ref)
        if current is None:
            raise ApiStatus(404, "NotFound", f"{ref} not found")
        try:
            patched = apply_ops(current, list(ops))  # the API server's semantics
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise ApiStatus(422, "Invalid", str(exc)) from None
        self.writes.append(("patch", ref, list(ops)))
        self.put(patched)
        return copy.deepcopy(self.objects[ref])

    def create(self, ref: ObjectRef, body: Any, *, dry_run: bool = False) -> dict[str, Any]:
        raise AssertionError("the istio plugin creates nothing")

    def delete(self, ref: ObjectRef, **_: Any) -> None:
        raise AssertionError("the istio plugin deletes nothing")


def virtual_service() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": NS, "annotations": {"team": "shop"}},
        "spec": {
            "hosts": ["web.example.com"],
            "http": [
                {
                    "name": "primary",
                    "retries": {"attempts": 3},
                    "route": [
                        {"destination": {"host": "web-stable"}, "weight": 100},
                        {"destination": {"host": "web-canary"}, "weight": 0},
                    ],
                }
            ],
        },
    }


def rollout(uid: str = "uid-1", *, weights: int | None = None, **canary: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": NS, "uid": uid},
        "spec": {
            "strategy": {
                "canary": {
                    "stableService": "web-stable",
                    "canaryService": "web-canary",
                    "trafficRouting": {
                        "managedRoutes": [{"name": "hdr"}, {"name": "mirror"}],
                        "istio": {"virtualService": {"name": "ignored-by-us"}},
                        "plugins": {
                            PLUGIN: {"virtualService": {"name": "web", "routes": ["primary"]}},
                            "argoproj-labs/gatewayAPI": {"httpRoute": "not-ours"},
                        },
                    },
                    **canary,
                }
            }
        },
        "status": {},
    }
    if weights is not None:
        doc["status"] = {
            "canary": {
                "weights": {
                    "canary": {"weight": weights, "serviceName": "web-canary"},
                    "stable": {"weight": 100 - weights, "serviceName": "web-stable"},
                }
            }
        }
    return doc


HEADER = {"name": "hdr", "match": [{"headerName": "X-Canary", "headerValue": {"exact": "yes"}}]}


def vs(kube: FakeKube) -> dict[str, Any]:
    return kube.objects[ObjectRef("networking.istio.io", "VirtualService", NS, "web")]


def weights(kube: FakeKube) -> tuple[int, int]:
    primary = next(r for r in vs(kube)["spec"]["http"] if r["name"] == "primary")
    return primary["route"][1]["weight"], primary["route"][0]["weight"]


def route_names(kube: FakeKube) -> list[str]:
    return [r["name"] for r in vs(kube)["spec"]["http"]]


def record(kube: FakeKube) -> dict[str, Any] | None:
    found = {
        k: json.loads(v)
        for k, v in (vs(kube)["metadata"].get("annotations") or {}).items()
        if k.startswith(RECORD_PREFIX)
    }
    assert len(found) <= 1
    return next(iter(found.values()), None)


def plugin(kube: FakeKube) -> ArgoPlugin:
    return ArgoPlugin(PLUGIN, kube)  # type: ignore[arg-type]


def set_weight(p: ArgoPlugin, ro: dict[str, Any], w: int, extra: Any = ()) -> None:
    p.handle("SetWeight", ro, {"desiredWeight": w, "additionalDestinations": list(extra)})


# -- reading the Rollout ------------------------------------------------------------------


def test_only_our_plugin_section_is_routed() -> None:
    doc = routing_document(rollout(), PLUGIN)
    routing = doc["spec"]["strategy"]["canary"]["trafficRouting"]
    assert routing == {
        "plugins": {PLUGIN: {"virtualService": {"name": "web", "routes": ["primary"]}}},
        "managedRoutes": [{"name": "hdr"}, {"name": "mirror"}],
    }
    config = RolloutView.of(rollout(), PLUGIN).config()
    assert [s.plugin for s in config.sections] == ["istio"]
    assert config.namespace == NS
    assert config.rollout is not None and config.rollout.uid == "uid-1"


def test_a_rollout_without_our_section_names_what_it_has() -> None:
    with pytest.raises(ConfigError) as exc:
        routing_document(rollout(), "canary-routers/nginx")
    text = str(exc.value)
    assert "canary-routers/nginx" in text
    assert "argoproj-labs/gatewayAPI, canary-routers/istio" in text


@pytest.mark.parametrize(
    ("role", "stable", "canary"),
    [
        ("ping", "web-ping", "web-pong"),
        ("pong", "web-pong", "web-ping"),
        (None, "web-pong", "web-ping"),
    ],
)
def test_ping_pong_services_follow_the_status(role: str | None, stable: str, canary: str) -> None:
    ro = rollout()
    c = ro["spec"]["strategy"]["canary"]
    del c["stableService"], c["canaryService"]
    c["pingPong"] = {"pingService": "web-ping", "pongService": "web-pong"}
    if role:
        ro["status"] = {"canary": {"stablePingPong": role}}
    config = RolloutView.of(ro, PLUGIN).config()
    assert (config.stable_service, config.canary_service) == (stable, canary)


def test_the_weight_scope_annotation_reaches_the_config() -> None:
    ro = rollout()
    assert RolloutView.of(ro, PLUGIN).config().weight_scope == "all"
    ro["metadata"]["annotations"] = {WEIGHT_SCOPE_ANNOTATION: "ours", "other": "x"}
    reduced = routing_document(ro, PLUGIN)
    assert reduced["metadata"]["annotations"] == {WEIGHT_SCOPE_ANNOTATION: "ours"}
    assert RolloutView.of(ro, PLUGIN).config().weight_scope == "ours"


def test_status_weights_and_destinations() -> None:
    ro = rollout(weights=30)
    ro["status"]["canary"]["weights"]["canary"]["podTemplateHash"] = "c1"
    ro["status"]["canary"]["weights"]["additional"] = [
        {"weight": 5, "serviceName": "exp", "podTemplateHash": "e1"}
    ]
    got = status_weights(ro)
    assert got is not None
    assert (got.weight, got.canary_hash, got.stable_hash) == (30, "c1", None)
    assert [(d.service, d.weight, d.pod_template_hash) for d in got.additional] == [
        ("exp", 5, "e1")
    ]
    assert status_weights(rollout()) is None
    with pytest.raises(ConfigError, match=r"additionalDestinations\[0\]"):
        destinations([{"serviceName": "", "weight": 1}], "additionalDestinations")


# -- calls --------------------------------------------------------------------------------


def test_set_weight_then_steady_state_sends_no_writes() -> None:
    kube = FakeKube(virtual_service())
    p = plugin(kube)
    set_weight(p, rollout(), 20)
    assert weights(kube) == (20, 80)
    assert len(kube.writes) == 1
    for _ in range(3):
        p.handle("UpdateHash", rollout(), {"canaryHash": "c", "stableHash": "s"})
        set_weight(p, rollout(weights=20), 20)
        assert p.handle("VerifyWeight", rollout(weights=20), {"desiredWeight": 20}) == "Verified"
    assert len(kube.writes) == 1
    assert p.handle("VerifyWeight", rollout(weights=20), {"desiredWeight": 30}) == "NotVerified"
    assert vs(kube)["spec"]["http"][0]["retries"] == {"attempts": 3}  # foreign fields kept


def test_header_route_is_recorded_before_it_is_applied() -> None:
    kube = FakeKube(virtual_service())
    p = plugin(kube)
    set_weight(p, rollout(), 20)
    p.handle("SetHeaderRoute", rollout(weights=20), {"setHeaderRoute": HEADER})
    (_, (_, _, record_ops), (_, _, route_ops)) = kube.writes
    # the first write touches nothing but the record annotation
    assert {op["path"] for op in record_ops if op["op"] != "test"} == {
        "/metadata/annotations/"
        + next(
            k for k in vs(kube)["metadata"]["annotations"] if k.startswith(RECORD_PREFIX)
        ).replace("/", "~1")
    }
    assert any(op["path"].startswith("/spec/http") for op in route_ops)
    assert route_names(kube) == ["hdr", "primary"]
    rec = record(kube)
    assert rec is not None
    assert rec["uid"] == "uid-1" and rec["rollout"] == f"{NS}/web" and rec["plugin"] == PLUGIN
    assert [r["name"] for r in rec["headerRoutes"]] == ["hdr"]


def test_a_restarted_process_continues_without_writes_or_lost_routes() -> None:
    kube = FakeKube(virtual_service())
    first = plugin(kube)
    set_weight(first, rollout(), 20)
    first.handle("SetHeaderRoute", rollout(weights=20), {"setHeaderRoute": HEADER})
    writes = len(kube.writes)
    # A new process knows nothing but the Rollout (with Argo's status) and the objects.
    again = plugin(kube)
    again.handle("UpdateHash", rollout(weights=20), {"canaryHash": "c", "stableHash": "s"})
    set_weight(again, rollout(weights=20), 20)
    assert again.handle("VerifyWeight", rollout(weights=20), {"desiredWeight": 20}) == "Verified"
    assert len(kube.writes) == writes
    assert route_names(kube) == ["hdr", "primary"]
    # ...and a route removed by hand comes back on the next call
    obj = vs(kube)
    obj["spec"]["http"] = [r for r in obj["spec"]["http"] if r["name"] != "hdr"]
    kube.put(obj)
    set_weight(again, rollout(weights=20), 20)
    assert route_names(kube) == ["hdr", "primary"]


def test_calls_without_weight_keep_the_status_weight_after_a_restart() -> None:
    kube = FakeKube(virtual_service())
    set_weight(plugin(kube), rollout(), 40)
    fresh = plugin(kube)
    fresh.handle("SetHeaderRoute", rollout(weights=40), {"setHeaderRoute": HEADER})
    assert weights(kube) == (40, 60)
    assert route_names(kube) == ["hdr", "primary"]


def test_empty_match_and_remove_managed_routes() -> None:
    kube = FakeKube(virtual_service())
    p = plugin(kube)
    set_weight(p, rollout(), 20)
    p.handle("SetHeaderRoute", rollout(weights=20), {"setHeaderRoute": HEADER})
    mirror = {
        "name": "mirror",
        "percentage": 25,
        "match": [{"method": {"exact": "GET"}, "path": {"prefix": "/api"}}],
    }
    p.handle("SetMirrorRoute", rollout(weights=20), {"setMirrorRoute": mirror})
    assert set(route_names(kube)) == {"hdr", "mirror", "primary"}
    rec = record(kube)
    assert rec is not None and [m["percentage"] for m in rec["mirrorRoutes"]] == [25.0]
    p.handle("SetHeaderRoute", rollout(weights=20), {"setHeaderRoute": {"name": "hdr"}})
    assert set(route_names(kube)) == {"mirror", "primary"}
    p.handle("RemoveManagedRoutes", rollout(weights=20), {})
    assert route_names(kube) == ["primary"]
    assert weights(kube) == (20, 80)  # weights stay
    assert record(kube) is None  # no trace left
    writes = len(kube.writes)
    p.handle("RemoveManagedRoutes", rollout(weights=20), {})
    assert len(kube.writes) == writes


def test_refused_routes_are_neither_recorded_nor_applied() -> None:
    kube = FakeKube(virtual_service())
    p = plugin(kube)
    set_weight(p, rollout(), 20)
    writes = len(kube.writes)
    bad = {"name": "unlisted", "match": HEADER["match"]}
    with pytest.raises(CallError) as exc:
        p.handle("SetHeaderRoute", rollout(weights=20), {"setHeaderRoute": bad})
    text = str(exc.value)
    assert text.startswith(f"{PLUGIN}: Rollout {NS}/web: SetHeaderRoute: ")
    assert "not listed in managedRoutes" in text
    assert len(kube.writes) == writes
    assert record(kube) is None


def test_a_record_of_another_rollout_incarnation_is_dropped() -> None:
    kube = FakeKube(virtual_service())
    old = plugin(kube)
    set_weight(old, rollout("old-uid"), 20)
    old.handle("SetHeaderRoute", rollout("old-uid", weights=20), {"setHeaderRoute": HEADER})
    # The Rollout was deleted and created again: Argo starts it afresh, so do we.
    new = plugin(kube)
    set_weight(new, rollout("new-uid"), 0)
    assert route_names(kube) == ["primary"]
    assert record(kube) is None


def test_weights_out_of_range_are_refused_with_the_reason() -> None:
    kube = FakeKube(virtual_service())
    with pytest.raises(CallError, match="above total 100"):
        set_weight(plugin(kube), rollout(), 120)
    ro = rollout()
    ro["spec"]["strategy"]["canary"]["trafficRouting"]["maxTrafficWeight"] = 1000
    p = plugin(kube)
    set_weight(p, ro, 125)  # 12.5% as Istio's integer percentages: within one unit
    assert weights(kube) in ((12, 88), (13, 87))
    assert p.handle("VerifyWeight", ro, {"desiredWeight": 125}) == "Verified"


def test_experiment_destinations_get_their_weight() -> None:
    kube = FakeKube(virtual_service())
    set_weight(plugin(kube), rollout(), 20, [{"serviceName": "web-exp", "weight": 10}])
    primary = vs(kube)["spec"]["http"][0]["route"]
    assert {d["destination"]["host"]: d["weight"] for d in primary} == {
        "web-stable": 70,
        "web-canary": 20,
        "web-exp": 10,
    }


def test_unknown_calls_and_bad_arguments() -> None:
    p = plugin(FakeKube(virtual_service()))
    with pytest.raises(CallError, match="unknown call 'Frobnicate'"):
        p.handle("Frobnicate", rollout(), {})
    with pytest.raises(CallError, match="desiredWeight: expected an integer"):
        p.handle("SetWeight", rollout(), {"desiredWeight": "20"})
    with pytest.raises(CallError, match=r"rollout\.metadata\.name: missing"):
        p.handle("SetWeight", {"metadata": {}}, {"desiredWeight": 1})


def test_init_plugin_checks_name_installation_and_api() -> None:
    kube = FakeKube(virtual_service())
    plugin(kube).handle("InitPlugin", None, {"plugin": PLUGIN})
    with pytest.raises(CallError, match="no installed canary-routers plugin is named 'ambassador'"):
        ArgoPlugin("canary-routers/ambassador", kube).handle("InitPlugin", None, {})  # type: ignore[arg-type]
    with pytest.raises(CallError, match="is not <org>/<name>"):
        ArgoPlugin("istio", kube).handle("InitPlugin", None, {})  # type: ignore[arg-type]


def test_a_changed_config_builds_a_new_router_and_keeps_what_argo_said() -> None:
    second = virtual_service()
    second["metadata"]["name"] = "web2"
    kube = FakeKube(virtual_service(), second)
    p = plugin(kube)
    set_weight(p, rollout(), 30)
    ro = rollout()
    ro["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"][PLUGIN]["virtualService"][
        "name"
    ] = "web2"
    p.handle("UpdateHash", ro, {"canaryHash": "c", "stableHash": "s"})  # weight from memory: 30
    moved = kube.objects[ObjectRef("networking.istio.io", "VirtualService", NS, "web2")]
    assert moved["spec"]["http"][0]["route"][1]["weight"] == 30


class _WatchedKube(FakeKube, Kube):
    """The fake, as a Kube a WatchCache takes (FakeKube's methods win)."""


class _QuietSource:
    """Lists what the fake holds; its watches deliver nothing until stopped."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.lists = 0

    def list(self, info: ResourceInfo, namespace: str | None, **_: Any) -> dict[str, Any]:
        self.lists += 1
        items = [
            copy.deepcopy(o)
            for r, o in self.kube.objects.items()
            if r.kind.lower() + "s" == info.plural and namespace in (None, r.namespace)
        ]
        return {"metadata": {"resourceVersion": str(self.kube.rv)}, "items": items}

    def watch(self, info: ResourceInfo, namespace: str | None, **_: Any) -> Any:
        return _Silent()


class _Silent:
    def __init__(self) -> None:
        self.done = threading.Event()

    def __iter__(self) -> Any:
        self.done.wait(30)
        return iter(())

    def stop(self) -> None:
        self.done.set()


def test_with_a_watch_cache_steady_calls_read_nothing_and_verify_sees_the_write() -> None:
    kube = _WatchedKube(virtual_service())
    source = _QuietSource(kube)
    with WatchCache(kube, source=source, timeouts=DEFAULT_TIMEOUTS) as cache:
        p = ArgoPlugin(PLUGIN, kube, cache=cache)  # type: ignore[arg-type]
        assert p.sessions.get(RolloutView.of(rollout(), PLUGIN)).router.cache is cache
        for w in (10, 20, 30):
            set_weight(p, rollout(weights=w - 10), w)
            # The write's response is in the cache: verified without a read or a wait.
            assert p.handle("VerifyWeight", rollout(weights=w), {"desiredWeight": w}) == "Verified"
            p.handle("UpdateHash", rollout(weights=w), {"canaryHash": "c", "stableHash": "s"})
        assert weights(kube) == (30, 70)
        assert [(verb, ref.name) for verb, ref, _ in kube.writes] == [("patch", "web")] * 3
        assert (kube.gets, source.lists) == (0, 1), "one list, then memory only"
        assert cache.stats().gets == 0


# -- the protocol loop --------------------------------------------------------------------


class _Pipe(io.RawIOBase):
    """A blocking line source fed by the test, like the bridge's end of stdin."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._cond = threading.Condition()
        self._closed = False

    def feed(self, message: Any) -> None:
        with self._cond:
            self._lines.append(
                (message if isinstance(message, bytes) else json.dumps(message).encode()) + b"\n"
            )
            self._cond.notify_all()

    def close_input(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> bytes:
        with self._cond:
            while not self._lines and not self._closed:
                self._cond.wait(5)
            if self._lines:
                return self._lines.pop(0)
            raise StopIteration


def _start(handler: Any, **kw: Any) -> tuple[_Pipe, io.BytesIO, list[int], threading.Thread]:
    """``serve`` in a thread on a fake pipe; its result lands in the list."""
    pipe, out, done = _Pipe(), io.BytesIO(), []
    thread = threading.Thread(
        target=lambda: done.append(
            serve(handler, plugin=PLUGIN, version="9.9", stdin=pipe, stdout=out, **kw)  # type: ignore[arg-type]
        )
    )
    thread.start()
    return pipe, out, done, thread


def _serve(handler: Any, messages: list[Any], answers: int) -> list[dict[str, Any]]:
    """Feed ``messages``, wait for ``answers`` lines after the hello, then end the input (the
    bridge is gone: calls still queued are dropped)."""
    pipe, out, done, thread = _start(handler, workers=4)
    for m in messages:
        pipe.feed(m)
    deadline = time.monotonic() + 10
    while out.getvalue().count(b"\n") < answers + 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    pipe.close_input()
    thread.join(10)
    assert done == [0]
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_protocol_hello_answers_errors_and_ping() -> None:
    def handler(method: str, rollout: Any, args: Any) -> Any:
        if method == "SetWeight":
            return None
        if method == "VerifyWeight":
            return "Verified"
        if method == "SetMirrorRoute":
            raise CallError("smi: setMirrorRoute 'm' is not supported: no mirroring")
        raise KeyError(method)

    answers = _serve(
        handler,
        [
            {"id": 1, "method": "SetWeight", "rollout": {}, "args": {"desiredWeight": 1}},
            b"not json",
            {"method": "no id"},
            {"id": 2, "method": "VerifyWeight", "args": {}},
            {"id": 3, "method": "SetMirrorRoute", "args": {}},
            {"id": 4, "method": "Ping"},
            {"id": 5, "method": "Boom"},
        ],
        answers=5,
    )
    hello, *rest = answers
    assert hello == {
        "hello": {"protocol": 1, "version": "9.9", "plugin": PLUGIN, "pid": hello["hello"]["pid"]}
    }
    by_id = {a["id"]: a for a in rest}
    assert sorted(by_id) == [1, 2, 3, 4, 5]
    assert by_id[1] == {"id": 1, "result": None}
    assert by_id[2] == {"id": 2, "result": "Verified"}
    assert by_id[3] == {"id": 3, "error": "smi: setMirrorRoute 'm' is not supported: no mirroring"}
    assert by_id[4] == {"id": 4, "result": "pong"}
    assert by_id[5]["error"].startswith("canary-routers internal error in Boom: KeyError")


def test_ping_is_answered_while_calls_are_busy() -> None:
    release = threading.Event()

    def handler(method: str, rollout: Any, args: Any) -> Any:
        release.wait(10)
        return None

    pipe, out, _, thread = _start(handler, workers=1)
    try:
        pipe.feed({"id": 1, "method": "SetWeight", "args": {}})
        pipe.feed({"id": 2, "method": "Ping"})
        deadline = time.monotonic() + 5
        while b'"pong"' not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b'"pong"' in out.getvalue()
        assert b'"id":1' not in out.getvalue()
    finally:
        release.set()
        pipe.close_input()
        thread.join(10)
    assert b'"id":1' in out.getvalue()


def test_hclog_lines_carry_the_level_argo_logs_them_at() -> None:
    import logging

    from routers.argo.server import log_handler

    handler = log_handler(PLUGIN, "hclog")
    record = logging.LogRecord(
        "routers.argo", logging.WARNING, __file__, 1, "slow %s", ("api",), None
    )
    assert handler.format(record) == "[WARN] routers argo-plugin: slow api"
    text = log_handler(PLUGIN).format(record)
    assert text.endswith(f"WARNING routers argo-plugin [{PLUGIN}] slow api")


def test_end_of_input_gives_running_calls_a_bounded_drain(caplog: pytest.LogCaptureFixture) -> None:
    """The bridge went away while a call hangs: serve returns after ``drain`` seconds with
    EXIT_CALLS_LEFT (the CLI then exits without joining the call's thread), never waits on."""
    from routers.argo.server import EXIT_CALLS_LEFT

    release = threading.Event()
    started = threading.Event()

    def handler(method: str, rollout: Any, args: Any) -> Any:
        started.set()
        release.wait(30)  # a call stuck beyond any drain
        return None

    pipe, _, result, thread = _start(handler, drain=0.3)
    try:
        pipe.feed({"id": 1, "method": "SetWeight", "args": {}})
        assert started.wait(10)
        begin = time.monotonic()
        pipe.close_input()
        thread.join(10)
        assert not thread.is_alive()
        assert result == [EXIT_CALLS_LEFT]
        assert time.monotonic() - begin < 5
        assert "1 call(s) still running 0.3s after the end of input" in caplog.text
    finally:
        release.set()
        thread.join(10)


# -- Warning Events for the calls Argo only logs ---------------------------------------------


class Recorded:
    """An EventRecorder's caller side: what the plugin asked to record."""

    def __init__(self) -> None:
        self.warnings: list[tuple[Any, str, str]] = []

    def warning(self, obj: Any, reason: str, message: str) -> None:
        self.warnings.append((obj, reason, message))


def test_errors_argo_only_logs_become_warning_events_on_the_rollout() -> None:
    from routers.argo.plugin import EVENT_REASON
    from routers.cluster import InvolvedObject

    kube = FakeKube(virtual_service())
    events = Recorded()
    p = ArgoPlugin(PLUGIN, kube, events=events)  # type: ignore[arg-type]
    set_weight(p, rollout(), 20)
    bad = {"name": "unlisted", "match": HEADER["match"]}
    for _ in range(2):
        with pytest.raises(CallError) as exc:
            p.handle("SetHeaderRoute", rollout(weights=20), {"setHeaderRoute": bad})
    involved = InvolvedObject("argoproj.io/v1alpha1", "Rollout", NS, "web", "uid-1")
    assert events.warnings == [(involved, EVENT_REASON, str(exc.value))] * 2
    assert "not listed in managedRoutes" in events.warnings[0][2]
    # Argo records SetWeight and VerifyWeight errors itself (TrafficRoutingError,
    # WeightVerifyError): no second event for those.
    with pytest.raises(CallError):
        set_weight(p, rollout(), 101)
    with pytest.raises(CallError):
        p.handle("VerifyWeight", rollout(), {"desiredWeight": "x"})
    # A Rollout we cannot read names no object to record on.
    with pytest.raises(CallError):
        p.handle("SetMirrorRoute", {"metadata": {}}, {"setMirrorRoute": {"name": "m"}})
    assert len(events.warnings) == 2


def test_an_event_that_cannot_be_written_leaves_the_call_error_alone() -> None:
    """Through the real recorder: the API refuses the event, the call's own error stands."""
    from routers.cluster import EventRecorder

    class Refusing:
        def request(self, method: str, path: str, **_: Any) -> Any:
            raise ApiStatus(403, "Forbidden", 'cannot create resource "events"')

    kube = FakeKube(virtual_service())
    recorder = EventRecorder(Refusing(), PLUGIN)
    p = ArgoPlugin(PLUGIN, kube, events=recorder)  # type: ignore[arg-type]
    with pytest.raises(CallError, match="not listed in managedRoutes"):
        p.handle("SetHeaderRoute", rollout(), {"setHeaderRoute": {**HEADER, "name": "nope"}})
    assert recorder.flush(10)
    assert recorder.dropped == 1


def test_an_aborted_rollout_reaches_stable_past_a_route_step() -> None:
    """Argo's abort: RemoveManagedRoutes, then the current step's SetHeaderRoute or
    SetMirrorRoute, then SetWeight(0); an error in between would hold the canary weight."""
    kube = FakeKube(virtual_service())
    events = Recorded()
    p = ArgoPlugin(PLUGIN, kube, events=events)  # type: ignore[arg-type]
    set_weight(p, rollout(), 30)
    p.handle("SetHeaderRoute", rollout(weights=30), {"setHeaderRoute": HEADER})
    bad = {"name": "unlisted", "match": HEADER["match"]}
    with pytest.raises(CallError):  # the step Argo stands on when the user aborts
        p.handle("SetHeaderRoute", rollout(weights=30), {"setHeaderRoute": bad})
    failed = len(events.warnings)
    stopped = rollout(weights=30)
    stopped["status"]["abort"] = True
    p.handle("RemoveManagedRoutes", stopped, {})  # the recorded route goes, the refused one
    assert route_names(kube) == ["primary"]  # was never written: nothing to remove
    writes = len(kube.writes)
    p.handle("SetHeaderRoute", stopped, {"setHeaderRoute": bad})
    p.handle("SetHeaderRoute", stopped, {"setHeaderRoute": HEADER})  # not brought back either
    p.handle("SetMirrorRoute", stopped, {"setMirrorRoute": {"name": "mirror", "match": []}})
    assert len(kube.writes) == writes and route_names(kube) == ["primary"]
    assert record(kube) is None and len(events.warnings) == failed
    set_weight(p, stopped, 0)
    assert weights(kube) == (0, 100)


# -- names from the Rollout and the calls (issue 13, part 2) ----------------------------------


def _canary(ro: dict[str, Any]) -> dict[str, Any]:
    return ro["spec"]["strategy"]["canary"]  # type: ignore[no-any-return]


def _section(ro: dict[str, Any]) -> dict[str, Any]:
    return _canary(ro)["trafficRouting"]["plugins"][PLUGIN]  # type: ignore[no-any-return]


_NEWLINE_CASES: list[tuple[str, Any, str, dict[str, Any], str]] = [
    ("name", lambda ro: ro["metadata"].update(name="web\n"), "SetWeight", {}, "rollout.metadata.name"),
    ("namespace", lambda ro: ro["metadata"].update(namespace="shop\n"), "SetWeight", {}, "rollout.metadata.namespace"),
    ("uid", lambda ro: ro["metadata"].update(uid="uid-1\n"), "SetWeight", {}, "rollout.metadata.uid"),
    ("canaryService", lambda ro: _canary(ro).update(canaryService="web-canary\n"), "SetWeight", {}, "canaryService"),
    ("stableService", lambda ro: _canary(ro).update(stableService="web-stable\n"), "SetWeight", {}, "stableService"),
    ("virtualService", lambda ro: _section(ro)["virtualService"].update(name="web\n"), "SetWeight", {}, "virtualService.name"),
    ("routes", lambda ro: _section(ro)["virtualService"].update(routes=["primary\n"]), "SetWeight", {}, "virtualService.routes[0]"),
    ("managedRoutes", lambda ro: _canary(ro)["trafficRouting"].update(managedRoutes=[{"name": "hdr\n"}]), "SetWeight", {}, "managedRoutes[0].name"),
    ("setHeaderRoute", None, "SetHeaderRoute", {"setHeaderRoute": {**HEADER, "name": "shadow\n"}}, "setHeaderRoute.name"),
    ("setMirrorRoute", None, "SetMirrorRoute", {"setMirrorRoute": {"name": "shadow\n", "match": [{"method": {"exact": "GET"}}]}}, "setMirrorRoute.name"),
    ("additionalDestinations", None, "SetWeight", {"additionalDestinations": [{"serviceName": "web-exp\n", "weight": 10}]}, "additionalDestinations[0].service"),
    ("canaryHash", None, "UpdateHash", {"canaryHash": "5f7d9c\n"}, "canary_hash"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "method", "args", "where"),
    [c[1:] for c in _NEWLINE_CASES],
    ids=[c[0] for c in _NEWLINE_CASES],
)
def test_a_name_with_a_trailing_newline_is_refused_on_the_argo_path(
    edit: Any, method: str, args: dict[str, Any], where: str
) -> None:
    """Names from the Rollout and the call's arguments reach objects, ledgers and the record:
    each is checked by the shared validators, the call fails with the field and the quoted
    value, the message stays one line (Argo records it as an event), nothing is written."""
    kube = FakeKube(virtual_service())
    before = copy.deepcopy(kube.objects)
    ro = rollout()
    if edit is not None:
        edit(ro)
    with pytest.raises(CallError) as info:
        plugin(kube).handle(method, ro, {"desiredWeight": 20, **args})
    text = str(info.value)
    assert where in text and "\\n'" in text, text
    assert "\n" not in text, text
    assert kube.writes == [] and kube.objects == before
