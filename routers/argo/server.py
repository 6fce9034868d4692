"""The JSON-lines protocol between the Go bridge (``argo/``) and this process.

One JSON object per line, UTF-8. This process writes first, once ready::

    {"hello": {"protocol": 1, "version": "0.1.0", "plugin": "canary-routers/istio", "pid": 42}}

then answers each request line with one response line carrying the same ``id``, in any order
(calls for different Rollouts run concurrently; calls for one Rollout one after another)::

    -> {"id": 7, "method": "SetWeight", "rollout": {...}, "args": {"desiredWeight": 20,
        "additionalDestinations": []}}
    <- {"id": 7, "result": null}
    <- {"id": 8, "error": "canary-routers/nginx: Rollout ns/web: SetMirrorRoute: ..."}

``rollout`` is the Rollout exactly as Argo passes it (JSON of ``v1alpha1.Rollout``); ``args``
uses Argo's field names. ``Ping`` is answered at once by the reading thread (the bridge's
liveness probe after a timed-out call). End of input (the bridge is gone) ends the process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, BinaryIO

from routers.errors import RoutersError

__all__ = [
    "DRAIN_SECONDS",
    "EXIT_CALLS_LEFT",
    "PROTOCOL_VERSION",
    "Handler",
    "log_handler",
    "serve",
]

PROTOCOL_VERSION = 1

DRAIN_SECONDS = 30.0
"""How long calls still running at end of input may take to finish (the bridge that sent them
is gone or restarting; it stops the old process after a few seconds anyway)."""

EXIT_CALLS_LEFT = 3
"""``serve``'s result when calls were still running after the drain: the caller should end the
process without joining their threads (``os._exit``); a later call resumes from the record."""

log = logging.getLogger("routers.argo")

Handler = Callable[[str, Any, Mapping[str, Any]], Any]
"""(method, rollout, args) -> result; raises with the message the caller should see."""


_HCLOG_LEVELS = {"WARNING": "WARN", "CRITICAL": "ERROR"}


class _HclogFormatter(logging.Formatter):
    """``[LEVEL] message``: go-plugin's client reads the level from this prefix (the
    controller's log adds time and plugin name itself)."""

    def format(self, record: logging.LogRecord) -> str:
        level = _HCLOG_LEVELS.get(record.levelname, record.levelname)
        return f"[{level}] {super().format(record)}"


def log_handler(plugin: str, log_format: str = "text") -> logging.Handler:
    """A stderr handler for ``routers argo-plugin`` (stdout carries the protocol)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "hclog":
        handler.setFormatter(_HclogFormatter("routers argo-plugin: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s %(levelname)s routers argo-plugin [{plugin}] %(message)s"
            )
        )
    return handler


class _Writer:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, message: Mapping[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
        with self._lock:
            try:
                self._out.write(line)
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the bridge is gone; the read loop ends on EOF


def _answer(writer: _Writer, handler: Handler, message: Mapping[str, Any]) -> None:
    rid = message.get("id")
    method = str(message.get("method"))
    args = message.get("args")
    try:
        result = handler(method, message.get("rollout"), args if isinstance(args, Mapping) else {})
    except Exception as exc:
        if not isinstance(exc, RoutersError):
            log.error("%s failed unexpectedly:\n%s", method, traceback.format_exc())
            text = f"canary-routers internal error in {method}: {type(exc).__name__}: {exc}"
        else:
            text = str(exc)
        writer.send({"id": rid, "error": text})
        return
    writer.send({"id": rid, "result": result})


def serve(
    handler: Handler,
    *,
    plugin: str,
    version: str,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    workers: int = 8,
    drain: float = DRAIN_SECONDS,
) -> int:
    """Serve requests until end of input; return the exit code (:data:`EXIT_CALLS_LEFT` when
    calls were still running ``drain`` seconds after it).

    With the real stdout, the protocol gets a private copy of fd 1 and fd 1 itself is pointed
    at stderr, so a stray ``print`` from any library cannot corrupt the stream.
    """
    if stdout is None:
        stdout = os.fdopen(os.dup(1), "wb", buffering=0)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    reader = stdin if stdin is not None else sys.stdin.buffer
    writer = _Writer(stdout)
    writer.send(
        {
            "hello": {
                "protocol": PROTOCOL_VERSION,
                "version": version,
                "plugin": plugin,
                "pid": os.getpid(),
            }
        }
    )
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="argo-call")
    calls: set[Future[None]] = set()
    try:
        for raw in reader:
            line = raw.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                log.error("ignoring a line that is not JSON: %.200r", line)
                continue
            if not isinstance(message, dict) or "id" not in message:
                log.error("ignoring a message without an id: %.200r", line)
                continue
            if message.get("method") == "Ping":
                writer.send({"id": message["id"], "result": "pong"})
                continue
            calls = {c for c in calls if not c.done()}
            calls.add(pool.submit(_answer, writer, handler, message))
    finally:
        # Nobody reads our answers any more: drop queued calls, give running ones `drain`
        # seconds (each API request in them is bounded by the transport's timeouts).
        pool.shutdown(wait=False, cancel_futures=True)
        _, left = wait(calls, timeout=drain)
    if left:
        log.error(
            "%d call(s) still running %gs after the end of input; leaving them (a later call "
            "resumes from the record written ahead)",
            len(left),
            drain,
        )
        return EXIT_CALLS_LEFT
    return 0
