"""One test per incumbent bug the NGINX issue cites (Argo Rollouts, Flagger)."""

from __future__ import annotations

import json

import pytest
from nginx_fixtures import (
    NS,
    P,
    apply,
    cleanup,
    config,
    engine_plan,
    header_route,
    ingress,
    live,
    mirror_route,
    path,
    plan,
    routing,
    state,
)

from routers.errors import ConflictError, UnsupportedError
from routers.planning.objects import ObjectRef
from routers.planning.offline import apply_plans
from routers.planning.ownership import LEDGER
from routers.planning.plan import Create, Delete

CANARY = ObjectRef("networking.k8s.io", "Ingress", NS, "app-canary")
STABLE = ObjectRef("networking.k8s.io", "Ingress", NS, "app")


def test_argo_3541_canary_ingress_never_copies_other_apps_paths() -> None:
    shared = ingress(
        paths=[path("/blog", "blog"), path("/app", "app-stable"), path("/cart", "cart")],
        host="shop.example.com",
    )
    shared["spec"]["rules"].append(
        {"host": "admin.example.com", "http": {"paths": [path("/", "admin")]}}
    )
    result = plan(config(), live(shared), state(weight=10))
    (create,) = [op for op in result if isinstance(op, Create)]
    rules = create.body["spec"]["rules"]
    assert [r["host"] for r in rules] == ["shop.example.com"]
    assert [p["path"] for p in rules[0]["http"]["paths"]] == ["/app"]
    backends = {p["backend"]["service"]["name"] for r in rules for p in r["http"]["paths"]}
    assert backends == {"app-canary"}
    # The stable Ingress only gains this owner's claim in the ledger: spec and annotations stay.
    after = apply(result, live(shared))[STABLE]
    claim = after["metadata"]["annotations"].pop(LEDGER)
    after["metadata"]["resourceVersion"] = shared["metadata"]["resourceVersion"]
    assert after == shared
    assert json.loads(claim)["owners"]["prod/app-canary"] == {
        "canaryIngress": ["app-canary"],
        "service": ["app-stable"],
    }


def test_argo_1070_foreign_annotations_survive_and_removed_route_annotations_go() -> None:
    cfg = config()
    objs = live(ingress())
    objs = apply(plan(cfg, objs, state(weight=10, headerRoutes=[header_route()])), objs)
    # Other controllers (Rancher, a GitOps tool) annotate both Ingresses meanwhile.
    objs[CANARY]["metadata"]["annotations"]["field.cattle.io/publicEndpoints"] = "[]"
    objs[CANARY]["metadata"]["annotations"][f"{P}/upstream-hash-by"] = "$remote_addr"
    objs[STABLE]["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = "app:x"
    # Header route out, mirror route in: exactly the header route's annotations go.
    objs = apply(plan(cfg, objs, state(weight=10, mirrorRoutes=[mirror_route()])), objs)
    anns = objs[CANARY]["metadata"]["annotations"]
    assert not any(k.startswith(f"{P}/canary-by-header") for k in anns)
    assert anns["field.cattle.io/publicEndpoints"] == "[]"
    assert anns[f"{P}/upstream-hash-by"] == "$remote_addr"
    assert objs[STABLE]["metadata"]["annotations"][f"{P}/mirror-target"].startswith("http://")
    # Mirror route out: ours leave the stable Ingress, everyone else's stay.
    objs = apply(plan(cfg, objs, state(weight=30)), objs)
    stable_anns = dict(objs[STABLE]["metadata"]["annotations"])
    assert "mirror" not in stable_anns.pop(LEDGER)
    assert stable_anns == {
        "cert-manager.io/cluster-issuer": "letsencrypt",
        "argocd.argoproj.io/tracking-id": "app:x",
    }
    assert objs[CANARY]["metadata"]["annotations"]["field.cattle.io/publicEndpoints"] == "[]"
    assert objs[CANARY]["metadata"]["annotations"][f"{P}/canary-weight"] == "30"
    # No fight over annotations: the same state again changes nothing.
    assert plan(cfg, objs, state(weight=30)).empty


def test_argo_4751_cleanup_deletes_canary_ingress_guarded_by_uid() -> None:
    cfg = config()
    objs = apply(plan(cfg, live(ingress()), state(weight=40)), live(ingress()))
    objs[CANARY]["metadata"].update({"uid": "uid-canary-1", "resourceVersion": "55"})
    result = plan(cfg, objs, cleanup(restore=False))
    (delete,) = [op for op in result if isinstance(op, Delete)]
    assert (delete.ref, delete.uid, delete.resource_version) == (CANARY, "uid-canary-1", "55")
    assert CANARY not in apply(result, objs)
    # Someone recreated an object of that name meanwhile: the uid guard refuses the delete.
    recreated = apply(plan(cfg, live(ingress()), state(weight=0)), live(ingress()))
    recreated[CANARY]["metadata"].update({"uid": "uid-canary-2", "resourceVersion": "56"})
    with pytest.raises(ConflictError, match="uid precondition"):
        apply_plans([result], recreated)


def test_argo_nginx_header_and_mirror_routes_are_never_silent_noops() -> None:
    """Argo's NGINX router returns nil from SetHeaderRoute/SetMirrorRoute; we express or refuse."""
    r = routing()
    objs = live(ingress())
    (result,) = engine_plan(r, objs, state(weight=0, headerRoutes=[header_route()]))
    assert result.operations
    two_headers = {
        "name": "beta",
        "matches": [{"headers": [{"name": "X-A", "exact": "1"}, {"name": "X-B", "exact": "2"}]}],
    }
    with pytest.raises(UnsupportedError, match="header condition"):
        engine_plan(r, objs, state(headerRoutes=[two_headers]))
    with pytest.raises(UnsupportedError, match="100%"):
        engine_plan(r, objs, state(mirrorRoutes=[mirror_route(percentage=10)]))


def test_flagger_1838_header_route_together_with_weight() -> None:
    """Flagger's NGINX A/B mode ignores weights; here header and weight are both expressed."""
    cfg = config()
    result = plan(cfg, live(ingress()), state(weight=25, headerRoutes=[header_route()]))
    (create,) = [op for op in result if isinstance(op, Create)]
    anns = create.body["metadata"]["annotations"]
    assert anns[f"{P}/canary-weight"] == "25"
    assert anns[f"{P}/canary-by-header"] == "X-Canary"
    assert anns[f"{P}/canary-by-header-value"] == "always"
