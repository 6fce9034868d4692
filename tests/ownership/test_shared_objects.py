"""Two apps (owners) sharing one VirtualService, HTTPRoute/GRPCRoute, Ingress or namespace of
TrafficSplits (issue 13, part 1). The objects are tests/ownership/legacy/<target>/live.yaml:
app ``a`` at /a, app ``b`` at /b, plus things neither owns.

Each owner's plan adds, changes and removes only what it recorded; a name or a weighted route
another owner holds is a typed error and nothing is written.
"""

from __future__ import annotations

import copy
import json

import pytest

from routers.errors import OwnershipConflictError
from routers.model import Cleanup, TrafficState
from routers.planning.ownership import LEDGER
from tests.ownership.owners import (
    World,
    config,
    entries,
    http_names,
    objects,
    owners_of,
    state,
    stripped,
)

A_ISTIO, B_ISTIO = "Rollout shop/a", "Rollout shop/b"
A_GW, B_GW = "shop/a-canary", "Rollout shop/b"
TARGETS = ("istio", "gatewayapi", "nginx", "smi")


def both(target: str) -> World:
    """A applied its state (header route, mirror route, ...), then B applied its own."""
    world = World(objects(target))
    world.run(config(target, "a"), state(target, "a"))
    world.run(config(target, "b"), state(target, "b"))
    return world


# -- the defect: B's plan and B's cleanup lose nothing of A's ----------------------------------------


def test_istio_b_plan_keeps_a_header_route_and_ledger_entry() -> None:
    world = World(objects("istio"))
    world.run(config("istio", "a"), state("istio", "a"))
    vs = world.get("VirtualService", "shop")
    assert http_names(vs)[:3] == ["a-header", "a-mirror", "a-primary"]
    world.run(config("istio", "b"), state("istio", "b"))
    vs = world.get("VirtualService", "shop")
    assert http_names(vs) == ["a-header", "a-mirror", "a-primary", "b-header", "b-primary", "rest"]
    assert entries(vs, A_ISTIO)["routes"] == ["a-header", "a-mirror"]
    assert entries(vs, A_ISTIO)["destinations"] == ["a-exp"]
    assert entries(vs, B_ISTIO)["routes"] == ["b-header"]
    # Neither owner's plan wants to change anything afterwards.
    for who in ("a", "b"):
        assert all(p.empty for p in world.plan(config("istio", who), state("istio", who)))


def test_istio_b_cleanup_keeps_a_routes_then_a_cleanup_restores_the_original() -> None:
    world = both("istio")
    world.run(config("istio", "b"), Cleanup())
    vs = world.get("VirtualService", "shop")
    assert http_names(vs) == ["a-header", "a-mirror", "a-primary", "b-primary", "rest"]
    assert owners_of(vs) == [A_ISTIO]
    b_primary = vs["spec"]["http"][3]["route"]
    assert [d["weight"] for d in b_primary] == [100, 0]
    world.run(config("istio", "a"), Cleanup())
    original = World(objects("istio")).snapshot()
    now = world.snapshot()
    assert now[next(r for r in now if r.kind == "VirtualService")] == next(
        o for r, o in original.items() if r.kind == "VirtualService"
    )


@pytest.mark.parametrize("target", TARGETS)
def test_each_owner_cleanup_leaves_exactly_the_other(target: str) -> None:
    original = World(objects(target)).snapshot()
    a_only = World(objects(target))
    a_only.run(config(target, "a"), state(target, "a"))
    world = both(target)
    world.run(config(target, "b"), Cleanup())
    assert world.snapshot() == a_only.snapshot()
    world.run(config(target, "a"), Cleanup())
    assert _no_hashes(world.snapshot()) == _no_hashes(original)


@pytest.mark.parametrize("target", TARGETS)
def test_same_state_twice_is_empty_for_every_owner_in_any_order(target: str) -> None:
    world = both(target)
    for who in ("b", "a", "b"):
        plans = world.plan(config(target, who), state(target, who))
        assert all(p.empty for p in plans), [p.to_data() for p in plans]


def test_gatewayapi_b_keeps_a_rules_on_both_routes() -> None:
    world = both("gatewayapi")
    http = world.get("HTTPRoute", "shop")
    grpc = world.get("GRPCRoute", "shop-grpc")
    for route, theirs in ((http, 3), (grpc, 2)):
        # v1.2.1 standard has no rule names: managed rules are found by their recorded content.
        assert len(route["spec"]["rules"]) == theirs + 3
        assert sorted(entries(route, A_GW)["rules"]) == ["a-header", "a-mirror"]
        assert sorted(entries(route, B_GW)["rules"]) == ["b-header"]
    # b-pages keeps its foreign backend's share; a's experiment ref is a's.
    b_pages = next(r for r in http["spec"]["rules"] if r.get("name") == "b-pages")
    assert [x["name"] for x in b_pages["backendRefs"]] == ["b-stable", "b-canary", "b-legacy"]
    a_pages = next(r for r in http["spec"]["rules"] if r.get("name") == "a-pages")
    assert [x["name"] for x in a_pages["backendRefs"]] == ["a-stable", "a-canary", "a-exp"]


def test_nginx_two_rollouts_on_one_stable_ingress_get_one_canary_each() -> None:
    world = both("nginx")
    a = world.get("Ingress", "a-shop-canary")
    b = world.get("Ingress", "b-shop-canary")
    paths = {
        name: [p["path"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
        for name, ing in (("a", a), ("b", b))
    }
    assert paths == {"a": ["/a"], "b": ["/b"]}
    assert a["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header"] == "x-app-a"
    stable = world.get("Ingress", "shop")
    assert entries(stable, "Rollout shop/a") == {
        "canaryIngress": ["a-shop-canary"],
        "service": ["a-stable"],
    }
    assert entries(stable, "Rollout shop/b") == {
        "canaryIngress": ["b-shop-canary"],
        "service": ["b-stable"],
    }


# -- observe / verify see only the owner's own routes ---------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_observe_and_verify_are_per_owner(target: str) -> None:
    from routers.contract import ClusterFacts
    from routers.engine import bind, gather, observe_all, verify
    from routers.planning.objects import LiveObjects

    world = both(target)
    for who, other in (("a", "b"), ("b", "a")):
        cfg = config(target, who)
        bindings = bind(cfg)
        live = gather(bindings, LiveObjects(world.objects.items()).get)
        facts = ClusterFacts()
        observations = observe_all(bindings, live, facts)
        report = verify(bindings, observations, state(target, who), facts)
        assert report.ok, (who, report.mismatches)
        seen = {n for o in observations for n in (*o.header_routes, *o.mirror_routes)}
        assert not set(state(target, other).route_names) & seen


# -- re-assertion: what someone removed comes back, for its owner only ------------------------


def test_istio_removed_route_is_reasserted_by_its_owner_only() -> None:
    world = both("istio")
    vs = world.get("VirtualService", "shop")
    vs["spec"]["http"] = [r for r in vs["spec"]["http"] if r["name"] != "a-header"]
    assert all(p.empty for p in world.plan(config("istio", "b"), state("istio", "b")))
    world.run(config("istio", "a"), state("istio", "a"))
    assert http_names(world.get("VirtualService", "shop"))[:3] == [
        "a-header",
        "a-mirror",
        "a-primary",
    ]


def test_gatewayapi_removed_rule_is_reasserted_by_its_owner_only() -> None:
    world = both("gatewayapi")
    route = world.get("HTTPRoute", "shop")
    full = copy.deepcopy(route["spec"]["rules"])
    b_header = [
        r for r in full if [x["name"] for x in r["backendRefs"]] == ["b-canary"]
    ]  # the header rule: b's canary only
    assert len(b_header) == 1
    route["spec"]["rules"] = [r for r in full if r is not b_header[0] and r != b_header[0]]
    assert all(p.empty for p in world.plan(config("gatewayapi", "a"), state("gatewayapi", "a")))
    world.run(config("gatewayapi", "b"), state("gatewayapi", "b"))
    assert world.get("HTTPRoute", "shop")["spec"]["rules"] == full


# -- claims: typed errors, nothing written --------------------------------------------------------


def _with_header(weight: int, name: str) -> TrafficState:
    route = {"name": name, "matches": [{"headers": [{"name": "x", "exact": "y"}]}]}
    return TrafficState.parse({"weight": weight, "headerRoutes": [route]})


def _refused(world: World, routing: object, desired: object, match: str) -> OwnershipConflictError:
    before = copy.deepcopy(world.objects)
    with pytest.raises(OwnershipConflictError, match=match) as exc:
        world.run(routing, desired)  # type: ignore[arg-type]
    assert world.objects == before
    return exc.value


def test_istio_two_owners_never_hold_one_route_name() -> None:
    world = both("istio")
    b_state = _with_header(40, "a-header")
    err = _refused(
        world,
        config(
            "istio",
            "b",
            trafficRouting={"istio": {"virtualService": {"name": "shop", "routes": ["b-primary"]}}},
        ),
        b_state,
        "http route name 'a-header' is held by owner 'Rollout shop/a'",
    )
    assert (err.owner, err.holder) == (B_ISTIO, A_ISTIO)


def test_istio_managed_routes_naming_another_owners_route_never_take_it() -> None:
    """Argo's managedRoutes hand a route without a ledger entry over; another owner's is not."""
    world = both("istio")
    cfg = config(
        "istio",
        "b",
        trafficRouting={
            "managedRoutes": [{"name": "b-header"}, {"name": "a-header"}],
            "istio": {"virtualService": {"name": "shop", "routes": ["b-primary"]}},
        },
    )
    world.run(cfg, Cleanup())
    assert "a-header" in http_names(world.get("VirtualService", "shop"))


SHARED_ROUTE = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"},
    "spec": {
        "hosts": ["web"],
        "http": [
            {
                "name": "main",
                "route": [
                    {"destination": {"host": "web"}, "weight": 100},
                    {"destination": {"host": "web-canary"}, "weight": 0},
                    {"destination": {"host": "web-canary-b"}, "weight": 0},
                ],
            }
        ],
    },
}


def _istio(canary: str, rollout: str) -> object:
    from routers.model import RoutingConfig

    return RoutingConfig.from_document(
        {
            "namespace": "shop",
            "stableService": "web",
            "canaryService": canary,
            "rollout": {"name": rollout},
            "istio": {"virtualService": {"name": "web", "routes": ["main"]}},
        }
    )


def test_istio_two_owners_never_weight_one_route() -> None:
    """Same stable Service, different canaries, one route: each would rescale the stable
    destination the other sets, forever. The second owner is refused."""
    world = World([SHARED_ROUTE])
    world.run(_istio("web-canary", "a"), TrafficState(weight=20))  # type: ignore[arg-type]
    err = _refused(
        world, _istio("web-canary-b", "b"), TrafficState(weight=10), "the weights of http\\[main\\]"
    )
    assert err.holder == "Rollout shop/a"
    world.run(_istio("web-canary", "a"), Cleanup())  # type: ignore[arg-type]
    world.run(_istio("web-canary-b", "b"), TrafficState(weight=10))  # type: ignore[arg-type]
    weights = [d["weight"] for d in world.get("VirtualService", "web")["spec"]["http"][0]["route"]]
    assert weights == [90, 0, 10]


def test_istio_two_owners_never_hold_one_subset() -> None:
    """A second app on a's DestinationRule (its own subsets and route) may not take over the
    experiment subset a created."""
    live = objects("istio")
    vs, dr = (
        next(o for o in live if o["kind"] == k) for k in ("VirtualService", "DestinationRule")
    )
    dr["spec"]["subsets"] += [
        {"name": "stable2", "labels": {"app": "a2"}},
        {"name": "canary2", "labels": {"app": "a2"}},
    ]
    host = "a.shop.svc.cluster.local"
    vs["spec"]["http"].insert(
        2,
        {
            "name": "a2-primary",
            "match": [{"uri": {"prefix": "/a2"}}],
            "route": [
                {"destination": {"host": host, "subset": "stable2"}, "weight": 100},
                {"destination": {"host": host, "subset": "canary2"}, "weight": 0},
            ],
        },
    )
    world = World(live)
    world.run(config("istio", "a"), state("istio", "a"))
    a2 = config(
        "istio",
        "b",
        rollout={"name": "a2"},
        trafficRouting={
            "istio": {
                "virtualService": {"name": "shop", "routes": ["a2-primary"]},
                "destinationRule": {
                    "name": "a",
                    "stableSubsetName": "stable2",
                    "canarySubsetName": "canary2",
                },
            }
        },
    )
    exp = TrafficState.parse(
        {
            "weight": 10,
            "canaryHash": "c2",
            "additionalDestinations": [{"service": "a-exp", "weight": 5, "podTemplateHash": "e2"}],
        }
    )
    err = _refused(world, a2, exp, "subset 'a-exp' is held by owner 'Rollout shop/a'")
    assert "pod-template-hash" in str(err)
    world.run(a2, TrafficState(weight=10, canaryHash="c2"))  # its own subsets are fine
    dr_now = world.get("DestinationRule", "a")
    assert json.loads(dr_now["metadata"]["annotations"][LEDGER])["owners"]["Rollout shop/a2"] == {
        "labels": ["canary2"]
    }


def test_gatewayapi_two_owners_never_hold_one_rule_name_or_weight_one_rule() -> None:
    world = both("gatewayapi")
    b_state = _with_header(50, "a-header")
    b_cfg = config(
        "gatewayapi",
        "b",
        trafficRouting={
            "plugins": {
                "argoproj-labs/gatewayAPI": {
                    "httpRoutes": [{"name": "shop", "useHeaderRoutes": True}],
                    "crdBundleVersion": "v1.2.1",
                }
            }
        },
    )
    _refused(world, b_cfg, b_state, "managed rule 'a-header' is held by owner 'shop/a-canary'")
    # An owner whose Services a's rule carries too: the rule is a's.
    route = world.get("HTTPRoute", "shop")
    a_pages = next(r for r in route["spec"]["rules"] if r.get("name") == "a-pages")
    a_pages["backendRefs"].append(
        {"group": "", "kind": "Service", "name": "c-canary", "port": 8080, "weight": 0}
    )
    c_cfg = config(
        "gatewayapi", "b", stableService="a-stable", canaryService="c-canary", rollout={"name": "c"}
    )
    _refused(world, c_cfg, TrafficState(weight=5), "the weights of rules\\[\\d\\] \\(a-pages\\)")


def test_nginx_same_stable_service_twice_is_refused() -> None:
    world = both("nginx")
    twin = config(
        "nginx", "b", stableService="a-stable", canaryService="a2-canary", rollout={"name": "a2"}
    )
    err = _refused(world, twin, TrafficState(weight=5), "the paths of stable Service 'a-stable'")
    assert "one canary per host and path" in str(err)


def test_nginx_two_owners_without_rollouts_cannot_share_a_canary_ingress() -> None:
    world = World(objects("nginx"))
    plain_a = config("nginx", "a", rollout=None)
    plain_b = config("nginx", "b", rollout=None)
    del_rollout = [c.model_copy(update={"rollout": None}) for c in (plain_a, plain_b)]
    world.run(del_rollout[0], TrafficState(weight=5))
    err = _refused(world, del_rollout[1], TrafficState(weight=5), "canary Ingress shop-canary")
    assert err.hint is not None and "<rollout>-shop-canary" in err.hint


def test_smi_a_traffic_split_and_its_route_group_have_one_owner() -> None:
    world = both("smi")
    on_a = config(
        "smi", "b", trafficRouting={"smi": {"trafficSplitName": "a", "apiVersion": "v1alpha4"}}
    )
    _refused(world, on_a, TrafficState(weight=5), "TrafficSplit a is held by owner 'shop/a-canary'")
    group = config(
        "smi",
        "b",
        trafficRouting={
            "smi": {
                "trafficSplitName": "b",
                "apiVersion": "v1alpha4",
                "httpRouteGroupName": "a-routes",
            }
        },
    )
    header = TrafficState.parse(
        {
            "weight": 0,
            "headerRoutes": [
                {"name": "b-header", "matches": [{"headers": [{"name": "x", "exact": "y"}]}]}
            ],
        }
    )
    _refused(world, group, header, "HTTPRouteGroup a-routes is held by owner 'shop/a-canary'")
    # b's cleanup with a's names never touches a's objects.
    before = copy.deepcopy(world.get("TrafficSplit", "a"))
    world.run(on_a, Cleanup())
    assert world.get("TrafficSplit", "a") == before


def test_thirdparty_configmap_keys_per_owner(cm_registry: object) -> None:
    from routers.model import RoutingConfig

    def cfg(key: str, canary: str) -> RoutingConfig:
        return RoutingConfig.from_document(
            {
                "namespace": "shop",
                "stableService": "web",
                "canaryService": canary,
                "plugins": {"example.com/configmap": {"configMap": "weights", "key": key}},
            }
        )

    world = World([], registry=cm_registry)  # type: ignore[arg-type]
    world.run(cfg("a.json", "a-canary"), TrafficState(weight=10))
    world.run(cfg("b.json", "b-canary"), TrafficState(weight=20))
    cm = world.get("ConfigMap", "weights")
    assert sorted(cm["data"]) == ["a.json", "b.json"]
    assert json.loads(cm["metadata"]["annotations"][LEDGER])["owners"] == {
        "shop/a-canary": {"keys": ["a.json"]},
        "shop/b-canary": {"keys": ["b.json"]},
    }
    _refused(world, cfg("a.json", "c-canary"), TrafficState(weight=1), "key 'a.json'")
    world.run(cfg("a.json", "a-canary"), Cleanup())  # created by a, but b still has a key
    cm = world.get("ConfigMap", "weights")
    assert json.loads(cm["data"]["a.json"]) == {"web": 1}
    assert owners_of(cm) == ["shop/b-canary"]
    world.run(cfg("b.json", "b-canary"), Cleanup())  # the last owner deletes it
    assert world.find("ConfigMap", "weights") is None


def _no_hashes(snapshot: dict[object, dict]) -> dict[object, dict]:
    """DestinationRule subset hash labels are set by the state and deliberately left by cleanup."""
    out = {}
    for ref, obj in snapshot.items():
        clean = copy.deepcopy(obj)
        for subset in (clean.get("spec") or {}).get("subsets") or []:
            (subset.get("labels") or {}).pop("rollouts-pod-template-hash", None)
        out[ref] = clean
    return out


def test_stripped_is_stable() -> None:
    assert stripped({"metadata": {"resourceVersion": "1", "name": "x"}}) == {
        "metadata": {"name": "x"}
    }


def test_cli_refuses_a_held_route_name_with_exit_1(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """`routers plan` on objects where another owner holds the name: one line, exit 1."""
    from pathlib import Path

    from routers.cli import main
    from routers.io import dump_yaml
    from tests.ownership.owners import ROOT

    tmp = Path(str(tmp_path))
    world = World(objects("istio"))
    world.run(config("istio", "a"), state("istio", "a"))
    (tmp / "live.yaml").write_text(dump_yaml(list(world.objects.values())))
    (tmp / "state.yaml").write_text(
        json.dumps(
            {
                "weight": 5,
                "headerRoutes": [
                    {"name": "a-header", "matches": [{"headers": [{"name": "x", "exact": "y"}]}]}
                ],
            }
        )
    )
    b = tmp / "b.yaml"
    b.write_text(
        (ROOT / "istio" / "b.yaml").read_text().replace("[{name: b-header}]", "[{name: a-header}]")
    )
    code = main(
        [
            "plan",
            "--config",
            str(b),
            "--state",
            str(tmp / "state.yaml"),
            "-f",
            str(tmp / "live.yaml"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "http route name 'a-header' is held by owner 'Rollout shop/a'" in err
    assert "Traceback" not in err
