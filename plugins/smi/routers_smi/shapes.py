"""The structure the planner reads from TrafficSplits and HTTPRouteGroups.

Objects from manifest files were never validated by an API server: they are checked against
these shapes (the SMI types of the fields we read) before anything is planned, and a malformed
one is a PlanError naming the field instead of a crash.
"""

from __future__ import annotations

from collections.abc import Mapping

from routers.planning.objects import Shape
from routers_smi.config import ROUTE_GROUP_KIND, SPECS_GROUP, SPLIT_GROUP, SPLIT_KIND

__all__ = ["SHAPES"]

SHAPES: Mapping[tuple[str, str], Shape] = {
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
