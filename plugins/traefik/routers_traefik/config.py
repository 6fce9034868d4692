"""The ``traefik`` section: Argo Rollouts' ``trafficRouting.traefik``, plus the mirroring service.

``weightedTraefikServiceName`` is Argo's field: the TraefikService whose ``spec.weighted.services``
list the stable and canary Services. Mirror routes go to a TraefikService with ``spec.mirroring``
whose main service is the weighted one (the one the IngressRoute then references): by Argo's
convention ``argo-mirror-<weightedTraefikServiceName>``, or ``mirrorTraefikServiceName``. Both
live in the routing namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import model_validator

from routers.errors import ConfigError, Problem
from routers.model import RoutingConfig
from routers.model._base import Model
from routers.model._validators import ObjectName
from routers.planning.objects import ObjectRef

__all__ = [
    "ARGO_MIRROR_PREFIX",
    "CRD",
    "GROUP",
    "KIND",
    "VERSION",
    "Config",
    "TraefikSection",
    "parse",
]

GROUP = "traefik.io"
VERSION = "v1alpha1"
KIND = "TraefikService"
CRD = "traefikservices.traefik.io"
ARGO_MIRROR_PREFIX = "argo-mirror-"
"""Argo Rollouts' name for the mirroring TraefikService of a weighted one."""
_MAX_NAME = 253


class TraefikSection(Model):
    weighted_traefik_service_name: ObjectName
    mirror_traefik_service_name: ObjectName | None = None
    """The mirroring TraefikService in front of the weighted one (default: Argo's
    ``argo-mirror-<weightedTraefikServiceName>``)."""

    @model_validator(mode="after")
    def _distinct(self) -> TraefikSection:
        if self.mirror_traefik_service_name == self.weighted_traefik_service_name:
            raise ValueError(
                "mirrorTraefikServiceName must name the mirroring TraefikService in front of the "
                "weighted one, not the weighted one itself"
            )
        return self


@dataclass(frozen=True)
class Config:
    namespace: str
    stable: str
    canary: str
    weighted: ObjectRef
    mirror: ObjectRef


def _ref(namespace: str, name: str) -> ObjectRef:
    return ObjectRef(GROUP, KIND, namespace, name, VERSION)


def parse(body: Mapping[str, Any], routing: RoutingConfig) -> Config:
    section = TraefikSection.parse(dict(body))
    namespace = routing.namespace or "default"
    weighted = section.weighted_traefik_service_name
    mirror = section.mirror_traefik_service_name or ARGO_MIRROR_PREFIX + weighted
    if len(mirror) > _MAX_NAME:
        raise ConfigError(
            [
                Problem(
                    "weightedTraefikServiceName",
                    f"too long to derive the mirroring TraefikService's name "
                    f"'{ARGO_MIRROR_PREFIX}<name>'; set mirrorTraefikServiceName",
                )
            ]
        )
    return Config(
        namespace=namespace,
        stable=routing.stable_service,
        canary=routing.canary_service,
        weighted=_ref(namespace, weighted),
        mirror=_ref(namespace, mirror),
    )
