"""Config glue every plugin used to write itself: what a section takes from the routing config,
validating the section, and references to the objects it names.

A plugin whose config is its section plus the routing facts needs no config class of its own::

    class Section(Model):          # routers.model._base.Model: strict, camelCase, extra=forbid
        config_map: ObjectName

    def parse_config(self, section, routing) -> SectionConfig[Section]:
        return parse_section(Section, section, routing)

    def targets(self, config, live):
        return [CONFIGMAP.ref(config.namespace, config.section.config_map)]

One place decides the routing facts (the namespace default, the managed-route order), so a change
to them (e.g. a Rollout's namespace as the default) reaches every plugin at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from routers.model import RoutingConfig, WeightScope
from routers.model._base import Model
from routers.planning.objects import ObjectRef

__all__ = ["Common", "Kind", "SectionConfig", "parse_section"]

DEFAULT_NAMESPACE = "default"

S = TypeVar("S", bound=Model)


@dataclass(frozen=True)
class Kind:
    """A kind of object a plugin reads or writes; ``version`` is the preferred one."""

    group: str
    kind: str
    version: str | None = None

    def ref(self, namespace: str, name: str) -> ObjectRef:
        return ObjectRef(self.group, self.kind, namespace, name, self.version)


@dataclass(frozen=True)
class Common:
    """What every target's config takes from the routing config."""

    namespace: str
    """Where the Services (and, unless the section says otherwise, the objects) live."""
    stable: str
    canary: str
    managed_order: tuple[str, ...] = ()
    """``managedRoutes`` names, the precedence of managed routes (see ``ordered_routes``)."""
    owner: str = ""
    """Whose ledger entries this config reads and writes (``RoutingConfig.owner_key``; see
    ``routers.planning.ownership``)."""
    weight_scope: WeightScope = "all"
    """What a weight is a share of beside destinations we do not own (``weights.place``)."""

    @classmethod
    def of(cls, routing: RoutingConfig) -> Common:
        return cls(
            routing.namespace or DEFAULT_NAMESPACE,
            *routing.services(),
            tuple(r.name for r in routing.managed_routes),
            routing.owner_key(),
            routing.weight_scope,
        )


@dataclass(frozen=True, kw_only=True)
class SectionConfig(Common, Generic[S]):
    """A plugin's validated section together with the routing facts."""

    section: S

    @classmethod
    def build(cls, section: S, routing: RoutingConfig, **derived: Any) -> Self:
        """The validated ``section`` with the routing facts and the fields a subclass adds
        (``derived``, by keyword)."""
        common = Common.of(routing)
        return cls(
            namespace=common.namespace,
            stable=common.stable,
            canary=common.canary,
            managed_order=common.managed_order,
            owner=common.owner,
            weight_scope=common.weight_scope,
            section=section,
            **derived,
        )


def parse_section(
    model: type[S], body: Mapping[str, Any], routing: RoutingConfig
) -> SectionConfig[S]:
    """Validate ``body`` as ``model`` (a ``ConfigError`` with paths relative to the section) and
    join it with the routing facts."""
    return SectionConfig.build(model.parse(dict(body)), routing)
