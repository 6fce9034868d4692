"""Reading backend weights: plain numbers, and the ``resource.Quantity`` strings of v1alpha1.

We only ever *write* plain integers (linkerd-smi serves v1alpha1 and v1alpha2 with conversion
``None``, so a quantity string written through v1alpha1 reaches integer-typed v1alpha2 clients
unchanged). Objects others wrote may still hold ``"500m"``; reading them must not fail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

__all__ = ["as_integers", "parse_weight"]

_QUANTITY = re.compile(
    r"^(?P<num>[+]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<exp>[eE][+-]?\d+)|(?P<dec>[numkMGTPE])?)$"
)
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}


def parse_weight(value: Any) -> Fraction | None:
    """The weight as an exact non-negative number; ``None`` when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value) if value >= 0 else None
    if isinstance(value, float):
        return Fraction(value) if math.isfinite(value) and value >= 0 else None
    if not isinstance(value, str):
        return None
    m = _QUANTITY.match(value.strip())
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
