"""HTTP to the API server through the official client's transport (``ApiClient``).

We use the client's low-level path (``param_serialize`` + ``call_api``): its auth, TLS and proxy
handling, but our own JSON in and out, so live objects stay plain dicts (the generated pydantic
models of kubernetes 37.x reject fields they do not know). Every request passes one hook, which
is how tests and benchmarks count requests and bytes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

__all__ = ["ApiStatus", "RequestRecord", "Transport"]


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
        timeout: float = 30.0,
        on_request: Callable[[RequestRecord], None] | None = None,
        throttle_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_client = api_client
        self.timeout = timeout
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
    ) -> Any:
        """One API call. A 429 (API Priority and Fairness throttling) was not processed by the
        server, so it is retried after the server's ``retryAfterSeconds``, as client-go does."""
        for attempt in range(self.throttle_retries + 1):
            try:
                return self._request_once(method, path, query, body, content_type)
            except ApiStatus as exc:
                if exc.code != 429 or attempt == self.throttle_retries:
                    raise
                after = (exc.details or {}).get("retryAfterSeconds")
                self.sleep(
                    min(
                        float(after) if isinstance(after, (int, float)) and after > 0 else 1.0, 10.0
                    )
                )
        raise AssertionError("unreachable")

    def _request_once(
        self, method: str, path: str, query: Sequence[tuple[str, str]], body: Any, content_type: str
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
                method_, url, header_params, serialized, _request_timeout=self.timeout
            )
            data = resp.read() or b""  # type: ignore[no-untyped-call]
            status = int(resp.status)
        except ApiException as exc:  # raised for e.g. 429 with Retry-After, or connection errors
            data = (exc.body or "").encode() if isinstance(exc.body, str) else (exc.body or b"")
            status = int(exc.status or 0)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._record(RequestRecord(method, path, 0, sent, 0))
            reason = getattr(exc, "reason", None) or exc
            host = self.api_client.configuration.host
            raise ApiStatus(
                0, "Unreachable", f"cannot reach the API server at {host}: {reason}"
            ) from None
        self._record(RequestRecord(method, path, status, sent, len(data)))
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        if not 200 <= status <= 299:
            raise _status_error(status, text)
        return json.loads(text) if text else None

    def open_stream(
        self, path: str, *, query: Sequence[tuple[str, str]] = (), read_timeout: float
    ) -> Any:
        """A GET whose body is read as a stream (a watch): the unread urllib3 response, which
        the caller must close. ``read_timeout`` bounds each wait for the next bytes."""
        headers = {"Accept": "application/json"}
        method_, url, header_params, _, _ = self.api_client.param_serialize(
            "GET",
            path,
            query_params=list(query),
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self.api_client.call_api(
                method_, url, header_params, None, _request_timeout=(self.timeout, read_timeout)
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
