"""The Gateway API target: HTTPRoute and GRPCRoute (weights, header and mirror rules), TCPRoute
and TLSRoute (weights only), attached to Gateways or, in GAMMA mesh mode, to Services."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from routers.contract import (
    ANY_MATCH,
    API_VERSION,
    Capabilities,
    ClusterFacts,
    MirrorSupport,
    Observation,
    Permission,
)
from routers.errors import TargetNotFoundError, UnsupportedError
from routers.model import MAX_TOTAL, Cleanup, Desired, RoutingConfig, TrafficState
from routers.planning.objects import LiveObjects, ObjectRef, SelectorRef, check_shapes
from routers.planning.plan import Note, Plan
from routers.planning.routes import ordered_routes
from routers.simulate import Request, Routed
from routers_gatewayapi import config as config_mod
from routers_gatewayapi import evaluate
from routers_gatewayapi.config import Config
from routers_gatewayapi.features import Features, detect
from routers_gatewayapi.kinds import GROUP, SHAPES, RouteKind
from routers_gatewayapi.observe import observe_route
from routers_gatewayapi.planner import MAX_MATCHES_PER_RULE, MAX_RULES, RoutePlanner, instruction

__all__ = ["Plugin"]

NAME = "gatewayapi"


class Plugin:
    name = NAME
    api_version = API_VERSION
    crds: tuple[str, ...] = (
        "httproutes.gateway.networking.k8s.io",
        "grpcroutes.gateway.networking.k8s.io",
        "tcproutes.gateway.networking.k8s.io",
        "tlsroutes.gateway.networking.k8s.io",
    )

    # -- capabilities -----------------------------------------------------------------------

    def _features(self, config: Config, kind: RouteKind, facts: ClusterFacts | None) -> Features:
        return detect(kind, facts, config.section.crd_bundle_version, config.channel)

    def capabilities(
        self, config: Any | None = None, facts: ClusterFacts | None = None
    ) -> Capabilities:
        base = {"max_routes": MAX_RULES - 1, "max_total": MAX_TOTAL, "readiness": True}
        limits = replace(
            ANY_MATCH, max_matches_per_route=MAX_MATCHES_PER_RULE, max_headers_per_match=16
        )
        if not isinstance(config, Config):
            return Capabilities(
                header_routes=True,
                header_limits=limits,
                mirror=MirrorSupport.FRACTION,
                notes=(
                    "HTTPRoute/GRPCRoute: header and mirror routes; TCPRoute/TLSRoute: weights only",
                    "mirror percentages need Gateway API standard >= v1.3 or experimental >= v1.2",
                ),
                **base,  # type: ignore[arg-type]
            )
        managed = config.managed_targets
        notes: list[str] = [
            "a prefix path match is Gateway API's element-wise PathPrefix (/api matches /api/x, "
            "not /apix); header and query prefixes become anchored regular expressions",
        ]
        if not managed:
            notes.append(
                "no configured HTTPRoute/GRPCRoute has useHeaderRoutes: true, so header and "
                "mirror routes cannot be placed (a singular httpRoute/grpcRoute implies true)"
            )
            return Capabilities(notes=tuple(notes), **base)  # type: ignore[arg-type]
        http_only = all(t.kind.matches == "http" for t in managed)
        if not http_only:
            notes.append("a GRPCRoute takes header conditions only (no path, method or query)")
        feats = [self._features(config, k, facts) for k in {t.kind for t in managed}]
        feats.sort(key=lambda f: f.kind.kind)
        mirror = MirrorSupport.FRACTION
        for f in feats:
            if f.assumed:
                notes.append(f"CRD version unknown: {f.describe()}")
            if not f.mirror_fraction:
                mirror = MirrorSupport.FULL_ONLY
                notes.append(
                    f"only 100% mirroring: {f.describe()} has no RequestMirror percent/fraction "
                    "(needs standard >= v1.3 or experimental >= v1.2)"
                )
        if not http_only:  # GRPCRoute matches: headers only
            limits = replace(
                limits, path_match=frozenset(), query_match=frozenset(), method_match=False
            )
        return Capabilities(
            header_routes=True,
            header_limits=limits,
            mirror=mirror,
            notes=tuple(notes),
            **base,  # type: ignore[arg-type]
        )

    # -- config and reading -----------------------------------------------------------------

    def parse_config(self, section: Mapping[str, Any], routing: RoutingConfig) -> Config:
        return config_mod.parse(section, routing)

    def targets(self, config: Config, live: LiveObjects) -> Sequence[ObjectRef | SelectorRef]:
        return [*(t.ref for t in config.targets), *(s.ref for s in config.selectors)]

    def permissions(self, config: Config) -> Sequence[Permission]:
        listed = {s.kind.plural for s in config.selectors}
        plurals = sorted({t.kind.plural for t in config.targets} | listed)
        return [
            Permission(GROUP, p, ("get", "list", "patch") if p in listed else ("get", "patch"))
            for p in plurals
        ]

    # -- planning ---------------------------------------------------------------------------

    def plan(
        self, config: Config, live: LiveObjects, desired: Desired, facts: ClusterFacts
    ) -> Plan:
        check_shapes(self.name, live, SHAPES)
        notes: list[Note] = []
        present = []
        unmatched: list[str] = []
        targets = config.resolve(live, unmatched if isinstance(desired, Cleanup) else None)
        notes.extend(Note(self.name, f"{m}: nothing to clean up there") for m in unmatched)
        for t in targets:
            obj = live.get(t.ref)
            if obj is None:
                if isinstance(desired, Cleanup):
                    notes.append(Note(self.name, f"{t} does not exist: nothing to clean up there"))
                    continue
                raise TargetNotFoundError(
                    f"{t} (configured at {t.path}) does not exist", plugin=self.name, obj=str(t)
                )
            present.append((t, obj))
        if not isinstance(desired, Cleanup):
            routes = ordered_routes(desired, config.managed_order)
            if routes and not config.managed_targets:
                raise UnsupportedError(
                    self.name,
                    instruction(routes[0]),
                    "no configured HTTPRoute/GRPCRoute accepts managed rules",
                    hint="set useHeaderRoutes: true on the routes that should carry them",
                )
        ops = []
        produced: dict[str, int] = {}
        for t, obj in present:
            planner = RoutePlanner(
                self.name,
                config,
                t,
                obj,
                self._features(config, t.kind, facts),
                desired if isinstance(desired, TrafficState) else None,
            )
            result = planner.plan(desired)
            ops.append(result.patch)
            notes.extend(result.notes)
            for route, n in result.produced.items():
                produced[route] = produced.get(route, 0) + n
        if not isinstance(desired, Cleanup):
            for managed in ordered_routes(desired, config.managed_order):
                if produced.get(managed.name, 0) == 0:
                    raise UnsupportedError(
                        self.name,
                        instruction(managed),
                        "its matches select no traffic of any weighted rule on the routes with "
                        "useHeaderRoutes (paths or methods disjoint from every such rule)",
                    )
        return Plan.of(self.name, ops, notes)

    # -- observing --------------------------------------------------------------------------

    def evaluate(self, config: Config, objects: LiveObjects, request: Request) -> Sequence[Routed]:
        return evaluate.evaluate(config, objects, request)

    def sample_requests(self, config: Config, objects: LiveObjects) -> Sequence[Request]:
        return evaluate.sample_requests(config, objects)

    def observe(self, config: Config, live: LiveObjects, facts: ClusterFacts) -> Observation:
        weights = []
        headers: set[str] = set()
        mirrors: dict[str, float] = {}
        conditions = []
        problems: list[str] = []
        ready = True
        for t in config.resolve(live, problems):
            obj = live.get(t.ref)
            if obj is None:
                problems.append(f"{t} does not exist")
                ready = False
                continue
            seen = observe_route(config, t, obj)
            weights.extend(seen.weights)
            headers |= seen.header_routes
            for name, pct in seen.mirror_routes.items():
                mirrors.setdefault(name, pct)
            conditions.extend(seen.conditions)
            problems.extend(seen.problems)
            ready = ready and seen.ready
        return Observation(
            plugin=self.name,
            weights=tuple(weights),
            header_routes=tuple(sorted(headers)),
            mirror_routes=mirrors,
            ready=ready,
            conditions=tuple(conditions),
            problems=tuple(problems),
        )
