"""Issue 12's corpus test: every published Argo Rollout that routes traffic through one of our
targets is accepted as is, or refused exactly where Argo refuses it (with Argo's reason).

For each case (``tests/corpus/argo/cases/<id>/``, see ``argo_corpus``): the Rollout itself is the
config; every state its steps reach is planned against the result of the previous one; planning
a state again is empty; the objects are routed through each target's own data-plane evaluator,
request by request, against what the state means (``routers.simulate.equivalence``, as the
contract suite's equivalence property), and read back with ``verify``. The acceptance fraction is
printed at the end of the run (``tests/corpus/conftest.py``) and recorded in README.md.
"""

from __future__ import annotations

import copy
import re
from fractions import Fraction

import pytest

from routers.argo import routing_document
from routers.engine import (
    Binding,
    bind,
    gather,
    observe_all,
    offline_lister,
    plan_offline,
    verify,
    with_offline_namespace,
)
from routers.explain import equivalence, probe_split
from routers.model import Cleanup, RoutingConfig, TrafficState
from routers.planning.objects import JSON, LiveObjects
from routers.simulate import Request
from tests.corpus.argo_corpus import (
    Case,
    Outcome,
    bridge_form,
    facts_for,
    idempotence_problems,
    live_view,
    load_cases,
    merge,
    run,
)

CASES = load_cases()
RESULTS: dict[str, str] = {}
"""Case id -> ``accepted``, ``refused as Argo refuses`` or ``FAILED``: read by conftest.py."""
COUNTS: dict[str, int] = {"states": 0, "requests": 0}
"""States planned and requests routed through their objects, over the cases that ran."""


def _read(binding: Binding, objects: list[JSON], routing: RoutingConfig) -> LiveObjects:
    """What one plugin reads of ``objects`` (its targets, selectors listed)."""
    pool = live_view(routing, objects)
    return gather([binding], pool.get, list_objects=offline_lister(pool))


def _pinned(objects: LiveObjects) -> list[Request]:
    """Requests carrying the exact headers a route's rule requires (an HTTPRoute rule pinned to
    ``X-Security: secret123``): without them nothing reaches such a rule, nor what a header
    route derives from it."""
    out: list[Request] = []
    for _, obj in objects.items():
        for rule in (obj.get("spec") or {}).get("rules") or []:
            for m in rule.get("matches") or [] if isinstance(rule, dict) else []:
                pinned = tuple(
                    (str(h["name"]), str(h["value"]))
                    for h in m.get("headers") or []
                    if h.get("type", "Exact") == "Exact" and "name" in h and "value" in h
                )
                path = m.get("path") or {}
                if pinned:
                    value = path.get("value") if path.get("type") != "RegularExpression" else None
                    out.append(Request(path=str(value or "/"), headers=pinned))
    return out


def outcome_problems(case: Case, outcome: Outcome) -> tuple[list[str], int]:
    """Route requests through every planned state's objects with each target's evaluator and
    compare with the meaning, and verify the weights read back; returns the problems and how
    much was checked (requests that reached the managed routes, else locations verified)."""
    routing = RoutingConfig.from_document(copy.deepcopy(case.rollout))
    routing, namespace, _ = with_offline_namespace(routing, case.manifests)
    bindings = bind(routing)
    facts = facts_for(case)
    total = routing.max_traffic_weight or 100
    cleaned = plan_offline(routing, Cleanup(), case.manifests)
    probed = probe_split(lambda s: plan_offline(routing, s, case.manifests), total)
    before = merge(case.manifests, dict(cleaned.after), namespace)
    probe = merge(case.manifests, dict(probed.after), namespace)
    problems: list[str] = []
    checked = 0
    for step in outcome.steps:
        if not isinstance(step.desired, TrafficState):
            continue
        found = 0
        for b in bindings:
            caps = b.plugin.capabilities(b.config, facts)
            views = (
                _read(b, before, routing),
                _read(b, probe, routing),
                _read(b, step.after, routing),
            )
            bad, n = equivalence(
                b, routing, step.desired, views, caps, more_samples=_pinned(views[2])
            )
            found += n
            problems += [f"{step.label}: {b.name}: {m}" for m in bad[:3]]
        checked += found
        # Read back as `routers verify` does: every weighted location (tls/tcp routes too, which
        # carry no HTTP request to simulate) and the managed route names.
        pool = live_view(routing, step.after)
        read = gather(bindings, pool.get, list_objects=offline_lister(pool))
        observed = observe_all(bindings, read, facts)
        report = verify(bindings, observed, step.desired, facts, routing=routing)
        problems += [f"{step.label}: verify: {m}" for m in report.mismatches]
        checked += sum(len(o.weights) for o in observed) if not found else 0
    return problems, checked


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_upstream_rollout_is_accepted_or_refused_as_argo_refuses(case: Case) -> None:
    RESULTS[case.id] = "FAILED"
    outcome = run(case)
    refused = case.refused
    if refused is not None:
        assert not outcome.accepted, (
            f"{case.id}: Argo refuses this ({refused['argo']}), but every state planned"
        )
        assert re.search(refused["error"], str(outcome.error)), (
            f"{case.id}: refused for another reason than Argo's ({refused['argo']}): "
            f"{outcome.describe()}"
        )
        assert outcome.stage == refused["stage"], outcome.describe()
        RESULTS[case.id] = "refused as Argo refuses"
        return
    assert outcome.accepted, f"refused where Argo accepts: {outcome.describe()}"
    problems, checked = outcome_problems(case, outcome)
    problems = [*idempotence_problems(case, outcome), *problems]
    assert not problems, f"{case.id}:\n" + "\n".join(problems[:8])
    assert checked, f"{case.id}: no request reached the managed routes: nothing was checked"
    COUNTS["states"] += len(outcome.steps)
    COUNTS["requests"] += checked
    RESULTS[case.id] = "accepted"


def _changed(step_after: list[JSON], before: list[JSON]) -> dict[tuple[str, str], JSON]:
    """The objects of ``step_after`` that are new or differ from ``before`` (by kind and name)."""
    was = {(o["kind"], o["metadata"]["name"]): o for o in before}
    return {
        (o["kind"], o["metadata"]["name"]): o
        for o in step_after
        if was.get((o["kind"], o["metadata"]["name"])) != o
    }


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.refused is None], ids=[c.id for c in CASES if c.refused is None]
)
def test_the_bridge_form_plans_exactly_the_same(case: Case) -> None:
    """issue 14's bridge runs one process per ``canary-routers/<target>`` key, each reading the
    Rollout through ``routers.argo.routing_document``: together they change exactly what the
    Argo-native blocks change, state by state (an NGINX+SMI Rollout is two processes)."""
    native = run(case)
    bridged = bridge_form(case.rollout)
    keys = [
        k
        for k in bridged["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"]
        if k.startswith("canary-routers/")
    ]
    assert keys, case.id
    runs = []
    for key in keys:
        one = run(case, routing_document(bridged, key))
        assert one.accepted, f"{key}: {one.describe()}"
        assert [s.label for s in one.steps] == [s.label for s in native.steps], key
        runs.append(one)
    for i, step in enumerate(native.steps):
        want = _changed(step.after, case.manifests)
        got: dict[tuple[str, str], JSON] = {}
        for one in runs:
            got.update(_changed(one.steps[i].after, case.manifests))
        assert got == want, f"{step.label}: the bridge form plans differently"


def test_every_case_names_its_source_and_marks_what_we_wrote() -> None:
    from tests.corpus.argo_corpus import WRITTEN

    for case in CASES:
        src = case.source
        assert src["repo"] in (
            "argoproj/argo-rollouts",
            "argoproj-labs/rollouts-plugin-trafficrouter-gatewayapi",
        ), case.id
        assert re.fullmatch(r"[0-9a-f]{40}", src["commit"]), case.id
        assert src["path"] and src["where"], case.id
        for obj in case.written:
            note = ((obj.get("metadata") or {}).get("annotations") or {}).get(WRITTEN)
            assert note, f"{case.id}: {obj['kind']} {obj['metadata']['name']} lacks {WRITTEN}"
        if case.refused is not None:
            assert {"stage", "error", "argo"} <= set(case.refused), case.id
        if case.written:
            assert case.expect.get("written"), f"{case.id}: say why objects were written"


def test_the_corpus_is_the_published_one() -> None:
    """Guards against a corpus shrunk by accident: the count of issue 12's collection (85, as
    the issue counted)."""
    assert len(CASES) == 85
    refused = [c.id for c in CASES if c.refused is not None]
    assert len(refused) <= 8, refused
    assert Fraction(len(CASES) - len(refused), len(CASES)) >= Fraction(9, 10)
