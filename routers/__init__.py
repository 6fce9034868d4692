"""canary-routers: turn canary traffic instructions into guarded edits of mesh/ingress objects.

Public API: the input model (:class:`TrafficState`, :class:`RoutingConfig`, the verbs), the error
tree (:mod:`routers.errors`), the plugin contract (:mod:`routers.contract`) and the engine.
The cluster layer (:mod:`routers.cluster`) is imported on demand because it pulls in the
``kubernetes`` client.
"""

from routers.errors import (
    ApplyError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    LimitExceededError,
    PlanError,
    PluginError,
    RoutersError,
    TargetNotFoundError,
    UnsupportedError,
)
from routers.model import (
    Cleanup,
    HeaderRoute,
    MirrorRoute,
    RemoveManagedRoutes,
    RequestMatch,
    RoutingConfig,
    SetHeaderRoute,
    SetMirrorRoute,
    SetWeight,
    TrafficState,
)

__all__ = [
    "ApplyError",
    "Cleanup",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "HeaderRoute",
    "LimitExceededError",
    "MirrorRoute",
    "PlanError",
    "PluginError",
    "RemoveManagedRoutes",
    "RequestMatch",
    "RoutersError",
    "RoutingConfig",
    "SetHeaderRoute",
    "SetMirrorRoute",
    "SetWeight",
    "TargetNotFoundError",
    "TrafficState",
    "UnsupportedError",
]
