"""Rendering: machine formats on stdout, notes and tables for people on stderr/stdout."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

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


def plugin_table(rows: Sequence[dict[str, Any]]) -> None:
    table = Table(show_edge=False, pad_edge=False)
    for col in ("NAME", "DISTRIBUTION", "VERSION", "STATUS", "HEADER", "MIRROR", "NOTE"):
        table.add_column(col)
    for row in rows:
        caps = row.get("capabilities") or {}
        header = ",".join(caps.get("headerMatch", [])) if caps.get("headerRoutes") else "-"
        table.add_row(
            row["name"],
            row["distribution"],
            row["version"],
            row["status"],
            header or "-",
            caps.get("mirror", "?"),
            row.get("error") or "",
        )
    Console(highlight=False, soft_wrap=True).print(table)
