"""Service host names as Istio resolves them.

A destination ``host`` is a short name (resolved in the namespace of the object that holds it),
``name.namespace``, ``name.namespace.svc`` or a fully qualified ``name.namespace.svc.<domain>``.
Argo cuts every host at the first dot and so confuses Services of the same name in different
namespaces; we compare the resolved ``name.namespace`` instead.
"""

from __future__ import annotations

__all__ = ["canonical", "host_for", "same_host"]


def canonical(host: str, namespace: str | None) -> str:
    """``name.namespace`` for in-cluster Service hosts; anything else unchanged (lower-cased)."""
    host = host.lower().rstrip(".")
    parts = host.split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}" if namespace else host
    if len(parts) == 2:
        return host
    if parts[2] == "svc":
        return f"{parts[0]}.{parts[1]}"
    return host


def same_host(a: str, a_ns: str | None, b: str, b_ns: str | None) -> bool:
    return canonical(a, a_ns) == canonical(b, b_ns)


def host_for(service: str, service_ns: str, written_in: str | None) -> str:
    """The host to write for a Service in an object of namespace ``written_in``."""
    if written_in == service_ns:
        return service
    return f"{service}.{service_ns}.svc.cluster.local"
