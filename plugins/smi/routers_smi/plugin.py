"""The SMI target: one TrafficSplit (``split.smi-spec.io`` v1alpha1..v1alpha4) and, for header
routes on v1alpha3/v1alpha4, one HTTPRouteGroup we own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from routers.contract import (
    ALL_MATCH_TYPES,
    API_VERSION,
    Capabilities,
    ClusterFacts,
    MatchLimits,
    Observation,
    Permission,
)
from routers.errors import ConfigError, PlanError, Problem, UnsupportedError
from routers.model import Cleanup, Desired, HeaderRoute, RoutingConfig, TrafficState
from routers.planning import weights
from routers.planning.objects import LiveObjects, ObjectRef, check_shapes, resource_version, uid
from routers.planning.ownership import is_created_by_us
from routers.planning.plan import Delete, Note, Operation, Plan
from routers.planning.routes import ordered_routes
from routers.simulate import Request, Routed
from routers_smi import config as config_mod
from routers_smi import evaluate
from routers_smi.config import (
    MATCH_VERSIONS,
    SPECS_GROUP,
    SPLIT_GROUP,
    Config,
)
from routers_smi.observe import observe_split
from routers_smi.routegroup import create_group, group_ledger, patch_group
from routers_smi.shapes import SHAPES
from routers_smi.split import (
    Backend,
    SplitPlanner,
    conflict,
    create_split,
    header_reason,
    our_match_names,
    split_ledger,
)
from routers_smi.versions import (
    GROUP_CRD,
    SPLIT_CRD,
    Resolved,
    group_version,
    headers_shape,
    resolve,
)

__all__ = ["Plugin"]

NAME = "smi"

GATEWAY_HINT = (
    "move the whole split, weights included, to the gatewayapi plugin with an HTTPRoute whose "
    "parentRef is the Service (GAMMA), Linkerd's replacement for SMI; do not mix it with a "
    "TrafficSplit: Linkerd ignores HTTPRoutes of a Service with a ServiceProfile, which "
    "linkerd-smi writes"
)
_LIMITS = MatchLimits(ALL_MATCH_TYPES, ALL_MATCH_TYPES, method_match=True)
"""HTTPRouteGroup matches: header and path regexes, methods (no query parameters)."""
_UNMATCHED = (
    "while a TrafficSplit has matches, requests that match no header route bypass its backends "
    "and go to the root Service directly (SMI v1alpha3/v1alpha4)"
)


class Plugin:
    name = NAME
    api_version = API_VERSION
    crds: tuple[str, ...] = (SPLIT_CRD, GROUP_CRD)

    # -- capabilities -----------------------------------------------------------------------

    def capabilities(
        self, config: Any | None = None, facts: ClusterFacts | None = None
    ) -> Capabilities:
        notes = [
            "SMI has no traffic mirroring",
            "weights are relative integers in every version (never quantity strings)",
        ]
        if not isinstance(config, Config):
            return Capabilities(
                header_routes=True,
                header_limits=_LIMITS,
                notes=(
                    *notes,
                    "header routes need split.smi-spec.io v1alpha3/v1alpha4 (HTTPRouteGroup); "
                    f"{_UNMATCHED}, so they go with weight 0 unless acceptUnmatchedToRoot",
                ),
            )
        resolved = resolve(config, facts)
        if resolved.assumed:
            notes.append(
                f"TrafficSplit version unknown: assumed {resolved.version} (set apiVersion)"
            )
        if not resolved.has_matches:
            notes.append(
                f"no header routes on {SPLIT_GROUP}/{resolved.version} (no spec.matches): "
                + GATEWAY_HINT
            )
            return Capabilities(notes=tuple(notes))
        accept = config.section.accept_unmatched_to_root
        if config.root != config.stable and not accept:
            notes.append(
                f"no header routes: {_UNMATCHED}, and root Service {config.root!r} is not the "
                f"stable Service {config.stable!r} (set acceptUnmatchedToRoot: true to accept)"
            )
            return Capabilities(notes=tuple(notes))
        notes.append(
            f"{_UNMATCHED}: header routes are planned "
            + (
                "with any weight (acceptUnmatchedToRoot), but the weight does not apply to "
                "requests no header route matches"
                if accept
                else "only with weight 0 and additional destinations at 0"
            )
        )
        return Capabilities(
            header_routes=True,
            header_routes_with_weight=accept,
            header_limits=_LIMITS,
            notes=tuple(notes),
        )

    # -- config and reading -----------------------------------------------------------------

    def parse_config(self, section: Mapping[str, Any], routing: RoutingConfig) -> Config:
        return config_mod.parse(section, routing)

    def targets(self, config: Config, live: LiveObjects) -> Sequence[ObjectRef]:
        # HTTPRouteGroups exist only beside versions with matches (a group the cluster does not
        # serve reads as absent); an unpinned first plan still looks for a leftover group.
        check_shapes(self.name, live, SHAPES)
        ref = config.split_ref(config.pinned)
        refs = [ref]
        obj = live.get(ref)
        version: str | None = config.pinned
        if version is None and obj is not None:
            version = str(obj.get("apiVersion", "")).rpartition("/")[2] or None
        if version is None:
            version = "v1alpha4"
        if version not in MATCH_VERSIONS:
            return refs
        names = [config.group_name, *(our_match_names(config, obj) if obj is not None else [])]
        refs.extend(config.group_ref(n, version) for n in dict.fromkeys(names))
        return refs

    def permissions(self, config: Config) -> Sequence[Permission]:
        verbs = ("get", "create", "patch", "delete")
        out = [Permission(SPLIT_GROUP, "trafficsplits", verbs)]
        if config.pinned is None or config.pinned in MATCH_VERSIONS:
            out.append(Permission(SPECS_GROUP, "httproutegroups", verbs))
        return out

    # -- planning ---------------------------------------------------------------------------

    def plan(
        self, config: Config, live: LiveObjects, desired: Desired, facts: ClusterFacts
    ) -> Plan:
        check_shapes(self.name, live, SHAPES)
        if isinstance(desired, Cleanup):
            return self._cleanup(config, live, desired, facts)
        resolved = resolve(config, facts, strict=True)
        notes: list[Note] = []
        if resolved.assumed:
            notes.append(
                Note(
                    self.name,
                    f"TrafficSplit version unknown (offline, no CRD among the inputs): "
                    f"assumed {SPLIT_GROUP}/{resolved.version}; set apiVersion or pass the CRD",
                    level="warning",
                )
            )
        routes = self._check(config, desired, resolved, notes)
        split_ref = config.split_ref(resolved.version)
        group_ref = config.group_ref(version=resolved.version)
        ts = live.get(split_ref)
        wanted = self._backends(config, desired, header_mode=bool(routes))
        planner = SplitPlanner(self.name, config, split_ref, ts) if ts is not None else None
        if planner is not None:
            planner.claim()
        ours = self._groups_named(config, ts)

        before: list[Operation | None] = []
        after: list[Operation | None] = []
        group_name = None
        if routes:
            gv = group_version(config, resolved.version, facts)
            group_ref = group_ref.with_version(gv)
            shape = headers_shape(config, gv, facts)
            group = live.get(group_ref)
            if group is None:
                before.append(create_group(group_ref, gv, routes, shape, self.name, config.owner))
            elif not is_created_by_us(group, self.name):
                raise PlanError(
                    "exists and was not created by canary-routers; set httpRouteGroupName to "
                    "a free name for the group of header routes",
                    plugin=self.name,
                    obj=str(group_ref),
                )
            else:
                view = group_ledger(group, config.owner, ours, str(group_ref))
                if view.shared:
                    raise conflict(
                        config, f"HTTPRouteGroup {group_ref.name}", str(group_ref), view, self.name
                    )
                before.append(patch_group(group_ref, group, routes, shape, view))
            group_name = group_ref.name

        if planner is None:
            split_op: Operation | None = create_split(
                config, split_ref, wanted, group_name, self.name, [r.name for r in routes]
            )
            stale: list[str] = []
        else:
            planner.root()
            if routes and planner.foreign_matches():
                raise UnsupportedError(
                    self.name,
                    _instruction(routes[0]),
                    f"TrafficSplit {split_ref.name} already has matches "
                    f"({', '.join(planner.foreign_matches())}) that canary-routers did not add; "
                    "its backends split the requests those groups match, so they cannot also "
                    "send header-route requests to canary alone",
                    hint="use a TrafficSplit of your own (trafficSplitName) or " + GATEWAY_HINT,
                )
            stale = sorted(n for n in planner.added_matches if n != group_name)
            planner.matches(group_name)
            planner.backends(wanted, config.weight_scope)
            if planner.foreign_matches():
                notes.append(
                    Note(
                        self.name,
                        f"TrafficSplit {split_ref.name} has matches "
                        f"({', '.join(planner.foreign_matches())}): the weights apply only to "
                        "the requests they match; all others go to the root Service directly",
                        level="warning",
                    )
                )
            split_op = planner.finish(
                desired,
                header_reason(split_ref.name, [r.name for r in routes], config.root)
                if routes
                else None,
            )
            notes.extend(planner.notes)
        unused = [*([] if routes else [config.group_name]), *stale]
        after.extend(self._delete_groups(config, live, unused, resolved))
        return Plan.of(self.name, [*before, split_op, *after], notes)

    def _check(
        self, config: Config, state: TrafficState, resolved: Resolved, notes: list[Note]
    ) -> list[HeaderRoute]:
        """Refuse what SMI cannot express, before anything is planned."""
        for i, d in enumerate(state.additional_destinations):
            if d.service in (config.stable, config.canary):
                raise ConfigError(
                    [
                        Problem(
                            f"additionalDestinations[{i}].service",
                            f"{d.service!r} is the stable or canary Service; a TrafficSplit "
                            "lists each backend Service once",
                        )
                    ]
                )
        if state.mirror_routes:
            raise UnsupportedError(
                self.name,
                f"setMirrorRoute {state.mirror_routes[0].name!r}",
                "SMI has no traffic mirroring (no TrafficSplit version can copy requests)",
                hint="Istio or the gatewayapi plugin can mirror (Linkerd cannot: linkerd2 #4385)",
            )
        routes = [
            r for r in ordered_routes(state, config.managed_order) if isinstance(r, HeaderRoute)
        ]
        if not routes:
            return []
        instruction = _instruction(routes[0])
        if not resolved.has_matches:
            raise UnsupportedError(
                self.name,
                instruction,
                f"{SPLIT_GROUP}/{resolved.version} has no spec.matches (header routes need "
                "v1alpha3/v1alpha4 and HTTPRouteGroup; linkerd-smi serves only v1alpha1/v1alpha2)",
                hint=GATEWAY_HINT,
            )
        weighted = state.weight > 0 or any(d.weight for d in state.additional_destinations)
        if not weighted and config.root == config.stable:
            return routes
        if weighted:
            split = weights.split(state)
            reason = (
                f"{_UNMATCHED}, so canary weight {split.canary}/{split.total}"
                + (" and the additional destinations" if split.additional else "")
                + f" would not apply to them (root Service {config.root!r})"
            )
        else:
            reason = (
                f"{_UNMATCHED}, and root Service {config.root!r} is not the stable Service "
                f"{config.stable!r}: its selector, not weight 0, would decide where they go"
            )
        if not config.section.accept_unmatched_to_root:
            raise UnsupportedError(
                self.name,
                instruction,
                reason,
                hint="set the weight to 0 while header routes are active, set "
                "acceptUnmatchedToRoot: true to accept this, or " + GATEWAY_HINT,
            )
        notes.append(Note(self.name, f"acceptUnmatchedToRoot: {reason}", level="warning"))
        return routes

    @staticmethod
    def _backends(config: Config, state: TrafficState, *, header_mode: bool) -> list[Backend]:
        split = weights.split(state)
        if header_mode:
            # The backends split only header-route requests: all of them go to canary.
            return [
                (config.stable, 0),
                (config.canary, split.total),
                *((name, 0) for name, _ in split.additional),
            ]
        return [(config.stable, split.stable), (config.canary, split.canary), *split.additional]

    @staticmethod
    def _groups_named(config: Config, ts: Mapping[str, Any] | None) -> set[str]:
        """Groups this owner names: its configured one and those its split entries reference."""
        return {config.group_name, *(our_match_names(config, ts) if ts is not None else [])}

    def _delete_groups(
        self, config: Config, live: LiveObjects, names: Sequence[str], resolved: Resolved
    ) -> list[Operation]:
        out: list[Operation] = []
        ours = self._groups_named(config, live.get(config.split_ref(resolved.version)))
        for name in dict.fromkeys(names):
            ref = config.group_ref(name, resolved.version)
            group = live.get(ref)
            if (
                group is not None
                and is_created_by_us(group, self.name)
                and not group_ledger(group, config.owner, ours, str(ref)).shared
            ):
                out.append(
                    Delete(
                        ref,
                        uid(group),
                        resource_version(group),
                        f"delete HTTPRouteGroup {name}: no header route uses it",
                    )
                )
        return out

    def _cleanup(
        self, config: Config, live: LiveObjects, desired: Cleanup, facts: ClusterFacts
    ) -> Plan:
        resolved = resolve(config, facts)
        ref = config.split_ref(resolved.version)
        ts = live.get(ref)
        ops: list[Operation | None] = []
        groups = [config.group_name]
        if ts is not None and split_ledger(config, ts).shared:
            ts = None  # another owner's TrafficSplit: nothing here is ours to clean up
            groups = []
        if ts is not None:
            groups.extend(our_match_names(config, ts))
            if is_created_by_us(ts, self.name) and desired.restore_stable:
                ops.append(
                    Delete(
                        ref,
                        uid(ts),
                        resource_version(ts),
                        f"cleanup: delete TrafficSplit {ref.name}, created by canary-routers",
                    )
                )
            else:
                # Not ours, or ours under --keep-weights: drop the header routes. Their backends
                # sent every matched request to canary; without matches they would send all.
                planner = SplitPlanner(self.name, config, ref, ts)
                header_mode = planner.has_our_matches()
                planner.matches(None)
                if desired.restore_stable:
                    planner.restore_stable()
                elif header_mode:
                    planner.restore_stable(remove_added=False)
                ops.append(planner.finish(desired))
        ops.extend(self._delete_groups(config, live, groups, resolved))
        return Plan.of(self.name, ops)

    # -- data plane -------------------------------------------------------------------------

    def evaluate(self, config: Config, objects: LiveObjects, request: Request) -> Sequence[Routed]:
        return evaluate.evaluate(config, objects, request)

    def sample_requests(self, config: Config, objects: LiveObjects) -> Sequence[Request]:
        return evaluate.sample_requests(config, objects)

    # -- observing --------------------------------------------------------------------------

    def observe(self, config: Config, live: LiveObjects, facts: ClusterFacts) -> Observation:
        return observe_split(config, live, self.name)


def _instruction(route: HeaderRoute) -> str:
    return f"setHeaderRoute {route.name!r}"
