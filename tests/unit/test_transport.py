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

    def param_serialize(
        self, method: str, path: str, **kw: Any
    ) -> tuple[str, str, dict[str, str], Any, None]:
        return method, path, kw["header_params"], kw["body"], None

    def call_api(
        self, method: str, url: str, headers: Any, body: Any, _request_timeout: Any = None
    ) -> FakeResponse:
        self.calls.append((method, url, body))
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
