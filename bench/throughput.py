"""Throughput: N independent rollouts stepping through a 10-step canary at the same time.

Every rollout has its own Router and namespace; all share one client and its connection pool,
and ``ours-watch`` rollouts also one cluster-wide watch cache. As in a controller, a fixed pool
of ``WORKERS`` threads runs the steps (Argo Rollouts' default ``--rollout-threads``): all N
rollouts are in flight at once, each one's steps in order, each step queued behind the others'.
(One thread per rollout, as this section ran before, spent more client CPU switching hundreds
of threads than on the steps: 4.5 instead of 1.3 ms per ConfigMap step, measured.) Steps/s is
N x 10 over the wall time from the first step to the last; latency is per step, as the worker
sees it (read, plan, write, conflict retries; ``ours-watch`` also verifies from its cache), not
counting its time in the queue. Each driver runs on fresh objects in the same apiserver, one
after the other, so they never compete with each other: a driver that has not finished within
``JOIN_TIMEOUT`` stops taking steps (those running finish) before the next one starts, and its
row counts only the steps it completed. The objects are each plugin's typical ones (500
rollouts of the largest objects would not finish on a shared 2-core machine; the API and
latency sections measure those). CPU is counted per step for each process (this client,
kube-apiserver, etcd): on a shared machine it says where a step's cost went better than the
wall time does.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import machine
from bench.cluster import (
    Counter,
    Driver,
    canary_steps,
    client,
    make_driver,
    new_kube,
    seed_many,
)
from bench.scenarios import SPECS
from bench.stats import percentile
from e2e.cluster import ControlPlane
from routers.cluster import WatchCache
from routers.registry import Registry

__all__ = ["DRIVERS", "run"]

DRIVERS = ("ours-live", "ours-watch", "get+put")
"""``ours-read`` (a GET per step) is measured by the API section; throughput compares the two
modes a controller runs in (its own write responses, a watch cache) with the baseline."""

WORKERS = 10
"""Threads that run the steps of all N rollouts (Argo Rollouts' default ``--rollout-threads``)."""
JOIN_TIMEOUT = 900.0
STRAGGLER_TIMEOUT = 120.0
"""After JOIN_TIMEOUT, how long the workers may take to finish the steps they are in."""


def measure(
    cp: ControlPlane, plugin: str, driver: str, n: int, registry: Registry
) -> dict[str, Any]:
    scenario = SPECS[plugin].typical
    api = client(cp, pool=WORKERS + 8)
    counter = Counter(keep=False)
    kube = new_kube(api, counter)
    seeded = seed_many(cp, kube, scenario, "bench-tp", n)
    cache = WatchCache(kube, all_namespaces=True) if driver == "ours-watch" else None
    with ThreadPoolExecutor(8) as pool:
        drivers: list[Driver] = list(
            pool.map(
                lambda item: make_driver(driver, kube, scenario, item[0], item[1], registry, cache),
                seeded,
            )
        )
    steps = canary_steps()
    latencies: list[list[float]] = [[] for _ in range(n)]
    errors: list[str] = []
    lock = threading.Lock()
    work: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
    halt = threading.Event()
    finished = threading.Event()
    open_rollouts = [n]
    attempted = [0] * n

    def close_one() -> None:
        with lock:
            open_rollouts[0] -= 1
            if open_rollouts[0] == 0:
                finished.set()

    def worker() -> None:
        # Bounded: the run puts one None per worker at the latest after JOIN_TIMEOUT and
        # STRAGGLER_TIMEOUT; a worker that waits longer than that has been abandoned.
        while True:
            try:
                item = work.get(timeout=JOIN_TIMEOUT + 2 * STRAGGLER_TIMEOUT)
            except queue.Empty:
                return
            if item is None:
                return
            i, k = item
            if halt.is_set():
                close_one()  # not started: counted as unfinished
                continue
            start = time.perf_counter()
            attempted[i] += 1
            try:
                drivers[i].step(steps[k])
            except Exception as exc:  # counted and reported, never hidden
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
            else:
                latencies[i].append(time.perf_counter() - start)
            if k + 1 < len(steps):
                work.put((i, k + 1))
            else:
                close_one()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    before = (counter.requests, counter.writes, counter.request_bytes)
    pids = {"client": None, **cp.pids()}
    cpu0 = {name: machine.cpu_seconds(pid) for name, pid in pids.items()}
    watch0 = cache.stats() if cache is not None else None
    start = time.perf_counter()
    for i in range(n):
        work.put((i, 0))
    finished.wait(JOIN_TIMEOUT)
    wall = time.perf_counter() - start
    cpu1 = {name: machine.cpu_seconds(pid) for name, pid in pids.items()}
    # Everything counted up to here, within the wall time measured:
    done = sum(len(per) for per in latencies)
    after = (counter.requests, counter.writes, counter.request_bytes)
    watch1 = cache.stats() if cache is not None else None
    late = sum(a < len(steps) for a in attempted)
    halt.set()  # the next driver must not share the apiserver with this one's stragglers
    finished.wait(STRAGGLER_TIMEOUT)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join(STRAGGLER_TIMEOUT)
    stuck = sum(t.is_alive() for t in threads)
    if cache is not None:
        cache.stop()
    api.close()  # type: ignore[no-untyped-call]
    flat = [x for per in latencies for x in per]

    def cpu_ms(name: str) -> float | None:
        a, b = cpu0.get(name), cpu1.get(name)
        return round((b - a) * 1e3 / done, 2) if a is not None and b is not None and done else None

    return {
        "plugin": plugin,
        "object": scenario.label,
        "driver": driver,
        "rollouts": n,
        "workers": WORKERS,
        "steps": done,
        "errors": len(errors),
        "firstErrors": sorted(set(errors))[:3],
        "unfinishedRollouts": late,
        "stuckThreads": stuck,
        "wallSeconds": round(wall, 2),
        "stepsPerSecond": round(done / wall, 1) if wall else 0.0,
        "p50Ms": round(percentile(flat, 50) * 1e3, 1) if flat else None,
        "p99Ms": round(percentile(flat, 99) * 1e3, 1) if flat else None,
        "requestsPerStep": round((after[0] - before[0]) / done, 2) if done else None,
        "requestBytesPerStep": round((after[2] - before[2]) / done) if done else None,
        "cpuMsPerStep": {
            "client": cpu_ms("client"),
            "apiserver": cpu_ms("kube-apiserver"),
            "etcd": cpu_ms("etcd"),
        },
        "cacheGets": (watch1.gets - watch0.gets) if watch1 and watch0 else None,
        "watchBytesPerStep": round((watch1.watch_bytes - watch0.watch_bytes) / done)
        if watch1 and watch0 and done
        else None,
    }


def run(
    cp: ControlPlane,
    registry: Registry,
    plugins: list[str],
    sizes: tuple[int, ...],
    rounds: int = 1,
) -> dict[str, Any]:
    """Drivers interleaved round by round (A B C, A B C, ...) so a change in the machine's load
    hits all of them; the row of each driver is its median round by steps/s."""
    rows: list[dict[str, Any]] = []
    for plugin in plugins:
        for n in sizes:
            runs: dict[str, list[dict[str, Any]]] = {d: [] for d in DRIVERS}
            for _ in range(rounds):
                for d in DRIVERS:
                    runs[d].append(measure(cp, plugin, d, n, registry))
            by_driver = {d: _median_round(r) for d, r in runs.items()}
            base = by_driver["get+put"]["stepsPerSecond"]
            for row in by_driver.values():
                row["vsBaseline"] = round(row["stepsPerSecond"] / base, 2) if base else None
                rows.append(row)
    return {"rows": rows}


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(rounds, key=lambda r: r["stepsPerSecond"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["rounds"] = [r["stepsPerSecond"] for r in rounds]
    row["errors"] = sum(r["errors"] for r in rounds)
    return row
