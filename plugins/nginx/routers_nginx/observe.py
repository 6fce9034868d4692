"""Reading back what the Ingresses express, with ingress-nginx's own parsing rules.

A missing canary Ingress means 100% stable. Values ingress-nginx would reset (a weight that is
not an integer, ``canary`` not a Go bool) are reported as problems, because the controller
then does something other than the annotation suggests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from routers.contract import Observation, ObservedWeights
from routers.errors import PlanError
from routers.planning.objects import LiveObjects, ObjectRef, get_annotations
from routers.planning.ownership import is_created_by_us
from routers_nginx import annotations as ann
from routers_nginx.config import Config, Pair
from routers_nginx.ingress import derive
from routers_nginx.planner import (
    LEDGER_ANNOTATIONS,
    LEDGER_HEADER_ROUTES,
    LEDGER_MIRROR_ROUTES,
    PLUGIN,
    canary_ledger,
    canary_ref,
    stable_ledger,
)

__all__ = ["observe"]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
# strconv.Atoi, which ingress-nginx parses weights with: no spaces, no trailing newline.
_INT = re.compile(r"[+-]?[0-9]+")


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and _INT.fullmatch(value) else None


def _canary(
    config: Config,
    pair: Pair,
    ref: ObjectRef,
    stable: Mapping[str, Any],
    canary: Mapping[str, Any],
) -> tuple[ObservedWeights | None, set[str], list[str]]:
    problems: list[str] = []
    where = str(ref)
    view = canary_ledger(config, ref, canary)
    annotations = get_annotations(canary)
    if not is_created_by_us(canary, PLUGIN):
        problems.append(f"{where} was not created by canary-routers")
    enabled = annotations.get(config.key(ann.CANARY))
    observed: ObservedWeights | None = None
    if enabled not in _TRUE:
        problems.append(
            f'{where} lacks {config.key(ann.CANARY)}: "true" (has {enabled!r}); ingress-nginx '
            "treats it as a normal Ingress, colliding with the stable one"
        )
    else:
        raw_weight = annotations.get(config.key(ann.CANARY_WEIGHT))
        weight = _int(raw_weight) if raw_weight is not None else 0
        raw_total = annotations.get(config.key(ann.CANARY_WEIGHT_TOTAL))
        total = _int(raw_total) if raw_total is not None else 100
        if weight is None:
            problems.append(f"{where}: canary-weight {raw_weight!r} is not an integer (read as 0)")
            weight = 0
        if total is None:
            problems.append(f"{where}: canary-weight-total {raw_total!r} is not an integer")
            total = 100
        total = max(total, 100)  # ingress-nginx uses a total only above 100
        canary_share = min(max(weight, 0), total)
        observed = ObservedWeights(where, total - canary_share, canary_share)
    try:
        spec = derive(config, pair, stable)
    except PlanError as exc:
        problems.append(str(exc))
    else:
        cur = canary.get("spec") if isinstance(canary.get("spec"), Mapping) else {}
        assert isinstance(cur, Mapping)
        if cur.get("rules") != spec.rules or cur.get("tls") != spec.tls:
            problems.append(f"{where}: rules or TLS differ from the stable Ingress (out of date)")
        if (
            cur.get("ingressClassName") != spec.class_name
            or annotations.get(ann.CLASS_ANNOTATION) != spec.class_annotation
        ):
            problems.append(
                f"{where}: ingress class differs from {pair.stable.name}'s; the controller "
                "serving the stable Ingress ignores it"
            )
    if view.shared:
        problems.append(f"{where} holds another owner's entries")
    owned = set(view.names(LEDGER_ANNOTATIONS))
    headers: set[str] = set()
    for name in view.names(LEDGER_HEADER_ROUTES):
        header = config.key(ann.CANARY_BY_HEADER)
        value_keys = [
            config.key(ann.CANARY_BY_HEADER_VALUE),
            config.key(ann.CANARY_BY_HEADER_PATTERN),
        ]
        if header in annotations and header in owned and any(k in annotations for k in value_keys):
            headers.add(name)
        else:
            problems.append(
                f"{where}: header route {name!r} is listed but its annotations are gone"
            )
    stray = sorted(
        k
        for k in annotations
        if k.startswith(config.prefix + "/")
        and k[len(config.prefix) + 1 :] in ann.ROUTING_KEYS
        and k not in owned
    )
    if stray:
        problems.append(
            f"{where}: {', '.join(stray)} not set by canary-routers; they send requests to "
            "the canary"
        )
    return observed, headers, problems


def _mirrors(
    config: Config, pair: Pair, stable: Mapping[str, Any]
) -> tuple[dict[str, float], list[str]]:
    annotations = get_annotations(stable)
    target = annotations.get(config.key(ann.MIRROR_TARGET)) or ""
    expected = f"://{config.canary}.{config.namespace}.svc."
    out: dict[str, float] = {}
    problems: list[str] = []
    for name in stable_ledger(config, pair, stable).names(LEDGER_MIRROR_ROUTES):
        if expected in target:
            out[name] = 100.0  # nginx mirrors whole locations, never a share
        else:
            problems.append(
                f"{pair.stable}: mirror route {name!r} is listed but mirror-target is "
                f"{target or 'missing'!r}"
            )
    return out, problems


def observe(config: Config, live: LiveObjects) -> Observation:
    weights: list[ObservedWeights] = []
    problems: list[str] = []
    header_sets: list[set[str]] = []
    mirror_maps: list[dict[str, float]] = []
    for pair in config.pairs:
        stable = live.get(pair.stable)
        if stable is None:
            problems.append(f"{pair.stable} does not exist")
            continue
        mirrors, more = _mirrors(config, pair, stable)
        mirror_maps.append(mirrors)
        problems.extend(more)
        ref = canary_ref(config, pair, live)
        canary = live.get(ref)
        if canary is None:
            weights.append(ObservedWeights(str(pair.stable), 100, 0))
            header_sets.append(set())
            continue
        observed, headers, more = _canary(config, pair, ref, stable, canary)
        if observed is not None:
            weights.append(observed)
        header_sets.append(headers)
        problems.extend(more)
    # A route counts only where every stable Ingress expresses it.
    headers = set.intersection(*header_sets) if header_sets else set()
    partial = sorted(set.union(set(), *header_sets) - headers)
    problems.extend(f"header route {n!r} is missing on some canary Ingresses" for n in partial)
    mirror_names = set.intersection(*(set(m) for m in mirror_maps)) if mirror_maps else set()
    partial = sorted(set.union(set(), *(set(m) for m in mirror_maps)) - mirror_names)
    problems.extend(f"mirror route {n!r} is missing on some stable Ingresses" for n in partial)
    return Observation(
        PLUGIN,
        weights=tuple(weights),
        header_routes=tuple(sorted(headers)),
        mirror_routes=dict.fromkeys(sorted(mirror_names), 100.0),
        problems=tuple(problems),
    )
