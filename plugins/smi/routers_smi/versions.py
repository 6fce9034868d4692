"""Which TrafficSplit version to speak, and the HTTPRouteGroup shape to emit.

Order of authority: the config's ``apiVersion``, then the versions the cluster serves (the most
capable one: v1alpha4 > v1alpha3 > v1alpha2 > v1alpha1), then v1alpha2 offline -- what
linkerd-smi, the last maintained SMI implementation, serves (its storage version v1alpha1 reads
the same integer weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from routers.contract import ClusterFacts
from routers.errors import PlanError, TargetNotFoundError
from routers_smi.config import (
    MATCH_VERSIONS,
    SPECS_GROUP,
    SPLIT_GROUP,
    VERSIONS,
    Config,
    HeadersShape,
    Version,
)

__all__ = [
    "DEFAULT_VERSION",
    "GROUP_CRD",
    "SPLIT_CRD",
    "Resolved",
    "group_version",
    "headers_shape",
    "headers_shape_from_schema",
    "resolve",
]

DEFAULT_VERSION: Version = "v1alpha2"
SPLIT_CRD = "trafficsplits.split.smi-spec.io"
GROUP_CRD = "httproutegroups.specs.smi-spec.io"


@dataclass(frozen=True)
class Resolved:
    version: Version
    assumed: bool
    """True when nothing told us (offline, no CRD among the inputs, no ``apiVersion``)."""

    @property
    def has_matches(self) -> bool:
        return self.version in MATCH_VERSIONS


def resolve(config: Config, facts: ClusterFacts | None, *, strict: bool = False) -> Resolved:
    """The version to use. ``strict`` raises when the cluster contradicts or lacks the API
    (planning); capabilities and cleanup take the best answer instead."""
    served = facts.served_versions(SPLIT_GROUP) if facts is not None else None
    in_cluster = facts is not None and facts.source == "cluster"
    pinned = config.pinned
    if strict and in_cluster and not served:
        raise TargetNotFoundError(
            f"the cluster serves no version of {SPLIT_GROUP}: the TrafficSplit CRD "
            f"({SPLIT_CRD}) is not installed",
            plugin="smi",
            obj=str(config.split_ref()),
        )
    if pinned is not None:
        if strict and served and pinned not in served:
            raise PlanError(
                f"apiVersion {SPLIT_GROUP}/{pinned} is not served by the cluster "
                f"(served: {', '.join(served)}); change apiVersion or remove it",
                plugin="smi",
                obj=str(config.split_ref()),
            )
        return Resolved(pinned, assumed=False)
    if served:
        for v in VERSIONS:
            if v in served:
                return Resolved(v, assumed=False)
        if strict:
            raise PlanError(
                f"the cluster serves {SPLIT_GROUP} only in versions this plugin does not know "
                f"({', '.join(served)}); known: {', '.join(VERSIONS)}",
                plugin="smi",
                obj=str(config.split_ref()),
            )
    return Resolved(DEFAULT_VERSION, assumed=True)


def group_version(config: Config, version: Version, facts: ClusterFacts) -> str:
    """The ``specs.smi-spec.io`` version paired with a TrafficSplit version (v1alpha3 <->
    v1alpha3, v1alpha4 <-> v1alpha4, as each TrafficSplit version's spec states)."""
    served = facts.served_versions(SPECS_GROUP)
    if (facts.source == "cluster" and not served) or (served and version not in served):
        have = ", ".join(served) if served else "none"
        raise TargetNotFoundError(
            f"header routes on {SPLIT_GROUP}/{version} need {SPECS_GROUP}/{version} "
            f"HTTPRouteGroups, which the cluster does not serve (served: {have}); install the "
            f"{GROUP_CRD} CRD or set apiVersion to the TrafficSplit version it pairs with",
            plugin="smi",
            obj=str(config.group_ref()),
        )
    return version


def headers_shape(config: Config, version: str, facts: ClusterFacts | None) -> HeadersShape:
    """``headers`` as a map (spec, Go types, what controllers decode) or a list of one-key maps
    (what smi-sdk-go's CRD schema declares). Config wins, then the installed CRD's schema when
    the core reports it, else the map the implementations read."""
    if config.section.http_route_group_headers is not None:
        return config.section.http_route_group_headers
    crd = facts.crd(GROUP_CRD) if facts is not None else None
    if crd is not None:
        shape = headers_shape_from_schema(crd.schemas.get(version))
        if shape is not None:
            return shape
    return "map"


def headers_shape_from_schema(schema: Any) -> HeadersShape | None:
    """The shape an HTTPRouteGroup CRD schema declares for ``spec.matches[].headers``."""
    node: Any = schema
    for key in ("properties", "spec", "properties", "matches", "items", "properties", "headers"):
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    if not isinstance(node, Mapping):
        return None
    kind = node.get("type")
    if kind == "array":
        return "list"
    if kind == "object":
        return "map"
    return None
