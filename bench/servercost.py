"""Server cost: kube-apiserver and etcd CPU per request, by kind of request and plugin object.

Client, kube-apiserver and etcd share the machine's CPUs, so throughput is CPU-bound: no saving
in the client can take a step below what the server spends on it. This section measures that
cost for each request a step can send -- a GET, our guarded JSON patch with each
``fieldValidation`` value, the baseline's GET+PUT -- and the throughput ceiling it implies.

Method: one object per scenario (each plugin's typical and first API object), one thread, one
request at a time. The patches are those our Router sent for two consecutive steps (30% -> 40%
and back), replayed alternately with the resourceVersion guard taken from the last response, so
every write is a real change (the apiserver answers an unchanged write without writing it, for
free); a write that leaves the resourceVersion as it was stops the run. GET+PUT is
:class:`bench.cluster.Baseline`'s step (GET the targets, edit, PUT the whole object) between the
same two weights. The kinds run round-robin, the order rotated each round, so a drift of the
machine hits every kind alike; each figure is all of a kind's CPU over all its requests (see
:func:`summarize`). CPU comes from /proc in clock ticks (10 ms): each batch runs until the
servers have used 0.6 s of CPU, so the ticks (one per process) are under 5% of it. The servers'
idle background work is measured once and included in every figure (reported, not subtracted).
The apiserver's Go heap allocation per request (from its /metrics, read between batches) is
reported beside the CPU: it varies by a few percent where the CPU varies by tens, and the GC's
share of the CPU follows it.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench import machine
from bench.cluster import Baseline, Capture, Counter, client, new_kube, seed
from bench.scenarios import SPECS, Scenario
from e2e.cluster import ControlPlane
from routers.cluster import Router, Transport
from routers.model import RoutingConfig, TrafficState
from routers.planning.patch import RV_GUARD
from routers.registry import Registry

__all__ = [
    "KINDS",
    "LABELS",
    "Batch",
    "add_ceilings",
    "alloc_ratio",
    "batch_done",
    "ceiling",
    "orders",
    "parse_counter",
    "run",
    "summarize",
    "verdict",
]

KINDS = ("get", "patch", "patch-ignore", "patch-strict", "get+put")
LABELS = {
    "get": "GET",
    "patch": "PATCH",
    "patch-ignore": "PATCH Ignore",
    "patch-strict": "PATCH Strict",
    "get+put": "GET+PUT",
}
FIELD_VALIDATION: dict[str, str | None] = {
    "patch": None,
    "patch-ignore": "Ignore",
    "patch-strict": "Strict",
}
"""``None``: no ``fieldValidation`` parameter, the server's default (Warn since Kubernetes 1.27)."""

ROUNDS = 5
TICK_SECONDS = 1 / os.sysconf("SC_CLK_TCK")
BATCH_CPU_SECONDS = 0.6
"""A batch runs until the servers have used this much CPU: one tick is under 2% of it, and a
kind's rounds together span several of the apiserver's GC cycles."""
MIN_BATCH, MAX_BATCH = 20, 5000
MAX_BATCH_SECONDS = 30.0
WARM = 10
"""Requests of each kind before the first round (code paths, connections, caches)."""
WARMUP = 2
"""Unmeasured requests before each batch (even: alternating writes end where they began)."""
IDLE_SECONDS = 2.0
BASE_WEIGHTS = (10, 20, 30)
"""Steps before the capture (nginx creates its canary Ingress in the first one)."""
FORWARD, BACK = 40, 30


# -- pure helpers (tested in tests/bench) ------------------------------------------------------


def orders(kinds: Sequence[str], rounds: int) -> list[list[str]]:
    """Round r runs the kinds rotated by r, so no kind always runs first, or after the same one."""
    n = len(kinds)
    return [[*kinds[r % n :], *kinds[: r % n]] for r in range(rounds)]


def batch_done(requests: int, server_seconds: float, wall_seconds: float) -> bool:
    """Whether a batch has enough: ``BATCH_CPU_SECONDS`` of server CPU over at least
    ``MIN_BATCH`` requests, an even number (a batch of alternating writes leaves the object as
    it found it), or a bound that keeps a stuck CPU reading from running forever."""
    if requests % 2:
        return False
    if requests >= MAX_BATCH or wall_seconds >= MAX_BATCH_SECONDS:
        return True
    return requests >= MIN_BATCH and server_seconds >= BATCH_CPU_SECONDS


@dataclass(frozen=True)
class Batch:
    """CPU seconds of each server process and wall seconds for ``requests`` requests."""

    requests: int
    apiserver: float
    etcd: float
    wall: float
    allocated: float | None = None
    """Bytes the apiserver's Go heap allocated (None: its /metrics could not be read)."""

    @property
    def server(self) -> float:
        return self.apiserver + self.etcd

    def ms(self, seconds: float) -> float:
        """Per request, in milliseconds."""
        return seconds * 1e3 / self.requests


def summarize(batches: Sequence[Batch]) -> dict[str, Any]:
    """One kind's rounds, pooled: all their CPU over all their requests. The apiserver's cost
    is lumpy (a Go GC cycle is worth a dozen requests and falls into whichever batch crosses the
    heap target), so a median of batches would drop or double it; pooled, each kind pays for
    the garbage it makes. The range over rounds and the median round show the spread; the tick
    share is a tick per process over the smallest batch's server CPU (the resolution)."""
    requests = sum(b.requests for b in batches)

    def pooled(part: Callable[[Batch], float]) -> float:
        return round(sum(part(b) for b in batches) * 1e3 / requests, 2)

    def span(part: Callable[[Batch], float]) -> list[float]:
        values = [b.ms(part(b)) for b in batches]
        return [round(min(values), 2), round(max(values), 2)]

    apiserver, etcd = pooled(lambda b: b.apiserver), pooled(lambda b: b.etcd)
    smallest = min(b.server for b in batches)
    allocs = [b.allocated / b.requests / 1024 for b in batches if b.allocated is not None]
    alloc: dict[str, Any] = {}
    if len(allocs) == len(batches):
        total = sum(b.allocated or 0.0 for b in batches)
        alloc = {
            "apiserverAllocKiB": round(total / requests / 1024, 1),
            "apiserverAllocKiBRange": [round(min(allocs), 1), round(max(allocs), 1)],
        }
    return {
        **alloc,
        "requests": [b.requests for b in batches],
        "apiserverMs": apiserver,
        "etcdMs": etcd,
        "serverMs": round(apiserver + etcd, 2),
        "wallMs": pooled(lambda b: b.wall),
        "medianRoundServerMs": round(statistics.median(b.ms(b.server) for b in batches), 2),
        "range": {
            "apiserverMs": span(lambda b: b.apiserver),
            "etcdMs": span(lambda b: b.etcd),
            "serverMs": span(lambda b: b.server),
        },
        "tickShare": round(2 * TICK_SECONDS / smallest, 3) if smallest > 0 else None,
        "perRound": [
            {
                "apiserverMs": round(b.ms(b.apiserver), 3),
                "etcdMs": round(b.ms(b.etcd), 3),
                "wallMs": round(b.ms(b.wall), 3),
            }
            for b in batches
        ],
    }


def parse_counter(text: str, name: str) -> float | None:
    """One unlabelled sample of a Prometheus text exposition."""
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


def verdict(difference: float, per_round: Sequence[float], resolution: float) -> str:
    """Whether ``a - b`` is real: the same sign in every round (each pair ran in the same round,
    so the machine's drift cancels) and a pooled difference beyond what clock ticks can make."""
    if not per_round:
        raise ValueError("no rounds")
    if min(per_round) > 0 and difference > resolution:
        return "lower in every round"
    if max(per_round) < 0 and -difference > resolution:
        return "higher in every round"
    return "no difference beyond the rounds' spread and the tick resolution"


def ceiling(patch_ms: float, get_put_ms: float, baseline_client_ms: float = 0.0) -> float | None:
    """Our steps/s over the baseline's when CPU is all there is (client, apiserver and etcd on
    the same cores) and our client costs nothing: the baseline's CPU per step (its client's plus
    the servers' for GET+PUT) over the servers' for our one PATCH."""
    if patch_ms <= 0:
        return None
    return round((baseline_client_ms + get_put_ms) / patch_ms, 2)


def add_ceilings(section: dict[str, Any], throughput: Mapping[str, Any] | None) -> None:
    """Fill each row's ceiling, with the baseline's client CPU per step that the throughput
    section measured on the same object in the same run (one figure per N), if it ran."""
    tp_rows = (throughput or {}).get("rows", [])
    for row in section["rows"]:
        patch_ms = row["kinds"][row["oursKind"]]["serverMs"]
        get_put_ms = row["kinds"]["get+put"]["serverMs"]
        with_client = [
            {
                "rollouts": r["rollouts"],
                "baselineClientMs": c,
                "ceiling": ceiling(patch_ms, get_put_ms, c),
            }
            for r in tp_rows
            if r["driver"] == "get+put"
            and r["plugin"] == row["plugin"]
            and r["object"] == row["object"]
            and (c := (r.get("cpuMsPerStep") or {}).get("client")) is not None
        ]
        row["ceiling"] = {
            "serverOnly": ceiling(patch_ms, get_put_ms),
            "withBaselineClient": with_client,
        }


# -- measurement -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sent:
    path: str
    query: list[tuple[str, str]]
    ops: list[dict[str, Any]]


def _one_patch(capture: Capture, router: Router, weight: int) -> _Sent:
    mark = len(capture.sent)
    router.apply_state(TrafficState(weight=weight))
    sent = capture.sent[mark:]
    writes = [s for s in sent if s[0] != "GET"]
    if len(writes) != 1 or writes[0][0] != "PATCH":
        raise RuntimeError(f"a steady step sent {[(s[0], s[1]) for s in sent]}, not one PATCH")
    _, path, query, ops = writes[0]
    return _Sent(path, query, list(ops))


class _Target:
    """The measured object: its path and the resourceVersion the last write returned."""

    def __init__(self, transport: Transport, path: str) -> None:
        self.transport = transport
        self.path = path
        self.rv = ""

    def refresh(self) -> None:
        self.rv = str(self.transport.request("GET", self.path)["metadata"]["resourceVersion"])

    def get(self) -> None:
        self.transport.request("GET", self.path)


class _PatchReplay:
    """Our two captured patches, alternately, each guarded by the current resourceVersion."""

    def __init__(
        self, target: _Target, forward: _Sent, back: _Sent, field_validation: str | None
    ) -> None:
        self.target = target
        self.bodies = (forward.ops, back.ops)
        self.query = [(k, v) for k, v in forward.query if k != "fieldValidation"]
        if field_validation is not None:
            self.query.append(("fieldValidation", field_validation))
        self.i = 0

    def prepare(self) -> None:
        self.target.refresh()
        self.i = 0

    def __call__(self) -> None:
        t = self.target
        ops = [
            {**op, "value": t.rv} if op["op"] == "test" and op["path"] == RV_GUARD else op
            for op in self.bodies[self.i % 2]
        ]
        out = t.transport.request(
            "PATCH",
            t.path,
            query=self.query,
            body=ops,
            content_type="application/json-patch+json",
        )
        rv = str(out["metadata"]["resourceVersion"])
        if rv == t.rv:
            raise RuntimeError(f"PATCH {t.path} wrote nothing (resourceVersion {rv} unchanged)")
        t.rv = rv
        self.i += 1


class _GetPut:
    """The baseline's step between the same two weights: each one changes the object."""

    def __init__(self, baseline: Baseline) -> None:
        self.baseline = baseline
        self.states = (TrafficState(weight=FORWARD), TrafficState(weight=BACK))
        self.i = 0

    def prepare(self) -> None:
        self.i = 0

    def __call__(self) -> None:
        if self.baseline.step(self.states[self.i % 2]) < 1:
            raise RuntimeError("a GET+PUT step changed nothing")
        self.i += 1


class _Kind:
    def __init__(self, call: Callable[[], None], prepare: Callable[[], None] | None) -> None:
        self.call = call
        self.prepare = prepare or (lambda: None)


class _Allocation:
    """The apiserver's cumulative Go heap allocation, read from its /metrics outside the CPU
    window: a deterministic measure of its work per request, unlike CPU free of GC lumps (it is
    what the GC later pays for). A reading's own allocation (the exposition is ~2 MB of text) is
    measured between back-to-back readings and subtracted."""

    METRIC = "go_memstats_alloc_bytes_total"

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        readings = [self.read() for _ in range(4)]
        ok = [r for r in readings if r is not None]
        steps = [b - a for a, b in itertools.pairwise(ok)] if len(ok) == len(readings) else []
        self.overhead: float | None = statistics.median(steps) if steps else None

    def read(self) -> float | None:
        status, text = self.cp.request("GET", "/metrics")
        return parse_counter(text, self.METRIC) if status == 200 and isinstance(text, str) else None

    def between(self, before: float | None, after: float | None) -> float | None:
        if before is None or after is None or self.overhead is None:
            return None
        return after - before - self.overhead


def _cpu(pids: Mapping[str, int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, pid in pids.items():
        sec = machine.cpu_seconds(pid)
        if sec is None:
            raise RuntimeError(f"{name} (pid {pid}) is gone")
        out[name] = sec
    return out


def _batch(kind: _Kind, pids: Mapping[str, int], alloc: _Allocation) -> Batch:
    kind.prepare()
    for _ in range(WARMUP):
        kind.call()
    a0 = alloc.read()
    c0, t0 = _cpu(pids), time.perf_counter()
    k = 0
    while True:
        kind.call()
        k += 1
        c1, t1 = _cpu(pids), time.perf_counter()
        if batch_done(k, sum(c1.values()) - sum(c0.values()), t1 - t0):
            break
    return Batch(
        k,
        c1["kube-apiserver"] - c0["kube-apiserver"],
        c1["etcd"] - c0["etcd"],
        t1 - t0,
        alloc.between(a0, alloc.read()),
    )


def measure(
    cp: ControlPlane, plugin: str, scenario: Scenario, registry: Registry, rounds: int
) -> dict[str, Any]:
    started = time.perf_counter()
    api = client(cp, pool=2)
    counter = Counter(keep=False)
    kube = new_kube(api, counter)
    pids = cp.pids()
    try:
        ns = cp.new_namespace("bench-cost")
        seed(cp, kube, scenario, ns)
        config = RoutingConfig.from_document(scenario.with_namespace(ns).routing)
        router = Router(config, kube=kube, registry=registry)
        capture = Capture(kube.transport)
        try:
            for w in BASE_WEIGHTS:
                router.apply_state(TrafficState(weight=w))
            forward = _one_patch(capture, router, FORWARD)
            back = _one_patch(capture, router, BACK)
        finally:
            capture.close()
        if (forward.path, forward.query) != (back.path, back.query):
            raise RuntimeError(f"{plugin}: the two steps patched {forward.path}, {back.path}")
        target = _Target(kube.transport, forward.path)
        sent_fv = dict(forward.query).get("fieldValidation")
        # Warn is the default since 1.27: the same validation as no parameter.
        ours = {None: "patch", "Warn": "patch", "Ignore": "patch-ignore", "Strict": "patch-strict"}
        if sent_fv not in ours:
            raise RuntimeError(f"{plugin}: unexpected fieldValidation={sent_fv}")
        kinds: dict[str, _Kind] = {"get": _Kind(target.get, None)}
        for name, fv in FIELD_VALIDATION.items():
            replay = _PatchReplay(target, forward, back, fv)
            kinds[name] = _Kind(replay, replay.prepare)
        get_put = _GetPut(Baseline(kube, config, registry))
        kinds["get+put"] = _Kind(get_put, get_put.prepare)

        alloc = _Allocation(cp)
        for kind in kinds.values():
            kind.prepare()
            for _ in range(WARM):
                kind.call()
        batches: dict[str, list[Batch]] = {name: [] for name in KINDS}
        get_put_requests = get_put_writes = get_put_steps = 0
        for order in orders(KINDS, rounds):
            for name in order:
                before = (counter.requests, counter.writes)
                batches[name].append(_batch(kinds[name], pids, alloc))
                if name == "get+put":
                    get_put_requests += counter.requests - before[0]
                    get_put_writes += counter.writes - before[1]
                    get_put_steps += batches[name][-1].requests + WARMUP
    finally:
        api.close()  # type: ignore[no-untyped-call]

    summary = {name: summarize(b) for name, b in batches.items()}

    per_round = [
        a.ms(a.apiserver) - b.ms(b.apiserver)
        for a, b in zip(batches["patch"], batches["patch-ignore"], strict=True)
    ]
    difference = round(summary["patch"]["apiserverMs"] - summary["patch-ignore"]["apiserverMs"], 2)
    # Each batch reads less than a tick off per process: the worst case, pooled, on both sides.
    resolution = round(
        sum(
            len(batches[k]) * TICK_SECONDS * 1e3 / sum(b.requests for b in batches[k])
            for k in ("patch", "patch-ignore")
        ),
        3,
    )
    ours_kind = ours[sent_fv]
    patch_ms = summary[ours_kind]["serverMs"]
    return {
        "plugin": plugin,
        "object": scenario.label,
        "rounds": rounds,
        "kinds": summary,
        "oursKind": ours_kind,
        "oursQuery": "&".join(f"{k}={v}" for k, v in forward.query),
        "patchOps": len(forward.ops),
        "patchBytes": len(json.dumps(forward.ops).encode()),
        "getPutPerStep": {
            "gets": round((get_put_requests - get_put_writes) / get_put_steps, 2),
            "writes": round(get_put_writes / get_put_steps, 2),
        },
        "getPutOverPatch": _ratio(summary["get+put"]["serverMs"], patch_ms),
        "getPutOverPatchMedianRound": _ratio(
            summary["get+put"]["medianRoundServerMs"], summary[ours_kind]["medianRoundServerMs"]
        ),
        "getPutOverPatchAlloc": alloc_ratio(summary, ours_kind),
        "ignoreSavesApiserverMs": {
            "pooled": difference,
            "perRound": [round(d, 2) for d in per_round],
            "resolution": resolution,
            "verdict": verdict(difference, per_round, resolution),
            "allocKiB": _alloc_difference(summary["patch"], summary["patch-ignore"]),
        },
        "metricsReadAllocKiB": round(alloc.overhead / 1024, 1) if alloc.overhead else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def alloc_ratio(kinds: Mapping[str, Mapping[str, Any]], ours: str) -> float | None:
    """GET+PUT step over our PATCH in the apiserver's heap allocation: the steady cross-check
    of the CPU ratio (allocation is not CPU, but the GC's share follows it)."""
    a, b = kinds["get+put"].get("apiserverAllocKiB"), kinds[ours].get("apiserverAllocKiB")
    return round(a / b, 2) if a is not None and b else None


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def _alloc_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> float | None:
    if "apiserverAllocKiB" not in a or "apiserverAllocKiB" not in b:
        return None
    return round(float(a["apiserverAllocKiB"]) - float(b["apiserverAllocKiB"]), 1)


def _idle(pids: Mapping[str, int]) -> dict[str, float]:
    """The servers' own background CPU (leases, controllers, compaction), ms per second."""
    c0, t0 = _cpu(pids), time.perf_counter()
    time.sleep(IDLE_SECONDS)
    c1, t1 = _cpu(pids), time.perf_counter()
    return {name: round((c1[name] - c0[name]) * 1e3 / (t1 - t0), 1) for name in c0}


def run(
    cp: ControlPlane, registry: Registry, plugins: list[str], rounds: int = ROUNDS
) -> dict[str, Any]:
    """Each plugin's typical object (the one throughput steps) and its first API object."""
    started = time.perf_counter()
    idle = _idle(cp.pids())
    rows: list[dict[str, Any]] = []
    for plugin in plugins:
        spec = SPECS[plugin]
        seen: set[str] = set()
        for scenario in (spec.typical, spec.api[0]):
            if scenario.label in seen:
                continue
            seen.add(scenario.label)
            row = measure(cp, plugin, scenario, registry, rounds)
            row["typical"] = scenario.label == spec.typical.label
            rows.append(row)
    return {
        "rows": rows,
        "rounds": rounds,
        "idleCpuMsPerSecond": idle,
        "tickMs": round(TICK_SECONDS * 1e3, 1),
        "batchCpuMs": round(BATCH_CPU_SECONDS * 1e3),
        "seconds": round(time.perf_counter() - started, 1),
    }
