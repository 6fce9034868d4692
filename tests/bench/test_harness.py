"""The benchmark harness's own logic (statistics, generators, baseline call pattern, verdicts,
README splicing). Nothing here is timed: these tests check that the bench measures what it
says it measures."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from bench import report
from bench.cluster import Baseline, canary_steps
from bench.scenarios import (
    SPECS,
    bench_registry,
    configmap,
    for_server,
    gatewayapi,
    istio,
    nginx,
    smi,
)
from bench.stats import growth_exponent, percentile, time_call
from routers.cluster import ResourceInfo
from routers.model import RoutingConfig, TrafficState
from routers.planning.objects import ObjectRef

# -- statistics -------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_growth_exponent_tells_linear_from_quadratic() -> None:
    assert growth_exponent(100, 2.0, 1000, 20.0) == pytest.approx(1.0)
    assert growth_exponent(100, 1.0, 1000, 100.0) == pytest.approx(2.0)
    assert growth_exponent(10, 5.0, 100, 5.0) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="distinct"):
        growth_exponent(10, 1.0, 10, 2.0)


def test_time_call_grows_batches_and_reports_per_call() -> None:
    ticks = itertools.count()
    calls = 0

    def fn() -> None:
        nonlocal calls
        calls += 1
        next(ticks)  # every call costs one tick of the fake clock

    def clock() -> float:
        return float(next(ticks))

    t = time_call(fn, min_batch=50, batches=3, clock=clock)
    # one tick per call plus one per clock reading: per-call cost is a little over 1 tick
    assert 1.0 <= t.best <= t.median < 1.2
    assert t.calls >= 3 * 50
    assert calls > t.calls  # the warm-up and the smaller calibration batches are not counted


# -- generated objects --------------------------------------------------------------------------


def test_virtualservice_sizes_and_weighted_routes() -> None:
    one = istio(500)
    http = one.objects[0]["spec"]["http"]
    assert len(http) == 500
    weighted = [r for r in http if len(r["route"]) == 2]
    assert [r["name"] for r in weighted] == ["route-0499"]
    assert one.routing["trafficRouting"]["istio"]["virtualService"]["routes"] == ["route-0499"]
    every = istio(50, all_weighted=True)
    assert all(len(r["route"]) == 2 for r in every.objects[0]["spec"]["http"])
    names = [r["name"] for r in every.objects[0]["spec"]["http"]]
    assert len(set(names)) == 50


def test_httproute_stays_inside_the_crd_limits() -> None:
    rules = gatewayapi(16, 8).objects[0]["spec"]["rules"]
    assert len(rules) == 16  # maxItems 16
    assert sum(len(r["matches"]) for r in rules) == 128  # CEL: total matches <= 128
    assert all(len(r["backendRefs"]) == 2 for r in rules)


def test_ingress_and_trafficsplit_sizes() -> None:
    paths = nginx(300).objects[0]["spec"]["rules"][0]["http"]["paths"]
    assert len(paths) == 300
    assert len({p["path"] for p in paths}) == 300
    backends = smi(20).objects[0]["spec"]["backends"]
    assert len(backends) == 20
    assert [b["service"] for b in backends[:2]] == ["web-stable", "web-canary"]


def test_with_namespace_and_for_server_do_not_touch_the_original() -> None:
    sc = configmap(3)
    before = copy.deepcopy(sc.objects)
    moved = sc.with_namespace("other")
    assert moved.objects[0]["metadata"]["namespace"] == "other"
    assert moved.routing["namespace"] == "other"
    posted = for_server(moved.objects[0])
    assert "resourceVersion" not in posted["metadata"]
    assert "uid" not in posted["metadata"]
    assert posted["metadata"]["name"] == "proxy-weights"
    assert sc.objects == before


def test_every_spec_has_typical_large_curve_and_api_objects() -> None:
    for spec in SPECS.values():
        assert spec.large
        assert spec.curves
        assert spec.api
        for _, build in spec.curves:
            assert build(10).plugin == spec.plugin


def test_canary_changes_one_weight_per_step() -> None:
    steps = canary_steps()
    assert len(steps) == 10
    weights = [s.weight for s in steps]
    assert weights == sorted(set(weights))
    assert weights[-1] == 100


# -- the GET + PUT baseline -----------------------------------------------------------------


class FakeTransport:
    """Stores objects by path and answers like the API server (GET, PUT with a new version)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        self.calls.append((method, path, copy.deepcopy(body)))
        if method == "GET":
            return copy.deepcopy(self.objects[path])
        if method == "PUT":
            stored = copy.deepcopy(body)
            rv = int(self.objects[path]["metadata"]["resourceVersion"])
            stored["metadata"]["resourceVersion"] = str(rv + 1)
            self.objects[path] = stored
            return stored
        raise AssertionError(f"unexpected {method}")


class FakeKube:
    def __init__(self) -> None:
        self.transport = FakeTransport()

    def served_groups(self) -> dict[str, tuple[str, ...]]:
        return {"": ("v1",)}

    def crd(self, name: str) -> None:
        return None

    def resource(self, ref: ObjectRef) -> ResourceInfo:
        return ResourceInfo("", "v1", "configmaps", True)

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        path = self.resource(ref).path(ref.namespace, ref.name)
        found: dict[str, Any] = self.transport.request("GET", path)
        return found


def test_baseline_is_get_then_full_put_even_when_nothing_changes() -> None:
    kube = FakeKube()
    cm = configmap(3).objects[0]
    path = "/api/v1/namespaces/bench/configmaps/proxy-weights"
    kube.transport.objects[path] = copy.deepcopy(cm)
    config = RoutingConfig.from_document(configmap().routing)
    baseline = Baseline(kube, config, bench_registry())  # type: ignore[arg-type]

    assert baseline.step(TrafficState(weight=10)) == 1
    (get, put) = kube.transport.calls
    assert get[:2] == ("GET", path)
    assert put[0] == "PUT"
    body = put[2]
    assert body["metadata"]["resourceVersion"] == "1000"  # the version it read, not a guess
    assert body["data"]["setting-0000"] == cm["data"]["setting-0000"]  # the whole object
    assert '"web-canary": 10' in body["data"]["weights.json"]

    kube.transport.calls.clear()
    assert baseline.step(TrafficState(weight=10)) == 0
    assert [c[0] for c in kube.transport.calls] == ["GET", "PUT"]


# -- verdicts and the README ------------------------------------------------------------------


def _api_row(driver: str, writes: list[int], gets: int = 0, noop_writes: int = 0) -> dict[str, Any]:
    steps = [
        {"writes": w, "changedObjects": 1, "failedWrites": 0, "gets": gets, "requests": w + gets}
        for w in writes
    ]
    return {
        "plugin": "istio",
        "object": "VirtualService 50 http routes, 1 weighted",
        "driver": driver,
        "steps": steps,
        "noop": {"writes": noop_writes, "requests": noop_writes, "gets": gets},
        "perStep": {"writes": 1, "writeBytes": 500, "notFound": 0},
        "vsBaseline": {"writeBytes": 31.0, "requestBytes": 31.0, "requests": 1.0},
    }


def test_verdicts_pass_and_miss_with_the_gap() -> None:
    results = {
        "api": {
            "rows": [
                _api_row("ours-read", [1] * 10),
                _api_row("ours-live", [1, 2] + [1] * 8, gets=1, noop_writes=1),
            ]
        },
        "planning": {
            "rows": [
                {
                    "plugin": "istio",
                    "size": 500,
                    "object": "VS 500",
                    "enginePlanUs": {"median": 12000.0, "best": 9000.0},
                }
            ],
            "curves": [],
        },
        "throughput": {
            "rows": [
                {
                    "plugin": "istio",
                    "rollouts": 100,
                    "driver": "ours-live",
                    "stepsPerSecond": 30.0,
                    "vsBaseline": 2.5,
                    "errors": 0,
                }
            ]
        },
    }
    by = {(v.target, v.case.rsplit("(", 1)[-1]): v for v in report.evaluate(results)}
    assert by[("one write per changed object", "ours-read)")].ok is True
    live_writes = by[("one write per changed object", "ours-live)")]
    assert live_writes.ok is False
    assert "[2]" in live_writes.gap
    assert by[("no GET with live objects", "ours-live)")].ok is False
    assert by[("no-op reconcile sends no write", "ours-live)")].ok is False
    plan = next(v for v in by.values() if v.target.startswith("plan a 500-route"))
    assert plan.ok is False
    assert plan.gap == "2.4x over budget"
    assert next(v for v in by.values() if v.target.startswith(">=10x")).ok is True
    assert next(v for v in by.values() if v.target.startswith(">=2x")).ok is True


def test_readme_section_is_appended_then_replaced_in_place() -> None:
    readme = "# title\n\nintro\n"
    once = report.replace_section(readme, "table v1\n")
    assert once.startswith(readme.rstrip())
    assert f"{report.START}\ntable v1\n{report.END}" in once
    twice = report.replace_section(once + "\n## After\n", "table v2")
    assert "table v1" not in twice
    assert "table v2" in twice
    assert twice.endswith("## After\n")
    assert twice.count(report.START) == 1
    with pytest.raises(ValueError, match="broken"):
        report.replace_section(f"{report.END}\n{report.START}", "x")


def test_throughput_keeps_the_median_round_and_sums_errors() -> None:
    from bench.throughput import _median_round

    rounds = [
        {"stepsPerSecond": 30.0, "errors": 1},
        {"stepsPerSecond": 10.0, "errors": 0},
        {"stepsPerSecond": 20.0, "errors": 2},
    ]
    row = _median_round(rounds)
    assert row["stepsPerSecond"] == 20.0
    assert row["rounds"] == [30.0, 10.0, 20.0]
    assert row["errors"] == 3


def _latency_row(p50: tuple[float, float], p99: tuple[float, float]) -> dict[str, Any]:
    return {
        "plugin": "istio",
        "object": "VS",
        "samples": 3,
        "oursP50Ms": p50[0],
        "rawP50Ms": p50[1],
        "ratioP50": round(p50[0] / p50[1], 2),
        "oursP99Ms": p99[0],
        "rawP99Ms": p99[1],
        "ratioP99": round(p99[0] / p99[1], 2),
        "oursCpuMs": 1.0,
        "rawCpuMs": 0.5,
        "patchBytes": 200,
        "responseBytes": 14000,
        "cacheGets": 0,
    }


def test_issue_15_verdicts_latency_watch_gets_and_both_throughput_modes() -> None:
    results = {
        "api": {"rows": [_api_row("ours-watch", [1] * 10), _api_row("ours-watch", [1] * 10, 1)]},
        "latency": {"rows": [_latency_row((5.0, 4.5), (20.0, 10.0))]},
        "throughput": {
            "rows": [
                {
                    "plugin": "istio",
                    "rollouts": 500,
                    "driver": d,
                    "stepsPerSecond": 30.0,
                    "vsBaseline": ratio,
                    "errors": 0,
                }
                for d, ratio in (("ours-read", 0.5), ("ours-watch", 2.1), ("ours-live", 1.9))
            ]
        },
    }
    verdicts = report.evaluate(results)
    gets = [v for v in verdicts if v.target.startswith("0 GETs")]
    assert [v.ok for v in gets] == [True, False]
    (p50,) = [v for v in verdicts if v.target.endswith("(median)")]
    (p99,) = [v for v in verdicts if v.target.endswith("(p99)")]
    assert (p50.ok, p99.ok) == (True, False)
    assert p99.gap == "2.0x, 1.60x over the goal"
    tp = {v.case: v.ok for v in verdicts if v.target.startswith(">=2x")}
    assert tp == {"istio N=500 (ours-watch)": True, "istio N=500 (ours-live)": False}


def test_render_names_the_command_the_load_and_the_new_tables() -> None:
    results: dict[str, Any] = {
        "date": "2026-01-01 00:00 UTC",
        "mode": "full",
        "seconds": 10,
        "command": "uv run python -m bench --update-readme",
        "note": "2 cores shared with other jobs",
        "machine": {
            "nproc": 2,
            "cpu": "x",
            "memoryGiB": 1,
            "implementation": "CPython",
            "python": "3.11",
            "kernel": "6",
            "loadAverageAtStart": [1, 2, 3],
            "loadAverageAtEnd": [3, 2, 1],
        },
        "latency": {"rows": [_latency_row((5.0, 4.5), (20.0, 10.0))]},
        "memory": {
            "rows": [],
            "cache": [
                {
                    "plugin": "istio",
                    "object": "VS",
                    "objectBytes": 13747,
                    "points": [
                        {"rollouts": 1000, "rssKiB": 12288},
                        {"rollouts": 5000, "rssKiB": 61440},
                    ],
                    "kibPerRollout": 12.29,
                    "dictsKibPerRollout": 138.1,
                }
            ],
        },
    }
    text = report.render(results)
    assert "Command: `uv run python -m bench --update-readme`" in text
    assert "Load: 2 cores shared with other jobs" in text
    assert "| istio | VS | 3 | 5.0 | 4.5 | 1.11 | 20.0 | 10.0 | 2.0 | 1.0 / 0.5 |" in text
    assert "| istio | VS | 13747 | 12.0 | 60.0 | 12.29 | 138.1 |" in text
