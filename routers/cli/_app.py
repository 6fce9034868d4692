"""Command definitions. Kept thin: every command is a call into the engine or cluster layer."""

from __future__ import annotations

import json
from typing import Any

import click

from routers.cli import _render
from routers.errors import ConfigError, Problem
from routers.io import load_documents, load_one
from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.registry import default_registry

OUTPUT_PLAN = click.Choice(["yaml", "json", "patch"])


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="canary-routers", prog_name="routers")
def cli() -> None:
    """Shift traffic between stable and canary through Istio, Gateway API, NGINX or SMI.

    Offline: `routers plan --config routing.yaml --state state.yaml -f live.yaml`.
    """


def load_config(path: str) -> RoutingConfig:
    return RoutingConfig.from_document(load_one(path), source=path)


def load_desired(state_path: str | None, cleanup: bool, keep_weights: bool) -> Desired:
    if cleanup:
        if state_path:
            raise click.UsageError("--state and --cleanup are mutually exclusive")
        return Cleanup(restore_stable=not keep_weights)
    if not state_path:
        raise click.UsageError("one of --state or --cleanup is required")
    return TrafficState.parse(load_one(state_path), source=state_path)


@cli.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    metavar="FILE",
    help="Routing config: ours, an Argo trafficRouting block, or a Rollout.",
)
@click.option("--state", "state_path", metavar="FILE", help="Desired traffic state.")
@click.option("--cleanup", is_flag=True, help="Plan removal of everything we added.")
@click.option("--keep-weights", is_flag=True, help="With --cleanup: leave weights as they are.")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    metavar="FILE",
    help="Manifest file(s) holding the live objects (repeatable, '-' for stdin).",
)
@click.option("-n", "--namespace", default=None, help="Namespace for objects that name none.")
@click.option(
    "-o",
    "--output",
    default="yaml",
    type=OUTPUT_PLAN,
    show_default=True,
    help="yaml/json: the resulting objects; patch: the operations.",
)
def plan(
    config_path: str,
    state_path: str | None,
    cleanup: bool,
    keep_weights: bool,
    files: tuple[str, ...],
    namespace: str | None,
    output: str,
) -> None:
    """Plan offline against manifest files; print the result. No cluster needed."""
    from routers.engine import plan_offline

    config = load_config(config_path)
    if namespace:
        config = config.model_copy(update={"namespace": namespace})
    desired = load_desired(state_path, cleanup, keep_weights)
    result = plan_offline(config, desired, load_documents(files))
    _render.notes(result.plans)
    _render.plan_result(result, output)


@cli.group()
def plugins() -> None:
    """Installed target plugins."""


@plugins.command("list")
@click.option(
    "-o", "--output", default="table", type=click.Choice(["table", "json"]), show_default=True
)
@click.option(
    "--load/--no-load",
    default=True,
    show_default=True,
    help="Import each plugin to check it (otherwise metadata only).",
)
def plugins_list(output: str, load: bool) -> None:
    """List plugins with distribution, version, status and capabilities."""
    registry = default_registry()
    rows: list[dict[str, Any]] = []
    for name in registry.names():
        caps: dict[str, Any] | None = None
        if load:
            try:
                caps = registry.load(name).capabilities().to_data()
            except Exception:  # status below reports the failure; listing must not die
                caps = None
        for info in registry.discover():
            if info.name != name:
                continue
            rows.append(
                {
                    "name": info.name,
                    "distribution": info.distribution,
                    "version": info.version,
                    "value": info.value,
                    "status": info.status,
                    "error": info.error,
                    "capabilities": caps,
                }
            )
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        _render.plugin_table(rows)


SCHEMAS = ("state", "config", "instruction")


@cli.command()
@click.argument("what", type=click.Choice(SCHEMAS), default="state")
def schema(what: str) -> None:
    """Print the JSON Schema of an input format (for editors and CI validation)."""
    from pydantic import TypeAdapter

    from routers.model import Instruction

    if what == "state":
        data = TrafficState.model_json_schema(by_alias=True)
    elif what == "config":
        data = _config_schema()
    else:
        data = TypeAdapter(Instruction).json_schema(by_alias=True)
    click.echo(json.dumps(data, indent=2))


def _config_schema() -> dict[str, Any]:
    """The config as users write it: sections are open objects validated by their plugins."""
    base = RoutingConfig.model_json_schema(by_alias=True)
    props = base.setdefault("properties", {})
    props.pop("sections", None)
    for name in ("istio", "nginx", "smi"):
        props[name] = {"type": "object", "description": f"validated by the {name} plugin"}
    props["plugins"] = {"type": "object", "additionalProperties": {"type": "object"}}
    props["trafficRouting"] = {
        "type": "object",
        "description": "Argo Rollouts trafficRouting block",
    }
    base["additionalProperties"] = {
        "type": "object",
        "description": "section of a third-party plugin",
    }
    return base


def problem(path: str, message: str) -> ConfigError:
    return ConfigError([Problem(path, message)])
