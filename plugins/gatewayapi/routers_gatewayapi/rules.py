"""Rules of a route as plain dicts: CRD defaults, fingerprints, our backendRefs, the ledger.

Managed rules are found by ``name`` (where the CRD has it) or by the fingerprint of their exact
content recorded in the route's ledger annotation -- never by shape. A user's own canary-only
rule is therefore never mistaken for ours (plugin #217), and two header routes on the same header
never overwrite each other (plugin #215).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from routers.planning.ownership import OwnerLedger
from routers_gatewayapi.kinds import RouteKind

__all__ = [
    "Backends",
    "Ledger",
    "ManagedKind",
    "backend_is",
    "backend_key",
    "find_managed",
    "fingerprint",
    "normalized",
    "rule_matches",
]

JSON = dict[str, Any]
ManagedKind = Literal["header", "mirror"]


# -- CRD defaults ----------------------------------------------------------------------------


def _default_backend(ref: Any) -> Any:
    if not isinstance(ref, dict):
        return ref
    ref.setdefault("group", "")
    ref.setdefault("kind", "Service")
    return ref


def _default_filters(filters: Any) -> None:
    if not isinstance(filters, list):
        return
    for f in filters:
        if not isinstance(f, dict):
            continue
        mirror = f.get("requestMirror")
        if isinstance(mirror, dict):
            _default_backend(mirror.get("backendRef"))
            frac = mirror.get("fraction")
            if isinstance(frac, dict):
                frac.setdefault("denominator", 100)
        auth = f.get("externalAuth")
        if isinstance(auth, dict):
            _default_backend(auth.get("backendRef"))
        redirect = f.get("requestRedirect")
        if isinstance(redirect, dict):
            redirect.setdefault("statusCode", 302)
        cors = f.get("cors")
        if isinstance(cors, dict):
            cors.setdefault("maxAge", 5)


def rule_matches(kind: RouteKind, rule: Mapping[str, Any]) -> list[Any]:
    """The rule's matches as the API server stores them (HTTP defaults to PathPrefix ``/``;
    an empty HTTP list matches everything too)."""
    raw = rule.get("matches")
    if kind.matches == "http":
        if not raw:
            return [{"path": {"type": "PathPrefix", "value": "/"}}]
        out = []
        for original in raw:
            m = copy.deepcopy(original)
            if isinstance(m, dict):
                path = m.setdefault("path", {})
                if isinstance(path, dict):
                    path.setdefault("type", "PathPrefix")
                    path.setdefault("value", "/")
                for key in ("headers", "queryParams"):
                    for cond in m.get(key) or []:
                        if isinstance(cond, dict):
                            cond.setdefault("type", "Exact")
            out.append(m)
        return out
    out = []
    for original in raw or []:
        m = copy.deepcopy(original)
        if isinstance(m, dict):
            for cond in m.get("headers") or []:
                if isinstance(cond, dict):
                    cond.setdefault("type", "Exact")
            method = m.get("method")
            if isinstance(method, dict):
                method.setdefault("type", "Exact")
        out.append(m)
    return out


def normalized(kind: RouteKind, rule: Mapping[str, Any]) -> JSON:
    """The rule with every CRD default applied, so server-side defaulting never reads as drift."""
    out = copy.deepcopy(dict(rule))
    if kind.matches != "none" and (kind.matches == "http" or "matches" in out):
        out["matches"] = rule_matches(kind, rule)
    for ref in out.get("backendRefs") or []:
        if isinstance(ref, dict):
            _default_backend(ref)
            ref.setdefault("weight", 1)
            _default_filters(ref.get("filters"))
    _default_filters(out.get("filters"))
    session = out.get("sessionPersistence")
    if isinstance(session, dict):
        session.setdefault("type", "Cookie")
        cookie = session.get("cookieConfig")
        if isinstance(cookie, dict):
            cookie.setdefault("lifetimeType", "Session")
    return out


def fingerprint(kind: RouteKind, rule: Mapping[str, Any]) -> str:
    """Content identity of a rule, name excluded (so a pruned or added name keeps it)."""
    body = normalized(kind, rule)
    body.pop("name", None)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- our Services among backendRefs ----------------------------------------------------------


def backend_is(ref: Any, service: str, service_ns: str, route_ns: str) -> bool:
    """A backendRef names our core Service (namespace defaults to the route's)."""
    if not isinstance(ref, Mapping):
        return False
    return (
        ref.get("group", "") in ("", "core")
        and ref.get("kind", "Service") == "Service"
        and ref.get("name") == service
        and (ref.get("namespace") or route_ns) == service_ns
    )


@dataclass(frozen=True)
class Backends:
    """Who is who in one rule's backendRefs."""

    stable: list[int] = field(default_factory=list)
    canary: list[int] = field(default_factory=list)
    added: dict[str, list[int]] = field(default_factory=dict)
    """Additional-destination refs we added (ledger), by Service."""
    foreign: list[int] = field(default_factory=list)

    @property
    def weighted(self) -> bool:
        return bool(self.stable) and bool(self.canary)


# -- the ledger ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerRule:
    kind: ManagedKind
    sha256: str


@dataclass(frozen=True)
class Ledger:
    """What one owner added to one route: managed rules (id -> kind, content hash) and
    backendRefs (its entries in the route's ledger, see routers.planning.ownership)."""

    rules: dict[str, LedgerRule]
    backends: tuple[str, ...]

    @classmethod
    def of(cls, view: OwnerLedger) -> Ledger:
        """This owner's entries."""
        return cls(rule_entries(view.data("rules")), tuple(view.names("backends")))

    @classmethod
    def foreign(cls, view: OwnerLedger) -> Ledger:
        """Everyone else's managed rules (other owners' and ownerless ones)."""
        return cls(rule_entries(view.foreign("rules")), ())

    def data(self) -> dict[str, Any]:
        return {
            "rules": {
                rid: {"kind": e.kind, "sha256": e.sha256} for rid, e in sorted(self.rules.items())
            },
            "backends": sorted(set(self.backends)),
        }


def rule_entries(raw: Mapping[str, Any]) -> dict[str, LedgerRule]:
    rules: dict[str, LedgerRule] = {}
    for rid, entry in raw.items():
        if (
            isinstance(entry, Mapping)
            and entry.get("kind") in ("header", "mirror")
            and isinstance(entry.get("sha256"), str)
        ):
            rules[str(rid)] = LedgerRule(entry["kind"], entry["sha256"])
    return rules


def backend_key(ref: Any, route_ns: str) -> str | None:
    """A core Service backendRef as a ledger key, ``namespace/name``."""
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
        return None
    if ref.get("group", "") not in ("", "core") or ref.get("kind", "Service") != "Service":
        return None
    return f"{ref.get('namespace') or route_ns}/{ref['name']}"


def find_managed(
    kind: RouteKind, rules: Sequence[Any], book: Ledger, taken: Collection[int] = ()
) -> dict[str, int]:
    """Ledger id -> index of the live rule it names: by ``name`` first, then by exact content.

    Unnamed rules are matched by fingerprint only; a named rule that the ledger does not list is
    never ours, whatever it looks like. Rules at ``taken`` indices are someone else's.
    """
    found: dict[str, int] = {}
    taken = set(taken)
    for i, rule in enumerate(rules):
        name = rule.get("name") if isinstance(rule, Mapping) else None
        if i in taken:
            continue
        if isinstance(name, str) and name in book.rules and name not in found:
            found[name] = i
            taken.add(i)
    for i, rule in enumerate(rules):
        if i in taken or not isinstance(rule, Mapping) or rule.get("name"):
            continue
        sha = fingerprint(kind, rule)
        for rid, entry in sorted(book.rules.items()):
            if rid not in found and entry.sha256 == sha:
                found[rid] = i
                break
    return dict(sorted(found.items(), key=lambda kv: kv[1]))
