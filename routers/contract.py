"""The plugin contract: what a target plugin is, declares and returns.

A plugin is pure: live objects in, a :class:`~routers.planning.plan.Plan` out. It never performs
I/O; whatever it needs to know about the cluster (served API versions, CRD bundle versions and
channels) arrives as :class:`ClusterFacts`, gathered by the core. Plugins are found through the
``routers.plugins`` entry-point group; built-in ones take exactly the same path.

Version 2 adds an optional data-plane evaluator (:class:`Evaluator`): how the target routes one
request through the plugin's objects. A plugin owns its whole target that way: ``routers explain
--request`` and the cross-target equivalence property work for any plugin that provides one.
Version 1 plugins still load; they have no evaluator.

Bump :data:`API_VERSION` on any breaking change to this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field, replace
from enum import StrEnum
from fractions import Fraction
from typing import Any, Literal, Protocol, runtime_checkable

from routers.model import Desired, MatchType, RoutingConfig
from routers.planning.objects import LiveObjects, ObjectRef, SelectorRef
from routers.planning.plan import Plan
from routers.simulate.outcome import Routed
from routers.simulate.request import Request

__all__ = [
    "ALL_MATCH_TYPES",
    "ANY_MATCH",
    "API_VERSION",
    "EVALUATOR_SINCE",
    "SUPPORTED_API_VERSIONS",
    "Capabilities",
    "ClusterFacts",
    "Condition",
    "CrdFacts",
    "Evaluator",
    "MatchLimits",
    "MirrorSupport",
    "Observation",
    "ObservedWeights",
    "Permission",
    "Routed",
    "RouterPlugin",
    "evaluator_of",
    "sample_requests",
]

API_VERSION = 2
SUPPORTED_API_VERSIONS = frozenset({1, 2})
EVALUATOR_SINCE = 2
"""The first contract version with the optional evaluator."""

ALL_MATCH_TYPES: frozenset[MatchType] = frozenset({"exact", "prefix", "regex"})


class MirrorSupport(StrEnum):
    NONE = "none"
    FULL_ONLY = "full-only"
    """Mirrors 100% of matching traffic, nothing less (ingress-nginx)."""
    PERCENT = "percent"
    """Whole percentages."""
    FRACTION = "fraction"
    """Any percentage, decimals included."""


@dataclass(frozen=True)
class MatchLimits:
    """Which request conditions a kind of managed route (header or mirror) can express."""

    header_match: frozenset[MatchType] = frozenset()
    path_match: frozenset[MatchType] = frozenset()
    query_match: frozenset[MatchType] = frozenset()
    method_match: bool = False
    max_matches_per_route: int | None = None
    max_headers_per_match: int | None = None
    unmatchable_headers: frozenset[str] = frozenset()
    """Header names (lower-case) the target silently ignores in a match (Istio: ``uri``,
    ``scheme``, ``method``, ``authority``): a route on one would match every request, so it is
    refused before planning."""

    def to_data(self) -> dict[str, Any]:
        return {
            "headerMatch": sorted(self.header_match),
            "pathMatch": sorted(self.path_match),
            "queryMatch": sorted(self.query_match),
            "methodMatch": self.method_match,
            "maxMatchesPerRoute": self.max_matches_per_route,
            "maxHeadersPerMatch": self.max_headers_per_match,
            "unmatchableHeaders": sorted(self.unmatchable_headers),
        }


ANY_MATCH = MatchLimits(ALL_MATCH_TYPES, ALL_MATCH_TYPES, ALL_MATCH_TYPES, method_match=True)
"""Every condition of the model, any number of them."""


@dataclass(frozen=True)
class Capabilities:
    """What a plugin can express. The core refuses anything outside it before planning."""

    weight: bool = True
    additional_destinations: bool = True
    header_routes: bool = False
    header_routes_with_weight: bool = True
    """False when a header route needs all weighted traffic on stable (SMI: requests that no
    header route matches bypass the TrafficSplit's backends and go to the root Service)."""
    header_limits: MatchLimits = MatchLimits()
    """The conditions header routes can match on."""
    mirror: MirrorSupport = MirrorSupport.NONE
    mirror_limits: MatchLimits | None = None
    """The conditions mirror routes can match on; ``None``: the same as header routes'."""
    mirror_round_up: bool = False
    """A FULL_ONLY target was allowed (by config) to mirror 100% when less is asked."""
    max_routes: int | None = None
    """Most managed (header + mirror) routes at once."""
    max_total: int | None = None
    """Largest weight total expressed exactly; ``None`` = any. Coarser targets report rounding."""
    readiness: bool = False
    """Whether observe() reports data-plane readiness (status conditions)."""
    notes: tuple[str, ...] = ()
    # Contract version 1 spelled the header-route limits as flat keywords and the mirror-route
    # ones as ``mirror_matches``; version-1 plugins keep working unchanged, their keywords are
    # folded into the limits above.
    header_match: InitVar[frozenset[MatchType] | None] = None
    path_match: InitVar[frozenset[MatchType] | None] = None
    query_match: InitVar[frozenset[MatchType] | None] = None
    method_match: InitVar[bool | None] = None
    max_matches_per_route: InitVar[int | None] = None
    max_headers_per_match: InitVar[int | None] = None
    mirror_matches: InitVar[MatchLimits | None] = None

    def __post_init__(
        self,
        header_match: frozenset[MatchType] | None,
        path_match: frozenset[MatchType] | None,
        query_match: frozenset[MatchType] | None,
        method_match: bool | None,
        max_matches_per_route: int | None,
        max_headers_per_match: int | None,
        mirror_matches: MatchLimits | None,
    ) -> None:
        legacy: dict[str, Any] = {
            k: v
            for k, v in (
                ("header_match", header_match),
                ("path_match", path_match),
                ("query_match", query_match),
                ("method_match", method_match),
                ("max_matches_per_route", max_matches_per_route),
                ("max_headers_per_match", max_headers_per_match),
            )
            if v is not None
        }
        if legacy:
            object.__setattr__(self, "header_limits", replace(self.header_limits, **legacy))
        if mirror_matches is not None:
            object.__setattr__(self, "mirror_limits", mirror_matches)

    def limits(self, *, mirror: bool = False) -> MatchLimits:
        """The limits of header routes, or of mirror routes."""
        if mirror and self.mirror_limits is not None:
            return self.mirror_limits
        return self.header_limits

    def to_data(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "additionalDestinations": self.additional_destinations,
            "headerRoutes": self.header_routes,
            "headerRoutesWithWeight": self.header_routes_with_weight,
            "headerLimits": self.header_limits.to_data(),
            "mirror": self.mirror.value,
            "mirrorLimits": self.limits(mirror=True).to_data(),
            "mirrorRoundUp": self.mirror_round_up,
            "maxRoutes": self.max_routes,
            "maxTotal": self.max_total,
            "readiness": self.readiness,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class CrdFacts:
    name: str
    served_versions: tuple[str, ...] = ()
    bundle_version: str | None = None
    channel: str | None = None
    schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Served version -> its openAPIV3Schema, for plugins whose output shape depends on it."""


@dataclass(frozen=True)
class ClusterFacts:
    """What the core learned about the cluster, so plugins never need to ask."""

    served: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """API group -> served versions, preferred first. A missing group means unknown."""
    crds: Mapping[str, CrdFacts] = field(default_factory=dict)
    server_version: str | None = None
    source: Literal["cluster", "offline"] = "offline"

    def served_versions(self, group: str) -> tuple[str, ...] | None:
        return self.served.get(group)

    def crd(self, name: str) -> CrdFacts | None:
        return self.crds.get(name)


@dataclass(frozen=True)
class Permission:
    """An RBAC rule a plugin needs (resource is the plural, as in a Role)."""

    group: str
    resource: str
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class ObservedWeights:
    """The weights one location (a route of an object) expresses now."""

    location: str
    stable: int
    canary: int
    additional: tuple[tuple[str, int], ...] = ()
    foreign: int = 0
    """Summed weight of the destinations at this location that we do not own (they keep their
    share; see ``routers.planning.weights.target_shares``)."""

    @property
    def total(self) -> int:
        """Sum of every weight at the location, the foreign ones included."""
        return self.stable + self.canary + sum(w for _, w in self.additional) + self.foreign

    @property
    def foreign_share(self) -> Fraction:
        return Fraction(self.foreign, self.total) if self.total else Fraction(0)

    def shares(self) -> dict[str, Fraction]:
        """Our destinations' shares of all the traffic at the location."""
        total = self.total
        if total == 0:
            return {}
        out = {"stable": Fraction(self.stable, total), "canary": Fraction(self.canary, total)}
        out.update({name: Fraction(w, total) for name, w in self.additional})
        return out


@dataclass(frozen=True)
class Condition:
    obj: str
    type: str
    status: str
    reason: str = ""
    message: str = ""
    current: bool = True
    """False when the condition describes an older generation of the object."""


@dataclass(frozen=True)
class Observation:
    """What the live objects express now (for verify and status)."""

    plugin: str
    weights: tuple[ObservedWeights, ...] = ()
    header_routes: tuple[str, ...] = ()
    mirror_routes: Mapping[str, float] = field(default_factory=dict)
    ready: bool | None = None
    """``None`` when the target reports no readiness."""
    conditions: tuple[Condition, ...] = ()
    problems: tuple[str, ...] = ()
    """Inconsistencies worth reporting (e.g. a managed route someone edited)."""


@runtime_checkable
class RouterPlugin(Protocol):
    """A traffic target. All methods are pure functions of their arguments."""

    name: str
    """The entry-point name, e.g. ``istio``."""
    api_version: int
    """The contract version the plugin implements (see :data:`API_VERSION`)."""
    crds: tuple[str, ...]
    """CRD names whose facts (served versions, bundle version, channel) the plugin reads."""

    def capabilities(
        self, config: Any | None = None, facts: ClusterFacts | None = None
    ) -> Capabilities:
        """The envelope with no arguments; the precise set for a config and cluster otherwise."""
        ...

    def parse_config(self, section: Mapping[str, Any], routing: RoutingConfig) -> Any:
        """Validate the plugin's own config section; raise ConfigError with relative paths."""
        ...

    def targets(self, config: Any, live: LiveObjects) -> Sequence[ObjectRef | SelectorRef]:
        """Objects to read. Called again with what was read until it asks for nothing new
        (so a delegate VirtualService named inside a root one can be followed).

        A :class:`~routers.planning.objects.SelectorRef` asks for every object of a kind whose
        labels match (the core lists them: among the manifests offline, one LIST call on a
        cluster); ``live.selected(ref)`` then returns them. Declare ``list`` on that resource in
        :meth:`permissions`."""
        ...

    def plan(self, config: Any, live: LiveObjects, desired: Desired, facts: ClusterFacts) -> Plan:
        """Operations that make the live objects express ``desired``; empty when they do."""
        ...

    def observe(self, config: Any, live: LiveObjects, facts: ClusterFacts) -> Observation: ...

    def permissions(self, config: Any) -> Sequence[Permission]:
        """RBAC rules needed to plan and apply this config."""
        ...


@runtime_checkable
class Evaluator(Protocol):
    """The optional data-plane evaluator of a plugin (contract version 2).

    Pure and exact: shares are Fractions, nothing is sampled; the objects are those the plugin
    reads and writes (as planned, or as read from a cluster).
    """

    def evaluate(self, config: Any, objects: LiveObjects, request: Request) -> Sequence[Routed]:
        """Every routing decision ``objects`` make for ``request``, one per independent scope."""
        ...


def evaluator_of(plugin: RouterPlugin) -> Evaluator | None:
    """The plugin's evaluator, or ``None`` (version 1 plugins never have one: a method of that
    name predates the contract and means something else)."""
    if getattr(plugin, "api_version", 0) < EVALUATOR_SINCE:
        return None
    if not callable(getattr(plugin, "evaluate", None)):
        return None
    return plugin  # type: ignore[return-value]


def sample_requests(plugin: RouterPlugin, config: Any, objects: LiveObjects) -> list[Request]:
    """Requests that reach each rule of ``objects``: the plugin's own when it offers
    ``sample_requests(config, objects)`` (paths and hosts its objects route), else ``GET /``."""
    fn = getattr(plugin, "sample_requests", None)
    if evaluator_of(plugin) is not None and callable(fn):
        return list(fn(config, objects)) or [Request()]
    return [Request()]
