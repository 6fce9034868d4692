"""ingress-nginx routing with canary Ingresses (controller's Lua balancer, spec §4.3-4.5).

Location: the primary (non-canary) Ingress rule whose host matches (exact, ``*.`` one label,
or no host = any) and whose path matches: Exact first, then the longest Prefix (element-wise) or
ImplementationSpecific (nginx string prefix) path; with ``use-regex`` paths are case-insensitive
regexes anchored at the start, longest first. Without a Host header every host matches.

A canary Ingress (``canary`` parses as true) only contributes an alternative backend to the
primary location with the same host, path and pathType, and only the first one counts (list
order is the merge order). The decision, in order: ``canary-by-header`` (``-value``: equal ->
canary; ``-pattern``: PCRE search -> canary; neither: ``always`` -> canary, ``never`` -> primary
at once), ``canary-by-cookie`` (``always``/``never``), then ``canary-weight`` out of
``canary-weight-total`` if that is above 100, else 100. Annotation values outside the
controller's character sets are reset to their defaults, as the controller does (with a warning
nobody reads), so ``canary-by-header-value: "a b"`` silently means always/never semantics.

Session affinity is not modelled (no affinity cookie is ever set in a simulation). Headers with
``_`` in their name are invisible (nginx's default ``ignore-invalid-headers``). ``mirror-target``
on the primary Ingress copies 100% of its requests; on a canary Ingress it is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

from routers.planning.objects import LiveObjects, short_host
from routers.simulate import Outcome, Request, Routed
from routers.simulate.equivalence import path_probes
from routers_nginx.annotations import BASIC, REGEX
from routers_nginx.config import GROUP, Config

__all__ = ["PREFIX", "evaluate", "is_canary", "sample_requests", "simulate_ingress_nginx"]

JSON = Mapping[str, Any]
PREFIX = "nginx.ingress.kubernetes.io/"

# strconv.Atoi, which the controller parses weights with: no spaces, no trailing newline.
_ATOI = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def _annotations(obj: JSON) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _ann(obj: JSON, prefix: str) -> Mapping[str, str]:
    """The controller's annotations (those under its ``--annotations-prefix``), prefix removed."""
    return {k[len(prefix) :]: str(v) for k, v in _annotations(obj).items() if k.startswith(prefix)}


def _get(ann: Mapping[str, str], key: str, charset: frozenset[str] | None = None) -> str:
    """The value as the controller keeps it: one its validator refuses is reset to ""."""
    value = str(ann.get(key, ""))
    if charset is not None:
        value = value.replace(" ", "") if key == "canary-by-header" else value
        if not set(value) <= charset:
            return ""
    return value


def _int(ann: Mapping[str, str], key: str, default: int) -> int:
    raw = str(ann.get(key, ""))
    return int(raw) if _ATOI.fullmatch(raw) else default


def is_canary(ingress: JSON, prefix: str = PREFIX) -> bool:
    return str(_ann(ingress, prefix).get("canary", "")).strip() in _TRUE


@dataclass(frozen=True)
class _Location:
    ingress: JSON
    host: str
    path: str
    path_type: str
    backend: str
    via: str


def _backend(b: Any, namespace: str | None) -> str | None:
    if not isinstance(b, Mapping):
        return None
    svc = b.get("service")
    if isinstance(svc, Mapping) and svc.get("name"):
        return str(svc["name"])
    if b.get("serviceName"):  # extensions/v1beta1 and networking.k8s.io/v1beta1
        return str(b["serviceName"])
    res = b.get("resource")
    if isinstance(res, Mapping):
        return f"{res.get('kind')}:{res.get('name')}"
    return None


def _locations(ingress: JSON) -> list[_Location]:
    meta = ingress.get("metadata") or {}
    name = f"{meta.get('namespace')}/{meta.get('name')}"
    out: list[_Location] = []
    for i, rule in enumerate((ingress.get("spec") or {}).get("rules") or []):
        host = str(rule.get("host") or "")
        for j, p in enumerate((rule.get("http") or {}).get("paths") or []):
            backend = _backend(p.get("backend"), meta.get("namespace"))
            if backend is None:
                continue
            out.append(
                _Location(
                    ingress,
                    host,
                    str(p.get("path") or "/"),
                    str(p.get("pathType") or "ImplementationSpecific"),
                    backend,
                    f"Ingress {name} rules[{i}].http.paths[{j}]",
                )
            )
    return out


def _host_matches(rule_host: str, host: str | None) -> bool:
    if host is None or not rule_host:
        return True
    rule_host = rule_host.lower()
    if rule_host.startswith("*."):
        head, _, tail = host.partition(".")
        return bool(head) and tail == rule_host[2:]
    return rule_host == host


def _path_rank(loc: _Location, path: str, prefix: str) -> tuple[int, int] | None:
    if _ann(loc.ingress, prefix).get("use-regex", "").strip() in _TRUE:
        try:
            hit = re.match(loc.path, path, re.IGNORECASE) is not None
        except re.error:
            return None
        return (1, len(loc.path)) if hit else None
    if loc.path_type == "Exact":
        return (2, len(loc.path)) if path == loc.path else None
    if loc.path_type == "Prefix":
        prefix = loc.path.rstrip("/")
        if not prefix or path == prefix or path.startswith(prefix + "/"):
            return (1, len(prefix))
        return None
    return (1, len(loc.path)) if path.startswith(loc.path) else None


def _header_value(req: Request, name: str) -> str | None:
    if "_" in name:
        return None
    return req.first_header(name)


def _decide(canary: JSON, req: Request, prefix: str) -> tuple[Fraction, str]:
    """The canary's share for this request, and which step decided."""
    ann = _ann(canary, prefix)
    header = _get(ann, "canary-by-header", BASIC)
    if header:
        value = _header_value(req, header)
        if value is not None:
            want = _get(ann, "canary-by-header-value", BASIC)
            pattern = _get(ann, "canary-by-header-pattern", REGEX)
            if want:
                if value == want:
                    return Fraction(1), f"header {header} == {want!r}"
            elif pattern:
                try:
                    hit = re.search(pattern, value) is not None
                except re.error:
                    return Fraction(0), f"header {header}: invalid pattern {pattern!r}"
                if hit:
                    return Fraction(1), f"header {header} ~ {pattern!r}"
            elif value == "always":
                return Fraction(1), f"header {header}: always"
            elif value == "never":
                return Fraction(0), f"header {header}: never"
    cookie = _get(ann, "canary-by-cookie", BASIC)
    if cookie:
        value = req.cookie(cookie)
        if value == "always":
            return Fraction(1), f"cookie {cookie}: always"
        if value == "never":
            return Fraction(0), f"cookie {cookie}: never"
    weight = _int(ann, "canary-weight", 0)
    total = _int(ann, "canary-weight-total", 100)
    total = total if total > 100 else 100
    return Fraction(min(max(weight, 0), total), total), f"weight {weight}/{total}"


def _mirror_service(ingress: JSON, prefix: str) -> str | None:
    target = _ann(ingress, prefix).get("mirror-target")
    if not target:
        return None
    # nginx variables may follow the host directly (``http://svc.ns$request_uri``).
    netloc = urlsplit(str(target).split("$", 1)[0]).netloc or str(target)
    host = netloc.rsplit("@", 1)[-1].split(":", 1)[0].lower()
    return short_host(host, (ingress.get("metadata") or {}).get("namespace"))


def simulate_ingress_nginx(
    ingresses: Sequence[JSON], request: Request, *, prefix: str = PREFIX
) -> Outcome:
    """Route ``request`` through Ingresses of one controller (class filtering is the caller's);
    ``prefix`` is the controller's annotation prefix, ``/`` included."""
    host = request.host
    primaries = [loc for ing in ingresses if not is_canary(ing, prefix) for loc in _locations(ing)]
    best: tuple[tuple[int, int, int], _Location] | None = None
    for loc in primaries:
        if not _host_matches(loc.host, host):
            continue
        rank = _path_rank(loc, request.path, prefix)
        if rank is None:
            continue
        # Exact hosts beat wildcards beat the catch-all server; then the location rank.
        host_rank = 2 if loc.host and not loc.host.startswith("*.") else 1 if loc.host else 0
        key = (host_rank, *rank)
        if best is None or key > best[0]:
            best = (key, loc)
    if best is None:
        return Outcome(status=404, reason="no Ingress rule matches")
    loc = best[1]
    mirror = _mirror_service(loc.ingress, prefix)
    mirrors = {mirror: Fraction(1)} if mirror else {}
    for ing in ingresses:
        if not is_canary(ing, prefix):
            continue
        for cl in _locations(ing):
            if (cl.host, cl.path, cl.path_type) != (loc.host, loc.path, loc.path_type):
                continue
            if cl.backend == loc.backend:
                continue  # the controller refuses to merge a canary onto its own service
            share, why = _decide(ing, request, prefix)
            shares = {loc.backend: 1 - share, cl.backend: share}
            return Outcome(
                {k: v for k, v in shares.items() if v}, mirrors, f"{loc.via} + {cl.via}: {why}"
            )
    return Outcome({loc.backend: Fraction(1)}, mirrors, loc.via)


def _class(ingress: JSON) -> str:
    cls = (ingress.get("spec") or {}).get("ingressClassName") or _annotations(ingress).get(
        "kubernetes.io/ingress.class", ""
    )
    return str(cls)


def evaluate(config: Config, objects: LiveObjects, request: Request) -> list[Routed]:
    """The Ingresses of each class form one controller's configuration.

    ImplementationSpecific paths compare characters, so the scopes say so: a request where
    element-wise and character prefixes disagree is the controller's to decide.
    """
    classes: dict[str, list[JSON]] = {}
    for _, ing in objects.of_kind(GROUP, "Ingress"):
        classes.setdefault(_class(ing), []).append(ing)
    return [
        Routed(
            f"Ingresses of class {cls or '(default)'}",
            simulate_ingress_nginx(group, request, prefix=config.prefix + "/"),
            character_prefixes=True,
        )
        for cls, group in classes.items()
    ]


def sample_requests(config: Config, objects: LiveObjects) -> list[Request]:
    """Requests at, below and beside every Ingress path, per host (two at most)."""
    paths: set[str] = set()
    hosts: list[str | None] = []
    for _, ing in objects.of_kind(GROUP, "Ingress"):
        for rule in (ing.get("spec") or {}).get("rules") or []:
            if not isinstance(rule, Mapping):
                continue
            host = rule.get("host")
            if isinstance(host, str) and host:
                host = "a" + host[1:] if host.startswith("*.") else host
                if host not in hosts:
                    hosts.append(host)
            for p in (rule.get("http") or {}).get("paths") or []:
                if isinstance(p, Mapping):
                    paths.add(str(p.get("path") or "/"))
    return path_probes(sorted(paths), hosts[:2] or [None])
