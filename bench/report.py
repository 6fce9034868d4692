"""Turn results into targets (PASS/MISS with the gap) and Markdown tables.

The same Markdown is printed and, with ``--update-readme``, placed between the README markers,
so what the README says is exactly what the last full run printed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["END", "START", "Verdict", "evaluate", "render", "replace_section"]

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"

PLAN_BUDGET_US = 5000.0
BYTES_FACTOR = 10.0
THROUGHPUT_FACTOR = 2.0
OURS = ("ours-read", "ours-live")


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
    """Every issue-8 target, per plugin/object/driver where it applies."""
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
        if row["driver"] not in OURS:
            continue
        ratio = row["vsBaseline"]
        ok = ratio is not None and ratio >= THROUGHPUT_FACTOR and not row["errors"]
        out.append(
            Verdict(
                ">=2x the GET+PUT throughput",
                f"{row['plugin']} N={row['rollouts']} ({row['driver']})",
                f"{row['stepsPerSecond']} steps/s, {ratio}x",
                ok,
                "" if ok else f"{ratio}x ({row['errors']} errors)",
            )
        )
    return out


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join("" if c is None else str(c) for c in r) + " |" for r in rows)
    return [*lines, ""]


def _kib(v: int | None) -> str:
    return "" if v is None else f"{v / 1024:.1f} MiB"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Measured {results['date']} ({results['mode']} run, {results['seconds']:.0f} s) on "
        f"{m['nproc']} CPUs ({m['cpu']}), {m['memoryGiB']} GiB, {m['implementation']} "
        f"{m['python']}, Linux {m['kernel']}; load average {m['loadAverageAtStart']} at start, "
        f"{m.get('loadAverageAtEnd')} at end"
        + (f"; kube-apiserver {results['apiserver']}" if results.get("apiserver") else "")
        + ". Command: `uv run python -m bench"
        + (" --quick" if results["mode"] == "quick" else "")
        + "`.",
        "",
    ]
    if results.get("skipped"):
        lines += [
            "Skipped: " + "; ".join(f"{k} ({v})" for k, v in sorted(results["skipped"].items())),
            "",
        ]
    verdicts = evaluate(results)
    if verdicts:
        lines += ["**Targets (issue 8)**", ""]
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
            "**API efficiency** (per step of a 10-step canary; bytes are request bodies; "
            "ratio = GET+PUT / ours)",
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
            "**Throughput** (N rollouts x 10 steps, concurrent; the median round by steps/s; "
            "ratio = ours / GET+PUT; failed steps are not counted as steps)",
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
                    r["vsBaseline"],
                    r["errors"],
                )
                for r in tp
            ),
        )
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
    return "\n".join(lines).rstrip() + "\n"


def replace_section(readme: str, body: str) -> str:
    """Put ``body`` between the markers; append a Benchmarks section when there are none."""
    block = f"{START}\n{body.rstrip()}\n{END}"
    start, end = readme.find(START), readme.find(END)
    if start == -1 and end == -1:
        return readme.rstrip() + "\n\n## Benchmarks\n\n" + block + "\n"
    if start == -1 or end == -1 or end < start:
        raise ValueError(f"README has a broken {START} ... {END} pair")
    return readme[:start] + block + readme[end + len(END) :]
