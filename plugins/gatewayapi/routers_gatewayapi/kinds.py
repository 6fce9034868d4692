"""The four route kinds we drive and what each can carry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from routers.planning.objects import Shape

__all__ = ["GROUP", "GRPC", "HTTP", "KINDS", "SHAPES", "TCP", "TLS", "RouteKind"]

GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class RouteKind:
    kind: str
    plural: str
    version: str
    """Preferred API version. TCP/TLS ask for v1alpha2: served by every experimental bundle up to
    v1.6, and where it is not served (v1.5+ standard) the core falls back to the group's preferred
    version, v1, which serves them there."""
    matches: Literal["http", "grpc", "none"]
    config_key: str
    """Argo's singular key (``httpRoute``); the list key is this plus ``s``."""

    @property
    def crd(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def can_manage_rules(self) -> bool:
        """Whether header/mirror rules can be added (TCP/TLS have no request matches)."""
        return self.matches != "none"


HTTP = RouteKind("HTTPRoute", "httproutes", "v1", "http", "httpRoute")
GRPC = RouteKind("GRPCRoute", "grpcroutes", "v1", "grpc", "grpcRoute")
TCP = RouteKind("TCPRoute", "tcproutes", "v1alpha2", "none", "tcpRoute")
TLS = RouteKind("TLSRoute", "tlsroutes", "v1alpha2", "none", "tlsRoute")
KINDS = (HTTP, GRPC, TCP, TLS)


# The parts of a route the planner reads, with the types the CRDs give them (a route from a
# manifest file was never validated by an API server).
_STRING_MATCH: Shape = {"name": str, "type": str, "value": str}
_BACKEND: dict[str, Shape] = {"group": str, "kind": str, "name": str, "namespace": str, "port": int}
_WEIGHTED: Shape = {**_BACKEND, "weight": int, "filters": [dict]}
_MATCHES: dict[str, Shape] = {
    "http": {
        "path": {"type": str, "value": str},
        "headers": [_STRING_MATCH],
        "queryParams": [_STRING_MATCH],
        "method": str,
    },
    "grpc": {"method": {"type": str, "service": str, "method": str}, "headers": [_STRING_MATCH]},
}
_FILTER: Shape = {
    "type": str,
    "requestMirror": {
        "backendRef": _BACKEND,
        "percent": int,
        "fraction": {"numerator": int, "denominator": int},
    },
}


def _route_shape(kind: RouteKind) -> Shape:
    rule: dict[str, Shape] = {"name": str, "backendRefs": [_WEIGHTED], "filters": [_FILTER]}
    if kind.matches != "none":
        rule["matches"] = [_MATCHES[kind.matches]]
    return {"spec": {"parentRefs": [dict], "hostnames": [str], "rules": [rule]}}


SHAPES: Mapping[tuple[str, str], Shape] = {(GROUP, k.kind): _route_shape(k) for k in KINDS}
