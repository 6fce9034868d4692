"""Routing configuration: which Services to shift between and one section per target.

The format is a superset of Argo Rollouts' ``spec.strategy.canary`` routing fields, so users can
point the tool at the config they already have: ``stableService``, ``canaryService`` and either a
``trafficRouting`` block or its fields at top level (``istio``, ``nginx``, ``smi``,
``plugins: {"argoproj-labs/gatewayAPI": ...}``, ``managedRoutes``, ``maxTrafficWeight``). A whole
Rollout manifest is accepted too. Each target section is validated by the plugin that owns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from routers.errors import ConfigError, Problem
from routers.model._base import Model, require_mapping
from routers.model._validators import (
    Namespace,
    ObjectName,
    OwnerName,
    RouteName,
    ServiceName,
    Uid,
)
from routers.model.state import MAX_TOTAL, TrafficState

__all__ = [
    "WEIGHT_SCOPE_ANNOTATION",
    "ManagedRouteRef",
    "RolloutRef",
    "RoutingConfig",
    "Section",
    "WeightScope",
]

WeightScope = Literal["all", "ours"]
"""What a weight is a share of next to destinations we do not own (``routers.planning.weights``)."""

WEIGHT_SCOPE_ANNOTATION = "canary-routers.io/weight-scope"
"""Where a Rollout sets ``weightScope`` (Argo's CRD has no field for it; annotations survive)."""

_COMMON = frozenset(
    {
        "stableService",
        "canaryService",
        "namespace",
        "managedRoutes",
        "maxTrafficWeight",
        "owner",
        "rollout",
        "weightScope",
    }
)
_COMMON_SNAKE = frozenset(
    {
        "stable_service",
        "canary_service",
        "namespace",
        "managed_routes",
        "max_traffic_weight",
        "weight_scope",
    }
)


class ManagedRouteRef(Model):
    name: RouteName


class RolloutRef(Model):
    """The Argo Rollout a config belongs to: the source of Argo's defaults and of our owner key."""

    name: ObjectName
    namespace: Namespace | None = None
    uid: Uid | None = None
    """Recorded for humans; ownership is keyed by namespace/name, which survives re-creation."""


class Section(Model):
    """One target's raw configuration, validated later by the plugin named ``plugin``."""

    plugin: str
    path: str
    body: dict[str, Any]


class RoutingConfig(Model):
    stable_service: ServiceName | None = None
    """Required by every target except Istio with a DestinationRule (subset-level split), as in
    Argo; the engine refuses a config without it for plugins that do not declare
    ``services_optional``."""
    canary_service: ServiceName | None = None
    namespace: Namespace | None = None
    managed_routes: Annotated[tuple[ManagedRouteRef, ...], Field(strict=False)] = ()
    max_traffic_weight: Annotated[int, Field(ge=1, le=MAX_TOTAL)] | None = None
    owner: OwnerName | None = None
    """Who owns what this config adds to shared objects; see :meth:`owner_key`."""
    rollout: RolloutRef | None = None
    weight_scope: WeightScope = "all"
    """``all``: a weight is a share of all traffic, destinations we do not own keep theirs;
    ``ours``: a share of what those destinations leave (see ``planning.weights.target_shares``)."""
    sections: Annotated[tuple[Section, ...], Field(strict=False)] = ()

    @model_validator(mode="before")
    @classmethod
    def _collect_sections(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "sections" in data:
            return data
        data = dict(data)
        routing = data.pop("trafficRouting", None)
        if routing is not None:
            routing = require_mapping(routing, "trafficRouting")
            for key, value in routing.items():
                if key in data:
                    raise ConfigError([Problem(f"trafficRouting.{key}", "also given at top level")])
                data[key] = value
        common = {k: v for k, v in data.items() if k in _COMMON or k in _COMMON_SNAKE}
        sections: list[dict[str, Any]] = []
        for key, value in data.items():
            if key in common:
                continue
            if key == "plugins":
                plugins = require_mapping(value, "plugins")
                for name, body in plugins.items():
                    sections.append(_section(plugin_name(str(name)), f"plugins.{name}", body))
            else:
                sections.append(_section(str(key), str(key), value))
        common["sections"] = sections
        return common

    @model_validator(mode="after")
    def _sane(self) -> RoutingConfig:
        if self.stable_service is not None and self.stable_service == self.canary_service:
            raise ValueError("stableService and canaryService must differ")
        names = [r.name for r in self.managed_routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"managedRoutes: {dupes[0]!r} is listed twice")
        plugins = [s.plugin for s in self.sections]
        dupes = sorted({p for p in plugins if plugins.count(p) > 1})
        if dupes:
            raise ValueError(f"plugin {dupes[0]!r} is configured by more than one section")
        return self

    @classmethod
    def from_document(cls, doc: Any, *, source: str | None = None) -> RoutingConfig:
        """Accept our own file, an Argo ``trafficRouting``-style file, or a whole Rollout."""
        doc = require_mapping(doc, "config")
        if doc.get("kind") == "Rollout":
            spec = require_mapping(doc.get("spec") or {}, "spec")
            strategy = require_mapping(spec.get("strategy") or {}, "spec.strategy")
            canary = require_mapping(strategy.get("canary") or {}, "spec.strategy.canary")
            if not canary.get("trafficRouting"):
                raise ConfigError(
                    [
                        Problem(
                            "spec.strategy.canary.trafficRouting",
                            "missing: the Rollout has no traffic routing",
                        )
                    ],
                    source=source,
                )
            picked = {
                k: canary[k]
                for k in ("stableService", "canaryService", "trafficRouting")
                if k in canary
            }
            picked.update(_ping_pong(canary, doc.get("status")))
            meta = require_mapping(doc.get("metadata") or {}, "metadata")
            ns = meta.get("namespace")
            if ns:
                picked["namespace"] = ns
            if meta.get("name"):
                picked["rollout"] = {
                    k: meta[k] for k in ("name", "namespace", "uid") if meta.get(k) is not None
                }
            annotations = require_mapping(meta.get("annotations") or {}, "metadata.annotations")
            scope = annotations.get(WEIGHT_SCOPE_ANNOTATION)
            if scope is not None:
                picked["weightScope"] = scope
            return cls.parse(picked, source=source)
        return cls.parse(doc, source=source)

    def owner_key(self, namespace: str | None = None) -> str:
        """The identity every ledger entry we write is filed under.

        Several configs (one per app or Rollout) may edit one shared VirtualService, HTTPRoute
        or Ingress; each may only change or remove what its own key recorded. In order: an
        explicit ``owner``; the Rollout (``Rollout <namespace>/<name>``, not its uid, so a
        re-created Rollout keeps its routes); the canary Service (unique per app); else the
        namespace alone, which makes every identity-less config in it one owner.
        """
        ns = self.namespace or namespace or "default"
        if self.owner is not None:
            return self.owner
        if self.rollout is not None:
            return f"Rollout {self.rollout.namespace or ns}/{self.rollout.name}"
        if self.canary_service:
            return f"{ns}/{self.canary_service}"
        return ns

    @property
    def stable_name(self) -> str:
        """How outcomes and messages name the stable destination: its Service, or ``stable`` in
        a subset-level split, which names no Service."""
        return self.stable_service or "stable"

    @property
    def canary_name(self) -> str:
        return self.canary_service or "canary"

    def services(self) -> tuple[str, str]:
        """(stable, canary). The engine checks both are set before a plugin that needs them
        (every plugin not declaring ``services_optional``) sees the config."""
        missing = [
            Problem(path, "required (the Service of the stable and of the canary pods)")
            for path, value in (
                ("stableService", self.stable_service),
                ("canaryService", self.canary_service),
            )
            if value is None
        ]
        if missing:
            raise ConfigError(missing)
        assert self.stable_service is not None
        assert self.canary_service is not None
        return self.stable_service, self.canary_service

    def section(self, plugin: str) -> Section | None:
        return next((s for s in self.sections if s.plugin == plugin), None)

    def check_state(self, state: TrafficState) -> None:
        """Rules that need both config and state (Argo's managedRoutes rule, weight ceiling)."""
        problems: list[Problem] = []
        if self.managed_routes:
            listed = {r.name for r in self.managed_routes}
            for i, name in enumerate(state.route_names):
                if name not in listed:
                    problems.append(
                        Problem(
                            f"routes[{i}]",
                            f"route {name!r} is not listed in managedRoutes "
                            f"({', '.join(sorted(listed))}); list it so cleanup can find it",
                        )
                    )
        if self.max_traffic_weight is not None and state.total != self.max_traffic_weight:
            problems.append(
                Problem(
                    "total",
                    f"state total {state.total} differs from maxTrafficWeight {self.max_traffic_weight}",
                )
            )
        if problems:
            raise ConfigError(problems)


def plugin_name(key: str) -> str:
    """Map a ``plugins`` key to an entry-point name.

    Argo Rollouts names traffic-router plugins ``<org>/<name>`` (``argoproj-labs/gatewayAPI``);
    entry-point names cannot contain ``/``, so the part after the last slash, lower-cased, is the
    plugin's name. This rule is the same for built-in and third-party plugins.
    """
    return key.rsplit("/", 1)[-1].lower()


def _ping_pong(canary: Mapping[str, Any], status: Any) -> dict[str, str]:
    """Argo's ping-pong services as stable/canary, when the Rollout names no others.

    Which of the two is stable is recorded in ``status.canary.stablePingPong``: ``ping`` makes
    the ping Service stable; ``pong`` or nothing (a Rollout before its first promotion) makes
    the pong Service stable, as Argo's ``IsStablePing`` reads it.
    """
    pp = canary.get("pingPong")
    if not isinstance(pp, Mapping) or canary.get("stableService") or canary.get("canaryService"):
        return {}
    ping, pong = pp.get("pingService"), pp.get("pongService")
    stable_ping = (
        isinstance(status, Mapping)
        and isinstance(status.get("canary"), Mapping)
        and status["canary"].get("stablePingPong") == "ping"
    )
    out = (
        {"stableService": ping, "canaryService": pong}
        if stable_ping
        else {
            "stableService": pong,
            "canaryService": ping,
        }
    )
    return {k: v for k, v in out.items() if v is not None}


def _section(plugin: str, path: str, body: Any) -> dict[str, Any]:
    if body is None:
        body = {}
    return {"plugin": plugin, "path": path, "body": dict(require_mapping(body, path))}
