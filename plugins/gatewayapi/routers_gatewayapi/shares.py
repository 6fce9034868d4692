"""Gateway API's bound for the shared weight rule (``routers.planning.weights.place``)."""

from __future__ import annotations

__all__ = ["MAX_WEIGHT"]

MAX_WEIGHT = 1_000_000
"""backendRefs[].weight maximum (every Gateway API release, specs §2.4)."""
