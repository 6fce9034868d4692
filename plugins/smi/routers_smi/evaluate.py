"""SMI TrafficSplit routing (spec §3.2): a relative split of requests addressed to a root Service.

A request addressed to ``service`` is split by the TrafficSplit whose ``spec.service`` names it.
Without ``spec.matches`` every request is split. With ``matches`` (v1alpha3+) only requests that
match one of the referenced HTTPRouteGroups are split; the rest go to the root Service itself,
which is the trap this simulation exists to show (the root usually selects stable and canary
pods alike). When several splits name the same root, one whose matches match wins over one
without matches, then list order (SMI leaves it undefined).

HTTPRouteGroup matches: ``methods`` (``*`` or absent = any), ``pathRegex`` anchored at the start,
``headers`` name -> regex on the whole value (map form, or a list of single-entry maps as the
smi-sdk-go CRD declares); conditions ANDed, entries ORed. Weights are integers or, in v1alpha1,
Kubernetes quantities (``500m``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Any

from routers.planning.objects import LiveObjects, short_host
from routers.planning.weights import parse_weight
from routers.simulate import Outcome, Request, Routed, add_shares, regex_matches
from routers.simulate.equivalence import path_probes
from routers_smi.config import ROUTE_GROUP_KIND, SPECS_GROUP, SPLIT_GROUP, SPLIT_KIND, Config

__all__ = ["evaluate", "sample_requests", "simulate_traffic_split"]

JSON = Mapping[str, Any]


def _headers(raw: Any) -> Iterator[tuple[str, str]]:
    if isinstance(raw, Mapping):
        yield from ((str(k), str(v)) for k, v in raw.items())
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping):
                yield from ((str(k), str(v)) for k, v in item.items())


def _group_match(m: JSON, req: Request) -> bool:
    methods = [str(x) for x in m.get("methods") or []]
    if methods and "*" not in methods and req.method not in methods:
        return False
    path_regex = m.get("pathRegex")
    if path_regex and not regex_matches(str(path_regex), req.path, "start"):
        return False
    for name, pattern in _headers(m.get("headers")):
        value = req.header(name)
        if value is None or not regex_matches(pattern, value, "full"):
            return False
    return True


def _matches(split: JSON, groups: Mapping[str, JSON], req: Request) -> bool | None:
    """``None``: the split has no matches (applies to all); otherwise whether one matches."""
    refs = (split.get("spec") or {}).get("matches") or []
    if not refs:
        return None
    for ref in refs:
        if not isinstance(ref, Mapping) or ref.get("kind", "HTTPRouteGroup") != "HTTPRouteGroup":
            continue
        group = groups.get(str(ref.get("name")))
        if group is None:
            continue
        for m in (group.get("spec") or {}).get("matches") or []:
            if isinstance(m, Mapping) and _group_match(m, req):
                return True
    return False


def simulate_traffic_split(
    splits: Sequence[JSON],
    request: Request,
    *,
    service: str,
    groups: Mapping[str, JSON] | None = None,
) -> Outcome:
    """Route ``request`` addressed to the root ``service`` (groups: HTTPRouteGroup name -> object)."""
    specific: list[JSON] = []
    general: list[JSON] = []
    for split in splits:
        meta = split.get("metadata") or {}
        root = short_host(str((split.get("spec") or {}).get("service", "")), meta.get("namespace"))
        if root != service:
            continue
        hit = _matches(split, groups or {}, request)
        if hit:
            specific.append(split)
        elif hit is None:
            general.append(split)
    chosen = (specific + general)[:1]
    if not chosen:
        return Outcome({service: Fraction(1)}, via=f"Service {service} (no TrafficSplit applies)")
    split = chosen[0]
    meta = split.get("metadata") or {}
    via = f"TrafficSplit {meta.get('namespace')}/{meta.get('name')}"
    backends = [
        b for b in (split.get("spec") or {}).get("backends") or [] if isinstance(b, Mapping)
    ]
    weights = [parse_weight(b.get("weight")) for b in backends]
    if any(w is None or w < 0 for w in weights):
        return Outcome(via=via, status=500, reason="invalid backend weight")
    total = sum((w for w in weights if w is not None), Fraction(0))
    if total == 0:
        return Outcome(via=via, status=503, reason="no backend has weight")
    return Outcome(
        add_shares(
            (short_host(str(b.get("service", "")), meta.get("namespace")), w / total)
            for b, w in zip(backends, weights, strict=True)
            if w is not None
        ),
        via=via,
    )


def evaluate(config: Config, objects: LiveObjects, request: Request) -> list[Routed]:
    """Requests addressed to the config's root Service: split by a TrafficSplit, or served by
    the root Service itself when none applies (none exists, or its matches miss)."""
    splits = [o for _, o in objects.of_kind(SPLIT_GROUP, SPLIT_KIND)]
    groups = {
        str((g.get("metadata") or {}).get("name")): g
        for _, g in objects.of_kind(SPECS_GROUP, ROUTE_GROUP_KIND)
    }
    outcome = simulate_traffic_split(splits, request, service=config.root, groups=groups)
    return [Routed(f"Service {config.root} (TrafficSplit)", outcome)]


def sample_requests(config: Config, objects: LiveObjects) -> list[Request]:
    """TrafficSplits match no paths of their own (HTTPRouteGroups match by regex)."""
    return path_probes([])
