"""Gateway API HTTPRoute and GRPCRoute routing: the most specific match wins, not the first.

Across every rule of every route given (the caller passes the routes attached to one parent),
a matching ``HTTPRouteMatch`` is ranked by: longest matching non-wildcard hostname, longest
matching wildcard hostname, exact path, longest prefix path (element-wise: ``/abc`` matches
``/abc/def``, never ``/abcd``), method, most header matches, most query-param matches; then the
oldest route, then ``namespace/name`` alphabetically, then rule order. The spec leaves
RegularExpression paths implementation-specific; they rank between Exact and PathPrefix here, as
Envoy-based implementations (Istio, Envoy Gateway) order them. A regex is evaluated with
``search`` semantics by default (Go ``MatchString``, what Traefik does): a plugin must anchor
its patterns to be correct everywhere, and an unanchored one shows up in the simulation.

``backendRefs`` weights default to 1 and are relative. No backendRefs, only zero weights or a
RequestRedirect mean no backend (the spec asks for 500 when nothing can respond). RequestMirror
copies ``percent`` (or ``fraction``; neither = 100%) of the rule's requests; one inside a
backendRef copies that share of the backend's part.

:func:`evaluate` routes a request through the routes of each parent separately (a Gateway, or a
Service in GAMMA mesh mode) and names the config's Services by their names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from routers.planning.objects import LiveObjects
from routers.simulate import (
    Dialect,
    Outcome,
    Request,
    Routed,
    add_shares,
    fraction_of,
    regex_matches,
)
from routers.simulate.equivalence import path_probes
from routers_gatewayapi.config import Config
from routers_gatewayapi.kinds import GROUP

__all__ = [
    "backend_label",
    "evaluate",
    "sample_requests",
    "simulate_grpc_routes",
    "simulate_http_routes",
]

JSON = Mapping[str, Any]


def backend_label(ref: JSON, namespace: str | None) -> str:
    """A Service's name (``name.namespace`` across namespaces); ``Kind:name`` for other kinds."""
    name = str(ref.get("name", ""))
    group = ref.get("group") or ""
    kind = ref.get("kind") or "Service"
    ns = ref.get("namespace")
    if ns and ns != namespace:
        name = f"{name}.{ns}"
    if group in ("", "core") and kind == "Service":
        return name
    return f"{kind}.{group}:{name}" if group else f"{kind}:{name}"


def _host_rank(hostnames: Sequence[Any], host: str | None) -> tuple[int, int] | None:
    """(exact hostname length, wildcard hostname length), ``None`` when no hostname matches."""
    if not hostnames or host is None:
        return (0, 0)
    best: tuple[int, int] | None = None
    for raw in hostnames:
        h = str(raw).lower()
        if h.startswith("*."):
            if host.endswith(h[1:]) and len(host) > len(h) - 1:
                rank = (0, len(h))
            else:
                continue
        elif h == host:
            rank = (len(h), 0)
        else:
            continue
        best = rank if best is None or rank > best else best
    return best


def _path_rank(path: JSON | None, req_path: str, dialect: Dialect) -> tuple[int, int] | None:
    """(kind rank, prefix length): Exact 3, RegularExpression 2, PathPrefix 1."""
    path = path or {}
    kind = path.get("type") or "PathPrefix"
    value = str(path.get("value") if path.get("value") is not None else "/")
    if kind == "Exact":
        return (3, len(value)) if req_path == value else None
    if kind == "RegularExpression":
        return (2, 0) if regex_matches(value, req_path, dialect) else None
    prefix = value.rstrip("/")
    if not prefix or req_path == prefix or req_path.startswith(prefix + "/"):
        return (1, len(prefix))
    return None


def _first_by_name(items: Sequence[Any], fold: bool) -> list[JSON]:
    """Only the first entry of a repeated name counts (spec); names fold case for headers."""
    seen: set[str] = set()
    out: list[JSON] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        key = str(item.get("name", ""))
        key = key.lower() if fold else key
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _value_match(m: JSON, value: str | None, dialect: Dialect) -> bool:
    if value is None:
        return False
    want = str(m.get("value", ""))
    if (m.get("type") or "Exact") == "RegularExpression":
        return regex_matches(want, value, dialect)
    return value == want


@dataclass(frozen=True)
class _Candidate:
    key: tuple[Any, ...]
    route: JSON
    rule: JSON
    namespace: str | None
    via: str


def _http_match_key(
    m: JSON, req: Request, dialect: Dialect
) -> tuple[int, int, int, int, int] | None:
    path = _path_rank(m.get("path"), req.path, dialect)
    if path is None:
        return None
    method = m.get("method")
    if method and method != req.method:
        return None
    headers = _first_by_name(m.get("headers") or [], fold=True)
    if not all(_value_match(h, req.header(str(h.get("name", ""))), dialect) for h in headers):
        return None
    query = _first_by_name(m.get("queryParams") or [], fold=False)
    for q in query:
        values = req.query_values(str(q.get("name", "")))
        if not _value_match(q, values[0] if values else None, dialect):
            return None
    return (path[0], path[1], 1 if method else 0, len(headers), len(query))


def _grpc_match_key(m: JSON, req: Request, dialect: Dialect) -> tuple[int, int, int] | None:
    service, _, method = req.path.lstrip("/").partition("/")
    mm = m.get("method") or {}
    want_service, want_method = mm.get("service"), mm.get("method")
    if (mm.get("type") or "Exact") == "RegularExpression":
        if want_service and not regex_matches(str(want_service), service, dialect):
            return None
        if want_method and not regex_matches(str(want_method), method, dialect):
            return None
    else:
        if want_service and want_service != service:
            return None
        if want_method and want_method != method:
            return None
    headers = _first_by_name(m.get("headers") or [], fold=True)
    if not all(_value_match(h, req.header(str(h.get("name", ""))), dialect) for h in headers):
        return None
    return (len(str(want_service or "")), len(str(want_method or "")), len(headers))


def _candidates(
    routes: Sequence[JSON], req: Request, dialect: Dialect, grpc: bool
) -> Iterator[_Candidate]:
    host = req.host
    for route in routes:
        meta = route.get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        spec = route.get("spec") or {}
        host_rank = _host_rank(spec.get("hostnames") or [], host)
        if host_rank is None:
            continue
        created = str(meta.get("creationTimestamp") or "~")  # unknown sorts after any time
        kind = "GRPCRoute" if grpc else "HTTPRoute"
        for i, rule in enumerate(spec.get("rules") or []):
            if not isinstance(rule, Mapping):
                continue
            matches = rule.get("matches")
            if not matches:
                # HTTPRoute's CRD default is PathPrefix "/"; GRPCRoute's is "every request".
                matches = [{}] if grpc else [{"path": {"type": "PathPrefix", "value": "/"}}]
            keys: list[tuple[int, ...]] = []
            for m in matches:
                if not isinstance(m, Mapping):
                    continue
                key = _grpc_match_key(m, req, dialect) if grpc else _http_match_key(m, req, dialect)
                if key is not None:
                    keys.append(key)
            if not keys:
                continue
            via = f"{kind} {ns}/{name} rules[{i}]" + (
                f" (name {rule['name']!r})" if rule.get("name") else ""
            )
            negated = tuple(-k for k in max(keys))
            order = (tuple(-h for h in host_rank), *negated, created, f"{ns}/{name}", i)
            yield _Candidate(order, route, rule, ns, via)


def _mirror(f: JSON, namespace: str | None) -> tuple[str, Fraction] | None:
    if f.get("type") != "RequestMirror" or not isinstance(f.get("requestMirror"), Mapping):
        return None
    spec = f["requestMirror"]
    share = Fraction(1)
    if spec.get("percent") is not None:
        share = (fraction_of(spec["percent"]) or Fraction(0)) / 100
    elif isinstance(spec.get("fraction"), Mapping):
        num = fraction_of(spec["fraction"].get("numerator", 0)) or Fraction(0)
        den = fraction_of(spec["fraction"].get("denominator", 100)) or Fraction(100)
        share = num / den
    return backend_label(spec.get("backendRef") or {}, namespace), share


def _rule_outcome(c: _Candidate) -> Outcome:
    filters = [f for f in c.rule.get("filters") or [] if isinstance(f, Mapping)]
    if any(f.get("type") == "RequestRedirect" for f in filters):
        return Outcome(via=c.via, status=302, reason="RequestRedirect")
    mirrors = [m for m in (_mirror(f, c.namespace) for f in filters) if m is not None]
    refs = [r for r in c.rule.get("backendRefs") or [] if isinstance(r, Mapping)]
    weights = [int(r["weight"]) if r.get("weight") is not None else 1 for r in refs]
    total = sum(w for w in weights if w > 0)
    if not refs or total == 0:
        return Outcome(
            mirrors=add_shares(mirrors),
            via=c.via,
            status=500,
            reason="no backendRefs" if not refs else f"all backendRef weights are 0 ({weights})",
        )
    shares: list[tuple[str, Fraction]] = []
    for ref, w in zip(refs, weights, strict=True):
        if w <= 0:
            continue
        share = Fraction(w, total)
        shares.append((backend_label(ref, c.namespace), share))
        for f in ref.get("filters") or []:
            m = _mirror(f, c.namespace) if isinstance(f, Mapping) else None
            if m is not None:
                mirrors.append((m[0], m[1] * share))
    return Outcome(add_shares(shares), add_shares(mirrors), c.via)


def _best(
    routes: Sequence[JSON], request: Request, dialect: Dialect, grpc: bool
) -> _Candidate | None:
    return min(_candidates(routes, request, dialect, grpc), key=lambda c: c.key, default=None)


def _simulate(routes: Sequence[JSON], request: Request, dialect: Dialect, grpc: bool) -> Outcome:
    best = _best(routes, request, dialect, grpc)
    if best is None:
        return Outcome(status=404, reason="no rule matches")
    return _rule_outcome(best)


def simulate_http_routes(
    routes: Sequence[JSON], request: Request, *, regex: Dialect = "search"
) -> Outcome:
    """Route ``request`` through HTTPRoutes attached to the same parent."""
    return _simulate(routes, request, regex, grpc=False)


def simulate_grpc_routes(
    routes: Sequence[JSON], request: Request, *, regex: Dialect = "search"
) -> Outcome:
    """Route a gRPC ``request`` (path ``/package.Service/Method``) through GRPCRoutes.

    Precedence: hostname, longest matching service, longest matching method, most headers.
    """
    return _simulate(routes, request, regex, grpc=True)


# -- the plugin's evaluator ----------------------------------------------------------------


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def parent_key(ref: JSON, namespace: str | None) -> str:
    """A parentRef as ``Kind ns/name`` (defaults: Gateway of the route's namespace)."""
    kind = ref.get("kind") or "Gateway"
    ns = ref.get("namespace") or namespace
    return f"{kind} {ns}/{ref.get('name')}"


def _by_parent(routes: Sequence[JSON]) -> dict[str, list[JSON]]:
    out: dict[str, list[JSON]] = {}
    for r in routes:
        ns = _meta(r).get("namespace")
        parents = (r.get("spec") or {}).get("parentRefs") or [{"name": "(none)"}]
        for key in dict.fromkeys(parent_key(p, ns) for p in parents if isinstance(p, Mapping)):
            out.setdefault(key, []).append(r)
    return out


def _home_names(outcome: Outcome, namespace: str) -> Outcome:
    """``name.<namespace>`` -> ``name`` for Services of the config's namespace."""
    suffix = "." + namespace
    labels = [*outcome.shares, *outcome.mirrors]
    return outcome.relabel(
        {k: k[: -len(suffix)] for k in labels if k.endswith(suffix) and ":" not in k}
    )


def evaluate(config: Config, objects: LiveObjects, request: Request) -> list[Routed]:
    """HTTPRoutes and GRPCRoutes of each parent decide together; the config's routes without
    ``useHeaderRoutes`` carry no header or mirror rules, so where one of them decides, the
    state means its plain weighted split."""
    named: set[tuple[str, str | None, str]] = {
        (t.kind.kind, t.namespace, t.name) for t in config.targets
    }
    plain: set[tuple[str, str | None, str]] = {
        (t.kind.kind, t.namespace, t.name) for t in config.targets if not t.managed_rules
    }
    for selector in config.selectors:  # routes found by labels take no managed rules (Argo)
        for ref, _ in objects.select(selector.ref):
            if (ref.kind, ref.namespace, ref.name) not in named:
                plain.add((ref.kind, ref.namespace, ref.name))
    out: list[Routed] = []
    for kind, grpc in (("HTTPRoute", False), ("GRPCRoute", True)):
        routes = [o for _, o in objects.of_kind(GROUP, kind)]
        for parent, group in _by_parent(routes).items():
            best = _best(group, request, "search", grpc)
            if best is None:
                outcome = Outcome(status=404, reason="no rule matches")
                managed = True
            else:
                outcome = _rule_outcome(best)
                meta = _meta(best.route)
                managed = (kind, meta.get("namespace"), meta.get("name")) not in plain
            out.append(
                Routed(
                    f"{kind}s on {parent}",
                    _home_names(outcome, config.namespace),
                    managed_routes=managed,
                )
            )
    return out


def sample_requests(config: Config, objects: LiveObjects) -> list[Request]:
    """Requests at, below and beside every literal path match, per hostname (two at most),
    one per gRPC method match, and one per match that pins exact headers or query parameters
    (``X-Internal: yes``), carrying them: without those nothing reaches such a rule, nor shows
    whether a managed rule ties or outranks it."""
    paths: set[str] = set()
    hosts: list[str | None] = []
    grpc: list[Request] = []
    pinned: list[Request] = []
    for kind in ("HTTPRoute", "GRPCRoute"):
        for _, route in objects.of_kind(GROUP, kind):
            spec = route.get("spec") or {}
            for name in spec.get("hostnames") or []:
                host = "a" + name[1:] if str(name).startswith("*.") else str(name)
                if host not in hosts:
                    hosts.append(host)
            for rule in spec.get("rules") or []:
                for m in (rule.get("matches") or []) if isinstance(rule, Mapping) else []:
                    if not isinstance(m, Mapping):
                        continue
                    if kind == "GRPCRoute":
                        mm = m.get("method") or {}
                        path = f"/{mm.get('service', 'pkg.Svc')}/{mm.get('method', 'Call')}"
                        grpc.append(Request("POST", path, (("content-type", "application/grpc"),)))
                        continue
                    p = m.get("path") or {}
                    literal = p.get("type") in (None, "Exact", "PathPrefix")
                    if literal and p.get("value"):
                        paths.add(str(p["value"]))
                    headers, query = _exact(m.get("headers")), _exact(m.get("queryParams"))
                    if headers or query:
                        path = str(p.get("value") or "/") if literal else "/"
                        pinned.append(Request(path=path, headers=headers, query=query))
    hosts = hosts[:2] or [None]
    out = path_probes(sorted(paths), hosts)
    for req in dict.fromkeys([*grpc, *pinned]):
        for host in hosts:
            out.append(req.with_headers(("Host", host)) if host else req)
    return out


def _exact(conditions: Any) -> tuple[tuple[str, str], ...]:
    """The name/value pairs of a match's Exact header or query-parameter conditions."""
    return tuple(
        (str(c["name"]), str(c["value"]))
        for c in conditions or []
        if isinstance(c, Mapping)
        and c.get("type", "Exact") == "Exact"
        and "name" in c
        and "value" in c
    )
