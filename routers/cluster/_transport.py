"""HTTP to the API server through the official client's transport (``ApiClient``).

We use the client's low-level path (``param_serialize`` + ``call_api``): its auth, TLS and proxy
handling, but our own JSON in and out, so live objects stay plain dicts (the generated pydantic
models of kubernetes 37.x reject fields they do not know). Every request passes one hook, which
is how tests and benchmarks count requests and bytes.

Every request has a connect and a read timeout (:class:`Timeouts`, defaults in
:data:`DEFAULT_TIMEOUTS`): a controller must never hang on an API server that stopped answering.
urllib3's own retries (by default three, hidden, each with the full timeout) are switched off in
the client; failed connections are retried here instead, a bounded number of times, by
client-go's rules, counted (:attr:`Transport.retried`) and logged.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

__all__ = ["DEFAULT_TIMEOUTS", "ApiStatus", "RequestRecord", "Timeouts", "Transport"]

log = logging.getLogger("routers.cluster")


@dataclass(frozen=True)
class Timeouts:
    """Client-side limits of every API server call, in one place (requests and watches).

    ``connect`` bounds the TCP connect (and TLS handshake); ``read`` bounds each wait for bytes
    of an answer. kube-apiserver ends a non-watch request itself after 60 s (its
    ``--request-timeout``), so a read that waits longer than that means the server or the path
    to it is gone. A watch is ended by the server after ``watch_seconds`` (its
    ``timeoutSeconds``); the client gives it ``watch_slack`` more before calling the stream
    dead, since a healthy watch may be silent for its whole life.

    ``retries`` bounds how often a request whose connection failed is repeated, as client-go
    does: any request that never reached the server (refused, connect timeout), and a GET also
    after a read timeout or a dropped connection (a write that may have been applied is not
    sent twice). The worst case of one GET is ``(retries + 1) * (connect + read)`` seconds plus
    the backoff between attempts (0.5 s, doubling, at most 4 s).
    """

    connect: float = 10.0
    read: float = 65.0
    watch_seconds: int = 290
    watch_slack: float = 30.0
    retries: int = 2

    def __post_init__(self) -> None:
        for name in ("connect", "read", "watch_seconds", "watch_slack"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Timeouts.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.retries <= 10:
            raise ValueError(f"Timeouts.retries must be 0..10, got {self.retries!r}")

    @classmethod
    def for_requests(cls, seconds: float) -> Timeouts:
        """One request may take at most ``seconds`` to connect and at most ``seconds`` per
        read (kubectl's ``--request-timeout``); the connect part is capped at the default."""
        return cls(connect=min(seconds, cls.connect), read=seconds)

    @property
    def request(self) -> tuple[float, float]:
        """``_request_timeout`` of a plain request: ``(connect, read)``."""
        return (self.connect, self.read)

    @property
    def watch(self) -> tuple[float, float]:
        """``_request_timeout`` of a watch with ``timeoutSeconds=watch_seconds``."""
        return self.watch_for(self.watch_seconds)

    def watch_for(self, seconds: float) -> tuple[float, float]:
        """``_request_timeout`` of a watch the server ends after ``seconds``."""
        return (self.connect, seconds + self.watch_slack)


DEFAULT_TIMEOUTS = Timeouts()


@dataclass(frozen=True)
class RequestRecord:
    method: str
    """The HTTP method, or ``WATCH`` for a watch stream (a GET whose response is a stream)."""
    path: str
    status: int
    request_bytes: int
    response_bytes: int

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


class ApiStatus(Exception):
    """A non-2xx answer, with the Kubernetes Status fields."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}
        super().__init__(f"{code} {reason}: {message}")


class Transport:
    def __init__(
        self,
        api_client: ApiClient,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        on_request: Callable[[RequestRecord], None] | None = None,
        throttle_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_client = api_client
        self.timeouts = timeouts
        _no_hidden_retries(api_client)
        _throttle_token_refresh(api_client.configuration)
        self.retried: Counter[str] = Counter()
        """Connection-level retries so far, by reason (``connect``, ``read``)."""
        if not api_client.configuration.verify_ssl:
            # The kubeconfig chose insecure-skip-tls-verify; like kubectl, do not warn per request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._hooks: list[Callable[[RequestRecord], None]] = [on_request] if on_request else []
        self.throttle_retries = throttle_retries
        self.sleep = sleep
        self._lock = threading.Lock()

    def add_hook(self, hook: Callable[[RequestRecord], None]) -> None:
        with self._lock:
            self._hooks.append(hook)

    def remove_hook(self, hook: Callable[[RequestRecord], None]) -> None:
        with self._lock:
            self._hooks.remove(hook)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeouts: Timeouts | None = None,
    ) -> Any:
        """One API call. A 429 (API Priority and Fairness throttling) was not processed by the
        server, so it is retried after the server's ``retryAfterSeconds``, as client-go does; a
        failed connection is retried by :class:`Timeouts`' rules. ``timeouts`` replaces the
        transport's own for this call (e.g. shorter ones for best-effort writes)."""
        limits = timeouts or self.timeouts
        throttled = failed = 0
        while True:
            try:
                return self._request_once(method, path, query, body, content_type, limits)
            except ApiStatus as exc:
                if exc.code != 429 or throttled == self.throttle_retries:
                    raise
                throttled += 1
                after = (exc.details or {}).get("retryAfterSeconds")
                self.sleep(
                    min(
                        float(after) if isinstance(after, (int, float)) and after > 0 else 1.0, 10.0
                    )
                )
            except _ConnectionFailed as exc:
                kind = "connect" if not exc.sent else "read"
                retry = failed < limits.retries and (not exc.sent or method == "GET")
                if not retry:
                    tries = f" after {failed + 1} attempts" if failed else ""
                    raise ApiStatus(
                        0, "Unreachable", f"cannot reach the API server at {exc.host}{tries}: {exc}"
                    ) from None
                failed += 1
                with self._lock:
                    self.retried[kind] += 1
                delay = min(0.5 * 2 ** (failed - 1), 4.0)
                log.warning(
                    "%s %s: %s; retry %d of %d in %.1fs",
                    method,
                    path,
                    exc,
                    failed,
                    limits.retries,
                    delay,
                )
                self.sleep(delay)

    def _request_once(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        body: Any,
        content_type: str,
        timeouts: Timeouts,
    ) -> Any:
        # The client serialises the body itself (json.dumps); a JSON patch must stay a list, or
        # the client silently switches the content type to strategic merge. Its size is only
        # worth a second serialisation when a hook counts it.
        sent = 0 if body is None or not self._hooks else len(json.dumps(body).encode())
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method_, url, header_params, serialized, _ = self.api_client.param_serialize(
            method,
            path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self.api_client.call_api(
                method_, url, header_params, serialized, _request_timeout=timeouts.request
            )
            data = resp.read() or b""  # type: ignore[no-untyped-call]
            status = int(resp.status)
        except ApiException as exc:  # raised for e.g. 429 with Retry-After, or TLS errors
            data = (exc.body or "").encode() if isinstance(exc.body, str) else (exc.body or b"")
            status = int(exc.status or 0)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._record(RequestRecord(method, path, 0, sent, 0))
            raise _ConnectionFailed(exc, self.api_client.configuration.host) from None
        self._record(RequestRecord(method, path, status, sent, len(data)))
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        if not 200 <= status <= 299:
            raise _status_error(status, text)
        return json.loads(text) if text else None

    def open_stream(self, path: str, *, query: Sequence[tuple[str, str]] = (), seconds: int) -> Any:
        """A watch: a GET with ``timeoutSeconds=seconds`` whose body is read as a stream (the
        unread urllib3 response, which the caller must close). Each wait for the next bytes
        is bounded by ``seconds`` plus ``Timeouts.watch_slack``: a watch silent for longer than
        the server's own limit has a dead connection, not a quiet one."""
        headers = {"Accept": "application/json"}
        method_, url, header_params, _, _ = self.api_client.param_serialize(
            "GET",
            path,
            query_params=[*query, ("timeoutSeconds", str(seconds))],
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self.api_client.call_api(
                method_,
                url,
                header_params,
                None,
                _request_timeout=self.timeouts.watch_for(seconds),
            )
        except ApiException as exc:
            body = exc.body if isinstance(exc.body, str) else (exc.body or b"").decode()
            self._record(RequestRecord("WATCH", path, int(exc.status or 0), 0, len(body)))
            raise _status_error(int(exc.status or 0), body) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._record(RequestRecord("WATCH", path, 0, 0, 0))
            reason = getattr(exc, "reason", None) or exc
            host = self.api_client.configuration.host
            raise ApiStatus(
                0, "Unreachable", f"cannot reach the API server at {host}: {reason}"
            ) from None
        raw = resp.response
        status = int(resp.status)
        self._record(RequestRecord("WATCH", path, status, 0, 0))
        if not 200 <= status <= 299:
            text = (raw.data or b"").decode("utf-8", "replace")
            raw.release_conn()
            raise _status_error(status, text)
        return raw

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            hooks = list(self._hooks)
        for hook in hooks:
            hook(rec)


class _ConnectionFailed(Exception):
    """No answer: ``sent`` is False when the request provably never reached the server."""

    def __init__(self, exc: BaseException, host: str) -> None:
        if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
            exc = exc.reason  # urllib3 retries were on after all (a client configured later)
        self.host = host
        self.sent = not isinstance(
            exc, (urllib3.exceptions.ConnectTimeoutError, ConnectionRefusedError)
        )
        super().__init__(getattr(exc, "reason", None) or exc)


TOKEN_REFRESH_SECONDS = 1.0


def _throttle_token_refresh(configuration: Any) -> None:
    """Call the client's token-refresh hook at most once per second per configuration.

    The kubeconfig and in-cluster loaders install a hook the client calls before every request;
    each call also re-resolves the proxy from the environment (about a tenth of a small PATCH's
    client CPU). Both loaders refresh a token well before it expires (kubeconfig 5 min early,
    in-cluster every minute), so a hook called once a second never lets an expired one out.
    """
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is None or getattr(hook, "throttled_by_routers", False):
        return
    lock = threading.Lock()
    last: dict[int, float] = {}
    inner = [hook]

    def throttled(cfg: Any) -> None:
        now = _monotonic()
        with lock:
            if now - last.get(id(cfg), -math.inf) < TOKEN_REFRESH_SECONDS:
                return
            last[id(cfg)] = now
            refresh = inner[0]
        refresh(cfg)
        # The kubeconfig loader installs a new hook on every refresh: keep it behind this one.
        again = getattr(cfg, "refresh_api_key_hook", None)
        if again is not None and again is not throttled:
            with lock:
                inner[0] = again
            cfg.refresh_api_key_hook = throttled

    throttled.throttled_by_routers = True  # type: ignore[attr-defined]
    configuration.refresh_api_key_hook = throttled


_monotonic = time.monotonic


def _no_hidden_retries(api_client: ApiClient) -> None:
    """Switch urllib3's retries off in the client: by default it repeats a failed request three
    times, each with the full timeout, uncounted, and a write after a read timeout too."""
    configuration = api_client.configuration
    configuration.retries = False
    pools = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    if pools is not None:  # the pool manager was built with the old setting: update it
        pools.connection_pool_kw["retries"] = False
        pools.clear()


def _status_error(code: int, text: str) -> ApiStatus:
    try:
        status = json.loads(text)
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        return ApiStatus(
            code,
            str(status.get("reason") or ""),
            str(status.get("message") or ""),
            status.get("details"),
        )
    return ApiStatus(code, "", text.strip()[:500] or "no response body (connection failed?)")
