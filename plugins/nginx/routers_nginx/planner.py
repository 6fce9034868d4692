"""Planning: one canary Ingress per stable Ingress, mirror annotations on the stable one.

The canary Ingress is ours (created with owner markers, then only patched; cleanup deletes it,
guarded by uid). The stable Ingress is the user's: we touch only ``mirror-target`` and
``mirror-host`` and list them in the ledger. On both objects the ledger names the annotation
keys we own, so a key we stop wanting is removed and every other key survives (Argo #1070:
Argo either removed foreign annotations or, after its fix, never removed its own).

Several apps may share one stable Ingress, each on its own paths: each owner's canary Ingress
copies only its stable Service's paths, and the stable Ingress's ledger records, per owner, its
canary Ingress and stable Service. ingress-nginx merges at most one canary per host and path,
so a second owner with the same stable Service, or the same canary Ingress name (no Rollout
named in either config), is refused (OwnershipConflictError).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routers.errors import (
    LEGACY_HOLDER,
    OwnershipConflictError,
    PlanError,
    TargetNotFoundError,
    UnsupportedError,
)
from routers.model import Cleanup, Desired, MirrorRoute, TrafficState
from routers.planning import weights
from routers.planning.objects import (
    JSON,
    LiveObjects,
    ObjectRef,
    get_annotations,
    resource_version,
    uid,
)
from routers.planning.ownership import (
    OWNER,
    OwnerLedger,
    empty_ledger,
    is_created_by_us,
    owner_metadata,
    read_ledger,
)
from routers.planning.patch import PatchBuilder, json_equal, pointer
from routers.planning.plan import Create, Delete, Note, Operation, Plan
from routers_nginx import annotations as ann
from routers_nginx.config import GROUP, PLUGIN, VERSION, Config, Pair
from routers_nginx.ingress import CanarySpec, derive, mirror_host, mirror_target

__all__ = [
    "LEDGER_ANNOTATIONS",
    "LEDGER_HEADER_ROUTES",
    "LEDGER_MIRROR_ROUTES",
    "PLUGIN",
    "canary_ledger",
    "canary_ref",
    "express_weight",
    "plan",
    "stable_ledger",
]

LEDGER_ANNOTATIONS = "annotations"
LEDGER_HEADER_ROUTES = "headerRoutes"
LEDGER_MIRROR_ROUTES = "mirrorRoutes"
LEDGER_CANARY_INGRESS = "canaryIngress"
LEDGER_SERVICE = "service"
_MIRROR_NAMES = (ann.MIRROR_TARGET, ann.MIRROR_HOST)


def stable_ledger(config: Config, pair: Pair, stable: Mapping[str, Any]) -> OwnerLedger:
    """The stable Ingress's ledger as this owner sees it. Ownerless mirror entries are this
    owner's when ``mirror-target`` points at its canary Service, or is gone (stale entries
    nobody else can claim; only mirror keys are ever removed through them)."""
    target = get_annotations(stable).get(config.key(ann.MIRROR_TARGET))
    mine = target is None or f"://{config.canary}.{config.namespace}.svc." in target
    return read_ledger(
        stable,
        config.owner,
        lambda key, _: mine and key in (LEDGER_ANNOTATIONS, LEDGER_MIRROR_ROUTES),
        what=str(pair.stable),
    )


def _routes_to(ingress: Mapping[str, Any], service: str) -> bool:
    spec = ingress.get("spec")
    rules = spec.get("rules") if isinstance(spec, Mapping) else None
    for rule in rules if isinstance(rules, list) else []:
        http = rule.get("http") if isinstance(rule, Mapping) else None
        for path in (http.get("paths") if isinstance(http, Mapping) else None) or []:
            backend = path.get("backend") if isinstance(path, Mapping) else None
            svc = backend.get("service") if isinstance(backend, Mapping) else None
            if isinstance(svc, Mapping) and svc.get("name") == service:
                return True
    return False


def canary_ledger(config: Config, ref: ObjectRef, canary: Mapping[str, Any]) -> OwnerLedger:
    """A canary Ingress's ledger as this owner sees it; an ownerless one (written by an older
    canary-routers) is this owner's when it routes to its canary Service."""
    mine = _routes_to(canary, config.canary)
    return read_ledger(canary, config.owner, lambda _k, _n: mine, what=str(ref))


def canary_ref(config: Config, pair: Pair, live: LiveObjects) -> ObjectRef:
    """This owner's canary Ingress for ``pair``: its own name, or the ``<stable>-canary`` an
    older canary-routers created for it (kept, so a renamed one never doubles it)."""
    if pair.legacy is None:
        return pair.canary
    legacy = live.get(pair.legacy)
    if legacy is None or not is_created_by_us(legacy, PLUGIN):
        return pair.canary
    view = canary_ledger(config, pair.legacy, legacy)
    return pair.legacy if view.mine and not view.shared else pair.canary


def _holder(view: OwnerLedger) -> str:
    return sorted(view.others)[0] if view.others else LEGACY_HOLDER


def _paths(ingress: Mapping[str, Any]) -> set[tuple[Any, Any, Any]]:
    spec = ingress.get("spec")
    rules = spec.get("rules") if isinstance(spec, Mapping) else None
    out: set[tuple[Any, Any, Any]] = set()
    for rule in rules if isinstance(rules, list) else []:
        http = rule.get("http") if isinstance(rule, Mapping) else None
        for path in (http.get("paths") if isinstance(http, Mapping) else None) or []:
            if isinstance(path, Mapping):
                out.add((rule.get("host"), path.get("path"), path.get("pathType")))
    return out


def express_weight(config: Config, state: TrafficState) -> tuple[int, int, Note | None]:
    """``(canary-weight, total)`` exactly as ingress-nginx will read them.

    ingress-nginx reads ``canary-weight-total`` only above 100 (below, it uses 100), so a
    smaller total is multiplied up to the first multiple >= 100: 20 -> 100, 30 -> 120. That is
    exact for every total; only ``weightTotalAnnotation: false`` (controllers before v1.1.1)
    rounds to 100ths, and says so.
    """
    wanted = weights.split(state)
    if not config.section.weight_total_annotation:
        got = wanted.scaled(100)
        note = Note(PLUGIN, got.describe_rounding(wanted), "warning") if got.rounded else None
        return got.canary, 100, note
    if wanted.total >= 100:
        return wanted.canary, wanted.total, None
    got = wanted.scaled(wanted.total * -(-100 // wanted.total))
    return got.canary, got.total, None


def _routes(config: Config, state: TrafficState) -> tuple[ann.HeaderCondition | None, str | None]:
    if len(state.header_routes) > 1:
        names = ", ".join(repr(r.name) for r in state.header_routes)
        raise UnsupportedError(
            PLUGIN,
            f"setHeaderRoute {state.header_routes[1].name!r}",
            f"a canary Ingress has one canary-by-header condition; {len(state.header_routes)} "
            f"header routes requested ({names})",
            hint="merge them into one route (one header, a regex for alternatives) or use "
            "canaryByCookie for a second opt-in",
        )
    if len(state.mirror_routes) > 1:
        raise UnsupportedError(
            PLUGIN,
            f"setMirrorRoute {state.mirror_routes[1].name!r}",
            f"an Ingress has one mirror-target; {len(state.mirror_routes)} mirror routes requested",
        )
    if state.header_routes and state.mirror_routes:
        raise UnsupportedError(
            PLUGIN,
            f"setMirrorRoute {state.mirror_routes[0].name!r}",
            f"header route {state.header_routes[0].name!r} is active: ingress-nginx mirrors every "
            "request of the Ingress, so requests the header route sends to the canary would "
            "reach it twice (and a route order cannot change that)",
            hint="use the header route and the mirror route in different steps, or the "
            "gatewayapi or istio plugin",
        )
    header = None
    if state.header_routes:
        route = state.header_routes[0]
        static = config.key(ann.CANARY_BY_HEADER)
        if static in config.static:
            raise UnsupportedError(
                PLUGIN,
                f"setHeaderRoute {route.name!r}",
                f"{static} is already set statically by the config "
                "(additionalIngressAnnotations/canaryIngressAnnotations) and a canary Ingress "
                "has one header condition",
                hint="remove the static canary-by-header annotations to use header routes",
            )
        header = ann.header_condition(
            PLUGIN, route, allow_underscore=config.section.allow_underscore_headers
        )
    return header, (state.header_routes[0].name if state.header_routes else None)


def _canary_annotations(
    config: Config,
    spec: CanarySpec,
    weight: int,
    total: int,
    header: ann.HeaderCondition | None,
) -> dict[str, str]:
    out = dict(config.static)
    if spec.class_annotation is not None:
        out[ann.CLASS_ANNOTATION] = spec.class_annotation
    out[config.key(ann.CANARY)] = "true"
    out[config.key(ann.CANARY_WEIGHT)] = str(weight)
    if total > 100:
        out[config.key(ann.CANARY_WEIGHT_TOTAL)] = str(total)
    if header is not None:
        out.update({config.key(k): v for k, v in header.annotations().items()})
    if config.section.canary_by_cookie is not None:
        out[config.key(ann.CANARY_BY_COOKIE)] = config.section.canary_by_cookie
    return out


def _checked(config: Config, ref: ObjectRef, wanted: Mapping[str, str]) -> Mapping[str, str]:
    """The last gate before an annotation is written: the same value check for every value,
    whether it came from the state, the config or a live object (the copied class)."""
    for key, value in sorted(wanted.items()):
        problem = ann.value_problem(
            key,
            value,
            config.prefix,
            blocklist=config.section.annotation_value_word_blocklist,
            unsafe=key in config.unsafe,
        )
        if problem is not None:
            raise PlanError(
                f"refusing to write annotation {key}: {problem}", plugin=PLUGIN, obj=str(ref)
            )
    return wanted


def _edit_canary(
    builder: PatchBuilder,
    view: OwnerLedger,
    spec: CanarySpec,
    wanted: Mapping[str, str],
    header_route: str | None,
) -> None:
    """Bring a canary Ingress (new or live) to the desired state; same code for both paths,
    so what we create is exactly what a second plan finds."""
    owned = set(view.names(LEDGER_ANNOTATIONS))
    for key in sorted(wanted):
        builder.set(pointer("metadata", "annotations", key), wanted[key])
    for key in sorted(owned - set(wanted)):
        builder.remove(pointer("metadata", "annotations", key))
    view.write(
        builder,
        {
            LEDGER_ANNOTATIONS: list(wanted),
            LEDGER_HEADER_ROUTES: [header_route] if header_route else [],
        },
    )
    _sync(builder, "/spec/ingressClassName", spec.class_name)
    _sync(builder, "/spec/tls", spec.tls)
    _sync(builder, "/spec/rules", spec.rules)


def _sync(builder: PatchBuilder, path: str, value: Any) -> None:
    """Spec fields derived from the stable Ingress; guarded by a test of what we replace."""
    if value is None:
        builder.remove(path)
        return
    if builder.exists(path):
        if json_equal(builder.get(path), value):
            return
        builder.test(path)
    builder.set(path, value)


def _foreign_canary_notes(
    config: Config,
    ref: ObjectRef,
    view: OwnerLedger,
    canary: Mapping[str, Any],
    wanted: Mapping[str, str],
) -> list[Note]:
    owned = set(view.names(LEDGER_ANNOTATIONS))
    stray = sorted(
        k
        for k in get_annotations(canary)
        if k.startswith(config.prefix + "/")
        and k[len(config.prefix) + 1 :] in ann.CANARY_KEYS
        and k not in owned
        and k not in wanted
    )
    if not stray:
        return []
    return [
        Note(
            PLUGIN,
            f"{ref}: {', '.join(stray)} were not set by canary-routers and are left in place; they "
            "change which requests reach the canary",
            "warning",
        )
    ]


def _plan_canary(
    config: Config,
    pair: Pair,
    ref: ObjectRef,
    live: LiveObjects,
    spec: CanarySpec,
    wanted: dict[str, str],
    header_route: str | None,
) -> tuple[Operation | None, list[Note]]:
    _checked(config, ref, wanted)
    current = live.get(ref)
    if current is None:
        skeleton: JSON = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Ingress",
            "metadata": {
                "name": ref.name,
                "namespace": ref.namespace,
                **owner_metadata(PLUGIN),
            },
            "spec": {},
        }
        builder = PatchBuilder(skeleton, guard_resource_version=False)
        _edit_canary(builder, empty_ledger(config.owner), spec, wanted, header_route)
        reason = f"create the canary Ingress for {pair.stable.name}"
        return Create(ref, builder.doc, reason), []
    if not is_created_by_us(current, PLUGIN):
        owner = get_annotations(current).get(OWNER)
        raise PlanError(
            "exists but was not created by canary-routers"
            + (f" (owner annotation says {owner!r})" if owner else "")
            + "; refusing to take over another controller's canary Ingress (delete it, or "
            "rename the stable Ingress)",
            plugin=PLUGIN,
            obj=str(ref),
        )
    view = canary_ledger(config, ref, current)
    if view.shared:
        raise _canary_conflict(config, pair, ref, view)
    builder = PatchBuilder(current)
    _edit_canary(builder, view, spec, wanted, header_route)
    notes = _foreign_canary_notes(config, ref, view, current, wanted)
    return builder.patch(ref, f"canary weight, routes and paths of {pair.stable.name}"), notes


def _canary_conflict(
    config: Config, pair: Pair, ref: ObjectRef, view: OwnerLedger
) -> OwnershipConflictError:
    return OwnershipConflictError(
        f"canary Ingress {ref.name}",
        owner=config.owner,
        holder=_holder(view),
        plugin=PLUGIN,
        obj=str(pair.stable),
        hint=_name_hint(config, pair),
    )


def _name_hint(config: Config, pair: Pair) -> str:
    if config.rollout is None:
        return (
            "name each app's Rollout in its config (rollout: {name: ...}) so each gets its own "
            f"canary Ingress <rollout>-{pair.stable.name}-canary"
        )
    return "ingress-nginx merges one canary per host and path"


def _edit_stable(
    config: Config,
    pair: Pair,
    stable: Mapping[str, Any],
    wanted: Mapping[str, str],
    mirror_route: str | None,
    canary: ObjectRef | None,
) -> PatchBuilder:
    """Mirror annotations, and this owner's claim on the stable Ingress: its canary Ingress and
    stable Service (``canary=None``: cleanup, the claim goes)."""
    _checked(config, pair.stable, wanted)
    builder = PatchBuilder(stable)
    view = stable_ledger(config, pair, stable)
    claims: list[tuple[str, list[str], str, str]] = [
        (LEDGER_ANNOTATIONS, sorted(wanted), "annotation {}", "an Ingress has one mirror target")
    ]
    if canary is not None:
        claims += [
            (
                LEDGER_SERVICE,
                [config.stable],
                "the paths of stable Service {!r}",
                "ingress-nginx merges one canary per host and path: two canary Ingresses for "
                "one Service's paths cannot both apply",
            ),
            (LEDGER_CANARY_INGRESS, [canary.name], "canary Ingress {}", _name_hint(config, pair)),
        ]
    for key, names, what, hint in claims:
        view.claim(key, names, what=what.format, plugin=PLUGIN, obj=str(pair.stable), hint=hint)
    # Only keys we could have written: a hand-edited ledger never makes us delete foreign ones.
    owned = {k for k in view.names(LEDGER_ANNOTATIONS) if k.rpartition("/")[2] in _MIRROR_NAMES}
    current = get_annotations(stable)
    for key in sorted(wanted):
        if key in current and key not in owned:
            raise PlanError(
                f"already carries {key}: {current[key]!r}, not set by canary-routers; an "
                "Ingress has one mirror target, so the mirror route cannot be added",
                plugin=PLUGIN,
                obj=str(pair.stable),
            )
        builder.set(pointer("metadata", "annotations", key), wanted[key])
    for key in sorted(owned - set(wanted)):
        builder.remove(pointer("metadata", "annotations", key))
    view.write(
        builder,
        {
            LEDGER_ANNOTATIONS: list(wanted),
            LEDGER_MIRROR_ROUTES: [mirror_route] if mirror_route else [],
            LEDGER_CANARY_INGRESS: [canary.name] if canary is not None else [],
            LEDGER_SERVICE: [config.stable] if canary is not None else [],
        },
    )
    return builder


def _plan_state(config: Config, live: LiveObjects, state: TrafficState) -> Plan:
    header, header_route = _routes(config, state)
    weight, total, weight_note = express_weight(config, state)
    notes: list[Note] = [weight_note] if weight_note else []
    notes.extend(
        Note(
            PLUGIN,
            f"{key} is passed to the canary Ingress verbatim (allowUnsafeAnnotations): it is not "
            "checked against ingress-nginx's risk levels or safe value characters",
            "warning",
        )
        for key in sorted(config.unsafe)
    )
    mirror: MirrorRoute | None = state.mirror_routes[0] if state.mirror_routes else None
    if mirror is not None and mirror.percentage != 100:
        if not config.section.allow_mirror_round_up:
            raise UnsupportedError(
                PLUGIN,
                f"setMirrorRoute {mirror.name!r}",
                f"ingress-nginx mirrors 100% of requests or none; {mirror.percentage:g}% requested",
                hint="set allowMirrorRoundUp: true to mirror 100% instead",
            )
        notes.append(
            Note(
                PLUGIN,
                f"mirror route {mirror.name!r}: {mirror.percentage:g}% requested, ingress-nginx "
                "mirrors 100% (allowMirrorRoundUp)",
                "warning",
            )
        )
    # Everything is checked for every stable Ingress before any operation is returned.
    prepared = []
    for pair in config.pairs:
        stable = live.get(pair.stable)
        if stable is None:
            raise TargetNotFoundError(
                f"the stable Ingress configured at {pair.path} does not exist",
                plugin=PLUGIN,
                obj=str(pair.stable),
            )
        spec = derive(config, pair, stable)
        mirror_wanted: dict[str, str] = {}
        if mirror is not None:
            mirror_wanted = {
                config.key(ann.MIRROR_TARGET): mirror_target(config, pair, stable, live, mirror),
                config.key(ann.MIRROR_HOST): mirror_host(config),
            }
        ref = canary_ref(config, pair, live)
        _check_legacy_overlap(config, pair, ref, live, spec)
        prepared.append((pair, ref, stable, spec, mirror_wanted))
    # The claim on the stable Ingress goes first and is released last (cleanup): a canary
    # Ingress never serves traffic while unclaimed, even if a write in between fails.
    ops: list[Operation | None] = []
    for pair, ref, stable, spec, mirror_wanted in prepared:
        wanted = _canary_annotations(config, spec, weight, total, header)
        builder = _edit_stable(
            config, pair, stable, mirror_wanted, mirror.name if mirror else None, ref
        )
        ops.append(builder.patch(pair.stable, "claim of the canary Ingress; mirror annotations"))
        op, more = _plan_canary(config, pair, ref, live, spec, wanted, header_route)
        ops.append(op)
        notes.extend(more)
    return Plan.of(PLUGIN, ops, notes)


def _check_legacy_overlap(
    config: Config, pair: Pair, ref: ObjectRef, live: LiveObjects, spec: CanarySpec
) -> None:
    """A ``<stable>-canary`` of another owner, written before per-owner ledgers (so not yet
    claimed on the stable Ingress), must not cover the paths this owner's canary would."""
    if pair.legacy is None or ref == pair.legacy:
        return
    legacy = live.get(pair.legacy)
    if legacy is None or not is_created_by_us(legacy, PLUGIN):
        return
    mine = {
        (r.get("host"), p.get("path"), p.get("pathType"))
        for r in spec.rules
        for p in r["http"]["paths"]
    }
    if mine & _paths(legacy):
        raise _canary_conflict(
            config, pair, pair.legacy, canary_ledger(config, pair.legacy, legacy)
        )


def _plan_cleanup(config: Config, live: LiveObjects) -> Plan:
    """Delete the canary Ingresses we created (uid-guarded, Argo #4751 left them frozen) and
    take our mirror annotations off the stable Ingresses. Deleting the canary Ingress is the
    only way back to 100% stable, so ``restoreStable: false`` deletes it too."""
    ops: list[Operation | None] = []
    notes: list[Note] = []
    for pair in config.pairs:
        stable = live.get(pair.stable)
        ref = canary_ref(config, pair, live)
        canary = live.get(ref)
        release = (
            _edit_stable(config, pair, stable, {}, None, None).patch(
                pair.stable, "cleanup: remove our claim and mirror annotations"
            )
            if stable is not None
            else None
        )
        if canary is None:
            ops.append(release)
            continue
        view = canary_ledger(config, ref, canary) if is_created_by_us(canary, PLUGIN) else None
        if view is not None and not view.shared:
            ops.append(
                Delete(
                    ref,
                    uid(canary),
                    resource_version(canary),
                    "cleanup: delete the canary Ingress we created",
                )
            )
        elif view is not None:
            notes.append(
                Note(PLUGIN, f"{ref} belongs to owner {_holder(view)!r} and is left in place")
            )
        else:
            notes.append(
                Note(
                    PLUGIN,
                    f"{ref} was not created by canary-routers and is left in place",
                    "warning",
                )
            )
        ops.append(release)
    return Plan.of(PLUGIN, ops, notes)


def plan(config: Config, live: LiveObjects, desired: Desired) -> Plan:
    if isinstance(desired, Cleanup):
        return _plan_cleanup(config, live)
    return _plan_state(config, live, desired)
