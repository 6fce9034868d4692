"""SMI: weights over backends; with matches, only matching requests are split."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from routers_smi.evaluate import simulate_traffic_split

from routers.planning.weights import parse_weight as quantity
from routers.simulate import parse_request
from routers.testing import route_scenario

F = Fraction


def split(
    name: str, backends: list[tuple[str, Any]], matches: tuple[str, ...] = ()
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "service": "root",
        "backends": [{"service": s, "weight": w} for s, w in backends],
    }
    if matches:
        spec["matches"] = [{"kind": "HTTPRouteGroup", "name": m} for m in matches]
    return {
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
    }


def group(name: str, *matches: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"matches": list(matches)},
    }


def go(splits: list[dict[str, Any]], text: str, groups: dict[str, Any] | None = None) -> Any:
    return simulate_traffic_split(splits, parse_request(text), service="root", groups=groups)


def test_plain_split_is_relative() -> None:
    out = go([split("s", [("stable", 1000), ("canary", 500)])], "GET /")
    assert out.shares == {"stable": F(2, 3), "canary": F(1, 3)}


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (1, F(1)),
        ("500m", F(1, 2)),
        ("1", F(1)),
        ("1.5", F(3, 2)),
        ("2k", F(2000)),
        ("x", None),
        (True, None),
    ],
)
def test_quantities(raw: Any, value: Fraction | None) -> None:
    assert quantity(raw) == value


def test_matches_split_only_matching_requests_the_rest_goes_to_root() -> None:
    g = group(
        "beta",
        {"name": "h", "headers": {"x-canary": "always|yes"}},
        {"name": "p", "pathRegex": "/api/v2", "methods": ["GET"]},
    )
    s = [split("s", [("canary", 1)], matches=("beta",))]
    groups = {"beta": g}
    assert go(s, "GET / -H x-canary:yes", groups).shares == {"canary": 1}
    assert go(s, "GET / -H x-canary:yesno", groups).shares == {"root": 1}  # whole-value regex
    assert go(s, "GET /api/v2/items", groups).shares == {"canary": 1}  # anchored at the start
    assert go(s, "GET /x/api/v2", groups).shares == {"root": 1}
    assert go(s, "POST /api/v2", groups).shares == {"root": 1}
    assert go(s, "GET /", groups).shares == {"root": 1}


def test_list_form_headers_and_star_method() -> None:
    g = group("g", {"name": "m", "methods": ["*"], "headers": [{"x-a": "1"}, {"x-b": "2"}]})
    s = [split("s", [("canary", 1)], matches=("g",))]
    assert go(s, "DELETE / -H x-a:1 -H x-b:2", {"g": g}).shares == {"canary": 1}
    assert go(s, "DELETE / -H x-a:1", {"g": g}).shares == {"root": 1}


def test_matching_split_beats_general_one_and_other_roots_are_ignored() -> None:
    g = group("g", {"name": "m", "headers": {"x-a": "1"}})
    general = split("general", [("stable", 9), ("canary", 1)])
    header = split("header", [("canary", 1)], matches=("g",))
    other = split("other", [("x", 1)])
    other["spec"]["service"] = "elsewhere"
    assert go([general, header, other], "GET / -H x-a:1", {"g": g}).shares == {"canary": 1}
    assert go([general, header], "GET /", {"g": g}).shares == {
        "stable": F(9, 10),
        "canary": F(1, 10),
    }
    assert go([other], "GET /").shares == {"root": 1}


def test_zero_and_invalid_weights() -> None:
    assert go([split("s", [("a", 0), ("b", 0)])], "GET /").status == 503
    assert go([split("s", [("a", "lots")])], "GET /").status == 500


def test_a_foreign_backend_keeps_its_share_and_the_canary_gets_its_weight_of_all() -> None:
    """The weight rule, routed: 30% of all requests on the canary beside checkout-legacy's 5/105."""
    golden = Path(__file__).resolve().parent / "golden" / "foreign-backend-survives"
    (routed,) = route_scenario(golden, {"weight": 30}, "GET /")
    assert routed.outcome.shares == {
        "checkout-stable": Fraction(137, 210),
        "checkout-canary": Fraction(3, 10),
        "checkout-legacy": Fraction(1, 21),
    }
