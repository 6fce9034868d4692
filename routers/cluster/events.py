"""Kubernetes Events about objects we act for (``kubectl describe`` shows them).

Argo Rollouts records an Event for a failed SetWeight or VerifyWeight of a traffic-router plugin,
but for a failed SetHeaderRoute, SetMirrorRoute, RemoveManagedRoutes or UpdateHash only a log
line: the user sees nothing on the Rollout. The Argo plugin records those itself, through
:class:`EventRecorder`.

Best effort by design: events are written by one background thread from a bounded queue, each
request with short timeouts and no retries, so a failing call is answered at once and an event
that cannot be written is logged and dropped, never raised. Repeats are folded as client-go's
recorder folds them: the same object, type, reason and message increments ``count`` and
``lastTimestamp`` of one Event. The Event's name is derived from those fields, so a restarted
process continues counting on the same Event instead of starting a new one.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote

from routers.cluster._transport import DEFAULT_TIMEOUTS, ApiStatus, Timeouts

__all__ = ["EVENT_MESSAGE_LIMIT", "EventRecorder", "InvolvedObject", "event_timeouts"]

log = logging.getLogger("routers.cluster")

EVENT_MESSAGE_LIMIT = 1024
"""Characters of a message kept (the events.k8s.io API's limit for ``note``)."""

_CACHE_ENTRIES = 4096  # client-go's maxLruCacheEntries
_IDLE_SECONDS = 60.0  # the writing thread ends after this long without events


class _Requester(Protocol):
    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        timeouts: Timeouts | None = None,
    ) -> Any: ...


@dataclass(frozen=True)
class InvolvedObject:
    """The object an Event is about (``involvedObject``)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None = None

    def reference(self) -> dict[str, str]:
        ref = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
        }
        if self.uid:
            ref["uid"] = self.uid
        return ref


def event_timeouts(base: Timeouts = DEFAULT_TIMEOUTS) -> Timeouts:
    """The transport's limits, capped at 5 s connect and 10 s read, without retries: an event
    is worth much less than the call it reports."""
    return Timeouts(
        connect=min(base.connect, 5.0),
        read=min(base.read, 10.0),
        watch_seconds=base.watch_seconds,
        watch_slack=base.watch_slack,
        retries=0,
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _clip(message: str) -> str:
    if len(message) <= EVENT_MESSAGE_LIMIT:
        return message
    return message[: EVENT_MESSAGE_LIMIT - 1] + "…"


@dataclass(frozen=True)
class _Pending:
    obj: InvolvedObject
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


class EventRecorder:
    """Records Events like client-go's recorder, from a background thread.

    ``transport`` is a :class:`~routers.cluster.Transport` (``kube.transport``); ``component``
    is shown as the Event's source (``kubectl describe``: From).
    """

    def __init__(
        self,
        transport: _Requester,
        component: str,
        *,
        timeouts: Timeouts | None = None,
        host: str | None = None,
        backlog: int = 256,
        clock: Callable[[], str] = _now,
    ) -> None:
        self.transport = transport
        self.component = component
        self.timeouts = timeouts or event_timeouts(getattr(transport, "timeouts", DEFAULT_TIMEOUTS))
        self.host = (host if host is not None else socket.gethostname())[:128]
        self.clock = clock
        self.dropped = 0
        """Events not written (queue full, or the API server refused or did not answer)."""
        self._queue: queue.Queue[_Pending] = queue.Queue(maxsize=backlog)
        self._counts: OrderedDict[str, int] = OrderedDict()  # event name -> count written
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self._thread: threading.Thread | None = None

    # -- the caller's side ---------------------------------------------------------------------

    def warning(self, obj: InvolvedObject, reason: str, message: str) -> None:
        """Queue a Warning Event; never blocks, never raises."""
        self._put(_Pending(obj, "Warning", reason, _clip(message)))

    def _put(self, pending: _Pending) -> None:
        with self._lock:
            try:
                self._queue.put_nowait(pending)
            except queue.Full:
                self.dropped += 1
                log.warning(
                    "event %s on %s/%s dropped: %d events queued already",
                    pending.reason,
                    pending.obj.namespace,
                    pending.obj.name,
                    self._queue.maxsize,
                )
                return
            self._busy += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="event-recorder", daemon=True
                )
                self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event is written or dropped; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    # -- the writing thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                pending = self._queue.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:  # _put starts a new thread once this one is gone
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            try:
                self._write(pending)
            except ApiStatus as exc:
                self._drop()
                log.warning(
                    "could not record the %s event on %s %s/%s: %s",
                    pending.reason,
                    pending.obj.kind,
                    pending.obj.namespace,
                    pending.obj.name,
                    exc,
                )
            except Exception:  # a bug here must not end the thread: events are best effort
                self._drop()
                log.exception("recording the %s event failed unexpectedly", pending.reason)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def name(self, pending: _Pending) -> str:
        """One name per (object, type, reason, message), as client-go's aggregation key."""
        o = pending.obj
        fields = [o.api_version, o.kind, o.namespace, o.name, o.uid or "", pending.type]
        key = "\n".join([*fields, self.component, pending.reason, pending.message])
        return f"{o.name[:236]}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def _write(self, pending: _Pending) -> None:
        name = self.name(pending)
        base = f"/api/v1/namespaces/{quote(pending.obj.namespace, safe='')}/events"
        count = self._counts.get(name)
        if count is not None:
            try:
                self._bump(base, name, count + 1)
                return
            except ApiStatus as exc:
                if exc.code != 404:
                    raise
                # expired (the API server keeps events for an hour): start a new one
        now = self.clock()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": pending.obj.namespace},
            "involvedObject": pending.obj.reference(),
            "type": pending.type,
            "reason": pending.reason,
            "message": pending.message,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.transport.request("POST", base, body=body, timeouts=self.timeouts)
            self._remember(name, 1)
        except ApiStatus as exc:
            if exc.code != 409:
                raise
            # Written before this process started (a restart): continue its count.
            current = self.transport.request(
                "GET", f"{base}/{quote(name, safe='')}", timeouts=self.timeouts
            )
            self._bump(base, name, int((current or {}).get("count") or 1) + 1)

    def _bump(self, base: str, name: str, count: int) -> None:
        self.transport.request(
            "PATCH",
            f"{base}/{quote(name, safe='')}",
            body={"count": count, "lastTimestamp": self.clock()},
            content_type="application/merge-patch+json",
            timeouts=self.timeouts,
        )
        self._remember(name, count)

    def _remember(self, name: str, count: int) -> None:
        self._counts[name] = count
        self._counts.move_to_end(name)
        while len(self._counts) > _CACHE_ENTRIES:
            self._counts.popitem(last=False)
