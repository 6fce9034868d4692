"""The structure the planner reads from VirtualServices and DestinationRules.

An object from a manifest file was never validated by an API server: it is checked against
these shapes (the Istio CRDs' types for the fields we read) before planning, and a malformed
one is a PlanError naming the field instead of a crash.
"""

from __future__ import annotations

from collections.abc import Mapping

from routers.planning.objects import Shape
from routers_istio.config import GROUP

__all__ = ["SHAPES"]

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
SHAPES: Mapping[tuple[str, str], Shape] = {
    (GROUP, "VirtualService"): {
        "spec": {"hosts": [str], "gateways": [str], "http": [_HTTP], "tls": [_L4], "tcp": [_L4]}
    },
    (GROUP, "DestinationRule"): {
        "spec": {"host": str, "subsets": [{"name": str, "labels": {"*": str}}]}
    },
}
