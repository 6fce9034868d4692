"""Rendering: machine formats on stdout, notes and tables for people on stderr/stdout."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console

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
        header = ",".join(caps.get("headerMatch", [])) if caps.get("headerRoutes") else "-"
        out.append(
            (
                row["name"],
                row["distribution"],
                row["version"],
                row["status"],
                header or "-",
                caps.get("mirror", "?"),
                row.get("error") or "",
            )
        )
    click.echo(
        columns(
            ("NAME", "DISTRIBUTION", "VERSION", "STATUS", "HEADER-MATCH", "MIRROR", "ERROR"), out
        )
    )
