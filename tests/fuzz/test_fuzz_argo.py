"""Fuzz campaign, Argo side (issue 13, part 2): mutated Rollouts and calls through the bridge.

``routers argo-plugin`` reads names from the Rollout Argo hands over (its metadata, Services,
``managedRoutes``, our plugin section) and from each call's arguments (route names and matches,
experiment destinations, hashes). Every published Rollout of the Argo corpus
(``tests/corpus/argo``), in the bridge form (``plugins["canary-routers/<target>"]``), is
mutated the way ``test_fuzz_cli`` mutates files, and its steps are replayed as Argo's calls
(SetWeight, SetHeaderRoute, SetMirrorRoute, then VerifyWeight and RemoveManagedRoutes) through
:class:`routers.argo.ArgoPlugin` against an in-memory cluster holding the corpus objects (with
foreign marker fields planted). Asserted for every case:

- a call either succeeds or raises :class:`CallError` (what the bridge sends to Argo), never
  another exception; its message is one line, and so is every Warning Event the plugin asks to
  record on the Rollout (whose name and namespace are valid);
- a refused call writes nothing;
- the same oracles as the CLI campaign on the objects afterwards: no foreign field lost, no
  foreign object deleted, every annotation value we emitted in the safe sets.

Bounded and reproducible like the CLI campaign: a fixed seed per scenario,
``ROUTERS_FUZZ_ARGO_EXAMPLES`` cases per scenario (default 10).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import strategies as st

from routers.argo import ArgoPlugin, CallError
from routers.cluster import ApiStatus, InvolvedObject, ResourceInfo
from routers.model._validators import is_dns_label, is_dns_subdomain
from routers.planning.objects import ObjectRef, SelectorRef, without_nulls
from tests.corpus.argo_corpus import bridge_form, load_cases
from tests.fuzz.test_fuzz_cli import (
    MARK_KEY,
    Case,
    Marker,
    Stats,
    _leaves,
    campaign,
    check,
    mutated,
    plant,
)
from tests.unit.test_argo import FakeKube

EXAMPLES = int(os.environ.get("ROUTERS_FUZZ_ARGO_EXAMPLES", "10"))
STATS = Stats()

# What a cluster with every target's CRDs serves, preferred version first.
SERVED: dict[str, tuple[str, ...]] = {
    "": ("v1",),
    "networking.k8s.io": ("v1",),
    "networking.istio.io": ("v1", "v1beta1", "v1alpha3"),
    "gateway.networking.k8s.io": ("v1", "v1beta1", "v1alpha2"),
    "split.smi-spec.io": ("v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1"),
    "specs.smi-spec.io": ("v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1"),
    "traefik.io": ("v1alpha1",),
    "traefik.containo.us": ("v1alpha1",),
}


class AnyKindKube(FakeKube):
    """:class:`FakeKube` for every kind the built-in targets read, create or delete."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        super().__init__(*(without_nulls(o) for o in objects))  # as the API server stores them
        self.deleted: list[ObjectRef] = []

    def served_groups(self, *, refresh: bool = False) -> dict[str, tuple[str, ...]]:
        return dict(SERVED)

    def resource(self, ref: ObjectRef) -> ResourceInfo:
        versions = SERVED.get(ref.group)
        if versions is None:
            raise ApiStatus(404, "NotFound", f"{ref.group} is not served")
        return ResourceInfo(ref.group, ref.version or versions[0], ref.kind.lower() + "s", True)

    def create(self, ref: ObjectRef, body: Any, *, dry_run: bool = False) -> dict[str, Any]:
        if ref in self.objects:
            raise ApiStatus(409, "AlreadyExists", f"{ref} exists")
        obj = copy.deepcopy(body)
        obj.setdefault("metadata", {})["namespace"] = ref.namespace
        if not dry_run:
            self.writes.append(("create", ref, obj))
            self.put(obj)
        return copy.deepcopy(obj)

    def delete(self, ref: ObjectRef, **_: Any) -> None:
        if ref not in self.objects:
            raise ApiStatus(404, "NotFound", f"{ref} not found")
        self.writes.append(("delete", ref, None))
        self.deleted.append(ref)
        del self.objects[ref]

    def list_selected(self, selector: SelectorRef) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for r, o in sorted(self.objects.items()) if selector.matches(r, o)]


class Warnings:
    """The plugin's EventRecorder, caller side: the Warning Events it asked for."""

    def __init__(self) -> None:
        self.warnings: list[tuple[InvolvedObject, str, str]] = []

    def warning(self, involved: InvolvedObject, reason: str, message: str) -> None:
        self.warnings.append((involved, reason, message))


# -- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    plugin: str
    """The ``trafficRouterPlugins`` entry this process serves (``canary-routers/<target>``)."""
    rollout: dict[str, Any]
    namespace: str
    live: list[dict[str, Any]]
    calls: list[list[Any]]
    """``[method, args]`` pairs: the Rollout's steps as Argo calls them."""
    refused: bool
    """The corpus expects the Rollout to be refused (as Argo refuses it)."""


def _calls(rollout: Mapping[str, Any]) -> list[list[Any]]:
    canary = rollout["spec"]["strategy"]["canary"]
    calls: list[list[Any]] = []
    weight = 0
    for step in canary.get("steps") or ():
        if not isinstance(step, Mapping):
            continue
        if isinstance(step.get("setWeight"), int):
            weight = step["setWeight"]
            calls.append(["SetWeight", {"desiredWeight": weight}])
        for key, method in (
            ("setHeaderRoute", "SetHeaderRoute"),
            ("setMirrorRoute", "SetMirrorRoute"),
        ):
            if isinstance(step.get(key), Mapping):
                calls.append([method, {key: copy.deepcopy(step[key])}])
    if not any(c[0] == "SetWeight" for c in calls):
        weight = 20
        calls.insert(0, ["SetWeight", {"desiredWeight": weight}])
    calls.append(["VerifyWeight", {"desiredWeight": weight}])
    calls.append(["RemoveManagedRoutes", {}])
    return calls


def scenarios() -> list[Scenario]:
    out = []
    for case in load_cases():
        bridged = bridge_form(case.rollout)
        # Documentation snippets may leave the name out; Argo never hands over such a Rollout.
        bridged.setdefault("metadata", {}).setdefault("name", "rollouts-demo")
        namespace = str((bridged.get("metadata") or {}).get("namespace") or "default")
        live = []
        for obj in case.manifests:
            if obj.get("kind") in ("CustomResourceDefinition", "Rollout"):
                continue
            copied = copy.deepcopy(obj)
            copied.setdefault("metadata", {}).setdefault("namespace", namespace)
            live.append(copied)
        plugins = bridged["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"]
        for key in sorted(k for k in plugins if k.startswith("canary-routers/")):
            name = f"{case.id}/{key}"
            refused = case.refused is not None
            out.append(Scenario(name, key, bridged, namespace, live, _calls(bridged), refused))
    return out


SCENARIOS = scenarios()


# -- one case -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArgoCase:
    rollout: Any
    calls: list[Any]
    live: list[dict[str, Any]]
    markers: list[Marker]


@st.composite
def argo_cases(draw: st.DrawFn, scenario: Scenario) -> ArgoCase:
    keys, values = _leaves([scenario.rollout, scenario.calls])
    which = draw(st.sampled_from(["rollout", "calls", "both"]))
    rollout = scenario.rollout
    calls: Any = scenario.calls
    if which in ("rollout", "both"):
        rollout = draw(mutated(rollout, keys, values))
    if which in ("calls", "both"):
        calls = draw(mutated(calls, keys, values))
    live = copy.deepcopy(scenario.live)
    markers = plant(draw, live)  # the cluster's objects are valid; only foreign fields are added
    return ArgoCase(rollout, calls, live, markers)


def run_calls(scenario: Scenario, case: ArgoCase) -> tuple[AnyKindKube, int]:
    """Replay the calls; return the cluster afterwards and how many calls were refused."""
    kube = AnyKindKube(case.live)
    events = Warnings()
    plugin = ArgoPlugin(scenario.plugin, kube, events=events)  # type: ignore[arg-type]
    refused = 0
    for call in case.calls if isinstance(case.calls, list) else [case.calls]:
        method, args = [*call, None, None][:2] if isinstance(call, list) else (call, None)
        writes = len(kube.writes)
        try:
            plugin.handle(str(method), case.rollout, args if isinstance(args, Mapping) else {})
        except CallError as exc:
            refused += 1
            text = str(exc)
            assert "\n" not in text and "\r" not in text, f"a multi-line error: {text!r}"
            assert kube.writes[writes:] == [], f"{method} was refused after writing: {text}"
        except Exception as exc:  # the assertion: only CallError reaches the bridge
            raise AssertionError(f"{method} raised {exc!r} instead of a CallError") from exc
    for involved, _, message in events.warnings:
        assert "\n" not in message and "\r" not in message, f"a multi-line event: {message!r}"
        assert is_dns_subdomain(involved.name) and is_dns_label(involved.namespace), involved
    return kube, refused


def check_cluster(scenario: Scenario, case: ArgoCase, kube: AnyKindKube) -> None:
    inputs = {ObjectRef.of(o, scenario.namespace): without_nulls(o) for o in case.live}
    for ref in kube.deleted:
        assert ref not in inputs, f"deleted {ref}, which was there before (not created by us)"
    changed = []
    for ref, obj in kube.objects.items():
        now = copy.deepcopy(obj)
        now["metadata"].pop("resourceVersion", None)
        if inputs.get(ref) != now:
            changed.append(now)
    config = {"namespace": scenario.namespace, "rollout": case.rollout}
    output = json.dumps({"kind": "List", "items": changed})
    check(Case(config, {}, False, case.live, case.markers), 0, output, "", STATS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_fuzz_argo_plugin(scenario: Scenario, record_property: Any) -> None:
    def execute(case: ArgoCase) -> tuple[int, Callable[[], None]]:
        kube, refused = run_calls(scenario, case)
        return (1 if refused else 0), lambda: check_cluster(scenario, case, kube)

    ran = campaign(scenario.name, argo_cases(scenario), EXAMPLES, STATS, execute)
    record_property("fuzz_cases", ran)
    assert ran >= min(EXAMPLES, 4), f"only {ran} cases ran"


def test_every_corpus_rollout_is_a_scenario() -> None:
    assert {s.name.rpartition("/canary-routers/")[0] for s in SCENARIOS} == {
        c.id for c in load_cases()
    }


def test_unmutated_rollouts_replay_as_the_corpus_expects() -> None:
    """The campaign starts from calls that work: every accepted Rollout's calls succeed and
    write, every refused one is refused by a call (and the oracles hold on both)."""
    writes = 0
    for scenario in SCENARIOS:
        case = ArgoCase(scenario.rollout, scenario.calls, copy.deepcopy(scenario.live), [])
        kube, refused = run_calls(scenario, case)
        check_cluster(scenario, case, kube)
        assert bool(refused) == scenario.refused, (scenario.name, refused)
        writes += len(kube.writes)
    assert writes > len(SCENARIOS)


def _oracle_case() -> tuple[Scenario, ArgoCase, ObjectRef]:
    scenario = next(s for s in SCENARIOS if not s.refused)
    live = copy.deepcopy(scenario.live)
    live[0][MARK_KEY] = "kept-0-0"
    case = ArgoCase(scenario.rollout, scenario.calls, live, [Marker(0, (), MARK_KEY, "kept-0-0")])
    return scenario, case, ObjectRef.of(live[0], scenario.namespace)


def test_argo_oracles_flag_a_foreign_delete() -> None:
    scenario, case, ref = _oracle_case()
    kube = AnyKindKube(case.live)
    check_cluster(scenario, case, kube)
    del kube.objects[ref]
    kube.deleted.append(ref)
    with pytest.raises(AssertionError, match="which was there before"):
        check_cluster(scenario, case, kube)


def test_argo_oracles_flag_a_lost_foreign_field() -> None:
    scenario, case, ref = _oracle_case()
    kube = AnyKindKube(case.live)
    del kube.objects[ref][MARK_KEY]
    with pytest.raises(AssertionError, match="foreign field xFuzzKeep='kept-0-0' at  was lost"):
        check_cluster(scenario, case, kube)
