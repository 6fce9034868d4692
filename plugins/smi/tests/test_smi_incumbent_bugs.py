"""One test per incumbent behaviour the SMI half of issue 5 is about.

The issue cites no numbered SMI bug; the SMI routers of Argo Rollouts (``rollout/trafficrouting/
smi/smi.go``, research notes §3.3) and Flagger (``pkg/router/smi*.go``, §1.3) show these, plus the
Argo bugs whose root cause they share (numbers from argoproj/argo-rollouts, fluxcd/flagger).
"""

from __future__ import annotations

import pytest
from smi_helpers import (
    CANARY,
    CLEANUP,
    HEADER,
    LINKERD,
    PLUGIN,
    SDK,
    STABLE,
    config,
    deletes,
    group_of,
    ledger_of,
    live,
    patches,
    plan,
    routing,
    run,
    split_of,
    state,
    traffic_split,
    weights_of,
)

from routers.engine import bind, plan_all
from routers.errors import UnsupportedError


def test_argo_smi_set_header_route_is_not_a_silent_noop() -> None:
    """Argo's SMI SetHeaderRoute returns nil: the step 'succeeds' and nothing routes."""
    r = routing()
    with pytest.raises(UnsupportedError, match="header-based routing is not supported"):
        plan_all(bind(r), live(), state(headerRoutes=[HEADER]), LINKERD, routing=r)
    with pytest.raises(UnsupportedError) as exc:
        plan(config(), live(), state(headerRoutes=[HEADER]), LINKERD)
    assert exc.value.hint is not None and "gatewayapi" in exc.value.hint


def test_argo_smi_set_mirror_route_is_not_a_silent_noop() -> None:
    """Argo's SMI SetMirrorRoute returns nil; SMI has no mirroring at all."""
    mirror = {"name": "shadow", "matches": [{"headers": [{"name": "X-Shadow", "exact": "1"}]}]}
    r = routing()
    with pytest.raises(UnsupportedError, match="traffic mirroring is not supported"):
        plan_all(bind(r), live(), state(mirrorRoutes=[mirror]), SDK, routing=r)


def test_argo_smi_foreign_traffic_split_is_patched_not_refused() -> None:
    """Argo errors with "Rollout does not own TrafficSplit" on a split someone else made; we edit
    our backends in place, guarded, and leave the object's ownership alone."""
    ts = traffic_split((STABLE, 100), (CANARY, 0))
    ts["metadata"]["ownerReferences"] = [
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "web", "uid": "r-1"}
    ]
    p, after = run(config(), live(ts), state(weight=25))
    assert weights_of(split_of(after)) == {STABLE: 75, CANARY: 25}
    assert split_of(after)["metadata"]["ownerReferences"] == ts["metadata"]["ownerReferences"]
    assert patches(p)[0].ops[0]["path"] == "/metadata/resourceVersion"


def test_argo_3125_foreign_backend_survives() -> None:
    """Argo rebuilds spec.backends wholesale (canary, additional, stable) and drops any other
    backend, as its Istio router dropped other destinations (#3125). Here it keeps its entry and
    its share (5/105), and the canary gets 40% of all requests (the weight rule)."""
    ts = traffic_split((STABLE, 90), ("payments-legacy", 5), (CANARY, 10))
    _, after = run(config(), live(ts), state(weight=40))
    assert split_of(after)["spec"]["backends"] == [
        {"service": STABLE, "weight": 58},
        {"service": "payments-legacy", "weight": 5},
        {"service": CANARY, "weight": 42},
    ]
    _, cleaned = run(config(), after, CLEANUP)
    assert weights_of(split_of(cleaned)) == {STABLE: 100, "payments-legacy": 5, CANARY: 0}


def test_argo_4424_weights_never_negative() -> None:
    """Stable = 100 - canary - sum(additional) went negative; ours is validated and exact."""
    s = state(
        weight=60,
        additionalDestinations=[
            {"service": "exp-a", "weight": 30},
            {"service": "exp-b", "weight": 10},
        ],
    )
    _, after = run(config(), live(), s)
    backends = split_of(after)["spec"]["backends"]
    assert [b["weight"] for b in backends] == [0, 60, 30, 10]
    assert all(b["weight"] >= 0 for b in backends)


def test_argo_4646_total_is_not_hard_coded_to_100() -> None:
    """Argo's SMI router computes stable as 100 - desired; a maxTrafficWeight of 1000 breaks."""
    r = routing(maxTrafficWeight=1000)
    (binding,) = bind(r)
    _p, after = run(binding.config, live(), state(weight=125, total=1000))
    assert weights_of(split_of(after)) == {STABLE: 875, CANARY: 125}


def test_argo_4751_cleanup_deletes_the_split_we_created() -> None:
    """Argo leaves its TrafficSplit behind (RemoveManagedRoutes is a no-op); cleanup deletes
    what we created, guarded by uid, and the HTTPRouteGroup with it."""
    _, with_route = run(config(), live(), state(headerRoutes=[HEADER]))
    created = {r: dict(o) for r, o in with_route.items()}
    for r, o in created.items():
        o["metadata"] = {**o["metadata"], "uid": f"uid-{r.kind}", "resourceVersion": "7"}
    p, after = run(config(), live(*created.values()), CLEANUP)
    assert [(d.ref.kind, d.uid) for d in deletes(p)] == [
        ("TrafficSplit", "uid-TrafficSplit"),
        ("HTTPRouteGroup", "uid-HTTPRouteGroup"),
    ]
    assert not list(after)


def test_argo_4716_header_route_is_reasserted() -> None:
    """A header route lost outside its step never came back (#4716, #4486); planning the same
    state restores the group and the reference."""
    ts = traffic_split((STABLE, 0), (CANARY, 100), owned=True, book={"matches": ["web-routes"]})
    p, after = run(config(), live(ts), state(headerRoutes=[HEADER]))
    assert [op.verb for op in p] == ["create", "patch"]
    assert split_of(after)["spec"]["matches"] == [{"kind": "HTTPRouteGroup", "name": "web-routes"}]
    assert group_of(after) is not None
    assert PLUGIN.observe(config(), after, SDK).header_routes == ("canary-header",)


def test_flagger_1840_linkerd_header_routing_points_to_gateway_api() -> None:
    """Flagger #1840: SMI is dead for Linkerd; header routing there means HTTPRoute."""
    caps = PLUGIN.capabilities(config(), LINKERD)
    assert not caps.header_routes
    assert any("gatewayapi" in n and "v1alpha2" in n for n in caps.notes)


def test_flagger_1777_header_route_with_weight_is_explicit() -> None:
    """Flagger #1777: any match silently forces A/B mode. Here a header route with a weight is
    refused with the reason, or planned only when the config accepts unmatched -> root."""
    with pytest.raises(UnsupportedError, match="bypass its backends"):
        plan(config(), live(), state(weight=20, headerRoutes=[HEADER]))
    p = plan(config(acceptUnmatchedToRoot=True), live(), state(weight=20, headerRoutes=[HEADER]))
    assert any(n.level == "warning" for n in p.notes)


def test_flagger_linkerd_v1alpha1_quantities_become_integers() -> None:
    """Flagger writes v1alpha1 weights as resource.Quantity; linkerd-smi serves v1alpha1 and
    v1alpha2 with conversion None, so v1alpha2 readers would get the strings. We write ints."""
    ts = traffic_split((STABLE, "1"), (CANARY, "0"), version="v1alpha1")
    _, after = run(config(apiVersion="v1alpha1"), live(ts), state(weight=10), LINKERD)
    backends = split_of(after)["spec"]["backends"]
    assert backends == [{"service": STABLE, "weight": 90}, {"service": CANARY, "weight": 10}]
    assert ledger_of(split_of(after)) == {}
