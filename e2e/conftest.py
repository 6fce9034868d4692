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

Env: ROUTERS_E2E_MAX_PLANES (default 4) bounds how many planes run at once in a session (the
least recently used one is stopped; 2 cores); ROUTERS_E2E_BIN_DIR / ROUTERS_E2E_CRDS_DIR /
ROUTERS_E2E_CACHE are honoured by e2e.cluster.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster import BinariesUnavailable, ControlPlane, ensure_binaries, ensure_crds


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str, what: str = "e2e control plane") -> None:
    """A prerequisite could not be built or fetched: a failure in CI, a skip elsewhere."""
    if _in_ci():
        pytest.fail(f"{what} unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs the real local Kubernetes control plane")


_MEASUREMENTS = pytest.StashKey[list[str]]()


@pytest.fixture
def e2e_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``e2e_report(line)``: a measured figure printed in the terminal summary of the run
    (passing tests' output is captured, and figures like step latencies must show in CI)."""
    lines = request.config.stash.setdefault(_MEASUREMENTS, [])

    def report(line: str) -> None:
        lines.append(f"{request.node.name}: {line}")
        print(line, flush=True)  # also in the test's own output (-s, failures)

    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(_MEASUREMENTS, [])
    if lines:
        terminalreporter.section("e2e measurements")
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
