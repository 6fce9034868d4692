"""The ``smi`` section: Argo Rollouts' ``trafficRouting.smi`` plus our switches.

Argo names the TrafficSplit after the Rollout when ``trafficSplitName`` is absent, and so do we
when the config is a Rollout (or names one: ``rollout.name``). Without a Rollout the name is
required: guessing one (``<stable>-split``) would create a second TrafficSplit for the same root
Service next to the one Argo made, and meshes merge such splits unpredictably (Linkerd's adaptor
makes both write one ServiceProfile).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import field_validator

from routers.errors import ConfigError, Problem
from routers.model import RoutingConfig
from routers.model._base import Model
from routers.model._validators import ObjectName, ServiceName
from routers.planning.objects import ObjectRef
from routers.planning.sections import SectionConfig

__all__ = [
    "ROUTE_GROUP_KIND",
    "SPECS_GROUP",
    "SPLIT_GROUP",
    "SPLIT_KIND",
    "VERSIONS",
    "Config",
    "HeadersShape",
    "SmiSection",
    "Version",
    "parse",
]

SPLIT_GROUP = "split.smi-spec.io"
SPECS_GROUP = "specs.smi-spec.io"
SPLIT_KIND = "TrafficSplit"
ROUTE_GROUP_KIND = "HTTPRouteGroup"

Version = Literal["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"]
VERSIONS: tuple[Version, ...] = ("v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1")
"""Known versions, most capable first (the order of preference when several are served)."""
MATCH_VERSIONS: frozenset[str] = frozenset({"v1alpha3", "v1alpha4"})
"""Versions with ``spec.matches`` (HTTPRouteGroup references)."""

HeadersShape = Literal["map", "list"]

_LONG = {f"{SPLIT_GROUP}/{v}": v for v in VERSIONS}


class SmiSection(Model):
    root_service: ServiceName | None = None
    """The Service clients call (``spec.service``); default: the stable Service, as in Argo."""
    traffic_split_name: ObjectName | None = None
    api_version: str | None = None
    """``v1alpha1``..``v1alpha4`` (or ``split.smi-spec.io/<v>``); default: from the cluster."""
    accept_unmatched_to_root: bool = False
    """Accept that, while header routes are active, requests matching none of them go to the
    root Service directly instead of being split by weight."""
    http_route_group_headers: HeadersShape | None = None
    """``map`` (spec and Go types) or ``list`` (smi-sdk-go's CRD): see smi-spec issue #233."""
    http_route_group_name: ObjectName | None = None
    """Name of the HTTPRouteGroup we create for header routes (default ``<split>-routes``)."""

    @field_validator("api_version")
    @classmethod
    def _known_version(cls, v: str | None) -> str | None:
        if v is not None and v not in VERSIONS and v not in _LONG:
            raise ValueError(
                f"{v!r} is not a TrafficSplit version "
                f"(one of {', '.join(sorted(VERSIONS))}, optionally prefixed '{SPLIT_GROUP}/')"
            )
        return v

    @property
    def version(self) -> Version | None:
        v = self.api_version
        if v is None:
            return None
        return _LONG.get(v) or next(k for k in VERSIONS if k == v)


@dataclass(frozen=True, kw_only=True)
class Config(SectionConfig[SmiSection]):
    root: str
    split_name: str
    group_name: str

    @property
    def pinned(self) -> Version | None:
        return self.section.version

    def split_ref(self, version: str | None = None) -> ObjectRef:
        return ObjectRef(SPLIT_GROUP, SPLIT_KIND, self.namespace, self.split_name, version)

    def group_ref(self, name: str | None = None, version: str | None = None) -> ObjectRef:
        return ObjectRef(
            SPECS_GROUP, ROUTE_GROUP_KIND, self.namespace, name or self.group_name, version
        )


_MAX_NAME = 253
_GROUP_SUFFIX = "-routes"


def parse(section: Mapping[str, Any], routing: RoutingConfig) -> Config:
    body = SmiSection.parse(dict(section))
    stable, canary = routing.services()
    problems: list[Problem] = []
    root = body.root_service or stable
    if body.root_service == canary:
        problems.append(
            Problem(
                "rootService",
                f"{root!r} is the canary Service; the root Service is the name clients call "
                "and must not be a backend that receives only canary traffic",
            )
        )
    split_name = body.traffic_split_name or (routing.rollout.name if routing.rollout else "")
    if not split_name:
        problems.append(
            Problem(
                "trafficSplitName",
                "required without a Rollout: Argo Rollouts defaults it to the Rollout's name; "
                "give that name (or the whole Rollout as the config) to take over the existing "
                "TrafficSplit",
            )
        )
    group_name = body.http_route_group_name or split_name + _GROUP_SUFFIX
    if body.http_route_group_name is None and len(group_name) > _MAX_NAME:
        problems.append(
            Problem(
                "trafficSplitName",
                f"too long to derive the HTTPRouteGroup name '<name>{_GROUP_SUFFIX}' "
                f"(at most {_MAX_NAME} characters); set httpRouteGroupName",
            )
        )
    if problems:
        raise ConfigError(problems)
    return Config.build(body, routing, root=root, split_name=split_name, group_name=group_name)
