"""The ``nginx`` plugin object: the contract's entry points, each a thin pure wrapper."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from routers.contract import (
    ALL_MATCH_TYPES,
    API_VERSION,
    Capabilities,
    ClusterFacts,
    MatchLimits,
    MirrorSupport,
    Observation,
    Permission,
)
from routers.model import Desired, RoutingConfig
from routers.planning.objects import LiveObjects, ObjectRef, check_shapes
from routers.planning.plan import Plan
from routers.simulate import Request, Routed
from routers_nginx import annotations as ann
from routers_nginx import config as cfg
from routers_nginx import evaluate
from routers_nginx.ingress import SHAPES, needs_service, service_ref
from routers_nginx.observe import observe
from routers_nginx.planner import PLUGIN, plan

__all__ = ["Plugin"]

_HEADER_LIMITS = MatchLimits(ALL_MATCH_TYPES, max_matches_per_route=1, max_headers_per_match=1)

_NOTES = (
    "one header route: one header condition (exact, prefix or regex), no path/method/query",
    "or one mirror route: 100% of every request of the stable Ingress (match: path prefix /)",
    "a cookie opt-in (canaryByCookie) is config, not a route: the model has no cookie match",
    "precedence is fixed by ingress-nginx: header, then cookie, then weight",
)


class Plugin:
    name = PLUGIN
    api_version = API_VERSION
    crds: tuple[str, ...] = ()

    def capabilities(
        self, config: Any | None = None, facts: ClusterFacts | None = None
    ) -> Capabilities:
        # Header routes: one header condition, nothing else. Mirror routes: one path prefix
        # (nginx mirrors whole locations; plan() checks that it covers the Ingress's paths).
        static_header = isinstance(config, cfg.Config) and (
            config.key(ann.CANARY_BY_HEADER) in config.static
        )
        round_up = not isinstance(config, cfg.Config) or config.section.allow_mirror_round_up
        exact_total = not isinstance(config, cfg.Config) or config.section.weight_total_annotation
        return Capabilities(
            additional_destinations=False,
            header_routes=not static_header,
            header_limits=_HEADER_LIMITS,
            mirror=MirrorSupport.FULL_ONLY,
            mirror_limits=MatchLimits(path_match=frozenset({"prefix"}), max_matches_per_route=1),
            mirror_round_up=round_up,
            max_routes=1,
            max_total=None if exact_total else 100,
            notes=_NOTES,
        )

    def parse_config(self, section: Mapping[str, Any], routing: RoutingConfig) -> cfg.Config:
        return cfg.parse(section, routing)

    def targets(self, config: cfg.Config, live: LiveObjects) -> Sequence[ObjectRef]:
        check_shapes(PLUGIN, live, SHAPES)
        refs: list[ObjectRef] = []
        for pair in config.pairs:
            refs += [pair.stable, pair.canary]
            if pair.legacy is not None:
                refs.append(pair.legacy)
        if needs_service(config, live):
            refs.append(service_ref(config))
        return refs

    def plan(
        self, config: cfg.Config, live: LiveObjects, desired: Desired, facts: ClusterFacts
    ) -> Plan:
        check_shapes(PLUGIN, live, SHAPES)
        return plan(config, live, desired)

    def evaluate(
        self, config: cfg.Config, objects: LiveObjects, request: Request
    ) -> Sequence[Routed]:
        return evaluate.evaluate(config, objects, request)

    def sample_requests(self, config: cfg.Config, objects: LiveObjects) -> Sequence[Request]:
        return evaluate.sample_requests(config, objects)

    def observe(self, config: cfg.Config, live: LiveObjects, facts: ClusterFacts) -> Observation:
        return observe(config, live)

    def permissions(self, config: cfg.Config) -> Sequence[Permission]:
        return [
            Permission(cfg.GROUP, "ingresses", ("get", "create", "patch", "delete")),
            # Only read, and only to turn a named backend port into the mirror URL's number.
            Permission("", "services", ("get",)),
        ]
