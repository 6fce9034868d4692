"""The structure the planner reads from TrafficSplits and HTTPRouteGroups.

Objects from manifest files were never validated by an API server: they are checked against
these shapes (the SMI types of the fields we read) before anything is planned, and a malformed
one is a PlanError naming the field instead of a crash.
"""

from __future__ import annotations

from collections.abc import Mapping

from routers.errors import PlanError
from routers.planning.objects import LiveObjects, Shape, shape_problem
from routers_smi.config import ROUTE_GROUP_KIND, SPECS_GROUP, SPLIT_GROUP, SPLIT_KIND

__all__ = ["check_shapes"]

_SHAPES: Mapping[tuple[str, str], Shape] = {
    (SPLIT_GROUP, SPLIT_KIND): {
        "spec": {
            "service": str,
            # v1alpha1 weights are quantities: a number or a string such as "500m".
            "backends": [{"service": str, "weight": (int, float, str)}],
            "matches": [{"kind": str, "name": str, "apiGroup": str}],
        }
    },
    (SPECS_GROUP, ROUTE_GROUP_KIND): {
        "spec": {
            # headers: a map (spec, Go types) or a list of one-entry maps (smi-sdk-go's CRD).
            "matches": [{"name": str, "pathRegex": str, "methods": [str], "headers": (dict, list)}]
        }
    },
}


def check_shapes(plugin: str, live: LiveObjects) -> None:
    """Refuse the first malformed TrafficSplit or HTTPRouteGroup among ``live``."""
    for ref, obj in live.items():
        shape = _SHAPES.get((ref.group, ref.kind))
        problem = shape_problem(obj, shape) if shape is not None else None
        if problem is not None:
            raise PlanError(f"malformed {ref.kind}: {problem}", plugin=plugin, obj=str(ref))
