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
from routers.planning.sections import Kind, SectionConfig

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
TRAEFIK_SERVICE = Kind(GROUP, KIND, VERSION)
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


@dataclass(frozen=True, kw_only=True)
class Config(SectionConfig[TraefikSection]):
    @property
    def weighted(self) -> ObjectRef:
        return TRAEFIK_SERVICE.ref(self.namespace, self.section.weighted_traefik_service_name)

    @property
    def mirror(self) -> ObjectRef:
        name = self.section.mirror_traefik_service_name
        weighted = self.section.weighted_traefik_service_name
        return TRAEFIK_SERVICE.ref(self.namespace, name or ARGO_MIRROR_PREFIX + weighted)


def parse(body: Mapping[str, Any], routing: RoutingConfig) -> Config:
    config = Config.build(TraefikSection.parse(dict(body)), routing)
    if len(config.mirror.name) > _MAX_NAME:
        raise ConfigError(
            [
                Problem(
                    "weightedTraefikServiceName",
                    f"too long to derive the mirroring TraefikService's name "
                    f"'{ARGO_MIRROR_PREFIX}<name>'; set mirrorTraefikServiceName",
                )
            ]
        )
    return config
