"""Rendering: machine formats on stdout, notes and tables for people on stderr/stdout."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console

from routers.contract import Observation
from routers.engine import OfflineResult
from routers.io import dump_yaml
from routers.planning.plan import Plan


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def notes(plans: Iterable[Plan]) -> None:
    for plan in plans:
        for note in plan.notes:
            click.echo(f"{note.level}: {note.plugin}: {note.message}", err=True)


def plan_result(result: OfflineResult, output: str) -> None:
    ops = [entry for plan in result.plans for entry in plan.to_data()]
    if output == "patch":
        click.echo(json.dumps(ops, indent=2))
    else:
        changed = [result.after[ref] for ref in result.changed if result.after.get(ref) is not None]
        deleted = [ref for ref in result.changed if result.after.get(ref) is None]
        for ref in deleted:
            click.echo(f"delete: {ref}", err=True)
        if output == "json":
            click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": changed}, indent=2))
        elif changed:
            click.echo(dump_yaml(changed), nl=False)
    if not ops:
        click.echo("no changes: the live objects already express this state", err=True)


def columns(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """kubectl-style plain table: greppable, never truncated, no box drawing."""
    data = [list(headers), *([str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in data) for i in range(len(headers))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in data
    )


def plugin_table(rows: Sequence[dict[str, Any]]) -> None:
    out = []
    for row in rows:
        caps = row.get("capabilities") or {}
        limits = caps.get("headerLimits") or {}
        header = ",".join(limits.get("headerMatch", [])) if caps.get("headerRoutes") else "-"
        out.append(
            (
                row["name"],
                row["distribution"],
                row["version"],
                row["status"],
                header or "-",
                caps.get("mirror", "?"),
                row.get("evaluator") or "?",
                row.get("error") or "",
            )
        )
    click.echo(
        columns(
            (
                "NAME",
                "DISTRIBUTION",
                "VERSION",
                "STATUS",
                "HEADER-MATCH",
                "MIRROR",
                "EVALUATOR",
                "ERROR",
            ),
            out,
        )
    )


def applied(outcome: Any) -> None:
    verb = "would " if outcome.dry_run else ""
    for done in outcome.applied:
        click.echo(f"{verb}{done.op.verb}: {done.op.ref} ({done.op.reason})", err=True)
    if not outcome.applied:
        click.echo("no changes: the cluster already expresses this state", err=True)


_VOLATILE = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")


def _clean(obj: Any) -> Any:
    import copy

    out = copy.deepcopy(obj)
    if isinstance(out, dict):
        out.pop("status", None)
        meta = out.get("metadata")
        if isinstance(meta, dict):
            for key in _VOLATILE:
                meta.pop(key, None)
    return out


def unified_diff(result: OfflineResult) -> str:
    import difflib

    chunks: list[str] = []
    for ref in result.changed:
        before = result.before.get(ref)
        after = result.after.get(ref)
        a = dump_yaml([_clean(before)]).splitlines(keepends=True) if before is not None else []
        b = dump_yaml([_clean(after)]).splitlines(keepends=True) if after is not None else []
        name = str(ref).replace(" ", "/")
        chunks.extend(difflib.unified_diff(a, b, f"live/{name}", f"result/{name}"))
    return "".join(chunks)


def observations_data(observations: Sequence[Observation]) -> list[dict[str, Any]]:
    return [
        {
            "plugin": o.plugin,
            "weights": [
                {
                    "location": w.location,
                    "stable": w.stable,
                    "canary": w.canary,
                    "additional": dict(w.additional),
                }
                for w in o.weights
            ],
            "headerRoutes": list(o.header_routes),
            "mirrorRoutes": dict(o.mirror_routes),
            "ready": o.ready,
            "conditions": [
                {
                    "object": c.obj,
                    "type": c.type,
                    "status": c.status,
                    "reason": c.reason,
                    "current": c.current,
                }
                for c in o.conditions
            ],
            "problems": list(o.problems),
        }
        for o in observations
    ]


def _routes_text(o: Observation, sep: str, mirror: str) -> str:
    mirrors = (mirror.format(n, p) for n, p in o.mirror_routes.items())
    return sep.join([*o.header_routes, *mirrors]) or "-"


def observations_table(observations: Sequence[Observation]) -> str:
    rows = []
    for o in observations:
        routes = _routes_text(o, ",", "{}(mirror {:g}%)")
        ready = {True: "True", False: "False", None: "-"}[o.ready]
        if not o.weights:
            rows.append((o.plugin, "-", "-", routes, ready, "; ".join(o.problems)))
        for w in o.weights:
            pct = f"{100 * w.canary / w.total:.4g}%" if w.total else "-"
            rows.append(
                (
                    o.plugin,
                    w.location,
                    f"{w.canary}/{w.total} ({pct})",
                    routes,
                    ready,
                    "; ".join(o.problems),
                )
            )
    return columns(("TARGET", "LOCATION", "CANARY", "MANAGED-ROUTES", "READY", "PROBLEMS"), rows)


class RunDisplay:
    """Progress of `routers run`: a live line on a terminal, plain lines otherwise (stderr)."""

    def __init__(self) -> None:
        import sys

        self.tty = sys.stderr.isatty()
        self._live = False
        self._last = ""

    def __call__(self, event: Any) -> None:
        if event.kind in ("pause", "waiting"):
            text = event.message + (
                f" ({event.remaining:.0f}s left)" if event.remaining is not None else ""
            )
            if self.tty:
                click.echo("\r\033[K" + text, err=True, nl=False)
                self._live = True
            elif event.message != self._last:
                click.echo(event.message, err=True)
            self._last = event.message
            return
        self.close()
        state = event.state
        suffix = f" -> weight {state.weight}/{state.total}" if state is not None else ""
        if state is not None and state.route_names:
            suffix += f", routes {','.join(state.route_names)}"
        click.echo(f"{event.message}{suffix}", err=True)
        self._last = event.message

    def close(self) -> None:
        if self._live:
            click.echo("", err=True)
            self._live = False


def conditions_table(observations: Sequence[Observation]) -> str:
    rows = [
        (
            o.plugin,
            c.obj,
            c.type,
            c.status,
            c.reason,
            "current" if c.current else "STALE generation",
        )
        for o in observations
        for c in o.conditions
    ]
    if not rows:
        return ""
    return columns(("TARGET", "OBJECT", "CONDITION", "STATUS", "REASON", "GENERATION"), rows)


def stdout_is_terminal() -> bool:
    import sys

    return sys.stdout.isatty()


def _rich_status(observations: Sequence[Observation]) -> Any:
    from rich.console import Group
    from rich.table import Table

    weights = Table(title="traffic", title_justify="left")
    for col in ("target", "location", "canary", "managed routes", "ready", "problems"):
        weights.add_column(col)
    for o in observations:
        routes = _routes_text(o, ", ", "{} (mirror {:g}%)")
        ready = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[o.ready]
        for w in o.weights or ():
            pct = f"{100 * w.canary / w.total:.4g}%" if w.total else "-"
            weights.add_row(
                o.plugin,
                w.location,
                f"{w.canary}/{w.total} ({pct})",
                routes,
                ready,
                "; ".join(o.problems),
            )
        if not o.weights:
            weights.add_row(o.plugin, "-", "-", routes, ready, "; ".join(o.problems))
    parts: list[Any] = [weights]
    if any(o.conditions for o in observations):
        conds = Table(title="conditions", title_justify="left")
        for col in ("target", "object", "condition", "status", "reason"):
            conds.add_column(col)
        for o in observations:
            for c in o.conditions:
                status = c.status if c.current else f"{c.status} (stale)"
                style = "green" if c.status == "True" and c.current else "red"
                conds.add_row(o.plugin, c.obj, c.type, f"[{style}]{status}[/]", c.reason)
        parts.append(conds)
    return Group(*parts)


def watch_status(observe: Any, interval: float) -> None:
    import time

    from rich.live import Live

    with Live(_rich_status(observe()), refresh_per_second=4) as live:
        while True:
            time.sleep(interval)
            live.update(_rich_status(observe()))
