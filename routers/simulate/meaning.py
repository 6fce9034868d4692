"""The abstract meaning of a TrafficState for one request: what every target must do with it.

The managed routes are tried in :func:`~routers.planning.routes.ordered_routes` order; the first
one whose matches match decides: a header route sends 100% to canary, a mirror route keeps the
weighted split and copies ``percentage`` to canary. Anything else gets the weighted split.

Match semantics are our model's: header names fold case, values compare exactly, ``prefix`` is a
string prefix for headers and query values, ``regex`` is a whole-value RE2 match, and a path
``prefix`` is element-wise (``/api`` covers ``/api`` and ``/api/x``, not ``/apix``). Targets do
not agree on a path like ``/apix`` for prefix ``/api`` (Istio and nginx's ImplementationSpecific
compare characters), so :func:`intended` flags such requests as ambiguous instead of choosing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from routers.model import HeaderRoute, RequestMatch, TrafficState, WeightScope
from routers.model.matches import MatchType
from routers.planning import weights
from routers.planning.routes import ordered_routes
from routers.simulate.outcome import Outcome, add_shares, fraction_of
from routers.simulate.regex import regex_matches
from routers.simulate.request import Request

__all__ = ["Intent", "intended", "keep_foreign", "match_applies", "split_outcome"]


@dataclass(frozen=True)
class Intent:
    outcome: Outcome
    ambiguous: str | None = None
    """Why targets may legitimately differ on this request (``None``: they must not)."""


def _string(kind: MatchType, want: str, value: str | None) -> bool:
    if value is None:
        return False
    if kind == "exact":
        return value == want
    if kind == "prefix":
        return value.startswith(want)
    return regex_matches(want, value, "full")


def _path(kind: MatchType, want: str, path: str) -> bool:
    if kind != "prefix":
        return _string(kind, want, path)
    prefix = want.rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


def match_applies(match: RequestMatch, req: Request) -> bool:
    """All conditions of one match hold (element-wise path prefixes)."""
    if match.method is not None and req.method != match.method.value:
        return False
    if match.path is not None and not _path(match.path.kind, match.path.value, req.path):
        return False
    for h in match.headers:
        if not _string(h.kind, h.value, req.header(h.name)):
            return False
    for q in match.query_params:
        values = req.query_values(q.name)
        if not _string(q.kind, q.value, values[0] if values else None):
            return False
    return True


def _path_ambiguity(matches: Sequence[RequestMatch], req: Request) -> str | None:
    for m in matches:
        if m.path is None or m.path.kind != "prefix":
            continue
        string_hit = req.path.startswith(m.path.value)
        if string_hit != _path("prefix", m.path.value, req.path):
            return (
                f"path {req.path!r} vs prefix {m.path.value!r}: element-wise and string "
                "prefixes disagree"
            )
    return None


def split_outcome(state: TrafficState, stable: str, canary: str) -> Outcome:
    total = state.total
    return Outcome(
        add_shares(
            [
                (stable, Fraction(state.stable_weight, total)),
                (canary, Fraction(state.weight, total)),
                *((d.service, Fraction(d.weight, total)) for d in state.additional_destinations),
            ]
        )
    )


def intended(
    state: TrafficState,
    request: Request,
    *,
    stable: str = "stable",
    canary: str = "canary",
    managed_order: Sequence[str] = (),
) -> Intent:
    """What ``state`` means for ``request``: destination shares and mirror shares."""
    ambiguous = None
    for route in ordered_routes(state, managed_order):
        ambiguous = ambiguous or _path_ambiguity(route.matches, request)
        if not any(match_applies(m, request) for m in route.matches):
            continue
        if isinstance(route, HeaderRoute):
            return Intent(
                Outcome({canary: Fraction(1)}, via=f"header route {route.name!r}"), ambiguous
            )
        base = split_outcome(state, stable, canary)
        pct = fraction_of(route.percentage) or Fraction(0)
        mirrors = {canary: pct / 100} if pct else {}
        return Intent(Outcome(base.shares, mirrors, f"mirror route {route.name!r}"), ambiguous)
    return Intent(split_outcome(state, stable, canary), ambiguous)


def keep_foreign(
    want: Outcome,
    before: Outcome | None,
    ours: set[str],
    *,
    stable: str = "stable",
    scope: WeightScope = "all",
) -> Outcome:
    """``want`` on a weighted rule that also sends traffic to destinations we do not own.

    Plugins leave such destinations on a rule (a legacy renderer at weight 5); they keep the
    share they had in ``before`` and the state's weights become shares of all traffic, by the
    one rule plugins plan with (:func:`routers.planning.weights.beside`). Mirrors to
    destinations we do not own (the rule's own RequestMirror filter) stay, header routes
    included; a header route's shares stay 100% canary.
    """
    if not want.routed:
        return want
    if before is None or not set(before.shares) & ours:
        return want  # before, none of it went to ours: not this weighted rule (not created yet)
    mirrors = {k: v for k, v in before.mirrors.items() if k not in ours}
    mirrors.update(want.mirrors)
    if want.via.startswith("header route"):
        return Outcome(want.shares, mirrors, want.via)
    foreign = {k: v for k, v in before.shares.items() if k not in ours}
    held = sum(foreign.values(), Fraction(0))
    if not held:
        return Outcome(want.shares, mirrors, want.via)
    names = [stable, *(k for k in want.shares if k != stable)]
    shares = weights.beside([want.share(n) for n in names], held, scope)
    return Outcome(
        add_shares([*zip(names, shares, strict=True), *foreign.items()]), mirrors, want.via
    )
