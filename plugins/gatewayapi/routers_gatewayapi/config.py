"""The ``gatewayapi`` section: the Argo Rollouts Gateway API plugin's config, plus our switches.

Argo users already write ``trafficRouting.plugins["argoproj-labs/gatewayAPI"]``; the same body
validates here. Argo semantics kept on purpose: a singular ``httpRoute: name`` implies
``useHeaderRoutes: true``, list entries default to ``false``, ``namespace`` is where the routes
live (the Services live in the rollout's namespace).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from routers.errors import ConfigError, PlanError, Problem, TargetNotFoundError
from routers.model import RoutingConfig
from routers.model._base import Model
from routers.model._validators import Namespace, ObjectName, ReleaseVersion
from routers.model.selectors import LabelSelector
from routers.planning.objects import LiveObjects, ObjectRef, SelectorRef
from routers.planning.sections import Common, SectionConfig
from routers_gatewayapi.kinds import GROUP, KINDS, RouteKind

__all__ = ["Config", "GatewayApiSection", "RouteEntry", "RouteSelector", "Target", "parse"]

# Argo plugin keys we recognise but refuse, each with the reason (a plain "unknown field" would
# leave an Argo user guessing).
_REFUSED = {
    "inProgressLabelKey": "canary-routers never labels routes (the label broke Argo CD sync, "
    "plugin #208); managed rules are listed in the canary-routers.io/managed annotation",
    "inProgressLabelValue": "canary-routers never labels routes (plugin #208)",
}


class RouteEntry(Model):
    name: ObjectName
    use_header_routes: bool = False


Entries = Annotated[tuple[RouteEntry, ...], Field(strict=False)]


class GatewayApiSection(Model):
    http_route: ObjectName | None = None
    http_routes: Entries = ()
    grpc_route: ObjectName | None = None
    grpc_routes: Entries = ()
    tcp_route: ObjectName | None = None
    tcp_routes: Entries = ()
    tls_route: ObjectName | None = None
    tls_routes: Entries = ()
    http_route_selector: LabelSelector | None = None
    """Argo's route discovery: every route of the kind in ``namespace`` whose labels match is a
    target, with ``useHeaderRoutes: false`` (as the Argo plugin adds them)."""
    grpc_route_selector: LabelSelector | None = None
    tcp_route_selector: LabelSelector | None = None
    tls_route_selector: LabelSelector | None = None
    namespace: Namespace | None = None
    """Namespace of the routes (default: the routing config's namespace)."""
    disable_in_progress_label: bool = True
    """Accepted for Argo compatibility; we never add the label, so only ``true`` is valid."""
    crd_bundle_version: ReleaseVersion | None = None
    """Offline override of the CRD bundle version (``v1.2.1``); cluster facts win when present."""
    crd_channel: Literal["standard", "experimental"] | None = None
    tolerate_missing_observed_generation: bool = False
    """Treat route conditions without ``observedGeneration`` as current (Linkerd, linkerd2 #14964)."""


@dataclass(frozen=True)
class Target:
    """One configured route object."""

    kind: RouteKind
    name: str
    namespace: str
    managed_rules: bool
    """Whether header/mirror rules go on this route (Argo's ``useHeaderRoutes``)."""
    path: str
    """Where it is configured, for messages (``httpRoutes[1]``)."""

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(GROUP, self.kind.kind, self.namespace, self.name, self.kind.version)

    def __str__(self) -> str:
        return f"{self.kind.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class RouteSelector:
    """Routes found by labels (``httpRouteSelector``...): resolved against what the core listed."""

    kind: RouteKind
    ref: SelectorRef
    path: str

    def resolve(self, live: LiveObjects) -> list[Target]:
        found = live.selected(self.ref)
        if found is None:
            raise PlanError(
                f"{self.ref} (configured at {self.path}) was not listed; this caller reads "
                "objects by name only",
                obj=str(self.ref),
            )
        if not found:
            raise TargetNotFoundError(
                f"no {self.kind.kind} in namespace {self.ref.namespace} has labels "
                f"{self.ref.selector.describe()} (configured at {self.path})",
                obj=str(self.ref),
            )
        return [
            Target(self.kind, ref.name, self.ref.namespace, False, f"{self.path} -> {ref.name}")
            for ref, _ in found
        ]


@dataclass(frozen=True, kw_only=True)
class Config(SectionConfig[GatewayApiSection]):
    """``namespace`` is the Services'; the routes' is each target's (``namespace`` in the
    section, else the Services')."""

    targets: tuple[Target, ...]
    selectors: tuple[RouteSelector, ...] = ()

    def resolve(self, live: LiveObjects, missing: list[str] | None = None) -> tuple[Target, ...]:
        """The named routes, then those the selectors found (a route both named and selected
        keeps its named entry, and its useHeaderRoutes). A selector that matches nothing is a
        TargetNotFoundError, or, given ``missing``, a message appended there."""
        out = list(self.targets)
        seen = {(t.kind.kind, t.name) for t in out}
        for selector in self.selectors:
            try:
                found = selector.resolve(live)
            except TargetNotFoundError as exc:
                if missing is None:
                    raise
                missing.append(exc.message)
                continue
            for t in found:
                if (t.kind.kind, t.name) not in seen:
                    seen.add((t.kind.kind, t.name))
                    out.append(t)
        return tuple(out)

    @property
    def channel(self) -> Literal["standard", "experimental"] | None:
        if self.section.crd_channel is not None:
            return self.section.crd_channel
        return "standard" if self.section.crd_bundle_version is not None else None

    @property
    def managed_targets(self) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if t.managed_rules)


def parse(section: Mapping[str, Any], routing: RoutingConfig) -> Config:
    refused = [Problem(k, msg) for k, msg in _REFUSED.items() if k in section]
    if refused:
        raise ConfigError(refused)
    body = GatewayApiSection.parse(dict(section))
    route_ns = body.namespace or Common.of(routing).namespace
    problems: list[Problem] = []
    if not body.disable_in_progress_label:
        problems.append(Problem("disableInProgressLabel", _REFUSED["inProgressLabelValue"]))
    if body.crd_channel is not None and body.crd_bundle_version is None:
        problems.append(Problem("crdChannel", "set crdBundleVersion too (e.g. v1.2.1)"))
    targets: list[Target] = []
    seen: dict[tuple[str, str], str] = {}
    for kind in KINDS:
        single = getattr(body, _snake(kind.config_key))
        entries: list[tuple[str, str, bool, bool]] = []
        if single is not None:
            entries.append((kind.config_key, single, True, False))
        for i, entry in enumerate(getattr(body, _snake(kind.config_key) + "s")):
            explicit = "use_header_routes" in entry.model_fields_set
            entries.append(
                (f"{kind.config_key}s[{i}]", entry.name, entry.use_header_routes, explicit)
            )
        for path, name, use_headers, explicit in entries:
            if not kind.can_manage_rules and use_headers and explicit:
                problems.append(
                    Problem(
                        f"{path}.useHeaderRoutes",
                        f"a {kind.kind} has no request matches; header and mirror routes "
                        "need an HTTPRoute or GRPCRoute",
                    )
                )
                continue
            key = (kind.kind, name)
            if key in seen:
                problems.append(
                    Problem(path, f"{kind.kind} {name!r} is already listed at {seen[key]}")
                )
                continue
            seen[key] = path
            targets.append(
                Target(kind, name, route_ns, use_headers and kind.can_manage_rules, path)
            )
    selectors = tuple(
        RouteSelector(
            kind,
            SelectorRef(GROUP, kind.kind, route_ns, found, kind.version),
            f"{kind.config_key}Selector",
        )
        for kind in KINDS
        if (found := getattr(body, _snake(kind.config_key) + "_selector")) is not None
    )
    if not targets and not selectors and not problems:
        problems.append(
            Problem(
                "",
                "no route configured: set httpRoute(s), grpcRoute(s), tcpRoute(s), tlsRoute(s) "
                "or a route selector",
            )
        )
    if problems:
        raise ConfigError(problems)
    return Config.build(body, routing, targets=tuple(targets), selectors=selectors)


def _snake(camel: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)
