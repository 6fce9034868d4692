"""Turn results into targets (PASS/MISS with the gap) and Markdown tables.

The same Markdown is printed and, with ``--update-readme``, placed between the README markers,
so what the README says is exactly what the last full run printed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["END", "START", "Verdict", "evaluate", "render", "replace_section"]

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"

PLAN_BUDGET_US = 5000.0
BYTES_FACTOR = 10.0
THROUGHPUT_FACTOR = 2.0
LATENCY_FACTOR = 1.25
OURS = ("ours-read", "ours-live", "ours-watch")
THROUGHPUT_MODES = ("ours-live", "ours-watch")
"""The modes issue 15 sets the throughput goal for (``ours-read`` is shown, not judged)."""


@dataclass(frozen=True)
class Verdict:
    target: str
    case: str
    measured: str
    ok: bool | None
    """None: not measured in this run."""
    gap: str = ""

    @property
    def status(self) -> str:
        return "n/a" if self.ok is None else ("PASS" if self.ok else "MISS")


def _api_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return list((results.get("api") or {}).get("rows", []))


def evaluate(results: dict[str, Any]) -> list[Verdict]:
    """Every issue-8 and issue-15 target, per plugin/object/driver where it applies."""
    out: list[Verdict] = []
    api = _api_rows(results)
    for row in api:
        if row["driver"] not in OURS:
            continue
        case = f"{row['plugin']}: {row['object']} ({row['driver']})"
        bad = [
            i + 1
            for i, s in enumerate(row["steps"])
            if s["writes"] != s["changedObjects"] or s["failedWrites"]
        ]
        out.append(
            Verdict(
                "one write per changed object",
                case,
                f"{row['perStep']['writes']} writes/step",
                not bad,
                f"steps {bad} wrote more than they changed" if bad else "",
            )
        )
        if row["driver"] == "ours-watch":
            gets = [s["gets"] for s in row["steps"]] + [row["noop"]["gets"]]
            out.append(
                Verdict(
                    "0 GETs per step with the watch cache (steady state)",
                    case,
                    f"{sum(gets)} GETs in {len(gets)} reconciles (each with a verify)",
                    sum(gets) == 0,
                    f"{sum(gets)} GETs" if sum(gets) else "",
                )
            )
        if row["driver"] == "ours-live":
            gets = [s["gets"] for s in row["steps"]] + [row["noop"]["gets"]]
            out.append(
                Verdict(
                    "no GET with live objects",
                    case,
                    f"{sum(gets)} GETs in {len(gets)} reconciles",
                    sum(gets) == 0,
                    f"{sum(gets)} GETs ({row['perStep']['notFound']}/step were 404s)"
                    if sum(gets)
                    else "",
                )
            )
        out.append(
            Verdict(
                "no-op reconcile sends no write",
                case,
                f"{row['noop']['writes']} writes, {row['noop']['requests']} requests",
                row["noop"]["writes"] == 0,
                f"{row['noop']['writes']} writes" if row["noop"]["writes"] else "",
            )
        )
    for row in api:
        if (
            row["plugin"] != "istio"
            or "50 http routes" not in row["object"]
            or row["driver"] != "ours-read"
        ):
            continue
        ratio = row["vsBaseline"]["writeBytes"]
        ok = ratio is not None and ratio >= BYTES_FACTOR
        out.append(
            Verdict(
                ">=10x fewer request bytes/step than a full PUT (50-route VirtualService)",
                row["object"],
                f"{row['perStep']['writeBytes']:.0f} B vs PUT; {ratio}x",
                ok,
                "" if ok else f"{ratio}x, {BYTES_FACTOR / (ratio or 1):.1f}x short",
            )
        )
    for row in (results.get("planning") or {}).get("rows", []):
        if row["plugin"] == "istio" and row["size"] == 500:
            us = row["enginePlanUs"]["median"]
            ok = us < PLAN_BUDGET_US
            out.append(
                Verdict(
                    "plan a 500-route VirtualService in < 5 ms",
                    row["object"],
                    f"{us / 1000:.2f} ms (median), {row['enginePlanUs']['best'] / 1000:.2f} ms (best)",
                    ok,
                    "" if ok else f"{us / PLAN_BUDGET_US:.1f}x over budget",
                )
            )
    for curve in (results.get("planning") or {}).get("curves", []):
        out.append(
            Verdict(
                "planning grows linearly or better",
                f"{curve['plugin']}: {curve['grows']}",
                f"exponent {curve['exponent100to1000']} (100->1000)",
                curve["linear"],
                "" if curve["linear"] else f"t ~ n^{curve['exponent100to1000']}",
            )
        )
    for row in (results.get("throughput") or {}).get("rows", []):
        if row["driver"] not in THROUGHPUT_MODES:
            continue
        ratio = row["vsBaseline"]
        unfinished = row.get("unfinishedRollouts") or 0
        ok = ratio is not None and ratio >= THROUGHPUT_FACTOR and not row["errors"]
        ok = ok and not unfinished
        out.append(
            Verdict(
                ">=2x the GET+PUT throughput",
                f"{row['plugin']} N={row['rollouts']} ({row['driver']})",
                f"{row['stepsPerSecond']} steps/s, {ratio}x",
                ok,
                ""
                if ok
                else f"{ratio}x ({row['errors']} errors"
                + (f", {unfinished} rollouts unfinished" if unfinished else "")
                + ")",
            )
        )
    for row in (results.get("latency") or {}).get("rows", []):
        for q in ("P50", "P99"):
            ratio = row[f"ratio{q}"]
            ok = ratio is not None and ratio <= LATENCY_FACTOR
            out.append(
                Verdict(
                    f"step <= 1.25x one raw PATCH ({'median' if q == 'P50' else 'p99'})",
                    f"{row['plugin']}: {row['object']}",
                    f"{row[f'ours{q}Ms']} ms vs {row[f'raw{q}Ms']} ms; {ratio}x",
                    ok,
                    "" if ok else f"{ratio}x, {(ratio or 0) / LATENCY_FACTOR:.2f}x over the goal",
                )
            )
    return out


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join("" if c is None else str(c) for c in r) + " |" for r in rows)
    return [*lines, ""]


def _kib(v: int | None) -> str:
    return "" if v is None else f"{v / 1024:.1f} MiB"


def _mib(kib: float | None) -> str:
    return "" if kib is None else f"{kib / 1024:.1f}"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    command = results.get("command") or "uv run python -m bench" + (
        " --quick" if results["mode"] == "quick" else ""
    )
    lines = [
        f"Measured {results['date']} ({results['mode']} run, {results['seconds']:.0f} s) on "
        f"{m['nproc']} CPUs ({m['cpu']}), {m['memoryGiB']} GiB, {m['implementation']} "
        f"{m['python']}, Linux {m['kernel']}; load average {m['loadAverageAtStart']} at start, "
        f"{m.get('loadAverageAtEnd')} at end"
        + (f"; kube-apiserver {results['apiserver']}" if results.get("apiserver") else "")
        + f". Command: `{command}`.",
        "",
    ]
    if results.get("note"):
        lines += [f"Load: {results['note']}", ""]
    if results.get("skipped"):
        lines += [
            "Skipped: " + "; ".join(f"{k} ({v})" for k, v in sorted(results["skipped"].items())),
            "",
        ]
    verdicts = evaluate(results)
    if verdicts:
        lines += ["**Targets (issues 8 and 15)**", ""]
        lines += _table(
            ("target", "case", "measured", "result", "gap"),
            ((v.target, v.case, v.measured, v.status, v.gap) for v in verdicts),
        )
    planning = results.get("planning")
    if planning:
        lines += [
            "**Planning cost** (one steady-state step, 10% -> 20%; µs per plan, median of batches)",
            "",
        ]
        lines += _table(
            (
                "plugin",
                "object",
                "case",
                "engine plan_all",
                "plugin.plan",
                "no-op plan",
                "patch ops",
            ),
            (
                (
                    r["plugin"],
                    r["object"],
                    r["case"],
                    r["enginePlanUs"]["median"],
                    r["pluginPlanUs"]["median"],
                    r["noopPlanUs"]["median"],
                    r["patchOps"],
                )
                for r in planning["rows"]
            ),
        )
        lines += ["**Planning curve** (µs per plan_all, best batch)", ""]
        lines += _table(
            (
                "plugin",
                "grows",
                "n=10",
                "n=100",
                "n=1000",
                "exponent 10->100",
                "exponent 100->1000",
                "linear",
            ),
            (
                (
                    c["plugin"],
                    c["grows"],
                    *(p["us"] for p in c["points"]),
                    c["exponent10to100"],
                    c["exponent100to1000"],
                    "yes" if c["linear"] else "NO",
                )
                for c in planning["curves"]
            ),
        )
    api = _api_rows(results)
    if api:
        lines += [
            "**API efficiency** (per step of a 10-step canary; req bytes are request bodies, "
            "resp bytes response bodies, watch bytes what the watch stream delivered; "
            "ratio = GET+PUT / ours; `ours-watch` steps include a verify)",
            "",
        ]
        lines += _table(
            (
                "plugin",
                "object",
                "driver",
                "req/step",
                "GET/step",
                "writes/step",
                "req bytes/step",
                "resp bytes/step",
                "watch bytes/step",
                "bytes ratio",
                "req ratio",
                "no-op req",
                "no-op writes",
            ),
            (
                (
                    r["plugin"],
                    r["object"],
                    r["driver"],
                    r["perStep"]["requests"],
                    r["perStep"]["gets"],
                    r["perStep"]["writes"],
                    int(r["perStep"]["requestBytes"]),
                    int(r["perStep"]["responseBytes"]),
                    int(r["perStep"].get("watchBytes") or 0),
                    r["vsBaseline"]["requestBytes"],
                    r["vsBaseline"]["requests"],
                    r["noop"]["requests"],
                    r["noop"]["writes"],
                )
                for r in api
            ),
        )
    tp = (results.get("throughput") or {}).get("rows", [])
    if tp:
        lines += [
            "**Throughput** (N rollouts x 10 steps, all in flight, run by a pool of "
            f"{_workers(tp)} worker threads as in a controller, on each plugin's typical object; "
            "the median round by steps/s; ratio = ours / GET+PUT; failed steps are not counted "
            "as steps; CPU is per step, by process)",
            "",
        ]
        lines += _table(
            (
                "plugin",
                "object",
                "N",
                "driver",
                "steps/s",
                "rounds",
                "p50 ms",
                "p99 ms",
                "req/step",
                "CPU ms/step client / apiserver / etcd",
                "ratio",
                "errors",
            ),
            (
                (
                    r["plugin"],
                    r["object"],
                    r["rollouts"],
                    r["driver"],
                    r["stepsPerSecond"],
                    " / ".join(str(x) for x in r.get("rounds", [])),
                    r["p50Ms"],
                    r["p99Ms"],
                    r["requestsPerStep"],
                    " / ".join(
                        str(v) for v in (r.get("cpuMsPerStep") or {}).values() if v is not None
                    ),
                    r["vsBaseline"],
                    r["errors"],
                )
                for r in tp
            ),
        )
    lat = (results.get("latency") or {}).get("rows", [])
    if lat:
        lines += [
            "**Step latency** (one rollout, one step at a time: plan from the watch cache + "
            "guarded patch + verify from the cache, vs one raw PATCH of the same bytes to a twin "
            "object, alternating; client CPU is this process's time per step)",
            "",
        ]
        lines += _table(
            (
                "plugin",
                "object",
                "steps",
                "ours p50 ms",
                "raw p50 ms",
                "p50 ratio",
                "ours p99 ms",
                "raw p99 ms",
                "p99 ratio",
                "client CPU ms ours / raw",
                "patch bytes",
                "response bytes",
                "GETs",
            ),
            (
                (
                    r["plugin"],
                    r["object"],
                    r["samples"],
                    r["oursP50Ms"],
                    r["rawP50Ms"],
                    r["ratioP50"],
                    r["oursP99Ms"],
                    r["rawP99Ms"],
                    r["ratioP99"],
                    f"{r['oursCpuMs']} / {r['rawCpuMs']}",
                    r["patchBytes"],
                    r["responseBytes"],
                    r["cacheGets"],
                )
                for r in lat
            ),
        )
    lines += _servercost(results.get("servercost"))
    mem = (results.get("memory") or {}).get("rows", [])
    if mem:
        lines += [
            "**Memory** (child process; 1,000 rollouts' objects, one plan each, plans kept)",
            "",
        ]
        lines += _table(
            (
                "plugin",
                "object",
                "RSS after imports",
                "+ objects",
                "peak while planning",
                "planning adds",
            ),
            (
                (
                    r["plugin"],
                    r.get("object", r.get("error", "")),
                    _kib(r.get("rssAfterImportsKiB")),
                    _kib(r.get("objectsDeltaKiB")),
                    _kib(r.get("peakWhilePlanningKiB") or r.get("processPeakKiB")),
                    _kib(r.get("planningDeltaKiB")),
                )
                for r in mem
            ),
        )
    cache = (results.get("memory") or {}).get("cache", [])
    if cache:
        counts = [p["rollouts"] for p in (cache[0].get("points") or [])]
        lines += [
            "**Watch cache memory** (child process; RSS growth in MiB as N rollouts' objects go "
            "into one cache; the same objects held as parsed dicts for comparison)",
            "",
        ]
        lines += _table(
            (
                "plugin",
                "object",
                "JSON bytes/rollout",
                *(f"N={n}" for n in counts),
                "KiB/rollout",
                "as dicts KiB/rollout",
            ),
            (
                (
                    r["plugin"],
                    r.get("object", r.get("error", "")),
                    r.get("objectBytes"),
                    *(_mib(p["rssKiB"]) for p in (r.get("points") or [])),
                    r.get("kibPerRollout"),
                    r.get("dictsKibPerRollout"),
                )
                for r in cache
            ),
        )
    return "\n".join(lines).rstrip() + "\n"


COST_KINDS = (
    ("get", "GET"),
    ("patch", "PATCH"),
    ("patch-ignore", "PATCH Ignore"),
    ("patch-strict", "PATCH Strict"),
    ("get+put", "GET+PUT step"),
)


def _cost(kind: dict[str, Any]) -> str:
    kib = kind.get("apiserverAllocKiB")
    return f"{kind['apiserverMs']:.2f} + {kind['etcdMs']:.2f} = {kind['serverMs']:.2f}" + (
        f" ({kib:,.0f} KiB)" if kib is not None else ""
    )


def _span(values: Sequence[float]) -> str:
    return f"{values[0]:.2f}–{values[1]:.2f}"


def _bounds(values: Sequence[float]) -> list[float]:
    return [min(values), max(values)]


def _alloc_spread(rows: Sequence[dict[str, Any]]) -> tuple[float, float] | None:
    """Median and widest half-range of a PATCH kind's allocation over rounds, in % of its
    pooled value."""
    spreads = [
        (k["apiserverAllocKiBRange"][1] - k["apiserverAllocKiBRange"][0]) / 2 / base * 100
        for r in rows
        for name in ("patch", "patch-ignore", "patch-strict")
        if (base := (k := r["kinds"][name]).get("apiserverAllocKiB"))
    ]
    return (statistics.median(spreads), max(spreads)) if spreads else None


def _alloc_saving(row: dict[str, Any]) -> str:
    kib = row["ignoreSavesApiserverMs"].get("allocKiB")
    base = row["kinds"]["patch"].get("apiserverAllocKiB")
    if kib is None or not base:
        return ""
    return f"{kib} KiB ({kib / base * 100:+.1f}%)"


def _servercost(section: dict[str, Any] | None) -> list[str]:
    """The server-cost tables: CPU per request kind, the ceiling, fieldValidation=Ignore."""
    rows = (section or {}).get("rows", [])
    if not section or not rows:
        return []
    idle = section.get("idleCpuMsPerSecond") or {}
    ticks = [k["tickShare"] for r in rows for k in r["kinds"].values() if k["tickShare"]]
    lines = [
        f"**Server cost per request** (kube-apiserver + etcd CPU ms per request = total, and "
        "in parentheses the apiserver's Go heap allocation per request, from its /metrics; one "
        f"object, one request at a time; all CPU over all requests of {section['rounds']} "
        "interleaved rounds, order rotated each round (the apiserver's GC comes in lumps "
        "a batch median would drop or double); PATCH is our "
        "guarded JSON patch of a real step, alternating 30% -> 40% -> 30%, with "
        "`fieldValidation` unset (server default, Warn), Ignore or Strict; GET+PUT step is "
        "the baseline's step, its GETs included)",
        "",
    ]
    lines += _table(
        ("plugin", "object", *(label for _, label in COST_KINDS), "GET+PUT range"),
        (
            (
                r["plugin"],
                r["object"],
                *(_cost(r["kinds"][k]) for k, _ in COST_KINDS),
                _span(r["kinds"]["get+put"]["range"]["serverMs"]),
            )
            for r in rows
        ),
    )
    lines += [
        f"Clock ticks are {section['tickMs']} ms: each batch runs until the servers have used "
        f"{section.get('batchCpuMs')} ms of CPU, so a tick per process is at most "
        f"{max(ticks, default=0) * 100:.1f}% of a batch. GET+PUT range: per-request total of its fastest and slowest round. Idle, the servers use "
        f"{idle.get('kube-apiserver')} (apiserver) and {idle.get('etcd')} (etcd) ms of CPU "
        "per second, included above.",
        "",
        "**Throughput ceiling from server CPU** (server ratio = GET+PUT step / our PATCH, "
        "server CPU, pooled; median-round ratio = the same from each kind's median round, "
        "which leaves out the lumps; alloc ratio = the same in apiserver heap allocation, the steadier "
        "cross-check; ceiling = (baseline client CPU per step + its server CPU) / our PATCH's "
        "server CPU)",
        "",
    ]
    lines += _table(
        (
            "plugin",
            "object",
            "our query",
            "PATCH ms",
            "GET+PUT step ms",
            "GETs + writes per GET+PUT step",
            "server ratio",
            "median-round ratio",
            "alloc ratio",
            "baseline client ms/step",
            "ceiling",
        ),
        (
            (
                r["plugin"],
                r["object"],
                f"`{r['oursQuery']}`",
                f"{r['kinds'][r['oursKind']]['serverMs']:.2f}",
                f"{r['kinds']['get+put']['serverMs']:.2f}",
                f"{r['getPutPerStep']['gets']:g} + {r['getPutPerStep']['writes']:g}",
                r["getPutOverPatch"],
                r.get("getPutOverPatchMedianRound"),
                r.get("getPutOverPatchAlloc"),
                " / ".join(
                    f"{c['baselineClientMs']} (N={c['rollouts']})"
                    for c in (r.get("ceiling") or {}).get("withBaselineClient", [])
                )
                or "not measured (0)",
                " / ".join(
                    f"{c['ceiling']}x (N={c['rollouts']})"
                    for c in (r.get("ceiling") or {}).get("withBaselineClient", [])
                )
                or f"{(r.get('ceiling') or {}).get('serverOnly', r['getPutOverPatch'])}x "
                "(server only)",
            )
            for r in rows
        ),
    )
    lines += [
        "The ceiling is the steps/s our driver could reach over GET+PUT when throughput is "
        "CPU-bound -- client, kube-apiserver and etcd sharing the same CPUs, all of them busy "
        "-- and our client cost nothing: measured server CPU only, no network or lock waits. "
        "The baseline's client CPU per step is the one the throughput section measured on the "
        "same object in the same run (per N); where it did not run, the ceiling counts no "
        "client CPU on either side (server only). A watch cache client adds the delivery of "
        "each write's event, not counted here.",
        "",
        "**fieldValidation on our step's patch** (apiserver CPU ms per request, pooled "
        "[min–max over rounds]; the difference is pooled [min–max of the per-round "
        "differences]; resolution = one tick in each kind's batches, per request; the "
        f"verdict is on CPU, and the same sign in all {section['rounds']} rounds happens by "
        f"chance in 1 row of {2 ** (section['rounds'] - 1)}; the allocation difference is the "
        "steadier figure"
        + (
            f": a patch's allocation varies by ±{spread[0]:.1f}% between rounds (median over "
            f"rows), at most ±{spread[1]:.1f}%)"
            if (spread := _alloc_spread(rows)) is not None
            else ")"
        ),
        "",
    ]
    lines += _table(
        (
            "plugin",
            "object",
            "patch ops / bytes",
            "unset (Warn)",
            "Ignore",
            "Strict",
            "unset − Ignore",
            "resolution",
            "unset − Ignore alloc",
            "verdict",
        ),
        (
            (
                r["plugin"],
                r["object"],
                f"{r['patchOps']} / {r['patchBytes']}",
                *(
                    f"{r['kinds'][k]['apiserverMs']:.2f} "
                    f"[{_span(r['kinds'][k]['range']['apiserverMs'])}]"
                    for k in ("patch", "patch-ignore", "patch-strict")
                ),
                f"{r['ignoreSavesApiserverMs']['pooled']:.2f} "
                f"[{_span(_bounds(r['ignoreSavesApiserverMs']['perRound']))}]",
                r["ignoreSavesApiserverMs"]["resolution"],
                _alloc_saving(r),
                r["ignoreSavesApiserverMs"]["verdict"],
            )
            for r in rows
        ),
    )
    return lines


def replace_section(readme: str, body: str) -> str:
    """Put ``body`` between the markers; append a Benchmarks section when there are none."""
    block = f"{START}\n{body.rstrip()}\n{END}"
    start, end = readme.find(START), readme.find(END)
    if start == -1 and end == -1:
        return readme.rstrip() + "\n\n## Benchmarks\n\n" + block + "\n"
    if start == -1 or end == -1 or end < start:
        raise ValueError(f"README has a broken {START} ... {END} pair")
    return readme[:start] + block + readme[end + len(END) :]


def _workers(rows: list[dict[str, Any]]) -> str:
    """The worker-pool size of the throughput rows (runs before it had one thread per rollout)."""
    sizes = sorted({str(r.get("workers", "N")) for r in rows})
    return "/".join(sizes) if sizes != ["N"] else "N (one per rollout)"
