"""The Traefik evaluator, against Traefik v3.7's provider and load balancers.

Facts (traefik/traefik v3.7.10): pkg/provider/kubernetes/crd/kubernetes_http.go (an omitted
``weight`` becomes 1; ``mirrors[].percent`` passed through), pkg/server/service/loadbalancer/wrr
(a non-positive weight is ignored; no handler left answers 503), .../mirror/mirror.go (a mirror
is used while ``count * 100 < total * percent``: exactly ``percent``% of the requests).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from routers_traefik.evaluate import route_service

from routers.planning.objects import LiveObjects
from routers.testing import route_scenario

F = Fraction


def ts(name: str, spec: dict[str, Any], namespace: str = "apps") -> dict[str, Any]:
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TraefikService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def run(entry: dict[str, Any], *others: dict[str, Any]) -> Any:
    return route_service(entry, LiveObjects.from_manifests([entry, *others]))


def test_weights_are_relative_and_an_omitted_weight_is_one() -> None:
    out = run(ts("w", {"weighted": {"services": [{"name": "a", "weight": 3}, {"name": "b"}]}}))
    assert out.shares == {"a": F(3, 4), "b": F(1, 4)}


def test_zero_weights_are_left_out_and_none_left_is_503() -> None:
    out = run(ts("w", {"weighted": {"services": [{"name": "a", "weight": 0}, {"name": "b"}]}}))
    assert out.shares == {"b": 1}
    none = run(ts("w", {"weighted": {"services": [{"name": "a", "weight": 0}]}}))
    assert (none.routed, none.status) == (False, 503)


def test_nested_traefikservices_are_followed_and_labelled_when_absent() -> None:
    wrr2 = ts("wrr2", {"weighted": {"services": [{"name": "svc2"}, {"name": "svc3"}]}})
    wrr1 = ts(
        "wrr1",
        {
            "weighted": {
                "services": [
                    {"name": "svc1", "weight": 2},
                    {"name": "wrr2", "kind": "TraefikService", "weight": 1},
                    {"name": "gone", "kind": "TraefikService", "weight": 1},
                ]
            }
        },
    )
    out = run(wrr1, wrr2)
    assert out.shares == {
        "svc1": F(1, 2),
        "svc2": F(1, 8),
        "svc3": F(1, 8),
        "TraefikService:gone": F(1, 4),
    }


def test_a_reference_cycle_is_an_error_not_a_hang() -> None:
    a = ts("a", {"weighted": {"services": [{"name": "b", "kind": "TraefikService"}]}})
    b = ts("b", {"weighted": {"services": [{"name": "a", "kind": "TraefikService"}]}})
    out = run(a, b)
    assert (out.routed, out.status) == (False, 500)


def test_mirroring_serves_the_main_service_and_copies_percent_to_each_mirror() -> None:
    wrr = ts(
        "wrr",
        {
            "weighted": {
                "services": [{"name": "stable", "weight": 9}, {"name": "canary", "weight": 1}]
            }
        },
    )
    front = ts(
        "front",
        {
            "mirroring": {
                "name": "wrr",
                "kind": "TraefikService",
                "mirrors": [
                    {"name": "canary", "percent": 20},
                    {"name": "audit", "namespace": "ops", "percent": 5},
                    {"name": "off"},  # percent omitted: 0
                ],
            }
        },
    )
    out = run(front, wrr)
    assert out.shares == {"stable": F(9, 10), "canary": F(1, 10)}
    assert out.mirrors == {"canary": F(1, 5), "audit.ops": F(1, 20)}


def test_the_entry_is_the_mirroring_service_when_it_exists() -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "traefik"
    (routed,) = route_scenario(example, {"weight": 20}, "GET /")
    assert routed.scope == "TraefikService shop/shop"
    assert routed.outcome.shares == {"shop-stable": F(4, 5), "shop-canary": F(1, 5)}
    assert routed.outcome.mirrors == {"shop-audit": F(1, 20)}
