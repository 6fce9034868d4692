"""What a TrafficSplit expresses now.

Without ``matches`` the backends split all requests. With matches, the backends split only the
requests the referenced HTTPRouteGroups match; every other request goes to the root Service
directly. So while our header routes are active the weighted location is "requests matching no
header route", and its split is known only when the root Service is the stable (or canary)
Service itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from routers.contract import Observation, ObservedWeights
from routers.planning.objects import LiveObjects
from routers.planning.ownership import is_created_by_us
from routers_smi.config import ROUTE_GROUP_KIND, Config
from routers_smi.quantity import as_integers, parse_weight
from routers_smi.routegroup import group_ledger, routes_in_group
from routers_smi.split import split_ledger

__all__ = ["observe_split"]


def observe_split(config: Config, live: LiveObjects, plugin: str) -> Observation:
    ref = config.split_ref()
    obj = live.get(ref)
    if obj is None:
        return Observation(plugin, problems=(f"{ref} does not exist",))
    where = f"TrafficSplit {ref.namespace}/{ref.name}"
    spec = obj.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    problems: list[str] = []

    weights: dict[str, Fraction] = {}
    backends = spec.get("backends")
    for i, x in enumerate(backends if isinstance(backends, list) else []):
        service = x.get("service") if isinstance(x, Mapping) else None
        weight = parse_weight(x.get("weight")) if isinstance(x, Mapping) else None
        if not isinstance(service, str) or weight is None:
            problems.append(f"{where}: spec.backends[{i}] is not a {{service, weight}} entry")
        elif service in weights:
            problems.append(f"{where}: backend {service!r} is listed more than once")
            weights[service] += weight
        else:
            weights[service] = weight

    view = split_ledger(config, obj)
    if view.shared:
        problems.append(f"{where} holds another owner's entries")
    ours = set(view.names("matches"))
    matches = spec.get("matches")
    entries = [m for m in matches if isinstance(m, Mapping)] if isinstance(matches, list) else []
    mine = [str(m.get("name")) for m in entries if _ours(m, ours)]
    foreign = [str(m.get("name")) for m in entries if not _ours(m, ours)]

    header_routes: list[str] = []
    for name in mine:
        group = live.get(config.group_ref(name))
        if group is None:
            problems.append(f"{where} references HTTPRouteGroup {name!r}, which does not exist")
        elif not is_created_by_us(group, plugin):
            problems.append(f"HTTPRouteGroup {name!r} was not created by canary-routers")
        else:
            gview = group_ledger(group, config.owner, {config.group_name, *ours}, name)
            header_routes.extend(routes_in_group(group, gview))

    observed: list[ObservedWeights] = []
    root = spec.get("service")
    added = set(view.names("backends"))
    if not entries:
        observed.append(_weights(where, config, weights, added))
    elif foreign:
        groups = ", ".join(foreign)
        observed.append(_weights(f"{where} (requests matching {groups})", config, weights, added))
        problems.append(
            f"{where}: requests matching none of HTTPRouteGroup(s) {groups} go to root Service "
            f"{root!r} directly, not through the weights"
        )
    else:
        others = [s for s, w in weights.items() if s != config.canary and w]
        if others or not weights.get(config.canary):
            problems.append(
                f"{where}: requests matching header routes are not all sent to canary "
                f"(backends {', '.join(f'{s}={w}' for s, w in weights.items())})"
            )
        unmatched = f"{where} (requests matching no header route, sent to root Service {root!r})"
        if root == config.stable:
            observed.append(ObservedWeights(unmatched, stable=1, canary=0))
        elif root == config.canary:
            observed.append(ObservedWeights(unmatched, stable=0, canary=1))
        else:
            problems.append(
                f"{where}: requests matching no header route go to root Service {root!r} "
                "directly; its selector, not a weight, decides which pods serve them"
            )
    return Observation(
        plugin,
        weights=tuple(observed),
        header_routes=tuple(sorted(set(header_routes))),
        problems=tuple(problems),
    )


def _ours(entry: Mapping[str, Any], ours: set[str]) -> bool:
    return entry.get("kind") == ROUTE_GROUP_KIND and entry.get("name") in ours


def _weights(
    location: str, config: Config, weights: Mapping[str, Fraction], added: set[str]
) -> ObservedWeights:
    """Stable, canary, the backends we added, and the summed weight of those others listed."""
    ours = {config.stable, config.canary}
    names = [config.stable, config.canary, *sorted((set(weights) & added) - ours)]
    foreign = sum((w for n, w in weights.items() if n not in ours | added), Fraction(0))
    ints = as_integers([*(weights.get(n, Fraction(0)) for n in names), foreign])
    return ObservedWeights(
        location,
        stable=ints[0],
        canary=ints[1],
        additional=tuple(zip(names[2:], ints[2:-1], strict=True)),
        foreign=ints[-1],
    )
