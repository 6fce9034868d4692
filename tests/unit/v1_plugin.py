"""A plugin written against contract version 1, as third parties shipped them before version 2.

It must keep loading and working unchanged: the core accepts ``api_version = 1``, its flat
``Capabilities`` keywords, and ignores a method named ``evaluate`` (version 1 had no evaluator,
so a method of that name means something else). It records the state in a ConfigMap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from routers.contract import Capabilities, ClusterFacts, Observation, ObservedWeights, Permission
from routers.model import Cleanup, Desired, RoutingConfig
from routers.planning import weights
from routers.planning.objects import LiveObjects, ObjectRef
from routers.planning.patch import PatchBuilder, pointer
from routers.planning.plan import Plan

REF = ObjectRef("", "ConfigMap", "shop", "legacy-state", "v1")


class LegacyPlugin:
    name = "legacy"
    api_version = 1
    crds: tuple[str, ...] = ()

    def capabilities(
        self, config: Any | None = None, facts: ClusterFacts | None = None
    ) -> Capabilities:
        return Capabilities(
            additional_destinations=False,
            header_routes=True,
            header_match=frozenset({"exact"}),
            max_matches_per_route=1,
            max_headers_per_match=1,
        )

    def parse_config(self, section: Mapping[str, Any], routing: RoutingConfig) -> RoutingConfig:
        return routing

    def targets(self, config: RoutingConfig, live: LiveObjects) -> Sequence[ObjectRef]:
        return [REF]

    def plan(
        self, config: RoutingConfig, live: LiveObjects, desired: Desired, facts: ClusterFacts
    ) -> Plan:
        current = live.get(REF)
        if current is None:
            return Plan(self.name)
        if isinstance(desired, Cleanup):
            data: dict[str, Any] = {"canary": 0, "headerRoutes": []}
        else:
            split = weights.split(desired)
            data = {
                "canary": split.canary,
                "total": split.total,
                "headerRoutes": [r.name for r in desired.header_routes],
            }
        builder = PatchBuilder(current)
        builder.set(pointer("data", "state"), json.dumps(data, sort_keys=True))
        return Plan.of(self.name, [builder.patch(REF, "record the state")])

    def observe(self, config: RoutingConfig, live: LiveObjects, facts: ClusterFacts) -> Observation:
        data = json.loads(((live.get(REF) or {}).get("data") or {}).get("state") or "{}")
        total = int(data.get("total", 100))
        canary = int(data.get("canary", 0))
        return Observation(
            self.name,
            weights=(ObservedWeights(str(REF), total - canary, canary),),
            header_routes=tuple(data.get("headerRoutes", ())),
        )

    def permissions(self, config: RoutingConfig) -> Sequence[Permission]:
        return [Permission("", "configmaps", ("get", "patch"))]

    def evaluate(self, *args: Any) -> str:
        """Something else entirely (a v1 plugin's own helper): never called by the core."""
        raise AssertionError("the core called a version-1 plugin's evaluate()")
