"""The desired traffic state and the imperative verbs that transform it.

Plugins plan from a whole :class:`TrafficState` (declarative: same state, empty plan; a managed
route someone deleted comes back). The verbs of Argo Rollouts (``SetWeight``,
``SetHeaderRoute``, ``SetMirrorRoute``, ``RemoveManagedRoutes``) are transitions of that state,
so a controller that thinks in steps gets the same guarantees.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from routers.errors import ConfigError, Problem
from routers.model._base import Model, config_error
from routers.model._validators import PodTemplateHash, RouteName, ServiceName
from routers.model.matches import RequestMatch

__all__ = [
    "MAX_TOTAL",
    "AdditionalDestination",
    "Cleanup",
    "Desired",
    "HeaderRoute",
    "Instruction",
    "ManagedRoute",
    "MirrorRoute",
    "RemoveManagedRoutes",
    "SetHeaderRoute",
    "SetMirrorRoute",
    "SetWeight",
    "TrafficState",
]

MAX_TOTAL = 1_000_000
"""Largest total: Gateway API's weight ceiling, the finest precision any target offers."""

Matches = Annotated[tuple[RequestMatch, ...], Field(strict=False, max_length=64)]


class AdditionalDestination(Model):
    """An extra weighted destination, e.g. an experiment Service; stable receives the rest."""

    service: ServiceName
    weight: Annotated[int, Field(ge=0, le=MAX_TOTAL)]
    pod_template_hash: PodTemplateHash | None = None


class _Route(Model):
    name: RouteName
    matches: Matches

    @model_validator(mode="after")
    def _has_matches(self) -> _Route:
        if not self.matches:
            raise ValueError(
                "matches: at least one match is required (a route without matches would capture "
                "all traffic; to remove a route, drop it from the state or use an empty "
                "setHeaderRoute/setMirrorRoute)"
            )
        return self


class HeaderRoute(_Route):
    """Requests matching ``matches`` go 100% to the canary."""


class MirrorRoute(_Route):
    """``percentage`` of the requests matching ``matches`` are copied to the canary."""

    percentage: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 100.0


ManagedRoute = HeaderRoute | MirrorRoute


class TrafficState(Model):
    """Everything a target should express at one moment of a rollout."""

    weight: Annotated[int, Field(ge=0, le=MAX_TOTAL)] = 0
    total: Annotated[int, Field(ge=1, le=MAX_TOTAL)] = 100
    additional_destinations: Annotated[
        tuple[AdditionalDestination, ...], Field(strict=False, max_length=14)
    ] = ()
    header_routes: Annotated[tuple[HeaderRoute, ...], Field(strict=False)] = ()
    mirror_routes: Annotated[tuple[MirrorRoute, ...], Field(strict=False)] = ()
    stable_hash: PodTemplateHash | None = None
    """Pod-template hash of the stable ReplicaSet, for label-selected subsets (Istio DestinationRule)."""
    canary_hash: PodTemplateHash | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TrafficState:
        if self.weight > self.total:
            raise ValueError(f"weight {self.weight} is above total {self.total}")
        extra = sum(d.weight for d in self.additional_destinations)
        if self.weight + extra > self.total:
            raise ValueError(
                f"weight {self.weight} plus additional destinations {extra} exceed total {self.total}"
            )
        services = [d.service for d in self.additional_destinations]
        dupes = sorted({s for s in services if services.count(s) > 1})
        if dupes:
            raise ValueError(f"additionalDestinations: service {dupes[0]!r} is listed twice")
        names = [r.name for r in self.header_routes] + [r.name for r in self.mirror_routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"route name {dupes[0]!r} is used more than once across headerRoutes and mirrorRoutes"
            )
        return self

    @property
    def stable_weight(self) -> int:
        return self.total - self.weight - sum(d.weight for d in self.additional_destinations)

    @property
    def route_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.header_routes) + tuple(r.name for r in self.mirror_routes)

    def with_changes(self, **changes: Any) -> TrafficState:
        """Return a re-validated copy (``model_copy`` would skip validation)."""
        data = {**{name: getattr(self, name) for name in type(self).model_fields}, **changes}
        try:
            return TrafficState(**data)
        except ValidationError as exc:
            raise config_error(exc) from None


class Cleanup(Model):
    """Remove every route and object we added; optionally send 100% back to stable."""

    kind: Literal["cleanup"] = "cleanup"
    restore_stable: bool = True


Desired = TrafficState | Cleanup
"""What a plugin plans towards."""


# --- imperative verbs (Argo Rollouts' vocabulary) -------------------------------------------


class SetWeight(Model):
    kind: Literal["setWeight"] = "setWeight"
    weight: Annotated[int, Field(ge=0, le=MAX_TOTAL)]
    additional_destinations: (
        Annotated[tuple[AdditionalDestination, ...], Field(strict=False)] | None
    ) = None

    def apply(self, state: TrafficState) -> TrafficState:
        changes: dict[str, Any] = {"weight": self.weight}
        if self.additional_destinations is not None:
            changes["additional_destinations"] = self.additional_destinations
        return state.with_changes(**changes)


class SetHeaderRoute(Model):
    """Add or replace the named header route; empty ``matches`` removes it."""

    kind: Literal["setHeaderRoute"] = "setHeaderRoute"
    name: RouteName
    matches: Matches = ()

    def apply(self, state: TrafficState) -> TrafficState:
        _check_kind_clash(state, self.name, "mirror_routes", "header route")
        routes = [r for r in state.header_routes if r.name != self.name]
        if self.matches:
            new = HeaderRoute(name=self.name, matches=self.matches)
            routes = (
                _replace_in_place(state.header_routes, new)
                if len(routes) < len(state.header_routes)
                else [*routes, new]
            )
        return state.with_changes(header_routes=routes)


class SetMirrorRoute(Model):
    """Add or replace the named mirror route; empty ``matches`` removes it."""

    kind: Literal["setMirrorRoute"] = "setMirrorRoute"
    name: RouteName
    matches: Matches = ()
    percentage: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 100.0

    def apply(self, state: TrafficState) -> TrafficState:
        _check_kind_clash(state, self.name, "header_routes", "mirror route")
        routes = [r for r in state.mirror_routes if r.name != self.name]
        if self.matches:
            new = MirrorRoute(name=self.name, matches=self.matches, percentage=self.percentage)
            routes = (
                _replace_in_place(state.mirror_routes, new)
                if len(routes) < len(state.mirror_routes)
                else [*routes, new]
            )
        return state.with_changes(mirror_routes=routes)


class RemoveManagedRoutes(Model):
    kind: Literal["removeManagedRoutes"] = "removeManagedRoutes"

    def apply(self, state: TrafficState) -> TrafficState:
        return state.with_changes(header_routes=(), mirror_routes=())


Instruction = Annotated[
    SetWeight | SetHeaderRoute | SetMirrorRoute | RemoveManagedRoutes, Field(discriminator="kind")
]


def _replace_in_place(routes: tuple[Any, ...], new: Any) -> list[Any]:
    return [new if r.name == new.name else r for r in routes]


def _check_kind_clash(state: TrafficState, name: str, other: str, what: str) -> None:
    if any(r.name == name for r in getattr(state, other)):
        raise ConfigError(
            [
                Problem(
                    "name",
                    f"{name!r} already names a {other.split('_', maxsplit=1)[0]} route; cannot reuse it for a {what}",
                )
            ]
        )
