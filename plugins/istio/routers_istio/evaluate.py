"""Istio VirtualService HTTP routing, as Envoy evaluates what Istio generates.

First route in ``http[]`` order whose ``match[]`` matches (entries ORed, conditions ANDed; no
``match`` matches everything). StringMatch ``exact``/``prefix`` compare characters (``/api``
matches ``/apis``), ``regex`` is a whole-value RE2 match; ``ignoreUriCase`` affects ``uri``
exact/prefix only. Destinations in ``route[]`` are weighted relatively; a single destination
takes everything whatever its weight, an omitted weight among several is 0. ``mirror`` with
``mirrorPercentage`` (absent = 100, deprecated ``mirrorPercent`` honoured) and ``mirrors[]`` each
copy their percentage of the requests this route serves.

In subset mode the config's DestinationRule host with its stable and canary subsets is reported
as the stable and canary Services (other subsets of that host by their names, as additional
destinations are named), so outcomes speak the routing config's names.

Selectors (``sourceLabels``, ``sourceNamespace``, ``gateways``) and ``port`` choose workloads and
listeners, not requests: the simulation assumes the request comes through one they select.
A route with ``delegate`` is replaced by the delegate's routes (given in ``delegates``), each
ANDed with the root match, falling through to the next root route when none matches, which is
how Istio inlines delegates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from routers.planning.objects import LiveObjects, short_host
from routers.simulate import Outcome, Request, Routed, add_shares, fraction_of, regex_matches
from routers.simulate.equivalence import path_probes
from routers_istio.config import GROUP, IstioConfig

__all__ = [
    "IGNORED_HEADER_KEYS",
    "destination_label",
    "evaluate",
    "sample_requests",
    "simulate_virtual_service",
]

JSON = Mapping[str, Any]
IGNORED_HEADER_KEYS = frozenset({"uri", "scheme", "method", "authority"})
"""Header keys Istio ignores in ``HTTPMatchRequest.headers`` (its API docs): a condition on one
matches every request. The plugin's capabilities refuse routes on them from this one set."""


def destination_label(destination: JSON, namespace: str | None) -> str:
    """``host`` (short form when it names a Service of ``namespace``) plus ``/subset``."""
    host = short_host(str(destination.get("host", "")), namespace)
    subset = destination.get("subset")
    return f"{host}/{subset}" if subset else host


def _string_match(sm: Any, value: str | None, *, ignore_case: bool = False) -> bool:
    """One StringMatch; ``{}`` (or null) is a presence test."""
    if value is None:
        return False
    if not isinstance(sm, Mapping) or not sm:
        return True
    if "exact" in sm:
        want = str(sm["exact"])
        return value.lower() == want.lower() if ignore_case else value == want
    if "prefix" in sm:
        want = str(sm["prefix"])
        return value.lower().startswith(want.lower()) if ignore_case else value.startswith(want)
    if "regex" in sm:
        return regex_matches(str(sm["regex"]), value, "full")
    return True


def _match(m: JSON, req: Request) -> bool:
    if "uri" in m and not _string_match(
        m["uri"], req.path, ignore_case=bool(m.get("ignoreUriCase"))
    ):
        return False
    if "method" in m and not _string_match(m["method"], req.method):
        return False
    if "scheme" in m and not _string_match(m["scheme"], req.scheme):
        return False
    if "authority" in m and not _string_match(m["authority"], req.first_header("host")):
        return False
    for name, sm in (m.get("headers") or {}).items():
        if str(name).lower() in IGNORED_HEADER_KEYS:
            continue
        if not _string_match(sm, req.header(str(name))):
            return False
    for name, sm in (m.get("withoutHeaders") or {}).items():
        value = req.header(str(name))
        if value is None:
            continue
        # ``regex: "*"`` is Istio's spelling of "present" (not valid RE2).
        if isinstance(sm, Mapping) and sm.get("regex") == "*":
            return False
        if _string_match(sm, value):
            return False
    for name, sm in (m.get("queryParams") or {}).items():
        values = req.query_values(str(name))
        if not values or not _string_match(sm, values[0]):
            return False
    return True


def _matches(route: JSON, req: Request) -> bool:
    matches = route.get("match")
    if not matches:
        return True
    return any(_match(m, req) for m in matches if isinstance(m, Mapping))


def _mirror_shares(route: JSON, namespace: str | None) -> dict[str, Fraction]:
    items: list[tuple[str, Fraction]] = []
    mirror = route.get("mirror")
    if isinstance(mirror, Mapping):
        pct: Fraction | None = None
        if isinstance(route.get("mirrorPercentage"), Mapping):
            pct = fraction_of(route["mirrorPercentage"].get("value", 0))
        elif "mirrorPercent" in route or "mirror_percent" in route:
            pct = fraction_of(route.get("mirrorPercent", route.get("mirror_percent")))
        pct = Fraction(100) if pct is None else pct
        items.append((destination_label(mirror, namespace), pct / 100))
    for m in route.get("mirrors") or []:
        if not isinstance(m, Mapping) or not isinstance(m.get("destination"), Mapping):
            continue
        pct = None
        if isinstance(m.get("percentage"), Mapping):
            pct = fraction_of(m["percentage"].get("value", 0))
        pct = Fraction(100) if pct is None else pct
        items.append((destination_label(m["destination"], namespace), pct / 100))
    return add_shares(items)


def _route_outcome(route: JSON, namespace: str | None, via: str) -> Outcome:
    if route.get("redirect"):
        return Outcome(via=via, status=301, reason="redirect")
    if route.get("directResponse"):
        status = (route["directResponse"] or {}).get("status", 200)
        return Outcome(via=via, status=int(status), reason="direct response")
    dests = [d for d in route.get("route") or [] if isinstance(d, Mapping)]
    if not dests:
        return Outcome(via=via, status=500, reason="route has no destination")
    mirrors = _mirror_shares(route, namespace)
    if len(dests) == 1:
        label = destination_label(dests[0].get("destination") or {}, namespace)
        return Outcome({label: Fraction(1)}, mirrors, via)
    weights = [int(d.get("weight") or 0) for d in dests]
    if any(w < 0 for w in weights) or sum(weights) == 0:
        # Istio's webhook rejects both; an object that got in anyway serves nothing sane.
        return Outcome(via=via, status=500, reason=f"invalid weights {weights}")
    total = sum(weights)
    shares = add_shares(
        (destination_label(d.get("destination") or {}, namespace), Fraction(w, total))
        for d, w in zip(dests, weights, strict=True)
    )
    return Outcome(shares, mirrors, via)


def simulate_virtual_service(
    vs: JSON,
    request: Request,
    *,
    delegates: Mapping[str, JSON] | None = None,
) -> Outcome:
    """Route ``request`` through one VirtualService's ``http[]`` (delegates: ``ns/name`` -> VS)."""
    meta = vs.get("metadata") or {}
    namespace = meta.get("namespace")
    name = f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))
    routes = (vs.get("spec") or {}).get("http") or []
    outcome = _first_match(routes, request, namespace, f"VirtualService {name}", delegates or {})
    return outcome or Outcome(
        via=f"VirtualService {name}", status=404, reason="no http route matches"
    )


def _first_match(
    routes: Sequence[Any],
    request: Request,
    namespace: str | None,
    where: str,
    delegates: Mapping[str, JSON],
) -> Outcome | None:
    for i, route in enumerate(routes):
        if not isinstance(route, Mapping) or not _matches(route, request):
            continue
        via = f"{where} http[{i}]" + (f" (name {route['name']!r})" if route.get("name") else "")
        delegate = route.get("delegate")
        if isinstance(delegate, Mapping) and delegate.get("name"):
            key = f"{delegate.get('namespace') or namespace}/{delegate['name']}"
            target = delegates.get(key)
            if target is None:
                return Outcome(via=via, status=500, reason=f"delegate {key} not given")
            inner = _first_match(
                (target.get("spec") or {}).get("http") or [],
                request,
                (target.get("metadata") or {}).get("namespace") or namespace,
                f"{via} -> VirtualService {key}",
                {},
            )
            if inner is not None:
                return inner
            continue
        return _route_outcome(route, namespace, via)
    return None


def _name(obj: JSON) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _subset_names(config: IstioConfig, objects: LiveObjects) -> dict[str, str]:
    """``host/subset`` labels of the configured DestinationRule -> the config's names."""
    section = config.section.destination_rule
    if section is None:
        return {}
    rule = objects.get(config.destination_rule) if config.destination_rule else None
    host = str(((rule or {}).get("spec") or {}).get("host", ""))
    short = destination_label({"host": host}, config.namespace) if host else ""
    out: dict[str, str] = {}
    for sub in ((rule or {}).get("spec") or {}).get("subsets") or []:
        if isinstance(sub, Mapping) and sub.get("name"):
            out[f"{short}/{sub['name']}"] = str(sub["name"])
    out[f"{short}/{section.stable_subset_name}"] = config.names[0]
    out[f"{short}/{section.canary_subset_name}"] = config.names[1]
    return out if short else {}


def evaluate(config: IstioConfig, objects: LiveObjects, request: Request) -> list[Routed]:
    """Every VirtualService with hosts routes the request on its own (delegates are inlined)."""
    vss = [o for _, o in objects.of_kind(GROUP, "VirtualService")]
    delegates = {_name(v): v for v in vss if not (v.get("spec") or {}).get("hosts")}
    names = _subset_names(config, objects)
    return [
        Routed(
            f"VirtualService {_name(vs)}",
            simulate_virtual_service(vs, request, delegates=delegates).relabel(names),
        )
        for vs in vss
        if (vs.get("spec") or {}).get("hosts")
    ]


def sample_requests(config: IstioConfig, objects: LiveObjects) -> list[Request]:
    """Requests at, below and beside every literal ``uri`` of the http routes."""
    paths: set[str] = set()
    for _, vs in objects.of_kind(GROUP, "VirtualService"):
        for route in (vs.get("spec") or {}).get("http") or []:
            for m in (route.get("match") or []) if isinstance(route, Mapping) else []:
                uri = m.get("uri") if isinstance(m, Mapping) else None
                if isinstance(uri, Mapping):
                    paths.update(str(v) for k, v in uri.items() if k in ("exact", "prefix"))
    return path_probes(sorted(paths))
