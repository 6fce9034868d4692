"""Gateway API's bound for the shared foreign-share rule (routers.planning.weights.beside_foreign)."""

from __future__ import annotations

from collections.abc import Sequence

from routers.planning.weights import BesideForeign, Split
from routers.planning.weights import beside_foreign as _beside_foreign

__all__ = ["MAX_WEIGHT", "BesideForeign", "beside_foreign"]

MAX_WEIGHT = 1_000_000
"""backendRefs[].weight maximum (every Gateway API release, specs §2.4)."""


def beside_foreign(
    split: Split, ours: int, foreign: Sequence[int], max_weight: int = MAX_WEIGHT
) -> BesideForeign | None:
    return _beside_foreign(split, ours, foreign, max_weight)
