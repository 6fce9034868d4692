"""pytest fixtures for the real local control plane (see e2e/cluster.py).

    def test_something(control_plane):
        cp = control_plane(("istio",))           # one plane per CRD-set tuple per session
        ns = cp.new_namespace()
        mark = cp.audit_mark()
        ...
        assert cp.write_requests(since=mark, user="admin") == []

If the binaries (or CRDs) cannot be built/fetched, tests using these fixtures FAIL when
CI=true and are skipped (with the reason) otherwise. A plane that was built but fails to
start is always an error.

Binaries are built (or found in the cache) once, right after collection and before the first
test starts, so a cold build never counts against a test's own timeout: a timeout measures the
test. Figures the tests report (``e2e._report``) are printed in the terminal summary.

Env: ROUTERS_E2E_MAX_PLANES (default 4) bounds how many planes run at once in a session (the
least recently used one is stopped; 2 cores); ROUTERS_E2E_BIN_DIR / ROUTERS_E2E_CRDS_DIR /
ROUTERS_E2E_CACHE / ROUTERS_E2E_TRAEFIK are honoured by e2e.cluster and e2e._traffic_traefik.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from e2e._report import LINES, report
from e2e.cluster import BinariesUnavailable, ControlPlane, ensure_binaries, ensure_crds


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str, what: str = "e2e control plane") -> None:
    """A prerequisite could not be built or fetched: a failure in CI, a skip elsewhere."""
    if _in_ci():
        pytest.fail(f"{what} unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs the real local Kubernetes control plane")
    # SIGTERM (an outer limit running out, a CI cancel) ends the run like Ctrl-C: fixtures tear
    # down (planes, test hosts) and a build in progress is ended with its whole session
    # (e2e.cluster.run_bounded) instead of living on with the build lock.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _prebuild(what: str, build: Callable[[], Path]) -> None:
    start = time.monotonic()
    try:
        path = build()
    except BinariesUnavailable as exc:  # memoised: the fixtures fail or skip with it
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        report(
            "e2e binaries", f"{what}: unavailable after {time.monotonic() - start:.1f}s: {first}"
        )
        return
    report("e2e binaries", f"{what}: {path} ready in {time.monotonic() - start:.1f}s")


def _builds(items: list[pytest.Item]) -> list[tuple[str, Callable[[], Path]]]:
    """Every Go binary the selected tests run, with its (memoised) build."""
    from e2e._argo import build as build_argo
    from e2e._traffic_traefik import ensure_traefik
    from e2e.argo_env import ensure_argo_controller
    from e2e.workers import ensure_kube_controllers, ensure_kwok

    files = {i.path.name for i in items}
    fixtures = {name for i in items for name in getattr(i, "fixturenames", ())}
    out: list[tuple[str, Callable[[], Path]]] = []
    if {"control_plane", "control_plane_bin_dir"} & fixtures or files & ARGO_FILES:
        out.append(("control plane (kube-apiserver, kubectl, etcd)", ensure_binaries))
    if "test_argo_rollouts.py" in files:
        out += [
            ("kube-controller-manager, kube-scheduler", ensure_kube_controllers),
            ("kwok", ensure_kwok),
            ("rollouts-controller", ensure_argo_controller),
        ]
    if files & ARGO_FILES:
        out.append(("canary-routers-argo (the bridge)", lambda: build_argo("bridge")))
    if "test_argo_protocol.py" in files:
        out.append(("argo-driver", lambda: build_argo("driver")))
    if files & {"test_traffic.py", "test_argo_rollouts.py"}:
        out.append(("traefik", ensure_traefik))
    return out


ARGO_FILES = frozenset({"test_argo_rollouts.py", "test_argo_protocol.py"})


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build what the selected tests need now, outside every test's timeout."""
    if session.config.option.collectonly:
        return
    for what, build in _builds(session.items):
        _prebuild(what, build)


@pytest.fixture
def e2e_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``e2e_report(line)``: a measured figure printed in the terminal summary of the run
    (passing tests' output is captured, and figures like step latencies must show in CI)."""

    def add(line: str) -> None:
        report("e2e measurements", f"{request.node.name}: {line}")

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for section, lines in LINES.items():
        terminalreporter.section(section, sep="-")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def control_plane_bin_dir() -> Path:
    """Directory with kube-apiserver, kubectl and etcd (built by build.sh on a cache miss)."""
    try:
        return ensure_binaries()
    except BinariesUnavailable as e:
        unavailable(str(e))
        raise  # unreachable


class _Planes:
    def __init__(self, bin_dir: Path, max_planes: int) -> None:
        self.bin_dir = bin_dir
        self.max_planes = max(1, max_planes)
        self.planes: OrderedDict[tuple[str, ...], ControlPlane] = OrderedDict()
        self.failed: dict[tuple[str, ...], str] = {}

    def __call__(self, crd_sets: Iterable[str] = ()) -> ControlPlane:
        if isinstance(crd_sets, str):
            crd_sets = (crd_sets,)
        key = tuple(sorted(set(crd_sets)))
        if key in self.failed:
            pytest.fail(
                f"control plane {key} failed to start earlier:\n{self.failed[key]}", pytrace=False
            )
        cp = self.planes.get(key)
        if cp is not None and cp.running:
            self.planes.move_to_end(key)
            return cp
        try:
            ensure_crds(key)
        except BinariesUnavailable as e:
            unavailable(str(e))
        while len(self.planes) >= self.max_planes:
            _, old = self.planes.popitem(last=False)
            old.stop()
        cp = ControlPlane(key, bin_dir=self.bin_dir)
        try:
            cp.start()
        except Exception as e:
            self.failed[key] = str(e)
            raise
        self.planes[key] = cp
        return cp

    def stop_all(self) -> None:
        while self.planes:
            _, cp = self.planes.popitem()
            cp.stop()


@pytest.fixture(scope="session")
def control_plane(control_plane_bin_dir: Path) -> Iterator[Callable[..., ControlPlane]]:
    """Session-scoped factory: ``control_plane(("istio", ...)) -> ControlPlane``.

    One ControlPlane per (sorted) CRD-set tuple, cached for the session, all stopped at the
    end. Sets that define the same CRDs (the gateway channels/versions, smi-sdk vs
    smi-linkerd) cannot share a plane (ValueError)."""
    planes = _Planes(control_plane_bin_dir, int(os.environ.get("ROUTERS_E2E_MAX_PLANES", "4")))
    try:
        yield planes
    finally:
        planes.stop_all()


@pytest.fixture(scope="module")
def configmap_plugins() -> Iterator[Any]:
    """A registry of only the example third-party ConfigMap plugin (built-in kinds: no CRDs)."""
    from tests.conftest import configmap_registry

    yield from configmap_registry()
