"""Config validation, plan errors, observe, ordering and notes of the Istio plugin."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from istio_helpers import (
    FACTS,
    PLUGIN,
    config,
    dest,
    dr,
    get,
    http_names,
    live,
    plan,
    route,
    routing,
    run,
    simple_vs,
    state,
    vs,
    weights_of,
)

from routers.contract import MirrorSupport
from routers.engine import bind, check_capabilities
from routers.errors import (
    ConfigError,
    PlanError,
    TargetNotFoundError,
    UnsupportedError,
    WeightFitError,
)
from routers.model import Cleanup
from routers.planning.objects import ObjectRef
from routers.planning.ownership import LEDGER
from routers.planning.plan import Patch

DR = {"name": "app", "stableSubsetName": "stable", "canarySubsetName": "canary"}
MIRROR = {"name": "m", "percentage": 12.5, "matches": [{"method": "GET"}]}
HEADER = {"name": "h", "matches": [{"headers": [{"name": "x-canary", "exact": "1"}]}]}


def subset_vs(**kw: Any) -> dict[str, Any]:
    return vs(
        "app", route("primary", dest("svc", 100, "stable", 80), dest("svc", 0, "canary", 80)), **kw
    )


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({"virtualService": {"name": "a"}, "bogus": 1}, "istio.bogus", "unknown field"),
        (
            {"virtualService": {"name": "a", "route": ["x"]}},
            "istio.virtualService.route",
            "unknown field",
        ),
        ({}, "istio", "virtualService or virtualServices is required"),
        (
            {"virtualService": {"name": "a"}, "virtualServices": [{"name": "b"}]},
            "istio",
            "not both",
        ),
        ({"virtualService": {"name": "A_b"}}, "istio.virtualService.name", "name.namespace"),
        ({"virtualService": {"name": "a.b.c"}}, "istio.virtualService.name", "name.namespace"),
        (
            {
                "virtualService": {"name": "a"},
                "destinationRule": {**DR, "canarySubsetName": "stable"},
            },
            "istio.destinationRule",
            "must differ",
        ),
        (
            {
                "virtualService": {"name": "a"},
                "destinationRule": {**DR, "stableSubsetName": "Stable"},
            },
            "istio.destinationRule.stableSubsetName",
            "DNS-1123",
        ),
        (
            {"virtualService": {"name": "a", "tlsRoutes": [{}]}},
            "istio.virtualService.tlsRoutes[0]",
            "port, sniHosts",
        ),
        (
            {"virtualService": {"name": "a", "tcpRoutes": [{"port": 0}]}},
            "istio.virtualService.tcpRoutes[0].port",
            "greater than",
        ),
        (
            {"virtualService": {"name": "a", "routes": ["x", "x"]}},
            "istio.virtualService",
            "listed twice",
        ),
        (
            {"virtualService": {"name": "a", "delegateRoutes": ["x"]}},
            "istio.virtualService",
            "needs delegate",
        ),
        ({"virtualService": {"name": "a"}, "mirrorField": "both"}, "istio.mirrorField", ""),
        ({"virtualService": {"name": "a"}, "weightTotal": 0}, "istio.weightTotal", "or 'state'"),
        (
            {"virtualService": {"name": "a"}, "weightTotal": "100"},
            "istio.weightTotal",
            "or 'state'",
        ),
        (
            {"virtualService": {"name": "a"}, "podTemplateHashKey": "bad key"},
            "istio.podTemplateHashKey",
            "label key",
        ),
        (
            {"virtualServices": [{"name": "a"}, {"name": "a.app"}]},
            "istio.virtualServices[1].name",
            "also configured",
        ),
    ],
)
def test_config_errors_name_the_field(section: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        bind(routing(section))
    paths = [p.path for p in err.value.problems]
    assert path in paths, err.value
    assert message in str(err.value)


def test_argo_config_forms_are_accepted() -> None:
    cfg = config(
        {
            "virtualServices": [
                {"name": "vs1.other.svc.cluster.local", "routes": ["a"]},
                {
                    "name": "vs2",
                    "tlsRoutes": [{"port": 443, "sniHosts": ["a.example.com"]}],
                    "tcpRoutes": [{"port": 5432}],
                },
            ],
            "destinationRule": {**DR, "additionalSubsetNames": ["extra"]},
        }
    )
    refs = [t.ref for t in cfg.virtual_services]
    assert refs == [
        ObjectRef("networking.istio.io", "VirtualService", "other", "vs1"),
        ObjectRef("networking.istio.io", "VirtualService", "app", "vs2"),
    ]
    assert cfg.destination_rule == ObjectRef("networking.istio.io", "DestinationRule", "app", "app")
    assert cfg.virtual_services[1].http_enabled is False  # tls/tcp only: Argo's rule


def test_capabilities_follow_the_config() -> None:
    envelope = PLUGIN.capabilities()
    assert envelope.header_routes
    assert envelope.mirror is MirrorSupport.FRACTION
    assert envelope.max_total is None
    assert PLUGIN.capabilities(config({"virtualService": {"name": "a"}}), FACTS).max_total == 100
    assert (
        PLUGIN.capabilities(
            config({"virtualService": {"name": "a"}, "weightTotal": "state"}), FACTS
        ).max_total
        is None
    )
    l4 = PLUGIN.capabilities(
        config({"virtualService": {"name": "a", "tcpRoutes": [{"port": 1}]}}), FACTS
    )
    assert not l4.header_routes
    assert l4.mirror is MirrorSupport.NONE


def test_permissions() -> None:
    assert {p.resource for p in PLUGIN.permissions(config({"virtualService": {"name": "a"}}))} == {
        "virtualservices"
    }
    both = PLUGIN.permissions(config({"virtualService": {"name": "a"}, "destinationRule": DR}))
    assert {p.resource for p in both} == {"virtualservices", "destinationrules"}
    assert all(set(p.verbs) == {"get", "patch"} for p in both)


# -- targets ------------------------------------------------------------------------------------


def test_targets_follow_the_delegate_once_the_root_is_read() -> None:
    cfg = config({"virtualService": {"name": "root"}, "destinationRule": DR})
    first = list(PLUGIN.targets(cfg, live()))
    assert [r.name for r in first] == ["root", "app"]
    root = vs("root", {"name": "r", "delegate": {"name": "leaf", "namespace": "team"}})
    refs = list(PLUGIN.targets(cfg, live(root, dr())))
    assert ObjectRef("networking.istio.io", "VirtualService", "team", "leaf") in refs


# -- errors before any write --------------------------------------------------------------------


def test_missing_virtual_service_is_named_even_if_others_exist() -> None:
    """No early return: the second VS missing stops the whole plan, cleanup included."""
    cfg = config({"virtualServices": [{"name": "app"}, {"name": "gone"}]})
    for desired in (state(weight=10), Cleanup()):
        with pytest.raises(
            TargetNotFoundError,
            match=r"VirtualService app/gone \(configured at istio.virtualServices\[1\]\)",
        ):
            plan(cfg, live(simple_vs()), desired)


def test_missing_destination_rule_and_subset() -> None:
    cfg = config({"virtualService": {"name": "app"}, "destinationRule": DR})
    with pytest.raises(
        TargetNotFoundError, match=r"DestinationRule app/app .*destinationRule.name"
    ):
        plan(cfg, live(subset_vs()), state(weight=10))
    with pytest.raises(TargetNotFoundError, match=r"subset 'canary'.*subsets: stable"):
        plan(cfg, live(subset_vs(), dr(subsets=("stable",))), state(weight=10))


def test_named_route_missing_lists_the_routes() -> None:
    cfg = config({"virtualService": {"name": "app", "routes": ["nope"]}})
    with pytest.raises(TargetNotFoundError, match=r"http route 'nope' .* routes: http\[primary\]"):
        plan(cfg, live(simple_vs()), state(weight=10))


def test_route_without_canary_destination() -> None:
    cfg = config({"virtualService": {"name": "app", "routes": ["primary"]}})
    objs = live(vs("app", route("primary", dest("svc", 100))))
    with pytest.raises(
        PlanError,
        match=r"http\[primary\] needs destinations for the stable Service 'svc' and the canary Service 'svc-canary'",
    ):
        plan(cfg, objs, state(weight=10))
    twice = live(
        vs(
            "app",
            route(
                "primary", dest("svc", 50, port=1), dest("svc", 50, port=2), dest("svc-canary", 0)
            ),
        )
    )
    with pytest.raises(PlanError, match="2 stable destinations"):
        plan(cfg, twice, state(weight=10))


def test_foreign_weight_leaving_no_room() -> None:
    cfg = config({"virtualService": {"name": "app", "routes": ["primary"]}})
    objs = live(
        vs("app", route("primary", dest("svc", 0), dest("svc-canary", 0), dest("other", 100)))
    )
    with pytest.raises(
        WeightFitError, match=r"http\[primary\]: canary weight 10/100 asks .* keep 100%"
    ):
        plan(cfg, objs, state(weight=10))


def test_route_name_taken_by_someone_else() -> None:
    cfg = config({"virtualService": {"name": "app"}})
    theirs = route("h", dest("elsewhere"), match=[{"uri": {"exact": "/x"}}])
    with pytest.raises(PlanError, match=r"http\[0\] is named 'h' but was not added by us"):
        plan(cfg, live(simple_vs(theirs)), state(headerRoutes=[HEADER]))


def test_managed_route_cannot_be_selected() -> None:
    cfg = config(
        {"virtualService": {"name": "app", "routes": ["h"]}},
        trafficRouting={"managedRoutes": [{"name": "h"}]},
    )
    with pytest.raises(ConfigError, match="'h' is a managed route"):
        plan(cfg, live(simple_vs()), state())


def test_header_and_mirror_on_tls_tcp_only_are_unsupported() -> None:
    cfg = config({"virtualService": {"name": "app", "tcpRoutes": [{"port": 5432}]}})
    objs = live(
        vs(
            "app",
            tcp=[{"match": [{"port": 5432}], "route": [dest("svc", 100), dest("svc-canary", 0)]}],
        )
    )
    for desired in (state(headerRoutes=[HEADER]), state(mirrorRoutes=[MIRROR])):
        binding = bind(routing({"virtualService": {"name": "app", "tcpRoutes": [{"port": 5432}]}}))[
            0
        ]
        with pytest.raises(UnsupportedError):  # the core refuses from the declared capabilities
            check_capabilities(binding, desired, FACTS)
        with pytest.raises(UnsupportedError, match="tls/tcp routes"):  # and so does plan()
            plan(cfg, objs, desired)
    assert weights_of(get(run(cfg, objs, state(weight=30)))["spec"]["tcp"][0]) == [70, 30]


def test_unexpressible_and_disjoint_matches_are_unsupported() -> None:
    cfg = config({"virtualService": {"name": "app"}})
    regex_primary = vs(
        "app",
        route("p", dest("svc", 100), dest("svc-canary", 0), match=[{"uri": {"regex": "/a.*"}}]),
    )
    rx = {"name": "h", "matches": [{"path": {"regex": "/b.*"}}]}
    with pytest.raises(UnsupportedError, match=r"setHeaderRoute 'h'.*cannot be ANDed.*http\[p\]"):
        plan(cfg, live(regex_primary), state(headerRoutes=[rx]))
    api = vs(
        "app",
        route("p", dest("svc", 100), dest("svc-canary", 0), match=[{"uri": {"prefix": "/api"}}]),
    )
    web = {**MIRROR, "matches": [{"path": {"exact": "/web"}}]}
    with pytest.raises(UnsupportedError, match=r"setMirrorRoute 'm'.*no request can satisfy"):
        plan(cfg, live(api), state(mirrorRoutes=[web]))


def test_ambiguous_tls_selector() -> None:
    cfg = config({"virtualService": {"name": "app", "tlsRoutes": [{"port": 443}]}})
    tls = [
        {
            "match": [{"port": 443, "sniHosts": [h]}],
            "route": [dest("svc", 100), dest("svc-canary", 0)],
        }
        for h in ("a", "b")
    ]
    with pytest.raises(ConfigError, match=r"2 routes match \(0, 1\)"):
        plan(cfg, live(vs("app", tls=tls)), state(weight=1))


def test_delegate_errors() -> None:
    cfg = config({"virtualService": {"name": "root", "delegate": "leaf"}})
    root = vs("root", {"name": "r", "delegate": {"name": "other"}})
    with pytest.raises(
        ConfigError, match="no http route delegating to VirtualService app/leaf"
    ) as err:
        plan(cfg, live(root, vs("leaf")), state())
    assert err.value.problems[0].path == "istio.virtualService.routes"
    named = config({"virtualService": {"name": "root", "routes": ["r"], "delegate": "leaf"}})
    with pytest.raises(ConfigError, match="delegates to app/other, not app/leaf"):
        plan(named, live(root, vs("leaf")), state())
    leaf = config({"virtualService": {"name": "root", "delegate": "leaf"}})
    with pytest.raises(ConfigError) as err:
        plan(
            leaf,
            live(
                vs("root", {"name": "r", "delegate": {"name": "leaf"}}),
                vs("leaf", route("x", dest("a"))),
            ),
            state(),
        )
    assert err.value.problems[0].path == "istio.virtualService.delegateRoutes"
    cfg2 = config({"virtualService": {"name": "root"}})
    with pytest.raises(TargetNotFoundError, match=r"delegate VirtualService app/leaf of http\[r\]"):
        plan(cfg2, live(vs("root", {"name": "r", "delegate": {"name": "leaf"}})), state())


# -- behaviour ----------------------------------------------------------------------------------


def test_plan_never_mutates_inputs_and_guards_every_edit() -> None:
    cfg = config({"virtualService": {"name": "app"}, "destinationRule": DR})
    objs = live(subset_vs(), dr())
    before = copy.deepcopy(dict(objs.items()))
    p = plan(
        cfg, objs, state(weight=20, canaryHash="abc", headerRoutes=[HEADER], mirrorRoutes=[MIRROR])
    )
    assert dict(objs.items()) == before
    for op in p:
        assert isinstance(op, Patch)
        assert op.ops[0]["path"] == "/metadata/resourceVersion"
        for i, edit in enumerate(op.ops):
            if edit["op"] == "replace" and edit["path"].endswith("/weight"):
                # Only what the destination's role rests on: its host and (here) subset.
                dest = before[op.ref]["spec"]["http"][0]["route"][int(edit["path"].split("/")[-2])][
                    "destination"
                ]
                base = edit["path"].rsplit("/", 1)[0] + "/destination"
                assert list(op.ops[i - 2 : i]) == [
                    {"op": "test", "path": base + "/host", "value": dest["host"]},
                    {"op": "test", "path": base + "/subset", "value": dest["subset"]},
                ]


def test_mirror_route_follows_weights_and_percentage() -> None:
    cfg = config({"virtualService": {"name": "app"}})
    current = run(cfg, live(simple_vs()), state(weight=10, mirrorRoutes=[MIRROR]))
    obj = get(current)
    assert obj["spec"]["http"][0]["route"] == obj["spec"]["http"][1]["route"]
    current = run(cfg, current, state(weight=40, mirrorRoutes=[{**MIRROR, "percentage": 0.5}]))
    obj = get(current)
    mirror, primary = obj["spec"]["http"]
    assert weights_of(mirror) == weights_of(primary) == [60, 40]
    assert mirror["mirror"] == {"host": "svc-canary"}
    assert mirror["mirrorPercentage"] == {"value": 0.5}
    obs = PLUGIN.observe(cfg, current, FACTS)
    assert obs.mirror_routes == {"m": 0.5}
    assert obs.header_routes == ()
    assert not obs.problems


def test_switching_mirror_field_never_leaves_both() -> None:
    base = {"virtualService": {"name": "app"}}
    current = run(config(base), live(simple_vs()), state(mirrorRoutes=[MIRROR]))
    switched = get(
        run(config({**base, "mirrorField": "mirrors"}), current, state(mirrorRoutes=[MIRROR]))
    )
    m = switched["spec"]["http"][0]
    assert "mirror" not in m
    assert "mirrorPercentage" not in m
    assert m["mirrors"] == [{"destination": {"host": "svc-canary"}, "percentage": {"value": 12.5}}]


def test_header_route_uses_dr_host_canary_subset_and_port() -> None:
    cfg = config({"virtualService": {"name": "app"}, "destinationRule": DR})
    out = get(run(cfg, live(subset_vs(), dr()), state(headerRoutes=[HEADER])))
    assert out["spec"]["http"][0]["route"] == [dest("svc", 100, "canary", 80)]


def test_managed_routes_go_right_before_their_primary_even_behind_a_catch_all() -> None:
    """A copy placed before a foreign catch-all would steal the catch-all's traffic; right
    before the (unreachable) primary it changes nothing, and a warning says so."""
    cfg = config({"virtualService": {"name": "app", "routes": ["primary"]}})
    catch_all = route("catch-all", dest("legacy"))
    before = route("static", dest("cdn"), match=[{"uri": {"prefix": "/static"}}])
    objs = live(
        vs(
            "app",
            before,
            catch_all,
            route(
                "primary",
                dest("svc", 100),
                dest("svc-canary", 0),
                match=[{"uri": {"prefix": "/api"}}],
            ),
        )
    )
    desired = state(headerRoutes=[HEADER], mirrorRoutes=[MIRROR])
    out = get(run(cfg, objs, desired))
    assert http_names(out) == ["static", "catch-all", "h", "m", "primary"]
    (note,) = plan(cfg, objs, desired).notes
    assert note.level == "warning"
    assert "http[primary] comes after http[catch-all]" in note.message


def test_ordering_of_destination_rule_and_virtual_service_patches() -> None:
    cfg = config({"virtualService": {"name": "app"}, "destinationRule": DR})
    up = plan(cfg, live(subset_vs(), dr()), state(weight=20, canaryHash="new"))
    assert [op.ref.kind for op in up] == ["DestinationRule", "VirtualService"]
    at20 = run(cfg, live(subset_vs(), dr()), state(weight=20, canaryHash="old"))
    down = plan(cfg, at20, state(weight=0, canaryHash="newer"))
    assert [op.ref.kind for op in down] == ["VirtualService", "DestinationRule"]


def test_rounding_note_and_relative_totals() -> None:
    cfg = config({"virtualService": {"name": "app"}})
    p = plan(cfg, live(simple_vs()), state(weight=1, total=3))
    assert any("1/3 is written as 33/100" in n.message for n in p.notes)
    exact = plan(
        config({"virtualService": {"name": "app"}, "weightTotal": "state"}),
        live(simple_vs()),
        state(weight=1, total=3),
    )
    assert not exact.notes
    thousand = get(
        run(
            config({"virtualService": {"name": "app"}, "weightTotal": 1000}),
            live(simple_vs()),
            state(weight=7),
        )
    )
    assert weights_of(thousand["spec"]["http"][0]) == [930, 70]


def test_additional_destination_lifecycle() -> None:
    """Ours (appended) go when they leave the state; a pre-existing one is never removed."""
    cfg = config({"virtualService": {"name": "app"}})
    objs = live(
        vs("app", route("primary", dest("svc", 90), dest("svc-canary", 0), dest("exp-old", 10)))
    )
    both = state(
        weight=10,
        additionalDestinations=[
            {"service": "exp-new", "weight": 20},
            {"service": "exp-old", "weight": 5},
        ],
    )
    current = run(cfg, objs, both)
    r = get(current)["spec"]["http"][0]
    assert [d["destination"]["host"] for d in r["route"]] == [
        "svc",
        "svc-canary",
        "exp-old",
        "exp-new",
    ]
    assert weights_of(r) == [65, 10, 5, 20]
    obs = PLUGIN.observe(cfg, current, FACTS)
    assert obs.weights[0].additional == (("exp-new", 20), ("exp-old", 5))
    current = run(cfg, current, state(weight=10))
    r = get(current)["spec"]["http"][0]
    # exp-new (ours) is gone; exp-old (pre-existing) stays as a foreign destination with its
    # weight and its 5% share; the canary gets its 10% of all traffic, stable the rest.
    assert [d["destination"]["host"] for d in r["route"]] == ["svc", "svc-canary", "exp-old"]
    assert weights_of(r) == [85, 10, 5]


def test_cleanup_removes_ledger_and_dr_subsets_vs_first() -> None:
    cfg = config({"virtualService": {"name": "app"}, "destinationRule": DR})
    busy = state(
        weight=20,
        canaryHash="c1",
        stableHash="s1",
        additionalDestinations=[{"service": "exp", "weight": 5, "podTemplateHash": "e1"}],
        headerRoutes=[HEADER],
    )
    current = run(cfg, live(subset_vs(), dr()), busy)
    assert [s["name"] for s in get(current, "DestinationRule")["spec"]["subsets"]] == [
        "stable",
        "canary",
        "exp",
    ]
    p = plan(cfg, current, Cleanup())
    assert [op.ref.kind for op in p] == ["VirtualService", "DestinationRule"]
    cleaned = run(cfg, current, Cleanup())
    obj = get(cleaned)
    assert http_names(obj) == ["primary"]
    assert weights_of(obj["spec"]["http"][0]) == [100, 0]
    assert LEDGER not in (obj["metadata"].get("annotations") or {})
    d = get(cleaned, "DestinationRule")
    assert [s["name"] for s in d["spec"]["subsets"]] == ["stable", "canary"]
    assert d["spec"]["subsets"][0]["labels"] == {"app": "svc", "rollouts-pod-template-hash": "s1"}


def test_observe_reports_weights_routes_and_drift() -> None:
    cfg = config({"virtualService": {"name": "app"}})
    current = run(
        cfg, live(simple_vs()), state(weight=30, headerRoutes=[HEADER], mirrorRoutes=[MIRROR])
    )
    obs = PLUGIN.observe(cfg, current, FACTS)
    (w,) = obs.weights
    assert (w.location, w.stable, w.canary) == ("VirtualService app/app http[primary]", 70, 30)
    assert obs.header_routes == ("h",)
    assert obs.mirror_routes == {"m": 12.5}
    assert not obs.problems
    drifted = copy.deepcopy(get(current))
    drifted["spec"]["http"] = [r for r in drifted["spec"]["http"] if r["name"] != "h"]
    drifted["spec"]["http"][-1]["route"][0]["weight"] = 50
    obs = PLUGIN.observe(cfg, live(drifted), FACTS)
    assert any("managed route 'h' is missing" in p for p in obs.problems)
    assert any("mirror route 'm' serves different destinations" in p for p in obs.problems)
    gone = PLUGIN.observe(cfg, live(), FACTS)
    assert gone.problems and "app/app" in gone.problems[0]


def test_example_plans_and_fits_the_offline_pipeline() -> None:
    from pathlib import Path

    from routers.engine import plan_offline
    from routers.io import load_documents, load_one
    from routers.model import RoutingConfig, TrafficState

    ex = Path(__file__).resolve().parents[3] / "examples" / "istio"
    cfg = RoutingConfig.from_document(load_one(str(ex / "routing.yaml")))
    desired = TrafficState.parse(load_one(str(ex / "state.yaml")))
    result = plan_offline(cfg, desired, load_documents([str(ex / "live.yaml")]))
    after = {r.kind: o for r, o in result.after.items() if o is not None}
    names = [r.get("name") for r in after["VirtualService"]["spec"]["http"]]
    assert names == [
        "admin",
        "canary-header",
        "canary-mirror",
        "mobile",
        "canary-header.2",
        "canary-mirror.2",
        "primary",
    ]
    subsets = {s["name"]: s["labels"] for s in after["DestinationRule"]["spec"]["subsets"]}
    assert subsets["canary"]["rollouts-pod-template-hash"] == "85c4d9f8b7"
    assert subsets["legacy"] == {"app": "checkout", "version": "v1"}


def test_replacing_one_managed_route_by_another_keeps_the_block_in_place() -> None:
    """Regression: the anchor was computed from indices shifted by the removal."""
    cfg = config({"virtualService": {"name": "app"}})
    admin = route("admin", dest("admin"), match=[{"uri": {"prefix": "/admin"}}])
    current = run(cfg, live(simple_vs(admin)), state(headerRoutes=[HEADER]))
    assert http_names(get(current)) == ["admin", "h", "primary"]
    swapped = run(cfg, current, state(headerRoutes=[{**HEADER, "name": "h2"}]))
    assert http_names(get(swapped)) == ["admin", "h2", "primary"]


def test_additional_destination_changing_form_replaces_ours() -> None:
    """An experiment that gains a pod-template hash moves from a host-level destination to a
    DestinationRule subset; the old destination was ours, so it goes."""
    cfg = config({"virtualService": {"name": "app"}, "destinationRule": DR})
    host_level = state(weight=10, additionalDestinations=[{"service": "exp", "weight": 10}])
    current = run(cfg, live(subset_vs(), dr()), host_level)
    entries = get(current)["spec"]["http"][0]["route"]
    assert entries[2] == {"destination": {"host": "exp"}, "weight": 10}
    subset = state(
        weight=10,
        additionalDestinations=[{"service": "exp", "weight": 10, "podTemplateHash": "e1"}],
    )
    current = run(cfg, current, subset)
    entries = get(current)["spec"]["http"][0]["route"]
    assert [e["destination"] for e in entries[2:]] == [{"host": "svc", "subset": "exp"}]
    assert weights_of(get(current)["spec"]["http"][0]) == [80, 10, 10]


def test_copy_suffix_is_a_full_match() -> None:
    """A foreign route named ``canary-header.2\\n`` is not a copy of managed route
    ``canary-header`` (``$`` matched before the newline), so cleanup never takes it."""
    from routers_istio.routes import copy_name, managed_name

    assert managed_name(copy_name("canary-header", 1)) == "canary-header"
    assert managed_name("canary-header.2\n") == "canary-header.2\n"


# -- cleanup gives rescaled foreign destinations their weights back ---------------------------


def _legacy_vs(stable: int, legacy: int, name: str | None = "primary") -> dict[str, Any]:
    r = route(name or "x", dest("svc", stable), dest("svc-canary", 0), dest("legacy", legacy))
    if name is None:
        del r["name"]
        r["match"] = [{"uri": {"prefix": "/"}}]
    return vs("app", r)


@pytest.mark.parametrize(
    ("stable", "legacy", "rescaled"),
    [
        (100, 10, 9),  # 10 of 110 in a total of 100: rounded (9 of 100), no exact factor
        (180, 20, 10),  # 20 of 200: exactly half
    ],
)
def test_cleanup_gives_rescaled_foreign_destinations_their_weights_back(
    stable: int, legacy: int, rescaled: int
) -> None:
    """Istio weights are written in the state's total, so a route whose weights sum to more
    rescales the destination we do not own; the ledger keeps its weight (and our sum) and
    cleanup restores the route as it was, like Gateway API, SMI and Traefik (one helper,
    ``weights.give_back``)."""
    cfg = config({"virtualService": {"name": "app", "routes": ["primary"]}})
    after = run(cfg, live(_legacy_vs(stable, legacy)), state(weight=20))
    primary = get(after)["spec"]["http"][0]
    assert weights_of(primary) == [100 - 20 - rescaled, 20, rescaled]
    assert '"foreign"' in get(after)["metadata"]["annotations"][LEDGER]
    again = run(cfg, after, state(weight=40))  # a later step keeps the remembered weight
    cleaned = run(cfg, again, Cleanup())
    assert weights_of(get(cleaned)["spec"]["http"][0]) == [stable, 0, legacy]
    assert LEDGER not in (get(cleaned)["metadata"].get("annotations") or {})
    # Changed by someone else meanwhile: theirs to set; stable takes what we held.
    edited = copy.deepcopy(get(after))
    edited["spec"]["http"][0]["route"][2]["weight"] = 7
    kept = run(cfg, live(edited), Cleanup())
    assert weights_of(get(kept)["spec"]["http"][0]) == [100 - rescaled, 0, 7]


def test_give_back_finds_an_unnamed_route_after_managed_routes_shift_it() -> None:
    """The record is keyed by the route's name, else its match: our header route, inserted
    before it, moves its index."""
    cfg = config({"virtualService": {"name": "app"}})
    desired = state(weight=20, headerRoutes=[HEADER])
    after = run(cfg, live(_legacy_vs(100, 10, name=None)), desired)
    assert [weights_of(r) for r in get(after)["spec"]["http"]][-1] == [71, 20, 9]
    cleaned = run(cfg, after, Cleanup())
    assert [weights_of(r) for r in get(cleaned)["spec"]["http"]] == [[100, 0, 10]]


@pytest.mark.parametrize("name", ["uri", "URI", "method", "Authority", "scheme"])
def test_header_names_istio_ignores_are_refused(name: str) -> None:
    # Istio ignores match conditions on these header keys: a route on one would take every
    # request (found by the equivalence property: a 0.5% mirror on header URI mirrored all).
    header = {"name": "h", "matches": [{"headers": [{"name": name, "exact": "0"}]}]}
    mirror = {
        "name": "m",
        "percentage": 0.5,
        "matches": [{"headers": [{"name": name, "exact": "0"}]}],
    }
    binding = bind(routing({"virtualService": {"name": "app"}}))[0]
    for desired, kind in (
        (state(headerRoutes=[header]), "setHeaderRoute 'h'"),
        (state(mirrorRoutes=[mirror]), "setMirrorRoute 'm'"),
    ):
        with pytest.raises(UnsupportedError, match=rf"{kind}.*header '{name}' cannot be matched"):
            check_capabilities(binding, desired, FACTS)
    ok = {"name": "h", "matches": [{"headers": [{"name": "x-uri", "exact": "0"}]}]}
    check_capabilities(binding, state(headerRoutes=[ok]), FACTS)
