"""The transport's own rules, with a fake ApiClient (no server needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from routers.cluster import ApiStatus, Transport


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self._data = json.dumps(body).encode()

    def read(self) -> bytes:
        return self._data


class FakeClient:
    class configuration:
        verify_ssl = True
        host = "https://127.0.0.1:6443"

    def __init__(self, responses: list[FakeResponse]) -> None:
        self.responses = responses
        self.calls: list[tuple[str, str, Any]] = []
        self.timeouts: list[Any] = []

    def param_serialize(
        self, method: str, path: str, **kw: Any
    ) -> tuple[str, str, dict[str, str], Any, None]:
        return method, path, kw["header_params"], kw["body"], None

    def call_api(
        self, method: str, url: str, headers: Any, body: Any, _request_timeout: Any = None
    ) -> FakeResponse:
        self.calls.append((method, url, body))
        self.timeouts.append(_request_timeout)
        return self.responses.pop(0)


THROTTLED = {
    "kind": "Status",
    "code": 429,
    "reason": "TooManyRequests",
    "message": "slow down",
    "details": {"retryAfterSeconds": 2},
}


def test_429_is_retried_after_the_servers_delay() -> None:
    client = FakeClient([FakeResponse(429, THROTTLED), FakeResponse(200, {"ok": True})])
    slept: list[float] = []
    t = Transport(client, sleep=slept.append)  # type: ignore[arg-type]
    assert t.request("PATCH", "/api/v1/x", body=[{"op": "test", "path": "/a", "value": 1}]) == {
        "ok": True
    }
    assert slept == [2.0]
    assert len(client.calls) == 2
    assert client.calls[0][2] == [{"op": "test", "path": "/a", "value": 1}]  # a list stays a list


def test_429_gives_up_after_its_retries() -> None:
    client = FakeClient([FakeResponse(429, THROTTLED)] * 3)
    t = Transport(client, sleep=lambda _: None, throttle_retries=2)  # type: ignore[arg-type]
    with pytest.raises(ApiStatus) as info:
        t.request("GET", "/api/v1/x")
    assert info.value.code == 429


def test_status_fields_and_request_records() -> None:
    records: list[Any] = []
    status = {"kind": "Status", "code": 409, "reason": "Conflict", "message": "changed"}
    t = Transport(FakeClient([FakeResponse(409, status)]), on_request=records.append)  # type: ignore[arg-type]
    with pytest.raises(ApiStatus) as info:
        t.request("PATCH", "/p", body=[])
    assert (info.value.code, info.value.reason, info.value.message) == (409, "Conflict", "changed")
    (rec,) = records
    assert (rec.method, rec.status, rec.is_write) == ("PATCH", 409, True)


def test_known_absent_objects_are_not_read() -> None:
    from routers.engine import gather
    from routers.planning.objects import ObjectRef

    ref = ObjectRef("", "ConfigMap", "ns", "gone")

    class P:
        def targets(self, config: Any, live: Any) -> list[ObjectRef]:
            return [ref]

    class B:
        plugin = P()
        config = None

    reads: list[ObjectRef] = []
    live = gather([B()], lambda r: reads.append(r) or None, {ref: None})  # type: ignore[list-item,func-returns-value]
    assert reads == []
    assert live.absent == {ref}
    assert live.known() == {ref: None}


class RecordingTransport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[tuple[str, str]]]] = []

    def request(
        self, method: str, path: str, *, query: Any = (), body: Any = None, content_type: str = ""
    ) -> Any:
        self.calls.append((method, path, list(query)))
        if path == "/apis":
            return {"groups": []}
        if path == "/api/v1":
            return {"resources": [{"name": "configmaps", "kind": "ConfigMap", "namespaced": True}]}
        return {}


@pytest.mark.parametrize(
    ("ops", "strict"),
    [
        (
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
                {"op": "replace", "path": "/data/w", "value": "2"},
            ],
            False,
        ),
        ([{"op": "add", "path": "/data/new", "value": "x"}], True),
        ([{"op": "replace", "path": "/spec/http/0", "value": {"name": "r"}}], True),
    ],
)
def test_strict_field_validation_only_when_a_patch_adds_structure(
    ops: list[Any], strict: bool
) -> None:
    from routers.cluster import Kube
    from routers.planning.objects import ObjectRef

    t = RecordingTransport()
    Kube(t).json_patch(ObjectRef("", "ConfigMap", "ns", "c"), ops)  # type: ignore[arg-type]
    (_, _, query) = t.calls[-1]
    assert (("fieldValidation", "Strict") in query) is strict
    assert ("fieldManager", "canary-routers") in query


def test_is_transient() -> None:
    from routers.errors import (
        ApplyError,
        ConfigError,
        ConflictError,
        ForbiddenError,
        TargetNotFoundError,
        UnsupportedError,
        is_transient,
    )

    assert is_transient(ConflictError("x", 3, "409"))
    assert is_transient(TargetNotFoundError("gone"))
    assert is_transient(ApplyError("x", code=503, reason="", message=""))
    assert is_transient(ApplyError("x", code=0, reason="Unreachable", message=""))
    assert not is_transient(ApplyError("x", code=422, reason="Invalid", message=""))
    assert not is_transient(ForbiddenError("x", verb="patch", resource="r", message=""))
    assert not is_transient(ConfigError("bad"))
    assert not is_transient(UnsupportedError("p", "i", "r"))


def test_guards_on_the_wire_strict_sends_rv_only_relaxed_drops_only_rv() -> None:
    from routers.cluster import execute
    from routers.planning.objects import LiveObjects, ObjectRef
    from routers.planning.plan import Patch, Plan

    sent: list[Any] = []

    class Kube:
        def json_patch(self, ref: Any, ops: Any, *, dry_run: bool = False) -> dict[str, Any]:
            sent.append(list(ops))
            return {}

    ref = ObjectRef("", "ConfigMap", "ns", "c")
    ops = (
        {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "test", "path": "/spec/http/0/name", "value": "primary"},
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 20},
    )
    plan = Plan("p", (Patch(ref, ops, "weights"),))
    live = LiveObjects([(ref, {"metadata": {"resourceVersion": "7"}})])
    execute(Kube(), [plan], live)  # type: ignore[arg-type]
    execute(Kube(), [plan], live, relax_resource_version=True)  # type: ignore[arg-type]
    # Strict: the resourceVersion pins the whole object; the identity guard is implied.
    assert sent[0] == [ops[0], ops[2]]
    assert sent[1] == list(ops[1:])  # relaxed: identity guard kept, resourceVersion dropped


def test_every_request_carries_a_connect_and_a_read_timeout() -> None:
    from routers.cluster import DEFAULT_TIMEOUTS, Timeouts

    client = FakeClient([FakeResponse(200, {})] * 2)
    Transport(client).request("GET", "/api")  # type: ignore[arg-type]
    Transport(client, timeouts=Timeouts(connect=1, read=2)).request("GET", "/api")  # type: ignore[arg-type]
    assert client.timeouts == [(DEFAULT_TIMEOUTS.connect, DEFAULT_TIMEOUTS.read), (1, 2)]
    # A watch's client timeout outlives the server's own timeoutSeconds.
    assert DEFAULT_TIMEOUTS.watch[1] > DEFAULT_TIMEOUTS.watch_seconds
    with pytest.raises(ValueError, match="read"):
        Timeouts(read=0)


def test_a_silent_api_server_times_out_instead_of_hanging() -> None:
    """A real socket that accepts and never answers: the official client gives up after the
    read timeout and the error names the server. urllib3's hidden retries are off: a write is
    sent once (it may have been applied), a GET is repeated ``Timeouts.retries`` times,
    counted; the whole wait is bounded by the documented worst case."""
    import socket
    import time

    from kubernetes.client import ApiClient, Configuration

    from routers.cluster import Timeouts
    from tests.conftest import silent_server

    limits = Timeouts(connect=1.0, read=0.3, retries=2)
    for method, attempts in (("PATCH", 1), ("PUT", 1), ("GET", 3)):
        held: list[socket.socket] = []
        with silent_server(held) as port:
            cfg = Configuration(host=f"http://127.0.0.1:{port}")
            t = Transport(ApiClient(cfg), timeouts=limits)
            start = time.monotonic()
            with pytest.raises(ApiStatus) as info:
                t.request(method, "/api/v1/namespaces/x/configmaps/y", body=[])
            took = time.monotonic() - start
            reached = len(held)
        assert info.value.code == 0
        assert "cannot reach the API server at http://127.0.0.1:" in info.value.message
        assert "timed out" in info.value.message.lower()
        assert reached == attempts, (method, reached)
        assert t.retried == ({"read": attempts - 1} if attempts > 1 else {})
        # attempts * read timeout + backoff 0.5 + 1.0, and room for a busy machine
        assert took < attempts * 0.3 + 1.5 + 10, took
    assert "after 3 attempts" in info.value.message


def test_a_refused_connection_is_retried_for_any_method_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens: the request never reached a server, so even a write is repeated."""
    import socket

    from kubernetes.client import ApiClient, Configuration

    from routers.cluster import Timeouts

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    records: list[Any] = []
    slept: list[float] = []
    cfg = Configuration(host=f"http://127.0.0.1:{port}")
    t = Transport(
        ApiClient(cfg),
        timeouts=Timeouts(connect=1.0, read=1.0, retries=2),
        on_request=records.append,
        sleep=slept.append,
    )
    with caplog.at_level("WARNING", logger="routers.cluster"), pytest.raises(ApiStatus) as info:
        t.request("PATCH", "/api/v1/namespaces/x/configmaps/y", body=[])
    assert info.value.reason == "Unreachable"
    assert "after 3 attempts" in info.value.message
    assert [r.status for r in records] == [0, 0, 0]
    assert t.retried == {"connect": 2}
    assert slept == [0.5, 1.0]
    assert "retry 1 of 2" in caplog.text and "retry 2 of 2" in caplog.text


def test_the_official_client_keeps_no_retries_of_its_own() -> None:
    from kubernetes.client import ApiClient, Configuration

    client = ApiClient(Configuration(host="http://127.0.0.1:1"))
    Transport(client)
    assert client.configuration.retries is False
    assert client.rest_client.pool_manager.connection_pool_kw["retries"] is False


def test_request_timeout_like_kubectl() -> None:
    from routers.cluster import Timeouts

    assert Timeouts.for_requests(30).request == (10.0, 30)
    assert Timeouts.for_requests(2).request == (2, 2)
    with pytest.raises(ValueError, match="retries"):
        Timeouts(retries=-1)


def test_the_token_refresh_hook_runs_at_most_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client calls it before every request (re-resolving the proxy each time); the
    loaders refresh tokens minutes before they expire, so once a second is enough."""
    from kubernetes.client import ApiClient, Configuration

    from routers.cluster import _transport

    now = [100.0]
    monkeypatch.setattr(_transport, "_monotonic", lambda: now[0])
    cfg = Configuration(host="https://127.0.0.1:6443", api_key={"BearerToken": "t0"})
    calls: list[str] = []

    def refresh(c: Configuration) -> None:
        calls.append("refresh")
        c.api_key["BearerToken"] = f"t{len(calls)}"
        c.refresh_api_key_hook = refresh  # as the kubeconfig loader does on every refresh

    cfg.refresh_api_key_hook = refresh
    api = ApiClient(cfg)
    Transport(api)
    Transport(api)  # a second transport on the same client does not wrap the hook again
    for _ in range(50):
        assert cfg.get_api_key_with_prefix("BearerToken") == "t1"
    now[0] += 1.0
    assert cfg.get_api_key_with_prefix("BearerToken") == "t2"
    assert calls == ["refresh", "refresh"]
    api.close()  # type: ignore[no-untyped-call]
