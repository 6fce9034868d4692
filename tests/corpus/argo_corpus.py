"""Walking an upstream Argo Rollout through canary-routers, offline, the way Argo would.

Each case under ``argo/cases/<id>/`` holds a published Rollout (``rollout.yaml``), the live
objects that ship beside it (``live.yaml``) and, where none ship, minimal ones we wrote
(``written.yaml``, each object annotated ``corpus.canary-routers.io/written``), plus where it all
came from (``source.yaml``) and what is expected (``expect.yaml``: accepted, or refused with the
reason Argo refuses it too).

The walk follows Argo's controller (rollout/trafficrouting.go): the Rollout starts at weight 0;
every ``setWeight`` sets the canary weight; ``setHeaderRoute`` / ``setMirrorRoute`` add, replace
or (without ``match``) remove a managed route; an ``experiment`` step with weighted templates
adds those as additional destinations while it runs (the canary keeps the last ``setWeight``),
and the next step drops them; the end of the steps is Argo's promotion (weight = maxTrafficWeight,
managed routes removed); an abort returns to weight 0. Each state is planned against the result
of the previous one, planning it again must be empty, and the traffic outcome is checked with the
evaluators of the plugins (``routers.simulate.equivalence``) against what the state means.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routers.engine import bind, facts_from_manifests, plan_offline, with_offline_namespace
from routers.errors import RoutersError
from routers.io import load_one, load_text
from routers.model import AdditionalDestination, Cleanup, Desired, RoutingConfig, TrafficState
from routers.model.steps import steps_from_document
from routers.planning.objects import JSON, LiveObjects, ObjectRef

CASES = Path(__file__).resolve().parent / "argo" / "cases"
WRITTEN = "corpus.canary-routers.io/written"
"""Annotation on every live object we wrote because none ships with the example."""


@dataclass
class Case:
    id: str
    directory: Path
    source: dict[str, Any]
    rollout: dict[str, Any]
    live: list[JSON]
    written: list[JSON]
    expect: dict[str, Any]

    @property
    def manifests(self) -> list[JSON]:
        """What is applied: the shipped objects, ours replacing a shipped one of the same name
        where the published one is a skeleton (``spec`` elided in the documentation)."""
        ours = {_key(o) for o in self.written}
        return [*(o for o in self.live if _key(o) not in ours), *self.written]

    @property
    def refused(self) -> dict[str, Any] | None:
        found = self.expect.get("refused")
        return found if isinstance(found, dict) else None


def _key(obj: JSON) -> tuple[str, str]:
    return (str(obj.get("kind")), str((obj.get("metadata") or {}).get("name")))


def load_case(directory: Path) -> Case:
    """One case, with the adaptations its ``expect.yaml`` declares (each with its reason):
    ``substitute`` (placeholders Argo's e2e suite replaces before applying a template),
    ``namespace`` (where the published guide applies an object that names no namespace) and
    ``drop`` (objects of another example on the same page)."""
    expect_path = directory / "expect.yaml"
    expect = dict(load_one(str(expect_path)) or {}) if expect_path.exists() else {}
    adapt = expect.get("adapt") or {}

    def docs(name: str) -> list[JSON]:
        path = directory / name
        if not path.exists():
            return []
        text = path.read_text(encoding="utf-8")
        for old, new in (adapt.get("substitute") or {}).items():
            text = text.replace(old, new)
        dropped = set(adapt.get("drop") or ())
        out = [
            o
            for o in load_text(text, str(path))
            if isinstance(o, dict) and "/".join(_key(o)) not in dropped
        ]
        for obj in out:
            ns = (adapt.get("namespace") or {}).get("/".join(_key(obj)))
            if ns:
                obj.setdefault("metadata", {})["namespace"] = ns
        return out

    (rollout,) = docs("rollout.yaml")
    return Case(
        id=directory.name,
        directory=directory,
        source=dict(load_one(str(directory / "source.yaml"))),
        rollout=rollout,
        live=docs("live.yaml"),
        written=docs("written.yaml"),
        expect=expect,
    )


def load_cases() -> list[Case]:
    return [load_case(d) for d in sorted(CASES.iterdir()) if d.is_dir()]


# -- Argo's walk --------------------------------------------------------------------------------


def _canary(rollout: dict[str, Any]) -> dict[str, Any]:
    return dict((((rollout.get("spec") or {}).get("strategy") or {}).get("canary")) or {})


def _subset_level(routing: RoutingConfig) -> bool:
    istio = routing.section("istio")
    return istio is not None and "destinationRule" in istio.body


def argo_states(rollout: dict[str, Any], routing: RoutingConfig) -> list[tuple[str, Desired]]:
    """Every state the Rollout's own steps reach, in order, labelled by the step."""
    total = routing.max_traffic_weight or 100
    subset = _subset_level(routing)
    hashes: dict[str, Any] = {"stable_hash": "stable-hash", "canary_hash": "canary-hash"}
    state = TrafficState(total=total, **(hashes if subset else {}))
    out: list[tuple[str, Desired]] = [("initial (weight 0)", state)]
    name = str((rollout.get("metadata") or {}).get("name") or "rollout")
    for i, step in enumerate(_canary(rollout).get("steps") or []):
        ((key, value),) = step.items()
        label = f"steps[{i}] {key}"
        before = state
        if state.additional_destinations:  # the experiment ended with its step
            state = state.with_changes(additional_destinations=())
        if key == "setWeight":
            state = state.with_changes(weight=value)
        elif key in ("setHeaderRoute", "setMirrorRoute"):
            doc = {"kind": "Rollout", "spec": {"strategy": {"canary": {"steps": [step]}}}}
            parsed, _ = steps_from_document(doc)
            (verb,) = parsed.steps
            state = verb.apply(state)  # type: ignore[union-attr]
        elif key == "experiment":
            dests = [
                AdditionalDestination(
                    service=((t.get("service") or {}).get("name")) or f"{name}-{i}-{t['name']}",
                    weight=t["weight"],
                    pod_template_hash=f"{t['name']}-hash" if subset else None,
                )
                for t in (value or {}).get("templates") or []
                if t.get("weight") is not None
            ]
            state = state.with_changes(additional_destinations=dests)
        if state != before:
            out.append((label, state))
    promoted = TrafficState(total=total, weight=total, **(hashes if subset else {}))
    out.append(("end of steps: promotion (weight = maxTrafficWeight)", promoted))
    out.append(("abort (weight 0, managed routes removed)", TrafficState(total=total)))
    out.append(("cleanup", Cleanup()))
    return out


# -- running a case ---------------------------------------------------------------------------


@dataclass
class Step:
    label: str
    desired: Desired
    before: list[JSON]
    after: list[JSON]


@dataclass
class Outcome:
    case: Case
    accepted: bool
    stage: str = ""
    error: RoutersError | None = None
    steps: list[Step] = field(default_factory=list)

    def describe(self) -> str:
        if self.accepted:
            return f"{self.case.id}: accepted ({len(self.steps)} states)"
        return f"{self.case.id}: refused at {self.stage}: {type(self.error).__name__}: {self.error}"


def merge(objects: Sequence[JSON], after: dict[ObjectRef, JSON | None], ns: str) -> list[JSON]:
    """The manifests after a plan: changed objects replaced, deleted ones gone, created added."""
    out: list[JSON] = []
    seen: set[ObjectRef] = set()
    for obj in objects:
        ref = ObjectRef.of(obj, ns)
        seen.add(ref)
        if ref in after:
            if after[ref] is not None:
                out.append(after[ref])  # type: ignore[arg-type]
        else:
            out.append(obj)
    out += [o for r, o in after.items() if r not in seen and o is not None]
    return out


def run(case: Case, config: JSON | None = None) -> Outcome:
    """Plan every state of the case's walk; stop at the first refusal. ``config`` is the
    document read as the config when not the Rollout itself (the states still follow its steps)."""
    try:
        routing = RoutingConfig.from_document(copy.deepcopy(config or case.rollout))
        routing, _, _ = with_offline_namespace(routing, case.manifests)
        bind(routing)
    except RoutersError as exc:
        return Outcome(case, False, "config", exc)
    namespace = routing.namespace or "default"
    objects = [copy.deepcopy(o) for o in case.manifests]
    outcome = Outcome(case, True)
    for label, desired in argo_states(case.rollout, routing):
        try:
            result = plan_offline(routing, desired, objects)
        except RoutersError as exc:
            return Outcome(case, False, label, exc, outcome.steps)
        after = merge(objects, dict(result.after), namespace)
        outcome.steps.append(Step(label, desired, objects, after))
        objects = after
    return outcome


def idempotence_problems(case: Case, outcome: Outcome) -> Iterator[str]:
    routing = RoutingConfig.from_document(copy.deepcopy(case.rollout))
    routing, _, _ = with_offline_namespace(routing, case.manifests)
    for step in outcome.steps:
        again = plan_offline(routing, step.desired, step.after)
        ops = [e for p in again.plans for e in p.to_data()]
        if ops:
            yield f"{step.label}: planning the same state again is not empty: {ops}"


def live_view(routing: RoutingConfig, objects: Sequence[JSON]) -> LiveObjects:
    ns = routing.namespace or "default"
    return LiveObjects(
        (ObjectRef.of(o, ns), o) for o in objects if o.get("kind") != "CustomResourceDefinition"
    )


def facts_for(case: Case) -> Any:
    return facts_from_manifests(case.manifests)


def bridge_form(rollout: dict[str, Any]) -> dict[str, Any]:
    """The Rollout as Argo's controller hands it to the canary-routers bridge: every target's
    block moved, unchanged, under ``plugins["canary-routers/<target>"]``."""
    out = copy.deepcopy(rollout)
    routing = out["spec"]["strategy"]["canary"]["trafficRouting"]
    plugins = routing.setdefault("plugins", {})
    for name in ("istio", "nginx", "smi", "traefik"):
        if name in routing:
            plugins[f"canary-routers/{name}"] = routing.pop(name)
    if "argoproj-labs/gatewayAPI" in plugins:
        plugins["canary-routers/gatewayapi"] = plugins.pop("argoproj-labs/gatewayAPI")
    return out
