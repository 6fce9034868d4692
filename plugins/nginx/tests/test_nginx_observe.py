"""observe(): what the Ingresses express, read with ingress-nginx's own parsing rules."""

from __future__ import annotations

import pytest
from nginx_fixtures import (
    FACTS,
    PLUGIN,
    P,
    apply,
    config,
    header_route,
    ingress,
    live,
    mirror_route,
    plan,
    routing,
    state,
)

from routers.contract import ObservedWeights
from routers.engine import bind, verify
from routers.model import TrafficState
from routers.planning.objects import LiveObjects, ObjectRef

CANARY = ObjectRef("networking.k8s.io", "Ingress", "prod", "app-canary")


def planned(desired: TrafficState, nginx: dict[str, object] | None = None) -> LiveObjects:
    objs = live(ingress())
    return apply(plan(config(nginx), objs, desired), objs)


def test_observe_what_was_planned_verifies() -> None:
    desired = state(weight=7, total=30, headerRoutes=[header_route()])
    obs = PLUGIN.observe(config(), planned(desired), FACTS)
    assert obs.weights == (ObservedWeights("Ingress.networking.k8s.io prod/app-canary", 92, 28),)
    assert obs.header_routes == ("beta",)
    assert dict(obs.mirror_routes) == {}
    assert obs.problems == ()
    assert obs.ready is None
    report = verify(bind(routing()), [obs], desired, FACTS)
    assert report.ok, report.mismatches
    mirrored = state(weight=5, mirrorRoutes=[mirror_route()])
    obs = PLUGIN.observe(config(), planned(mirrored), FACTS)
    assert (obs.header_routes, dict(obs.mirror_routes)) == ((), {"shadow": 100.0})
    assert verify(bind(routing()), [obs], mirrored, FACTS).ok


def test_without_weight_total_annotation_verifies_within_100ths() -> None:
    nginx = {"stableIngress": "app", "weightTotalAnnotation": False}
    desired = state(weight=125, total=1000)
    obs = PLUGIN.observe(config(nginx), planned(desired, nginx), FACTS)
    assert (obs.weights[0].stable, obs.weights[0].canary) == (88, 12)  # tie goes to stable
    assert verify(bind(routing(nginx)), [obs], desired, FACTS).ok


def test_missing_canary_ingress_means_all_stable() -> None:
    obs = PLUGIN.observe(config(), live(ingress()), FACTS)
    assert obs.weights == (ObservedWeights("Ingress.networking.k8s.io prod/app", 100, 0),)
    assert obs.problems == ()
    report = verify(bind(routing()), [obs], state(weight=10), FACTS)
    assert not report.ok


def test_missing_stable_ingress_is_a_problem() -> None:
    obs = PLUGIN.observe(config(), live(), FACTS)
    assert obs.problems == ("Ingress.networking.k8s.io prod/app does not exist",)


def test_canary_flag_missing_is_a_problem() -> None:
    objs = planned(state(weight=10))
    del objs[CANARY]["metadata"]["annotations"][f"{P}/canary"]
    obs = PLUGIN.observe(config(), objs, FACTS)
    assert obs.weights == ()
    assert any('canary: "true"' in p for p in obs.problems)


def test_go_bool_spellings_count_as_true() -> None:
    objs = planned(state(weight=10))
    objs[CANARY]["metadata"]["annotations"][f"{P}/canary"] = "True"
    assert PLUGIN.observe(config(), objs, FACTS).problems == ()


@pytest.mark.parametrize("value", ["10%", "10\n", " 10", "1_0"])
def test_unparsable_weight_reads_as_zero(value: str) -> None:
    """strconv.Atoi refuses all of these (a trailing newline too), so ingress-nginx uses 0."""
    objs = planned(state(weight=10))
    objs[CANARY]["metadata"]["annotations"][f"{P}/canary-weight"] = value
    obs = PLUGIN.observe(config(), objs, FACTS)
    assert obs.weights[0].canary == 0
    assert any(f"{value!r} is not an integer" in p for p in obs.problems)


def test_total_below_100_reads_as_100_and_weight_is_capped() -> None:
    objs = planned(state(weight=10))
    anns = objs[CANARY]["metadata"]["annotations"]
    anns[f"{P}/canary-weight-total"] = "50"
    anns[f"{P}/canary-weight"] = "150"
    (w,) = PLUGIN.observe(config(), objs, FACTS).weights
    assert (w.stable, w.canary) == (0, 100)


def test_header_route_whose_annotations_were_deleted() -> None:
    objs = planned(state(headerRoutes=[header_route()]))
    del objs[CANARY]["metadata"]["annotations"][f"{P}/canary-by-header-value"]
    obs = PLUGIN.observe(config(), objs, FACTS)
    assert obs.header_routes == ()
    assert any("'beta' is listed but its annotations are gone" in p for p in obs.problems)


def test_out_of_date_paths_and_class_are_problems() -> None:
    objs = planned(state(weight=10))
    objs[CANARY]["spec"]["rules"][0]["http"]["paths"].pop()
    objs[CANARY]["spec"]["ingressClassName"] = "other"
    problems = PLUGIN.observe(config(), objs, FACTS).problems
    assert any("out of date" in p for p in problems)
    assert any("ingress class differs" in p for p in problems)


def test_mirror_listed_but_target_changed() -> None:
    objs = planned(state(mirrorRoutes=[mirror_route()]))
    stable = objs[ObjectRef("networking.k8s.io", "Ingress", "prod", "app")]
    stable["metadata"]["annotations"][f"{P}/mirror-target"] = "http://elsewhere$request_uri"
    obs = PLUGIN.observe(config(), objs, FACTS)
    assert dict(obs.mirror_routes) == {}
    assert any("mirror route 'shadow' is listed" in p for p in obs.problems)


def test_route_on_only_one_of_two_canaries_is_partial() -> None:
    nginx = {"stableIngresses": ["app", "web"]}
    objs = live(ingress(), ingress("web", host="web.example.com"))
    objs = apply(plan(config(nginx), objs, state(headerRoutes=[header_route()])), objs)
    web = ObjectRef("networking.k8s.io", "Ingress", "prod", "web-canary")
    del objs[web]["metadata"]["annotations"][f"{P}/canary-by-header"]
    obs = PLUGIN.observe(config(nginx), objs, FACTS)
    assert obs.header_routes == ()
    assert "header route 'beta' is missing on some canary Ingresses" in obs.problems
