"""Cluster layer: the only code that talks to the API server (through the official client).

* :class:`Router` -- the controller-facing API (threads welcome);
* :class:`WatchCache` -- list+watch cache shared by many Routers: no GET in a steady state;
* :func:`reconcile` -- read, plan, apply with guards, retry conflicts, revert partial applies;
* :func:`rbac_manifests` -- the minimal Role a config needs;
* :class:`EventRecorder` -- best-effort Kubernetes Events on the objects we act for.
"""

from routers.cluster._apply import Applied, Outcome, execute, gather_facts, reader, reconcile
from routers.cluster._kube import FIELD_MANAGER, Kube, ResourceInfo
from routers.cluster._transport import (
    DEFAULT_TIMEOUTS,
    ApiStatus,
    RequestRecord,
    Timeouts,
    Transport,
)
from routers.cluster._watch import CacheStats, WatchCache
from routers.cluster.events import EventRecorder, InvolvedObject
from routers.cluster.rbac import rbac_manifests
from routers.cluster.router import Router

__all__ = [
    "DEFAULT_TIMEOUTS",
    "FIELD_MANAGER",
    "ApiStatus",
    "Applied",
    "CacheStats",
    "EventRecorder",
    "InvolvedObject",
    "Kube",
    "Outcome",
    "RequestRecord",
    "ResourceInfo",
    "Router",
    "Timeouts",
    "Transport",
    "WatchCache",
    "execute",
    "gather_facts",
    "rbac_manifests",
    "reader",
    "reconcile",
]
