"""API efficiency: requests and request bytes per canary step and per no-op reconcile.

Each driver gets its own namespace with fresh copies of the same objects, runs the 10-step canary
once, then repeats the last state (the no-op reconcile). Requests are counted at the transport
hook: method, status and body bytes of every request, nothing estimated; ``ours-watch`` also
counts the bytes its watch stream received (the events of its own writes). One-time setup
(discovery, CRD facts, the watch cache's first list) is excluded and reported separately.
"""

from __future__ import annotations

import time
from statistics import mean
from typing import Any

from kubernetes.client import ApiClient

from bench.cluster import DRIVERS, Counter, canary_steps, make_driver, new_kube, seed
from bench.scenarios import SPECS, Scenario
from e2e.cluster import ControlPlane
from routers.cluster import RequestRecord, WatchCache
from routers.model import TrafficState
from routers.registry import Registry

__all__ = ["run"]


def _tally(records: list[RequestRecord]) -> dict[str, int]:
    return {
        "requests": len(records),
        "gets": sum(r.method == "GET" for r in records),
        "writes": sum(r.is_write for r in records),
        "requestBytes": sum(r.request_bytes for r in records),
        "writeBytes": sum(r.request_bytes for r in records if r.is_write),
        "responseBytes": sum(r.response_bytes for r in records),
        "failedWrites": sum(r.is_write and not 200 <= r.status <= 299 for r in records),
        "notFound": sum(r.method == "GET" and r.status == 404 for r in records),
    }


def measure(
    cp: ControlPlane, api: ApiClient, scenario: Scenario, driver: str, registry: Registry
) -> dict[str, Any]:
    counter = Counter()
    kube = new_kube(api, counter)
    ns = cp.new_namespace("bench-api")
    stored = seed(cp, kube, scenario, ns)
    setup_mark = counter.mark
    cache = WatchCache(kube) if driver == "ours-watch" else None
    try:
        d = make_driver(driver, kube, scenario, ns, stored, registry, cache)
        setup = _tally(counter.since(setup_mark))

        def step(state: TrafficState) -> dict[str, int]:
            mark = counter.mark
            before = cache.stats().watch_bytes if cache is not None else 0
            changed = d.step(state)
            if cache is not None and changed:  # the events of this step's own writes
                _settle(cache, before)
            after = cache.stats().watch_bytes if cache is not None else 0
            return {
                **_tally(counter.since(mark)),
                "watchBytes": after - before,
                "changedObjects": changed,
            }

        steps = [step(state) for state in canary_steps()]
        noop = step(canary_steps()[-1])
    finally:
        if cache is not None:
            cache.stop()

    def avg(key: str) -> float:
        return round(mean(s[key] for s in steps), 1)

    return {
        "plugin": scenario.plugin,
        "object": scenario.label,
        "driver": driver,
        "setupRequests": setup["requests"],
        "perStep": {
            k: avg(k)
            for k in (
                "requests",
                "gets",
                "notFound",
                "writes",
                "requestBytes",
                "writeBytes",
                "responseBytes",
                "watchBytes",
            )
        },
        "steps": steps,
        "noop": noop,
        "oneWritePerChangedObject": all(
            s["writes"] == s["changedObjects"] and s["failedWrites"] == 0 for s in steps
        ),
    }


def run(cp: ControlPlane, api: ApiClient, registry: Registry, plugins: list[str]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for name in plugins:
        for scenario in SPECS[name].api:
            by_driver = {d: measure(cp, api, scenario, d, registry) for d in DRIVERS}
            base = by_driver["get+put"]["perStep"]
            for row in by_driver.values():
                mine = row["perStep"]
                row["vsBaseline"] = {
                    "requests": _ratio(base["requests"], mine["requests"]),
                    "requestBytes": _ratio(base["requestBytes"], mine["requestBytes"]),
                    "writeBytes": _ratio(base["writeBytes"], mine["writeBytes"]),
                }
                rows.append(row)
    return {"rows": rows}


def _settle(cache: WatchCache, before: int, timeout: float = 5.0) -> None:
    """Wait (bounded) until the watch delivered something after ``before``: the event of the
    step's write, so its bytes count for this step and not the next."""
    deadline = time.monotonic() + timeout
    while cache.stats().watch_bytes == before and time.monotonic() < deadline:
        time.sleep(0.002)


def _ratio(baseline: float, ours: float) -> float | None:
    """How many times more the baseline sends (None when we send nothing at all)."""
    return round(baseline / ours, 1) if ours else None
