"""Orchestration shared by the offline CLI, the cluster layer and the library API.

bind sections to plugins -> check capabilities -> gather targets -> plan every plugin. All of it
happens before the first write, so an unsupported instruction or a missing object anywhere in a
multi-target config stops everything, not half of it. Reading is injected (``read``), which keeps
this module free of I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from routers.contract import (
    ClusterFacts,
    CrdFacts,
    MatchLimits,
    MirrorSupport,
    Observation,
    RouterPlugin,
)
from routers.errors import (
    ConfigError,
    PlanError,
    PluginError,
    Problem,
    TargetNotFoundError,
    UnsupportedError,
    WeightFitError,
    percent,
)
from routers.model import Cleanup, Desired, RequestMatch, RoutingConfig, Section, TrafficState
from routers.planning import weights
from routers.planning.objects import JSON, LiveObjects, ObjectRef, SelectorRef, resource_version
from routers.planning.offline import apply_plans
from routers.planning.patch import RV_GUARD
from routers.planning.plan import Create, Delete, Patch, Plan
from routers.registry import Registry, default_registry

__all__ = [
    "Binding",
    "OfflineResult",
    "VerifyReport",
    "bind",
    "check_capabilities",
    "crd_facts",
    "facts_from_manifests",
    "gather",
    "observe_all",
    "offline_lister",
    "offline_namespace",
    "plan_all",
    "plan_offline",
    "target_refs",
    "verify",
    "with_offline_namespace",
]

Reader = Callable[[ObjectRef], JSON | None]
Lister = Callable[[SelectorRef], Sequence[JSON]]
"""Every object a selector matches (offline: :meth:`LiveObjects.select` over the manifests; on
a cluster: one LIST request with a ``labelSelector``)."""


@dataclass(frozen=True)
class Binding:
    """One configured target: the plugin, its raw section and its validated config."""

    plugin: RouterPlugin
    section: Section
    config: Any

    @property
    def name(self) -> str:
        return self.plugin.name


def bind(config: RoutingConfig, registry: Registry | None = None) -> list[Binding]:
    """Resolve every section to its plugin and let the plugin validate it.

    All config problems of all sections are reported together, each under its section path.
    """
    registry = registry or default_registry()
    if not config.sections:
        raise ConfigError(
            [
                Problem(
                    "trafficRouting",
                    "no target configured (add istio, nginx, smi, traefik or plugins.<name>)",
                )
            ]
        )
    problems: list[Problem] = []
    bindings: list[Binding] = []
    for section in config.sections:
        if section.plugin not in registry.names():
            installed = ", ".join(registry.names()) or "none"
            problems.append(
                Problem(
                    section.path,
                    f"no installed plugin handles this section (installed plugins: {installed})",
                )
            )
            continue
        plugin = registry.load(section.plugin)  # PluginError propagates: broken, not misconfigured
        if not getattr(plugin, "services_optional", False):
            missing = _missing_services(config, section)
            if missing:
                problems.extend(p for p in missing if p not in problems)
                continue
        try:
            parsed = plugin.parse_config(section.body, config)
        except ConfigError as exc:
            problems.extend(exc.within(section.path).problems)
            continue
        bindings.append(Binding(plugin, section, parsed))
    if problems:
        raise ConfigError(problems)
    return bindings


def _missing_services(config: RoutingConfig, section: Section) -> list[Problem]:
    """Argo requires both Services for every traffic router but Istio's subset-level split; a
    plugin that can do without (``services_optional = True``) validates them itself."""
    return [
        Problem(
            path, f"required by the {section.path} target (the Service in front of the {role} pods)"
        )
        for path, role, value in (
            ("stableService", "stable", config.stable_service),
            ("canaryService", "canary", config.canary_service),
        )
        if value is None
    ]


# -- capabilities ---------------------------------------------------------------------------


def check_capabilities(binding: Binding, desired: Desired, facts: ClusterFacts) -> None:
    """Refuse, with a reason, anything the plugin declared it cannot express."""
    if isinstance(desired, Cleanup):
        return
    caps = binding.plugin.capabilities(binding.config, facts)
    name = binding.name

    def refuse(instruction: str, reason: str, hint: str | None = None) -> None:
        # The plugin's notes say *why* its capabilities are what they are (e.g. the detected
        # CRD version), which is the hint a user needs.
        raise UnsupportedError(
            name, instruction, reason, hint=hint or ("; ".join(caps.notes) or None)
        )

    if not caps.weight and desired.weight:
        refuse("setWeight", "this target does not split traffic by weight")
    if desired.additional_destinations and not caps.additional_destinations:
        refuse("setWeight", "additional (experiment) destinations are not supported")
    routes = len(desired.header_routes) + len(desired.mirror_routes)
    if caps.max_routes is not None and routes > caps.max_routes:
        refuse(
            "setHeaderRoute/setMirrorRoute",
            f"at most {caps.max_routes} managed route(s) can be active at once, {routes} requested",
        )
    for route in desired.header_routes:
        instruction = f"setHeaderRoute {route.name!r}"
        if not caps.header_routes:
            refuse(instruction, "header-based routing is not supported")
        _check_matches(caps.header_limits, route.matches, instruction, refuse)
    if (
        desired.header_routes
        and not caps.header_routes_with_weight
        and (desired.weight or any(d.weight for d in desired.additional_destinations))
    ):
        refuse(
            f"setHeaderRoute {desired.header_routes[0].name!r}",
            "header routes can only be combined with weight 0 here (requests no header route "
            "matches would not be split by weight)",
        )
    for mirror in desired.mirror_routes:
        instruction = f"setMirrorRoute {mirror.name!r}"
        if caps.mirror is MirrorSupport.NONE:
            refuse(instruction, "traffic mirroring is not supported")
        if (
            caps.mirror is MirrorSupport.FULL_ONLY
            and mirror.percentage != 100
            and not caps.mirror_round_up
        ):
            refuse(
                instruction, f"only 100% mirroring can be expressed, {mirror.percentage}% requested"
            )
        if caps.mirror is MirrorSupport.PERCENT and mirror.percentage != int(mirror.percentage):
            refuse(
                instruction,
                f"only whole percentages can be mirrored, {mirror.percentage}% requested",
            )
        _check_matches(caps.limits(mirror=True), mirror.matches, instruction, refuse)


def _check_matches(
    caps: MatchLimits,
    matches: Sequence[RequestMatch],
    instruction: str,
    refuse: Callable[[str, str], None],
) -> None:
    if caps.max_matches_per_route is not None and len(matches) > caps.max_matches_per_route:
        refuse(
            instruction,
            f"at most {caps.max_matches_per_route} match(es) per route, {len(matches)} given",
        )
    for i, match in enumerate(matches):
        where = f"matches[{i}]"
        if (
            caps.max_headers_per_match is not None
            and len(match.headers) > caps.max_headers_per_match
        ):
            refuse(
                instruction,
                f"{where}: at most {caps.max_headers_per_match} header condition(s) per match, "
                f"{len(match.headers)} given",
            )
        for h in match.headers:
            if h.kind not in caps.header_match:
                refuse(instruction, f"{where}: header {h.kind} matches are not supported")
            if h.name.lower() in caps.unmatchable_headers:
                refuse(
                    instruction,
                    f"{where}: header {h.name!r} cannot be matched here (the data plane ignores "
                    f"match conditions on {', '.join(sorted(caps.unmatchable_headers))}, so the "
                    "route would take every request)",
                )
        if match.path is not None and match.path.kind not in caps.path_match:
            refuse(instruction, f"{where}: path {match.path.kind} matches are not supported")
        if match.method is not None and not caps.method_match:
            refuse(instruction, f"{where}: method matches are not supported")
        for q in match.query_params:
            if q.kind not in caps.query_match:
                refuse(instruction, f"{where}: query parameter {q.kind} matches are not supported")


# -- reading --------------------------------------------------------------------------------


def gather(
    bindings: Sequence[Binding],
    read: Reader,
    known: Mapping[ObjectRef, JSON | None] | None = None,
    *,
    list_objects: Lister | None = None,
    max_rounds: int = 4,
) -> LiveObjects:
    """Read every target, following targets that only become known from other objects.

    ``known`` objects (an informer cache, our last write responses) are not read again; a
    ``None`` value says the object is known not to exist. Selector targets are listed with
    ``list_objects`` every time (``known`` cannot prove it holds every match; a lister backed by
    a watch cache that holds the whole kind can, and answers from memory).
    """
    live: dict[ObjectRef, JSON] = {r: o for r, o in (known or {}).items() if o is not None}
    absent: set[ObjectRef] = {r for r, o in (known or {}).items() if o is None}
    listed: set[SelectorRef] = set()
    for _ in range(max_rounds):
        wanted: list[ObjectRef] = []
        selectors: list[SelectorRef] = []
        view = LiveObjects(live.items(), absent, listed)
        for b in bindings:
            for ref in b.plugin.targets(b.config, view):
                if isinstance(ref, SelectorRef):
                    if ref not in listed and ref not in selectors:
                        selectors.append(ref)
                elif ref not in live and ref not in absent and ref not in wanted:
                    wanted.append(ref)
        if not wanted and not selectors:
            break
        for ref in wanted:
            obj = read(ref)
            if obj is None:
                absent.add(ref)
            else:
                live[ref] = obj
        for selector in selectors:
            if list_objects is None:
                raise PlanError(
                    f"cannot list {selector}: this caller reads objects by name only",
                )
            for obj in list_objects(selector):
                ref = ObjectRef.of(obj, selector.namespace)
                live[ref] = obj
                absent.discard(ref)
            listed.add(selector)
    return LiveObjects(live.items(), absent, listed)


def target_refs(binding: Binding, live: LiveObjects) -> list[ObjectRef]:
    """The objects a binding routes through, its selector targets expanded to what they match."""
    out: list[ObjectRef] = []
    for ref in binding.plugin.targets(binding.config, live):
        found = [r for r, _ in live.selected(ref) or ()] if isinstance(ref, SelectorRef) else [ref]
        out.extend(r for r in found if r not in out)
    return out


# -- planning -------------------------------------------------------------------------------


def plan_all(
    bindings: Sequence[Binding],
    live: LiveObjects,
    desired: Desired,
    facts: ClusterFacts,
    routing: RoutingConfig | None = None,
) -> list[Plan]:
    """Check every plugin, then plan every plugin; raise before returning anything partial."""
    if routing is not None and isinstance(desired, TrafficState):
        routing.check_state(desired)
    for b in bindings:
        check_capabilities(b, desired, facts)
    plans = []
    for b in bindings:
        try:
            plans.append(b.plugin.plan(b.config, live, desired, facts))
        except ConfigError as exc:  # config problems found while planning: root them too
            raise exc.within(b.section.path) from None
    for b, plan in zip(bindings, plans, strict=True):
        _check_plan(b.name, plan, live)
    touched: dict[ObjectRef, str] = {}
    for plan in plans:
        for op in plan:
            other = touched.setdefault(op.ref, plan.plugin)
            if other != plan.plugin:
                raise PluginError(
                    plan.plugin, f"plans to change {op.ref}, which plugin {other!r} also changes"
                )
    return plans


def _check_plan(name: str, plan: Plan, live: LiveObjects) -> None:
    """Hold plugins to the contract: only read objects are patched, and every patch is guarded."""
    if plan.plugin != name:
        raise PluginError(name, f"returned a plan labelled {plan.plugin!r}")
    for op in plan:
        current = live.get(op.ref)
        if isinstance(op, Create) and current is not None:
            raise PluginError(name, f"plans to create {op.ref}, which exists")
        if isinstance(op, (Patch, Delete)) and current is None:
            raise PluginError(name, f"plans to {op.verb} {op.ref}, which it did not read")
        if isinstance(op, Patch):
            rv = resource_version(current or {})
            first = op.ops[0] if op.ops else None
            if rv and first != {"op": "test", "path": RV_GUARD, "value": rv}:
                raise PluginError(name, f"patch of {op.ref} lacks the resourceVersion guard")


# -- observing and verifying ----------------------------------------------------------------


def observe_all(
    bindings: Sequence[Binding], live: LiveObjects, facts: ClusterFacts
) -> list[Observation]:
    return [b.plugin.observe(b.config, live, facts) for b in bindings]


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    mismatches: tuple[str, ...] = ()
    observations: tuple[Observation, ...] = field(default=())


def verify(
    bindings: Sequence[Binding],
    observations: Sequence[Observation],
    desired: TrafficState,
    facts: ClusterFacts,
    *,
    require_ready: bool = False,
    routing: RoutingConfig | None = None,
) -> VerifyReport:
    """Compare what the objects express with the desired state, within each target's precision.

    Weights are checked as shares of *all* traffic at each location, with destinations we do
    not own keeping the share they have there (``weights.target_shares``, the rule plugins
    plan by; ``routing`` gives its ``weightScope``).
    """
    out: list[str] = []
    wanted = weights.split(desired)
    scope = routing.weight_scope if routing is not None else "all"
    for b, obs in zip(bindings, observations, strict=True):
        caps = b.plugin.capabilities(b.config, facts)
        # A fixed-total target expresses w/T exactly only when its total is a multiple of T.
        if caps.max_total is not None and (
            wanted.total > caps.max_total or caps.max_total % wanted.total
        ):
            tolerance = Fraction(1, caps.max_total)
        else:
            tolerance = Fraction(0)
        if not obs.weights and caps.weight:
            out.append(f"{b.name}: no weighted route found")
        for w in obs.weights:
            try:
                want = weights.target_shares(wanted, w.foreign_share, scope).by_name()
            except WeightFitError as exc:
                out.append(f"{b.name}: {w.location}: {exc}")
                continue
            # A location may carry foreign weight or a total the target chose: its largest-
            # remainder rounding error is below one unit of its own total.
            tol = tolerance
            if w.total and (w.total % wanted.total or w.foreign):
                tol = max(tol, Fraction(1, w.total))
            if not weights.shares_close(w.shares(), want, tol):
                out.append(
                    f"{b.name}: {w.location}: canary {w.canary}/{w.total} "
                    f"({percent(Fraction(w.canary, w.total or 1))} of all traffic), want "
                    f"{percent(want['canary'])}"
                    + (f" beside {percent(w.foreign_share)} kept by others" if w.foreign else "")
                )
        want_headers = {r.name for r in desired.header_routes}
        if set(obs.header_routes) != want_headers:
            out.append(
                f"{b.name}: header routes {sorted(obs.header_routes)}, want {sorted(want_headers)}"
            )
        want_mirrors = {r.name: r.percentage for r in desired.mirror_routes}
        if set(obs.mirror_routes) != set(want_mirrors):
            out.append(
                f"{b.name}: mirror routes {sorted(obs.mirror_routes)}, want {sorted(want_mirrors)}"
            )
        else:
            for name, pct in want_mirrors.items():
                got = obs.mirror_routes[name]
                if caps.mirror_round_up and got == 100.0:
                    continue  # rounded up to 100% by the user's explicit choice
                if abs(got - pct) > 1e-9:
                    out.append(
                        f"{b.name}: mirror {name!r} at {obs.mirror_routes[name]}%, want {pct}%"
                    )
        out.extend(f"{b.name}: {p}" for p in obs.problems)
        if require_ready and obs.ready is False:
            out.append(f"{b.name}: not ready")
    return VerifyReport(not out, tuple(out), tuple(observations))


# -- offline --------------------------------------------------------------------------------


def crd_facts(doc: Mapping[str, Any]) -> tuple[str, CrdFacts]:
    """Facts of one CRD object (from a manifest file or the API server): its group and facts."""
    spec = doc.get("spec") or {}
    meta = doc.get("metadata") or {}
    ann = meta.get("annotations") or {}
    versions = spec.get("versions") or []
    served = [v["name"] for v in versions if v.get("served")]
    storage = [v["name"] for v in versions if v.get("storage") and v.get("served")]
    ordered = tuple(storage) + tuple(v for v in served if v not in storage)
    name = str(meta.get("name", ""))
    facts = CrdFacts(
        name=name,
        served_versions=ordered,
        bundle_version=ann.get("gateway.networking.k8s.io/bundle-version"),
        channel=ann.get("gateway.networking.k8s.io/channel"),
        schemas={
            v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {}
            for v in versions
            if v.get("served")
        },
    )
    return str(spec.get("group") or ""), facts


def facts_from_manifests(docs: Iterable[JSON], base: ClusterFacts | None = None) -> ClusterFacts:
    """Offline facts: CRD manifests among the inputs tell versions, bundle version and channel."""
    served = dict(base.served) if base else {}
    crds = dict(base.crds) if base else {}
    for doc in docs:
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        group, facts = crd_facts(doc)
        crds[facts.name] = facts
        if group:
            merged = list(served.get(group, ()))
            merged.extend(v for v in facts.served_versions if v not in merged)
            served[group] = tuple(merged)
    return ClusterFacts(served=served, crds=crds, source=base.source if base else "offline")


@dataclass(frozen=True)
class OfflineResult:
    plans: tuple[Plan, ...]
    before: LiveObjects
    after: Mapping[ObjectRef, JSON | None]
    namespace: str = "default"
    """The namespace objects without one were looked up in."""
    namespace_from: str = "default"
    """Where it came from: ``config``, the manifests, or ``default``."""

    @property
    def changed(self) -> list[ObjectRef]:
        touched = {op.ref for plan in self.plans for op in plan}
        return sorted(touched)

    def objects_of(self, binding: Binding) -> LiveObjects:
        """What one plugin reads or changes, as it is after the plan (for its evaluator)."""
        refs = set(target_refs(binding, self.before))
        refs |= {op.ref for plan in self.plans if plan.plugin == binding.name for op in plan}
        return LiveObjects(
            ((r, o) for r, o in self.after.items() if r in refs and o is not None),
            listed=self.before.listed,
        )


def offline_lister(pool: LiveObjects) -> Lister:
    """Selector targets answered from manifest objects: the ones whose labels match."""
    return lambda selector: [obj for _, obj in pool.select(selector)]


def offline_namespace(
    config: RoutingConfig, manifests: Sequence[JSON], registry: Registry | None = None
) -> tuple[str, str]:
    """The namespace for objects whose config names none, offline, and where it came from.

    In order: the config (``namespace``, or the Rollout's); the namespace every manifest object
    the targets name (same kind and name) lives in; the namespace every namespaced manifest
    object lives in; else ``default`` (and an object found elsewhere is named in the error).
    """
    if config.namespace:
        return config.namespace, "config"
    objects = [d for d in manifests if d.get("kind") != "CustomResourceDefinition"]
    wanted = {(r.group, r.kind, r.name) for r in _first_targets(config, registry)}
    found: set[str] = set()
    every: set[str] = set()
    for d in objects:
        ref = ObjectRef.of(d)
        if ref.namespace:
            every.add(ref.namespace)
            if (ref.group, ref.kind, ref.name) in wanted:
                found.add(ref.namespace)
    if len(found) == 1:
        return found.pop(), "the target objects in the manifests"
    if not found and len(every) == 1:
        return every.pop(), "the manifests (all their objects share it)"
    return "default", "default"


def with_offline_namespace(
    config: RoutingConfig, manifests: Sequence[JSON], registry: Registry | None = None
) -> tuple[RoutingConfig, str, str]:
    """``config`` with the namespace :func:`offline_namespace` found, the namespace, its origin."""
    namespace, origin = offline_namespace(config, manifests, registry)
    if config.namespace is None and origin != "default":
        config = config.model_copy(update={"namespace": namespace})
    return config, namespace, origin


def _first_targets(config: RoutingConfig, registry: Registry | None) -> list[ObjectRef]:
    """What the plugins ask to read first (names and kinds; namespaces are still defaults)."""
    try:
        bindings = bind(config, registry)
    except ConfigError:
        return []  # the real bind below reports it
    return [
        r
        for b in bindings
        for r in b.plugin.targets(b.config, LiveObjects())
        if isinstance(r, ObjectRef)
    ]


def _found_elsewhere(absent: Iterable[ObjectRef], pool: LiveObjects) -> str:
    """Where the manifests hold objects that were looked for in another namespace."""
    hints: list[str] = []
    for ref in sorted(absent):
        spots = sorted(
            other
            for other in pool
            if other.namespace != ref.namespace
            and (other.group, other.kind, other.name) == (ref.group, ref.kind, ref.name)
        )
        if not spots:
            continue
        namespaces = sorted({str(s.namespace) for s in spots})
        fix = (
            f"pass -n {namespaces[0]} (--namespace) or set namespace: {namespaces[0]} in the config"
            if len(namespaces) == 1
            else f"pass -n with one of {', '.join(namespaces)} (--namespace)"
        )
        hints.append(
            f"{ref} was looked for in namespace {ref.namespace}, but the manifests hold "
            f"{', '.join(map(str, spots))}: {fix}"
        )
    return "; ".join(hints)


def plan_offline(
    config: RoutingConfig,
    desired: Desired,
    manifests: Sequence[JSON],
    *,
    registry: Registry | None = None,
    facts: ClusterFacts | None = None,
) -> OfflineResult:
    """The offline main job: plan against manifest files and apply the plan in memory.

    Without a namespace in the config, the manifests supply it (:func:`offline_namespace`).
    """
    config, namespace, origin = with_offline_namespace(config, manifests, registry)
    objects = [d for d in manifests if d.get("kind") != "CustomResourceDefinition"]
    pool = LiveObjects.from_manifests(objects, namespace)
    bindings = bind(config, registry)
    live = gather(bindings, pool.get, list_objects=offline_lister(pool))
    facts = facts_from_manifests(manifests, facts)
    try:
        plans = plan_all(bindings, live, desired, facts, routing=config)
    except TargetNotFoundError as exc:
        hint = _found_elsewhere(live.absent, pool)
        if not hint:
            raise
        raise type(exc)(f"{exc.message} ({hint})", plugin=exc.plugin, obj=exc.obj) from None
    return OfflineResult(
        tuple(plans), live, apply_plans(plans, live), namespace=namespace, namespace_from=origin
    )
