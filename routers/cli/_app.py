"""Command definitions. Kept thin: every command is a call into the engine or cluster layer."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from routers.cli import _render
from routers.errors import ConfigError, Problem
from routers.io import dump_yaml, load_documents, load_one
from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.model._validators import is_dns_label
from routers.registry import default_registry

OUTPUT_PLAN = click.Choice(["yaml", "json", "patch"])


def _namespace(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``-n`` replaces the config's namespace without re-validating it, so it is checked here."""
    if value is not None and not is_dns_label(value):
        raise click.BadParameter(f"{value!r} is not a valid namespace (DNS-1123 label)")
    return value


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
@click.option(
    "-n",
    "--namespace",
    default=None,
    callback=_namespace,
    help="Namespace for objects that name none (default: the config's or Rollout's, else the "
    "one the manifest objects share).",
)
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
    if result.namespace_from not in ("config", "default"):
        click.echo(f"namespace: {result.namespace} (from {result.namespace_from})", err=True)
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
        api_version: int | None = None
        evaluator: str | None = None
        if load:
            try:
                plugin = registry.load(name)
                api_version = plugin.api_version
                evaluator = _evaluator_text(plugin)
                caps = plugin.capabilities().to_data()
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
                    "apiVersion": api_version,
                    "evaluator": evaluator,
                    "capabilities": caps,
                }
            )
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        _render.plugin_table(rows)


def _evaluator_text(plugin: Any) -> str:
    """Whether ``explain --request`` and the equivalence property can cover the plugin."""
    from routers.contract import EVALUATOR_SINCE, evaluator_of

    if evaluator_of(plugin) is not None:
        return "yes"
    if plugin.api_version < EVALUATOR_SINCE:
        return f"no (plugin API version {plugin.api_version})"
    return "no"


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
    for name in ("istio", "nginx", "smi", "traefik"):
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


# -- cluster commands ---------------------------------------------------------------------------


_F = TypeVar("_F", bound=Callable[..., Any])
_REQUEST_TIMEOUT = "routers.request_timeout"
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_DURATION_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a kubectl/Go duration (``30s``, ``2m``, ``1m30s``, ``500ms``) or a plain
    number of seconds; ValueError otherwise."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):  # "inf" would be no limit at all, "nan" none either
            raise ValueError(f"{text!r} is not a duration (e.g. 30s, 2m, 1m30s)")
        return seconds
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 2m, 1m30s)")
    return sum(float(n) * _DURATION_UNIT[u] for n, u in parts)


def _keep_request_timeout(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    if not seconds > 0:
        raise click.BadParameter(
            f"{value!r}: must be more than 0 (canary-routers never waits for the API server "
            "without a limit)",
            ctx=ctx,
            param=param,
        )
    ctx.meta[_REQUEST_TIMEOUT] = seconds


def request_timeout_option(default: str) -> Callable[[_F], _F]:
    return click.option(
        "--request-timeout",
        metavar="DURATION",
        default=None,
        expose_value=False,
        callback=_keep_request_timeout,
        help="How long one API request may take, like kubectl's (e.g. 30s, 2m; a bare number is "
        f"seconds). Default: {default}.",
    )


def _timeouts(default: float | None = None) -> Any:
    """The cluster layer's limits for this command: ``--request-timeout``, else ``default``
    seconds, else the cluster layer's defaults."""
    from routers.cluster import DEFAULT_TIMEOUTS, Timeouts

    seconds = click.get_current_context().meta.get(_REQUEST_TIMEOUT, default)
    return DEFAULT_TIMEOUTS if seconds is None else Timeouts.for_requests(seconds)


def _kube_flags(f: Any, *, config_required: bool) -> Any:
    f = request_timeout_option("connect 10s, each read 65s")(f)
    f = click.option(
        "--kubeconfig", envvar="KUBECONFIG", default=None, help="Path to the kubeconfig."
    )(f)
    f = click.option("--context", default=None, help="kubeconfig context.")(f)
    f = click.option(
        "-n",
        "--namespace",
        default=None,
        callback=_namespace,
        help="Namespace (overrides the config).",
    )(f)
    return click.option(
        "--config",
        "config_path",
        required=config_required,
        default=None,
        metavar="FILE",
        help="Routing config: ours, an Argo trafficRouting block, or a Rollout"
        + ("." if config_required else " (not needed when FILE is a Rollout)."),
    )(f)


def cluster_options(f: Any) -> Any:
    return _kube_flags(f, config_required=True)


def state_options(f: Any) -> Any:
    f = click.option("--state", "state_path", metavar="FILE", help="Desired traffic state.")(f)
    f = click.option("--cleanup", is_flag=True, help="Remove everything we added.")(f)
    return click.option(
        "--keep-weights", is_flag=True, help="With --cleanup: leave weights as they are."
    )(f)


def _router(
    config_path: str, kubeconfig: str | None, context: str | None, namespace: str | None
) -> Any:
    from routers.cluster import Router

    config = load_config(config_path)
    if namespace:
        config = config.model_copy(update={"namespace": namespace})
    return Router.from_kubeconfig(config, kubeconfig, context, timeouts=_timeouts())


@cli.command()
@cluster_options
@state_options
@click.option(
    "--dry-run",
    "dry_run",
    type=click.Choice(["none", "client", "server"]),
    default="none",
    show_default=True,
    help="client: print the plan, send nothing; server: send with dryRun=All.",
)
@click.option(
    "-o",
    "--output",
    default=None,
    type=OUTPUT_PLAN,
    help="Also print the result (yaml/json) or the operations (patch).",
)
def apply(
    config_path: str,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    state_path: str | None,
    cleanup: bool,
    keep_weights: bool,
    dry_run: str,
    output: str | None,
) -> None:
    """Make the cluster express a state. Same state twice: zero writes."""

    router = _router(config_path, kubeconfig, context, namespace)
    desired = load_desired(state_path, cleanup, keep_weights)
    if dry_run == "client":
        result = _plan_against_cluster(router, desired)
        _render.notes(result.plans)
        _render.plan_result(result, output or "patch")
        return
    outcome = router.reconcile(desired, dry_run=dry_run == "server")
    _render.notes(outcome.plans)
    _render.applied(outcome)
    if output:
        from routers.engine import OfflineResult
        from routers.planning.offline import apply_plans

        _render.plan_result(
            OfflineResult(outcome.plans, outcome.live, apply_plans(outcome.plans, outcome.live)),
            output,
        )


def _plan_against_cluster(router: Any, desired: Desired) -> Any:
    from routers.engine import OfflineResult
    from routers.planning.offline import apply_plans

    plans, live = router.plan(desired)
    return OfflineResult(tuple(plans), live, apply_plans(plans, live))


@cli.command()
@cluster_options
@state_options
def diff(
    config_path: str,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    state_path: str | None,
    cleanup: bool,
    keep_weights: bool,
) -> int:
    """Unified diff of live objects against the result. Exit 0: none, 1: differences, >1: error."""
    try:
        router = _router(config_path, kubeconfig, context, namespace)
        result = _plan_against_cluster(router, load_desired(state_path, cleanup, keep_weights))
    except Exception as exc:
        raise DiffError(exc) from exc
    text = _render.unified_diff(result)
    if text:
        click.echo(text, nl=False)
        return 1
    return 0


class DiffError(Exception):
    """Wraps any error of `diff` so that it exits above 1, as `kubectl diff` does."""

    def __init__(self, cause: Exception) -> None:
        self.cause = cause
        super().__init__(str(cause))


@cli.command("verify")
@cluster_options
@click.option(
    "--state",
    "state_path",
    required=True,
    metavar="FILE",
    help="The state that should be in effect.",
)
@click.option(
    "--require-ready", is_flag=True, help="Also require readiness where the target reports it."
)
@click.option(
    "-o", "--output", default="table", type=click.Choice(["table", "json"]), show_default=True
)
def verify_cmd(
    config_path: str,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    state_path: str,
    require_ready: bool,
    output: str,
) -> int:
    """Is the state really applied? Exit 0 yes, 1 no (mismatches listed)."""
    router = _router(config_path, kubeconfig, context, namespace)
    state = TrafficState.parse(load_one(state_path), source=state_path)
    report = router.verify(state, require_ready=require_ready)
    if output == "json":
        click.echo(json.dumps({"ok": report.ok, "mismatches": list(report.mismatches)}, indent=2))
    else:
        for line in report.mismatches:
            click.echo(f"mismatch: {line}")
        click.echo("verified: the live objects express the state" if report.ok else "NOT verified")
    return 0 if report.ok else 1


@cli.command()
@cluster_options
@click.option(
    "-o", "--output", default="table", type=click.Choice(["table", "json"]), show_default=True
)
@click.option("-w", "--watch", is_flag=True, help="Refresh until interrupted.")
@click.option(
    "--interval", default=2.0, show_default=True, help="Seconds between refreshes with --watch."
)
def status(
    config_path: str,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    output: str,
    watch: bool,
    interval: float,
) -> None:
    """Weights, managed routes and readiness of every target."""
    import time

    router = _router(config_path, kubeconfig, context, namespace)
    if output == "table" and watch and _render.stdout_is_terminal():
        _render.watch_status(router.observe, interval)  # a live rich table until Ctrl-C
        return
    while True:
        observations = router.observe()
        if output == "json":
            click.echo(json.dumps(_render.observations_data(observations), indent=2))
        else:
            click.echo(_render.observations_table(observations))
            conditions = _render.conditions_table(observations)
            if conditions:
                click.echo("")
                click.echo(conditions)
        if not watch:
            return
        time.sleep(interval)
        click.echo("")


@cli.command()
@cluster_options
@click.option("--keep-weights", is_flag=True, help="Leave weights as they are.")
@click.option(
    "--dry-run", "dry_run", type=click.Choice(["none", "server"]), default="none", show_default=True
)
def cleanup(
    config_path: str,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    keep_weights: bool,
    dry_run: str,
) -> None:
    """Remove every route and object we added; send 100% back to stable unless --keep-weights."""
    router = _router(config_path, kubeconfig, context, namespace)
    outcome = router.cleanup(restore_stable=not keep_weights, dry_run=dry_run == "server")
    _render.applied(outcome)


@cli.command()
@click.option("--config", "config_path", required=True, metavar="FILE")
@click.option("-n", "--namespace", default=None, callback=_namespace)
@click.option("--name", default="canary-routers", show_default=True, help="Role name.")
@click.option(
    "--service-account",
    default=None,
    metavar="NAMESPACE/NAME",
    help="Also bind the roles to this ServiceAccount (e.g. argo-rollouts/argo-rollouts).",
)
@click.option(
    "--watch-cache",
    is_flag=True,
    help="Also list and watch what is read (for a controller using routers.cluster.WatchCache).",
)
@click.option(
    "--events/--no-events",
    default=True,
    show_default=True,
    help="create/get/patch on events: the Argo plugin's Warning Events on the Rollout.",
)
def rbac(
    config_path: str,
    namespace: str | None,
    name: str,
    service_account: str | None,
    watch_cache: bool,
    events: bool,
) -> None:
    """Print the minimal Role (and CRD-reading ClusterRole) a config needs."""
    from routers.cluster import rbac_manifests

    config = load_config(config_path)
    subject = None
    if service_account is not None:
        sa_ns, sep, sa_name = service_account.partition("/")
        if not sep or not sa_ns or not sa_name or "/" in sa_name:
            raise click.BadParameter(
                f"{service_account!r} is not NAMESPACE/NAME", param_hint="--service-account"
            )
        subject = (sa_ns, sa_name)
    manifests = rbac_manifests(
        config,
        name=name,
        namespace=namespace,
        service_account=subject,
        watch_cache=watch_cache,
        events=events,
    )
    click.echo(dump_yaml(manifests), nl=False)


# -- canary steps -------------------------------------------------------------------------------


def _load_run_inputs(
    path: str | None,
    config_path: str | None,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
) -> tuple[Any, Any]:
    """(router, document): config from --config, or from the Rollout given as FILE."""
    from routers.cluster import Router

    doc = load_one(path) if path else None
    if config_path:
        config = load_config(config_path)
    elif isinstance(doc, dict) and doc.get("kind") == "Rollout":
        config = RoutingConfig.from_document(doc, source=path)
    else:
        raise click.UsageError("--config is required unless FILE is an Argo Rollout")
    if namespace:
        config = config.model_copy(update={"namespace": namespace})
    return Router.from_kubeconfig(config, kubeconfig, context, timeouts=_timeouts()), doc


def kube_options(f: Any) -> Any:
    return _kube_flags(f, config_required=False)


@cli.command()
@click.argument("path", metavar="FILE")
@kube_options
@click.option(
    "--skip-non-traffic-steps",
    is_flag=True,
    help="Skip setCanaryScale/analysis/experiment steps of a Rollout (reported) instead of failing.",
)
@click.option("--poll", default=1.0, show_default=True, help="Seconds between checks while paused.")
@click.option(
    "--api-timeout",
    default=300.0,
    show_default=True,
    help="How long to ride out an unreachable API server before failing.",
)
def run(
    path: str,
    config_path: str | None,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    skip_non_traffic_steps: bool,
    poll: float,
    api_timeout: float,
) -> int:
    """Run canary steps from a Rollout or a step file; resumable; Ctrl-C aborts to stable."""
    from routers.cluster.run import RunAborted, Runner
    from routers.model.steps import steps_from_document

    router, doc = _load_run_inputs(path, config_path, kubeconfig, context, namespace)
    steps, skipped = steps_from_document(doc, source=path, skip_non_traffic=skip_non_traffic_steps)
    for note in skipped:
        click.echo(f"warning: {note}", err=True)
    display = _render.RunDisplay()
    runner = Runner(router, steps, on_event=display, poll=poll, api_timeout=api_timeout)
    try:
        runner.run()
    except RunAborted as exc:
        display.close()
        click.echo(f"aborted: {exc}", err=True)
        return 4
    finally:
        display.close()
    return 0


@cli.command()
@click.argument("path", metavar="[FILE]", required=False)
@kube_options
def promote(
    path: str | None,
    config_path: str | None,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
) -> None:
    """End the current pause of a running `routers run`."""
    from routers.cluster.run import send_command

    router, _ = _load_run_inputs(path, config_path, kubeconfig, context, namespace)
    if not send_command(router, "promote"):
        raise click.ClickException("no target object exists: nothing is running")
    click.echo("promote requested", err=True)


@cli.command()
@click.argument("path", metavar="[FILE]", required=False)
@kube_options
def abort(
    path: str | None,
    config_path: str | None,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
) -> None:
    """Stop a run: remove managed routes and send 100% to stable (now, and in the running process)."""
    from routers.cluster.run import send_command

    router, _ = _load_run_inputs(path, config_path, kubeconfig, context, namespace)
    send_command(router, "abort")
    outcome = router.cleanup(restore_stable=True)
    _render.applied(outcome)
    click.echo("aborted: managed routes removed, 100% of traffic on stable", err=True)


@cli.command("explain")
@click.option("--config", "config_path", required=True, metavar="FILE")
@state_options
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    metavar="FILE",
    help="Live objects from manifest files (otherwise: capabilities only).",
)
@click.option("-n", "--namespace", default=None, callback=_namespace)
@click.option(
    "--request",
    "requests",
    multiple=True,
    metavar="REQ",
    help="Simulate a request through the result, e.g. 'GET /api -H X-Canary:always'.",
)
def explain_cmd(
    config_path: str,
    state_path: str | None,
    cleanup: bool,
    keep_weights: bool,
    files: tuple[str, ...],
    namespace: str | None,
    requests: tuple[str, ...],
) -> int:
    """In words: what each target will do with a state, and what it cannot express."""
    from routers.engine import (
        bind,
        facts_from_manifests,
        gather,
        offline_lister,
        with_offline_namespace,
    )
    from routers.explain import explain
    from routers.planning.objects import LiveObjects

    config = load_config(config_path)
    if namespace:
        config = config.model_copy(update={"namespace": namespace})
    desired = load_desired(state_path, cleanup, keep_weights)
    docs = load_documents(files) if files else []
    if docs:
        config, _, _ = with_offline_namespace(config, docs)
    bindings = bind(config)
    facts = facts_from_manifests(docs)
    live = None
    if files:
        pool = LiveObjects.from_manifests(
            [d for d in docs if d.get("kind") != "CustomResourceDefinition"],
            config.namespace or "default",
        )
        live = gather(bindings, pool.get, list_objects=offline_lister(pool))
    ok = True
    for item in explain(config, bindings, desired, facts, live):
        click.echo(f"{item.plugin}:")
        for line in item.lines:
            click.echo(f"  {line}")
        ok = ok and item.supported
    if requests:
        _simulate_requests(config, desired, docs, requests)
    return 0 if ok else 2


def _simulate_requests(
    config: RoutingConfig, desired: Desired, docs: list[Any], requests: tuple[str, ...]
) -> None:
    from routers.explain import explain_requests

    for line in explain_requests(config, desired, docs, requests):
        click.echo(line)


# -- Argo Rollouts plugin -----------------------------------------------------------------------

# One API request of a plugin call: well inside the bridge's 60 s limit per call (argo/), so a
# stuck request fails the call with our error rather than the bridge's timeout.
ARGO_REQUEST_SECONDS = 30.0


@cli.command("argo-plugin")
@click.option(
    "--plugin",
    "plugin",
    required=True,
    metavar="ORG/NAME",
    help="The trafficRouterPlugins entry served, e.g. canary-routers/istio.",
)
@click.option("--kubeconfig", envvar="KUBECONFIG", default=None, help="Path to the kubeconfig.")
@click.option("--context", default=None, help="kubeconfig context.")
@click.option("--workers", default=8, show_default=True, help="Calls served concurrently.")
@request_timeout_option(f"{ARGO_REQUEST_SECONDS:g}s, within the bridge's 60s per call")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "hclog"]),
    help="hclog: '[LEVEL] message' lines, which Argo's plugin client logs at that level.",
)
@click.option(
    "--watch-cache/--no-watch-cache",
    envvar="CANARY_ROUTERS_WATCH_CACHE",
    default=False,
    show_default=True,
    help="Read targets from one list+watch cache per kind and namespace instead of a GET per "
    "call (needs list and watch: routers rbac --watch-cache; without them, GETs as before).",
)
def argo_plugin(
    plugin: str,
    kubeconfig: str | None,
    context: str | None,
    workers: int,
    log_level: str,
    log_format: str,
    watch_cache: bool,
) -> int:
    """Serve Argo Rollouts' traffic-router calls for the canary-routers bridge.

    Started by the bridge binary (argo/), which Argo Rollouts runs as a traffic-router plugin:
    JSON lines on stdin/stdout, logs on stderr. See argo/README.md.
    """
    import logging
    from importlib.metadata import version

    from routers.argo import ArgoPlugin, serve
    from routers.argo.server import EXIT_CALLS_LEFT, log_handler
    from routers.cluster import EventRecorder, WatchCache
    from routers.cluster.connect import connect

    logging.basicConfig(level=log_level.upper(), handlers=[log_handler(plugin, log_format)])
    kube = connect(kubeconfig, context, timeouts=_timeouts(ARGO_REQUEST_SECONDS))
    # A first read waits for its kind's first list at most a third of a call's 60 s, then GETs.
    cache = WatchCache(kube, sync_timeout=ARGO_REQUEST_SECONDS / 3) if watch_cache else None
    handler = ArgoPlugin(plugin, kube, cache=cache, events=EventRecorder(kube.transport, plugin))
    try:
        code = serve(
            handler.handle, plugin=plugin, version=version("canary-routers"), workers=workers
        )
    finally:
        if cache is not None:
            cache.stop(timeout=5.0)  # ends every watch; reads still running go to the server
    if code == EXIT_CALLS_LEFT:
        # The interpreter would join the call threads still running at exit: end without them.
        logging.shutdown()
        os._exit(code)
    return code
