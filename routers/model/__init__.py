"""Validated input types: traffic state, instructions, routing configuration.

These are *our* inputs. Live Kubernetes objects never pass through these models: they stay plain
dicts so that fields we do not know survive untouched.
"""

from routers.model.config import (
    WEIGHT_SCOPE_ANNOTATION,
    ManagedRouteRef,
    RoutingConfig,
    Section,
    WeightScope,
    plugin_name,
)
from routers.model.matches import (
    HeaderMatch,
    MatchType,
    Method,
    PathMatch,
    QueryParamMatch,
    RequestMatch,
)
from routers.model.state import (
    MAX_TOTAL,
    AdditionalDestination,
    Cleanup,
    Desired,
    HeaderRoute,
    Instruction,
    ManagedRoute,
    MirrorRoute,
    RemoveManagedRoutes,
    SetHeaderRoute,
    SetMirrorRoute,
    SetWeight,
    TrafficState,
)

__all__ = [
    "MAX_TOTAL",
    "WEIGHT_SCOPE_ANNOTATION",
    "AdditionalDestination",
    "Cleanup",
    "Desired",
    "HeaderMatch",
    "HeaderRoute",
    "Instruction",
    "ManagedRoute",
    "ManagedRouteRef",
    "MatchType",
    "Method",
    "MirrorRoute",
    "PathMatch",
    "QueryParamMatch",
    "RemoveManagedRoutes",
    "RequestMatch",
    "RoutingConfig",
    "Section",
    "SetHeaderRoute",
    "SetMirrorRoute",
    "SetWeight",
    "TrafficState",
    "WeightScope",
    "plugin_name",
]
