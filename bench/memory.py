"""Peak RSS while planning 1,000 objects, measured in a fresh child process per plugin.

A child, because RSS high-water marks never go down: the parent's own history (other benches,
imports of every plugin) would hide what planning costs. The child reports RSS after imports,
after building the objects (1,000 rollouts' live objects, as an informer cache holds them), and
the peak while planning one steady-state step (10% -> 20%) for each and keeping the plans. Linux only (/proc).

    python -m bench.memory <plugin> <count> <typical|api>
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


def run(plugins: list[str], count: int = 1000) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for plugin in plugins:
        from bench.scenarios import SPECS

        spec = SPECS[plugin]
        kinds = ["typical"] + (["api"] if spec.api[0].label != spec.typical.label else [])
        for which in kinds:
            proc = subprocess.run(
                [sys.executable, "-m", "bench.memory", plugin, str(count), which],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if proc.returncode != 0:
                rows.append({"plugin": plugin, "error": proc.stderr.strip()[-500:]})
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            peak = row["peakWhilePlanningKiB"] or row["processPeakKiB"]
            row["planningDeltaKiB"] = peak - row["rssWithObjectsKiB"]
            row["objectsDeltaKiB"] = row["rssWithObjectsKiB"] - row["rssAfterImportsKiB"]
            rows.append(row)
    return {"rows": rows}


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
