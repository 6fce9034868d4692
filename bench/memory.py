"""Memory, each figure from a fresh child process (Linux only: /proc).

A child, because RSS high-water marks never go down: the parent's own history (other benches,
imports of every plugin) would hide what is measured.

* planning: RSS after imports, after building the objects (1,000 rollouts' live objects as
  parsed dicts), and the peak while planning one steady-state step (10% -> 20%) for each and
  keeping the plans;
* the watch cache: RSS as 1,000 ... 5,000 rollouts' objects go into one :class:`WatchCache`
  (through ``record``, the path write responses and events take), next to the same objects held
  as parsed dicts: how the cache grows, per rollout.

    python -m bench.memory <plugin> <count> <typical|api>
    python -m bench.memory cache <plugin> <count>
    python -m bench.memory dicts <plugin> <count>
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["run"]

ROOT = Path(__file__).resolve().parent.parent


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(plugin: str, count: int, which: str) -> dict[str, Any]:
    from bench.planning import STEP, WARM, settle
    from bench.scenarios import SPECS, bench_registry, crd_facts
    from routers.engine import bind, plan_all
    from routers.model import RoutingConfig
    from routers.planning.objects import LiveObjects

    registry = bench_registry()
    registry.load(plugin)
    spec = SPECS[plugin]
    facts = crd_facts(spec.crd_set)
    template = spec.typical if which == "typical" else spec.api[0]
    rss_imports = _status_kib("VmRSS")
    work = []
    for i in range(count):
        scenario = template.with_namespace(f"ns-{i:04d}")
        objects = json.loads(json.dumps(scenario.objects))  # independent copies, like a cache
        config = RoutingConfig.from_document(scenario.routing)
        bindings = bind(config, registry)
        live = settle(bindings, config, LiveObjects.from_manifests(objects), WARM, facts)
        work.append((config, bindings, live))
    rss_loaded = _status_kib("VmRSS")
    reset = _reset_peak()
    plans = [plan_all(b, live, STEP, facts, routing=c) for c, b, live in work]
    ops = sum(len(p) for group in plans for p in group)
    return {
        "plugin": plugin,
        "object": template.label,
        "objects": count,
        "operations": ops,
        "rssAfterImportsKiB": rss_imports,
        "rssWithObjectsKiB": rss_loaded,
        "peakWhilePlanningKiB": _status_kib("VmHWM") if reset else None,
        "processPeakKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


CACHE_POINTS = (1000, 2000, 3000, 4000, 5000)


def _rollout_objects(plugin: str, i: int) -> list[dict[str, Any]]:
    """Rollout ``i``'s objects as the server would hold them: own namespace, uid, version."""
    from bench.scenarios import SPECS

    source = SPECS[plugin].api[0].with_namespace(f"ns-{i:05d}").objects
    objects: list[dict[str, Any]] = json.loads(json.dumps(source))
    for n, obj in enumerate(objects):
        obj["metadata"]["uid"] = f"{i:08d}-{n:04d}-0000-0000-000000000000"
        obj["metadata"]["resourceVersion"] = str(1000 + i)
    return objects


def cache_child(plugin: str, count: int) -> dict[str, Any]:
    """RSS while ``count`` rollouts' objects go into one cluster-wide WatchCache."""
    import gc
    import threading

    from routers.cluster import DEFAULT_TIMEOUTS, Kube, ResourceInfo, WatchCache
    from routers.planning.objects import ObjectRef

    class _Kube(Kube):
        def __init__(self) -> None:
            super().__init__(transport=None)  # type: ignore[arg-type]

        def resource(self, ref: ObjectRef) -> ResourceInfo:
            return ResourceInfo(ref.group, ref.version or "v1", ref.kind.lower() + "s", True)

    class _Stream:
        def __init__(self) -> None:
            self.done = threading.Event()

        def __iter__(self) -> Any:
            self.done.wait(600)
            return iter(())

        def stop(self) -> None:
            self.done.set()

    class _Source:
        def list(self, info: Any, namespace: Any, *, limit: int, cont: Any) -> dict[str, Any]:
            return {"metadata": {"resourceVersion": "1"}, "items": []}

        def watch(self, info: Any, namespace: Any, *, resource_version: str, timeout: int) -> Any:
            return _Stream()

    cache = WatchCache(
        _Kube(), all_namespaces=True, source=_Source(), timeouts=DEFAULT_TIMEOUTS
    )  # no transport here: the limits are given
    cache.prefetch(ObjectRef.of(o) for o in _rollout_objects(plugin, 0))
    object_bytes = sum(
        len(json.dumps(o, separators=(",", ":"))) for o in _rollout_objects(plugin, 0)
    )
    gc.collect()
    base = _status_kib("VmRSS")
    points = []
    for i in range(count):
        for obj in _rollout_objects(plugin, i):
            cache.record(obj)
        if i + 1 in CACHE_POINTS or i + 1 == count:
            gc.collect()
            stats = cache.stats()
            points.append(
                {
                    "rollouts": i + 1,
                    "objects": stats.objects,
                    "rssKiB": _status_kib("VmRSS") - base,
                    "payloadKiB": stats.bytes // 1024,
                }
            )
    cache.stop()
    return {"plugin": plugin, "objectBytes": object_bytes, "points": points}


def dicts_child(plugin: str, count: int) -> dict[str, Any]:
    """RSS of the same objects held as parsed dicts (what an informer of dicts holds)."""
    import gc

    gc.collect()
    base = _status_kib("VmRSS")
    kept = [obj for i in range(count) for obj in _rollout_objects(plugin, i)]
    gc.collect()
    return {
        "plugin": plugin,
        "rollouts": count,
        "objects": len(kept),
        "rssKiB": _status_kib("VmRSS") - base,
    }


def _child(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-500:]}
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return row


def run_cache(plugins: list[str], count: int = 5000) -> list[dict[str, Any]]:
    from bench.scenarios import SPECS

    rows: list[dict[str, Any]] = []
    for plugin in plugins:
        row = _child("cache", plugin, str(count))
        dicts = _child("dicts", plugin, str(count))
        row["plugin"] = plugin
        row["object"] = SPECS[plugin].api[0].label
        row["dictsRssKiB"] = dicts.get("rssKiB")
        points = row.get("points") or []
        if len(points) >= 2:
            first, last = points[0], points[-1]
            per = (last["rssKiB"] - first["rssKiB"]) / (last["rollouts"] - first["rollouts"])
            row["kibPerRollout"] = round(per, 2)
        if points and dicts.get("rssKiB"):
            row["dictsKibPerRollout"] = round(dicts["rssKiB"] / count, 2)
        rows.append(row)
    return rows


def run(plugins: list[str], count: int = 1000) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for plugin in plugins:
        from bench.scenarios import SPECS

        spec = SPECS[plugin]
        kinds = ["typical"] + (["api"] if spec.api[0].label != spec.typical.label else [])
        for which in kinds:
            row = _child(plugin, str(count), which)
            if "error" in row:
                rows.append({"plugin": plugin, **row})
                continue
            peak = row["peakWhilePlanningKiB"] or row["processPeakKiB"]
            row["planningDeltaKiB"] = peak - row["rssWithObjectsKiB"]
            row["objectsDeltaKiB"] = row["rssWithObjectsKiB"] - row["rssAfterImportsKiB"]
            rows.append(row)
    return {"rows": rows, "cache": run_cache(plugins)}


if __name__ == "__main__":
    if sys.argv[1] == "cache":
        print(json.dumps(cache_child(sys.argv[2], int(sys.argv[3]))))
    elif sys.argv[1] == "dicts":
        print(json.dumps(dicts_child(sys.argv[2], int(sys.argv[3]))))
    else:
        print(json.dumps(child(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
