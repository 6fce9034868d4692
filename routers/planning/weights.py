"""Weight arithmetic: the only place that splits, scales and compares traffic weights.

Every split is a list of non-negative integers summing exactly to the requested total
(stable receives ``total - canary - sum(additional)``), so no target ever sees a negative
weight (Argo #4424) or an all-zero list (Envoy NACKs it), and scaling to a coarser total
reports the rounding instead of hiding it.

Next to destinations we do not own, :func:`target_shares` is the rule (what a state means) and
:func:`place` writes it as integers: the canary gets weight/total of *all* traffic, the others
keep their share, stable takes the rest, and a weight that does not fit is a
:class:`~routers.errors.WeightFitError`. Plugins, ``verify`` and the simulator's meaning of a
state all call these two functions.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from routers.errors import WeightFitError, percent
from routers.model.config import WeightScope
from routers.model.state import MAX_TOTAL, TrafficState

__all__ = [
    "FOREIGN",
    "Placement",
    "Shares",
    "Split",
    "WeightScope",
    "as_integers",
    "beside",
    "foreign_record",
    "give_back",
    "largest_remainder",
    "location",
    "parse_weight",
    "place",
    "remember",
    "share",
    "shares_close",
    "split",
    "target_shares",
    "unique_keys",
    "unscale",
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


def largest_remainder(weights: Sequence[int | Fraction], total: int) -> list[int]:
    """Scale non-negative ``weights`` (integers or exact fractions) to integers summing exactly
    to ``total``.

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
class Shares:
    """Exact shares of all the traffic of one weighted list."""

    stable: Fraction
    canary: Fraction
    additional: tuple[tuple[str, Fraction], ...]
    foreign: Fraction
    """Kept by destinations we do not own (summed)."""

    @property
    def ours(self) -> list[Fraction]:
        return [self.stable, self.canary, *(s for _, s in self.additional)]

    def by_name(self) -> dict[str, Fraction]:
        """``stable``, ``canary`` and every additional service (the keys ObservedWeights uses)."""
        out = {"stable": self.stable, "canary": self.canary}
        out.update(self.additional)
        return out


def target_shares(split: Split, foreign: Fraction, scope: WeightScope = "all") -> Shares:
    """What ``split`` means for a list whose other destinations hold ``foreign`` of the traffic.

    The one rule every target and checker follows. Destinations we do not own keep their share.
    With ``scope="all"`` the canary (and each additional destination) gets exactly its
    weight/total of *all* traffic and stable takes the rest; a state that leaves stable less
    than ``foreign`` but not nothing raises :class:`~routers.errors.WeightFitError` naming both
    numbers. A state that leaves stable nothing (Argo's promotion, ``setWeight`` = total) gives
    our destinations everything the others do not hold, in the state's proportions: "all of it"
    is the only reading of 100% that keeps their share. ``scope="ours"`` always splits what the
    others leave in the state's proportions (20% of the rest).
    """
    ours = [Fraction(w, split.total) for w in split.weights]
    names = [n for n, _ in split.additional]
    return _shares(beside(ours, foreign, scope, weight=_asked(split)), names, foreign)


def beside(
    ours: Sequence[Fraction], foreign: Fraction, scope: WeightScope = "all", *, weight: str = ""
) -> list[Fraction]:
    """:func:`target_shares` on plain shares: ``ours`` (stable's first) summing to 1 become our
    shares of all traffic when others hold ``foreign`` of it."""
    if foreign <= 0:
        return list(ours)
    asked = 1 - ours[0]
    if foreign >= 1 and asked:
        raise WeightFitError(asked, Fraction(1), weight=weight)
    if scope == "ours" or ours[0] == 0:
        return [x * (1 - foreign) for x in ours]
    if ours[0] < foreign:
        raise WeightFitError(asked, foreign, weight=weight)
    return [ours[0] - foreign, *ours[1:]]


def _asked(split: Split) -> str:
    extra = sum(w for _, w in split.additional)
    text = f"canary weight {split.canary}/{split.total}"
    return text + (f" plus {extra}/{split.total} for additional destinations" if extra else "")


def _shares(ours: list[Fraction], names: list[str], foreign: Fraction) -> Shares:
    return Shares(ours[0], ours[1], tuple(zip(names, ours[2:], strict=True)), foreign)


@dataclass(frozen=True)
class Placement:
    """A state's split written into one weighted list beside weights we do not own."""

    split: Split
    """Our weights; ``split.total`` is *their* sum, not the list's."""
    foreign: tuple[int, ...]
    """The new weight of every destination we do not own, in the order given."""
    shares: Shares
    """What the list means afterwards (exact; the integers may round it, see ``max_error``)."""

    @property
    def total(self) -> int:
        """Sum of every weight in the list."""
        return self.split.total + sum(self.foreign)

    @property
    def max_error(self) -> Fraction:
        if not self.total:
            return Fraction(0)
        return max(
            abs(Fraction(w, self.total) - s)
            for w, s in zip(self.split.weights, self.shares.ours, strict=True)
        )

    @property
    def rounded(self) -> bool:
        return self.max_error != 0

    def describe(self, requested: Split) -> str:
        """How the list expresses ``requested``, for notes (shares of all traffic)."""
        text = (
            f"canary {requested.canary}/{requested.total} is written as "
            f"{self.split.canary}/{self.total}"
        )
        if self.shares.foreign:
            text += (
                f"; destinations canary-routers does not own keep {percent(self.shares.foreign)} "
                "of the traffic"
            )
        if self.rounded:
            text += f" (rounding error up to {float(self.max_error * 100):.4g} percentage points)"
        return text


def place(
    split: Split,
    ours_now: int,
    foreign: Sequence[int],
    *,
    scope: WeightScope = "all",
    total: int | None = None,
    max_weight: int = MAX_TOTAL,
) -> Placement:
    """Write ``split`` into a list where our weights sum to ``ours_now`` and others weigh
    ``foreign``, following :func:`target_shares`.

    ``total`` fixes what the whole list sums to (Istio's ``weightTotal``); otherwise the list
    keeps its current sum when that expresses everything exactly, else every weight moves to
    the smallest finer sum that does (the others' values change, their shares do not), else to
    the finest one within ``max_weight``, rounded. The others' share stays exact whenever the
    sum is free, which also makes planning the same state again a no-op.

    Exact arithmetic costs: a function of integers only, each answer is remembered (plan and
    verify ask the same question, and a controller's rollouts step through the same weights).
    """
    return _place(split, ours_now, tuple(foreign), scope, total, max_weight)


@functools.lru_cache(maxsize=4096)
def _place(
    split: Split,
    ours_now: int,
    foreign: tuple[int, ...],
    scope: WeightScope,
    total: int | None,
    max_weight: int,
) -> Placement:
    held = sum(foreign)
    current = ours_now + held
    if not held or not current:
        out = split if total is None else split.scaled(total)
        return Placement(out, tuple(foreign), target_shares(split, Fraction(0), scope))
    if total is not None:
        kept = tuple(foreign) if current == total else _rescaled(foreign, ours_now, total)
        share = Fraction(sum(kept), total)
        return _fill(split, kept, share, total - sum(kept), scope)
    share = Fraction(held, current)
    if not ours_now:  # the others hold everything: only an all-stable state fits (raises else)
        return _fill(split, tuple(foreign), share, 0, scope)
    step = math.gcd(current, *foreign)
    base = (current - held) // step
    reduced = [f // step for f in foreign]
    inner = _inner(split, share, scope)
    exact = math.lcm(1, *((x * base).denominator for x in inner))
    widest = max(Fraction(max(reduced)), max(inner) * base)
    fits = int(max_weight / widest) if widest else step
    candidates = (step, -(-step // exact) * exact, exact)
    chosen = next((m for m in candidates if m % exact == 0 and m <= fits), None)
    if chosen is None:
        chosen = fits if fits >= 1 else step
    kept = tuple(f * chosen for f in reduced)
    return _fill(split, kept, share, base * chosen, scope)


FOREIGN = "foreign"
"""Ledger field where a plugin keeps the weights others had before :func:`place` rescaled them
(location -> backend key -> weight), so cleanup can give them back (:func:`give_back`)."""

_OURS = "(ours)"
"""Key of our weights' sum in a :data:`FOREIGN` entry (no backend key has parentheses)."""


def location(name: Any, matches: Any) -> str:
    """A weighted route's key in the :data:`FOREIGN` record: its name, else its matches
    (indices shift when managed routes are inserted, and the weights are what we change)."""
    if name:
        return f"name:{name}"
    text = json.dumps(matches, sort_keys=True, separators=(",", ":"))
    return f"matches:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def unique_keys(keys: Sequence[str]) -> list[str]:
    """Backend keys made distinct, in order (one Service listed twice, say on two ports, gives
    ``k`` and ``k#2``), so each entry keeps its own remembered weight."""
    seen: dict[str, int] = {}
    out = []
    for k in keys:
        seen[k] = seen.get(k, 0) + 1
        out.append(k if seen[k] == 1 else f"{k}#{seen[k]}")
    return out


def foreign_record(raw: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """The ledger's :data:`FOREIGN` field as read (malformed entries dropped)."""
    out: dict[str, dict[str, int]] = {}
    for where, entry in raw.items():
        if isinstance(entry, Mapping) and all(
            isinstance(w, int) and not isinstance(w, bool) for w in entry.values()
        ):
            out[str(where)] = {str(k): int(w) for k, w in entry.items()}
    return out


def unscale(original: Sequence[int], current: Sequence[int], ours: int) -> int | None:
    """Undo a rescale of the weights we do not own: when ``current`` are ``original`` times one
    factor and our weights' sum ``ours`` divided by it is whole, that sum (the others go back to
    ``original``); ``None`` when someone changed them since, or the sum does not divide."""
    pairs = [(o, c) for o, c in zip(original, current, strict=True) if o or c]
    if not pairs or any(o <= 0 or c <= 0 for o, c in pairs):
        return None
    factor = Fraction(pairs[0][1], pairs[0][0])
    if any(Fraction(c, o) != factor for o, c in pairs):
        return None
    back = ours / factor
    return int(back) if back.denominator == 1 else None


def remember(
    record: dict[str, dict[str, int]],
    where: str,
    before: Mapping[str, int],
    placed: Placement,
    *,
    ours: int | None = None,
) -> None:
    """Note the others' weights at ``where`` the first time :func:`place` changes them (and
    forget them once they are back): ``before`` maps their keys to today's weights, in order.
    ``ours`` (our weights' sum today) lets :func:`give_back` tell a rescale from someone's
    edit (one entry scaled by any factor looks like a rescale) and undo a rounded one too (a
    fixed total, where no exact factor exists)."""
    after = dict(zip(before, placed.foreign, strict=True))
    if after == dict(before):
        entry = record.get(where)
        if entry is not None and {k: w for k, w in entry.items() if k != _OURS} == dict(before):
            del record[where]
        return
    if where not in record:
        record[where] = {**before, **({_OURS: ours} if ours is not None else {})}


def give_back(
    record: dict[str, dict[str, int]], where: str, current: Mapping[str, int], ours: int
) -> tuple[dict[str, int], int] | None:
    """Cleanup's side of :func:`remember`: the weights the others at ``where`` had before we
    rescaled them, and the sum of ours that keeps every share, when nobody changed them since
    (``current`` is still our rescale of them: one exact factor, or the rounding :func:`place`
    made into a fixed total); ``None`` otherwise. The entry is forgotten either way."""
    entry = record.pop(where, None)
    if not entry:
        return None
    before = {k: w for k, w in entry.items() if k != _OURS}
    if not before or sorted(before) != sorted(current):
        return None
    original, now = list(before.values()), [current[k] for k in before]
    back = unscale(original, now, ours)
    had = entry.get(_OURS)
    if had is None:  # recorded without our sum: the factor is all there is to check
        return None if back is None else (before, back)
    if back == had or tuple(now) == _rescaled(original, had, sum(now) + ours):
        return before, had
    return None


def _inner(split: Split, foreign: Fraction, scope: WeightScope) -> list[Fraction]:
    """Our shares relative to what the others leave (they sum to 1)."""
    rest = 1 - foreign
    return [s / rest for s in target_shares(split, foreign, scope).ours]


def _rescaled(foreign: Sequence[int], ours_now: int, total: int) -> tuple[int, ...]:
    """The others' weights in a fixed ``total``, keeping their shares as closely as integers can."""
    return tuple(largest_remainder([*foreign, ours_now], total)[:-1])


def _fill(
    split: Split, kept: tuple[int, ...], share: Fraction, room: int, scope: WeightScope
) -> Placement:
    shares = target_shares(split, share, scope)
    if share >= 1 or room <= 0:
        ours = [0] * len(split.weights)
    else:
        ours = largest_remainder([s / (1 - share) for s in shares.ours], room)
    out = Split(
        stable=ours[0],
        canary=ours[1],
        additional=tuple((n, w) for (n, _), w in zip(split.additional, ours[2:], strict=True)),
        total=sum(ours),
    )
    return Placement(out, kept, shares)


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
    ints = [w.numerator * (scale // w.denominator) for w in weights]
    common = math.gcd(*ints) if any(ints) else 1
    if scale > 1 and common > 1:
        ints = [i // common for i in ints]
    return ints
