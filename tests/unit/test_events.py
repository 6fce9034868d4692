"""Events on the objects we act for: folded like client-go's recorder, best effort, bounded."""

from __future__ import annotations

import copy
import socket
import threading
from typing import Any

import pytest

from routers.cluster import ApiStatus, EventRecorder, InvolvedObject, Timeouts, Transport
from routers.cluster.events import EVENT_MESSAGE_LIMIT, event_timeouts

ROLLOUT = InvolvedObject("argoproj.io/v1alpha1", "Rollout", "shop", "web", "uid-1")
BASE = "/api/v1/namespaces/shop/events"


class FakeEvents:
    """The events of one namespace, with the API server's answers (201/409/404)."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Timeouts | None]] = []
        self.fail: ApiStatus | None = None
        self.gate: threading.Event | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        timeouts: Timeouts | None = None,
    ) -> Any:
        if self.gate is not None:
            assert self.gate.wait(10)
        self.requests.append((method, path, timeouts))
        if self.fail is not None:
            raise self.fail
        if method == "POST":
            assert path == BASE
            name = body["metadata"]["name"]
            if name in self.events:
                raise ApiStatus(409, "AlreadyExists", f"events {name!r} already exists")
            self.events[name] = copy.deepcopy(body)
            return body
        name = path.rsplit("/", 1)[-1]
        if name not in self.events:
            raise ApiStatus(404, "NotFound", f"events {name!r} not found")
        if method == "GET":
            return copy.deepcopy(self.events[name])
        assert method == "PATCH" and content_type == "application/merge-patch+json"
        self.events[name].update(body)
        return self.events[name]


def recorder(fake: FakeEvents, **kw: Any) -> EventRecorder:
    ticks = iter(f"2026-12-06T10:00:{s:02d}Z" for s in range(60))
    return EventRecorder(fake, "canary-routers/smi", host="node-1", clock=lambda: next(ticks), **kw)


def only(fake: FakeEvents) -> dict[str, Any]:
    (event,) = fake.events.values()
    return event


def test_a_repeated_warning_counts_on_one_event() -> None:
    fake = FakeEvents()
    rec = recorder(fake)
    for _ in range(3):
        rec.warning(ROLLOUT, "CanaryRoutersError", "mirroring is not supported")
    assert rec.flush(10)
    event = only(fake)
    assert event["count"] == 3
    assert event["firstTimestamp"] == "2026-12-06T10:00:00Z"
    assert event["lastTimestamp"] == "2026-12-06T10:00:02Z"
    assert event["type"] == "Warning" and event["reason"] == "CanaryRoutersError"
    assert event["message"] == "mirroring is not supported"
    assert event["involvedObject"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "namespace": "shop",
        "name": "web",
        "uid": "uid-1",
    }
    assert event["source"] == {"component": "canary-routers/smi", "host": "node-1"}
    assert event["metadata"]["name"].startswith("web.")
    assert [m for m, _, _ in fake.requests] == ["POST", "PATCH", "PATCH"]
    # Another message, or another object, is another event.
    rec.warning(ROLLOUT, "CanaryRoutersError", "header routes only at weight 0")
    other = InvolvedObject("argoproj.io/v1alpha1", "Rollout", "shop", "web", "uid-2")
    rec.warning(other, "CanaryRoutersError", "mirroring is not supported")
    assert rec.flush(10)
    assert sorted(e["count"] for e in fake.events.values()) == [1, 1, 3]


def test_a_restarted_process_continues_the_count_and_an_expired_event_starts_again() -> None:
    fake = FakeEvents()
    first = recorder(fake)
    first.warning(ROLLOUT, "CanaryRoutersError", "boom")
    first.warning(ROLLOUT, "CanaryRoutersError", "boom")
    assert first.flush(10)
    again = recorder(fake)  # nothing cached: the create answers 409, the count goes on
    again.warning(ROLLOUT, "CanaryRoutersError", "boom")
    assert again.flush(10)
    assert only(fake)["count"] == 3
    assert [m for m, _, _ in fake.requests[-3:]] == ["POST", "GET", "PATCH"]
    fake.events.clear()  # the API server's TTL removed it
    again.warning(ROLLOUT, "CanaryRoutersError", "boom")
    assert again.flush(10)
    assert only(fake)["count"] == 1


def test_writes_are_bounded_and_never_raise() -> None:
    fake = FakeEvents()
    rec = recorder(fake, timeouts=None)
    fake.fail = ApiStatus(403, "Forbidden", 'cannot create resource "events"')
    rec.warning(ROLLOUT, "CanaryRoutersError", "boom")  # does not raise
    assert rec.flush(10)
    assert rec.dropped == 1 and fake.events == {}
    limits = fake.requests[0][2]
    assert limits == event_timeouts() and limits.retries == 0
    assert limits.connect <= 5 and limits.read <= 10
    # The caller is never held up: a full queue drops the event at once.
    fake.fail, fake.gate = None, threading.Event()
    small = recorder(fake, backlog=2)
    for i in range(5):
        small.warning(ROLLOUT, "CanaryRoutersError", f"message {i}")
    assert small.dropped >= 2
    assert not small.flush(0.05)
    fake.gate.set()
    assert small.flush(10)
    assert len(fake.events) == 5 - small.dropped


def test_long_messages_are_clipped() -> None:
    fake = FakeEvents()
    rec = recorder(fake)
    rec.warning(ROLLOUT, "CanaryRoutersError", "x" * 5000)
    assert rec.flush(10)
    message = only(fake)["message"]
    assert len(message) == EVENT_MESSAGE_LIMIT and message.endswith("…")


def test_an_unreachable_api_server_costs_one_attempt() -> None:
    """Through the real transport: the event's own timeouts, no retries, nothing raised."""
    from kubernetes.client import ApiClient, Configuration

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    records: list[Any] = []
    transport = Transport(
        ApiClient(Configuration(host=f"http://127.0.0.1:{port}")),
        timeouts=Timeouts(connect=1.0, read=1.0, retries=2),
        on_request=records.append,
    )
    rec = EventRecorder(transport, "canary-routers/istio")
    assert rec.timeouts == Timeouts(connect=1.0, read=1.0, retries=0)
    rec.warning(ROLLOUT, "CanaryRoutersError", "boom")
    assert rec.flush(30)
    assert rec.dropped == 1
    assert [(r.method, r.status) for r in records] == [("POST", 0)]
    assert transport.retried == {}


@pytest.mark.parametrize("events", [True, False])
def test_rbac_grants_the_event_writes(events: bool) -> None:
    from routers.cluster import rbac_manifests
    from routers.model import RoutingConfig

    config = RoutingConfig.parse(
        {
            "stableService": "web-stable",
            "canaryService": "web-canary",
            "plugins": {"istio": {"virtualService": {"name": "web"}}},
        }
    )
    (role,) = [m for m in rbac_manifests(config, events=events) if m["kind"] == "Role"]
    rule = {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "get", "patch"]}
    assert (rule in role["rules"]) is events


def test_the_writing_thread_ends_when_idle_and_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from routers.cluster import events as module

    monkeypatch.setattr(module, "_IDLE_SECONDS", 0.05)
    fake = FakeEvents()
    rec = recorder(fake)
    rec.warning(ROLLOUT, "CanaryRoutersError", "boom")
    assert rec.flush(10)
    deadline = time.monotonic() + 10
    while rec._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec._thread is None  # no thread waits forever for events
    rec.warning(ROLLOUT, "CanaryRoutersError", "boom")
    assert rec.flush(10)
    assert only(fake)["count"] == 2
