"""``uv run python -m bench [--quick] [--only planning|api|latency|servercost|throughput|memory] [--update-readme]``

Runs on demand, never as a test. Prints the results as Markdown, writes the raw numbers to
``bench/results/<date>[-quick].json`` and, only with ``--update-readme`` (full runs of every
section), replaces the README's benchmark section.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench import machine, report
from bench.scenarios import available, bench_registry

SECTIONS = ("planning", "api", "latency", "servercost", "throughput", "memory")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short batches, N=20 rollouts")
    p.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    p.add_argument("--plugins", help="comma-separated plugin names (default: every loadable one)")
    p.add_argument("--rollouts", help="comma-separated N for throughput (default 100,500)")
    p.add_argument(
        "--rounds", type=int, help="throughput rounds per driver, median kept (default 3; quick 1)"
    )
    p.add_argument(
        "--samples", type=int, help="latency: steps per plugin, each also as a raw PATCH (200)"
    )
    p.add_argument(
        "--cost-rounds",
        type=int,
        help="servercost: interleaved rounds per request kind (default 5; quick 3)",
    )
    p.add_argument(
        "--note",
        help="what else loads the machine (printed with the results, e.g. shared cores)",
    )
    p.add_argument("--update-readme", action="store_true")
    args = p.parse_args(argv)
    sections = tuple(args.only or SECTIONS)
    if args.update_readme and (args.only or args.plugins):
        p.error("--update-readme needs a run of every section and plugin")
    sizes = tuple(int(n) for n in args.rollouts.split(",")) if args.rollouts else None
    sizes = sizes or ((20,) if args.quick else (100, 500))

    registry = bench_registry()
    wanted = args.plugins.split(",") if args.plugins else None
    plugins, skipped = available(registry, wanted)
    for name, why in skipped.items():
        print(f"skipping {name}: {why}", file=sys.stderr)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "machine": machine.describe(),
        "plugins": plugins,
        "skipped": skipped,
        "command": shlex.join(["uv", "run", "python", "-m", "bench", *(argv or sys.argv[1:])]),
        "note": args.note,
    }
    if "planning" in sections:
        from bench import planning

        print("planning ...", file=sys.stderr)
        results["planning"] = planning.run(registry, plugins, quick=args.quick)
    if {"api", "latency", "servercost", "throughput"} & set(sections):
        from bench import api, cluster, latency, servercost, throughput

        with cluster.control_plane(plugins) as cp:
            results["apiserver"] = cp.version().get("gitVersion")
            if "api" in sections:
                print("api efficiency ...", file=sys.stderr)
                client = cluster.client(cp)
                try:
                    results["api"] = api.run(cp, client, registry, plugins)
                finally:
                    client.close()  # type: ignore[no-untyped-call]
            if "latency" in sections:
                samples = args.samples or (40 if args.quick else 200)
                print(f"step latency ({samples} steps per plugin) ...", file=sys.stderr)
                results["latency"] = latency.run(cp, registry, plugins, samples)
            if "servercost" in sections:
                # Before throughput, whose thousands of namespaces would stay in the servers.
                print("server cost per request kind ...", file=sys.stderr)
                cost_rounds = args.cost_rounds or (3 if args.quick else servercost.ROUNDS)
                results["servercost"] = servercost.run(cp, registry, plugins, cost_rounds)
            if "throughput" in sections:
                print(f"throughput N={sizes} ...", file=sys.stderr)
                rounds = args.rounds or (1 if args.quick else 3)
                results["throughput"] = throughput.run(cp, registry, plugins, sizes, rounds)
    if "memory" in sections:
        from bench import memory

        print("memory ...", file=sys.stderr)
        results["memory"] = memory.run(plugins)
    if "servercost" in results:
        from bench import servercost

        servercost.add_ceilings(results["servercost"], results.get("throughput"))
    results["machine"]["loadAverageAtEnd"] = machine.load_average()
    results["seconds"] = time.perf_counter() - started

    text = report.render(results)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = dt.date.today().isoformat() + ("-quick" if args.quick else "")
    if args.only or args.plugins or args.rollouts:
        stem += "-partial"
    out = RESULTS / f"{stem}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"raw results: {out.relative_to(ROOT)}", file=sys.stderr)
    if args.update_readme:
        readme = ROOT / "README.md"
        readme.write_text(report.replace_section(readme.read_text(), text))
        print("README.md benchmark section updated", file=sys.stderr)
    misses = [v for v in report.evaluate(results) if v.ok is False]
    print(f"{len(misses)} target(s) missed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
