"""The structure the planner reads from VirtualServices and DestinationRules.

An object from a manifest file was never validated by an API server: it is checked against
these shapes (the Istio CRDs' types for the fields we read) before planning, and a malformed
one is a PlanError naming the field instead of a crash.
"""

from __future__ import annotations

from collections.abc import Mapping

from routers.errors import PlanError
from routers.planning.objects import LiveObjects, Shape, shape_problem

__all__ = ["check_shapes"]

_STRING_MATCH: Shape = {"exact": str, "prefix": str, "regex": str}
_MATCH: Shape = {
    "name": str,
    "uri": _STRING_MATCH,
    "scheme": _STRING_MATCH,
    "method": _STRING_MATCH,
    "authority": _STRING_MATCH,
    "headers": {"*": _STRING_MATCH},
    "queryParams": {"*": _STRING_MATCH},
    "withoutHeaders": {"*": _STRING_MATCH},
    "port": int,
    "sourceLabels": {"*": str},
    "gateways": [str],
    "sniHosts": [str],
    "sourceNamespace": str,
}
_DESTINATION: Shape = {"host": str, "subset": str, "port": {"number": int}}
_PERCENT: Shape = {"value": (int, float)}
_ROUTE: Shape = {"destination": _DESTINATION, "weight": int}
_HTTP: Shape = {
    "name": str,
    "match": [_MATCH],
    "route": [_ROUTE],
    "delegate": {"name": str, "namespace": str},
    "mirror": _DESTINATION,
    "mirrorPercentage": _PERCENT,
    "mirrors": [{"destination": _DESTINATION, "percentage": _PERCENT}],
}
_L4: Shape = {"match": [_MATCH], "route": [_ROUTE]}
SHAPES: Mapping[str, Shape] = {
    "VirtualService": {
        "spec": {"hosts": [str], "gateways": [str], "http": [_HTTP], "tls": [_L4], "tcp": [_L4]}
    },
    "DestinationRule": {"spec": {"host": str, "subsets": [{"name": str, "labels": {"*": str}}]}},
}


def check_shapes(plugin: str, group: str, live: LiveObjects) -> None:
    """Refuse the first malformed VirtualService or DestinationRule among ``live``."""
    for ref, obj in live.items():
        shape = SHAPES.get(ref.kind) if ref.group == group else None
        problem = shape_problem(obj, shape) if shape is not None else None
        if problem is not None:
            raise PlanError(f"malformed {ref.kind}: {problem}", plugin=plugin, obj=str(ref))
