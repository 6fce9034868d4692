"""How Traefik serves a request that reached a TraefikService (Traefik v3.7, kubernetesCRD).

The IngressRoute that references the TraefikService has matched already; a TraefikService
matches nothing itself. Semantics, from Traefik's provider and load balancers:

* ``weighted``: a weighted round robin over ``services[]``; an omitted ``weight`` is 1, and a
  service of weight 0 is left out. With nothing left, Traefik answers 503. The round robin is
  deterministic (earliest deadline first), so over requests each service gets exactly its share.
* ``mirroring``: the main service (``name``/``kind``) serves the request; each ``mirrors[]``
  entry receives a copy of ``percent`` (0-100, omitted = 0) of the requests, counted exactly
  (a mirror is used while ``copies * 100 < requests * percent``). Requests with a body larger
  than ``maxBodySize`` are not copied; a simulated request has no body.
* an entry of ``kind: TraefikService`` is another such service (followed when given); a
  Kubernetes Service entry is a destination, named by its Service name (``name.namespace``
  outside the TraefikService's namespace).

Sticky cookies (``weighted.sticky``) pin clients that already hold one; a simulated request
carries none, so it gets the weighted share. ``highestRandomWeight`` and ``failover`` services
are reported as destinations of their own (``TraefikService:<name>``), not evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from routers.planning.objects import LiveObjects, ObjectRef
from routers.simulate import Outcome, Request, Routed, add_shares
from routers.simulate.equivalence import path_probes
from routers_traefik.config import GROUP, KIND, Config

__all__ = ["entry_label", "evaluate", "route_service", "sample_requests"]

JSON = Mapping[str, Any]
_MAX_DEPTH = 8
"""TraefikServices nest; a reference cycle ends here (Traefik itself rejects it at runtime)."""


def entry_label(entry: JSON, namespace: str) -> str:
    """A Kubernetes Service entry by name (``name.ns`` across namespaces); others by kind."""
    name = str(entry.get("name", ""))
    ns = entry.get("namespace")
    if ns and ns != namespace:
        name = f"{name}.{ns}"
    kind = entry.get("kind") or "Service"
    return name if kind == "Service" else f"{kind}:{name}"


def weight_of(entry: JSON) -> int:
    """Traefik's weight of a ``weighted.services[]`` entry (omitted: 1)."""
    w = entry.get("weight", 1)
    return w if isinstance(w, int) and not isinstance(w, bool) and w > 0 else 0


def _nested(entry: JSON, namespace: str, objects: LiveObjects) -> JSON | None:
    if entry.get("kind") != KIND:
        return None
    return objects.get(
        ObjectRef(GROUP, KIND, entry.get("namespace") or namespace, str(entry.get("name")))
    )


def _serve(entry: JSON, namespace: str, objects: LiveObjects, depth: int) -> Outcome:
    nested = _nested(entry, namespace, objects)
    if nested is None:
        return Outcome({entry_label(entry, namespace): Fraction(1)})
    return route_service(nested, objects, depth + 1)


def route_service(ts: JSON, objects: LiveObjects, depth: int = 0) -> Outcome:
    """What one TraefikService does with a request (nested TraefikServices from ``objects``)."""
    meta = ts.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    via = f"TraefikService {namespace}/{meta.get('name')}"
    if depth > _MAX_DEPTH:
        return Outcome(via=via, status=500, reason="TraefikService references form a cycle")
    spec = ts.get("spec") or {}
    weighted = spec.get("weighted")
    if isinstance(weighted, Mapping):
        entries = [e for e in weighted.get("services") or [] if isinstance(e, Mapping)]
        weights = [weight_of(e) for e in entries]
        total = sum(weights)
        if total == 0:
            return Outcome(via=via, status=503, reason="no service has a positive weight")
        shares: list[tuple[str, Fraction]] = []
        mirrors: list[tuple[str, Fraction]] = []
        for e, w in zip(entries, weights, strict=True):
            if w:
                inner = _serve(e, namespace, objects, depth)
                if not inner.routed:
                    return Outcome(via=inner.via, status=inner.status, reason=inner.reason)
                shares += [(k, v * w / total) for k, v in inner.shares.items()]
                mirrors += [(k, v * w / total) for k, v in inner.mirrors.items()]
        return Outcome(add_shares(shares), add_shares(mirrors), via)
    mirroring = spec.get("mirroring")
    if isinstance(mirroring, Mapping):
        main = _serve(mirroring, namespace, objects, depth)
        if not main.routed:
            return main
        copies: list[tuple[str, Fraction]] = list(main.mirrors.items())
        for m in mirroring.get("mirrors") or []:
            if not isinstance(m, Mapping):
                continue
            pct = m.get("percent", 0)
            share = Fraction(pct, 100) if isinstance(pct, int) and 0 < pct <= 100 else Fraction(0)
            inner = _serve(m, namespace, objects, depth)
            copies += [(k, v * share) for k, v in inner.shares.items()]
        return Outcome(main.shares, add_shares(copies), f"{via} -> {main.via or 'main service'}")
    return Outcome({f"{KIND}:{meta.get('name')}": Fraction(1)}, via=via)


def evaluate(config: Config, objects: LiveObjects, request: Request) -> list[Routed]:
    """Requests the IngressRoute sends to the TraefikService in front: the mirroring one when it
    exists, else the weighted one."""
    ref = config.mirror if config.mirror in objects else config.weighted
    scope = f"{KIND} {ref.namespace}/{ref.name}"
    ts = objects.get(ref)
    if ts is None:
        return [Routed(scope, Outcome(via=scope, status=404, reason="TraefikService not found"))]
    return [Routed(scope, route_service(ts, objects))]


def sample_requests(config: Config, objects: LiveObjects) -> list[Request]:
    """A TraefikService matches no paths: any request that reaches it is served alike."""
    return path_probes([])
