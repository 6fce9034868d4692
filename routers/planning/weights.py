"""Weight arithmetic: the only place that splits, scales and compares traffic weights.

Every split is a list of non-negative integers summing exactly to the requested total
(stable receives ``total - canary - sum(additional)``), so no target ever sees a negative
weight (Argo #4424) or an all-zero list (Envoy NACKs it), and scaling to a coarser total
reports the rounding instead of hiding it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from routers.model.state import TrafficState

__all__ = [
    "BesideForeign",
    "Split",
    "as_integers",
    "beside_foreign",
    "largest_remainder",
    "parse_weight",
    "share",
    "shares_close",
    "split",
]


@dataclass(frozen=True)
class Split:
    """Integer weights of one weighted route, in a given total."""

    stable: int
    canary: int
    additional: tuple[tuple[str, int], ...]
    total: int
    max_error: Fraction = Fraction(0)
    """Largest deviation of any share from the requested one (0 when exact)."""

    @property
    def weights(self) -> list[int]:
        return [self.stable, self.canary, *(w for _, w in self.additional)]

    @property
    def rounded(self) -> bool:
        return self.max_error != 0

    def scaled(self, total: int) -> Split:
        """The same split in another total, by largest remainder (sum stays exact)."""
        if total == self.total:
            return self
        new = largest_remainder(self.weights, total)
        error = max(
            abs(Fraction(n, total) - Fraction(o, self.total))
            for n, o in zip(new, self.weights, strict=True)
        )
        return Split(
            stable=new[0],
            canary=new[1],
            additional=tuple(
                (name, w) for (name, _), w in zip(self.additional, new[2:], strict=True)
            ),
            total=total,
            max_error=max(error, self.max_error),
        )

    def describe_rounding(self, requested: Split) -> str:
        pct = float(self.max_error * 100)
        return (
            f"canary weight {requested.canary}/{requested.total} is expressed as "
            f"{self.canary}/{self.total} (rounding error up to {pct:.4g} percentage points)"
        )


def split(state: TrafficState) -> Split:
    """The exact split a state asks for, in the state's own total."""
    return Split(
        stable=state.stable_weight,
        canary=state.weight,
        additional=tuple((d.service, d.weight) for d in state.additional_destinations),
        total=state.total,
    )


def largest_remainder(weights: Sequence[int], total: int) -> list[int]:
    """Scale non-negative ``weights`` to integers summing exactly to ``total``.

    Hamilton's method: floor every share, then hand the missing units to the largest
    remainders (ties to the earlier entry, so results are deterministic).
    """
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError("weights and total must be non-negative")
    current = sum(weights)
    if current == 0:
        raise ValueError("cannot scale an all-zero weight list")
    exact = [Fraction(w * total, current) for w in weights]
    floors = [int(x) for x in exact]
    missing = total - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] += 1
    return floors


def share(part: int, weights: Sequence[int]) -> Fraction:
    """``part``'s share of a relative weight list (0 when the list is empty or all zero)."""
    total = sum(weights)
    return Fraction(part, total) if total else Fraction(0)


def shares_close(
    observed: Mapping[str, Fraction], wanted: Mapping[str, Fraction], tolerance: Fraction
) -> bool:
    """Every destination's observed share is within ``tolerance`` of the wanted share."""
    keys = set(observed) | set(wanted)
    return all(
        abs(observed.get(k, Fraction(0)) - wanted.get(k, Fraction(0))) <= tolerance for k in keys
    )


@dataclass(frozen=True)
class BesideForeign:
    split: Split
    """Our weights, summing to the sum that keeps the foreign share."""
    foreign_scale: Fraction
    """Factor for every foreign weight (1: untouched)."""


def beside_foreign(
    split: Split, ours: int, foreign: Sequence[int], max_weight: int
) -> BesideForeign | None:
    """Our split on a rule that also carries weights we do not own (relative weights).

    Writing the state's split in the state's own total next to a foreign ``legacy: 5`` would
    move legacy's share with the total (5/105 at 100, 5/1000005 at 1,000,000). Foreign weights
    keep their share only while our sum keeps its proportion to them, so the split is written
    in our current sum when that is exact; otherwise every weight moves to the smallest finer
    scale that is exact (``foreign_scale`` multiplies the foreign ones: their values change,
    their shares do not); failing that, the finest scale within ``max_weight``, rounded.

    Where to write ``split`` when the rule's foreign weights are ``foreign`` and our weights
    sum to ``ours`` today; None when no foreign weight is positive (any total keeps them at 0%).

    Raises ValueError when ``ours`` is 0 next to positive foreign weights: the foreign share is
    then 100% and no split of the rest exists.
    """
    positive = [f for f in foreign if f > 0]
    if not positive:
        return None
    if ours <= 0:
        raise ValueError("our weights sum to 0 next to positive foreign weights")
    scale = math.gcd(ours, *positive)
    base = ours // scale
    widest = max(base, *(f // scale for f in positive))
    fits = max_weight // widest
    exact_every = split.total // math.gcd(split.total, base * math.gcd(*split.weights))
    candidates = [scale, -(-scale // exact_every) * exact_every, exact_every]
    chosen = next(
        (m for m in candidates if m % exact_every == 0 and (m <= fits or m == scale)), None
    )
    if chosen is None:
        chosen = fits if fits >= 1 else scale
    return BesideForeign(split.scaled(chosen * base), Fraction(chosen, scale))


_QUANTITY = re.compile(
    r"(?P<num>[+]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<exp>[eE][+-]?\d+)|(?P<dec>[numkMGTPE])?)"
)
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}


def parse_weight(value: Any) -> Fraction | None:
    """A relative weight as an exact non-negative number, also from a Kubernetes quantity string
    (``"500m"``, ``"1Ki"``, ``"2e3"``: SMI v1alpha1 objects others wrote); ``None`` when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value) if value >= 0 else None
    if isinstance(value, float):
        return Fraction(value) if math.isfinite(value) and value >= 0 else None
    if not isinstance(value, str):
        return None
    m = _QUANTITY.fullmatch(value.strip())
    if m is None:
        return None
    number = Fraction(m.group("num"))
    if m.group("bin"):
        return number * Fraction(2) ** _BINARY[m.group("bin")]
    if m.group("exp"):
        return number * Fraction(10) ** int(m.group("exp")[1:])
    return number * Fraction(10) ** _DECIMAL[m.group("dec") or ""]


def as_integers(weights: Sequence[Fraction]) -> list[int]:
    """Relative weights as integers with the same ratios (``1/2, 1/10`` -> ``5, 1``)."""
    scale = math.lcm(1, *(w.denominator for w in weights))
    ints = [int(w * scale) for w in weights]
    common = math.gcd(*ints) if any(ints) else 1
    if scale > 1 and common > 1:
        ints = [i // common for i in ints]
    return ints
