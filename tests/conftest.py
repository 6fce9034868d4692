"""Shared fixtures: a registry with the example third-party plugin injected (no install needed)."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from routers import registry as registry_mod
from routers.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
THIRDPARTY = ROOT / "tests" / "fixtures" / "thirdparty"


@dataclass(frozen=True)
class FakeDist:
    name: str
    version: str


@dataclass(frozen=True)
class FakeEntryPoint:
    """Duck-typed importlib.metadata.EntryPoint, so tests can inject plugins without installs."""

    name: str
    value: str
    dist: FakeDist | None = None
    group: str = "routers.plugins"

    def load(self) -> Any:
        module, _, attr = self.value.partition(":")
        mod = __import__(module, fromlist=[attr] if attr else [])
        return getattr(mod, attr) if attr else mod


@contextmanager
def silent_server(held: list[socket.socket] | None = None) -> Iterator[int]:
    """A local port that accepts connections and never answers (a server that hangs); the
    accepted connections are appended to ``held`` (how many attempts reached it)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    server.settimeout(0.05)
    if held is None:
        held = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def entry(name: str, value: str, dist: str = "some-dist", version: str = "1.0") -> FakeEntryPoint:
    return FakeEntryPoint(name, value, FakeDist(dist, version))


@pytest.fixture
def thirdparty_path() -> Iterator[None]:
    sys.path.insert(0, str(THIRDPARTY))
    try:
        yield
    finally:
        sys.path.remove(str(THIRDPARTY))


def configmap_registry() -> Iterator[Registry]:
    """Only the example ConfigMap plugin, importable while the generator is alive."""
    sys.path.insert(0, str(THIRDPARTY))
    try:
        yield Registry(
            lambda: [
                entry(
                    "configmap",
                    "routers_example_configmap:ConfigMapPlugin",
                    "routers-example-configmap",
                    "0.3.0",
                )
            ],  # type: ignore[list-item]
            disabled=(),
        )
    finally:
        sys.path.remove(str(THIRDPARTY))


@pytest.fixture
def cm_registry(thirdparty_path: None) -> Registry:
    """Only the example ConfigMap plugin."""
    return Registry(
        lambda: [
            entry(
                "configmap",
                "routers_example_configmap:ConfigMapPlugin",
                "routers-example-configmap",
                "0.3.0",
            )
        ],  # type: ignore[list-item]
        disabled=(),
    )


@pytest.fixture
def default_registry_is(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Replace the process-wide registry the CLI uses."""

    def set_registry(reg: Registry) -> None:
        monkeypatch.setattr(registry_mod, "_default", reg)

    return set_registry


def eventually(what: str, pred: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``pred`` until it is truthy (and return it); fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
