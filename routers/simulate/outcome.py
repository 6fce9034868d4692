"""What a data plane does with one request: exact shares per destination, and mirror shares.

Shares are :class:`~fractions.Fraction` so that "10/100 to canary" can be compared exactly with
the state that asked for it; a simulation never samples. A request no backend serves (no route,
a redirect, all weights zero) has no shares and a ``status`` saying why, so "no route" can never
be mistaken for "0% canary".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

__all__ = ["Outcome", "Routed", "add_shares", "fraction_of"]


@dataclass(frozen=True)
class Outcome:
    shares: Mapping[str, Fraction] = field(default_factory=dict)
    """Destination -> share of this request's traffic; sums to 1 when routed."""
    mirrors: Mapping[str, Fraction] = field(default_factory=dict)
    """Destination -> expected number of copies per request (a probability for one mirror)."""
    via: str = ""
    """Which rule decided, for humans (e.g. ``HTTPRoute shop/api rules[0] (name 'tester')``)."""
    status: int | None = None
    """Set when no backend serves the request: 404 no route, 500 invalid rule, 3xx redirect..."""
    reason: str = ""

    @property
    def routed(self) -> bool:
        return self.status is None

    def share(self, destination: str) -> Fraction:
        return self.shares.get(destination, Fraction(0))

    def mirror(self, destination: str) -> Fraction:
        return self.mirrors.get(destination, Fraction(0))

    def relabel(self, names: Mapping[str, str]) -> Outcome:
        """Rename destinations (e.g. Service names to ``stable``/``canary``); merges collisions."""
        return Outcome(
            add_shares((names.get(k, k), v) for k, v in self.shares.items()),
            add_shares((names.get(k, k), v) for k, v in self.mirrors.items()),
            self.via,
            self.status,
            self.reason,
        )

    def describe(self) -> str:
        if not self.routed:
            return f"no backend: {self.status} {self.reason}".rstrip() + _via(self.via)
        parts = [f"{_pct(v)} -> {k}" for k, v in sorted(self.shares.items()) if v]
        mirrors = [f"{_pct(v)} mirrored -> {k}" for k, v in sorted(self.mirrors.items()) if v]
        return ", ".join(parts + mirrors) + _via(self.via)


@dataclass(frozen=True)
class Routed:
    """What the data plane does with one request in one independent scope of a plugin's objects.

    Destinations are named as the routing config names them (the stable and canary Services,
    additional destinations' Services), so outcomes compare with the state's meaning directly; a
    target that addresses them differently translates (Istio subsets of the config's
    ``destinationRule``). Any other backend keeps a label of the target's own.
    """

    scope: str
    """What is evaluated together, e.g. ``VirtualService shop/api`` or ``HTTPRoutes on Gateway
    infra/public``: one request may be routed by several independent scopes."""
    outcome: Outcome
    managed_routes: bool = True
    """False where the config keeps header and mirror routes out of this scope (Gateway API's
    ``useHeaderRoutes: false``): the scope then means the plain weighted split."""
    character_prefixes: bool = False
    """Path prefixes compare characters here (``/api`` covers ``/apix``); where element-wise and
    character prefixes disagree, the data plane decides and nothing is compared."""


def _via(via: str) -> str:
    return f" (via {via})" if via else ""


def _pct(share: Fraction) -> str:
    value = share * 100
    if value.denominator == 1:
        return f"{value.numerator}%"
    return f"{float(value):.6g}%"


def add_shares(items: Iterable[tuple[str, Fraction]]) -> dict[str, Fraction]:
    out: dict[str, Fraction] = {}
    for key, value in items:
        out[key] = out.get(key, Fraction(0)) + value
    return {k: v for k, v in out.items() if v}


def fraction_of(value: object) -> Fraction | None:
    """A JSON number as an exact Fraction (floats via their decimal text: 12.5 -> 25/2)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(repr(value))
    if isinstance(value, str):
        try:
            return Fraction(value)
        except (ValueError, ZeroDivisionError):
            return None
    return None
