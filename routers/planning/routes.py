"""Managed-route order: one rule for every first-match target."""

from __future__ import annotations

from collections.abc import Sequence

from routers.model.state import HeaderRoute, ManagedRoute, MirrorRoute, TrafficState

__all__ = ["ordered_routes"]


def ordered_routes(state: TrafficState, managed_order: Sequence[str] = ()) -> list[ManagedRoute]:
    """Header and mirror routes in precedence order.

    With ``managedRoutes`` in the config (Argo's rule), its order decides; otherwise the state's
    order, header routes before mirror routes.
    """
    routes: list[HeaderRoute | MirrorRoute] = [*state.header_routes, *state.mirror_routes]
    if not managed_order:
        return list(routes)
    rank = {name: i for i, name in enumerate(managed_order)}
    return sorted(routes, key=lambda r: rank.get(r.name, len(rank)))
