"""canary-routers as an Argo Rollouts traffic-router plugin: the Python side of ``argo/``.

Argo Rollouts runs the Go bridge (``argo/``) through hashicorp/go-plugin; the bridge starts
``routers argo-plugin`` once and forwards every TrafficRouterPlugin call to it as a JSON line
(:mod:`routers.argo.server`). Each Rollout gets a session with its own Router
(:mod:`routers.argo.session`); the calls map onto our declarative states
(:mod:`routers.argo.plugin`).
"""

from routers.argo.plugin import METHODS, ArgoPlugin, CallError
from routers.argo.rollout import RolloutView, routing_document
from routers.argo.server import PROTOCOL_VERSION, serve
from routers.argo.session import RECORD_PREFIX, Session, Sessions, record_key

__all__ = [
    "METHODS",
    "PROTOCOL_VERSION",
    "RECORD_PREFIX",
    "ArgoPlugin",
    "CallError",
    "RolloutView",
    "Session",
    "Sessions",
    "record_key",
    "routing_document",
    "serve",
]
