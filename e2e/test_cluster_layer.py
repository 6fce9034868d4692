"""The cluster layer against a real kube-apiserver: guarded writes, zero-write reconciles,
conflicts with a concurrent foreign writer, rollback of partial applies, server dry-run,
strict field validation, and RBAC generated from the config.

Uses the example third-party ConfigMap plugin (built-in kinds only), so these tests exercise
the mechanics independently of any mesh CRD.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import config as kube_config

from e2e.cluster import ControlPlane
from routers.cluster import (
    ApiStatus,
    Kube,
    RequestRecord,
    Router,
    Transport,
    execute,
    rbac_manifests,
    reconcile,
)
from routers.errors import ApplyError, ConflictError, ForbiddenError
from routers.model import RoutingConfig, TrafficState
from routers.planning.objects import LiveObjects, ObjectRef
from routers.planning.plan import Create, Patch, Plan
from routers.registry import Registry
from tests.conftest import configmap_registry

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    yield from configmap_registry()


@pytest.fixture(scope="module")
def cp(control_plane: Callable[..., ControlPlane]) -> ControlPlane:
    return control_plane(())


def kube_for(
    cp: ControlPlane, user: str = "routers", records: list[RequestRecord] | None = None
) -> Kube:
    client = kube_config.new_client_from_config(config_file=str(cp.kubeconfig_for(user)))
    return Kube(Transport(client, on_request=records.append if records is not None else None))


def routing(ns: str) -> RoutingConfig:
    return RoutingConfig.from_document(
        {
            "stableService": "web-stable",
            "canaryService": "web-canary",
            "namespace": ns,
            "plugins": {"example.com/configmap": {"configMap": "proxy-weights"}},
        }
    )


def seed(cp: ControlPlane, ns: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    status, obj = cp.request(
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "proxy-weights", "annotations": {"team": "payments"}},
            "data": data or {"other": "keep"},
        },
    )
    assert status == 201, obj
    return obj  # type: ignore[no-any-return]


def weights(cp: ControlPlane, ns: str) -> dict[str, int]:
    status, obj = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/proxy-weights")
    assert status == 200
    return json.loads(obj["data"]["weights.json"])  # type: ignore[no-any-return]


def test_apply_then_reapply_sends_zero_writes(cp: ControlPlane, registry: Registry) -> None:
    ns = cp.new_namespace("zero")
    seed(cp, ns)
    records: list[RequestRecord] = []
    kube = kube_for(cp, records=records)
    out = reconcile(kube, routing(ns), TrafficState(weight=10), registry=registry)
    assert out.writes == 1
    assert weights(cp, ns) == {"web-canary": 10, "web-stable": 90}
    mark = cp.audit_mark()
    records.clear()
    again = reconcile(kube, routing(ns), TrafficState(weight=10), registry=registry)
    assert again.writes == 0
    assert [r for r in records if r.is_write] == []
    assert cp.write_requests(since=mark, user="routers") == [], "the audit log shows a write"


def test_weights_0_10_50_100_each_one_guarded_patch(cp: ControlPlane, registry: Registry) -> None:
    ns = cp.new_namespace("steps")
    seed(cp, ns)
    kube = kube_for(cp)
    for w in (0, 10, 50, 100):
        mark = cp.audit_mark()
        reconcile(kube, routing(ns), TrafficState(weight=w), registry=registry)
        assert weights(cp, ns)["web-canary"] == w
        writes = cp.write_requests(since=mark, user="routers")
        assert [e["verb"] for e in writes] == ["patch"], cp.summarize(writes)


def test_caller_live_objects_skip_reads(cp: ControlPlane, registry: Registry) -> None:
    ns = cp.new_namespace("cache")
    obj = seed(cp, ns)
    records: list[RequestRecord] = []
    kube = kube_for(cp, records=records)
    router = Router(routing(ns), kube=kube, registry=registry)
    ref = ObjectRef.of(obj)
    first = router.set_weight(30, live={ref: obj})  # warms facts and discovery
    records.clear()
    (applied,) = first.applied
    assert applied.after is not None
    router.set_weight(35, live={ref: applied.after})
    assert [r.method for r in records] == ["PATCH"], (
        "a step with caller-supplied objects must not GET"
    )


def test_stale_cache_costs_one_conflict_not_a_lost_write(
    cp: ControlPlane, registry: Registry
) -> None:
    ns = cp.new_namespace("stale")
    obj = seed(cp, ns)
    cp.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/proxy-weights",
        {"data": {"foreign": "1"}},
        content_type="application/merge-patch+json",
    )
    out = reconcile(
        kube_for(cp),
        routing(ns),
        TrafficState(weight=40),
        registry=registry,
        live={ObjectRef.of(obj): obj},
        sleep=lambda _: None,
    )
    assert out.attempts == 2
    _, now = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/proxy-weights")
    assert now["data"]["foreign"] == "1"
    assert weights(cp, ns)["web-canary"] == 40


def test_concurrent_foreign_writer_loses_nothing(cp: ControlPlane, registry: Registry) -> None:
    """200+ contended steps: another client edits unrelated fields of the same object in a loop."""
    ns = cp.new_namespace("contend")
    seed(cp, ns)
    kube = kube_for(cp)
    stop = threading.Event()
    foreign_writes: list[int] = []

    def foreign() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            status, _ = cp.request(
                "PATCH",
                f"/api/v1/namespaces/{ns}/configmaps/proxy-weights",
                {
                    "metadata": {"annotations": {"foreign/counter": str(n)}},
                    "data": {f"k{n % 7}": str(n)},
                },
                user="foreign-writer" if "foreign-writer" in cp.users else "admin",
                content_type="application/merge-patch+json",
            )
            if status == 200:
                foreign_writes.append(n)

    thread = threading.Thread(target=foreign, daemon=True)
    thread.start()
    retried = 0
    try:
        for step in range(220):
            w = (step * 7) % 101
            out = reconcile(
                kube, routing(ns), TrafficState(weight=w), registry=registry, max_attempts=20
            )
            retried += out.attempts - 1
            assert weights(cp, ns)["web-canary"] == w
    finally:
        stop.set()
        thread.join(10)
    _, final = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/proxy-weights")
    last = foreign_writes[-1]
    assert final["metadata"]["annotations"]["foreign/counter"] == str(last)
    assert final["data"][f"k{last % 7}"] == str(last)
    assert final["data"]["other"] == "keep"
    assert final["metadata"]["annotations"]["team"] == "payments"
    assert len(foreign_writes) > 50, "the foreign writer did not really contend"
    print(f"\n220 steps, {len(foreign_writes)} foreign writes, {retried} retries")


def test_conflict_that_persists_is_a_conflict_error(cp: ControlPlane, registry: Registry) -> None:
    ns = cp.new_namespace("persist")
    seed(cp, ns)
    kube = kube_for(cp)
    # A reader that always returns a stale object forces every guard to fail.
    _status, stale = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/proxy-weights")
    cp.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/proxy-weights",
        {"data": {"x": "1"}},
        content_type="application/merge-patch+json",
    )
    original_get = kube.get
    kube.get = lambda ref: stale  # type: ignore[method-assign]
    try:
        with pytest.raises(
            ConflictError, match=r"ConfigMap .*proxy-weights: still conflicting after 3 attempts"
        ):
            reconcile(
                kube,
                routing(ns),
                TrafficState(weight=5),
                registry=registry,
                max_attempts=3,
                sleep=lambda _: None,
            )
    finally:
        kube.get = original_get  # type: ignore[method-assign]


def test_failed_later_operation_reverts_earlier_ones(cp: ControlPlane) -> None:
    ns = cp.new_namespace("rollback")
    obj = seed(cp, ns)
    kube = kube_for(cp)
    ref = ObjectRef.of(obj)
    good = Patch(
        ref,
        (
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": obj["metadata"]["resourceVersion"],
            },
            {"op": "add", "path": "/data/step", "value": "1"},
        ),
        "first",
    )
    bad_ref = ObjectRef("", "ConfigMap", ns, "broken")
    bad = Create(
        bad_ref,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "broken"},
            "data": {"k": "v"},
            "bogus": 1,
        },
        "second",
    )
    with pytest.raises(ApplyError) as info:
        execute(kube, [Plan("configmap", (good, bad))], LiveObjects([(ref, obj)]))
    err = info.value
    assert err.code == 400
    assert "unknown field" in err.api_message  # strict field validation
    assert err.applied == (f"patch {ref}",)
    assert err.reverted == (f"patch {ref}",)
    _, now = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/proxy-weights")
    assert "step" not in now["data"]


def test_server_dry_run_changes_nothing(cp: ControlPlane, registry: Registry) -> None:
    ns = cp.new_namespace("dry")
    seed(cp, ns)
    out = reconcile(
        kube_for(cp), routing(ns), TrafficState(weight=70), registry=registry, dry_run=True
    )
    assert out.writes == 1
    _, now = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/proxy-weights")
    assert "weights.json" not in now["data"]


def test_generated_rbac_is_sufficient_and_a_missing_verb_is_named(
    cp: ControlPlane, registry: Registry
) -> None:
    ns = cp.new_namespace("rbac")
    config = routing(ns)
    manifests = rbac_manifests(config, registry=registry)
    (role,) = [m for m in manifests if m["kind"] == "Role"]
    user = "routers-limited"

    def bind(rules: list[dict[str, Any]]) -> None:
        cp.request(
            "DELETE", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/canary-routers"
        )
        status, body = cp.request(
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
            {**role, "rules": rules},
        )
        assert status == 201, body
        cp.request(
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "canary-routers"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "canary-routers",
                },
                "subjects": [
                    {"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}
                ],
            },
        )

    bind(role["rules"])
    kube = kube_for(cp, user)
    # create (object absent), patch, delete on cleanup: every verb the plugin declares is used.
    reconcile(kube, config, TrafficState(weight=20), registry=registry)
    reconcile(kube, config, TrafficState(weight=60), registry=registry)
    assert weights(cp, ns)["web-canary"] == 60
    from routers.model import Cleanup

    reconcile(kube, config, Cleanup(), registry=registry)
    status, _ = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/proxy-weights")
    assert status == 404

    without_patch = [
        {**r, "verbs": [v for v in r["verbs"] if v != "create"]} for r in role["rules"]
    ]
    bind(without_patch)
    with pytest.raises(ForbiddenError) as info:
        reconcile(kube_for(cp, user), config, TrafficState(weight=20), registry=registry)
    assert (info.value.verb, info.value.resource) == ("create", "configmaps")
    assert "missing permission create on configmaps" in str(info.value)


def test_api_status_is_carried(cp: ControlPlane) -> None:
    kube = kube_for(cp)
    with pytest.raises(ApiStatus) as info:
        kube.create(
            ObjectRef("", "ConfigMap", "no-such-namespace-xyz", "x"),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        )
    assert info.value.code == 404
    assert info.value.reason == "NotFound"
