"""Several owners planning offline against one set of shared objects (the offline applier is the
oracle: every guard of every plan is checked when it is applied)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from routers.engine import plan_offline
from routers.io import load_documents, load_one
from routers.model import Desired, RoutingConfig, TrafficState
from routers.planning.objects import JSON, ObjectRef
from routers.planning.ownership import LEDGER, read_ledger
from routers.planning.plan import Plan
from routers.registry import Registry

ROOT = Path(__file__).resolve().parent / "legacy"
VOLATILE = ("resourceVersion", "generation", "uid", "creationTimestamp", "managedFields")


def doc(target: str, name: str) -> Any:
    return load_one(str(ROOT / target / name))


def config(target: str, who: str, **changes: Any) -> RoutingConfig:
    data = doc(target, f"{who}.yaml")
    data.update(changes)
    return RoutingConfig.from_document(data)


def state(target: str, who: str) -> TrafficState:
    return TrafficState.parse(doc(target, f"{who}-state.yaml"))


def objects(target: str, name: str = "live.yaml") -> list[JSON]:
    return load_documents([str(ROOT / target / name)])


class World:
    """The objects of one namespace; plans are applied in memory, one owner at a time."""

    def __init__(self, objs: Iterable[JSON], registry: Registry | None = None) -> None:
        self.objects: dict[ObjectRef, JSON] = {ObjectRef.of(o): copy.deepcopy(o) for o in objs}
        self.registry = registry

    def plan(self, routing: RoutingConfig, desired: Desired) -> list[Plan]:
        return list(self.run(routing, desired, apply=False))

    def run(
        self, routing: RoutingConfig, desired: Desired, *, apply: bool = True
    ) -> tuple[Plan, ...]:
        result = plan_offline(routing, desired, list(self.objects.values()), registry=self.registry)
        if apply:
            for ref, obj in result.after.items():
                if obj is None:
                    self.objects.pop(ref, None)
                else:
                    self.objects[ref] = obj
        return result.plans

    def get(self, kind: str, name: str) -> JSON:
        (obj,) = [o for r, o in self.objects.items() if r.kind == kind and r.name == name]
        return obj

    def find(self, kind: str, name: str) -> JSON | None:
        hits = [o for r, o in self.objects.items() if r.kind == kind and r.name == name]
        return hits[0] if hits else None

    def snapshot(self) -> dict[ObjectRef, JSON]:
        return {r: stripped(o) for r, o in self.objects.items()}


def stripped(obj: Mapping[str, Any]) -> JSON:
    """The object without the fields the API server (or the offline applier) maintains."""
    out = copy.deepcopy(dict(obj))
    meta = out.get("metadata") or {}
    for key in VOLATILE:
        meta.pop(key, None)
    out.pop("status", None)
    return out


def entries(obj: Mapping[str, Any], owner: str) -> dict[str, Any]:
    return dict(read_ledger(obj, owner).mine)


def owners_of(obj: Mapping[str, Any]) -> list[str]:
    from routers.planning.ownership import Ledger

    return sorted(Ledger.of(obj).owners)


def without_ledger(obj: Mapping[str, Any]) -> JSON:
    out = stripped(obj)
    anns = (out.get("metadata") or {}).get("annotations")
    if isinstance(anns, dict):
        anns.pop(LEDGER, None)
        if not anns:
            out["metadata"].pop("annotations")
    return out


def http_names(vs: Mapping[str, Any]) -> list[str]:
    return [r.get("name") for r in vs["spec"].get("http") or []]


def rule_names(route: Mapping[str, Any]) -> list[Any]:
    return [r.get("name") for r in route["spec"].get("rules") or []]
