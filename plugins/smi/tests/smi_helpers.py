"""Builders shared by the smi unit tests: configs, TrafficSplits, HTTPRouteGroups, facts, and
plans applied in memory (guards included)."""

from __future__ import annotations

import copy
import json
from typing import Any

from routers_smi import Plugin
from routers_smi.config import Config

from routers.contract import ClusterFacts
from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.planning.objects import JSON, LiveObjects, ObjectRef
from routers.planning.offline import apply_plans
from routers.planning.ownership import LEDGER, SPLIT, owner_metadata, read_ledger
from routers.planning.plan import Create, Delete, Patch, Plan

PLUGIN = Plugin()
NS = "shop"
STABLE, CANARY = "web-stable", "web-canary"
NO_FACTS = ClusterFacts()
OWNER = f"{NS}/{CANARY}"
"""The owner key of ``routing()`` (no Rollout, no explicit owner: the canary Service)."""
HEADER = {"name": "canary-header", "matches": [{"headers": [{"name": "X-Canary", "exact": "on"}]}]}


def routing(smi: dict[str, Any] | None = None, **extra: Any) -> RoutingConfig:
    doc = {"stableService": STABLE, "canaryService": CANARY, "namespace": NS, **extra}
    doc["smi"] = {"trafficSplitName": "web", **(smi or {})}
    return RoutingConfig.from_document(doc)


def config(**smi: Any) -> Config:
    r = routing(smi)
    section = r.section("smi")
    assert section is not None
    return PLUGIN.parse_config(section.body, r)


def facts(
    split: tuple[str, ...] | None = None,
    specs: tuple[str, ...] | None = None,
    source: str = "cluster",
) -> ClusterFacts:
    served = {}
    if split is not None:
        served["split.smi-spec.io"] = split
    if specs is not None:
        served["specs.smi-spec.io"] = specs
    return ClusterFacts(served=served, source=source)  # type: ignore[arg-type]


SDK = facts(("v1alpha4",), ("v1alpha4",))
LINKERD = facts(("v1alpha2", "v1alpha1"))


def ledger_of(obj: JSON) -> dict[str, Any]:
    """The test owner's ledger entries, its split claim left out."""
    return {k: v for k, v in read_ledger(obj, OWNER).mine.items() if k != SPLIT}


def _book(entries: dict[str, Any]) -> str:
    return json.dumps({"owners": {OWNER: entries}, "v": 2}, sort_keys=True, separators=(",", ":"))


def traffic_split(
    *backends: tuple[str, Any],
    version: str = "v1alpha4",
    name: str = "web",
    root: str = STABLE,
    owned: bool = False,
    book: dict[str, Any] | None = None,
    matches: list[str] | None = None,
    **spec: Any,
) -> JSON:
    meta: JSON = {
        "name": name,
        "namespace": NS,
        "resourceVersion": "41",
        "uid": f"uid-ts-{name}",
        "generation": 1,
    }
    if owned:
        meta.update(copy.deepcopy(owner_metadata("smi")))
    if book:
        meta.setdefault("annotations", {})[LEDGER] = _book(book)
    body: JSON = {
        "service": root,
        "backends": [{"service": s, "weight": w} for s, w in backends]
        or [{"service": STABLE, "weight": 100}, {"service": CANARY, "weight": 0}],
        **spec,
    }
    if matches is not None:
        body["matches"] = [{"kind": "HTTPRouteGroup", "name": n} for n in matches]
    return {
        "apiVersion": f"split.smi-spec.io/{version}",
        "kind": "TrafficSplit",
        "metadata": meta,
        "spec": body,
    }


def route_group(
    *entries: JSON,
    name: str = "web-routes",
    version: str = "v1alpha4",
    owned: bool = True,
    routes: list[str] | None = None,
) -> JSON:
    meta: JSON = {
        "name": name,
        "namespace": NS,
        "resourceVersion": "42",
        "uid": f"uid-hrg-{name}",
        "generation": 1,
    }
    if owned:
        meta.update(copy.deepcopy(owner_metadata("smi")))
        meta["annotations"][LEDGER] = _book({"headerRoutes": routes or ["canary-header"]})
    return {
        "apiVersion": f"specs.smi-spec.io/{version}",
        "kind": "HTTPRouteGroup",
        "metadata": meta,
        "spec": {"matches": list(entries)},
    }


def live(*objs: JSON) -> LiveObjects:
    return LiveObjects.from_manifests([copy.deepcopy(o) for o in objs], NS)


def state(**doc: Any) -> TrafficState:
    return TrafficState.parse(doc)


def plan(cfg: Config, objs: LiveObjects, desired: Desired, fx: ClusterFacts | None = None) -> Plan:
    return PLUGIN.plan(cfg, objs, desired, fx if fx is not None else SDK)


def run(
    cfg: Config, objs: LiveObjects, desired: Desired, fx: ClusterFacts | None = None
) -> tuple[Plan, LiveObjects]:
    """Plan, apply in memory, and check that planning again is a no-op."""
    fx = fx if fx is not None else SDK
    before = copy.deepcopy(dict(objs.items()))
    p = PLUGIN.plan(cfg, objs, desired, fx)
    assert dict(objs.items()) == before, "plan() mutated its input"
    after = LiveObjects((r, o) for r, o in apply_plans([p], objs).items() if o is not None)
    again = PLUGIN.plan(cfg, after, desired, fx)
    assert again.empty, f"second plan is not empty: {again.to_data()}"
    return p, after


def split_of(objs: LiveObjects, name: str = "web") -> JSON:
    return objs[ObjectRef("split.smi-spec.io", "TrafficSplit", NS, name)]


def group_of(objs: LiveObjects, name: str = "web-routes") -> JSON | None:
    return objs.get(ObjectRef("specs.smi-spec.io", "HTTPRouteGroup", NS, name))


def weights_of(obj: JSON) -> dict[str, Any]:
    return {b["service"]: b["weight"] for b in obj["spec"]["backends"]}


def kinds(p: Plan) -> list[tuple[str, str]]:
    return [(op.verb, op.ref.kind) for op in p]


def patches(p: Plan) -> list[Patch]:
    return [op for op in p if isinstance(op, Patch)]


def creates(p: Plan) -> list[Create]:
    return [op for op in p if isinstance(op, Create)]


def deletes(p: Plan) -> list[Delete]:
    return [op for op in p if isinstance(op, Delete)]


CLEANUP = Cleanup()
KEEP = Cleanup(restore_stable=False)
