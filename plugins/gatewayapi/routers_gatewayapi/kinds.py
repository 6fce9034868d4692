"""The four route kinds we drive and what each can carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["GROUP", "GRPC", "HTTP", "KINDS", "TCP", "TLS", "RouteKind"]

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
